"""core.frozen: a query compiled once gives what the ORM gives, for every value, and keeps the ORM's guards."""

import threading

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import F, signals
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from readerstudy.core.frozen import FrozenInsert, FrozenQuery
from readerstudy.core.models import AuditEvent
from readerstudy.reading.actions import _FIRST_UNREAD, _INSERT_READ, _LOCK_OWN_ITEM, SUBMIT_FIELDS
from readerstudy.reading.models import Read, SessionItem
from tests.factories import build_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(tmp_path):
    return build_study(tmp_path, readers=2, design="crossover", n_patients=3, lesions_per_patient=1, washout_days=0)


def orm_lock(pk):
    return (
        SessionItem.objects.select_related("session__study", "case", "modality")
        .only(*SUBMIT_FIELDS)
        .select_for_update(of=("session",))
        .get(pk=pk)
    )


def fields(obj, names):
    return {name: getattr(obj, name) for name in names}


def test_the_locking_query_gives_what_the_orm_gives_for_every_item(study):
    items = list(SessionItem.objects.filter(study=study))
    assert len(items) == 12
    session_fields = ["id", "study_id", "reader_id", "index", "practice", "available_from", "finished_at"]
    study_fields = ["id", "name", "status", "design", "washout_days", "rating_min", "not_assessable_reasons"]
    with transaction.atomic():
        for item in items:
            (frozen,) = _LOCK_OWN_ITEM.objects(item.pk)
            orm = orm_lock(item.pk)
            assert type(frozen) is SessionItem and frozen.pk == item.pk
            item_fields = ["id", "session_id", "position", "case_id", "modality_id", "first_served_at"]
            assert fields(frozen, item_fields) == fields(orm, item_fields)
            assert fields(frozen.session, session_fields) == fields(orm.session, session_fields)
            assert fields(frozen.session.study, study_fields) == fields(orm.session.study, study_fields)
            assert isinstance(frozen.session.study.not_assessable_reasons, list)  # the JSON converter ran
            assert (frozen.case.case_id, frozen.modality.key) == (orm.case.case_id, orm.modality.key)
            assert frozen.get_deferred_fields() == orm.get_deferred_fields()  # only() kept: no more columns
            with CaptureQueriesContext(connection) as captured:  # select_related objects are cached: no query
                _ = frozen.session.study.name, frozen.case.case_id, frozen.modality.shows_dl
            assert captured.captured_queries == []
        assert _LOCK_OWN_ITEM.objects(max(i.pk for i in items) + 1) == []


def test_the_locking_query_runs_one_statement_that_locks_the_session(study):
    item = SessionItem.objects.filter(study=study).first()
    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        _LOCK_OWN_ITEM.objects(item.pk)
    (query,) = captured.captured_queries
    assert str(item.pk) in query["sql"]
    assert ("FOR UPDATE" in query["sql"]) == connection.features.has_select_for_update


@pytest.mark.django_db(transaction=True)
def test_the_locking_query_refuses_to_run_outside_a_transaction(tmp_path):
    study = build_study(tmp_path, readers=1, design="crossover", n_patients=2, lesions_per_patient=1, washout_days=0)
    item = SessionItem.objects.filter(study=study).first()
    with pytest.raises(RuntimeError, match="inside a transaction"):
        _LOCK_OWN_ITEM.objects(item.pk)
    with transaction.atomic():
        assert _LOCK_OWN_ITEM.objects(item.pk)[0].pk == item.pk


def test_the_unread_query_follows_the_reads(study):
    item = SessionItem.objects.filter(study=study).order_by("session", "position").first()
    session = item.session
    expected = list(session.items.filter(read__isnull=True).order_by("position").values_list("pk", "position")[:2])
    assert _FIRST_UNREAD.values(session.pk) == expected and len(expected) == 2
    from readerstudy.reading import actions

    actions.start_session(session.reader, session)
    actions.submit_read(session.reader, item.pk, rating=30, idempotency_key="k1", active_seconds=2)
    after = list(session.items.filter(read__isnull=True).order_by("position").values_list("pk", "position")[:2])
    assert _FIRST_UNREAD.values(session.pk) == after and after[0] == expected[1]


def test_a_query_whose_value_is_not_a_single_parameter_is_refused(study):
    with pytest.raises(ValueError, match="exactly once"):
        FrozenQuery(lambda v: SessionItem.objects.filter(position=v, modality_id=v)).values(1)
    with pytest.raises(ValueError, match="exactly once"):
        FrozenQuery(lambda v: SessionItem.objects.all()).values(1)
    with pytest.raises(ValueError, match="empty query"):
        FrozenQuery(lambda v: SessionItem.objects.filter(pk__in=[], position=v)).values(1)
    # a smallint column takes the sentinels like any other
    assert FrozenQuery(lambda v: SessionItem.objects.filter(session__index=v).values_list("pk")).values(99) == []
    with pytest.raises(ValueError, match="no annotations"):
        FrozenQuery(lambda v: SessionItem.objects.filter(pk=v).annotate(p=F("position"))).objects(1)


def test_each_thread_compiles_its_own(study):
    query = FrozenQuery(lambda pk: SessionItem.objects.filter(pk=pk).values_list("position"))
    pk = SessionItem.objects.filter(study=study).first().pk
    assert query.values(pk) == list(SessionItem.objects.filter(pk=pk).values_list("position"))
    seen = []
    thread = threading.Thread(target=lambda: seen.append(query._compiled("default")))
    thread.start()
    thread.join()
    assert seen and seen[0] is not query._compiled("default")


def test_the_reading_api_queries_give_what_the_orm_gives(study):
    from readerstudy.reading import actions
    from readerstudy.reading.api import ITEM_FIELDS, current_items

    session = SessionItem.objects.filter(study=study).order_by("session").first().session
    other = SessionItem.objects.filter(study=study).exclude(session__reader=session.reader).first().session
    actions.start_session(session.reader, session)
    for n in range(session.items.count() + 1):
        rows, progress = current_items(session.pk, session.reader)
        unread = session.items.filter(read__isnull=True).order_by("position")[:2]
        orm = list(
            SessionItem.objects.filter(pk__in=[i.pk for i in unread])
            .select_related("session__study", "case__series", "modality")
            .only(*ITEM_FIELDS)
            .order_by("position")
        )
        assert [(r.pk, r.position, r.case.series.n_slices, r.modality.key) for r in rows] == [
            (o.pk, o.position, o.case.series.n_slices, o.modality.key) for o in orm
        ]
        assert [r.get_deferred_fields() for r in rows] == [o.get_deferred_fields() for o in orm]
        assert progress == ((session.items.count(), n) if rows else (0, 0))
        assert current_items(other.pk, session.reader) == ([], (0, 0))  # another reader's session: nothing
        if rows:
            actions.submit_read(session.reader, rows[0].pk, rating=10, idempotency_key=f"k{n}", active_seconds=1)


# --- FrozenInsert ----------------------------------------------------------------------------------------------


def read_values(item, key, **overrides):
    values = {
        "item": item,
        "study": item.session.study,
        "reader": item.session.reader,
        "case": item.case,
        "modality": item.modality,
        "rating": 73,
        "submitted_at": timezone.now(),
        "active_seconds": 12.5,
        "served_seconds": None,
        "not_assessable": False,
        "not_assessable_reason": "",
        "comment": "ü comment",
        "viewer_state": {"window": [40, 400], "measurements": [{"mm": 7.25}], "slice_index": 3},
        "idempotency_key": key,
        "prediction": None,
    }
    return values | overrides


def test_the_read_insert_stores_what_the_orm_stores(study):
    first, second = SessionItem.objects.filter(study=study).select_related("session__study", "session__reader")[:2]
    values = read_values(first, "k1")
    with CaptureQueriesContext(connection) as captured:
        frozen = _INSERT_READ.create(**values)
    assert len(captured.captured_queries) == 1 and captured.captured_queries[0]["sql"].startswith("INSERT")
    orm = Read.objects.create(**read_values(second, "k2", submitted_at=frozen.submitted_at))
    assert frozen.pk is not None and frozen.pk != orm.pk and not frozen._state.adding
    names = [f.attname for f in Read._meta.concrete_fields if f.attname not in ("id", "item_id", "case_id")]
    names = [n for n in names if n not in ("modality_id", "idempotency_key")]
    stored, expected = Read.objects.get(pk=frozen.pk), Read.objects.get(pk=orm.pk)
    assert fields(stored, names) == fields(expected, names) == fields(frozen, names)
    assert (stored.item_id, stored.idempotency_key) == (first.pk, "k1")
    assert isinstance(stored.viewer_state, dict) and stored.viewer_state["measurements"] == [{"mm": 7.25}]


def test_the_read_insert_takes_exactly_its_fields_and_keeps_the_constraints(study):
    item = SessionItem.objects.filter(study=study).select_related("session__study", "session__reader").first()
    with pytest.raises(TypeError, match="takes exactly"):
        _INSERT_READ.create(**{k: v for k, v in read_values(item, "k").items() if k != "comment"})
    _INSERT_READ.create(**read_values(item, "k"))
    with pytest.raises(IntegrityError), transaction.atomic():  # one read per item: the database's constraint
        _INSERT_READ.create(**read_values(item, "k-again"))
    assert Read.objects.filter(item=item).count() == 1


def test_an_insert_that_would_skip_save_or_its_signals_is_refused(study):
    with pytest.raises(TypeError, match="overrides save"):
        FrozenInsert(AuditEvent, ["verb"])
    item = SessionItem.objects.filter(study=study).select_related("session__study", "session__reader").first()

    def receiver(**kwargs):
        pass

    signals.post_save.connect(receiver, sender=Read)
    try:
        with pytest.raises(RuntimeError, match="signal receivers"):
            _INSERT_READ.create(**read_values(item, "k"))
    finally:
        signals.post_save.disconnect(receiver, sender=Read)
    assert not Read.objects.filter(item=item).exists()
