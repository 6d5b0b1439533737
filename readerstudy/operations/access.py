"""Who may open a study's operations pages: its study admins and superusers; everyone else gets 404."""

from typing import Any, cast

from django.http import Http404, HttpRequest

from readerstudy.core.types import Actor
from readerstudy.studies.models import Membership, Study

NOT_FOUND = "no such study"


def administered_studies(user: Any) -> Any:
    """The studies a user administers (every study for a superuser), newest first."""
    studies = Study.objects.order_by("-created_at", "name")
    if getattr(user, "is_superuser", False):
        return studies
    return studies.filter(memberships__user=user, memberships__role=Membership.Role.ADMIN)


def admin_study(user: Any, study_id: int) -> Study:
    """The study if ``user`` administers it; 404 for another study and a missing id alike (no id oracle)."""
    study = administered_studies(user).filter(pk=study_id).first()
    if study is None:
        raise Http404(NOT_FOUND)
    return study


def actor(request: HttpRequest) -> Actor:
    """The signed-in user of a ``login_required`` view, typed as the actions' actor."""
    return cast(Actor, request.user)
