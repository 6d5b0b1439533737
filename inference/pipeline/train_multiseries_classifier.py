"""Train the multi-series CRLM classifier (:mod:`inference.pipeline.multiseries`) on labelled multi-phase lesions.

    python -m inference.pipeline.train_multiseries_classifier --data DIR --out DIR [--epochs 20]
        [--val-fraction 0.25] [--cal-fraction 0.2] [--seed 7] [--roles portal-venous,arterial,delayed] [--threads 1]

``DIR``: the layout of :func:`fixtures.phantom.generate_demo_study` with further phases, i.e. a manifest with
``series_role`` and ``extra_series`` (``role=folder;role=folder``); ``masks/<patient>.npz`` (phantoms) gives each
lesion's centre and slice range on the primary series' grid, else the manifest centre and diameter do. For the
demo, phantoms of another seed than the demo study's 20261123::

    python -m fixtures.phantom /tmp/ms-train --seed 11 --patients 120 --lesions 360 --extra-series arterial,delayed \
        --atypical-fraction 0.2
    python -m inference.pipeline.train_multiseries_classifier --data /tmp/ms-train --out fixtures/models

The reference (portal-venous) series must be each case's primary series (where the manifest centres and masks
are). Every other phase is resampled onto it by DICOM geometry only, no registration (see the module docstring of
:mod:`inference.pipeline.multiseries`). A case lacking a phase is refused with its case id and the phase.

Augmentation (the same for every channel): field of view scale 0.85-1.2, centre jitter ~1 px, flips, 90-degree
rotations. Patients are split three ways (no patient in two;
:func:`~inference.pipeline.train_classifier.split_patients_three`): held-out validation (``--val-fraction``, the
same patients as every classifier's training command holds out), calibration (``--cal-fraction`` of all patients,
from the rest) and training. Platt scaling of the mean crop logit is fitted on the calibration patients and stored
in the model's config (the classifier applies it). The held-out figures are per lesion
(:func:`~inference.pipeline.train_classifier.held_out_metrics`: AUC with the clustered DeLong CI of
:func:`readerstudy.analysis.model_auc`, overall, by size stratum and by appearance; the calibration after and
before scaling). Writes ``OUT/multiseries_classifier.pt`` and its model card ``.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imaging.series import read_series
from inference.pipeline.calibration import fit_calibration
from inference.pipeline.classify import crop_slices
from inference.pipeline.model_card import save_with_card
from inference.pipeline.multiseries import (
    MULTISERIES_CONFIG,
    build_multiseries_net,
    check_series,
    crop_box,
    crops_from_planes,
    multiseries_crops,
    reference_planes,
)
from inference.pipeline.train_classifier import (
    LABELS,
    fit_crops,
    held_out_metrics,
    lesion_appearance,
    read_masks,
    split_patients_three,
)

NAME = "multiseries-classifier-demo"
VERSION = "1.0"
FILENAME = "multiseries_classifier.pt"
DEFAULT_PRIMARY_ROLE = "portal-venous"  # a manifest without series_role (readerstudy.studies.roles' default)
_AUGMENT_FOV_MAX = 1.2


@dataclass
class MultiSeriesCase:
    """One lesion: its truth and what training needs of its series (not the volumes: a box around the lesion)."""

    patient: str
    case_id: str
    truth: int
    diameter_mm: float
    spacing: tuple[float, float, float]
    planes: np.ndarray  # [roles, n_slices, rows, cols] on the reference grid, a box around the lesion
    centre_ji: tuple[float, float]  # in the box
    val_crops: np.ndarray  # [n_slices, roles, p, p]: exactly what inference crops (multiseries_crops)
    appearance: str | None = None  # the phantom's look, when its masks record it


def _extra_series(value: str) -> dict[str, str]:
    out = {}
    for part in (value or "").split(";"):
        if part.strip():
            role, _, folder = part.partition("=")
            out[role.strip()] = folder.strip()
    return out


def _mask_extent(
    data: Path, pid: str, case_id: str, masks: dict[str, tuple[np.ndarray, list[str] | None]], centre: np.ndarray
) -> tuple[np.ndarray, tuple[int, int] | None, str | None]:
    """The lesion's centre, slice range and appearance from ``masks/<patient>.npz`` (phantoms), else ``centre``,
    None and None."""
    mask_file = data / "masks" / f"{pid}.npz"
    if mask_file.is_file() and "-L" in case_id:
        if pid not in masks:
            masks[pid] = read_masks(mask_file)
        labels, looks = masks[pid]
        n = int(case_id.rsplit("-L", 1)[1])
        idx = np.argwhere(labels == n)
        if idx.size:
            return idx.mean(axis=0), (int(idx[:, 0].min()), int(idx[:, 0].max())), lesion_appearance(looks, n)
    return centre, None, None


def load_multiseries_cases(data: Path, config: dict[str, Any], progress: bool = True) -> list[MultiSeriesCase]:
    """Read the manifest, each patient's series (once) and the optional masks."""
    from tqdm import tqdm

    data = Path(data)
    manifest = data / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: not found (expected the fixtures.phantom study layout)")
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    need = {"patient_id", "case_id", "series_path", "lesion_x_mm", "lesion_y_mm", "lesion_z_mm", "diameter_mm", "truth"}
    if rows and not need <= set(rows[0]):
        raise ValueError(f"{manifest}: missing columns {sorted(need - set(rows[0]))}")
    roles, reference_role = list(config["roles"]), str(config["reference_role"])
    volumes: dict[str, Any] = {}
    masks: dict[str, tuple[np.ndarray, list[str] | None]] = {}
    cases: list[MultiSeriesCase] = []
    for line, row in enumerate(tqdm(rows, desc="cases", disable=not progress), start=2):
        truth = row["truth"].strip().lower()
        if truth not in LABELS:
            raise ValueError(f"{manifest}:{line}: truth {row['truth']!r}, expected one of {sorted(LABELS)}")
        primary_role = (row.get("series_role") or "").strip() or DEFAULT_PRIMARY_ROLE
        folders = {primary_role: row["series_path"], **_extra_series(row.get("extra_series", ""))}
        check_series(list(folders), roles, row["case_id"])
        if primary_role != reference_role:
            raise ValueError(
                f"{manifest}:{line}: the primary series is {primary_role}; training needs the {reference_role} "
                "series as the primary (the centres and masks are on its grid)"
            )
        series = {}
        for role in roles:
            if folders[role] not in volumes:
                volumes[folders[role]] = read_series(data / folders[role])
            series[role] = volumes[folders[role]]
        reference = series[reference_role]
        centre = reference.lps_to_index(
            [float(row["lesion_x_mm"]), float(row["lesion_y_mm"]), float(row["lesion_z_mm"])]
        )
        pid = row["patient_id"]
        centre, z_range, appearance = _mask_extent(data, pid, row["case_id"], masks, centre)
        diameter = float(row["diameter_mm"])
        sz, sy, sx = (float(s) for s in reference.spacing_mm)
        spacing = (sz, sy, sx)
        slices = crop_slices(
            float(centre[0]), z_range, diameter, spacing[0], int(config["n_slices"]), reference.hu.shape[0]
        )
        # the part of the planes the largest augmented crop reaches (a few pixels of margin for the jitter)
        box = crop_box(centre[1:], diameter, spacing, config, reference.hu.shape, fov_scale=_AUGMENT_FOV_MAX)
        planes = reference_planes(series, roles, reference_role, slices, box)
        centre_ji = (float(centre[1]) - box[0].start, float(centre[2]) - box[1].start)
        val_crops = multiseries_crops(series, centre, diameter, config, z_range=z_range)
        cases.append(
            MultiSeriesCase(
                pid, row["case_id"], LABELS[truth], diameter, spacing, planes, centre_ji, val_crops, appearance
            )
        )
        if len(volumes) > 3 * len(roles):  # patients come in order: keep the last few patients' series only
            for key in list(volumes)[: len(roles)]:
                del volumes[key]
    return cases


def _augmented(case: MultiSeriesCase, config: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    crops = crops_from_planes(
        case.planes, case.spacing, case.centre_ji, case.diameter_mm, config,
        fov_scale=float(rng.uniform(0.85, _AUGMENT_FOV_MAX)),
        shift_px=(float(rng.normal(0, 1.0)), float(rng.normal(0, 1.0))),
    )  # fmt: skip
    if rng.random() < 0.5:
        crops = crops[..., ::-1]
    return np.ascontiguousarray(np.rot90(crops, int(rng.integers(4)), axes=(2, 3)))


def _mean_logits(net: Any, cases: list[MultiSeriesCase]) -> np.ndarray:
    """Each lesion's raw score: the mean logit over its crops (what :class:`MultiSeriesClassifier` computes)."""
    import torch

    net.eval()
    with torch.inference_mode():
        return np.array([float(net(torch.from_numpy(c.val_crops))[:, 0].mean()) for c in cases])


def train(
    data: Path,
    out_dir: Path,
    *,
    epochs: int = 20,
    val_fraction: float = 0.25,
    cal_fraction: float = 0.2,
    seed: int = 7,
    roles: Sequence[str] | None = None,
    batch: int = 32,
    lr: float = 3e-3,
    threads: int = 1,
    config: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, calibrate, validate on held-out patients, save ``OUT/multiseries_classifier.pt`` and its card."""
    import torch

    config = dict(config or MULTISERIES_CONFIG)
    config.pop("calibration", None)
    if roles is not None:
        config["roles"] = list(roles)
    if config["reference_role"] not in config["roles"]:
        raise ValueError(f"roles {config['roles']}: the reference role {config['reference_role']!r} must be one")
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng([seed, 3])
    t0 = time.perf_counter()
    cases = load_multiseries_cases(data, config, progress)
    val_patients, cal_patients = split_patients_three([c.patient for c in cases], val_fraction, cal_fraction, seed)
    train_cases = [c for c in cases if c.patient not in val_patients | cal_patients]
    cal_cases = [c for c in cases if c.patient in cal_patients]
    val_cases = [c for c in cases if c.patient in val_patients]
    if not train_cases or len({c.truth for c in val_cases}) < 2:
        raise ValueError("need training cases and both classes among the validation cases; add data or change --seed")
    net = build_multiseries_net(config)
    final_loss = fit_crops(
        net, train_cases, lambda c: _augmented(c, config, rng), rng,
        n_slices=int(config["n_slices"]), epochs=epochs, batch=batch, lr=lr, desc="train multi-series classifier",
        progress=progress, min_batch=2,
    )  # fmt: skip
    calibration, cal_note = fit_calibration(
        _mean_logits(net, cal_cases), [c.truth for c in cal_cases], len(cal_patients), "mean logit"
    )
    if calibration:
        config["calibration"] = calibration
    metrics = held_out_metrics(val_cases, _mean_logits(net, val_cases), calibration)
    truth = np.array([c.truth for c in val_cases])
    card = {
        "task": "probability that a liver lesion is a colorectal liver metastasis (vs hemangioma) from several "
        "contrast phases; demo on phantoms",
        "architecture": f"MONAI DenseNet 2D (init_features {config['init_features']}, growth_rate "
        f"{config['growth_rate']}, block_config {config['block_config']}), {len(config['roles'])} input channels "
        f"({', '.join(config['roles'])}), 1 logit; {config['n_slices']} axial crops {config['crop_px']}x"
        f"{config['crop_px']} px per lesion, mean logit",
        "params": int(sum(p.numel() for p in net.parameters())),
        "config": config,
        "series": {
            "roles": list(config["roles"]),
            "reference": config["reference_role"],
            "alignment": "every other series resampled onto the reference series' grid by its DICOM geometry "
            "(patient coordinates, trilinear); no registration: the series must share a frame of reference, and "
            "motion between phases is not corrected",
            "missing_series": "refused: the case and the missing phase are named",
        },
        "training_data": f"{Path(data).resolve().name}: {len(train_cases)} lesions of "
        f"{len({c.patient for c in train_cases})} patients",
        "calibration_data": f"{len(cal_cases)} lesions of {len(cal_patients)} other patients",
        "validation_data": f"{len(val_cases)} lesions of {len(val_patients)} other patients, held out "
        f"({int(truth.sum())} crlm, {int((1 - truth).sum())} hemangioma)",
        "training": {
            "epochs": epochs,
            "batch": batch,
            "lr": lr,
            "optimizer": "AdamW + one-cycle",
            "augmentation": "FOV scale 0.85-1.2, centre jitter ~1 px, flips, 90-degree rotations (all channels alike)",
            "final_loss": final_loss,
            "seconds": round(time.perf_counter() - t0, 1),
            "threads": threads,
        },
        "calibration": cal_note,
        "seed": seed,
        "validation_metrics": metrics,
        "intended_use": "demo and tests on synthetic phantoms; NOT for real CT",
        "limitations": "trained, calibrated and validated on synthetic phantoms only. Phantom phases differ by set HU "
        "offsets per tissue and lesion class and share one frame of reference without motion: the held-out figures say "
        "nothing about real multi-phase CT",
    }
    return save_with_card(Path(out_dir) / FILENAME, net, config, NAME, VERSION, card)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.pipeline.train_multiseries_classifier",
        description=(__doc__ or "").splitlines()[0],
    )
    parser.add_argument("--data", type=Path, required=True, help="folder with manifest.csv (extra_series), series/")
    parser.add_argument("--out", type=Path, required=True, help=f"folder for {FILENAME} and its model card")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--val-fraction", type=float, default=0.25, help="held-out patients (validation)")
    parser.add_argument("--cal-fraction", type=float, default=0.2, help="patients for Platt scaling (0: none)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--roles", default=",".join(MULTISERIES_CONFIG["roles"]), help="input series, comma-separated")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    card = train(
        args.data, args.out, epochs=args.epochs, val_fraction=args.val_fraction, cal_fraction=args.cal_fraction,
        seed=args.seed, roles=[r for r in args.roles.split(",") if r], threads=args.threads,
        progress=not args.no_progress,
    )  # fmt: skip
    print(
        json.dumps({k: card[k] for k in ("name", "params", "validation_metrics", "sha256", "weights_bytes")}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
