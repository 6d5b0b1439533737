"""Multi-series CRLM classifier: the lesion crops of several contrast phases of a case as channels of one network.

Input: for each role of ``config["roles"]`` (the demo model: ``portal-venous``, ``arterial``, ``delayed``, the
phases :mod:`fixtures.phantom.phases` renders) the same ``n_slices`` axial crops as
:func:`inference.pipeline.classify.extract_crops` (``crop_px`` x ``crop_px``, field of view twice the diameter,
liver window, [-1, 1]), stacked as channels: ``[n_slices, len(roles), crop_px, crop_px]``. A 2D MONAI DenseNet
scores each crop position; the lesion's probability is the sigmoid of the mean logit (as ``densenet-crops``), after
Platt scaling ``slope * logit + intercept`` when ``config["calibration"]`` holds it (fitted on calibration patients
by the training command; a monotone map: the AUC is unchanged; a model without it gives the plain sigmoid).

**One grid, by DICOM geometry only.** The reference grid is the ``reference_role`` series' (portal-venous, where
the lesion centres and the segmentation live). Every other series is resampled onto it by its own DICOM geometry
(ImagePositionPatient, ImageOrientationPatient, PixelSpacing, slice positions: the ``Volume.affine``): each
reference voxel's patient (LPS) position is looked up in the other series, trilinearly interpolated. **No
registration** beyond that: the series must share a frame of reference (checked), and any patient motion or
breathing between the phases stays in the channels as a misalignment. That holds for phantoms (one frame of
reference, no motion); real arterial/portal/delayed CT of one examination is usually within a few millimetres, which
a real model would have to tolerate or a deformable registration (not done here) would have to remove. Only the
slices the crops need are resampled (the reference grid restricted to those slices), not the whole volume. Where
the other series does not cover a reference voxel (a shorter coverage; up to half a slice beyond its first or last
slice counts as covered), the voxel is air (-1024 HU, the bottom of the window), as outside the image in a crop.

A case that lacks one of the roles cannot be classified: :func:`check_series` raises :class:`MissingSeriesError`
naming the case and the missing phase (precompute reports it per case; the batch goes on).

Trained by ``python -m inference.pipeline.train_multiseries_classifier --data DIR --out DIR`` on a study generated
with ``--extra-series arterial,delayed``. The demo model is tiny and has seen synthetic phantoms only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy import ndimage

from inference.pipeline.calibration import apply_platt
from inference.pipeline.classify import crop_slices, extract_crops
from inference.pipeline.segment import file_sha256

__all__ = [
    "AIR_HU",
    "MULTISERIES_CONFIG",
    "MissingSeriesError",
    "MultiSeriesClassifier",
    "SeriesImage",
    "build_multiseries_net",
    "check_series",
    "crop_box",
    "crops_from_planes",
    "multiseries_crops",
    "reference_planes",
    "resample_slices",
]

AIR_HU = -1024.0
Box = tuple[slice, slice]  # rows and columns of the reference grid
MULTISERIES_CONFIG: dict[str, Any] = {
    "arch": "densenet",
    "roles": ["portal-venous", "arterial", "delayed"],
    "reference_role": "portal-venous",
    "init_features": 8,
    "growth_rate": 8,
    "block_config": [2, 2, 2],
    "bn_size": 2,
    "crop_px": 48,
    "fov_factor": 2.0,
    "fov_min_mm": 20.0,
    "n_slices": 5,
    "window": [-115.0, 235.0],  # liver window W 350 / L 60; arterial hemangioma nodules (~225 HU) stay inside
}


class SeriesImage(Protocol):
    """What the classifier reads of a series: an :class:`imaging.series.Volume` has it."""

    hu: np.ndarray
    affine: np.ndarray  # 4x4, (k, j, i, 1) -> LPS mm
    spacing_mm: tuple[float, float, float]
    frame_of_reference_uid: str


class MissingSeriesError(ValueError):
    """A case lacks a series (a contrast phase) the multi-series classifier needs."""


def check_series(present_roles: Sequence[str], required_roles: Sequence[str], case_id: str | None = None) -> None:
    """Raise :class:`MissingSeriesError` naming the case (when given) and each required role it lacks."""
    missing = [r for r in required_roles if r not in set(present_roles)]
    if missing:
        raise MissingSeriesError(
            ("" if case_id is None else f"case {case_id}: ")
            + f"no {' and no '.join(missing)} series (the multi-series classifier needs "
            f"{', '.join(required_roles)}; the case has {', '.join(present_roles) or 'none'})"
        )


def crop_box(
    centre_ji: Sequence[float] | np.ndarray,
    diameter_mm: float,
    spacing_mm: Sequence[float],
    config: Mapping[str, Any],
    shape: Sequence[int],
    *,
    fov_scale: float = 1.0,
    margin_px: int = 8,
) -> Box:
    """The rows and columns of a ``shape`` grid that a crop around ``centre_ji`` (field of view times ``fov_scale``)
    reaches, plus ``margin_px`` (centre jitter, the anti-alias filter): all of the plane a crop needs."""
    fov = max(float(config["fov_min_mm"]), float(config["fov_factor"]) * float(diameter_mm)) * fov_scale
    box = []
    for c, step, n in zip(centre_ji, spacing_mm[-2:], shape[-2:], strict=True):
        half = fov / 2.0 / float(step) + margin_px
        box.append(slice(max(0, int(np.floor(float(c) - half))), min(int(n), int(np.ceil(float(c) + half)) + 1)))
    return box[0], box[1]


def resample_slices(
    source: SeriesImage, reference: SeriesImage, slices: Sequence[int], box: Box | None = None
) -> np.ndarray:
    """``source`` on the ``reference`` grid's ``slices`` (and only its ``box`` of rows and columns, default all):
    ``[len(slices), rows, cols]`` float32 HU, trilinear by patient position; uncovered voxels are :data:`AIR_HU`."""
    ref_uid, src_uid = reference.frame_of_reference_uid, source.frame_of_reference_uid
    if ref_uid and src_uid and ref_uid != src_uid:
        raise ValueError(
            f"series of different frames of reference ({src_uid} vs {ref_uid}): their patient coordinates do not "
            "correspond, and this classifier does no registration"
        )
    _, n_rows, n_cols = reference.hu.shape
    rows, cols = box if box is not None else (slice(0, n_rows), slice(0, n_cols))
    src_hu = np.asarray(source.hu)
    if np.allclose(source.affine, reference.affine) and src_hu.shape == reference.hu.shape:
        return src_hu[list(slices), rows, cols].astype(np.float32)  # the same grid: nothing to interpolate
    # reference (k, j, i) -> LPS -> source (k, j, i), one affine for the whole mapping
    to_source = np.linalg.inv(np.asarray(source.affine, dtype=float)) @ np.asarray(reference.affine, dtype=float)
    j_idx, i_idx = np.arange(n_rows)[rows], np.arange(n_cols)[cols]
    kk, jj, ii = np.meshgrid(np.asarray(slices, dtype=float), j_idx, i_idx, indexing="ij")
    ref_idx = np.stack([kk.ravel(), jj.ravel(), ii.ravel(), np.ones(kk.size)])
    idx = (to_source @ ref_idx)[:3]
    upper = np.array(src_hu.shape, dtype=float)[:, None] - 0.5
    outside = np.any((idx < -0.5) | (idx > upper), axis=0)
    # within half a voxel of the edge: the edge voxel (a slice stands for its whole thickness)
    idx = np.clip(idx, 0.0, upper - 0.5)
    vals = ndimage.map_coordinates(src_hu, idx, output=np.float32, order=1, mode="nearest")
    vals[outside] = AIR_HU
    return vals.reshape(len(slices), j_idx.size, i_idx.size)


def reference_planes(
    series: Mapping[str, SeriesImage],
    roles: Sequence[str],
    reference_role: str,
    slices: Sequence[int],
    box: Box | None = None,
) -> np.ndarray:
    """Each role's series on the reference series' ``slices`` (and ``box``): ``[len(roles), len(slices), rows,
    cols]`` float32 HU. Every role must be in ``series`` (else :class:`KeyError`)."""
    reference = series[reference_role]
    rows, cols = box if box is not None else (slice(None), slice(None))
    planes = [
        np.asarray(series[role].hu)[list(slices), rows, cols].astype(np.float32)
        if series[role] is reference
        else resample_slices(series[role], reference, slices, box)
        for role in roles
    ]
    return np.stack(planes)


def crops_from_planes(
    planes: np.ndarray,
    spacing_mm: Sequence[float],
    centre_ji: Sequence[float],
    diameter_mm: float,
    config: Mapping[str, Any],
    *,
    fov_scale: float = 1.0,
    shift_px: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """``[n_slices, channels, crop_px, crop_px]`` crops of ``planes`` (``[channels, n_slices, rows, cols]``) around
    the in-plane centre ``(row, column)``; every channel is cropped the same way."""
    j, i = (float(v) for v in centre_ji)
    n = planes.shape[1]
    crops = [
        extract_crops(
            channel,
            spacing_mm,
            (0.0, j, i),
            diameter_mm,
            dict(config),
            slices=range(n),
            fov_scale=fov_scale,
            shift_px=shift_px,
        )
        for channel in planes
    ]
    return np.concatenate(crops, axis=1)


def multiseries_crops(
    series: Mapping[str, SeriesImage],
    centre_index: Sequence[float] | np.ndarray,
    diameter_mm: float,
    config: Mapping[str, Any],
    *,
    z_range: tuple[int, int] | None = None,
) -> np.ndarray:
    """``[n_slices, len(roles), crop_px, crop_px]`` float32 crops; ``centre_index`` and ``z_range`` are on the
    reference series' grid. Every role of ``config["roles"]`` must be in ``series`` (else :class:`KeyError`)."""
    reference = series[str(config["reference_role"])]
    k, j, i = (float(v) for v in centre_index)
    spacing = tuple(float(s) for s in reference.spacing_mm)
    slices = crop_slices(k, z_range, diameter_mm, spacing[0], int(config["n_slices"]), reference.hu.shape[0])
    # only the part of the planes the crops reach: resampling whole planes took most of a case's classify time
    box = crop_box((j, i), diameter_mm, spacing, config, reference.hu.shape)
    planes = reference_planes(series, config["roles"], str(config["reference_role"]), slices, box)
    return crops_from_planes(planes, spacing, (j - box[0].start, i - box[1].start), diameter_mm, config)


def build_multiseries_net(config: Mapping[str, Any]) -> Any:
    """A 2D MONAI DenseNet with one input channel per role and one logit (random weights, never downloaded)."""
    if config["arch"] != "densenet":
        raise ValueError(f"unknown multi-series arch {config['arch']!r} (expected 'densenet')")
    from monai.networks.nets import DenseNet

    return DenseNet(
        spatial_dims=2,
        in_channels=len(config["roles"]),
        out_channels=1,
        init_features=int(config["init_features"]),
        growth_rate=int(config["growth_rate"]),
        block_config=tuple(config["block_config"]),
        bn_size=int(config.get("bn_size", 4)),
    )


class MultiSeriesClassifier:
    """A trained multi-series classifier (the weights layout of :mod:`inference.pipeline.model_card`).

    ``uses_series``: :func:`inference.pipeline.run.predict_case` passes every series of the case by role.
    """

    uses_series = True

    def __init__(self, weights: Path, device: str = "cpu", threads: int | None = 2) -> None:
        import torch

        self.weights_path = Path(weights)
        if not self.weights_path.is_file():
            raise FileNotFoundError(
                f"{self.weights_path}: multi-series classifier weights not found "
                "(train: python -m inference.pipeline.train_multiseries_classifier --data DIR --out DIR)"
            )
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
        self.weights_sha256 = file_sha256(self.weights_path)
        payload = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        self.config: dict[str, Any] = dict(payload["config"])
        self.name = str(payload.get("name", "multiseries-classifier"))
        self.version = str(payload.get("version", "0"))
        self.roles: list[str] = [str(r) for r in self.config["roles"]]
        self.reference_role = str(self.config["reference_role"])
        if threads and device == "cpu":
            torch.set_num_threads(threads)
        self.device = device
        self.net = build_multiseries_net(self.config)
        self.net.load_state_dict(payload["state_dict"])
        self.net.to(device).eval()

    def logits(self, crops: np.ndarray) -> np.ndarray:
        """One logit per crop position (``crops``: ``[n, len(roles), p, p]``)."""
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
        series: Mapping[str, SeriesImage] | None = None,
        primary_role: str | None = None,
    ) -> tuple[float, np.ndarray]:
        """``(probability of CRLM, per-crop logits)``: the sigmoid of the (Platt-scaled, when the model carries a
        calibration) mean logit.

        ``centre_index``, ``z_range`` (and ``hu``, ``spacing_mm``, unused: the reference series' own are) are on
        the grid of the series ``primary_role`` (default: the reference role); when that is not the reference
        series, the centre is carried over by patient position and the slice range estimated from the diameter.
        """
        series = dict(series or {})
        check_series(list(series), self.roles)
        primary_role = primary_role or self.reference_role
        if primary_role != self.reference_role:
            primary, reference = series[primary_role], series[self.reference_role]
            centre_index = _lps_to_index(reference, _index_to_lps(primary, centre_index))
            z_range = None
        crops = multiseries_crops(series, centre_index, diameter_mm, self.config, z_range=z_range)
        logit = self.logits(crops)
        return float(apply_platt(float(np.mean(logit)), self.config.get("calibration"))), logit


def _index_to_lps(image: SeriesImage, index: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(image.affine, dtype=float) @ np.array([*(float(v) for v in index), 1.0])


def _lps_to_index(image: SeriesImage, lps: np.ndarray) -> np.ndarray:
    return (np.linalg.inv(np.asarray(image.affine, dtype=float)) @ np.array([*lps[:3], 1.0]))[:3]
