"""The ``gp-trees`` estimate: a tree proxy of the game, corrected by the GP on its residuals.

Real segmentation games are carried by a few players (``benchmarks/games``: the three
largest |φ| hold 73-100 % of Σ|φ|), which the GP's prior, symmetric in the players, cannot
see from few coalitions. Gradient-boosted trees fitted on the evaluated coalitions pick
those players out; their Shapley values are exact (``tree_shapley``), and for any proxy ṽ

    φ(v) = φ(ṽ) + φ(v − ṽ),

so the GP posterior on the residuals v − ṽ completes the estimate (RegressionMSR's idea,
Witter et al. 2025, with the GP for the residual part). The trees nearly interpolate the
coalitions they were fitted on, so the residuals carry no honest uncertainty; the standard
errors are a bootstrap over the evaluated coalitions (v(∅) and v(N) always kept) of the
whole fit, trees and residual GP. Measured on the recorded real games (docs/benchmarks.md):
more accurate than the GP alone up to 10M, less at 30M, intervals 0.96-0.99 of nominal 95 %.

Hand-written: the trees are scikit-learn's; their exact Shapley values over binary players
(a leaf is reached by the coalitions holding the players its path needs present and none
of those it needs absent) take a few lines, where shap's TreeExplainer would be a runtime
dependency for the same numbers.

``estimate`` is the run's fit (the ``gp-trees`` entry of ``shapley.estimator.FITS``); the run is
not imported (imports flow one way, estimator -> trees), and ``shapley.gp`` is imported inside
the functions, so that importing the estimator does not load scipy.
"""
from __future__ import annotations

from math import factorial

import numpy as np

from . import gp_fit

N_TREES = 100
DEPTH = 3
RATE = 0.1
BOOTSTRAP = 16


def fit_trees(x: np.ndarray, v: np.ndarray, seed: int):
    """Gradient-boosted regression trees of v on the coalitions' 0/1 rows."""
    from sklearn.ensemble import GradientBoostingRegressor
    model = GradientBoostingRegressor(n_estimators=N_TREES, max_depth=DEPTH, learning_rate=RATE, random_state=seed)
    return model.fit(np.asarray(x, dtype=np.float64), v)


def estimate(run: "KernelShapRun", system: dict, fresh: bool = False) -> dict:
    """The GP's estimate, replaced by the trees' (``trees_estimate``) with bootstrap standard
    errors whenever the GP's θ is refitted (so for every final and stopping estimate; the GP's
    estimate in between, which costs a fraction of the trees')."""
    out = gp_fit.gp_estimate(run, fresh)
    if not out["fresh"]:
        return out
    phi, se = trees_estimate(np.array(run.coalitions), np.array(run.values), run.seed, run.max_order)
    phi = phi + (run.vn - run.v0 - phi.sum()) / run.m
    return {**out, "values": phi, "se": se, "estimator": "gp-trees"}


def _leaves(tree) -> list[tuple[set, set, float]]:
    """(players needed present, players needed absent, value) of every reachable leaf."""
    t = tree.tree_
    out, stack = [], [(0, frozenset(), frozenset())]
    while stack:
        node, present, absent = stack.pop()
        if t.children_left[node] < 0:
            out.append((present, absent, float(t.value[node].ravel()[0])))
            continue
        f = int(t.feature[node])                  # a split at ~0.5: left holds x_f = 0
        if f not in present:
            stack.append((int(t.children_left[node]), present, absent | {f}))
        if f not in absent:
            stack.append((int(t.children_right[node]), present | {f}, absent))
    return out


def tree_shapley(model, m: int) -> np.ndarray:
    """Exact Shapley values of S ↦ model(1_S) (a fitted GradientBoostingRegressor). A leaf
    of value w is the game w·[A ⊆ S, B ∩ S = ∅], whose Shapley values are
    w·(a−1)!b!/(a+b)! on A and −w·a!(b−1)!/(a+b)! on B."""
    phi = np.zeros(m)
    for est in model.estimators_.ravel():
        for present, absent, w in _leaves(est):
            a, b = len(present), len(absent)
            if a + b == 0:
                continue
            w *= model.learning_rate / factorial(a + b)
            for i in present:
                phi[i] += w * factorial(a - 1) * factorial(b)
            for i in absent:
                phi[i] -= w * factorial(a) * factorial(b - 1)
    return phi


def _corrected(x: np.ndarray, v: np.ndarray, seed: int, theta: np.ndarray | None, max_order: int | None):
    """(φ̂, the residual GP's θ): the trees' φ plus the GP posterior mean on the residuals."""
    from .gp import STARTS, GameGP
    model = fit_trees(x, v, seed)
    resid = v - model.predict(x.astype(np.float64))
    gp = GameGP(x, resid, float(resid[~x.any(axis=1)][0]), max_order)
    if theta is None:
        theta = gp.optimize([np.array(s) for s in STARTS])
    return tree_shapley(model, x.shape[1]) + gp.posterior(theta).values, theta


def trees_estimate(coalitions: np.ndarray, values: np.ndarray, seed: int,
                   max_order: int | None = None, resamples: int = BOOTSTRAP) -> tuple[np.ndarray, np.ndarray]:
    """φ̂ (efficiency left to the caller) and its bootstrap standard errors, from evaluated
    coalitions that include ∅ and N. The bootstrap keeps the residual GP's θ of the fit."""
    x, v = np.asarray(coalitions, dtype=bool), np.asarray(values, dtype=np.float64)
    phi, theta = _corrected(x, v, seed, None, max_order)
    ends = np.flatnonzero(~x.any(axis=1) | x.all(axis=1))
    inner = np.setdiff1d(np.arange(len(v)), ends)
    rng = np.random.default_rng([seed, len(v), 5])
    reps = []
    for r in range(resamples):
        pick = np.concatenate([ends, rng.choice(inner, len(inner), replace=True)])
        rep, _ = _corrected(x[pick], v[pick], seed + r + 1, theta, max_order)
        reps.append(rep - (rep.sum() - phi.sum()) / len(rep))      # the same total as φ̂
    return phi, np.std(reps, axis=0)
