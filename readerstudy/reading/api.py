"""Reading API (DRF, session auth + CSRF). Views parse input, check access, and call one action."""

from typing import Any

from django.core.files.storage import default_storage
from django.db.models import Count
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.actions import shown_prediction
from readerstudy.core.errors import ActionError
from readerstudy.reading import access, actions
from readerstudy.reading.models import Read, ReadingSession, SessionItem
from readerstudy.studies.models import Study
from readerstudy.studies.storage import slice_name

RATING_LEGEND = {"low": "certainly hemangioma", "high": "certainly metastasis"}


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
    return {
        "id": session.pk,
        "study": study.name,
        "index": session.index,
        "n_sessions": ReadingSession.objects.filter(study=study, reader=session.reader).count(),
        "state": state,
        "available_from": session.available_from,
        "washout_days": study.washout_days,
        "started_at": session.started_at,
        "finished_at": session.finished_at,
        "n_items": n_items,
        "n_read": n_read,
        "url": reverse("reading:session", args=[session.pk]),
    }


def item_payload(item: SessionItem) -> dict:
    """What the reading page needs for the current item. DL fields exist only where the blinding rules allow
    them; no rating is ever part of it (only unread items are served)."""
    session, case, study = item.session, item.case, item.session.study
    series = case.series
    # One query for both counts: this runs on every case a reader opens.
    progress = SessionItem.objects.filter(session=session).aggregate(n_items=Count("id"), n_read=Count("read"))
    payload = {
        "id": item.pk,
        "session": session.pk,
        "position": item.position,
        "n_items": progress["n_items"],
        "n_read": progress["n_read"],
        "modality": {"key": item.modality.key, "label": item.modality.label, "shows_dl": item.modality.shows_dl},
        "images": [reverse("reading-api:image", args=[item.pk, i]) for i in range(series.n_slices)],
        "lesion": {
            "slice_index": case.slice_index,
            "x_mm": case.lesion_x_mm,
            "y_mm": case.lesion_y_mm,
            "z_mm": case.lesion_z_mm,
        },
        "window_presets": study.window_presets,
        "rating_scale": {"min": study.rating_min, "max": study.rating_max, **RATING_LEGEND},
    }
    if access.dl_allowed(item):
        prediction = shown_prediction(case)
        if prediction is not None:
            payload["dl"] = {
                "probability": prediction.probability,
                "model": f"{prediction.model_name} {prediction.model_version}",
                "overlay_url": reverse("reading-api:overlay", args=[item.pk]) if prediction.overlay else None,
                "overlay_shape": prediction.overlay_shape,
                "labels": prediction.overlay_labels,
            }
    following = (
        SessionItem.objects.filter(session=session, position=item.position + 1).select_related("case__series").first()
    )
    if following is not None:
        payload["next_images"] = [
            reverse("reading-api:image", args=[following.pk, i]) for i in range(following.case.series.n_slices)
        ]
    return payload


# --- views --------------------------------------------------------------------------------------------------------

ItemSchema = inline_serializer(
    "Item",
    {
        "id": serializers.IntegerField(),
        "session": serializers.IntegerField(),
        "position": serializers.IntegerField(),
        "n_items": serializers.IntegerField(),
        "n_read": serializers.IntegerField(),
        "modality": serializers.DictField(),
        "images": serializers.ListField(child=serializers.CharField()),
        "lesion": serializers.DictField(),
        "window_presets": serializers.ListField(child=serializers.DictField()),
        "rating_scale": serializers.DictField(),
        "dl": serializers.DictField(required=False),
        "next_images": serializers.ListField(child=serializers.CharField(), required=False),
    },
)
SESSION_FIELDS = {
    "id": serializers.IntegerField(),
    "study": serializers.CharField(),
    "index": serializers.IntegerField(),
    "n_sessions": serializers.IntegerField(),
    "state": serializers.ChoiceField(["locked", "open", "in_progress", "finished", "closed"]),
    "available_from": serializers.DateTimeField(allow_null=True),
    "washout_days": serializers.IntegerField(),
    "started_at": serializers.DateTimeField(allow_null=True),
    "finished_at": serializers.DateTimeField(allow_null=True),
    "n_items": serializers.IntegerField(),
    "n_read": serializers.IntegerField(),
    "url": serializers.CharField(),
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
        session = access.own_session(request.user, session_id)
        if session.finished_at is not None:
            return Response(status=status.HTTP_204_NO_CONTENT)  # complete: nothing of it is served again
        access.check_session_readable(session, timezone.now())
        # The first unread item, with everything its payload needs, in one query.
        item = (
            SessionItem.objects.filter(session=session, read__isnull=True)
            .select_related("session__study", "case__series", "modality")
            .order_by("position")
            .first()
        )
        if item is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(item_payload(item))


class ItemView(ActionAPIView):
    @extend_schema(responses={200: ItemSchema, 404: ErrorSchema, 409: ErrorSchema})
    def get(self, request: Request, item_id: int) -> Response:
        item = access.own_item(request.user, item_id)
        access.check_item_visible(item, timezone.now())
        return Response(item_payload(item))


class SubmitReadSerializer(serializers.Serializer):
    rating = serializers.JSONField(help_text="Whole number on the study's scale (0-100).")
    idempotency_key = serializers.CharField(max_length=64)
    active_seconds = serializers.JSONField(help_text="Active reading time measured by the client.")
    viewer_state = serializers.JSONField(required=False, help_text="Window/level, zoom, overlay state at submit.")


ReadSchema = inline_serializer(
    "Read",
    {
        "id": serializers.IntegerField(),
        "item": serializers.IntegerField(),
        "rating": serializers.IntegerField(),
        "submitted_at": serializers.DateTimeField(),
        "active_seconds": serializers.FloatField(),
        "created": serializers.BooleanField(),
    },
)


class SubmitReadView(ActionAPIView):
    @extend_schema(
        request=SubmitReadSerializer,
        responses={201: ReadSchema, 200: ReadSchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema},
        summary="Submit a read (idempotent on idempotency_key; 409 on a different rating)",
    )
    def post(self, request: Request, item_id: int) -> Response:
        body = SubmitReadSerializer(data=request.data)
        if not body.is_valid():
            return Response({"detail": "invalid read", "errors": _flatten(body.errors)}, status=400)
        item = access.own_item(request.user, item_id)
        result = actions.submit_read(
            request.user,
            item,
            rating=body.validated_data["rating"],
            idempotency_key=body.validated_data["idempotency_key"],
            active_seconds=body.validated_data["active_seconds"],
            viewer_state=body.validated_data.get("viewer_state"),
        )
        read = result.read
        return Response(
            {
                "id": read.pk,
                "item": item.pk,
                "rating": read.rating,
                "submitted_at": read.submitted_at,
                "active_seconds": read.active_seconds,
                "created": result.created,
            },
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


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


def _flatten(errors: dict) -> list[str]:
    return [f"{field}: {message}" for field, messages in errors.items() for message in messages]
