"""Writes the saved-model fixtures of ``tests/test_saved_models.py``.

Run once (from the repository root) with the fastmix whose file format the fixtures pin:
``PYTHONPATH=. python tests/data/make_saved_models.py``.  The ``.npz`` files here were written by
fastmix 0.1.0 (format version 1) before the estimators moved to ``fastmix.mixture``; rerunning
this script with a later fastmix would overwrite what the loading test checks, so only do so on
purpose (a new format version).
"""
import os

import numpy as np

import fastmix

HERE = os.path.dirname(os.path.abspath(__file__))


def data():
    rng = np.random.default_rng(19)
    X = np.concatenate([rng.normal(-2.0, 1.0, (200, 3)), rng.normal(2.0, 0.5, (200, 3))])
    return X[rng.permutation(len(X))]


def models(X):
    yield "gm_full", fastmix.GaussianMixture(3, covariance_type="full", max_iter=20,
                                             random_state=0).fit(X)
    yield "gm_lowrank", fastmix.GaussianMixture(3, covariance_type="lowrank", max_iter=20,
                                                random_state=0).fit(X)
    online = fastmix.GaussianMixture(2, covariance_type="diag", random_state=0)
    for part in np.array_split(X, 4):
        online.partial_fit(part)
    yield "gm_diag_online", online
    yield "biglearn", fastmix.BigLearnGaussianMixture(2, n_outer=5, random_state=0).fit(X)
    yield "sgd", fastmix.SGDGaussianMixture(4, random_state=0).fit(X)
    yield "expansion", fastmix.GMMExpansion(random_state=0).fit(X)


def expected(model, X):
    """The arrays the loaded model must reproduce."""
    out = {"score_samples": model.score_samples(X)}
    if hasattr(model, "predict"):
        out["predict"] = model.predict(X)
        out["predict_proba"] = model.predict_proba(X)
    return out


def main():
    X = data()
    np.save(os.path.join(HERE, "saved_X.npy"), X)
    for name, model in models(X):
        model.save(os.path.join(HERE, f"saved_{name}.npz"))
        np.savez(os.path.join(HERE, f"saved_{name}_expected.npz"), **expected(model, X))
        print(name, type(model).__name__)


if __name__ == "__main__":
    main()
