"""ImageSeries.path (an absolute folder under MEDIA_ROOT) becomes storage_prefix (a name in default_storage)."""

import os
from pathlib import Path

from django.conf import settings
from django.db import migrations, models


def _media_root() -> Path:
    return Path(os.path.abspath(settings.MEDIA_ROOT))


def to_storage_names(apps, schema_editor):
    ImageSeries = apps.get_model("studies", "ImageSeries")
    media = _media_root()
    outside = []
    for series in ImageSeries.objects.all().only("pk", "storage_prefix"):
        path = Path(series.storage_prefix)
        if not path.is_absolute():
            continue  # a storage name already
        candidates = [Path(os.path.abspath(path))]
        if path.exists():
            candidates.append(path.resolve())
        rel = next((c.relative_to(r) for c in candidates for r in (media, media.resolve()) if c.is_relative_to(r)), None)
        if rel is None:
            outside.append(f"series {series.pk}: {path}")
            continue
        series.storage_prefix = rel.as_posix()
        series.save(update_fields=["storage_prefix"])
    if outside:
        # Such a series could not be served through the storage: stop rather than leave rows that point nowhere.
        raise RuntimeError(
            f"{len(outside)} series lie outside MEDIA_ROOT {media}; move their folders under MEDIA_ROOT (keeping the "
            "file names) and set the path accordingly, then migrate again: " + "; ".join(outside[:20])
        )


def to_paths(apps, schema_editor):
    ImageSeries = apps.get_model("studies", "ImageSeries")
    media = _media_root()
    for series in ImageSeries.objects.all().only("pk", "storage_prefix"):
        if not Path(series.storage_prefix).is_absolute():
            series.storage_prefix = str(media / series.storage_prefix)
            series.save(update_fields=["storage_prefix"])


class Migration(migrations.Migration):
    dependencies = [("studies", "0001_initial")]

    operations = [
        migrations.RemoveConstraint(model_name="imageseries", name="series_path_unique_per_patient"),
        migrations.RenameField(model_name="imageseries", old_name="path", new_name="storage_prefix"),
        migrations.AlterField(
            model_name="imageseries",
            name="storage_prefix",
            field=models.CharField(
                help_text="Storage name of the series' folder, e.g. studies/1/import-<uuid>/series-1.",
                max_length=500,
            ),
        ),
        migrations.RunPython(to_storage_names, to_paths),
        migrations.AddConstraint(
            model_name="imageseries",
            constraint=models.UniqueConstraint(
                fields=("patient", "storage_prefix"), name="series_path_unique_per_patient"
            ),
        ),
    ]
