"""A GP of the game with a weighted Hamming product kernel, its Shapley values in closed form,
and the coalitions that teach them most.

    cov(v(S), v(S')) = s² [Π_i t_i^[i ∈ S △ S'] + σ [|S| = |S'|] + λ [S = S']],   t_i = exp(−1 / (M l_i))

One length scale l_i per player: a player whose presence changes little gets t_i → 1 and
drops out of the kernel, which is how a game carried by a few players is learnt from few
coalitions. σ is ``shapley.gp``'s size offset (0 at ∅ and N, so its Shapley value is 0) and λ
a nugget. A constant mean is profiled by generalised least squares (its Shapley value is 0).
Every kernel column k(·, c) is a product game, whose Shapley value is a polynomial identity:
with g_j(x) = k's factor of player j at presence x,

    φ_i(k(·, c)) = (g_i(1) − g_i(0)) Σ_k k!(M−k−1)!/M! · [z^k] Π_{j≠i} (g_j(0) + g_j(1) z),

and var(φ_i) in the prior likewise with a polynomial in two variables. The posterior mean of
φ is that operator applied to the posterior mean of v; its standard error the posterior
standard deviation, with θ integrated out (``marginal_se``). θ = (log λ, log σ, log l_1..l_M)
is the posterior mode under the dimension-scaled
log-normal prior on the length scales of Hvarfner et al. (2024) (the one BoTorch and
shapiq's ShaplEIG use), s² and the mean profiled, by L-BFGS-B with the analytic gradient.

The design (``choose``): coalitions picked greedily from a candidate pool, each the one that
most reduces Σ_i var(φ_i) given everything evaluated or already picked, θ held. This is the
sequential design of ShaplEIG (Rundel et al. 2026, shapiq 1.8) with a trace criterion in
place of the information gain; the choice depends on values only through θ, so the posterior
(which conditions on the coalitions evaluated) needs no reweighting. Hand-written: no GP
library has the Shapley operator on a kernel over sets.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import lgamma

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve, solve_triangular
from scipy.optimize import minimize

from .gp import _inverse, integrate_theta

LOG_NUGGET_BOUNDS = (np.log(1e-8), np.log(1e-1))
LOG_LENGTH_BOUNDS = (np.log(1e-4), np.log(1e4))
LOG_SIZE_BOUNDS = (np.log(1e-8), np.log(1e1))
NUGGET_START = 1e-4
SIZE_START = 1e-3


@dataclass
class HammingFit:
    values: np.ndarray
    se: np.ndarray
    theta: np.ndarray        # (log λ, log σ, log l_1 .. log l_M)
    scale: float
    mean: float


def shapley_weights(m: int) -> np.ndarray:
    """k!(M−k−1)!/M! for k = 0..M−1."""
    return np.exp([lgamma(k + 1) + lgamma(m - k) - lgamma(m + 1) for k in range(m)])


def same_size(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """[|S| = |S'|] for coalitions other than ∅ and N: the pattern of the size term."""
    m = xa.shape[1]
    sa, sb = xa.sum(axis=1), xb.sum(axis=1)
    inner_a, inner_b = (sa > 0) & (sa < m), (sb > 0) & (sb < m)
    return ((sa[:, None] == sb[None, :]) & inner_a[:, None] & inner_b[None, :]).astype(np.float64)


def length_prior(m: int) -> tuple[float, float]:
    """(μ, σ) of the log-normal prior on each length scale (Hvarfner et al. 2024)."""
    return float(np.sqrt(2) + 0.5 * np.log(m)), float(np.sqrt(3))


class HammingGP:
    """The model on a fixed set of evaluated coalitions."""

    def __init__(self, coalitions: np.ndarray, values: np.ndarray) -> None:
        self.x = np.asarray(coalitions, dtype=bool)
        self.m = self.x.shape[1]
        self.y = np.asarray(values, dtype=np.float64)
        self.scale_y = max(float(np.std(self.y)), 1e-150)
        self.w = shapley_weights(self.m)

    def _log_t(self, theta: np.ndarray) -> np.ndarray:
        return -1.0 / (self.m * np.exp(theta[2:]))

    def _t(self, theta: np.ndarray) -> np.ndarray:
        return np.exp(self._log_t(theta))

    def cov(self, theta: np.ndarray, xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
        """Prior covariance / s², no nugget."""
        log_t = self._log_t(theta)
        diff = xa[:, None, :] != xb[None, :, :]
        return np.exp(diff @ log_t) + np.exp(theta[1]) * same_size(xa, xb)

    def cross(self, theta: np.ndarray, xb: np.ndarray) -> np.ndarray:
        """cov(φ, v(S)) / s² for coalitions ``xb``: (M, n)."""
        t = self._t(theta)
        g1 = np.where(xb, 1.0, t)                        # factor of player j when present
        g0 = np.where(xb, t, 1.0)                        # ... when absent
        out = np.empty((self.m, len(xb)))
        for i in range(self.m):
            poly = np.zeros((len(xb), self.m))
            poly[:, 0] = 1.0
            for j in range(self.m):
                if j != i:
                    poly[:, 1:] = poly[:, 1:] * g0[:, j:j + 1] + poly[:, :-1] * g1[:, j:j + 1]
                    poly[:, 0] *= g0[:, j]
            out[i] = (g1[:, i] - g0[:, i]) * (poly @ self.w)
        return out

    def prior_var(self, theta: np.ndarray) -> np.ndarray:
        """var(φ_i) / s² in the prior: Σ_{S,T∌i} w w [k(S+i,T+i) − k(S+i,T) − k(S,T+i) + k(S,T)]."""
        t = self._t(theta)
        out = np.empty(self.m)
        for i in range(self.m):
            poly = np.zeros((self.m, self.m))            # [a, b]: |S| = a, |T| = b
            poly[0, 0] = 1.0
            for j in range(self.m):
                if j == i:
                    continue
                new = poly.copy()                        # both absent: factor 1
                new[1:, 1:] += poly[:-1, :-1]            # both present: 1
                new[1:, :] += t[j] * poly[:-1, :]        # in S only: t_j
                new[:, 1:] += t[j] * poly[:, :-1]        # in T only: t_j
                poly = new
            out[i] = (2.0 - 2.0 * t[i]) * float(self.w @ poly @ self.w)
        return out

    def neg_log_posterior(self, theta: np.ndarray, diff: np.ndarray, same: np.ndarray) -> tuple[float, np.ndarray]:
        """−log p(θ | y) up to a constant (s² and the mean profiled) and its gradient;
        ``diff`` is (n², M): player i in one coalition of a pair and not the other; ``same``
        the size term's pattern (``same_size``)."""
        n = len(self.y)
        y = self.y / self.scale_y
        log_t = -1.0 / (self.m * np.exp(theta[2:]))
        k0 = np.exp(diff @ log_t).reshape(n, n)
        sigma = np.exp(theta[1])
        k = k0 + sigma * same + np.exp(theta[0]) * np.eye(n)
        try:
            c = cho_factor(k, lower=True, check_finite=False)
        except LinAlgError:
            return 1e300, np.zeros_like(theta)
        ones = np.ones(n)
        ki_y, ki_1 = cho_solve(c, y, check_finite=False), cho_solve(c, ones, check_finite=False)
        beta = ki_y - float(ones @ ki_y) / float(ones @ ki_1) * ki_1          # K⁻¹ (y − mean)
        q = max(float((y - float(ones @ ki_y) / float(ones @ ki_1)) @ beta), 1e-300)
        mu, sd = length_prior(self.m)
        log_l = theta[2:]
        value = 0.5 * (n * np.log(q / n) + 2 * np.log(np.diag(c[0])).sum()) + \
            float(np.sum((log_l - mu) ** 2 / (2 * sd ** 2) + log_l))
        # d/dθ of ½[log|K| + n log q] = ½[tr(K⁻¹ dK) − n βᵀ dK β / q] (the mean's own derivative is 0
        # at its optimum); dK/d log l_i = K₀ ∘ D_i · (−log t_i), dK/d log λ = λ I
        kinv = _inverse(c[0])
        inner = (kinv - (n / q) * np.outer(beta, beta)) * k0
        g_l = 0.5 * (inner.reshape(-1) @ diff) * (-log_t) + (log_l - mu) / sd ** 2 + 1.0
        lam = np.exp(theta[0])
        g_lam = 0.5 * lam * (np.trace(kinv) - n * float(beta @ beta) / q)
        g_sigma = 0.5 * sigma * float(np.sum((kinv - (n / q) * np.outer(beta, beta)) * same))
        return value, np.concatenate([[g_lam, g_sigma], g_l])

    def bounds(self) -> list[tuple[float, float]]:
        return [LOG_NUGGET_BOUNDS, LOG_SIZE_BOUNDS] + [LOG_LENGTH_BOUNDS] * self.m

    def starts(self) -> list[np.ndarray]:
        mu, _ = length_prior(self.m)
        return [np.concatenate([[np.log(NUGGET_START), np.log(SIZE_START)], np.full(self.m, mu)])]

    def optimize(self, starts: list[np.ndarray] | None = None) -> np.ndarray:
        """The posterior mode of θ from the best of ``starts`` and the prior's mode (L-BFGS-B)."""
        diff = (self.x[:, None, :] != self.x[None, :, :]).reshape(-1, self.m).astype(np.float64)
        same = same_size(self.x, self.x)
        bounds = self.bounds()
        best = None
        for s in (starts or []) + self.starts():
            s = np.clip(np.asarray(s, dtype=np.float64), [b[0] for b in bounds], [b[1] for b in bounds])
            r = minimize(self.neg_log_posterior, s, args=(diff, same), jac=True, method="L-BFGS-B", bounds=bounds,
                         options={"maxiter": 100})
            if best is None or r.fun < best.fun:
                best = r
        return np.asarray(best.x)

    def _factor(self, theta: np.ndarray):
        k = self.cov(theta, self.x, self.x)
        k[np.diag_indices_from(k)] += np.exp(theta[0])
        return cho_factor(k, lower=True, check_finite=False)

    def posterior(self, theta: np.ndarray) -> HammingFit:
        c = self._factor(theta)
        ones = np.ones_like(self.y)
        ki_y, ki_1 = cho_solve(c, self.y, check_finite=False), cho_solve(c, ones, check_finite=False)
        mean = float(ones @ ki_y) / float(ones @ ki_1)
        alpha = ki_y - mean * ki_1
        scale = float((self.y - mean) @ alpha) / len(self.y)
        cross = self.cross(theta, self.x)
        half = solve_triangular(c[0], cross.T, lower=True, check_finite=False)
        var = scale * np.maximum(self.prior_var(theta) - np.sum(half ** 2, axis=0), 0.0)
        return HammingFit(values=cross @ alpha, se=np.sqrt(var), theta=theta, scale=scale, mean=mean)

    def marginal_se(self, fit: HammingFit, rng: np.random.Generator) -> np.ndarray:
        """Standard errors of φ with θ integrated out about ``fit`` (the posterior at the mode),
        by ``shapley.gp``'s scheme (``integrate_theta``): on few coalitions the mode of M + 2
        hyperparameters is one of many that fit, and the posterior at it alone is too sure."""
        diff = (self.x[:, None, :] != self.x[None, :, :]).reshape(-1, self.m).astype(np.float64)
        same = same_size(self.x, self.x)
        g0 = self.neg_log_posterior(fit.theta, diff, same)[1]
        step = 1e-4
        hess = np.array([(self.neg_log_posterior(fit.theta + step * e, diff, same)[1] - g0) / step
                         for e in np.eye(len(fit.theta))])

        def draw(t: np.ndarray):
            value = self.neg_log_posterior(t, diff, same)[0]
            if value >= 1e299:
                return None
            try:
                return self.posterior(t), -value
            except LinAlgError:
                return None
        return integrate_theta(fit, (hess + hess.T) / 2, np.array(self.bounds()), draw, len(self.y), rng)

    def choose(self, theta: np.ndarray, pool: np.ndarray, count: int) -> list[int]:
        """Indices of ``count`` coalitions of ``pool`` chosen greedily by the reduction of Σ var(φ_i)."""
        c = self._factor(theta)
        nugget = np.exp(theta[0])
        hd = solve_triangular(c[0], self.cov(theta, self.x, pool), lower=True, check_finite=False)
        hphi = solve_triangular(c[0], self.cross(theta, self.x).T, lower=True, check_finite=False)
        s_bb = self.cov(theta, pool, pool) + nugget * np.eye(len(pool)) - hd.T @ hd
        s_pb = self.cross(theta, pool) - hphi.T @ hd
        chosen: list[int] = []
        for _ in range(min(count, len(pool))):
            gain = np.sum(s_pb ** 2, axis=0) / np.maximum(np.diag(s_bb), 1e-300)
            gain[chosen] = -np.inf
            j = int(np.argmax(gain))
            chosen.append(j)
            col = s_bb[:, j] / max(s_bb[j, j], 1e-300)
            s_pb = s_pb - np.outer(s_pb[:, j], col)
            s_bb = s_bb - np.outer(s_bb[:, j], col)
        return chosen
