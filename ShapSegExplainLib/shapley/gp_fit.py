"""The ``gp`` estimate of a run: the posterior of φ under ``shapley.gp``'s model, refitted as the
run grows.

``shapley.gp`` is the model alone (kernel, likelihood, posterior); this module decides when the
hyperparameters θ are re-optimised (warm-started, on at most ``HYPER_ROWS`` coalitions), widens
the posterior SE for θ's uncertainty and offers the grouped jackknife instead. Its state (θ, when
it was fitted, the widening) is kept on the run, so that a resumed run continues it.

The functions take the run (``shapley.estimator.KernelShapRun``, not imported: imports flow one
way, estimator -> gp_fit). ``shapley.gp`` is imported inside them, so that importing the
estimator does not load scipy.
"""
from __future__ import annotations

import numpy as np

from .wls import jackknife_se

HYPER_ROWS = 600      # the GP's hyperparameters are fitted on at most this many coalitions


def estimate(run: "KernelShapRun", system: dict, fresh: bool = False) -> dict:
    """The table's entry: ``gp_estimate`` (the GP fits the evaluations, not ``system``)."""
    return gp_estimate(run, fresh)


def gp_estimate(run: "KernelShapRun", fresh: bool = False, se_method: str | None = None) -> dict:
    """The posterior of φ; the hyperparameters are re-optimised (warm-started) when the
    evaluations grew by half since the last time, or when ``fresh``."""
    from .gp import STARTS, GameGP
    x, v = np.array(run.coalitions), np.array(run.values)
    gp = GameGP(x, v, run.v0, run.max_order)
    n = run.n_evaluations
    refit = run.theta is None or (fresh and run.theta_at != n) or n >= 1.5 * run.theta_at
    if refit:
        # a default start every time: a warm start alone can stay at a bound it reached
        # while the data were few
        starts = [np.array(st) for st in STARTS] if run.theta is None else [np.array(STARTS[0]), run.theta]
        run.theta, run.theta_at = _hyper_gp(run, gp, x, v).optimize(starts), n
    post = gp.posterior(run.theta)
    phi = post.values + (run.vn - run.v0 - post.values.sum()) / run.m
    if (se_method or run.se_method) != "posterior":
        se = gp_jackknife(run, x, v)
    else:
        se = post.se * _se_widening(run, gp, post, refit)
    return {"values": phi, "se": se, "estimator": "gp", "log_rho": float(run.theta[0]),
            "log_nugget": float(run.theta[1]), "log_size_offset": float(run.theta[2]),
            "log_pair_weight": float(run.theta[3]) if len(run.theta) > 3 else None,
            "fresh": run.theta_at == n}


def _se_widening(run: "KernelShapRun", gp, post, refit: bool) -> np.ndarray:
    """Per player, the posterior SE with θ integrated out (``gp.marginal_se``) over the
    SE at θ̂; 1 beyond ``HYPER_ROWS`` coalitions, where θ is well determined. Computed
    when θ is fitted (so for every final and stopping estimate), kept between fits."""
    if refit:
        run.widening = np.ones(run.m)
        if run.n_evaluations <= HYPER_ROWS:
            wide = gp.marginal_se(post, np.random.default_rng([run.seed, run.n_evaluations, 3]))
            run.widening = np.divide(wide, post.se, out=np.ones(run.m), where=post.se > 0)
    return run.widening


def _hyper_gp(run: "KernelShapRun", gp, x: np.ndarray, v: np.ndarray):
    """The model the hyperparameters are fitted on: every row up to ``HYPER_ROWS``,
    else that many drawn at random (seeded), v(∅) and v(N) always. Two numbers are
    well determined by a few hundred coalitions; the posterior uses every row."""
    from .gp import GameGP
    if len(v) <= HYPER_ROWS:
        return gp
    rng = np.random.default_rng([run.seed, len(v), 2])
    ends = np.flatnonzero(~x.any(axis=1) | x.all(axis=1))
    rest = np.setdiff1d(np.arange(len(v)), ends)
    pick = np.sort(np.concatenate([ends, rng.choice(rest, HYPER_ROWS - len(ends), replace=False)]))
    return GameGP(x[pick], v[pick], run.v0, run.max_order)


def gp_jackknife(run: "KernelShapRun", x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Delete-a-group jackknife over the sampled pairs, hyperparameters fixed."""
    from .gp import GameGP
    pairs = np.array(list(run.pair_draws.keys()), dtype=np.int64).reshape(-1, 2)
    g = min(run.n_boot, len(pairs))
    if g < 2:
        return np.zeros(run.m)
    rng = np.random.default_rng([run.seed, run.n_draws])
    reps = []
    for part in np.array_split(rng.permutation(len(pairs)), g):
        keep = np.ones(len(v), bool)
        keep[pairs[part].ravel()] = False
        reps.append(GameGP(x[keep], v[keep], run.v0, run.max_order).posterior(run.theta).values)
    return jackknife_se(np.array(reps))
