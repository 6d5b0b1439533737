"""The one way to append an audit event; called by actions inside their transaction.

Events form a hash chain (core/chain.py); ``verify_audit`` walks it. Call ``record()`` as late in the action
as the action allows: from there to the commit the transaction holds the chain lock, which every other action's
``record()`` waits for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

from django.db import models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from readerstudy.core.chain import GENESIS, ChainReport, event_hash, hash_parts, verify_chain
from readerstudy.core.models import AuditEvent, Verb
from readerstudy.core.types import Actor

# pg_advisory_xact_lock key of the chain head ("audit" in ASCII); released at commit or rollback.
CHAIN_LOCK = 0x6175646974
# PostgreSQL function (migration core 0009): the chain's locks, its head, the event's hash and INSERT in one round trip.
APPEND_FUNCTION = "audit_append"
# What reading's migrations 0002 and 0003 install (the table predates the core app); verify_audit reports any
# that is missing.
TRIGGERS = {
    "sqlite": ("reading_auditevent_no_update", "reading_auditevent_no_delete"),
    "postgresql": ("reading_auditevent_append_only", "reading_auditevent_no_truncate"),
}


def record(
    actor: Actor | None,
    verb: Verb,
    obj: models.Model,
    *,
    study: models.Model | None = None,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEvent:
    """Append the event of one action: ``verb`` must be a ``Verb`` (a free string is refused)."""
    if not isinstance(verb, Verb):
        raise TypeError(f"audit verb {verb!r}: expected a Verb member (add new verbs to core.models.Verb)")
    event = AuditEvent(
        actor=actor if getattr(actor, "pk", None) else None,
        study=cast(Any, study),  # a studies.Study: core sits below studies and cannot name it
        verb=verb.value,
        object_type=cast(str, obj._meta.model_name),  # set on every model's Options
        object_id=str(obj.pk),
        before=_as_stored(before),
        after=_as_stored(after),
    )
    return append(event)


def append(event: AuditEvent, *, keep_created_at: bool = False) -> AuditEvent:
    """Link ``event`` to the head of the chain and insert it (inside the caller's transaction).

    ``keep_created_at`` keeps the event's timestamp (a restored event); otherwise it is set to now.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("audit events must be written inside the action's transaction")
    if not keep_created_at or event.created_at is None:
        event.created_at = timezone.now()
    if connection.vendor == "postgresql":
        return _append_in_database(connection, event)
    # SQLite has one writer at a time; a transaction whose snapshot predates another's append fails on its write
    # (SQLITE_BUSY) instead of forking the chain. The unique seq is the last guard on either database.
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    event.seq, event.prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS)
    event.hash = event_hash(event)
    event.save(force_insert=True)
    return event


def _append_in_database(connection: BaseDatabaseWrapper, event: AuditEvent) -> AuditEvent:
    """PostgreSQL: link, hash and insert ``event`` in one round trip (``audit_append``, migration core 0009).

    Without the chain lock two concurrent transactions read the same head and both append to it: the chain forks
    (two events with one prev_hash), or the second commit fails on the unique seq and loses its action. The rows the
    INSERT's foreign keys check are locked (KEY SHARE, what the check takes) first: a transaction holding the study
    FOR UPDATE while it waits for the chain lock would otherwise deadlock with us. The function reads the head after
    the lock is granted (a fresh snapshot per statement) and holds the lock to our commit; one round trip instead of
    two shortens that hold, which every other append waits for. Python sends the canonical payload around the chain
    fields and checks the hash that comes back, so the database cannot store a hash ``verify_audit`` would reject.
    """
    head, tail = hash_parts(event)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT event_id, event_seq, event_prev_hash, event_hash FROM {APPEND_FUNCTION}"
            "(%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s)",
            [
                event.actor_id,
                event.study_id,
                event.verb,
                event.object_type,
                event.object_id,
                None if event.before is None else json.dumps(event.before),
                None if event.after is None else json.dumps(event.after),
                event.created_at,
                event.source_hash,
                head,
                tail,
            ],
        )
        event.pk, event.seq, event.prev_hash, stored = cursor.fetchone()
    # The whole canonical payload again, not the parts sent: a fault in hash_parts must not store a hash that
    # verify_audit would reject.
    event.hash = event_hash(event)
    if stored != event.hash:
        raise RuntimeError(
            f"audit event seq {event.seq}: the database hashed it as {stored}, core.chain as {event.hash}"
        )
    event._state.adding, event._state.db = False, connection.alias
    return event


def _as_stored(value: dict | None) -> Any:
    # Hash what the database will give back (tuples as lists, keys as strings), not the caller's objects.
    return None if value is None else json.loads(json.dumps(value))


def chain_events() -> Iterator[AuditEvent]:
    """Every event in chain order, in chunks (the table can be large)."""
    return AuditEvent.objects.order_by("seq").iterator(chunk_size=2000)


def verify() -> ChainReport:
    """Check the whole chain in this database (see chain.verify_chain)."""
    return verify_chain(chain_events())


def missing_triggers(connection: BaseDatabaseWrapper | None = None) -> list[str]:
    """Names of the append-only triggers that this database should have and has not."""
    connection = connection or transaction.get_connection()
    expected = TRIGGERS.get(connection.vendor, ())
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [AuditEvent._meta.db_table]
            )
        elif connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND tgenabled <> 'D'",
                [AuditEvent._meta.db_table],
            )
        else:
            return []
        present = {row[0] for row in cursor.fetchall()}
    return [name for name in expected if name not in present]
