#!/usr/bin/env python
"""Per-EM-iteration time, memory and cold start of fastmix vs scikit-learn and oneDAL.

One run, one data set, one starting point for every library:

* Data: a seeded 16-component (``--k``) Gaussian mixture from
  ``bench/_data.py`` (``--separation well|overlap``).
* Start: weights, means and covariances/precisions from a short NumPy k-means
  (``_data.initial_parameters``), computed once and handed to every library.
* Per-iteration time: each library runs EM with tolerance 0 for 1 and for n
  iterations; ``(median t_n - median t_1) / (n - 1)`` removes set-up costs
  (input validation, initialisation, the final E-step scikit-learn adds).
  Libraries: fastmix (all covariance types, float64 and float32),
  scikit-learn (float64 reference, fewer repeats because it is slow) and
  oneDAL via ``daal4py.em_gmm`` (diag and full, float64 and float32).
* Agreement: after the same number of iterations from the same start, the
  lower bounds and the log-likelihood of the returned parameters (scored by
  a neutral NumPy routine) are compared with scikit-learn.
* Peak RSS of a fit for each library, in a fresh subprocess, above the
  baseline after imports and data loading (``bench/_worker.py rss``).
* fastmix's cold start: first fit in a fresh interpreter with an empty
  ``NUMBA_CACHE_DIR``, then again with the cache filled.
* BayesianGaussianMixture rows (``--bayes-types``, float64): fastmix's and
  scikit-learn's variational iteration, timed the same way from the same
  initial responsibilities (those of the shared start, ``_data.responsibilities``),
  with the ratios to scikit-learn and to fastmix's own EM iteration of the same
  covariance type, and the two variational lower bounds after the same
  iterations.  ``--skip-bayesian`` leaves them out.

The table is printed and written to ``bench/results/compare-<timestamp>.md``
and ``.json``.  ``--quick`` runs a small configuration in under a minute.

Examples::

    python bench/compare.py --quick
    python bench/compare.py                      # N=1e6, D=16, K=16
    python bench/compare.py --types diag,full --skip-sklearn
    python bench/compare.py --native-blas        # unset OPENBLAS_CORETYPE/L2_SIZE
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "_worker.py")

# Settings of the default (full) run and of --quick; explicit options win.
PROFILES = {
    "full": dict(
        n=1_000_000, d=16, k=16, types="full,tied,diag,spherical", dtypes="float64,float32",
        repeats=5, iters=6, sklearn_repeats=3, sklearn_iters=4,
        rss_types="full,tied,diag,spherical", rss_iters=2,
        jit_types="diag,full", jit_dtypes="float64", jit_n=20_000, bayes_types="diag,full",
    ),
    # the shape of PyCave's published benchmark (10^6 x 64, K = 64): diag and full
    "pycave": dict(
        n=1_000_000, d=64, k=64, types="diag,full", dtypes="float64,float32",
        repeats=2, iters=3, sklearn_repeats=1, sklearn_iters=2,
        rss_types="diag", rss_iters=1,
        jit_types="diag", jit_dtypes="float64", jit_n=20_000, bayes_types="diag,full",
    ),
    "quick": dict(
        n=50_000, d=16, k=16, types="diag,full", dtypes="float64,float32",
        repeats=3, iters=3, sklearn_repeats=3, sklearn_iters=3,
        rss_types="diag", rss_iters=1,
        jit_types="diag", jit_dtypes="float64", jit_n=5_000, bayes_types="diag",
    ),
}

NOISY_LOAD = 0.2  # other processes' CPU share above which a timing is flagged
WARMUP_ROWS = 200_000  # rows of the untimed 1-iteration fit before each timing
BLAS_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
THREAD_ENV_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# --------------------------------------------------------------------------- CLI


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--quick", action="store_true", help="small configuration, < 1 min")
    p.add_argument("--pycave", action="store_true",
                   help="PyCave's benchmark shape: N = 1e6, D = 64, K = 64, diag and full")
    p.add_argument("--n", type=int, help="samples (default 1e6; quick 5e4)")
    p.add_argument("--d", type=int, help="features (default 16)")
    p.add_argument("--k", type=int, help="components (default 16)")
    p.add_argument("--types", help="comma list of covariance types (default full,tied,diag,spherical)")
    p.add_argument("--dtypes", help="comma list: float64,float32 (default both)")
    p.add_argument("--separation", default="overlap", choices=("well", "overlap"),
                   help="generated clusters well separated or overlapping (default overlap)")
    p.add_argument("--seed", type=int, default=0, help="seed of data and initial parameters")
    p.add_argument("--reg-covar", type=float, default=1e-6)
    p.add_argument("--repeats", type=int, help="timing repeats for fastmix and oneDAL (default 5)")
    p.add_argument("--iters", type=int, help="n of the n-iteration runs, fastmix and oneDAL (default 6)")
    p.add_argument("--sklearn-repeats", type=int, help="timing repeats for scikit-learn (default 3)")
    p.add_argument("--sklearn-iters", type=int, help="n for scikit-learn (default 4; quick 3)")
    p.add_argument("--check-iters", type=int,
                   help="iterations after which results are compared (default: --sklearn-iters)")
    p.add_argument("--skip-sklearn", action="store_true")
    p.add_argument("--skip-onedal", action="store_true")
    p.add_argument("--skip-fastmix", action="store_true")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    p.add_argument("--rss-types", help="covariance types for peak RSS (default: all; quick: diag)")
    p.add_argument("--rss-iters", type=int, help="EM iterations of the peak-RSS fit (default 2)")
    p.add_argument("--no-jit", action="store_true", help="skip fastmix's cold-start measurement")
    p.add_argument("--jit-types", help="covariance types for the cold start (default diag,full)")
    p.add_argument("--jit-dtypes", help="dtypes for the cold start (default float64)")
    p.add_argument("--jit-n", type=int, help="samples of the cold-start fit (default 20000)")
    p.add_argument("--bayes-types",
                   help="covariance types of the BayesianGaussianMixture rows (default diag,full; "
                        "quick: diag)")
    p.add_argument("--skip-bayesian", action="store_true",
                   help="no BayesianGaussianMixture rows")
    p.add_argument("--quiet-wait", type=float, default=0.0,
                   help="before each timed row wait up to this many seconds for other processes "
                        "to use less than --quiet-threshold of the CPU (default 0: don't wait)")
    p.add_argument("--quiet-threshold", type=float, default=0.1,
                   help="CPU share of other processes regarded as quiet (default 0.1)")
    p.add_argument("--threads", type=int,
                   help="threads for every library (sets NUMBA/OMP/OPENBLAS env vars and daal4py)")
    p.add_argument("--native-blas", action="store_true",
                   help="re-run without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE so OpenBLAS picks "
                        "its kernel for this CPU")
    p.add_argument("--stand-in", action="store_true",
                   help="use scikit-learn in place of fastmix (to test the harness)")
    p.add_argument("--out", default=os.path.join(HERE, "results"),
                   help="directory for compare-<timestamp>.md/.json (default bench/results)")
    args = p.parse_args(argv)

    profile = PROFILES["quick" if args.quick else "pycave" if args.pycave else "full"]
    for key, value in profile.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.check_iters is None:
        args.check_iters = args.sklearn_iters
    args.types = _split(args.types)
    args.dtypes = _split(args.dtypes)
    args.rss_types = [t for t in _split(args.rss_types) if t in args.types]
    args.jit_types = _split(args.jit_types)
    args.jit_dtypes = _split(args.jit_dtypes)
    args.bayes_types = [] if args.skip_bayesian else _split(args.bayes_types)
    if min(args.iters, args.sklearn_iters) < 2:
        p.error("--iters and --sklearn-iters must be >= 2 (the 1-iteration run is subtracted)")
    return args


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _prepare_environment(args, argv) -> None:
    """Apply --native-blas (re-exec) and --threads before NumPy is imported."""
    if args.native_blas and any(v in os.environ for v in BLAS_ENV_VARS):
        env = {k: v for k, v in os.environ.items() if k not in BLAS_ENV_VARS}
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *argv], env)
    if args.threads:
        for var in THREAD_ENV_VARS:
            os.environ[var] = str(args.threads)


# --------------------------------------------------------------------------- timing


class LoadMonitor:
    """CPU time that *other* processes took while this run was measuring.

    The machines are shared and small (2 cores): a busy neighbour slows
    multi-threaded code a lot.  ``share(since)`` is the CPU time used by all
    other processes (plus hypervisor steal) since a :meth:`mark`, as a
    fraction of the machine's capacity over that interval; a few percent is
    quiet, tens of percent means the timings of that interval are suspect.
    """

    def __init__(self):
        try:
            import psutil
        except ImportError:
            self._psutil = None
        else:
            self._psutil = psutil
        self.ncpu = os.cpu_count() or 1
        self.start = self.mark()

    def _busy(self) -> float:
        ct = self._psutil.cpu_times()
        return sum(getattr(ct, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def mark(self):
        if self._psutil is None:
            return None
        return (time.monotonic(), self._busy(), self._own())

    def share(self, since) -> float | None:
        now = self.mark()
        if since is None or now is None or now[0] - since[0] <= 0:
            return None
        others = (now[1] - since[1]) - (now[2] - since[2])
        return max(0.0, others) / ((now[0] - since[0]) * self.ncpu)

    def wait_for_quiet(self, threshold: float, max_wait: float, probe: float = 2.0) -> float:
        """Sleep until other processes use less than ``threshold`` of the CPU
        (measured over ``probe`` seconds), at most ``max_wait`` seconds; returns
        the seconds waited."""
        if self._psutil is None or max_wait <= 0:
            return 0.0
        t0 = time.monotonic()
        while True:
            mark = self.mark()
            time.sleep(probe)
            share = self.share(mark)
            waited = time.monotonic() - t0
            if share is None or share < threshold or waited >= max_wait:
                return waited


def _timed(fn, *a) -> tuple[float, object]:
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        out = fn(*a)
        return time.perf_counter() - t0, out
    finally:
        gc.enable()


def time_per_iteration(lib, X, init, cov, n_iter, repeats, reg_covar) -> dict:
    """Median times of 1- and n-iteration fits (alternating) and the per-iteration estimate."""
    t1, tn = [], []
    res1 = resn = None
    for _ in range(repeats):
        dt, res1 = _timed(lib.fit, X, init, cov, 1, reg_covar)
        t1.append(dt)
        dt, resn = _timed(lib.fit, X, init, cov, n_iter, reg_covar)
        tn.append(dt)
    paired = [(b - a) / (n_iter - 1) for a, b in zip(t1, tn)]
    return {
        "n_iter": n_iter,
        "repeats": repeats,
        "t1": t1,
        "tn": tn,
        "t1_median": statistics.median(t1),
        "tn_median": statistics.median(tn),
        "per_iter": (statistics.median(tn) - statistics.median(t1)) / (n_iter - 1),
        "per_iter_from_min": (min(tn) - min(t1)) / (n_iter - 1),
        "per_iter_paired_min": min(paired),
        "per_iter_paired_max": max(paired),
        "_res1": res1,
        "_resn": resn,
    }


def measure_bayesian(args, X64, init, monitor, timings) -> tuple[list[dict], list[str]]:
    """BayesianGaussianMixture rows: per-iteration times of fastmix's and scikit-learn's
    variational iteration from the same initial responsibilities (float64), the variational
    lower bounds after ``--check-iters`` iterations, and fastmix's EM iteration of the same
    covariance type from ``timings`` (when it was timed in this run)."""
    import _data
    import _libs

    notes, libs = [], {}
    for key in _libs.BAYESIAN_KEYS:
        if getattr(args, "skip_" + key.split("_")[0]):
            continue
        lib = _libs.make_library(key)
        if not lib.available:
            notes.append(f"{lib.label}: not available ({lib.unavailable_reason()}).")
            continue
        libs[key] = lib
    rows = []
    for cov in args.bayes_types:
        p = init[cov]
        _log(f"responsibilities of the shared start ({cov}) for the variational rows")
        start = dict(p, resp=_data.responsibilities(X64, p["weights"], p["means"],
                                                    p["covariances"], cov))
        row = {"covariance_type": cov, "labels": {k: lib.label for k, lib in libs.items()}}
        for key, lib in libs.items():
            repeats = args.sklearn_repeats if key.startswith("sklearn") else args.repeats
            n_iter = args.sklearn_iters if key.startswith("sklearn") else args.iters
            _log(f"timing {key} {cov} float64: {repeats} × (1 and {n_iter} iterations)")
            try:
                lib.fit(X64[:WARMUP_ROWS], start, cov, 1, args.reg_covar)
                waited = monitor.wait_for_quiet(args.quiet_threshold, args.quiet_wait)
                mark = monitor.mark()
                t = time_per_iteration(lib, X64, start, cov, n_iter, repeats, args.reg_covar)
                t["other_load"] = monitor.share(mark)
                t["waited_for_quiet"] = waited
                t.pop("_res1")
                resn = t.pop("_resn")
                res_m = resn if n_iter == args.check_iters else lib.fit(
                    X64, start, cov, args.check_iters, args.reg_covar)
                t["lower_bound"] = res_m.lower_bound
                t["lower_bound_iters"] = res_m.n_iter
            except Exception as exc:
                _log(f"  failed: {type(exc).__name__}: {exc}")
                t = {"error": f"{type(exc).__name__}: {exc}"}
            else:
                _log(f"  per iteration {_fmt_s(t['per_iter'])}")
            row[key] = t
        em = timings.get("fastmix", {}).get(cov, {}).get("float64", {})
        row["fastmix_em_per_iter"] = em.get("per_iter")
        rows.append(row)
    return rows, notes


def bayesian_markdown(report: dict) -> list[str]:
    rows = report.get("bayesian") or []
    if not rows:
        return []
    cfg = report["config"]
    lines = [
        "## BayesianGaussianMixture: one variational iteration (float64)",
        "",
        "Each library runs exactly n variational iterations (E-step, M-step, lower bound; default "
        "priors, Dirichlet-process weights) from the responsibilities of the shared start; "
        "per iteration = (median t_n − median t_1) / (n − 1), as above. fastmix EM = the "
        "per-iteration time of fastmix's GaussianMixture row of the same covariance type in this "
        f"run. Lower bounds (variational, totals over the rows) after {cfg['check_iters']} "
        "iterations.",
        "",
        "| library | covariance | n | repeats | 1 iteration | n iterations | per iteration "
        "| paired min – max | other load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for key, label in row["labels"].items():
            t = row.get(key, {})
            if "error" in t:
                lines.append(f"| {label} | {row['covariance_type']} | error: {t['error']} "
                             "| | | | | | |")
                continue
            lines.append(
                f"| {label} | {row['covariance_type']} | {t['n_iter']} | {t['repeats']} "
                f"| {_fmt_s(t['t1_median'])} | {_fmt_s(t['tn_median'])} | {_fmt_s(t['per_iter'])} "
                f"| {_fmt_s(t['per_iter_paired_min'])} – {_fmt_s(t['per_iter_paired_max'])} "
                f"| {_fmt_pct(t.get('other_load'))} |")
    lines += [
        "",
        "| covariance | fastmix VB | scikit-learn VB | fastmix EM | scikit-learn / fastmix VB "
        "(target ≥ 10×) | fastmix VB / EM (target ≤ 1.3×) | lower bound fastmix "
        "| scikit-learn | relative difference |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        fm = row.get("fastmix_bayes", {}).get("per_iter")
        sk = row.get("sklearn_bayes", {}).get("per_iter")
        em = row.get("fastmix_em_per_iter")
        lf = row.get("fastmix_bayes", {}).get("lower_bound")
        lk = row.get("sklearn_bayes", {}).get("lower_bound")
        rel = None if lf is None or lk is None else abs(lf - lk) / abs(lk)
        lines.append(
            f"| {row['covariance_type']} | {_fmt_s(fm)} | {_fmt_s(sk)} | {_fmt_s(em)} "
            f"| {_fmt_ratio(sk, fm)} | {_fmt_ratio(fm, em)} "
            f"| {'–' if lf is None else f'{lf:.8g}'} | {'–' if lk is None else f'{lk:.8g}'} "
            f"| {_fmt_sci(rel)} |")
    lines.append("")
    return lines


# --------------------------------------------------------------------------- environment


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info(libs: dict) -> dict:
    import numpy as np
    import threadpoolctl

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "env": {v: os.environ.get(v) for v in BLAS_ENV_VARS + THREAD_ENV_VARS if v in os.environ},
        "versions": {"numpy": np.__version__},
        "fastmix_git": _git_revision(),
        "threads": {},
    }
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    for dist in ("numba", "llvmlite", "scipy", "threadpoolctl", "psutil"):
        info["versions"][dist] = _dist_version(dist)
    for lib in libs.values():
        info["versions"].update(lib.versions())
    try:
        import numba

        info["threads"]["numba"] = numba.get_num_threads()
        try:
            info["threads"]["numba_threading_layer"] = numba.threading_layer()
        except ValueError:  # no parallel region has run yet
            info["threads"]["numba_threading_layer"] = None
    except ImportError:
        pass
    if "onedal" in libs and libs["onedal"].available:
        info["threads"]["onedal"] = libs["onedal"].num_threads()
    info["threadpools"] = [
        {k: pool.get(k) for k in ("internal_api", "prefix", "version", "num_threads",
                                  "threading_layer", "architecture")}
        for pool in threadpoolctl.threadpool_info()
    ]
    return info


def _git_revision() -> str | None:
    """Commit of the fastmix checkout, with "+dirty" when fastmix/ has local changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "fastmix"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _dist_version(dist: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- subprocess parts


def _run_worker(cmd: list[str], env=None, timeout=1800) -> dict:
    proc = subprocess.run([sys.executable, WORKER, *cmd], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"worker exited {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"error": f"unparsable worker output: {lines[-1][:200]}"}


def measure_rss(args, libs, arrays, init, tmp) -> list[dict]:
    import numpy as np

    init_path = os.path.join(tmp, "init.npz")
    np.savez(init_path, **{f"{ct}__{key}": val for ct, params in init.items() for key, val in params.items()})
    data_paths = {}
    for name, X in arrays.items():
        data_paths[name] = os.path.join(tmp, f"X_{name}.npy")
        np.save(data_paths[name], X)
    rows = []
    for cov in args.rss_types:
        for dtype in args.dtypes:
            for key, lib in libs.items():
                if not (lib.available and lib.supports(cov, dtype)):
                    continue
                _log(f"peak RSS: {key} {cov} {dtype}")
                cmd = ["rss", "--lib", key, "--cov", cov, "--data", data_paths[dtype],
                       "--init", init_path, "--iters", str(args.rss_iters)]
                if args.stand_in:
                    cmd.append("--stand-in")
                out = _run_worker(cmd)
                out.update(library=key, covariance_type=cov, dtype=dtype)
                rows.append(out)
    return rows


def measure_cold_start(args) -> list[dict]:
    rows = []
    for cov in args.jit_types:
        for dtype in args.jit_dtypes:
            with tempfile.TemporaryDirectory(prefix="fastmix-numba-cache-") as cache:
                env = dict(os.environ, NUMBA_CACHE_DIR=cache)
                cmd = ["jit", "--cov", cov, "--dtype", dtype, "--n", str(args.jit_n),
                       "--d", str(args.d), "--k", str(args.k), "--seed", str(args.seed)]
                if args.stand_in:
                    cmd.append("--stand-in")
                _log(f"cold start: fastmix {cov} {dtype} (empty cache)")
                cold = _run_worker(cmd, env=env)
                _log(f"cold start: fastmix {cov} {dtype} (cache filled)")
                cached = _run_worker(cmd, env=env)
            rows.append({"covariance_type": cov, "dtype": dtype, "n": args.jit_n,
                         "cold": cold, "cached": cached})
    return rows


# --------------------------------------------------------------------------- roofline


def measure_machine_rates(threads=None) -> dict:
    """This machine's large-GEMM rate (float64 and float32, FLOP/s) and read bandwidth
    (bytes/s), measured with NumPy on all threads: the roofs of the roofline columns."""
    import numpy as np

    rates = {}
    n = 2048
    for dt in ("float64", "float32"):
        a = np.ones((n, n), dt)
        b = np.ones((n, n), dt)
        a @ b
        best = min(_timed(lambda: a @ b)[0] for _ in range(3))
        rates[dt] = 2.0 * n ** 3 / best
    x = np.ones(2**27 // 8)  # 128 MiB, far beyond the caches
    x.sum()
    best = min(_timed(x.sum)[0] for _ in range(5))
    rates["bandwidth"] = x.nbytes / best
    return rates


def iteration_cost(cov: str, dtype: str, n: int, d: int, k: int) -> dict:
    """FLOPs and bytes of one fused EM iteration as fastmix computes it when every
    responsibility is non-zero (dense work): the densities in the data dtype, the statistics in
    float64, the data read once.  The full kernel skips rows whose responsibility for a
    component is 0 in that component's second moments, so on separated data it can run below
    this bound.

    diag/spherical: [u*u, u] @ W (4NDK) and R^T [u, u*u] (4NDK); full: (X_b - mu_k) U_k for
    every k (2ND^2K) and the second moments sum r u u^T for every k (2ND^2K); tied: one
    (X_b - g) U (2ND^2), the distances to the K transformed means (3NDK) and sum u u^T (2ND^2).
    """
    if cov in ("diag", "spherical"):
        dens, stats = 4.0 * n * d * k, 4.0 * n * d * k
    elif cov == "full":
        dens, stats = 2.0 * n * d * d * k, 2.0 * n * d * d * k
    else:  # tied
        dens, stats = 2.0 * n * d * d + 3.0 * n * d * k, 2.0 * n * d * d
    itemsize = 4 if dtype == "float32" else 8
    return {"flops_dtype": dens, "flops_f64": stats, "bytes": float(n * d * itemsize)}


def roofline_seconds(cost: dict, dtype: str, rates: dict) -> float:
    """Lower bound of an iteration: the GEMM work at the measured rates, or reading the data
    at the measured bandwidth, whichever is longer."""
    compute = cost["flops_dtype"] / rates[dtype] + cost["flops_f64"] / rates["float64"]
    return max(compute, cost["bytes"] / rates["bandwidth"])


# --------------------------------------------------------------------------- report


def _fmt_s(x) -> str:
    if x is None:
        return "–"
    if x < 0:
        return "−" + _fmt_s(-x)
    if x >= 100:
        return f"{x:.0f} s"
    if x >= 1:
        return f"{x:.2f} s"
    if x >= 1e-3:
        return f"{x * 1e3:.3g} ms"
    return f"{x * 1e6:.3g} µs"


def _fmt_ratio(num, den) -> str:
    if num is None or den is None or den <= 0 or num <= 0:
        return "–"
    r = num / den
    return f"{r:.1f}×" if r >= 1 else f"{r:.2f}×"


def _fmt_mb(x) -> str:
    if x is None:
        return "–"
    return f"{x:,.1f} MiB" if abs(x) < 10 else f"{x:,.0f} MiB"


def _fmt_pct(x) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"


def _fmt_sci(x) -> str:
    return "–" if x is None else f"{x:.2e}"


def build_markdown(report: dict) -> str:
    cfg, env = report["config"], report["environment"]
    labels = report["labels"]
    lines = [f"# fastmix comparison, {report['timestamp']}", ""]
    lines.append(f"Command: `{report['command']}`")
    lines.append("")
    lines.append(
        f"Data: N = {cfg['n']:,}, D = {cfg['d']}, K = {cfg['k']}, generated mixture with "
        f"**{cfg['separation']}** clusters (seed {cfg['seed']}); "
        f"float64 data = {cfg['data_mb']['float64']:.0f} MiB"
        + (f", float32 = {cfg['data_mb']['float32']:.0f} MiB" if "float32" in cfg["data_mb"] else "")
        + "."
    )
    lines.append(
        f"Start: the same weights/means/precisions for every library (NumPy k-means, "
        f"{cfg['init_seconds']:.1f} s to compute); reg_covar = {cfg['reg_covar']:g}; tol = 0."
    )
    pools = ", ".join(
        f"{p['internal_api']} {p.get('version') or ''} ({p['num_threads']} threads"
        + (f", {p['architecture']}" if p.get("architecture") else "") + ")"
        for p in env["threadpools"]
    )
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    lines.append(
        f"Machine: {env['cpu']}, nproc = {env['nproc']}, affinity = {env['affinity']}, "
        f"{env.get('memory_gib', '?')} GiB; Python {env['python']}."
    )
    lines.append(f"Versions: {versions}; fastmix checkout {env.get('fastmix_git') or 'unknown'}.")
    thr = env["threads"]
    lines.append(
        f"Threads: numba {thr.get('numba')} (layer {thr.get('numba_threading_layer')}), "
        f"oneDAL {thr.get('onedal', '–')}, threadpools: {pools or 'none'}."
    )
    if env["env"]:
        lines.append("Environment: " + ", ".join(f"{k}={v}" for k, v in env["env"].items()) + ".")
    lines.append("")

    # Per-iteration table.
    lines += [
        "## Per-EM-iteration time (median)",
        "",
        f"(t(n) − t(1)) / (n − 1); fastmix/oneDAL n = {cfg['iters']} × {cfg['repeats']} repeats, "
        f"scikit-learn n = {cfg['sklearn_iters']} × {cfg['sklearn_repeats']} repeats. "
        "scikit-learn is run on float64 only; float32 rows compare like with like.",
        "",
        f"| covariance | dtype | {labels['fastmix']} | {labels['sklearn']} | {labels['onedal']} "
        "| sklearn / fastmix | oneDAL / fastmix | roofline bound | fastmix / bound |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rates = report.get("machine_rates") or {}
    timings = report["timings"]

    def per_iter(lib, cov, dtype):
        t = timings.get(lib, {}).get(cov, {}).get(dtype)
        return t.get("per_iter") if t and "error" not in t else None

    def cell(lib, cov, dtype):
        t = timings.get(lib, {}).get(cov, {}).get(dtype)
        if t is None:
            return "–"
        if "error" in t:
            return "error"
        noisy = (t.get("other_load") or 0.0) > NOISY_LOAD
        return _fmt_s(t["per_iter"]) + (" †" if noisy else "")

    for cov in cfg["types"]:
        for dtype in cfg["dtypes"]:
            fm = per_iter("fastmix", cov, dtype)
            bound = (roofline_seconds(iteration_cost(cov, dtype, cfg["n"], cfg["d"], cfg["k"]),
                                      dtype, rates) if rates else None)
            lines.append(
                f"| {cov} | {dtype} | {cell('fastmix', cov, dtype)} | {cell('sklearn', cov, dtype)} "
                f"| {cell('onedal', cov, dtype)} | {_fmt_ratio(per_iter('sklearn', cov, dtype), fm)} "
                f"| {_fmt_ratio(per_iter('onedal', cov, dtype), fm)} "
                f"| {_fmt_s(bound)} | {_fmt_ratio(fm, bound)} |"
            )
    lines.append("")
    if rates:
        lines += [f"Roofline: this machine's measured large-GEMM rate {rates['float64'] / 1e9:.1f} "
                  f"GFLOP/s (float64) and {rates['float32'] / 1e9:.1f} GFLOP/s (float32) and read "
                  f"bandwidth {rates['bandwidth'] / 1e9:.1f} GB/s (NumPy, all threads); the bound "
                  "is an iteration's dense GEMM work at those rates (densities in the data dtype, "
                  "statistics in float64; `iteration_cost` in this script) or one read of the data, "
                  "whichever is longer. fastmix / bound = how far from that limit (below 1: the "
                  "full kernel skipped zero responsibilities).", ""]
    if any(" †" in line for line in lines):
        lines += [f"† other processes took more than {NOISY_LOAD:.0%} of the CPU while this was "
                  "timed: see \"from minima\" and \"paired\" in the details.", ""]

    if "float32" in cfg["dtypes"] and "float64" in cfg["dtypes"]:
        lines += ["## float32 speed-up (float64 time / float32 time, same library)", "",
                  "| covariance | fastmix | oneDAL |", "|---|---:|---:|"]
        for cov in cfg["types"]:
            lines.append(
                f"| {cov} | {_fmt_ratio(per_iter('fastmix', cov, 'float64'), per_iter('fastmix', cov, 'float32'))} "
                f"| {_fmt_ratio(per_iter('onedal', cov, 'float64'), per_iter('onedal', cov, 'float32'))} |"
            )
        lines.append("")

    lines += ["## Timing details", "",
              "per iteration = (median t(n) − median t(1)) / (n − 1); from minima = the same with the "
              "fastest runs (less sensitive to other load); paired = (t(n) − t(1)) / (n − 1) of each repeat; "
              "other load = CPU share taken by other processes while this row was timed.",
              "",
              "| library | covariance | dtype | n | repeats | median t(1) | median t(n) | per iteration "
              "| from minima | paired min – max | other load |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for lib, by_cov in timings.items():
        for cov, by_dtype in by_cov.items():
            for dtype, t in by_dtype.items():
                if "error" in t:
                    lines.append(f"| {labels[lib]} | {cov} | {dtype} | | | | | error: {t['error']} | | | |")
                    continue
                lines.append(
                    f"| {labels[lib]} | {cov} | {dtype} | {t['n_iter']} | {t['repeats']} "
                    f"| {_fmt_s(t['t1_median'])} | {_fmt_s(t['tn_median'])} | {_fmt_s(t['per_iter'])} "
                    f"| {_fmt_s(t['per_iter_from_min'])} "
                    f"| {_fmt_s(t['per_iter_paired_min'])} – {_fmt_s(t['per_iter_paired_max'])} "
                    f"| {_fmt_pct(t.get('other_load'))} |"
                )
    lines.append("")

    agreement = report["agreement"]
    if agreement:
        m = cfg["check_iters"]
        refs = sorted({row["reference"] for row in agreement if "reference" in row})
        lines += [
            f"## Agreement after the same iterations from the same start "
            f"(reference: {', '.join(refs) or 'none'})",
            "",
            f"lower bound = the library's own mean log-likelihood at its last E-step after {m} "
            f"iterations; ll(θ₁), ll(θ_{m}) = mean log-likelihood of the parameters returned after "
            f"1 and {m} iterations, scored by one NumPy routine; Δ = difference to the reference; "
            "max |Δμ| = largest difference of a mean coordinate.",
            "",
            f"| library | covariance | dtype | lower bound | Δ lower bound | ll(θ₁) | Δ ll(θ₁) "
            f"| ll(θ_{m}) | Δ ll(θ_{m}) | max abs Δμ |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in agreement:
            if "error" in row:
                lines.append(f"| {labels[row['library']]} | {row['covariance_type']} | {row['dtype']} "
                             f"| error: {row['error']} | | | | | | |")
                continue
            lines.append(
                f"| {labels[row['library']]} | {row['covariance_type']} | {row['dtype']} "
                f"| {row['lower_bound']:.8f} | {_fmt_sci(row.get('d_lower_bound'))} "
                f"| {row['ll_1']:.8f} | {_fmt_sci(row.get('d_ll_1'))} "
                f"| {row['ll_m']:.8f} | {_fmt_sci(row.get('d_ll_m'))} | {_fmt_sci(row.get('max_d_means'))} |"
            )
        lines.append("")

    if report.get("rss"):
        lines += [
            "## Peak memory of a fit (fresh subprocess)",
            "",
            f"Peak RSS during `fit` ({cfg['rss_iters']} EM iteration(s) from the shared start) above the "
            "process's RSS after imports, data loading and a small warm-up fit.",
            "",
            "| library | covariance | dtype | data | baseline RSS | peak above baseline | peak / data |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for row in report["rss"]:
            if "error" in row:
                lines.append(f"| {labels[row['library']]} | {row['covariance_type']} | {row['dtype']} "
                             f"| error: {row['error']} | | | |")
                continue
            flag = "" if row.get("exact", True) else " (≤, ru_maxrss)"
            lines.append(
                f"| {labels[row['library']]} | {row['covariance_type']} | {row['dtype']} "
                f"| {_fmt_mb(row['data_mb'])} | {_fmt_mb(row['baseline_rss_mb'])} "
                f"| {_fmt_mb(row['peak_above_baseline_mb'])}{flag} "
                f"| {row['peak_above_baseline_mb'] / row['data_mb']:.2f} |"
            )
        lines.append("")

    if report.get("cold_start"):
        lines += [
            "## fastmix cold start (fresh interpreter)",
            "",
            f"`import fastmix` and two identical fits (N = {report['cold_start'][0]['n']:,}, "
            f"default init, random_state fixed) with NUMBA_CACHE_DIR pointing to an empty temporary "
            "directory (cold), then a second interpreter with the cache it filled (cached).",
            "",
            "| covariance | dtype | cache | import | first fit | second fit | first − second |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for row in report["cold_start"]:
            for which in ("cold", "cached"):
                r = row[which]
                if "error" in r:
                    lines.append(f"| {row['covariance_type']} | {row['dtype']} | {which} | error: {r['error']} | | | |")
                    continue
                lines.append(
                    f"| {row['covariance_type']} | {row['dtype']} | {which} | {_fmt_s(r['import_seconds'])} "
                    f"| {_fmt_s(r['first_fit_seconds'])} | {_fmt_s(r['second_fit_seconds'])} "
                    f"| {_fmt_s(r['first_fit_seconds'] - r['second_fit_seconds'])} |"
                )
        lines.append("")

    lines += bayesian_markdown(report)

    if report["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    lines.append(
        f"Total wall time of this run: {report['wall_seconds']:.0f} s. Other processes took "
        f"{_fmt_pct(report.get('other_load'))} of the machine's CPU meanwhile; load average "
        f"{report['loadavg_start'][0]:.2f} at the start, {report['loadavg_end'][0]:.2f} at the end."
    )
    return "\n".join(lines) + "\n"


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    _prepare_environment(args, argv)
    wall0 = time.perf_counter()

    import numpy as np

    sys.path.insert(0, HERE)
    import _data
    import _libs

    notes = []
    if any(v in os.environ for v in BLAS_ENV_VARS):
        notes.append(
            "OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are set, so OpenBLAS (NumPy/SciPy/scikit-learn) runs "
            "the kernel named in the threadpools line, not the one it would pick for this CPU; "
            "--native-blas re-runs without them."
        )
    for cov in args.types:
        if cov not in _data.COVARIANCE_TYPES:
            raise SystemExit(f"unknown covariance type {cov!r}")

    # Libraries.
    wanted = [k for k in _libs.LIBRARY_KEYS
              if not getattr(args, f"skip_{k}")]
    libs = {}
    labels = {}
    for key in _libs.LIBRARY_KEYS:
        lib = _libs.make_library(key, stand_in=args.stand_in)
        labels[key] = lib.label
        if key not in wanted:
            notes.append(f"{lib.label}: skipped (--skip-{key}).")
            continue
        if not lib.available:
            notes.append(f"{lib.label}: not available ({lib.unavailable_reason()}); its column is empty.")
            continue
        libs[key] = lib
    if args.threads and "onedal" in libs:
        libs["onedal"]._module.daalinit(args.threads)
    if args.stand_in:
        notes.append("fastmix column = scikit-learn stand-in (--stand-in): harness test only.")

    # Data and the shared starting point.
    _log(f"generating data: N={args.n} D={args.d} K={args.k} separation={args.separation}")
    t0 = time.perf_counter()
    X64 = _data.make_mixture(args.n, args.d, args.k, separation=args.separation, seed=args.seed)
    gen_seconds = time.perf_counter() - t0
    arrays = {"float64": X64}
    if "float32" in args.dtypes:
        arrays["float32"] = X64.astype(np.float32)
    t0 = time.perf_counter()
    init = _data.initial_parameters(X64, args.k, seed=args.seed, reg_covar=args.reg_covar)
    init_seconds = time.perf_counter() - t0

    # Timings and agreement.
    monitor = LoadMonitor()
    load_start = os.getloadavg()
    timings: dict = {}
    agreement: list = []
    # Agreement reference: the first of these that ran float64 without error.
    reference_order = [k for k in ("sklearn", "onedal", "fastmix") if k in libs]
    for cov in args.types:
        candidates = {}  # library -> its float64 agreement row for this covariance type
        for dtype in args.dtypes:
            X = arrays[dtype]
            for key, lib in libs.items():
                if not lib.supports(cov, dtype):
                    continue
                repeats = args.sklearn_repeats if key == "sklearn" else args.repeats
                n_iter = args.sklearn_iters if key == "sklearn" else args.iters
                _log(f"timing {key} {cov} {dtype}: {repeats} × (1 and {n_iter} iterations)")
                try:
                    # Warm-up: JIT compilation / cache loading, lazy initialisation,
                    # first touch of large temporaries.
                    lib.fit(X[:WARMUP_ROWS], init[cov], cov, 1, args.reg_covar)
                    waited = monitor.wait_for_quiet(args.quiet_threshold, args.quiet_wait)
                    mark = monitor.mark()
                    t = time_per_iteration(lib, X, init[cov], cov, n_iter, repeats, args.reg_covar)
                    t["other_load"] = monitor.share(mark)
                    t["waited_for_quiet"] = waited
                except Exception as exc:
                    _log(f"  failed: {type(exc).__name__}: {exc}")
                    timings.setdefault(key, {}).setdefault(cov, {})[dtype] = {
                        "error": f"{type(exc).__name__}: {exc}"}
                    agreement.append({"library": key, "covariance_type": cov, "dtype": dtype,
                                      "error": f"{type(exc).__name__}: {exc}"})
                    continue
                _log(f"  per iteration {_fmt_s(t['per_iter'])}")
                res1, resn = t.pop("_res1"), t.pop("_resn")
                timings.setdefault(key, {}).setdefault(cov, {})[dtype] = t

                # Agreement at check_iters iterations (reuse the timed run when n matches).
                try:
                    res_m = resn if n_iter == args.check_iters else lib.fit(
                        X, init[cov], cov, args.check_iters, args.reg_covar)
                    row = {
                        "library": key, "covariance_type": cov, "dtype": dtype,
                        "n_iter": res_m.n_iter, "lower_bound": res_m.lower_bound,
                        "ll_1": _data.mean_log_likelihood(X64, res1.weights, res1.means,
                                                          res1.covariances, cov),
                        "ll_m": _data.mean_log_likelihood(X64, res_m.weights, res_m.means,
                                                          res_m.covariances, cov),
                        "_means": res_m.means,
                    }
                except Exception as exc:
                    row = {"library": key, "covariance_type": cov, "dtype": dtype,
                           "error": f"{type(exc).__name__}: {exc}"}
                if dtype == "float64" and "error" not in row:
                    candidates[key] = row
                agreement.append(row)
        # Differences to the reference's float64 results for this covariance type.
        ref_key = next((k for k in reference_order if k in candidates), None)
        for row in agreement:
            if row["covariance_type"] != cov or "error" in row or ref_key is None:
                continue
            reference = candidates[ref_key]
            row["reference"] = labels[ref_key] + " float64"
            row["d_lower_bound"] = row["lower_bound"] - reference["lower_bound"]
            row["d_ll_1"] = row["ll_1"] - reference["ll_1"]
            row["d_ll_m"] = row["ll_m"] - reference["ll_m"]
            row["max_d_means"] = float(np.max(np.abs(row["_means"] - reference["_means"])))
    for row in agreement:
        row.pop("_means", None)
        if row.get("n_iter") is not None and row["n_iter"] != args.check_iters:
            notes.append(f"{labels[row['library']]} {row['covariance_type']} {row['dtype']}: ran "
                         f"{row['n_iter']} iterations, expected {args.check_iters}.")
    if "onedal" in libs:
        notes.append("oneDAL supports only diag and full covariances here (covarianceStorage "
                     "'diagonal'/'full'); its tied/spherical cells are empty. Its returned "
                     "covariances exclude reg_covar, so ll(θ) differs slightly from scikit-learn.")
    if "sklearn" in libs and "float32" in args.dtypes:
        notes.append("scikit-learn is timed on float64 only (it is the slow reference).")

    # BayesianGaussianMixture rows (after the EM rows, whose fastmix times they quote).
    bayesian_rows = []
    if args.bayes_types:
        bayesian_rows, bayes_notes = measure_bayesian(args, X64, init, monitor, timings)
        notes += bayes_notes

    # Subprocess measurements.
    env_info = environment_info(libs)
    rss_rows, cold_rows = [], []
    if not args.no_rss and libs:
        with tempfile.TemporaryDirectory(prefix="fastmix-bench-") as tmp:
            rss_rows = measure_rss(args, libs, arrays, init, tmp)
    if not args.no_jit and "fastmix" in libs:
        cold_rows = measure_cold_start(args)

    _log("measuring the machine's GEMM rate and read bandwidth (roofline)")
    machine_rates = measure_machine_rates()
    timestamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    report = {
        "timestamp": timestamp,
        "command": " ".join(shlex.quote(a) for a in [sys.executable, os.path.relpath(__file__, REPO), *argv]),
        "config": {
            "n": args.n, "d": args.d, "k": args.k, "separation": args.separation, "seed": args.seed,
            "types": args.types, "dtypes": args.dtypes, "reg_covar": args.reg_covar,
            "repeats": args.repeats, "iters": args.iters, "sklearn_repeats": args.sklearn_repeats,
            "sklearn_iters": args.sklearn_iters, "check_iters": args.check_iters,
            "rss_iters": args.rss_iters, "quick": args.quick, "stand_in": args.stand_in,
            "bayes_types": args.bayes_types,
            "data_mb": {name: X.nbytes / 2**20 for name, X in arrays.items()},
            "generate_seconds": gen_seconds, "init_seconds": init_seconds,
        },
        "environment": env_info,
        "labels": labels,
        "timings": timings,
        "machine_rates": machine_rates,
        "agreement": agreement,
        "rss": rss_rows,
        "cold_start": cold_rows,
        "bayesian": bayesian_rows,
        "notes": notes,
        "other_load": monitor.share(monitor.start),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "wall_seconds": time.perf_counter() - wall0,
    }
    markdown = build_markdown(report)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"compare-{timestamp}")
    with open(stem + ".md", "w") as fh:
        fh.write(markdown)
    with open(stem + ".json", "w") as fh:
        json.dump(report, fh, indent=1, default=_json_default)
    print(markdown)
    _log(f"wrote {stem}.md and {stem}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
