"""The production topology, as separate processes: gunicorn (web), a default task worker, inference workers with
their own working directories, PostgreSQL (data and task queue) and S3-protocol object storage.

An admin uploads cases over HTTP (the default worker imports them into the bucket), starts precompute over HTTP
(only the inference queue's worker takes it), the inference worker is SIGKILLed mid-run and a second one resumes
where the stored predictions end; then the study is launched and a reader gets images and overlays from the
bucket through the web. The web processes never load torch (their memory maps hold no torch library).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from django.db import connection

from fixtures.phantom import generate_demo_study
from inference.models import PrecomputeRun, Prediction
from readerstudy.core.models import TaskWorker
from readerstudy.studies import actions
from readerstudy.studies.models import Case, ImportRun

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
pytestmark = pytest.mark.django_db(transaction=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_for(what: str, check: Callable[[], object], timeout: float, processes: list) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        for p in processes:
            if p.poll() is not None:
                raise AssertionError(f"{p.args[:4]} exited ({p.returncode}) while waiting for {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class Topology:
    """Starts processes with the shared production environment; stops them all on close."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env, self.processes = root, env, []

    def start(self, name: str, args: list[str], *, cwd: Path, extra: dict[str, str] | None = None):
        cwd.mkdir(parents=True, exist_ok=True)
        log = (self.root / f"{name}.log").open("wb")
        process = subprocess.Popen(
            args, cwd=cwd, env={**self.env, **(extra or {})}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.processes.append(process)
        return process

    def worker(self, name: str, queue: str, *, device: str = "", models: Path | None = None):
        """A task worker in a folder of its own: no path of the web tier, its own MEDIA_ROOT (never created)."""
        home = self.root / name
        args = [PYTHON, str(REPO / "manage.py"), "task_worker", "--queue-name", queue, "--worker-id", name,
                "--interval", "0.2", "--no-startup-delay", "--verbosity", "2"]  # fmt: skip
        if device:
            args += ["--device", device]
        extra = {"MEDIA_ROOT": str(home / "media"), "TMPDIR": str(home / "tmp")}
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        if models is not None:
            extra["INFERENCE_MODELS_DIR"] = str(models)
        return self.start(name, args, cwd=home, extra=extra)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-3000:]

    def close(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.processes:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


class Browser:
    """A logged-in user over HTTP (the form's CSRF token, then the cookie's)."""

    def __init__(self, base: str, username: str, password: str) -> None:
        self.base, self.http = base, requests.Session()
        page = self.http.get(f"{base}/accounts/login/", timeout=30)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        response = self.http.post(
            f"{base}/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            timeout=30, allow_redirects=False,
        )  # fmt: skip
        assert response.status_code == 302, f"login of {username} failed: {response.status_code}"

    def post(self, path: str, **kwargs) -> requests.Response:
        headers = {"X-CSRFToken": self.http.cookies.get("csrftoken", ""), "Referer": f"{self.base}{path}"}
        return self.http.post(f"{self.base}{path}", headers=headers, timeout=120, allow_redirects=False, **kwargs)

    def get(self, path: str) -> requests.Response:
        return self.http.get(f"{self.base}{path}", timeout=60)


def torch_mapped(pid: int) -> list[str]:
    """torch's shared libraries in a process's memory: present exactly when the process imported torch."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({line.split()[-1] for line in maps.splitlines() if "torch" in line.split()[-1]})


def process_tree(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(q for c in children for q in process_tree(int(c)))]


def upload(tmp_path: Path, manifest: Path) -> dict:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((manifest.parent / "series").rglob("*")):
            archive.write(path, path.relative_to(manifest.parent).as_posix())
    return {
        "manifest": ("manifest.csv", manifest.read_bytes(), "text/csv"),
        "zip": ("cases.zip", buffer.getvalue(), "application/zip"),
    }


@pytest.fixture
def topology(tmp_path: Path, on_postgres, s3) -> Iterator[Topology]:
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")},
        "DJANGO_SETTINGS_MODULE": "readerstudy.settings",
        "DEBUG": "0",
        "SECRET_KEY": "topology-test-" + "k" * 50,
        "DEID_SALT": "topology-test-salt-" + "s" * 40,
        "ALLOWED_HOSTS": "127.0.0.1",
        # Plain HTTP on loopback in this test: cookies without the Secure flag (a proxy terminates TLS in production).
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "DATABASE_URL": database_url(),
        "TASKS_BACKEND": "database",
        "WORKER_HEARTBEAT_SECONDS": "1",
        "WORKER_STALE_SECONDS": "4",
        **s3.env(prefix=f"topology-{tmp_path.name}"),
    }
    top = Topology(tmp_path, env)
    try:
        yield top
    finally:
        top.close()


def test_web_workers_and_object_storage_as_separate_processes(topology: Topology, tmp_path: Path, s3) -> None:
    from django.contrib.auth.models import User

    boss = User.objects.create_user("boss", password="boss-pass-123", is_staff=True)
    reader = User.objects.create_user("reader1", password="reader-pass-123")
    study = actions.create_study(boss, "Topology", design="crossover", seed=11)
    actions.add_modality(boss, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(boss, study, "aided", "DL-assisted", shows_dl=True)
    actions.add_member(boss, study, reader, "reader")
    manifest = generate_demo_study(tmp_path / "cases", seed=5, n_patients=2, n_lesions=4)

    port = free_port()
    web_env = {"GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "4",
               "MEDIA_ROOT": str(tmp_path / "web" / "media")}  # fmt: skip
    web = topology.start(
        "web", [PYTHON, "-m", "gunicorn", "-c", str(REPO / "deploy" / "gunicorn.conf.py")],
        cwd=tmp_path / "web", extra=web_env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def web_up() -> bool:
        try:
            return requests.get(f"{base}/accounts/login/", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    wait_for("the web server", web_up, 60, [web])
    models = tmp_path / "inference-a" / "weights"  # the inference machine's own copy of the weights
    shutil.copytree(REPO / "fixtures" / "models", models)
    default = topology.worker("default-1", "default")
    inference_a = topology.worker("inference-a", "inference", device="cpu", models=models)

    admin = Browser(base, "boss", "boss-pass-123")
    response = admin.post(f"/studies/{study.pk}/import/", files=upload(tmp_path, manifest))
    assert response.status_code == 302, response.text[:500]
    run = wait_for(
        "the import", lambda: ImportRun.objects.filter(study=study, finished_at__isnull=False).first(), 120,
        [web, default],
    )  # fmt: skip
    assert run.status == "done", (run.message, run.errors, topology.log("default-1"))
    n_cases = Case.objects.filter(study=study).count()
    assert n_cases == 4

    response = admin.post(f"/studies/{study.pk}/precompute/")
    assert response.status_code == 302
    precompute = PrecomputeRun.objects.get(study=study)
    wait_for("a first prediction", lambda: Prediction.objects.filter(case__study=study).exists(), 180,
             [inference_a])  # fmt: skip
    os.killpg(inference_a.pid, signal.SIGKILL)  # mid-run: the machine is lost
    inference_a.wait(timeout=10)
    precompute.refresh_from_db()
    stored_before = Prediction.objects.filter(case__study=study).count()
    assert precompute.status == "running" and stored_before < n_cases, "killed mid-run"

    inference_b = topology.worker("inference-b", "inference", device="cpu", models=models)
    wait_for(
        "the resumed precompute",
        lambda: PrecomputeRun.objects.filter(pk=precompute.pk, finished_at__isnull=False).exists(),
        240, [inference_b, default, web],
    )  # fmt: skip
    precompute.refresh_from_db()
    assert precompute.status == "done", (precompute.errors, topology.log("inference-b"))
    predictions = list(Prediction.objects.filter(case__study=study).values_list("case_id", "device"))
    assert len(predictions) == n_cases and len({c for c, _ in predictions}) == n_cases, "one prediction per case"
    assert {d for _, d in predictions} == {"cpu"}
    assert precompute.n_skipped >= stored_before and precompute.n_done + precompute.n_skipped == n_cases

    from django_tasks_db.models import DBTaskResult

    tasks = {t.task_path.rsplit(".", 1)[-1]: t for t in DBTaskResult.objects.all()}
    assert tasks["precompute_task"].queue_name == "inference"
    assert tasks["precompute_task"].worker_ids == ["inference-a", "inference-b"], "requeued once, then resumed"
    assert tasks["precompute_task"].status == "SUCCESSFUL"
    assert tasks["import_task"].worker_ids == ["default-1"] and tasks["import_task"].queue_name == "default"
    assert TaskWorker.objects.get(worker_id="inference-a").stopped_at is None  # killed: it never said goodbye

    response = admin.post(f"/studies/{study.pk}/launch/")
    assert response.status_code == 302
    study.refresh_from_db()
    assert study.status == "launched"

    me = Browser(base, "reader1", "reader-pass-123")
    session_id = next(s["id"] for s in me.get("/api/worklist/").json() if s["state"] == "open")
    assert me.post(f"/api/sessions/{session_id}/start/").status_code == 200
    seen_overlay = False
    while True:
        response = me.get(f"/api/sessions/{session_id}/next/")
        if response.status_code == 204:
            break
        item = response.json()
        image = me.get(item["images"][0])
        assert image.status_code == 200 and image.content[128:132] == b"DICM"
        if item["modality"]["shows_dl"] and item["dl"].get("overlay_url"):
            overlay = me.get(item["dl"]["overlay_url"])
            assert overlay.status_code == 200 and overlay.headers["X-Overlay-Shape"]
            seen_overlay = True
        rated = me.post(
            f"/api/items/{item['id']}/read/",
            json={"rating": 60, "idempotency_key": f"k-{item['id']}", "active_seconds": 3.0},
        )
        assert rated.status_code == 201, rated.text
    assert seen_overlay, "a DL overlay was served from the bucket"

    keys = s3.keys(f"topology-{tmp_path.name}")
    assert any(k.endswith(".dcm") for k in keys) and any(k.endswith(".u8.gz") for k in keys)
    for folder in ("web/media", "inference-a/media", "inference-b/media", "default-1/media"):
        assert not (tmp_path / folder).exists(), f"{folder}: nothing stored on a machine's disk"
    for pid in process_tree(web.pid):
        assert torch_mapped(pid) == [], f"web process {pid} loaded torch"
    assert torch_mapped(inference_b.pid), "the inference worker did (the check can tell)"
