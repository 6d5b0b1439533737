"""Running one ImportRun: whatever its source, the cases go through the one import path, ``actions.import_cases``.

- *upload*: the staged zip is checked and extracted (``studies.archive``: no member leaves the folder, no zip
  bomb) into a fresh temporary folder, the staged manifest is written at its top, and the manifest's series paths
  are read relative to it; the folder is removed whatever happens, and so are the staged files.
- *folder*: a direct subfolder of the server's import area (``IMPORT_ROOT``), named by the run and found again by
  listing the area (never a path from the user); its ``manifest.csv`` names series relative to it.
- *command*: the manifest path given on the command line.

Only actions write: progress through ``actions.import_progress``, the outcome through ``actions.finish_import``.
Every problem is stored as ``{"file", "row", "column", "reason"}`` (the page lists them).
"""

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from readerstudy.core.errors import ActionError, InvalidInput
from readerstudy.core.types import Actor
from readerstudy.studies import actions, storage
from readerstudy.studies.archive import ZipLimits, ZipRefused, extract_zip
from readerstudy.studies.models import ImportRun

FOLDER_MANIFEST = "manifest.csv"  # the manifest of a server import folder, at its top
MAX_FOLDERS = 500  # listed in the form
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
DEFAULT_MANIFEST_NAME = "manifest.csv"
DEFAULT_ZIP_NAME = "series.zip"

Progress = Callable[[str, int, int], None]


def zip_limits() -> ZipLimits:
    return ZipLimits(
        max_members=settings.IMPORT_ZIP_MAX_MEMBERS,
        max_total_bytes=settings.IMPORT_ZIP_MAX_UNCOMPRESSED_BYTES,
        max_ratio=settings.IMPORT_ZIP_MAX_RATIO,
    )


def safe_name(name: str | None, default: str, suffix: str) -> str:
    """An uploaded file's name if it is a plain, short file name with ``suffix``, else ``default``.

    The manifest's name appears in every error message and is the name it is written under: no user text becomes
    a path unless it is this conservative.
    """
    if name and _SAFE_NAME.match(name) and name.lower().endswith(suffix) and ".." not in name:
        return name
    return default


# --- the server's import area ---------------------------------------------------------------------------------


def import_root() -> Path | None:
    root = getattr(settings, "IMPORT_ROOT", None)
    return Path(root).resolve() if root else None


def import_folders() -> list[str]:
    """The names of the import area's direct subfolders (not hidden, not symbolic links), sorted; none if unset."""
    root = import_root()
    if root is None:
        return []
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name)
    except OSError:
        return []
    names = [p.name for p in entries if not p.name.startswith(".") and not p.is_symlink() and p.is_dir()]
    return names[:MAX_FOLDERS]


def import_folder(name: str) -> Path:
    """The folder of the import area named ``name``, which must be one of :func:`import_folders` exactly."""
    root = import_root()
    if root is None:
        raise InvalidInput("no server import area is configured (IMPORT_ROOT)")
    if not isinstance(name, str) or name not in import_folders():
        raise InvalidInput(f"{_show(name)} is not a folder of the server import area; pick a listed one")
    return root / name


def _show(value: object) -> str:
    text = str(value)
    return repr(text) if len(text) <= 40 else repr(text[:40]) + f"... ({len(text)} characters)"


# --- problems as rows --------------------------------------------------------------------------------------------


def problem(file: str, reason: str, row: int | None = None, column: str | None = None) -> dict:
    return {"file": file, "row": row, "column": column, "reason": reason}


def parse_problem(text: str, file: str) -> dict:
    """``"<file> row R column C: reason"`` (as the manifest check and the ingest write them) as an object."""
    match = re.match(rf"^{re.escape(file)}(?: row (\d+))?(?: column ([A-Za-z0-9_]+))?: (.*)$", text, re.DOTALL)
    if match is None:
        return problem(file, text)
    row, column, reason = match.groups()
    return problem(file, reason, int(row) if row else None, column)


def problems_of(exc: ActionError, file: str) -> list[dict]:
    if exc.details:
        return [parse_problem(d, file) for d in exc.details]
    return [problem(file, exc.message)]


# --- running a run -------------------------------------------------------------------------------------------------


def run_import(run: ImportRun, *, manifest: Path | None = None, on_progress: Progress | None = None) -> ImportRun:
    """Import what ``run`` names and store its outcome; an unexpected error is stored, then raised."""

    def progress(stage: str, done: int, total: int) -> None:
        actions.import_progress(run, stage, done, total)
        if on_progress is not None:
            on_progress(stage, done, total)

    try:
        if run.source == ImportRun.Source.UPLOAD:
            summary = _import_upload(run, progress)
        elif run.source == ImportRun.Source.FOLDER:
            summary = _import_folder(run, progress)
        else:
            if manifest is None:
                raise InvalidInput("a command-line import needs its manifest path")
            summary = actions.import_cases(_actor(run), run.study, manifest, progress=progress)
    except ZipRefused as exc:
        return actions.finish_import(run, problems=[problem(run.origin or "zip", p) for p in exc.problems])
    except ActionError as exc:
        return actions.finish_import(run, problems=problems_of(exc, run.manifest_name))
    except Exception as exc:
        reason = f"the import stopped with an unexpected error ({type(exc).__name__}); nothing was imported"
        actions.finish_import(run, problems=[problem(run.manifest_name, reason)])
        raise
    finally:
        _remove_staged(run)
    return actions.finish_import(run, summary=summary)


def _actor(run: ImportRun) -> Actor:
    if run.created_by is None:  # PROTECT keeps the user; a run without one was never started by anyone
        raise InvalidInput("the import run has no user to act as")
    return run.created_by


def _import_upload(run: ImportRun, progress: Progress) -> actions.ImportSummary:
    with tempfile.TemporaryDirectory(prefix="readerstudy-import-") as tmp:  # removed whatever happens
        work = Path(tmp)
        archive = work / "upload.zip"
        root = work / "series"
        root.mkdir()
        storage.download(run.staged_zip, archive)
        progress("extracting the zip", 0, 1)
        extract_zip(archive, root, zip_limits())
        archive.unlink()  # the space it took is the import's to use
        manifest = root / run.manifest_name
        if manifest.exists() or manifest.is_symlink():
            raise ZipRefused([f"the zip holds {run.manifest_name!r} at its top, the manifest's own name; rename one"])
        storage.download(run.staged_manifest, manifest)
        return actions.import_cases(_actor(run), run.study, manifest, progress=progress)


def _import_folder(run: ImportRun, progress: Progress) -> actions.ImportSummary:
    folder = import_folder(run.origin)
    manifest = folder / FOLDER_MANIFEST
    if not manifest.is_file():
        raise InvalidInput(f"the import folder {run.origin!r} has no {FOLDER_MANIFEST} at its top")
    return actions.import_cases(_actor(run), run.study, manifest, progress=progress)


def _remove_staged(run: ImportRun) -> None:
    names = [n for n in (run.staged_manifest, run.staged_zip) if n]
    if names:
        storage.delete_files(names, storage.parents(names[0], "imports"))
