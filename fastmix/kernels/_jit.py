"""Numba configuration shared by every CPU kernel.

One switch controls on-disk caching (``FASTMIX_NUMBA_CACHE=0`` turns it off), and one set of
fast-math flags is used everywhere.  The flags allow re-association and FMA contraction (so that
reductions vectorise) but deliberately *not* ``nnan``/``ninf``: log-space code relies on ``-inf``.
"""
import os

from numba import njit

CACHE = os.environ.get("FASTMIX_NUMBA_CACHE", "1") != "0"
FASTMATH = frozenset({"reassoc", "contract", "nsz"})


def kernel(parallel=False, fastmath=FASTMATH):
    """Decorator for a fastmix kernel: nopython, nogil, cached, with fastmix's fast-math flags."""
    return njit(cache=CACHE, nogil=True, parallel=parallel, fastmath=set(fastmath) if fastmath else False)
