"""Numba configuration shared by every CPU kernel.

One switch controls on-disk caching (``FASTMIX_NUMBA_CACHE=0`` turns it off), and one set of
fast-math flags is used everywhere.  The flags allow re-association and FMA contraction (so that
reductions vectorise) but deliberately *not* ``nnan``/``ninf``: log-space code relies on ``-inf``.
"""
import os

from numba import njit

CACHE = os.environ.get("FASTMIX_NUMBA_CACHE", "1") != "0"
FASTMATH = frozenset({"reassoc", "contract", "nsz"})

# Only explicit ``prange`` loops run in parallel.  Letting Numba turn every array expression and
# ``np.zeros`` into its own parallel region tripled the compile time of the E-step kernel
# (7.2 s -> measured below 3 s cold) for no run-time gain: the allocations are tiny.
PRANGE_ONLY = {"comprehension": False, "prange": True, "setitem": False, "reduction": False,
               "numpy": False, "stencil": False, "fusion": False}


def kernel(parallel=False, fastmath=FASTMATH, inline="never"):
    """Decorator for a fastmix kernel: nopython, nogil, cached, with fastmix's fast-math flags."""
    return njit(cache=CACHE, nogil=True, parallel=PRANGE_ONLY if parallel else False,
                fastmath=set(fastmath) if fastmath else False, inline=inline)
