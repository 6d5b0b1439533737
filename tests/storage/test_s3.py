"""Object storage (S3 protocol, through django-storages): import, serving to readers, predictions and precompute's
series download all go through it, and nothing lands on the local disk.

The server is moto in server mode, started by the ``s3`` fixture (no S3 server package is in the registries);
the product talks to it over HTTP exactly as to any S3-protocol store.
"""

import gzip
from pathlib import Path

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.test import Client

from fixtures.manifests import balanced_rows, write_manifest
from readerstudy.core.errors import InvalidInput
from readerstudy.reading.models import ReadingSession
from readerstudy.studies import actions
from readerstudy.studies.models import ImageSeries
from readerstudy.studies.storage import local_series_folder, series_names
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


def files_under(folder: Path) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if p.is_file()]


def logged_in(username: str) -> Client:
    client = Client()
    client.force_login(make_user(username))
    return client


def read_until_aided(client: Client, session: ReadingSession) -> dict:
    """Rate the session's items in order until one shows the DL output (crossover: the order is random)."""
    assert client.post(f"/api/sessions/{session.pk}/start/").status_code == 200
    while True:
        response = client.get(f"/api/sessions/{session.pk}/next/")
        assert response.status_code == 200, "the session ended without an aided item"
        item = response.json()
        if item["modality"]["shows_dl"]:
            return item
        rated = client.post(
            f"/api/items/{item['id']}/read/",
            {"rating": 40, "idempotency_key": f"key-{item['id']}", "active_seconds": 2.0},
            content_type="application/json",
        )
        assert rated.status_code == 201


def test_series_and_overlays_live_in_the_bucket_and_are_served_to_readers(tmp_path, s3_storage, media_root):
    study = build_study(tmp_path, readers=1, n_patients=4, lesions_per_patient=1, predict=0.8)
    keys = set(s3_storage.keys(s3_storage.prefix))
    for series in ImageSeries.objects.filter(patient__study=study):
        assert {f"{s3_storage.prefix}/{name}" for name in series_names(series)} <= keys
    assert any(k.endswith(".u8.gz") for k in keys), "the overlays are stored in the bucket"
    assert files_under(media_root) == [], "nothing is written to the local media folder"

    client = logged_in("reader1")
    item = read_until_aided(client, ReadingSession.objects.get(study=study, reader__username="reader1", index=1))
    response = client.get(item["images"][0])
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    served = b"".join(response.streaming_content)
    bucket = s3_storage.client()
    stored = {bucket.get_object(Bucket=s3_storage.bucket, Key=k)["Body"].read() for k in keys if k.endswith(".dcm")}
    assert served[128:132] == b"DICM" and served in stored, "the served slice is byte for byte a stored object"

    response = client.get(item["dl"]["overlay_url"])
    assert response.status_code == 200
    shape = tuple(int(n) for n in response["X-Overlay-Shape"].split(","))
    voxels = np.frombuffer(gzip.decompress(response.content), dtype=np.uint8).reshape(shape)
    assert voxels.max() == 2 and (voxels == 2).sum() == 9, "tests.factories.predict_all's 3x3 lesion square"
    assert logged_in("reader2").get(item["images"][0]).status_code == 404, "still only the reader's own item"


def test_a_refused_import_leaves_nothing_in_the_bucket(tmp_path, s3_storage, admin_user):
    study = actions.create_study(admin_user, "S3 import", design="crossover", seed=1)
    rows = balanced_rows(3, 1)
    manifest = write_manifest(tmp_path / "import", rows)
    last = sorted((manifest.parent / rows[-1]["series_path"]).iterdir())[-1]
    last.write_bytes(b"not a DICOM file")  # the last series is broken: the whole import is refused
    with pytest.raises(InvalidInput):
        actions.import_cases(admin_user, study, manifest)
    assert s3_storage.keys(s3_storage.prefix) == [], "the series saved before the broken one were removed"
    assert not study.cases.exists()


def test_precompute_reads_a_series_from_the_bucket_through_a_temporary_folder(tmp_path, s3_storage):
    study = build_study(tmp_path, readers=1, n_patients=1, lesions_per_patient=1, launch=False)
    series = ImageSeries.objects.get(patient__study=study)
    with local_series_folder(series) as folder:
        assert folder.is_dir() and not str(folder).startswith(str(tmp_path))
        local = sorted(p.name for p in folder.iterdir())
        assert local == sorted(Path(f).name for f in series.slice_files)
        for name, stored in zip(series.slice_files, series_names(series), strict=True):
            with default_storage.open(stored, "rb") as f:
                assert (folder / Path(name).name).read_bytes() == f.read()
    assert not folder.exists(), "the downloaded copy is deleted afterwards"
