"""Segmentation metrics on shapes with known answers; the lesion matching rule; the stratum summary."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from inference.pipeline.seg_evaluation import (
    evaluate_case,
    lesion_rows,
    match_lesions,
    nan_to_none,
    segmentation_report,
)
from inference.pipeline.seg_metrics import (
    betti_numbers,
    cldice,
    dice,
    hd95,
    nsd,
    structure_metrics,
)


def ball(shape, centre, radius_mm, spacing=(1.0, 1.0, 1.0)):
    g = np.indices(shape, dtype=float)
    return sum(((g[i] - centre[i]) * spacing[i]) ** 2 for i in range(3)) <= radius_mm**2


def torus(shape=(24, 40, 40), major=10.0, minor=4.0, centre=None):
    centre = (np.array(shape) - 1) / 2 if centre is None else np.asarray(centre, float)
    z, y, x = (np.indices(shape, dtype=float).T - centre).T
    return (np.sqrt(y**2 + x**2) - major) ** 2 + z**2 <= minor**2


def tube(length=60, radius=3.0):
    m = np.zeros((length + 10, 20, 20), bool)
    m[5 : 5 + length] = ball((1, 20, 20), (0, 10, 10), radius)
    return m


def test_identical_masks_agree_perfectly():
    t = torus()
    m = structure_metrics(t, t, (1.0, 0.7, 0.7))
    assert m["dice"] == 1.0 and m["hd95_mm"] == 0.0 and m["nsd"] == 1.0 and m["cldice"] == 1.0
    assert m["b0_error"] == m["b1_error"] == m["b2_error"] == 0
    assert m["betti_pred"] == m["betti_ref"] == [1, 1, 0]


@pytest.mark.parametrize(
    ("spacing", "shape", "r1", "r2"),
    [((1.0, 1.0, 1.0), (40, 40, 40), 8.0, 12.0), ((2.5, 0.8, 0.8), (40, 80, 80), 10.0, 16.0)],
)
def test_concentric_spheres(spacing, shape, r1, r2):
    centre = [s // 2 for s in shape]
    a, b = ball(shape, centre, r1, spacing), ball(shape, centre, r2, spacing)
    # Dice of nested spheres: 2 V1 / (V1 + V2); voxelisation error well under 1 %
    assert dice(a, b) == pytest.approx(2 * r1**3 / (r1**3 + r2**3), rel=0.01)
    # every surface point is r2 - r1 from the other surface; the border voxels lie within one voxel of it
    assert abs(hd95(a, b, spacing) - (r2 - r1)) <= max(spacing)
    assert hd95(b, a, spacing) == pytest.approx(hd95(a, b, spacing))
    # NSD: all of both surfaces within a tolerance beyond the gap, none within one well short of it
    assert nsd(a, b, spacing, tolerance_mm=(r2 - r1) + max(spacing)) == 1.0
    assert nsd(a, b, spacing, tolerance_mm=(r2 - r1) / 2) == 0.0
    # both skeletons are the centre voxel, inside either ball; no topological difference
    m = structure_metrics(a, b, spacing)
    assert m["cldice"] == 1.0 and m["b0_error"] == m["b1_error"] == m["b2_error"] == 0


def test_betti_numbers_of_known_shapes():
    assert betti_numbers(torus()) == (1, 1, 0)
    shell = ball((30, 30, 30), (15, 15, 15), 12) & ~ball((30, 30, 30), (15, 15, 15), 7)
    assert betti_numbers(shell) == (1, 0, 1)
    cubes = np.zeros((30, 30, 30), bool)
    cubes[2:10, 2:10, 2:10] = cubes[15:25, 15:25, 15:25] = True
    assert betti_numbers(cubes) == (2, 0, 0)
    # two tori whose rings overlap: the solid of a genus-2 surface (two handles)
    two = torus((24, 40, 64), centre=(11.5, 19.5, 19.5)) | torus((24, 40, 64), centre=(11.5, 19.5, 43.5))
    assert betti_numbers(two) == (1, 2, 0)
    # a solid cube with a tunnel drilled through and a cavity elsewhere: b1 = 1, b2 = 1
    block = np.ones((20, 20, 20), bool)
    block[8:12, 8:12, :] = False  # tunnel along x
    block[2:5, 2:5, 2:5] = False  # closed cavity
    assert betti_numbers(block) == (1, 1, 1)
    # 26-connectivity: cubes touching at one corner are one component
    corner = np.zeros((10, 10, 10), bool)
    corner[1:4, 1:4, 1:4] = corner[4:7, 4:7, 4:7] = True
    assert betti_numbers(corner) == (1, 0, 0)
    assert betti_numbers(np.zeros((5, 5, 5), bool)) == (0, 0, 0)


def test_broken_tube_loses_centreline_and_gains_a_component():
    ref = tube()
    pred = ref.copy()
    pred[33:38] = False  # a 5-voxel gap in the middle
    m = structure_metrics(pred, ref, (1.0, 1.0, 1.0))
    assert 0.8 < m["cldice"] < 1.0
    # the prediction's skeleton lies inside the reference (Tprec = 1): the loss is the gap's share of the centreline
    assert m["betti_pred"] == [2, 0, 0] and m["betti_ref"] == [1, 0, 0]
    assert m["b0_error"] == 1 and m["b1_error"] == m["b2_error"] == 0
    assert m["dice"] > m["cldice"] - 0.05  # Dice barely notices a gap that cuts the vessel in two
    assert cldice(ref, ref) == 1.0


def test_empty_masks():
    ref = ball((20, 20, 20), (10, 10, 10), 5)
    empty = np.zeros_like(ref)
    m = structure_metrics(empty, ref, (1.0, 1.0, 1.0))
    assert m["dice"] == 0.0 and m["nsd"] == 0.0 and m["cldice"] == 0.0
    assert math.isinf(m["hd95_mm"])  # missed entirely; JSON: null
    assert m["b0_error"] == 1
    both = structure_metrics(empty, empty, (1.0, 1.0, 1.0))
    assert both["dice"] == 1.0 and both["cldice"] == 1.0 and both["b0_error"] == 0
    assert math.isnan(both["hd95_mm"]) and math.isnan(both["nsd"])
    assert nan_to_none({"a": [math.inf, math.nan, 1.5]}) == {"a": [None, None, 1.5]}


def _three_lesions():
    """Reference lesions of 6 mm, 20 mm and 40 mm (one per stratum) at 1 mm voxels, and one 4 mm lesion."""
    shape = (50, 120, 120)
    ref = np.zeros(shape, np.uint8)
    ref[ball(shape, (25, 20, 20), 3)] = 1
    ref[ball(shape, (25, 60, 25), 10)] = 2
    ref[ball(shape, (25, 60, 85), 20)] = 3
    ref[ball(shape, (25, 110, 110), 2)] = 4
    return ref


def test_lesion_matching_rule():
    ref = _three_lesions()
    pred = ref == 1  # lesion 1 exactly
    pred = pred | (ref == 2) | (ref == 3)
    pred[24:27, 58:63, 30:70] = True  # a bridge merging lesions 2 and 3 into one component
    pred[5:8, 100:104, 10:14] = True  # a false positive
    # lesion 4 missed
    assigned, comps, fps = match_lesions(pred, ref, (1.0, 1.0, 1.0))
    assert len(fps) == 1 and comps.max() == 3
    # the merged component is split between lesions 2 and 3 by nearest lesion; none of it is left unassigned
    assert set(np.unique(assigned[24:27, 58:63, 30:70])) <= {2, 3}
    assert ((assigned > 0) == (pred & (comps != fps[0]))).all()
    rows, fp_rows = lesion_rows(pred, ref, (1.0, 1.0, 1.0), bins=(10, 30))
    by = {r["lesion"]: r for r in rows}
    assert [by[n]["stratum"] for n in (1, 2, 3, 4)] == ["<=10", "10-30", ">30", "<=10"]
    assert by[1]["dice"] == 1.0 and by[1]["hd95_mm"] == 0.0
    assert by[2]["detected"] and by[3]["detected"] and 0.9 < by[3]["dice"] < 1.0
    assert not by[4]["detected"] and by[4]["dice"] == 0.0 and math.isinf(by[4]["hd95_mm"])
    assert fp_rows == [{"diameter_mm": 4.24, "stratum": "<=10", "voxels": 48}]  # 4x4 voxels: diagonal 3 sqrt(2)
    # manifest diameters decide the stratum when given
    rows, _ = lesion_rows(pred, ref, (1.0, 1.0, 1.0), ref_diameters_mm={2: 31.0}, topology=False)
    assert rows[1]["stratum"] == ">30" and "cldice" not in rows[1]


def test_report_by_stratum_and_structures():
    ref = _three_lesions()
    liver = np.zeros(ref.shape, bool)
    liver[5:45, 5:115, 5:115] = True
    pred_lesions = (ref == 1) | (ref == 3)
    case = evaluate_case(
        {"liver": liver, "lesions": pred_lesions, "vessels": None},
        {"liver": liver, "lesions": ref, "vessels": None},
        (1.0, 1.0, 1.0),
    )
    assert set(case["structures"]) == {"liver", "lesions"} and case["skipped"] == {}
    assert case["structures"]["liver"]["dice"] == 1.0
    report = segmentation_report({"P001": case, "P002": case})
    strata = report["lesions_by_stratum"]
    assert strata["<=10"]["n"] == 4 and strata["<=10"]["detection_rate"] == 0.5
    assert strata["10-30"] == {
        "n": 2,
        "detected": 0,
        "detection_rate": 0.0,
        "false_positives": 0,
        "dice_mean": 0.0,
        "dice_median": 0.0,
        "nsd_mean": 0.0,
        "nsd_median": 0.0,
        "cldice_mean": 0.0,
        "cldice_median": 0.0,
        "b0_error_mean": 1.0,
        "b0_error_median": 1.0,
        "b1_error_mean": 0.0,
        "b1_error_median": 0.0,
        "b2_error_mean": 0.0,
        "b2_error_median": 0.0,
    }
    assert strata[">30"]["dice_mean"] == 1.0 and strata["all"]["n"] == 8
    assert report["structures"]["liver"]["n_cases"] == 2
    assert report["nsd_tolerance_mm"] == 2.0
    json.dumps(nan_to_none(report), allow_nan=False)
    skipped = evaluate_case({"liver": liver, "vessels": None}, {"liver": liver, "vessels": liver}, (1, 1, 1))
    assert skipped["skipped"] == {"vessels": "no prediction"}
