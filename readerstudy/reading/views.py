"""Reader pages: the worklist (server-rendered), a study's instructions, and the reading page (the viewer bundle
drives it via the API)."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from readerstudy.core.errors import NotFound
from readerstudy.reading import access
from readerstudy.reading.api import session_payload
from readerstudy.studies import actions as study_actions
from readerstudy.studies.models import Membership, Study


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
    payload = session_payload(session, timezone.now())
    if not payload["instructions_acknowledged"]:
        # Instructions first: the page sends the reader back here once they are acknowledged.
        return redirect(f"{payload['instructions_url']}?next={session.pk}")
    return render(request, "reading/read.html", {"session": payload})


def _reader_membership(request: HttpRequest, study_id: int) -> Membership:
    """The user's reader membership of a launched or closed study; anything else is "not found"."""
    membership = (
        Membership.objects.select_related("study")
        .filter(study_id=study_id, user_id=request.user.pk, role=Membership.Role.READER)
        .exclude(study__status=Study.Status.DRAFT)
        .first()
    )
    if membership is None:
        raise Http404("no such study")
    return membership


@login_required
@require_http_methods(["GET", "POST"])
def instructions(request: HttpRequest, study_id: int) -> HttpResponse:
    """The study's reading instructions (plain text, shown escaped); POST acknowledges them."""
    membership = _reader_membership(request, study_id)
    study = membership.study
    # ?next= is only ever one of the reader's own session ids (never a URL: no open redirect).
    next_id = request.GET.get("next", "")
    next_session = (
        access.own_sessions(request.user).filter(study=study, pk=int(next_id)).first()
        if next_id.isascii() and next_id.isdigit() and len(next_id) <= 18
        else None
    )
    if request.method == "POST":
        try:
            study_actions.acknowledge_instructions(request.user, study)
        except NotFound:
            raise Http404("no such study") from None
        if next_session is not None:
            return redirect("reading:session", next_session.pk)
        return redirect("reading:worklist")
    return render(
        request,
        "reading/instructions.html",
        {"study": study, "membership": membership, "next_session": next_session},
    )
