"""Backups carry each series' imported reference mask (.npz), checked on restore against the sha256 recorded at
import; the restored study's segmentation evaluation gives the source's numbers without the source's files."""

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError

from fixtures.manifests import balanced_rows, write_manifest
from fixtures.phantom.nifti import write_labelmap_nifti
from inference.actions import record_prediction
from inference.evaluation import imported_reference_evaluation
from readerstudy.core.models import AuditEvent
from readerstudy.studies import actions
from readerstudy.studies.models import ImageSeries, Study
from readerstudy.studies.storage import study_prefix
from tests.backup.test_round_trip import repack, row_counts
from tests.factories import make_user

pytestmark = pytest.mark.django_db

SHAPE, SPACING = (5, 8, 8), (2.5, 1.0, 1.0)  # fixtures.manifests' tiny series


def _labelmap(lesion: tuple[int, int, int]) -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    lab[1:4, 1:7, 1:7] = 1
    lab[lesion] = 2
    return lab


@pytest.fixture
def study(tmp_path):
    admin = make_user("admin", superuser=True)
    study = actions.create_study(admin, "Masks", design="crossover", washout_days=28, seed=3)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "DL-assisted", shows_dl=True)
    rows = balanced_rows(4, 1)
    folder = tmp_path / "import"
    (folder / "masks").mkdir(parents=True)
    for patient in ("P001", "P002"):
        write_labelmap_nifti(folder / "masks" / f"{patient}.nii.gz", _labelmap((2, 3, 2)), SPACING, (0, 0, 0))
    for row in rows:
        if row["patient_id"] in ("P001", "P002"):
            row["reference_mask"] = f"masks/{row['patient_id']}.nii.gz"
    actions.import_cases(admin, study, write_manifest(folder, rows))
    for case in study.cases.select_related("patient"):
        lesion = (2, 3, 5) if case.patient.pseudonym == "P002" else (2, 3, 2)  # P002: 3 mm off
        record_prediction(
            admin, case, model_name="unet-test", model_version="1.0", weights_sha256="d" * 64,
            inputs_sha256=f"{case.pk}", probability=0.5, labelmap=_labelmap(lesion),
            labels=[{"value": 1, "name": "liver"}, {"value": 2, "name": "lesion"}],
        )  # fmt: skip
    return study


def _backup(study, out, *extra):
    call_command("backup_study", study.name, str(out), "--as", "admin", "--no-progress", *extra, stdout=io.StringIO())
    return out


def _restore(archive, name="Copy"):
    call_command(
        "restore_study", str(archive), "--rename", name, "--as", "admin", "--no-progress", stdout=io.StringIO()
    )
    return Study.objects.get(name=name)


def _masks(study):
    """Per patient: (stored sha256 of the mask's bytes, the sha256 its import recorded, the uploaded file's)."""
    out = {}
    for s in ImageSeries.objects.filter(patient__study=study).exclude(reference_mask="").select_related("patient"):
        with default_storage.open(s.reference_mask, "rb") as f:
            data = f.read()
        info = s.reference_mask_info
        out[s.patient.pseudonym] = (hashlib.sha256(data).hexdigest(), info["stored_sha256"], info["file_sha256"])
    return out


def _tables(archive):
    with tarfile.open(archive, "r:gz") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        series = [json.loads(line) for line in tar.extractfile("tables/series.jsonl").read().splitlines()]
        names = tar.getnames()
    return manifest, series, names


def test_round_trip_carries_the_masks_and_the_evaluation_gives_the_same_numbers(study, tmp_path):
    before = _masks(study)
    assert sorted(before) == ["P001", "P002"] and all(a == b for a, b, _ in before.values())
    source_eval = imported_reference_evaluation(study)
    archive = _backup(study, tmp_path / "b.tar.gz")
    manifest, series, names = _tables(archive)
    members = [n for n in names if n.startswith("reference_masks/")]
    assert len(members) == 2 and manifest["format_version"] == 3
    for row in series:
        if row["reference_mask"]:  # relative to the study's folder, like the series path
            assert row["reference_mask"].startswith("import-") and row["reference_mask"].endswith(".npz")
            member = f"reference_masks/{row['id']}/{row['reference_mask'].rsplit('/', 1)[1]}"
            assert manifest["members"][member]["sha256"] == row["reference_mask_info"]["stored_sha256"]

    copy = _restore(archive)
    assert _masks(copy) == before
    root = study_prefix(copy) + "/"
    assert all(
        s.startswith(root)
        for s in ImageSeries.objects.filter(patient__study=copy).values_list("reference_mask", flat=True)
        if s
    )
    event = AuditEvent.objects.get(study=copy, verb="restore_study")
    assert event.after["reference_masks"] == 2 and event.after["reference_masks_not_in_archive"] == 0

    # The copy does not lean on the source's files: delete them, the copy's evaluation is the source's.
    for name in (
        ImageSeries.objects.filter(patient__study=study)
        .exclude(reference_mask="")
        .values_list("reference_mask", flat=True)
    ):
        default_storage.delete(name)
    copied = imported_reference_evaluation(copy)
    assert copied["n_cases"] == 2 and copied["rows"] == source_eval["rows"]
    lesions = {(r["kind"], r["name"]): r for r in copied["rows"]}[("structure", "lesions")]
    assert lesions["dice"] == pytest.approx({"n": 2, "median": 0.5, "q1": 0.25, "q3": 0.75, "mean": 0.5})
    assert sorted(copied["reference"]["files"].values()) == sorted(v[2] for v in before.values())


def test_a_backup_without_images_still_carries_the_masks(study, tmp_path):
    _, _, names = _tables(_backup(study, tmp_path / "small.tar.gz", "--no-images"))
    assert not any(n.startswith("series/") for n in names)
    assert sum(n.startswith("reference_masks/") for n in names) == 2


def _rewrite(archive, out, change_mask=None, change_series=None, drop_masks=False, version=None):
    """Repack with a changed mask member / series rows, keeping the manifest's checksums consistent (so that the
    restore's own checks, not the archive's, are what is tested)."""
    with tarfile.open(archive, "r:gz") as tar:
        data = {n: tar.extractfile(n).read() for n in tar.getnames()}
    manifest = json.loads(data["manifest.json"])
    for name in list(data):
        if name.startswith("reference_masks/"):
            if drop_masks:
                del data[name]
                del manifest["members"][name]
                manifest["counts"]["files"] -= 1
            elif change_mask is not None:
                data[name] = change_mask(data[name])
    if change_series is not None:
        rows = [change_series(json.loads(line)) for line in data["tables/series.jsonl"].splitlines()]
        data["tables/series.jsonl"] = b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in rows)
    for name, blob in data.items():
        if name != "manifest.json":
            manifest["members"][name] = {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}
    if version is not None:
        manifest["format_version"] = version
    data["manifest.json"] = json.dumps(manifest).encode()
    return repack(archive, out, lambda name, blob: data.get(name))


def test_a_mask_that_differs_from_its_import_is_refused_and_nothing_is_left(study, tmp_path):
    archive = _backup(study, tmp_path / "b.tar.gz")
    bad = _rewrite(archive, tmp_path / "bad.tar.gz", change_mask=lambda blob: blob[:-1] + bytes([blob[-1] ^ 1]))
    before, folders = row_counts(), default_storage.listdir("studies")[0]
    with pytest.raises(CommandError, match=r"reference mask reference-\d+\.npz has sha256 [0-9a-f]{64}, its import"):
        _restore(bad)
    assert row_counts() == before
    # The failed restore's study folder is gone with its series files and the mask saved before the bad one.
    assert sorted(default_storage.listdir("studies")[0]) == sorted(folders)


@pytest.mark.parametrize(
    "value, message",
    [
        ("../../elsewhere/reference-1.npz", "reference_mask"),
        ("/etc/reference.npz", "reference_mask"),
        ("import-x/0001.dcm", "is not a .npz file name"),
        ("import-x/other.npz", "is not in the archive"),
    ],
)
def test_a_hostile_mask_path_is_refused(study, tmp_path, value, message):
    archive = _backup(study, tmp_path / "b.tar.gz")

    def change(row):
        return {**row, "reference_mask": value} if row["reference_mask"] else row

    bad = _rewrite(archive, tmp_path / "bad.tar.gz", change_series=change)
    before = row_counts()
    with pytest.raises(CommandError, match=message):
        _restore(bad)
    assert row_counts() == before


def test_a_version_2_archive_restores_without_pointing_at_the_sources_masks(study, tmp_path):
    archive = _backup(study, tmp_path / "b.tar.gz")

    def absolute(row):  # what version 2 wrote: the source's storage name, the file not carried
        return (
            {**row, "reference_mask": f"{study_prefix(study)}/{row['reference_mask']}"}
            if row["reference_mask"]
            else row
        )

    old = _rewrite(archive, tmp_path / "v2.tar.gz", change_series=absolute, drop_masks=True, version=2)
    copy = _restore(old)
    assert not ImageSeries.objects.filter(patient__study=copy).exclude(reference_mask="").exists()
    assert AuditEvent.objects.get(study=copy, verb="restore_study").after["reference_masks_not_in_archive"] == 2
    assert imported_reference_evaluation(copy) is None
