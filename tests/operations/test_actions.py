"""The studies, reading and inference actions behind the operations pages."""

import pytest

from inference import actions as inference_actions
from inference.models import PrecomputeRun
from readerstudy.core.errors import InvalidInput, NotAllowed, NotReady
from readerstudy.core.models import AuditEvent, Verb
from readerstudy.reading.actions import launch_study
from readerstudy.studies import actions
from readerstudy.studies.models import Membership, Study
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


def test_set_up_study_makes_the_creator_admin_with_two_modalities(boss):
    study = actions.set_up_study(boss, "  Liver  ", design="sequential", washout_days=0)
    assert study.name == "Liver" and study.design == "sequential" and study.status == "draft"
    assert [(m.key, m.shows_dl, m.order) for m in study.modalities.order_by("order")] == [
        ("unaided", False, 0),
        ("aided", True, 1),
    ]
    assert Membership.objects.get(study=study, user=boss).role == "admin"
    verbs = list(AuditEvent.objects.filter(study=study).order_by("seq").values_list("verb", flat=True))
    assert verbs == ["create_study", "add_modality", "add_modality"]


@pytest.mark.parametrize(
    "kwargs", [{"washout_days": -1}, {"washout_days": 10_000}, {"design": "parallel"}, {"unaided_label": "x" * 101}]
)
def test_set_up_study_refuses_bad_values_and_writes_nothing(boss, kwargs):
    with pytest.raises(InvalidInput):
        actions.set_up_study(boss, "Bad", **kwargs)
    assert not Study.objects.filter(name="Bad").exists()


def test_set_up_study_is_for_staff_only(db):
    with pytest.raises(NotAllowed):
        actions.set_up_study(make_user("nobody"), "Mine")


def test_update_study_validates_name_washout_grouping_and_presets(tmp_path, boss):
    study = build_study(tmp_path, admin=boss, readers=1, n_patients=2, lesions_per_patient=1, launch=False)
    actions.set_up_study(boss, "Taken")
    for changes in (
        {"name": "Taken"},
        {"name": "  "},
        {"washout_days": 5000},
        {"washout_days": "7"},
        {"patient_grouping": "random"},
        {"description": "x" * 5001},
        {"window_presets": [{"key": "9", "name": "x", "width": 10, "level": 0}]},
        {"window_presets": [{"key": "1", "name": "x", "width": 0, "level": 0}]},
        {"window_presets": [{"key": "1", "name": "a", "width": 10, "level": 0}] * 2},
        {"window_presets": [{"key": "1", "name": "Only", "width": 400, "level": 40}]},  # default "2" is gone
    ):
        with pytest.raises(InvalidInput):
            actions.update_study(boss, study, **changes)
    presets = [
        {"key": "1", "name": "Soft", "width": 400, "level": 40},
        {"key": "3", "name": "N", "width": 90, "level": 80},
    ]
    study = actions.update_study(boss, study, name="Renamed", window_presets=presets, default_preset="3")
    assert (study.name, study.window_presets, study.default_preset) == ("Renamed", presets, "3")
    event = AuditEvent.objects.filter(study=study, verb=Verb.UPDATE_STUDY).order_by("-seq").first()
    assert event.after["window_presets"] == presets and event.after["name"] == "Renamed"


def test_interim_flag_is_set_by_its_admin_with_an_event(tmp_path, boss):
    study = build_study(tmp_path, admin=boss, readers=1, n_patients=2, lesions_per_patient=1)
    with pytest.raises(NotAllowed):
        actions.set_interim_analysis(make_user("stranger", staff=True), study, True)
    study = actions.set_interim_analysis(boss, study, True)
    assert Study.objects.get(pk=study.pk).interim_analysis_allowed
    event = AuditEvent.objects.get(study=study, verb=Verb.SET_INTERIM_ANALYSIS)
    assert (event.before, event.after) == ({"interim_analysis_allowed": False}, {"interim_analysis_allowed": True})
    actions.set_interim_analysis(boss, study, True)  # unchanged: no second event
    assert AuditEvent.objects.filter(verb=Verb.SET_INTERIM_ANALYSIS).count() == 1
    with pytest.raises(InvalidInput):
        actions.set_interim_analysis(boss, study, "yes")


def test_missing_predictions_block_launch_unless_accepted_and_the_launch_event_records_it(tmp_path, boss):
    study = build_study(tmp_path, admin=boss, readers=2, n_patients=2, lesions_per_patient=1, launch=False)
    check = actions.readiness(study)
    predictions = next(c for c in check.checks if c.key == "predictions")
    assert not predictions.ok and check.missing_predictions == 2
    with pytest.raises(NotReady) as caught:
        launch_study(boss, study)
    assert any("2 of 2 cases have no DL prediction" in d for d in caught.value.details)
    launch_study(boss, study, accept_missing_predictions=True)
    event = AuditEvent.objects.get(study=study, verb=Verb.LAUNCH_STUDY)
    assert event.actor == boss
    assert event.after["accepted_missing_predictions"] == {"cases_without_prediction": 2, "aided_modalities": ["aided"]}


def test_a_launch_with_every_prediction_records_no_acceptance(tmp_path, boss):
    study = build_study(tmp_path, admin=boss, readers=1, n_patients=2, lesions_per_patient=1, predict=0.5)
    assert "accepted_missing_predictions" not in AuditEvent.objects.get(study=study, verb=Verb.LAUNCH_STUDY).after


def test_readiness_checks_are_named_and_say_what_is_wrong(boss):
    study = actions.set_up_study(boss, "Empty")
    checks = {c.key: c for c in actions.readiness(study).checks}
    assert checks["status"].ok and checks["modalities"].ok
    assert not checks["readers"].ok and not checks["cases"].ok
    assert checks["cases"].message == "no cases imported"


def test_add_reader_existing_user_or_new_account_with_metadata(tmp_path, boss):
    study = build_study(tmp_path, admin=boss, readers=0, n_patients=2, lesions_per_patient=1, launch=False)
    make_user("radiologist")
    added = actions.add_reader(boss, study, "radiologist", specialty="Abdominal", years_experience=12, training="1 h")
    assert not added.created_user
    m = added.membership
    assert (m.role, m.specialty, m.years_experience, m.training) == ("reader", "Abdominal", 12, "1 h")
    new = actions.add_reader(boss, study, "newbie", email="newbie@example.org", years_experience=0)
    assert new.created_user and not new.membership.user.has_usable_password()
    assert new.membership.user.email == "newbie@example.org"
    verbs = list(AuditEvent.objects.filter(study=study).order_by("-seq").values_list("verb", flat=True)[:3])
    assert verbs == ["add_member", "create_user", "add_member"]
    add_event = AuditEvent.objects.filter(study=study, verb=Verb.ADD_MEMBER).order_by("-seq").first()
    assert add_event.after["years_experience"] == 0


@pytest.mark.parametrize(
    ("username", "kwargs", "message"),
    [
        ("ghost", {}, "give an e-mail address"),
        ("bad name!", {"email": "a@b.org"}, "letters, digits"),
        ("x" * 151, {"email": "a@b.org"}, "at most 150"),
        ("ok", {"email": "not-an-address"}, "not an e-mail"),
        ("ok", {"email": "a@b.org", "years_experience": 61}, "0 to 60"),
        ("ok", {"email": "a@b.org", "years_experience": -1}, "0 to 60"),
        ("ok", {"email": "a@b.org", "years_experience": True}, "whole number"),
        ("ok", {"email": "a@b.org", "training": "x" * 501}, "at most 500"),
        ("ok", {"email": "a@b.org", "specialty": "a\x00b"}, "control characters"),
    ],
)
def test_add_reader_refuses_hostile_values(tmp_path, boss, username, kwargs, message):
    study = build_study(tmp_path, admin=boss, readers=0, n_patients=2, lesions_per_patient=1, launch=False)
    with pytest.raises(InvalidInput, match=message):
        actions.add_reader(boss, study, username, **kwargs)
    assert not Membership.objects.filter(study=study, role="reader").exists()


def test_readers_are_added_only_to_drafts_but_their_metadata_stays_editable(tmp_path, boss):
    study = build_study(tmp_path, admin=boss, readers=1, n_patients=2, lesions_per_patient=1)
    make_user("late")
    with pytest.raises(InvalidInput, match="draft"):
        actions.add_reader(boss, study, "late")
    reader = Membership.objects.get(study=study, role="reader")
    actions.update_reader_profile(boss, reader, specialty="GI radiology", years_experience=60, training="")
    reader.refresh_from_db()
    assert (reader.specialty, reader.years_experience) == ("GI radiology", 60)
    event = AuditEvent.objects.get(study=study, verb=Verb.UPDATE_MEMBER)
    assert event.before["years_experience"] is None and event.after["years_experience"] == 60
    admin_row = Membership.objects.get(study=study, user=boss)
    with pytest.raises(InvalidInput, match="not a reader"):
        actions.update_reader_profile(boss, admin_row, specialty="", years_experience=None, training="")


def test_an_empty_precompute_is_refused_and_a_run_of_zero_cases_fails(boss):
    study = actions.set_up_study(boss, "No cases")
    with pytest.raises(InvalidInput, match="no cases"):
        inference_actions.queue_precompute(boss, study)
    run = PrecomputeRun.objects.create(study=study, created_by=boss, backend="phantom-unet", device="cpu")
    inference_actions.precompute_progress(run, n_cases=0)
    inference_actions.finish_precompute(run, errors=[], failed=False)
    run.refresh_from_db()
    assert run.status == "failed" and "no cases" in run.message
