"""Reference masks onto a series' grid: NIfTI in any axis order and direction, DICOM SEG by geometry, .npz."""

from __future__ import annotations

import numpy as np
import pytest

from imaging.series import read_series
from inference.pipeline.reference_masks import (
    ReferenceMaskError,
    SeriesGrid,
    align_to_grid,
    load_masks,
    read_nifti,
    read_seg_masks,
    series_affine,
)


def _grid():
    affine = np.eye(4)
    affine[:3, 0] = (0, 0, 2.5)  # k: superior
    affine[:3, 1] = (0, 0.8, 0)  # j: posterior
    affine[:3, 2] = (0.8, 0, 0)  # i: left
    affine[:3, 3] = (-100.0, -120.0, 30.0)
    return SeriesGrid((12, 20, 16), affine)


def _labels(shape, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) > 0.7).astype(np.uint8) * rng.integers(1, 4, shape).astype(np.uint8)


def test_series_affine_matches_the_reader(phantom_series):
    vol = read_series(phantom_series.folder)
    ds = vol.headers[0]
    affine = series_affine(ds.ImageOrientationPatient, ds.ImagePositionPatient, ds.PixelSpacing, vol.spacing_mm[0])
    np.testing.assert_allclose(affine, vol.affine, atol=1e-6)
    assert SeriesGrid(vol.shape, affine).spacing_mm == pytest.approx(vol.spacing_mm)


def test_nifti_written_like_totalsegmentator_comes_back_on_the_grid(tmp_path):
    import nibabel as nib

    grid = _grid()
    labels = _labels(grid.shape)
    ras_ijk = np.diag([-1.0, -1.0, 1.0, 1.0]) @ grid.affine[:, [2, 1, 0, 3]]  # [x, y, z] array, RAS
    nib.save(nib.Nifti1Image(labels.transpose(2, 1, 0).copy(), ras_ijk), tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(read_nifti(tmp_path / "a.nii.gz", grid), labels)
    # the same voxels reoriented to RAS+ (as dcm2niix / nibabel.as_closest_canonical do): still the same grid
    img = nib.as_closest_canonical(nib.load(tmp_path / "a.nii.gz"))
    assert not np.allclose(img.affine, ras_ijk)
    nib.save(img, tmp_path / "canonical.nii.gz")
    np.testing.assert_array_equal(read_nifti(tmp_path / "canonical.nii.gz", grid), labels)


def test_align_partial_flipped_and_refused_grids():
    grid = _grid()
    labels = _labels(grid.shape, seed=2)
    block = labels[3:9, 5:15, 2:10]
    # the block, flipped along k, with its own affine: lands at its place
    affine = grid.affine.copy()
    affine[:3, 3] = grid.affine[:3, :3] @ np.array([8, 5, 2]) + grid.affine[:3, 3]
    affine[:3, 0] *= -1
    out = align_to_grid(block[::-1], affine, grid)
    expected = np.zeros_like(labels)
    expected[3:9, 5:15, 2:10] = block
    np.testing.assert_array_equal(out, expected)
    shifted = grid.affine.copy()
    shifted[:3, 3] += (0.4, 0, 0)  # half a voxel along i
    with pytest.raises(ReferenceMaskError, match="does not coincide"):
        align_to_grid(labels, shifted, grid)
    outside = grid.affine.copy()
    outside[:3, 3] += grid.affine[:3, 2] * 4  # 4 columns to the right: the last columns fall off the grid
    with pytest.raises(ReferenceMaskError, match="outside the series"):
        align_to_grid(np.ones(grid.shape, np.uint8), outside, grid)


def test_dicom_seg_by_geometry(phantom_series, tmp_path):
    from inference.pipeline.lesions import find_lesions
    from inference.pipeline.seg import make_dicom_seg

    vol = read_series(phantom_series.folder)
    ph = phantom_series.phantom
    lesions, instances = find_lesions(ph.lesion_labels > 0, ph.liver_mask, vol.spacing_mm, vol.affine)
    data = make_dicom_seg(
        vol, ph.liver_mask, instances, lesions, 1, algorithm_name="test", algorithm_version="1", uid_seed="x"
    )
    (tmp_path / "P001.dcm").write_bytes(data)
    grid = SeriesGrid(vol.shape, vol.affine)
    masks = read_seg_masks(tmp_path / "P001.dcm", grid)
    assert set(masks) == {"liver", "lesions"}
    np.testing.assert_array_equal(masks["liver"], ph.liver_mask)
    # one segment per lesion: the SEG's lesion instances are find_lesions' (same order)
    np.testing.assert_array_equal(masks["lesions"], instances)
    assert load_masks(tmp_path, "P001", grid) is not None
    assert load_masks(tmp_path, "P002", grid) is None


def test_load_masks_layouts(tmp_path):
    import nibabel as nib

    grid = _grid()
    ras_ijk = np.diag([-1.0, -1.0, 1.0, 1.0]) @ grid.affine[:, [2, 1, 0, 3]]
    liver = np.zeros(grid.shape, bool)
    liver[2:10, 3:17, 3:13] = True
    lesions = np.zeros(grid.shape, np.uint8)
    lesions[4:6, 5:8, 5:8] = 1
    lesions[4:6, 12:15, 9:12] = 1  # binary: two components become two instances
    vessels = np.zeros(grid.shape, bool)
    vessels[:, 10, 6] = True

    def nii(array, path):
        nib.save(nib.Nifti1Image(np.asarray(array, np.uint8).transpose(2, 1, 0).copy(), ras_ijk), path)

    (tmp_path / "P1").mkdir()
    for name, array in (("liver", liver), ("lesions", lesions), ("vessels", vessels)):
        nii(array, tmp_path / "P1" / f"{name}.nii.gz")
    masks = load_masks(tmp_path, "P1", grid)
    assert masks is not None and set(masks) == {"liver", "lesions", "vessels"}
    assert masks["lesions"].max() == 2 and (masks["lesions"] > 0).sum() == lesions.sum()
    np.testing.assert_array_equal(masks["vessels"], vessels)
    # TotalSegmentator's output names (liver_vessels task: liver_vessels.nii.gz beside liver_tumor.nii.gz)
    (tmp_path / "TS").mkdir()
    nii(vessels, tmp_path / "TS" / "liver_vessels.nii.gz")
    nii(lesions, tmp_path / "TS" / "liver_tumor.nii.gz")  # not our lesions: ignored
    masks = load_masks(tmp_path, "TS", grid)
    assert masks is not None and set(masks) == {"vessels"}
    np.testing.assert_array_equal(masks["vessels"], vessels)
    # one labelmap: 1 liver, 2 lesion, 3 vessel; the liver is 1 and 2
    labelmap = liver.astype(np.uint8)
    labelmap[lesions > 0] = 2
    labelmap[vessels & ~liver] = 3
    nii(labelmap, tmp_path / "P2.nii.gz")
    masks = load_masks(tmp_path, "P2", grid)
    assert masks is not None
    np.testing.assert_array_equal(masks["liver"], liver)
    assert masks["lesions"].max() == 2
    np.testing.assert_array_equal(masks["vessels"], vessels & ~liver)
    # .npz wins, on the grid already; a wrong shape is refused
    np.savez(tmp_path / "P3.npz", liver_mask=liver, lesion_labels=lesions, vessel_mask=vessels)
    masks = load_masks(tmp_path, "P3", grid)
    assert masks is not None and set(masks) == {"liver", "lesions", "vessels"}
    np.savez(tmp_path / "P4.npz", liver_mask=liver[1:])
    with pytest.raises(ReferenceMaskError, match="shape"):
        load_masks(tmp_path, "P4", grid)
