"""Starting precompute runs: queue the run through ``inference.actions``, enqueue its task on commit.

Kept apart from actions.py because the task calls actions.py: the starter is the one module that knows both.
"""

from typing import Any

from django.db import transaction

from inference import actions
from inference.models import PrecomputeRun
from inference.tasks import precompute_task
from readerstudy.core.types import Actor


def start_precompute(
    actor: Actor, study: Any, *, backend: str = "phantom-unet", device: str = "cpu", classifier: str = "densenet-crops"
) -> PrecomputeRun:
    """Queue a precompute batch for a study (admins only); the task records its progress on the run."""
    with transaction.atomic():
        run = actions.queue_precompute(actor, study, backend=backend, device=device, classifier=classifier)
        # On commit: the worker must find the run, and a rolled-back start must run nothing.
        transaction.on_commit(lambda: precompute_task.enqueue(run_id=run.pk))
    return run
