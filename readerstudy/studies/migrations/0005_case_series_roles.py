# Multi-series cases: every case lists its series (role, position) in CaseSeries; position 0 is the primary
# series (Case.series: the one the lesion coordinates, slice_index and the DL prediction refer to).

import django.db.models.deletion
from django.db import migrations, models

# Existing cases were imported as single portal-venous CT series (the study's reading condition), so their
# primary series gets the same role a new import gives a row without series_role (models.DEFAULT_SERIES_ROLE;
# written out here because a migration must not change when the model's constant does).
EXISTING_PRIMARY_ROLE = "portal-venous"


def primary_rows(apps, schema_editor):
    Case = apps.get_model("studies", "Case")
    CaseSeries = apps.get_model("studies", "CaseSeries")
    db = schema_editor.connection.alias
    rows = [
        CaseSeries(case_id=case_id, series_id=series_id, role=EXISTING_PRIMARY_ROLE, position=0)
        for case_id, series_id in Case.objects.using(db).values_list("pk", "series_id").iterator()
    ]
    CaseSeries.objects.using(db).bulk_create(rows, batch_size=1000)


def no_op(apps, schema_editor):
    pass  # the table is dropped by the reverse of CreateModel


class Migration(migrations.Migration):
    dependencies = [
        ("studies", "0004_study_reading_config"),
    ]

    operations = [
        migrations.AddField(
            model_name="imageseries",
            name="modality_code",
            field=models.CharField(
                default="CT", help_text="DICOM Modality of the series' files (CT, MR), read at import.", max_length=16
            ),
        ),
        migrations.CreateModel(
            name="CaseSeries",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "role",
                    models.CharField(
                        help_text="e.g. portal-venous, arterial, delayed, t2 (roles.ROLE_RULE)", max_length=40
                    ),
                ),
                (
                    "position",
                    models.PositiveSmallIntegerField(help_text="Order in the viewer; 0 is the primary series."),
                ),
                (
                    "case",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="case_series", to="studies.case"
                    ),
                ),
                (
                    "series",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="case_series",
                        to="studies.imageseries",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "case series",
                "ordering": ["case", "position"],
                "constraints": [
                    models.UniqueConstraint(fields=("case", "role"), name="case_series_role_unique"),
                    models.UniqueConstraint(fields=("case", "position"), name="case_series_position_unique"),
                    models.UniqueConstraint(fields=("case", "series"), name="case_series_series_unique"),
                    models.CheckConstraint(condition=models.Q(("position__lt", 8)), name="case_series_position_max"),
                ],
            },
        ),
        migrations.RunPython(primary_rows, no_op),
    ]
