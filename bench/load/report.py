"""The load benchmark's integrity check of the database, its latency summary and the printed report."""

from __future__ import annotations

from collections import Counter

from bench.harness import pct

GOAL_P95_MS = 50.0


KINDS = ("login", "worklist", "start", "next", "submit")


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
    print(f"{'request':<10}{'n':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}{'retries':>8}")
    for kind in KINDS:
        s = res["latency"][kind]
        errs = sum(n for k, n in res["errors"].items() if k.startswith(f"{kind} "))
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        print(
            f"{kind:<10}{s['n']:>7}{fmt(s['p50_ms']):>9}{fmt(s['p95_ms']):>9}{fmt(s['p99_ms']):>9}"
            f"{fmt(s['max_ms']):>9}{errs:>8}{res['retries'].get(kind, 0):>8}"
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
    print(
        f"goal p95 <= {GOAL_P95_MS:.0f} ms (next and submit): {'met' if goal['p95_met'] else 'NOT met'}; "
        f"0 lost / 0 duplicated: {'met' if goal['integrity_met'] else 'NOT met'}"
    )
