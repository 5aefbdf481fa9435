#!/usr/bin/env python
"""Variants of the GMM expansion's automatic settings tried for issue 17 item 4 (none adopted).

``GMMExpansion()`` does not reach EM's best-K IPE on ``5-normals`` (``bench/expansion.py``).
Each variant below is measured on the samples of ``bench/expansion.py`` (seed 0; the first N
rows of a draw of 1e5), IPE by ``fastmix.metrics.ipe`` on that script's grids:

* ``more-steps``: the rule's candidate factors extended to (0.25, 0.35, 0.5, 0.7, 1.0, 1.4) and
  up to 64 weights-only EM steps per candidate (``AUTO_FACTORS``, ``AUTO_MAX_STEPS``
  patched); selection as in the estimator (held-out log-likelihood on a 20 000-row sample);
* ``big-sample``: as ``more-steps`` with up to 128 steps, selected on a sample of up to
  100 000 rows (``AUTO_SAMPLE`` patched) -- every row at N <= 1e5;
* ``multiscale``: a dictionary of nodes at several bandwidths at once (sigma = c x the rule's
  sigma at f = 1, c in ``SCALES``, each on its own grid with spacing = its sigma), weights by
  weights-only EM on all of them jointly; the data are linearly binned on a grid of
  1/20 of the f = 1 sigma (a prototype in NumPy, not the estimator), the IPE after 1, 2, 4, ...
  steps; the best over steps is an oracle (it looks at the true density).

Output: ``expansion_variants.md`` / ``.json`` in ``--out-dir`` (default bench/results).

    python bench/expansion_variants.py
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numba
import numpy as np
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import fastmix  # noqa: E402
from fastmix import expansion as E, metrics  # noqa: E402
import expansion as bench  # noqa: E402

PATCHES = {
    "default": {},
    "more-steps": dict(AUTO_FACTORS=(0.25, 0.35, 0.5, 0.7, 1.0, 1.4), AUTO_MAX_STEPS=64),
    "big-sample": dict(AUTO_FACTORS=(0.25, 0.35, 0.5, 0.7, 1.0, 1.4), AUTO_MAX_STEPS=128,
                       AUTO_SAMPLE=100_000),
}
CASES = [("5-normals", 10_000), ("5-normals", 100_000), ("normal+t3+uniform", 10_000),
         ("normal+t3+uniform", 100_000), ("skew+t2", 10_000), ("skew+t2", 100_000)]
SCALES = ([0.5], [0.7], [1.0], [0.35, 0.5, 0.7, 1.0], [0.25, 0.5, 1.0, 2.0, 4.0],
          [0.7, 1.4, 2.8, 5.6], [1.0, 2.0, 4.0, 8.0])
CHECKS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def multiscale(X, grid, p_true, scales, steps=1024):
    """{steps: IPE} of weights-only EM over a multi-bandwidth dictionary on binned 1-D data."""
    x = X[:, 0]
    n = x.shape[0]
    data = fastmix.io.as_stream(X, None, 4096)
    Xs, ws = E.auto_sample(data, None)
    lo, hi = (float(v[0]) for v in E.auto_bounds(Xs, ws, X.min(axis=0), X.max(axis=0)))
    base = float(E.rule_sigma(1.0, E.auto_scale(Xs, ws), n)[0])
    b = base / 20
    cen = np.arange(lo, hi + b, b)
    pos = np.clip((x - lo) / b, 0, cen.size - 1)  # rows beyond the grid go to its edge bins
    i = np.minimum(np.floor(pos).astype(np.int64), cen.size - 2)
    fr = pos - i
    cnt = np.bincount(i, 1 - fr, cen.size) + np.bincount(i + 1, fr, cen.size)
    mus, sds = [], []
    for c in scales:
        s = c * base
        m = np.linspace(lo, hi, int(np.ceil((hi - lo) / s)) + 1)
        mus.append(m)
        sds.append(np.full(m.size, s))
    mu, sd = np.concatenate(mus), np.concatenate(sds)
    Phi = stats.norm.pdf(cen[:, None], mu, sd)
    G = stats.norm.pdf(grid[:, None], mu, sd)
    w = np.full(mu.size, 1.0 / mu.size)
    out = {}
    for k in range(1, steps + 1):
        w = w * (Phi.T @ (cnt / np.maximum(Phi @ w, 1e-300))) / cnt.sum()
        if k in CHECKS:
            out[k] = metrics.ipe(G @ w, p_true, grid)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    a = p.parse_args(argv)
    numba.set_num_threads(1)
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    ref = {}
    path = os.path.join(a.out_dir, "expansion.json")
    if os.path.exists(path):
        with open(path) as fh:
            ref = {(r["target"], r["N"]): r["em_ipe"] for r in json.load(fh)["summary"]}
    saved = {k: getattr(E, k) for k in ("AUTO_FACTORS", "AUTO_MAX_STEPS", "AUTO_SAMPLE")}
    fastmix.GMMExpansion().fit(np.random.default_rng(1).normal(size=(2000, 1)))  # compile
    rows = []
    samples = {}
    for name, N in CASES:
        T = bench.TARGETS[name]
        if name not in samples:
            samples[name] = T.sample(100_000, np.random.default_rng(bench.SEED))
        X = samples[name][:N]
        grid = T.grid()
        p_true = T.pdf(grid[:, None])
        for label, patch in PATCHES.items():
            if label == "big-sample" and name != "5-normals":
                continue
            for k, v in {**saved, **patch}.items():
                setattr(E, k, v)
            try:
                t = time.perf_counter()
                m = fastmix.GMMExpansion().fit(X)
                dt = time.perf_counter() - t
            finally:
                for k, v in saved.items():
                    setattr(E, k, v)
            ipe = metrics.ipe(np.exp(m.score_samples(grid[:, None])), p_true, grid)
            rows.append(dict(variant=label, target=name, N=N, ipe=ipe, time_s=dt,
                             factor=float(m.auto_.factor), steps=int(m.n_iter_),
                             em=ref.get((name, N), float("nan"))))
            print(rows[-1], file=sys.stderr, flush=True)
    ms = []
    for N in (10_000, 100_000):
        T = bench.TARGETS["5-normals"]
        grid = T.grid()
        p_true = T.pdf(grid[:, None])
        X = samples["5-normals"][:N]
        for sc in SCALES:
            o = multiscale(X, grid, p_true, sc)
            k = min(o, key=o.get)
            ms.append(dict(N=N, scales=list(sc), best_steps=k, best=o[k], converged=o[max(o)],
                           em=ref.get(("5-normals", N), float("nan")), curve=o))
            print(ms[-1], file=sys.stderr, flush=True)
    L = ["# Automatic-settings variants tried for 5-normals (issue 17 item 4; none adopted)", "",
         "Generated by `bench/expansion_variants.py` (its docstring defines the variants). "
         f"numba threads 1; 1-min load average {load0:.2f} at start, "
         f"{os.getloadavg()[0]:.2f} at end (shared 2-core machine: times are indicative); "
         f"run took {time.perf_counter() - t0:.0f} s.", "",
         "## Selection-rule variants (the estimator, constants patched)", "",
         "| target | N | variant | f, steps | IPE | / best EM | fit time |", "|" + "---|" * 7]
    for r in rows:
        L.append(f"| {r['target']} | {r['N']:.0e} | {r['variant']} | {r['factor']:g}, "
                 f"{r['steps']} | {r['ipe']:.4f} | **{r['ipe'] / r['em']:.2f}** | "
                 f"{1e3 * r['time_s']:.0f} ms |")
    L += ["", "## Multi-bandwidth dictionary (NumPy prototype on binned data, 5-normals)", "",
          "scales: the bandwidths as multiples of the rule's f = 1 sigma.  best: lowest IPE over "
          "the steps (an oracle); converged: after 1024 steps.", "",
          "| N | scales | best IPE (steps) | / best EM | converged IPE |", "|" + "---|" * 5]
    for r in ms:
        L.append(f"| {r['N']:.0e} | {r['scales']} | {r['best']:.4f} ({r['best_steps']}) | "
                 f"**{r['best'] / r['em']:.2f}** | {r['converged']:.4f} |")
    with open(os.path.join(a.out_dir, "expansion_variants.md"), "w") as fh:
        fh.write("\n".join(L) + "\n")
    with open(os.path.join(a.out_dir, "expansion_variants.json"), "w") as fh:
        json.dump(dict(rows=rows, multiscale=ms), fh, indent=1)
    print("\n".join(L))


if __name__ == "__main__":
    main()
