"""Every number the peer programs report on the reference data sets, reproduced to 1e-9 relative."""

import json
import re

import pytest

from readerstudy.analysis import analyse, build_study, read_ratings

from .conftest import assert_close
from .peers import SKIP, common_value, is_number, leaves, mrmcaov_value, rjafroc_value, roi_run_value

COVS = {"jackknife": "jackknife", "DeLong": "delong", "unbiased": "unbiased"}


def _compare(ref: dict, value_of, label: str) -> int:
    """Compare every leaf of ``ref``; returns how many numbers were checked."""
    checked = 0
    for path, expected in leaves(ref):
        actual = value_of(path)
        if actual is SKIP:
            continue
        what = f"{label} {'/'.join(map(str, path))}"
        if is_number(expected):
            assert_close(actual, expected, what)
            checked += 1
        else:
            assert str(actual) == str(expected), f"{what}: {actual!r} != {expected!r}"
    return checked


def _load(refdata, name):
    return json.loads((refdata / name).read_text())


@pytest.mark.parametrize("dataset", ["vandyke", "franken"])
@pytest.mark.parametrize("peer_cov", list(COVS))
def test_every_mrmcaov_number(refdata, dataset, peer_cov):
    ref = _load(refdata, f"{dataset}_MRMCaov.json")
    # MRMCaov's FRRC error term does not truncate Cov2 - Cov3
    ours = analyse(refdata / f"{dataset}.csv", cov=COVS[peer_cov], frrc_truncate=False)
    n = _compare(ref["results"][peer_cov], lambda p: mrmcaov_value(ours, p), f"{dataset} MRMCaov {peer_cov}")
    top = {k: v for k, v in ref.items() if k != "results"}
    n += _compare(top, lambda p: common_value(ours, p), f"{dataset} MRMCaov")
    assert n > 150


@pytest.mark.parametrize("dataset", ["vandyke", "franken"])
def test_every_rjafroc_number(refdata, dataset):
    ref = _load(refdata, f"{dataset}_RJafroc.json")
    ours = analyse(refdata / f"{dataset}.csv", cov="jackknife", frrc_truncate=True)
    assert _compare(ref, lambda p: rjafroc_value(ours, p), f"{dataset} RJafroc") > 80


def test_frrc_conventions_differ_only_where_cov2_below_cov3(refdata):
    """Franken has Cov2 < Cov3: the peers' X2 0.3210 (Iowa/RJafroc) vs 0.3640 (MRMCaov); Van Dyke agrees."""
    fr_iowa = analyse(refdata / "franken.csv", frrc_truncate=True)
    fr_mrmcaov = analyse(refdata / "franken.csv", frrc_truncate=False)
    assert fr_iowa["var_components"]["cov2"] < fr_iowa["var_components"]["cov3"]
    rjafroc_x2 = _load(refdata, "franken_RJafroc.json")["results"]["FRRC"]["global_test"]["X2"]
    mrmcaov_x2 = _load(refdata, "franken_MRMCaov.json")["results"]["jackknife"]["FRRC"]["global_test"]["X2"]
    assert round(rjafroc_x2, 4) == 0.3210 and round(mrmcaov_x2, 4) == 0.3640  # as the refdata README says
    assert_close(fr_iowa["frrc"]["chisq"], rjafroc_x2, "Iowa-convention X2")
    assert_close(fr_mrmcaov["frrc"]["chisq"], mrmcaov_x2, "MRMCaov-convention X2")
    assert fr_iowa["frrc"]["truncated"] and not fr_mrmcaov["frrc"]["truncated"]
    assert fr_iowa["rrrc"] == fr_mrmcaov["rrrc"]
    vd = [analyse(refdata / "vandyke.csv", frrc_truncate=t)["frrc"] for t in (True, False)]
    assert vd[0]["chisq"] == vd[1]["chisq"]


def test_default_frrc_is_iowa_convention(refdata):
    assert analyse(refdata / "franken.csv")["frrc"] == analyse(refdata / "franken.csv", frrc_truncate=True)["frrc"]


def test_imrmc_ustat_difference(refdata):
    """iMRMC 4.0.3 U-statistic variance of the difference and its Hillis df (printed to ~9 digits)."""
    ref = _load(refdata, "vandyke_reference_summary.json")["iMRMC_4.0.3_Ustat"]
    ours = analyse(refdata / "vandyke.csv", cov="unbiased")["rrrc"]["differences"][0]
    assert_close(ours["estimate"], ref["estimate"], "estimate", rel=1e-8)
    assert_close(ours["se"] ** 2, ref["var"], "var", rel=1e-8)
    assert_close(ours["se"], ref["se"], "se")
    assert_close(ours["df"], ref["Hillis"]["df"], "Hillis df", rel=1e-8)


def test_clustered_roi_data(refdata):
    """RJafroc FOM 'ROI' (Obuchowski 1997) and MRMCaov with case = patient, plus the naive per-ROI runs."""
    ref = _load(refdata, "rjafroc_datasetROI_clustered.json")
    csv = refdata / "rjafroc_datasetROI_long.csv"
    clustered = analyse(csv, cov="jackknife", cluster="patient", frrc_truncate=False)
    runs = {
        "RJafroc_ROI_jackknife_by_patient": analyse(csv, cov="jackknife", cluster="patient"),
        "MRMCaov_jackknife_by_patient": clustered,
        "MRMCaov_jackknife_by_unit_NAIVE": analyse(csv, cov="jackknife", frrc_truncate=False),
        "MRMCaov_DeLong_by_unit_NAIVE": analyse(csv, cov="delong", frrc_truncate=False),
    }
    assert set(runs) == set(ref["all"])
    study = build_study(read_ratings(csv, cluster="patient"), cluster="patient")
    with_lesion = {int(c) for c in study.clusters[study.truth]}
    n = 0
    for name, ours in runs.items():

        def value(path, ours=ours):
            match path:
                case ("n_patients_normal",):
                    return study.n_clusters - len(with_lesion)
                case ("n_patients_abnormal",):
                    return len(with_lesion)
            return roi_run_value(ours, path)

        n += _compare(ref["all"][name], value, name)
    top = {k: v for k, v in ref.items() if k not in ("all", "versions", "dataset", "csv", "R_version")}
    expected_top = {
        "n_readers": clustered["n_readers"],
        "n_modalities": len(clustered["modalities"]),
        "n_patients": clustered["n_clusters"],
        "n_units": clustered["n_cases"],
        "n_pos_units": clustered["n_positive"],
        "n_neg_units": clustered["n_negative"],
    }
    assert top == expected_top
    assert n > 100


# ---- the Iowa program's own printout (OR-DBM MRMC 2.51): every number, to the digits it prints ----


def _printed(text: str, ours: float, what: str) -> None:
    """ours rounds to the printed ``text`` (half a unit in its last printed digit)."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    assert abs(ours - float(text)) <= 0.5 * 10**-decimals + 1e-12, f"Iowa {what}: printed {text}, ours {ours!r}"


NUM = r"(-?\d+\.\d+|-?\d+)"


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end, text.index(start))]


def test_iowa_printout(refdata):  # noqa: C901
    text = (refdata / "vandyke_ORDBM-MRMC-2.51_iowa_output.txt").read_text()
    ours = analyse(refdata / "vandyke.csv", cov="jackknife")
    mods, readers = ours["modalities"], ours["readers"]
    checked = 0

    est = _section(text, "TREATMENT x READER AUC ESTIMATES", "TREATMENT AUC MEANS")
    for line in re.findall(rf"^\s+(\d+)\s+{NUM}\s+{NUM}\s*$", est, re.M):
        for m, value in zip(mods, line[1:], strict=True):
            _printed(value, ours["auc"][m][line[0]], f"AUC reader {line[0]} modality {m}")
            checked += 1
    means = _section(text, "TREATMENT AUC MEANS", "TREATMENT AUC MEAN DIFFERENCES")
    for m, value in re.findall(rf"^\s+(\d+)\s+{NUM}\s*$", means, re.M):
        _printed(value, ours["modality_auc"][m], f"mean AUC {m}")
        checked += 1
    (diff,) = re.findall(rf"1 - 2\s+{NUM}", _section(text, "MEAN DIFFERENCES", "ANOVA Tables"))
    _printed(diff, ours["modality_auc"]["1"] - ours["modality_auc"]["2"], "mean difference")

    anova = _section(text, "TREATMENT X READER ANOVA of AUCs", "READER ANOVAs")
    t, r = len(mods), len(readers)
    ms = {
        "T": (ours["anova"]["ms_t"], t - 1),
        "R": (ours["anova"]["ms_r"], r - 1),
        "T*R": (ours["anova"]["ms_tr"], (t - 1) * (r - 1)),
    }
    for source, ss, df, mean_sq in re.findall(rf"^\s+(T|R|T\*R)\s+{NUM}\s+(\d+)\s+{NUM}\s*$", anova, re.M):
        _printed(mean_sq, ms[source][0], f"MS({source})")
        _printed(ss, ms[source][0] * ms[source][1], f"SS({source})")
        assert int(df) == ms[source][1]
        checked += 2
    per_mod = re.search(rf"R\s+4\s+{NUM}\s+{NUM}", _section(text, "READER ANOVAs", "Variance component"))
    for i in range(t):
        _printed(per_mod.group(i + 1), ours["anova"]["ms_r_by_modality"][i], f"MS(R) modality {i + 1}")
        checked += 1

    comps = _section(text, "Obuchowski-Rockette variance component", "Corresponding DBM")
    vc = ours["var_components"]
    names = {
        "Var(R)": ("var_r", None),
        "Var(T*R)": ("var_tr", None),
        "COV1": ("cov1", "r1"),
        "COV2": ("cov2", "r2"),
        "COV3": ("cov3", "r3"),
        "Var(Error)": ("var_error", None),
    }
    for name, (key, corr) in names.items():
        row = re.search(rf"^ {re.escape(name)}\s+{NUM}(?:\s+{NUM})?\s*$", comps, re.M)
        _printed(row.group(1), vc[key], name)
        checked += 1
        if corr:
            _printed(row.group(2), vc[corr], corr)
            checked += 1

    rrrc = _section(text, "Analysis 1 (OR Analysis)", "Analysis 2 (OR Analysis)")
    g = re.search(rf"Treatment\s+1\s+{NUM}\s+{NUM}\s+{NUM}\s*\n\s*Error term\s+{NUM}\s+{NUM}", rrrc)
    for value, ours_v, what in zip(
        g.groups(),
        [ours["anova"]["ms_t"], ours["rrrc"]["f"], ours["rrrc"]["p"], ours["rrrc"]["df2"], ours["rrrc"]["denominator"]],
        ["MS(T)", "F", "p", "ddf", "error term"],
        strict=True,
    ):
        _printed(value, ours_v, f"RRRC {what}")
        checked += 1
    d = ours["rrrc"]["differences"][0]
    row = re.search(rf"1 - 2\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}\s+\({NUM} ,\s+{NUM}\)", rrrc).groups()
    for value, ours_v in zip(row, [d["estimate"], d["se"], d["df"], d["t"], d["p"], *d["ci"]], strict=True):
        _printed(value, ours_v, "RRRC difference")
        checked += 1
    for m in mods:
        s = ours["rrrc"]["single"][m]
        row = re.search(rf"^\s+{m}\s+{NUM}\s+{NUM}\s+{NUM}\s+\({NUM} ,\s+{NUM}\)\s+{NUM}", rrrc, re.M).groups()
        for value, ours_v in zip(row, [s["auc"], s["se"], s["df"], *s["ci"], s["cov2"]], strict=True):
            _printed(value, ours_v, f"RRRC single {m}")
            checked += 1

    frrc = _section(text, "Analysis 2 (OR Analysis)", "Analysis 3 (OR Analysis)")
    x2, df, p = re.search(rf"^\s+{NUM}\s+(\d+)\s+{NUM}\s*$", frrc, re.M).groups()
    _printed(x2, ours["frrc"]["chisq"], "X2")
    _printed(p, ours["frrc"]["p"], "FRRC p")
    assert int(df) == ours["frrc"]["df"]
    d = ours["frrc"]["differences"][0]
    row = re.search(rf"^\s+1 - 2\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}\s+\({NUM} ,\s+{NUM}\)", frrc, re.M).groups()
    for value, ours_v in zip(row, [d["estimate"], d["se"], d["z"], d["p"], *d["ci"]], strict=True):
        _printed(value, ours_v, "FRRC difference")
    for m in mods:
        s = ours["frrc"]["single"][m]
        row = re.search(rf"^\s+{m}\s+{NUM}\s+{NUM}\s+\({NUM} ,\s+{NUM}\)\s*$", frrc, re.M).groups()
        for value, ours_v in zip(row, [s["auc"], s["se"], *s["ci"]], strict=True):
            _printed(value, ours_v, f"FRRC single {m}")
        row = re.search(
            rf"^\s+{m}\s+{NUM}\s+{NUM}\s*$", _section(frrc, "Treatment  Var(Error)", "StdErr"), re.M
        ).groups()
        _printed(row[0], s["var_error"], f"FRRC Var(Error) {m}")
        _printed(row[1], s["cov2"], f"FRRC Cov2 {m}")
        checked += 6
    for pr in ours["frrc"]["per_reader"]:
        row = re.search(
            rf"^\s+{pr['reader']}\s+1 - 2\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}\s+\({NUM} ,\s+{NUM}\)", frrc, re.M
        ).groups()
        for value, ours_v in zip(row, [pr["estimate"], pr["se"], pr["z"], pr["p"], *pr["ci"]], strict=True):
            _printed(value, ours_v, f"FRRC reader {pr['reader']}")
        row = re.search(
            rf"^\s+{pr['reader']}\s+{NUM}\s+{NUM}\s*$", _section(frrc, "Reader  Var(Error)", "StdErr"), re.M
        ).groups()
        _printed(row[0], pr["var_error"], f"Var(Error) reader {pr['reader']}")
        _printed(row[1], pr["cov1"], f"Cov1 reader {pr['reader']}")
        checked += 8

    rrfc = _section(text, "Analysis 3 (OR Analysis)", "REFERENCES")
    ms_t, f, p = re.search(rf"Treatment\s+1\s+{NUM}\s+{NUM}\s+{NUM}", rrfc).groups()
    _printed(ms_t, ours["anova"]["ms_t"], "RRFC MS(T)")
    _printed(f, ours["rrfc"]["f"], "RRFC F")
    _printed(p, ours["rrfc"]["p"], "RRFC p")
    (ms_tr,) = re.search(rf"T\*R\s+4\s+{NUM}", rrfc).groups()
    _printed(ms_tr, ours["rrfc"]["denominator"], "RRFC MS(T*R)")
    d = ours["rrfc"]["differences"][0]
    row = re.search(rf"1 - 2\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}\s+\({NUM} ,\s+{NUM}\)", rrfc).groups()
    for value, ours_v in zip(row, [d["estimate"], d["se"], d["df"], d["t"], d["p"], *d["ci"]], strict=True):
        _printed(value, ours_v, "RRFC difference")
    for m in mods:
        s = ours["rrfc"]["single"][m]
        row = re.search(rf"^\s+{m}\s+{NUM}\s+{NUM}\s+{NUM}\s+(\d+)\s+\({NUM} ,\s+{NUM}\)", rrfc, re.M).groups()
        for value, ours_v in zip(row, [s["auc"], s["ms_r"], s["se"], s["df"], *s["ci"]], strict=True):
            _printed(value, ours_v, f"RRFC single {m}")
        checked += 6
    assert checked > 90
