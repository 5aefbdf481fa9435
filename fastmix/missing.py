"""Missing values (NaN entries, missing at random): EM on the observed-data likelihood, scoring,
conditioning, imputation and multiple imputation.

For a row with observed coordinates ``o`` and missing ``m``, and a component with mean mu and
covariance Sigma:

* the E-step uses the marginal ``N(x_o | mu_o, Sigma_oo)``;
* the expected sufficient statistics use ``E[x_m | x_o, k] = mu_m + A (x_o - mu_o)``,
  ``A = Sigma_mo Sigma_oo^-1``, and add the conditional covariance
  ``C = Sigma_mm - A Sigma_om`` to the second moments (``kernels.estep_stats_missing``).

These expected statistics have exactly the layout of ``Stats``, so the M-step is the ordinary
``_params.m_step`` and ``em.em_loop`` runs the iterations; the observed-data log-likelihood
never decreases (EM's monotonicity holds for the marginal likelihood).

The conditional of a mixture given ``x_o`` is again a mixture, with weights proportional to
``pi_k N(x_o | mu_ko, Sigma_k,oo)``, means ``mu_km + A_k (x_o - mu_ko)`` and covariances
``C_k`` (``conditional_params``).  Imputation (``impute``) returns its mean and, on request,
its standard deviation (of the mixture, not of one component); ``sample_missing`` draws from
it.  These are NumPy, grouped by missingness pattern (one factorisation of ``Sigma_oo`` per
pattern and component): they run once, not per EM iteration.
"""
from typing import Any

import numpy as np
from scipy import linalg, special

from . import kernels
from ._params import Covariance, GMMParams, stats_from_kernel
from ._validation import bad_entry
from .em import em_loop
from .io import Source, as_stream

LOG_2PI = np.log(2.0 * np.pi)


# ------------------------------------------------------------------------------ validation ---
def check_missing(X, *, name="X", columns=True, rows=True):
    """Check an (N, D) float array whose NaN entries are missing values: ValueError for +-inf
    (not missing: naming the first row), with ``rows`` a row with every entry missing (naming
    it), and with ``columns`` a column with every entry missing (naming it).  Returns whether
    X has NaN."""
    if np.isinf(X).any():
        _raise_infinity(X, name)
    nan = np.isnan(X)
    if not nan.any():
        return False
    if rows:
        empty = nan.all(axis=1)
        if empty.any():
            bad = int(np.flatnonzero(empty)[0])
            raise ValueError(f"row {bad} of {name} has every entry missing (NaN): it carries "
                             f"no information; drop it ({int(empty.sum())} such row(s))")
    if columns:
        col = nan.all(axis=0)
        if col.any():
            bad = int(np.flatnonzero(col)[0])
            raise ValueError(f"column {bad} of {name} has every entry missing (NaN): its "
                             "distribution cannot be estimated; drop the column")
    return True


def _raise_infinity(X, name):
    """ValueError for the first +-inf of X (N, D) (no NaN is reported here: NaN is missing)."""
    inf = np.isinf(X)
    bad = int(np.flatnonzero(inf.any(axis=1))[0])
    where, _ = bad_entry(X, bad, inf[bad])
    raise ValueError(f"Input {name} contains infinity ({where}); only NaN marks a missing value")


def column_means(data):
    """(observed mean of each column (D,) float64, whether any entry is NaN) of a Stream, in
    one pass (the first pass validates: inf and empty rows are errors).  Chunk by chunk in row
    order, so a file read in blocks and the same rows in memory give the same bits.  A column
    with no observed entry is a ValueError naming it."""
    D = data.n_features
    total = np.zeros(D)
    count = np.zeros(D)
    cr = data.chunk_rows
    n = 0
    for _, X, _ in data.blocks():
        n += X.shape[0]
        for a in range(0, X.shape[0], cr):
            part = X[a:a + cr]
            obs = ~np.isnan(part)
            total += np.where(obs, part, 0).sum(axis=0, dtype=np.float64)
            count += obs.sum(axis=0)
    if n and np.any(count == 0):
        bad = int(np.flatnonzero(count == 0)[0])
        raise ValueError(f"column {bad} of {data.name} has every entry missing (NaN): its "
                         "distribution cannot be estimated; drop the column")
    return total / np.maximum(count, 1), bool(count.sum() < n * D)


def fill(X, means):
    """A copy of the block X with each NaN replaced by ``means`` (cast to X's dtype)."""
    nan = np.isnan(X)
    out = np.array(X)
    out[nan] = np.take(means.astype(X.dtype), np.nonzero(nan)[1])
    return out


class ImputedSource(Source):
    """A source whose NaN entries read as fixed column values (the k-means start of a fit with
    missing entries sees column-mean-imputed rows; EM itself reads the NaN)."""

    def __init__(self, inner, means):
        self.inner = inner
        self.means = np.asarray(means, dtype=np.float64)
        self.name = inner.name
        self.n_rows = inner.n_rows
        self.n_features = inner.n_features
        self.dtype = inner.dtype
        self.random_access = inner.random_access
        self.has_weights = inner.has_weights

    def read_rows(self, start, stop, out):
        self.inner.read_rows(start, stop, out)
        nan = np.isnan(out)
        if nan.any():
            out[nan] = np.take(self.means.astype(out.dtype), np.nonzero(nan)[1])

    def pieces(self):
        for piece in self.inner.pieces():
            if isinstance(piece, tuple):
                yield fill(piece[0], self.means), piece[1]
            else:
                yield fill(piece, self.means)

    def take(self, rows):
        out = self.inner.take(rows)
        if isinstance(out, tuple):
            return (fill(out[0], self.means),) + tuple(out[1:])
        return fill(out, self.means)

    def close(self):  # the inner source belongs to the caller
        pass


# ---------------------------------------------------------------------------------- EM ------
def model_arrays(params: GMMParams):
    """(covariances in scikit-learn's layout -- lowrank: (K, D, q + 1) ``[W_k | psi_k]``, never
    the dense matrices --, log-weights), float64, for the masked kernels."""
    with np.errstate(divide="ignore"):
        logw = np.log(params.weights)
    if params.kind == "lowrank":
        lowrank: Any = params.cov  # a LowRankCovariance
        cov = np.concatenate([lowrank.loadings, lowrank.noise_variances[:, :, None]], axis=2)
        return cov, logw
    if params.kind not in ("full", "tied", "diag", "spherical"):
        raise ValueError(f"missing values are not supported for covariance_type="
                         f"{params.kind!r}")
    return np.asarray(params.cov.covariances, np.float64), logw


def e_step_stats(data, sample_weight, params, chunk_rows, on_block=None, cache=None):
    """Expected sufficient statistics (``Stats``) of data with NaN entries under ``params``:
    one fused pass over the blocks of ``data`` (an array or ``io.Stream``).

    ``cache``: a dict kept across E-steps over the same in-memory rows (``run_em``); it keeps
    each block's NaN-chunk flags and full/tied pattern grouping (which depend on the rows
    only; lowrank: each row's pattern), so they are computed once per fit instead of once per
    iteration."""
    data = as_stream(data, sample_weight, chunk_rows)
    kp = params.kernel_params(data.dtype)
    cov, logw = model_arrays(params)
    if getattr(data, "is_dask", False):  # distributed.DaskData: one task per block
        return stats_from_kernel(params.kind, data.reduce("estep_missing", (kp, cov, logw)),
                                 kp)
    acc = kernels.Accumulator.for_params(kp)
    # full/tied/lowrank: each missingness pattern factorised once per E-step, for all blocks
    table = None
    if params.kind in ("full", "tied"):
        table = kernels.PatternTable(np.reshape(cov, (-1,) + cov.shape[-2:]))
    elif params.kind == "lowrank":
        table = kernels.PatternTable(cov, lowrank=True)
    for _, X, w in data.blocks():
        flags = groups = None
        if cache is not None:
            key = (X.__array_interface__["data"][0], X.shape, X.strides, X.dtype.str)
            if key not in cache:
                cache.clear()
                if params.kind in ("full", "tied"):
                    cache[key] = kernels.pattern_groups(X, data.chunk_rows)
                elif params.kind == "lowrank":
                    cache[key] = (kernels.nan_chunks(X, data.chunk_rows), kernels.row_patterns(X))
                else:
                    cache[key] = (kernels.nan_chunks(X, data.chunk_rows), None)
            flags, groups = cache[key]
        if params.kind in ("full", "tied"):
            kernels.estep_stats_missing_cov(X, w, kp, cov, logw, data.chunk_rows, acc, flags,
                                            groups, table)
        elif params.kind == "lowrank":
            kernels.estep_stats_missing_lowrank(X, w, kp, cov, logw, data.chunk_rows, acc, flags,
                                                groups, table)
        else:
            kernels.estep_stats_missing(X, w, kp, cov, logw, data.chunk_rows, acc, flags,
                                        groups)
        if on_block is not None:
            on_block(X.shape[0])
    return stats_from_kernel(params.kind, acc.result(), kp)


def batch_estep(chunk_rows):
    """``estep(X, sw, params) -> Stats`` for online EM (``online.online_update``) on batches
    with NaN entries: the masked E-step of the batch.  A batch without NaN takes the ordinary
    pass (``kernels.estep_stats_missing`` routes its chunks there), so it gives today's
    statistics bit for bit."""
    def estep(X, sw, params):
        return e_step_stats(X, sw, params, chunk_rows)
    return estep


def run_em(data, sample_weight, params, *, reg_covar, tol, max_iter, chunk_rows,
           lower_bound=-np.inf, callback=None, on_block=None, fixed=()):
    """``em.run_em`` for data with missing entries: the same loop, the masked E-step.  The
    lower bound is the mean observed-data log-likelihood."""
    data = as_stream(data, sample_weight, chunk_rows)
    # rows in memory: their NaN layout is read once per fit (``e_step_stats``'s cache)
    cache = {} if data.in_memory is not None else None
    return em_loop(lambda p: e_step_stats(data, None, p, chunk_rows, on_block, cache), params,
                   reg_covar=reg_covar, tol=tol, max_iter=max_iter, lower_bound=lower_bound,
                   callback=callback, fixed=fixed)


def log_prob(X, params, chunk_rows, want_resp=False):
    """(log p(x_o) (N,), labels (N,), responsibilities (N, K) or None) of an in-memory array
    with NaN entries (observed coordinates only)."""
    kp = params.kernel_params(X.dtype)
    cov, logw = model_arrays(params)
    return kernels.log_prob_missing(X, kp, cov, logw, chunk_rows, want_resp)


# ------------------------------------------------------------------------- conditionals ----
def dense_covariances(params):
    """Each component's (D, D) covariance, (K, D, D) float64."""
    K, D = params.means.shape
    c = np.asarray(params.cov.covariances, np.float64)
    if params.kind == "full" or params.kind == "lowrank":
        return c
    if params.kind == "tied":
        return np.broadcast_to(c, (K, D, D))
    if params.kind == "diag":
        return c[:, :, None] * np.eye(D)
    return c[:, None, None] * np.eye(D)


def _pattern_parts(params, covs, o, m, Xo):
    """For rows Xo (n, |o|) observed on o: weighted log-densities (n, K), conditional means
    (K, n, |m|) and conditional covariances (K, |m|, |m|)."""
    K = params.means.shape[0]
    n = Xo.shape[0]
    L = np.empty((n, K))
    means = np.empty((K, n, m.size))
    conds = np.empty((K, m.size, m.size))
    with np.errstate(divide="ignore"):
        logw = np.log(params.weights)
    for k in range(K):
        S = covs[k]
        y = Xo - params.means[k, o]
        if o.size:
            cf = linalg.cho_factor(S[np.ix_(o, o)], lower=True, check_finite=False)
            sol = linalg.cho_solve(cf, y.T, check_finite=False)           # (|o|, n)
            logdet = 2.0 * np.log(np.diag(cf[0])).sum()
            L[:, k] = logw[k] - 0.5 * (o.size * LOG_2PI + logdet + (y * sol.T).sum(axis=1))
            Smo = S[np.ix_(m, o)]
            means[k] = params.means[k, m] + (Smo @ sol).T
            conds[k] = S[np.ix_(m, m)] - Smo @ linalg.cho_solve(cf, Smo.T, check_finite=False)
        else:
            L[:, k] = logw[k]
            means[k] = params.means[k, m]
            conds[k] = S[np.ix_(m, m)]
    return L, means, conds


def _patterns(X):
    """(mask (N, D) bool of NaN, inverse (N,), patterns (P, D) bool)."""
    nan = np.isnan(X)
    pats, inv = np.unique(nan, axis=0, return_inverse=True)
    return nan, inv.reshape(-1), pats


def conditional_params(params, observed, x_observed):
    """The mixture of the other coordinates given ``x[observed] = x_observed``: GMMParams of
    the same covariance kind (lowrank: full) over the coordinates not in ``observed``."""
    K, D = params.means.shape
    o = np.asarray(observed, dtype=np.int64)
    m = np.setdiff1d(np.arange(D), o)
    covs = dense_covariances(params)
    L, means, conds = _pattern_parts(params, covs, o, m,
                                     np.asarray(x_observed, np.float64)[None, :])
    w = special.softmax(L[0])
    kind = "full" if params.kind == "lowrank" else params.kind
    if kind == "tied":
        cov = conds[0]
    elif kind == "diag":
        cov = np.diagonal(conds, axis1=1, axis2=2).copy()
    elif kind == "spherical":
        cov = conds[:, 0, 0].copy() if m.size else np.ones(K)
    else:
        cov = conds
    return GMMParams(w, means[:, 0, :], Covariance.registry[kind].from_covariances(cov))


def impute(X, params, return_std=False, chunk_rows=4096):
    """X with every NaN replaced by its conditional mean given the row's observed entries
    (float64 (N, D)), and the conditional standard deviations (0 on observed entries) when
    ``return_std``: of the mixture, by the law of total variance over its components.  A row
    with nothing observed gets the mixture's mean and std.  Rows with NaN go through the
    masked kernels (one factorisation per pattern and component for full/tied)."""
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    out = X.astype(np.float64)
    std = np.zeros_like(out) if return_std else None
    rows = np.flatnonzero(np.isnan(X).any(axis=1))
    if rows.size:
        if params.kind == "lowrank":  # the masked kernels take dense covariances
            params = GMMParams(params.weights, params.means,
                               Covariance.registry["full"].from_covariances(
                                   params.cov.covariances))
        kp = params.kernel_params(X.dtype)
        cov, logw = model_arrays(params)
        mom = kernels.impute_moments(X[rows], kp, cov, logw, chunk_rows)
        miss = np.isnan(X[rows])
        block = out[rows]
        block[miss] = mom[0][miss]
        out[rows] = block
        if return_std:
            sd = np.zeros_like(block)
            sd[miss] = np.sqrt(np.maximum(mom[1][miss] - mom[0][miss] ** 2, 0.0))
            std[rows] = sd
    return (out, std) if return_std else out


def sample_missing(X, params, n_draws, rng):
    """``n_draws`` completions of X (n_draws, N, D) float64: each NaN drawn from the
    conditional mixture given its row's observed entries (component first, then the
    component's conditional Gaussian); observed entries are kept."""
    X = np.asarray(X, dtype=np.float64)
    out = np.repeat(X[None], n_draws, axis=0)
    nan, inv, pats = _patterns(X)
    covs = dense_covariances(params)
    K = params.means.shape[0]
    for p, pat in enumerate(pats):
        if not pat.any():
            continue
        rows = np.flatnonzero(inv == p)
        o, m = np.flatnonzero(~pat), np.flatnonzero(pat)
        L, means, conds = _pattern_parts(params, covs, o, m, X[np.ix_(rows, o)])
        r = special.softmax(L, axis=1)
        cum = np.cumsum(r, axis=1)
        u = rng.random((n_draws, rows.size, 1))
        comp = np.minimum((u > cum[None]).sum(axis=2), K - 1)             # (n_draws, n)
        z = rng.standard_normal((n_draws, rows.size, m.size))
        draw = np.empty((n_draws, rows.size, m.size))
        for k in range(K):
            sel = comp == k
            if not sel.any():
                continue
            Lc = linalg.cholesky(conds[k] + 1e-300 * np.eye(m.size), lower=True,
                                 check_finite=False)
            noise = z[sel] @ Lc.T
            draw[sel] = np.broadcast_to(means[k], (n_draws,) + means[k].shape)[sel] + noise
        block = out[:, rows]
        block[:, :, m] = draw
        out[:, rows] = block
    return out
