"""A production task worker: django-tasks-db's ``db_worker`` with a heartbeat, requeueing and a device.

    python manage.py task_worker --queue-name default                    # imports, exports, analysis runs
    python manage.py task_worker --queue-name inference --device cuda    # precompute, on a GPU machine

A worker needs only ``DATABASE_URL``, the storage settings (``STORAGE_BACKEND=s3`` and its ``S3_*``) and, for
inference, the model weights (``INFERENCE_MODELS_DIR``, ``TOTALSEG_HOME_DIR``): no folder of the web machine. Every
other option of ``db_worker`` is accepted (``--interval``, ``--batch``, ``--max-tasks``, ``--worker-id``); code
reloading is off (a reload would stop a task mid-way).
"""

from __future__ import annotations

import os
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django_tasks_db.management.commands import db_worker

from readerstudy.core import workers


class Command(db_worker.Command):
    help = "Run a task worker (database queue) with a heartbeat; --device picks cpu or cuda for inference."

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--device",
            choices=["cpu", "cuda"],
            default=None,
            help="Run inference on this device, whatever the run asked for (default: the run's own choice).",
        )

    def handle(self, *args: Any, **options: Any) -> None:  # db_worker's options, and --device
        device: str | None = options.pop("device", None)
        if device == "cuda":
            import torch  # a worker, never the web tier: only --device cuda needs torch before the first task

            if not torch.cuda.is_available():
                raise CommandError("--device cuda: torch sees no CUDA device on this machine")
        if device:
            settings.INFERENCE_DEVICE = device
            os.environ["INFERENCE_DEVICE"] = device  # subprocesses (TotalSegmentator) read it too
        queues = [q for q in options["queue_name"].split(",") if q]
        unknown = sorted(set(queues) - set(settings.TASK_QUEUES) - {"*"})
        if unknown:
            raise CommandError(f"--queue-name {','.join(unknown)}: expected one of {', '.join(settings.TASK_QUEUES)}")
        worker_id = options["worker_id"]
        workers.register_worker(worker_id, queues, device or "")
        workers.requeue_orphans()  # what a worker killed before this one started left behind
        heartbeat = workers.Heartbeat(worker_id)
        heartbeat.start()
        try:
            super().handle(*args, **{**options, "reload": False})
        finally:
            heartbeat.stop()
            workers.stop_worker(worker_id)
