"""The device side every CUDA launcher shares: the probe, launch shapes and limits, memory,
device arrays and reusable work buffers.

* **Probe** -- ``gpu_available`` / ``require_gpu`` import numba-cuda once per process (never at
  import time of this module) and say what is missing: the ``cuda`` extra, or a visible GPU
  (``GPUUnavailableError``).  ``simulated``: numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).
* **Launch shapes** -- the default rows and threads per block of every kernel family: constants,
  never derived from the device, so that results are the same on every GPU; ``configure`` checks
  a launch against CUDA's limits (``check_launch``) before it reaches the driver.
* **Memory** -- ``_alloc`` / ``_upload`` allocate and copy with a ``MemoryError`` that names the
  size needed and the free memory; ``free_bytes``.  Every device allocation of the package goes
  through them (tests patch them here, in ``fastmix.kernels.cuda.device``).
* **Device arrays** -- ``to_device`` (host arrays copied once; ``__cuda_array_interface__``
  arrays viewed in place), ``to_host``, ``weights_to_device``; ``DeviceScratch`` keeps work
  buffers across the E-steps of a fit.

This module imports NumPy only; the kernel modules of the package (``estep``, ``lowrank``,
``gemm``, ``sgd``, ``linalg``, ``expansion``) import numba-cuda and are loaded on first use.
"""
import importlib.util
import operator

import numpy as np

# ------------------------------------------------------------------ launch shapes -----------
#: Rows per block.  A constant, never derived from the device, so that the partition of the rows
#: (and hence every rounding) is the same on every GPU: results are bit-identical run to run.
DEFAULT_BLOCK_ROWS = 1024
#: Threads per block.
DEFAULT_THREADS = 256
#: Rows per block of the GMM-expansion grid kernel: larger than the E-step's because each block
#: zeroes and the reduction reads a slot of M node sums (see ``expansion``'s docstring).
DEFAULT_GRID_BLOCK_ROWS = 4096
#: Threads per block of the grid kernel.
DEFAULT_GRID_THREADS = 128

#: Threads per block of the SGD kernels (``sgd``).  Results do not depend on it.
SGD_THREADS = 128
#: Samples per block of the SGD log-likelihood launch.  Results do not depend on it.
SGD_TILE_ROWS = 128

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


# ---------------------------------------------------------------------- probe ---------------

class GPUUnavailableError(RuntimeError):
    """No usable CUDA GPU: numba-cuda (fastmix's ``cuda`` extra) is missing or no GPU is
    visible."""


_PROBE: dict = {}


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


# --------------------------------------------------------------------- memory ---------------

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


# ---------------------------------------------------------------- device arrays -------------

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


def rows_to_device(order):
    """A row order (n,) (e.g. a permutation) as a device int64 array."""
    cuda = require_gpu()
    order = np.ascontiguousarray(order, dtype=np.int64)
    if order.ndim != 1:
        raise ValueError(f"a row order must be 1-D, got shape {order.shape}")
    return _upload(cuda, order, f"the row order ({order.shape[0]} int64)")


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
