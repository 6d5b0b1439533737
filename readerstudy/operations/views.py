"""Study operations pages (server-rendered): views parse input, check access, and call one action.

This module: the list of a user's studies and the "New study" form; the study pages live in overview.py,
configure.py, readers.py and progress.py.
"""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from readerstudy.core.errors import ActionError
from readerstudy.operations.access import actor, administered_studies
from readerstudy.studies import actions
from readerstudy.studies.models import Study


class NewStudyForm(forms.Form):
    name = forms.CharField(max_length=actions.NAME_MAX_CHARS)
    design = forms.ChoiceField(choices=Study.Design.choices, initial=Study.Design.CROSSOVER)
    washout_days = forms.IntegerField(min_value=0, max_value=actions.WASHOUT_DAYS_MAX, initial=28)
    unaided_label = forms.CharField(max_length=100, initial="Unaided", label="Unaided modality")
    aided_label = forms.CharField(max_length=100, initial="DL-assisted", label="Aided modality (shows DL output)")


def may_create_studies(user: object) -> bool:
    return bool(getattr(user, "is_staff", False) or getattr(user, "is_superuser", False))


@login_required
def study_list(request: HttpRequest) -> HttpResponse:
    form = NewStudyForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            study = actions.set_up_study(actor(request), **form.cleaned_data)
        except ActionError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Study {study.name!r} created: import cases, add readers, then launch.")
            return redirect("operations:overview", study.pk)
    context = {
        "studies": administered_studies(request.user),
        "form": form,
        "may_create": may_create_studies(request.user),
    }
    return render(request, "operations/study_list.html", context, status=400 if form.errors else 200)
