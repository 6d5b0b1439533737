"""Train the CRLM-vs-hemangioma crop classifier on labelled cases.

    python -m inference.pipeline.train_classifier OUT.pt --data DIR [--epochs 30] [--val-fraction 0.25] [--seed 7]

``DIR`` has the layout of :func:`fixtures.phantom.generate_demo_study`: ``manifest.csv`` (patient_id, case_id,
series_path, lesion_x/y/z_mm, diameter_mm, truth = crlm|hemangioma) and the series folders; when
``masks/<patient>.npz`` exists (phantoms), lesion ``n`` of case ``<patient>-L<n>`` gives the exact slice range,
otherwise the manifest centre and diameter are used (as at inference time without a matched lesion).

For the demo, train on phantoms generated with a seed other than the demo study's 20261123, e.g.::

    python -m fixtures.phantom /tmp/cls-train --seed 11 --patients 40 --lesions 120
    python -m inference.pipeline.train_classifier fixtures/models/lesion_classifier.pt --data /tmp/cls-train

Patients are split into training and validation sets (no patient in both). Validation AUC is computed per
lesion on the aggregated probability, with the clustered DeLong CI of :func:`readerstudy.analysis.model_auc`.
Writes ``OUT.pt`` and the model card ``OUT.json``.
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
from inference.pipeline.classify import DEMO_CONFIG, build_classifier, extract_crops
from inference.pipeline.model_card import save_with_card

NAME = "lesion-classifier-demo"
VERSION = "1.0"
POSITIVE = "crlm"
LABELS = {"crlm": 1, "hemangioma": 0}


@dataclass
class Case:
    patient: str
    case_id: str
    truth: int
    hu: np.ndarray
    spacing: tuple[float, float, float]
    centre_index: np.ndarray
    diameter_mm: float
    z_range: tuple[int, int] | None


def load_cases(data: Path, progress: bool = True) -> list[Case]:
    """Read the manifest, the series (once per series) and the optional masks."""
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
    cases: list[Case] = []
    volumes: dict[str, Any] = {}
    masks: dict[str, Any] = {}
    for line, row in enumerate(tqdm(rows, desc="cases", disable=not progress), start=2):
        truth = row["truth"].strip().lower()
        if truth not in LABELS:
            raise ValueError(f"{manifest}:{line}: truth {row['truth']!r}, expected one of {sorted(LABELS)}")
        sp = row["series_path"]
        if sp not in volumes:
            volumes[sp] = read_series(data / sp)
        vol = volumes[sp]
        centre = vol.lps_to_index([float(row["lesion_x_mm"]), float(row["lesion_y_mm"]), float(row["lesion_z_mm"])])
        z_range = None
        pid = row["patient_id"]
        mask_file = data / "masks" / f"{pid}.npz"
        if mask_file.is_file() and "-L" in row["case_id"]:
            if pid not in masks:
                masks[pid] = np.load(mask_file)["lesion_labels"]
            n = int(row["case_id"].rsplit("-L", 1)[1])
            idx = np.argwhere(masks[pid] == n)
            if idx.size:
                centre = idx.mean(axis=0)
                z_range = (int(idx[:, 0].min()), int(idx[:, 0].max()))
        cases.append(
            Case(
                pid,
                row["case_id"],
                LABELS[truth],
                vol.hu,
                vol.spacing_mm,
                np.asarray(centre),
                float(row["diameter_mm"]),
                z_range,
            )
        )
    return cases


def split_patients(patients: Sequence[str], val_fraction: float, seed: int) -> set[str]:
    """The validation patients: a seeded random ``val_fraction`` of the distinct patients."""
    uniq = sorted(set(patients))
    rng = np.random.default_rng(seed)
    n_val = max(1, round(val_fraction * len(uniq)))
    return set(rng.permutation(uniq)[:n_val].tolist())


def _augmented(case: Case, config: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    crops = extract_crops(
        case.hu,
        case.spacing,
        case.centre_index,
        case.diameter_mm,
        config,
        z_range=case.z_range,
        fov_scale=float(rng.uniform(0.85, 1.2)),
        shift_px=(float(rng.normal(0, 1.0)), float(rng.normal(0, 1.0))),
    )
    if rng.random() < 0.5:
        crops = crops[..., ::-1]
    crops = np.rot90(crops, int(rng.integers(4)), axes=(2, 3))
    return np.ascontiguousarray(crops)


def train(
    out: Path,
    data: Path,
    *,
    epochs: int = 30,
    val_fraction: float = 0.25,
    seed: int = 7,
    batch: int = 32,
    lr: float = 3e-3,
    threads: int = 2,
    config: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, validate, save ``out`` and its model card; return the card."""
    import torch
    from tqdm import tqdm

    from readerstudy.analysis.errors import AnalysisInputError
    from readerstudy.analysis.standalone import model_auc

    config = dict(config or DEMO_CONFIG)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng([seed, 1])
    t0 = time.perf_counter()
    cases = load_cases(data, progress)
    val_patients = split_patients([c.patient for c in cases], val_fraction, seed)
    train_cases = [c for c in cases if c.patient not in val_patients]
    val_cases = [c for c in cases if c.patient in val_patients]
    if not train_cases or len({c.truth for c in val_cases}) < 2:
        raise ValueError("need training cases and both classes among the validation cases; add data or change --seed")
    net = build_classifier(config)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = max(1, int(np.ceil(len(train_cases) * int(config["n_slices"]) / batch)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses: list[float] = []
    bar = tqdm(range(epochs), desc="train classifier", disable=not progress)
    for _ in bar:
        net.train()
        xs, ys = [], []
        for c in train_cases:
            crops = _augmented(c, config, rng)
            xs.append(crops)
            ys.extend([c.truth] * len(crops))
        x_all = torch.from_numpy(np.concatenate(xs))
        y_all = torch.tensor(ys, dtype=torch.float32)
        order = torch.from_numpy(rng.permutation(len(y_all)))
        for s in range(steps_per_epoch):
            idx = order[s * batch : (s + 1) * batch]
            if idx.numel() == 0:
                continue
            opt.zero_grad()
            loss = loss_fn(net(x_all[idx])[:, 0], y_all[idx])
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-steps_per_epoch:]):.3f}")
    net.eval()
    probs = []
    with torch.inference_mode():
        for c in val_cases:
            crops = extract_crops(c.hu, c.spacing, c.centre_index, c.diameter_mm, config, z_range=c.z_range)
            logit = float(net(torch.from_numpy(crops))[:, 0].mean())
            probs.append(1.0 / (1.0 + np.exp(-logit)))
    truth = np.array([c.truth for c in val_cases])
    try:
        auc = model_auc(truth, np.array(probs), clusters=np.array([c.patient for c in val_cases]))
    except AnalysisInputError:  # too few patients per class for the clustered variance: plain DeLong
        auc = model_auc(truth, np.array(probs))
    acc = float(np.mean((np.array(probs) >= 0.5) == truth))
    card = {
        "task": "probability that a liver lesion is a colorectal liver metastasis (vs hemangioma); demo on phantoms",
        "architecture": f"MONAI DenseNet 2D (init_features {config.get('init_features')}, growth_rate "
        f"{config.get('growth_rate')}, block_config {config.get('block_config')}), 1 input channel, 1 logit; "
        f"{config['n_slices']} axial crops {config['crop_px']}x{config['crop_px']} px per lesion, mean logit"
        if config["arch"] == "densenet"
        else f"MONAI ResNet 2D bottleneck layers {config.get('layers')}, conv1_t_stride 2",
        "params": int(sum(p.numel() for p in net.parameters())),
        "config": config,
        "training_data": f"{Path(data).resolve().name}: {len(train_cases)} lesions of "
        f"{len({c.patient for c in train_cases})} patients",
        "validation_data": f"{len(val_cases)} lesions of {len(val_patients)} other patients "
        f"({int(truth.sum())} crlm, {int((1 - truth).sum())} hemangioma)",
        "training": {
            "epochs": epochs,
            "batch": batch,
            "lr": lr,
            "optimizer": "AdamW + one-cycle",
            "augmentation": "FOV scale 0.85-1.2, centre jitter ~1 px, flips, 90-degree rotations",
            "final_loss": float(np.mean(losses[-steps_per_epoch:])),
            "seconds": round(time.perf_counter() - t0, 1),
        },
        "seed": seed,
        "validation_metrics": {
            "auc": auc["auc"],
            "auc_ci_95": auc["ci"],
            "auc_se": auc["se"],
            "auc_method": auc.get("method"),
            "accuracy_at_0.5": acc,
        },
        "intended_use": "demo and tests on synthetic phantoms; NOT for real CT",
    }
    return save_with_card(Path(out), net, config, NAME, VERSION, card)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.pipeline.train_classifier", description=__doc__.splitlines()[0]
    )
    parser.add_argument("out", type=Path, help="weights file to write (.pt); the model card goes beside it (.json)")
    parser.add_argument("--data", type=Path, required=True, help="folder with manifest.csv, series/ (and masks/)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    card = train(
        args.out, args.data, epochs=args.epochs, val_fraction=args.val_fraction, seed=args.seed, threads=args.threads
    )
    print(
        json.dumps({k: card[k] for k in ("name", "params", "validation_metrics", "sha256", "weights_bytes")}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
