"""Live progress of a running study: per reader (current session, reads of total, median active time per case,
last activity, when the next session opens) and per study (percent complete, projected finish), as a page that
polls its JSON twin, and as CSV.

Projected finish (documented here and on the page): the observed rate is the study's reads so far divided by the
time since launch (at least one hour, so the first minutes do not extrapolate wildly); the remaining reads at that
rate give a date, which is moved no earlier than the latest date a session with unread items is known to open
(washout), nor than now plus the washout where a reader's later session has no date yet. No reads: no projection.

The optional practice session (practice cases, truth shown after each read) is left out of everything here:
its items and reads count neither in a reader's numbers nor in the study's percent and projection.
"""

import csv
import io
import statistics
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from readerstudy.core.dates import format_when
from readerstudy.csvsafe import safe_row
from readerstudy.operations.access import admin_study
from readerstudy.operations.overview import precompute_runs
from readerstudy.reading.models import Read, ReadingSession, SessionItem
from readerstudy.studies.models import Membership, Study

MIN_ELAPSED = timedelta(hours=1)
CSV_COLUMNS = [
    "reader", "current_session", "sessions", "reads", "total", "percent", "median_active_seconds",
    "last_activity", "next_session_opens", "next_session",
]  # fmt: skip


@dataclass(frozen=True)
class ReaderProgress:
    reader: str
    current_session: int | None  # None: every session finished (or none yet)
    sessions: int
    reads: int
    total: int
    percent: float
    median_active_seconds: float | None
    last_activity: datetime | None  # the last read's submitted_at
    next_session_opens: datetime | None
    next_session: str  # the same for people, e.g. "session 2 opens 3 Jan 2027, 09:00 UTC"


@dataclass(frozen=True)
class StudyProgress:
    reads: int
    total: int
    percent: float
    projected_finish: datetime | None
    projection: str  # how it was found, or why there is none
    readers: list[ReaderProgress]


def _percent(done: int, total: int) -> float:
    return round(100.0 * done / total, 1) if total else 0.0


def _next_session(sessions: list[ReadingSession], washout_days: int, now: datetime) -> tuple[datetime | None, str]:
    """When the reader's next session opens: the current one's date while it waits for its washout, else the
    session after it (its date is set when the current one finishes)."""
    current = next((s for s in sessions if s.finished_at is None), None)
    if current is None:
        return None, "all sessions finished" if sessions else "no sessions"
    if current.available_from is not None and current.available_from > now:
        return current.available_from, f"session {current.index} opens {format_when(current.available_from)}"
    later = [s for s in sessions if s.index > current.index]
    if not later:
        return None, f"session {current.index} open; it is the last"
    return None, f"session {later[0].index} opens {washout_days} days after session {current.index} is finished"


def study_progress(study: Study, *, now: datetime | None = None) -> StudyProgress:
    now = now or timezone.now()
    readers = list(
        Membership.objects.filter(study=study, role=Membership.Role.READER)
        .select_related("user")
        .order_by("user__username")
    )
    totals = dict(
        SessionItem.objects.filter(study=study, session__practice=False)
        .values("reader")
        .annotate(n=Count("pk"))
        .values_list("reader", "n")
    )
    reads: dict[int, list[tuple[float, datetime]]] = {}
    for reader_id, seconds, submitted in (
        Read.objects.analysed().filter(study=study).values_list("reader_id", "active_seconds", "submitted_at")
    ):
        reads.setdefault(reader_id, []).append((seconds, submitted))
    sessions: dict[int, list[ReadingSession]] = {}
    for session in ReadingSession.objects.filter(study=study, practice=False).order_by("reader_id", "index"):
        sessions.setdefault(session.reader_id, []).append(session)

    rows = []
    for membership in readers:
        uid = membership.user_id
        own, own_sessions = reads.get(uid, []), sessions.get(uid, [])
        current = next((s.index for s in own_sessions if s.finished_at is None), None)
        opens, text = _next_session(own_sessions, study.washout_days, now)
        rows.append(
            ReaderProgress(
                reader=membership.user.get_username(),
                current_session=current,
                sessions=len(own_sessions),
                reads=len(own),
                total=totals.get(uid, 0),
                percent=_percent(len(own), totals.get(uid, 0)),
                median_active_seconds=round(statistics.median(s for s, _ in own), 1) if own else None,
                last_activity=max((t for _, t in own), default=None),
                next_session_opens=opens,
                next_session=text,
            )
        )
    n_reads = sum(len(v) for v in reads.values())
    n_total = sum(totals.values())
    finish, how = projected_finish(study, n_reads, n_total, rows, sessions, now)
    return StudyProgress(n_reads, n_total, _percent(n_reads, n_total), finish, how, rows)


def projected_finish(
    study: Study,
    n_reads: int,
    n_total: int,
    rows: list[ReaderProgress],
    sessions: dict[int, list[ReadingSession]],
    now: datetime,
) -> tuple[datetime | None, str]:
    """The projected finish date from the observed rate (see the module's docstring), and how it was found."""
    if n_total == 0 or study.launched_at is None:
        return None, "not launched"
    if n_reads >= n_total:
        return max((r.last_activity for r in rows if r.last_activity), default=None), "finished"
    if n_reads == 0:
        return None, "no reads yet: no rate to project from"
    elapsed = max(now - study.launched_at, MIN_ELAPSED)
    rate_per_day = n_reads / (elapsed / timedelta(days=1))
    finish = now + timedelta(days=(n_total - n_reads) / rate_per_day)
    floor = now
    for own in sessions.values():
        unfinished = [s for s in own if s.finished_at is None]
        for s in unfinished:
            if s.available_from is not None:
                floor = max(floor, s.available_from)
        if len(unfinished) > 1 and any(s.available_from is None for s in unfinished):
            floor = max(floor, now + timedelta(days=study.washout_days))
    how = f"{rate_per_day:.1f} reads a day since launch, {n_total - n_reads} to go"
    if floor > finish:
        return floor, how + "; no earlier than the washout lets the last sessions open"
    return finish, how


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def as_json(progress: StudyProgress) -> dict[str, Any]:
    return {
        "reads": progress.reads,
        "total": progress.total,
        "percent": progress.percent,
        "projected_finish": _iso(progress.projected_finish),
        "projected_finish_text": format_when(progress.projected_finish) if progress.projected_finish else "—",
        "projection": progress.projection,
        "readers": [
            {
                **asdict(r),
                "last_activity": _iso(r.last_activity),
                "last_activity_text": format_when(r.last_activity) if r.last_activity else "—",
                "next_session_opens": _iso(r.next_session_opens),
            }
            for r in progress.readers
        ],
    }


@login_required
def progress_page(request: HttpRequest, study_id: int) -> HttpResponse:
    study = admin_study(request.user, study_id)
    context = {"study": study, "progress": study_progress(study), "runs": precompute_runs(study)}
    return render(request, "operations/progress.html", context)


@login_required
def progress_json(request: HttpRequest, study_id: int) -> JsonResponse:
    study = admin_study(request.user, study_id)
    data = as_json(study_progress(study))
    data["status"] = study.status
    data["precompute_runs"] = precompute_runs(study)
    response = JsonResponse(data)
    response["Cache-Control"] = "no-store"
    return response


@login_required
def progress_csv(request: HttpRequest, study_id: int) -> HttpResponse:
    study = admin_study(request.user, study_id)
    progress = study_progress(study)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in progress.readers:
        # Reader names are user text: a name like =HYPERLINK(...) must stay text in a spreadsheet (csvsafe).
        writer.writerow(
            safe_row(
                [
                    r.reader,
                    r.current_session or "",
                    r.sessions,
                    r.reads,
                    r.total,
                    r.percent,
                    "" if r.median_active_seconds is None else r.median_active_seconds,
                    _iso(r.last_activity) or "",
                    _iso(r.next_session_opens) or "",
                    r.next_session,
                ]
            )
        )
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="study-{study.pk}-progress.csv"'
    return response
