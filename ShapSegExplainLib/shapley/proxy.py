"""Shapley values of an expensive game v through a cheap proxy game ṽ (a control variate).

Shapley values are linear in the game, so φ(v) = φ(ṽ) + φ(v − ṽ). The proxy (here: the
same network with the tiles that carry little of the ROI's Gaussian weight frozen at their
unperturbed output) is played with the full budget; the residual r = v − ṽ, small wherever
the proxy is good, is played with ``residual_budget`` coalitions (default 2M + 2: ∅, N, every
player alone and every player left out). Both are estimated by the same estimator with the
same seed, so the residual's coalitions are the first ones the proxy played: their proxy
values are known and their unfrozen tiles are already in the tile memo, and an exact value
costs only the frozen tiles that hold an absent player. A smaller residual budget K < 2M + 2
(∅, N and (K − 2)/2 complementary pairs drawn from the Shapley kernel) cannot determine M
values; it is played with Covert & Lee's unbiased KernelSHAP (``unbiased_kernel_shap``),
whose estimate of φ(r) is unbiased for any K and whose error scales with the residual, not
with the game: the way to spend fewer exact coalitions than players where the proxy is good.
The engine plays K = 6 (``--residual-coalitions``): 1.13–1.36× fewer tile forwards on the
four bench_cost cases, the curves at the paper's or better, for about twice the summed error
against exact values on the demo (docs/performance.md). Its draws are not the proxy's, so
each of its coalitions costs every ROI tile that holds an absent player.

No bias comes from the proxy: each part is the estimator's estimate of its own game, so
φ̂ = φ̂(ṽ) + φ̂(r) converges to φ(v) as both budgets grow (and equals it when both games are
enumerated; tested against brute force), efficiency Σφ̂ = v(N) − v(∅) holds exactly
(ṽ(∅) + r(∅) = v(∅)), and the standard errors add in quadrature (the parts are fitted on
separate evaluations). Witter et al. 2025 (regression-adjusted Monte Carlo) and ProxySHAP
use the same split with a fitted surrogate; here the surrogate is the network itself at a
fraction of the tile forwards.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from ..choices import MIN_UNBIASED
from .estimator import (EVAL_CHUNK, Cost, Game, Pace, ShapleyResult, _ratio, chunk_size, is_exact,
                        shapley_values, size_mass)


def residual_design(m: int) -> int:
    """The residual's budget: KernelSHAP's smallest, 2M + 2 (∅, N, sizes 1 and M − 1)."""
    return 2 * m + 2


def with_proxy(game: Game, proxy: Game, m: int, budget: int, residual_budget: int | None = None, *,
               cost: Cost | None = None, proxy_cost: Cost | None = None,
               on_batch: Callable[[dict], None] | None = None, enumerate_proxy: bool = False,
               **kwargs) -> ShapleyResult:
    """φ(v) as φ̂(ṽ) with ``budget`` proxy coalitions plus φ̂(v − ṽ) with ``residual_budget``
    exact ones; ``kwargs`` go to both estimates (seed, estimator, stop, ...). A budget that
    enumerates the game plays it exactly, without the proxy, unless ``enumerate_proxy``: then
    φ(ṽ) is exact and only the residual is estimated."""
    if is_exact(m, budget) and not enumerate_proxy:
        return shapley_values(game, m, budget, cost=cost, on_batch=on_batch, **kwargs)
    known: dict[bytes, float] = {}

    def played(coalitions: np.ndarray) -> np.ndarray:
        values = np.asarray(proxy(coalitions), dtype=np.float64).reshape(-1)
        for c, v in zip(coalitions, values):
            known[np.packbits(c).tobytes()] = float(v)
        return values

    def residual(coalitions: np.ndarray) -> np.ndarray:
        exact = np.asarray(game(coalitions), dtype=np.float64).reshape(-1)
        keys = [np.packbits(c).tobytes() for c in coalitions]
        missing = [i for i, k in enumerate(keys) if k not in known]
        if missing:
            played(coalitions[missing])
        return exact - np.array([known[k] for k in keys])

    first = shapley_values(played, m, budget, cost=proxy_cost, on_batch=_tagged(on_batch, "proxy"), **kwargs)
    k = residual_budget or residual_design(m)
    if k < residual_design(m) and not is_exact(m, k):
        rest = unbiased_kernel_shap(residual, m, k, seed=kwargs.get("seed", 0), on_batch=_corrected(on_batch, first),
                                    stop=kwargs.get("stop"), pace=kwargs.get("pace"))
    else:
        rest = shapley_values(residual, m, max(k, residual_design(m)), cost=cost,
                              on_batch=_corrected(on_batch, first), **kwargs)
    return combine(first, rest, known)


def kernel_gap(m: int) -> float:
    """A = E[z zᵀ] for z drawn from the Shapley kernel (a size by ``size_mass``, then a coalition
    of that size uniformly) is (d − c)I + c11ᵀ, with d = E[s]/M on the diagonal and
    c = E[s(s − 1)]/(M(M − 1)) off it; on the sum-zero subspace it is (d − c)I."""
    s, mass = np.arange(m + 1, dtype=np.float64), size_mass(m)
    return float((mass * s).sum()) / m - float((mass * s * (s - 1)).sum()) / (m * (m - 1))


def unbiased_from_moments(b: np.ndarray, total: float, m: int) -> np.ndarray:
    """φ = A⁻¹(b − λ1) with λ such that Σφ = total, where b = E[z (v(z) − v(∅))]: the Shapley
    values exactly when b is (Covert & Lee 2021, eq. 7). A's form makes it P b / (d − c) +
    total/M (P removes the mean): affine in b, so unbiased for an unbiased b̂."""
    return (b - b.mean()) / kernel_gap(m) + total / m


def unbiased_kernel_shap(game: Game, m: int, budget: int, seed: int = 0,
                         on_batch: Callable[[dict], None] | None = None, stop: Callable[[], str | None] | None = None,
                         pace: Pace | None = None) -> ShapleyResult:
    """Covert & Lee (2021)'s unbiased KernelSHAP with paired sampling: ∅, N and (budget − 2)/2
    coalitions z from the Shapley kernel, each followed by its complement; b̂ is the mean over
    pairs of ½[z·(v(z) − v(∅)) + (1 − z)·(v(1 − z) − v(∅))]. Unbiased for any number of pairs
    (tested against the exact expectation); the standard errors are those of the mean of the
    pairs. ``stop`` and ``pace`` are honoured after ∅ and N, as in ``shapley_values``: a stopped
    run uses its complete pairs (none: the equal split, with the whole r(N) − r(∅) as SE).
    Written here because shapiq's UnbiasedKernelSHAP (the reference) is a test peer, never a
    runtime dependency, and it must play our memoised game in our coalition order."""
    pairs = max(MIN_UNBIASED, int(budget)) // 2 - 1
    rng = np.random.default_rng([int(seed), 0x5EED])
    sizes = rng.choice(np.arange(1, m), size=pairs, p=size_mass(m)[1:m])
    z = np.zeros((pairs, m), bool)
    for k, s in enumerate(sizes):
        z[k, rng.choice(m, size=s, replace=False)] = True
    design = np.vstack([np.zeros((1, m), bool), np.ones((1, m), bool), np.stack([z, ~z], axis=1).reshape(-1, m)])
    values, reason = _play(game, design, stop, pace)
    v0, vn = float(values[0]), float(values[1])
    done = (len(values) - 2) // 2                                   # complete pairs
    y = (values[2:2 + 2 * done] - v0).reshape(done, 2)
    terms = 0.5 * (z[:done] * y[:, :1] + ~z[:done] * y[:, 1:])      # one unbiased b per pair
    phi = unbiased_from_moments(terms.mean(axis=0), vn - v0, m) if done else np.full(m, (vn - v0) / m)
    se = _unbiased_se(terms, m) if done >= 2 else np.full(m, abs(vn - v0))
    ratio = _ratio({"values": phi, "se": se})
    step = {"values": phi, "se": se, "ratio": ratio, "n_evaluations": len(values), "budget": int(budget),
            "phase": "sampling", "estimator": "unbiased KernelSHAP"}
    if on_batch:
        on_batch(step)
    return ShapleyResult(values=phi, se=se, base_value=v0, full_value=vn, n_evaluations=len(values),
                         ratio=ratio, exact=False, stop_reason=reason or "budget", seed=int(seed),
                         coalitions=design[:len(values)], game_values=values,
                         history=[{k: v for k, v in step.items() if k not in ("values", "se")}],
                         estimator="unbiased KernelSHAP")


def _play(game: Game, design: np.ndarray, stop, pace) -> tuple[np.ndarray, str | None]:
    """The design's values, ∅ and N first, then in chunks (of ``pace`` where given) until ``stop``."""
    values = [np.asarray(game(design[:2]), dtype=np.float64).reshape(-1)]
    i, reason = 2, None
    while i < len(design):
        reason = stop() if stop is not None else None
        if reason is not None:
            break
        n = len(design) - i if stop is None else chunk_size(EVAL_CHUNK, pace)
        values.append(np.asarray(game(design[i:i + n]), dtype=np.float64).reshape(-1))
        i += n
    out = np.concatenate(values)
    if out.shape[0] != min(i, len(design)) or not np.isfinite(out).all():
        raise ValueError("the game must return one finite value per coalition")
    return out, reason


def _unbiased_se(terms: np.ndarray, m: int) -> np.ndarray:
    """φ̂ = P b̂ / (d − c) + const, b̂ the mean of the pairs' terms: each φ̂ᵢ's SE is that of the
    mean of the centred terms, over d − c."""
    centred = terms - terms.mean(axis=1, keepdims=True)
    return centred.std(axis=0, ddof=1) / np.sqrt(len(terms)) / kernel_gap(m)


def combine(first: ShapleyResult, rest: ShapleyResult, known: dict[bytes, float]) -> ShapleyResult:
    """The exact game's result: values and SEs added, the audit holding the exact game's
    values at the residual's coalitions (the proxy's own rows apart)."""
    values = first.values + rest.values
    se = np.sqrt(first.se ** 2 + rest.se ** 2)
    proxy_at = np.array([known[np.packbits(c).tobytes()] for c in rest.coalitions])
    history = [dict(h, part="proxy") for h in first.history] + [dict(h, part="residual") for h in rest.history]
    stop = rest.stop_reason if first.stop_reason in ("budget", "converged", "enumerated") else first.stop_reason
    return replace(rest, values=values, se=se, base_value=first.base_value + rest.base_value,
                   full_value=first.full_value + rest.full_value, ratio=_ratio({"values": values, "se": se}),
                   exact=False, stop_reason=stop, game_values=rest.game_values + proxy_at, history=history,
                   run=None, estimator=f"{first.estimator} on a proxy + {rest.estimator} on the residual",
                   proxy_evaluations=first.n_evaluations + first.proxy_evaluations,
                   proxy_coalitions=first.coalitions, proxy_values=first.game_values)


def _tagged(on_batch, phase: str):
    if on_batch is None:
        return None
    return lambda step: on_batch({**step, "phase": phase})


def _corrected(on_batch, first: ShapleyResult):
    """The residual's batches reported as estimates of the exact game."""
    if on_batch is None:
        return None

    def report(step: dict) -> None:
        values, se = first.values + step["values"], np.sqrt(first.se ** 2 + step["se"] ** 2)
        on_batch({**step, "values": values, "se": se, "ratio": _ratio({"values": values, "se": se}),
                  "n_evaluations": step["n_evaluations"] + first.n_evaluations, "phase": "residual"})
    return report
