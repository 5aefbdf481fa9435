"""fastmix.metrics: grid IPE/ISE against closed forms in 1-D and 2-D, Monte-Carlo KL, bad input."""
import numpy as np
import pytest
from scipy.stats import multivariate_normal, norm

from fastmix import metrics


def _normal(m, s):
    """density callable (n, 1) -> (n,) of N(m, s^2)."""
    return lambda X: norm.pdf(X[:, 0], m, s)


def _ise_closed_form(m1, s1, m2, s2):
    """int (phi1 - phi2)^2 = int phi1^2 + int phi2^2 - 2 int phi1 phi2, where
    int N(x|a, s^2) N(x|b, t^2) dx = N(a - b | 0, s^2 + t^2)."""
    def cross(a, s, b, t):
        return norm.pdf(a - b, 0.0, np.sqrt(s * s + t * t))
    return cross(m1, s1, m1, s1) + cross(m2, s2, m2, s2) - 2 * cross(m1, s1, m2, s2)


def test_self_distance_is_zero():
    g1 = metrics.grid_axes(-8, 8, 1001)
    p = metrics.on_grid(_normal(0.3, 1.2), g1)
    assert metrics.ipe(p, p, g1) == 0.0 and metrics.ise(p, p, g1) == 0.0
    g2 = metrics.grid_axes([-6, -8], [7, 6], [131, 141])
    q = metrics.on_grid(multivariate_normal([0.5, -1], [[1, 0.3], [0.3, 2]]).pdf, g2)
    assert q.shape == (131, 141)
    assert metrics.ipe(q, q, g2) == 0.0 and metrics.ise(q, q, g2) == 0.0
    assert abs(metrics.ipe(q, 0 * q, g2) - 1) < 1e-5  # the grid holds the mass


@pytest.mark.parametrize("delta", [0.1, 0.5, 1.0, 2.5])
def test_ipe_of_shifted_normals_matches_closed_form(delta):
    g = metrics.grid_axes(-10, 10 + delta, 20001)
    ipe = metrics.ipe(metrics.on_grid(_normal(0, 1), g), metrics.on_grid(_normal(delta, 1), g), g)
    assert abs(ipe - 2 * (2 * norm.cdf(delta / 2) - 1)) < 1e-4


@pytest.mark.parametrize("m1,s1,m2,s2", [(0, 1, 1, 1), (0, 1, 0.7, 1.3), (-1, 0.5, 2, 2)])
def test_ise_of_two_normals_matches_closed_form(m1, s1, m2, s2):
    g = metrics.grid_axes(-15, 15, 6001)
    ise = metrics.ise(metrics.on_grid(_normal(m1, s1), g), metrics.on_grid(_normal(m2, s2), g), g)
    assert abs(ise - _ise_closed_form(m1, s1, m2, s2)) < 1e-6


@pytest.mark.parametrize("direction", [(1.0, 0.0), (0.6, 0.8)])
def test_2d_ipe_of_shifted_isotropic_normals_equals_1d_closed_form(direction):
    delta = 1.0
    shift = delta * np.asarray(direction)
    g = metrics.grid_axes([-7, -7], [8, 8], 601)
    p = metrics.on_grid(multivariate_normal([0, 0]).pdf, g)
    q = metrics.on_grid(multivariate_normal(shift).pdf, g)
    assert abs(metrics.ipe(p, q, g) - 2 * (2 * norm.cdf(delta / 2) - 1)) < 1e-4


def test_on_grid_orientation_and_log():
    xs, ys = np.array([0.0, 1.0, 2.0]), np.array([10.0, 20.0])
    v = metrics.on_grid(lambda P: P[:, 0] + P[:, 1], (xs, ys))
    np.testing.assert_array_equal(v, xs[:, None] + ys[None, :])  # values[i, j] at (xs[i], ys[j])
    g = metrics.grid_axes(-3, 3, 7)
    np.testing.assert_allclose(metrics.on_grid(lambda P: norm.logpdf(P[:, 0]), g, log=True),
                               norm.pdf(g), rtol=1e-14)
    assert metrics.grid_points((xs, ys)).shape == (6, 2)


def test_kl_mc_matches_closed_form():
    m1, s1, m2, s2 = 0.0, 1.0, 0.5, 1.5
    exact = np.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5
    S = np.random.default_rng(0).normal(m1, s1, size=(20000, 1))
    est = metrics.kl_mc(lambda X: norm.logpdf(X[:, 0], m1, s1),
                        lambda X: norm.logpdf(X[:, 0], m2, s2), S)
    assert est.se > 0 and abs(est.kl - exact) < 4 * est.se
    # a 1-D sample and precomputed arrays give the same
    est2 = metrics.kl_mc(norm.logpdf(S[:, 0], m1, s1), norm.logpdf(S[:, 0], m2, s2), S[:, 0])
    assert est2 == est
    assert metrics.kl_mc(norm.logpdf(S[:, 0]), norm.logpdf(S[:, 0]), S).kl == 0.0


def test_kl_mc_infinite_when_q_vanishes():
    S = np.array([0.0, 1.0, 2.0])
    est = metrics.kl_mc(np.zeros(3), np.array([0.0, -np.inf, 0.0]), S)
    assert est.kl == np.inf


def test_bad_input_raises_value_error():
    g = metrics.grid_axes(0, 1, 11)
    p = np.ones(11)
    with pytest.raises(ValueError, match="shape"):
        metrics.ipe(p, np.ones(10), g)
    with pytest.raises(ValueError, match="shape"):
        metrics.ise(np.ones((11, 1)), p, g)
    g2 = metrics.grid_axes([0, 0], [1, 1], [11, 5])
    with pytest.raises(ValueError, match="shape"):
        metrics.ipe(np.ones((5, 11)), np.ones((5, 11)), g2)  # transposed
    for res in (0, 1, -5, 2.5, [10, 0]):
        with pytest.raises(ValueError, match="resolution"):
            metrics.grid_axes([0, 0], [1, 1], res)
    with pytest.raises(ValueError):
        metrics.grid_axes(1, 0, 10)  # hi < lo
    with pytest.raises(ValueError, match="increasing"):
        metrics.ipe(p, p, g[::-1])
    with pytest.raises(ValueError, match="non-finite"):
        metrics.ipe(np.full(11, np.nan), p, g)
    with pytest.raises(ValueError, match="shape"):
        metrics.kl_mc(np.zeros(3), np.zeros(4), np.zeros(3))
    with pytest.raises(ValueError, match="n >= 2"):
        metrics.kl_mc(np.zeros(1), np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="NaN"):
        metrics.kl_mc(np.array([0.0, np.nan]), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="must return"):
        metrics.on_grid(lambda P: np.zeros(3), g)
