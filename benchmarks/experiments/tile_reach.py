"""Experiment behind the demo's miss of 10×: how many ROI tiles each flat player reaches, and
the floor this puts under any estimate that its evaluations determine.

At ``--tolerance 0`` a coalition costs one forward for each ROI tile that holds an absent
player (the tile memo answers the others), so the paper's flat players set the price of every
coalition. M values plus v(∅) are determined by no fewer than M + 1 evaluated coalitions: N
(free: the cached prediction), ∅ (every tile) and M − 1 more, at the cheapest the leave-one-out
coalitions N ∖ {i}, which cost the tiles player i reaches (those whose input its absence
changes: a player already at the baseline, such as air, reaches none). The floor is therefore
T + the sum of the M − 1 smallest reaches, whatever the estimator (a prior can go below it only
by guessing). Compare it with a tenth of the paper's Shapley forwards (bench_cost).

    python benchmarks/experiments/tile_reach.py [--cases demo_fp spleen_dice ...]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_cost import SETUPS, case_jobs  # noqa: E402
from ShapSegExplainLib.nnunet.evaluator import CoalitionEvaluator  # noqa: E402
from ShapSegExplainLib.run.explain import prepare_inputs  # noqa: E402
from ShapSegExplainLib.run.state import Run  # noqa: E402


def reaches(inputs, m: int) -> np.ndarray:
    """Per player, the number of ROI tiles whose input it changes when absent: the evaluator's
    own ``tile_players`` (what its tile memo keys on), so the count is the cost it charges."""
    ev = CoalitionEvaluator(inputs.model, inputs.case, inputs.players.plan, inputs.players.pmap.ids, m)
    return np.bincount(np.concatenate(ev.tile_players).astype(np.int64), minlength=m)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["spleen_dice", "kidney_edge", "demo_fp", "kidney_box"])
    args = ap.parse_args()
    print("| case | flat players M | ROI tiles T | tiles a player reaches: min / median / max "
          "| floor on forwards (T + M − 1 cheapest leave-one-outs) |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            job = case_jobs(case, Path(tmp), Path(tmp) / case, **SETUPS["paper"])
            inputs = prepare_inputs(Run(job, lambda e: None, lambda: False))
            m, tiles = inputs.players.pmap.n_players, len(inputs.players.plan.tiles)
            reach = reaches(inputs, m)
            floor = tiles + int(np.sort(reach)[:m - 1].sum())
            print(f"| {case} | {m} | {tiles} | {reach.min()} / {np.median(reach):g} / {reach.max()} "
                  f"| {floor} |", flush=True)


if __name__ == "__main__":
    main()
