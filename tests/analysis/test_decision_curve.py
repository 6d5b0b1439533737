"""Decision curves through dcurves, checked against net benefit computed by hand: NB = TP/n - FP/n * pt/(1-pt)."""

import numpy as np
import pytest

from readerstudy.analysis.decision_curve import CURVE_THRESHOLDS, decision_curves
from readerstudy.analysis.errors import AnalysisInputError


def hand_net_benefit(truth, p, pt):
    called = p >= pt
    n = truth.size
    tp = np.sum(called & (truth == 1))
    fp = np.sum(called & (truth == 0))
    return tp / n - fp / n * pt / (1 - pt)


def test_six_cases_by_hand():
    truth = [1, 0, 1, 0, 1, 0]
    p = [0.9, 0.2, 0.6, 0.7, 0.4, 0.1]
    out = decision_curves(truth, {"model": p}, thresholds=[0.1, 0.3, 0.5, 0.8])
    # pt 0.1: all six called (0.1 >= 0.1): TP 3, FP 3 -> 3/6 - 3/6 * 1/9
    # pt 0.3: 0.9, 0.6, 0.7, 0.4 called: TP 3, FP 1 -> 3/6 - 1/6 * 3/7
    # pt 0.5: 0.9, 0.6, 0.7: TP 2, FP 1 -> 2/6 - 1/6 * 1
    # pt 0.8: 0.9: TP 1 -> 1/6
    expected = [0.5 - 0.5 / 9, 0.5 - 3 / 42, 1 / 6, 1 / 6]
    assert out["net_benefit"]["model"] == pytest.approx(expected, abs=1e-12)
    assert out["treat_all"] == pytest.approx([0.5 - 0.5 * pt / (1 - pt) for pt in (0.1, 0.3, 0.5, 0.8)], abs=1e-12)
    assert out["treat_none"] == [0.0] * 4
    assert (out["n"], out["n_positive"], out["prevalence"]) == (6, 3, 0.5)


def test_dcurves_equals_the_hand_formula_on_every_threshold_with_ties_and_extremes():
    rng = np.random.default_rng(16)
    truth = (rng.random(300) < 0.35).astype(int)
    dl = np.clip(truth * 0.3 + rng.random(300) * 0.7, 0, 1)
    ratings = rng.integers(0, 101, 300) / 100  # on the thresholds' grid: ties at every threshold
    ratings[:3] = [0.0, 1.0, 0.5]
    out = decision_curves(truth, {"dl": dl, "readers": ratings})
    assert out["thresholds"] == list(CURVE_THRESHOLDS)
    for name, p in (("dl", dl), ("readers", ratings)):
        hand = [hand_net_benefit(truth, p, pt) for pt in CURVE_THRESHOLDS]
        assert out["net_benefit"][name] == pytest.approx(hand, abs=1e-12)
    prevalence = truth.mean()
    assert out["treat_all"] == pytest.approx([prevalence - (1 - prevalence) * t / (1 - t) for t in CURVE_THRESHOLDS])


def test_thresholds_keep_the_callers_order_and_names_cannot_collide_with_the_references():
    truth = [1, 0, 1, 0]
    p = [0.8, 0.3, 0.4, 0.1]
    out = decision_curves(truth, {"all": p, "none": [0.0, 0.0, 0.0, 0.0]}, thresholds=[0.5, 0.2])
    assert out["thresholds"] == [0.5, 0.2]
    assert out["net_benefit"]["all"] == pytest.approx([1 / 4, 2 / 4 - 1 / 4 * 0.25])
    assert out["net_benefit"]["none"] == [0.0, 0.0]  # a score of 0 is never >= a threshold above 0
    assert out["treat_all"] == pytest.approx([0.0, 0.5 - 0.5 * 0.25])


@pytest.mark.parametrize(
    ("truth", "scores", "thresholds", "message"),
    [
        ([1, 1], {"m": [0.2, 0.3]}, None, "all of one truth class"),
        ([1, 2], {"m": [0.2, 0.3]}, None, "expected one 0/1 value per case"),
        ([1, 0], {"m": [0.2, 1.3]}, None, "expected probabilities from 0 to 1"),
        ([1, 0], {"m": [0.2, float("nan")]}, None, "expected probabilities from 0 to 1"),
        ([1, 0], {"m": [0.2]}, None, "expected 2 values"),
        ([1, 0], {}, None, "at least one set"),
        ([1, 0], {"m": [0.2, 0.3]}, [0.0, 0.5], "strictly between 0 and 1"),
    ],
)
def test_refusals(truth, scores, thresholds, message):
    with pytest.raises(AnalysisInputError, match=message):
        decision_curves(truth, scores, **({"thresholds": thresholds} if thresholds else {}))
