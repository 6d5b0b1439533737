"""The training commands run end to end on tiny settings and write weights plus a model card (no accuracy claim)."""

from __future__ import annotations

import hashlib
import json

import pytest

from fixtures.phantom import generate_demo_study


def test_train_unet_smoke(tmp_path):
    from inference.pipeline.segment import PhantomUNetBackend
    from inference.pipeline.train_unet import main

    out = tmp_path / "unet.pt"
    assert main([str(out), "--patients", "1", "--val-patients", "1", "--steps", "2"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert set(card["validation_metrics"]) >= {"dice_liver", "dice_lesion", "lesion_detection_rate"}
    assert PhantomUNetBackend(out).weights_sha256 == card["sha256"]


def test_train_unet_refuses_the_demo_seed(tmp_path):
    from inference.pipeline.train_unet import train

    with pytest.raises(ValueError, match="demo study"):
        train(tmp_path / "x.pt", patients=1, val_patients=1, steps=1, seed=20261123, progress=False)


def test_train_classifier_smoke(tmp_path):
    from inference.pipeline.classify import Classifier
    from inference.pipeline.train_classifier import main

    generate_demo_study(tmp_path / "data", seed=5, n_patients=6, n_lesions=14)
    out = tmp_path / "cls.pt"
    assert (
        main([str(out), "--data", str(tmp_path / "data"), "--epochs", "1", "--val-fraction", "0.5", "--seed", "3"]) == 0
    )
    card = json.loads(out.with_suffix(".json").read_text())
    assert 0.0 <= card["validation_metrics"]["auc"] <= 1.0
    assert "DeLong" in card["validation_metrics"]["auc_method"]
    assert Classifier(out).weights_sha256 == card["sha256"]
