"""Practice reads count for nothing: a study whose readers also read a practice session gives exactly the reads
table, exports, analysis run, reading-time model and progress of the same study without practice cases."""

import io
import json
import zipfile
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from readerstudy.operations.progress import study_progress
from readerstudy.reading import actions
from readerstudy.reading.models import Read, ReadingSession
from readerstudy.results import formats
from readerstudy.results.models import Export
from readerstudy.results.reading_time import reading_time_model
from readerstudy.results.runs import run_analysis
from readerstudy.results.table import reads_table, table_sha256
from readerstudy.results.tasks import export_bytes
from readerstudy.studies.models import Case, Study
from tests.factories import build_study

pytestmark = pytest.mark.django_db

PARAMETERS = {"cov": "jackknife", "analyses": ["rrrc", "frrc", "rrfc"], "size_bins_mm": [10, 30]}


def probability(case: Case) -> float:
    base = 0.75 if case.truth.label == "crlm" else 0.35
    return round(base + (sum(map(ord, case.case_id)) % 7 - 3) / 40, 3)


def rating(username: str, case: Case, modality: str) -> int:
    base = 65 if case.truth.label == "crlm" else 35
    noise = (sum(map(ord, username + case.case_id)) * 7919) % 41 - 20
    return max(0, min(100, base + noise + (6 if modality == "aided" else 0)))


def read_everything(study: Study, start: datetime) -> None:
    """Every session of every reader, at times that depend only on the session index and item position (so two
    studies read alike give identical reads); the practice session, where there is one, first."""
    for session in ReadingSession.objects.filter(study=study).order_by("reader__username", "index"):
        base = start + timedelta(days=60 * session.index)  # session 2 after the washout of session 1
        actions.start_session(session.reader, session, now=base)
        for item in session.items.order_by("position").select_related("case__truth", "modality"):
            now = base + timedelta(minutes=item.position + 1)
            actions.submit_read(
                session.reader, item, rating=rating(session.reader.username, item.case, item.modality.key),
                idempotency_key=f"{study.pk}-{item.pk}", active_seconds=20 + item.position % 9,
                viewer_state={"measurements": []}, now=now,
            )  # fmt: skip


@pytest.fixture
def pair(tmp_path):
    start = timezone.now() + timedelta(minutes=1)
    kwargs = {"readers": 3, "n_patients": 6, "lesions_per_patient": 2, "predict": probability}
    plain = build_study(tmp_path / "a", name="Plain", **kwargs)
    practised = build_study(tmp_path / "b", name="Practised", practice_cases=3, **kwargs)
    read_everything(plain, start)
    read_everything(practised, start)
    assert Read.objects.filter(study=practised, item__session__practice=True).count() == 3 * 3 * 2
    return plain, practised


def test_the_practice_study_really_has_practice_reads(pair):
    plain, practised = pair
    assert Read.objects.filter(study=practised).count() == Read.objects.filter(study=plain).count() + 18
    assert Read.objects.analysed().filter(study=practised).count() == Read.objects.filter(study=plain).count()
    assert not Read.objects.analysed().filter(case__practice=True).exists()


def test_reads_table_is_the_same_and_holds_no_practice_case(pair):
    plain, practised = pair
    a, b = reads_table(plain), reads_table(practised)
    assert not b["case"].str.startswith("X").any()
    assert a.equals(b)
    assert table_sha256(a) == table_sha256(b)


def zip_members(content: bytes, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        return {n: z.read(n) for n in z.namelist() if n not in skip}


@pytest.mark.parametrize("kind", Export.Kind.values)
def test_every_export_is_byte_for_byte_the_same(pair, kind):
    plain, practised = pair
    name_a, a = export_bytes(kind, "Same name", reads_table(plain))
    name_b, b = export_bytes(kind, "Same name", reads_table(practised))
    assert name_a == name_b
    if kind == Export.Kind.CSV:  # a zip: members compared (the zip stamps each with the time of writing)
        assert zip_members(a) == zip_members(b)
    elif kind == Export.Kind.JAFROC:  # an xlsx: every part but the document's creation time
        assert zip_members(a, ("docProps/core.xml",)) == zip_members(b, ("docProps/core.xml",))
        assert formats.read_jafroc(b).equals(formats.read_jafroc(a))
    else:
        assert a == b
    assert b"X001" not in b


def test_analysis_run_and_reading_time_model_give_the_same_numbers(pair):
    plain, practised = pair
    a = run_analysis(reads_table(plain), PARAMETERS, reading_time=reading_time_model)
    b = run_analysis(reads_table(practised), PARAMETERS, reading_time=reading_time_model)
    assert "error" not in a["mrmc"] and a["summary"]["n_reads"] == 3 * 2 * 12
    assert json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def test_progress_counts_no_practice_item_or_read(pair, tmp_path):
    plain, practised = pair
    a, b = study_progress(plain), study_progress(practised)
    assert (b.reads, b.total, b.percent) == (a.reads, a.total, a.percent) == (72, 72, a.percent)
    assert [(r.reads, r.total, r.sessions) for r in b.readers] == [(r.reads, r.total, r.sessions) for r in a.readers]


def test_progress_of_a_reader_who_only_practised_is_zero(tmp_path):
    study = build_study(tmp_path, readers=1, n_patients=3, lesions_per_patient=2, predict=0.5, practice_cases=2)
    session = ReadingSession.objects.get(study=study, practice=True)
    now = timezone.now()
    actions.start_session(session.reader, session, now=now)
    for item in session.items.order_by("position"):
        actions.submit_read(session.reader, item, rating=50, idempotency_key=f"p{item.pk}", active_seconds=5, now=now)
    progress = study_progress(study)
    assert (progress.reads, progress.total, progress.percent) == (0, 12, 0)
    assert progress.readers[0].current_session == 1 and progress.readers[0].sessions == 2
    assert reads_table(study).empty
