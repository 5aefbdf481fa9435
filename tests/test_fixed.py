"""GaussianMixture(fixed=...): EM with parameter groups held at their initial values."""
import numpy as np
import pytest

import fastmix

from _helpers import assert_close


def _data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(-2, 1, size=(n // 2, 2)), rng.normal(2, 0.7, size=(n // 2, 2))])


def _reference_em(X, w, m, covs, n_iter, fixed):
    """Plain NumPy EM for full covariances with the named groups held fixed."""
    from scipy.stats import multivariate_normal
    K = len(w)
    for _ in range(n_iter):
        dens = np.column_stack([w[k] * multivariate_normal(m[k], covs[k]).pdf(X) for k in range(K)])
        r = dens / dens.sum(axis=1, keepdims=True)
        nk = r.sum(axis=0)
        if "weights" not in fixed:
            w = nk / nk.sum()
        if "means" not in fixed:
            m = (r.T @ X) / nk[:, None]
        if "covariances" not in fixed:
            covs = np.stack([((X - m[k]).T * r[:, k]) @ (X - m[k]) / nk[k] for k in range(K)])
    return w, m, covs


@pytest.mark.parametrize("fixed", [("weights",), ("means",), ("covariances",),
                                   ("weights", "covariances"), ("means", "covariances")])
def test_fixed_groups_match_constrained_em(fixed):
    X = _data()
    w0 = np.array([0.3, 0.7])
    m0 = np.array([[-1.0, -1.0], [1.0, 1.5]])
    c0 = np.stack([np.eye(2) * 1.5, np.eye(2) * 0.8])
    gm = fastmix.GaussianMixture(2, covariance_type="full", max_iter=7, tol=0.0, reg_covar=0.0,
                                 weights_init=w0, means_init=m0,
                                 precisions_init=np.linalg.inv(c0), fixed=fixed).fit(X)
    w, m, c = _reference_em(X, w0, m0, c0, 7, fixed)
    assert_close(gm.weights_, w, 1e-10)
    assert_close(gm.means_, m, 1e-10)
    assert_close(gm.covariances_, c, 1e-9)
    if "weights" in fixed:
        np.testing.assert_array_equal(gm.weights_, w0)
    if "means" in fixed:
        np.testing.assert_array_equal(gm.means_, m0)


def test_fixed_weights_from_default_init_and_online():
    X = _data()
    gm = fastmix.GaussianMixture(2, covariance_type="diag", random_state=0, max_iter=1).fit(X)
    init_w = gm.weights_.copy()  # one EM step after k-means
    fixed = fastmix.GaussianMixture(2, covariance_type="diag", random_state=0,
                                    weights_init=[0.5, 0.5], fixed="weights").fit(X)
    np.testing.assert_array_equal(fixed.weights_, [0.5, 0.5])
    assert not np.allclose(init_w, [0.5, 0.5])
    on = fastmix.GaussianMixture(2, covariance_type="diag", random_state=0,
                                 weights_init=[0.5, 0.5], fixed=["weights"])
    for i in range(0, 3000, 500):
        on.partial_fit(X[i:i + 500])
    np.testing.assert_array_equal(on.weights_, [0.5, 0.5])


@pytest.mark.parametrize("bad", ["mean", ("weights", "colour"),
                                 ("weights", "means", "covariances")])
def test_bad_fixed(bad):
    with pytest.raises(ValueError, match="fixed"):
        fastmix.GaussianMixture(2, fixed=bad).fit(_data(100))
