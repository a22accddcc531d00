"""Shapley values as the posterior mean of a Gaussian-process model of the game.

Model, in Harsanyi's (Möbius) basis: v(S) = v(∅) + Σ_{∅≠T⊆S} d_T + u(|S|) + e_S with
independent dividends d_T ~ N(0, s²·w_|T| / C(M, |T|)) up to order ``max_order`` (the
dividends of order k together carry prior variance s²·w_k), w_1 = 1 and w_k = ω·ρ^(k-2)
for k ≥ 2: pairs weigh ω against single players, and higher interactions fade
geometrically at a rate ρ, both learnt from the data. ω is free because real segmentation
games are often mostly pairwise (a false positive that needs two regions present:
``benchmarks/games``, Shapley weight 0.6-0.9 in order 2), which one geometric rate cannot
express without inflating every higher order; with ω = ρ the model is the geometric one
(a 3-entry θ). An offset u ~ N(0, s²·σ) per
coalition size 1..M-1 (a symmetric game that is 0 at ∅ and N, so its Shapley values are
0: it takes up size-level shifts, e.g. a network that degrades with the share of the image
removed, which the dividends would otherwise have to explain); and a nugget
e_S ~ N(0, s²·λ) on every coalition but N for what the model misses. For coalitions S, S'

    cov(v(S), v(S'))  = s² [Σ_k w_k C(|S∩S'|, k) / C(M, k) + σ [|S| = |S'|] + λ [S = S']]
    cov(φ_i, v(S))    = s² [i ∈ S] Σ_k w_k C(|S|-1, k-1) / (k C(M, k))
    var(φ_i)          = s² Σ_k w_k / (k M)

because φ_i = Σ_{T∋i} d_T / |T|. The estimate is the posterior mean of φ given every
evaluated coalition (both halves of a pair count), its standard error the posterior
standard deviation. Σφ_i = v(N) - v(∅) holds for every game and v(N) is observed without
nugget or offset, so the posterior mean is efficient (to rounding, which the caller
spreads). ρ, ω, σ, λ and s² are chosen by maximum likelihood (s² in closed form, the
others by L-BFGS-B with the analytic gradient).

On few coalitions the maximum-likelihood θ is one of many that fit about as well, and a
posterior at that one θ is too sure (on the recorded real games at 4M, 0.87 of the nominal
95 % intervals held). ``marginal_se`` therefore averages over θ: draws from the Laplace
approximation around θ̂ (finite-difference Hessian of the likelihood, widened by
``LAPLACE_WIDEN``, flat directions capped at a quarter of the box; a draw outside the box
is moved onto it), importance-weighted by likelihood over proposal density under a flat
prior on the log box, and reports the mixture's
mean square about the estimate, Σ w_j (σ_j² + (μ_j − φ̂)²); s² integrated out under
Jeffreys' prior makes each posterior a Student t with n degrees of freedom, which the
standard error absorbs by the ratio of its 97.5 % quantile to the normal one. The
estimate itself stays the posterior mean at θ̂.

This is the additive kernel of Duvenaud et al. (2011) on binary inputs, with Shapley's
linear functional on top; k-additive estimators (shapiq's kADDSHAP) are its flat-prior,
zero-higher-order limit. Hand-written: GP libraries (scikit-learn, GPyTorch) have neither
this kernel on sets nor the Shapley cross-covariance, and the likelihood needs only a
Cholesky factor and its gradient. Every covariance depends on |S∩S'| or |S| alone, so
each is a table lookup.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve, lapack, solve_triangular
from scipy.optimize import minimize
from scipy.special import gammaln
from scipy.stats import multivariate_normal, norm, t as student_t

MAX_ORDER = None                      # None: every order up to M
LOG_RHO_BOUNDS = (np.log(1e-6), np.log(1e3))   # and ρ^(M-1) <= 1e100, so that no covariance overflows
LOG_NUGGET_BOUNDS = (np.log(1e-8), np.log(1e3))   # below 1e-8 the factor needs jitter and time
LOG_SIZE_BOUNDS = (np.log(1e-8), np.log(1e3))
LOG_PAIR_BOUNDS = (np.log(1e-6), np.log(1e3))
LAPLACE_DRAWS = 32                    # θ draws of marginal_se
LAPLACE_WIDEN = 1.5                   # proposal sd over the Laplace sd (importance weights correct it)
STARTS = ((0.0, np.log(1e-3), np.log(1e-3), 0.0), (np.log(0.1), np.log(1e-6), np.log(0.1), np.log(0.1)),
          (np.log(0.1), np.log(1e-3), np.log(1e-3), np.log(10.0)))    # (log ρ, log λ, log σ, log ω)


@dataclass
class GPFit:
    """Posterior mean and standard deviation of φ, and the hyperparameters behind them."""
    values: np.ndarray
    se: np.ndarray
    theta: np.ndarray        # (log ρ, log λ, log σ[, log ω])
    scale: float             # s², profiled
    log_likelihood: float


def _ratio_table(top: int, m: int, orders: np.ndarray) -> np.ndarray:
    """R[j, k] = C(j, k) / C(m, k) for j = 0..top and the given orders (0 where j < k)."""
    j = np.arange(top + 1, dtype=np.float64)[:, None]
    k = orders[None, :]
    ok = j >= k
    log = gammaln(j + 1) - gammaln(np.where(ok, j - k, 0) + 1) - gammaln(m + 1) + gammaln(m - k + 1)
    return np.where(ok, np.exp(np.where(ok, log, 0.0)), 0.0)


def _inverse(lower: np.ndarray) -> np.ndarray:
    """K⁻¹ from K's lower Cholesky factor (LAPACK potri: a third of a solve against I)."""
    inv, info = lapack.dpotri(lower, lower=1)
    if info != 0:
        raise LinAlgError("potri failed")
    return np.tril(inv) + np.tril(inv, -1).T


class GameGP:
    """The model on a fixed set of evaluated coalitions (v(∅) given separately)."""

    def __init__(self, coalitions: np.ndarray, values: np.ndarray, base_value: float,
                 max_order: int | None = MAX_ORDER) -> None:
        x = np.asarray(coalitions, dtype=bool)
        keep = x.any(axis=1)                                   # v(∅) is the known offset
        self.x, self.m = x[keep], x.shape[1]
        top = self.m if max_order is None else int(max_order)
        if not 1 <= top <= self.m:
            raise ValueError(f"max_order must lie in 1..{self.m}")
        self.orders = np.arange(1, top + 1, dtype=np.float64)
        self.y = np.asarray(values, dtype=np.float64)[keep] - float(base_value)
        self.noisy = (~self.x.all(axis=1)).astype(np.float64)  # v(N) is exact: efficiency
        xf = self.x.astype(np.float64)
        self.inter = np.rint(xf @ xf.T).astype(np.int64)
        self.size = self.x.sum(axis=1)
        inner = self.noisy > 0
        self.same_size = ((self.size[:, None] == self.size[None, :]) & inner[:, None] & inner[None, :]).astype(float)
        self.kernel_ratio = _ratio_table(self.m, self.m, self.orders)             # C(j,k)/C(M,k)
        # C(s-1, k-1) / (k C(M, k)) = [C(s-1, k-1) / C(M, k-1)] / (M - k + 1), by s - 1
        self.cross_ratio = _ratio_table(self.m - 1, self.m, self.orders - 1) / (self.m - self.orders + 1)
        # floored where its square stays > 0: a game 0 on every coalition played (a proxy's residual
        # can be) must not divide by 0 in posterior()
        self.scale_y = max(float(np.abs(self.y).max()), 1e-150)

    def _order_weights(self, theta: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """w_k per order and its derivatives in log ρ (and log ω when θ has it)."""
        if len(theta) < 4:                                     # geometric: w_k = ρ^(k-1)
            w = np.exp((self.orders - 1) * theta[0])
            return w, [(self.orders - 1) * w]
        higher = self.orders >= 2
        w = np.where(higher, np.exp(theta[3] + (self.orders - 2) * theta[0]), 1.0)
        return w, [np.where(higher, (self.orders - 2) * w, 0.0), np.where(higher, w, 0.0)]

    def _kernel(self, theta: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], float, float]:
        """K / s², its derivatives in the order weights' parameters, λ and σ."""
        w, dws = self._order_weights(theta)
        lam, sigma = float(np.exp(theta[1])), float(np.exp(theta[2]))
        k = (self.kernel_ratio @ w)[self.inter] + sigma * self.same_size
        dks = [(self.kernel_ratio @ dw)[self.inter] for dw in dws]
        k[np.diag_indices_from(k)] += lam * self.noisy
        return k, dks, lam, sigma

    @staticmethod
    def _cholesky(k: np.ndarray):
        jitter = 0.0
        for _ in range(8):
            try:
                return cho_factor(k, lower=True, check_finite=False)
            except LinAlgError:
                jitter = max(jitter * 100, 1e-12 * float(np.mean(np.diag(k))))
                k[np.diag_indices_from(k)] += jitter
        raise LinAlgError("the kernel matrix is not positive definite")

    def neg_log_likelihood(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """-log p(y | θ) with s² profiled out (up to a constant), and its gradient."""
        n = self.y.size
        k, dks, lam, sigma = self._kernel(theta)
        try:
            c = self._cholesky(k)
        except LinAlgError:
            return 1e300, np.zeros(len(theta))
        y = self.y / self.scale_y
        alpha = cho_solve(c, y, check_finite=False)
        q = max(float(y @ alpha), 1e-300)
        nll = 0.5 * (n * np.log(q / n) + 2.0 * np.log(np.diag(c[0])).sum())
        kinv = _inverse(c[0])
        # d nll / dθ = ½ [tr(K⁻¹ dK) - n αᵀ dK α / q]
        g_w = [0.5 * (np.sum(kinv * dk) - n * float(alpha @ dk @ alpha) / q) for dk in dks]
        g_lam = 0.5 * lam * (float(np.diag(kinv) @ self.noisy) - n * float(alpha ** 2 @ self.noisy) / q)
        g_size = 0.5 * sigma * (np.sum(kinv * self.same_size) - n * float(alpha @ self.same_size @ alpha) / q)
        return float(nll), np.array([g_w[0], g_lam, g_size, *g_w[1:]])

    def bounds(self, dim: int) -> np.ndarray:
        """(dim, 2) box of log ρ, log λ, log σ[, log ω]."""
        top = min(LOG_RHO_BOUNDS[1], 230.0 / max(self.orders[-1] - 1, 1))
        return np.array([(LOG_RHO_BOUNDS[0], top), LOG_NUGGET_BOUNDS, LOG_SIZE_BOUNDS, LOG_PAIR_BOUNDS][:dim])

    def optimize(self, starts) -> np.ndarray:
        """Maximum-likelihood θ (log ρ, log λ, log σ[, log ω], as long as the starts) from the
        best of ``starts`` (L-BFGS-B)."""
        bounds = [tuple(b) for b in self.bounds(len(starts[0]))]
        best = None
        for s in starts:
            s = np.clip(np.asarray(s, dtype=np.float64), [b[0] for b in bounds], [b[1] for b in bounds])
            r = minimize(self.neg_log_likelihood, s, jac=True, method="L-BFGS-B", bounds=bounds,
                         options={"maxiter": 60, "ftol": 1e-8})
            if best is None or r.fun < best.fun:
                best = r
        return np.asarray(best.x, dtype=np.float64)

    def posterior(self, theta: np.ndarray) -> GPFit:
        """Posterior mean and standard deviation of φ for hyperparameters ``theta``."""
        n = self.y.size
        theta = np.asarray(theta, dtype=np.float64)
        k = self._kernel(theta)[0]
        c = self._cholesky(k)
        alpha = cho_solve(c, self.y, check_finite=False)
        w, _ = self._order_weights(theta)
        per_size = self.cross_ratio @ w                                   # by |S| - 1
        cross = self.x.T * per_size[self.size - 1][None, :]               # (M, n)
        phi = cross @ alpha
        scale = float(self.y @ alpha) / n
        prior = float(np.sum(w / self.orders)) / self.m
        half = solve_triangular(c[0], cross.T, lower=True, check_finite=False)   # L⁻¹ Cᵀ
        var = scale * np.maximum(prior - np.sum(half ** 2, axis=0), 0.0)
        # the likelihood of neg_log_likelihood, from this factor (no second factor, no inverse)
        q = max(scale * n / self.scale_y ** 2, 1e-300)
        nll = 0.5 * (n * np.log(q / n) + 2.0 * np.log(np.diag(c[0])).sum())
        return GPFit(values=phi, se=np.sqrt(var), theta=theta, scale=scale, log_likelihood=-nll)

    def _hessian(self, theta: np.ndarray, step: float = 1e-3) -> np.ndarray:
        """Forward differences of the analytic gradient, symmetrised."""
        g0 = self.neg_log_likelihood(theta)[1]
        h = np.array([(self.neg_log_likelihood(theta + step * e)[1] - g0) / step for e in np.eye(len(theta))])
        return (h + h.T) / 2

    def marginal_se(self, fit: GPFit, rng: np.random.Generator, draws: int = LAPLACE_DRAWS) -> np.ndarray:
        """Standard errors of φ with θ integrated out, about ``fit`` (the posterior at θ̂;
        see the module docstring)."""
        def draw(t: np.ndarray):
            try:
                post = self.posterior(t)
            except LinAlgError:                    # no Cholesky factor there: no weight
                return None
            return post, post.log_likelihood
        return integrate_theta(fit, self._hessian(fit.theta), self.bounds(len(fit.theta)), draw, self.y.size,
                               rng, draws)


def integrate_theta(fit, hessian: np.ndarray, box: np.ndarray, draw, n: int, rng: np.random.Generator,
                    draws: int = LAPLACE_DRAWS) -> np.ndarray:
    """Standard errors of φ with θ integrated out about ``fit`` (values, se, theta at the mode):
    draws from the Laplace approximation (``hessian`` of −log density at the mode, flat
    directions capped at a quarter of ``box``, widened by ``LAPLACE_WIDEN``; a draw outside the
    box is moved onto it), importance-weighted by density over proposal; the mixture's mean
    square about the estimate, times the Student-t factor of ``n`` values. ``draw(θ)`` gives
    (posterior at θ, its log density) or None (no factor there). Shared by this model and
    ``shapley.hamming``'s."""
    theta = fit.theta
    eig, vec = np.linalg.eigh(hessian)
    eig = np.maximum(eig, 1.0 / (float(np.max(box[:, 1] - box[:, 0])) / 4) ** 2)
    cov = (vec / eig) @ vec.T * LAPLACE_WIDEN ** 2
    # drawn through cov's Cholesky factor, which is unique: Generator.multivariate_normal
    # factors by SVD, whose singular vectors' signs and order follow the BLAS thread count,
    # so the same seed gave other draws (and SEs 3.6x apart) on another machine
    draws_z = rng.standard_normal((draws, len(theta)))
    thetas = np.clip(theta + draws_z @ np.linalg.cholesky(cov).T, box[:, 0], box[:, 1])
    got = [r for r in map(draw, thetas) if r is not None]
    if not got:
        return fit.se
    fits = [f for f, _ in got]
    log_w = np.array([w for _, w in got])
    log_w -= multivariate_normal(theta, cov, allow_singular=True).logpdf(np.array([f.theta for f in fits]))
    weights = np.exp(log_w - log_w.max())
    weights /= weights.sum()
    square = sum(w * (f.se ** 2 + (f.values - fit.values) ** 2) for w, f in zip(weights, fits))
    return np.sqrt(square) * float(student_t.ppf(0.975, n) / norm.ppf(0.975))


def gp_shapley(coalitions: np.ndarray, values: np.ndarray, base_value: float, max_order: int | None = MAX_ORDER,
               theta: np.ndarray | None = None, warm: np.ndarray | None = None) -> GPFit:
    """Fit the model (``theta`` fixed, or optimised from ``warm`` and the default starts)."""
    gp = GameGP(coalitions, values, base_value, max_order)
    if theta is None:
        starts = [np.array(s) for s in STARTS] + ([np.asarray(warm)] if warm is not None else [])
        theta = gp.optimize(starts)
    return gp.posterior(theta)
