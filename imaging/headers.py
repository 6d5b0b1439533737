"""Checks that a folder holds one readable CT series and reads its slice geometry (headers only)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError


class SeriesError(ValueError):
    """The folder is not one readable CT series; the message says why."""


@dataclass(frozen=True)
class SeriesInfo:
    series_instance_uid: str
    n_slices: int
    rows: int
    columns: int
    normal: tuple[float, float, float]
    positions_mm: list[float]  # along the slice normal, ascending
    files: list[str]  # file names in the same order
    modality: str = "CT"  # DICOM Modality shared by every file

    def nearest_slice(self, point_mm: tuple[float, float, float]) -> tuple[int, float]:
        """Index of the slice nearest a point, and the point's distance from that slice plane in mm."""
        along = float(np.dot(self.normal, point_mm))
        distances = np.abs(np.asarray(self.positions_mm) - along)
        index = int(np.argmin(distances))
        return index, float(distances[index])

    @property
    def slice_spacing_mm(self) -> float:
        if self.n_slices < 2:
            return 0.0
        return float(np.median(np.diff(self.positions_mm)))


def probe_series(folder: Path, modalities: tuple[str, ...] = ("CT",)) -> SeriesInfo:
    """Read the headers of every file in ``folder``; raise SeriesError naming the first problem found.

    Every file must have one of ``modalities`` (the same one throughout)."""
    if not folder.is_dir():
        raise SeriesError(f"series folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    linked = next((p for p in files if p.is_symlink()), None)
    if linked is not None:
        # A link may point anywhere on the server; the import copies only files that lie in the folder.
        raise SeriesError(f"{linked.name} in {folder} is a symbolic link; copy the file into the folder instead")
    if not files:
        raise SeriesError(f"series folder {folder} holds no files")
    headers = []
    for path in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, EOFError, OSError, ValueError) as exc:
            raise SeriesError(f"{path.name} in {folder} is not a readable DICOM file ({exc})") from None
        headers.append((path, ds))
    return _geometry(folder, headers, modalities)


def _geometry(folder: Path, headers: list, allowed: tuple[str, ...]) -> SeriesInfo:
    modalities = {str(getattr(ds, "Modality", "")) for _, ds in headers}
    if len(modalities) != 1 or not modalities <= set(allowed):
        found = [(path.name, str(getattr(ds, "Modality", ""))) for path, ds in headers]
        odd = next((name for name, m in found if m not in allowed), None)
        odd = odd or next(name for name, m in found if m != found[0][1])  # mixed allowed modalities
        expected = f"{allowed[0]} only" if len(allowed) == 1 else f"one of {', '.join(allowed)} throughout"
        raise SeriesError(
            f"series folder {folder} holds modality {sorted(modalities)}, expected {expected} "
            f"(first other file: {odd}; a truncated file has no Modality)"
        )
    uids = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in headers}
    if len(uids) > 1:
        raise SeriesError(f"series folder {folder} mixes {len(uids)} series (SeriesInstanceUID); expected one")
    shapes = {(int(getattr(ds, "Rows", 0)), int(getattr(ds, "Columns", 0))) for _, ds in headers}
    if len(shapes) != 1:
        raise SeriesError(f"series folder {folder} mixes image sizes {sorted(shapes)}")
    rows, columns = shapes.pop()
    if not (1 <= rows <= 4096 and 1 <= columns <= 4096):
        raise SeriesError(f"series folder {folder}: image size {rows}x{columns} outside 1..4096")
    try:
        orientation = np.array([float(v) for v in headers[0][1].ImageOrientationPatient])
        positions = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in headers])
    except (AttributeError, TypeError, ValueError):
        raise SeriesError(f"series folder {folder}: ImagePositionPatient/ImageOrientationPatient missing") from None
    normal = np.cross(orientation[:3], orientation[3:])
    along = positions @ normal
    order = np.argsort(along)
    along = along[order]
    if len(along) > 1 and np.any(np.diff(along) < 1e-3):
        raise SeriesError(f"series folder {folder}: two slices share one position")
    return SeriesInfo(
        series_instance_uid=uids.pop(),
        n_slices=len(headers),
        rows=rows,
        columns=columns,
        normal=(float(normal[0]), float(normal[1]), float(normal[2])),
        positions_mm=[float(v) for v in along],
        files=[headers[i][0].name for i in order],
        modality=modalities.pop(),
    )
