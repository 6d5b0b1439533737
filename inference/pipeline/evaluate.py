"""Segmentation and classification metrics: Dice, HD95 (mm) per lesion and per case, by size stratum; AUC.

Per-lesion metrics compare each ground-truth lesion instance with the predicted lesion components that touch
it (so a neighbouring lesion's prediction does not count against it). HD95 is the 95th percentile of the
symmetric surface distances in mm (anisotropic spacing respected); it is ``inf`` when exactly one mask is
empty and ``nan`` when both are. The standalone AUC with its (clustered) DeLong CI comes from
:func:`readerstudy.analysis.standalone.model_auc`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from inference.pipeline.lesions import max_axial_diameter_mm
from readerstudy.analysis.strata import size_stratum, stratum_labels

__all__ = ["case_metrics", "dice", "hd95", "per_lesion_metrics", "standalone_auc", "summarise_by_stratum"]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def _surface(m: np.ndarray) -> np.ndarray:
    return m & ~ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(3, 1))


def hd95(a: np.ndarray, b: np.ndarray, spacing_mm: Sequence[float], percentile: float = 95.0) -> float:
    """Symmetric ``percentile`` Hausdorff distance between two boolean masks' surfaces, in mm."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if not a.any() and not b.any():
        return math.nan
    if not a.any() or not b.any():
        return math.inf
    # work on the joint bounding box plus a margin: distance transforms of whole CTs are slow
    idx = np.argwhere(a | b)
    lo = np.maximum(idx.min(axis=0) - 2, 0)
    hi = np.minimum(idx.max(axis=0) + 3, a.shape)
    box = tuple(slice(int(x), int(y)) for x, y in zip(lo, hi, strict=True))
    a, b = a[box], b[box]
    sa, sb = _surface(a), _surface(b)
    dist_to_b = ndimage.distance_transform_edt(~sb, sampling=spacing_mm)
    dist_to_a = ndimage.distance_transform_edt(~sa, sampling=spacing_mm)
    d = np.concatenate([dist_to_b[sa], dist_to_a[sb]])
    return float(np.percentile(d, percentile))


def per_lesion_metrics(
    pred_lesion_mask: np.ndarray,
    truth_labels: np.ndarray,
    spacing_mm: Sequence[float],
    bins: Sequence[float] = (10, 30),
    truth_diameters_mm: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """One row per ground-truth lesion instance (values 1..n of ``truth_labels``).

    The diameter (for the stratum) is ``truth_diameters_mm[n - 1]`` when given (e.g. the manifest's), else the
    truth mask's maximum axial diameter.
    """
    pred = np.asarray(pred_lesion_mask, bool)
    comps, _ = ndimage.label(pred, structure=np.ones((3, 3, 3), bool))
    rows = []
    for n in [int(v) for v in np.unique(truth_labels) if v > 0]:
        truth = truth_labels == n
        touching = np.unique(comps[truth & (comps > 0)])
        pred_n = np.isin(comps, touching) if touching.size else np.zeros_like(pred)
        diameter = (
            float(truth_diameters_mm[n - 1])
            if truth_diameters_mm is not None
            else max_axial_diameter_mm(truth, spacing_mm)
        )
        rows.append(
            {
                "lesion": n,
                "diameter_mm": round(diameter, 2),
                "stratum": size_stratum(max(diameter, 1e-3), bins),
                "detected": bool(touching.size),
                "dice": dice(pred_n, truth),
                "hd95_mm": hd95(pred_n, truth, spacing_mm) if touching.size else math.inf,
            }
        )
    return rows


def case_metrics(
    pred_liver: np.ndarray,
    pred_lesion: np.ndarray,
    truth_liver: np.ndarray,
    truth_lesion: np.ndarray,
    spacing_mm: Sequence[float],
) -> dict[str, float]:
    """Whole-case Dice and HD95 of the liver and of all lesions together."""
    return {
        "dice_liver": dice(pred_liver, truth_liver),
        "hd95_liver_mm": hd95(pred_liver, truth_liver, spacing_mm),
        "dice_lesions": dice(pred_lesion, truth_lesion),
        "hd95_lesions_mm": hd95(pred_lesion, truth_lesion, spacing_mm),
    }


def summarise_by_stratum(rows: Sequence[dict[str, Any]], bins: Sequence[float] = (10, 30)) -> dict[str, dict[str, Any]]:
    """Per stratum (and ``"all"``): count, detection rate, mean/median Dice, median HD95 of detected lesions."""
    out: dict[str, dict[str, Any]] = {}
    for label in [*stratum_labels(bins), "all"]:
        sel = [r for r in rows if label == "all" or r["stratum"] == label]
        if not sel:
            out[label] = {"n": 0}
            continue
        dices = np.array([r["dice"] for r in sel], dtype=float)
        hds = np.array([r["hd95_mm"] for r in sel if r["detected"] and math.isfinite(r["hd95_mm"])], dtype=float)
        out[label] = {
            "n": len(sel),
            "detection_rate": float(np.mean([r["detected"] for r in sel])),
            "dice_mean": float(dices.mean()),
            "dice_median": float(np.median(dices)),
            "hd95_median_mm": float(np.median(hds)) if hds.size else math.nan,
        }
    return out


def standalone_auc(
    truth: Sequence[int], scores: Sequence[float], patients: Sequence[str] | None = None, alpha: float = 0.05
) -> dict[str, Any]:
    """The model's AUC with a DeLong CI, clustered by patient when ``patients`` is given."""
    from readerstudy.analysis.standalone import model_auc

    return model_auc(
        np.asarray(truth), np.asarray(scores, dtype=float), None if patients is None else np.asarray(patients), alpha
    )
