"""The proxy game (a control variate) and cost-aware draws, against exact Shapley values."""
from math import comb

import numpy as np
import pytest

from fixtures.games import UnanimityGame, unanimity_game
from ShapSegExplainLib.shapley.estimator import exact_shapley, shapley_values, size_mass
from ShapSegExplainLib.shapley.proxy import (residual_design, unbiased_from_moments, unbiased_kernel_shap,
                                             with_proxy)


def perturbed(game: UnanimityGame, scale: float, seed: int) -> UnanimityGame:
    """The same game with every dividend off by a few per cent: a good but inexact proxy."""
    rng = np.random.default_rng(seed)
    return UnanimityGame(game.supports, game.dividends * (1 + scale * rng.standard_normal(game.dividends.size)),
                         game.offset + 0.3)


def error(phi: np.ndarray, exact: np.ndarray) -> float:
    return float(np.linalg.norm(phi - exact) / np.linalg.norm(exact))


def test_exact_parts_give_the_exact_value():
    """A proxy of order 2 (the GP's additive fit is then exact) and an enumerated residual
    (the third-order part): their sum is the exact game's Shapley value."""
    m = 8
    game = unanimity_game(m, 3, seed=1)
    low = game.supports.sum(axis=1) <= 2
    proxy = UnanimityGame(game.supports[low], game.dividends[low], offset=0.7)
    res = with_proxy(game, proxy, m, 4 * m, residual_budget=2 ** m)
    assert res.proxy_evaluations == 4 * m and res.n_evaluations == 2 ** m
    np.testing.assert_allclose(res.values, game.shapley(), atol=1e-9)
    assert res.base_value == pytest.approx(game(np.zeros((1, m), bool))[0])


def test_an_enumerated_proxy_is_exact_and_only_the_residual_is_estimated():
    """``enumerate_proxy``: φ(ṽ) from all 2^M proxy coalitions (no SE), the residual sampled;
    the error is the residual's alone, so a proxy equal to the game gives the exact value."""
    m = 8
    game = unanimity_game(m, 3, seed=2)
    res = with_proxy(game, game, m, 2 ** m, enumerate_proxy=True)
    assert res.proxy_evaluations == 2 ** m and res.n_evaluations == residual_design(m)
    np.testing.assert_allclose(res.values, game.shapley(), atol=1e-9)
    near = with_proxy(game, perturbed(game, 0.05, 3), m, 2 ** m, enumerate_proxy=True)
    far = with_proxy(game, perturbed(game, 0.5, 3), m, 2 ** m, enumerate_proxy=True)
    assert error(near.values, game.shapley()) < error(far.values, game.shapley())


def test_a_good_proxy_keeps_the_accuracy_with_half_the_exact_evaluations():
    """Level budget 4M: the plain estimate evaluates 4M coalitions of the exact game; with the
    proxy only the 2M + 2 of the residual, all of them among the proxy's own (so the tile memo
    holds their unfrozen tiles), at the same error against brute force; more proxy coalitions
    (10M) then lower the error without a single further exact evaluation."""
    m = 16
    err = {"plain": [], "proxy 4M": [], "proxy 10M": []}
    for seed in range(4):
        game = unanimity_game(m, 3, seed=seed)
        proxy = perturbed(game, 0.05, seed=seed + 100)
        err["plain"].append(error(shapley_values(game, m, 4 * m, seed=seed).values, game.shapley()))
        for name, budget in (("proxy 4M", 4 * m), ("proxy 10M", 10 * m)):
            exact_calls = game.evaluations
            res = with_proxy(game, proxy, m, budget, seed=seed)
            assert game.evaluations - exact_calls == res.n_evaluations == residual_design(m) < 4 * m
            assert res.proxy_evaluations == budget
            err[name].append(error(res.values, game.shapley()))
            full = game(np.ones((1, m), bool))[0] - game(np.zeros((1, m), bool))[0]
            assert res.values.sum() == pytest.approx(full, abs=1e-10)
            proxy_rows = {c.tobytes() for c in res.proxy_coalitions}
            assert all(c.tobytes() in proxy_rows for c in res.coalitions)
            np.testing.assert_allclose(res.game_values, game(res.coalitions), atol=1e-12)
    mean = {k: float(np.mean(v)) for k, v in err.items()}
    assert mean["proxy 4M"] < 1.15 * mean["plain"], mean
    assert mean["proxy 10M"] < 0.75 * mean["plain"], mean      # measured 0.70 (0.078 against 0.111)


def test_a_useless_proxy_leaves_the_estimators_own_answer():
    """A proxy that knows nothing (zero) adds no bias: the result is the plain estimate of the
    exact game at the residual's budget."""
    m = 12
    game = unanimity_game(m, 3, seed=4)
    zero = UnanimityGame(game.supports, np.zeros_like(game.dividends))
    res = with_proxy(game, zero, m, 6 * m, seed=3)
    plain = shapley_values(game, m, residual_design(m), seed=3)
    np.testing.assert_allclose(res.values, plain.values, atol=1e-12)


@pytest.mark.parametrize("m", [2, 5, 9])
def test_unbiased_kernel_shap_is_unbiased_in_exact_expectation(m):
    """No sampling: b = E[z (v(z) − v(∅))] summed over every coalition with its Shapley-kernel
    probability; the estimator's map from b gives the exact Shapley values, and it is affine
    in b, so the mean of b̂ over pairs (each unbiased for b) gives an unbiased φ̂."""
    rng = np.random.default_rng(m)
    values = rng.normal(size=1 << m)
    z = ((np.arange(1 << m)[:, None] >> np.arange(m)) & 1).astype(bool)
    size = z.sum(axis=1)
    prob = size_mass(m)[size] / np.array([comb(m, s) for s in size])
    b = (prob[:, None] * z * (values - values[0])[:, None]).sum(axis=0)
    np.testing.assert_allclose(unbiased_from_moments(b, values[-1] - values[0], m), exact_shapley(values, m),
                               atol=1e-12)


def test_unbiased_kernel_shap_samples_average_to_the_exact_values_within_their_se():
    """Over many seeds the estimates average to brute force (within 4 standard errors of the
    mean), their reported SE matches their spread, and efficiency holds on every draw."""
    m, budget = 10, 10
    game = unanimity_game(m, 3, seed=7)
    runs = [unbiased_kernel_shap(game, m, budget, seed=s) for s in range(600)]
    est = np.array([r.values for r in runs])
    exact = game.shapley()
    spread = est.std(axis=0, ddof=1)
    assert np.all(np.abs(est.mean(axis=0) - exact) < 4 * spread / np.sqrt(len(runs)) + 1e-12)
    assert all(r.n_evaluations == budget and r.values.sum() == pytest.approx(r.full_value - r.base_value)
               for r in runs)
    mean_se = np.sqrt(np.mean([r.se ** 2 for r in runs], axis=0))
    assert np.all((mean_se > 0.5 * spread) & (mean_se < 2.0 * spread)), (mean_se, spread)


def test_a_stopped_unbiased_run_keeps_its_complete_pairs():
    """Stopped after ∅, N and one chunk of three coalitions (one pair and a half): the estimate
    uses the complete pair, sums to v(N) − v(∅) and says why it stopped; stopped at once, the
    equal split with the whole difference as its SE."""
    m = 9
    game = unanimity_game(m, 3, seed=3)
    calls = iter([None, "time_limit"])
    res = unbiased_kernel_shap(game, m, 12, seed=1, stop=lambda: next(calls), pace=lambda: 3)
    assert res.n_evaluations == 5 and res.stop_reason == "time_limit"
    assert res.values.sum() == pytest.approx(res.full_value - res.base_value)
    assert (res.coalitions[2] == ~res.coalitions[3]).all()
    at_once = unbiased_kernel_shap(game, m, 12, seed=1, stop=lambda: "forward_budget")
    assert at_once.n_evaluations == 2 and at_once.stop_reason == "forward_budget"
    np.testing.assert_allclose(at_once.values, (at_once.full_value - at_once.base_value) / m)


def test_a_small_residual_budget_corrects_the_proxy_without_bias():
    """K = 6 exact coalitions (fewer than the M + 1 that determine M values): each run plays
    exactly 6 coalitions of the exact game, and over seeds its correction averages to
    φ(v) − φ(ṽ), the proxy's bias (within 4 standard errors of the mean): the proxy's error
    is removed, not hidden; one run's error is the residual's sampling noise."""
    m = 14
    game = unanimity_game(m, 3, seed=2)
    proxy = perturbed(game, 0.2, seed=9)
    corrections = []
    for seed in range(60):
        calls = game.evaluations
        res = with_proxy(game, proxy, m, 4 * m, residual_budget=6, seed=seed, estimator="wls")
        assert game.evaluations - calls == res.n_evaluations == 6
        corrections.append(res.values - proxy_at_budget(proxy, m, seed))
    corr = np.array(corrections)
    spread = corr.std(axis=0, ddof=1)
    assert np.all(np.abs(corr.mean(axis=0) - (game.shapley() - proxy.shapley())) < 4 * spread / np.sqrt(len(corr)))


def proxy_at_budget(proxy, m: int, seed: int) -> np.ndarray:
    """The proxy part of ``with_proxy``'s estimate: the same estimator, budget and seed."""
    return shapley_values(proxy, m, 4 * m, seed=seed, estimator="wls").values


class TiledCost:
    """Players on a line, covered by overlapping tiles; a tile output is keyed by the players
    absent inside it (as the tile memo does), and the memo fills as the game is played."""

    def __init__(self, m: int, width: int, stride: int) -> None:
        self.tiles = [np.arange(s, min(s + width, m)) for s in range(0, m - width + stride, stride)]
        self.memo: set = set()

    def keys(self, coalition: np.ndarray) -> set:
        absent = ~np.asarray(coalition, bool)
        return {(t, np.packbits(absent[p]).tobytes()) for t, p in enumerate(self.tiles)}

    def __call__(self, coalition: np.ndarray) -> set:
        return self.keys(coalition) - self.memo

    def played(self, game):
        def play(coalitions):
            for c in coalitions:
                self.memo |= self.keys(c)
            return game(coalitions)
        return play


def test_cost_aware_draws_need_fewer_tile_forwards_at_the_same_accuracy():
    """The GP conditions on the coalitions evaluated, whatever chose them, so choosing the
    cheapest of 8 same-size pairs needs no reweighting: against brute force its error stays
    that of uniform draws (mean over seeds within 25 %), for fewer tile outputs."""
    m, budget = 20, 6 * 20
    errors, forwards = {1: [], 8: []}, {1: [], 8: []}
    for seed in range(5):
        game = unanimity_game(m, 3, seed=seed)
        for k in (1, 8):
            cost = TiledCost(m, 8, 4)
            res = shapley_values(cost.played(game), m, budget, seed=seed, cost=cost, candidates=k)
            errors[k].append(error(res.values, game.shapley()))
            forwards[k].append(len(cost.memo))
    assert np.mean(forwards[8]) < 0.85 * np.mean(forwards[1]), forwards
    assert np.mean(errors[8]) < 1.25 * np.mean(errors[1]), errors


def test_the_wls_fit_always_draws_uniformly():
    """KernelSHAP's post-stratified weights assume uniform draws within a size: a cost is ignored."""
    m = 16
    game = unanimity_game(m, 3, seed=5)
    plain = shapley_values(game, m, 5 * m, seed=1, estimator="wls")
    cost = TiledCost(m, 6, 3)
    costed = shapley_values(cost.played(game), m, 5 * m, seed=1, estimator="wls", cost=cost, candidates=8)
    np.testing.assert_array_equal(plain.values, costed.values)
    np.testing.assert_array_equal(plain.coalitions, costed.coalitions)
