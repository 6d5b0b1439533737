"""Restore a study from a backup_study archive into this database, all or nothing."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from readerstudy.backup import actions
from readerstudy.core.commands import acting_user
from readerstudy.core.errors import ActionError
from readerstudy.studies.storage import study_prefix


class Command(BaseCommand):
    help = (
        "Check ARCHIVE (format version, sha256 of every member) and restore its study as a new study, as USER "
        "(a superuser). "
        "Users missing here are created with unusable passwords and no staff or superuser rights."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("archive", type=Path)
        parser.add_argument("--rename", metavar="NEW_NAME", help="restore under this name (the original exists)")
        parser.add_argument("--as", dest="username", required=True, help="acting superuser")
        parser.add_argument("--no-progress", action="store_true", help="hide progress bars")

    def handle(
        self, *args: Any, archive: Path, rename: str | None, username: str, no_progress: bool, **options: Any
    ) -> None:
        actor = acting_user(username)
        try:
            study = actions.restore_study(actor, archive, rename=rename, progress=not no_progress)
        except ActionError as exc:
            raise CommandError(str(exc)) from None
        event = study.audit_events.filter(verb="restore_study").order_by("-id").first()
        after = event.after if event else {}
        counts = after.get("counts", {})
        self.stdout.write(
            self.style.SUCCESS(
                f"restored {study.name!r} as study {study.pk}: {counts.get('cases')} cases, "
                f"{counts.get('reads')} reads, {counts.get('audit_events')} audit events"
            )
        )
        if after.get("users_created"):
            self.stdout.write(
                f"created users (no password, no staff rights; set them in the admin): "
                f"{', '.join(after['users_created'])}"
            )
        if after.get("idempotency_keys_rewritten"):
            self.stdout.write(f"{after['idempotency_keys_rewritten']} read idempotency keys were taken here: rewritten")
        if not after.get("images"):
            self.stdout.write(
                self.style.WARNING(
                    "the archive holds no images: copy the series files into the storage under "
                    f"{study_prefix(study)}/ (names as in the original study's folder)"
                )
            )
