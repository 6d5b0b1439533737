"""Who may back up and restore a study, and the audit event each direction appends (in the write's transaction)."""

import hashlib
import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from readerstudy.backup import actions
from readerstudy.core import audit
from readerstudy.core.errors import NotAllowed
from readerstudy.core.models import AuditEvent
from readerstudy.studies import actions as study_actions
from readerstudy.studies.models import Study
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return make_user("owner", staff=True)  # staff, not superuser: a study admin through create_study


@pytest.fixture
def study(tmp_path, owner):
    study = build_study(tmp_path, admin=owner, readers=2, n_patients=2, lesions_per_patient=1, name="Source")
    study_actions.add_member(owner, study, make_user("stats"), "statistician")
    return study


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("username", ["reader1", "stats", "outsider"])
def test_readers_statisticians_and_other_staff_cannot_back_up(study, tmp_path, username):
    user = make_user(username, staff=username == "outsider")
    out = tmp_path / "out" / "copy.tar.gz"
    n_events = AuditEvent.objects.count()
    with pytest.raises(NotAllowed):
        actions.backup_study(user, study, out)
    assert not out.parent.exists()  # refused before anything is written, not even the folder
    assert AuditEvent.objects.count() == n_events
    with pytest.raises(CommandError, match="is not an admin of study 'Source'"):
        call_command("backup_study", "Source", str(out), "--as", username, "--no-progress")
    assert not out.parent.exists()


def test_backup_appends_its_event_and_the_restore_names_the_same_archive(study, owner, tmp_path):
    out = actions.backup_study(owner, study, tmp_path / "source.tar.gz")
    event = AuditEvent.objects.filter(study=study).order_by("-seq").first()
    assert (event.verb, event.actor, event.object_type, event.object_id) == (
        "backup_study",
        owner,
        "study",
        str(study.pk),
    )
    assert event.after["archive"] == "source.tar.gz" and event.after["archive_sha256"] == sha(out)
    assert event.after["bytes"] == out.stat().st_size and event.after["counts"]["cases"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []

    copy = actions.restore_study(make_user("admin", superuser=True), out, rename="Copy")
    restored = AuditEvent.objects.filter(study=copy).order_by("-seq").first()
    assert restored.verb == "restore_study" and restored.after["archive_sha256"] == event.after["archive_sha256"]
    assert not AuditEvent.objects.filter(study=copy, verb="backup_study").exists()  # written after the snapshot
    assert audit.verify().intact


def test_a_failed_audit_event_leaves_no_archive(study, owner, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("chain locked")

    monkeypatch.setattr(actions.audit, "record", fail)
    with pytest.raises(RuntimeError, match="chain locked"):
        actions.backup_study(owner, study, tmp_path / "source.tar.gz")
    assert list(tmp_path.glob("*source.tar.gz*")) == []


@pytest.mark.parametrize("who", ["owner", "staff", "reader1"])
def test_only_superusers_restore(study, owner, tmp_path, who):
    out = actions.backup_study(owner, study, tmp_path / "source.tar.gz")
    user = {"owner": owner, "staff": make_user("staff", staff=True), "reader1": make_user("reader1")}[who]
    n_studies, n_events = Study.objects.count(), AuditEvent.objects.count()
    with pytest.raises(NotAllowed, match="superusers only"):
        actions.restore_study(user, out, rename="Copy")
    with pytest.raises(CommandError, match="superusers only"):
        call_command("restore_study", str(out), "--rename", "Copy", "--as", user.username, "--no-progress")
    assert (Study.objects.count(), AuditEvent.objects.count()) == (n_studies, n_events)


def test_commands_need_an_actor(study, tmp_path):
    with pytest.raises(CommandError, match="--as"):
        call_command("backup_study", "Source", str(tmp_path / "a.tar.gz"), "--no-progress", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("backup_study", "Source", str(tmp_path / "a.tar.gz"), "--as", "nobody", "--no-progress")
