"""fastmix.GaussianMixture vs sklearn.mixture.GaussianMixture from the same initial parameters.

Both get identical ``weights_init``/``means_init``/``precisions_init`` (taken from a 1-iteration
scikit-learn fit) and ``tol=0``, so both run exactly ``max_iter`` EM iterations; every fitted
attribute must then agree to ~1e-8 relative (float64).  Data: scikit-learn's digits (1797 x 64,
K = 10; constant pixel columns, hence ``reg_covar=1e-3``) and a synthetic mixture.
"""
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import fastmix
import reference as ref
from _helpers import assert_close

KINDS = ref.KINDS
RTOL = 1e-8


def _digits():
    return load_digits().data.astype(np.float64), 10, 1e-3


def _synthetic():
    rng = np.random.default_rng(11)
    w, mu, cov = ref.random_model(rng, "full", 4, 5, spread=2.5)
    return ref.sample_model(rng, w, mu, cov, "full", 800), 4, 1e-6


DATASETS = {"digits": _digits, "synthetic": _synthetic}


@pytest.fixture(scope="module")
def datasets():
    return {name: make() for name, make in DATASETS.items()}


@pytest.fixture(scope="module")
def inits(datasets):
    """(dataset, kind) -> common constructor arguments with initial parameters from a
    1-iteration scikit-learn fit (its own k-means initialisation)."""
    cache = {}

    def get(name, kind):
        if (name, kind) not in cache:
            X, K, reg = datasets[name]
            sk = SkGaussianMixture(K, covariance_type=kind, reg_covar=reg, max_iter=1,
                                   random_state=0).fit(X)
            cache[name, kind] = dict(n_components=K, covariance_type=kind, reg_covar=reg, tol=0.0,
                                     weights_init=sk.weights_.copy(), means_init=sk.means_.copy(),
                                     precisions_init=sk.precisions_.copy())
        return cache[name, kind]
    return get


def _fit_both(X, kwargs, max_iter):
    # sklearn runs its initialisation even when all three *_init are given (then overrides it):
    # "random_from_data" is the cheapest one; its result is not used.
    sk = SkGaussianMixture(max_iter=max_iter, init_params="random_from_data", random_state=0,
                           **kwargs).fit(X)
    fm = fastmix.GaussianMixture(max_iter=max_iter, **kwargs).fit(X)
    return sk, fm


@pytest.mark.parametrize("max_iter", [1, 5, 20])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_fit_parity(datasets, inits, dataset, kind, max_iter):
    X, _, _ = datasets[dataset]
    sk, fm = _fit_both(X, inits(dataset, kind), max_iter)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        a, b = getattr(fm, name), getattr(sk, name)
        assert a.shape == b.shape and a.dtype == np.float64, name
        # element-wise rtol, absolute floor 1e-10 * max|entry| for entries ~0 by cancellation
        assert_close(a, b, RTOL, name, floor=1e-10 * np.abs(b).max())
    assert_close(fm.lower_bound_, sk.lower_bound_, RTOL, "lower_bound_")
    assert_close(fm.lower_bounds_, sk.lower_bounds_, RTOL, "lower_bounds_")
    assert fm.n_iter_ == sk.n_iter_ == max_iter
    assert fm.converged_ == sk.converged_ is False
    assert fm.n_features_in_ == sk.n_features_in_


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_inference_parity(datasets, inits, dataset, kind):
    """predict / predict_proba / score_samples / score / bic / aic of two models fitted from the
    same start, on the training data and on new rows."""
    X, _, _ = datasets[dataset]
    sk, fm = _fit_both(X, inits(dataset, kind), 5)
    rng = np.random.default_rng(1)
    Xnew = X[rng.choice(X.shape[0], 200)] + 0.1 * rng.normal(size=(200, X.shape[1]))
    for Z in (X, Xnew):
        assert_close(fm.score_samples(Z), sk.score_samples(Z), RTOL, "score_samples")
        np.testing.assert_allclose(fm.predict_proba(Z), sk.predict_proba(Z), rtol=0, atol=1e-7)
        lp = sk.predict_proba(Z)
        top2 = np.sort(lp, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 1e-6
        assert clear.mean() > 0.95
        np.testing.assert_array_equal(fm.predict(Z)[clear], sk.predict(Z)[clear])
        assert_close(fm.score(Z), sk.score(Z), RTOL, "score")
        assert_close(fm.bic(Z), sk.bic(Z), RTOL, "bic")
        assert_close(fm.aic(Z), sk.aic(Z), RTOL, "aic")
        assert fm._n_parameters() == sk._n_parameters() == ref.n_parameters(kind, *fm.means_.shape)


@pytest.mark.parametrize("kind", KINDS)
def test_fit_predict_parity(datasets, inits, kind):
    X, _, _ = datasets["synthetic"]
    kwargs = inits("synthetic", kind)
    a = SkGaussianMixture(max_iter=5, init_params="random_from_data", random_state=0,
                          **kwargs).fit_predict(X)
    b = fastmix.GaussianMixture(max_iter=5, **kwargs).fit_predict(X)
    assert (a == b).mean() > 0.99


@pytest.mark.parametrize("kind", KINDS)
def test_reference_em_parity(datasets, inits, kind):
    """The plain reference EM of tests/reference.py agrees with both (ties the reference to
    scikit-learn, so kernel tests against the reference mean something)."""
    X, _, _ = datasets["synthetic"]
    kwargs = inits("synthetic", kind)
    sk, fm = _fit_both(X, kwargs, 5)
    prec = kwargs["precisions_init"]
    covs0 = ref.covariances_from_precisions(prec, kind)
    out = ref.em(X, None, kwargs["weights_init"], kwargs["means_init"], covs0, kind,
                 kwargs["reg_covar"], 5)
    assert_close(out["lower_bounds"], sk.lower_bounds_, RTOL)
    assert_close(out["means"], sk.means_, RTOL)
    assert_close(out["covariances"], sk.covariances_, RTOL)
    assert_close(out["covariances"], fm.covariances_, RTOL)
