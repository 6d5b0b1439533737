"""Lesion-size strata: edge rules, Holm adjustment, and per-stratum analyses equal to analysing the subset."""

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from readerstudy.analysis import AnalysisInputError, analyse, check_size_bins, holm, size_stratum, stratum_labels
from readerstudy.analysis.strata import stratum_range


@pytest.mark.parametrize(
    ("diameter", "label"),
    [
        (0.5, "<=10"),
        (10.0, "<=10"),
        (10.000001, "10-30"),
        (30.0, "10-30"),
        (30.01, ">30"),
        (250, ">30"),
    ],
)
def test_edges_belong_to_the_lower_stratum(diameter, label):
    assert size_stratum(diameter) == label


def test_custom_bins_and_labels():
    assert stratum_labels((5, 12.5, 40)) == ["<=5", "5-12.5", "12.5-40", ">40"]
    assert size_stratum(12.5, bins=(5, 12.5, 40)) == "5-12.5"
    assert size_stratum(41, bins=(20,)) == ">20"


@pytest.mark.parametrize("bad", [math.nan, -1.0, 0.0, math.inf, "big", None])
def test_bad_diameters_raise(bad):
    with pytest.raises(AnalysisInputError, match="diameter"):
        size_stratum(bad)


@pytest.mark.parametrize("bins", [(), (30, 10), (10, 10), (-5, 10)])
def test_bad_bins_raise(bins):
    with pytest.raises(AnalysisInputError, match="size bins"):
        size_stratum(5, bins=bins)


@pytest.mark.parametrize("bins", ["10,30", b"10", [10, "30"], [True, 30], [10, math.inf], [math.nan], None, 10])
def test_the_one_validator_refuses_what_is_not_a_list_of_edges(bins):
    with pytest.raises(AnalysisInputError, match="size bins"):
        check_size_bins(bins)


def test_the_one_validator_returns_floats_and_ranges_match_the_labels():
    assert check_size_bins([10, 30]) == [10.0, 30.0] and check_size_bins((np.int64(5), np.float64(7.5))) == [5.0, 7.5]
    assert stratum_range("<=10") == (0.0, 10.0) and stratum_range("10-30") == (10.0, 30.0)
    assert stratum_range(">30") == (30.0, math.inf) and stratum_range(">20") is None
    for d in (0.5, 10.0, 10.01, 30.0, 30.01, 500.0):
        lo, hi = stratum_range(size_stratum(d))
        assert lo < d <= hi


def test_strata_module_is_dependency_light():
    code = "import sys, readerstudy.analysis.strata; print(sorted({'numpy', 'pandas', 'scipy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("p", [[0.01, 0.04, 0.03, 0.2], [0.5], [0.001, 0.001, 0.9]])
def test_holm_matches_statsmodels(p):
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], rtol=1e-15)


def _without_holm(obj):
    if isinstance(obj, dict):
        return {k: _without_holm(v) for k, v in obj.items() if k != "p_holm"}
    if isinstance(obj, list):
        return [_without_holm(v) for v in obj]
    return obj


def _study(seed=3, n_cases=90):
    rng = np.random.default_rng(seed)
    truth = rng.random(n_cases) < 0.4
    truth[:2] = [True, False]
    size = np.where(truth, rng.uniform(2, 50, n_cases), np.nan)
    size[0] = 10.0  # an edge
    rows = []
    for m in (1, 2):
        for r in range(4):
            score = truth * (1.0 + 0.2 * m) + rng.normal(size=n_cases)
            rows += [
                {"reader": r, "modality": m, "case": k, "truth": int(truth[k]), "rating": score[k], "size": size[k]}
                for k in range(n_cases)
            ]
    df = pd.DataFrame(rows)
    df["stratum"] = [size_stratum(s) if s == s else None for s in df["size"]]  # negatives: no stratum
    return df


def test_each_stratum_is_the_analysis_of_its_cases_plus_the_shared_negatives():
    df = _study()
    result = analyse(df, stratum="stratum")
    assert set(result["strata"]) == {"<=10", "10-30", ">30"}
    for label, sub in result["strata"].items():
        alone = analyse(df[(df["stratum"] == label) | df["stratum"].isna()])
        assert sub["rrrc"]["differences"][0]["estimate"] == alone["rrrc"]["differences"][0]["estimate"]
        assert _without_holm(sub) == {k: v for k, v in alone.items() if k != "completion"}  # readers: overall
        assert sub["n_negative"] == result["n_negative"]
    for name in ("rrrc", "frrc", "rrfc"):
        ps = [s[name]["p"] for s in result["strata"].values()]
        assert [s[name]["p_holm"] for s in result["strata"].values()] == holm(ps)
        ps = [s[name]["differences"][0]["p"] for s in result["strata"].values()]
        assert [s[name]["differences"][0]["p_holm"] for s in result["strata"].values()] == holm(ps)
    overall = analyse(df.drop(columns="stratum"))
    assert {k: result[k] for k in overall} == overall
