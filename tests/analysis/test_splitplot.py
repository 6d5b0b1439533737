"""Split-plot studies (readers in groups, each group reading its own block of cases): detection, refusals, the
MRMCaov reference, and agreement with the fully crossed analysis where a split-plot has one group."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from readerstudy.analysis import AnalysisInputError, analyse, analyse_study, build_study, empirical_auc, read_ratings
from readerstudy.analysis.covariance import COV_METHODS, auc_covariance
from readerstudy.analysis.splitplot import SplitPlotStudy, split_plot_auc_covariance

from .conftest import REFDATA, assert_close
from .peers import leaves

CSV = REFDATA / "splitplot_6x2x240_3groups.csv"
REF = json.loads((REFDATA / "splitplot_6x2x240_3groups_MRMCaov.json").read_text())
COVS = {"jackknife": "jackknife", "unbiased": "unbiased"}
VC = {"reader": "var_r", "modality:reader": "var_tr", "Error": "var_error", "Cov1": "cov1", "Cov2": "cov2"}
VC["Cov3"] = "cov3"


def _ours_value(ours: dict, path: tuple):
    """Our number for one leaf of MRMCaov's ``results[<cov>]`` block (RRRC)."""
    rrrc = ours["rrrc"]
    match path:
        case ("var_components", key):
            return ours["var_components"][VC[key]]
        case ("differences", i, "ci", j):
            return rrrc["differences"][i]["ci"][j]
        case ("differences", i, "modalities", j):
            return rrrc["differences"][i]["modalities"][j]
        case ("differences", i, key):
            return rrrc["differences"][i][key]
        case ("single", modality, "ci", j):
            return rrrc["single"][modality]["ci"][j]
        case ("single", modality, key):
            return rrrc["single"][modality][key]
        case (key,):
            return rrrc[key]
    raise KeyError(path)


REF_LEAVES = [
    pytest.param(peer_cov, path, value, id=f"{peer_cov}-{'/'.join(map(str, path))}")
    for peer_cov in COVS
    for path, value in leaves(REF["results"][peer_cov])
    if path != ("design",)  # MRMCaov's -1 (partially paired factorial): checked as "split-plot" below
]


@pytest.fixture(scope="module")
def ours() -> dict:
    return {cov: analyse(CSV, cov=cov, analyses=["rrrc"]) for cov in COVS.values()}


@pytest.mark.parametrize(("peer_cov", "path", "expected"), REF_LEAVES)
def test_every_mrmcaov_number(ours, peer_cov, path, expected):
    actual = _ours_value(ours[COVS[peer_cov]], path)
    if isinstance(expected, str):
        assert actual == expected
    else:
        assert_close(actual, expected, f"{peer_cov} {'/'.join(map(str, path))}")


def test_the_reference_covers_every_number():
    numbers = [p for p in REF_LEAVES if not isinstance(p.values[2], str)]
    assert len(numbers) == 2 * 26  # F test 4, difference 6, two single modalities 5 each, components 6
    assert REF["results"]["jackknife"]["design"] == REF["results"]["unbiased"]["design"] == -1


def test_design_and_groups_are_detected(ours):
    result = ours["jackknife"]
    assert result["design"] == "split-plot"
    assert [g["readers"] for g in result["groups"]] == [["1", "2"], ["3", "4"], ["5", "6"]]
    assert [g["n_cases"] for g in result["groups"]] == [80, 80, 80]
    assert sum(g["n_positive"] for g in result["groups"]) == result["n_positive"] == 120
    assert (result["n_readers"], result["n_cases"]) == (6, 240)
    assert all(c == {"group": i // 2, "reads": 160, "expected": 160, "complete": True, "kept": True}
               for i, c in enumerate(result["completion"].values()))  # fmt: skip


def test_delong_is_block_diagonal_where_mrmcaov_refuses_it():
    """MRMCaov: 'balanced design required'. Ours: DeLong within each block, 0 between groups (documented)."""
    assert "balanced design required" in REF["results"]["DeLong"]["error"]
    df = read_ratings(CSV)
    result = analyse(df, cov="delong", analyses=["rrrc"])
    matrix = np.array(result["covariance"]["matrix"])
    labels = result["covariance"]["labels"]
    for g, block in enumerate(result["groups"]):
        rows = [i for i, lab in enumerate(labels) if lab.split(":")[1] in block["readers"]]
        sub = df[df["reader"].astype(str).isin(block["readers"])]
        alone = analyse(sub, cov="delong", analyses=["rrrc"])
        assert alone["design"] == "fully crossed"
        np.testing.assert_allclose(matrix[np.ix_(rows, rows)], alone["covariance"]["matrix"], rtol=1e-12)
        others = [i for i in range(len(labels)) if i not in rows]
        assert (matrix[np.ix_(rows, others)] == 0).all(), g
    # close to the unbiased estimate, as in a fully crossed study
    unbiased = analyse(df, cov="unbiased", analyses=["rrrc"])
    assert result["rrrc"]["p"] == pytest.approx(unbiased["rrrc"]["p"], rel=0.02)


def _split(df: pd.DataFrame, groups: list[tuple[list, list]]) -> pd.DataFrame:
    """The rows where the reader belongs to a group and the case to that group's block."""
    keep = np.zeros(len(df), dtype=bool)
    for readers, cases in groups:
        keep |= df["reader"].isin(readers).to_numpy() & df["case"].isin(cases).to_numpy()
    return df[keep].reset_index(drop=True)


@pytest.fixture(scope="module")
def vandyke_split() -> pd.DataFrame:
    """Van Dyke cut into a split-plot: readers 1-2 read the odd cases, readers 3-5 the even ones."""
    df = pd.read_csv(REFDATA / "vandyke.csv")
    return _split(df, [([1, 2], range(1, 115, 2)), ([3, 4, 5], range(2, 115, 2))])


def _close_results(a, b, what=""):
    """Two result trees equal: numbers to 1e-12 relative, everything else exactly."""
    if isinstance(a, dict):
        assert set(a) == set(b), what
        for key in a:
            _close_results(a[key], b[key], f"{what}/{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close_results(x, y, f"{what}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15), f"{what}: {a} != {b}"
    else:
        assert a == b, what


def _one_group(study):
    k = study.truth.size
    return SplitPlotStudy(
        study.modalities,
        study.readers,
        study.cases,
        study.truth,
        study.ratings,
        np.zeros(len(study.readers), dtype=np.int64),
        np.zeros(k, dtype=np.int64),
        study.clusters,
    )


@pytest.mark.parametrize("cov", COV_METHODS)
def test_one_group_through_the_split_plot_path_is_the_ordinary_analysis(cov):
    study = build_study(read_ratings(REFDATA / "vandyke.csv"))
    ordinary = analyse_study(study, cov)
    split = analyse_study(_one_group(study), cov)
    assert (split.pop("design"), ordinary.pop("design")) == ("split-plot", "fully crossed")
    assert split["groups"] == [{"readers": study.readers, "n_cases": 114, "n_positive": 45, "n_negative": 69}]
    _close_results(split, ordinary)


@pytest.mark.parametrize("cov", ["jackknife", "delong"])
def test_one_group_with_patient_clusters_is_the_ordinary_analysis(cov):
    df = read_ratings(REFDATA / "rjafroc_datasetROI_long.csv", cluster="patient")
    study = build_study(df, "patient")
    ordinary = analyse_study(study, cov)
    split = analyse_study(_one_group(study), cov)
    del split["design"], ordinary["design"]
    _close_results(split, ordinary)


def test_a_fully_crossed_table_is_detected_as_such(refdata):
    result = analyse(refdata / "vandyke.csv")
    assert result["design"] == "fully crossed"
    assert result["groups"] == [{"readers": ["1", "2", "3", "4", "5"], "n_cases": 114, "n_positive": 45,
                                 "n_negative": 69}]  # fmt: skip
    assert set(result["completion"]) == set(result["readers"])


def test_jackknife_against_brute_force_leave_one_out(vandyke_split):
    """Every leave-one-case-out AUC recomputed from scratch; a reader's AUC stays put when the case is not theirs."""
    df = vandyke_split
    result = analyse(df, cov="jackknife", analyses=["rrrc"])
    cases = sorted(df["case"].unique())
    labels = result["covariance"]["labels"]
    theta = np.empty((len(labels), len(cases)))
    for g, label in enumerate(labels):
        modality, reader = (int(v) for v in label.split(":"))
        rows = df[(df["modality"] == modality) & (df["reader"] == reader)]
        case, rating, truth = rows["case"].to_numpy(), rows["rating"].to_numpy(), rows["truth"].to_numpy() == 1
        for k, left_out in enumerate(cases):
            left = case != left_out
            theta[g, k] = empirical_auc(rating[left][None, :], truth[left])[0]
    dev = theta - theta.mean(axis=1, keepdims=True)
    brute = (len(cases) - 1) / len(cases) * dev @ dev.T
    np.testing.assert_allclose(result["covariance"]["matrix"], brute, rtol=1e-10, atol=1e-16)


def test_unbiased_is_block_diagonal(vandyke_split):
    study = build_study(read_ratings(REFDATA / "vandyke.csv"))
    first = study.subset(np.asarray(study.cases) % 2 == 1)
    split = analyse(vandyke_split, cov="unbiased", analyses=["rrrc"])
    matrix = np.array(split["covariance"]["matrix"])
    rows = [0, 1, 5, 6]  # readers 1 and 2 in both modalities
    x = first.ratings[:, :2].reshape(4, -1)
    np.testing.assert_allclose(matrix[np.ix_(rows, rows)], auc_covariance(x, first.truth, "unbiased")[1], rtol=1e-12)
    assert (matrix[np.ix_(rows, [2, 3, 4, 7, 8, 9])] == 0).all()


def test_covariances_average_over_all_reader_pairs(vandyke_split):
    """Cov2 is the mean over every pair of different readers, cross-group pairs (near 0) included (MRMCaov)."""
    result = analyse(vandyke_split, cov="unbiased", analyses=["rrrc"])
    m = np.array(result["covariance"]["matrix"])
    same_modality_other_reader = [m[i, j] for i in range(5) for j in range(5) if i != j]
    assert_close(result["var_components"]["cov2"] * 2, np.mean(same_modality_other_reader) + np.mean(
        [m[5 + i, 5 + j] for i in range(5) for j in range(5) if i != j]), "Cov2")  # fmt: skip


def test_strata_of_a_split_plot(vandyke_split):
    df = vandyke_split.copy()
    df["part"] = np.where(df["case"] % 4 < 2, "A", "B")
    result = analyse(df, stratum="part", analyses=["rrrc"])
    for label in ("A", "B"):
        sub = result["strata"][label]
        assert sub["design"] == "split-plot"
        alone = analyse(df[df["part"] == label], analyses=["rrrc"])
        assert sub["rrrc"].pop("p_holm") >= sub["rrrc"]["p"]
        sub["rrrc"]["differences"][0].pop("p_holm")
        _close_results(sub["rrrc"], alone["rrrc"], label)
    df["part"] = np.where(df["case"] % 2 == 1, "first block", "second block")
    result = analyse(df, stratum="part", analyses=["rrrc"])
    assert "block of reader group 2 (readers '3', '4', '5') has no cases" in result["strata"]["first block"]["error"]


def test_cli_analyses_a_split_plot(tmp_path):
    from readerstudy.analysis.__main__ import main

    out = tmp_path / "split.json"
    assert main([str(CSV), "--analysis", "rrrc", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["design"] == "split-plot" and len(result["groups"]) == 3
    assert_close(result["rrrc"]["p"], REF["results"]["jackknife"]["p"], "p")


# --- refusals -------------------------------------------------------------------------------------------------


def test_a_read_missing_in_one_modality_is_named(vandyke_split):
    df = vandyke_split
    df = df[~((df["reader"] == 4) & (df["modality"] == 2) & (df["case"] == 60))]
    with pytest.raises(
        AnalysisInputError,
        match=r"not fully crossed: 1 reader x modality x case cell\(s\) missing, e\.g\. reader '4' x modality "
        r"'2' x case 60; expected every reader to rate every case of their group's block \(2 groups\) in every "
        r"modality \(readers '4' did not; complete_readers_only=True",
    ):
        analyse(df)


def test_partially_overlapping_blocks_are_refused():
    df = pd.read_csv(REFDATA / "vandyke.csv")
    df = _split(df, [([1, 2], range(1, 80)), ([3, 4, 5], range(40, 115))])
    with pytest.raises(
        AnalysisInputError,
        match=r"reader groups whose case blocks overlap partially: readers '1', '2' rated 79 cases; readers '3', "
        r"'4', '5' rated 75 cases; their blocks share cases \(e\.g\. case 40 by both of the first two\), and no "
        r"reader rated all 114 cases",
    ):
        analyse(df)
    with pytest.raises(AnalysisInputError, match="overlap partially"):  # leaving readers out does not help
        analyse(df, complete_readers_only=True)


def test_different_cases_in_each_modality_are_refused():
    """Cases nested in modalities (each reader reads half the cases unaided, the other half aided)."""
    df = pd.read_csv(REFDATA / "vandyke.csv")
    df = df[(df["modality"] == 1) == (df["case"] <= 57)]
    with pytest.raises(
        AnalysisInputError,
        match=r"readers '1', '2', '3', '4', '5' rated different cases in different modalities, e\.g\. reader '1' "
        r"rated case 1 in modality '1' but not in '2'",
    ):
        analyse(df)


def test_a_block_with_one_truth_class_is_refused():
    df = pd.read_csv(REFDATA / "vandyke.csv")
    negatives = sorted(df.loc[df["truth"] == 0, "case"].unique())
    positives = sorted(df.loc[df["truth"] == 1, "case"].unique())
    df = _split(df, [([1, 2], negatives[:10]), ([3, 4, 5], negatives[10:] + positives)])
    with pytest.raises(
        AnalysisInputError, match=r"block of reader group 1 \(readers '1', '2'\) has only negative cases \(10\)"
    ):
        analyse(df)


def test_delong_refuses_patients_spread_over_blocks():
    df = pd.read_csv(REFDATA / "rjafroc_datasetROI_long.csv")
    roi = df["case"].str.slice(-1)  # each patient's ROIs 1 and 2 go to group 1, 3 and 4 to group 2
    df = df[(df["reader"] <= 2) == roi.isin(["1", "2"])]
    with pytest.raises(AnalysisInputError, match=r"patient cluster.* more than one reader group.*use the jackknife"):
        analyse(df, cov="delong", cluster="patient")
    result = analyse(df, cov="jackknife", cluster="patient")
    assert result["design"] == "split-plot" and result["n_clusters"] == 90


# --- incomplete studies ---------------------------------------------------------------------------------------


def test_complete_readers_only_drops_incomplete_readers_of_a_split_plot(vandyke_split):
    df = vandyke_split
    unfinished = (df["reader"] == 4) & (df["case"] > 86)  # reader 4 stopped early, in both modalities
    half_read = (df["reader"] == 1) & (df["modality"] == 2) & (df["case"] == 3)  # one read missing
    incomplete = df[~(unfinished | half_read)]
    with pytest.raises(AnalysisInputError, match=r"readers '1', '4' did not"):
        analyse(incomplete)
    result = analyse(incomplete, complete_readers_only=True)
    assert result["readers"] == ["2", "3", "5"]
    assert result["completion"]["4"] == {"group": 1, "reads": 2 * 43, "expected": 2 * 57, "complete": False,
                                         "kept": False}  # fmt: skip
    assert result["completion"]["1"]["reads"] == 113 and not result["completion"]["1"]["kept"]
    assert result["completion"]["3"]["kept"] and result["completion"]["3"]["reads"] == 114
    assert [g["readers"] for g in result["groups"]] == [["2"], ["3", "5"]]
    without = analyse(df[df["reader"].isin([2, 3, 5])])
    del result["completion"], without["completion"]
    _close_results(result, without)


def test_complete_readers_only_in_a_fully_crossed_study(refdata):
    df = pd.read_csv(refdata / "vandyke.csv")
    incomplete = df[~((df["reader"] == 5) & (df["case"] > 90))]
    with pytest.raises(AnalysisInputError, match=r"not fully crossed: 48 .*expected every reader to rate every case "
                       r"in every modality \(readers '5' did not"):  # fmt: skip
        analyse(incomplete)
    result = analyse(incomplete, complete_readers_only=True)
    assert result["design"] == "fully crossed" and result["readers"] == ["1", "2", "3", "4"]
    assert result["completion"]["5"] == {"group": 0, "reads": 180, "expected": 228, "complete": False,
                                         "kept": False}  # fmt: skip
    _close_results(result["rrrc"], analyse(df[df["reader"] != 5])["rrrc"])


def test_cli_complete_readers_only(refdata, tmp_path, capsys):
    from readerstudy.analysis.__main__ import main

    df = pd.read_csv(refdata / "vandyke.csv")
    path = tmp_path / "incomplete.csv"
    df[~((df["reader"] == 5) & (df["case"] > 90))].to_csv(path, index=False)
    assert main([str(path)]) == 2
    assert "--complete-readers-only" in capsys.readouterr().err
    assert main([str(path), "--complete-readers-only", "--json", str(tmp_path / "out.json")]) == 0
    assert "left out as incomplete: reader 5 (180/228 reads)" in capsys.readouterr().out
    assert json.loads((tmp_path / "out.json").read_text())["n_readers"] == 4


def test_split_plot_cov_rejects_unknown_method():
    study = build_study(read_ratings(REFDATA / "vandyke.csv"))
    with pytest.raises(AnalysisInputError, match="covariance method 'bootstrap'"):
        split_plot_auc_covariance(_one_group(study), "bootstrap")
