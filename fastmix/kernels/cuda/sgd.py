"""Mini-batch SGD step for the diagonal max-component GMM on the GPU (CUDA, numba-cuda), with
its launcher (``SGDDeviceState``: the parameters kept on the device; ``sgd_minibatch_gpu``: a
segment of mini-batch steps).

The GPU twin of ``cpu_sgd.sgd_minibatch`` (see its docstring and ``cpu_sgd``'s for the model,
the objectives and the gradients): the same inputs and outputs -- logits ``xi`` (K,), means
``mu`` (K, D), square roots of the diagonal precisions ``s`` (K, D), all float64 as on the CPU;
the smoothing ``g`` (K, K) with its exact zeros (truncated smoothing); ``exact`` (log-likelihood
objective); one step per mini-batch of ``batch`` consecutive rows with the gradients averaged
over the batch under the parameters at its start; s clipped to [s_min, s_max]; components whose
weights are all zero in a batch left untouched; ``out[b]`` = the batch's mean objective.  The
rows are read in the order given by an index array (the driver's shuffled epoch order) or in
storage order, in the data's dtype, and converted to float64 on load (the CPU path converts
the rows to float64 before its kernel: the same values).

Work decomposition: three launches per mini-batch, queued on the stream one after the other
with no host synchronisation in between; the parameters stay on the device across batches and
segments, and a segment of many batches returns only its ``out`` (n_steps,) to the host.

1. ``sgd_loglik`` -- grid (K, ceil(B / tile_rows)): block (j, tile) computes
   l_j(x_i) = xi_j - lse + logdet_j - D/2 log 2 pi - 1/2 sum_d (s_jd (x_id - mu_jd))^2 for the
   tile's samples, one thread per (j, i) pair (strided over the tile), the square norm by the
   CPU kernel's own function (4 interleaved partial sums); into ``ell`` (K, batch).
2. ``sgd_weights`` -- one block: one thread per sample (strided) computes its weights w[:, i]
   (softmax for ``exact``; else the best-matching unit of the smoothed objective and its row of
   g, or for g = I the argmax alone) and objective, with the CPU kernel's ``_weights_row``; then thread 0 adds the objectives in sample
   order into ``out[b]``; one thread per component updates its logit from sum_i (w_ji - pi_j)
   (samples in order); thread 0 then computes the log-sum-exp of the new logits for the next
   batch (components in order, as the CPU kernel).
3. ``sgd_update`` -- grid K: block j updates component j, one thread per feature d (strided):
   the thread sums its (j, d) gradient entries over the samples in order (only samples with
   w_ji != 0, like the CPU kernel) and applies the clipped step; then log det_j = sum_d log s_jd
   for the next batch as partial sums over fixed chunks of ``LOG_CHUNK`` consecutive features
   (one thread per chunk) added in chunk order by thread 0.  Launched once with
   ``update=False`` before the first batch of a segment to compute log det and the log-sum-exp
   from the uploaded state.

Deterministic: every value is computed by one thread in an order fixed by the data and the
batch size alone, never by the launch shape; no atomics.  Results are bit-identical run to run
and for any ``threads`` / ``tile_rows`` (tests/test_gpu_sgd.py checks both); they agree with
the CPU kernel to rounding, not bit for bit (log det summed in chunks, not in one chain; the
CUDA compiler's FMA contractions and libdevice's exp/log).

Status: checked on numba's CUDA simulator only (tests/test_gpu_sgd.py); it has never run on a
GPU.  What to measure first on a real device:

* Host launch overhead: three numba launches per batch (each ~10-30 us of Python dispatch with
  this many arguments).  For small K * D * batch the step is bound by it.  Remedies, in order
  of effort: pre-configured launchers; a CUDA graph capturing a segment's launches; one
  persistent cooperative kernel per segment with a grid-wide sync between the three phases
  (``cuda.cg.this_grid().sync()``; the simulator runs grid syncs with one block only, so that
  variant could not be tested here).
* ``sgd_weights`` is a single block: fine while K^2 (smoothed, after truncation) or K (g = I,
  exact) per sample times batch / threads stays small; for K in the hundreds with wide
  smoothing split it over blocks of samples and move the logit update into ``sgd_update``.
* ``sgd_loglik`` reads each row with one thread (row-strided, uncoalesced across a warp, though
  each thread walks its row through L1); a warp per (j, i) pair with a fixed-order shuffle
  reduction, or staging the batch's rows in shared memory per block, should be faster for
  large D.
* ``sgd_update`` uses K blocks only (25 for the default 5 x 5 grid: a fraction of the SMs);
  splitting the features of a component over blocks needs a second pass for log det.
"""
import math

import numpy as np
from numba import cuda

from .. import _shared
from . import device
from .device import SGD_THREADS, SGD_TILE_ROWS, require_gpu

LOG2PI = math.log(2.0 * math.pi)
#: Consecutive features per partial sum of log det (one thread each, added in order).
LOG_CHUNK = 8

F64 = cuda.float64


@cuda.jit(device=True)
def _row(rows, first, i):
    """The data row of the segment's i-th sample: rows[first + i], or first + i without an
    index array (``rows`` empty)."""
    if rows.shape[0] > 0:
        return rows[first + i]
    return first + i


# The per-sample math is kernels/_shared.py's, which the CPU kernel compiles too (one
# definition for both targets, so they cannot drift apart); on the device float32 rows are
# widened to float64 where they meet the float64 parameters, as the CPU path widens them first.
#: sum_d (s_jd (x_nd - mu_jd))^2 in the CPU kernel's 4 interleaved partial sums
_sqnorm = cuda.jit(device=True)(_shared.sqnorm_row)
#: log-sum-exp of a vector (components in order)
_logsumexp = cuda.jit(device=True)(_shared.logsumexp)
#: a sample's weights w (K,) from its log-likelihoods ell (K,); returns its objective
_weights = cuda.jit(device=True)(_shared.weights_row)


@cuda.jit
def sgd_loglik(X, rows, first, B, tile_rows, xi, mu, s, logdet, lse, ell):
    """Phase 1: ell[j, i] = l_j(x_i) for the batch's B samples (rows first.. of the order)."""
    j = cuda.blockIdx.x
    i0 = cuda.blockIdx.y * tile_rows
    t = cuda.threadIdx.x
    T = cuda.blockDim.x
    D = mu.shape[1]
    c = -0.5 * D * LOG2PI
    base = xi[j] - lse[0] + logdet[j] + c
    stop = min(B, i0 + tile_rows)
    for i in range(i0 + t, stop, T):
        ell[j, i] = base - 0.5 * _sqnorm(X, _row(rows, first, i), mu, s, j)


@cuda.jit
def sgd_weights(ell, B, g, smooth, exact, xi, lse, eps, lam_pi, w, objs, out, b):
    """Phase 2 (one block): weights and objectives per sample, out[b], the logit step and the
    next batch's log-sum-exp of the logits."""
    t = cuda.threadIdx.x
    T = cuda.blockDim.x
    K = xi.shape[0]
    lse_old = lse[0]
    for i in range(t, B, T):
        objs[i] = _weights(ell[:, i], g, smooth, exact, w[:, i])
    cuda.syncthreads()
    inv = 1.0 / B
    if t == 0:
        tot = 0.0
        for i in range(B):
            tot += objs[i]
        out[b] = tot * inv
    for j in range(t, K, T):
        pj = math.exp(xi[j] - lse_old)
        gx = 0.0
        for i in range(B):
            gx += w[j, i] - pj
        xi[j] += eps * lam_pi * gx * inv
    cuda.syncthreads()
    if t == 0:
        lse[0] = _logsumexp(xi)


@cuda.jit
def sgd_update(X, rows, first, B, w, mu, s, eps, lam_mu, lam_s, s_min, s_max, update, logs,
               logdet, xi, lse):
    """Phase 3 (block j = component j): the mean/precision step of component j (``update``),
    then log det_j.  With ``update`` False: log det of every component and (block 0) the
    log-sum-exp of the logits, from the current state (a segment's prologue)."""
    j = cuda.blockIdx.x
    t = cuda.threadIdx.x
    T = cuda.blockDim.x
    D = mu.shape[1]
    if update:
        any_w = False
        for i in range(B):
            if w[j, i] != 0.0:
                any_w = True
        if not any_w:  # uniform over the block: the component is left as it is
            return
        inv = 1.0 / B
        a = eps * lam_mu * inv
        bb = eps * lam_s * inv
        for d in range(t, D, T):
            m = mu[j, d]
            sj = s[j, d]
            gm = 0.0
            gs = 0.0
            for i in range(B):
                wij = w[j, i]
                if wij != 0.0:
                    diff = F64(X[_row(rows, first, i), d]) - m
                    gm += wij * sj * sj * diff
                    gs += wij * (1.0 / sj - sj * diff * diff)
            mu[j, d] = m + a * gm
            s[j, d] = min(max(sj + bb * gs, s_min), s_max)
        cuda.syncthreads()
    nch = (D + LOG_CHUNK - 1) // LOG_CHUNK
    for ch in range(t, nch, T):
        acc = 0.0
        for d in range(ch * LOG_CHUNK, min(D, ch * LOG_CHUNK + LOG_CHUNK)):
            acc += math.log(s[j, d])
        logs[j, ch] = acc
    cuda.syncthreads()
    if t == 0:
        tot = 0.0
        for ch in range(nch):
            tot += logs[j, ch]
        logdet[j] = tot
        if not update and j == 0:
            lse[0] = _logsumexp(xi)


# ------------------------------------------------------------------ launcher ----------------
class SGDDeviceState:
    """The diagonal SGD parameters on the GPU -- logits xi (K,), means mu (K, D), square roots
    of the precisions s (K, D), float64 copies of the host arrays given -- with the scratch of
    mini-batches of up to ``batch`` rows and the launch shape (``threads`` per block,
    ``tile_rows`` samples per log-likelihood block; neither changes the results).
    ``sgd_minibatch_gpu`` updates them in place; ``download`` copies them back."""

    def __init__(self, xi, mu, s, batch, threads=None, tile_rows=None):
        cuda = require_gpu()
        xi = np.ascontiguousarray(xi, dtype=np.float64)
        mu = np.ascontiguousarray(mu, dtype=np.float64)
        s = np.ascontiguousarray(s, dtype=np.float64)
        K, D = mu.shape
        if xi.shape != (K,) or s.shape != (K, D):
            raise ValueError(f"inconsistent SGD state shapes: xi {xi.shape}, mu {mu.shape}, "
                             f"s {s.shape}")
        self.batch = int(batch)
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch!r}")
        self.threads = int(SGD_THREADS if threads is None else threads)
        self.tile_rows = int(SGD_TILE_ROWS if tile_rows is None else tile_rows)
        if self.threads < 1 or self.tile_rows < 1:
            raise ValueError("threads and tile_rows must be >= 1")
        self.K, self.D = K, D
        self.xi = device._upload(cuda, xi, "the SGD logits")
        self.mu = device._upload(cuda, mu, "the SGD means")
        self.s = device._upload(cuda, s, "the SGD precision roots")
        nch = -(-D // LOG_CHUNK)
        self.ell = device._alloc(cuda, (K, self.batch), np.float64,
                                 f"the mini-batch log-likelihoods ({K} x {self.batch} float64)")
        self.w = device._alloc(cuda, (K, self.batch), np.float64,
                               f"the mini-batch weights ({K} x {self.batch} float64)")
        self.objs = device._alloc(cuda, (self.batch,), np.float64, "the mini-batch objectives")
        self.logs = device._alloc(cuda, (K, nch), np.float64, "the log-determinant partial sums")
        self.logdet = device._alloc(cuda, (K,), np.float64, "the log-determinants")
        self.lse = device._alloc(cuda, (1,), np.float64, "the log-sum-exp of the logits")
        self.no_rows = cuda.to_device(np.empty(0, np.int64))

    def download(self, xi, mu, s):
        """Copy the device state into the host arrays xi, mu, s (in place)."""
        xi[...] = self.xi.copy_to_host()
        mu[...] = self.mu.copy_to_host()
        s[...] = self.s.copy_to_host()


def sgd_minibatch_gpu(Xd, rows, first, n_rows, st, g, exact, eps, lam_pi, lam_mu, lam_s, s_min,
                      s_max):
    """``cpu_sgd.sgd_minibatch`` on the GPU over ``n_rows`` rows: mini-batches of ``st.batch``
    consecutive samples of the order ``rows[first:first + n_rows]`` (device int64 rows of
    ``Xd``, from ``rows_to_device``) or, with ``rows`` None, of ``Xd[first:first + n_rows]``.
    ``st`` (``SGDDeviceState``) is updated in place on the device; returns the per-step
    objectives (ceil(n_rows / batch),) float64 on the host -- the only copy back."""
    cuda = require_gpu()
    from . import sgd as gpu_sgd
    if Xd.ndim != 2 or Xd.shape[1] != st.D:
        raise ValueError(f"data have shape {tuple(Xd.shape)}, the SGD state {st.D} features")
    first, n_rows = int(first), int(n_rows)
    limit = Xd.shape[0] if rows is None else rows.shape[0]
    if first < 0 or n_rows < 0 or first + n_rows > limit:
        raise ValueError(f"rows [{first}, {first + n_rows}) out of range (0..{limit})")
    g = np.ascontiguousarray(g, dtype=np.float64)
    K, batch, T = st.K, st.batch, st.threads
    if g.shape != (K, K):
        raise ValueError(f"smoothing has shape {g.shape}, expected ({K}, {K})")
    n_steps = -(-n_rows // batch)
    if n_steps == 0:
        return np.empty(0)
    smooth = not np.array_equal(g, np.eye(K))
    gd = cuda.to_device(g)
    rows = st.no_rows if rows is None else rows
    out = device._alloc(cuda, (n_steps,), np.float64, "the per-step objectives")
    exact = bool(exact)
    eps, lam_pi, lam_mu, lam_s = float(eps), float(lam_pi), float(lam_mu), float(lam_s)
    s_min, s_max = float(s_min), float(s_max)
    update = device.configure(sgd_update, K, T)
    loglik = sgd_loglik
    weights = device.configure(sgd_weights, 1, T)
    # prologue: log det and the log-sum-exp from the state as it is now
    update(Xd, rows, first, 0, st.w, st.mu, st.s, eps, lam_mu, lam_s, s_min, s_max, False,
           st.logs, st.logdet, st.xi, st.lse)
    for b in range(n_steps):  # queued launches, no host synchronisation until the copy below
        f = first + b * batch
        B = min(batch, n_rows - b * batch)
        device.configure(loglik, (K, -(-B // st.tile_rows)), T)(
            Xd, rows, f, B, st.tile_rows, st.xi, st.mu, st.s, st.logdet, st.lse, st.ell)
        weights(st.ell, B, gd, smooth, exact, st.xi, st.lse, eps, lam_pi, st.w, st.objs, out, b)
        update(Xd, rows, f, B, st.w, st.mu, st.s, eps, lam_mu, lam_s, s_min, s_max, True,
               st.logs, st.logdet, st.xi, st.lse)
    return out.copy_to_host()
