"""Train the demo segmentation UNet on synthetic phantoms (CPU, a few minutes).

    python -m inference.pipeline.train_unet OUT.pt [--patients 16] [--val-patients 4] [--steps 400] [--seed 7]

Phantoms come from :mod:`fixtures.phantom` with a seed different from the demo study's (20261123), so the
demo cases are never trained on. Training uses random 3D patches (two thirds centred on a lesion), DiceCE loss
and Adam; validation runs full-volume inference on held-out phantoms and reports Dice of the liver and of the
lesions and the share of lesions detected. Writes ``OUT.pt`` and the model card ``OUT.json``.

The result segments phantoms; it has never seen a real CT and must not be used on one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inference.pipeline.model_card import save_with_card
from inference.pipeline.segment import build_unet, file_sha256, largest_component, normalise_hu

if TYPE_CHECKING:
    from fixtures.phantom import Phantom

DEMO_SEED = 20261123
NAME = "phantom-unet"
VERSION = "1.0"
CONFIG: dict[str, Any] = {
    "channels": [8, 16, 32, 64],
    "strides": [2, 2, 2],
    "num_res_units": 1,
    "out_channels": 3,
    "spacing_mm": [2.5, 1.5, 1.5],
    "hu_window": [-160.0, 240.0],
    "roi_size": [64, 256, 256],
    "labels": {"0": "background", "1": "liver", "2": "lesion"},
}


def make_phantoms(seed: int, n: int, offset: int = 0) -> Iterator[Phantom]:
    """``n`` phantoms with 1-5 lesions of 5-40 mm, patient ``p`` drawn from ``default_rng([seed, offset + p])``."""
    if seed == DEMO_SEED:
        raise ValueError(f"seed {seed} is the demo study's: train on other phantoms")
    # The phantom generator is this training script's data set, not a dependency of the pipeline: imported here
    # so that importing inference.pipeline (segment, run, ...) never loads the test fixtures.
    from fixtures.phantom import make_anatomy, make_phantom, plan_lesions

    for p in range(n):
        rng = np.random.default_rng([seed, offset + p])
        anatomy = make_anatomy(rng)
        n_lesions = int(rng.integers(1, 6))
        for attempt in range(5):
            try:
                specs = plan_lesions(rng, max(1, n_lesions - attempt), anatomy)
                break
            except RuntimeError:
                continue
        else:
            specs = plan_lesions(rng, 1, anatomy, diameters_mm=[10.0])
        yield make_phantom(rng, specs, anatomy=anatomy)


def target_labels(ph: Phantom) -> np.ndarray:
    """0 background, 1 liver, 2 lesion (uint8)."""
    out = ph.liver_mask.astype(np.uint8)
    out[ph.lesion_labels > 0] = 2
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def _sample_patch(
    rng: np.random.Generator,
    x: np.ndarray,
    y: np.ndarray,
    patch: Sequence[int],
    lesion_idx: np.ndarray,
    liver_idx: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    r = rng.random()
    if r < 2 / 3 and lesion_idx.size:
        centre = lesion_idx[rng.integers(len(lesion_idx))]
    elif r < 0.9 and liver_idx.size:
        centre = liver_idx[rng.integers(len(liver_idx))]
    else:
        centre = np.array([rng.integers(s) for s in x.shape])
    sl = []
    for c, p, s in zip(centre, patch, x.shape, strict=True):
        start = int(np.clip(c - p // 2 + rng.integers(-p // 4, p // 4 + 1), 0, max(s - p, 0)))
        sl.append(slice(start, start + p))
    return x[tuple(sl)], y[tuple(sl)]


def evaluate(net: Any, phantoms: Sequence[Phantom], config: dict[str, Any]) -> dict[str, float]:
    """Mean liver Dice, mean lesion Dice (per phantom) and lesion detection rate on held-out phantoms."""
    import torch

    from inference.pipeline.segment import PhantomUNetBackend

    backend = PhantomUNetBackend.__new__(PhantomUNetBackend)  # reuse the inference path without a file
    backend.net, backend.config, backend.device = net, config, "cpu"
    liver_d, lesion_d, found, total = [], [], 0, 0
    net.eval()
    with torch.inference_mode():
        for ph in phantoms:
            prob = backend.predict_probabilities(ph.hu, ph.spacing_mm)
            lab = np.argmax(prob, axis=0)
            liver = largest_component(lab >= 1)
            lesion = (lab == 2) & liver
            liver_d.append(dice(liver, ph.liver_mask))
            lesion_d.append(dice(lesion, ph.lesion_labels > 0))
            for n in range(1, len(ph.lesions) + 1):
                total += 1
                found += bool((lesion & (ph.lesion_labels == n)).any())
    net.train()
    return {
        "dice_liver": float(np.mean(liver_d)),
        "dice_lesion": float(np.mean(lesion_d)),
        "lesion_detection_rate": found / max(total, 1),
        "n_phantoms": len(phantoms),
        "n_lesions": total,
    }


def train(
    out: Path,
    *,
    patients: int = 16,
    val_patients: int = 4,
    steps: int = 400,
    seed: int = 7,
    batch: int = 2,
    patch: Sequence[int] = (32, 96, 96),
    lr: float = 3e-3,
    threads: int = 2,
    progress: bool = True,
    init: Path | None = None,
) -> dict[str, Any]:
    """Train, validate, save ``out`` and ``out.with_suffix('.json')``; return the model card.

    ``init``: continue from an earlier weights file of the same configuration (its card's step count is added).
    """
    import torch
    from monai.losses import DiceCELoss
    from tqdm import tqdm

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng([seed, 999])
    t_start = time.perf_counter()
    train_ph = list(tqdm(make_phantoms(seed, patients), total=patients, desc="train phantoms", disable=not progress))
    val_ph = list(
        tqdm(
            make_phantoms(seed, val_patients, offset=10_000),
            total=val_patients,
            desc="val phantoms",
            disable=not progress,
        )
    )
    xs = [normalise_hu(ph.hu, CONFIG) for ph in train_ph]
    ys = [target_labels(ph) for ph in train_ph]
    lesion_idx = [np.argwhere(y == 2) for y in ys]
    liver_idx = [np.argwhere(y == 1)[::50] for y in ys]
    net = build_unet(CONFIG)
    previous_steps = 0
    if init is not None:
        payload = torch.load(init, map_location="cpu", weights_only=True)
        net.load_state_dict(payload["state_dict"])
        card_file = Path(init).with_suffix(".json")
        if card_file.is_file():
            previous_steps = int(json.loads(card_file.read_text())["training"]["steps"])
    init_sha = file_sha256(init) if init is not None else None
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False)
    net.train()
    bar = tqdm(range(steps), desc="train unet", disable=not progress)
    losses: list[float] = []
    for _ in bar:
        bx, by = [], []
        for _ in range(batch):
            i = int(rng.integers(len(xs)))
            px, py = _sample_patch(rng, xs[i], ys[i], patch, lesion_idx[i], liver_idx[i])
            bx.append(px)
            by.append(py)
        xb = torch.from_numpy(np.stack(bx))[:, None]
        yb = torch.from_numpy(np.stack(by).astype(np.int64))[:, None]
        opt.zero_grad()
        loss = loss_fn(net(xb), yb)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    metrics = evaluate(net, val_ph, CONFIG)
    n_params = sum(p.numel() for p in net.parameters())
    card = {
        "task": "liver and liver-lesion segmentation of synthetic portal-venous CT phantoms (demo only)",
        "architecture": f"MONAI UNet 3D, channels {CONFIG['channels']}, strides {CONFIG['strides']}, "
        f"{CONFIG['num_res_units']} residual unit(s), 3 classes (background, liver, lesion)",
        "params": n_params,
        "config": CONFIG,
        "training_data": f"{patients} synthetic phantoms from fixtures.phantom "
        f"(seed {seed}, patients 0..{patients - 1}), "
        f"1-5 lesions of 5-40 mm each; 40x256x256 at 2.5x1.5x1.5 mm",
        "validation_data": f"{val_patients} held-out phantoms "
        f"(seed {seed}, patients 10000..{10000 + val_patients - 1})",
        "training": {
            "steps": previous_steps + steps,
            "init_from_sha256": init_sha,
            "batch": batch,
            "patch": list(patch),
            "optimizer": "AdamW + one-cycle",
            "lr": lr,
            "loss": "DiceCE (softmax, no background in Dice)",
            "final_loss": float(np.mean(losses[-20:])),
            "seconds": round(time.perf_counter() - t_start, 1),
            "threads": threads,
        },
        "seed": seed,
        "validation_metrics": metrics,
        "intended_use": "demo and tests of the reader-study platform on synthetic phantoms; NOT for real CT",
    }
    return save_with_card(Path(out), net, CONFIG, NAME, VERSION, card)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.pipeline.train_unet", description=__doc__.splitlines()[0]
    )
    parser.add_argument("out", type=Path, help="weights file to write (.pt); the model card goes beside it (.json)")
    parser.add_argument("--patients", type=int, default=16, help="training phantoms")
    parser.add_argument("--val-patients", type=int, default=4, help="held-out phantoms")
    parser.add_argument("--steps", type=int, default=400, help="optimiser steps (the run's length)")
    parser.add_argument("--epochs", type=int, default=None, help="alternative to --steps: passes of `patients` patches")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle)")
    parser.add_argument("--init", type=Path, default=None, help="continue training from these weights")
    args = parser.parse_args(argv)
    steps = args.steps if args.epochs is None else max(1, math.ceil(args.epochs * args.patients / 2))
    card = train(
        args.out,
        patients=args.patients,
        val_patients=args.val_patients,
        steps=steps,
        seed=args.seed,
        threads=args.threads,
        init=args.init,
        lr=args.lr,
    )
    print(
        json.dumps({k: card[k] for k in ("name", "params", "validation_metrics", "sha256", "weights_bytes")}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
