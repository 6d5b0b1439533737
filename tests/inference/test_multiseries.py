"""Multi-series classifier: resampling onto the reference grid by DICOM geometry, the channels, training, Platt
scaling of the mean logit (fitted on calibration patients only, applied at inference, the AUC unchanged, old
weights still read), the stored model, a case without a required phase, precompute with ``--classifier
multi-series`` on multi-phase phantoms."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from inference.pipeline.multiseries import (
    AIR_HU,
    MissingSeriesError,
    MultiSeriesClassifier,
    check_series,
    multiseries_crops,
    resample_slices,
)
from tests.inference.calibrated import (
    CAL_FRACTION,
    VAL_FRACTION,
    check_calibration,
    check_card_reports_calibration,
    check_split,
)

HERE = Path(__file__).resolve().parent
MODELS = HERE.parents[1] / "fixtures" / "models"
PHASES = ("arterial", "delayed")


@dataclass
class Image:
    """The part of an imaging.series.Volume the classifier reads."""

    hu: np.ndarray
    affine: np.ndarray
    spacing_mm: tuple[float, float, float]
    frame_of_reference_uid: str = "1.2.826.0.1.3680043.10.1"


def affine(columns: list[tuple[float, float, float]], origin: tuple[float, float, float]) -> np.ndarray:
    """(k, j, i, 1) -> LPS: the LPS step of one k, j and i, then the origin."""
    out = np.eye(4)
    out[:3, :3] = np.array(columns, dtype=float).T
    out[:3, 3] = origin
    return out


def linear_hu(lps: np.ndarray) -> np.ndarray:
    x, y, z = lps[..., 0], lps[..., 1], lps[..., 2]
    return 0.5 * x - 0.25 * y + 2.0 * z + 100.0


def image_of(fn, shape: tuple[int, int, int], aff: np.ndarray, spacing) -> Image:
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1).astype(float)
    lps = idx @ aff[:3, :3].T + aff[:3, 3]
    return Image(fn(lps).astype(np.float32), aff, spacing)


def test_another_grid_is_resampled_by_patient_position_and_uncovered_voxels_are_air():
    # Reference: 2.5 mm slices going up, 1.5 mm pixels, rows along y. Source: 5 mm slices going down, 1 mm pixels,
    # rows along x (transposed), another origin: a linear HU field must come back exactly where the source covers.
    ref_aff = affine([(0, 0, 2.5), (0, 1.5, 0), (1.5, 0, 0)], (0.0, 0.0, 0.0))
    reference = image_of(linear_hu, (8, 10, 12), ref_aff, (2.5, 1.5, 1.5))
    src_aff = affine([(0, 0, -5.0), (1.0, 0, 0), (0, 1.0, 0)], (-2.0, -3.0, 20.0))
    source = image_of(linear_hu, (4, 21, 19), src_aff, (5.0, 1.0, 1.0))  # z 20, 15, 10, 5: covers 2.5-22.5 mm

    out = resample_slices(source, reference, [0, 1, 2, 5, 7])
    assert out.shape == (5, 10, 12) and out.dtype == np.float32
    np.testing.assert_allclose(out[2:], reference.hu[[2, 5, 7]], atol=1e-3)  # z 5, 12.5, 17.5 mm
    assert np.all(out[0] == AIR_HU)  # z 0 mm: more than half a slice below the source's last slice
    np.testing.assert_allclose(out[1], linear_hu_at(ref_aff, 1, z=5.0), atol=1e-3)  # z 2.5: the edge slice's value


def linear_hu_at(aff: np.ndarray, k: int, *, z: float) -> np.ndarray:
    jj, ii = np.meshgrid(np.arange(10), np.arange(12), indexing="ij")
    lps = np.stack([np.full(jj.shape, float(k)), jj, ii], axis=-1).astype(float) @ aff[:3, :3].T + aff[:3, 3]
    lps[..., 2] = z
    return linear_hu(lps)


def test_the_same_grid_is_copied_and_another_frame_of_reference_is_refused():
    aff = affine([(0, 0, 2.5), (0, 1.5, 0), (1.5, 0, 0)], (1.0, 2.0, 3.0))
    reference = image_of(linear_hu, (6, 8, 8), aff, (2.5, 1.5, 1.5))
    same = Image(reference.hu + 7, aff, (2.5, 1.5, 1.5))
    np.testing.assert_array_equal(resample_slices(same, reference, [1, 4]), reference.hu[[1, 4]] + 7)
    other = Image(reference.hu, aff, (2.5, 1.5, 1.5), frame_of_reference_uid="1.2.3.4")
    with pytest.raises(ValueError, match=r"different frames of reference.*no registration"):
        resample_slices(other, reference, [1])


def test_a_missing_phase_is_named_with_the_case():
    check_series(["portal-venous", "arterial", "delayed"], ["portal-venous", "arterial", "delayed"], "P001-L1")
    with pytest.raises(MissingSeriesError, match=r"^case P007-L2: no delayed series \(.*the case has portal-venous"):
        check_series(["portal-venous", "arterial"], ["portal-venous", "arterial", "delayed"], "P007-L2")
    with pytest.raises(MissingSeriesError, match="no arterial and no delayed series"):
        check_series(["portal-venous"], ["portal-venous", "arterial", "delayed"])


@pytest.fixture(scope="module")
def multiphase(tmp_path_factory):
    """6 phantom patients (14 lesions) in portal-venous, arterial (5 mm slices, shorter) and delayed phases."""
    from fixtures.phantom import generate_demo_study

    data = tmp_path_factory.mktemp("multiphase")
    generate_demo_study(data, seed=5, n_patients=6, n_lesions=14, extra_series_roles=PHASES)
    return data


@pytest.fixture(scope="module")
def volumes(multiphase):
    from imaging.series import read_series

    folder = multiphase / "series" / "P001"
    return {
        "portal-venous": read_series(folder / "CT_PORTAL_VENOUS"),
        "arterial": read_series(folder / "CT_ARTERIAL"),
        "delayed": read_series(folder / "CT_DELAYED"),
    }


def test_the_phantom_phases_land_on_the_portal_venous_liver(multiphase, volumes):
    from fixtures.phantom import PHASES as PHANTOM_PHASES
    from fixtures.phantom import Tissue

    pv = volumes["portal-venous"]
    liver = np.load(multiphase / "masks" / "P001.npz")["liver_mask"]
    assert volumes["arterial"].shape[0] < pv.shape[0]  # thicker slices: a real resampling
    slices = list(range(pv.shape[0] - 4))  # the arterial phase covers fewer slices at the end
    for role in PHASES:
        planes = resample_slices(volumes[role], pv, slices)
        diff = np.median((planes - pv.hu[slices])[liver[slices]])
        assert diff == pytest.approx(PHANTOM_PHASES[role].tissue_delta_hu[Tissue.LIVER], abs=3.0), role


@pytest.fixture(scope="module")
def trained(multiphase, tmp_path_factory):
    from inference.pipeline.train_multiseries_classifier import main

    out = tmp_path_factory.mktemp("multiseries-model")
    argv = ["--data", str(multiphase), "--out", str(out), "--epochs", "1", "--val-fraction", "0.5", "--seed", "3"]
    assert main([*argv, "--cal-fraction", "0", "--no-progress"]) == 0
    return out / "multiseries_classifier.pt"


def test_training_writes_weights_and_a_card_with_held_out_figures(trained):
    card = json.loads(trained.with_suffix(".json").read_text())
    assert card["sha256"] == hashlib.sha256(trained.read_bytes()).hexdigest()
    assert card["name"] == "multiseries-classifier-demo" and card["config"]["roles"] == ["portal-venous", *PHASES]
    metrics = card["validation_metrics"]
    assert 0.0 <= metrics["auc"] <= 1.0 and "DeLong" in metrics["auc_method"] and len(metrics["auc_ci_95"]) == 2
    assert "no registration" in card["series"]["alignment"]
    # --cal-fraction 0: no calibration, and the card says so
    assert "calibration" not in card["config"]
    assert card["calibration"] == "none: no calibration split (--cal-fraction 0)"


def test_the_channels_are_the_phases_and_the_probability_their_mean_logit(trained, volumes, multiphase):
    model = MultiSeriesClassifier(trained, threads=1)
    assert model.roles == ["portal-venous", *PHASES] and model.device == "cpu"
    pv = volumes["portal-venous"]
    idx = np.argwhere(np.load(multiphase / "masks" / "P001.npz")["lesion_labels"] == 1)
    centre, z_range = idx.mean(axis=0), (int(idx[:, 0].min()), int(idx[:, 0].max()))
    crops = multiseries_crops(volumes, centre, 15.0, model.config, z_range=z_range)
    assert crops.shape == (5, 3, 48, 48)
    assert not np.allclose(crops[:, 0], crops[:, 1]) and not np.allclose(crops[:, 0], crops[:, 2])
    prob, logits = model.predict(pv.hu, pv.spacing_mm, centre, 15.0, z_range=z_range, series=volumes)
    assert logits.shape == (5,) and prob == pytest.approx(1 / (1 + np.exp(-np.mean(model.logits(crops)))))


def test_the_crops_of_the_box_around_the_lesion_are_those_of_whole_planes(volumes):
    from inference.pipeline.classify import crop_slices
    from inference.pipeline.multiseries import MULTISERIES_CONFIG, crop_box, crops_from_planes, reference_planes

    pv = volumes["portal-venous"]
    roles, config = MULTISERIES_CONFIG["roles"], MULTISERIES_CONFIG
    for centre, diameter in (((20.0, 128.3, 127.6), 12.0), ((30.0, 6.0, 250.0), 38.0)):  # one at the image's edge
        slices = crop_slices(centre[0], None, diameter, pv.spacing_mm[0], config["n_slices"], pv.shape[0])
        whole = crops_from_planes(
            reference_planes(volumes, roles, "portal-venous", slices), pv.spacing_mm, centre[1:], diameter, config
        )
        box = crop_box(centre[1:], diameter, pv.spacing_mm, config, pv.shape)
        assert box[0].stop - box[0].start < pv.shape[1] / 2  # a box, not the plane
        np.testing.assert_allclose(multiseries_crops(volumes, centre, diameter, config), whole, atol=1e-5)


def test_a_centre_on_another_primary_series_is_carried_over_by_position(trained, volumes, multiphase):
    model = MultiSeriesClassifier(trained, threads=1)
    pv, arterial = volumes["portal-venous"], volumes["arterial"]
    centre = np.argwhere(np.load(multiphase / "masks" / "P001.npz")["lesion_labels"] == 1).mean(axis=0)
    on_pv = model.predict(pv.hu, pv.spacing_mm, centre, 15.0, series=volumes)
    arterial_centre = arterial.lps_to_index(pv.index_to_lps(centre))
    on_arterial = model.predict(
        arterial.hu, arterial.spacing_mm, arterial_centre, 15.0, series=volumes, primary_role="arterial"
    )
    np.testing.assert_allclose(on_arterial[1], on_pv[1], rtol=1e-5, atol=1e-5)


def test_a_case_without_a_phase_is_refused_and_missing_weights_name_the_command(trained, volumes, tmp_path):
    model = MultiSeriesClassifier(trained, threads=1)
    pv = volumes["portal-venous"]
    partial = {role: volumes[role] for role in ("portal-venous", "arterial")}
    with pytest.raises(MissingSeriesError, match="no delayed series"):
        model.predict(pv.hu, pv.spacing_mm, (20, 128, 128), 15.0, series=partial)
    with pytest.raises(FileNotFoundError, match="train_multiseries_classifier"):
        MultiSeriesClassifier(tmp_path / "multiseries_classifier.pt")


def test_the_shipped_demo_model_matches_its_card_and_is_small():
    model = MultiSeriesClassifier(MODELS / "multiseries_classifier.pt", threads=1)
    card = json.loads((MODELS / "multiseries_classifier.json").read_text())
    assert model.weights_sha256 == card["sha256"] and model.name == card["name"]
    assert card["weights_bytes"] < 2_000_000 and "NOT for real CT" in card["intended_use"]
    assert model.config["calibration"] == card["config"]["calibration"] and model.config["calibration"]["slope"] > 0
    check_card_reports_calibration(card)


@pytest.fixture(scope="module")
def calibrated(calibration_phantoms, tmp_path_factory):
    from inference.pipeline.train_multiseries_classifier import train

    out = tmp_path_factory.mktemp("multiseries-calibrated")
    card = train(
        calibration_phantoms, out, epochs=6, val_fraction=VAL_FRACTION, cal_fraction=CAL_FRACTION, seed=1,
        progress=False,
    )  # fmt: skip
    return out / "multiseries_classifier.pt", card


def _raw_scores(model: MultiSeriesClassifier, data: Path) -> tuple[list[str], list[int], np.ndarray]:
    """Every manifest lesion's patient, truth and mean crop logit by the loaded model (the crops inference takes)."""
    from inference.pipeline.train_multiseries_classifier import load_multiseries_cases

    cases = load_multiseries_cases(data, model.config, progress=False)
    raw = np.array([float(np.mean(model.logits(c.val_crops))) for c in cases])
    return [c.patient for c in cases], [c.truth for c in cases], raw


def _predict_p001_l1(model: MultiSeriesClassifier, data: Path) -> tuple[float, float]:
    """``(probability, mean logit)`` of lesion P001-L1 through ``predict`` with the case's three series."""
    from imaging.series import read_series

    folder = data / "series" / "P001"
    series = {role: read_series(folder / f"CT_{role.upper().replace('-', '_')}") for role in model.roles}
    pv = series["portal-venous"]
    idx = np.argwhere(np.load(data / "masks" / "P001.npz")["lesion_labels"] == 1)
    z_range = (int(idx[:, 0].min()), int(idx[:, 0].max()))
    prob, logits = model.predict(pv.hu, pv.spacing_mm, idx.mean(axis=0), 15.0, z_range=z_range, series=series)
    return prob, float(np.mean(logits))


def test_the_calibration_is_fitted_on_its_own_patients_and_applied_at_inference(calibrated, calibration_phantoms):
    path, card = calibrated
    model = MultiSeriesClassifier(path, threads=1)
    cal_params = model.config["calibration"]
    assert cal_params == card["config"]["calibration"] and card["calibration"].startswith("Platt scaling of the mean")
    patients, truth, raw = _raw_scores(model, calibration_phantoms)
    val, cal = check_split(card, patients, seed=1)
    check_calibration(card, cal_params, truth, raw, patients, val, cal)
    prob, mean_logit = _predict_p001_l1(model, calibration_phantoms)
    assert prob == pytest.approx(1 / (1 + np.exp(-(cal_params["slope"] * mean_logit + cal_params["intercept"]))))
    assert prob != pytest.approx(1 / (1 + np.exp(-mean_logit)))


def test_weights_without_calibration_give_the_sigmoid_of_the_mean_logit(calibrated, calibration_phantoms, tmp_path):
    import torch

    path, _ = calibrated
    payload = torch.load(path, weights_only=True)
    del payload["config"]["calibration"]  # as saved before calibration
    torch.save(payload, tmp_path / "multiseries_classifier.pt")
    old = MultiSeriesClassifier(tmp_path / "multiseries_classifier.pt", threads=1)
    prob, mean_logit = _predict_p001_l1(old, calibration_phantoms)
    assert mean_logit == _predict_p001_l1(MultiSeriesClassifier(path, threads=1), calibration_phantoms)[1]
    assert prob == pytest.approx(1 / (1 + np.exp(-mean_logit)))


def _import(tmp_path, name: str, roles: tuple[str, ...]):
    from fixtures.phantom import generate_demo_study
    from readerstudy.studies import actions
    from tests.factories import make_user

    manifest = generate_demo_study(tmp_path / name, seed=5, n_patients=2, n_lesions=4, extra_series_roles=roles)
    admin = make_user(f"admin-{name}", superuser=True)
    study = actions.create_study(admin, name, seed=3)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "Aided", shows_dl=True)
    actions.import_cases(admin, study, manifest)
    return study


@pytest.mark.django_db
def test_precompute_with_the_multi_series_classifier_on_the_demo_phantoms(tmp_path, capsys):
    from django.core.management import call_command

    from inference.models import PrecomputeRun, Prediction

    study = _import(tmp_path, "Phases", PHASES)
    call_command("precompute", "--study", study.name, "--classifier", "multi-series", "--no-progress")
    assert "4 predicted, 0 unchanged (skipped), 0 failed" in capsys.readouterr().out
    sha = json.loads((MODELS / "multiseries_classifier.json").read_text())["sha256"]
    unet_sha = json.loads((MODELS / "phantom_unet.json").read_text())["sha256"]
    predictions = list(Prediction.objects.filter(case__study=study))
    assert len(predictions) == 4
    for p in predictions:
        assert p.model_name == "phantom-unet+multiseries-classifier-demo" and p.device == "cpu"
        assert p.weights_sha256 == hashlib.sha256((unet_sha + sha).encode()).hexdigest()
        assert 0.0 <= p.probability <= 1.0
    assert PrecomputeRun.objects.get(study=study).classifier == "multi-series"
    call_command("precompute", "--study", study.name, "--classifier", "multi-series", "--no-progress")
    assert "0 predicted, 4 unchanged (skipped), 0 failed" in capsys.readouterr().out


@pytest.mark.django_db
def test_precompute_names_each_case_and_the_phase_it_lacks(tmp_path, capsys):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from inference.models import PrecomputeRun, Prediction

    study = _import(tmp_path, "Arterial only", ("arterial",))
    with pytest.raises(CommandError, match="4 case\\(s\\) failed"):
        call_command("precompute", "--study", study.name, "--classifier", "multi-series", "--no-progress")
    err = capsys.readouterr().err
    for case in study.cases.all():
        assert f"MissingSeriesError: case {case.case_id}: no delayed series" in err
    assert not Prediction.objects.filter(case__study=study).exists()
    run = PrecomputeRun.objects.get(study=study)
    assert run.status == "failed" and all("no delayed series" in e for e in run.errors)
