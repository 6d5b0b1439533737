"""Series files go through Django's storage API only: import, readiness, serving a slice and the pipeline's local
folder all work with a storage that has no files on disk (``InMemoryStorage``), and nothing lands under MEDIA_ROOT."""

import io
from pathlib import Path

import pydicom
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import InMemoryStorage, default_storage, storages
from django.test import Client

from imaging.series import read_series
from readerstudy.core.errors import InvalidInput
from readerstudy.reading.actions import launch_study
from readerstudy.reading.models import ReadingSession
from readerstudy.studies import actions
from readerstudy.studies.storage import local_series_folder, series_names
from tests.factories import balanced_rows, build_study, make_user, write_manifest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def memory_storage(settings):
    settings.STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return default_storage


def on_disk(media_root) -> list[Path]:
    return list(Path(media_root).rglob("*"))


def test_import_readiness_and_slices_without_a_file_system(tmp_path, media_root):
    study = build_study(tmp_path, readers=2, n_patients=2, lesions_per_patient=1, launch=False)
    assert isinstance(storages["default"], InMemoryStorage)
    assert on_disk(media_root) == []  # every file went to the storage, none to a machine path
    series = study.cases.order_by("case_id").first().series
    assert not series.storage_prefix.startswith("/")
    assert all(default_storage.exists(name) for name in series_names(series))

    ready = actions.readiness(study, accept_missing_predictions=True)  # no DL predictions in this study
    assert ready.ready, ready.problems
    kept = default_storage.open(series_names(series)[0]).read()
    default_storage.delete(series_names(series)[0])
    problems = actions.readiness(study).problems
    assert any("is not readable" in p and series.storage_prefix in p for p in problems), problems
    default_storage.save(series_names(series)[0], ContentFile(kept))

    # the pipeline gets a local folder: downloaded for the block, removed afterwards
    with local_series_folder(series) as folder:
        assert not Path(folder).is_relative_to(media_root)
        volume = read_series(folder)
        assert volume.shape[0] == series.n_slices
    assert not folder.exists()

    launch_study(make_user("admin", superuser=True), study, accept_missing_predictions=True)
    client = Client()
    client.force_login(make_user("reader1"))
    session = ReadingSession.objects.get(study=study, reader__username="reader1", index=1)
    client.get("/reading/")
    token = client.cookies["csrftoken"].value
    assert client.post(f"/api/sessions/{session.pk}/start/", HTTP_X_CSRFTOKEN=token).status_code == 200
    item = client.get(f"/api/sessions/{session.pk}/next/").json()
    response = client.get(item["images"][0])
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    assert response["Cache-Control"] == "private, max-age=3600"
    body = b"".join(response.streaming_content)
    shown = session.items.get(pk=item["id"]).case.series
    assert body == default_storage.open(series_names(shown)[0]).read()
    assert pydicom.dcmread(io.BytesIO(body)).PatientID == shown.patient.pseudonym
    assert on_disk(media_root) == []


def test_refused_import_deletes_what_it_saved_in_the_storage(tmp_path, media_root):
    admin = make_user("admin", superuser=True)
    study = actions.create_study(admin, "Memory", seed=1)
    path = write_manifest(tmp_path, balanced_rows(2, 1))
    for file in (tmp_path / "series" / "P002").glob("*.dcm"):  # the second series fails after the first is saved
        ds = pydicom.dcmread(file)
        ds.BurnedInAnnotation = "YES"
        ds.save_as(file)
    with pytest.raises(InvalidInput, match="not imported"):
        actions.import_cases(admin, study, path)
    assert default_storage.listdir("") == ([], [])  # the files and the folders made for them are gone
    assert on_disk(media_root) == []


@pytest.mark.django_db(transaction=True)
def test_the_migration_turns_paths_under_media_root_into_storage_names(media_root, settings):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    settings.STORAGES = {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}
    before = [("studies", "0001_initial")]
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before, at_end=True).apps
        study = old.get_model("studies", "Study").objects.create(name="Old", seed=1)
        patient = old.get_model("studies", "Patient").objects.create(study=study, pseudonym="P001")
        old.get_model("studies", "ImageSeries").objects.create(
            patient=patient, path=str(Path(media_root) / "studies/1/import-ab/series-1"), n_slices=1, rows=1,
            columns=1, slice_positions_mm=[0], slice_files=["0001.dcm"],
        )  # fmt: skip
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(leaves)
    from readerstudy.studies.models import ImageSeries

    assert ImageSeries.objects.get().storage_prefix == "studies/1/import-ab/series-1"
