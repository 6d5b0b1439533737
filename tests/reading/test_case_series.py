"""Multi-series cases in the reading API: the payload's ``series`` list, the series-image endpoint and its access
rules (the full serving-rule matrix for it is in test_access.py)."""

import pydicom
import pytest
from django.core.files.storage import default_storage

from readerstudy.studies.models import CaseSeries
from readerstudy.studies.storage import slice_name
from tests.factories import build_study
from tests.reading.test_api import client_for, session_of, started, submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_series(tmp_path):
    # Primary: 5 slices of 2.5 mm; arterial: 3 slices of 5 mm (fixtures.manifests.EXTRA_SERIES_*).
    return build_study(
        tmp_path, readers=2, n_patients=3, lesions_per_patient=1, predict=0.9, extra_series_roles=("arterial",)
    )


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


def test_payload_lists_every_series_and_the_next_items_images(two_series):
    client = client_for("reader1")
    session = session_of(two_series, "reader1")
    started(client, session)
    items = list(session.items.order_by("position"))
    payload = client.get(f"/api/sessions/{session.pk}/next/").json()
    assert payload["id"] == items[0].pk
    pk = payload["id"]
    assert [(s["role"], s["label"], s["primary"], s["n_slices"]) for s in payload["series"]] == [
        ("portal-venous", "Portal venous", True, 5),
        ("arterial", "Arterial", False, 3),
    ]
    primary, arterial = payload["series"]
    assert primary["images"] == payload["images"] == [f"/api/items/{pk}/images/{i}" for i in range(5)]
    assert arterial["images"] == [f"/api/items/{pk}/series/1/images/{i}" for i in range(3)]
    nxt = items[1].pk
    assert payload["next_images"] == [f"/api/items/{nxt}/images/{i}" for i in range(5)] + [
        f"/api/items/{nxt}/series/1/images/{i}" for i in range(3)
    ]
    # Every URL the page is given answers (the next item's for preloading too).
    for url in arterial["images"] + payload["next_images"]:
        assert client.get(url).status_code == 200, url


def test_series_image_serves_that_series_slice_with_private_caching(two_series):
    client = client_for("reader1")
    session = session_of(two_series, "reader1")
    started(client, session)
    payload = client.get(f"/api/sessions/{session.pk}/next/").json()
    item = session.items.get(pk=payload["id"])
    arterial = CaseSeries.objects.get(case=item.case, role="arterial").series
    assert arterial.pk != item.case.series_id and arterial.n_slices == 3
    for index in range(3):
        response = client.get(f"/api/items/{item.pk}/series/1/images/{index}")
        assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
        assert response["Cache-Control"] == "private, max-age=3600"
        with default_storage.open(slice_name(arterial, index), "rb") as f:
            assert body_of(response) == f.read()
    ds = pydicom.dcmread(default_storage.open(slice_name(arterial, 2)))
    # 5 mm slices from z = 0 in the primary series' frame: the viewer syncs by ImagePositionPatient.
    assert float(ds.ImagePositionPatient[2]) == 10.0 and float(ds.SliceThickness) == 5.0
    # position 0 is the primary series, like the image endpoint
    assert body_of(client.get(f"/api/items/{item.pk}/series/0/images/4")) == body_of(
        client.get(f"/api/items/{item.pk}/images/4")
    )
    for url in (
        f"/api/items/{item.pk}/series/1/images/3",  # past the arterial series' last slice
        f"/api/items/{item.pk}/series/2/images/0",  # no third series
        f"/api/items/{item.pk}/series/-1/images/0",
        f"/api/items/{item.pk}/series/x/images/0",
    ):
        assert client.get(url).status_code == 404, url


def test_other_readers_and_anonymous_users_get_no_series_image(two_series):
    theirs = session_of(two_series, "reader2")
    started(client_for("reader2"), theirs)
    item = theirs.items.order_by("position").first()
    assert client_for("reader2").get(f"/api/items/{item.pk}/series/1/images/0").status_code == 200
    mine = client_for("reader1")
    assert mine.get(f"/api/items/{item.pk}/series/1/images/0").status_code == 404
    from django.test import Client

    assert Client().get(f"/api/items/{item.pk}/series/1/images/0").status_code in (401, 403)


def test_dl_block_names_the_series_it_was_computed_on(two_series):
    client = client_for("reader1")
    session = session_of(two_series, "reader1")
    started(client, session)
    seen = set()
    while (response := client.get(f"/api/sessions/{session.pk}/next/")).status_code == 200:
        payload = response.json()
        if payload["modality"]["shows_dl"]:
            assert payload["dl"]["series_role"] == "portal-venous" == payload["series"][0]["role"]
        else:
            assert "dl" not in payload and "series_role" not in response.content.decode()
        seen.add(payload["modality"]["key"])
        assert submit(client, payload["id"]).status_code == 201
    assert seen == {"unaided", "aided"}
