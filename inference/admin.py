"""Admin views of predictions and precompute runs (read-only: actions and tasks write them), and the Study
admin's precompute action.

The precompute action is defined here, not in studies/admin.py: it starts an inference job, and studies (a lower
floor) imports nothing of inference. This module adds it to StudyAdmin through ``StudyAdmin.add_action``.
"""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from inference.jobs import start_precompute
from inference.models import PrecomputeRun, Prediction
from readerstudy.core.admin import ReadOnlyAdminMixin, StudyScopedAdminMixin
from readerstudy.core.errors import ActionError
from readerstudy.studies.admin import StudyAdmin
from readerstudy.studies.models import Study


@admin.action(description="Precompute DL predictions (phantom UNet, CPU) in the background")
def precompute(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Study]) -> None:
    for study in queryset:
        try:
            run = start_precompute(request.user, study)
        except ActionError as exc:
            model_admin.message_user(request, str(exc), level=messages.ERROR)
        else:
            url = reverse("admin:inference_precomputerun_change", args=[run.pk])
            model_admin.message_user(
                request, format_html('{}: precompute run <a href="{}">{}</a> started', study.name, url, run.pk)
            )


StudyAdmin.add_action(precompute)


@admin.register(Prediction)
class PredictionAdmin(StudyScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    study_field = "case__study"
    list_display = ("case", "model_name", "model_version", "probability", "runtime_seconds", "device", "created_at")
    list_filter = ("case__study", "model_name", "device")
    search_fields = ("case__case_id",)
    list_select_related = ("case",)


@admin.register(PrecomputeRun)
class PrecomputeRunAdmin(StudyScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    study_field = "study"
    list_display = ("pk", "study", "backend", "device", "status", "cases_handled", "n_done", "n_skipped",
                    "n_failed", "created_at", "finished_at")  # fmt: skip
    list_filter = ("status", "study")
    readonly_fields = ("study", "created_by", "backend", "device", "status", "progress", "message", "n_cases",
                       "n_done", "n_skipped", "n_failed", "errors", "created_at", "finished_at")  # fmt: skip

    @admin.display(description="progress")
    def cases_handled(self, run: PrecomputeRun) -> str:
        return f"{run.n_handled} of {run.n_cases}"
