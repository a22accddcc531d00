"""The trainer lookup on both nnU-Net lines the module meets: 2.7+ (``find_objects``) and 2.6,
which pip installs beside the torch 2.9 that Slicer's PyTorch extension picks (nnunetv2 2.8
excludes torch 2.9; ``benchmarks/slicer_env/install_check.py``)."""
import sys

from ShapSegExplainLib.nnunet.model import find_trainer_class


def test_the_trainer_is_found_with_and_without_find_objects(monkeypatch):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    assert find_trainer_class("nnUNetTrainer") is nnUNetTrainer
    monkeypatch.setitem(sys.modules, "nnunetv2.utilities.find_objects", None)   # as in nnunetv2 2.6
    assert find_trainer_class("nnUNetTrainer") is nnUNetTrainer
    assert find_trainer_class("NoSuchTrainer") is None
