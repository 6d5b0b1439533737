"""Dice / HD95 on masks with known answers, per-lesion rows and the stratum summary, standalone AUC."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference.pipeline.evaluate import (
    case_metrics,
    dice,
    hd95,
    per_lesion_metrics,
    standalone_auc,
    summarise_by_stratum,
)


def _cube(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return m


def test_dice_and_hd95_known_values():
    a = _cube((20, 40, 40), (5, 10, 10), (15, 20, 20))
    b = _cube((20, 40, 40), (5, 10, 12), (15, 20, 22))  # shifted 2 voxels along x
    assert dice(a, b) == pytest.approx(0.8)
    assert hd95(a, b, (2.0, 0.5, 0.5)) == pytest.approx(1.0)  # 2 voxels * 0.5 mm
    assert hd95(a, b, (1.0, 1.0, 3.0)) == pytest.approx(6.0)
    assert hd95(a, a, (1, 1, 1)) == 0.0
    assert math.isinf(hd95(a, np.zeros_like(a), (1, 1, 1)))
    assert math.isnan(hd95(np.zeros_like(a), np.zeros_like(a), (1, 1, 1)))
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0
    m = case_metrics(a, b, a, a, (1, 1, 1))
    assert m["dice_liver"] == 1.0 and m["dice_lesions"] == pytest.approx(0.8)


def test_per_lesion_rows_and_strata():
    truth = np.zeros((10, 60, 60), np.uint8)
    truth[2:6, 5:11, 5:11] = 1  # 6 px = 6 mm
    truth[2:8, 20:40, 20:40] = 2  # 20 px square: diagonal 19 * sqrt(2) = 26.9 mm
    truth[2:4, 50:53, 50:53] = 3  # missed
    pred = np.zeros(truth.shape, bool)
    pred[2:6, 5:11, 5:11] = True
    pred[2:8, 20:40, 22:42] = True
    rows = per_lesion_metrics(pred, truth, (1.0, 1.0, 1.0), bins=(10, 30))
    assert [r["lesion"] for r in rows] == [1, 2, 3]
    assert rows[0]["dice"] == 1.0 and rows[0]["stratum"] == "<=10"
    assert rows[1]["stratum"] == "10-30" and rows[1]["dice"] == pytest.approx(0.9)
    assert rows[1]["diameter_mm"] == pytest.approx(19 * np.sqrt(2), abs=0.01)
    assert 0.0 < rows[1]["hd95_mm"] <= 2.0
    assert not rows[2]["detected"] and rows[2]["dice"] == 0.0
    summary = summarise_by_stratum(rows, (10, 30))
    assert summary["<=10"]["n"] == 2 and summary["<=10"]["detection_rate"] == 0.5
    assert summary[">30"] == {"n": 0}
    assert summary["all"]["n"] == 3
    manifest = per_lesion_metrics(pred, truth, (1, 1, 1), truth_diameters_mm=[6.0, 31.0, 3.0])
    assert [r["stratum"] for r in manifest] == ["<=10", ">30", "<=10"]


def test_standalone_auc_uses_readerstudy_analysis():
    truth = [1, 1, 1, 0, 0, 0, 1, 0]
    scores = [0.9, 0.8, 0.4, 0.3, 0.2, 0.5, 0.7, 0.1]
    out = standalone_auc(truth, scores, patients=["a", "a", "b", "b", "c", "c", "d", "d"])
    assert out["auc"] == pytest.approx(15 / 16)
    assert out["ci"][0] < out["auc"] <= out["ci"][1] <= 1.0
