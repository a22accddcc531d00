"""Write small nnU-Net v2 results folders (plans.json, dataset.json, fold_*/checkpoint).

Used by the tests and benchmarks to get real nnU-Net model folders, in nnU-Net's
own on-disk format, without training: the network is built by nnU-Net's own
``get_network_from_plans`` and saved with random (seeded) weights.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

CT_INTENSITIES = {"mean": 40.0, "std": 180.0, "percentile_00_5": -1000.0, "percentile_99_5": 1200.0,
                  "median": 30.0, "min": -1024.0, "max": 3000.0}


@dataclass
class ModelSpec:
    """What a synthetic model folder looks like."""
    labels: dict[str, int] = field(default_factory=lambda: {"background": 0, "liver": 1, "kidney": 2})
    patch_size: Sequence[int] = (16, 32, 32)
    spacing: Sequence[float] = (3.0, 1.5, 1.5)
    features: Sequence[int] = (8, 16, 32)
    strides: Sequence[Sequence[int]] | None = None
    folds: Sequence[int] = (0,)
    configuration: str = "3d_fullres"
    trainer_name: str = "nnUNetTrainer"
    mirroring_axes: Sequence[int] | None = (0, 1, 2)
    transpose_forward: Sequence[int] = (0, 1, 2)
    normalization: str = "CTNormalization"
    intensities: dict = field(default_factory=lambda: dict(CT_INTENSITIES))
    seed: int = 0


def _strides(spec: ModelSpec) -> list[list[int]]:
    if spec.strides is not None:
        return [list(s) for s in spec.strides]
    out, size = [[1, 1, 1]], list(spec.patch_size)
    for _ in range(len(spec.features) - 1):
        s = [2 if n % 2 == 0 and n >= 8 else 1 for n in size]
        size = [n // k for n, k in zip(size, s)]
        out.append(s)
    return out


def plans_dict(spec: ModelSpec) -> dict:
    """A plans.json in nnU-Net v2's format with one 3D configuration."""
    n = len(spec.features)
    arch = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": n, "features_per_stage": list(spec.features),
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3]] * n, "strides": _strides(spec),
            "n_conv_per_stage": [2] * n, "n_conv_per_stage_decoder": [2] * (n - 1),
            "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    config = {
        "data_identifier": f"nnUNetPlans_{spec.configuration}", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2, "patch_size": list(spec.patch_size), "median_image_size_in_voxels": [64, 64, 64],
        "spacing": list(spec.spacing), "normalization_schemes": [spec.normalization],
        "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": arch, "batch_dice": False,
    }
    backward = [list(spec.transpose_forward).index(i) for i in range(3)]
    return {
        "dataset_name": "Dataset999_Synthetic", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(spec.spacing),
        "original_median_shape_after_transp": [64, 64, 64],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": list(spec.transpose_forward), "transpose_backward": backward,
        "configurations": {spec.configuration: config},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": dict(spec.intensities)},
    }


def dataset_dict(spec: ModelSpec) -> dict:
    """A dataset.json in nnU-Net v2's format (one CT channel)."""
    return {"channel_names": {"0": "CT"}, "labels": dict(spec.labels), "numTraining": 0,
            "file_ending": ".nii.gz"}


def write_model_folder(folder: Path | str, spec: ModelSpec | None = None) -> Path:
    """Write plans.json, dataset.json and one random-weight checkpoint per fold."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    spec = spec or ModelSpec()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plans = plans_dict(spec)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset_dict(spec), indent=2))
    arch = plans["configurations"][spec.configuration]["architecture"]
    for i, fold in enumerate(spec.folds):
        torch.manual_seed(spec.seed * 1000 + i)
        net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     1, len(spec.labels), allow_init=True, deep_supervision=False)
        _randomise_norm_affine(net, spec.seed * 1000 + i)
        ckpt = {"network_weights": net.state_dict(),
                "init_args": {"configuration": spec.configuration, "fold": fold},
                "trainer_name": spec.trainer_name,
                "inference_allowed_mirroring_axes": tuple(spec.mirroring_axes) if spec.mirroring_axes else None}
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(ckpt, folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder


def _randomise_norm_affine(net: torch.nn.Module, seed: int) -> None:
    """Give InstanceNorm affine parameters and the output bias some spread so random nets
    predict every class somewhere (nnU-Net initialises them to 1 and 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.InstanceNorm3d) and m.affine:
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
