"""Row transforms on the GPU for BigLearn-EM's marginal steps (numba-cuda), with their launchers
(``marginal_buffer``, ``marginal_rows``).

BigLearn's local step runs the ordinary full-covariance E-step on ``Y = (X A^T)[:, T]`` (a
transformed marginal) or on ``X[:, T]`` (a plain marginal).  These kernels build ``Y`` on the
device from the resident rows, so the data never leave the GPU:

* ``project``: ``Y = X P`` with ``P = (A[T, :])^T`` (D, m), a shared-memory tiled product: a
  block of TILE x TILE threads owns one TILE x TILE tile of Y (rows x columns; row tiles along
  grid axis x, whose limit is 2^31 - 1 blocks, column tiles along y, limit 65535), walks D in
  TILE-wide slabs staging one slab of X and one of P in shared memory, and accumulates in
  float64 (rounded once to the data dtype at the end).  Each output has one writer and a fixed
  summation order: deterministic.
* ``gather``: ``Y = X[:, T]``, one thread per output element.

Status: checked on numba's CUDA simulator against NumPy (tests/test_gpu.py); not timed on a GPU.
The product is O(N D m) flops against O(N (D + m)) bytes: for D = m = 64 that is ~32 flops
per byte in float32, compute-bound on the tiling below; cuBLAS would be ~5-10x faster at large D
(measure first, then consider CuPy's GEMM when it is installed).
"""
import numpy as np
from numba import cuda

from . import device
from .device import require_gpu

#: Output tile edge (threads per block = TILE * TILE).
TILE = 16
F64 = cuda.float64  # bound here: inside a kernel the simulator's stand-in module has no types


@cuda.jit
def _project(X, P, Y):
    XS = cuda.shared.array((TILE, TILE), F64)
    PS = cuda.shared.array((TILE, TILE), F64)
    tx = cuda.threadIdx.x  # column within the tile
    ty = cuda.threadIdx.y  # row within the tile
    row = cuda.blockIdx.x * TILE + ty  # rows on grid axis x: N / TILE may exceed 65535
    col = cuda.blockIdx.y * TILE + tx
    N, D = X.shape
    m = P.shape[1]
    acc = 0.0
    for d0 in range(0, D, TILE):
        XS[ty, tx] = X[row, d0 + tx] if row < N and d0 + tx < D else 0.0
        PS[ty, tx] = P[d0 + ty, col] if d0 + ty < D and col < m else 0.0
        cuda.syncthreads()
        for i in range(TILE):
            acc += XS[ty, i] * PS[i, tx]
        cuda.syncthreads()
    if row < N and col < m:
        Y[row, col] = acc


@cuda.jit
def _gather(X, cols, Y):
    n, j = cuda.grid(2)
    if n < Y.shape[0] and j < Y.shape[1]:
        Y[n, j] = X[n, cols[j]]


def project_grid(N, m):
    """(grid, block) of ``project`` for N rows and m output columns: row tiles along grid
    axis x, column tiles along y, TILE x TILE threads."""
    return (max(1, -(-int(N) // TILE)), max(1, -(-int(m) // TILE))), (TILE, TILE)


def project(Xd, P, Yd):
    """Yd (N, m) = Xd (N, D) @ P (D, m device array, the data dtype)."""
    grid, block = project_grid(Xd.shape[0], P.shape[1])
    device.configure(_project, grid, block)(Xd, P, Yd)


def gather(Xd, cols, Yd):
    """Yd (N, m) = Xd[:, cols] (cols: int64 device array)."""
    N, m = Yd.shape
    grid = (max(1, -(-N // TILE)), max(1, -(-m // TILE)))
    device.configure(_gather, grid, (TILE, TILE))(Xd, cols, Yd)


# ------------------------------------------------------------------ launchers ---------------
def marginal_buffer(Xd):
    """A device buffer for ``marginal_rows`` of any subset of Xd's columns (N * D entries)."""
    N, D = Xd.shape
    return device._alloc(require_gpu(), (N * D,), Xd.dtype, f"the marginal rows ({N} x {D})")


def marginal_rows(Xd, A, T, out=None):
    """Rows of a (transformed) marginal on the device: ``(Xd @ A.T)[:, T]`` when ``A`` (D, D)
    is given, else ``Xd[:, T]``; ``Xd`` itself when neither transforms nor drops a column.
    ``out``: a device buffer of at least N * len(T) entries of the data dtype, reused."""
    cuda = require_gpu()
    N, D = Xd.shape
    T = np.asarray(T, dtype=np.int64)
    if A is None and len(T) == D and np.array_equal(T, np.arange(D)):
        return Xd
    m = len(T)
    if out is None:
        out = device._alloc(cuda, (N * m,), Xd.dtype, f"the marginal rows ({N} x {m})")
    Yd = out[:N * m].reshape(N, m)
    if A is None:
        gather(Xd, cuda.to_device(T), Yd)
    else:
        P = np.ascontiguousarray(np.asarray(A)[T, :].T, dtype=Xd.dtype)  # (D, m)
        project(Xd, cuda.to_device(P), Yd)
    return Yd
