"""Dump one study's rows and files into archive members, from one consistent snapshot, and write the archive.

Rows keep their original ids so that references inside the archive can be followed; users are named by
username. Series paths are stored relative to the study's storage folder (``MEDIA_ROOT/studies/<id>/``).
Exports, analysis runs and precompute runs are derived and are not backed up.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.db import connection, models, transaction
from django.utils import timezone

from inference.models import Prediction
from readerstudy.backup import archive
from readerstudy.backup.archive import BackupError, Member
from readerstudy.core.models import AuditEvent
from readerstudy.reading.models import Read, ReadingSession, SessionItem
from readerstudy.studies.models import Case, CaseSeries, ImageSeries, Membership, Modality, Patient, Study, Truth
from readerstudy.studies.storage import series_readable, study_prefix

# Table name -> model, in archive.TABLE_NAMES order (every foreign key points to an earlier table).
TABLES: dict[str, type[models.Model]] = {
    "study": Study,
    "modalities": Modality,
    "memberships": Membership,
    "patients": Patient,
    "series": ImageSeries,
    "cases": Case,
    "case_series": CaseSeries,
    "truth": Truth,
    "predictions": Prediction,
    "sessions": ReadingSession,
    "items": SessionItem,
    "reads": Read,
    "audit_events": AuditEvent,
}
assert tuple(TABLES) == archive.TABLE_NAMES
FILE_FIELDS = ("overlay", "seg")  # Prediction's FileFields


@dataclass(frozen=True)
class Written:
    """An archive written to ``path``: its manifest, sha256 and size."""

    path: Path
    manifest: dict
    sha256: str
    size: int


def software_version() -> str:
    from readerstudy.results.runs import software_version as version  # pandas-heavy: only when needed

    return version()


def _querysets(study: Study) -> dict[str, models.QuerySet]:
    return {
        "study": Study.objects.filter(pk=study.pk),
        "modalities": Modality.objects.filter(study=study),
        "memberships": Membership.objects.filter(study=study),
        "patients": Patient.objects.filter(study=study),
        "series": ImageSeries.objects.filter(patient__study=study),
        "cases": Case.objects.filter(study=study),
        "case_series": CaseSeries.objects.filter(case__study=study),
        "truth": Truth.objects.filter(case__study=study),
        "predictions": Prediction.objects.filter(case__study=study),
        "sessions": ReadingSession.objects.filter(study=study),
        "items": SessionItem.objects.filter(session__study=study),
        "reads": Read.objects.filter(study=study),
        "audit_events": AuditEvent.objects.filter(study=study),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dump_row(obj: models.Model, usernames: dict[Any, str]) -> dict:
    user_model = get_user_model()
    row: dict[str, Any] = {}
    for f in obj._meta.concrete_fields:
        value = getattr(obj, f.attname)
        if f.is_relation and f.related_model is user_model:
            value = None if value is None else usernames[value]
        elif isinstance(f, models.FileField):
            value = value.name or ""
        elif isinstance(f, models.DateTimeField):
            value = _iso(value)
        row[f.name] = value
    return row


def _relative_series_path(series: ImageSeries, root: str) -> str:
    if series.storage_prefix.startswith(f"{root}/"):
        return series.storage_prefix[len(root) + 1 :]
    return f"external/series-{series.pk}"  # not in the study's folder (older imports): give it one


def _relative_mask_path(series: ImageSeries, root: str) -> str:
    if series.reference_mask.startswith(f"{root}/"):
        return series.reference_mask[len(root) + 1 :]
    return f"external/reference-{series.pk}.npz"


def _storage_member(name: str, stored: str) -> Member:
    return Member(name, opener=partial(default_storage.open, stored, "rb"), source=stored)


def _collect(study: Study, images: bool) -> tuple[list[Member], dict[str, int]]:  # noqa: C901
    """Dump every table; list the files that go with it."""
    user_model = get_user_model()
    objects = {name: list(qs.order_by("pk")) for name, qs in _querysets(study).items()}
    objects["audit_events"].sort(key=lambda e: (e.created_at, e.pk))
    user_ids: set[Any] = set()
    for name, objs in objects.items():
        for f in TABLES[name]._meta.concrete_fields:
            if f.is_relation and f.related_model is user_model:
                user_ids |= {getattr(o, f.attname) for o in objs} - {None}
    users = list(user_model.objects.filter(pk__in=user_ids).order_by(user_model.USERNAME_FIELD))
    usernames = {u.pk: u.get_username() for u in users}
    rows: dict[str, list[dict]] = {
        "users": [
            {
                "username": u.get_username(),
                **{k: getattr(u, k) for k in ("first_name", "last_name", "email") if hasattr(u, k)},
            }
            for u in users
        ]
    }
    root = study_prefix(study)
    files: list[Member] = []
    series_files: list[Member] = []
    for name, objs in objects.items():
        rows[name] = []
        for obj in objs:
            row = _dump_row(obj, usernames)
            if isinstance(obj, ImageSeries):
                del row["storage_prefix"]
                row["path"] = _relative_series_path(obj, root)  # format 1's column, relative to the study
                if obj.reference_mask:
                    # Small and not pixel data of the series: carried with or without images, like predictions.
                    row["reference_mask"] = _relative_mask_path(obj, root)
                    member = f"reference_masks/{obj.pk}/{PurePosixPath(obj.reference_mask).name}"
                    files.append(_storage_member(member, obj.reference_mask))
                if images:
                    if not series_readable(obj):
                        raise BackupError(
                            f"series {obj.pk}: files under {obj.storage_prefix} are missing (use images=False?)"
                        )
                    for file_name in sorted(obj.slice_files):
                        stored = f"{obj.storage_prefix}/{file_name}"
                        series_files.append(_storage_member(f"series/{obj.pk}/{file_name}", stored))
            if isinstance(obj, Prediction):
                for field_name in FILE_FIELDS:
                    stored = row[field_name]
                    if stored:
                        member = f"predictions/{obj.pk}/{field_name}/{PurePosixPath(stored).name}"
                        files.append(_storage_member(member, stored))
            rows[name].append(row)
    counts = {name: len(table) for name, table in rows.items()}
    tables = [archive.table_member(name, table) for name, table in rows.items()]
    return tables + files + series_files, counts


def snapshot(study: Study, images: bool) -> tuple[list[Member], dict[str, int]]:
    """All tables from one snapshot, so that a read submitted meanwhile is either in (with its event) or out."""
    outer = connection.in_atomic_block
    with transaction.atomic():
        if not outer and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return _collect(Study.objects.get(pk=study.pk), images)


def write(study: Study, path: Path, *, images: bool = True, progress: bool = False) -> Written:
    """Dump ``study`` into the tar.gz ``path`` (overwritten: the caller names a fresh partial file). Reads only."""
    members, counts = snapshot(study, images)
    archive.hash_members(members, progress=progress)
    manifest = archive.build_manifest(
        software_version=software_version(),
        created_at=timezone.now(),
        study={"id": study.pk, "name": study.name},
        images=images,
        counts=counts,
        members=members,
    )
    sha256, size = archive.write_archive(path, manifest, members, progress=progress)
    return Written(path, manifest, sha256, size)
