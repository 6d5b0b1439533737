"""Admin views of predictions and precompute runs (read-only: actions and tasks write them)."""

from django.contrib import admin

from inference.models import PrecomputeRun, Prediction
from readerstudy.studies.admin import ReadOnlyAdminMixin


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("case", "model_name", "model_version", "probability", "runtime_seconds", "device", "created_at")
    list_filter = ("case__study", "model_name", "device")
    search_fields = ("case__case_id",)
    list_select_related = ("case",)


@admin.register(PrecomputeRun)
class PrecomputeRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("pk", "study", "backend", "device", "status", "progress", "n_done", "n_skipped", "n_failed",
                    "created_at", "finished_at")  # fmt: skip
    list_filter = ("status", "study")
    readonly_fields = ("study", "created_by", "backend", "device", "status", "n_cases", "n_done", "n_skipped",
                       "n_failed", "errors", "created_at", "finished_at")  # fmt: skip
