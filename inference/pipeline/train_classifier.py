"""Train the CRLM-vs-hemangioma crop classifier on labelled cases.

    python -m inference.pipeline.train_classifier OUT.pt --data DIR [--epochs 30] [--val-fraction 0.25]
        [--cal-fraction 0.2] [--seed 7]

``DIR`` has the layout of :func:`fixtures.phantom.generate_demo_study`: ``manifest.csv`` (patient_id, case_id,
series_path, lesion_x/y/z_mm, diameter_mm, truth = crlm|hemangioma) and the series folders; when
``masks/<patient>.npz`` exists (phantoms), lesion ``n`` of case ``<patient>-L<n>`` gives the exact slice range,
otherwise the manifest centre and diameter are used (as at inference time without a matched lesion).

For the demo, train on phantoms generated with a seed other than the demo study's 20261123, with atypical
lesions so that the classes overlap (without them any classifier reaches AUC 1.0), e.g.::

    python -m fixtures.phantom /tmp/cls-train --seed 11 --patients 120 --lesions 360 --atypical-fraction 0.2
    python -m inference.pipeline.train_classifier fixtures/models/lesion_classifier.pt --data /tmp/cls-train

Patients are split three ways (no patient in two): held-out validation (``--val-fraction``, the same patients
as :func:`split_patients` gives the other backends' training commands), calibration (``--cal-fraction`` of the
rest) and training. The network is trained on the training patients; Platt scaling of its mean logit
(:func:`inference.pipeline.calibration.fit_platt`) is fitted on the calibration patients and stored in the
model's config (the classifier applies it); the held-out patients give the card's figures: the AUC per lesion
with the clustered DeLong CI of :func:`readerstudy.analysis.model_auc`, overall, by size stratum and by
appearance (when the masks record it), and the calibration (Brier score, calibration slope and intercept, ECE)
of the probabilities before and after scaling. Writes ``OUT.pt`` and the model card ``OUT.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imaging.series import read_series
from inference.pipeline.calibration import apply_platt, calibration_metrics, fit_calibration
from inference.pipeline.classify import DEMO_CONFIG, build_classifier, extract_crops
from inference.pipeline.model_card import save_with_card

NAME = "lesion-classifier-demo"
VERSION = "1.0"
POSITIVE = "crlm"
LABELS = {"crlm": 1, "hemangioma": 0}
BINS_MM = (10.0, 30.0)
# The codes of the phantom masks' ``lesion_appearances`` (fixtures.phantom.APPEARANCES; not imported: the
# pipeline never loads the test fixtures, and a test checks the two agree).
APPEARANCES = ("typical", "mimic", "indeterminate")
# The model cards' limitations of a classifier trained on the phantoms (this one, radiomics, slice-topk).
PHANTOM_LIMITATIONS = (
    "trained, calibrated and validated on synthetic phantoms only: the figures say nothing about real CT. The "
    "phantoms' classes overlap only as much as their atypical fraction makes them (see the data command); with "
    "typical lesions only, any classifier separates them perfectly."
)


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
    appearance: str | None = None  # the phantom's look (fixtures.phantom APPEARANCES) when its masks record it


def read_masks(mask_file: Path) -> tuple[np.ndarray, list[str] | None]:
    """A phantom's ``masks/<patient>.npz``: the lesion labels and each lesion's appearance (None when the file
    does not record them)."""
    with np.load(mask_file) as npz:
        labels = npz["lesion_labels"]
        codes = npz["lesion_appearances"] if "lesion_appearances" in npz.files else None
    return labels, None if codes is None else [APPEARANCES[int(c)] for c in codes]


def lesion_appearance(looks: list[str] | None, n: int) -> str | None:
    """The appearance of lesion ``n`` (1-based label) of :func:`read_masks`' list, if recorded."""
    return looks[n - 1] if looks is not None and 1 <= n <= len(looks) else None


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
    looks: dict[str, list[str] | None] = {}
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
        appearance = None
        pid = row["patient_id"]
        mask_file = data / "masks" / f"{pid}.npz"
        if mask_file.is_file() and "-L" in row["case_id"]:
            if pid not in masks:
                masks[pid], looks[pid] = read_masks(mask_file)
            n = int(row["case_id"].rsplit("-L", 1)[1])
            idx = np.argwhere(masks[pid] == n)
            if idx.size:
                centre = idx.mean(axis=0)
                z_range = (int(idx[:, 0].min()), int(idx[:, 0].max()))
            appearance = lesion_appearance(looks[pid], n)
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
                appearance,
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


def split_patients_three(
    patients: Sequence[str], val_fraction: float, cal_fraction: float, seed: int
) -> tuple[set[str], set[str]]:
    """``(held-out validation patients, calibration patients)``: the validation set is :func:`split_patients`'
    (the other backends' training commands hold out the same patients); the calibration set is a seeded
    ``cal_fraction`` of all patients drawn from the rest (none when ``cal_fraction`` is 0)."""
    val = split_patients(patients, val_fraction, seed)
    rest = sorted(set(patients) - val)
    n_cal = min(round(cal_fraction * len(set(patients))), max(len(rest) - 1, 0))
    cal = set(np.random.default_rng([seed, 2]).permutation(rest)[:n_cal].tolist()) if n_cal > 0 else set()
    return val, cal


def _mean_logits(net: Any, cases: Sequence[Case], config: dict[str, Any]) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for c in cases:
            crops = extract_crops(c.hu, c.spacing, c.centre_index, c.diameter_mm, config, z_range=c.z_range)
            out.append(float(net(torch.from_numpy(crops))[:, 0].mean()))
    return np.array(out)


def _auc(truth: np.ndarray, prob: np.ndarray, patients: np.ndarray) -> dict[str, Any]:
    """Clustered DeLong AUC, plain DeLong when the clusters are too few, or the reason there is none."""
    from readerstudy.analysis.errors import AnalysisInputError
    from readerstudy.analysis.standalone import model_auc

    n = {"n": int(truth.size), "n_positive": int(truth.sum())}
    try:
        return {**n, **model_auc(truth, prob, clusters=patients)}
    except AnalysisInputError:
        try:  # too few patients per class for the clustered variance
            return {**n, **model_auc(truth, prob)}
        except AnalysisInputError as exc:
            return {**n, "error": str(exc)}


def held_out_metrics(
    cases: Sequence[Any], raw_logits: np.ndarray, calibration: dict[str, Any] | None
) -> dict[str, Any]:
    """The card's held-out figures: AUC (overall, by size stratum, by appearance), accuracy, calibration after and
    before Platt scaling; every classifier's training command reports these. ``cases`` have ``truth``,
    ``patient``, ``diameter_mm`` and, optionally, ``appearance``; ``raw_logits`` are the model's unscaled lesion
    logits."""
    from readerstudy.analysis.strata import size_stratum, stratum_labels

    truth = np.array([c.truth for c in cases])
    patients = np.array([c.patient for c in cases])
    prob = apply_platt(raw_logits, calibration)
    overall = _auc(truth, prob, patients)
    strata = np.array([size_stratum(c.diameter_mm, BINS_MM) for c in cases])
    by_stratum = {
        label: _auc(truth[strata == label], prob[strata == label], patients[strata == label])
        for label in stratum_labels(BINS_MM)
    }
    looks = np.array([getattr(c, "appearance", None) or "unknown" for c in cases])
    by_look: dict[str, dict[str, Any]] = {}
    for look in sorted(set(looks.tolist())):
        sel = looks == look
        by_look[look] = {"n": int(sel.sum()), "n_positive": int(truth[sel].sum())}
        for name, cls in (("crlm", 1), ("hemangioma", 0)):
            pick = sel & (truth == cls)
            by_look[look][f"mean_prob_{name}"] = float(prob[pick].mean()) if pick.any() else None
    if "typical" in by_look:
        sel = looks == "typical"
        by_look["typical"]["auc"] = _auc(truth[sel], prob[sel], patients[sel]).get("auc")
    return {
        "auc": overall.get("auc"),
        "auc_ci_95": overall.get("ci"),
        "auc_se": overall.get("se"),
        "auc_method": overall.get("method"),
        "n_lesions": int(truth.size),
        "n_patients": len(set(patients.tolist())),
        "accuracy_at_0.5": float(np.mean((prob >= 0.5) == truth)),
        "auc_by_stratum": {
            k: {key: v.get(key) for key in ("n", "n_positive", "auc", "ci", "se", "method", "error") if key in v}
            for k, v in by_stratum.items()
        },
        "by_appearance": by_look,
        "calibration": calibration_metrics(truth, prob),
        "calibration_before_scaling": {
            k: v for k, v in calibration_metrics(truth, apply_platt(raw_logits, None)).items() if k != "ece_bins"
        },
    }


def fit_crops(
    net: Any,
    train_cases: Sequence[Any],
    augment: Callable[[Any], np.ndarray],
    rng: np.random.Generator,
    *,
    n_slices: int,
    epochs: int,
    batch: int,
    lr: float,
    desc: str,
    progress: bool,
    min_batch: int = 1,
) -> float | None:
    """Train ``net`` (one logit per crop) with BCE, AdamW and a one-cycle schedule on every case's augmented crops,
    reshuffled each epoch; the crop classifiers' shared loop. Batches under ``min_batch`` crops are skipped (batch
    norm needs two). Returns the last epoch's mean loss (None if no batch ran)."""
    import torch
    from tqdm import tqdm

    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = max(1, int(np.ceil(len(train_cases) * n_slices / batch)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses: list[float] = []
    bar = tqdm(range(epochs), desc=desc, disable=not progress)
    for _ in bar:
        net.train()
        xs, ys = [], []
        for c in train_cases:
            crops = augment(c)
            xs.append(crops)
            ys.extend([c.truth] * len(crops))
        x_all = torch.from_numpy(np.concatenate(xs))
        y_all = torch.tensor(ys, dtype=torch.float32)
        order = torch.from_numpy(rng.permutation(len(y_all)))
        for s in range(steps_per_epoch):
            idx = order[s * batch : (s + 1) * batch]
            if idx.numel() < min_batch:
                continue
            opt.zero_grad()
            loss = loss_fn(net(x_all[idx])[:, 0], y_all[idx])
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        if losses:
            bar.set_postfix(loss=f"{np.mean(losses[-steps_per_epoch:]):.3f}")
    return float(np.mean(losses[-steps_per_epoch:])) if losses else None


def train(
    out: Path,
    data: Path,
    *,
    epochs: int = 30,
    val_fraction: float = 0.25,
    cal_fraction: float = 0.2,
    seed: int = 7,
    batch: int = 32,
    lr: float = 3e-3,
    threads: int = 2,
    config: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, calibrate, validate, save ``out`` and its model card; return the card."""
    import torch

    config = dict(config or DEMO_CONFIG)
    config.pop("calibration", None)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng([seed, 1])
    t0 = time.perf_counter()
    cases = load_cases(data, progress)
    val_patients, cal_patients = split_patients_three([c.patient for c in cases], val_fraction, cal_fraction, seed)
    train_cases = [c for c in cases if c.patient not in val_patients | cal_patients]
    cal_cases = [c for c in cases if c.patient in cal_patients]
    val_cases = [c for c in cases if c.patient in val_patients]
    if not train_cases or len({c.truth for c in val_cases}) < 2:
        raise ValueError("need training cases and both classes among the validation cases; add data or change --seed")
    net = build_classifier(config)
    final_loss = fit_crops(
        net, train_cases, lambda c: _augmented(c, config, rng), rng,
        n_slices=int(config["n_slices"]), epochs=epochs, batch=batch, lr=lr, desc="train classifier",
        progress=progress,
    )  # fmt: skip
    net.eval()
    calibration, cal_note = fit_calibration(
        _mean_logits(net, cal_cases, config), [c.truth for c in cal_cases], len(cal_patients), "mean logit"
    )
    if calibration:
        config["calibration"] = calibration
    metrics = held_out_metrics(val_cases, _mean_logits(net, val_cases, config), calibration)
    truth = np.array([c.truth for c in val_cases])
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
        "calibration_data": f"{len(cal_cases)} lesions of {len(cal_patients)} other patients",
        "validation_data": f"{len(val_cases)} lesions of {len(val_patients)} other patients, held out "
        f"({int(truth.sum())} crlm, {int((1 - truth).sum())} hemangioma)",
        "training": {
            "epochs": epochs,
            "batch": batch,
            "lr": lr,
            "optimizer": "AdamW + one-cycle",
            "augmentation": "FOV scale 0.85-1.2, centre jitter ~1 px, flips, 90-degree rotations",
            "final_loss": final_loss,
            "seconds": round(time.perf_counter() - t0, 1),
        },
        "calibration": cal_note,
        "seed": seed,
        "validation_metrics": metrics,
        "intended_use": "demo and tests on synthetic phantoms; NOT for real CT",
        "limitations": PHANTOM_LIMITATIONS,
    }
    return save_with_card(Path(out), net, config, NAME, VERSION, card)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.pipeline.train_classifier", description=__doc__.splitlines()[0]
    )
    parser.add_argument("out", type=Path, help="weights file to write (.pt); the model card goes beside it (.json)")
    parser.add_argument("--data", type=Path, required=True, help="folder with manifest.csv, series/ (and masks/)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--val-fraction", type=float, default=0.25, help="held-out patients (validation)")
    parser.add_argument("--cal-fraction", type=float, default=0.2, help="patients for Platt scaling (0: none)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    card = train(
        args.out,
        args.data,
        epochs=args.epochs,
        val_fraction=args.val_fraction,
        cal_fraction=args.cal_fraction,
        seed=args.seed,
        threads=args.threads,
    )
    print(
        json.dumps({k: card[k] for k in ("name", "params", "validation_metrics", "sha256", "weights_bytes")}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
