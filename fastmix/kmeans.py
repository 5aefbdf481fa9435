"""k-means for the initialisation, on BLAS: k-means++ seeding, Lloyd, hard-assignment statistics.

Everything here is NumPy (matrix products and ``argmin``), so the default initialisation
compiles nothing: before, k-means ran on the E-step kernels' NEAREST mode, which made a first
diagonal fit compile the diagonal row loop besides the GEMM one (~4 s) and a first full fit
compile the diagonal pass besides the full one, and its row loop took ~30 ms per Lloyd step at
60 000 x 50, K = 10 (now ~5 ms).

Distances: ``||x - c||^2 = ||x - m||^2 + ||c - m||^2 - 2 (x - m).(c - m)`` with ``m`` the
sample's mean, one GEMM per chunk of rows, in float64 whatever the data dtype.  Centring on
``m`` means the expansion cancels only the spread of the data, not its offset; values below
1e-12 of ``||x - m||^2 + ||c - m||^2`` are exactly 0 (a row equal to a centre).

Determinism: rows are cut into fixed chunks of ``chunk_rows``; every chunk's labels and partial
sums are computed by one call from that chunk alone, on the threads of
``kernels.run_ranges`` with BLAS single-threaded, and the partials are added in chunk order.
Results therefore do not depend on the number of threads.
"""
import math

import numpy as np

from . import kernels

def lloyd_chunk_rows(D):
    """Rows per chunk for k-means on an in-memory sample: ~1 MiB of float64 rows, between 2048
    and 16384 rows (larger chunks than the E-step's: a Lloyd step costs microseconds of BLAS
    per chunk, so the per-chunk Python work must stay small)."""
    return int(max(2048, min(16384, 2**17 // max(1, D))))


class Distances:
    """Squared distances from the rows of X (N, D) to centres, chunk by chunk (module
    docstring).  ``chunk_rows`` fixes the chunks (and with them every rounding); ``centre`` is
    the point the expansion is taken about (default: the mean of X)."""

    def __init__(self, X, chunk_rows, centre=None):
        self.X = X
        self.N, self.D = X.shape
        self.m = (np.mean(X, axis=0, dtype=np.float64) if centre is None
                  else np.asarray(centre, dtype=np.float64))
        self.chunk = int(max(1, chunk_rows))
        self.n_chunks = -(-self.N // self.chunk)
        self.xn = np.empty(self.N)
        with kernels.blas_single_threaded():
            kernels.run_ranges(self._norms, self.n_chunks)

    def rows(self, c):
        return slice(c * self.chunk, min(self.N, (c + 1) * self.chunk))

    def _norms(self, c0, c1):
        for c in range(c0, c1):
            sl = self.rows(c)
            d = np.asarray(self.X[sl], dtype=np.float64) - self.m
            self.xn[sl] = np.einsum("ij,ij->i", d, d)

    def prepare(self, C):
        """Per-call constants for the centres C (n_c, D): (C - m)^T, ||C - m||^2, m.(C - m),
        C - m."""
        Cm = np.asarray(C, dtype=np.float64) - self.m
        return (np.ascontiguousarray(Cm.T), np.einsum("ij,ij->i", Cm, Cm), self.m @ Cm.T,
                np.ascontiguousarray(Cm))

    def rows64(self, c):
        """The rows of chunk c as float64 (a view when X is float64)."""
        Xb = self.X[self.rows(c)]
        return Xb if Xb.dtype == np.float64 else Xb.astype(np.float64)

    def chunk_dist_t(self, c, prep, Xb64=None):
        """(n_c, rows of chunk c) squared distances, float64, clipped at 0: the layout in
        which the nearest centre of each row is a few contiguous element-wise passes."""
        _, cn, mc, Cm = prep
        out = Cm @ (self.rows64(c) if Xb64 is None else Xb64).T
        out -= mc[:, None]
        out *= -2.0
        out += cn[:, None]
        out += self.xn[self.rows(c)]
        np.maximum(out, 0.0, out=out)
        return out

    def chunk_dist(self, c, prep):
        """(rows of chunk c, n_c) squared distances, float64; values below 1e-12 of the
        expansion's scale are exactly 0 (a row equal to a centre: k-means++ relies on it)."""
        CT, cn, mc, _ = prep
        out = self.rows64(c) @ CT
        out -= mc
        scale = self.xn[self.rows(c), None] + cn[None, :]
        out *= -2.0
        out += scale
        out[out <= 1e-12 * scale] = 0.0
        return out

    def to(self, C):
        """(N, n_c) squared distances to the rows of C."""
        prep = self.prepare(C)
        out = np.empty((self.N, C.shape[0]))

        def run(c0, c1):
            for c in range(c0, c1):
                out[self.rows(c)] = self.chunk_dist(c, prep)
        with kernels.blas_single_threaded():
            kernels.run_ranges(run, self.n_chunks)
        return out


def kmeans_plusplus(X, sw, K, rng, n_trials=None, dist=None):
    """Greedy k-means++ seeds (K, D) float64 among the rows of X (Arthur & Vassilvitskii, with
    ``2 + log K`` candidates per step as scikit-learn): one (N x D) (D x n_trials) product per
    step."""
    N = X.shape[0]
    w = np.ones(N) if sw is None else np.asarray(sw, dtype=np.float64)
    if n_trials is None:
        n_trials = 2 + int(math.log(K))
    if dist is None:
        dist = Distances(X, lloyd_chunk_rows(X.shape[1]))
    first = rng.choice(N, p=w / w.sum())
    centres = np.empty((K, X.shape[1]))
    centres[0] = X[first]
    mind = dist.to(X[[first]])[:, 0]
    pot = float(w @ mind)
    for c in range(1, K):
        if pot > 0:
            cum = np.cumsum(w * mind)
            cand = np.searchsorted(cum, rng.random(n_trials) * cum[-1])
            cand = np.minimum(cand, N - 1)
        else:  # every row already coincides with a seed
            cand = rng.choice(N, n_trials)
        dists = np.minimum(mind[:, None], dist.to(X[cand]))
        pots = w @ dists
        best = int(np.argmin(pots))
        centres[c] = X[cand[best]]
        mind = dists[:, best]
        pot = float(pots[best])
    return centres


def _nearest(dt):
    """(argmin, min) over the rows of dt (K, B) for each column; the first index wins ties, as
    ``np.argmin``.  For few centres K contiguous passes are several times faster than
    ``np.argmin(axis=0)`` (or ``argmin(axis=1)`` of the transpose)."""
    K, B = dt.shape
    if K > 32:
        lab = np.argmin(dt, axis=0)
        return lab, dt[lab, np.arange(B)]
    best = dt[0].copy()
    lab = np.zeros(B, np.int64)
    better = np.empty(B, bool)
    for k in range(1, K):
        np.less(dt[k], best, out=better)
        np.copyto(lab, k, where=better)
        np.minimum(best, dt[k], out=best)
    return lab, best


def assign(dist, C, w=None, want_sums=True):
    """Nearest centre of every row: (labels (N,) int64, squared distance (N,), nk (K,),
    s1 (K, D)) -- nk and s1 the (weighted) counts and sums of each centre's rows, added in
    chunk order (None without ``want_sums``)."""
    K, D = C.shape
    prep = dist.prepare(C)
    labels = np.empty(dist.N, np.int64)
    mind = np.empty(dist.N)
    nk_p = np.zeros((dist.n_chunks, K))
    s1_p = np.zeros((dist.n_chunks, K, D)) if want_sums else None

    def run(c0, c1):
        for c in range(c0, c1):
            sl = dist.rows(c)
            Xb64 = dist.rows64(c)
            lab, dmin = _nearest(dist.chunk_dist_t(c, prep, Xb64))
            labels[sl] = lab
            mind[sl] = dmin
            if want_sums:
                wb = None if w is None else w[sl]
                nk_p[c] = np.bincount(lab, wb, minlength=K)
                onehot_t = np.zeros((K, lab.shape[0]))
                onehot_t[lab, np.arange(lab.shape[0])] = 1.0 if wb is None else wb
                s1_p[c] = onehot_t @ Xb64
    with kernels.blas_single_threaded():
        kernels.run_ranges(run, dist.n_chunks)
    if not want_sums:
        return labels, mind, None, None
    nk = np.zeros(K)
    s1 = np.zeros((K, D))
    for c in range(dist.n_chunks):  # fixed order
        nk += nk_p[c]
        s1 += s1_p[c]
    return labels, mind, nk, s1


def lloyd(dist, sw, centres, max_iter=300, tol_abs=0.0):
    """Lloyd iterations from ``centres`` until the squared centre shift is at most ``tol_abs``
    or no label changes; returns (centres, inertia of the last assignment, iterations).  An empty cluster is moved to
    the row farthest from its centre (the next farthest for the next empty one), as
    scikit-learn does."""
    w = None if sw is None else np.asarray(sw, dtype=np.float64)
    prev = None
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        labels, mind, nk, s1 = assign(dist, centres, w)
        new = centres.copy()
        filled = nk > 0
        new[filled] = s1[filled] / nk[filled, None]
        empty = np.flatnonzero(~filled)
        if empty.size:
            far = np.argsort(-(mind if w is None else mind * (w > 0)), kind="stable")
            new[empty] = dist.X[far[:empty.size]]
        shift = float(((new - centres) ** 2).sum())
        centres = new
        if shift <= tol_abs or (prev is not None and np.array_equal(labels, prev)):
            break
        prev = labels
    inertia = float(mind.sum() if w is None else w @ mind)  # of the last assignment
    return centres, inertia, n_iter


def variances(dist, w):
    """Per-feature (weighted) variances (D,) of the rows of ``dist.X``."""
    mean = np.average(dist.X, axis=0, weights=w).astype(np.float64)
    acc = np.zeros(dist.D)
    for c in range(dist.n_chunks):
        sl = dist.rows(c)
        d2 = (np.asarray(dist.X[sl], dtype=np.float64) - mean) ** 2
        acc += d2.sum(axis=0) if w is None else w[sl] @ d2
    return acc / (dist.N if w is None else w.sum())


def hard_stats(X, w, centres, kind, g64, chunk_rows, acc):
    """Add the statistics of hard assignments to the nearest of ``centres`` (K, D) to ``acc``
    (a ``kernels.Accumulator``), in the layout of ``kernels.nearest_stats`` for the covariance
    ``kind`` (a ``kernels.KIND_CODES`` value): second moments centred on each centre (tied: on
    ``g64``), ll = minus the weighted inertia.  The rows are taken chunk by chunk in order."""
    K, D = centres.shape
    # chunks of exactly chunk_rows and an expansion centre that does not depend on the block:
    # a file read in blocks of whole chunks gives the same statistics as the array in memory
    dist = Distances(X, chunk_rows, centre=centres.mean(axis=0))
    wv = None if w is None else np.asarray(w, dtype=np.float64)
    labels, mind, nk, s1 = assign(dist, centres, wv)
    acc.nk += nk
    acc.s1 += s1
    acc.ll += -float(mind.sum() if wv is None else wv @ mind)
    acc.ws += float(dist.N if wv is None else wv.sum())
    for c in range(dist.n_chunks):  # second moments, in chunk order
        sl = dist.rows(c)
        lab = labels[sl]
        Xb = np.asarray(X[sl], dtype=np.float64)
        wb = np.ones(Xb.shape[0]) if wv is None else wv[sl]
        if kind == kernels.TIED:
            U = Xb - g64
            acc.s2[0] += (wb[:, None] * U).T @ U
            continue
        Y = Xb - centres[lab]
        if kind == kernels.DIAG:
            onehot = np.zeros((Xb.shape[0], K))
            onehot[np.arange(Xb.shape[0]), lab] = wb
            acc.s2[:, 0, :] += onehot.T @ (Y * Y)
        elif kind == kernels.SPHERICAL:
            acc.s2[:, 0, 0] += np.bincount(lab, wb * np.einsum("ij,ij->i", Y, Y), minlength=K)
        else:  # FULL
            order = np.argsort(lab, kind="stable")
            bounds = np.searchsorted(lab[order], np.arange(K + 1))
            for k in range(K):
                rows = order[bounds[k]:bounds[k + 1]]
                if rows.size:
                    Yk = Y[rows]
                    acc.s2[k] += (wb[rows, None] * Yk).T @ Yk
    return acc
