"""The shipped gunicorn config (deploy/gunicorn.conf.py): a few slow clients must not starve the server.

Real servers on free loopback ports: slow clients that send their request headers a byte at a time and never
finish, and a normal request that must still be answered promptly. The same scenario against gunicorn's default
``sync`` class shows what the config prevents (the normal request waits behind the first slow client).
"""

import http.client
import os
import runpy
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "gunicorn.conf.py"
SLOW_CLIENTS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, timeout: float) -> tuple[int, float] | None:
    """(status, seconds) of GET /accounts/login/, or None when no answer came within ``timeout``."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/accounts/login/")
        status = conn.getresponse().status
    except (TimeoutError, OSError):
        return None
    finally:
        conn.close()
    return status, time.perf_counter() - t0


@contextmanager
def server(tmp_path: Path, *args: str, **gunicorn_env: str) -> Iterator[int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "readerstudy.settings",
        "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(48), "DEID_SALT": secrets.token_urlsafe(16),
        "ALLOWED_HOSTS": "127.0.0.1", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1", "GUNICORN_GRACEFUL_TIMEOUT": "2",
        "GUNICORN_ACCESS_LOG": "", "GUNICORN_LOG_LEVEL": "warning",
    })  # fmt: skip
    env.update({f"GUNICORN_{k.upper()}": v for k, v in gunicorn_env.items()})
    log = (tmp_path / f"gunicorn-{port}.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(CONFIG), *args], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while get(port, 1.0) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"gunicorn did not start:\n{(tmp_path / f'gunicorn-{port}.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield port
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()


@contextmanager
def slow_clients(port: int, n: int) -> Iterator[None]:
    """``n`` connections sending an endless request head, one byte every 0.1 s, until the block ends."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]
    head = b"GET /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
    stop = threading.Event()

    def trickle() -> None:
        for i in range(len(head)):
            for s in socks:
                with suppress(OSError):
                    s.send(head[i : i + 1])
            if stop.wait(0.1):
                return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        time.sleep(0.6)  # every slow client has started its request and holds a request slot
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        for s in socks:
            s.close()


def test_the_config_runs_threaded_workers_with_room_to_spare(monkeypatch):
    for name in [k for k in os.environ if k.startswith("GUNICORN")]:
        monkeypatch.delenv(name)
    cfg = runpy.run_path(str(CONFIG))
    assert cfg["worker_class"] == "gthread" and cfg["threads"] > SLOW_CLIENTS and cfg["workers"] >= 1
    assert cfg["bind"] == ["127.0.0.1:8000"]  # loopback: the buffering proxy in front is the only client
    assert cfg["timeout"] > 0 and cfg["graceful_timeout"] > 0 and cfg["keepalive"] > 0
    assert cfg["limit_request_line"] <= 8190 and cfg["limit_request_fields"] <= 100
    monkeypatch.setenv("GUNICORN_THREADS", "16")
    monkeypatch.setenv("GUNICORN_BIND", "unix:/run/readerstudy.sock")
    cfg = runpy.run_path(str(CONFIG))
    assert cfg["threads"] == 16 and cfg["bind"] == ["unix:/run/readerstudy.sock"]
    for bad in ("0", "many"):
        monkeypatch.setenv("GUNICORN_THREADS", bad)
        with pytest.raises(ValueError, match="GUNICORN_THREADS"):
            runpy.run_path(str(CONFIG))


def test_slow_header_clients_do_not_starve_the_shipped_config(tmp_path):
    with server(tmp_path) as port, slow_clients(port, SLOW_CLIENTS):
        for _ in range(3):
            answer = get(port, timeout=5.0)
            assert answer is not None and answer[0] == 200 and answer[1] < 2.0, answer


def test_the_sync_worker_class_would_be_starved(tmp_path):
    """The same clients against gunicorn's default class (what the config replaces): no answer at all.

    A trivial app instead of Django (the worker class is the point, and it starts in a fraction of the time);
    threads=1, or gunicorn quietly swaps the sync class for gthread.
    """
    args = ("--worker-class", "sync", "tests.deploy.wsgi_hello:app")
    with server(tmp_path, *args, threads="1") as port:
        assert get(port, timeout=2.0) is not None  # it does answer, until the slow clients come
        with slow_clients(port, SLOW_CLIENTS):
            assert get(port, timeout=2.0) is None
