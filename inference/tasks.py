"""Precompute as a background task: started from the admin, its PrecomputeRun row shows the progress.

The task computes and calls actions only (``inference.actions``: progress, predictions, the outcome); it never
saves a row itself. nnU-Net (TotalSegmentator) starts worker processes, so the segmentation itself always runs in
a subprocess (see inference.pipeline.segment): a daemonic task worker is fine.
"""

from django_tasks import task

from inference import actions
from inference.models import PrecomputeRun
from inference.precompute import load_models, precompute
from readerstudy.studies.models import Case


@task()
def precompute_task(*, run_id: int) -> None:
    run = PrecomputeRun.objects.select_related("study", "created_by").get(pk=run_id)
    cases = list(Case.objects.filter(study=run.study).select_related("series", "study"))
    actions.precompute_progress(run, n_cases=len(cases))
    try:
        actions.check_predictions_open(run.study)  # launched after the run was queued: frozen, say so
        segmenter, classifier = load_models(run.backend, run.device)
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
