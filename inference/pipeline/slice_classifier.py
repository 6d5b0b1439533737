"""Slice-level CRLM classifier aggregated per lesion: a 2D network scores every axial slice through the lesion.

Per slice: an axial crop centred on the lesion centre, ``crop_px`` x ``crop_px`` over a field of view of
``max(fov_min_mm, fov_factor * diameter)`` mm, liver window, scaled to [-1, 1] (the crops of
:func:`inference.pipeline.classify.extract_crops`, one for each slice instead of five through the middle). The
slices are every slice of the lesion's extent: the matched lesion's first to last slice, or, without a matched
lesion, those within half the manifest diameter of the manifest centre.

**Aggregation**: the lesion's probability is the **mean of the top-k slice probabilities**, ``k = config["top_k"]``
(3 in the demo model; every slice when the lesion has fewer). A metastasis may show its hypo-attenuating core and
rim on a few central slices only, while the slices at its poles look like any small partial-volume blob: the
best few slices carry the evidence, and the mean of three is steadier than the single maximum.

**Calibration**: the aggregate leans towards the positive class (a max-like statistic), so the raw top-k mean is
no calibrated probability. A model whose ``config["calibration"]`` holds Platt parameters (fitted on calibration
patients by the training command) reports ``sigmoid(slope * logit(s) + intercept)`` of the top-k mean ``s``:
Platt scaling on the aggregated lesion score, the quantity the readers are shown, rather than on each slice (a
per-slice map would not undo the bias the max-like aggregation adds). ``logit(s)`` is computed in log space from
the slice logits (:func:`top_k_logit`), not by clipping ``s``: a confident lesion's ``s`` rounds to 1.0, and a
clipped logit would tie such lesions and change the AUC; so the map is strictly monotone and the AUC unchanged.
A model without ``calibration`` (trained before it) gives ``s`` itself.

Network (``config["arch"]``, :func:`~inference.pipeline.classify.build_classifier`): the demo model is a tiny
MONAI DenseNet 2D (:data:`SLICE_CONFIG`); :data:`DENSENET121_SLICE` is MONAI's DenseNet121 layout for real data
(``pretrained=False``: weights cannot be downloaded here). Trained by ``python -m
inference.pipeline.train_slice_classifier``, each slice labelled with its lesion's truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.pipeline.calibration import apply_platt
from inference.pipeline.classify import Classifier, extract_crops

__all__ = [
    "DENSENET121_SLICE",
    "SLICE_CONFIG",
    "SliceClassifier",
    "lesion_probability",
    "lesion_slices",
    "top_k_logit",
    "top_k_mean",
]

SLICE_CONFIG: dict[str, Any] = {
    "arch": "densenet",
    "init_features": 8,
    "growth_rate": 8,
    "block_config": [2, 2, 2],
    "bn_size": 2,
    "crop_px": 48,
    "fov_factor": 2.0,
    "fov_min_mm": 20.0,
    "window": [-115.0, 235.0],  # liver window W 350 / L 60
    "top_k": 3,
}
DENSENET121_SLICE: dict[str, Any] = {
    **SLICE_CONFIG,
    "init_features": 64,
    "growth_rate": 32,
    "block_config": [6, 12, 24, 16],
    "bn_size": 4,
    "crop_px": 224,
}


def lesion_slices(
    centre_k: float, z_range: tuple[int, int] | None, diameter_mm: float, spacing_z: float, n_total: int
) -> list[int]:
    """Every axial slice through the lesion: ``z_range`` (first, last) when known, else the slices within half the
    diameter of the centre (at least the centre slice), clipped to the volume."""
    if z_range is not None:
        first, last = int(z_range[0]), int(z_range[1])
    else:
        half = float(diameter_mm) / 2.0 / float(spacing_z)
        first, last = math.ceil(centre_k - half), math.floor(centre_k + half)
        if last < first:
            first = last = round(centre_k)
    first, last = max(first, 0), min(last, n_total - 1)
    if last < first:
        return [int(np.clip(round(centre_k), 0, n_total - 1))]
    return list(range(first, last + 1))


def top_k_mean(probabilities: Sequence[float] | np.ndarray, k: int) -> float:
    """Mean of the ``k`` largest values (all of them when there are fewer)."""
    p = np.sort(np.asarray(probabilities, dtype=np.float64))[::-1]
    if p.size == 0:
        raise ValueError("top-k mean of no slice probabilities")
    return float(p[: max(1, int(k))].mean())


def top_k_logit(slice_logits: Sequence[float] | np.ndarray, k: int) -> float:
    """``logit(top_k_mean(sigmoid(slice_logits), k))``, in log space: ``log sum sigmoid(x) - log sum sigmoid(-x)``
    over the top ``k`` logits, finite and exact where the mean itself rounds to 0 or 1."""
    x = np.sort(np.asarray(slice_logits, dtype=np.float64))[::-1][: max(1, int(k))]
    if x.size == 0:
        raise ValueError("top-k logit of no slice logits")
    log_sig = -np.logaddexp(0.0, -x)  # log sigmoid(x)
    log_sig_neg = -np.logaddexp(0.0, x)  # log sigmoid(-x) = log(1 - sigmoid(x))
    return float(np.logaddexp.reduce(log_sig) - np.logaddexp.reduce(log_sig_neg))


def lesion_probability(slice_logits: Sequence[float] | np.ndarray, k: int, calibration: dict[str, Any] | None) -> float:
    """The lesion's CRLM probability: the top-k mean of the slice probabilities, Platt-scaled on its logit with
    ``calibration`` (see the module docstring)."""
    return float(apply_platt(top_k_logit(slice_logits, k), calibration))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


class SliceClassifier(Classifier):
    """A trained slice classifier (the weights file layout of :class:`~inference.pipeline.classify.Classifier`)."""

    def __init__(self, weights: Path, device: str = "cpu", threads: int | None = 2) -> None:
        if not Path(weights).is_file():
            raise FileNotFoundError(
                f"{weights}: slice classifier weights not found "
                "(train: python -m inference.pipeline.train_slice_classifier --data DIR --out DIR)"
            )
        super().__init__(weights, device=device, threads=threads)
        self.top_k = int(self.config.get("top_k", 3))

    def crops(
        self,
        hu: np.ndarray,
        spacing_mm: Sequence[float],
        centre_index: Sequence[float] | np.ndarray,
        diameter_mm: float,
        z_range: tuple[int, int] | None = None,
    ) -> np.ndarray:
        slices = lesion_slices(float(centre_index[0]), z_range, diameter_mm, float(spacing_mm[0]), hu.shape[0])
        return extract_crops(hu, spacing_mm, centre_index, diameter_mm, self.config, slices=slices)

    def predict(
        self,
        hu: np.ndarray,
        spacing_mm: Sequence[float],
        centre_index: Sequence[float] | np.ndarray,
        diameter_mm: float,
        *,
        z_range: tuple[int, int] | None = None,
        mask: np.ndarray | None = None,
    ) -> tuple[float, np.ndarray]:
        """``(probability of CRLM, per-slice logits)``: the mean of the top-k slice probabilities, Platt-scaled
        when the model carries a calibration."""
        logits = self.logits(self.crops(hu, spacing_mm, centre_index, diameter_mm, z_range))
        return lesion_probability(logits, self.top_k, self.config.get("calibration")), logits
