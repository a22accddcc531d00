"""Model adapter: trainer variants load, folds, mirroring, labels."""
import numpy as np
import torch

from ShapSegExplainLib.nnunet.model import load_model
from fixtures.model_folder import ModelSpec, write_model_folder


def test_trainer_variant_loads_through_nnunets_trainer_search(tmp_path):
    """TotalSegmentator's trainer: nnU-Net's trainer search imports timm -> torchvision."""
    spec = ModelSpec(patch_size=(16, 32, 32), features=(4, 8, 16), trainer_name="nnUNetTrainer_4000epochs_NoMirroring",
                     mirroring_axes=None)
    model = load_model(write_model_folder(tmp_path / "ts", spec), device="cpu")
    assert model.predictor.trainer_name == "nnUNetTrainer_4000epochs_NoMirroring"
    assert model.mirror_axes is None and model.passes_per_tile == 1
    import torchvision  # noqa: F401  - the pairing the project pins


def test_folds_mirroring_and_labels(model_dirs):
    model = load_model(model_dirs["two_folds"], device="cpu")
    assert model.folds == [0, 1] and len(model.networks) == 2
    assert model.passes_per_tile == 8 * 2
    assert load_model(model_dirs["two_folds"], folds=["1"], mirroring=False, device="cpu").passes_per_tile == 1
    assert model.labels == {"background": 0, "liver": 1, "kidney": 2}
    assert model.label_name(2) == "kidney"


def test_dataset_folder_with_several_configurations_resolves(tmp_path, model_dirs):
    import shutil
    for cfg in ("3d_fullres", "3d_lowres"):
        shutil.copytree(model_dirs["one_fold"], tmp_path / f"nnUNetTrainer__nnUNetPlans__{cfg}")
    model = load_model(tmp_path, device="cpu")
    assert model.model_dir.name.endswith("3d_fullres")
    assert load_model(tmp_path, configuration="3d_lowres", device="cpu").model_dir.name.endswith("3d_lowres")


def test_forward_weighted_is_nnunets_tile_computation(model_dirs):
    model = load_model(model_dirs["one_fold"], device="cpu", batch_size=1)
    x = torch.randn(1, 1, *model.patch_size)
    ours = model.forward_weighted(x)[0, 0]
    p = model.predictor
    with torch.inference_mode():
        ref = p._internal_maybe_mirror_and_predict(x)[0]
        ref *= model.gaussian()
    assert torch.equal(ours, ref)
    assert p.network is not model.networks[0]            # the predictor's own network is left alone
    assert np.isfinite(ours.numpy()).all()
