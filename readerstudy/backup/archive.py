"""The backup archive format: members, manifest, checksums, versions. Pure: no Django (tarfile, json, hashlib).

Format "readerstudy-backup", version 3 (version 1 had no ``tables/case_series.jsonl``: every case had one series,
restored as its primary series; version 2 had no ``reference_masks/`` members: a series' ``reference_mask`` held the
source's storage name of a file it did not carry; this software reads all three)::

    manifest.json                         first member: format, versions, study, row counts, sha256 of every member
    tables/<table>.jsonl                  one JSON object per row, original primary keys, users by username
    predictions/<id>/overlay/<file>       the prediction's stored files (always included)
    predictions/<id>/seg/<file>
    reference_masks/<series id>/<file>    each series' imported reference mask (.npz, always included; the series
                                          row's reference_mask is its path relative to the study's folder)
    series/<id>/<file>                    the de-identified DICOM files of each series (left out with images=False)

Reading verifies everything before anything is written to a database: the manifest's format and version, that
every member is listed, safe to extract and matches its sha256 and size, and that every table parses.
"""

import hashlib
import json
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

from tqdm import tqdm

from readerstudy.core.errors import InvalidInput

FORMAT = "readerstudy-backup"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
REFERENCE_MASKS_SINCE = 3  # the version from which series rows' reference masks travel with the archive
MANIFEST = "manifest.json"
CHUNK = 1 << 20

# In insertion order: every foreign key points to an earlier table (dump.TABLES maps them to models).
TABLE_NAMES = (
    "study",
    "modalities",
    "memberships",
    "patients",
    "series",
    "cases",
    "case_series",  # since version 2: the series of each case by role and position
    "truth",
    "predictions",  # before reads: a read names the prediction its reader was shown
    "sessions",
    "items",
    "reads",
    "audit_events",
)
ALL_TABLES = ("users", *TABLE_NAMES)
# Tables an archive of an older version does not have: restored empty (restore.py derives what they held).
ADDED_IN: dict[str, int] = {"case_series": 2}


def tables_of(version: int) -> tuple[str, ...]:
    """The tables an archive of ``version`` holds."""
    return tuple(t for t in ALL_TABLES if ADDED_IN.get(t, 1) <= version)


class BackupError(InvalidInput):
    """A backup that cannot be written, or an archive that is refused (bad format, bad checksum, bad content)."""


@dataclass
class Member:
    """One archive member: in-memory bytes (tables) or a file opened on demand (series, prediction files)."""

    name: str
    data: bytes | None = None
    opener: Callable[[], IO[bytes]] | None = None
    source: str = ""  # where an opened file comes from, for messages
    sha256: str = ""
    size: int = 0

    def open(self) -> IO[bytes]:
        assert self.opener is not None  # a file member (data is None) always has its opener
        return self.opener()


@dataclass
class Verified:
    """An archive that passed every check, its members extracted to ``staging``."""

    manifest: dict
    staging: Path
    sha256: str
    tables: dict[str, list[dict]] = field(default_factory=dict)


class HashingReader:
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


class _HashingWriter:
    """File-like wrapper that hashes what is written through it (the archive's own sha256, in one pass)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n is None or n < 0 else self.offset + n
        chunk = self.data[self.offset : end]
        self.offset += len(chunk)
        return chunk


def safe_member(name: Any) -> PurePosixPath:
    """Archive member names are relative POSIX paths without '.', '..' or empty parts (no escaping the folder)."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        raise BackupError(f"archive member name {name!r} is not allowed")
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
        raise BackupError(f"archive member name {name!r} is not allowed")
    return path


def table_member(name: str, rows: Iterable[dict]) -> Member:
    return Member(f"tables/{name}.jsonl", data=b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in rows))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- writing ----------------------------------------------------------------------------------------------------


def hash_members(members: list[Member], *, progress: bool = False) -> None:
    """Fill in each member's sha256 and size (read once here, once more while archiving)."""
    for member in tqdm(members, desc="checksums", unit="file", disable=not progress):
        if member.data is not None:
            member.sha256, member.size = hashlib.sha256(member.data).hexdigest(), len(member.data)
            continue
        try:
            with member.open() as f:
                digest, size = hashlib.sha256(), 0
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise BackupError(f"cannot read {member.source} for {member.name}: {exc}") from None
        member.sha256, member.size = digest.hexdigest(), size


def build_manifest(
    *,
    software_version: str,
    created_at: datetime,
    study: dict,
    images: bool,
    counts: dict[str, int],
    members: list[Member],
) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "software_version": software_version,
        "created_at": created_at.isoformat(),
        "study": study,
        "images": images,
        "counts": {**counts, "files": sum(1 for m in members if m.data is None)},
        "members": {m.name: {"sha256": m.sha256, "size": m.size} for m in members},
    }


def write_archive(path: Path, manifest: dict, members: list[Member], *, progress: bool = False) -> tuple[str, int]:
    """Write the tar.gz to ``path`` (manifest first); returns its sha256 and size. Members must be hashed."""
    manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True).encode()
    mtime = int(datetime.fromisoformat(manifest["created_at"]).timestamp())
    with path.open("wb") as raw:
        out = _HashingWriter(raw)
        # The stub wants a full file object; writing a tar.gz in order uses only write() and flush().
        with tarfile.open(fileobj=out, mode="w:gz", compresslevel=6) as tar:  # type: ignore[call-overload]
            _add(tar, MANIFEST, len(manifest_bytes), _BytesReader(manifest_bytes), mtime)
            for member in tqdm(members, desc="archive", unit="file", disable=not progress):
                if member.data is not None:
                    _add(tar, member.name, member.size, _BytesReader(member.data), mtime)
                    continue
                with member.open() as f:
                    reader = HashingReader(f)
                    _add(tar, member.name, member.size, reader, mtime)
                    if reader.sha.hexdigest() != member.sha256 or reader.read(1):
                        raise BackupError(f"{member.source} changed during the backup")
    return out.sha.hexdigest(), out.size


def _add(tar: tarfile.TarFile, name: str, size: int, reader: Any, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    try:
        tar.addfile(info, reader)
    except OSError as exc:  # "unexpected end of data": the file shrank since it was hashed
        raise BackupError(f"{name}: {exc} (changed during the backup?)") from None


# --- reading ----------------------------------------------------------------------------------------------------


def check_manifest(manifest: Any) -> dict:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"not a {FORMAT} archive (manifest.json names format {_get(manifest, 'format')!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BackupError(f"manifest.json: format_version {version!r} is not a number")
    if version not in READABLE_VERSIONS:
        newer = "newer than this software reads" if version > FORMAT_VERSION else "not supported"
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        raise BackupError(f"archive format version {version} is {newer} (this software reads versions {readable})")
    members = manifest.get("members")
    if not isinstance(members, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("size"), int)
        for v in members.values()
    ):
        raise BackupError("manifest.json: members must map each member name to its sha256 and size")
    for name in members:
        safe_member(name)
    for table in tables_of(version):
        if f"tables/{table}.jsonl" not in members:
            raise BackupError(f"manifest.json lists no member tables/{table}.jsonl")
    if not isinstance(manifest.get("counts"), dict) or not isinstance(manifest.get("study"), dict):
        raise BackupError("manifest.json: counts and study are missing")
    return manifest


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def verify(archive: Path, staging: Path, *, progress: bool = False) -> Verified:
    """Read the archive once: check the manifest, extract every member to ``staging`` and check its sha256."""
    try:
        raw = archive.open("rb")
    except OSError as exc:
        raise BackupError(f"cannot open {archive}: {exc}") from None
    with raw:
        hashing = HashingReader(raw)
        try:
            # The stub wants a full file object; a stream ("r|") is only read().
            with tarfile.open(fileobj=hashing, mode="r|gz") as tar:  # type: ignore[call-overload]
                verified = _verify_members(tar, staging, progress)
            hashing.drain()
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise BackupError(f"{archive.name} is not a readable tar.gz archive: {exc}") from None
    verified.sha256 = hashing.sha.hexdigest()
    return verified


def _verify_members(tar: tarfile.TarFile, staging: Path, progress: bool) -> Verified:  # noqa: C901
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isfile():
        raise BackupError(f"the archive's first member must be {MANIFEST}")
    try:
        manifest = check_manifest(json.loads(_regular_file(tar, first).read()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"{MANIFEST} is not valid JSON: {exc}") from None
    expected: dict[str, dict] = manifest["members"]
    seen: set[str] = set()
    with tqdm(total=len(expected), desc="verify", unit="file", disable=not progress) as bar:
        while (info := tar.next()) is not None:  # not `for info in tar`: that yields the manifest again
            name = info.name
            safe_member(name)
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
            source = _regular_file(tar, info)
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
    verified = Verified(manifest, staging, "")
    present = tables_of(manifest["format_version"])
    for table in ALL_TABLES:
        if table not in present:
            verified.tables[table] = []
            continue
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


def _regular_file(tar: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    f = tar.extractfile(info)
    assert f is not None  # the callers checked info.isfile(): extractfile gives None only for others
    return f


def read_manifest(archive: Path | str) -> dict:
    """The manifest of an archive (no verification): for printing what a restore would bring."""
    with tarfile.open(archive, "r|gz") as tar:
        first = tar.next()
        if first is None or first.name != MANIFEST:
            raise BackupError(f"the archive's first member must be {MANIFEST}")
        # Not checked to be a regular file here: an archive whose manifest is not one fails on read().
        return json.loads(cast(IO[bytes], tar.extractfile(first)).read())
