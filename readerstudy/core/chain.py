"""The audit hash chain: how one event's hash is computed, and the check that walks the chain.

Every event stores ``prev_hash`` (the hash of the event before it in ``seq`` order; ``GENESIS`` for the first)
and ``hash = sha256(canonical(payload))`` over its own content and ``prev_hash``. Editing an event breaks its own
hash; deleting one leaves a gap in ``seq`` and a ``prev_hash`` that no longer matches. Rewriting the whole chain
from the edited event onwards is not detected here: compare the head (printed by ``verify_audit``) with a copy
kept outside the database for that.

No model imports: reading's migration 0003 chains the existing rows with these same functions. Changing the
payload or the canonical form breaks every stored hash; that needs a new payload version and a migration that
re-chains.
"""

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

GENESIS = "0" * 64
PAYLOAD_VERSION = 1


def _number(value: float) -> str:
    # jsonb keeps numbers as numeric and returns plain decimals: 1e25 comes back as the integer
    # 10000000000000000000000000, 1e-07 as 0.0000001, 5.0 as 5.0. The normalised decimal of the float's shortest
    # repr is the same text for what went in and what came out, so an event hashes alike on both databases.
    if not math.isfinite(value):
        return repr(value)  # only SQLite stores these; stable there
    if value == 0:
        return "0"  # jsonb has no -0
    return format(Decimal(repr(value)).normalize(), "f")


def canonical(value: Any) -> str:
    """Stable text of a JSON value: sorted keys, no spaces, ASCII escapes, numbers as plain decimals."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(f"{_string(k)}:{canonical(v)}" for k, v in items) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _string(value: str) -> str:
    # json.dumps escapes exactly '"', '\\' and what lies outside ' '..'~'; most strings hold none of them, and
    # skipping the encoder for those halves the cost of hashing an event (twice per submit).
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return json.dumps(value, ensure_ascii=True)


def timestamp(value: datetime) -> str:
    """UTC, always with microseconds: what both databases store (SQLite as text, PostgreSQL as timestamptz)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # Django stores naive values as UTC (USE_TZ)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def payload(event: Any) -> dict:
    """What the hash covers: everything stored on the event except its id (assigned by the database on insert)."""
    return {
        "v": PAYLOAD_VERSION,
        "seq": event.seq,
        "prev_hash": event.prev_hash,
        "created_at": timestamp(event.created_at),
        "actor_id": event.actor_id,
        "study_id": event.study_id,
        "verb": event.verb,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "before": event.before,
        "after": event.after,
        "source_hash": event.source_hash,
    }


def event_hash(event: Any) -> str:
    return hashlib.sha256(canonical(payload(event)).encode("ascii")).hexdigest()


#: What joins an event's ``prev_hash`` and ``seq`` in its canonical payload (the keys sort next to each other).
SEQ_JOIN = '","seq":'


def hash_parts(event: Any) -> tuple[str, str]:
    """The canonical payload of ``event`` around its chain fields: ``(head, tail)`` such that
    ``head + prev_hash + SEQ_JOIN + str(seq) + tail == canonical(payload(event))``, whatever the chain's head is.

    This lets the database link and hash an event in the statement that takes the chain's lock (PostgreSQL's
    ``audit_append``); ``created_at`` must be set. Only ``before`` and ``after`` sort before ``prev_hash`` and can
    hold nested objects (a string's quotes are escaped), so the last match of the marker is the top-level one.
    """
    marker = '"prev_hash":"","seq":0,'
    head, found, tail = canonical({**payload(event), "prev_hash": "", "seq": 0}).rpartition(marker)
    if not found:  # cannot happen while "source_hash" sorts after "seq"; a payload change must not slip by
        raise ValueError("the canonical payload has no prev_hash/seq pair")
    return head + '"prev_hash":"', "," + tail


@dataclass(frozen=True)
class BrokenLink:
    event_id: Any
    seq: int
    problem: str  # "gap", "prev_hash mismatch" or "hash mismatch"
    detail: str

    def __str__(self) -> str:
        return f"event {self.event_id} (seq {self.seq}): {self.problem}: {self.detail}"


@dataclass(frozen=True)
class ChainReport:
    events: int  # events checked (up to the broken link, which is not counted)
    head_seq: int  # seq and hash of the last intact event (0 and GENESIS for an empty chain)
    head_hash: str
    broken: BrokenLink | None = None

    @property
    def intact(self) -> bool:
        return self.broken is None


def verify_chain(events: Iterable[Any]) -> ChainReport:
    """Walk ``events`` in ``seq`` order; stop at the first broken link.

    Each event needs the attributes read by ``payload`` plus ``id`` and ``hash``; model instances do.
    """
    expected_seq, prev_hash, count = 1, GENESIS, 0
    for event in events:
        broken = None
        if event.seq != expected_seq:
            missing = f"seq {expected_seq}" if event.seq == expected_seq + 1 else f"seq {expected_seq}..{event.seq - 1}"
            if event.seq < expected_seq:
                missing = f"seq {event.seq} repeats or goes back (expected {expected_seq})"
            else:
                missing += " missing (deleted?)"
            broken = BrokenLink(event.id, event.seq, "gap", missing)
        elif event.prev_hash != prev_hash:
            broken = BrokenLink(
                event.id,
                event.seq,
                "prev_hash mismatch",
                f"stores {event.prev_hash[:12]}…, the previous event's hash is {prev_hash[:12]}… "
                "(the previous event was deleted or rewritten)",
            )
        else:
            computed = event_hash(event)
            if computed != event.hash:
                broken = BrokenLink(
                    event.id,
                    event.seq,
                    "hash mismatch",
                    f"stores {event.hash[:12]}…, its content hashes to {computed[:12]}… (the event was edited)",
                )
        if broken is not None:
            return ChainReport(count, expected_seq - 1, prev_hash, broken)
        expected_seq, prev_hash, count = event.seq + 1, event.hash, count + 1
    return ChainReport(count, expected_seq - 1, prev_hash)
