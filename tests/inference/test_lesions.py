"""Lesion instances: diameters against phantoms of known size, volumes, centroids, rim lesions, matching."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.phantom import max_axial_diameter_mm as phantom_diameter
from imaging.series import read_series
from inference.pipeline.lesions import Lesion, find_lesions, match_targets, max_axial_diameter_mm
from readerstudy.analysis.strata import size_stratum


def test_diameters_match_phantom_specs_within_one_voxel(phantom_series):
    ph = phantom_series.phantom
    vol = read_series(phantom_series.folder)
    lesions, labels = find_lesions(ph.lesion_labels > 0, ph.liver_mask, vol.spacing_mm, vol.affine)
    assert len(lesions) == len(ph.lesions) == 3
    px = ph.spacing_mm[1]
    voxel_ml = np.prod(ph.spacing_mm) / 1000
    for spec in ph.lesions:
        # the lesion whose centroid is nearest to the spec centre
        le = min(lesions, key=lambda le: np.linalg.norm(np.subtract(le.centroid_lps_mm, spec.center_lps_mm)))
        assert abs(le.diameter_mm - spec.diameter_mm) <= px, (le, spec)
        assert spec.diameter_mm - px <= le.diameter_mm <= spec.diameter_mm
        assert le.diameter_extent_mm == pytest.approx(le.diameter_mm + px)
        assert np.linalg.norm(np.subtract(le.centroid_lps_mm, spec.center_lps_mm)) < 2 * px
        assert le.volume_ml == pytest.approx(le.n_voxels * voxel_ml)
        assert le.volume_ml == pytest.approx(int((labels == le.label).sum()) * voxel_ml)
        # same convention as the phantom's own measure
        assert le.diameter_mm == pytest.approx(phantom_diameter(labels == le.label, ph.spacing_mm), abs=0.01)
    # sorted by volume, labels 1..n in that order
    assert [le.label for le in lesions] == [1, 2, 3]
    assert lesions[0].volume_ml >= lesions[1].volume_ml >= lesions[2].volume_ml
    assert {size_stratum(le.diameter_mm) for le in lesions} == {"<=10", "10-30"}  # derived, not a lesion field
    assert not hasattr(lesions[0], "stratum")


def test_diameter_of_a_disc():
    mask = np.zeros((3, 64, 64), bool)
    jj, ii = np.mgrid[:64, :64]
    mask[1] = (jj - 32) ** 2 + (ii - 32) ** 2 <= 10**2  # centre-to-centre diameter 20 px
    assert max_axial_diameter_mm(mask, (2.0, 0.5, 0.5)) == pytest.approx(10.0)
    # anisotropic pixels: a 21 x 11 px rectangle, 0.5 x 1.0 mm -> diagonal of 10 x 10 mm
    rect = np.zeros((1, 40, 40), bool)
    rect[0, 5:26, 5:16] = True
    assert max_axial_diameter_mm(rect, (1.0, 0.5, 1.0)) == pytest.approx(np.hypot(10.0, 10.0))


def test_rim_lesions_count_and_outside_ones_do_not():
    spacing = (2.0, 1.0, 1.0)
    liver = np.zeros((10, 80, 80), bool)
    liver[:, 10:50, 10:50] = True
    lesion = np.zeros_like(liver)
    lesion[4:7, 45:53, 25:33] = True  # straddles the liver edge (rim lesion), 3 voxels outside
    lesion[4:7, 65:72, 65:72] = True  # 15 mm away from the liver
    lesions, labels = find_lesions(lesion, liver, spacing, np.eye(4), liver_margin_mm=3.0)
    assert len(lesions) == 1
    assert labels[5, 60, 60] == 0 and labels[5, 47, 28] == 1
    # the rim lesion keeps its outside part (the restriction is to the dilated liver)
    assert lesions[0].n_voxels == 3 * 8 * 8


def test_small_components_are_dropped():
    liver = np.ones((5, 20, 20), bool)
    lesion = np.zeros_like(liver)
    lesion[2, 5, 5] = True
    assert find_lesions(lesion, liver, (1.0, 1.0, 1.0), np.eye(4), min_volume_mm3=2.0)[0] == []
    assert len(find_lesions(lesion, liver, (3.0, 1.0, 1.0), np.eye(4), min_volume_mm3=2.0)[0]) == 1


def _lesion(label: int, centre: tuple[float, float, float], diameter: float = 10.0) -> Lesion:
    return Lesion(label, 10, 0.1, diameter, diameter + 1, (0.0, 0.0, 0.0), centre, (0, 0))


def test_match_targets_one_to_one_and_unmatched_both_ways():
    lesions = [_lesion(1, (0, 0, 0)), _lesion(2, (30, 0, 0)), _lesion(3, (100, 100, 100))]
    targets = [(2, 0, 0), (28, 1, 0), (0, 3, 0), (-60, 0, 0)]
    res = match_targets(lesions, targets, tolerance_mm=5.0)
    assert [(t, le) for t, le, _ in res.matches] == [(0, 0), (1, 1)]
    assert res.matches[0][2] == pytest.approx(2.0)
    assert res.unmatched_targets == [2, 3]  # target 2 lost lesion 0 to the nearer target 0
    assert res.unmatched_lesions == [2]
    assert res.lesion_for(1) == 1 and res.lesion_for(3) is None


def test_match_uses_half_the_diameter_for_large_lesions():
    big = _lesion(1, (0, 0, 0), diameter=40.0)
    assert match_targets([big], [(15, 0, 0)], tolerance_mm=5.0).lesion_for(0) == 0
    assert match_targets([big], [(25, 0, 0)], tolerance_mm=5.0).lesion_for(0) is None
    empty = match_targets([], [(0, 0, 0)], 5.0)
    assert empty.matches == [] and empty.unmatched_targets == [0]
