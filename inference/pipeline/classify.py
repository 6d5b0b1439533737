"""CRLM-vs-hemangioma classifier on 2D axial crops around a lesion (MONAI DenseNet or ResNet).

Input: ``n_slices`` (default 5) axial crops through the lesion, each resampled to ``crop_px`` x ``crop_px``
over a square field of view of ``max(fov_min_mm, fov_factor * diameter)`` mm centred on the lesion, windowed
to the liver window (W 350 / L 60 HU) and scaled to [-1, 1]. Scaling the field of view with the diameter makes
every lesion fill a similar share of the crop; the size itself is a separate study stratum, not a feature.

Aggregation: the crops are scored independently and the **mean of their logits** is passed through the
sigmoid (a geometric mean of the odds): one saturated slice cannot dominate as it would with a max. A model
whose ``config["calibration"]`` holds Platt parameters (``slope``, ``intercept``, fitted on a calibration split
by :mod:`inference.pipeline.train_classifier`) rescales that mean logit first: a monotone map, so the ranking
(the AUC) is unchanged and the probability is calibrated.

Architectures (``config["arch"]``): ``"densenet"`` (MONAI ``DenseNet``; production DenseNet-201 is
``init_features=64, growth_rate=32, block_config=(6, 12, 48, 32)``) and ``"resnet"`` (MONAI ``ResNet``
bottleneck; ResNet-152 is ``layers=(3, 8, 36, 3)`` with ``conv1_t_stride=2``). The shipped demo model is a
tiny DenseNet; ``pretrained=False`` always (downloads fail here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from inference.pipeline.segment import file_sha256

__all__ = [
    "DEMO_CONFIG",
    "DENSENET201",
    "RESNET152",
    "Classifier",
    "build_classifier",
    "crop_slices",
    "extract_crops",
    "probability",
]

DEMO_CONFIG: dict[str, Any] = {
    "arch": "densenet",
    "init_features": 8,
    "growth_rate": 8,
    "block_config": [2, 2, 2],
    "bn_size": 2,
    "crop_px": 48,
    "fov_factor": 2.0,
    "fov_min_mm": 20.0,
    "n_slices": 5,
    "window": [-115.0, 235.0],  # liver window W 350 / L 60
}
DENSENET201: dict[str, Any] = {
    **DEMO_CONFIG,
    "init_features": 64,
    "growth_rate": 32,
    "block_config": [6, 12, 48, 32],
    "bn_size": 4,
    "crop_px": 224,
}
RESNET152: dict[str, Any] = {**DEMO_CONFIG, "arch": "resnet", "layers": [3, 8, 36, 3], "crop_px": 224}


def build_classifier(config: dict[str, Any]) -> Any:
    """A 2D, 1-channel, 1-logit MONAI network from ``config`` (randomly initialised, never downloaded)."""
    arch = config["arch"]
    if arch == "densenet":
        from monai.networks.nets import DenseNet

        return DenseNet(
            spatial_dims=2,
            in_channels=1,
            out_channels=1,
            init_features=int(config["init_features"]),
            growth_rate=int(config["growth_rate"]),
            block_config=tuple(config["block_config"]),
            bn_size=int(config.get("bn_size", 4)),
        )
    if arch == "resnet":
        from monai.networks.nets import ResNet

        return ResNet(
            block="bottleneck",
            # MONAI annotates list[int] and takes any sequence; tuples as always (the built net is unchanged).
            layers=tuple(config["layers"]),  # type: ignore[arg-type]
            block_inplanes=tuple(config.get("block_inplanes", (64, 128, 256, 512))),  # type: ignore[arg-type]
            spatial_dims=2,
            n_input_channels=1,
            num_classes=1,
            conv1_t_stride=2,  # MONAI's default 1 costs 4x the FLOPs of the usual ResNet stem
        )
    raise ValueError(f"unknown classifier arch {arch!r} (expected 'densenet' or 'resnet')")


def crop_slices(
    centre_k: float, z_range: tuple[int, int] | None, diameter_mm: float, spacing_z: float, n_slices: int, n_total: int
) -> list[int]:
    """Slice indices of the crops: evenly through the middle 60 % of the lesion's extent, clipped to the volume.

    ``z_range`` is the lesion's first/last slice when a mask is known; otherwise the extent is estimated from
    the diameter (a sphere).
    """
    if z_range is not None:
        half = (z_range[1] - z_range[0]) / 2.0
        centre = (z_range[0] + z_range[1]) / 2.0
    else:
        half = diameter_mm / 2.0 / spacing_z
        centre = centre_k
    offsets = np.linspace(-0.6 * half, 0.6 * half, n_slices) if n_slices > 1 else np.zeros(1)
    return [int(np.clip(round(centre + o), 0, n_total - 1)) for o in offsets]


def extract_crops(
    hu: np.ndarray,
    spacing_mm: Sequence[float],
    centre_index: Sequence[float] | np.ndarray,
    diameter_mm: float,
    config: dict[str, Any],
    *,
    z_range: tuple[int, int] | None = None,
    fov_scale: float = 1.0,
    shift_px: tuple[float, float] = (0.0, 0.0),
    slices: Sequence[int] | None = None,
) -> np.ndarray:
    """``[n_slices, 1, crop_px, crop_px]`` float32 crops (see the module docstring); outside the image = -1.

    ``slices``: crop these slice indices instead of :func:`crop_slices`' ``n_slices`` (one crop each)."""
    k, j, i = (float(v) for v in centre_index)
    _, sy, sx = (float(s) for s in spacing_mm)
    p = int(config["crop_px"])
    fov = max(float(config["fov_min_mm"]), float(config["fov_factor"]) * float(diameter_mm)) * fov_scale
    step = fov / p  # mm per crop pixel
    grid = (np.arange(p) - (p - 1) / 2.0) * step
    rows = j + shift_px[0] + grid / sy
    cols = i + shift_px[1] + grid / sx
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    lo, hi = config["window"]
    if slices is None:
        slices = crop_slices(k, z_range, diameter_mm, float(spacing_mm[0]), int(config["n_slices"]), hu.shape[0])
    out = np.empty((len(slices), 1, p, p), dtype=np.float32)
    for n, kk in enumerate(slices):
        plane = np.asarray(hu[kk], dtype=np.float32)
        # anti-alias when the crop is coarser than the image (large lesions)
        sigma = (max(0.0, step / sy - 1) / 2, max(0.0, step / sx - 1) / 2)
        if max(sigma) > 0:
            plane = ndimage.gaussian_filter(plane, sigma)
        vals = ndimage.map_coordinates(plane, [rr, cc], order=1, mode="constant", cval=lo)
        out[n, 0] = (np.clip(vals, lo, hi) - lo) / (hi - lo) * 2.0 - 1.0
    return out


def probability(mean_logit: float, config: dict[str, Any]) -> float:
    """The CRLM probability of a lesion's mean crop logit: ``sigmoid(slope * logit + intercept)`` with the
    config's Platt ``calibration``, else ``sigmoid(logit)``."""
    cal = config.get("calibration")
    x = float(cal["slope"]) * mean_logit + float(cal["intercept"]) if cal else mean_logit
    return 1.0 / (1.0 + math.exp(-x))


class Classifier:
    """A trained classifier loaded from a weights file (``state_dict``, ``config``, ``name``, ``version``)."""

    def __init__(self, weights: Path, device: str = "cpu", threads: int | None = 2) -> None:
        import torch

        self.weights_path = Path(weights)
        if not self.weights_path.is_file():
            raise FileNotFoundError(
                f"{self.weights_path}: classifier weights not found "
                "(train: python -m inference.pipeline.train_classifier OUT.pt --data DIR)"
            )
        self.weights_sha256 = file_sha256(self.weights_path)
        payload = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        self.config: dict[str, Any] = dict(payload["config"])
        self.name = str(payload.get("name", "lesion-classifier"))
        self.version = str(payload.get("version", "0"))
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
        if threads and device == "cpu":
            torch.set_num_threads(threads)
        self.device = device
        self.net = build_classifier(self.config)
        self.net.load_state_dict(payload["state_dict"])
        self.net.to(device).eval()

    def logits(self, crops: np.ndarray) -> np.ndarray:
        """One logit per crop (``crops``: ``[n, 1, p, p]``)."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).to(self.device)
            return self.net(x)[:, 0].float().cpu().numpy()

    def predict(
        self,
        hu: np.ndarray,
        spacing_mm: Sequence[float],
        centre_index: Sequence[float] | np.ndarray,
        diameter_mm: float,
        *,
        z_range: tuple[int, int] | None = None,
    ) -> tuple[float, np.ndarray]:
        """``(probability of CRLM, per-crop logits)``: sigmoid of the (Platt-rescaled, when the model carries a
        calibration) mean logit over the crops."""
        crops = extract_crops(hu, spacing_mm, centre_index, diameter_mm, self.config, z_range=z_range)
        logit = self.logits(crops)
        return probability(float(np.mean(logit)), self.config), logit
