"""Request logging: one line per request (method, route pattern, status, duration) and nothing personal anywhere in
the log: no user names, passwords, e-mail addresses, client addresses, cookies, query strings or bodies."""

import logging
import re

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from readerstudy.reading.models import ReadingSession
from tests.factories import build_study

pytestmark = pytest.mark.django_db

ADDRESS = "203.0.113.77"  # the client's (TEST-NET-3)
LINE = re.compile(r"^method=(\S+) route=(\S+) status=(\d{3}) duration_ms=\d+\.\d$")


def request_lines(caplog) -> list[tuple[str, str, int]]:
    found = []
    for record in caplog.records:
        if record.name == "readerstudy.requests":
            match = LINE.match(record.getMessage())
            assert match, record.getMessage()
            found.append((match[1], match[2], int(match[3])))
    return found


def assert_nothing_personal(caplog, client: Client, *secrets: str) -> None:
    """Every record of every logger, formatted with its traceback as the stdout handler would print it."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(settings.LOGGING["formatters"]["line"]["format"]))
    text = "\n".join(handler.format(record) for record in caplog.records)
    cookies = [morsel.value for morsel in client.cookies.values() if morsel.value]
    for secret in [*secrets, ADDRESS, *cookies]:
        assert secret not in text, f"{secret!r} is in the log:\n{text}"


@pytest.fixture
def log(caplog):
    caplog.set_level(logging.INFO)  # LOG_LEVEL's default
    return caplog


def test_a_login_is_logged_by_route_without_its_credentials(log):
    get_user_model().objects.create_user("jane.doe", "jane.doe@example.org", "correct horse battery")
    client = Client(REMOTE_ADDR=ADDRESS)
    failed = client.post("/accounts/login/", {"username": "jane.doe", "password": "wrong horse battery"})
    ok = client.post("/accounts/login/", {"username": "jane.doe", "password": "correct horse battery"})
    assert (failed.status_code, ok.status_code) == (200, 302)
    assert request_lines(log) == [("POST", "accounts/login/", 200), ("POST", "accounts/login/", 302)]
    assert any(r.name.startswith("axes") for r in log.records)  # axes did log the failure, saying only what
    assert_nothing_personal(log, client, "jane.doe", "example.org", "horse")


def test_query_strings_and_unmatched_paths_are_not_logged(log):
    client = Client(REMOTE_ADDR=ADDRESS)
    client.force_login(get_user_model().objects.create_user("jane.doe", "jane.doe@example.org"))
    assert client.get("/reading/?email=jane.doe@example.org&q=Doe").status_code == 200
    assert client.get("/patients/jane.doe@example.org/").status_code == 404  # Django logs "Not Found: ..." too
    assert request_lines(log) == [("GET", "reading/", 200), ("GET", "-", 404)]
    assert any(r.getMessage() == "Not Found: -" for r in log.records if r.name == "django.request")
    assert_nothing_personal(log, client, "jane.doe", "example.org", "email=", "Doe")


def test_api_calls_are_logged_by_route_pattern_without_bodies(log, tmp_path):
    study = build_study(tmp_path, readers=1, n_patients=2, lesions_per_patient=1)
    session = ReadingSession.objects.get(study=study, reader__username="reader1", index=1)
    client = Client(REMOTE_ADDR=ADDRESS)
    client.force_login(session.reader)
    log.clear()  # the set-up's own lines
    assert client.post(f"/api/sessions/{session.pk}/start/").status_code == 200
    item = client.get(f"/api/sessions/{session.pk}/next/").json()
    body = {"rating": 73, "idempotency_key": "k-1", "active_seconds": 4.0, "comment": "looks like Mrs Doe's"}
    submitted = client.post(f"/api/items/{item['id']}/read/", body, content_type="application/json")
    assert submitted.status_code == 201, submitted.content
    assert client.get("/api/items/999999999/").status_code == 404
    assert request_lines(log) == [
        ("POST", "api/sessions/<id:session_id>/start/", 200),
        ("GET", "api/sessions/<id:session_id>/next/", 200),
        ("POST", "api/items/<id:item_id>/read/", 201),
        ("GET", "api/items/<id:item_id>/", 404),
    ]
    assert_nothing_personal(log, client, "reader1", "Mrs Doe", "k-1", f"/api/sessions/{session.pk}/")


def test_an_exception_is_logged_as_a_500_by_route(log, client, monkeypatch):
    from readerstudy import views

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(views, "_database_ok", broken)
    client.raise_request_exception = False
    assert client.get("/healthz?token=secret-token").status_code == 500
    assert request_lines(log) == [("GET", "healthz", 500)]
    assert any(r.getMessage() == "Internal Server Error: healthz" for r in log.records)
    assert_nothing_personal(log, client, "secret-token")


def test_unknown_methods_are_not_echoed(log, client):
    client.generic("BREW<script>", "/healthz")
    assert request_lines(log) == [("OTHER", "healthz", 405)]
