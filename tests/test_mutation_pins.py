"""Tests added for survivors of bench/mutate.py (a line could be broken without any test of its
module failing)."""
import numpy as np

from fastmix._params import SHARED_MAX, FullCovariance, GMMParams


def _full(means, cov):
    K = len(means)
    return GMMParams(np.full(K, 1.0 / K), np.asarray(means, float),
                     FullCovariance.from_covariances(np.repeat(np.asarray(cov)[None], K, 0)))


def test_shared_centre_only_within_the_full_mahalanobis_bound():
    """Full covariances: the kernels expand around the shared centre g = sum_k pi_k mu_k only
    when every mean is within squared Mahalanobis distance SHARED_MAX of g, measured with the
    full precision (here the means differ along the thin axis only: distance^2 2.5e7 > 1e6,
    while the first coordinate alone would put them at distance 0)."""
    thin = np.diag([1.0, 1e-8])
    kp = _full([[0.0, 0.0], [0.0, 1.0]], thin).kernel_params(np.float64)
    assert SHARED_MAX[np.dtype(np.float64)] < 0.25 / 1e-8
    assert kp.g64.shape == (0,)
    np.testing.assert_array_equal(kp.g, np.zeros(2))
    near = _full([[0.0, 0.0], [0.0, 1e-2]], thin).kernel_params(np.float64)  # distance^2 2.5e3
    np.testing.assert_allclose(near.g64, [0.0, 5e-3], rtol=1e-15)
    # and along the wide axis the same offsets are near
    wide = _full([[0.0, 0.0], [1.0, 0.0]], thin).kernel_params(np.float64)
    np.testing.assert_allclose(wide.g64, [0.5, 0.0], rtol=1e-15)
