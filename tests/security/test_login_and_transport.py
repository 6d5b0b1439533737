"""Login lockout, security headers, CSRF, password validation, and the append-only audit log's export."""

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client, override_settings

from readerstudy.reading.models import AuditEvent
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


def log_in(client: Client, username: str, password: str):
    return client.post("/accounts/login/", {"username": username, "password": password})


def test_repeated_failed_logins_lock_the_account(settings):
    get_user_model().objects.create_user("reader1", password="right-password-42")
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = log_in(client, "reader1", "wrong")
        assert response.status_code == 200 and "Wrong user name or password" in response.content.decode()
    locked = log_in(client, "reader1", "wrong")
    assert locked.status_code == 429 and "Too many failed logins" in locked.content.decode()
    # Even the right password is refused while locked.
    assert log_in(client, "reader1", "right-password-42").status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_successful_login_works_and_lands_on_the_worklist():
    get_user_model().objects.create_user("reader1", password="right-password-42")
    client = Client()
    response = log_in(client, "reader1", "right-password-42")
    assert response.status_code == 302 and client.session["_auth_user_id"]


def test_security_headers_and_csp_on_every_page():
    response = Client().get("/accounts/login/")
    csp = response["Content-Security-Policy"]
    for directive in ("default-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", "worker-src 'self' blob:",
                      "frame-ancestors 'none'", "object-src 'none'"):  # fmt: skip
        assert directive in csp
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


@override_settings(DEBUG=False, SECURE_HSTS_SECONDS=31536000, SESSION_COOKIE_SECURE=True, CSRF_COOKIE_SECURE=True)
def test_production_sends_hsts_and_secure_cookies():
    get_user_model().objects.create_user("reader1", password="right-password-42")
    client = Client()
    response = client.get("/accounts/login/", secure=True)
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
    assert response.cookies["csrftoken"]["secure"]
    response = client.post("/accounts/login/", {"username": "reader1", "password": "right-password-42",
                                                "csrfmiddlewaretoken": response.cookies["csrftoken"].value},
                           secure=True)  # fmt: skip
    assert response.cookies["sessionid"]["secure"] and response.cookies["sessionid"]["httponly"]


def test_mutations_need_csrf():
    make_user("reader1")
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("reader1"))
    assert client.post("/api/sessions/1/start/").status_code == 403
    assert client.post("/results/study/1/", {"export": "csv"}).status_code == 403
    assert client.post("/accounts/logout/").status_code == 403


@pytest.mark.parametrize("password", ["short", "password123", "12345678901", "reader1"])
def test_weak_passwords_are_refused(password):
    user = get_user_model()(username="reader1")
    with pytest.raises(ValidationError):
        validate_password(password, user)


def test_audit_log_exports_as_csv_and_stays_append_only(tmp_path):
    build_study(tmp_path, readers=1)
    admin = Client()
    admin.force_login(make_user("admin", superuser=True))
    ids = list(AuditEvent.objects.values_list("pk", flat=True))
    response = admin.post("/admin/reading/auditevent/", {"action": "export_csv", "_selected_action": ids})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == len(ids) and {r["verb"] for r in rows} >= {"create_study", "import_cases", "launch_study"}
    filtered = admin.get("/admin/reading/auditevent/?verb__exact=launch_study")
    assert filtered.status_code == 200 and "launch_study" in filtered.content.decode()
    assert AuditEvent.objects.count() == len(ids)
