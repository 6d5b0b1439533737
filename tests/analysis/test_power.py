"""Power and sample size from a pilot: every number of RJafroc's SsPowerGivenJK / SsSampleSizeKGivenJ on Van Dyke,
the exact non-central tail probabilities, monotonicity, alpha at effect 0, strata with Holm, clustered pilots."""

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import mpmath
import numpy as np
import pandas as pd
import pytest
from scipy.special import betainc, gammaln

from readerstudy.analysis import AnalysisInputError, analyse
from readerstudy.analysis.power import (
    PilotVariance,
    cases_for_power,
    or_power,
    pilot_variance,
    power_from_pilot,
    power_grid,
    r_noncentral_f_sf,
)

from .conftest import REFDATA, REL, assert_close
from .test_strata import _study

ROOT = Path(__file__).resolve().parents[2]
REF = json.loads((REFDATA / "vandyke_power_RJafroc.json").read_text())
R_ERRMAX = 1e-9  # R's pnbeta() stops its series when the remaining error bound is below this


def r_series_reference(f, df1, df2, ncp, errmax=R_ERRMAX, itrmax=10_000):
    """P(F' > f) the way R's pf(ncp=) computes it: the AS 226 / R84 series of the non-central beta, summed up
    from the Poisson weight floor(c - 7 sqrt(c)) (c = ncp/2) until the error bound falls below ``errmax``.

    A scalar transcription of R's pnbeta_raw, independent of the product's vectorised one that it checks.
    """
    y = df1 / df2 * f
    x, a, b = y / (1 + y), df1 / 2, df2 / 2
    c = ncp / 2
    first = math.floor(max(c - 7 * math.sqrt(c), 0.0))
    a0 = a + first
    term = betainc(a0, b, x)  # I_x(a0 + i, b) as i grows, each step subtracting the next beta density term
    step = math.exp(a0 * math.log(x) + b * math.log1p(-x) - gammaln(a0) - gammaln(b) + gammaln(a0 + b) - math.log(a0))
    weight = math.exp(-c + first * math.log(c) - gammaln(first + 1)) if first > 0 else math.exp(-c)
    weight_left = 1 - weight
    cdf = weight * term
    i = first
    while True:
        i += 1
        term -= step
        step *= x * (a + b + i - 1) / (a + i)
        weight *= c / i
        weight_left -= weight
        cdf += term * weight
        if not ((term - step) * weight_left > errmax and i < itrmax + first):
            return 1 - cdf


def exact_noncentral_f_sf(f, df1, df2, ncp):
    """P(F' > f) to 30 digits: the Poisson mixture of regularised incomplete betas, summed in mpmath."""
    with mpmath.workdps(40):
        f, df1, df2, ncp = (mpmath.mpf(v) for v in (f, df1, df2, ncp))
        x = df1 * f / (df1 * f + df2)
        c = ncp / 2
        total, i = mpmath.mpf(0), 0
        while True:
            weight = mpmath.exp(-c + i * mpmath.log(c) - mpmath.loggamma(i + 1)) if c else mpmath.mpf(i == 0)
            total += weight * mpmath.betainc(df2 / 2, df1 / 2 + i, 0, 1 - x, regularized=True)
            if i > c + 10 and weight < mpmath.mpf(10) ** -35:
                return float(total)
            i += 1


@pytest.fixture(scope="module")
def vandyke():
    return pilot_variance(REFDATA / "vandyke.csv")


def _id(e):
    return f"{e['analysis']}-J{e['J']}-K{e['K']}-d{e['effect_size']}"


@pytest.mark.parametrize("entry", REF["power"], ids=_id)
def test_every_rjafroc_power_entry(vandyke, entry):
    """ncp, ddf, the critical value and the power to 1e-9 (in fact ~1e-14): the power is R's pf() series, as RJafroc
    reports it, and ``power_exact`` is the exact tail, within R's 1e-9 of it."""
    name = entry["analysis"].lower()
    ours = power_from_pilot(vandyke, entry["J"], entry["K"], entry["effect_size"], name, alpha=REF["alpha"])[name]
    assert ours["cases"] == entry["K"]
    assert_close(ours["ncp"], entry["ncp"], "ncp")
    assert_close(ours["power"], entry["power"], "power")
    assert abs(ours["power"] - entry["power"]) <= 1e-13
    if name == "frrc":
        assert entry["ddf"] is None and entry["fcrit"] is None and ours["ddf"] is None
        assert ours["fcrit"] == pytest.approx(3.841458820694124, rel=1e-15)  # qchisq(0.95, 1) = F(1, inf)
        assert ours["power_exact"] == ours["power"]
        return
    assert_close(ours["ddf"], entry["ddf"], "ddf")
    assert_close(ours["fcrit"], entry["fcrit"], "fcrit")
    assert ours["power"] == pytest.approx(r_series_reference(ours["fcrit"], 1, ours["ddf"], ours["ncp"]), rel=1e-14)
    exact = exact_noncentral_f_sf(ours["fcrit"], 1, ours["ddf"], ours["ncp"])
    assert ours["power_exact"] == pytest.approx(exact, rel=1e-12)
    assert 0 <= ours["power"] - exact <= R_ERRMAX  # the truncated series leaves out part of the CDF, never adds


@pytest.mark.parametrize("entry", REF["sample_size"], ids=lambda e: f"{e['analysis']}-J{e['J']}")
def test_every_rjafroc_sample_size(vandyke, entry):
    name = entry["analysis"].lower()
    ours = cases_for_power(vandyke, entry["J"], entry["desired_power"], entry["effect_size"], name, alpha=REF["alpha"])[
        name
    ]
    assert ours["cases"] == entry["K"]
    assert_close(ours["power"], entry["power"], "power")
    below = power_from_pilot(vandyke, entry["J"], entry["K"] - 1, entry["effect_size"], name)[name]["power"]
    assert below < entry["desired_power"] <= ours["power"]


def test_r_series_against_its_reference_over_a_wide_range():
    """The vectorised pnbeta series equals the scalar transcription across ddf 1..1e5, ncp 0..3000 and small to
    large critical values, and is never further than R's 1e-9 above the exact tail."""
    rng = np.random.default_rng(7)
    f = 10 ** rng.uniform(-1, 1.5, 300)
    ddf = 10 ** rng.uniform(0, 5, 300)  # OR ddf lie between J - 1 and a few thousand
    ncp = np.concatenate([[0.0, 1e-12], 10 ** rng.uniform(-3, 3.5, 298)])
    ours = r_noncentral_f_sf(f, 1.0, ddf, ncp)
    for i in range(300):
        # with ddf in the thousands and above, log B(a0, b) cancels (lgamma(b) ~ b log b): both codes, and R,
        # carry ~eps * b of rounding there, so the two orders of summation agree only to that
        rel = 1e-13 if ddf[i] < 1000 else 1e-10
        assert ours[i] == pytest.approx(r_series_reference(f[i], 1, ddf[i], ncp[i]), rel=rel, abs=1e-15)
    for i in range(0, 300, 5):
        assert -1e-12 <= ours[i] - exact_noncentral_f_sf(f[i], 1, ddf[i], ncp[i]) <= R_ERRMAX
    # R's pnf switches to the chi-square limit above ddf 1e8, and refuses what is not a distribution
    assert r_noncentral_f_sf(3.0, 1.0, 1e9, 2.0) == pytest.approx(exact_noncentral_f_sf(3.0, 1, 1e12, 2.0), rel=1e-9)
    assert np.isnan(r_noncentral_f_sf([1.0, 1.0, np.nan], 1.0, [5.0, 5.0, 5.0], [-1.0, np.inf, 1.0])).all()


def test_pilot_components_are_those_of_analyse_with_hillis_var_tr(refdata):
    for dataset in ("vandyke", "franken"):
        v = pilot_variance(refdata / f"{dataset}.csv")
        vc = analyse(refdata / f"{dataset}.csv")["var_components"]
        for key in ("cov1", "cov2", "cov3", "var_error", "var_r"):
            assert getattr(v, key) == vc[key]
        # Hillis 2011 eq. 9 (RJafroc): Cov2 - Cov3 enters truncated at 0; analyse() reports it untruncated
        assert v.var_tr == pytest.approx(vc["var_tr"] - (v.cov2 - v.cov3) + max(v.cov2 - v.cov3, 0), rel=REL)
    assert pilot_variance(refdata / "franken.csv").cov2 < pilot_variance(refdata / "franken.csv").cov3


SYNTHETIC = [
    dict(ms_tr=5e-4, var_error=8e-4, cov1=3.5e-4, cov2=3.4e-4, cov3=2.4e-4),  # Van Dyke-like
    dict(ms_tr=1e-4, var_error=8e-4, cov1=3.5e-4, cov2=2.0e-4, cov3=2.4e-4),  # Cov2 < Cov3, var(TR) truncated to 0
    dict(ms_tr=2e-3, var_error=1.2e-3, cov1=2e-4, cov2=1e-4, cov3=5e-5),  # reader-dominated
]


def _synthetic(**values):
    base = dict(n_readers=5, n_cases=120, n_positive=50, n_negative=70, n_clusters=None, modalities=("a", "b"))
    return PilotVariance(**base, modality_auc=(0.8, 0.85), cov_method="jackknife", var_r=1e-3, **values)


def _rises(power, axis):
    """Strictly increasing along ``axis`` until the power is 1 to double precision (then flat)."""
    step = np.diff(power, axis=axis)
    below_one = np.delete(power, 0, axis=axis) < 1 - 1e-9
    return bool(((step > 0) | ~below_one).all() and (step > -1e-13).all())


@pytest.mark.parametrize("values", SYNTHETIC)
@pytest.mark.parametrize("analysis", ["rrrc", "frrc", "rrfc"])
def test_power_rises_with_cases_readers_and_effect(values, analysis):
    v = _synthetic(**values)
    readers, cases = np.arange(4, 31)[:, None], np.arange(10, 3000, 7)[None, :]
    res = or_power(v, readers, cases, 0.05, analysis)
    power = res["power_exact"]
    assert np.isfinite(power).all() and (power > 0.05).all() and (power <= 1).all()
    assert _rises(power, axis=1) and _rises(power, axis=0)
    # R's series (the reported power) may wobble by its truncation, never more
    assert (np.diff(res["power"], axis=1) > -R_ERRMAX).all() and (np.diff(res["power"], axis=0) > -R_ERRMAX).all()
    by_effect = or_power(v, 6, 200, np.linspace(0, 0.2, 81), analysis)["power_exact"]
    assert _rises(by_effect, axis=0)


@pytest.mark.parametrize("readers", [2, 3])
def test_rrrc_with_few_readers_can_lose_power_with_more_cases(readers):
    """The exception: with J = 2 or 3, ddf falls towards J - 1 as K grows (the critical F(1, 1) is 161), which can
    outweigh the growing ncp, so the power peaks above its limit. The sample-size search still finds the first K."""
    v = _synthetic(**SYNTHETIC[0])
    power = or_power(v, readers, np.arange(2, 5000), 0.05, "rrrc")["power"]
    peak = int(np.argmax(power))
    assert 0 < peak < power.size - 1 and power[-1] < power[peak]
    target = (power[peak] + power[-1]) / 2  # reached around the peak, not by the limit
    res = cases_for_power(v, readers, target, 0.05, "rrrc")["rrrc"]
    assert res["power_limit"] < target and res["cases"] == 2 + int(np.flatnonzero(power >= target)[0])
    above = cases_for_power(v, readers, power[peak] + 1e-6, 0.05, "rrrc")["rrrc"]
    assert above["cases"] is None and above["max_power"] == pytest.approx(power[peak], abs=1e-9)


def test_power_is_one_where_the_noncentral_cdf_underflows():
    v = _synthetic(**SYNTHETIC[1])  # var(TR) truncated to 0: ncp grows without bound with K
    res = or_power(v, 29, [1935, 10**6], 0.05, "rrrc")
    assert (res["ncp"] > 1200).all() and (res["power"] == 1.0).all()


@pytest.mark.parametrize("values", SYNTHETIC)
@pytest.mark.parametrize("analysis", ["rrrc", "frrc", "rrfc"])
@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.05 / 3])
def test_power_at_effect_zero_is_alpha(values, analysis, alpha):
    power = or_power(_synthetic(**values), np.arange(2, 21)[:, None], np.arange(2, 3000, 37)[None, :], 0.0,
                     analysis, alpha)["power"]  # fmt: skip
    assert np.abs(power - alpha).max() <= 1e-12


def test_power_at_effect_zero_is_alpha_on_the_pilot(vandyke):
    for name in ("rrrc", "frrc", "rrfc"):
        for j, k in ((2, 2), (5, 114), (30, 5000)):
            assert abs(power_from_pilot(vandyke, j, k, 0.0, name)[name]["power"] - 0.05) <= 1e-12


def test_sample_size_is_the_smallest_k_and_searches_past_rjafrocs_cap(vandyke):
    res = cases_for_power(vandyke, 10, 0.95, 0.008, "frrc")["frrc"]
    assert res["cases"] > 4096  # past RJafroc's 2001 and past the dense scan: found on the grid, then refined
    at = power_from_pilot(vandyke, 10, res["cases"], 0.008, "frrc")["frrc"]
    before = power_from_pilot(vandyke, 10, res["cases"] - 1, 0.008, "frrc")["frrc"]
    assert before["power"] < 0.95 <= at["power"] == res["power"]
    assert res["power_limit"] == 1.0


def test_unreachable_target_says_why(vandyke):
    res = cases_for_power(vandyke, 3, 0.9, 0.03, "rrrc")["rrrc"]
    assert res["cases"] is None and res["max_power"] < 0.9
    assert "cannot reach power 0.9 with 3 readers" in res["error"] and "add readers" in res["error"]
    # the limit is the power with the case-driven variance gone: D = var(TR), ddf = J - 1
    v = _synthetic(**SYNTHETIC[0])
    for name in ("rrrc", "rrfc"):
        far = float(or_power(v, 5, 1e13, 0.03, name)["power"])
        assert cases_for_power(v, 5, 0.99, 0.03, name)[name]["power_limit"] == pytest.approx(far, rel=1e-6)
    zero = cases_for_power(vandyke, 6, 0.5, 0.0)
    assert all(zero[n]["cases"] is None and zero[n]["power_limit"] == 0.05 for n in ("rrrc", "frrc", "rrfc"))
    assert cases_for_power(vandyke, 6, 0.04, 0.0, "rrrc")["rrrc"]["cases"] == 2


def test_grid_is_the_power_of_each_pair(vandyke):
    grid = power_grid(REFDATA / "vandyke.csv", [4, 6, 10], [100, 251], 0.05)
    assert grid["readers"] == [4, 6, 10] and grid["cases"] == [100, 251]
    for entry in REF["power"]:
        if entry["effect_size"] != 0.05:
            continue
        name = entry["analysis"].lower()
        cell = (grid["readers"].index(entry["J"]), grid["cases"].index(entry["K"]))
        one = power_from_pilot(vandyke, entry["J"], entry["K"], 0.05, name)[name]
        assert grid[name]["power"][cell[0]][cell[1]] == one["power"]
        assert grid[name]["ncp"][cell[0]][cell[1]] == one["ncp"]
        assert grid[name]["ddf"] is None if name == "frrc" else grid[name]["ddf"][cell[0]][cell[1]] == one["ddf"]


def test_dataframe_path_and_components_give_the_same_result(vandyke):
    df = pd.read_csv(REFDATA / "vandyke.csv")
    a = power_from_pilot(df, 6, 200, 0.05, analysis="rrrc", cov="jackknife", cluster=None)
    b = power_from_pilot(REFDATA / "vandyke.csv", 6, 200, 0.05, analysis=["rrrc"])
    c = power_from_pilot(vandyke, 6, 200, 0.05, analysis="rrrc")
    assert a == b == c and set(a) >= {"pilot", "readers", "cases", "effect", "alpha", "rrrc"} and "frrc" not in a
    assert set(a["rrrc"]) >= {"power", "ncp", "ddf", "fcrit", "cases"}
    assert json.loads(json.dumps(a, allow_nan=False)) == a


@pytest.mark.parametrize("cov", ["jackknife", "delong", "unbiased"])
def test_covariance_methods(cov):
    v = pilot_variance(REFDATA / "vandyke.csv", cov=cov)
    vc = analyse(REFDATA / "vandyke.csv", cov=cov)["var_components"]
    assert (v.cov1, v.cov2, v.cov3, v.var_error, v.cov_method) == (vc["cov1"], vc["cov2"], vc["cov3"],
                                                                  vc["var_error"], cov)  # fmt: skip
    assert 0 < power_from_pilot(REFDATA / "vandyke.csv", 6, 200, 0.05, "rrrc", cov=cov)["rrrc"]["power"] < 1


def test_clustered_pilot_uses_patient_level_components(refdata):
    csv = refdata / "rjafroc_datasetROI_long.csv"
    v = pilot_variance(csv, cluster="patient")
    vc = analyse(csv, cluster="patient")["var_components"]
    assert (v.cov1, v.cov2, v.cov3, v.var_error) == (vc["cov1"], vc["cov2"], vc["cov3"], vc["var_error"])
    assert v.n_clusters == 90 and v.n_cases == 360
    clustered = power_from_pilot(csv, 6, 720, 0.05, "rrrc", cluster="patient")
    assert clustered["pilot"]["n_clusters"] == 90
    # lesions of one patient are positively correlated: ignoring the clusters overstates the power
    assert power_from_pilot(csv, 6, 720, 0.05, "rrrc")["rrrc"]["power"] > clustered["rrrc"]["power"]


def test_strata_are_the_pilot_subsets_at_alpha_over_m():
    df = _study(n_cases=300).drop(columns="size")
    result = power_from_pilot(df, 6, 600, 0.05, stratum="stratum")
    assert list(result["strata"]) == ["10-30", "<=10", ">30"]
    assert result["holm"]["strata"] == 3 and result["holm"]["alpha"] == pytest.approx(0.05 / 3)
    total = result["pilot"]["n_cases"]
    for label, s in result["strata"].items():
        sub = df[(df["stratum"] == label) | df["stratum"].isna()]
        alone = pilot_variance(sub)
        assert s["pilot"] == alone.as_dict()
        assert s["cases"] == pytest.approx(600 * alone.n_cases / total)
        for name in ("rrrc", "frrc", "rrfc"):
            held = or_power(alone, 6, 600 * alone.n_cases / total, 0.05, name, 0.05 / 3)
            free = or_power(alone, 6, 600 * alone.n_cases / total, 0.05, name, 0.05)
            assert s[name]["power"] == pytest.approx(float(held["power"]), rel=1e-14)
            assert s[name]["power_unadjusted"] == pytest.approx(float(free["power"]), rel=1e-14)
            assert s[name]["power_unadjusted"] > s[name]["power"]
            # a stratum's case-driven variance is scaled by the pilot's total over the planned total
            assert s[name]["ncp"] == pytest.approx(float(or_power(alone, 6, alone.n_cases * 600 / total, 0.05,
                                                                  name)["ncp"]), rel=1e-12)  # fmt: skip


def test_strata_sample_size_and_unanalysable_strata():
    df = _study(n_cases=300).drop(columns="size")
    res = cases_for_power(df, 8, 0.8, 0.08, "frrc", stratum="stratum", stratum_effects={">30": 0.1})
    per = {s: r["frrc"]["cases"] for s, r in res["strata"].items()}
    assert res["holm"]["cases"]["frrc"] == max(per.values())
    assert res["strata"][">30"]["effect"] == 0.1 and res["strata"]["<=10"]["effect"] == 0.08
    for label, r in res["strata"].items():
        k = r["frrc"]["cases"]
        v = pilot_variance(df[(df["stratum"] == label) | df["stratum"].isna()])
        share = v.n_cases / res["pilot"]["n_cases"]
        assert or_power(v, 8, (k - 1) * share, r["effect"], "frrc", 0.05 / 3)["power"] < 0.8
        assert or_power(v, 8, k * share, r["effect"], "frrc", 0.05 / 3)["power"] >= 0.8
    # a stratum with positives only gets an error and leaves Holm over the others
    df.loc[df["stratum"].isna() & (df["case"] % 2 == 0), "stratum"] = "negatives"
    mixed = power_from_pilot(df, 6, 300, 0.05, "rrrc", stratum="stratum")
    assert "only negative" in mixed["strata"]["negatives"]["error"]
    assert mixed["holm"]["strata"] == 3


def test_two_of_more_modalities():
    df = _study().drop(columns="size")
    third = df[df["modality"] == 2].assign(modality=3)
    with pytest.raises(AnalysisInputError, match="3 modalities"):
        pilot_variance(pd.concat([df, third]))
    chosen = pilot_variance(pd.concat([df, third]), modalities=("1", "2"))
    assert chosen == pilot_variance(df)
    with pytest.raises(AnalysisInputError, match="two different modalities"):
        pilot_variance(df, modalities=("1", "9"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"readers": 1}, "readers 1: expected a whole number >= 2"),
        ({"readers": 2.5}, "readers 2.5"),
        ({"cases": 1}, "cases 1"),
        ({"effect": math.nan}, "effect nan"),
        ({"effect": 1.5}, "effect 1.5"),
        ({"alpha": 1.0}, "alpha 1.0"),
        ({"analysis": "rrxc"}, "analysis \\['rrxc'\\]"),
        ({"cov": "bootstrap"}, "covariance method 'bootstrap'"),
        ({"stratum_effects": {"big": 0.1}}, "stratum_effects for \\['big'\\]"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    args = {"readers": 6, "cases": 200, "effect": 0.05} | kwargs
    with pytest.raises(AnalysisInputError, match=message):
        power_from_pilot(REFDATA / "vandyke.csv", **args)


def test_bad_pilots_raise(vandyke, tmp_path):
    with pytest.raises(AnalysisInputError, match=r"target power 1\.2"):
        cases_for_power(vandyke, 6, 1.2, 0.05)
    with pytest.raises(AnalysisInputError, match="strata need the pilot's reads"):
        power_from_pilot(vandyke, 6, 200, 0.05, stratum="size")
    one = pd.read_csv(REFDATA / "vandyke.csv").query("reader == 1")
    with pytest.raises(AnalysisInputError, match="at least 2 readers"):
        pilot_variance(one)
    with pytest.raises(AnalysisInputError, match="missing column"):
        pilot_variance(one.drop(columns="truth"))
    with pytest.raises(AnalysisInputError, match="readers: expected at least one"):
        power_grid(vandyke, [], [100], 0.05)


def test_negative_error_variance_gives_none_with_a_reason():
    v = replace(_synthetic(**SYNTHETIC[0]), ms_tr=0.0, cov1=7.9e-4, cov2=5e-4, cov3=0.0)  # Var - Cov1 < Cov2 - Cov3
    res = power_from_pilot(v, 4, 120, 0.05, "rrfc")["rrfc"]
    assert res["power"] is None and "no positive error variance" in res["error"]


# --- the command line ---------------------------------------------------------------------------------------


def run(*args):
    return subprocess.run([sys.executable, "-m", "readerstudy.analysis.power", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_cli_power_json_and_table(refdata, tmp_path):
    out = tmp_path / "power.json"
    proc = run(refdata / "vandyke.csv", "--readers", 6, "--cases", 251, "--effect", 0.05, "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "RRRC    251  0.8923  11.611  16.127   4.488" in proc.stdout
    result = json.loads(out.read_text())
    for name in ("rrrc", "frrc", "rrfc"):
        assert {"power", "ncp", "ddf", "fcrit", "cases"} <= set(result[name])
        assert result[name]["cases"] == 251
    assert result["frrc"]["ddf"] is None
    assert result == json.loads(json.dumps(power_from_pilot(refdata / "vandyke.csv", 6, 251, 0.05)))


def test_cli_target_power_grid_and_options(refdata, tmp_path):
    out = tmp_path / "k.json"
    grid = ["--grid-readers", "4,6,8", "--grid-cases", "100,200,300"]
    proc = run(refdata / "vandyke.csv", "--readers", 6, "--target-power", 0.8, "--effect", 0.05, "--analysis",
               "rrrc", "--cov", "jackknife", *grid, "--json", out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["rrrc"]["cases"] == 170 and "frrc" not in result
    assert result["grid"]["readers"] == [4, 6, 8] and len(result["grid"]["rrrc"]["power"][0]) == 3
    assert "RRRC power (rows: readers, columns: cases)" in proc.stdout


def test_cli_strata_and_clusters(refdata, tmp_path):
    csv, out = tmp_path / "pilot.csv", tmp_path / "s.json"
    _study(n_cases=300).drop(columns="size").to_csv(csv, index=False)
    proc = run(csv, "--readers", 6, "--target-power", 0.8, "--effect", 0.08, "--stratify-column", "stratum",
               "--analysis", "frrc", "--json", out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result["strata"]) == {"<=10", "10-30", ">30"} and result["holm"]["cases"]["frrc"] > 0
    assert "== stratum 10-30" in proc.stdout
    roi = run(refdata / "rjafroc_datasetROI_long.csv", "--readers", 5, "--cases", 360, "--effect", 0.05,
              "--cluster-column", "patient")  # fmt: skip
    assert roi.returncode == 0 and "in 90 clusters" in roi.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--readers", 1, "--cases", 100, "--effect", 0.05], "error: --readers 1: expected a whole number >= 2"),
        (["--readers", 5, "--cases", 100, "--effect", 0.05, "--cluster-column", "nope"], "error: missing column"),
        (["--readers", 5, "--target-power", 2, "--effect", 0.05], "error: --target-power 2.0"),
        (["--readers", 5, "--cases", 100, "--effect", 0.05, "--analysis", "xx"], "error: analysis ['xx']"),
        (["--readers", 5, "--cases", 100, "--effect", 0.05, "--grid-cases", "1,x"], "error: argument --grid-cases"),
        (["--readers", 5, "--target-power", 0.8, "--effect", 0.05, "--grid-readers", "4,6"], "error: --grid-readers"),
        (["--readers", 5, "--cases", 100, "--target-power", 0.8, "--effect", 0.05], "not allowed with argument"),
        (["--readers", 5, "--cases", 100], "the following arguments are required: --effect"),
    ],
)
def test_cli_bad_input_exits_2(refdata, args, message):
    proc = run(refdata / "vandyke.csv", *args)
    assert proc.returncode == 2 and message in proc.stderr and proc.stdout == ""


def test_cli_reads_only_what_it_needs(refdata):
    """scipy.stats costs about a second to import; the power path uses scipy.special only."""
    code = (
        "import sys; from readerstudy.analysis.power import main; "
        f"main([{str(refdata / 'vandyke.csv')!r}, '--readers', '6', '--cases', '100', '--effect', '0.05']); "
        "assert 'scipy.stats' not in sys.modules, 'scipy.stats imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
