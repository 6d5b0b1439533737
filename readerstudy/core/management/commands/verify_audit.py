"""Walk the audit hash chain; name the first broken link (edited, deleted or reordered event)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from readerstudy.core import audit
from readerstudy.core.chain import verify_chain
from readerstudy.core.models import AuditEvent


class Command(BaseCommand):
    help = (
        "Check every audit event's hash and link to the one before it. Exits 0 when the chain is intact, 1 naming "
        "the first broken link, or when the database's append-only triggers are missing or disabled."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--expect-head",
            metavar="SEQ:HASH",
            help="a head printed by an earlier run (kept outside the database): it must still be in the chain",
        )
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def handle(self, *args: Any, expect_head: str | None, no_progress: bool, **options: Any) -> None:
        anchor = _parse_head(expect_head) if expect_head else None
        total = AuditEvent.objects.count()
        with tqdm(total=total, desc="audit events", unit="event", disable=no_progress) as bar:
            report = verify_chain(_counted(audit.chain_events(), bar))
        if report.broken is not None:
            raise CommandError(
                f"audit chain broken after {report.events} intact events: first broken link is {report.broken}"
            )
        if anchor is not None:
            seq, want = anchor
            got = AuditEvent.objects.filter(seq=seq).values_list("hash", flat=True).first()
            if got != want:
                found = "is missing" if got is None else f"has hash {got}"
                raise CommandError(f"expected head seq {seq} with hash {want}; that event {found} (chain rewritten?)")
        missing = audit.missing_triggers()
        if missing:
            raise CommandError(
                f"{report.events} events, chain intact, but the append-only triggers {', '.join(missing)} are "
                "missing or disabled: run migrate, or recreate them (see reading/migrations/0003)"
            )
        self.stdout.write(
            self.style.SUCCESS(f"{report.events} events, chain intact (head: {report.head_seq}:{report.head_hash})")
        )


def _counted(events: Any, bar: tqdm) -> Any:
    for event in events:
        yield event
        bar.update(1)


def _parse_head(value: str) -> tuple[int, str]:
    seq, _, digest = value.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise CommandError(f"--expect-head {value!r}: expected SEQ:HASH as printed by verify_audit")
    return int(seq), digest.lower()
