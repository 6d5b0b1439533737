"""Live progress on a study with known reads: per reader and per study, JSON, CSV, and the page's hooks."""

import csv
import io
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from readerstudy.operations.progress import study_progress
from readerstudy.reading import actions as reading_actions
from readerstudy.reading.actions import launch_study
from readerstudy.reading.models import ReadingSession
from readerstudy.studies import actions
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def read(reader, session, n, *, at, seconds):
    reading_actions.start_session(reader, session, now=at)
    for k, item in enumerate(session.items.filter(read__isnull=True).order_by("position")[:n]):
        reading_actions.submit_read(reader, item, rating=50, idempotency_key=f"{session.pk}-{k}-{item.pk}",
                                    active_seconds=seconds[k], now=at + timedelta(minutes=k))  # fmt: skip


@pytest.fixture
def running(tmp_path, boss):
    """2 readers x 2 cases x 2 modalities (crossover, 2 sessions of 2 items each), launched 2 days ago; reader1
    finished session 1 (10 s and 30 s), reader2 read once (20 s)."""
    study = build_study(tmp_path, admin=boss, readers=2, n_patients=2, lesions_per_patient=1, launch=False,
                        washout_days=28)  # fmt: skip
    launched = timezone.now() - timedelta(days=2)
    launch_study(boss, study, now=launched, accept_missing_predictions=True)
    r1, r2 = make_user("reader1"), make_user("reader2")
    s1 = ReadingSession.objects.get(study=study, reader=r1, index=1)
    read(r1, s1, 2, at=launched + timedelta(hours=1), seconds=[10, 30])
    read(r2, ReadingSession.objects.get(study=study, reader=r2, index=1), 1, at=launched + timedelta(hours=3),
         seconds=[20])  # fmt: skip
    study.refresh_from_db()
    return study, launched


def test_progress_numbers_per_reader_and_study(running):
    study, launched = running
    now = launched + timedelta(days=2)
    progress = study_progress(study, now=now)
    assert (progress.reads, progress.total, progress.percent) == (3, 8, 37.5)
    r1, r2 = progress.readers
    assert (r1.reader, r1.current_session, r1.sessions, r1.reads, r1.total) == ("reader1", 2, 2, 2, 4)
    assert r1.median_active_seconds == 20.0 and r1.last_activity == launched + timedelta(hours=1, minutes=1)
    session2 = ReadingSession.objects.get(study=study, reader__username="reader1", index=2)
    assert r1.next_session_opens == session2.available_from == r1.last_activity + timedelta(days=28)
    assert (r2.current_session, r2.reads, r2.total, r2.median_active_seconds) == (1, 1, 4, 20.0)
    assert r2.next_session_opens is None and "28 days after session 1" in r2.next_session
    # 3 reads in 2 days: 5 more take 3.3 days, but reader2's session 2 opens no earlier than 28 days from now.
    assert progress.projected_finish == now + timedelta(days=28)
    assert "1.5 reads a day" in progress.projection


def test_projection_from_the_rate_without_washout(tmp_path, boss):
    study = build_study(tmp_path, admin=boss, readers=1, n_patients=2, lesions_per_patient=1, launch=False,
                        washout_days=0, design="sequential")  # fmt: skip
    launched = timezone.now() - timedelta(days=1)
    launch_study(boss, study, now=launched, accept_missing_predictions=True)
    study.refresh_from_db()
    reader = make_user("reader1")
    read(reader, ReadingSession.objects.get(study=study, reader=reader), 1, at=launched + timedelta(hours=1),
         seconds=[5])  # fmt: skip
    now = launched + timedelta(days=1)
    progress = study_progress(study, now=now)
    assert (progress.reads, progress.total) == (1, 4)
    assert progress.projected_finish == now + timedelta(days=3)  # 1 read a day, 3 to go
    assert study_progress(actions.set_up_study(boss, "Draft")).projection == "not launched"


def test_page_json_and_csv(running, boss):
    study, _ = running
    client = client_for(boss)
    html = client.get(f"/studies/{study.pk}/progress/").content.decode()
    rows = re.findall(r'data-testid="progress-row" data-reader="(\w+)" data-read="(\d+)" data-total="(\d+)"', html)
    assert rows == [("reader1", "2", "4"), ("reader2", "1", "4")]
    for hook in ("progress-table", "study-percent", "projected-finish", "progress-csv"):
        assert f'data-testid="{hook}"' in html
    assert "37.5 %" in html and "readerstudy/progress.js" in html
    assert f'data-source="/studies/{study.pk}/progress.json"' in html

    data = client.get(f"/studies/{study.pk}/progress.json").json()
    assert (data["reads"], data["total"], data["percent"], data["status"]) == (3, 8, 37.5, "launched")
    assert [(r["reader"], r["reads"], r["total"]) for r in data["readers"]] == [("reader1", 2, 4), ("reader2", 1, 4)]
    assert data["projected_finish"] is not None and data["precompute_runs"] == []

    response = client.get(f"/studies/{study.pk}/progress.csv")
    assert response["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["reader"], r["reads"], r["total"], r["median_active_seconds"]) for r in table] == [
        ("reader1", "2", "4", "20.0"),
        ("reader2", "1", "4", "20.0"),
    ]


def test_csv_cells_are_safe_for_spreadsheets(tmp_path, boss):
    study = build_study(tmp_path, admin=boss, readers=0, n_patients=2, lesions_per_patient=1, launch=False)
    actions.add_member(boss, study, make_user("=HYPERLINK(1)"), "reader")
    body = client_for(boss).get(f"/studies/{study.pk}/progress.csv").content.decode()
    assert "'=HYPERLINK(1)" in body


def test_precompute_runs_are_listed_with_their_errors(running, boss):
    from inference.models import PrecomputeRun

    study, _ = running
    PrecomputeRun.objects.create(study=study, created_by=None, backend="phantom-unet", device="cpu", status="failed",
                                 n_cases=2, n_done=1, n_failed=1, errors=["P001-L1: ValueError: broken"])  # fmt: skip
    html = client_for(boss).get(f"/studies/{study.pk}/progress/").content.decode()
    assert "2 of 2" in html and "P001-L1: ValueError: broken" in html and "command line" in html
