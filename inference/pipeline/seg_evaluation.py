"""Segmentation evaluation of cases: liver, vessels and lesions, lesions matched one by one and by size stratum.

A pure core (arrays in, plain dicts out): ``manage.py evaluate_predictions`` loads the masks and prints;
the platform's report can call :func:`segmentation_report` on the same inputs. Metrics: :mod:`.seg_metrics`.

**Lesion matching rule.** Predicted lesion instances are the 26-connected components of the predicted lesion
mask; reference lesions are the instance labels ``1..n`` of the reference (components of a binary reference).

1. A predicted component that overlaps (shares at least one voxel with) exactly one reference lesion belongs
   to it entirely.
2. A component that overlaps several reference lesions (two lesions merged by the model) is split between
   them: each of its voxels goes to the nearest of those lesions (Euclidean distance in mm). So a
   neighbour's prediction never counts against a lesion, and a merged prediction still counts for both.
3. A component that overlaps no reference lesion is a false positive; it is counted in the stratum of its
   own maximum axial diameter.

A reference lesion is *detected* when any predicted voxel overlaps it. Its metrics compare the reference
lesion with the predicted voxels assigned to it (a missed lesion: Dice 0, NSD 0, HD95 ``inf``). The stratum
comes from the reference diameter: the manifest's when given, else the reference mask's maximum axial diameter
(the rule of :mod:`readerstudy.analysis.strata`: an edge belongs to the lower stratum).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from inference.pipeline.lesions import max_axial_diameter_mm
from inference.pipeline.seg_metrics import NSD_TOLERANCE_MM, structure_metrics
from readerstudy.analysis.strata import size_stratum, stratum_labels

__all__ = [
    "STRUCTURES",
    "evaluate_case",
    "format_table",
    "lesion_rows",
    "match_lesions",
    "nan_to_none",
    "segmentation_report",
    "summarise_lesions",
    "summarise_structures",
    "summary_rows",
]

STRUCTURES = ("liver", "vessels", "lesions")
_FG = np.ones((3, 3, 3), bool)
_MEANS = ("dice", "hd95_mm", "nsd", "cldice", "b0_error", "b1_error", "b2_error")


def _labels(lesions: np.ndarray) -> np.ndarray:
    """Instance labels: integer labels as they are; a boolean mask split into 26-connected components."""
    arr = np.asarray(lesions)
    if arr.dtype == bool:
        return ndimage.label(arr, structure=_FG)[0]
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"lesion labels must be boolean or integer, got {arr.dtype}")
    return arr


def match_lesions(
    pred_lesion_mask: np.ndarray, ref_labels: np.ndarray, spacing_mm: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Apply the module's matching rule.

    Returns ``(assigned, components, false_positives)``: ``assigned`` holds the reference lesion's label on every
    predicted voxel that belongs to it (0 elsewhere); ``components`` the predicted components' labels
    (26-connected); ``false_positives`` the component labels that overlap no reference lesion.
    """
    pred = np.asarray(pred_lesion_mask, bool)
    ref = _labels(ref_labels)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    comps, _ = ndimage.label(pred, structure=_FG)
    assigned = np.zeros(ref.shape, dtype=np.int32)
    false_positives: list[int] = []
    for k, box in enumerate(ndimage.find_objects(comps), start=1):
        if box is None:
            continue
        comp = comps[box] == k
        hit = np.unique(ref[box][comp])
        hit = hit[hit > 0]
        if hit.size == 0:
            false_positives.append(k)
        elif hit.size == 1:
            assigned[box][comp] = int(hit[0])
        else:  # merged: each voxel to the nearest overlapping lesion, in the joint box of the component and them
            joint = _joint_box([box, *[_bbox(ref == h) for h in hit]])
            sub = comps[joint] == k
            dist = np.stack(
                [ndimage.distance_transform_edt(ref[joint] != h, sampling=list(spacing_mm)) for h in hit], axis=0
            )
            assigned[joint][sub] = hit[np.argmin(dist, axis=0)][sub]
    return assigned, comps, false_positives


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    return tuple(slice(int(a), int(b) + 1) for a, b in zip(idx.min(axis=0), idx.max(axis=0), strict=True))


def _joint_box(boxes: Sequence[tuple[slice, ...]], margin: int = 0, shape: Sequence[int] | None = None) -> tuple:
    lo = [min(b[d].start for b in boxes) - margin for d in range(3)]
    hi = [max(b[d].stop for b in boxes) + margin for d in range(3)]
    if shape is not None:
        lo = [max(v, 0) for v in lo]
        hi = [min(v, s) for v, s in zip(hi, shape, strict=True)]
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def lesion_rows(
    pred_lesion_mask: np.ndarray,
    ref_labels: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    bins: Sequence[float] = (10, 30),
    ref_diameters_mm: Mapping[int, float] | None = None,
    tolerance_mm: float = NSD_TOLERANCE_MM,
    topology: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per reference lesion one row (label, diameter, stratum, detected, every metric) and per false-positive
    component one row (diameter, stratum, voxels). ``ref_diameters_mm`` maps a label to its diameter."""
    pred = np.asarray(pred_lesion_mask, bool)
    ref = _labels(ref_labels)
    assigned, comps, fps = match_lesions(pred, ref, spacing_mm)
    ref_boxes = ndimage.find_objects(ref)
    got_boxes = ndimage.find_objects(assigned)
    rows = []
    for label, rbox in enumerate(ref_boxes, start=1):
        if rbox is None:
            continue
        boxes = [rbox] + ([got_boxes[label - 1]] if label <= len(got_boxes) and got_boxes[label - 1] else [])
        box = _joint_box(boxes, margin=2, shape=ref.shape)
        r = ref[box] == label
        p = assigned[box] == label
        diameter = (
            float(ref_diameters_mm[label])
            if ref_diameters_mm is not None and label in ref_diameters_mm
            else max_axial_diameter_mm(r, spacing_mm)
        )
        row: dict[str, Any] = {
            "lesion": label,
            "diameter_mm": round(diameter, 2),
            "stratum": size_stratum(max(diameter, 1e-3), bins),
            "detected": bool((p & r).any()),
        }
        row.update(structure_metrics(p, r, spacing_mm, tolerance_mm, topology=topology))
        rows.append(row)
    comp_boxes = ndimage.find_objects(comps)
    fp_rows = []
    for k in fps:
        m = comps[comp_boxes[k - 1]] == k
        d = max_axial_diameter_mm(m, spacing_mm)
        fp_rows.append(
            {"diameter_mm": round(d, 2), "stratum": size_stratum(max(d, 1e-3), bins), "voxels": int(m.sum())}
        )
    return rows, fp_rows


def evaluate_case(
    pred: Mapping[str, np.ndarray | None],
    ref: Mapping[str, np.ndarray | None],
    spacing_mm: Sequence[float],
    *,
    bins: Sequence[float] = (10, 30),
    ref_diameters_mm: Mapping[int, float] | None = None,
    tolerance_mm: float = NSD_TOLERANCE_MM,
    topology: bool = True,
) -> dict[str, Any]:
    """One case: whole-structure metrics for each of :data:`STRUCTURES` present in both ``pred`` and ``ref``
    (``lesions``: all lesions together), plus the lesion and false-positive rows.

    ``pred``: boolean masks by structure (``liver``, ``vessels``, ``lesions``). ``ref``: the same, with
    ``lesions`` as instance labels (or a boolean mask, split into components). A structure missing on either
    side is listed under ``skipped`` with the side that lacks it.
    """
    out: dict[str, Any] = {"structures": {}, "skipped": {}, "lesions": [], "false_positives": []}
    for name in STRUCTURES:
        p, r = pred.get(name), ref.get(name)
        if p is None or r is None:
            if p is not None or r is not None:
                out["skipped"][name] = "no prediction" if p is None else "no reference"
            continue
        out["structures"][name] = structure_metrics(
            np.asarray(p, bool), np.asarray(r) > 0, spacing_mm, tolerance_mm, topology=topology
        )
    p_les, r_les = pred.get("lesions"), ref.get("lesions")
    if p_les is not None and r_les is not None:
        out["lesions"], out["false_positives"] = lesion_rows(
            p_les,
            r_les,
            spacing_mm,
            bins=bins,
            ref_diameters_mm=ref_diameters_mm,
            tolerance_mm=tolerance_mm,
            topology=topology,
        )
    return out


def _finite(values: Sequence[Any]) -> np.ndarray:
    arr = np.array([v for v in values if v is not None], dtype=float)
    return arr[np.isfinite(arr)]


def _stats(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _MEANS:
        vals = _finite([r.get(key) for r in rows])
        if vals.size:
            out[f"{key}_mean"] = float(vals.mean())
            out[f"{key}_median"] = float(np.median(vals))
    return out


def summarise_structures(cases: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per structure: the number of cases and mean/median of every metric over them (finite values only)."""
    out = {}
    for name in STRUCTURES:
        rows = [c["structures"][name] for c in cases if name in c["structures"]]
        if rows:
            out[name] = {"n_cases": len(rows), **_stats(rows)}
    return out


def summarise_lesions(
    cases: Sequence[Mapping[str, Any]], bins: Sequence[float] = (10, 30)
) -> dict[str, dict[str, Any]]:
    """Per stratum (and ``"all"``): reference lesions, detection rate, false-positive components, and mean /
    median of every metric over all reference lesions (HD95: over detected lesions, as it is ``inf`` when missed).
    """
    lesions = [row for c in cases for row in c["lesions"]]
    fps = [row for c in cases for row in c["false_positives"]]
    out: dict[str, dict[str, Any]] = {}
    for label in [*stratum_labels(bins), "all"]:
        sel = [r for r in lesions if label == "all" or r["stratum"] == label]
        n_fp = sum(1 for r in fps if label == "all" or r["stratum"] == label)
        if not sel:
            out[label] = {"n": 0, "false_positives": n_fp}
            continue
        stats = _stats(sel)
        hd = _finite([r["hd95_mm"] for r in sel if r["detected"]])
        for k in ("hd95_mm_mean", "hd95_mm_median"):
            stats.pop(k, None)
        if hd.size:
            stats["hd95_mm_mean"], stats["hd95_mm_median"] = float(hd.mean()), float(np.median(hd))
        out[label] = {
            "n": len(sel),
            "detected": sum(bool(r["detected"]) for r in sel),
            "detection_rate": float(np.mean([bool(r["detected"]) for r in sel])),
            "false_positives": n_fp,
            **stats,
        }
    return out


def segmentation_report(
    cases: Mapping[str, Mapping[str, Any]],
    *,
    bins: Sequence[float] = (10, 30),
    tolerance_mm: float = NSD_TOLERANCE_MM,
) -> dict[str, Any]:
    """The plain dict the command writes as JSON and the platform's report can show: settings, per-structure
    and per-stratum summaries, and every case's rows (keyed by the case's name, e.g. the patient pseudonym)."""
    values = list(cases.values())
    return {
        "nsd_tolerance_mm": float(tolerance_mm),
        "size_bins_mm": [float(b) for b in bins],
        "n_cases": len(values),
        "matching_rule": (
            "predicted 26-connected components; a component overlapping one reference lesion is assigned to it, "
            "one overlapping several is split by nearest reference lesion, one overlapping none is a false "
            "positive; a reference lesion is detected when any predicted voxel overlaps it"
        ),
        "structures": summarise_structures(values),
        "lesions_by_stratum": summarise_lesions(values, bins),
        "cases": {name: dict(case) for name, case in cases.items()},
    }


def _cell(value: Any, digits: int) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def format_table(report: Mapping[str, Any]) -> str:
    """The report as a plain-text table: structures, then lesions by stratum. Dice, NSD, clDice and Betti errors
    are means, HD95 the median of finite values (a missed lesion's is infinite); ``-`` where there is none."""
    names = ("Dice", "HD95 mm", "NSD", "clDice", "b0 err", "b1 err", "b2 err")
    head = f"{'':10} {'n':>4} " + " ".join(f"{n:>{8 if n == 'HD95 mm' else 6}}" for n in names)

    def cells(row: Mapping[str, Any]) -> str:
        return " ".join(
            [
                f"{_cell(row.get('dice_mean'), 3):>6}",
                f"{_cell(row.get('hd95_mm_median'), 1):>8}",
                f"{_cell(row.get('nsd_mean'), 3):>6}",
                f"{_cell(row.get('cldice_mean'), 3):>6}",
                *(f"{_cell(row.get(f'b{k}_error_mean'), 2):>6}" for k in range(3)),
            ]
        )

    lines = [
        f"Segmentation: {report['n_cases']} series, NSD at {report['nsd_tolerance_mm']:g} mm "
        "(means; HD95: median of finite values)",
        head,
    ]
    for name, row in report["structures"].items():
        lines.append(f"{name:10} {row['n_cases']:>4} {cells(row)}")
    lines += ["Lesions by size stratum (reference diameter, mm; matched by overlap)", f"{head}  detected  FP"]
    for name, row in report["lesions_by_stratum"].items():
        if row["n"]:
            lines.append(f"{name:10} {row['n']:>4} {cells(row)}  {row['detected']:>8}  {row['false_positives']:>2}")
        else:
            lines.append(f"{name:10} {0:>4} {'':62}  {'':>8}  {row['false_positives']:>2}")
    return "\n".join(lines)


def nan_to_none(value: Any) -> Any:
    """A copy with every non-finite float replaced by ``None`` (JSON has no NaN or infinity)."""
    if isinstance(value, Mapping):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nan_to_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _quartiles(values: Sequence[Any]) -> dict[str, Any]:
    vals = _finite(values)
    if not vals.size:
        return {"n": 0}
    q1, median, q3 = np.percentile(vals, [25, 50, 75])
    return {"n": int(vals.size), "median": float(median), "q1": float(q1), "q3": float(q3), "mean": float(vals.mean())}


def summary_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The report as table rows for the platform's report: one per structure (over series) and one per lesion size
    stratum and ``all`` (over reference lesions), each metric with its median, quartiles, mean and n of finite
    values. A lesion stratum's HD95 is over detected lesions (a missed lesion's is infinite); a structure's over
    series where it is finite."""
    cases = list(report["cases"].values())
    rows: list[dict[str, Any]] = []
    for name in STRUCTURES:
        found = [c["structures"][name] for c in cases if name in c["structures"]]
        if found:
            rows.append(
                {
                    "kind": "structure",
                    "name": name,
                    "n": len(found),
                    **{key: _quartiles([r.get(key) for r in found]) for key in _MEANS},
                }
            )
    lesions = [row for c in cases for row in c["lesions"]]
    fps = [row for c in cases for row in c["false_positives"]]
    for label in [*stratum_labels(report["size_bins_mm"]), "all"]:
        sel = [r for r in lesions if label == "all" or r["stratum"] == label]
        row: dict[str, Any] = {
            "kind": "stratum",
            "name": label,
            "n": len(sel),
            "detected": sum(bool(r["detected"]) for r in sel),
            "false_positives": sum(1 for r in fps if label == "all" or r["stratum"] == label),
        }
        for key in _MEANS:
            row[key] = _quartiles([r.get(key) for r in sel if key != "hd95_mm" or r["detected"]])
        rows.append(row)
    return rows
