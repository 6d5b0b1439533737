"""Reference (or external predicted) masks of one patient, read onto a series' voxel grid: .npz, NIfTI, DICOM SEG.

Structures: ``liver`` (bool), ``lesions`` (instance labels, 0 background) and ``vessels`` (bool), each
optional. Arrays come back ``[z, y, x]`` in the series' slice order (see :mod:`imaging.series`).

Where :func:`load_masks` looks for patient ``P`` in a folder (the first that exists wins):

1. ``P.npz``: ``liver_mask``, ``lesion_labels`` and optionally ``vessel_mask``, already on the series grid
   (slices in series order), as ``fixtures.phantom`` writes them.
2. ``P.nii.gz`` / ``P.nii``: one labelmap, 1 liver, 2 lesion, 3 vessel (LiTS's 1/2 plus vessels); the liver
   is values 1 and 2 (lesions lie in the liver), lesion instances are the 26-connected components of value 2.
3. ``P.dcm`` / ``P.seg.dcm``: a DICOM SEG (read with highdicom); see :func:`read_seg_masks` for its segments.
4. a folder ``P/`` with ``liver.nii[.gz]``, ``lesions.nii[.gz]`` (instance labels, or binary), ``vessels.nii[.gz]``
   (any subset; TotalSegmentator's names ``liver_lesions`` and ``liver_vessels`` are read too, so its output
   folder for the patient serves as it is), or with one DICOM SEG ``*.dcm``.

No resampling: NIfTI and SEG grids must coincide with the series' voxel grid, in any axis order or direction
(a NIfTI written by TotalSegmentator or dcm2niix from this series, a SEG drawn on it), and may cover part of it
(a SEG without its empty frames). Matching is by geometry (affines), not by UIDs, because case import remaps the
series' UIDs while keeping positions; a grid that does not match within 0.05 voxel is refused with both
geometries in the message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "ReferenceMaskError",
    "SeriesGrid",
    "align_to_grid",
    "load_masks",
    "read_nifti",
    "read_nifti_labelmap",
    "read_seg_masks",
    "series_affine",
]

_FG = np.ones((3, 3, 3), bool)
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
LABELMAP_VALUES = {"liver": (1, 2), "lesions": (2,), "vessels": (3,)}
#: File names per structure in a patient's folder: ours, then TotalSegmentator's output names (``total``,
#: ``liver_lesions`` and ``liver_vessels`` tasks), so its output folder can be used as it is.
_FILE_NAMES = {"liver": ("liver",), "lesions": ("lesions", "liver_lesions"), "vessels": ("vessels", "liver_vessels")}


class ReferenceMaskError(ValueError):
    """A mask file that cannot be used; the message names it and the problem."""


@dataclass(frozen=True)
class SeriesGrid:
    """A series' voxel grid: ``shape`` ``(z, y, x)`` and ``affine`` ``(k, j, i, 1) -> LPS mm``."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        n = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(n[0]), float(n[1]), float(n[2]))


def series_affine(
    orientation: Sequence[float], first_position: Sequence[float], pixel_spacing: Sequence[float], dz: float
) -> np.ndarray:
    """``(k, j, i, 1) -> LPS`` from the first slice's ImageOrientationPatient, ImagePositionPatient,
    PixelSpacing and the slice step ``dz`` (as :func:`imaging.series.scan_series` builds it)."""
    iop = np.asarray(orientation, float)
    row_dir, col_dir = iop[:3], iop[3:]
    affine = np.eye(4)
    affine[:3, 0] = np.cross(row_dir, col_dir) * float(dz)
    affine[:3, 1] = col_dir * float(pixel_spacing[0])
    affine[:3, 2] = row_dir * float(pixel_spacing[1])
    affine[:3, 3] = np.asarray(first_position, float)
    return affine


def align_to_grid(
    array: np.ndarray, affine: np.ndarray, grid: SeriesGrid, *, what: str = "mask", atol_voxel: float = 0.05
) -> np.ndarray:
    """``array`` (3-D, its index -> LPS ``affine``) placed on ``grid`` without resampling.

    The index map from ``array`` to the grid must be a signed axis permutation plus an integer offset (within
    ``atol_voxel``). Voxels outside the array are 0; nonzero voxels falling outside the grid are refused.
    """
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise ReferenceMaskError(f"{what}: expected a 3-D array, got shape {arr.shape}")
    m = np.linalg.inv(grid.affine) @ np.asarray(affine, float)  # array index -> grid index
    rot, offset = m[:3, :3], m[:3, 3]
    perm = np.argmax(np.abs(rot), axis=0)  # grid axis of each array axis
    signs = np.sign(rot[perm, np.arange(3)])
    expected = np.zeros((3, 3))
    expected[perm, np.arange(3)] = signs
    if (
        sorted(perm.tolist()) != [0, 1, 2]
        or np.abs(rot - expected).max() > atol_voxel
        or np.abs(offset - np.round(offset)).max() > atol_voxel
    ):
        raise ReferenceMaskError(
            f"{what}: its voxel grid does not coincide with the series' (no resampling is done); "
            f"index map to the series' (k, j, i) is\n{np.round(m, 4)}\nmask affine\n{np.round(affine, 4)}\n"
            f"series affine\n{np.round(grid.affine, 4)}"
        )
    # reorder the array's axes to grid order and flip the reversed ones; then place it at its offset
    order = [int(np.flatnonzero(perm == g)[0]) for g in range(3)]
    data = np.transpose(arr, order)
    start = []
    for g, a in enumerate(order):  # grid axis g holds array axis a: grid_g = signs[a] * index_a + offset[g]
        corner = int(np.round(offset[g]))
        if signs[a] < 0:
            data = np.flip(data, axis=g)
            corner -= data.shape[g] - 1
        start.append(corner)
    out = np.zeros(grid.shape, dtype=data.dtype)
    src, dst = [], []
    for g in range(3):
        lo, hi = start[g], start[g] + data.shape[g]
        c_lo, c_hi = max(lo, 0), min(hi, grid.shape[g])
        src.append(slice(c_lo - lo, max(c_hi - lo, c_lo - lo)))
        dst.append(slice(c_lo, max(c_hi, c_lo)))
    inside = data[tuple(src)]
    if int(np.count_nonzero(inside)) != int(np.count_nonzero(data)):
        raise ReferenceMaskError(f"{what}: part of the mask lies outside the series' {grid.shape} voxels")
    out[tuple(dst)] = inside
    return out


def read_nifti(path: Path, grid: SeriesGrid) -> np.ndarray:
    """A NIfTI volume (any orientation; RAS affine as NIfTI stores it) on ``grid``."""
    import nibabel as nib

    try:
        img: Any = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as exc:  # nibabel raises several types for broken files
        raise ReferenceMaskError(f"{path}: not a readable NIfTI file ({exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if not np.issubdtype(data.dtype, np.integer) and not np.issubdtype(data.dtype, np.bool_):
        if not np.all(np.isin(np.unique(data), np.arange(256))):
            raise ReferenceMaskError(f"{path}: mask values must be integers (labels), got {data.dtype}")
        data = data.astype(np.uint8)
    return align_to_grid(data, _LPS_FROM_RAS @ img.affine, grid, what=str(path))


_LESION = re.compile(r"lesion|tumou?r|metasta|neoplasm|mass|nodule|cyst|h(a)?emangioma|cancer|carcinoma", re.I)
_VESSEL = re.compile(r"vessel|vein|arter|vascul|portal|cava", re.I)
_LIVER = re.compile(r"liver|hepat", re.I)


def _segment_kind(label: str, property_meaning: str) -> str | None:
    text = f"{label} {property_meaning}"
    if _LESION.search(text):
        return "lesions"
    if _VESSEL.search(text):
        return "vessels"
    if _LIVER.search(text):
        return "liver"
    return None


def _segments_by_kind(seg: Any) -> dict[str, list[int]]:
    kinds: dict[str, list[int]] = {"liver": [], "lesions": [], "vessels": []}
    for n in seg.get_segment_numbers():
        desc = seg.get_segment_description(n)
        kind = _segment_kind(str(desc.segment_label), str(desc.segmented_property_type.meaning))
        if kind is not None:
            kinds[kind].append(int(n))
    return kinds


def read_seg_masks(path: Path, grid: SeriesGrid) -> dict[str, np.ndarray]:
    """Liver, lesions and vessels from a DICOM SEG (BINARY or LABELMAP) on ``grid``.

    Each segment is classed by its label and segmented property type (checked in this order): lesion, tumour,
    metastasis, neoplasm, mass, nodule, cyst, hemangioma -> lesions; vessel, vein, artery, portal, cava ->
    vessels; liver, hepatic -> liver; others are ignored. Several lesion segments: one lesion instance each (the
    SEG's grouping); one lesion segment: its 26-connected components are the instances.
    """
    import highdicom as hd

    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:  # pydicom/highdicom raise several types
        raise ReferenceMaskError(f"{path}: not a readable DICOM SEG ({exc})") from exc
    kinds = _segments_by_kind(seg)
    numbers = sorted({n for ns in kinds.values() for n in ns})
    if not numbers:
        raise ReferenceMaskError(f"{path}: no liver, lesion or vessel segment (segment labels and property types)")
    try:
        vol = seg.get_volume(segment_numbers=numbers, combine_segments=False, allow_missing_positions=True)
    except (ValueError, RuntimeError) as exc:
        raise ReferenceMaskError(f"{path}: its frames do not form a regular volume ({exc})") from exc
    if vol is None:
        raise ReferenceMaskError(f"{path}: its frames do not form a regular volume")
    array = np.asarray(vol.array)
    out: dict[str, np.ndarray] = {}
    channel = {n: i for i, n in enumerate(numbers)}
    for kind in ("liver", "vessels"):
        if kinds[kind]:
            m = np.any([array[..., channel[n]] > 0 for n in kinds[kind]], axis=0)
            out[kind] = align_to_grid(m, vol.affine, grid, what=f"{path} ({kind})")
    if kinds["lesions"]:
        labels = np.zeros(array.shape[:3], np.int32)
        if len(kinds["lesions"]) == 1:
            labels = ndimage.label(array[..., channel[kinds["lesions"][0]]] > 0, structure=_FG)[0]
        else:
            for i, n in enumerate(kinds["lesions"], start=1):
                labels[array[..., channel[n]] > 0] = i
        out["lesions"] = align_to_grid(labels, vol.affine, grid, what=f"{path} (lesions)")
    return out


def _from_labelmap(labelmap: np.ndarray) -> dict[str, np.ndarray]:
    out = {
        "liver": np.isin(labelmap, LABELMAP_VALUES["liver"]),
        "lesions": ndimage.label(np.isin(labelmap, LABELMAP_VALUES["lesions"]), structure=_FG)[0],
    }
    vessels = np.isin(labelmap, LABELMAP_VALUES["vessels"])
    if vessels.any():
        out["vessels"] = vessels
    return out


def read_nifti_labelmap(path: Path, grid: SeriesGrid) -> dict[str, np.ndarray]:
    """A NIfTI labelmap (1 liver, 2 lesion, 3 vessel) as masks on ``grid``: the single-file layout of
    :func:`load_masks`, for a file named elsewhere (e.g. a manifest's ``reference_mask``)."""
    return _from_labelmap(read_nifti(path, grid))


def _first(folder: Path, names: Sequence[str]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def load_masks(folder: Path, name: str, grid: SeriesGrid) -> dict[str, np.ndarray] | None:
    """The masks of ``name`` (a patient pseudonym, checked safe by the caller) under ``folder`` on ``grid``,
    or None when there are none; see the module docstring for the layouts."""
    folder = Path(folder)
    npz = folder / f"{name}.npz"
    if npz.is_file():
        return _read_npz(npz, grid)
    labelmap = _first(folder, [f"{name}.nii.gz", f"{name}.nii"])
    if labelmap is not None:
        return _from_labelmap(read_nifti(labelmap, grid))
    seg = _first(folder, [f"{name}.dcm", f"{name}.seg.dcm"])
    if seg is not None:
        return read_seg_masks(seg, grid)
    sub = folder / name
    if not sub.is_dir():
        return None
    out: dict[str, np.ndarray] = {}
    for kind, names in _FILE_NAMES.items():
        path = _first(sub, [f"{n}{ext}" for n in names for ext in (".nii.gz", ".nii")])
        if path is not None:
            data = read_nifti(path, grid)
            if kind == "lesions":
                out[kind] = ndimage.label(data > 0, structure=_FG)[0] if data.max(initial=0) <= 1 else data
            else:
                out[kind] = data > 0
    if out:
        return out
    segs = sorted(sub.glob("*.dcm"))
    if len(segs) > 1:
        raise ReferenceMaskError(f"{sub}: {len(segs)} DICOM files; expected one SEG")
    return read_seg_masks(segs[0], grid) if segs else None


def _read_npz(path: Path, grid: SeriesGrid) -> dict[str, np.ndarray]:
    try:
        data = np.load(path)
    except (OSError, ValueError) as exc:
        raise ReferenceMaskError(f"{path}: not a readable .npz file ({exc})") from exc
    keys = {"liver_mask": "liver", "lesion_labels": "lesions", "vessel_mask": "vessels"}
    out = {}
    for key, kind in keys.items():
        if key in data.files:
            arr = np.asarray(data[key])
            if arr.shape != grid.shape:
                raise ReferenceMaskError(f"{path}: {key} has shape {arr.shape}, the series {grid.shape}")
            out[kind] = arr if kind == "lesions" else arr.astype(bool)
    if not out:
        raise ReferenceMaskError(f"{path}: none of {', '.join(keys)} in it")
    return out
