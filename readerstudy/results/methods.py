"""The methods section of a report, written from a run's stored result: every number and every choice in it is
read from the result (its parameters, plan, counts, exclusions, analyses and software), none typed in.

``methods_paragraphs(result)`` returns plain-text paragraphs (the template escapes them): the data, the
statistical analysis, the secondary analyses and the software. A result from before a field was stored says
"not recorded" for it rather than guessing.
"""

from __future__ import annotations

from typing import Any

from readerstudy.results.labels import stratum_display, stratum_key
from readerstudy.results.runs import LIBRARIES

NOT_RECORDED = "not recorded"
COVARIANCE = {
    "jackknife": "the jackknife",
    "delong": "the DeLong method",
    "unbiased": "the unbiased U-statistic estimator (Gallas 2006)",
}
CLUSTERED_COVARIANCE = {
    "jackknife": "the jackknife over patients (each patient's lesions left out together)",
    "delong": "Obuchowski's (1997) clustered DeLong method",
}
FRRC_CONVENTION = {
    "truncated": "max(Cov2 − Cov3, 0) in the error term (the convention of the Iowa OR-DBM MRMC program and RJafroc)",
    "untruncated": "Cov2 − Cov3 untruncated in the error term (the convention of MRMCaov)",
}


SUMMARY_KEYS = {"n_reads", "n_readers", "n_cases", "n_patients", "n_positive", "n_negative", "modalities"}


def _n(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (plural or noun + 's')}"


def _list(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _ci_level(alpha: float) -> str:
    return f"{100 * (1 - alpha):g}%"


def compared_modalities(result: dict) -> tuple[str, str] | None:
    """(assisted, unassisted) modality keys: from the study's records (shows_dl) or, for older runs, by name."""
    modalities = (result.get("summary") or {}).get("modalities") or []
    recorded = ((result.get("records") or {}).get("study") or {}).get("modalities") or []
    aided = [m["key"] for m in recorded if m.get("shows_dl") and m["key"] in modalities]
    unaided = [m["key"] for m in recorded if not m.get("shows_dl") and m["key"] in modalities]
    if aided and unaided:
        return aided[0], unaided[0]
    if {"aided", "unaided"} <= set(modalities):
        return "aided", "unaided"
    return (modalities[-1], modalities[0]) if len(modalities) >= 2 else None


def data_paragraph(result: dict) -> str:
    s, excluded, mrmc = result.get("summary") or {}, result.get("excluded") or {}, result.get("mrmc") or {}
    flow = result.get("flow") or {}
    modalities = _n(len(s["modalities"]), "modality", "modalities")
    sentences = [
        f"{_n(s['n_readers'], 'reader')} rated {_n(s['n_cases'], 'lesion')} ({s['n_positive']} positive, "
        f"{s['n_negative']} negative) in {_n(s['n_patients'], 'patient')} in {modalities} "
        f"({', '.join(s['modalities'])}): {_n(s['n_reads'], 'read')} entered the analysis."
    ]
    design = mrmc.get("design")
    if design == "split-plot":
        groups = mrmc.get("groups") or []
        sizes = ", ".join(f"{len(g['readers'])} readers on {g['n_cases']} lesions" for g in groups)
        sentences.append(f"The design was split-plot: {_n(len(groups), 'reader group')} ({sizes}).")
    elif design:
        sentences.append("The design was fully crossed: every reader read every lesion in every modality.")
    if flow:
        practice = flow["practice"]["total"]
        if practice:
            sentences.append(
                f"{_n(practice, 'practice case')} of the {flow['imported']['total']} imported were read in the "
                "practice session only and not analysed."
            )
        if flow["not_read"]["total"]:
            sentences.append(f"{_n(flow['not_read']['total'], 'study case')} had no read yet and were not analysed.")
    n_out = excluded.get("n_cases", 0)
    if n_out:
        reads = _n(excluded["n_not_assessable_reads"], "read")
        sentences.append(
            f"{_n(n_out, 'lesion')} with a read marked not assessable ({reads}) "
            f"{'was' if n_out == 1 else 'were'} left out for every reader and modality "
            f"({_n(excluded['n_reads_left_out'], 'read')} in all): a complete-case analysis, which keeps the design "
            "fully crossed."
        )
    elif excluded:
        sentences.append("No lesion was left out: every read had a rating (no read was marked not assessable).")
    return " ".join(sentences)


def _planned_test(result: dict) -> dict | None:
    """The stored one-sided test of the primary (RRRC) difference, if the run made one (runs.planned_tests)."""
    for d in ((result.get("mrmc") or {}).get("rrrc") or {}).get("differences", []):
        if d.get("one_sided"):
            return d["one_sided"]
    return None


def _hypothesis(result: dict, alpha: float) -> str:
    plan = result.get("plan") or {}
    pair = result.get("compared") or compared_modalities(result)
    difference = f"{pair[0]} − {pair[1]}" if pair else "the modality difference"
    hypothesis = plan.get("plan_hypothesis")
    test = _planned_test(result)
    how = (
        f"tested one-sided at α = {test['alpha']:g} on each analysis' difference (RRRC primary), that is, "
        f"against the lower end of the two-sided {_ci_level(2 * test['alpha'])} CI"
        if test
        else f"judged by the lower end of the two-sided {_ci_level(alpha)} CI"
    )
    if hypothesis == "non_inferiority":
        margin = plan.get("plan_margin")
        return (
            f"The planned hypothesis was non-inferiority of {pair[0] if pair else 'the assisted modality'} with a "
            f"margin of {margin:g} in AUC (H0: {difference} ≤ −{margin:g}), {how}: non-inferiority is shown when "
            f"that bound lies above −{margin:g}."
        )
    if hypothesis == "superiority":
        return (
            f"The planned hypothesis was superiority (H0: {difference} ≤ 0, margin 0), {how}; the two-sided tests "
            f"at α = {alpha:g} with {_ci_level(alpha)} CIs are reported as well."
        )
    return f"Hypothesis and margin: {NOT_RECORDED} in this run (tests two-sided at α = {alpha:g})."


def statistics_paragraph(result: dict) -> str:
    p, mrmc = result.get("parameters") or {}, result.get("mrmc") or {}
    alpha = p.get("alpha", 0.05)
    analyses = p.get("analyses") or []
    cov = p.get("cov", "jackknife")
    clustered = bool(p.get("cluster_by_patient"))
    s = result.get("summary") or {}
    if clustered:
        method = CLUSTERED_COVARIANCE.get(cov, cov)
        unit = f"with the patient as the clustering unit ({_n(s.get('n_patients', 0), 'patient')})"
    else:
        method = COVARIANCE.get(cov, cov)
        unit = "with the lesion as the unit (lesions of one patient treated as independent)"
    scale = ((result.get("records") or {}).get("study") or {}).get("rating_scale")
    ratings = f"the {scale[0]}–{scale[1]} ratings" if scale else "the ratings"
    sentences = [
        "The figure of merit was the empirical area under the ROC curve (AUC; Mann–Whitney, ties counted one half), "
        f"computed per reader and modality from {ratings}.",
        "Modalities were compared with the Obuchowski–Rockette method treating readers and cases as random (RRRC), "
        f"with Hillis (2008) denominator degrees of freedom; the AUCs' covariances were estimated by {method}, {unit}.",
    ]
    if "frrc" in analyses:
        convention = p.get("frrc_convention")
        term = FRRC_CONVENTION.get(convention, NOT_RECORDED) if convention else "max(Cov2 − Cov3, 0) (the default)"
        sentences.append(f"The fixed-reader analysis (FRRC) used {term}.")
    if "rrfc" in analyses:
        sentences.append("The random-reader, fixed-case analysis (RRFC) is the modality × reader ANOVA of the AUCs.")
    strata = sorted(s.get("strata") or {}, key=stratum_key)
    if strata:
        analysable = [k for k, v in (mrmc.get("strata") or {}).items() if "error" not in v]
        bins = ", ".join(f"{b:g}" for b in p.get("size_bins_mm", []))
        sentences.append(
            f"Lesions were analysed overall and by size ({', '.join(stratum_display(x) for x in strata)}; bin edges "
            f"{bins} mm, an edge belonging to the lower bin), with p-values Holm-adjusted across the "
            f"{_n(len(analysable), 'analysable stratum', 'analysable strata')}."
        )
    sentences.append(_hypothesis(result, alpha))
    sentences.append(_thresholds(result))
    return " ".join(sentences)


def _thresholds(result: dict) -> str:
    plan = result.get("plan") or {}
    if "plan_threshold" not in plan:
        return f"Rating threshold for binary endpoints: {NOT_RECORDED} in this run."
    threshold = plan["plan_threshold"]
    if threshold is None:
        return "No rating threshold was planned: no binary endpoints (sensitivity, specificity)."
    binary = result.get("binary") or {}
    if binary and not all("error" in v for v in binary.values()):
        return (
            f"Sensitivity and specificity were estimated at the planned threshold (a rating ≥ {threshold} calls a "
            "lesion positive) and compared between modalities with the same OR method (RRRC, Hillis ddf, the same "
            "covariance method), each on the lesions of its truth class."
        )
    return (
        f"The plan sets a rating threshold of {threshold} (a rating ≥ {threshold} calls a lesion positive); "
        "sensitivity and specificity were not estimated in this run."
    )


def secondary_paragraph(result: dict) -> str:
    sentences = []
    model = result.get("model") or {}
    if "error" in model:
        sentences.append(f"The DL model's standalone performance was not estimated: {model['error']}.")
    elif model:
        method = (model.get("overall") or {}).get("method") or "DeLong"
        sentences.append(
            f"The DL model's standalone AUC was estimated with a {method} CI; the mean reader AUC minus the model's "
            "AUC was tested in each modality with the single-treatment OR method (RJafroc 1T-RRRC, Hillis df)."
        )
    reading = result.get("reading_time") or {}
    if reading.get("model") and "error" not in reading:
        sentences.append(
            f"Reading time was compared with a linear mixed model, {reading['model']}; the ratio of geometric mean "
            f"times ({reading['comparison']} / {reading['reference']}) is reported with a Wald CI."
        )
    elif reading.get("error"):
        sentences.append(f"Reading times are reported as medians; the mixed model was not fitted: {reading['error']}.")
    return " ".join(sentences)


def software_sentence(result: dict, software_version: str = "") -> str:
    software: dict[str, Any] = result.get("software") or {}
    if software:
        names = [*LIBRARIES, *sorted(set(software) - set(LIBRARIES) - {"readerstudy"})]
        libs = ", ".join(f"{name} {software[name]}" for name in names if name in software)
        return f"Analyses were run with readerstudy {software.get('readerstudy', NOT_RECORDED)} ({libs})."
    if software_version:
        return f"Analyses were run with {software_version}."
    return f"Software versions: {NOT_RECORDED}."


def methods_paragraphs(result: dict, software_version: str = "") -> list[str]:
    """The methods section as paragraphs; empty when the run has no counts (it failed before counting)."""
    if not SUMMARY_KEYS <= set(result.get("summary") or {}):
        return []
    paragraphs = [data_paragraph(result)]
    if "error" not in (result.get("mrmc") or {}):
        paragraphs.append(statistics_paragraph(result))
    paragraphs.append(secondary_paragraph(result))
    paragraphs.append(software_sentence(result, software_version))
    return [p for p in paragraphs if p]
