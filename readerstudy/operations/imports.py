"""Importing cases from the browser: the upload page, a run's status page and its JSON for the progress bar.

The request body is streamed to temporary files on disk (:class:`ImportUploadHandler`, a
``TemporaryFileUploadHandler`` that refuses unknown fields and each file past its limit); the page then calls one
starter (``studies.jobs``), and the import runs in a django-tasks task (immediate in the demo, a worker in
production). Every page answers 404 to anyone who does not administer the study (``access.admin_study``), before a
byte of an upload is read.
"""

from typing import Any, cast

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.files.uploadhandler import SkipFile, TemporaryFileUploadHandler
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods

from readerstudy.core.errors import ActionError
from readerstudy.core.types import Actor
from readerstudy.operations.access import admin_study
from readerstudy.studies import jobs
from readerstudy.studies.importing import import_folders
from readerstudy.studies.models import ImportRun, Study

MANIFEST_FIELD = "manifest"
ZIP_FIELD = "zip"
FOLDER_FIELD = "folder"
FORM_SLACK_BYTES = 1024 * 1024  # the multipart framing and the small fields around the two files
RECENT_RUNS = 20
STATUS_NAMES = {
    ImportRun.Status.QUEUED: "queued",
    ImportRun.Status.RUNNING: "running",
    ImportRun.Status.DONE: "succeeded",
    ImportRun.Status.FAILED: "failed",
}


def _size(n: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{n} bytes"


def _limits() -> dict[str, int]:
    return {MANIFEST_FIELD: settings.IMPORT_MAX_MANIFEST_BYTES, ZIP_FIELD: settings.IMPORT_MAX_ZIP_BYTES}


class ImportUploadHandler(TemporaryFileUploadHandler):
    """Streams the manifest and the zip into temporary files on disk; anything else, a second file for a field, or
    a file past its limit is dropped (and recorded in ``refused``, which the page reports)."""

    def __init__(self, request: HttpRequest, limits: dict[str, int]) -> None:
        super().__init__(request)
        self.limits = limits
        self.refused: dict[str, str] = {}
        self.seen: set[str] = set()
        self.received = 0

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        # A new temporary file first, so that SkipFile closes (deletes) this one and never a finished one.
        super().new_file(field_name, *args, **kwargs)
        self.received = 0
        if field_name not in self.limits:
            raise SkipFile
        if field_name in self.seen:
            self.refused[field_name] = "one file only"
            raise SkipFile
        self.seen.add(field_name)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        limit = self.limits[self.field_name]
        if self.received > limit:
            self.refused[self.field_name] = f"larger than the limit of {_size(limit)}; nothing was imported"
            raise SkipFile
        return super().receive_data_chunk(raw_data, start)


def _page(request: HttpRequest, study: Study, *, errors: list[str] | None = None, status: int = 200) -> HttpResponse:
    context = {
        "study": study,
        "draft": study.status == Study.Status.DRAFT,
        "folders": import_folders() if settings.IMPORT_ROOT else None,
        "form_errors": errors or [],
        "max_zip": _size(settings.IMPORT_MAX_ZIP_BYTES),
        "max_manifest": _size(settings.IMPORT_MAX_MANIFEST_BYTES),
        "runs": ImportRun.objects.filter(study=study).select_related("created_by")[:RECENT_RUNS],
        "status_names": STATUS_NAMES,
    }
    return render(request, "operations/import.html", context, status=status)


@csrf_exempt  # checked by _import_form, after the upload handlers are in place (they must come first)
@login_required
@require_http_methods(["GET", "POST"])
def import_page(request: HttpRequest, study_id: int) -> HttpResponse:
    study = admin_study(request.user, study_id)  # 404 before a byte of the body is read
    if request.method == "POST":
        if study.status != Study.Status.DRAFT:
            return _page(request, study, errors=[_not_draft(study)], status=409)
        limits = _limits()
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > sum(limits.values()) + FORM_SLACK_BYTES:
            message = (
                f"The upload is {_size(length)}, more than this server accepts (a zip of at most "
                f"{_size(limits[ZIP_FIELD])} and a manifest of at most {_size(limits[MANIFEST_FIELD])}); "
                "nothing was imported."
            )
            return _page(request, study, errors=[message], status=413)
        request.upload_handlers = [ImportUploadHandler(request, limits)]
    return _import_form(request, study)


def _user(request: HttpRequest) -> Actor:
    return cast(Actor, request.user)  # login_required: a signed-in user


def _not_draft(study: Study) -> str:
    return f"Study {study.name!r} is {study.get_status_display().lower()}: cases can only be imported into a draft."


@csrf_protect
def _import_form(request: HttpRequest, study: Study) -> HttpResponse:
    if request.method != "POST":
        return _page(request, study)
    folder = request.POST.get(FOLDER_FIELD, "")  # parses the body (through the handler): refusals are known after
    manifest, archive = request.FILES.get(MANIFEST_FIELD), request.FILES.get(ZIP_FIELD)
    handler = next((h for h in request.upload_handlers if isinstance(h, ImportUploadHandler)), None)
    errors = [f"The {field} file is {reason}." for field, reason in (handler.refused if handler else {}).items()]
    if errors:
        return _page(request, study, errors=errors, status=413)
    try:
        if folder and settings.IMPORT_ROOT:
            if manifest is not None or archive is not None:
                return _page(request, study, errors=["Upload files or pick a server folder, not both."], status=400)
            run = jobs.start_folder_import(_user(request), study, folder=folder)
        elif manifest is not None and archive is not None:
            run = jobs.start_upload_import(_user(request), study, manifest=manifest, archive=archive)
        else:
            return _page(
                request,
                study,
                errors=[
                    "Choose a manifest CSV and a zip of its series"
                    + (", or pick a server folder." if settings.IMPORT_ROOT else ".")
                ],
                status=400,
            )
    except ActionError as exc:
        return _page(request, study, errors=[exc.message, *exc.details], status=exc.status)
    return redirect("operations:import_run", study_id=study.pk, run_id=run.pk)


def _run(request: HttpRequest, study_id: int, run_id: int) -> ImportRun:
    study = admin_study(request.user, study_id)
    run = ImportRun.objects.filter(study=study, pk=run_id).select_related("study", "created_by").first()
    if run is None:
        raise Http404("no such import run")
    return run


def run_state(run: ImportRun) -> dict[str, Any]:
    """What the status page shows and polls: status, progress, counts, every problem (file, row, column, reason)."""
    done = run.status == ImportRun.Status.DONE
    return {
        "id": run.pk,
        "status": STATUS_NAMES[ImportRun.Status(run.status)],
        "finished": run.finished,
        "progress": run.progress,
        "message": run.message,
        "source": run.source,
        "manifest": run.manifest_name,
        "rows": run.n_rows,
        "series_done": run.n_series_done,
        "series_total": run.n_series_total,
        "summary": {"cases": run.n_cases, "patients": run.n_patients, "series": run.n_series} if done else None,
        "errors": [
            {k: p.get(k) for k in ("file", "row", "column", "reason")} for p in run.problems if isinstance(p, dict)
        ],
    }


@login_required
@require_GET
def import_run(request: HttpRequest, study_id: int, run_id: int) -> HttpResponse:
    run = _run(request, study_id, run_id)
    return render(request, "operations/import_run.html", {"study": run.study, "run": run, "state": run_state(run)})


@login_required
@require_GET
def import_run_json(request: HttpRequest, study_id: int, run_id: int) -> JsonResponse:
    run = _run(request, study_id, run_id)
    response = JsonResponse(run_state(run))
    response["Cache-Control"] = "no-store"
    return response
