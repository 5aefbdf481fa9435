"""BayesianGaussianMixture benchmarks: pruning over seeds vs scikit-learn (with the default
``weight_concentration_prior`` and with 0.01), the time of one variational iteration (E-step +
M-step + bound) vs scikit-learn's and vs fastmix's own EM iteration of the same covariance
type, and the peak RSS of a batch fit on a ``.npy`` memory map (and on the ``.npy`` path) next
to GaussianMixture's.  Writes bench/results/bayesian.md and .json; parts skipped in a run keep
their previous results there.

    python bench/bayesian.py [--n 1000000] [--d 16] [--k 16] [--repeats 5] [--seeds 10]
                             [--priors default,0.01] [--rss-n 4000000]
                             [--skip-pruning] [--skip-iterations] [--skip-rss]
                             [--svi-file /tmp/fastmix-8gb.npy --svi-passes 2]

``--svi-file PATH`` adds the stochastic-variational run on a large ``.npy`` (the out-of-core
benchmark's 8 GB file, 6.25e7 x 16 float64 from ``bench/out_of_core.py``'s generator; written
to PATH first if absent, as ``PATH.part`` renamed when complete, and left there):
``BayesianGaussianMixture(16, covariance_type="diag").fit(PATH, algorithm="online")`` for
``--svi-passes`` passes in a fresh interpreter, the file read block by block, with the peak RSS
and the lower bound after every SVI step and every pass (plotted to
``bench/results/bayesian_svi_8gb.png``).

Times are process CPU seconds (``time.process_time``), medians of ``--repeats`` runs, so other
load on a shared machine inflates them less than wall time; run with NUMBA_NUM_THREADS and
OMP_NUM_THREADS set to the thread count to compare.  Peak RSS is measured in a fresh
interpreter per case (``--rss-worker``): the peak (VmHWM, reset after a small warm-up fit) minus
the RSS just before the fit; pages of a memory-mapped file that the fit reads count in it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import fastmix
from fastmix import variational as vb
from fastmix._params import m_step
from fastmix.em import e_step_stats

RESULTS = Path(__file__).resolve().parent / "results"


def eight_blobs(seed, n_per=150):
    rng = np.random.default_rng(seed)
    centres = np.array([[i, j] for i in range(4) for j in range(2)], dtype=float) * 12.0
    return np.vstack([c + rng.normal(size=(n_per, 2)) for c in centres])


def pruning(seeds, prior=1e-2):
    """Per seed: components with weight > 1e-2 (fastmix, scikit-learn) and the two bounds, for
    the DP prior with ``weight_concentration_prior=prior`` (None: the default 1/30)."""
    from sklearn.mixture import BayesianGaussianMixture as SK
    rows = []
    for seed in range(seeds):
        X = eight_blobs(seed)
        kw = dict(n_components=30, random_state=seed, weight_concentration_prior=prior,
                  max_iter=300)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fm = fastmix.BayesianGaussianMixture(**kw).fit(X)
            sk = SK(**kw).fit(X)
        rows.append((seed, int((fm.weights_ > 1e-2).sum()), int((sk.weights_ > 1e-2).sum()),
                     float(fm.lower_bound_), float(np.ravel(sk.lower_bound_)[0])))
    return rows


def median_cpu(fn, repeats):
    fn()  # compile / warm caches
    out = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return float(np.median(out))


def iteration_times(n, d, k, repeats, kinds=("diag", "full")):
    from sklearn.mixture import BayesianGaussianMixture as SK
    rng = np.random.default_rng(0)
    X = rng.normal(size=(k, d))[rng.integers(0, k, n)] * 3 + rng.normal(size=(n, d))
    R = np.random.default_rng(1).dirichlet(np.ones(k), size=n)
    rows = []
    for kind in kinds:
        fm = fastmix.BayesianGaussianMixture(n_components=k, covariance_type=kind, max_iter=2,
                                             tol=0.0, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fm._fit(X, None, resp=R)
        params, prior = fm._vb_params(), fm._prior()
        estep = lambda g: e_step_stats(X, None, g)  # noqa: E731
        t_vb = median_cpu(lambda: vb.vb_step(estep, params, prior), repeats)
        gm = params.point()
        t_em = median_cpu(lambda: m_step(e_step_stats(X, None, gm), 1e-6), repeats)
        sk = SK(n_components=k, covariance_type=kind, max_iter=1, tol=0.0, random_state=0)
        sk._initialize_parameters = lambda X_, rs, xp=None: sk._initialize(X_, R)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sk.fit(X)

        def sk_iter():
            lpn, log_resp = sk._e_step(X)
            sk._m_step(X, log_resp)
            sk._compute_lower_bound(log_resp, lpn)
        t_sk = median_cpu(sk_iter, max(1, repeats // 2))
        rows.append(dict(kind=kind, fastmix_vb=t_vb, fastmix_em=t_em, sklearn_vb=t_sk,
                         speedup_vs_sklearn=t_sk / t_vb, vb_over_em=t_vb / t_em))
    return rows


def _vm_mb(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return None


def rss_worker(model, how, path, iters, kind):
    """In a fresh interpreter: peak RSS above the RSS before one batch fit (``iters``
    iterations, k-means start) of ``model`` ("bayesian" or "gmm") on the ``.npy`` at ``path``,
    given as a memory map (``how="memmap"``) or as the path (read in blocks).  JSON on stdout."""
    X = np.load(path, mmap_mode="r")
    K = 16
    cls = fastmix.BayesianGaussianMixture if model == "bayesian" else fastmix.GaussianMixture
    kw = dict(n_components=K, covariance_type=kind, max_iter=iters, tol=0.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls(**kw).fit(np.array(X[:20000]))  # compile / load the kernels outside the measure
        data = X if how == "memmap" else str(path)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM
        base = _vm_mb("VmRSS")
        t = time.perf_counter()
        est = cls(**kw).fit(data)
        seconds = time.perf_counter() - t
    peak = _vm_mb("VmHWM")
    return dict(model=model, input=how, covariance_type=kind, n_iter=int(est.n_iter_),
                data_mb=X.nbytes / 2**20, baseline_mb=base, peak_above_baseline_mb=peak - base,
                rss_file_mb_after=_vm_mb("RssFile"), seconds=seconds)


def peak_rss(n, d, iters, kind):
    """rss_worker for (BayesianGaussianMixture, GaussianMixture) x (memmap, path) on one
    generated float64 .npy of n x d, each in its own interpreter."""
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fastmix-bayes-rss-") as tmp:
        path = os.path.join(tmp, "x.npy")
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, d))
        centres = 3.0 * rng.normal(size=(16, d))
        for s in range(0, n, 1 << 18):
            e = min(n, s + (1 << 18))
            out[s:e] = centres[rng.integers(0, 16, e - s)] + rng.normal(size=(e - s, d))
        out.flush()
        del out
        for model in ("bayesian", "gmm"):
            for how in ("memmap", "path"):
                r = subprocess.run([sys.executable, __file__, "--rss-worker", model, how, path,
                                    str(iters), kind], capture_output=True, text=True)
                try:
                    rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
                except (IndexError, ValueError):
                    rows.append(dict(model=model, input=how, error=r.stderr.strip()[-300:]))
    return rows


def svi_worker(path, passes, batch_rows):
    """In a fresh interpreter: SVI passes over the ``.npy`` at ``path`` (read in blocks, not
    memory-mapped).  The bound after each SVI step is recorded by wrapping
    ``variational.svi_update`` (instrumentation of this benchmark only).  JSON on stdout."""
    import fastmix.variational as fv
    steps = []
    t_start = [None]
    inner = fv.svi_update

    def recording(*a, **kw):
        out = inner(*a, **kw)
        if t_start[0] is None:
            t_start[0] = time.perf_counter()
        steps.append((time.perf_counter() - t_start[0], float(out[2]), float(out[3])))
        return out
    fv.svi_update = recording
    D = np.load(path, mmap_mode="r").shape[1]
    rng = np.random.default_rng(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = rng.normal(size=(20000, D))
        fastmix.BayesianGaussianMixture(n_components=16, covariance_type="diag", max_iter=1,
                                        random_state=0).fit(small, algorithm="online")
        steps.clear()
        t_start[0] = None
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM
        base = _vm_mb("VmRSS")
        est = fastmix.BayesianGaussianMixture(n_components=16, covariance_type="diag",
                                              max_iter=passes, tol=0.0, random_state=0,
                                              batch_size=batch_rows)
        t = time.perf_counter()
        est.fit(str(path), algorithm="online")
        seconds = time.perf_counter() - t
    n_rows = int(np.load(path, mmap_mode="r").shape[0])
    return dict(path=str(path), rows=n_rows, d=D, bytes=os.path.getsize(path),
                passes=int(est.n_iter_), batch_rows=batch_rows or 16 * 4096,
                n_steps=int(est.n_steps_), pass_bounds=list(est.lower_bounds_),
                pass_seconds=list(est.iteration_times_), steps=steps, seconds=seconds,
                baseline_mb=base, peak_above_baseline_mb=_vm_mb("VmHWM") - base,
                peak_rss_mb=_vm_mb("VmHWM"), n_effective=int(np.sum(est.weights_ > 1e-2)),
                threads=int(__import__("numba").get_num_threads()))


def ensure_big_file(path, gb=8.0, d=16, k=16):
    """The out-of-core benchmark's file (``bench/out_of_core.write_file``) at ``path``, unless
    it exists: written to ``path + ".part"`` and renamed when complete."""
    if os.path.exists(path):
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from out_of_core import write_file
    rows = int(gb * 1e9 // (8 * d))
    part = path + ".part"
    write_file(part, rows, d, k)
    os.replace(part, path)


def svi_plot(run, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = np.array([(t, b) for t, b, w in run["steps"] if w > 0])
    n = run["rows"]
    per_pass = max(1, -(-n // run["batch_rows"]))
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    x = np.arange(1, len(steps) + 1) / per_pass
    ax[0].plot(x, steps[:, 1] / n, lw=1, label="after each SVI step")
    ax[0].plot(np.arange(1, len(run["pass_bounds"]) + 1), np.array(run["pass_bounds"]) / n, "o",
               color="C3", label="end of each pass (lower_bounds_)")
    ax[0].set_xlabel("passes over the file")
    ax[0].set_ylabel("lower bound per row")
    ax[0].set_title(f"SVI on {run['bytes'] / 1e9:.1f} GB .npy ({n:.3g} x {run['d']}), "
                    f"{run['batch_rows']} rows per step", fontsize=10)
    ax[0].legend(fontsize=8)
    tail = steps[len(steps) // 10:]
    ax[1].plot(x[len(steps) // 10:], tail[:, 1] / n, lw=1)
    ax[1].set_xlabel("passes over the file")
    ax[1].set_title("the same, without the first 10 % of the steps", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def svi_big(path, passes, batch_rows):
    ensure_big_file(path)
    cmd = [sys.executable, __file__, "--svi-worker", path, str(passes), str(batch_rows or 0)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"SVI worker failed:\n{r.stderr[-2000:]}")
    run = json.loads(r.stdout.strip().splitlines()[-1])
    svi_plot(run, RESULTS / "bayesian_svi_8gb.png")
    return run


def markdown(rep):
    lines = ["# BayesianGaussianMixture", ""]
    for part, title in (("pruning_by_prior", "pruning"), ("iterations", "iteration times"),
                        ("rss", "peak RSS"), ("svi_big", "SVI on the 8 GB file")):
        m = rep.get("meta", {}).get(part)
        if m:
            lines.append(f"- {title}: measured {m['when']}, load average {m['loadavg'][0]:.2f} "
                         f"{m['loadavg'][1]:.2f} {m['loadavg'][2]:.2f} on {m['cpus']} CPUs, "
                         f"NUMBA_NUM_THREADS={m['threads']}; `{m['command']}`")
    lines.append("")
    for prior, prune in rep.get("pruning_by_prior", {}).items():
        lines += [f"## Pruning: 8 separated components, n_components=30, DP prior "
                  f"(weight_concentration_prior={prior}), {len(prune)} seeds", "",
                  "| seed | fastmix: weights > 1e-2 | scikit-learn | fastmix bound | "
                  "sklearn bound |", "|---|---|---|---|---|"]
        lines += [f"| {s} | {f} | {k} | {lf:.1f} | {lk:.1f} |" for s, f, k, lf, lk in prune]
        lines += ["", f"fastmix found 8 on {sum(r[1] == 8 for r in prune)} of {len(prune)} "
                  f"seeds, scikit-learn on {sum(r[2] == 8 for r in prune)}.", ""]
    times = rep.get("iterations")
    if times:
        a = rep["iterations_args"]
        lines += [f"## One iteration, N = {a['n']}, D = {a['d']}, K = {a['k']} (CPU s, median of "
                  f"{a['repeats']})", "",
                  "| kind | fastmix VB | fastmix EM | scikit-learn VB | sklearn / fastmix VB | "
                  "fastmix VB / EM |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['kind']} | {r['fastmix_vb']:.3f} | {r['fastmix_em']:.3f} | "
                  f"{r['sklearn_vb']:.3f} | {r['speedup_vs_sklearn']:.1f} | "
                  f"{r['vb_over_em']:.2f} |" for r in times]
        lines.append("")
    rss = rep.get("rss")
    if rss:
        lines += ["## Peak RSS of a batch fit (fresh interpreter per row)", "",
                  "Peak RSS during `fit` (k-means start and the iterations) minus the RSS just "
                  "before it. A memory map's pages count once the fit has read them (the "
                  "kernel may drop them again under memory pressure) and its blocks are "
                  "copied out in 8 MiB pieces (`io.base.MEMMAP_BLOCK_BYTES`; 32 MiB before "
                  "this change, which put 96 MiB of buffers on top of the data); the path is "
                  "read in blocks of 32 MiB (at most three alive).", "",
                  "| model | input | covariance | iterations | data | peak above baseline | "
                  "peak − data | seconds |", "|---|---|---|---:|---:|---:|---:|---:|"]
        for r in rss:
            if "error" in r:
                lines.append(f"| {r['model']} | {r['input']} | error: {r['error']} | | | | | |")
                continue
            lines.append(f"| {r['model']} | {r['input']} | {r['covariance_type']} "
                         f"| {r['n_iter']} | {r['data_mb']:.0f} MiB "
                         f"| {r['peak_above_baseline_mb']:.0f} MiB "
                         f"| {r['peak_above_baseline_mb'] - r['data_mb']:.0f} MiB "
                         f"| {r['seconds']:.1f} |")
        lines.append("")
    run = rep.get("svi_big")
    if run:
        n = run["rows"]
        lines += [f"## SVI on the out-of-core benchmark's {run['bytes'] / 1e9:.1f} GB .npy", "",
                  f"`BayesianGaussianMixture(16, covariance_type=\"diag\").fit(path, "
                  f"algorithm=\"online\")` on {n:,} x {run['d']} float64 read from the file "
                  f"in blocks, {run['batch_rows']} rows per SVI step "
                  f"({run['n_steps']} steps in {run['passes']} passes; before them one pass "
                  f"for the prior's data moments and a k-means start on a sample); "
                  f"{run['threads']} numba threads. The bound is that of the running "
                  f"statistics (see `lower_bound_`), per row.", "",
                  "| pass | lower bound per row | seconds |", "|---:|---:|---:|"]
        lines += [f"| {i + 1} | {b / n:.6f} | {t:.1f} |"
                  for i, (b, t) in enumerate(zip(run["pass_bounds"], run["pass_seconds"]))]
        lines += ["", f"Whole fit {run['seconds']:.0f} s; peak RSS {run['peak_rss_mb']:.0f} "
                  f"MiB, {run['peak_above_baseline_mb']:.0f} MiB above the interpreter before "
                  f"the fit, for {run['bytes'] / 2**20:.0f} MiB of data; components with weight "
                  f"> 1e-2: {run['n_effective']} (the file has 16).", "",
                  "![SVI lower bound](bayesian_svi_8gb.png)", ""]
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--rss-worker":
        model, how, path, iters, kind = sys.argv[2:7]
        print(json.dumps(rss_worker(model, how, path, int(iters), kind)))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--svi-worker":
        path, passes, batch = sys.argv[2:5]
        print(json.dumps(svi_worker(path, int(passes), int(batch) or None)))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--priors", default="default,0.01",
                    help="weight_concentration_prior values of the pruning tables; 'default' "
                         "is 1 / n_components")
    ap.add_argument("--rss-n", type=int, default=4_000_000, help="rows of the peak-RSS file")
    ap.add_argument("--rss-iters", type=int, default=2)
    ap.add_argument("--rss-kind", default="diag")
    ap.add_argument("--skip-pruning", action="store_true")
    ap.add_argument("--skip-iterations", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--svi-file", default=None,
                    help="run SVI on this large .npy (written first if absent, e.g. "
                         "/tmp/fastmix-8gb.npy)")
    ap.add_argument("--svi-passes", type=int, default=2)
    ap.add_argument("--svi-batch-rows", type=int, default=None)
    a = ap.parse_args()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "bayesian.json"
    rep = json.loads(path.read_text()) if path.exists() else {}
    rep.setdefault("meta", {})
    if "args" in rep:  # the first layout (one run of both parts, prior 0.01 only): convert
        old = rep.pop("args")
        m = dict(when="(earlier run)", loadavg=rep.pop("loadavg"), cpus="?",
                 threads=rep.pop("threads"), command="python bench/bayesian.py (first version)")
        rep["pruning_by_prior"] = {"0.01": rep.pop("pruning")}
        rep["iterations_args"] = {k: old[k] for k in ("n", "d", "k", "repeats")}
        rep["meta"] = {"pruning_by_prior": m, "iterations": m}

    def meta():
        return dict(when=time.strftime("%Y-%m-%d %H:%M"), loadavg=os.getloadavg(),
                    cpus=os.cpu_count(), threads=os.environ.get("NUMBA_NUM_THREADS", "default"),
                    command="python bench/bayesian.py " + " ".join(sys.argv[1:]))
    if not a.skip_pruning:
        rep["pruning_by_prior"] = {}
        for p in a.priors.split(","):
            label = "1/30 (default)" if p == "default" else p
            rep["pruning_by_prior"][label] = pruning(a.seeds,
                                                     None if p == "default" else float(p))
        rep["meta"]["pruning_by_prior"] = meta()
    if not a.skip_iterations:
        rep["iterations"] = iteration_times(a.n, a.d, a.k, a.repeats)
        rep["iterations_args"] = dict(n=a.n, d=a.d, k=a.k, repeats=a.repeats)
        rep["meta"]["iterations"] = meta()
    if not a.skip_rss:
        rep["rss"] = peak_rss(a.rss_n, a.d, a.rss_iters, a.rss_kind)
        rep["meta"]["rss"] = meta()
    if a.svi_file:
        rep["svi_big"] = svi_big(a.svi_file, a.svi_passes, a.svi_batch_rows)
        rep["meta"]["svi_big"] = meta()
    path.write_text(json.dumps(rep, indent=1))
    text = markdown(rep)
    (RESULTS / "bayesian.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
