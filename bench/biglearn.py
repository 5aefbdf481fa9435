#!/usr/bin/env python
"""BigLearn-EM vs Joint-EM (Cong & Li, AAAI 2024; docs/algorithms.md §2).

What is measured
----------------
1. **25-GMM simulation** (docs/algorithms.md §2.3, §2.5).  Truth q: 25 components, means on the
   grid {-4,-2,0,2,4}^2, covariance 0.1 I, uniform weights.  Per seed s in
   [5079, 6395, 3325, 2580, 5755, 2488, 4515, 6607, 2432, 6064]: ``np.random.default_rng(s)``
   draws 2000 training and then 5000 test points (component label uniform, then Gaussian
   noise), and every model uses ``random_state=s`` and the paper's random init
   (pi uniform, mu_k ~ N(0, I), Sigma_k = I).  Metric: test KL(q||p) = mean over the test set of
   log q(x) - log p(x), evaluated every ``--eval-every`` (10) outer iterations through the
   ``fit`` callback.  Both the minimum over the evaluations (the paper's protocol, optimistic)
   and the last iteration's KL are reported, mean +- std (ddof=0) over the seeds.

   * BigLearn-EM: K=25, Niter=2000, NITnei=5, P1/P2 = 0.4/0.5 (joint 0.4, marginal 0.1,
     transformed marginal 0.5), alpha_pi = 1/sqrt(K) = 0.2, eig_floor 1e-5.  The simulation
     notebook always uses a one-coordinate subset; we emulate it with
     ``subset_beta=(1e-6, 1)``: Beta(1e-6, 1) is ~0, so m = max(1, floor(2 b)) = 1 always
     (with the default Beta(5, 1) and D=2, m would be 2 -- a joint step in a rotated
     basis -- whenever b >= 0.5, i.e. 97 % of the time).  Run with ``cov_update="floor"``
     (the reference) and ``"psd"`` (the PSD-preserving block update, docs/algorithms.md §2.4.2).
   * Joint-EM: the same driver with p_joint=1, alpha=0, one EM step per outer iteration,
     500 iterations (the notebook's loop), eig_floor 1e-5.

   Figures (first seed): ``biglearn_25gmm.png`` (training data, true means, fitted means and
   1-sigma ellipses for Joint-EM, BigLearn floor and BigLearn psd) and
   ``biglearn_25gmm_kl.png`` (test KL vs outer iteration, log scale).

2. **Clustering** on scikit-learn's bundled digits, wine, breast_cancer and iris, min-max
   scaled to [0, 1], K = number of classes.  BigLearn-EM with the real-world settings of
   docs/algorithms.md §2.3 (NITnei 5, P1/P2 0.4/0.5, m = floor(D Beta(5, 1)), alpha_pi = 1/K,
   eig_floor 1e-2, random init) and ``--clust-n-outer`` (200) outer iterations; Joint-EM with
   the same number of EM iterations and eig_floor.  NMI and ARI of ``predict(X)`` against the
   labels for the final models of both methods (the same protocol for both; the reference
   instead averages BigLearn's last 10 evaluations), mean +- std over seeds 0..n-1.  Digits
   (D = 64) is slow -- a transformed step costs ~1.5 s there, see 3 -- so it gets
   ``--digits-seeds`` (3) seeds and ``--digits-n-outer`` (100) iterations by default.

3. **Time per iteration**: one BigLearn outer iteration (NITnei = 5 local steps; median per
   step kind, from callback time stamps, so the per-iteration snapshot that the callback
   receives is included) vs one ``fastmix.GaussianMixture(covariance_type="full")`` EM
   iteration (median of ``iteration_times_`` over 30 iterations, tol=0).  25-GMM training data
   (first seed): dedicated short runs (150 iterations), every variant twice, interleaved, the
   lower median kept (the machine is shared).  Digits: the seed-0 clustering runs.  Plus a
   micro-benchmark of the two ways of forming A Sigma_k A^T for all K components
   (``np.einsum`` with three operands, as ``fastmix.biglearn`` does, vs ``A @ S @ A.T``).

4. **Defaults on real data** (``--real``, alone): ``BigLearnGaussianMixture(K)`` with every
   default, ``fastmix.GaussianMixture(K, covariance_type="full")`` with every default, and the
   paper's settings (``init_params="random", cov_update="floor", polish_max_iter=0,
   eig_floor=1e-5``, the previous defaults) on iris, wine, breast_cancer and digits, each
   min-max scaled and standard scaled, seeds 0..``--seeds``-1: mean training log-likelihood
   (``score``) and NMI.  Plus, on wine (standard scaling, 3 seeds), per step kind the change of
   the joint log-likelihood and the fraction of indefinite / singular merged covariances for
   both merges, and each default change alone.  Writes ``bench/results/biglearn-real.md`` /
   ``.json`` (``--real-out`` another name; ``--real-merge`` joins runs, e.g. a digits run with
   fewer seeds, ``--datasets digits --real-methods gm,biglearn``)::

       .venv/bin/python bench/biglearn.py --real --datasets iris,wine,breast_cancer
       .venv/bin/python bench/biglearn.py --real --seeds 3 --datasets digits \
           --real-methods gm,biglearn --real-out biglearn-real-digits
       .venv/bin/python bench/biglearn.py --real-merge bench/results/biglearn-real.json \
           bench/results/biglearn-real-digits.json

Outputs: ``bench/results/biglearn.md`` and ``.json`` plus the two PNGs; ``--quick`` writes
``biglearn_quick.*`` instead (2 seeds, 300 BigLearn and 300 Joint-EM iterations, clustering
with 2 seeds, 50 iterations, digits 1 seed and 10 iterations).

How to run (from the repository root)::

    .venv/bin/python bench/biglearn.py --quick        # ~35 s
    .venv/bin/python bench/biglearn.py                # ~13 min (2-core machine, one core busy)
    .venv/bin/python bench/biglearn.py --report-only  # rebuild .md and PNGs from the JSON
    .venv/bin/python bench/biglearn.py --seeds 3 --skip-clustering

Runs are sequential and single-process; BLAS is single-threaded inside ``fit`` and the numba
kernels run on ``--threads`` (default 1) threads.  On the shared 2-core machine a second
process holding one core makes numba's 2-thread parallel E-step wait for its straggler: one
GaussianMixture iteration on the 25-GMM data took 8.0 ms with 2 threads and 1.4-1.8 ms with 1
thread (same minute, one other busy process); with 1 thread the timings are reproducible.

Results of the full run (2026-11-23, details in ``bench/results/biglearn.md``): test KL,
minimum over iterations / last iteration, mean +- std over the 10 seeds -- Joint-EM
0.262 +- 0.041 / 0.263 +- 0.041 (paper 0.263 +- 0.035), BigLearn-EM floor 0.039 +- 0.016 /
0.050 +- 0.019 (paper 0.030 +- 0.006), BigLearn-EM psd 0.097 +- 0.038 / 0.115 +- 0.051.
BigLearn beats Joint-EM on NMI/ARI for digits, wine and breast_cancer, not on iris.  A
transformed step on digits costs ~1.5 s (three-operand einsum, see the report's notes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections import Counter

import numpy as np
from scipy.special import logsumexp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
RESULTS = os.path.join(HERE, "results")

import fastmix  # noqa: E402

SEEDS = [5079, 6395, 3325, 2580, 5755, 2488, 4515, 6607, 2432, 6064]
GRID = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
TRUE_MEANS = np.array([(a, b) for a in GRID for b in GRID])
TRUE_VAR = 0.1
K_SIM = 25
PAPER = {"joint": {"mean": 0.2633, "std": 0.0347, "min": 0.1954, "median": 0.2646,
                   "max": 0.3012},
         "biglearn": {"mean": 0.0301, "std": 0.0064, "min": 0.0230, "median": 0.0286,
                      "max": 0.0447}}
DATASETS = ["digits", "wine", "breast_cancer", "iris"]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ 25-GMM pieces ------------
def sample_truth(rng, n):
    z = rng.integers(K_SIM, size=n)
    return TRUE_MEANS[z] + np.sqrt(TRUE_VAR) * rng.standard_normal((n, 2))


def log_q(x):
    d2 = ((x[:, None, :] - TRUE_MEANS[None]) ** 2).sum(-1)
    return logsumexp(-0.5 * d2 / TRUE_VAR, axis=1) - np.log(2 * np.pi * TRUE_VAR) - np.log(K_SIM)


def sim_data(seed):
    rng = np.random.default_rng(seed)
    return sample_truth(rng, 2000), sample_truth(rng, 5000)


def joint_em(K, n_iter, eig_floor, seed):
    return fastmix.BigLearnGaussianMixture(
        K, p_joint=1.0, p_marginal=0.0, p_transformed=0.0, weight_smoothing=0.0,
        n_local_steps=1, n_outer=n_iter, eig_floor=eig_floor, init_params="random",
        polish_max_iter=0, random_state=seed)


def biglearn_sim(n_outer, update, seed):
    return fastmix.BigLearnGaussianMixture(
        K_SIM, p_joint=0.4, p_marginal=0.1, p_transformed=0.5, subset_beta=(1e-6, 1.0),
        n_local_steps=5, n_outer=n_outer, eig_floor=1e-5, weight_smoothing=1 / np.sqrt(K_SIM),
        cov_update=update, init_params="random", polish_max_iter=0, random_state=seed)


def fit_tracked(model, X, X_test=None, lq=None, eval_every=10):
    """Fit with a callback recording per-iteration time stamps (kind, seconds) and the test KL
    every ``eval_every`` iterations (and at the last).  Returns (model, record)."""
    rec = {"kl_iter": [], "kl": [], "iter_kind": [], "iter_sec": []}
    last = [None]
    n = model.n_outer

    def cb(it, kind, snap):
        t0 = time.perf_counter()
        rec["iter_kind"].append(kind)
        rec["iter_sec"].append(t0 - last[0])
        if X_test is not None and (it % eval_every == 0 or it == n):
            with np.errstate(all="ignore"):
                kl = float(np.mean(lq - snap.score_samples(X_test)))
            rec["kl_iter"].append(it)
            rec["kl"].append(kl if np.isfinite(kl) else float("nan"))
        last[0] = time.perf_counter()

    t = time.perf_counter()
    last[0] = t
    model.fit(X, callback=cb)
    rec["fit_sec"] = time.perf_counter() - t
    return model, rec


def summarize(values):
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"),
                "median": float("nan"), "max": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "median": float(np.median(v)), "max": float(v.max()), "n": int(len(v))}


def model_params(m):
    return {"weights": m.weights_.tolist(), "means": m.means_.tolist(),
            "covariances": m.covariances_.tolist()}


def run_simulation(seeds, n_outer, joint_iters, eval_every):
    methods = {"joint": lambda s: joint_em(K_SIM, joint_iters, 1e-5, s),
               "biglearn_floor": lambda s: biglearn_sim(n_outer, "floor", s),
               "biglearn_psd": lambda s: biglearn_sim(n_outer, "psd", s)}
    out = {name: [] for name in methods}
    for seed in seeds:
        X, Xt = sim_data(seed)
        lq = log_q(Xt)
        for name, make in methods.items():
            model, rec = fit_tracked(make(seed), X, Xt, lq, eval_every)
            kl = np.asarray(rec["kl"])
            i_min = int(np.nanargmin(kl))
            row = {"seed": seed, "kl_min": float(kl[i_min]), "kl_min_iter": rec["kl_iter"][i_min],
                   "kl_last": float(kl[-1]), "kl_last10_mean": float(np.nanmean(kl[-10:])),
                   "fit_sec": rec["fit_sec"],
                   "kinds": dict(Counter(model.step_kinds_)),
                   "kl_iter": rec["kl_iter"], "kl": rec["kl"],
                   "n_effective_components": int(np.sum(model.weights_ > 1e-3))}
            if seed == seeds[0]:
                row["params"] = model_params(model)
                row["iter_sec"] = rec["iter_sec"]
                row["iter_kind"] = rec["iter_kind"]
            out[name].append(row)
            log(f"25-GMM seed {seed} {name}: KL min {row['kl_min']:.4f} (it "
                f"{row['kl_min_iter']}) last {row['kl_last']:.4f}  {rec['fit_sec']:.1f}s")
    summary = {name: {"kl_min": summarize([r["kl_min"] for r in rows]),
                      "kl_last": summarize([r["kl_last"] for r in rows]),
                      "kl_last10_mean": summarize([r["kl_last10_mean"] for r in rows]),
                      "fit_sec": summarize([r["fit_sec"] for r in rows])}
               for name, rows in out.items()}
    return {"runs": out, "summary": summary}


# ------------------------------------------------------------------ clustering ---------------
def load_dataset(name):
    from sklearn import datasets
    from sklearn.preprocessing import minmax_scale
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return np.ascontiguousarray(minmax_scale(X.astype(np.float64))), y


def run_clustering(n_outer, n_seeds, digits_seeds, digits_n_outer):
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    out = {}
    for name in DATASETS:
        X, y = load_dataset(name)
        K = len(np.unique(y))
        seeds = list(range(digits_seeds if name == "digits" else n_seeds))
        n_it = digits_n_outer if name == "digits" else n_outer
        rows = {"joint": [], "biglearn": []}
        for seed in seeds:
            for method in rows:
                if method == "joint":
                    model = joint_em(K, n_it, 1e-2, seed)
                else:
                    model = fastmix.BigLearnGaussianMixture(
                        K, n_local_steps=5, n_outer=n_it, eig_floor=1e-2,
                        init_params="random", cov_update="floor", polish_max_iter=0,
                        random_state=seed)
                model, rec = fit_tracked(model, X)
                p = model.predict(X)
                r = {"seed": seed, "nmi": float(normalized_mutual_info_score(y, p)),
                     "ari": float(adjusted_rand_score(y, p)), "fit_sec": rec["fit_sec"],
                     "n_clusters_used": int(len(np.unique(p))),
                     "train_mean_ll": float(model.score(X))}
                if seed == 0:
                    r["iter_sec"] = rec["iter_sec"]
                    r["iter_kind"] = rec["iter_kind"]
                rows[method].append(r)
                log(f"{name} seed {seed} {method}: NMI {r['nmi']:.3f} ARI {r['ari']:.3f} "
                    f"({r['n_clusters_used']}/{K} used) {rec['fit_sec']:.1f}s")
        out[name] = {"N": int(X.shape[0]), "D": int(X.shape[1]), "K": K, "seeds": seeds,
                     "n_outer": n_it,
                     "runs": rows,
                     "summary": {m: {k: summarize([r[k] for r in rs])
                                     for k in ("nmi", "ari", "fit_sec", "train_mean_ll")}
                                 for m, rs in rows.items()}}
    return out


# ------------------------------------------------------------------ real data, defaults ------
REAL_METHODS = ("gm", "biglearn", "paper")
REAL_LABELS = {"gm": "GaussianMixture (defaults, full)",
               "biglearn": "BigLearn (defaults)",
               "paper": "BigLearn (paper's: random init, floor, no polish)"}


def real_dataset(name, scaling):
    from sklearn import datasets
    from sklearn.preprocessing import minmax_scale, scale
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    X = X.astype(np.float64)
    X = minmax_scale(X) if scaling == "minmax" else scale(X)
    return np.ascontiguousarray(X), y


def real_model(method, K, seed):
    if method == "gm":
        return fastmix.GaussianMixture(K, covariance_type="full", random_state=seed)
    if method == "biglearn":
        return fastmix.BigLearnGaussianMixture(K, random_state=seed)
    return fastmix.BigLearnGaussianMixture(K, init_params="random", cov_update="floor",
                                           polish_max_iter=0, eig_floor=1e-5,
                                           random_state=seed)


def step_diagnostics(X, K, seeds, n_outer=60):
    """Why the reference's defaults lose: per step kind, the mean change of the joint mean
    log-likelihood over one outer iteration, and the fraction of merged covariances (before the
    eigenvalue floor) that are indefinite, for cov_update floor and psd (k-means start, no
    polish).  The floor function is wrapped to see its input."""
    from fastmix import biglearn
    orig = biglearn.eig_floor
    seen = []

    def spy(S, eps):
        lam = np.linalg.eigvalsh(S)
        seen.append(lam[:, 0] / np.maximum(lam[:, -1], 1e-300))
        return orig(S, eps)

    out = {}
    biglearn.eig_floor = spy
    try:
        for update in ("floor", "psd"):
            acc = {}
            for seed in seeds:
                prev = [None]

                def cb(it, kind, snap):
                    sc = float(snap.score(X))
                    a = acc.setdefault(kind, {"dll": [], "indef": [], "sing": [], "n": 0})
                    if prev[0] is not None:
                        a["dll"].append(sc - prev[0])
                    prev[0] = sc
                    mins = np.concatenate(seen)
                    seen.clear()
                    a["indef"].append(float(np.mean(mins < -1e-12)))
                    a["sing"].append(float(np.mean(np.abs(mins) <= 1e-12)))
                    a["n"] += 1

                fastmix.BigLearnGaussianMixture(K, n_outer=n_outer, cov_update=update,
                                                polish_max_iter=0,
                                                random_state=seed).fit(X, callback=cb)
            out[update] = {k: {"mean_dll": float(np.mean(a["dll"])),
                               "frac_dll_negative": float(np.mean(np.asarray(a["dll"]) < 0)),
                               "frac_indefinite": float(np.mean(a["indef"])),
                               "frac_singular": float(np.mean(a["sing"])), "n": a["n"]}
                           for k, a in acc.items()}
    finally:
        biglearn.eig_floor = orig
    return out


ABLATION = {
    "paper's (random, floor, eig_floor 1e-5, no polish)":
        dict(init_params="random", cov_update="floor", eig_floor=1e-5, polish_max_iter=0),
    "+ k-means start": dict(cov_update="floor", eig_floor=1e-5, polish_max_iter=0),
    "+ psd merge": dict(init_params="random", eig_floor=1e-5, polish_max_iter=0),
    "+ joint polish": dict(init_params="random", cov_update="floor", eig_floor=1e-5),
    "k-means + psd (no polish)": dict(polish_max_iter=0),
    "defaults (k-means, psd, polish, eig_floor 1e-6)": {},
    "defaults, weight_smoothing=0": dict(weight_smoothing=0.0),
}


def ablation(X, y, K, seeds):
    from sklearn.metrics import normalized_mutual_info_score
    out = {}
    for name, kw in ABLATION.items():
        ms = [fastmix.BigLearnGaussianMixture(K, random_state=s, **kw).fit(X) for s in seeds]
        out[name] = {"ll": float(np.mean([m.score(X) for m in ms])),
                     "nmi": float(np.mean([normalized_mutual_info_score(y, m.predict(X))
                                           for m in ms]))}
        log(f"ablation {name}: {out[name]}")
    return out


def run_real(n_seeds, datasets=DATASETS, scalings=("minmax", "standard"), methods=REAL_METHODS,
             diagnostics=True):
    from sklearn.metrics import normalized_mutual_info_score
    out = {"tables": {}, "seeds": list(range(n_seeds))}
    for name in datasets:
        for scaling in scalings:
            X, y = real_dataset(name, scaling)
            K = len(np.unique(y))
            rows = {m: [] for m in methods}
            for seed in range(n_seeds):
                for m in methods:
                    t = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        model = real_model(m, K, seed).fit(X)
                    sec = time.perf_counter() - t
                    p = model.predict(X)
                    rows[m].append({"seed": seed, "ll": float(model.score(X)),
                                    "nmi": float(normalized_mutual_info_score(y, p)),
                                    "used": int(len(np.unique(p))), "sec": sec})
                log(f"real {name}/{scaling} seed {seed}: " + "  ".join(
                    f"{m} ll {rows[m][-1]['ll']:.3f} nmi {rows[m][-1]['nmi']:.3f}"
                    for m in methods))
            out["tables"][f"{name}/{scaling}"] = {
                "N": int(X.shape[0]), "D": int(X.shape[1]), "K": K, "runs": rows,
                "summary": {m: {k: summarize([r[k] for r in rs]) for k in ("ll", "nmi", "sec")}
                            for m, rs in rows.items()}}
    if not diagnostics:
        return out
    X, y = real_dataset("wine", "standard")
    out["diagnostics"] = {"data": "wine/standard", "seeds": [0, 1, 2],
                          "steps": step_diagnostics(X, 3, [0, 1, 2]),
                          "ablation": ablation(X, y, 3, [0, 1, 2])}
    return out


def write_real_report(res, path):
    r = res["real"]
    L = ["# BigLearnGaussianMixture defaults on scikit-learn's bundled data", "",
         f"Generated by `bench/biglearn.py --real` on {res['env']['date']} "
         f"({res['env']['machine']}, numba threads {res['env']['numba_threads']}); "
         f"total {res['total_sec'] / 60:.1f} min; load average at start "
         f"{res['env']['load_start']} on {res['env']['cpus']} CPUs (a shared machine: fit "
         "times are indicative only).", "",
         "Seeds 0..n-1 (`random_state`, n in the table); K = number of classes; "
         "`minmax` = scaled to [0, 1] per feature, `standard` = zero mean, unit variance "
         "(constant columns stay 0). ll = mean log-likelihood per row of the training data "
         "(`score`), NMI of `predict` against the labels; mean ± std (ddof=0) over seeds.", "",
         "Methods: " + "; ".join(f"**{v}**" for v in REAL_LABELS.values()) + ".", "",
         "| data | N × D, K | " + " | ".join(f"{REAL_LABELS[m]} ll" for m in REAL_METHODS)
         + " | " + " | ".join(f"{REAL_LABELS[m]} NMI" for m in REAL_METHODS)
         + " | BigLearn ≥ GM (ll, NMI) | seeds | fit s (GM / BigLearn / paper) |",
         "|---|---|" + "---|" * (2 * len(REAL_METHODS) + 3)]
    for key, t in r["tables"].items():
        s = t["summary"]
        ll = [f"{s[m]['ll']['mean']:.3f} ± {s[m]['ll']['std']:.3f}" if m in s else "–"
              for m in REAL_METHODS]
        nm = [f"{s[m]['nmi']['mean']:.3f} ± {s[m]['nmi']['std']:.3f}" if m in s else "–"
              for m in REAL_METHODS]
        ok = "–"
        if "biglearn" in s and "gm" in s:
            ok = ", ".join("yes" if s["biglearn"][k]["mean"] >= s["gm"][k]["mean"] else "NO"
                           for k in ("ll", "nmi"))
        sec = " / ".join(f"{s[m]['sec']['mean']:.2f}" if m in s else "–" for m in REAL_METHODS)
        L.append(f"| {key} | {t['N']} × {t['D']}, {t['K']} | " + " | ".join(ll) + " | "
                 + " | ".join(nm) + f" | {ok} | {max(v['ll']['n'] for v in s.values())} | {sec} |")
    d = r.get("diagnostics")
    if d is not None:
        L += ["", f"## Why the reference's defaults lose ({d['data']}, seeds {d['seeds']}, "
              "k-means start, 60 outer iterations, no polish)", "",
              "Per step kind: mean change of the *joint* mean log-likelihood over one outer "
              "iteration (5 local steps), the fraction of iterations in which it fell, and the "
              "fractions of merged covariance matrices that were, before the eigenvalue floor, "
              "indefinite (smallest eigenvalue < -1e-12 × largest) or singular (|smallest| ≤ "
              "1e-12 × largest: a component with the responsibility of fewer than D rows -- seed 0 "
              "keeps one with 4 rows whose weight the 1/K smoothing holds at 0.18).",
              "", "| cov_update | step kind | iterations | mean Δ joint ll | fraction Δ < 0 | "
              "indefinite | singular |", "|---|---|---|---|---|---|---|"]
        for upd, kinds in d["steps"].items():
            for kind, v in sorted(kinds.items()):
                L.append(f"| {upd} | {kind} | {v['n']} | {v['mean_dll']:+.3f} | "
                         f"{v['frac_dll_negative']:.2f} | {v['frac_indefinite']:.2f} | "
                         f"{v.get('frac_singular', float('nan')):.2f} |")
        L += ["", "Each default change alone (same data and seeds, 200 outer iterations): mean "
              "log-likelihood / NMI.", "", "| configuration | ll | NMI |", "|---|---|---|"]
        for name, v in d.get("ablation", {}).items():
            L.append(f"| {name} | {v['ll']:.3f} | {v['nmi']:.3f} |")
    L += ["", *REAL_NOTES]
    with open(path, "w") as fh:
        fh.write("\n".join(L) + "\n")


REAL_NOTES = [
    "Notes:", "",
    "* The defaults are `init_params=\"kmeans\"` (GaussianMixture's start), "
    "`cov_update=\"psd\"` and `polish_max_iter=100` joint EM steps (tol 1e-4) after the 200 "
    "outer iterations, eig_floor 1e-6 (GaussianMixture's reg_covar); the step probabilities, "
    "subsets, local steps and weight smoothing 1/K are the reference's.  The paper's column is "
    "`init_params=\"random\", cov_update=\"floor\", polish_max_iter=0, eig_floor=1e-5` "
    "(the previous defaults).",
    "* A marginal or transformed step maximises the likelihood of a marginal, not of the "
    "joint, so it lowers the joint likelihood on average even when the merge is positive "
    "definite; the final joint EM steps return to a joint optimum (the start of that climb is "
    "the partial steps' model, so it can be another optimum than EM's from the same start).",
    "* The log-likelihood target (at least plain EM's, mean over seeds) is met on all eight "
    "tables; NMI is not on breast_cancer and digits: there the defaults find optima of clearly "
    "higher likelihood (breast_cancer standard 0.635 vs 0.162 per row; GaussianMixture's best "
    "of 10 k-means starts, `n_init=10`, seeds 0-2, stays at 0.169 / NMI 0.661) which split the "
    "classes less well.  On digits EM's own best of 10 starts raises the likelihood too, with "
    "NMI going down on min-max (ll 121.1 -> 123.1, NMI 0.763 -> 0.735) and up on standard "
    "(58.6 -> 61.9, NMI 0.623 -> 0.640): likelihood and agreement with the labels diverge.  "
    "Those `n_init=10` figures come from a one-off run (3 seeds), not from this script.",
    "* The 25-GMM simulation (section 1 of `biglearn.md`) runs with the paper's settings given "
    "explicitly, so the new defaults leave it unchanged: seed 5079 reproduces KL 0.0335 (min, "
    "iteration 1540) / 0.0347 (last) exactly.  On that seed (one-off run, test KL): the "
    "defaults 0.0425, the paper's settings plus the joint polish 0.0427, GaussianMixture's "
    "defaults (k-means start) 0.0417 -- the paper's Joint-EM baseline starts from N(0, I) "
    "means (0.233 on this seed).",
    "* Digits: 3 seeds and no paper column (a BigLearn fit takes 45-95 s here; the paper's "
    "settings were measured on digits in `biglearn.md`, section 2, with eig_floor 1e-2).",
]


# ------------------------------------------------------------------ timing -------------------
def gm_iteration_seconds(X, K, seed, n_iter=30):
    gm = fastmix.GaussianMixture(K, covariance_type="full", max_iter=n_iter, tol=0.0,
                                 init_params="random_from_data", random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
        gm.fit(X)  # second fit: warm numba, take its times
    t = np.asarray(gm.iteration_times_)
    return float(np.median(t)), int(len(t))


def per_kind_medians(iter_sec, iter_kind, skip=3):
    """Median seconds per outer iteration per kind; the first ``skip`` iterations (JIT)
    are left out."""
    sec = np.asarray(iter_sec[skip:])
    kinds = np.asarray(iter_kind[skip:])
    res = {"all": float(np.median(sec)), "mean_all": float(np.mean(sec)), "n": int(len(sec))}
    for k in ("joint", "marginal", "transformed"):
        if np.any(kinds == k):
            res[k] = float(np.median(sec[kinds == k]))
            res[f"n_{k}"] = int(np.sum(kinds == k))
    return res


def einsum_microbench(K, D, reps):
    rng = np.random.default_rng(0)
    A = np.linalg.qr(rng.standard_normal((D, D)))[0]
    B = rng.standard_normal((K, D, D))
    S = B @ np.swapaxes(B, 1, 2)
    ref = np.einsum("ij,kjl,ml->kim", A, S, A)
    alt = A @ S @ A.T
    assert np.allclose(ref, alt)

    def best(f):
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        return float(np.median(ts))
    return {"K": K, "D": D,
            "einsum_3op_sec": best(lambda: np.einsum("ij,kjl,ml->kim", A, S, A)),
            "matmul_sec": best(lambda: A @ S @ A.T)}


def run_timing(clust, quick, reps=2):
    """Dedicated short runs on the 25-GMM data (first seed), each variant ``reps`` times,
    interleaved; per entry the lowest of the medians (the machine is shared).  Digits: the
    BigLearn and Joint-EM times come from the clustering runs of seed 0."""
    out = {}
    X, _ = sim_data(SEEDS[0])
    n_bl, n_j = (60, 60) if quick else (150, 150)
    acc = {"gm": [], "joint_em": [], "biglearn_floor": [], "biglearn_psd": []}
    for _ in range(reps):
        acc["gm"].append(gm_iteration_seconds(X, K_SIM, 0)[0])
        for key, make in (("joint_em", lambda: joint_em(K_SIM, n_j, 1e-5, SEEDS[0])),
                          ("biglearn_floor", lambda: biglearn_sim(n_bl, "floor", SEEDS[0])),
                          ("biglearn_psd", lambda: biglearn_sim(n_bl, "psd", SEEDS[0]))):
            _, rec = fit_tracked(make(), X)
            acc[key].append(per_kind_medians(rec["iter_sec"], rec["iter_kind"]))

    def lowest(recs):
        return {k: (min(r[k] for r in recs) if not k.startswith("n") else recs[0][k])
                for k in recs[0] if all(k in r for r in recs)}
    out["25gmm"] = {"N": 2000, "D": 2, "K": K_SIM, "gm_full_iter_sec": min(acc["gm"]),
                    "reps": reps, "n_outer": n_bl,
                    **{k: lowest(v) for k, v in acc.items() if k != "gm"}}
    log(f"timing 25-GMM: GaussianMixture full iteration {min(acc['gm']) * 1e3:.2f} ms, "
        f"BigLearn floor outer iteration {out['25gmm']['biglearn_floor']['all'] * 1e3:.2f} ms")
    if clust is not None and "digits" in clust:
        Xd, yd = load_dataset("digits")
        gm_sec = min(gm_iteration_seconds(Xd, 10, 0)[0] for _ in range(reps))
        r = clust["digits"]["runs"]
        out["digits"] = {"N": int(Xd.shape[0]), "D": int(Xd.shape[1]), "K": 10,
                         "gm_full_iter_sec": gm_sec,
                         "biglearn_floor": per_kind_medians(r["biglearn"][0]["iter_sec"],
                                                            r["biglearn"][0]["iter_kind"]),
                         "joint_em": per_kind_medians(r["joint"][0]["iter_sec"],
                                                      r["joint"][0]["iter_kind"])}
        log(f"timing digits: GaussianMixture full iteration {gm_sec * 1e3:.2f} ms")
    out["einsum"] = [einsum_microbench(10, 64, 3 if quick else 5),
                     einsum_microbench(25, 2, 50)]
    out["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    return out


# ------------------------------------------------------------------ plots --------------------
def ellipse_xy(mean, cov, n=60):
    lam, V = np.linalg.eigh(cov)
    t = np.linspace(0, 2 * np.pi, n)
    circ = np.stack([np.cos(t), np.sin(t)])
    return (V @ (np.sqrt(np.maximum(lam, 0))[:, None] * circ)).T + mean


def plot_simulation(sim, prefix):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    seed = sim["runs"]["joint"][0]["seed"]
    X, _ = sim_data(seed)
    names = [("joint", "Joint-EM"), ("biglearn_floor", "BigLearn-EM (floor)"),
             ("biglearn_psd", "BigLearn-EM (psd)")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2), sharex=True, sharey=True)
    for ax, (key, title) in zip(axes, names):
        row = sim["runs"][key][0]
        p = row["params"]
        ax.scatter(X[:, 0], X[:, 1], s=3, c="0.75", lw=0)
        ax.scatter(TRUE_MEANS[:, 0], TRUE_MEANS[:, 1], marker="+", s=60, c="k", lw=1,
                   label="true means")
        w = np.asarray(p["weights"])
        for m, c, wk in zip(np.asarray(p["means"]), np.asarray(p["covariances"]), w):
            xy = ellipse_xy(m, c)
            col = "tab:red" if wk > 1e-3 else "tab:gray"
            ax.plot(xy[:, 0], xy[:, 1], c=col, lw=1)
        ax.scatter(np.asarray(p["means"])[:, 0], np.asarray(p["means"])[:, 1], s=18,
                   c="tab:red", zorder=3, label="fitted means (1-sigma ellipses)")
        ax.set_title(f"{title}\nseed {seed}: last KL {row['kl_last']:.3f}, "
                     f"min KL {row['kl_min']:.3f}")
        ax.set_aspect("equal")
        ax.set_xlim(-6, 6)
        ax.set_ylim(-6, 6)
    axes[0].legend(loc="upper left", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(f"{prefix}_25gmm.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.8))
    for (key, title), col in zip(names, ["tab:blue", "tab:red", "tab:green"]):
        row = sim["runs"][key][0]
        ax.plot(row["kl_iter"], row["kl"], c=col, lw=1, label=title)
    ax.axhline(PAPER["biglearn"]["mean"], c="tab:red", ls=":", lw=1,
               label="paper BigLearn mean (min-KL)")
    ax.axhline(PAPER["joint"]["mean"], c="tab:blue", ls=":", lw=1,
               label="paper Joint-EM mean (min-KL)")
    ax.set_yscale("log")
    ax.set_xlabel("outer iteration")
    ax.set_ylabel("test KL(q || p)")
    ax.set_title(f"25-GMM, seed {seed}: test KL every "
                 f"{row['kl_iter'][1] - row['kl_iter'][0] if len(row['kl_iter']) > 1 else 1} "
                 f"iterations")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(f"{prefix}_25gmm_kl.png", dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ report -------------------
def fmt(s, p=3):
    return f"{s['mean']:.{p}f} ± {s['std']:.{p}f}"


def write_report(res, path):
    L = []
    a = res["args"]
    L.append("# BigLearn-EM vs Joint-EM (docs/algorithms.md §2)\n")
    L.append(f"Generated by `bench/biglearn.py{' --quick' if a['quick'] else ''}` on "
             f"{res['env']['date']} ({res['env']['machine']}, numpy {res['env']['numpy']}, "
             f"fastmix {res['env']['fastmix']}, numba threads {res['env']['numba_threads']}); "
             f"total {res['total_sec'] / 60:.1f} min, "
             f"load average at start/end {res['env']['load_start']} / "
             f"{res['env']['load_end']} on {res['env']['cpus']} CPUs.\n")
    sim = res.get("simulation")
    if sim:
        L.append("## 1. 25-GMM simulation: test KL(q‖p)\n")
        L.append(f"Seeds: {[r['seed'] for r in sim['runs']['joint']]}; 2000 train / 5000 test "
                 f"points per seed; KL evaluated every {a['eval_every']} outer iterations. "
                 f"BigLearn-EM: {a['n_outer']} outer iterations × 5 local steps, P1/P2 0.4/0.5, "
                 f"one-coordinate subsets (`subset_beta=(1e-6, 1)`), α_π = 0.2, eig_floor 1e-5, "
                 f"random init. Joint-EM: {a['joint_iters']} EM iterations, same init and seed. "
                 f"std is over seeds with ddof=0.\n")
        L.append("| method | KL min over iterations (paper's protocol) | median [min, max] | "
                 "KL at last iteration | median [min, max] | mean of last 10 evaluations | "
                 "fit time (s) |")
        L.append("|---|---|---|---|---|---|---|")
        labels = {"joint": "Joint-EM", "biglearn_floor": "BigLearn-EM, cov_update=floor",
                  "biglearn_psd": "BigLearn-EM, cov_update=psd"}
        for key, lab in labels.items():
            s = sim["summary"][key]
            L.append(f"| {lab} | {fmt(s['kl_min'], 4)} | {s['kl_min']['median']:.4f} "
                     f"[{s['kl_min']['min']:.4f}, {s['kl_min']['max']:.4f}] | "
                     f"{fmt(s['kl_last'], 4)} | {s['kl_last']['median']:.4f} "
                     f"[{s['kl_last']['min']:.4f}, {s['kl_last']['max']:.4f}] | "
                     f"{fmt(s['kl_last10_mean'], 4)} | {s['fit_sec']['median']:.1f} |")
        for key, lab in (("joint", "paper Joint-EM"), ("biglearn", "paper BigLearn-EM")):
            p = PAPER[key]
            L.append(f"| {lab} | {p['mean']:.4f} ± {p['std']:.4f} | {p['median']:.4f} "
                     f"[{p['min']:.4f}, {p['max']:.4f}] | – | – | – | – |")
        L.append("")
        t = res["targets"]
        L.append(f"Targets: BigLearn-EM (floor) mean min-KL < 0.05: "
                 f"**{'met' if t['biglearn_floor_lt_0.05'] else 'NOT met'}** "
                 f"({sim['summary']['biglearn_floor']['kl_min']['mean']:.4f}; last-iteration "
                 f"mean {sim['summary']['biglearn_floor']['kl_last']['mean']:.4f}); psd variant "
                 f"{sim['summary']['biglearn_psd']['kl_min']['mean']:.4f}. "
                 f"Joint-EM mean min-KL > 0.15: "
                 f"**{'met' if t['joint_gt_0.15'] else 'NOT met'}** "
                 f"({sim['summary']['joint']['kl_min']['mean']:.4f}).\n")
        L.append("Per seed (KL min @ iteration / last):\n")
        L.append("| seed | Joint-EM | BigLearn floor | BigLearn psd |")
        L.append("|---|---|---|---|")
        for i, r in enumerate(sim["runs"]["joint"]):
            cells = []
            for key in labels:
                q = sim["runs"][key][i]
                cells.append(f"{q['kl_min']:.4f} @ {q['kl_min_iter']} / {q['kl_last']:.4f}")
            L.append(f"| {r['seed']} | " + " | ".join(cells) + " |")
        L.append("")
        k = sim["runs"]["biglearn_floor"][0]["kinds"]
        L.append(f"Step kinds drawn (BigLearn floor, seed {sim['runs']['joint'][0]['seed']}): "
                 f"{k}.\n")
        L.append(f"Figures: `{os.path.basename(res['prefix'])}_25gmm.png` (fitted means and "
                 f"1-sigma ellipses, first seed), `{os.path.basename(res['prefix'])}_25gmm_kl.png`"
                 f" (KL vs iteration, first seed).\n")
    cl = res.get("clustering")
    if cl:
        L.append("## 2. Clustering (NMI / ARI of the final model, labels vs `predict(X)`)\n")
        L.append(f"Min-max scaled to [0, 1], K = number of classes, random init, eig_floor 1e-2. "
                 f"BigLearn-EM: {a['clust_n_outer']} outer iterations (digits: see below) × 5 "
                 f"local "
                 f"steps, P1/P2 "
                 f"0.4/0.5, m = ⌊D·Beta(5,1)⌋ (≥ 1), α_π = 1/K. Joint-EM: the same "
                 f"number of EM iterations. mean ± std (ddof=0) over seeds 0..n-1. Digits gets "
                 f"{a['digits_n_outer']} iterations and {a['digits_seeds']} seeds because a "
                 f"transformed BigLearn step costs about a second there (section 3).\n")
        L.append("| dataset | N × D, K | seeds | iterations | Joint-EM NMI | BigLearn NMI | "
                 "Joint-EM ARI | "
                 "BigLearn ARI | fit s (joint / BigLearn) |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for name, d in cl.items():
            sj, sb = d["summary"]["joint"], d["summary"]["biglearn"]
            L.append(f"| {name} | {d['N']} × {d['D']}, {d['K']} | {len(d['seeds'])} | "
                     f"{d['n_outer']} | "
                     f"{fmt(sj['nmi'])} | {fmt(sb['nmi'])} | {fmt(sj['ari'])} | "
                     f"{fmt(sb['ari'])} | {sj['fit_sec']['median']:.1f} / "
                     f"{sb['fit_sec']['median']:.1f} |")
        L.append("")
    tm = res.get("timing")
    if tm:
        L.append("## 3. Time per iteration (ms; medians except the mean column)\n")
        L.append("BigLearn outer iteration = 5 local EM steps (joint, marginal or transformed "
                 "marginal) incl. the per-iteration snapshot handed to the callback; the first 3 "
                 "iterations (JIT) are dropped. Joint-EM = the BigLearn driver with one joint "
                 "step per iteration. GaussianMixture = one full-covariance EM iteration "
                 "(`iteration_times_`, 30 iterations, second fit). 25-GMM: dedicated runs of "
                 f"{tm['25gmm']['n_outer']} iterations, each variant {tm['25gmm']['reps']}× "
                 "interleaved, lowest median kept. Digits: the seed-0 clustering runs (one "
                 f"run each, so more exposed to other load). Load average after the timing: "
                 f"{tm['load_avg']}.\n")
        L.append("| data | GaussianMixture EM iter | Joint-EM (driver) iter | BigLearn outer "
                 "iter, median all kinds | mean all kinds | joint | marginal | transformed | "
                 "BigLearn mean / GM |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for name in ("25gmm", "digits"):
            if name not in tm:
                continue
            d = tm[name]
            for var in ("biglearn_floor", "biglearn_psd"):
                if var not in d:
                    continue
                b = d[var]
                ms = lambda k: f"{b[k] * 1e3:.2f}" if k in b else "–"  # noqa: E731
                L.append(f"| {name} (N={d['N']}, D={d['D']}, K={d['K']}) {var.split('_')[1]} | "
                         f"{d['gm_full_iter_sec'] * 1e3:.2f} | "
                         f"{d['joint_em']['all'] * 1e3:.2f} | {ms('all')} | {ms('mean_all')} | "
                         f"{ms('joint')} | {ms('marginal')} | {ms('transformed')} | "
                         f"{b['mean_all'] / d['gm_full_iter_sec']:.0f}× |")
        L.append("")
        L.append("Forming A Σ_k Aᵀ for all K components (median time per call):\n")
        L.append("| K, D | `np.einsum('ij,kjl,ml->kim', A, S, A)` (as in fastmix.biglearn) | "
                 "`A @ S @ A.T` | ratio |")
        L.append("|---|---|---|---|")
        for e in tm["einsum"]:
            L.append(f"| {e['K']}, {e['D']} | {e['einsum_3op_sec'] * 1e3:.3f} ms | "
                     f"{e['matmul_sec'] * 1e3:.3f} ms | "
                     f"{e['einsum_3op_sec'] / e['matmul_sec']:.0f}× |")
        L.append("")
    if res.get("notes"):
        L.append("## Notes\n")
        for n in res["notes"]:
            L.append(f"* {n}")
        L.append("")
    with open(path, "w") as fh:
        fh.write("\n".join(L))


NOTES = [
    "Subsets in the simulation: the notebook always uses one coordinate; this run emulates it "
    "with `subset_beta=(1e-6, 1)` (m = max(1, ⌊2·b⌋) = 1 because b ≈ 0). Marginal steps pick "
    "x1 or x2 uniformly (0.05 each); transformed steps pick y1 or y2 of a Haar-random orthogonal "
    "A (0.25 each; Haar over O(2), so reflections are included -- a marginal of one rotated "
    "coordinate is the same for A and its reflected versions up to the sign of y).",
    "The data sampler draws each point's component uniformly, so component counts vary around "
    "80 per component; the notebook's sampler (and hence its data) is not reproduced exactly, "
    "only the distribution and the seeds.",
    "The min-over-iterations protocol is optimistic (docs/algorithms.md §2.4.5): BigLearn's "
    "test KL "
    "fluctuates from iteration to iteration (each marginal/transformed step moves the model "
    "away from the joint optimum), and the minimum picks the best of "
    "n_outer/eval_every evaluations using the test set. The last-iteration column is the "
    "honest number. The paper evaluates more often than every 10 iterations (probably every "
    "iteration), which would lower the BigLearn minimum a little further.",
    "Clustering uses the final model for both methods; the reference scores BigLearn by the "
    "mean of its last 10 evaluations and Joint-EM by its last.",
    "Cost of a transformed step (implementation issue, not fixed here): `fastmix.biglearn."
    "local_step` forms A Σ_k Aᵀ and Aᵀ Σ̄_k A with three-operand `np.einsum` calls without "
    "`optimize=True`, which NumPy evaluates as one nested loop, O(K·D⁴) instead of O(K·D³) "
    "BLAS. At K=10, D=64 one call takes ~175 ms vs ~0.3 ms for `A @ S @ A.T`; two calls per "
    "local step make a transformed outer iteration on digits ~1.6 s, ~97 % of it in einsum "
    "(cProfile: 16.0 of 18.0 s in `c_einsum` over 20 outer iterations). At the paper's "
    "Fashion-MNIST size (K=10, D=784) the same call would need ~10¹³ multiply-adds.",
    "cov_update='psd' (the PSD-preserving block update of docs/algorithms.md §2.4.2, not in the "
    "reference) is worse than the reference 'floor' here: it matches 'floor' on 3 seeds "
    "(6395, 2580, 2432) and on the other 7 stays in a configuration where a few components "
    "each span two neighbouring grid clusters (right panel of the 25-GMM figure) -- keeping "
    "the regression of the other coordinate on the updated one fixed carries an elongated "
    "component's shape through a one-coordinate marginal step, while overwrite-then-floor "
    "breaks it. Same step sequence for both (the random draws do not depend on the update).",
    "Timings use one numba thread (`--threads 1`): on this shared 2-core machine the 2-thread "
    "parallel E-step waits for a descheduled thread whenever another process holds a core "
    "(1.3-1.8 ms vs 8 ms per GaussianMixture iteration on the 25-GMM data).",
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="2 seeds, 300 iterations; clustering 2 seeds x 50 iterations, "
                         "1 digits seed; writes biglearn_quick.*")
    ap.add_argument("--seeds", type=int, default=None,
                    help="number of simulation seeds (from the paper's list; default 10) and "
                         "of clustering seeds")
    ap.add_argument("--n-outer", type=int, default=None, help="BigLearn iterations (2000)")
    ap.add_argument("--joint-iters", type=int, default=None, help="Joint-EM iterations (500)")
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--clust-n-outer", type=int, default=None,
                    help="clustering iterations for both methods (200)")
    ap.add_argument("--digits-seeds", type=int, default=None, help="digits seeds (3)")
    ap.add_argument("--digits-n-outer", type=int, default=None,
                    help="digits iterations for both methods (100)")
    ap.add_argument("--skip-simulation", action="store_true")
    ap.add_argument("--skip-clustering", action="store_true")
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild the Markdown report (and figures) from the JSON of an earlier "
                         "run with the same --quick setting; runs nothing")
    ap.add_argument("--real", action="store_true",
                    help="only the defaults on scikit-learn's bundled data (both scalings, "
                         "--seeds seeds, default 10) against GaussianMixture; writes "
                         "biglearn-real.md / .json")
    ap.add_argument("--datasets", default=",".join(DATASETS),
                    help="comma-separated data sets for --real")
    ap.add_argument("--real-methods", default=",".join(REAL_METHODS),
                    help="comma-separated methods for --real (gm, biglearn, paper)")
    ap.add_argument("--real-out", default="biglearn-real",
                    help="--real's output name in bench/results (without .md / .json)")
    ap.add_argument("--real-merge", nargs="+", default=None, metavar="JSON",
                    help="merge earlier --real runs (JSON files; a table from the first file "
                         "that has it, the diagnostics from the last) into "
                         "bench/results/biglearn-real.md; runs nothing")
    ap.add_argument("--threads", type=int, default=1,
                    help="numba threads for the kernels (default 1, see the module docstring)")
    a = ap.parse_args(argv)
    q = a.quick
    a.seeds = a.seeds or (2 if q else 10)
    a.n_outer = a.n_outer or (300 if q else 2000)
    a.joint_iters = a.joint_iters or (300 if q else 500)
    a.clust_n_outer = a.clust_n_outer or (50 if q else 200)
    a.digits_seeds = a.digits_seeds or (1 if q else min(3, a.seeds))
    a.digits_n_outer = a.digits_n_outer or (10 if q else 100)
    if a.seeds > len(SEEDS):
        ap.error(f"--seeds at most {len(SEEDS)}")
    os.makedirs(RESULTS, exist_ok=True)
    prefix = os.path.join(RESULTS, "biglearn_quick" if q else "biglearn")
    if a.report_only:
        with open(prefix + ".json") as fh:
            res = json.load(fh)
        res["prefix"] = prefix
        res["notes"] = list(NOTES)
        write_report(res, prefix + ".md")
        if "simulation" in res and not a.no_plot:
            plot_simulation(res["simulation"], prefix)
        log(f"rewrote {prefix}.md")
        return
    t_start = time.perf_counter()
    if a.real_merge:
        parts = []
        for path in a.real_merge:
            with open(path) as fh:
                parts.append(json.load(fh))
        res = parts[0]
        for p in parts[1:]:
            for key, table in p["real"]["tables"].items():  # the first run of a table wins
                res["real"]["tables"].setdefault(key, table)
            if "diagnostics" in p["real"]:
                res["real"]["diagnostics"] = p["real"]["diagnostics"]
            res["total_sec"] += p["total_sec"]
        write_real_report(res, os.path.join(RESULTS, "biglearn-real.md"))
        log("wrote bench/results/biglearn-real.md")
        return
    if a.real:
        import numba
        numba.set_num_threads(max(1, min(a.threads, numba.config.NUMBA_NUM_THREADS)))
        rprefix = os.path.join(RESULTS, a.real_out)
        res = {"args": vars(a),
               "env": {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(),
                       "cpus": os.cpu_count(), "numba_threads": numba.get_num_threads(),
                       "load_start": [round(x, 2) for x in os.getloadavg()]}}
        res["real"] = run_real(a.seeds, a.datasets.split(","),
                               methods=tuple(a.real_methods.split(",")),
                               diagnostics="wine" in a.datasets.split(","))
        res["total_sec"] = time.perf_counter() - t_start
        with open(rprefix + ".json", "w") as fh:
            json.dump(res, fh, indent=1)
        write_real_report(res, rprefix + ".md")
        log(f"done in {res['total_sec'] / 60:.1f} min: {rprefix}.md")
        return
    t_start = time.perf_counter()
    import numba
    numba.set_num_threads(max(1, min(a.threads, numba.config.NUMBA_NUM_THREADS)))
    res = {"args": vars(a), "prefix": prefix,
           "env": {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(),
                   "cpus": os.cpu_count(), "numpy": np.__version__, "numba": numba.__version__,
                   "numba_threads": numba.get_num_threads(),
                   "fastmix": getattr(fastmix, "__version__", "?"),
                   "load_start": [round(x, 2) for x in os.getloadavg()]},
           "notes": list(NOTES)}

    def save():
        res["total_sec"] = time.perf_counter() - t_start
        res["env"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
        with open(prefix + ".json", "w") as fh:
            json.dump(res, fh, indent=1)
        write_report(res, prefix + ".md")

    # warm the JIT so the first seed's timings are not dominated by compilation
    Xw, _ = sim_data(0)
    biglearn_sim(3, "psd", 0).fit(Xw)
    joint_em(K_SIM, 2, 1e-5, 0).fit(Xw)

    if not a.skip_simulation:
        sim = run_simulation(SEEDS[:a.seeds], a.n_outer, a.joint_iters, a.eval_every)
        res["simulation"] = sim
        res["targets"] = {
            "biglearn_floor_lt_0.05": sim["summary"]["biglearn_floor"]["kl_min"]["mean"] < 0.05,
            "biglearn_psd_lt_0.05": sim["summary"]["biglearn_psd"]["kl_min"]["mean"] < 0.05,
            "joint_gt_0.15": sim["summary"]["joint"]["kl_min"]["mean"] > 0.15}
        save()
        if not a.no_plot:
            plot_simulation(sim, prefix)
    clust = None
    if not a.skip_clustering:
        clust = run_clustering(a.clust_n_outer, a.seeds, a.digits_seeds, a.digits_n_outer)
        res["clustering"] = clust
        save()
    if not a.skip_timing:
        res["timing"] = run_timing(clust, q)
    save()
    log(f"done in {res['total_sec'] / 60:.1f} min: {prefix}.md")


if __name__ == "__main__":
    main()
