"""On the real CT in ../shared/data/totalseg-example (slow): exactness with organ players."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from helpers import perturbed_data, random_coalitions, reference_logits
from ShapSegExplainLib.nnunet.case import prepare_case
from ShapSegExplainLib.nnunet.evaluator import CoalitionEvaluator, plan_roi
from ShapSegExplainLib.nnunet.model import load_model
from fixtures.model_folder import ModelSpec, write_model_folder
from fixtures.partitions import label_players


@pytest.mark.slow
def test_real_ct_engine_equals_nnunet_with_totalsegmentator_players(shared_ct, tmp_path):
    spec = ModelSpec(patch_size=(32, 48, 48), spacing=(3.0, 3.0, 3.0), features=(4, 8, 16, 32), seed=4)
    model = load_model(write_model_folder(tmp_path / "m", spec), mirroring=False, device="cpu", batch_size=1)
    case = prepare_case(shared_ct / "ct.nii.gz", model)
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_ct / "seg_total.nii.gz"))).astype(np.int16)
    labels = case.labels_to_network(seg)
    assert np.array_equal(labels, seg)                   # 3 mm CT, 3 mm model: identity mapping
    roi = labels == 3                                    # kidney_left
    plan = plan_roi(model, case, roi)
    assert len(plan.tiles) >= 4
    pmap, m = label_players(plan, labels)
    ev = CoalitionEvaluator(model, case, plan, pmap, m)
    coalitions = np.concatenate([np.ones((1, m), bool), random_coalitions(np.random.default_rng(0), 2, m)])
    ours = ev.evaluate(coalitions)
    for i, coal in enumerate(coalitions):
        ref = reference_logits(case, perturbed_data(ev, coal, pmap, plan))[:, roi]
        assert torch.equal(ours[i], ref)
