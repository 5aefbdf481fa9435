"""k-means for the initialisation: k-means++ seeding, Lloyd, hard-assignment statistics.

The distances are NumPy/BLAS products; the per-row work around them (nearest centre, counts and
sums of a Lloyd pass; the candidates' potentials of a k-means++ step) is one small compiled
loop each (``kernels.lloyd_chunk``, ``kernels.kmeanspp_step``).  History: k-means first ran on
the E-step kernels' NEAREST mode (a first diagonal fit compiled a second diagonal pass, ~4 s,
and a Lloyd step took ~30 ms at 60 000 x 50, K = 10); then on NumPy alone, where on small data
the glue -- a dozen NumPy calls of a few microseconds per chunk and step -- was two thirds of
the time (digits, 1797 x 64, K = 10: a Lloyd pass of the four seedings 0.9 ms, now 0.3 ms; the
four k-means++ seedings 14 ms, now 4.5 ms).  The two loops cost ~0.6 s of compilation once
(cached on disk).

Distances: ``||x - c||^2 = ||x - m||^2 + ||c - m||^2 - 2 (x - m).(c - m)`` with ``m`` the
sample's mean (or, for the assignment of the data to the chosen centres, the centres' mean,
which does not depend on how the data are cut into blocks), one GEMM per chunk of rows, in
float64 whatever the data dtype.  Centring on ``m`` means the expansion cancels only the spread
of the data, not its offset.  For k-means++ values below 1e-12 of ``||x - m||^2 + ||c - m||^2``
are exactly 0 (a row equal to a centre: it is never drawn again).  Lloyd compares
``||c - m||^2 - 2 (x - m).(c - m)`` (the row's own term is the same for every centre) and
adds ``||x - m||^2`` to the minimum only.

Several Lloyd runs (the seedings) share every pass: their centres are stacked k-major into one
(K S, D) matrix, one product per chunk gives all runs' distances, and one compiled loop finds
each run's nearest centre and sums.

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
        self._X64 = None
        if self.n_chunks == 1:  # (small data: no thread pool, nothing for BLAS to do)
            self._norms(0, 1)
        else:
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
        """Per-call constants for the centres C (n_c, D): -2 (C - m) and
        ||C - m||^2 + 2 m.(C - m) (squared distance = x . first + second + ||x - m||^2)."""
        Cm = np.asarray(C, dtype=np.float64) - self.m
        return (np.ascontiguousarray(-2.0 * Cm),
                np.einsum("ij,ij->i", Cm, Cm) + 2.0 * (self.m @ Cm.T))

    def rows64(self, c):
        """The rows of chunk c as float64 (a view when X is float64)."""
        Xb = self.X[self.rows(c)]
        return Xb if Xb.dtype == np.float64 else Xb.astype(np.float64)

    def X64(self):
        """The rows as one float64 C-contiguous array (X itself when it already is; a float32
        sample is converted once, not once per pass)."""
        if self._X64 is None:
            self._X64 = np.ascontiguousarray(self.X, dtype=np.float64)
        return self._X64


def kmeans_plusplus(X, sw, K, rng, n_trials=None, dist=None):
    """Greedy k-means++ seeds (K, D) float64 among the rows of X (Arthur & Vassilvitskii, with
    ``2 + log K`` candidates per step as scikit-learn): per step one (N x D) (D x n_trials)
    product and one compiled row loop (``kernels.kmeanspp_step``) that keeps the candidate
    with the lowest potential."""
    N = X.shape[0]
    w = np.ones(N) if sw is None else np.ascontiguousarray(sw, dtype=np.float64)
    if n_trials is None:
        n_trials = 2 + int(math.log(K))
    if dist is None:
        dist = Distances(X, lloyd_chunk_rows(X.shape[1]))
    X64 = dist.X64()
    mind = np.full(N, np.inf)
    cum = np.empty(N)

    def best_of(cand):
        Cm = X64[cand] - dist.m
        P = X64 @ Cm.T
        t, _ = kernels.kmeanspp_step(P, Cm @ dist.m, np.einsum("ij,ij->i", Cm, Cm), dist.xn,
                                     w, mind, cum)
        return cand[t]

    idx = np.empty(K, np.int64)
    idx[0] = best_of(np.array([_weighted_draw(rng, w / w.sum())]))
    for c in range(1, K):
        if cum[-1] > 0:
            cand = np.searchsorted(cum, rng.random(n_trials) * cum[-1])
            cand = np.minimum(cand, N - 1)
        else:  # every row already coincides with a seed
            cand = rng.choice(N, n_trials)
        idx[c] = best_of(cand)
    return np.array(X[idx], dtype=np.float64)


def _weighted_draw(rng, p):
    """``rng.choice(len(p), p=p)``: one index drawn with the probabilities ``p`` (N,) float64
    (non-negative, summing to 1).  For a numpy Generator it is NumPy's own method without its
    argument checks (~30 us, paid by every seeding): one uniform number looked up in the
    normalised cumulative sum, so the same index and the same generator state afterwards
    (tests/test_small_fits.py checks it against ``rng.choice``)."""
    if not isinstance(rng, np.random.Generator):
        return int(rng.choice(p.shape[0], p=p))
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    return int(cdf.searchsorted(rng.random(), side="right"))


def assign(dist, C, w=None):
    """Nearest centre of every row for one set of centres C (K, D) or for S sets at once
    (S, K, D): labels (N,) / (S, N) int64, squared distances (N,) / (S, N), and the (weighted)
    counts nk (K,) / (S, K) and sums s1 (K, D) / (S, K, D) of each centre's rows, added in
    chunk order.  All sets go through one (S K, D) x (D, rows) product per chunk, in one
    compiled call per chunk (``kernels.lloyd_chunk``: nearest centre, counts and sums)."""
    one = C.ndim == 2
    C3 = C[None] if one else C
    S, K, D = C3.shape
    labels, mind, nk_p, s1_p = _assign_chunks(dist, C3, w)
    if dist.n_chunks == 1:  # 0 + x is x (the kernel's sums start at +0, never -0)
        nk, s1 = nk_p[0], s1_p[0]
    else:
        nk = np.zeros(K * S)
        s1 = np.zeros((K * S, D))
        for c in range(dist.n_chunks):  # fixed order
            nk += nk_p[c]
            s1 += s1_p[c]
    nk = np.ascontiguousarray(nk.reshape(K, S).T)
    s1 = np.ascontiguousarray(s1.reshape(K, S, D).transpose(1, 0, 2))
    if one:
        return labels[0], mind[0], nk[0], s1[0]
    return labels, mind, nk, s1


def _assign_chunks(dist, C3, w=None):
    """``assign`` of the S sets C3 (S, K, D), with the counts and sums per chunk: labels
    (S, N), distances (S, N), nk_p (chunks, K S) and s1_p (chunks, K S, D), rows (k, s)."""
    S, K, D = C3.shape
    # centre rows ordered (k, s): the distances of chunk c are (K, S, rows), so each centre
    # index is one contiguous slice across all S sets
    prep = dist.prepare(np.ascontiguousarray(C3.transpose(1, 0, 2)).reshape(K * S, D))
    labels = np.empty((S, dist.N), np.int64)
    mind = np.empty((S, dist.N))
    nk_p = np.empty((dist.n_chunks, K * S))  # the kernel overwrites each chunk's sums
    s1_p = np.empty((dist.n_chunks, K * S, D))

    one = dist.n_chunks == 1  # the labels and distances go straight to the outputs

    def run(c0, c1):
        for c in range(c0, c1):
            sl = dist.rows(c)
            Xb64 = dist.rows64(c)
            B = Xb64.shape[0]
            lab = labels if one else np.empty((S, B), np.int64)
            dmin = mind if one else np.empty((S, B))
            kernels.lloyd_chunk(prep[0] @ Xb64.T, prep[1], dist.xn[sl], Xb64,
                                None if w is None else w[sl], K, S, lab, dmin, nk_p[c], s1_p[c])
            if not one:
                labels[:, sl] = lab
                mind[:, sl] = dmin
    with kernels.blas_single_threaded():
        if one:
            run(0, 1)
        else:
            kernels.run_ranges(run, dist.n_chunks)
    return labels, mind, nk_p, s1_p


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
    mv = np.arange(S)                         # the runs still moving
    prev = np.full((S, dist.N), -1, np.int64)  # each run's labels of its previous pass
    inertia = np.zeros(S)
    iters = np.zeros(S, np.int64)
    for n_iter in range(1, max_iter + 1):
        Cmv = C[mv]
        labels, mind, nk, s1 = assign(dist, Cmv, w)
        filled = nk > 0
        if filled.all():
            new = s1 / nk[:, :, None]
        else:  # (rare) empty clusters
            new = np.where(filled[:, :, None], s1 / np.where(filled, nk, 1.0)[:, :, None], Cmv)
            for j in np.flatnonzero(~filled.all(axis=1)):
                empty = np.flatnonzero(~filled[j])
                far = np.argsort(-(mind[j] if w is None else mind[j] * (w > 0)), kind="stable")
                new[j, empty] = dist.X[far[:empty.size]]
        shift = ((new - Cmv) ** 2).sum(axis=(1, 2))
        C[mv] = new
        inertia[mv] = mind.sum(axis=1) if w is None else mind @ w
        iters[mv] = n_iter
        keep = ~((shift <= tol_abs) | (labels == prev[mv]).all(axis=1))
        prev[mv[keep]] = labels[keep]
        mv = mv[keep]
        if not mv.size:
            break
    return [(C[s].copy(), float(inertia[s]), int(iters[s])) for s in range(S)]


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
    ``g64``), ll = minus the weighted inertia.  Every statistic is added to ``acc`` chunk by
    chunk, in order: a file read in blocks of whole chunks gives the statistics of the array in
    memory bit for bit (sums per block, then added, did not: 1 ulp apart)."""
    K, D = centres.shape
    # chunks of exactly chunk_rows and an expansion centre that does not depend on the block
    dist = Distances(X, chunk_rows, centre=centres.mean(axis=0))
    wv = None if w is None else np.asarray(w, dtype=np.float64)
    labels, mind, nk_p, s1_p = _assign_chunks(dist, centres[None], wv)
    labels, mind = labels[0], mind[0]
    for c in range(dist.n_chunks):  # in chunk order
        sl = dist.rows(c)
        acc.nk += nk_p[c]
        acc.s1 += s1_p[c]
        acc.ll += -float(mind[sl].sum() if wv is None else wv[sl] @ mind[sl])
        acc.ws += float(mind[sl].shape[0] if wv is None else wv[sl].sum())
        lab = labels[sl]
        Xb = np.asarray(X[sl], dtype=np.float64)
        wb = np.ones(Xb.shape[0]) if wv is None else wv[sl]
        if kind == kernels.TIED:
            U = Xb - g64
            acc.s2[0] += (wb[:, None] * U).T @ U
            continue
        Y = centres[lab]
        np.subtract(Xb, Y, out=Y)  # Xb - centres[lab] in one (N, D) array, not two
        if kind == kernels.DIAG:
            onehot = np.zeros((Xb.shape[0], K))
            onehot[np.arange(Xb.shape[0]), lab] = wb
            acc.s2[:, 0, :] += onehot.T @ np.multiply(Y, Y, out=Y)
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
