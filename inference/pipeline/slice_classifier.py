"""Slice-level CRLM classifier aggregated per lesion: a 2D network scores every axial slice through the lesion.

Per slice: an axial crop centred on the lesion centre, ``crop_px`` x ``crop_px`` over a field of view of
``max(fov_min_mm, fov_factor * diameter)`` mm, liver window, scaled to [-1, 1] (the crops of
:func:`inference.pipeline.classify.extract_crops`, one for each slice instead of five through the middle). The
slices are every slice of the lesion's extent: the matched lesion's first to last slice, or, without a matched
lesion, those within half the manifest diameter of the manifest centre.

**Aggregation**: the lesion's probability is the **mean of the top-k slice probabilities**, ``k = config["top_k"]``
(3 in the demo model; every slice when the lesion has fewer). A metastasis may show its hypo-attenuating core and
rim on a few central slices only, while the slices at its poles look like any small partial-volume blob: the
best few slices carry the evidence, and the mean of three is steadier than the single maximum. The aggregate leans
towards the positive class (it is a max-like statistic), so its 0.5 is no calibrated threshold: the AUC, which
only ranks, is the figure of merit; a threshold for a binary endpoint is chosen on validation data.

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

from inference.pipeline.classify import Classifier, extract_crops

__all__ = ["DENSENET121_SLICE", "SLICE_CONFIG", "SliceClassifier", "lesion_slices", "top_k_mean"]

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
        """``(probability of CRLM, per-slice logits)``: the mean of the top-k slice probabilities."""
        logits = self.logits(self.crops(hu, spacing_mm, centre_index, diameter_mm, z_range))
        return top_k_mean(sigmoid(logits), self.top_k), logits
