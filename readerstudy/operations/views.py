"""Study operations pages (server-rendered): views parse input, check access, and call one action."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from readerstudy.operations.access import administered_studies


@login_required
def study_list(request: HttpRequest) -> HttpResponse:
    return render(request, "operations/study_list.html", {"studies": administered_studies(request.user)})
