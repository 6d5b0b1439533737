"""Slice-level classifier aggregated per lesion: slices, top-k aggregation, training, Platt scaling of the top-k
mean (fitted on calibration patients only, applied at inference, the AUC unchanged, old weights still read), the
stored model, precompute with ``--classifier slice-topk``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from inference.pipeline.calibration import logit
from inference.pipeline.slice_classifier import SliceClassifier, lesion_slices, sigmoid, top_k_logit, top_k_mean
from tests.inference.calibrated import (
    CAL_FRACTION,
    VAL_FRACTION,
    check_calibration,
    check_card_reports_calibration,
    check_split,
)

HERE = Path(__file__).resolve().parent


def test_the_slices_are_the_lesion_extent_or_the_diameter_around_the_centre():
    assert lesion_slices(10.0, (7, 12), 30.0, 2.5, 40) == [7, 8, 9, 10, 11, 12]
    # No mask: within 10 mm / 2.5 mm = 4 slices of the centre 10.2 -> 6.2..14.2 -> 7..14
    assert lesion_slices(10.2, None, 20.0, 2.5, 40) == list(range(7, 15))
    assert lesion_slices(10.4, None, 2.0, 2.5, 40) == [10]  # thinner than a slice: the nearest one
    assert lesion_slices(1.0, None, 20.0, 2.5, 4) == [0, 1, 2, 3]  # clipped to the volume
    assert lesion_slices(0.0, (-2, 1), 10.0, 2.5, 40) == [0, 1]


def test_top_k_mean_by_hand():
    assert top_k_mean([0.1, 0.9, 0.5, 0.7], 3) == pytest.approx((0.9 + 0.7 + 0.5) / 3)
    assert top_k_mean([0.2, 0.4], 3) == pytest.approx(0.3)  # fewer slices than k: all of them
    assert top_k_mean([0.2, 0.4], 1) == 0.4  # k = 1 is the maximum
    with pytest.raises(ValueError, match="no slice"):
        top_k_mean([], 3)


def test_the_top_k_logit_is_the_logit_of_the_top_k_mean_without_clipping():
    rng = np.random.default_rng(4)
    for _ in range(20):
        x = rng.normal(0.0, 3.0, int(rng.integers(1, 9)))
        assert top_k_logit(x, 3) == pytest.approx(logit([top_k_mean(sigmoid(x), 3)])[0], abs=1e-9)
    # where the mean rounds to 1 (or 0) a clipped logit would tie these; the log-space one keeps them apart
    assert top_k_mean(sigmoid(np.array([40.0, 41.0])), 2) == top_k_mean(sigmoid(np.array([50.0, 51.0])), 2) == 1.0
    assert top_k_logit([40.0, 41.0], 2) == pytest.approx(40.0 + np.log(2 / (1 + np.exp(-1.0))), abs=1e-9)
    assert top_k_logit([40.0, 41.0], 2) < top_k_logit([50.0, 51.0], 2)
    assert top_k_logit([-60.0, -50.0, -70.0], 1) == pytest.approx(-50.0)


@pytest.fixture(scope="module")
def trained(training_phantoms, tmp_path_factory):
    from inference.pipeline.train_slice_classifier import main

    out = tmp_path_factory.mktemp("slice-model")
    argv = ["--data", str(training_phantoms), "--out", str(out), "--epochs", "1", "--val-fraction", "0.5"]
    assert main([*argv, "--cal-fraction", "0", "--seed", "3", "--top-k", "2", "--no-progress"]) == 0
    return out / "slice_classifier.pt"


def test_training_writes_weights_and_a_card(trained):
    card = json.loads(trained.with_suffix(".json").read_text())
    assert card["sha256"] == hashlib.sha256(trained.read_bytes()).hexdigest()
    assert card["name"] == "slice-classifier-demo" and card["config"]["top_k"] == 2
    metrics = card["validation_metrics"]
    assert 0.0 <= metrics["auc"] <= 1.0 and "DeLong" in metrics["auc_method"] and metrics["slices"] > 0
    assert "top-2" in card["aggregation"]
    # --cal-fraction 0: no calibration, and the card says so
    assert "calibration" not in card["config"]
    assert card["calibration"] == "none: no calibration split (--cal-fraction 0)"


def test_each_slice_of_the_lesion_is_scored_and_the_top_k_mean_is_the_probability(trained, training_phantoms):
    from imaging.series import read_series

    model = SliceClassifier(trained, threads=1)
    assert model.top_k == 2 and model.weights_sha256 == json.loads(trained.with_suffix(".json").read_text())["sha256"]
    vol = read_series(training_phantoms / "series" / "P001" / "CT_PORTAL_VENOUS")
    idx = np.argwhere(np.load(training_phantoms / "masks" / "P001.npz")["lesion_labels"] == 1)
    z_range = (int(idx[:, 0].min()), int(idx[:, 0].max()))
    prob, logits = model.predict(vol.hu, vol.spacing_mm, idx.mean(axis=0), 15.0, z_range=z_range)
    assert len(logits) == z_range[1] - z_range[0] + 1
    assert 0.0 <= prob <= 1.0 and prob == pytest.approx(top_k_mean(sigmoid(logits), 2))


def test_missing_weights_name_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_slice_classifier"):
        SliceClassifier(tmp_path / "slice_classifier.pt")


def test_the_shipped_demo_model_matches_its_card():
    models = HERE.parents[1] / "fixtures" / "models"
    model = SliceClassifier(models / "slice_classifier.pt", threads=1)
    card = json.loads((models / "slice_classifier.json").read_text())
    assert model.weights_sha256 == card["sha256"] and model.name == card["name"] and model.top_k == 3
    assert model.config["calibration"] == card["config"]["calibration"] and model.config["calibration"]["slope"] > 0
    check_card_reports_calibration(card)


@pytest.fixture(scope="module")
def calibrated(calibration_phantoms, tmp_path_factory):
    from inference.pipeline.train_slice_classifier import train

    out = tmp_path_factory.mktemp("slice-calibrated")
    card = train(
        calibration_phantoms, out, epochs=6, val_fraction=VAL_FRACTION, cal_fraction=CAL_FRACTION, seed=1, top_k=2,
        progress=False,
    )  # fmt: skip
    return out / "slice_classifier.pt", card


def _predict_all(model: SliceClassifier, data: Path) -> tuple[list[str], list[int], np.ndarray, np.ndarray]:
    """Every manifest lesion through the loaded model: patients, truth, raw scores (logit of the top-k mean of the
    slice probabilities), probabilities."""
    from inference.pipeline.train_classifier import load_cases

    patients, truth, raw, probs = [], [], [], []
    for c in load_cases(data, progress=False):
        prob, logits = model.predict(c.hu, c.spacing, c.centre_index, c.diameter_mm, z_range=c.z_range)
        patients.append(c.patient)
        truth.append(c.truth)
        raw.append(logit([top_k_mean(sigmoid(logits), model.top_k)])[0])
        probs.append(prob)
    return patients, truth, np.array(raw), np.array(probs)


def test_the_calibration_is_fitted_on_its_own_patients_and_applied_to_the_top_k_mean(calibrated, calibration_phantoms):
    path, card = calibrated
    model = SliceClassifier(path, threads=1)
    cal_params = model.config["calibration"]
    assert cal_params == card["config"]["calibration"] and "top-2 mean slice probability" in card["calibration"]
    patients, truth, raw, probs = _predict_all(model, calibration_phantoms)
    val, cal = check_split(card, patients, seed=1)
    check_calibration(card, cal_params, truth, raw, patients, val, cal)
    np.testing.assert_allclose(probs, sigmoid(cal_params["slope"] * raw + cal_params["intercept"]), rtol=1e-9)


def test_weights_without_calibration_give_the_top_k_mean(calibrated, calibration_phantoms, tmp_path):
    import torch

    path, _ = calibrated
    payload = torch.load(path, weights_only=True)
    del payload["config"]["calibration"]  # as saved before calibration
    torch.save(payload, tmp_path / "slice_classifier.pt")
    old = SliceClassifier(tmp_path / "slice_classifier.pt", threads=1)
    _, _, raw, probs = _predict_all(old, calibration_phantoms)
    np.testing.assert_array_equal(raw, _predict_all(SliceClassifier(path, threads=1), calibration_phantoms)[2])
    np.testing.assert_allclose(probs, sigmoid(raw), rtol=1e-9)


@pytest.mark.django_db
def test_precompute_with_the_slice_classifier(phantom_study, trained, models_folder, settings, capsys):
    from django.core.management import call_command

    from inference.models import PrecomputeRun, Prediction

    settings.INFERENCE_MODELS_DIR = models_folder(trained)
    call_command("precompute", "--study", phantom_study.name, "--classifier", "slice-topk", "--no-progress")
    assert "4 predicted, 0 unchanged (skipped), 0 failed" in capsys.readouterr().out
    sha = SliceClassifier(trained, threads=1).weights_sha256
    unet_sha = json.loads((HERE.parents[1] / "fixtures" / "models" / "phantom_unet.json").read_text())["sha256"]
    for p in Prediction.objects.filter(case__study=phantom_study):
        assert p.model_name == "phantom-unet+slice-classifier-demo" and p.model_version == "1.0+1.0 (pipeline 2)"
        assert p.weights_sha256 == hashlib.sha256((unet_sha + sha).encode()).hexdigest()
        assert 0.0 <= p.probability <= 1.0
    assert PrecomputeRun.objects.get(study=phantom_study).classifier == "slice-topk"
    call_command("precompute", "--study", phantom_study.name, "--classifier", "slice-topk", "--no-progress")
    assert "0 predicted, 4 unchanged (skipped), 0 failed" in capsys.readouterr().out


@pytest.mark.django_db
def test_the_classifier_choice_is_checked_and_recorded_on_a_queued_run(phantom_study):
    from inference import actions
    from readerstudy.core.errors import InvalidInput
    from tests.factories import make_user

    admin = make_user("boss", superuser=True)
    with pytest.raises(InvalidInput, match="classifier 'svm'"):
        actions.queue_precompute(admin, phantom_study, classifier="svm")
    run = actions.queue_precompute(admin, phantom_study, classifier="slice-topk")
    assert run.classifier == "slice-topk"
    assert actions.queue_precompute(admin, phantom_study).classifier == "densenet-crops"


@pytest.mark.django_db
def test_a_background_run_uses_its_classifier(phantom_study, trained, models_folder, settings, monkeypatch):
    from inference.jobs import start_precompute
    from inference.models import PrecomputeRun, Prediction
    from tests.factories import make_user

    monkeypatch.setattr("django.db.transaction.on_commit", lambda func, using=None, robust=False: func())
    settings.INFERENCE_MODELS_DIR = models_folder(trained)
    run = start_precompute(make_user("boss", superuser=True), phantom_study, classifier="slice-topk")
    run = PrecomputeRun.objects.get(pk=run.pk)
    assert (run.status, run.n_done, run.classifier) == ("done", 4, "slice-topk")
    assert set(Prediction.objects.values_list("model_name", flat=True)) == {"phantom-unet+slice-classifier-demo"}
