"""Masked E-step of the diag and spherical kinds on the GPU: rows with missing entries (NaN),
marginalised exactly -- the CUDA twin of ``cpu_missing.pass_diag_missing``.

The kernels are the fused E-step's (``estep.make_block_steps``: the same blocks, tiles, fixed
partition and in-order sums, no atomics), with per-entry masking:

* log-density of row r, component k: ``lconst_k - sum_{d missing} LM[d, k] - 1/2 sum_{d
  observed} ((x_d - mu_kd) / sigma_kd)^2`` with ``LM[d, k] = -log sigma_kd - 1/2 log 2 pi``
  (float64) -- a missing coordinate's factor is taken back out of ``lconst``; the quadratic
  form in the data dtype, as in ``estep``;
* ``s1[k, d]``: ``w r x_d`` for an observed entry, ``w r mu_kd`` for a missing one
  (E[x_d | x_o, k] = mu_kd: the components are diagonal);
* ``s2[k, 0, d]`` (diag) / ``s2[k, 0, 0]`` (spherical, summed over d), centred on mu_k:
  ``w r (x_d - mu_kd)^2`` observed, ``w r sigma_kd^2`` missing (the conditional variance).

The statistics have the layout of ``estep`` (``[nk | s1 | s2 | ll | ws]``), so the host M-step
is unchanged.  Rows without NaN get exactly the ordinary kernel's terms (the quadratic form
over all d and ``lconst``), though a block is summed by this kernel whether or not it holds a
NaN: the driver sends only data with NaN here.  The full and tied kinds have no GPU masked
kernel (a ValueError in the driver).
"""
import functools
import math

import numpy as np
from numba import cuda

from .. import CUT
from ..cpu.estep import DIAG, SPHERICAL
from . import device
from .device import DEFAULT_BLOCK_ROWS, DEFAULT_THREADS, require_gpu, weights_to_device
from .estep import PARTIAL_BYTES, layout, make_block_steps, n_entries, reduce_blocks, \
    s2_size, tile_rows

LOG_2PI = math.log(2.0 * math.pi)


@functools.lru_cache(maxsize=None)
def build(kind, dtype_name, K, D, R, TPB):
    """Compile-time specialised masked kernels ``(estep_partials, log_prob)`` for one shape."""
    DT = cuda.float32 if dtype_name == "float32" else cuda.float64
    F64 = cuda.float64
    S2 = s2_size(kind, K, D)

    @cuda.jit(device=True)
    def log_density(XS, r, k, MT, PT, LM, lconst):
        q = PT[0, k] - PT[0, k]  # 0 in the data dtype
        sub = 0.0
        for d in range(D):
            x = XS[r, d]
            if x != x:
                sub += LM[d, k]
            else:
                y = (x - MT[d, k]) * PT[d, k]
                q += y * y
        return (lconst[k] - sub) - 0.5 * F64(q)

    @cuda.jit(device=True)
    def tile_densities(XS, AUX, nr, P, LR, t):
        MT, PT, LM, lconst = P
        for p in range(t, nr * K, TPB):  # (row, component) pairs, components fastest
            r = p // K
            k = p - r * K
            LR[r, k] = log_density(XS, r, k, MT, PT, LM, lconst)

    @cuda.jit(device=True)
    def s1_entry(k, d, nr, XS, LR, C):
        C64, VAR = C
        acc = 0.0
        for r in range(nr):
            wr = LR[r, k]
            if wr != 0.0:
                x = F64(XS[r, d])
                acc += wr * (C64[k, d] if x != x else x)
        return acc

    @cuda.jit(device=True)
    def s2_entry(f, nr, XS, WS, LR, AUX, C):
        C64, VAR = C
        acc = 0.0
        if kind == DIAG:                            # (k, 0, d)
            k = f // D
            d = f - k * D
            for r in range(nr):
                wr = LR[r, k]
                if wr != 0.0:
                    x = F64(XS[r, d])
                    if x != x:
                        acc += wr * VAR[k, d]
                    else:
                        y = x - C64[k, d]
                        acc += wr * y * y
        else:                                       # SPHERICAL (k, 0, 0)
            k = f
            for r in range(nr):
                wr = LR[r, k]
                if wr != 0.0:
                    q = 0.0
                    for d in range(D):
                        x = F64(XS[r, d])
                        if x != x:
                            q += VAR[k, d]
                        else:
                            y = x - C64[k, d]
                            q += y * y
                    acc += wr * q
        return acc

    block_partials, block_log_prob = make_block_steps(
        DT, K, D, R, TPB, S2, (((1, D), (1, D)), DT), tile_densities, tile_densities, s2_entry,
        s1_entry)

    @cuda.jit
    def estep_partials(X, sw, MT, PT, LM, lconst, C64, VAR, cut, block_rows, b0, part):
        b = cuda.blockIdx.x
        start = (b0 + b) * block_rows
        block_partials(X, sw, (MT, PT, LM, lconst), (C64, VAR), cut, start,
                       min(X.shape[0], start + block_rows), b, part)

    @cuda.jit
    def log_prob(X, nosw, MT, PT, LM, lconst, cut, block_rows, logp, labels, resp):
        start = cuda.blockIdx.x * block_rows
        block_log_prob(X, nosw, (MT, PT, LM, lconst), cut, start,
                       min(X.shape[0], start + block_rows), logp, labels, resp)

    return estep_partials, log_prob


def _prepare(Xd, kp, var, threads):
    """(kernels, device parameters (MT, PT, LM, lconst, C64, VAR)) for the masked pass."""
    cuda = require_gpu()
    if kp.kind not in (DIAG, SPHERICAL):
        raise ValueError("missing values on the GPU are supported for the diag and spherical "
                         "covariance types only; use device='cpu' for full, tied and lowrank")
    if Xd.dtype != kp.means.dtype:
        raise ValueError(f"kernel parameters are {kp.means.dtype} but the data are {Xd.dtype}")
    K, D = kp.means64.shape
    R = tile_rows(kp.kind, K, D, np.dtype(Xd.dtype).itemsize)
    if R < 1:
        raise ValueError(f"K = {K} components do not fit the GPU kernel's shared-memory tile")
    kernels = build(kp.kind, np.dtype(Xd.dtype).name, K, D, R, int(threads))
    MT, PT, _, _, lconst, C64, _ = layout(kp)
    var = np.ascontiguousarray(np.broadcast_to(np.asarray(var, np.float64).reshape(K, -1),
                                               (K, D)))
    LM = np.ascontiguousarray((-0.5 * np.log(var) - 0.5 * LOG_2PI).T)
    return kernels, tuple(cuda.to_device(a) for a in (MT, PT, LM, lconst, C64, var))


def estep_stats_missing_gpu(Xd, wd, kp, var, block_rows=DEFAULT_BLOCK_ROWS,
                            threads=DEFAULT_THREADS):
    """Masked E-step on the GPU: (nk, s1, s2, ll, ws) float64 host arrays, like
    ``fastmix.kernels.estep_stats_missing`` for the diag and spherical kinds.  ``var``: the
    model's variances (diag (K, D), spherical (K,)) float64."""
    cuda = require_gpu()
    (estep, _), P = _prepare(Xd, kp, var, threads)
    if wd is None:
        wd = weights_to_device(None, Xd.shape[0])
    K, D = kp.means64.shape
    S = n_entries(kp.kind, K, D)
    block_rows = int(block_rows)
    n_blocks = max(1, -(-Xd.shape[0] // block_rows))
    group = int(max(1, PARTIAL_BYTES // (8 * S)))
    nb_max = min(group, n_blocks)
    part = device._alloc(cuda, (nb_max, S), np.float64, "the per-block partial statistics")
    out = cuda.to_device(np.zeros(S))
    for b0 in range(0, n_blocks, group):  # launch groups in order, each added to the totals
        nb = min(group, n_blocks - b0)
        device.configure(estep, nb, int(threads))(
            Xd, wd, *P, float(CUT[np.dtype(Xd.dtype)]), block_rows, b0, part)
        device.configure(reduce_blocks, max(1, -(-S // 128)), 128)(part, nb, True, out)
    tot = out.copy_to_host()
    KD = K * D
    s2 = tot[K + KD:S - 2].reshape((K, 1, D) if kp.kind == DIAG else (K, 1, 1)).copy()
    return tot[:K].copy(), tot[K:K + KD].reshape(K, D).copy(), s2, float(tot[S - 2]), \
        float(tot[S - 1])


def log_prob_missing_gpu(Xd, kp, var, want_resp=False, block_rows=DEFAULT_BLOCK_ROWS,
                         threads=DEFAULT_THREADS):
    """Per-row log p(x_o) (N,), labels (N,), responsibilities (N, K) or None (host arrays) of
    rows with NaN entries, on the GPU (diag and spherical)."""
    cuda = require_gpu()
    (_, logprob), P = _prepare(Xd, kp, var, threads)
    N = Xd.shape[0]
    K = kp.means64.shape[0]
    block_rows = int(block_rows)
    logp = device._alloc(cuda, (N,), np.float64, "log p per row")
    labels = device._alloc(cuda, (N,), np.int64, "labels per row")
    resp = device._alloc(cuda, (N if want_resp else 0, K), np.float64, "the responsibilities")
    nosw = cuda.to_device(np.empty(0, np.float64))
    device.configure(logprob, max(1, -(-N // block_rows)), int(threads))(
        Xd, nosw, *P[:4], float(CUT[np.dtype(Xd.dtype)]), block_rows, logp, labels, resp)
    return (logp.copy_to_host(), labels.copy_to_host(),
            resp.copy_to_host() if want_resp else None)
