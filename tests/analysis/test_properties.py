"""Property tests: the fast closed forms against slow brute force, and invariances of the analysis."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from readerstudy.analysis import analyse_study, empirical_auc
from readerstudy.analysis.auc import placements
from readerstudy.analysis.covariance import auc_covariance, delong_cov, jackknife_cov
from readerstudy.analysis.data import ReaderStudy

from . import brute


@st.composite
def rating_rows(draw, max_rows=4, max_cases=14, levels=5, clustered=False):
    """Ratings (G, K) on a small scale (many ties), truth with both classes, optional clusters."""
    k = draw(st.integers(4, max_cases))
    truth = np.array(draw(st.lists(st.booleans(), min_size=k, max_size=k)))
    truth[:2] = [False, True]
    truth[2:4] = [False, True]  # at least two of each class
    g = draw(st.integers(1, max_rows))
    x = np.array(draw(st.lists(st.integers(0, levels), min_size=g * k, max_size=g * k)), float).reshape(g, k)
    if not clustered:
        return x, truth, None
    clusters = np.array(draw(st.lists(st.integers(0, 4), min_size=k, max_size=k)))
    clusters[:4] = [0, 1, 2, 3]  # each class in >= 2 clusters, so deleting one cluster leaves both
    return x, truth, np.unique(clusters, return_inverse=True)[1]


@given(rating_rows())
def test_auc_is_mann_whitney(data):
    x, truth, _ = data
    np.testing.assert_allclose(empirical_auc(x, truth), [brute.auc(row, truth) for row in x], rtol=1e-12)


@given(rating_rows(), st.sampled_from(["exp", "cube", "affine"]))
def test_auc_and_covariance_unchanged_by_monotone_transform(data, kind):
    x, truth, _ = data
    f = {"exp": np.exp, "cube": lambda v: (v - 2.5) ** 3, "affine": lambda v: 7.0 * v - 3.0}[kind]
    for method in ("jackknife", "delong", "unbiased"):
        auc0, cov0 = auc_covariance(x, truth, method)
        auc1, cov1 = auc_covariance(f(x), truth, method)
        np.testing.assert_array_equal(auc0, auc1)
        np.testing.assert_allclose(cov1, cov0, rtol=1e-12, atol=1e-15)


@given(rating_rows())
def test_closed_form_jackknife_equals_brute_force(data):
    x, truth, _ = data
    np.testing.assert_allclose(
        jackknife_cov(placements(x, truth)), brute.jackknife_cov(x, truth), rtol=1e-9, atol=1e-15
    )


@given(rating_rows(clustered=True))
def test_closed_form_clustered_jackknife_equals_brute_force(data):
    x, truth, clusters = data
    np.testing.assert_allclose(
        jackknife_cov(placements(x, truth), clusters), brute.jackknife_cov(x, truth, clusters), rtol=1e-9, atol=1e-15
    )


@given(rating_rows(clustered=True))
def test_clustered_delong_equals_obuchowski_written_out(data):
    x, truth, clusters = data
    np.testing.assert_allclose(
        delong_cov(placements(x, truth), clusters), brute.obuchowski_cov(x, truth, clusters), rtol=1e-9, atol=1e-15
    )


@given(rating_rows())
def test_clustered_delong_with_one_case_per_cluster_is_delong(data):
    x, truth, _ = data
    p = placements(x, truth)
    np.testing.assert_allclose(delong_cov(p, np.arange(truth.size)), delong_cov(p), rtol=1e-12, atol=1e-16)


@settings(max_examples=60)
@given(rating_rows(levels=3) | rating_rows(levels=1000, max_cases=20))
def test_unbiased_equals_u_statistic_written_out(data):
    x, truth, _ = data
    _, cov = auc_covariance(x, truth, "unbiased")
    np.testing.assert_allclose(cov, brute.unbiased_cov(x, truth), rtol=1e-9, atol=1e-15)


def _study(x, truth, n_modalities):
    g, k = x.shape
    return ReaderStudy(
        [f"m{i}" for i in range(n_modalities)],
        [f"r{j}" for j in range(g // n_modalities)],
        np.arange(k, dtype=object),
        truth,
        x.reshape(n_modalities, -1, k),
    )


@given(rating_rows(max_rows=1, max_cases=12), st.integers(0, 2**32 - 1))
def test_swapping_modalities_flips_the_differences(data, seed):
    _, truth, _ = data
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, (6, truth.size)).astype(float)  # 2 modalities x 3 readers
    a = analyse_study(_study(x, truth, 2))
    b = analyse_study(_study(np.vstack([x[3:], x[:3]]), truth, 2))
    for name in ("rrrc", "frrc", "rrfc"):
        da, db = a[name]["differences"][0], b[name]["differences"][0]
        assert db["estimate"] == pytest.approx(-da["estimate"], rel=1e-12, abs=1e-15)
        assert db["se"] == pytest.approx(da["se"], rel=1e-12)
        if da["p"] is not None:
            assert db["p"] == pytest.approx(da["p"], rel=1e-9)
        if da["ci"][0] is not None:
            assert db["ci"] == pytest.approx([-da["ci"][1], -da["ci"][0]], rel=1e-9, abs=1e-15)
    if a["rrrc"]["f"] is not None:
        assert b["rrrc"]["f"] == pytest.approx(a["rrrc"]["f"], rel=1e-12)
