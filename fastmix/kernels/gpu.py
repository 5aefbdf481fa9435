"""Python-facing wrappers of the CUDA kernels (``gpu_estep``, ``gpu_sgd``): probe, device
arrays, E-step, mini-batch SGD steps.

Importing this module never imports numba-cuda: ``gpu_available()`` / ``require_gpu()`` do, once,
and say what is missing (the ``cuda`` extra, or a visible GPU).  Every function takes device
arrays (``to_device``) and the same ``KernelParams`` as the CPU kernels, and returns what the CPU
wrappers in ``fastmix.kernels`` return: float64 statistics ``(nk, s1, s2, ll, ws)`` on the host.

``NUMBA_ENABLE_CUDASIM=1`` (set before numba-cuda is first imported) runs everything on numba's
CUDA simulator: that is how the tests run on machines without a GPU.
"""
import importlib.util

import numpy as np

from . import CUT, s2_shape

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


# ------------------------------------------------------------------------------ SGD ---------
#: Threads per block of the SGD kernels (``gpu_sgd``).  Results do not depend on it.
SGD_THREADS = 128
#: Samples per block of the SGD log-likelihood launch.  Results do not depend on it.
SGD_TILE_ROWS = 128


class SGDDeviceState:
    """The diagonal SGD parameters on the GPU -- logits xi (K,), means mu (K, D), square roots
    of the precisions s (K, D), float64 copies of the host arrays given -- with the scratch of
    mini-batches of up to ``batch`` rows and the launch shape (``threads`` per block,
    ``tile_rows`` samples per log-likelihood block; neither changes the results).
    ``sgd_minibatch_gpu`` updates them in place; ``download`` copies them back."""

    def __init__(self, xi, mu, s, batch, threads=None, tile_rows=None):
        cuda = require_gpu()
        from . import gpu_sgd
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
        self.xi = _upload(cuda, xi, "the SGD logits")
        self.mu = _upload(cuda, mu, "the SGD means")
        self.s = _upload(cuda, s, "the SGD precision roots")
        nch = -(-D // gpu_sgd.LOG_CHUNK)
        self.ell = _alloc(cuda, (K, self.batch), np.float64,
                          f"the mini-batch log-likelihoods ({K} x {self.batch} float64)")
        self.w = _alloc(cuda, (K, self.batch), np.float64,
                        f"the mini-batch weights ({K} x {self.batch} float64)")
        self.objs = _alloc(cuda, (self.batch,), np.float64, "the mini-batch objectives")
        self.logs = _alloc(cuda, (K, nch), np.float64, "the log-determinant partial sums")
        self.logdet = _alloc(cuda, (K,), np.float64, "the log-determinants")
        self.lse = _alloc(cuda, (1,), np.float64, "the log-sum-exp of the logits")
        self.no_rows = cuda.to_device(np.empty(0, np.int64))

    def download(self, xi, mu, s):
        """Copy the device state into the host arrays xi, mu, s (in place)."""
        xi[...] = self.xi.copy_to_host()
        mu[...] = self.mu.copy_to_host()
        s[...] = self.s.copy_to_host()


def rows_to_device(order):
    """A row order (n,) (e.g. a permutation) as a device int64 array."""
    cuda = require_gpu()
    order = np.ascontiguousarray(order, dtype=np.int64)
    if order.ndim != 1:
        raise ValueError(f"a row order must be 1-D, got shape {order.shape}")
    return _upload(cuda, order, f"the row order ({order.shape[0]} int64)")


def sgd_minibatch_gpu(Xd, rows, first, n_rows, st, g, exact, eps, lam_pi, lam_mu, lam_s, s_min,
                      s_max):
    """``cpu_sgd.sgd_minibatch`` on the GPU over ``n_rows`` rows: mini-batches of ``st.batch``
    consecutive samples of the order ``rows[first:first + n_rows]`` (device int64 rows of
    ``Xd``, from ``rows_to_device``) or, with ``rows`` None, of ``Xd[first:first + n_rows]``.
    ``st`` (``SGDDeviceState``) is updated in place on the device; returns the per-step
    objectives (ceil(n_rows / batch),) float64 on the host -- the only copy back."""
    cuda = require_gpu()
    from . import gpu_sgd
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
    out = _alloc(cuda, (n_steps,), np.float64, "the per-step objectives")
    exact = bool(exact)
    eps, lam_pi, lam_mu, lam_s = float(eps), float(lam_pi), float(lam_mu), float(lam_s)
    s_min, s_max = float(s_min), float(s_max)
    update = gpu_sgd.sgd_update[K, T]
    loglik = gpu_sgd.sgd_loglik
    weights = gpu_sgd.sgd_weights[1, T]
    # prologue: log det and the log-sum-exp from the state as it is now
    update(Xd, rows, first, 0, st.w, st.mu, st.s, eps, lam_mu, lam_s, s_min, s_max, False,
           st.logs, st.logdet, st.xi, st.lse)
    for b in range(n_steps):  # queued launches, no host synchronisation until the copy below
        f = first + b * batch
        B = min(batch, n_rows - b * batch)
        loglik[(K, -(-B // st.tile_rows)), T](Xd, rows, f, B, st.tile_rows, st.xi, st.mu, st.s,
                                              st.logdet, st.lse, st.ell)
        weights(st.ell, B, gd, smooth, exact, st.xi, st.lse, eps, lam_pi, st.w, st.objs, out, b)
        update(Xd, rows, f, B, st.w, st.mu, st.s, eps, lam_mu, lam_s, s_min, s_max, True,
               st.logs, st.logdet, st.xi, st.lse)
    return out.copy_to_host()
