"""Starting statisticians' jobs: queue the row through ``results.actions``, enqueue its task on commit.

Kept apart from actions.py because the tasks call actions.py: the starters are the one module that knows both.
"""

from django.db import transaction

from readerstudy.core.types import Actor
from readerstudy.results import actions
from readerstudy.results.models import AnalysisRun, Export
from readerstudy.results.tasks import run_analysis_task, run_export
from readerstudy.studies.models import Study


def request_export(actor: Actor, study: Study, kind: str) -> Export:
    """Queue an export; the task writes the file (in the demo it runs at once)."""
    with transaction.atomic():
        export = actions.queue_export(actor, study, kind)
        # On commit: the worker must find the row, and a rolled-back request must run nothing.
        transaction.on_commit(lambda: run_export.enqueue(export_id=export.pk))
    return export


def start_analysis(actor: Actor, study: Study, parameters: dict) -> AnalysisRun:
    """Queue an analysis run with checked parameters; the task stores its result and figures."""
    with transaction.atomic():
        run = actions.queue_analysis(actor, study, parameters)
        transaction.on_commit(lambda: run_analysis_task.enqueue(run_id=run.pk))
    return run
