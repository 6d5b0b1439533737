"""The training commands run end to end on tiny settings and write weights plus a model card (no accuracy claim)."""

from __future__ import annotations

import hashlib
import json

import pytest

from fixtures.phantom import generate_demo_study


def test_train_unet_smoke(tmp_path):
    from inference.pipeline.segment import PhantomUNetBackend
    from inference.pipeline.train_unet import main

    out = tmp_path / "unet.pt"
    assert main([str(out), "--patients", "1", "--val-patients", "1", "--steps", "2"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    metrics = card["validation_metrics"]
    assert set(metrics) >= {"dice_liver", "dice_lesion", "lesion_detection_rate", "detection_by_stratum"}
    assert set(metrics["detection_by_stratum"]) == {"<=10", "10-30", ">30", "all"}
    assert metrics["detection_by_stratum"]["all"]["n"] == metrics["n_lesions"] >= 1
    assert PhantomUNetBackend(out).weights_sha256 == card["sha256"]


def test_train_unet_refuses_the_demo_seed(tmp_path):
    from inference.pipeline.train_unet import train

    with pytest.raises(ValueError, match="demo study"):
        train(tmp_path / "x.pt", patients=1, val_patients=1, steps=1, seed=20261123, progress=False)


def test_train_classifier_smoke(tmp_path):
    from inference.pipeline.classify import Classifier
    from inference.pipeline.train_classifier import main

    generate_demo_study(tmp_path / "data", seed=5, n_patients=6, n_lesions=14)
    out = tmp_path / "cls.pt"
    assert (
        main([str(out), "--data", str(tmp_path / "data"), "--epochs", "1", "--val-fraction", "0.5", "--seed", "3"]) == 0
    )
    card = json.loads(out.with_suffix(".json").read_text())
    metrics = card["validation_metrics"]
    assert 0.0 <= metrics["auc"] <= 1.0
    assert "DeLong" in metrics["auc_method"]
    assert set(metrics["auc_by_stratum"]) == {"<=10", "10-30", ">30"}
    assert {"brier", "calibration_slope", "calibration_intercept", "ece"} <= set(metrics["calibration"])
    assert Classifier(out).weights_sha256 == card["sha256"]


def test_train_classifier_calibrates_on_its_own_patients(tmp_path):
    from inference.pipeline.calibration import apply_platt
    from inference.pipeline.classify import Classifier
    from inference.pipeline.train_classifier import load_cases, split_patients, split_patients_three, train

    data = tmp_path / "data"
    generate_demo_study(data, seed=5, n_patients=10, n_lesions=30, atypical_fraction=0.5)
    cases = load_cases(data, progress=False)
    assert {c.appearance for c in cases} <= {"typical", "mimic", "indeterminate"} and any(
        c.appearance != "typical" for c in cases
    )
    patients = [c.patient for c in cases]
    val, cal = split_patients_three(patients, 0.3, 0.3, seed=4)
    assert val == split_patients(patients, 0.3, 4)  # the other backends hold out the same patients
    assert len(cal) == 3 and not val & cal and len(set(patients) - val - cal) == 4
    card = train(tmp_path / "cls.pt", data, epochs=1, val_fraction=0.3, cal_fraction=0.3, seed=4, progress=False)
    # seed 4: both classes among the calibration patients, and the 1-epoch network ranks them the right way round
    # (with seed 3 it ranks them backwards: a negative Platt slope, which fit_calibration refuses)
    cal_params = card["config"]["calibration"]
    assert cal_params["method"] == "platt" and "Platt" in card["calibration"]
    clf = Classifier(tmp_path / "cls.pt")
    c = next(c for c in cases if c.patient in val)
    prob, logits = clf.predict(c.hu, c.spacing, c.centre_index, c.diameter_mm, z_range=c.z_range)
    assert prob == pytest.approx(float(apply_platt(float(logits.mean()), cal_params)))
    assert card["validation_metrics"]["n_lesions"] == sum(c.patient in val for c in cases)


def test_classifier_knows_the_phantom_appearance_codes():
    from fixtures.phantom import APPEARANCES
    from inference.pipeline.train_classifier import APPEARANCES as CODES

    assert CODES == APPEARANCES


def test_unet_patches_favour_small_lesion_instances():
    """Patches are centred on a lesion instance drawn with weight 1/diameter, not on a lesion voxel (which fed the
    network mostly large lesions: it missed every lesion under ~17 mm)."""
    import numpy as np

    from fixtures.phantom import make_anatomy, make_phantom, plan_lesions
    from inference.pipeline.train_unet import SIZE_MIX, _sample_patch, draw_diameters, lesion_voxels

    rng = np.random.default_rng(3)
    anatomy = make_anatomy(rng)
    specs = plan_lesions(rng, 2, anatomy, diameters_mm=[6.0, 36.0], labels=["crlm", "hemangioma"])
    ph = make_phantom(rng, specs, anatomy=anatomy)
    lesions = lesion_voxels(ph)
    assert [w for _, w in lesions] == pytest.approx([1 / 6, 1 / 36])
    liver = np.argwhere(ph.liver_mask)[::50]
    hits = 0
    for _ in range(300):
        _, labels = _sample_patch(rng, ph.hu, ph.lesion_labels, (32, 64, 64), lesions, liver)
        hits += bool((labels == 1).any())
    # lesion-centred 2/3 of the time, the small one 6/7 of those: ~57 %; a voxel draw would give ~0.3 %
    assert 0.45 < hits / 300 < 0.75
    d = np.array(draw_diameters(np.random.default_rng(0), 2000))
    assert np.mean(d <= 10) == pytest.approx(SIZE_MIX[0][0], abs=0.04) and 5.0 <= d.min() and d.max() <= 40.0


def test_small_lesion_boost_weighs_small_lesions_voxels_up():
    import numpy as np

    from fixtures.phantom import make_anatomy, make_phantom, plan_lesions
    from inference.pipeline.train_unet import voxel_weights

    rng = np.random.default_rng(4)
    anatomy = make_anatomy(rng)
    specs = plan_lesions(rng, 3, anatomy, diameters_mm=[6.0, 10.0, 30.0], labels=["crlm", "hemangioma", "crlm"])
    ph = make_phantom(rng, specs, anatomy=anatomy)
    assert np.array_equal(voxel_weights(ph, 0.0), np.ones(ph.hu.shape, dtype=np.float32))
    w = voxel_weights(ph, 1.5)
    for n, d in enumerate([6.0, 10.0, 30.0], start=1):
        inside = ph.lesion_labels == n
        assert np.allclose(w[inside], max(1.0, (20.0 / d) ** 1.5))  # 6.09x, 2.83x, 1x
    assert np.all(w[ph.lesion_labels == 0] == 1.0)
