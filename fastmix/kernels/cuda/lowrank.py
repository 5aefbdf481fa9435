"""Fused EM kernels for low-rank-plus-diagonal covariances (mixtures of factor analysers), CUDA.

The GPU twin of ``cpu_lowrank``: the same Woodbury log-density, the same statistics in the same
layout (see cpu_lowrank's docstring), the same cut rule, for the packed parameters of that
module (``pc`` (K, 1 + 2q, D): psi^-1/2, B_k, C_k).  For ``d = x - mu_k``::

    log N(x | mu_k, W W^T + Psi) + log pi_k = lconst_k - 1/2 (sum_i d_i^2 / psi_i - ||B_k d||^2)
    E[z | x] = C_k (B_k d)

Statistics, float64, centred on the means used for the densities: ``nk (K,)``, ``s1 (K, D)``,
``s2 (K, 1 + q, D + q + 1)`` (row 0: diagonal second moments; rows 1 + a: sum w r E[z_a] d,
sum w r E[z_a z_b], sum w r E[z_a]), ``ll``, ``ws``.

Work decomposition -- that of ``gpu_estep`` (read it first), with these differences:

* **Grid and reduction** are shared with the other kinds: block ``b`` owns rows
  ``[b * block_rows, (b + 1) * block_rows)`` (``block_rows`` from the caller) and the slot
  ``part[b, :]`` of ``S = K + K*D + K*(1+q)*(D+q+1) + 2`` float64 partials ``[nk | s1 | s2 | ll |
  ws]``; ``gpu_estep.reduce_blocks`` adds the slots in block order on the device, and the
  launcher (``estep.EStepPlan.launch``) runs the blocks in fixed-size groups when the partials would
  exceed ``gpu_estep.PARTIAL_BYTES``.
* **Tiles** of ``R`` rows in shared memory: X (data dtype), the weights, the ``R x K`` float64
  log-densities (then ``w * r``) and the ``R x K x q`` float64 posterior means ``E[z | x]``,
  i.e. ``8 K (1 + q) + D * itemsize + 16`` bytes per row (``row_bytes``); ``R`` is the most
  rows that fit ``gpu_estep.SHARED_BYTES`` (at most 32).
* **Densities**: one thread per (row, component) pair, components fastest, so that the
  transposed parameters ``MT (D, K)``, ``PT = psi^-1/2 (D, K)``, ``BT (D, q, K)`` are read
  coalesced.  The thread walks d = 0..D-1 once: ``y = x_d - mu_kd``, ``sum (y psi^-1/2)^2`` and
  the q projections ``z_a += y B_k[a, d]`` (a per-thread local array), all in the data dtype;
  then ``E[z|x] = C_k z`` in float64 into shared memory.
* **Log-sum-exp** and responsibilities: one thread per row, ``gpu_estep.make_tile_steps`` (the CPU's
  cut rule, component order).
* **Statistics**: thread t owns entries ``t, t + TPB, ...`` of ``part[b]`` and adds each entry's
  tile sum (rows in order, float64, rows with ``w r = 0`` skipped as on the CPU) once per tile.
  No atomics: one writer per entry, a fixed order for every addition (given block_rows, R and
  the thread count), so the results are bit-identical run to run.  The entries
  ``s2[k, 0, D:]`` stay 0.  ``Cov[z | x] = C_k C_k^T`` is the same for every row of a component,
  so, as on the CPU, it is not summed per row: the launcher adds ``nk_k C_k C_k^T`` to
  ``s2[k, 1:, D:D+q]`` on the host after the reduction (K q^2 flops).

Precision: quadratic forms and the projections ``B_k d`` in the dtype of X (float32 stays
float32); ``lconst``, ``C_k``, ``E[z|x]``, the log-sum-exp, responsibilities and every
accumulation in float64.  GPU and CPU agree to rounding (different summation order).

Status: checked on numba's CUDA simulator only (tests/test_gpu_lowrank.py), and type-inferred
and lowered for the real CUDA target (the PTX test there, which needs NVRTC for the last step);
it has never run on a GPU.  What to measure first on a real device (float32, e.g. N = 1e6,
K = 16..64, D = 64..784, q = 2..16):

* **Statistics traffic.**  ``S ~ K (1 + q) D`` entries, each read-modified-written in global
  memory once per tile of R rows, and R shrinks as ``K (1 + q)`` grows (R = 32 needs a tile
  row of at most 1280 bytes, e.g. ``K (1 + q) <= 126`` at D = 64 float32; K = 64, q = 10,
  D = 784 gives R = 4 and S = 610k, i.e. ~10 MB of traffic per 4 rows: far too slow).  Compare with (a) threads keeping their entries in registers across
  all tiles of the block when ``S / threads`` is small, and (b) for large shapes, writing
  ``w r`` and ``w r E[z|x]`` per row to global memory and forming ``s1``, ``s2[:, 0, :D]`` and
  ``s2[:, 1:, :D]`` as batched GEMMs (``[w r, w r E[z]]^T [x, (x - c)^2]`` per component, e.g.
  cuBLAS through CuPy), leaving this kernel the densities and the log-sum-exp.
* **Densities.**  Per (row, component) pair ``D (q + 2)`` parameter loads (L1/L2 hits, each
  reused by the R rows of a tile only through the cache) for ``~2 D (q + 1)`` flops: a GEMM
  (``Y B_k^T``) without register tiling.  Measure achieved bandwidth/flops against a
  register-tiled version (a thread owning 4 rows x 1 component, reusing each parameter load 4
  times) and, for large D q, against cuBLAS on the (N, D) x (D, K q) product of the
  ``x``-dependent part (``B_k d = B_k x - B_k mu_k``).
* Local memory: the per-thread ``z`` (q values) lives in registers only if numba/NVVM keeps it
  there; check the PTX (``ld.local``) for q >= 8.
* Occupancy: up to 40 KiB of static shared memory per block limits the resident blocks per
  SM (about 5 on an H100); check the achieved occupancy at the default 256 threads.

Kernels are specialised per (dtype, K, D, q, R, threads) through closures (compile-time shapes
for the shared tiles and constant loop bounds): a fit compiles once per shape.
"""
import functools

import numpy as np
from numba import cuda

from .. import n_factors
from .estep import MAX_TILE_ROWS, SHARED_BYTES, make_block_steps


def s2_size(K, D, q):
    return K * (1 + q) * (D + q + 1)


def n_entries(K, D, q):
    """Entries of one block's partial statistics: [nk | s1 | s2 | ll | ws]."""
    return K + K * D + s2_size(K, D, q) + 2


def layout(kp):
    """Host arrays in gpu_lowrank's layout, components last for coalesced reads: MT means
    (D, K), PT psi^-1/2 (D, K), BT the projections B_k as (D, q, K), all in the data dtype;
    CT the factors C_k as (q, q, K), lconst (K,) and the centres means64 (K, D) in float64."""
    q = n_factors(kp)
    pc = kp.pc
    BT = np.transpose(pc[:, 1:1 + q, :], (2, 1, 0))            # [k, a, d] -> [d, a, k]
    CT = np.transpose(pc[:, 1 + q:, :q], (1, 2, 0))            # [k, a, c] -> [a, c, k]
    return [np.ascontiguousarray(a) for a in (kp.means.T, pc[:, 0, :].T, BT)] + [
        np.ascontiguousarray(CT, np.float64), np.ascontiguousarray(kp.lconst, np.float64),
        np.ascontiguousarray(kp.means64)]


def posterior_cov(kp):
    """Cov[z | x] = C_k C_k^T (K, q, q) float64 of a lowrank model: the same for every row of
    a component, so the statistics add it once, times nk (as cpu_lowrank does)."""
    q = n_factors(kp)
    C = np.asarray(kp.pc[:, 1 + q:, :q], np.float64)
    return np.einsum("kaj,kcj->kac", C, C)


def row_bytes(K, D, q, itemsize):
    """Shared memory of one tile row: X, w r (K), E[z|x] (K q), log p and w."""
    return 8 * K * (1 + q) + D * itemsize + 16


def tile_rows(K, D, q, itemsize):
    """Rows per shared-memory tile for this shape (0 if not even one row fits)."""
    return int(min(MAX_TILE_ROWS, SHARED_BYTES // row_bytes(K, D, q, itemsize)))


@functools.lru_cache(maxsize=None)
def build(dtype_name, K, D, q, R, TPB):
    """Compile-time specialised kernels ``(estep_partials, log_prob)`` for one shape."""
    DT = cuda.float32 if dtype_name == "float32" else cuda.float64
    F64 = cuda.float64
    W2 = D + q + 1          # length of a row s2[k, i, :]
    P2 = (1 + q) * W2       # entries of s2[k]
    S2 = K * P2

    @cuda.jit(device=True)
    def log_density(XS, r, k, MT, PT, BT, lconst, z):
        """lconst_k - 1/2 (sum_d (y_d psi_kd^-1/2)^2 - ||B_k y||^2), y = x_r - mu_k; the forms
        in the data dtype.  Leaves the projections B_k y in z (q,)."""
        y = XS[r, 0] - MT[0, k]
        u = y * PT[0, k]
        acc = u * u
        for a in range(q):
            z[a] = y * BT[0, a, k]
        for d in range(1, D):
            y = XS[r, d] - MT[d, k]
            u = y * PT[d, k]
            acc += u * u
            for a in range(q):
                z[a] += y * BT[d, a, k]
        proj = z[0] * z[0]
        for a in range(1, q):
            proj += z[a] * z[a]
        return lconst[k] - 0.5 * F64(acc - proj)

    @cuda.jit(device=True)
    def stats_densities(XS, EZ, nr, P, LR, t):
        """LR[r, k] = log pi_k N(x_r | k) and EZ[r, k, :] = E[z | x_r, k] = C_k B_k y (float64)."""
        MT, PT, BT, CT, lconst = P
        z = cuda.local.array(q, DT)
        for p in range(t, nr * K, TPB):  # (row, component) pairs, components fastest
            r = p // K
            k = p - r * K
            LR[r, k] = log_density(XS, r, k, MT, PT, BT, lconst, z)
            for a in range(q):
                e = CT[a, 0, k] * F64(z[0])
                for c in range(1, q):
                    e += CT[a, c, k] * F64(z[c])
                EZ[r, k, a] = e

    @cuda.jit(device=True)
    def lp_densities(XS, unused, nr, P, LR, t):
        """LR[r, k] = log pi_k N(x_r | k) only (log_prob)."""
        MT, PT, BT, lconst = P
        z = cuda.local.array(q, DT)
        for p in range(t, nr * K, TPB):
            r = p // K
            k = p - r * K
            LR[r, k] = log_density(XS, r, k, MT, PT, BT, lconst, z)

    @cuda.jit(device=True)
    def s2_entry(f, nr, XS, WS, LR, EZ, C64):
        """Sum over the tile's rows (in order) of entry f = s2[k, i, j] (float64); LR holds
        w r."""
        acc = 0.0
        k = f // P2
        f2 = f - k * P2
        i = f2 // W2
        j = f2 - i * W2
        a = i - 1
        if i == 0:
            if j < D:                               # sum w r (x_j - c_j)^2; s2[k, 0, D:] = 0
                for r in range(nr):
                    wr = LR[r, k]
                    if wr != 0.0:
                        y = F64(XS[r, j]) - C64[k, j]
                        acc += wr * y * y
        elif j < D:                                 # sum w r E[z_a] (x_j - c_j)
            for r in range(nr):
                wr = LR[r, k]
                if wr != 0.0:
                    acc += (wr * EZ[r, k, a]) * (F64(XS[r, j]) - C64[k, j])
        elif j < D + q:                             # sum w r E[z_a] E[z_b]
            b = j - D
            for r in range(nr):
                wr = LR[r, k]
                if wr != 0.0:
                    acc += (wr * EZ[r, k, a]) * EZ[r, k, b]
        else:                                       # sum w r E[z_a]
            for r in range(nr):
                wr = LR[r, k]
                if wr != 0.0:
                    acc += wr * EZ[r, k, a]
        return acc

    block_partials, block_log_prob = make_block_steps(
        DT, K, D, R, TPB, S2, (((R, K, q), 1), F64), stats_densities, lp_densities, s2_entry)

    @cuda.jit
    def estep_partials(X, sw, MT, PT, BT, CT, lconst, C64, cut, block_rows, b0, part):
        """Block b: the statistics of rows [(b0 + b) * block_rows, ...) into part[b, :]
        (without the Cov[z|x] term, which the launcher adds)."""
        b = cuda.blockIdx.x
        start = (b0 + b) * block_rows
        block_partials(X, sw, (MT, PT, BT, CT, lconst), C64, cut, start,
                       min(X.shape[0], start + block_rows), b, part)

    @cuda.jit
    def log_prob(X, nosw, MT, PT, BT, lconst, cut, block_rows, logp, labels, resp):
        """Per-row log p, argmax label and (when resp has N rows) responsibilities; ``nosw`` is
        an empty float64 array (no weights)."""
        start = cuda.blockIdx.x * block_rows
        block_log_prob(X, nosw, (MT, PT, BT, lconst), cut, start,
                       min(X.shape[0], start + block_rows), logp, labels, resp)

    return estep_partials, log_prob
