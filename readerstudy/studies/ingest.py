"""Copy a manifest's series into the study's storage, de-identified (DICOM PS3.15 basic profile).

The pure work is ``imaging.deid``; this layer picks the storage names and the salt and turns failures into
manifest row errors. Storage names are generated keys (``studies/<id>/import-<uuid>/series-<n>/<file>``), never
text from the manifest, and every import prefix is new: an import cannot reach, replace or mix with the files of
another import or study. Each series is de-identified into a temporary local folder and its files are then saved
through ``default_storage``; :meth:`Ingest.remove` deletes what was saved if the import fails, so a refused import
leaves nothing behind.
"""

import hashlib
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from pydicom.errors import InvalidDicomError

from imaging.headers import SeriesError, SeriesInfo
from readerstudy.studies import storage
from readerstudy.studies.manifest import SERIES_MODALITIES, Manifest
from readerstudy.studies.models import Study
from readerstudy.studies.storage import StorageError

__all__ = ["Ingest", "IngestedSeries", "StorageError", "deid_salt", "ingest_series"]


@dataclass
class IngestedSeries:
    prefix: str  # storage name of the series' folder
    info: SeriesInfo  # of the stored copy (files 0001.dcm...), from the de-identification's scan
    notes: list[str]
    removed: dict[str, int]
    reference_mask: str = ""  # storage name of its reference mask (.npz on its grid), if the manifest named one
    reference_mask_info: dict = field(default_factory=dict)  # format, sha256 of the file and of the stored copy


@dataclass
class Ingest:
    prefix: str  # the import's own storage prefix: delete what lies under it to undo
    series: dict[Path, IngestedSeries] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    saved: list[str] = field(default_factory=list)  # storage names written, in order
    stop: str = ""  # the deepest folder above the prefix that existed before: remove() leaves it and what is above

    def remove(self) -> None:
        """Undo: delete the saved files, then the (then empty) folders this import created."""
        folders = sorted({p for name in self.saved for p in storage.parents(name, self.stop)}, key=len, reverse=True)
        storage.delete_files(self.saved, folders)
        self.saved.clear()


def deid_salt(study: Study) -> str:
    # Secret (settings) + study: UIDs and date shifts are stable within a study and not reversible by hashing.
    return f"{settings.DEID_SALT}:{study.pk}:{study.seed}"


def _new_import(study: Study) -> Ingest:
    root = storage.study_prefix(study)
    stop = next((p for p in (root, "studies") if default_storage.exists(p)), "")
    return Ingest(prefix=f"{root}/import-{uuid.uuid4().hex}", stop=stop)


def ingest_series(study: Study, manifest: Manifest, progress: Callable[[int, int], None] | None = None) -> Ingest:
    """De-identify every series of a checked manifest into ``studies/<id>/import-<uuid>/`` of the storage.

    Problems with a series become row errors in ``Ingest.errors``; on any exception the files saved so far
    are removed before it propagates. ``progress(done, total)`` is called before the first series and after each.
    """
    from imaging import deid  # pydicom-heavy; only imports need it (and tests replace deidentify_series)
    from imaging.series import DicomSeriesError

    # Every series of every case, the primary and the extra ones, once per folder (a folder belongs to one patient:
    # the manifest check refused anything else), with the row and column of each mention for error messages.
    owners: dict[Path, tuple[str, list[tuple[int, str]]]] = {}
    for row in manifest.rows:
        for position, (_role, folder) in enumerate(row.all_series):
            column = "series_path" if position == 0 else "extra_series"
            owners.setdefault(folder, (row.patient_id, []))[1].append((row.row, column))
    masks = {row.series_dir: row.reference_mask for row in manifest.rows if row.reference_mask is not None}
    ingest = _new_import(study)
    if progress is not None:
        progress(0, len(owners))
    try:
        for index, (source, (patient, rows)) in enumerate(sorted(owners.items()), start=1):
            prefix = f"{ingest.prefix}/series-{index}"  # a generated key: the patient id is no path
            info: SeriesInfo | None = None  # None: this series failed (its rows' errors say why)
            with tempfile.TemporaryDirectory(prefix="deid-") as tmp:
                target = Path(tmp) / f"series-{index}"
                try:
                    report = deid.deidentify_series(
                        source, target, pseudonym=patient, salt=deid_salt(study), modalities=SERIES_MODALITIES
                    )
                    info = _checked_info(report.series, manifest.series.get(source))
                    storage.save_files(((f"{prefix}/{name}", target / name) for name in info.files), ingest.saved)
                except (DicomSeriesError, SeriesError, InvalidDicomError, OSError, ValueError, EOFError) as exc:
                    ingest.errors += [
                        f"{manifest.path.name} row {r} column {column}: cannot de-identify: {exc}" for r, column in rows
                    ]
            if info is not None:
                ingest.series[source] = IngestedSeries(prefix, info, list(report.notes), dict(report.removed))
                if source in masks:
                    _ingest_mask(ingest, manifest, source, masks[source], f"{ingest.prefix}/reference-{index}.npz")
            if progress is not None:
                progress(index, len(owners))
    except BaseException:
        ingest.remove()
        raise
    return ingest


def _ingest_mask(ingest: Ingest, manifest: Manifest, source: Path, mask: Path, name: str) -> None:
    """Read the series' reference mask onto its grid and store it as ``name`` (arrays only: see
    ``studies.reference_masks``); a problem is a row error on every row of the series."""
    from readerstudy.studies import reference_masks

    info = manifest.series[source]
    try:
        sha256 = reference_masks.file_sha256(mask)  # of the bytes read next (the path was checked as a file)
        stored = reference_masks.to_npz(reference_masks.load_reference(mask, source, info))
    # A crafted file can trip the readers in other ways (a SEG missing a module): still a row error.
    except (OSError, ValueError, KeyError, AttributeError, TypeError, IndexError) as exc:
        rows = [r.row for r in manifest.rows if r.series_dir == source]
        text = f"{exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
        text = text.replace(str(mask), mask.name)  # the libraries name the server's path: the row names the file
        ingest.errors += [
            f"{manifest.path.name} row {r} column {reference_masks.COLUMN}: {mask.name}: {text}" for r in rows
        ]
        return
    with tempfile.TemporaryDirectory(prefix="refmask-") as tmp:
        local = Path(tmp) / "reference.npz"
        local.write_bytes(stored)
        storage.save_files([(name, local)], ingest.saved)
    series = ingest.series[source]
    series.reference_mask = name
    series.reference_mask_info = {
        "format": reference_masks.file_format(mask),
        "file_sha256": sha256,
        "stored_sha256": hashlib.sha256(stored).hexdigest(),
    }


def _checked_info(written: SeriesInfo | None, checked: SeriesInfo | None) -> SeriesInfo:
    """The stored copy's geometry, which must be the one the manifest check saw (the slice indices rely on it)."""
    if written is None:
        raise SeriesError("the de-identification reported no series geometry")
    if checked is not None and (
        written.n_slices != checked.n_slices
        or written.modality != checked.modality
        or max(abs(a - b) for a, b in zip(written.positions_mm, checked.positions_mm, strict=True)) > 1e-3
    ):
        raise SeriesError("the series changed since the manifest was checked; check the manifest again")
    return written
