"""The readers page: add an existing user or a new account (set-password link by e-mail), reader metadata,
removal only in draft; the report lists the readers' metadata."""

import re

import pytest
from django.core import mail
from django.test import Client

from readerstudy.results.models import AnalysisRun
from readerstudy.studies.models import Membership
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def draft(tmp_path, boss):
    return build_study(tmp_path, admin=boss, readers=1, n_patients=2, lesions_per_patient=1, launch=False)


def test_the_page_lists_members_with_roles_and_the_add_form(draft, boss):
    html = client_for(boss).get(f"/studies/{draft.pk}/readers/").content.decode()
    assert html.count('data-testid="reader-row"') == 1 and 'data-reader="reader1"' in html
    assert "Study admin" in html
    for hook in (
        "reader-username",
        "reader-email",
        "reader-specialty",
        "reader-years",
        "reader-training",
        "reader-add",
    ):
        assert f'data-testid="{hook}"' in html


def test_a_new_account_gets_a_set_password_link_that_works_once(draft, boss):
    client = client_for(boss)
    data = {"username": "dr.new", "email": "new@example.org", "specialty": "Abdominal radiology",
            "years_experience": "7", "training": "30 min"}  # fmt: skip
    response = client.post(f"/studies/{draft.pk}/readers/", data)
    assert response.status_code == 302
    m = Membership.objects.get(study=draft, user__username="dr.new")
    assert (m.role, m.specialty, m.years_experience, m.training) == ("reader", "Abdominal radiology", 7, "30 min")
    assert not m.user.has_usable_password()
    (message,) = mail.outbox
    assert message.to == ["new@example.org"]
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", message.body).group(1)
    anonymous = Client()
    page = anonymous.get(link, follow=True)
    assert page.status_code == 200
    form_url = page.redirect_chain[-1][0] if page.redirect_chain else link
    done = anonymous.post(form_url, {"new_password1": "a-long-Passphrase-42", "new_password2": "a-long-Passphrase-42"})
    assert done.status_code == 302
    m.user.refresh_from_db()
    assert m.user.check_password("a-long-Passphrase-42")
    assert anonymous.get(link, follow=True).context["validlink"] is False  # used once


def test_an_existing_user_is_added_by_name(draft, boss):
    make_user("dr.old")
    client_for(boss).post(f"/studies/{draft.pk}/readers/", {"username": "dr.old", "years_experience": "60"})
    assert Membership.objects.get(study=draft, user__username="dr.old").years_experience == 60
    assert mail.outbox == []


@pytest.mark.parametrize(
    "data",
    [
        {"username": "ghost"},  # no such user and no e-mail
        {"username": "x", "email": "x@example.org", "years_experience": "61"},
        {"username": "x", "email": "x@example.org", "years_experience": "-1"},
        {"username": "x", "email": "x@example.org", "training": "t" * 501},
        {"username": "x", "email": "not an address"},
        {"username": "bad name", "email": "x@example.org"},
        {"username": "reader1"},  # already a reader
    ],
)
def test_bad_readers_are_refused(draft, boss, data):
    response = client_for(boss).post(f"/studies/{draft.pk}/readers/", data)
    assert response.status_code == 400
    assert Membership.objects.filter(study=draft, role="reader").count() == 1 and mail.outbox == []


def test_metadata_is_editable_and_removal_only_in_draft(tmp_path, draft, boss):
    client = client_for(boss)
    m = Membership.objects.get(study=draft, role="reader")
    client.post(f"/studies/{draft.pk}/readers/{m.pk}/", {"specialty": "GI", "years_experience": "3", "training": "x"})
    m.refresh_from_db()
    assert (m.specialty, m.years_experience, m.training) == ("GI", 3, "x")
    client.post(f"/studies/{draft.pk}/readers/{m.pk}/", {"years_experience": "99"})
    m.refresh_from_db()
    assert m.years_experience == 3
    client.post(f"/studies/{draft.pk}/readers/{m.pk}/remove/")
    assert not Membership.objects.filter(pk=m.pk).exists()

    launched = build_study(tmp_path / "l", admin=boss, readers=1, n_patients=2, lesions_per_patient=1, name="L")
    r = Membership.objects.get(study=launched, role="reader")
    html = client.get(f"/studies/{launched.pk}/readers/").content.decode()
    assert "reader-remove" not in html and "reader-add" not in html and 'data-testid="reader-save"' in html
    client.post(f"/studies/{launched.pk}/readers/{r.pk}/remove/")
    assert Membership.objects.filter(pk=r.pk).exists()
    client.post(f"/studies/{launched.pk}/readers/{r.pk}/", {"specialty": "Body", "years_experience": "10"})
    r.refresh_from_db()
    assert r.specialty == "Body"
    # A member of another study is not found through this one.
    other = Membership.objects.get(study=draft, user=boss)
    assert client.post(f"/studies/{launched.pk}/readers/{other.pk}/", {"specialty": "x"}).status_code == 404


def test_the_report_lists_the_readers_metadata(tmp_path, boss):
    study = build_study(tmp_path, admin=boss, readers=2, n_patients=2, lesions_per_patient=1)
    Membership.objects.filter(study=study, user__username="reader1").update(
        specialty="Abdominal", years_experience=12, training="<b>one hour</b>"
    )
    run = AnalysisRun.objects.create(study=study, created_by=boss, parameters={"analyses": []}, status="done")
    html = client_for(boss).get(f"/results/run/{run.pk}/").content.decode()
    assert 'data-testid="report-readers"' in html and html.count('data-testid="report-reader"') == 2
    assert "Abdominal" in html and "12" in html and "&lt;b&gt;one hour&lt;/b&gt;" in html
    assert "not recorded" in html  # reader2
