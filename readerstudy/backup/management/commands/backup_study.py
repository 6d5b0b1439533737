"""Back up one study (set-up, cases, truth, sessions, reads, audit trail, predictions, images) to a tar.gz."""

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from readerstudy.backup import actions
from readerstudy.backup.archive import read_manifest
from readerstudy.core.commands import acting_user
from readerstudy.core.errors import ActionError
from readerstudy.studies.models import Study


class Command(BaseCommand):
    help = "Write STUDY to the archive OUT (.tar.gz) as USER (a study admin); restore it with restore_study."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("study", help="study name")
        parser.add_argument("out", type=Path, help="archive to write (.tar.gz); refused if it exists")
        parser.add_argument("--as", dest="username", required=True, help="acting study admin (or superuser)")
        parser.add_argument("--no-images", action="store_true", help="leave the DICOM files of the series out")
        parser.add_argument("--no-progress", action="store_true", help="hide progress bars")

    def handle(
        self, *args: Any, study: str, out: Path, username: str, no_images: bool, no_progress: bool, **options: Any
    ) -> None:
        target = Study.objects.filter(name=study).first()
        if target is None:
            raise CommandError(f"no study named {study!r}")
        actor = acting_user(username)
        started = time.monotonic()
        try:
            path = actions.backup_study(actor, target, out, images=not no_images, progress=not no_progress)
        except ActionError as exc:
            raise CommandError(str(exc)) from None
        summary = read_manifest(path)
        counts = summary["counts"]
        self.stdout.write(
            self.style.SUCCESS(
                f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB in {time.monotonic() - started:.1f} s): "
                f"{counts['cases']} cases, {counts['reads']} reads, {counts['audit_events']} audit events, "
                f"{counts['files']} files" + ("" if summary["images"] else " (no images)")
            )
        )
