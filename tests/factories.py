"""Builders for tests: users, studies built through the real actions, stand-in predictions.

The tiny series and manifests come from :mod:`fixtures.manifests` (benchmarks use them too).
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from django.contrib.auth import get_user_model

from fixtures.manifests import balanced_rows, manifest_row, practice_rows, write_manifest, write_series
from readerstudy.reading.actions import launch_study
from readerstudy.studies import actions
from readerstudy.studies.models import Case, Study

__all__ = [
    "balanced_rows", "build_study", "make_user", "manifest_row", "practice_rows", "predict_all", "read_dicom_header",
    "write_manifest", "write_series",
]  # fmt: skip

User = get_user_model()


def make_user(username: str, *, staff: bool = False, superuser: bool = False) -> "User":
    user, _ = User.objects.get_or_create(
        username=username, defaults={"is_staff": staff or superuser, "is_superuser": superuser}
    )
    return user


def build_study(
    tmp_path: Path,
    *,
    admin: "User | None" = None,
    readers: int = 3,
    design: str = "crossover",
    grouping: str = "none",
    n_patients: int = 6,
    lesions_per_patient: int = 2,
    washout_days: int = 28,
    name: str = "Test study",
    launch: bool = True,
    predict: "float | Callable[[Case], float] | None" = None,
    seg: bool = False,
    extra_series_roles: tuple[str, ...] = (),
    practice_cases: int = 0,
) -> Study:
    """A study set up entirely through the actions, optionally with predictions (``predict``: the probability,
    recorded before launch, which freezes them) and launched; ``extra_series_roles`` gives every case one more
    tiny series per role (fixtures.manifests.balanced_rows); ``practice_cases`` adds that many practice cases
    (fixtures.manifests.practice_rows: patients X001, ...)."""
    admin = admin or make_user("admin", superuser=True)
    study = actions.create_study(
        admin, name, design=design, washout_days=washout_days, patient_grouping=grouping, seed=1234
    )
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "DL-assisted", shows_dl=True)
    for i in range(1, readers + 1):
        actions.add_member(admin, study, make_user(f"reader{i}"), "reader")
    rows = balanced_rows(n_patients, lesions_per_patient, extra_series_roles=extra_series_roles)
    rows += practice_rows(practice_cases)
    manifest = write_manifest(tmp_path / "import", rows)
    actions.import_cases(admin, study, manifest)
    if predict is not None:
        predict_all(study, predict, seg=seg)
    if launch:
        launch_study(admin, study, accept_missing_predictions=predict is None)
    study.refresh_from_db()
    return study


def read_dicom_header(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


def predict_all(study: Study, probability: "float | Callable[[Case], float]" = 0.9, *, seg: bool = False) -> None:
    """A stand-in prediction for every case (through the real action): a small lesion square on its slice."""
    from inference.actions import record_prediction

    admin = make_user("admin", superuser=True)
    for case in study.cases.select_related("series"):
        s = case.series
        labelmap = np.zeros((s.n_slices, s.rows, s.columns), dtype=np.uint8)
        labelmap[case.slice_index, 2:5, 2:5] = 2
        record_prediction(
            admin, case, model_name="test-model", model_version="1", weights_sha256="a" * 64,
            inputs_sha256=str(case.pk), probability=probability(case) if callable(probability) else probability,
            labelmap=labelmap, labels=[{"value": 1, "name": "liver"}, {"value": 2, "name": "lesion"}],
            seg_bytes=b"DICM-seg-" + case.case_id.encode() if seg else None,
        )  # fmt: skip
