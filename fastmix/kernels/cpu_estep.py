"""Fused EM kernels for the four classic covariance types (CPU, Numba).

One pass over a row range computes, row by row and without ever building the N x K matrix:
the weighted log-densities ``l_k = log pi_k + log N(x | mu_k, Sigma_k)``, their log-sum-exp
``log p(x)``, the responsibilities ``r_k``, and the sufficient statistics

* ``nk[k]   = sum_n w_n r_nk``
* ``s1[k]   = sum_n w_n r_nk x_n``
* ``s2``    second moments *centred on the means used for the densities* (float64):
  full ``(K, D, D)``: ``sum w r (x - mu_k)(x - mu_k)^T``; tied ``(1, D, D)``:
  ``sum w (x - g)(x - g)^T`` with ``g`` a single centre; diag ``(K, 1, D)``:
  ``sum w r (x - mu_k)^2``; spherical ``(K, 1, 1)``: ``sum w r ||x - mu_k||^2``
* ``ll      = sum_n w_n log p(x_n)`` and ``ws = sum_n w_n``.

Covariance parameters arrive as a 3-D array ``pc`` of precision-Cholesky factors so that one
kernel body serves every type: full ``(K, D, D)`` upper-triangular ``U_k`` with
``Sigma_k^-1 = U_k U_k^T``; tied ``(1, D, D)``; diag ``(K, 1, D)`` = ``1/sigma``; spherical
``(K, 1, 1)``.  ``lconst[k] = log pi_k + log det U_k - D/2 log(2 pi)`` (float64).

Precision: the densities are evaluated in the dtype of ``X`` (float32 stays float32), the
log-sum-exp and every accumulation in float64.

Determinism: rows are cut into fixed chunks of ``chunk_rows`` rows.  Each parallel iteration owns
one slot of the partial-statistics buffers; slots are merged into the totals strictly in chunk
order, so the result does not depend on the number of threads.

Small responsibilities are cut: a component whose log-density is more than ``-cut`` below the
row's maximum gets responsibility exactly 0 and is skipped in the statistics (``cut`` = -40 in
float64: exp(-40) = 4.2e-18, so for K < 26 each row's total is unchanged in float64; -20 in
float32).
"""
import math

import numpy as np
from numba import prange

from ._jit import kernel
from ._math import EXP_MIN_ARG, exp_nonpos

FULL, TIED, DIAG, SPHERICAL = 0, 1, 2, 3
ESTEP, RESP, NEAREST = 0, 1, 2


@kernel()
def _row_logdens(kind, x, means, pc, lconst, tmeans, g, z, out):
    """Weighted log-densities of one row ``x`` (D,) into ``out`` (K,), in the dtype of ``x``.

    ``z`` is a (D,) scratch vector of x's dtype.  For tied, ``tmeans[k] = (mu_k - g) U`` and
    the row is whitened once as ``(x - g) U``.
    """
    K = means.shape[0]
    D = x.shape[0]
    half = x.dtype.type(0.5)
    if kind == DIAG:
        for k in range(K):
            acc = x.dtype.type(0)
            for d in range(D):
                y = (x[d] - means[k, d]) * pc[k, 0, d]
                acc += y * y
            out[k] = lconst[k] - half * acc
    elif kind == SPHERICAL:
        for k in range(K):
            acc = x.dtype.type(0)
            for d in range(D):
                y = x[d] - means[k, d]
                acc += y * y
            p = pc[k, 0, 0]
            out[k] = lconst[k] - half * (p * p) * acc
    elif kind == FULL:
        for k in range(K):
            for j in range(D):
                z[j] = 0
            for i in range(D):
                yi = x[i] - means[k, i]
                for j in range(i, D):
                    z[j] += yi * pc[k, i, j]
            acc = x.dtype.type(0)
            for j in range(D):
                acc += z[j] * z[j]
            out[k] = lconst[k] - half * acc
    else:  # TIED
        for j in range(D):
            z[j] = 0
        for i in range(D):
            yi = x[i] - g[i]
            for j in range(i, D):
                z[j] += yi * pc[0, i, j]
        for k in range(K):
            acc = x.dtype.type(0)
            for j in range(D):
                y = z[j] - tmeans[k, j]
                acc += y * y
            out[k] = lconst[k] - half * acc


@kernel()
def _row_responsibilities(lrow, resp, cut):
    """log-sum-exp of ``lrow`` (K,); writes responsibilities (float64) into ``resp``.

    Components more than ``-cut`` below the maximum get exactly 0.  Returns (log p, argmax).
    """
    K = lrow.shape[0]
    m = -np.inf
    amax = 0
    for k in range(K):
        if lrow[k] > m:
            m = lrow[k]
            amax = k
    if m == -np.inf:  # every component impossible: cannot happen with finite data and parameters
        for k in range(K):
            resp[k] = 0.0
        return -np.inf, amax
    s = 0.0
    for k in range(K):
        t = max(np.float64(lrow[k]) - np.float64(m), EXP_MIN_ARG)
        e = exp_nonpos(t)
        e = e if t > cut else 0.0
        resp[k] = e
        s += e
    inv = 1.0 / s
    for k in range(K):
        resp[k] *= inv
    return np.float64(m) + math.log(s), amax


@kernel()
def _accumulate_row(kind, x, wn, resp, means64, g64, y, nk, s1, s2):
    """Add row ``x`` with weight ``wn`` and responsibilities ``resp`` (K,) to nk, s1, s2.

    Components with responsibility exactly 0 are skipped.  ``y`` is a (D,) float64 scratch.
    """
    K = resp.shape[0]
    D = x.shape[0]
    if kind == TIED:
        for i in range(D):
            y[i] = np.float64(x[i]) - g64[i]
        for i in range(D):
            wyi = wn * y[i]
            for j in range(i, D):
                s2[0, i, j] += wyi * y[j]
    for k in range(K):
        r = resp[k]
        if r == 0.0:
            continue
        wr = wn * r
        nk[k] += wr
        if kind == DIAG:
            for d in range(D):
                xd = np.float64(x[d])
                s1[k, d] += wr * xd
                yd = xd - means64[k, d]
                s2[k, 0, d] += wr * yd * yd
        elif kind == SPHERICAL:
            acc = 0.0
            for d in range(D):
                xd = np.float64(x[d])
                s1[k, d] += wr * xd
                yd = xd - means64[k, d]
                acc += yd * yd
            s2[k, 0, 0] += wr * acc
        elif kind == FULL:
            for d in range(D):
                xd = np.float64(x[d])
                s1[k, d] += wr * xd
                y[d] = xd - means64[k, d]
            for i in range(D):
                wyi = wr * y[i]
                for j in range(i, D):
                    s2[k, i, j] += wyi * y[j]
        else:  # TIED: the second moment was accumulated once for the row above
            for d in range(D):
                s1[k, d] += wr * np.float64(x[d])


@kernel()
def _nearest(x, means64):
    """(index, squared distance) of the mean nearest to x, in float64."""
    best = np.inf
    arg = 0
    for k in range(means64.shape[0]):
        acc = 0.0
        for d in range(x.shape[0]):
            t = np.float64(x[d]) - means64[k, d]
            acc += t * t
        if acc < best:
            best = acc
            arg = k
    return arg, best


@kernel()
def _chunk_stats(mode, kind, X, sw, R, start, stop, means, pc, lconst, tmeans, g, means64, g64,
                 cut, nk, s1, s2):
    """Statistics of rows [start, stop), written over nk, s1, s2; returns (ll, ws).

    mode ESTEP: responsibilities from the model, ll = sum w log p(x).
    mode RESP: responsibilities given in R (N, K); ll = 0.
    mode NEAREST: one-hot on the nearest of ``means64`` (k-means); ll = -sum w ||x - mu||^2.
    """
    K, D = means64.shape
    nk[:] = 0.0
    s1[:, :] = 0.0
    s2[:, :, :] = 0.0
    lrow = np.empty(K, dtype=X.dtype)
    z = np.empty(D, dtype=X.dtype)
    resp = np.zeros(K, dtype=np.float64)
    y = np.empty(D, dtype=np.float64)
    has_w = sw.shape[0] > 0
    ll = 0.0
    ws = 0.0
    for n in range(start, stop):
        x = X[n]
        wn = sw[n] if has_w else 1.0
        if mode == ESTEP:
            _row_logdens(kind, x, means, pc, lconst, tmeans, g, z, lrow)
            logp, _ = _row_responsibilities(lrow, resp, cut)
            ll += wn * logp
        elif mode == RESP:
            for k in range(K):
                resp[k] = R[n, k]
        else:
            arg, dist = _nearest(x, means64)
            ll -= wn * dist
            for k in range(K):
                resp[k] = 0.0
            resp[arg] = 1.0
        ws += wn
        if wn != 0.0:
            _accumulate_row(kind, x, wn, resp, means64, g64, y, nk, s1, s2)
    return ll, ws


@kernel()
def _symmetrize_upper(s2):
    """Copy the upper triangle of each (D, D) slice into its lower triangle."""
    D = s2.shape[1]
    if s2.shape[2] != D or D == 1:
        return
    for k in range(s2.shape[0]):
        for i in range(D):
            for j in range(i + 1, D):
                s2[k, j, i] = s2[k, i, j]


@kernel()
def _merge_slots(n, parts, total):
    """total += parts[0] + ... + parts[n-1], added one slot after another (fixed order)."""
    for j in range(n):
        for i in range(total.shape[0]):
            total[i] += parts[j, i]


@kernel(parallel=True)
def stats_pass(mode, kind, X, sw, R, means, pc, lconst, tmeans, g, means64, g64, cut, chunk_rows,
               n_slots, s2_shape1, s2_shape2):
    """One pass over all rows of ``X`` accumulating sufficient statistics.

    With ``mode=ESTEP`` this is the fused E-step + statistics of EM; ``RESP`` takes the
    responsibilities from ``R`` (N, K) float64 (initialisation from given responsibilities);
    ``NEAREST`` assigns each row to the nearest of ``means64`` (k-means / its initial statistics).

    Parameters
    ----------
    mode : int (ESTEP, RESP, NEAREST)
    kind : int (FULL, TIED, DIAG, SPHERICAL)
    X : (N, D) float32 or float64, C-contiguous
    sw : (N,) float64 sample weights, or (0,) for unit weights
    means, pc, tmeans, g : parameters in X's dtype (see module docstring)
    lconst : (K,) float64;  means64 (K, D), g64 (D,) float64 centres of the second moments
    cut : float, responsibility cut in log space (negative)
    chunk_rows : rows per chunk (the unit of determinism)
    n_slots : how many chunks are processed in parallel before merging (any value gives the
        same result; it only bounds memory)

    Returns
    -------
    nk (K,), s1 (K, D), s2 (K or 1, s2_shape1, s2_shape2), ll, ws -- all float64.
    """
    N, D = X.shape
    K = means64.shape[0]
    K2 = 1 if kind == TIED else K
    n_chunks = (N + chunk_rows - 1) // chunk_rows
    n_slots = max(1, min(n_slots, n_chunks))
    nk_p = np.zeros((n_slots, K))
    s1_p = np.zeros((n_slots, K, D))
    s2_p = np.zeros((n_slots, K2, s2_shape1, s2_shape2))
    llws_p = np.zeros((n_slots, 2))
    nk = np.zeros(K)
    s1 = np.zeros((K, D))
    s2 = np.zeros((K2, s2_shape1, s2_shape2))
    llws = np.zeros(2)
    for c0 in range(0, n_chunks, n_slots):
        n_here = min(n_slots, n_chunks - c0)
        for j in prange(n_here):  # iteration j owns slot j of every *_p buffer
            start = (c0 + j) * chunk_rows
            stop = min(N, start + chunk_rows)
            ll_j, ws_j = _chunk_stats(mode, kind, X, sw, R, start, stop, means, pc, lconst,
                                      tmeans, g, means64, g64, cut, nk_p[j], s1_p[j], s2_p[j])
            llws_p[j, 0] = ll_j
            llws_p[j, 1] = ws_j
        # merge in chunk order: the result does not depend on the thread count
        _merge_slots(n_here, nk_p, nk)
        _merge_slots(n_here, s1_p.reshape(n_slots, -1), s1.reshape(-1))
        _merge_slots(n_here, s2_p.reshape(n_slots, -1), s2.reshape(-1))
        _merge_slots(n_here, llws_p, llws)
    ll = llws[0]
    ws = llws[1]
    if kind == FULL or kind == TIED:
        _symmetrize_upper(s2)
    return nk, s1, s2, ll, ws


@kernel(parallel=True)
def log_prob(kind, X, means, pc, lconst, tmeans, g, cut, chunk_rows, logp, labels, resp):
    """Per-row log p(x), hard labels (argmax of the weighted log-density) and, when ``resp`` has
    N rows, responsibilities (float64).  Outputs are written in place; rows are independent.
    """
    N, D = X.shape
    K = means.shape[0]
    want_resp = resp.shape[0] == N
    n_chunks = (N + chunk_rows - 1) // chunk_rows
    for c in prange(n_chunks):  # iteration c owns rows [c*chunk_rows, ...) of every output
        lrow = np.empty(K, dtype=X.dtype)
        z = np.empty(D, dtype=X.dtype)
        r = np.empty(K, dtype=np.float64)
        start = c * chunk_rows
        stop = min(N, start + chunk_rows)
        for n in range(start, stop):
            _row_logdens(kind, X[n], means, pc, lconst, tmeans, g, z, lrow)
            lp, am = _row_responsibilities(lrow, r, cut)
            logp[n] = lp
            labels[n] = am
            if want_resp:
                for k in range(K):
                    resp[n, k] = r[k]


@kernel(parallel=True)
def first_nonfinite_row(X, chunk_rows):
    """Index of the first row of X holding NaN or +-inf, or -1.  X: (N, D) float array."""
    N, D = X.shape
    n_chunks = (N + chunk_rows - 1) // chunk_rows
    found = np.full(n_chunks, -1, dtype=np.int64)
    for c in prange(n_chunks):  # iteration c owns found[c]
        start = c * chunk_rows
        stop = min(N, start + chunk_rows)
        for n in range(start, stop):
            bad = False
            for d in range(D):
                if not np.isfinite(X[n, d]):
                    bad = True
            if bad:
                found[c] = n
                break
    for c in range(n_chunks):
        if found[c] >= 0:
            return found[c]
    return -1
