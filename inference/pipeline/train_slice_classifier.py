"""Train the slice-level CRLM classifier (:mod:`inference.pipeline.slice_classifier`) on labelled lesions.

    python -m inference.pipeline.train_slice_classifier --data DIR --out DIR [--epochs 20] [--val-fraction 0.25]
        [--cal-fraction 0.2] [--seed 7] [--top-k 3] [--threads 1]

``DIR``: the layout of :func:`fixtures.phantom.generate_demo_study` (the lesion masks in ``masks/`` give each
lesion's slices; without them the manifest centre and diameter do). For the demo, phantoms of another seed than
the demo study's 20261123::

    python -m fixtures.phantom /tmp/cls-train --seed 11 --patients 120 --lesions 360 --atypical-fraction 0.2
    python -m inference.pipeline.train_slice_classifier --data /tmp/cls-train --out fixtures/models

Every axial slice through a training lesion is one sample labelled with the lesion's truth; each sample weighs
``1 / (the lesion's slice count)`` so that every lesion counts once, whatever its size. Augmentation: field of
view scale 0.85-1.2, centre jitter ~1 px, flips, 90-degree rotations.

Patients are split three ways (no patient in two; :func:`~inference.pipeline.train_classifier.split_patients_three`):
held-out validation (``--val-fraction``, the same patients as every classifier's training command holds out),
calibration (``--cal-fraction`` of all patients, from the rest) and training. Platt scaling of the logit of the
aggregated (top-k mean) lesion score is fitted on the calibration patients and stored in the model's config (see
:mod:`inference.pipeline.slice_classifier`). The held-out figures are per lesion
(:func:`~inference.pipeline.train_classifier.held_out_metrics`: AUC with the clustered DeLong CI of
:func:`readerstudy.analysis.model_auc`, overall, by size stratum and by appearance; the calibration after and
before scaling); the slice-level AUC is reported too. Writes ``OUT/slice_classifier.pt`` and its model card
``OUT/slice_classifier.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.pipeline.calibration import fit_calibration
from inference.pipeline.classify import build_classifier, extract_crops
from inference.pipeline.model_card import save_with_card
from inference.pipeline.slice_classifier import SLICE_CONFIG, lesion_slices, sigmoid, top_k_logit
from inference.pipeline.train_classifier import (
    PHANTOM_LIMITATIONS,
    Case,
    held_out_metrics,
    load_cases,
    split_patients_three,
)

NAME = "slice-classifier-demo"
VERSION = "1.0"
FILENAME = "slice_classifier.pt"


def _slices(case: Case) -> list[int]:
    return lesion_slices(
        float(case.centre_index[0]), case.z_range, case.diameter_mm, float(case.spacing[0]), case.hu.shape[0]
    )


def _crops(case: Case, config: dict[str, Any], rng: np.random.Generator | None = None) -> np.ndarray:
    if rng is None:
        return extract_crops(case.hu, case.spacing, case.centre_index, case.diameter_mm, config, slices=_slices(case))
    crops = extract_crops(
        case.hu, case.spacing, case.centre_index, case.diameter_mm, config, slices=_slices(case),
        fov_scale=float(rng.uniform(0.85, 1.2)), shift_px=(float(rng.normal(0, 1.0)), float(rng.normal(0, 1.0))),
    )  # fmt: skip
    if rng.random() < 0.5:
        crops = crops[..., ::-1]
    return np.ascontiguousarray(np.rot90(crops, int(rng.integers(4)), axes=(2, 3)))


def _slice_logits(net: Any, cases: list[Case], config: dict[str, Any]) -> list[np.ndarray]:
    import torch

    net.eval()
    with torch.inference_mode():
        return [net(torch.from_numpy(_crops(c, config)))[:, 0].float().numpy() for c in cases]


def _lesion_logits(slice_logits: list[np.ndarray], config: dict[str, Any]) -> np.ndarray:
    """Each lesion's raw score: the logit of its top-k mean slice probability."""
    return np.array([top_k_logit(x, int(config["top_k"])) for x in slice_logits])


def _validate(
    net: Any, cases: list[Case], config: dict[str, Any], calibration: dict[str, Any] | None
) -> dict[str, Any]:
    """:func:`held_out_metrics` per lesion, and the slice-level AUC (every slice labelled with its lesion)."""
    from readerstudy.analysis.standalone import model_auc

    slice_logits = _slice_logits(net, cases, config)
    slice_truth = np.concatenate([[c.truth] * len(x) for c, x in zip(cases, slice_logits, strict=True)])
    slice_probs = sigmoid(np.concatenate(slice_logits))
    return {
        **held_out_metrics(cases, _lesion_logits(slice_logits, config), calibration),
        "slice_auc": model_auc(slice_truth, slice_probs)["auc"],
        "slices": len(slice_truth),
    }


def train(
    data: Path,
    out_dir: Path,
    *,
    epochs: int = 20,
    val_fraction: float = 0.25,
    cal_fraction: float = 0.2,
    seed: int = 7,
    top_k: int = 3,
    batch: int = 32,
    lr: float = 3e-3,
    threads: int = 1,
    config: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, calibrate, validate, save ``OUT/slice_classifier.pt`` and its model card; return the card."""
    import torch
    from tqdm import tqdm

    config = {**(config or SLICE_CONFIG), "top_k": int(top_k)}
    config.pop("calibration", None)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng([seed, 2])
    t0 = time.perf_counter()
    cases = load_cases(data, progress)
    val_patients, cal_patients = split_patients_three([c.patient for c in cases], val_fraction, cal_fraction, seed)
    train_cases = [c for c in cases if c.patient not in val_patients | cal_patients]
    cal_cases = [c for c in cases if c.patient in cal_patients]
    val_cases = [c for c in cases if c.patient in val_patients]
    if not train_cases or len({c.truth for c in val_cases}) < 2:
        raise ValueError("need training cases and both classes among the validation cases; add data or change --seed")
    net = build_classifier(config)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    n_slices = sum(len(_slices(c)) for c in train_cases)
    steps_per_epoch = max(1, int(np.ceil(n_slices / batch)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15)
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
    losses: list[float] = []
    for _ in tqdm(range(epochs), desc="train slice classifier", disable=not progress):
        net.train()
        xs, ys, ws = [], [], []
        for c in train_cases:
            crops = _crops(c, config, rng)
            xs.append(crops)
            ys.extend([c.truth] * len(crops))
            ws.extend([1.0 / len(crops)] * len(crops))  # every lesion counts once
        x_all = torch.from_numpy(np.concatenate(xs))
        y_all = torch.tensor(ys, dtype=torch.float32)
        w_all = torch.tensor(ws, dtype=torch.float32)
        order = torch.from_numpy(rng.permutation(len(y_all)))
        for s in range(steps_per_epoch):
            idx = order[s * batch : (s + 1) * batch]
            if idx.numel() == 0:
                continue
            opt.zero_grad()
            w = w_all[idx]
            loss = (loss_fn(net(x_all[idx])[:, 0], y_all[idx]) * w).sum() / w.sum()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
    calibration, cal_note = fit_calibration(
        _lesion_logits(_slice_logits(net, cal_cases, config), config),
        [c.truth for c in cal_cases],
        len(cal_patients),
        f"logit of the top-{config['top_k']} mean slice probability",
    )
    if calibration:
        config["calibration"] = calibration
    metrics = _validate(net, val_cases, config, calibration)
    truth = np.array([c.truth for c in val_cases])
    card = {
        "task": "probability that a liver lesion is a colorectal liver metastasis (vs hemangioma); demo on phantoms",
        "architecture": f"MONAI DenseNet 2D (init_features {config['init_features']}, growth_rate "
        f"{config['growth_rate']}, block_config {config['block_config']}), 1 input channel, 1 logit per axial "
        f"slice ({config['crop_px']}x{config['crop_px']} px crop around the lesion centre, every slice of the "
        f"lesion); lesion probability = mean of the top-{config['top_k']} slice probabilities (Platt-scaled on its "
        "logit when calibrated)",
        "params": int(sum(p.numel() for p in net.parameters())),
        "config": config,
        "aggregation": f"mean of the top-{config['top_k']} slice probabilities (all slices when fewer)",
        "training_data": f"{Path(data).resolve().name}: {len(train_cases)} lesions ({n_slices} slices) of "
        f"{len({c.patient for c in train_cases})} patients",
        "calibration_data": f"{len(cal_cases)} lesions of {len(cal_patients)} other patients",
        "validation_data": f"{len(val_cases)} lesions of {len(val_patients)} other patients, held out "
        f"({int(truth.sum())} crlm, {int((1 - truth).sum())} hemangioma)",
        "training": {
            "epochs": epochs,
            "batch": batch,
            "lr": lr,
            "optimizer": "AdamW + one-cycle",
            "loss": "BCE per slice, weight 1/(slices of its lesion)",
            "augmentation": "FOV scale 0.85-1.2, centre jitter ~1 px, flips, 90-degree rotations",
            "final_loss": float(np.mean(losses[-steps_per_epoch:])) if losses else None,
            "seconds": round(time.perf_counter() - t0, 1),
            "threads": threads,
        },
        "calibration": cal_note,
        "seed": seed,
        "validation_metrics": metrics,
        "intended_use": "demo and tests on synthetic phantoms; NOT for real CT",
        "limitations": PHANTOM_LIMITATIONS,
    }
    return save_with_card(Path(out_dir) / FILENAME, net, config, NAME, VERSION, card)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.pipeline.train_slice_classifier", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="folder with manifest.csv, series/ (and masks/)")
    parser.add_argument("--out", type=Path, required=True, help=f"folder for {FILENAME} and its model card")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--val-fraction", type=float, default=0.25, help="held-out patients (validation)")
    parser.add_argument("--cal-fraction", type=float, default=0.2, help="patients for Platt scaling (0: none)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    card = train(
        args.data, args.out, epochs=args.epochs, val_fraction=args.val_fraction, cal_fraction=args.cal_fraction,
        seed=args.seed, top_k=args.top_k, threads=args.threads, progress=not args.no_progress,
    )  # fmt: skip
    print(
        json.dumps({k: card[k] for k in ("name", "params", "validation_metrics", "sha256", "weights_bytes")}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
