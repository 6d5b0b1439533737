"""Import a case manifest into a draft study, all or nothing; every bad row is printed."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from readerstudy.core.commands import acting_user
from readerstudy.core.errors import ActionError
from readerstudy.studies import actions
from readerstudy.studies.models import Study


class Command(BaseCommand):
    help = "Import MANIFEST (CSV) into STUDY as USER (a study admin)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("study", help="study name")
        parser.add_argument("manifest", type=Path)
        parser.add_argument("--as", dest="username", required=True, help="acting study admin")

    def handle(self, *args: Any, study: str, manifest: Path, username: str, **options: Any) -> None:
        target = Study.objects.filter(name=study).first()
        if target is None:
            raise CommandError(f"no study named {study!r}")
        actor = acting_user(username)
        try:
            summary = actions.import_cases(actor, target, manifest)
        except ActionError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"imported {summary.n_cases} cases of {summary.n_patients} patients "
                f"({summary.n_series} series) from {manifest.name}"
            )
        )
