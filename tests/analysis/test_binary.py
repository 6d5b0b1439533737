"""Sensitivity and specificity at a threshold as OR figures of merit: every MRMCaov number, brute force, refusals."""

import json

import numpy as np
import pandas as pd
import pytest

from readerstudy.analysis import AnalysisInputError, analyse
from readerstudy.analysis.binary import binary_covariance

from .conftest import assert_close
from .peers import leaves
from .test_strata import _study

REF = "vandyke_binary_MRMCaov.json"
VC = {
    "reader": "var_r",
    "treatment:reader": "var_tr",
    "Error": "var_error",
    "Cov1": "cov1",
    "Cov2": "cov2",
    "Cov3": "cov3",
}
METRIC = {"binary_sens": "sensitivity", "binary_spec": "specificity"}


def _entries(refdata):
    return json.loads((refdata / REF).read_text())["results"]


def _ours_for(ours, fom, path):
    """Our value for one leaf of an entry of the MRMCaov file (None: not a number we report)."""
    match path:
        case ("rule" | "metric" | "design",):
            return None
        case ("by_modality_reader", m, r):
            return ours[fom][m][r]
        case ("var_components", key):
            return ours["var_components"][VC[key]]
        case (analysis, "single", m, "value"):
            return ours[analysis]["single"][m][fom]
        case (analysis, "single", m, key, *i):
            value = ours[analysis]["single"][m][key]
            return value[i[0]] if i else value
        case (analysis, "differences", d, key, *i):
            value = ours[analysis]["differences"][d][key]
            return value[i[0]] if i else value
        case (analysis, key):
            return ours[analysis][key]
    raise KeyError(path)


def _entry_ids():
    from .conftest import REFDATA

    return sorted(json.loads((REFDATA / REF).read_text())["results"])


@pytest.mark.parametrize("entry", _entry_ids())
def test_every_mrmcaov_number(refdata, entry):
    """MRMCaov 0.3.0 binary_sens / binary_spec, jackknife, RRRC and (untruncated) FRRC, to 1e-9 relative."""
    ref = _entries(refdata)[entry]
    fom = METRIC[ref["metric"]]
    threshold = float(ref["rule"].rsplit(">=", 1)[1])
    ours = analyse(refdata / "vandyke.csv", fom=fom, threshold=threshold, frrc_truncate=False)
    assert ours["fom"] == fom and ours["threshold"] == threshold
    checked = 0
    for path, expected in leaves(ref):
        actual = _ours_for(ours, fom, path)
        what = f"{entry} {'/'.join(map(str, path))}"
        if path[0] in ("rule", "metric", "design"):
            continue
        if isinstance(expected, str):
            assert str(actual) == expected, what
        elif expected is None:
            assert actual is None, what
        else:
            assert_close(actual, expected, what)
            checked += 1
    assert checked >= 45


def test_max_relative_error_against_mrmcaov(refdata):
    """The largest relative difference over every number of the file (reported in the README)."""
    worst = 0.0
    for ref in _entries(refdata).values():
        fom = METRIC[ref["metric"]]
        ours = analyse(refdata / "vandyke.csv", fom=fom, threshold=float(ref["rule"][-1]), frrc_truncate=False)
        for path, expected in leaves(ref):
            if isinstance(expected, (int, float)) and not isinstance(expected, bool) and path[0] != "design":
                actual = _ours_for(ours, fom, path)
                worst = max(worst, abs(actual - expected) / max(abs(expected), 1e-300))
    assert worst < 1e-12


def test_values_are_the_shares_of_correct_calls(refdata):
    df = pd.read_csv(refdata / "vandyke.csv")
    ours = analyse(df, fom="specificity", threshold=4)
    for (m, r), g in df[df["truth"] == 0].groupby(["modality", "reader"]):
        assert ours["specificity"][str(m)][str(r)] == pytest.approx((g["rating"] < 4).mean(), rel=1e-15)
    assert set(ours) >= {"specificity", "specificity_se", "modality_specificity", "fom", "threshold"}
    assert "auc" not in ours and "modality_auc" not in ours
    assert all("specificity" in s and "auc" not in s for s in ours["rrrc"]["single"].values())
    auc = analyse(df)
    assert auc["fom"] == "auc" and auc["threshold"] is None and "auc" in auc["rrrc"]["single"]["1"]


def _brute_jackknife(x, truth, fom, threshold, clusters):
    """Leave each unit holding a FOM case out, recompute every FOM from scratch."""
    cases = truth if fom == "sensitivity" else ~truth
    right = (x >= threshold) if fom == "sensitivity" else (x < threshold)
    units = np.unique(clusters[cases])
    theta = np.array([[right[g, cases & (clusters != u)].mean() for u in units] for g in range(x.shape[0])])
    dev = theta - theta.mean(axis=1, keepdims=True)
    return (units.size - 1) / units.size * dev @ dev.T


@pytest.mark.parametrize("fom", ["sensitivity", "specificity"])
def test_clustered_jackknife_is_leave_one_patient_out(refdata, fom):
    df = pd.read_csv(refdata / "rjafroc_datasetROI_long.csv")
    wide = df.pivot_table(index=["modality", "reader"], columns="case", values="rating")
    per_case = df.drop_duplicates("case").set_index("case").loc[wide.columns]
    truth, clusters = per_case["truth"].to_numpy() == 1, per_case["patient"].to_numpy()
    x = wide.to_numpy()
    _, cov = binary_covariance(x, truth, fom, 0.5, "jackknife", np.unique(clusters, return_inverse=True)[1])
    np.testing.assert_allclose(cov, _brute_jackknife(x, truth, fom, 0.5, clusters), rtol=1e-12, atol=1e-18)
    ours = analyse(df, fom=fom, threshold=0.5, cluster="patient")
    assert_close(ours["covariance"]["matrix"][0][0], float(cov[0, 0]), "analyse() uses it")


def test_delong_clustered_is_obuchowski_ratio_form(refdata):
    df = pd.read_csv(refdata / "rjafroc_datasetROI_long.csv")
    wide = df.pivot_table(index=["modality", "reader"], columns="case", values="rating")
    per_case = df.drop_duplicates("case").set_index("case").loc[wide.columns]
    truth = per_case["truth"].to_numpy() == 1
    patients = np.unique(per_case["patient"].to_numpy(), return_inverse=True)[1]
    x = wide.to_numpy()
    theta, cov = binary_covariance(x, truth, "sensitivity", 0.5, "delong", patients)
    y = (x >= 0.5)[:, truth].astype(float)
    units = np.unique(patients[truth])
    a = np.stack([y[:, patients[truth] == u].sum(axis=1) - (patients[truth] == u).sum() * theta for u in units], 1)
    expected = units.size / (units.size - 1) * (a @ a.T) / truth.sum() ** 2
    np.testing.assert_allclose(cov, expected, rtol=1e-12)


@pytest.mark.parametrize("fom", ["sensitivity", "specificity"])
def test_unclustered_jackknife_delong_and_unbiased_coincide(refdata, fom):
    results = [
        analyse(refdata / "vandyke.csv", cov=c, fom=fom, threshold=3) for c in ("jackknife", "delong", "unbiased")
    ]
    matrices = [np.array(r["covariance"]["matrix"]) for r in results]
    np.testing.assert_allclose(matrices[1], matrices[0], rtol=1e-12)
    np.testing.assert_allclose(matrices[2], matrices[0], rtol=1e-12)
    df = pd.read_csv(refdata / "vandyke.csv")
    cases = df["truth"] == (1 if fom == "sensitivity" else 0)
    y = df[cases].pivot_table(index=["modality", "reader"], columns="case", values="rating").to_numpy()
    y = (y >= 3) if fom == "sensitivity" else (y < 3)
    np.testing.assert_allclose(matrices[0], np.cov(y.astype(float)) / y.shape[1], rtol=1e-12)


def test_split_plot_jackknife_is_leave_one_case_out_across_groups(refdata):
    df = pd.read_csv(refdata / "splitplot_6x2x240_3groups.csv")
    ours = analyse(df, fom="sensitivity", threshold=0.8)
    assert ours["design"] == "split-plot"
    wide = df.pivot_table(index=["modality", "reader"], columns="case", values="rating")  # NaN: not read
    truth = df.drop_duplicates("case").set_index("case").loc[wide.columns, "truth"].to_numpy() == 1
    x, cases = wide.to_numpy(), np.flatnonzero(truth)
    read = ~np.isnan(x)
    right = np.where(read, x >= 0.8, 0.0)
    theta = np.array(
        [
            [right[g, np.setdiff1d(cases, [u])].sum() / read[g, np.setdiff1d(cases, [u])].sum() for u in cases]
            for g in range(12)
        ]
    )
    dev = theta - theta.mean(axis=1, keepdims=True)
    expected = (cases.size - 1) / cases.size * dev @ dev.T
    np.testing.assert_allclose(np.array(ours["covariance"]["matrix"]), expected, rtol=1e-12, atol=1e-18)
    assert_close(ours["sensitivity"]["1"]["1"], right[0, cases].sum() / read[0, cases].sum(), "reader 1 sensitivity")
    delong = analyse(df, fom="sensitivity", threshold=0.8, cov="delong")
    matrix = np.array(delong["covariance"]["matrix"])
    assert matrix[0, 2] == 0.0  # readers 1 and 3 are in different groups: no shared case
    assert matrix[0, 1] != 0.0


def test_strata_with_a_binary_fom():
    df = _study()
    result = analyse(df, stratum="stratum", fom="sensitivity", threshold=0.5)
    for label, sub in result["strata"].items():
        alone = analyse(df[(df["stratum"] == label) | df["stratum"].isna()], fom="sensitivity", threshold=0.5)
        assert sub["modality_sensitivity"] == alone["modality_sensitivity"]
        assert sub["rrrc"]["differences"][0]["p"] == alone["rrrc"]["differences"][0]["p"]
        assert "p_holm" in sub["rrrc"]["differences"][0]
    # sensitivity needs positives only: a stratum without negatives is analysed; specificity refuses it
    only_pos = df[df["truth"] == 1].assign(stratum="all")
    both = pd.concat([df[df["truth"] == 0].assign(stratum="other"), only_pos])
    assert "error" not in analyse(both, stratum="stratum", fom="sensitivity", threshold=0.5)["strata"]["all"]
    error = analyse(both, stratum="stratum", fom="specificity", threshold=0.5)["strata"]["all"]["error"]
    assert "specificity needs negative (truth 0) cases" in error


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fom": "sensitivity"}, "sensitivity needs a threshold"),
        ({"fom": "auc", "threshold": 3}, "the AUC uses every rating and takes no threshold"),
        ({"threshold": 3}, "takes no threshold"),
        ({"fom": "ppv", "threshold": 3}, r"figure of merit 'ppv': expected one of \['auc', 'sensitivity'"),
        ({"fom": "specificity", "threshold": float("nan")}, "expected a finite number"),
        ({"fom": "specificity", "threshold": "high"}, "expected a finite number"),
    ],
)
def test_bad_fom_options_are_refused(refdata, kwargs, message):
    with pytest.raises(AnalysisInputError, match=message):
        analyse(refdata / "vandyke.csv", **kwargs)


def test_unbiased_refused_for_clustered_binary(refdata):
    with pytest.raises(AnalysisInputError, match="unbiased covariance is defined for unclustered data only"):
        analyse(
            refdata / "rjafroc_datasetROI_long.csv", cluster="patient", cov="unbiased", fom="sensitivity", threshold=0
        )


def test_a_threshold_above_every_rating_is_analysed(refdata):
    """Nobody calls anything positive: sensitivity 0 everywhere, no variance, differences undefined (None)."""
    ours = analyse(refdata / "vandyke.csv", fom="sensitivity", threshold=99)
    assert all(v == 0.0 for m in ours["sensitivity"].values() for v in m.values())
    assert ours["rrrc"]["differences"][0]["p"] is None
    assert ours["frrc"]["single"]["1"]["se"] == 0.0
