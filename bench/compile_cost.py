#!/usr/bin/env python
"""Compile cost of the E-step passes as instruction counts (valgrind's callgrind).

Why: the cold first fit's time is mostly Numba compiling one E-step pass, and on a shared or
virtual machine its wall and CPU time vary by a second or more between identical runs (the
same cold fit took 4.41-5.87 s on the 2-core development VM), which hides the 0.1-0.5 s effects
of a kernel change.  The number of instructions the process executes does not depend on the
machine's speed or load: it is reproducible, and differences between checkouts are the
compile work a change adds or removes.

What runs: for every checkout, covariance type and dtype, a fresh interpreter under
``valgrind --tool=callgrind`` with an empty ``NUMBA_CACHE_DIR`` imports that checkout's
fastmix, builds fixed parameters with NumPy (K = D = 16, means N(0, 1), unit covariances, so
every kind has its shared centre: full runs ``pass_full_expanded``, diag and spherical
``pass_diag``) and runs one E-step (``fastmix.em.e_step_stats``) on 3000 rows: import plus
the pass's compile, no k-means start and no scoring kernel.  ``--import-only`` runs the same
script without the E-step, the baseline to subtract.  Each run takes 3-6 minutes on one core
(callgrind is ~50x slower than native); ``--jobs`` runs that many side by side.

Usage::

    python bench/compile_cost.py --kinds full,tied --dtypes float64 \\
        --checkout base=/tmp/base --checkout new=. --jobs 2

Prints one row per run: instructions (callgrind's "Collected"), and minus the import-only
baseline of the same checkout when ``--import-only`` is given.  Needs ``valgrind`` on PATH.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

SCRIPT = r"""
import sys
import numpy as np
import fastmix
from fastmix._params import Covariance, GMMParams
from fastmix.em import e_step_stats
kind, dtype, run = sys.argv[1], np.dtype(sys.argv[2]), sys.argv[3] == "1"
K, D = 16, 16
rng = np.random.default_rng(0)
means = rng.normal(size=(K, D))
cov = {"full": np.broadcast_to(np.eye(D), (K, D, D)).copy(), "tied": np.eye(D),
       "diag": np.ones((K, D)), "spherical": np.ones(K)}[kind]
params = GMMParams(np.full(K, 1.0 / K), means, Covariance.registry[kind].from_covariances(cov))
X = (means[rng.integers(K, size=3000)] + rng.normal(size=(3000, D))).astype(dtype)
if run:
    e_step_stats(X, None, params)
"""


def count(checkout, kind, dtype, run):
    """callgrind's instruction count of SCRIPT for one checkout (None if it failed)."""
    with tempfile.TemporaryDirectory(prefix="fastmix-cc-") as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(tmp, "cache"),
                   PYTHONPATH=os.path.abspath(checkout))
        cmd = ["valgrind", "--tool=callgrind", "--smc-check=all-non-file",
               f"--callgrind-out-file={os.path.join(tmp, 'cg.out')}", sys.executable, "-c",
               SCRIPT, kind, dtype, "1" if run else "0"]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp)
        m = re.search(r"Collected : (\d+)", p.stderr)
        if p.returncode or m is None:
            print(p.stderr[-2000:], file=sys.stderr)
            return None
        return int(m.group(1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kinds", default="full,tied,diag,spherical")
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--checkout", action="append", default=[],
                   help="LABEL=DIR of a fastmix checkout (repeatable; default: this one)")
    p.add_argument("--import-only", action="store_true",
                   help="also count the import alone per checkout and subtract it")
    p.add_argument("--jobs", type=int, default=1)
    args = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (e.g. apt-get install valgrind)")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkouts = [c.split("=", 1) for c in args.checkout] or [["this", here]]
    jobs = [(label, d, k, t, True) for label, d in checkouts
            for k in args.kinds.split(",") for t in args.dtypes.split(",")]
    if args.import_only:
        jobs += [(label, d, "diag", "float64", False) for label, d in checkouts]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        counts = list(pool.map(lambda j: count(j[1], j[2], j[3], j[4]), jobs))
    base = {j[0]: c for j, c in zip(jobs, counts) if not j[4]}
    print("| checkout | kind | dtype | instructions | minus import |")
    print("|---|---|---|--:|--:|")
    for (label, _, kind, dtype, run), c in zip(jobs, counts):
        if not run:
            continue
        b = base.get(label)
        rest = "" if c is None or b is None else f"{(c - b) / 1e9:.2f}e9"
        print(f"| {label} | {kind} | {dtype} | "
              f"{'failed' if c is None else f'{c / 1e9:.2f}e9'} | {rest} |")
    for label, b in base.items():
        print(f"| {label} | (import only) | | {'failed' if b is None else f'{b / 1e9:.2f}e9'} | |")


if __name__ == "__main__":
    main()
