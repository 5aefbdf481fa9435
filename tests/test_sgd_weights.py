"""SGDGaussianMixture.fit(sample_weight=): frequency weights (a row is taken c_i times per
epoch, E[c_i] = w_i)."""
import numpy as np
import pytest

import fastmix
from fastmix.mixture import _base

SGD = fastmix.SGDGaussianMixture
CENTRES = np.array([[0.2, 0.2], [0.8, 0.2], [0.2, 0.8], [0.8, 0.8]])


def _blobs(n=2000, seed=0):
    """Four well-separated blobs in [0, 1]^2 and their labels."""
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 4, n)
    return CENTRES[lab] + 0.04 * rng.standard_normal((n, 2)), lab


def _by_centre(model):
    """The model's components in CENTRES' order (nearest mean), as (means, weights)."""
    idx = [int(np.argmin(((model.means_ - c) ** 2).sum(axis=1))) for c in CENTRES]
    assert len(set(idx)) == 4, model.means_
    return model.means_[idx], model.weights_[idx]


KW = dict(n_components=4, random_state=1, n_epochs=3, init="kmeans++")


@pytest.mark.parametrize("batch_size", [1, 8])
def test_sgd_integer_weights_equal_repeated_rows(batch_size):
    """Integer weights are repeated rows: the same steps as a fit on np.repeat(X, w) (one
    block in memory, so the same permutation), hence the same model bit for bit."""
    X, lab = _blobs()
    w = np.where(lab == 0, 3, 1) * np.random.default_rng(2).integers(1, 3, X.shape[0])
    a = SGD(batch_size=batch_size, **KW).fit(X, sample_weight=w)
    b = SGD(batch_size=batch_size, **KW).fit(np.repeat(X, w, axis=0))
    for name in ("weights_", "means_", "precisions_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), name)
    assert a.n_steps_ == b.n_steps_
    # and the weights matter: blob 0 has ~3x the weight of each other blob
    _, wa = _by_centre(a)
    prop = np.bincount(lab, weights=w) / w.sum()
    np.testing.assert_allclose(wa, prop, atol=0.03)
    _, wu = _by_centre(SGD(batch_size=batch_size, **KW).fit(X))
    assert abs(wu[0] - 0.25) < 0.05 and wa[0] > 0.4


def test_sgd_unit_and_zero_weights():
    """Unit weights are the unweighted fit; zero weights remove the rows -- exactly."""
    X, _ = _blobs(600)
    ref = SGD(**KW).fit(X)
    ones = SGD(**KW).fit(X, sample_weight=np.ones(X.shape[0]))
    np.testing.assert_array_equal(ones.means_, ref.means_)
    np.testing.assert_array_equal(ones.weights_, ref.weights_)
    keep = np.arange(X.shape[0]) % 3 != 0
    zero = SGD(**KW).fit(X, sample_weight=keep.astype(float))
    removed = SGD(**KW).fit(X[keep])
    np.testing.assert_array_equal(zero.means_, removed.means_)
    np.testing.assert_array_equal(zero.weights_, removed.weights_)


def test_sgd_fractional_weights_match_repeated_rows_statistically():
    """Fractional weights are rounded at random per epoch (E[c_i] = w_i): the weighted fit of X
    with w = 1.5 on blob 0 and 0.5 elsewhere matches the fit on the rows repeated 3 : 1, up to
    SGD noise: close means and mixing weights."""
    X, lab = _blobs(4000)
    w = np.where(lab == 0, 1.5, 0.5)
    a = SGD(**KW).fit(X, sample_weight=w)
    b = SGD(**KW).fit(np.repeat(X, np.where(lab == 0, 3, 1), axis=0))
    ma, wa = _by_centre(a)
    mb, wb = _by_centre(b)
    np.testing.assert_allclose(ma, mb, atol=0.02)
    np.testing.assert_allclose(ma, CENTRES, atol=0.03)
    np.testing.assert_allclose(wa, wb, atol=0.04)
    prop = np.bincount(lab, weights=w) / w.sum()  # blob 0: ~0.5
    np.testing.assert_allclose(wa, prop, atol=0.04)
    # about sum(w) rows per epoch, not N
    assert abs(a.n_steps_ - KW["n_epochs"] * w.sum()) < 0.05 * a.n_steps_


def test_frequency_rows():
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(_base._frequency_rows(np.array([2.0, 0.0, 1.0, 3.0]),
                                                             rng), [0, 0, 2, 3, 3, 3])
    w = np.array([0.25, 1.5, 2.75])
    counts = np.mean([np.bincount(_base._frequency_rows(w, rng), minlength=3)
                      for _ in range(4000)], axis=0)
    np.testing.assert_allclose(counts, w, atol=0.05)


@pytest.mark.parametrize("sw, match", [
    (np.ones(5), r"sample_weight\.shape"), (-np.ones(600), "non-negative"),
    (np.zeros(600), "sums to zero"),
])
def test_sgd_bad_sample_weight(sw, match):
    X, _ = _blobs(600)
    with pytest.raises(ValueError, match=match):
        SGD(**KW).fit(X, sample_weight=sw)


def test_sgd_weights_all_drawn_zero_is_an_error():
    X, _ = _blobs(20)
    with pytest.raises(ValueError, match="no row was drawn"):
        SGD(n_components=4, random_state=0).fit(X, sample_weight=np.full(20, 1e-12))
