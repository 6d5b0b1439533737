"""The admin a study admin uses (through the actions), and the one-command demo."""

import pytest
from django.core.management import call_command
from django.urls import reverse

from readerstudy.core.models import AuditEvent
from readerstudy.reading.models import ReadingSession, SessionItem
from readerstudy.results.management.commands.demo import DEMO_STUDY
from readerstudy.studies import actions
from readerstudy.studies.models import Case, Membership, Modality, Patient, Study
from tests.factories import balanced_rows, build_study, make_user, write_manifest

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


def test_admin_creates_a_study_with_inline_modalities_through_actions(logged_in, admin_user):
    reader = make_user("reader1")
    data = {
        "name": "From the admin",
        "description": "",
        "design": "crossover",
        "washout_days": "21",
        "patient_grouping": "spread",
        "size_bins_mm": "[10, 30]",
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
    assert list(Modality.objects.filter(study=study).values_list("key", "shows_dl")) == [
        ("unaided", False),
        ("aided", True),
    ]
    assert Membership.objects.get(study=study, user=reader).role == "reader"
    verbs = sorted(AuditEvent.objects.filter(study=study).values_list("verb", flat=True))
    assert verbs == ["add_member", "add_modality", "add_modality", "create_study"]


def test_launch_and_close_admin_actions_go_through_the_actions(tmp_path, logged_in, admin_user):
    study = build_study(tmp_path, readers=2, launch=False)
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


def test_demo_command_builds_a_launched_study_and_duplicates_nothing(tmp_path, monkeypatch, settings):
    settings.BASE_DIR = tmp_path  # the generated password file goes here, not into the checkout
    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-123")
    data = tmp_path / "demo"
    call_command("demo", data_dir=str(data), no_progress=True, no_precompute=True)
    study = Study.objects.get(name=DEMO_STUDY)
    assert study.status == "launched" and study.design == "crossover"
    n_cases, n_patients = Case.objects.filter(study=study).count(), Patient.objects.filter(study=study).count()
    assert n_cases >= 40 and n_patients >= 15
    labels = set(Case.objects.filter(study=study).values_list("truth__label", flat=True))
    assert labels == {"crlm", "hemangioma"}
    strata = set(Case.objects.filter(study=study).values_list("size_stratum", flat=True))
    assert strata == {"<=10", "10-30", ">30"}
    readers = Membership.objects.filter(study=study, role="reader").count()
    assert readers == 3
    assert ReadingSession.objects.filter(study=study).count() == 6
    assert SessionItem.objects.filter(study=study).count() == 3 * 2 * n_cases
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("demo-pass-123")

    counts = [m.objects.count() for m in (Study, Case, Patient, SessionItem, AuditEvent, get_user_model())]
    call_command("demo", data_dir=str(data), no_progress=True, no_precompute=True)
    assert [m.objects.count() for m in (Study, Case, Patient, SessionItem, AuditEvent, get_user_model())] == counts


def test_import_cases_command_prints_every_bad_row(tmp_path, admin_user):
    from django.core.management.base import CommandError

    study = actions.create_study(admin_user, "Cmd", seed=1)
    rows = balanced_rows(2, 1)
    rows[1]["truth"] = "unknown"
    rows[0]["diameter_mm"] = "-1"
    path = write_manifest(tmp_path, rows)
    with pytest.raises(CommandError) as caught:
        call_command("import_cases", "Cmd", str(path), "--as", "admin")
    assert "row 2 column diameter_mm" in str(caught.value) and "row 3 column truth" in str(caught.value)
    rows = balanced_rows(2, 1)
    call_command("import_cases", "Cmd", str(write_manifest(tmp_path / "ok", rows)), "--as", "admin")
    assert study.cases.count() == 2


def test_demo_precomputes_its_own_studies_and_never_blocks_on_another_studys_failure(
    tmp_path, monkeypatch, settings, capsys
):
    """Another study's case that cannot be predicted is reported; the demo still finishes (make demo serves)."""
    from inference.management.commands import precompute as command
    from inference.precompute import PrecomputeSummary
    from readerstudy.results.management.commands.demo import SIMULATED_STUDY

    settings.BASE_DIR = tmp_path
    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-123")
    other = build_study(tmp_path / "other", readers=1, name="Someone else's study", n_patients=1, lesions_per_patient=2)
    seen: list[str] = []

    def fake_precompute(cases, **kwargs) -> PrecomputeSummary:  # the real one, minus minutes of CPU per case
        summary = PrecomputeSummary()
        for case in cases:
            seen.append(case.study.name)
            if case.study_id == other.pk:  # what the real pipeline does with this study's series: fail
                summary.failed += 1
                summary.errors.append(f"{case.case_id}: ValueError: broken series")
            else:
                summary.done += 1
        return summary

    monkeypatch.setattr(command, "load_models", lambda backend, device: (object(), object()))
    monkeypatch.setattr(command, "precompute", fake_precompute)
    call_command("demo", data_dir=str(tmp_path / "demo"), no_progress=True)  # no CommandError
    assert set(seen) == {DEMO_STUDY, SIMULATED_STUDY}
    assert len(seen) == Case.objects.exclude(study=other).count()
    out = capsys.readouterr().out
    assert "0 failed" in out
    assert f"study {other.name!r} (not the demo's) has 2 case(s) without a DL prediction" in out
