"""Radiomics backend: feature values against hand computations and pyradiomics 3.0.1, the trained model's file and
card, its arithmetic against scikit-learn, its Platt scaling (fitted on calibration patients only, applied at
inference, the AUC unchanged, a model file without it still read), and precompute with ``--classifier radiomics``."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

from inference.pipeline.radiomics import RadiomicsClassifier, linear_logit, load_model_file, sphere_mask
from inference.pipeline.radiomics_features import (
    DEFAULT_PARAMS,
    FEATURES,
    extract,
    feature_names,
    firstorder_features,
    glcm_features,
    glcm_matrices,
    load_params,
    preprocess,
    shape_features,
    validate_params,
)
from tests.inference.calibrated import (
    CAL_FRACTION,
    VAL_FRACTION,
    check_calibration,
    check_card_reports_calibration,
    check_split,
)

HERE = Path(__file__).resolve().parent
ALL = {"featureClass": {name: None for name in FEATURES}}  # every feature, no pre-processing


def no_preprocessing(**setting):
    return {"setting": {"binWidth": 25, **setting}, **ALL}


# --- hand computations on tiny masks ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 6])
def test_a_voxelised_cube_has_the_hand_computed_mesh(n):
    """Marching cubes at 0.5 turns an n^3 voxel cube (1 mm) into the n mm box with chamfered edges and corners:
    faces (n-1)^2 each, 12 edge strips sqrt(1/2) wide and n-1 long, 8 corner triangles of side sqrt(1/2)
    (area sqrt(3)/8 each); the volume loses 12 prisms of cross-section 1/8 along n-1 and 8 corner cubes of 1/8
    that keep only a tetrahedron of 1/48."""
    mask = np.zeros((n + 4,) * 3, dtype=bool)
    mask[2 : 2 + n, 2 : 2 + n, 2 : 2 + n] = True
    shape = shape_features(mask, (1.0, 1.0, 1.0))
    area = 6 * (n - 1) ** 2 + 12 * (n - 1) * math.sqrt(0.5) + math.sqrt(3)
    volume = n**3 - 12 * (n - 1) / 8 - 8 * (1 / 8 - 1 / 48)
    assert shape["VoxelVolume"] == n**3
    assert shape["SurfaceArea"] == pytest.approx(area, rel=1e-6)
    assert shape["MeshVolume"] == pytest.approx(volume, rel=1e-6)
    assert shape["SurfaceVolumeRatio"] == pytest.approx(area / volume, rel=1e-6)
    assert shape["Sphericity"] == pytest.approx((36 * math.pi * volume**2) ** (1 / 3) / area, rel=1e-6)
    # Voxel centres 0..n-1 on each axis: variance (n^2 - 1)/12, axis length 4 sqrt of it; a cube is round.
    assert shape["MajorAxisLength"] == pytest.approx(4 * math.sqrt((n * n - 1) / 12), rel=1e-9)
    assert shape["Elongation"] == pytest.approx(1.0) and shape["Flatness"] == pytest.approx(1.0)
    # Mesh vertices sit half a voxel out, except at the chamfered corners: (n - 1, n - 1, n - 0) apart.
    assert shape["Maximum3DDiameter"] == pytest.approx(math.sqrt(2 * (n - 1) ** 2 + n**2), rel=1e-6)


def test_spacing_scales_volumes_and_lengths():
    mask = np.zeros((8, 8, 8), dtype=bool)
    mask[2:6, 2:5, 2:4] = True
    iso = shape_features(mask, (1.0, 1.0, 1.0))
    scaled = shape_features(mask, (2.0, 2.0, 2.0))
    assert scaled["VoxelVolume"] == 8 * iso["VoxelVolume"] == 8 * 24
    assert scaled["MeshVolume"] == pytest.approx(8 * iso["MeshVolume"])
    assert scaled["SurfaceArea"] == pytest.approx(4 * iso["SurfaceArea"])
    assert scaled["MajorAxisLength"] == pytest.approx(2 * iso["MajorAxisLength"])


def test_a_constant_region_has_the_mean_energy_and_texture_of_one_gray_level():
    hu = np.full((10, 10, 10), -20.0)
    mask = np.zeros(hu.shape, dtype=bool)
    mask[2:7, 3:7, 2:8] = True
    hu[mask] = 60.0
    f = extract(hu, mask, (2.0, 1.0, 1.0), no_preprocessing())
    n = int(mask.sum())
    first = {k.removeprefix("original_firstorder_"): v for k, v in f.items() if "firstorder" in k}
    assert first["Mean"] == first["Median"] == first["Minimum"] == first["Maximum"] == 60.0
    assert first["Energy"] == n * 60.0**2 and first["TotalEnergy"] == n * 60.0**2 * 2.0
    assert first["RootMeanSquared"] == pytest.approx(60.0)
    assert first["Variance"] == first["Range"] == first["InterquartileRange"] == 0.0
    assert first["Uniformity"] == 1.0 and abs(first["Entropy"]) < 1e-12
    glcm = {k.removeprefix("original_glcm_"): v for k, v in f.items() if "glcm" in k}
    assert glcm["JointEnergy"] == glcm["MaximumProbability"] == glcm["Idm"] == glcm["Id"] == 1.0
    assert glcm["Contrast"] == glcm["DifferenceAverage"] == glcm["ClusterTendency"] == 0.0
    assert glcm["Correlation"] == 1.0  # pyradiomics' value for a flat region (sigma 0)
    assert glcm["JointAverage"] == 1.0  # 60 HU is the ROI's first 25 HU bin
    assert f["original_shape_VoxelVolume"] == n * 2.0


def test_first_order_of_four_values():
    f = firstorder_features(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 1, 1, 1]), 1.0)
    assert f["Mean"] == 2.5 and f["Median"] == 2.5 and f["Range"] == 3.0
    assert f["Variance"] == 1.25 and f["Energy"] == 30.0 and f["RootMeanSquared"] == pytest.approx(math.sqrt(7.5))
    assert f["MeanAbsoluteDeviation"] == 1.0 and f["Skewness"] == 0.0
    assert f["Kurtosis"] == pytest.approx((0.5 * (1.5**4 + 0.5**4)) / 1.25**2)  # m4 / m2^2, not excess
    assert f["10Percentile"] == pytest.approx(1.3) and f["90Percentile"] == pytest.approx(3.7)  # linear
    assert f["InterquartileRange"] == pytest.approx(1.5)


def test_glcm_of_a_three_voxel_line_by_hand():
    """Gray levels 1, 2, 2 in a row: pairs (1,2), (2,2) in one direction; symmetric counts [[0,1],[1,2]] / 4."""
    levels = np.array([[[1, 2, 2]]])
    matrices, gray = glcm_matrices(levels, levels > 0)
    assert matrices.shape == (2, 2, 1) and gray.tolist() == [1, 2]
    assert matrices[..., 0].tolist() == [[0, 1], [1, 2]]
    f = glcm_features(matrices, gray)
    assert f["Contrast"] == pytest.approx(0.5)
    assert f["JointEnergy"] == pytest.approx(2 * 0.25**2 + 0.5**2)
    assert f["JointAverage"] == pytest.approx(1 * 0.25 + 2 * 0.75)
    assert f["Autocorrelation"] == pytest.approx(2 * (1 * 2 * 0.25) + 2 * 2 * 0.5)
    assert f["MaximumProbability"] == 0.5
    assert f["Idm"] == pytest.approx(0.5 + 0.5 / 2) and f["Id"] == pytest.approx(0.5 + 0.5 / 2)
    assert f["InverseVariance"] == pytest.approx(0.5)
    assert f["JointEntropy"] == pytest.approx(1.5)  # -(2 * 0.25 log2 0.25 + 0.5 log2 0.5)
    assert f["DifferenceAverage"] == pytest.approx(0.5)


def test_a_single_voxel_has_no_texture_or_axes():
    mask = np.zeros((5, 5, 5), dtype=bool)
    mask[2, 2, 2] = True
    f = extract(np.full(mask.shape, 50.0), mask, (1.0, 1.0, 1.0), no_preprocessing())
    assert math.isnan(f["original_glcm_Contrast"]) and math.isnan(f["original_shape_Elongation"])
    assert f["original_firstorder_Mean"] == 50.0 and f["original_shape_VoxelVolume"] == 1.0


# --- against pyradiomics ------------------------------------------------------------------------------------------


def reference_arrays():
    i, j, k = np.indices((10, 11, 12))
    box_img = ((i * 7 + j * 13 + k * 29) % 250 - 50).astype(float)
    box = np.zeros(box_img.shape, dtype=bool)
    box[2:8, 3:9, 2:10] = True
    box[4, 3, 2] = box[7, 8, 9] = False
    z, y, x = np.mgrid[:20, :30, :30]
    ellipsoid = ((z - 10) * 2.0) ** 2 + ((y - 15) * 1.2) ** 2 + ((x - 15) * 1.2) ** 2 <= 10**2
    ell_img = 60 + 30 * np.sin(x / 3.0) + 20 * np.cos(y / 2.0 + z)
    return {"box": (box_img, box), "ellipsoid": (ell_img, ellipsoid)}


@pytest.mark.parametrize("name", ["box", "ellipsoid"])
def test_every_feature_equals_pyradiomics(name):
    reference = json.loads((HERE / "pyradiomics_reference.json").read_text())[name]
    image, mask = reference_arrays()[name]
    ours = extract(image, mask, reference["spacing_zyx"], no_preprocessing())
    assert set(ours) == set(reference["features"]) and len(ours) == 51
    for key, value in reference["features"].items():
        assert ours[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


# --- pre-processing and settings ----------------------------------------------------------------------------------


def test_resampling_keeps_a_sphere_and_resegmentation_only_narrows_the_intensity_mask():
    spacing = (2.5, 1.5, 1.5)
    mask = sphere_mask((24, 40, 40), spacing, (12, 20, 20), 20.0)
    hu = np.full(mask.shape, 80.0)
    hu[12, 20, 20:23] = 600.0  # a streak inside the lesion
    setting = load_params()["setting"]
    image, morph, roi, new_spacing = preprocess(hu, mask, spacing, setting)
    assert new_spacing == (1.0, 1.0, 1.0)
    volume = 4 / 3 * math.pi * 10.0**3
    assert abs(morph.sum() - volume) / volume < 0.08
    assert roi.sum() < morph.sum() and (image[roi] <= 400).all() and not (roi & ~morph).any()
    f = extract(hu, mask, spacing, load_params())
    assert abs(f["original_shape_MeshVolume"] - volume) / volume < 0.08
    assert f["original_firstorder_Maximum"] <= 400


def test_the_stored_settings_are_the_documented_ibsi_ones():
    params = load_params(DEFAULT_PARAMS)
    s = params["setting"]
    assert s["resampledPixelSpacing"] == [1.0, 1.0, 1.0] and s["binWidth"] == 25 and s["normalize"] is False
    assert s["resegmentRange"] == [-100, 400] and s["interpolator"] == "sitkLinear"
    assert len(feature_names(params)) == sum(len(v) for v in FEATURES.values())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"setting": {"normalize": True}}, "normalize"),
        ({"setting": {"binCount": 32}}, "not implemented"),
        ({"setting": {"distances": [1, 2]}}, "distances"),
        ({"imageType": {"Wavelet": {}}}, "only Original"),
        ({"featureClass": {"glrlm": None}}, "featureClass 'glrlm'"),
        ({"featureClass": {"glcm": ["MCC"]}}, "MCC"),
    ],
)
def test_settings_this_implementation_does_not_do_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        validate_params({"setting": {}, **ALL, **change})


# --- training, the stored model, inference ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(training_phantoms, tmp_path_factory):
    from inference.pipeline.train_radiomics import main

    out = tmp_path_factory.mktemp("radiomics-model")
    argv = ["--data", str(training_phantoms), "--out", str(out), "--folds", "2", "--test-fraction", "0.34"]
    assert main([*argv, "--cal-fraction", "0", "--seed", "3", "--no-progress"]) == 0
    return out / "radiomics_classifier.yaml"


def test_training_writes_the_model_and_its_card(trained):
    card = json.loads(trained.with_suffix(".json").read_text())
    assert card["sha256"] == hashlib.sha256(trained.read_bytes()).hexdigest()
    assert card["name"] == "radiomics-l1-logistic-demo" and card["version"] == "1.0"
    cv, held_out = card["cross_validation"], card["validation_metrics"]
    assert cv["folds"] == 2 and 0.0 <= cv["auc"] <= 1.0 and len(cv["auc_ci_95"]) == 2
    assert "DeLong" in cv["auc_method"] and "DeLong" in held_out["auc_method"]
    assert 0.0 <= held_out["auc"] <= 1.0 and 0.0 <= held_out["accuracy_at_0.5"] <= 1.0
    assert card["features"]["extracted"] == 51 and card["config"]["extraction"]["setting"]["binWidth"] == 25
    doc = load_model_file(trained)
    assert list(doc["model"]["selected"]) == list(card["features"]["selected"])
    # --cal-fraction 0: no calibration, and the card says so
    assert "calibration" not in doc and card["calibration"] == "none: no calibration split (--cal-fraction 0)"
    assert card["calibration_data"] == "0 lesions of 0 other patients"


def test_the_model_arithmetic_is_scikit_learn_s(training_phantoms):
    """linear_logit on the exported block gives the fitted pipeline's predict_proba (NaNs imputed alike)."""
    from inference.pipeline.train_radiomics import export_model, make_pipeline

    rng = np.random.default_rng(1)
    names = [f"f{k}" for k in range(8)]
    x = rng.normal(size=(40, 8)) * [1, 10, 100, 1, 1, 1, 1, 1e6]
    x[:, 3] = x[:, 2] * 2 + 0.01 * rng.normal(size=40)  # redundant: filtered
    x[:, 4] = 7.0  # constant: filtered
    y = (x[:, 0] + x[:, 1] / 10 + rng.normal(size=40) > 0).astype(int)
    x[5, 0] = np.nan
    pipe = make_pipeline(1.0, 0).fit(x, y)
    model = export_model(pipe, names)
    assert "f4" not in model["selected"] and not {"f2", "f3"} <= set(model["selected"])
    ours = [linear_logit(dict(zip(names, row, strict=True)), model) for row in x]
    expected = pipe.decision_function(x)
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-10)


def test_the_loaded_model_predicts_a_phantom_lesion(trained, training_phantoms):
    from imaging.series import read_series

    model = RadiomicsClassifier(trained)
    assert model.weights_sha256 == json.loads(trained.with_suffix(".json").read_text())["sha256"]
    vol = read_series(training_phantoms / "series" / "P001" / "CT_PORTAL_VENOUS")
    labels = np.load(training_phantoms / "masks" / "P001.npz")["lesion_labels"]
    mask = labels == 1
    prob, logit = model.predict(vol.hu, vol.spacing_mm, np.argwhere(mask).mean(axis=0), 10.0, mask=mask)
    assert 0.0 <= prob <= 1.0 and prob == pytest.approx(1 / (1 + math.exp(-logit[0])))
    # Without a mask: a sphere of the diameter at the centre, still a probability.
    prob2, _ = model.predict(vol.hu, vol.spacing_mm, np.argwhere(mask).mean(axis=0), 10.0)
    assert 0.0 <= prob2 <= 1.0


def test_a_broken_model_file_is_refused(trained, tmp_path):
    import yaml

    doc = yaml.safe_load(trained.read_text())
    doc["model"]["coef"] = doc["model"]["coef"] + [1.0]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match="inconsistent lengths"):
        RadiomicsClassifier(bad)
    doc = yaml.safe_load(trained.read_text())
    doc["calibration"] = {"method": "platt", "slope": float("nan"), "intercept": 0.0}
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match="calibration must be Platt scaling"):
        RadiomicsClassifier(bad)
    with pytest.raises(FileNotFoundError, match="train_radiomics"):
        RadiomicsClassifier(tmp_path / "missing.yaml")


def test_the_shipped_demo_model_matches_its_card():
    models = HERE.parents[1] / "fixtures" / "models"
    model = RadiomicsClassifier(models / "radiomics_classifier.yaml")
    card = json.loads((models / "radiomics_classifier.json").read_text())
    assert model.weights_sha256 == card["sha256"] and model.name == card["name"]
    assert card["cross_validation"]["folds"] == 5 and "validation_metrics" in card
    assert model.calibration is not None and model.calibration == card["config"]["calibration"]
    check_card_reports_calibration(card)


# --- calibration -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibrated(calibration_phantoms, tmp_path_factory):
    from inference.pipeline.train_radiomics import train

    out = tmp_path_factory.mktemp("radiomics-calibrated")
    card = train(
        calibration_phantoms, out, folds=2, test_fraction=VAL_FRACTION, cal_fraction=CAL_FRACTION, seed=3,
        progress=False,
    )  # fmt: skip
    return out / "radiomics_classifier.yaml", card


def _predict_all(model: RadiomicsClassifier, data: Path) -> tuple[list[str], list[int], np.ndarray, np.ndarray]:
    """Every manifest lesion through the loaded model on its reference mask: patients, truth, raw logits, probs."""
    from inference.pipeline.train_classifier import load_cases

    patients, truth, raw, probs = [], [], [], []
    for c in load_cases(data, progress=False):
        labels = np.load(data / "masks" / f"{c.patient}.npz")["lesion_labels"]
        mask = labels == int(c.case_id.rsplit("-L", 1)[1])
        prob, logit = model.predict(c.hu, c.spacing, c.centre_index, c.diameter_mm, mask=mask)
        patients.append(c.patient)
        truth.append(c.truth)
        raw.append(float(logit[0]))
        probs.append(prob)
    return patients, truth, np.array(raw), np.array(probs)


def test_the_calibration_is_fitted_on_its_own_patients_and_applied_at_inference(calibrated, calibration_phantoms):
    path, card = calibrated
    model = RadiomicsClassifier(path)
    cal_params = model.calibration
    assert cal_params == card["config"]["calibration"] and card["calibration"].startswith("Platt scaling of the logit")
    patients, truth, raw, probs = _predict_all(model, calibration_phantoms)
    val, cal = check_split(card, patients, seed=3)
    check_calibration(card, cal_params, truth, raw, patients, val, cal)
    np.testing.assert_allclose(probs, expit(cal_params["slope"] * raw + cal_params["intercept"]), rtol=1e-12)


def test_a_model_file_without_calibration_gives_the_plain_logistic(calibrated, calibration_phantoms, tmp_path):
    import yaml

    path, _ = calibrated
    doc = yaml.safe_load(path.read_text())
    del doc["calibration"]  # as written before calibration
    old = tmp_path / "radiomics_classifier.yaml"
    old.write_text(yaml.safe_dump(doc, sort_keys=False))
    model = RadiomicsClassifier(old)
    assert model.calibration is None
    _, _, raw, probs = _predict_all(model, calibration_phantoms)
    _, _, raw_calibrated, _ = _predict_all(RadiomicsClassifier(path), calibration_phantoms)
    np.testing.assert_array_equal(raw, raw_calibrated)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-raw)), rtol=1e-12)


@pytest.mark.django_db
def test_precompute_with_the_radiomics_classifier(phantom_study, trained, models_folder, settings, capsys):
    from django.core.management import call_command

    from inference.models import PrecomputeRun, Prediction
    from readerstudy.core.models import AuditEvent

    settings.INFERENCE_MODELS_DIR = models_folder(trained)
    call_command("precompute", "--study", phantom_study.name, "--classifier", "radiomics", "--no-progress")
    assert "4 predicted, 0 unchanged (skipped), 0 failed" in capsys.readouterr().out
    model = RadiomicsClassifier(trained)
    unet_sha = json.loads((HERE.parents[1] / "fixtures" / "models" / "phantom_unet.json").read_text())["sha256"]
    combined = hashlib.sha256((unet_sha + model.weights_sha256).encode()).hexdigest()
    predictions = list(Prediction.objects.filter(case__study=phantom_study))
    assert len(predictions) == 4
    for p in predictions:
        assert p.model_name == "phantom-unet+radiomics-l1-logistic-demo"
        assert p.model_version == "1.0+1.0 (pipeline 2)" and p.weights_sha256 == combined
        assert 0.0 <= p.probability <= 1.0
    run = PrecomputeRun.objects.get(study=phantom_study)
    assert (run.classifier, run.status, run.n_done) == ("radiomics", "done", 4)
    assert AuditEvent.objects.get(verb="start_precompute").after["classifier"] == "radiomics"
    # Another classifier is another model: its predictions are made, not skipped.
    settings.INFERENCE_MODELS_DIR = models_folder(
        trained, HERE.parents[1] / "fixtures" / "models" / "lesion_classifier.pt"
    )
    call_command("precompute", "--study", phantom_study.name, "--no-progress")
    assert "4 predicted" in capsys.readouterr().out
