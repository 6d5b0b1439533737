"""backup_study / restore_study: the round trip keeps every read and audit event; bad archives change nothing."""

import hashlib
import io
import json
import tarfile
from pathlib import Path, PurePosixPath

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError

from inference.models import Prediction
from readerstudy.backup import actions
from readerstudy.core.models import AuditEvent
from readerstudy.reading.models import Read, ReadingSession, SessionItem
from readerstudy.studies.models import CaseSeries, Study
from readerstudy.studies.storage import series_names, study_prefix
from tests.factories import build_study

pytestmark = pytest.mark.django_db

User = get_user_model()


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def study(tmp_path):
    study = build_study(
        tmp_path, readers=2, n_patients=3, lesions_per_patient=2, name="Source",
        predict=lambda case: 0.25 + 0.1 * (case.pk % 5), seg=True, extra_series_roles=("arterial",),
    )  # fmt: skip
    call_command("simulate_reads", study.name, "--no-progress", "--seed", "5")
    study.refresh_from_db()
    assert Read.objects.filter(study=study).count() == 2 * 6 * 2
    return study


@pytest.fixture
def archive(study, tmp_path):
    out = tmp_path / "backup" / "source.tar.gz"
    call_command("backup_study", study.name, str(out), "--as", "admin", "--no-progress", stdout=io.StringIO())
    return out


# --- what the comparisons look at: everything that does not depend on primary keys --------------------------------


def reads_of(study):
    return sorted(
        (
            r.reader.username,
            r.case.case_id,
            r.modality.key,
            r.rating,
            r.active_seconds,
            r.submitted_at,
            json.dumps(r.viewer_state, sort_keys=True),
            r.item.session.index,
            r.item.position,
        )
        for r in Read.objects.filter(study=study).select_related("reader", "case", "modality", "item__session")
    )


def audit_of(study):
    return [
        (
            e.verb,
            e.actor.username if e.actor else None,
            e.object_type,
            e.created_at,
            json.dumps(e.before, sort_keys=True),
            json.dumps(e.after, sort_keys=True),
        )
        for e in AuditEvent.objects.filter(study=study).select_related("actor").order_by("created_at", "id")
    ]


def orders_of(study):
    return {
        (s.reader.username, s.index, s.available_from, s.started_at, s.finished_at): [
            (i.position, i.case.case_id, i.modality.key) for i in s.items.select_related("case", "modality")
        ]
        for s in ReadingSession.objects.filter(study=study).select_related("reader")
    }


def truth_of(study):
    return {
        c.case_id: (c.truth.label, c.truth.source, c.patient.pseudonym, c.diameter_mm, c.slice_index, c.size_stratum)
        for c in study.cases.select_related("truth", "patient")
    }


def images_of(study):
    """Per case and series (role, position): the storage prefix relative to the study's and each file's sha256."""
    root = study_prefix(study) + "/"
    out = {}
    for row in CaseSeries.objects.filter(case__study=study).select_related("series", "case"):
        prefix = row.series.storage_prefix
        assert prefix.startswith(root)
        files = sorted(
            (PurePosixPath(name).name, hashlib.sha256(default_storage.open(name).read()).hexdigest())
            for name in series_names(row.series)
        )
        primary = row.case.series_id == row.series_id
        key = (row.case.case_id, row.role, row.position)
        out[key] = (prefix[len(root) :], row.series.modality_code, row.series.slice_positions_mm, files, primary)
    return out


def predictions_of(study):
    return {
        p.case.case_id: (
            p.model_name,
            p.probability,
            p.created_at,
            p.overlay_shape,
            p.overlay_labels,
            hashlib.sha256(p.overlay.read()).hexdigest(),
            hashlib.sha256(p.seg.read()).hexdigest(),
        )
        for p in Prediction.objects.filter(case__study=study).select_related("case")
    }


def study_fields(study):
    fields = ("description", "design", "washout_days", "patient_grouping", "seed", "status", "rating_min")
    return [getattr(study, f) for f in fields] + [
        study.rating_max,
        study.size_bins_mm,
        study.window_presets,
        study.created_at,
        study.launched_at,
        study.closed_at,
        sorted(study.modalities.values_list("key", "label", "shows_dl", "order")),
        sorted(study.memberships.values_list("user__username", "role")),
    ]


def row_counts():
    counts = {m._meta.label: m.objects.count() for m in apps.get_models()}
    studies_dir = Path(settings.MEDIA_ROOT) / "studies"
    files = sorted(str(p.relative_to(settings.MEDIA_ROOT)) for p in Path(settings.MEDIA_ROOT).rglob("*"))
    return counts, files, sorted(p.name for p in studies_dir.iterdir())


def repack(archive: Path, out: Path, change) -> Path:
    """Copy an archive member by member; ``change(name, data)`` returns the bytes to write instead."""
    with tarfile.open(archive, "r:gz") as src, tarfile.open(out, "w:gz") as dst:
        for info in src.getmembers():
            data = change(info.name, src.extractfile(info).read())
            if data is None:
                continue  # the member is left out
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return out


# --- tests --------------------------------------------------------------------------------------------------------


def test_archive_has_a_versioned_manifest_with_every_members_sha256(study, archive):
    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
        assert names[0] == "manifest.json"
        manifest = json.loads(tar.extractfile("manifest.json").read())
        for name in names[1:]:
            assert manifest["members"][name]["sha256"] == hashlib.sha256(tar.extractfile(name).read()).hexdigest()
    assert sorted(manifest["members"]) == sorted(names[1:])
    assert manifest["format"] == "readerstudy-backup" and manifest["format_version"] == 3
    assert manifest["software_version"].startswith("readerstudy ")
    assert manifest["study"] == {"id": study.pk, "name": "Source"} and manifest["images"] is True
    assert manifest["counts"]["reads"] == 24 and manifest["counts"]["cases"] == 6
    # Every event of the study but the backup's own, which is written once the archive is.
    assert manifest["counts"]["audit_events"] == AuditEvent.objects.filter(study=study).count() - 1
    prefixes = set(CaseSeries.objects.filter(case__study=study).values_list("series__storage_prefix", flat=True))
    assert len(prefixes) == 2 * 3  # a portal-venous and an arterial series per patient, each stored once
    n_dicom = sum(len(default_storage.listdir(s)[1]) for s in prefixes)
    assert n_dicom == 3 * (5 + 3)
    assert manifest["counts"]["case_series"] == 2 * 6
    assert sum(n.startswith("series/") for n in names) == n_dicom == manifest["counts"]["files"] - 2 * 6
    series = [json.loads(line) for line in tar_member(archive, "tables/series.jsonl").splitlines()]
    assert all(not s["path"].startswith("/") and s["path"].startswith("import-") for s in series)


def tar_member(archive, name):
    with tarfile.open(archive, "r:gz") as tar:
        return tar.extractfile(name).read().decode()


def test_round_trip_keeps_every_read_audit_event_order_truth_and_file(study, archive):
    before = {
        "reads": reads_of(study),
        "audit": audit_of(study),
        "orders": orders_of(study),
        "truth": truth_of(study),
        "images": images_of(study),
        "predictions": predictions_of(study),
        "study": study_fields(study),
    }
    n_users = User.objects.count()
    out = io.StringIO()
    call_command("restore_study", str(archive), "--rename", "Copy", "--as", "admin", "--no-progress", stdout=out)
    assert "restored 'Copy'" in out.getvalue()

    copy = Study.objects.get(name="Copy")
    assert copy.pk != study.pk
    assert reads_of(copy) == before["reads"] and len(before["reads"]) == 24
    assert orders_of(copy) == before["orders"]
    assert truth_of(copy) == before["truth"]
    assert images_of(copy) == before["images"] and len(before["images"]) == 2 * 6
    assert {k[1:] for k in before["images"]} == {("portal-venous", 0), ("arterial", 1)}
    assert predictions_of(copy) == before["predictions"]
    assert study_fields(copy) == before["study"]
    # The source is untouched; no user was created: all usernames exist here already.
    assert reads_of(study) == before["reads"] and audit_of(study) == before["audit"]
    assert User.objects.count() == n_users

    # Every audit event, timestamps exactly, then one restore event. The source's trail ends with the backup's own
    # event, written after the snapshot: not in the archive.
    restored = audit_of(copy)
    assert before["audit"][-1][:3] == ("backup_study", "admin", "study")
    assert restored[:-1] == before["audit"][:-1] and len(before["audit"]) > 24
    verb, actor, object_type, created_at, _, after = restored[-1]
    assert (verb, actor, object_type) == ("restore_study", "admin", "study")
    after = json.loads(after)
    assert after["archive_sha256"] == sha(archive) and after["source_study"] == {"id": study.pk, "name": "Source"}
    assert after["users_created"] == [] and after["idempotency_keys_rewritten"] == 24
    assert created_at > before["audit"][-1][3]

    # Object ids point at the restored rows (or are marked as not restored).
    for event in AuditEvent.objects.filter(study=copy).exclude(verb="restore_study"):
        if event.object_type == "read":
            read = Read.objects.get(pk=int(event.object_id))
            assert read.study_id == copy.pk and read.rating == event.after["rating"]
        elif event.object_type == "study":
            assert event.object_id == str(copy.pk)
        elif event.object_type == "prediction":
            assert Prediction.objects.get(pk=int(event.object_id)).case.study_id == copy.pk
        elif event.object_type == "readingsession":
            assert ReadingSession.objects.get(pk=int(event.object_id)).study_id == copy.pk
        else:
            assert event.object_id.startswith("orig:") or int(event.object_id) > 0
    # The restored events are new links of this database's chain; each keeps its hash in the source.
    source_hashes = list(
        AuditEvent.objects.filter(study=study)
        .exclude(verb="backup_study")
        .order_by("seq")
        .values_list("hash", flat=True)
    )
    copied = AuditEvent.objects.filter(study=copy).exclude(verb="restore_study").order_by("seq")
    assert list(copied.values_list("source_hash", flat=True)) == source_hashes
    assert set(copied.values_list("hash", flat=True)).isdisjoint(source_hashes)
    out = io.StringIO()
    call_command("verify_audit", "--no-progress", stdout=out)
    assert f"{AuditEvent.objects.count()} events, chain intact" in out.getvalue()
    # Idempotency keys are unique per reader: taken ones are rewritten, deterministically.
    keys = set(Read.objects.filter(study=copy).values_list("idempotency_key", flat=True))
    assert all(k.startswith("restored-") for k in keys) and len(keys) == 24


def test_missing_users_are_created_without_password_or_rights(study, archive):
    # Rename the source's people, so that the archive's usernames do not exist here (as on a fresh server).
    originals = {}
    for user in User.objects.filter(username__in=["admin", "reader1", "reader2"]):
        originals[user.username] = user.pk
        user.username = f"old-{user.username}"
        user.save()
    keys = sorted(Read.objects.filter(study=study).values_list("idempotency_key", flat=True))
    call_command(
        "restore_study", str(archive), "--rename", "Copy", "--as", "old-admin", "--no-progress", stdout=io.StringIO()
    )
    copy = Study.objects.get(name="Copy")
    for username in ("admin", "reader1", "reader2"):
        user = User.objects.get(username=username)
        assert user.pk != originals[username]
        assert not user.has_usable_password() and not user.is_staff and not user.is_superuser
    event = copy.audit_events.get(verb="restore_study")
    assert event.actor.pk == originals["admin"] and sorted(event.after["users_created"]) == [
        "admin",
        "reader1",
        "reader2",
    ]
    assert event.after["idempotency_keys_rewritten"] == 0
    assert sorted(Read.objects.filter(study=copy).values_list("idempotency_key", flat=True)) == keys
    assert sorted(r[0] for r in reads_of(copy)) == sorted(f"reader{i}" for i in (1, 2) for _ in range(12))


@pytest.mark.parametrize("member", ["tables/reads.jsonl", "tables/audit_events.jsonl", "series", "predictions"])
def test_a_corrupt_member_is_named_and_changes_nothing(study, archive, tmp_path, member):
    with tarfile.open(archive, "r:gz") as tar:
        target = next(n for n in tar.getnames() if n.startswith(member))

    def flip(name, data):
        if name != target:
            return data
        return data[:-2] + bytes([data[-2] ^ 1]) + data[-1:]

    bad = repack(archive, tmp_path / "bad.tar.gz", flip)
    before = row_counts()
    with pytest.raises(CommandError, match=f"archive member {target} is corrupt"):
        call_command("restore_study", str(bad), "--rename", "Copy", "--as", "admin", "--no-progress")
    assert row_counts() == before


def test_wrong_format_version_or_format_is_refused(study, archive, tmp_path):
    def manifest(**changes):
        def change(name, data):
            return json.dumps({**json.loads(data), **changes}).encode() if name == "manifest.json" else data

        return change

    before = row_counts()
    newer = repack(archive, tmp_path / "v4.tar.gz", manifest(format_version=4))
    with pytest.raises(CommandError, match="format version 4 is newer than this software reads"):
        call_command("restore_study", str(newer), "--rename", "Copy", "--as", "admin", "--no-progress")
    other = repack(archive, tmp_path / "other.tar.gz", manifest(format="something-else"))
    with pytest.raises(CommandError, match="not a readerstudy-backup archive"):
        call_command("restore_study", str(other), "--rename", "Copy", "--as", "admin", "--no-progress")
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(archive.read_bytes()[:1000])
    with pytest.raises(CommandError, match=r"not a readable tar\.gz"):
        call_command("restore_study", str(garbage), "--rename", "Copy", "--as", "admin", "--no-progress")
    assert row_counts() == before


def test_an_existing_name_is_refused_unless_renamed(study, archive):
    before = row_counts()
    with pytest.raises(CommandError, match="a study named 'Source' exists already"):
        call_command("restore_study", str(archive), "--as", "admin", "--no-progress")
    assert row_counts() == before


def test_a_failure_inside_the_transaction_leaves_no_rows_and_no_files(study, archive, monkeypatch):
    before = row_counts()

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(actions.audit, "record", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        actions.restore_study(User.objects.get(username="admin"), archive, rename="Copy")
    assert row_counts() == before


def test_backup_without_images_and_no_overwrite(study, archive, tmp_path):
    small = tmp_path / "small.tar.gz"
    call_command(
        "backup_study", study.name, str(small), "--as", "admin", "--no-images", "--no-progress", stdout=io.StringIO()
    )
    with tarfile.open(small, "r:gz") as tar:
        names = tar.getnames()
    assert not any(n.startswith("series/") for n in names) and any(n.startswith("predictions/") for n in names)
    assert small.stat().st_size < archive.stat().st_size
    with pytest.raises(CommandError, match="exists already"):
        call_command("backup_study", study.name, str(small), "--as", "admin", "--no-progress")
    out = io.StringIO()
    call_command("restore_study", str(small), "--rename", "Lite", "--as", "admin", "--no-progress", stdout=out)
    assert "holds no images" in out.getvalue()
    lite = Study.objects.get(name="Lite")
    assert reads_of(lite) == reads_of(study) and SessionItem.objects.filter(study=lite).count() == 24
    prefixes = lite.cases.values_list("series__storage_prefix", flat=True)
    assert all(p.startswith(study_prefix(lite) + "/") for p in prefixes)


def test_a_version_1_archive_with_stored_strata_still_restores(study, archive, tmp_path):
    # Written before the stratum was derived: every case row carries a size_stratum column (stale or not).
    cases = [json.loads(line) for line in tar_member(archive, "tables/cases.jsonl").splitlines()]
    old = b"".join(json.dumps({**c, "size_stratum": "stale"}, sort_keys=True).encode() + b"\n" for c in cases)

    def change(name, data):
        if name == "tables/cases.jsonl":
            return old
        if name == "manifest.json":
            manifest = json.loads(data)
            manifest["members"]["tables/cases.jsonl"] = {
                "sha256": hashlib.sha256(old).hexdigest(),
                "size": len(old),
            }
            return json.dumps(manifest).encode()
        return data

    older = repack(archive, tmp_path / "v1-stored-strata.tar.gz", change)
    call_command("restore_study", str(older), "--rename", "Old", "--as", "admin", "--no-progress", stdout=io.StringIO())
    assert truth_of(Study.objects.get(name="Old")) == truth_of(study)  # strata derived anew from the diameters


def test_a_version_1_archive_without_case_series_restores_each_cases_primary_series(tmp_path):
    # Written before multi-series cases: no tables/case_series.jsonl, series rows without modality_code.
    single = build_study(tmp_path, readers=1, n_patients=2, lesions_per_patient=2, name="Single")
    out = tmp_path / "single.tar.gz"
    call_command("backup_study", single.name, str(out), "--as", "admin", "--no-progress", stdout=io.StringIO())
    series = [json.loads(line) for line in tar_member(out, "tables/series.jsonl").splitlines()]
    old_series = b"".join(
        json.dumps({k: v for k, v in s.items() if k != "modality_code"}, sort_keys=True).encode() + b"\n"
        for s in series
    )

    def change(name, data):
        if name == "tables/case_series.jsonl":
            return None
        if name == "tables/series.jsonl":
            return old_series
        if name == "manifest.json":
            manifest = json.loads(data)
            manifest["format_version"] = 1
            del manifest["members"]["tables/case_series.jsonl"], manifest["counts"]["case_series"]
            manifest["members"]["tables/series.jsonl"] = {
                "sha256": hashlib.sha256(old_series).hexdigest(),
                "size": len(old_series),
            }
            return json.dumps(manifest).encode()
        return data

    older = repack(out, tmp_path / "v1.tar.gz", change)
    call_command("restore_study", str(older), "--rename", "Old", "--as", "admin", "--no-progress", stdout=io.StringIO())
    old = Study.objects.get(name="Old")
    rows = CaseSeries.objects.filter(case__study=old).select_related("case", "series")
    assert sorted((r.case.case_id, r.role, r.position, r.series_id == r.case.series_id) for r in rows) == [
        (case_id, "portal-venous", 0, True) for case_id in ("P001-L1", "P001-L2", "P002-L1", "P002-L2")
    ]
    assert {r.series.modality_code for r in rows} == {"CT"}
    assert images_of(old) == images_of(single)


def test_round_trip_keeps_the_reading_config_acknowledgements_timing_and_not_assessable_reads(study, tmp_path):
    from datetime import UTC, datetime

    from readerstudy.studies import actions as study_actions
    from readerstudy.studies.models import Membership

    config = {
        "question": "Q?", "scale_low_label": "lo", "scale_high_label": "hi", "instructions": "Read.\nRate.",
        "label_legend": {"liver": "the organ"}, "default_preset": "1", "hanging_layout": "2x2",
        "overlay_mode": "off", "overlay_hidden_labels": [], "not_assessable_reasons": ["Other"],
    }  # fmt: skip
    Study.objects.filter(pk=study.pk).update(**config)
    study_actions.acknowledge_instructions(User.objects.get(username="reader1"), study)
    read = Read.objects.filter(study=study).order_by("pk").first()
    Read.objects.filter(pk=read.pk).update(
        rating=None, not_assessable=True, not_assessable_reason="Other", comment="faint\nrim", served_seconds=42.25
    )
    served = datetime(2026, 12, 3, 14, 0, 0, 123456, tzinfo=UTC)
    SessionItem.objects.filter(pk=read.item_id).update(first_served_at=served)

    def state(s):
        reads = Read.objects.filter(study=s).select_related("reader", "case", "modality", "item")
        return (
            {f: getattr(s, f) for f in config},
            sorted(Membership.objects.filter(study=s).values_list("user__username", "instructions_acknowledged_at")),
            sorted(
                (r.reader.username, r.case.case_id, r.modality.key, r.rating, r.not_assessable,
                 r.not_assessable_reason, r.comment, r.served_seconds, r.item.first_served_at)
                for r in reads
            ),
        )  # fmt: skip

    before = state(Study.objects.get(pk=study.pk))
    assert sum(1 for m in before[1] if m[1] is not None) == 1
    assert sum(1 for r in before[2] if r[4]) == 1 and served in [r[8] for r in before[2]]
    archive = tmp_path / "workstation.tar.gz"
    call_command("backup_study", study.name, str(archive), "--as", "admin", "--no-progress", stdout=io.StringIO())
    call_command(
        "restore_study", str(archive), "--rename", "Copy", "--as", "admin", "--no-progress", stdout=io.StringIO()
    )
    assert state(Study.objects.get(name="Copy")) == before
