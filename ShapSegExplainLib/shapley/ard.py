"""The GP of ``shapley.gp`` with a relevance per player, and the coalitions that teach it most.

Real segmentation games are carried by a few players (the three largest |φ| hold 73–100 % of
Σ|φ| in every recorded game), and the shipped prior treats every player alike. Here a dividend
d_T gets prior variance s²·w_|T|·Π_{i∈T} a_i / e_|T|(a), e_k the elementary symmetric
polynomial, so each order still carries s²·w_k in all (w as in ``shapley.gp``) and a_i says how
much player i takes part. Then

    cov(v(S), v(S')) = s² [Σ_k w_k e_k(a_{S∩S'}) / e_k(a) + σ [|S| = |S'|] + λ [S = S']]
    cov(φ_i, v(S))   = s² a_i [i ∈ S] Σ_k w_k e_{k-1}(a_{S∖i}) / (k e_k(a))
    var(φ_i)         = s² a_i Σ_k w_k e_{k-1}(a_{-i}) / (k² e_k(a)),

and with every a_i = 1 it is the shipped model. θ = (log ρ, log λ, log σ, log ω, log a) is
the posterior mode under N(0, ``LOG_A_SD``²) on each log a_i (the a_i are defined up to a
common factor; the prior fixes it and keeps a player's weight from running off on few
values); the likelihood's gradient comes from PyTorch's autograd (float64), the optimiser is
scipy's L-BFGS-B.

The design (``next_pairs``): complementary pairs chosen greedily, each the one of a pool of
stratified candidates that most reduces the posterior variance of φ (summed over players),
the hyperparameters held (a Gaussian posterior's variance does not depend on the values, so a
whole batch is chosen before it is evaluated). The choice depends on the values only through
θ, so the posterior, which conditions on the coalitions evaluated, needs no reweighting.
Hand-written for the reason ``shapley.gp`` gives; the idea is ShaplEIG's (shapiq 1.8: a
GP with a per-player kernel, coalitions by information gain), the model is ours.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve, solve_triangular
from scipy.optimize import minimize

from .gp import STARTS, GameGP

LOG_A_SD = 2.0              # prior sd of each log a_i
LOG_A_BOUNDS = (-12.0, 12.0)


def esp(a: np.ndarray, members: np.ndarray, top: int) -> np.ndarray:
    """e_0..e_top of the weights ``a`` over each row's members: (..., M) bool -> (..., top + 1)."""
    e = np.zeros(members.shape[:-1] + (top + 1,))
    e[..., 0] = 1.0
    for i in range(members.shape[-1]):
        e[..., 1:] = e[..., 1:] + (a[i] * members[..., i])[..., None] * e[..., :-1]
    return e


def esp_without(e: np.ndarray, a_i: float) -> np.ndarray:
    """e_0..e_top of a set with player i removed, from the set's e (i a member):
    e_j(U∖i) = e_j(U) − a_i e_{j−1}(U∖i)."""
    out = np.empty_like(e)
    out[..., 0] = e[..., 0]
    for j in range(1, e.shape[-1]):
        out[..., j] = e[..., j] - a_i * out[..., j - 1]
    return out


@dataclass
class ArdFit:
    values: np.ndarray
    se: np.ndarray
    theta: np.ndarray        # (log ρ, log λ, log σ, log ω, log a_1 .. log a_M)
    scale: float


class ArdGP:
    """The model on a fixed set of evaluated coalitions (v(∅) given separately)."""

    def __init__(self, coalitions: np.ndarray, values: np.ndarray, base_value: float) -> None:
        x = np.asarray(coalitions, dtype=bool)
        keep = x.any(axis=1)
        self.x, self.m = x[keep], x.shape[1]
        self.y = np.asarray(values, dtype=np.float64)[keep] - float(base_value)
        self.noisy = (~self.x.all(axis=1)).astype(np.float64)
        self.size = self.x.sum(axis=1)
        self.k = np.arange(1, self.m + 1, dtype=np.float64)
        self.scale_y = max(float(np.abs(self.y).max()), 1e-150)

    # -- the prior
    def _w(self, theta: np.ndarray) -> np.ndarray:
        return np.where(self.k >= 2, np.exp(theta[3] + (self.k - 2) * theta[0]), 1.0)

    def cov(self, theta: np.ndarray, xa: np.ndarray, xb: np.ndarray, noisy_a=None, noisy_b=None) -> np.ndarray:
        """Prior covariance / s² between coalitions ``xa`` and ``xb`` (nugget on neither)."""
        a, w = np.exp(theta[4:]), self._w(theta)
        norm = esp(a, np.ones(self.m, bool), self.m)[1:]
        inter = xa[:, None, :] & xb[None, :, :]
        k = esp(a, inter, self.m)[..., 1:] @ (w / norm)
        if noisy_a is not None:
            same = (xa.sum(1)[:, None] == xb.sum(1)[None, :]) & (noisy_a[:, None] > 0) & (noisy_b[None, :] > 0)
            k = k + np.exp(theta[2]) * same
        return k

    def cross(self, theta: np.ndarray, xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """cov(φ, v(S)) / s² for coalitions ``xb`` (M, n), and var(φ) / s² (M,)."""
        a, w = np.exp(theta[4:]), self._w(theta)
        norm = esp(a, np.ones(self.m, bool), self.m)[1:]
        e = esp(a, xb, self.m)                                  # (n, M+1)
        full = esp(a, np.ones(self.m, bool), self.m)
        out, prior = np.zeros((self.m, len(xb))), np.zeros(self.m)
        for i in range(self.m):
            rest = esp_without(e, a[i])[:, :-1]                 # e_{k-1}(S∖i), k = 1..M
            out[i] = a[i] * xb[:, i] * (rest @ (w / (self.k * norm)))
            prior[i] = a[i] * (esp_without(full, a[i])[:-1] @ (w / (self.k ** 2 * norm)))
        return out, prior

    def kernel(self, theta: np.ndarray) -> np.ndarray:
        k = self.cov(theta, self.x, self.x, self.noisy, self.noisy)
        k[np.diag_indices_from(k)] += np.exp(theta[1]) * self.noisy
        return k

    # -- the fit
    def _torch_nll(self):
        """-log posterior density of θ (s² profiled) as a function of a float64 tensor."""
        import torch
        x = torch.as_tensor(self.x)
        inter = (x[:, None, :] & x[None, :, :]).to(torch.float64)
        ones = torch.ones(self.m, dtype=torch.float64)
        noisy = torch.as_tensor(self.noisy)
        inner = noisy > 0
        size = torch.as_tensor(self.size)
        same = ((size[:, None] == size[None, :]) & inner[:, None] & inner[None, :]).to(torch.float64)
        y = torch.as_tensor(self.y / self.scale_y)
        kk = torch.as_tensor(self.k)
        n, m = len(self.y), self.m

        def esp_t(a, members):
            cols = [torch.ones(members.shape[:-1], dtype=torch.float64)] + \
                   [torch.zeros(members.shape[:-1], dtype=torch.float64) for _ in range(m)]
            for i in range(m):
                step = a[i] * members[..., i]
                for j in range(min(i + 1, m), 0, -1):
                    cols[j] = cols[j] + step * cols[j - 1]
            return torch.stack(cols[1:], dim=-1)

        def nll(theta):
            a = torch.exp(theta[4:])
            w = torch.where(kk >= 2, torch.exp(theta[3] + (kk - 2) * theta[0]), torch.ones_like(kk))
            norm = esp_t(a, ones)
            k = esp_t(a, inter) @ (w / norm) + torch.exp(theta[2]) * same
            k = k + torch.diag(torch.exp(theta[1]) * noisy + 1e-10 * k.diagonal().mean())
            chol = torch.linalg.cholesky(k)
            alpha = torch.cholesky_solve(y[:, None], chol)[:, 0]
            q = torch.clamp(y @ alpha, min=1e-300)
            return 0.5 * (n * torch.log(q / n) + 2 * torch.log(chol.diagonal()).sum()) + \
                0.5 * (theta[4:] ** 2).sum() / LOG_A_SD ** 2
        return nll

    def bounds(self) -> list[tuple[float, float]]:
        """The shipped model's box for (log ρ, log λ, log σ, log ω), ``LOG_A_BOUNDS`` for each log a_i."""
        gp = GameGP(np.ones((1, self.m), bool), np.zeros(1), 0.0)
        return [tuple(b) for b in gp.bounds(4)] + [LOG_A_BOUNDS] * self.m

    def optimize(self, starts: list[np.ndarray]) -> np.ndarray:
        import torch
        nll = self._torch_nll()

        def f(t):
            th = torch.tensor(t, dtype=torch.float64, requires_grad=True)
            try:
                val = nll(th)
                val.backward()
            except Exception:        # no Cholesky factor there
                return 1e300, np.zeros_like(t)
            return float(val), th.grad.numpy().copy()
        bounds = self.bounds()
        best = None
        for s in starts:
            s = np.clip(np.asarray(s, dtype=np.float64), [b[0] for b in bounds], [b[1] for b in bounds])
            r = minimize(f, s, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 100})
            if best is None or r.fun < best.fun:
                best = r
        return np.asarray(best.x)

    def _factor(self, theta: np.ndarray):
        k = self.kernel(theta)
        k[np.diag_indices_from(k)] += 1e-10 * float(np.mean(np.diag(k)))
        return cho_factor(k, lower=True, check_finite=False)

    def posterior(self, theta: np.ndarray) -> ArdFit:
        c = self._factor(theta)
        alpha = cho_solve(c, self.y, check_finite=False)
        cross, prior = self.cross(theta, self.x)
        scale = float(self.y @ alpha) / len(self.y)
        half = solve_triangular(c[0], cross.T, lower=True, check_finite=False)
        var = scale * np.maximum(prior - np.sum(half ** 2, axis=0), 0.0)
        return ArdFit(values=cross @ alpha, se=np.sqrt(var), theta=theta, scale=scale)

    # -- the design
    def next_pairs(self, theta: np.ndarray, pool: np.ndarray, count: int) -> list[int]:
        """Indices into ``pool`` (candidate coalitions, none ∅ or N; each is scored with its
        complement) of ``count`` pairs chosen greedily by the reduction of Σ_i var(φ_i)."""
        p = len(pool)
        both = np.concatenate([pool, ~pool])
        ones = np.ones(len(both))
        c = self._factor(theta)
        hd = solve_triangular(c[0], self.cov(theta, self.x, both, self.noisy, ones), lower=True, check_finite=False)
        hphi = solve_triangular(c[0], self.cross(theta, self.x)[0].T, lower=True, check_finite=False)
        same = np.all(both[:, None, :] == both[None, :, :], axis=2)
        s_bb = self.cov(theta, both, both, ones, ones) + np.exp(theta[1]) * same - hd.T @ hd
        s_pb = self.cross(theta, both)[0] - hphi.T @ hd                    # cov(φ, v(B) | D)
        chosen: list[int] = []
        for _ in range(min(count, p)):
            g11, g22, g12 = np.diag(s_bb)[:p], np.diag(s_bb)[p:], s_bb[np.arange(p), np.arange(p) + p]
            det = np.maximum(g11 * g22 - g12 ** 2, 1e-300)
            u, v = s_pb[:, :p], s_pb[:, p:]
            gain = np.sum(g22 * u ** 2 - 2 * g12 * u * v + g11 * v ** 2, axis=0) / det
            gain[chosen] = -np.inf
            j = int(np.argmax(gain))
            chosen.append(j)
            pick = np.array([j, p + j])
            sub = s_bb[np.ix_(pick, pick)] + 1e-12 * np.eye(2) * float(np.mean(np.diag(s_bb)))
            sol = np.linalg.solve(sub, s_bb[pick])                            # (2, 2P)
            s_pb = s_pb - s_pb[:, pick] @ sol
            s_bb = s_bb - s_bb[:, pick] @ sol
        return chosen


def ard_starts(symmetric_theta: np.ndarray | None, m: int) -> list[np.ndarray]:
    """Starts of the ARD fit: the symmetric fit's θ (every a_i = 1) and the default starts."""
    out = [np.concatenate([np.asarray(s, float), np.zeros(m)]) for s in STARTS[:1]]
    if symmetric_theta is not None and len(symmetric_theta) == 4:
        out.append(np.concatenate([symmetric_theta, np.zeros(m)]))
    return out
