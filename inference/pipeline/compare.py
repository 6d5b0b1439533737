"""Standalone comparison of classifier backends on the same cases: AUCs with DeLong CIs and pairwise DeLong tests.

For G backends scored on the same K cases, :func:`readerstudy.analysis.covariance.delong_cov` gives the G x G
covariance of the empirical AUCs (DeLong, DeLong & Clarke-Pearson 1988; with ``clusters`` Obuchowski's 1997
clustered form, patients as clusters, as lesions of one patient are not independent). Each backend's AUC has the
normal CI of :func:`readerstudy.analysis.model_auc` (clipped to [0, 1]); each pair (a, b) has the difference
``AUC_a - AUC_b``, its standard error ``sqrt(V_aa + V_bb - 2 V_ab)``, a normal CI and a two-sided z test, and the
p-values Holm-adjusted over the pairs. A difference whose variance is 0 (the same ranking, e.g. two perfect
backends) has no test: its ``z`` and ``p`` are null.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np

__all__ = ["compare_backends"]


def compare_backends(
    truth: Sequence[int] | np.ndarray,
    scores: Mapping[str, Sequence[float] | np.ndarray],
    clusters: Sequence[Any] | np.ndarray | None = None,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """``{"backends": {name: {auc, se, ci}}, "pairs": [{a, b, difference, se, ci, z, p, p_holm}], ...}``.

    ``truth``: 0/1 per case (1 = CRLM); ``scores``: per backend one score per case, same order; ``clusters``:
    the patient of each case (clustered DeLong) or None (cases independent).
    """
    import pandas as pd

    from readerstudy.analysis.api import plain
    from readerstudy.analysis.auc import placements
    from readerstudy.analysis.covariance import delong_cov
    from readerstudy.analysis.errors import AnalysisInputError
    from readerstudy.analysis.orh import auc_ci

    names, y, x = _score_matrix(truth, scores)
    codes = None
    if clusters is not None:
        if len(clusters) != y.size:
            raise AnalysisInputError("clusters: expected one patient per case")
        codes = pd.factorize(pd.Series(list(clusters)), sort=True)[0]
    p = placements(x, y == 1)
    cov = delong_cov(p, codes)
    backends = {}
    for g, name in enumerate(names):
        out = auc_ci(float(p.auc[g]), math.sqrt(max(float(cov[g, g]), 0.0)), math.inf, alpha)
        backends[name] = {"auc": out["auc"], "se": out["se"], "ci": out["ci"]}
    return plain(
        {
            "n_cases": int(y.size),
            "n_positive": int(y.sum()),
            "n_negative": int((1 - y).sum()),
            "n_clusters": None if codes is None else int(codes.max()) + 1,
            "method": "DeLong" if codes is None else "clustered DeLong (Obuchowski 1997)",
            "alpha": alpha,
            "backends": backends,
            "pairs": _pairs(names, p.auc, cov, alpha),
        }
    )


def _score_matrix(
    truth: Sequence[int] | np.ndarray, scores: Mapping[str, Sequence[float] | np.ndarray]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Backend names, the 0/1 truth and the G x K score matrix, checked."""
    from readerstudy.analysis.errors import AnalysisInputError

    names = [str(n) for n in scores]
    if not names:
        raise AnalysisInputError("scores: expected at least one backend")
    y = np.asarray(truth)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise AnalysisInputError("truth: expected one 0/1 value per case")
    if y.all() or not y.any():
        raise AnalysisInputError("the cases are all of one truth class; expected both")
    x = np.empty((len(names), y.size))
    for g, name in enumerate(scores):
        row = np.asarray(scores[name], dtype=float)
        if row.shape != y.shape:
            raise AnalysisInputError(f"scores of {name!r}: expected {y.size} values (one per case), got {row.size}")
        if not np.isfinite(row).all():
            raise AnalysisInputError(f"scores of {name!r}: expected finite numbers")
        x[g] = row
    return names, y, x


def _pairs(names: list[str], auc: np.ndarray, cov: np.ndarray, alpha: float) -> list[dict[str, Any]]:
    """Every pairwise difference with its DeLong z test; Holm-adjusted over the testable pairs."""
    from readerstudy.analysis.orh import z_test
    from readerstudy.analysis.strata import holm

    pairs = []
    for a, b in combinations(range(len(names)), 2):
        var = float(cov[a, a] + cov[b, b] - 2 * cov[a, b])
        diff = float(auc[a] - auc[b])
        test = z_test(diff, math.sqrt(var) if var > 1e-15 else 0.0, alpha)
        pairs.append(
            {"a": names[a], "b": names[b], "difference": diff, "se": test["se"], "ci": test["ci"],
             "z": test["z"], "p": test["p"]}
        )  # fmt: skip
    testable = [k for k, pair in enumerate(pairs) if not math.isnan(pair["p"])]
    for k, adjusted in zip(testable, holm([pairs[k]["p"] for k in testable]), strict=True):
        pairs[k]["p_holm"] = adjusted
    for pair in pairs:
        pair.setdefault("p_holm", math.nan)
    return pairs
