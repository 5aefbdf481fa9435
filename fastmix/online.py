"""Online (stepwise) EM, Cappé & Moulines (2009): EM on running sufficient statistics.

For mini-batch t (t = 1, 2, ... after the first) with per-row averaged statistics
``s_hat_t`` computed under the current parameters,

    S_t = (1 - rho_t) S_{t-1} + rho_t s_hat_t,      rho_t = (t + t0)^(-kappa),
    theta_t = M-step(S_t),

with ``kappa`` in (0.5, 1] (the Robbins-Monro conditions) and ``t0 >= 0``.  ``kappa = 1``,
``t0 = 1`` makes S_t the plain running average of the batches' statistics.  The first batch
sets S directly (rho = 1).  The statistics are ``Stats`` divided by their total weight; before
blending, the running second moments are re-centred on the new batch's centres
(``Stats.recentred``), so float64 centred sums are kept throughout.

The driver never touches numba: each update is one kernel E-step over the batch -- the CPU
kernels by default, or any ``estep(X, sample_weight, params) -> Stats`` (``fastmix.gpu``'s
``e_step_stats`` for ``device="cuda"``).
"""
import time
from dataclasses import dataclass

import numpy as np

from ._params import m_step
from .em import EMResult, e_step_stats
from .io import as_stream


def step_size(t, t0, kappa):
    """rho_t = (t + t0)^(-kappa) for update t >= 1 (1.0 for t = 0, the first batch)."""
    return 1.0 if t <= 0 else float((t + t0) ** (-kappa))


def check_step_params(t0, kappa):
    if not (isinstance(kappa, (int, float, np.floating, np.integer)) and 0.5 < kappa <= 1):
        raise ValueError(f"step_decay (kappa) must be in (0.5, 1], got {kappa!r}")
    if not (isinstance(t0, (int, float, np.floating, np.integer)) and np.isfinite(t0)
            and t0 >= 0):
        raise ValueError(f"step_offset (t0) must be a finite number >= 0, got {t0!r}")


@dataclass
class OnlineState:
    """Running per-row-averaged statistics and the number of updates after the first."""
    stats: object
    t: int = 0


def online_update(X, sw, params, state, *, reg_covar, t0, kappa, chunk_rows, fixed=(),
                  estep=None):
    """One stepwise-EM update on the batch ``X`` (N, D); returns (params, state, batch mean
    log-likelihood under the parameters before the update).  ``estep(X, sw, params)``
    replaces the CPU E-step (e.g. the GPU's)."""
    batch = (e_step_stats(X, sw, params, chunk_rows) if estep is None
             else estep(X, sw, params))
    if not batch.ws > 0:
        return params, state, -np.inf
    avg = batch.scaled(1.0 / batch.ws)
    if state is None:
        state = OnlineState(avg, 0)
    else:
        t = state.t + 1
        state = OnlineState(state.stats.blend(avg, step_size(t, t0, kappa)), t)
    return m_step(state.stats, reg_covar, fixed, params), state, batch.mean_log_likelihood


def run_online(data, sample_weight, params, state, *, reg_covar, tol, max_passes, t0, kappa,
               chunk_rows, batch_rows, lower_bound=-np.inf, callback=None, on_block=None,
               fixed=(), estep=None):
    """Passes of stepwise EM over ``data`` in batches of ``batch_rows`` rows (whole chunks).

    The lower bound of a pass is the weighted mean of its batches' log-likelihoods (each under
    the parameters current when the batch was seen); passes stop when it changes by less than
    ``tol`` or after ``max_passes``.  ``callback(pass, lower_bound, change, seconds, params,
    state)`` is called after each pass; ``estep`` as for ``online_update``.  Returns an
    ``em.EMResult`` with ``state`` set."""
    stream = as_stream(data, sample_weight, chunk_rows).rebatched(batch_rows)
    result = EMResult(params, lower_bound, 0, False, state=state)
    for p in range(1, max_passes + 1):
        t_start = time.perf_counter()
        ll = ws = 0.0
        for _, X, w in stream.blocks():
            bw = float(X.shape[0] if w is None else w.sum())
            result.params, result.state, bll = online_update(
                X, w, result.params, result.state, reg_covar=reg_covar, t0=t0, kappa=kappa,
                chunk_rows=stream.chunk_rows, fixed=fixed, estep=estep)
            if bw > 0:
                ll += bll * bw
                ws += bw
            if on_block is not None:
                on_block(X.shape[0])
        prev = result.lower_bound
        result.lower_bound = ll / ws if ws > 0 else -np.inf
        result.n_iter = p
        result.lower_bounds.append(result.lower_bound)
        dt = time.perf_counter() - t_start
        result.iter_times.append(dt)
        change = result.lower_bound - prev
        if callback is not None:
            callback(p, result.lower_bound, change, dt, result.params, result.state)
        if abs(change) < tol:
            result.converged = True
            break
    return result
