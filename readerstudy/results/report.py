"""Turn a run's result JSON into the rows the report shows (the template only formats them).

Everything here reads the stored result (``runs.run_analysis``): strata in the order of their bins, each with
its counts, a small-sample warning, the OR tests, the ANOVA table, the readers' AUCs with SE and CI, and the AUC
covariance matrix; the standalone DL model (flagged when degenerate) and the readers-minus-model comparison.
"""

from typing import Any

from scipy.stats import norm

from readerstudy.results.labels import stratum_display, stratum_key
from readerstudy.results.records import reader_profiles
from readerstudy.results.runs import class_problem

__all__ = [
    "ANALYSIS_NAMES", "analysis_sections", "backend_pair_rows", "backend_rows", "binary_sections", "decision_rows",
    "degenerate_flag", "model_comparison_rows", "model_rows",
    "reader_auc_rows", "reader_profiles", "reading_time_rows", "segmentation_rows", "small_sample_warning",
    "strata_rows",
]  # fmt: skip

ANALYSIS_NAMES = {
    "rrrc": "Random readers, random cases (RRRC, primary)",
    "frrc": "Fixed readers, random cases (FRRC)",
    "rrfc": "Random readers, fixed cases (RRFC)",
}
# Fewer cases than this in either truth class: the stratum's estimates rest on too few cases to trust the
# asymptotic CIs (said next to its numbers).
SMALL_SAMPLE = 10
DEGENERATE = "degenerate: perfect separation, SE 0; CI not informative"


def small_sample_warning(n_positive: int | None, n_negative: int | None) -> str | None:
    """A warning when a class has fewer than SMALL_SAMPLE cases (not for empty or one-class strata: those say so)."""
    if not n_positive or not n_negative:
        return None
    if n_positive < SMALL_SAMPLE or n_negative < SMALL_SAMPLE:
        return (
            f"small sample: {n_positive} positive and {n_negative} negative cases (fewer than {SMALL_SAMPLE} in a "
            "class); AUCs, SEs and CIs rest on few cases and the large-sample approximations may not hold"
        )
    return None


def degenerate_flag(auc: float | None, se: float | None) -> str | None:
    """Perfect separation (AUC 1 or 0) gives a variance estimate of 0, and with it a CI of zero width."""
    if auc is None:
        return None
    if auc in (0.0, 1.0) or se == 0:
        return DEGENERATE
    return None


# analyse()'s order of the OR variance components (a result read back from PostgreSQL's jsonb has lost it).
VAR_COMPONENTS = ("var_r", "var_tr", "cov1", "cov2", "cov3", "var_error", "r1", "r2", "r3")


def _in_order(values: dict, order: tuple[str, ...]) -> list[tuple[str, Any]]:
    return [(k, values[k]) for k in order if k in values] + sorted((k, v) for k, v in values.items() if k not in order)


def _ci(values: Any) -> tuple[Any, Any]:
    lo, hi = values or (None, None)
    return lo, hi


def _difference_rows(test: dict) -> list[dict]:
    rows = []
    for d in test.get("differences", []):
        rows.append(
            {
                "label": f"{d['modalities'][0]} − {d['modalities'][1]}",
                "estimate": d.get("estimate"),
                "se": d.get("se"),
                "df": d.get("df"),
                "ci_low": (d.get("ci") or [None, None])[0],
                "ci_high": (d.get("ci") or [None, None])[1],
                "p": d.get("p"),
                "p_holm": d.get("p_holm"),
                "one_sided": one_sided_text(d.get("one_sided")),
            }
        )
    return rows


def one_sided_text(test: dict | None) -> str | None:
    """The planned one-sided test of a difference in words, with its numbers."""
    if not test:
        return None
    a, b = test["difference"]
    if test["hypothesis"] == "non-inferiority":
        claim, h0 = f"non-inferiority of {a} (margin {test['margin']:g})", f"{a} − {b} ≤ −{test['margin']:g}"
    else:
        claim, h0 = f"superiority of {a}", f"{a} − {b} ≤ 0"
    if test["p"] is None:
        return f"Planned test of {claim}: not estimable (no standard error)."
    verdict = "shown" if test["rejected"] else "not shown"
    level = f"{100 * (1 - test['alpha']):g}%"
    two_sided = f"{100 * (1 - 2 * test['alpha']):g}%"
    bound = f"{test['lower_bound']:.4f}".replace("-", "−")
    return (
        f"Planned test of {claim}: H0 {h0}; one-sided α = {test['alpha']:g}; {level} lower confidence bound (the "
        f"lower end of the two-sided {two_sided} CI) {bound} {'>' if test['rejected'] else '≤'} "
        f"{test['null_bound']:g}; p = {test['p']:.4g} (one-sided): {verdict}."
    ).replace(" -0", " −0")


def _tests(block: dict, analyses: list[str]) -> list[dict]:
    tests = []
    for name in analyses:
        test = block.get(name)
        if not test:
            continue
        statistic = ("F", test.get("f")) if "f" in test else ("χ²", test.get("chisq"))
        tests.append(
            {
                "name": ANALYSIS_NAMES[name],
                "key": name,
                "statistic_name": statistic[0],
                "statistic": statistic[1],
                "df1": test.get("df1", test.get("df")),
                "df2": test.get("df2"),
                "p": test.get("p"),
                "p_holm": test.get("p_holm"),
                "differences": _difference_rows(test),
                "single": [
                    {
                        "modality": m,
                        "auc": s.get("auc"),
                        "se": s.get("se"),
                        "df": s.get("df"),
                        "ci_low": _ci(s.get("ci"))[0],
                        "ci_high": _ci(s.get("ci"))[1],
                    }
                    for m, s in sorted((test.get("single") or {}).items())
                ],
            }
        )
    return tests


def anova_rows(block: dict) -> list[dict]:
    """The modality x reader ANOVA of the AUCs: mean squares with their degrees of freedom."""
    anova = block.get("anova") or {}
    t, r = len(block.get("modalities") or []), block.get("n_readers") or 0
    if not anova or not t or not r:
        return []
    return [
        {"source": "modality (T)", "df": t - 1, "ms": anova.get("ms_t")},
        {"source": "reader (R)", "df": r - 1, "ms": anova.get("ms_r")},
        {"source": "modality × reader (T×R)", "df": (t - 1) * (r - 1), "ms": anova.get("ms_tr")},
    ]


def reader_auc_rows(block: dict, alpha: float = 0.05) -> tuple[list[str], list[dict]]:
    """Readers' AUCs: one row per reader, per modality the AUC, its SE (the run's covariance method) and a Wald
    (1 - alpha) CI, AUC ± z SE clipped to [0, 1]; then the mean over readers with the RRRC single-modality SE and
    CI (Hillis df) when the run has RRRC."""
    auc, se = block.get("auc") or {}, block.get("auc_se") or {}
    # The result's lists give the order (PostgreSQL's jsonb keeps no key order).
    modalities = [m for m in block.get("modalities") or sorted(auc) if m in auc]
    readers = block.get("readers") or sorted(next(iter(auc.values()), {}))
    z = float(norm.ppf(1 - alpha / 2))

    def cell(a: float | None, s: float | None) -> dict:
        if a is None or s is None:
            return {"auc": a, "se": s, "ci_low": None, "ci_high": None}
        return {"auc": a, "se": s, "ci_low": max(0.0, a - z * s), "ci_high": min(1.0, a + z * s)}

    rows = [{"reader": r, "cells": [cell(auc[m][r], (se.get(m) or {}).get(r)) for m in modalities]} for r in readers]
    if modalities:
        single = (block.get("rrrc") or {}).get("single") or {}
        mean_cells = []
        for m in modalities:
            s = single.get(m) or {}
            lo, hi = _ci(s.get("ci"))
            mean_cells.append({"auc": block["modality_auc"][m], "se": s.get("se"), "ci_low": lo, "ci_high": hi})
        rows.append({"reader": "mean (RRRC)" if single else "mean", "cells": mean_cells, "mean": True})
    return modalities, rows


def covariance_table(block: dict) -> dict:
    """The AUC covariance matrix with its labels (``modality:reader``)."""
    cov = block.get("covariance") or {}
    labels, matrix = cov.get("labels") or [], cov.get("matrix") or []
    return {"labels": labels, "rows": [{"label": lab, "values": row} for lab, row in zip(labels, matrix, strict=True)]}


def analysis_sections(mrmc: dict, analyses: list[str], summary: dict | None = None, alpha: float = 0.05) -> list[dict]:
    """One section per stratum in the order of its bin (overall first), each with its counts, a small-sample
    warning, the requested OR analyses, the ANOVA table, the readers' AUCs and the covariance matrix; a stratum
    without cases, or of one truth class, says so (and which class)."""
    counts = (summary or {}).get("strata") or {}
    strata = mrmc.get("strata") or {}
    blocks: list[tuple[str, str, dict | None]] = [("overall", "All lesions", mrmc)]
    for label in sorted(set(strata) | set(counts), key=stratum_key):
        blocks.append((label, f"Stratum {stratum_display(label)}", strata.get(label)))
    sections = []
    for key, title, block in blocks:
        n = counts.get(key)
        problem = None
        if n is not None:
            problem = class_problem([1] * n["positive"] + [0] * n["negative"])
        if block is None and problem is None:
            problem = "no cases in this stratum"
        if problem or "error" in (block or {}):
            sections.append({"key": key, "title": title, "error": problem or block["error"]})  # type: ignore[index]
            continue
        assert block is not None
        modalities, reader_rows = reader_auc_rows(block, alpha)
        sections.append(
            {
                "key": key,
                "title": title,
                "n_cases": block.get("n_cases"),
                "n_positive": block.get("n_positive"),
                "n_negative": block.get("n_negative"),
                "n_readers": block.get("n_readers"),
                "warning": small_sample_warning(block.get("n_positive"), block.get("n_negative")),
                "modality_auc": sorted((block.get("modality_auc") or {}).items()),
                "var_components": _in_order(block.get("var_components") or {}, VAR_COMPONENTS),
                "tests": _tests(block, analyses),
                "anova": anova_rows(block),
                "modalities": modalities,
                "reader_rows": reader_rows,
                "covariance": covariance_table(block),
            }
        )
    return sections


def strata_rows(summary: dict) -> list[dict]:
    """The analysed lesions per stratum, in the order of the bins, each with its note: no cases, one class (named),
    or a small-sample warning."""
    rows = []
    for label, n in sorted((summary.get("strata") or {}).items(), key=lambda item: stratum_key(item[0])):
        problem = class_problem([1] * n["positive"] + [0] * n["negative"])
        note = problem or small_sample_warning(n["positive"], n["negative"])
        rows.append({"key": label, "label": stratum_display(label), **n, "note": note})
    return rows


def reading_time_rows(reading: dict) -> list[tuple[str, dict]]:
    """Medians by modality: the reference first, then the comparison (the stored dict's key order is lost in
    PostgreSQL's jsonb)."""
    described = reading.get("descriptive") or {}
    order = [reading.get("reference"), reading.get("comparison")]
    return [(m, described[m]) for m in order if m in described] + [
        (m, d) for m, d in sorted(described.items()) if m not in order
    ]


FOM_NAMES = {"sensitivity": "Sensitivity", "specificity": "Specificity"}


def binary_sections(binary: dict, summary: dict | None = None, alpha: float = 0.05) -> list[dict]:
    """Sensitivity and specificity at the plan's threshold (RRRC): per group (all lesions, then each stratum in
    the order of its bin) the mean over readers per modality with its SE and CI, and the difference."""
    sections = []
    for fom, result in sorted(binary.items()):  # sensitivity, specificity
        section: dict[str, Any] = {"fom": fom, "title": FOM_NAMES.get(fom, fom)}
        if "error" in result:
            sections.append({**section, "error": result["error"]})
            continue
        section["threshold"] = result.get("threshold")
        section["modalities"] = result.get("modalities") or sorted(result.get(f"modality_{fom}") or {})
        section["columns"] = 3 * len(section["modalities"]) + 6  # the table's columns after the first
        groups = [("all lesions", result)]
        groups += [(stratum_display(k), v) for k, v in sorted((result.get("strata") or {}).items(),
                                                             key=lambda item: stratum_key(item[0]))]  # fmt: skip
        rows = []
        for label, block in groups:
            if "error" in block:
                rows.append({"group": label, "error": block["error"]})
                continue
            rrrc = block.get("rrrc") or {}
            single = rrrc.get("single") or {}
            cells = []
            for m in section["modalities"]:
                s = single.get(m) or {}
                lo, hi = _ci(s.get("ci"))
                value = s.get(fom, (block.get(f"modality_{fom}") or {}).get(m))
                cells.append({"value": value, "se": s.get("se"), "ci_low": lo, "ci_high": hi})
            differences = _difference_rows(rrrc)
            rows.append(
                {
                    "group": label,
                    "n": block.get("n_positive") if fom == "sensitivity" else block.get("n_negative"),
                    "cells": cells,
                    "difference": differences[0] if differences else None,
                    "warning": small_sample_warning(block.get("n_positive"), block.get("n_negative")),
                }
            )
        sections.append({**section, "rows": rows})
    return sections


def model_rows(model: dict) -> list[dict[str, Any]]:
    """The DL model's standalone AUC, overall then per stratum, each flagged when degenerate."""
    if "error" in model:
        return []
    rows = []
    groups = sorted((k for k in model if k != "readers_minus_model"), key=lambda k: (k != "overall", stratum_key(k)))
    for name in groups:
        m = model[name]
        lo, hi = _ci(m.get("ci"))
        label = "all lesions" if name == "overall" else stratum_display(name)
        flag = degenerate_flag(m.get("auc"), m.get("se"))
        rows.append({"group": label, **m, "ci_low": lo, "ci_high": hi, "flag": flag})
    return rows


def model_comparison_rows(model: dict) -> list[dict[str, Any]]:
    """Mean reader AUC minus the model's AUC in each modality (single-treatment OR, 1T-RRRC, Hillis df; and the
    fixed-reader z test)."""
    rows = []
    for modality, v in sorted((model.get("readers_minus_model") or {}).items()):
        if "error" in v:
            rows.append({"modality": modality, "error": v["error"]})
            continue
        rr, fr = v.get("random_readers") or {}, v.get("fixed_readers") or {}
        lo, hi = _ci(rr.get("ci"))
        fixed_lo, fixed_hi = _ci(fr.get("ci"))
        rows.append(
            {
                "modality": modality,
                "n_readers": v.get("n_readers"),
                "reader_mean_auc": v.get("reader_mean_auc"),
                "model_auc": v.get("model_auc"),
                "estimate": rr.get("estimate"),
                "se": rr.get("se"),
                "df": rr.get("df"),
                "ci_low": lo,
                "ci_high": hi,
                "p": rr.get("p"),
                "fixed_se": fr.get("se"),
                "fixed_ci_low": fixed_lo,
                "fixed_ci_high": fixed_hi,
                "fixed_p": fr.get("p"),
                "method": v.get("method"),
            }
        )
    return rows


INTERACTION_GROUPS = (("all", "all pairs"), ("dl_right", "DL output right"), ("dl_wrong", "DL output wrong"))


def interaction_rows(interaction: dict) -> list[dict[str, Any]]:
    """The AI-interaction table: overall, then per reader, each split by whether the DL output was right."""
    if not interaction or "error" in interaction:
        return []
    rows = []
    blocks = [("all readers", interaction["overall"]), *sorted(interaction["readers"].items())]
    for who, groups in blocks:
        for key, label in INTERACTION_GROUPS:
            g = groups[key]
            rows.append({"reader": who, "group": label, "n": g["n_pairs"], **{
                name: g[name] for name in ("helped", "harmed", "unchanged", "switched", "switched_toward_dl")
            }, "change": g["change_toward_dl"]})  # fmt: skip
    return rows


def completion_rows(mrmc: dict) -> list[dict[str, Any]]:
    """Per reader, reads done of expected and whether analysed; empty when every reader is complete."""
    completion = mrmc.get("completion") or {}
    if all(c["kept"] for c in completion.values()):
        return []
    return [{"reader": r, **c} for r, c in sorted(completion.items())]


def backend_rows(backends: dict) -> list[dict[str, Any]]:
    """Each classifier backend's standalone AUC with its SE and CI and its identity (model, version, weights hash),
    in the order the run compared them; flagged when degenerate."""
    if not backends or "error" in backends:
        return []
    rows = []
    for label in backends.get("order") or sorted(backends.get("backends") or {}):
        b = backends["backends"][label]
        lo, hi = _ci(b.get("ci"))
        rows.append({"label": label, **b, "ci_low": lo, "ci_high": hi, "flag": degenerate_flag(b["auc"], b["se"])})
    return rows


def backend_pair_rows(backends: dict) -> list[dict[str, Any]]:
    """Every pairwise AUC difference of the backends with its DeLong SE, CI and p (raw and Holm-adjusted)."""
    rows = []
    for pair in (backends or {}).get("pairs") or []:
        lo, hi = _ci(pair.get("ci"))
        rows.append({**pair, "label": f"{pair['a']} − {pair['b']}", "ci_low": lo, "ci_high": hi})
    return rows


def decision_rows(curve: dict, thresholds: tuple[float, ...] | None = None) -> tuple[list[float], list[dict]]:
    """The decision curves' net benefit at a few thresholds (analysis.decision_curve.TABLE_THRESHOLDS): one row per
    strategy (each backend, the readers per modality, treat all, treat none), one cell per threshold."""
    from readerstudy.analysis.decision_curve import TABLE_THRESHOLDS

    if not curve or "error" in curve:
        return [], []
    wanted = thresholds or TABLE_THRESHOLDS
    stored = [float(t) for t in curve["thresholds"]]
    index = {t: next((k for k, s in enumerate(stored) if abs(s - t) < 1e-9), None) for t in wanted}
    shown = [t for t in wanted if index[t] is not None]

    def cells(values: list) -> list:
        return [values[index[t]] for t in shown]  # type: ignore[index]

    rows = []
    for c in curve.get("curves") or []:
        if "error" in c:
            rows.append({"name": c["name"], "kind": c.get("kind"), "error": c["error"]})
        else:
            rows.append({"name": c["name"], "kind": c.get("kind"), "n": c.get("n"), "values": cells(c["net_benefit"])})
    rows.append({"name": "treat all", "kind": "reference", "n": curve.get("n"), "values": cells(curve["treat_all"])})
    rows.append({"name": "treat none", "kind": "reference", "n": curve.get("n"), "values": cells(curve["treat_none"])})
    return shown, rows


SEGMENTATION_METRICS = ("dice", "hd95_mm", "nsd", "cldice")
BETTI_ERRORS = ("b0_error", "b1_error", "b2_error")


def segmentation_rows(segmentation: dict) -> list[dict[str, Any]]:
    """The segmentation table: per structure (over series) and per lesion size stratum (over reference lesions),
    Dice, HD95, NSD and clDice as median (IQR) with the n of finite values, Betti-number errors as means."""
    out = []
    for row in (segmentation or {}).get("rows") or []:
        cells = []
        for key in SEGMENTATION_METRICS:
            q = row.get(key) or {}
            cells.append({"median": q.get("median"), "q1": q.get("q1"), "q3": q.get("q3"), "n": q.get("n", 0)})
        betti = [(row.get(key) or {}).get("mean") for key in BETTI_ERRORS]
        out.append({**{k: row.get(k) for k in ("kind", "name", "n", "detected", "false_positives")},
                    "cells": cells, "betti": betti})  # fmt: skip
    return out
