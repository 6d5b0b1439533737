"""Load benchmark: simulated readers against gunicorn + PostgreSQL through the real reading API.

    python -m bench.load [--readers 50] [--items 100] [--workers 2] [--threads 8] [--think-ms 0] [--fault]
                         [--timeout 600] [--out bench/load/results.json]

(``--out`` defaults to ``results-fault.json`` with ``--fault``.)

1. Recreates a throwaway PostgreSQL database (``readerstudy_load`` on ``postgres://postgres@127.0.0.1:5432``,
   ``--pg-url``), migrates it and builds a launched *sequential* study through the real actions (create_study,
   add_modality, add_member, import_cases, launch_study): ``--items / 2`` cases with a tiny 5-slice CT series each,
   2 modalities (unaided, aided), ``--readers`` readers, so every reader has one session of ``--items`` items.
2. Starts gunicorn with the shipped production config (``gunicorn -c deploy/gunicorn.conf.py``: gthread workers,
   its timeouts and limits), sized by ``GUNICORN_WORKERS`` / ``GUNICORN_THREADS`` from ``--workers`` / ``--threads``,
   bound to ``127.0.0.1:PORT``, with ``DEBUG=false`` (production settings: secure cookies, real SECRET_KEY check).
   Loopback only.
3. One asyncio task per reader, each with its own ``httpx.AsyncClient`` (its own cookie jar, like a browser):
   log in through the login form (CSRF token from the form), find the session in ``GET /api/worklist/``, then,
   once every reader is logged in, ``POST /api/sessions/<id>/start/`` and loop ``GET /api/sessions/<id>/next/``
   (200 item, 204 done) -> ``POST /api/items/<id>/read/`` (random rating, fresh uuid idempotency key per item,
   ``X-CSRFToken``). Connection errors, timeouts and 5xx are retried with the *same* request (for a read: the
   same idempotency key and rating) after an exponential backoff with jitter; 4xx are not retried. Latency is the
   wall time of the successful attempt; failed attempts are counted as errors, by kind and reason.
   ``--think-ms`` adds a pause (exponential, that mean) between showing an item and submitting it, and spreads
   the readers' starts uniformly over one mean pause; 0 (default) is a closed loop with no think time, i.e. the
   server saturated by 50 readers clicking as fast as it answers (latency = queueing: readers / throughput).
4. ``--fault``: after 30 % of the reads one gunicorn worker gets SIGKILL (mid-request: the workers are busy);
   after 60 % PostgreSQL is restarted (``pg_ctlcluster --skip-systemctl-redirect VER main restart``).
5. Checks the database: every acknowledged read (a 200/201 received by a client) is stored exactly once with
   the client's rating and idempotency key (lost = acknowledged but missing or different), no duplicates per item,
   per reader x case x modality or per reader x idempotency key, reads nobody acknowledged, one ``submit_read``
   audit event per read, every session finished.

Prints a table and writes JSON (machine facts, load average, parameters, latencies, throughput, errors,
integrity). Cleans up in ``finally``: gunicorn's process group is terminated, the database dropped, the temp
folder removed. Exit status 1 when the integrity check fails or a reader did not finish.

Secure cookies over plain http: httpx's cookie jar (``http.cookiejar``) does not send ``Secure`` cookies to
``http://`` URLs. Browsers do send them to ``http://localhost`` / ``127.0.0.1`` (potentially trustworthy origins),
so each reader keeps its cookies itself (from ``Set-Cookie``) and sends the ``Cookie`` header: the server runs its
production settings unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from contextlib import suppress
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONFIG = ROOT / "deploy" / "gunicorn.conf.py"
PASSWORD = "bench-load-pass-1"
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/readerstudy_load"
GOAL_P95_MS = 50.0
KINDS = ("login", "worklist", "start", "next", "submit")
CSRF_RE = re.compile(r'name="csrfmiddlewaretoken"\s+value="([^"]+)"')
# Retry policy: exponential backoff with jitter, base 50 ms, capped at 2 s, at most this many retries per request.
MAX_RETRIES = 25


class ReaderFailed(Exception):
    pass


# --- small helpers --------------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    """Percentile with linear interpolation (q in 0..100)."""
    s = sorted(values)
    if not s:
        return None
    k = (len(s) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(values: list[float]) -> dict:
    r = lambda v: None if v is None else round(v, 2)  # noqa: E731
    return {
        "n": len(values),
        "p50_ms": r(pct(values, 50)),
        "p95_ms": r(pct(values, 95)),
        "p99_ms": r(pct(values, 99)),
        "mean_ms": r(sum(values) / len(values)) if values else None,
        "max_ms": r(max(values, default=None)),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


# --- PostgreSQL -------------------------------------------------------------------------------------------------------


def pg_cluster(port: int) -> tuple[str, str]:
    """(version, cluster name) of the local cluster on `port`, from pg_lsclusters."""
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 3 and cols[2] == str(port):
            return cols[0], cols[1]
    raise RuntimeError(f"no local PostgreSQL cluster on port {port} (pg_lsclusters:\n{out})")


def pg_connect(url: str, timeout: float = 30.0):
    """A psycopg autocommit connection, retried while the server starts."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def ensure_pg(admin_url: str) -> None:
    import psycopg

    try:
        psycopg.connect(admin_url, autocommit=True, connect_timeout=3).close()
        return
    except psycopg.OperationalError:
        pass
    port = urlsplit(admin_url).port or 5432
    version, name = pg_cluster(port)
    print(f"PostgreSQL {version}/{name} is down: starting it", file=sys.stderr)
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start"], check=True)
    pg_connect(admin_url).close()


def recreate_db(admin_url: str, db: str) -> None:
    with pg_connect(admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')


def drop_db(admin_url: str, db: str) -> None:
    with pg_connect(admin_url, timeout=60) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def pg_facts(admin_url: str) -> dict:
    with pg_connect(admin_url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        max_conn = conn.execute("SHOW max_connections").fetchone()[0]
    return {"server_version": version, "max_connections": int(max_conn)}


def other_pg_clients(admin_url: str, db: str) -> list[dict]:
    """Client backends of other databases: who a PostgreSQL restart would disturb."""
    with pg_connect(admin_url) as conn:
        rows = conn.execute(
            "SELECT datname, state, count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid() AND datname IS DISTINCT FROM %s GROUP BY 1, 2",
            [db],
        ).fetchall()
    return [{"database": d, "state": s, "n": n} for d, s, n in rows]


# --- study ------------------------------------------------------------------------------------------------------------


def build_study(tmp: Path, n_readers: int, n_items: int) -> dict:
    """Migrate the new database and build a launched sequential study; returns the readers' usernames etc."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command
    from django.db import connections

    from readerstudy.reading.actions import launch_study
    from readerstudy.reading.models import SessionItem
    from readerstudy.studies import actions
    from tests.factories import balanced_rows, write_manifest

    t0 = time.perf_counter()
    call_command("migrate", interactive=False, verbosity=0)
    t_migrate = time.perf_counter() - t0
    n_cases = n_items // 2
    User = get_user_model()
    admin = User.objects.create_superuser("load-admin", password=PASSWORD)
    # One hash for every reader: hashing 50 passwords (PBKDF2) would dominate the setup.
    encoded = make_password(PASSWORD)
    readers = User.objects.bulk_create(
        [User(username=f"load-reader{i:03d}", password=encoded) for i in range(1, n_readers + 1)]
    )
    study = actions.create_study(admin, "Load bench", design="sequential", washout_days=0, seed=11)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "DL-assisted", shows_dl=True)
    for reader in readers:
        actions.add_member(admin, study, reader, "reader")
    manifest = write_manifest(tmp / "import", balanced_rows(n_patients=n_cases, lesions_per_patient=1))
    actions.import_cases(admin, study, manifest)
    n_written = launch_study(admin, study)
    per_reader = Counter(SessionItem.objects.filter(study=study).values_list("reader__username", flat=True))
    if set(per_reader.values()) != {n_items}:
        raise RuntimeError(f"expected {n_items} items per reader, got {sorted(set(per_reader.values()))}")
    connections.close_all()
    return {
        "study_id": study.pk,
        "readers": [r.username for r in readers],
        "n_cases": n_cases,
        "items_written": n_written,
        "migrate_s": round(t_migrate, 1),
        "build_s": round(time.perf_counter() - t0, 1),
    }


# --- gunicorn ---------------------------------------------------------------------------------------------------------


def start_gunicorn(env: dict, port: int, workers: int, threads: int, log_path: Path) -> subprocess.Popen:
    """The shipped config (what production runs); the benchmark sets only its size, address, logs, shutdown."""
    env = {k: v for k, v in env.items() if not k.startswith("GUNICORN_")} | {
        "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": str(workers), "GUNICORN_THREADS": str(threads),
        "GUNICORN_GRACEFUL_TIMEOUT": "5", "GUNICORN_ACCESS_LOG": "", "GUNICORN_ERROR_LOG": str(log_path),
        "GUNICORN_LOG_LEVEL": "warning",
    }  # fmt: skip
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    url = f"http://127.0.0.1:{port}/accounts/login/"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({proc.returncode}):\n{log_tail(log_path)}")
        try:
            with opener.open(url, timeout=5) as r:
                if r.status == 200 and len(worker_pids(proc.pid)) >= workers:
                    return proc
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"gunicorn did not answer in 60 s:\n{log_tail(log_path)}")


def log_tail(path: Path, n: int = 3000) -> str:
    with suppress(OSError):
        return path.read_text(errors="replace")[-n:]
    return ""


def worker_pids(master: int) -> list[int]:
    """Children of the gunicorn master (its workers), from /proc."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may contain spaces, so split after the closing parenthesis.
        if int(stat.rsplit(")", 1)[1].split()[1]) == master:
            pids.append(int(entry))
    return sorted(pids)


def stop_gunicorn(proc: subprocess.Popen | None) -> None:
    """SIGTERM gunicorn's process group (its own session), SIGKILL after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


# --- clients ----------------------------------------------------------------------------------------------------------


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter = field(default_factory=Counter)  # (kind, reason) -> failed attempts
    retries: Counter = field(default_factory=Counter)  # kind -> retried attempts
    acks: list[dict] = field(default_factory=list)
    replayed: int = 0  # acks with created=false: an earlier attempt had stored the read
    failed_readers: dict[str, str] = field(default_factory=dict)
    finished_readers: int = 0
    events: list[dict] = field(default_factory=list)


class Reader:
    def __init__(self, base: str, username: str, run: Run, index: int) -> None:
        self.username = username
        self.run = run
        self.rng = random.Random(index)
        # Cookies are kept here and sent by hand: the server runs its production settings (Secure cookies), and
        # browsers send Secure cookies to http://127.0.0.1 (a potentially trustworthy origin), but httpx's jar
        # never sends them over http (and a jar policy saying otherwise is lost when httpx copies the jar).
        self.cookies: dict[str, str] = {}
        self.client = httpx.AsyncClient(
            base_url=base,
            timeout=httpx.Timeout(run.args.request_timeout, connect=5.0),
            trust_env=False,  # loopback only: never through a proxy from the environment
            follow_redirects=False,
        )
        self.session_id: int | None = None

    def csrf(self) -> dict:
        return {"X-CSRFToken": self.cookies.get("csrftoken", "")}

    def keep_cookies(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or morsel.value == "":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        self.client.cookies.clear()

    async def call(self, kind: str, method: str, url: str, ok: tuple[int, ...], **kw: object) -> httpx.Response:
        """One logical request: retried on transport errors, timeouts and 5xx with the same body."""
        stats, attempt = self.run.stats, 0
        extra_headers = dict(kw.pop("headers", None) or {})
        while True:
            self.run.check_deadline()
            # Every attempt sends the same body and extra headers, with the cookies as they are now.
            headers = {**extra_headers, "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
            t0 = time.perf_counter()
            try:
                r = await self.client.request(method, url, headers=headers, **kw)
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            else:
                ms = (time.perf_counter() - t0) * 1000
                self.keep_cookies(r)
                if r.status_code in ok:
                    stats.latencies[kind].append(ms)
                    return r
                reason = f"HTTP {r.status_code}"
                if r.status_code < 500:
                    stats.errors[(kind, reason)] += 1
                    raise ReaderFailed(f"{kind} {method} {url}: {reason} {r.text[:300]}")
            stats.errors[(kind, reason)] += 1
            attempt += 1
            if attempt > MAX_RETRIES:
                raise ReaderFailed(f"{kind} {method} {url}: gave up after {attempt} attempts ({reason})")
            stats.retries[kind] += 1
            await asyncio.sleep(min(2.0, 0.05 * 2 ** (attempt - 1)) * (0.5 + self.rng.random()))

    async def login(self) -> None:
        r = await self.call("login", "GET", "/accounts/login/", (200,))
        match = CSRF_RE.search(r.text)
        if match is None:
            raise ReaderFailed("no csrfmiddlewaretoken in the login form")
        form = {"username": self.username, "password": PASSWORD, "csrfmiddlewaretoken": match.group(1)}
        r = await self.call("login", "POST", "/accounts/login/", (302,), data=form)
        if "sessionid" not in self.cookies:
            raise ReaderFailed("login set no session cookie")
        r = await self.call("worklist", "GET", "/api/worklist/", (200,))
        sessions = [s for s in r.json() if s["state"] in ("open", "in_progress")]
        if len(sessions) != 1:
            raise ReaderFailed(f"expected one open session in the worklist, got {r.json()}")
        self.session_id = sessions[0]["id"]

    async def read_all(self) -> None:
        run, sid = self.run, self.session_id
        if run.args.think_ms > 0:
            # Paced readers do not start in lockstep: spread the starts over one mean think time.
            await asyncio.sleep(self.rng.uniform(0, run.args.think_ms / 1000))
        await self.call("start", "POST", f"/api/sessions/{sid}/start/", (200,), headers=self.csrf())
        expected_position = 0
        while True:
            r = await self.call("next", "GET", f"/api/sessions/{sid}/next/", (200, 204))
            if r.status_code == 204:
                break
            item = r.json()
            if item["position"] != expected_position or item["read"] is not None:
                raise ReaderFailed(f"next item: position {item['position']}, expected {expected_position} unread")
            if run.args.think_ms > 0:
                await asyncio.sleep(self.rng.expovariate(1000 / run.args.think_ms))
            rating, key = self.rng.randint(0, 100), uuid.uuid4().hex
            body = {"rating": rating, "idempotency_key": key, "active_seconds": round(self.rng.uniform(5, 60), 1),
                    "viewer_state": {"bench": "load", "slice_index": item["lesion"]["slice_index"]}}
            r = await self.call("submit", "POST", f"/api/items/{item['id']}/read/", (200, 201), json=body,
                                headers=self.csrf())
            answer = r.json()
            if answer["item"] != item["id"] or answer["rating"] != rating:
                raise ReaderFailed(f"submit answered {answer} for item {item['id']} rating {rating}")
            run.stats.acks.append({"reader": self.username, "item": item["id"], "rating": rating, "key": key,
                                   "status": r.status_code, "read_id": answer["id"]})
            run.stats.replayed += r.status_code == 200
            run.on_ack()
            expected_position += 1
        if expected_position != run.args.items:
            raise ReaderFailed(f"session done after {expected_position} items, expected {run.args.items}")
        run.stats.finished_readers += 1


class Run:
    def __init__(self, args: argparse.Namespace, base: str, readers: list[str], gunicorn: subprocess.Popen,
                 pg: tuple[str, str], admin_url: str, db: str, bar: object) -> None:
        self.args, self.base, self.usernames, self.gunicorn = args, base, readers, gunicorn
        self.pg, self.admin_url, self.db, self.bar = pg, admin_url, db, bar
        self.stats = Stats()
        self.total = len(readers) * args.items
        self.t0 = 0.0
        self.deadline = math.inf
        self.fault_steps = [(0.3, self.kill_worker), (0.6, self.restart_pg)] if args.fault else []
        self.fault_tasks: list[asyncio.Task] = []

    def now(self) -> float:
        return round(time.perf_counter() - self.t0, 3)

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise ReaderFailed("run deadline passed")

    def on_ack(self) -> None:
        self.bar.update(1)
        n = len(self.stats.acks)
        while self.fault_steps and n >= self.fault_steps[0][0] * self.total:
            _, step = self.fault_steps.pop(0)
            self.fault_tasks.append(asyncio.get_running_loop().create_task(step(n)))

    async def kill_worker(self, n_acked: int) -> None:
        pids = worker_pids(self.gunicorn.pid)
        victim = pids[0]
        os.kill(victim, signal.SIGKILL)
        event = {"t_s": self.now(), "event": "SIGKILL gunicorn worker", "pid": victim, "workers_before": pids,
                 "acked_reads": n_acked}
        self.stats.events.append(event)
        t_kill = time.perf_counter()
        while time.perf_counter() - t_kill < 30:
            await asyncio.sleep(0.1)
            now_pids = worker_pids(self.gunicorn.pid)
            if len(now_pids) >= self.args.workers and victim not in now_pids:
                event["replaced_by"] = sorted(set(now_pids) - set(pids))
                event["replaced_after_s"] = round(time.perf_counter() - t_kill, 2)
                break

    async def restart_pg(self, n_acked: int) -> None:
        version, name = self.pg
        others = await asyncio.to_thread(other_pg_clients, self.admin_url, self.db)
        event = {"t_s": self.now(), "event": f"pg_ctlcluster {version} {name} restart", "acked_reads": n_acked,
                 "other_databases_clients": others}
        self.stats.events.append(event)
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            "pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        event["returncode"] = proc.returncode
        event["restart_s"] = round(time.perf_counter() - t, 2)
        if proc.returncode:
            event["output"] = out.decode(errors="replace")[-1000:]

    async def main(self) -> dict:
        readers = [Reader(self.base, u, self, i) for i, u in enumerate(self.usernames)]
        try:
            # Log in first (PBKDF2: ~0.3-1 s of CPU each), a few at a time; not part of the measured phase.
            login_gate = asyncio.Semaphore(self.args.workers * 2)

            async def login(reader: Reader) -> None:
                async with login_gate:
                    await reader.login()

            t_login = time.perf_counter()
            self.deadline = time.monotonic() + self.args.timeout
            results = await asyncio.gather(*(login(r) for r in readers), return_exceptions=True)
            for reader, res in zip(readers, results, strict=True):
                if isinstance(res, BaseException):
                    self.stats.failed_readers[reader.username] = f"login: {res!r}"
            login_s = time.perf_counter() - t_login
            active = [r for r in readers if r.username not in self.stats.failed_readers]

            # The measured phase: every logged-in reader starts at once.
            busy0, total0 = cpu_times()
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
            self.t0 = time.perf_counter()
            self.deadline = time.monotonic() + self.args.timeout
            tasks = [asyncio.create_task(r.read_all()) for r in active]
            pending: set = set()
            if tasks:
                _done, pending = await asyncio.wait(tasks, timeout=self.args.timeout + 5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            wall = time.perf_counter() - self.t0
            busy1, total1 = cpu_times()
            ru1 = resource.getrusage(resource.RUSAGE_SELF)
            for reader, task in zip(active, tasks, strict=True):
                exc = None if task.cancelled() else task.exception()
                if task.cancelled() or exc is not None:
                    self.stats.failed_readers[reader.username] = repr(exc) if exc else "cancelled (timeout)"
            if self.fault_tasks:
                await asyncio.gather(*self.fault_tasks, return_exceptions=True)
            return {
                "login_phase_s": round(login_s, 2),
                "wall_s": round(wall, 3),
                "machine_cpu_busy_pct": round(100 * (busy1 - busy0) / max(1.0, total1 - total0), 1),
                "client_cpu_s": round(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, 2),
            }
        finally:
            await asyncio.gather(*(r.client.aclose() for r in readers), return_exceptions=True)


# --- integrity check --------------------------------------------------------------------------------------------------


def verify(acks: list[dict], study_id: int, n_readers: int, n_items: int) -> dict:
    """Every acknowledged read stored exactly once, as acknowledged; nothing stored twice or unacknowledged."""
    from django.db import connections
    from django.db.models import Count

    from readerstudy.core.models import AuditEvent
    from readerstudy.reading.models import Read, ReadingSession

    connections.close_all()  # the setup's connection may predate a PostgreSQL restart
    reads = {
        r["item_id"]: r
        for r in Read.objects.filter(study_id=study_id).values("id", "item_id", "rating", "idempotency_key",
                                                                "reader__username")
    }
    lost, mismatched = [], []
    acked_items: Counter = Counter()
    for ack in acks:
        acked_items[ack["item"]] += 1
        read = reads.get(ack["item"])
        if read is None:
            lost.append(ack)
        elif (read["rating"], read["idempotency_key"], read["reader__username"], read["id"]) != (
            ack["rating"], ack["key"], ack["reader"], ack["read_id"]
        ):
            mismatched.append({"ack": ack, "stored": read})
    qs = Read.objects.filter(study_id=study_id)

    def dupes(*fields: str) -> int:
        return qs.values(*fields).annotate(n=Count("id")).filter(n__gt=1).count()

    audit = Counter(
        AuditEvent.objects.filter(study_id=study_id, verb="submit_read").values_list("object_id", flat=True)
    )
    audit_off = sum(1 for r in reads.values() if audit.get(str(r["id"]), 0) != 1)
    sessions = ReadingSession.objects.filter(study_id=study_id)
    result = {
        "acknowledged": len(acks),
        "acknowledged_items": len(acked_items),
        "items_acknowledged_twice": sum(1 for n in acked_items.values() if n > 1),
        "stored_reads": qs.count(),
        "expected_reads": n_readers * n_items,
        "lost": len(lost),
        "mismatched": len(mismatched),
        "duplicated_per_item": dupes("item_id"),
        "duplicated_per_cell": dupes("study_id", "reader_id", "case_id", "modality_id"),
        "duplicated_idempotency_keys": dupes("reader_id", "idempotency_key"),
        "unacknowledged_stored": sum(1 for item in reads if item not in acked_items),
        "reads_without_one_audit_event": audit_off,
        "sessions_finished": sessions.filter(finished_at__isnull=False).count(),
        "sessions": sessions.count(),
        "examples": {"lost": lost[:5], "mismatched": mismatched[:5]},
    }
    result["duplicated"] = (
        result["duplicated_per_item"] + result["duplicated_per_cell"] + result["duplicated_idempotency_keys"]
    )
    result["ok"] = (
        result["lost"] == 0
        and result["mismatched"] == 0
        and result["duplicated"] == 0
        and result["reads_without_one_audit_event"] == 0
        and result["stored_reads"] == result["acknowledged_items"]
    )
    connections.close_all()
    return result


# --- report -----------------------------------------------------------------------------------------------------------


def print_report(res: dict) -> None:
    p = res["parameters"]
    print(f"\nload benchmark: {p['readers']} readers x {p['items']} items, gunicorn {p['workers']} workers"
          f" x {p['threads']} threads, think {p['think_ms']} ms, fault={p['fault']}, "
          f"{res['machine']['cpu_count']} CPUs, load avg before {res['machine']['loadavg_before']}")
    print(f"{'request':<10}{'n':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}{'retries':>8}")
    for kind in KINDS:
        s = res["latency"][kind]
        errs = sum(n for k, n in res["errors"].items() if k.startswith(f"{kind} "))
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        print(f"{kind:<10}{s['n']:>7}{fmt(s['p50_ms']):>9}{fmt(s['p95_ms']):>9}{fmt(s['p99_ms']):>9}"
              f"{fmt(s['max_ms']):>9}{errs:>8}{res['retries'].get(kind, 0):>8}")
    t = res["throughput"]
    print(f"wall {res['run']['wall_s']} s, {t['reads_per_s']} reads/s, {t['requests_per_s']} API requests/s; "
          f"machine CPU busy {res['run']['machine_cpu_busy_pct']} %, client CPU {res['run']['client_cpu_s']} s; "
          f"load avg after {res['machine']['loadavg_after']}")
    for event in res["fault_events"]:
        print(f"fault at {event['t_s']} s: {event['event']} "
              f"({', '.join(f'{k}={v}' for k, v in event.items() if k not in ('t_s', 'event'))})")
    if res["errors"]:
        print("errors (failed attempts): " + ", ".join(f"{k}: {n}" for k, n in res["errors"].items()))
    v = res["integrity"]
    print(f"integrity: {v['acknowledged']} acknowledged ({res['replayed_acks']} replayed), {v['stored_reads']} "
          f"stored, lost {v['lost']}, duplicated {v['duplicated']}, mismatched {v['mismatched']}, unacknowledged "
          f"stored {v['unacknowledged_stored']}, audit off {v['reads_without_one_audit_event']}, sessions finished "
          f"{v['sessions_finished']}/{v['sessions']} -> {'OK' if v['ok'] else 'FAILED'}")
    if res["failed_readers"]:
        print(f"{len(res['failed_readers'])} readers failed, e.g. {next(iter(res['failed_readers'].items()))}")
    goal = res["goal"]
    print(f"goal p95 <= {GOAL_P95_MS:.0f} ms (next and submit): {'met' if goal['p95_met'] else 'NOT met'}; "
          f"0 lost / 0 duplicated: {'met' if goal['integrity_met'] else 'NOT met'}")


def package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


# --- main -------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--readers", type=int, default=50)
    ap.add_argument("--items", type=int, default=100, help="items per reader (even: cases x 2 modalities)")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    ap.add_argument("--threads", type=int, default=8, help="threads per gthread worker (the shipped config's 8)")
    ap.add_argument("--think-ms", type=float, default=0.0, help="mean pause between next item and submit")
    ap.add_argument("--fault", action="store_true", help="SIGKILL a worker at 30 %%, restart PostgreSQL at 60 %%")
    ap.add_argument("--timeout", type=float, default=600.0, help="bound of the reading phase (and of logins), s")
    ap.add_argument("--request-timeout", type=float, default=15.0, help="per-request timeout, s")
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL, help="database to (re)create; dropped afterwards")
    ap.add_argument("--port", type=int, default=0, help="gunicorn port (0: a free one)")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default bench/load/results.json, results-fault.json with --fault)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = ROOT / "bench" / "load" / ("results-fault.json" if args.fault else "results.json")
    if args.items < 2 or args.items % 2:
        ap.error("--items must be even and >= 2 (cases x 2 modalities)")
    if args.readers < 1 or args.workers < 1 or args.threads < 1:
        ap.error("--readers, --workers and --threads must be >= 1")
    host = urlsplit(args.pg_url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        ap.error("--pg-url must be a loopback server (the fault run restarts it)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    db = urlsplit(args.pg_url).path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z0-9_]+", db) or db in ("postgres", "template0", "template1"):
        raise SystemExit(f"refusing to recreate database {db!r}")
    admin_url = with_db(args.pg_url, "postgres")
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    env = dict(os.environ)
    env.pop("TASKS_BACKEND", None)
    env.update({
        "DJANGO_SETTINGS_MODULE": "readerstudy.settings",
        "DATABASE_URL": args.pg_url,
        "MEDIA_ROOT": str(tmp / "media"),
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DEID_SALT": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    })
    os.environ.update(env)  # this process builds the study and checks the database with the same settings
    os.environ.pop("TASKS_BACKEND", None)
    gunicorn = None
    db_created = False
    log_path = tmp / "gunicorn.log"
    try:
        ensure_pg(admin_url)
        pg = pg_cluster(urlsplit(admin_url).port or 5432)
        loadavg_before = [round(x, 2) for x in os.getloadavg()]
        recreate_db(admin_url, db)
        db_created = True
        print(f"building the study ({args.readers} readers x {args.items} items) in {db} ...", file=sys.stderr)
        built = build_study(tmp, args.readers, args.items)
        port = args.port or free_port()
        gunicorn = start_gunicorn(env, port, args.workers, args.threads, log_path)
        with tqdm(total=args.readers * args.items, desc="acknowledged reads", unit="read",
                  disable=args.no_progress) as bar:
            run = Run(args, f"http://127.0.0.1:{port}", built["readers"], gunicorn, pg, admin_url, db, bar)
            timing = asyncio.run(run.main())
        loadavg_after = [round(x, 2) for x in os.getloadavg()]
        stats = run.stats
        stop_gunicorn(gunicorn)
        integrity = verify(stats.acks, built["study_id"], args.readers, args.items)
        wall = timing["wall_s"]
        n_api = sum(len(stats.latencies[k]) for k in ("start", "next", "submit"))
        latency = {k: summary(stats.latencies[k]) for k in KINDS}
        p95s = [latency[k]["p95_ms"] for k in ("next", "submit")]
        res = {
            "benchmark": "load",
            "machine": {
                "cpu_count": os.cpu_count(),
                "cpu_affinity": len(os.sched_getaffinity(0)),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "loadavg_before": loadavg_before,
                "loadavg_after": loadavg_after,
                "postgresql": pg_facts(admin_url),
                "packages": {n: package_version(n) for n in ("django", "gunicorn", "httpx", "psycopg")},
            },
            "parameters": {
                "readers": args.readers, "items": args.items, "workers": args.workers, "threads": args.threads,
                "worker_class": "gthread", "think_ms": args.think_ms,
                "fault": args.fault, "timeout_s": args.timeout, "request_timeout_s": args.request_timeout,
                "max_retries": MAX_RETRIES, "design": "sequential, 2 modalities, 1 session per reader",
                "debug": False, "client": "asyncio + httpx, one AsyncClient per reader",
            },
            "setup": built | {"readers": len(built["readers"])},
            "run": timing,
            "latency": latency,
            "throughput": {
                "reads": len(stats.acks),
                "reads_per_s": round(len(stats.acks) / wall, 1) if wall else None,
                "requests_per_s": round(n_api / wall, 1) if wall else None,
            },
            "errors": {f"{k} {reason}": n for (k, reason), n in sorted(stats.errors.items())},
            "retries": dict(stats.retries),
            "replayed_acks": stats.replayed,
            "fault_events": stats.events,
            "failed_readers": stats.failed_readers,
            "finished_readers": stats.finished_readers,
            "integrity": integrity,
            "goal": {
                "p95_ms": GOAL_P95_MS,
                "p95_met": all(v is not None and v <= GOAL_P95_MS for v in p95s),
                "integrity_met": integrity["lost"] == 0 and integrity["duplicated"] == 0,
            },
        }
        if stats.errors or stats.failed_readers:
            res["gunicorn_log_tail"] = log_tail(log_path, 4000)
        print_report(res)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")
        return 0 if integrity["ok"] and not stats.failed_readers else 1
    finally:
        stop_gunicorn(gunicorn)
        with suppress(Exception):
            from django.db import connections

            connections.close_all()
        if db_created:
            try:
                drop_db(admin_url, db)
            except Exception as exc:  # report, then keep cleaning up
                print(f"could not drop database {db}: {exc}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)

