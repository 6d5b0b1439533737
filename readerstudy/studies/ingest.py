"""Copy a manifest's series into the study's storage, de-identified (DICOM PS3.15 basic profile).

The pure work is ``inference.pipeline.deid``; this layer picks the folders and the salt and turns failures into
manifest row errors. Files are written to a fresh import folder that the caller removes if the import fails,
so a refused import leaves nothing behind.
"""

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from readerstudy.studies.manifest import Manifest
from readerstudy.studies.models import Study
from readerstudy.studies.series import SeriesError, SeriesInfo, probe_series


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


def study_storage(study: Study) -> Path:
    return Path(settings.MEDIA_ROOT) / "studies" / str(study.pk)


def deid_salt(study: Study) -> str:
    # Secret (settings) + study: UIDs and date shifts are stable within a study and not reversible by hashing.
    return f"{settings.DEID_SALT}:{study.pk}:{study.seed}"


def ingest_series(study: Study, manifest: Manifest) -> Ingest:
    """De-identify every series of a checked manifest into ``<MEDIA_ROOT>/studies/<id>/import-<hex>/``."""
    from inference.pipeline.deid import deidentify_series  # pydicom-heavy; only imports need it
    from inference.pipeline.dicom import DicomSeriesError

    ingest = Ingest(folder=study_storage(study) / f"import-{uuid.uuid4().hex[:12]}")
    owners: dict[Path, tuple[str, list[int]]] = {}
    for row in manifest.rows:
        owners.setdefault(row.series_dir, (row.patient_id, []))[1].append(row.row)
    for index, (source, (patient, rows)) in enumerate(sorted(owners.items()), start=1):
        target = ingest.folder / patient / f"series-{index}"
        try:
            report = deidentify_series(source, target, pseudonym=patient, salt=deid_salt(study))
            info = probe_series(target)
        except (DicomSeriesError, SeriesError, OSError) as exc:
            ingest.errors += [
                f"{manifest.path.name} row {r} column series_path: cannot de-identify: {exc}" for r in rows
            ]
            continue
        ingest.series[source] = IngestedSeries(target, info, list(report.notes), dict(report.removed))
    return ingest
