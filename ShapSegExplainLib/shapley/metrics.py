"""Faithfulness of an attribution: remove (or insert) players in order of φ and watch the value.

* MoRF: start from every player present, remove the most relevant first (largest φ, or
  largest φ per mL over removed volume: a player's φ spread evenly over its voxels, the
  ranking that does not depend on how the support is cut); LeRF: the least relevant first.
  Each curve is sampled at ``steps`` + 1 points (0 … M players removed, or evenly spaced
  removed volume), evaluated through the same game (cached evaluator) in one batch.
* AOPC = mean over the MoRF points of v(N) - v(after removal) (higher = more faithful);
  ABPC = mean of LeRF - MoRF (area between the curves, higher = more faithful).
* deletion AUC = area under the MoRF curve over the fraction removed (lower = better);
  insertion AUC = area under the curve that adds players most relevant first, starting
  from none (higher = better). Both in the value's units.
* anatomical alignment = share of Σ|φ| carried by players of anatomical purity 1.
"""
from __future__ import annotations

import numpy as np

from .estimator import Game


def removal_points(n_players: int, steps: int) -> np.ndarray:
    """How many players are removed at each curve point: 0 … M, ``steps`` + 1 distinct values."""
    return np.unique(np.round(np.linspace(0, n_players, min(steps, n_players) + 1)).astype(int))


def order_coalitions(order: np.ndarray, counts: np.ndarray, n_players: int, insert: bool = False) -> np.ndarray:
    """Coalitions after removing (or, with ``insert``, adding) the first ``count`` players of ``order``."""
    out = np.full((len(counts), n_players), not insert)
    for row, k in enumerate(counts):
        out[row, order[:k]] = insert
    return out


def volume_points(volumes: np.ndarray, order: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Evenly spaced removed volumes 0 … V and, for each, how many players of ``order``
    (a prefix) fit within it."""
    grid = np.linspace(0.0, float(volumes[order].sum()), steps + 1)
    cum = np.cumsum(volumes[order])
    counts = np.searchsorted(cum, grid * (1 + 1e-12) + 1e-12, side="right")
    counts[-1] = len(order)
    return grid, counts


def faithfulness(game: Game, phi: np.ndarray, steps: int = 20, purity: np.ndarray | None = None,
                 volumes: np.ndarray | None = None, kept: np.ndarray | None = None, order: str = "phi") -> dict:
    """MoRF/LeRF/insertion curves, AOPC, ABPC, deletion and insertion AUC, and alignment
    (over removed volume when ``volumes`` are given, else over the number of players).
    ``order``: rank the players by φ, or by φ per unit of volume ("density")."""
    phi = np.asarray(phi, dtype=np.float64)
    m = phi.size
    kept = np.zeros(m, bool) if kept is None else np.asarray(kept, bool)
    free = np.flatnonzero(~kept)
    if order == "density" and volumes is None:
        raise ValueError("ranking by φ per mL needs the players' volumes")
    score = phi / np.maximum(np.asarray(volumes, float), 1e-12) if order == "density" else phi
    morf_order = free[np.argsort(-score[free], kind="stable")]
    lerf_order = free[np.argsort(score[free], kind="stable")]
    if volumes is None:
        counts_m = counts_l = removal_points(free.size, steps)
        frac, removed_ml = counts_m / max(free.size, 1), None
    else:
        vol = np.asarray(volumes, float)
        removed_ml, counts_m = volume_points(vol, morf_order, steps)
        _, counts_l = volume_points(vol, lerf_order, steps)
        frac = removed_ml / max(removed_ml[-1], 1e-300)
    batch = np.concatenate([order_coalitions(morf_order, counts_m, m), order_coalitions(lerf_order, counts_l, m),
                            order_coalitions(morf_order, counts_m, m, insert=True)])
    batch[:, kept] = True
    values = np.asarray(game(batch), dtype=np.float64).reshape(3, len(frac))
    morf, lerf, ins = values
    out = {
        "fraction_removed": frac.tolist(), "morf": morf.tolist(), "lerf": lerf.tolist(), "insertion": ins.tolist(),
        "ml_removed": None if removed_ml is None else removed_ml.tolist(),
        "aopc": float(np.mean(morf[0] - morf)), "abpc": float(np.mean(lerf - morf)),
        "deletion_auc": float(np.trapezoid(morf, frac)), "insertion_auc": float(np.trapezoid(ins, frac)),
        "coalitions": int(batch.shape[0]), "order": order,
    }
    if purity is not None:
        out["anatomical_alignment"] = anatomical_alignment(phi, purity)
    return out


def anatomical_alignment(phi: np.ndarray, purity: np.ndarray) -> float:
    """Share of the attribution mass Σ|φ| in players whose purity is 1 (nan purity = context, excluded)."""
    phi, purity = np.abs(np.asarray(phi, float)), np.asarray(purity, float)
    keep = ~np.isnan(purity)
    total = phi[keep].sum()
    return float(phi[keep & (purity >= 1.0)].sum() / total) if total > 0 else float("nan")
