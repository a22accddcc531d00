"""roi, paper and memo give identical values; memo <= paper <= roi in tile forwards."""
import numpy as np
import pytest
import torch

from helpers import random_coalitions, synthetic_ct
from ShapSegExplainLib.nnunet.case import prepare_case
from ShapSegExplainLib.nnunet.evaluator import CoalitionEvaluator, plan_roi
from ShapSegExplainLib.nnunet.model import load_model
from fixtures.partitions import block_players


@pytest.fixture(scope="module")
def setting(model_dirs):
    model = load_model(model_dirs["one_fold"], mirroring=False, device="cpu", batch_size=8)
    case = prepare_case(synthetic_ct((24, 48, 48), seed=5), model)
    roi = np.zeros(case.shape, bool)
    roi[10:15, 20:29, 18:27] = True
    plan = plan_roi(model, case, roi)
    pmap, m = block_players(plan, case.spacing, block_mm=12.0)
    return model, case, plan, pmap, m


def _run(setting, strategy, coalitions, batch=50, **kw):
    model, case, plan, pmap, m = setting
    ev = CoalitionEvaluator(model, case, plan, pmap, m, strategy=strategy, **kw)
    out = torch.cat([ev.evaluate(coalitions[i:i + batch]) for i in range(0, len(coalitions), batch)])
    return out, ev


def test_three_strategies_identical_on_200_coalitions(setting):
    m = setting[4]
    assert len(setting[2].tiles) >= 4 and m >= 10
    coalitions = random_coalitions(np.random.default_rng(0), 200, m)
    coalitions[:2] = [np.zeros(m, bool), np.ones(m, bool)]
    out = {s: _run(setting, s, coalitions) for s in ("roi", "paper", "memo")}
    assert torch.equal(out["roi"][0], out["paper"][0])
    assert torch.equal(out["roi"][0], out["memo"][0])
    f = {s: ev.counters.tile_forwards for s, (_, ev) in out.items()}
    assert f["memo"] <= f["paper"] <= f["roi"]
    assert f["roi"] == 200 * len(setting[2].tiles)
    memo = out["memo"][1].counters
    assert memo.tile_forwards == memo.distinct_states            # one forward per distinct local state
    assert memo.memo_hits > 0 and memo.evictions == 0
    assert out["paper"][1].counters.unperturbed_reuses > 0


def test_memo_under_a_tight_memory_budget_stays_exact(setting):
    m = setting[4]
    coalitions = random_coalitions(np.random.default_rng(1), 60, m)
    coalitions = np.concatenate([coalitions, coalitions])        # the second half re-asks the first
    plain, _ = _run(setting, "roi", coalitions, batch=30)
    tight, ev = _run(setting, "memo", coalitions, batch=30, memory_budget_bytes=20_000)
    roomy, ev2 = _run(setting, "memo", coalitions, batch=30)
    assert torch.equal(plain, tight) and torch.equal(plain, roomy)
    assert ev.counters.evictions > 0 and ev.memo.bytes <= 20_000
    assert ev.counters.tile_forwards > ev2.counters.tile_forwards == ev2.counters.distinct_states


def test_counters_report_what_the_plain_paths_would_cost(setting):
    model, case, plan, pmap, m = setting
    coalitions = random_coalitions(np.random.default_rng(2), 10, m)
    _, ev = _run(setting, "memo", coalitions)
    c = ev.counters.as_dict()
    assert c["coalitions"] == 10
    assert c["tile_forwards_roi"] == 10 * len(plan.tiles)
    assert c["tile_forwards_whole_image"] == 10 * len(plan.grid) >= c["tile_forwards_roi"]
    assert c["network_passes"] == c["tile_forwards"] * model.passes_per_tile
    assert c["peak_cache_bytes"] > 0 and c["seconds"]["forward"] > 0


def test_context_voxels_are_never_perturbed(setting):
    """With every voxel fixed context, all coalitions give the unperturbed logits."""
    model, case, plan, pmap, m = setting
    ev = CoalitionEvaluator(model, case, plan, np.full(plan.crop_shape, -1), n_players=3)
    out = ev.evaluate(np.array([[True] * 3, [False] * 3]))
    assert torch.equal(out[0], out[1])
    assert ev.counters.tile_forwards == len(plan.tiles)


def test_bad_coalitions_and_player_maps_are_rejected(setting):
    model, case, plan, pmap, m = setting
    ev = CoalitionEvaluator(model, case, plan, pmap, m)
    with pytest.raises(ValueError):
        ev.evaluate(np.ones((2, m + 1), bool))
    from ShapSegExplainLib.errors import ShapSegError
    with pytest.raises(ShapSegError, match="crop"):
        CoalitionEvaluator(model, case, plan, pmap[:-1], m)
    with pytest.raises(ShapSegError, match="strategy"):
        CoalitionEvaluator(model, case, plan, pmap, m, strategy="fast")


@pytest.mark.parametrize("baseline", ["blur", "mean"])
def test_other_baselines_are_exact_across_strategies(setting, baseline):
    m = setting[4]
    coalitions = random_coalitions(np.random.default_rng(3), 20, m)
    coalitions[0] = False
    plain, _ = _run(setting, "roi", coalitions, baseline=baseline)
    memo, _ = _run(setting, "memo", coalitions, baseline=baseline)
    const, _ = _run(setting, "memo", coalitions)
    assert torch.equal(plain, memo)
    assert not torch.equal(memo[0], const[0])       # the baseline matters when all players are absent


def test_pruning_freezes_low_share_tiles_within_its_reported_bound(setting):
    """--tolerance: tiles whose Gaussian share stays at or below it are frozen; the fused logits
    move by at most the reported bound (plus fp16 rounding), for fewer tile forwards; 0 prunes nothing."""
    m = setting[4]
    coalitions = random_coalitions(np.random.default_rng(2), 40, m)
    coalitions[:2] = [np.zeros(m, bool), np.ones(m, bool)]
    exact, ev0 = _run(setting, "memo", coalitions)
    assert ev0.pruning == {"tolerance": 0.0, "tiles": ev0.n_tiles, "tiles_kept": ev0.n_tiles}
    peaks = sorted(float(w.max()) for w in ev0.shares())
    tol = (peaks[0] + peaks[1]) / 2                               # prunes exactly the tile of smallest share
    pruned, ev = _run(setting, "memo", coalitions, tolerance=tol)
    info = ev.pruning
    assert info["tiles_kept"] == ev.n_tiles - 1 and info["max_share_pruned"] <= tol
    delta = float((pruned.float() - exact.float()).abs().max())
    rounding = 2 ** -10 * float(exact.float().abs().max()) * ev.n_tiles
    assert delta <= info["bound_logit"] + rounding, (delta, info)
    assert ev.counters.tile_forwards < ev0.counters.tile_forwards
    assert torch.equal(pruned[1], exact[1])                       # all present: nothing frozen differs


def test_proxy_evaluation_is_the_pruned_game_and_an_exact_one_reruns_only_the_frozen_tiles(setting):
    """``evaluate(proxy=True)`` is bit for bit the game at ``tolerance=proxy_tolerance``; the same
    coalition evaluated exactly afterwards runs only the frozen tiles that hold an absent player
    (the kept ones are in the memo) and gives the exact logits; ``missing_keys`` predicts every
    forward."""
    m = setting[4]
    coalitions = random_coalitions(np.random.default_rng(3), 30, m)
    coalitions[:2] = [np.zeros(m, bool), np.ones(m, bool)]
    exact, _ = _run(setting, "memo", coalitions)
    model, case, plan, pmap, _ = setting
    probe = CoalitionEvaluator(model, case, plan, pmap, m)
    peaks = sorted(float(w.max()) for w in probe.shares())
    tol = (peaks[1] + peaks[2]) / 2                              # freezes the tiles of the two smallest shares
    pruned, _ = _run(setting, "memo", coalitions, tolerance=tol)
    ev = CoalitionEvaluator(model, case, plan, pmap, m, proxy_tolerance=tol)
    assert len(ev.proxy_frozen) == sum(p <= tol for p in peaks) >= 2 and not ev.pruned
    need = set().union(*(ev.missing_keys(c, proxy=True) for c in coalitions))
    assert torch.equal(ev.evaluate(coalitions, proxy=True), pruned)
    assert ev.counters.tile_forwards == len(need)
    before = ev.counters.tile_forwards
    need = set().union(*(ev.missing_keys(c) for c in coalitions))
    assert need and {pos for pos, _ in need} <= ev.proxy_frozen
    assert torch.equal(ev.evaluate(coalitions), exact)
    assert ev.counters.tile_forwards - before == len(need)
    assert not any(ev.missing_keys(c) for c in coalitions)


def test_a_player_already_at_the_baseline_costs_memo_no_forward_and_changes_no_value(setting):
    """Air under a model that clips low HU is the baseline once normalised: a player whose voxels
    hold the baseline's input value leaves every tile input as it was, so memo keeps it out of
    the tile keys. Coalitions that differ only in it then cost no forward, and every value is
    still bit for bit the plain path's. Before the player was air, the same toggles cost forwards."""
    from dataclasses import replace

    from ShapSegExplainLib.nnunet.evaluator import baseline_value
    from ShapSegExplainLib.nnunet.tiles import pad_data
    model, case, plan, pmap, m = setting
    assert tuple(pad_data(model, case.data).shape) == case.data.shape      # no padding: the crop indexes the image
    counts = np.bincount(pmap[pmap >= 0], minlength=m)
    p = int(np.argmax(counts))                                             # the largest player
    data = case.data.copy()
    block = data[(slice(None), *plan.crop)]
    block[:, pmap == p] = baseline_value(model, -1024.0)[:, None]
    air = (model, replace(case, data=data), plan, pmap, m)
    coalitions = random_coalitions(np.random.default_rng(4), 20, m)
    toggled = coalitions.copy()
    toggled[:, p] = ~toggled[:, p]
    both = np.concatenate([coalitions, toggled])
    for where, free in ((setting, False), (air, True)):
        plain, _ = _run(where, "roi", both, batch=20)
        memo, ev = _run(where, "memo", both, batch=20)
        assert torch.equal(plain, memo)
        _, once = _run(where, "memo", coalitions, batch=20)
        assert (ev.counters.tile_forwards == once.counters.tile_forwards) == free
        assert torch.equal(memo[:20], memo[20:]) == free


def test_the_setups_unperturbed_tiles_serve_v_of_n_bit_for_bit(setting):
    """The ROI tiles the setup's unperturbed prediction ran are memo entries from the start:
    v(N) then costs no forward, and every value is bit for bit that of an evaluator without them."""
    from ShapSegExplainLib.nnunet.roi import UnperturbedPrediction
    model, case, plan, pmap, m = setting
    setup = UnperturbedPrediction(case)
    region = np.zeros(case.shape, bool)
    region[10:15, 20:29, 18:27] = True                          # the setting's ROI: its tiles
    setup.labels(region)
    assert {t for t in plan.tiles} <= set(setup.outputs)
    coalitions = random_coalitions(np.random.default_rng(5), 20, m)
    coalitions[0] = True
    plain, ev0 = _run(setting, "memo", coalitions, batch=20)
    seeded, ev = _run(setting, "memo", coalitions, batch=20, unperturbed=setup.outputs)
    assert torch.equal(plain, seeded)
    assert ev0.counters.tile_forwards - ev.counters.tile_forwards == len(plan.tiles)
    fresh = CoalitionEvaluator(model, case, plan, pmap, m, unperturbed=setup.outputs)
    fresh.evaluate(np.ones((1, m), bool))
    assert fresh.counters.tile_forwards == 0
    # pruning's bound reads the seeded all-present outputs: one forward per pruned tile, same bound
    tol = float(np.median([float(w.max()) for w in fresh.shares()]))
    bare = CoalitionEvaluator(model, case, plan, pmap, m, tolerance=tol)
    reused = CoalitionEvaluator(model, case, plan, pmap, m, tolerance=tol, unperturbed=setup.outputs)
    assert bare.pruned and reused.pruning == bare.pruning
    assert bare.counters.tile_forwards == 2 * len(bare.pruned)
    assert reused.counters.tile_forwards == len(reused.pruned)
    assert torch.equal(reused.evaluate(coalitions), bare.evaluate(coalitions))


def test_enumeration_forwards_is_what_enumerating_a_node_game_costs(setting):
    """The coarse level enumerates when ``enumeration_forwards`` says it is cheap: the count,
    made before any coalition is played, must be the forwards the enumeration then costs."""
    from ShapSegExplainLib.shapley.hierarchy import atoms_present
    model, case, plan, pmap, m = setting
    ev = CoalitionEvaluator(model, case, plan, pmap, m, strategy="memo")
    membership = np.zeros((5, m), bool)
    membership[np.arange(m) % 5, np.arange(m)] = True          # five groups of players
    predicted = ev.enumeration_forwards(membership)
    ev.evaluate(np.ones((1, m), bool))                          # the unperturbed tiles: the setup's
    f0 = ev.counters.tile_forwards
    groups = ((np.arange(32)[:, None] >> np.arange(5)) & 1).astype(bool)
    ev.evaluate(atoms_present(groups, membership))
    assert ev.counters.tile_forwards - f0 == predicted > 0
