"""compare_backends: standalone AUCs with DeLong CIs and pairwise DeLong differences of classifier backends."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference.pipeline.compare import compare_backends
from readerstudy.analysis import model_auc
from readerstudy.analysis.errors import AnalysisInputError


def scores(seed=0, n=60):
    rng = np.random.default_rng(seed)
    truth = np.arange(n) % 2
    shared = rng.normal(size=n)
    return truth, {
        "good": truth * 1.5 + shared + 0.5 * rng.normal(size=n),
        "fair": truth * 0.7 + shared + 0.5 * rng.normal(size=n),
        "noise": rng.normal(size=n),
    }


def test_each_backend_auc_and_ci_is_model_auc():
    truth, s = scores()
    patients = np.arange(truth.size) // 3
    for clusters in (None, patients):
        out = compare_backends(truth, s, clusters=clusters)
        for name, values in s.items():
            ref = model_auc(truth, values, clusters=clusters)
            assert out["backends"][name]["auc"] == pytest.approx(ref["auc"])
            assert out["backends"][name]["ci"] == pytest.approx(ref["ci"])
        assert out["method"] == ("DeLong" if clusters is None else "clustered DeLong (Obuchowski 1997)")
    assert out["n_clusters"] == 20 and out["n_cases"] == 60


def test_the_pairwise_difference_is_delong_s_by_hand():
    """Five cases by hand: DeLong's placement values, S10/m + S01/n for the difference of two paired AUCs."""
    truth = np.array([1, 1, 0, 0, 0])
    a = np.array([0.9, 0.4, 0.5, 0.1, 0.2])  # AUC 5/6: the positive 0.4 is below the negative 0.5
    b = np.array([0.6, 0.8, 0.7, 0.3, 0.65])  # AUC 4/6: 0.6 is below 0.7 and 0.65
    out = compare_backends(truth, {"a": a, "b": b})
    assert out["backends"]["a"]["auc"] == pytest.approx(5 / 6) and out["backends"]["b"]["auc"] == pytest.approx(4 / 6)
    # Placements (a minus b): positives V10 = (1 - 1/3, 2/3 - 1) = (2/3, -1/3), the share of negatives below;
    # negatives V01 = (1/2 - 1/2, 1 - 1, 1 - 1/2) = (0, 0, 1/2), the share of positives above.
    v10 = np.array([1.0, 2 / 3]) - np.array([1 / 3, 1.0])
    v01 = np.array([1 / 2, 1.0, 1.0]) - np.array([1 / 2, 1.0, 1 / 2])
    var = np.var(v10, ddof=1) / 2 + np.var(v01, ddof=1) / 3
    pair = out["pairs"][0]
    assert (pair["a"], pair["b"]) == ("a", "b") and pair["difference"] == pytest.approx(1 / 6)
    assert pair["se"] == pytest.approx(math.sqrt(var))
    assert pair["z"] == pytest.approx((1 / 6) / math.sqrt(var))
    assert pair["p"] == pytest.approx(math.erfc(abs(pair["z"]) / math.sqrt(2)))


def test_pairs_are_every_combination_with_holm_adjustment():
    truth, s = scores(1, 80)
    out = compare_backends(truth, s, clusters=np.arange(80) // 2)
    assert [(p["a"], p["b"]) for p in out["pairs"]] == [("good", "fair"), ("good", "noise"), ("fair", "noise")]
    ps = sorted(p["p"] for p in out["pairs"])
    holm = sorted(p["p_holm"] for p in out["pairs"])
    assert holm[0] == pytest.approx(min(1.0, 3 * ps[0]))
    assert all(h >= p for h, p in zip(holm, ps, strict=True))
    good_noise = out["pairs"][1]
    assert good_noise["difference"] > 0 and good_noise["p"] < 0.01
    assert good_noise["ci"][0] < good_noise["difference"] < good_noise["ci"][1]


def test_identical_rankings_have_no_test():
    truth = np.array([0, 0, 1, 1, 0, 1])
    out = compare_backends(truth, {"x": [0.1, 0.2, 0.8, 0.9, 0.3, 0.7], "y": [1, 2, 8, 9, 3, 7]})
    pair = out["pairs"][0]
    assert pair["difference"] == 0.0 and pair["p"] is None and pair["z"] is None and pair["p_holm"] is None


@pytest.mark.parametrize(
    ("truth", "given", "clusters", "message"),
    [
        ([0, 1, 2], {"a": [1, 2, 3]}, None, "0/1"),
        ([1, 1, 1], {"a": [1, 2, 3]}, None, "one truth class"),
        ([0, 1, 1], {"a": [1, 2]}, None, "expected 3 values"),
        ([0, 1, 1], {"a": [1, float("nan"), 2]}, None, "finite"),
        ([0, 1, 1], {}, None, "at least one backend"),
        ([0, 1, 1], {"a": [1, 2, 3]}, [1, 2], "one patient per case"),
    ],
)
def test_bad_input_is_refused(truth, given, clusters, message):
    with pytest.raises(AnalysisInputError, match=message):
        compare_backends(truth, given, clusters=clusters)
