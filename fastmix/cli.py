"""Command line: ``fastmix demo`` (``python -m fastmix demo``).

The demo generates points from a known Gaussian mixture, fits ``fastmix.GaussianMixture`` with a
progress bar, and reports per-iteration time, the final lower bound and how close the fitted
means are to the truth.
"""
import argparse
import sys
import time

import numpy as np


def make_blobs(n, d, k, dtype=np.float64, separation=8.0, random_state=0):
    """n points (n, d) from a k-component mixture with well-separated means.

    Means are uniform in a cube of side ``separation * k**(1/d)``; each component has a random
    diagonal scale in [0.5, 1.5] and a random weight.  Returns (X, labels, true_means, weights).
    """
    rng = np.random.default_rng(random_state)
    side = separation * k ** (1.0 / d)
    means = rng.uniform(-side / 2, side / 2, size=(k, d))
    scales = rng.uniform(0.5, 1.5, size=(k, d))
    weights = rng.dirichlet(np.full(k, 5.0))
    labels = rng.choice(k, size=n, p=weights)
    X = np.empty((n, d), dtype=dtype)
    step = 1 << 18  # generate in blocks to keep the temporary memory small
    for s in range(0, n, step):
        e = min(n, s + step)
        lab = labels[s:e]
        X[s:e] = means[lab] + rng.standard_normal((e - s, d)) * scales[lab]
    return X, labels, means, weights


def _match_means(fitted, true):
    """Max over true means of the distance to the nearest fitted mean, after optimal matching."""
    from scipy.optimize import linear_sum_assignment
    cost = np.linalg.norm(true[:, None, :] - fitted[None, :, :], axis=2)
    r, c = linear_sum_assignment(cost)
    return cost[r, c]


def demo(argv=None):
    p = argparse.ArgumentParser(prog="fastmix demo",
                                description="Fit a GMM to generated data and compare with the truth.")
    p.add_argument("-n", "--n-samples", type=int, default=1_000_000)
    p.add_argument("-d", "--n-features", type=int, default=16)
    p.add_argument("-k", "--n-components", type=int, default=16)
    p.add_argument("--covariance-type", default="diag",
                   choices=["full", "tied", "diag", "spherical"])
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = p.parse_args(argv)

    import fastmix
    from fastmix import kernels

    n, d, k = args.n_samples, args.n_features, args.n_components
    dtype = np.dtype(args.dtype)
    print(f"fastmix {fastmix.__version__} demo: {n:,} x {d} points ({dtype}), {k} true "
          f"components, covariance_type={args.covariance_type!r}, "
          f"{kernels.num_threads()} threads")
    t0 = time.perf_counter()
    X, _, true_means, _ = make_blobs(n, d, k, dtype=dtype, random_state=args.seed)
    print(f"generated {X.nbytes / 2**20:.0f} MiB in {time.perf_counter() - t0:.2f} s")

    gm = fastmix.GaussianMixture(k, covariance_type=args.covariance_type, max_iter=args.max_iter,
                                 tol=args.tol, random_state=args.seed,
                                 progress=not args.no_progress)
    t0 = time.perf_counter()
    gm.fit(X)
    total = time.perf_counter() - t0
    it = np.array(gm.iteration_times_)
    print(f"fit: {total:.2f} s total (includes initialisation and any JIT compilation), "
          f"{gm.n_iter_} EM iterations, converged={gm.converged_}")
    if it.size:
        print(f"per EM iteration: median {np.median(it) * 1e3:.1f} ms, "
              f"min {it.min() * 1e3:.1f} ms, first {it[0] * 1e3:.1f} ms")
    print(f"final lower bound (mean log-likelihood per point): {gm.lower_bound_:.6f}")
    dist = _match_means(gm.means_, true_means)
    print(f"fitted vs true means (matched): max distance {dist.max():.4f}, "
          f"median {np.median(dist):.4f}; {(dist < 0.1).sum()}/{k} true means recovered "
          "within 0.1")
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: fastmix demo [options]   (fastmix demo --help for the options)")
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "demo":
        return demo(rest)
    print(f"fastmix: unknown command {cmd!r}; available: demo", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
