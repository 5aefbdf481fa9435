"""Shared set-up of the GPU test modules (``tests/test_gpu*.py``).

Import this module *first* in a GPU test module, before anything imports ``numba.cuda``.
Without a GPU (CI) it switches numba-cuda to the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``),
so kernels run as Python on tiny inputs and every code path is still exercised; with
``FASTMIX_TEST_GPU=real`` the same tests run on the device (and the ``real_gpu`` ones, skipped
on the simulator).  The importing module is skipped when numba-cuda is not installed (it comes
with the ``test`` and ``cuda`` extras) or when neither a GPU nor the simulator is usable.
"""
import os
import sys
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

from fastmix.kernels import gpu as gk  # noqa: E402

if not gk.gpu_available():
    pytest.skip(f"no GPU and no simulator: {gk._probe()[1]}", allow_module_level=True)

#: True on numba's CUDA simulator.
SIM = gk.simulated()
#: Marks tests that only mean something on a real GPU (timings, large problems).
real_gpu = pytest.mark.skipif(SIM, reason="needs a real GPU (running on the CUDA simulator)")


def real_target_env():
    """os.environ without the simulator switch (for subprocesses that need the real target)."""
    return {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}


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
