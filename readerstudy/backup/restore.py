"""Insert a verified archive's rows and files as a new study, remapping every key (inside the caller's transaction).

Choices that matter:

- Users are referred to by username. Restore reuses an existing user of that name (their flags and password are
  left alone) and otherwise creates one with an unusable password, never staff, never superuser: an archive must
  not be able to grant anyone rights on the target server. An administrator sets passwords and flags afterwards.
- Audit events are restored with their original timestamps, as new links of the target database's hash chain
  (``audit.append``: INSERTs only, so the append-only triggers are never involved; actor, study and object ids
  differ here, so the source's hashes could not verify anyway). Each keeps its hash in the source database as
  ``source_hash``; ``verify_audit`` passes after a restore. Their ``object_id`` is remapped to the restored
  object where that object is part of the archive; objects that are not (deleted modalities or members,
  discarded predictions, exports, analysis runs) keep their old id prefixed with ``orig:`` so that it cannot be
  mistaken for a row of the target database.
- Read idempotency keys are unique per reader across studies. A key that the reader already used in the target
  database (always the case when a study is restored beside its source) is replaced by a derived key
  (``restored-<sha256(new study id, old key)[:40]>``); the restore event counts them.
"""

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import models
from tqdm import tqdm

from inference.models import Prediction
from readerstudy.backup import archive
from readerstudy.backup.archive import BackupError, Verified, safe_member
from readerstudy.backup.dump import FILE_FIELDS, TABLES
from readerstudy.core import audit
from readerstudy.core.errors import Conflict
from readerstudy.core.models import AuditEvent
from readerstudy.reading.models import Read
from readerstudy.studies.models import Case, CaseSeries, ImageSeries, Study
from readerstudy.studies.roles import DEFAULT_SERIES_ROLE
from readerstudy.studies.storage import delete_files, parents, save_files, study_prefix

# Columns that archives of format version 1 may hold and this schema no longer stores: skipped on restore.
# cases.size_stratum: derived from diameter_mm and the study's bins since studies migration 0003.
RETIRED_COLUMNS: dict[str, frozenset[str]] = {"cases": frozenset({"size_stratum"})}


@contextmanager
def staged(path: Path, *, progress: bool = False) -> Iterator[Verified]:
    """The verified archive, extracted to a staging folder that is removed afterwards."""
    media = Path(settings.MEDIA_ROOT) / "studies"
    media.mkdir(parents=True, exist_ok=True)
    # Staged on the same file system as MEDIA_ROOT, so series folders are moved into place, not copied.
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=media))
    try:
        yield archive.verify(path, staging, progress=progress)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class Restorer:
    """Inserts the verified tables (inside the caller's transaction), remapping every key."""

    def __init__(self, verified: Verified, study_name: str) -> None:
        self.v = verified
        self.study_name = study_name
        self.maps: dict[type[models.Model], dict[Any, Any]] = {model: {} for model in TABLES.values()}
        self.users: dict[str, Any] = {}
        self.users_created: list[str] = []
        self.keys_rewritten = 0
        self.masks_restored = 0
        self.masks_not_in_archive = 0  # archives before version 3 did not carry them
        self.saved: list[str] = []  # storage names to delete if the restore fails
        self.saved_series: list[str] = []  # series files, likewise (their folders go too)
        self.study: Study | None = None

    # users --------------------------------------------------------------------------------------------------------
    def restore_users(self) -> None:
        user_model = get_user_model()
        field_name = user_model.USERNAME_FIELD
        for row in self.v.tables["users"]:
            username = row.get("username")
            if not isinstance(username, str) or not username:
                raise BackupError(f"archive member tables/users.jsonl: bad username {username!r}")
            user = user_model.objects.filter(**{field_name: username}).first()
            if user is None:
                user = user_model(**{field_name: username})
                for key in ("first_name", "last_name", "email"):
                    if hasattr(user, key) and isinstance(row.get(key), str):
                        setattr(user, key, row[key])
                # Never staff, never superuser: an archive must not grant rights on this server.
                user.is_staff = False
                user.is_superuser = False
                user.set_unusable_password()
                user.save()
                self.users_created.append(username)
            self.users[username] = user.pk

    # rows ---------------------------------------------------------------------------------------------------------
    def build(self, table: str, model: type[models.Model], row: dict) -> models.Model:
        fields = {f.name: f for f in model._meta.concrete_fields}
        row = {k: v for k, v in row.items() if k not in RETIRED_COLUMNS.get(table, ())}
        unknown = set(row) - set(fields) - ({"path"} if model is ImageSeries else set())  # see prepare_series
        if unknown:
            raise BackupError(
                f"archive member tables/{table}.jsonl: unknown column(s) {', '.join(sorted(unknown))} "
                "(written by a newer version of the software?)"
            )
        user_model = get_user_model()
        values: dict[str, Any] = {}
        for name, f in fields.items():
            if f.primary_key or name not in row:
                continue
            value = row[name]
            if f.is_relation and value is not None:
                if f.related_model is user_model:
                    if value not in self.users:
                        raise BackupError(f"tables/{table}.jsonl row {row.get('id')}: unknown user {value!r}")
                    value = self.users[value]
                else:
                    target = self.maps.get(f.related_model, {})
                    if value not in target:
                        raise BackupError(
                            f"tables/{table}.jsonl row {row.get('id')}: {name} {value!r} is not in the archive"
                        )
                    value = target[value]
            elif isinstance(f, models.DateTimeField) and value is not None:
                try:
                    value = datetime.fromisoformat(value)
                except (TypeError, ValueError):
                    raise BackupError(f"tables/{table}.jsonl row {row.get('id')}: {name} {value!r}") from None
            values[f.attname] = value
        return model(**values)

    def insert(self, table: str, model: type[models.Model], objs: list[models.Model], rows: list[dict]) -> None:
        if not objs:
            return
        if model is AuditEvent:
            # New links at the head of this database's chain, in the archive's order, original timestamps kept.
            for obj in objs:
                audit.append(obj, keep_created_at=True)
        elif any(f.auto_now_add for f in model._meta.concrete_fields if isinstance(f, models.DateTimeField)):
            # bulk_create and save() would overwrite an auto_now_add field with "now"; a raw save inserts the
            # value as it is (what loaddata does).
            for obj in objs:
                obj.save_base(raw=True)
        else:
            model.objects.bulk_create(objs, batch_size=500)
        for obj, row in zip(objs, rows, strict=True):
            if obj.pk is None:
                raise RuntimeError(f"{model.__name__}: the database returned no primary keys")
            if row.get("id") in self.maps[model]:
                raise BackupError(f"tables/{table}.jsonl: id {row.get('id')!r} appears twice")
            self.maps[model][row.get("id")] = obj.pk

    def restore_tables(self, progress: bool) -> Study:
        for table, model in tqdm(TABLES.items(), desc="tables", unit="table", disable=not progress):
            rows = self.v.tables[table]
            if table == "audit_events":
                rows = sorted(rows, key=lambda r: (str(r.get("created_at")), _sortable(r.get("id"))))
            else:
                rows = sorted(rows, key=lambda r: _sortable(r.get("id")))
            objs = [self.build(table, model, row) for row in rows]
            prepare = getattr(self, f"prepare_{table}", None)
            if prepare is not None:
                prepare(objs, rows)
            self.insert(table, model, objs, rows)
            if table == "study":
                self.study = objs[0]
                self.place_series_folder()
            if table == "case_series" and "case_series" not in archive.tables_of(self.v.manifest["format_version"]):
                self.derive_primary_series()
        return self.study

    def derive_primary_series(self) -> None:
        """Archives of version 1 predate CaseSeries: each case had its one series, which becomes its primary
        series under the role migration 0005 gave existing cases."""
        cases = Case.objects.filter(pk__in=self.maps[Case].values()).values_list("pk", "series_id")
        CaseSeries.objects.bulk_create(
            [
                CaseSeries(case_id=pk, series_id=series_id, role=DEFAULT_SERIES_ROLE, position=0)
                for pk, series_id in cases
            ]
        )

    def prepare_study(self, objs: list[Study], rows: list[dict]) -> None:
        objs[0].name = self.study_name
        if Study.objects.filter(name=self.study_name).exists():
            raise Conflict(f"a study named {self.study_name!r} exists already; restore with a new name (--rename)")

    def place_series_folder(self) -> None:
        self.root = study_prefix(self.study)
        if default_storage.exists(self.root):
            raise BackupError(f"{self.root} exists already in the storage; refusing to mix files of two studies")

    def prepare_series(self, objs: list[ImageSeries], rows: list[dict]) -> None:
        for obj, row in zip(objs, rows, strict=True):
            try:
                rel = safe_member(row.get("path"))
            except BackupError:
                raise BackupError(f"tables/series.jsonl row {row.get('id')}: path {row.get('path')!r}") from None
            prefix = f"{self.root}/{rel.as_posix()}"
            staged = self.v.staging / "series" / str(row.get("id"))
            if staged.is_dir():
                files = sorted(p for p in staged.iterdir() if p.is_file())
                save_files(((f"{prefix}/{p.name}", p) for p in files), self.saved_series)
            obj.storage_prefix = prefix
            self.restore_reference_mask(obj, row)

    def restore_reference_mask(self, obj: ImageSeries, row: dict) -> None:
        """Save the series' reference mask from the archive (checked against the sha256 its import recorded)."""
        mask = row.get("reference_mask") or ""
        if self.v.manifest["format_version"] < archive.REFERENCE_MASKS_SINCE:
            # An older archive named the source's storage file without carrying it: never point at another study's.
            if mask:
                self.masks_not_in_archive += 1
            obj.reference_mask, obj.reference_mask_info = "", {}
            return
        if not mask:
            obj.reference_mask, obj.reference_mask_info = "", {}
            return
        where = f"tables/series.jsonl row {row.get('id')}"
        try:
            rel = safe_member(mask)
        except BackupError:
            raise BackupError(f"{where}: reference_mask {mask!r}") from None
        if rel.suffix != ".npz":
            raise BackupError(f"{where}: reference_mask {mask!r} is not a .npz file name")
        info = row.get("reference_mask_info")
        if not isinstance(info, dict):
            raise BackupError(f"{where}: reference_mask_info must be an object")
        staged = self.v.staging / "reference_masks" / str(row.get("id")) / rel.name
        if not staged.is_file():
            raise BackupError(f"series {row.get('id')}: reference mask {rel.name} is not in the archive")
        want = info.get("stored_sha256")
        got = archive.file_sha256(staged)
        if want is not None and got != want:
            raise BackupError(f"series {row.get('id')}: reference mask {rel.name} has sha256 {got}, its import {want}")
        name = f"{self.root}/{rel.as_posix()}"
        save_files([(name, staged)], self.saved_series)
        obj.reference_mask, obj.reference_mask_info = name, {**info, "stored_sha256": got}
        self.masks_restored += 1

    def prepare_reads(self, objs: list[Read], rows: list[dict]) -> None:
        taken = set(
            Read.objects.filter(reader_id__in={o.reader_id for o in objs}).values_list("reader_id", "idempotency_key")
        )
        for obj in objs:
            if (obj.reader_id, obj.idempotency_key) in taken:
                obj.idempotency_key = (
                    "restored-" + hashlib.sha256(f"{self.study.pk}:{obj.idempotency_key}".encode()).hexdigest()[:40]
                )
                self.keys_rewritten += 1

    def prepare_predictions(self, objs: list[Prediction], rows: list[dict]) -> None:
        for obj, row in zip(objs, rows, strict=True):
            for field_name in FILE_FIELDS:
                stored = row.get(field_name) or ""
                if not stored:
                    continue
                base = PurePosixPath(stored).name
                staged = self.v.staging / "predictions" / str(row.get("id")) / field_name / base
                if not staged.is_file():
                    raise BackupError(f"prediction {row.get('id')}: {field_name} file {base} is not in the archive")
                upload_to = obj._meta.get_field(field_name).upload_to
                with staged.open("rb") as f:
                    name = default_storage.save(f"{upload_to}{self.study.pk}/{base}", File(f))
                self.saved.append(name)
                getattr(obj, field_name).name = name

    def prepare_audit_events(self, objs: list[AuditEvent], rows: list[dict]) -> None:
        by_type = {model._meta.model_name: model for model in TABLES.values()}
        for obj, row in zip(objs, rows, strict=True):
            # Actor, study and object ids change here, so the source's hashes cannot hold: the events are chained
            # anew (audit.append) and keep the source's hash for provenance (archives of older versions have none).
            obj.seq, obj.prev_hash, obj.hash = None, "", ""
            source = row.get("hash")
            obj.source_hash = source if isinstance(source, str) and len(source) == 64 else ""
            model = by_type.get(obj.object_type)
            old = _sortable(obj.object_id)
            mapping = self.maps.get(model, {}) if model is not None else {}
            if old in mapping:
                obj.object_id = str(mapping[old])
            elif obj.object_id in mapping:
                obj.object_id = str(mapping[obj.object_id])
            else:
                obj.object_id = f"orig:{obj.object_id}"[:64]

    def run(self, *, progress: bool = False) -> Study:
        """Users, then every table in order; call inside a transaction (and :meth:`cleanup` if it fails)."""
        self.restore_users()
        return self.restore_tables(progress)

    def summary(self, path: Path) -> dict:
        """What the ``restore_study`` audit event records."""
        manifest = self.v.manifest
        return {
            "archive": path.name,
            "archive_sha256": self.v.sha256,
            "format_version": manifest["format_version"],
            "software_version": manifest.get("software_version"),
            "backup_created_at": manifest.get("created_at"),
            "source_study": manifest["study"],
            "name": self.study.name,
            "counts": {t: len(self.v.tables[t]) for t in archive.ALL_TABLES},
            "images": bool(manifest.get("images")),
            "users_created": self.users_created,
            "idempotency_keys_rewritten": self.keys_rewritten,
            "reference_masks": self.masks_restored,
            "reference_masks_not_in_archive": self.masks_not_in_archive,
        }

    def cleanup(self) -> None:
        for name in self.saved:
            try:
                default_storage.delete(name)
                Path(default_storage.path(name)).parent.rmdir()  # the new study's folder, once empty
            except (OSError, NotImplementedError):
                pass
        folders = {p for name in self.saved_series for p in parents(name, stop="studies")}
        delete_files(self.saved_series, sorted(folders, key=len, reverse=True))


def _sortable(value: Any) -> Any:
    """Ids are integers in this schema; an id given as a digit string (audit object ids) sorts and maps the same."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value
