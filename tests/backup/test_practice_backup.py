"""A backup keeps the practice cases, the practice session and its reads (it is a backup); the restored study's
analysis leaves them out as the original's does."""

import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from readerstudy.reading import actions
from readerstudy.reading.models import Read, ReadingSession
from readerstudy.results.table import reads_table
from readerstudy.studies.models import Study
from tests.factories import build_study

pytestmark = pytest.mark.django_db


def test_backup_and_restore_keep_practice_cases_sessions_and_reads(tmp_path):
    study = build_study(tmp_path, readers=1, n_patients=3, lesions_per_patient=2, predict=0.4, practice_cases=2)
    session = ReadingSession.objects.get(study=study, practice=True)
    now = timezone.now()
    actions.start_session(session.reader, session, now=now)
    for item in session.items.order_by("position"):
        actions.submit_read(session.reader, item, rating=60, idempotency_key=f"p{item.pk}", active_seconds=5, now=now)
    out = tmp_path / "backup.tar.gz"
    call_command("backup_study", study.name, str(out), "--as", "admin", "--no-progress", stdout=io.StringIO())
    call_command("restore_study", str(out), "--rename", "Copy", "--as", "admin", "--no-progress", stdout=io.StringIO())
    copy = Study.objects.get(name="Copy")
    assert sorted(copy.cases.filter(practice=True).values_list("case_id", flat=True)) == ["X001-L1", "X002-L1"]
    restored = ReadingSession.objects.get(study=copy, practice=True)
    session.refresh_from_db()
    assert session.finished_at is not None
    assert (restored.index, restored.finished_at) == (0, session.finished_at)
    assert Read.objects.filter(study=copy, item__session__practice=True).count() == 4
    assert reads_table(copy).empty
