"""Starting case imports from the browser: stage the upload, queue the run through ``studies.actions``, enqueue
its task on commit.

Kept apart from actions.py because the task runs ``studies.importing``, which calls actions.py: the starter is the
one module that knows both. The uploaded files are staged through Django's storage (``imports/<study>/upload-
<uuid>/``, generated names), so a task worker on another machine finds them; the task removes them when it ends.
"""

import uuid

from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from readerstudy.core.types import Actor
from readerstudy.studies import actions, storage
from readerstudy.studies.importing import DEFAULT_MANIFEST_NAME, DEFAULT_ZIP_NAME, import_folder, safe_name
from readerstudy.studies.models import ImportRun, Study
from readerstudy.studies.tasks import import_task


def _start(run: ImportRun) -> ImportRun:
    # On commit: the worker must find the run, and a rolled-back start must run nothing.
    transaction.on_commit(lambda: import_task.enqueue(run_id=run.pk))
    return run


def start_upload_import(actor: Actor, study: Study, *, manifest: UploadedFile, archive: UploadedFile) -> ImportRun:
    """Queue the import of an uploaded manifest and zip of series (admins of a draft study only)."""
    actions.check_import(actor, study)  # before a byte is staged
    manifest_name = safe_name(manifest.name, DEFAULT_MANIFEST_NAME, ".csv")
    zip_name = "".join(c for c in str(archive.name or DEFAULT_ZIP_NAME) if c.isprintable())[:255]
    prefix = f"imports/{int(study.pk)}/upload-{uuid.uuid4().hex}"
    staged: list[str] = []
    try:
        for name, upload in ((f"{prefix}/manifest.csv", manifest), (f"{prefix}/series.zip", archive)):
            staged.append(name)
            storage.save_upload(name, upload)
        with transaction.atomic():
            run = actions.queue_import(
                actor,
                study,
                source=ImportRun.Source.UPLOAD,
                origin=zip_name,
                manifest_name=manifest_name,
                staged_manifest=staged[0],
                staged_zip=staged[1],
            )
            return _start(run)
    except BaseException:
        storage.delete_files(staged, storage.parents(staged[0], "imports"))
        raise


def start_folder_import(actor: Actor, study: Study, *, folder: str) -> ImportRun:
    """Queue the import of a folder of the server's import area (one of the listed ones, by name)."""
    actions.check_import(actor, study)
    import_folder(folder)  # one of the listed folders, or InvalidInput
    with transaction.atomic():
        run = actions.queue_import(
            actor, study, source=ImportRun.Source.FOLDER, origin=folder, manifest_name="manifest.csv"
        )
        return _start(run)
