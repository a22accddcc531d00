"""The gp-eig estimator (shapley.hamming, shapley.eig_fit): its Shapley operator against
enumeration, its likelihood's gradient against differences, its design's gain against the
posterior it promises, and the estimate on recorded real games against their exact values."""
import numpy as np
import pytest

from fixtures.games import unanimity_game
from fixtures.recorded_games import game_files, load_games
from ShapSegExplainLib.shapley import eig_fit
from ShapSegExplainLib.shapley.estimator import exact_shapley, resume, shapley_values
from ShapSegExplainLib.shapley.hamming import HammingGP, same_size

M = 5
EVERY = ((np.arange(2 ** M)[:, None] >> np.arange(M)) & 1).astype(bool)


def _theta(rng, m=M):
    return np.concatenate([[np.log(1e-4), np.log(0.3)], rng.normal(0, 1, m)])


def test_the_shapley_operator_equals_enumerating_the_kernel():
    """cov(φ, v(c)) is the Shapley value of the kernel column k(·, c), and var(φ_i) in the prior
    is A K Aᵀ over all 2^M coalitions (the size term's Shapley value is 0: it is in K, not in φ)."""
    rng = np.random.default_rng(1)
    gp = HammingGP(EVERY[:3], np.zeros(3))
    theta = _theta(rng)
    picked = EVERY[[3, 17, 30]]
    k = gp.cov(theta, EVERY, picked)
    np.testing.assert_allclose(gp.cross(theta, picked), np.array([exact_shapley(k[:, j], M) for j in range(3)]).T,
                               atol=1e-14)
    a = np.array([exact_shapley(col, M) for col in np.eye(2 ** M)]).T          # φ = A v
    np.testing.assert_allclose(gp.prior_var(theta), np.diag(a @ gp.cov(theta, EVERY, EVERY) @ a.T), atol=1e-14)


def test_the_likelihood_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.random((25, 6)) < 0.5
    y = rng.normal(size=25) + 3 * x[:, 0] * x[:, 1]
    gp = HammingGP(x, y)
    diff = (x[:, None, :] != x[None, :, :]).reshape(-1, 6).astype(float)
    same = same_size(x, x)
    theta = _theta(rng, 6)
    f = lambda t: gp.neg_log_posterior(t, diff, same)[0]          # noqa: E731
    g = lambda t: gp.neg_log_posterior(t, diff, same)[1]          # noqa: E731
    step = 1e-5
    central = np.array([(f(theta + step * e) - f(theta - step * e)) / (2 * step) for e in np.eye(len(theta))])
    np.testing.assert_allclose(g(theta), central, rtol=1e-5, atol=1e-6 * np.linalg.norm(central))


def test_the_design_picks_the_coalition_that_most_reduces_the_posterior_variance():
    """The greedy gain is the drop of Σ var(φ_i) that adding the coalition (any value) gives,
    and the one chosen has the largest drop of the pool, by refitting nothing but the rows."""
    rng = np.random.default_rng(2)
    x = EVERY[[0, 31, 1, 6, 12, 25]]
    y = rng.normal(size=len(x))
    gp = HammingGP(x, y)
    theta = _theta(rng)
    pool = np.array([c for c in EVERY if not any((c == r).all() for r in x)])
    before = np.sum(gp.posterior(theta).se ** 2)
    drops = []
    for c in pool:
        more = HammingGP(np.vstack([x, c]), np.append(y, 0.0))
        post = more.posterior(theta)
        drops.append(before / gp.posterior(theta).scale - np.sum(post.se ** 2) / post.scale)
    assert gp.choose(theta, pool, 1) == [int(np.argmax(drops))]
    two = gp.choose(theta, pool, 2)
    assert len(set(two)) == 2 and two[0] == int(np.argmax(drops))


def _small_games():
    return [g for path in game_files() if path.stem in ("ct_kidney_box_organ", "ct_spleen_hybrid")
            for g in load_games(path)]


def test_gp_eig_beats_the_gp_on_the_small_recorded_games_and_keeps_efficiency():
    """At 4M on the organ units (M = 5) and the spleen (M = 7), every value, seed 0: the mean
    error falls below a third of the GP's (benchmarks/results/shapley_real.json: 0.049 -> 0.007,
    0.116 -> 0.009), Σφ = v(N) − v(∅) holds and the 95 % intervals cover at least 0.85."""
    games = _small_games()
    err = {"gp": [], "gp-eig": []}
    inside = total = 0
    for g in games:
        for est in err:
            res = shapley_values(g.fresh(), g.m, 4 * g.m, seed=0, threshold=0.0, estimator=est)
            err[est].append(np.linalg.norm(res.values - g.phi) / np.linalg.norm(g.phi))
            assert res.n_evaluations == 4 * g.m
            if est == "gp-eig":
                assert res.estimator == "gp-eig"
                inside += int(np.sum(np.abs(res.values - g.phi) <= 1.96 * res.se))
                total += g.m
                assert res.values.sum() == pytest.approx(g.table[-1] - g.table[0], abs=1e-9 * np.abs(g.table).max())
    assert len(games) == 10
    assert np.mean(err["gp-eig"]) < np.mean(err["gp"]) / 3
    assert inside / total >= 0.85         # θ integrated out (at the mode alone: 0.6-0.85)


def test_a_run_is_a_function_of_its_seed_and_resumes_without_evaluating_twice():
    """Same seed: the same coalitions in the same order and bit-equal values (a journal replays
    it); a resumed run adds new coalitions only."""
    g = unanimity_game(8, 3, seed=0)
    a = shapley_values(g, 8, 30, seed=4, threshold=0.0, estimator="gp-eig")
    b = shapley_values(g, 8, 30, seed=4, threshold=0.0, estimator="gp-eig")
    np.testing.assert_array_equal(a.coalitions, b.coalitions)
    np.testing.assert_array_equal(a.values, b.values)
    more = resume(a, 60, threshold=0.0)
    assert more.n_evaluations == 60
    assert len({c.tobytes() for c in more.coalitions}) == 60
    np.testing.assert_array_equal(more.coalitions[:30], b.coalitions)
    truth = g.shapley()
    assert np.linalg.norm(more.values - truth) < np.linalg.norm(b.values - truth)


def test_more_players_than_it_handles_falls_back_to_the_gp():
    m = eig_fit.MAX_PLAYERS + 1
    res = shapley_values(unanimity_game(m, 3, seed=0), m, 3 * m, seed=0, threshold=0.0, estimator="gp-eig")
    assert res.run.estimator == "gp" and res.estimator == "gp"
