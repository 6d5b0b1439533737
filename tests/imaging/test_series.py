"""DICOM ingest: sorting, geometry, HU, validation errors, blank-UID repair on the real JPEG 2000 example."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from imaging.series import DicomSeriesError, read_series


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_synthetic_series_volume_matches_phantom(phantom_series):
    vol = read_series(phantom_series.folder)
    ph = phantom_series.phantom
    assert vol.shape == ph.shape
    assert vol.hu.dtype == np.int16
    np.testing.assert_array_equal(vol.hu, ph.hu)
    np.testing.assert_allclose(vol.spacing_mm, ph.spacing_mm)
    # the affine maps voxel indices exactly like the phantom's geometry
    idx = np.array([[0, 0, 0], [39, 255, 255], [12.5, 100.0, 30.25]])
    np.testing.assert_allclose(vol.index_to_lps(idx), ph.index_to_lps(idx), atol=1e-3)
    np.testing.assert_allclose(vol.lps_to_index(ph.index_to_lps(idx)), idx, atol=1e-6)
    assert vol.notes == ()
    assert len(vol.sop_instance_uids) == len(set(vol.sop_instance_uids)) == ph.shape[0]
    assert [p.name for p in vol.paths] == [f"{k:04d}.dcm" for k in range(1, ph.shape[0] + 1)]


def test_sort_ignores_file_names(phantom_series, tmp_path):
    folder = tmp_path / "shuffled"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = rng.permutation(len(phantom_series.paths))
    for p, n in zip(phantom_series.paths, names, strict=True):
        shutil.copy(p, folder / f"img{n:03d}")
    vol = read_series(folder)
    np.testing.assert_array_equal(vol.hu, phantom_series.phantom.hu)
    z = [float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in vol.paths]
    assert z == sorted(z)


def test_missing_slice_is_named(phantom_series, tmp_path):
    folder = _copy(phantom_series.folder, tmp_path / "gap")
    (folder / "0011.dcm").unlink()
    with pytest.raises(DicomSeriesError, match=r"uneven slice spacing: 5\.000 mm between 0010\.dcm and 0012\.dcm"):
        read_series(folder)


def test_non_dicom_file_is_named(phantom_series, tmp_path):
    folder = _copy(phantom_series.folder, tmp_path / "junk")
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(DicomSeriesError, match=r"notes\.txt: not a readable DICOM file"):
        read_series(folder)


def test_two_series_in_one_folder(phantom_series, tmp_path):
    folder = _copy(phantom_series.folder, tmp_path / "mixed")
    ds = pydicom.dcmread(folder / "0005.dcm")
    ds.SeriesInstanceUID = "1.2.3.4.5"
    ds.save_as(folder / "0005.dcm")
    with pytest.raises(DicomSeriesError, match=r"2 series in one folder"):
        read_series(folder)


def test_inconsistent_geometry(phantom_series, tmp_path):
    folder = _copy(phantom_series.folder, tmp_path / "tilted")
    ds = pydicom.dcmread(folder / "0007.dcm")
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0.9848078, 0.1736482]
    ds.save_as(folder / "0007.dcm")
    with pytest.raises(DicomSeriesError, match=r"0007\.dcm: ImageOrientationPatient .* differs"):
        read_series(folder)
    folder2 = _copy(phantom_series.folder, tmp_path / "spacing")
    ds = pydicom.dcmread(folder2 / "0003.dcm")
    ds.PixelSpacing = [1.4, 1.4]
    ds.save_as(folder2 / "0003.dcm")
    with pytest.raises(DicomSeriesError, match=r"0003\.dcm: PixelSpacing .* differs"):
        read_series(folder2)


def test_wrong_modality(phantom_series, tmp_path):
    folder = _copy(phantom_series.folder, tmp_path / "mr")
    ds = pydicom.dcmread(folder / "0001.dcm")
    ds.Modality = "MR"
    ds.save_as(folder / "0001.dcm")
    with pytest.raises(DicomSeriesError, match=r"0001\.dcm: Modality 'MR'"):
        read_series(folder)


def test_real_jpeg2000_series_with_blank_uids(totalseg_example):
    vol = read_series(totalseg_example)
    assert vol.shape == (20, 512, 512)
    np.testing.assert_allclose(vol.spacing_mm, (2.0, 0.9765625, 0.9765625))
    assert vol.hu.dtype == np.int16
    assert -1024 <= vol.hu.min() and 1000 < vol.hu.max() < 3072
    # soft tissue in the middle of the abdomen, air in the corner
    assert vol.hu[10, 0:20, 0:20].mean() < -900
    assert -200 < np.median(vol.hu[10, 200:300, 200:300]) < 200
    # slices ascend along the normal (+z): the first slice is the most inferior
    assert vol.index_to_lps([0, 0, 0])[2] == pytest.approx(-804.5)
    assert vol.index_to_lps([19, 0, 0])[2] == pytest.approx(-766.5)
    notes = "\n".join(vol.notes)
    assert "SOPClassUID blank in 20 file(s): set from the file meta's MediaStorageSOPClassUID" in notes
    assert "SOPInstanceUID blank in 20 file(s): set from the file meta's MediaStorageSOPInstanceUID" in notes
    assert "SeriesInstanceUID blank in all 20 files" in notes
    assert "StudyInstanceUID blank in all 20 files" in notes
    assert vol.sop_class_uid == pydicom.uid.CTImageStorage
    assert vol.series_instance_uid.startswith("2.25.")
    again = read_series(totalseg_example)
    assert again.sop_instance_uids == vol.sop_instance_uids
    assert (again.series_instance_uid, again.study_instance_uid) == (vol.series_instance_uid, vol.study_instance_uid)
    with pytest.raises(DicomSeriesError, match=r"blank or invalid SOPClassUID in 20 file\(s\)"):
        read_series(totalseg_example, repair=False)


def test_blank_uids_without_file_meta_are_hashed(phantom_series, tmp_path):
    folder = _copy(phantom_series.folder, tmp_path / "blank")
    for p in sorted(folder.iterdir()):
        ds = pydicom.dcmread(p)
        ds.SOPInstanceUID = ""
        ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"  # the same for all: unusable
        ds.save_as(p)
    vol = read_series(folder)
    assert any("hash of each file's bytes" in n for n in vol.notes)
    assert len(set(vol.sop_instance_uids)) == len(vol.sop_instance_uids)
    assert read_series(folder).sop_instance_uids == vol.sop_instance_uids
