"""The audit trail cannot be rewritten through the database, and what a table owner rewrites verify_audit finds."""

import importlib
import io
import itertools
import json
import random
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from readerstudy.core import audit, chain
from readerstudy.core.chain import (
    GENESIS,
    SEQ_JOIN,
    canonical,
    event_hash,
    hash_parts,
    payload,
    verify_chain,
)
from readerstudy.core.models import AuditEvent, Verb
from readerstudy.studies import actions
from readerstudy.studies.models import Study
from tests.audit_triggers import audit_triggers_off
from tests.factories import make_user

TABLE = AuditEvent._meta.db_table


@pytest.fixture
def events(db) -> list[AuditEvent]:
    """Six events through the real actions: create a study, add five members."""
    admin = make_user("admin", staff=True)
    study = actions.create_study(admin, "Chain")
    for i in range(5):
        actions.add_member(admin, study, make_user(f"stat{i}"), "statistician")
    return list(AuditEvent.objects.order_by("id"))


def verify_audit() -> str:
    out = io.StringIO()
    call_command("verify_audit", "--no-progress", stdout=out)
    return out.getvalue()


def broken_link() -> str:
    with pytest.raises(CommandError) as error:
        verify_audit()
    return str(error.value)


def raw(sql: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


# --- the database refuses rewrites ----------------------------------------------------------------------------------


def test_update_and_delete_past_the_orm_guards_are_refused_by_the_database(events):
    event = events[2]
    attempts = {
        "base manager update": lambda: AuditEvent._base_manager.filter(pk=event.pk).update(verb="tampered"),
        "base manager delete": lambda: AuditEvent._base_manager.filter(pk=event.pk).delete(),
        "raw delete": lambda: AuditEvent._base_manager.filter(pk=event.pk)._raw_delete(connection.alias),
        "raw SQL update": lambda: raw(f"UPDATE {TABLE} SET verb = 'tampered' WHERE id = %s", [event.pk]),
        "raw SQL delete": lambda: raw(f"DELETE FROM {TABLE} WHERE id = %s", [event.pk]),
        "raw SQL delete all": lambda: raw(f"DELETE FROM {TABLE}"),
    }
    for what, attempt in attempts.items():
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            attempt()
            pytest.fail(f"{what} went through")
    assert list(AuditEvent.objects.order_by("id").values_list("pk", "verb")) == [(e.pk, e.verb) for e in events]


def test_truncate_is_refused_on_postgresql(events, on_postgres):
    raw("SET CONSTRAINTS ALL IMMEDIATE")  # else TRUNCATE stops at the fixture's pending foreign key checks
    for sql in (f"TRUNCATE {TABLE}", f"TRUNCATE {Study._meta.db_table} CASCADE"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            raw(sql)
    assert AuditEvent.objects.count() == len(events)


def test_the_append_only_triggers_are_installed_after_migrate(db):
    # A later migration that rebuilds the table on SQLite would drop them silently: this says so.
    assert audit.missing_triggers() == []


# --- the chain --------------------------------------------------------------------------------------------------


def test_each_event_links_to_the_one_before(events):
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    assert all(e.hash == event_hash(e) and len(e.hash) == 64 for e in events)


def test_the_hash_is_stable_through_the_database_round_trip(db):
    # Numbers that jsonb (PostgreSQL) gives back in another notation or type, keys in another order, non-ASCII.
    admin = make_user("admin", staff=True)
    after = {
        "z": 1,
        "a": [5.0, 1e25, 1e-7, 0.1 + 0.2, -0.0, 2**70, 1.5e-10, 123456.789],
        "nested": {"b": None, "a": True, "ü": "Zürich ✓"},
        "tuple": (1, 2),
        7: "int key",
    }
    study = actions.create_study(admin, "Round trip")
    with transaction.atomic():
        created = audit.record(admin, Verb.UPDATE_STUDY, study, study=study, after=after)
    stored = AuditEvent.objects.get(pk=created.pk)
    assert stored.hash == created.hash == event_hash(stored)
    assert stored.created_at == created.created_at
    assert canonical(stored.after) == canonical(created.after)


def test_verify_audit_passes_an_intact_chain(events):
    out = verify_audit()
    assert f"{len(events)} events, chain intact" in out
    assert f"head: {len(events)}:{events[-1].hash}" in out
    call_command("verify_audit", "--no-progress", "--expect-head", f"2:{events[1].hash}", stdout=io.StringIO())


def test_verify_audit_names_an_edited_event(events):
    target = events[3]
    with audit_triggers_off():  # a DBA editing the table
        raw(f"UPDATE {TABLE} SET object_id = 'forged' WHERE id = %s", [target.pk])
    message = broken_link()
    assert f"first broken link is event {target.pk} (seq {target.seq}): hash mismatch" in message
    assert "after 3 intact events" in message


def test_verify_audit_names_an_edited_event_whose_hash_was_recomputed_at_the_next_link(events):
    target, following = events[2], events[3]
    with audit_triggers_off():
        raw(f"UPDATE {TABLE} SET verb = 'forged' WHERE id = %s", [target.pk])
        forged = AuditEvent.objects.get(pk=target.pk)
        raw(f"UPDATE {TABLE} SET hash = %s WHERE id = %s", [event_hash(forged), target.pk])
    assert f"event {following.pk} (seq {following.seq}): prev_hash mismatch" in broken_link()


def test_verify_audit_names_the_gap_left_by_a_deleted_event(events):
    deleted, following = events[2], events[3]
    with audit_triggers_off():
        raw(f"DELETE FROM {TABLE} WHERE id = %s", [deleted.pk])
    message = broken_link()
    assert f"event {following.pk} (seq {following.seq}): gap: seq {deleted.seq} missing" in message


def test_verify_audit_finds_a_chain_rewritten_past_an_expected_head(events):
    # Deleting the newest event leaves a valid (shorter) chain: only a head kept outside the database shows it.
    last = events[-1]
    with audit_triggers_off():
        raw(f"DELETE FROM {TABLE} WHERE id = %s", [last.pk])
    assert f"{len(events) - 1} events, chain intact" in verify_audit()
    with pytest.raises(CommandError, match=rf"expected head seq {last.seq} .* is missing"):
        call_command("verify_audit", "--no-progress", "--expect-head", f"{last.seq}:{last.hash}")


def test_verify_audit_reports_disabled_triggers(events):
    with audit_triggers_off():
        with pytest.raises(CommandError, match=r"chain intact, but the append-only triggers .* missing or disabled"):
            verify_audit()


def test_verify_chain_without_a_database():
    def event(seq: int, prev_hash: str, **fields) -> SimpleNamespace:
        values = {
            "id": 100 + seq,
            "seq": seq,
            "prev_hash": prev_hash,
            "created_at": timezone.now(),
            "actor_id": 1,
            "study_id": None,
            "verb": "v",
            "object_type": "study",
            "object_id": "1",
            "before": None,
            "after": {"n": seq},
            "source_hash": "",
        }
        e = SimpleNamespace(**{**values, **fields})
        e.hash = event_hash(e)
        return e

    chain = [event(1, GENESIS)]
    for seq in range(2, 6):
        chain.append(event(seq, chain[-1].hash))
    report = verify_chain(chain)
    assert report.intact and (report.events, report.head_seq, report.head_hash) == (5, 5, chain[-1].hash)
    assert verify_chain([]).intact and verify_chain([]).head_hash == GENESIS

    swapped = verify_chain([chain[0], chain[2], chain[1], *chain[3:]])
    assert (swapped.broken.event_id, swapped.broken.problem) == (103, "gap")
    assert swapped.events == 1 and swapped.head_seq == 1

    edited = [*chain[:3], SimpleNamespace(**{**vars(chain[3]), "after": {"n": 99}}), chain[4]]
    assert (verify_chain(edited).broken.event_id, verify_chain(edited).broken.problem) == (104, "hash mismatch")

    assert verify_chain(chain[1:]).broken.detail == "seq 1 missing (deleted?)"
    assert verify_chain([chain[0], *chain[3:]]).broken.detail == "seq 2..3 missing (deleted?)"


# --- existing rows, concurrency ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_chains_existing_events():
    executor = MigrationExecutor(connection)
    target = [("reading", "0002_audit_append_only_trigger")]
    leaves = executor.loader.graph.leaf_nodes()
    executor.migrate(target)
    try:
        apps = executor.loader.project_state(target, at_end=True).apps
        OldEvent = apps.get_model("reading", "AuditEvent")
        for i in range(4):
            OldEvent.objects.create(verb=f"old{i}", object_type="study", object_id=str(i), after={"x": i + 0.5})
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(leaves)
    assert list(AuditEvent.objects.order_by("seq").values_list("verb", flat=True)) == [f"old{i}" for i in range(4)]
    assert "4 events, chain intact" in verify_audit()
    assert audit.missing_triggers() == []


def run_in_threads(*targets: Callable[[], None], timeout: float = 30) -> list[BaseException]:
    """Run each target in a thread of its own (its own database connection, closed after); their exceptions."""
    errors: list[BaseException] = []

    def run(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(target,)) for target in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_form_one_chain(on_postgres):
    # Actions that share no row lock (a study each): only the chain lock keeps them off the same head.
    admin = make_user("admin", staff=True)
    n = 12
    barrier = threading.Barrier(n)

    def create(i: int) -> Callable[[], None]:
        return lambda: (barrier.wait(), actions.create_study(admin, f"Race {i}"))

    assert run_in_threads(*(create(i) for i in range(n))) == []
    assert f"{n} events, chain intact" in verify_audit()


@pytest.mark.django_db(transaction=True)
def test_an_append_waiting_for_a_locked_study_does_not_deadlock(on_postgres):
    # A holds the study FOR UPDATE (a set-up action) and appends after B has started appending an event of that
    # study from an action that did not lock it (start_session, say). B must wait for the study before it takes
    # the chain lock: waiting with the chain lock held would deadlock with A at B's foreign key check.
    admin = make_user("admin", staff=True)
    study = actions.create_study(admin, "Locks")
    locked = threading.Event()

    def a() -> None:
        with transaction.atomic():
            Study.objects.select_for_update().get(pk=study.pk)
            locked.set()
            time.sleep(0.5)  # B is now inside record()
            audit.record(admin, Verb.UPDATE_STUDY, study, study=study)

    def b() -> None:
        locked.wait(5)
        with transaction.atomic():
            audit.record(admin, Verb.CLOSE_STUDY, study, study=study)

    assert run_in_threads(a, b) == []
    assert list(AuditEvent.objects.order_by("seq").values_list("verb", flat=True))[-2:] == [
        "update_study",
        "close_study",
    ]
    assert "3 events, chain intact" in verify_audit()


def test_the_migration_freezes_the_chain_lock_function_name_and_hash_text_of_core_audit():
    migration = importlib.import_module("readerstudy.core.migrations.0009_audit_append")
    assert (migration.CHAIN_LOCK, migration.APPEND_FUNCTION) == (audit.CHAIN_LOCK, audit.APPEND_FUNCTION)
    assert (migration.GENESIS, migration.SEQ_JOIN) == (GENESIS, SEQ_JOIN)


def test_hash_parts_rebuild_the_canonical_payload_around_any_head():
    # The database hashes head + prev_hash + SEQ_JOIN + seq + tail: that must be the canonical payload for every
    # content, including nested objects that hold the very keys (and a string that spells the marker).
    marker = '"prev_hash":"","seq":0,'
    contents = [
        (None, None, ""),
        ({"a": 1}, {"prev_hash": "", "seq": 0, "z": [1, {"prev_hash": "", "seq": 0, "t": 1}]}, "f" * 64),
        (None, {"comment": marker, "x": '\u00fc " ü'}, ""),
        ({"seq": 5}, {"nested": {"before": None, "after": [marker]}}, ""),
    ]
    for (before, after, source), (seq, prev) in itertools.product(contents, [(1, GENESIS), (123456789, "ab" * 32)]):
        event = SimpleNamespace(
            seq=seq,
            prev_hash=prev,
            created_at=timezone.now(),
            actor_id=3,
            study_id=None,
            verb="v",
            object_type="read",
            object_id="7",
            before=before,
            after=after,
            source_hash=source,
        )
        head, tail = hash_parts(event)
        assert head + prev + SEQ_JOIN + str(seq) + tail == canonical(payload(event))


@pytest.mark.django_db(transaction=True)
def test_a_hash_the_database_computes_differently_is_refused_and_nothing_is_stored(on_postgres, monkeypatch):
    admin = make_user("admin", staff=True)
    study = actions.create_study(admin, "Mismatch")
    n_events = AuditEvent.objects.count()
    # A head text that differs from core.chain's (one character): the database's hash no longer matches Python's.
    monkeypatch.setattr(
        audit, "hash_parts", lambda event: (lambda h, t: (h.replace("{", "[", 1), t))(*hash_parts(event))
    )
    with pytest.raises(RuntimeError, match="the database hashed it as"):
        with transaction.atomic():
            audit.record(admin, Verb.UPDATE_STUDY, study, study=study)
    assert AuditEvent.objects.count() == n_events
    assert f"{n_events} events, chain intact" in verify_audit()


@pytest.mark.django_db(transaction=True)
def test_the_head_is_read_after_the_lock_is_granted(on_postgres):
    # A appends and holds the chain lock for a while before committing; B, already in its transaction, appends
    # meanwhile. B's head must be A's event (read with a snapshot taken after A committed), not the one before it:
    # a head read with an older snapshot would fork the chain or fail on the unique seq.
    admin = make_user("admin", staff=True)
    study = actions.create_study(admin, "Head")
    appended = threading.Event()

    def a() -> None:
        with transaction.atomic():
            audit.record(admin, Verb.UPDATE_STUDY, study, study=study)
            appended.set()
            time.sleep(0.5)

    def b() -> None:
        with transaction.atomic():
            Study.objects.get(pk=study.pk)  # B's transaction has taken snapshots before A commits
            appended.wait(5)
            audit.record(admin, Verb.CLOSE_STUDY, study, study=study)

    assert run_in_threads(a, b) == []
    events = list(AuditEvent.objects.order_by("seq"))
    assert [e.verb for e in events] == ["create_study", "update_study", "close_study"]
    assert events[2].prev_hash == events[1].hash
    assert "3 events, chain intact" in verify_audit()


def test_the_strings_of_the_canonical_form_are_json_dumps_ascii_escapes():
    # core.chain._string skips the JSON encoder for plain strings: it must give the encoder's text for every string.
    rng = random.Random(7)
    alphabet = [chr(i) for i in range(0x180)] + ["ü", "✓", "\u2028", "\ud800", "😀"]
    samples = ["", "plain", 'quo"te', "back\\slash", "tab\there", "del\x7f"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(20_000)]
    for s in samples:
        assert chain._string(s) == json.dumps(s, ensure_ascii=True), repr(s)


def test_the_append_function_inserts_every_column_of_the_event(on_postgres, db):
    # audit_append names the columns it inserts: a field added to AuditEvent without a new function would be lost.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_functiondef(%s::regproc)", [audit.APPEND_FUNCTION])
        body = cursor.fetchone()[0]
    insert = body[body.index(f"INSERT INTO {connection.ops.quote_name(TABLE)}") :]
    columns = {name.strip() for name in insert[insert.index("(") + 1 : insert.index(")")].split(",")}
    assert columns == {f.column for f in AuditEvent._meta.concrete_fields if not f.primary_key}
