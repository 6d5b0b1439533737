"""Admin pieces every app shares, and the audit trail's (read-only) admin.

``ReadOnlyAdminMixin``: for tables only actions write. ``StudyScopedAdminMixin``: study boundaries in the
Django admin, the one mixin every ModelAdmin and inline of ours uses.

A staff user reaches only what belongs to the studies where they hold the admin role (superusers reach
everything). A user who reads study A and administers study B must see nothing of A (its truth, the other
readers' ratings, its sessions, audit events, predictions) through any changelist, change, history or delete
page, filter sidebar, search, action or form choice. Every one of those starts from ``get_queryset`` or from
the querysets this mixin hands out, so scoping them here scopes the whole admin.
"""

import csv
import json
import math
from typing import TYPE_CHECKING, Any, cast

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.db import models
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse

from readerstudy.analysis.strata import stratum_labels, stratum_range
from readerstudy.core.models import AuditEvent
from readerstudy.csvsafe import safe_row


def _study_model() -> type[models.Model]:
    # By label: core sits below studies and imports none of it (see the package docstring). Study declares no
    # manager of its own: ``_default_manager`` is its ``objects``.
    return apps.get_model("studies", "Study")


class ReadOnlyAdminMixin:
    """For tables that only actions write: browsable, never edited here."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def administered_studies(user: Any) -> QuerySet:
    """The studies ``user`` may administer: those where they hold the admin role; all of them for a superuser."""
    study = _study_model()
    if getattr(user, "is_superuser", False):
        return study._default_manager.all()
    if not getattr(user, "is_authenticated", False):
        return study._default_manager.none()
    admin_role = apps.get_model("studies", "Membership").Role.ADMIN
    return study._default_manager.filter(memberships__user=user, memberships__role=admin_role)


def scope_to_administered(user: Any, queryset: QuerySet, study_field: str) -> QuerySet:
    """``queryset`` restricted to rows whose ``study_field`` ("pk" for Study itself) is a study ``user`` administers."""
    if getattr(user, "is_superuser", False):
        return queryset
    return queryset.filter(**{f"{study_field}__in": administered_studies(user).values("pk")})


def study_path(model: type[models.Model], max_depth: int = 3) -> str | None:
    """The lookup from ``model`` to the Study it belongs to ("pk", "study", "case__study", ...), or None.

    Found by following forward foreign keys, shortest path first; None for models outside any study (users).
    """
    study = _study_model()
    if model is study:
        return "pk"
    frontier: list[tuple[type[models.Model], str]] = [(model, "")]
    for _ in range(max_depth):
        following: list[tuple[type[models.Model], str]] = []
        for current, prefix in frontier:
            for field in current._meta.get_fields():
                if not (field.concrete and (field.many_to_one or field.one_to_one)):
                    continue
                if field.related_model is study:
                    return f"{prefix}{field.name}"
                # A concrete forward relation of a loaded model: its related_model is resolved to a class.
                following.append((cast(type[models.Model], field.related_model), f"{prefix}{field.name}__"))
        frontier = following
    return None


class StudyScopedRelatedFilter(admin.RelatedFieldListFilter):
    """A related-field filter that offers only the values found in the user's scoped rows.

    Django's own lists the whole related table: every study's name, every reader's username.
    """

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> list:
        if request.user.is_superuser:
            return super().field_choices(field, request, model_admin)
        in_scope = model_admin.scope(request, model_admin.model._default_manager.all())
        pks = in_scope.values_list(f"{self.field_path}__pk", flat=True)
        ordering = self.field_admin_ordering(field, request, model_admin)
        return field.get_choices(include_blank=False, limit_choices_to={"pk__in": pks}, ordering=ordering)


class StudyScopedAllValuesFilter(admin.AllValuesFieldListFilter):
    """A plain-value filter over the user's scoped rows (Django's reads a related model's whole table)."""

    def __init__(
        self, field: Any, request: HttpRequest, params: Any, model: Any, model_admin: Any, field_path: str
    ) -> None:
        super().__init__(field, request, params, model, model_admin, field_path)
        if not request.user.is_superuser:
            in_scope = model_admin.scope(request, model._default_manager.all())
            self.lookup_choices = in_scope.order_by(field_path).values_list(field_path, flat=True).distinct()


class SizeStratumFilter(admin.SimpleListFilter):
    """Cases by lesion-size stratum, derived from the diameter and each study's bins (no stored stratum).

    Its choices are the strata of the studies in ``model_admin.get_queryset()``, which the mixin scopes.
    """

    title = "size stratum"
    parameter_name = "size_stratum"

    def _bins(self, queryset: QuerySet) -> dict[int, list[float]]:
        studies = (
            _study_model()._default_manager.filter(pk__in=queryset.values("study_id")).values_list("pk", "size_bins_mm")
        )
        return dict(studies)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # Smallest first, by upper then lower edge: "<=10", "10-30", ">30".
        order: dict[str, tuple[float, float]] = {}
        for bins in self._bins(model_admin.get_queryset(request)).values():
            for label in stratum_labels(bins):
                bounds = stratum_range(label, bins)
                assert bounds is not None  # one of the bins' own labels
                lo, hi = bounds
                order[label] = (hi, lo)
        return [(label, label) for label in sorted(order, key=order.__getitem__)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        label = self.value()
        if not label:
            return queryset
        match = Q(pk__in=[])
        for study_id, bins in self._bins(queryset).items():
            bounds = stratum_range(label, bins)
            if bounds is not None:
                lo, hi = bounds
                match |= Q(study_id=study_id, diameter_mm__gt=lo) & (Q() if hi == math.inf else Q(diameter_mm__lte=hi))
        return queryset.filter(match)


# Filters whose choices cannot reveal another study: fixed choices, or values read through the scoped queryset.
SCOPED_FILTERS = (
    StudyScopedRelatedFilter,
    StudyScopedAllValuesFilter,
    admin.RelatedOnlyFieldListFilter,  # reads model_admin.get_queryset(), which the mixin scopes
    admin.ChoicesFieldListFilter,
    admin.BooleanFieldListFilter,
    admin.DateFieldListFilter,
    admin.EmptyFieldListFilter,
    SizeStratumFilter,
)


def scoped_list_filter(model: type[models.Model], entry: Any) -> Any:
    """A ``list_filter`` entry rewritten so its sidebar offers only in-scope values."""
    if isinstance(entry, str):
        field = get_fields_from_path(model, entry)[-1]
        if field.is_relation:
            return (entry, StudyScopedRelatedFilter)
        if field.choices or isinstance(field, models.BooleanField | models.DateField):
            return entry  # Django's filter for these offers fixed choices, not stored values
        return (entry, StudyScopedAllValuesFilter)
    if isinstance(entry, tuple | list):
        path, filter_class = entry
        if filter_class in (admin.RelatedFieldListFilter, admin.AllValuesFieldListFilter):
            return scoped_list_filter(model, path)
    # SimpleListFilter subclasses and scoped classes stay; the role matrix test accepts only SCOPED_FILTERS.
    return entry


if TYPE_CHECKING:
    _Base = admin.ModelAdmin[Any]
else:
    _Base = object


class StudyScopedAdminMixin(_Base):
    """Scopes a ModelAdmin or inline to the studies the user administers; put it first in the bases.

    ``study_field`` is the lookup from the model to its Study ("study", "case__study"; "pk" for Study itself).
    """

    study_field: str

    def scope(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return scope_to_administered(request.user, queryset, self.study_field)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Changelist, change, history and delete pages, actions and autocompletes all start from here.
        return self.scope(request, super().get_queryset(request))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # Django passes the scoped queryset already; scoping again keeps any other caller inside the boundary.
        return super().get_search_results(request, self.scope(request, queryset), search_term)

    def get_list_filter(self, request: HttpRequest) -> list:
        return [scoped_list_filter(self.model, entry) for entry in super().get_list_filter(request)]

    def response_action(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        # Selected ids are matched against this queryset, so crafted ids of other studies select nothing.
        return super().response_action(request, self.scope(request, queryset))

    def _scoped_choices(self, db_field: Any, request: HttpRequest, kwargs: dict) -> None:
        path = study_path(db_field.related_model)
        if "queryset" in kwargs or path is None or request.user.is_superuser:
            return
        db = kwargs.get("using")
        queryset = self.get_field_queryset(db, db_field, request)
        if queryset is None:
            queryset = db_field.related_model._default_manager.using(db)
        kwargs["queryset"] = scope_to_administered(request.user, queryset, path)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        self._scoped_choices(db_field, request, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        self._scoped_choices(db_field, request, kwargs)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def _in_scope(self, request: HttpRequest, obj: Any) -> bool:
        # Inlines are handed their parent object here, which the parent admin has scoped already.
        if obj is None or request.user.is_superuser or not isinstance(obj, self.model):
            return True
        return self.scope(request, self.model._default_manager.filter(pk=obj.pk)).exists()

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) and self._in_scope(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and self._in_scope(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and self._in_scope(request, obj)


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
