#!/usr/bin/env python
"""Model selection (``fastmix.select_mixture``): starts, and the sweep against loops.

Two studies, each writing ``bench/results/selection_<study>.json`` and ``.md``:

``starts`` -- the three starts of ``select_mixture`` (independent k-means per candidate,
    Ward's hierarchical clustering cut at every K, split K -> K + 1) on seeded mixtures from
    ``_data.make_mixture`` (well separated and overlapping): the best BIC reached per
    covariance type, the K it picked, the passes over the data and the time.

``scale`` -- one sweep over K = 1..KMAX x covariance types on N x D data, end to end, against
    (a) scikit-learn's ``GaussianMixture`` in a loop over the same grid with the same
    max_iter / tol, and (b) one ``fastmix.GaussianMixture`` fit per candidate; plus, with
    ``--npy``, the sweep on a ``.npy`` file: bytes read per EM pass and peak RSS (run in a
    child process so its RSS is its own).

    python bench/selection.py starts --n 20000 --seeds 3
    python bench/selection.py scale --n 1000000 --d 16 --kmax 20 --types full,tied,diag,spherical
    python bench/selection.py scale --n 1000000 --ks 4,8,12,16,20 --name scale_1e6_sklearn_subgrid

``inmemory`` -- select_mixture on an in-memory array against separate fits (with and without
    ``.bic(X)``) and against its earlier 4 MiB blocks, process CPU time, one process per run.

    NUMBA_NUM_THREADS=2 python bench/selection.py inmemory --n 200000 --kmax 20 --repeats 3

``blocks`` -- one E-step as one call against 4 MiB blocks, and log_prob, per type and K.

    NUMBA_NUM_THREADS=2 python bench/selection.py blocks --n 200000

``outofcore`` -- the sweep on a .npy file (written block by block if missing): bytes read per
    pass and the sweep's own peak RSS (VmHWM of a child process).

    python bench/selection.py outofcore --npy /tmp/x.npy --rows 8000000 --kmax 4
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from _data import make_mixture  # noqa: E402

import fastmix  # noqa: E402


def _write(name, payload, md_lines):
    out = os.path.join(HERE, "results", f"selection_{name}")
    with open(out + ".json", "w") as fh:
        json.dump(payload, fh, indent=1)
    with open(out + ".md", "w") as fh:
        fh.write("\n".join(md_lines) + "\n")
    print("\n".join(md_lines))
    print(f"wrote {out}.json / .md")


def _env():
    return {"python": platform.python_version(), "numpy": np.__version__,
            "fastmix": fastmix.__version__, "cpus": os.cpu_count(),
            "threads": os.environ.get("NUMBA_NUM_THREADS"),
            "loadavg_start": os.getloadavg()}


def _run_start(X, start, kinds, kmax, seed, max_iter):
    """select_mixture with ``start`` = "kmeans", "hierarchical" or "split:<criterion>" (the
    split start with fastmix.selection.SPLIT_CRITERION set to <criterion>)."""
    from fastmix import selection as _sel
    name, _, crit = start.partition(":")
    old = _sel.SPLIT_CRITERION
    if crit:
        _sel.SPLIT_CRITERION = crit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fastmix.select_mixture(X, n_components=range(1, kmax + 1),
                                          covariance_types=kinds, start=name,
                                          random_state=seed, max_iter=max_iter)
    finally:
        _sel.SPLIT_CRITERION = old


def starts(args):
    kinds = args.types.split(",")
    names = args.starts.split(",")
    rows = []
    for sep in ("well", "overlap"):
        for seed in range(args.seeds):
            X = make_mixture(args.n, args.d, args.k_true, separation=sep, seed=seed)
            X = X[0] if isinstance(X, tuple) else X
            for start in names:
                t0, c0 = time.perf_counter(), time.process_time()
                res = _run_start(X, start, kinds, args.kmax, seed, args.max_iter)
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
                r = res.results_
                for kind in kinds:
                    sel = r["covariance_type"] == kind
                    i = np.flatnonzero(sel)[np.argmin(r["bic"][sel])]
                    rows.append(dict(separation=sep, seed=seed, start=start, kind=kind,
                                     best_bic=float(r["bic"][i]), best_k=int(r["n_components"][i]),
                                     iters=int(r["n_iter"][sel].sum()), passes=res.n_passes_,
                                     seconds=dt, cpu=cpu))
                print(sep, seed, start, f"{dt:.1f} s", res.best_params_, flush=True)
    others = [n for n in names if n != "kmeans"]
    slash = "/".join(names)
    md = [f"# select_mixture starts: N = {args.n}, D = {args.d}, true K = {args.k_true}, "
          f"K = 1..{args.kmax}, {args.seeds} seeds, max_iter {args.max_iter}", "",
          f"environment: {_env()}", "",
          "Starts: " + ", ".join(names) + " (split:<c>: K + 1 from the fitted K by splitting "
          "the component chosen by criterion c of fastmix.selection.split_scores).", "",
          "Best BIC per type for the k-means start, and each other start's best BIC minus it "
          "(negative: that start reached a lower, better BIC); K picked, EM iterations summed "
          "over K, passes over the data, process CPU seconds (whole sweep of all types), per "
          "separation / seed / type:", "",
          "| separation | seed | type | kmeans BIC | " + " | ".join(f"{n} - kmeans" for n in others)
          + f" | K ({slash}) | iterations | passes | CPU s |",
          "|---|---|---|---|" + "---|" * len(others) + "---|---|---|---|"]
    wins = {n: [0, 0, 0] for n in others}
    for sep in ("well", "overlap"):
        for seed in range(args.seeds):
            for kind in kinds:
                g = {r["start"]: r for r in rows if r["separation"] == sep
                     and r["seed"] == seed and r["kind"] == kind}
                km = g["kmeans"]["best_bic"]
                for n in others:
                    d = g[n]["best_bic"] - km
                    wins[n][0 if d < -1e-6 * abs(km) else 2 if d > 1e-6 * abs(km) else 1] += 1
                md.append(f"| {sep} | {seed} | {kind} | {km:.1f} | "
                          + " | ".join(f"{g[n]['best_bic'] - km:+.1f}" for n in others) + " | "
                          + "/".join(str(g[n]["best_k"]) for n in names) + " | "
                          + "/".join(str(g[n]["iters"]) for n in names) + " | "
                          + "/".join(str(g[n]["passes"]) for n in names) + " | "
                          + "/".join(f"{g[n]['cpu']:.1f}" for n in names) + " |")
    md += ["", "Against the k-means start (better / same / worse best BIC): "
           + "; ".join(f"{n}: {w[0]} / {w[1]} / {w[2]}" for n, w in wins.items())]
    tot = {n: sum(r["best_bic"] for r in rows if r["start"] == n) for n in names}
    md += ["", "Sum of the best BICs over all cases minus the k-means start's: "
           + "; ".join(f"{n}: {tot[n] - tot['kmeans']:+.1f}" for n in others)]
    _write("starts", {"args": {k: v for k, v in vars(args).items() if k != "func"},
                      "env": _env(), "rows": rows}, md)


def _sweep_child(path, ks, kinds, max_iter, tol, log=None):
    """Run in a child: the sweep on a .npy file, print JSON with bytes per pass and peak RSS.
    ``log``: a path to which a JSON line is appended after every pass (kind, bytes, seconds
    since the start, peak RSS so far), so that a run cut short still documents its passes."""
    t0 = time.perf_counter()
    if log is not None:
        from fastmix import selection as _sel
        blocks = _sel._blocks

        def logged(data, stats, what):
            yield from blocks(data, stats, what)
            with open(log, "a") as fh:
                fh.write(json.dumps({"pass": stats.n_passes, "kind": what,
                                     "bytes": stats.pass_bytes[-1],
                                     "seconds": time.perf_counter() - t0,
                                     "cpu": time.process_time(),
                                     "peak_rss_mib": _peak_rss_mib(),
                                     "loadavg": os.getloadavg()}) + "\n")
        _sel._blocks = logged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fastmix.select_mixture(path, n_components=ks, covariance_types=kinds,
                                     random_state=0, max_iter=max_iter, tol=tol)
    print(json.dumps({"seconds": time.perf_counter() - t0, "bytes_read": res.bytes_read_,
                      "pass_kinds": res.pass_kinds_, "file_bytes": os.path.getsize(path),
                      "peak_rss_mib": _peak_rss_mib(), "best": res.best_params_,
                      "n_iter": res.results_["n_iter"].tolist()}))


def _peak_rss_mib():
    """Peak RSS of this process's own address space: VmHWM (Linux).  (getrusage's ru_maxrss
    survives execve on Linux, so a child started from a big parent reports the parent's peak.)"""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def outofcore(args):
    """The sweep on a .npy file written block by block (the parent never holds the data):
    bytes read per pass and the sweep's peak RSS, in a child process."""
    kinds = args.types.split(",")
    ks = list(range(1, args.kmax + 1))
    if not os.path.exists(args.npy):
        out = np.lib.format.open_memmap(args.npy, mode="w+", dtype=np.float64,
                                        shape=(args.rows, args.d))
        step = 500_000
        for i in range(0, args.rows, step):
            m = min(step, args.rows - i)
            X = make_mixture(m, args.d, args.k_true, separation="overlap", seed=1 + i // step)
            out[i:i + m] = X[0] if isinstance(X, tuple) else X
        out.flush()
        del out
    code = (f"import sys; sys.path.insert(0, {HERE!r}); import selection as s; "
            f"s._sweep_child({args.npy!r}, {ks!r}, {kinds!r}, {args.max_iter}, {args.tol}, "
            f"{args.log!r})")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)
    n = json.loads(child.stdout.strip().splitlines()[-1])
    args.rows, args.d = np.load(args.npy, mmap_mode="r").shape
    em = [b for b, k in zip(n["bytes_read"], n["pass_kinds"]) if k == "em"]
    starts = [b for b, k in zip(n["bytes_read"], n["pass_kinds"]) if k == "start"]
    md = [f"# select_mixture out of core: {args.npy}, {args.rows} x {args.d} float64 "
          f"({n['file_bytes'] / 2**20:.0f} MiB), K = 1..{args.kmax} x {kinds} "
          f"({len(ks) * len(kinds)} candidates), max_iter {args.max_iter}, tol {args.tol}", "",
          f"environment: {_env()}", "",
          f"- wall time {n['seconds']:.1f} s; best {n['best']}; EM iterations per candidate "
          f"{n['n_iter']}",
          f"- passes: {len(starts)} start pass(es) + {len(em)} EM passes (iterations of the "
          f"slowest candidate + the scoring pass)",
          f"- bytes read per EM pass / file size: {min(em) / n['file_bytes']:.4f} .. "
          f"{max(em) / n['file_bytes']:.4f} (the .npy header is not counted); "
          f"{len(ks) * len(kinds)} separate fits would read the file "
          f"{len(ks) * len(kinds)} times per iteration",
          f"- peak RSS of the sweep's process (VmHWM): {n['peak_rss_mib']:.0f} MiB"]
    _write(args.name, {"args": {k: v for k, v in vars(args).items() if k != "func"},
                         "env": _env(), "result": n}, md)



def _ks_label(ks):
    return (f"K = 1..{ks[-1]}" if ks == list(range(1, ks[-1] + 1))
            else "K = " + ",".join(map(str, ks)))


def scale(args):
    kinds = args.types.split(",")
    ks = ([int(k) for k in args.ks.split(",")] if args.ks
          else list(range(1, args.kmax + 1)))
    X = make_mixture(args.n, args.d, args.k_true, separation="overlap", seed=0)
    X = X[0] if isinstance(X, tuple) else X
    out = {"args": {k: v for k, v in vars(args).items() if k != "func"}, "env": _env()}
    kw = dict(max_iter=args.max_iter, tol=args.tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # compile the kernels first (numba): the timings below are of warm runs
        fastmix.select_mixture(X[:2000], n_components=[1, 2], covariance_types=kinds,
                               random_state=0, max_iter=3)
        t0, c0 = time.perf_counter(), time.process_time()
        res = fastmix.select_mixture(X, n_components=ks, covariance_types=kinds,
                                     random_state=0, **kw)
        out["select"] = {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                         "passes": res.n_passes_, "best": res.best_params_,
                         "iters": int(res.results_["n_iter"].sum())}
        print("select", out["select"], flush=True)
        if not args.no_separate:
            t0, c0 = time.perf_counter(), time.process_time()
            for kind in kinds:
                for K in ks:
                    fastmix.GaussianMixture(K, covariance_type=kind, random_state=0,
                                            **kw).fit(X)
            out["separate"] = {"seconds": time.perf_counter() - t0,
                               "cpu": time.process_time() - c0}
            print("separate", out["separate"], flush=True)
        if not args.no_sklearn:
            from sklearn.mixture import GaussianMixture as SkGM
            Xs = X
            if args.sklearn_n and args.sklearn_n < X.shape[0]:
                # scikit-learn's loop on the first sklearn_n rows (the data are shuffled), and
                # select_mixture on the same rows for the ratio measured on equal terms
                Xs = X[:args.sklearn_n]
                t0, c0 = time.perf_counter(), time.process_time()
                rs = fastmix.select_mixture(Xs, n_components=ks, covariance_types=kinds,
                                            random_state=0, **kw)
                out["select_sub"] = {"n": Xs.shape[0], "seconds": time.perf_counter() - t0,
                                     "cpu": time.process_time() - c0, "best": rs.best_params_,
                                     "iters": int(rs.results_["n_iter"].sum())}
                print("select_sub", out["select_sub"], flush=True)
            t0, c0 = time.perf_counter(), time.process_time()
            sk_bic, sk_iters = {}, 0
            for kind in kinds:
                for K in ks:
                    m = SkGM(K, covariance_type=kind, random_state=0, **kw).fit(Xs)
                    sk_bic[f"{kind}{K}"] = m.bic(Xs)
                    sk_iters += int(m.n_iter_)
            out["sklearn"] = {"n": Xs.shape[0], "seconds": time.perf_counter() - t0,
                              "cpu": time.process_time() - c0, "iters": sk_iters,
                              "best": min(sk_bic, key=sk_bic.get)}
            print("sklearn", out["sklearn"], flush=True)
    if args.npy:
        n_ooc = args.npy_rows or X.shape[0]
        ks_ooc = list(range(1, (args.npy_kmax or args.kmax) + 1))
        it_ooc = args.npy_max_iter or args.max_iter
        if n_ooc == X.shape[0]:
            np.save(args.npy, X)
        else:
            Xo = make_mixture(n_ooc, args.d, args.k_true, separation="overlap", seed=1)
            np.save(args.npy, Xo[0] if isinstance(Xo, tuple) else Xo)
            del Xo
        del X
        out["npy_grid"] = {"n": n_ooc, "kmax": ks_ooc[-1], "max_iter": it_ooc}
        code = (f"import sys; sys.path.insert(0, {HERE!r}); import selection as s; "
                f"s._sweep_child({args.npy!r}, {ks_ooc!r}, {kinds!r}, {it_ooc}, {args.tol})")
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True)
        out["npy"] = json.loads(child.stdout.strip().splitlines()[-1])
        print("npy", {k: v for k, v in out["npy"].items() if k != "bytes_read"}, flush=True)
    out["env"]["loadavg_end"] = os.getloadavg()
    s = out["select"]
    md = [f"# select_mixture at scale: N = {args.n}, D = {args.d}, {_ks_label(ks)} x "
          f"{kinds} ({len(ks) * len(kinds)} candidates), max_iter {args.max_iter}, tol "
          f"{args.tol}", "", f"environment: {out['env']}", "",
          "| run | wall s | process CPU s | vs select_mixture (wall) |", "|---|---|---|---|",
          f"| select_mixture (one pass per iteration for all) | {s['seconds']:.1f} | "
          f"{s['cpu']:.1f} | 1.0x |"]
    if "separate" in out:
        md.append(f"| fastmix.GaussianMixture per candidate | {out['separate']['seconds']:.1f} | "
                  f"{out['separate']['cpu']:.1f} | "
                  f"{out['separate']['seconds'] / s['seconds']:.2f}x |")
    if "sklearn" in out:
        sk = out["sklearn"]
        ref = out.get("select_sub", s)
        if "select_sub" in out:
            md.append(f"| select_mixture on the first {ref['n']} rows | {ref['seconds']:.1f} | "
                      f"{ref['cpu']:.1f} | |")
        md.append(f"| scikit-learn GaussianMixture loop ({sk['n']} rows) | {sk['seconds']:.1f} | "
                  f"{sk['cpu']:.1f} | {sk['seconds'] / ref['seconds']:.2f}x (same rows) |")
        if "select_sub" in out:
            f = args.n / ref["n"]
            md.append(f"| scikit-learn loop at N = {args.n}, extrapolated ({f:g} x its "
                      f"{ref['n']}-row time) | ~{sk['seconds'] * f:.0f} | ~{sk['cpu'] * f:.0f} | "
                      f"~{sk['seconds'] * f / s['seconds']:.1f}x |")
    md += ["", f"passes over the data: {s['passes']} (EM iterations of all candidates "
           f"together: {s['iters']}); best: {s['best']}"
           + (f"; scikit-learn's best: {out['sklearn']['best']}" if "sklearn" in out else "")]
    if "npy" in out:
        n = out["npy"]
        g = out["npy_grid"]
        em = [b for b, k in zip(n["bytes_read"], n["pass_kinds"]) if k == "em"]
        md += ["", f"out of core ({args.npy}, {n['file_bytes'] / 2**20:.0f} MiB, N = {g['n']}, "
               f"K = 1..{g['kmax']} x {kinds}, max_iter {g['max_iter']}; best {n['best']}): "
               f"{n['seconds']:.1f} s, {len(em)} EM passes, bytes per EM pass / file size = "
               f"{min(em) / n['file_bytes']:.4f} .. {max(em) / n['file_bytes']:.4f}, "
               f"peak RSS {n['peak_rss_mib']:.0f} MiB"]
    _write(args.name, out, md)


def _inmemory_child(mode, n, d, kmax, kinds):
    """One run of the in-memory A/B in its own process: ``mode`` = "sweep" (select_mixture as
    it is), "sweep4m" (its EM passes cut into 4 MiB blocks, the earlier default), "sep"
    (one GaussianMixture fit per candidate) or "sepbic" (the same plus ``.bic(X)``, which a
    hand-written selection loop needs).  Prints one JSON line: process CPU and wall seconds,
    EM iterations."""
    from fastmix import selection as _sel
    X = make_mixture(n, d, 8, separation="overlap", seed=0)
    X = X[0] if isinstance(X, tuple) else X
    warnings.simplefilter("ignore")
    fastmix.select_mixture(X[:3000], n_components=[1, 2], covariance_types=kinds,
                           random_state=0, max_iter=3)  # compile first
    for kind in kinds:
        fastmix.GaussianMixture(2, covariance_type=kind, random_state=0,
                                max_iter=2).fit(X[:3000]).bic(X[:3000])
    if mode == "sweep4m":
        _sel.CACHE_BLOCK_BYTES = 4 * 2**20
    c0, t0 = time.process_time(), time.perf_counter()
    if mode.startswith("sweep"):
        r = fastmix.select_mixture(X, n_components=range(1, kmax + 1), covariance_types=kinds,
                                   random_state=0)
        its = int(r.results_["n_iter"].sum())
    else:
        its = 0
        for kind in kinds:
            for K in range(1, kmax + 1):
                m = fastmix.GaussianMixture(K, covariance_type=kind, random_state=0).fit(X)
                its += int(m.n_iter_)
                if mode == "sepbic":
                    m.bic(X)
    print(json.dumps({"mode": mode, "cpu": time.process_time() - c0,
                      "seconds": time.perf_counter() - t0, "iters": its,
                      "load": os.getloadavg()[0]}))


def inmemory(args):
    """In memory: select_mixture against separate fits (with and without .bic), and against
    its earlier 4 MiB blocks; every run its own process, the modes interleaved."""
    kinds = args.types.split(",")
    modes = args.modes.split(",")
    rows = []
    for rep in range(args.repeats):
        for mode in modes:
            code = (f"import sys; sys.path.insert(0, {HERE!r}); import selection as s; "
                    f"s._inmemory_child({mode!r}, {args.n}, {args.d}, {args.kmax}, {kinds!r})")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    md = [f"# select_mixture in memory: N = {args.n}, D = {args.d}, K = 1..{args.kmax} x "
          f"{kinds}, threads {os.environ.get('NUMBA_NUM_THREADS')}, {args.repeats} repeats", "",
          f"environment: {_env()}", "", "| run | median process CPU s | runs | EM iterations |",
          "|---|---|---|---|"]
    for mode in modes:
        c = [r["cpu"] for r in rows if r["mode"] == mode]
        md.append(f"| {mode} | {np.median(c):.1f} | {', '.join(f'{x:.1f}' for x in c)} | "
                  f"{rows[modes.index(mode)]['iters']} |")
    _write(args.name, {"args": {k: v for k, v in vars(args).items() if k != "func"},
                       "env": _env(), "rows": rows}, md)


def blocks(args):
    """One E-step (``kernels.estep_stats``) over N rows as one call against 4 MiB blocks of
    whole chunks (the sweep's earlier in-memory blocking), and one ``kernels.log_prob`` (the
    scoring pass), per covariance type and K: median process CPU ms of ``--repeats``."""
    from fastmix import GaussianMixture, kernels
    from fastmix.io import as_stream
    X = make_mixture(args.n, args.d, 8, separation="overlap", seed=0)
    X = X[0] if isinstance(X, tuple) else X
    warnings.simplefilter("ignore")
    whole = as_stream(X, None, 4096)
    blocked = whole.rebatched(max(1, 4 * 2**20 // (8 * args.d) // 4096) * 4096)
    rows = []
    for kind in args.types.split(","):
        for K in (2, 10, 20):
            gm = GaussianMixture(K, covariance_type=kind, random_state=0,
                                 max_iter=1).fit(X[:20000])
            kp = gm._params().kernel_params(X.dtype)
            t = {}
            for name, st in (("whole", whole), ("blocked", blocked), ("log_prob", None)):
                ts = []
                for _ in range(args.repeats):
                    c0 = time.process_time()
                    if st is None:
                        kernels.log_prob(X, kp, 4096, False)
                    else:
                        acc = kernels.Accumulator.for_params(kp)
                        for _, Xb, w in st.blocks():
                            kernels.estep_stats(Xb, w, kp, 4096, acc)
                    ts.append(time.process_time() - c0)
                t[name] = 1e3 * float(np.median(ts))
            rows.append(dict(kind=kind, K=K, **t))
            print(rows[-1], flush=True)
    md = [f"# E-step over N = {args.n} x {args.d} rows: one call vs 4 MiB blocks; log_prob",
          "", f"environment: {_env()}", "",
          "| type | K | one call ms | 4 MiB blocks ms | blocks / one call | log_prob ms |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r['kind']} | {r['K']} | {r['whole']:.1f} | {r['blocked']:.1f} | "
           f"{r['blocked'] / r['whole']:.2f} | {r['log_prob']:.1f} |" for r in rows]
    _write(args.name, {"args": {k: v for k, v in vars(args).items() if k != "func"},
                       "env": _env(), "rows": rows}, md)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="study", required=True)
    a = sub.add_parser("starts")
    a.add_argument("--n", type=int, default=20000)
    a.add_argument("--d", type=int, default=4)
    a.add_argument("--k-true", type=int, default=6)
    a.add_argument("--kmax", type=int, default=10)
    a.add_argument("--seeds", type=int, default=3)
    a.add_argument("--max-iter", type=int, default=100)
    a.add_argument("--types", default="full,diag")
    a.add_argument("--starts", default="kmeans,hierarchical,split:kl,split:kl_empirical,"
                   "split:kurtosis")
    a.set_defaults(func=starts)
    b = sub.add_parser("scale")
    b.add_argument("--n", type=int, default=1_000_000)
    b.add_argument("--d", type=int, default=16)
    b.add_argument("--k-true", type=int, default=8)
    b.add_argument("--kmax", type=int, default=20)
    b.add_argument("--ks", default=None,
                   help="explicit list of K instead of 1..kmax, e.g. 4,8,12,16,20 (a sub-grid "
                        "on which scikit-learn's loop runs at full N in reasonable time)")
    b.add_argument("--types", default="full,tied,diag,spherical")
    b.add_argument("--max-iter", type=int, default=100)
    b.add_argument("--tol", type=float, default=1e-3)
    b.add_argument("--no-sklearn", action="store_true")
    b.add_argument("--no-separate", action="store_true")
    b.add_argument("--name", default="scale", help="results/selection_<name>.json/.md")
    b.add_argument("--npy", default=None, help="also sweep this .npy file (written first)")
    b.add_argument("--sklearn-n", type=int, default=None,
                   help="run scikit-learn's loop (and select_mixture again) on the first rows")
    b.add_argument("--npy-rows", type=int, default=None, help="rows of the .npy (default --n)")
    b.add_argument("--npy-kmax", type=int, default=None)
    b.add_argument("--npy-max-iter", type=int, default=None)
    b.set_defaults(func=scale)
    c = sub.add_parser("outofcore")
    c.add_argument("--npy", required=True, help=".npy path (written first if missing)")
    c.add_argument("--rows", type=int, default=8_000_000)
    c.add_argument("--d", type=int, default=16)
    c.add_argument("--k-true", type=int, default=8)
    c.add_argument("--kmax", type=int, default=4)
    c.add_argument("--types", default="full,tied,diag,spherical")
    c.add_argument("--max-iter", type=int, default=10)
    c.add_argument("--tol", type=float, default=1e-3)
    c.add_argument("--name", default="outofcore", help="results/selection_<name>.json/.md")
    c.add_argument("--log", default=None, help="append a JSON line per pass to this file")
    c.set_defaults(func=outofcore)
    e = sub.add_parser("inmemory")
    e.add_argument("--n", type=int, default=200_000)
    e.add_argument("--d", type=int, default=16)
    e.add_argument("--kmax", type=int, default=20)
    e.add_argument("--types", default="full,tied,diag,spherical")
    e.add_argument("--modes", default="sweep,sweep4m,sep,sepbic")
    e.add_argument("--repeats", type=int, default=3)
    e.add_argument("--name", default="inmemory_run")
    e.set_defaults(func=inmemory)
    f = sub.add_parser("blocks")
    f.add_argument("--n", type=int, default=200_000)
    f.add_argument("--d", type=int, default=16)
    f.add_argument("--types", default="full,tied,diag,spherical")
    f.add_argument("--repeats", type=int, default=5)
    f.add_argument("--name", default="blocks")
    f.set_defaults(func=blocks)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
