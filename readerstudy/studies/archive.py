"""Checking and extracting an uploaded zip of DICOM series: nothing in it may leave the folder it is extracted to.

Everything about the archive is hostile: member names (absolute paths, ``..``, drive letters, backslashes,
control characters), member types (symbolic links, devices), sizes (zip bombs: a huge total, a huge compression
ratio, too many members) and duplicates. :func:`check_zip` reads only the central directory and reports every
problem by member name; :func:`extract_zip` refuses anything :func:`check_zip` refuses and then writes each member
exclusively (``open(..., "xb")``: no overwrite, no planted symlink followed) under a fresh folder, never writing
more bytes than the member declared (the zipfile module stops there and checks the CRC).

No Django here: the limits are arguments (the settings' values, see ``studies.importing``).
"""

import os
import re
import shutil
import stat
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

NAME_MAX_CHARS = 1024  # a member's whole name
PART_MAX_BYTES = 255  # one path component (Linux NAME_MAX)
MAX_PROBLEMS = 100
_DRIVE = re.compile(r"^[A-Za-z]:")
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ZipLimits:
    max_members: int = 100_000
    max_total_bytes: int = 8 * 1024**3  # uncompressed, all members together
    max_ratio: float = 200.0  # uncompressed / compressed, per member and overall


class ZipRefused(Exception):
    """The archive cannot be extracted safely; ``problems`` names every member and why (or the archive's fault)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""))
        self.problems = problems


def _show(name: str) -> str:
    return repr(name) if len(name) <= 80 else repr(name[:80]) + f"... ({len(name)} characters)"


def name_problem(name: str) -> str | None:
    """Why the member name ``name`` may not be extracted, or None when it may (as a relative POSIX path)."""
    if not name or name in ("/", "."):
        return "has an empty name"
    if len(name) > NAME_MAX_CHARS:
        return f"has a name longer than {NAME_MAX_CHARS} characters"
    odd = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if odd is not None:
        return f"contains the control character U+{ord(odd):04X}"
    if "\\" in name:
        return "contains a backslash (a Windows path separator); zip it with '/' separators"
    if name.startswith("/"):
        return "is an absolute path"
    if _DRIVE.match(name):
        return "starts with a drive letter"
    parts = name.rstrip("/").split("/")
    if any(part == ".." for part in parts):
        return "contains '..' (it would leave the extraction folder)"
    if any(part in ("", ".") for part in parts):
        return "contains an empty or '.' path component"
    if any(len(part.encode("utf-8", "surrogatepass")) > PART_MAX_BYTES for part in parts):
        return f"has a path component longer than {PART_MAX_BYTES} bytes"
    return None


def _type_problem(info: zipfile.ZipInfo) -> str | None:
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        return "is a symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "is not a regular file or folder"
    if info.flag_bits & 0x1:
        return "is encrypted"
    return None


def _member_problem(info: zipfile.ZipInfo, seen: dict[str, str], limits: ZipLimits) -> str | None:
    """Why the member ``info`` may not be extracted (``seen``: the accepted names so far, file or folder)."""
    problem = name_problem(info.filename) or _type_problem(info)
    if problem is not None:
        return problem
    key = info.filename.rstrip("/")
    if key in seen:
        return "appears twice in the archive"
    for parent in PurePosixPath(key).parents:
        if seen.get(parent.as_posix()) == "file":
            return f"lies under {parent.as_posix()!r}, which is a file"
    ratio = info.file_size / max(info.compress_size, 1)
    if not info.is_dir() and info.file_size > CHUNK and ratio > limits.max_ratio:
        return f"expands {ratio:.0f} times (limit {limits.max_ratio:g}): refused as a zip bomb"
    return None


def check_zip(archive: zipfile.ZipFile, limits: ZipLimits) -> list[zipfile.ZipInfo]:
    """The members to extract (files and folders), or ZipRefused listing every problem."""
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise ZipRefused([f"{len(infos)} members, more than the limit of {limits.max_members}"])
    problems: list[str] = []
    seen: dict[str, str] = {}
    total = compressed = 0
    for info in infos:
        problem = _member_problem(info, seen, limits)
        if problem is not None:
            problems.append(f"member {_show(info.filename)} {problem}")
            if len(problems) >= MAX_PROBLEMS:
                problems.append(f"stopped after {MAX_PROBLEMS} problems")
                break
            continue
        seen[info.filename.rstrip("/")] = "folder" if info.is_dir() else "file"
        total += info.file_size
        compressed += info.compress_size
    if total > limits.max_total_bytes:
        problems.append(
            f"the members expand to {total} bytes, more than the limit of {limits.max_total_bytes} bytes "
            f"({limits.max_total_bytes / 2**30:g} GiB)"
        )
    elif total > CHUNK and total / max(compressed, 1) > limits.max_ratio:
        problems.append(
            f"the archive expands {total / max(compressed, 1):.0f} times (limit {limits.max_ratio:g}): "
            "refused as a zip bomb"
        )
    if problems:
        raise ZipRefused(problems)
    return infos


def extract_zip(path: Path, target: Path, limits: ZipLimits) -> int:
    """Extract the zip file ``path`` into the existing empty folder ``target``; returns the number of files.

    Raises ZipRefused for an unsafe or broken archive (``target`` may then hold a part: the caller removes it).
    """
    root = target.resolve()
    try:
        with zipfile.ZipFile(path) as archive:
            infos = check_zip(archive, limits)
            free = shutil.disk_usage(root).free
            total = sum(i.file_size for i in infos)
            if total > free:
                raise ZipRefused([f"the members expand to {total} bytes; only {free} bytes are free on the server"])
            n_files = 0
            for info in infos:
                dest = root.joinpath(*info.filename.rstrip("/").split("/"))
                if not dest.resolve().is_relative_to(root):  # belt and braces: check_zip refused escapes already
                    raise ZipRefused([f"member {_show(info.filename)} would be written outside the folder"])
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                _extract_member(archive, info, dest)
                n_files += 1
    except zipfile.BadZipFile as exc:
        raise ZipRefused([f"not a readable zip file ({exc})"]) from None
    return n_files


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, open(dest, "xb") as out:
            shutil.copyfileobj(src, out, CHUNK)
        os.chmod(dest, 0o600)
    except FileExistsError:
        raise ZipRefused([f"member {_show(info.filename)} exists already (names differing only in case?)"]) from None
    except zipfile.BadZipFile as exc:  # e.g. a bad CRC
        raise ZipRefused([f"member {_show(info.filename)} is damaged ({exc})"]) from None
    except (NotImplementedError, EOFError, zipfile.LargeZipFile) as exc:  # e.g. an unsupported compression method
        raise ZipRefused([f"member {_show(info.filename)} cannot be extracted ({type(exc).__name__}: {exc})"]) from None
    except OSError as exc:  # a full disk, a file name the file system refuses
        raise ZipRefused([f"member {_show(info.filename)} cannot be written ({exc.strerror or exc})"]) from None
