"""Load benchmark: simulated readers against gunicorn + PostgreSQL through the real reading API.

    python -m bench.load [--readers 50] [--items 100] [--workers 2] [--threads 8] [--think-ms 0] [--fault]
                         [--solo 10] [--solo-rounds 2] [--timeout 600] [--out bench/load/results.json]

(``--out`` defaults to ``results-fault.json`` with ``--fault``.)

1. Recreates a throwaway PostgreSQL database (``readerstudy_load`` on ``postgres://postgres@127.0.0.1:5432``,
   ``--pg-url``), migrates it and builds a launched *sequential* study through the real actions (create_study,
   add_modality, add_member, import_cases, launch_study): ``--items / 2`` cases with a tiny 5-slice CT series each,
   2 modalities (unaided, aided), ``--readers`` readers, so every reader has one session of ``--items`` items.
   Then ANALYZE, as a long-running database has its planner statistics.
2. Starts gunicorn with the shipped production config (``gunicorn -c deploy/gunicorn.conf.py``: gthread workers,
   its timeouts and limits), sized by ``GUNICORN_WORKERS`` / ``GUNICORN_THREADS`` from ``--workers`` / ``--threads``,
   bound to ``127.0.0.1:PORT``, with ``DEBUG=false`` (production settings: secure cookies, real SECRET_KEY check).
   Loopback only.
3. One asyncio task per reader, each with its own ``httpx.AsyncClient`` (its own cookie jar, like a browser):
   log in through the login form (CSRF token from the form), find the session in ``GET /api/worklist/``, then,
   once every reader is logged in, ``POST /api/sessions/<id>/start/``, the capacity phases, and the reading loop.
   Connection errors, timeouts and 5xx are retried with the *same* request (for a read: the same idempotency key
   and rating) after an exponential backoff with jitter; 4xx are not retried. Latency is the wall time of the
   successful attempt; failed attempts are counted as errors, by kind and reason.

   *Capacity phases* (always a closed loop; ``--solo 0``: none): ``--solo-rounds`` rounds of four phases, one
   endpoint alone in each, every reader sending ``--solo`` requests back to back: ``GET /api/ping/`` (the
   baseline: ``readerstudy.views.ping``, a minimal ``@login_required`` JsonResponse: session and user lookups,
   the middleware, one response), ``GET .../next/`` and ``GET /api/items/<id>/`` (the current item again: the
   same work as in the reading loop but the first serve's one UPDATE), ``POST /api/items/<id>/read/`` (the next
   items of the stored order, read without asking for them first; the harness has the order from the database).
   Per phase: requests, wall time, the CPU time of the gunicorn workers and of this database's PostgreSQL backends
   (from /proc, by pid), the client's CPU and the machine's.

   *Reading loop*, per item: ``GET /api/ping/``, ``GET .../next/`` (200 item, 204 done), ``GET /api/items/<id>/``,
   ``POST /api/items/<id>/read/`` (random rating, fresh uuid idempotency key per item, ``X-CSRFToken``): the
   baseline interleaved with the reading endpoints, one request each per item, under one load.
   ``--think-ms`` adds a pause (exponential, that mean) between showing an item and submitting it, and spreads
   the readers' starts uniformly over one mean pause; 0 (default) is a closed loop with no think time, i.e. the
   server saturated by 50 readers clicking as fast as it answers (latency = queueing: readers / throughput).

   *Cost per request over the baseline* (``ratios``; goal: each reading endpoint at most 3x): ``throughput``,
   ping's requests/s over the endpoint's in the capacity phases (cost per request = 1 / throughput at saturation,
   whatever it is made of: this is the goal's measure); ``server_cpu``, the server's CPU per request over ping's
   in the same phases (the server alone: the client's CPU, which runs on the same machine and is about the same
   per request of any kind, dilutes the throughput ratio, and other load on the machine moves wall-clock figures
   but hardly CPU time); ``p50``, the median latency over ping's in the reading loop (requests interleaved under
   one load: in a closed loop mostly queueing, so it understates; paced, close to the service-time ratio). Equal
   request counts per endpoint, phases interleaved over rounds so that drifting load hits every endpoint alike.
4. ``--fault``: after 30 % of the reads one gunicorn worker gets SIGKILL (mid-request: the workers are busy);
   after 60 % PostgreSQL is restarted (``pg_ctlcluster --skip-systemctl-redirect VER main restart``).
5. Checks the database: every acknowledged read (a 200/201 received by a client) is stored exactly once with
   the client's rating and idempotency key (lost = acknowledged but missing or different), no duplicates per item,
   per reader x case x modality or per reader x idempotency key, reads nobody acknowledged, one ``submit_read``
   audit event per read, every session finished.

Prints the tables and writes JSON (machine facts, load average, parameters, the capacity phases, the reading
loop's latencies and requests/s per endpoint, the ratios, throughput, errors, integrity). Cleans up in
``finally``: gunicorn's process group is terminated, the database dropped, the temp folder removed. Exit status 1
when the integrity check fails or a reader did not finish.

Secure cookies over plain http: httpx's cookie jar (``http.cookiejar``) does not send ``Secure`` cookies to
``http://`` URLs. Browsers do send them to ``http://localhost`` / ``127.0.0.1`` (potentially trustworthy origins),
so each reader keeps its cookies itself (from ``Set-Cookie``) and sends the ``Cookie`` header: the server runs its
production settings unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import sys
import tempfile
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit

from bench.harness import ROOT, free_port, log_tail, machine_facts, package_version, write_json
from bench.load.clients import MAX_RETRIES, Run
from bench.load.pg import drop_db, ensure_pg, pg_cluster, pg_facts, recreate_db, with_db
from bench.load.report import (
    BASELINE,
    GOAL_P95_MS,
    GOAL_RATIO,
    KINDS,
    READING,
    capacity,
    print_report,
    ratios,
    summary,
    verify,
)
from bench.load.server import build_study, start_gunicorn, stop_gunicorn

DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/readerstudy_load"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--readers", type=int, default=50)
    ap.add_argument("--items", type=int, default=100, help="items per reader (even: cases x 2 modalities)")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    ap.add_argument("--threads", type=int, default=8, help="threads per gthread worker (the shipped config's 8)")
    ap.add_argument("--think-ms", type=float, default=0.0, help="mean pause between next item and submit")
    ap.add_argument(
        "--solo", type=int, default=10, help="requests per reader per endpoint in each capacity round (0: none)"
    )
    ap.add_argument("--solo-rounds", type=int, default=2, help="capacity rounds (ping, next, item, submit each)")
    ap.add_argument("--fault", action="store_true", help="SIGKILL a worker at 30 %%, restart PostgreSQL at 60 %%")
    ap.add_argument("--timeout", type=float, default=600.0, help="bound of the reading phase (and of logins), s")
    ap.add_argument("--request-timeout", type=float, default=15.0, help="per-request timeout, s")
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL, help="database to (re)create; dropped afterwards")
    ap.add_argument("--port", type=int, default=0, help="gunicorn port (0: a free one)")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default bench/load/results.json, results-fault.json with --fault)",
    )
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = ROOT / "bench" / "load" / ("results-fault.json" if args.fault else "results.json")
    if args.items < 2 or args.items % 2:
        ap.error("--items must be even and >= 2 (cases x 2 modalities)")
    if args.readers < 1 or args.workers < 1 or args.threads < 1:
        ap.error("--readers, --workers and --threads must be >= 1")
    if args.solo < 0 or args.solo_rounds < 1 or args.solo * args.solo_rounds >= args.items:
        ap.error("--solo x --solo-rounds (the items read by the submit-only phases) must be below --items")
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
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "readerstudy.settings",
            "DATABASE_URL": args.pg_url,
            "MEDIA_ROOT": str(tmp / "media"),
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "DEID_SALT": secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
    )
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
        with tqdm(
            total=args.readers * args.items, desc="acknowledged reads", unit="read", disable=args.no_progress
        ) as bar:
            orders = built.pop("orders")
            run = Run(args, f"http://127.0.0.1:{port}", built["readers"], gunicorn, pg, admin_url, db, bar, orders)
            timing = asyncio.run(run.main())
        loadavg_after = [round(x, 2) for x in os.getloadavg()]
        stats = run.stats
        stop_gunicorn(gunicorn)
        integrity = verify(stats.acks, built["study_id"], args.readers, args.items)
        wall = timing["wall_s"]
        n_api = sum(len(stats.latencies[k]) for k in (BASELINE, *READING))
        latency = {k: summary(stats.latencies[k]) for k in KINDS}
        for kind in (BASELINE, *READING):
            latency[kind]["requests_per_s"] = round(latency[kind]["n"] / wall, 1) if wall else None
        cap = capacity(stats.phases, stats.solo_latencies)
        rat = ratios(cap, latency)
        throughput_ratios = [r["throughput"] for r in rat.values()]
        p95s = [latency[k]["p95_ms"] for k in ("next", "submit")]
        res = {
            "benchmark": "load",
            "machine": {
                **machine_facts(),
                "cpu_affinity": len(os.sched_getaffinity(0)),
                "loadavg_before": loadavg_before,
                "loadavg_after": loadavg_after,
                "postgresql": pg_facts(admin_url),
                "packages": {n: package_version(n) for n in ("django", "gunicorn", "httpx", "psycopg")},
            },
            "parameters": {
                "readers": args.readers,
                "items": args.items,
                "workers": args.workers,
                "threads": args.threads,
                "worker_class": "gthread",
                "think_ms": args.think_ms,
                "solo": args.solo,
                "solo_rounds": args.solo_rounds,
                "fault": args.fault,
                "timeout_s": args.timeout,
                "request_timeout_s": args.request_timeout,
                "max_retries": MAX_RETRIES,
                "design": "sequential, 2 modalities, 1 session per reader",
                "debug": False,
                "client": "asyncio + httpx, one AsyncClient per reader",
            },
            "setup": built | {"readers": len(built["readers"])},
            "run": timing,
            "latency": latency,  # the reading loop's (login, worklist and start: before it)
            "capacity": cap,  # each endpoint alone, closed loop
            "capacity_phases": stats.phases,
            "ratios": rat,
            "ratios_method": ratios.__doc__,
            "throughput": {
                "reads": len(stats.acks),
                "reads_per_s": round(len(stats.latencies["submit"]) / wall, 1) if wall else None,  # reading loop's
                "requests_per_s": round(n_api / wall, 1) if wall else None,  # the reading loop's
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
                "ratio_max": GOAL_RATIO,
                "ratio_met": None
                if not cap or None in throughput_ratios
                else all(r <= GOAL_RATIO for r in throughput_ratios),
                "integrity_met": integrity["lost"] == 0 and integrity["duplicated"] == 0,
            },
        }
        if stats.errors or stats.failed_readers:
            res["gunicorn_log_tail"] = log_tail(log_path, 4000)
        print_report(res)
        write_json(args.out, res)
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
