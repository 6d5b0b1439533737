"""The configuration page: editable in draft through update_study, read-only after launch; the admin likewise."""

import re

import pytest
from django.test import Client

from readerstudy.core.models import AuditEvent, Verb
from readerstudy.operations.configure import initial
from tests.factories import build_study

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def form_data(study, **changes):
    return {k: "" if v is None else v for k, v in {**initial(study), **changes}.items()}


def test_a_draft_is_edited_through_the_form(tmp_path, boss):
    study = build_study(tmp_path, admin=boss, readers=1, n_patients=2, lesions_per_patient=1, launch=False)
    client = client_for(boss)
    html = client.get(f"/studies/{study.pk}/configure/").content.decode()
    assert 'data-testid="config-form"' in html and 'data-testid="config-question"' in html
    assert 'data-testid="config-save"' in html and "config-readonly" not in html
    data = form_data(
        study,
        question="Is it a metastasis?",
        washout_days="14",
        size_bins_mm="5, 20",
        label_legend="lesion: the target\nliver: the organ",
        window_presets="1, Soft, 400, 40\n2, Liver, 150, 90",
        default_preset="1",
        not_assessable_reasons="Not visible\nMotion",
        overlay_hidden_labels="",
    )
    response = client.post(f"/studies/{study.pk}/configure/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    study.refresh_from_db()
    assert study.question == "Is it a metastasis?" and study.washout_days == 14 and study.size_bins_mm == [5, 20]
    assert study.label_legend == {"lesion": "the target", "liver": "the organ"}
    assert study.window_presets[1] == {"key": "2", "name": "Liver", "width": 150, "level": 90}
    assert study.not_assessable_reasons == ["Not visible", "Motion"] and study.overlay_hidden_labels == []
    assert AuditEvent.objects.filter(study=study, verb=Verb.UPDATE_STUDY).count() == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"question": "x" * 301},
        {"washout_days": "9999"},
        {"size_bins_mm": "30, 10"},
        {"size_bins_mm": "ten"},
        {"hanging_layout": "3x3"},
        {"not_assessable_reasons": ""},
        {"window_presets": "1, Soft, 400"},
        {"default_preset": "9"},
        {"label_legend": "no colon here"},
        {"instructions": "a\x07b"},
    ],
)
def test_bad_values_are_refused_and_nothing_changes(tmp_path, boss, changes):
    study = build_study(tmp_path, admin=boss, readers=1, n_patients=2, lesions_per_patient=1, launch=False)
    before = initial(study)
    response = client_for(boss).post(f"/studies/{study.pk}/configure/", form_data(study, **changes))
    assert response.status_code == 400
    study.refresh_from_db()
    assert initial(study) == before


def test_a_launched_study_shows_every_value_read_only_without_controls(tmp_path, boss):
    study = build_study(tmp_path, admin=boss, readers=1, n_patients=2, lesions_per_patient=1)
    client = client_for(boss)
    html = client.get(f"/studies/{study.pk}/configure/").content.decode()
    assert 'data-testid="config-readonly"' in html and "config-form" not in html and "config-save" not in html
    body = html.split('data-testid="study-nav"', 1)[1]  # the page below the top bar (whose log-out is a form)
    assert not re.search(r"<(textarea|select|button)\b", body)
    assert not re.search(r'<input(?![^>]*type="hidden")', body)
    assert study.question in html and "Not assessable" not in html
    response = client.post(f"/studies/{study.pk}/configure/", form_data(study, question="Changed?"))
    assert response.status_code == 302
    study.refresh_from_db()
    assert study.question != "Changed?"


def test_the_admin_shows_a_launched_study_read_only_without_delete(tmp_path, boss):
    from django.contrib.auth.models import Permission

    boss.user_permissions.add(*Permission.objects.filter(content_type__app_label="studies"))
    draft = build_study(tmp_path / "d", admin=boss, readers=1, n_patients=2, lesions_per_patient=1, launch=False,
                        name="Draft")  # fmt: skip
    launched = build_study(tmp_path / "l", admin=boss, readers=1, n_patients=2, lesions_per_patient=1, name="Run")
    client = client_for(boss)
    html = client.get(f"/admin/studies/study/{draft.pk}/change/").content.decode()
    assert 'name="_save"' in html and "deletelink" in html and 'name="question"' in html
    html = client.get(f"/admin/studies/study/{launched.pk}/change/").content.decode()
    assert 'name="_save"' not in html and "deletelink" not in html
    assert 'name="question"' not in html and 'name="modalities-0-key"' not in html
    assert 'name="memberships-0-role"' not in html and "add-row" not in html
    assert client.get(f"/admin/studies/study/{launched.pk}/delete/").status_code == 403


def test_the_clinical_information_switch_is_off_until_checked_and_shown_after_launch(tmp_path, boss):
    study = build_study(tmp_path, admin=boss, readers=1, n_patients=2, lesions_per_patient=1, launch=False)
    client = client_for(boss)
    html = client.get(f"/studies/{study.pk}/configure/").content.decode()
    assert re.search(r'<input type="checkbox" name="show_clinical" data-testid="config-show-clinical">', html)
    assert client.post(f"/studies/{study.pk}/configure/", form_data(study, show_clinical="on")).status_code == 302
    study.refresh_from_db()
    assert study.show_clinical is True
    event = AuditEvent.objects.filter(study=study, verb=Verb.UPDATE_STUDY).latest("seq")
    assert event.after["show_clinical"] is True and set(event.after) - set(event.before) == set()
    from readerstudy.reading.actions import launch_study

    launch_study(boss, study, accept_missing_predictions=True)
    html = client.get(f"/studies/{study.pk}/configure/").content.decode()
    assert re.search(r'data-testid="config-readonly-clinical">yes<', html)
