"""PostgreSQL: ``audit_append(...)``, an audit event linked, hashed and inserted in one round trip (core/audit.py).

It replaces ``audit_chain_head`` (0008), which returned the head for Python to hash and insert in a second round
trip while the chain lock was held. The function takes the same locks in the same order (KEY SHARE on the rows the
event's foreign keys check, then the advisory lock), reads the head with a fresh snapshot (plpgsql takes one per
statement in a VOLATILE function, so the head is read after the lock is granted), and hashes
``head_text || prev_hash || '","seq":' || seq || tail_text``: Python sends the canonical payload around its
chain fields (core.chain.hash_parts) and checks the returned hash against core.chain.event_hash.
"""

from django.conf import settings
from django.db import migrations

# Frozen here as migrations must be; tests/reading/test_audit_integrity.py checks them against core.audit/chain.
CHAIN_LOCK = 0x6175646974
APPEND_FUNCTION = "audit_append"
GENESIS = "0" * 64
SEQ_JOIN = '","seq":'

_OLD = "readerstudy.core.migrations.0008_audit_chain_head"


def create(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    quote = connection.ops.quote_name
    study = apps.get_model("studies", "Study")._meta
    user = apps.get_model(*settings.AUTH_USER_MODEL.split("."))._meta
    event = apps.get_model("core", "AuditEvent")._meta
    table = quote(event.db_table)
    schema_editor.execute(
        f"""
        CREATE OR REPLACE FUNCTION {APPEND_FUNCTION}(
            p_actor bigint, p_study bigint, p_verb text, p_object_type text, p_object_id text, p_before jsonb,
            p_after jsonb, p_created_at timestamptz, p_source_hash text, p_head text, p_tail text)
        RETURNS TABLE (event_id bigint, event_seq bigint, event_prev_hash text, event_hash text)
        LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            PERFORM 1 FROM {quote(study.db_table)} WHERE {quote(study.pk.column)} = p_study FOR KEY SHARE;
            PERFORM 1 FROM {quote(user.db_table)} WHERE {quote(user.pk.column)} = p_actor FOR KEY SHARE;
            PERFORM pg_advisory_xact_lock({CHAIN_LOCK});
            SELECT e.seq, e.hash INTO event_seq, event_prev_hash FROM {table} e ORDER BY e.seq DESC LIMIT 1;
            IF NOT FOUND THEN
                event_seq := 0;
                event_prev_hash := '{GENESIS}';
            END IF;
            event_seq := event_seq + 1;
            event_hash := encode(sha256(convert_to(
                p_head || event_prev_hash || '{SEQ_JOIN}' || event_seq::text || p_tail, 'UTF8')), 'hex');
            INSERT INTO {table} (actor_id, study_id, verb, object_type, object_id, before, after, created_at, seq,
                                 prev_hash, hash, source_hash)
            VALUES (p_actor, p_study, p_verb, p_object_type, p_object_id, p_before, p_after, p_created_at,
                    event_seq, event_prev_hash, event_hash, p_source_hash)
            RETURNING id INTO event_id;
            RETURN NEXT;
        END
        $$
        """
    )
    schema_editor.execute("DROP FUNCTION IF EXISTS audit_chain_head(bigint, bigint)")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    import importlib

    importlib.import_module(_OLD).create(apps, schema_editor)
    schema_editor.execute(f"DROP FUNCTION IF EXISTS {APPEND_FUNCTION}(bigint, bigint, text, text, text, jsonb, jsonb, "
                          "timestamptz, text, text, text)")


class Migration(migrations.Migration):
    dependencies = [("core", "0008_audit_chain_head")]

    operations = [migrations.RunPython(create, drop)]
