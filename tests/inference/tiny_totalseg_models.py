"""Write tiny nnU-Net v2 model folders in TotalSegmentator's layout (run with the .venv-totalseg python).

    .venv-totalseg/bin/python tests/inference/tiny_totalseg_models.py WEIGHTS_DIR

Three models, the ones :class:`inference.pipeline.segment.TotalSegmentatorBackend` needs (the third only with
``vessels=True``):

* 297 (``total --fast``, 3 mm): 118 classes. Its weights are set by hand (not trained, not random) so that the
  output is a known function of the intensity: class 5 ("liver") where 40 < HU < 140, class 1 where HU > 140,
  background below. That makes the plumbing test able to check orientation and resampling: the liver mask
  must coincide with the HU band of the input.
* 591 (``liver_lesions``, 0.75 x 0.75 x 1 mm, applied inside TotalSegmentator's liver crop): class 1 where
  HU > 140.
* 8 (``liver_vessels``, set here to 3 mm for speed, same crop): class 1 ("liver_vessels") where HU > 140.

How: a PlainConvUNet without normalisation layers; the first encoder conv copies the (CT-normalised) input
plus a constant into channel 0, the last decoder conv copies that skip channel, and the 1x1x1 segmentation
layer turns it into per-class linear scores, whose argmax is the band. Everything else is zero.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet

MEAN, STD = 100.0, 200.0  # CTNormalization: (clip(HU, p0.5, p99.5) - mean) / std
OFFSET = 8.0  # keeps channel 0 positive so LeakyReLU passes it unchanged
FEATURES = [4, 8, 16]


def _norm(hu: float) -> float:
    return (hu - MEAN) / STD


def _plans(dataset: str, config: str, spacing: list[float], patch: list[int]) -> dict:
    arch = {
        "n_stages": 3,
        "features_per_stage": FEATURES,
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3]] * 3,
        "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        "n_conv_per_stage": [1, 1, 1],
        "n_conv_per_stage_decoder": [1, 1],
        "conv_bias": True,
        "norm_op": None,
        "norm_op_kwargs": None,
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    resample = {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None}
    return {
        "dataset_name": dataset,
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": spacing,
        "original_median_shape_after_transp": [64, 64, 64],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            config: {
                "data_identifier": f"tiny_{config}",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": patch,
                "median_image_size_in_voxels": [64, 64, 64],
                "spacing": spacing,
                "normalization_schemes": ["CTNormalization"],
                "use_mask_for_norm": [False],
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": resample,
                "resampling_fn_seg_kwargs": {**resample, "is_seg": True},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": resample,
                "architecture": {
                    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                    "arch_kwargs": arch,
                    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
                },
                "batch_dice": False,
            }
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {
                "max": 3071.0,
                "mean": MEAN,
                "median": MEAN,
                "min": -1024.0,
                "percentile_00_5": -1000.0,
                "percentile_99_5": 1000.0,
                "std": STD,
            }
        },
    }


def _network(n_classes: int, scores: dict[int, tuple[float, float]]) -> PlainConvUNet:
    """Class ``c`` scores ``a * x + b`` for ``scores[c] = (a, b)`` with ``x`` the normalised input; others -1e3."""
    net = PlainConvUNet(
        1,
        3,
        FEATURES,
        torch.nn.Conv3d,
        [[3, 3, 3]] * 3,
        [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        [1, 1, 1],
        n_classes,
        [1, 1],
        True,
        None,
        None,
        None,
        None,
        torch.nn.LeakyReLU,
        {"inplace": True},
        deep_supervision=False,
    )
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        first = net.encoder.stages[0][0].convs[0].conv
        first.weight[0, 0, 1, 1, 1] = 1.0
        first.bias[0] = OFFSET
        last = net.decoder.stages[-1].convs[0].conv  # input: cat(upsampled [4 ch], skip of stage 0 [4 ch])
        last.weight[0, FEATURES[0], 1, 1, 1] = 1.0
        seg = net.decoder.seg_layers[-1]
        seg.bias[:] = -1e3
        for c, (a, b) in scores.items():
            seg.weight[c, 0, 0, 0, 0] = a
            seg.bias[c] = b - a * OFFSET
    return net


def write_model(
    root: Path,
    dataset: str,
    trainer: str,
    config: str,
    spacing: list[float],
    labels: dict[str, int],
    scores: dict[int, tuple[float, float]],
) -> Path:
    folder = root / dataset / f"{trainer}__nnUNetPlans__{config}"
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(_plans(dataset, config, spacing, [32, 64, 64]), indent=1))
    (folder / "dataset.json").write_text(
        json.dumps(
            {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 1, "file_ending": ".nii.gz"}, indent=1
        )
    )
    net = _network(len(labels), scores)
    torch.save(
        {
            "network_weights": net.state_dict(),
            "trainer_name": trainer,
            "init_args": {"configuration": config},
            "inference_allowed_mirroring_axes": None,
        },
        folder / "fold_0" / "checkpoint_final.pth",
    )
    return folder


def main(root: Path) -> None:
    from totalsegmentator.map_to_binary import class_map

    total = {"background": 0, **{name: int(k) for k, name in class_map["total"].items()}}
    lo, hi, mid = _norm(40.0), _norm(140.0), (_norm(40.0) + _norm(140.0)) / 2
    # background 0; liver (5) = x - lo; class 1 = 2 (x - mid): the argmax is 5 exactly on lo < x < hi, 1 above hi
    write_model(
        root,
        "Dataset297_TotalSegmentator_total_3mm_1559subj",
        "nnUNetTrainer_4000epochs_NoMirroring",
        "3d_fullres",
        [3.0, 3.0, 3.0],
        total,
        {0: (0.0, 0.0), 5: (1.0, -lo), 1: (2.0, -2 * mid)},
    )
    write_model(
        root,
        "Dataset591_ct_liver_lesions_842subj",
        "nnUNetTrainer",
        "3d_fullres_high",
        [1.0, 0.75, 0.75],
        {"background": 0, "liver_lesions": 1},
        {0: (0.0, 0.0), 1: (1.0, -hi)},
    )
    write_model(
        root,
        "Dataset008_HepaticVessel",
        "nnUNetTrainer",
        "3d_fullres",
        [3.0, 3.0, 3.0],
        {"background": 0, "liver_vessels": 1, "liver_tumor": 2},
        {0: (0.0, 0.0), 1: (1.0, -hi)},
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
