"""Model-selection driver: EM for many candidate mixtures (numbers of components x covariance
types) with one read of the data per iteration for all of them.

The loop (``sweep``) is ``em.em_loop`` run side by side: each pass over the data hands every
block to the E-step of every candidate that is still running (``kernels.estep_stats`` into the
candidate's own ``kernels.Accumulator``), so a block is read once from disk however many
candidates use it; an in-memory array is one block (``CACHE_BLOCK_BYTES``), so each candidate's
E-step is one parallel call over all rows, as in a separate fit.  After the pass each candidate takes its own
M-step (``_params.m_step``) and stopping rule, exactly as a separate fit does; a candidate
that stopped is scored in the next pass (log-likelihood of its final parameters, the entropy of
its responsibilities for ICL, or the held-out log-likelihood) and then drops out.  Because the
per-chunk partial statistics are added in chunk order whatever the block boundaries
(``kernels.Accumulator``), each candidate's parameters are bit-identical to a separate
``GaussianMixture`` fit from the same start.

Starts (``kmeans_starts``, ``hierarchical_starts``, ``split_params``):

* ``"kmeans"``: each candidate gets the start a separate ``GaussianMixture(n_components=K,
  covariance_type=..., random_state=seed)`` gets.  Its random draws depend on K only, so the
  k-means sample and the k-means runs are computed once per K (and the sample once per sample
  size), and the assignment passes of all candidates share one read of the data.
* ``"hierarchical"``: Ward's agglomerative clustering (the model-based hierarchical
  agglomeration of the spherical, equal-volume model, as mclust uses to start EM) of a seeded
  sample of at most ``HC_ROWS`` rows, cut at every K; then the same shared assignment pass.
* ``"split"``: K = min(K) starts from k-means; each K + 1 starts from the converged K-component
  model with the component that fits its local data worst split in two along its principal
  axis (``split_scores``: by default the local Kullback-Leibler divergence of Ueda et al.
  (2000), "SMEM algorithm for mixture models", with the local density smoothed by a kernel
  estimate).  Candidates of one covariance type then run one after the other, so the sweep
  needs more passes.

Sample weights: the candidates read the weights a separate ``GaussianMixture.fit(X,
sample_weight=...)`` reads; with the held-out split the training weights are the sample
weights times the training mask, and ``sweep(split=...)`` applies the split block by block so
that the held-out rows are scored with their own weights.

Held-out scoring: row i is held out when a hash of (seed, i) falls below the fraction
(SplitMix64), so the split does not depend on blocks, chunks or the source; a candidate is
fitted with weight 0 on held-out rows and scored on them.
"""
import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import em as _em
from . import init as _init
from . import kernels
from . import kmeans as _km
from ._params import Covariance, GMMParams, LowRankCovariance, m_step, stats_from_kernel
from .io import Source

CRITERIA = ("bic", "icl", "heldout")
STARTS = ("kmeans", "hierarchical", "split")
#: Bytes of the blocks (whole chunks) an in-memory array is cut into for the EM passes, or None
#: (the default) for none: each candidate's E-step then runs over the whole array in one call,
#: as a separate fit's does.  Cache-sized blocks (4 MiB) saved nothing measurable at D = 16 (the
#: E-step is compute-bound) and cost one thread hand-off and one parameter layout per candidate
#: and block (bench/results/selection_inmemory.md).
CACHE_BLOCK_BYTES = None
#: Rows of the sample the hierarchical start clusters (Ward's linkage is O(n^2) memory).
HC_ROWS = 2000


# ----------------------------------------------------------------------- held-out split -----
def _splitmix64(x):
    """SplitMix64 finaliser of uint64 ``x`` (vectorised)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def heldout_mask(start, stop, fraction, seed):
    """(stop - start,) bool: True for the held-out rows among rows start..stop-1.  Row i is held
    out when the SplitMix64 hash of (seed, i) maps below ``fraction`` of [0, 1)."""
    return _heldout_rows(np.arange(start, stop, dtype=np.uint64), fraction, seed)


def _heldout_rows(rows, fraction, seed):
    with np.errstate(over="ignore"):
        key = _splitmix64(np.uint64(int(seed) & (2**64 - 1)))
        u = _splitmix64(np.asarray(rows).astype(np.uint64) ^ key)
    return (u >> np.uint64(11)).astype(np.float64) * 2.0**-53 < fraction


def train_weights_of_rows(rows, fraction, seed):
    """Training weights (1.0, or 0.0 when held out) of the row indices ``rows`` (n,) int."""
    return (~_heldout_rows(rows, fraction, seed)).astype(np.float64)


def split_weights(start, stop, w, fraction, seed):
    """(training weights, held-out weights) of rows start..stop-1 whose sample weights are ``w``
    ((stop - start,) float64, or None for weight 1): each row's weight goes to the side of the
    split it falls on, the other side gets 0.0."""
    held = heldout_mask(start, stop, fraction, seed)
    if w is None:
        return (~held).astype(np.float64), held.astype(np.float64)
    return np.where(held, 0.0, w), np.where(held, w, 0.0)


class TrainingWeights(Source):
    """The held-out split as a 1-D random-access weight source: the sample weight (1.0 without
    ``base``) for training rows, 0.0 for held-out rows (so any Stream reads it in step with the
    rows).  ``base``: None, the (N,) sample weights, or a 1-D random-access Source of them."""

    random_access = True
    n_features = 1
    dtype = np.dtype(np.float64)

    def __init__(self, n_rows, fraction, seed, base=None):
        self.n_rows = int(n_rows)
        self.fraction = float(fraction)
        self.seed = int(seed)
        self.base = base
        self.name = f"held-out split ({fraction:g})"
        if base is not None:
            self.name = f"{getattr(base, 'name', 'sample_weight')} x {self.name}"

    def read_rows(self, start, stop, out):
        b = self.base
        if b is None:
            out[:, 0] = ~heldout_mask(start, stop, self.fraction, self.seed)
            return
        if isinstance(b, np.ndarray):
            w = b[start:stop]
        else:
            buf = np.empty((stop - start, 1))
            b.read_rows(start, stop, buf)
            w = buf[:, 0]
        out[:, 0] = split_weights(start, stop, w, self.fraction, self.seed)[0]

    def take(self, rows):
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.shape[0], 1))
        for i, r in enumerate(rows):
            self.read_rows(int(r), int(r) + 1, out[i:i + 1])
        return out

    def array(self):
        out = np.empty((self.n_rows, 1))
        self.read_rows(0, self.n_rows, out)
        return out[:, 0]


class SplitColumnSource(Source):
    """A sequential source that carries its own weight column (Parquet/CSV ``weight_column``,
    an iterable of (X, w) pairs) with the held-out rows' weights set to 0.0."""

    has_weights = True
    random_access = False

    def __init__(self, inner, fraction, seed):
        self.inner = inner
        self.name = inner.name
        self.n_rows, self.n_features, self.dtype = inner.n_rows, inner.n_features, inner.dtype
        self.fraction, self.seed = float(fraction), int(seed)

    def pieces(self):
        start = 0
        for piece in self.inner.pieces():
            X, w = piece
            w = np.asarray(w, dtype=np.float64).reshape(-1)
            yield X, split_weights(start, start + w.shape[0], w, self.fraction, self.seed)[0]
            start += w.shape[0]

    @property
    def rows_read(self):
        return getattr(self.inner, "rows_read", None)

    @rows_read.setter
    def rows_read(self, n):
        self.inner.rows_read = n

    def close(self):
        self.inner.close()


# ----------------------------------------------------------------------- candidates ---------
@dataclass
class Candidate:
    """One model of the sweep and its EM state (the fields of ``em.EMResult``) and scores."""
    n_components: int
    covariance_type: str
    params: GMMParams | None = None
    lower_bound: float = -np.inf
    n_iter: int = 0
    converged: bool = False
    lower_bounds: list = field(default_factory=list)
    iter_times: list = field(default_factory=list)
    seconds: float = 0.0           # time spent on this candidate: start, E-steps, M-steps, score
    status: str = "waiting"        # waiting -> running -> scoring -> done
    log_likelihood: float = np.nan  # sum of w log p(x) of the final model (training rows)
    heldout_log_likelihood: float = np.nan  # sum of w log p(x) over the held-out rows
    entropy: float = np.nan        # -sum w r log r of the final model's responsibilities
    n_rows: float = 0.0            # sum of the training weights (rows, when unweighted)
    n_heldout: float = 0.0         # sum of the held-out rows' weights
    init: int = 0                  # which of the model's n_init initialisations this run is
    group: list | None = None      # the runs (Candidates) of the same model, n_init > 1 only

    @property
    def n_parameters(self):
        return self.params.n_parameters()


def published(params, dtype):
    """The parameters a fitted model publishes for data of ``dtype``: float32 data give
    float32 attributes (``GaussianMixture._set_params_from``), so scores use those, rounded."""
    if np.dtype(dtype) != np.float32:
        return params
    r = lambda a: np.asarray(np.asarray(a, dtype=np.float32), dtype=np.float64)  # noqa: E731
    cov = params.cov
    if params.kind == "lowrank":
        cov = LowRankCovariance(r(cov.loadings), r(cov.noise_variances), cov.isotropic)
    else:
        cov = type(cov)(r(cov.covariances), r(cov.precisions_cholesky))
    return GMMParams(r(params.weights), r(params.means), cov)


def score_block(X, w, kp, chunk_rows, want_entropy, held_w=None, log_prob=None):
    """(sum of w log p, sum of held_w log p, -sum_i w_i sum_k r_ik log r_ik, sum of w, sum of
    held_w) of one block under ``kp``.  ``w``: training weights (None: every row a training
    row of weight 1); ``held_w``: the held-out rows' weights, 0.0 elsewhere (None: no held-out
    rows).  Rows of weight 0 are left out of the sums (their log p may be -inf).
    ``log_prob(kp, want_resp)``: the block's (log p, labels, responsibilities) computed
    elsewhere (the GPU), instead of ``kernels.log_prob`` on ``X``."""
    logp, _, resp = (kernels.log_prob(X, kp, chunk_rows, want_entropy) if log_prob is None
                     else log_prob(kp, want_entropy))
    ent = 0.0
    if want_entropy:
        with np.errstate(divide="ignore", invalid="ignore"):
            rlogr = np.where(resp > 0, resp * np.log(resp), 0.0)
        ent = -float(np.sum(rlogr) if w is None else np.sum((w * rlogr.sum(axis=1))[w > 0]))
    held = (0.0, 0.0)
    if held_w is not None:
        h = held_w > 0
        held = (float(np.sum((held_w * logp)[h])), float(np.sum(held_w[h])))
    if w is None:
        return float(np.sum(logp)), held[0], ent, float(X.shape[0]), held[1]
    train = w > 0
    return float(np.sum((w * logp)[train])), held[0], ent, float(np.sum(w[train])), held[1]


@dataclass
class SweepStats:
    """What a sweep read: passes over the data and the bytes of each."""
    pass_bytes: list = field(default_factory=list)
    pass_kinds: list = field(default_factory=list)   # "start", "em"

    @property
    def n_passes(self):
        return len(self.pass_bytes)


def _blocks(data, stats, what):
    """The data's blocks, counting the bytes of the pass in ``stats``."""
    n = 0
    for start, X, w in data.blocks():
        n += X.nbytes
        yield start, X, w
    stats.pass_bytes.append(n)
    stats.pass_kinds.append(what)


def cache_blocked(data, block_bytes=None):
    """An in-memory Stream re-cut into blocks of ``block_bytes`` (default ``CACHE_BLOCK_BYTES``)
    of whole chunks (the statistics do not change: the chunk partials are added in the same
    order); other data, or a block size of None, as they are."""
    block_bytes = CACHE_BLOCK_BYTES if block_bytes is None else block_bytes
    if block_bytes is None or getattr(data, "is_dask", False) or data.in_memory is None:
        return data
    rows = max(1, block_bytes // (data.dtype.itemsize * data.n_features) // data.chunk_rows)
    return data.rebatched(rows * data.chunk_rows)


# ----------------------------------------------------------------------- starts -------------
def _assignment_pass(data, jobs, reg_covar, stats):
    """Initial parameters for ``jobs`` = [(kind, centres)], one shared pass of hard
    assignments (``init._assign_to`` for each, side by side)."""
    kps = [kernels.nearest_params(c, data.dtype, kernels.KIND_CODES[k]) for k, c in jobs]
    if getattr(data, "is_dask", False):
        outs = data.reduce_many([("nearest", kp) for kp in kps])
        stats.pass_bytes.append(data.n_rows * data.n_features * data.dtype.itemsize)
        stats.pass_kinds.append("start")
    else:
        accs = [kernels.Accumulator(kp.kind, *kp.means64.shape) for kp in kps]
        for _, X, w in _blocks(data, stats, "start"):
            for kp, acc in zip(kps, accs):
                _km.hard_stats(X, w, kp.means64, kp.kind, kp.g64, data.chunk_rows, acc)
        outs = [acc.result() for acc in accs]
    return [_init.assigned_params(k, out, kp, c, reg_covar)
            for (k, c), kp, out in zip(jobs, kps, outs)]


def _base_kind(kind):
    return "diag" if kind == "lowrank" else kind


def kmeans_starts(data, cands, seed, reg_covar, lowrank, stats):
    """Set ``params`` of every candidate to the start ``GaussianMixture(random_state=seed,
    n_init=...)`` computes for its initialisation ``c.init`` (``init.initial_params`` with
    init_params="kmeans"), sharing the sample and k-means runs per K and the assignment pass
    across candidates.

    The random draws of a start depend on K only (the sample size and Lloyd's subsample are
    functions of K), so all covariance types of one K share them; initialisation i + 1 draws
    from the generator as initialisation i left it, as ``GaussianMixture`` with ``n_init > 1``
    does.  A lowrank candidate's PCA draws from that generator too (after the assignment pass),
    so with lowrank candidates and ``n_init > 1`` the initialisations take one assignment pass
    each; otherwise one pass serves them all."""
    samples = {}   # sample size -> (Xs, sws, generator after drawing it), for initialisation 0
    runs_of = {}   # (K, lowrank chain?, init) -> (Xs, sws, runs, generator after the runs)
    chain = {}     # (K, lowrank chain?) -> generator as the previous initialisation left it

    def runs_for(c):
        K, lr = c.n_components, c.covariance_type == "lowrank" and c.init > 0
        key = (K, lr, c.init)
        if key in runs_of:
            return runs_of[key]
        if c.init == 0:  # the generator's first draws: shared by every K of one sample size
            n_max = max(_init.KMEANS_SAMPLE, 50 * K)
            if n_max not in samples:
                rng = np.random.default_rng(seed)
                Xs, sws = _init._subsample(data, K, rng)
                samples[n_max] = (Xs, sws, copy.deepcopy(rng))
            Xs, sws, rng = samples[n_max]
            rng = copy.deepcopy(rng)
        else:
            rng = chain[(K, c.covariance_type == "lowrank")]
            Xs, sws = _init._subsample(data, K, rng)
        if Xs.shape[0] < K:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = "
                             f"{K}, n_samples = {Xs.shape[0]}")
        runs = _init.kmeans_runs(Xs, sws, K, rng, data.chunk_rows)
        runs_of[key] = (Xs, sws, runs, rng)
        if not lr:  # the next initialisation continues from here (lowrank: after its PCA,
            chain[(K, False)] = copy.deepcopy(rng)  # which _finish_starts records)
        return runs_of[key]

    n_init = 1 + max(c.init for c in cands)
    rounds = [[c for c in cands if c.init == i] for i in range(n_init)] \
        if any(c.covariance_type == "lowrank" for c in cands) else \
        [sorted(cands, key=lambda c: c.init)]
    for group in rounds:
        jobs = []
        for c in group:
            t0 = time.perf_counter()
            Xs, sws, runs, _ = runs_for(c)
            centres = _init._best_start(Xs, sws, runs, _base_kind(c.covariance_type),
                                        reg_covar, data.chunk_rows)[0]
            jobs.append((_base_kind(c.covariance_type), centres))
            c.seconds += time.perf_counter() - t0
        _finish_starts(data, group, jobs, reg_covar, lowrank, stats, runs_for, chain)


def hierarchical_starts(data, cands, seed, reg_covar, lowrank, stats):
    """Starts from Ward's hierarchical clustering of a seeded sample of at most HC_ROWS rows
    (the k-means sample, subsampled), cut at each K; then one shared assignment pass."""
    from scipy.cluster.hierarchy import fcluster, linkage
    t0 = time.perf_counter()
    Kmax = max(c.n_components for c in cands)
    rng = np.random.default_rng(seed)
    Xs, sws = _init._subsample(data, Kmax, rng)
    if Xs.shape[0] < Kmax:
        raise ValueError(f"Expected n_samples >= n_components but got n_components = {Kmax}, "
                         f"n_samples = {Xs.shape[0]}")
    # rows of weight 0 (held-out rows, rows a user weighted out) take no part in the clustering
    Xp = Xs if sws is None else Xs[np.asarray(sws) > 0]
    if Xp.shape[0] < Kmax:
        raise ValueError(f"n_components asks for up to {Kmax} components but the hierarchical "
                         f"start's sample has only {Xp.shape[0]} rows of positive weight")
    if Xp.shape[0] > HC_ROWS:
        idx = np.sort(rng.choice(Xp.shape[0], HC_ROWS, replace=False))
        Xh = np.asarray(Xp[idx], dtype=np.float64)
    else:
        Xh = np.asarray(Xp, dtype=np.float64)
    Z = linkage(Xh, method="ward")
    centres = {}
    for K in sorted({c.n_components for c in cands}):
        lab = fcluster(Z, K, criterion="maxclust") - 1
        C = np.array([Xh[lab == j].mean(axis=0) for j in range(lab.max() + 1)])
        if C.shape[0] < K:  # ties in the tree: fill with the rows farthest from their centre
            far = np.argsort(-((Xh - C[lab]) ** 2).sum(axis=1))[:K - C.shape[0]]
            C = np.concatenate([C, Xh[far]])
        centres[K] = C
    dt = (time.perf_counter() - t0) / len(cands)
    for c in cands:
        c.seconds += dt
    jobs = [(_base_kind(c.covariance_type), centres[c.n_components]) for c in cands]
    _finish_starts(data, cands, jobs, reg_covar, lowrank, stats,
                   lambda c: (Xs, sws, None, rng))


def _finish_starts(data, cands, jobs, reg_covar, lowrank, stats, sample_of, chain=None):
    """The shared assignment pass of ``jobs``, then each lowrank candidate's PCA (drawing from
    a copy of its sample's generator, which ``chain[(K, True)]`` then holds for the next
    initialisation)."""
    t0 = time.perf_counter()
    params = _assignment_pass(data, jobs, reg_covar, stats)
    dt = (time.perf_counter() - t0) / max(1, len(cands))
    for c, p in zip(cands, params):
        t1 = time.perf_counter()
        if c.covariance_type == "lowrank":
            Xs, sws, _, rng = sample_of(c)
            rng = copy.deepcopy(rng)
            p = _init._lowrank_from(p, (Xs, sws), rng, reg_covar, data.chunk_rows, **lowrank)
            if chain is not None:
                chain[(c.n_components, True)] = rng
        c.params = p
        c.status = "running"
        c.seconds += dt + time.perf_counter() - t1


def _mahalanobis2(params, X):
    """(n, K) squared Mahalanobis distances of the rows X to each component (numpy; full, tied,
    diag, spherical)."""
    K, D = params.means.shape
    pc = params.cov.kernel_pc(K, D)
    out = np.empty((X.shape[0], K))
    for k in range(K):
        Y = X - params.means[k]
        U = pc[k if pc.shape[0] > 1 else 0]
        Z = Y @ U if U.shape[0] == D and U.shape[1] == D else Y * U[0]
        out[:, k] = np.einsum("ij,ij->i", Z, Z)
    return out


#: How ``split_params`` chooses the component to split: "kl" (Ueda et al. 2000's local
#: Kullback-Leibler divergence, the local density estimated by a kernel density estimate),
#: "kl_empirical" (the same with the posterior-weighted empirical distribution itself, as the
#: paper writes it) or "kurtosis" (Mardia's multivariate kurtosis).  bench/selection.py starts.
SPLIT_CRITERION = "kl"
SPLIT_CRITERIA = ("kl", "kl_empirical", "kurtosis")
#: Rows of the sample the "kl" criterion's density estimate uses (it is O(rows^2) per component).
KDE_ROWS = 1000


def split_scores(params, Xs, sws, chunk_rows, criterion=None):
    """(K,) float64: how badly each component fits its local data (largest: split first);
    -inf for components with too little weight (n_k <= D + 1) to judge.

    With r_ik the responsibilities on the sample (times its weights), n_k = sum_i r_ik and the
    local distribution f_k putting mass a_ik = r_ik / n_k on row i:

    * "kl": J_k = sum_i a_ik log(f^_k(x_i) / p_k(x_i)), the local KL divergence of Ueda et al.
      (2000) with f_k smoothed into a leave-one-out kernel density estimate f^_k (Gaussian
      kernel of covariance h^2 Sigma_k, h by Scott's rule for the effective size n_k^2 /
      sum_i r_ik^2) on at most KDE_ROWS rows: close to 0 for a component whose data are
      Gaussian, large where its data have more structure (two modes) than its Gaussian;
    * "kl_empirical": J_k = sum_i a_ik log(a_ik / p_k(x_i)), f_k taken as it is (a discrete
      distribution against a density: the score grows with the spread of the component and
      falls with n_k);
    * "kurtosis": Mardia's |b_k - D (D + 2)| / sqrt(8 D (D + 2) / n_k)."""
    criterion = SPLIT_CRITERION if criterion is None else criterion
    if criterion not in SPLIT_CRITERIA:
        raise ValueError(f"split criterion must be one of {SPLIT_CRITERIA}, got {criterion!r}")
    K, D = params.means.shape
    X = np.ascontiguousarray(np.asarray(Xs, dtype=np.float64))
    logp, _, resp = kernels.log_prob(X, params.kernel_params(np.float64), chunk_rows, True)
    sw = None if sws is None else np.asarray(sws, dtype=np.float64)
    R = resp if sw is None else resp * sw[:, None]
    nk = R.sum(axis=0)
    ok = nk > D + 1
    z = np.full(K, -np.inf)
    if criterion == "kurtosis":
        d2 = _mahalanobis2(params, X)
        with np.errstate(divide="ignore", invalid="ignore"):
            b = (R * d2 ** 2).sum(axis=0) / nk
            z = np.abs(b - D * (D + 2)) / np.sqrt(8.0 * D * (D + 2) / nk)
    elif criterion == "kl_empirical":
        with np.errstate(divide="ignore", invalid="ignore"):
            a = R / nk
            # log p_k(x) = log r_k(x) + log p(x) - log pi_k
            logpk = np.log(resp) + logp[:, None] - np.log(params.weights)
            z = np.sum(np.where(a > 0, a * (np.log(a) - logpk), 0.0), axis=0)
    else:
        pc = params.cov.kernel_pc(K, D)
        for k in np.flatnonzero(ok):
            a = R[:, k]
            rows = np.flatnonzero(a > 0)
            if rows.shape[0] > KDE_ROWS:  # the rows of largest weight carry the estimate
                rows = np.sort(rows[np.argsort(-a[rows], kind="stable")[:KDE_ROWS]])
            a = a[rows] / a[rows].sum()
            U = pc[k if pc.shape[0] > 1 else 0]
            Y = X[rows] - params.means[k]
            Z = Y @ U if U.shape[0] == D and U.shape[1] == D else Y * U[0]
            sq = np.einsum("ij,ij->i", Z, Z)
            n_eff = 1.0 / np.sum(a ** 2)
            h2 = n_eff ** (-2.0 / (D + 4))
            d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (Z @ Z.T), 0.0)
            E = -0.5 * d2 / h2
            np.fill_diagonal(E, -np.inf)  # leave one out
            m = E.max(axis=1, keepdims=True)
            # log of sum_j a_j K_h(x_i - x_j) / (1 - a_i), relative to p_k(x_i)
            with np.errstate(divide="ignore"):
                lf = (m[:, 0] + np.log(np.exp(E - m) @ a) - np.log1p(-np.minimum(a, 1 - 1e-12))
                      - 0.5 * D * math.log(h2) + 0.5 * sq)
            z[k] = float(np.sum(a * lf))
    return np.where(ok & np.isfinite(z), z, -np.inf)


def split_params(params, Xs, sws, chunk_rows, reg_covar, criterion=None):
    """K + 1 components from ``params``: the component that fits its local data worst
    (``split_scores``, by default Ueda et al.'s local KL divergence) split in two along its
    principal axis (means mu +- sqrt(lambda_1)/2 v_1, half the weight each, the variance along
    v_1 reduced by lambda_1/4)."""
    K, D = params.means.shape
    z = split_scores(params, Xs, sws, chunk_rows, criterion)
    k = int(np.argmax(z)) if np.any(np.isfinite(z)) else int(np.argmax(params.weights))
    kind = params.kind
    covs = params.cov.covariances
    if kind == "full":
        S = covs[k]
    elif kind == "tied":
        S = covs
    elif kind == "diag":
        S = np.diag(covs[k])
    else:
        S = np.eye(D) * covs[k]
    lam, V = np.linalg.eigh(S)
    v, l1 = V[:, -1], lam[-1]
    a = 0.5 * math.sqrt(max(l1, 0.0))
    means = np.concatenate([params.means, params.means[k:k + 1] + a * v])
    means[k] -= a * v
    weights = np.concatenate([params.weights, params.weights[k:k + 1] / 2])
    weights[k] /= 2
    if kind == "full":
        new = S - a * a * np.outer(v, v)
        cov = np.concatenate([covs, new[None]])
        cov[k] = new
    elif kind == "diag":
        new = covs[k].copy()
        j = int(np.argmax(new))
        new[j] *= 0.75
        cov = np.concatenate([covs, new[None]])
        cov[k] = new
    elif kind == "spherical":
        cov = np.concatenate([covs, covs[k:k + 1]])
    else:
        cov = covs
    return GMMParams(weights, means, Covariance.registry[kind].from_covariances(cov, reg_covar))


def split_successor(kinds_ks, sample, chunk_rows, reg_covar):
    """``successor`` for ``sweep``: when the candidate (K, kind) stops and K' (the next K asked
    for that kind) exists, a running Candidate (K', kind) started by K' - K splits."""
    Xs, sws = sample

    def successor(c):
        ks = kinds_ks[c.covariance_type]
        i = ks.index(c.n_components)
        if i + 1 >= len(ks):
            return None
        t0 = time.perf_counter()
        p = c.params
        for _ in range(ks[i + 1] - c.n_components):
            p = split_params(p, Xs, sws, chunk_rows, reg_covar)
        return Candidate(ks[i + 1], c.covariance_type, params=p, status="running",
                         seconds=time.perf_counter() - t0)
    return successor


# ----------------------------------------------------------------------- E-step engines -----
class CpuEngine:
    """The candidates' E-steps and scores on one block with the CPU kernels: statistics added
    chunk by chunk into a ``kernels.Accumulator`` (bit-identical to a separate fit for any
    blocks of whole chunks).  As a separate fit's E-steps (``em.e_step_stats``), a tied
    candidate's passes after its first reuse the shared second moment (``scatter=False``)."""

    #: whether ``estep`` can leave the tied kind's shared second moment out
    skips_scatter = True

    def __init__(self, chunk_rows):
        self.chunk_rows = chunk_rows

    def put(self, start, X, w):
        return X, w

    def accumulator(self, kp):
        return kernels.Accumulator.for_params(kp)

    def estep(self, blk, kp, acc, scatter=True):
        kernels.estep_stats(blk[0], blk[1], kp, self.chunk_rows, acc, scatter)
        return acc

    @staticmethod
    def result(acc):
        return acc.result()

    def log_prob(self, blk):
        return None  # score_block runs kernels.log_prob on the host block

    def close(self):
        pass


class GpuEngine:
    """``device="cuda"``: each block is copied to the device once per pass and every running
    candidate's E-step (``kernels.cuda.estep_stats_gpu``) and score (``log_prob_gpu``) run on
    that copy; the (K, D^2)-sized statistics come back and are added on the host, block after
    block.  With ``resident``, an in-memory array (one block) is copied once for the whole
    sweep and stays on the device, as ``GaussianMixture(device="cuda")`` keeps it, so each
    candidate's E-step is the very call a separate GPU fit makes (same launch shape
    ``fastmix.gpu.DEFAULT_BLOCK_ROWS`` / ``DEFAULT_THREADS``): the same statistics bit for bit.
    Starts are computed on the CPU, as ``GaussianMixture`` computes them."""

    skips_scatter = False  # every pass computes the tied kind's shared second moment

    def __init__(self, resident):
        from . import gpu
        from .kernels import cuda as gk
        self.gpu, self.gk = gpu, gk
        gpu.require_gpu()
        self.resident = resident
        self.cached = {}
        self.scratch = gk.DeviceScratch()

    def put(self, start, X, w):
        if self.resident and start in self.cached:
            return self.cached[start]
        blk = (self.gk.to_device(np.ascontiguousarray(X)),
               self.gk.weights_to_device(w, X.shape[0]))
        if self.resident:
            self.cached[start] = blk
        return blk

    def _shape(self):
        return dict(block_rows=self.gpu.DEFAULT_BLOCK_ROWS, threads=self.gpu.DEFAULT_THREADS)

    def accumulator(self, kp):
        return [None]

    def estep(self, blk, kp, acc, scatter=True):
        out = self.gk.estep_stats_gpu(blk[0], blk[1], kp, scratch=self.scratch, **self._shape())
        acc[0] = out if acc[0] is None else tuple(a + b for a, b in zip(acc[0], out))
        return acc

    @staticmethod
    def result(acc):
        return acc[0]

    def log_prob(self, blk):
        return lambda kp, want_resp: self.gk.log_prob_gpu(blk[0], kp, want_resp,
                                                          **self._shape())

    def close(self):
        self.cached.clear()
        self.scratch.clear()


# ----------------------------------------------------------------------- the loop -----------
def sweep(data, cands, *, reg_covar, tol, max_iter, criterion="bic", stats=None,
          successor=None, callback=None, split=None, engine=None):
    """EM for every candidate whose status is "running", sharing each pass over ``data``
    (module docstring).  ``successor(candidate)`` may return a new running Candidate when one
    stops (split starts).  ``callback(n_pass, cands)`` after each pass.  ``split``: None, or
    (fraction, seed) of the held-out split, applied here to the sample weights ``data`` reads
    (``split_weights``; a dask array carries the training weights and ``held_weights``
    instead).  ``engine``: where the E-steps run (``CpuEngine``, the default, or
    ``GpuEngine``).  Returns ``stats`` (a SweepStats)."""
    stats = SweepStats() if stats is None else stats
    want_entropy = criterion == "icl"
    dtype = data.dtype
    n_pass = 0

    def stop(c, follow=True):
        """``c`` stopped iterating: it is scored next -- or, one of the n_init runs of a model
        (``c.group``), it waits until all of them stopped, and only the run with the highest
        final lower bound (the first on ties, NaN never) is scored, as ``GaussianMixture``
        keeps the best initialisation; the others are dropped."""
        g = c.group
        winner = c
        if g is not None and len(g) > 1:
            c.status = "stopped"
            if any(r.status == "running" for r in g):
                return
            winner = g[0]
            for r in g[1:]:
                if r.lower_bound > winner.lower_bound:
                    winner = r
            for r in g:
                r.status = "dropped"
        winner.status = "scoring"
        nxt = None if successor is None or not follow else successor(winner)
        if nxt is not None:
            cands.append(nxt)

    if max_iter == 0:
        for c in list(cands):
            if c.status == "running":
                stop(c, follow=False)
    while True:
        active = [c for c in cands if c.status in ("running", "scoring")]
        if not active:
            break
        t0 = time.perf_counter()
        kps = [(c.params if c.status == "running" else published(c.params, dtype))
               .kernel_params(dtype) for c in active]
        for c, kp in zip(active, kps):
            c._t = time.perf_counter() - t0 if c.status == "running" else 0.0
        if getattr(data, "is_dask", False):
            jobs = [("estep" if c.status == "running" else
                     ("score_entropy" if want_entropy else "score"), kp)
                    for c, kp in zip(active, kps)]
            outs = data.reduce_many(jobs, held=getattr(data, "held_weights", None))
            stats.pass_bytes.append(data.n_rows * data.n_features * dtype.itemsize)
            stats.pass_kinds.append("em")
            per = (time.perf_counter() - t0) / len(active)
            for c in active:
                c._t += per
        else:
            eng = CpuEngine(data.chunk_rows) if engine is None else engine
            outs = []
            for c, kp in zip(active, kps):
                outs.append(eng.accumulator(kp) if c.status == "running" else np.zeros(5))
                # a running candidate's statistics kept across its passes (em.e_step_stats)
                c._cache = c.__dict__.get("_cache", {}) if eng.skips_scatter else None
                c._known = (_em.known_scatter(c._cache, kp) if c.status == "running"
                            else None)
            for start, X, w in _blocks(data, stats, "em"):
                held_w = None
                if split is not None:
                    w, held_w = split_weights(start, start + X.shape[0], w, *split)
                t1 = time.perf_counter()
                blk = eng.put(start, X, w)
                per = (time.perf_counter() - t1) / len(active)  # a copy to the device
                for c, kp, out in zip(active, kps, outs):
                    t1 = time.perf_counter()
                    if c.status == "running":
                        eng.estep(blk, kp, out, c._known is None)
                    else:
                        out += score_block(X, w, kp, data.chunk_rows, want_entropy, held_w,
                                           eng.log_prob(blk))
                    c._t += per + time.perf_counter() - t1
            outs = [eng.result(o) if c.status == "running" else tuple(o)
                    for c, o in zip(active, outs)]
        n_pass += 1
        for c, kp, out in zip(active, kps, outs):
            t1 = time.perf_counter()
            if c.status == "scoring":
                ll_train, ll_held, ent, n_train, n_held = out
                c.log_likelihood = float(ll_train)
                c.heldout_log_likelihood = float(ll_held)
                c.entropy = float(ent)
                c.n_rows = float(n_train)
                c.n_heldout = float(n_held)
                c.status = "done"
                c.seconds += c._t + time.perf_counter() - t1
                continue
            st = stats_from_kernel(c.params.kind, out, kp)
            st = _em.keep_scatter(st, c.__dict__.get("_cache"), c.__dict__.get("_known"))
            prev = c.lower_bound
            c.params = m_step(st, reg_covar, (), c.params)
            c.lower_bound = st.mean_log_likelihood
            c.n_iter += 1
            c.lower_bounds.append(c.lower_bound)
            dt = c._t + time.perf_counter() - t1
            c.iter_times.append(dt)
            c.seconds += dt
            if abs(c.lower_bound - prev) < tol:
                c.converged = True
            if c.converged or c.n_iter >= max_iter:
                stop(c)
        if callback is not None:
            callback(n_pass, cands)
    for c in cands:
        for name in ("_t", "_cache", "_known"):
            c.__dict__.pop(name, None)
    return stats


def best_runs(cands):
    """The scored candidates of a finished sweep, in the order of ``cands``: one per model (the
    best of its n_init runs), its ``seconds`` the time of all of its runs."""
    out = []
    for c in cands:
        if c.status != "done":
            continue
        if c.group is not None:
            c.seconds = sum(r.seconds for r in c.group)
        out.append(c)
    return out


def score(c, criterion):
    """The candidate's criterion value (lower is better): BIC = -2 log L + p log n; ICL = BIC +
    2 x entropy of the responsibilities; heldout = -2 x held-out log-likelihood.  With sample
    weights, log L and the entropy are weighted sums and n is the sum of the weights (weights
    read as frequencies: integer weights score as repeated rows)."""
    if criterion == "heldout":
        return -2.0 * c.heldout_log_likelihood
    bic = -2.0 * c.log_likelihood + c.n_parameters * math.log(c.n_rows)
    return bic + 2.0 * c.entropy if criterion == "icl" else bic


__all__ = ["CRITERIA", "STARTS", "Candidate", "SweepStats", "TrainingWeights", "heldout_mask",
           "kmeans_starts", "hierarchical_starts", "split_params", "sweep", "score",
           "score_block", "cache_blocked", "split_successor", "train_weights_of_rows",
           "split_weights", "SplitColumnSource", "best_runs", "CpuEngine", "GpuEngine"]
