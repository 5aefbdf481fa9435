"""k-means++ seeding kernels (CPU, Numba).  Lloyd's iterations reuse the ``pass_*`` kernels in
NEAREST mode (cpu_estep), so the assignment and accumulation code exists once."""
import numpy as np
from numba import prange

from ._jit import kernel


@kernel(parallel=True)
def sqdist_to(X, centre, out):
    """out[n] = ||X[n] - centre||^2 in float64.  X (N, D), centre (D,) float64, out (N,)."""
    N, D = X.shape
    for n in prange(N):  # iteration n owns out[n]
        acc = 0.0
        for d in range(D):
            t = np.float64(X[n, d]) - centre[d]
            acc += t * t
        out[n] = acc


@kernel(parallel=True)
def candidate_potentials(X, sw, cands, mind):
    """For each candidate centre c (T, D): sum_n w_n min(mind[n], ||X[n] - c||^2).

    sw is (N,) float64 or (0,) for unit weights.  Sums run sequentially over rows, so the result
    does not depend on the thread count.
    """
    N, D = X.shape
    T = cands.shape[0]
    out = np.zeros(T)
    has_w = sw.shape[0] > 0
    for t in prange(T):  # iteration t owns out[t]
        acc = 0.0
        for n in range(N):
            dist = 0.0
            for d in range(D):
                v = np.float64(X[n, d]) - cands[t, d]
                dist += v * v
            w = sw[n] if has_w else 1.0
            acc += w * min(dist, mind[n])
        out[t] = acc
    return out
