"""Per-row math compiled for both targets: plain Python functions (no decorator) that the CPU
kernels compile with ``cpu._jit.kernel()`` and the CUDA kernels with ``cuda.jit(device=True)``.
One definition serves both, so the CPU and GPU twins cannot drift apart and give the same
floating-point operations in the same order.

Only ``math`` and scalar NumPy constants are used here (what numba compiles on both targets),
no allocation, and each function works on scalars and 1-D/2-D arrays or views passed in.

* SGD (``cpu.sgd`` / ``cuda.sgd``; docs/algorithms.md §1): ``sqnorm_row``, ``logsumexp``,
  ``weights_row``.
* GMM expansion (``cpu.expansion`` / ``cuda.expansion``): ``window_factors``, the window and
  the separable density factors of one row in one dimension.
"""
import math

import numpy as np

#: Independent partial sums per row in ``sqnorm_row`` (fixed order, so results do not depend
#: on the machine or thread count; several chains let the CPU overlap the floating-point
#: latency).
LANES = 4


# ------------------------------------------------------------------ SGD -----------------------
def sqnorm_row(X, n, mu, s, j):
    """sum_d (s_jd (x_nd - mu_jd))^2 in LANES interleaved partial sums (d mod LANES)."""
    D = mu.shape[1]
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    d = 0
    while d + 4 <= D:
        z0 = s[j, d] * (X[n, d] - mu[j, d])
        z1 = s[j, d + 1] * (X[n, d + 1] - mu[j, d + 1])
        z2 = s[j, d + 2] * (X[n, d + 2] - mu[j, d + 2])
        z3 = s[j, d + 3] * (X[n, d + 3] - mu[j, d + 3])
        a0 += z0 * z0
        a1 += z1 * z1
        a2 += z2 * z2
        a3 += z3 * z3
        d += 4
    while d < D:
        z0 = s[j, d] * (X[n, d] - mu[j, d])
        a0 += z0 * z0
        d += 1
    return (a0 + a1) + (a2 + a3)


def weights_row(ell, g, smooth, exact, w):
    """Fill w (K,) for one sample; returns the objective value.  ``smooth`` False means
    g = I: the best-matching unit is argmax_j l_j, found without the K x K product."""
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
    if not smooth:
        for k in range(K):
            if ell[k] > best:
                best = ell[k]
                kbest = k
        w[:] = 0.0
        w[kbest] = 1.0
        return best
    for k in range(K):
        v = 0.0
        for j in range(K):
            gkj = g[k, j]
            if gkj != 0.0:  # truncated smoothing (fastmix.sgd.toroidal_smoothing): exact zeros
                v += gkj * ell[j]
        if v > best:
            best = v
            kbest = k
    for j in range(K):
        w[j] = g[kbest, j]
    return best


def logsumexp(v):
    """log sum_j exp(v_j) of a vector (components in order)."""
    m = -np.inf
    for j in range(v.shape[0]):
        if v[j] > m:
            m = v[j]
    tot = 0.0
    for j in range(v.shape[0]):
        tot += math.exp(v[j] - m)
    return m + math.log(tot)


# ------------------------------------------------------------------ GMM expansion -------------
def window_factors(x, lo, h, n_nodes, W, inv_sig, terms):
    """The window of coordinate ``x`` in one dimension of the grid (``n_nodes`` nodes at
    ``lo + j h``): the nearest node k clipped to the grid, the nodes within ``W`` steps of it
    (clipped too), and the factors ``terms[j] = exp(t(a + j) - max t)`` of the window's nodes,
    ``t(i) = -((x - lo - i h) inv_sig)^2 / 2``.  Returns (a, count, max t): the first node of
    the window, its number of nodes and the factor taken out of every value."""
    k = int(math.floor((x - lo) / h + 0.5))
    if k < 0:
        k = 0
    elif k > n_nodes - 1:
        k = n_nodes - 1
    a = k - W
    if a < 0:
        a = 0
    b = k + W
    if b > n_nodes - 1:
        b = n_nodes - 1
    tmax = -np.inf
    for j in range(b - a + 1):
        z = (x - (lo + (a + j) * h)) * inv_sig
        t = -0.5 * z * z
        terms[j] = t
        if t > tmax:
            tmax = t
    for j in range(b - a + 1):
        terms[j] = math.exp(terms[j] - tmax)
    return a, b - a + 1, tmax
