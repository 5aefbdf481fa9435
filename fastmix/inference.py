"""Inference driver: log-densities, labels and responsibilities of data read block by block.

The estimator validates and prepares a ``io.Stream``; this module walks its blocks and
calls the kernels, so no N-sized array is needed unless the caller collects one.
"""
import numpy as np

from . import kernels


def iter_log_prob(data, params, chunk_rows, want_resp=False):
    """Yield (start_row, logp (n,) float64, labels (n,) int64, resp (n, K) float64 or None)
    for each block of the Stream ``data`` under ``params``.  A Stream whose NaN entries are
    missing values (``allow_nan``) is scored on each row's observed entries."""
    kp = params.kernel_params(data.dtype)
    masked = getattr(data, "allow_nan", False)
    if masked:
        from .missing import model_arrays
        cov, logw = model_arrays(params)
    for start, X, _ in data.blocks():
        if masked:
            logp, labels, resp = kernels.log_prob_missing(X, kp, cov, logw, chunk_rows,
                                                          want_resp)
        else:
            logp, labels, resp = kernels.log_prob(X, kp, chunk_rows, want_resp)
        yield start, logp, labels, resp


def log_prob(data, params, chunk_rows, want_resp=False):
    """(logp (N,), labels (N,), resp (N, K) or None) over all blocks of ``data``."""
    parts = list(iter_log_prob(data, params, chunk_rows, want_resp))
    if len(parts) == 1:
        return parts[0][1:]
    return (np.concatenate([q[1] for q in parts]), np.concatenate([q[2] for q in parts]),
            np.concatenate([q[3] for q in parts]) if want_resp else None)


def total_log_likelihood(data, params, chunk_rows):
    """(sum of log p(x), number of rows) without keeping per-row values."""
    total, n = 0.0, 0
    for _, logp, _, _ in iter_log_prob(data, params, chunk_rows):
        total += float(np.sum(logp))
        n += logp.shape[0]
    return total, n
