"""Initial parameters: fastmix's own k-means (k-means++ seeding + Lloyd) and the other methods.

Every method ends the same way: statistics of the full data for some responsibilities (one
pass), then the ordinary M-step.

=====================  ======================================================================
``init_params``        responsibilities used for the first M-step
=====================  ======================================================================
``"kmeans"``           hard assignment of every row to the nearest k-means centre, the
                       k-means chosen among KMEANS_SEEDINGS = 4 runs (greedy k-means++
                       seeding, then Lloyd to KMEANS_TOL = 1e-3 of the mean feature variance
                       or KMEANS_MAX_ITER = 30 iterations) by the log-likelihood of the
                       Gaussian mixture each one starts (see "Choosing the k-means run").
                       k-means runs on a seeded uniform subsample of at most
                       ``max(KMEANS_LLOYD_ROWS, 50 K)`` rows, the choice on one of at most
                       ``max(KMEANS_SAMPLE, 50 K)`` rows (all rows when fewer); total cost:
                       passes over the subsamples and one pass over the data.
``"k-means++"``        hard assignment to the nearest k-means++ seed (seeding on the subsample).
``"random_from_data"`` hard assignment to K distinct rows drawn uniformly.
``"random"``           uniform random responsibilities, normalised per row (drawn chunk by
                       chunk, never the whole N x K matrix).
=====================  ======================================================================

scikit-learn differs for ``"k-means++"`` and ``"random_from_data"``: it initialises from the K
seed rows alone, so every initial covariance is just ``reg_covar`` and the first E-step is
degenerate.  Assigning all rows to the seeds gives data-scaled covariances for one pass.

Data come as a ``io.Stream`` (from memory or disk).  The subsample is drawn so that a file
gives exactly the model the same data in memory gives:

* row count known (arrays, ``.npy``, HDF5, Zarr, Parquet): the same seeded uniform choice of row
  indices as for an array, read with ``Stream.take`` (one ``pread`` per row for ``.npy``; one
  pass for formats without random access) -- bit-identical to the in-memory fit;
* row count unknown (CSV, iterators): a seeded reservoir sample (Algorithm R, vectorised per
  block) in one pass, which also counts and checks the rows.  The sample is uniform but not the
  one an in-memory fit would draw.

Passes over the data for ``"kmeans"``: (0 or 1 for the sample) + 1 for the assignment.  k-means
itself runs in memory on the sample.

Choosing the k-means run.  The k-means solution with the lowest inertia is not the best start
for EM: on scikit-learn's digits (K = 10, full covariances) the best of 4 seedings by inertia
ended EM at a mean log-likelihood of -12.68 over 6 x 4 runs, a single seeding at -11.61 and
scikit-learn at -11.50, while the best of 4 by the log-likelihood of the mixture each run
starts (its hard-assignment M-step, scored by one E-step on the sample) ended at -9.83; on
breast cancer 0.122 / 0.140 / 0.146 / 0.146, on digits diag -23.03 / -21.65 / -22.14 / -19.94;
on wine, iris and generated data all four agree within 0.05 (``bench/e2e.py`` has the panel).
So every seeding's centres are turned into a mixture on the sample and the one with the highest
log-likelihood wins: one hard-assignment pass and one E-step on the sample per seeding.
Runs that end on the same centres (in another order) are scored once: on small data most
seedings meet (iris, K = 3: 2.5 distinct results of 4 on average over 10 seeds; digits, K = 10:
always 4), and the scoring was a third of a small fit's time.
Lloyd itself runs on at most ``max(KMEANS_LLOYD_ROWS, 50 K)`` of the sample's rows (50 or more
rows per centre), which bounds the cost of the four seedings whatever N; the choice and the
final assignment use the larger sample and the data.
The four Lloyd runs share their passes (one product per chunk for every run still moving).
Lloyd stops earlier than scikit-learn's KMeans (1e-3 of the mean variance instead of 1e-4, at
most 30 iterations instead of 300): EM refines the centres anyway, and on the panel of
``bench/e2e.py`` the final log-likelihoods were the same or higher with ~40 % less k-means time.

``covariance_type="lowrank"`` (mixtures of factor analysers): the method above gives weights,
means and per-feature variances (as for "diag"); then each component's loadings come from a PCA
of the subsample (the k-means sample; drawn for the other methods), each row weighted by its
responsibility under that diagonal model: ``W = U_q (Lambda_q - sigma^2)^1/2`` with sigma^2 the
mean variance left outside the q leading directions (Tipping & Bishop's maximum-likelihood
PPCA), columns floored at 1/10 of sigma so that none starts at exactly zero (a zero column
stays zero under EM).  Noise: sigma^2 (isotropic) or the component's variances minus
diag(W W^T), floored at 1 % of them.  The PCA is a randomised SVD (Halko et al.: q + 10 random
directions, 4 power iterations) when D > 4 (q + 10), an exact SVD otherwise.  A component with
fewer than q weighted sample rows gets random directions orthogonal to those it has (documented
fallback, not an error).
"""
import math
import warnings

import numpy as np

from . import kernels
from . import kmeans as _km
from ._params import DegenerateComponentWarning, GMMParams, m_step, stats_from_kernel, warn_at_caller
from ._validation import first_nonfinite_row
from .io import as_stream

kmeans_plusplus = _km.kmeans_plusplus

KMEANS_SAMPLE = 2**16
KMEANS_SEEDINGS = 4
KMEANS_MAX_ITER = 30
#: Lloyd stops when the centres move by less than this fraction of the mean feature variance.
KMEANS_TOL = 1e-3
#: Rows of the subsample Lloyd runs on (at least 50 per centre).
KMEANS_LLOYD_ROWS = 2**13
#: The k-means runs' scoring E-steps run side by side on the threads from this many
#: sample entries times K (digits, 1797 x 64, K = 10: 1.2e6; breast cancer 569 x 30, K = 2: 3.4e4).
SCORE_THREADS_MIN = 2**17
#: Temporary memory of one k-means++ distance evaluation (the sample is up to 65 536 x D).
SQDIST_BLOCK_BYTES = 8 * 2**20


def _weights_at(data, idx, w_rows=None):
    """Weights of the rows ``idx``: from rows read with them, an in-memory array, or None."""
    if w_rows is not None:
        return w_rows
    if data.weights is None:
        return None
    if isinstance(data.weights, np.ndarray):
        return data.weights[idx]
    out = np.empty((len(idx), 1))
    for i, r in enumerate(idx):
        data.weights.read_rows(int(r), int(r) + 1, out[i:i + 1])
    return out[:, 0]


def _gather(data, idx):
    """Rows ``idx`` (sorted) and their weights, by random access or one pass."""
    if getattr(data, "is_dask", False):
        return data.gather(idx)
    if data.source.random_access and not data.source.has_weights:
        X = data.take(idx)
        return X, _weights_at(data, idx)
    parts, wparts = [], []
    for start, Xb, wb in data.blocks():
        lo, hi = np.searchsorted(idx, [start, start + Xb.shape[0]])
        parts.append(np.array(Xb[idx[lo:hi] - start]))
        if wb is not None:
            wparts.append(np.array(wb[idx[lo:hi] - start]))
    X = np.concatenate(parts) if parts else np.empty((0, data.n_features), data.dtype)
    return X, (np.concatenate(wparts) if wparts else None)


def _reservoir(data, n, rng, positive_only=False):
    """Uniform sample of ``n`` rows (all rows when fewer) in one pass: Algorithm R, vectorised
    per block.  Returns (X, w, idx) with rows in data order."""
    D = data.n_features
    res = np.empty((n, D), data.dtype)
    resw = np.empty(n) if data.weighted else None
    resi = np.empty(n, np.int64)
    seen = 0
    for start, Xb, wb in data.blocks():
        rows = np.arange(start, start + Xb.shape[0])
        if positive_only and wb is not None:
            keep = wb > 0
            Xb, wb, rows = Xb[keep], wb[keep], rows[keep]
        m = Xb.shape[0]
        fill = min(m, max(0, n - seen))  # the reservoir is not full yet: take rows as they come
        res[seen:seen + fill] = Xb[:fill]
        resi[seen:seen + fill] = rows[:fill]
        if resw is not None:
            resw[seen:seen + fill] = wb[:fill]
        if fill < m:
            pos = seen + np.arange(fill, m)  # 0-based stream position of each remaining row
            j = rng.integers(0, pos + 1)
            hit = np.flatnonzero(j < n)
            # later rows overwrite earlier ones drawing the same slot, as the sequential algorithm
            slots = j[hit]
            _, last = np.unique(slots[::-1], return_index=True)
            chosen = hit[::-1][last]
            res[j[chosen]] = Xb[fill:][chosen]
            resi[j[chosen]] = rows[fill:][chosen]
            if resw is not None:
                resw[j[chosen]] = wb[fill:][chosen]
        seen += m
    k = min(seen, n)
    order = np.argsort(resi[:k], kind="stable")
    return res[:k][order], (None if resw is None else resw[:k][order]), resi[:k][order]


def _check_sample(data, Xs, idx):
    bad = first_nonfinite_row(Xs)
    if bad >= 0:
        row = int(idx[bad])
        raise ValueError(f"{data.name}: NaN or infinity in chunk {row // data.chunk_rows} (rows "
                         f"of {data.chunk_rows}), row {row}: {Xs[bad].tolist()[:8]}")


def _subsample(data, K, rng):
    """The k-means sample (Xs, sws): at most max(KMEANS_SAMPLE, 50 K) rows (module docstring)."""
    n_max = max(KMEANS_SAMPLE, 50 * K)
    X = data.in_memory
    if X is not None:
        sw = data.weights
        if X.shape[0] <= n_max:
            return X, sw
        idx = np.sort(rng.choice(X.shape[0], n_max, replace=False))
        return np.ascontiguousarray(X[idx]), (None if sw is None else sw[idx])
    N = data.n_rows
    if N is None:
        Xs, sws, idx = _reservoir(data, n_max, rng)
    else:
        idx = np.arange(N) if N <= n_max else np.sort(rng.choice(N, n_max, replace=False))
        Xs, sws = _gather(data, idx)
        _check_sample(data, Xs, idx)
    return Xs, sws


def kmeans_runs(Xs, sws, K, rng, chunk_rows, max_iter=KMEANS_MAX_ITER, tol=None,
                n_seedings=KMEANS_SEEDINGS):
    """Lloyd's k-means from ``n_seedings`` greedy k-means++ seedings on (a uniform subsample of
    at most ``max(KMEANS_LLOYD_ROWS, 50 K)`` rows of) the in-memory sample ``Xs``: a list of
    (centres (K, D) float64, inertia) pairs, one per seeding."""
    n = Xs.shape[0]
    m = max(KMEANS_LLOYD_ROWS, 50 * K)
    if n > m:
        idx = np.sort(rng.choice(n, m, replace=False))
        Xs = np.ascontiguousarray(Xs[idx])
        sws = None if sws is None else sws[idx]
    w = None if sws is None else np.asarray(sws, dtype=np.float64)
    dist = _km.Distances(Xs, _km.lloyd_chunk_rows(Xs.shape[1]))
    tol_abs = (KMEANS_TOL if tol is None else tol) * float(np.mean(_km.variances(dist, w)))
    # one generator per seeding, drawn up front: the seedings run side by side on the threads
    # (each one's passes then run in its own thread) and give the same result on any number
    draw = rng.integers if hasattr(rng, "integers") else rng.randint
    child = [np.random.default_rng(int(s)) for s in draw(0, 2**31 - 1, size=n_seedings)]
    seeds = [None] * n_seedings

    def run(i0, i1):
        for i in range(i0, i1):
            seeds[i] = _km.kmeans_plusplus(Xs, w, K, child[i], dist=dist)
    with kernels.blas_single_threaded():  # tiny samples: a thread hand-off costs more
        kernels.run_ranges(run, n_seedings, 1 if Xs.size < 2**16 else None)
    # the Lloyd runs share their passes: one product per chunk for every run still moving
    return [(c, inertia) for c, inertia, _ in _km.lloyd_many(dist, w, seeds, max_iter, tol_abs)]


def _best_start(Xs, sws, runs, kind, reg_covar, chunk_rows):
    """(centres, chosen): the centres of the run whose mixture (hard-assignment M-step on the
    sample) has the highest log-likelihood on the sample (module docstring: "Choosing the
    k-means run"), and (that mixture, the warnings its M-step gave, its E-step ``Stats`` on
    the sample) -- None when there was a single run."""
    if len(runs) == 1:
        return runs[0][0], None
    # a run that ended on the same centres as an earlier one (in another order) starts the
    # same mixture: the earlier one already had its chance (on small data most seedings meet;
    # each scoring is a hard-assignment pass and an E-step)
    distinct, seen = [], set()
    for centres, _ in runs:
        key = centres[np.lexsort(centres.T[::-1])].tobytes()
        if key not in seen:
            seen.add(key)
            distinct.append(centres)
    # The passes (hard assignments, then E-steps) of the runs are independent: each is
    # computed from its own centres alone, its chunks in order inside it, so they run side
    # by side on the threads with the same results on any number.  Tiny ones stay in this
    # thread: their Python glue holds the GIL, and a hand-off costs more than the pass (iris,
    # K = 3: ~50 us an E-step).  The M-steps between them, which may warn, run in turn.
    n_threads = None if Xs.size * runs[0][0].shape[0] >= SCORE_THREADS_MIN else 1
    hard = [None] * len(distinct)
    sample = as_stream(Xs, sws, chunk_rows) if n_threads == 1 else None

    def assign(i0, i1):
        for i in range(i0, i1):  # side by side, a Stream each: no pass counter shared
            data = sample if sample is not None else as_stream(Xs, sws, chunk_rows)
            hard[i] = _hard_assignment(data, distinct[i], kind)
    with kernels.blas_single_threaded():
        kernels.run_ranges(assign, len(distinct), n_threads)
    # a rejected start's collapsed components do not matter; the chosen one's warnings are
    # given again if its mixture is used (``_initial``).  One filter for all runs: each
    # catch_warnings/simplefilter pair cost ~0.3 ms (it resets every warning registry).
    scored = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DegenerateComponentWarning)
        for centres, (out, kp) in zip(distinct, hard):
            n0 = len(caught)
            params = assigned_params(kind, out, kp, centres, reg_covar)
            scored.append([centres, params, caught[n0:], params.kernel_params(Xs.dtype), None])

    def score(i0, i1):
        for s in scored[i0:i1]:
            s[4] = kernels.estep_stats(Xs, sws, s[3], chunk_rows)
    with kernels.blas_single_threaded():
        kernels.run_ranges(score, len(scored), n_threads)
    best, best_ll, best_params = runs[0][0], -np.inf, None
    for centres, params, warned, kp, out in scored:  # in run order: the first best wins
        if out[3] > best_ll:  # NaN never wins
            best, best_ll = centres, out[3]
            best_params = (params, warned, stats_from_kernel(params.kind, out, kp))
    return best, best_params


def _assign_to(data, centres, kind, reg_covar):
    """The initial parameters: the M-step of hard assignments of every row to its nearest
    centre (one pass; the statistics are computed with BLAS, see ``fastmix.kmeans``)."""
    out, kp = _hard_assignment(data, centres, kind)
    return assigned_params(kind, out, kp, centres, reg_covar)


def _hard_assignment(data, centres, kind):
    """(the kernel statistics tuple, its KernelParams) of the hard assignment of every row of
    ``data`` to its nearest centre (``_assign_to``'s first half, which warns nothing)."""
    kp = kernels.nearest_params(centres, data.dtype, kernels.KIND_CODES[kind])
    if getattr(data, "is_dask", False):
        return data.reduce("nearest", kp), kp
    acc = kernels.Accumulator(kp.kind, *centres.shape)
    for _, X, w in data.blocks():
        _km.hard_stats(X, w, kp.means64, kp.kind, kp.g64, data.chunk_rows, acc)
    return acc.result(), kp


def assigned_params(kind, out, kp, centres, reg_covar):
    """The M-step of the hard-assignment statistics ``out`` (a kernel tuple for the centres of
    ``kp``), with the seeds nobody is nearest to kept in place (``_assign_to``'s second half:
    model selection runs the assignment passes of many starts side by side)."""
    stats = stats_from_kernel(kind, out, kp)
    params = m_step(stats, reg_covar)
    empty = stats.nk <= 0
    if np.any(empty):  # a seed nobody is nearest to (duplicate rows): keep it where it was
        means = params.means.copy()
        means[empty] = centres[empty]
        params = GMMParams(params.weights, means, params.cov)
    return params


def _random_resp(data, K, kind, rng, reg_covar):
    """Uniform random responsibilities, drawn block by block (the draws do not depend on the
    block size).  Second moments are centred on the first chunk's mean."""
    if getattr(data, "is_dask", False):  # drawn on the workers from per-block seeds
        head = data.head(data.chunk_rows)
        kp = kernels.nearest_params(np.repeat(head.mean(axis=0)[None, :], K, axis=0),
                                    data.dtype, kernels.KIND_CODES[kind])
        return m_step(stats_from_kernel(kind, data.random_resp(K, kp, rng), kp), reg_covar)
    centre = None
    acc = None
    for _, X, w in data.blocks():
        if centre is None:
            head = X[:data.chunk_rows].astype(np.float64)
            wh = None if w is None else w[:data.chunk_rows]
            centre = np.average(head, axis=0, weights=wh if wh is not None and wh.sum() > 0
                                else None)
            kp = kernels.nearest_params(np.repeat(centre[None, :], K, axis=0), data.dtype,
                                        kernels.KIND_CODES[kind])
            acc = kernels.Accumulator(kp.kind, K, data.n_features)
        R = rng.uniform(size=(X.shape[0], K))
        R /= R.sum(axis=1, keepdims=True)
        kernels.resp_stats(X, w, R, kp, data.chunk_rows, acc)
    return m_step(stats_from_kernel(kind, acc.result(), kp), reg_covar)


def _random_rows(data, K, rng):
    """K distinct rows drawn uniformly among those with positive weight: the same draw as for
    an in-memory array whenever the row count is known and the weights are in memory (rows
    read by random access or one pass); otherwise a reservoir sample in one pass."""
    if getattr(data, "is_dask", False):
        return data.random_rows(K, rng).astype(np.float64)
    X, sw = data.in_memory, data.weights
    if X is not None or (data.n_rows is not None and not data.source.has_weights
                         and (sw is None or isinstance(sw, np.ndarray))):
        N = data.n_rows
        pool = np.arange(N) if sw is None else np.flatnonzero(sw > 0)
        if pool.shape[0] < K:
            raise ValueError(f"init_params='random_from_data' needs at least n_components={K} "
                             f"rows with positive sample_weight, got {pool.shape[0]}")
        idx = pool[rng.choice(pool.shape[0], size=K, replace=False)]
        if X is not None:
            rows = X[idx]
        else:
            order = np.argsort(idx)
            rows = np.empty((K, data.n_features), data.dtype)
            rows[order] = _gather(data, idx[order])[0]
        return rows.astype(np.float64)
    Xs, _, _ = _reservoir(data, K, rng, positive_only=True)
    if Xs.shape[0] < K:
        raise ValueError(f"init_params='random_from_data' needs at least n_components={K} "
                         f"rows with positive sample_weight, got {Xs.shape[0]}")
    return Xs.astype(np.float64)


def initial_params(data, sw, K, kind, method, rng, reg_covar, chunk_rows, lowrank=None,
                   first_estep=None):
    """GMMParams from one of the methods in the module docstring.  ``data`` is a Stream or an
    in-memory array (then ``sw`` are its weights).  ``lowrank``: for kind "lowrank",
    dict(n_factors, isotropic, loadings (K, D, q) or None).  ``first_estep``: a list to which
    the E-step ``Stats`` of the returned parameters on all of ``data`` (chunks of
    ``chunk_rows``) are appended when the start computed them anyway -- the k-means start
    whose sample is the whole data scores its mixture so -- for EM's first iteration
    (``em.run_em(first_stats=...)``)."""
    data = as_stream(data, sw, chunk_rows)
    if kind == "lowrank":
        base, sample, _ = _initial(data, K, "diag", method, rng, reg_covar)
        if sample is None:
            sample = _subsample(data, K, rng)
        return _lowrank_from(base, sample, rng, reg_covar, data.chunk_rows, **lowrank)
    params, _, stats = _initial(data, K, kind, method, rng, reg_covar)
    if stats is not None and first_estep is not None:
        first_estep.append(stats)
    return params


def _initial(data, K, kind, method, rng, reg_covar):
    """(GMMParams, the k-means sample (Xs, sws) or None, the parameters' E-step Stats on all
    of ``data`` or None)."""
    Xs = sws = None
    if method in ("kmeans", "k-means++"):
        Xs, sws = _subsample(data, K, rng)
        if Xs.shape[0] < K:  # only possible when the row count was unknown before this pass
            raise ValueError(f"Expected n_samples >= n_components but got n_components = {K}, "
                             f"n_samples = {Xs.shape[0]}")
    sample = None if Xs is None else (Xs, sws)
    if method == "kmeans":
        runs = kmeans_runs(Xs, sws, K, rng, data.chunk_rows)
        centres, chosen = _best_start(Xs, sws, runs, kind, reg_covar, data.chunk_rows)
        if chosen is None or Xs is not data.in_memory or sws is not data.weights:
            return _assign_to(data, centres, kind, reg_covar), sample, None
        # the sample is the data: the chosen mixture is already its hard-assignment M-step,
        # and its scoring E-step is the first E-step of EM from it
        for w in chosen[1]:
            warn_at_caller(str(w.message), w.category)
        return chosen[0], sample, chosen[2]
    if method == "k-means++":
        return _assign_to(data, kmeans_plusplus(Xs, sws, K, rng),
                          kind, reg_covar), sample, None
    if method == "random_from_data":
        return _assign_to(data, _random_rows(data, K, rng), kind, reg_covar), sample, None
    if method == "random":
        return _random_resp(data, K, kind, rng, reg_covar), sample, None
    raise ValueError(f"unknown init_params {method!r}")


#: Randomised SVD: extra random directions and power iterations (Halko, Martinsson & Tropp).
RSVD_OVERSAMPLE = 10
RSVD_POWER_ITER = 4


class WeightedRows:
    """The matrix A = sqrt(w) * (X[idx] - centre) (n, D), float64, without forming it: products
    with it are computed in row blocks of ``SQDIST_BLOCK_BYTES``, so a randomised SVD of a
    component's share of the k-means sample needs O(n (q + 10) + D (q + 10)) memory, not a
    sample-sized copy."""

    def __init__(self, X, idx=None, w=None, centre=None):
        self.X = X
        self.idx = np.arange(X.shape[0]) if idx is None else np.asarray(idx)
        n = self.idx.shape[0]
        self.sw = np.ones(n) if w is None else np.sqrt(np.asarray(w, dtype=np.float64))
        self.centre = np.zeros(X.shape[1]) if centre is None else centre
        self.shape = (n, X.shape[1])
        self.step = max(1, SQDIST_BLOCK_BYTES // max(1, 8 * X.shape[1]))

    def _blocks(self):
        for i in range(0, self.shape[0], self.step):
            rows = self.idx[i:i + self.step]
            yield i, self.sw[i:i + self.step, None] * (
                self.X[rows].astype(np.float64) - self.centre)

    def dense(self):
        return np.concatenate([b for _, b in self._blocks()]) if self.shape[0] else \
            np.empty(self.shape)

    def dot(self, M):
        """A @ M (n, l)."""
        out = np.empty((self.shape[0], M.shape[1]))
        for i, b in self._blocks():
            out[i:i + b.shape[0]] = b @ M
        return out

    def tdot(self, Q):
        """A^T @ Q (D, l)."""
        out = np.zeros((self.shape[1], Q.shape[1]))
        for i, b in self._blocks():
            out += b.T @ Q[i:i + b.shape[0]]
        return out


def leading_directions(A, q, rng):
    """(V (D, q') orthonormal, s (q',)): the q' = min(q, rank-ish) leading right singular
    vectors and singular values of A (n, D) -- an array or a ``WeightedRows``; randomised SVD
    (Halko et al.) when D > 4 (q + oversampling), computed with products only."""
    op = A if isinstance(A, WeightedRows) else WeightedRows(np.asarray(A, dtype=np.float64))
    n, D = op.shape
    l = q + RSVD_OVERSAMPLE
    if D <= 4 * l or n <= l:
        _, s, Vt = np.linalg.svd(op.dense(), full_matrices=False)
        return Vt[:q].T, s[:q]
    Q = np.linalg.qr(op.dot(rng.standard_normal((D, l))))[0]
    for _ in range(RSVD_POWER_ITER):
        Q = np.linalg.qr(op.dot(np.linalg.qr(op.tdot(Q))[0]))[0]
    _, s, Vt = np.linalg.svd(op.tdot(Q).T, full_matrices=False)
    return Vt[:q].T, s[:q]


def _lowrank_from(base, sample, rng, reg_covar, chunk_rows, n_factors, isotropic, loadings):
    """Lowrank parameters from diagonal ones and the subsample (module docstring)."""
    from ._params import LowRankCovariance
    Xs, sws = sample
    K, D = base.means.shape
    q = n_factors
    var = base.cov.covariances                      # (K, D), includes reg_covar
    if loadings is not None:
        W = np.asarray(loadings, dtype=np.float64)
        sigma2 = var.mean(axis=1)
    else:
        Xs = np.ascontiguousarray(Xs)
        _, _, resp = kernels.log_prob(Xs, base.kernel_params(Xs.dtype), chunk_rows, True)
        # (N, K) responsibilities of the sample: at most 65 536 x K doubles
        if sws is not None:
            resp = resp * np.asarray(sws, dtype=np.float64)[:, None]
        W = np.empty((K, D, q))
        sigma2 = np.empty(K)
        for k in range(K):
            r = resp[:, k]
            sel = np.flatnonzero(r > 1e-8 * r.max()) if r.max() > 0 else np.empty(0, np.int64)
            nk = float(r[sel].sum())
            V = np.empty((D, 0))
            lam = np.empty(0)
            if nk > 0:
                V, s = leading_directions(WeightedRows(Xs, sel, r[sel], base.means[k]), q, rng)
                keep = s > 1e-12 * max(float(s[0]), 1e-300) if s.size else s > 0
                V, lam = V[:, keep], s[keep] ** 2 / nk
            sigma2[k] = max((var[k].sum() - lam.sum()) / (D - q), 1e-6 * var[k].mean())
            if V.shape[1] < q:  # fewer directions than factors: random orthogonal complement
                R = rng.standard_normal((D, q - V.shape[1]))
                R -= V @ (V.T @ R)
                V = np.concatenate([V, np.linalg.qr(R)[0]], axis=1)
                lam = np.concatenate([lam, np.zeros(q - lam.shape[0])])
            W[k] = V * np.sqrt(np.maximum(lam - sigma2[k], 0.01 * sigma2[k]))
    if isotropic:
        psi = np.repeat(sigma2[:, None], D, axis=1)
    else:
        psi = np.maximum(var - (W ** 2).sum(axis=2), 0.01 * var)
    return GMMParams(base.weights, base.means, LowRankCovariance(W, psi, isotropic))
