"""Equal-budget accuracy of the Shapley estimator against shapiq and shap (peers as
benchmark dependencies only: pip install shap shapiq).

Games: sums of unanimity games with interactions up to order 3 (and 5 with --orders),
3M terms, exact Shapley values in closed form; or (--family smooth, M <= 20) squashed
random quadratics plus a size threshold, every order present, exact values by
enumeration. Error: ||φ̂ - φ||₂ / ||φ||₂, mean over seeds. Every method gets the same
budget of game evaluations. Run:
  python benchmarks/bench_shapley.py [--players 16 32 64] [--factors 4 10 30] [--seeds 10]
  python benchmarks/bench_shapley.py --family smooth --players 16 --seeds 10
"""
from __future__ import annotations

import sys
from pathlib import Path

import argparse
import json
import time
import warnings

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))   # test fixtures (games, model folders)

from fixtures.games import smooth_game, unanimity_game
from ShapSegExplainLib.shapley.estimator import shapley_values


def ours(game, m, budget, seed):
    return shapley_values(game, m, budget, seed=seed, threshold=0.0, resamples=0).values


def ours_wls(game, m, budget, seed):
    return shapley_values(game, m, budget, seed=seed, threshold=0.0, resamples=0, estimator="wls").values


def shapiq_method(name):
    def run(game, m, budget, seed):
        import shapiq
        cls = {"shapiq KernelSHAP (paired)": lambda: shapiq.KernelSHAP(n=m, pairing_trick=True, random_state=seed),
               "shapiq kADDSHAP": lambda: shapiq.kADDSHAP(n=m, max_order=2, random_state=seed),
               "shapiq SVARM": lambda: shapiq.SVARM(n=m, random_state=seed)}[name]()
        iv = cls.approximate(budget, game)
        return np.array([iv[(i,)] for i in range(m)])
    return run


def shap_kernel(game, m, budget, seed):
    import shap
    np.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = shap.KernelExplainer(lambda x: game(x > 0.5), np.zeros((1, m)))
        return np.asarray(ex.shap_values(np.ones((1, m)), nsamples=budget, l1_reg=False, silent=True)).reshape(-1)


METHODS = {"ShapSegExplain": ours, "shapiq KernelSHAP (paired)": shapiq_method("shapiq KernelSHAP (paired)"),
           "shapiq kADDSHAP": shapiq_method("shapiq kADDSHAP"), "shapiq SVARM": shapiq_method("shapiq SVARM"),
           "shap KernelExplainer": shap_kernel, "ShapSegExplain (WLS fit)": ours_wls}
DEFAULT_METHODS = list(METHODS)


class Counted:
    """A game that counts its evaluations; ``shapley()`` by enumeration (smooth family)."""

    def __init__(self, game, m):
        self.game, self.m, self.evaluations = game, m, 0

    def __call__(self, coalitions):
        self.evaluations += len(coalitions)
        return self.game(coalitions)

    def shapley(self):
        return shapley_values(self.game, self.m, 2 ** self.m).values


def make_game(family, m, order, seed):
    if family == "smooth":
        if m > 20:
            raise SystemExit("--family smooth needs --players <= 20 (exact values by enumeration)")
        return Counted(smooth_game(m, 1000 + seed), m)
    return unanimity_game(m, order, seed=1000 + seed)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--players", nargs="+", type=int, default=[16, 32, 64])
    ap.add_argument("--factors", nargs="+", type=int, default=[4, 10, 30])
    ap.add_argument("--orders", nargs="+", type=int, default=[3])
    ap.add_argument("--family", choices=("unanimity", "smooth"), default="unanimity")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    results = []
    for order in args.orders:
        for m in args.players:
            for f in args.factors:
                budget = f * m
                errs = {k: [] for k in args.methods}
                secs = {k: 0.0 for k in args.methods}
                evals = {k: 0 for k in args.methods}
                for seed in range(args.seeds):
                    truth = make_game(args.family, m, order, seed).shapley()
                    for name in args.methods:
                        game = make_game(args.family, m, order, seed)
                        t0 = time.perf_counter()
                        est = METHODS[name](game, m, budget, seed)
                        secs[name] += time.perf_counter() - t0
                        evals[name] = max(evals[name], game.evaluations)
                        errs[name].append(np.linalg.norm(est - truth) / np.linalg.norm(truth))
                row = {"family": args.family, "order": order, "players": m, "budget": budget,
                       "mean_rel_error": {k: float(np.mean(v)) for k, v in errs.items()},
                       "seconds": {k: secs[k] / args.seeds for k in args.methods},
                       "max_evaluations": evals}
                results.append(row)
                best_peer = min(v for k, v in row["mean_rel_error"].items() if not k.startswith("ShapSegExplain"))
                cells = "  ".join(f"{k}: {v:.4f}" for k, v in row["mean_rel_error"].items())
                verdict = "ours <= best peer" if row["mean_rel_error"]["ShapSegExplain"] <= best_peer else "PEER BETTER"
                used = ", ".join(f"{v}" for v in evals.values())
                print(f"{args.family} order {order}  M={m:3d}  budget {budget:5d}  {cells}  [{verdict}]  (evaluations used: {used})",
                      flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
