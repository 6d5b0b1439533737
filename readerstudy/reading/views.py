"""Reader pages: the worklist (server-rendered) and the reading page (the viewer bundle drives it via the API)."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from readerstudy.core.errors import NotFound
from readerstudy.reading import access
from readerstudy.reading.api import session_payload


@login_required
def worklist(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    sessions = access.own_sessions(request.user).select_related("study").order_by("study__name", "index")
    return render(request, "reading/worklist.html", {"sessions": [session_payload(s, now) for s in sessions]})


@login_required
def reading_page(request: HttpRequest, session_id: int) -> HttpResponse:
    try:
        session = access.own_session(request.user, session_id)
    except NotFound:
        raise Http404("no such reading session") from None
    return render(request, "reading/read.html", {"session": session_payload(session, timezone.now())})
