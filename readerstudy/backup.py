"""Back up one whole study to a versioned tar.gz and restore it, all or nothing, into another (or the same) database.

Archive layout (format "readerstudy-backup", version 1)::

    manifest.json                         first member: format, versions, study, row counts, sha256 of every member
    tables/<table>.jsonl                  one JSON object per row, original primary keys, users by username
    predictions/<id>/overlay/<file>       the prediction's stored files (always included)
    predictions/<id>/seg/<file>
    series/<id>/<file>                    the de-identified DICOM files of each series (left out with images=False)

Rows keep their original ids so that references inside the archive can be followed; restore inserts fresh rows
and remaps every foreign key. Series paths are stored relative to the study's storage folder
(``MEDIA_ROOT/studies/<id>/``) and restored under the new study's folder.

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
  mistaken for a row of the target database. Actions append one ``restore_study`` event that names the archive,
  its sha256 and the source study.
- Read idempotency keys are unique per reader across studies. A key that the reader already used in the target
  database (always the case when a study is restored beside its source) is replaced by a derived key
  (``restored-<sha256(new study id, old key)[:40]>``); the restore event counts them.
- Exports, analysis runs and precompute runs are derived and are not backed up; run them again after a restore.
"""

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, models, transaction
from django.utils import timezone
from tqdm import tqdm

from inference.models import Prediction
from readerstudy.core import audit
from readerstudy.core.errors import Conflict, InvalidInput, NotAllowed
from readerstudy.core.models import AuditEvent, Verb
from readerstudy.reading.models import Read, ReadingSession, SessionItem
from readerstudy.studies.ingest import study_storage
from readerstudy.studies.models import Case, ImageSeries, Membership, Modality, Patient, Study, Truth

FORMAT = "readerstudy-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHUNK = 1 << 20

# Table name -> model, in insertion order (every foreign key points to an earlier table).
TABLES: dict[str, type[models.Model]] = {
    "study": Study,
    "modalities": Modality,
    "memberships": Membership,
    "patients": Patient,
    "series": ImageSeries,
    "cases": Case,
    "truth": Truth,
    "predictions": Prediction,  # before reads: a read names the prediction its reader was shown
    "sessions": ReadingSession,
    "items": SessionItem,
    "reads": Read,
    "audit_events": AuditEvent,
}
FILE_FIELDS = ("overlay", "seg")  # Prediction's FileFields


class BackupError(InvalidInput):
    """A backup that cannot be written, or an archive that is refused (bad format, bad checksum, bad content)."""


# --- helpers ----------------------------------------------------------------------------------------------------


def software_version() -> str:
    from readerstudy.results.runs import software_version as version  # pandas-heavy: only when needed

    return version()


class _HashingReader:
    """File-like wrapper that hashes what is read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def _safe_member(name: Any) -> PurePosixPath:
    """Archive member names are relative POSIX paths without '.', '..' or empty parts (no escaping the folder)."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        raise BackupError(f"archive member name {name!r} is not allowed")
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
        raise BackupError(f"archive member name {name!r} is not allowed")
    return path


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _user_model() -> type[models.Model]:
    return get_user_model()


# --- backup -----------------------------------------------------------------------------------------------------


@dataclass
class _Member:
    name: str
    data: bytes | None = None  # in-memory member (tables)
    path: Path | None = None  # or a file on disk (series) ...
    storage_name: str | None = None  # ... or a file in default storage (prediction files)
    sha256: str = ""
    size: int = 0


def _querysets(study: Study) -> dict[str, models.QuerySet]:
    return {
        "study": Study.objects.filter(pk=study.pk),
        "modalities": Modality.objects.filter(study=study),
        "memberships": Membership.objects.filter(study=study),
        "patients": Patient.objects.filter(study=study),
        "series": ImageSeries.objects.filter(patient__study=study),
        "cases": Case.objects.filter(study=study),
        "truth": Truth.objects.filter(case__study=study),
        "sessions": ReadingSession.objects.filter(study=study),
        "items": SessionItem.objects.filter(session__study=study),
        "reads": Read.objects.filter(study=study),
        "predictions": Prediction.objects.filter(case__study=study),
        "audit_events": AuditEvent.objects.filter(study=study),
    }


def _dump_row(obj: models.Model, usernames: dict[Any, str]) -> dict:
    user_model = _user_model()
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


def _relative_series_path(series: ImageSeries, root: Path) -> str:
    try:
        rel = Path(series.path).resolve().relative_to(root.resolve())
    except ValueError:
        rel = Path("external") / f"series-{series.pk}"  # not in the study's folder (older imports): give it one
    return rel.as_posix()


def _collect(study: Study, images: bool) -> tuple[list[_Member], dict[str, int], dict[str, list[dict]]]:
    """Dump every table from one consistent snapshot; list the files that go with it."""
    querysets = _querysets(study)
    rows: dict[str, list[dict]] = {}
    user_model = _user_model()
    objects = {name: list(qs.order_by("pk")) for name, qs in querysets.items()}
    objects["audit_events"].sort(key=lambda e: (e.created_at, e.pk))
    user_ids: set[Any] = set()
    for name, objs in objects.items():
        for f in TABLES[name]._meta.concrete_fields:
            if f.is_relation and f.related_model is user_model:
                user_ids |= {getattr(o, f.attname) for o in objs} - {None}
    users = list(user_model.objects.filter(pk__in=user_ids).order_by(user_model.USERNAME_FIELD))
    usernames = {u.pk: u.get_username() for u in users}
    rows["users"] = [
        {
            "username": u.get_username(),
            **{k: getattr(u, k) for k in ("first_name", "last_name", "email") if hasattr(u, k)},
        }
        for u in users
    ]
    root = study_storage(study)
    members: list[_Member] = []
    series_files: list[_Member] = []
    for name, objs in objects.items():
        rows[name] = []
        for obj in objs:
            row = _dump_row(obj, usernames)
            if isinstance(obj, ImageSeries):
                row["path"] = _relative_series_path(obj, root)
                if images:
                    folder = Path(obj.path)
                    if not folder.is_dir():
                        raise BackupError(f"series {obj.pk}: folder {folder} is missing (use images=False?)")
                    for file in sorted(p for p in folder.iterdir() if p.is_file()):
                        series_files.append(_Member(f"series/{obj.pk}/{file.name}", path=file))
            if isinstance(obj, Prediction):
                for field_name in FILE_FIELDS:
                    stored = row[field_name]
                    if stored:
                        member = f"predictions/{obj.pk}/{field_name}/{PurePosixPath(stored).name}"
                        members.append(_Member(member, storage_name=stored))
            rows[name].append(row)
    counts = {name: len(table) for name, table in rows.items()}
    tables = [
        _Member(
            f"tables/{name}.jsonl",
            data=b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in table),
        )
        for name, table in rows.items()
    ]
    return tables + members + series_files, counts, rows


def _snapshot(study: Study, images: bool) -> tuple[list[_Member], dict[str, int], dict[str, list[dict]]]:
    # All tables from one snapshot, so that a read submitted meanwhile is either in (with its audit event) or out.
    outer = connection.in_atomic_block
    with transaction.atomic():
        if not outer and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return _collect(Study.objects.get(pk=study.pk), images)


def _open_member(member: _Member) -> IO[bytes]:
    if member.path is not None:
        return member.path.open("rb")
    return default_storage.open(member.storage_name, "rb")


def backup(study: Study, out: Path | str, images: bool = True, *, progress: bool = False) -> Path:
    """Write ``study`` to the tar.gz ``out`` (refused if it exists); returns its path. Reads only."""
    out = Path(out)
    if out.exists():
        raise BackupError(f"{out} exists already; choose another file name")
    members, counts, _ = _snapshot(study, images)
    for member in tqdm(members, desc="checksums", unit="file", disable=not progress):
        if member.data is not None:
            member.sha256, member.size = hashlib.sha256(member.data).hexdigest(), len(member.data)
            continue
        try:
            with _open_member(member) as f:
                digest, size = hashlib.sha256(), 0
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise BackupError(f"cannot read {member.path or member.storage_name} for {member.name}: {exc}") from None
        member.sha256, member.size = digest.hexdigest(), size
    created = timezone.now()
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "software_version": software_version(),
        "created_at": created.isoformat(),
        "study": {"id": study.pk, "name": study.name},
        "images": images,
        "counts": {**counts, "files": sum(1 for m in members if m.data is None)},
        "members": {m.name: {"sha256": m.sha256, "size": m.size} for m in members},
    }
    manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    mtime = int(created.timestamp())
    try:
        with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
            _add(tar, MANIFEST, len(manifest_bytes), _BytesReader(manifest_bytes), mtime)
            for member in tqdm(members, desc="archive", unit="file", disable=not progress):
                if member.data is not None:
                    _add(tar, member.name, member.size, _BytesReader(member.data), mtime)
                    continue
                with _open_member(member) as f:
                    reader = _HashingReader(f)
                    _add(tar, member.name, member.size, reader, mtime)
                    if reader.sha.hexdigest() != member.sha256 or reader.read(1):
                        raise BackupError(f"{member.path or member.storage_name} changed during the backup")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n is None or n < 0 else self.offset + n
        chunk = self.data[self.offset : end]
        self.offset += len(chunk)
        return chunk


def _add(tar: tarfile.TarFile, name: str, size: int, reader: Any, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    try:
        tar.addfile(info, reader)
    except OSError as exc:  # "unexpected end of data": the file shrank since it was hashed
        raise BackupError(f"{name}: {exc} (changed during the backup?)") from None


# --- restore ----------------------------------------------------------------------------------------------------


@dataclass
class _Verified:
    manifest: dict
    staging: Path
    sha256: str
    tables: dict[str, list[dict]] = field(default_factory=dict)


def _check_manifest(manifest: Any) -> dict:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"not a {FORMAT} archive (manifest.json names format {_get(manifest, 'format')!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BackupError(f"manifest.json: format_version {version!r} is not a number")
    if version != FORMAT_VERSION:
        newer = "newer than this software reads" if version > FORMAT_VERSION else "not supported"
        raise BackupError(f"archive format version {version} is {newer} (this software reads version {FORMAT_VERSION})")
    members = manifest.get("members")
    if not isinstance(members, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("size"), int)
        for v in members.values()
    ):
        raise BackupError("manifest.json: members must map each member name to its sha256 and size")
    for name in members:
        _safe_member(name)
    for table in ("users", *TABLES):
        if f"tables/{table}.jsonl" not in members:
            raise BackupError(f"manifest.json lists no member tables/{table}.jsonl")
    if not isinstance(manifest.get("counts"), dict) or not isinstance(manifest.get("study"), dict):
        raise BackupError("manifest.json: counts and study are missing")
    return manifest


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def _verify(archive: Path, staging: Path, progress: bool) -> _Verified:
    """Read the archive once: check the manifest, extract every member to ``staging`` and check its sha256."""
    try:
        raw = archive.open("rb")
    except OSError as exc:
        raise BackupError(f"cannot open {archive}: {exc}") from None
    with raw:
        hashing = _HashingReader(raw)
        try:
            with tarfile.open(fileobj=hashing, mode="r|gz") as tar:
                verified = _verify_members(tar, staging, progress)
            hashing.drain()
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise BackupError(f"{archive.name} is not a readable tar.gz archive: {exc}") from None
    verified.sha256 = hashing.sha.hexdigest()
    return verified


def _verify_members(tar: tarfile.TarFile, staging: Path, progress: bool) -> _Verified:
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isfile():
        raise BackupError(f"the archive's first member must be {MANIFEST}")
    try:
        manifest = _check_manifest(json.loads(tar.extractfile(first).read()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"{MANIFEST} is not valid JSON: {exc}") from None
    expected: dict[str, dict] = manifest["members"]
    seen: set[str] = set()
    with tqdm(total=len(expected), desc="verify", unit="file", disable=not progress) as bar:
        while (info := tar.next()) is not None:  # not `for info in tar`: that yields the manifest again
            name = info.name
            _safe_member(name)
            if not info.isfile():
                raise BackupError(f"archive member {name} is not a regular file")
            if name not in expected:
                raise BackupError(f"archive member {name} is not listed in {MANIFEST}")
            if name in seen:
                raise BackupError(f"archive member {name} appears twice")
            seen.add(name)
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            digest, size = hashlib.sha256(), 0
            source = tar.extractfile(info)
            with target.open("wb") as out:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            want = expected[name]
            if digest.hexdigest() != want["sha256"] or size != want["size"]:
                raise BackupError(
                    f"archive member {name} is corrupt: sha256 {digest.hexdigest()} ({size} bytes), "
                    f"manifest says {want['sha256']} ({want['size']} bytes)"
                )
            bar.update()
    missing = sorted(set(expected) - seen)
    if missing:
        raise BackupError(f"archive members missing: {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else ""))
    verified = _Verified(manifest, staging, "")
    for table in ("users", *TABLES):
        name = f"tables/{table}.jsonl"
        try:
            lines = (staging / name).read_text(encoding="utf-8").splitlines()
            verified.tables[table] = [json.loads(line) for line in lines if line.strip()]
        except (ValueError, UnicodeDecodeError) as exc:
            raise BackupError(f"archive member {name} is not JSON lines: {exc}") from None
        if not all(isinstance(r, dict) for r in verified.tables[table]):
            raise BackupError(f"archive member {name}: every line must be a JSON object")
        count = manifest["counts"].get(table)
        if count != len(verified.tables[table]):
            raise BackupError(f"archive member {name} holds {len(verified.tables[table])} rows, manifest says {count}")
    if len(verified.tables["study"]) != 1:
        raise BackupError("archive member tables/study.jsonl must hold exactly one study")
    return verified


class _Restorer:
    """Inserts the verified tables (inside the caller's transaction), remapping every key."""

    def __init__(self, verified: _Verified, study_name: str) -> None:
        self.v = verified
        self.study_name = study_name
        self.maps: dict[type[models.Model], dict[Any, Any]] = {model: {} for model in TABLES.values()}
        self.users: dict[str, Any] = {}
        self.users_created: list[str] = []
        self.keys_rewritten = 0
        self.written: list[Path] = []  # files and folders to remove if the restore fails
        self.saved: list[str] = []  # storage names to delete if the restore fails
        self.study: Study | None = None

    # users --------------------------------------------------------------------------------------------------------
    def restore_users(self) -> None:
        user_model = _user_model()
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
        unknown = set(row) - set(fields)
        if unknown:
            raise BackupError(
                f"archive member tables/{table}.jsonl: unknown column(s) {', '.join(sorted(unknown))} "
                "(written by a newer version of the software?)"
            )
        user_model = _user_model()
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
        return self.study

    def prepare_study(self, objs: list[Study], rows: list[dict]) -> None:
        objs[0].name = self.study_name
        if Study.objects.filter(name=self.study_name).exists():
            raise Conflict(f"a study named {self.study_name!r} exists already; restore with a new name (--rename)")

    def place_series_folder(self) -> None:
        self.root = study_storage(self.study)
        if self.root.exists():
            raise BackupError(f"{self.root} exists already; refusing to mix files of two studies")
        self.root.mkdir(parents=True)
        self.written.append(self.root)

    def prepare_series(self, objs: list[ImageSeries], rows: list[dict]) -> None:
        for obj, row in zip(objs, rows, strict=True):
            try:
                rel = _safe_member(row.get("path"))
            except BackupError:
                raise BackupError(f"tables/series.jsonl row {row.get('id')}: path {row.get('path')!r}") from None
            target = self.root.joinpath(*rel.parts)
            staged = self.v.staging / "series" / str(row.get("id"))
            if staged.is_dir():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(staged, target)  # same file system as MEDIA_ROOT: a rename
            obj.path = str(target)

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

    def cleanup(self) -> None:
        for name in self.saved:
            try:
                default_storage.delete(name)
                Path(default_storage.path(name)).parent.rmdir()  # the new study's folder, once empty
            except (OSError, NotImplementedError):
                pass
        for path in self.written:
            shutil.rmtree(path, ignore_errors=True)


def _sortable(value: Any) -> Any:
    """Ids are integers in this schema; an id given as a digit string (audit object ids) sorts and maps the same."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def restore(archive: Path | str, actor: Any, rename: str | None = None, *, progress: bool = False) -> Study:
    """Restore a backup archive as a new study, all or nothing; returns the study.

    ``actor`` is recorded on the ``restore_study`` event; it must be staff (or None for the server's command line).
    """
    archive = Path(archive)
    if actor is not None and not (getattr(actor, "is_staff", False) or getattr(actor, "is_superuser", False)):
        raise NotAllowed(f"{actor} may not restore studies (staff only)")
    if rename is not None:
        rename = rename.strip()
        if not rename:
            raise InvalidInput("--rename needs a name")
    media = Path(settings.MEDIA_ROOT) / "studies"
    media.mkdir(parents=True, exist_ok=True)
    # Staged on the same file system as MEDIA_ROOT, so series folders are moved into place, not copied.
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=media))
    started = time.monotonic()
    try:
        verified = _verify(archive, staging, progress)
        manifest = verified.manifest
        source = verified.tables["study"][0]
        name = rename or source.get("name")
        if not isinstance(name, str) or not name:
            raise BackupError("archive member tables/study.jsonl: the study has no name")
        if Study.objects.filter(name=name).exists():
            raise Conflict(f"a study named {name!r} exists already; restore with a new name (--rename)")
        restorer = _Restorer(verified, name)
        try:
            with transaction.atomic():
                restorer.restore_users()
                study = restorer.restore_tables(progress)
                audit.record(
                    actor,
                    Verb.RESTORE_STUDY,
                    study,
                    study=study,
                    after={
                        "archive": archive.name,
                        "archive_sha256": verified.sha256,
                        "format_version": manifest["format_version"],
                        "software_version": manifest.get("software_version"),
                        "backup_created_at": manifest.get("created_at"),
                        "source_study": manifest["study"],
                        "name": study.name,
                        "counts": {t: len(verified.tables[t]) for t in ("users", *TABLES)},
                        "images": bool(manifest.get("images")),
                        "users_created": restorer.users_created,
                        "idempotency_keys_rewritten": restorer.keys_rewritten,
                        "seconds": round(time.monotonic() - started, 3),
                    },
                )
        except BaseException:
            restorer.cleanup()
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return study


def archive_summary(archive: Path | str) -> dict:
    """The manifest of an archive (no verification): for printing what a restore would bring."""
    with tarfile.open(archive, "r|gz") as tar:
        first = tar.next()
        if first is None or first.name != MANIFEST:
            raise BackupError(f"the archive's first member must be {MANIFEST}")
        return json.loads(tar.extractfile(first).read())
