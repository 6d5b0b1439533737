"""Getting past the audit table's append-only triggers, for the tests only: the table owner's DDL, in one transaction.

Used by the test flush (tests/conftest.py: ``transactional_db`` and ``live_server`` tests empty every table
afterwards) and by tests that play a DBA editing the table. The application has no such switch; a role that can
run this DDL owns the table, and what it changes the hash chain shows (``verify_audit``).
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

TABLE = "reading_auditevent"


def bypass_sql(conn: BaseDatabaseWrapper) -> tuple[list[str], list[str]]:
    """Statements that switch the triggers off, and the ones that switch them back on."""
    if conn.vendor == "postgresql":
        # ALTER TABLE refuses while this transaction's rows await their (deferred) foreign key checks: run them.
        off = ["SET CONSTRAINTS ALL IMMEDIATE", f"ALTER TABLE {TABLE} DISABLE TRIGGER USER"]
        return off, [f"ALTER TABLE {TABLE} ENABLE TRIGGER USER", "SET CONSTRAINTS ALL DEFERRED"]
    if conn.vendor == "sqlite":
        # SQLite cannot disable a trigger: drop it and create it again from its stored definition.
        with conn.cursor() as cursor:
            cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [TABLE])
            triggers = cursor.fetchall()
        return [f'DROP TRIGGER "{name}"' for name, _ in triggers], [sql for _, sql in triggers]
    return [], []


@contextmanager
def audit_triggers_off() -> Iterator[None]:
    """Inside the block (one transaction) raw SQL can UPDATE, DELETE and TRUNCATE audit events."""
    off, on = bypass_sql(connection)
    with transaction.atomic(), connection.cursor() as cursor:
        for sql in off:
            cursor.execute(sql)
        yield
        for sql in on:
            cursor.execute(sql)
