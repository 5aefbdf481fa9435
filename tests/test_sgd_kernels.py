"""SGD kernels (work in progress for issue 5): batch-size-1 and mini-batch steps against the
NumPy reference of the closed-form gradients."""
import numpy as np
import pytest

from fastmix.kernels.cpu import sgd as cpu_sgd
from fastmix.sgd import toroidal_smoothing

import reference as ref
from _helpers import assert_close


_torus_g = toroidal_smoothing  # the driver's smoothing (tested in test_sgd.py)


def _setup(K=9, D=5, N=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, size=(N, D))
    xi = rng.normal(0, 0.1, size=K)
    mu = rng.uniform(0.3, 0.7, size=(K, D))
    s = rng.uniform(1.0, 3.0, size=(K, D))
    return X, xi, mu, s


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("sigma,n", [(None, 3), (0.8, 3), (0.4, 6)])
def test_single_steps_match_reference(exact, sigma, n):
    """sigma None: g = I (argmax path, one component updated); 0.8 on 3 x 3: dense; 0.4 on
    6 x 6: truncated (zero weights, those components skipped); D = 70 > 16 * LANES entries,
    so the blocked log-determinant update runs through a full block and a ragged tail."""
    K = n * n
    X, xi, mu, s = _setup(K=K, D=5 if n == 3 else 70)
    g = np.eye(K) if sigma is None else ref.toroidal_smoothing(n, sigma)
    assert sigma != 0.4 or 0 < np.count_nonzero(g[0]) < K
    lam, eps, s_min, s_max = (1.0, 0.7, 0.5), 0.05, 1e-6, np.sqrt(20.0)
    a = (xi.copy(), mu.copy(), s.copy())
    out = np.empty(X.shape[0])
    cpu_sgd.sgd_step_single(X, *a, g, exact, eps, *lam, s_min, s_max, out)
    b = (xi.copy(), mu.copy(), s.copy())
    objs = []
    for x in X:
        *b, obj = ref.sgd_step(x, *b, g, exact, eps, lam, s_min, s_max)
        objs.append(obj)
    assert_close(a[0], b[0], 1e-10)
    assert_close(a[1], b[1], 1e-10)
    assert_close(a[2], b[2], 1e-10)
    assert_close(out, np.array(objs), 1e-10)


def test_minibatch_matches_averaged_reference_gradients():
    X, xi, mu, s = _setup(N=30)
    g = _torus_g(3, 0.8)
    lam, eps = (1.0, 1.0, 1.0), 0.1
    a = (xi.copy(), mu.copy(), s.copy())
    out = np.empty(3)
    cpu_sgd.sgd_minibatch(X, 10, *a, g, False, eps, *lam, 1e-6, 10.0, out)
    b = [xi.copy(), mu.copy(), s.copy()]
    for start in range(0, 30, 10):
        steps = [ref.sgd_step(x, *b, g, False, eps, lam, -np.inf, np.inf) for x in X[start:start + 10]]
        # the mini-batch step is the mean of the single steps taken from the same parameters
        b = [np.mean([st[i] for st in steps], axis=0) for i in range(3)]
        b[2] = np.clip(b[2], 1e-6, 10.0)
        assert_close(out[start // 10], np.mean([st[3] for st in steps]), 1e-10)
    for got, want in zip(a, b):
        assert_close(got, want, 1e-10)


def test_clipping_keeps_precisions_in_range():
    X, xi, mu, s = _setup()
    X = X * 50  # far-away samples drive s down hard
    out = np.empty(X.shape[0])
    cpu_sgd.sgd_step_single(X, xi, mu, s, np.eye(9), False, 0.5, 1.0, 1.0, 1.0, 1e-3, 4.0, out)
    assert np.all(s >= 1e-3) and np.all(s <= 4.0) and np.all(np.isfinite(mu))


_THREADS_SCRIPT = r"""
import sys
import numba
import numpy as np
import fastmix
from fastmix.kernels.cpu import sgd as cpu_sgd
from fastmix.sgd import toroidal_smoothing

out_path, expected = sys.argv[1], int(sys.argv[2])
assert numba.get_num_threads() == expected, numba.get_num_threads()
rng = np.random.default_rng(7)
X = rng.uniform(0, 1, size=(1500, 41))
arrays = {}
for sigma in (1.25, 0.4, 0.0):
    for exact in (False, True):
        xi = rng.normal(0, 0.1, 25)
        mu = rng.uniform(0.2, 0.8, size=(25, 41))
        s = rng.uniform(1.0, 4.0, size=(25, 41))
        out = np.empty(-(-1500 // 64))
        cpu_sgd.sgd_minibatch(X, 64, xi, mu, s, toroidal_smoothing(5, sigma), exact, 0.05,
                              1.0, 1.0, 1.0, 1e-6, 20 ** 0.5, out)
        for name, a in (("xi", xi), ("mu", mu), ("s", s), ("out", out)):
            arrays[f"{sigma}/{exact}/{name}"] = a
m = fastmix.SGDGaussianMixture(25, batch_size=32, n_epochs=2, anneal_window=20,
                               random_state=0).fit(X)
arrays["fit/means"] = m.means_
arrays["fit/precisions"] = m.precisions_
arrays["fit/weights"] = m.weights_
np.savez(out_path, **arrays)
"""


def test_minibatch_bit_identical_on_one_and_two_threads(tmp_path):
    """The mini-batch kernel runs prange over components; its results (and a fit through it)
    must not depend on the thread count.  Each count runs in its own interpreter
    (NUMBA_NUM_THREADS is read at import), as in tests/test_determinism.py."""
    import os
    import subprocess
    import sys
    script = tmp_path / "mb.py"
    script.write_text(_THREADS_SCRIPT)
    procs = []
    for threads in (1, 2):
        import fastmix  # the subprocesses import the same fastmix as this test
        root = os.path.dirname(os.path.dirname(os.path.abspath(fastmix.__file__)))
        env = dict(os.environ, NUMBA_NUM_THREADS=str(threads),
                   PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
        out = tmp_path / f"mb_{threads}.npz"
        procs.append((subprocess.Popen([sys.executable, str(script), str(out), str(threads)],
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True), out))
    dumps = []
    for proc, out in procs:
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-3000:]
        with np.load(out) as z:
            dumps.append({k: z[k] for k in z.files})
    one, two = dumps
    assert sorted(one) == sorted(two) and len(one) == 27
    differing = [k for k in one if one[k].tobytes() != two[k].tobytes()]
    assert not differing, f"not bit-identical on 1 vs 2 threads: {differing}"
    assert all(np.all(np.isfinite(v)) for v in one.values())


# ------------------------------------------------------------ local principal directions ---
def _lpd_setup(K=9, S=3, D=7, N=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, size=(N, D))
    xi = rng.normal(0, 0.1, size=K)
    mu = rng.uniform(0.3, 0.7, size=(K, D))
    U = np.stack([np.linalg.qr(rng.normal(size=(D, S)))[0].T for _ in range(K)])
    a = rng.uniform(1.0, 3.0, size=(K, S))
    r = rng.uniform(1.5, 3.0, size=K)
    return X, xi, mu, U, a, r


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("sigma,n", [(None, 3), (0.8, 3), (0.4, 6)])
def test_lpd_single_steps_match_reference(exact, sigma, n):
    K = n * n
    X, xi, mu, U, a, r = _lpd_setup(K=K)
    g = np.eye(K) if sigma is None else ref.toroidal_smoothing(n, sigma)
    lam, eps, s_min, s_max = (1.0, 0.7, 0.5), 0.02, 1e-6, np.sqrt(20.0)
    got = [v.copy() for v in (xi, mu, U, a, r)]
    out = np.empty(X.shape[0])
    cpu_sgd.sgd_lpd_step_single(X, *got, g, exact, eps, *lam, s_min, s_max, out)
    want = [v.copy() for v in (xi, mu, U, a, r)]
    objs = []
    for x in X:
        *want, obj = ref.lpd_step(x, *want, g, exact, eps, lam, s_min, s_max)
        objs.append(obj)
    for name, u, v in zip(("xi", "mu", "U", "a", "r"), got, want):
        assert_close(u, v, 1e-9), name
    assert_close(out, np.array(objs), 1e-9)
    # directions stay orthonormal
    for k in range(K):
        assert_close(got[2][k] @ got[2][k].T, np.eye(3), 1e-13)


def test_lpd_minibatch_matches_averaged_reference_gradients():
    X, xi, mu, U, a, r = _lpd_setup(N=30)
    g = ref.toroidal_smoothing(3, 0.8)
    lam, eps = (1.0, 1.0, 1.0), 0.01
    got = [v.copy() for v in (xi, mu, U, a, r)]
    out = np.empty(3)
    cpu_sgd.sgd_lpd_minibatch(X, 10, *got, g, False, eps, *lam, 1e-6, 10.0, out)
    cur = [v.copy() for v in (xi, mu, U, a, r)]
    for start in range(0, 30, 10):
        # the mini-batch step is the mean of the single steps taken from the same parameters
        # (unclipped, not re-orthonormalised); then clip and re-orthonormalise once
        steps = [ref.lpd_step(x, *cur, g, False, eps, lam, -np.inf, np.inf,
                              orthonormalise=False) for x in X[start:start + 10]]
        new = [np.mean([st[i] for st in steps], axis=0) for i in range(5)]
        new[3] = np.clip(new[3], 1e-6, 10.0)
        new[4] = np.clip(new[4], 1e-6, 10.0)
        new[2] = ref.lpd_orthonormalise(new[2])
        assert_close(out[start // 10], np.mean([st[5] for st in steps]), 1e-10)
        cur = new
    for u, v in zip(got, cur):
        assert_close(u, v, 1e-9)


def test_lpd_minibatch_bad_start_keeps_directions_orthonormal():
    X, xi, mu, U, a, r = _lpd_setup(K=4, S=4, D=30, N=400, seed=3)
    X = X * 3.0
    out = np.empty(400 // 16)
    cpu_sgd.sgd_lpd_minibatch(X, 16, xi, mu, U, a, r, np.eye(4), False, 0.2, 1.0, 1.0, 1.0,
                              1e-3, 4.0, out)
    assert np.all(np.isfinite(mu)) and np.all(np.isfinite(U))
    assert np.all((a >= 1e-3) & (a <= 4.0)) and np.all((r >= 1e-3) & (r <= 4.0))
    for k in range(4):
        assert_close(U[k] @ U[k].T, np.eye(4), 1e-13)
