"""Bad input of every kind: a clear error, the database unchanged (row counts), nothing written outside storage.

Manifest encoding, separators, columns, path traversal via '..' and bad ratings are covered in
tests/studies/test_manifest.py and tests/reading; this file adds broken DICOM, symlinks, and oversized bodies.
"""

import json
from pathlib import Path

import pydicom
import pytest
from django.test import Client

from readerstudy.errors import InvalidInput
from readerstudy.reading import actions as reading_actions
from readerstudy.reading.models import AuditEvent, Read, ReadingSession
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
