"""On PostgreSQL the database itself refuses UPDATE and DELETE of audit events (raw SQL cannot bypass it).

0003 adds the SQLite triggers and PostgreSQL's TRUNCATE trigger (the test flush gets past them: tests/conftest.py).
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION reading_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER reading_auditevent_append_only
    BEFORE UPDATE OR DELETE ON reading_auditevent
    FOR EACH ROW EXECUTE FUNCTION reading_auditevent_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS reading_auditevent_append_only ON reading_auditevent;
DROP FUNCTION IF EXISTS reading_auditevent_append_only();
"""


def forwards(apps, schema_editor):  # noqa: ANN001, ANN201
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):  # noqa: ANN001, ANN201
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("reading", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
