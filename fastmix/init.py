"""Initial parameters: fastmix's own k-means (k-means++ seeding + Lloyd) and the other methods.

Every method ends the same way: statistics of the full data for some responsibilities (one
pass), then the ordinary M-step.

=====================  ======================================================================
``init_params``        responsibilities used for the first M-step
=====================  ======================================================================
``"kmeans"``           hard assignment of every row to the nearest k-means centre.  k-means
                       (greedy k-means++ seeding, then Lloyd to ``tol`` = 1e-4 of the mean
                       feature variance or 100 iterations; the best of KMEANS_SEEDINGS = 4
                       seedings by inertia) runs on a seeded uniform subsample of at most
                       ``max(KMEANS_SAMPLE, 50 K)`` rows (all rows when fewer); total cost:
                       passes over the subsample and one pass over the data.
``"k-means++"``        hard assignment to the nearest k-means++ seed (seeding on the subsample).
``"random_from_data"`` hard assignment to K distinct rows drawn uniformly.
``"random"``           uniform random responsibilities, normalised per row (drawn chunk by
                       chunk, never the whole N x K matrix).
=====================  ======================================================================

scikit-learn differs for ``"k-means++"`` and ``"random_from_data"``: it initialises from the K
seed rows alone, so every initial covariance is just ``reg_covar`` and the first E-step is
degenerate.  Assigning all rows to the seeds gives data-scaled covariances for one pass.
"""
import math

import numpy as np

from . import kernels
from ._params import GMMParams, m_step, stats_from_kernel

KMEANS_SAMPLE = 2**16
KMEANS_SEEDINGS = 4
RANDOM_BLOCK = 2**16


def _subsample(X, sw, K, rng):
    n_max = max(KMEANS_SAMPLE, 50 * K)
    if X.shape[0] <= n_max:
        return X, sw
    idx = np.sort(rng.choice(X.shape[0], n_max, replace=False))
    return np.ascontiguousarray(X[idx]), (None if sw is None else sw[idx])


def _sqdist(X, centre):
    """||X[n] - centre||^2 (N,) float64.  Plain NumPy: k-means++ runs on the subsample only, and
    a compiled kernel here cost about 1 s of a first fit's JIT time for a few ms of work."""
    diff = X - centre.astype(X.dtype)
    return np.einsum("ij,ij->i", diff, diff, dtype=np.float64)


def kmeans_plusplus(X, sw, K, rng, n_trials=None):
    """Greedy k-means++ seeds (K, D) float64, chosen among the rows of X."""
    N = X.shape[0]
    w = np.ones(N) if sw is None else np.asarray(sw, dtype=np.float64)
    if n_trials is None:
        n_trials = 2 + int(math.log(K))
    first = rng.choice(N, p=w / w.sum())
    centres = np.empty((K, X.shape[1]))
    centres[0] = X[first]
    mind = _sqdist(X, centres[0])
    pot = float(w @ mind)
    for c in range(1, K):
        if pot > 0:
            cum = np.cumsum(w * mind)
            cand = np.searchsorted(cum, rng.random(n_trials) * cum[-1])
            cand = np.minimum(cand, N - 1)
        else:  # every row already coincides with a seed
            cand = rng.choice(N, n_trials)
        dists = [np.minimum(mind, _sqdist(X, X[i])) for i in cand]
        pots = [float(w @ d) for d in dists]
        best = int(np.argmin(pots))
        centres[c] = X[cand[best]]
        mind = dists[best]
        pot = pots[best]
    return centres


def _lloyd(Xs, sws, centres, chunk_rows, max_iter, tol_abs, kind):
    """Lloyd iterations from ``centres``; returns (centres, inertia)."""
    code = kernels.KIND_CODES[kind]
    for _ in range(max_iter):
        kp = kernels.nearest_params(centres, Xs.dtype, code)
        nk, s1, _, _, _ = kernels.nearest_stats(Xs, sws, kp, chunk_rows)
        new = centres.copy()
        filled = nk > 0
        new[filled] = s1[filled] / nk[filled, None]  # an empty cluster keeps its centre
        shift = float(((new - centres) ** 2).sum())
        centres = new
        if shift <= tol_abs:
            break
    kp = kernels.nearest_params(centres, Xs.dtype, code)
    inertia = -kernels.nearest_stats(Xs, sws, kp, chunk_rows)[3]
    return centres, inertia


def kmeans(X, sw, K, rng, chunk_rows, max_iter=100, tol=1e-4, kind="diag",
           n_seedings=KMEANS_SEEDINGS):
    """Lloyd's k-means on a subsample from ``n_seedings`` k-means++ seedings; the centres
    (K, D) float64 of the run with the lowest inertia.  Several seedings cost little (the
    subsample is small) and avoid the merged/split clusters a single seeding often gives."""
    Xs, sws = _subsample(X, sw, K, rng)
    w = None if sws is None else np.asarray(sws, dtype=np.float64)
    mean = np.average(Xs, axis=0, weights=w)
    tol_abs = tol * float(np.mean(np.average((Xs - mean) ** 2, axis=0, weights=w)))
    best = None
    for _ in range(n_seedings):
        run = _lloyd(Xs, sws, kmeans_plusplus(Xs, sws, K, rng), chunk_rows, max_iter, tol_abs,
                     kind)
        if best is None or run[1] < best[1]:
            best = run
    return best[0]


def _assign_to(X, sw, centres, kind, reg_covar, chunk_rows):
    kp = kernels.nearest_params(centres, X.dtype, kernels.KIND_CODES[kind])
    stats = stats_from_kernel(kind, kernels.nearest_stats(X, sw, kp, chunk_rows), kp)
    params = m_step(stats, reg_covar)
    empty = stats.nk <= 0
    if np.any(empty):  # a seed nobody is nearest to (duplicate rows): keep it where it was
        means = params.means.copy()
        means[empty] = centres[empty]
        params = GMMParams(params.weights, means, params.cov)
    return params


def _random_resp(X, sw, K, kind, rng, reg_covar, chunk_rows):
    N, D = X.shape
    centre = np.average(X, axis=0, weights=sw).astype(np.float64)
    kp = kernels.nearest_params(np.repeat(centre[None, :], K, axis=0), X.dtype,
                                kernels.KIND_CODES[kind])
    total = 0
    for start in range(0, N, RANDOM_BLOCK):
        stop = min(N, start + RANDOM_BLOCK)
        R = rng.uniform(size=(stop - start, K))
        R /= R.sum(axis=1, keepdims=True)
        out = kernels.resp_stats(X[start:stop], None if sw is None else sw[start:stop], R, kp,
                                 chunk_rows)
        total = total + stats_from_kernel(kind, out, kp)
    return m_step(total, reg_covar)


def initial_params(X, sw, K, kind, method, rng, reg_covar, chunk_rows):
    """GMMParams from one of the methods in the module docstring."""
    if method == "kmeans":
        centres = kmeans(X, sw, K, rng, chunk_rows, kind=kind)
        return _assign_to(X, sw, centres, kind, reg_covar, chunk_rows)
    if method == "k-means++":
        Xs, sws = _subsample(X, sw, K, rng)
        return _assign_to(X, sw, kmeans_plusplus(Xs, sws, K, rng), kind, reg_covar, chunk_rows)
    if method == "random_from_data":
        # K distinct rows, uniformly among those with positive weight
        pool = np.arange(X.shape[0]) if sw is None else np.flatnonzero(sw > 0)
        if pool.shape[0] < K:
            raise ValueError(f"init_params='random_from_data' needs at least n_components={K} "
                             f"rows with positive sample_weight, got {pool.shape[0]}")
        idx = pool[rng.choice(pool.shape[0], size=K, replace=False)]
        return _assign_to(X, sw, X[idx].astype(np.float64), kind, reg_covar, chunk_rows)
    if method == "random":
        return _random_resp(X, sw, K, kind, rng, reg_covar, chunk_rows)
    raise ValueError(f"unknown init_params {method!r}")
