"""``analyse()``: the whole OR analysis of a ratings table as a plain, JSON-ready dict."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from readerstudy.analysis.binary import check_fom, fom_covariance, name_by_fom
from readerstudy.analysis.covariance import COV_METHODS, auc_covariance
from readerstudy.analysis.data import ReaderStudy, case_strata, check_both_classes, read_ratings
from readerstudy.analysis.errors import AnalysisInputError
from readerstudy.analysis.onesided import add_one_sided, check_hypothesis
from readerstudy.analysis.orh import ANALYSES, ORComponents, frrc, rrfc, rrrc
from readerstudy.analysis.splitplot import SplitPlotStudy, build_design, design_entries, split_plot_auc_covariance
from readerstudy.analysis.strata import holm


def plain(obj: Any) -> Any:
    """numpy scalars -> Python numbers, NaN/inf -> None, recursively (json.dumps-safe, NaN-free).

    Typed ``Any``: the result has the shape of the input (a dict stays a dict), which the type system cannot say."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [plain(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _check_options(cov: str, analyses: Sequence[str]) -> tuple[str, ...]:
    if cov not in COV_METHODS:
        raise AnalysisInputError(f"covariance method {cov!r}: expected one of {list(COV_METHODS)}")
    analyses = tuple(a.strip().lower() for a in analyses)
    unknown = [a for a in analyses if a not in ANALYSES]
    if unknown or not analyses:
        raise AnalysisInputError(f"analyses {list(analyses)}: expected one or more of {list(ANALYSES)}")
    return analyses


def analyse_study(
    study: ReaderStudy | SplitPlotStudy,
    cov: str = "jackknife",
    analyses: Sequence[str] = ANALYSES,
    alpha: float = 0.05,
    frrc_truncate: bool = True,
    what: str = "the data set",
    fom: str = "auc",
    threshold: float | None = None,
    margin: float | None = None,
    hypothesis: str | None = None,
) -> dict:
    """OR analysis of an already validated study (see :func:`analyse` for the result's keys)."""
    analyses = _check_options(cov, analyses)
    fom, threshold = check_fom(fom, threshold)
    hypothesis, margin_value = check_hypothesis(hypothesis, margin)
    if not isinstance(study, SplitPlotStudy) and fom == "auc":  # a binary FOM needs its own class only
        check_both_classes(study, what)
    n_m, n_r, n_k = study.ratings.shape
    if n_r < 2 and {"rrrc", "rrfc"} & set(analyses):
        raise AnalysisInputError(
            f"{what} has {n_r} reader ({study.readers[0]!r}); random-reader analyses "
            "(RRRC, RRFC) need at least 2 readers"
        )
    if fom != "auc":  # sensitivity or specificity at the threshold, see binary.py
        auc, covariance = fom_covariance(study, fom, threshold, cov, what)
    elif isinstance(study, SplitPlotStudy):  # each group's block apart, see splitplot.py
        auc, covariance = split_plot_auc_covariance(study, cov, what)
    else:
        auc, covariance = auc_covariance(study.ratings.reshape(n_m * n_r, n_k), study.truth, cov, study.clusters)
    comps = ORComponents(auc.reshape(n_m, n_r), covariance)
    grid = auc.reshape(n_m, n_r)
    se = np.sqrt(np.clip(np.diag(covariance), 0, None)).reshape(n_m, n_r)
    out = {
        "n_readers": n_r,
        "n_cases": n_k,
        "n_positive": study.n_positive,
        "n_negative": study.n_negative,
        "n_clusters": study.n_clusters,
        "cov_method": cov,
        "modalities": study.modalities,
        "readers": study.readers,
        "auc": {m: dict(zip(study.readers, grid[i], strict=True)) for i, m in enumerate(study.modalities)},
        "auc_se": {m: dict(zip(study.readers, se[i], strict=True)) for i, m in enumerate(study.modalities)},
        "modality_auc": dict(zip(study.modalities, comps.modality_auc, strict=True)),
        "covariance": {"labels": [f"{m}:{r}" for m in study.modalities for r in study.readers], "matrix": covariance},
        "anova": comps.anova(),
        "var_components": comps.var_components(),
    }
    out.update(design_entries(study))  # design, groups
    if "rrrc" in analyses:
        out["rrrc"] = rrrc(comps, study.modalities, alpha)
    if "frrc" in analyses:
        out["frrc"] = frrc(comps, study.modalities, study.readers, alpha, truncate=frrc_truncate)
    if "rrfc" in analyses:
        out["rrfc"] = rrfc(comps, study.modalities, alpha)
    return add_one_sided(name_by_fom(plain(out), fom, threshold), hypothesis, margin_value, alpha)


def _holm_across(strata: dict, analyses: Sequence[str]) -> None:
    """Add Holm-adjusted p-values (over the analysable strata) to each global test and difference."""
    ok = [s for s in strata.values() if "error" not in s]
    for name in analyses:
        tests = [s[name] for s in ok]
        usable = [t for t in tests if t["p"] is not None]
        for t, p in zip(usable, holm([t["p"] for t in usable]), strict=True):
            t["p_holm"] = p
        for i in range(len(tests[0]["differences"]) if tests else 0):
            diffs = [t["differences"][i] for t in tests if t["differences"][i]["p"] is not None]
            for d, p in zip(diffs, holm([d["p"] for d in diffs]), strict=True):
                d["p_holm"] = p


def analyse(
    source: pd.DataFrame | str | os.PathLike,
    cov: str = "jackknife",
    cluster: str | None = None,
    stratum: str | None = None,
    analyses: Sequence[str] = ANALYSES,
    alpha: float = 0.05,
    frrc_truncate: bool = True,
    complete_readers_only: bool = False,
    fom: str = "auc",
    threshold: float | None = None,
    margin: float | None = None,
    hypothesis: str | None = None,
) -> dict:
    """Obuchowski-Rockette-Hillis analysis of a long ratings table (DataFrame or CSV path).

    ``cov``: "jackknife" (default), "delong" or "unbiased"; ``cluster``: column naming each case's patient
    (jackknife deletes, and DeLong groups, whole patients); ``stratum``: column whose values split the cases
    into strata analysed separately (cases without a value join every stratum) with Holm-adjusted p-values;
    ``frrc_truncate``: FRRC error term with max(Cov2 - Cov3, 0) (Iowa/RJafroc, default) or not (MRMCaov);
    ``complete_readers_only``: leave out readers who did not rate every case of their block in every modality
    instead of refusing the table. The design (fully crossed or split-plot) is detected from the reads.
    ``fom``: "auc" (default), "sensitivity" or "specificity" at ``threshold`` (a read calls a case positive
    when its rating >= threshold; required for those two, refused for the AUC); ``hypothesis``
    ("superiority" or "non-inferiority", with ``margin`` M > 0) adds a one-sided test to every difference.

    Returns plain floats keyed as documented in the README (``n_readers`` ... ``rrrc``/``frrc``/``rrfc``,
    and ``strata`` when stratified); undefined numbers are None. Bad input raises AnalysisInputError; a
    stratum that cannot be analysed gets ``{"error": message}`` instead.
    """
    analyses = _check_options(cov, analyses)
    check_fom(fom, threshold)
    check_hypothesis(hypothesis, margin)
    df = read_ratings(source, cluster, stratum)
    study, design = build_design(df, cluster, complete_readers_only)
    plan: dict[str, Any] = {"fom": fom, "threshold": threshold, "margin": margin, "hypothesis": hypothesis}
    result = analyse_study(study, cov, analyses, alpha, frrc_truncate, **plan)
    result.update(plain(design))  # design, groups, completion
    if stratum is None:
        return result
    labels, case_stratum = case_strata(df, stratum)
    shared = case_stratum == -1
    strata = {}
    for code, label in enumerate(labels):
        keep = (case_stratum == code) | shared
        try:
            strata[label] = analyse_study(
                study.subset(keep), cov, analyses, alpha, frrc_truncate, what=f"stratum {stratum}={label!r}", **plan
            )
        except AnalysisInputError as exc:
            strata[label] = {"error": str(exc)}
    _holm_across(strata, analyses)
    result["stratum_column"] = stratum
    result["strata"] = strata
    return result
