"""The load benchmark's study (built through the real actions) and its gunicorn (the shipped config)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.harness import ROOT, start_server, stop_server

GUNICORN_CONFIG = ROOT / "deploy" / "gunicorn.conf.py"
PASSWORD = "bench-load-pass-1"


def build_study(tmp: Path, n_readers: int, n_items: int) -> dict:
    """Migrate the new database and build a launched sequential study; returns the readers' usernames etc."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command
    from django.db import connections

    from fixtures.manifests import balanced_rows, write_manifest
    from readerstudy.reading.actions import launch_study
    from readerstudy.reading.models import SessionItem
    from readerstudy.studies import actions

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
    n_written = launch_study(admin, study, accept_missing_predictions=True)  # the bench serves no DL output
    with connections["default"].cursor() as cursor:
        cursor.execute("ANALYZE")  # the planner statistics a long-running database has (autovacuum keeps them)
    per_reader = Counter(SessionItem.objects.filter(study=study).values_list("reader__username", flat=True))
    if set(per_reader.values()) != {n_items}:
        raise RuntimeError(f"expected {n_items} items per reader, got {sorted(set(per_reader.values()))}")
    # Each reader's stored order (item ids by position): the submit-only phase posts reads without asking for the
    # next item (the API serves only the current one, so a client could not know them otherwise).
    orders: dict[str, list[int]] = {r.username: [] for r in readers}
    for username, item_id in (
        SessionItem.objects.filter(study=study).order_by("position").values_list("reader__username", "pk")
    ):
        orders[username].append(item_id)
    connections.close_all()
    return {
        "study_id": study.pk,
        "readers": [r.username for r in readers],
        "orders": orders,
        "n_cases": n_cases,
        "items_written": n_written,
        "migrate_s": round(t_migrate, 1),
        "build_s": round(time.perf_counter() - t0, 1),
    }


def start_gunicorn(env: dict, port: int, workers: int, threads: int, log_path: Path) -> subprocess.Popen:
    """The shipped config (what production runs); the benchmark sets only its size, address, logs, shutdown."""
    env = {k: v for k, v in env.items() if not k.startswith("GUNICORN_")} | {
        "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": str(workers), "GUNICORN_THREADS": str(threads),
        "GUNICORN_GRACEFUL_TIMEOUT": "5", "GUNICORN_ACCESS_LOG": "", "GUNICORN_ERROR_LOG": str(log_path),
        "GUNICORN_LOG_LEVEL": "warning",
    }  # fmt: skip
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG)]
    return start_server(
        cmd, env, port, log_path, timeout_s=60, name="gunicorn", log_output=False,
        ready=lambda proc: len(worker_pids(proc.pid)) >= workers,
    )  # fmt: skip


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


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process so far, from /proc (None: it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def server_cpu(master: int, admin_url: str, db: str) -> dict[str, dict[int, float]]:
    """CPU seconds so far of the server's processes by pid: the gunicorn workers, and the PostgreSQL backends
    connected to the benchmark's database (not other databases' on the same cluster, nor the cluster's shared
    background processes: the WAL writer's and checkpointer's part of a submit is not counted)."""
    from bench.load.pg import backend_pids

    parts = {"gunicorn": worker_pids(master), "postgres": backend_pids(admin_url, db)}
    return {part: {pid: cpu for pid in pids if (cpu := process_cpu_s(pid)) is not None} for part, pids in parts.items()}


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two ``server_cpu`` snapshots (a process started in between counts from 0; one
    gone by the end is lost, which only a fault makes happen)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def stop_gunicorn(proc: subprocess.Popen | None) -> None:
    """SIGTERM gunicorn's process group (its own session), SIGKILL after 10 s."""
    stop_server(proc, grace_s=10)
