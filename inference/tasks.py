"""Precompute as a background task: started from the admin, its PrecomputeRun row shows the progress.

nnU-Net (TotalSegmentator) starts worker processes, so the segmentation itself always runs in a subprocess
(see inference.pipeline.segment): a daemonic task worker is fine.
"""

from django.utils import timezone
from django_tasks import task

from inference.models import PrecomputeRun
from inference.precompute import load_models, precompute
from readerstudy.studies.models import Case


@task()
def precompute_task(run_id: int) -> None:
    run = PrecomputeRun.objects.select_related("study", "created_by").get(pk=run_id)
    cases = list(Case.objects.filter(study=run.study).select_related("series", "study"))
    run.status, run.n_cases = PrecomputeRun.Status.RUNNING, len(cases)
    run.save(update_fields=["status", "n_cases"])

    def on_case(case: Case, outcome: str) -> None:
        field = {"done": "n_done", "skipped": "n_skipped", "failed": "n_failed"}[outcome]
        setattr(run, field, getattr(run, field) + 1)
        run.save(update_fields=[field])

    try:
        segmenter, classifier = load_models(run.backend, run.device)
        summary = precompute(cases, backend=segmenter, classifier=classifier, actor=run.created_by, on_case=on_case)
        run.errors = summary.errors
        run.status = PrecomputeRun.Status.DONE if not summary.failed else PrecomputeRun.Status.FAILED
    except Exception as exc:
        run.errors = [*run.errors, f"{type(exc).__name__}: {exc}"]
        run.status = PrecomputeRun.Status.FAILED
        raise
    finally:
        run.finished_at = timezone.now()
        run.save(update_fields=["errors", "status", "finished_at"])
