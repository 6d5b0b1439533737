"""Who may see which item, image and DL output, and when: the blinding rules, checked on every request."""

from datetime import datetime

from django.db.models import QuerySet

from readerstudy.errors import NotFound, NotOpenYet
from readerstudy.reading.actions import check_session_open
from readerstudy.reading.models import Read, ReadingSession, SessionItem
from readerstudy.studies.models import Study

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


def check_item_visible(item: SessionItem, now: datetime, *, ahead: int = 0) -> None:
    """Refuse items of a session that is not open and started, and items beyond the current one (+ ahead)."""
    session = item.session
    check_session_open(session, now)
    if session.started_at is None:
        raise NotOpenYet(f"session {session.index} has not been started")
    current = current_position(session)
    if current is not None and item.position > current + ahead:
        raise NotOpenYet(f"item {item.position + 1} is not open yet; the current item is {current + 1}")


def dl_allowed(item: SessionItem) -> bool:
    """DL output only in modalities that show it, and in sequential designs only once every earlier modality's
    read of the same case is locked."""
    if not item.modality.shows_dl:
        return False
    if item.session.study.design != Study.Design.SEQUENTIAL:
        return True
    earlier = SessionItem.objects.filter(
        session=item.session, case=item.case, modality__order__lt=item.modality.order
    ).values_list("pk", flat=True)
    return Read.objects.filter(item__in=list(earlier)).count() == len(earlier)
