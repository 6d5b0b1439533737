"""Lesion-size strata with explicit edge rules: the one home of the size bins' validation and of the stratum.

Pure (stdlib only): the web app, the exports, the analysis and the inference evaluation all import it. Nothing
stores a stratum: it is derived from a lesion's diameter and the bins by whatever shows or analyses it, so that
changing a study's bins changes no stored row and re-runs no model.

``bins`` are strictly increasing upper edges in mm. Every interval is closed on the right, so an edge
belongs to the LOWER stratum: with bins (10, 30), 10.0 mm is "<=10", 10.01 mm and 30.0 mm are "10-30",
30.01 mm is ">30". A diameter must be finite and > 0 (NaN, infinite, zero or negative raise).
"""

import math
from collections.abc import Sequence
from itertools import pairwise
from numbers import Real
from typing import Any

from readerstudy.analysis.errors import AnalysisInputError

DEFAULT_SIZE_BINS_MM = (10.0, 30.0)


def _fmt(edge: float) -> str:
    return f"{edge:g}"


def check_size_bins(bins: Any) -> list[float]:
    """The bins as floats, or AnalysisInputError: a non-empty list of finite, positive, strictly increasing mm."""
    if isinstance(bins, str | bytes) or not isinstance(bins, Sequence) or not bins:
        raise AnalysisInputError(f"size bins {bins!r}: expected a non-empty list of numbers in mm, e.g. [10, 30]")
    if not all(isinstance(b, Real) and not isinstance(b, bool) for b in bins):
        raise AnalysisInputError(f"size bins {bins!r}: expected a non-empty list of numbers in mm, e.g. [10, 30]")
    edges = [float(b) for b in bins]
    if not all(math.isfinite(b) and b > 0 for b in edges) or any(hi <= lo for lo, hi in pairwise(edges)):
        raise AnalysisInputError(f"size bins {bins!r}: expected finite, positive, strictly increasing edges in mm")
    return edges


def stratum_labels(bins: Sequence[float] = DEFAULT_SIZE_BINS_MM) -> list[str]:
    """Labels of all strata, smallest first, e.g. ['<=10', '10-30', '>30']."""
    edges = check_size_bins(bins)
    labels = [f"<={_fmt(edges[0])}"]
    labels += [f"{_fmt(lo)}-{_fmt(hi)}" for lo, hi in pairwise(edges)]
    labels.append(f">{_fmt(edges[-1])}")
    return labels


def stratum_range(label: str, bins: Sequence[float] = DEFAULT_SIZE_BINS_MM) -> tuple[float, float] | None:
    """``(lo, hi)`` such that a diameter d is in the stratum ``label`` iff lo < d <= hi; None if not a label."""
    edges = check_size_bins(bins)
    labels = stratum_labels(edges)
    if label not in labels:
        return None
    bounds = [0.0, *edges, math.inf]
    i = labels.index(label)
    return bounds[i], bounds[i + 1]


def size_stratum(diameter_mm: float, bins: Sequence[float] = DEFAULT_SIZE_BINS_MM) -> str:
    """The stratum label of one lesion diameter (edges go to the lower stratum, see the module docstring)."""
    try:
        d = float(diameter_mm)
    except (TypeError, ValueError):
        raise AnalysisInputError(f"diameter {diameter_mm!r} mm: expected a number") from None
    if not math.isfinite(d) or d <= 0:
        raise AnalysisInputError(f"diameter {diameter_mm!r} mm: expected a finite number > 0")
    edges = check_size_bins(bins)
    labels = stratum_labels(edges)
    for edge, label in zip(edges, labels, strict=False):
        if d <= edge:
            return label
    return labels[-1]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values, in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
