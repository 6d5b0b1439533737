"""The optional practice session: written at launch where practice cases exist, open at once, gating and timing no
other session, served like any session, and the only place a reader is shown truth (after each practice read)."""

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from readerstudy.core.models import AuditEvent
from readerstudy.reading import actions
from readerstudy.reading.models import Read, ReadingSession, SessionItem
from readerstudy.studies.models import Truth
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


def client_for(username: str) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user(username))
    client.get("/reading/")  # sets the CSRF cookie
    return client


def post(client: Client, url: str, data: dict | None = None):
    token = client.cookies["csrftoken"].value
    return client.post(url, data or {}, content_type="application/json", HTTP_X_CSRFTOKEN=token)


def submit(client: Client, item_id: int, rating: int = 50):
    body = {"rating": rating, "idempotency_key": f"key-{item_id}", "active_seconds": 3.0}
    return post(client, f"/api/items/{item_id}/read/", body)


def keys_of(value: Any) -> set[str]:
    """Every key of a JSON value, at any depth."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_of(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_of(v)}
    return set()


@pytest.fixture
def study(tmp_path):
    return build_study(tmp_path, readers=2, n_patients=3, lesions_per_patient=2, predict=0.9, practice_cases=2)


def practice_of(study, username="reader1") -> ReadingSession:
    return ReadingSession.objects.get(study=study, reader__username=username, practice=True)


def session_of(study, index, username="reader1") -> ReadingSession:
    return ReadingSession.objects.get(study=study, reader__username=username, index=index, practice=False)


def read_session(session: ReadingSession, now) -> None:
    actions.start_session(session.reader, session, now=now)
    for item in session.items.order_by("position"):
        actions.submit_read(session.reader, item, rating=40, idempotency_key=f"k{item.pk}", active_seconds=2, now=now)


def test_no_practice_cases_no_practice_session(tmp_path):
    study = build_study(tmp_path, readers=2, n_patients=3, lesions_per_patient=2, predict=0.9)
    assert not ReadingSession.objects.filter(study=study, practice=True).exists()
    assert set(ReadingSession.objects.filter(study=study).values_list("index", flat=True)) == {1, 2}


def test_launch_writes_one_practice_session_per_reader_with_every_practice_case_in_every_modality(study):
    practice_cases = set(study.cases.filter(practice=True).values_list("pk", flat=True))
    assert len(practice_cases) == 2
    for username in ("reader1", "reader2"):
        session = practice_of(study, username)
        assert session.index == 0 and session.available_from == study.launched_at
        items = list(session.items.order_by("position").select_related("modality"))
        assert len(items) == 4 and {i.case_id for i in items} == practice_cases
        # Per case consecutively, unaided first.
        assert [i.modality.key for i in items] == ["unaided", "aided"] * 2
        assert items[0].case_id == items[1].case_id and items[2].case_id == items[3].case_id
        # The design's sessions hold no practice case, and every real case as before.
        for index in (1, 2):
            regular = session_of(study, index, username)
            assert not regular.items.filter(case__practice=True).exists()
            assert regular.items.count() == 6
    event = AuditEvent.objects.filter(verb="launch_study").latest("seq")
    assert event.after["items"] == 2 * 2 * 6 and event.after["practice_items"] == 2 * 4


def test_the_practice_session_index_0_is_practice_only(study):
    from django.db import IntegrityError, transaction

    session = session_of(study, 1)
    with pytest.raises(IntegrityError), transaction.atomic():
        ReadingSession.objects.filter(pk=session.pk).update(index=0)  # a regular session cannot be 0
    with pytest.raises(IntegrityError), transaction.atomic():
        ReadingSession.objects.filter(pk=practice_of(study).pk).update(index=3)  # nor practice another index


def test_practice_gates_nothing_and_its_finish_moves_no_other_session(study):
    launched = study.launched_at
    session1, session2 = session_of(study, 1), session_of(study, 2)
    # Session 1 is open without any practice read.
    t1 = launched + timedelta(hours=1)
    read_session(session1, t1)
    session1.refresh_from_db()
    session2.refresh_from_db()
    assert session1.finished_at == t1
    assert session2.available_from == t1 + timedelta(days=study.washout_days)
    # Practice after session 1: nothing else moves.
    read_session(practice_of(study), t1 + timedelta(hours=2))
    assert practice_of(study).finished_at is not None
    session1.refresh_from_db()
    session2.refresh_from_db()
    assert session1.available_from == launched
    assert session2.available_from == t1 + timedelta(days=study.washout_days)


def test_finishing_practice_first_keeps_session_1_open_from_launch_and_session_2_closed(study):
    read_session(practice_of(study), study.launched_at + timedelta(minutes=5))
    assert session_of(study, 1).available_from == study.launched_at
    assert session_of(study, 2).available_from is None


def test_practice_items_are_served_and_show_truth_after_each_read_only(study):
    client = client_for("reader1")
    practice = practice_of(study)
    worklist = client.get("/api/worklist/").json()
    assert [s["practice"] for s in worklist] == [True, False, False]  # practice first
    assert [s["index"] for s in worklist] == [0, 1, 2]
    assert all(s["n_sessions"] == 2 for s in worklist)
    assert worklist[0]["state"] == "open" and worklist[0]["next_session"]["index"] == 1

    assert post(client, f"/api/sessions/{practice.pk}/start/").status_code == 200
    first = client.get(f"/api/sessions/{practice.pk}/next/").json()
    assert first["practice"] is True and first["modality"]["key"] == "unaided" and "dl" not in first
    assert not {k for k in keys_of(first) if "truth" in k}  # before the read: no truth

    response = submit(client, first["id"], rating=70)
    assert response.status_code == 201
    item = SessionItem.objects.select_related("case__truth").get(pk=first["id"])
    truth = item.case.truth
    assert response.json()["practice_feedback"] == {
        "truth": truth.label,
        "truth_label": Truth.Label(truth.label).label,
        "truth_source": truth.source,
    }
    assert submit(client, first["id"], rating=70).json()["practice_feedback"]["truth"] == truth.label  # a retry

    # The same case aided, now that its unaided read is locked: DL output as in any aided item.
    second = client.get(f"/api/sessions/{practice.pk}/next/").json()
    assert second["practice"] is True and second["modality"]["key"] == "aided"
    assert SessionItem.objects.get(pk=second["id"]).case_id == item.case_id
    assert second["dl"]["probability"] == 0.9


def test_a_real_read_says_nothing_about_truth(study):
    client = client_for("reader1")
    session = session_of(study, 1)
    assert client.get(f"/api/sessions/{session.pk}/").json()["practice"] is False
    assert post(client, f"/api/sessions/{session.pk}/start/").status_code == 200
    for _ in range(3):
        item = client.get(f"/api/sessions/{session.pk}/next/").json()
        assert item["practice"] is False
        assert not {k for k in keys_of(item) if "truth" in k}
        response = submit(client, item["id"], rating=30)
        assert response.status_code == 201
        body = response.json()
        assert "practice_feedback" not in body
        assert not {k for k in keys_of(body) if "truth" in k}
        assert not any(label in response.content.decode() for label in ("crlm", "hemangioma", "histology"))


def test_another_readers_practice_session_is_not_found(study):
    client = client_for("reader2")
    practice = practice_of(study, "reader1")
    assert client.get(f"/api/sessions/{practice.pk}/").status_code == 404
    item = practice.items.order_by("position").first()
    assert submit(client, item.pk).status_code == 404
    assert not Read.objects.filter(item=item).exists()


def test_worklist_page_lists_the_practice_session_first(study):
    client = client_for("reader1")
    html = client.get("/reading/").content.decode()
    assert "Practice (optional)" in html
    assert html.index("Practice (optional)") < html.index("1 of 2") < html.index("2 of 2")


def test_a_finished_practice_session_is_not_served_again(study):
    now = timezone.now()
    practice = practice_of(study)
    read_session(practice, now)
    client = client_for("reader1")
    assert client.get(f"/api/sessions/{practice.pk}/next/").status_code == 204
    item = practice.items.order_by("position").first()
    assert client.get(f"/api/items/{item.pk}/").status_code == 404
