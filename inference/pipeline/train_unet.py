"""Train the demo segmentation UNet on synthetic phantoms (CPU, a few minutes).

    python -m inference.pipeline.train_unet OUT.pt [--patients 24] [--val-patients 24] [--steps 400] [--seed 7]
        [--atypical-fraction 0.2] [--lesion-weight 20] [--patch 32,64,64] [--small-lesion-boost 0]
        [--small-share 0.35] [--max-lesions 5] [--vessel-fraction 0] [--tune-patients 0] [--max-fp 2] [--init W.pt]

Phantoms come from :mod:`fixtures.phantom` with a seed different from the demo study's (20261123), so the
demo cases are never trained on. Their lesion diameters follow the demo study's size mix (35 % of 5-10 mm, 50 %
of 10-30 mm, 15 % of 30-40 mm) and some lesions look atypical (``--atypical-fraction``), as in the demo.
Training uses random 3D patches (32 x 64 x 64 voxels), two thirds centred on a lesion *instance* drawn with weight
``1 / diameter`` (drawing a lesion voxel instead, as before, fed the network mostly large lesions), a Dice loss
plus a cross-entropy whose lesion class weighs ``--lesion-weight`` (the Dice term alone stops pulling once the
softmax saturates on "liver": the earlier model missed every lesion under ~17 mm), and AdamW. Inference runs in
windows of the patch size (``roi_size``): the instance norms then see the statistics they were trained on.
Training phantoms may be enriched in 5-10 mm lesions (``--small-share``, ``--max-lesions``) and patches centred on
intrahepatic vessels, the small lesions' look-alikes (``--vessel-fraction``). Weighting small lesions up moves the
argmax towards sensitivity; ``--tune-patients N`` then chooses a lesion probability threshold on N tuning phantoms
(neither trained nor validated on): the most lesions detected with at most ``--max-fp`` false-positive components
per phantom, stored in the weights' config and used by :class:`PhantomUNetBackend`. ``--steps 0 --init W`` only
tunes and validates W.
Validation runs the inference path (:class:`PhantomUNetBackend` and
the pipeline's lesion components, :func:`inference.pipeline.lesions.find_lesions`) on held-out phantoms and reports
Dice of the liver and of the lesions, the share of lesions detected per size stratum and the false-positive
components per phantom. Writes ``OUT.pt`` and the model card ``OUT.json``.

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
from inference.pipeline.segment import (
    build_unet,
    file_sha256,
    lesion_from_probabilities,
    liver_from_probabilities,
    normalise_hu,
)

if TYPE_CHECKING:
    from fixtures.phantom import Phantom

DEMO_SEED = 20261123
NAME = "phantom-unet"
VERSION = "1.0"
CONFIG: dict[str, Any] = {
    "channels": [8, 16, 32, 64],
    "strides": [[1, 2, 2], 2, 2],  # full slice resolution at the first level: lesions of 5-10 mm span 2-4 slices
    "num_res_units": 1,
    "out_channels": 3,
    "spacing_mm": [2.5, 1.5, 1.5],
    "hu_window": [-160.0, 240.0],
    # Inference windows of the training patch's size: the UNet's instance norms take their statistics over the
    # window, and a whole-volume window (mostly air and body wall) made small lesions vanish that patches showed.
    "roi_size": [32, 64, 64],
    "labels": {"0": "background", "1": "liver", "2": "lesion"},
}


#: The demo study's size mix (fixtures.phantom.plan_study): share of lesions per diameter range, mm.
SIZE_MIX: tuple[tuple[float, float, float], ...] = ((0.35, 5.0, 10.0), (0.5, 10.1, 30.0), (0.15, 30.1, 40.0))
BINS_MM = (10.0, 30.0)


def size_mix(small_share: float | None = None) -> tuple[tuple[float, float, float], ...]:
    """:data:`SIZE_MIX`, or with ``small_share`` of 5-10 mm lesions and the larger ones in their demo proportions
    (training phantoms enriched in the lesions the model misses; held-out phantoms keep the demo's mix)."""
    if small_share is None:
        return SIZE_MIX
    if not 0.0 < small_share < 1.0:
        raise ValueError(f"the share of 5-10 mm lesions must lie in (0, 1), not {small_share}")
    (_, lo0, hi0), *rest = SIZE_MIX
    rest_total = sum(w for w, _, _ in rest)
    return ((small_share, lo0, hi0), *((w * (1.0 - small_share) / rest_total, lo, hi) for w, lo, hi in rest))


def draw_diameters(
    rng: np.random.Generator, n: int, mix: tuple[tuple[float, float, float], ...] = SIZE_MIX
) -> list[float]:
    """``n`` diameters (0.1 mm steps) from ``mix`` (share, min, max mm), :data:`SIZE_MIX` by default."""
    shares = np.array([w for w, _, _ in mix])
    out = []
    for _ in range(n):
        _, lo, hi = mix[int(rng.choice(len(mix), p=shares / shares.sum()))]
        out.append(round(float(rng.uniform(lo, hi)), 1))
    return out


def make_phantoms(
    seed: int,
    n: int,
    offset: int = 0,
    atypical_fraction: float = 0.0,
    mix: tuple[tuple[float, float, float], ...] = SIZE_MIX,
    max_lesions: int = 5,
) -> Iterator[Phantom]:
    """``n`` phantoms with 1-``max_lesions`` lesions of ``mix`` (:data:`SIZE_MIX` by default), patient ``p`` drawn
    from ``default_rng([seed, offset + p])``; ``atypical_fraction`` as in :func:`fixtures.phantom.make_phantom`."""
    if seed == DEMO_SEED:
        raise ValueError(f"seed {seed} is the demo study's: train on other phantoms")
    # The phantom generator is this training script's data set, not a dependency of the pipeline: imported here
    # so that importing inference.pipeline (segment, run, ...) never loads the test fixtures.
    from fixtures.phantom import make_anatomy, make_phantom, plan_lesions

    for p in range(n):
        rng = np.random.default_rng([seed, offset + p])
        anatomy = make_anatomy(rng)
        n_lesions = int(rng.integers(1, max_lesions + 1))
        for attempt in range(5):
            try:
                diameters = draw_diameters(rng, max(1, n_lesions - attempt), mix)
                specs = plan_lesions(rng, len(diameters), anatomy, diameters_mm=diameters)
                break
            except RuntimeError:
                continue
        else:
            specs = plan_lesions(rng, 1, anatomy, diameters_mm=[10.0])
        yield make_phantom(
            rng,
            specs,
            anatomy=anatomy,
            atypical_fraction=atypical_fraction,
            appearance_seed=seed * 100_000 + offset + p,
        )


def target_labels(ph: Phantom) -> np.ndarray:
    """0 background, 1 liver, 2 lesion (uint8)."""
    out = ph.liver_mask.astype(np.uint8)
    out[ph.lesion_labels > 0] = 2
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def lesion_voxels(ph: Phantom) -> list[tuple[np.ndarray, float]]:
    """Per lesion instance: its voxel indices and its sampling weight ``1 / diameter`` (small lesions more often)."""
    return [
        (np.argwhere(ph.lesion_labels == n), 1.0 / float(spec.diameter_mm))
        for n, spec in enumerate(ph.lesions, start=1)
        if (ph.lesion_labels == n).any()
    ]


def vessel_voxels(ph: Phantom, every: int = 10) -> np.ndarray:
    """Every ``every``-th voxel index of the intrahepatic vessels (blood inside the liver): hard-negative centres."""
    from fixtures.phantom.geometry import Tissue

    return np.argwhere((ph.tissue == Tissue.BLOOD) & ph.liver_mask)[::every]


#: Most of the patches that may be centred on vessels (the liver's share after the lesions' 2/3).
MAX_VESSEL_FRACTION = 0.9 - 2 / 3


def _sample_patch(
    rng: np.random.Generator,
    x: np.ndarray,
    y: np.ndarray,
    patch: Sequence[int],
    lesions: Sequence[tuple[np.ndarray, float]],
    liver_idx: np.ndarray,
    *more: np.ndarray,
    vessel_idx: np.ndarray | None = None,
    vessel_fraction: float = 0.0,
) -> tuple[np.ndarray, ...]:
    """The patch of ``x``, ``y`` (and of each array in ``more``, e.g. voxel weights) at one sampled position:
    2/3 centred on a lesion instance, ``vessel_fraction`` on an intrahepatic vessel (``vessel_idx``), the rest of
    9/10 on the liver, the last 1/10 anywhere."""
    r = rng.random()
    if r < 2 / 3 and lesions:
        weights = np.array([w for _, w in lesions])
        idx = lesions[int(rng.choice(len(lesions), p=weights / weights.sum()))][0]
        centre = idx[rng.integers(len(idx))]
    elif r < 2 / 3 + vessel_fraction and vessel_idx is not None and vessel_idx.size:
        # Hard negatives: a bright 5-10 mm hemangioma looks like a portal-venous vessel's cross-section, which
        # only its shape over a few slices tells apart; lesion-centred patches show the vessels rarely.
        centre = vessel_idx[rng.integers(len(vessel_idx))]
    elif r < 0.9 and liver_idx.size:
        centre = liver_idx[rng.integers(len(liver_idx))]
    else:
        centre = np.array([rng.integers(s) for s in x.shape])
    sl = []
    for c, p, s in zip(centre, patch, x.shape, strict=True):
        start = int(np.clip(c - p // 2 + rng.integers(-p // 4, p // 4 + 1), 0, max(s - p, 0)))
        sl.append(slice(start, start + p))
    return tuple(a[tuple(sl)] for a in (x, y, *more))


#: Diameter (mm) from which a lesion's voxels weigh 1 in the loss when small lesions are boosted.
BOOST_FROM_MM = 20.0


def voxel_weights(ph: Phantom, boost: float) -> np.ndarray:
    """Per-voxel loss weights: ``(BOOST_FROM_MM / d) ** boost`` (at least 1) inside a lesion of diameter ``d``, 1
    elsewhere. A 6 mm lesion has 1/37 of a 20 mm one's voxels, so a voxel-wise loss hardly sees it: with ``boost``
    1.5 its voxels weigh 6x (10 mm: 2.8x). ``boost`` 0: all ones."""
    out = np.ones(ph.lesion_labels.shape, dtype=np.float32)
    if boost > 0:
        for n, spec in enumerate(ph.lesions, start=1):
            out[ph.lesion_labels == n] = max(1.0, (BOOST_FROM_MM / float(spec.diameter_mm)) ** boost)
    return out


def _affine(ph: Phantom) -> np.ndarray:
    """``(k, j, i, 1)`` -> LPS of a phantom's grid (what :func:`find_lesions` takes)."""
    sz, sy, sx = ph.spacing_mm
    aff = np.eye(4)
    aff[:3, :3] = [[0.0, 0.0, sx], [0.0, sy, 0.0], [sz, 0.0, 0.0]]
    aff[:3, 3] = ph.origin_mm
    return aff


def predict_phantoms(
    net: Any, phantoms: Sequence[Phantom], config: dict[str, Any], progress: bool = False, desc: str = "predict"
) -> list[np.ndarray]:
    """Each phantom's ``[3, z, y, x]`` class probabilities through the inference path (:class:`PhantomUNetBackend`)."""
    import torch
    from tqdm import tqdm

    from inference.pipeline.segment import PhantomUNetBackend

    backend = PhantomUNetBackend.__new__(PhantomUNetBackend)  # reuse the inference path without a file
    backend.net, backend.config, backend.device = net, config, "cpu"
    net.eval()
    with torch.inference_mode():
        probs = [
            backend.predict_probabilities(ph.hu, ph.spacing_mm)
            for ph in tqdm(phantoms, desc=desc, disable=not progress)
        ]
    net.train()
    return probs


def score(
    probs: Sequence[np.ndarray],
    phantoms: Sequence[Phantom],
    lesion_threshold: float | None,
    livers: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Held-out figures of the masks that ``probs`` give (:func:`inference.pipeline.segment.masks_from_probabilities`
    with ``lesion_threshold``; ``livers``: their liver masks, when already computed), then the pipeline's lesion
    components.

    A lesion is detected when a kept component (:func:`find_lesions`, which drops specks under its minimum volume)
    overlaps it; a component that overlaps no lesion is a false positive. Detection is reported per size stratum
    of the spec diameter (``<=10``, ``10-30``, ``>30`` mm) and per appearance.
    """
    from inference.pipeline.evaluate import per_lesion_metrics, summarise_by_stratum
    from inference.pipeline.lesions import find_lesions

    liver_d, lesion_d, rows, false_pos = [], [], [], 0
    by_look: dict[str, list[bool]] = {}
    for i, (prob, ph) in enumerate(zip(probs, phantoms, strict=True)):
        liver = livers[i] if livers is not None else liver_from_probabilities(prob)
        lesion = lesion_from_probabilities(prob, liver, lesion_threshold)
        _, instances = find_lesions(lesion, liver, ph.spacing_mm, _affine(ph))
        kept = instances > 0
        liver_d.append(dice(liver, ph.liver_mask))
        lesion_d.append(dice(kept, ph.lesion_labels > 0))
        found = per_lesion_metrics(kept, ph.lesion_labels, ph.spacing_mm, BINS_MM, [s.diameter_mm for s in ph.lesions])
        rows.extend(found)
        looks = ph.appearances or ["typical"] * len(ph.lesions)
        for r in found:
            by_look.setdefault(looks[r["lesion"] - 1], []).append(r["detected"])
        touched = np.unique(instances[(ph.lesion_labels > 0) & kept])
        false_pos += int(instances.max()) - int(touched.size)
    strata = summarise_by_stratum(rows, BINS_MM)
    return {
        "dice_liver": float(np.mean(liver_d)),
        "dice_lesion": float(np.mean(lesion_d)),
        "lesion_detection_rate": float(np.mean([r["detected"] for r in rows])) if rows else 0.0,
        "detection_by_stratum": {
            k: {
                "n": v["n"],
                "detected": round(v.get("detection_rate", 0.0) * v["n"]),
                "rate": v.get("detection_rate"),
                "dice_mean": v.get("dice_mean"),
            }
            for k, v in strata.items()
        },
        "detection_by_appearance": {k: {"n": len(v), "rate": float(np.mean(v))} for k, v in sorted(by_look.items())},
        "lesion_threshold": lesion_threshold,
        "false_positive_components_per_phantom": false_pos / max(len(phantoms), 1),
        "n_phantoms": len(phantoms),
        "n_lesions": len(rows),
    }


#: Patient offset of the tuning phantoms (training from 0, held-out from 10 000).
TUNE_OFFSET = 20_000

#: Lesion thresholds tried on the tuning phantoms (``None``: the argmax). The high ones matter: a cross-entropy
#: that weighs small lesions' voxels w times a liver voxel's puts the argmax near a posterior of 1 / (1 + w), so
#: the probabilities of a model trained that way must be cut near 1 to trade its sensitivity back for specificity.
THRESHOLDS: tuple[float | None, ...] = (
    None, 0.999, 0.998, 0.995, 0.99, 0.98, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05,
)  # fmt: skip


def sweep_thresholds(
    probs: Sequence[np.ndarray], phantoms: Sequence[Phantom], progress: bool = False, desc: str = "sweep thresholds"
) -> list[dict[str, Any]]:
    """:func:`score` at each of :data:`THRESHOLDS`: lesions detected (all and <= 10 mm) and false-positive
    components per phantom, one row per threshold (the points of an FROC curve)."""
    from tqdm import tqdm

    livers = [liver_from_probabilities(p) for p in probs]  # the argmax's liver: the same at every threshold
    rows = []
    for t in tqdm(THRESHOLDS, desc=desc, disable=not progress):
        m = score(probs, phantoms, t, livers)
        small = m["detection_by_stratum"].get("<=10", {"detected": 0, "n": 0})
        rows.append(
            {
                "threshold": t,
                "detected": m["detection_by_stratum"]["all"]["detected"],
                "n": m["n_lesions"],
                "detected_le10": small["detected"],
                "n_le10": small["n"],
                "false_positives_per_phantom": m["false_positive_components_per_phantom"],
            }
        )
    return rows


#: False positives per phantom at which the card reads the FROC curve off (as LUNA16 reads sensitivities at
#: 1/8 to 8 false positives per scan).
FROC_FP_RATES = (0.5, 1.0, 2.0, 4.0, 8.0)


def froc_points(sweep: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per :data:`FROC_FP_RATES` budget: the best sensitivity (<= 10 mm, then all) of a threshold in ``sweep`` with
    at most that many false positives per phantom (``None`` when no threshold keeps within it)."""
    out = []
    for budget in FROC_FP_RATES:
        within = [r for r in sweep if r["false_positives_per_phantom"] <= budget]
        best = max(within, key=lambda r: (r["detected_le10"], r["detected"]), default=None)
        out.append(
            {
                "false_positives_per_phantom": budget,
                "threshold": best["threshold"] if best else None,
                "sensitivity_le10": best["detected_le10"] / max(best["n_le10"], 1) if best else None,
                "sensitivity": best["detected"] / max(best["n"], 1) if best else None,
            }
        )
    return out


def choose_lesion_threshold(
    probs: Sequence[np.ndarray],
    phantoms: Sequence[Phantom],
    max_false_positives: float | None = None,
    small_sensitivity: float | None = None,
    progress: bool = False,
) -> tuple[float | None, list[dict[str, Any]]]:
    """The lesion threshold (:data:`THRESHOLDS`) of one operating-point rule, and the sweep (one row per threshold).

    ``max_false_positives``: the most lesions detected with at most that many false-positive components per
    phantom, then the fewest false positives. ``small_sensitivity``: the fewest false positives among the thresholds
    that detect at least that share of the 5-10 mm lesions, then the most lesions (none reaches it: the most 5-10 mm
    lesions, then the fewest false positives). Ties go to the earlier in :data:`THRESHOLDS` (the argmax, ``None``,
    first; then from high to low). ``None`` too when no threshold keeps within a false-positive budget."""
    if (max_false_positives is None) == (small_sensitivity is None):
        raise ValueError("give one operating-point rule: max_false_positives or small_sensitivity")
    if small_sensitivity is not None and not 0.0 < small_sensitivity <= 1.0:
        raise ValueError(f"small_sensitivity must lie in (0, 1], not {small_sensitivity}")
    sweep = sweep_thresholds(probs, phantoms, progress, desc="tuning FROC")
    best: float | None = None
    best_key: tuple[float, ...] = (-math.inf,)
    for r in sweep:
        found, small, fp = r["detected"], r["detected_le10"], r["false_positives_per_phantom"]
        if max_false_positives is not None:
            if fp > max_false_positives:
                continue
            key: tuple[float, ...] = (found, -fp)
        else:
            assert small_sensitivity is not None
            reached = small >= small_sensitivity * r["n_le10"] - 1e-9
            key = (1, -fp, found) if reached else (0, small, -fp)
        if key > best_key:
            best, best_key = r["threshold"], key
    return best, sweep


def tune_threshold(
    net: Any,
    config: dict[str, Any],
    seed: int,
    patients: int,
    atypical_fraction: float,
    max_false_positives: float | None = None,
    small_sensitivity: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Choose the lesion threshold on ``patients`` tuning phantoms (:data:`TUNE_OFFSET`, the held-out phantoms'
    mix), store it in ``config`` (in place; none for the argmax) and return the card's record of the choice."""
    from tqdm import tqdm

    tune_ph = list(
        tqdm(
            make_phantoms(seed, patients, offset=TUNE_OFFSET, atypical_fraction=atypical_fraction),
            total=patients,
            desc="tuning phantoms",
            disable=not progress,
        )
    )
    probs = predict_phantoms(net, tune_ph, config, progress, desc="tune threshold")
    chosen, sweep = choose_lesion_threshold(probs, tune_ph, max_false_positives, small_sensitivity, progress)
    config.pop("lesion_threshold", None)
    if chosen is not None:
        config["lesion_threshold"] = chosen
    return {
        "value": chosen,
        "rule": (
            f"most lesions detected with at most {max_false_positives:g} false-positive components per phantom"
            if small_sensitivity is None
            else f"fewest false positives detecting at least {small_sensitivity:.0%} of the 5-10 mm lesions"
        )
        + "; None = the argmax",
        "tuning_data": f"{patients} phantoms (seed {seed}, patients {TUNE_OFFSET}..{TUNE_OFFSET + patients - 1}), "
        "drawn like the held-out ones, neither trained nor validated on",
        "sweep": sweep,
    }


def train(
    out: Path,
    *,
    patients: int = 24,
    val_patients: int = 24,
    steps: int = 400,
    seed: int = 7,
    batch: int = 2,
    patch: Sequence[int] = (32, 64, 64),
    lr: float = 3e-3,
    threads: int = 2,
    progress: bool = True,
    init: Path | None = None,
    atypical_fraction: float = 0.2,
    lesion_weight: float = 20.0,
    channels: Sequence[int] | None = None,
    strides: Sequence[int | Sequence[int]] | None = None,
    small_lesion_boost: float = 0.0,
    small_share: float | None = None,
    max_lesions: int = 5,
    vessel_fraction: float = 0.0,
    tune_patients: int = 0,
    max_false_positives: float | None = 2.0,
    small_sensitivity: float | None = None,
) -> dict[str, Any]:
    """Train, validate, save ``out`` and ``out.with_suffix('.json')``; return the model card.

    ``init``: continue from an earlier weights file of the same configuration (its card's step count is added).
    ``channels`` / ``strides``: the UNet's levels, :data:`CONFIG`'s by default (a stride is an int or one per axis).
    ``small_lesion_boost``: the cross-entropy weighs small lesions' voxels up (:func:`voxel_weights`).
    ``small_share`` / ``max_lesions``: the training phantoms' share of 5-10 mm lesions (:func:`size_mix`; the demo's
    by default) and most lesions per phantom; the held-out phantoms keep the demo's mix and 1-5 lesions.
    ``vessel_fraction``: share of patches centred on intrahepatic vessels (:func:`vessel_voxels`).
    ``tune_patients``: after training, choose the lesion threshold (:func:`choose_lesion_threshold`: at most
    ``max_false_positives`` per phantom or, when given, ``small_sensitivity`` of the 5-10 mm lesions) on that many
    tuning phantoms, neither trained nor validated on; 0 keeps the argmax. ``steps`` 0 (with ``init``) only tunes
    and validates. The card also holds the held-out FROC (:func:`sweep_thresholds`, :func:`froc_points`).
    """
    if not 0.0 <= vessel_fraction <= MAX_VESSEL_FRACTION:
        raise ValueError(f"vessel_fraction must lie in [0, {MAX_VESSEL_FRACTION:.3f}], not {vessel_fraction}")
    if not 1 <= max_lesions <= 12:
        raise ValueError(f"max_lesions must lie in 1..12, not {max_lesions}")
    train_mix = size_mix(small_share)
    config = {**CONFIG, "channels": list(channels or CONFIG["channels"]), "strides": list(strides or CONFIG["strides"])}
    if len(config["strides"]) != len(config["channels"]) - 1:
        raise ValueError(f"{len(config['channels'])} channel levels need {len(config['channels']) - 1} strides")
    import torch
    from monai.losses import DiceLoss
    from tqdm import tqdm

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng([seed, 999])
    t_start = time.perf_counter()
    train_ph = list(
        tqdm(
            make_phantoms(seed, patients, atypical_fraction=atypical_fraction, mix=train_mix, max_lesions=max_lesions),
            total=patients,
            desc="train phantoms",
            disable=not progress,
        )
    )
    val_ph = list(
        tqdm(
            make_phantoms(seed, val_patients, offset=10_000, atypical_fraction=atypical_fraction),
            total=val_patients,
            desc="val phantoms",
            disable=not progress,
        )
    )
    xs = [normalise_hu(ph.hu, config) for ph in train_ph]
    ys = [target_labels(ph) for ph in train_ph]
    lesions = [lesion_voxels(ph) for ph in train_ph]
    vws = [voxel_weights(ph, small_lesion_boost) for ph in train_ph]
    liver_idx = [np.argwhere(y == 1)[::50] for y in ys]
    vessel_idx = [vessel_voxels(ph) if vessel_fraction else None for ph in train_ph]
    net = build_unet(config)
    previous_steps = 0
    init_card: dict[str, Any] = {}
    if init is not None:
        payload = torch.load(init, map_location="cpu", weights_only=True)
        net.load_state_dict(payload["state_dict"])
        card_file = Path(init).with_suffix(".json")
        if card_file.is_file():
            init_card = json.loads(card_file.read_text())
            previous_steps = int(init_card["training"]["steps"])
    init_sha = file_sha256(init) if init is not None else None
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    dice_fn = DiceLoss(to_onehot_y=True, softmax=True, include_background=False)
    # Cross-entropy with the lesion class weighted up: a 5 mm lesion is ~12 of a patch's ~10^5 voxels, and the
    # Dice term alone vanishes once the softmax saturates on "liver" (the earlier model never learnt them).
    ce_weight = torch.tensor([1.0, 1.0, float(lesion_weight)])

    def loss_fn(logits: Any, target: Any, voxel_weight: Any) -> Any:
        # The class-weighted cross-entropy's mean (sum of w * loss over sum of w), each voxel's w also scaled by
        # its lesion's size weight (all ones without a boost: then exactly cross_entropy(weight=ce_weight)).
        ce = torch.nn.functional.cross_entropy(logits, target[:, 0], reduction="none")
        w = ce_weight[target[:, 0]] * voxel_weight
        return dice_fn(logits, target) + (ce * w).sum() / w.sum()

    net.train()
    bar = tqdm(range(steps), desc="train unet", disable=not progress)
    losses: list[float] = []
    for _ in bar:
        bx, by, bw = [], [], []
        for _ in range(batch):
            i = int(rng.integers(len(xs)))
            px, py, pw = _sample_patch(
                rng,
                xs[i],
                ys[i],
                patch,
                lesions[i],
                liver_idx[i],
                vws[i],
                vessel_idx=vessel_idx[i],
                vessel_fraction=vessel_fraction,
            )
            bx.append(px)
            by.append(py)
            bw.append(pw)
        xb = torch.from_numpy(np.stack(bx))[:, None]
        yb = torch.from_numpy(np.stack(by).astype(np.int64))[:, None]
        wb = torch.from_numpy(np.stack(bw))
        opt.zero_grad()
        loss = loss_fn(net(xb), yb, wb)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    threshold_card = (
        tune_threshold(
            net,
            config,
            seed,
            tune_patients,
            atypical_fraction,
            None if small_sensitivity is not None else max_false_positives,
            small_sensitivity,
            progress,
        )
        if tune_patients
        else None
    )
    val_probs = predict_phantoms(net, val_ph, config, progress, desc="validate")
    metrics = score(val_probs, val_ph, config.get("lesion_threshold"))
    val_sweep = sweep_thresholds(val_probs, val_ph, progress, desc="held-out FROC")
    metrics["froc"] = {"points": froc_points(val_sweep), "sweep": val_sweep}
    n_params = sum(p.numel() for p in net.parameters())
    card = {
        "task": "liver and liver-lesion segmentation of synthetic portal-venous CT phantoms (demo only)",
        "architecture": f"MONAI UNet 3D, channels {config['channels']}, strides {config['strides']}, "
        f"{config['num_res_units']} residual unit(s), 3 classes (background, liver, lesion)",
        "params": n_params,
        "config": config,
        "training_data": f"{patients} synthetic phantoms from fixtures.phantom "
        f"(seed {seed}, patients 0..{patients - 1}), 1-{max_lesions} lesions each of "
        f"{'the demo' if small_share is None else 'an enriched'} size mix "
        f"({', '.join(f'{w:.0%} {lo:g}-{hi:g} mm' for w, lo, hi in train_mix)}), atypical_fraction "
        f"{atypical_fraction}; 40x256x256 at 2.5x1.5x1.5 mm",
        "validation_data": f"{val_patients} held-out phantoms "
        f"(seed {seed}, patients 10000..{10000 + val_patients - 1}), drawn like the training phantoms",
        "training": {
            "steps": previous_steps + steps,
            "init_from_sha256": init_sha,
            "batch": batch,
            "patch": list(patch),
            "patch_sampling": "2/3 centred on a lesion instance drawn with weight 1/diameter, "
            + (f"{vessel_fraction:.0%} on an intrahepatic vessel (hard negatives), " if vessel_fraction else "")
            + "the rest of 9/10 on the liver, 1/10 anywhere",
            "optimizer": "AdamW + one-cycle",
            "lr": lr,
            "loss": f"Dice (softmax, no background) + cross-entropy with class weights 1/1/{lesion_weight:g}"
            + (
                f", a lesion's voxels also x ({BOOST_FROM_MM:g} mm / diameter)^{small_lesion_boost:g} (at least 1)"
                if small_lesion_boost
                else ""
            ),
            "final_loss": float(np.mean(losses[-20:])) if losses else None,
            "seconds": round(time.perf_counter() - t_start, 1),
            "threads": threads,
        },
        "seed": seed,
        "lesion_threshold": threshold_card,
        "validation_metrics": metrics,
        "intended_use": "demo and tests of the reader-study platform on synthetic phantoms; NOT for real CT",
        "limitations": "trained and validated on synthetic phantoms only; the figures above say nothing about real "
        "CT. Detection counts any overlap of a kept component (find_lesions) with the lesion.",
    }
    if steps == 0 and init_card:
        # Tuned and validated only: the weights, and so what they were trained on and how, are init's.
        card["training_data"] = init_card["training_data"]
        card["training"] = {**init_card["training"], "tuned_only_from_sha256": init_sha}
    return save_with_card(Path(out), net, config, NAME, VERSION, card)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.pipeline.train_unet", description=__doc__.splitlines()[0]
    )
    parser.add_argument("out", type=Path, help="weights file to write (.pt); the model card goes beside it (.json)")
    parser.add_argument("--patients", type=int, default=24, help="training phantoms")
    parser.add_argument("--val-patients", type=int, default=24, help="held-out phantoms")
    parser.add_argument(
        "--atypical-fraction", type=float, default=0.2, help="atypical lesion looks, as in fixtures.phantom"
    )
    parser.add_argument("--steps", type=int, default=400, help="optimiser steps (the run's length)")
    parser.add_argument("--epochs", type=int, default=None, help="alternative to --steps: passes of `patients` patches")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle)")
    parser.add_argument("--init", type=Path, default=None, help="continue training from these weights")
    parser.add_argument("--lesion-weight", type=float, default=20.0, help="cross-entropy weight of the lesion class")
    parser.add_argument("--patch", default="32,64,64", help="training patch z,y,x (voxels)")
    parser.add_argument(
        "--small-lesion-boost", type=float, default=0.0, help="cross-entropy x (20 mm / diameter)^BOOST in lesions"
    )
    parser.add_argument(
        "--small-share", type=float, default=None, help="training phantoms' share of 5-10 mm lesions (demo: 0.35)"
    )
    parser.add_argument("--max-lesions", type=int, default=5, help="most lesions per training phantom")
    parser.add_argument(
        "--vessel-fraction", type=float, default=0.0, help="share of patches centred on intrahepatic vessels"
    )
    parser.add_argument(
        "--tune-patients", type=int, default=0, help="phantoms to choose the lesion threshold on (0: the argmax)"
    )
    parser.add_argument(
        "--max-fp", type=float, default=2.0, help="most false-positive components per phantom the threshold may cost"
    )
    parser.add_argument(
        "--small-sensitivity",
        type=float,
        default=None,
        help="instead of --max-fp: the fewest false positives detecting this share of the 5-10 mm tuning lesions",
    )
    parser.add_argument("--channels", default=None, help="UNet channels per level, e.g. 8,16,32,64")
    parser.add_argument(
        "--strides", default=None, help='UNet strides as JSON, one per level after the first, e.g. "[[1,2,2],2,2]"'
    )
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
        atypical_fraction=args.atypical_fraction,
        lesion_weight=args.lesion_weight,
        patch=tuple(int(v) for v in args.patch.split(",")),
        channels=[int(v) for v in args.channels.split(",")] if args.channels else None,
        strides=json.loads(args.strides) if args.strides else None,
        small_lesion_boost=args.small_lesion_boost,
        small_share=args.small_share,
        max_lesions=args.max_lesions,
        vessel_fraction=args.vessel_fraction,
        tune_patients=args.tune_patients,
        max_false_positives=args.max_fp,
        small_sensitivity=args.small_sensitivity,
    )
    print(
        json.dumps({k: card[k] for k in ("name", "params", "validation_metrics", "sha256", "weights_bytes")}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
