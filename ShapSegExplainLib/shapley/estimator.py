"""Shapley values of any game ``game(coalitions: bool (k, M)) -> values (k,)``, in batches.

* ``2**M <= budget``: every coalition is evaluated and the values come from the Shapley
  formula (exact; standard errors 0).
* otherwise KernelSHAP's design (Lundberg & Lee 2017): the empty and full coalitions;
  sizes 1 and M-1 enumerated, then 2 and M-2, ... while the budget allocated to a size by
  its kernel mass covers it (shap's rule); the other sizes sampled in *pairs* (a coalition
  and its complement), stratified by size with equal shares per size (their leverage
  scores are equal, Musco & Witter's Leverage SHAP); a coalition drawn again adds weight,
  never a second evaluation.
* the estimate after every batch (``estimator``):
  - ``gp`` (default): the posterior mean of φ under a Gaussian-process model of the game
    in the Möbius basis whose interactions fade with their order at a rate learnt by
    maximum likelihood (``shapley_gp``); every evaluated coalition informs it, both
    halves of a pair included. Standard errors are the posterior standard deviations,
    with the hyperparameters integrated out on up to ``gp_fit.HYPER_ROWS`` coalitions
    (or a grouped jackknife over the sampled pairs). If the additive fit reproduces
    v(S) - v(N∖S) on every evaluated pair, as it does for every game with interactions
    of order <= 2, that fit is used: it is then exact.
  - ``gp-trees``: the GP's design; the estimate adds a tree proxy fitted on the evaluated
    coalitions to the GP on its residuals, with bootstrap standard errors (``shapley.trees``).
  - ``wls``: the weighted least-squares fit of KernelSHAP with post-stratified kernel
    weights, a ridge towards the equal split chosen by cross-validation over the pairs,
    and grouped-jackknife (or bootstrap) standard errors over the sampled pairs; sizes 1
    and M-1 enumerated only from about 6-7M (``always_singletons`` to force them).
  Each is one entry of ``FITS`` (name, design, standard-error methods, fit), its fit in its
  own module: ``shapley.gp_fit``, ``shapley.trees``, ``shapley.wls``.
  Both impose efficiency (Σφ = v(N) - v(∅)) to rounding after every batch: the WLS fit as
  a KKT constraint, the GP because v(N) is observed without noise; the last rounding is
  spread evenly.
* cost-aware draws (``cost``, GP only): each sampled pair is the cheapest of ``candidates``
  pairs of the same size drawn uniformly, its cost being the tile outputs the memo lacks
  (given the pairs already chosen for the batch). The choice depends on the coalitions and
  the memo only, never on a game value, so the GP posterior, which conditions on the
  evaluated coalitions whatever chose them, needs no reweighting (an ignorable design).
  The WLS fit's post-stratified weights assume uniform draws within a size, so it always
  draws uniformly.
* a cheap proxy game corrected by exact values: ``shapley.proxy.with_proxy``.
* after every batch: φ, a standard error per player and the convergence ratio
  max SE / (max φ - min φ) (Covert & Lee 2021); stop below ``threshold``, at the budget
  or at the time limit.

Hand-written: shap and shapiq implement KernelSHAP but neither offers batched requests
with running standard errors, resumable runs or an exact efficiency constraint with
pairing and uniform-size sampling together; they are the test and benchmark peers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from math import comb, lgamma
from typing import Callable

import numpy as np

from . import eig_fit, gp_fit, trees, wls
from .settings import ShapleySettings
from ..errors import ShapSegError

Game = Callable[[np.ndarray], np.ndarray]
Cost = Callable[[np.ndarray], set]      # coalition -> the (tile, key) outputs its evaluation would need
SIZE_SAMPLING = ("leverage", "kernel", "sqrt_kernel")

EXACT_MAX_PLAYERS = 10   # the default budget enumerates every coalition up to this many players
BUDGET_PER_PLAYER = 10   # ... and allows this many coalitions per player beyond it
EVAL_CHUNK = 16       # coalitions per game call: how often a time limit or forward budget is checked
Pace = Callable[[], int]                 # how many coalitions the next game call may hold (near a limit: fewer)


@dataclass(frozen=True)
class Fit:
    """One estimator, as ``KernelShapRun`` uses it: the design it samples, the standard-error
    methods it offers (the first is the default) and its estimate after every batch."""
    name: str
    design: str                     # "gp": sizes 1 and M-1 enumerated, cost-aware draws; "kernelshap": uniform;
                                    # "adaptive": the fit's module chooses (its start and sample)
    se_methods: tuple[str, ...]
    estimate: Callable[["KernelShapRun", dict, bool], dict]   # (run, normal-equation parts, fresh) -> est


# Every estimator, by name: its fit lives in its own module. choices.ESTIMATORS lists the
# same names for the torch-free readers (command line, job check).
FITS: dict[str, Fit] = {fit.name: fit for fit in (
    Fit("gp", "gp", ("posterior", "jackknife"), gp_fit.estimate),
    Fit("wls", "kernelshap", ("jackknife", "bootstrap"), wls.estimate),
    Fit("gp-trees", "gp", ("posterior", "jackknife"), trees.estimate),   # the GP's design, the trees' estimate
    Fit("gp-eig", "adaptive", ("posterior",), eig_fit.estimate),         # its own design: eig_fit.sample
)}


def default_budget(n_players: int) -> int:
    """Exact values (2^M coalitions) up to ``EXACT_MAX_PLAYERS`` players, else 10·M coalitions."""
    return 2 ** n_players if n_players <= EXACT_MAX_PLAYERS else BUDGET_PER_PLAYER * n_players


def is_exact(n_players: int, budget: int) -> bool:
    """The rule ``shapley_values`` follows: every coalition fits in the budget."""
    return n_players <= 30 and (1 << n_players) <= budget


@dataclass
class ShapleyResult:
    """Values, their standard errors, v(∅), v(N), evaluations, and the audit trail."""
    values: np.ndarray
    se: np.ndarray
    base_value: float
    full_value: float
    n_evaluations: int
    ratio: float
    exact: bool
    stop_reason: str
    seed: int
    coalitions: np.ndarray
    game_values: np.ndarray
    history: list[dict] = field(default_factory=list)
    run: "KernelShapRun | None" = field(default=None, repr=False)
    estimator: str = "exact"
    proxy_evaluations: int = 0                       # coalitions of a proxy game (``shapley.proxy``), apart
    proxy_coalitions: np.ndarray | None = field(default=None, repr=False)
    proxy_values: np.ndarray | None = field(default=None, repr=False)

    @property
    def additivity_error(self) -> float:
        return float(self.values.sum() - (self.full_value - self.base_value))


# ----- kernel --------------------------------------------------------------------------------
def size_mass(m: int) -> np.ndarray:
    """Shapley-kernel mass of each coalition size 0..M (0 at 0 and M), summing to 1."""
    s = np.arange(m + 1, dtype=np.float64)
    mass = np.zeros(m + 1)
    mass[1:m] = (m - 1) / (s[1:m] * (m - s[1:m]))
    return mass / mass.sum()


def enumerated_sizes(m: int, budget: int, always_singletons: bool = False) -> list[int]:
    """Sizes s <= M/2 whose pair (s, M-s) is enumerated, from the outside in, while the
    budget share of the remaining sizes, by kernel mass, covers all their coalitions (shap's
    rule). Sizes 1 and M-1 pass it from a budget of about 6-7M on; below that, spending 2M
    evaluations on them doubles the error at 4M (measured: benchmarks/bench_shapley.py), so
    they are sampled like the others unless ``always_singletons``."""
    mass = size_mass(m)
    left = budget - 2
    sizes: list[int] = []
    remaining = mass[1:m].sum()
    for s in range(1, m // 2 + 1):
        count = comb(m, s) * (1 if 2 * s == m else 2)
        pair_mass = mass[s] * (1 if 2 * s == m else 2)
        forced = s == 1 and always_singletons and left >= count
        if not forced and (remaining <= 0 or left * pair_mass / remaining < count):
            break
        sizes.append(s)
        left -= count
        remaining -= pair_mass
    return sizes


def exact_shapley(values_by_mask: np.ndarray, m: int) -> np.ndarray:
    """Shapley values from all 2^M game values indexed by bit mask (bit i = player i)."""
    masks = np.arange(1 << m, dtype=np.int64)
    size = np.zeros(1 << m, dtype=np.int64)
    for i in range(m):
        size += (masks >> i) & 1
    w = np.exp([lgamma(s + 1) + lgamma(m - s) - lgamma(m + 1) for s in range(m)])
    phi = np.empty(m)
    for i in range(m):
        without = masks[((masks >> i) & 1) == 0]
        phi[i] = np.sum(w[size[without]] * (values_by_mask[without | (1 << i)] - values_by_mask[without]))
    return phi


# ----- the estimator ---------------------------------------------------------------------------
class KernelShapRun:
    """A resumable KernelSHAP run: every (coalition, value) kept, fit after every batch."""

    def __init__(self, game: Game, n_players: int, seed: int = 0, resamples: int = 64,
                 size_sampling: str = "leverage", se_method: str | None = None,
                 always_singletons: bool | None = None, shrinkage: str = "cv", estimator: str | None = None,
                 max_order: int | None = None, settings: ShapleySettings | None = None) -> None:
        if n_players < 2:
            raise ValueError("KernelSHAP needs at least 2 players")
        self.game, self.m, self.seed, self.n_boot = game, int(n_players), int(seed), int(resamples)
        self.settings = (settings or ShapleySettings()).replaced(estimator=estimator)
        estimator = self.settings.estimator
        if estimator not in FITS:
            raise ValueError(f"estimator must be one of {tuple(FITS)}")
        if estimator == "gp-eig" and self.m > eig_fit.MAX_PLAYERS:
            estimator = "gp"              # its Shapley operator costs O(M³) per coalition: a fine level uses the GP
        self.estimator, self.max_order = estimator, max_order
        self.fitter = FITS[estimator]
        self.gp_design = self.fitter.design == "gp"
        self.adaptive = self.fitter.design == "adaptive"
        self.least_batch = 1 if self.adaptive else 2    # a sampled batch: a chosen coalition, or a pair
        se_method = se_method or self.fitter.se_methods[0]
        allowed = self.fitter.se_methods
        if se_method not in allowed:
            raise ValueError(f"se_method must be one of {allowed} with the {estimator} estimator")
        self.se_method = se_method
        self.theta: np.ndarray | None = None            # GP hyperparameters (log ρ, log λ, log σ, log ω): gp_fit
        self.theta_at = 0                               # evaluations when they were last optimised
        self.widening = np.ones(self.m)                 # SE with θ integrated out / SE at θ̂ (gp_fit._se_widening)
        self.rng = np.random.default_rng(seed)
        self.rows: dict[bytes, int] = {}
        self.coalitions: list[np.ndarray] = []
        self.values: list[float] = []
        self.fixed_weight: dict[int, float] = {}      # row -> weight of enumerated rows
        self.pair_draws: dict[tuple[int, int], int] = {}  # (row, complement row) -> times drawn
        self.sampled_sizes: list[int] = []
        self.n_draws = 0
        self.v0 = self.vn = 0.0
        if size_sampling not in SIZE_SAMPLING:
            raise ValueError(f"size_sampling must be one of {SIZE_SAMPLING}")
        self.size_sampling = size_sampling
        self.always_singletons = self.gp_design if always_singletons is None else bool(always_singletons)
        if shrinkage not in ("cv", "none"):
            raise ValueError("shrinkage must be cv or none")
        self.shrinkage, self.ridge = shrinkage, 0.0      # wls: the ridge it chose last
        self.stratum_draws: dict[int, int] = {}
        self.stop: Callable[[], str | None] = lambda: None   # asked between chunks of evaluations
        self.chunk = EVAL_CHUNK
        self.pace: Pace | None = None         # smaller chunks near a time limit or forward budget
        self.cost: Cost | None = None         # cost-aware draws (GP only), see the module docstring
        self.candidates = 1
        self.stopped: str | None = None       # why evaluation stopped early (time limit, forward budget)
        self.partial = False                  # stopped inside the first design: only the GP can fit it

    # -- evaluation bookkeeping
    def _evaluate(self, coalitions: np.ndarray, interruptible: bool = True) -> list[int]:
        """Evaluate the coalitions not seen yet, ``chunk`` at a time, asking ``stop`` before
        each chunk; return the row of every coalition (-1: not evaluated, stopped)."""
        keys = [np.packbits(c).tobytes() for c in coalitions]
        first: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            if k not in self.rows:
                first.setdefault(k, i)
        todo = list(first.values())
        start = 0
        while start < len(todo):
            if interruptible and self.stopped is None:
                self.stopped = self.stop()
            if self.stopped is not None and interruptible:
                break
            size = chunk_size(self.chunk, self.pace if interruptible else None)
            part, start = todo[start:start + size], start + size
            vals = np.asarray(self.game(coalitions[part]), dtype=np.float64).reshape(-1)
            if vals.shape[0] != len(part) or not np.isfinite(vals).all():
                raise ValueError("the game must return one finite value per coalition")
            for j, i in enumerate(part):
                self.rows[keys[i]] = len(self.values)
                self.coalitions.append(coalitions[i].copy())
                self.values.append(float(vals[j]))
        return [self.rows.get(k, -1) for k in keys]

    @property
    def n_evaluations(self) -> int:
        return len(self.values)

    def start(self, budget: int) -> None:
        """Empty and full coalitions (always), then the enumerated sizes (their pairs), in
        chunks that ``stop`` can interrupt; an interrupted design is fitted by the GP."""
        if self.adaptive:
            return eig_fit.start(self, budget)
        m = self.m
        sizes = enumerated_sizes(m, budget, self.always_singletons)
        mass = size_mass(m)
        ends = self._evaluate(np.array([np.zeros(m, bool), np.ones(m, bool)]), interruptible=False)
        self.v0, self.vn = self.values[ends[0]], self.values[ends[1]]
        rows, weights = [], []
        for s in sizes:
            for t in sorted({s, m - s}):
                for c in _all_of_size(m, t):
                    rows.append(c)
                    weights.append(mass[t] / comb(m, t))
        got = self._evaluate(np.array(rows)) if rows else []
        for r, w in zip(got, weights):
            if r >= 0:
                self.fixed_weight[r] = w
        self.sampled_sizes = [s for s in range(1, m) if min(s, m - s) not in sizes]
        if self.stopped is not None:
            self.partial = True
            self.sampled_sizes = list(range(1, m))

    def _strata(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sampled strata (the smaller size s of a pair of sizes s, M-s), their kernel mass
        and their target share of the draws."""
        m = self.m
        low = np.array(sorted({min(s, m - s) for s in self.sampled_sizes}), dtype=int)
        mass = size_mass(m)
        both = np.where(2 * low == m, mass[low], mass[low] + mass[m - low])
        n_sizes = np.where(2 * low == m, 1.0, 2.0)
        share = {"leverage": n_sizes, "kernel": both, "sqrt_kernel": np.sqrt(both)}[self.size_sampling]
        return low, both, share / share.sum()

    def _allocate(self, n: int) -> list[int]:
        """Sizes for the next ``n`` draws: each goes to the stratum furthest below its share
        (ties at random), so strata are covered early and counts track the shares."""
        low, _, share = self._strata()
        done = np.array([self.stratum_draws.get(int(s), 0) for s in low], dtype=np.float64)
        total = done.sum()
        out = []
        for _ in range(n):
            total += 1
            deficit = share * total - done
            best = np.flatnonzero(deficit >= deficit.max() - 1e-12)
            k = int(self.rng.choice(best))
            done[k] += 1
            out.append(int(low[k]))
        return out

    def sample(self, n_new: int, max_rounds: int = 50) -> int:
        """Draw pairs (a coalition of a sampled size and its complement), stratified by size,
        until ``n_new`` new coalitions were evaluated or the space is used up. A pair drawn
        again counts as a draw (weight) but is not evaluated again."""
        if not self.sampled_sizes:
            return 0
        if self.adaptive:
            return eig_fit.sample(self, n_new)
        before = self.n_evaluations
        draws, batch = [], []
        seen = set(self.rows)
        planned: set = set()
        for _ in range(max_rounds):
            full = False
            for s in self._allocate(max(1, (n_new - len(batch) + 1) // 2)):
                c = self._draw(s, planned)
                fresh = [x for x in (c, ~c) if np.packbits(x).tobytes() not in seen]
                if len(batch) + len(fresh) > n_new:
                    full = True
                    break
                draws.append(c)
                self.stratum_draws[s] = self.stratum_draws.get(s, 0) + 1
                for x in fresh:
                    seen.add(np.packbits(x).tobytes())
                    batch.append(x)
            if full or len(batch) >= n_new:
                break
        if not draws:
            return 0
        both = np.concatenate([np.array(draws), ~np.array(draws)])
        rows = self._evaluate(both)
        n = len(draws)
        for a, b in zip(rows[:n], rows[n:]):
            if a < 0 or b < 0:          # stopped before this pair was complete: only its rows count (GP)
                continue
            key = (min(a, b), max(a, b))
            self.pair_draws[key] = self.pair_draws.get(key, 0) + 1
            self.n_draws += 1
        return self.n_evaluations - before

    def _draw(self, size: int, planned: set) -> np.ndarray:
        """A coalition of ``size``: uniform, or (cost-aware) the pair of least new cost among
        ``candidates`` uniform ones; its tile outputs join ``planned``."""
        picks = [self._uniform(size) for _ in range(self.candidates if self.cost is not None else 1)]
        if len(picks) == 1:
            return picks[0]
        needs = [(self.cost(c) | self.cost(~c)) - planned for c in picks]
        best = int(np.argmin([len(n) for n in needs]))
        planned |= needs[best]
        return picks[best]

    def _uniform(self, size: int) -> np.ndarray:
        c = np.zeros(self.m, bool)
        c[self.rng.choice(self.m, size=size, replace=False)] = True
        return c

    # -- the fit
    def _system(self) -> dict:
        """Normal-equation parts: enumerated rows summed once, sampled pairs kept per pair."""
        x = np.array(self.coalitions, dtype=np.float64)
        y = np.array(self.values) - self.v0
        fixed = np.array(list(self.fixed_weight.keys()), dtype=np.int64)
        wf = np.array(list(self.fixed_weight.values()))
        xf = x[fixed] * wf[:, None]
        out = {"a": xf.T @ x[fixed], "b": xf.T @ y[fixed]}
        if self.pair_draws:
            pairs = np.array(list(self.pair_draws.keys()))
            low, mass, _ = self._strata()
            sizes = x[pairs[:, 0]].sum(axis=1).astype(int)
            stratum = np.searchsorted(low, np.minimum(sizes, self.m - sizes))
            out.update(xa=x[pairs[:, 0]], xb=x[pairs[:, 1]], ya=y[pairs[:, 0]], yb=y[pairs[:, 1]],
                       counts=np.array(list(self.pair_draws.values()), dtype=np.float64),
                       stratum=stratum, stratum_mass=mass)
        return out

    def fit(self, pair_counts: np.ndarray | None = None, system: dict | None = None,
            ridge: float | None = None) -> np.ndarray:
        """The constrained weighted least-squares fit (``wls.fit``)."""
        return wls.fit(self, pair_counts, system, ridge)

    # -- the estimate after a batch
    def estimate(self, system: dict, fresh: bool = False) -> dict:
        """φ, standard errors and what produced them: the estimator's fit (``FITS``), but where
        every estimator would agree. A first design cut short is fitted by the GP (only it
        fits any set of coalitions). On the GP's design, the WLS fit when every size is
        enumerated, and the additive fit when it reproduces every complement pair exactly
        (then the game's odd part is additive on the data, as for every game of order <= 2,
        and that fit is its exact Shapley value)."""
        if self.partial and not self.adaptive:
            return {**gp_fit.gp_estimate(self, fresh=True, se_method="posterior"),
                    "estimator": "gp (first design incomplete)"}
        if self.gp_design and not self.sampled_sizes:
            return wls.estimate(self, system, fresh)
        if self.gp_design:
            exact = self.additive_fit(system)
            if exact is not None:
                return {"values": exact, "se": np.zeros(self.m), "estimator": "additive (exact fit)"}
        return self.fitter.estimate(self, system, fresh)

    def complement_pairs(self) -> np.ndarray:
        """Rows (a, b) of every evaluated coalition and its evaluated complement, but ∅/N."""
        out = []
        for a in self.rows.values():
            c = self.coalitions[a]
            if c.any() and not c.all():
                b = self.rows.get(np.packbits(~c).tobytes())
                if b is not None and a < b:
                    out.append((a, b))
        return np.array(out, dtype=np.int64).reshape(-1, 2)

    def additive_fit(self, system: dict) -> np.ndarray | None:
        """The unshrunk constrained fit if it reproduces v(S) - v(N∖S) on every evaluated
        pair to rounding, else None."""
        pairs = self.complement_pairs()
        if len(pairs) < self.m:
            return None
        a, b, _ = wls.normal_equations(system, None)
        phi = wls.constrained_solve(a, b, self.vn - self.v0, 0.0)
        x = np.array(self.coalitions, dtype=np.float64)
        v = np.array(self.values)
        diff = v[pairs[:, 0]] - v[pairs[:, 1]]
        resid = diff - (x[pairs[:, 0]] - x[pairs[:, 1]]) @ phi
        scale = max(float(np.abs(diff).max()), abs(self.vn - self.v0), 1e-300)
        return phi if float(np.abs(resid).max()) <= 1e-9 * scale else None

    def audit(self) -> dict:
        """Everything needed to check, resume or re-fit a run."""
        return {"seed": self.seed, "coalitions": np.array(self.coalitions), "values": np.array(self.values),
                "pair_draws": dict(self.pair_draws), "sampled_sizes": list(self.sampled_sizes),
                "estimator": self.estimator, "theta": None if self.theta is None else self.theta.tolist()}


def _all_of_size(m: int, s: int):
    from itertools import combinations
    for idx in combinations(range(m), s):
        c = np.zeros(m, bool)
        c[list(idx)] = True
        yield c


# ----- entry point ------------------------------------------------------------------------------
def shapley_values(game: Game, n_players: int, budget: int, seed: int = 0, batch_size: int | None = None,
                   threshold: float | None = None, time_limit: float | None = None, resamples: int = 64,
                   se_method: str | None = None, size_sampling: str = "leverage", always_singletons: bool | None = None,
                   shrinkage: str = "cv", on_batch: Callable[[dict], None] | None = None, min_pairs: int = 8,
                   estimator: str | None = None, max_order: int | None = None,
                   stop: Callable[[], str | None] | None = None, cost: Cost | None = None,
                   candidates: int | None = None, pace: Pace | None = None,
                   settings: ShapleySettings | None = None) -> ShapleyResult:
    """Shapley values of ``game`` over ``n_players`` with at most ``budget`` evaluations.

    ``on_batch`` gets after every batch a dict with ``values``, ``se``, ``ratio``,
    ``n_evaluations``, ``budget`` and ``phase``; ``batch_size`` (default max(M, 32))
    is the number of new coalitions per sampled batch. ``time_limit`` (seconds from this
    call) and ``stop`` (a reason to stop, or None) are checked every ``EVAL_CHUNK``
    evaluations, also inside the first design and an enumeration; what was evaluated by
    then is fitted (by the GP when the design is incomplete) and returned. ``pace`` (the
    caller's count of coalitions that fit before its limit) shrinks those chunks near the
    limit, down to one coalition, so that a stop overshoots by one coalition, not one chunk
    (``run.sampler.Sampler.pace``). ``cost`` and
    ``candidates`` make the GP's draws cost-aware. A cheap proxy game: ``shapley.proxy``.
    ``settings`` (a run's, passed whole) holds the estimator's options; ``batch_size``,
    ``threshold``, ``estimator`` and ``candidates``, where given, replace theirs."""
    s = (settings or ShapleySettings()).replaced(coalition_batch=batch_size, threshold=threshold, estimator=estimator,
                                                 cost_candidates=candidates)
    batch_size, threshold, candidates = s.coalition_batch, s.threshold, s.cost_candidates
    m = int(n_players)
    if m < 1:
        raise ValueError("at least one player is needed")
    budget = int(budget)
    stop_fn = _stopper(time_limit, stop)
    if is_exact(m, budget):
        return _exact(game, m, seed, batch_size, on_batch, budget, stop_fn, pace)
    if budget < 2 * m + 2:
        exact = f"2^M = {2 ** m}" if m <= 20 else "2^M, astronomically many,"
        raise ShapSegError(f"a budget of {budget} coalitions is too small for {m} players: KernelSHAP needs at "
                           f"least 2M+2 = {2 * m + 2} (or {exact} for exact values)", "bad_budget")
    run = KernelShapRun(game, m, seed=seed, resamples=resamples, size_sampling=size_sampling, se_method=se_method,
                        always_singletons=always_singletons, shrinkage=shrinkage, max_order=max_order, settings=s)
    run.stop, run.pace = stop_fn or run.stop, pace
    if run.gp_design and cost is not None and candidates > 1:
        run.cost, run.candidates = cost, int(candidates)
    run.start(budget)
    return _drive(run, budget, batch_size, threshold, on_batch, min_pairs)


def chunk_size(chunk: int, pace: Pace | None) -> int:
    """Coalitions in the next game call: ``chunk``, or fewer (at least one) where ``pace`` says so."""
    return chunk if pace is None else max(1, min(chunk, int(pace())))


def _stopper(time_limit: float | None, stop: Callable[[], str | None] | None) -> Callable[[], str | None] | None:
    """One stop rule from a time limit (counted from now) and a caller's rule (None: neither)."""
    if time_limit is None and stop is None:
        return None
    deadline = None if time_limit is None else time.perf_counter() + float(time_limit)

    def check() -> str | None:
        if deadline is not None and time.perf_counter() >= deadline:
            return "time_limit"
        return stop() if stop is not None else None
    return check


def resume(result: ShapleyResult, budget: int, batch_size: int | None = None, threshold: float = 0.01,
           time_limit: float | None = None, on_batch=None, min_pairs: int = 8,
           stop: Callable[[], str | None] | None = None) -> ShapleyResult:
    """Continue a sampled run up to a larger total ``budget``; nothing is evaluated twice."""
    if result.run is None:
        raise ValueError("only a sampled (not exact) run can be resumed")
    result.run.stop, result.run.stopped = _stopper(time_limit, stop) or (lambda: None), None
    return _drive(result.run, int(budget), batch_size, threshold, on_batch, min_pairs)


def _drive(run: KernelShapRun, budget: int, batch_size, threshold, on_batch, min_pairs) -> ShapleyResult:
    """Fit, report, check the stopping rules, sample the next batch; repeat."""
    t0 = time.perf_counter()
    batch = int(batch_size or max(run.m, 32))
    history: list[dict] = []
    reason = "budget"
    while True:
        system = run._system()
        if run.stopped is None and run.sampled_sizes and budget - run.n_evaluations >= 2:
            run.stopped = run.stop()
        last = budget - run.n_evaluations < run.least_batch or not run.sampled_sizes or run.stopped is not None
        est = run.estimate(system, fresh=last)
        enough = run.n_draws >= min_pairs
        if enough and not est.get("fresh", True) and _ratio(est) < threshold:
            est = run.estimate(system, fresh=True)        # about to stop: up-to-date hyperparameters
        phi, se, ratio = est["values"], est["se"], _ratio(est)
        step = {"values": phi, "se": se, "ratio": ratio, "n_evaluations": run.n_evaluations,
                **{k: v for k, v in est.items() if k not in ("values", "se")},
                "budget": budget, "phase": "sampling", "seconds": time.perf_counter() - t0}
        history.append({k: v for k, v in step.items() if k not in ("values", "se")})
        if on_batch:
            on_batch(step)
        if not run.sampled_sizes:
            reason = "enumerated"
            break
        if enough and ratio < threshold:
            reason = "converged"
            break
        if run.stopped is not None:
            reason = run.stopped
            break
        left = budget - run.n_evaluations
        if left < run.least_batch:
            break
        if run.sample(min(batch, left)) == 0 and run.stopped is None:
            reason = "space_exhausted"
            break
    audit = run.audit()
    return ShapleyResult(values=phi, se=se, base_value=run.v0, full_value=run.vn, n_evaluations=run.n_evaluations,
                         ratio=ratio, exact=False, stop_reason=reason, seed=run.seed, coalitions=audit["coalitions"],
                         game_values=audit["values"], history=history, run=run, estimator=est["estimator"])


def _ratio(est: dict) -> float:
    """max SE / (max φ - min φ)."""
    spread = float(est["values"].max() - est["values"].min())
    return float(est["se"].max() / spread) if spread > 0 else 0.0


def _exact(game: Game, m: int, seed: int, batch_size, on_batch, budget, stop,
           pace: Pace | None = None) -> ShapleyResult:
    """Every coalition, ∅ and N first, in chunks that ``stop`` can interrupt (then the GP
    fits what was evaluated)."""
    masks = np.arange(1 << m, dtype=np.int64)
    masks = np.concatenate([[0, masks[-1]], masks[1:-1]])
    coalitions = ((masks[:, None] >> np.arange(m)) & 1).astype(bool)
    step = int(batch_size or 1024) if stop is None else EVAL_CHUNK
    parts: list[np.ndarray] = []
    i = 0
    while i < len(masks):
        reason = stop() if i and stop is not None else None
        if reason is not None:
            return _partial_enumeration(game, m, seed, coalitions[:i], np.concatenate(parts), reason, on_batch, budget)
        size = step if stop is None else max(2 if i == 0 else 1, chunk_size(step, pace))   # ∅ and N first
        parts.append(np.asarray(game(coalitions[i:i + size]), dtype=np.float64).reshape(-1))
        i += size
    got = np.concatenate(parts)
    if got.shape[0] != len(masks) or not np.isfinite(got).all():
        raise ValueError("the game must return one finite value per coalition")
    values = np.empty(len(masks))
    values[masks] = got
    coalitions = ((np.arange(1 << m)[:, None] >> np.arange(m)) & 1).astype(bool)
    phi = exact_shapley(values, m)
    if on_batch:
        on_batch({"values": phi, "se": np.zeros(m), "ratio": 0.0, "n_evaluations": len(masks),
                  "budget": budget, "phase": "exact"})
    return ShapleyResult(values=phi, se=np.zeros(m), base_value=float(values[0]), full_value=float(values[-1]),
                         n_evaluations=len(masks), ratio=0.0, exact=True, stop_reason="exact", seed=seed,
                         coalitions=coalitions, game_values=values)


def _partial_enumeration(game: Game, m: int, seed: int, coalitions: np.ndarray, values: np.ndarray, reason: str,
                         on_batch, budget) -> ShapleyResult:
    """An enumeration stopped early: the GP posterior of the coalitions evaluated so far."""
    if values.shape[0] != len(coalitions) or not np.isfinite(values).all():
        raise ValueError("the game must return one finite value per coalition")
    run = KernelShapRun(game, max(m, 2), seed=seed, estimator="gp")
    for c, v in zip(coalitions, values):
        run.rows[np.packbits(c).tobytes()] = len(run.values)
        run.coalitions.append(c.copy())
        run.values.append(float(v))
    run.v0, run.vn = float(values[0]), float(values[1])
    run.partial, run.stopped, run.sampled_sizes = True, reason, list(range(1, m))
    est = run.estimate(run._system(), fresh=True)
    if on_batch:
        on_batch({"values": est["values"], "se": est["se"], "ratio": _ratio(est), "n_evaluations": len(values),
                  "budget": budget, "phase": "exact"})
    return ShapleyResult(values=est["values"], se=est["se"], base_value=run.v0, full_value=run.vn,
                         n_evaluations=len(values), ratio=_ratio(est), exact=False, stop_reason=reason, seed=seed,
                         coalitions=coalitions, game_values=values, run=None, estimator=est["estimator"])
