"""Reference masks imported with the cases (manifest column ``reference_mask``), for the segmentation evaluation.

A row may name one file, relative to the manifest's folder like its series: a NIfTI labelmap (``.nii`` or
``.nii.gz``: 1 liver, 2 lesion, 3 vessel) or a DICOM SEG (``.dcm``: segments classed by label, see
:func:`inference.pipeline.reference_masks.read_seg_masks`), drawn on the row's primary series. Every row of one
primary series names the same file (or none at all): the mask belongs to the series, as the prediction does.

The file is read onto the series' voxel grid at import (no resampling: a grid that does not coincide is a row
error) and stored as a ``.npz`` of arrays only (``liver_mask``, ``lesion_labels``, ``vessel_mask``), never as the
uploaded bytes: a NIfTI header's free text and a SEG's patient module would carry identifying data past the
de-identification of the series. The stored name is a generated key next to the import's series; what is stored
is hashed, and the uploaded file's hash and format are kept with it (``ImageSeries.reference_mask_info``).

Hostile input: the path obeys the series paths' rules (relative, inside the manifest's folder after resolving
links, bounded length, no control characters), the file is bounded in bytes (:data:`MAX_BYTES`) and, before its
voxels are decompressed, in voxels (the header's shape against the series'), so a gzip or SEG bomb is refused by
its header.
"""

from __future__ import annotations

import hashlib
import io
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from imaging.headers import SeriesInfo

COLUMN = "reference_mask"
SUFFIXES = (".nii.gz", ".nii", ".dcm")
FORMATS = {".nii.gz": "NIfTI", ".nii": "NIfTI", ".dcm": "DICOM SEG"}
MAX_BYTES = 256 * 1024 * 1024  # a 512 x 512 x 1000 uint8 labelmap uncompressed is 250 MiB
PATH_MAX = 1024
NAME_MAX_BYTES = 255
# Voxels a mask file may hold, as a multiple of its series' voxels (a SEG has one frame per slice and segment).
MAX_VOXELS_PER_SERIES_VOXEL = 8


def show(value: str, limit: int = 40) -> str:
    """``repr`` of a user's value cut short (as ``manifest.show``; the manifest imports this module)."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


class ReferenceMaskProblem(ValueError):
    """Why a reference mask cannot be imported (the message names the file's manifest path, never a local one)."""


def mask_path(root: Path, text: str) -> tuple[Path | None, str]:  # noqa: C901
    """The resolved file ``text`` names relative to ``root`` (the manifest's folder), or None and the reason."""
    expected = f"expected a {', '.join(SUFFIXES)} file relative to the manifest's folder"
    if len(text) > PATH_MAX:
        return None, f"{show(text)} is longer than {PATH_MAX} characters; {expected}"
    odd = next((c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if odd is not None:
        return None, f"{show(text)} contains the control character U+{ord(odd):04X}; {expected}"
    if any(len(part.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES for part in Path(text).parts):
        return None, f"{show(text)} has a name longer than {NAME_MAX_BYTES} bytes; {expected}"
    if not text.lower().endswith(SUFFIXES):
        return None, f"{show(text)} is not a NIfTI or DICOM SEG file name; {expected}"
    if Path(text).is_absolute():
        return None, f"{show(text)} must be a relative path inside the manifest's folder"
    try:
        resolved = (root / text).resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        return None, f"{show(text)} cannot be resolved ({exc}); {expected}"
    if root not in resolved.parents:  # also a symbolic link that points outside
        return None, f"{show(text)} must be a relative path inside the manifest's folder"
    try:
        if not resolved.is_file():
            return None, f"{show(text)} is not a file; {expected}"
        size = resolved.stat().st_size
    except OSError as exc:
        return None, f"{show(text)} cannot be read ({exc.strerror or exc})"
    if size > MAX_BYTES:
        return None, f"{show(text)} is {size} bytes, more than the limit of {MAX_BYTES} ({MAX_BYTES / 2**20:g} MiB)"
    return resolved, ""


def file_format(path: Path) -> str:
    return next(FORMATS[s] for s in SUFFIXES if path.name.lower().endswith(s))


def series_grid(folder: Path, info: SeriesInfo) -> Any:
    """The voxel grid of a series folder (its first slice's header and the checked slice positions), as
    ``inference.evaluation.series_grid`` builds it for a stored series."""
    from inference.pipeline.reference_masks import SeriesGrid, series_affine

    ds = pydicom.dcmread(folder / info.files[0], stop_before_pixels=True)
    pos = info.positions_mm
    dz = (pos[-1] - pos[0]) / (len(pos) - 1) if info.n_slices > 1 else float(ds.get("SliceThickness") or 1.0)
    affine = series_affine(ds.ImageOrientationPatient, ds.ImagePositionPatient, ds.PixelSpacing, dz)
    return SeriesGrid((info.n_slices, info.rows, info.columns), affine)


def _check_voxels(path: Path, kind: str, grid: Any) -> None:
    """Refuse a file whose header promises far more voxels than the series has, before decompressing it."""
    limit = MAX_VOXELS_PER_SERIES_VOXEL * int(np.prod(grid.shape))
    if kind == "NIfTI":
        import nibabel as nib

        try:
            shape = tuple(int(n) for n in nib.load(str(path)).shape)  # reads the header only
        except Exception as exc:  # nibabel raises several types for broken files
            raise ReferenceMaskProblem(f"not a readable NIfTI file ({exc})") from exc
        n = int(np.prod(shape, dtype=np.int64))
    else:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # pydicom raises several types for broken files
            raise ReferenceMaskProblem(f"not a readable DICOM file ({exc})") from exc
        if str(ds.get("Modality", "")) != "SEG":
            raise ReferenceMaskProblem(f"a DICOM file of modality {str(ds.get('Modality', ''))!r}, expected SEG")
        n = int(ds.get("NumberOfFrames") or 1) * int(ds.get("Rows") or 0) * int(ds.get("Columns") or 0)
    if n > limit:
        raise ReferenceMaskProblem(f"its header declares {n} voxels, more than {limit} for a series of {grid.shape}")


def load_reference(path: Path, folder: Path, info: SeriesInfo) -> dict[str, np.ndarray]:
    """The masks of ``path`` on the grid of the series in ``folder``: liver (bool), lesions (instance labels),
    vessels (bool), whichever it holds. Raises :class:`ReferenceMaskProblem`."""
    from inference.pipeline import reference_masks as rm

    grid = series_grid(folder, info)
    kind = file_format(path)
    _check_voxels(path, kind, grid)
    try:
        if kind == "NIfTI":
            masks = rm.read_nifti_labelmap(path, grid)
        else:
            masks = rm.read_seg_masks(path, grid)
    except rm.ReferenceMaskError as exc:
        # The library names the local (staging) path; the manifest's error names the row and column instead.
        raise ReferenceMaskProblem(str(exc).replace(f"{path}: ", "").replace(str(path), path.name)) from exc
    if not any(np.any(m) for m in masks.values()):
        raise ReferenceMaskProblem("the mask is empty (no liver, lesion or vessel voxel on the series)")
    return masks


def to_npz(masks: dict[str, np.ndarray]) -> bytes:
    """The stored form: arrays only, in the ``.npz`` layout ``inference.pipeline.reference_masks`` reads."""
    keys = {"liver": "liver_mask", "lesions": "lesion_labels", "vessels": "vessel_mask"}
    arrays = {}
    for kind, key in keys.items():
        if kind in masks:
            arr = np.asarray(masks[kind])
            arrays[key] = arr.astype(np.int32) if kind == "lesions" else arr.astype(bool)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()
