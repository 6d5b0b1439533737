"""The audit trail moves from reading to core, in migration state only: no SQL touches ``reading_auditevent``.

The table keeps its name (``db_table``), its rows and the append-only triggers reading's 0002 and 0003 made (on
SQLite any ALTER would rebuild the table and drop them: state-only operations emit no SQL, check with
``manage.py sqlmigrate core 0001``). reading's 0005 drops the model from reading's state after this one.
The content type is renamed too, so permissions granted on the audit trail (and admin log entries) stay.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

VERBS = [
    (v, v)
    for v in (
        "create_study",
        "update_study",
        "add_modality",
        "remove_modality",
        "add_member",
        "remove_member",
        "import_cases",
        "launch_study",
        "close_study",
        "restore_study",
        "start_session",
        "submit_read",
        "record_prediction",
        "discard_prediction",
        "start_precompute",
        "request_export",
        "start_analysis",
        "finish_job",
    )
]


def _move_content_type(apps, schema_editor, source: str, target: str) -> None:  # noqa: ANN001
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    if not ContentType.objects.using(db).filter(app_label=target, model="auditevent").exists():
        ContentType.objects.using(db).filter(app_label=source, model="auditevent").update(app_label=target)


def forwards(apps, schema_editor):  # noqa: ANN001, ANN201
    _move_content_type(apps, schema_editor, "reading", "core")


def backwards(apps, schema_editor):  # noqa: ANN001, ANN201
    _move_content_type(apps, schema_editor, "core", "reading")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("reading", "0004_read_prediction"),
        ("studies", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditEvent",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("verb", models.CharField(choices=VERBS, max_length=50)),
                        ("object_type", models.CharField(max_length=50)),
                        ("object_id", models.CharField(max_length=64)),
                        ("before", models.JSONField(blank=True, null=True)),
                        ("after", models.JSONField(blank=True, null=True)),
                        (
                            "created_at",
                            models.DateTimeField(db_index=True, default=django.utils.timezone.now, editable=False),
                        ),
                        ("seq", models.PositiveBigIntegerField(editable=False, unique=True)),
                        ("prev_hash", models.CharField(editable=False, max_length=64)),
                        ("hash", models.CharField(editable=False, max_length=64)),
                        (
                            "source_hash",
                            models.CharField(
                                blank=True,
                                default="",
                                editable=False,
                                help_text="Its hash in the database it was restored from.",
                                max_length=64,
                            ),
                        ),
                        (
                            "actor",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="audit_events",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "study",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="audit_events",
                                to="studies.study",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "reading_auditevent",
                        "ordering": ["-created_at", "-id"],
                        "indexes": [
                            models.Index(fields=["object_type", "object_id"], name="reading_aud_object__868be2_idx")
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
