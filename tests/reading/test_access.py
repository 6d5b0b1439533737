"""The serving rule, on every endpoint and for each design: only the current item of an open, started session
is served (plus the next item's images), finished sessions and read items never again, and no response ever
carries a rating the reader gave earlier."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from readerstudy.reading.models import Read, ReadingSession, SessionItem
from tests.factories import build_study, make_user
from tests.reading.test_api import client_for, started, submit

pytestmark = pytest.mark.django_db

# Ratings no other number in a payload takes, so a leak shows as this number next to "rating".
EARLIER_RATING = 87


def endpoints(item: SessionItem) -> dict[str, str]:
    return {
        "item": f"/api/items/{item.pk}/",
        "image": f"/api/items/{item.pk}/images/0",
        # The case's second series (arterial): the same rule as the primary series' images.
        "series_image": f"/api/items/{item.pk}/series/1/images/0",
        "overlay": f"/api/items/{item.pk}/overlay",
    }


def statuses(client, item: SessionItem) -> dict[str, int]:
    return {name: client.get(url).status_code for name, url in endpoints(item).items()}


def assert_no_rating(body: str) -> None:
    assert '"rating": ' + str(EARLIER_RATING) not in body and '"rating":' + str(EARLIER_RATING) not in body
    assert '"read"' not in body, "no item payload carries a read"


def read_session_through_api(client, session: ReadingSession) -> None:
    started(client, session)
    while (response := client.get(f"/api/sessions/{session.pk}/next/")).status_code == 200:
        assert submit(client, response.json()["id"], rating=EARLIER_RATING).status_code == 201
    assert response.status_code == 204


@pytest.fixture
def crossover(tmp_path):
    return build_study(
        tmp_path,
        readers=1,
        n_patients=3,
        lesions_per_patient=1,
        washout_days=28,
        predict=0.9,
        extra_series_roles=("arterial",),
    )


@pytest.fixture
def sequential(tmp_path):
    return build_study(
        tmp_path,
        readers=1,
        design="sequential",
        n_patients=3,
        lesions_per_patient=1,
        predict=0.9,
        extra_series_roles=("arterial",),
    )


def test_crossover_session_two_never_reaches_session_one(crossover):
    reader = make_user("reader1")
    client = client_for("reader1")
    first, second = ReadingSession.objects.filter(study=crossover, reader=reader).order_by("index")
    read_session_through_api(client, first)
    # The washout passes: move session 2's opening into the past (as if 28 days had gone by).
    ReadingSession.objects.filter(pk=second.pk).update(available_from=timezone.now() - timedelta(minutes=1))

    # A finished session serves nothing again: no item, no image, no DL overlay, no next item.
    for item in first.items.all():
        assert statuses(client, item) == {"item": 404, "image": 404, "series_image": 404, "overlay": 404}, item.position
    assert client.get(f"/api/sessions/{first.pk}/next/").status_code == 204
    assert submit(client, first.items.first().pk, rating=EARLIER_RATING).status_code == 409

    started(client, second)
    items = list(second.items.select_related("modality", "case").order_by("position"))
    for position, item in enumerate(items):
        response = client.get(f"/api/sessions/{second.pk}/next/")
        assert response.status_code == 200 and response.json()["id"] == item.pk
        assert_no_rating(response.content.decode())
        assert_no_rating(client.get(f"/api/items/{item.pk}/").content.decode())
        # The same case's session-1 item (the other modality, with its DL output and the earlier rating).
        earlier = first.items.get(case=item.case)
        assert statuses(client, earlier) == {"item": 404, "image": 404, "series_image": 404, "overlay": 404}
        if not item.modality.shows_dl:
            assert "dl" not in response.json() and client.get(endpoints(item)["overlay"]).status_code == 404
        # The next item: its images for preloading, never its payload or DL output; later ones: nothing.
        if position + 1 < len(items):
            assert statuses(client, items[position + 1]) == {
                "item": 409,
                "image": 200,
                "series_image": 200,
                "overlay": 409,
            }
        for later in items[position + 2 :]:
            assert statuses(client, later) == {"item": 409, "image": 409, "series_image": 409, "overlay": 409}
        for done in items[:position]:
            assert statuses(client, done) == {"item": 404, "image": 404, "series_image": 404, "overlay": 404}
        assert submit(client, item.pk, rating=EARLIER_RATING - 1).status_code == 201
    # Session and worklist payloads carry counts, never ratings.
    for url in (f"/api/sessions/{second.pk}/", "/api/worklist/", "/reading/", f"/reading/session/{second.pk}/"):
        body = client.get(url).content.decode()
        assert not re.search(r"rating\W+8[67]\b", body), url


def test_sequential_unaided_rating_is_not_shown_with_the_dl_output(sequential):
    client = client_for("reader1")
    session = ReadingSession.objects.get(study=sequential, reader__username="reader1")
    started(client, session)
    items = list(session.items.select_related("modality").order_by("position"))
    assert [i.modality.key for i in items[:2]] == ["unaided", "aided"] and items[0].case_id == items[1].case_id
    # Before the unaided read: the aided item of the case is not served, not even its overlay.
    assert statuses(client, items[1]) == {"item": 409, "image": 200, "series_image": 200, "overlay": 409}
    assert submit(client, items[0].pk, rating=EARLIER_RATING).status_code == 201
    aided = client.get(f"/api/sessions/{session.pk}/next/")
    assert aided.json()["id"] == items[1].pk and aided.json()["dl"]["probability"] == 0.9
    assert_no_rating(aided.content.decode())
    # The locked unaided item of the same case is gone: neither its payload nor its rating.
    assert statuses(client, items[0]) == {"item": 404, "image": 404, "series_image": 404, "overlay": 404}
    assert client.get(aided.json()["dl"]["overlay_url"]).status_code == 200
    while (response := client.get(f"/api/sessions/{session.pk}/next/")).status_code == 200:
        assert submit(client, response.json()["id"], rating=EARLIER_RATING).status_code == 201
    for item in items:
        assert statuses(client, item) == {"item": 404, "image": 404, "series_image": 404, "overlay": 404}


def test_an_unstarted_or_closed_session_serves_nothing(crossover):
    client = client_for("reader1")
    session = ReadingSession.objects.get(study=crossover, reader__username="reader1", index=1)
    first = session.items.order_by("position").first()
    assert statuses(client, first) == {"item": 409, "image": 409, "series_image": 409, "overlay": 409}
    assert client.get(f"/api/sessions/{session.pk}/next/").status_code == 409
    started(client, session)
    assert statuses(client, first)["item"] == 200
    from readerstudy.studies import actions as study_actions

    study_actions.close_study(make_user("admin", superuser=True), crossover)
    assert statuses(client, first) == {"item": 409, "image": 409, "series_image": 409, "overlay": 409}


def test_each_read_stores_the_prediction_it_was_shown(crossover):
    reader = make_user("reader1")
    client = client_for("reader1")
    session = ReadingSession.objects.get(study=crossover, reader=reader, index=1)
    read_session_through_api(client, session)
    reads = Read.objects.filter(item__session=session).select_related("modality", "prediction", "case")
    assert reads.count() == session.items.count()
    for read in reads:
        if read.modality.shows_dl:
            assert read.prediction is not None and read.prediction.case_id == read.case_id
        else:
            assert read.prediction is None
