"""Python-facing wrappers of the CUDA kernels (``estep``; ``lowrank`` for the lowrank
kind; ``gemm``, the GEMM formulation of the diag E-step for many components; ``sgd``;
``linalg``; ``expansion``, the modules of this package): probe, device arrays, E-step, log p, host -> device
streaming, mini-batch SGD steps, BigLearn's marginal rows, the GMM-expansion grid pass.

Importing this module never imports numba-cuda: ``gpu_available()`` / ``require_gpu()`` do, once,
and say what is missing (the ``cuda`` extra, or a visible GPU).  Every function takes device
arrays (``to_device``) and the same ``KernelParams`` as the CPU kernels, and returns what the CPU
wrappers in ``fastmix.kernels`` return: float64 statistics ``(nk, s1, s2, ll, ws)`` on the host.

``NUMBA_ENABLE_CUDASIM=1`` (set before numba-cuda is first imported) runs everything on numba's
CUDA simulator: that is how the tests run on machines without a GPU.
"""
import importlib.util
import operator

import numpy as np

from .. import CUT, GRID_LOGP, LOWRANK, grid_layout, n_factors, s2_shape

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

#: CUDA's launch limits (every compute capability from 3.0 on): blocks per grid along x, y, z.
MAX_GRID_DIMS = (2**31 - 1, 65535, 65535)
#: Threads per block along x, y, z, and in all.
MAX_BLOCK_DIMS = (1024, 1024, 64)
MAX_THREADS_PER_BLOCK = 1024


def _dims3(shape, what, name):
    """A launch dimension (int or tuple of 1-3 ints) as a 3-tuple of Python ints."""
    dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if not 1 <= len(dims) <= 3:
        raise ValueError(f"the {name} of {what} must have 1 to 3 dimensions, got {shape!r}")
    try:
        dims = tuple(operator.index(d) for d in dims)
    except TypeError:
        raise TypeError(f"the {name} of {what} must be integers, got {shape!r}") from None
    return dims + (1,) * (3 - len(dims))


def check_launch(grid, block, what="a kernel"):
    """Check a launch shape against CUDA's hardware limits before launching.

    ``grid`` (blocks) and ``block`` (threads): an int or a tuple of 1 to 3 ints (x, y, z).
    Every grid dimension must be in 1 .. (2^31 - 1, 65535, 65535) and every block dimension in
    1 .. (1024, 1024, 64) with at most 1024 threads in all; numba's CUDA simulator does not check
    these and a real device refuses the launch with an opaque error, so a ValueError naming the
    dimension, its value and the limit is raised here instead.  Returns the (grid, block)
    3-tuples."""
    g = _dims3(grid, what, "grid")
    b = _dims3(block, what, "block")
    for name, dims, limits in (("grid", g, MAX_GRID_DIMS), ("block", b, MAX_BLOCK_DIMS)):
        for axis, n, limit in zip("xyz", dims, limits):
            if not 1 <= n <= limit:
                raise ValueError(f"{what}: {name} dimension {axis} = {n} is outside CUDA's "
                                 f"limit 1..{limit} (launch grid {g}, block {b}); the problem "
                                 f"is too large for this launch shape")
    if b[0] * b[1] * b[2] > MAX_THREADS_PER_BLOCK:
        raise ValueError(f"{what}: {b[0] * b[1] * b[2]} threads per block (block {b}) exceed "
                         f"CUDA's limit of {MAX_THREADS_PER_BLOCK}")
    return g, b


def configure(kernel, grid, block, stream=0):
    """``kernel[grid, block, stream]`` after ``check_launch``: every launch goes through here."""
    name = getattr(kernel, "__name__", None) or getattr(getattr(kernel, "py_func", None),
                                                        "__name__", "a kernel")
    check_launch(grid, block, f"the launch of {name}")
    return kernel[grid, block, stream]


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


def free_bytes():
    """Free device memory in bytes (None on the simulator)."""
    return _free_bytes(require_gpu())


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


class _InterfaceView:
    """Holds ``__array_interface__`` for NumPy and keeps the owner of the memory alive."""

    def __init__(self, owner, interface):
        self.owner = owner
        self.__array_interface__ = interface


def _simulated_view(a):
    """The simulator's stand-in for ``cuda.as_cuda_array``: on numba's CUDA simulator device
    memory is host memory, so the memory that ``a.__cuda_array_interface__`` describes (data
    pointer, shape, typestr, strides) is viewed as a NumPy array -- no copy -- wrapped in the
    simulator's device-array type."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
    face = a.__cuda_array_interface__
    if face.get("mask") is not None:
        raise ValueError("masked device arrays (__cuda_array_interface__ with a mask) are not "
                         "supported")
    view = {"shape": tuple(face["shape"]), "typestr": face["typestr"],
            "data": tuple(face["data"]), "strides": face.get("strides"), "version": 3}
    return FakeCUDAArray(np.asarray(_InterfaceView(a, view)))


def _as_cuda_array(cuda, a):
    """A numba view of a device array, sharing its memory (no copy), made from its
    ``__cuda_array_interface__`` (the simulator's own stand-ins as they are)."""
    if type(a).__name__ == "FakeCUDAArray":
        return a
    if simulated():
        return _simulated_view(a)
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


def to_host(a):
    """A device array copied to a new host NumPy array."""
    return _as_cuda_array(require_gpu(), a).copy_to_host()


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
    from ..cpu.estep import DIAG, FULL, SPHERICAL, TIED
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
    from . import estep as gpu_estep
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


class DeviceScratch:
    """Device work buffers kept across the E-steps of one fit.

    numba-cuda's default allocator calls cuMemAlloc / cuMemFree for every device array; an
    E-step's partial statistics are one large buffer (64 MiB at N = 10^6, D = K = 64), so a
    fit that allocated them per iteration would pay an allocation (and a deferred free) every
    iteration.  ``alloc`` hands back the buffer it gave last time for the same (slot, what)
    when shape and dtype match, else allocates and replaces it (so shapes that change, e.g.
    BigLearn's marginals, keep one buffer per slot alive, not one per shape)."""

    def __init__(self):
        self._bufs = {}

    def alloc(self, shape, dtype, what, slot=0):
        shape, dt = tuple(int(n) for n in shape), np.dtype(dtype)
        key = (slot, what.split(" (")[0])
        held = self._bufs.get(key)
        if held is not None and held[0] == (shape, dt):
            return held[1]
        self._bufs.pop(key, None)  # drop the old one before allocating its replacement
        buf = _alloc(require_gpu(), shape, dt, what)
        self._bufs[key] = ((shape, dt), buf)
        return buf

    def clear(self):
        self._bufs.clear()


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
        from . import estep as gpu_estep, gemm as gpu_gemm
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
                kp, dtype, lambda shape, dt, what: _alloc(cuda, shape, dt, what), self.cut)
            self.S = self._gemm.S
            self.block_rows, self.threads = int(block_rows), int(threads)
            return
        self.mod, (self.estep, _) = _kernels(kp, dtype, threads)
        self.q = n_factors(kp)
        self.lowrank = kp.kind == LOWRANK
        if self.lowrank:  # MT, PT, BT, CT, lconst, C64
            self.S = self.mod.n_entries(self.K, self.D, self.q)
            self.params = tuple(cuda.to_device(a) for a in _layout_lowrank(kp))
        else:             # MT, PT, PCT, g, lconst, C64, g64
            self.S = self.mod.n_entries(kp.kind, self.K, self.D)
            self.params = tuple(cuda.to_device(a) for a in _layout(kp))
        self.block_rows = int(block_rows)
        self.threads = int(threads)
        self.reduce = gpu_estep.reduce_blocks
        #: blocks per launch: a function of S only, so the grouping is reproducible
        self.group = int(max(1, gpu_estep.PARTIAL_BYTES // (8 * self.S)))

    def _alloc(self, slot):
        """alloc(shape, dtype, what) from the scratch (slot: one set per launch stream)."""
        if self.scratch is None:
            return lambda shape, dt, what: _alloc(require_gpu(), shape, dt, what)
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
            configure(self.estep, nb, self.threads, stream)(Xd, wd, *self.params, self.cut,
                                                            self.block_rows, b0, part)
            configure(self.reduce, max(1, -(-self.S // 128)), 128, stream)(part, nb, True, out)

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
            q = self.q
            s2[:, 1:, D:D + q] += nk[:, None, None] * _posterior_cov(self.kp)
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


#: Bytes of one staged host chunk when streaming host -> device (two are in flight).  A constant
#: (not the device's memory) so that the chunking, and hence every rounding, is reproducible.
STREAM_CHUNK_BYTES = 64 * 2**20
#: Host threads that copy a block into the pinned staging buffer (a memcpy of up to
#: STREAM_CHUNK_BYTES; one core's memcpy is slower than a PCIe 4/5 link).
STAGING_THREADS = 4


def stream_chunk_rows(D, dtype, block_rows=DEFAULT_BLOCK_ROWS):
    """Rows per streamed chunk: ~STREAM_CHUNK_BYTES, a whole number of GPU blocks."""
    rows = STREAM_CHUNK_BYTES // (int(D) * np.dtype(dtype).itemsize)
    return int(max(1, rows // block_rows) * block_rows)


def _copy_rows(dst, src, pool):
    """dst[:] = src in row slices on a thread pool (numpy's copy releases the GIL)."""
    n = src.shape[0]
    if pool is None or n < 2 * STAGING_THREADS or dst.nbytes < 2**22:
        np.copyto(dst, src, casting="same_kind")
        return
    step = -(-n // STAGING_THREADS)
    futures = [pool.submit(np.copyto, dst[i:i + step], src[i:i + step], casting="same_kind")
               for i in range(0, n, step)]
    for f in futures:
        f.result()


class StreamedEStep:
    """E-step statistics of host data too large for (or not resident on) the device.

    Host blocks of at most ``capacity`` rows are copied into one of two page-locked (pinned)
    staging buffers, sent to one of two device buffers by an asynchronous copy on one of two
    CUDA streams, and reduced there by ``EStepPlan.launch`` into that stream's own totals: the
    copy of block i + 1 overlaps the kernels of block i, and the host reads and stages block
    i + 2 meanwhile.  A buffer is reused only after its stream has finished with it.  The two
    totals are added on the host at the end of a pass, so a pass's result depends only on the
    blocks' row counts (fixed by ``capacity``), not on timing: deterministic.

    Buffers (2 x pinned + 2 x device, ``capacity`` rows each) are allocated once and reused
    by every pass; ``close`` frees them (they are also freed with the object).
    """

    def __init__(self, capacity, D, dtype, weighted, block_rows=DEFAULT_BLOCK_ROWS,
                 threads=DEFAULT_THREADS, formulation="auto"):
        cuda = require_gpu()
        from . import gemm as gpu_gemm
        if formulation not in gpu_gemm.FORMULATIONS:
            raise ValueError(f"formulation must be one of {gpu_gemm.FORMULATIONS}, got "
                             f"{formulation!r}")
        self.formulation = formulation
        self.capacity, self.D = int(capacity), int(D)
        self.dtype = np.dtype(dtype)
        self.block_rows, self.threads = int(block_rows), int(threads)
        self.weighted = bool(weighted)
        shape = (self.capacity, self.D)
        what = f"two streamed chunks ({self.capacity} x {self.D} {self.dtype.name})"
        self.pinned = [cuda.pinned_array(shape, dtype=self.dtype) for _ in range(2)]
        self.dev = [_alloc(cuda, shape, self.dtype, what) for _ in range(2)]
        nw = self.capacity if self.weighted else 0
        self.pinned_w = [cuda.pinned_array((nw,), dtype=np.float64) for _ in range(2)]
        self.dev_w = [_alloc(cuda, (nw,), np.float64, "streamed weights") for _ in range(2)]
        self.streams = [cuda.stream() for _ in range(2)]
        self._pool = None
        if STAGING_THREADS > 1:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(STAGING_THREADS, thread_name_prefix="fastmix-stage")
        self.bytes_sent = 0
        self.scratch = DeviceScratch()  # partials and totals, reused by every pass

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.pinned = self.dev = self.pinned_w = self.dev_w = self.streams = None
        self.scratch.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _stage(self, j, X, w):
        """Copy a host block into buffer j and start its transfer on stream j."""
        cuda = require_gpu()
        n = X.shape[0]
        if n > self.capacity:
            raise ValueError(f"a block of {n} rows exceeds the staging capacity "
                             f"{self.capacity}")
        if X.dtype != self.dtype:
            raise ValueError(f"streamed rows are {X.dtype}, expected {self.dtype}")
        stream = self.streams[j]
        _copy_rows(self.pinned[j][:n], X, self._pool)
        Xd = self.dev[j][:n]
        cuda.to_device(self.pinned[j][:n], stream=stream, to=Xd)
        if self.weighted:
            if w is None:
                raise ValueError("a block came without the weights the stream was opened with")
            self.pinned_w[j][:n] = w
            wd = self.dev_w[j][:n]
            cuda.to_device(self.pinned_w[j][:n], stream=stream, to=wd)
        else:
            wd = self.dev_w[j]  # empty: unit weights
        self.bytes_sent += X.nbytes + (n * 8 if self.weighted else 0)
        return Xd, wd

    def estep(self, blocks, kp):
        """(nk, s1, s2, ll, ws) of the rows of ``blocks`` (an iterable of (X, w or None) host
        arrays of at most ``capacity`` rows) under ``kp``."""
        plan = EStepPlan(kp, self.dtype, self.block_rows, self.threads, self.formulation,
                         self.scratch)
        part = [plan.partials(self.capacity, slot) for slot in range(2)]
        out = [plan.totals(slot) for slot in range(2)]
        i = -1
        for i, (X, w) in enumerate(blocks):
            j = i % 2
            self.streams[j].synchronize()  # buffer j (and part[j]) free again
            Xd, wd = self._stage(j, X, w)
            plan.launch(Xd, wd, part[j], out[j], stream=self.streams[j])
        for st in self.streams:
            st.synchronize()
        tot = out[0].copy_to_host()
        if i >= 1:
            tot = tot + out[1].copy_to_host()
        return plan.unpack(tot)


def marginal_buffer(Xd):
    """A device buffer for ``marginal_rows`` of any subset of Xd's columns (N * D entries)."""
    N, D = Xd.shape
    return _alloc(require_gpu(), (N * D,), Xd.dtype, f"the marginal rows ({N} x {D})")


def marginal_rows(Xd, A, T, out=None):
    """Rows of a (transformed) marginal on the device: ``(Xd @ A.T)[:, T]`` when ``A`` (D, D)
    is given, else ``Xd[:, T]``; ``Xd`` itself when neither transforms nor drops a column.
    ``out``: a device buffer of at least N * len(T) entries of the data dtype, reused."""
    from . import linalg as gpu_linalg
    cuda = require_gpu()
    N, D = Xd.shape
    T = np.asarray(T, dtype=np.int64)
    if A is None and len(T) == D and np.array_equal(T, np.arange(D)):
        return Xd
    m = len(T)
    if out is None:
        out = _alloc(cuda, (N * m,), Xd.dtype, f"the marginal rows ({N} x {m})")
    Yd = out[:N * m].reshape(N, m)
    if A is None:
        gpu_linalg.gather(Xd, cuda.to_device(T), Yd)
    else:
        P = np.ascontiguousarray(np.asarray(A)[T, :].T, dtype=Xd.dtype)  # (D, m)
        gpu_linalg.project(Xd, cuda.to_device(P), Yd)
    return Yd


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
    configure(logprob, n_blocks, int(threads))(Xd, nosw, *params, float(CUT[np.dtype(Xd.dtype)]),
                                    block_rows, logp, labels, resp)
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
        from . import sgd as gpu_sgd
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
    out = _alloc(cuda, (n_steps,), np.float64, "the per-step objectives")
    exact = bool(exact)
    eps, lam_pi, lam_mu, lam_s = float(eps), float(lam_pi), float(lam_mu), float(lam_s)
    s_min, s_max = float(s_min), float(s_max)
    update = configure(gpu_sgd.sgd_update, K, T)
    loglik = gpu_sgd.sgd_loglik
    weights = configure(gpu_sgd.sgd_weights, 1, T)
    # prologue: log det and the log-sum-exp from the state as it is now
    update(Xd, rows, first, 0, st.w, st.mu, st.s, eps, lam_mu, lam_s, s_min, s_max, False,
           st.logs, st.logdet, st.xi, st.lse)
    for b in range(n_steps):  # queued launches, no host synchronisation until the copy below
        f = first + b * batch
        B = min(batch, n_rows - b * batch)
        configure(loglik, (K, -(-B // st.tile_rows)), T)(Xd, rows, f, B, st.tile_rows, st.xi,
                                                         st.mu, st.s, st.logdet, st.lse, st.ell)
        weights(st.ell, B, gd, smooth, exact, st.xi, st.lse, eps, lam_pi, st.w, st.objs, out, b)
        update(Xd, rows, f, B, st.w, st.mu, st.s, eps, lam_mu, lam_s, s_min, s_max, True,
               st.logs, st.logdet, st.xi, st.lse)
    return out.copy_to_host()


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
    from . import estep as gpu_estep, expansion as gpu_expansion
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
        configure(kernel, nb, threads)(int(mode), Xd, wd, *args, g.lconst, W, split_d,
                                       block_rows, b0, part, logp_d)
        configure(gpu_estep.reduce_blocks, max(1, -(-S // threads)), threads)(part, nb, b0 > 0,
                                                                              out)
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
    from . import expansion as gpu_expansion
    N, D = Xd.shape
    rows = int(rows_per_thread)
    n_chunks = max(1, -(-N // rows))
    lo = _alloc(cuda, (n_chunks, D), np.float64, "the column ranges")
    hi = _alloc(cuda, (n_chunks, D), np.float64, "the column ranges")
    bad = _alloc(cuda, (n_chunks, D), np.int64, "the column ranges")
    threads = int(threads)
    configure(gpu_expansion.column_range, max(1, -(-(n_chunks * D) // threads)), threads)(
        Xd, rows, lo, hi, bad)
    return (lo.copy_to_host().min(axis=0), hi.copy_to_host().max(axis=0),
            bad.copy_to_host().sum(axis=0))
