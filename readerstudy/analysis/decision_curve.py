"""Decision-curve analysis (Vickers & Elkin 2006) of probabilities for a binary truth, through ``dcurves``.

The net benefit of acting on a probability at threshold probability p_t (calling a lesion positive when its
probability is >= p_t) is

    NB(p_t) = TP / n - FP / n * p_t / (1 - p_t),

the true positives less the false positives weighted by the odds of the threshold, per case: the benefit of
treating a metastasis, in units of true positives, net of the harm of treating a hemangioma as one. "Treat all"
calls every case positive (NB = prevalence - (1 - prevalence) p_t / (1 - p_t)), "treat none" none (NB = 0). A
score is useful at p_t where its curve lies above both.

:func:`decision_curves` computes the curves of several sets of scores on the same cases with ``dcurves.dca``
(MSKCC's Python port of the R/Stata ``dca``; binary outcome, no recalibration: the scores must already be
probabilities). The readers' ratings are not: the caller maps them (readerstudy.results.runs: the rating scale
rescaled to 0-1) and says so. No Django here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from readerstudy.analysis.errors import AnalysisInputError

__all__ = ["CURVE_THRESHOLDS", "TABLE_THRESHOLDS", "decision_curves"]

CURVE_THRESHOLDS: tuple[float, ...] = tuple(i / 100 for i in range(1, 100))  # 0.01 ... 0.99
# The thresholds of the report's table: where deciding on a liver lesion (biopsy, resection, follow-up) plausibly
# lies; the curve shows the rest.
TABLE_THRESHOLDS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)


def decision_curves(
    truth: Sequence[int] | np.ndarray,
    scores: Mapping[str, Sequence[float] | np.ndarray],
    thresholds: Sequence[float] = CURVE_THRESHOLDS,
) -> dict[str, Any]:
    """``{"n", "n_positive", "prevalence", "thresholds", "net_benefit": {name: [...]}, "treat_all", "treat_none"}``.

    ``truth``: 0/1 per case (or per read); ``scores``: per name one probability in [0, 1] per case, same order.
    Net benefits are listed in the order of ``thresholds`` (each in (0, 1)).
    """
    import dcurves  # imports lifelines and statsmodels: only when a decision curve is drawn

    y, names, matrix = _checked(truth, scores)
    points = [float(t) for t in thresholds]
    if not points or any(not 0 < t < 1 for t in points):
        raise AnalysisInputError("thresholds: expected probabilities strictly between 0 and 1")
    # Columns by position: a score named "all" or "none" would collide with dcurves' own reference strategies.
    columns = [f"score{k}" for k in range(len(names))]
    data = pd.DataFrame({"outcome": y, **dict(zip(columns, matrix, strict=True))})
    table = dcurves.dca(data=data, outcome="outcome", modelnames=columns, thresholds=points)

    def curve(column: str) -> list[float]:
        rows = table[table["model"] == column].sort_values("threshold")
        return [float(v) for v in rows["net_benefit"]]

    order = np.argsort(points)
    unsort = np.empty_like(order)
    unsort[order] = np.arange(order.size)  # dcurves' rows sorted by threshold, back to the caller's order

    def in_order(values: list[float]) -> list[float]:
        return [values[i] for i in unsort]

    return {
        "n": int(y.size),
        "n_positive": int(y.sum()),
        "prevalence": float(y.mean()),
        "thresholds": points,
        "net_benefit": {name: in_order(curve(column)) for name, column in zip(names, columns, strict=True)},
        "treat_all": in_order(curve("all")),
        "treat_none": in_order(curve("none")),
    }


def _checked(
    truth: Sequence[int] | np.ndarray, scores: Mapping[str, Sequence[float] | np.ndarray]
) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
    y = np.asarray(truth)
    if y.ndim != 1 or y.size == 0 or not np.isin(y, (0, 1)).all():
        raise AnalysisInputError("truth: expected one 0/1 value per case")
    if y.all() or not y.any():
        raise AnalysisInputError("the cases are all of one truth class; a decision curve needs both")
    if not scores:
        raise AnalysisInputError("scores: expected at least one set of probabilities")
    names, matrix = [], []
    for name, values in scores.items():
        row = np.asarray(values, dtype=float)
        if row.shape != y.shape:
            raise AnalysisInputError(f"scores of {name!r}: expected {y.size} values (one per case), got {row.size}")
        if not np.isfinite(row).all() or (row < 0).any() or (row > 1).any():
            raise AnalysisInputError(f"scores of {name!r}: expected probabilities from 0 to 1")
        names.append(str(name))
        matrix.append(row)
    return y.astype(int), names, matrix
