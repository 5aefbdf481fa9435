"""Run a serial ``nogil`` kernel over ranges of work items on a pool of Python threads.

fastmix's CPU passes used to be ``njit(parallel=True)`` functions with a ``prange`` over chunk
slots.  Numba's parfor lowering of such a function re-compiles the loop body as a gufunc and
optimises it together with every kernel it calls: for the diagonal E-step it was 6.5 of the
14.6 s of a first fit's compilation (measured with the pipeline timings of the compiled
overload, empty cache, 2 cores).  The passes are now serial kernels that fill the slots
``[j0, j1)``; this module calls them from ``numba.get_num_threads()`` threads at once (the
kernels release the GIL).  Nothing about the arithmetic changes: each slot is still computed by
one call from its own chunk alone and the caller merges the slots in chunk order, so results do
not depend on the number of threads.

Work is split into at most ``4 * threads`` contiguous ranges that the threads take in turn, so
a thread on a core that another process holds delays the pass by one range, not by its whole
share.  One thread (or one item) runs in the calling thread with no pool at all: small data pay
no thread hand-off.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

_POOL: list = []
_LOCK = threading.Lock()
_LOCAL = threading.local()
#: Ranges per thread and pass (load balance against call overhead: one call costs ~10 us).
RANGES_PER_THREAD = 4


def _pool():
    with _LOCK:
        if not _POOL or _POOL[1] != os.getpid():  # a forked child cannot use its parent's threads
            size = max(1, int(numba.config.NUMBA_NUM_THREADS) - 1)
            _POOL[:] = [ThreadPoolExecutor(size, thread_name_prefix="fastmix"), os.getpid()]
        return _POOL[0]


def threads():
    """Threads a pass may use from the calling thread (``numba.get_num_threads()``, which
    ``fastmix.kernels.thread_limit`` lowers per calling thread)."""
    return max(1, int(numba.get_num_threads()))


def run_ranges(fn, n_items, n_threads=None):
    """Call ``fn(j0, j1)`` for contiguous ranges covering ``range(n_items)``, on up to
    ``n_threads`` threads (default ``threads()``); the calling thread takes part.  Returns when
    every range is done; the first exception raised by a range is re-raised.  Called from
    inside a range (nested parallelism, e.g. k-means seedings run side by side, each with its
    own passes) it runs everything in the calling thread: the outer level already keeps the
    threads busy, and waiting on the pool from a pool thread could deadlock."""
    n_items = int(n_items)
    if n_items <= 0:
        return
    t = min(threads() if n_threads is None else max(1, int(n_threads)), n_items)
    if t == 1 or getattr(_LOCAL, "busy", False):
        fn(0, n_items)
        return
    n_ranges = min(n_items, RANGES_PER_THREAD * t)
    bounds = [n_items * i // n_ranges for i in range(n_ranges + 1)]
    lock = threading.Lock()
    state = {"next": 0, "error": None}

    def worker():
        while True:
            with lock:
                i = state["next"]
                if i >= n_ranges or state["error"] is not None:
                    return
                state["next"] = i + 1
            _LOCAL.busy = True
            try:
                fn(bounds[i], bounds[i + 1])
            except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller
                with lock:
                    if state["error"] is None:
                        state["error"] = exc
                return
            finally:
                _LOCAL.busy = False

    futures = [_pool().submit(worker) for _ in range(t - 1)]
    worker()
    for f in futures:
        f.result()
    if state["error"] is not None:
        raise state["error"]
