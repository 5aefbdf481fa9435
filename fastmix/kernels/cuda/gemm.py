"""Diagonal-covariance E-step as GEMMs on the GPU, for many components (numba-cuda).

The fused kernel of ``gpu_estep`` keeps one block's partial statistics, ``S = K + 2 K D + 2``
float64 entries, in global memory and read-modify-writes all of them once per shared-memory tile
of ``R`` rows.  For large ``K D`` the tile shrinks (``R = 4`` rows at K = 1024, D = 128) and that
traffic (``16 S / R`` bytes per row, ~1 TB per E-step at N = 1e6) dominates.  This module
computes the same statistics with the expanded form of the diagonal quadratic that the CPU
kernel uses (``cpu_estep._chunk_diag``): with a shared centre ``g`` (``KernelParams.g64`` has D
entries, i.e. every mean is close enough to g) and ``u = x - g``,

    log pi_k N(x | mu_k, diag s_k^2) = [u*u, u] @ W[:, k] + c0[k]

with ``W`` (2D, K) = ``[-p/2 ; p (mu - g)]``, ``p = 1/s^2``, ``c0 = lconst - 1/2 sum p (mu - g)^2``
(built on the host exactly as the CPU builds them), and the statistics as
``nk = R^T 1``, ``S1u = R^T U``, ``S2u = R^T U^2``, re-centred at the end.

Work decomposition.  Rows are processed in chunks of ``CHUNK`` rows (a module constant), so the
N x K matrix exists only for one chunk (``L``: CHUNK x K float64, allocated once per plan, or
once per stream for ``StreamedEStep``).  Per chunk, on the caller's stream:

1. ``densities``: ``L = [u*u, u] @ W + c0``, a shared-memory tiled GEMM.  A block owns a
   ``BM x BK`` tile (rows x components); it walks the D features in ``BD``-wide slabs, staging
   ``u = x - g`` (data dtype, transposed, padded by one column against bank conflicts) and the
   two matching slabs of ``W`` in shared memory.  Each of its ``(BM/TM) (BK/TN)`` threads owns a
   ``TM x TN`` register micro-tile (rows ``ty + i BM/TM``, components ``tx + j BK/TN``: strided,
   so a warp's shared reads and global writes are contiguous) and adds, per feature, ``u^2 W_q +
   u W_l``: the A operand ``[u*u, u]`` is formed on the fly from the one staged copy of u.  The
   products accumulate in the data dtype (as the CPU's sgemm/dgemm do); each density is then
   converted to float64 and ``c0`` added, ``L`` is float64.
2. ``row_lse``: ``G = ROW_THREADS`` threads per row (``ROWS_PER_BLOCK`` rows per block).  Lane
   ``l`` holds components ``l, l + G, ...`` of its row in registers (a local array of
   ``ceil(K / G)`` doubles: 32 at K = 1024, G = 32); the row maximum and the sum of the
   exponentials are reduced over the lanes by a fixed shared-memory tree (``G/2, G/4, ... 1``),
   so the order of every addition is fixed: deterministic.  The CPU's cut rule: a component more
   than ``-cut`` below the row maximum gets ``r = 0``.  The row is overwritten with ``w r``
   (float64) and ``w log p``, ``w`` go to a per-row buffer.  A warp-shuffle reduction would save
   the ``2 log2 G`` barriers, but numba's CUDA simulator (the tests' target) has no shuffles; a
   shared-memory tree runs the same code on both.
3. ``stats``: ``nk``, ``S1u = R^T U`` and ``S2u = R^T U^2`` (``U = x - g`` in float64) as a
   tiled GEMM with the rows as the inner dimension.  Grid ``(feature tiles, component tiles,
   row slabs)``: a block owns ``SK x SF`` (components x features) of the statistics over one
   row slab, stages ``SR`` rows of ``R`` and ``U`` at a time in shared memory, and each thread
   keeps a ``TK x TF`` micro-tile of both sums (and nk of its TK components) in float64
   registers, adding the rows in order.  The chunk's rows are split into a fixed number of slabs
   (``SLABS``, fewer for chunks of fewer rows: a function of the chunk length only); each block
   writes its sums once into its slab's row of a float64 partial array, whose slabs
   ``gpu_estep.reduce_blocks`` adds in slab order into the totals.  No atomics, one writer per
   entry, every summation order fixed by (CHUNK, SLABS, the tile constants): bit-reproducible.
   ``ll`` and ``ws`` are summed in row order per slab by one thread of the slab's first block.

The totals vector of this path is ``[nk | S1u | S2u | ll | ws]`` (centred on g); it is linear
in the rows, so totals of several launches (streams, chunks) may be added before ``to_layout``
converts them on the host in float64 to the CPU layout: ``s1 = S1u + nk g``,
``s2 = S2u - 2 (mu - g) S1u + nk (mu - g)^2`` (the CPU's own re-centring formula).

Precision (the CPU kernel's semantics): densities in the data dtype (float32 products and sums
for float32 data, as the CPU's sgemm), expanded around g, which ``kernel_params`` allows only
when every mean is close to g; ``c0``, the log-sum-exp, the responsibilities and every
statistic in float64.  The statistics GEMM multiplies and adds in float64 even for float32
data: the re-centring of ``s2`` cancels up to ``max ||mu - g||^2_p`` (<= 1e3 in float32), which
would amplify float32 product errors (~1e-7 relative) to ~1e-4 in s2.  A "float32 within a short
slab, then float64" variant would double phase 3's throughput; it is not implemented.

Selection: ``choose_formulation`` (``formulation="auto"``) takes this path for the diag kind
when the KernelParams has a shared centre and ``K >= GEMM_MIN_K`` and ``K D >= GEMM_MIN_KD``;
``"gemm"`` forces it wherever it applies (diag with a shared centre) and ``"fused"`` never takes
it; without a shared centre (or for another kind) every setting falls back to the fused kernel.
The thresholds are guesses: they must be measured on a GPU (``bench/gpu.py --cases estep
--formulation fused|gemm``).

Status: checked on numba's CUDA simulator (tests/test_gpu_gemm.py) and typed and lowered to
NVVM IR for the real target (sm_90; PTX where NVRTC is installed); not timed on a GPU.
Estimated cost at N = 1e6, D = 128, K = 1024, float32 data, default constants (an estimate from
operation counts and H100 SXM peak rates, not a measurement; an H100 PCIe has ~25 % less):

* phase 1: 4 N K D = 5.2e11 float32 flops (two FMAs per row, component, feature) -> >= 7.8 ms
  at 67 TFLOP/s; writes L once, 8 N K = 8.2 GB -> >= 2.4 ms at 3.35 TB/s, overlapped with the
  arithmetic; X is re-read once per component tile (K / BK = 16 x 0.5 GB, mostly from L2: the
  component tiles of a row tile are consecutive blocks).  Per feature a thread reads TM + 2 TN
  = 12 shared values for 2 TM TN = 32 FMAs.  Expect 10-16 ms (a SIMT GEMM in numba at 50-80 %
  of peak).
* phase 2: reads and writes L, 16 N K = 16.4 GB -> >= 4.9 ms (memory-bound; 1e9 float64 exps).
* phase 3: 4 N K D = 5.2e11 float64 flops -> >= 15.4 ms at 34 TFLOP/s (no FP64 tensor cores from
  numba); reads R ``D / SF`` = 2 times (16.4 GB, partly from L2) and writes the slab partials,
  ``8 SLABS S`` = 34 MB per chunk (0.5 GB per E-step).  Expect 20-30 ms: the limiting phase.
* total (the phases of a chunk run one after the other on one stream): >= ~28 ms, likely
  35-50 ms against the 40 ms target.  Next steps to measure: the
  float32-slab statistics (halves phase 3 for float32 data if the re-centring error allows),
  recomputing ``r`` from ``L`` in phase 3 (phase 2 then writes two doubles per row instead of L),
  and float32 L/R for float32 data (halves the traffic of phases 1-3).
"""
import functools
import math
from typing import NamedTuple

import numpy as np
from numba import cuda

from ..cpu.estep import DIAG
from . import device  # device.configure: every launch checked against CUDA's limits
from .estep import EXP_MIN_ARG, reduce_blocks

F64 = cuda.float64  # bound here: inside a kernel the simulator's stand-in module has no types

#: Rows per chunk: the rows whose L (CHUNK x K float64) is materialised at once.  A constant, so
#: the chunking (and hence every rounding) does not depend on the device.
CHUNK = 65536
#: Row slabs of a chunk in the statistics GEMM (its third grid dimension); fewer for short chunks.
SLABS = 16

# Phase 1 (densities): block tile BM rows x BK components, BD-wide feature slabs, TM x TN
# register micro-tiles per thread: (BM / TM) (BK / TN) threads per block.
BM, BK, BD, TM, TN = 64, 64, 16, 4, 4
# Phase 2 (log-sum-exp): ROW_THREADS (a power of 2) threads per row, ROWS_PER_BLOCK rows a block.
ROW_THREADS, ROWS_PER_BLOCK = 32, 8
# Phase 3 (statistics): block tile SK components x SF features, SR rows staged at a time, TK x TF
# register micro-tiles per thread: (SK / TK) (SF / TF) threads per block.
SK, SF, SR, TK, TF = 64, 64, 16, 4, 4
#: Threads per block of the ordered slab reduction (one thread per statistic entry).
REDUCE_THREADS = 128

#: ``formulation="auto"`` takes the GEMM path when K >= GEMM_MIN_K and K * D >= GEMM_MIN_KD
#: (and the kind is diag with a shared centre).  Unmeasured guesses: time both formulations on a
#: GPU (bench/gpu.py --formulation) and move them.
GEMM_MIN_K = 128
GEMM_MIN_KD = 4096

FORMULATIONS = ("auto", "fused", "gemm")


class Tiles(NamedTuple):
    """The launch constants of one plan (read from the module when the plan is made)."""
    chunk: int
    slabs: int
    bm: int
    bk: int
    bd: int
    tm: int
    tn: int
    row_threads: int
    rows_per_block: int
    sk: int
    sf: int
    sr: int
    tk: int
    tf: int
    reduce_threads: int

    @classmethod
    def current(cls):
        return cls(CHUNK, SLABS, BM, BK, BD, TM, TN, ROW_THREADS, ROWS_PER_BLOCK,
                   SK, SF, SR, TK, TF, REDUCE_THREADS)


def applies(kp):
    """True when the GEMM formulation can serve these KernelParams: the diag kind with a shared
    centre g (``g64`` has D entries)."""
    D = kp.means64.shape[1]
    return kp.kind == DIAG and kp.g64.shape[0] == D


def choose_formulation(kp, formulation="auto"):
    """"gemm" or "fused": the E-step formulation that runs for ``kp`` under the caller's
    ``formulation`` ("auto", "fused" or "gemm"; see the module docstring)."""
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}, got {formulation!r}")
    if formulation == "fused" or not applies(kp):
        return "fused"
    if formulation == "gemm":
        return "gemm"
    K, D = kp.means64.shape
    return "gemm" if K >= GEMM_MIN_K and K * D >= GEMM_MIN_KD else "fused"


def n_entries(K, D):
    """Entries of the totals: [nk | S1u | S2u | ll | ws] (the fused diag kernel's count)."""
    return K + 2 * K * D + 2


def slab_rows(nc, slabs):
    """(number of row slabs, rows per slab) of a chunk of ``nc`` rows: at most ``slabs``, none
    empty; a function of the chunk length only."""
    per = -(-nc // max(1, min(slabs, nc)))
    return -(-nc // per), per


def host_operands(kp):
    """(W (2D, K) data dtype, c0 (K,) float64, g (D,) data dtype, g64 (D,) float64), built as
    ``cpu_estep._chunk_diag`` builds them."""
    K, D = kp.means64.shape
    dt = kp.means.dtype
    p = np.asarray(kp.pc[:, 0, :], np.float64) ** 2             # (K, D)
    dl = kp.means64 - kp.g64[None, :]                            # (K, D)
    W = np.empty((2 * D, K), dt)
    W[:D] = (-0.5 * p).T
    W[D:] = (p * dl).T
    acc = np.zeros(K)
    for d in range(D):  # the CPU's order
        acc += p[:, d] * dl[:, d] * dl[:, d]
    c0 = np.asarray(kp.lconst, np.float64) - 0.5 * acc
    return (np.ascontiguousarray(W), np.ascontiguousarray(c0),
            np.ascontiguousarray(kp.g, dt), np.ascontiguousarray(kp.g64, np.float64))


def to_layout(tot, means64, g64):
    """(nk, s1, s2 (K, 1, D), ll, ws) in the CPU layout from a host totals vector of this path:
    re-centred from g onto each mean in float64, as ``cpu_estep._chunk_diag`` does."""
    K, D = means64.shape
    KD = K * D
    nk = tot[:K].copy()
    S1u = tot[K:K + KD].reshape(K, D)
    S2u = tot[K + KD:K + 2 * KD].reshape(K, D)
    dl = means64 - g64[None, :]
    s1 = S1u + nk[:, None] * g64[None, :]
    s2 = S2u - 2.0 * dl * S1u + nk[:, None] * dl * dl
    return nk, s1, s2.reshape(K, 1, D), float(tot[K + 2 * KD]), float(tot[K + 2 * KD + 1])


@functools.lru_cache(maxsize=None)
def build(dtype_name, K, D, tiles):
    """Compile-time specialised kernels ``(densities, row_lse, stats)`` for one shape."""
    T = tiles
    for a, b, what in ((T.bm, T.tm, "BM / TM"), (T.bk, T.tn, "BK / TN"),
                       (T.sk, T.tk, "SK / TK"), (T.sf, T.tf, "SF / TF")):
        if a % b:
            raise ValueError(f"{what} must be a whole number, got {a} / {b}")
    if T.row_threads & (T.row_threads - 1):
        raise ValueError(f"ROW_THREADS must be a power of 2, got {T.row_threads}")
    DT = cuda.float32 if dtype_name == "float32" else cuda.float64
    KD = K * D
    S = n_entries(K, D)
    bm, bk, bd, tm, tn = T.bm, T.bk, T.bd, T.tm, T.tn
    NTX = bk // tn            # phase 1: threads along components
    NTY = bm // tm            # phase 1: threads along rows
    NT1 = NTX * NTY
    BMP = bm + 1              # phase 1: padded row length of the staged u (bank conflicts)
    G, RPB = T.row_threads, T.rows_per_block
    NJ = -(-K // G)           # phase 2: components per lane
    sk, sf, sr, tk, tf = T.sk, T.sf, T.sr, T.tk, T.tf
    NFX = sf // tf            # phase 3: threads along features
    NKY = sk // tk            # phase 3: threads along components
    NT3 = NFX * NKY

    @cuda.jit
    def densities(X, g, W, c0, row0, nc, L):
        """L[r, k] = sum_d (u_d^2 W[d, k] + u_d W[D + d, k]) + c0[k], u = X[row0 + r] - g, for
        the block's BM x BK tile (r < nc, k < K)."""
        US = cuda.shared.array((bd, BMP), DT)
        WQ = cuda.shared.array((bd, bk), DT)
        WL = cuda.shared.array((bd, bk), DT)
        acc = cuda.local.array((tm, tn), DT)
        aq = cuda.local.array(tm, DT)
        al = cuda.local.array(tm, DT)
        bq = cuda.local.array(tn, DT)
        bl = cuda.local.array(tn, DT)
        t = cuda.threadIdx.x
        tx = t % NTX
        ty = t // NTX
        k0 = cuda.blockIdx.x * bk
        r0 = cuda.blockIdx.y * bm
        zero = DT(0.0)
        for i in range(tm):
            for j in range(tn):
                acc[i, j] = zero
        for d0 in range(0, D, bd):
            for p in range(t, bm * bd, NT1):  # consecutive threads: consecutive features
                r = p // bd
                dd = p - r * bd
                v = zero
                if r0 + r < nc and d0 + dd < D:
                    v = X[row0 + r0 + r, d0 + dd] - g[d0 + dd]
                US[dd, r] = v
            for p in range(t, bd * bk, NT1):  # consecutive threads: consecutive components
                dd = p // bk
                kk = p - dd * bk
                q = zero
                lin = zero
                if d0 + dd < D and k0 + kk < K:
                    q = W[d0 + dd, k0 + kk]
                    lin = W[D + d0 + dd, k0 + kk]
                WQ[dd, kk] = q
                WL[dd, kk] = lin
            cuda.syncthreads()
            for dd in range(bd):  # zero padding past D adds exact zeros
                for i in range(tm):
                    a = US[dd, ty + i * NTY]
                    al[i] = a
                    aq[i] = a * a
                for j in range(tn):
                    bq[j] = WQ[dd, tx + j * NTX]
                    bl[j] = WL[dd, tx + j * NTX]
                for i in range(tm):
                    for j in range(tn):
                        acc[i, j] += aq[i] * bq[j] + al[i] * bl[j]
            cuda.syncthreads()
        for i in range(tm):
            r = r0 + ty + i * NTY
            if r < nc:
                for j in range(tn):
                    k = k0 + tx + j * NTX
                    if k < K:
                        L[r, k] = F64(acc[i, j]) + c0[k]

    @cuda.jit
    def row_lse(L, sw, row0, nc, cut, LLW):
        """Rows r < nc of L: log-sum-exp with the cut rule; L[r] <- w r_k, LLW[r] <- (w log p,
        w).  G threads per row, reductions over them by a fixed shared-memory tree."""
        RED = cuda.shared.array((RPB, G), F64)
        vals = cuda.local.array(NJ, F64)
        t = cuda.threadIdx.x
        lane = t % G
        rb = t // G
        r = cuda.blockIdx.x * RPB + rb
        active = r < nc
        m = -math.inf
        if active:
            for j in range(NJ):
                k = lane + j * G
                v = L[r, k] if k < K else -math.inf
                vals[j] = v
                if v > m:
                    m = v
        RED[rb, lane] = m
        cuda.syncthreads()
        s = G // 2
        while s > 0:
            if lane < s and RED[rb, lane + s] > RED[rb, lane]:
                RED[rb, lane] = RED[rb, lane + s]
            cuda.syncthreads()
            s //= 2
        m = RED[rb, 0]
        cuda.syncthreads()  # every lane has read the maximum before RED is reused
        part = 0.0
        if active and m != -math.inf:
            for j in range(NJ):  # vals past K are -inf: exp(max(-inf, -700)) is cut to 0
                tt = max(vals[j] - m, EXP_MIN_ARG)
                e = math.exp(tt) if tt > cut else 0.0
                vals[j] = e
                part += e
        RED[rb, lane] = part
        cuda.syncthreads()
        s = G // 2
        while s > 0:
            if lane < s:
                RED[rb, lane] = RED[rb, lane] + RED[rb, lane + s]
            cuda.syncthreads()
            s //= 2
        total = RED[rb, 0]
        if active:
            w = sw[row0 + r] if sw.shape[0] > 0 else 1.0
            if m == -math.inf:  # every component impossible (as the CPU: r = 0, log p = -inf)
                lp = -math.inf
                for j in range(NJ):
                    k = lane + j * G
                    if k < K:
                        L[r, k] = 0.0
            else:
                inv = 1.0 / total
                lp = m + math.log(total)
                for j in range(NJ):
                    k = lane + j * G
                    if k < K:
                        L[r, k] = w * (vals[j] * inv)
            if lane == 0:
                LLW[r, 0] = w * lp
                LLW[r, 1] = w

    @cuda.jit
    def stats(X, g64, L, LLW, row0, nc, per_slab, part):
        """part[s] <- [nk | S1u | S2u | ll | ws] of slab s = blockIdx.z (rows s * per_slab ...
        of the chunk), the block's SK x SF tile of them; L holds w r (float64)."""
        RS = cuda.shared.array((sr, sk), F64)
        US = cuda.shared.array((sr, sf), F64)
        a1 = cuda.local.array((tk, tf), F64)
        a2 = cuda.local.array((tk, tf), F64)
        nka = cuda.local.array(tk, F64)
        rv = cuda.local.array(tk, F64)
        uv = cuda.local.array(tf, F64)
        uu = cuda.local.array(tf, F64)
        t = cuda.threadIdx.x
        tx = t % NFX
        ty = t // NFX
        f0 = cuda.blockIdx.x * sf
        k0 = cuda.blockIdx.y * sk
        sl = cuda.blockIdx.z
        start = sl * per_slab
        stop = min(nc, start + per_slab)
        lead = cuda.blockIdx.x == 0 and cuda.blockIdx.y == 0 and t == 0
        for i in range(tk):
            nka[i] = 0.0
            for j in range(tf):
                a1[i, j] = 0.0
                a2[i, j] = 0.0
        ll = 0.0
        ws = 0.0
        for q0 in range(start, stop, sr):
            nr = min(sr, stop - q0)
            for p in range(t, sr * sk, NT3):  # consecutive threads: consecutive components
                rr = p // sk
                kk = p - rr * sk
                v = 0.0
                if rr < nr and k0 + kk < K:
                    v = L[q0 + rr, k0 + kk]
                RS[rr, kk] = v
            for p in range(t, sr * sf, NT3):  # consecutive threads: consecutive features
                rr = p // sf
                ff = p - rr * sf
                v = 0.0
                if rr < nr and f0 + ff < D:
                    v = F64(X[row0 + q0 + rr, f0 + ff]) - g64[f0 + ff]
                US[rr, ff] = v
            if lead:
                for rr in range(nr):
                    ll += LLW[q0 + rr, 0]
                    ws += LLW[q0 + rr, 1]
            cuda.syncthreads()
            for rr in range(sr):  # rows in order; padding rows have r = 0: exact zeros
                for i in range(tk):
                    rv[i] = RS[rr, ty + i * NKY]
                    nka[i] += rv[i]
                for j in range(tf):
                    u = US[rr, tx + j * NFX]
                    uv[j] = u
                    uu[j] = u * u
                for i in range(tk):
                    for j in range(tf):
                        a1[i, j] += rv[i] * uv[j]
                        a2[i, j] += rv[i] * uu[j]
            cuda.syncthreads()
        for i in range(tk):
            k = k0 + ty + i * NKY
            if k < K:
                if cuda.blockIdx.x == 0 and tx == 0:
                    part[sl, k] = nka[i]
                for j in range(tf):
                    f = f0 + tx + j * NFX
                    if f < D:
                        part[sl, K + k * D + f] = a1[i, j]
                        part[sl, K + KD + k * D + f] = a2[i, j]
        if lead:
            part[sl, S - 2] = ll
            part[sl, S - 1] = ws

    return densities, row_lse, stats


class Scratch:
    """Device buffers of one launch stream: L (rows x K float64, densities then w r), the per-row
    (w log p, w), and the slab partials (SLABS x S float64)."""

    def __init__(self, L, LLW, part):
        self.L, self.LLW, self.part = L, LLW, part

    @property
    def rows(self):
        return self.L.shape[0]


class GemmEStep:
    """The GEMM formulation behind ``gpu.EStepPlan`` (same ``partials`` / ``totals`` /
    ``launch`` / ``unpack`` protocol; its totals are centred on g, see ``to_layout``)."""

    def __init__(self, kp, dtype, alloc, cut):
        self.kp = kp
        self.K, self.D = kp.means64.shape
        self.S = n_entries(self.K, self.D)
        self.tiles = Tiles.current()
        self.dens, self.lse, self.stats = build(np.dtype(dtype).name, self.K, self.D, self.tiles)
        self.W, self.c0, self.g, self.g64 = (cuda.to_device(a) for a in host_operands(kp))
        self.cut = float(cut)
        self._alloc = alloc

    def partials(self, n_rows, alloc=None):
        """Scratch buffers for launches over up to ``n_rows`` rows (one set per stream);
        ``alloc(shape, dtype, what)`` overrides the constructor's allocator."""
        T = self.tiles
        rows = max(1, min(T.chunk, int(n_rows)))
        nsl = slab_rows(rows, T.slabs)[0]
        alloc = self._alloc if alloc is None else alloc
        return Scratch(
            alloc((rows, self.K), np.float64,
                  f"the GEMM E-step's densities ({rows} rows x {self.K} float64)"),
            alloc((rows, 2), np.float64, "the GEMM E-step's per-row log p"),
            alloc((nsl, self.S), np.float64,
                  f"the GEMM E-step's slab partials ({nsl} x {self.S} float64)"))

    def launch(self, Xd, wd, scratch, out, stream=0):
        """out += [nk | S1u | S2u | ll | ws] of the rows of Xd, chunk after chunk on ``stream``."""
        T = self.tiles
        N = Xd.shape[0]
        K, D = self.K, self.D
        if min(T.chunk, N) > scratch.rows:
            raise ValueError(f"scratch buffers hold {scratch.rows} rows, a chunk needs "
                             f"{min(T.chunk, N)}")
        g1 = (-(-K // T.bk), 0)
        nt1 = (T.bm // T.tm) * (T.bk // T.tn)
        nt3 = (T.sk // T.tk) * (T.sf // T.tf)
        nred = max(1, -(-self.S // T.reduce_threads))
        for row0 in range(0, N, T.chunk):
            nc = min(T.chunk, N - row0)
            device.configure(self.dens, (g1[0], -(-nc // T.bm)), nt1, stream)(
                Xd, self.g, self.W, self.c0, row0, nc, scratch.L)
            device.configure(self.lse, -(-nc // T.rows_per_block),
                             T.rows_per_block * T.row_threads, stream)(
                scratch.L, wd, row0, nc, self.cut, scratch.LLW)
            nsl, per = slab_rows(nc, T.slabs)
            device.configure(self.stats, (-(-D // T.sf), -(-K // T.sk), nsl), nt3, stream)(
                Xd, self.g64, scratch.L, scratch.LLW, row0, nc, per, scratch.part)
            device.configure(reduce_blocks, nred, T.reduce_threads, stream)(
                scratch.part, nsl, True, out)

    def unpack(self, tot):
        return to_layout(tot, self.kp.means64, self.kp.g64)
