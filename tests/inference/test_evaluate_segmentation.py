"""evaluate_predictions with reference masks: every metric per structure and lesion stratum, NIfTI and DICOM SEG
references, predicted vessel masks given to the command, the table and the JSON."""

import json

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from fixtures.phantom import generate_demo_study
from inference.evaluation import segmentation_evaluation, series_grid
from readerstudy.studies import actions
from readerstudy.studies.models import ImageSeries
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(tmp_path):
    manifest = generate_demo_study(tmp_path / "data", seed=5, n_patients=2, n_lesions=4)
    admin = make_user("admin", superuser=True)
    study = actions.create_study(admin, "Evaluate", seed=3)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "Aided", shows_dl=True)
    actions.import_cases(admin, study, manifest)
    call_command("precompute", "--study", study.name, "--no-progress")
    return study


def _nii(array, grid, path):
    import nibabel as nib

    ras_ijk = np.diag([-1.0, -1.0, 1.0, 1.0]) @ grid.affine[:, [2, 1, 0, 3]]
    nib.save(nib.Nifti1Image(np.asarray(array, np.uint8).transpose(2, 1, 0).copy(), ras_ijk), path)


def _vessel(shape, gap=False):
    """A straight vessel along z through the middle of the liver region, optionally cut in the middle."""
    m = np.zeros(shape, bool)
    z0, z1 = shape[0] // 4, 3 * shape[0] // 4
    cy, cx = shape[1] // 2, shape[2] // 2
    yy, xx = np.ogrid[: shape[1], : shape[2]]
    m[z0:z1] = ((yy - cy) ** 2 + (xx - cx) ** 2 <= 4)[None]
    if gap:
        m[(z0 + z1) // 2 - 1 : (z0 + z1) // 2 + 2] = False
    return m


def test_reference_nifti_and_predicted_vessels(study, tmp_path, capsys):
    masks_npz = tmp_path / "data" / "masks"
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    for series in ImageSeries.objects.filter(cases__study=study).distinct().select_related("patient"):
        name = series.patient.pseudonym
        grid = series_grid(series)
        npz = np.load(masks_npz / f"{name}.npz")
        (ref / name).mkdir(parents=True)
        _nii(npz["liver_mask"], grid, ref / name / "liver.nii.gz")
        _nii(npz["lesion_labels"], grid, ref / name / "lesions.nii.gz")
        _nii(_vessel(grid.shape), grid, ref / name / "vessels.nii.gz")
        (pred / name).mkdir(parents=True)
        _nii(_vessel(grid.shape, gap=True), grid, pred / name / "vessels.nii.gz")
    out = tmp_path / "evaluation.json"
    call_command(
        "evaluate_predictions", "--study", study.name, "--masks", str(ref), "--pred-masks", str(pred),
        "--nsd-tolerance-mm", "1.5", "--no-progress", "--json", str(out),
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "NSD at 1.5 mm" in printed and "Lesions by size stratum" in printed
    for name in ("liver", "vessels", "lesions", "<=10", "10-30", ">30", "all"):
        assert f"\n{name}" in printed
    result = json.loads(out.read_text())["segmentation"]
    assert result["n_series"] == 2 and result["nsd_tolerance_mm"] == 1.5
    structures = result["structures"]
    assert set(structures) == {"liver", "vessels", "lesions"}
    # the vessel prediction is the reference cut in two: Dice barely moves, clDice drops, one component too many
    vessels = structures["vessels"]
    assert vessels["n_cases"] == 2 and vessels["dice_mean"] > 0.9
    assert vessels["cldice_mean"] < 1.0 and vessels["b0_error_mean"] == 1.0
    assert structures["liver"]["dice_mean"] > 0.5  # the demo UNet on phantoms (plumbing: a flip would give ~0)
    for row in result["cases"].values():
        assert row["structures"]["vessels"]["betti_ref"] == [1, 0, 0]
        assert row["structures"]["vessels"]["betti_pred"] == [2, 0, 0]
    strata = result["lesions_by_stratum"]
    assert strata["all"]["n"] == sum(strata[s]["n"] for s in ("<=10", "10-30", ">30")) > 0
    detected = [lesion for c in result["cases"].values() for lesion in c["lesions"] if lesion["detected"]]
    missed = [lesion for c in result["cases"].values() for lesion in c["lesions"] if not lesion["detected"]]
    assert all(lesion["hd95_mm"] is not None for lesion in detected)
    assert all(lesion["hd95_mm"] is None and lesion["dice"] == 0.0 for lesion in missed)  # inf in JSON: null


def test_dicom_seg_reference_equals_npz_reference(study, tmp_path):
    """The stored predictions' own DICOM SEG as the reference: by geometry (import remapped its UIDs) the liver
    and lesions agree perfectly with the stored labelmap. Then the command's refusals."""
    from inference.actions import shown_prediction

    ref = tmp_path / "seg"
    ref.mkdir()
    for series in ImageSeries.objects.filter(cases__study=study).distinct().select_related("patient"):
        prediction = shown_prediction(series.cases.first())
        with prediction.seg.open("rb") as f:
            (ref / f"{series.patient.pseudonym}.dcm").write_bytes(f.read())
    result = segmentation_evaluation(study, ref, topology=False)
    assert result["structures"]["liver"]["dice_mean"] == 1.0
    assert result["structures"]["liver"]["hd95_mm_median"] == 0.0
    assert result["structures"]["liver"]["nsd_mean"] == 1.0
    lesions = result["structures"].get("lesions")
    if lesions is not None:  # the demo UNet found lesions in these phantoms
        assert lesions["dice_mean"] == 1.0
        assert result["lesions_by_stratum"]["all"]["false_positives"] == 0
    assert "cldice_mean" not in result["structures"]["liver"]
    # refusals (in this test: the study fixture precomputes, which takes a while)
    with pytest.raises(CommandError, match="does not exist"):
        call_command("evaluate_predictions", "--study", study.name, "--masks", str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CommandError, match="no reference masks"):
        call_command("evaluate_predictions", "--study", study.name, "--masks", str(tmp_path / "empty"))
    series = ImageSeries.objects.filter(cases__study=study).select_related("patient").first()
    (tmp_path / "bad").mkdir()
    np.savez(tmp_path / "bad" / f"{series.patient.pseudonym}.npz", liver_mask=np.zeros((2, 2, 2), bool))
    with pytest.raises(CommandError, match="shape"):
        call_command("evaluate_predictions", "--study", study.name, "--masks", str(tmp_path / "bad"))
