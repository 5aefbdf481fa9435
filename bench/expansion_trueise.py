#!/usr/bin/env python
"""True IPE and ISE of ``GMMExpansion``'s parametric stage forced to each K (alpha 0).

For one target of ``bench/expansion.py`` and one N, the stage's sweep is restricted to each K
of the list in turn (as ``bench/expansion_check.py truekl``), the expansion's weight set to 0
(the EM part alone: the average of the K's five starts, refitted on all rows), and the fitted
density compared with the true one on the target's integration grid: the integrated absolute
error (IPE, the item's criterion) and the integrated squared error (ISE).  Where the ISE
ranks K as the IPE does, a held-out estimate of the ISE could choose K; where it does not,
even its exact value picks a K the IPE rejects.

Usage::

    python bench/expansion_trueise.py cusp+lognormal+spike 1e4 6,8,10,12,16,20,24
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import fastmix  # noqa: E402
import numba  # noqa: E402

import expansion as bench  # noqa: E402
import expansion_check as ec  # noqa: E402
from fastmix import expansion as rules  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("target", choices=sorted(bench.TARGETS))
    ap.add_argument("n", help="rows, e.g. 1e4 (a cell of bench/results/expansion.json)")
    ap.add_argument("ks", help="comma-separated K, e.g. 8,10,12,16")
    args = ap.parse_args(argv)
    numba.set_num_threads(1)  # as bench/expansion.py's tables
    target = bench.TARGETS[args.target]
    N = int(float(args.n))
    grid, pts, shape, p = ec._truth(target)
    X = target.sample(max(N, 10**5), np.random.default_rng(bench.SEED))[:N]
    best = ec.oracle()[(args.target, N)]
    print(f"{args.target} N = {N}: best EM IPE {best:.4f}")
    for K in (int(k) for k in args.ks.split(",")):
        rules.STACK_KS = (K,)
        m = fastmix.GMMExpansion(random_state=bench.SEED).fit(X)
        m._set_weights(m.node_weights_, 0.0, m._param, m.stack_)
        q = np.exp(m.score_samples(pts).reshape(shape))
        ipe, ise = bench.errors(q, p, grid)
        print(f"  K {K:2d}  IPE {ipe:.4f} (ratio {ipe / best:.2f})  ISE {ise:.3e}", flush=True)


if __name__ == "__main__":
    main()
