"""Precompute as a background task: started from the admin, its PrecomputeRun row shows the progress.

The task computes and calls actions only (``inference.actions``: progress, predictions, the outcome); it never
saves a row itself. nnU-Net (TotalSegmentator) starts worker processes, so the segmentation itself always runs in
a subprocess (see inference.pipeline.segment): a daemonic task worker is fine.
"""

from django.conf import settings
from django_tasks import task

from inference import actions
from inference.models import PrecomputeRun
from inference.precompute import load_models, precompute
from readerstudy.core.workers import on_lost
from readerstudy.studies.models import Case


# Its own queue: GPU machines run only ``task_worker --queue-name inference --device cuda``. Run again after a
# lost worker, it resumes: cases whose prediction is stored are skipped (precompute is idempotent).
@task(queue_name="inference")
def precompute_task(*, run_id: int) -> None:
    run = PrecomputeRun.objects.select_related("study", "created_by").get(pk=run_id)
    cases = list(Case.objects.filter(study=run.study).select_related("series", "study"))
    device = settings.INFERENCE_DEVICE or run.device  # the worker's --device wins: it knows its machine
    actions.precompute_progress(run, n_cases=len(cases), device=device)
    try:
        actions.check_predictions_open(run.study)  # launched after the run was queued: frozen, say so
        segmenter, classifier = load_models(run.backend, device, classifier=run.classifier)
        summary = precompute(
            cases,
            backend=segmenter,
            classifier=classifier,
            actor=run.created_by,
            on_case=lambda case, outcome: actions.precompute_progress(run, outcome=outcome),
        )
    except Exception as exc:
        actions.finish_precompute(run, errors=[*run.errors, f"{type(exc).__name__}: {exc}"], failed=True)
        raise
    actions.finish_precompute(run, errors=summary.errors, failed=bool(summary.failed))


@on_lost(precompute_task.module_path)
def precompute_lost(kwargs: dict, reason: str) -> None:
    run = PrecomputeRun.objects.select_related("study", "created_by").get(pk=kwargs["run_id"])
    if not run.finished:
        actions.finish_precompute(run, errors=[*run.errors, f"worker lost: {reason}"], failed=True)
