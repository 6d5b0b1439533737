"""The inference device, from ``precompute --device`` and ``task_worker --device`` to every backend's model and
tensors; ``cuda`` on a machine without a GPU is refused with one clear message before any model loads.

On a GPU node the ``cuda`` cases run (and the refusals are skipped); on this CPU machine the reverse."""

from __future__ import annotations

import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from inference.models import BACKENDS, CLASSIFIERS, PrecomputeRun, Prediction
from inference.precompute import load_models

HAS_GPU = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_GPU, reason="no GPU on this machine"))]
no_gpu_only = pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU")
DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "inference"]}}


def torch_modules(obj) -> list[torch.nn.Module]:
    return [v for v in vars(obj).values() if isinstance(v, torch.nn.Module)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("classifier", CLASSIFIERS)
def test_the_requested_device_reaches_the_segmentation_and_each_classifier(classifier, device):
    segmenter, model = load_models("phantom-unet", device, classifier=classifier)
    assert segmenter.device == device
    assert {p.device.type for p in segmenter.net.parameters()} == {device}
    nets = torch_modules(model)
    if classifier == "radiomics":  # numpy features and a dot product: nothing to move
        assert not nets and model.device == "cpu"
    else:
        assert model.device == device and len(nets) == 1
        assert {p.device.type for p in nets[0].parameters()} | {b.device.type for b in nets[0].buffers()} == {device}


@no_gpu_only
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("classifier", CLASSIFIERS)
def test_cuda_without_a_gpu_is_refused_before_any_model_loads(backend, classifier, settings, tmp_path):
    settings.INFERENCE_MODELS_DIR = tmp_path  # empty: the device is checked before a missing model file
    with pytest.raises(RuntimeError, match="device 'cuda' requested but torch sees no CUDA device"):
        load_models(backend, "cuda", classifier=classifier)


@no_gpu_only
def test_each_torch_backend_refuses_cuda_without_a_gpu_by_itself():
    from inference.pipeline.classify import Classifier
    from inference.pipeline.multiseries import MultiSeriesClassifier
    from inference.pipeline.segment import PhantomUNetBackend
    from inference.pipeline.slice_classifier import SliceClassifier
    from tests.inference.conftest import MODELS

    for cls, name in (
        (PhantomUNetBackend, "phantom_unet.pt"),
        (Classifier, "lesion_classifier.pt"),
        (SliceClassifier, "slice_classifier.pt"),
        (MultiSeriesClassifier, "multiseries_classifier.pt"),
    ):
        with pytest.raises(RuntimeError, match="'cuda' requested"):
            cls(MODELS / name, device="cuda")


@no_gpu_only
@pytest.mark.django_db
def test_the_precompute_command_says_so(phantom_study):
    with pytest.raises(CommandError, match="torch sees no CUDA device"):
        call_command("precompute", "--study", phantom_study.name, "--device", "cuda", "--no-progress")
    assert not Prediction.objects.exists()


@pytest.fixture
def no_worker_device(settings, monkeypatch):
    """task_worker --device writes settings.INFERENCE_DEVICE and the environment: both restored after the test."""
    settings.INFERENCE_DEVICE = ""
    monkeypatch.setenv("INFERENCE_DEVICE", "")
    return settings


@no_gpu_only
@pytest.mark.django_db
def test_a_cuda_worker_without_a_gpu_fails_the_run_with_the_reason(phantom_study, no_worker_device, monkeypatch):
    from inference.jobs import start_precompute
    from tests.factories import make_user

    monkeypatch.setattr("django.db.transaction.on_commit", lambda func, using=None, robust=False: func())
    no_worker_device.INFERENCE_DEVICE = "cuda"  # what `task_worker --device cuda` sets, on a machine without one
    run = start_precompute(make_user("boss", superuser=True), phantom_study, device="cpu", classifier="multi-series")
    run = PrecomputeRun.objects.get(pk=run.pk)
    assert run.status == "failed" and run.device == "cuda"  # the worker's device wins, and is recorded
    assert any("torch sees no CUDA device" in e for e in run.errors)
    assert not Prediction.objects.exists()


# Committed for real: the worker's loop closes a connection whose autocommit differs from the settings' (as in a
# test's transaction), which would take the test's own connection with it.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.django_db(transaction=True)
def test_the_worker_s_device_runs_a_multi_series_run(device, tmp_path, no_worker_device):
    """``task_worker --queue-name inference --device D`` runs a run queued from the web (which asked for the
    other device): the run, every prediction and its backends say D."""
    from fixtures.phantom import generate_demo_study
    from inference import actions as inference_actions
    from inference.tasks import precompute_task
    from readerstudy.studies import actions
    from tests.factories import make_user

    manifest = generate_demo_study(
        tmp_path / "data", seed=5, n_patients=1, n_lesions=2, extra_series_roles=("arterial", "delayed")
    )
    admin = make_user("admin", superuser=True)
    study = actions.create_study(admin, "Worker device", seed=3)
    actions.import_cases(admin, study, manifest)
    asked = "cuda" if device == "cpu" else "cpu"
    run = inference_actions.queue_precompute(admin, study, device=asked, classifier="multi-series")
    with override_settings(TASKS=DATABASE_TASKS):
        precompute_task.enqueue(run_id=run.pk)
    no_worker_device.TASKS = DATABASE_TASKS
    argv = ["--queue-name", "inference", "--device", device, "--batch", "--worker-id", "w", "--verbosity", "0"]
    call_command("task_worker", *argv)
    run.refresh_from_db()
    assert (run.status, run.n_done, run.device) == ("done", 2, device), run.errors
    predictions = Prediction.objects.filter(case__study=study)
    assert {p.device for p in predictions} == {device} and predictions.count() == 2
    assert {p.model_name for p in predictions} == {"phantom-unet+multiseries-classifier-demo"}
