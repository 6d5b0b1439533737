"""Read-only admin views of sessions and reads (actions are the only writers), and the Study admin's launch.

The launch action is defined here, not in studies/admin.py: launch writes this app's rows, and studies (a lower
floor) imports nothing of reading. This module adds it to StudyAdmin through ``StudyAdmin.add_action``.
"""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from readerstudy.core.admin import ReadOnlyAdminMixin, StudyScopedAdminMixin
from readerstudy.core.errors import ActionError
from readerstudy.reading import actions
from readerstudy.reading.models import Read, ReadingSession, SessionItem
from readerstudy.studies.admin import StudyAdmin
from readerstudy.studies.models import Study


def _launch(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Study], *, accept: bool) -> None:
    for study in queryset:
        try:
            n_items = actions.launch_study(request.user, study, accept_missing_predictions=accept)
        except ActionError as exc:
            model_admin.message_user(request, str(exc), level=messages.ERROR)
        else:
            model_admin.message_user(request, f"{study.name}: launched, {n_items} items stored", level=messages.SUCCESS)


@admin.action(description="Launch selected studies (write reading orders, open sessions)")
def launch(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Study]) -> None:
    _launch(model_admin, request, queryset, accept=False)


# The explicit acceptance the study page's checkbox gives, as its own action (an admin action has no form);
# the launch event records it.
@admin.action(description="Launch selected studies, accepting cases without DL predictions (aided items show none)")
def launch_accepting_missing_predictions(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Study]
) -> None:
    _launch(model_admin, request, queryset, accept=True)


StudyAdmin.add_action(launch_accepting_missing_predictions, first=True)
StudyAdmin.add_action(launch, first=True)


class SessionItemInline(StudyScopedAdminMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = SessionItem
    study_field = "session__study"
    fields = ("position", "case", "modality")
    readonly_fields = fields
    max_num = 0
    show_change_link = False


@admin.register(ReadingSession)
class ReadingSessionAdmin(StudyScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    study_field = "study"
    list_display = ("study", "reader", "index", "available_from", "started_at", "finished_at", "n_items")
    list_filter = ("study", "reader")
    list_select_related = ("study", "reader")
    inlines = [SessionItemInline]

    @admin.display(description="items")
    def n_items(self, session: ReadingSession) -> int:
        return session.items.count()


@admin.register(Read)
class ReadAdmin(StudyScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    study_field = "study"
    list_display = (
        "study", "reader", "case", "modality", "rating", "not_assessable", "active_seconds", "served_seconds",
        "submitted_at",
    )  # fmt: skip
    list_filter = ("study", "reader", "modality__key", "not_assessable")
    list_select_related = ("study", "reader", "case", "modality")
