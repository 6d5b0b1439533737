"""Read one CT series folder into a validated :class:`Volume` (pydicom 3; JPEG 2000 etc. through pylibjpeg).

(Slightly over 400 lines: scanning, geometry checks, UID repair and volume assembly are one reader's steps and
share its header type; split them only if one grows.)

Conventions:

* Arrays are ``[z, y, x]`` = ``[k, j, i]``: ``k`` the slice in the sorted order, ``j`` the image row, ``i`` the
  column. ``spacing_mm`` is ``(z, y, x)``.
* Patient coordinates are DICOM LPS ``(x, y, z)`` mm. :attr:`Volume.affine` maps a homogeneous array index
  ``(k, j, i, 1)`` to LPS ``(x, y, z, 1)`` (the order used by :mod:`fixtures.phantom`; NIfTI/ITK use
  ``(i, j, k)``: see :func:`Volume.ijk_affine`).
* Slices are sorted by their position along the slice normal (``row x column`` direction cosines), ascending,
  so for an axial head-first series ``k`` runs inferior -> superior. The file order, the ``InstanceNumber`` and
  the file names do not matter.

Blank UIDs (a real-world defect, see ``shared/data/totalseg_example``) are repaired deterministically by
:func:`repair_uids` and each repair is reported in :attr:`Volume.notes`; ``read_series(..., repair=False)``
rejects them instead.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import CTImageStorage

__all__ = [
    "DicomSeriesError",
    "SliceHeader",
    "Volume",
    "derived_uid",
    "list_dicom_files",
    "read_series",
    "repair_uids",
    "scan_series",
]

#: Slice positions may deviate from even spacing by this much (mm) or this fraction of the spacing.
SPACING_TOLERANCE_MM = 0.05
SPACING_TOLERANCE_REL = 0.01
_ORIENTATION_TOL = 1e-4
_PIXEL_SPACING_TOL_MM = 1e-3
_IGNORED_NAMES = {"DICOMDIR", "Thumbs.db"}


class DicomSeriesError(ValueError):
    """A series that cannot be used; the message names the folder or file and the problem."""


_UID_NAMESPACE = uuid.UUID("6f1d3a52-27a4-4c8e-9b52-1f1b2b0a7c11")  # this project's UUID namespace


def derived_uid(*parts: object) -> str:
    """A ``2.25.`` UID from a name-based UUID (RFC 4122 v5) of ``parts``: same parts, same UID (<= 44 chars).

    (pydicom's ``generate_uid(prefix=None, entropy_srcs=...)`` ignores the entropy and returns a random UUID.)
    """
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, '|'.join(str(p) for p in parts)).int}"


def _valid_uid(value: object) -> bool:
    text = str(value or "").strip()
    return (
        0 < len(text) <= 64
        and all(c.isdigit() or c == "." for c in text)
        and not text.startswith(".")
        and not text.endswith(".")
        and ".." not in text
    )


@dataclass
class SliceHeader:
    """One file of a series: its header (no pixel data read yet) and where it lies."""

    path: Path
    ds: Dataset
    position: float = 0.0  # along the slice normal, mm
    sha256: str = ""


@dataclass(frozen=True, eq=False)
class Volume:
    """A CT series as a voxel array with its geometry and provenance.

    Attributes:
        hu: Hounsfield units ``[z, y, x]``: ``int16`` when the rescale is exact in integers (slope 1, integer
            intercept, values in range), else ``float32``.
        spacing_mm: ``(z, y, x)``; z is the distance between sorted slice positions.
        affine: ``4x4`` LPS mm from ``(k, j, i, 1)``; see the module docstring.
        paths: the files in slice order.
        sop_instance_uids: in slice order (repaired ones included).
        series_instance_uid, study_instance_uid, frame_of_reference_uid, sop_class_uid: series-level UIDs.
        notes: human-readable repairs and warnings (empty when the series was clean).
        headers: the slices' datasets without pixel data, in slice order, with repaired UIDs (what a DICOM SEG
            references).
        file_sha256: SHA-256 of each file's bytes, in slice order.
    """

    hu: np.ndarray
    spacing_mm: tuple[float, float, float]
    affine: np.ndarray
    paths: tuple[Path, ...]
    sop_instance_uids: tuple[str, ...]
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    headers: tuple[Dataset, ...] = field(default_factory=tuple, repr=False)
    file_sha256: tuple[str, ...] = field(default_factory=tuple, repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (int(self.hu.shape[0]), int(self.hu.shape[1]), int(self.hu.shape[2]))

    def index_to_lps(self, index: Sequence[float] | np.ndarray) -> np.ndarray:
        """Voxel index ``(k, j, i)`` (``(..., 3)``, may be fractional) to LPS ``(x, y, z)`` mm."""
        idx = np.asarray(index, dtype=float)
        return idx @ self.affine[:3, :3].T + self.affine[:3, 3]

    def lps_to_index(self, xyz_mm: Sequence[float] | np.ndarray) -> np.ndarray:
        """LPS ``(x, y, z)`` mm (``(..., 3)``) to fractional voxel index ``(k, j, i)``."""
        p = np.asarray(xyz_mm, dtype=float)
        inv = np.linalg.inv(self.affine)
        return p @ inv[:3, :3].T + inv[:3, 3]

    def ijk_affine(self) -> np.ndarray:
        """The affine for index order ``(i, j, k)`` (columns swapped), still LPS."""
        out = self.affine.copy()
        out[:, [0, 2]] = out[:, [2, 0]]
        return out

    def ras_ijk_affine(self) -> np.ndarray:
        """NIfTI's convention: ``(i, j, k)`` to RAS mm (for an array transposed to ``[x, y, z]``)."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.ijk_affine()


def list_dicom_files(folder: Path) -> list[Path]:
    """Regular files directly in ``folder`` that may be DICOM (hidden files and DICOMDIR skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomSeriesError(f"{folder}: not a folder")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name not in _IGNORED_NAMES
    )
    if not files:
        raise DicomSeriesError(f"{folder}: no files")
    return files


def _read_header(path: Path) -> SliceHeader:
    try:
        data = path.read_bytes()
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise DicomSeriesError(f"{path}: not a readable DICOM file ({exc})") from exc
    return SliceHeader(path=path, ds=ds, sha256=hashlib.sha256(data).hexdigest())


def _floats(ds: Dataset, keyword: str, n: int, path: Path) -> np.ndarray:
    value = ds.get(keyword)
    try:
        arr = np.array([float(v) for v in value], dtype=float) if value is not None else np.array([])
    except (TypeError, ValueError):
        arr = np.array([])
    if arr.size != n or not np.all(np.isfinite(arr)):
        raise DicomSeriesError(f"{path}: {keyword} missing or malformed (expected {n} numbers, got {value!r})")
    return arr


def repair_uids(headers: list[SliceHeader], *, repair: bool = True) -> list[str]:  # noqa: C901
    """Fill blank SOP class/instance, series, study and frame-of-reference UIDs in place; return notes.

    Policy (deterministic, so re-reading gives the same UIDs):

    * SOPClassUID: the file meta's MediaStorageSOPClassUID when valid, else CT Image Storage when Modality is
      CT, else the series is rejected.
    * SOPInstanceUID: the file meta's MediaStorageSOPInstanceUID when valid and unique in the series, else a
      ``2.25.`` UID hashed from the file's SHA-256.
    * SeriesInstanceUID / StudyInstanceUID / FrameOfReferenceUID: hashed from the sorted SOP instance UIDs,
      so the same files always get the same series (a blank study UID therefore becomes a study of this one
      series). A UID present on some files and blank on others is rejected (the grouping is unknowable).

    With ``repair=False`` any blank UID raises :class:`DicomSeriesError` naming the files.
    """
    notes: list[str] = []

    def reject(what: str, paths: list[Path]) -> None:
        names = ", ".join(p.name for p in paths[:5]) + (" ..." if len(paths) > 5 else "")
        raise DicomSeriesError(f"{what} in {len(paths)} file(s): {names}")

    blank_class = [h for h in headers if not _valid_uid(h.ds.get("SOPClassUID"))]
    if blank_class:
        if not repair:
            reject("blank or invalid SOPClassUID", [h.path for h in blank_class])
        sources = set()
        for h in blank_class:
            meta_uid = getattr(getattr(h.ds, "file_meta", None), "MediaStorageSOPClassUID", None)
            if _valid_uid(meta_uid):
                h.ds.SOPClassUID = str(meta_uid)
                sources.add("the file meta's MediaStorageSOPClassUID")
            elif str(h.ds.get("Modality", "")).upper() == "CT":
                h.ds.SOPClassUID = CTImageStorage
                sources.add("CT Image Storage (Modality is CT)")
            else:
                reject("blank SOPClassUID and Modality is not CT (cannot infer the SOP class)", [h.path])
        notes.append(f"SOPClassUID blank in {len(blank_class)} file(s): set from {' / '.join(sorted(sources))}")

    blank_inst = [h for h in headers if not _valid_uid(h.ds.get("SOPInstanceUID"))]
    if blank_inst:
        if not repair:
            reject("blank or invalid SOPInstanceUID", [h.path for h in blank_inst])
        meta = [
            str(getattr(getattr(h.ds, "file_meta", None), "MediaStorageSOPInstanceUID", "") or "") for h in blank_inst
        ]
        present = {str(h.ds.SOPInstanceUID) for h in headers if h not in blank_inst}
        usable = all(_valid_uid(m) for m in meta) and len(set(meta)) == len(meta) and not (set(meta) & present)
        for h, m in zip(blank_inst, meta, strict=True):
            h.ds.SOPInstanceUID = m if usable else derived_uid("crlm-repair", "sop-instance", h.sha256)
        source = "the file meta's MediaStorageSOPInstanceUID" if usable else "a hash of each file's bytes (SHA-256)"
        notes.append(f"SOPInstanceUID blank in {len(blank_inst)} file(s): set from {source}")
    uids = [str(h.ds.SOPInstanceUID) for h in headers]
    dup = sorted({u for u in uids if uids.count(u) > 1})
    if dup:
        reject(f"duplicate SOPInstanceUID {dup[0]}", [h.path for h in headers if str(h.ds.SOPInstanceUID) == dup[0]])
    sorted_uids = "|".join(sorted(uids))
    for keyword, label in (
        ("SeriesInstanceUID", "series"),
        ("StudyInstanceUID", "study"),
        ("FrameOfReferenceUID", "frame-of-reference"),
    ):
        blank = [h for h in headers if not _valid_uid(h.ds.get(keyword))]
        if not blank:
            continue
        if len(blank) != len(headers):
            reject(f"{keyword} blank in some files but not others", [h.path for h in blank])
        if not repair:
            reject(f"blank or invalid {keyword}", [h.path for h in blank])
        uid = derived_uid("crlm-repair", label, sorted_uids)
        for h in headers:
            setattr(h.ds, keyword, uid)
        notes.append(f"{keyword} blank in all {len(headers)} files: set to {uid} (hash of the sorted SOPInstanceUIDs)")
    return notes


def scan_series(  # noqa: C901
    folder: Path,
    *,
    modalities: Sequence[str] = ("CT",),
    repair: bool = True,
    min_slices: int = 2,
) -> tuple[list[SliceHeader], np.ndarray, tuple[float, float, float], list[str]]:
    """Read headers, repair UIDs, validate one evenly spaced series and sort it along the slice normal.

    Returns:
        ``(headers in slice order, affine (k, j, i) -> LPS, spacing (z, y, x) mm, notes)``.

    Raises:
        DicomSeriesError: naming the file and the problem (not DICOM, other modality, several series,
            multi-frame, inconsistent orientation / size / pixel spacing, duplicate or uneven positions).
    """
    folder = Path(folder)
    headers = [_read_header(p) for p in list_dicom_files(folder)]
    if len(headers) < min_slices:
        raise DicomSeriesError(f"{folder}: {len(headers)} slice(s); a volume needs at least {min_slices}")
    for h in headers:
        modality = str(h.ds.get("Modality", "")).upper()
        if modality not in modalities:
            raise DicomSeriesError(
                f"{h.path}: Modality {modality or '(missing)'!r}, expected one of {tuple(modalities)}"
            )
        frames = int(h.ds.get("NumberOfFrames", 1) or 1)
        if frames != 1:
            raise DicomSeriesError(
                f"{h.path}: multi-frame image ({frames} frames); only single-frame slices are supported"
            )
        if int(h.ds.get("SamplesPerPixel", 1)) != 1:
            raise DicomSeriesError(f"{h.path}: SamplesPerPixel {h.ds.SamplesPerPixel}; CT must be single-channel")
    notes = repair_uids(headers, repair=repair)
    series = {str(h.ds.SeriesInstanceUID) for h in headers}
    if len(series) > 1:
        first = headers[0]
        other = next(h for h in headers if str(h.ds.SeriesInstanceUID) != str(first.ds.SeriesInstanceUID))
        raise DicomSeriesError(
            f"{folder}: {len(series)} series in one folder ({first.path.name} is in {first.ds.SeriesInstanceUID}, "
            f"{other.path.name} in {other.ds.SeriesInstanceUID}); put each series in its own folder"
        )
    ref = headers[0]
    iop0 = _floats(ref.ds, "ImageOrientationPatient", 6, ref.path)
    ps0 = _floats(ref.ds, "PixelSpacing", 2, ref.path)
    size0 = (int(ref.ds.get("Rows", 0) or 0), int(ref.ds.get("Columns", 0) or 0))
    if min(size0) < 1:
        raise DicomSeriesError(f"{ref.path}: Rows/Columns missing")
    row_dir, col_dir = iop0[:3], iop0[3:]
    if (
        abs(np.linalg.norm(row_dir) - 1) > 1e-3
        or abs(np.linalg.norm(col_dir) - 1) > 1e-3
        or abs(float(row_dir @ col_dir)) > 1e-3
    ):
        raise DicomSeriesError(f"{ref.path}: ImageOrientationPatient {list(iop0)} is not two orthonormal directions")
    if np.any(ps0 <= 0):
        raise DicomSeriesError(f"{ref.path}: PixelSpacing {list(ps0)} must be positive")
    normal = np.cross(row_dir, col_dir)
    for h in headers:
        iop = _floats(h.ds, "ImageOrientationPatient", 6, h.path)
        if np.max(np.abs(iop - iop0)) > _ORIENTATION_TOL:
            raise DicomSeriesError(
                f"{h.path}: ImageOrientationPatient {list(iop)} differs from {ref.path.name} {list(iop0)}"
            )
        size = (int(h.ds.get("Rows", 0) or 0), int(h.ds.get("Columns", 0) or 0))
        if size != size0:
            raise DicomSeriesError(f"{h.path}: {size[0]}x{size[1]} pixels, {ref.path.name} has {size0[0]}x{size0[1]}")
        ps = _floats(h.ds, "PixelSpacing", 2, h.path)
        if np.max(np.abs(ps - ps0)) > _PIXEL_SPACING_TOL_MM:
            raise DicomSeriesError(f"{h.path}: PixelSpacing {list(ps)} differs from {ref.path.name} {list(ps0)}")
        h.position = float(_floats(h.ds, "ImagePositionPatient", 3, h.path) @ normal)
    headers.sort(key=lambda h: h.position)
    pos = np.array([h.position for h in headers])
    steps = np.diff(pos)
    for n, step in enumerate(steps):
        if step < 1e-3:
            raise DicomSeriesError(
                f"{headers[n].path.name} and {headers[n + 1].path.name}: same slice position "
                f"({pos[n]:.3f} mm along the normal)"
            )
    dz = float(np.median(steps))
    tol = max(SPACING_TOLERANCE_MM, SPACING_TOLERANCE_REL * dz)
    bad = np.flatnonzero(np.abs(steps - dz) > tol)
    if bad.size:
        n = int(bad[0])
        raise DicomSeriesError(
            f"{folder}: uneven slice spacing: {steps[n]:.3f} mm between {headers[n].path.name} and "
            f"{headers[n + 1].path.name}, median {dz:.3f} mm (tolerance {tol:.3f} mm; missing slice?)"
        )
    dz = float((pos[-1] - pos[0]) / (len(pos) - 1))
    first_ipp = _floats(headers[0].ds, "ImagePositionPatient", 3, headers[0].path)
    # (k, j, i): k steps along the normal by dz, j (row index) along the column direction by PixelSpacing[0],
    # i (column index) along the row direction by PixelSpacing[1].
    affine = np.eye(4)
    affine[:3, 0] = normal * dz
    affine[:3, 1] = col_dir * ps0[0]
    affine[:3, 2] = row_dir * ps0[1]
    affine[:3, 3] = first_ipp
    # The first slice's IPP may be off the fitted line by up to the tolerance: positions are re-derived from it.
    return headers, affine, (dz, float(ps0[0]), float(ps0[1])), notes


def _slice_hu(path: Path) -> tuple[np.ndarray, float, float]:
    try:
        ds = pydicom.dcmread(path)
        # pixel_array decodes (JPEG 2000 etc. via pylibjpeg) without touching the dataset's UIDs,
        # unlike Dataset.decompress(), which would assign a new SOPInstanceUID.
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises several types for undecodable pixel data
        raise DicomSeriesError(f"{path}: cannot decode pixel data ({type(exc).__name__}: {exc})") from exc
    if pixels.ndim != 2:
        raise DicomSeriesError(f"{path}: pixel data has shape {pixels.shape}, expected one 2-D frame")
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return pixels, slope, intercept


def read_series(
    folder: Path,
    *,
    modalities: Sequence[str] = ("CT",),
    repair: bool = True,
) -> Volume:
    """Read, validate and sort one series folder into a :class:`Volume` (see :func:`scan_series`)."""
    headers, affine, spacing, notes = scan_series(folder, modalities=modalities, repair=repair)
    slices: list[np.ndarray] = []
    rescales: list[tuple[float, float]] = []
    for h in headers:
        pixels, slope, intercept = _slice_hu(h.path)
        slices.append(pixels)
        rescales.append((slope, intercept))
    stored = np.stack(slices)
    exact = all(s == 1.0 and float(i).is_integer() for s, i in rescales)
    hu: np.ndarray  # int16 where exact and in range, float32 otherwise
    if exact:
        icpt = np.array([i for _, i in rescales], dtype=np.int64).reshape(-1, 1, 1)
        hu64 = stored.astype(np.int64) + icpt
        if hu64.min() >= np.iinfo(np.int16).min and hu64.max() <= np.iinfo(np.int16).max:
            hu = hu64.astype(np.int16)
        else:
            hu = hu64.astype(np.float32)
    else:
        slope_arr = np.array([s for s, _ in rescales], dtype=np.float32).reshape(-1, 1, 1)
        icpt_arr = np.array([i for _, i in rescales], dtype=np.float32).reshape(-1, 1, 1)
        hu = stored.astype(np.float32) * slope_arr + icpt_arr
    ds0 = headers[0].ds
    if not math.isclose(float(ds0.get("SliceThickness", spacing[0]) or spacing[0]), spacing[0], rel_tol=0.5):
        notes.append(f"SliceThickness {ds0.SliceThickness} differs from the slice spacing {spacing[0]:.3f} mm")
    return Volume(
        hu=hu,
        spacing_mm=spacing,
        affine=affine,
        paths=tuple(h.path for h in headers),
        sop_instance_uids=tuple(str(h.ds.SOPInstanceUID) for h in headers),
        series_instance_uid=str(ds0.SeriesInstanceUID),
        study_instance_uid=str(ds0.StudyInstanceUID),
        frame_of_reference_uid=str(ds0.FrameOfReferenceUID),
        sop_class_uid=str(ds0.SOPClassUID),
        notes=tuple(notes),
        headers=tuple(h.ds for h in headers),
        file_sha256=tuple(h.sha256 for h in headers),
    )
