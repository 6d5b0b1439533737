"""The import_cases command: every bad row printed, a good manifest imported."""

import pytest
from django.core.management import call_command
from django.utils import timezone

from readerstudy.studies import actions
from tests.factories import balanced_rows, make_user, write_manifest

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user():
    return make_user("admin", superuser=True)


def test_import_cases_command_prints_every_bad_row(tmp_path, admin_user):
    from django.core.management.base import CommandError

    study = actions.create_study(admin_user, "Cmd", seed=1)
    rows = balanced_rows(2, 1)
    rows[1]["truth"] = "unknown"
    rows[0]["diameter_mm"] = "-1"
    path = write_manifest(tmp_path, rows)
    with pytest.raises(CommandError) as caught:
        call_command("import_cases", "Cmd", str(path), "--as", "admin")
    assert "row 2 column diameter_mm" in str(caught.value) and "row 3 column truth" in str(caught.value)
    rows = balanced_rows(2, 1)
    call_command("import_cases", "Cmd", str(write_manifest(tmp_path / "ok", rows)), "--as", "admin")
    assert study.cases.count() == 2


def test_a_command_line_import_is_recorded_as_an_import_run(tmp_path, admin_user):
    from readerstudy.studies.models import ImportRun

    study = actions.create_study(admin_user, "Cmd", seed=1)
    manifest = write_manifest(tmp_path, balanced_rows(2, 2))
    call_command("import_cases", "Cmd", str(manifest), "--as", "admin", "--no-progress")
    run = ImportRun.objects.get(study=study)
    assert (run.source, run.status, run.origin, run.manifest_name) == ("command", "done", str(manifest), "manifest.csv")
    assert (run.n_cases, run.n_patients, run.n_series, run.n_series_done, run.progress) == (4, 2, 2, 2, 1.0)
    assert run.created_by == admin_user and run.finished_at is not None


def test_a_refused_command_line_import_is_recorded_with_its_problems(tmp_path, admin_user):
    from django.core.management.base import CommandError

    from readerstudy.studies.models import ImportRun

    study = actions.create_study(admin_user, "Cmd", seed=1)
    rows = balanced_rows(2, 1)
    rows[1]["lesion_x_mm"] = "left"
    with pytest.raises(CommandError, match=r"import run \d+"):
        call_command("import_cases", "Cmd", str(write_manifest(tmp_path, rows)), "--as", "admin", "--no-progress")
    run = ImportRun.objects.get(study=study)
    assert run.status == "failed" and study.cases.count() == 0
    assert [(p["file"], p["row"], p["column"]) for p in run.problems] == [("manifest.csv", 3, "lesion_x_mm")]
    assert run.errors == [f"manifest.csv row 3 column lesion_x_mm: {run.problems[0]['reason']}"]


def test_the_command_shows_a_progress_bar(tmp_path, admin_user, capsys):
    actions.create_study(admin_user, "Cmd", seed=1)
    call_command("import_cases", "Cmd", str(write_manifest(tmp_path, balanced_rows(3, 1))), "--as", "admin")
    assert "3/3" in capsys.readouterr().err  # tqdm writes to stderr


def test_a_command_line_import_into_a_launched_study_records_no_run(tmp_path, admin_user):
    from django.core.management.base import CommandError

    from readerstudy.studies.models import ImportRun, Study

    study = actions.create_study(admin_user, "Cmd", seed=1)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.LAUNCHED, launched_at=timezone.now())
    with pytest.raises(CommandError, match="launched"):
        call_command("import_cases", "Cmd", str(write_manifest(tmp_path, balanced_rows(1, 1))), "--as", "admin")
    assert not ImportRun.objects.exists()
