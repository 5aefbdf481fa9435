"""Compile the kernels of ``GaussianMixture`` ahead of time, into Numba's on-disk cache.

A new environment compiles each kernel the first time a fit uses it (seconds per covariance
type and dtype); after that every process loads it from the cache in milliseconds.
``precompile`` pays that cost up front -- in a Docker build, a cluster image, after
``pip install`` -- on several processes at once, so the first real fit of every later process
finds its kernels compiled.  Command line: ``fastmix compile``.
"""
import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from . import kernels
from .kernels.cpu import _jit

#: Covariance types compiled by default (``GaussianMixture``'s; lowrank on request).
DEFAULT_TYPES = ("full", "tied", "diag", "spherical")
DEFAULT_DTYPES = ("float64", "float32")
_TYPES = DEFAULT_TYPES + ("lowrank",)
# Types whose kernels are the same functions run in one task: two processes adding different
# signatures of one function to its cache index at the same time could lose one of them.
_FAMILY = {"full": "full", "tied": "tied", "diag": "diag", "spherical": "diag",
           "lowrank": "lowrank"}


def _workload(dtype, seed=0):
    """Two small data sets that take a default fit through every kernel it can use: mixtures
    whose means are a few standard deviations apart (the passes about a shared centre) and
    10^4 apart (the per-row passes that very separated data take); 3 features, 3 components."""
    rng = np.random.default_rng(seed)
    out = []
    for spread in (3.0, 1e4):
        means = rng.normal(size=(3, 3)) * spread
        X = means[rng.integers(3, size=600)] + rng.standard_normal((600, 3))
        out.append(X.astype(dtype))
    return out


def _compile_task(covariance_types, dtypes):
    """Default fits and ``predict_proba`` (the scoring kernel of ``predict``, ``score`` and
    ``score_samples`` too) of each type and dtype on the workload; returns (seconds, kernels
    compiled, kernels loaded from the cache)."""
    from .mixture import GaussianMixture
    t0 = time.perf_counter()
    c0, l0 = kernels.compile_counts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small generated data: convergence is not the point
        for dtype in dtypes:
            for X in _workload(dtype):
                for cov in covariance_types:
                    gm = GaussianMixture(3, covariance_type=cov, random_state=0).fit(X)
                    gm.predict_proba(X)
    c1, l1 = kernels.compile_counts()
    return time.perf_counter() - t0, c1 - c0, l1 - l0


def _check_choice(values, allowed, what):
    if isinstance(values, str):
        values = [values]
    values = list(dict.fromkeys(values))
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ValueError(f"{what} must be among {list(allowed)}; got {bad or values!r}")
    return values


def precompile(covariance_types: Sequence[str] | str = DEFAULT_TYPES,
               dtypes: Sequence[str] | str = DEFAULT_DTYPES, *, n_jobs: int | None = None,
               verbose: bool = False) -> dict:
    """Compile the kernels of ``GaussianMixture`` into Numba's on-disk cache.

    Runs default fits and ``predict_proba`` (whose kernel also serves ``predict``, ``score``
    and ``score_samples``) of each covariance type and dtype on small generated data (two
    mixtures: means a few standard deviations apart, and very far apart, whose fits take
    different kernels), in ``n_jobs`` processes at once.
    Kernels already in the cache are loaded, not compiled again.  Later processes -- scripts,
    the command line, Dask workers on this machine -- then load the kernels instead of
    compiling them (the cache is per machine: Numba compiles for the host CPU).  The kernels
    compiled also serve ``BayesianGaussianMixture``'s default fits and ``partial_fit``; other
    starts (``init_params="random"``, given responsibilities) can compile one more kernel on
    their first use.

    Parameters
    ----------
    covariance_types : str or sequence of str, default ("full", "tied", "diag", "spherical")
        Among "full", "tied", "diag", "spherical" and "lowrank".
    dtypes : str or sequence of str, default ("float64", "float32")
        The data dtypes to compile for: "float64", "float32".
    n_jobs : int, optional
        Processes compiling at once (each compiles one group of types: diag and spherical
        share their kernels); default: the CPUs this process may use, at most the number of
        groups.  1 compiles in this process.
    verbose : bool, default False
        Print one line per group as it finishes.

    Returns
    -------
    dict
        ``"cache_dir"`` (str: where Numba keeps the compiled kernels), ``"seconds"`` (float,
        wall time), ``"compiled"`` and ``"loaded"`` (int: kernel signatures compiled and
        loaded from the cache), and ``"groups"``: per group of types, its own seconds,
        compiled and loaded counts.

    Raises
    ------
    ValueError
        For an unknown covariance type or dtype, ``n_jobs < 1``, or when caching is off
        (``FASTMIX_NUMBA_CACHE=0`` or ``NUMBA_DISABLE_JIT=1``: nothing compiled would be
        kept).

    Notes
    -----
    With ``n_jobs > 1`` the workers are started with ``multiprocessing``'s "spawn" method,
    which imports the calling script again in each worker: from a script, call
    ``precompile`` under ``if __name__ == "__main__":`` (the command line ``fastmix
    compile`` and ``python -c`` need nothing).

    Examples
    --------
    >>> import fastmix
    >>> report = fastmix.precompile("diag", "float64", n_jobs=1)
    >>> sorted(report)
    ['cache_dir', 'compiled', 'groups', 'loaded', 'seconds']
    """
    types = _check_choice(covariance_types, _TYPES, "covariance_types")
    dts = _check_choice(dtypes, DEFAULT_DTYPES, "dtypes")
    if not _jit.CACHE or kernels.cache_dir() is None:
        raise ValueError("the kernel cache is off (FASTMIX_NUMBA_CACHE=0 or "
                         "NUMBA_DISABLE_JIT=1): nothing compiled now would be kept for later "
                         "processes")
    groups: dict[str, list[str]] = {}
    for t in types:
        groups.setdefault(_FAMILY[t], []).append(t)
    if n_jobs is None:
        n_jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)
    if int(n_jobs) != n_jobs or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer; got {n_jobs!r}")
    n_jobs = min(int(n_jobs), len(groups))
    t0 = time.perf_counter()
    results = {}
    if n_jobs == 1:
        for name, members in groups.items():
            results[name] = _compile_task(members, dts)
            if verbose:
                _report_line(name, members, results[name])
    else:
        # fresh interpreters ("spawn"): a fork would copy this process's threads and state
        with ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn")) as pool:
            futures = {name: pool.submit(_compile_task, members, dts)
                       for name, members in groups.items()}
            for name, fut in futures.items():
                results[name] = fut.result()
                if verbose:
                    _report_line(name, groups[name], results[name])
    return {
        "cache_dir": str(kernels.cache_dir()),
        "seconds": time.perf_counter() - t0,
        "compiled": sum(r[1] for r in results.values()),
        "loaded": sum(r[2] for r in results.values()),
        "groups": {", ".join(groups[n]): {"seconds": r[0], "compiled": r[1], "loaded": r[2]}
                   for n, r in results.items()},
    }


def _report_line(name, members, result):
    secs, compiled, loaded = result
    print(f"{', '.join(members)}: {compiled} kernels compiled, {loaded} loaded from the cache "
          f"in {secs:.1f} s", flush=True)
