"""Same seed -> same model, bit for bit, on 1 or 2 Numba threads (README: "Results are
bit-identical on 1 or 2 threads for a given chunk_size"; docs/design.md §2).

Each thread count runs in its own interpreter (NUMBA_NUM_THREADS is read once, at import); the
two run side by side and dump the same computations to an .npz, compared byte for byte:

A. seeded fits of every covariance type, float64 and float32, weighted, N = 20000 rows in
   chunks of 1000 (20 chunks, so both threads take part), plus their predictions;
B. seeded fits with chunk_size=7 (many chunks; small blocks);
K. the kernels alone (estep_stats, log_prob) on fixed parameters, chunk sizes 1, 7, 100, N;
E. GMMExpansion fits (its grid kernel) on 60 chunks, explicit and automatic settings.
"""
import os
import textwrap

import numpy as np
import pytest

from _helpers import differing_arrays, run_on_threads

SCRIPT = textwrap.dedent(r"""
    import sys
    import warnings

    import numba
    import numpy as np

    import fastmix

    warnings.simplefilter("ignore")
    out_path, expected_threads, tests_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    assert numba.get_num_threads() == expected_threads, numba.get_num_threads()
    KINDS = ("full", "tied", "diag", "spherical")

    def dump(arrays, key, gm, X):
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            arrays[f"{key}/{name}"] = getattr(gm, name)
        arrays[f"{key}/lower_bounds_"] = np.array(gm.lower_bounds_)
        arrays[f"{key}/score_samples"] = gm.score_samples(X)
        arrays[f"{key}/predict_proba"] = gm.predict_proba(X)
        arrays[f"{key}/predict"] = gm.predict(X)

    arrays = {}
    # A: the README's setting -- N = 20000 rows in chunks of 1000, weighted, f64 and f32
    rng = np.random.default_rng(12345)
    N, D, K = 20000, 6, 5
    centres = 4.0 * rng.normal(size=(K, D))
    X = centres[rng.integers(0, K, size=N)] + rng.normal(size=(N, D)) * rng.uniform(0.5, 2, D)
    sw = rng.uniform(0.1, 2.0, size=N)
    for kind in KINDS:
        for dtype in (np.float64, np.float32):
            Xd = X.astype(dtype)
            gm = fastmix.GaussianMixture(K, covariance_type=kind, random_state=3, chunk_size=1000,
                                         max_iter=15, tol=0.0).fit(Xd, sample_weight=sw)
            dump(arrays, f"A/{kind}/{np.dtype(dtype).name}", gm, Xd)
    # B: small chunks (7 rows: many chunks, blocks below the GEMM threshold of the full kernel)
    X = np.ascontiguousarray(X[:3000, :5])
    for kind in KINDS:
        gm = fastmix.GaussianMixture(4, covariance_type=kind, random_state=3, chunk_size=7,
                                     max_iter=10, tol=0.0).fit(X)
        dump(arrays, f"B/{kind}/chunk7", gm, X)
    # K: the kernels alone, fixed parameters (test_kernels.py's problems), several chunk sizes
    sys.path.insert(0, tests_dir)
    from test_kernels import gmm_params, make_problem
    from fastmix import kernels
    for kind in KINDS:
        X, sw, w, m, c = make_problem(kind, 0)
        kp = gmm_params(w, m, c, kind).kernel_params(X.dtype)
        for chunk in (1, 7, 100, X.shape[0]):
            stats = kernels.estep_stats(X, sw, kp, chunk)
            for name, a in zip(("nk", "s1", "s2", "ll", "ws"), stats):
                arrays[f"K/{kind}/{chunk}/estep_stats/{name}"] = np.asarray(a)
            for name, a in zip(("logp", "labels", "resp"), kernels.log_prob(X, kp, chunk, True)):
                arrays[f"K/{kind}/{chunk}/log_prob/{name}"] = a
    # E: the GMM-expansion grid kernel (its own slots), a 2-D tensor grid, 60 chunks
    rng = np.random.default_rng(7)
    Xe = rng.standard_t(3, size=(60000, 2))
    for n_nodes in (16, "auto"):
        ex = fastmix.GMMExpansion(n_nodes, chunk_size=1000, random_state=0).fit(Xe)
        arrays[f"E/{n_nodes}/weights_"] = ex.weights_
        arrays[f"E/{n_nodes}/score_samples"] = ex.score_samples(Xe[:5000])
    np.savez(out_path, **arrays)
""")


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    """The arrays dumped by the script on 1 and 2 threads (the two run side by side)."""
    return run_on_threads(SCRIPT, tmp_path_factory.mktemp("determinism"), "fit_models",
                          args=(os.path.dirname(os.path.abspath(__file__)),), timeout=400)


def _compare(one, two, prefix):
    keys = sorted(k for k in one if k.startswith(prefix))
    assert keys and keys == sorted(k for k in two if k.startswith(prefix))
    for k in keys:
        if one[k].dtype.kind == "f":
            assert np.all(np.isfinite(one[k])), k
    return differing_arrays(one, two, keys)


def test_bit_identical_on_one_and_two_threads(dumps):
    differing = _compare(*dumps, "A/")
    assert not differing, f"not bit-identical on 1 vs 2 threads: {differing}"


def test_bit_identical_on_one_and_two_threads_small_chunks(dumps):
    """Same promise with chunk_size=7 (many chunks, every kernel path)."""
    differing = _compare(*dumps, "B/")
    assert not differing, f"not bit-identical on 1 vs 2 threads: {differing}"


def test_expansion_bit_identical_on_one_and_two_threads(dumps):
    """GMMExpansion's grid kernel: its slots of consecutive chunks must not depend on the
    thread count (they did: 4 slots per thread, so 1 and 2 threads summed different groups)."""
    differing = _compare(*dumps, "E/")
    assert not differing, f"not bit-identical on 1 vs 2 threads: {differing}"


def test_kernels_bit_identical_on_one_and_two_threads(dumps):
    """The kernels themselves, on fixed parameters: estep_stats (the fused E-step) and log_prob
    must give the same bits on 1 and 2 threads for a given chunk_rows.  (This caught a real
    bug: with fast-math re-association LLVM chose between a vector and a scalar loop by a
    run-time alias check, so the last bits depended on the heap layout.)"""
    differing = _compare(*dumps, "K/")
    assert not differing, f"not bit-identical on 1 vs 2 threads: {differing}"


def test_same_seed_same_model_in_process():
    """The same seeded fit, repeated in one process (with other allocations in between, as in
    any program), gives the same model bits."""
    import fastmix
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0], [6, 0, 0], [0, 6, 0], [0, 0, 6]], dtype=float)
    X = centres[np.repeat(np.arange(4), 100)] + rng.normal(size=(400, 3))
    distinct = {}
    for kind in ("full", "tied", "diag", "spherical"):
        models = set()
        for t in range(12):
            junk = [np.empty(int(n)) for n in rng.integers(1, 300, size=t % 5 + 1)]
            gm = fastmix.GaussianMixture(4, covariance_type=kind, max_iter=30, random_state=42)
            gm.fit(X)
            models.add(gm.means_.tobytes() + gm.covariances_.tobytes())
            del junk
        if len(models) > 1:
            distinct[kind] = len(models)
    assert not distinct, f"distinct models from 12 identical fits: {distinct}"
