"""The one convention for background work.

- An app's action queues the job: writes its row and its start event in one transaction, and enqueues the task
  on commit (a rolled-back start runs nothing).
- The task takes keyword-only ids (``*, run_id``), computes, and only calls its app's actions: progress goes
  through ``Job.set_progress`` (a status line, not audited), the outcome through an action that calls
  ``finish_job`` here.
- Every job's outcome is one ``Verb.FINISH_JOB`` event, done or failed, in the transaction that stores it.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import transaction

from readerstudy.core import audit
from readerstudy.core.models import Job, Verb
from readerstudy.core.types import Actor

J = TypeVar("J", bound=Job)


def finish_job(
    job: J,
    outcome: Job.Status,
    *,
    actor: Actor | None,
    study: Any,
    message: str | None = None,
    errors: list[str] | None = None,
    also: tuple[str, ...] = (),
    after: dict | None = None,
) -> J:
    """Store the outcome (and the fields named in ``also``) and append its event, in one transaction.

    ``actor`` is who started the job: the task ran on their behalf. ``after`` adds what the job produced.
    """
    with transaction.atomic():
        job.finish(outcome, message=message, errors=errors, also=also)
        audit.record(
            actor,
            Verb.FINISH_JOB,
            job,
            study=study,
            after={"status": job.status, "message": job.message, "errors": len(job.errors), **(after or {})},
        )
    return job
