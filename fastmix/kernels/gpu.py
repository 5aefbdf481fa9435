"""Python-facing wrappers of the CUDA kernels (``gpu_estep``, ``gpu_expansion``): probe, device
arrays, E-step, the GMM-expansion grid pass.

Importing this module never imports numba-cuda: ``gpu_available()`` / ``require_gpu()`` do, once,
and say what is missing (the ``cuda`` extra, or a visible GPU).  Every function takes device
arrays (``to_device``) and the same ``KernelParams`` as the CPU kernels, and returns what the CPU
wrappers in ``fastmix.kernels`` return: float64 statistics ``(nk, s1, s2, ll, ws)`` on the host.

``NUMBA_ENABLE_CUDASIM=1`` (set before numba-cuda is first imported) runs everything on numba's
CUDA simulator: that is how the tests run on machines without a GPU.
"""
import importlib.util

import numpy as np

from . import CUT, GRID_LOGP, grid_layout, s2_shape

#: Rows per block.  A constant, never derived from the device, so that the partition of the rows
#: (and hence every rounding) is the same on every GPU: results are bit-identical run to run.
DEFAULT_BLOCK_ROWS = 1024
#: Threads per block.
DEFAULT_THREADS = 256
#: Rows per block of the GMM-expansion grid kernel: larger than the E-step's because each block
#: zeroes and the reduction reads a slot of M node sums (see gpu_expansion's docstring).
DEFAULT_GRID_BLOCK_ROWS = 4096
#: Threads per block of the grid kernel.
DEFAULT_GRID_THREADS = 128

INSTALL_HINT = "pip install 'fastmix[cuda]'"


class GPUUnavailableError(RuntimeError):
    """No usable CUDA GPU: numba-cuda (fastmix's ``cuda`` extra) is missing or no GPU is
    visible."""


_PROBE = {}


def _probe():
    """(cuda module or None, reason) -- computed once per process."""
    if "result" in _PROBE:
        return _PROBE["result"]
    if importlib.util.find_spec("numba_cuda") is None:
        res = (None, "numba-cuda is not installed; install fastmix's cuda extra: " + INSTALL_HINT)
    else:
        try:
            from numba import cuda
        except Exception as exc:  # e.g. broken CUDA bindings
            res = (None, f"numba-cuda could not be imported ({exc}); reinstall with {INSTALL_HINT}")
        else:
            try:
                ok = cuda.is_available()
            except Exception as exc:  # pragma: no cover - driver trouble
                ok, why = False, str(exc)
            else:
                why = "cuda.is_available() is False"
            if ok:
                res = (cuda, "")
            else:
                res = (None, "no CUDA GPU is visible (" + why + "; check the NVIDIA driver and "
                       "CUDA_VISIBLE_DEVICES). numba-cuda and the CUDA 12 runtime come with "
                       + INSTALL_HINT + "; tests can run on the simulator with "
                       "NUMBA_ENABLE_CUDASIM=1")
    _PROBE["result"] = res
    return res


def gpu_available():
    """True when numba-cuda imports and a GPU (or the CUDA simulator) is visible."""
    return _probe()[0] is not None


def require_gpu():
    """The ``numba.cuda`` module, or a GPUUnavailableError that says what to install or check."""
    cuda, why = _probe()
    if cuda is None:
        raise GPUUnavailableError(why)
    return cuda


def simulated():
    """True when running on numba's CUDA simulator."""
    require_gpu()
    from numba.cuda.core import config
    return bool(config.ENABLE_CUDASIM)


def device_name():
    cuda = require_gpu()
    if simulated():
        return "CUDA simulator"
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return f"{name} (compute capability {dev.compute_capability[0]}.{dev.compute_capability[1]})"


def _human(nbytes):
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def _free_bytes(cuda):
    if simulated():
        return None
    try:
        free, _total = cuda.current_context().get_memory_info()
    except Exception:  # pragma: no cover
        return None
    return int(free)


def _oom_error(nbytes, what, free=None):
    have = "" if free is None else f" ({_human(free)} free)"
    return MemoryError(f"GPU out of memory: {what} needs {_human(nbytes)} of device memory"
                       f"{have}. Use fewer rows per call (fit from a file or in chunks), float32 "
                       f"data, or a GPU with more memory.")


def _is_oom(exc):
    return "OUT_OF_MEMORY" in str(exc) or getattr(exc, "code", None) == 2


def _alloc(cuda, shape, dtype, what):
    """cuda.device_array with a clear MemoryError naming the size needed."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    free = _free_bytes(cuda)
    if free is not None and nbytes > free:
        raise _oom_error(nbytes, what, free)
    try:
        return cuda.device_array(shape, dtype=dtype)
    except Exception as exc:
        if _is_oom(exc):
            raise _oom_error(nbytes, what, free) from exc
        raise


def _upload(cuda, a, what):
    a = np.ascontiguousarray(a)
    free = _free_bytes(cuda)
    if free is not None and a.nbytes > free:
        raise _oom_error(a.nbytes, what, free)
    try:
        return cuda.to_device(a)
    except Exception as exc:
        if _is_oom(exc):
            raise _oom_error(a.nbytes, what, free) from exc
        raise


def is_device_array(a):
    """True for arrays that live on the GPU: anything exposing ``__cuda_array_interface__``, or
    the simulator's stand-in device arrays (which do not)."""
    return hasattr(a, "__cuda_array_interface__") or type(a).__name__ == "FakeCUDAArray"


def _as_cuda_array(cuda, a):
    """A numba view of a device array, sharing its memory (no copy)."""
    if type(a).__name__ == "FakeCUDAArray" or not hasattr(cuda, "as_cuda_array"):
        return a
    return cuda.as_cuda_array(a)


def to_device(X, dtype=None):
    """X on the GPU, C-contiguous float32/float64 (N, D).

    A NumPy array is copied to the device once (converted to float64 unless it is float32 or
    ``dtype`` says otherwise); an array that exposes ``__cuda_array_interface__`` (CuPy, PyTorch,
    numba device arrays) is used in place, without a copy, and must already be C-contiguous
    float32/float64 2-D."""
    cuda = require_gpu()
    if is_device_array(X):
        Xd = _as_cuda_array(cuda, X)
        if Xd.ndim != 2 or Xd.dtype not in (np.float32, np.float64):
            raise ValueError(f"device data must be a 2-D float32/float64 array, got "
                             f"{Xd.ndim}-D {Xd.dtype}")
        if not Xd.is_c_contiguous():
            raise ValueError("device data must be C-contiguous (row-major)")
        if dtype is not None and Xd.dtype != np.dtype(dtype):
            raise ValueError(f"device data are {Xd.dtype}, not {np.dtype(dtype)}: convert them "
                             f"on the device first (no implicit copy)")
        return Xd
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {X.shape}")
    if dtype is None:
        dtype = np.float32 if X.dtype == np.float32 else np.float64
    return _upload(cuda, np.ascontiguousarray(X, dtype=dtype), f"the data {X.shape}")


def weights_to_device(sample_weight, n):
    """Sample weights (n,) float64 on the device; None -> an empty array (all weights 1)."""
    cuda = require_gpu()
    if sample_weight is None:
        return cuda.to_device(np.empty(0, np.float64))
    if is_device_array(sample_weight):
        w = _as_cuda_array(cuda, sample_weight)
        if w.shape != (n,) or w.dtype != np.float64:
            raise ValueError(f"device sample weights must be float64 of shape ({n},)")
        return w
    w = np.ascontiguousarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight has shape {w.shape}, expected ({n},)")
    return _upload(cuda, w, "the sample weights")


def _layout(kp):
    """Host arrays in the GPU kernels' layout: transposed (D, K) parameters for coalesced reads.

    MT: means (D, K) (tied: transformed means (mu_k - g) U); PT: 1/sigma (D, K) for diag and
    spherical; PCT: upper-triangular factors (D, D, K) for full, (D, D, 1) for tied."""
    from .cpu_estep import DIAG, FULL, SPHERICAL, TIED
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
    from . import gpu_estep
    K, D = kp.means64.shape
    dt = np.dtype(dtype)
    R = gpu_estep.tile_rows(kp.kind, K, D, dt.itemsize)
    if R < 1:
        raise ValueError(f"K = {K} components do not fit the GPU kernel's shared-memory tile "
                         f"({gpu_estep.SHARED_BYTES} bytes; at most ~{gpu_estep.SHARED_BYTES // 8 - 16}"
                         f" components)")
    return gpu_estep, gpu_estep.build(kp.kind, dt.name, K, D, R, int(threads))


def _check_kind(kp):
    from .cpu_estep import DIAG, FULL, SPHERICAL, TIED
    if kp.kind not in (FULL, TIED, DIAG, SPHERICAL):
        raise NotImplementedError("the GPU kernels cover full, tied, diag and spherical "
                                  "covariances; lowrank runs on the CPU kernels")


def _check(Xd, kp):
    if Xd.dtype != kp.means.dtype:
        raise ValueError(f"kernel parameters are {kp.means.dtype} but the data are {Xd.dtype}")
    if Xd.shape[1] != kp.means64.shape[1]:
        raise ValueError(f"data have {Xd.shape[1]} features, the model {kp.means64.shape[1]}")


def estep_stats_gpu(Xd, wd, kp, block_rows=DEFAULT_BLOCK_ROWS, threads=DEFAULT_THREADS):
    """Fused E-step on the GPU: (nk, s1, s2, ll, ws) as float64 host arrays, like
    ``fastmix.kernels.estep_stats``.  ``Xd`` from ``to_device``; ``wd`` from
    ``weights_to_device`` (or None)."""
    _check_kind(kp)
    cuda = require_gpu()
    _check(Xd, kp)
    N, D = Xd.shape
    K = kp.means64.shape[0]
    if wd is None:
        wd = weights_to_device(None, N)
    mod, (estep, _) = _kernels(kp, Xd.dtype, threads)
    S = mod.n_entries(kp.kind, K, D)
    block_rows = int(block_rows)
    n_blocks = max(1, -(-N // block_rows))
    MT, PT, PCT, g, lconst, C64, g64 = (cuda.to_device(a) for a in _layout(kp))
    group = int(min(n_blocks, max(1, mod.PARTIAL_BYTES // (8 * S))))  # blocks per launch
    part = _alloc(cuda, (group, S), np.float64,
                  f"the per-block partial statistics ({group} blocks x {S} float64)")
    out = _alloc(cuda, (S,), np.float64, "the statistics")
    cut = float(CUT[np.dtype(Xd.dtype)])
    for b0 in range(0, n_blocks, group):  # launch groups in order; each adds to the totals
        nb = min(group, n_blocks - b0)
        estep[nb, int(threads)](Xd, wd, MT, PT, PCT, g, lconst, C64, g64, cut, block_rows, b0,
                                part)
        mod.reduce_blocks[max(1, -(-S // 128)), 128](part, nb, b0 > 0, out)
    tot = out.copy_to_host()
    KD = K * D
    nk = tot[:K].copy()
    s1 = tot[K:K + KD].reshape(K, D).copy()
    s2 = tot[K + KD:S - 2].reshape(s2_shape(kp.kind, K, D)).copy()
    return nk, s1, s2, float(tot[S - 2]), float(tot[S - 1])


def log_prob_gpu(Xd, kp, want_resp=False, block_rows=DEFAULT_BLOCK_ROWS,
                 threads=DEFAULT_THREADS, to_host=True):
    """Per-row log p(x) (N,) float64, labels (N,) int64, responsibilities (N, K) float64 or None,
    like ``fastmix.kernels.log_prob``.  With ``to_host=False`` the device arrays are returned."""
    _check_kind(kp)
    cuda = require_gpu()
    _check(Xd, kp)
    N, D = Xd.shape
    K = kp.means64.shape[0]
    _, (_, logprob) = _kernels(kp, Xd.dtype, threads)
    block_rows = int(block_rows)
    n_blocks = max(1, -(-N // block_rows))
    MT, PT, PCT, g, lconst, _, _ = (cuda.to_device(a) for a in _layout(kp))
    logp = _alloc(cuda, (N,), np.float64, "log p per row")
    labels = _alloc(cuda, (N,), np.int64, "labels per row")
    resp = _alloc(cuda, (N if want_resp else 0, K), np.float64,
                  f"the responsibilities ({N} x {K} float64)")
    nosw = cuda.to_device(np.empty(0, np.float64))
    logprob[n_blocks, int(threads)](Xd, nosw, MT, PT, PCT, g, lconst,
                                    float(CUT[np.dtype(Xd.dtype)]), block_rows, logp, labels, resp)
    if not to_host:
        return logp, labels, (resp if want_resp else None)
    return (logp.copy_to_host(), labels.copy_to_host(),
            resp.copy_to_host() if want_resp else None)


# ------------------------------------------------------------------ GMM expansion -----------
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
    from . import gpu_estep, gpu_expansion
    N, D = Xd.shape
    g = grid_layout(lo, h, shape, sigma, log_pi)
    if g.shape.shape[0] != D:
        raise ValueError(f"data have {D} features, the grid {g.shape.shape[0]}")
    M = g.n_nodes
    counts = g.window_counts()
    T = int(counts.max())
    threads = int(threads)
    R = gpu_expansion.tile_rows(D, T, threads)
    if R < 1:
        raise ValueError(f"the GPU grid kernel stages a row's window ({T} nodes per dimension, "
                         f"D={D}) in shared memory: "
                         f"{gpu_expansion.shared_bytes_per_row(D, T)} bytes, more than "
                         f"{gpu_expansion.SHARED_BYTES}; use a bandwidth closer to the grid "
                         f"spacing, fewer nodes, or device='cpu'")
    if mode == GRID_LOGP and (logp is None or logp.shape != (N,)):
        raise ValueError(f"GRID_LOGP needs a host array logp of shape ({N},)")
    if acc is None:
        acc = [np.zeros(M), np.zeros(2)]
    if wd is None:
        wd = weights_to_device(None, N)
    kernel = gpu_expansion.build(D, R, T, threads)
    split = gpu_expansion.thread_split(counts, threads)
    args = [cuda.to_device(np.ascontiguousarray(a)) for a in
            (g.lo, g.h, g.shape, g.strides, g.inv_sig, g.pi)]
    W, split_d = cuda.to_device(g.W), cuda.to_device(np.asarray(split, np.int64))
    S = (0 if mode == GRID_LOGP else M) + 2
    block_rows = int(block_rows)
    n_blocks = max(1, -(-N // block_rows))
    group = int(min(n_blocks, max(1, gpu_estep.PARTIAL_BYTES // (8 * S))))  # blocks per launch
    part = _alloc(cuda, (group, S), np.float64,
                  f"the per-block node sums ({group} blocks x {S} float64)")
    out = _alloc(cuda, (S,), np.float64, "the node sums")
    logp_d = _alloc(cuda, (N if mode == GRID_LOGP else 0,), np.float64, "log p per row")
    for b0 in range(0, n_blocks, group):  # launch groups in order; each adds to the totals
        nb = min(group, n_blocks - b0)
        kernel[nb, threads](int(mode), Xd, wd, *args, g.lconst, W, split_d, block_rows, b0,
                            part, logp_d)
        gpu_estep.reduce_blocks[max(1, -(-S // threads)), threads](part, nb, b0 > 0, out)
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
    from . import gpu_expansion
    N, D = Xd.shape
    rows = int(rows_per_thread)
    n_chunks = max(1, -(-N // rows))
    lo = _alloc(cuda, (n_chunks, D), np.float64, "the column ranges")
    hi = _alloc(cuda, (n_chunks, D), np.float64, "the column ranges")
    bad = _alloc(cuda, (n_chunks, D), np.int64, "the column ranges")
    threads = int(threads)
    gpu_expansion.column_range[max(1, -(-(n_chunks * D) // threads)), threads](Xd, rows, lo, hi,
                                                                               bad)
    return (lo.copy_to_host().min(axis=0), hi.copy_to_host().max(axis=0),
            bad.copy_to_host().sum(axis=0))
