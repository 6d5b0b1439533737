"""The study overview: status, design, counts, the readiness checklist (each unmet check links to its fix),
launch (with the explicit acceptance of missing DL predictions), precompute runs, and the interim-look switch."""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from inference.actions import push_segmentations
from inference.jobs import start_precompute
from inference.models import PrecomputeRun, Prediction
from readerstudy.core import workers
from readerstudy.core.errors import ActionError
from readerstudy.operations.access import actor, admin_study
from readerstudy.operations.links import fix_link
from readerstudy.reading.actions import launch_study
from readerstudy.reading.models import Read, SessionItem
from readerstudy.studies import actions
from readerstudy.studies.models import Membership, Study

PRECOMPUTE_RUNS_SHOWN = 10
RUN_ERRORS_SHOWN = 20


def precompute_runs(study: Study) -> list[dict]:
    """The study's latest precompute runs, with per-case progress and their errors (the pages and the JSON)."""
    return [
        {
            "id": run.pk,
            "status": run.status,
            "backend": run.backend,
            "device": run.device,
            "started_by": run.created_by.get_username() if run.created_by else "command line",
            "cases": run.n_cases,
            "handled": run.n_handled,
            "done": run.n_done,
            "skipped": run.n_skipped,
            "failed": run.n_failed,
            "message": run.message,
            "errors": list(run.errors or [])[:RUN_ERRORS_SHOWN],
            "n_errors": len(run.errors or []),
            "created_at": run.created_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        }
        for run in PrecomputeRun.objects.filter(study=study).select_related("created_by")[:PRECOMPUTE_RUNS_SHOWN]
    ]


def _counts(study: Study) -> dict[str, int]:
    roles = dict(
        Membership.objects.filter(study=study).values_list("role").annotate(n=Count("pk")).values_list("role", "n")
    )
    return {
        "patients": study.patients.count(),
        "cases": study.cases.count(),
        "practice_cases": study.cases.filter(practice=True).count(),
        "cases_with_prediction": Prediction.objects.filter(case__study=study).values("case").distinct().count(),
        "readers": roles.get(Membership.Role.READER, 0),
        "statisticians": roles.get(Membership.Role.STATISTICIAN, 0),
        # The design's items and reads: practice ones count for nothing, here as in progress and results.
        "items": SessionItem.objects.filter(study=study, session__practice=False).count(),
        "reads": Read.objects.analysed().filter(study=study).count(),
    }


@login_required
def overview(request: HttpRequest, study_id: int) -> HttpResponse:
    study = admin_study(request.user, study_id)
    checks = []
    launchable = False
    if study.status == Study.Status.DRAFT:
        check = actions.readiness(study)
        for c in check.checks:
            url, text = fix_link(study, c.key)
            checks.append({"check": c, "fix_url": url, "fix_text": text})
        # Launch is offered when nothing but missing predictions (which the admin may accept) blocks it.
        launchable = all(c.ok or c.key == "predictions" for c in check.checks)
        missing_predictions = check.missing_predictions
    else:
        missing_predictions = 0
    context = {
        "study": study,
        "modalities": list(study.modalities.order_by("order")),
        "counts": _counts(study),
        "checks": checks,
        "launchable": launchable,
        "missing_predictions": missing_predictions,
        "runs": precompute_runs(study),
        "inference_workers": None if workers.runs_in_process() else workers.alive_workers(queue="inference"),
        "pacs_configured": bool(settings.DICOMWEB_URL),
        "pacs_url": settings.DICOMWEB_URL,
    }
    return render(request, "operations/overview.html", context)


def _act(
    request: HttpRequest, study: Study, call: Callable[[], Any], done: Callable[[Any], str], anchor: str = ""
) -> HttpResponse:
    """Run one action for the overview's buttons: its refusal or its outcome as a message, back to the overview."""
    try:
        result = call()
    except ActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done(result))
    return redirect(reverse("operations:overview", args=[study.pk]) + anchor)


@login_required
@require_POST
def push_seg(request: HttpRequest, study_id: int) -> HttpResponse:
    study = admin_study(request.user, study_id)
    return _act(
        request, study, lambda: push_segmentations(actor(request), study),
        lambda n: f"{n} DL segmentation(s) stored on the PACS.",
    )  # fmt: skip


@login_required
@require_POST
def launch(request: HttpRequest, study_id: int) -> HttpResponse:
    study = admin_study(request.user, study_id)
    accept = request.POST.get("accept_missing_predictions") == "on"
    return _act(
        request, study, lambda: launch_study(actor(request), study, accept_missing_predictions=accept),
        lambda n_items: f"Launched: {n_items} items stored; readers can start their first session.",
    )  # fmt: skip


@login_required
@require_POST
def interim(request: HttpRequest, study_id: int) -> HttpResponse:
    study = admin_study(request.user, study_id)
    allowed = request.POST.get("interim_analysis_allowed") == "on"
    return _act(
        request, study, lambda: actions.set_interim_analysis(actor(request), study, allowed),
        lambda _: f"Interim looks {'allowed' if allowed else 'not allowed'} for statisticians.",
    )  # fmt: skip


@login_required
@require_POST
def precompute(request: HttpRequest, study_id: int) -> HttpResponse:
    study = admin_study(request.user, study_id)
    return _act(
        request, study, lambda: start_precompute(actor(request), study),
        lambda run: f"Precompute run {run.pk} started.", "#precompute",
    )  # fmt: skip
