#!/usr/bin/env python
"""Variants of GMMExpansion's parametric stage, measured on the targets of bench/expansion.py.

What it measures
----------------
For each target and N in (1e4, 1e5) it rebuilds the parametric stage of
``GMMExpansion(random_state=0)`` step by step, with the estimator's own pieces (the held-out
split, the pure expansion on the training rows and on all rows, the EM sweep over K with
``STACK_INITS`` k-means++ starts per K, the refits on the training rows and on all rows,
``stack_alpha``), keeps every ingredient, and scores rules for the EM part and alpha by the
IPE against the true density, divided by the IPE of EM's best K (the oracle of
``bench/results/expansion.json``, which must exist):

* ``one start``: the best start of the chosen K alone (the default before this report);
* ``average s starts``: the equal-weight average of the chosen K's best s starts (s = 2, 3, 5;
  s = 5 = every start is the default since this report); ``average 5, training fits``: the
  same without the refit on all rows; ``average 5, others tol 1e-4`` / ``all tol 1e-4``: the
  starts after the best one (or all) refined to tolerance 1e-4 instead of 1e-5 (cheaper);
* ``alpha floor 0.1``: the one-start EM part, alpha at least 0.1;
* ``best 2 K`` / ``best 3 K``: the best start of the two (three) best K, combined with weights
  that maximise the held-out likelihood (EM on the simplex), then alpha as usual;
* ``BIC of best 2 K``: of the two best K (best start each), the one of lower BIC on all rows.

Every variant chooses alpha with ``stack_alpha`` against its own EM part.  The chosen K is the
default's (the K whose best start has the highest held-out score).  The check column says
whether ``average 5 starts`` reproduces ``GMMExpansion(random_state=0).fit(X)`` (it must).

How to run::

    python bench/expansion_stack_variants.py          # writes bench/results/expansion_stack_variants.{md,json}
    python bench/expansion_stack_variants.py --targets ring --ns 10000
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numba
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import expansion as bench  # noqa: E402
from expansion_check import stage_inputs  # noqa: E402
from fastmix import GMMExpansion, metrics  # noqa: E402
from fastmix import expansion as ex  # noqa: E402

RESULTS = os.path.join(HERE, "results")
N_DRAW = 100_000  # bench/expansion.py's largest N (samples are nested)
VARIANTS = ("one start", "average 2 starts", "average 3 starts", "average 5 starts",
            "average 5, others tol 1e-4", "average 5, all tol 1e-4",
            "average 5, training fits", "alpha floor 0.1", "best 2 K", "best 3 K",
            "BIC of best 2 K")
LOOSE_TOL = 1e-4


def simplex_weights(L, iters=500):
    """Weights on the simplex maximising sum_n log sum_j w_j exp(L[n, j]) (EM on the
    weights; L (n, J) the members' held-out log-densities)."""
    w = np.full(L.shape[1], 1.0 / L.shape[1])
    P = np.exp(L - L.max(axis=1, keepdims=True))
    for _ in range(iters):
        R = P * w
        R /= R.sum(axis=1, keepdims=True)
        w = R.mean(axis=0)
    return w


def ingredients(target, N):
    """Everything the stage computes, plus grid densities of every fit, for one sample."""
    grid = target.grid()
    pts = metrics.grid_points(grid)
    shape = pts.shape[:1] if target.dim == 1 else tuple(len(a) for a in grid)
    # the bench's sample: the first N rows of one draw of its largest N (1e5)
    X = target.sample(N_DRAW, np.random.default_rng(bench.SEED))[:N]

    def dens(m):
        return np.exp(m.score_samples(pts)).reshape(shape)

    st = stage_inputs(X, bench.SEED)
    Xt, Xh, Xs, seeds, kmax = st["Xt"], st["Xh"], st["Xs"], st["seeds"], st["kmax"]
    lp_exp, inside = st["lp_exp"], st["inside"]
    fits, scores, best, bad = {}, {}, None, 0
    for K in ex.STACK_KS:  # the sweep of GMMExpansion._choose_em
        if K > kmax:
            break
        fs = []
        for seed in seeds[:1] if K == 1 else seeds:
            em = GMMExpansion._em_member(K, Xs, None, seed=seed, tol=ex.STACK_SWEEP_TOL)
            fs.append((float(np.mean(em.score_samples(Xh))), len(fs), em))
        fs.sort(key=lambda f: (-f[0], f[1]))
        fits[K], scores[K] = [f[2] for f in fs], fs[0][0]
        if best is None or scores[K] > scores[best]:
            best, bad = K, 0
        else:
            bad += 1
            if bad >= ex.STACK_PATIENCE:
                break
    chosen = dict(tol=ex.STACK_TOL, max_iter=ex.STACK_MAX_ITER)

    def refit(K, start, tol=chosen["tol"]):
        t = time.process_time()
        em_t = GMMExpansion._em_member(K, Xt, None, warm=start, **dict(chosen, tol=tol))
        em = GMMExpansion._em_member(K, X, None, warm=em_t, **dict(chosen, tol=tol))
        cpu = time.process_time() - t
        return dict(lp=em_t.score_samples(Xh), g=dens(em), g_t=dens(em_t), bic=em.bic(X),
                    cpu=cpu)

    starts = [refit(best, s) for s in fits[best]]
    loose = [refit(best, s, LOOSE_TOL) for s in fits[best]]
    order = sorted(scores, key=lambda k: -scores[k])
    others = {K: refit(K, fits[K][0]) for K in order[1:3]}
    final = GMMExpansion(random_state=bench.SEED, parametric=None).fit(X)
    default = GMMExpansion(random_state=bench.SEED).fit(X)
    p_true = target.pdf(pts).reshape(shape)
    return dict(grid=grid, p_true=p_true, lp_exp=lp_exp, inside=inside, best=best,
                order=order, starts=starts, loose=loose, others=others, g_exp=dens(final),
                g_default=dens(default), default_alpha=default.alpha_)


def variants(o):
    """{variant: (grid density, alpha, note)}."""
    ins, lpe = o["inside"], o["lp_exp"][o["inside"]]

    def finish(g, lp, floor=0.0):
        a = max(ex.stack_alpha(lpe, lp[ins])[0], floor)
        return a * o["g_exp"] + (1 - a) * g, a

    def average(ms, key="g"):
        w = np.full(len(ms), 1.0 / len(ms))
        return (sum(m[key] for m in ms) / len(ms),
                ex.mix_log_prob(np.stack([m["lp"] for m in ms], axis=1), w))

    out, st, K = {}, o["starts"], o["best"]
    for s, lab in ((1, "one start"), (2, "average 2 starts"), (3, "average 3 starts"),
                   (5, "average 5 starts")):
        out[lab] = (*finish(*average(st[:s])), f"K={K}, {min(s, len(st))} fits")
    out["average 5, others tol 1e-4"] = (*finish(*average(st[:1] + o["loose"][1:])),
                                         f"K={K}")
    out["average 5, all tol 1e-4"] = (*finish(*average(o["loose"])), f"K={K}")
    g_t, lp = average(st, "g_t")
    out["average 5, training fits"] = (*finish(g_t, lp), f"K={K}")
    out["alpha floor 0.1"] = (*finish(st[0]["g"], st[0]["lp"], 0.1), f"K={K}")
    for m, lab in ((2, "best 2 K"), (3, "best 3 K")):
        ks = o["order"][:m]
        ms = [st[0]] + [o["others"][k] for k in ks[1:]]
        L = np.stack([x["lp"] for x in ms], axis=1)
        w = simplex_weights(L)
        g = sum(wi * x["g"] for wi, x in zip(w, ms))
        out[lab] = (*finish(g, ex.mix_log_prob(L, w)),
                    f"K={ks}, w={np.round(w, 2).tolist()}")
    k2 = o["order"][1]
    pick = min([(st[0], K), (o["others"][k2], k2)], key=lambda t: t[0]["bic"])
    out["BIC of best 2 K"] = (*finish(pick[0]["g"], pick[0]["lp"]), f"K={pick[1]}")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--targets", nargs="*", default=list(bench.TARGETS),
                   choices=list(bench.TARGETS))
    p.add_argument("--ns", nargs="*", type=int, default=[10_000, 100_000],
                   choices=[1_000, 10_000, 100_000])
    p.add_argument("--out-dir", default=RESULTS)
    a = p.parse_args(argv)
    ref = bench._load(RESULTS, "expansion.json")
    if ref is None:
        p.error("needs bench/results/expansion.json (python bench/expansion.py)")
    oracle = {(s["target"], s["N"]): (s["em_ipe"], s["em_K"]) for s in ref["summary"]}
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    rows = []
    for name in a.targets:
        for N in a.ns:
            o = ingredients(bench.TARGETS[name], N)
            em_ipe, em_K = oracle[(name, N)]
            r = dict(target=name, N=N, em_ipe=em_ipe, em_K=em_K, K=o["best"], variants={},
                     refit_cpu_s=[m["cpu"] for m in o["starts"]],
                     refit_cpu_loose_s=[m["cpu"] for m in o["loose"]])
            vs = variants(o)
            for lab, (g, alpha, note) in vs.items():
                r["variants"][lab] = dict(ratio=metrics.ipe(g, o["p_true"], o["grid"]) / em_ipe,
                                          alpha=float(alpha), note=note)
            r["check"] = float(np.max(np.abs(o["g_default"] - vs["average 5 starts"][0]))
                               / o["p_true"].max())
            rows.append(r)
            print(name, N, {k: round(v["ratio"], 3) for k, v in r["variants"].items()},
                  "check", r["check"], file=sys.stderr, flush=True)
    meta = (f"Seed {bench.SEED}; numba threads {numba.get_num_threads()}; 1-min load average "
            f"{load0:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
            f"{time.perf_counter() - t0:.0f} s.")
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "expansion_stack_variants.json"), "w") as fh:
        json.dump(dict(meta=meta, rows=rows), fh, indent=1)
    L = ["# Variants of GMMExpansion's parametric stage", "",
         "Generated by `bench/expansion_stack_variants.py` (its docstring defines the "
         "variants). " + meta, "",
         "IPE of each variant / IPE of EM's best K (the oracle K of `expansion.md`); <= 1 meets "
         "the target.  K: the stage's chosen K.  check: max |default density - the "
         "\"average 5 starts\" rebuild| / max true density (0 = the rebuild is the estimator).",
         "refit CPU: seconds of one core for the chosen K's refits (training rows, then all "
         "rows), summed over the starts, at tolerance 1e-5 (1e-4).", "",
         "| target | N | K (best-EM K) | refit CPU | " + " | ".join(VARIANTS) + " | check |",
         "|" + "---|" * (len(VARIANTS) + 5)]
    for r in rows:
        cells = [f"{r['variants'][v]['ratio']:.3f} (a {r['variants'][v]['alpha']:.2f})"
                 for v in VARIANTS]
        L.append(f"| {r['target']} | {r['N']:.0e} | {r['K']} ({r['em_K']}) | "
                 f"{sum(r['refit_cpu_s']):.1f} ({sum(r['refit_cpu_loose_s']):.1f}) | "
                 + " | ".join(cells) + f" | {r['check']:.1e} |")
    L += ["", "Worst ratio per variant, over the targets tuned on (all but "
          "cusp+lognormal+spike) and over cusp+lognormal+spike:", "",
          "| variant | worst, tuned targets | cusp+lognormal+spike |", "|---|---|---|"]
    for v in VARIANTS:
        old = [r["variants"][v]["ratio"] for r in rows if r["target"] != "cusp+lognormal+spike"]
        new = [r["variants"][v]["ratio"] for r in rows if r["target"] == "cusp+lognormal+spike"]
        L.append(f"| {v} | {max(old, default=np.nan):.3f} | "
                 + " / ".join(f"{x:.3f}" for x in new) + " |")
    with open(os.path.join(a.out_dir, "expansion_stack_variants.md"), "w") as fh:
        fh.write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
