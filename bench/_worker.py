"""Measurements that need a fresh interpreter; run by bench/compare.py.

Two modes, each printing one JSON object on the last line of stdout:

``rss``
    Peak resident memory of one full ``fit`` of one library.  The worker
    imports only that library, loads the data from an ``.npy`` file (no
    generation temporaries), runs a small warm-up fit (JIT compilation or
    cache loading, lazy library initialisation), then resets the kernel's
    peak-RSS counter (``/proc/self/clear_refs``) and records the current RSS
    as the baseline.  The reported figure is the peak RSS during the fit
    minus that baseline, i.e. the memory the fit itself needs on top of the
    data.  Where the counter cannot be reset, ``ru_maxrss`` is used and the
    figure is an upper bound (flagged ``"exact": false``).

``jit``
    Cold-start cost of fastmix.  The caller points ``NUMBA_CACHE_DIR`` at a
    directory (empty for a cold run, already filled for a cached run); the
    worker times ``import fastmix``, the first ``fit`` (compilation or cache
    loading included) and a second identical ``fit`` in the same process.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _data  # noqa: E402
import _libs  # noqa: E402

_MB = 1024.0 * 1024.0


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            m = re.search(rf"^{field}:\s+(\d+)\s+kB", fh.read(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def _current_rss_mb() -> float:
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb / 1024.0
    import psutil

    return psutil.Process().memory_info().rss / _MB


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS (VmHWM) counter; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb / 1024.0
    # ru_maxrss is in kB on Linux, bytes on macOS.
    scale = 1.0 if sys.platform == "darwin" else 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / _MB


def _load_init(path: str, covariance_type: str) -> dict:
    with np.load(path) as npz:
        prefix = covariance_type + "__"
        return {key[len(prefix):]: npz[key] for key in npz.files if key.startswith(prefix)}


def run_rss(args) -> dict:
    lib = _libs.make_library(args.lib, stand_in=args.stand_in)
    if not lib.available:
        return {"error": lib.unavailable_reason()}
    X = np.load(args.data)
    init = _load_init(args.init, args.cov)
    # Warm-up on a slice: compile / load JIT caches and initialise the library.
    lib.fit(np.ascontiguousarray(X[: args.warmup_rows]), init, args.cov, 1)
    gc.collect()
    exact = _reset_peak()
    baseline = _current_rss_mb()
    t0 = time.perf_counter()
    result = lib.fit(X, init, args.cov, args.iters)
    seconds = time.perf_counter() - t0
    peak = _peak_rss_mb()
    return {
        "library": lib.key,
        "covariance_type": args.cov,
        "dtype": str(X.dtype),
        "n_iter": result.n_iter,
        "data_mb": X.nbytes / _MB,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak,
        "peak_above_baseline_mb": peak - baseline,
        "exact": exact,
        "fit_seconds": seconds,
    }


def run_jit(args) -> dict:
    dtype = np.dtype(args.dtype)
    X = _data.make_mixture(args.n, args.d, args.k, seed=args.seed, dtype=dtype)
    t0 = time.perf_counter()
    lib = _libs.make_library("fastmix", stand_in=args.stand_in)
    import_seconds = time.perf_counter() - t0
    if not lib.available:
        return {"error": lib.unavailable_reason()}
    gm_class = lib._estimator_class()

    def fit_once() -> float:
        gm = gm_class(
            n_components=args.k,
            covariance_type=args.cov,
            max_iter=args.iters,
            tol=0.0,
            random_state=args.seed,
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(X)
        return time.perf_counter() - start

    first = fit_once()
    second = fit_once()
    return {
        "covariance_type": args.cov,
        "dtype": dtype.name,
        "n": args.n,
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
        "import_seconds": import_seconds,
        "first_fit_seconds": first,
        "second_fit_seconds": second,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)

    rss = sub.add_parser("rss", help="peak RSS of one fit")
    rss.add_argument("--lib", required=True, choices=_libs.LIBRARY_KEYS)
    rss.add_argument("--cov", required=True, choices=_data.COVARIANCE_TYPES)
    rss.add_argument("--data", required=True, help=".npy file with X")
    rss.add_argument("--init", required=True, help=".npz file from compare.py")
    rss.add_argument("--iters", type=int, default=2)
    rss.add_argument("--warmup-rows", type=int, default=5000)
    rss.add_argument("--stand-in", action="store_true")

    jit = sub.add_parser("jit", help="cold / cached first-fit time of fastmix")
    jit.add_argument("--cov", required=True, choices=_data.COVARIANCE_TYPES)
    jit.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    jit.add_argument("--n", type=int, default=20_000)
    jit.add_argument("--d", type=int, default=16)
    jit.add_argument("--k", type=int, default=16)
    jit.add_argument("--iters", type=int, default=10)
    jit.add_argument("--seed", type=int, default=0)
    jit.add_argument("--stand-in", action="store_true")

    args = parser.parse_args(argv)
    try:
        out = run_rss(args) if args.mode == "rss" else run_jit(args)
    except Exception as exc:  # report, don't crash the whole comparison
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
