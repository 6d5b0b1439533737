"""The viewer benchmark's throwaway study: SQLite and media in a temp dir, phantom series, reference-mask overlays."""

from __future__ import annotations

import math
import os
from pathlib import Path

PASSWORD = "bench-viewer-pass-1"


def bench_env(tmp: Path) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "readerstudy.settings",
            "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
            "MEDIA_ROOT": str(tmp / "media"),
            "DEBUG": "1",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_ALLOW_ASYNC_UNSAFE": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("TASKS_BACKEND", None)
    return env


def build_study(tmp: Path, n_cases: int) -> dict:
    """Migrate the throwaway database and build a launched crossover study; returns what the browser part needs."""
    import django

    django.setup()
    import numpy as np
    from django.conf import settings
    from django.core.files.storage import default_storage
    from django.core.management import call_command
    from django.db import connections

    from fixtures.studies import phantom_crossover_study
    from inference.actions import record_prediction
    from readerstudy.reading.actions import launch_study
    from readerstudy.reading.models import ReadingSession
    from readerstudy.studies.actions import acknowledge_instructions
    from readerstudy.studies.storage import series_names

    call_command("migrate", interactive=False, verbosity=0)
    n_lesions = max(8, n_cases + 2)
    n_patients = max(4, math.ceil(n_lesions / 2))
    data = tmp / "data"
    built = phantom_crossover_study(
        data, name="Viewer bench", password=PASSWORD, phantom_seed=20260501, n_patients=n_patients,
        n_lesions=n_lesions, admin_username="bench-admin", reader_username="bench-reader",
    )  # fmt: skip
    admin, reader, study = built.admin, built.reader, built.study
    # Stand-in predictions from the phantom's reference masks: they exercise the overlay path, not a model.
    for case in study.cases.select_related("series", "patient"):
        masks = np.load(data / "masks" / f"{case.patient.pseudonym}.npz")
        labelmap = masks["liver_mask"].astype(np.uint8)
        labelmap[masks["lesion_labels"] > 0] = 2
        record_prediction(
            admin, case, model_name="reference-mask", model_version="bench", weights_sha256="0" * 64,
            inputs_sha256=str(case.pk), probability=0.8, labelmap=labelmap,
            labels=[{"value": 1, "name": "liver"}, {"value": 2, "name": "target lesion"}],
        )  # fmt: skip
    launch_study(admin, study)
    study.refresh_from_db()
    acknowledge_instructions(reader, study)  # else the reading page redirects to the instructions first
    session = ReadingSession.objects.get(study=study, reader=reader, index=1)
    items = []
    for item in session.items.select_related("modality", "case__series").order_by("position"):
        series = item.case.series
        items.append(
            {
                "id": item.pk,
                "position": item.position,
                "aided": item.modality.shows_dl,
                "n_slices": series.n_slices,
                "series_bytes": sum(default_storage.size(name) for name in series_names(series)),
            }
        )
    connections.close_all()
    return {
        "session_id": session.pk,
        "items": items,
        "n_patients": n_patients,
        "n_lesions": n_lesions,
        "debug": settings.DEBUG,
    }
