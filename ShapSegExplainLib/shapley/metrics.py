"""Faithfulness of an attribution: remove (or insert) players in order of φ and watch the value.

* MoRF: start from every player present, remove the most relevant first (largest φ);
  LeRF: the least relevant first. Each curve is sampled at ``steps`` + 1 points
  (0 … M players removed, evenly spaced), evaluated through the same game (cached
  evaluator) in one batch.
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


def faithfulness(game: Game, phi: np.ndarray, steps: int = 20, purity: np.ndarray | None = None) -> dict:
    """MoRF/LeRF/insertion curves, AOPC, ABPC, deletion and insertion AUC, and alignment."""
    phi = np.asarray(phi, dtype=np.float64)
    m = phi.size
    counts = removal_points(m, steps)
    morf_order = np.argsort(-phi, kind="stable")
    lerf_order = np.argsort(phi, kind="stable")
    batch = np.concatenate([order_coalitions(morf_order, counts, m), order_coalitions(lerf_order, counts, m),
                            order_coalitions(morf_order, counts, m, insert=True)])
    values = np.asarray(game(batch), dtype=np.float64).reshape(3, len(counts))
    morf, lerf, ins = values
    frac = counts / m
    out = {
        "fraction_removed": frac.tolist(), "morf": morf.tolist(), "lerf": lerf.tolist(), "insertion": ins.tolist(),
        "aopc": float(np.mean(morf[0] - morf)), "abpc": float(np.mean(lerf - morf)),
        "deletion_auc": float(np.trapezoid(morf, frac)), "insertion_auc": float(np.trapezoid(ins, frac)),
        "coalitions": int(batch.shape[0]),
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
