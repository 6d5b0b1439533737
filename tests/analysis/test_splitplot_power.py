"""Split-plot power: the formula (one group is the fully crossed power; the documented D and ddf), and the
predicted power against the rejection rate of the split-plot analysis on simulated Roe-Metz split-plot studies."""

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.special import ndtr

from readerstudy.analysis import AnalysisInputError, analyse_study, pilot_variance
from readerstudy.analysis.orh import ORComponents, rrrc
from readerstudy.analysis.power import or_power, study_variance
from readerstudy.analysis.simulate import roe_metz
from readerstudy.analysis.splitplot import split_plot_auc_covariance
from readerstudy.analysis.splitplot_power import simulate_split_plot, split_plot_power, split_plot_variance

from .conftest import REFDATA

ANALYSES = ("rrrc", "frrc", "rrfc")


@pytest.fixture(scope="module")
def vandyke():
    return pilot_variance(REFDATA / "vandyke.csv")


@pytest.mark.parametrize("analysis", ANALYSES)
def test_one_group_is_the_fully_crossed_power(vandyke, analysis):
    cases, effect = np.array([50, 114, 300]), 0.05
    split = split_plot_power(vandyke, 6, 1, cases, effect, analysis)
    crossed = or_power(vandyke, 6, cases, effect, analysis)
    for key in ("power", "ncp", "ddf", "fcrit", "denominator"):
        np.testing.assert_allclose(split[key], crossed[key], rtol=1e-13, err_msg=key)


@pytest.mark.parametrize(("readers", "groups"), [(6, 2), (6, 3), (8, 4), (6, 6)])
def test_the_documented_formula(vandyke, readers, groups):
    v, k, d = vandyke, 240, 0.05
    s = v.n_cases * groups / k
    c = max(v.cov2 - v.cov3, 0.0)
    w = (readers / groups - 1) / (readers - 1)
    within = v.var_error - v.cov1
    var_tr = max(v.var_tr, 0.0)
    expected = {
        "rrrc": (var_tr + s * (within + (readers / groups - 1) * c), var_tr + s * (within - w * c)),
        "frrc": (s * (within + (readers / groups - 1) * c), None),
        "rrfc": (var_tr + s * (within - w * c), None),
    }
    for analysis, (den, ms_tr) in expected.items():
        out = split_plot_power(v, readers, groups, k, d, analysis)
        assert float(out["denominator"]) == pytest.approx(den, rel=1e-12)
        assert float(out["ncp"]) == pytest.approx(readers * d**2 / (2 * den), rel=1e-12)
        ddf = {"rrrc": den**2 * (readers - 1) / ms_tr**2 if ms_tr else 0, "frrc": math.inf, "rrfc": readers - 1}
        assert float(out["ddf"]) == pytest.approx(ddf[analysis], rel=1e-12)
    assert split_plot_variance(v, readers, groups).var_tr == pytest.approx(v.var_tr, rel=1e-12, abs=1e-18)


def test_split_plot_sits_between_the_fully_crossed_designs(vandyke):
    """Same readers: more power than every reader reading only K/G cases, less than every reader reading all K."""
    k, d = 240, 0.06
    split = float(split_plot_power(vandyke, 6, 3, k, d)["power"])
    assert float(or_power(vandyke, 6, k // 3, d)["power"]) < split < float(or_power(vandyke, 6, k, d)["power"])


def test_bad_groups_are_refused(vandyke):
    with pytest.raises(AnalysisInputError, match="7 readers in 3 groups"):
        split_plot_power(vandyke, 7, 3, 240, 0.05)
    with pytest.raises(AnalysisInputError, match="6 readers in 0 groups"):
        split_plot_power(vandyke, 6, 0, 240, 0.05)


def test_simulated_split_plot_is_analysed_as_built():
    study = simulate_split_plot(3, 2, 10, 12, np.random.default_rng(0), delta=0.5)
    assert study.ratings.shape == (2, 6, 66) and study.n_groups == 3
    assert [g["readers"] for g in study.groups()] == [["1", "2"], ["3", "4"], ["5", "6"]]
    assert all((g["n_negative"], g["n_positive"]) == (10, 12) for g in study.groups())
    assert analyse_study(study, analyses=["rrrc"])["design"] == "split-plot"


# Roe-Metz settings with a large case x modality term, so that sharing cases (Cov2 - Cov3) matters and the
# split-plot power stands well apart from both fully crossed alternatives
VARIANCES = {"R": 0.011, "TR": 0.011, "C": 0.3, "TC": 0.3, "RC": 0.1, "E": 0.3}
MU, DELTA = 1.5, 0.6
GROUPS, PER_GROUP, N_NEG, N_POS = 2, 3, 40, 40
N_STUDIES = 1000


def _true_components(rng: np.random.Generator) -> tuple[float, float]:
    """The Roe-Metz effect (AUC difference) and var(TR), from reader AUCs in closed form (no cases drawn).

    Reader r's AUC in modality m is Phi((mu + delta_m + rho_mr) / sqrt(2 S)), S = C + TC + RC + E, where rho_mr
    (reader and reader x modality effects, drawn apart for each truth state) is N(0, 2 (R + TR)) with a shared
    reader part; var(TR) = var_r(theta_1r - theta_2r) / 2."""
    v = VARIANCES
    n = 400_000
    rho = rng.normal(0, math.sqrt(2 * v["R"]), n) + rng.normal(0, math.sqrt(2 * v["TR"]), (2, n))
    scale = math.sqrt(2 * (v["C"] + v["TC"] + v["RC"] + v["E"]))
    theta = ndtr((MU + np.array([[DELTA], [0.0]]) + rho) / scale)
    return float(theta[0].mean() - theta[1].mean()), float(np.var(theta[0] - theta[1]) / 2)


def test_predicted_power_matches_the_simulated_rejection_rate():
    """The case-driven components are averages of unbiased (U-statistic) estimates over 200 fully crossed pilots of
    one block's shape; the effect and var(TR) are exact. The rejection rate of the split-plot RRRC analysis
    (jackknife) over 1000 studies lies within 3 Monte-Carlo standard errors of the predicted power, and closer to
    it than to either fully crossed alternative (all K cases per reader; K/G cases per reader)."""
    rng = np.random.default_rng(20261203)
    effect, var_tr = _true_components(rng)
    pilots = [
        study_variance(roe_metz(PER_GROUP, 2, N_NEG, N_POS, rng, MU, DELTA, VARIANCES), "unbiased") for _ in range(200)
    ]
    mean = {key: float(np.mean([getattr(p, key) for p in pilots])) for key in ("var_error", "cov1", "cov2", "cov3")}
    ms_tr = var_tr + mean["var_error"] - mean["cov1"] - max(mean["cov2"] - mean["cov3"], 0.0)
    v = replace(pilots[0], **mean, ms_tr=ms_tr)
    assert v.var_tr == pytest.approx(var_tr, rel=1e-12)

    readers, cases = GROUPS * PER_GROUP, GROUPS * (N_NEG + N_POS)
    predicted = float(split_plot_power(v, readers, GROUPS, cases, effect)["power"])
    all_cases = float(or_power(v, readers, cases, effect)["power"])
    block_cases = float(or_power(v, readers, cases // GROUPS, effect)["power"])
    se = math.sqrt(predicted * (1 - predicted) / N_STUDIES)
    assert 0.6 < predicted < 0.9
    assert all_cases - predicted > 4 * se and predicted - block_cases > 4 * se  # the check can tell them apart

    rejected = 0
    for _ in range(N_STUDIES):
        study = simulate_split_plot(GROUPS, PER_GROUP, N_NEG, N_POS, rng, MU, DELTA, VARIANCES)
        auc, cov = split_plot_auc_covariance(study, "jackknife")
        rejected += rrrc(ORComponents(auc.reshape(2, -1), cov), study.modalities)["p"] < 0.05
    rate = rejected / N_STUDIES
    print(f"predicted {predicted:.4f}, rejected {rate:.4f} (se {se:.4f}); crossed {all_cases:.4f}, {block_cases:.4f}")
    assert abs(rate - predicted) < 3 * se, (rate, predicted, se)
    assert abs(rate - predicted) < min(all_cases - rate, rate - block_cases), (rate, predicted, all_cases, block_cases)
