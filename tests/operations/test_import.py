"""The import page: upload a manifest and a zip (or pick a server folder), a background run, its status and errors.

All or nothing: a refused import leaves the database counts and the storage listing as they were.
"""

import io
import json
import os
import stat
import zipfile
from pathlib import Path

import pydicom
import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone

from readerstudy.core.models import AuditEvent
from readerstudy.studies import actions
from readerstudy.studies.models import Case, CaseSeries, ImageSeries, ImportRun, Patient, Study, Truth
from tests.factories import balanced_rows, make_user, write_manifest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def run_jobs_on_commit(monkeypatch):
    # The test transaction never commits: run the task (immediate backend) where the commit would.
    monkeypatch.setattr("django.db.transaction.on_commit", lambda func, using=None, robust=False: func())


@pytest.fixture
def boss():
    return make_user("boss", staff=True)


@pytest.fixture
def study(boss):
    return actions.create_study(boss, "Liver", seed=7)  # the creator is its study admin (not a superuser)


@pytest.fixture
def client(boss):
    c = Client()
    c.force_login(boss)
    return c


def url(study: Study, suffix: str = "") -> str:
    return f"/studies/{study.pk}/import/{suffix}"


def upload_files(tmp_path: Path, rows: list[dict], *, extra_members: list[tuple[str, bytes]] = ()) -> dict:
    """The form's files: the manifest and a zip of its series/ folder (paths relative to the zip's top)."""
    manifest = write_manifest(tmp_path / "src", rows)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((tmp_path / "src" / "series").rglob("*")):
            archive.write(path, path.relative_to(tmp_path / "src").as_posix())
        for name, data in extra_members:
            archive.writestr(name, data)
    zipped = io.BytesIO(buffer.getvalue())
    zipped.name = "cases.zip"
    sent = io.BytesIO(manifest.read_bytes())
    sent.name = "liver-manifest.csv"
    return {"manifest": sent, "zip": zipped}


def snapshot() -> tuple:
    """What an import writes: row counts and every stored file."""
    files = sorted(str(p) for p in Path(default_storage.location).rglob("*") if p.is_file())
    counts = tuple(m.objects.count() for m in (Patient, ImageSeries, Case, CaseSeries, Truth))
    return counts, files


def test_a_good_upload_imports_de_identified_cases_and_shows_the_run(client, study, tmp_path):
    rows = balanced_rows(2, 2)
    files = upload_files(tmp_path, rows)
    original = pydicom.dcmread(sorted((tmp_path / "src" / "series" / "P001").iterdir())[0])
    response = client.post(url(study), files)
    run = ImportRun.objects.get(study=study)
    assert response.status_code == 302 and response["Location"] == url(study, f"runs/{run.pk}/")
    assert (run.status, run.source, run.created_by.username) == ("done", "upload", "boss")
    assert (run.n_cases, run.n_patients, run.n_series, run.n_rows) == (4, 2, 2, 4)
    assert (run.n_series_done, run.n_series_total, run.progress) == (2, 2, 1.0)
    assert (run.manifest_name, run.origin) == ("liver-manifest.csv", "cases.zip")
    assert study.cases.count() == 4 and Truth.objects.filter(case__study=study).count() == 4
    stored = ImageSeries.objects.get(patient__pseudonym="P001", patient__study=study)
    with default_storage.open(f"{stored.storage_prefix}/{stored.slice_files[0]}", "rb") as f:
        header = pydicom.dcmread(f, stop_before_pixels=True)
    assert header.PatientID == "P001" and header.PatientIdentityRemoved == "YES"
    assert header.SeriesInstanceUID != original.SeriesInstanceUID  # remapped
    # The staged upload is gone; only the study's series remain in storage.
    assert not default_storage.exists("imports") or not any(Path(default_storage.path("imports")).rglob("*.*"))
    verbs = list(AuditEvent.objects.filter(study=study).values_list("verb", flat=True).order_by("seq"))
    assert verbs[-3:] == ["start_import", "import_cases", "finish_job"]

    page = client.get(response["Location"]).content.decode()
    assert 'data-testid="import-status" data-status="succeeded"' in page
    assert 'data-testid="import-progress" max="1" value="1.0000"' in page
    assert 'data-testid="import-summary"' in page and 'data-role="cases">4<' in page
    assert "readerstudy/import-status.js" in page
    listing = client.get(url(study)).content.decode()
    assert 'data-testid="import-run-row"' in listing and "liver-manifest.csv" in listing


def test_the_status_json_is_what_the_progress_bar_polls(client, study, tmp_path):
    client.post(url(study), upload_files(tmp_path, balanced_rows(1, 2)))
    run = ImportRun.objects.get(study=study)
    response = client.get(url(study, f"runs/{run.pk}.json"))
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    state = json.loads(response.content)
    assert state == {
        "id": run.pk,
        "status": "succeeded",
        "finished": True,
        "progress": 1.0,
        "message": "imported 2 cases of 1 patients (1 series)",
        "source": "upload",
        "manifest": "liver-manifest.csv",
        "rows": 2,
        "series_done": 1,
        "series_total": 1,
        "summary": {"cases": 2, "patients": 1, "series": 1},
        "errors": [],
    }


def test_a_bad_row_lists_every_error_with_row_and_column_and_writes_nothing(client, study, tmp_path):
    rows = balanced_rows(2, 1)
    rows[0]["diameter_mm"] = "-1"
    rows[1]["truth"] = "<b>maybe</b>"
    files = upload_files(tmp_path, rows)
    before = snapshot()
    response = client.post(url(study), files, follow=True)
    assert snapshot() == before  # database counts and storage listing unchanged (staged upload removed too)
    run = ImportRun.objects.get(study=study)
    assert run.status == "failed" and run.n_cases == 0
    assert [(p["row"], p["column"]) for p in run.problems] == [(2, "diameter_mm"), (3, "truth")]
    assert all(p["file"] == "liver-manifest.csv" for p in run.problems)
    page = response.content.decode()
    assert 'data-status="failed"' in page
    assert '<li data-row="2" data-column="diameter_mm">liver-manifest.csv row 2 column diameter_mm: ' in page
    assert 'data-row="3" data-column="truth"' in page and "&lt;b&gt;maybe&lt;/b&gt;" in page  # escaped
    state = client.get(url(study, f"runs/{run.pk}.json")).json()
    assert state["status"] == "failed" and state["summary"] is None
    assert [(e["row"], e["column"]) for e in state["errors"]] == [(2, "diameter_mm"), (3, "truth")]
    assert study.cases.count() == 0


def test_a_missing_series_folder_is_a_row_error(client, study, tmp_path):
    rows = balanced_rows(1, 1)
    rows[0]["series_path"] = "nowhere/P001"
    client.post(url(study), upload_files(tmp_path, rows))
    (problem,) = ImportRun.objects.get(study=study).problems
    assert (problem["row"], problem["column"]) == (2, "series_path")


@pytest.mark.parametrize("member", ["../evil.dcm", "/abs/evil.dcm", "link"])
def test_an_escaping_zip_member_fails_the_run_by_name_and_writes_nothing(client, study, tmp_path, member):
    files = upload_files(tmp_path, balanced_rows(1, 1))
    zipped = files["zip"]
    buffer = io.BytesIO(zipped.getvalue())
    with zipfile.ZipFile(buffer, "a") as archive:
        if member == "link":
            info = zipfile.ZipInfo("series/P001/link")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
        else:
            archive.writestr(member, b"x")
    files["zip"] = io.BytesIO(buffer.getvalue())
    files["zip"].name = "cases.zip"
    before = snapshot()
    client.post(url(study), files)
    assert snapshot() == before
    run = ImportRun.objects.get(study=study)
    assert run.status == "failed"
    (problem,) = run.problems
    expected = "series/P001/link" if member == "link" else member
    assert problem["file"] == "cases.zip" and problem["row"] is None and repr(expected) in problem["reason"]
    assert not (tmp_path.parent / "evil.dcm").exists()


def test_a_zip_bomb_fails_the_run(client, study, tmp_path):
    files = upload_files(tmp_path, balanced_rows(1, 1), extra_members=[("series/bomb.dcm", b"\0" * (30 * 2**20))])
    client.post(url(study), files)
    run = ImportRun.objects.get(study=study)
    assert run.status == "failed" and "zip bomb" in run.problems[0]["reason"]
    assert study.cases.count() == 0


def test_an_oversize_upload_is_refused_with_a_message_before_anything_is_queued(
    client, study, tmp_path, settings, monkeypatch
):
    files = upload_files(tmp_path, balanced_rows(1, 1))
    settings.IMPORT_MAX_ZIP_BYTES = 1000  # the zip is larger
    response = client.post(url(study), files)
    assert response.status_code == 413
    assert "The zip file is larger than the limit of 1000 bytes" in response.content.decode()
    assert not ImportRun.objects.exists() and not default_storage.exists("imports")
    settings.IMPORT_MAX_ZIP_BYTES = 10
    settings.IMPORT_MAX_MANIFEST_BYTES = 10  # now the whole request is refused from its Content-Length
    monkeypatch.setattr("readerstudy.operations.imports.FORM_SLACK_BYTES", 100)
    response = client.post(url(study), upload_files(tmp_path / "again", balanced_rows(1, 1)))
    assert response.status_code == 413 and "more than this server accepts" in response.content.decode()
    assert not ImportRun.objects.exists()


def test_a_form_without_files_says_what_it_needs(client, study):
    response = client.post(url(study), {})
    assert response.status_code == 400 and "Choose a manifest CSV and a zip" in response.content.decode()
    assert not ImportRun.objects.exists()


def test_the_form_has_its_test_hooks_and_hides_the_folder_without_an_import_root(client, study):
    page = client.get(url(study)).content.decode()
    for hook in ("import-manifest", "import-zip", "import-submit"):
        assert f'data-testid="{hook}"' in page
    assert 'data-testid="import-folder"' not in page


def test_a_launched_study_shows_no_form_and_refuses_an_upload(client, study, tmp_path):
    Study.objects.filter(pk=study.pk).update(status=Study.Status.LAUNCHED, launched_at=timezone.now())
    page = client.get(url(study)).content.decode()
    assert 'data-testid="import-closed"' in page and 'data-testid="import-submit"' not in page
    response = client.post(url(study), upload_files(tmp_path, balanced_rows(1, 1)))
    assert response.status_code == 409 and "can only be imported into a draft" in response.content.decode()
    assert not ImportRun.objects.exists()


@pytest.fixture
def import_root(tmp_path, settings):
    root = tmp_path / "import-area"
    write_manifest(root / "batch-1", balanced_rows(1, 2))
    (root / "empty").mkdir()
    (root / ".hidden").mkdir()
    secret = tmp_path / "secret"
    write_manifest(secret, balanced_rows(1, 1))
    (root / "linked").symlink_to(secret)
    settings.IMPORT_ROOT = str(root)
    return root


def test_a_listed_server_folder_is_imported(client, study, import_root):
    page = client.get(url(study)).content.decode()
    assert 'data-testid="import-folder"' in page
    assert '<option value="batch-1">' in page and '<option value="empty">' in page
    assert "linked" not in page and ".hidden" not in page  # no symbolic links, no hidden folders
    response = client.post(url(study), {"folder": "batch-1"})
    run = ImportRun.objects.get(study=study)
    assert response.status_code == 302
    assert (run.source, run.origin, run.status, run.n_cases) == ("folder", "batch-1", "done", 2)


@pytest.mark.parametrize("folder", ["linked", ".hidden", "..", "../secret", "/etc", "batch-1/../..", "nope"])
def test_only_a_listed_server_folder_can_be_picked(client, study, import_root, folder):
    response = client.post(url(study), {"folder": folder})
    assert response.status_code == 400
    assert "is not a folder of the server import area" in response.content.decode()
    assert not ImportRun.objects.exists() and study.cases.count() == 0


def test_a_server_folder_without_a_manifest_fails_the_run(client, study, import_root):
    client.post(url(study), {"folder": "empty"})
    run = ImportRun.objects.get(study=study)
    assert run.status == "failed" and "has no manifest.csv" in run.problems[0]["reason"]


def test_without_an_import_root_a_folder_is_never_read(client, study, import_root, settings):
    settings.IMPORT_ROOT = None
    response = client.post(url(study), {"folder": "batch-1"})
    assert response.status_code == 400 and not ImportRun.objects.exists()


# --- who may see the pages ----------------------------------------------------------------------------------------


@pytest.fixture
def outsiders(study):
    boss = make_user("boss")
    reader, statistician, other_admin = make_user("reader1"), make_user("stat"), make_user("other", staff=True)
    actions.add_member(boss, study, reader, "reader")
    actions.add_member(boss, study, statistician, "statistician")
    actions.create_study(other_admin, "Other", seed=1)  # admin of another study only
    return [reader, statistician, other_admin]


def test_every_import_page_is_404_to_non_admins_and_a_login_to_anonymous(study, outsiders, tmp_path):
    run = actions.queue_import(make_user("boss"), study, source="command", origin="m.csv", manifest_name="m.csv")
    pages = [url(study), url(study, f"runs/{run.pk}/"), url(study, f"runs/{run.pk}.json")]
    for user in outsiders:
        c = Client()
        c.force_login(user)
        for page in pages:
            assert c.get(page).status_code == 404, (user.username, page)
        assert c.post(url(study), upload_files(tmp_path / user.username, balanced_rows(1, 1))).status_code == 404
    anonymous = Client()
    for page in pages:
        response = anonymous.get(page)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert anonymous.post(url(study), {}).status_code == 302
    assert ImportRun.objects.count() == 1 and study.cases.count() == 0


def test_a_run_of_another_study_is_not_found_under_this_one(client, study, boss):
    other = actions.create_study(boss, "Second", seed=2)
    run = actions.queue_import(boss, other, source="command", origin="m.csv", manifest_name="m.csv")
    assert client.get(url(study, f"runs/{run.pk}/")).status_code == 404
    assert client.get(url(study, f"runs/{run.pk}.json")).status_code == 404
    assert client.get(url(other, f"runs/{run.pk}.json")).status_code == 200
    assert client.get(f"/studies/{study.pk + 1000}/import/").status_code == 404


def test_the_json_of_a_queued_run_says_queued(client, study, boss):
    run = actions.queue_import(boss, study, source="command", origin="m.csv", manifest_name="m.csv")
    state = client.get(url(study, f"runs/{run.pk}.json")).json()
    assert (state["status"], state["finished"], state["progress"], state["summary"]) == ("queued", False, 0.0, None)
    page = client.get(url(study, f"runs/{run.pk}/")).content.decode()
    assert 'data-status="queued"' in page and 'data-testid="import-errors"' in page


def test_upload_streams_to_disk(client, study, tmp_path, monkeypatch):
    """Every upload goes through the temporary-file handler, never into memory."""
    from readerstudy.operations import imports

    seen = []
    original = imports.ImportUploadHandler.file_complete

    def file_complete(self, size):
        uploaded = original(self, size)
        seen.append(os.path.exists(uploaded.temporary_file_path()))
        return uploaded

    monkeypatch.setattr(imports.ImportUploadHandler, "file_complete", file_complete)
    client.post(url(study), upload_files(tmp_path, balanced_rows(1, 1)))
    assert seen == [True, True]
