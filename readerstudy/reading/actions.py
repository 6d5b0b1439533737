"""The one door for reading mutations: launch a study (write its reading orders), start a session, submit a read.

The server enforces the science here, not in the UI: a reader only touches their own sessions, a session opens
only after the previous one finished plus the washout, items are read in the stored order, and a submitted
read is locked (the same idempotency key or the same rating returns it; a different rating is a conflict).
"""

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.db import IntegrityError, transaction
from django.utils import timezone

from inference.actions import shown_prediction
from readerstudy.core import audit
from readerstudy.core.errors import Conflict, InvalidInput, NotFound, NotReady
from readerstudy.core.frozen import FrozenInsert, FrozenQuery
from readerstudy.core.models import Verb
from readerstudy.core.types import Actor
from readerstudy.reading.access import check_session_open, check_session_readable, dl_allowed
from readerstudy.reading.models import Read, ReadingSession, SessionItem
from readerstudy.studies import actions as study_actions
from readerstudy.studies import design
from readerstudy.studies.models import Case, Membership, Study

IDEMPOTENCY_KEY_MAX = 64
# A read takes seconds to minutes; a day bounds what any client clock or bug can store.
ACTIVE_SECONDS_MAX = 24 * 3600
# viewer_state is the client's window/level, zoom and overlay state: small and flat by nature.
VIEWER_STATE_MAX_DEPTH = 8
VIEWER_STATE_MAX_BYTES = 16 * 1024
COMMENT_MAX_CHARS = 2000
# viewer_state.measurements: what the reader measured, exported with the read.
MEASUREMENTS_MAX = 50
MEASUREMENT_TOOLS = ("length", "ellipse", "probe")
MEASUREMENT_NUMBER_MAX = 1e6
SERIES_ROLE_MAX = 40


def launch_study(
    actor: Actor, study: Study, *, now: datetime | None = None, accept_missing_predictions: bool = False
) -> int:
    """Write every reader's stored case order and open their first session; returns the number of items.

    Studies owns the readiness check and the study's status; the sessions and items written here are this app's.
    Cases without a DL prediction (aided modalities) block the launch unless ``accept_missing_predictions``;
    the launch event then records the acceptance (``accepted_missing_predictions``: how many cases, which
    modalities), so the trail shows who launched without them.
    """
    now = now or timezone.now()
    if not isinstance(accept_missing_predictions, bool):
        raise InvalidInput("accept_missing_predictions: expected true or false")
    with transaction.atomic():
        # The lock serialises launch with set-up actions and with record_prediction (predictions freeze here).
        study = study_actions.lock_study(study)
        study_actions.check_study_admin(actor, study)
        check = study_actions.readiness(study, accept_missing_predictions=accept_missing_predictions)
        if not check.ready:
            raise NotReady(f"study {study.name!r} cannot be launched", details=check.problems)
        readers = list(
            Membership.objects.filter(study=study, role=Membership.Role.READER)
            .select_related("user")
            .order_by("user__username")
        )
        modalities = list(study.modalities.order_by("order"))
        cases = list(Case.objects.filter(study=study).analysed().select_related("patient").order_by("case_id"))
        practice_cases = list(Case.objects.filter(study=study, practice=True).order_by("case_id"))
        balance = _split_plot_balance(study, cases) if study.reader_groups > 1 else {}
        schedule = design.make_schedule(
            study.design,
            study.seed,
            readers=[m.user_id for m in readers],
            cases=[design.CaseRef(c.pk, c.patient_id, balance.get(c.pk)) for c in cases],
            modalities=[m.pk for m in modalities],
            grouping=cast(design.PatientGrouping, study.patient_grouping),  # the choices, checked by a constraint
            groups=study.reader_groups,
        )
        # The optional practice session: every practice case in every modality, unaided first per case.
        practice = design.practice_schedule(
            study.seed,
            readers=[m.user_id for m in readers],
            cases=[design.CaseRef(c.pk, c.patient_id) for c in practice_cases],
            modalities=[m.pk for m in sorted(modalities, key=lambda m: (m.shows_dl, m.order))],
        )
        n_items = n_practice_items = 0
        for membership in readers:
            if membership.user_id in practice:
                # Open at launch like session 1, and optional: it gates nothing (see _finish_session).
                n_practice_items += _write_session(
                    study, membership, 0, practice[membership.user_id], available_from=now, practice=True
                )
            for index, items in enumerate(schedule[membership.user_id], start=1):
                n_items += _write_session(
                    study, membership, index, items, available_from=now if index == 1 else None, practice=False
                )
        before = study_actions.study_state(study)
        study_actions.mark_launched(study, now)
        audit.record(
            actor,
            Verb.LAUNCH_STUDY,
            study,
            study=study,
            before=before,
            after={
                **study_actions.study_state(study),
                "readers": len(readers),
                "items": n_items,
                **({"practice_items": n_practice_items} if n_practice_items else {}),
                "warnings": check.warnings,
                **(
                    {
                        "accepted_missing_predictions": {
                            "cases_without_prediction": check.missing_predictions,
                            "aided_modalities": [m.key for m in modalities if m.shows_dl],
                        }
                    }
                    if check.missing_predictions  # only reachable when accepted
                    else {}
                ),
            },
        )
    return n_items


def _split_plot_balance(study: Study, cases: list[Case]) -> dict[int, tuple[str, str]]:
    """Each case's (truth, size stratum): split-plot blocks get near-equal numbers of each. Launch alone reads the
    truth here, to balance the blocks; nothing of it is stored with the schedule or served."""
    from readerstudy.analysis.strata import size_stratum
    from readerstudy.studies.models import Truth

    truth = dict(Truth.objects.filter(case__in=[c.pk for c in cases]).values_list("case_id", "label"))
    return {c.pk: (truth.get(c.pk, ""), size_stratum(c.diameter_mm, study.size_bins_mm)) for c in cases}


def _write_session(
    study: Study,
    membership: Membership,
    index: int,
    items: list[design.Item],
    *,
    available_from: datetime | None,
    practice: bool,
) -> int:
    """One session of a reader and its stored order (part of launch_study's transaction); returns its size."""
    session = ReadingSession.objects.create(
        study=study, reader=membership.user, index=index, available_from=available_from, practice=practice
    )
    session_pk, study_pk, reader_pk = session.pk, study.pk, membership.user_id  # once, not once per item
    _insert_items(
        # the case and modality pks handed to the design
        (session_pk, position, cast(int, case_pk), cast(int, modality_pk), study_pk, reader_pk)
        for position, (case_pk, modality_pk) in enumerate(items)
    )
    return len(items)


# What launch writes per stored item, in _insert_items' row order; first_served_at stays empty until served.
ITEM_FIELDS = ("session", "position", "case", "modality", "study", "reader")


def _insert_items(rows: Iterable[tuple[int, ...]]) -> None:
    """Insert stored-order items (values of ITEM_FIELDS), in launch's transaction.

    A launch writes readers x cases x modalities rows (200 000 for 20 readers x 5 000 cases x 2). On PostgreSQL
    they go through COPY, streamed: bulk_create builds a model instance per row and took 5-7 times as long
    (``python -m bench.scale``). COPY checks every constraint and foreign key of the table as an INSERT does, and
    it runs on the transaction's own connection. SQLite (the demo, the tests) takes bulk_create.
    """
    connection = transaction.get_connection()
    meta = SessionItem._meta
    fields = [next(f for f in meta.concrete_fields if f.name == name) for name in ITEM_FIELDS]
    if connection.vendor == "postgresql":  # psycopg 3 (requirements.txt): its cursors have copy()
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in fields)
        with connection.cursor() as cursor:
            # Django's cursor wrapper has no COPY: psycopg's own cursor, on the same connection and transaction.
            with cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return
    attnames = [f.attname for f in fields]
    SessionItem.objects.bulk_create(SessionItem(**dict(zip(attnames, row, strict=True))) for row in rows)


def _own_session(actor: Actor, session_id: int, *, lock: bool) -> ReadingSession:
    queryset = ReadingSession.objects.select_related("study")
    if lock:
        # Serialises every write in one reader's session: concurrent retries of the same read, and the last
        # read racing the session's finish, see one consistent state.
        queryset = queryset.select_for_update(of=("self",))
    session = queryset.filter(pk=session_id).first()
    # Another reader's session answers "not found", not "forbidden": it does not reveal that it exists.
    if session is None or session.reader_id != getattr(actor, "pk", None):
        raise NotFound("no such reading session")
    return session


def start_session(actor: Actor, session: ReadingSession, *, now: datetime | None = None) -> ReadingSession:
    """Mark a session started (idempotent); refused before it opens."""
    now = now or timezone.now()
    with transaction.atomic():
        session = _own_session(actor, session.pk, lock=True)
        check_session_open(session, now)
        if session.started_at is not None:
            return session
        session.started_at = now
        session.save(update_fields=["started_at"])
        audit.record(actor, Verb.START_SESSION, session, study=session.study, after={"started_at": now.isoformat()})
    return session


def mark_served(item: SessionItem, *, now: datetime | None = None) -> datetime:
    """Record when the API first served ``item`` as the current one; returns that time (set once, never moved).

    The one action without an audit event, on purpose: it runs on every item request and records a timestamp the
    read's own submit_read event carries as served_seconds; an event per serve would be noise, not a trail. The
    caller has already checked that ``item`` is the reader's current item (access.check_item_visible).
    """
    if item.first_served_at is not None:
        return item.first_served_at
    now = now or timezone.now()
    # One conditional UPDATE: concurrent first requests cannot both set it, and a later one never moves it.
    if SessionItem.objects.filter(pk=item.pk, first_served_at__isnull=True).update(first_served_at=now):
        item.first_served_at = now  # ours: no need to read it back
    else:  # a concurrent first request set it first: theirs stands
        item.first_served_at = SessionItem.objects.values_list("first_served_at", flat=True).get(pk=item.pk)
    return cast(datetime, item.first_served_at)


@dataclass(frozen=True)
class SubmitResult:
    read: Read
    created: bool  # False: an earlier submission of the same read was returned
    item: SessionItem  # as read under the lock, with its session, study, case and modality


def submit_read(
    actor: Actor,
    item: SessionItem | int,
    *,
    rating: Any,
    idempotency_key: str,
    active_seconds: Any,
    viewer_state: Any = None,
    not_assessable: Any = False,
    not_assessable_reason: Any = "",
    comment: Any = "",
    now: datetime | None = None,
) -> SubmitResult:
    """Store one read: a rating on the study's scale, or (``not_assessable``) one of the study's reasons instead.

    ``item``: the item or its id (the API passes the id: whether it is the actor's is checked here, in the query
    that locks its session)."""
    now = now or timezone.now()
    idempotency_key = str(idempotency_key or "").strip()
    if not idempotency_key or len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
        raise InvalidInput(f"idempotency_key: expected 1 to {IDEMPOTENCY_KEY_MAX} characters")
    viewer_state = check_viewer_state({} if viewer_state is None else viewer_state)
    if "measurements" in viewer_state:
        check_measurements(viewer_state["measurements"])
    seconds = _number("active_seconds", active_seconds)
    if not 0 <= seconds <= ACTIVE_SECONDS_MAX:
        raise InvalidInput(f"active_seconds: {seconds:g} is outside 0 to {ACTIVE_SECONDS_MAX} (24 hours)")
    if not isinstance(not_assessable, bool):
        raise InvalidInput(f"not_assessable: expected true or false, got {not_assessable!r}")
    comment = check_comment(comment)
    checked = _Checked(rating, idempotency_key, seconds, viewer_state, not_assessable, not_assessable_reason, comment)
    item_pk = item if isinstance(item, int) else item.pk
    try:
        return _store_read(actor, item_pk, checked, now, check_key=False)
    except IntegrityError:
        # The key is this reader's for another read (the first run leaves that to the unique constraint: one query
        # less on every submit), or a concurrent submission stored this item's read (only without row locks:
        # SQLite) or used this key in another session of the reader (practice and session 1 are open together)
        # between our checks and our insert. Our transaction was rolled back as a whole (no savepoint around the
        # insert: two more queries on every submit); the second run checks the key and finds the winner's read,
        # and replays it or refuses.
        return _store_read(actor, item_pk, checked, now, check_key=True)


@dataclass(frozen=True)
class _Checked:
    """A submission's fields after submit_read's checks that need no database."""

    rating: Any  # checked against the study's scale under the lock
    idempotency_key: str
    seconds: float
    viewer_state: dict
    not_assessable: bool
    not_assessable_reason: Any  # checked against the study's reasons under the lock
    comment: str


def _store_read(actor: Actor, item_pk: int, checked: _Checked, now: datetime, *, check_key: bool) -> SubmitResult:
    """submit_read's transaction: lock, refuse or replay, store the read and its audit event. ``check_key``:
    refuse a key already used for another read before inserting (else only where the item is not the next one)."""
    key, not_assessable, comment = checked.idempotency_key, checked.not_assessable, checked.comment
    with transaction.atomic():
        locked = _lock_own_item(actor, item_pk)
        session, study = locked.session, locked.session.study
        submitted = Submission(
            *_assessment(study, checked.rating, not_assessable, checked.not_assessable_reason), not_assessable, comment
        )
        # The first two unread items, read under the lock: the first must be this one; without a second, this read
        # finishes the session (the lock keeps any other read of the session out until we commit).
        unread = _FIRST_UNREAD.values(session.pk)
        current = bool(unread) and unread[0][0] == locked.pk
        if not current:  # read already (a retry, or a conflict: answered even after its session finished)?
            stored = Read.objects.filter(item=locked).first()
            if stored is not None:
                return SubmitResult(_replayed(session, locked, stored, key, submitted), False, locked)
        if (check_key or not current) and Read.objects.filter(reader=actor, idempotency_key=key).exists():
            raise Conflict("idempotency_key was already used for another read")

        check_session_readable(session, now)
        if not current:
            # The stored order is the randomisation: reading out of order would change the experiment (and,
            # in sequential designs, show the aided item before the unaided read is locked).
            assert unread  # ``locked`` is in the session and unread
            raise Conflict(f"item {locked.position + 1} is not the next one; read item {unread[0][1] + 1} first")

        # The DL output this reader is shown now (frozen since launch): stored with the read.
        prediction = shown_prediction(locked.case) if dl_allowed(locked) else None
        # Server time from the item's first serve (None: never served through the API, e.g. a script's
        # read). Both ends are this server's clock; max() only guards a ``now`` passed from the past.
        served = locked.first_served_at
        served_seconds = max(0.0, (now - served).total_seconds()) if served is not None else None
        read = _INSERT_READ.create(
            item=locked,
            study=study,
            reader=actor,
            case=locked.case,
            modality=locked.modality,
            rating=submitted.rating,
            submitted_at=now,
            active_seconds=checked.seconds,
            served_seconds=served_seconds,
            not_assessable=not_assessable,
            not_assessable_reason=submitted.reason,
            comment=comment,
            viewer_state=checked.viewer_state,
            idempotency_key=key,
            prediction=prediction,
        )
        finished = len(unread) == 1
        if finished:
            _finish_session(session, now)
        audit.record(
            actor,
            Verb.SUBMIT_READ,
            read,
            study=study,
            after={
                "case": locked.case.case_id,
                "modality": locked.modality.key,
                "session": session.index,
                "position": locked.position,
                "rating": submitted.rating,
                "not_assessable": not_assessable,
                "not_assessable_reason": submitted.reason,
                "comment": comment,
                "active_seconds": checked.seconds,
                "served_seconds": served_seconds,
                "prediction": prediction.pk if prediction else None,
                "session_finished": finished,
                "practice": session.practice,
            },
        )
    return SubmitResult(read, True, locked)


def _lock_own_item(actor: Actor, item_pk: int) -> SessionItem:
    """The item re-read with its session (locked), study, case and modality: one query.

    FOR UPDATE OF the session row only (not the item, case or study rows) serialises every write in one reader's
    session: concurrent retries of the same read see one stored read (the others replay it), two items submitted
    at once are checked against one stored order (only the next one passes), and the last read racing the
    session's finish sees one consistent state. The item is re-read under the lock (its first_served_at may have
    been set since the caller fetched it)."""
    found = _LOCK_OWN_ITEM.objects(int(item_pk))
    if not found:
        raise NotFound("no such item")
    item = cast(SessionItem, found[0])
    # Another reader's item answers "not found", not "forbidden": it does not reveal that it exists.
    if item.session.reader_id != getattr(actor, "pk", None):
        raise NotFound("no such item")
    if item.session.study.status == Study.Status.DRAFT:  # as access.own_item
        raise NotFound("no such item")
    return item


# What submit_read (and the API's answer, practice feedback included) reads of the item and the rows locked with
# it, and nothing else (not the study's long texts and plan). A field read but not listed costs one more query
# per submit (tests/reading/test_query_counts.py pins the count).
SUBMIT_FIELDS = (
    *("id", "session", "position", "case", "modality", "first_served_at"),
    *("session__id", "session__study", "session__reader", "session__index", "session__practice"),
    *("session__available_from", "session__started_at", "session__finished_at"),
    *("session__study__id", "session__study__name", "session__study__status", "session__study__design"),
    *("session__study__washout_days", "session__study__rating_min", "session__study__rating_max"),
    *("session__study__not_assessable_reasons",),
    *("case__id", "case__case_id", "case__practice"),
    *("modality__id", "modality__key", "modality__shows_dl", "modality__order"),
)

# submit_read's two queries under the lock, compiled once (core/frozen.py: compiling the first costs more CPU than
# PostgreSQL takes to run it). The item with its session (locked), study, case and modality, by the item's pk:
_LOCK_OWN_ITEM = FrozenQuery(
    lambda pk: (
        SessionItem.objects.select_related("session__study", "case", "modality")
        .only(*SUBMIT_FIELDS)
        .select_for_update(of=("session",))
        .filter(pk=pk)
    )
)
# The first two unread items of a session, by the session's pk: (pk, position).
_FIRST_UNREAD = FrozenQuery(
    lambda session_pk: (
        SessionItem.objects.filter(session=session_pk, read__isnull=True)
        .order_by("position")
        .values_list("pk", "position")[:2]
    )
)
# The read's INSERT, compiled once (Read has no save() of its own and no save signals: FrozenInsert checks).
_INSERT_READ = FrozenInsert(
    Read,
    (
        *("item", "study", "reader", "case", "modality", "rating", "submitted_at", "active_seconds"),
        *("served_seconds", "not_assessable", "not_assessable_reason", "comment", "viewer_state"),
        *("idempotency_key", "prediction"),
    ),
)


@dataclass(frozen=True)
class Submission:
    """What a submission asks to store, as compared with a stored read on a retry."""

    rating: int | None
    reason: str
    not_assessable: bool
    comment: str

    def matches(self, read: Read) -> bool:
        return (read.rating, read.not_assessable_reason, read.not_assessable, read.comment) == (
            self.rating,
            self.reason,
            self.not_assessable,
            self.comment,
        )


def _replayed(session: ReadingSession, item: SessionItem, stored: Read, key: str, submitted: Submission) -> Read:
    """A retry of the reader's latest submission with the same answer (rating or not-assessable reason, and
    comment; same key, or a new key after a lost acknowledgement) returns it; anything else is a conflict that
    names no stored value. Only the latest read may be replayed: otherwise trying ratings on an older item would
    reveal the reader's earlier rating."""
    latest = Read.objects.filter(item__session=session).order_by("-submitted_at", "-id").first()
    if submitted.matches(stored) and latest is not None and latest.pk == stored.pk:
        return stored
    if stored.idempotency_key == key:
        raise Conflict(
            f"item {item.position + 1} of session {session.index} was already submitted with this idempotency key "
            "and a different rating; your rating was not stored (a submitted read cannot be changed)"
        )
    raise Conflict(
        f"item {item.position + 1} of session {session.index} was already submitted; your rating was not stored "
        "(a submitted read cannot be changed)"
    )


def _assessment(study: Study, rating: Any, not_assessable: bool, reason: Any) -> tuple[int | None, str]:
    """(rating, reason): a rating on the scale and no reason, or no rating and one of the study's reasons."""
    if not not_assessable:
        if reason not in (None, ""):
            raise InvalidInput("not_assessable_reason: give a reason only when the item is not assessable")
        if rating is None:
            raise InvalidInput("rating: required (or mark the item not assessable and give a reason)")
        return _rating(rating, study), ""
    if rating is not None:
        raise InvalidInput("rating: must be empty when the item is marked not assessable")
    reasons = list(study.not_assessable_reasons)
    if not isinstance(reason, str) or reason not in reasons:
        raise InvalidInput(f"not_assessable_reason: {str(reason)[:100]!r} is not one of: {'; '.join(reasons)}")
    return None, reason


def check_comment(comment: Any) -> str:
    """Free text of at most COMMENT_MAX_CHARS characters; no control characters but newline and tab."""
    if comment is None:
        return ""
    if not isinstance(comment, str):
        raise InvalidInput("comment: expected text")
    if len(comment) > COMMENT_MAX_CHARS:
        raise InvalidInput(f"comment: {len(comment)} characters; at most {COMMENT_MAX_CHARS}")
    if any((ord(c) < 32 and c not in "\n\t") or 127 <= ord(c) < 160 for c in comment):
        raise InvalidInput("comment: control characters are not allowed (newline and tab are)")
    return comment.strip()


def check_measurements(measurements: Any) -> list:  # noqa: C901
    """viewer_state.measurements: the reader's measurements at submit, a short list of small flat records.

    Each is ``{"tool": "length" | "ellipse" | "probe", "series_role": str, "slice_index": int >= 0, ...}``;
    every other field is a finite number with |x| <= 1e6, or a list of such numbers, or a list of such lists
    (points). The errors name the measurement's index and field."""
    if not isinstance(measurements, list):
        raise InvalidInput("viewer_state.measurements: expected a list")
    if len(measurements) > MEASUREMENTS_MAX:
        raise InvalidInput(f"viewer_state.measurements: {len(measurements)} measurements; at most {MEASUREMENTS_MAX}")
    for i, m in enumerate(measurements):
        where = f"viewer_state.measurements[{i}]"
        if not isinstance(m, dict):
            raise InvalidInput(f"{where}: expected an object")
        if m.get("tool") not in MEASUREMENT_TOOLS:
            raise InvalidInput(f"{where}.tool: expected one of {', '.join(MEASUREMENT_TOOLS)}")
        role = m.get("series_role")
        if not isinstance(role, str) or not 1 <= len(role) <= SERIES_ROLE_MAX:
            raise InvalidInput(f"{where}.series_role: expected 1 to {SERIES_ROLE_MAX} characters")
        index = m.get("slice_index")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InvalidInput(f"{where}.slice_index: expected a whole number >= 0")
        for field, value in m.items():
            if field in ("tool", "series_role", "slice_index"):
                continue
            if len(field) > SERIES_ROLE_MAX:
                raise InvalidInput(f"{where}: field name longer than {SERIES_ROLE_MAX} characters")
            if not _bounded_numbers(value, depth=2):
                raise InvalidInput(
                    f"{where}.{field}: expected a finite number with |x| <= {MEASUREMENT_NUMBER_MAX:g} "
                    "(or a list of them, or a list of such lists)"
                )
    return measurements


def _bounded_numbers(value: Any, depth: int) -> bool:
    if isinstance(value, list):
        return depth > 0 and all(_bounded_numbers(v, depth - 1) for v in value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and abs(value) <= MEASUREMENT_NUMBER_MAX


def check_viewer_state(state: Any) -> dict:
    """A JSON object of bounded depth and size (it is stored with every read and exported)."""
    if not isinstance(state, dict):
        raise InvalidInput("viewer_state: expected a JSON object")
    stack: list[tuple[Any, int]] = [(state, 1)]
    while stack:  # iterative: a deeply nested body must not exhaust the interpreter's stack
        value, depth = stack.pop()
        if depth > VIEWER_STATE_MAX_DEPTH:
            raise InvalidInput(f"viewer_state: nested deeper than {VIEWER_STATE_MAX_DEPTH} levels")
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise InvalidInput("viewer_state: object keys must be strings")
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput("viewer_state: numbers must be finite")
        elif value is not None and not isinstance(value, str | int | float | bool):
            raise InvalidInput(f"viewer_state: unsupported value of type {type(value).__name__}")
    size = len(json.dumps(state, separators=(",", ":")).encode())
    if size > VIEWER_STATE_MAX_BYTES:
        raise InvalidInput(f"viewer_state: {size} bytes; at most {VIEWER_STATE_MAX_BYTES} bytes")
    return state


def _finish_session(session: ReadingSession, now: datetime) -> None:
    session.finished_at = now
    session.save(update_fields=["finished_at"])
    if session.practice:
        return  # optional practice: its finish starts no washout and moves no other session's opening
    opens = now + timedelta(days=session.study.washout_days)
    ReadingSession.objects.filter(
        study_id=session.study_id, reader_id=session.reader_id, index=session.index + 1
    ).update(available_from=opens)


def _number(field: str, value: Any) -> float:
    if isinstance(value, bool):
        raise InvalidInput(f"{field}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{field}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidInput(f"{field}: expected a finite number, got {value!r}")
    return number


def _rating(value: Any, study: Study) -> int:
    number = _number("rating", value)
    if number != int(number):
        raise InvalidInput(f"rating: expected a whole number, got {value!r}")
    if not study.rating_min <= number <= study.rating_max:
        raise InvalidInput(f"rating: {value!r} is outside {study.rating_min}-{study.rating_max}")
    return int(number)
