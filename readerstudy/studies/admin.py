"""Django admin for study admins. Every change goes through ``readerstudy.studies.actions``; every ModelAdmin and
inline is scoped to the studies the user administers by ``core.admin.StudyScopedAdminMixin``.

The Study changelist's launch and precompute actions write rows of higher floors (reading's sessions,
inference's runs): reading/admin.py and inference/admin.py define them and add them with ``StudyAdmin.add_action``,
so this module imports neither app.
"""

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.utils.html import format_html, format_html_join

from readerstudy.core.admin import ReadOnlyAdminMixin, SizeStratumFilter, StudyScopedAdminMixin
from readerstudy.core.dates import format_when
from readerstudy.core.errors import ActionError
from readerstudy.studies import actions
from readerstudy.studies.models import Case, Membership, Modality, Study


def _frozen(study: Study | None) -> bool:
    """A launched or closed study: its set-up is frozen, so no widget may offer a change the actions refuse."""
    return study is not None and study.status != Study.Status.DRAFT


class DraftOnlyInlineMixin:
    """Rows of a launched study are shown read-only: no add, change or delete controls (``obj`` is the study)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _frozen(obj) and super().has_add_permission(request, obj)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _frozen(obj) and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _frozen(obj) and super().has_delete_permission(request, obj)  # type: ignore[misc]


class ModalityInline(DraftOnlyInlineMixin, StudyScopedAdminMixin, admin.TabularInline):
    model = Modality
    study_field = "study"
    extra = 0
    fields = ("key", "label", "shows_dl", "order")


class MembershipInline(DraftOnlyInlineMixin, StudyScopedAdminMixin, admin.TabularInline):
    model = Membership
    study_field = "study"
    extra = 0
    fields = ("user", "role")
    autocomplete_fields = ("user",)


class CaseInline(StudyScopedAdminMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = Case
    study_field = "study"
    fields = ("case_id", "patient", "diameter_mm", "size_stratum", "slice_index", "truth_label")
    readonly_fields = fields
    show_change_link = True
    max_num = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[Case]:
        # size_stratum reads the study's bins, truth_label the truth: one query, not three per row.
        return super().get_queryset(request).select_related("study", "patient", "truth")

    @admin.display(description="truth")
    def truth_label(self, case: Case) -> str:
        return getattr(getattr(case, "truth", None), "label", "missing")


@admin.register(Study)
class StudyAdmin(StudyScopedAdminMixin, admin.ModelAdmin):
    study_field = "pk"
    list_display = ("name", "design", "status", "n_readers", "n_cases", "launched_at")
    list_filter = ("status", "design")
    search_fields = ("name",)
    inlines = [ModalityInline, MembershipInline, CaseInline]
    actions = ["close"]  # launch and precompute are added by reading/admin.py and inference/admin.py

    @classmethod
    def add_action(cls, action: Callable, *, first: bool = False) -> None:
        """Offer an admin action defined on a higher floor (which may import this module; this one not it)."""
        cls.actions = [action, *cls.actions] if first else [*cls.actions, action]

    def has_change_permission(self, request: HttpRequest, obj: Study | None = None) -> bool:
        # A launched study's change page shows every value read-only, without Save or Delete (the actions refuse).
        return not _frozen(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Study | None = None) -> bool:
        return not _frozen(obj) and super().has_delete_permission(request, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Study]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                _cases=Count("cases", distinct=True),
                _readers=Count("memberships", filter=Q(memberships__role="reader"), distinct=True),
            )
        )

    def get_fields(self, request: HttpRequest, obj: Study | None = None) -> list[str]:
        fields = [
            "name",
            "description",
            "design",
            "washout_days",
            "patient_grouping",
            "size_bins_mm",
            *actions.READING_CONFIG_FIELDS,
        ]
        if obj is not None:
            fields = ["readiness_checklist", *fields, "seed", "status", "launched_at", "closed_at"]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Study | None = None) -> list[str]:
        if obj is None:
            return []
        locked = ["readiness_checklist", "name", "seed", "status", "launched_at", "closed_at"]
        if obj.status != Study.Status.DRAFT:
            # Frozen at launch: every reader reads under the same set-up.
            locked += ["description", "design", "washout_days", "patient_grouping", "size_bins_mm"]
            locked += list(actions.READING_CONFIG_FIELDS)
        return locked

    @admin.display(description="cases")
    def n_cases(self, study: Study) -> int:
        return study._cases

    @admin.display(description="readers")
    def n_readers(self, study: Study) -> int:
        return study._readers

    @admin.display(description="readiness checklist")
    def readiness_checklist(self, study: Study) -> str:
        if study.status != Study.Status.DRAFT:
            return f"{study.get_status_display()} on {format_when(study.launched_at)}" if study.launched_at else ""
        check = actions.readiness(study)
        rows = [("✗", p) for p in check.problems] + [("!", w) for w in check.warnings]
        if check.ready:
            rows.insert(0, ("✓", "ready to launch"))
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{} {}</li>", rows))

    # --- writes go through actions ---

    def save_model(self, request: HttpRequest, obj: Study, form: Any, change: bool) -> None:
        data = {k: form.cleaned_data[k] for k in form.changed_data if k in actions.EDITABLE_FIELDS}
        if not change:
            data.pop("name", None)  # create_study takes it as its own argument
            created = actions.create_study(request.user, form.cleaned_data["name"], **data)
            obj.pk = created.pk
            obj.refresh_from_db()
        elif data:
            actions.update_study(request.user, obj, **data)

    def save_related(self, request: HttpRequest, form: Any, formsets: list, change: bool) -> None:
        study = form.instance
        for formset in formsets:
            # Django's change message reads these; the actions below are the ones that write.
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
            if formset.model is Modality:
                self._save_modalities(request, study, formset)
            elif formset.model is Membership:
                self._save_members(request, study, formset)

    def _save_modalities(self, request: HttpRequest, study: Study, formset: Any) -> None:
        for f in formset.forms:
            if not f.has_changed() and not f.cleaned_data.get("DELETE"):
                continue
            if f.instance.pk and f.cleaned_data.get("DELETE"):
                actions.remove_modality(request.user, f.instance)
            elif f.instance.pk:
                messages.warning(request, f"modality {f.instance.key}: editing is not supported; delete and re-add")
            elif f.cleaned_data and not f.cleaned_data.get("DELETE"):
                d = f.cleaned_data
                actions.add_modality(
                    request.user, study, d["key"], d["label"], shows_dl=d["shows_dl"], order=d["order"]
                )

    def _save_members(self, request: HttpRequest, study: Study, formset: Any) -> None:
        for f in formset.forms:
            if f.instance.pk and f.cleaned_data.get("DELETE"):
                actions.remove_member(request.user, f.instance)
            elif f.instance.pk and f.has_changed():
                messages.warning(request, f"{f.instance.user}: change a role by removing and re-adding the member")
            elif not f.instance.pk and f.cleaned_data and not f.cleaned_data.get("DELETE"):
                if f.cleaned_data["user"] == request.user and not f.has_changed():
                    continue
                actions.add_member(request.user, study, f.cleaned_data["user"], f.cleaned_data["role"])

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().changeform_view(request, *args, **kwargs)
        except ActionError as exc:
            self.message_user(request, str(exc), level=messages.ERROR)
            return HttpResponseRedirect(request.path)

    @admin.action(description="Close selected studies (no more reads)")
    def close(self, request: HttpRequest, queryset: QuerySet[Study]) -> None:
        for study in queryset:
            try:
                actions.close_study(request.user, study)
            except ActionError as exc:
                self.message_user(request, str(exc), level=messages.ERROR)
            else:
                self.message_user(request, f"{study.name}: closed", level=messages.SUCCESS)


@admin.register(Case)
class CaseAdmin(StudyScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    study_field = "study"
    list_display = ("case_id", "study", "patient", "diameter_mm", "size_stratum", "truth_label", "truth_source")
    list_filter = ("study", SizeStratumFilter, "truth__label")
    search_fields = ("case_id", "patient__pseudonym")
    list_select_related = ("study", "patient", "truth")

    @admin.display(description="truth")
    def truth_label(self, case: Case) -> str:
        return getattr(getattr(case, "truth", None), "label", "missing")

    @admin.display(description="truth source")
    def truth_source(self, case: Case) -> str:
        return getattr(getattr(case, "truth", None), "source", "")
