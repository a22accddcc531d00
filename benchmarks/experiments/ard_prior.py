"""Experiment, not the shipped estimator: per-player weights in the GP's Möbius prior, on the
recorded real games at one budget, against the shipped (symmetric) prior on the same coalitions.

The shipped model gives every dividend of order k the same prior variance; here a dividend
d_T of order k ≤ 3 gets s²·w_k·Π_{i∈T} a_i / e_k(a) (e_k: elementary symmetric polynomial,
so each order still carries s²·w_k in all), higher orders stay symmetric. Then

    cov(v(S), v(S')) = s² Σ_k w_k e_k(a_{S∩S'}) / e_k(a)         (symmetric terms for k > 3)
    cov(φ_i, v(S))   = s² a_i [i∈S] Σ_k w_k e_{k-1}(a_{S∖i}) / (k e_k(a))
    var(φ_i)         = s² a_i Σ_k w_k e_{k-1}(a_{-i}) / (k² e_k(a)).

θ of the shipped fit plus log a (prior N(0, 3²) on each) by L-BFGS-B with numerical
gradients: seconds for M ≤ 11, far too slow for the M of a default case. It answers one
question: does per-player relevance close the gap to ShaplEIG on the real games, and are
its intervals usable?

    python benchmarks/experiments/ard_prior.py --factor 4 --seeds 4
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.optimize import minimize

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "Testing")]

from fixtures.recorded_games import recorded_games  # noqa: E402
from ShapSegExplainLib.shapley.estimator import shapley_values  # noqa: E402
from ShapSegExplainLib.shapley.gp import LOG_NUGGET_BOUNDS, LOG_PAIR_BOUNDS, LOG_RHO_BOUNDS, LOG_SIZE_BOUNDS  # noqa: E402

ARD_ORDERS = 3
LOG_A_PRIOR_SD = 3.0


def esp(a: np.ndarray, members: np.ndarray, top: int) -> np.ndarray:
    """e_0..e_top of the weights a over each row's members ((..., M) bool -> (..., top+1))."""
    e = np.zeros(members.shape[:-1] + (top + 1,))
    e[..., 0] = 1.0
    for i in range(members.shape[-1]):
        e[..., 1:] = e[..., 1:] + (a[i] * members[..., i])[..., None] * e[..., :-1]
    return e


class ArdGP:
    def __init__(self, x: np.ndarray, v: np.ndarray, v0: float) -> None:
        keep = x.any(axis=1)
        self.x, self.m, self.y = x[keep], x.shape[1], v[keep] - v0
        self.noisy = (~self.x.all(axis=1)).astype(float)
        size, inner = self.x.sum(axis=1), self.noisy > 0
        self.same = ((size[:, None] == size[None, :]) & inner[:, None] & inner[None, :]).astype(float)
        self.inter = self.x[:, None, :] & self.x[None, :, :]
        self.k = np.arange(1, self.m + 1, dtype=float)

    def _weights(self, th: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(w_k, a_i): per-player weights on orders ≤ ARD_ORDERS, ones above."""
        w = np.where(self.k >= 2, np.exp(th[3] + (self.k - 2) * th[0]), 1.0)
        return w, np.exp(th[4:])

    def _split(self, a: np.ndarray, members: np.ndarray, shift: int = 0) -> np.ndarray:
        """e_{k-shift}, k = 1..M: per-player weights for k ≤ ARD_ORDERS, unit weights above."""
        lo = esp(a, members, self.m)[..., 1 - shift:self.m + 1 - shift]
        hi = esp(np.ones(self.m), members, self.m)[..., 1 - shift:self.m + 1 - shift]
        return np.where(self.k <= ARD_ORDERS, lo, hi)

    def kernel(self, th: np.ndarray) -> np.ndarray:
        w, a = self._weights(th)
        norm = self._split(a, np.ones(self.m, bool))
        k = self._split(a, self.inter) @ (w / norm) + np.exp(th[2]) * self.same
        k[np.diag_indices_from(k)] += np.exp(th[1]) * self.noisy + 1e-10 * float(np.mean(np.diag(k)))
        return k

    def nll(self, th: np.ndarray) -> float:
        n = self.y.size
        try:
            c = cho_factor(self.kernel(th), lower=True)
        except np.linalg.LinAlgError:
            return 1e300
        q = max(float(self.y @ cho_solve(c, self.y)), 1e-300)
        return 0.5 * (n * np.log(q / n) + 2 * np.log(np.diag(c[0])).sum()) + 0.5 * np.sum(th[4:] ** 2) / LOG_A_PRIOR_SD ** 2

    def fit(self, theta0: np.ndarray) -> np.ndarray:
        bounds = [LOG_RHO_BOUNDS, LOG_NUGGET_BOUNDS, LOG_SIZE_BOUNDS, LOG_PAIR_BOUNDS] + [(-10.0, 10.0)] * self.m
        return minimize(self.nll, np.concatenate([theta0, np.zeros(self.m)]), method="L-BFGS-B",
                        bounds=bounds, options={"maxiter": 200}).x

    def posterior(self, th: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w, a = self._weights(th)
        norm = self._split(a, np.ones(self.m, bool))
        c = cho_factor(self.kernel(th), lower=True)
        alpha = cho_solve(c, self.y)
        cross, prior = np.zeros((self.m, len(self.y))), np.zeros(self.m)
        for i in range(self.m):
            factor = np.where(self.k <= ARD_ORDERS, a[i], 1.0)
            rest = self.x.copy()
            rest[:, i] = False
            cross[i] = self.x[:, i] * ((self._split(a, rest, shift=1) * factor) @ (w / (self.k * norm)))
            others = np.ones(self.m, bool)
            others[i] = False
            prior[i] = (self._split(a, others, shift=1) * factor) @ (w / (self.k ** 2 * norm))
        half = solve_triangular(c[0], cross.T, lower=True)
        scale = float(self.y @ alpha) / len(self.y)
        return cross @ alpha, np.sqrt(scale * np.maximum(prior - np.sum(half ** 2, axis=0), 0.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=4)
    args = ap.parse_args()
    print("game | M | shipped error | per-player error | shipped coverage | per-player coverage")
    for g in recorded_games():
        budget = args.factor * g.m
        if g.m < 5 or budget >= 2 ** g.m:
            continue
        err, cov = {"shipped": [], "ard": []}, {"shipped": 0, "ard": 0}
        for seed in range(args.seeds):
            res = shapley_values(g.fresh(), g.m, budget, seed=seed, threshold=0.0, resamples=0)
            run = res.run
            model = ArdGP(np.array(run.coalitions), np.array(run.values), run.v0)
            phi, se = model.posterior(model.fit(run.theta))
            phi += (run.vn - run.v0 - phi.sum()) / g.m
            for key, (est, s) in {"shipped": (res.values, res.se), "ard": (phi, se)}.items():
                err[key].append(np.linalg.norm(est - g.phi) / np.linalg.norm(g.phi))
                cov[key] += int(np.sum(np.abs(est - g.phi) <= 1.96 * s))
        n = g.m * args.seeds
        print(f"{g.label} | {g.m} | {np.mean(err['shipped']):.3f} | {np.mean(err['ard']):.3f} | "
              f"{cov['shipped'] / n:.2f} | {cov['ard'] / n:.2f}", flush=True)


if __name__ == "__main__":
    main()
