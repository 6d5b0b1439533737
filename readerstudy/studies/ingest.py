"""Copy a manifest's series into the study's storage, de-identified (DICOM PS3.15 basic profile).

The pure work is ``imaging.deid``; this layer picks the folders and the salt and turns failures into
manifest row errors. Folder names are generated keys (``import-<uuid>/series-<n>``), never text from the
manifest, and every folder is new: an import cannot reach, replace or mix with the files of another import or
study. Files go to a fresh import folder that :meth:`Ingest.remove` deletes if the import fails, so a refused
import leaves nothing behind.
"""

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from pydicom.errors import InvalidDicomError

from readerstudy.studies.manifest import Manifest
from readerstudy.studies.models import Study
from imaging.headers import SeriesError, SeriesInfo, probe_series


class StorageError(RuntimeError):
    """A storage target that would lie outside the import folder or exists already (never expected)."""


@dataclass
class IngestedSeries:
    folder: Path
    info: SeriesInfo
    notes: list[str]
    removed: dict[str, int]


@dataclass
class Ingest:
    folder: Path  # the import's own folder: remove it to undo
    series: dict[Path, IngestedSeries] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    created: list[Path] = field(default_factory=list)  # parent folders this import created, outermost first

    def remove(self) -> None:
        """Undo: delete the import folder and the (then empty) parents this import created."""
        shutil.rmtree(self.folder, ignore_errors=True)
        for parent in reversed(self.created):
            try:
                parent.rmdir()  # only if empty: a concurrent import's folder stays
            except OSError:
                pass


def study_storage(study: Study) -> Path:
    return Path(settings.MEDIA_ROOT) / "studies" / str(int(study.pk))


def deid_salt(study: Study) -> str:
    # Secret (settings) + study: UIDs and date shifts are stable within a study and not reversible by hashing.
    return f"{settings.DEID_SALT}:{study.pk}:{study.seed}"


def _new_import_folder(study: Study) -> Ingest:
    storage = study_storage(study)
    created = [p for p in (storage.parent, storage) if not p.exists()]
    folder = storage / f"import-{uuid.uuid4().hex}"
    folder.mkdir(parents=True, exist_ok=False)  # a new folder or an error: never write into one that exists
    ingest = Ingest(folder=folder, created=created)
    real = folder.resolve(strict=True)
    media = Path(settings.MEDIA_ROOT).resolve()
    if not real.is_relative_to(media):  # e.g. a symbolic link planted for studies/<id>
        ingest.remove()
        raise StorageError(f"import folder {folder} resolves to {real}, outside MEDIA_ROOT {media}")
    return ingest


def _target(ingest: Ingest, name: str) -> Path:
    """``<import folder>/<name>``, checked to lie directly inside the import folder and not to exist yet."""
    target = ingest.folder / name
    if target.resolve().parent != ingest.folder.resolve(strict=True) or target.exists() or target.is_symlink():
        raise StorageError(f"storage target {target} is outside the import folder or exists already")
    return target


def ingest_series(study: Study, manifest: Manifest) -> Ingest:
    """De-identify every series of a checked manifest into ``<MEDIA_ROOT>/studies/<id>/import-<uuid>/``.

    Problems with a series become row errors in ``Ingest.errors``; on any exception the files written so far
    are removed before it propagates.
    """
    from imaging.deid import deidentify_series  # pydicom-heavy; only imports need it
    from imaging.series import DicomSeriesError

    owners: dict[Path, tuple[str, list[int]]] = {}
    for row in manifest.rows:
        owners.setdefault(row.series_dir, (row.patient_id, []))[1].append(row.row)
    ingest = _new_import_folder(study)
    try:
        for index, (source, (patient, rows)) in enumerate(sorted(owners.items()), start=1):
            target = _target(ingest, f"series-{index}")  # a generated key: the patient id is no path
            try:
                report = deidentify_series(source, target, pseudonym=patient, salt=deid_salt(study))
                info = probe_series(target)
            except (DicomSeriesError, SeriesError, InvalidDicomError, OSError, ValueError, EOFError) as exc:
                ingest.errors += [
                    f"{manifest.path.name} row {r} column series_path: cannot de-identify: {exc}" for r in rows
                ]
                continue
            ingest.series[source] = IngestedSeries(target, info, list(report.notes), dict(report.removed))
    except BaseException:
        ingest.remove()
        raise
    return ingest
