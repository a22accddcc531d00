"""The engine against nnUNetPredictor on the same input: bitwise, perturbed or not."""
import numpy as np
import pytest
import torch

from helpers import perturbed_data, random_coalitions, reference_logits, synthetic_ct
from ShapSegExplainLib.nnunet.case import prepare_case
from ShapSegExplainLib.nnunet.evaluator import CoalitionEvaluator, plan_roi
from ShapSegExplainLib.nnunet.model import load_model
from fixtures.partitions import block_players

CASES = {
    # name: (model, mirroring, CT shape zyx, CT spacing xyz)
    "mirroring": ("one_fold", True, (20, 36, 36), (1.5, 1.5, 3.0)),
    "no_mirroring": ("one_fold", False, (20, 36, 36), (1.5, 1.5, 3.0)),
    "two_fold_ensemble": ("two_folds", True, (20, 36, 36), (1.5, 1.5, 3.0)),
    "smaller_than_patch": ("one_fold", True, (10, 20, 26), (1.5, 1.5, 3.0)),
    "anisotropic_resampled": ("aniso", True, (14, 40, 30), (1.0, 1.0, 2.5)),
}


def _setup(model_dirs, name, batch_size=1):
    model_name, mirroring, shape, spacing = CASES[name]
    model = load_model(model_dirs[model_name], mirroring=mirroring, device="cpu", batch_size=batch_size)
    case = prepare_case(synthetic_ct(shape, spacing, seed=len(name)), model)
    roi = np.zeros(case.shape, bool)
    c = np.array(case.shape) // 2
    roi[c[0] - 2:c[0] + 3, c[1] - 4:c[1] + 5, c[2] - 3:c[2] + 4] = True
    plan = plan_roi(model, case, roi)
    pmap, m = block_players(plan, case.spacing, block_mm=9.0)
    return model, case, roi, plan, pmap, m


@pytest.mark.parametrize("name", list(CASES))
def test_unperturbed_equals_nnunet_bitwise(model_dirs, name):
    model, case, roi, plan, pmap, m = _setup(model_dirs, name)
    ev = CoalitionEvaluator(model, case, plan, pmap, m)
    ours = ev.evaluate(np.ones((1, m), bool))[0]
    ref = reference_logits(case)[:, roi]
    assert ours.dtype == ref.dtype == torch.float16
    assert torch.equal(ours, ref)
    if name == "smaller_than_patch":
        assert case.shape[1] < model.patch_size[1]
    if name == "anisotropic_resampled":
        assert case.shape != tuple(np.array(case.ct.GetSize())[::-1])


@pytest.mark.parametrize("name", ["mirroring", "two_fold_ensemble", "anisotropic_resampled"])
def test_perturbed_equals_nnunet_on_replaced_image(model_dirs, name):
    model, case, roi, plan, pmap, m = _setup(model_dirs, name)
    ev = CoalitionEvaluator(model, case, plan, pmap, m)
    coalitions = random_coalitions(np.random.default_rng(0), 3, m)
    coalitions[0] = False                        # every player absent: the whole crop is air
    ours = ev.evaluate(coalitions)
    for i, coal in enumerate(coalitions):
        ref = reference_logits(case, perturbed_data(ev, coal, pmap, plan))[:, roi]
        assert torch.equal(ours[i], ref), f"coalition {i}"
        ours_labels = ev.labels(ours[i:i + 1])[0]
        ref_labels = torch.as_tensor(model.label_manager.convert_logits_to_segmentation(ref))
        assert torch.equal(ours_labels, ref_labels)
        for c in (1, 2):                         # fp volume with Y = 0: predicted voxels of c, to the voxel
            assert int((ours_labels == c).sum()) == int((ref_labels == c).sum())


def test_perturbation_changes_the_prediction(model_dirs):
    """Guard against a vacuous pass: removing every player must change the logits."""
    model, case, roi, plan, pmap, m = _setup(model_dirs, "mirroring")
    ev = CoalitionEvaluator(model, case, plan, pmap, m)
    out = ev.evaluate(np.array([[True] * m, [False] * m]))
    assert not torch.equal(out[0], out[1])


def test_batched_forwards_match_nnunet_closely_and_do_not_depend_on_batch(model_dirs):
    model, case, roi, plan, pmap, m = _setup(model_dirs, "mirroring", batch_size=4)
    coalitions = random_coalitions(np.random.default_rng(1), 6, m)
    ev4 = CoalitionEvaluator(model, case, plan, pmap, m, strategy="roi")
    ev3 = CoalitionEvaluator(model, case, plan, pmap, m, strategy="roi", batch_size=3)
    ev2 = CoalitionEvaluator(model, case, plan, pmap, m, strategy="roi", batch_size=2)
    a, b = ev4.evaluate(coalitions), ev3.evaluate(coalitions)
    assert torch.equal(a, b)                      # a tile's output does not depend on its batch mates
    assert torch.equal(a, ev2.evaluate(coalitions))   # ... nor on the batch size (the CPU default is 2)
    ref = torch.stack([reference_logits(case, perturbed_data(ev4, c, pmap, plan))[:, roi] for c in coalitions])
    assert (a.float() - ref.float()).abs().max() < 2e-2
    agree = (ev4.labels(a) == ev4.labels(ref)).float().mean()
    assert agree > 0.999
