"""TotalSegmentator backend: the missing-weights error, and the real code path with tiny hand-set nnU-Net models.

The plumbing test runs TotalSegmentator 2.18 itself (NIfTI in/out, canonical reorientation, resampling to 3 mm
and 0.75 mm, the liver-crop cascade of ``liver_lesions``) in the separate venv. The tiny models output a known
function of the intensity (see tiny_totalseg_models.py), so the masks coming back must coincide with HU bands
of the input on our grid: a flipped axis or a wrong affine fails. No accuracy claim: these are not trained.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imaging.series import Volume
from inference.pipeline.evaluate import dice
from inference.pipeline.segment import (
    TOTALSEG_MODELS,
    TotalSegmentatorBackend,
    TotalSegmentatorError,
    missing_totalseg_weights,
)

REPO = Path(__file__).resolve().parents[2]
TOTALSEG_PY = Path(os.environ.get("TOTALSEG_PYTHON") or REPO / ".venv-totalseg" / "bin" / "python")


def test_missing_weights_error_lists_every_missing_folder(tmp_path):
    with pytest.raises(TotalSegmentatorError) as exc:
        TotalSegmentatorBackend(python=Path(sys.executable), weights_dir=tmp_path / "empty")
    msg = str(exc.value)
    for dataset, trainer, _ in TOTALSEG_MODELS.values():
        for name in ("plans.json", "dataset.json", "fold_0/checkpoint_final.pth"):
            assert f"{dataset}/{trainer}/{name}" in msg
    assert (
        "Missing Dataset folders: Dataset297_TotalSegmentator_total_3mm_1559subj, Dataset591_ct_liver_lesions_842subj"
        in msg
    )
    assert "totalseg_download_weights -t liver_lesions" in msg and "totalseg_download_weights -t total_fast" in msg
    assert str(tmp_path / "empty") in msg
    # with only the lesion model installed, only model 297 is reported
    d591, t591, _ = TOTALSEG_MODELS[591]
    for name in ("plans.json", "dataset.json", "fold_0/checkpoint_final.pth"):
        (tmp_path / "partial" / d591 / t591 / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "partial" / d591 / t591 / name).write_text("{}")
    missing = missing_totalseg_weights(tmp_path / "partial")
    assert missing and all(m.startswith("Dataset297_") for m in missing)


def test_weights_dir_follows_totalsegmentator_rules(tmp_path, monkeypatch):
    from inference.pipeline.segment import totalseg_weights_dir

    assert totalseg_weights_dir({"TOTALSEG_HOME_DIR": str(tmp_path)}) == tmp_path / "nnunet" / "results"
    assert totalseg_weights_dir({"TOTALSEG_HOME_DIR": "x", "TOTALSEG_WEIGHTS_PATH": str(tmp_path)}) == tmp_path


def test_missing_venv_error(tmp_path):
    with pytest.raises(
        TotalSegmentatorError, match=r"TotalSegmentator python not found at .*requirements-totalseg\.txt"
    ):
        TotalSegmentatorBackend(python=tmp_path / "nope" / "python", weights_dir=tmp_path)


def _small_volume(ph) -> Volume:
    """A liver-centred block of the phantom at 3 mm in-plane (every other pixel), with the matching affine.

    Small on purpose: TotalSegmentator resamples its liver crop to 0.75 mm, which dominates the runtime.
    """
    k0, j0, i0 = 8, 60, 20  # voxel of the full grid at the block's corner
    hu = ph.hu[k0 : k0 + 24, j0 : j0 + 132 : 2, i0 : i0 + 132 : 2]
    sz, sy, sx = ph.spacing_mm[0], ph.spacing_mm[1] * 2, ph.spacing_mm[2] * 2
    affine = np.eye(4)
    affine[:3, 0] = (0, 0, sz)
    affine[:3, 1] = (0, sy, 0)
    affine[:3, 2] = (sx, 0, 0)
    affine[:3, 3] = ph.index_to_lps([k0, j0, i0])
    return Volume(hu, (sz, sy, sx), affine, (), (), "", "", "", "")


@pytest.mark.skipif(
    not TOTALSEG_PY.exists(),
    reason=f"TotalSegmentator venv not found at {TOTALSEG_PY}: "
    "python3 -m venv .venv-totalseg && .venv-totalseg/bin/pip install torch==2.13.0 && "
    ".venv-totalseg/bin/pip install -r requirements-totalseg.txt -c constraints-totalseg.txt",
)
def test_totalsegmentator_code_path_with_tiny_models(phantom_series, tmp_path):
    weights = tmp_path / "weights"
    subprocess.run(
        [str(TOTALSEG_PY), str(Path(__file__).with_name("tiny_totalseg_models.py")), str(weights)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert missing_totalseg_weights(weights, vessels=True) == []
    plain = TotalSegmentatorBackend(python=TOTALSEG_PY, home_dir=tmp_path / "home", weights_dir=weights)
    # with liver_vessels too (one run checks all three tasks: each TotalSegmentator call costs a minute here)
    backend = TotalSegmentatorBackend(
        python=TOTALSEG_PY, home_dir=tmp_path / "home", weights_dir=weights, threads=2, vessels=True
    )
    assert backend.weights_sha256 != plain.weights_sha256  # model 8 is part of the weights identity
    assert backend.version == "2.18.0"
    assert len(backend.weights_sha256) == 64
    vol = _small_volume(phantom_series.phantom)
    seg = backend.segment(vol, tmp_path / "work")
    assert seg.liver_mask.shape == seg.lesion_mask.shape == vol.shape
    hu = vol.hu.astype(float)
    band = (hu > 40) & (hu < 140)
    liver_only = seg.liver_mask & ~seg.lesion_mask
    d = dice(liver_only, band)
    assert d > 0.85, d
    for axis in range(3):  # a flipped axis would not match nearly as well
        assert d > dice(liver_only, np.flip(band, axis)) + 0.1
    # lesions: HU > 140, but only inside TotalSegmentator's liver crop (bounding box + 10 voxel margin)
    bright = hu > 140
    assert seg.lesion_mask.any()
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(seg.lesion_mask))
    assert dice(seg.lesion_mask[box], bright[box]) > 0.85
    # resampling to 0.75 mm and back blurs edges: a few boundary voxels may fall below the band
    assert (seg.lesion_mask & (hu < 100)).sum() < 0.05 * seg.lesion_mask.sum()
    config = json.loads((tmp_path / "home" / "config.json").read_text())
    assert config["send_usage_stats"] is False
    assert seg.info["totalsegmentator_version"] == "2.18.0"
    assert set(seg.info["timings_s"]) == {"total_fast", "liver_lesions", "liver_vessels"}
    # liver_vessels: the tiny model 8 marks HU > 140 inside the liver crop, as model 591 does
    assert seg.vessel_mask is not None and seg.vessel_mask.any()
    vbox = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(seg.vessel_mask))
    dv = dice(seg.vessel_mask[vbox], bright[vbox])
    assert dv > 0.85, dv
    for axis in range(3):
        assert dv > dice(seg.vessel_mask[vbox], np.flip(bright, axis)[vbox]) + 0.1
