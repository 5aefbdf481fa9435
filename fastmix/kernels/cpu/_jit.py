"""Numba configuration shared by every CPU kernel.

One switch controls on-disk caching (``FASTMIX_NUMBA_CACHE=0`` turns it off), and one set of
fast-math flags is used everywhere: FMA contraction and no signed zeros only.  Deliberately *not*
``nnan``/``ninf`` (log-space code relies on ``-inf``) and *not* ``reassoc``: with re-association
LLVM versions a loop into a vector and a scalar variant chosen at run time by a pointer-alias
check, and the two round differently -- results then depended on where malloc put the scratch
arrays, i.e. were not reproducible between runs or thread counts (found by
tests/test_determinism.py).
"""
import os

from numba import njit

CACHE = os.environ.get("FASTMIX_NUMBA_CACHE", "1") != "0"
FASTMATH = frozenset({"contract", "nsz"})

# Only explicit ``prange`` loops run in parallel.  Letting Numba turn every array expression and
# ``np.zeros`` into its own parallel region tripled the compile time of the E-step kernel
# (7.2 s -> measured below 3 s cold) for no run-time gain: the allocations are tiny.
PRANGE_ONLY = {"comprehension": False, "prange": True, "setitem": False, "reduction": False,
               "numpy": False, "stencil": False, "fusion": False}


def kernel(parallel=False, fastmath=FASTMATH, inline="never", error_model="python"):
    """Decorator for a fastmix kernel: nopython, nogil, cached, with fastmix's fast-math flags.

    ``error_model="numpy"`` drops Numba's division-by-zero check (x / 0 gives inf or nan, as
    in NumPy); only for kernels whose divisors are positive by construction -- the check is a
    branch per division and keeps LLVM from vectorising the loop around it."""
    return njit(cache=CACHE, nogil=True, parallel=PRANGE_ONLY if parallel else False,
                fastmath=set(fastmath) if fastmath else False, inline=inline,
                error_model=error_model)
