"""Calibration helpers against known answers: Platt scaling recovers a known logistic map, calibrated
probabilities have slope 1 and intercept 0, the ECE and Brier score of small hand-checked examples."""

from __future__ import annotations

import numpy as np
import pytest

from inference.pipeline.calibration import apply_platt, calibration_metrics, fit_platt, logit


def _sample(n: int, slope: float, intercept: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 2.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(slope * x + intercept)))).astype(int)
    return x, y


def test_platt_recovers_a_known_logistic_map():
    x, y = _sample(20_000, 0.5, -0.7)
    fit = fit_platt(x, y)
    assert fit["slope"] == pytest.approx(0.5, abs=0.03) and fit["intercept"] == pytest.approx(-0.7, abs=0.05)
    # over-confident scores (the logit is twice the truth's): slope < 1 before scaling, ~1 and ~0 after
    before = calibration_metrics(y, apply_platt(x, None))
    after = calibration_metrics(y, apply_platt(x, fit))
    assert before["calibration_slope"] == pytest.approx(0.5, abs=0.03)
    assert after["calibration_slope"] == pytest.approx(1.0, abs=1e-6)
    assert after["calibration_intercept"] == pytest.approx(0.0, abs=1e-6)
    assert after["brier"] < before["brier"] and after["ece"] < 0.02 < before["ece"]


def test_calibrated_probabilities_score_as_calibrated():
    x, y = _sample(20_000, 1.0, 0.3, seed=1)
    m = calibration_metrics(y, 1 / (1 + np.exp(-(x + 0.3))))
    assert m["calibration_slope"] == pytest.approx(1.0, abs=0.05)
    assert m["calibration_intercept"] == pytest.approx(0.0, abs=0.05)
    assert m["ece"] < 0.02


def test_brier_and_ece_by_hand():
    truth = [0, 0, 1, 1]
    prob = [0.1, 0.3, 0.6, 0.8]
    m = calibration_metrics(truth, prob, n_bins=2)
    assert m["brier"] == pytest.approx((0.01 + 0.09 + 0.16 + 0.04) / 4)
    # bins {0.1, 0.3} (observed 0) and {0.6, 0.8} (observed 1): |0.2 - 0| and |0.7 - 1|, each half the lesions
    assert m["ece"] == pytest.approx(0.5 * 0.2 + 0.5 * 0.3)
    assert [b["n"] for b in m["ece_bins"]] == [2, 2]
    one_class = calibration_metrics([1, 1], [0.5, 0.9])
    assert "calibration_slope" not in one_class and one_class["brier"] == pytest.approx((0.25 + 0.01) / 2)


def test_apply_platt_and_input_checks():
    assert apply_platt(0.0, None) == pytest.approx(0.5)
    assert apply_platt(np.array([1.0]), {"slope": 2.0, "intercept": -2.0})[0] == pytest.approx(0.5)
    assert logit([0.0, 1.0]).tolist() == pytest.approx([logit([1e-6])[0], -logit([1e-6])[0]])
    with pytest.raises(ValueError, match="both classes"):
        fit_platt([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError):
        calibration_metrics([0, 1], [0.5])


def test_fit_calibration_stores_platt_or_says_why_not():
    from inference.pipeline.calibration import fit_calibration

    x, y = _sample(400, 0.5, -0.7, seed=2)
    cal, note = fit_calibration(x, y, 40, "mean logit")
    assert cal == {
        "method": "platt",
        "score": "mean logit",
        **fit_platt(x, y),
        "fitted_on": "400 lesions of 40 calibration patients",
    }
    assert note == "Platt scaling of the mean logit, fitted on 400 lesions of 40 calibration patients"
    assert fit_calibration([], [], 0, "logit") == (None, "none: no calibration split (--cal-fraction 0)")
    assert fit_calibration([0.1, 0.2], [1, 1], 1, "logit")[1].startswith(
        "none: the calibration patients hold one class"
    )
    # a model that ranks the calibration lesions backwards: a negative slope would reverse its ranking; refused
    none, why = fit_calibration(-x, y, 40, "logit")
    assert none is None and why.startswith("none: Platt slope -0.") and "does not rank them" in why
