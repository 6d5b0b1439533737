"""Phantom backend end to end: series -> segmentation -> lesions -> classifier -> labelmap + DICOM SEG."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from imaging.series import read_series
from inference.pipeline.evaluate import dice
from inference.pipeline.run import predict_case
from inference.pipeline.seg import read_seg
from tests.inference.conftest import MODELS


@pytest.fixture(scope="module")
def prediction(phantom_series, unet_backend, classifier):
    target = phantom_series.phantom.lesions[0]  # the 24 mm CRLM
    return predict_case(
        phantom_series.folder,
        target.center_lps_mm,
        backend=unet_backend,
        classifier=classifier,
        tolerance_mm=10.0,
        target_diameter_mm=target.diameter_mm,
    )


def test_segmentation_and_target_on_a_phantom(phantom_series, prediction):
    ph = phantom_series.phantom
    lm = prediction.labelmap
    assert lm.dtype == np.uint8 and lm.shape == ph.shape
    assert set(np.unique(lm)) <= {0, 1, 2, 3}
    assert dice(lm >= 1, ph.liver_mask) > 0.9
    assert prediction.target_matched and prediction.probability_source == "matched lesion"
    target = prediction.target
    assert target is not None and target["is_target"]
    assert dice(lm == 2, ph.lesion_labels == 1) > 0.7
    assert abs(target["diameter_mm"] - 24.0) < 4.0
    assert "stratum" not in target  # the study's bins are not the pipeline's business
    assert np.linalg.norm(np.subtract(target["centroid_mm"], ph.lesions[0].center_lps_mm)) < 4.0
    assert sum(le["is_target"] for le in prediction.lesions) == 1
    assert 0.0 < prediction.probability < 1.0
    assert set(prediction.timings) == {"read", "segment", "lesions", "classify", "seg"}
    assert prediction.device == "cpu"
    assert (
        prediction.models["segmentation"]["sha256"]
        == hashlib.sha256((MODELS / "phantom_unet.pt").read_bytes()).hexdigest()
    )
    json.dumps(prediction.summary())  # what the Django side stores must serialise


def test_dicom_seg_reads_back_with_the_labelmap_counts(phantom_series, prediction):
    vol = read_series(phantom_series.folder)
    summary = read_seg(prediction.seg_bytes, vol.sop_instance_uids)
    assert set(summary.referenced_sop_instance_uids) <= set(vol.sop_instance_uids)
    assert summary.segment_labels[1] == "Liver"
    lm = prediction.labelmap
    assert summary.voxel_counts[1] == int((lm >= 1).sum())
    lesion_segments = {n: lab for n, lab in summary.segment_labels.items() if n > 1}
    assert len(lesion_segments) == len(prediction.lesions)
    target_seg = next(n for n, lab in lesion_segments.items() if lab.endswith("(target)"))
    assert summary.voxel_counts[target_seg] == int((lm == 2).sum())
    assert sum(summary.voxel_counts[n] for n in lesion_segments) == int((lm >= 2).sum())
    assert len(prediction.seg_bytes) < 2_000_000  # compact: empty frames omitted, 1 bit per pixel


def test_inputs_hash_is_stable_and_sensitive(phantom_series, unet_backend, classifier, prediction):
    from inference.pipeline.run import inputs_sha256

    kw = dict(backend=unet_backend, classifier=classifier, tolerance_mm=10.0, target_diameter_mm=24.0)
    target = phantom_series.phantom.lesions[0].center_lps_mm
    assert inputs_sha256(phantom_series.folder, target, **kw) == prediction.inputs_sha256
    assert inputs_sha256(phantom_series.folder, target, **{**kw, "tolerance_mm": 5.0}) != prediction.inputs_sha256
    assert inputs_sha256(phantom_series.folder, (0, 0, 0), **kw) != prediction.inputs_sha256
    with pytest.raises(TypeError):  # a study's size bins are no input: editing them re-runs no model
        inputs_sha256(phantom_series.folder, target, **kw, bins=(10, 30))


def test_unmatched_target_falls_back_to_the_manifest_centre(phantom_series, unet_backend, classifier):
    ph = phantom_series.phantom
    # a point in the liver far from every lesion
    idx = np.argwhere(ph.liver_mask & (ph.lesion_labels == 0))
    dist = np.min(
        [np.linalg.norm(ph.index_to_lps(idx) - np.array(s.center_lps_mm), axis=1) for s in ph.lesions], axis=0
    )
    point = ph.index_to_lps(idx[int(np.argmax(dist))])
    pred = predict_case(
        phantom_series.folder, point, backend=unet_backend, classifier=classifier, target_diameter_mm=12.0
    )
    assert not pred.target_matched
    assert pred.probability_source == "manifest centre (no lesion matched)"
    assert any("manifest centre" in n for n in pred.notes)
    assert not (pred.labelmap == 2).any() and (pred.labelmap == 3).any()
    assert 0.0 < pred.probability < 1.0
    with pytest.raises(ValueError, match="lies outside the series"):
        predict_case(phantom_series.folder, (0, 0, 900), backend=unet_backend, classifier=classifier)


@pytest.mark.parametrize("n_slices", [2, 3])
def test_a_thin_series_is_padded_to_the_networks_minimum(phantom_series, unet_backend, classifier, tmp_path, n_slices):
    """A few slices are fewer than the UNet's downsamplings take: padded in, cropped back, never a crash."""
    import shutil

    from inference.pipeline.segment import min_input_shape

    target = phantom_series.phantom.lesions[0]
    vol = read_series(phantom_series.folder)
    k = int(np.rint(vol.lps_to_index(target.center_lps_mm)[0]))
    thin = tmp_path / "thin"
    thin.mkdir()
    for path in vol.paths[k : k + n_slices]:
        shutil.copy(path, thin / path.name)
    assert n_slices < min_input_shape(unet_backend.config)[0]
    pred = predict_case(thin, target.center_lps_mm, backend=unet_backend, classifier=classifier, target_diameter_mm=24)
    assert pred.labelmap.shape == (n_slices, *vol.shape[1:])
    assert (pred.labelmap >= 1).any()  # the liver is still found on the slab
    assert 0.0 < pred.probability < 1.0 and len(pred.slice_sop_instance_uids) == n_slices


def test_the_unet_takes_volumes_smaller_than_its_windows(unet_backend):
    spacing = tuple(unet_backend.config["spacing_mm"])
    for shape in [(2, 8, 8), (3, 5, 7), (1, 64, 64), (2, 16, 16)]:
        prob = unet_backend.predict_probabilities(np.full(shape, 60.0, dtype=np.float32), spacing)
        assert prob.shape == (3, *shape) and np.allclose(prob.sum(axis=0), 1.0, atol=1e-4)
    # finer than the model's spacing (resampled down): a single voxel per axis is kept, not lost
    prob = unet_backend.predict_probabilities(np.zeros((2, 3, 3), dtype=np.float32), (0.5, 0.5, 0.5))
    assert prob.shape == (3, 2, 3, 3)


@pytest.mark.parametrize(
    ("strides", "factors"),
    [([2, 2, 2], (8, 8, 8)), ([[1, 2, 2], 2, 2], (4, 8, 8)), ([1, 2, 2, 2], (8, 8, 8)), ([[1, 1, 2]], (1, 1, 2))],
)
def test_per_axis_strides_set_the_downsampling_and_the_smallest_input(strides, factors):
    import torch

    from inference.pipeline.segment import build_unet, downsampling, min_input_shape

    config = {"channels": [4] * (len(strides) + 1), "strides": strides, "num_res_units": 1}
    assert downsampling(config) == factors
    shape = min_input_shape(config)
    assert shape == tuple(2 * f for f in factors)
    with torch.inference_mode():
        out = build_unet(config).eval()(torch.zeros(1, 1, *shape))
    assert tuple(out.shape) == (1, 3, *shape)
