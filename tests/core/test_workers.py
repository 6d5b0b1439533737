"""Task workers: heartbeats, and the tasks of a dead worker going back to the queue (or given up, with their job)."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from inference.models import PrecomputeRun
from inference.tasks import precompute_task
from readerstudy.core import workers
from readerstudy.core.models import TaskWorker
from readerstudy.studies import actions
from tests.factories import make_user

pytestmark = pytest.mark.django_db
DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "inference"]}}


@pytest.fixture
def run():
    admin = make_user("admin", superuser=True)
    study = actions.create_study(admin, "Workers", seed=1)
    return PrecomputeRun.objects.create(study=study, created_by=admin, backend="phantom-unet", device="cpu")


def claimed(run: PrecomputeRun, *worker_ids: str) -> DBTaskResult:
    """The precompute task in the database queue, claimed by these workers in turn (the last one holds it)."""
    with override_settings(TASKS=DATABASE_TASKS):
        result = precompute_task.enqueue(run_id=run.pk)
    task = DBTaskResult.objects.get(pk=result.id)
    for worker_id in worker_ids:
        task.claim(worker_id)
    return task


def seen(worker_id: str, seconds_ago: float, *, stopped: bool = False) -> TaskWorker:
    worker = workers.register_worker(worker_id, ["inference"], "cpu")
    workers.beat(worker_id, now=timezone.now() - timedelta(seconds=seconds_ago))
    if stopped:
        workers.stop_worker(worker_id)
    return worker


def test_a_busy_worker_keeps_its_task_and_a_silent_one_loses_it(settings, run):
    settings.WORKER_STALE_SECONDS = 60
    seen("busy", 5)
    busy = claimed(run, "busy")
    assert workers.requeue_orphans() == []
    seen("busy", 61)  # silent for longer than WORKER_STALE_SECONDS: killed, or its machine is gone
    assert workers.requeue_orphans() == [str(busy.id)]
    busy.refresh_from_db()
    assert busy.status == "READY" and busy.worker_ids == ["busy"]
    assert DBTaskResult.objects.ready().filter(queue_name="inference").count() == 1  # a worker picks it up again


def test_a_worker_that_stopped_mid_task_loses_it_at_once(settings, run):
    seen("quitter", 1, stopped=True)
    task = claimed(run, "quitter")
    assert workers.requeue_orphans() == [str(task.id)]


def test_a_worker_without_a_heartbeat_row_is_left_alone(run):
    claimed(run, "plain-db-worker")  # cannot be told dead from busy
    assert workers.requeue_orphans() == []
    assert DBTaskResult.objects.running().count() == 1


def test_a_task_that_lost_every_worker_is_given_up_and_its_run_fails(settings, run):
    for n in range(workers.WORKER_MAX_ATTEMPTS):
        seen(f"w{n}", 600)
    task = claimed(run, *(f"w{n}" for n in range(workers.WORKER_MAX_ATTEMPTS)))
    assert workers.requeue_orphans() == []
    task.refresh_from_db()
    assert task.status == "FAILED" and "3 workers were lost" in task.traceback
    run.refresh_from_db()
    assert run.status == "failed" and any("worker lost" in e for e in run.errors)


def test_alive_workers_by_queue(settings):
    settings.WORKER_STALE_SECONDS = 30
    seen("gpu-1", 2)
    seen("gpu-2", 300)
    workers.register_worker("web-1", ["default"])
    assert [w.worker_id for w in workers.alive_workers(queue="inference")] == ["gpu-1"]
    assert {w.worker_id for w in workers.alive_workers()} == {"gpu-1", "web-1"}


def test_the_command_refuses_an_unknown_queue_and_a_missing_gpu(settings):
    settings.TASKS = DATABASE_TASKS
    with pytest.raises(CommandError, match="--queue-name gpu: expected one of default, inference"):
        call_command("task_worker", "--queue-name", "gpu", "--batch")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(CommandError, match="torch sees no CUDA device"):
            call_command("task_worker", "--queue-name", "inference", "--device", "cuda", "--batch")
    assert not TaskWorker.objects.exists(), "refused before it registered"


# Committed for real: the worker's loop closes a connection whose autocommit differs from the settings' (as in a
# test's transaction), which would take the test's own connection with it.
@pytest.mark.django_db(transaction=True)
def test_a_batch_worker_registers_runs_the_queue_and_says_goodbye(settings, run):
    claimed(run)  # precompute waits on the inference queue
    settings.TASKS = DATABASE_TASKS
    call_command("task_worker", "--queue-name", "default", "--batch", "--worker-id", "batch-1", "--verbosity", "0")
    worker = TaskWorker.objects.get(worker_id="batch-1")
    assert worker.queues == ["default"] and worker.stopped_at is not None
    task = DBTaskResult.objects.get()
    assert task.queue_name == "inference" and task.status == "READY", "the default queue's worker left it alone"


def test_an_immediate_backend_is_no_worker_backend(settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    with pytest.raises(CommandError, match="not a database backend"):
        call_command("task_worker", "--queue-name", "default", "--batch")
