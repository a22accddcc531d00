"""The estimator's own arithmetic per run, at the player counts the tool meets: M = 9 (an organ
game), 17 (the spleen and kidney-edge cases' hybrid players), 68 (the kidney box's final
level), 439 (a flat default case). One run per M and estimator at 4M coalitions on a sum of
unanimity games up to order 3 (the game costs nothing: what is timed is the estimator), its
error beside it.

    python benchmarks/experiments/estimator_seconds.py [--players 9 17 68 439] [--estimators gp wls]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "Testing"))

from fixtures.games import unanimity_game  # noqa: E402
from ShapSegExplainLib.shapley.estimator import shapley_values  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--players", type=int, nargs="+", default=[9, 17, 68, 439])
    ap.add_argument("--estimators", nargs="+", default=["gp", "wls"])
    ap.add_argument("--factor", type=int, default=4, help="coalitions per player")
    args = ap.parse_args(argv)
    for est in args.estimators:                 # first calls load SciPy's solvers: not the estimator's time
        shapley_values(unanimity_game(5, 2), 5, 12, seed=0, threshold=0.0, estimator=est)
    print("| M | coalitions | " + " | ".join(f"{e}: seconds · error" for e in args.estimators) + " |")
    print("|---|---|" + "---|" * len(args.estimators))
    for m in args.players:
        game = unanimity_game(m, 3, seed=0)
        truth = game.shapley()
        budget = args.factor * m
        cells = []
        for est in args.estimators:
            t0 = time.perf_counter()
            res = shapley_values(game, m, budget, seed=0, threshold=0.0, estimator=est)
            seconds = time.perf_counter() - t0
            err = float(np.linalg.norm(res.values - truth) / np.linalg.norm(truth))
            cells.append(f"{seconds:.2f} · {err:.3f}")
        print(f"| {m} | {budget} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
