"""The Gaussian-process Shapley estimator against weight-space algebra, enumeration and the WLS fit."""
from itertools import combinations
from math import comb

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from fixtures.games import UnanimityGame, smooth_game, unanimity_game
from ShapSegExplainLib.shapley.estimator import shapley_values
from ShapSegExplainLib.shapley.gp import STARTS, GameGP, gp_shapley


def all_coalitions(m):
    masks = np.arange(1 << m)
    return ((masks[:, None] >> np.arange(m)) & 1).astype(bool)


def weight_space_posterior(x, y, v0, m, rho, lam, sigma):
    """The same model written out term by term: Bayesian linear regression on the features
    [T ⊆ S] (prior variance ρ^(|T|-1)/C(M,|T|)) and [|S| = s] for s = 1..M-1 (prior
    variance σ; not on N), noise λ (none on N)."""
    subsets = [t for k in range(1, m + 1) for t in combinations(range(m), k)]
    inner = ~x.all(axis=1)
    sizes = np.array([[c.sum() == s and inner[j] for s in range(1, m)] for j, c in enumerate(x)], dtype=float)
    feats = np.concatenate([np.array([[all(c[list(t)]) for t in subsets] for c in x], dtype=float), sizes], axis=1)
    prior = np.concatenate([[rho ** (len(t) - 1) / comb(m, len(t)) for t in subsets], np.full(m - 1, sigma)])
    noise = np.where(inner, lam, 0.0)
    k = (feats * prior) @ feats.T + np.diag(noise)
    d = prior * (feats.T @ np.linalg.solve(k, y - v0))                 # posterior mean of each term
    post_cov = np.diag(prior) - (feats * prior).T @ np.linalg.solve(k, feats * prior)
    shapley_map = np.array([[(i in t) / len(t) for t in subsets] + [0.0] * (m - 1) for i in range(m)])
    phi = shapley_map @ d
    s2 = float((y - v0) @ np.linalg.solve(k, y - v0)) / len(y)
    se = np.sqrt(s2 * np.einsum("it,tu,iu->i", shapley_map, post_cov, shapley_map))
    return phi, se


def sampled_data(m, n, seed, order=3):
    rng = np.random.default_rng(seed)
    game = unanimity_game(m, order, seed=seed, offset=0.7)
    x = np.unique(rng.random((n, m)) < rng.random((n, 1)), axis=0)
    x = np.concatenate([np.zeros((1, m), bool), np.ones((1, m), bool), x[x.any(1) & ~x.all(1)]])
    return game, x, game(x)


@pytest.mark.parametrize("rho,lam,sigma", [(0.5, 1e-3, 1e-8), (2.0, 0.1, 0.3)])
def test_kernel_posterior_equals_the_term_by_term_regression(rho, lam, sigma):
    m = 6
    game, x, y = sampled_data(m, 30, seed=1)
    fit = gp_shapley(x, y, y[0], theta=np.log([rho, lam, sigma]))
    phi, se = weight_space_posterior(x[1:], y[1:], y[0], m, rho, lam, sigma)
    np.testing.assert_allclose(fit.values, phi, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(fit.se, se, rtol=1e-7, atol=1e-10)


def test_every_coalition_observed_gives_the_exact_values():
    m = 10
    game = unanimity_game(m, 5, seed=4, offset=-2.0)
    x = all_coalitions(m)
    fit = gp_shapley(x, game(x), -2.0, theta=np.array([0.0, np.log(1e-12), np.log(1e-12)]))
    np.testing.assert_allclose(fit.values, game.shapley(), atol=1e-8)
    assert fit.se.max() < 1e-5


def test_posterior_mean_is_efficient():
    m = 12
    game, x, y = sampled_data(m, 80, seed=2, order=4)
    fit = gp_shapley(x, y, y[0])
    total = y[1] - y[0]
    assert abs(fit.values.sum() - total) < 1e-8 * max(1.0, abs(total))


def test_likelihood_gradient_matches_finite_differences():
    game, x, y = sampled_data(12, 90, seed=3)
    for max_order in (3, None):
        gp = GameGP(x, y, y[0], max_order)
        for theta in (np.array([-0.7, -4.0, -3.0]), np.array([0.4, -1.0, -6.0]),     # geometric orders
                      np.array([-0.7, -4.0, -3.0, 1.2]), np.array([0.4, -1.0, -6.0, -2.0])):   # a free pair weight ω
            grad = gp.neg_log_likelihood(theta)[1]
            numeric = approx_fprime(theta, lambda t: gp.neg_log_likelihood(t)[0], 1e-6)
            np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-5)


def test_maximum_likelihood_beats_a_fixed_guess():
    game, x, y = sampled_data(12, 120, seed=5)
    gp = GameGP(x, y, y[0])
    start = np.array([0.0, np.log(1e-3), np.log(1e-3)])
    theta = gp.optimize([start])
    assert gp.neg_log_likelihood(theta)[0] <= gp.neg_log_likelihood(start)[0]
    assert gp.neg_log_likelihood(theta)[0] < gp.neg_log_likelihood(np.array([np.log(1e-5), 0.0, 0.0]))[0]


def test_bad_max_order_is_refused():
    game, x, y = sampled_data(6, 20, seed=0)
    with pytest.raises(ValueError, match="max_order"):
        GameGP(x, y, y[0], max_order=7)


@pytest.mark.parametrize("m,order", [(32, 3), (24, 5)])
def test_gp_is_more_accurate_than_the_wls_fit_at_4m(m, order):
    err = {"gp": [], "wls": []}
    for seed in range(5):
        game = unanimity_game(m, order, seed=200 + seed)
        truth = game.shapley()
        for est in err:
            res = shapley_values(unanimity_game(m, order, seed=200 + seed), m, 4 * m, seed=seed, threshold=0.0,
                                 estimator=est)
            assert res.n_evaluations == 4 * m
            err[est].append(np.linalg.norm(res.values - truth) / np.linalg.norm(truth))
    assert np.mean(err["gp"]) < 0.8 * np.mean(err["wls"]), err


def test_gp_on_smooth_games_with_every_order():
    """Squashed quadratics plus a size threshold (every order present), M = 14, exact values
    by enumeration: the GP is more accurate than the WLS fit at 6M over six games."""
    m, err = 14, {"gp": [], "wls": []}
    for seed in range(6):
        game = smooth_game(m, seed)
        truth = shapley_values(game, m, 2 ** m).values
        for est in err:
            res = shapley_values(game, m, 6 * m, seed=seed, threshold=0.0, estimator=est)
            err[est].append(np.linalg.norm(res.values - truth) / np.linalg.norm(truth))
    assert np.mean(err["gp"]) < np.mean(err["wls"]), err


def test_jackknife_standard_errors_with_the_gp():
    game = unanimity_game(24, 3, seed=9)
    res = shapley_values(game, 24, 240, seed=1, threshold=0.0, se_method="jackknife", resamples=16)
    post = shapley_values(unanimity_game(24, 3, seed=9), 24, 240, seed=1, threshold=0.0)
    np.testing.assert_allclose(res.values, post.values, atol=1e-12)    # same fit, other errors
    assert (res.se > 0).all() and not np.allclose(res.se, post.se)
    assert np.mean(np.abs(res.values - game.shapley()) <= 1.96 * res.se) >= 0.8
    with pytest.raises(ValueError, match="se_method"):
        shapley_values(game, 24, 240, se_method="bootstrap")


def test_many_players_stay_finite():
    """Every order up to M = 150: the likelihood's bounds keep every covariance finite."""
    game = unanimity_game(150, 3, seed=12, offset=1.0)
    res = shapley_values(game, 150, 600, seed=0, threshold=0.0)
    assert res.estimator == "gp" and np.isfinite(res.values).all() and np.isfinite(res.se).all()
    assert abs(res.additivity_error) <= 1e-12 * max(1.0, abs(res.full_value - res.base_value))
    truth = game.shapley()
    assert np.linalg.norm(res.values - truth) / np.linalg.norm(truth) < 0.5


def test_a_free_pair_weight_reduces_to_the_geometric_model_at_omega_equal_rho():
    game, x, y = sampled_data(10, 70, seed=7)
    gp = GameGP(x, y, y[0])
    geometric, free = np.array([-0.5, -3.0, -2.0]), np.array([-0.5, -3.0, -2.0, -0.5])
    assert gp.neg_log_likelihood(free)[0] == pytest.approx(gp.neg_log_likelihood(geometric)[0], rel=1e-12)
    np.testing.assert_allclose(gp.posterior(free).values, gp.posterior(geometric).values, rtol=1e-10, atol=1e-12)


def test_a_mostly_pairwise_game_learns_a_large_pair_weight():
    """Pairs only (the shape of a real false positive that needs two regions): ω ≫ ρ, and the
    posterior beats the geometric model's at the same data."""
    rng = np.random.default_rng(11)
    m = 10
    supports = np.zeros((12, m), bool)
    for row in supports:
        row[rng.choice(m, 2, replace=False)] = True
    game = UnanimityGame(supports, rng.normal(size=12))
    x = np.concatenate([np.zeros((1, m), bool), np.ones((1, m), bool), rng.random((60, m)) < 0.5])
    y = game(x)
    gp = GameGP(x, y, y[0])
    free = gp.optimize([np.array(st) for st in STARTS])
    geometric = gp.optimize([np.array(st[:3]) for st in STARTS])
    assert free[3] > free[0] + 2.0
    err = [np.linalg.norm(gp.posterior(t).values - game.shapley()) for t in (free, geometric)]
    assert err[0] < err[1]


def test_integrating_theta_reduces_to_the_t_interval_at_theta_hat(monkeypatch):
    """marginal_se with every draw at θ̂ is θ̂'s posterior SE scaled to Student t with n
    degrees of freedom (s² integrated under Jeffreys' prior); with the real spread of θ on
    few values it is wider, and reproducible from its generator."""
    from scipy.stats import t as student_t
    import ShapSegExplainLib.shapley.gp as gp_module
    game, x, y = sampled_data(8, 24, seed=6)
    gp = GameGP(x, y, y[0])
    fit = gp.posterior(gp.optimize([np.array(s) for s in STARTS]))
    spread = gp.marginal_se(fit, np.random.default_rng(0))
    np.testing.assert_array_equal(spread, gp.marginal_se(fit, np.random.default_rng(0)))
    monkeypatch.setattr(gp_module, "LAPLACE_WIDEN", 1e-9)
    at_hat = gp.marginal_se(fit, np.random.default_rng(0))
    np.testing.assert_allclose(at_hat, fit.se * student_t.ppf(0.975, gp.y.size) / 1.959963984540054, rtol=1e-5)
    assert np.mean(spread) > np.mean(at_hat)


@pytest.mark.parametrize("stop_after", [8, None])       # stopped inside the first design (2M + 2 = 22), or not
def test_a_game_that_is_zero_everywhere_gives_zero_values(stop_after):
    """A proxy's residual can be 0 on every coalition played (a tp value that the frozen tiles
    never change; Testing/study, case b, stopped by the study's budget): the GP returns zeros,
    it does not divide by 0."""
    m, played = 10, []

    def game(c):
        played.append(len(c))
        return np.zeros(len(c))
    stop = None if stop_after is None else (lambda: "budget" if sum(played) >= stop_after else None)
    res = shapley_values(game, m, 64, seed=0, estimator="gp", stop=stop, batch_size=4)
    assert np.array_equal(res.values, np.zeros(m)) and np.all(np.isfinite(res.se))
    assert (res.n_evaluations < 2 * m + 2) == (stop_after is not None)


SE_OF_A_RECORDED_GAME = r"""
import json, sys
import numpy as np
from ShapSegExplainLib.shapley.estimator import shapley_values
z = np.load(sys.argv[1])
m = z["tile_roots"].shape[1]
table = z["proxy"]
game = lambda c: table[(np.asarray(c, bool).astype(np.int64) << np.arange(m)).sum(axis=1)]
r = shapley_values(game, m, 4 * m, seed=0, threshold=0.01, estimator="gp")
print(json.dumps({"values": r.values.tolist(), "se": r.se.tolist()}))
"""


def test_the_gp_intervals_do_not_depend_on_the_blas_thread_count():
    """A real held-out game (its proxy, 28 coalitions): θ's draws once followed the BLAS
    thread count (an SVD's signs), and one run gave SEs 3.6x apart on one and two threads."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    game = Path(__file__).resolve().parents[2] / "benchmarks" / "games" / "heldout" / "blur-fp-kidney_right-3.npz"
    runs = []
    for threads in ("1", "2"):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        out = subprocess.run([sys.executable, "-c", SE_OF_A_RECORDED_GAME, str(game)], env=env,
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert np.allclose(runs[0]["values"], runs[1]["values"], rtol=1e-9, atol=0)
    assert np.allclose(runs[0]["se"], runs[1]["se"], rtol=1e-6, atol=0), (runs[0]["se"], runs[1]["se"])
