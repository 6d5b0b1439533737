"""Reading API: every blinding and permission rule, checked through HTTP."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from readerstudy.reading import actions
from readerstudy.reading.models import Read, ReadingSession
from readerstudy.studies import actions as study_actions
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db

DL_FIELDS = ("dl", "probability", "overlay_url", "overlay")


def client_for(username: str) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user(username))
    client.get("/reading/")  # sets the CSRF cookie
    return client


def post(client: Client, url: str, data: dict | None = None):
    token = client.cookies["csrftoken"].value if "csrftoken" in client.cookies else ""
    return client.post(url, data or {}, content_type="application/json", HTTP_X_CSRFTOKEN=token)


def session_of(study, username, index=1):
    return ReadingSession.objects.get(study=study, reader__username=username, index=index)


def started(client, session):
    assert post(client, f"/api/sessions/{session.pk}/start/").status_code == 200


def submit(client, item_id, rating=50, key=None, seconds=4.0):
    return post(
        client,
        f"/api/items/{item_id}/read/",
        {
            "rating": rating,
            "idempotency_key": key or f"key-{item_id}",
            "active_seconds": seconds,
            "viewer_state": {"window_width": 400},
        },
    )


@pytest.fixture
def crossover(tmp_path):
    study = build_study(tmp_path, readers=2, n_patients=3, lesions_per_patient=2, predict=0.9)
    return study


@pytest.fixture
def sequential(tmp_path):
    study = build_study(
        tmp_path, readers=1, design="sequential", n_patients=2, lesions_per_patient=1, name="Seq", predict=0.9
    )
    return study


def test_anonymous_users_get_nothing(crossover):
    client = Client()
    session = session_of(crossover, "reader1")
    for url in (
        "/api/worklist/",
        f"/api/sessions/{session.pk}/",
        f"/api/sessions/{session.pk}/next/",
        f"/api/items/{session.items.first().pk}/",
    ):
        assert client.get(url).status_code == 403
    assert client.get("/reading/").status_code == 302  # to the login page


def test_worklist_shows_own_sessions_with_progress_and_washout(crossover):
    client = client_for("reader1")
    sessions = client.get("/api/worklist/").json()
    assert [(s["index"], s["state"], s["n_read"], s["n_items"]) for s in sessions] == [
        (1, "open", 0, 6),
        (2, "locked", 0, 6),
    ]
    html = client.get("/reading/").content.decode()
    assert html.count('data-testid="worklist-session"') == 2
    assert "opens 28 days after session 1 is finished" in html
    assert "0 of 6" in html


def test_other_readers_sessions_and_items_are_not_found(crossover):
    mine, theirs = client_for("reader1"), session_of(crossover, "reader2")
    item = theirs.items.first()
    assert mine.get(f"/api/sessions/{theirs.pk}/").status_code == 404
    assert mine.get(f"/api/sessions/{theirs.pk}/next/").status_code == 404
    assert post(mine, f"/api/sessions/{theirs.pk}/start/").status_code == 404
    assert mine.get(f"/api/items/{item.pk}/").status_code == 404
    assert mine.get(f"/api/items/{item.pk}/images/0").status_code == 404
    assert mine.get(f"/api/items/{item.pk}/overlay").status_code == 404
    assert submit(mine, item.pk).status_code == 404
    assert mine.get(f"/reading/session/{theirs.pk}/").status_code == 404
    admin = Client()
    admin.force_login(make_user("admin", superuser=True))
    assert admin.get(f"/api/items/{item.pk}/").status_code == 404  # admins see truth; they do not read


def test_unaided_items_carry_no_prediction_fields_and_aided_ones_do(crossover):
    client = client_for("reader1")
    session = session_of(crossover, "reader1")
    started(client, session)
    seen = set()
    for _ in range(session.items.count()):
        response = client.get(f"/api/sessions/{session.pk}/next/")
        body = response.content.decode()
        item = response.json()
        seen.add(item["modality"]["key"])
        if item["modality"]["shows_dl"]:
            assert item["dl"]["probability"] == 0.9 and item["dl"]["overlay_url"]
            overlay = client.get(item["dl"]["overlay_url"])
            assert overlay.status_code == 200 and overlay["Content-Encoding"] == "gzip"
        else:
            assert not any(f'"{field}"' in body for field in DL_FIELDS), body
            assert client.get(f"/api/items/{item['id']}/overlay").status_code == 404
        assert submit(client, item["id"]).status_code == 201
    assert seen == {"unaided", "aided"}
    assert client.get(f"/api/sessions/{session.pk}/next/").status_code == 204


def test_sequential_aided_item_is_refused_before_the_unaided_read_is_locked(sequential):
    client = client_for("reader1")
    session = session_of(sequential, "reader1")
    started(client, session)
    unaided, aided = session.items.order_by("position")[:2]
    assert aided.modality.key == "aided"
    assert client.get(f"/api/items/{aided.pk}/").status_code == 409
    assert client.get(f"/api/items/{aided.pk}/overlay").status_code == 409
    response = submit(client, aided.pk)
    assert response.status_code == 409 and "not the next one" in response.json()["detail"]
    first = client.get(f"/api/sessions/{session.pk}/next/").json()
    assert first["id"] == unaided.pk and "dl" not in first
    assert submit(client, unaided.pk, rating=30).status_code == 201
    second = client.get(f"/api/sessions/{session.pk}/next/").json()
    assert second["id"] == aided.pk and second["dl"]["probability"] == 0.9
    assert client.get(second["dl"]["overlay_url"]).status_code == 200


def test_submit_is_idempotent_and_conflicts_on_a_different_rating(crossover):
    client = client_for("reader1")
    session = session_of(crossover, "reader1")
    started(client, session)
    item = client.get(f"/api/sessions/{session.pk}/next/").json()
    first = submit(client, item["id"], rating=61, key="abc")
    assert first.status_code == 201 and first.json()["created"]
    again = submit(client, item["id"], rating=61, key="abc")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    # The same key with another rating: 409, so the client knows its value was not stored.
    changed = submit(client, item["id"], rating=62, key="abc")
    assert changed.status_code == 409 and "was not stored" in changed.json()["detail"]
    # Another key and another rating: 409 too, and no answer names the stored rating.
    conflict = submit(client, item["id"], rating=62, key="def")
    assert conflict.status_code == 409 and "61" not in conflict.content.decode()
    assert Read.objects.count() == 1
    read = Read.objects.get()
    assert read.active_seconds == 4.0 and read.viewer_state == {"window_width": 400}


def test_a_replay_is_answered_only_for_the_latest_read(crossover):
    client = client_for("reader1")
    session = session_of(crossover, "reader1")
    started(client, session)
    first = client.get(f"/api/sessions/{session.pk}/next/").json()
    assert submit(client, first["id"], rating=33, key="k1").status_code == 201
    second = client.get(f"/api/sessions/{session.pk}/next/").json()
    assert submit(client, second["id"], rating=44, key="k2").status_code == 201
    # Replaying an older submission would be an oracle for its rating: refused, nothing echoed.
    old = submit(client, first["id"], rating=33, key="k1")
    assert old.status_code == 409 and "33" not in old.content.decode()
    assert submit(client, second["id"], rating=44, key="k2").status_code == 200


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"rating": 101}, "outside 0-100"),
        ({"rating": "x"}, "expected a number"),
        ({"rating": 5.5}, "whole number"),
        ({"active_seconds": -1}, "outside 0 to 86400"),
        ({"active_seconds": 1e308}, "outside 0 to 86400"),
        ({"active_seconds": 86400.5}, "outside 0 to 86400"),
        ({"viewer_state": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}}}, "deeper than 8"),
        ({"viewer_state": {"notes": "x" * 20000}}, "at most 16384 bytes"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"viewer_state": [1]}, "JSON object"),
    ],
)
def test_bad_reads_are_refused_with_400(crossover, payload, message):
    client = client_for("reader1")
    session = session_of(crossover, "reader1")
    started(client, session)
    item = client.get(f"/api/sessions/{session.pk}/next/").json()
    body = {"rating": 50, "idempotency_key": "k", "active_seconds": 1} | payload
    response = post(client, f"/api/items/{item['id']}/read/", body)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Read.objects.count() == 0


def test_csrf_is_required_for_mutations(crossover):
    client = client_for("reader1")
    session = session_of(crossover, "reader1")
    response = client.post(f"/api/sessions/{session.pk}/start/", content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


def test_washout_and_future_items_are_refused(crossover):
    client = client_for("reader1")
    second = session_of(crossover, "reader1", 2)
    response = post(client, f"/api/sessions/{second.pk}/start/")
    assert response.status_code == 409 and "opens 28 days after session 1" in response.json()["detail"]
    assert client.get(f"/api/items/{second.items.first().pk}/images/0").status_code == 409
    first = session_of(crossover, "reader1")
    assert client.get(f"/api/items/{first.items.first().pk}/images/0").status_code == 409  # not started
    started(client, first)
    items = list(first.items.order_by("position"))
    assert client.get(f"/api/items/{items[0].pk}/images/0").status_code == 200
    assert client.get(f"/api/items/{items[1].pk}/images/0").status_code == 200  # preload of the next case
    assert client.get(f"/api/items/{items[2].pk}/images/0").status_code == 409
    assert client.get(f"/api/items/{items[2].pk}/").status_code == 409
    # Finish session 1: session 2 opens on the date the API reports.
    reader = make_user("reader1")
    now = timezone.now()
    for i, item in enumerate(items):
        actions.submit_read(reader, item, rating=10, idempotency_key=f"s1-{i}", active_seconds=1, now=now)
    state = {s["index"]: s for s in client.get("/api/worklist/").json()}
    assert state[1]["state"] == "finished" and state[2]["state"] == "locked"
    assert abs((timezone.datetime.fromisoformat(state[2]["available_from"]) - now) - timedelta(days=28)) < timedelta(
        seconds=1
    )


def test_closed_study_refuses_reads(crossover):
    client = client_for("reader1")
    session = session_of(crossover, "reader1")
    started(client, session)
    item = client.get(f"/api/sessions/{session.pk}/next/").json()
    study_actions.close_study(make_user("admin", superuser=True), crossover)
    response = submit(client, item["id"])
    assert response.status_code == 409 and "closed" in response.json()["detail"]
    assert client.get(f"/api/sessions/{session.pk}/next/").status_code == 409


def test_images_are_dicom_with_private_caching(crossover):
    client = client_for("reader1")
    session = session_of(crossover, "reader1")
    started(client, session)
    item = client.get(f"/api/sessions/{session.pk}/next/").json()
    response = client.get(item["images"][0])
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    assert response["Cache-Control"] == "private, max-age=3600"
    assert b"DICM" in b"".join(response.streaming_content)[:132]
    assert client.get(f"/api/items/{item['id']}/images/999").status_code == 404


def test_item_payload_has_no_truth_or_identifiers(crossover):
    client = client_for("reader1")
    session = session_of(crossover, "reader1")
    started(client, session)
    body = client.get(f"/api/sessions/{session.pk}/next/").content.decode()
    for forbidden in ('"crlm"', '"hemangioma"', "truth", "P00", "patient", "case_id", "histology"):
        assert forbidden not in body, forbidden


def test_openapi_schema_lists_the_reading_endpoints(crossover):
    client = client_for("reader1")
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path in ("/api/worklist/", "/api/sessions/{session_id}/next/", "/api/items/{item_id}/read/"):
        assert path in schema["paths"]


# --- the reading workstation's payload -----------------------------------------------------------------------------


def test_item_payload_carries_the_study_reading_config(crossover):
    from readerstudy.studies.models import Study

    Study.objects.filter(pk=crossover.pk).update(  # set-up is frozen after launch: written as a draft would have
        question="Metastasis?",
        scale_low_label="benign",
        scale_high_label="malignant",
        label_legend={"target lesion": "the lesion to rate"},
        default_preset="3",
        hanging_layout="1x2",
        overlay_mode="fill_outline",
        overlay_hidden_labels=["liver", "other lesion"],
        not_assessable_reasons=["Not visible", "Other"],
    )
    client = client_for("reader1")
    session = session_of(crossover, "reader1")
    started(client, session)
    item = client.get(f"/api/sessions/{session.pk}/next/").json()
    assert item["question"] == "Metastasis?"
    assert item["rating_scale"] == {"min": 0, "max": 100, "low": "benign", "high": "malignant"}
    assert (item["default_preset"], item["layout"]) == ("3", "1x2")
    assert item["overlay_defaults"] == {"mode": "fill_outline", "hidden_labels": ["liver", "other lesion"]}
    assert item["not_assessable_reasons"] == ["Not visible", "Other"]
    assert item["label_legend"] == {"target lesion": "the lesion to rate"}
    assert item["served_at"]


@pytest.mark.parametrize(("diameter", "gap"), [(4.0, 5.0), (10.0, 10.0), (14.0, 10.0), (14.2, 15.0), (40.0, 25.0)])
def test_marker_gap_clears_the_lesion_in_5_mm_steps(diameter, gap):
    from readerstudy.reading.api import marker_gap_mm
    from readerstudy.studies.models import Case

    assert marker_gap_mm(Case(diameter_mm=diameter)) == gap


def test_the_lesion_carries_a_marker_gap_and_never_the_reference_diameter(crossover):
    import math

    client = client_for("reader1")
    session = session_of(crossover, "reader1")
    started(client, session)
    response = client.get(f"/api/sessions/{session.pk}/next/")
    item = response.json()
    diameter = session.items.get(pk=item["id"]).case.diameter_mm
    assert item["lesion"]["marker_gap_mm"] == math.ceil((diameter / 2 + 3) / 5) * 5
    assert item["lesion"]["marker_gap_mm"] >= diameter / 2 + 3
    assert "diameter" not in response.content.decode()
    assert str(diameter) not in json_values(item["lesion"])


def json_values(obj) -> list[str]:
    return [str(v) for v in obj.values()]


def test_unaided_items_carry_nothing_derived_from_dl(crossover):
    client = client_for("reader1")
    session = session_of(crossover, "reader1")
    started(client, session)
    unaided = 0
    for _ in range(session.items.count()):
        item = client.get(f"/api/sessions/{session.pk}/next/").json()
        if not item["modality"]["shows_dl"]:
            unaided += 1
            assert "dl" not in item
            text = str({k: v for k, v in item.items() if k != "modality"})
            for leak in ("probability", "overlay_url", "overlay_shape", "'labels'", "test-model"):
                assert leak not in text, leak
        assert submit(client, item["id"]).status_code == 201
    assert unaided == session.items.filter(modality__shows_dl=False).count() > 0


def test_overlay_labels_take_todays_palette_whatever_was_stored(crossover):
    from inference.models import Prediction
    from inference.pipeline.seg import LABELMAP_LABELS, label_color

    assert [d["color"] for d in LABELMAP_LABELS] == [[0, 158, 115], [230, 159, 0], [86, 180, 233]]
    assert label_color(1) == [0, 158, 115] and label_color(2) == [230, 159, 0] and label_color(3) == [86, 180, 233]
    assert label_color(9) == [204, 121, 167]  # outside the palette: still a colour, never the marker's yellow
    assert [240, 228, 66] not in [d["color"] for d in LABELMAP_LABELS]
    old = [
        {"value": 1, "name": "liver", "color": [60, 180, 75]},
        {"value": 2, "name": "target lesion", "color": [230, 25, 75]},
        {"value": 3, "name": "other lesion"},
    ]
    Prediction.objects.filter(case__study=crossover).update(overlay_labels=old)
    client = client_for("reader1")
    session = session_of(crossover, "reader1")
    started(client, session)
    for _ in range(session.items.count()):
        item = client.get(f"/api/sessions/{session.pk}/next/").json()
        if item["modality"]["shows_dl"]:
            assert item["dl"]["labels"] == [
                {"value": 1, "name": "liver", "color": [0, 158, 115]},
                {"value": 2, "name": "target lesion", "color": [230, 159, 0]},
                {"value": 3, "name": "other lesion", "color": [86, 180, 233]},
            ]
            return
        assert submit(client, item["id"]).status_code == 201
    raise AssertionError("no aided item")


def test_first_serve_is_recorded_once_and_submit_stores_served_seconds(crossover):
    from datetime import UTC, datetime

    from readerstudy.reading.models import SessionItem

    client = client_for("reader1")
    session = session_of(crossover, "reader1")
    started(client, session)
    before = timezone.now()
    first = client.get(f"/api/sessions/{session.pk}/next/").json()
    row = SessionItem.objects.get(pk=first["id"])
    assert row.first_served_at is not None and before <= row.first_served_at <= timezone.now()
    again = client.get(f"/api/items/{first['id']}/").json()
    assert again["served_at"] == first["served_at"]
    assert SessionItem.objects.get(pk=first["id"]).first_served_at == row.first_served_at
    # Preloading the next item's images does not count as serving it.
    following = session.items.get(position=row.position + 1)
    assert client.get(f"/api/items/{following.pk}/images/0").status_code == 200
    assert SessionItem.objects.get(pk=following.pk).first_served_at is None
    # An explicit first-serve time: served_seconds is the server's clock from it to the submission.
    long_ago = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    SessionItem.objects.filter(pk=first["id"]).update(first_served_at=long_ago)
    assert submit(client, first["id"]).status_code == 201
    read = Read.objects.get(item_id=first["id"])
    assert read.served_seconds == (read.submitted_at - long_ago).total_seconds()


def not_assessable_body(**fields):
    return {"idempotency_key": "na", "active_seconds": 3, "not_assessable": True} | fields


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (not_assessable_body(rating=40, not_assessable_reason="Other"), "rating: must be empty"),
        (not_assessable_body(not_assessable_reason="Bored"), "is not one of"),
        (not_assessable_body(), "not_assessable_reason"),
        (not_assessable_body(not_assessable="yes", not_assessable_reason="Other"), "expected true or false"),
        ({"idempotency_key": "k", "active_seconds": 3}, "rating: required"),
        ({"idempotency_key": "k", "active_seconds": 3, "rating": None}, "rating: required"),
        ({"idempotency_key": "k", "active_seconds": 3, "rating": 5, "not_assessable_reason": "Other"}, "only when"),
        ({"idempotency_key": "k", "active_seconds": 3, "rating": 5, "comment": "x" * 2001}, "at most 2000"),
        ({"idempotency_key": "k", "active_seconds": 3, "rating": 5, "comment": "\u0000"}, "control characters"),
        (
            {"idempotency_key": "k", "active_seconds": 3, "rating": 5, "viewer_state": {"measurements": [{}]}},
            "viewer_state.measurements[0].tool",
        ),
    ],
)
def test_not_assessable_and_comment_are_checked_with_400(crossover, body, message):
    client = client_for("reader1")
    session = session_of(crossover, "reader1")
    started(client, session)
    item = client.get(f"/api/sessions/{session.pk}/next/").json()
    response = post(client, f"/api/items/{item['id']}/read/", body)
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]
    assert Read.objects.count() == 0


def test_a_not_assessable_read_is_accepted_and_replayed(crossover):
    client = client_for("reader1")
    session = session_of(crossover, "reader1")
    started(client, session)
    item = client.get(f"/api/sessions/{session.pk}/next/").json()
    assert item["not_assessable_reasons"] == ["Lesion not visible", "Image quality insufficient", "Other"]
    body = not_assessable_body(not_assessable_reason="Lesion not visible", comment="not seen", rating=None)
    response = post(client, f"/api/items/{item['id']}/read/", body)
    assert response.status_code == 201, response.content
    answer = response.json()
    assert (answer["rating"], answer["not_assessable"], answer["not_assessable_reason"], answer["comment"]) == (
        None,
        True,
        "Lesion not visible",
        "not seen",
    )
    assert post(client, f"/api/items/{item['id']}/read/", body).status_code == 200
    changed = post(client, f"/api/items/{item['id']}/read/", body | {"comment": "seen after all"})
    assert changed.status_code == 409 and "not seen" not in changed.content.decode()
    read = Read.objects.get()
    assert read.rating is None and read.not_assessable_reason == "Lesion not visible"


def test_session_payload_names_the_next_session_the_time_zone_and_the_instructions(crossover, settings):
    client = client_for("reader1")
    session = session_of(crossover, "reader1")
    body = client.get(f"/api/sessions/{session.pk}/").json()
    assert body["next_session"] == {"index": 2, "available_from": None}
    assert body["instructions_acknowledged"] is False and body["time_zone"] == "UTC"
    assert body["instructions_url"] == f"/reading/study/{crossover.pk}/instructions/"
    study_actions.acknowledge_instructions(make_user("reader1"), crossover)
    last = client.get(f"/api/sessions/{session_of(crossover, 'reader1', 2).pk}/").json()
    assert last["next_session"] is None and last["instructions_acknowledged"] is True
    opens = timezone.now() + timedelta(days=3)
    ReadingSession.objects.filter(pk=session_of(crossover, "reader1", 2).pk).update(available_from=opens)
    body = client.get(f"/api/sessions/{session.pk}/").json()
    assert body["next_session"]["index"] == 2
    assert body["next_session"]["available_from"].startswith(opens.strftime("%Y-%m-%dT%H:%M:%S"))
    assert client_for("reader2").get("/api/worklist/").json()[0]["instructions_acknowledged"] is False
