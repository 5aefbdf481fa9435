"""Fused EM kernels for the four classic covariance types (CUDA, numba-cuda), and the E-step's
launchers for every kind.

The launchers (end of the module): ``EStepPlan`` picks the kernels of a model -- these, the
lowrank kind's (``lowrank``) or, for the diag kind with many components, the GEMM formulation
(``gemm``) -- uploads the parameters in their layout and launches them in fixed groups;
``estep_stats_gpu`` and ``log_prob_gpu`` are what the drivers call on resident data, and
``stream.StreamedEStep`` runs the same plan on chunks streamed from the host.

The GPU twin of ``cpu_estep``: the same statistics, in the same layout, with the same cut rule
(see cpu_estep's docstring): ``nk (K,)``, ``s1 (K, D)``, ``s2`` centred on the means used for
the densities (full ``(K, D, D)``, tied ``(1, D, D)`` about g, diag ``(K, 1, D)``, spherical
``(K, 1, 1)``), ``ll = sum w log p``, ``ws = sum w``.

Work decomposition (one launch per E-step, then one small reduction launch):

* **Grid**: block ``b`` owns rows ``[b * block_rows, (b + 1) * block_rows)`` and one slot
  ``part[b, :]`` of the partial-statistics array (float64, ``(n_blocks, S)`` with
  ``S = K + K*D + |s2| + 2`` entries laid out ``[nk | s1 | s2 | ll | ws]``).  ``block_rows`` is a
  caller's constant (never derived from the device), so the partition and hence the rounding of
  every sum is fixed.
* **Tiles**: a block walks its rows in tiles of ``R`` rows staged in shared memory:
  (1) the tile of X (data dtype) and its weights are loaded coalesced; (2) the ``R x K``
  log-densities are computed by (row, component) pairs spread over the threads, consecutive
  threads on consecutive components so that the transposed (D, K) parameters are read
  coalesced; (3) one thread per row does the log-sum-exp in component order with the CPU's cut
  rule and overwrites its row with ``w * r``; (4) every thread owns a fixed set of statistic
  entries (``e = t, t + TPB, ...``), sums the tile's rows into each in row order in float64 and
  adds the sum to its own entry of ``part[b]``.  No atomics anywhere: each entry has exactly one
  writer, and the order of every addition is fixed by (block_rows, R).
* **Reduction**: ``reduce_blocks`` gives each entry one thread that adds ``part[0..n_blocks-1]``
  in block order (deterministic), on the device: only the ``S`` totals cross PCIe.  When the
  partials of all blocks would exceed ``PARTIAL_BYTES`` the blocks are launched in groups of a
  fixed size (a function of S only), each group reduced and added to the totals in order.  A host-side
  reduction would copy ``n_blocks * S`` doubles per iteration (64 MB at N = 1e6, D = K = 64 with
  1024-row blocks, ~3 ms over PCIe 4 -- the whole budget of an iteration).

Precision: the quadratic forms (the densities) are evaluated in the dtype of X (float32 stays
float32 on the GPU's fast path); the constants, the log-sum-exp, the responsibilities and every
accumulation are float64, as on the CPU.

Kernels are specialised per (kind, dtype, K, D, R, threads) through closures: the shared-memory
tiles need compile-time shapes and the loops over D and K get constant bounds.  A fit compiles
once per shape.

Status: checked on numba's CUDA simulator (tests/test_gpu.py) and compiled to sm_90 PTX; not yet
timed on a GPU.  Expected costs to measure first on a real device (bench/gpu.py):

* phase (4) adds each entry's tile sum into ``part[b, e]`` in global memory once per tile, i.e.
  ``S`` float64 read-modify-writes per ``R`` rows.  Fine for K, D <= 64 (R = 32); for
  K = 1024, D = 128 (S = 263k, R = 4) this traffic dominates.  Remedies to measure: keep each
  thread's entries in registers across tiles when ``S / threads`` is small; register
  micro-tiles (a thread owns a 4 x 4 block of (k, d) entries, reusing each load 4 times); for
  large K a two-kernel scheme (per-row max and log-sum-exp first, then a 2-D grid over
  (row block, component group) that recomputes its group's densities and accumulates only that
  group's statistics, written once per block).
* phase (3) uses one thread per row (R of the block's threads); a warp per row with shuffles
  would use them all for large K.
* the diag densities could use the expanded GEMM form of the CPU kernel (``[u*u, u] @ W``).
"""
import functools
import math

import numpy as np
from numba import cuda

from .. import CUT, LOWRANK, n_factors, s2_shape
from ..cpu.estep import DIAG, FULL, SPHERICAL, TIED
from . import device
from .device import DEFAULT_BLOCK_ROWS, DEFAULT_THREADS, require_gpu, weights_to_device

EXP_MIN_ARG = -700.0

#: Bytes of static shared memory a block's tile may use (the portable limit is 48 KiB).
SHARED_BYTES = 40 * 1024
#: Bound on the device memory of one launch's per-block partial statistics.  A constant (never
#: the device's free memory), so that the launch groups and hence the results are reproducible.
PARTIAL_BYTES = 1 << 30
#: Largest tile height (rows staged in shared memory at once).
MAX_TILE_ROWS = 32


def s2_size(kind, K, D):
    return {FULL: K * D * D, TIED: D * D, DIAG: K * D, SPHERICAL: K}[kind]


def n_entries(kind, K, D):
    """Entries of one block's partial statistics: [nk | s1 | s2 | ll | ws]."""
    return K + K * D + s2_size(kind, K, D) + 2


def tile_rows(kind, K, D, itemsize):
    """Rows per shared-memory tile for this shape (0 if not even one row fits)."""
    per_row = K * 8 + D * itemsize * (2 if kind == TIED else 1) + 16
    return int(min(MAX_TILE_ROWS, SHARED_BYTES // per_row))


@functools.lru_cache(maxsize=None)
def make_load_tile(D, TPB):
    """Device function ``load_tile(X, sw, r0, nr, XS, WS, t)``: thread t's share of staging rows
    ``r0 .. r0 + nr - 1`` of X into XS (R, D) (data dtype, coalesced) and their weights into WS
    (1.0 when ``sw`` is empty).  Shared by the kernels of every covariance kind."""

    @cuda.jit(device=True)
    def load_tile(X, sw, r0, nr, XS, WS, t):
        for p in range(t, nr * D, TPB):
            r = p // D
            XS[r, p - r * D] = X[r0 + r, p - r * D]
        for r in range(t, nr, TPB):
            WS[r] = sw[r0 + r] if sw.shape[0] > 0 else 1.0

    return load_tile


@functools.lru_cache(maxsize=None)
def make_row_lse(K):
    """Device function ``row_lse(LR, r, cut, w)`` for K components (shared by every kind)."""

    @cuda.jit(device=True)
    def row_lse(LR, r, cut, w):
        """Log-sum-exp of LR[r, :] (component order, cut rule of cpu_estep); overwrites the row
        with w * responsibilities.  Returns (log p, argmax)."""
        m = -math.inf
        amax = 0
        for k in range(K):
            if LR[r, k] > m:
                m = LR[r, k]
                amax = k
        if m == -math.inf:
            for k in range(K):
                LR[r, k] = 0.0
            return -math.inf, amax
        s = 0.0
        for k in range(K):
            tt = max(LR[r, k] - m, EXP_MIN_ARG)
            e = math.exp(tt) if tt > cut else 0.0
            LR[r, k] = e
            s += e
        inv = 1.0 / s
        for k in range(K):
            LR[r, k] = w * (LR[r, k] * inv)
        return m + math.log(s), amax

    return row_lse


@functools.lru_cache(maxsize=None)
def make_tile_steps(K, TPB):
    """The steps every kind's kernels take once a tile's log-densities are in LR (R, K):

    * ``tile_lse(LR, WS, LP, nr, cut, t)`` (E-step): one thread per row, LR[r] becomes
      WS[r] * responsibilities and LP[r] the row's log p; ends with a barrier;
    * ``tile_outputs(LR, r0, nr, cut, t, logp, labels, resp, want_resp)`` (log_prob): per-row
      log p and argmax label, then (``want_resp``) the responsibilities written as coalesced
      rows of ``resp``; ends with a barrier.

    Every thread of the block must call them (they contain ``syncthreads``)."""
    row_lse = make_row_lse(K)

    @cuda.jit(device=True)
    def tile_lse(LR, WS, LP, nr, cut, t):
        for r in range(t, nr, TPB):  # one thread per row
            lp, _ = row_lse(LR, r, cut, WS[r])
            LP[r] = lp
        cuda.syncthreads()

    @cuda.jit(device=True)
    def tile_outputs(LR, r0, nr, cut, t, logp, labels, resp, want_resp):
        for r in range(t, nr, TPB):
            lp, am = row_lse(LR, r, cut, 1.0)
            logp[r0 + r] = lp
            labels[r0 + r] = am
        cuda.syncthreads()
        if want_resp:
            for p in range(t, nr * K, TPB):  # coalesced rows of resp
                r = p // K
                resp[r0 + r, p - r * K] = LR[r, p - r * K]
        cuda.syncthreads()

    return tile_lse, tile_outputs


def make_block_steps(DT, K, D, R, TPB, S2, aux, stats_densities, lp_densities, s2_entry,
                     s1_entry=None):
    """The block skeleton of every fused E-step family (this module's kinds and ``lowrank``).

    A family supplies, as device functions, what differs:

    * ``stats_densities(XS, AUX, nr, P, LR, t)`` and ``lp_densities(...)``: the log-densities
      of the tile's ``nr`` rows (XS, data dtype) into LR (R, K) float64, for the E-step and for
      log_prob; every thread calls them, they may use barriers, and the E-step's may also fill
      AUX, shared memory of shape and dtype ``aux = ((shape for the E-step, shape for
      log_prob), dtype)`` that its statistics read;
    * ``s2_entry(f, nr, XS, WS, LR, AUX, C)``: the tile's sum of entry f of s2 (rows in order,
      float64; LR holds w r);
    * optionally ``s1_entry(k, d, nr, XS, LR, C)``: the tile's sum of s1[k, d] (default: the
      sum of w r x_d; the masked kernels of ``cuda.missing`` put mu_kd for a missing x_d);

    and gets two device functions, run by every thread of the block:

    * ``block_partials(X, sw, P, C, cut, start, stop, b, part)``: the statistics
      ``[nk | s1 | s2 | ll | ws]`` of rows ``start .. stop - 1`` into ``part[b, :]`` -- thread t
      owns entries t, t + TPB, ...; tiles of R rows: load, densities, log-sum-exp (``w r`` and
      log p), then each entry's tile sum added once (the module docstring's phases 1-4);
    * ``block_log_prob(X, nosw, P, cut, start, stop, logp, labels, resp)``: per-row log p,
      argmax label and (when resp has N rows) responsibilities.

    ``P``: the density parameters, ``C``: what the statistics need besides (tuples of device
    arrays, built by the kernels from their arguments)."""
    F64 = cuda.float64
    KD = K * D
    S = K + KD + S2 + 2
    (aux_stats, aux_lp), aux_dt = aux
    load_tile = make_load_tile(D, TPB)
    tile_lse, tile_outputs = make_tile_steps(K, TPB)

    if s1_entry is None:
        @cuda.jit(device=True)
        def s1_entry(k, d, nr, XS, LR, C):
            acc = 0.0
            for r in range(nr):
                wr = LR[r, k]
                if wr != 0.0:
                    acc += wr * F64(XS[r, d])
            return acc

    @cuda.jit(device=True)
    def entry_sum(e, nr, XS, WS, LR, LP, AUX, C):
        """Sum over the tile's rows (in order) of statistic entry e (float64); LR holds w r."""
        acc = 0.0
        if e < K:                                   # nk[k]
            for r in range(nr):
                acc += LR[r, e]
        elif e < K + KD:                            # s1[k, d]
            f = e - K
            k = f // D
            acc = s1_entry(k, f - k * D, nr, XS, LR, C)
        elif e < K + KD + S2:                       # the family's s2
            acc = s2_entry(e - K - KD, nr, XS, WS, LR, AUX, C)
        elif e == K + KD + S2:                      # ll
            for r in range(nr):
                acc += WS[r] * LP[r]
        else:                                       # ws
            for r in range(nr):
                acc += WS[r]
        return acc

    @cuda.jit(device=True)
    def block_partials(X, sw, P, C, cut, start, stop, b, part):
        XS = cuda.shared.array((R, D), DT)
        AUX = cuda.shared.array(aux_stats, aux_dt)
        LR = cuda.shared.array((R, K), F64)
        LP = cuda.shared.array(R, F64)
        WS = cuda.shared.array(R, F64)
        t = cuda.threadIdx.x
        for e in range(t, S, TPB):  # thread t owns entries t, t + TPB, ... of part[b]
            part[b, e] = 0.0
        for r0 in range(start, stop, R):
            nr = min(R, stop - r0)
            load_tile(X, sw, r0, nr, XS, WS, t)
            cuda.syncthreads()
            stats_densities(XS, AUX, nr, P, LR, t)
            cuda.syncthreads()
            tile_lse(LR, WS, LP, nr, cut, t)
            for e in range(t, S, TPB):
                part[b, e] += entry_sum(e, nr, XS, WS, LR, LP, AUX, C)
            cuda.syncthreads()  # the next tile overwrites the shared arrays

    @cuda.jit(device=True)
    def block_log_prob(X, nosw, P, cut, start, stop, logp, labels, resp):
        XS = cuda.shared.array((R, D), DT)
        AUX = cuda.shared.array(aux_lp, aux_dt)
        LR = cuda.shared.array((R, K), F64)
        WS = cuda.shared.array(R, F64)
        t = cuda.threadIdx.x
        want_resp = resp.shape[0] == X.shape[0]
        for r0 in range(start, stop, R):
            nr = min(R, stop - r0)
            load_tile(X, nosw, r0, nr, XS, WS, t)
            cuda.syncthreads()
            lp_densities(XS, AUX, nr, P, LR, t)
            cuda.syncthreads()
            tile_outputs(LR, r0, nr, cut, t, logp, labels, resp, want_resp)

    return block_partials, block_log_prob


@functools.lru_cache(maxsize=None)
def build(kind, dtype_name, K, D, R, TPB):
    """Compile-time specialised kernels ``(estep_partials, log_prob)`` for one shape."""
    DT = cuda.float32 if dtype_name == "float32" else cuda.float64
    F64 = cuda.float64
    S2 = s2_size(kind, K, D)
    ZR = R if kind == TIED else 1  # the tied kind stages (x - g) U per row

    @cuda.jit(device=True)
    def tied_z(XS, g, PCT, ZS, nr, t):
        # ZS[r, j] = sum_{i <= j} (x_ri - g_i) U_ij, in the data dtype
        for p in range(t, nr * D, TPB):
            r = p // D
            j = p - r * D
            z = (XS[r, 0] - g[0]) * PCT[0, j, 0]
            for i in range(1, j + 1):
                z += (XS[r, i] - g[i]) * PCT[i, j, 0]
            ZS[r, j] = z

    @cuda.jit(device=True)
    def log_density(XS, ZS, r, k, MT, PT, PCT, lconst):
        """lconst_k - 1/2 (quadratic form of row r, component k); the form in the data dtype."""
        if kind == DIAG or kind == SPHERICAL:
            y = (XS[r, 0] - MT[0, k]) * PT[0, k]
            q = y * y
            for d in range(1, D):
                y = (XS[r, d] - MT[d, k]) * PT[d, k]
                q += y * y
        elif kind == FULL:
            # z_j = sum_{i <= j} (x_i - mu_ki) U_k[i, j]  (U_k upper-triangular)
            q = (XS[r, 0] - MT[0, k]) * PCT[0, 0, k]
            q = q * q
            for j in range(1, D):
                z = (XS[r, 0] - MT[0, k]) * PCT[0, j, k]
                for i in range(1, j + 1):
                    z += (XS[r, i] - MT[i, k]) * PCT[i, j, k]
                q += z * z
        else:  # TIED: MT holds the transformed means (mu_k - g) U, transposed
            y = ZS[r, 0] - MT[0, k]
            q = y * y
            for d in range(1, D):
                y = ZS[r, d] - MT[d, k]
                q += y * y
        return lconst[k] - 0.5 * F64(q)

    @cuda.jit(device=True)
    def densities(XS, ZS, nr, MT, PT, PCT, lconst, LR, t):
        for p in range(t, nr * K, TPB):  # (row, component) pairs, components fastest
            r = p // K
            k = p - r * K
            LR[r, k] = log_density(XS, ZS, r, k, MT, PT, PCT, lconst)

    @cuda.jit(device=True)
    def tile_densities(XS, ZS, nr, P, LR, t):
        MT, PT, PCT, g, lconst = P
        if kind == TIED:
            tied_z(XS, g, PCT, ZS, nr, t)
            cuda.syncthreads()
        densities(XS, ZS, nr, MT, PT, PCT, lconst, LR, t)

    @cuda.jit(device=True)
    def s2_entry(f, nr, XS, WS, LR, ZS, C):
        """Sum over the tile's rows (in order) of entry f of s2 (float64); LR holds w r."""
        C64, g64 = C
        acc = 0.0
        if kind == DIAG:                            # (k, 0, d)
            k = f // D
            d = f - k * D
            for r in range(nr):
                wr = LR[r, k]
                if wr != 0.0:
                    y = F64(XS[r, d]) - C64[k, d]
                    acc += wr * y * y
        elif kind == SPHERICAL:                     # (k, 0, 0)
            k = f
            for r in range(nr):
                wr = LR[r, k]
                if wr != 0.0:
                    q = 0.0
                    for d in range(D):
                        y = F64(XS[r, d]) - C64[k, d]
                        q += y * y
                    acc += wr * q
        elif kind == FULL:                          # (k, i, j)
            k = f // (D * D)
            f2 = f - k * D * D
            i = f2 // D
            j = f2 - i * D
            for r in range(nr):
                wr = LR[r, k]
                if wr != 0.0:
                    acc += (wr * (F64(XS[r, i]) - C64[k, i])) * (F64(XS[r, j]) - C64[k, j])
        else:                                       # TIED (0, i, j): sum w (x - g)(x - g)^T
            i = f // D
            j = f - i * D
            for r in range(nr):
                acc += (WS[r] * (F64(XS[r, i]) - g64[i])) * (F64(XS[r, j]) - g64[j])
        return acc

    block_partials, block_log_prob = make_block_steps(
        DT, K, D, R, TPB, S2, (((ZR, D), (ZR, D)), DT), tile_densities, tile_densities, s2_entry)

    @cuda.jit
    def estep_partials(X, sw, MT, PT, PCT, g, lconst, C64, g64, cut, block_rows, b0, part):
        """Block b: the statistics of rows [(b0 + b) * block_rows, ...) into part[b, :]."""
        b = cuda.blockIdx.x
        start = (b0 + b) * block_rows
        block_partials(X, sw, (MT, PT, PCT, g, lconst), (C64, g64), cut, start,
                       min(X.shape[0], start + block_rows), b, part)

    @cuda.jit
    def log_prob(X, nosw, MT, PT, PCT, g, lconst, cut, block_rows, logp, labels, resp):
        """Per-row log p, argmax label and (when resp has N rows) responsibilities; ``nosw`` is
        an empty float64 array (no weights)."""
        start = cuda.blockIdx.x * block_rows
        block_log_prob(X, nosw, (MT, PT, PCT, g, lconst), cut, start,
                       min(X.shape[0], start + block_rows), logp, labels, resp)

    return estep_partials, log_prob


@cuda.jit
def reduce_blocks(part, nb, accumulate, out):
    """out[e] (+)= sum_{b < nb} part[b, e], added in block order b = 0, 1, ... (deterministic).

    With ``accumulate`` the group's sum is added to ``out`` (launch groups in order), else it
    replaces it."""
    e = cuda.grid(1)
    if e < part.shape[1]:
        acc = 0.0
        for b in range(nb):
            acc += part[b, e]
        out[e] = out[e] + acc if accumulate else acc


# ------------------------------------------------------------- plan and launchers ----------
def layout(kp):
    """Host arrays in the GPU kernels' layout: transposed (D, K) parameters for coalesced reads.

    MT: means (D, K) (tied: transformed means (mu_k - g) U); PT: 1/sigma (D, K) for diag and
    spherical; PCT: upper-triangular factors (D, D, K) for full, (D, D, 1) for tied."""
    dt = kp.means.dtype
    K, D = kp.means.shape
    one = np.zeros((1, 1), dt)
    pct = np.zeros((1, 1, 1), dt)
    if kp.kind == TIED:
        MT = kp.tmeans.T
        PT = one
        pct = kp.pc[0][:, :, None]
    else:
        MT = kp.means.T
        if kp.kind == DIAG:
            PT = kp.pc[:, 0, :].T
        elif kp.kind == SPHERICAL:
            PT = np.repeat(kp.pc[:, 0, 0][None, :], D, axis=0)
        else:
            PT = one
        if kp.kind == FULL:
            pct = np.transpose(kp.pc, (1, 2, 0))
    g64 = kp.g64 if kp.kind == TIED else np.zeros(D)
    g = kp.g if kp.kind == TIED else np.zeros(D, dt)
    return [np.ascontiguousarray(a) for a in (MT, PT, pct, g)] + [
        np.ascontiguousarray(kp.lconst, np.float64), np.ascontiguousarray(kp.means64),
        np.ascontiguousarray(g64, np.float64)]


def _kernels(kp, dtype, threads):
    """``(estep_partials, log_prob)`` compiled for this model's kind and shape (the lowrank
    kind's from ``lowrank``), or a ValueError when one row of the shared-memory tile does not
    fit."""
    K, D = kp.means64.shape
    dt = np.dtype(dtype)
    if kp.kind == LOWRANK:
        from . import lowrank as gpu_lowrank
        q = n_factors(kp)
        R = gpu_lowrank.tile_rows(K, D, q, dt.itemsize)
        if R < 1:
            raise ValueError(
                f"lowrank with K = {K} components, q = {q} factors and D = {D} {dt.name} "
                f"features does not fit the GPU kernel's shared-memory tile: one row needs "
                f"8 K (1 + q) + {dt.itemsize} D + 16 = "
                f"{gpu_lowrank.row_bytes(K, D, q, dt.itemsize)} bytes, the tile has "
                f"{SHARED_BYTES}; use fewer components or factors, or device='cpu'")
        return gpu_lowrank.build(dt.name, K, D, q, R, int(threads))
    R = tile_rows(kp.kind, K, D, dt.itemsize)
    if R < 1:
        raise ValueError(f"K = {K} components do not fit the GPU kernel's shared-memory tile "
                         f"({SHARED_BYTES} bytes; at most ~{SHARED_BYTES // 8 - 16}"
                         f" components)")
    return build(kp.kind, dt.name, K, D, R, int(threads))


def _device_params(cuda, kp):
    """The parameters on the device in the kernels' layout: ``layout(kp)`` (MT, PT, PCT, g,
    lconst, C64, g64), or for the lowrank kind ``lowrank.layout(kp)`` (MT, PT, BT, CT, lconst,
    C64)."""
    if kp.kind == LOWRANK:
        from . import lowrank as gpu_lowrank
        return tuple(cuda.to_device(a) for a in gpu_lowrank.layout(kp))
    return tuple(cuda.to_device(a) for a in layout(kp))


def _check(Xd, kp):
    if Xd.dtype != kp.means.dtype:
        raise ValueError(f"kernel parameters are {kp.means.dtype} but the data are {Xd.dtype}")
    if Xd.shape[1] != kp.means64.shape[1]:
        raise ValueError(f"data have {Xd.shape[1]} features, the model {kp.means64.shape[1]}")


class EStepPlan:
    """One E-step configuration on the device: the compiled kernels for (kind, dtype, K, D,
    threads), the parameters uploaded in the kernels' layout, and the fixed launch grouping.

    ``launch`` adds the statistics of one device array of rows into a totals vector ``out``
    (float64 ``(S,)``, ``[nk | s1 | s2 | ll | ws]``) on a CUDA stream, without synchronising:
    ``estep_stats_gpu`` runs it once on resident data, ``StreamedEStep`` once per host chunk on
    two streams.

    ``formulation`` ("auto", "fused", "gemm"; ``gpu_gemm.choose_formulation``) picks the kernels
    of the diag kind; ``self.formulation`` says which run.  With "gemm" (``gpu_gemm``) the
    ``partials`` are the formulation's scratch buffers (L: min(gpu_gemm.CHUNK, rows) x K
    float64, one set per launch stream), the totals are centred on the shared centre g, and
    ``unpack`` converts them to the layout above; callers see no difference."""

    def __init__(self, kp, dtype, block_rows=DEFAULT_BLOCK_ROWS, threads=DEFAULT_THREADS,
                 formulation="auto", scratch=None):
        from . import gemm as gpu_gemm
        cuda = require_gpu()
        #: where ``partials`` and ``totals`` come from: a ``DeviceScratch`` kept by the caller
        #: across E-steps, or fresh allocations
        self.scratch = scratch
        if np.dtype(dtype) != kp.means.dtype:
            raise ValueError(f"kernel parameters are {kp.means.dtype} but the data are "
                             f"{np.dtype(dtype)}")
        self.kp = kp
        self.K, self.D = kp.means64.shape
        #: "fused" (gpu_estep / gpu_lowrank) or "gemm" (gpu_gemm): the formulation that runs
        self.formulation = gpu_gemm.choose_formulation(kp, formulation)
        self.cut = float(CUT[np.dtype(dtype)])
        self._gemm = None
        if self.formulation == "gemm":
            self._gemm = gpu_gemm.GemmEStep(
                kp, dtype, lambda shape, dt, what: device._alloc(cuda, shape, dt, what), self.cut)
            self.S = self._gemm.S
            self.block_rows, self.threads = int(block_rows), int(threads)
            return
        self.estep, _ = _kernels(kp, dtype, threads)
        self.q = n_factors(kp)
        self.lowrank = kp.kind == LOWRANK
        if self.lowrank:
            from . import lowrank as gpu_lowrank
            self.S = gpu_lowrank.n_entries(self.K, self.D, self.q)
        else:
            self.S = n_entries(kp.kind, self.K, self.D)
        self.params = _device_params(cuda, kp)
        self.block_rows = int(block_rows)
        self.threads = int(threads)
        self.reduce = reduce_blocks
        #: blocks per launch: a function of S only, so the grouping is reproducible
        self.group = int(max(1, PARTIAL_BYTES // (8 * self.S)))

    def _alloc(self, slot):
        """alloc(shape, dtype, what) from the scratch (slot: one set per launch stream)."""
        if self.scratch is None:
            return lambda shape, dt, what: device._alloc(require_gpu(), shape, dt, what)
        return lambda shape, dt, what: self.scratch.alloc(shape, dt, what, slot)

    def partials(self, n_rows, slot=0):
        """Device buffer for the per-block partials of a launch over up to ``n_rows`` rows (the
        GEMM formulation: its scratch buffers, ``gpu_gemm.Scratch``).  One per launch stream
        (``slot``)."""
        if self._gemm is not None:
            return self._gemm.partials(n_rows, self._alloc(slot))
        nb = min(self.group, max(1, -(-int(n_rows) // self.block_rows)))
        return self._alloc(slot)((nb, self.S), np.float64,
                                 f"the per-block partial statistics ({nb} blocks x {self.S} "
                                 f"float64)")

    def totals(self, slot=0):
        """A zeroed float64 totals vector (S,) on the device."""
        out = self._alloc(slot)((self.S,), np.float64, "the statistics totals")
        out.copy_to_device(np.zeros(self.S))
        return out

    def launch(self, Xd, wd, part, out, stream=0):
        """out += the statistics of the rows of ``Xd`` (weights ``wd``, empty = all ones),
        block groups launched and reduced in order on ``stream``.  ``part`` comes from
        ``partials`` and is not used by another stream meanwhile."""
        _check(Xd, self.kp)
        if self._gemm is not None:
            self._gemm.launch(Xd, wd, part, out, stream)
            return
        N = Xd.shape[0]
        n_blocks = max(1, -(-N // self.block_rows))
        group = part.shape[0]
        for b0 in range(0, n_blocks, group):  # launch groups in order; each adds to the totals
            nb = min(group, n_blocks - b0)
            device.configure(self.estep, nb, self.threads, stream)(
                Xd, wd, *self.params, self.cut, self.block_rows, b0, part)
            device.configure(self.reduce, max(1, -(-self.S // 128)), 128, stream)(
                part, nb, True, out)

    def unpack(self, tot):
        """(nk, s1, s2, ll, ws) host float64 arrays from a totals vector (host; totals of
        several launches may be added first)."""
        if self._gemm is not None:
            return self._gemm.unpack(tot)
        K, D, S = self.K, self.D, self.S
        KD = K * D
        nk = tot[:K].copy()
        s1 = tot[K:K + KD].reshape(K, D).copy()
        s2 = tot[K + KD:S - 2].reshape(s2_shape(self.kp.kind, K, D, self.q)).copy()
        if self.lowrank:  # + sum w r Cov[z | x] = nk_k C_k C_k^T (the same for every row)
            from . import lowrank as gpu_lowrank
            q = self.q
            s2[:, 1:, D:D + q] += nk[:, None, None] * gpu_lowrank.posterior_cov(self.kp)
        return nk, s1, s2, float(tot[S - 2]), float(tot[S - 1])


def resolve_formulation(kp, formulation="auto"):
    """"fused" or "gemm": the E-step formulation ``EStepPlan`` runs for ``kp`` when asked for
    ``formulation`` (see ``gpu_gemm.choose_formulation``)."""
    require_gpu()
    from . import gemm as gpu_gemm
    return gpu_gemm.choose_formulation(kp, formulation)


def estep_stats_gpu(Xd, wd, kp, block_rows=DEFAULT_BLOCK_ROWS, threads=DEFAULT_THREADS,
                    formulation="auto", scratch=None):
    """E-step on the GPU: (nk, s1, s2, ll, ws) as float64 host arrays, like
    ``fastmix.kernels.estep_stats``.  ``Xd`` from ``to_device``; ``wd`` from
    ``weights_to_device`` (or None).  ``formulation``: "auto", "fused" (one fused kernel,
    ``gpu_estep``) or "gemm" (diag with a shared centre: densities and statistics as GEMMs,
    ``gpu_gemm``; falls back to "fused" where it does not apply); see
    ``gpu_gemm.choose_formulation``.  ``scratch``: a ``DeviceScratch`` to take the work
    buffers from (kept by a driver across iterations), else they are allocated here."""
    require_gpu()
    _check(Xd, kp)
    if wd is None:
        wd = weights_to_device(None, Xd.shape[0])
    plan = EStepPlan(kp, Xd.dtype, block_rows, threads, formulation, scratch)
    out = plan.totals()
    plan.launch(Xd, wd, plan.partials(Xd.shape[0]), out)
    return plan.unpack(out.copy_to_host())


def log_prob_gpu(Xd, kp, want_resp=False, block_rows=DEFAULT_BLOCK_ROWS,
                 threads=DEFAULT_THREADS, to_host=True):
    """Per-row log p(x) (N,) float64, labels (N,) int64, responsibilities (N, K) float64 or None,
    like ``fastmix.kernels.log_prob``.  With ``to_host=False`` the device arrays are returned."""
    cuda = require_gpu()
    _check(Xd, kp)
    N, D = Xd.shape
    K = kp.means64.shape[0]
    _, logprob = _kernels(kp, Xd.dtype, threads)
    block_rows = int(block_rows)
    n_blocks = max(1, -(-N // block_rows))
    P = _device_params(cuda, kp)
    if kp.kind == LOWRANK:  # MT, PT, BT, lconst
        params = (P[0], P[1], P[2], P[4])
    else:                   # MT, PT, PCT, g, lconst
        params = P[:5]
    logp = device._alloc(cuda, (N,), np.float64, "log p per row")
    labels = device._alloc(cuda, (N,), np.int64, "labels per row")
    resp = device._alloc(cuda, (N if want_resp else 0, K), np.float64,
                         f"the responsibilities ({N} x {K} float64)")
    nosw = cuda.to_device(np.empty(0, np.float64))
    device.configure(logprob, n_blocks, int(threads))(
        Xd, nosw, *params, float(CUT[np.dtype(Xd.dtype)]), block_rows, logp, labels, resp)
    if not to_host:
        return logp, labels, (resp if want_resp else None)
    return (logp.copy_to_host(), labels.copy_to_host(),
            resp.copy_to_host() if want_resp else None)
