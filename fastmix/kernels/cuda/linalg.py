"""Row transforms on the GPU for BigLearn-EM's marginal steps (numba-cuda).

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
from numba import cuda

from .. import cuda as _gpu  # configure: every launch checked against CUDA's limits

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
    _gpu.configure(_project, grid, block)(Xd, P, Yd)


def gather(Xd, cols, Yd):
    """Yd (N, m) = Xd[:, cols] (cols: int64 device array)."""
    N, m = Yd.shape
    grid = (max(1, -(-N // TILE)), max(1, -(-m // TILE)))
    _gpu.configure(_gather, grid, (TILE, TILE))(Xd, cols, Yd)
