"""Read-only admin views of sessions, reads and the audit trail (actions are the only writers)."""

import csv
import json

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from readerstudy.csvsafe import safe_row
from readerstudy.reading.models import AuditEvent, Read, ReadingSession, SessionItem
from readerstudy.studies.admin import ReadOnlyAdminMixin
from readerstudy.studies.admin_scope import StudyScopedAdminMixin


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
    list_display = ("study", "reader", "case", "modality", "rating", "active_seconds", "submitted_at")
    list_filter = ("study", "reader", "modality__key")
    list_select_related = ("study", "reader", "case", "modality")


@admin.register(AuditEvent)
class AuditEventAdmin(StudyScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    study_field = "study"
    list_display = ("created_at", "actor", "verb", "object_type", "object_id", "study")
    list_filter = ("verb", "object_type", "study", ("actor", admin.RelatedOnlyFieldListFilter))
    search_fields = ("object_id", "actor__username", "verb")
    date_hierarchy = "created_at"
    list_select_related = ("actor", "study")
    readonly_fields = (
        "created_at",
        "actor",
        "study",
        "verb",
        "object_type",
        "object_id",
        "before",
        "after",
        "seq",
        "prev_hash",
        "hash",
        "source_hash",
    )
    actions = ["export_csv"]

    @admin.action(description="Export selected events as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="audit-events.csv"'
        writer = csv.writer(response)
        writer.writerow(["id", "created_at", "actor", "study", "verb", "object_type", "object_id", "before", "after"])
        for e in queryset.select_related("actor", "study").order_by("created_at", "id"):
            actor = e.actor.get_username() if e.actor else ""
            study = e.study.name if e.study else ""
            row = [e.pk, e.created_at.isoformat(), actor, study, e.verb, e.object_type, e.object_id]
            writer.writerow(safe_row([*row, json.dumps(e.before), json.dumps(e.after)]))  # no formulas
        return response
