"""Login lockout, security headers, CSRF, password validation, and the append-only audit log's export."""

import csv
import io
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client, override_settings

from readerstudy.core.models import AuditEvent
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
    response = admin.post("/admin/core/auditevent/", {"action": "export_csv", "_selected_action": ids})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == len(ids) and {r["verb"] for r in rows} >= {"create_study", "import_cases", "launch_study"}
    filtered = admin.get("/admin/core/auditevent/?verb__exact=launch_study")
    assert filtered.status_code == 200 and "launch_study" in filtered.content.decode()
    assert AuditEvent.objects.count() == len(ids)


# --- client address and the per-address throttle --------------------------------------------------------------------


def log_in_from(username: str, password: str, *, remote: str = "127.0.0.1", forwarded: str | None = None):
    """One login POST from a fresh client (own cookies) with the given peer and X-Forwarded-For."""
    extra = {"REMOTE_ADDR": remote} | ({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {})
    return Client().post("/accounts/login/", {"username": username, "password": password}, **extra)


@pytest.mark.parametrize("count, forwarded, expected", [
    (0, "203.0.113.9", "10.0.0.2"),  # no trusted proxy: the header is the client's word, ignored
    (1, "203.0.113.9", "203.0.113.9"),
    (1, "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the left entry was written by the client
    (2, "6.6.6.6, 203.0.113.9, 10.0.0.1", "203.0.113.9"),
    (1, "203.0.113.9:51234", "203.0.113.9"),
    (1, "[2001:db8::1]:443", "2001:db8::1"),
    (2, "203.0.113.9", "10.0.0.2"),  # shorter than the proxy chain: did not come through it
    (1, "not-an-address", "10.0.0.2"),
    (1, None, "10.0.0.2"),
])  # fmt: skip
def test_client_address_uses_x_forwarded_for_only_behind_trusted_proxies(settings, count, forwarded, expected):
    from django.test import RequestFactory

    from readerstudy.logins import client_ip

    settings.TRUSTED_PROXY_COUNT = count
    extra = {"REMOTE_ADDR": "10.0.0.2"} | ({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {})
    assert client_ip(RequestFactory().get("/", **extra)) == expected


def test_without_a_trusted_proxy_a_spoofed_x_forwarded_for_neither_dodges_nor_shifts_the_lockout(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    get_user_model().objects.create_user("reader1", password="right-password-42")
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in_from("reader1", "wrong", remote="198.51.100.4", forwarded=f"203.0.113.{i}").status_code == 200
    # counted on the real peer, whatever the header says
    assert log_in_from("reader1", "wrong", remote="198.51.100.4", forwarded="203.0.113.99").status_code == 429
    assert log_in_from("reader1", "right-password-42", remote="198.51.100.4", forwarded="1.2.3.4").status_code == 429
    # and nobody can lock another address out by naming it in the header
    assert log_in_from("reader1", "right-password-42", remote="198.51.100.5").status_code == 302


def test_behind_a_trusted_proxy_one_clients_failures_do_not_lock_the_user_out_elsewhere(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    get_user_model().objects.create_user("reader1", password="right-password-42")
    proxy = "10.0.0.1"  # every request arrives from the proxy
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in_from("reader1", "wrong", remote=proxy, forwarded="203.0.113.7")
    assert log_in_from("reader1", "right-password-42", remote=proxy, forwarded="203.0.113.7").status_code == 429
    # the same reader from their own workstation still gets in
    assert log_in_from("reader1", "right-password-42", remote=proxy, forwarded="198.51.100.8").status_code == 302


def test_the_per_address_throttle_answers_429_and_spares_other_addresses(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.LOGIN_THROTTLE_FAILURES = 4
    settings.LOGIN_THROTTLE_SECONDS = 1
    get_user_model().objects.create_user("reader1", password="right-password-42")
    proxy, attacker, reader = "10.0.0.1", "203.0.113.7", "198.51.100.8"
    # password spraying: a different user name each time, so the per-user lockout never triggers
    for i in range(settings.LOGIN_THROTTLE_FAILURES):
        assert log_in_from(f"user{i}", "guess", remote=proxy, forwarded=attacker).status_code == 200
    held = log_in_from("user99", "guess", remote=proxy, forwarded=attacker)
    assert held.status_code == 429 and held["Retry-After"] == "1"
    assert "Too many failed logins from this address" in held.content.decode()
    admin_login = Client().post("/admin/login/", {"username": "x", "password": "y"}, REMOTE_ADDR=proxy,
                                HTTP_X_FORWARDED_FOR=attacker)  # fmt: skip
    assert admin_login.status_code == 429  # the admin's login form too
    # a reader elsewhere is not slowed down at all
    assert log_in_from("reader1", "right-password-42", remote=proxy, forwarded=reader).status_code == 302
    # and the held-back address may try again after the pause (a pause, not a lockout)
    time.sleep(1.1)
    assert log_in_from("reader1", "right-password-42", remote=proxy, forwarded=attacker).status_code == 302


def test_the_throttle_counts_failures_only_and_never_the_login_page(settings):
    settings.LOGIN_THROTTLE_FAILURES = 2
    get_user_model().objects.create_user("reader1", password="right-password-42")
    for _ in range(5):
        assert log_in_from("reader1", "right-password-42").status_code == 302
        assert Client().get("/accounts/login/").status_code == 200
    assert log_in_from("reader1", "wrong").status_code == 200
    assert log_in_from("reader1", "right-password-42").status_code == 302
    assert log_in_from("reader1", "wrong").status_code == 200
    assert log_in_from("reader1", "right-password-42").status_code == 429
    assert Client().get("/accounts/login/").status_code == 200  # the form still shows
