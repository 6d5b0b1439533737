"""The admin a study admin uses (through the actions)."""

import pytest
from django.urls import reverse

from readerstudy.core.models import AuditEvent
from readerstudy.studies import actions
from readerstudy.studies.models import Case, Membership, Modality, Study
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user():
    return make_user("admin", superuser=True)


@pytest.fixture
def logged_in(client, admin_user):
    client.force_login(admin_user)
    return client


def test_study_page_shows_the_readiness_checklist(tmp_path, logged_in, admin_user):
    study = actions.create_study(admin_user, "Draft study", seed=1)
    page = logged_in.get(reverse("admin:studies_study_change", args=[study.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "at least 2 modalities needed, 0 configured" in html
    assert "no cases imported" in html


def test_case_list_shows_and_filters_the_derived_stratum_under_each_studys_bins(tmp_path, logged_in, admin_user):
    ten = build_study(tmp_path / "a", readers=1, n_patients=3, name="Default bins", launch=False)
    twenty = build_study(tmp_path / "b", readers=1, n_patients=3, name="Twenty", launch=False)
    actions.update_study(admin_user, twenty, size_bins_mm=[20])
    url = reverse("admin:studies_case_changelist")
    page = logged_in.get(url)
    assert page.status_code == 200
    offered = [choice["display"] for choice in page.context["cl"].filter_specs[1].choices(page.context["cl"])]
    assert offered == ["All", "<=10", "<=20", "10-30", ">20", ">30"]  # by upper, then lower edge
    for label in ("<=10", "10-30", ">30", "<=20", ">20"):
        shown = logged_in.get(url, {"size_stratum": label}).context["cl"].queryset
        expected = [c.pk for c in Case.objects.select_related("study") if c.size_stratum == label]
        assert sorted(shown.values_list("pk", flat=True)) == sorted(expected) and expected, label
    assert {ten.pk, twenty.pk} == set(Case.objects.values_list("study_id", flat=True))


# The reading-page fields as the add form posts them (prefilled with the defaults; here a few changed).
READING_CONFIG_FORM = {
    "question": "Metastasis?",
    "scale_low_label": "certainly hemangioma",
    "scale_high_label": "certainly metastasis",
    "instructions": "Read carefully.\r\nRate every lesion.",
    "label_legend": '{"target lesion": "the lesion to rate"}',
    "default_preset": "1",
    "hanging_layout": "1x2",
    "overlay_mode": "fill_outline",
    "overlay_hidden_labels": '["liver"]',
    "not_assessable_reasons": '["Lesion not visible", "Other"]',
}


def test_admin_creates_a_study_with_inline_modalities_through_actions(logged_in, admin_user):
    reader = make_user("reader1")
    data = {
        "name": "From the admin",
        "description": "",
        "design": "crossover",
        "washout_days": "21",
        "patient_grouping": "spread",
        "size_bins_mm": "[10, 30]",
        **READING_CONFIG_FORM,
        "modalities-TOTAL_FORMS": "2",
        "modalities-INITIAL_FORMS": "0",
        "modalities-0-key": "unaided",
        "modalities-0-label": "Unaided",
        "modalities-0-order": "0",
        "modalities-1-key": "aided",
        "modalities-1-label": "Aided",
        "modalities-1-shows_dl": "on",
        "modalities-1-order": "1",
        "memberships-TOTAL_FORMS": "1",
        "memberships-INITIAL_FORMS": "0",
        "memberships-0-user": str(reader.pk),
        "memberships-0-role": "reader",
        "cases-TOTAL_FORMS": "0",
        "cases-INITIAL_FORMS": "0",
    }
    response = logged_in.post(reverse("admin:studies_study_add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    study = Study.objects.get(name="From the admin")
    assert study.washout_days == 21 and study.patient_grouping == "spread"
    assert (study.question, study.default_preset, study.hanging_layout, study.overlay_mode) == (
        "Metastasis?",
        "1",
        "1x2",
        "fill_outline",
    )
    assert study.label_legend == {"target lesion": "the lesion to rate"}
    assert study.not_assessable_reasons == ["Lesion not visible", "Other"]
    assert list(Modality.objects.filter(study=study).values_list("key", "shows_dl")) == [
        ("unaided", False),
        ("aided", True),
    ]
    assert Membership.objects.get(study=study, user=reader).role == "reader"
    verbs = sorted(AuditEvent.objects.filter(study=study).values_list("verb", flat=True))
    assert verbs == ["add_member", "add_modality", "add_modality", "create_study"]


def test_launch_and_close_admin_actions_go_through_the_actions(tmp_path, logged_in, admin_user):
    study = build_study(tmp_path, readers=2, launch=False, predict=0.5)  # missing predictions would block launch
    url = reverse("admin:studies_study_changelist")
    response = logged_in.post(url, {"action": "launch", "_selected_action": [study.pk]}, follow=True)
    assert "launched, 48 items stored" in response.content.decode()
    study.refresh_from_db()
    assert study.status == "launched"
    assert AuditEvent.objects.filter(verb="launch_study", actor=admin_user).count() == 1
    response = logged_in.post(url, {"action": "launch", "_selected_action": [study.pk]}, follow=True)
    assert "cannot be launched" in response.content.decode()
    logged_in.post(url, {"action": "close", "_selected_action": [study.pk]}, follow=True)
    study.refresh_from_db()
    assert study.status == "closed"


def test_the_admin_launches_without_predictions_only_when_told_to_accept_them(tmp_path, logged_in, admin_user):
    study = build_study(tmp_path, readers=1, launch=False)
    url = reverse("admin:studies_study_changelist")
    response = logged_in.post(url, {"action": "launch", "_selected_action": [study.pk]}, follow=True)
    assert "no DL prediction" in response.content.decode()
    study.refresh_from_db()
    assert study.status == "draft"
    action = "launch_accepting_missing_predictions"
    response = logged_in.post(url, {"action": action, "_selected_action": [study.pk]}, follow=True)
    assert "launched" in response.content.decode()
    study.refresh_from_db()
    assert study.status == "launched"
    event = AuditEvent.objects.get(verb="launch_study", study=study)
    assert event.after["accepted_missing_predictions"]


def test_launch_refusal_lists_every_problem_in_the_admin(logged_in, admin_user):
    study = actions.create_study(admin_user, "Not ready", seed=1)
    response = logged_in.post(
        reverse("admin:studies_study_changelist"), {"action": "launch", "_selected_action": [study.pk]}, follow=True
    )
    html = response.content.decode()
    for problem in ("at least 2 modalities needed", "at least 1 reader needed", "no cases imported"):
        assert problem in html


def test_audit_log_is_read_only_in_the_admin(tmp_path, logged_in):
    build_study(tmp_path, readers=1)
    event = AuditEvent.objects.first()
    assert logged_in.get(reverse("admin:core_auditevent_changelist")).status_code == 200
    assert logged_in.get(reverse("admin:core_auditevent_change", args=[event.pk])).status_code == 200
    assert logged_in.get(reverse("admin:core_auditevent_add")).status_code == 403
    assert logged_in.post(reverse("admin:core_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_non_superuser_admin_sees_only_their_studies(tmp_path, client, admin_user):
    mine = build_study(tmp_path, readers=1, name="Mine", launch=False)
    build_study(tmp_path / "other", readers=1, name="Other", launch=False)
    coordinator = make_user("coordinator", staff=True)
    actions.add_member(admin_user, mine, coordinator, "admin")
    from django.contrib.auth.models import Permission

    coordinator.user_permissions.add(*Permission.objects.filter(codename__in=["view_study", "change_study"]))
    client.force_login(coordinator)
    html = client.get(reverse("admin:studies_study_changelist")).content.decode()
    assert "Mine" in html and "Other" not in html


def _change_form(study: Study, **changes: str) -> dict:
    data = {
        "description": study.description,
        "design": study.design,
        "washout_days": str(study.washout_days),
        "patient_grouping": study.patient_grouping,
        "size_bins_mm": "[10, 30]",
        **READING_CONFIG_FORM,
        **changes,
    }
    for prefix in ("modalities", "memberships", "cases"):
        data |= {f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"}
    return data


def test_admin_edits_the_reading_config_of_a_draft_through_the_action_and_refuses_bad_values(logged_in, admin_user):
    study = actions.create_study(admin_user, "Config study", seed=1)
    url = reverse("admin:studies_study_change", args=[study.pk])
    response = logged_in.post(url, _change_form(study, default_preset="9"), follow=True)
    assert "default_preset &#x27;9&#x27;: expected one of 1, 2, 3, 4, 5" in response.content.decode().lower()
    study.refresh_from_db()
    assert study.default_preset == "2" and study.question.startswith("How likely")
    response = logged_in.post(url, _change_form(study, question="Metastasis?"))
    assert response.status_code == 302
    study.refresh_from_db()
    assert study.question == "Metastasis?" and study.hanging_layout == "1x2"
    event = AuditEvent.objects.filter(study=study, verb="update_study").get()
    assert event.before["question"].startswith("How likely") and event.after["question"] == "Metastasis?"
    assert len(event.after["instructions_sha256"]) == 64 and "instructions" not in event.after


def test_reading_config_is_read_only_in_the_admin_once_launched(tmp_path, logged_in, admin_user):
    study = build_study(tmp_path, readers=2)
    page = logged_in.get(reverse("admin:studies_study_change", args=[study.pk]))
    form_fields = page.context["adminform"].form.fields
    for field in actions.READING_CONFIG_FIELDS:
        assert field not in form_fields, field  # shown read-only: the set-up is frozen at launch
    with pytest.raises(Exception, match="set-up is only possible in draft"):
        actions.update_study(admin_user, study, question="Changed?")
