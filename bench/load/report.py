"""The load benchmark's integrity check of the database, its latency summary and the printed report."""

from __future__ import annotations

from collections import Counter

from bench.harness import pct

GOAL_P95_MS = 50.0
# Each reading endpoint at most this many times the baseline's (ping's) cost per request.
GOAL_RATIO = 3.0

KINDS = ("login", "worklist", "start", "ping", "next", "item", "submit")
BASELINE = "ping"
READING = ("next", "item", "submit")


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


def capacity(phases: list[dict], latencies: dict[str, list[float]]) -> dict:
    """Per endpoint, over its capacity phases (the endpoint alone, closed loop): latency, requests per second
    (requests / the phases' wall time), and CPU per request of the server (gunicorn workers + this database's
    PostgreSQL backends) and of the client."""
    out = {}
    for kind in dict.fromkeys(p["kind"] for p in phases):
        mine = [p for p in phases if p["kind"] == kind]
        n, wall = sum(p["requests"] for p in mine), sum(p["wall_s"] for p in mine)
        gunicorn = sum(p["server_cpu_s"]["gunicorn"] for p in mine)
        postgres = sum(p["server_cpu_s"]["postgres"] for p in mine)
        client = sum(p["client_cpu_s"] for p in mine)
        per = lambda seconds, n=n: round(1000 * seconds / n, 3) if n else None  # noqa: E731
        out[kind] = {
            **summary(latencies[kind]),
            "requests": n,
            "wall_s": round(wall, 3),
            "requests_per_s": round(n / wall, 1) if wall else None,
            "server_cpu_ms_per_request": per(gunicorn + postgres),
            "gunicorn_cpu_ms_per_request": per(gunicorn),
            "postgres_cpu_ms_per_request": per(postgres),
            "client_cpu_ms_per_request": per(client),
            "machine_cpu_busy_pct": round(sum(p["machine_cpu_busy_pct"] * p["wall_s"] for p in mine) / wall, 1)
            if wall
            else None,
        }
    return out


def ratios(cap: dict, latency: dict) -> dict:
    """Each reading endpoint's cost per request over the baseline's (ping), three ways:

    - ``throughput``: ping's requests/s over the endpoint's, each alone in a closed loop (capacity phases): cost
      per request = 1 / throughput at saturation, whatever the cost is made of (server CPU, the database, locks,
      the client's share, context switches);
    - ``server_cpu``: server CPU per request over ping's, same phases: the server's share alone, not the client's,
      and not disturbed by other load on the machine (which the wall-clock measures are);
    - ``p50``: median latency over ping's in the reading loop, requests interleaved under one load; in a closed
      loop mostly queueing (it understates), paced close to the service-time ratio.
    """
    div = lambda a, b: round(a / b, 2) if a is not None and b else None  # noqa: E731
    base_cap, base_lat = cap.get(BASELINE, {}), latency.get(BASELINE, {})
    out = {}
    for kind in READING:
        c, lat = cap.get(kind, {}), latency.get(kind, {})
        out[kind] = {
            "throughput": div(base_cap.get("requests_per_s"), c.get("requests_per_s")),
            "server_cpu": div(c.get("server_cpu_ms_per_request"), base_cap.get("server_cpu_ms_per_request")),
            "p50": div(lat.get("p50_ms"), base_lat.get("p50_ms")),
        }
    return out


def verify(acks: list[dict], study_id: int, n_readers: int, n_items: int) -> dict:
    """Every acknowledged read stored exactly once, as acknowledged; nothing stored twice or unacknowledged."""
    from django.db import connections
    from django.db.models import Count

    from readerstudy.core.models import AuditEvent
    from readerstudy.reading.models import Read, ReadingSession

    connections.close_all()  # the setup's connection may predate a PostgreSQL restart
    reads = {
        r["item_id"]: r
        for r in Read.objects.filter(study_id=study_id).values(
            "id", "item_id", "rating", "idempotency_key", "reader__username"
        )
    }
    lost, mismatched = [], []
    acked_items: Counter = Counter()
    for ack in acks:
        acked_items[ack["item"]] += 1
        read = reads.get(ack["item"])
        if read is None:
            lost.append(ack)
        elif (read["rating"], read["idempotency_key"], read["reader__username"], read["id"]) != (
            ack["rating"],
            ack["key"],
            ack["reader"],
            ack["read_id"],
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


def print_report(res: dict) -> None:
    p = res["parameters"]
    print(
        f"\nload benchmark: {p['readers']} readers x {p['items']} items, gunicorn {p['workers']} workers"
        f" x {p['threads']} threads, think {p['think_ms']} ms, fault={p['fault']}, "
        f"{res['machine']['cpu_count']} CPUs, load avg before {res['machine']['loadavg_before']}"
    )
    fmt = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    cap, rat = res["capacity"], res["ratios"]
    if cap:
        print(
            f"capacity: each endpoint alone, closed loop, {p['readers']} readers x {p['solo']} requests, "
            f"{p['solo_rounds']} rounds of ping, next, item, submit"
        )
        print(
            f"{'endpoint':<10}{'n':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'req/s':>8}{'srv CPU':>9}"
            f"{'(PG)':>7}{'x ping':>8}{'x CPU':>7}"
        )
        for kind, c in cap.items():
            r = rat.get(kind, {})
            print(
                f"{kind:<10}{c['n']:>7}{fmt(c['p50_ms']):>9}{fmt(c['p95_ms']):>9}{fmt(c['p99_ms']):>9}"
                f"{fmt(c['requests_per_s']):>8}{fmt(c['server_cpu_ms_per_request'], 2):>9}"
                f"{fmt(c['postgres_cpu_ms_per_request'], 2):>7}{fmt(r.get('throughput', 1.0), 2):>8}"
                f"{fmt(r.get('server_cpu', 1.0), 2):>7}"
            )
        print("  (srv CPU: gunicorn + PostgreSQL CPU ms per request; x ping: ping's req/s over the endpoint's)")
    print(f"reading loop: per item ping, next, item, (think {p['think_ms']} ms), submit")
    print(
        f"{'request':<10}{'n':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'req/s':>8}{'errors':>8}"
        f"{'retries':>8}{'x ping p50':>11}"
    )
    wall = res["run"]["wall_s"]
    for kind in KINDS:
        s = res["latency"][kind]
        errs = sum(n for k, n in res["errors"].items() if k.startswith(f"{kind} "))
        rps = s["n"] / wall if wall and kind in (BASELINE, *READING) else None
        ratio = 1.0 if kind == BASELINE else rat.get(kind, {}).get("p50")
        print(
            f"{kind:<10}{s['n']:>7}{fmt(s['p50_ms']):>9}{fmt(s['p95_ms']):>9}{fmt(s['p99_ms']):>9}"
            f"{fmt(s['max_ms']):>9}{fmt(rps):>8}{errs:>8}{res['retries'].get(kind, 0):>8}{fmt(ratio, 2):>11}"
        )
    t = res["throughput"]
    print(
        f"wall {res['run']['wall_s']} s, {t['reads_per_s']} reads/s, {t['requests_per_s']} API requests/s; "
        f"machine CPU busy {res['run']['machine_cpu_busy_pct']} %, client CPU {res['run']['client_cpu_s']} s; "
        f"load avg after {res['machine']['loadavg_after']}"
    )
    for event in res["fault_events"]:
        print(
            f"fault at {event['t_s']} s: {event['event']} "
            f"({', '.join(f'{k}={v}' for k, v in event.items() if k not in ('t_s', 'event'))})"
        )
    if res["errors"]:
        print("errors (failed attempts): " + ", ".join(f"{k}: {n}" for k, n in res["errors"].items()))
    v = res["integrity"]
    print(
        f"integrity: {v['acknowledged']} acknowledged ({res['replayed_acks']} replayed), {v['stored_reads']} "
        f"stored, lost {v['lost']}, duplicated {v['duplicated']}, mismatched {v['mismatched']}, unacknowledged "
        f"stored {v['unacknowledged_stored']}, audit off {v['reads_without_one_audit_event']}, sessions finished "
        f"{v['sessions_finished']}/{v['sessions']} -> {'OK' if v['ok'] else 'FAILED'}"
    )
    if res["failed_readers"]:
        print(f"{len(res['failed_readers'])} readers failed, e.g. {next(iter(res['failed_readers'].items()))}")
    goal = res["goal"]
    ratio_goal = "not measured (--solo 0)" if goal["ratio_met"] is None else ("met" if goal["ratio_met"] else "NOT met")
    print(
        f"goal p95 <= {GOAL_P95_MS:.0f} ms (next and submit): {'met' if goal['p95_met'] else 'NOT met'}; "
        f"each reading endpoint <= {GOAL_RATIO:g}x ping per request (throughput): {ratio_goal}; "
        f"0 lost / 0 duplicated: {'met' if goal['integrity_met'] else 'NOT met'}"
    )
