"""Reading actions: sessions open in order after the washout, reads are locked, idempotent and in stored order."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from readerstudy.core.errors import Conflict, InvalidInput, NotFound, NotOpenYet
from readerstudy.core.models import AuditEvent
from readerstudy.reading import actions
from readerstudy.reading.models import Read, ReadingSession
from readerstudy.studies import actions as study_actions
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(tmp_path):
    return build_study(tmp_path, readers=2, n_patients=2, lesions_per_patient=2, washout_days=28)


def session_of(study, username, index=1):
    return ReadingSession.objects.get(study=study, reader__username=username, index=index)


def read_all(reader, session, now, rating=50):
    for i, item in enumerate(session.items.order_by("position")):
        actions.submit_read(
            reader, item, rating=rating, idempotency_key=f"{session.pk}-{i}", active_seconds=3.5, now=now
        )


def test_submit_stores_the_read_with_its_time_and_viewer_state(study):
    reader = make_user("reader1")
    session = actions.start_session(reader, session_of(study, "reader1"))
    item = session.items.order_by("position").first()
    result = actions.submit_read(
        reader,
        item,
        rating=73,
        idempotency_key="k1",
        active_seconds=12.25,
        viewer_state={"window": 400, "level": 40, "zoom": 1.5},
    )
    assert result.created
    read = Read.objects.get()
    assert (read.rating, read.active_seconds, read.viewer_state["zoom"]) == (73, 12.25, 1.5)
    assert (read.case_id, read.modality_id, read.study_id) == (item.case_id, item.modality_id, study.pk)
    event = AuditEvent.objects.get(verb="submit_read")
    assert event.after["rating"] == 73 and event.object_id == str(read.pk)


def test_same_key_returns_the_stored_read_and_a_different_rating_conflicts(study):
    reader = make_user("reader1")
    session = actions.start_session(reader, session_of(study, "reader1"))
    item = session.items.order_by("position").first()
    first = actions.submit_read(reader, item, rating=40, idempotency_key="k1", active_seconds=1)
    events = AuditEvent.objects.count()
    again = actions.submit_read(reader, item, rating=40, idempotency_key="k1", active_seconds=9)
    assert not again.created and again.read.pk == first.read.pk and again.read.active_seconds == 1
    retry = actions.submit_read(reader, item, rating=40, idempotency_key="other", active_seconds=1)
    assert retry.read.pk == first.read.pk  # same rating, lost acknowledgement: idempotent too
    with pytest.raises(Conflict, match="already submitted; your rating was not stored") as refused:
        actions.submit_read(reader, item, rating=41, idempotency_key="k2", active_seconds=1)
    assert "40" not in str(refused.value)  # the stored rating is never named
    with pytest.raises(Conflict, match="with this idempotency key and a different rating"):
        actions.submit_read(reader, item, rating=41, idempotency_key="k1", active_seconds=1)
    assert Read.objects.count() == 1 and Read.objects.get().rating == 40
    assert AuditEvent.objects.count() == events  # repeats and refusals write nothing
    second = session.items.order_by("position")[1]
    with pytest.raises(Conflict, match="already used"):
        actions.submit_read(reader, second, rating=10, idempotency_key="k1", active_seconds=1)


def test_items_must_be_read_in_the_stored_order(study):
    reader = make_user("reader1")
    session = actions.start_session(reader, session_of(study, "reader1"))
    third = session.items.order_by("position")[2]
    with pytest.raises(Conflict, match="read item 1 first"):
        actions.submit_read(reader, third, rating=10, idempotency_key="k", active_seconds=1)


@pytest.mark.parametrize(
    ("rating", "message"),
    [
        (101, "outside 0-100"),
        (-1, "outside 0-100"),
        ("high", "expected a number"),
        (50.5, "whole number"),
        (None, "rating: required"),
        (float("nan"), "finite"),
        (True, "expected a number"),
    ],
)
def test_bad_ratings_are_refused(study, rating, message):
    reader = make_user("reader1")
    session = actions.start_session(reader, session_of(study, "reader1"))
    item = session.items.order_by("position").first()
    with pytest.raises(InvalidInput, match=message):
        actions.submit_read(reader, item, rating=rating, idempotency_key="k", active_seconds=1)
    assert Read.objects.count() == 0


def test_other_readers_sessions_are_not_found(study):
    intruder = make_user("reader2")
    session = session_of(study, "reader1")
    with pytest.raises(NotFound):
        actions.start_session(intruder, session)
    with pytest.raises(NotFound):
        actions.submit_read(intruder, session.items.first(), rating=1, idempotency_key="k", active_seconds=1)


def test_unstarted_session_and_closed_study_are_refused(study):
    reader = make_user("reader1")
    session = session_of(study, "reader1")
    with pytest.raises(NotOpenYet, match="has not been started"):
        actions.submit_read(
            reader, session.items.order_by("position").first(), rating=1, idempotency_key="k", active_seconds=1
        )
    actions.start_session(reader, session)
    study_actions.close_study(make_user("admin"), study)
    with pytest.raises(NotOpenYet, match="closed"):
        actions.submit_read(
            reader, session.items.order_by("position").first(), rating=1, idempotency_key="k", active_seconds=1
        )


def test_washout_keeps_the_next_session_closed_until_its_date(study):
    reader = make_user("reader1")
    t0 = timezone.now()
    with pytest.raises(NotOpenYet, match="opens 28 days after session 1 is finished"):
        actions.start_session(reader, session_of(study, "reader1", 2), now=t0)
    first = actions.start_session(reader, session_of(study, "reader1", 1), now=t0)
    read_all(reader, first, now=t0 + timedelta(hours=1))
    first.refresh_from_db()
    assert first.finished_at == t0 + timedelta(hours=1)
    opens = t0 + timedelta(hours=1, days=28)
    second = session_of(study, "reader1", 2)
    assert second.available_from == opens
    with pytest.raises(NotOpenYet) as caught:
        actions.start_session(reader, second, now=opens - timedelta(minutes=1))
    assert f"opens on {opens.day} {opens:%b %Y, %H:%M} UTC" in str(caught.value)
    assert actions.start_session(reader, second, now=opens).started_at == opens
    # The other reader's sessions are unaffected.
    assert session_of(study, "reader2", 2).available_from is None


def test_crossover_reader_reads_every_case_in_both_modalities(study):
    reader = make_user("reader1")
    t0 = timezone.now()
    for index in (1, 2):
        session = actions.start_session(reader, session_of(study, "reader1", index), now=t0)
        read_all(reader, session, now=t0)
        t0 += timedelta(days=29)
    cells = set(Read.objects.filter(reader=reader).values_list("case_id", "modality_id"))
    assert len(cells) == study.cases.count() * 2


def test_sequential_design_reads_unaided_before_aided(tmp_path):
    study = build_study(tmp_path, readers=1, design="sequential", n_patients=2, lesions_per_patient=1, name="Seq")
    reader = make_user("reader1")
    session = actions.start_session(reader, session_of(study, "reader1"))
    first, second = session.items.order_by("position")[:2]
    assert first.case_id == second.case_id
    assert (first.modality.key, second.modality.key) == ("unaided", "aided")
    with pytest.raises(Conflict, match="not the next one"):
        actions.submit_read(reader, second, rating=60, idempotency_key="a", active_seconds=1)
    actions.submit_read(reader, first, rating=40, idempotency_key="u", active_seconds=1)
    actions.submit_read(reader, second, rating=60, idempotency_key="a", active_seconds=1)
    assert ReadingSession.objects.filter(study=study).count() == 1


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_submissions_store_one_read(tmp_path, on_postgres):
    study = build_study(tmp_path, readers=1, n_patients=2, lesions_per_patient=1, name="Race")
    reader = make_user("reader1")
    session = actions.start_session(reader, session_of(study, "reader1"))
    item = session.items.order_by("position").first()
    barrier = threading.Barrier(20)
    outcomes: list[str] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        try:
            barrier.wait()
            # Half retry with the same key and rating, half send a different rating: one wins, the rest are
            # idempotent repeats or conflicts, never a second row.
            rating = 50 if i % 2 == 0 else 60
            result = actions.submit_read(reader, item, rating=rating, idempotency_key=f"key-{rating}", active_seconds=1)
            outcome = "created" if result.created else "idempotent"
        except Conflict:
            outcome = "conflict"
        finally:
            connection.close()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Read.objects.filter(item=item).count() == 1
    assert outcomes.count("created") == 1
    assert outcomes.count("idempotent") + outcomes.count("conflict") == 19
    winner = Read.objects.get(item=item).rating
    loser_count = sum(1 for i in range(20) if (50 if i % 2 == 0 else 60) != winner)
    assert outcomes.count("conflict") == loser_count == 10
    assert AuditEvent.objects.filter(verb="submit_read").count() == 1


# --- not assessable, comment, measurements, served time ------------------------------------------------------------


def first_item(study, username="reader1"):
    reader = make_user(username)
    session = actions.start_session(reader, session_of(study, username))
    return reader, session.items.order_by("position").first()


def test_a_not_assessable_read_stores_its_reason_and_no_rating(study):
    reader, item = first_item(study)
    result = actions.submit_read(
        reader,
        item,
        rating=None,
        not_assessable=True,
        not_assessable_reason="Image quality insufficient",
        comment="motion\n\tartefact",
        idempotency_key="na",
        active_seconds=2,
    )
    read = Read.objects.get()
    assert result.created and read.rating is None and read.not_assessable
    assert (read.not_assessable_reason, read.comment) == ("Image quality insufficient", "motion\n\tartefact")
    event = AuditEvent.objects.get(verb="submit_read")
    assert event.after["rating"] is None and event.after["not_assessable_reason"] == "Image quality insufficient"
    assert event.after["not_assessable"] is True and event.after["comment"] == "motion\n\tartefact"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rating": 50, "not_assessable": True, "not_assessable_reason": "Other"}, "rating: must be empty"),
        ({"rating": None, "not_assessable": True, "not_assessable_reason": ""}, "not_assessable_reason: '' is not"),
        ({"rating": None, "not_assessable": True}, "not_assessable_reason"),
        ({"rating": None, "not_assessable": True, "not_assessable_reason": "other"}, "is not one of"),
        ({"rating": None, "not_assessable": True, "not_assessable_reason": ["Other"]}, "is not one of"),
        ({"rating": 50, "not_assessable_reason": "Other"}, "only when the item is not assessable"),
        ({"rating": None}, "rating: required"),
        ({"rating": None, "not_assessable": "true", "not_assessable_reason": "Other"}, "expected true or false"),
        ({"rating": None, "not_assessable": 1, "not_assessable_reason": "Other"}, "expected true or false"),
        ({"rating": 50, "comment": "x" * 2001}, "comment: 2001 characters; at most 2000"),
        ({"rating": 50, "comment": "a\x00b"}, "control characters"),
        ({"rating": 50, "comment": "a\rb"}, "control characters"),
        ({"rating": 50, "comment": "a\x1bb"}, "control characters"),
        ({"rating": 50, "comment": "a\x85b"}, "control characters"),
        ({"rating": 50, "comment": 7}, "comment: expected text"),
    ],
)
def test_rating_xor_reason_and_comment_limits(study, fields, message):
    reader, item = first_item(study)
    with pytest.raises(InvalidInput, match=message):
        actions.submit_read(reader, item, idempotency_key="k", active_seconds=1, **fields)
    assert Read.objects.count() == 0 and not AuditEvent.objects.filter(verb="submit_read").exists()


def test_a_comment_of_2000_characters_is_stored(study):
    reader, item = first_item(study)
    actions.submit_read(reader, item, rating=5, comment="é" * 2000, idempotency_key="k", active_seconds=1)
    assert Read.objects.get().comment == "é" * 2000


def test_the_database_refuses_a_rating_with_not_assessable_and_neither(study):
    from django.db import IntegrityError, transaction

    reader, item = first_item(study)
    actions.submit_read(reader, item, rating=5, idempotency_key="k", active_seconds=1)
    for change in ({"rating": None}, {"not_assessable": True}, {"not_assessable": True, "not_assessable_reason": "x"}):
        with pytest.raises(IntegrityError), transaction.atomic():
            Read.objects.filter(item=item).update(**change)
    Read.objects.filter(item=item).update(rating=None, not_assessable=True, not_assessable_reason="Other")


def test_a_replay_compares_the_not_assessable_answer_and_the_comment(study):
    reader, item = first_item(study)
    answer = {"rating": None, "not_assessable": True, "not_assessable_reason": "Other", "comment": "faint"}
    first = actions.submit_read(reader, item, idempotency_key="k", active_seconds=1, **answer)
    again = actions.submit_read(reader, item, idempotency_key="k2", active_seconds=5, **answer)
    assert not again.created and again.read.pk == first.read.pk
    for different in (
        {**answer, "not_assessable_reason": "Lesion not visible"},
        {**answer, "comment": "other text"},
        {"rating": 50, "comment": "faint"},
    ):
        with pytest.raises(Conflict, match="was not stored"):
            actions.submit_read(reader, item, idempotency_key="k", active_seconds=1, **different)
    assert Read.objects.count() == 1


def test_served_seconds_run_from_the_first_serve_which_is_set_once(study):
    from django.utils import timezone

    reader, item = first_item(study)
    served = timezone.now().replace(microsecond=0) + timedelta(hours=1)  # after launch, whenever the test runs
    assert actions.mark_served(item, now=served) == served
    item.refresh_from_db()
    assert actions.mark_served(item, now=served + timedelta(minutes=5)) == served  # never moved
    item.first_served_at = None  # a stale copy: the database still keeps the first time
    assert actions.mark_served(item, now=served + timedelta(minutes=9)) == served
    events = AuditEvent.objects.count()
    actions.submit_read(
        reader, item, rating=5, idempotency_key="k", active_seconds=1, now=served + timedelta(seconds=83.5)
    )
    read = Read.objects.get()
    assert read.served_seconds == 83.5
    assert AuditEvent.objects.get(verb="submit_read").after["served_seconds"] == 83.5
    assert AuditEvent.objects.count() == events + 1  # serving wrote no event
    _, unserved = first_item(study, "reader2")
    actions.submit_read(make_user("reader2"), unserved, rating=5, idempotency_key="k", active_seconds=1)
    assert Read.objects.get(reader__username="reader2").served_seconds is None  # never served through the API


def measurement(**fields):
    return {"tool": "length", "series_role": "portal-venous", "slice_index": 3, "length_mm": 12.5} | fields


def test_measurements_are_stored_in_the_viewer_state(study):
    reader, item = first_item(study)
    state = {
        "window": 400,
        "measurements": [
            measurement(points=[[1.5, -2.0, 30.0], [4.0, 5.0, 30.0]]),
            measurement(tool="ellipse", area_mm2=80.0, mean_hu=55),
            measurement(tool="probe", hu=-1e6),
        ],
    }
    actions.submit_read(reader, item, rating=5, idempotency_key="k", active_seconds=1, viewer_state=state)
    assert Read.objects.get().viewer_state["measurements"][0]["points"][1] == [4.0, 5.0, 30.0]


@pytest.mark.parametrize(
    ("measurements", "message"),
    [
        ("length", "viewer_state.measurements: expected a list"),
        ([measurement()] * 51, "51 measurements; at most 50"),
        ([measurement(), 3], r"measurements\[1\]: expected an object"),
        ([measurement(tool="angle")], r"measurements\[0\].tool: expected one of length, ellipse, probe"),
        ([measurement(series_role="")], r"measurements\[0\].series_role"),
        ([measurement(series_role="x" * 41)], r"measurements\[0\].series_role: expected 1 to 40"),
        ([measurement(series_role=3)], r"measurements\[0\].series_role"),
        ([measurement(), measurement(slice_index=-1)], r"measurements\[1\].slice_index: expected a whole number"),
        ([measurement(slice_index=1.5)], r"measurements\[0\].slice_index"),
        ([measurement(slice_index=True)], r"measurements\[0\].slice_index"),
        ([measurement(length_mm=1e6 + 1)], r"measurements\[0\].length_mm: expected a finite number"),
        ([measurement(length_mm="12")], r"measurements\[0\].length_mm"),
        ([measurement(length_mm=True)], r"measurements\[0\].length_mm"),
        ([measurement(length_mm=None)], r"measurements\[0\].length_mm"),
        ([measurement(points=[[1, [2]]])], r"measurements\[0\].points"),
        ([measurement(points=[[1, 2e7]])], r"measurements\[0\].points"),
        ([measurement(note="text")], r"measurements\[0\].note"),
    ],
)
def test_bad_measurements_are_refused_naming_index_and_field(study, measurements, message):
    reader, item = first_item(study)
    with pytest.raises(InvalidInput, match=message):
        actions.submit_read(
            reader, item, rating=5, idempotency_key="k", active_seconds=1, viewer_state={"measurements": measurements}
        )
    assert Read.objects.count() == 0


def test_non_finite_measurement_numbers_are_refused(study):
    reader, item = first_item(study)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(InvalidInput, match="finite"):
            actions.submit_read(
                reader,
                item,
                rating=5,
                idempotency_key="k",
                active_seconds=1,
                viewer_state={"measurements": [measurement(length_mm=bad)]},
            )
