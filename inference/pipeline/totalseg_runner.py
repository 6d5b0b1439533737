"""Run TotalSegmentator on one volume: executed by ``$TOTALSEG_PYTHON`` (the separate ``.venv-totalseg``).

Standalone on purpose: it imports nothing from this repository (the TotalSegmentator venv does not have our
packages) and is started as a script by :class:`inference.pipeline.segment.TotalSegmentatorBackend`::

    $TOTALSEG_PYTHON inference/pipeline/totalseg_runner.py WORKDIR [--device cpu|cuda]

``WORKDIR/hu.npy`` (``[z, y, x]``) and ``WORKDIR/affine_ras_ijk.npy`` (NIfTI affine of the array transposed to
``[x, y, z]``) go in; ``WORKDIR/liver.npy``, ``WORKDIR/lesions.npy`` (bool ``[z, y, x]``) and
``WORKDIR/result.json`` (versions, timings) come out. Two TotalSegmentator calls: ``total --fast`` (model 297,
liver = label 5) and ``liver_lesions`` (model 591, which crops the liver with model 297 itself); with
``--vessels`` a third, ``liver_vessels`` (model 8, label 1 = vessels; its liver crop by model 297 through
``robust_crop``, where TotalSegmentator's default would need the 6 mm model 298), writes ``WORKDIR/vessels.npy``.

nnU-Net starts worker processes with ``spawn``, so this must run as ``__main__`` in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

LIVER_LABEL_TOTAL = 5  # TotalSegmentator "total": 5 = liver
LESION_LABEL = 1  # "liver_lesions": one class
VESSEL_LABEL = 1  # "liver_vessels": 1 liver_vessels, 2 liver_tumor


def _register_trainers() -> None:
    """Hand nnU-Net the trainer classes the liver tasks need, so it never walks its trainer package.

    nnU-Net finds a trainer by importing every module under nnunetv2.training.nnUNetTrainer until one defines
    the name; one of them (primus) imports timm -> torchvision, which does not import on the CPU torch. The
    classes below are imported directly and placed in TotalSegmentator's own trainer table, which its
    monkey-patched lookup consults first.
    """
    import totalsegmentator.nnunet as ts_nnunet
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import (
        nnUNetTrainerNoMirroring,
    )
    from nnunetv2.training.nnUNetTrainer.variants.training_length.nnUNetTrainer_Xepochs_NoMirroring import (
        nnUNetTrainer_4000epochs_NoMirroring,
    )

    ts_nnunet.custom_trainers.update(
        {
            "nnUNetTrainer": nnUNetTrainer,
            "nnUNetTrainerNoMirroring": nnUNetTrainerNoMirroring,
            "nnUNetTrainer_4000epochs_NoMirroring": nnUNetTrainer_4000epochs_NoMirroring,
        }
    )


def _disable_usage_stats() -> None:
    from totalsegmentator.config import set_config_key, setup_totalseg

    setup_totalseg()  # creates $TOTALSEG_HOME_DIR/config.json if missing
    set_config_key("send_usage_stats", False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("TOTALSEG_THREADS", "2")))
    parser.add_argument("--vessels", action="store_true", help="also run liver_vessels")
    args = parser.parse_args(argv)

    import nibabel as nib
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    _disable_usage_stats()
    _register_trainers()
    from totalsegmentator.config import get_version
    from totalsegmentator.python_api import totalsegmentator

    work: Path = args.workdir
    hu = np.load(work / "hu.npy")
    affine = np.load(work / "affine_ras_ijk.npy")
    # NIfTI arrays are indexed [i, j, k] = [x, y, z]: transpose our [z, y, x].
    image = nib.Nifti1Image(np.ascontiguousarray(hu.transpose(2, 1, 0)).astype(np.float32), affine)
    image.header.set_xyzt_units("mm")
    nifti = work / "ct.nii.gz"
    nib.save(image, nifti)
    device = "gpu" if args.device == "cuda" else "cpu"
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    total = totalsegmentator(
        nifti, None, task="total", fast=True, device=device, quiet=True, nr_thr_resamp=1, nr_thr_saving=1
    )
    timings["total_fast"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    lesions = totalsegmentator(
        nifti, None, task="liver_lesions", device=device, quiet=True, nr_thr_resamp=1, nr_thr_saving=1
    )
    timings["liver_lesions"] = time.perf_counter() - t0
    vessels = None
    if args.vessels:
        t0 = time.perf_counter()
        # robust_crop: crop the liver with model 297 (3 mm), as liver_lesions does, not the default 6 mm model 298
        vessels = totalsegmentator(
            nifti, None, task="liver_vessels", device=device, quiet=True, nr_thr_resamp=1, nr_thr_saving=1,
            robust_crop=True,
        )  # fmt: skip
        timings["liver_vessels"] = time.perf_counter() - t0

    def back(img: nib.Nifti1Image, label: int) -> np.ndarray:
        data = np.asarray(img.dataobj)
        if data.shape != image.shape:
            raise RuntimeError(f"TotalSegmentator returned shape {data.shape}, input was {image.shape}")
        if not np.allclose(img.affine, image.affine, atol=1e-3):
            raise RuntimeError("TotalSegmentator returned a different affine than the input")
        return np.ascontiguousarray((data == label).transpose(2, 1, 0))

    np.save(work / "liver.npy", back(total, LIVER_LABEL_TOTAL))
    np.save(work / "lesions.npy", back(lesions, LESION_LABEL))
    if vessels is not None:
        np.save(work / "vessels.npy", back(vessels, VESSEL_LABEL))
    (work / "result.json").write_text(
        json.dumps(
            {
                "totalsegmentator_version": get_version(),
                "torch_version": torch.__version__,
                "device": args.device,
                "timings_s": timings,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
