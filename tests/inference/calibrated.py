"""Checks shared by the classifier backends' calibration tests: the split, and that what a trained model's card and
weights say about its Platt scaling is what the model computes on the calibration and held-out lesions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from scipy.special import expit

from inference.pipeline.calibration import fit_platt
from inference.pipeline.train_classifier import split_patients, split_patients_three
from readerstudy.analysis.standalone import model_auc

VAL_FRACTION = 0.3
CAL_FRACTION = 0.3
CALIBRATION_FIGURES = {"brier", "calibration_slope", "calibration_intercept", "ece"}


def check_card_reports_calibration(card: dict[str, Any]) -> None:
    """A card's held-out calibration figures, after and before the Platt scaling."""
    metrics = card["validation_metrics"]
    for block in ("calibration", "calibration_before_scaling"):
        assert CALIBRATION_FIGURES <= set(metrics[block]), block


def check_split(card: dict[str, Any], patients: Sequence[str], seed: int) -> tuple[set[str], set[str]]:
    """``(held-out, calibration)`` patients: the held-out ones are every backend's (:func:`split_patients`), the
    calibration ones others, and the card's training, calibration and held-out lesions are those of the three."""
    val, cal = split_patients_three(patients, VAL_FRACTION, CAL_FRACTION, seed)
    assert val == split_patients(patients, VAL_FRACTION, seed)
    assert (len(val), len(cal)) == (3, 3) and not val & cal
    train = set(patients) - val - cal
    for key, group in (("training_data", train), ("calibration_data", cal), ("validation_data", val)):
        n_lesions, n_patients = re.search(r"(\d+) lesions.*? of (\d+) (?:other )?patients", card[key]).groups()
        assert (int(n_lesions), int(n_patients)) == (sum(p in group for p in patients), len(group)), key
    return val, cal


def check_calibration(
    card: dict[str, Any],
    stored: dict[str, Any],
    truth: Sequence[int],
    raw: Sequence[float],
    patients: Sequence[str],
    val: set[str],
    cal: set[str],
) -> None:
    """``stored`` (the Platt parameters in the model file) was fitted on the calibration lesions' raw scores and on
    nothing else; the card's held-out AUC is the raw scores' (a monotone map), and its held-out calibration figures
    are those of the scaled and the unscaled probabilities. ``raw``: the trained model's score of every lesion."""
    y, x, pts = np.asarray(truth), np.asarray(raw, dtype=float), np.asarray(patients)
    in_cal, in_val = np.isin(pts, list(cal)), np.isin(pts, list(val))
    fit = fit_platt(x[in_cal], y[in_cal])
    assert stored["method"] == "platt" and stored["slope"] > 0
    assert stored["slope"] == pytest.approx(fit["slope"], rel=1e-6, abs=1e-9)
    assert stored["intercept"] == pytest.approx(fit["intercept"], rel=1e-6, abs=1e-9)
    assert stored["fitted_on"] == f"{in_cal.sum()} lesions of {len(cal)} calibration patients"
    metrics = card["validation_metrics"]
    assert metrics["n_lesions"] == in_val.sum()
    assert metrics["auc"] == pytest.approx(model_auc(y[in_val], x[in_val])["auc"], abs=1e-12)
    scaled = expit(stored["slope"] * x[in_val] + stored["intercept"])
    assert metrics["calibration"]["brier"] == pytest.approx(np.mean((scaled - y[in_val]) ** 2), rel=1e-6)
    before = np.mean((expit(x[in_val]) - y[in_val]) ** 2)
    assert metrics["calibration_before_scaling"]["brier"] == pytest.approx(before, rel=1e-6)
    assert metrics["calibration"]["brier"] != pytest.approx(before)  # the scaling did change the probabilities
