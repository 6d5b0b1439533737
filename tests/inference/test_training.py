"""The training commands run end to end on tiny settings and write weights plus a model card (no accuracy claim)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

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


def test_training_phantoms_can_be_enriched_in_small_lesions():
    """``small_share`` raises the training phantoms' share of 5-10 mm lesions, keeps the larger strata in their demo
    proportions and refuses a share outside (0, 1); the default is the demo's mix."""
    import numpy as np

    from inference.pipeline.train_unet import SIZE_MIX, draw_diameters, size_mix

    assert size_mix() == SIZE_MIX
    mix = size_mix(0.6)
    assert sum(w for w, _, _ in mix) == pytest.approx(1.0)
    assert mix[0] == (0.6, 5.0, 10.0)
    assert mix[1][0] / mix[2][0] == pytest.approx(SIZE_MIX[1][0] / SIZE_MIX[2][0])
    d = np.array(draw_diameters(np.random.default_rng(1), 3000, mix))
    assert np.mean(d <= 10) == pytest.approx(0.6, abs=0.03)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="5-10 mm"):
            size_mix(bad)


def test_unet_patches_can_centre_on_intrahepatic_vessels():
    """Hard negatives: with ``vessel_fraction`` a share of the patches is centred on blood inside the liver (the
    vessels a bright small hemangioma resembles), taken from the liver's share; 0 leaves the sampling as it was."""
    import numpy as np

    from fixtures.phantom import make_anatomy, make_phantom, plan_lesions
    from fixtures.phantom.geometry import Tissue
    from inference.pipeline.train_unet import MAX_VESSEL_FRACTION, _sample_patch, lesion_voxels, train, vessel_voxels

    rng = np.random.default_rng(5)
    anatomy = make_anatomy(rng)
    specs = plan_lesions(rng, 1, anatomy, diameters_mm=[8.0], labels=["hemangioma"])
    ph = make_phantom(rng, specs, anatomy=anatomy)
    vessels = vessel_voxels(ph)
    assert vessels.size and all(ph.tissue[tuple(v)] == Tissue.BLOOD and ph.liver_mask[tuple(v)] for v in vessels)
    lesions, liver = lesion_voxels(ph), np.argwhere(ph.liver_mask)[::50]
    # A marker array whose patch tells whether the patch's centre voxel is a vessel voxel.
    is_vessel = np.zeros(ph.hu.shape, dtype=np.uint8)
    is_vessel[tuple(vessels.T)] = 1
    patch = (3, 3, 3)  # small enough that only a vessel-centred patch holds a marked voxel, bar chance

    def share(fraction: float) -> float:
        draws = np.random.default_rng(9)
        hits = [
            _sample_patch(
                draws,
                ph.hu,
                ph.lesion_labels,
                patch,
                lesions,
                liver,
                is_vessel,
                vessel_idx=vessels,
                vessel_fraction=fraction,
            )[2].any()
            for _ in range(1500)
        ]
        return float(np.mean(hits))

    assert share(0.0) < 0.05  # a liver-centred patch holds a marked vessel voxel only by chance
    assert share(0.2) == pytest.approx(0.2, abs=0.05)
    with pytest.raises(ValueError, match="vessel_fraction"):
        train(
            Path("/nonexistent/x.pt"), patients=1, val_patients=1, steps=1, vessel_fraction=MAX_VESSEL_FRACTION + 0.01
        )


def _phantom_with_probabilities(p_small: float, p_false: float):
    """A phantom with a 20 mm and a 6 mm lesion, and class probabilities that give the large lesion 0.9, the small
    one ``p_small`` and a blob of parenchyma far from both ``p_false`` (the liver the rest, background outside)."""
    import numpy as np

    from fixtures.phantom import make_anatomy, make_phantom, plan_lesions

    rng = np.random.default_rng(12)
    anatomy = make_anatomy(rng)
    specs = plan_lesions(rng, 2, anatomy, diameters_mm=[20.0, 6.0], labels=["crlm", "crlm"])
    ph = make_phantom(rng, specs, anatomy=anatomy)
    p_lesion = np.zeros(ph.hu.shape, dtype=np.float32)
    p_lesion[ph.lesion_labels == 1] = 0.9
    p_lesion[ph.lesion_labels == 2] = p_small
    # the false blob: a 3x5x5 box of parenchyma as far as can be from both lesions
    from scipy import ndimage

    far = ndimage.distance_transform_edt(ph.lesion_labels == 0) * ph.liver_mask
    far = ndimage.minimum_filter(np.where(ph.liver_mask, far, 0), size=(3, 5, 5))
    k, j, i = np.unravel_index(int(np.argmax(far)), far.shape)
    p_lesion[k - 1 : k + 2, j - 2 : j + 3, i - 2 : i + 3] = p_false
    prob = np.stack([(~ph.liver_mask).astype(np.float32), ph.liver_mask * (1.0 - p_lesion), p_lesion])
    return ph, prob


def test_lesion_threshold_replaces_the_argmax_inside_the_liver():
    import numpy as np

    from inference.pipeline.segment import masks_from_probabilities

    ph, prob = _phantom_with_probabilities(p_small=0.35, p_false=0.0)
    liver, by_argmax = masks_from_probabilities(prob)
    assert np.array_equal(by_argmax, ph.lesion_labels == 1)  # 0.35 loses to the liver's 0.65
    _, by_threshold = masks_from_probabilities(prob, 0.3)
    assert np.array_equal(by_threshold, ph.lesion_labels > 0)
    _, strict = masks_from_probabilities(prob, 0.95)
    assert not strict.any()
    assert np.array_equal(liver, masks_from_probabilities(prob, 0.3)[0])  # the liver is the argmax's either way
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="lesion_threshold"):
            masks_from_probabilities(prob, bad)


def test_choose_lesion_threshold_detects_most_within_the_false_positive_budget():
    from inference.pipeline.train_unet import THRESHOLDS, choose_lesion_threshold

    ph, prob = _phantom_with_probabilities(p_small=0.22, p_false=0.25)
    # 0.2 finds both lesions and the false blob; 0.3 to 0.9 and the argmax only the large lesion; 0.95 nothing
    chosen, sweep = choose_lesion_threshold([prob], [ph], max_false_positives=2.0)
    assert chosen == 0.2
    assert [r["threshold"] for r in sweep] == list(THRESHOLDS)
    row = {r["threshold"]: r for r in sweep}
    assert (row[0.2]["detected"], row[0.2]["false_positives_per_phantom"]) == (2, 1.0)
    assert (row[0.3]["detected"], row[0.3]["false_positives_per_phantom"]) == (1, 0.0)
    assert row[0.95]["detected"] == 0 and row[0.2]["detected_le10"] == 1 and row[0.2]["n_le10"] == 1
    # no room for the blob: the argmax (first of the equal ones, all without false positives) stays
    assert choose_lesion_threshold([prob], [ph], max_false_positives=0.5)[0] is None
    # equal detections: the fewer false positives win (0.3 over 0.2 once the small lesion clears 0.3)
    ph, prob = _phantom_with_probabilities(p_small=0.32, p_false=0.25)
    assert choose_lesion_threshold([prob], [ph], max_false_positives=2.0)[0] == 0.3


def test_small_sensitivity_rule_takes_the_fewest_false_positives_that_reach_it():
    from inference.pipeline.train_unet import choose_lesion_threshold

    # the 6 mm lesion clears 0.3 and the blob 0.25: 0.3 detects it without the blob, 0.2 with it
    ph, prob = _phantom_with_probabilities(p_small=0.32, p_false=0.25)
    assert choose_lesion_threshold([prob], [ph], small_sensitivity=1.0)[0] == 0.3
    # the small lesion only at 0.2 (with the blob): reaching the target costs that false positive
    ph, prob = _phantom_with_probabilities(p_small=0.22, p_false=0.25)
    assert choose_lesion_threshold([prob], [ph], small_sensitivity=1.0)[0] == 0.2
    # out of reach (the small lesion's 0.02 is under every threshold): the most small lesions (none), then the
    # fewest false positives: the argmax, first of those without the blob
    ph, prob = _phantom_with_probabilities(p_small=0.02, p_false=0.25)
    assert choose_lesion_threshold([prob], [ph], small_sensitivity=0.8)[0] is None
    with pytest.raises(ValueError, match="one operating-point rule"):
        choose_lesion_threshold([prob], [ph])
    with pytest.raises(ValueError, match="one operating-point rule"):
        choose_lesion_threshold([prob], [ph], max_false_positives=1.0, small_sensitivity=0.8)
    with pytest.raises(ValueError, match="small_sensitivity"):
        choose_lesion_threshold([prob], [ph], small_sensitivity=1.5)


def test_froc_points_read_the_best_sensitivity_within_each_false_positive_rate():
    from inference.pipeline.train_unet import FROC_FP_RATES, froc_points

    def row(t, small, found, fp):
        return {
            "threshold": t,
            "detected_le10": small,
            "n_le10": 10,
            "detected": found,
            "n": 20,
            "false_positives_per_phantom": fp,
        }

    sweep = [row(None, 5, 14, 1.5), row(0.9, 4, 13, 0.75), row(0.5, 8, 18, 3.0), row(0.1, 9, 19, 9.0)]
    points = {p["false_positives_per_phantom"]: p for p in froc_points(sweep)}
    assert list(points) == list(FROC_FP_RATES)
    assert points[0.5]["threshold"] is None and points[0.5]["sensitivity_le10"] is None  # nothing that clean
    assert (points[1.0]["threshold"], points[1.0]["sensitivity_le10"], points[1.0]["sensitivity"]) == (0.9, 0.4, 0.65)
    assert (points[2.0]["threshold"], points[2.0]["sensitivity_le10"]) == (None, 0.5)
    assert (points[4.0]["threshold"], points[4.0]["sensitivity_le10"]) == (0.5, 0.8)
    assert points[8.0]["threshold"] == 0.5  # 0.1's 9 false positives per phantom exceed every rate


def test_train_unet_tunes_the_lesion_threshold_without_training(tmp_path):
    """``--steps 0 --init W --tune-patients N``: the weights stay W's, the threshold is chosen on tuning phantoms,
    stored in the weights' config (used by segment) and recorded, with its sweep, on the card."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    from inference.pipeline.segment import PhantomUNetBackend, masks_from_probabilities
    from inference.pipeline.train_unet import THRESHOLDS, TUNE_OFFSET, main, make_phantoms

    first = tmp_path / "first.pt"
    assert main([str(first), "--patients", "1", "--val-patients", "1", "--steps", "2"]) == 0
    tuned = tmp_path / "tuned.pt"
    args = ["--init", str(first), "--patients", "1", "--val-patients", "1", "--steps", "0", "--tune-patients", "1"]
    assert main([str(tuned), *args, "--max-fp", "1000"]) == 0
    a, b = (torch.load(f, weights_only=True) for f in (first, tuned))
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    card = json.loads(tuned.with_suffix(".json").read_text())
    record = card["lesion_threshold"]
    assert f"patients {TUNE_OFFSET}..{TUNE_OFFSET}" in record["tuning_data"]
    assert [r["threshold"] for r in record["sweep"]] == list(THRESHOLDS)
    assert card["training"]["steps"] == 2 and card["validation_metrics"]["lesion_threshold"] == record["value"]
    # with no false-positive budget to speak of, the threshold that detects the most is taken
    best = max(r["detected"] for r in record["sweep"])
    assert record["sweep"][THRESHOLDS.index(record["value"])]["detected"] == best
    assert b["config"].get("lesion_threshold") == record["value"]
    first_card = json.loads(first.with_suffix(".json").read_text())
    assert card["training_data"] == first_card["training_data"]  # what the weights were trained on, not --patients
    assert card["training"]["tuned_only_from_sha256"] == first_card["sha256"]
    froc = card["validation_metrics"]["froc"]
    assert [r["threshold"] for r in froc["sweep"]] == list(THRESHOLDS) and len(froc["points"]) == 5
    # the other operating-point rule, named on the card
    assert main([str(tuned), *args, "--small-sensitivity", "0.01"]) == 0
    rule = json.loads(tuned.with_suffix(".json").read_text())["lesion_threshold"]["rule"]
    assert "at least 1% of the 5-10 mm lesions" in rule
    backend = PhantomUNetBackend(tuned)
    backend.config["lesion_threshold"] = 0.05  # segment follows the config's threshold
    ph = next(make_phantoms(7, 1, offset=TUNE_OFFSET))
    seg = backend.segment(SimpleNamespace(hu=ph.hu, spacing_mm=ph.spacing_mm))  # segment reads only these
    expected = masks_from_probabilities(backend.predict_probabilities(ph.hu, ph.spacing_mm), 0.05)[1]
    assert np.array_equal(seg.lesion_mask, expected)
