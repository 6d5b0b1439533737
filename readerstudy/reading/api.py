"""Reading API (DRF, session auth + CSRF). Views parse input, check access, and call one action."""

import math
from typing import Any, cast

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import Count, Subquery
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.actions import shown_prediction
from inference.pipeline.seg import with_colors
from readerstudy.core.errors import ActionError, NotFound
from readerstudy.core.frozen import FrozenQuery
from readerstudy.reading import access, actions, case_series
from readerstudy.reading.models import Read, ReadingSession, SessionItem
from readerstudy.studies import covariates
from readerstudy.studies.models import Case, Membership, Study
from readerstudy.studies.storage import slice_name

# The lesion marker's ticks start this far outside the lesion's reference radius...
MARKER_CLEARANCE_MM = 3.0
# ...rounded up to this step, so that the payload does not disclose the exact reference diameter.
MARKER_GAP_STEP_MM = 5.0


def error_response(exc: ActionError) -> Response:
    return Response({"detail": exc.message, "errors": exc.details}, status=exc.status)


class ActionAPIView(APIView):
    """Maps the actions' errors to their HTTP status."""

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, ActionError):
            return error_response(exc)
        return super().handle_exception(exc)


# --- payloads ---------------------------------------------------------------------------------------------------


def session_payload(session: ReadingSession, now: Any) -> dict:
    n_items = session.items.count()
    n_read = Read.objects.filter(item__session=session).count()
    study = session.study
    if session.finished_at is not None:
        state = "finished"
    elif study.status == Study.Status.CLOSED:
        state = "closed"
    elif session.available_from is None or session.available_from > now:
        state = "locked"
    elif session.started_at is None:
        state = "open"
    else:
        state = "in_progress"
    following = (
        ReadingSession.objects.filter(study=study, reader=session.reader, index=session.index + 1, practice=False)
        .values("index", "available_from")
        .first()
    )
    acknowledged = (
        Membership.objects.filter(study=study, user=session.reader)
        .values_list("instructions_acknowledged_at", flat=True)
        .first()
    )
    return {
        "id": session.pk,
        "study": study.name,
        "study_id": study.pk,
        "index": session.index,  # 0: the practice session
        "practice": session.practice,  # the optional practice session: truth shown after each read, not analysed
        # The design's sessions (the practice session is not one of them).
        "n_sessions": ReadingSession.objects.filter(study=study, reader=session.reader, practice=False).count(),
        "state": state,
        "available_from": session.available_from,
        "washout_days": study.washout_days,
        "started_at": session.started_at,
        "finished_at": session.finished_at,
        "n_items": n_items,
        "n_read": n_read,
        "url": reverse("reading:session", args=[session.pk]),
        "instructions_url": reverse("reading:instructions", args=[study.pk]),
        "instructions_acknowledged": acknowledged is not None,
        "next_session": following,  # {"index", "available_from"}; None after the reader's last session
        "time_zone": settings.TIME_ZONE,  # the zone every date on the page is shown in
    }


def marker_gap_mm(case: Case) -> float:
    """Radius (mm) at which the lesion marker's ticks start, so they clear the lesion: the reference radius plus
    MARKER_CLEARANCE_MM, rounded UP to a multiple of MARKER_GAP_STEP_MM. Readers must not be told the reference
    diameter (it is part of what they judge, and the size stratum is derived from it); a 5 mm step leaves only a
    coarse bound a reader could anyway see on the image."""
    return math.ceil((case.diameter_mm / 2 + MARKER_CLEARANCE_MM) / MARKER_GAP_STEP_MM) * MARKER_GAP_STEP_MM


# What an item payload reads of the current item and the next one, loaded with them in one query (current_items),
# and nothing else: not the study's long texts and plan, nor the series' per-slice lists. A field read but not
# listed here costs one more query per request (tests/reading/test_query_counts.py pins the count).
ITEM_FIELDS = (
    *("id", "session", "position", "case", "modality", "first_served_at"),
    *("session__id", "session__study", "session__reader", "session__index", "session__practice"),
    *("session__available_from", "session__started_at", "session__finished_at"),
    *("session__study__id", "session__study__name", "session__study__status", "session__study__design"),
    *("session__study__washout_days", "session__study__window_presets", "session__study__default_preset"),
    *("session__study__hanging_layout", "session__study__question", "session__study__rating_min"),
    *("session__study__rating_max", "session__study__scale_low_label", "session__study__scale_high_label"),
    *("session__study__not_assessable_reasons", "session__study__overlay_mode"),
    *("session__study__overlay_hidden_labels", "session__study__label_legend", "session__study__show_clinical"),
    *("case__clinical", "case__case_text"),
    *("case__id", "case__series", "case__case_id", "case__slice_index", "case__diameter_mm", "case__practice"),
    *("case__lesion_x_mm", "case__lesion_y_mm", "case__lesion_z_mm", "case__series__id", "case__series__n_slices"),
    *("modality__id", "modality__key", "modality__label", "modality__shows_dl", "modality__order"),
)


def current_items(session_id: int, reader: Any) -> tuple[list[SessionItem], tuple[int, int]]:
    """The first two unread items of a session of ``reader`` (the current item, and the next one for preloading)
    with what their payloads read, and the session's progress (n_items, n_read): two queries. The joins run for
    those two items only (found by a subquery), not for every unread item of the session; the counts are a query
    of their own (as subqueries of the first they cost more to build and compile than they save)."""
    rows = cast(list[SessionItem], _CURRENT_ITEMS.objects(int(session_id), reader.pk))
    rows.sort(key=lambda item: item.position)
    if not rows:
        return rows, (0, 0)
    (progress,) = _PROGRESS.values(rows[0].session_id)  # one query for both counts: on every case a reader opens
    return rows, (int(progress[0]), int(progress[1]))


# current_items' two queries, compiled once (core/frozen.py: building and compiling them costs more CPU than
# PostgreSQL takes to run them). The first two unread items of a session, if the reader's, with what their payloads
# read (the joins run for those two only, found by a subquery; no ORDER BY: two rows are sorted in Python):
_CURRENT_ITEMS = FrozenQuery(
    lambda session_id, reader_id: (
        SessionItem.objects.filter(
            pk__in=Subquery(
                SessionItem.objects.filter(session_id=session_id, read__isnull=True)
                .order_by("position")
                .values("pk")[:2]
            ),
            session__reader_id=reader_id,
        )
        .select_related("session__study", "case__series", "modality")
        .only(*ITEM_FIELDS)
        .order_by()
    ),
    arity=2,
)
# The session's progress: (n_items, n_read).
_PROGRESS = FrozenQuery(
    lambda session_id: (
        SessionItem.objects.filter(session_id=session_id)
        .order_by()
        .values("session_id")
        .annotate(n_items=Count("id"), n_read=Count("read"))
        .values_list("n_items", "n_read")
    )
)
# The session of an item (the item view's first query).
_SESSION_OF_ITEM = FrozenQuery(
    lambda item_id: SessionItem.objects.filter(pk=item_id).order_by().values_list("session_id")
)


def item_payload(item: SessionItem, following: SessionItem | None, progress: tuple[int, int]) -> dict:
    """What the reading page needs for the current item (``following``: the item after it, whose images the page
    preloads; ``progress``: the session's n_items, n_read). DL fields exist only where the blinding rules allow
    them; no rating is ever part of it (only unread items are served). Loaded with the items (current_items):
    their session, study, case, series and modality."""
    session, case, study = item.session, item.case, item.session.study
    series = case.series
    # Both cases' series in one query.
    shown = case_series.of_cases([case] if following is None else [case, following.case])
    shown_series = shown[case.pk]
    payload = {
        "id": item.pk,
        "session": session.pk,
        "practice": session.practice,  # a practice item: its truth comes back with the submitted read
        "position": item.position,
        "n_items": progress[0],
        "n_read": progress[1],
        "modality": {"key": item.modality.key, "label": item.modality.label, "shows_dl": item.modality.shows_dl},
        "images": case_series.numbered_urls("reading-api:image", [item.pk], series.n_slices),
        # Every series of the case by position, the primary one (what "images" and "lesion" refer to) first.
        "series": case_series.payload(item, shown_series),
        "lesion": {
            "slice_index": case.slice_index,
            "x_mm": case.lesion_x_mm,
            "y_mm": case.lesion_y_mm,
            "z_mm": case.lesion_z_mm,
            "marker_gap_mm": marker_gap_mm(case),  # never diameter_mm itself
        },
        "window_presets": study.window_presets,
        "default_preset": study.default_preset,
        "layout": study.hanging_layout,
        "question": study.question,
        "rating_scale": {
            "min": study.rating_min,
            "max": study.rating_max,
            "low": study.scale_low_label,
            "high": study.scale_high_label,
        },
        "not_assessable_reasons": list(study.not_assessable_reasons),
        # Study set-up, the same in every modality: not DL output (the overlay itself is only in "dl").
        "overlay_defaults": {"mode": study.overlay_mode, "hidden_labels": list(study.overlay_hidden_labels)},
        "label_legend": dict(study.label_legend),
        "served_at": item.first_served_at,
    }
    if study.show_clinical:
        # Clinical information from the manifest, the same in every modality (no DL output, no truth): only where the
        # study shows it. Plain text; the page sets it as text, never as HTML.
        payload["clinical"] = {"covariates": covariates.display_rows(case.clinical), "text": case.case_text}
    if access.dl_allowed(item):
        prediction = shown_prediction(case)
        if prediction is not None:
            payload["dl"] = {
                "probability": prediction.probability,
                "series_role": shown_series[0].role,  # the overlay lies on the primary series, computed there
                "model": f"{prediction.model_name} {prediction.model_version}",
                "overlay_url": reverse("reading-api:overlay", args=[item.pk]) if prediction.overlay else None,
                "overlay_shape": prediction.overlay_shape,
                "labels": with_colors(prediction.overlay_labels),  # today's palette, whatever was stored
            }
    if following is not None:  # every series of the next case
        payload["next_images"] = case_series.all_image_urls(following, shown[following.case_id])
    return payload


# --- views --------------------------------------------------------------------------------------------------------

ItemSchema = inline_serializer(
    "Item",
    {
        "id": serializers.IntegerField(),
        "session": serializers.IntegerField(),
        "practice": serializers.BooleanField(help_text="A practice item: not analysed; the submit shows its truth."),
        "position": serializers.IntegerField(),
        "n_items": serializers.IntegerField(),
        "n_read": serializers.IntegerField(),
        "modality": serializers.DictField(),
        "images": serializers.ListField(child=serializers.CharField()),
        "series": serializers.ListField(child=serializers.DictField()),
        "lesion": serializers.DictField(),
        "window_presets": serializers.ListField(child=serializers.DictField()),
        "default_preset": serializers.CharField(),
        "layout": serializers.ChoiceField(["1x1", "1x2", "2x2"]),
        "question": serializers.CharField(),
        "rating_scale": serializers.DictField(help_text="{min, max, low, high}"),
        "not_assessable_reasons": serializers.ListField(child=serializers.CharField()),
        "overlay_defaults": serializers.DictField(
            help_text='{"mode": "fill_outline"|"outline"|"off", "hidden_labels"}'
        ),
        "label_legend": serializers.DictField(child=serializers.CharField()),
        "served_at": serializers.DateTimeField(help_text="When this item was first served (the server's clock)."),
        "clinical": serializers.DictField(
            required=False,
            help_text='Only where the study shows clinical information: {"covariates": [{name, label, value}], "text"}',
        ),
        "dl": serializers.DictField(required=False, help_text="Only where the blinding rules allow DL output."),
        "next_images": serializers.ListField(child=serializers.CharField(), required=False),
    },
)
SESSION_FIELDS = {
    "id": serializers.IntegerField(),
    "study": serializers.CharField(),
    "index": serializers.IntegerField(help_text="1, 2, ...; 0 for the practice session."),
    "practice": serializers.BooleanField(help_text="The optional practice session (before session 1)."),
    "n_sessions": serializers.IntegerField(help_text="The design's sessions, not counting the practice session."),
    "state": serializers.ChoiceField(["locked", "open", "in_progress", "finished", "closed"]),
    "available_from": serializers.DateTimeField(allow_null=True),
    "washout_days": serializers.IntegerField(),
    "started_at": serializers.DateTimeField(allow_null=True),
    "finished_at": serializers.DateTimeField(allow_null=True),
    "n_items": serializers.IntegerField(),
    "n_read": serializers.IntegerField(),
    "url": serializers.CharField(),
    "study_id": serializers.IntegerField(),
    "instructions_url": serializers.CharField(),
    "instructions_acknowledged": serializers.BooleanField(),
    "next_session": serializers.DictField(allow_null=True, help_text='{"index": n, "available_from": iso or null}'),
    "time_zone": serializers.CharField(),
}
SessionSchema = inline_serializer("Session", SESSION_FIELDS)
SessionListSchema = inline_serializer("SessionList", SESSION_FIELDS, many=True)
ErrorSchema = inline_serializer(
    "Error", {"detail": serializers.CharField(), "errors": serializers.ListField(child=serializers.CharField())}
)


class WorklistView(ActionAPIView):
    @extend_schema(responses={200: SessionListSchema}, summary="The reader's sessions")
    def get(self, request: Request) -> Response:
        now = timezone.now()
        sessions = access.own_sessions(request.user).select_related("study").order_by("study__name", "index")
        return Response([session_payload(s, now) for s in sessions])


class SessionView(ActionAPIView):
    @extend_schema(responses={200: SessionSchema, 404: ErrorSchema})
    def get(self, request: Request, session_id: int) -> Response:
        return Response(session_payload(access.own_session(request.user, session_id), timezone.now()))


class StartSessionView(ActionAPIView):
    @extend_schema(request=None, responses={200: SessionSchema, 404: ErrorSchema, 409: ErrorSchema})
    def post(self, request: Request, session_id: int) -> Response:
        session = actions.start_session(request.user, access.own_session(request.user, session_id))
        return Response(session_payload(session, timezone.now()))


class NextItemView(ActionAPIView):
    @extend_schema(
        responses={200: ItemSchema, 204: OpenApiResponse(description="session complete"), 409: ErrorSchema},
        summary="The current (next unread) item of a session",
    )
    def get(self, request: Request, session_id: int) -> Response:
        # The current item and the next one of the session, if it is the reader's: one query.
        items, progress = current_items(session_id, request.user)
        if items and items[0].session.study.status != Study.Status.DRAFT:  # access.own_sessions' rule
            session = items[0].session
        else:  # none unread: a session not the reader's (404), not open (409), or complete (204)
            session = access.own_session(request.user, session_id)
        if session.finished_at is not None:
            return Response(status=status.HTTP_204_NO_CONTENT)  # complete: nothing of it is served again
        access.check_session_readable(session, timezone.now())
        if not items:
            return Response(status=status.HTTP_204_NO_CONTENT)
        item = items[0]
        # Items are read in order: the second unread one is the next position (anything else: no preload).
        following = items[1] if len(items) > 1 and items[1].position == item.position + 1 else None
        actions.mark_served(item)
        return Response(item_payload(item, following, progress))


class ItemView(ActionAPIView):
    @extend_schema(responses={200: ItemSchema, 404: ErrorSchema, 409: ErrorSchema})
    def get(self, request: Request, item_id: int) -> Response:
        now = timezone.now()
        # The current item only, never a preloaded one: the first unread item of the reader's session that holds
        # it, read with the next one and the progress, as the next item view reads them. (The session's id by a
        # query of its own: as a subquery of current_items' it costs more to build and compile than it saves.)
        session_ids = _SESSION_OF_ITEM.values(item_id)
        items, progress = current_items(session_ids[0][0], request.user) if session_ids else ([], (0, 0))
        if items and items[0].pk == item_id and items[0].session.study.status != Study.Status.DRAFT:
            access.check_session_readable(items[0].session, now)
        else:  # not the current item (or not the reader's): access says why (not found, read, not open yet)
            access.check_item_visible(access.own_item(request.user, item_id), now)
            raise NotFound(f"item {item_id} is not the current item")  # not reached: it was read just now
        item = items[0]
        following = items[1] if len(items) > 1 and items[1].position == item.position + 1 else None
        actions.mark_served(item)
        return Response(item_payload(item, following, progress))


class SubmitReadSerializer(serializers.Serializer):
    # Types and bounds are checked by actions.submit_read (strictly: "true" is not a boolean, "50" not a rating).
    rating = serializers.JSONField(
        required=False, allow_null=True, help_text="Whole number on the study's scale (0-100); null iff not assessable."
    )
    idempotency_key = serializers.CharField(max_length=64)
    active_seconds = serializers.JSONField(help_text="Active reading time measured by the client.")
    viewer_state = serializers.JSONField(
        required=False, help_text="Window/level, zoom, overlay state and measurements (a list) at submit."
    )
    not_assessable = serializers.JSONField(required=False, help_text="true: no rating, give a reason instead.")
    not_assessable_reason = serializers.JSONField(
        required=False, allow_null=True, help_text="One of the item's not_assessable_reasons, iff not assessable."
    )
    comment = serializers.JSONField(required=False, allow_null=True, help_text="Free text, at most 2000 characters.")


SUBMIT_REQUIRED = tuple(name for name, field in SubmitReadSerializer().fields.items() if field.required)

ReadSchema = inline_serializer(
    "Read",
    {
        "id": serializers.IntegerField(),
        "item": serializers.IntegerField(),
        "rating": serializers.IntegerField(allow_null=True),
        "not_assessable": serializers.BooleanField(),
        "not_assessable_reason": serializers.CharField(),
        "comment": serializers.CharField(),
        "submitted_at": serializers.DateTimeField(),
        "active_seconds": serializers.FloatField(),
        "created": serializers.BooleanField(),
        "practice_feedback": serializers.DictField(
            required=False,
            help_text='Practice items only: {"truth": "crlm"|"hemangioma", "truth_label", "truth_source"}.',
        ),
    },
)


class SubmitReadView(ActionAPIView):
    @extend_schema(
        request=SubmitReadSerializer,
        responses={201: ReadSchema, 200: ReadSchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema},
        summary="Submit a read (idempotent on idempotency_key; 409 on a different rating)",
    )
    def post(self, request: Request, item_id: int) -> Response:
        # SubmitReadSerializer documents the body; the action checks every field's type and bounds (strictly), so
        # the view only needs an object with the required keys (an instance of the serializer cost more CPU per
        # submit than the rest of the view: its fields are deep-copied for each request).
        data = request.data
        if not isinstance(data, dict):
            return Response({"detail": "invalid read", "errors": ["body: expected a JSON object"]}, status=400)
        errors = [f"{key}: this field is required" for key in SUBMIT_REQUIRED if key not in data]
        if not isinstance(data.get("idempotency_key", ""), str):
            errors.append("idempotency_key: expected a string")
        if errors:
            return Response({"detail": "invalid read", "errors": errors}, status=400)
        # The action checks that the item is the reader's (under its lock, in the query that locks it).
        result = actions.submit_read(
            request.user,
            item_id,
            rating=data.get("rating"),
            idempotency_key=data["idempotency_key"],
            active_seconds=data["active_seconds"],
            viewer_state=data.get("viewer_state"),
            not_assessable=data.get("not_assessable", False),
            not_assessable_reason=data.get("not_assessable_reason", ""),
            comment=data.get("comment", ""),
        )
        read, item = result.read, result.item
        body_out: dict[str, Any] = {
            "id": read.pk,
            "item": item.pk,
            "rating": read.rating,
            "not_assessable": read.not_assessable,
            "not_assessable_reason": read.not_assessable_reason,
            "comment": read.comment,
            "submitted_at": read.submitted_at,
            "active_seconds": read.active_seconds,
            "created": result.created,
        }
        # The truth of a practice item, and only of one (access.practice_feedback checks case and session).
        feedback = access.practice_feedback(item)
        if feedback is not None:
            body_out["practice_feedback"] = feedback
        return Response(body_out, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class ImageView(ActionAPIView):
    @extend_schema(responses={(200, "application/dicom"): OpenApiResponse(description="one DICOM slice")})
    def get(self, request: Request, item_id: int, index: int) -> HttpResponse:
        item = access.own_item(request.user, item_id)
        access.check_item_visible(item, timezone.now(), ahead=access.PRELOAD_AHEAD)
        series = item.case.series
        if not 0 <= index < series.n_slices:
            raise Http404("no such slice")
        # Through the storage API: the slice may live on a file system or in an object store.
        response = FileResponse(default_storage.open(slice_name(series, index), "rb"), content_type="application/dicom")
        # Private: only this reader may see it; immutable for the session, so scrolling back costs nothing.
        response["Cache-Control"] = "private, max-age=3600"
        return response


class SeriesImageView(ActionAPIView):
    """A slice of any series of the item's case (position 0 is the primary series), under ImageView's rules."""

    @extend_schema(responses={(200, "application/dicom"): OpenApiResponse(description="one DICOM slice")})
    def get(self, request: Request, item_id: int, position: int, index: int) -> HttpResponse:
        item = access.own_item(request.user, item_id)
        access.check_item_visible(item, timezone.now(), ahead=access.PRELOAD_AHEAD)
        shown = case_series.shown_series(item, position)
        if shown is None or not 0 <= index < shown.series.n_slices:
            raise Http404("no such series or slice")
        response = FileResponse(
            default_storage.open(slice_name(shown.series, index), "rb"), content_type="application/dicom"
        )
        response["Cache-Control"] = "private, max-age=3600"
        return response


class OverlayView(ActionAPIView):
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(description="gzip'd uint8 labelmap")})
    def get(self, request: Request, item_id: int) -> HttpResponse:
        item = access.own_item(request.user, item_id)
        access.check_item_visible(item, timezone.now())
        prediction = shown_prediction(item.case) if access.dl_allowed(item) else None
        if prediction is None or not prediction.overlay:
            raise Http404("no overlay for this item")
        with prediction.overlay.open("rb") as f:
            body = f.read()
        response = HttpResponse(body, content_type="application/octet-stream")
        response["Content-Encoding"] = "gzip"  # the browser inflates it; the page gets raw uint8 voxels
        response["X-Overlay-Shape"] = ",".join(str(n) for n in prediction.overlay_shape)
        response["Cache-Control"] = "private, max-age=3600"
        return response


def not_found(request: Any, *args: Any, **kwargs: Any) -> JsonResponse:
    return JsonResponse({"detail": "no such API endpoint or object", "errors": []}, status=404)
