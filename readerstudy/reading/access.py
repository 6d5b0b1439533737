"""Who may see which item, image and DL output, and when: the blinding rules, checked on every request.

The rule, on every endpoint: a reader is served only the current item (the first unread one) of an open, started,
unfinished session of theirs, plus the images (never DL output, never a rating) of the item after it, so the next
case shows at once. Earlier items, finished sessions and other sessions are never served again: in a crossover
study the session-1 aided item of a case would otherwise show the DL output and the reader's own earlier rating
while they read the same case unaided in session 2.
"""

from datetime import datetime

from django.db.models import QuerySet

from readerstudy.core.dates import format_when
from readerstudy.core.errors import NotFound, NotOpenYet
from readerstudy.core.frozen import FrozenQuery
from readerstudy.reading.models import ReadingSession, SessionItem
from readerstudy.studies.models import Study, Truth

# Images of the item after the current one may be fetched ahead, so the next case shows at once.
PRELOAD_AHEAD = 1


def own_sessions(user: object) -> QuerySet[ReadingSession]:
    return ReadingSession.objects.filter(reader=user, study__status__in=[Study.Status.LAUNCHED, Study.Status.CLOSED])


def own_session(user: object, session_id: int) -> ReadingSession:
    session = own_sessions(user).select_related("study").filter(pk=session_id).first()
    if session is None:
        raise NotFound("no such reading session")
    return session


def own_item(user: object, item_id: int) -> SessionItem:
    """An item of one of the user's sessions; anything else is "not found" (existence is not revealed)."""
    item = (
        SessionItem.objects.select_related("session__study", "case__series", "modality")
        .filter(pk=item_id, reader=user)
        .first()
    )
    if item is None or item.session.study.status == Study.Status.DRAFT:
        raise NotFound("no such item")
    return item


def current_position(session: ReadingSession) -> int | None:
    """Position of the next unread item; None when the session is complete."""
    return (
        SessionItem.objects.filter(session=session, read__isnull=True)
        .order_by("position")
        .values_list("position", flat=True)
        .first()
    )


def check_session_open(session: ReadingSession, now: datetime) -> None:
    study = session.study
    if study.status == Study.Status.CLOSED:
        raise NotOpenYet(f"study {study.name!r} is closed; no more reads are accepted")
    if study.status != Study.Status.LAUNCHED:
        raise NotOpenYet(f"study {study.name!r} has not been launched")
    if session.available_from is None:
        previous = session.index - 1
        raise NotOpenYet(
            f"session {session.index} opens {study.washout_days} days after session {previous} is finished"
        )
    if session.available_from > now:
        raise NotOpenYet(
            f"session {session.index} opens on {format_when(session.available_from)} "
            f"(washout of {study.washout_days} days)"
        )


def check_session_readable(session: ReadingSession, now: datetime) -> None:
    """Refuse a session that is not open, not started, or finished: none of its items is served."""
    check_session_open(session, now)
    if session.finished_at is not None:
        # Finished is final: its items, DL output and ratings are never served again.
        raise NotFound(f"session {session.index} is finished; its items are not shown again")
    if session.started_at is None:
        raise NotOpenYet(f"session {session.index} has not been started")


def check_item_visible(item: SessionItem, now: datetime, *, ahead: int = 0) -> None:
    """Serve ``item`` only if it is the current one (or, with ``ahead``, one of the next ``ahead`` items).

    Items before the current one are read and locked: "not found", so neither their DL output nor the reader's
    rating can be fetched again. Items after it are "not open yet".
    """
    session = item.session
    check_session_readable(session, now)
    current = current_position(session)
    if current is None or item.position < current:
        raise NotFound(f"item {item.position + 1} has been read; read items are not shown again")
    if item.position > current + ahead:
        raise NotOpenYet(f"item {item.position + 1} is not open yet; the current item is {current + 1}")


def dl_allowed(item: SessionItem) -> bool:
    """DL output only in modalities that show it, and in sequential designs only once every earlier modality's
    read of the same case is locked."""
    if not item.modality.shows_dl:
        return False
    # A practice session is sequential per case (unaided first) whatever the study's design.
    if item.session.study.design != Study.Design.SEQUENTIAL and not item.session.practice:
        return True
    # Every earlier modality's item of the case read, i.e. none of them unread: one query.
    return not _EARLIER_UNREAD.values(item.session_id, item.case_id, item.modality.order)


# dl_allowed's query (on every aided item served and read in sequential designs), compiled once (core/frozen.py):
# an unread item of the same case, in the same session, in an earlier modality.
_EARLIER_UNREAD = FrozenQuery(
    lambda session_id, case_id, order: SessionItem.objects.filter(
        session_id=session_id, case_id=case_id, modality__order__lt=order, read__isnull=True
    ).values_list("pk")[:1],
    arity=3,
)


def practice_feedback(item: SessionItem) -> dict | None:
    """The truth of a practice item, shown once its read is submitted; None for every other item.

    The one place truth reaches a reader: only a practice case in a practice session (both flags, so neither a
    mislabelled session nor a mislabelled case alone can leak the truth of an analysed case)."""
    if not (item.session.practice and item.case.practice):
        return None
    truth = Truth.objects.filter(case=item.case).first()
    if truth is None:
        return None
    return {
        "truth": truth.label,
        "truth_label": Truth.Label(truth.label).label,
        "truth_source": truth.source,
    }
