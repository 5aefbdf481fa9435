"""Kernels of the GMM expansion: fixed Gaussian components on a tensor grid (CPU, Numba).

The components are the nodes of a grid with ``shape[d]`` nodes in dimension d, node j at
``lo[d] + j h[d]``, and one diagonal bandwidth ``sigma`` shared by all of them.  For a row x only
the nodes within ``W[d]`` steps of the nearest node in each dimension are evaluated (the
window): the caller picks ``W`` so that nodes outside it have densities below exp(cut)
(cut = -40) times the nearest node's.  Densities are separable,
``phi_i(x) = exp(lconst) prod_d exp(t_d(j_d))`` with ``t_d(j) = -((x_d - lo_d - j h_d) /
sigma_d)^2 / 2``, so a row costs ``sum_d (2 W_d + 1)`` exponentials plus one product per window
node (the node values are pi_i times products of per-dimension factors).

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

from .. import _shared
from ._jit import kernel

EM, KDE, LOGP = 0, 1, 2

#: The window and factors of a row in one dimension (kernels/_shared.py, shared with the GPU).
_window_factors = kernel()(_shared.window_factors)


@kernel()
def _row(mode, X, n, wn, lo, h, shape, strides, inv_sig, pi, lconst, W, acc, llws, logp,
         terms, widx, wval, ints):
    """One row: window, separable densities, accumulation.  Scratch: terms (D, T) (the
    per-dimension factors), widx/wval (window size,), ints (3, D) int64.

    phi_i(x) / phi_max = prod_d exp(t_d(j_d)) with t_d <= 0; each factor is computed once per
    dimension as exp(t_d - max t_d) (so sum_d (2 W_d + 1) exponentials per row, not one per
    window node) and the node values are products of factors times pi_i."""
    D = X.shape[1]
    first = ints[0]
    count = ints[1]
    odo = ints[2]
    base = 0.0  # sum_d max_j t_d(j): the log of the factor taken out of every node value
    for d in range(D):
        a, c, tmax = _window_factors(X[n, d], lo[d], h[d], shape[d], W[d], inv_sig[d],
                                     terms[d])
        first[d] = a
        count[d] = c
        base += tmax
        odo[d] = 0
    # odometer over the window: node index and pi_i * prod_d factor
    m = 0
    s = 0.0
    while True:
        idx = 0
        f = 1.0
        for d in range(D):
            idx += (first[d] + odo[d]) * strides[d]
            f *= terms[d, odo[d]]
        widx[m] = idx
        wval[m] = f
        s += pi[idx] * f
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
    lp = lconst + base + math.log(s) if s > 0.0 else -np.inf
    if mode == EM:
        if s > 0.0:
            inv = wn / s
            for q in range(m):
                acc[widx[q]] += pi[widx[q]] * wval[q] * inv
    elif mode == KDE:
        scale = wn * math.exp(base)
        for q in range(m):
            acc[widx[q]] += wval[q] * scale
    else:
        logp[n] = lp
    llws[0] += wn * lp
    llws[1] += wn


@kernel(parallel=True)
def grid_pass(mode, X, sw, lo, h, shape, strides, inv_sig, pi, lconst, W, chunk_rows, acc, llws,
              logp):
    """Parallel pass over slots of consecutive chunks; acc (S, M), llws (S, 8) per slot."""
    N, D = X.shape
    n_slots = acc.shape[0]
    n_chunks = (N + chunk_rows - 1) // chunk_rows
    per = (n_chunks + n_slots - 1) // n_slots
    tmax = 1
    wsize = 1
    for d in range(D):  # the window is clipped to the grid: min(2 W + 1, shape) per dimension
        cnt = min(2 * W[d] + 1, shape[d])
        tmax = max(tmax, cnt)
        wsize *= cnt
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
                _row(mode, X, n, wn, lo, h, shape, strides, inv_sig, pi, lconst, W, acc[s],
                     llws[s], logp, terms, widx, wval, ints)
