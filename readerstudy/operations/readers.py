"""The readers page: the study's members with their roles; add a reader (an existing user, or a new account whose
owner sets a password through an e-mailed link), the reader metadata a paper reports, removal while a draft."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from readerstudy.core.errors import ActionError
from readerstudy.operations.access import actor, admin_study
from readerstudy.operations.mail import send_set_password_link
from readerstudy.studies import actions
from readerstudy.studies.models import (
    READER_SPECIALTY_MAX_CHARS,
    READER_TRAINING_MAX_CHARS,
    READER_YEARS_MAX,
    Membership,
    Study,
)


class ProfileForm(forms.Form):
    specialty = forms.CharField(max_length=READER_SPECIALTY_MAX_CHARS, required=False)
    years_experience = forms.IntegerField(min_value=0, max_value=READER_YEARS_MAX, required=False)
    training = forms.CharField(widget=forms.Textarea, max_length=READER_TRAINING_MAX_CHARS, required=False)


class AddReaderForm(ProfileForm):
    username = forms.CharField(max_length=actions.USERNAME_MAX_CHARS)
    email = forms.EmailField(
        max_length=actions.EMAIL_MAX_CHARS, required=False, help_text="only for a new account: the set-password link"
    )


def _membership(study: Study, membership_id: int) -> Membership:
    membership = Membership.objects.select_related("user", "study").filter(pk=membership_id, study=study).first()
    if membership is None:
        raise Http404("no such member")
    return membership


@login_required
def readers(request: HttpRequest, study_id: int) -> HttpResponse:
    study = admin_study(request.user, study_id)
    form = AddReaderForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            added = actions.add_reader(actor(request), study, **form.cleaned_data)
        except ActionError as exc:
            form.add_error(None, str(exc))
        else:
            user = added.membership.user
            if added.created_user:
                send_set_password_link(request, user, study.name)
                messages.success(
                    request, f"Account {user.get_username()} created; a set-password link went to {user.email}."
                )
            else:
                messages.success(request, f"{user.get_username()} added as a reader.")
            return redirect("operations:readers", study.pk)
    members = list(Membership.objects.filter(study=study).select_related("user").order_by("role", "user__username"))
    context = {
        "study": study,
        "form": form,
        "members": members,
        "draft": study.status == Study.Status.DRAFT,
        "years_max": READER_YEARS_MAX,
        "training_max": READER_TRAINING_MAX_CHARS,
        "specialty_max": READER_SPECIALTY_MAX_CHARS,
    }
    return render(request, "operations/readers.html", context, status=400 if form.errors else 200)


@login_required
@require_POST
def update_reader(request: HttpRequest, study_id: int, membership_id: int) -> HttpResponse:
    study = admin_study(request.user, study_id)
    membership = _membership(study, membership_id)
    form = ProfileForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(f"{field}: {' '.join(str(m) for m in e)}" for field, e in form.errors.items())
        messages.error(request, f"{membership.user.get_username()}: {errors}")
        return redirect("operations:readers", study.pk)
    try:
        actions.update_reader_profile(actor(request), membership, **form.cleaned_data)
    except ActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{membership.user.get_username()}: saved.")
    return redirect("operations:readers", study.pk)


@login_required
@require_POST
def remove_reader(request: HttpRequest, study_id: int, membership_id: int) -> HttpResponse:
    study = admin_study(request.user, study_id)
    membership = _membership(study, membership_id)
    if membership.role != Membership.Role.READER:
        messages.error(request, f"{membership.user.get_username()} is not a reader.")
        return redirect("operations:readers", study.pk)
    try:
        actions.remove_member(actor(request), membership)
    except ActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{membership.user.get_username()} removed.")
    return redirect("operations:readers", study.pk)
