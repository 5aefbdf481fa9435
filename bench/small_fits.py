"""Small data: a default fit's fixed costs, fastmix vs scikit-learn (and an older fastmix).

``GaussianMixture(K, covariance_type=...).fit(X)`` with the defaults on scikit-learn's bundled
iris, wine, breast cancer (standard-scaled) and digits (pixels / 16), seeds 0..9, every
covariance type but lowrank.  Fits take milliseconds there, so the time is mostly fixed per-fit
and per-iteration costs (validation, layouts, small NumPy calls, the k-means start's four
seedings), not arithmetic.  On a shared machine the load changes from second to second, so the
libraries run *interleaved in one process* (fit by fit, same seed) and the report gives the
median over repetitions of each seed's time, averaged over the seeds, and ratios of those --
the ratios are what survive the load.  Each timed fit starts once no thread of the process is
busy (``e2e.settle``): BLAS and OpenMP workers spin for up to ~0.1 s after scikit-learn's
calls, and the fit timed next would otherwise share the cores with them.

``--baseline PATH`` adds another fastmix checkout (e.g. ``git worktree add /tmp/base main``),
imported side by side under another name, for before/after tables.  ``--clock cpu`` (process
CPU time; run with ``NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1``) or
``--clock wall``.

Usage::

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        python bench/small_fits.py --clock cpu --baseline /tmp/base --tag cpu1
    python bench/small_fits.py --clock wall --baseline /tmp/base --tag wall2

Writes ``bench/results/small_fits_<tag>.md`` and ``.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from e2e import settle  # noqa: E402


def _load(path):
    """The fastmix package under ``path``, imported and then removed from ``sys.modules`` so
    that a second checkout can be imported beside it."""
    sys.path.insert(0, path)
    try:
        import fastmix
        if not os.path.abspath(fastmix.__file__).startswith(os.path.abspath(path)):
            raise SystemExit(f"fastmix imported from {fastmix.__file__}, not from {path}")
    finally:
        sys.path.remove(path)
    for name in [m for m in sys.modules if m == "fastmix" or m.startswith("fastmix.")]:
        del sys.modules[name]
    return fastmix


def _sets():
    from sklearn import datasets

    def scaled(X):
        return np.ascontiguousarray((X - X.mean(0)) / X.std(0))
    return {"iris": (scaled(datasets.load_iris().data), 3),
            "wine": (scaled(datasets.load_wine().data), 3),
            "cancer": (scaled(datasets.load_breast_cancer().data), 2),
            "digits": (np.ascontiguousarray(datasets.load_digits().data / 16.0), 10)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="iris,wine,cancer,digits")
    ap.add_argument("--covs", default="diag,spherical,full,tied")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--baseline", help="another fastmix checkout to compare with")
    ap.add_argument("--baseline-label", default=None,
                    help="how the report names the baseline (e.g. its commit)")
    ap.add_argument("--tag", default=None)
    ap.add_argument("--note", default="", help="a sentence for the report (e.g. the load)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import sklearn
    import sklearn.mixture as skm

    libs = {}
    if args.baseline:
        libs["baseline"] = _load(args.baseline).GaussianMixture
    libs["fastmix"] = _load(ROOT).GaussianMixture
    libs["sklearn"] = skm.GaussianMixture
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    sets = _sets()
    rows = []
    for name in args.sets.split(","):
        X, K = sets[name]
        for cov in args.covs.split(","):
            for cls in libs.values():  # compile cache loaded, caches warm
                cls(K, covariance_type=cov, random_state=0).fit(X)
            t = {k: np.empty((args.reps, args.seeds)) for k in libs}
            ll = {k: np.empty(args.seeds) for k in libs}
            for r in range(args.reps):
                for s in range(args.seeds):
                    for k, cls in libs.items():
                        settle()
                        t0 = clock()
                        gm = cls(K, covariance_type=cov, random_state=s).fit(X)
                        t[k][r, s] = clock() - t0
                        ll[k][s] = gm.score(X)
            ms = {k: float(np.median(v, axis=0).mean() * 1e3) for k, v in t.items()}
            row = dict(data=name, n=int(X.shape[0]), d=int(X.shape[1]), k=K, covariance=cov,
                       ms=ms, loglik={k: float(v.mean()) for k, v in ll.items()},
                       load=os.getloadavg()[0])
            rows.append(row)
            base = f"  base {ms['baseline']:7.2f}" if "baseline" in ms else ""
            print(f"{name:7s} {cov:9s}{base}  fastmix {ms['fastmix']:7.2f}  sklearn "
                  f"{ms['sklearn']:7.2f} ms  sklearn/fastmix {ms['sklearn'] / ms['fastmix']:.2f}",
                  flush=True)
    tag = args.tag or args.clock
    has_base = "baseline" in libs
    os.makedirs(args.out, exist_ok=True)
    meta = dict(clock=args.clock, seeds=args.seeds, reps=args.reps,
                numba_threads=os.environ.get("NUMBA_NUM_THREADS"), cpus=os.cpu_count(),
                python=platform.python_version(), numpy=np.__version__,
                sklearn=sklearn.__version__,
                baseline=args.baseline_label or (args.baseline and "another checkout"))
    with open(os.path.join(args.out, f"small_fits_{tag}.json"), "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=1)
    head = ("| data | N x D, K | covariance | " + ("baseline ms | " if has_base else "")
            + "fastmix ms | sklearn ms | sklearn / fastmix | "
            + ("baseline / fastmix | " if has_base else "")
            + "log-lik fastmix / sklearn | load |")
    lines = [f"# Small data, default fits ({args.clock} time)", "",
             f"Median over {args.reps} interleaved repetitions of each seed's fit time, mean "
             f"over seeds 0..{args.seeds - 1}; {meta['cpus']} CPUs, NUMBA_NUM_THREADS="
             f"{meta['numba_threads']}; load = 1-minute load average at the row's end "
             "(other processes).  `python bench/small_fits.py --help` for the method."
             + (f"  baseline: {meta['baseline']}." if has_base else "")
             + (f"  {args.note}" if args.note else ""), "",
             head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        ms = r["ms"]
        cells = [r["data"], f"{r['n']} x {r['d']}, {r['k']}", r["covariance"]]
        if has_base:
            cells.append(f"{ms['baseline']:.2f}")
        cells += [f"{ms['fastmix']:.2f}", f"{ms['sklearn']:.2f}",
                  f"{ms['sklearn'] / ms['fastmix']:.2f}"]
        if has_base:
            cells.append(f"{ms['baseline'] / ms['fastmix']:.2f}")
        cells += [f"{r['loglik']['fastmix']:.4f} / {r['loglik']['sklearn']:.4f}",
                  f"{r['load']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    with open(os.path.join(args.out, f"small_fits_{tag}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
