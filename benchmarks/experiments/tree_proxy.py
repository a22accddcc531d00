"""Experiment behind ``--estimator gp-trees`` (shapley/trees.py): the same tree proxy plus
GP on the residuals, with the intervals it would have *without* the bootstrap, on the
recorded real games against the GP on the same coalitions.

φ(v) = φ(ṽ) + φ(v − ṽ) holds for any proxy ṽ: φ(ṽ) exactly (``trees.tree_shapley``), φ(v − ṽ)
by the GP posterior on the residuals, its SE the GP's own. Two ways:

* ``in-sample``: one proxy on every evaluated coalition (as gp-trees and RegressionMSR do).
  The trees nearly interpolate, so the residuals, and the GP's uncertainty with them, are
  about 0.
* ``cross-fit``: K proxies, each fitted without one fold; residuals out of fold, φ(ṽ) the
  mean over the K proxies (v(∅) and v(N) in every fit, their residual from the mean proxy).

    python benchmarks/experiments/tree_proxy.py --factors 4 10 30 --seeds 3
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "Testing")]

from fixtures.recorded_games import recorded_games  # noqa: E402
from ShapSegExplainLib.shapley.estimator import shapley_values  # noqa: E402
from ShapSegExplainLib.shapley.gp import STARTS, GameGP  # noqa: E402
from ShapSegExplainLib.shapley.trees import fit_trees, tree_shapley  # noqa: E402

FOLDS = 5


def proxy_fit(x: np.ndarray, v: np.ndarray, seed: int, cross: bool):
    """(φ of the proxy, the proxy's prediction at each evaluated coalition)."""
    m = x.shape[1]
    if not cross:
        model = fit_trees(x, v, seed)
        return tree_shapley(model, m), model.predict(x)
    ends = np.flatnonzero((x.sum(1) == 0) | (x.sum(1) == m))
    inner = np.setdiff1d(np.arange(len(v)), ends)
    folds = np.array_split(np.random.default_rng(seed).permutation(inner), FOLDS)
    pred, phis = np.zeros(len(v)), []
    for k, fold in enumerate(folds):
        train = np.concatenate([ends] + [f for j, f in enumerate(folds) if j != k])
        model = fit_trees(x[train], v[train], seed)
        pred[fold] = model.predict(x[fold])
        pred[ends] += model.predict(x[ends]) / FOLDS
        phis.append(tree_shapley(model, m))
    return np.mean(phis, axis=0), pred


def corrected(x: np.ndarray, v: np.ndarray, seed: int, cross: bool):
    """φ̂ and its SE: the proxy's φ plus the GP posterior (θ integrated) on the residuals."""
    phi_proxy, pred = proxy_fit(x.astype(float), v, seed, cross)
    resid = v - pred
    gp = GameGP(x, resid, float(resid[np.flatnonzero(x.sum(1) == 0)[0]]))
    post = gp.posterior(gp.optimize([np.array(s) for s in STARTS]))
    return phi_proxy + post.values, gp.marginal_se(post, np.random.default_rng(seed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factors", nargs="+", type=int, default=[4, 10, 30])
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    print("budget | case | shipped error / coverage | in-sample proxy | cross-fit proxy")
    for f in args.factors:
        cells: dict[str, dict[str, list]] = {}
        for g in recorded_games():
            if g.m < 5 or f * g.m >= 2 ** g.m:
                continue
            cell = cells.setdefault(g.name, {k: [[], 0, 0] for k in ("shipped", "in", "cross")})
            for seed in range(args.seeds):
                res = shapley_values(g.fresh(), g.m, f * g.m, seed=seed, threshold=0.0, resamples=0)
                x, v = np.array(res.run.coalitions), np.array(res.run.values)
                total = res.run.vn - res.run.v0
                for key in cell:
                    phi, se = (res.values, res.se) if key == "shipped" else corrected(x, v, seed, key == "cross")
                    phi = phi + (total - phi.sum()) / g.m
                    cell[key][0].append(np.linalg.norm(phi - g.phi) / np.linalg.norm(g.phi))
                    cell[key][1] += int(np.sum(np.abs(phi - g.phi) <= 1.96 * se))
                    cell[key][2] += g.m
        for name, cell in cells.items():
            print(f"{f}M | {name} | " + " | ".join(f"{np.mean(e):.4f} / {i / n:.2f}" for e, i, n in cell.values()), flush=True)


if __name__ == "__main__":
    main()
