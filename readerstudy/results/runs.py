"""What an analysis run computes from a study's long table (no HTTP here; tasks and tests call it)."""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import pandas as pd

from readerstudy.analysis import AnalysisInputError, analyse, compare_model_to_readers, model_auc
from readerstudy.analysis.onesided import check_hypothesis, one_sided
from readerstudy.analysis.strata import check_size_bins, size_stratum, stratum_labels

COV_METHODS = ("jackknife", "delong", "unbiased")
ANALYSES = ("rrrc", "frrc", "rrfc")
# The FRRC error term (analysis README, "FRRC truncation"); the names are Study.FrrcConvention's values.
FRRC_CONVENTIONS = ("truncated", "untruncated")
ALPHA = 0.05
LIBRARIES = ("numpy", "scipy", "pandas")


def software_versions() -> dict[str, str]:
    """The package's version and the key libraries' (a methods section cites them)."""
    try:
        own = version("readerstudy")
    except PackageNotFoundError:  # run from the source tree, not pip-installed
        own = "0.1.0"
    return {"readerstudy": own, **{name: version(name) for name in LIBRARIES}}


def software_version() -> str:
    """Identifies the code that made a result (the repository's package version and the key libraries)."""
    versions = software_versions()
    libs = ", ".join(f"{name} {versions[name]}" for name in LIBRARIES)
    return f"readerstudy {versions['readerstudy']} ({libs})"


def default_parameters(df: pd.DataFrame, size_bins: list[float], frrc_convention: str = "truncated") -> dict:
    """Jackknife, all analyses, the study's size bins, the plan's FRRC convention; clustered by patient when a
    patient has several lesions."""
    lesions_per_patient = df.drop_duplicates("case").groupby("patient")["case"].count() if len(df) else pd.Series()
    return {
        "cov": "jackknife",
        "analyses": list(ANALYSES),
        "size_bins_mm": list(size_bins),
        "cluster_by_patient": bool((lesions_per_patient > 1).any()),
        "frrc_convention": frrc_convention,
    }


def check_parameters(parameters: dict) -> dict:
    cov = parameters.get("cov", "jackknife")
    if cov not in COV_METHODS:
        raise ValueError(f"cov {cov!r}: expected one of {', '.join(COV_METHODS)}")
    analyses = [a for a in parameters.get("analyses", ANALYSES) if a]
    if not analyses or set(analyses) - set(ANALYSES):
        raise ValueError(f"analyses {analyses!r}: expected one or more of {', '.join(ANALYSES)}")
    bins = check_size_bins(parameters.get("size_bins_mm", [10, 30]))
    cluster = bool(parameters.get("cluster_by_patient", False))
    if cov == "unbiased" and cluster:
        raise ValueError("the unbiased (U-statistic) covariance has no clustered form: choose jackknife or DeLong")
    convention = parameters.get("frrc_convention", "truncated")
    if convention not in FRRC_CONVENTIONS:
        raise ValueError(f"frrc_convention {convention!r}: expected one of {', '.join(FRRC_CONVENTIONS)}")
    return {
        "cov": cov,
        "analyses": analyses,
        "size_bins_mm": bins,
        "cluster_by_patient": cluster,
        "frrc_convention": convention,
        "alpha": ALPHA,  # not a choice: stored so that the report states its CI level from the run
    }


COMPLETE_CASE_RULE = (
    "complete-case analysis: a case with any not-assessable read (no rating) is left out for every reader and "
    "modality, so the design stays fully crossed"
)


def complete_cases(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The reads of cases that every reader rated in every modality, and what was left out and why.

    A read without a rating (marked not assessable) cannot enter an ROC analysis, and dropping only that read
    would leave the case unpaired across readers and modalities; so the whole case goes (complete-case analysis).
    Every consumer of ratings (analysis runs, figures, the peer-format exports) takes its table from here, so a
    missing rating never reaches the statistics unnoticed.
    """
    missing = df["rating"].isna()
    if "not_assessable" in df.columns:
        missing |= df["not_assessable"].fillna(0).astype(bool)
    cases = sorted(str(c) for c in df.loc[missing, "case"].unique())
    kept = df[~df["case"].astype(str).isin(cases)].reset_index(drop=True)
    reasons: dict[str, int] = {}
    if "not_assessable_reason" in df.columns:
        for reason in df.loc[missing, "not_assessable_reason"].fillna(""):
            key = str(reason) or "(none given)"
            reasons[key] = reasons.get(key, 0) + 1
    excluded = {
        "rule": COMPLETE_CASE_RULE,
        "n_cases": len(cases),
        "cases": cases,
        "n_not_assessable_reads": int(missing.sum()),
        "n_reads_left_out": len(df) - len(kept),
        "reasons": reasons,
    }
    return kept, excluded


def run_analysis(
    df: pd.DataFrame,
    parameters: dict,
    *,
    reading_time: Any = None,
    plan: dict | None = None,
    imported: pd.DataFrame | None = None,
    compared: tuple[str, str] | None = None,
    backends: list[dict] | None = None,
    rating_scale: tuple[float, float] = (0, 100),
) -> dict:
    """The full result of one run; data that cannot be analysed yields messages, never an exception.

    Complete cases only (see complete_cases): ``result["excluded"]`` says how many cases were left out and why.
    ``plan``: the study's statistical plan (studies.plan.plan_state), stored with the result: its hypothesis adds
    the planned one-sided test to the ``compared`` difference (assisted, unassisted modality; see planned_tests),
    its threshold the binary endpoints (``result["binary"]``: sensitivity and specificity, RRRC); ``imported``:
    every imported case (``case, practice, diameter_mm, truth``) for the flow of cases from import to analysis;
    ``backends``: each classifier backend's stored predictions (records.backend_predictions), compared by standalone
    AUC (``result["backends"]``) and, with the readers' ratings rescaled by ``rating_scale``, by decision curves
    (``result["decision_curve"]``).
    """
    p = check_parameters(parameters)
    table, excluded = complete_cases(df)
    table = table.copy()
    # The run's own bins decide the strata (they may differ from the study's at import).
    table["size_stratum"] = [size_stratum(d, p["size_bins_mm"]) for d in table["diameter_mm"]]
    cluster = "patient" if p["cluster_by_patient"] else None
    plan = dict(plan or {})
    compared = compared or default_compared(sorted(table["modality"].astype(str).unique()))
    result: dict[str, Any] = {
        "parameters": p,
        "software": software_versions(),
        "plan": plan,
        "compared": list(compared) if compared else None,
        "summary": summary(table, p["size_bins_mm"]),
        "excluded": excluded,
    }
    if imported is not None:
        from readerstudy.results.flow import case_flow

        result["flow"] = case_flow(imported, df, excluded["cases"], p["size_bins_mm"])
    columns = ["reader", "modality", "case", "truth", "rating", "patient", "size_stratum"]
    options = {
        "cov": p["cov"],
        "cluster": cluster,
        "stratum": "size_stratum",
        "alpha": p["alpha"],
        "frrc_truncate": p["frrc_convention"] == "truncated",
        # Readers who have not read all their cases (yet) are left out and listed, so that an interim look (or a
        # study a reader dropped out of) is analysed on the complete readers instead of refused.
        "complete_readers_only": True,
    }
    try:
        result["mrmc"] = analyse(table[columns], analyses=p["analyses"], **options)
        if compared and plan.get("plan_hypothesis"):
            planned_tests(result["mrmc"], plan, compared, p["alpha"])
    except AnalysisInputError as exc:
        result["mrmc"] = {"error": str(exc)}
    if plan.get("plan_threshold") is not None:
        result["binary"] = {}
        for fom in BINARY_FOMS:
            try:
                result["binary"][fom] = analyse(
                    table[columns], analyses=["rrrc"], fom=fom, threshold=plan["plan_threshold"], **options
                )
            except AnalysisInputError as exc:
                result["binary"][fom] = {"error": str(exc)}
    result["model"] = standalone_model(table, cluster, p)
    if compared and plan.get("plan_threshold") is not None:
        result["interaction"] = interaction(table, compared, float(plan["plan_threshold"]), p["alpha"])
    if reading_time is not None:
        result["reading_time"] = reading_time(table)
    if backends is not None:
        scores, identities, left_out = backend_scores(table, backends)
        result["backends"] = backend_comparison(table, scores, identities, left_out, cluster, p["alpha"])
        result["decision_curve"] = decision_curve(table, scores, rating_scale)
    return result


def backend_label(backend: dict) -> str:
    """How a backend is named in the report: model name and version (the weights hash is in its own column)."""
    return f"{backend['model_name']} {backend['model_version']}"


def backend_scores(
    table: pd.DataFrame, backends: list[dict]
) -> tuple[dict[str, list[float]], dict[str, dict], list[dict]]:
    """Per backend with a prediction for every analysed case, its probabilities in the order of the table's
    cases (by label), and the backend of each label; the others, left out (they would be compared on other
    cases), with how many cases they lack."""
    cases = table.drop_duplicates("case")["case"].astype(str).tolist()
    scores: dict[str, list[float]] = {}
    identities: dict[str, dict] = {}
    left_out = []
    for backend in backends:
        label = backend_label(backend)
        if label in scores:  # the same name and version with other weights: the hash tells them apart
            label = f"{label} ({backend['weights_sha256'][:12]})"
        predictions = backend["predictions"]
        missing = [c for c in cases if c not in predictions]
        if missing:
            left_out.append({"backend": label, "n_missing": len(missing), "example": missing[0]})
        else:
            scores[label] = [float(predictions[c]) for c in cases]
            identities[label] = backend
    return scores, identities, left_out


def backend_comparison(
    table: pd.DataFrame,
    scores: dict[str, list[float]],
    identities: dict[str, dict],
    left_out: list[dict],
    cluster: str | None,
    alpha: float,
) -> dict:
    """The backends' standalone AUCs with (clustered) DeLong CIs and every pairwise difference with its DeLong test
    (inference.pipeline.compare), on the analysed cases; each backend's identity (model, version, weights hash)."""
    from inference.pipeline.compare import compare_backends

    if not scores and not left_out:
        return {"error": "no stored predictions of any classifier backend for these cases"}
    if not scores:
        return {"error": "no backend has a prediction for every analysed case", "left_out": left_out}
    cases = table.drop_duplicates("case")
    try:
        out = compare_backends(
            cases["truth"].to_numpy(), scores, cases["patient"].to_numpy() if cluster else None, alpha
        )
    except AnalysisInputError as exc:
        return {"error": str(exc), "left_out": left_out}
    for label, row in out["backends"].items():
        b = identities[label]
        row.update(model_name=b["model_name"], model_version=b["model_version"], weights_sha256=b["weights_sha256"])
    out["order"] = list(scores)  # PostgreSQL's jsonb keeps no key order
    out["left_out"] = left_out
    return _finite(out)


def decision_curve(table: pd.DataFrame, scores: dict[str, list[float]], rating_scale: tuple[float, float]) -> dict:
    """Net benefit against threshold probability (readerstudy.analysis.decision_curve) of each backend's
    probabilities on the analysed cases, and of the readers' ratings in each modality, mapped to probabilities by
    rescaling the study's rating scale to 0-1 (the scale asks for the probability of a metastasis: a rating of 70
    on 0-100 is 0.70), every read pooled (in a fully crossed design: the readers' mean net benefit)."""
    from readerstudy.analysis.decision_curve import decision_curves

    cases = table.drop_duplicates("case")
    low, high = (float(v) for v in rating_scale)
    out: dict[str, Any] = {"rating_scale": [low, high], "curves": []}
    try:
        # Treat all and treat none depend on the truth only: without a backend, a score of zeros gives them.
        reference = decision_curves(cases["truth"].to_numpy(), scores or {"zeros": np.zeros(len(cases))})
    except AnalysisInputError as exc:
        return {"error": str(exc)}
    out.update({k: reference[k] for k in ("n", "n_positive", "prevalence", "thresholds", "treat_all", "treat_none")})
    for name in scores:
        out["curves"].append({"name": name, "kind": "backend", "n": reference["n"],
                              "net_benefit": reference["net_benefit"][name]})  # fmt: skip
    for modality in sorted(table["modality"].astype(str).unique()):
        reads = table[table["modality"].astype(str) == modality]
        probability = (reads["rating"].astype(float).to_numpy() - low) / (high - low)
        try:
            curve = decision_curves(reads["truth"].to_numpy(), {"readers": probability})
        except AnalysisInputError as exc:
            out["curves"].append({"name": f"readers, {modality}", "kind": "readers", "error": str(exc)})
            continue
        out["curves"].append({"name": f"readers, {modality}", "kind": "readers", "modality": modality,
                              "n": curve["n"], "net_benefit": curve["net_benefit"]["readers"]})  # fmt: skip
    return _finite(out)


BINARY_FOMS = ("sensitivity", "specificity")


def interaction(table: pd.DataFrame, compared: tuple[str, str], threshold: float, alpha: float) -> dict:
    """What the DL output did to the readers (readerstudy.analysis.interaction) at the plan's threshold, or why
    it cannot be said (no DL probability, no case read in both modalities)."""
    from readerstudy.analysis.interaction import ai_interaction

    aided, unaided = compared
    try:
        return ai_interaction(table, unaided=unaided, aided=aided, threshold=threshold, alpha=alpha)
    except AnalysisInputError as exc:
        return {"error": str(exc)}


def default_compared(modalities: list[str]) -> tuple[str, str] | None:
    """(assisted, unassisted) when the study's modalities do not say: "aided" and "unaided", else the last and
    first in sorted order."""
    if {"aided", "unaided"} <= set(modalities):
        return ("aided", "unaided")
    return (modalities[-1], modalities[0]) if len(modalities) >= 2 else None


def planned_tests(mrmc: dict, plan: dict, compared: tuple[str, str], alpha: float) -> None:
    """The plan's one-sided test of assisted minus unassisted (``compared``), added as ``one_sided`` to that
    difference of every analysis, overall and in each analysable stratum.

    One-sided at alpha / 2 (0.025), so that non-inferiority is shown exactly when the lower end of the two-sided
    (1 - alpha) CI lies above -margin, and superiority when it lies above 0 (analysis/onesided.py); a difference
    stored the other way round (B - A) is tested flipped, its estimate then -d with the same SE and df.
    """
    hypothesis, margin = check_hypothesis(plan["plan_hypothesis"], plan.get("plan_margin") or 0.0)
    assert hypothesis is not None
    blocks = [mrmc, *(b for b in (mrmc.get("strata") or {}).values() if "error" not in b)]
    for block in blocks:
        for name in ANALYSES:
            for d in (block.get(name) or {}).get("differences", []):
                pair = [str(m) for m in d["modalities"]]
                if sorted(pair) != sorted(compared):
                    continue
                estimate = d["estimate"]
                if pair != list(compared) and estimate is not None:
                    estimate = -estimate
                test = one_sided({**d, "estimate": estimate}, hypothesis, margin, alpha / 2)
                d["one_sided"] = {**test, "difference": list(compared), "estimate": estimate}


CLASS_NAMES = {1: "positive (CRLM)", 0: "negative (hemangioma)"}


def class_problem(truth: pd.Series | list, where: str = "this stratum") -> str | None:
    """Why cases of this truth cannot give an AUC (none, or one class only, named), or None when they can."""
    values = [int(t) for t in truth]
    if not values:
        return f"no cases in {where}"
    if len(set(values)) == 1:
        return f"all {len(values)} cases in {where} are {CLASS_NAMES[values[0]]}: an AUC needs both classes"
    return None


def summary(table: pd.DataFrame, bins: list[float]) -> dict:
    cases = table.drop_duplicates("case")
    per_stratum = {}
    for label in stratum_labels(bins):
        sub = cases[cases["size_stratum"] == label]
        per_stratum[label] = {
            "cases": len(sub),
            "positive": int(sub["truth"].sum()),
            "negative": int((sub["truth"] == 0).sum()),
        }
    return {
        "n_reads": len(table),
        "n_readers": int(table["reader"].nunique()),
        "n_cases": len(cases),
        "n_patients": int(cases["patient"].nunique()),
        "n_positive": int(cases["truth"].sum()),
        "n_negative": int((cases["truth"] == 0).sum()),
        "modalities": sorted(table["modality"].unique().tolist()),
        "strata": per_stratum,
    }


def standalone_model(table: pd.DataFrame, cluster: str | None, p: dict) -> dict:
    """The DL model's own AUC (DeLong; clustered by patient when asked), overall and per stratum, and mean reader
    AUC minus model AUC in each modality."""
    cases = table.drop_duplicates("case")
    if cases["model_probability"].isna().all():
        return {"error": "no DL predictions for these cases"}
    missing = cases[cases["model_probability"].isna()]
    if len(missing):
        return {"error": f"{len(missing)} of {len(cases)} cases have no DL prediction (e.g. {missing['case'].iloc[0]})"}
    out: dict[str, Any] = {}
    groups = [("overall", cases)] + [(s, cases[cases["size_stratum"] == s]) for s in stratum_labels(p["size_bins_mm"])]
    for name, sub in groups:
        problem = class_problem(sub["truth"], "the study" if name == "overall" else "this stratum")
        if problem:
            out[name] = {"error": problem}
            continue
        try:
            out[name] = model_auc(
                sub["truth"].to_numpy(), sub["model_probability"].to_numpy(),
                sub["patient"].to_numpy() if cluster else None,
            )  # fmt: skip
        except AnalysisInputError as exc:
            out[name] = {"error": str(exc)}
    scores = dict(zip(cases["case"].astype(str), cases["model_probability"], strict=True))
    versus = {}
    for modality in sorted(table["modality"].unique()):
        try:
            versus[modality] = compare_model_to_readers(
                table[["reader", "modality", "case", "truth", "rating", "patient"]], scores, modality=modality,
                cov=p["cov"] if p["cov"] != "unbiased" else "jackknife", cluster=cluster,
            )  # fmt: skip
        except AnalysisInputError as exc:
            versus[modality] = {"error": str(exc)}
    out["readers_minus_model"] = versus
    return _finite(out)


def _finite(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
