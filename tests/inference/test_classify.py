"""Classifier: identity (sha256 and model card), determinism, crops, and a sanity check on two phantom lesions."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from inference.pipeline.classify import (
    DEMO_CONFIG,
    DENSENET201,
    RESNET152,
    build_classifier,
    crop_slices,
    extract_crops,
    probability,
)
from tests.inference.conftest import MODELS


def test_weights_identity_and_model_cards(classifier, unet_backend):
    for name, model in (("lesion_classifier", classifier), ("phantom_unet", unet_backend)):
        weights = MODELS / f"{name}.pt"
        card = json.loads((MODELS / f"{name}.json").read_text())
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        assert model.weights_sha256 == digest == card["sha256"]
        assert card["name"] == model.name and card["version"] == model.version
        assert weights.stat().st_size == card["weights_bytes"] < 3_000_000
        for key in ("architecture", "params", "training_data", "seed", "validation_metrics"):
            assert card[key] not in (None, "", {}), key
        assert card["seed"] != 20261123


def test_prediction_is_deterministic(phantom_series, classifier):
    ph = phantom_series.phantom
    centre = ph.lps_to_index(ph.lesions[1].center_lps_mm)
    p1, l1 = classifier.predict(ph.hu, ph.spacing_mm, centre, ph.lesions[1].diameter_mm)
    p2, l2 = classifier.predict(ph.hu.copy(), ph.spacing_mm, centre, ph.lesions[1].diameter_mm)
    assert p1 == p2 and np.array_equal(l1, l2)
    assert len(l1) == DEMO_CONFIG["n_slices"]
    # mean of the logits, Platt-rescaled (the shipped model is calibrated), then the sigmoid
    cal = classifier.config["calibration"]
    assert cal["method"] == "platt"
    assert p1 == pytest.approx(1 / (1 + np.exp(-(cal["slope"] * np.mean(l1) + cal["intercept"]))))
    assert probability(float(np.mean(l1)), {}) == pytest.approx(1 / (1 + np.exp(-np.mean(l1))))


def test_crlm_scores_above_hemangioma_on_phantoms(phantom_series, classifier):
    ph = phantom_series.phantom
    probs = {}
    for n, spec in enumerate(ph.lesions, start=1):
        idx = np.argwhere(ph.lesion_labels == n)
        z = (int(idx[:, 0].min()), int(idx[:, 0].max()))
        probs[n] = classifier.predict(ph.hu, ph.spacing_mm, idx.mean(axis=0), spec.diameter_mm, z_range=z)[0]
    crlm = [probs[n] for n, s in enumerate(ph.lesions, start=1) if s.label == "crlm"]
    hem = [probs[n] for n, s in enumerate(ph.lesions, start=1) if s.label == "hemangioma"]
    assert min(crlm) > max(hem), probs


def test_crops_geometry():
    hu = np.zeros((20, 100, 100), np.int16)
    hu[8:12, 45:55, 45:55] = 200  # a bright 10 mm square at 1 mm pixels
    crops = extract_crops(hu, (2.0, 1.0, 1.0), (10, 49.5, 49.5), 10.0, DEMO_CONFIG)
    p = DEMO_CONFIG["crop_px"]
    assert crops.shape == (DEMO_CONFIG["n_slices"], 1, p, p) and crops.dtype == np.float32
    assert crops.min() >= -1 and crops.max() <= 1
    centre = crops[2, 0, p // 2 - 2 : p // 2 + 2, p // 2 - 2 : p // 2 + 2]
    assert (centre > 0.5).all() and crops[2, 0, 0, 0] < 0
    # the middle 60 % of slices 8..11 (centre 9.5): offsets of +-0.9 slices, rounded half to even
    assert crop_slices(10, (8, 11), 10, 2.0, 5, 20) == [9, 9, 10, 10, 10]
    assert crop_slices(10, (0, 10), 10, 2.0, 5, 20) == [2, 4, 5, 6, 8]
    assert crop_slices(0, None, 10, 2.0, 3, 20) == [0, 0, 2]


@pytest.mark.parametrize("config", [DENSENET201, RESNET152], ids=["densenet201", "resnet152"])
def test_production_architectures_build(config):
    import torch

    net = build_classifier(config).eval()
    with torch.inference_mode():
        out = net(torch.zeros(1, 1, 64, 64))
    assert out.shape == (1, 1)
    n = sum(p.numel() for p in net.parameters())
    assert n > 15_000_000  # the real networks, not the demo's
