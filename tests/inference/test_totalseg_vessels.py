"""TotalSegmentator's liver_vessels task as an opt-in of the backend: the weights it requires and its error. The
real code path with a tiny model 8 runs in test_totalseg.py's tiny-model test (one TotalSegmentator run for all
three tasks)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from inference.pipeline.segment import (
    TOTALSEG_VESSEL_MODEL,
    Segmentation,
    TotalSegmentatorBackend,
    TotalSegmentatorError,
    missing_totalseg_weights,
)


def test_vessel_model_is_required_only_when_asked(tmp_path):
    dataset, trainer, _ = TOTALSEG_VESSEL_MODEL[8]
    assert not any(m.startswith(dataset) for m in missing_totalseg_weights(tmp_path))
    assert f"{dataset}/{trainer}/fold_0/checkpoint_final.pth" in missing_totalseg_weights(tmp_path, vessels=True)
    with pytest.raises(TotalSegmentatorError, match="totalseg_download_weights -t liver_vessels") as exc:
        TotalSegmentatorBackend(python=Path(sys.executable), weights_dir=tmp_path, vessels=True)
    assert "Dataset008_HepaticVessel" in str(exc.value)
    with pytest.raises(ValueError, match="vessel mask"):
        Segmentation(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), bool), vessel_mask=np.zeros((2, 2, 3), bool))
