"""Multi-series cases: the manifest's series_role and extra_series columns, their import and readiness."""

from pathlib import Path

import pydicom
import pytest
from django.core.files.storage import default_storage

from readerstudy.core.errors import InvalidInput
from readerstudy.core.models import AuditEvent
from readerstudy.studies import actions
from readerstudy.studies.manifest import read_manifest
from readerstudy.studies.models import Case, CaseSeries, ImageSeries, Patient, Truth
from readerstudy.studies.storage import series_names
from tests.factories import balanced_rows, make_user, manifest_row, write_manifest, write_series

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin():
    return make_user("admin", superuser=True)


@pytest.fixture
def study(admin):
    return actions.create_study(admin, "Multi-series study", seed=1)


def counts():
    return (
        Patient.objects.count(),
        ImageSeries.objects.count(),
        Case.objects.count(),
        Truth.objects.count(),
        CaseSeries.objects.count(),
    )


def roles_of(case_id: str) -> list[tuple[int, str, int]]:
    return [
        (row.position, row.role, row.series.n_slices)
        for row in CaseSeries.objects.filter(case__case_id=case_id).select_related("series")
    ]


def test_extra_series_are_imported_deidentified_and_stored_once_per_patient(tmp_path, admin, study, media_root):
    rows = balanced_rows(3, 2, extra_series_roles=("arterial", "delayed"))
    assert rows[0]["extra_series"] == "arterial=series/P001-arterial;delayed=series/P001-delayed"
    summary = actions.import_cases(admin, study, write_manifest(tmp_path, rows))
    assert (summary.n_cases, summary.n_patients, summary.n_series) == (6, 3, 9)
    # One ImageSeries per folder: the two lesions of a patient share all three series.
    assert counts() == (3, 9, 6, 6, 18)
    assert roles_of("P001-L1") == [(0, "portal-venous", 5), (1, "arterial", 3), (2, "delayed", 3)]
    first, second = Case.objects.get(case_id="P001-L1"), Case.objects.get(case_id="P001-L2")
    assert list(first.case_series.values_list("series_id", flat=True)) == list(
        second.case_series.values_list("series_id", flat=True)
    )
    assert first.case_series.get(position=0).series_id == first.series_id  # the primary series is Case.series
    arterial = first.case_series.get(role="arterial").series
    assert arterial.modality_code == "CT" and arterial.slice_positions_mm == [0.0, 5.0, 10.0]
    assert arterial.patient.pseudonym == "P001"
    # Every stored file de-identified with the patient's pseudonym, UIDs remapped.
    source = pydicom.dcmread(next((tmp_path / "series" / "P001-arterial").glob("*.dcm")))
    for row in first.case_series.select_related("series"):
        stored = [pydicom.dcmread(default_storage.open(name)) for name in series_names(row.series)]
        assert {ds.PatientID for ds in stored} == {"P001"} and {ds.PatientIdentityRemoved for ds in stored} == {"YES"}
        assert row.series.storage_prefix.startswith(f"studies/{study.pk}/import-")
    stored = pydicom.dcmread(default_storage.open(series_names(arterial)[0]))
    assert stored.SeriesInstanceUID != source.SeriesInstanceUID and stored.SeriesInstanceUID == (
        arterial.series_instance_uid
    )
    assert AuditEvent.objects.get(verb="import_cases").after["series"] == 9


def test_series_role_names_the_primary_series_and_a_folder_may_serve_several_roles(tmp_path, admin, study):
    write_series(tmp_path / "series" / "P001")
    write_series(tmp_path / "series" / "P001-t2", modality="MR")  # an MR sequence may be a further series
    write_series(tmp_path / "series" / "P001-other")
    rows = [
        manifest_row("P001", "P001-L1", series_role="venous", extra_series="t2=series/P001-t2"),
        # P001-L1's primary folder is an extra series of another lesion of the patient: still stored once
        manifest_row("P001", "P001-L2", series="series/P001-other", extra_series=" late = series/P001 "),
    ]
    actions.import_cases(admin, study, write_manifest(tmp_path, rows))
    assert roles_of("P001-L1") == [(0, "venous", 5), (1, "t2", 5)]
    assert roles_of("P001-L2") == [(0, "portal-venous", 5), (1, "late", 5)]
    assert ImageSeries.objects.count() == 3
    late = CaseSeries.objects.get(role="late")
    assert late.series_id == Case.objects.get(case_id="P001-L1").series_id
    assert sorted(ImageSeries.objects.values_list("modality_code", flat=True)) == ["CT", "CT", "MR"]
    assert CaseSeries.objects.get(role="t2").label == "T2" and CaseSeries.objects.get(role="venous").primary


def test_every_bad_extra_series_is_a_row_error_and_nothing_is_written(tmp_path, admin, study, media_root):
    for name in ("P001", "P001-art", "P002", "P002-art"):
        write_series(tmp_path / "series" / name)
    write_series(tmp_path / "series" / "P003-mr", modality="MR")
    (tmp_path / "series" / "NOTDICOM").mkdir(parents=True)
    (tmp_path / "series" / "NOTDICOM" / "x.dcm").write_text("not a dicom file")
    for k in range(8):
        write_series(tmp_path / "series" / f"P009-{k}")
    many = ";".join(f"phase{k}=series/P009-{k}" for k in range(8))
    rows = [
        manifest_row("P002", "P002-L1", extra_series="arterial=series/P002-art"),  # good: P002 owns the folder
        manifest_row("P001", "P001-L1", extra_series="arterial=series/P001-art"),  # good
        manifest_row("P001", "P001-L2", extra_series="Arterial=series/P001-art"),
        manifest_row("P001", "P001-L3", extra_series="art erial=series/P001-art"),
        manifest_row("P001", "P001-L4", extra_series="-arterial=series/P001-art"),
        manifest_row("P001", "P001-L5", extra_series="arterial=series/P001-art;arterial=series/P002-art"),
        manifest_row("P001", "P001-L6", extra_series="portal-venous=series/P001-art"),
        manifest_row("P001", "P001-L7", extra_series="arterial=../outside"),
        manifest_row("P001", "P001-L8", extra_series="arterial=/etc"),
        manifest_row("P001", "P001-L9", extra_series="arterial=scans/MISSING"),
        manifest_row("P001", "P001-L10", extra_series="arterial=series/NOTDICOM"),
        manifest_row("P001", "P001-L11", extra_series="series/P001-art"),
        manifest_row("P001", "P001-L12", extra_series="arterial=series/P001-art;"),
        manifest_row("P001", "P001-L13", extra_series="arterial=series/P001"),  # the primary series again
        manifest_row("P001", "P001-L14", extra_series="arterial=series/P002-art"),  # another patient's
        manifest_row("P009", "P009-L1", extra_series=many),
        manifest_row("P001", "P001-L15", series_role="Venous"),
        manifest_row("P003", "P003-L1", series="series/P003-mr"),  # MR only as a further series
        manifest_row("P001", "P001-L16", extra_series="a" * 41 + "=series/P001-art"),
    ]
    expected = [
        ("row 4 column extra_series", "entry 1: role 'Arterial' contains 'A'; expected 1 to 40 characters"),
        ("row 5 column extra_series", "entry 1: role 'art erial' contains ' '"),
        ("row 6 column extra_series", "entry 1: role '-arterial' starts with '-'"),
        ("row 7 column extra_series", "entry 2: role 'arterial' twice in this case (also in entry 1)"),
        ("row 8 column extra_series", "entry 1: role 'portal-venous' twice in this case (also in series_role)"),
        ("row 9 column extra_series", "entry 1 (arterial): '../outside' must be a relative path inside"),
        ("row 10 column extra_series", "entry 1 (arterial): '/etc' must be a relative path inside"),
        ("row 11 column extra_series", "entry 1 (arterial): series folder"),  # does not exist
        ("row 12 column extra_series", "entry 1 (arterial): x.dcm in"),
        ("row 13 column extra_series", "entry 1 'series/P001-art' is not role=folder"),
        ("row 14 column extra_series", "entry 2 '' is not role=folder"),
        ("row 15 column extra_series", "entry 1 (arterial): the same folder as role 'portal-venous'"),
        ("row 16 column extra_series", "entry 1 (arterial): series already belongs to patient 'P002'"),
        ("row 17 column extra_series", "9 series for this case (series_path and 8 more); at most 8 per case"),
        ("row 18 column series_role", "'Venous' contains 'V'"),
        ("row 19 column series_path", "holds modality ['MR'], expected CT only (the primary series"),
        ("row 20 column extra_series", "longer than 40 characters"),
    ]
    path = write_manifest(tmp_path, rows)
    with pytest.raises(InvalidInput) as caught:
        actions.import_cases(admin, study, path)
    details = caught.value.details
    for where, reason in expected:
        assert any(d.startswith(f"manifest.csv {where}:") and reason in d for d in details), (where, reason, details)
    assert len(details) == len(expected), details
    assert counts() == (0, 0, 0, 0, 0)
    assert not list(Path(media_root).rglob("*.dcm"))


def test_seven_extra_series_are_the_most(tmp_path, admin, study):
    for k in range(7):
        write_series(tmp_path / "series" / f"P001-{k}")
    extra = ";".join(f"phase-{k}=series/P001-{k}" for k in range(7))
    actions.import_cases(admin, study, write_manifest(tmp_path, [manifest_row("P001", "P001-L1", extra_series=extra)]))
    assert [p for p, _r, _n in roles_of("P001-L1")] == list(range(8))


def test_header_takes_optional_columns_in_any_order_but_once(tmp_path):
    write_series(tmp_path / "series" / "P001")
    good = tmp_path / "good.csv"
    good.write_text(
        "extra_series,patient_id,case_id,series_path,lesion_x_mm,lesion_y_mm,lesion_z_mm,diameter_mm,truth,"
        "truth_source\n,P001,P001-L1,series/P001,1,2,5,12,crlm,histology\n"
    )
    manifest = read_manifest(good)
    assert not manifest.errors and manifest.rows[0].series_role == "portal-venous"
    assert manifest.rows[0].extra_series == ()
    twice = tmp_path / "twice.csv"
    twice.write_text(good.read_text().replace("extra_series,", "series_role,series_role,", 1))
    assert "wrong header (more than once: series_role)" in read_manifest(twice).errors[0]


def test_a_failing_extra_series_deidentification_names_its_column_and_leaves_nothing(
    tmp_path, admin, study, media_root
):
    rows = balanced_rows(2, 1, extra_series_roles=("arterial",))
    path = write_manifest(tmp_path, rows)
    for file in (tmp_path / "series" / "P002-arterial").glob("*.dcm"):
        ds = pydicom.dcmread(file)
        ds.BurnedInAnnotation = "YES"
        ds.save_as(file)
    with pytest.raises(InvalidInput) as caught:
        actions.import_cases(admin, study, path)
    assert [d for d in caught.value.details if "BurnedInAnnotation" in d] == [
        d for d in caught.value.details if d.startswith("manifest.csv row 3 column extra_series: cannot de-identify")
    ]
    assert len(caught.value.details) == 1
    assert not list(Path(media_root).rglob("*"))
    assert counts() == (0, 0, 0, 0, 0)


def test_readiness_needs_every_series_of_every_case_readable(tmp_path, admin, study):
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "Aided", shows_dl=True)
    actions.add_member(admin, study, make_user("reader1"), "reader")
    actions.import_cases(admin, study, write_manifest(tmp_path, balanced_rows(2, 1, extra_series_roles=("arterial",))))
    assert not [p for p in actions.readiness(study).problems if "not readable" in p]
    arterial = CaseSeries.objects.get(case__case_id="P002-L1", role="arterial").series
    default_storage.delete(series_names(arterial)[1])
    problems = [p for p in actions.readiness(study).problems if "not readable" in p]
    assert problems == [f"series of patient P002 is not readable: {arterial.storage_prefix}"]


def test_a_two_series_phantom_study_imports_both_phases_and_precomputes_on_the_primary(tmp_path, media_root, capsys):
    from django.core.management import call_command

    from fixtures.studies import phantom_crossover_study
    from inference.models import Prediction

    built = phantom_crossover_study(
        tmp_path / "data", name="Two phases", password="pw-12345-xyz", phantom_seed=7, n_patients=1, n_lesions=2,
        extra_series_roles=("arterial",),
    )  # fmt: skip
    study = built.study
    rows = CaseSeries.objects.filter(case__study=study).select_related("series", "case")
    assert sorted((r.case.case_id, r.position, r.role) for r in rows) == [
        ("P001-L1", 0, "portal-venous"), ("P001-L1", 1, "arterial"),
        ("P001-L2", 0, "portal-venous"), ("P001-L2", 1, "arterial"),
    ]  # fmt: skip
    assert ImageSeries.objects.filter(patient__study=study).count() == 2  # each phase stored once for both lesions
    primary = Case.objects.get(study=study, case_id="P001-L1").series
    arterial = rows.get(case__case_id="P001-L1", role="arterial").series
    # Another grid in the same frame: 19 slices of 5 mm whose centres lie between the 2.5 mm slices.
    assert (primary.n_slices, arterial.n_slices) == (40, 19)
    assert arterial.slice_positions_mm[0] == pytest.approx(primary.slice_positions_mm[0] + 1.25)
    assert arterial.slice_positions_mm[1] - arterial.slice_positions_mm[0] == pytest.approx(5.0)
    heads = [
        pydicom.dcmread(default_storage.open(series_names(s)[0]), stop_before_pixels=True) for s in (primary, arterial)
    ]
    assert {ds.PatientID for ds in heads} == {"P001"}  # one pseudonym
    assert heads[0].StudyInstanceUID == heads[1].StudyInstanceUID  # one study, UIDs remapped alike
    assert heads[0].FrameOfReferenceUID == heads[1].FrameOfReferenceUID
    assert heads[0].SeriesInstanceUID != heads[1].SeriesInstanceUID
    assert list(heads[0].ImageOrientationPatient) == list(heads[1].ImageOrientationPatient)
    assert (float(heads[0].SliceThickness), float(heads[1].SliceThickness)) == (2.5, 5.0)
    # Every series of every case is readable: the one unmet check is the DL predictions, not yet computed.
    assert actions.readiness(study).missing_predictions == 2
    assert all("DL prediction" in p for p in actions.readiness(study).problems), actions.readiness(study).problems

    # Precompute reads the primary series only; the extra series changes nothing there.
    call_command("precompute", "--study", study.name, "--no-progress")
    assert "2 predicted, 0 unchanged (skipped), 0 failed" in capsys.readouterr().out
    assert actions.readiness(study).ready, actions.readiness(study).problems
    for p in Prediction.objects.filter(case__study=study).select_related("case__series"):
        assert p.overlay_shape == [40, p.case.series.rows, p.case.series.columns]
