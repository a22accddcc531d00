"""The Shapley estimator against brute force, shap and closed-form games."""
from itertools import permutations
from math import factorial

import numpy as np
import pytest

from ShapSegExplainLib.errors import ShapSegError
from fixtures.games import smooth_game, symmetric_game, unanimity_game
from ShapSegExplainLib.shapley.estimator import KernelShapRun, resume, shapley_values


def nonlinear_game(m, seed):
    """A game with interactions of every order: a squashed quadratic form plus a threshold."""
    return smooth_game(m, seed)


def brute_force(game, m):
    """Shapley values from the subset formula, every coalition evaluated one by one."""
    phi = np.zeros(m)
    for mask in range(1 << m):
        s = [(mask >> j) & 1 for j in range(m)]
        k = sum(s)
        for i in range(m):
            if s[i]:
                continue
            with_i = list(s)
            with_i[i] = 1
            w = factorial(k) * factorial(m - k - 1) / factorial(m)
            phi[i] += w * (game(np.array([with_i], bool))[0] - game(np.array([s], bool))[0])
    return phi


def by_permutations(game, m):
    phi = np.zeros(m)
    perms = list(permutations(range(m)))
    for p in perms:
        c = np.zeros(m, bool)
        prev = game(c[None])[0]
        for i in p:
            c[i] = True
            cur = game(c[None])[0]
            phi[i] += cur - prev
            prev = cur
    return phi / len(perms)


@pytest.mark.parametrize("m", [3, 6, 10, 12])
def test_exact_path_equals_brute_force_and_shap(m):
    import shap
    game = nonlinear_game(m, seed=m)
    res = shapley_values(game, m, budget=2 ** m)
    assert res.exact and res.n_evaluations == 2 ** m
    if m <= 10:  # the one-coalition-at-a-time references; M = 12 is checked against shap only
        ref = by_permutations(game, m) if m <= 6 else brute_force(game, m)
        np.testing.assert_allclose(res.values, ref, atol=1e-10)
    ex = shap.KernelExplainer(lambda x: game(x > 0.5), np.zeros((1, m)))
    sv = np.asarray(ex.shap_values(np.ones((1, m)), nsamples=2 ** m, l1_reg=False, silent=True)).reshape(-1)
    np.testing.assert_allclose(res.values, sv, atol=1e-10)
    assert abs(res.additivity_error) < 1e-12


@pytest.mark.parametrize("m", [8, 12])
def test_kernel_regression_with_every_size_enumerated_is_exact(m):
    game = nonlinear_game(m, seed=3)
    run = KernelShapRun(game, m)
    run.start(budget=2 ** m)                      # affordable: every size pair enumerated
    assert run.sampled_sizes == [] and run.n_evaluations == 2 ** m
    ref = shapley_values(game, m, budget=2 ** m).values
    np.testing.assert_allclose(run.fit(), ref, atol=1e-10)


@pytest.mark.parametrize("m", [60, 200])
def test_second_order_games_are_exact_with_a_few_times_m(m):
    game = unanimity_game(m, max_order=2, seed=m, offset=3.0)
    res = shapley_values(game, m, budget=3 * m, seed=1)
    assert not res.exact and res.n_evaluations <= 3 * m
    np.testing.assert_allclose(res.values, game.shapley(), rtol=0, atol=1e-10)
    assert res.base_value == 3.0


def test_efficiency_holds_after_every_batch():
    game = unanimity_game(40, max_order=4, seed=2, offset=-7.0)
    seen = []
    res = shapley_values(game, 40, budget=600, batch_size=50, threshold=0.0,
                         on_batch=lambda s: seen.append((s["values"].sum(), s["n_evaluations"])))
    total = res.full_value - res.base_value
    assert len(seen) >= 8
    for s, _ in seen:
        assert abs(s - total) <= 1e-12 * max(1.0, abs(total))
    assert [n for _, n in seen] == sorted(n for _, n in seen)
    assert res.n_evaluations == 600


def test_identical_players_get_equal_values():
    exact = shapley_values(symmetric_game(10, (2, 7), seed=1), 10, budget=2 ** 10)
    assert abs(exact.values[2] - exact.values[7]) < 1e-12
    pair_game = unanimity_game(60, max_order=2, seed=5)
    sup = pair_game.supports.copy()
    sup[:, [4, 9]] = sup[:, [9, 4]]
    from fixtures.games import UnanimityGame
    sym = UnanimityGame(np.concatenate([pair_game.supports, sup]), np.tile(pair_game.dividends, 2))
    est = shapley_values(sym, 60, budget=240, seed=2)
    assert abs(est.values[4] - est.values[9]) < 1e-10
    third = shapley_values(symmetric_game(30, (0, 1), seed=3), 30, budget=600, seed=4, threshold=0.0)
    assert abs(third.values[0] - third.values[1]) <= 3 * np.hypot(third.se[0], third.se[1])


@pytest.mark.parametrize("m,factor,order", [(32, 4, 3), (64, 4, 3), (32, 10, 3), (32, 4, 5)])
def test_95_percent_intervals_cover_on_third_order_games(m, factor, order):
    cover = []
    for seed in range(6):
        game = unanimity_game(m, max_order=order, seed=100 + seed)
        res = shapley_values(game, m, budget=factor * m, seed=seed, threshold=0.0)
        cover.append(np.mean(np.abs(res.values - game.shapley()) <= 1.96 * res.se))
    assert np.mean(cover) >= 0.85, cover


def test_no_coalition_is_evaluated_twice_and_the_run_is_auditable():
    game = unanimity_game(24, max_order=3, seed=8)
    res = shapley_values(game, 24, budget=400, seed=11, threshold=0.0, batch_size=40)
    keys = {c.tobytes() for c in res.coalitions}
    assert len(keys) == len(res.coalitions) == res.n_evaluations == game.evaluations <= 400
    np.testing.assert_allclose(res.game_values, game(res.coalitions), rtol=0, atol=1e-12)  # BLAS rounding
    again = shapley_values(unanimity_game(24, max_order=3, seed=8), 24, budget=400, seed=11, threshold=0.0,
                           batch_size=40)
    np.testing.assert_array_equal(res.values, again.values)
    np.testing.assert_array_equal(res.coalitions, again.coalitions)
    assert (res.coalitions.sum(1) == 0).sum() == 1 and (res.coalitions.sum(1) == 24).sum() == 1
    assert sum(res.coalitions.sum(1) == 1) == 24 and sum(res.coalitions.sum(1) == 23) == 24


def test_resume_continues_without_re_evaluating():
    game = unanimity_game(30, max_order=3, seed=9)
    first = shapley_values(game, 30, budget=200, seed=1, threshold=0.0)
    used = game.evaluations
    more = resume(first, budget=500, threshold=0.0)
    assert more.n_evaluations == 500 == game.evaluations
    assert used == 200
    truth = game.shapley()
    assert np.linalg.norm(more.values - truth) < np.linalg.norm(first.values - truth) * 1.2
    assert abs(more.additivity_error) < 1e-12


def test_stopping_rules():
    quadratic = unanimity_game(50, max_order=2, seed=1)
    res = shapley_values(quadratic, 50, budget=5000, seed=0)
    assert res.stop_reason == "converged" and res.n_evaluations < 5000 and res.ratio < 0.01
    cubic = unanimity_game(50, max_order=3, seed=1)
    res = shapley_values(cubic, 50, budget=5000, seed=0, time_limit=0.0)
    assert res.stop_reason == "time_limit" and len(res.history) == 1
    res = shapley_values(cubic, 50, budget=300, seed=0, threshold=0.0)
    assert res.stop_reason == "budget" and res.n_evaluations == 300
    with pytest.raises(ShapSegError, match="too small") as e:
        shapley_values(cubic, 50, budget=60)
    assert e.value.code == "bad_budget"


def test_enumeration_follows_the_budget():
    from ShapSegExplainLib.shapley.estimator import enumerated_sizes
    assert enumerated_sizes(32, 128) == []                      # 4M: sizes 1 and M-1 are sampled
    assert enumerated_sizes(32, 128, always_singletons=True) == [1]
    assert enumerated_sizes(32, 960)[0] == 1                    # 30M: enumerated
    assert enumerated_sizes(10, 2 ** 10) == [1, 2, 3, 4, 5]     # everything
    assert enumerated_sizes(16, 1600, always_singletons=True) == [1, 2]   # 2 and M-2 once affordable
    res = shapley_values(unanimity_game(32, 3, seed=1), 32, budget=128, threshold=0.0)   # the GP: 1, M-1 always
    assert (res.coalitions.sum(1) == 1).sum() == 32 and (res.coalitions.sum(1) == 31).sum() == 32
    wls = shapley_values(unanimity_game(32, 3, seed=1), 32, budget=128, threshold=0.0, estimator="wls")
    assert (wls.coalitions.sum(1) == 1).sum() < 32


@pytest.mark.parametrize("m, budget", [(120, 1200), (8, 256)])
def test_a_time_limit_interrupts_the_first_design_and_an_enumeration(m, budget):
    """Checked every few coalitions, also before the first design (sizes 1 and M-1) or the
    enumeration is complete; what was evaluated is fitted by the GP, efficiency exact."""
    import time
    game = unanimity_game(m, max_order=2, seed=2)

    calls = []

    def slow(c):
        calls.append(time.perf_counter())
        time.sleep(0.004 * len(c))
        return game(c)
    t0 = time.perf_counter()
    res = shapley_values(slow, m, budget=budget, seed=0, time_limit=0.3)
    assert res.stop_reason == "time_limit" and calls[-1] - t0 < 0.3      # no evaluation starts after the limit
    assert 2 < res.n_evaluations < (2 * m + 2 if m > 10 else 2 ** m)
    assert res.estimator.startswith("gp") and not res.exact
    assert res.values.sum() == pytest.approx(res.full_value - res.base_value, abs=1e-9)


@pytest.mark.parametrize("m, budget", [(120, 1200), (8, 256)])
def test_a_pace_ends_sampling_within_one_coalition_of_the_time_limit(m, budget):
    """``pace`` (the caller's count of coalitions that still fit) shrinks the chunks near the
    limit: the last evaluation ends within about one coalition of it, not a chunk of 16 (here
    0.48 s), in the first design and in an enumeration."""
    import time
    per, limit = 0.03, 0.4
    game = unanimity_game(m, max_order=2, seed=2)
    ends = []

    def slow(c):
        time.sleep(per * len(c))
        ends.append(time.perf_counter())
        return game(c)
    t0 = time.perf_counter()
    res = shapley_values(slow, m, budget=budget, seed=0, time_limit=limit,
                         pace=lambda: int((t0 + limit - time.perf_counter()) / per))
    assert res.stop_reason == "time_limit" and limit <= ends[-1] - t0 < limit + 2.5 * per
    assert res.values.sum() == pytest.approx(res.full_value - res.base_value, abs=1e-9)


@pytest.mark.parametrize("m, shown", [(12, "2^M = 4096"), (439, "2^M, astronomically many,")])
def test_a_too_small_budget_is_one_readable_line(m, shown):
    """No 4611686018427387904 in a message for 439 players."""
    with pytest.raises(ShapSegError) as e:
        shapley_values(lambda c: np.zeros(len(c)), m, m)
    assert e.value.code == "bad_budget" and f"2M+2 = {2 * m + 2}" in e.value.message and shown in e.value.message
    assert not any(len(w) > 6 and w.isdigit() for w in e.value.message.split())
