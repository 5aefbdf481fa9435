"""BigLearn-EM driver (Cong & Li, AAAI 2024; docs/algorithms.md §2).

Each outer iteration draws, from one seeded generator, a step kind -- joint (all coordinates),
marginal (a random coordinate subset T) or orthogonally transformed marginal (a Haar-random
orthogonal A, then a subset T of y = A x) -- and runs ``n_local_steps`` EM steps on that
(possibly transformed) marginal.  The marginal of a Gaussian mixture is a Gaussian mixture with
the sliced parameters (A mu_k)_T, (A Sigma_k A^T)_TT, so a local step is the ordinary full-
covariance E-step kernel run on the transformed, sliced rows -- no second copy of the density or
statistics code.  The M-step follows the reference code:

* pi~_k = N_k / N;  mu_T = S1_k / (N max(pi~_k, 1e-5));  Sigma_TT about the new mean, same
  denominator;
* only the T entries of A mu_k and the T x T block of A Sigma_k A^T are overwritten;
* covariance repair: ``"floor"`` (reference) -- eigenvalues below ``eig_floor`` raised to it, on
  the whole transformed matrix and again after mapping back; ``"psd"`` (docs/algorithms.md
  §2.4.2) -- the regression of y_Tc on y_T is kept, Sigma_TcT = B Sigma_TT', Sigma_TcTc =
  Sigma_Tc|T + B Sigma_TT' B^T, mu_Tc += B (mu_T' - mu_T), which stays positive definite; the
  floor is then applied only as a safeguard;
* pi = (pi~ + alpha) / sum (pi~ + alpha)  (``weight_smoothing`` alpha; 0 = plain EM weights).

Joint-EM (the paper's baseline) is the same driver with p_joint = 1 and alpha = 0.
"""
import math
from dataclasses import dataclass, field

import numpy as np

from . import kernels
from ._params import FullCovariance, GMMParams

PI_FLOOR = 1e-5
STEP_KINDS = ("joint", "marginal", "transformed")


def haar_orthogonal(rng, D):
    """A Haar-distributed random orthogonal matrix: QR of a Gaussian matrix, columns' signs
    fixed by sign(diag R)."""
    Q, R = np.linalg.qr(rng.standard_normal((D, D)))
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)


def eig_floor(S, eps):
    """V diag(max(lambda, eps)) V^T for each (D, D) matrix of S (K, D, D)."""
    lam, V = np.linalg.eigh(S)
    out = (V * np.maximum(lam, eps)[:, None, :]) @ np.swapaxes(V, 1, 2)
    return 0.5 * (out + np.swapaxes(out, 1, 2))


def draw_step(rng, D, probs, beta):
    """(kind, A or None, T) for one outer iteration (docs/algorithms.md §2.2); D = 1: joint."""
    u = rng.random()
    p_joint, p_marg, _ = probs
    if D == 1 or u < p_joint:
        return "joint", None, np.arange(D)
    kind = "marginal" if u < p_joint + p_marg else "transformed"
    m = max(1, int(math.floor(D * rng.beta(*beta))))
    T = np.sort(rng.choice(D, size=m, replace=False))
    A = haar_orthogonal(rng, D) if kind == "transformed" else None
    return kind, A, T


def marginal_stats(data, kp, A, T):
    """Full-covariance statistics (nk, s1, s2, ll, ws) of the rows ``(X A^T)[:, T]`` (or
    ``X[:, T]`` when A is None) of a host Stream, block by block on the CPU kernels.
    ``fastmix.gpu.DeviceMarginals`` is the same function for rows resident on a GPU."""
    D = data.n_features
    acc = kernels.Accumulator(kernels.FULL, kp.means64.shape[0], len(T))
    for _, X, w in data.blocks():
        Y = X if A is None else X @ A.T.astype(X.dtype)
        Y = np.ascontiguousarray(Y[:, T]) if len(T) < D else np.ascontiguousarray(Y)
        kernels.estep_stats(Y, w, kp, data.chunk_rows, acc)
    return acc.result()


def local_step(data, weights, means, covs, A, T, *, alpha, eps, update, stats=marginal_stats):
    """One EM step on the (transformed) marginal T; returns (weights, means, covs, mean ll).
    ``stats(data, kp, A, T)`` computes the marginal's statistics (``marginal_stats``)."""
    K, D = means.shape
    mbar = means if A is None else means @ A.T
    Sbar = covs if A is None else A @ covs @ A.T  # (K, D, D): A Sigma_k A^T, O(K D^3)
    mT = np.ascontiguousarray(mbar[:, T])
    STT = np.ascontiguousarray(Sbar[:, T][:, :, T])
    cov = FullCovariance.from_covariances(STT)
    kp = GMMParams(weights, mT, cov).kernel_params(data.dtype)
    nk, s1, s2, ll, ws = stats(data, kp, A, T)
    pi_t = nk / ws
    denom = ws * np.maximum(pi_t, PI_FLOOR)
    new_mT = s1 / denom[:, None]
    a = s1 - nk[:, None] * kp.means64
    delta = new_mT - kp.means64
    new_STT = (s2 - a[:, :, None] * delta[:, None, :] - delta[:, :, None] * a[:, None, :]
               + nk[:, None, None] * delta[:, :, None] * delta[:, None, :]) / denom[:, None, None]
    new_STT = 0.5 * (new_STT + np.swapaxes(new_STT, 1, 2))
    mbar = mbar.copy()
    Sbar = Sbar.copy()
    Tc = np.setdiff1d(np.arange(D), T)
    if update == "psd" and len(Tc):
        # keep the regression of y_Tc on y_T: B = S_TcT S_TT^-1, S_Tc|T fixed
        for k in range(K):
            S_cT = Sbar[k][np.ix_(Tc, T)]
            B = np.linalg.solve(STT[k], S_cT.T).T
            S_cond = Sbar[k][np.ix_(Tc, Tc)] - B @ S_cT.T
            mbar[k, Tc] += B @ (new_mT[k] - mT[k])
            Sbar[k][np.ix_(Tc, T)] = B @ new_STT[k]
            Sbar[k][np.ix_(T, Tc)] = (B @ new_STT[k]).T
            Sbar[k][np.ix_(Tc, Tc)] = S_cond + B @ new_STT[k] @ B.T
    mbar[:, T] = new_mT
    for k in range(K):
        Sbar[k][np.ix_(T, T)] = new_STT[k]
    Sbar = eig_floor(Sbar, eps)
    if A is None:
        means, covs = mbar, Sbar
    else:
        means = mbar @ A
        covs = eig_floor(A.T @ Sbar @ A, eps)
    w = (pi_t + alpha) / (pi_t + alpha).sum()
    return w, means, covs, ll / ws


@dataclass
class BigLearnResult:
    params: GMMParams
    kinds: list = field(default_factory=list)
    log_likelihoods: list = field(default_factory=list)


def run_biglearn(data, params, rng, *, n_outer, n_local_steps, probs, beta, alpha, eps, update,
                 callback=None, stats=marginal_stats):
    """The outer loop; ``callback(iteration, kind, params, mean_ll)`` after each iteration;
    ``stats`` as for ``local_step``."""
    w = params.weights
    m = params.means
    c = params.cov.covariances
    D = m.shape[1]
    res = BigLearnResult(params)
    for it in range(1, n_outer + 1):
        kind, A, T = draw_step(rng, D, probs, beta)
        for _ in range(n_local_steps):
            w, m, c, ll = local_step(data, w, m, c, A, T, alpha=alpha, eps=eps, update=update,
                                     stats=stats)
        res.kinds.append(kind)
        res.log_likelihoods.append(float(ll))
        res.params = GMMParams(w, m, FullCovariance.from_covariances(c))
        if callback is not None:
            callback(it, kind, res.params, float(ll))
    return res


@dataclass
class PolishResult:
    params: GMMParams
    n_iter: int = 0
    converged: bool = False
    log_likelihoods: list = field(default_factory=list)


def polish(data, params, *, max_iter, tol, eps, update, stats=marginal_stats):
    """Joint EM steps from ``params`` (plain EM weights: no smoothing) until the mean
    log-likelihood gains less than ``tol`` or ``max_iter`` steps; a step's log-likelihood is
    that of the model it starts from.  ``max_iter=0`` returns ``params`` unchanged."""
    w = params.weights
    m = params.means
    c = params.cov.covariances
    D = m.shape[1]
    out = PolishResult(params)
    prev = -np.inf
    for it in range(1, max_iter + 1):
        w1, m1, c1, ll = local_step(data, w, m, c, None, np.arange(D), alpha=0.0, eps=eps,
                                    update=update, stats=stats)
        ll = float(ll)
        out.log_likelihoods.append(ll)
        if ll - prev < tol:  # the model this step started from has converged: keep it
            out.converged = True
            out.n_iter = it - 1
            return out
        prev = ll
        w, m, c = w1, m1, c1
        out.params = GMMParams(w, m, FullCovariance.from_covariances(c))
        out.n_iter = it
    return out
