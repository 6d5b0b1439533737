"""``manage.py check --deploy --fail-level WARNING`` is clean under a production environment, and the project's own
deploy checks name an in-request task backend and a SQLite database."""

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = "postgres://postgres@127.0.0.1:5432/test"


def postgres_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
        return True
    except OSError:
        return False


def check_deploy(tmp_path: Path, **overrides: str) -> subprocess.CompletedProcess:
    # Only what a production server's environment file would hold: none of the test run's own settings.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env.update({
        "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "DEID_SALT": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": "reader.example.org", "DATABASE_URL": POSTGRES, "TASKS_BACKEND": "database",
        "SECURE_SSL_REDIRECT": "1", "MEDIA_ROOT": str(tmp_path / "media"), "LOG_LEVEL": "INFO",
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": "smtp.example.org",
        "DEMO_SECRETS_FILE": str(tmp_path / "never-written.json"),
    })  # fmt: skip
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def production_database() -> None:
    if not postgres_answers():
        pytest.skip(f"needs PostgreSQL at {POSTGRES} (the production environment names it): none answers")


def test_a_production_environment_passes_every_deploy_check(tmp_path, production_database):
    run = check_deploy(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "System check identified no issues" in run.stdout + run.stderr
    assert not (tmp_path / "never-written.json").exists()


def test_in_request_tasks_and_sqlite_are_named(tmp_path):
    run = check_deploy(tmp_path, TASKS_BACKEND="immediate", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "(readerstudy.W001) background work (inference!) would run inside web requests: set " \
           "TASKS_BACKEND=database and run task workers" in out  # fmt: skip
    assert "(readerstudy.W002) database 'default' is SQLite while DEBUG is off" in out
    assert "identified 2 issues" in out  # nothing else


def test_a_dotted_immediate_backend_is_named_too(tmp_path, production_database):
    run = check_deploy(tmp_path, TASKS_BACKEND="django_tasks.backends.immediate.ImmediateBackend")
    out = run.stdout + run.stderr
    assert run.returncode == 1 and "readerstudy.W001" in out and "readerstudy.W002" not in out, out


def test_django_would_flag_what_the_environment_leaves_out(tmp_path, production_database):
    """The clean run is not vacuous: drop the SSL redirect and Django's own check speaks."""
    run = check_deploy(tmp_path, SECURE_SSL_REDIRECT="0")
    assert run.returncode == 1 and "security.W008" in run.stdout + run.stderr


def test_the_demo_is_not_warned(settings):
    """DEBUG on (the demo, the tests): immediate tasks and SQLite are the point, not a mistake."""
    from readerstudy.core.checks import check_database, check_tasks_backend

    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    settings.DEBUG = True
    assert check_tasks_backend(None) == [] and check_database(None) == []
    settings.DEBUG = False
    sqlite = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")  # the test run's own database
    expected = ["readerstudy.W001", "readerstudy.W002"] if sqlite else ["readerstudy.W001"]
    assert [m.id for m in check_tasks_backend(None) + check_database(None)] == expected
