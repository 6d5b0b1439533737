"""Precompute runs started from the command line are recorded like web-started ones, and the pages list them."""

import pytest
from django.core.management import call_command
from django.test import Client

from fixtures.phantom import generate_demo_study
from inference.models import PrecomputeRun
from readerstudy.core.models import AuditEvent, Verb
from readerstudy.studies import actions

pytestmark = pytest.mark.django_db


def test_a_command_line_precompute_is_a_recorded_run_shown_on_the_overview(tmp_path, boss):
    manifest = generate_demo_study(tmp_path / "data", seed=5, n_patients=1, n_lesions=2)
    study = actions.set_up_study(boss, "Command line")
    actions.import_cases(boss, study, manifest)
    call_command("precompute", "--study", study.name, "--no-progress")
    run = PrecomputeRun.objects.get(study=study)
    assert (run.status, run.created_by, run.n_cases, run.n_done, run.n_failed) == ("done", None, 2, 2, 0)
    assert run.progress == 1.0
    start = AuditEvent.objects.get(study=study, verb=Verb.START_PRECOMPUTE)
    assert start.actor is None and start.after["from"] == "command"
    assert AuditEvent.objects.filter(study=study, verb=Verb.FINISH_JOB).count() == 1
    client = Client()
    client.force_login(boss)
    html = client.get(f"/studies/{study.pk}/").content.decode()
    assert 'data-testid="precompute-run" data-status="done"' in html and "command line" in html
    assert "2 of 2" in html


DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "inference"]}}


def test_the_overview_says_which_inference_workers_run(settings, boss):
    from readerstudy.core import workers

    study = actions.set_up_study(boss, "Workers")
    client = Client()
    client.force_login(boss)

    def shown() -> str:
        html = client.get(f"/studies/{study.pk}/").content.decode()
        return html.split('data-testid="inference-workers" data-alive="')[1].split('"')[0]

    assert shown() == "in-process"  # the demo's immediate backend: no worker needed
    settings.TASKS = DATABASE_TASKS
    assert shown() == "0"
    workers.register_worker("gpu-node-1", ["inference"], "cuda")
    workers.register_worker("web-1", ["default"])
    assert shown() == "1"
    assert "(cuda, seen" in client.get(f"/studies/{study.pk}/").content.decode()
    workers.stop_worker("gpu-node-1")
    assert shown() == "0"
