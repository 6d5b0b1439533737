"""Audit hash chain, and the database refusing every rewrite of the audit table on both vendors.

- Fields ``seq``, ``prev_hash``, ``hash``, ``source_hash``; existing events are chained in id order (their
  append order) with ``readerstudy.core.chain``, the code ``record()`` uses.
- SQLite: ``BEFORE UPDATE`` and ``BEFORE DELETE`` triggers (0002 added the PostgreSQL row triggers).
- PostgreSQL: a ``BEFORE TRUNCATE`` statement trigger (row triggers do not fire on TRUNCATE, nor on
  ``TRUNCATE ... CASCADE`` from a referenced table).

On SQLite a later migration that alters this table rebuilds it (copy, drop, rename) and so drops the triggers:
such a migration must create them again. tests/reading/test_audit_integrity.py checks they exist after migrate.
The only way past the triggers is the table owner's DDL (DROP/DISABLE TRIGGER); the test suite's flush does that
(tests/audit_triggers.py), the application never does.
"""

from django.db import migrations, models
from django.utils import timezone

from readerstudy.core.chain import GENESIS, event_hash

SQLITE_CREATE = [
    """CREATE TRIGGER reading_auditevent_no_update BEFORE UPDATE ON reading_auditevent
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END""",
    """CREATE TRIGGER reading_auditevent_no_delete BEFORE DELETE ON reading_auditevent
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS reading_auditevent_no_update",
    "DROP TRIGGER IF EXISTS reading_auditevent_no_delete",
]
# 0002's function raises "audit events are append-only (TRUNCATE refused)"; it works as a statement trigger too.
POSTGRES_CREATE = [
    """CREATE TRIGGER reading_auditevent_no_truncate BEFORE TRUNCATE ON reading_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION reading_auditevent_append_only()"""
]
POSTGRES_DROP = ["DROP TRIGGER IF EXISTS reading_auditevent_no_truncate ON reading_auditevent"]


def chain_existing(apps, schema_editor):  # noqa: ANN001, ANN201
    AuditEvent = apps.get_model("reading", "AuditEvent")
    postgres = schema_editor.connection.vendor == "postgresql"
    if postgres:  # 0002's trigger refuses the UPDATE that stores the hashes: off for this transaction only
        schema_editor.execute("ALTER TABLE reading_auditevent DISABLE TRIGGER reading_auditevent_append_only")
    prev_hash, batch = GENESIS, []
    for seq, event in enumerate(AuditEvent.objects.order_by("id").iterator(chunk_size=2000), start=1):
        event.seq, event.prev_hash, event.source_hash = seq, prev_hash, ""
        event.hash = prev_hash = event_hash(event)
        batch.append(event)
        if len(batch) >= 500:
            AuditEvent.objects.bulk_update(batch, ["seq", "prev_hash", "hash", "source_hash"])
            batch = []
    AuditEvent.objects.bulk_update(batch, ["seq", "prev_hash", "hash", "source_hash"])
    if postgres:
        schema_editor.execute("ALTER TABLE reading_auditevent ENABLE TRIGGER reading_auditevent_append_only")


def create_triggers(apps, schema_editor):  # noqa: ANN001, ANN201
    vendor = schema_editor.connection.vendor
    for sql in {"sqlite": SQLITE_CREATE, "postgresql": POSTGRES_CREATE}.get(vendor, []):
        schema_editor.execute(sql, params=None)


def drop_triggers(apps, schema_editor):  # noqa: ANN001, ANN201
    vendor = schema_editor.connection.vendor
    for sql in {"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP}.get(vendor, []):
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("reading", "0002_audit_append_only_trigger")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="seq",
            field=models.PositiveBigIntegerField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="source_hash",
            field=models.CharField(
                blank=True,
                default="",
                editable=False,
                help_text="Its hash in the database it was restored from.",
                max_length=64,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="created_at",
            field=models.DateTimeField(db_index=True, default=timezone.now, editable=False),
        ),
        migrations.RunPython(chain_existing, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="auditevent",
            name="seq",
            field=models.PositiveBigIntegerField(editable=False, unique=True),
        ),
        # Last: on SQLite the AlterFields above rebuild the table, which would drop triggers made before them.
        migrations.RunPython(create_triggers, drop_triggers),
    ]
