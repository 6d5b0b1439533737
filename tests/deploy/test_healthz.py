"""/healthz: 200 when the database answers and the file storage can be listed, 503 naming what failed.

Real failures: storage roots that are missing or not a folder, an S3 bucket that does not exist (on moto's S3
server), and databases that cannot be reached (a server process with a PostgreSQL port nobody listens on, and a
SQLite file that cannot be opened).
"""

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client, override_settings

ROOT = Path(__file__).resolve().parents[2]
STATIC = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}


def filesystem(location: Path) -> dict:
    return {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": location}},
            "staticfiles": STATIC}  # fmt: skip


@pytest.mark.django_db
def test_healthy_answers_200_without_session_cache_or_writes(media_root, django_assert_max_num_queries):
    with django_assert_max_num_queries(1):  # SELECT 1: no session read, nothing written
        response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "storage": "ok"}
    assert "no-store" in response["Cache-Control"]
    assert not response.cookies  # no session, no CSRF cookie
    assert list(Path(media_root).iterdir()) == []  # the storage check wrote nothing
    assert Client().head("/healthz").status_code == 200
    assert Client().post("/healthz").status_code == 405


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_an_unreadable_storage_answers_503_and_logs_why(tmp_path, caplog, kind):
    location = tmp_path / "media"
    if kind == "a file":
        location.write_text("not a folder")
    with override_settings(STORAGES=filesystem(location)), caplog.at_level(logging.ERROR, "readerstudy.health"):
        response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "fail", "database": "ok", "storage": "fail"}
    assert "no-store" in response["Cache-Control"]
    assert str(tmp_path) not in response.content.decode()  # the reason is logged, never answered
    [record] = [r for r in caplog.records if r.name == "readerstudy.health"]
    assert record.exc_info and str(tmp_path) in str(record.exc_info[1])
    assert location.exists() == (kind == "a file")  # nothing was created


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on a free loopback port (no S3 server package is in this project's registries)."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed (requirements.txt)")
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("moto's S3 server did not start")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def s3(endpoint: str, bucket: str) -> dict:
    options = {"bucket_name": bucket, "endpoint_url": endpoint, "region_name": "us-east-1", "access_key": "test",
               "secret_key": "test", "location": "study-data"}  # fmt: skip
    return {"default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}, "staticfiles": STATIC}


@pytest.mark.django_db
def test_s3_storage_is_healthy_with_its_bucket_and_fails_without(s3_endpoint, caplog):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip
    client.create_bucket(Bucket="readerstudy")
    with override_settings(STORAGES=s3(s3_endpoint, "readerstudy")):
        healthy = Client().get("/healthz")
    assert healthy.status_code == 200, healthy.content
    with override_settings(STORAGES=s3(s3_endpoint, "no-such-bucket")), caplog.at_level(logging.ERROR):
        missing = Client().get("/healthz")  # exists() would say "no such file" here, not fail
    assert missing.status_code == 503
    assert missing.json() == {"status": "fail", "database": "ok", "storage": "fail"}
    assert "NoSuchBucket" not in missing.content.decode()
    assert any("NoSuchBucket" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    assert client.list_objects_v2(Bucket="readerstudy").get("KeyCount", 0) == 0  # the check wrote nothing


PROBE = """
import json, django
django.setup()
from django.test import Client
response = Client().get("/healthz")
print("RESULT " + json.dumps({"status": response.status_code, "body": response.json(),
                              "cache": response.get("Cache-Control", "")}))
"""


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_an_unreachable_database_answers_503_and_logs_why(tmp_path, database):
    """A server process of its own, its database down: the probe still answers (no session, no login) over plain
    HTTP despite SECURE_SSL_REDIRECT, and names the database."""
    url = {
        "postgresql": f"postgres://postgres@127.0.0.1:{free_port()}/readerstudy",  # nobody listens there
        "sqlite": f"sqlite:///{tmp_path / 'no-such-folder' / 'db.sqlite3'}",  # cannot be opened
    }[database]
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "STORAGE_BACKEND", "TASKS_BACKEND")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "readerstudy.settings", "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50),
        "DEID_SALT": secrets.token_urlsafe(20), "ALLOWED_HOSTS": "testserver", "SECURE_SSL_REDIRECT": "1",
        "DATABASE_URL": url, "MEDIA_ROOT": str(tmp_path), "LOG_LEVEL": "INFO",
    })  # fmt: skip
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    [result] = [json.loads(line[len("RESULT ") :]) for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert result["status"] == 503
    assert result["body"] == {"status": "fail", "database": "fail", "storage": "ok"}
    assert "no-store" in result["cache"]
    log = run.stdout
    assert "logger=readerstudy.health health check: the database does not answer" in log
    assert "OperationalError" in log  # the reason, in the log only
    assert "method=GET route=healthz status=503" in log
