"""Import a case manifest into a draft study, all or nothing; every bad row is printed.

The run is recorded as an ImportRun (source: command line) like the browser's, so the import page lists it; the
import itself is the one code path, ``actions.import_cases``, run here in the foreground with a progress bar.
"""

from pathlib import Path
from typing import Any, cast

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from readerstudy.core.commands import acting_user
from readerstudy.core.errors import ActionError
from readerstudy.core.types import Actor
from readerstudy.studies import actions
from readerstudy.studies.importing import run_import
from readerstudy.studies.models import ImportRun, Study


class Command(BaseCommand):
    help = "Import MANIFEST (CSV) into STUDY as USER (a study admin)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("study", help="study name")
        parser.add_argument("manifest", type=Path)
        parser.add_argument("--as", dest="username", required=True, help="acting study admin")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(
        self, *args: Any, study: str, manifest: Path, username: str, no_progress: bool = False, **options: Any
    ) -> None:
        target = Study.objects.filter(name=study).first()
        if target is None:
            raise CommandError(f"no study named {study!r}")
        actor = cast(Actor, acting_user(username))
        try:
            run = actions.queue_import(
                actor,
                target,
                source=ImportRun.Source.COMMAND,
                origin=str(manifest),
                manifest_name=manifest.name,
            )
        except ActionError as exc:
            raise CommandError(str(exc)) from None
        with tqdm(total=0, desc="series", unit="series", disable=no_progress) as bar:

            def on_progress(stage: str, done: int, total: int) -> None:
                if stage == "series":
                    bar.total = total
                    bar.n = done
                    bar.refresh()

            run = run_import(run, manifest=manifest, on_progress=on_progress)
        if run.status != ImportRun.Status.DONE:
            lines = "\n".join(f"- {line}" for line in run.errors)
            raise CommandError(f"{run.message} (import run {run.pk})\n{lines}")
        self.stdout.write(
            self.style.SUCCESS(
                f"imported {run.n_cases} cases of {run.n_patients} patients "
                f"({run.n_series} series) from {manifest.name} (import run {run.pk})"
            )
        )
