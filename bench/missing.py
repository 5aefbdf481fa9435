#!/usr/bin/env python
"""Missing values: statistics of marginalised EM, imputation and regression quality, and the
cost of the masked E-step.  Writes ``bench/results/missing.md`` (and ``.json``).

What is measured
----------------
1. **Parameter error, 30 % MCAR** (synthetic, known truth): K = 3 well-separated full-covariance
   components in D = 5, 3000 rows, entries removed independently with probability 0.3.  Three
   fits of ``GaussianMixture(3, covariance_type="full")`` (fastmix's k-means start,
   ``random_state`` = seed): *marginalised* (``missing="marginalize"``), *mean imputation*
   (each NaN replaced by its column mean, then ordinary EM) and *complete case* (rows with no
   NaN only: 0.7^5 = 17 % of them).  Components are matched to the truth by the assignment
   minimising the distance of the means; errors: RMS of the mean errors, relative Frobenius
   error of the covariances, absolute error of the weights (averaged over components).
   Median over 10 seeds.
2. **Imputation RMSE** on scikit-learn's bundled datasets (diabetes, wine, breast cancer;
   columns standardised), 20 % of the entries removed at random (5 seeds): RMSE on the removed
   entries of fastmix ``impute`` (full covariances, K in {1, 2, 3} chosen by BIC of the
   marginalised fit; ``reg_covar=1e-3``), scikit-learn's ``IterativeImputer`` (default
   BayesianRidge, ``max_iter=10``), ``KNNImputer`` (5 neighbours) and column means.
3. **Regression**: 5-fold ``cross_val_score`` (R^2) on scikit-learn's diabetes data of
   ``StandardScaler + GaussianMixtureRegressor(K)`` (K = 1, 2, 3, full), against
   ``KNeighborsRegressor`` (5 and 15 neighbours) and ``LinearRegression``.
5. **Seconds per EM iteration** at the issue's shape (N = 10^6, D = 16, K = 16, 20 %
   missing): see ``iteration``'s docstring.
4. **Cost per E-step** (one masked pass = one EM iteration's data pass), N rows (default
   2e5, ``--rows``), D = 16, K = 16, float64, ``NUMBA_NUM_THREADS`` threads: complete data vs
   20 % MCAR for diag, and for full vs 20 % entries missing in 64 distinct patterns and vs
   20 % MCAR (every row its own pattern; at N / 10 rows, it is slow).  Median process CPU time
   and wall time of 5 passes, after a warm-up pass (compilation excluded).

How to run (from the repository root)::

    .venv/bin/python bench/missing.py                 # ~3 min on 2 cores
    .venv/bin/python bench/missing.py --rows 1000000  # the issue's size for part 4
    .venv/bin/python bench/missing.py --only timing
    NUMBA_NUM_THREADS=1 .venv/bin/python bench/missing.py --only iteration   # ~15 min
    NUMBA_NUM_THREADS=2 .venv/bin/python bench/missing.py --only iteration

``--only`` runs update ``bench/results/missing.{json,md}`` in place: the other parts' results
are kept (part 5 is stored per NUMBA_NUM_THREADS).
"""
import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, os.path.dirname(HERE))

import fastmix  # noqa: E402


# ------------------------------------------------------------------ 1. parameter error ---
def _truth(rng, K=3, D=5):
    means = rng.normal(scale=4.0, size=(K, D))
    covs = []
    for _ in range(K):
        A = rng.normal(size=(D, D))
        covs.append(A @ A.T / D + 0.3 * np.eye(D))
    w = np.array([0.5, 0.3, 0.2])
    return w, means, np.stack(covs)


def _sample(rng, w, means, covs, n):
    lab = rng.choice(len(w), size=n, p=w)
    X = np.empty((n, means.shape[1]))
    for k in range(len(w)):
        i = np.flatnonzero(lab == k)
        X[i] = rng.multivariate_normal(means[k], covs[k], size=i.size)
    return X


def _errors(gm, w, means, covs):
    from scipy.optimize import linear_sum_assignment
    cost = ((gm.means_[:, None, :] - means[None]) ** 2).sum(axis=2)
    r, c = linear_sum_assignment(cost)
    perm = np.empty(len(w), int)
    perm[c] = r
    m_err = np.sqrt(((gm.means_[perm] - means) ** 2).sum(axis=1).mean())
    c_err = np.mean([np.linalg.norm(gm.covariances_[perm[k]] - covs[k]) / np.linalg.norm(covs[k])
                     for k in range(len(w))])
    w_err = np.abs(gm.weights_[perm] - w).mean()
    return m_err, c_err, w_err


def parameter_error(seeds=10, n=3000, rate=0.3):
    rows = {"marginalised EM": [], "mean imputation + EM": [], "complete case EM": []}
    n_complete = []
    for seed in range(seeds):
        rng = np.random.default_rng(100 + seed)
        w, means, covs = _truth(rng)
        X = _sample(rng, w, means, covs, n)
        Xm = X.copy()
        Xm[rng.random(X.shape) < rate] = np.nan
        empty = np.isnan(Xm).all(axis=1)
        Xm, X = Xm[~empty], X[~empty]
        kw = dict(covariance_type="full", random_state=seed, max_iter=500, tol=1e-6)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = fastmix.GaussianMixture(3, missing="marginalize", **kw).fit(Xm)
            Xi = np.where(np.isnan(Xm), np.nanmean(Xm, axis=0), Xm)
            b = fastmix.GaussianMixture(3, **kw).fit(Xi)
            cc = Xm[~np.isnan(Xm).any(axis=1)]
            c = fastmix.GaussianMixture(3, **kw).fit(cc)
        n_complete.append(cc.shape[0])
        for name, gm in zip(rows, (a, b, c)):
            rows[name].append(_errors(gm, w, means, covs))
    out = {name: np.median(np.array(v), axis=0).tolist() for name, v in rows.items()}
    return {"table": out, "rows": n, "rate": rate, "seeds": seeds,
            "complete_rows_median": float(np.median(n_complete))}


# --------------------------------------------------------------------- 2. imputation ---
def _datasets():
    from sklearn import datasets
    return {"diabetes": datasets.load_diabetes(return_X_y=True)[0],
            "wine": datasets.load_wine(return_X_y=True)[0],
            "breast_cancer": datasets.load_breast_cancer(return_X_y=True)[0]}


def _fastmix_impute(Xm, seed):
    best = None
    for K in (1, 2, 3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = fastmix.GaussianMixture(K, covariance_type="full", missing="marginalize",
                                         reg_covar=1e-3, random_state=seed, max_iter=300)
            gm.fit(Xm)
        bic = gm.bic(Xm)
        if best is None or bic < best[0]:
            best = (bic, gm)
    return best[1].impute(Xm), best[1].n_components


def imputation(seeds=5, rate=0.2):
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer
    out = {}
    for name, X in _datasets().items():
        X = (X - X.mean(axis=0)) / X.std(axis=0)
        res = {"fastmix impute": [], "IterativeImputer": [], "KNNImputer(5)": [],
               "column mean": []}
        ks = []
        t = {k: 0.0 for k in res}
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            mask = rng.random(X.shape) < rate
            mask[mask.all(axis=1), 0] = False
            Xm = np.where(mask, np.nan, X)
            t0 = time.perf_counter()
            fm, K = _fastmix_impute(Xm, seed)
            t["fastmix impute"] += time.perf_counter() - t0
            ks.append(K)
            t0 = time.perf_counter()
            it = IterativeImputer(max_iter=10, random_state=seed).fit_transform(Xm)
            t["IterativeImputer"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            kn = KNNImputer(n_neighbors=5).fit_transform(Xm)
            t["KNNImputer(5)"] += time.perf_counter() - t0
            mn = np.where(mask, np.nanmean(Xm, axis=0), Xm)
            for key, Y in zip(res, (fm, it, kn, mn)):
                res[key].append(float(np.sqrt(np.mean((Y[mask] - X[mask]) ** 2))))
        out[name] = {"shape": list(X.shape), "K_chosen": ks,
                     "rmse": {k: [float(np.mean(v)), float(np.std(v))] for k, v in res.items()},
                     "seconds": {k: v / seeds for k, v in t.items()}}
    return out


# --------------------------------------------------------------------- 3. regression ---
def regression():
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = load_diabetes(return_X_y=True)
    cv = KFold(5, shuffle=True, random_state=0)
    models = {f"GaussianMixtureRegressor({K})":
              fastmix.GaussianMixtureRegressor(K, random_state=0, reg_covar=1e-3)
              for K in (1, 2, 3)}
    models["KNeighborsRegressor(5)"] = KNeighborsRegressor(5)
    models["KNeighborsRegressor(15)"] = KNeighborsRegressor(15)
    models["LinearRegression"] = LinearRegression()
    out = {}
    for name, est in models.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = cross_val_score(make_pipeline(StandardScaler(), est), X, y, cv=cv)
        out[name] = [float(s.mean()), float(s.std())]
    return out


# ----------------------------------------------------------------------- 4. timing ---
def _params(kind, K, D, rng):
    from fastmix._params import Covariance, GMMParams
    mu = rng.normal(scale=2.0, size=(K, D))
    if kind == "full":
        A = rng.normal(size=(K, D, D)) / 4
        cov = A @ A.transpose(0, 2, 1) + np.eye(D)
    else:
        cov = rng.uniform(0.5, 2.0, size=(K, D))
    return GMMParams(np.full(K, 1.0 / K), mu, Covariance.registry[kind].from_covariances(cov))


def _time(fn, reps=5):
    fn()
    cpu, wall = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(cpu)), float(np.median(wall))


def timing(N, D=16, K=16):
    from fastmix import kernels, missing
    from fastmix.em import e_step_stats
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D)) + 2.0 * rng.integers(0, 4, size=(N, 1))
    rows = []
    with kernels.blas_single_threaded():
        for kind, setting, n in (("diag", "20 % MCAR", N), ("full", "20 % in 64 patterns", N),
                                 ("full", "20 % MCAR", max(K, N // 10))):
            p = _params(kind, K, D, rng)
            Xc = np.ascontiguousarray(X[:n])
            Xm = Xc.copy()
            if "64" in setting:
                pats = rng.random((64, D)) < 0.2
                Xm[pats[rng.integers(0, 64, n)]] = np.nan
            else:
                Xm[rng.random(Xm.shape) < 0.2] = np.nan
            Xm[np.isnan(Xm).all(axis=1), 0] = 0.0
            base = _time(lambda: e_step_stats(Xc, None, p))
            miss = _time(lambda: missing.e_step_stats(Xm, None, p, 4096))
            rows.append({"kind": kind, "missing": setting, "rows": n,
                         "complete_cpu": base[0], "complete_wall": base[1],
                         "missing_cpu": miss[0], "missing_wall": miss[1]})
    return rows


def _holes(X, setting, rng):
    X = X.copy()
    if setting == "patterns64":
        pats = rng.random((64, X.shape[1])) < 0.2
        X[pats[rng.integers(0, 64, X.shape[0])]] = np.nan
    elif setting == "mcar":
        X[rng.random(X.shape) < 0.2] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.0
    return X


def iteration(N, D=16, K=16, iters=4, scratch=None, repeats=1, kinds=None):
    """Part 5: seconds per EM iteration of ``GaussianMixture.fit`` (its ``iteration_times_``:
    one iteration = the data pass and the M-step; the validation pass and the start are not
    in it) from a fixed start, median over ``iters`` iterations of one run, for complete data
    and 20 % missing, from memory, a ``.npy`` file and a Dask array (local threaded scheduler,
    blocks of 2^17 rows), and for lowrank (q = 4) and online EM (one pass in batches of 2^16
    rows) from memory.  CPU: process time of a fit with ``iters`` iterations minus that of the
    same fit with one, divided by ``iters - 1`` (the start and validation passes cancel).
    With ``repeats`` > 1 both are medians over that many runs; ``kinds`` restricts the part to
    those covariance types (diag also covers online EM)."""
    import tempfile
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D)) + 2.0 * rng.integers(0, 4, size=(N, 1))
    scratch = scratch or tempfile.mkdtemp()
    rows = []

    def run(kind, setting, source, algorithm="batch", n=N, **extra):
        p = _params("full" if kind in ("full", "tied", "lowrank") else "diag", K, D,
                    np.random.default_rng(1))
        Xs = np.ascontiguousarray(X[:n]) if setting == "complete" else _holes(
            X[:n], setting, np.random.default_rng(2))
        data = Xs
        if source == "npy":
            data = os.path.join(scratch, f"missing_bench_{kind}_{setting}.npy")
            np.save(data, Xs)
        elif source == "dask":
            import dask.array as da
            data = da.from_array(Xs, chunks=(1 << 17, D))
        kw = dict(covariance_type=kind, missing="marginalize", tol=0.0, max_iter=iters)
        if kind == "lowrank":
            kw.update(n_factors=4, random_state=0)
        else:
            prec = p.cov.precisions if kind == "full" else 1.0 / np.asarray(
                p.cov.covariances)
            kw.update(weights_init=p.weights, means_init=p.means, precisions_init=prec)
        if algorithm == "online":
            kw.update(batch_size=1 << 16, max_iter=2)
        walls, cpus = [], []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fastmix.GaussianMixture(K, **dict(kw, max_iter=1)).fit(Xs[:20000])  # compile
            for _ in range(repeats):
                gm = fastmix.GaussianMixture(K, **kw)
                c0 = time.process_time()
                fastmix.GaussianMixture(K, **dict(kw, max_iter=1)).fit(data,
                                                                       algorithm=algorithm)
                c1 = time.process_time()
                gm.fit(data, algorithm=algorithm)
                c2 = time.process_time()
                it = np.asarray(gm.iteration_times_)
                walls.append(float(np.median(it)))
                # CPU of the extra iterations: (fit with all of them) - (fit with one)
                cpus.append(((c2 - c1) - (c1 - c0)) / max(1, it.size - 1))
        if source == "npy":
            os.remove(data)
        rows.append({"kind": kind, "missing": setting, "source": source,
                     "algorithm": algorithm, "rows": n,
                     "iter_wall": float(np.median(walls)), "iters": int(it.size),
                     "repeats": repeats, "fit_cpu_per_iter": float(np.median(cpus))})
        print(rows[-1], flush=True)

    kinds = kinds or ("diag", "full", "lowrank")
    for kind, setting in (("diag", "complete"), ("diag", "mcar"), ("full", "complete"),
                          ("full", "patterns64")):
        if kind in kinds:
            for source in ("memory", "npy", "dask"):
                run(kind, setting, source)
    if "full" in kinds:
        run("full", "complete", "memory", n=N // 10)
        run("full", "mcar", "memory", n=N // 10)
    for setting in ("complete", "mcar"):
        if "lowrank" in kinds:
            run("lowrank", setting, "memory")
        if "diag" in kinds:
            run("diag", setting, "memory", algorithm="online")
    return rows


def _load():
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover
        return float("nan")


def report(res):
    L = ["# Missing values: marginalised EM, imputation, regression, cost", "",
         f"Generated by `bench/missing.py` on {platform.node()} ({os.cpu_count()} cores, "
         f"NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'default')}), "
         f"load average at the start {res['load_start']:.1f}, at the end "
         f"{res['load_end']:.1f}.  See the script's docstring for the protocol.", ""]
    if "params" in res:
        p = res["params"]
        L += [f"## 1. Parameter error, {int(p['rate'] * 100)} % MCAR", "",
              f"K = 3 full-covariance components, D = 5, {p['rows']} rows; median over "
              f"{p['seeds']} seeds (complete-case fits use the median "
              f"{p['complete_rows_median']:.0f} complete rows).", "",
              "| method | RMS mean error | rel. covariance error | weight error |",
              "|---|---|---|---|"]
        for name, (m, c, w) in p["table"].items():
            L.append(f"| {name} | {m:.3f} | {c:.3f} | {w:.4f} |")
        L.append("")
    if "impute" in res:
        L += ["## 2. Imputation RMSE (standardised columns, 20 % of entries removed)", "",
              "Mean ± std over 5 seeds of the RMSE on the removed entries; seconds per "
              "dataset and seed in brackets (fastmix: three fits K = 1, 2, 3 and a BIC "
              "choice).", "",
              "| dataset | fastmix impute (K by BIC) | IterativeImputer | KNNImputer(5) | "
              "column mean |", "|---|---|---|---|---|"]
        for name, d in res["impute"].items():
            cells = [f"{d['rmse'][k][0]:.3f} ± {d['rmse'][k][1]:.3f} "
                     f"[{d['seconds'][k]:.2f} s]" for k in d["rmse"]]
            L.append(f"| {name} {tuple(d['shape'])}, K = {d['K_chosen']} | "
                     + " | ".join(cells) + " |")
        L.append("")
    if "regression" in res:
        L += ["## 3. Regression: 5-fold cross_val_score (R²) on diabetes", "",
              "All models after a StandardScaler in a Pipeline.", "",
              "| model | mean R² | std |", "|---|---|---|"]
        for name, (m, s) in res["regression"].items():
            L.append(f"| {name} | {m:.3f} | {s:.3f} |")
        L.append("")
    if "timing" in res:
        L += ["## 4. Cost of one E-step pass (D = 16, K = 16, float64)", "",
              "Median of 5 passes after a warm-up; process CPU time (all threads) and wall.",
              "",
              "| kind | missing | rows | complete CPU s | missing CPU s | ratio (CPU) | "
              "complete wall s | missing wall s | ratio (wall) |",
              "|---|---|---|---|---|---|---|---|---|"]
        for r in res["timing"]:
            L.append(f"| {r['kind']} | {r['missing']} | {r['rows']:,} | "
                     f"{r['complete_cpu']:.3f} | {r['missing_cpu']:.3f} | "
                     f"{r['missing_cpu'] / r['complete_cpu']:.2f} | {r['complete_wall']:.3f} | "
                     f"{r['missing_wall']:.3f} | {r['missing_wall'] / r['complete_wall']:.2f} |")
        L.append("")
    for key in sorted(k for k in res if k.startswith("iteration") and not k.endswith("_meta")):
        L += _iteration_report(res[key], res.get(key + "_meta", {}))
    return "\n".join(L)


def _iteration_report(rows, meta):
    L = []
    threads = meta.get("threads", "default")
    L += [f"## 5. Seconds per EM iteration (D = 16, K = 16, float64, 20 % missing), "
          f"NUMBA_NUM_THREADS={threads}", "",
          f"Load average {meta.get('load_start', float('nan')):.1f} at the start, "
          f"{meta.get('load_end', float('nan')):.1f} at the end of this part"
          + (f"; kinds {', '.join(meta['kinds'])} only" if meta.get("kinds") else "")
          + (f"; medians of {meta['repeats']} runs" if meta.get("repeats", 1) > 1 else "")
          + ".", "",
          "`GaussianMixture.fit` from a fixed start (lowrank: q = 4, its k-means/PCA "
          "start), median of `iteration_times_` (wall) within a run; CPU: process time of "
          "a fit with 4 iterations minus that of one, over 3. Online: "
          "one pass in batches of 65,536 rows. Ratios against the complete-data run of "
          "the same kind, source and rows.", "",
          "| kind | missing | source | algorithm | rows | s / iteration (wall) | "
          "ratio (wall) | CPU s / iteration | ratio (CPU) |",
          "|---|---|---|---|---|---|---|---|---|"]
    base = {(r["kind"], r["source"], r["algorithm"], r["rows"]): r
            for r in rows if r["missing"] == "complete"}
    for r in rows:
        b = base.get((r["kind"], r["source"], r["algorithm"], r["rows"]))
        rw = f"{r['iter_wall'] / b['iter_wall']:.2f}" if b else "-"
        rc = f"{r['fit_cpu_per_iter'] / b['fit_cpu_per_iter']:.2f}" if b else "-"
        L.append(f"| {r['kind']} | {r['missing']} | {r['source']} | {r['algorithm']} | "
                 f"{r['rows']:,} | {r['iter_wall']:.3f} | {rw} | "
                 f"{r['fit_cpu_per_iter']:.3f} | {rc} |")
    mem = {(r["kind"], r["missing"], r["rows"]): r for r in rows
           if r["source"] == "memory" and r["algorithm"] == "batch"}
    L += ["", "File and Dask paths relative to memory (same kind, missingness, rows):", "",
          "| kind | missing | npy / memory (wall) | dask / memory (wall) | npy / memory (CPU) "
          "| dask / memory (CPU) |", "|---|---|---|---|---|---|"]
    for (kind, miss, n), m in mem.items():
        o = {r["source"]: (r["iter_wall"] / m["iter_wall"],
                           r["fit_cpu_per_iter"] / m["fit_cpu_per_iter"]) for r in rows
             if (r["kind"], r["missing"], r["rows"]) == (kind, miss, n)
             and r["source"] != "memory"}
        if o:
            nan = (float("nan"), float("nan"))
            a, b = o.get("npy", nan), o.get("dask", nan)
            L.append(f"| {kind} | {miss} | {a[0]:.2f} | {b[0]:.2f} | {a[1]:.2f} | {b[1]:.2f} |")
    L.append("")
    return L


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200_000, help="rows of the timing part")
    ap.add_argument("--only", choices=["params", "impute", "regression", "timing",
                                       "iteration"],
                    action="append")
    ap.add_argument("--out", default=os.path.join(RESULTS, "missing"))
    ap.add_argument("--iteration-rows", type=int, default=1_000_000,
                    help="rows of the per-iteration part (5)")
    ap.add_argument("--scratch", default=None, help="folder for the temporary .npy files")
    ap.add_argument("--repeats", type=int, default=1,
                    help="runs per configuration of part 5 (medians)")
    ap.add_argument("--kinds", default=None,
                    help="comma-separated covariance types of part 5 (diag,full,lowrank)")
    args = ap.parse_args()
    parts = args.only or ["params", "impute", "regression", "timing", "iteration"]
    res = {"load_start": _load()}
    if "params" in parts:
        res["params"] = parameter_error()
    if "impute" in parts:
        res["impute"] = imputation()
    if "regression" in parts:
        res["regression"] = regression()
    if "timing" in parts:
        res["timing"] = timing(args.rows)
    if "iteration" in parts:
        threads = os.environ.get("NUMBA_NUM_THREADS", "default")
        load = _load()
        kinds = args.kinds.split(",") if args.kinds else None
        key = f"iteration_t{threads}" + ("_" + "-".join(kinds) if kinds else "")
        res[key] = iteration(args.iteration_rows, scratch=args.scratch, repeats=args.repeats,
                             kinds=kinds)
        res[key + "_meta"] = {"threads": threads, "load_start": load, "load_end": _load(),
                              "repeats": args.repeats, "kinds": kinds}
    res["load_end"] = _load()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    if args.only and os.path.exists(args.out + ".json"):  # keep the parts not re-run
        with open(args.out + ".json") as fh:
            old = json.load(fh)
        old.update({k: v for k, v in res.items() if not k.startswith("load")})
        res = dict(old, load_start=old.get("load_start", res["load_start"]),
                   load_end=old.get("load_end", res["load_end"]))
    with open(args.out + ".json", "w") as fh:
        json.dump(res, fh, indent=1)
    text = report(res)
    with open(args.out + ".md", "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
