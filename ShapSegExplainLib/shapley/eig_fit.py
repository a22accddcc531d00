"""The ``gp-eig`` estimator of a run: ``shapley.hamming``'s model, its coalitions chosen by it.

The design: ∅ and N, then M − 1 coalitions drawn like ShaplEIG's first design (sizes uniform,
each with its complement); from then on each sub-batch is the one ``HammingGP.choose`` picks
from a pool of ``POOL`` unevaluated coalitions (all of them when fewer remain), drawn with the
run's generator. θ is refitted after every sub-batch while the run is small and whenever the
evaluations grew by ``REFIT_GROWTH`` after; a sub-batch holds one coalition per
``STEP_SHARE`` evaluated (at least one, at most ``EVAL_CHUNK``), so the design adapts
coalition by coalition early and in engine-sized chunks later. Every choice is a function of
the seed and the values seen, so a journal replays it. The model's Shapley operator costs O(M³)
per coalition: a game of more than ``MAX_PLAYERS`` players (a fine level of coarse to fine) is
estimated by ``gp`` instead.

The functions take the run (``shapley.estimator.KernelShapRun``, not imported: imports flow one
way). scipy loads with ``shapley.hamming``, inside these functions, not on import.
"""
from __future__ import annotations

import numpy as np

MAX_PLAYERS = 24        # above this, the run uses the ``gp`` estimator (KernelShapRun)
POOL = 1024             # candidates per choice (ShaplEIG's default)
SMALL = 64              # θ refitted after every sub-batch up to this many evaluations
REFIT_GROWTH = 1.125    # ... then when the evaluations grew by this factor
STEP_SHARE = 16         # a sub-batch: one coalition per this many evaluated


def start(run: "KernelShapRun", budget: int) -> None:
    """∅, N and the first M − 1 coalitions (pairs of uniform size), as far as the budget allows."""
    m = run.m
    ends = run._evaluate(np.array([np.zeros(m, bool), np.ones(m, bool)]), interruptible=False)
    run.v0, run.vn = run.values[ends[0]], run.values[ends[1]]
    first = _fresh_pairs(run, min(m - 1, budget - 2))
    if first:
        run._evaluate(np.array(first))
    run.sampled_sizes = list(range(1, m))
    if run.stopped is not None:
        run.partial = True


def sample(run: "KernelShapRun", n_new: int) -> int:
    """Evaluate up to ``n_new`` coalitions chosen by the model, refitting θ as the module says."""
    from .hamming import HammingGP
    before = run.n_evaluations
    while run.n_evaluations - before < n_new and run.stopped is None:
        x, v = np.array(run.coalitions), np.array(run.values)
        model = HammingGP(x, v)
        _refit_if_due(run, model)
        pool = _pool(run)
        if not len(pool):
            break
        step = min(n_new - (run.n_evaluations - before), max(1, min(run.chunk, run.n_evaluations // STEP_SHARE)))
        picked = pool[model.choose(run.theta, pool, step)]
        got = run._evaluate(picked)
        run.n_draws += sum(r >= 0 for r in got)       # each chosen coalition is a draw (min_pairs counts them)
    return run.n_evaluations - before


def estimate(run: "KernelShapRun", system: dict, fresh: bool = False) -> dict:
    """The posterior of φ (θ refitted when due, or when ``fresh``); Σφ = v(N) − v(∅) to rounding."""
    from .hamming import HammingGP
    model = HammingGP(np.array(run.coalitions), np.array(run.values))
    refitted = _refit_if_due(run, model, force=fresh)
    post = model.posterior(run.theta)
    phi = post.values + (run.vn - run.v0 - post.values.sum()) / run.m
    if refitted:
        # θ integrated out where it was fitted (every final and stopping estimate), kept between fits
        wide = model.marginal_se(post, np.random.default_rng([run.seed, run.n_evaluations, 3]))
        run.widening = np.divide(wide, post.se, out=np.ones(run.m), where=post.se > 0)
    return {"values": phi, "se": post.se * run.widening, "estimator": "gp-eig", "fresh": run.theta_at == run.n_evaluations,
            "log_nugget": float(run.theta[0])}


def _refit_if_due(run: "KernelShapRun", model, force: bool = False) -> bool:
    """θ by the model's fit, warm-started from the last one, when the module's rule says so
    (True: it was refitted)."""
    n = run.n_evaluations
    if run.theta is not None and len(run.theta) != run.m + 2:
        run.theta = None                                  # another model's θ
    due = n <= SMALL or n >= REFIT_GROWTH * run.theta_at or force
    if run.theta is None or (due and run.theta_at != n):
        run.theta = model.optimize([run.theta] if run.theta is not None else None)
        run.theta_at = n
        return True
    return False


def _pool(run: "KernelShapRun") -> np.ndarray:
    """Up to ``POOL`` unevaluated coalitions: every one when fewer remain, else drawn with sizes
    uniform in 1..M−1, each with its complement."""
    m = run.m
    if m <= 20 and 2 ** m - len(run.rows) <= POOL:
        masks = np.arange(1, 2 ** m - 1, dtype=np.int64)
        every = ((masks[:, None] >> np.arange(m)) & 1).astype(bool)
        keys = [np.packbits(c).tobytes() for c in every]
        return every[[k not in run.rows for k in keys]]
    return np.array(_fresh_pairs(run, POOL)).reshape(-1, m)


def _fresh_pairs(run: "KernelShapRun", count: int) -> list[np.ndarray]:
    """Up to ``count`` coalitions not evaluated yet, drawn with the run's generator: a size
    uniform in 1..M−1, a coalition of it, then its complement."""
    m = run.m
    out: list[np.ndarray] = []
    seen = set(run.rows)
    for _ in range(50 * count):
        if len(out) >= count:
            break
        c = np.zeros(m, bool)
        c[run.rng.choice(m, size=int(run.rng.integers(1, m)), replace=False)] = True
        for x in (c, ~c):
            key = np.packbits(x).tobytes()
            if key not in seen and len(out) < count:
                seen.add(key)
                out.append(x)
    return out
