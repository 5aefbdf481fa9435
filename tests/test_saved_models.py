"""Models saved by fastmix 0.1.0 (``tests/data/saved_*.npz``, written by
``tests/data/make_saved_models.py`` before the estimators moved into ``fastmix.mixture``) still
load, as the same class with the same parameters, and predict what they predicted when saved."""
import os

import numpy as np
import pytest

import fastmix

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
SAVED = {
    "gm_full": fastmix.GaussianMixture,
    "gm_lowrank": fastmix.GaussianMixture,
    "gm_diag_online": fastmix.GaussianMixture,
    "biglearn": fastmix.BigLearnGaussianMixture,
    "sgd": fastmix.SGDGaussianMixture,
    "expansion": fastmix.GMMExpansion,
}


@pytest.mark.parametrize("name", sorted(SAVED))
def test_model_saved_by_0_1_0_loads_and_predicts_the_same(name):
    X = np.load(os.path.join(DATA, "saved_X.npy"))
    model = fastmix.load(os.path.join(DATA, f"saved_{name}.npz"))
    assert type(model) is SAVED[name]
    with np.load(os.path.join(DATA, f"saved_{name}_expected.npz")) as z:
        expected = {k: z[k] for k in z.files}
    assert expected, "fixture holds no expected arrays"
    np.testing.assert_allclose(model.score_samples(X), expected["score_samples"],
                               rtol=1e-10, atol=1e-12)
    if "predict" in expected:
        np.testing.assert_array_equal(model.predict(X), expected["predict"])
        np.testing.assert_allclose(model.predict_proba(X), expected["predict_proba"],
                                   rtol=1e-9, atol=1e-12)


def test_saved_online_model_keeps_its_running_statistics():
    model = fastmix.load(os.path.join(DATA, "saved_gm_diag_online.npz"))
    assert model._online is not None and model._online.t == 3
    X = np.load(os.path.join(DATA, "saved_X.npy"))
    before = model.means_.copy()
    model.partial_fit(X[:50])  # continues from the stored statistics
    assert model.means_.shape == before.shape and not np.array_equal(model.means_, before)
