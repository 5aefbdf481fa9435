"""Python-facing wrappers of the CUDA kernels (``gpu_estep``; ``gpu_lowrank`` for the lowrank
kind): probe, device arrays, E-step, log p.

Importing this module never imports numba-cuda: ``gpu_available()`` / ``require_gpu()`` do, once,
and say what is missing (the ``cuda`` extra, or a visible GPU).  Every function takes device
arrays (``to_device``) and the same ``KernelParams`` as the CPU kernels, and returns what the CPU
wrappers in ``fastmix.kernels`` return: float64 statistics ``(nk, s1, s2, ll, ws)`` on the host.

``NUMBA_ENABLE_CUDASIM=1`` (set before numba-cuda is first imported) runs everything on numba's
CUDA simulator: that is how the tests run on machines without a GPU.
"""
import importlib.util

import numpy as np

from . import CUT, LOWRANK, n_factors, s2_shape

#: Rows per block.  A constant, never derived from the device, so that the partition of the rows
#: (and hence every rounding) is the same on every GPU: results are bit-identical run to run.
DEFAULT_BLOCK_ROWS = 1024
#: Threads per block.
DEFAULT_THREADS = 256

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


def _layout_lowrank(kp):
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


def _posterior_cov(kp):
    """Cov[z | x] = C_k C_k^T (K, q, q) float64 of a lowrank model: the same for every row of
    a component, so the statistics add it once, times nk (as cpu_lowrank does)."""
    q = n_factors(kp)
    C = np.asarray(kp.pc[:, 1 + q:, :q], np.float64)
    return np.einsum("kaj,kcj->kac", C, C)


def _kernels(kp, dtype, threads):
    """(kernel module, (estep_partials, log_prob)) compiled for this model's kind and shape, or
    a ValueError when one row of the shared-memory tile does not fit."""
    from . import gpu_estep
    K, D = kp.means64.shape
    dt = np.dtype(dtype)
    if kp.kind == LOWRANK:
        from . import gpu_lowrank
        q = n_factors(kp)
        R = gpu_lowrank.tile_rows(K, D, q, dt.itemsize)
        if R < 1:
            raise ValueError(
                f"lowrank with K = {K} components, q = {q} factors and D = {D} {dt.name} "
                f"features does not fit the GPU kernel's shared-memory tile: one row needs "
                f"8 K (1 + q) + {dt.itemsize} D + 16 = "
                f"{gpu_lowrank.row_bytes(K, D, q, dt.itemsize)} bytes, the tile has "
                f"{gpu_estep.SHARED_BYTES}; use fewer components or factors, or device='cpu'")
        return gpu_lowrank, gpu_lowrank.build(dt.name, K, D, q, R, int(threads))
    R = gpu_estep.tile_rows(kp.kind, K, D, dt.itemsize)
    if R < 1:
        raise ValueError(f"K = {K} components do not fit the GPU kernel's shared-memory tile "
                         f"({gpu_estep.SHARED_BYTES} bytes; at most ~{gpu_estep.SHARED_BYTES // 8 - 16}"
                         f" components)")
    return gpu_estep, gpu_estep.build(kp.kind, dt.name, K, D, R, int(threads))


def _check(Xd, kp):
    if Xd.dtype != kp.means.dtype:
        raise ValueError(f"kernel parameters are {kp.means.dtype} but the data are {Xd.dtype}")
    if Xd.shape[1] != kp.means64.shape[1]:
        raise ValueError(f"data have {Xd.shape[1]} features, the model {kp.means64.shape[1]}")


def _block_totals(cuda, S, n_blocks, launch):
    """The S statistic totals (host float64) of ``n_blocks`` blocks: ``launch(nb, b0, part)``
    runs blocks b0 .. b0 + nb - 1, block b0 + b writing its partials into ``part[b, :S]``.

    The blocks run in groups of a fixed size (a function of S and ``gpu_estep.PARTIAL_BYTES``
    only, so that the result is reproducible), each group reduced on the device in block order
    and added to the totals in group order; only the S totals are copied to the host."""
    from . import gpu_estep
    n_blocks = max(1, int(n_blocks))
    group = int(min(n_blocks, max(1, gpu_estep.PARTIAL_BYTES // (8 * S))))  # blocks per launch
    part = _alloc(cuda, (group, S), np.float64,
                  f"the per-block partial statistics ({group} blocks x {S} float64)")
    out = _alloc(cuda, (S,), np.float64, "the statistics")
    for b0 in range(0, n_blocks, group):  # launch groups in order; each adds to the totals
        nb = min(group, n_blocks - b0)
        launch(nb, b0, part)
        gpu_estep.reduce_blocks[max(1, -(-S // 128)), 128](part, nb, b0 > 0, out)
    return out.copy_to_host()


def estep_stats_gpu(Xd, wd, kp, block_rows=DEFAULT_BLOCK_ROWS, threads=DEFAULT_THREADS):
    """Fused E-step on the GPU: (nk, s1, s2, ll, ws) as float64 host arrays, like
    ``fastmix.kernels.estep_stats``.  ``Xd`` from ``to_device``; ``wd`` from
    ``weights_to_device`` (or None)."""
    cuda = require_gpu()
    _check(Xd, kp)
    N, D = Xd.shape
    K = kp.means64.shape[0]
    if wd is None:
        wd = weights_to_device(None, N)
    mod, (estep, _) = _kernels(kp, Xd.dtype, threads)
    q = n_factors(kp)
    block_rows, threads = int(block_rows), int(threads)
    cut = float(CUT[np.dtype(Xd.dtype)])
    if kp.kind == LOWRANK:
        S = mod.n_entries(K, D, q)
        MT, PT, BT, CT, lconst, C64 = (cuda.to_device(a) for a in _layout_lowrank(kp))

        def launch(nb, b0, part):
            estep[nb, threads](Xd, wd, MT, PT, BT, CT, lconst, C64, cut, block_rows, b0, part)
    else:
        S = mod.n_entries(kp.kind, K, D)
        MT, PT, PCT, g, lconst, C64, g64 = (cuda.to_device(a) for a in _layout(kp))

        def launch(nb, b0, part):
            estep[nb, threads](Xd, wd, MT, PT, PCT, g, lconst, C64, g64, cut, block_rows, b0,
                               part)
    tot = _block_totals(cuda, S, -(-N // block_rows), launch)
    KD = K * D
    nk = tot[:K].copy()
    s1 = tot[K:K + KD].reshape(K, D).copy()
    s2 = tot[K + KD:S - 2].reshape(s2_shape(kp.kind, K, D, q)).copy()
    if kp.kind == LOWRANK:  # + sum w r Cov[z | x] = nk_k C_k C_k^T (not summed per row)
        s2[:, 1:, D:D + q] += nk[:, None, None] * _posterior_cov(kp)
    return nk, s1, s2, float(tot[S - 2]), float(tot[S - 1])


def log_prob_gpu(Xd, kp, want_resp=False, block_rows=DEFAULT_BLOCK_ROWS,
                 threads=DEFAULT_THREADS, to_host=True):
    """Per-row log p(x) (N,) float64, labels (N,) int64, responsibilities (N, K) float64 or None,
    like ``fastmix.kernels.log_prob``.  With ``to_host=False`` the device arrays are returned."""
    cuda = require_gpu()
    _check(Xd, kp)
    N, D = Xd.shape
    K = kp.means64.shape[0]
    _, (_, logprob) = _kernels(kp, Xd.dtype, threads)
    block_rows = int(block_rows)
    n_blocks = max(1, -(-N // block_rows))
    if kp.kind == LOWRANK:
        MT, PT, BT, _, lconst, _ = (cuda.to_device(a) for a in _layout_lowrank(kp))
        params = (MT, PT, BT, lconst)
    else:
        MT, PT, PCT, g, lconst, _, _ = (cuda.to_device(a) for a in _layout(kp))
        params = (MT, PT, PCT, g, lconst)
    logp = _alloc(cuda, (N,), np.float64, "log p per row")
    labels = _alloc(cuda, (N,), np.int64, "labels per row")
    resp = _alloc(cuda, (N if want_resp else 0, K), np.float64,
                  f"the responsibilities ({N} x {K} float64)")
    nosw = cuda.to_device(np.empty(0, np.float64))
    logprob[n_blocks, int(threads)](Xd, nosw, *params, float(CUT[np.dtype(Xd.dtype)]),
                                    block_rows, logp, labels, resp)
    if not to_host:
        return logp, labels, (resp if want_resp else None)
    return (logp.copy_to_host(), labels.copy_to_host(),
            resp.copy_to_host() if want_resp else None)
