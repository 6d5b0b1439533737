"""The report a journal and a regulator accept, from a run's stored result (no database): the methods paragraph,
the ANOVA, readers' AUCs with SE and CI, the covariance matrix, the DL-vs-readers comparison, the checklist, the
flow of cases, and the defects fixed (stratum order, empty and one-class strata, reading-time medians, ROC colours,
the forest plot's label, degenerate standalone AUCs, small strata)."""

import json
import re
import xml.etree.ElementTree as ET
from importlib.metadata import version

import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.template.loader import render_to_string
from django.utils.html import escape
from matplotlib.colors import to_hex
from scipy.stats import norm

from readerstudy.analysis import analyse
from readerstudy.analysis.onesided import one_sided
from readerstudy.analysis.strata import size_stratum
from readerstudy.results import checklist, figures, flow, methods, report
from readerstudy.results.models import AnalysisRun
from readerstudy.results.reading_time import reading_time_model
from readerstudy.results.runs import run_analysis
from readerstudy.results.views import report_context
from readerstudy.studies.models import Study
from tests.results.test_formats import simulate_study

PLAN = {
    "reader_groups": 1,
    "plan_threshold": 60,
    "plan_hypothesis": "non_inferiority",
    "plan_margin": 0.05,
    "plan_frrc_convention": "untruncated",
    "plan_effect_size": 0.06,
}
PARAMETERS = {"cov": "jackknife", "cluster_by_patient": True, "frrc_convention": "untruncated"}


def imported_cases(df: pd.DataFrame, practice: int = 2) -> pd.DataFrame:
    cases = df.drop_duplicates("case")[["case", "diameter_mm", "truth"]].assign(practice=False)
    extra = pd.DataFrame(
        {"case": [f"X{i}" for i in range(practice)], "diameter_mm": 5.0, "truth": [i % 2 for i in range(practice)]}
    )
    return pd.concat([cases, extra.assign(practice=True)], ignore_index=True)


def analysed(df: pd.DataFrame, parameters: dict = PARAMETERS, plan: dict = PLAN, **kwargs) -> dict:
    """A run's result as stored (after the JSON round trip)."""
    result = run_analysis(
        df, parameters, reading_time=reading_time_model, plan=plan, imported=imported_cases(df), **kwargs
    )
    return json.loads(json.dumps(result, allow_nan=False))


@pytest.fixture(scope="module")
def study():
    df = simulate_study().astype({"rating": float, "not_assessable_reason": object})
    first = df["case"] == df["case"].iloc[0]
    df.loc[first & (df["reader"] == "reader2") & (df["modality"] == "aided"), "rating"] = None
    df.loc[df["rating"].isna(), ["not_assessable", "not_assessable_reason"]] = [1, "Lesion not visible"]
    return df


@pytest.fixture(scope="module")
def result(study):
    return analysed(study)


def render(result: dict, parameters: dict | None = None) -> str:
    """The report body of an unsaved run holding ``result`` (as the run page and the download show it)."""
    run = AnalysisRun(
        pk=7,
        study=Study(name="Report study"),
        created_by=get_user_model()(username="stat"),
        parameters=parameters or result["parameters"],
        result=result,
        figures={},
        software_version="readerstudy test",
    )
    result.setdefault("records", {}).setdefault("readers", [])  # as a run stores them: no query
    return render_to_string("results/_report_body.html", report_context(run, inline_figures=False))


def values(html: str) -> list[float]:
    return [float(v) for v in re.findall(r'data-value="([^"]+)"', html)]


def section(html: str, key: str) -> str:
    pattern = rf'<section class="stratum"[^>]*data-stratum="{re.escape(escape(key))}">(.*?)</section>'
    match = re.search(pattern, html, re.S)
    assert match, key
    return match.group(1)


# ------------------------------------------------------------------------------------------ methods


def test_methods_paragraph_takes_every_number_from_the_run(result):
    s, excluded = result["summary"], result["excluded"]
    text = " ".join(methods.methods_paragraphs(result))
    assert (
        f"{s['n_readers']} readers rated {s['n_cases']} lesions ({s['n_positive']} positive, {s['n_negative']} "
        f"negative) in {s['n_patients']} patients in 2 modalities (aided, unaided): {s['n_reads']} reads" in text
    )
    assert s["n_cases"] == 83 and excluded["n_cases"] == 1  # one lesion left out of the simulated 84
    assert "1 lesion with a read marked not assessable (1 read) was left out" in text
    assert f"({excluded['n_reads_left_out']} reads in all): a complete-case analysis" in text
    assert "2 practice cases of the 86 imported were read in the practice session only" in text
    assert "Obuchowski–Rockette method treating readers and cases as random (RRRC)" in text
    assert "Hillis (2008) denominator degrees of freedom" in text
    assert "jackknife over patients" in text
    assert f"the patient as the clustering unit ({s['n_patients']} patients)" in text
    assert "Cov2 − Cov3 untruncated in the error term (the convention of MRMCaov)" in text
    assert "(≤10 mm, 10–30 mm, >30 mm; bin edges 10, 30 mm" in text
    assert "Holm-adjusted across the 3 analysable strata" in text
    assert "non-inferiority of aided with a margin of 0.05 in AUC (H0: aided − unaided ≤ −0.05)" in text
    assert "tested one-sided at α = 0.025" in text and "the lower end of the two-sided 95% CI" in text
    assert "lies above −0.05" in text
    assert "Sensitivity and specificity were estimated at the planned threshold (a rating ≥ 60 calls" in text
    for library in ("numpy", "scipy", "pandas"):
        assert f"{library} {version(library)}" in text
    assert "single-treatment OR method (RJafroc 1T-RRRC" in text
    assert "Reading time was compared with a linear mixed model" in text


def test_methods_follow_the_run_not_the_defaults(study):
    result = analysed(
        study,
        {"cov": "delong", "cluster_by_patient": False, "frrc_convention": "truncated", "size_bins_mm": [15]},
        {**PLAN, "plan_hypothesis": "superiority", "plan_margin": 0.0, "plan_threshold": None},
    )
    text = " ".join(methods.methods_paragraphs(result))
    assert "estimated by the DeLong method, with the lesion as the unit" in text
    assert "max(Cov2 − Cov3, 0) in the error term (the convention of the Iowa OR-DBM MRMC program and RJafroc)" in text
    assert "(≤15 mm, >15 mm; bin edges 15 mm" in text and "across the 2 analysable strata" in text
    assert "superiority (H0: aided − unaided ≤ 0, margin 0), tested one-sided at α = 0.025" in text
    assert "No rating threshold was planned: no binary endpoints" in text


def test_methods_of_an_older_run_say_not_recorded(result):
    old = {k: v for k, v in result.items() if k not in ("plan", "software", "flow", "records")}
    text = " ".join(methods.methods_paragraphs(old, "readerstudy 0.1.0 (numpy 1)"))
    assert "Hypothesis and margin: not recorded in this run" in text
    assert "Rating threshold for binary endpoints: not recorded" in text
    assert "Analyses were run with readerstudy 0.1.0 (numpy 1)." in text


def test_methods_shown_in_the_report(result):
    html = render(result)
    block = re.search(r'<div data-testid="methods">(.*?)</div>', html, re.S).group(1)
    for paragraph in methods.methods_paragraphs(result, "readerstudy test"):
        assert escape(paragraph) in block


# ------------------------------------------------------------------- the plan: one-sided test, binary endpoints


def complete(df: pd.DataFrame, result: dict) -> pd.DataFrame:
    """The table the run analysed: complete cases, the run's strata."""
    table = df[~df["case"].isin(result["excluded"]["cases"])].copy()
    table["size_stratum"] = [size_stratum(d, result["parameters"]["size_bins_mm"]) for d in table["diameter_mm"]]
    return table[["reader", "modality", "case", "truth", "rating", "patient", "size_stratum"]]


def test_the_planned_non_inferiority_test_is_one_sided_at_half_alpha(study, result):
    for block in [result["mrmc"], *result["mrmc"]["strata"].values()]:
        for name in ("rrrc", "frrc", "rrfc"):
            d = block[name]["differences"][0]
            assert d["modalities"] == ["aided", "unaided"]
            plain = {k: v for k, v in d.items() if k != "one_sided"}
            expected = one_sided(plain, "non-inferiority", 0.05, 0.025)
            assert d["one_sided"] == {**expected, "difference": ["aided", "unaided"], "estimate": d["estimate"]}
            # the one-sided 97.5% lower bound is the lower end of the two-sided 95% CI
            assert d["one_sided"]["lower_bound"] == pytest.approx(d["ci"][0], abs=1e-12)
            assert d["one_sided"]["rejected"] == (d["ci"][0] > -0.05)
    html = render(result)
    test = result["mrmc"]["rrrc"]["differences"][0]["one_sided"]
    shown = re.search(r'data-testid="one-sided-rrrc">(.*?)</p>', section(html, "overall")).group(1)
    assert shown == escape(
        "Planned test of non-inferiority of aided (margin 0.05): H0 aided − unaided ≤ −0.05; one-sided α = 0.025; "
        "97.5% lower confidence bound (the lower end of the two-sided 95% CI) "
        f"{test['lower_bound']:.4f} > −0.05; p = {test['p']:.4g} (one-sided): shown."
    )


def test_the_planned_test_follows_the_assisted_modality_whatever_its_name(study):
    # The analysis stores differences in the sorted order of the names: unassisted - with_dl here. The plan tests
    # the assisted modality against the other, so it flips the difference.
    df = study.replace({"modality": {"aided": "with_dl", "unaided": "unassisted"}})
    plan = {**PLAN, "plan_hypothesis": "superiority", "plan_margin": 0.0}
    result = analysed(df, plan=plan, compared=("with_dl", "unassisted"))
    d = result["mrmc"]["rrrc"]["differences"][0]
    assert d["modalities"] == ["unassisted", "with_dl"] and d["estimate"] < 0
    test = d["one_sided"]
    assert test["difference"] == ["with_dl", "unassisted"] and test["estimate"] == -d["estimate"]
    assert test["lower_bound"] == pytest.approx(-d["ci"][1], abs=1e-12) and test["null_bound"] == 0.0
    assert test["hypothesis"] == "superiority" and test["rejected"] is True


def test_binary_endpoints_at_the_plan_s_threshold(study, result):
    table = complete(study, result)
    html = render(result)
    for fom in ("sensitivity", "specificity"):
        expected = analyse(
            table, cov="jackknife", cluster="patient", stratum="size_stratum", analyses=["rrrc"],
            frrc_truncate=False, fom=fom, threshold=60,
        )  # fmt: skip
        assert result["binary"][fom] == json.loads(json.dumps(expected))
        part = re.search(rf'data-testid="binary-{fom}">(.*?)</section>', html, re.S).group(1)
        assert "a rating ≥ 60 calls a lesion positive" in part
        shown = values(part)
        for block in [expected, *expected["strata"].values()]:
            for m in ("aided", "unaided"):
                single = block["rrrc"]["single"][m]
                assert single[fom] in shown and single["se"] in shown and single["ci"][0] in shown
            d = block["rrrc"]["differences"][0]
            assert d["estimate"] in shown and d["p"] in shown and d["ci"][1] in shown
        groups = re.findall(r"<tr><td>([^<]+)</td>", part)
        assert groups == ["all lesions", "≤10 mm", "10–30 mm", "&gt;30 mm"]  # in the order of the bins


def test_no_threshold_no_binary_endpoints(study):
    result = analysed(study, plan={**PLAN, "plan_threshold": None})
    assert "binary" not in result
    html = render(result)
    assert "Sensitivity and specificity at the planned threshold" not in html
    assert "No rating threshold was planned: no binary endpoints" in html


# -------------------------------------------------------------------------------- ANOVA, AUCs, covariance


def test_anova_reader_aucs_and_covariance_per_stratum(result):
    html = render(result)
    mrmc = result["mrmc"]
    z = norm.ppf(0.975)
    for key, block in [("overall", mrmc), *mrmc["strata"].items()]:
        part = section(html, key)
        shown = values(part)
        anova = re.search(r'data-testid="anova">(.*?)</table>', part, re.S).group(1)
        r = block["n_readers"]
        assert [int(d) for d in re.findall(r"</td><td>(\d+)</td>", anova)] == [1, r - 1, r - 1]
        assert values(anova) == [block["anova"]["ms_t"], block["anova"]["ms_r"], block["anova"]["ms_tr"]]
        for modality in block["auc"]:
            for reader, auc in block["auc"][modality].items():
                se = block["auc_se"][modality][reader]
                assert auc in shown and se in shown
                assert max(0.0, auc - z * se) in shown and min(1.0, auc + z * se) in shown
            single = block["rrrc"]["single"][modality]
            assert single["se"] in shown and single["ci"][0] in shown
        covariance = re.search(r'data-testid="covariance">(.*?)</details>', part, re.S).group(1)
        labels = block["covariance"]["labels"]
        assert "aided:reader1" in labels and all(f"<th>{label}</th>" in covariance for label in labels)
        assert values(covariance) == [v for row in block["covariance"]["matrix"] for v in row]


def test_strata_are_listed_in_the_order_of_their_bins(result):
    assert list(result["mrmc"]["strata"]) == ["10-30", "<=10", ">30"]  # the analysis JSON sorts labels as text
    html = render(result)
    assert re.findall(r'<section class="stratum"[^>]*data-stratum="([^"]+)"', html) == [
        "overall", "&lt;=10", "10-30", "&gt;30"
    ]  # fmt: skip
    assert [s["key"] for s in report.strata_rows(result["summary"])] == ["<=10", "10-30", ">30"]
    assert [s["title"] for s in report.analysis_sections(result["mrmc"], ["rrrc"], result["summary"])] == [
        "All lesions", "Stratum ≤10 mm", "Stratum 10–30 mm", "Stratum >30 mm"
    ]  # fmt: skip


def reversed_keys(value):
    """``value`` with every dict's keys in reverse order (PostgreSQL's jsonb does not keep the stored order)."""
    if isinstance(value, dict):
        return {k: reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_keys(v) for v in value]
    return value


def test_the_report_does_not_depend_on_the_stored_key_order(result):
    assert render(reversed_keys(result)) == render(json.loads(json.dumps(result)))


# ------------------------------------------------------------------------------- empty and small strata


def test_an_empty_stratum_says_it_has_no_cases(study):
    result = analysed(study, {**PARAMETERS, "size_bins_mm": [10, 30, 500]})
    assert result["summary"]["strata"][">500"] == {"cases": 0, "positive": 0, "negative": 0}
    assert result["model"][">500"] == {"error": "no cases in this stratum"}  # not "all of one truth class"
    html = render(result)
    assert "Not analysable: no cases in this stratum" in section(html, ">500")
    assert "one truth class" not in html
    assert '<td colspan="5" data-testid="model-stratum-error">no cases in this stratum</td>' in html


def test_a_one_class_stratum_names_its_class(study):
    df = study.copy()
    df.loc[df["diameter_mm"] > 30, "truth"] = 1
    result = analysed(df)
    n = result["summary"]["strata"][">30"]["cases"]
    message = f"all {n} cases in this stratum are positive (CRLM): an AUC needs both classes"
    assert result["model"][">30"] == {"error": message}
    html = render(result)
    assert f"Not analysable: {message}" in section(html, ">30")
    assert escape(message) in re.search(r'data-stratum="&gt;30">.*?</tr>', html, re.S).group(0)


def test_a_stratum_with_few_positives_is_flagged_with_its_numbers(study):
    df = study.copy()
    small = df["diameter_mm"] <= 10
    positives = sorted(df.loc[small & (df["truth"] == 1), "case"].unique())[2:]  # keep 2 positives
    df = df[~df["case"].isin(positives)]
    result = analysed(df)
    n = result["summary"]["strata"]["<=10"]
    assert n["positive"] == 2 and n["negative"] >= 10
    warning = f"small sample: 2 positive and {n['negative']} negative cases (fewer than 10 in a class)"
    html = render(result)
    assert f"Warning: {warning}" in section(html, "<=10")
    assert warning in html.split('data-testid="strata-table"')[1].split("</table>")[0]
    assert "Warning: small sample" not in section(html, "10-30")  # 10 or more of each class


# ------------------------------------------------------------------------------------- DL model


def test_dl_model_versus_readers_is_shown(result):
    html = render(result)
    table = re.search(r'data-testid="model-comparison">(.*?)</table>', html, re.S).group(1)
    shown = values(table)
    for modality, v in result["model"]["readers_minus_model"].items():
        rr = v["random_readers"]
        assert f"<td>{modality}</td>" in table
        for value in (v["reader_mean_auc"], v["model_auc"], rr["estimate"], rr["se"], rr["df"], *rr["ci"], rr["p"]):
            assert value in shown
        assert v["fixed_readers"]["p"] in shown


def test_a_degenerate_standalone_auc_is_flagged():
    rows = report.model_rows(
        {
            "overall": {"auc": 0.93, "se": 0.03, "ci": [0.87, 0.99], "method": "DeLong"},
            ">30": {"auc": 1.0, "se": 0.0, "ci": [1.0, 1.0], "method": "DeLong"},
        }
    )
    assert [r["flag"] for r in rows] == [None, "degenerate: perfect separation, SE 0; CI not informative"]
    assert [r["group"] for r in rows] == ["all lesions", ">30 mm"]


def test_the_report_flags_a_degenerate_stratum(study):
    df = study.copy()
    big = df.drop_duplicates("case").query("diameter_mm > 30")
    df["model_probability"] = df["model_probability"].where(df["diameter_mm"] <= 30, df["truth"] * 0.5 + 0.25)
    result = analysed(df)
    assert result["model"][">30"]["auc"] == 1.0 and result["model"][">30"]["se"] == 0.0 and len(big) > 2
    html = render(result)
    row = re.search(r"<tr><td>&gt;30 mm</td>.*?</tr>", html.split('data-testid="model-table"')[1], re.S).group(0)
    assert "degenerate: perfect separation, SE 0; CI not informative" in row
    assert html.count("degenerate: perfect separation") == 1


# ----------------------------------------------------------------------------------- reading time


def test_reading_time_medians_are_shown_when_the_model_fails(study):
    df = study.assign(active_seconds=30.0)  # every read the same time: the mixed model cannot be fitted
    result = analysed(df)
    reading = result["reading_time"]
    assert "mixed model" in reading["error"]
    html = render(result)
    medians = re.search(r'data-testid="reading-time-medians">(.*?)</table>', html, re.S).group(1)
    assert values(medians) == pytest.approx([30.0] * 2 * 4)  # median, q1, q3, geometric mean per modality
    assert f"The mixed model gives no ratio: {escape(reading['error'])}" in html


def test_reading_time_ratio_with_the_medians(result):
    html = render(result)
    reading = result["reading_time"]
    medians = values(re.search(r'data-testid="reading-time-medians">(.*?)</table>', html, re.S).group(1))
    assert reading["descriptive"]["aided"]["median"] in medians
    assert reading["ratio"] in values(re.search(r'data-testid="reading-time">(.*?)</p>', html, re.S).group(1))


# ---------------------------------------------------------------------------------------- figures


def test_roc_curves_one_colour_per_reader_one_line_style_per_modality(study, result):
    table = study[~study["case"].isin(result["excluded"]["cases"])]
    fig = figures.roc_curves(table, ["unaided", "aided"], result=result["mrmc"])
    readers = sorted(table["reader"].unique())
    for ax, style in zip(fig.axes, ["-", "--"], strict=True):
        curves = [line for line in ax.get_lines() if line.get_linewidth() == 0.8]
        assert [to_hex(line.get_color()) for line in curves] == [c.lower() for c in figures.COLOURS[: len(readers)]]
        assert {line.get_linestyle() for line in curves} == {style}
        mean = [line for line in ax.get_lines() if line.get_linewidth() == 2.0]
        assert len(mean) == 1 and to_hex(mean[0].get_color()) == "#000000" and mean[0].get_linestyle() == style
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend[1:] == [f"{r}: AUC {result['mrmc']['auc'][m][r]:.3f}" for m in [ax.get_title().lower()]
                              for r in readers]  # fmt: skip
    combined = figures.roc_curves(table, ["unaided", "aided"], result=result["mrmc"], combined=True)
    texts = [t.get_text() for t in combined.axes[0].get_legend().get_texts()]
    auc = result["mrmc"]["auc"]
    assert texts[2] == f"reader1: AUC {auc['unaided']['reader1']:.3f} / {auc['aided']['reader1']:.3f}"
    assert combined.axes[0].get_legend().get_title().get_text() == "AUC Unaided / Aided"


def test_roc_readers_past_the_palette_get_markers():
    assert figures.reader_style(0) == {"color": figures.COLOURS[0]}
    styles = [figures.reader_style(j) for j in range(2 * len(figures.COLOURS))]
    assert len({(s["color"], s.get("marker", "")) for s in styles}) == len(styles)


def test_the_forest_plot_names_its_analysis_and_ci_level(result):
    fig = figures.forest_plot(figures.forest_rows(result["mrmc"]), title=figures.forest_title("rrrc", 0.05))
    root = ET.fromstring(figures.render(fig, "svg"))
    text = " ".join("".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "RRRC (random readers and cases; Obuchowski–Rockette, Hillis ddf): 95% CI" in text
    assert "Difference [95% CI]" in text
    assert figures.forest_title("frrc", 0.1).startswith("FRRC (fixed readers, random cases") and "90% CI" in (
        figures.forest_title("frrc", 0.1)
    )


# ------------------------------------------------------------------------------ checklist and flow


def test_flow_counts_every_case_from_import_to_analysis(result):
    f = result["flow"]
    assert f["imported"]["total"] == 84 + 2 and f["practice"]["total"] == 2
    assert f["not_assessable"]["total"] == 1 and f["not_read"]["total"] == 0
    assert f["analysed"]["total"] == result["summary"]["n_cases"] == 83
    for label in f["strata"]:
        assert f["analysed"]["by_stratum"][label] == result["summary"]["strata"][label]["cases"]
        assert f["imported"]["by_stratum"][label] == sum(
            f[step]["by_stratum"][label] for step in ("practice", "not_read", "not_assessable", "analysed")
        )
    assert f["practice"]["by_stratum"] == {"<=10": 2, "10-30": 0, ">30": 0}
    svg = flow.flow_svg(f)
    root = ET.fromstring(svg)  # well-formed
    groups = {g.get("data-testid"): g for g in root.iter("{http://www.w3.org/2000/svg}g")}
    assert set(groups) == {"flow-imported", "flow-practice", "flow-study", "flow-not_assessable", "flow-analysed"}
    assert [groups[f"flow-{k}"].get("data-total") for k in ("imported", "practice", "study", "analysed")] == [
        "86", "2", "84", "83"
    ]  # fmt: skip
    assert "Excluded: a not-assessable read: 1 case" in svg
    assert f"≤10 mm: {f['analysed']['by_stratum']['<=10']} · 10–30 mm:" in svg
    assert 'data-testid="flow-diagram"' in render(result)


def test_flow_shows_cases_not_read_only_when_there_are_some(study):
    df = study[study["case"] != study["case"].iloc[-1]]  # a study case nobody has read yet
    imported = imported_cases(study)
    result = run_analysis(df, PARAMETERS, imported=imported)
    assert result["flow"]["not_read"]["total"] == 1
    assert 'data-testid="flow-not_read"' in flow.flow_svg(result["flow"])


def test_checklist_without_records_says_not_recorded(result):
    rows = {r["item"]: r for r in checklist.checklist_rows({**result, "records": {}})}
    assert rows["Number of readers"]["value"] == "5"
    assert rows["Washout between sessions"]["value"] == "not recorded"
    assert rows["Reference standard"]["value"] == "not recorded"
    case_mix = rows["Case mix and prevalence per stratum"]["value"]
    assert case_mix.startswith("all lesions: 83, 39 positive (47%); ≤10 mm:")
    assert rows["Reading time"]["value"].startswith(
        f"unaided: median {result['reading_time']['descriptive']['unaided']['median']:.1f} s"
    )
    assert rows["Sample size"]["value"] == "sized for an AUC difference of 0.06"
    assert all(r["source"] for r in rows.values())
