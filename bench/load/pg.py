"""The load benchmark's PostgreSQL: the local cluster, a throwaway database, facts and other clients."""

from __future__ import annotations

import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit


def with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


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


def backend_pids(admin_url: str, db: str) -> list[int]:
    """Process ids of the client backends connected to ``db`` (the server's connections to it)."""
    with pg_connect(admin_url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname = %s", [db]
        ).fetchall()
    return [pid for (pid,) in rows]
