"""The load benchmark's simulated readers (one httpx client each) and the run that drives them and the faults."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import random
import re
import resource
import signal
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

import httpx

from bench.load.pg import other_pg_clients
from bench.load.server import PASSWORD, cpu_delta, server_cpu, worker_pids

CSRF_RE = re.compile(r'name="csrfmiddlewaretoken"\s+value="([^"]+)"')


# Retry policy: exponential backoff with jitter, base 50 ms, capped at 2 s, at most this many retries per request.
MAX_RETRIES = 25
# The capacity phases, in this order in every round: the baseline first, then the reading endpoints.
SOLO_KINDS = ("ping", "next", "item", "submit")


class ReaderFailed(Exception):
    pass


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # the reading loop's
    solo_latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # capacity phases'
    phases: list[dict] = field(default_factory=list)  # capacity phases: kind, round, requests, wall, server CPU
    errors: Counter = field(default_factory=Counter)  # (kind, reason) -> failed attempts
    retries: Counter = field(default_factory=Counter)  # kind -> retried attempts
    acks: list[dict] = field(default_factory=list)
    replayed: int = 0  # acks with created=false: an earlier attempt had stored the read
    failed_readers: dict[str, str] = field(default_factory=dict)
    finished_readers: int = 0
    events: list[dict] = field(default_factory=list)


class Reader:
    def __init__(self, base: str, username: str, run: Run, index: int, order: list[int]) -> None:
        self.username = username
        self.order = order  # the session's item ids by position (for the submit-only phase)
        self.position = 0  # the next unread position
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

    async def call(
        self, kind: str, method: str, url: str, ok: tuple[int, ...], *, solo: bool = False, **kw: object
    ) -> httpx.Response:
        """One logical request: retried on transport errors, timeouts and 5xx with the same body. ``solo``: a
        request of a capacity phase (its latency is kept apart from the reading loop's)."""
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
                    (stats.solo_latencies if solo else stats.latencies)[kind].append(ms)
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

    async def start(self) -> None:
        await self.call("start", "POST", f"/api/sessions/{self.session_id}/start/", (200,), headers=self.csrf())

    async def next_item(self, *, solo: bool = False) -> dict | None:
        """GET the current item (None: the session is complete), checked against the stored order."""
        r = await self.call("next", "GET", f"/api/sessions/{self.session_id}/next/", (200, 204), solo=solo)
        if r.status_code == 204:
            return None
        item = r.json()
        # The server serves only unread items and never a rating: a "read" key would be a blinding leak.
        if item["position"] != self.position or item["id"] != self.order[self.position] or "read" in item:
            raise ReaderFailed(f"next item: position {item['position']}, expected {self.position} unread")
        return item

    async def get_item(self, item_id: int, *, solo: bool = False) -> dict:
        r = await self.call("item", "GET", f"/api/items/{item_id}/", (200,), solo=solo)
        item = r.json()
        if item["id"] != item_id or "read" in item:
            raise ReaderFailed(f"item {item_id}: answered {item['id']}, or with a read")
        return item

    async def submit(self, item_id: int, slice_index: int, *, solo: bool = False) -> None:
        """Submit a read of ``item_id`` (the current item) and record the acknowledgement."""
        run = self.run
        rating, key = self.rng.randint(0, 100), uuid.uuid4().hex
        body = {
            "rating": rating,
            "idempotency_key": key,
            "active_seconds": round(self.rng.uniform(5, 60), 1),
            "viewer_state": {"bench": "load", "slice_index": slice_index},
        }
        r = await self.call(
            "submit", "POST", f"/api/items/{item_id}/read/", (200, 201), solo=solo, json=body, headers=self.csrf()
        )
        answer = r.json()
        if answer["item"] != item_id or answer["rating"] != rating:
            raise ReaderFailed(f"submit answered {answer} for item {item_id} rating {rating}")
        run.stats.acks.append(
            {"reader": self.username, "item": item_id, "rating": rating, "key": key, "status": r.status_code,
             "read_id": answer["id"]}
        )  # fmt: skip
        run.stats.replayed += r.status_code == 200
        run.on_ack()
        self.position += 1

    async def solo(self, kind: str, n: int) -> None:
        """``n`` requests of one endpoint back to back (a capacity phase: the endpoint alone, closed loop).

        ``next`` and ``item`` ask for the current item again and again (served, not read: the same work as the
        reading loop's but the first serve's one UPDATE); ``submit`` reads the next ``n`` items of the stored
        order without asking for them first."""
        for _ in range(n):
            if kind == "ping":
                await self.call("ping", "GET", "/api/ping/", (200,), solo=True)
            elif kind == "next":
                if await self.next_item(solo=True) is None:
                    raise ReaderFailed("next item: the session is complete before the reading loop")
            elif kind == "item":
                await self.get_item(self.order[self.position], solo=True)
            elif kind == "submit":
                await self.submit(self.order[self.position], 0, solo=True)
            else:
                raise ValueError(kind)

    async def read_all(self) -> None:
        """The reading loop, per item: ping (the baseline), next item, the item again, (think), submit."""
        run = self.run
        if run.args.think_ms > 0:
            # Paced readers do not start in lockstep: spread the starts over one mean think time.
            await asyncio.sleep(self.rng.uniform(0, run.args.think_ms / 1000))
        while True:
            await self.call("ping", "GET", "/api/ping/", (200,))
            item = await self.next_item()
            if item is None:
                break
            await self.get_item(item["id"])
            if run.args.think_ms > 0:
                await asyncio.sleep(self.rng.expovariate(1000 / run.args.think_ms))
            await self.submit(item["id"], item["lesion"]["slice_index"])
        if self.position != run.args.items:
            raise ReaderFailed(f"session done after {self.position} items, expected {run.args.items}")
        run.stats.finished_readers += 1


class Run:
    def __init__(
        self,
        args: argparse.Namespace,
        base: str,
        readers: list[str],
        gunicorn: subprocess.Popen,
        pg: tuple[str, str],
        admin_url: str,
        db: str,
        bar: object,
        orders: dict[str, list[int]],
    ) -> None:
        self.args, self.base, self.usernames, self.gunicorn = args, base, readers, gunicorn
        self.orders = orders
        # The settings' logging (set up with Django in this process) would log every request of every reader.
        logging.getLogger("httpx").setLevel(logging.WARNING)
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
        event = {
            "t_s": self.now(),
            "event": "SIGKILL gunicorn worker",
            "pid": victim,
            "workers_before": pids,
            "acked_reads": n_acked,
        }
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
        event = {
            "t_s": self.now(),
            "event": f"pg_ctlcluster {version} {name} restart",
            "acked_reads": n_acked,
            "other_databases_clients": others,
        }
        self.stats.events.append(event)
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            version,
            name,
            "restart",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        event["returncode"] = proc.returncode
        event["restart_s"] = round(time.perf_counter() - t, 2)
        if proc.returncode:
            event["output"] = out.decode(errors="replace")[-1000:]

    async def main(self) -> dict:
        readers = [Reader(self.base, u, self, i, self.orders[u]) for i, u in enumerate(self.usernames)]
        try:
            # Log in first (PBKDF2: ~0.3-1 s of CPU each), a few at a time; not part of the measured phase.
            login_gate = asyncio.Semaphore(self.args.workers * 2)

            async def login(reader: Reader) -> None:
                async with login_gate:
                    await reader.login()

            t_login = time.perf_counter()
            self.deadline = time.monotonic() + self.args.timeout
            active = await self.each(readers, "login", login)
            login_s = time.perf_counter() - t_login

            # Every logged-in reader starts its session, then the capacity phases, then the reading loop.
            self.t0 = time.perf_counter()
            self.deadline = time.monotonic() + self.args.timeout
            active = await self.each(active, "start", lambda r: r.start())
            t_capacity = time.perf_counter()
            for round_ in range(self.args.solo_rounds if self.args.solo else 0):
                for kind in SOLO_KINDS:
                    active = await self.capacity_phase(active, kind, round_)
            capacity_s = time.perf_counter() - t_capacity

            # The reading loop: every reader at once (paced: spread over one mean think time).
            busy0, total0 = cpu_times()
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
            t_read = time.perf_counter()
            self.deadline = time.monotonic() + self.args.timeout
            tasks = [asyncio.create_task(r.read_all()) for r in active]
            pending: set = set()
            if tasks:
                _done, pending = await asyncio.wait(tasks, timeout=self.args.timeout + 5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            wall = time.perf_counter() - t_read
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
                "capacity_phases_s": round(capacity_s, 2),
                "wall_s": round(wall, 3),  # the reading loop's
                "machine_cpu_busy_pct": round(100 * (busy1 - busy0) / max(1.0, total1 - total0), 1),
                "client_cpu_s": round(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, 2),
            }
        finally:
            await asyncio.gather(*(r.client.aclose() for r in readers), return_exceptions=True)

    async def each(self, readers: list[Reader], what: str, step: Callable[[Reader], Awaitable[None]]) -> list[Reader]:
        """Run ``step`` for every reader at once; the readers that did not fail."""
        results = await asyncio.gather(*(step(r) for r in readers), return_exceptions=True)
        for reader, res in zip(readers, results, strict=True):
            if isinstance(res, BaseException):
                self.stats.failed_readers[reader.username] = f"{what}: {res!r}"
        return [r for r in readers if r.username not in self.stats.failed_readers]

    async def capacity_phase(self, readers: list[Reader], kind: str, round_: int) -> list[Reader]:
        """One endpoint alone in a closed loop: every reader sends ``--solo`` requests back to back. Records the
        phase's wall time and the server's CPU time (gunicorn workers, and this database's PostgreSQL backends)."""
        cpu0 = await asyncio.to_thread(server_cpu, self.gunicorn.pid, self.admin_url, self.db)
        n0 = len(self.stats.solo_latencies[kind])
        busy0, total0 = cpu_times()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        survivors = await self.each(readers, f"{kind} phase", lambda r: r.solo(kind, self.args.solo))
        wall = time.perf_counter() - t
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        busy1, total1 = cpu_times()
        cpu1 = await asyncio.to_thread(server_cpu, self.gunicorn.pid, self.admin_url, self.db)
        self.stats.phases.append(
            {
                "kind": kind,
                "round": round_,
                "requests": len(self.stats.solo_latencies[kind]) - n0,
                "wall_s": round(wall, 4),
                "server_cpu_s": {part: round(cpu_delta(cpu0[part], cpu1[part]), 4) for part in cpu0},
                "client_cpu_s": round(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, 4),
                "machine_cpu_busy_pct": round(100 * (busy1 - busy0) / max(1.0, total1 - total0), 1),
            }
        )
        return survivors
