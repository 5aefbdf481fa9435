"""BayesianGaussianMixture benchmarks: pruning over seeds vs scikit-learn, and the time of one
variational iteration (E-step + M-step + bound) vs scikit-learn's and vs fastmix's own EM
iteration of the same covariance type.  Writes bench/results/bayesian.md and .json.

    python bench/bayesian.py [--n 1000000] [--d 16] [--k 16] [--repeats 5] [--seeds 10]

Times are process CPU seconds (``time.process_time``), medians of ``--repeats`` runs, so other
load on a shared machine inflates them less than wall time; run with NUMBA_NUM_THREADS and
OMP_NUM_THREADS set to the thread count to compare.
"""
import argparse
import json
import os
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


def pruning(seeds):
    from sklearn.mixture import BayesianGaussianMixture as SK
    rows = []
    for seed in range(seeds):
        X = eight_blobs(seed)
        kw = dict(n_components=30, random_state=seed, weight_concentration_prior=1e-2,
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=10)
    a = ap.parse_args()
    prune = pruning(a.seeds)
    times = iteration_times(a.n, a.d, a.k, a.repeats)
    threads = os.environ.get("NUMBA_NUM_THREADS", "default")
    load = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bayesian.json").write_text(json.dumps(dict(
        args=vars(a), threads=threads, loadavg=load, pruning=prune, iterations=times), indent=1))
    lines = ["# BayesianGaussianMixture", "",
             f"Machine load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
             f"NUMBA_NUM_THREADS={threads}.", "",
             f"## Pruning: 8 separated components, n_components=30, DP prior "
             f"(weight_concentration_prior=0.01), {a.seeds} seeds", "",
             "| seed | fastmix: weights > 1e-2 | scikit-learn | fastmix bound | sklearn bound |",
             "|---|---|---|---|---|"]
    lines += [f"| {s} | {f} | {k} | {lf:.1f} | {lk:.1f} |" for s, f, k, lf, lk in prune]
    lines += ["", f"fastmix found 8 on {sum(r[1] == 8 for r in prune)} of {len(prune)} seeds, "
              f"scikit-learn on {sum(r[2] == 8 for r in prune)}.", "",
              f"## One iteration, N = {a.n}, D = {a.d}, K = {a.k} (CPU s, median of "
              f"{a.repeats})", "",
              "| kind | fastmix VB | fastmix EM | scikit-learn VB | sklearn / fastmix VB | "
              "fastmix VB / EM |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['kind']} | {r['fastmix_vb']:.3f} | {r['fastmix_em']:.3f} | "
              f"{r['sklearn_vb']:.3f} | {r['speedup_vs_sklearn']:.1f} | {r['vb_over_em']:.2f} |"
              for r in times]
    (RESULTS / "bayesian.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
