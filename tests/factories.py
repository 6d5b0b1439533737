"""Builders for tests: users, tiny DICOM series, manifests, studies built through the real actions."""

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from django.contrib.auth import get_user_model
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from readerstudy.reading.actions import launch_study
from readerstudy.studies import actions
from readerstudy.studies.manifest import COLUMNS
from readerstudy.studies.models import Case, Study

User = get_user_model()


def make_user(username: str, *, staff: bool = False, superuser: bool = False) -> "User":
    user, _ = User.objects.get_or_create(
        username=username, defaults={"is_staff": staff or superuser, "is_superuser": superuser}
    )
    return user


def write_series(
    folder: Path, *, n_slices: int = 5, z0: float = 0.0, spacing: float = 2.5, size: int = 8, modality: str = "CT"
) -> list[Path]:
    """A tiny valid CT series: slices at z0, z0 + spacing, ... (LPS, axial)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid = generate_uid(), generate_uid()
    paths = []
    for i in range(n_slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{i:03d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.Modality = modality
        ds.PatientID = "TEST"
        ds.InstanceNumber = i + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, z0 + i * spacing]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = spacing
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.full((size, size), 100, dtype=np.int16).tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def manifest_row(patient: str, case: str, *, series: str | None = None, **overrides: object) -> dict:
    row = {
        "patient_id": patient,
        "case_id": case,
        "series_path": series or f"series/{patient}",
        "lesion_x_mm": "1.0",
        "lesion_y_mm": "2.0",
        "lesion_z_mm": "5.0",
        "diameter_mm": "12.0",
        "truth": "crlm",
        "truth_source": "histology",
    }
    row.update({k: str(v) for k, v in overrides.items()})
    return row


def write_manifest(folder: Path, rows: list[dict], *, name: str = "manifest.csv") -> Path:
    """Write rows and create any missing series folders they name (tiny valid CT series)."""
    folder.mkdir(parents=True, exist_ok=True)
    for row in rows:
        series_dir = folder / row["series_path"]
        if row["series_path"].startswith("series/") and not series_dir.exists():
            write_series(series_dir)
    path = folder / name
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def balanced_rows(n_patients: int = 6, lesions_per_patient: int = 2) -> list[dict]:
    """Rows for n_patients x lesions, alternating truth and spanning the size bins."""
    rows, k = [], 0
    diameters = [6.0, 10.0, 15.0, 30.0, 35.0, 22.0]
    for p in range(1, n_patients + 1):
        for lesion in range(1, lesions_per_patient + 1):
            rows.append(
                manifest_row(
                    f"P{p:03d}",
                    f"P{p:03d}-L{lesion}",
                    diameter_mm=diameters[k % len(diameters)],
                    truth="crlm" if k % 2 == 0 else "hemangioma",
                    truth_source=["histology", "follow-up", "imaging"][k % 3],
                    lesion_z_mm=2.5 * (lesion % 5),
                )
            )
            k += 1
    return rows


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
) -> Study:
    """A study set up entirely through the actions, optionally with predictions (``predict``: the probability,
    recorded before launch, which freezes them) and launched."""
    admin = admin or make_user("admin", superuser=True)
    study = actions.create_study(
        admin, name, design=design, washout_days=washout_days, patient_grouping=grouping, seed=1234
    )
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "DL-assisted", shows_dl=True)
    for i in range(1, readers + 1):
        actions.add_member(admin, study, make_user(f"reader{i}"), "reader")
    manifest = write_manifest(tmp_path / "import", balanced_rows(n_patients, lesions_per_patient))
    actions.import_cases(admin, study, manifest)
    if predict is not None:
        predict_all(study, predict, seg=seg)
    if launch:
        launch_study(admin, study)
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
