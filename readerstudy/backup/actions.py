"""The one door for backups and restores: check permission, write, audit event, all or nothing.

Who may do what, and why:

- A backup holds the study's truth, every read and the audit trail, i.e. what readers and statisticians must not
  see before the analysis (and what no reader may see at all). Only the study's admins and superusers may write
  one; a reader or statistician is refused before anything is read.
- A restore creates a whole study, user accounts (without rights) and audit events on this server: superusers
  only. Study admins are scoped to their own studies and staff may create empty studies, but neither may bring
  in people and history from elsewhere.

Both directions append an audit event: ``backup_study`` to the source study (naming the archive and its sha256,
which the ``restore_study`` event of the copy repeats), ``restore_study`` to the restored study.
"""

import os
import time
import uuid
from pathlib import Path

from django.db import transaction

from readerstudy.backup import dump, restore
from readerstudy.backup.archive import BackupError
from readerstudy.core import audit
from readerstudy.core.errors import Conflict, InvalidInput, NotAllowed
from readerstudy.core.models import Verb
from readerstudy.core.types import Actor
from readerstudy.studies.actions import check_study_admin
from readerstudy.studies.models import Study


def backup_study(actor: Actor, study: Study, out: Path | str, *, images: bool = True, progress: bool = False) -> Path:
    """Write ``study`` to the tar.gz ``out`` (refused if it exists) and record it; returns the archive's path."""
    out = Path(out)
    check_study_admin(actor, study)
    if out.exists():
        raise BackupError(f"{out} exists already; choose another file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target, then renamed into place inside the event's transaction: no half archive is
    # ever visible under its name, and no archive stays without its event.
    partial = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    published = False
    try:
        written = dump.write(study, partial, images=images, progress=progress)
        with transaction.atomic():
            audit.record(
                actor,
                Verb.BACKUP_STUDY,
                study,
                study=study,
                after={
                    "archive": out.name,
                    "archive_sha256": written.sha256,
                    "bytes": written.size,
                    "format_version": written.manifest["format_version"],
                    "created_at": written.manifest["created_at"],
                    "images": images,
                    "counts": written.manifest["counts"],
                },
            )
            if out.exists():
                raise BackupError(f"{out} exists already; choose another file name")
            os.replace(partial, out)
            published = True
    except BaseException:
        if published:  # the event's transaction failed after the rename
            out.unlink(missing_ok=True)
        raise
    finally:
        partial.unlink(missing_ok=True)
    return out


def restore_study(actor: Actor, archive: Path | str, *, rename: str | None = None, progress: bool = False) -> Study:
    """Restore a backup archive as a new study, all or nothing (rows, files, the ``restore_study`` event)."""
    archive = Path(archive)
    if not getattr(actor, "is_superuser", False):
        raise NotAllowed(f"{actor} may not restore studies (superusers only)")
    if rename is not None:
        rename = rename.strip()
        if not rename:
            raise InvalidInput("--rename needs a name")
    started = time.monotonic()
    with restore.staged(archive, progress=progress) as verified:
        name = rename or verified.tables["study"][0].get("name")
        if not isinstance(name, str) or not name:
            raise BackupError("archive member tables/study.jsonl: the study has no name")
        if Study.objects.filter(name=name).exists():
            raise Conflict(f"a study named {name!r} exists already; restore with a new name (--rename)")
        restorer = restore.Restorer(verified, name)
        try:
            with transaction.atomic():
                study = restorer.run(progress=progress)
                after = {**restorer.summary(archive), "seconds": round(time.monotonic() - started, 3)}
                audit.record(actor, Verb.RESTORE_STUDY, study, study=study, after=after)
        except BaseException:
            restorer.cleanup()
            raise
    return study
