"""PostgreSQL: ``audit_chain_head(study, actor)``, the chain's locks and head in one round trip (core/audit.py).

A VOLATILE function takes a fresh snapshot for each statement it runs, so its last SELECT sees every event
committed before the advisory lock was granted: the same guarantee as the three statements it replaces.
"""

from django.conf import settings
from django.db import migrations

# Frozen here as migrations must be; tests/reading/test_audit_integrity.py checks them against core.audit.
CHAIN_LOCK = 0x6175646974
CHAIN_HEAD_FUNCTION = "audit_chain_head"


def create(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    quote = connection.ops.quote_name
    study = apps.get_model("studies", "Study")._meta
    user = apps.get_model(*settings.AUTH_USER_MODEL.split("."))._meta
    event = apps.get_model("core", "AuditEvent")._meta
    # KEY SHARE on the rows the event's foreign keys check, before the advisory lock (see audit._lock_sql).
    schema_editor.execute(
        f"""
        CREATE OR REPLACE FUNCTION {CHAIN_HEAD_FUNCTION}(p_study bigint, p_actor bigint)
        RETURNS TABLE (head_seq bigint, head_hash text) LANGUAGE sql VOLATILE AS $$
            SELECT 1 FROM {quote(study.db_table)} WHERE {quote(study.pk.column)} = p_study FOR KEY SHARE;
            SELECT 1 FROM {quote(user.db_table)} WHERE {quote(user.pk.column)} = p_actor FOR KEY SHARE;
            SELECT pg_advisory_xact_lock({CHAIN_LOCK});
            SELECT seq::bigint, hash::text FROM {quote(event.db_table)} ORDER BY seq DESC LIMIT 1;
        $$
        """
    )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {CHAIN_HEAD_FUNCTION}(bigint, bigint)")


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0007_task_worker"),
        ("studies", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(create, drop)]
