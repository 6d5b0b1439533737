"""Lesion instances from a lesion mask: size, volume, centroid, and matching to manifest targets.

No size stratum here: a study's bins are its own business (``readerstudy.analysis.strata``), derived from the
diameter where shown or analysed, so that a change of bins never re-runs a model.

Diameter convention (same as :func:`fixtures.phantom.max_axial_diameter_mm` ``"centres"``): the largest
distance between the centres of two lesion pixels in one image plane, maximised over the slices. A reader's
caliper (edge to edge) measures about one pixel more; :attr:`Lesion.diameter_extent_mm` gives that value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

__all__ = ["Lesion", "MatchResult", "find_lesions", "match_targets", "max_axial_diameter_mm"]

_HULL_ABOVE = 400  # border points above which the diameter is taken over the convex hull's vertices


@dataclass(frozen=True)
class Lesion:
    """One connected lesion component.

    ``label`` is its value in the instance labelmap returned by :func:`find_lesions` (1 = largest).
    ``centroid_index`` is ``(k, j, i)`` (fractional voxels), ``centroid_lps_mm`` is LPS ``(x, y, z)``.
    """

    label: int
    n_voxels: int
    volume_ml: float
    diameter_mm: float
    diameter_extent_mm: float
    centroid_index: tuple[float, float, float]
    centroid_lps_mm: tuple[float, float, float]
    slices: tuple[int, int]  # first and last slice index (inclusive)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["centroid_index"] = list(self.centroid_index)
        out["centroid_lps_mm"] = list(self.centroid_lps_mm)
        out["slices"] = list(self.slices)
        return out


@dataclass
class MatchResult:
    """``matches``: ``(target index, lesion index, distance mm)``; the rest unmatched, both ways."""

    matches: list[tuple[int, int, float]] = field(default_factory=list)
    unmatched_targets: list[int] = field(default_factory=list)
    unmatched_lesions: list[int] = field(default_factory=list)

    def lesion_for(self, target: int) -> int | None:
        """The lesion index matched to ``target``, or None."""
        return next((le for t, le, _ in self.matches if t == target), None)


def _plane_diameter(mask2d: np.ndarray, sy: float, sx: float) -> float:
    border = mask2d & ~ndimage.binary_erosion(mask2d)
    jj, ii = np.nonzero(border)
    if jj.size < 2:
        return 0.0
    pts = np.stack([jj * sy, ii * sx], axis=1)
    if len(pts) > _HULL_ABOVE:
        try:
            pts = pts[ConvexHull(pts).vertices]
        except QhullError:  # collinear points: the full set is still small enough in practice
            pass
    return float(pdist(pts).max())


def max_axial_diameter_mm(mask: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Largest in-plane centre-to-centre distance of a boolean ``[z, y, x]`` mask over its slices (mm)."""
    m = np.asarray(mask, dtype=bool)
    sy, sx = float(spacing_mm[-2]), float(spacing_mm[-1])
    best = 0.0
    for k in np.flatnonzero(m.any(axis=(1, 2))):
        best = max(best, _plane_diameter(m[k], sy, sx))
    return best


def find_lesions(
    lesion_mask: np.ndarray,
    liver_mask: np.ndarray,
    spacing_mm: Sequence[float],
    affine: np.ndarray,
    *,
    liver_margin_mm: float = 3.0,
    min_volume_mm3: float = 20.0,
) -> tuple[list[Lesion], np.ndarray]:
    """Connected lesion components inside the liver (dilated by ``liver_margin_mm`` so rim lesions count).

    Args:
        lesion_mask, liver_mask: boolean ``[z, y, x]``.
        spacing_mm: ``(z, y, x)``.
        affine: ``(k, j, i, 1)`` -> LPS (see :class:`imaging.series.Volume`).
        min_volume_mm3: smaller components are dropped as noise (a 5 mm sphere is 65 mm^3).

    Returns:
        ``(lesions sorted by volume, largest first; int32 instance labelmap with 1..n in that order)``.
    """
    lesion_mask = np.asarray(lesion_mask, dtype=bool)
    liver_mask = np.asarray(liver_mask, dtype=bool)
    if lesion_mask.shape != liver_mask.shape:
        raise ValueError(f"lesion mask {lesion_mask.shape} and liver mask {liver_mask.shape} differ")
    sz, sy, sx = (float(s) for s in spacing_mm)
    if liver_margin_mm > 0 and liver_mask.any():
        near_liver = ndimage.distance_transform_edt(~liver_mask, sampling=(sz, sy, sx)) <= liver_margin_mm
    else:
        near_liver = liver_mask
    labels, _ = ndimage.label(lesion_mask & near_liver, structure=np.ones((3, 3, 3), dtype=bool))
    voxel_mm3 = sz * sy * sx
    found: list[tuple[int, np.ndarray, tuple[slice, ...]]] = []
    objects = ndimage.find_objects(labels)
    for value, box in enumerate(objects, start=1):
        if box is None:
            continue
        comp = labels[box] == value
        if comp.sum() * voxel_mm3 < min_volume_mm3:
            continue
        found.append((value, comp, box))
    found.sort(key=lambda t: -int(t[1].sum()))
    out_labels = np.zeros(lesion_mask.shape, dtype=np.int32)
    lesions: list[Lesion] = []
    for new, (_value, comp, box) in enumerate(found, start=1):
        out_labels[box][comp] = new
        idx = np.argwhere(comp) + np.array([s.start for s in box])
        centroid = idx.mean(axis=0)
        lps = np.asarray(affine, dtype=float)[:3, :3] @ centroid + np.asarray(affine, dtype=float)[:3, 3]
        diameter = max_axial_diameter_mm(comp, (sz, sy, sx))
        n_vox = int(comp.sum())
        lesions.append(
            Lesion(
                label=new,
                n_voxels=n_vox,
                volume_ml=n_vox * voxel_mm3 / 1000.0,
                diameter_mm=round(diameter, 2),
                diameter_extent_mm=round(diameter + min(sy, sx), 2),
                centroid_index=(float(centroid[0]), float(centroid[1]), float(centroid[2])),
                centroid_lps_mm=(float(lps[0]), float(lps[1]), float(lps[2])),
                slices=(int(box[0].start), int(box[0].stop - 1)),
            )
        )
    return lesions, out_labels


def match_targets(
    lesions: Sequence[Lesion],
    targets_lps_mm: Sequence[Sequence[float]],
    tolerance_mm: float = 10.0,
) -> MatchResult:
    """Match manifest target centres to lesions by nearest centroid, one to one.

    A (target, lesion) pair is eligible when the centroid distance is at most ``tolerance_mm`` or at most half
    the lesion's diameter (a large lesion's marked centre may sit off its centroid). Eligible pairs are taken
    greedily by increasing distance, so each target and lesion is used once.
    """
    targets = np.asarray(targets_lps_mm, dtype=float).reshape(-1, 3)
    result = MatchResult()
    if len(lesions) == 0 or len(targets) == 0:
        result.unmatched_targets = list(range(len(targets)))
        result.unmatched_lesions = list(range(len(lesions)))
        return result
    cents = np.array([le.centroid_lps_mm for le in lesions], dtype=float)
    dist = np.linalg.norm(targets[:, None, :] - cents[None, :, :], axis=2)
    radius = np.array([max(tolerance_mm, le.diameter_mm / 2.0) for le in lesions])
    pairs = sorted(
        (float(dist[t, le]), t, le)
        for t in range(len(targets))
        for le in range(len(lesions))
        if dist[t, le] <= radius[le]
    )
    used_t: set[int] = set()
    used_l: set[int] = set()
    for d, t, le in pairs:
        if t in used_t or le in used_l:
            continue
        result.matches.append((t, le, d))
        used_t.add(t)
        used_l.add(le)
    result.matches.sort()
    result.unmatched_targets = [t for t in range(len(targets)) if t not in used_t]
    result.unmatched_lesions = [le for le in range(len(lesions)) if le not in used_l]
    return result
