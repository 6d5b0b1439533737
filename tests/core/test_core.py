"""The core app: audit verbs are a closed vocabulary, every job's outcome is an audit event, the floors hold."""

import ast
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction

from readerstudy.core import audit
from readerstudy.core.models import AuditEvent, Verb
from readerstudy.results import jobs
from readerstudy.results.models import Export
from readerstudy.studies import actions
from tests.factories import build_study, make_user

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_record_takes_only_a_verb():
    admin = make_user("admin", superuser=True)
    study = actions.create_study(admin, "Verbs")
    with transaction.atomic(), pytest.raises(TypeError, match="expected a Verb"):
        audit.record(admin, "launch_study", study, study=study)
    assert AuditEvent.objects.count() == 1  # create_study's


@pytest.fixture
def launched(tmp_path, monkeypatch):
    monkeypatch.setattr("django.db.transaction.on_commit", lambda func, using=None, robust=False: func())
    study = build_study(tmp_path, readers=2, n_patients=4, lesions_per_patient=1, name="Jobs")
    call_command("simulate_reads", study.name, "--no-progress")
    return study


@pytest.mark.django_db
def test_a_finished_job_is_one_finish_job_event(launched):
    export = jobs.request_export(make_user("admin", superuser=True), launched, Export.Kind.CSV)
    export.refresh_from_db()
    assert (export.status, export.progress, export.message) == ("done", 1.0, f"{export.n_reads} reads exported")
    event = AuditEvent.objects.get(verb=Verb.FINISH_JOB)
    assert (event.object_type, event.object_id, event.study_id) == ("export", str(export.pk), launched.pk)
    assert event.after["status"] == "done" and event.after["reads"] == export.n_reads


@pytest.mark.django_db
def test_a_failed_job_keeps_its_progress_and_says_why_in_its_event(launched, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("disk full")

    monkeypatch.setattr("readerstudy.results.tasks.export_bytes", broken)
    jobs.request_export(make_user("admin", superuser=True), launched, Export.Kind.CSV)  # the backend logs it
    export = Export.objects.get()
    assert (export.status, export.progress, export.message) == ("failed", 0.5, "export failed: disk full")
    assert export.finished_at is not None and not export.file
    event = AuditEvent.objects.get(verb=Verb.FINISH_JOB)
    assert event.after["status"] == "failed" and event.after["message"] == "export failed: disk full"


# --- floors: core <- studies <- reading (beside it inference) <- results ----------------------------------------

FORBIDDEN = {
    "readerstudy/core": ("readerstudy.studies", "readerstudy.reading", "readerstudy.results", "inference"),
    # ingest's lazy inference.pipeline import is the DICOM reader (pure, no Django), not the inference app.
    "readerstudy/studies": ("readerstudy.reading", "readerstudy.results", "inference.actions", "inference.jobs",
                            "inference.models", "inference.tasks", "inference.admin", "inference.precompute"),
    "inference": ("readerstudy.reading", "readerstudy.results"),
    "readerstudy/reading": ("readerstudy.results",),
}  # fmt: skip


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("floor", sorted(FORBIDDEN))
def test_no_import_climbs_a_floor(floor):
    climbing = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / floor).rglob("*.py"))
        if "migrations" not in path.parts and not (floor == "inference" and "pipeline" in path.parts)
        for name in sorted(_imports(path))
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[floor])
    ]
    assert climbing == []
