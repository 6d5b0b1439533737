"""Study set-up actions: permissions, launch readiness, the stored randomisation, one audit event per action."""

from collections import Counter

import pytest

from readerstudy.core.errors import InvalidInput, NotAllowed, NotReady
from readerstudy.core.models import AuditEvent
from readerstudy.reading.actions import launch_study
from readerstudy.reading.models import ReadingSession, SessionItem
from readerstudy.studies import actions
from readerstudy.studies.models import Membership, Study
from tests.factories import balanced_rows, build_study, make_user, write_manifest

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin():
    return make_user("admin", superuser=True)


def events(verb):
    return AuditEvent.objects.filter(verb=verb).count()


def test_create_study_makes_the_creator_admin_and_writes_one_event(admin):
    staff = make_user("coordinator", staff=True)
    study = actions.create_study(staff, "  CRLM vs HM  ", seed=99)
    assert study.name == "CRLM vs HM" and study.seed == 99 and study.status == "draft"
    assert study.size_bins_mm == [10.0, 30.0]
    assert Membership.objects.get(study=study).role == "admin"
    event = AuditEvent.objects.get()
    assert (event.verb, event.actor, event.object_id) == ("create_study", staff, str(study.pk))
    assert event.after["admin"] == "coordinator"
    with pytest.raises(NotAllowed):
        actions.create_study(make_user("plain"), "Other")
    with pytest.raises(InvalidInput, match="exists already"):
        actions.create_study(staff, "CRLM vs HM")
    with pytest.raises(InvalidInput, match="strictly increasing"):
        actions.create_study(staff, "Bins", size_bins_mm=[30, 10])


def test_seed_is_random_when_not_given(admin):
    seeds = {actions.create_study(admin, f"S{i}").seed for i in range(3)}
    assert len(seeds) == 3


def test_each_setup_action_writes_exactly_one_audit_event(tmp_path, admin):
    study = actions.create_study(admin, "Audit", seed=1)
    steps = [
        ("add_modality", lambda: actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)),
        ("add_modality", lambda: actions.add_modality(admin, study, "aided", "Aided", shows_dl=True)),
        ("add_member", lambda: actions.add_member(admin, study, make_user("r1"), "reader")),
        ("add_member", lambda: actions.add_member(admin, study, make_user("stat"), "statistician")),
        ("import_cases", lambda: actions.import_cases(admin, study, write_manifest(tmp_path, balanced_rows(3, 2)))),
        ("update_study", lambda: actions.update_study(admin, study, washout_days=14)),
        ("launch_study", lambda: launch_study(admin, study, accept_missing_predictions=True)),
        ("close_study", lambda: actions.close_study(admin, study)),
    ]
    for verb, step in steps:
        total, same = AuditEvent.objects.count(), events(verb)
        step()
        assert AuditEvent.objects.count() == total + 1, verb
        assert events(verb) == same + 1, verb


def test_launch_is_refused_with_every_unmet_check(admin):
    study = actions.create_study(admin, "Empty", seed=1)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    events_before = AuditEvent.objects.count()
    with pytest.raises(NotReady) as caught:
        launch_study(admin, study)
    details = caught.value.details
    assert "at least 2 modalities needed, 1 configured" in details
    assert "at least 1 reader needed, none added" in details
    assert "no cases imported" in details
    assert "cannot be launched" in str(caught.value)
    study.refresh_from_db()
    assert study.status == "draft" and ReadingSession.objects.count() == 0
    assert AuditEvent.objects.count() == events_before


def test_launch_refuses_single_class_truth_and_warns_about_dl(tmp_path, admin):
    study = actions.create_study(admin, "One class", seed=1)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "Aided", shows_dl=True)
    actions.add_member(admin, study, make_user("r1"), "reader")
    rows = [r | {"truth": "crlm"} for r in balanced_rows(2, 1)]
    actions.import_cases(admin, study, write_manifest(tmp_path, rows))
    check = actions.readiness(study)
    assert any("one class only" in p for p in check.problems)
    # Missing DL predictions block the launch unless accepted; accepted, they are a warning.
    assert any("2 of 2 cases have no DL prediction" in p for p in check.problems)
    accepted = actions.readiness(study, accept_missing_predictions=True)
    assert "2 of 2 cases have no DL prediction: aided items will show none" in accepted.warnings
    assert any("only 1 reader" in w for w in check.warnings)


def test_launch_writes_the_stored_order_and_opens_first_sessions(tmp_path, admin):
    study = build_study(tmp_path, readers=3, n_patients=6, lesions_per_patient=2)
    assert study.status == "launched" and study.launched_at is not None
    sessions = ReadingSession.objects.filter(study=study)
    assert sessions.count() == 6  # 3 readers x 2 sessions
    assert all(s.available_from is not None for s in sessions.filter(index=1))
    assert all(s.available_from is None for s in sessions.filter(index=2))
    items = SessionItem.objects.filter(study=study)
    assert items.count() == 3 * 12 * 2
    cells = Counter((i.reader_id, i.case_id, i.modality_id) for i in items)
    assert set(cells.values()) == {1}


def test_stored_order_matches_the_design_and_is_never_recomputed(tmp_path, admin):
    study = build_study(tmp_path, readers=2)
    stored = list(
        SessionItem.objects.filter(study=study)
        .order_by("session_id", "position")
        .values_list("session_id", "position", "case_id", "modality_id")
    )
    # Re-running launch is refused; the rows stay exactly as written.
    with pytest.raises(NotReady, match="cannot be launched"):
        launch_study(admin, study)
    again = list(
        SessionItem.objects.filter(study=study)
        .order_by("session_id", "position")
        .values_list("session_id", "position", "case_id", "modality_id")
    )
    assert again == stored
    # And the stored order is the design's output for the stored seed.
    from readerstudy.studies.design import CaseRef, make_schedule

    cases = study.cases.order_by("case_id")
    readers = list(Membership.objects.filter(study=study, role="reader").order_by("user__username"))
    schedule = make_schedule(
        "crossover",
        study.seed,
        [m.user_id for m in readers],
        [CaseRef(c.pk, c.patient_id) for c in cases],
        list(study.modalities.order_by("order").values_list("pk", flat=True)),
        "none",
    )
    for membership in readers:
        for session in ReadingSession.objects.filter(study=study, reader=membership.user):
            got = list(session.items.order_by("position").values_list("case_id", "modality_id"))
            assert got == schedule[membership.user_id][session.index - 1]


def test_setup_is_refused_after_launch_and_for_non_admins(tmp_path, admin):
    study = build_study(tmp_path, readers=1)
    with pytest.raises(InvalidInput, match="only possible in draft"):
        actions.add_modality(admin, study, "second-look", "Second look", shows_dl=True)
    with pytest.raises(InvalidInput, match="only possible in draft"):
        actions.add_member(admin, study, make_user("late"), "reader")
    # Statisticians may still join a launched study.
    actions.add_member(admin, study, make_user("stat"), "statistician")
    reader = make_user("reader1")
    with pytest.raises(NotAllowed):
        actions.close_study(reader, study)
    with pytest.raises(InvalidInput, match="one role per study"):
        actions.add_member(admin, study, reader, "statistician")


def test_close_only_a_launched_study(tmp_path, admin):
    study = actions.create_study(admin, "Draft", seed=1)
    with pytest.raises(InvalidInput, match="only a launched study"):
        actions.close_study(admin, study)
    study = build_study(tmp_path, readers=1, name="Launched")
    actions.close_study(admin, study)
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED and study.closed_at is not None


def test_changing_size_bins_restratifies_cases_without_touching_them(tmp_path, admin):
    study = build_study(tmp_path, readers=1, launch=False)
    stored = list(study.cases.order_by("pk").values())
    actions.update_study(admin, study, size_bins_mm=[20])
    assert {c.size_stratum for c in study.cases.select_related("study")} == {"<=20", ">20"}
    assert list(study.cases.order_by("pk").values()) == stored  # the stratum is derived, not stored


@pytest.mark.parametrize("bins", ["10,30", [10, "30"], [True], [], [10, float("inf")], [0, 10], [10, 10]])
def test_bad_size_bins_are_refused_by_the_one_validator(admin, bins):
    with pytest.raises(InvalidInput, match="size bins"):
        actions.create_study(admin, "Bins", size_bins_mm=bins)


def test_sequential_launch_needs_unaided_first(tmp_path, admin):
    study = actions.create_study(admin, "Seq", design="sequential", seed=1)
    actions.add_modality(admin, study, "aided", "Aided", shows_dl=True, order=0)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False, order=1)
    assert any("unaided first" in p for p in actions.readiness(study).problems)


def test_a_new_study_has_the_reading_config_defaults_of_todays_study(admin):
    study = actions.create_study(admin, "Defaults", seed=1)
    assert study.question == "How likely is the marked lesion a metastasis?"
    assert (study.scale_low_label, study.scale_high_label) == ("certainly hemangioma", "certainly metastasis")
    assert (study.default_preset, study.hanging_layout, study.overlay_mode) == ("2", "1x1", "outline")
    assert study.overlay_hidden_labels == ["liver"] and study.label_legend == {}
    assert study.not_assessable_reasons == ["Lesion not visible", "Image quality insufficient", "Other"]
    assert "metastasis" in study.instructions and len(study.instructions) <= 20_000
    preset = next(p for p in study.window_presets if p["key"] == study.default_preset)
    assert preset["name"] == "Liver"


def test_reading_config_is_set_at_creation_and_updated_in_draft_with_one_event(admin):
    study = actions.create_study(
        admin, "Configured", seed=1, question="  Metastasis?  ", hanging_layout="2x2", label_legend={"liver": "x"}
    )
    assert (study.question, study.hanging_layout, study.label_legend) == ("Metastasis?", "2x2", {"liver": "x"})
    before = events("update_study")
    actions.update_study(admin, study, overlay_mode="off", not_assessable_reasons=["Motion", "Other"])
    study.refresh_from_db()
    assert study.overlay_mode == "off" and study.not_assessable_reasons == ["Motion", "Other"]
    assert events("update_study") == before + 1
    with pytest.raises(InvalidInput, match="unknown study field"):
        actions.create_study(admin, "Bad", seed=1, rating_max=5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"question": ""}, "question: must not be empty"),
        ({"question": "x" * 301}, "question: 301 characters; at most 300"),
        ({"question": 5}, "question: expected text"),
        ({"scale_low_label": "low\x00"}, "control characters"),
        ({"instructions": "x" * 20_001}, "instructions: 20001 characters; at most 20000"),
        ({"label_legend": ["liver"]}, "label_legend: expected an object"),
        ({"label_legend": {f"l{i}": "x" for i in range(17)}}, "17 labels; at most 16"),
        ({"label_legend": {"liver": "x" * 201}}, "201 characters; at most 200"),
        ({"label_legend": {"liver": 3}}, "expected text"),
        ({"default_preset": "6"}, "default_preset '6': expected one of 1, 2, 3, 4, 5"),
        ({"default_preset": 2}, "default_preset 2"),
        ({"hanging_layout": "3x3"}, "hanging_layout '3x3': expected one of 1x1, 1x2, 2x2"),
        ({"overlay_mode": "fill"}, "overlay_mode 'fill'"),
        ({"overlay_hidden_labels": "liver"}, "overlay_hidden_labels: expected a list"),
        ({"not_assessable_reasons": []}, "at least one reason"),
        ({"not_assessable_reasons": [f"r{i}" for i in range(11)]}, "11 entries; at most 10"),
        ({"not_assessable_reasons": ["Other", "Other"]}, "must be distinct"),
        ({"not_assessable_reasons": ["x" * 101]}, "101 characters; at most 100"),
    ],
)
def test_bad_reading_config_is_refused_and_nothing_changes(admin, changes, message):
    study = actions.create_study(admin, "Strict", seed=1)
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        actions.update_study(admin, study, **changes)
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        actions.create_study(admin, "Strict 2", seed=1, **changes)
    study.refresh_from_db()
    assert study.question.startswith("How likely") and study.default_preset == "2"
    assert not Study.objects.filter(name="Strict 2").exists()


def test_the_database_refuses_a_layout_or_overlay_mode_outside_the_choices(admin):
    from django.db import IntegrityError, transaction

    study = actions.create_study(admin, "Constrained", seed=1)
    for field, value in (("hanging_layout", "3x3"), ("overlay_mode", "blink")):
        with pytest.raises(IntegrityError), transaction.atomic():
            Study.objects.filter(pk=study.pk).update(**{field: value})


def test_a_reader_acknowledges_the_instructions_once_with_one_event(tmp_path, admin):
    from datetime import UTC, datetime

    from readerstudy.core.errors import NotFound

    study = build_study(tmp_path, readers=2)
    reader = make_user("reader1")
    when = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)
    membership = actions.acknowledge_instructions(reader, study, now=when)
    assert membership.instructions_acknowledged_at == when
    again = actions.acknowledge_instructions(reader, study, now=datetime(2026, 12, 4, tzinfo=UTC))
    assert again.instructions_acknowledged_at == when  # the first acknowledgement stays
    event = AuditEvent.objects.get(verb="acknowledge_instructions")
    assert (event.actor, event.study_id, event.object_id) == (reader, study.pk, str(membership.pk))
    assert event.after["acknowledged_at"] == when.isoformat() and len(event.after["instructions_sha256"]) == 64
    assert Membership.objects.get(study=study, user=make_user("reader2")).instructions_acknowledged_at is None
    for outsider in (admin, make_user("stranger")):  # the study's admin is no reader of it
        with pytest.raises(NotFound):
            actions.acknowledge_instructions(outsider, study)
    draft = build_study(tmp_path / "draft", readers=1, name="Draft", launch=False)
    with pytest.raises(NotFound):
        actions.acknowledge_instructions(reader, draft)
    assert AuditEvent.objects.filter(verb="acknowledge_instructions").count() == 1
