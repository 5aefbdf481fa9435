"""End to end with the defaults: fastmix vs scikit-learn, time and final log-likelihood.

What a user times: ``GaussianMixture(K, covariance_type=...).fit(X)`` with every other
parameter at its default (k-means start, tol, max_iter, reg_covar), seeds 0..S-1, on a panel of
data sets -- scikit-learn's bundled iris, wine and breast cancer (both standard-scaled) and
digits (raw pixels); generated mixtures (``_data.make_mixture``) from 10^3 to 10^6 rows, D from
2 to 784, separated and overlapping.  For every data set and covariance type the report gives
the median fit time of each library (warm compile cache, one process, runs interleaved), their
ratio, the mean final log-likelihood per row (``score(X)``) over the seeds, and how many seeds
ended in a *clearly worse optimum*: more than ``--worse`` nats per row (default 0.02) below the
best fit that either library found on that data.  fastmix's first fit of the run is excluded
(it loads the compile cache); the cold start is measured separately.

Before every timed fit the process waits (untimed) until none of its threads is busy
(``settle``): after a call, OpenBLAS's worker threads spin for up to ~0.1 s and OpenMP's for a
while too, so a fit started right after a scikit-learn fit shares the cores with them.  Without
this the interleaving charged scikit-learn's spinning threads to the fastmix fit that followed
it (digits, spherical, 2 cores: a fastmix fit right after a scikit-learn fit took 53 ms, after a
pause 36.5 ms, on a loaded machine; fastmix leaves no thread spinning, so the pause changes
nothing for scikit-learn).  A user timing one fit sees the settled case.  The cold start:

* cold: a fresh interpreter with an empty ``NUMBA_CACHE_DIR`` imports fastmix and runs one
  default fit of 20 000 x 16 rows, K = 16, then ``predict`` (each covariance type and dtype);
* cached: the same in a second fresh interpreter that finds the cache the first one filled.

Usage::

    python bench/e2e.py                 # the whole panel (~15 min on 2 cores)
    python bench/e2e.py --quick         # small sets, 3 seeds (~1 min)
    python bench/e2e.py --sets digits,mid --seeds 10 --no-cold

Writes ``bench/results/e2e.md`` and ``e2e.json`` (``--out`` to change the directory).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _data  # noqa: E402

COLD_SCRIPT = r"""
import json, sys, time, warnings
t0 = time.perf_counter()
import numpy as np
import fastmix
t1 = time.perf_counter()
cov, dtype = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
centres = rng.normal(scale=2.0, size=(16, 16))
X = (centres[rng.integers(16, size=20000)] + rng.standard_normal((20000, 16))).astype(dtype)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    t2 = time.perf_counter()
    gm = fastmix.GaussianMixture(16, covariance_type=cov, random_state=0).fit(X)
    t3 = time.perf_counter()
    gm.predict(X)
    t4 = time.perf_counter()
    fastmix.GaussianMixture(16, covariance_type=cov, random_state=1).fit(X)
    t5 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first_fit": t3 - t2, "first_predict": t4 - t3,
                  "second_fit": t5 - t4}))
"""


def _scaled(X):
    X = np.asarray(X, dtype=np.float64)
    return (X - X.mean(axis=0)) / X.std(axis=0)


def panel(quick=False):
    """name -> (loader, K, covariance types, description)."""
    from sklearn import datasets as skd

    sets = {
        "iris": (lambda: skd.load_iris().data.astype(np.float64), 3, ("full", "diag"),
                 "iris 150 x 4"),
        "wine": (lambda: _scaled(skd.load_wine().data), 3, ("full", "diag"),
                 "wine 178 x 13, standard-scaled"),
        "cancer": (lambda: _scaled(skd.load_breast_cancer().data), 2, ("full", "diag"),
                   "breast cancer 569 x 30, standard-scaled"),
        "digits": (lambda: skd.load_digits().data.astype(np.float64), 10,
                   ("full", "diag", "tied", "spherical"), "digits 1797 x 64, raw pixels"),
        "sep2d": (lambda: _data.make_mixture(1000, 2, 5, separation="well", seed=11), 5,
                  ("full", "diag"), "generated 1000 x 2, K = 5, separated"),
        "ov10": (lambda: _data.make_mixture(20000, 10, 12, separation="overlap", seed=3), 12,
                 ("full", "diag", "tied", "spherical"), "generated 20 000 x 10, K = 12, overlapping"),
        "mid": (lambda: _data.make_mixture(60000, 50, 10, separation="overlap", seed=1), 10,
                ("full", "diag"), "generated 60 000 x 50, K = 10, overlapping"),
    }
    if not quick:
        sets["hd784"] = (lambda: _data.make_mixture(10000, 784, 10, separation="overlap", seed=5),
                         10, ("diag",), "generated 10 000 x 784, K = 10, overlapping")
        sets["big"] = (lambda: _data.make_mixture(10**6, 16, 16, separation="well", seed=1), 16,
                       ("full", "diag"), "generated 10^6 x 16, K = 16, separated")
    return sets


def settle(quantum=0.01, max_wait=0.5):
    """Wait until no thread of this process uses the CPU: a sleep of ``quantum`` seconds during
    which the process (all its threads: ``time.process_time``) used less than a tenth of it,
    at most ``max_wait`` seconds.  BLAS and OpenMP worker threads spin for a while after each
    call (OpenBLAS: up to ~0.1 s), and a fit timed right after another library's would share
    the cores with them.  Returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_wait:
        c = time.process_time()
        time.sleep(quantum)
        if time.process_time() - c < 0.1 * quantum:
            break
    return time.perf_counter() - t0


def _fit(cls, K, cov, seed, X):
    settle()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        gm = cls(K, covariance_type=cov, random_state=seed).fit(X)
        seconds = time.perf_counter() - t
        return seconds, float(gm.score(X)), int(gm.n_iter_)


def run_panel(args):
    import fastmix
    from sklearn.mixture import GaussianMixture as SKGaussianMixture

    libs = {"fastmix": fastmix.GaussianMixture, "sklearn": SKGaussianMixture}
    rows = []
    sets = panel(args.quick)
    names = args.sets.split(",") if args.sets else list(sets)
    warm = False
    for name in names:
        load, K, covs, desc = sets[name]
        X = np.ascontiguousarray(load())
        n_seeds = args.seeds if X.shape[0] < 10**6 else min(args.seeds, args.big_seeds)
        for cov in covs:
            if args.types and cov not in args.types:
                continue
            if not warm:  # load fastmix's compile cache outside the timings
                _fit(libs["fastmix"], K, cov, 0, X[:2000])
                warm = True
            res = {lib: [] for lib in libs}
            for seed in range(n_seeds):
                for lib, cls in libs.items():  # interleaved: load drifts hit both
                    res[lib].append(_fit(cls, K, cov, seed, X))
            best = max(r[1] for runs in res.values() for r in runs)
            row = {"set": name, "description": desc, "N": X.shape[0], "D": X.shape[1], "K": K,
                   "covariance_type": cov, "seeds": n_seeds, "best_ll": best}
            for lib, runs in res.items():
                t = np.array([r[0] for r in runs])
                ll = np.array([r[1] for r in runs])
                row[lib] = {"time_median": float(np.median(t)), "time_min": float(t.min()),
                            "ll_mean": float(ll.mean()), "ll_min": float(ll.min()),
                            "n_iter_median": float(np.median([r[2] for r in runs])),
                            "worse": int(np.sum(ll < best - args.worse)),
                            "times": t.tolist(), "lls": ll.tolist()}
            rows.append(row)
            f, s = row["fastmix"], row["sklearn"]
            print(f"{name:7s} {cov:9s} time {f['time_median']:7.3f} s vs {s['time_median']:7.3f} s "
                  f"(x{s['time_median'] / f['time_median']:5.2f})  ll {f['ll_mean']:9.3f} vs "
                  f"{s['ll_mean']:9.3f}  worse {f['worse']}/{n_seeds} vs {s['worse']}/{n_seeds}",
                  flush=True)
    return rows


def run_cold(args):
    out = []
    for cov in ("full", "tied", "diag", "spherical"):
        for dtype in ("float64", "float32"):
            with tempfile.TemporaryDirectory(prefix="fastmix-e2e-cache-") as cache:
                env = dict(os.environ, NUMBA_CACHE_DIR=cache)
                row = {"covariance_type": cov, "dtype": dtype}
                for which in ("cold", "cached"):
                    p = subprocess.run([sys.executable, "-c", COLD_SCRIPT, cov, dtype], env=env,
                                       capture_output=True, text=True, timeout=900)
                    if p.returncode:
                        row[which] = {"error": p.stderr[-400:]}
                    else:
                        row[which] = json.loads(p.stdout.strip().splitlines()[-1])
            out.append(row)
            c, w = row["cold"], row["cached"]
            if "error" in c or "error" in w:
                print(f"cold {cov} {dtype}: error {c.get('error') or w.get('error')}")
                continue
            print(f"cold {cov:9s} {dtype}: import {c['import']:.2f} s, first fit {c['first_fit']:.2f} s, "
                  f"predict {c['first_predict']:.2f} s | cached: import {w['import']:.2f} s, first "
                  f"fit {w['first_fit']:.2f} s, second fit {w['second_fit']:.3f} s", flush=True)
    return out


def markdown(report):
    lines = ["# End to end with the defaults: fastmix vs scikit-learn", "",
             f"{report['machine']}; fastmix {report['fastmix']}, scikit-learn {report['sklearn']}, "
             f"numba {report['numba']}; {report['date']}. Command: `{report['command']}`.", "",
             "Default `GaussianMixture(K, covariance_type).fit(X)`, seeds 0..S-1, warm compile "
             "cache, runs of the two libraries interleaved, each fit started once no thread of "
             "the process was busy (`settle`: BLAS/OpenMP workers spin after a call). *ll*: "
             "mean over the seeds of the final `score(X)` (nats per row). *worse*: seeds that ended more than "
             f"{report['worse']} nats per row below the best fit either library found. "
             "*paired*: seeds where fastmix ended more than that below / above scikit-learn "
             "started from the same seed.", "",
             "| data | cov | S | fastmix s | sklearn s | speed-up | fastmix ll | sklearn ll | "
             "worse fastmix | worse sklearn | paired below / above |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in report["panel"]:
        f, s = r["fastmix"], r["sklearn"]
        diff = np.array(f["lls"]) - np.array(s["lls"])
        below, above = int(np.sum(diff < -report["worse"])), int(np.sum(diff > report["worse"]))
        lines.append(f"| {r['description']} | {r['covariance_type']} | {r['seeds']} | "
                     f"{f['time_median']:.3f} | {s['time_median']:.3f} | "
                     f"{s['time_median'] / f['time_median']:.2f}x | {f['ll_mean']:.3f} | "
                     f"{s['ll_mean']:.3f} | {f['worse']} | {s['worse']} | {below} / {above} |")
    if report.get("cold"):
        lines += ["", "## First call (fresh interpreter, 20 000 x 16, K = 16, defaults)", "",
                  "cold: empty `NUMBA_CACHE_DIR`; cached: a second interpreter on the cache the "
                  "first one filled. Seconds.", "",
                  "| cov | dtype | import | first fit (cold) | predict (cold) | first fit (cached) "
                  "| second fit |", "|---|---|--:|--:|--:|--:|--:|"]
        for r in report["cold"]:
            c, w = r["cold"], r["cached"]
            if "error" in c or "error" in w:
                lines.append(f"| {r['covariance_type']} | {r['dtype']} | error | | | | |")
                continue
            lines.append(f"| {r['covariance_type']} | {r['dtype']} | {c['import']:.2f} | "
                         f"{c['first_fit']:.2f} | {c['first_predict']:.2f} | {w['first_fit']:.2f} "
                         f"| {w['second_fit']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sets only, 3 seeds")
    p.add_argument("--sets", help="comma list of data sets (default: all)")
    p.add_argument("--types", help="comma list of covariance types (default: each set's)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per set (default 10; quick 3)")
    p.add_argument("--big-seeds", type=int, default=3, help="seeds for the 10^6-row set")
    p.add_argument("--worse", type=float, default=0.02, help="nats per row of a clearly worse fit")
    p.add_argument("--no-cold", action="store_true", help="skip the cold-start subprocesses")
    p.add_argument("--no-panel", action="store_true", help="only the cold start")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--from-json", help="only rewrite the Markdown report from this e2e.json")
    args = p.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as fh:
            report = json.load(fh)
        with open(os.path.join(args.out, "e2e.md"), "w") as fh:
            fh.write(markdown(report))
        return
    if args.seeds is None:
        args.seeds = 3 if args.quick else 10
    args.types = args.types.split(",") if args.types else None
    import numba
    import sklearn

    import fastmix
    report = {"command": "python bench/e2e.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M"), "fastmix": fastmix.__version__,
              "sklearn": sklearn.__version__, "numba": numba.__version__,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                         f"{numba.config.NUMBA_NUM_THREADS} numba threads",
              "worse": args.worse,
              "panel": [] if args.no_panel else run_panel(args),
              "cold": [] if args.no_cold else run_cold(args)}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "e2e.json"), "w") as fh:
        json.dump(report, fh, indent=1)
    with open(os.path.join(args.out, "e2e.md"), "w") as fh:
        fh.write(markdown(report))
    print(f"wrote {os.path.join(args.out, 'e2e.md')}")


if __name__ == "__main__":
    main()
