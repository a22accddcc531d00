"""Synthetic games with known Shapley values, for tests and benchmarks of the estimator.

A sum of unanimity games v(S) = Σ_T d_T·[T ⊆ S] (every game is one, by Harsanyi's
decomposition) has Shapley values φ_i = Σ_{T ∋ i} d_T / |T|; its interaction order is
the largest |T|.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class UnanimityGame:
    supports: np.ndarray   # (n_terms, M) bool
    dividends: np.ndarray  # (n_terms,)
    offset: float = 0.0
    calls: int = 0
    evaluations: int = 0

    @property
    def n_players(self) -> int:
        return self.supports.shape[1]

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        c = np.asarray(coalitions, dtype=np.float64)
        self.calls += 1
        self.evaluations += c.shape[0]
        inside = (c @ self.supports.T.astype(np.float64)) == self.supports.sum(axis=1)
        return self.offset + inside.astype(np.float64) @ self.dividends

    def shapley(self) -> np.ndarray:
        size = self.supports.sum(axis=1)
        return (self.supports * (self.dividends / size)[:, None]).sum(axis=0)


def unanimity_game(n_players: int, max_order: int, n_terms: int | None = None, seed: int = 0,
                   offset: float = 0.0) -> UnanimityGame:
    """Random dividends on random supports of size 1..max_order (every order present)."""
    rng = np.random.default_rng(seed)
    n_terms = n_terms or 3 * n_players
    supports = np.zeros((n_terms, n_players), bool)
    for t in range(n_terms):
        k = (t % max_order) + 1 if t < max_order else int(rng.integers(1, max_order + 1))
        supports[t, rng.choice(n_players, size=min(k, n_players), replace=False)] = True
    return UnanimityGame(supports, rng.normal(size=n_terms), offset)


def symmetric_game(n_players: int, twins: tuple[int, int], seed: int = 0) -> UnanimityGame:
    """A third-order game in which players ``twins`` are interchangeable (equal Shapley values)."""
    g = unanimity_game(n_players, 3, seed=seed)
    a, b = twins
    swapped = g.supports.copy()
    swapped[:, [a, b]] = swapped[:, [b, a]]
    return UnanimityGame(np.concatenate([g.supports, swapped]), np.concatenate([g.dividends, g.dividends]))


def smooth_game(n_players: int, seed: int = 0):
    """A game with interactions of every order: a squashed random quadratic form plus a
    threshold on the coalition size (no closed form; exact values by enumeration)."""
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=n_players), rng.normal(size=(n_players, n_players)) / n_players

    def game(coalitions: np.ndarray) -> np.ndarray:
        x = np.asarray(coalitions, dtype=np.float64)
        q = x @ w + np.einsum("ki,ij,kj->k", x, b, x)
        return np.tanh(q) + (x.sum(axis=1) > n_players / 2) * 0.3
    return game
