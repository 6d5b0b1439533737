"""Push the study's DL segmentations (DICOM SEG) to the configured DICOMweb server (STOW-RS)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.actions import push_segmentations
from readerstudy.core.commands import acting_user
from readerstudy.core.errors import ActionError
from readerstudy.studies.models import Study


class Command(BaseCommand):
    help = "Send every case's DICOM SEG to DICOMWEB_URL (STOW-RS), as a study admin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("study", help="the study's name")
        parser.add_argument("--as", dest="actor", required=True, help="the acting user (a study admin)")

    def handle(self, *args: Any, **options: Any) -> None:
        study = Study.objects.filter(name=options["study"]).first()
        if study is None:
            raise CommandError(f"no study named {options['study']!r}")
        try:
            n = push_segmentations(acting_user(options["actor"]), study)
        except ActionError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"{n} segmentation(s) stored on the DICOMweb server"))
