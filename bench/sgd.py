#!/usr/bin/env python
"""SGD-trained GMMs (Gepperth et al., docs/algorithms.md §1): annealing, EM, init, throughput.

Data
----
* ``digits``: ``sklearn.datasets.load_digits`` (1797 images 8x8, D = 64), pixels / 16 in
  [0, 1], 80/20 train/test split with ``random_state=0``.
* ``bars``: a synthetic image-like set generated here (``make_bars``): 12x12 images (D = 144),
  each with 1-3 random horizontal/vertical bars (width 1-2) and 0-2 Gaussian blobs, plus a
  little uniform noise, clipped to [0, 1]; 4000 images (1000 with ``--quick``), 80/20 split.
* ``--data PATH.npy``: a user (N, D) array (rows = samples).  Values outside [0, 1] are
  min-max scaled per array; if D is a perfect square the prototypes are drawn as sqrt(D) x
  sqrt(D) images, otherwise as a heatmap.

Experiments (on each data set)
------------------------------
1. Annealing: ``SGDGaussianMixture(K, annealing="adaptive" | "off")`` for K = 25 and 64,
   ``--epochs`` epochs (10), batch 1, the estimator's defaults otherwise (eps0 0.05,
   eps_min 0.001, sigma0 = n/4, precision_max 20, mu U[-0.01, 0.01]).  The adaptive schedule is
   run with the default window (``fastmix.sgd.default_window``: ceil(1/eps_min) = 1000 steps,
   shortened in ``fit`` on data of known length so that sigma can reach sigma_min) and with
   W = 200.  ``--seeds`` seeds (3).  Reported: final test loss = -(mean max-component
   objective on test), exact test log-likelihood, final sigma / learning rate, the number of
   "dead" components (weight < 1/(10K)) and of "duplicate" prototypes (mean within RMS
   distance 0.02 per feature of a lower-index one).
2. SGD vs EM: SGD (adaptive, W = 100, 1 and 3 epochs; and the 10-epoch W = 200 run of 1) vs
   ``fastmix.GaussianMixture(K, covariance_type="diag", reg_covar=1/precision_max = 0.05,
   init_params="kmeans")``: test (and train) log-likelihood.  EM's reg_covar *adds* 0.05 to
   every variance while SGD *floors* the variances at 0.05 (precision <= 20), a weaker
   constraint; so a NumPy diagonal EM with the same floor (M-step var = max(var, 0.05)),
   started from the fastmix EM result and run to convergence, is reported as well.
3. Init robustness (K = 25, adaptive W = 200): ``mu_init_center`` in {0, 0.5, 0.7, 1.0} with
   ``mu_init`` = 0.01 (reading: the means start in a +-0.01 box around the given centre, i.e.
   far from the data's mean for 0.7 and 1.0).  Final losses should be about the same.
4. Throughput (all 1797 digits tiled 12x, D = 64, and tiled 3x and bilinearly upsampled to
   28x28, D = 784; K = 25): samples/s of ``fit`` (1
   epoch, annealing adaptive, JIT warmed up first) at batch 1 with ``numba.set_num_threads(1)``
   and at batch 256 with 2 threads, best of ``--repeats`` (3).  The mini-batch kernel runs in
   parallel over components (results independent of the thread count).

Outputs (``bench/results/``; ``--out`` changes the directory, ``--tag`` adds a suffix)
-----------------------------------------------------------------------------------
* ``sgd.md`` -- the tables; ``sgd.json`` -- every number plus the settings and versions.
* ``sgd_prototypes_digits.png`` / ``sgd_prototypes_bars.png`` (``sgd_prototypes_data.png``
  for ``--data``): prototype grids, annealing on vs off, K = 25 and 64 (seed 0).
* ``sgd_loss_curves.png``: ``loss_curve_`` (loss, sigma, learning rate vs step) of the
  K = 25 / 64 adaptive runs per data set.
* ``sgd_init.png``: prototype grids of the init-robustness runs (digits).

``--quick``: 1 seed, 3 epochs, K = 25 only in the annealing study, smaller synthetic set,
1 throughput repeat (a smoke run, about a minute with a cold JIT cache).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import fastmix  # noqa: E402
from fastmix import plot as fplot  # noqa: E402


# ------------------------------------------------------------------------------ data -------
def load_digits_split(seed=0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X = load_digits().data.astype(np.float64) / 16.0
    Xtr, Xte = train_test_split(X, test_size=0.2, random_state=seed)
    return np.ascontiguousarray(Xtr), np.ascontiguousarray(Xte)


def make_bars(n, size=12, seed=0):
    """(n, size*size) float64 in [0, 1]: 1-3 random bars (h/v, width 1-2) + 0-2 blobs + noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.empty((n, size * size))
    for i in range(n):
        img = np.zeros((size, size))
        for _ in range(rng.integers(1, 4)):
            w = rng.integers(1, 3)
            p = rng.integers(0, size - w + 1)
            if rng.random() < 0.5:
                img[p:p + w, :] = np.maximum(img[p:p + w, :], rng.uniform(0.6, 1.0))
            else:
                img[:, p:p + w] = np.maximum(img[:, p:p + w], rng.uniform(0.6, 1.0))
        for _ in range(rng.integers(0, 3)):
            cy, cx = rng.uniform(0, size - 1, 2)
            r = rng.uniform(1.0, 2.5)
            img = np.maximum(img, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
        img += rng.uniform(0, 0.1, size=img.shape)
        out[i] = np.clip(img, 0.0, 1.0).ravel()
    return out


def split(X, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.permutation(X.shape[0])
    n_te = X.shape[0] // 5
    return np.ascontiguousarray(X[idx[n_te:]]), np.ascontiguousarray(X[idx[:n_te]])


def upsample(X, side_in, side_out):
    """Bilinear upsampling of square images (N, side_in^2) -> (N, side_out^2)."""
    from scipy.ndimage import zoom
    imgs = X.reshape(-1, side_in, side_in)
    up = zoom(imgs, (1, side_out / side_in, side_out / side_in), order=1)
    return np.ascontiguousarray(np.clip(up, 0, 1).reshape(X.shape[0], -1))


def load_user(path):
    X = np.load(path, mmap_mode=None)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        X = X.reshape(X.shape[0], -1)
    lo, hi = X.min(), X.max()
    if lo < 0 or hi > 1:
        X = (X - lo) / max(hi - lo, 1e-12)
    return split(X, seed=0)


# ------------------------------------------------------------------------------ metrics ----
def diagnostics(m, Xte):
    K = m.n_components
    w = m.weights_
    mu = m.means_
    D = mu.shape[1]
    dead = int(np.sum(w < 1.0 / (10 * K)))
    d2 = ((mu[:, None, :] - mu[None, :, :]) ** 2).mean(axis=2)
    close = np.sqrt(d2) < 0.02
    dup = int(sum(np.any(close[k, :k]) for k in range(K)))
    return {
        "test_loss": -float(m.score_max_component(Xte)),
        "test_loglik": float(m.score(Xte)),
        "final_train_loss": float(m.loss_curve_[-1][1]),
        "train_loglik": float(m.score(m._bench_Xtr)) if hasattr(m, "_bench_Xtr") else None,
        "sigma": float(m.sigma_), "lr": float(m.learning_rate_),
        "dead": dead, "duplicates": dup, "steps": int(m.n_steps_), "D": D,
    }


def fit_sgd(Xtr, K, *, seed, epochs, **kw):
    t = time.perf_counter()
    m = fastmix.SGDGaussianMixture(K, n_epochs=epochs, random_state=seed, **kw).fit(Xtr)
    m._bench_Xtr = Xtr  # for the train log-likelihood in diagnostics (bench only)
    return m, time.perf_counter() - t


def summarise(rows, key):
    v = np.array([r[key] for r in rows], dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


# ------------------------------------------------------------------------------ figures ----
def render(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())


def compose(panels, titles, path, ncols=2, scale=1.0):
    """Render several figures side by side into one PNG (titles above each)."""
    from matplotlib.figure import Figure
    nrows = int(math.ceil(len(panels) / ncols))
    fig = Figure(figsize=(5.2 * ncols * scale, 5.6 * nrows * scale))
    for i, (img, title) in enumerate(zip(panels, titles)):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(img)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")


# ------------------------------------------------------------------------------ experiments -
def annealing_study(name, Xtr, Xte, Ks, seeds, epochs, image_shape, out, log):
    variants = [("adaptive W=1000", dict(annealing="adaptive", anneal_window=1000)),
                ("adaptive W=200", dict(annealing="adaptive", anneal_window=200)),
                ("off", dict(annealing="off"))]
    res = []
    keep = {}
    for K in Ks:
        for label, kw in variants:
            rows = []
            for s in seeds:
                m, dt = fit_sgd(Xtr, K, seed=s, epochs=epochs, **kw)
                r = diagnostics(m, Xte)
                r["seconds"] = dt
                rows.append(r)
                if s == seeds[0]:
                    keep[(K, label)] = m
            agg = {"data": name, "K": K, "variant": label, "epochs": epochs,
                   "runs": rows}
            for key in ("test_loss", "test_loglik", "train_loglik", "dead", "duplicates", "sigma",
                        "lr", "seconds"):
                agg[key + "_mean"], agg[key + "_sd"] = summarise(rows, key)
            res.append(agg)
            log(f"  [{name}] K={K:3d} {label:16s} test loss {agg['test_loss_mean']:8.2f} "
                f"+- {agg['test_loss_sd']:.2f}  LL {agg['test_loglik_mean']:8.2f}  dead "
                f"{agg['dead_mean']:.1f} dup {agg['duplicates_mean']:.1f}  sigma "
                f"{agg['sigma_mean']:.3f}  {agg['seconds_mean']:.2f}s")
    # prototype figure: on (W=200 -- fully annealed) vs off, per K
    panels, titles = [], []
    for K in Ks:
        for label in ("adaptive W=200", "off"):
            m = keep[(K, label)]
            r = diagnostics(m, Xte)
            fig = fplot.plot_prototypes(m, image_shape=image_shape, vmin=0.0, vmax=1.0)
            panels.append(render(fig))
            titles.append(f"{name} K={K} annealing {label}\n test loss {r['test_loss']:.1f}, "
                          f"dead {r['dead']}, dup {r['duplicates']}")
    compose(panels, titles, out / f"sgd_prototypes_{name}.png", ncols=2,
            scale=0.9 if len(Ks) > 1 else 1.0)
    return res, keep


def em_study(name, Xtr, Xte, K, seeds, anneal_runs, log):
    res = []
    for epochs in (1, 3):
        rows = []
        for s in seeds:
            m, dt = fit_sgd(Xtr, K, seed=s, epochs=epochs, annealing="adaptive",
                            anneal_window=100)
            r = diagnostics(m, Xte)
            r["seconds"] = dt
            rows.append(r)
        agg = {"data": name, "K": K, "method": f"SGD adaptive W=100, {epochs} epoch(s)",
               "runs": rows}
        for key in ("test_loglik", "test_loss", "seconds", "train_loglik"):
            agg[key + "_mean"], agg[key + "_sd"] = summarise(rows, key)
        res.append(agg)
    for a in anneal_runs:
        if a["K"] == K and a["variant"] in ("adaptive W=200", "adaptive W=1000"):
            res.append({"data": name, "K": K,
                        "method": f"SGD {a['variant']}, {a['epochs']} epochs",
                        "test_loglik_mean": a["test_loglik_mean"],
                        "test_loglik_sd": a["test_loglik_sd"],
                        "test_loss_mean": a["test_loss_mean"], "test_loss_sd": a["test_loss_sd"],
                        "train_loglik_mean": a["train_loglik_mean"],
                        "train_loglik_sd": a["train_loglik_sd"],
                        "seconds_mean": a["seconds_mean"], "seconds_sd": a["seconds_sd"]})
    rows, floor_rows = [], []
    for s in seeds:
        t = time.perf_counter()
        gm = fastmix.GaussianMixture(K, covariance_type="diag", reg_covar=0.05,
                                     init_params="kmeans", max_iter=200, random_state=s).fit(Xtr)
        dt = time.perf_counter() - t
        mc = _em_max_component(gm, Xte)
        rows.append({"test_loglik": float(gm.score(Xte)), "test_loss": -mc, "seconds": dt,
                     "n_iter": int(gm.n_iter_), "converged": bool(gm.converged_),
                     "train_loglik": float(gm.score(Xtr))})
        t = time.perf_counter()
        w, mu, var, it = floor_em(Xtr, gm.weights_, gm.means_, gm.covariances_, floor=0.05)
        dt2 = dt + time.perf_counter() - t
        floor_rows.append({"test_loglik": _diag_ll(Xte, w, mu, var).mean(),
                           "test_loss": -_diag_ll(Xte, w, mu, var, mc=True).mean(),
                           "train_loglik": _diag_ll(Xtr, w, mu, var).mean(),
                           "seconds": dt2, "n_iter": it})
    for method, rr in (("EM diag, reg_covar 0.05, k-means init", rows),
                       ("EM diag, variance floor 0.05 (NumPy, from the row above)", floor_rows)):
        agg = {"data": name, "K": K, "method": method, "runs": rr}
        for key in ("test_loglik", "test_loss", "seconds", "train_loglik"):
            agg[key + "_mean"], agg[key + "_sd"] = summarise(rr, key)
        res.append(agg)
    for a in res:
        log(f"  [{name}] K={K} {a['method']:42s} test LL {a['test_loglik_mean']:8.2f} +- "
            f"{a['test_loglik_sd']:.2f}  train LL {a['train_loglik_mean']:7.2f}  MC loss {a['test_loss_mean']:8.2f}  "
            f"{a['seconds_mean']:.2f}s")
    return res


def _diag_ll(X, w, mu, var, mc=False):
    """Per-row log p(x) (or max-component bound) of a diagonal mixture (NumPy)."""
    lp = (np.log(w)[None, :] - 0.5 * np.log(var).sum(axis=1)[None, :]
          - 0.5 * X.shape[1] * math.log(2 * math.pi)
          - 0.5 * (((X[:, None, :] - mu[None]) ** 2) / var[None]).sum(axis=2))
    if mc:
        return lp.max(axis=1)
    m = lp.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(lp - m).sum(axis=1, keepdims=True)))[:, 0]


def floor_em(X, w, mu, var, floor, max_iter=300, tol=1e-5):
    """Diagonal EM whose M-step *floors* the variances at ``floor`` (the constraint SGD has:
    precision <= precision_max) instead of adding reg_covar.  Returns (w, mu, var, n_iter)."""
    w, mu, var = w.copy(), mu.copy(), np.maximum(var, floor)
    prev = -np.inf
    for it in range(1, max_iter + 1):
        lp = (np.log(w)[None, :] - 0.5 * np.log(var).sum(axis=1)[None, :]
              - 0.5 * (((X[:, None, :] - mu[None]) ** 2) / var[None]).sum(axis=2))
        m = lp.max(axis=1, keepdims=True)
        p = np.exp(lp - m)
        tot = p.sum(axis=1, keepdims=True)
        ll = float((m + np.log(tot)).mean())
        r = p / tot
        nk = r.sum(axis=0) + 1e-12
        w = nk / nk.sum()
        mu = (r.T @ X) / nk[:, None]
        var = np.maximum((r.T @ (X * X)) / nk[:, None] - mu * mu, floor)
        if ll - prev < tol:
            break
        prev = ll
    return w, mu, var, it


def _em_max_component(gm, X):
    """Mean max_k log(pi_k N(x|k)) of a diagonal GaussianMixture (NumPy)."""
    prec = 1.0 / gm.covariances_
    lp = (np.log(gm.weights_)[None, :] + 0.5 * np.log(prec).sum(axis=1)[None, :]
          - 0.5 * X.shape[1] * math.log(2 * math.pi)
          - 0.5 * (((X[:, None, :] - gm.means_[None]) ** 2) * prec[None]).sum(axis=2))
    return float(lp.max(axis=1).mean())


def init_study(name, Xtr, Xte, seeds, epochs, image_shape, out, log, figure=True):
    res = []
    panels, titles = [], []
    for c in (0.0, 0.5, 0.7, 1.0):
        rows = []
        for s in seeds:
            m, dt = fit_sgd(Xtr, 25, seed=s, epochs=epochs, annealing="adaptive",
                            anneal_window=200, mu_init=0.01, mu_init_center=c)
            r = diagnostics(m, Xte)
            r["seconds"] = dt
            rows.append(r)
            if s == seeds[0] and figure:
                panels.append(render(fplot.plot_prototypes(m, image_shape=image_shape,
                                                           vmin=0.0, vmax=1.0)))
                titles.append(f"mu_init_center={c}: test loss {r['test_loss']:.1f}, "
                              f"dead {r['dead']}")
        agg = {"data": name, "K": 25, "mu_init_center": c, "mu_init": 0.01, "runs": rows}
        for key in ("test_loss", "test_loglik", "dead", "duplicates"):
            agg[key + "_mean"], agg[key + "_sd"] = summarise(rows, key)
        res.append(agg)
        log(f"  [{name}] mu_init_center={c:.1f}: test loss {agg['test_loss_mean']:8.2f} +- "
            f"{agg['test_loss_sd']:.2f}  LL {agg['test_loglik_mean']:8.2f}  dead "
            f"{agg['dead_mean']:.1f}")
    if figure:
        compose(panels, titles, out / "sgd_init.png", ncols=4, scale=0.8)
    return res


def throughput(Xd, repeats, log):
    import numba
    from threadpoolctl import threadpool_limits
    X64 = np.tile(Xd, (12, 1))  # 21564 rows: long enough for stable timings
    X784 = upsample(np.tile(Xd, (3, 1)), 8, 28)  # 5391 rows
    sets = [("digits (tiled x12) D=64", X64), ("digits upsampled 28x28 (tiled x3) D=784", X784)]
    res = []
    for label, X in sets:
        for batch, threads, ann in ((1, 1, "adaptive"), (1, 1, "off"), (256, 1, "adaptive"),
                                    (256, 2, "adaptive")):
            numba.set_num_threads(threads)
            kw = dict(batch_size=batch, annealing=ann, random_state=0, n_epochs=1.0)
            fastmix.SGDGaussianMixture(25, **kw).fit(X[:300])  # JIT warm-up
            best = math.inf
            with threadpool_limits(threads):
                for _ in range(repeats):
                    t = time.perf_counter()
                    fastmix.SGDGaussianMixture(25, **kw).fit(X)
                    best = min(best, time.perf_counter() - t)
            r = {"data": label, "N": int(X.shape[0]), "D": int(X.shape[1]), "K": 25,
                 "batch": batch, "numba_threads": threads, "annealing": ann, "seconds": best,
                 "samples_per_s": X.shape[0] / best}
            res.append(r)
            log(f"  {label:30s} batch {batch:3d} threads {threads} {ann:8s}: {r['samples_per_s']:10.0f} "
                f"samples/s ({best:.3f} s for {X.shape[0]} rows)")
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return res


def loss_figure(models, path):
    from matplotlib.figure import Figure
    n = len(models)
    fig = Figure(figsize=(7.5 * min(n, 2), 3.8 * math.ceil(n / 2)))
    for i, (title, m) in enumerate(models):
        ax = fig.add_subplot(math.ceil(n / 2), min(n, 2), i + 1)
        fplot.plot_loss_curve(m, ax=ax, title=title)
    fig.subplots_adjust(left=0.07, right=0.86, wspace=0.62, hspace=0.45, top=0.93, bottom=0.1)
    fig.savefig(path, dpi=100, format="png")


# ------------------------------------------------------------------------------ report -----
def fmt_pm(m, s, nd=2):
    return f"{m:.{nd}f} ± {s:.{nd}f}" if s else f"{m:.{nd}f}"


def write_md(report, path):
    L = ["# SGD GMM (Gepperth et al.) -- annealing, EM comparison, init, throughput", "",
         f"Generated by `bench/sgd.py{' --quick' if report['settings']['quick'] else ''}` on "
         f"{report['settings']['date']}; seeds {report['settings']['seeds']}, "
         f"{report['settings']['epochs']} epochs in the annealing study. "
         "Loss = -(mean max-component objective) on the **test** set (lower is better); "
         "LL = exact mean test log-likelihood per sample (higher is better). "
         "dead = components with weight < 1/(10K); dup = prototypes within RMS 0.02 of a "
         "lower-index one. Mean ± sd over seeds.", "",
         "## 1. Annealing on vs off", "",
         "| data | K | annealing | test loss | test LL | final sigma | final lr | dead | dup | fit s |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for a in report["annealing"]:
        L.append(f"| {a['data']} | {a['K']} | {a['variant']} | "
                 f"{fmt_pm(a['test_loss_mean'], a['test_loss_sd'])} | "
                 f"{fmt_pm(a['test_loglik_mean'], a['test_loglik_sd'])} | "
                 f"{a['sigma_mean']:.3f} | {a['lr_mean']:.4f} | {a['dead_mean']:.1f} | "
                 f"{a['duplicates_mean']:.1f} | {a['seconds_mean']:.2f} |")
    L += ["", "## 2. SGD vs EM (test log-likelihood)", "",
          "| data | K | method | test LL | train LL | test MC loss | fit s |",
          "|---|---|---|---|---|---|---|"]
    for a in report["em"]:
        L.append(f"| {a['data']} | {a['K']} | {a['method']} | "
                 f"{fmt_pm(a['test_loglik_mean'], a['test_loglik_sd'])} | "
                 f"{a['train_loglik_mean']:.2f} | "
                 f"{fmt_pm(a['test_loss_mean'], a['test_loss_sd'])} | "
                 f"{a['seconds_mean']:.2f} |")
    L += ["", "## 3. Init robustness (K = 25, adaptive W = 200, mu_init = 0.01, varying "
          "mu_init_center)", "",
          "| data | mu_init_center | test loss | test LL | dead | dup |", "|---|---|---|---|---|---|"]
    for a in report["init"]:
        L.append(f"| {a['data']} | {a['mu_init_center']} | "
                 f"{fmt_pm(a['test_loss_mean'], a['test_loss_sd'])} | "
                 f"{fmt_pm(a['test_loglik_mean'], a['test_loglik_sd'])} | "
                 f"{a['dead_mean']:.1f} | {a['duplicates_mean']:.1f} |")
    if report["throughput"]:
        L += ["", "## 4. Throughput of `fit` (K = 25, 1 epoch, best of repeats, JIT warm)", "",
              "| data | N | D | batch | numba threads | annealing | samples/s |",
              "|---|---|---|---|---|---|---|"]
        for r in report["throughput"]:
            L.append(f"| {r['data']} | {r['N']} | {r['D']} | {r['batch']} | "
                     f"{r['numba_threads']} | {r['annealing']} | {r['samples_per_s']:,.0f} |")
    if report.get("notes"):
        L += ["", "## Notes", ""] + [f"* {n}" for n in report["notes"]]
    L += ["", "Figures: " + ", ".join(f"`{p}`" for p in report["figures"]), ""]
    path.write_text("\n".join(L))


def lpd_study(Xtr, Xte, seeds, epochs, Ss, log, K=25):
    """Digits, K = 25, batch 1, adaptive annealing (default window): diag vs local principal
    directions with S in Ss.  Test log-likelihood (exact), test max-component, fit time."""
    rows = []
    for S in [None] + list(Ss):
        kw = {} if S is None else dict(covariance_type="lpd", n_directions=S)
        per = []
        for seed in seeds:
            m, sec = fit_sgd(Xtr, K, seed=seed, epochs=epochs, **kw)
            per.append({"test_loglik": float(m.score(Xte)), "train_loglik": float(m.score(Xtr)),
                        "test_mc": float(m.score_max_component(Xte)), "seconds": sec,
                        "sigma": float(m.sigma_)})
        row = {"model": "diag" if S is None else f"lpd S={S}", "S": S, "K": K,
               "n_params": K * (2 * Xtr.shape[1] + 1) if S is None
               else K * ((S + 1) * Xtr.shape[1] + S + 2), "runs": per}
        for key in ("test_loglik", "train_loglik", "test_mc", "seconds", "sigma"):
            row[key], row[key + "_sd"] = summarise(per, key)
        rows.append(row)
        log(f"  {row['model']:10s} test LL {row['test_loglik']:8.2f} +- "
            f"{row['test_loglik_sd']:.2f}  train LL {row['train_loglik']:8.2f}  "
            f"fit {row['seconds']:.2f}s")
    return rows


def kernel_throughput(repeats, log, N=5120, D=784, K=25, S=10):
    """Kernel samples/s at D = 784, K = 25 on uniform [0, 1] data: diag and LPD (S), batch 1
    on 1 thread (sigma = 1.25, the default start on 5 x 5, and g = I) and batch 256 on 1 and
    2 threads (interleaved, medians of ``repeats``)."""
    import numba
    from fastmix.kernels.cpu import sgd as cpu_sgd
    from fastmix.sgd import toroidal_smoothing
    X = np.random.default_rng(0).uniform(0, 1, size=(N, D))

    def state(lpd):
        rng = np.random.default_rng(1)
        xi, mu = np.full(K, 1.0 / K), rng.uniform(-0.01, 0.01, size=(K, D))
        if not lpd:
            return (xi, mu, np.full((K, D), 20 ** 0.5))
        U = np.stack([np.linalg.qr(rng.standard_normal((D, S)))[0].T for _ in range(K)])
        return (xi, mu, U, np.ones((K, S)), np.full(K, 20 ** 0.5))

    def once(lpd, sigma, batch, rows):
        st, g, Xs = state(lpd), toroidal_smoothing(5, sigma), X[:rows]
        out = np.empty(-(-rows // batch))
        args = (g, False, 0.05, 1.0, 1.0, 1.0, 1e-6, 20 ** 0.5, out)
        t = time.perf_counter()
        if batch == 1:
            (cpu_sgd.sgd_lpd_step_single if lpd else cpu_sgd.sgd_step_single)(Xs, *st, *args)
        else:
            (cpu_sgd.sgd_lpd_minibatch if lpd else cpu_sgd.sgd_minibatch)(Xs, batch, *st,
                                                                           *args)
        return rows / (time.perf_counter() - t)

    res = []
    for lpd in (False, True):
        rows = N if not lpd else N // 4
        for sigma in (1.25, 0.0):
            for batch, threads in ((1, (1,)), (256, (1, 2))):
                runs = {t: [] for t in threads}
                for rep in range(repeats + 1):
                    for t in threads:
                        numba.set_num_threads(t)
                        v = once(lpd, sigma, batch, rows)
                        if rep:  # the first round compiles / warms up
                            runs[t].append(v)
                for t in threads:
                    r = {"model": f"lpd S={S}" if lpd else "diag", "sigma": sigma,
                         "batch": batch, "threads": t, "rows": rows,
                         "samples_per_s": float(np.median(runs[t])),
                         "runs": [float(v) for v in runs[t]]}
                    res.append(r)
                    log(f"  {r['model']:9s} sigma {sigma:4.2f} batch {batch:3d} threads {t}: "
                        f"{r['samples_per_s']:9.0f} samples/s (median of {repeats})")
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return res


def lpd_main(args, log):
    dtr, dte = load_digits_split(0)
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    epochs = args.epochs or (3.0 if args.quick else 10.0)
    Ss = [2, 5] if args.quick else [2, 5, 10, 20]
    fastmix.SGDGaussianMixture(9, covariance_type="lpd", n_directions=2, n_epochs=1.0,
                               random_state=0).fit(dtr[:50])  # JIT
    log(f"LPD study: digits train {dtr.shape}, K=25, {epochs} epochs, seeds {seeds}")
    study = lpd_study(dtr, dte, seeds, epochs, Ss, log)
    log("kernel throughput")
    tp = [] if args.no_throughput else kernel_throughput(args.repeats or 5, log)
    report = {"settings": {"epochs": epochs, "seeds": seeds, "S": Ss,
                           "date": time.strftime("%Y-%m-%d %H:%M")},
              "lpd": study, "kernel_throughput": tp}
    out = args.out
    (out / "sgd_lpd.json").write_text(json.dumps(report, indent=1))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.4))
    lp = [r for r in study if r["S"] is not None]
    ax.errorbar([r["S"] for r in lp], [r["test_loglik"] for r in lp],
                yerr=[r["test_loglik_sd"] for r in lp], marker="o", label="LPD (isotropic residual)")
    ax.axhline(study[0]["test_loglik"], color="k", ls="--", label="diag")
    ax.set_xlabel("n_directions S")
    ax.set_ylabel("test log-likelihood / sample")
    ax.set_title(f"digits, K=25, SGD {epochs:g} epochs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "sgd_lpd.png", dpi=110)
    lines = ["# SGD GMM: local principal directions vs diagonal, and kernel throughput", "",
             f"Generated by `bench/sgd.py --lpd` on {report['settings']['date']}; digits "
             f"(1437 train / 360 test rows, D = 64, pixels in [0, 1]), K = 25, batch 1, "
             f"{epochs:g} epochs, adaptive annealing with the default window, seeds {seeds}. "
             "LL = exact mean log-likelihood per sample (higher is better); MC = mean "
             "max-component bound. Mean ± sd over seeds.", "",
             "| model | parameters | test LL | train LL | test MC | final sigma | fit s |",
             "|---|---|---|---|---|---|---|"]
    for r in study:
        lines.append(f"| {r['model']} | {r['n_params']:,} | {fmt_pm(r['test_loglik'], r['test_loglik_sd'])} "
                     f"| {r['train_loglik']:.2f} | {fmt_pm(r['test_mc'], r['test_mc_sd'])} "
                     f"| {r['sigma']:.3f} | {r['seconds']:.2f} |")
    if tp:
        lines += ["", "## Kernel throughput (D = 784, K = 25, uniform [0, 1] data)", "",
                  "Medians of interleaved repeats; the machine has 2 cores shared with other "
                  "work, so the 2-thread rows depend on the other load.", "",
                  "| model | sigma | batch | threads | samples/s |", "|---|---|---|---|---|"]
        for r in tp:
            lines.append(f"| {r['model']} | {r['sigma']} | {r['batch']} | {r['threads']} | "
                         f"{r['samples_per_s']:,.0f} |")
    lines += ["", "Figure: `sgd_lpd.png` (test LL vs S, diag dashed)."]
    (out / "sgd_lpd.md").write_text("\n".join(lines) + "\n")
    log(f"wrote {out / 'sgd_lpd.md'}")
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--data", type=Path, default=None, help="(N, D) .npy to run on instead")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--tag", default="")
    ap.add_argument("--epochs", type=float, default=None)
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--lpd", action="store_true",
                    help="only the local-principal-directions study and kernel throughput "
                         "(sgd_lpd.md / .json / .png)")
    args = ap.parse_args(argv)
    quick = args.quick
    epochs = args.epochs or (3.0 if quick else 10.0)
    seeds = list(range(args.seeds or (1 if quick else 3)))
    repeats = args.repeats or (1 if quick else 3)
    Ks = [25] if quick else [25, 64]
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)

    if args.lpd:
        return lpd_main(args, log)

    if args.data is not None:
        Xtr, Xte = load_user(args.data)
        side = int(round(math.sqrt(Xtr.shape[1])))
        sets = [("data", Xtr, Xte, (side, side) if side * side == Xtr.shape[1] else None)]
    else:
        dtr, dte = load_digits_split(0)
        btr, bte = split(make_bars(1000 if quick else 4000, seed=1), seed=0)
        sets = [("digits", dtr, dte, (8, 8)), ("bars", btr, bte, (12, 12))]

    report = {"settings": {"quick": quick, "epochs": epochs, "seeds": seeds, "Ks": Ks,
                           "repeats": repeats, "date": time.strftime("%Y-%m-%d %H:%M"),
                           "data": str(args.data) if args.data else "digits + bars",
                           "python": platform.python_version(),
                           "numpy": np.__version__, "fastmix": getattr(fastmix, "__version__",
                                                                       "?")},
              "annealing": [], "em": [], "init": [], "throughput": [], "figures": [],
              "notes": []}
    curves = []
    fastmix.SGDGaussianMixture(9, n_epochs=1.0, random_state=0).fit(sets[0][1][:50])  # JIT
    fastmix.SGDGaussianMixture(9, n_epochs=1.0, batch_size=8, random_state=0).fit(
        sets[0][1][:50])
    for name, Xtr, Xte, shape in sets:
        log(f"{name}: train {Xtr.shape}, test {Xte.shape}")
        log("annealing study")
        res, keep = annealing_study(name, Xtr, Xte, Ks, seeds, epochs, shape, out, log)
        report["annealing"] += res
        report["figures"].append(f"sgd_prototypes_{name}.png")
        for K in Ks:
            for label in ("adaptive W=1000", "adaptive W=200"):
                curves.append((f"{name} K={K} {label}", keep[(K, label)]))
        log("SGD vs EM")
        report["em"] += em_study(name, Xtr, Xte, 25, seeds, res, log)
        if name in ("digits", "data"):
            log("init robustness")
            report["init"] += init_study(name, Xtr, Xte, seeds, epochs, shape, out, log)
            report["figures"].append("sgd_init.png")
        else:
            report["init"] += init_study(name, Xtr, Xte, seeds, epochs, shape, out, log,
                                         figure=False)
    if len(curves) > 4:
        curves = [c for c in curves if "K=25" in c[0] or "K=64 adaptive W=200" in c[0]]
    loss_figure(curves, out / "sgd_loss_curves.png")
    report["figures"].append("sgd_loss_curves.png")
    if not args.no_throughput and args.data is None:
        log("throughput")
        report["throughput"] = throughput(np.vstack(sets[0][1:3]), repeats, log)
    report["notes"] += [
        "SGD floors variances at 1/precision_max = 0.05; fastmix EM's reg_covar=0.05 adds 0.05 "
        "to every variance (a stronger constraint, lower train LL). The 'variance floor' EM row "
        "has the same constraint as SGD.",
        "The default adaptive window W = ceil(1/learning_rate_min) = 1000 steps is long for "
        "small data sets: 10 epochs of the 1437 digits rows are 14 windows, sigma stops at "
        "0.39 (K=25) / 0.63 (K=64) instead of sigma_min, and the model is the smoothed "
        "(SOM-like) one. W = 200 anneals fully.",
        "(The estimator's default window is now at most planned steps / (decays + 2) in fit; "
        "the W=1000 rows pass anneal_window=1000.)",
        "The mini-batch kernels run prange over components (bit-identical on any thread "
        "count); on the shared 2-core machine the 2-thread rows depend on the other load.",
        "Throughput depends on sigma: the smoothing is truncated at 1e-6 of its peak, so for "
        "sigma >= ~0.7 on a 5x5 grid every component is updated per sample, fewer as sigma "
        "shrinks, and only the best-matching unit once sigma < 0.19 or with annealing off.",
    ]
    report["settings"]["total_seconds"] = time.perf_counter() - t_start
    tag = f"-{args.tag}" if args.tag else ""
    (out / f"sgd{tag}.json").write_text(json.dumps(report, indent=1))
    write_md(report, out / f"sgd{tag}.md")
    log(f"wrote {out / f'sgd{tag}.md'} and .json ({report['settings']['total_seconds']:.0f}s)")
    return report


if __name__ == "__main__":
    main()
