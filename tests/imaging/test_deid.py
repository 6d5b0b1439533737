"""De-identification: no PHI survives anywhere (sequences included), UIDs remap consistently, SEG references resolve."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from imaging.deid import ACTIONS, DeidError, date_offset_days, deidentify_series, remap_uid
from imaging.headers import probe_series
from imaging.series import read_series

PHI = [
    "DOE^JANE",
    "MRN-8675309",
    "OTHER-ID-42",
    "19610203",
    "221B Baker Street",
    "St. Elsewhere Hospital",
    "Radiology Dept North",
    "HOUSE^GREGORY",
    "WATSON^JOHN",
    "ACC-2024-0001",
    "SN-XR-99",
    "CT-STATION-7",
    "REQ-777",
    "SPS-555",
    "SECRET-PRIVATE",
    "NESTED-SECRET",
    "Patient is claustrophobic",
    "+41 61 000 00 00",
    "jane.doe@example.org",
    "Jane's liver protocol",
]
STUDY_DATE = "20240315"


def _item(**kw) -> Dataset:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def _add_phi(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    files = sorted(dst.glob("*.dcm"))
    first_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SOPInstanceUID)
    for n, p in enumerate(files):
        ds = pydicom.dcmread(p)
        ds.PatientName = "DOE^JANE"
        ds.PatientID = "MRN-8675309"
        ds.PatientBirthDate = "19610203"
        ds.PatientAddress = "221B Baker Street"
        ds.PatientTelephoneNumbers = "+41 61 000 00 00"
        ds.PatientComments = "Patient is claustrophobic"
        ds.OtherPatientIDsSequence = Sequence(
            [_item(PatientID="OTHER-ID-42", IssuerOfPatientID="St. Elsewhere Hospital")]
        )
        ds.InstitutionName = "St. Elsewhere Hospital"
        ds.InstitutionAddress = "221B Baker Street"
        ds.InstitutionalDepartmentName = "Radiology Dept North"
        ds.ReferringPhysicianName = "HOUSE^GREGORY"
        ds.PerformingPhysicianName = "WATSON^JOHN"
        ds.OperatorsName = "WATSON^JOHN"
        ds.AccessionNumber = "ACC-2024-0001"
        ds.DeviceSerialNumber = "SN-XR-99"
        ds.StationName = "CT-STATION-7"
        ds.ProtocolName = "Jane's liver protocol"
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = STUDY_DATE
        ds.AcquisitionDateTime = STUDY_DATE + "101500.000"
        ds.RequestAttributesSequence = Sequence(
            [_item(RequestedProcedureID="REQ-777", ScheduledProcedureStepID="SPS-555")]
        )
        # a standard sequence that is kept, carrying a nested name, e-mail and a private element
        code = _item(CodeValue="X1", CodingSchemeDesignator="99LOCAL", CodeMeaning="portal venous")
        code.add_new(0x00091010, "LO", "NESTED-SECRET")
        ds.ProcedureCodeSequence = Sequence([code])
        ds.ReferencedImageSequence = Sequence(
            [_item(ReferencedSOPClassUID=pydicom.uid.CTImageStorage, ReferencedSOPInstanceUID=first_uid)]
        )
        ds.ContentSequence = Sequence([_item(PersonName="HOUSE^GREGORY", TextValue="ok")])
        ds.add_new(0x00111010, "LO", "ACME PRIVATE")
        ds.add_new(0x00111011, "LO", "SECRET-PRIVATE")
        ds.VisitComments = "jane.doe@example.org"
        ds.InstanceNumber = n + 1
        ds.save_as(p)
    return dst


def _walk_values(ds: Dataset):
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk_values(item)


@pytest.fixture(scope="module")
def phi_series(phantom_series, tmp_path_factory) -> Path:
    return _add_phi(phantom_series.folder, tmp_path_factory.mktemp("phi") / "series")


@pytest.fixture(scope="module")
def deid(phi_series, tmp_path_factory):
    out = tmp_path_factory.mktemp("deid") / "out"
    return deidentify_series(phi_series, out, "P042", "test-salt"), out


def test_no_phi_survives(deid, phi_series):
    report, _ = deid
    assert len(report.files) == len(list(phi_series.glob("*.dcm")))
    for path in report.files:
        ds = pydicom.dcmread(path)
        text = repr(ds) + repr(ds.file_meta)
        for phi in PHI:
            assert phi not in text, f"{phi!r} survived in {path.name}"
        for elem in _walk_values(ds):
            assert not elem.tag.is_private, f"private {elem.tag} survived in {path.name}"
            if elem.VR == "PN" and elem.keyword != "PatientName":
                assert not elem.value, f"{elem.keyword} = {elem.value!r}"
            if elem.VR in ("DA", "DT") and elem.value:
                assert not str(elem.value).startswith(STUDY_DATE), elem
        for keyword, action in ACTIONS.items():
            if action == "X":
                assert keyword not in ds, f"{keyword} should be removed"
            elif action == "Z" and keyword in ds:
                assert ds[keyword].value in (None, "", []), f"{keyword} should be empty"
        assert ds.PatientName == "P042" and ds.PatientID == "P042"
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.ProcedureCodeSequence[0].CodeMeaning == "portal venous"  # non-identifying content is kept
    assert report.removed["private"] >= 2 * len(report.files)


def test_dates_shifted_by_the_pseudonym_offset(deid):
    report, _ = deid
    ds = pydicom.dcmread(report.files[0])
    days = date_offset_days("P042", "test-salt")
    assert report.date_offset_days == days and 30 <= days < 3680
    expected = (dt.date(2024, 3, 15) - dt.timedelta(days=days)).strftime("%Y%m%d")
    assert ds.StudyDate == ds.SeriesDate == expected
    assert ds.AcquisitionDateTime == expected + "101500.000"
    assert ds.PatientBirthDate == ""
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"


def test_uids_remapped_consistently(deid, phi_series, tmp_path):
    report, out = deid
    src = read_series(phi_series)
    dst = read_series(out)
    assert dst.sop_instance_uids == tuple(report.sop_instance_uids)
    assert dst.sop_instance_uids == tuple(remap_uid(u, "test-salt") for u in src.sop_instance_uids)
    assert not set(dst.sop_instance_uids) & set(src.sop_instance_uids)
    assert dst.series_instance_uid == remap_uid(src.series_instance_uid, "test-salt") != src.series_instance_uid
    assert dst.frame_of_reference_uid == remap_uid(src.frame_of_reference_uid, "test-salt")
    assert dst.sop_class_uid == pydicom.uid.CTImageStorage  # well-known UIDs are kept
    np.testing.assert_array_equal(dst.hu, src.hu)
    # the reference to the first slice still resolves inside the de-identified series
    ref = pydicom.dcmread(report.files[5]).ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert ref == dst.sop_instance_uids[0]
    # deterministic: the same salt gives the same UIDs; another salt other ones
    again = deidentify_series(phi_series, tmp_path / "again", "P042", "test-salt")
    assert again.sop_instance_uids == report.sop_instance_uids
    other = deidentify_series(phi_series, tmp_path / "other", "P042", "another-salt")
    assert not set(other.sop_instance_uids) & set(report.sop_instance_uids)


def test_seg_on_deidentified_series_references_its_images(deid):
    from inference.pipeline.lesions import find_lesions
    from inference.pipeline.seg import make_dicom_seg, read_seg

    _, out = deid
    vol = read_series(out)
    liver = vol.hu > 80  # any mask will do: this checks references, not anatomy
    lesion = np.zeros_like(liver)
    lesion[18:22, 120:130, 60:70] = True
    liver |= lesion
    lesions, inst = find_lesions(lesion, liver, vol.spacing_mm, vol.affine)
    data = make_dicom_seg(vol, liver, inst, lesions, 1, algorithm_name="test", algorithm_version="0", uid_seed="x")
    summary = read_seg(data)
    assert set(summary.referenced_sop_instance_uids) <= set(vol.sop_instance_uids)
    assert summary.voxel_counts[2] == int(lesion.sum())


def test_real_series_blank_uids_repaired_and_jpeg2000_kept(totalseg_example, tmp_path):
    report = deidentify_series(totalseg_example, tmp_path / "ts", "P900", "salt-1")
    notes = "\n".join(report.notes)
    assert "SOPInstanceUID blank in 20 file(s)" in notes and "StudyInstanceUID blank" in notes
    ds = pydicom.dcmread(report.files[0])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000Lossless
    assert ds.SOPInstanceUID == report.sop_instance_uids[0] and ds.SOPInstanceUID.startswith("2.25.")
    assert "Petersgraben" not in repr(ds) and ds.get("InstitutionAddress") is None
    src = read_series(totalseg_example)
    dst = read_series(tmp_path / "ts")
    assert dst.notes == ()  # nothing left to repair
    np.testing.assert_array_equal(dst.hu, src.hu)
    again = deidentify_series(totalseg_example, tmp_path / "ts2", "P900", "salt-1")
    assert again.sop_instance_uids == report.sop_instance_uids
    assert again.series_instance_uid == report.series_instance_uid


def test_burned_in_annotation_is_rejected(phantom_series, tmp_path):
    folder = tmp_path / "burned"
    shutil.copytree(phantom_series.folder, folder)
    ds = pydicom.dcmread(folder / "0003.dcm")
    ds.BurnedInAnnotation = "YES"
    ds.save_as(folder / "0003.dcm")
    with pytest.raises(DeidError, match=r"0003\.dcm: BurnedInAnnotation is YES"):
        deidentify_series(folder, tmp_path / "out", "P1", "s")


# --- where it writes: only new files in a new or empty folder, nothing left when it fails ------------------------


@pytest.fixture
def tiny_series(tmp_path) -> Path:
    from tests.factories import write_series

    write_series(tmp_path / "src")
    return tmp_path / "src"


def test_writes_only_its_own_files_into_a_new_or_empty_folder(tiny_series, tmp_path):
    (tmp_path / "empty").mkdir()
    report = deidentify_series(tiny_series, tmp_path / "empty", "P1", "s")
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == [f"{n:04d}.dcm" for n in range(1, 6)]
    assert report.files == sorted((tmp_path / "empty").iterdir())


def test_report_carries_the_header_scan_of_what_it_wrote(phantom_series, tmp_path):
    """The import stores this geometry instead of scanning the copy's headers again: it must be the same."""
    report = deidentify_series(phantom_series.folder, tmp_path / "out", "P1", "s")
    copy = probe_series(tmp_path / "out")
    assert report.series.files == copy.files == [p.name for p in report.files]
    assert report.series.series_instance_uid == copy.series_instance_uid == report.series_instance_uid
    assert (report.series.n_slices, report.series.rows, report.series.columns) == (
        copy.n_slices,
        copy.rows,
        copy.columns,
    )
    np.testing.assert_allclose(report.series.positions_mm, copy.positions_mm, atol=1e-9)
    np.testing.assert_allclose(report.series.normal, copy.normal, atol=1e-12)
    first = pydicom.dcmread(report.files[0], stop_before_pixels=True)
    assert report.study_instance_uid == first.StudyInstanceUID and report.series_instance_uid == first.SeriesInstanceUID


def test_refuses_a_non_empty_folder_and_replaces_nothing(tiny_series, tmp_path):
    dst = tmp_path / "taken"
    dst.mkdir()
    (dst / "0001.dcm").write_bytes(b"another study's image")
    with pytest.raises(DeidError, match="exists and is not an empty folder"):
        deidentify_series(tiny_series, dst, "P1", "s")
    assert [p.name for p in dst.iterdir()] == ["0001.dcm"]
    assert (dst / "0001.dcm").read_bytes() == b"another study's image"


def test_refuses_a_symlinked_target_folder(tiny_series, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DeidError, match="is a symbolic link"):
        deidentify_series(tiny_series, tmp_path / "link", "P1", "s")
    assert list(elsewhere.iterdir()) == []


def test_a_link_planted_mid_write_is_not_followed_and_everything_is_removed(tiny_series, tmp_path, monkeypatch):
    """A file that appears where an output file goes (a race) is an error; the written files are removed."""
    victim = tmp_path / "victim.dcm"
    victim.write_bytes(b"keep me")
    dst = tmp_path / "out"
    real_save = pydicom.dataset.Dataset.save_as

    def plant_link_after_first(self, target, *args, **kwargs):
        real_save(self, target, *args, **kwargs)
        if not (dst / "0002.dcm").exists():
            (dst / "0002.dcm").symlink_to(victim)

    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", plant_link_after_first)
    with pytest.raises(FileExistsError):
        deidentify_series(tiny_series, dst, "P1", "s")
    assert victim.read_bytes() == b"keep me"
    assert not (dst / "0001.dcm").exists()
    assert [p.name for p in dst.iterdir()] == ["0002.dcm"]  # only the planted link, which is not ours to remove


def test_failure_midway_removes_the_files_and_the_folder_it_made(tiny_series, tmp_path, monkeypatch):
    real_save = pydicom.dataset.Dataset.save_as
    calls = []

    def fail_third(self, target, *args, **kwargs):
        calls.append(target)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_save(self, target, *args, **kwargs)

    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", fail_third)
    with pytest.raises(OSError, match="No space"):
        deidentify_series(tiny_series, tmp_path / "out", "P1", "s")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("pseudonym", ["P1\\P2", "P1\x00", "P1\n"])
def test_pseudonym_that_dicom_cannot_hold_is_refused(tiny_series, tmp_path, pseudonym):
    with pytest.raises(DeidError, match="backslash or control character"):
        deidentify_series(tiny_series, tmp_path / "out", pseudonym, "s")
    assert not (tmp_path / "out").exists()
