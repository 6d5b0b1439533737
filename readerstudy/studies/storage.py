"""Series files in Django's storage (``default_storage``): storage names, never machine paths.

A series is stored as ``<storage_prefix>/<file>`` for each name in ``ImageSeries.slice_files``, with a prefix
such as ``studies/<id>/import-<uuid>/series-<n>``. Everything goes through the storage API (save, open, exists,
delete, listdir), so a non-filesystem storage (S3, ``InMemoryStorage`` in the tests) works unchanged. This is the
one module that may know about a file system: :func:`local_series_folder` for code that needs a folder (the
inference pipeline) and the symbolic-link check in :func:`save_file`.
"""

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from django.core.files import File
from django.core.files.storage import FileSystemStorage, default_storage

if TYPE_CHECKING:
    from readerstudy.studies.models import ImageSeries, Study


class StorageError(RuntimeError):
    """A storage name that would lie outside the storage or exists already (never expected)."""


def study_prefix(study: "Study") -> str:
    """The storage name under which a study's series live."""
    return f"studies/{int(study.pk)}"


def slice_name(series: "ImageSeries", index: int) -> str:
    """The storage name of the ``index``-th slice (in the order of ``slice_positions_mm``)."""
    return f"{series.storage_prefix}/{series.slice_files[index]}"


def series_names(series: "ImageSeries") -> list[str]:
    return [f"{series.storage_prefix}/{name}" for name in series.slice_files]


def _is_filesystem() -> bool:
    # Not "has a path() method": InMemoryStorage has one too, returning a path under MEDIA_ROOT that holds nothing.
    return isinstance(default_storage, FileSystemStorage)


def _check_inside(name: str) -> None:
    if _is_filesystem():
        # A symbolic link planted for a folder (e.g. studies/<id>) would carry the write elsewhere: safe_join only
        # compares the unresolved path.
        root = Path(default_storage.location).resolve()  # type: ignore[attr-defined]  # FileSystemStorage's
        if not Path(default_storage.path(name)).resolve().is_relative_to(root):
            raise StorageError(f"storage name {name} resolves outside the storage {root}")


def save_file(name: str, source: Path) -> str:
    """Save the local file ``source`` as ``name``; returns ``name``. Refuses to rename or to leave the storage."""
    _check_inside(name)
    with source.open("rb") as f:
        saved = default_storage.save(name, File(f))
    if saved != name:  # the storage picked another name: ours existed already
        default_storage.delete(saved)
        raise StorageError(f"storage name {name} exists already")
    return saved


def save_upload(name: str, upload: File) -> str:
    """Save an uploaded file (e.g. a staged zip) as ``name``; like :func:`save_file`, never renamed or outside.

    FileSystemStorage moves a temporary upload into place rather than copying it (the request streamed it to disk).
    """
    _check_inside(name)
    saved = default_storage.save(name, upload)
    if saved != name:
        default_storage.delete(saved)
        raise StorageError(f"storage name {name} exists already")
    return saved


def download(name: str, target: Path) -> None:
    """Copy the stored file ``name`` to the new local file ``target`` (created exclusively: never overwritten)."""
    with default_storage.open(name, "rb") as src, target.open("xb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)


def save_files(files: Iterable[tuple[str, Path]], saved: list[str]) -> None:
    """Save each ``(storage name, local file)``; ``saved`` gets every name that may now hold our bytes (to undo)."""
    for name, source in files:
        try:
            save_file(name, source)
        except StorageError:
            raise  # the name is not ours (it existed already or lies elsewhere): never delete it
        except BaseException:
            saved.append(name)  # a failure midway may leave a partly written file
            raise
        saved.append(name)


def delete_files(names: Iterable[str], folders: Iterable[str] = ()) -> None:
    """Delete the stored files ``names``, then each of ``folders`` (give the deepest first) if it is empty.

    A folder is only removed when it holds nothing, so one that a concurrent writer is filling stays. (On object
    storages folders do not exist and this is a no-op.)
    """
    for name in names:
        default_storage.delete(name)
    for folder in folders:
        try:
            dirs, files = default_storage.listdir(folder)
            if not dirs and not files:
                default_storage.delete(folder)  # FileSystemStorage: rmdir, which also refuses a non-empty folder
        except (OSError, NotImplementedError):
            pass


def parents(name: str, stop: str = "") -> list[str]:
    """The folders above the storage name ``name``, deepest first, up to (not including) ``stop``."""
    out = []
    for parent in PurePosixPath(name).parents:
        text = parent.as_posix()
        if text in (".", stop):
            break
        out.append(text)
    return out


def series_readable(series: "ImageSeries") -> bool:
    """Whether every slice file of the series is in storage (one listing of its folder, not a lookup per slice:
    readiness runs on every Study admin page, and each lookup is a request on object storage)."""
    if not series.slice_files:
        return False
    try:
        _folders, files = default_storage.listdir(series.storage_prefix)
    except (OSError, NotImplementedError):
        return False
    return set(series.slice_files) <= set(files)


@contextmanager
def local_series_folder(series: "ImageSeries") -> Iterator[Path]:
    """A local folder holding the series' slice files, for code that reads a folder (the inference pipeline).

    With FileSystemStorage this is the stored folder itself (nothing copied). Any other storage has no local path:
    the files are downloaded into a temporary folder that is deleted when the block ends.
    """
    if _is_filesystem():
        yield Path(default_storage.path(series.storage_prefix))
        return
    with tempfile.TemporaryDirectory(prefix="series-") as tmp:
        folder = Path(tmp)
        for file_name, name in zip(series.slice_files, series_names(series), strict=True):
            with default_storage.open(name, "rb") as src, (folder / PurePosixPath(file_name).name).open("xb") as dst:
                shutil.copyfileobj(src, dst)
        yield folder
