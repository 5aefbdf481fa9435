"""Shared set-up of the GPU test modules (``tests/test_gpu*.py``).

Import this module *first* in a GPU test module, before anything imports ``numba.cuda``.
Without a GPU (CI) it switches numba-cuda to the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``),
so kernels run as Python on tiny inputs and every code path is still exercised; with
``FASTMIX_TEST_GPU=real`` the same tests run on the device (and the ``real_gpu`` ones, skipped
on the simulator).  The importing module is skipped when numba-cuda is not installed (it comes
with the ``test`` and ``cuda`` extras) or when neither a GPU nor the simulator is usable.
"""
import os
import subprocess
import sys
import textwrap
import threading

import pytest

MODE = os.environ.get("FASTMIX_TEST_GPU", "sim")
if MODE != "real" and "numba.cuda" not in sys.modules:
    # numba-cuda reads numba's config, which numba read from the environment when it was first
    # imported (earlier test modules import it); set the variable and have numba re-read it.  It
    # stays set for the rest of the process: numba re-reads its config later on, and the jit
    # decorator checks ENABLE_CUDASIM at every call.  It only affects numba.cuda; subprocess
    # tests that need the real target remove it from their environment.
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    if "numba" in sys.modules:
        from numba.core import config as _numba_config
        _numba_config.reload_config()

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed (pip install "
                                         "'fastmix[cuda]', or the test extra)")

from fastmix.kernels import cuda as gk  # noqa: E402

if not gk.gpu_available():
    pytest.skip(f"no GPU and no simulator: {gk.device._probe()[1]}", allow_module_level=True)

#: True on numba's CUDA simulator.
SIM = gk.simulated()
#: Marks tests that only mean something on a real GPU (timings, large problems).
real_gpu = pytest.mark.skipif(SIM, reason="needs a real GPU (running on the CUDA simulator)")


def real_target_env():
    """os.environ without the simulator switch (for subprocesses that need the real target)."""
    return {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}


#: Prelude of the compile checks: the real CUDA target without a GPU (the current device's
#: compute capability faked as sm_90), type shorthands, and ``check(kernels)``: type inference
#: and lowering to LLVM IR of each (python function, signature) -- no CUDA libraries needed --
#: with no atomics, then PTX where NVVM/NVRTC are installed (the cuda extra), again without
#: atomics.  Prints PTX-OK, or IR-OK when the compiler libraries are missing.
COMPILE_PRELUDE = textwrap.dedent("""
    import numba.cuda.dispatcher as disp
    from numba import cuda, types
    from numba.cuda import compiler
    if not (hasattr(disp, "get_current_device") and hasattr(compiler, "compile_cuda")):
        print("SKIP: numba-cuda internals changed (get_current_device / compile_cuda)")
        raise SystemExit
    class Device:  # device functions ask the current device for its compute capability
        compute_capability = (9, 0)
    disp.get_current_device = lambda: Device()
    f32, f64, i64, b1 = types.float32, types.float64, types.int64, types.boolean
    A = lambda dt, nd: types.Array(dt, nd, "C")

    def check(kernels):
        for func, sig in kernels:
            ir = compiler.compile_cuda(func, types.void, sig, cc=(9, 0)).library.get_llvm_str()
            assert "atomicrmw" not in ir, "atomics in the LLVM IR of " + func.__name__
        try:
            for func, sig in kernels:
                ptx = cuda.compile_ptx(func, sig, cc=(9, 0))[0]
                assert "atom." not in ptx, "atomics in the PTX of " + func.__name__
        except Exception as exc:
            msg = (type(exc).__name__ + " " + str(exc)).lower()
            if any(s in msg for s in ("nvvm", "nvrtc", "notfound", "supporterror")):
                print("IR-OK")
                return
            raise
        print("PTX-OK")
""")


def compile_check(body):
    """Run ``COMPILE_PRELUDE`` + ``body`` (which calls ``check``) in a fresh process on the real
    CUDA target (this one may be on the simulator, which never types the kernels); skip when
    numba-cuda's internals changed.  Returns "PTX-OK" or "IR-OK"."""
    code = COMPILE_PRELUDE + textwrap.dedent(body)
    out = subprocess.run([sys.executable, "-c", code], env=real_target_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    if out.stdout.startswith("SKIP"):
        pytest.skip(out.stdout.strip())
    status = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    assert status in ("PTX-OK", "IR-OK"), out.stdout
    return status


class _AtomicAllocations(dict):
    """The simulator's table of a block's shared arrays, made safe for threads.

    ``FakeCUDAShared.array`` looks an array up (``get``) and, when it is missing, allocates it
    and stores it (``[] =``) without a lock: two CUDA threads of a block (Python threads) can
    both miss, and one then works on an array of its own -- garbage results, rarely (seen once
    in six runs of tests/test_gpu_gemm.py with a short switch interval).  Here a miss holds a
    lock until the array is stored, so the other threads wait and find it."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()

    def get(self, key, default=None):
        self._lock.acquire()
        found = super().get(key)
        if found is not None:
            self._lock.release()
            return found
        return default  # the caller stores the array next, which releases the lock

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self._lock.release()


def _patch_simulator_shared_arrays():
    """Install ``_AtomicAllocations`` in every simulated block (simulator only; skipped if
    numba-cuda's simulator internals changed)."""
    from numba.cuda.simulator import kernelapi
    shared = kernelapi.FakeCUDAShared
    if getattr(shared, "_fastmix_atomic", False):
        return
    if not isinstance(getattr(shared(0), "_allocations", None), dict):
        return
    init = shared.__init__

    def atomic_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._allocations = _AtomicAllocations()

    shared.__init__ = atomic_init
    shared._fastmix_atomic = True


if SIM:
    _patch_simulator_shared_arrays()


class ForeignDeviceArray:
    """A GPU array from another library (CuPy, PyTorch, ...) as fastmix meets one: an object
    that exposes nothing but ``__cuda_array_interface__`` (version 3), here describing the memory
    of a numba device array ``inner`` -- on the simulator, whose device memory is host memory,
    the NumPy array underneath the simulator's stand-in."""

    def __init__(self, inner):
        self.inner = inner

    @property
    def __cuda_array_interface__(self):
        if not SIM:
            return self.inner.__cuda_array_interface__
        face = self.inner.__array_interface__  # the simulator forwards it to its NumPy array
        return {"shape": face["shape"], "typestr": face["typestr"], "data": face["data"],
                "strides": face["strides"], "version": 3}
