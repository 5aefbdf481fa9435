"""The per-row math of ``fastmix/kernels/_shared.py`` (compiled for the CPU and for CUDA) against
plain NumPy: run as Python and as the CPU kernels compile it."""
import math

import numpy as np
import pytest

from fastmix.kernels import _shared
from fastmix.kernels.cpu import expansion as cpu_expansion
from fastmix.kernels.cpu import sgd as cpu_sgd


def _window_reference(x, lo, h, n_nodes, W, inv_sig):
    k = min(max(int(np.floor((x - lo) / h + 0.5)), 0), n_nodes - 1)
    nodes = np.arange(max(k - W, 0), min(k + W, n_nodes - 1) + 1)
    t = -0.5 * ((x - (lo + nodes * h)) * inv_sig) ** 2
    return nodes[0], nodes.size, t.max(), np.exp(t - t.max())


@pytest.mark.parametrize("impl", ["python", "cpu"])
@pytest.mark.parametrize("x", [-7.0, -0.3, 0.0, 0.26, 1.49, 2.51, 30.0])
def test_window_factors_match_numpy(impl, x):
    fn = _shared.window_factors if impl == "python" else cpu_expansion._window_factors
    lo, h, n_nodes, W, inv_sig = -1.0, 0.5, 9, 2, 1.0 / 0.7
    terms = np.full(2 * W + 1, np.nan)
    a, count, tmax = fn(x, lo, h, n_nodes, W, inv_sig, terms)
    ra, rcount, rtmax, rterms = _window_reference(x, lo, h, n_nodes, W, inv_sig)
    assert (a, count) == (ra, rcount)
    assert tmax == pytest.approx(rtmax, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(terms[:count], rterms, rtol=1e-12)
    assert terms[:count].max() == 1.0  # the largest factor is exp(0)


@pytest.mark.parametrize("impl", ["python", "cpu"])
def test_sgd_row_functions_match_numpy(impl):
    f = {"python": lambda name: getattr(_shared, name),
         "cpu": lambda name: getattr(cpu_sgd, "_" + name)}[impl]
    rng = np.random.default_rng(5)
    K, D = 6, 11  # D not a multiple of LANES: the tail loop runs
    X = rng.normal(size=(3, D))
    mu = rng.normal(size=(K, D))
    s = rng.uniform(0.5, 2.0, size=(K, D))
    for j in range(K):
        want = np.sum((s[j] * (X[2] - mu[j])) ** 2)
        assert f("sqnorm_row")(X, 2, mu, s, j) == pytest.approx(want, rel=1e-13)
    ell = rng.normal(size=K) * 5
    m = ell.max()
    assert f("logsumexp")(ell) == pytest.approx(m + math.log(np.exp(ell - m).sum()), rel=1e-14)
    w = np.empty(K)
    g = rng.uniform(size=(K, K))
    g[g < 0.4] = 0.0
    np.fill_diagonal(g, 1.0)
    g /= g.sum(axis=1, keepdims=True)
    # exact: softmax weights, log-sum-exp objective
    obj = f("weights_row")(ell, g, True, True, w)
    np.testing.assert_allclose(w, np.exp(ell - m) / np.exp(ell - m).sum(), rtol=1e-13)
    assert obj == pytest.approx(m + math.log(np.exp(ell - m).sum()), rel=1e-14)
    # g = I: the argmax's indicator
    obj = f("weights_row")(ell, g, False, False, w)
    np.testing.assert_array_equal(w, np.eye(K)[np.argmax(ell)])
    assert obj == ell.max()
    # smoothed: the best-matching unit's row of g
    obj = f("weights_row")(ell, g, True, False, w)
    k = int(np.argmax(g @ ell))
    np.testing.assert_array_equal(w, g[k])
    assert obj == pytest.approx((g @ ell)[k], rel=1e-13)

