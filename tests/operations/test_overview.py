"""The study list's New study form and the overview: readiness with fixes, launch, precompute, interim switch."""

import re

import pytest
from django.test import Client

from readerstudy.core.models import AuditEvent, Verb
from readerstudy.studies.models import Study
from tests.factories import build_study, make_user, predict_all

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def checks(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-testid="readiness-check" data-key="(\w+)" data-ok="(true|false)"', html))


def test_new_study_form_creates_a_draft_with_two_modalities_and_its_creator_as_admin(boss):
    client = client_for(boss)
    page = client.get("/studies/").content.decode()
    assert 'data-testid="new-study-name"' in page and 'data-testid="new-study-submit"' in page
    response = client.post("/studies/", {"name": "Liver CT", "design": "crossover", "washout_days": "21",
                                         "unaided_label": "Unaided", "aided_label": "DL"})  # fmt: skip
    study = Study.objects.get(name="Liver CT")
    assert response.status_code == 302 and response.url == f"/studies/{study.pk}/"
    assert study.washout_days == 21 and study.memberships.get().user == boss
    assert list(study.modalities.values_list("key", "shows_dl")) == [("unaided", False), ("aided", True)]


@pytest.mark.parametrize("data", [{"name": ""}, {"name": "x" * 201}, {"washout_days": "-1"}, {"design": "other"}])
def test_new_study_form_refuses_bad_input(boss, data):
    form = {"name": "S", "design": "crossover", "washout_days": "0", "unaided_label": "U", "aided_label": "A", **data}
    assert client_for(boss).post("/studies/", form).status_code == 400
    assert not Study.objects.exists()


def test_new_study_form_is_not_offered_to_non_staff(db):
    page = client_for(make_user("plain")).get("/studies/").content.decode()
    assert "new-study-name" not in page
    client_for(make_user("plain")).post("/studies/", {"name": "X", "design": "crossover", "washout_days": "1",
                                                      "unaided_label": "U", "aided_label": "A"})  # fmt: skip
    assert not Study.objects.exists()


def test_overview_lists_every_check_with_a_fix_for_the_unmet_ones(boss):
    client = client_for(boss)
    client.post("/studies/", {"name": "Fresh", "design": "crossover", "washout_days": "0",
                              "unaided_label": "U", "aided_label": "A"})  # fmt: skip
    study = Study.objects.get(name="Fresh")
    html = client.get(f"/studies/{study.pk}/").content.decode()
    assert checks(html) == {
        "status": "true", "modalities": "true", "readers": "false", "cases": "false", "planned_power": "true",
    }  # fmt: skip
    fixes = re.findall(r'<a href="([^"]+)" data-testid="readiness-fix">', html)
    assert fixes == [f"/studies/{study.pk}/readers/", f"/studies/{study.pk}/import/"]
    assert re.search(r'data-testid="launch-button" disabled', html)
    for nav in ("nav-overview", "nav-configure", "nav-readers", "nav-import", "nav-progress"):
        assert f'data-testid="{nav}"' in html


def test_launch_needs_the_acceptance_of_missing_predictions_which_is_recorded(tmp_path, boss):
    study = build_study(tmp_path, admin=boss, readers=2, n_patients=2, lesions_per_patient=1, launch=False)
    client = client_for(boss)
    html = client.get(f"/studies/{study.pk}/").content.decode()
    assert checks(html)["predictions"] == "false"
    assert f'href="/studies/{study.pk}/#precompute" data-testid="readiness-fix"' in html
    assert 'data-testid="accept-missing-predictions"' in html
    assert not re.search(r'data-testid="launch-button" disabled', html)

    client.post(f"/studies/{study.pk}/launch/")
    study.refresh_from_db()
    assert study.status == "draft"
    client.post(f"/studies/{study.pk}/launch/", {"accept_missing_predictions": "on"})
    study.refresh_from_db()
    assert study.status == "launched"
    event = AuditEvent.objects.get(study=study, verb=Verb.LAUNCH_STUDY)
    assert event.actor == boss and event.after["accepted_missing_predictions"]["cases_without_prediction"] == 2


def test_a_study_with_every_prediction_launches_without_the_box(tmp_path, boss):
    study = build_study(tmp_path, admin=boss, readers=2, n_patients=2, lesions_per_patient=1, launch=False)
    predict_all(study, 0.4)
    client = client_for(boss)
    html = client.get(f"/studies/{study.pk}/").content.decode()
    assert set(checks(html).values()) == {"true"} and "accept-missing-predictions" not in html
    client.post(f"/studies/{study.pk}/launch/")
    study.refresh_from_db()
    assert study.status == "launched"
    assert 'data-testid="launch-button"' not in client.get(f"/studies/{study.pk}/").content.decode()


def test_precompute_of_a_study_without_cases_says_so(boss):
    client = client_for(boss)
    client.post("/studies/", {"name": "Empty", "design": "crossover", "washout_days": "0",
                              "unaided_label": "U", "aided_label": "A"})  # fmt: skip
    study = Study.objects.get(name="Empty")
    response = client.post(f"/studies/{study.pk}/precompute/", follow=True)
    assert "no cases to precompute" in response.content.decode()
    assert not study.precompute_runs.exists()


def test_interim_toggle_on_a_running_study(tmp_path, boss):
    study = build_study(tmp_path, admin=boss, readers=1, n_patients=2, lesions_per_patient=1)
    client = client_for(boss)
    assert 'data-testid="interim-toggle"' in client.get(f"/studies/{study.pk}/").content.decode()
    client.post(f"/studies/{study.pk}/interim/", {"interim_analysis_allowed": "on"})
    study.refresh_from_db()
    assert study.interim_analysis_allowed
    client.post(f"/studies/{study.pk}/interim/", {})
    study.refresh_from_db()
    assert not study.interim_analysis_allowed
    assert AuditEvent.objects.filter(study=study, verb=Verb.SET_INTERIM_ANALYSIS).count() == 2


@pytest.mark.parametrize("path", ["", "configure/", "readers/", "progress/", "progress.json", "progress.csv"])
def test_pages_of_another_admins_study_are_not_found(tmp_path, boss, path):
    study = build_study(tmp_path, admin=boss, readers=1, n_patients=2, lesions_per_patient=1)
    other = make_user("other-admin", staff=True)
    assert client_for(other).get(f"/studies/{study.pk}/{path}").status_code == 404
    assert client_for(other).get(f"/studies/999999/{path}").status_code == 404
    for post in ("launch/", "interim/", "precompute/"):
        assert client_for(other).post(f"/studies/{study.pk}/{post}").status_code == 404
