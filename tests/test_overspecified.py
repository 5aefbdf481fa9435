"""Overspecified EM (docs/algorithms.md §3): the DFT rate of population EM, and fastmix's
``fixed=("weights", "covariances")`` EM against its population version.

The NumPy pieces (Gauss-Hermite quadrature, structured and generic population EM, KL, the DFT
prediction) live in ``bench/overspecified_em.py``; see its docstring for the experiment.
"""
import os
import sys

import numpy as np
import pytest

import fastmix

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))
import overspecified_em as oe  # noqa: E402

NON_UNIFORM = np.array([0.5, 0.3, 0.2])
UNIFORM = np.full(3, 1 / 3)
N_ITER = 60


@pytest.fixture(scope="module")
def grid():
    # 40 x 40 nodes: the KL curves agree with the 80 x 80 grid to ~1e-10 relative
    return oe.gauss_hermite_grid(40)


@pytest.fixture(scope="module")
def population(grid):
    """KL curves of population structured EM for both weight settings, and generic EM."""
    theta0 = np.array(oe.THETA0)
    return {
        "structured": {key: oe.population_structured(grid, pi, theta0, N_ITER)[1]
                       for key, pi in (("non-uniform", NON_UNIFORM), ("uniform", UNIFORM))},
        "generic": oe.population_generic(grid, NON_UNIFORM, oe.simplex_means(theta0),
                                         N_ITER),
    }


def _ratios(kl):
    return kl[1:] / kl[:-1]


def test_quadrature_rule_moments(grid):
    x, w = grid
    assert w.sum() == pytest.approx(1.0, abs=1e-13)
    np.testing.assert_allclose(w @ x, 0.0, atol=1e-13)
    np.testing.assert_allclose((x * w[:, None]).T @ x, np.eye(2), atol=1e-12)
    assert w @ x[:, 0] ** 4 == pytest.approx(3.0, rel=1e-12)


def test_dft_prediction():
    p = oe.dft_prediction(NON_UNIFORM)
    np.testing.assert_allclose(p["dft_power"], [0.07, 0.07], rtol=1e-12)  # m = 1, 2 conjugate
    assert p["rho"] == pytest.approx(0.93)
    assert p["kl_rate"] == pytest.approx(0.8649)
    u = oe.dft_prediction(UNIFORM)
    np.testing.assert_allclose(u["dft_power"], 0.0, atol=1e-15)
    assert u["kl_rate"] == pytest.approx(1.0)
    # A = sum_j pi_j R^j has singular values |pi_hat(1)|, the eigenvalue of A^T A in section 3.2
    A = np.einsum("j,jab->ab", NON_UNIFORM, oe.rotation_powers())
    np.testing.assert_allclose(np.linalg.eigvalsh(A.T @ A), 0.07, rtol=1e-12)


def test_structured_update_is_gradient_step(grid):
    """theta+ = theta + grad L(theta) exactly (docs/algorithms.md §3.2); central differences."""
    theta = np.array([0.3, -0.2])

    def loglik(t):
        return -oe.kl_to_standard_normal(grid, NON_UNIFORM, oe.simplex_means(t))

    h = 1e-5
    grad = np.array([(loglik(theta + h * e) - loglik(theta - h * e)) / (2 * h)
                     for e in np.eye(2)])
    step = oe.structured_step(*grid, NON_UNIFORM, theta, oe.rotation_powers())
    np.testing.assert_allclose(step, theta + grad, atol=1e-8)


def test_non_uniform_weights_rate_matches_dft(population):
    kl = population["structured"]["non-uniform"]
    rate = oe.dft_prediction(NON_UNIFORM)["kl_rate"]
    measured = oe.settled_ratio(kl, 20, 40)
    assert abs(measured - rate) / rate < 0.10, (measured, rate)
    # and it has settled: the last ratios are the constant rho^2
    np.testing.assert_allclose(_ratios(kl)[-10:], rate, rtol=0.01)
    assert kl[0] == pytest.approx(1.43e-2, rel=0.01)
    assert kl[40] < 2e-5 and kl[60] < 1e-6


def test_uniform_weights_sublinear(population):
    ku = population["structured"]["uniform"]
    kn = population["structured"]["non-uniform"]
    late_u, late_n = _ratios(ku)[20:], _ratios(kn)[20:]
    assert np.all(late_u > late_n)
    assert np.all(np.diff(late_u) > 0)  # creeping ...
    assert 0.95 < late_u[-1] < 1.0      # ... towards 1
    assert ku[60] > 1e-5 and ku[60] > 30 * kn[60]  # KL 3.0e-5 vs 5.7e-7 after 60 iterations


def test_generic_em_has_no_linear_rate(population):
    """EM on free means (what fixed=("weights", "covariances") does) first removes the weighted
    mean sum_j pi_j mu_j and then crawls: non-uniform weights do not give it the DFT rate."""
    means, kl = population["generic"]
    m_bar = np.einsum("j,tjd->td", NON_UNIFORM, means)
    assert np.linalg.norm(m_bar[0]) == pytest.approx(0.5 * np.sqrt(0.07))
    assert np.linalg.norm(m_bar[1]) < 0.1 * np.linalg.norm(m_bar[0])
    r = _ratios(kl)[20:]
    assert np.all(np.diff(r) > 0) and r[-1] > 0.95
    assert kl[60] > 10 * population["structured"]["non-uniform"][60]


def test_fastmix_fixed_follows_population_em(grid):
    """Sample EM with fastmix (fixed weights and identity covariances, n=20000) stays within 0.05
    of population EM from the same simplex start for the first 5 iterations."""
    n_iter = 5
    X = np.random.default_rng(0).standard_normal((20000, 2))
    theta0 = np.array(oe.THETA0)
    means0 = oe.simplex_means(theta0)
    for pi in (NON_UNIFORM, UNIFORM):
        traj, w, cov = oe.fastmix_sample_em(X, pi, means0, n_iter)
        np.testing.assert_array_equal(w, pi)
        np.testing.assert_allclose(cov, np.broadcast_to(np.eye(2), (3, 2, 2)), atol=1e-12)
        # reading the means after each warm-started max_iter=1 fit is the same EM as one fit
        one = fastmix.GaussianMixture(3, covariance_type="full", weights_init=pi,
                                      means_init=means0, precisions_init=np.stack([np.eye(2)] * 3),
                                      fixed=("weights", "covariances"), reg_covar=0.0, tol=0.0,
                                      max_iter=n_iter).fit(X)
        np.testing.assert_allclose(traj[-1], one.means_, rtol=0, atol=1e-12)

        generic = oe.generic_em(*grid, pi, means0, n_iter)
        structured = np.array([oe.simplex_means(t)
                               for t in oe.structured_em(*grid, pi, theta0, n_iter)])
        np.testing.assert_allclose(traj, generic, rtol=0, atol=0.05)
        if pi is UNIFORM:
            # uniform weights: the generic EM keeps the simplex, so it is the structured EM
            np.testing.assert_allclose(generic, structured, rtol=0, atol=1e-12)
        else:
            # non-uniform weights: the generic EM leaves the structured one at the first step
            assert np.abs(generic[1:] - structured[1:]).max() > 0.1
