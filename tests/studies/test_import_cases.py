"""The import_cases command: every bad row printed, a good manifest imported."""

import pytest
from django.core.management import call_command

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
