"""Production-safe defaults (DEBUG off, secrets required, the salt hidden) and the API's JSON-only parser."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, RequestFactory
from django.views.debug import technical_500_response

from readerstudy.parsers import MAX_DEPTH, json_depth
from readerstudy.reading import actions as reading_actions
from readerstudy.reading.models import Read, ReadingSession
from readerstudy.security import SecretsReporterFilter
from tests.factories import build_study, make_user

ROOT = Path(__file__).resolve().parents[2]


def settings_in_subprocess(env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "DEID_SALT")}
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({'debug': s.DEBUG, 'key': s.SECRET_KEY, 'salt': s.DEID_SALT}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "readerstudy.settings", "DEMO_SECRETS_FILE": str(tmp_path / "s.json"),
             **env},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip


def test_debug_defaults_to_off_and_then_requires_secrets(tmp_path):
    bare = settings_in_subprocess({}, tmp_path)
    assert bare.returncode != 0 and "SECRET_KEY must be set when DEBUG is off" in bare.stderr
    no_salt = settings_in_subprocess({"SECRET_KEY": "k" * 50}, tmp_path)
    assert no_salt.returncode != 0 and "DEID_SALT must be set" in no_salt.stderr
    same = settings_in_subprocess({"SECRET_KEY": "k" * 50, "DEID_SALT": "k" * 50}, tmp_path)
    assert same.returncode != 0 and "DEID_SALT must differ from SECRET_KEY" in same.stderr
    production = settings_in_subprocess({"SECRET_KEY": "k" * 50, "DEID_SALT": "s" * 50}, tmp_path)
    assert production.returncode == 0, production.stderr
    assert json.loads(production.stdout) == {"debug": False, "key": "k" * 50, "salt": "s" * 50}
    assert not (tmp_path / "s.json").exists()  # production never writes demo secrets


def test_the_demo_generates_and_keeps_its_own_secrets(tmp_path):
    first = settings_in_subprocess({"DEBUG": "1"}, tmp_path)
    second = settings_in_subprocess({"DEBUG": "1"}, tmp_path)
    assert first.returncode == 0, first.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a == b and a["debug"] is True
    assert a["salt"] != a["key"] and len(a["salt"]) >= 40
    assert oct((tmp_path / "s.json").stat().st_mode & 0o777) == "0o600"


def test_error_reports_hide_the_deidentification_salt(rf: RequestFactory):
    safe = SecretsReporterFilter().get_safe_settings()
    assert safe["DEID_SALT"] != settings.DEID_SALT and set(safe["DEID_SALT"]) == {"*"}
    assert settings.DEFAULT_EXCEPTION_REPORTER_FILTER == "readerstudy.security.SecretsReporterFilter"
    try:
        raise ValueError("boom")
    except ValueError:
        page = technical_500_response(rf.get("/x"), *sys.exc_info()).content.decode()
    assert settings.DEID_SALT not in page and settings.SECRET_KEY not in page


def test_json_depth_ignores_brackets_in_strings():
    assert json_depth('{"a": "[[[[{{{{", "b": [[1]]}') == 3
    assert json_depth('"\\"[["') == 0
    assert json_depth("[" * 50 + "]" * 50) == 50


@pytest.fixture
def reading(tmp_path):
    study = build_study(tmp_path, readers=1, n_patients=2, lesions_per_patient=1, name="Parsers")
    reader = make_user("reader1")
    session = reading_actions.start_session(reader, ReadingSession.objects.get(study=study, reader=reader, index=1))
    client = Client()
    client.force_login(reader)
    return client, session.items.order_by("position").first()


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 50_000])
def test_deeply_nested_json_is_a_400_not_a_500(reading, depth):
    client, item = reading
    body = '{"rating": 50, "idempotency_key": "k", "active_seconds": 1, "viewer_state": ' + "[" * depth
    body += "]" * depth + "}"
    response = client.post(f"/api/items/{item.pk}/read/", body, content_type="application/json")
    assert response.status_code == 400 and "nested deeper" in response.json()["detail"]
    assert not Read.objects.exists()


@pytest.mark.django_db
def test_the_api_takes_json_only(reading):
    client, item = reading
    form = client.post(f"/api/items/{item.pk}/read/", {"rating": 50, "idempotency_key": "k", "active_seconds": 1})
    assert form.status_code == 415
    urlencoded = client.post(
        f"/api/items/{item.pk}/read/", "rating=50&idempotency_key=k&active_seconds=1",
        content_type="application/x-www-form-urlencoded",
    )  # fmt: skip
    assert urlencoded.status_code == 415
    assert not Read.objects.exists()
    ok = client.post(
        f"/api/items/{item.pk}/read/", {"rating": 50, "idempotency_key": "k", "active_seconds": 1},
        content_type="application/json",
    )  # fmt: skip
    assert ok.status_code == 201
