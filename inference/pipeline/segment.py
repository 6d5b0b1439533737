"""Liver and lesion segmentation behind one small interface.

* :class:`TotalSegmentatorBackend`: the production path (a GPU node). TotalSegmentator runs in a subprocess of
  its own virtual environment (``$TOTALSEG_PYTHON``, default ``<repo>/.venv-totalseg/bin/python``): nnU-Net
  spawns workers, and its dependency tree does not coexist with the CPU torch of the main venv.
* :class:`PhantomUNetBackend`: a small MONAI 3D UNet trained on the synthetic phantoms
  (``python -m inference.pipeline.train_unet``) for the demo and the tests. It works on phantoms only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
from scipy import ndimage

from imaging.series import Volume

__all__ = [
    "TOTALSEG_MODELS",
    "TOTALSEG_VESSEL_MODEL",
    "PhantomUNetBackend",
    "Segmentation",
    "SegmentationBackend",
    "TotalSegmentatorBackend",
    "TotalSegmentatorError",
    "file_sha256",
    "lesion_from_probabilities",
    "liver_from_probabilities",
    "masks_from_probabilities",
    "min_input_shape",
    "missing_totalseg_weights",
    "totalseg_weights_dir",
]

REPO_ROOT = Path(__file__).resolve().parents[2]


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Boolean masks ``[z, y, x]`` on the volume's grid; the liver includes its lesions. ``vessel_mask``: the
    liver vessels, from backends that segment them (TotalSegmentator with ``vessels=True``), else None."""

    liver_mask: np.ndarray
    lesion_mask: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)  # backend details (timings, versions)
    vessel_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.liver_mask.shape != self.lesion_mask.shape or self.liver_mask.ndim != 3:
            raise ValueError(f"mask shapes {self.liver_mask.shape} and {self.lesion_mask.shape} differ or are not 3-D")
        if self.liver_mask.dtype != bool or self.lesion_mask.dtype != bool:
            raise ValueError("masks must be boolean")
        if self.vessel_mask is not None and (
            self.vessel_mask.shape != self.liver_mask.shape or self.vessel_mask.dtype != bool
        ):
            raise ValueError(
                f"vessel mask {self.vessel_mask.shape} {self.vessel_mask.dtype}: expected the liver's bool"
            )


@runtime_checkable
class SegmentationBackend(Protocol):
    """What :func:`inference.pipeline.run.predict_case` needs from a segmenter."""

    name: str
    version: str
    weights_sha256: str

    def segment(self, volume: Volume, workdir: Path) -> Segmentation:
        """Segment ``volume``; ``workdir`` is a scratch folder the backend may fill."""
        ...


# --------------------------------------------------------------------------- phantom UNet


class PhantomUNetBackend:
    """A small MONAI 3D UNet (background / liver / lesion) trained on synthetic phantoms.

    The weights file (``torch.save`` of a dict: ``state_dict``, ``config``, ``name``, ``version``) is identified
    by its SHA-256. Inputs are resampled to the training spacing when they differ by more than 5 %, run as one
    window (or sliding windows for large volumes), and the class probabilities resampled back. Volumes smaller
    than :func:`min_input_shape` (a thin series) are edge-padded to it and the output cropped back.
    """

    def __init__(self, weights: Path, device: str = "cpu", threads: int | None = 2) -> None:
        import torch

        self.weights_path = Path(weights)
        if not self.weights_path.is_file():
            raise FileNotFoundError(
                f"{self.weights_path}: UNet weights not found (train: python -m inference.pipeline.train_unet OUT.pt)"
            )
        self.weights_sha256 = file_sha256(self.weights_path)
        payload = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        self.config: dict[str, Any] = dict(payload["config"])
        self.name = str(payload.get("name", "phantom-unet"))
        self.version = str(payload.get("version", "0"))
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
        self.device = device
        if threads and device == "cpu":
            torch.set_num_threads(threads)
        self.net = build_unet(self.config)
        self.net.load_state_dict(payload["state_dict"])
        self.net.to(device).eval()

    def predict_probabilities(self, hu: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
        """Class probabilities ``[3, z, y, x]`` (float32) on the input grid."""
        import torch
        from monai.inferers import sliding_window_inference

        model_spacing = np.array(self.config["spacing_mm"], dtype=float)
        zoom = np.asarray(spacing_mm, dtype=float) / model_spacing
        resample = bool(np.any(np.abs(zoom - 1.0) > 0.05))
        x = normalise_hu(np.asarray(hu, dtype=np.float32), self.config)
        if resample:
            # at least one voxel per axis: a single slice finer than the model's spacing must not vanish
            x = ndimage.zoom(x, np.maximum(zoom, 1.0 / np.array(x.shape)), order=1)
        # A thin series (a few slices, or a tiny matrix) would reach the instance norms with one voxel left
        # ("Expected more than 1 spatial element"): edge-pad it to the network's minimum, crop the output back.
        minimum = min_input_shape(self.config)
        short = [max(m - s, 0) for s, m in zip(x.shape, minimum, strict=True)]
        pads = [(n // 2, n - n // 2) for n in short]
        if any(sum(p) for p in pads):
            x = np.pad(x, pads, mode="edge")
        down = downsampling(self.config)
        roi = tuple(int(min(r, -(-s // f) * f)) for r, s, f in zip(self.config["roi_size"], x.shape, down, strict=True))
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x))[None, None].to(self.device)
            logits = sliding_window_inference(
                t, roi, sw_batch_size=1, predictor=self.net, overlap=0.25, mode="gaussian"
            )
            # The predictor returns one tensor, so the inference does (MONAI's annotation admits tuples and dicts).
            prob = torch.softmax(cast(torch.Tensor, logits), dim=1)[0].float().cpu().numpy()
        prob = prob[(slice(None), *(slice(lo, n - hi) for (lo, hi), n in zip(pads, prob.shape[1:], strict=True)))]
        if resample:
            factors = [1.0] + [o / p for o, p in zip(hu.shape, prob.shape[1:], strict=True)]
            prob = ndimage.zoom(prob, factors, order=1)
            prob = _fit_shape(prob, (prob.shape[0], *hu.shape))
        return prob

    def segment(self, volume: Volume, workdir: Path | None = None) -> Segmentation:
        t0 = time.perf_counter()
        liver, lesion = masks_from_probabilities(
            self.predict_probabilities(volume.hu, volume.spacing_mm), self.config.get("lesion_threshold")
        )
        return Segmentation(
            liver_mask=liver,
            lesion_mask=lesion,
            info={"backend": self.name, "seconds": time.perf_counter() - t0, "device": self.device},
        )


def masks_from_probabilities(prob: np.ndarray, lesion_threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(liver, lesion)`` boolean masks from the UNet's ``[3, z, y, x]`` class probabilities
    (:func:`liver_from_probabilities`, then :func:`lesion_from_probabilities`)."""
    liver = liver_from_probabilities(prob)
    return liver, lesion_from_probabilities(prob, liver, lesion_threshold)


def liver_from_probabilities(prob: np.ndarray) -> np.ndarray:
    """The argmax's largest liver component with its holes filled (lesions enclosed by the liver stay liver)."""
    return ndimage.binary_fill_holes(largest_component(np.argmax(prob, axis=0) >= 1))


def lesion_from_probabilities(prob: np.ndarray, liver: np.ndarray, lesion_threshold: float | None = None) -> np.ndarray:
    """The lesion voxels inside ``liver``: where lesion is the argmax or, with ``lesion_threshold`` (a weights file's
    ``config["lesion_threshold"]``, chosen on tuning phantoms), where the lesion probability reaches it. A small
    lesion's probability peaks below the argmax's 1/2 to 1/3 more often than a large one's."""
    if lesion_threshold is None:
        return (np.argmax(prob, axis=0) == 2) & liver
    if not 0.0 < lesion_threshold < 1.0:
        raise ValueError(f"lesion_threshold must lie in (0, 1), not {lesion_threshold}")
    return (prob[2] >= lesion_threshold) & liver


def build_unet(config: dict[str, Any]) -> Any:
    """The MONAI UNet described by a weights file's ``config``."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=int(config.get("out_channels", 3)),
        channels=tuple(config["channels"]),
        # An int or one per axis: MONAI's annotation says int, its convolutions take both.
        strides=cast(Any, tuple(tuple(s) if isinstance(s, list | tuple) else int(s) for s in config["strides"])),
        num_res_units=int(config.get("num_res_units", 1)),
    )


def downsampling(config: dict[str, Any]) -> tuple[int, int, int]:
    """The UNet's total downsampling per axis ``(z, y, x)``: the product of its strides (each an int for all axes,
    or one per axis: a first stride of ``[1, 2, 2]`` keeps the full slice resolution for thin lesions)."""
    per_axis = np.array([np.broadcast_to(np.asarray(s, dtype=int), (3,)) for s in config["strides"]])
    z, y, x = (int(v) for v in per_axis.prod(axis=0))
    return z, y, x


def min_input_shape(config: dict[str, Any]) -> tuple[int, int, int]:
    """The smallest ``(z, y, x)`` the UNet takes: two voxels per axis left after all its downsamplings."""
    z, y, x = downsampling(config)
    return 2 * z, 2 * y, 2 * x


def normalise_hu(hu: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """Clip HU to the model's window and scale to about [-1, 1] (float32)."""
    lo, hi = config.get("hu_window", (-160.0, 240.0))
    out = np.clip(hu.astype(np.float32), lo, hi)
    return (out - (lo + hi) / 2) / ((hi - lo) / 2)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (empty stays empty)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _fit_shape(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Crop or edge-pad ``arr`` to ``shape`` (zoom may be off by one voxel)."""
    out = arr[tuple(slice(0, s) for s in shape)]
    pad = [(0, s - o) for s, o in zip(shape, out.shape, strict=True)]
    return np.pad(out, pad, mode="edge") if any(p[1] for p in pad) else out


# --------------------------------------------------------------------------- TotalSegmentator

#: The nnU-Net model folders the two TotalSegmentator calls need: task id -> (Dataset folder, trainer/config).
TOTALSEG_MODELS: dict[int, tuple[str, str, str]] = {
    297: (
        "Dataset297_TotalSegmentator_total_3mm_1559subj",
        "nnUNetTrainer_4000epochs_NoMirroring__nnUNetPlans__3d_fullres",
        "total_fast",
    ),
    591: ("Dataset591_ct_liver_lesions_842subj", "nnUNetTrainer__nnUNetPlans__3d_fullres_high", "liver_lesions"),
}


#: The ``liver_vessels`` task (opt-in, ``TotalSegmentatorBackend(vessels=True)``): model 8 (hepatic vessels and
#: liver tumour; we keep the vessels), applied inside the liver crop of model 297 like ``liver_lesions`` (the
#: runner asks for ``robust_crop``: TotalSegmentator's default crop for this task is the 6 mm model 298).
TOTALSEG_VESSEL_MODEL: dict[int, tuple[str, str, str]] = {
    8: ("Dataset008_HepaticVessel", "nnUNetTrainer__nnUNetPlans__3d_fullres", "liver_vessels"),
}


def _totalseg_models(vessels: bool) -> dict[int, tuple[str, str, str]]:
    return {**TOTALSEG_MODELS, **(TOTALSEG_VESSEL_MODEL if vessels else {})}


class TotalSegmentatorError(RuntimeError):
    """TotalSegmentator cannot run (missing venv or weights) or failed; the message says what to do."""


def totalseg_weights_dir(env: dict[str, str] | None = None) -> Path:
    """Where TotalSegmentator looks for nnU-Net model folders (same rule as ``totalsegmentator.config``)."""
    env = dict(os.environ) if env is None else env
    if env.get("TOTALSEG_WEIGHTS_PATH"):
        return Path(env["TOTALSEG_WEIGHTS_PATH"])
    home = Path(env["TOTALSEG_HOME_DIR"]) if env.get("TOTALSEG_HOME_DIR") else Path.home() / ".totalsegmentator"
    return home / "nnunet" / "results"


def missing_totalseg_weights(weights_dir: Path, *, vessels: bool = False) -> list[str]:
    """Model files absent under ``weights_dir``, as paths relative to it (empty when all are there); with
    ``vessels`` the ``liver_vessels`` model's too."""
    missing = []
    for dataset, trainer_dir, _ in _totalseg_models(vessels).values():
        for rel in (
            f"{dataset}/{trainer_dir}/plans.json",
            f"{dataset}/{trainer_dir}/dataset.json",
            f"{dataset}/{trainer_dir}/fold_0/checkpoint_final.pth",
        ):
            if not (Path(weights_dir) / rel).is_file():
                missing.append(rel)
    return missing


class TotalSegmentatorBackend:
    """TotalSegmentator 2.x: ``total --fast`` (liver = label 5) and ``liver_lesions``, in a subprocess.

    Weights are never downloaded here: :meth:`check` lists any missing Dataset folder and how to install it.
    The weights identity (:attr:`weights_sha256`) is the SHA-256 of the two ``checkpoint_final.pth`` hashes.
    With ``vessels=True`` a third call, ``liver_vessels`` (model 8, its hash joins the identity), fills
    :attr:`Segmentation.vessel_mask`.
    """

    name = "totalsegmentator-liver"

    def __init__(
        self,
        *,
        python: Path | None = None,
        home_dir: Path | None = None,
        weights_dir: Path | None = None,
        device: str = "cpu",
        threads: int = 2,
        timeout_s: float = 3600.0,
        vessels: bool = False,
    ) -> None:
        self.python = Path(
            python or os.environ.get("TOTALSEG_PYTHON") or REPO_ROOT / ".venv-totalseg" / "bin" / "python"
        )
        env = dict(os.environ)
        if home_dir is not None:
            env["TOTALSEG_HOME_DIR"] = str(home_dir)
        if weights_dir is not None:
            env["TOTALSEG_WEIGHTS_PATH"] = str(weights_dir)
        self.env = env
        self.weights_dir = totalseg_weights_dir(env)
        self.device = device
        self.threads = threads
        self.timeout_s = timeout_s
        self.vessels = vessels
        self.check()
        self.version = self._version()
        digests = [
            file_sha256(self.weights_dir / d / t / "fold_0" / "checkpoint_final.pth")
            for d, t, _ in _totalseg_models(vessels).values()
        ]
        self.weights_sha256 = hashlib.sha256("".join(digests).encode()).hexdigest()

    def check(self) -> None:
        """Raise :class:`TotalSegmentatorError` unless the venv and every model folder are present."""
        if not self.python.exists():
            raise TotalSegmentatorError(
                f"TotalSegmentator python not found at {self.python}. Create the venv: "
                "python3 -m venv .venv-totalseg && .venv-totalseg/bin/pip install torch==2.13.0 && "
                ".venv-totalseg/bin/pip install -r requirements-totalseg.txt "
                "-c constraints-totalseg.txt (or set TOTALSEG_PYTHON)"
            )
        missing = missing_totalseg_weights(self.weights_dir, vessels=self.vessels)
        if missing:
            folders = sorted({m.split("/")[0] for m in missing})
            raise TotalSegmentatorError(
                f"TotalSegmentator weights missing under {self.weights_dir} (TOTALSEG_WEIGHTS_PATH, else "
                f"$TOTALSEG_HOME_DIR/nnunet/results):\n"
                + "\n".join(f"  - {m}" for m in missing)
                + f"\nMissing Dataset folders: {', '.join(folders)}.\n"
                "This machine cannot download them. On a machine with internet: pip install TotalSegmentator==2.18.0, "
                "then `TOTALSEG_HOME_DIR=/tmp/ts totalseg_download_weights -t liver_lesions` and "
                "`TOTALSEG_HOME_DIR=/tmp/ts totalseg_download_weights -t total_fast` (liver_lesions does not fetch "
                "model 297, which it uses to crop the liver)"
                + (
                    ", and `TOTALSEG_HOME_DIR=/tmp/ts totalseg_download_weights -t liver_vessels`"
                    if self.vessels
                    else ""
                )
                + ", and copy the Dataset folders from "
                "/tmp/ts/nnunet/results/ "
                f"into {self.weights_dir}/."
            )

    def _version(self) -> str:
        try:
            out = subprocess.run(
                [str(self.python), "-c", "import importlib.metadata as m; print(m.version('TotalSegmentator'))"],
                capture_output=True,
                text=True,
                timeout=120,
                env=self.env,
                check=True,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            raise TotalSegmentatorError(f"{self.python}: cannot import TotalSegmentator ({exc})") from exc
        return out.stdout.strip()

    def segment(self, volume: Volume, workdir: Path | None = None) -> Segmentation:
        own = workdir is None
        work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="totalseg-"))
        work.mkdir(parents=True, exist_ok=True)
        try:
            np.save(work / "hu.npy", np.asarray(volume.hu))
            np.save(work / "affine_ras_ijk.npy", volume.ras_ijk_affine())
            runner = Path(__file__).with_name("totalseg_runner.py")
            env = dict(self.env)
            env.setdefault("OMP_NUM_THREADS", str(self.threads))
            t0 = time.perf_counter()
            args = [str(self.python), str(runner), str(work), "--device", self.device, "--threads", str(self.threads)]
            proc = subprocess.run(
                [*args, "--vessels"] if self.vessels else args,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                env=env,
                cwd=work,  # a folder named "dl" in the cwd breaks pydicom via gdcm: run in the scratch folder
            )
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                tail = (proc.stdout[-2000:] + "\n" + proc.stderr[-4000:]).strip()
                raise TotalSegmentatorError(f"TotalSegmentator failed (exit {proc.returncode}):\n{tail}")
            liver = np.load(work / "liver.npy")
            lesions = np.load(work / "lesions.npy")
            vessels = np.load(work / "vessels.npy") if self.vessels else None
            info = json.loads((work / "result.json").read_text())
        finally:
            if own:
                shutil.rmtree(work, ignore_errors=True)
        if liver.shape != volume.shape:
            raise TotalSegmentatorError(f"TotalSegmentator returned shape {liver.shape}, expected {volume.shape}")
        info.update({"backend": self.name, "seconds": seconds})
        # liver_lesions may mark lesions at the liver's edge that model 297 left out of the liver: count them in.
        return Segmentation(liver_mask=liver | lesions, lesion_mask=lesions, info=info, vessel_mask=vessels)
