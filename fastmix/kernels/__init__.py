"""fastmix kernels: the only package that imports numba.

Drivers call the plain-Python functions below; they prepare array types and call the compiled
kernels in ``cpu_*.py``.  Every function here takes C-contiguous float32/float64 data ``X`` of
shape (N, D) and returns float64 statistics.
"""
from typing import NamedTuple

import numba
import numpy as np

from . import cpu_estep, cpu_kmeans
from .cpu_estep import DIAG, ESTEP, FULL, NEAREST, RESP, SPHERICAL, TIED

KIND_CODES = {"full": FULL, "tied": TIED, "diag": DIAG, "spherical": SPHERICAL}

#: Responsibilities below exp(cut) relative to a row's largest component are set to 0.
CUT = {np.dtype(np.float64): -40.0, np.dtype(np.float32): -20.0}

#: Bound on the memory of per-slot partial statistics (bytes).
SLOT_BYTES = 64 * 2**20


class KernelParams(NamedTuple):
    """Mixture parameters laid out for the kernels (see cpu_estep's docstring).

    means, pc, tmeans, g are in the data dtype; lconst, means64, g64 are float64.
    """
    kind: int
    means: np.ndarray    # (K, D)
    pc: np.ndarray       # (K|1, D|1, D|1) precision-Cholesky factors
    lconst: np.ndarray   # (K,) log pi_k + log det U_k - D/2 log 2 pi
    tmeans: np.ndarray   # (K, D) tied only: (mu_k - g) U; else zeros
    g: np.ndarray        # (D,) tied centre
    means64: np.ndarray  # (K, D) float64 centres of the second moments
    g64: np.ndarray      # (D,) float64 tied centre


def s2_shape(kind, K, D):
    """Shape of the second-moment statistic for a covariance kind."""
    return {FULL: (K, D, D), TIED: (1, D, D), DIAG: (K, 1, D), SPHERICAL: (K, 1, 1)}[kind]


def _n_slots(kind, K, D):
    per_slot = 8 * (K + K * D + int(np.prod(s2_shape(kind, K, D))))
    want = 1 << 30  # as many slots as memory allows: one parallel region per pass
    return int(max(1, min(want, SLOT_BYTES // max(per_slot, 1))))


def _weights(sw):
    return np.empty(0, np.float64) if sw is None else np.ascontiguousarray(sw, dtype=np.float64)


def nearest_params(centres, dtype, kind=SPHERICAL):
    """KernelParams that carry only k-means centres (for NEAREST / RESP passes)."""
    centres = np.ascontiguousarray(centres, dtype=np.float64)
    K, D = centres.shape
    dt = np.dtype(dtype)
    return KernelParams(kind, centres.astype(dt), np.zeros((K, 1, 1), dt), np.zeros(K),
                        np.zeros((K, D), dt), np.zeros(D, dt), centres,
                        centres.mean(axis=0))


def _pass(mode, X, sw, R, kp, chunk_rows):
    K, D = kp.means64.shape
    shp = s2_shape(kp.kind, K, D)
    cut = CUT[X.dtype]
    return cpu_estep.stats_pass(mode, kp.kind, X, _weights(sw), R, kp.means, kp.pc, kp.lconst,
                                kp.tmeans, kp.g, kp.means64, kp.g64, cut, int(chunk_rows),
                                _n_slots(kp.kind, K, D), shp[1], shp[2])


def estep_stats(X, sw, kp, chunk_rows):
    """Fused E-step: returns (nk, s1, s2, ll, ws) for the model ``kp`` (see cpu_estep)."""
    K = kp.means64.shape[0]
    return _pass(ESTEP, X, sw, np.empty((0, K)), kp, chunk_rows)


def resp_stats(X, sw, R, kp, chunk_rows):
    """Statistics for given responsibilities R (N, K), centred on ``kp.means64``/``kp.g64``."""
    R = np.ascontiguousarray(R, dtype=np.float64)
    return _pass(RESP, X, sw, R, kp, chunk_rows)


def nearest_stats(X, sw, kp, chunk_rows):
    """Hard assignment to the nearest of ``kp.means64``; ll is minus the (weighted) inertia."""
    K = kp.means64.shape[0]
    return _pass(NEAREST, X, sw, np.empty((0, K)), kp, chunk_rows)


def log_prob(X, kp, chunk_rows, want_resp=False):
    """Per-row log p(x) (N,) float64, labels (N,) int64 and responsibilities (N, K) or None."""
    N = X.shape[0]
    K = kp.means64.shape[0]
    logp = np.empty(N)
    labels = np.empty(N, dtype=np.int64)
    resp = np.empty((N if want_resp else 0, K))
    cpu_estep.log_prob(kp.kind, X, kp.means, kp.pc, kp.lconst, kp.tmeans, kp.g, CUT[X.dtype],
                       int(chunk_rows), logp, labels, resp)
    return logp, labels, (resp if want_resp else None)


def first_nonfinite_row(X, chunk_rows=65536):
    """Index of the first row with NaN/inf, or -1."""
    return int(cpu_estep.first_nonfinite_row(X, int(chunk_rows)))


def sqdist_to(X, centre):
    out = np.empty(X.shape[0])
    cpu_kmeans.sqdist_to(X, np.ascontiguousarray(centre, dtype=np.float64), out)
    return out


def candidate_potentials(X, sw, cands, mind):
    return cpu_kmeans.candidate_potentials(X, _weights(sw), np.ascontiguousarray(cands, np.float64),
                                           mind)


__all__ = ["KernelParams", "KIND_CODES", "FULL", "TIED", "DIAG", "SPHERICAL", "estep_stats",
           "resp_stats", "nearest_stats", "log_prob", "first_nonfinite_row", "sqdist_to",
           "candidate_potentials", "nearest_params", "s2_shape"]
