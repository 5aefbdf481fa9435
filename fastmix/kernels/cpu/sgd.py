"""SGD kernels for Gepperth et al.'s max-component GMM training (docs/algorithms.md §1; CPU).

Model (the released code's parameterisation): logits ``xi`` (K,) with pi = softmax(xi), means
``mu`` (K, D) and square roots of the diagonal precisions ``s`` (K, D) > 0:

    l_j(x) = log pi_j + sum_d log s_jd - D/2 log 2 pi - 1/2 sum_d s_jd^2 (x_d - mu_jd)^2.

Objectives per sample: the smoothed max-component ``max_k sum_j g_kj l_j`` (``g`` the (K, K)
row-normalised grid smoothing; g = I gives the plain max-component bound) with weights
w_j = g_{k* j} for the best-matching unit k*, or (``exact=True``) the log-likelihood, with
w_j = softmax(l)_j.  Closed-form gradients (docs/algorithms.md §1.3):

    d xi_j = w_j - pi_j;   d mu_jd = w_j s_jd^2 (x_d - mu_jd);   d s_jd = w_j (1/s_jd - s_jd (x_d - mu_jd)^2)

and the ascent step ``theta += eps * lambda_theta * d theta`` with s clipped to [s_min, s_max].

``sgd_step_single`` streams samples one at a time (batch size 1), updating all K components in
place with no allocation per sample; ``sgd_minibatch`` averages the gradients of ``batch``
consecutive samples under the same parameters before each step.  Both return the per-step
objective values (for loss curves and annealing).

The driver (toroidal smoothing, annealing) is ``fastmix.sgd``; the estimator
``fastmix.SGDGaussianMixture``.
"""
import math

import numpy as np

from numba import prange

from .. import _shared
from .._shared import LANES  # noqa: F401  (re-exported: tests size data by it)
from ._jit import kernel

LOG2PI = math.log(2.0 * math.pi)


# The per-sample math shared with the CUDA kernel (kernels/_shared.py), compiled for the CPU.
#: sum_d (s_jd (x_nd - mu_jd))^2 in LANES interleaved partial sums (d mod LANES)
_sqnorm_row = kernel()(_shared.sqnorm_row)
#: a sample's weights w (K,) from its log-likelihoods ell (K,); returns its objective
_weights_row = kernel()(_shared.weights_row)
#: log-sum-exp of a vector (components in order)
_logsumexp = kernel()(_shared.logsumexp)


@kernel()
def _loglik_row(X, n, xi_lse, xi, mu, s, logdet, ell):
    """ell[j] = l_j(x_n) (float64)."""
    K, D = mu.shape
    c = -0.5 * D * LOG2PI
    for j in range(K):
        ell[j] = xi[j] - xi_lse + logdet[j] + c - 0.5 * _sqnorm_row(X, n, mu, s, j)


@kernel()
def _is_identity(g):
    K = g.shape[0]
    for k in range(K):
        for j in range(K):
            if g[k, j] != (1.0 if k == j else 0.0):
                return False
    return True


@kernel()
def _refresh(xi, s, logdet):
    """log-sum-exp of the logits and sum_d log s_jd per component; returns the former."""
    K, D = s.shape
    for j in range(K):
        acc = 0.0
        for d in range(D):
            acc += math.log(s[j, d])
        logdet[j] = acc
    return _logsumexp(xi)


@kernel()
def _log_prod(r, D):
    """sum_d log r_d with one log per 16 factors per lane (LANES interleaved products; each
    factor is a ratio s_new / s_old in [s_min/s_max, s_max/s_min], so 16 cannot overflow)."""
    acc = 0.0
    p0 = 1.0
    p1 = 1.0
    p2 = 1.0
    p3 = 1.0
    d = 0
    blk = 0
    while d + 4 <= D:
        p0 *= r[d]
        p1 *= r[d + 1]
        p2 *= r[d + 2]
        p3 *= r[d + 3]
        d += 4
        blk += 1
        if blk == 16:
            acc += (math.log(p0) + math.log(p1)) + (math.log(p2) + math.log(p3))
            p0 = 1.0
            p1 = 1.0
            p2 = 1.0
            p3 = 1.0
            blk = 0
    while d < D:
        p0 *= r[d]
        d += 1
    return acc + ((math.log(p0) + math.log(p1)) + (math.log(p2) + math.log(p3)))


@kernel(error_model="numpy")
def _update_component(X, n, j, wj, mu, s, ratio, step_mu, step_s, s_min, s_max):
    """mu_j, s_j += step * w_j * gradient for sample n (ratio: (D,) scratch); returns the
    change of sum_d log s_jd.  One division per entry: 1/s_jd serves the gradient and the
    ratio s_new / s_old."""
    D = mu.shape[1]
    a = step_mu * wj
    b = step_s * wj
    x = X[n]
    m = mu[j]
    sr = s[j]
    for d in range(D):
        diff = x[d] - m[d]
        sj = sr[d]
        inv = 1.0 / sj
        m[d] += a * sj * sj * diff
        v = min(max(sj + b * (inv - sj * diff * diff), s_min), s_max)
        sr[d] = v
        ratio[d] = v * inv
    return _log_prod(ratio, D)


@kernel()
def _apply(X, n, w, xi, mu, s, logdet, xi_lse, step_pi, step_mu, step_s, s_min, s_max, old):
    """theta += step * grad(w) for one sample; components with w_j = 0 (the truncated
    smoothing's exact zeros, or all but the best-matching unit when g = I) are skipped;
    logdet[j] kept equal to sum_d log s_jd incrementally."""
    K, D = mu.shape
    for j in range(K):
        pj = math.exp(xi[j] - xi_lse)
        xi[j] += step_pi * (w[j] - pj)
        wj = w[j]
        if wj == 0.0:
            continue
        logdet[j] += _update_component(X, n, j, wj, mu, s, old, step_mu, step_s, s_min, s_max)


@kernel()
def sgd_step_single(X, xi, mu, s, g, exact, eps, lam_pi, lam_mu, lam_s, s_min, s_max, out):
    """Batch size 1 over the rows of X in order; parameters updated in place; out[n] = the
    objective of sample n before its step."""
    N = X.shape[0]
    K, D = mu.shape
    ell = np.empty(K)
    w = np.empty(K)
    logdet = np.empty(K)
    old = np.empty(D)
    smooth = not _is_identity(g)
    _refresh(xi, s, logdet)
    for n in range(N):
        lse = _logsumexp(xi)
        _loglik_row(X, n, lse, xi, mu, s, logdet, ell)
        out[n] = _weights_row(ell, g, smooth, exact, w)
        _apply(X, n, w, xi, mu, s, logdet, lse, eps * lam_pi, eps * lam_mu, eps * lam_s, s_min,
               s_max, old)


@kernel(error_model="numpy")
def _accumulate_component(X, n, j, wj, mu, s, gmu, gs):
    """gmu_j += w_j * d mu_j, gs_j += w_j * d s_j for sample n (row views: vectorisable)."""
    x = X[n]
    m = mu[j]
    sr = s[j]
    am = gmu[j]
    a_s = gs[j]
    for d in range(x.shape[0]):
        diff = x[d] - m[d]
        sj = sr[d]
        am[d] += wj * sj * sj * diff
        a_s[d] += wj * (1.0 / sj - sj * diff * diff)


@kernel(parallel=True)
def sgd_minibatch(X, batch, xi, mu, s, g, exact, eps, lam_pi, lam_mu, lam_s, s_min, s_max, out):
    """Mini-batches of ``batch`` consecutive rows: gradients averaged under the parameters at
    the start of the batch, one step per batch; out[b] = the batch's mean objective.

    Parallel over components (``prange`` over k): each thread computes its components'
    log-determinants, log-likelihood columns l_k(x_n), gradient accumulators and updates, each
    in a fixed order; the per-sample weights in between are computed in sample order.  No
    value depends on which thread computed it, so the result is bit-identical for any number
    of threads (tests/test_sgd_kernels.py runs 1 vs 2)."""
    N = X.shape[0]
    K, D = mu.shape
    c = -0.5 * D * LOG2PI
    smooth = not _is_identity(g)
    logdet = np.empty(K)
    # (K, batch): each thread writes and reads whole rows of its own components (no false
    # sharing of cache lines between threads)
    ell = np.empty((K, batch))
    w = np.empty((K, batch))
    ell_row = np.empty(K)
    w_row = np.empty(K)
    gmu = np.empty((K, D))
    gs = np.empty((K, D))
    nb = (N + batch - 1) // batch
    for b in range(nb):
        start = b * batch
        stop = min(N, start + batch)
        B = stop - start
        lse = _logsumexp(xi)
        for j in prange(K):
            acc = 0.0
            for d in range(D):
                acc += math.log(s[j, d])
            logdet[j] = acc
            base = xi[j] - lse + acc + c
            for i in range(B):
                ell[j, i] = base - 0.5 * _sqnorm_row(X, start + i, mu, s, j)
        tot = 0.0
        for i in range(B):
            for j in range(K):
                ell_row[j] = ell[j, i]
            tot += _weights_row(ell_row, g, smooth, exact, w_row)
            for j in range(K):
                w[j, i] = w_row[j]
        inv = 1.0 / B
        out[b] = tot * inv
        for j in prange(K):
            pj = math.exp(xi[j] - lse)
            gx = 0.0
            for d in range(D):
                gmu[j, d] = 0.0
                gs[j, d] = 0.0
            any_w = False
            for i in range(B):
                wij = w[j, i]
                gx += wij - pj
                if wij != 0.0:
                    any_w = True
                    _accumulate_component(X, start + i, j, wij, mu, s, gmu, gs)
            xi[j] += eps * lam_pi * gx * inv
            if not any_w:
                continue
            a = eps * lam_mu * inv
            bb = eps * lam_s * inv
            for d in range(D):
                mu[j, d] += a * gmu[j, d]
                s[j, d] = min(max(s[j, d] + bb * gs[j, d], s_min), s_max)


# ------------------------------------------------------------------------------------------
# Local principal directions (docs/algorithms.md §1.1, ICLR section 3.5), isotropic residual.
#
# Component j: mean mu_j (D,), S orthonormal directions U_j (S, D) (rows), square roots of the
# precisions along them a_j (S,) > 0 and of the isotropic precision in the orthogonal
# complement r_j > 0.  With z = x - mu_j, y = U_j z and q = |z|^2:
#
#   l_j(x) = log pi_j - D/2 log 2 pi + sum_s log a_js + (D - S) log r_j
#            - 1/2 sum_s a_js^2 y_s^2 - 1/2 r_j^2 (q - sum_s y_s^2)
#
# (the Gaussian with covariance U^T diag(1/a^2) U + (I - U^T U) / r^2).  Closed-form gradients:
#
#   d mu_j = r^2 z + sum_s (a_s^2 - r^2) y_s u_s        d a_s = 1/a_s - a_s y_s^2
#   d u_s  = -(a_s^2 - r^2) y_s z                       d r   = (D - S)/r - r (q - sum_s y_s^2)
#
# (u_s treated as free, then re-orthonormalised).  Steps: xi by lambda_pi, mu by lambda_mu, a, r
# and the directions by lambda_sigma; a and r clipped to [s_min, s_max]; after every step the
# updated components' directions are re-orthonormalised in the kernel by modified Gram-Schmidt
# on the rows, which is the QR factorisation U^T = Q R with diag(R) > 0 (the sign-fixed QR of
# docs/algorithms.md §1.1), up to rounding.
# ------------------------------------------------------------------------------------------
@kernel(error_model="numpy")
def _lpd_project(X, n, mu, U, j, z, y):
    """z = x_n - mu_j, y = U_j z; returns |z|^2."""
    S, D = U.shape[1], U.shape[2]
    for d in range(D):
        z[d] = X[n, d] - mu[j, d]
    q0 = 0.0
    q1 = 0.0
    for d in range(0, D - 1, 2):
        q0 += z[d] * z[d]
        q1 += z[d + 1] * z[d + 1]
    if D % 2:
        q0 += z[D - 1] * z[D - 1]
    for s in range(S):
        u = U[j, s]
        p0 = 0.0
        p1 = 0.0
        for d in range(0, D - 1, 2):
            p0 += u[d] * z[d]
            p1 += u[d + 1] * z[d + 1]
        if D % 2:
            p0 += u[D - 1] * z[D - 1]
        y[s] = p0 + p1
    return q0 + q1


@kernel()
def _lpd_ell(q, y, a, r, j, D):
    """l_j without log pi_j and -D/2 log 2 pi, from q = |z|^2 and y = U_j z."""
    S = y.shape[0]
    logdet = (D - S) * math.log(r[j])
    quad = 0.0
    proj = 0.0
    for s in range(S):
        logdet += math.log(a[j, s])
        t = a[j, s] * y[s]
        quad += t * t
        proj += y[s] * y[s]
    resid = max(q - proj, 0.0)
    return logdet - 0.5 * quad - 0.5 * r[j] * r[j] * resid


@kernel(error_model="numpy")
def _orthonormalise_rows(V):
    """Modified Gram-Schmidt on the rows of V (S, D), in place (= sign-fixed QR of V^T)."""
    S, D = V.shape
    for s in range(S):
        vs = V[s]
        for t in range(s):
            vt = V[t]
            c = 0.0
            for d in range(D):
                c += vt[d] * vs[d]
            for d in range(D):
                vs[d] -= c * vt[d]
        nrm = 0.0
        for d in range(D):
            nrm += vs[d] * vs[d]
        inv = 1.0 / math.sqrt(nrm)
        for d in range(D):
            vs[d] *= inv


@kernel(error_model="numpy")
def _lpd_gradients(q, y, z, U, a, r, j, wj, gmu, gU, ga, scale):
    """Add scale * w_j * gradient of l_j (z, y, q of one sample) into gmu (D,), gU (S, D),
    ga (S,); returns the r gradient times scale * w_j."""
    S, D = U.shape[1], U.shape[2]
    r2 = r[j] * r[j]
    f = scale * wj
    proj = 0.0
    for d in range(D):
        gmu[d] += f * r2 * z[d]
    for s in range(S):
        c = (a[j, s] * a[j, s] - r2) * y[s]
        u = U[j, s]
        gu = gU[s]
        fc = f * c
        for d in range(D):
            gmu[d] += fc * u[d]
            gu[d] -= fc * z[d]
        ga[s] += f * (1.0 / a[j, s] - a[j, s] * y[s] * y[s])
        proj += y[s] * y[s]
    resid = max(q - proj, 0.0)
    return f * ((D - S) / r[j] - r[j] * resid)


@kernel()
def _lpd_apply(mu, U, a, r, j, gmu, gU, ga, gr, step_mu, step_s, s_min, s_max):
    """theta_j += steps * accumulated gradients; clip a, r; re-orthonormalise U_j."""
    S, D = U.shape[1], U.shape[2]
    for d in range(D):
        mu[j, d] += step_mu * gmu[d]
    for s in range(S):
        for d in range(D):
            U[j, s, d] += step_s * gU[s, d]
        a[j, s] = min(max(a[j, s] + step_s * ga[s], s_min), s_max)
    r[j] = min(max(r[j] + step_s * gr, s_min), s_max)
    _orthonormalise_rows(U[j])


@kernel()
def sgd_lpd_step_single(X, xi, mu, U, a, r, g, exact, eps, lam_pi, lam_mu, lam_s, s_min, s_max,
                        out):
    """Batch size 1 for the local-principal-directions model (see above): parameters (xi (K,),
    mu (K, D), U (K, S, D), a (K, S), r (K,)) updated in place; out[n] = the objective of
    sample n before its step.  Components with w_j = 0 are skipped."""
    N = X.shape[0]
    K, S, D = U.shape
    c0 = -0.5 * D * LOG2PI
    smooth = not _is_identity(g)
    ell = np.empty(K)
    w = np.empty(K)
    z = np.empty(D)
    Y = np.empty((K, S))
    Q = np.empty(K)
    gmu = np.empty(D)
    gU = np.empty((S, D))
    ga = np.empty(S)
    for n in range(N):
        lse = _logsumexp(xi)
        for j in range(K):
            Q[j] = _lpd_project(X, n, mu, U, j, z, Y[j])
            ell[j] = xi[j] - lse + c0 + _lpd_ell(Q[j], Y[j], a, r, j, D)
        out[n] = _weights_row(ell, g, smooth, exact, w)
        for j in range(K):
            xi[j] += eps * lam_pi * (w[j] - math.exp(xi[j] - lse))
            if w[j] == 0.0:
                continue
            _lpd_project(X, n, mu, U, j, z, Y[j])
            gmu[:] = 0.0
            gU[:, :] = 0.0
            ga[:] = 0.0
            gr = _lpd_gradients(Q[j], Y[j], z, U, a, r, j, w[j], gmu, gU, ga, 1.0)
            _lpd_apply(mu, U, a, r, j, gmu, gU, ga, gr, eps * lam_mu, eps * lam_s, s_min, s_max)


@kernel(parallel=True)
def sgd_lpd_minibatch(X, batch, xi, mu, U, a, r, g, exact, eps, lam_pi, lam_mu, lam_s, s_min,
                      s_max, out):
    """Mini-batch version of ``sgd_lpd_step_single`` (gradients averaged under the parameters
    at the start of the batch, one step and one re-orthonormalisation per batch), parallel over
    components like ``sgd_minibatch`` and, like it, bit-identical for any thread count."""
    N = X.shape[0]
    K, S, D = U.shape
    c0 = -0.5 * D * LOG2PI
    smooth = not _is_identity(g)
    ell = np.empty((K, batch))
    w = np.empty((K, batch))
    ell_row = np.empty(K)
    w_row = np.empty(K)
    nb = (N + batch - 1) // batch
    for b in range(nb):
        start = b * batch
        stop = min(N, start + batch)
        B = stop - start
        lse = _logsumexp(xi)
        for j in prange(K):
            z = np.empty(D)
            y = np.empty(S)
            for i in range(B):
                q = _lpd_project(X, start + i, mu, U, j, z, y)
                ell[j, i] = xi[j] - lse + c0 + _lpd_ell(q, y, a, r, j, D)
        tot = 0.0
        for i in range(B):
            for j in range(K):
                ell_row[j] = ell[j, i]
            tot += _weights_row(ell_row, g, smooth, exact, w_row)
            for j in range(K):
                w[j, i] = w_row[j]
        inv = 1.0 / B
        out[b] = tot * inv
        for j in prange(K):
            pj = math.exp(xi[j] - lse)
            z = np.empty(D)
            y = np.empty(S)
            gmu = np.zeros(D)
            gU = np.zeros((S, D))
            ga = np.zeros(S)
            gr = 0.0
            gx = 0.0
            any_w = False
            for i in range(B):
                wij = w[j, i]
                gx += wij - pj
                if wij != 0.0:
                    any_w = True
                    q = _lpd_project(X, start + i, mu, U, j, z, y)
                    gr += _lpd_gradients(q, y, z, U, a, r, j, wij, gmu, gU, ga, inv)
            xi[j] += eps * lam_pi * gx * inv
            if any_w:
                _lpd_apply(mu, U, a, r, j, gmu, gU, ga, gr, eps * lam_mu, eps * lam_s, s_min,
                           s_max)
