"""Standalone model: DeLong AUC CI, and model vs readers (RJafroc 1T-RRRC) checked against an identity."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from readerstudy.analysis import AnalysisInputError, analyse, compare_model_to_readers, model_auc
from readerstudy.analysis.auc import placements
from readerstudy.analysis.covariance import delong_cov

from . import brute
from .test_strata import _study


def test_model_auc_is_mann_whitney_with_delong_ci():
    rng = np.random.default_rng(7)
    truth = rng.random(80) < 0.5
    scores = truth * 0.8 + rng.normal(size=80)
    res = model_auc(truth.astype(int), scores)
    assert res["auc"] == pytest.approx(brute.auc(scores, truth), rel=1e-12)
    neg, pos = scores[~truth], scores[truth]
    v10 = np.array([((p > neg) + 0.5 * (p == neg)).mean() for p in pos])
    v01 = np.array([((pos > q) + 0.5 * (pos == q)).mean() for q in neg])
    var = v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size  # DeLong (1988) written out
    assert res["se"] == pytest.approx(np.sqrt(var), rel=1e-12)
    z = stats.norm.ppf(0.975)
    assert res["ci"] == pytest.approx([res["auc"] - z * res["se"], min(res["auc"] + z * res["se"], 1.0)])
    assert res["method"] == "DeLong" and res["n_clusters"] is None


def test_model_auc_clustered_uses_obuchowski():
    rng = np.random.default_rng(8)
    patients = np.repeat(np.arange(30), 3)
    truth = rng.random(90) < 0.3
    truth[:2] = [True, False]
    truth[3:5] = [True, False]
    scores = truth + rng.normal(size=90)
    res = model_auc(truth, scores, clusters=patients)
    expected = brute.obuchowski_cov(scores[None, :], truth, patients)[0, 0]
    assert res["se"] == pytest.approx(np.sqrt(expected), rel=1e-10)
    assert res["n_clusters"] == 30
    assert res["se"] != pytest.approx(np.sqrt(delong_cov(placements(scores[None], truth))[0, 0]), rel=1e-6)


def test_model_auc_rejects_one_class():
    with pytest.raises(AnalysisInputError, match="one truth class"):
        model_auc([1, 1, 1], [0.2, 0.5, 0.9])


@pytest.mark.parametrize("cov", ["jackknife", "delong", "unbiased"])
def test_model_vs_readers_equals_rrrc_with_the_model_as_a_second_modality(cov):
    """Entering the model as modality 'model', read identically by every reader, gives the same test."""
    df = _study(seed=11)
    df = df[df["modality"] == 1].drop(columns=["size", "stratum"])
    rng = np.random.default_rng(5)
    cases = df.drop_duplicates("case").set_index("case")
    model = cases["truth"] * 1.2 + rng.normal(size=len(cases))
    res = compare_model_to_readers(df, model, cov=cov)
    as_modality = df.assign(modality="model", rating=df["case"].map(model))
    both = analyse(pd.concat([df.assign(modality="readers"), as_modality]), cov=cov, frrc_truncate=False)
    d = both["rrrc"]["differences"][0]
    assert d["modalities"] == ["model", "readers"]  # sorted: model first, so the sign flips
    rr = res["random_readers"]
    assert rr["estimate"] == pytest.approx(-d["estimate"], rel=1e-12)
    for key in ("se", "df", "p"):
        assert rr[key] == pytest.approx(d[key], rel=1e-9)
    fixed = both["frrc"]["differences"][0]
    assert res["fixed_readers"]["se"] == pytest.approx(fixed["se"], rel=1e-9)
    assert res["model_auc"] == pytest.approx(both["modality_auc"]["model"], rel=1e-12)
    assert res["reader_mean_auc"] == pytest.approx(both["modality_auc"]["readers"], rel=1e-12)


def test_model_vs_readers_needs_every_case_scored():
    df = _study().query("modality == 1")
    with pytest.raises(AnalysisInputError, match="model scores missing for 1 case"):
        compare_model_to_readers(df, {k: 0.5 for k in range(1, 90)})
