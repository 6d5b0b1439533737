"""Manifest import: all-or-nothing, every bad row reported with row number, column and reason."""

import re
from pathlib import Path, PurePosixPath

import pytest
from django.core.files.storage import default_storage

from readerstudy.core.errors import InvalidInput
from readerstudy.core.models import AuditEvent
from readerstudy.studies import actions
from readerstudy.studies.models import Case, ImageSeries, Patient, Truth
from readerstudy.studies.storage import series_names
from tests.factories import balanced_rows, make_user, manifest_row, write_manifest, write_series

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin():
    return make_user("admin", superuser=True)


@pytest.fixture
def study(admin):
    return actions.create_study(admin, "Manifest study", seed=1)


def counts():
    return (Patient.objects.count(), ImageSeries.objects.count(), Case.objects.count(), Truth.objects.count())


def test_good_manifest_imports_everything(tmp_path, admin, study):
    path = write_manifest(tmp_path, balanced_rows(5, 2))
    summary = actions.import_cases(admin, study, path)
    assert (summary.n_cases, summary.n_patients, summary.n_series) == (10, 5, 5)
    assert counts() == (5, 5, 10, 10)
    assert Case.objects.get(case_id="P001-L1").slice_index == 1  # z = 2.5 mm on slices at 0, 2.5, 5, ... mm
    case = Case.objects.get(case_id="P001-L2")
    assert case.slice_index == 2  # z = 5 mm
    assert case.truth.label == "hemangioma" and not case.truth.positive
    strata = {c.case_id: c.size_stratum for c in Case.objects.select_related("study")}
    assert strata["P001-L1"] == "<=10"  # 6 mm
    assert strata["P002-L2"] == "10-30"  # 30 mm: an edge belongs to the lower bin
    assert strata["P003-L1"] == ">30"  # 35 mm
    assert strata["P001-L2"] == "<=10"  # exactly 10 mm
    event = AuditEvent.objects.get(verb="import_cases")
    assert event.after["cases"] == 10 and len(event.after["sha256"]) == 64


def test_bom_is_accepted(tmp_path, admin, study):
    path = write_manifest(tmp_path, balanced_rows(2, 1))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert actions.import_cases(admin, study, path).n_cases == 2


def bad_rows(tmp_path):
    """One manifest with at least twelve different kinds of bad rows, each with its expected message."""
    write_series(tmp_path / "series" / "P001")
    (tmp_path / "series" / "EMPTY").mkdir(parents=True)
    (tmp_path / "series" / "NOTDICOM").mkdir(parents=True)
    (tmp_path / "series" / "NOTDICOM" / "x.dcm").write_text("not a dicom file")
    write_series(tmp_path / "series" / "MR", modality="MR")
    rows = [
        manifest_row("P001", "P001-L1"),  # good
        manifest_row("P001", "P001-L1"),  # duplicate case id
        manifest_row("P001", "P001-L3", truth="metastasis"),
        manifest_row("P001", "P001-L4", truth_source="biopsy"),
        manifest_row("P001", "P001-L5", diameter_mm="-3"),
        manifest_row("P001", "P001-L6", diameter_mm="large"),
        manifest_row("P001", "P001-L7", lesion_x_mm="nan"),
        manifest_row("P002", "P002-L1", series="scans/MISSING"),
        manifest_row("P003", "P003-L1", series="series/EMPTY"),
        manifest_row("P004", "P004-L1", series="series/NOTDICOM"),
        manifest_row("P005", "P005-L1", series="../outside"),
        manifest_row("", "P006-L1", series="series/P006"),
        manifest_row("P007", "P007-L1", series="series/P001"),  # series of another patient
        manifest_row("P001", "P001-L8", lesion_z_mm="500"),  # outside the series
        manifest_row("P008", "P008-L1", series="series/MR"),
        manifest_row("P001", "P001-L9", diameter_mm="0"),
    ]
    expected = [
        ("row 3 column case_id", "duplicate case id 'P001-L1' (first on row 2)"),
        ("row 4 column truth", "unknown label 'metastasis'"),
        ("row 5 column truth_source", "unknown source 'biopsy'"),
        ("row 6 column diameter_mm", "-3 mm; expected a diameter > 0 mm"),
        ("row 7 column diameter_mm", "'large' is not a number"),
        ("row 8 column lesion_x_mm", "'nan' is not a finite number"),
        ("row 9 column series_path", "does not exist"),
        ("row 10 column series_path", "holds no files"),
        ("row 11 column series_path", "x.dcm in"),
        ("row 12 column series_path", "must be a relative path inside"),
        ("row 13 column patient_id", "empty; expected a pseudonymous id"),
        ("row 14 column series_path", "series already belongs to patient 'P001'"),
        ("row 15 column lesion_z_mm", "outside the series"),
        ("row 16 column series_path", "modality ['MR'], expected CT only"),
        ("row 17 column diameter_mm", "0 mm; expected a diameter > 0 mm"),
    ]
    return rows, expected


def test_every_bad_row_is_reported_and_nothing_is_written(tmp_path, admin, study):
    rows, expected = bad_rows(tmp_path)
    path = write_manifest(tmp_path, rows)
    events_before = AuditEvent.objects.count()
    with pytest.raises(InvalidInput) as caught:
        actions.import_cases(admin, study, path)
    details = caught.value.details
    for where, reason in expected:
        assert any(d.startswith(f"manifest.csv {where}:") and reason in d for d in details), (where, reason, details)
    assert len(details) == len(expected)
    assert counts() == (0, 0, 0, 0)
    assert AuditEvent.objects.count() == events_before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"patient;case;series\nP1;C1;s\n", "the file seems to use ';' as separator"),
        (b"patient_id,case_id,series_path\nP1,C1,s\n", "missing lesion_x_mm"),
        (
            b"patient_id,case_id,series_path,lesion_x_mm,lesion_y_mm,lesion_z_mm,diameter_mm,truth,truth_source,extra\n",
            "unknown extra",
        ),
        (b"\xff\xfe p\x00a\x00", "not UTF-8 text"),
        (
            b"patient_id,case_id,series_path,lesion_x_mm,lesion_y_mm,lesion_z_mm,diameter_mm,truth,truth_source\n",
            "no case rows",
        ),
        (
            b"patient_id,case_id,series_path,lesion_x_mm,lesion_y_mm,lesion_z_mm,diameter_mm,truth,truth_source\n"
            b"P1,C1,series/P1,1,2\n",
            "row 2: 5 fields, expected 9",
        ),
    ],
)
def test_bad_files_are_refused_with_a_clear_message(tmp_path, admin, study, content, message):
    path = tmp_path / "cases.csv"
    path.write_bytes(content)
    with pytest.raises(InvalidInput) as caught:
        actions.import_cases(admin, study, path)
    assert any(message in d and d.startswith("cases.csv") for d in caught.value.details), caught.value.details
    assert counts() == (0, 0, 0, 0)


def test_reimport_of_existing_case_ids_is_refused(tmp_path, admin, study):
    path = write_manifest(tmp_path, balanced_rows(2, 1))
    actions.import_cases(admin, study, path)
    with pytest.raises(InvalidInput) as caught:
        actions.import_cases(admin, study, path)
    assert "case id 'P001-L1' already exists in this study" in str(caught.value)
    assert Case.objects.count() == 2


def test_only_admins_of_a_draft_study_import(tmp_path, admin, study):
    path = write_manifest(tmp_path, balanced_rows(2, 1))
    with pytest.raises(Exception, match="not an admin"):
        actions.import_cases(make_user("someone"), study, path)
    assert Case.objects.count() == 0


def test_import_stores_deidentified_copies_in_the_study_storage(tmp_path, admin, study, media_root):
    import pydicom

    path = write_manifest(tmp_path, balanced_rows(2, 1))
    original = pydicom.dcmread(next((tmp_path / "series" / "P001").glob("*.dcm")))
    original.PatientName = "Doe^Jane"
    original.PatientBirthDate = "19600101"
    original.InstitutionName = "General Hospital"
    original.add_new(0x00091010, "LO", "private vendor data")
    original.save_as(next((tmp_path / "series" / "P001").glob("*.dcm")))
    actions.import_cases(admin, study, path)
    series = ImageSeries.objects.get(patient__pseudonym="P001")
    prefix = PurePosixPath(series.storage_prefix)  # a storage name, not a machine path
    assert not prefix.is_absolute() and (Path(media_root) / prefix).is_dir()  # the default FileSystemStorage
    stored = [pydicom.dcmread(default_storage.open(name)) for name in series_names(series)]
    assert {ds.PatientID for ds in stored} == {"P001"} and {str(ds.PatientName) for ds in stored} == {"P001"}
    assert all("PatientBirthDate" not in ds or not ds.PatientBirthDate for ds in stored)
    assert all("InstitutionName" not in ds for ds in stored)
    assert all(not any(e.tag.is_private for e in ds) for ds in stored)
    assert stored[0].StudyInstanceUID != original.StudyInstanceUID
    assert stored[0].PatientIdentityRemoved == "YES"
    event = AuditEvent.objects.get(verb="import_cases")
    assert event.after["stored_in"] == str(prefix.parent)
    # storage names are generated keys, never the manifest's text
    assert re.fullmatch(r"import-[0-9a-f]{32}", prefix.parent.name) and re.fullmatch(r"series-\d+", prefix.name)
    assert prefix.parent.parent == PurePosixPath("studies") / str(study.pk)


def test_refused_import_leaves_no_files(tmp_path, admin, study, media_root):
    import pydicom

    path = write_manifest(tmp_path, balanced_rows(2, 1))
    # The second patient's series has burned-in text: it cannot be de-identified, after the first was copied.
    for file in (tmp_path / "series" / "P002").glob("*.dcm"):
        ds = pydicom.dcmread(file)
        ds.BurnedInAnnotation = "YES"
        ds.save_as(file)
    with pytest.raises(InvalidInput) as caught:
        actions.import_cases(admin, study, path)
    assert any(
        "row 3 column series_path: cannot de-identify" in d and "BurnedInAnnotation" in d for d in caught.value.details
    ), caught.value.details
    assert not list(Path(media_root).rglob("*"))  # the first patient's copy and every folder made for it are gone
    assert counts() == (0, 0, 0, 0)


# --- robustness: every broken file is a message naming the row (and column), never a traceback ------------------

HEADER = b"patient_id,case_id,series_path,lesion_x_mm,lesion_y_mm,lesion_z_mm,diameter_mm,truth,truth_source\n"
GOOD_TAIL = b",1,2,5,12,crlm,histology\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # a field beyond the csv module's limit (131072): the parser stops, the row is named
        (HEADER + b"P001,P001-L1,series/P001" + GOOD_TAIL + b"P002," + b"x" * 200_000 + b"," + GOOD_TAIL,
         "cases.csv row 3: cannot parse the CSV (field larger than field limit"),
        (b"patient_id,case_id," + b"h" * 200_000 + b"\n", "cases.csv row 1: cannot parse the header"),
        (HEADER + b"P" * 100_000 + b",C1,series/P001" + GOOD_TAIL,
         "cases.csv row 2 column patient_id: '" + "P" * 40 + "'... (100000 characters) is longer"),
        (HEADER + b"P001,C1,series/P001,1,2,5," + b"1" * 1000 + b",crlm,histology\n",
         "cases.csv row 2 column diameter_mm: '" + "1" * 40 + "'... (1000 characters) is not a"),
        (HEADER + b"P001,C1,series/" + b"a" * 2000 + GOOD_TAIL,
         "cases.csv row 2 column series_path: 'series/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'... (2007 characters) is longer"
         " than 1024 characters"),
        (HEADER + b"P001,C1,series/" + b"a" * 300 + GOOD_TAIL, "row 2 column series_path: 'series/aaaa"),
        (HEADER + b"P001,C1,series/" + b"a" * 300 + GOOD_TAIL, "has a folder name longer than 255 bytes"),
        (HEADER + b"P001,C1," + b"/".join([b"d" * 250] * 3) + GOOD_TAIL, "row 2 column series_path: series folder"),
        # NUL bytes anywhere
        (HEADER + b"P0\x0001,C1,series/P001" + GOOD_TAIL, "row 2 column patient_id: 'P0\\x0001' contains a NUL byte"),
        (HEADER + b"P001,C1,series/P\x00001" + GOOD_TAIL, "row 2 column series_path: 'series/P\\x00001' contains the "
         "control character U+0000"),
        (HEADER + b"P001,C1,series/P001,1\x00,2,5,12,crlm,histology\n", "row 2 column lesion_x_mm: '1\\x00' is not a"),
        (HEADER + b"P001,C1,series/P001,1,2,5,12,crlm\x00,histology\n", "row 2 column truth: unknown label"),
        (HEADER.replace(b"truth,", b"tr\x00uth,"), "row 1: wrong header (missing truth; unknown 'tr\\x00uth')"),
        # a tab or a non-breaking space around an id is refused, not silently trimmed into something else
        (HEADER + b"\tP001,C1,series/P001" + GOOD_TAIL, "row 2 column patient_id: '\\tP001' contains the control"),
        (HEADER + "P001\u00a0,C1,series/P001".encode() + GOOD_TAIL, "row 2 column patient_id: 'P001\\xa0' contains "
         "whitespace (U+00A0)"),
        # very many columns
        (b",".join(b"c%d" % i for i in range(10_000)) + b"\n", "unknown c0, c1, c2, c3, c4 and 9995 more"),
        (HEADER + b",".join([b"x"] * 10_000) + b"\n", "row 2: 10000 fields, expected 9"),
    ],
)  # fmt: skip
def test_broken_fields_are_row_errors(tmp_path, admin, study, content, message):
    write_series(tmp_path / "series" / "P001")
    path = tmp_path / "cases.csv"
    path.write_bytes(content)
    with pytest.raises(InvalidInput) as caught:
        actions.import_cases(admin, study, path)
    details = caught.value.details
    assert any(message in d and d.startswith("cases.csv") for d in details), details
    assert all(len(d) < 2000 for d in details)  # huge values are cut short (a path of 1000 characters is not)
    assert counts() == (0, 0, 0, 0)


@pytest.mark.parametrize("newline", [b"\r\n", b"\r", b"\n\r\n", b"\r\r\n"])
def test_odd_line_endings_import(tmp_path, admin, study, newline):
    path = write_manifest(tmp_path, balanced_rows(2, 1))
    path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", newline))
    assert actions.import_cases(admin, study, path).n_cases == 2


def test_file_size_row_count_and_error_count_are_bounded(tmp_path, admin, study, monkeypatch):
    from readerstudy.studies import manifest

    path = write_manifest(tmp_path, balanced_rows(3, 2))
    monkeypatch.setattr(manifest, "MAX_BYTES", 100)
    with pytest.raises(InvalidInput, match=r"manifest.csv: larger than the limit of 100 bytes .*; split the manifest"):
        actions.import_cases(admin, study, path)
    monkeypatch.setattr(manifest, "MAX_BYTES", 10_000)
    monkeypatch.setattr(manifest, "MAX_ROWS", 4)
    with pytest.raises(InvalidInput, match=r"manifest.csv row 6: more than 4 case rows; split the manifest"):
        actions.import_cases(admin, study, path)
    monkeypatch.setattr(manifest, "MAX_ROWS", 10_000)
    monkeypatch.setattr(manifest, "MAX_ERRORS", 3)
    bad = write_manifest(tmp_path / "bad", [manifest_row(f"P{i}", f"={i}", series="series/P1") for i in range(10)])
    with pytest.raises(InvalidInput) as caught:
        actions.import_cases(admin, study, bad)
    details = caught.value.details
    assert len(details) == 4 and details[-1] == "manifest.csv: stopped after 3 problems; fix these and check again"
    assert counts() == (0, 0, 0, 0)


def test_manifest_path_itself_too_long_or_with_nul(tmp_path):
    from readerstudy.studies.manifest import read_manifest

    assert "cannot read the file (File name too long)" in read_manifest(tmp_path / ("m" * 300 + ".csv")).errors[0]
    assert "cannot read the file (embedded null byte)" in read_manifest(tmp_path / "m\x00.csv").errors[0]


def test_symlinked_file_in_a_series_folder_is_refused(tmp_path, admin, study):
    write_series(tmp_path / "series" / "P001")
    write_series(tmp_path / "outside" / "scan", n_slices=1)
    (tmp_path / "series" / "P001" / "999.dcm").symlink_to(tmp_path / "outside" / "scan" / "0001.dcm")
    path = write_manifest(tmp_path, [manifest_row("P001", "P001-L1")])
    with pytest.raises(InvalidInput, match=r"row 2 column series_path: 999.dcm in .* is a symbolic link"):
        actions.import_cases(admin, study, path)


def test_unreadable_series_folder_is_a_row_error(tmp_path, admin, study, monkeypatch):
    write_series(tmp_path / "series" / "P001")
    path = write_manifest(tmp_path, [manifest_row("P001", "P001-L1")])
    real_iterdir = Path.iterdir

    def denied(self):
        if self.name == "P001":
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", denied)  # chmod 000 does not stop root, which runs some CIs
    with pytest.raises(InvalidInput, match=r"row 2 column series_path: cannot read the series folder .* denied"):
        actions.import_cases(admin, study, path)
