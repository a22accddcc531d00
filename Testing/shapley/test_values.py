"""Value functions on hand-built logits, and through the engine against nnU-Net."""
import numpy as np
import pytest
import torch

from helpers import perturbed_data, reference_logits, synthetic_ct
from ShapSegExplainLib.nnunet.case import prepare_case
from ShapSegExplainLib.errors import ShapSegError
from ShapSegExplainLib.nnunet.evaluator import CoalitionEvaluator, plan_roi
from ShapSegExplainLib.shapley.metrics import faithfulness
from ShapSegExplainLib.nnunet.model import load_model
from fixtures.partitions import block_players
from ShapSegExplainLib.shapley.estimator import shapley_values
from ShapSegExplainLib.run.explain import value_function_for
from ShapSegExplainLib.shapley.values import make_value_function, softmax_probability

ML = 0.5  # mL per voxel in these hand-built cases


def argmax_labels(logits):
    return logits.float().argmax(1)


def logits_for(target_logit):
    """(k, 2, n) fp16 logits: background 0, target channel as given (k, n)."""
    t = torch.as_tensor(np.asarray(target_logit, np.float32))
    return torch.stack([torch.zeros_like(t), t], dim=1).half()


UNPERTURBED = logits_for([[3.0, 2.0, -2.0, -3.0]])          # predicts voxels 0 and 1
COALITION = logits_for([[3.0, -1.0, 1.0, -3.0]])            # predicts voxels 0 and 2


def vf(name, **kw):
    return make_value_function(name, 1, UNPERTURBED, ML, argmax_labels, **kw)


def test_hard_values_on_hand_built_logits():
    assert vf("tp")(COALITION)[0] == 1 * ML                  # voxel 0 of Y = {0, 1}
    assert vf("dice")(COALITION)[0] == pytest.approx(2 * 1 / (2 + 2))
    assert vf("fp")(COALITION)[0] == 2 * ML                  # no reference: every predicted voxel
    assert vf("fp", reference=np.array([1, 0, 0, 0], bool))(COALITION)[0] == 1 * ML
    assert vf("tp", reference=np.array([0, 0, 1, 1], bool))(COALITION)[0] == 1 * ML
    assert vf("dice")(UNPERTURBED)[0] == 1.0


def test_soft_values_on_hand_built_logits():
    p = 1 / (1 + np.exp(-np.array([3.0, -1.0, 1.0, -3.0])))
    y = np.array([1, 1, 0, 0])
    got = vf("soft_dice")(COALITION)[0]
    assert got == pytest.approx(2 * (p * y).sum() / (p.sum() + y.sum()), abs=2e-3)   # fp16 logits
    assert vf("soft_fp")(COALITION)[0] == pytest.approx(p.sum() * ML, abs=2e-3)


@pytest.mark.parametrize("name", ["soft_dice", "soft_fp"])
def test_soft_values_are_smooth_and_monotone_in_the_target_probability(name):
    sweep = np.linspace(-6, 6, 49)
    rows = np.tile(np.array([3.0, 2.0, -2.0, -3.0]), (sweep.size, 1))
    rows[:, 0] = sweep                                      # a voxel inside Y
    values = vf(name)(logits_for(rows))
    diffs = np.diff(values)
    assert (diffs > 0).all()
    assert np.abs(np.diff(diffs)).max() < 0.1 * np.abs(values).max()   # no jumps


@pytest.mark.parametrize("name", ["tp", "dice", "soft_dice", "fp", "soft_fp"])
def test_normalised_values_are_one_at_the_full_coalition(name):
    f = vf(name, normalized=True)
    assert f(UNPERTURBED)[0] == pytest.approx(1.0, abs=1e-12)
    assert f.unit == ""


@pytest.mark.parametrize("name", ["soft_dice", "soft_fp", "dice"])
def test_a_coalitions_value_does_not_depend_on_its_batch_mates(name):
    """PyTorch's CPU softmax and sums round differently with the batch's shape; a value is
    computed per coalition, so chunks cut by the clock (a time limit's pace) or replayed from
    another run's journal give the same bits."""
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(0, 3, (16, 3, 5000)).astype(np.float16))
    f = make_value_function(name, 1, logits[:1], ML, argmax_labels, softmax_probability)
    whole = f(logits)
    assert np.array_equal(whole, np.concatenate([f(logits[a:b]) for a, b in ((0, 1), (1, 4), (4, 16))]))
    assert f(logits[:0]).shape == (0,)


def test_bad_value_options():
    with pytest.raises(ShapSegError, match="unknown value"):
        vf("iou")
    with pytest.raises(ShapSegError, match="its unperturbed value is 0") as e:
        vf("fp", reference=np.ones(4, bool), normalized=True)
    assert e.value.code == "bad_option"
    with pytest.raises(ShapSegError, match="ROI voxels"):
        vf("tp", reference=np.ones(3, bool))


@pytest.mark.slow
def test_shapley_through_the_engine_adds_up_to_nnunets_values(model_dirs):
    """Exact Shapley values of soft Dice over 5 players: v(N) and v(∅) equal the value of
    nnU-Net's own logits on the unperturbed and the all-absent image, and Σφ = v(N) - v(∅)."""
    model = load_model(model_dirs["one_fold"], mirroring=False, device="cpu", batch_size=1)
    case = prepare_case(synthetic_ct((20, 36, 36), (1.5, 1.5, 3.0), seed=4), model)
    roi = np.zeros(case.shape, bool)
    c = np.array(case.shape) // 2
    roi[c[0] - 2:c[0] + 3, c[1] - 4:c[1] + 5, c[2] - 3:c[2] + 4] = True
    plan = plan_roi(model, case, roi)
    blocks, n_blocks = block_players(plan, case.spacing, block_mm=40.0)
    pmap, m = np.where(blocks >= 0, blocks // 2, blocks), (n_blocks + 1) // 2    # pairs of blocks: 2^m stays small
    assert 3 <= m <= 8
    ev = CoalitionEvaluator(model, case, plan, pmap, m)
    full = ev.evaluate(np.ones((1, m), bool))
    target = int(ev.labels(full)[0].reshape(-1).mode().values)
    f = value_function_for(model, "soft_dice", target, full, float(np.prod(case.spacing)) / 1000)
    res = shapley_values(lambda coal: f(ev.evaluate(coal)), m, budget=2 ** m)
    assert res.exact and res.n_evaluations == 2 ** m == ev.counters.coalitions - 1
    ref_full = reference_logits(case)[:, roi][None]
    ref_empty = reference_logits(case, perturbed_data(ev, np.zeros(m, bool), pmap, plan))[:, roi][None]
    assert torch.equal(ev.evaluate(np.zeros((1, m), bool)), ref_empty)     # the logits bit for bit
    assert res.full_value == pytest.approx(f(ref_full)[0], abs=1e-9)        # sums over a batch vs one row
    assert res.base_value == pytest.approx(f(ref_empty)[0], abs=1e-9)
    assert abs(res.values.sum() - (res.full_value - res.base_value)) < 1e-12
    # faithfulness through the same cached evaluator: every curve coalition is a memo hit
    forwards = ev.counters.tile_forwards
    out = faithfulness(lambda coal: f(ev.evaluate(coal)), res.values, steps=m)
    assert ev.counters.tile_forwards == forwards
    assert out["morf"][0] == out["lerf"][0] == pytest.approx(res.full_value, abs=1e-12)
    assert out["morf"][-1] == pytest.approx(res.base_value, abs=1e-12)
