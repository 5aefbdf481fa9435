#!/usr/bin/env python
"""Averaging the parametric stage's EM part over a window of K: a twelfth rule for issue 17 item 4.

The parametric stage of ``GMMExpansion`` (``fastmix/mixture/_expansion.py``) sweeps K, keeps
the K whose best start has the highest held-out score, and deploys the equal-weight average of
that K's five starts.  ``bench/results/expansion_alpha_rules.md`` (sections 1-4) shows that on
cusp+lognormal+spike at N = 1e4 only one K's member passes and that no likelihood criterion
singles it out.  This script asks whether deploying *several* K at once helps: under- and
over-fitted members err in opposite directions, so their average can beat each of them.

For every target of ``bench/expansion.py``, N and ``random_state`` r, it rebuilds the stage of
``GMMExpansion(random_state=r)`` with the estimator's own pieces (the held-out split, the pure
expansion on the training rows and on all rows, the k-means++ seeds drawn from r, the sweep's
fits, the refits on the training rows and on all rows) but sweeps *every* K of ``STACK_KS``
(up to the stage's size limit), and keeps each start's held-out log-density and its density on
the target's integration grid.  Rules, each followed by the stage's own alpha rule
(``stack_alpha``, with its z threshold or with another):

* ``now``: the estimator's rule (the K of the best start's score, with the sweep's patience;
  the average of its starts).  The ``check`` column compares it with
  ``GMMExpansion(random_state=r).fit(X)`` itself (max density difference / max true density;
  it must be ~1e-15);
* ``below c``: the equal-weight average of the members (each K's average of starts) of every K
  *up to* the chosen one that the held-out rows do not reject at c standard errors: K joins
  when mean(d) <= c sd(d) / sqrt(n) for d = log q_K0 - log q_K per held-out row (both floored
  at log(1e-6 / the volume of the data's range), the floor of the expansion's own held-out
  selection, ``AUTO_FLOOR``, with the data's range for its grid box), K0 the chosen K;
* ``all c``: the same over every K the sweep tried (the chosen K's two successors too).

IPE ratio = IPE / the best-EM IPE of ``bench/results/expansion.json`` (the table's bar).

Usage::

    python bench/expansion_windows.py                       # every cell at N >= 1e4, random_state 0-4
    python bench/expansion_windows.py --ns 1e4 --states 5 --targets cusp+lognormal+spike

Writes ``bench/results/expansion_windows.{md,json}`` (``--out-dir`` elsewhere).  Each cell's
arrays are cached under ``--cache`` (default: a folder in the system's temporary directory), so
a rerun only evaluates.  Numba threads 1, as the tables.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CS = (0.5, 1.0, 1.5, 2.0)
ZS = (1.0, 0.5, 0.0)


def _setup():
    sys.path.insert(0, os.path.dirname(HERE))
    import fastmix  # noqa: F401  before bench/ so this checkout is the one imported
    sys.path.insert(0, HERE)
    import numba
    numba.set_num_threads(1)


def collect(name, N, rs, path):
    """Rebuild the stage of GMMExpansion(random_state=rs) on the table's sample of ``name``,
    sweeping every K; save the members' held-out log-densities and grid densities to path."""
    import expansion as bench
    from expansion_check import _truth, stage_inputs
    from fastmix import GMMExpansion
    from fastmix import expansion as ex
    from fastmix.mixture._expansion import GMMExpansion as GE
    target = bench.TARGETS[name]
    grid, pts, shape, p = _truth(target)
    X = target.sample(max(N, 10**5), np.random.default_rng(bench.SEED))[:N]
    st = stage_inputs(X, rs)
    Xt, Xh, Xs, seeds, kmax = st["Xt"], st["Xh"], st["Xs"], st["seeds"], st["kmax"]
    out = dict(lp_exp=st["lp_exp"], inside=st["inside"],
               q_pure=np.exp(GMMExpansion(parametric=None, random_state=rs).fit(X)
                             .score_samples(pts)))
    chosen = dict(tol=ex.STACK_TOL, max_iter=ex.STACK_MAX_ITER)
    Ks = []
    for K in ex.STACK_KS:
        if K > kmax:
            break
        fits = []
        for seed in seeds[:1] if K == 1 else seeds:
            try:
                em = GE._em_member(K, Xs, None, seed=seed, tol=ex.STACK_SWEEP_TOL)
            except (ValueError, np.linalg.LinAlgError):
                continue
            fits.append((float(np.mean(em.score_samples(Xh))), len(fits), em))
        if not fits:
            break
        fits.sort(key=lambda f: (-f[0], f[1]))  # best first, as _choose_em
        lp_t, q_all = [], []
        for f in fits:
            em_t = GE._em_member(K, Xt, None, warm=f[2], **chosen)
            lp_t.append(em_t.score_samples(Xh))
            em_a = GE._em_member(K, X, None, warm=em_t, **chosen)
            q_all.append(np.exp(em_a.score_samples(pts)))
        Ks.append(K)
        out[f"sweep_{K}"] = np.array([f[0] for f in fits])
        out[f"lpt_{K}"] = np.array(lp_t)
        out[f"q_{K}"] = np.array(q_all)
    out["Ks"] = np.array(Ks)
    np.savez_compressed(path, **out)


def _chosen(sweep, Ks):
    """The estimator's K: the best start's score, the sweep stopping after STACK_PATIENCE K
    without improvement; and the K the sweep tried."""
    from fastmix import expansion as ex
    best, bad = None, 0
    for i, K in enumerate(Ks):
        if best is None or sweep[K] > sweep[best]:
            best, bad = K, 0
        else:
            bad += 1
            if bad >= ex.STACK_PATIENCE:
                return best, Ks[:i + 1]
    return best, list(Ks)


def evaluate(path, name, N, rs, check):
    """{rule: IPE ratio}, the window of each rule, and the check of rule "now"."""
    import expansion as bench
    from expansion_check import _truth, oracle
    from fastmix import GMMExpansion
    from fastmix import expansion as ex
    target = bench.TARGETS[name]
    grid, pts, shape, p = _truth(target)
    bar = oracle()[(name, N)]
    X = target.sample(max(N, 10**5), np.random.default_rng(bench.SEED))[:N]
    floor = np.log(1e-6) - np.log(np.prod(np.ptp(X, axis=0)))
    z = np.load(path)
    Ks = [int(K) for K in z["Ks"]]
    lp = {K: ex.mix_log_prob(z[f"lpt_{K}"].T, np.full(len(z[f"lpt_{K}"]), 1.0 / len(z[f"lpt_{K}"])))
          for K in Ks}
    q = {K: z[f"q_{K}"].mean(axis=0) for K in Ks}
    K0, tried = _chosen({K: float(z[f"sweep_{K}"][0]) for K in Ks}, Ks)
    ok = z["inside"]

    def window(c, side):
        W = []
        for K in tried:
            if side == "below" and K > K0:
                continue
            d = np.maximum(lp[K0], floor) - np.maximum(lp[K], floor)
            if K == K0 or d.mean() <= c * d.std() / np.sqrt(d.size):
                W.append(K)
        return W

    rules = {"now": [K0]}
    for c in CS:
        rules[f"below {c:g}"] = window(c, "below")
        rules[f"all {c:g}"] = window(c, "all")
    ratios, alphas = {}, {}
    for rule, W in rules.items():
        lp_par = ex.mix_log_prob(np.stack([lp[K] for K in W], axis=1), np.full(len(W), 1 / len(W)))
        q_par = np.mean([q[K] for K in W], axis=0)
        a_best = ex.best_alpha(z["lp_exp"][ok], lp_par[ok])
        zz = ex.stack_alpha(z["lp_exp"][ok], lp_par[ok])[1]
        for zt in ZS:
            a = a_best if zz >= zt else 0.0
            dens = a * z["q_pure"] + (1 - a) * q_par
            key = f"{rule}, z {zt:g}"
            ratios[key] = bench.errors(dens.reshape(shape), p, grid)[0] / bar
            alphas[key] = a
            if rule == "now" and zt == ex.STACK_MIN_Z:
                now_dens = dens
    chk = None
    if check:
        m = GMMExpansion(random_state=rs).fit(X)
        chk = float(np.max(np.abs(np.exp(m.score_samples(pts)) - now_dens)) / p.max())
    return dict(target=name, N=N, random_state=rs, K0=K0, windows=rules, ratios=ratios,
                alphas=alphas, check=chk)


def markdown(rows, meta):
    import expansion as bench  # noqa: F401
    keys = list(rows[0]["ratios"])
    cells = sorted({(r["target"], r["N"]) for r in rows}, key=lambda c: (c[1], c[0]))
    med = {(c, k): float(np.median([r["ratios"][k] for r in rows if (r["target"], r["N"]) == c]))
           for c in cells for k in keys}
    seed0 = {(c, k): r["ratios"][k] for r in rows if r["random_state"] == 0
             for c in [(r["target"], r["N"])] for k in keys}
    out = ["# Parametric stage: the EM part averaged over a window of K (a twelfth rule, not adopted)",
           "", f"Generated by `python bench/expansion_windows.py` ({meta}).  The script's "
           "docstring defines the rules.  IPE ratio = IPE / the table's best-EM IPE "
           "(`expansion.json`); a miss is > 1.  IPEs are deterministic (seed 0 data, seeded "
           "starts).", "",
           "## Summary: misses per rule", "",
           "Seed 0: the cells of `expansion.md` (random_state 0).  Medians: the median over "
           "random_state of each cell.", "",
           "| rule | seed 0: misses | seed 0: largest ratio | medians > 1 | largest median |",
           "|---|--:|--:|--:|--:|"]
    for k in keys:
        s0 = [seed0[(c, k)] for c in cells if (c, k) in seed0]
        md = [med[(c, k)] for c in cells]
        out.append(f"| {k} | {sum(v > 1 for v in s0)} | {max(s0):.3f} | "
                   f"{sum(v > 1 for v in md)} | {max(md):.3f} |")
    out += ["", "## Per cell: seed 0 ratio / median over random_state", "",
            "| rule | " + " | ".join(f"{c[0]} {c[1]:.0e}" for c in cells) + " |",
            "|---|" + "--:|" * len(cells)]
    for k in keys:
        out.append(f"| {k} | " + " | ".join(
            f"{seed0.get((c, k), float('nan')):.2f} / {med[(c, k)]:.2f}" for c in cells) + " |")
    out += ["", "## Windows (K averaged) and checks, per cell and random_state", "",
            "| target | N | r | chosen K | below 1 | below 1.5 | all 1 | now: ratio | "
            "below 1.5, z 1: ratio | check |", "|---|---|--:|--:|---|---|---|--:|--:|--:|"]
    for r in rows:
        w = r["windows"]
        out.append(f"| {r['target']} | {r['N']:.0e} | {r['random_state']} | {r['K0']} | "
                   f"{w['below 1']} | {w['below 1.5']} | {w['all 1']} | "
                   f"{r['ratios']['now, z 1']:.3f} | {r['ratios']['below 1.5, z 1']:.3f} | "
                   + ("" if r["check"] is None else f"{r['check']:.1e}") + " |")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", default="", help="comma-separated (default: all)")
    ap.add_argument("--ns", default="1e4,5e4,1e5", help="the N (those of the table)")
    ap.add_argument("--states", type=int, default=5, help="random_state 0 .. states-1")
    ap.add_argument("--check-states", type=int, default=1,
                    help="compare rule 'now' with the estimator for random_state below this")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(),
                                                    "fastmix-expansion-windows"))
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    _setup()
    import expansion as bench
    os.makedirs(args.cache, exist_ok=True)
    names = args.targets.split(",") if args.targets else list(bench.TARGETS)
    t0 = time.time()
    load0 = os.getloadavg()[0]
    from expansion_check import oracle
    cells = oracle()  # the table's (target, N) with a bar
    rows = []
    for N in (int(float(n)) for n in args.ns.split(",")):
        for name in names:
            if (name, N) not in cells:
                continue
            for rs in range(args.states):
                path = os.path.join(args.cache, f"{name}_{N}_{rs}.npz")
                if not os.path.exists(path):
                    collect(name, N, rs, path)
                rows.append(evaluate(path, name, N, rs, rs < args.check_states))
                r = rows[-1]
                print(f"{name} N={N} r={rs}: K {r['K0']}  now {r['ratios']['now, z 1']:.3f}  "
                      f"below 1.5 {r['ratios']['below 1.5, z 1']:.3f} "
                      f"{r['windows']['below 1.5']}  check {r['check']}  "
                      f"{time.time() - t0:.0f} s", flush=True)
    meta = (f"random_state 0-{args.states - 1}, N {args.ns}; numba threads 1; "
            f"{platform.machine()}, {os.cpu_count()} cores; 1-min load average {load0:.2f} at "
            f"start, {os.getloadavg()[0]:.2f} at end; {time.time() - t0:.0f} s")
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "expansion_windows.json"), "w") as fh:
        json.dump(dict(meta=meta, rows=rows), fh, indent=1)
    with open(os.path.join(args.out_dir, "expansion_windows.md"), "w") as fh:
        fh.write(markdown(rows, meta))


if __name__ == "__main__":
    main()
