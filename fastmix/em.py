"""Batch EM driver: E-step statistics from a kernel, M-step from the statistics, repeat.

The driver knows nothing about covariance types beyond handing ``Stats`` to ``m_step``; it never
touches numba.  Data are a ``io.Stream`` (blocks of whole chunks, from memory or disk) or
an in-memory (N, D) float32/float64 C-contiguous array; both give bit-identical statistics for
the same ``chunk_rows``.
"""
import time
from dataclasses import dataclass, field

import numpy as np

from . import kernels
from ._params import GMMParams, m_step, stats_from_kernel
from .io import as_stream

DEFAULT_CHUNK_ROWS = 4096

#: The tied kind's shared second moment S = sum w (x - g_0)(x - g_0)^T is taken from an
#: earlier pass over the same rows (``e_step_stats``'s ``cache``) and moved to the new centre
#: g by ``Stats.recentred``: S' = S - a delta^T - delta a^T + W delta delta^T, delta = g - g_0,
#: a = sum w (x - g_0).  Its rounding error is a few ulps of S_ii + 2 |a_i delta_i| +
#: W delta_i^2, so the move is used while that is at most TIED_SCATTER_LOSS times the moved
#: S'_ii for every feature (at most 2 bits lost to cancellation, as in the pass's own sum);
#: moving g away from the data's mean is always exact enough, moving it towards the mean from
#: a start several standard deviations away is not, and the pass computes S' instead.
TIED_SCATTER_LOSS = 4.0


def e_step_stats(data, sample_weight, params: GMMParams, chunk_rows=DEFAULT_CHUNK_ROWS,
                 on_block=None, cache=None):
    """Sufficient statistics of ``data`` under ``params`` (one fused pass over its blocks).

    ``on_block(rows)`` is called after each block (progress bars).  ``cache``: a dict kept
    across the E-steps of one fit over the same rows (``run_em``).  The tied kind's shared
    second moment depends on the rows and the centre g alone, and g (the weighted mean of the
    means) is the data's mean after every M-step, up to rounding: it is computed by the first
    pass and reused (``TIED_SCATTER_LOSS``), which leaves a D x D product per row out of every
    later pass (one thread, D = K = 16, 2e5 rows: float64 227 -> 194 ns/row, float32
    195 -> 175)."""
    data = as_stream(data, sample_weight, chunk_rows)
    kp = params.kernel_params(data.dtype)
    if getattr(data, "is_dask", False):  # distributed.DaskData: map over blocks, tree-reduce
        return stats_from_kernel(params.kind, data.reduce("estep", kp), kp)
    known = known_scatter(cache, kp)
    acc = kernels.Accumulator.for_params(kp)
    X = _one_block(data)
    if X is not None:  # rows in memory, checked: no block generators (small data, every pass)
        kernels.estep_stats(X, data.weights, kp, data.chunk_rows, acc, known is None)
        data.passes += 1
        if on_block is not None:
            on_block(X.shape[0])
    else:
        for _, X, w in data.blocks():
            kernels.estep_stats(X, w, kp, data.chunk_rows, acc, known is None)
            if on_block is not None:
                on_block(X.shape[0])
    return keep_scatter(stats_from_kernel(params.kind, acc.result(), kp), cache, known)


def known_scatter(cache, kp):
    """The tied kind's shared second moment about ``kp.g64`` (D, D) from the statistics in
    ``cache`` (an earlier pass over the same rows), or None when there are none, the kind is
    not tied, or the move would lose precision (``TIED_SCATTER_LOSS``)."""
    if cache is None or kp.kind != kernels.TIED or "tied" not in cache:
        return None
    st = cache["tied"]
    d = kp.g64 - st.gcentre
    a = st.s1.sum(axis=0) - st.ws * st.gcentre
    s0, wdd = np.diagonal(st.s2[0]), st.ws * d * d
    moved = s0 - 2.0 * a * d + wdd  # the new diagonal
    if not np.all(s0 + 2.0 * np.abs(a * d) + wdd <= TIED_SCATTER_LOSS * moved):
        return None
    return st.recentred(st.centre, kp.g64).s2[0]


def keep_scatter(stats, cache, known):
    """``stats`` with the shared second moment ``known`` put in (the pass left it 0), or, when
    the pass computed it, kept in ``cache`` for the next passes (tied only)."""
    if cache is None or stats.kind != "tied":
        return stats
    if known is not None:
        stats.s2[0] = known
    else:
        cache["tied"] = stats.scaled(1.0)  # a copy (x 1.0 is exact)
    return stats


def _one_block(data):
    """The rows of ``data`` when a pass over it would be one block of an in-memory array whose
    rows (and in-memory weights) have been checked -- after the first pass, or from the start
    for arrays the estimators validated -- else None.  The pass is then one kernel call on the
    array: the same chunks and slots in the same order as ``data.blocks()``, so bit-identical
    statistics without the block generators' per-pass cost (a few per cent of a fit of a few
    hundred rows)."""
    X = data.in_memory
    if (X is None or not data.validated or data.allow_nan or data.block_rows < X.shape[0]
            or not (data.weights is None or isinstance(data.weights, np.ndarray))
            or (data.weights is not None and data.weights.shape[0] != X.shape[0])):
        return None
    return X


@dataclass
class EMResult:
    params: GMMParams
    lower_bound: float
    n_iter: int
    converged: bool
    lower_bounds: list = field(default_factory=list)
    iter_times: list = field(default_factory=list)
    state: object = None  # online EM's running statistics (OnlineState), else None


def run_em(data, sample_weight, params, *, reg_covar, tol, max_iter,
           chunk_rows=DEFAULT_CHUNK_ROWS, lower_bound=-np.inf, callback=None, on_block=None,
           fixed=(), first_stats=None):
    """Run up to ``max_iter`` EM iterations from ``params``.

    Like scikit-learn, the lower bound reported for an iteration is the mean log-likelihood of
    the parameters *before* that iteration's M-step, and EM stops when it changes by less than
    ``tol``.  ``callback(n_iter, lower_bound, change, seconds, params)`` is called after each
    iteration (``params`` are the new parameters, e.g. for checkpoints).  ``fixed`` names
    parameter groups kept at their starting values (see ``_params.m_step``).
    ``first_stats``: the statistics of ``params`` on these rows when the caller has them (the
    k-means start scores its mixture with exactly this E-step); the first iteration then uses
    them instead of a pass.
    """
    data = as_stream(data, sample_weight, chunk_rows)
    cache = {}  # what later E-steps over these rows reuse (``e_step_stats``)
    if first_stats is not None:
        keep_scatter(first_stats, cache, None)
    return em_loop(lambda p: e_step_stats(data, None, p, on_block=on_block, cache=cache), params,
                   reg_covar=reg_covar, tol=tol, max_iter=max_iter, lower_bound=lower_bound,
                   callback=callback, fixed=fixed, first_stats=first_stats)


def em_loop(estep, params, *, reg_covar, tol, max_iter, lower_bound=-np.inf, callback=None,
            fixed=(), first_stats=None):
    """The EM iteration itself, for any ``estep(params) -> Stats`` (CPU passes over a Stream,
    the GPU driver's device-resident kernel); see ``run_em`` for the conventions."""
    result = EMResult(params, lower_bound, 0, False)
    for n_iter in range(1, max_iter + 1):
        t0 = time.perf_counter()
        prev = result.lower_bound
        stats = estep(result.params) if n_iter > 1 or first_stats is None else first_stats
        result.params = m_step(stats, reg_covar, fixed, result.params)
        result.lower_bound = stats.mean_log_likelihood
        result.n_iter = n_iter
        result.lower_bounds.append(result.lower_bound)
        dt = time.perf_counter() - t0
        result.iter_times.append(dt)
        change = result.lower_bound - prev
        if callback is not None:
            callback(n_iter, result.lower_bound, change, dt, result.params)
        if abs(change) < tol:
            result.converged = True
            break
    return result
