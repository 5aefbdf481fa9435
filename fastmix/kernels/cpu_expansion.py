"""Kernels of the GMM expansion: fixed Gaussian components on a tensor grid (CPU, Numba).

The components are the nodes of a grid with ``shape[d]`` nodes in dimension d, node j at
``lo[d] + j h[d]``, and one diagonal bandwidth ``sigma`` shared by all of them.  For a row x only
the nodes within ``W[d]`` steps of the nearest node in each dimension are evaluated (the
window): the caller picks ``W`` so that nodes outside it have log-densities more than ``-cut``
below the nearest one's.  Log-densities are separable, ``log phi_i(x) = lconst - sum_d t_d(j_d)``
with ``t_d(j) = ((x_d - lo_d - j h_d) / sigma_d)^2 / 2``, so each row costs
``sum_d (2 W_d + 1)`` exponent terms plus one addition per window node.

Modes, per row x (weight w) and window node i with weight pi_i:

* ``EM``:   acc[i] += w pi_i phi_i(x) / sum_l pi_l phi_l(x)   (weights-only EM numerators)
* ``KDE``:  acc[i] += w phi_i(x) / phi_max                    (kernel density at the nodes;
            phi_max = exp(lconst) is the peak of one component, the same for every row)
* ``LOGP``: logp[n] = log sum_l pi_l phi_l(x)

and ``llws`` collects sum w log p(x) and sum w.  Determinism: the rows are cut into chunks of
``chunk_rows``; slot s owns a fixed, contiguous run of chunks and its own accumulator row, and
the caller adds the slots in order -- results do not depend on the number of threads.
"""
import math

import numpy as np
from numba import prange

from ._jit import kernel

EM, KDE, LOGP = 0, 1, 2


@kernel()
def _row(mode, X, n, wn, lo, h, shape, strides, inv_sig, log_pi, lconst, W, cut, acc, llws,
         logp, terms, widx, wval, ints):
    """One row: window, log-densities, log-sum-exp, accumulation.  Scratch: terms (D, T),
    widx/wval (window size,), ints (3, D) int64."""
    D = X.shape[1]
    # per dimension: the window [first, first + count) and its exponent terms
    first = ints[0]
    count = ints[1]
    odo = ints[2]
    for d in range(D):
        pos = (X[n, d] - lo[d]) / h[d]
        k = int(math.floor(pos + 0.5))
        if k < 0:
            k = 0
        elif k > shape[d] - 1:
            k = shape[d] - 1
        a = k - W[d]
        if a < 0:
            a = 0
        b = k + W[d]
        if b > shape[d] - 1:
            b = shape[d] - 1
        first[d] = a
        count[d] = b - a + 1
        for j in range(b - a + 1):
            z = (X[n, d] - (lo[d] + (a + j) * h[d])) * inv_sig[d]
            terms[d, j] = -0.5 * z * z
    # odometer over the window: node index and log-density
    m = 0
    for d in range(D):
        odo[d] = 0
    best = -np.inf
    while True:
        idx = 0
        t = lconst
        for d in range(D):
            idx += (first[d] + odo[d]) * strides[d]
            t += terms[d, odo[d]]
        v = t + (log_pi[idx] if mode != KDE else 0.0)
        widx[m] = idx
        wval[m] = v
        if v > best:
            best = v
        m += 1
        d = D - 1
        while d >= 0:
            odo[d] += 1
            if odo[d] < count[d]:
                break
            odo[d] = 0
            d -= 1
        if d < 0:
            break
    # log-sum-exp of the pi-weighted window (for KDE, wval holds log phi only)
    if mode == KDE:
        best_p = -np.inf
        for q in range(m):
            vp = wval[q] + log_pi[widx[q]]
            if vp > best_p:
                best_p = vp
        sp = 0.0
        for q in range(m):
            e = wval[q] + log_pi[widx[q]] - best_p
            if e > cut:
                sp += math.exp(e)
        lp = best_p + math.log(sp) if sp > 0.0 else -np.inf
        for q in range(m):
            e = wval[q] - lconst  # <= 0: phi_i(x) / phi_max
            if e > cut:
                acc[widx[q]] += wn * math.exp(e)
    else:
        s = 0.0
        for q in range(m):
            e = wval[q] - best
            if e > cut:
                s += math.exp(e)
        lp = best + math.log(s) if s > 0.0 else -np.inf
        if mode == EM and s > 0.0:
            inv = wn / s
            for q in range(m):
                e = wval[q] - best
                if e > cut:
                    acc[widx[q]] += math.exp(e) * inv
    if mode == LOGP:
        logp[n] = lp
    llws[0] += wn * lp
    llws[1] += wn


@kernel(parallel=True)
def grid_pass(mode, X, sw, lo, h, shape, strides, inv_sig, log_pi, lconst, W, cut, chunk_rows,
              acc, llws, logp):
    """Parallel pass over slots of consecutive chunks; acc (S, M), llws (S, 8) per slot."""
    N, D = X.shape
    n_slots = acc.shape[0]
    n_chunks = (N + chunk_rows - 1) // chunk_rows
    per = (n_chunks + n_slots - 1) // n_slots
    tmax = 1
    wsize = 1
    for d in range(D):
        tmax = max(tmax, 2 * W[d] + 1)
        wsize *= 2 * W[d] + 1
    for s in prange(n_slots):
        terms = np.empty((D, tmax))
        widx = np.empty(wsize, np.int64)
        wval = np.empty(wsize)
        ints = np.empty((3, D), np.int64)
        c_end = min(n_chunks, (s + 1) * per)
        for c in range(s * per, c_end):
            stop = min(N, (c + 1) * chunk_rows)
            for n in range(c * chunk_rows, stop):
                wn = 1.0 if sw.shape[0] == 0 else sw[n]
                _row(mode, X, n, wn, lo, h, shape, strides, inv_sig, log_pi, lconst, W, cut,
                     acc[s], llws[s], logp, terms, widx, wval, ints)
