"""k-means for the initialisation, on BLAS: k-means++ seeding, Lloyd, hard-assignment statistics.

Everything here is NumPy (matrix products and ``argmin``), so the default initialisation
compiles nothing: before, k-means ran on the E-step kernels' NEAREST mode, which made a first
diagonal fit compile the diagonal row loop besides the GEMM one (~4 s) and a first full fit
compile the diagonal pass besides the full one, and its row loop took ~30 ms per Lloyd step at
60 000 x 50, K = 10 (now ~5 ms).

Distances: ``||x - c||^2 = ||x - m||^2 + ||c - m||^2 - 2 (x - m).(c - m)`` with ``m`` the
sample's mean (or, for the assignment of the data to the chosen centres, the centres' mean,
which does not depend on how the data are cut into blocks), one GEMM per chunk of rows, in
float64 whatever the data dtype.  Centring on ``m`` means the expansion cancels only the spread
of the data, not its offset.  For k-means++ values below 1e-12 of ``||x - m||^2 + ||c - m||^2``
are exactly 0 (a row equal to a centre: it is never drawn again).  Lloyd compares
``||c - m||^2 - 2 (x - m).(c - m)`` (the row's own term is the same for every centre) and
adds ``||x - m||^2`` to the minimum only.

Several Lloyd runs (the seedings) share every pass: their centres are stacked k-major into one
(K S, D) matrix, one product per chunk gives all runs' distances, and the nearest centre is K
contiguous element-wise passes over (S, rows).

Determinism: rows are cut into fixed chunks of ``chunk_rows``; every chunk's labels and partial
sums are computed by one call from that chunk alone, on the threads of
``kernels.run_ranges`` with BLAS single-threaded, and the partials are added in chunk order.
Results therefore do not depend on the number of threads.
"""
import math

import numpy as np

from . import kernels


def lloyd_chunk_rows(D):
    """Rows per chunk for k-means on an in-memory sample: ~256 KiB of float64 rows, between
    1024 and 8192 rows (larger chunks than the E-step's: a Lloyd step costs microseconds of
    BLAS per chunk, so the per-chunk Python work must stay small; small enough that the
    default 8192-row Lloyd sample still gives every thread chunks)."""
    return int(max(1024, min(8192, 2**15 // max(1, D))))


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
        -2 (C - m) and ||C - m||^2 + 2 m.(C - m)."""
        Cm = np.asarray(C, dtype=np.float64) - self.m
        cn = np.einsum("ij,ij->i", Cm, Cm)
        mc = self.m @ Cm.T
        return (np.ascontiguousarray(Cm.T), cn, mc, np.ascontiguousarray(-2.0 * Cm),
                cn + 2.0 * mc)

    def rows64(self, c):
        """The rows of chunk c as float64 (a view when X is float64)."""
        Xb = self.X[self.rows(c)]
        return Xb if Xb.dtype == np.float64 else Xb.astype(np.float64)

    def chunk_dist_t(self, c, prep, Xb64=None):
        """(n_c, rows of chunk c) squared distances *less each row's own ||x - m||^2* (a
        constant per row, so the nearest centre is the same), float64: the layout in which the
        nearest centre of each row is a few contiguous element-wise passes.  Add
        ``xn[rows]`` and clip at 0 for the distances themselves."""
        Cm2, c0 = prep[3], prep[4]
        out = Cm2 @ (self.rows64(c) if Xb64 is None else Xb64).T
        out += c0[:, None]
        return out

    def chunk_dist(self, c, prep):
        """(rows of chunk c, n_c) squared distances, float64; values below 1e-12 of the
        expansion's scale are exactly 0 (a row equal to a centre: k-means++ relies on it)."""
        CT, cn, mc = prep[:3]
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
    """(argmin, min) over axis 0 of dt (K, M): the nearest of K centres for each of M
    columns (rows of the data, for S sets of centres side by side); the first index wins ties,
    as ``np.argmin``.  For few centres K contiguous passes are ~2x faster than ``np.argmin``."""
    K, M = dt.shape
    if K > 32:
        lab = np.argmin(dt, axis=0)
        return lab, np.take_along_axis(dt, lab[None, :], axis=0)[0]
    best = dt[0].copy()
    lab = np.zeros(M, np.int64)
    better = np.empty(M, bool)
    for k in range(1, K):
        np.less(dt[k], best, out=better)
        np.copyto(lab, k, where=better)
        np.minimum(best, dt[k], out=best)
    return lab, best


def assign(dist, C, w=None, want_sums=True):
    """Nearest centre of every row for one set of centres C (K, D) or for S sets at once
    (S, K, D): labels (N,) / (S, N) int64, squared distances (N,) / (S, N), and -- with
    ``want_sums`` -- the (weighted) counts nk (K,) / (S, K) and sums s1 (K, D) / (S, K, D) of
    each centre's rows, added in chunk order.  All sets go through one (S K, D) x (D, rows)
    product per chunk."""
    one = C.ndim == 2
    C3 = C[None] if one else C
    S, K, D = C3.shape
    # centre rows ordered (k, s): the distances of chunk c are (K, S, rows), so each centre
    # index is one contiguous slice across all S sets
    prep = dist.prepare(np.ascontiguousarray(C3.transpose(1, 0, 2)).reshape(K * S, D))
    labels = np.empty((S, dist.N), np.int64)
    mind = np.empty((S, dist.N))
    nk_p = np.zeros((dist.n_chunks, K * S))
    s1_p = np.zeros((dist.n_chunks, K * S, D)) if want_sums else None
    sets = np.arange(S)[:, None]

    def run(c0, c1):
        for c in range(c0, c1):
            sl = dist.rows(c)
            Xb64 = dist.rows64(c)
            B = Xb64.shape[0]
            lab, dmin = _nearest(dist.chunk_dist_t(c, prep, Xb64).reshape(K, S * B))
            lab = lab.reshape(S, B)
            dmin = dmin.reshape(S, B) + dist.xn[sl]
            labels[:, sl] = lab
            mind[:, sl] = np.maximum(dmin, 0.0)
            if want_sums:
                flat = (lab * S + sets).ravel()  # row (k, s) of the (K S, D) sums
                wb = None if w is None else np.tile(w[sl], S)
                nk_p[c] = np.bincount(flat, wb, minlength=K * S)
                onehot_t = np.zeros((K * S, B))
                onehot_t[flat, np.tile(np.arange(B), S)] = 1.0 if wb is None else wb
                s1_p[c] = onehot_t @ Xb64
    with kernels.blas_single_threaded():
        kernels.run_ranges(run, dist.n_chunks)
    if want_sums:
        nk = np.zeros(K * S)
        s1 = np.zeros((K * S, D))
        for c in range(dist.n_chunks):  # fixed order
            nk += nk_p[c]
            s1 += s1_p[c]
        nk = np.ascontiguousarray(nk.reshape(K, S).T)
        s1 = np.ascontiguousarray(s1.reshape(K, S, D).transpose(1, 0, 2))
    else:
        nk = s1 = None
    if one:
        return labels[0], mind[0], None if nk is None else nk[0], None if s1 is None else s1[0]
    return labels, mind, nk, s1


def lloyd_many(dist, sw, starts, max_iter=300, tol_abs=0.0):
    """Lloyd iterations from each of the centre sets ``starts`` (list of (K, D)), all runs
    sharing each pass over the rows (``assign`` of the runs still moving); a run stops when its
    squared centre shift is at most ``tol_abs`` or none of its labels changes.  Returns a list
    of (centres, inertia of the run's last assignment, iterations).  An empty cluster is moved
    to the row farthest from its centre (the next farthest for the next empty one), as
    scikit-learn does."""
    w = None if sw is None else np.asarray(sw, dtype=np.float64)
    C = np.array(starts, dtype=np.float64)
    S = C.shape[0]
    moving = list(range(S))
    prev = [None] * S
    out = [None] * S
    for n_iter in range(1, max_iter + 1):
        labels, mind, nk, s1 = assign(dist, C[moving], w)
        still = []
        for j, s in enumerate(moving):
            new = C[s].copy()
            filled = nk[j] > 0
            new[filled] = s1[j][filled] / nk[j][filled, None]
            empty = np.flatnonzero(~filled)
            if empty.size:
                far = np.argsort(-(mind[j] if w is None else mind[j] * (w > 0)), kind="stable")
                new[empty] = dist.X[far[:empty.size]]
            shift = float(((new - C[s]) ** 2).sum())
            C[s] = new
            out[s] = (C[s].copy(), float(mind[j].sum() if w is None else w @ mind[j]), n_iter)
            if not (shift <= tol_abs or (prev[s] is not None and np.array_equal(labels[j], prev[s]))):
                still.append(s)
                prev[s] = labels[j]
        moving = still
        if not moving:
            break
    return out


def lloyd(dist, sw, centres, max_iter=300, tol_abs=0.0):
    """Lloyd iterations from ``centres`` (``lloyd_many`` with one start): (centres, inertia of
    the last assignment, iterations)."""
    return lloyd_many(dist, sw, [centres], max_iter, tol_abs)[0]


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
    (a ``kernels.Accumulator``), in the layout of the E-step statistics for the covariance
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
