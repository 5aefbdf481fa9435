"""The GMM-expansion grid kernel on the GPU (CUDA, numba-cuda): the twin of ``cpu_expansion``,
with its launchers (``grid_stats_gpu``, ``column_range_gpu``).

Same semantics as ``cpu_expansion.grid_pass`` (read its docstring first): a tensor grid of
nodes with one diagonal bandwidth, a window of ``W[d]`` steps either side of the row's nearest
node in each dimension (nodes beyond it are below exp(cut), cut = -40, of the nearest node),
separable densities (one exponential per window position and dimension, then products), and
the three modes EM (weights-only EM numerators per node), KDE (node sums of phi / phi_max) and
LOGP (log p per row), each also giving ``sum w log p`` and ``sum w``.  Every value is computed
and accumulated in float64 (float32 rows are widened when read), like the CPU kernel.

Work decomposition (one launch per pass, then ``gpu_estep.reduce_blocks``):

* **Blocks**: block ``b`` owns rows ``[(b0 + b) * block_rows, ...)`` and its own slot
  ``part[b, :]`` of the partial sums in global memory, laid out ``[nodes (P) | ll | ws]``
  (``P = M`` for EM/KDE, 0 for LOGP).  ``block_rows`` is a caller's constant, never derived
  from the device.
* **Tiles**: the block walks its rows in tiles of ``R`` rows.  Phase 1 (one thread per row):
  the window (first node and count per dimension), the per-dimension factors
  ``exp(t_d(j) - max_j t_d)`` (staged in shared memory, ``(R, D, T)`` float64), the normaliser
  ``s = sum_window pi_i prod_d factor`` in the CPU kernel's order (C order over the window, last
  dimension fastest), log p and the row's scale (EM: ``w / s``, 0 if s = 0; KDE:
  ``w exp(sum_d max t_d)``).  LOGP writes log p here.  Phase 2 (after a barrier): thread 0 adds
  the tile's ``w log p`` and ``w`` to ``part[b, P:]`` in row order, and every thread adds the
  contributions of the tile's rows, in row order, to the nodes it **owns**: the threads form a
  grid ``split = (T_0, ..., T_{D-1})`` (``thread_split``) and thread ``(t_0, ..., t_{D-1})``
  owns the nodes whose index in dimension d is ``t_d`` modulo ``T_d``.  It finds its nodes in a
  row's window by arithmetic (``ceil(count_d / T_d)`` per dimension), without scanning the
  window.
* **Determinism**: every entry of ``part[b]`` has exactly one writer (its owner), which adds the
  block's rows in row order; no atomics.  The block sums therefore depend only on
  ``block_rows``, not on the threads per block, the split or the tile height (tests check
  bit-equality across thread counts).  ``reduce_blocks`` adds the blocks in block order on the
  device; when the partials of all blocks exceed ``gpu_estep.PARTIAL_BYTES`` the blocks run in
  launch groups of a fixed size, each reduced and added to the totals in order (same sums up to
  rounding, still reproducible).

``column_range`` is the data-range pass for data that live on the device (grid bounds and the
NaN / infinity check): thread ``g`` scans one column of a fixed run of rows; min and max are
exact, so any order gives the same bits.

Status: checked on numba's CUDA simulator (tests/test_gpu_expansion.py), and typed and lowered
for the real target (sm_90 LLVM IR, no atomics; PTX where NVVM is installed); never run on a
GPU.  What to measure first on a real one:

* phase 1 runs one thread per row and does the serial ``prod_d (2 W_d + 1)`` multiply-adds of
  the normaliser (441 per row for sigma = h in 2-D) -- the bulk of the arithmetic; the
  ``pi[idx]`` gathers hit L1/L2 for smooth data.  A warp per row (fixed-order shuffle
  reduction) is the first alternative to time.
* phase 2 does one float64 read-modify-write in global memory per (row, window node); the
  block's slot (M doubles) stays in L2 only for small grids.  For M ~ 1e6 nodes compare with
  data sorted by cell (then a block's nodes form a small range that fits shared memory).
* each block zeroes and the reduction reads ``M`` doubles per block: with large grids raise
  ``block_rows`` (default 4096 in ``fastmix.kernels.cuda``) so that this stays small next to
  the ``block_rows * window`` updates, while keeping a few blocks per SM.
* the owners' load balance: ``ceil(count_d / T_d)`` nodes per row and dimension for every
  thread, so windows much smaller than the thread grid leave threads idle.
"""
import functools
import math

import numpy as np
from numba import cuda

from .. import GRID_LOGP, _shared, grid_layout
from ..cpu.expansion import EM, KDE, LOGP  # noqa: F401  (the modes, shared with the CPU kernel)
from . import device, estep as gpu_estep
from .device import (DEFAULT_GRID_BLOCK_ROWS, DEFAULT_GRID_THREADS, require_gpu,
                     weights_to_device)

F64 = cuda.float64

#: Bytes of static shared memory a block's tile may use (the portable limit is 48 KiB).
SHARED_BYTES = 40 * 1024


def shared_bytes_per_row(D, T):
    """Shared memory of one tile row: factors (D, T), window first/count (2 D), 3 scalars."""
    return 8 * (D * T + 2 * D + 3)


def tile_rows(D, T, threads):
    """Rows per tile: at most one per thread, as many as fit ``SHARED_BYTES`` (0: none fits)."""
    return int(min(threads, SHARED_BYTES // shared_bytes_per_row(D, T)))


def thread_split(counts, threads):
    """Threads per dimension ``(T_0, ..., T_{D-1})`` for the node owners, product <= threads.

    ``counts``: the window size per dimension.  Doubles the dimension with the most nodes per
    thread (``ceil(count_d / T_d)``) while that is above 1 and the threads allow."""
    T = [1] * len(counts)
    while True:
        per = [-(-int(c) // t) for c, t in zip(counts, T)]
        d = max(range(len(T)), key=lambda i: per[i])
        if per[d] <= 1 or math.prod(T) * 2 > threads:
            return tuple(T)
        T[d] *= 2


def first_owned(own, first, T):
    """Offset, in a window whose first node has index ``first``, of the first node whose index
    is ``own`` modulo ``T`` (the owner's residue): the owner's nodes are at that offset plus
    multiples of T; none when it is not below the window's count.  Ownership goes by the
    absolute node index, so a node has the same owner for every row of the block."""
    return (own - first % T + T) % T


_first_owned = cuda.jit(device=True)(first_owned)
#: The window and factors of a row in one dimension, as on the CPU (kernels/_shared.py).
_window_factors = cuda.jit(device=True)(_shared.window_factors)


@functools.lru_cache(maxsize=None)
def build(D, R, T, TPB):
    """The grid kernel specialised for D dimensions, R-row tiles, window factors of at most T
    positions per dimension and TPB threads per block (shared arrays need constant shapes)."""
    I64 = cuda.int64

    @cuda.jit
    def grid_partials(mode, X, sw, lo, h, shape, strides, inv_sig, pi, lconst, W, split,
                      block_rows, b0, part, logp):
        """Block b: the sums of rows [(b0 + b) * block_rows, ...) into part[b, :] (EM / KDE node
        sums, then ll, ws); LOGP also writes logp[n].  ``sw`` empty: unit weights."""
        FS = cuda.shared.array((R, D, T), F64)    # window factors exp(t - max t)
        FIRST = cuda.shared.array((R, D), I64)    # first window node per dimension
        CNT = cuda.shared.array((R, D), I64)      # window nodes per dimension
        SC = cuda.shared.array(R, F64)            # EM: w / s; KDE: w exp(base); 0: no adds
        LP = cuda.shared.array(R, F64)
        WS = cuda.shared.array(R, F64)
        odo = cuda.local.array(D, I64)
        own = cuda.local.array(D, I64)            # this thread's residue per dimension
        b = cuda.blockIdx.x
        t = cuda.threadIdx.x
        N = X.shape[0]
        P = part.shape[1] - 2
        start = (b0 + b) * block_rows
        stop = min(N, start + block_rows)
        for e in range(t, P + 2, TPB):
            part[b, e] = 0.0
        n_own = 1
        rem = t
        for d in range(D - 1, -1, -1):
            own[d] = rem % split[d]
            rem //= split[d]
            n_own *= split[d]
        owner = t < n_own and mode != LOGP
        cuda.syncthreads()
        for r0 in range(start, stop, R):
            nr = min(R, stop - r0)
            # ---- phase 1: one thread per row
            for r in range(t, nr, TPB):
                n = r0 + r
                wn = sw[n] if sw.shape[0] > 0 else 1.0
                base = 0.0
                for d in range(D):
                    a, c, tmax = _window_factors(F64(X[n, d]), lo[d], h[d], shape[d], W[d],
                                                 inv_sig[d], FS[r, d])
                    FIRST[r, d] = a
                    CNT[r, d] = c
                    base += tmax
                    odo[d] = 0
                s = 0.0
                while True:  # the window in C order (last dimension fastest), as on the CPU
                    idx = 0
                    f = 1.0
                    for d in range(D):
                        idx += (FIRST[r, d] + odo[d]) * strides[d]
                        f *= FS[r, d, odo[d]]
                    s += pi[idx] * f
                    d = D - 1
                    while d >= 0:
                        odo[d] += 1
                        if odo[d] < CNT[r, d]:
                            break
                        odo[d] = 0
                        d -= 1
                    if d < 0:
                        break
                lp = lconst + base + math.log(s) if s > 0.0 else -math.inf
                if mode == EM:
                    SC[r] = wn / s if s > 0.0 else 0.0
                elif mode == KDE:
                    SC[r] = wn * math.exp(base)
                else:
                    logp[n] = lp
                LP[r] = lp
                WS[r] = wn
            cuda.syncthreads()
            # ---- phase 2: ll / ws by thread 0, node sums by their owners, rows in order
            if t == 0:
                for r in range(nr):
                    part[b, P] += WS[r] * LP[r]
                    part[b, P + 1] += WS[r]
            if owner:
                for r in range(nr):
                    scale = SC[r]
                    if scale == 0.0:  # zero weight, or (EM) no mass in the window: adds 0
                        continue
                    mine = True
                    for d in range(D):  # first owned window position per dimension
                        o = _first_owned(own[d], FIRST[r, d], split[d])
                        if o >= CNT[r, d]:
                            mine = False
                        odo[d] = o
                    if not mine:
                        continue
                    while True:
                        idx = 0
                        f = 1.0
                        for d in range(D):
                            idx += (FIRST[r, d] + odo[d]) * strides[d]
                            f *= FS[r, d, odo[d]]
                        if mode == EM:
                            part[b, idx] += pi[idx] * f * scale
                        else:
                            part[b, idx] += f * scale
                        d = D - 1
                        while d >= 0:
                            odo[d] += split[d]
                            if odo[d] < CNT[r, d]:
                                break
                            odo[d] = _first_owned(own[d], FIRST[r, d], split[d])
                            d -= 1
                        if d < 0:
                            break
            cuda.syncthreads()  # the next tile overwrites the shared arrays

    return grid_partials


@cuda.jit
def column_range(X, rows, lo, hi, bad):
    """Thread g: column d = g mod D of rows [c * rows, (c + 1) * rows), c = g // D, into
    lo[c, d], hi[c, d] (finite values, float64) and bad[c, d] (count of NaN / +-inf)."""
    g = cuda.grid(1)
    N = X.shape[0]
    D = X.shape[1]
    c = g // D
    if c < lo.shape[0]:
        d = g - c * D
        mn = math.inf
        mx = -math.inf
        nb = 0
        for n in range(c * rows, min(N, (c + 1) * rows)):
            x = F64(X[n, d])
            if math.isnan(x) or math.isinf(x):
                nb += 1
            else:
                mn = min(mn, x)
                mx = max(mx, x)
        lo[c, d] = mn
        hi[c, d] = mx
        bad[c, d] = nb


# ------------------------------------------------------------------ launchers ---------------
def grid_stats_gpu(mode, Xd, wd, lo, h, shape, sigma, log_pi, acc=None, logp=None,
                   block_rows=DEFAULT_GRID_BLOCK_ROWS, threads=DEFAULT_GRID_THREADS):
    """One pass of the GMM-expansion grid kernel (``gpu_expansion``) over device rows ``Xd``:
    what ``fastmix.kernels.grid_stats`` computes, with the same arguments (block_rows/threads
    instead of chunk_rows).

    Adds to ``acc`` = [node sums (M,), [sum w log p, sum w]] (made if None) and returns it;
    GRID_LOGP writes log p of every row into the host array ``logp`` (N,).  ``wd`` from
    ``weights_to_device`` (or None).  Deterministic for a given ``block_rows`` (the threads per
    block do not change a bit); equal to the CPU kernel up to rounding."""
    cuda = require_gpu()
    N, D = Xd.shape
    g = grid_layout(lo, h, shape, sigma, log_pi)
    if g.shape.shape[0] != D:
        raise ValueError(f"data have {D} features, the grid {g.shape.shape[0]}")
    M = g.n_nodes
    counts = g.window_counts()
    T = int(counts.max())
    threads = int(threads)
    R = tile_rows(D, T, threads)
    if R < 1:
        raise ValueError(f"the GPU grid kernel stages a row's window ({T} nodes per dimension, "
                         f"D={D}) in shared memory: "
                         f"{shared_bytes_per_row(D, T)} bytes, more than "
                         f"{SHARED_BYTES}; use a bandwidth closer to the grid "
                         f"spacing, fewer nodes, or device='cpu'")
    if mode == GRID_LOGP and (logp is None or logp.shape != (N,)):
        raise ValueError(f"GRID_LOGP needs a host array logp of shape ({N},)")
    if acc is None:
        acc = [np.zeros(M), np.zeros(2)]
    if wd is None:
        wd = weights_to_device(None, N)
    kernel = build(D, R, T, threads)
    split = thread_split(counts, threads)
    args = [cuda.to_device(np.ascontiguousarray(a)) for a in
            (g.lo, g.h, g.shape, g.strides, g.inv_sig, g.pi)]
    W, split_d = cuda.to_device(g.W), cuda.to_device(np.asarray(split, np.int64))
    S = (0 if mode == GRID_LOGP else M) + 2
    block_rows = int(block_rows)
    n_blocks = max(1, -(-N // block_rows))
    group = int(min(n_blocks, max(1, gpu_estep.PARTIAL_BYTES // (8 * S))))  # blocks per launch
    part = device._alloc(cuda, (group, S), np.float64,
                         f"the per-block node sums ({group} blocks x {S} float64)")
    out = device._alloc(cuda, (S,), np.float64, "the node sums")
    logp_d = device._alloc(cuda, (N if mode == GRID_LOGP else 0,), np.float64, "log p per row")
    for b0 in range(0, n_blocks, group):  # launch groups in order; each adds to the totals
        nb = min(group, n_blocks - b0)
        device.configure(kernel, nb, threads)(int(mode), Xd, wd, *args, g.lconst, W, split_d,
                                              block_rows, b0, part, logp_d)
        device.configure(gpu_estep.reduce_blocks, max(1, -(-S // threads)), threads)(
            part, nb, b0 > 0, out)
    tot = out.copy_to_host()
    if mode != GRID_LOGP:
        acc[0] += tot[:M]
    acc[1][0] += tot[S - 2]
    acc[1][1] += tot[S - 1]
    if mode == GRID_LOGP:
        logp[:] = logp_d.copy_to_host()
    return acc


def column_range_gpu(Xd, rows_per_thread=256, threads=128):
    """(lo, hi, n_bad) per column (D,) of device rows: min and max of the finite values
    (float64) and the number of NaN / infinite ones."""
    cuda = require_gpu()
    N, D = Xd.shape
    rows = int(rows_per_thread)
    n_chunks = max(1, -(-N // rows))
    lo = device._alloc(cuda, (n_chunks, D), np.float64, "the column ranges")
    hi = device._alloc(cuda, (n_chunks, D), np.float64, "the column ranges")
    bad = device._alloc(cuda, (n_chunks, D), np.int64, "the column ranges")
    threads = int(threads)
    device.configure(column_range, max(1, -(-(n_chunks * D) // threads)), threads)(
        Xd, rows, lo, hi, bad)
    return (lo.copy_to_host().min(axis=0), hi.copy_to_host().max(axis=0),
            bad.copy_to_host().sum(axis=0))
