"""The audit trail now lives in core (core/migrations/0001): drop it from reading's migration state only.

No SQL: the table ``reading_auditevent``, its rows and its triggers (0002, 0003) stay as they are.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        ("reading", "0004_read_prediction"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AuditEvent")],
            database_operations=[],
        ),
    ]
