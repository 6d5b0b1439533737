"""Practice cases: the manifest column ``practice``, readiness that counts only the study's own cases, and the
practice schedule of the design (pure)."""

import pytest

from readerstudy.core.errors import InvalidInput
from readerstudy.core.models import AuditEvent
from readerstudy.studies import actions, design
from readerstudy.studies.models import Case, Patient
from tests.factories import balanced_rows, make_user, manifest_row, practice_rows, write_manifest

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin():
    return make_user("admin", superuser=True)


@pytest.fixture
def study(admin):
    return actions.create_study(admin, "Practice study", seed=1)


@pytest.mark.parametrize(
    ("value", "practice"), [("yes", True), ("1", True), ("YES", True), ("no", False), ("0", False), ("", False)]
)
def test_the_practice_column_marks_practice_cases(tmp_path, admin, study, value, practice):
    rows = [*balanced_rows(2, 1), manifest_row("X001", "X001-L1", practice=value)]
    actions.import_cases(admin, study, write_manifest(tmp_path, rows))
    assert Case.objects.get(case_id="X001-L1").practice is practice
    assert not Case.objects.filter(case_id__startswith="P").filter(practice=True).exists()
    event = AuditEvent.objects.filter(verb="import_cases").latest("seq")
    assert event.after["practice_cases"] == int(practice)


def test_a_manifest_without_the_column_imports_regular_cases(tmp_path, admin, study):
    actions.import_cases(admin, study, write_manifest(tmp_path, balanced_rows(2, 2)))
    assert Case.objects.count() == 4 and not Case.objects.filter(practice=True).exists()


@pytest.mark.parametrize("value", ["true", "y", "2", "practice", "=1+1", "ja"])
def test_a_bad_practice_value_is_a_row_error_naming_the_column_and_nothing_is_applied(tmp_path, admin, study, value):
    rows = [*balanced_rows(2, 1), manifest_row("X001", "X001-L1", practice=value)]
    with pytest.raises(InvalidInput) as exc:
        actions.import_cases(admin, study, write_manifest(tmp_path, rows))
    assert len(exc.value.details) == 1
    problem = exc.value.details[0]
    assert "row 4 column practice:" in problem and "yes, no, 1, 0" in problem
    assert (Case.objects.count(), Patient.objects.count()) == (0, 0)


def test_readiness_needs_both_truths_among_the_non_practice_cases(tmp_path, admin, study):
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "Aided", shows_dl=False)
    actions.add_member(admin, study, make_user("reader1"), "reader")
    # Real cases: positives only; the negatives are practice cases.
    rows = [manifest_row("P001", "P001-L1"), manifest_row("P002", "P002-L1")]
    rows += [manifest_row("X001", "X001-L1", truth="hemangioma", practice="yes")]
    actions.import_cases(admin, study, write_manifest(tmp_path, rows))
    check = actions.readiness(study)
    assert not check.ready
    assert any("one class only (crlm)" in p for p in check.problems)
    checks = {c.key: c for c in check.checks}
    assert checks["cases"].ok and checks["cases"].message == "2 cases imported (and 1 practice case)"


def test_readiness_refuses_a_study_of_practice_cases_only(tmp_path, admin, study):
    actions.import_cases(admin, study, write_manifest(tmp_path, practice_rows(4)))
    checks = {c.key: c for c in actions.readiness(study).checks}
    assert not checks["cases"].ok and "only practice cases" in checks["cases"].message


def test_practice_schedule_every_case_in_every_modality_unaided_first_seeded_and_independent():
    cases = [design.CaseRef(f"X{i}", f"X{i}") for i in range(5)]
    schedule = design.practice_schedule(7, ["r1", "r2"], cases, ["unaided", "aided"])
    for items in schedule.values():
        assert len(items) == 10
        assert sorted(items) == sorted((c.case, m) for c in cases for m in ("unaided", "aided"))
        # Per case consecutively, unaided first (sequential style).
        assert [m for _, m in items] == ["unaided", "aided"] * 5
        assert [c for c, _ in items][::2] == [c for c, _ in items][1::2]
    assert schedule == design.practice_schedule(7, ["r1", "r2"], cases, ["unaided", "aided"])  # stored = replayable
    orders = {tuple(design.practice_schedule(s, ["r1"], cases, ["u", "a"])["r1"]) for s in range(10)}
    assert len(orders) > 1  # the seed decides the order
    assert design.practice_schedule(7, ["r1"], [], ["u", "a"]) == {}
    # Its own random stream: the design's schedule does not change with it.
    real = [design.CaseRef(f"P{i}", f"P{i}") for i in range(6)]
    before = design.make_schedule("crossover", 7, ["r1", "r2"], real, ["u", "a"])
    design.practice_schedule(7, ["r1", "r2"], cases, ["u", "a"])
    assert design.make_schedule("crossover", 7, ["r1", "r2"], real, ["u", "a"]) == before
