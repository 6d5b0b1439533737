"""Reference masks imported with the cases (manifest column reference_mask) and the segmentation evaluation of the
stored predictions against them (inference.evaluation.imported_reference_evaluation), through the real import."""

import io
import os

import numpy as np
import pytest
from django.core.files.storage import default_storage

from fixtures.manifests import manifest_row, write_manifest
from fixtures.phantom.nifti import write_labelmap_nifti
from inference.actions import record_prediction
from inference.evaluation import imported_reference_evaluation
from readerstudy.core.errors import InvalidInput
from readerstudy.studies import actions, reference_masks
from readerstudy.studies.models import Case, ImageSeries
from tests.factories import make_user

pytestmark = pytest.mark.django_db

SHAPE = (5, 8, 8)  # the tiny series of fixtures.manifests: 5 slices of 2.5 mm, 8 x 8 pixels of 1 mm, from z = 0
SPACING = (2.5, 1.0, 1.0)
ORIGIN = (0.0, 0.0, 0.0)


def _labelmap(lesion_voxels: list[tuple[int, int, int]]) -> np.ndarray:
    """1 liver (a block), 2 on each lesion voxel."""
    lab = np.zeros(SHAPE, np.uint8)
    lab[1:4, 1:7, 1:7] = 1
    for k, j, i in lesion_voxels:
        lab[k, j, i] = 2
    return lab


def _study(tmp_path, rows, masks: dict[str, np.ndarray] | None = None, name: str = "Masks"):
    admin = make_user(f"admin-{name}", superuser=True)
    study = actions.create_study(admin, name, design="crossover", washout_days=28, seed=1)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "DL-assisted", shows_dl=True)
    folder = tmp_path / "import"
    folder.mkdir(parents=True)
    (folder / "masks").mkdir()
    for name, lab in (masks or {}).items():
        write_labelmap_nifti(folder / "masks" / name, lab, SPACING, ORIGIN)
    return admin, study, write_manifest(folder, rows)


def _stored_files() -> list[str]:
    root = default_storage.location
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def _predict(case: Case, labelmap: np.ndarray) -> None:
    record_prediction(
        None, case, model_name="phantom-unet+test", model_version="1", weights_sha256="a" * 64,
        inputs_sha256=f"{case.pk:064d}", probability=0.5, labelmap=labelmap,
        labels=[{"value": 1, "name": "liver"}, {"value": 2, "name": "target lesion"}],
    )  # fmt: skip


def test_a_nifti_reference_mask_is_stored_per_series_and_a_prediction_equal_to_it_scores_dice_1_hd95_0(tmp_path):
    reference = _labelmap([(2, 3, 3), (2, 3, 4), (2, 4, 3), (2, 4, 4)])  # one 2 x 2 voxel lesion: 4 mm
    rows = [
        manifest_row("P001", "P001-L1", reference_mask="masks/P001.nii.gz", lesion_z_mm=5.0),
        manifest_row("P001", "P001-L2", reference_mask="masks/P001.nii.gz", lesion_z_mm=7.5),
        manifest_row("P002", "P002-L1"),  # no reference mask: not evaluated
    ]
    admin, study, manifest = _study(tmp_path, rows, {"P001.nii.gz": reference})
    actions.import_cases(admin, study, manifest)
    with_mask = ImageSeries.objects.exclude(reference_mask="")
    assert with_mask.count() == 1 and with_mask.get().patient.pseudonym == "P001"
    series = with_mask.get()
    assert series.reference_mask_info["format"] == "NIfTI"
    assert series.reference_mask_info["file_sha256"] == reference_masks.file_sha256(
        tmp_path / "import/masks/P001.nii.gz"
    )
    with default_storage.open(series.reference_mask, "rb") as f:
        stored = np.load(io.BytesIO(f.read()))
    assert sorted(stored.files) == ["lesion_labels", "liver_mask"]  # arrays only, no NIfTI header
    np.testing.assert_array_equal(stored["liver_mask"], reference >= 1)
    np.testing.assert_array_equal(stored["lesion_labels"], (reference == 2).astype(int))

    assert imported_reference_evaluation(study)["n_without_prediction"] == 1  # P001 has no prediction yet
    for case in Case.objects.filter(study=study):
        _predict(case, reference if case.patient.pseudonym == "P001" else _labelmap([]))
    out = imported_reference_evaluation(study)
    assert out["n_cases"] == 1 and out["n_with_reference"] == 1 and out["n_without_prediction"] == 0
    assert out["models"] == [
        {"model_name": "phantom-unet+test", "model_version": "1", "weights_sha256": "a" * 64, "n_series": 1}
    ]
    assert out["reference"]["formats"] == {"NIfTI": 1}
    rows_by = {(r["kind"], r["name"]): r for r in out["rows"]}
    for name in ("liver", "lesions"):
        row = rows_by[("structure", name)]
        assert row["dice"]["median"] == pytest.approx(1.0) and row["hd95_mm"]["median"] == pytest.approx(0.0)
        assert row["nsd"]["median"] == pytest.approx(1.0) and row["b0_error"]["mean"] == 0.0
    small = rows_by[("stratum", "<=10")]
    assert small["n"] == 1 and small["detected"] == 1 and small["false_positives"] == 0
    assert small["dice"]["median"] == pytest.approx(1.0) and small["hd95_mm"]["median"] == pytest.approx(0.0)
    assert rows_by[("stratum", "10-30")]["n"] == 0


def test_a_prediction_shifted_by_3_mm_gives_hd95_3_mm_and_a_missed_lesion(tmp_path):
    reference = _labelmap([(2, 3, 2)])  # one voxel
    admin, study, manifest = _study(
        tmp_path, [manifest_row("P001", "P001-L1", reference_mask="masks/P001.nii.gz")], {"P001.nii.gz": reference}
    )
    actions.import_cases(admin, study, manifest)
    _predict(Case.objects.get(), _labelmap([(2, 3, 5)]))  # the lesion 3 voxels (3 mm) along x
    out = imported_reference_evaluation(study)
    rows_by = {(r["kind"], r["name"]): r for r in out["rows"]}
    lesions = rows_by[("structure", "lesions")]
    assert lesions["dice"]["median"] == 0.0 and lesions["hd95_mm"]["median"] == pytest.approx(3.0)
    assert rows_by[("structure", "liver")]["dice"]["median"] == pytest.approx(1.0)
    small = rows_by[("stratum", "<=10")]
    assert small["n"] == 1 and small["detected"] == 0 and small["false_positives"] == 1
    assert small["dice"]["median"] == 0.0 and small["hd95_mm"]["n"] == 0  # a missed lesion has no HD95


def test_a_study_without_reference_masks_has_no_evaluation(tmp_path):
    admin, study, manifest = _study(tmp_path, [manifest_row("P001", "P001-L1")])
    actions.import_cases(admin, study, manifest)
    assert imported_reference_evaluation(study) is None


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("../outside.nii.gz", "must be a relative path inside the manifest's folder"),
        ("/etc/passwd.nii", "must be a relative path inside the manifest's folder"),
        ("masks/link.nii.gz", "must be a relative path inside the manifest's folder"),  # a link pointing out
        ("masks/missing.nii.gz", "is not a file"),
        ("masks/P001.txt", "is not a NIfTI or DICOM SEG file name"),
        ("masks/ct.dcm", "a DICOM file of modality 'CT', expected SEG"),
        ("masks/shifted.nii.gz", "part of the mask lies outside the series' (5, 8, 8) voxels"),
        ("masks/spacing.nii.gz", "its voxel grid does not coincide with the series'"),
        ("masks/empty.nii.gz", "the mask is empty"),
        ("masks/broken.nii.gz", "not a readable NIfTI file"),
    ],
)
def test_a_bad_reference_mask_is_a_row_error_and_nothing_is_imported(tmp_path, cell, reason):
    rows = [
        manifest_row("P002", "P002-L1", reference_mask="masks/P002.nii.gz"),
        manifest_row("P001", "P001-L1", reference_mask=cell),
    ]
    admin, study, manifest = _study(tmp_path, rows, {"P002.nii.gz": _labelmap([(2, 3, 3)])})
    masks = tmp_path / "import" / "masks"
    (tmp_path / "outside.nii.gz").write_bytes((masks / "P002.nii.gz").read_bytes())
    (masks / "link.nii.gz").symlink_to(tmp_path / "outside.nii.gz")
    (masks / "ct.dcm").write_bytes(next((tmp_path / "import/series/P001").iterdir()).read_bytes())
    write_labelmap_nifti(masks / "shifted.nii.gz", np.ones((5, 4, 8), np.uint8), SPACING, (0.0, 6.0, 0.0))
    write_labelmap_nifti(masks / "spacing.nii.gz", np.ones(SHAPE, np.uint8), (2.0, 1.0, 1.0), ORIGIN)
    write_labelmap_nifti(masks / "empty.nii.gz", np.zeros(SHAPE, np.uint8), SPACING, ORIGIN)
    (masks / "broken.nii.gz").write_bytes(b"\x1f\x8b not a nifti")
    before = _stored_files()
    with pytest.raises(InvalidInput) as info:
        actions.import_cases(admin, study, manifest)
    details = info.value.details
    assert len(details) == 1 and details[0].startswith("manifest.csv row 3 column reference_mask: ")
    assert reason in details[0] and str(tmp_path) not in details[0]  # no local path of the server in the message
    assert Case.objects.count() == 0 and ImageSeries.objects.count() == 0
    assert _stored_files() == before  # all or nothing on disk too: the good mask of row 2 was removed


def test_reference_masks_of_one_series_must_agree_and_size_is_bounded(tmp_path, monkeypatch):
    rows = [
        manifest_row("P001", "P001-L1", reference_mask="masks/P001.nii.gz"),
        manifest_row("P001", "P001-L2", reference_mask=""),
        manifest_row("P002", "P002-L1", reference_mask="masks/P001.nii.gz"),
    ]
    admin, study, manifest = _study(tmp_path, rows, {"P001.nii.gz": _labelmap([(2, 3, 3)])})
    with pytest.raises(InvalidInput) as info:
        actions.import_cases(admin, study, manifest)
    assert info.value.details == [
        "manifest.csv row 3 column reference_mask: empty differs from 'masks/P001.nii.gz' on row 2 for the same "
        "series; expected one reference mask per series (or none)",
        "manifest.csv row 4 column reference_mask: 'masks/P001.nii.gz' is already the reference mask of another series",
    ]
    monkeypatch.setattr(reference_masks, "MAX_BYTES", 20)
    admin2, study2, manifest2 = _study(
        tmp_path / "b", [manifest_row("P001", "P001-L1", reference_mask="masks/P001.nii.gz")],
        {"P001.nii.gz": _labelmap([(2, 3, 3)])}, name="Masks 2",
    )  # fmt: skip
    with pytest.raises(InvalidInput) as info:
        actions.import_cases(admin2, study2, manifest2)
    assert "more than the limit of 20 " in info.value.details[0]
