"""Lesion-size strata with explicit edge rules (stdlib only: the web app imports this to label cases).

``bins`` are strictly increasing upper edges in mm. Every interval is closed on the right, so an edge
belongs to the LOWER stratum: with bins (10, 30), 10.0 mm is "<=10", 10.01 mm and 30.0 mm are "10-30",
30.01 mm is ">30". A diameter must be finite and > 0 (NaN, infinite, zero or negative raise).
"""

import math
from collections.abc import Sequence
from itertools import pairwise

from readerstudy.analysis.errors import AnalysisInputError


def _fmt(edge: float) -> str:
    return f"{edge:g}"


def _check_bins(bins: Sequence[float]) -> list[float]:
    edges = [float(b) for b in bins]
    if not edges or not all(math.isfinite(b) and b > 0 for b in edges):
        raise AnalysisInputError(f"size bins {tuple(bins)!r}: expected one or more finite edges > 0 mm")
    if any(hi <= lo for lo, hi in pairwise(edges)):
        raise AnalysisInputError(f"size bins {tuple(bins)!r}: expected strictly increasing edges")
    return edges


def stratum_labels(bins: Sequence[float] = (10, 30)) -> list[str]:
    """Labels of all strata, smallest first, e.g. ['<=10', '10-30', '>30']."""
    edges = _check_bins(bins)
    labels = [f"<={_fmt(edges[0])}"]
    labels += [f"{_fmt(lo)}-{_fmt(hi)}" for lo, hi in pairwise(edges)]
    labels.append(f">{_fmt(edges[-1])}")
    return labels


def size_stratum(diameter_mm: float, bins: Sequence[float] = (10, 30)) -> str:
    """The stratum label of one lesion diameter (edges go to the lower stratum, see the module docstring)."""
    try:
        d = float(diameter_mm)
    except (TypeError, ValueError):
        raise AnalysisInputError(f"diameter {diameter_mm!r} mm: expected a number") from None
    if not math.isfinite(d) or d <= 0:
        raise AnalysisInputError(f"diameter {diameter_mm!r} mm: expected a finite number > 0")
    edges = _check_bins(bins)
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
