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

``--protocol process`` times each library in its own fresh Python processes instead, so that
neither can disturb the other, and no ``settle`` pause is needed (the pauses let the VM's cores
go idle and changed both libraries' times): for every data set and covariance type
``--procs`` processes per library, started alternately (A B A B ...), after one untimed
throw-away process per library that fills the Numba on-disk cache (and the OS file cache).
Each process imports only its library, loads the data from a ``.npy`` the parent wrote (not
from ``sklearn.datasets``; importing fastmix still loads ``sklearn.base`` where scikit-learn is
installed, for its estimator base class), times its *first* fit (seed 0, the compile cache
loaded from disk: what a script user feels), then the seeds ``--reps`` times each, back to
back; the steady-state statistic is the one above, over all the processes' repetitions.  Wall
and process-CPU time are both recorded (``.json``); the processes report the final
``score(X)`` and ``lower_bound_`` per seed and the Numba kernels compiled during the timed fits
(0 unless the cache was cold).  ``--threads N`` sets ``NUMBA_NUM_THREADS``,
``OMP_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` to N in the children (default: they inherit
the parent's environment).

``--baseline PATH`` adds another fastmix checkout (e.g. ``git worktree add /tmp/base main``),
imported side by side under another name, for before/after tables.  ``--clock cpu`` (process
CPU time; run with ``NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1``) or
``--clock wall`` chooses the clock of the table (default: cpu in-process, wall per process).

Usage::

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        python bench/small_fits.py --clock cpu --baseline /tmp/base --tag cpu1
    python bench/small_fits.py --clock wall --baseline /tmp/base --tag wall2
    python bench/small_fits.py --protocol process --procs 5 --tag proc2
    python bench/small_fits.py --protocol process --threads 1 --clock cpu --tag proc1

Writes ``bench/results/small_fits_<tag>.md`` and ``.json``.
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
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from e2e import settle  # noqa: E402

THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _load(path, keep=False):
    """The fastmix package under ``path``, imported and then removed from ``sys.modules`` so
    that a second checkout can be imported beside it (``keep``: left there, for a process
    that imports only this one).  Caveat: a module imported by name after that -- an
    ``import`` in a function body, or Numba unpickling a cached kernel -- comes from whichever
    checkout is first on ``sys.path``, not from ``path``.  A default fit's own code has no such
    import any more (``GaussianMixture`` and ``_is_gpu_array`` imported theirs per call), but
    Numba's cache loading still imports the package by name once; only the per-process
    protocol, one checkout per process, is free of this."""
    sys.path.insert(0, path)
    try:
        import fastmix
        if not os.path.abspath(fastmix.__file__).startswith(os.path.abspath(path)):
            raise SystemExit(f"fastmix imported from {fastmix.__file__}, not from {path}")
    finally:
        sys.path.remove(path)
    if not keep:
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
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["_child"]:
        return _child(json.loads(argv[1]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="iris,wine,cancer,digits")
    ap.add_argument("--covs", default="diag,spherical,full,tied")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--clock", choices=("cpu", "wall"), default=None,
                    help="the table's clock (default: cpu interleaved, wall per process)")
    ap.add_argument("--protocol", choices=("interleaved", "process"), default="interleaved",
                    help="all libraries in this process, fit by fit (default), or each in "
                         "its own fresh processes")
    ap.add_argument("--procs", type=int, default=5,
                    help="process protocol: processes per library and data set")
    ap.add_argument("--threads", type=int, default=None,
                    help="process protocol: " + "=".join(THREAD_VARS) + "=N in the children")
    ap.add_argument("--baseline", help="another fastmix checkout to compare with")
    ap.add_argument("--baseline-label", default=None,
                    help="how the report names the baseline (e.g. its commit)")
    ap.add_argument("--tag", default=None)
    ap.add_argument("--note", default="", help="a sentence for the report (e.g. the load)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    if args.clock is None:
        args.clock = "wall" if args.protocol == "process" else "cpu"
    if args.protocol == "process":
        return _process(args, argv)
    if args.threads is not None:
        ap.error("--threads is for --protocol process (set the variables for this process)")
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
            _print_row(row)
    meta = _meta(args, sklearn.__version__, os.environ.get("NUMBA_NUM_THREADS"))
    _report(args, meta, rows, f"# Small data, default fits ({args.clock} time)",
            f"Median over {args.reps} interleaved repetitions of each seed's fit time, mean "
            f"over seeds 0..{args.seeds - 1}; {meta['cpus']} CPUs, NUMBA_NUM_THREADS="
            f"{meta['numba_threads']}; load = 1-minute load average at the row's end "
            "(other processes).  `python bench/small_fits.py --help` for the method.")


def _child(spec):
    """A child of the process protocol: import one library, then for each job (a ``.npy``
    file, K, covariance type) time the first fit (seed 0) and ``reps`` x ``seeds`` fits back to
    back, on both clocks.  Prints one JSON object."""
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    if spec["lib"] == "sklearn":
        from sklearn.mixture import GaussianMixture as cls
    else:
        cls = _load(spec["path"], keep=True).GaussianMixture
    out = dict(lib=spec["lib"], import_s=time.perf_counter() - t0, jobs=[])
    seeds, reps = spec["seeds"], spec["reps"]

    def fit(X, K, cov, seed):
        w, c = time.perf_counter(), time.process_time()
        gm = cls(K, covariance_type=cov, random_state=seed).fit(X)
        return time.perf_counter() - w, time.process_time() - c, gm

    for path, K, cov in spec["jobs"]:
        X = np.load(path)
        first_wall, first_cpu, _ = fit(X, K, cov, 0)
        wall, cpu, last = np.empty((reps, seeds)), np.empty((reps, seeds)), {}
        for r in range(reps):
            for s in range(seeds):
                wall[r, s], cpu[r, s], last[s] = fit(X, K, cov, s)
        out["jobs"].append(dict(  # the results, outside the timings
            compiles=_compiles(), first_wall=first_wall, first_cpu=first_cpu,
            wall=wall.tolist(), cpu=cpu.tolist(),
            score=[float(last[s].score(X)) for s in sorted(last)],
            lower_bound=[float(last[s].lower_bound_) for s in sorted(last)],
            n_iter=[int(last[s].n_iter_) for s in sorted(last)]))
    out["sklearn_modules"] = [m for m in ("sklearn", "sklearn.base", "sklearn.mixture")
                              if m in sys.modules]
    if "numba" in sys.modules:
        out["numba_threads"] = sys.modules["numba"].config.NUMBA_NUM_THREADS
    try:
        from threadpoolctl import threadpool_info
        out["threadpools"] = [[i["internal_api"], i["num_threads"]] for i in threadpool_info()]
    except ImportError:
        pass
    print(json.dumps(out))


def _compiles():
    """Numba kernels compiled so far in this process (not loaded from the on-disk cache)."""
    if "numba" not in sys.modules:
        return 0
    import gc

    from numba.core.dispatcher import Dispatcher
    return sum(sum(o.stats.cache_misses.values()) for o in gc.get_objects()
               if isinstance(o, Dispatcher))


def _process(args, argv):
    """The process protocol (``--protocol process``; the module docstring)."""
    import sklearn

    libs = ({"baseline": args.baseline} if args.baseline else {}) | {"fastmix": ROOT,
                                                                     "sklearn": None}
    env = dict(os.environ)
    if args.threads:
        env.update({v: str(args.threads) for v in THREAD_VARS})
    names, covs = args.sets.split(","), args.covs.split(",")
    sets = _sets()
    load0, start = os.getloadavg()[0], time.perf_counter()

    def child(lib, jobs, seeds, reps):
        spec = dict(lib=lib, path=libs[lib], jobs=jobs, seeds=seeds, reps=reps)
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "_child",
                            json.dumps(spec)], env=env, capture_output=True, text=True,
                           timeout=3600)
        if p.returncode:
            raise SystemExit(f"{lib} child failed:\n{p.stderr[-3000:]}")
        return json.loads(p.stdout.strip().splitlines()[-1])

    rows, children = [], {lib: [] for lib in libs}
    with tempfile.TemporaryDirectory(prefix="small_fits-") as tmp:
        files = {}
        for name in names:
            files[name] = os.path.join(tmp, f"{name}.npy")
            np.save(files[name], sets[name][0])
        every = [(files[n], sets[n][1], cov) for n in names for cov in covs]
        warm = {lib: child(lib, every, 1, 1) for lib in libs}  # thrown away
        for name in names:
            X, K = sets[name]
            for cov in covs:
                res = {lib: [] for lib in libs}
                for _ in range(args.procs):
                    for lib in libs:  # A B A B ...: load drifts hit every library
                        c = child(lib, [(files[name], K, cov)], args.seeds, args.reps)
                        res[lib].append(c["jobs"][0])
                        children[lib].append({k: v for k, v in c.items() if k != "jobs"})
                rows.append(_process_row(args, name, X, K, cov, res))
                _print_row(rows[-1])
    meta = _meta(args, sklearn.__version__, env.get("NUMBA_NUM_THREADS"))
    meta.update(protocol="process", procs=args.procs, command=" ".join(
        ["python bench/small_fits.py"] + argv), load_start=load0, load_end=os.getloadavg()[0],
        seconds=time.perf_counter() - start,
        threads={v: env.get(v) for v in THREAD_VARS},
        warmup=warm,
        children=children)
    compiles = sum(r["compiles"][lib] for r in rows for lib in libs)
    fm_sk = sorted({m for c in children["fastmix"] for m in c["sklearn_modules"]})
    _report(args, meta, rows,
            f"# Small data, default fits, one process per library ({args.clock} time)",
            "Each library runs in its own fresh Python processes, so that neither disturbs "
            "the other (in one process, scikit-learn's BLAS/OpenMP threads spin after its calls "
            "and slow the fit timed next).  Per data set and covariance type: "
            f"{args.procs} processes per library, started alternately, after one untimed "
            "process per library that filled the Numba on-disk cache and the OS file cache; "
            "no `settle` pauses.  "
            "Each process loads the data from a `.npy`, times its *first* fit (seed 0, the "
            "compile cache loaded from disk: what a script user feels), then fits seeds "
            f"0..{args.seeds - 1} {args.reps} times each, back to back.  *first*: median over "
            "the processes; the other times: median over the processes' repetitions of each "
            "seed's fit, mean over the seeds (the in-process protocol's statistic).  "
            "sklearn / fastmix > 1: fastmix faster.  log-lik: mean `score(X)` over the seeds.  "
            f"{meta['cpus']} CPUs; children's threads: "
            + ", ".join(f"{v}={env.get(v)}" for v in THREAD_VARS)
            + f"; 1-minute load average {load0:.1f} at the start, {meta['load_end']:.1f} at "
              f"the end, `load` at the row's end; {meta['seconds']:.0f} s in all.  Numba "
              f"kernels compiled during the timed fits: {compiles}.  scikit-learn modules in "
              f"the fastmix processes: {', '.join(fm_sk) or 'none'}.  Command: "
              f"`{meta['command']}`.")


def _process_row(args, name, X, K, cov, res):
    """A table row from each library's child results (``res[lib]``: one dict per process)."""
    row = dict(data=name, n=int(X.shape[0]), d=int(X.shape[1]), k=K, covariance=cov)
    for clk in ("wall", "cpu"):
        row[f"ms_{clk}"] = {lib: float(np.median(np.concatenate([c[clk] for c in cs]), axis=0)
                                       .mean() * 1e3) for lib, cs in res.items()}
        row[f"first_ms_{clk}"] = {lib: float(np.median([c[f"first_{clk}"] for c in cs]) * 1e3)
                                  for lib, cs in res.items()}
    row["ms"], row["first_ms"] = row[f"ms_{args.clock}"], row[f"first_ms_{args.clock}"]
    row["loglik"] = {lib: float(np.mean(cs[0]["score"])) for lib, cs in res.items()}
    row["score"] = {lib: cs[0]["score"] for lib, cs in res.items()}
    row["lower_bound"] = {lib: cs[0]["lower_bound"] for lib, cs in res.items()}
    row["n_iter"] = {lib: cs[0]["n_iter"] for lib, cs in res.items()}
    row["compiles"] = {lib: sum(c["compiles"] for c in cs) for lib, cs in res.items()}
    # the same fits in every process: the largest difference of a seed's score between them
    row["score_spread"] = {lib: float(np.ptp([c["score"] for c in cs], axis=0).max())
                           for lib, cs in res.items()}
    row["load"] = os.getloadavg()[0]
    return row


def _print_row(row):
    ms = row["ms"]
    first = (f"  first {row['first_ms']['fastmix']:7.2f} / {row['first_ms']['sklearn']:7.2f}"
             if "first_ms" in row else "")
    base = f"  base {ms['baseline']:7.2f}" if "baseline" in ms else ""
    print(f"{row['data']:7s} {row['covariance']:9s}{base}  fastmix {ms['fastmix']:7.2f}  sklearn "
          f"{ms['sklearn']:7.2f} ms  sklearn/fastmix {ms['sklearn'] / ms['fastmix']:.2f}{first}",
          flush=True)


def _meta(args, sklearn_version, numba_threads):
    return dict(clock=args.clock, seeds=args.seeds, reps=args.reps,
                numba_threads=numba_threads, cpus=os.cpu_count(),
                python=platform.python_version(), numpy=np.__version__, sklearn=sklearn_version,
                baseline=args.baseline_label or (args.baseline and "another checkout"))


def _report(args, meta, rows, title, intro):
    """``small_fits_<tag>.json`` and ``.md``; rows with ``first_ms`` get the first-fit columns."""
    tag = args.tag or args.clock
    has_base = args.baseline is not None
    has_first = bool(rows) and "first_ms" in rows[0]
    libs = (["baseline"] if has_base else []) + ["fastmix", "sklearn"]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"small_fits_{tag}.json"), "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=1)
    head = ("| data | N x D, K | covariance | "
            + ("".join(f"{lib} first ms | " for lib in libs)
               + "first sklearn / fastmix | " if has_first else "")
            + ("baseline ms | " if has_base else "")
            + "fastmix ms | sklearn ms | sklearn / fastmix | "
            + ("baseline / fastmix | " if has_base else "")
            + "log-lik fastmix / sklearn | load |")
    lines = [title, "",
             intro + (f"  baseline: {meta['baseline']}." if has_base else "")
             + (f"  {args.note}" if args.note else ""), "",
             head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        ms = r["ms"]
        cells = [r["data"], f"{r['n']} x {r['d']}, {r['k']}", r["covariance"]]
        if has_first:
            first = r["first_ms"]
            cells += [f"{first[lib]:.2f}" for lib in libs]
            cells.append(f"{first['sklearn'] / first['fastmix']:.2f}")
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
