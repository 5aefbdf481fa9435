#!/usr/bin/env python
"""Low-rank (mixture of factor analysers) covariances against diag and full: held-out
log-likelihood, parameters, time per EM iteration and working memory.

What is measured
----------------
1. **digits** (scikit-learn's bundled 8 x 8 digits, pixels / 16, D = 64): a seeded 1400 / 397
   train / test split, K = 10, ``reg_covar=1e-2`` for every model (many pixels are constant),
   fastmix's k-means init, ``tol=1e-4``, at most 300 iterations.  Models: diag, lowrank with
   q in {2, 4, 8, 16} (diagonal noise) and full.
2. **synthetic MFA, D = 784** (image-sized): K = 16 components, each with 8 true factors
   (loadings N(0, 1)), noise variances U(0.1, 0.5), means N(0, 10^2) (separated: see
   ``synthetic``), the held-out log-likelihood of the true parameters as reference; 60 000 training and 10 000
   test rows, float64 (``--dtype``).  Models: diag, lowrank q in {2, 4, 8, 16}, full.  Full
   covariances at D = 784 cost ~40 s per iteration here, so the full model runs
   ``--full-iter`` (default 4) iterations; its held-out log-likelihood is reported after
   those iterations (marked), the others run to convergence (at most 100 iterations).

Per model: held-out mean log-likelihood, training lower bound, free parameters (the BIC
count), iterations, median seconds per EM iteration (``iteration_times_``, after the
initialisation; the kernels are compiled by a warm-up fit first), and the fit's working
memory: peak RSS (VmHWM) minus RSS just before ``fit`` in a fresh subprocess that loads the
data from a ``.npy`` and runs 2 iterations (data and compiled kernels excluded).

Outputs: ``bench/results/lowrank.md`` / ``.json`` and ``lowrank.png`` (held-out
log-likelihood vs parameters).  Machine: see the report header (cores, threads).

How to run (from the repository root)::

    .venv/bin/python bench/lowrank.py            # ~10 min on 2 cores
    .venv/bin/python bench/lowrank.py --quick    # digits + a 10 000-row D = 784 set, ~2 min
    .venv/bin/python bench/lowrank.py --report-only
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")

MEAN_SCALE = 10.0
MODELS = [("diag", {})] + [("lowrank", {"n_factors": q}) for q in (2, 4, 8, 16)] + [("full", {})]


def label(kind, kw):
    return kind if kind != "lowrank" else f"lowrank q={kw['n_factors']}"


def synthetic(n_train, n_test, D=784, K=16, q=8, seed=0, dtype=np.float64, truth=False):
    """Training and test rows of a seeded MFA (and, with ``truth``, its held-out mean
    log-likelihood under the true parameters).  Means N(0, 10^2): along the factors a component
    spreads ~sqrt(8 D) = 79, so with means N(0, 1) (distances ~40) k-means merged components
    and every model ended in the same clustering local optimum; separated components make the
    comparison one of the covariance models."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(K, 10.0))
    means = MEAN_SCALE * rng.normal(size=(K, D))
    W = rng.normal(size=(K, D, q))
    psi = rng.uniform(0.1, 0.5, size=(K, D))
    N = n_train + n_test
    lab = rng.choice(K, size=N, p=weights)
    X = np.empty((N, D), dtype=dtype)
    for k in range(K):
        idx = np.flatnonzero(lab == k)
        Z = rng.standard_normal((idx.size, q))
        X[idx] = means[k] + Z @ W[k].T + rng.standard_normal((idx.size, D)) * np.sqrt(psi[k])
    if not truth:
        return X[:n_train], X[n_train:]
    from fastmix import inference
    from fastmix import io as sources
    from fastmix._params import GMMParams, LowRankCovariance
    params = GMMParams(weights, means, LowRankCovariance(W, psi))
    total, n = inference.total_log_likelihood(sources.as_stream(X[n_train:], None, 4096), params,
                                              4096)
    return X[:n_train], X[n_train:], total / n


def digits(seed=0):
    from sklearn.datasets import load_digits
    X = load_digits().data / 16.0
    idx = np.random.default_rng(seed).permutation(X.shape[0])
    return np.ascontiguousarray(X[idx[:1400]]), np.ascontiguousarray(X[idx[1400:]])


def fit_one(kind, kw, X, Xt, K, reg_covar, max_iter, tol):
    import fastmix
    g = fastmix.GaussianMixture(K, covariance_type=kind, reg_covar=reg_covar, max_iter=max_iter,
                                tol=tol, random_state=0, **kw)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g.fit(X)
    total = time.perf_counter() - t0
    return {"model": label(kind, kw), "kind": kind, "q": kw.get("n_factors"),
            "test_ll": float(g.score(Xt)), "train_lb": float(g.lower_bound_),
            "n_parameters": int(g._n_parameters()), "n_iter": int(g.n_iter_),
            "converged": bool(g.converged_), "fit_s": total,
            "s_per_iter": float(np.median(g.iteration_times_)) if g.iteration_times_ else None}


_MEM_CHILD = r"""
import json, sys, warnings
import numpy as np
import fastmix

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024.0

path, K, kind, kw, reg = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]), float(sys.argv[5])
X = np.load(path)
warm = fastmix.GaussianMixture(K, covariance_type=kind, max_iter=1, reg_covar=reg, **kw)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    warm.fit(X[:4 * K * 50])  # compile and load the kernels before measuring
del warm
import gc; gc.collect()
# VmHWM cannot be reset from inside; report the high-water mark over the fit relative to now
before = rss("VmRSS:")
g = fastmix.GaussianMixture(K, covariance_type=kind, max_iter=2, tol=0.0, reg_covar=reg,
                            random_state=0, **kw)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    g.fit(X)
print(json.dumps({"before_mib": before, "hwm_mib": rss("VmHWM:")}))
"""


def working_memory(path, K, kind, kw, reg_covar):
    """Peak RSS during a 2-iteration fit minus RSS just before it (MiB), fresh process.  The
    high-water mark also includes the warm-up fit (on 200 K rows: small)."""
    out = subprocess.run([sys.executable, "-c", _MEM_CHILD, path, str(K), kind, json.dumps(kw),
                          str(reg_covar)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"memory measurement of {kind} failed:\n{out.stderr[-3000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["hwm_mib"] - r["before_mib"]


def machine():
    import numba
    return {"cores": os.cpu_count(), "numba_threads": numba.config.NUMBA_NUM_THREADS,
            "python": sys.version.split()[0], "numpy": np.__version__,
            "numba": numba.__version__, "date": time.strftime("%Y-%m-%d %H:%M")}


def run(args):
    import fastmix
    out = {"machine": machine(), "args": vars(args), "digits": [], "synthetic": []}
    # warm-up: compile every kernel used below
    Xw = np.random.default_rng(0).normal(size=(500, 20))
    for kind, kw in MODELS:
        fastmix.GaussianMixture(2, covariance_type=kind, max_iter=2, **kw).fit(Xw)
    X, Xt = digits()
    for kind, kw in MODELS:
        r = fit_one(kind, kw, X, Xt, 10, 1e-2, 300, 1e-4)
        print("digits", r, flush=True)
        out["digits"].append(r)
    n_train = 10000 if args.quick else 60000
    X, Xt, out["synthetic_truth_ll"] = synthetic(n_train, 2000 if args.quick else 10000,
                                                 dtype=np.dtype(args.dtype), truth=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.npy")
        np.save(path, X)
        for kind, kw in MODELS:
            it = args.full_iter if kind == "full" else 100
            r = fit_one(kind, kw, X, Xt, 16, 1e-6, it, 1e-4)
            r["max_iter"] = it
            if not args.skip_memory:
                r["extra_mib"] = working_memory(path, 16, kind, kw, 1e-6)
            print("synthetic", r, flush=True)
            out["synthetic"].append(r)
    out["data_mib"] = X.nbytes / 2**20
    return out


def report(res, stem):
    m = res["machine"]
    lines = [f"# Low-rank covariances (mixtures of factor analysers)\n",
             f"{m['date']}, {m['cores']} cores, {m['numba_threads']} numba threads, numpy "
             f"{m['numpy']}, numba {m['numba']}.  Command: `python bench/lowrank.py"
             f"{' --quick' if res['args'].get('quick') else ''}`.\n"]
    for name, title in (("digits", "digits (1400 train / 397 test, D = 64, K = 10, "
                                   "reg_covar 1e-2)"),
                        ("synthetic", f"synthetic MFA (D = 784, K = 16, 8 true factors, "
                                      f"{res['args'].get('dtype', 'float64')}, data "
                                      f"{res.get('data_mib', 0):.0f} MiB)")):
        rows = res[name]
        lines.append(f"\n## {title}\n")
        mem = any("extra_mib" in r for r in rows)
        lines.append("| model | held-out ll | train lb | parameters | iterations | s / iteration"
                     + (" | working memory (MiB) |" if mem else " |"))
        lines.append("|---|---|---|---|---|---" + ("|---|" if mem else "|"))
        for r in rows:
            it = f"{r['n_iter']}" + ("" if r["converged"] else " (stopped)")
            spi = f"{r['s_per_iter']:.4g}" if r["s_per_iter"] is not None else "-"
            lines.append(f"| {r['model']} | {r['test_ll']:.2f} | {r['train_lb']:.2f} | "
                         f"{r['n_parameters']:,} | {it} | {spi} |"
                         + (f" {r.get('extra_mib', float('nan')):.0f} |" if mem else ""))
        if name == "synthetic" and "synthetic_truth_ll" in res:
            lines.append(f"| (true parameters) | {res['synthetic_truth_ll']:.2f} | | | | |"
                         + (" |" if mem else ""))
        full = next((r for r in rows if r["kind"] == "full"), None)
        q8 = next((r for r in rows if r["q"] == 8), None)
        diag = next((r for r in rows if r["kind"] == "diag"), None)
        if full and q8 and full["s_per_iter"] and q8["s_per_iter"]:
            lines.append(f"\nlowrank q=8 vs full: {full['s_per_iter'] / q8['s_per_iter']:.1f}x "
                         f"faster per iteration"
                         + (f", {full['extra_mib'] / max(q8['extra_mib'], 1e-9):.1f}x less "
                            f"working memory" if mem else "")
                         + f"; held-out ll {q8['test_ll'] - diag['test_ll']:+.2f} vs diag.")
    with open(os.path.join(RESULTS, stem + ".md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    plot(res, os.path.join(RESULTS, stem + ".png"))
    print("\n".join(lines))


def plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, name in zip(axes, ("digits", "synthetic")):
        rows = res[name]
        for i, r in enumerate(rows):
            marker = {"diag": "s", "full": "^"}.get(r["kind"], "o")
            ax.scatter(r["n_parameters"], r["test_ll"], marker=marker, s=50,
                       color={"diag": "tab:blue", "full": "tab:red"}.get(r["kind"], "tab:green"))
            ax.annotate(r["model"] + ("" if r["converged"] or r["kind"] != "full"
                                      else f" ({r['n_iter']} it)"),
                        (r["n_parameters"], r["test_ll"]), textcoords="offset points",
                        xytext=(5, -12 if i % 2 else 6), fontsize=8)
        if name == "synthetic" and "synthetic_truth_ll" in res:
            ax.axhline(res["synthetic_truth_ll"], color="gray", ls="--", lw=1,
                       label="true parameters")
            ax.legend(loc="lower right", fontsize=8)
        lr = [r for r in rows if r["kind"] == "lowrank"]
        ax.plot([r["n_parameters"] for r in lr], [r["test_ll"] for r in lr], color="tab:green",
                lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("free parameters")
        ax.set_ylabel("held-out mean log-likelihood")
        ax.set_title("digits (D=64, K=10)" if name == "digits" else
                     "synthetic MFA (D=784, K=16)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--full-iter", type=int, default=4)
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--memory-only", action="store_true",
                   help="re-measure the working memory of the synthetic models in the JSON")
    args = p.parse_args()
    stem = "lowrank_quick" if args.quick else "lowrank"
    os.makedirs(RESULTS, exist_ok=True)
    if args.report_only or args.memory_only:
        with open(os.path.join(RESULTS, stem + ".json")) as fh:
            res = json.load(fh)
        if args.memory_only:
            n_train = 10000 if args.quick else 60000
            X, _ = synthetic(n_train, 2000 if args.quick else 10000,
                             dtype=np.dtype(res["args"].get("dtype", "float64")))
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "x.npy")
                np.save(path, X)
                del X
                for r in res["synthetic"]:
                    kw = {} if r["q"] is None else {"n_factors": r["q"]}
                    r["extra_mib"] = working_memory(path, 16, r["kind"], kw, 1e-6)
                    print(r["model"], r["extra_mib"], flush=True)
            with open(os.path.join(RESULTS, stem + ".json"), "w") as fh:
                json.dump(res, fh, indent=1)
    else:
        res = run(args)
        with open(os.path.join(RESULTS, stem + ".json"), "w") as fh:
            json.dump(res, fh, indent=1)
    report(res, stem)


if __name__ == "__main__":
    main()
