"""SGD kernels for Gepperth et al.'s max-component GMM training (ALGORITHMS.md section 1; CPU).

Model (the released code's parameterisation): logits ``xi`` (K,) with pi = softmax(xi), means
``mu`` (K, D) and square roots of the diagonal precisions ``s`` (K, D) > 0:

    l_j(x) = log pi_j + sum_d log s_jd - D/2 log 2 pi - 1/2 sum_d s_jd^2 (x_d - mu_jd)^2.

Objectives per sample: the smoothed max-component ``max_k sum_j g_kj l_j`` (``g`` the (K, K)
row-normalised grid smoothing; g = I gives the plain max-component bound) with weights
w_j = g_{k* j} for the best-matching unit k*, or (``exact=True``) the log-likelihood, with
w_j = softmax(l)_j.  Closed-form gradients (ALGORITHMS.md 1.3):

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

from ._jit import kernel

LOG2PI = math.log(2.0 * math.pi)


@kernel()
def _loglik_row(X, n, xi_lse, xi, mu, s, logdet, ell):
    """ell[j] = l_j(x_n) (float64)."""
    K, D = mu.shape
    c = -0.5 * D * LOG2PI
    for j in range(K):
        q = 0.0
        for d in range(D):
            z = s[j, d] * (X[n, d] - mu[j, d])
            q += z * z
        ell[j] = xi[j] - xi_lse + logdet[j] + c - 0.5 * q


@kernel()
def _weights_row(ell, g, exact, w):
    """Fill w (K,) for one sample; returns the objective value."""
    K = ell.shape[0]
    if exact:
        m = -np.inf
        for j in range(K):
            if ell[j] > m:
                m = ell[j]
        tot = 0.0
        for j in range(K):
            w[j] = math.exp(ell[j] - m)
            tot += w[j]
        for j in range(K):
            w[j] /= tot
        return m + math.log(tot)
    best = -np.inf
    kbest = 0
    for k in range(K):
        v = 0.0
        for j in range(K):
            v += g[k, j] * ell[j]
        if v > best:
            best = v
            kbest = k
    for j in range(K):
        w[j] = g[kbest, j]
    return best


@kernel()
def _logsumexp(v):
    m = -np.inf
    for j in range(v.shape[0]):
        if v[j] > m:
            m = v[j]
    tot = 0.0
    for j in range(v.shape[0]):
        tot += math.exp(v[j] - m)
    return m + math.log(tot)


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
def _apply(X, n, w, xi, mu, s, logdet, xi_lse, step_pi, step_mu, step_s, s_min, s_max):
    """theta += step * grad(w) for one sample; logdet[j] kept equal to sum_d log s_jd by
    adding the change of each updated entry (a log only where s changed)."""
    K, D = mu.shape
    for j in range(K):
        pj = math.exp(xi[j] - xi_lse)
        xi[j] += step_pi * (w[j] - pj)
        wj = w[j]
        if wj == 0.0:
            continue
        # log det changes by sum_d log(v / s): multiply the ratios and take one log per 16
        # entries (ratios lie in [s_min/s_max, s_max/s_min], so 16 of them cannot overflow)
        dl = 0.0
        prod = 1.0
        for d in range(D):
            diff = X[n, d] - mu[j, d]
            sj = s[j, d]
            mu[j, d] += step_mu * wj * sj * sj * diff
            v = sj + step_s * wj * (1.0 / sj - sj * diff * diff)
            if v < s_min:
                v = s_min
            elif v > s_max:
                v = s_max
            prod *= v / sj
            s[j, d] = v
            if (d & 15) == 15:
                dl += math.log(prod)
                prod = 1.0
        logdet[j] += dl + math.log(prod)


@kernel()
def sgd_step_single(X, xi, mu, s, g, exact, eps, lam_pi, lam_mu, lam_s, s_min, s_max, out):
    """Batch size 1 over the rows of X in order; parameters updated in place; out[n] = the
    objective of sample n before its step."""
    N = X.shape[0]
    K, D = mu.shape
    ell = np.empty(K)
    w = np.empty(K)
    logdet = np.empty(K)
    _refresh(xi, s, logdet)
    for n in range(N):
        lse = _logsumexp(xi)
        _loglik_row(X, n, lse, xi, mu, s, logdet, ell)
        out[n] = _weights_row(ell, g, exact, w)
        _apply(X, n, w, xi, mu, s, logdet, lse, eps * lam_pi, eps * lam_mu, eps * lam_s, s_min,
               s_max)


@kernel()
def sgd_minibatch(X, batch, xi, mu, s, g, exact, eps, lam_pi, lam_mu, lam_s, s_min, s_max, out):
    """Mini-batches of ``batch`` consecutive rows: gradients averaged under the parameters at
    the start of the batch, one step per batch; out[b] = the batch's mean objective."""
    N = X.shape[0]
    K, D = mu.shape
    ell = np.empty(K)
    w = np.empty(K)
    logdet = np.empty(K)
    gxi = np.empty(K)
    gmu = np.empty((K, D))
    gs = np.empty((K, D))
    nb = (N + batch - 1) // batch
    for b in range(nb):
        start = b * batch
        stop = min(N, start + batch)
        lse = _refresh(xi, s, logdet)
        gxi[:] = 0.0
        gmu[:, :] = 0.0
        gs[:, :] = 0.0
        tot = 0.0
        for n in range(start, stop):
            _loglik_row(X, n, lse, xi, mu, s, logdet, ell)
            tot += _weights_row(ell, g, exact, w)
            for j in range(K):
                gxi[j] += w[j] - math.exp(xi[j] - lse)
                if w[j] == 0.0:
                    continue
                for d in range(D):
                    diff = X[n, d] - mu[j, d]
                    sj = s[j, d]
                    gmu[j, d] += w[j] * sj * sj * diff
                    gs[j, d] += w[j] * (1.0 / sj - sj * diff * diff)
        inv = 1.0 / (stop - start)
        out[b] = tot * inv
        for j in range(K):
            xi[j] += eps * lam_pi * gxi[j] * inv
            for d in range(D):
                mu[j, d] += eps * lam_mu * gmu[j, d] * inv
                v = s[j, d] + eps * lam_s * gs[j, d] * inv
                if v < s_min:
                    v = s_min
                elif v > s_max:
                    v = s_max
                s[j, d] = v
