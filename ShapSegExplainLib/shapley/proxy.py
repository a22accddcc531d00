"""Shapley values of an expensive game v through a cheap proxy game ṽ (a control variate).

Shapley values are linear in the game, so φ(v) = φ(ṽ) + φ(v − ṽ). The proxy (here: the
same network with the tiles that carry little of the ROI's Gaussian weight frozen at their
unperturbed output) is played with the full budget; the residual r = v − ṽ, small wherever
the proxy is good, is played with ``residual_budget`` coalitions (default 2M + 2: ∅, N, every
player alone and every player left out). Both are estimated by the same estimator with the
same seed, so the residual's coalitions are the first ones the proxy played: their proxy
values are known and their unfrozen tiles are already in the tile memo, and an exact value
costs only the frozen tiles that hold an absent player.

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

from .estimator import Cost, Game, ShapleyResult, _ratio, is_exact, shapley_values


def residual_design(m: int) -> int:
    """The residual's budget: KernelSHAP's smallest, 2M + 2 (∅, N, sizes 1 and M − 1)."""
    return 2 * m + 2


def with_proxy(game: Game, proxy: Game, m: int, budget: int, residual_budget: int | None = None, *,
               cost: Cost | None = None, proxy_cost: Cost | None = None,
               on_batch: Callable[[dict], None] | None = None, **kwargs) -> ShapleyResult:
    """φ(v) as φ̂(ṽ) with ``budget`` proxy coalitions plus φ̂(v − ṽ) with ``residual_budget``
    exact ones; ``kwargs`` go to both estimates (seed, estimator, stop, ...). A budget that
    enumerates the game plays it exactly, without the proxy."""
    if is_exact(m, budget):
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
    rest = shapley_values(residual, m, max(residual_budget or residual_design(m), 2 * m + 2), cost=cost,
                          on_batch=_corrected(on_batch, first), **kwargs)
    return combine(first, rest, known)


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
