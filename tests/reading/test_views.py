"""Reader pages: the study's instructions come before the first session; dates in the one site zone."""

from datetime import UTC, datetime

import pytest
from django.test import Client

from readerstudy.core.dates import format_when
from readerstudy.core.models import AuditEvent
from readerstudy.reading.models import ReadingSession
from readerstudy.studies.models import Membership, Study
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(tmp_path):
    return build_study(tmp_path, readers=2, n_patients=2, lesions_per_patient=2)


def client_for(username: str, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(make_user(username))
    return client


def test_the_reading_page_sends_a_reader_to_the_instructions_until_acknowledged(study):
    client = client_for("reader1", csrf=True)
    session = ReadingSession.objects.get(study=study, reader__username="reader1", index=1)
    page = client.get(f"/reading/session/{session.pk}/")
    assert page.status_code == 302
    assert page["Location"] == f"/reading/study/{study.pk}/instructions/?next={session.pk}"
    shown = client.get(page["Location"])
    html = shown.content.decode()
    assert shown.status_code == 200 and 'data-testid="instructions"' in html
    assert 'data-testid="instructions-ack"' in html
    assert "colorectal liver metastasis" in html
    assert client.post(page["Location"]).status_code == 403  # CSRF, like every form
    token = shown.cookies["csrftoken"].value if "csrftoken" in shown.cookies else client.cookies["csrftoken"].value
    done = client.post(page["Location"], {"csrfmiddlewaretoken": token})
    assert done.status_code == 302 and done["Location"] == f"/reading/session/{session.pk}/"
    assert client.get(f"/reading/session/{session.pk}/").status_code == 200
    assert Membership.objects.get(study=study, user__username="reader1").instructions_acknowledged_at is not None
    assert AuditEvent.objects.filter(verb="acknowledge_instructions").count() == 1
    # Still readable any time; acknowledging again changes nothing.
    again = client.get(f"/reading/study/{study.pk}/instructions/")
    assert "You acknowledged these instructions on" in again.content.decode()
    client.post(f"/reading/study/{study.pk}/instructions/", {"csrfmiddlewaretoken": client.cookies["csrftoken"].value})
    assert AuditEvent.objects.filter(verb="acknowledge_instructions").count() == 1
    # The other reader has not acknowledged: still redirected.
    theirs = ReadingSession.objects.get(study=study, reader__username="reader2", index=1)
    assert client_for("reader2").get(f"/reading/session/{theirs.pk}/").status_code == 302


def test_instructions_are_plain_text_shown_escaped(study):
    Study.objects.filter(pk=study.pk).update(
        instructions="<script>alert(1)</script>\nline two", label_legend={"liver": "<b>organ</b>"}
    )
    html = client_for("reader1").get(f"/reading/study/{study.pk}/instructions/").content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>organ</b>" not in html and "&lt;b&gt;organ&lt;/b&gt;" in html


def test_instructions_are_only_for_the_studys_readers(study, tmp_path):
    url = f"/reading/study/{study.pk}/instructions/"
    for username in ("admin", "stranger"):
        client = client_for(username)
        assert client.get(url).status_code == 404
        assert client.post(url).status_code == 404
    assert client_for("reader1").get("/reading/study/999999/instructions/").status_code == 404
    draft = build_study(tmp_path / "draft", readers=1, name="Draft", launch=False)
    assert client_for("reader1").get(f"/reading/study/{draft.pk}/instructions/").status_code == 404
    assert not AuditEvent.objects.filter(verb="acknowledge_instructions").exists()


def test_next_only_ever_leads_to_one_of_the_readers_own_sessions(study):
    client = client_for("reader1")
    theirs = ReadingSession.objects.get(study=study, reader__username="reader2", index=1)
    for hostile in (str(theirs.pk), "https://evil.example/", "//evil.example", "1e3", "9" * 40, "-1", "١"):
        response = client.post(f"/reading/study/{study.pk}/instructions/?next={hostile}")
        assert response.status_code == 302 and response["Location"] == "/reading/", hostile


def test_the_worklist_links_the_instructions_and_shows_dates_in_the_site_zone(study, settings):
    session2 = ReadingSession.objects.get(study=study, reader__username="reader1", index=2)
    # In the future whenever the test runs (a date in the past would show the session as open).
    ReadingSession.objects.filter(pk=session2.pk).update(available_from=datetime(2099, 1, 5, 14, 0, tzinfo=UTC))
    html = client_for("reader1").get("/reading/").content.decode()
    assert f'href="/reading/study/{study.pk}/instructions/"' in html
    assert "opens on 5 Jan 2099, 14:00 UTC" in html
    settings.TIME_ZONE = "Europe/Amsterdam"
    html = client_for("reader1").get("/reading/").content.decode()
    assert "opens on 5 Jan 2099, 15:00 CET" in html


def test_format_when_names_the_zone(settings):
    when = datetime(2026, 7, 3, 14, 5, tzinfo=UTC)
    assert format_when(when) == "3 Jul 2026, 14:05 UTC"
    settings.TIME_ZONE = "Europe/Amsterdam"
    assert format_when(when) == "3 Jul 2026, 16:05 CEST"
