"""Admin views of predictions and precompute runs (read-only: actions and tasks write them)."""

from django.contrib import admin

from inference.models import PrecomputeRun, Prediction
from readerstudy.studies.admin import ReadOnlyAdminMixin
from readerstudy.studies.admin_scope import StudyScopedAdminMixin


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
    list_display = ("pk", "study", "backend", "device", "status", "progress", "n_done", "n_skipped", "n_failed",
                    "created_at", "finished_at")  # fmt: skip
    list_filter = ("status", "study")
    readonly_fields = ("study", "created_by", "backend", "device", "status", "n_cases", "n_done", "n_skipped",
                       "n_failed", "errors", "created_at", "finished_at")  # fmt: skip
