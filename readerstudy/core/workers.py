"""Task workers that may die: heartbeats, and the requeueing of the tasks a dead worker held.

django-tasks-db's ``db_worker`` claims a task by setting it RUNNING with its worker id; a worker killed mid-task
(SIGKILL, out of memory, a GPU machine lost) leaves it RUNNING for ever. ``manage.py task_worker`` wraps that worker
with a heartbeat thread: every ``WORKER_HEARTBEAT_SECONDS`` it stamps its ``TaskWorker`` row and sweeps the queue
for RUNNING tasks whose worker has been silent for ``WORKER_STALE_SECONDS``; those go back to READY and run again.
Every task here is safe to run again: precompute skips the cases whose predictions are stored (it resumes where
they end), and the other jobs start over on their own row.

A task that has lost ``WORKER_MAX_ATTEMPTS`` workers is not requeued again (a case that kills every worker, e.g.
out of memory, must not loop for ever): it is marked failed, and its job's ``lost`` handler, where the task
registered one, marks the job failed with the reason.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from readerstudy.core.models import TaskWorker

logger = logging.getLogger("readerstudy.workers")
WORKER_MAX_ATTEMPTS = 3

# task path -> handler(kwargs, reason) called when the task is given up (see ``on_lost``).
_LOST_HANDLERS: dict[str, Callable[[dict, str], None]] = {}


def on_lost(task_path: str) -> Callable[[Callable[[dict, str], None]], Callable[[dict, str], None]]:
    """Register what to do with a task's job when the task is given up after losing its workers."""

    def register(handler: Callable[[dict, str], None]) -> Callable[[dict, str], None]:
        _LOST_HANDLERS[task_path] = handler
        return handler

    return register


def register_worker(worker_id: str, queues: list[str], device: str = "") -> TaskWorker:
    """The worker's row, written before it claims anything (so its first task is never taken for an orphan)."""
    now = timezone.now()
    worker, _ = TaskWorker.objects.update_or_create(
        worker_id=worker_id,
        defaults={
            "hostname": socket.gethostname()[:255],
            "pid": os.getpid(),
            "queues": queues,
            "device": device,
            "started_at": now,
            "last_seen": now,
            "stopped_at": None,
        },
    )
    return worker


def beat(worker_id: str, *, now: datetime | None = None) -> None:
    TaskWorker.objects.filter(worker_id=worker_id).update(last_seen=now or timezone.now())


def stop_worker(worker_id: str) -> None:
    TaskWorker.objects.filter(worker_id=worker_id).update(stopped_at=timezone.now())


def alive_workers(*, now: datetime | None = None, queue: str | None = None) -> list[TaskWorker]:
    """Workers that beat within ``WORKER_STALE_SECONDS`` and did not stop (optionally: serving ``queue``)."""
    since = (now or timezone.now()) - timedelta(seconds=settings.WORKER_STALE_SECONDS)
    workers = TaskWorker.objects.filter(last_seen__gte=since, stopped_at__isnull=True)
    return [w for w in workers if queue is None or queue in w.queues or "*" in w.queues]


def runs_in_process() -> bool:
    """Whether tasks run inside the process that enqueues them (the demo's immediate backend): no worker needed."""
    from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
    from django_tasks.backends.immediate import ImmediateBackend

    return isinstance(task_backends[DEFAULT_TASK_BACKEND_ALIAS], ImmediateBackend)


def requeue_orphans(*, now: datetime | None = None) -> list[str]:
    """Put back on the queue every RUNNING task whose worker is dead; returns their ids.

    Only tasks claimed by a known worker (one with a ``TaskWorker`` row) are considered: a worker that writes no
    heartbeat (a plain ``db_worker``) cannot be told dead from busy, so its tasks are left alone.
    """
    now = now or timezone.now()
    alive = {w.worker_id for w in alive_workers(now=now)}
    requeued, given_up = [], []
    with transaction.atomic():
        # skip_locked: several workers sweep at once; a row another sweep (or a worker finishing it) holds is theirs.
        for task in DBTaskResult.objects.running().select_for_update(skip_locked=True):
            last = task.worker_ids[-1] if task.worker_ids else None
            if last is None or last in alive or not TaskWorker.objects.filter(worker_id=last).exists():
                continue
            if len(task.worker_ids) >= WORKER_MAX_ATTEMPTS:
                reason = f"gave up after {len(task.worker_ids)} workers were lost while running it"
                task.status, task.finished_at = TaskResultStatus.FAILED, now
                task.exception_class_path, task.traceback = "readerstudy.core.workers.WorkerLost", reason
                task.save(update_fields=["status", "finished_at", "exception_class_path", "traceback"])
                given_up.append((task.task_path, task.args_kwargs.get("kwargs", {}), reason))
            else:
                task.status = TaskResultStatus.READY
                task.save(update_fields=["status"])
                requeued.append(str(task.id))
                logger.warning("task %s (%s): worker %s lost, requeued", task.id, task.task_path, last)
    for task_path, kwargs, reason in given_up:
        logger.error("task %s %s: %s", task_path, kwargs, reason)
        handler = _LOST_HANDLERS.get(task_path)
        if handler is not None:
            handler(kwargs, reason)
    return requeued


class Heartbeat(threading.Thread):
    """Beats and sweeps in the background while the worker's main thread runs tasks (own DB connection)."""

    def __init__(self, worker_id: str) -> None:
        super().__init__(name=f"heartbeat-{worker_id}", daemon=True)
        self.worker_id = worker_id
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(settings.WORKER_HEARTBEAT_SECONDS):
            try:
                close_old_connections()
                beat(self.worker_id)
                requeue_orphans()
            except Exception:  # a database restart: keep beating once it is back
                logger.exception("worker %s: heartbeat failed", self.worker_id)
                connection.close()
        connection.close()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=settings.WORKER_HEARTBEAT_SECONDS + 5)
