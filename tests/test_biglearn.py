"""BigLearnGaussianMixture: each step kind against plain EM on the (transformed) marginal, the
PSD-preserving update, reproducibility, streaming, persistence, bad input."""
import numpy as np
import pytest

import fastmix
from fastmix import biglearn
from fastmix._params import FullCovariance, GMMParams
from fastmix.io import as_stream

import reference
from _helpers import assert_close


def _data(n=3000, D=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(3, D))
    lab = rng.integers(0, 3, n)
    L = rng.normal(size=(3, D, D)) * 0.3 + np.eye(D)
    return centres[lab] + np.einsum("nij,nj->ni", L[lab], rng.normal(size=(n, D)))


def _start(X, K=3, seed=1):
    rng = np.random.default_rng(seed)
    D = X.shape[1]
    w = np.full(K, 1.0 / K)
    m = X[rng.choice(X.shape[0], K, replace=False)]
    c = np.repeat(np.eye(D)[None] * np.var(X), K, axis=0)  # isotropic: no T/Tc cross terms
    return w, m, c


def _em_step(Y, w, m, c):
    """One plain EM step (reference M-step: no reg_covar) by GaussianMixture."""
    gm = fastmix.GaussianMixture(len(w), covariance_type="full", max_iter=1, reg_covar=0.0,
                                 weights_init=w, means_init=m,
                                 precisions_init=np.linalg.inv(c)).fit(Y)
    return gm.weights_, gm.means_, gm.covariances_


def test_joint_step_is_em():
    X = _data()
    w, m, c = _start(X)
    data = as_stream(X)
    w1, m1, c1, _ = biglearn.local_step(data, w, m, c, None, np.arange(3), alpha=0.0,
                                        eps=1e-8, update="floor")
    ew, em_, ec = _em_step(X, w, m, c)
    assert_close(w1, ew, 1e-9)
    assert_close(m1, em_, 1e-9)
    assert_close(c1, ec, 1e-9)


@pytest.mark.parametrize("transformed", [False, True])
def test_marginal_step_updates_only_the_marginal(transformed):
    X = _data(D=4)
    w, m, c = _start(X)
    rng = np.random.default_rng(5)
    A = biglearn.haar_orthogonal(rng, 4) if transformed else None
    T = np.array([0, 2])
    w1, m1, c1, _ = biglearn.local_step(as_stream(X), w, m, c, A, T, alpha=0.0, eps=1e-8,
                                        update="floor")
    Am = np.eye(4) if A is None else A
    Y = X @ Am.T
    mb, cb = m @ Am.T, np.einsum("ij,kjl,ml->kim", Am, c, Am)
    ew, em_, ec = _em_step(Y[:, T], w, mb[:, T], cb[:, T][:, :, T])
    mb1, cb1 = m1 @ Am.T, np.einsum("ij,kjl,ml->kim", Am, c1, Am)
    assert_close(w1, ew, 1e-9)
    assert_close(mb1[:, T], em_, 1e-9)
    assert_close(cb1[:, T][:, :, T], ec, 1e-8)
    Tc = [1, 3]
    assert_close(mb1[:, Tc], mb[:, Tc], 1e-9)  # the other coordinates are untouched
    assert_close(cb1[:, Tc][:, :, Tc], cb[:, Tc][:, :, Tc], 1e-8)


def _anisotropic_start(X, K=3, seed=2):
    """Correlated, anisotropic covariances (condition number ~10-100): A Sigma A^T != Sigma, so
    a wrong rotation (A^T for A) or a wrong block changes the result."""
    rng = np.random.default_rng(seed)
    D = X.shape[1]
    w = rng.dirichlet(np.full(K, 5.0))
    m = X[rng.choice(X.shape[0], K, replace=False)]
    c = reference.random_covariances(rng, "full", K, D, scale=np.var(X))
    return w, m, c


@pytest.mark.parametrize("update", ["floor", "psd"])
@pytest.mark.parametrize("kind", ["joint", "marginal", "transformed"])
@pytest.mark.parametrize("alpha", [0.0, 0.25])
def test_local_step_matches_numpy_reference(kind, alpha, update):
    """Every step kind, both merges (and the weight smoothing) against tests/reference.py, from
    a correlated anisotropic start (the PSD merge's regression B is then far from 0)."""
    X = _data(D=4)
    w, m, c = _anisotropic_start(X)
    rng = np.random.default_rng(11)
    A = biglearn.haar_orthogonal(rng, 4) if kind == "transformed" else None
    T = np.arange(4) if kind == "joint" else np.array([0, 2, 3])
    assert not np.allclose(A @ c[0] @ A.T if A is not None else c[0], np.diag(np.diag(c[0])))
    w1, m1, c1, _ = biglearn.local_step(as_stream(X), w, m, c, A, T, alpha=alpha, eps=1e-8,
                                        update=update)
    rw, rm, rc = reference.biglearn_local_step(X, w, m, c, A, T, alpha=alpha, eps=1e-8,
                                               update=update)
    assert_close(w1, rw, 1e-9)
    assert_close(m1, rm, 1e-9)
    assert_close(c1, rc, 1e-8)


def test_default_weight_smoothing_is_one_over_k():
    """weight_smoothing=None means alpha = 1/K: the same fit as an explicit 1/K, another fit
    than alpha = 0 (plain EM weights)."""
    X = _data(600, D=3)
    kw = dict(n_outer=6, random_state=3, init_params="kmeans")
    d = fastmix.BigLearnGaussianMixture(3, **kw).fit(X)
    e = fastmix.BigLearnGaussianMixture(3, weight_smoothing=1 / 3, **kw).fit(X)
    z = fastmix.BigLearnGaussianMixture(3, weight_smoothing=0.0, **kw).fit(X)
    np.testing.assert_array_equal(d.weights_, e.weights_)
    np.testing.assert_array_equal(d.means_, e.means_)
    assert np.max(np.abs(d.weights_ - z.weights_)) > 1e-3


def test_polish_ends_at_a_joint_em_fixed_point():
    """After the outer iterations, joint EM steps (no weight smoothing) run until the mean
    log-likelihood gains less than tol: one more plain EM step from the result gains less than
    tol; polish_max_iter=0 leaves the partial steps' model (the paper's method)."""
    X = _data(800, D=4)
    kw = dict(n_outer=8, random_state=4)
    raw = fastmix.BigLearnGaussianMixture(3, polish_max_iter=0, **kw).fit(X)
    assert raw.n_polish_iter_ == 0 and not raw.converged_
    gm = fastmix.BigLearnGaussianMixture(3, tol=1e-6, **kw).fit(X)
    assert gm.converged_ and gm.n_polish_iter_ >= 1
    again = fastmix.BigLearnGaussianMixture(3, tol=0.0, polish_max_iter=gm.n_polish_iter_,
                                            **kw).fit(X)  # exactly that many steps
    np.testing.assert_array_equal(again.means_, gm.means_)
    data = as_stream(X)
    w, m, c = gm.weights_, gm.means_, gm.covariances_
    w1, m1, c1, ll0 = biglearn.local_step(data, w, m, c, None, np.arange(4), alpha=0.0,
                                          eps=gm.eig_floor, update="psd")
    _, _, _, ll1 = biglearn.local_step(data, w1, m1, c1, None, np.arange(4), alpha=0.0,
                                       eps=gm.eig_floor, update="psd")
    assert ll1 - ll0 < 1e-6
    assert_close(gm.score(X), ll0, 1e-10)
    assert gm.score(X) > raw.score(X)  # the partial steps' model is not a joint optimum
    # the model before the joint steps is the one the partial steps left: same as raw
    seen = []
    fastmix.BigLearnGaussianMixture(3, **kw).fit(X, callback=lambda it, k, snap: seen.append(
        snap.means_.copy()))
    np.testing.assert_array_equal(seen[-1], raw.means_)


@pytest.mark.parametrize("scaling", ["minmax", "standard"])
def test_defaults_match_em_on_wine(scaling):
    """scikit-learn's wine data (178 x 13, K = 3): the defaults reach at least plain EM's mean
    log-likelihood (3 seeds; bench/biglearn.py --real has the full table), where the
    reference's defaults (random start, overwrite-then-floor merge, no joint polish) lose by
    more than 1 nat per row."""
    from sklearn.datasets import load_wine
    from sklearn.preprocessing import minmax_scale, scale
    X = load_wine().data
    X = minmax_scale(X) if scaling == "minmax" else scale(X)
    seeds = range(3)
    em = np.mean([fastmix.GaussianMixture(3, covariance_type="full", random_state=s).fit(X)
                  .score(X) for s in seeds])
    bl = np.mean([fastmix.BigLearnGaussianMixture(3, n_outer=40, random_state=s).fit(X)
                  .score(X) for s in seeds])
    paper = np.mean([fastmix.BigLearnGaussianMixture(
        3, n_outer=40, init_params="random", cov_update="floor", polish_max_iter=0,
        eig_floor=1e-5, random_state=s).fit(X).score(X) for s in seeds])
    assert bl >= em - 1e-3, (bl, em)
    assert paper < em - 1.0, (paper, em)


def test_psd_update_keeps_the_conditional():
    X = _data(D=4)
    w, m, c = _start(X)
    T, Tc = np.array([1, 2]), np.array([0, 3])
    w1, m1, c1, _ = biglearn.local_step(as_stream(X), w, m, c, None, T, alpha=0.0, eps=1e-12,
                                        update="psd")
    for k in range(3):
        B0 = c[k][np.ix_(Tc, T)] @ np.linalg.inv(c[k][np.ix_(T, T)])
        B1 = c1[k][np.ix_(Tc, T)] @ np.linalg.inv(c1[k][np.ix_(T, T)])
        assert_close(B1, B0, 1e-8)
        cond0 = c[k][np.ix_(Tc, Tc)] - B0 @ c[k][np.ix_(T, Tc)]
        cond1 = c1[k][np.ix_(Tc, Tc)] - B1 @ c1[k][np.ix_(T, Tc)]
        assert_close(cond1, cond0, 1e-8)
        assert np.all(np.linalg.eigvalsh(c1[k]) > 0)


def test_haar_orthogonal_and_floor():
    rng = np.random.default_rng(0)
    Q = biglearn.haar_orthogonal(rng, 5)
    assert_close(Q @ Q.T, np.eye(5), 1e-12)
    # Haar: the Q of G = Q R with diag(R) > 0 (the sign fix), G the same Gaussian draw
    G = np.random.default_rng(0).standard_normal((5, 5))
    R = Q.T @ G
    assert_close(np.tril(R, -1), np.zeros((5, 5)), 1e-12, floor=1e-12)
    assert np.all(np.diag(R) > 0)
    S = np.array([[[1.0, 0.0], [0.0, -2.0]]])
    F = biglearn.eig_floor(S, 0.1)
    assert_close(np.linalg.eigvalsh(F[0]), [0.1, 1.0], 1e-12)


def test_fit_reproducible_kinds_and_stream(tmp_path):
    X = _data(2000, D=3)
    kw = dict(n_outer=60, random_state=7, init_params="kmeans")
    a = fastmix.BigLearnGaussianMixture(3, **kw).fit(X)
    b = fastmix.BigLearnGaussianMixture(3, **kw).fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)
    assert a.step_kinds_ == b.step_kinds_ and len(a.step_kinds_) == 60
    counts = {k: a.step_kinds_.count(k) for k in biglearn.STEP_KINDS}
    assert counts["joint"] > 10 and counts["transformed"] > 15
    np.save(tmp_path / "x.npy", X)
    c = fastmix.BigLearnGaussianMixture(3, **kw).fit(str(tmp_path / "x.npy"))
    np.testing.assert_array_equal(a.means_, c.means_)
    assert np.isfinite(a.score(X)) and a.predict(X).shape == (2000,)
    ref = fastmix.GaussianMixture(3, covariance_type="full", random_state=0).fit(X)
    assert a.score(X) > ref.score(X) - 0.05  # a well-separated problem: both find it
    a.save(tmp_path / "b.npz")
    back = fastmix.load(tmp_path / "b.npz")
    assert isinstance(back, fastmix.BigLearnGaussianMixture)
    np.testing.assert_array_equal(back.predict(X), a.predict(X))


def test_draw_step_kinds():
    """joint: every coordinate, no rotation; marginal: a subset, no rotation; transformed: a
    subset of the rotated coordinates."""
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        kind, A, T = biglearn.draw_step(rng, 6, (0.3, 0.3, 0.4), (2.0, 1.0))
        seen.add(kind)
        assert (A is not None) == (kind == "transformed")
        if kind == "joint":
            np.testing.assert_array_equal(T, np.arange(6))
        else:
            assert 1 <= len(T) <= 6 and np.all(np.diff(T) > 0)
    assert seen == set(biglearn.STEP_KINDS)


def test_polish_stops_at_max_iter_and_records_per_iteration_ll():
    X = _data(400, D=3)
    gm = fastmix.BigLearnGaussianMixture(3, n_outer=5, polish_max_iter=2, tol=0.0,
                                         random_state=0).fit(X)
    assert gm.n_polish_iter_ == 2 and not gm.converged_
    assert len(gm.log_likelihoods_) == 5 and np.all(np.isfinite(gm.log_likelihoods_))
    assert gm.log_likelihoods_ == gm.lower_bounds_
    # a loose tol stops early, and the model is the one after exactly n_polish_iter_ steps
    loose = fastmix.BigLearnGaussianMixture(3, n_outer=5, polish_max_iter=50, tol=1e-2,
                                            random_state=0).fit(X)
    assert loose.converged_ and 1 <= loose.n_polish_iter_ < 50
    exact = fastmix.BigLearnGaussianMixture(3, n_outer=5, polish_max_iter=loose.n_polish_iter_,
                                            tol=0.0, random_state=0).fit(X)
    np.testing.assert_array_equal(exact.means_, loose.means_)


def test_one_dimensional_data_uses_joint_steps():
    X = np.random.default_rng(0).normal(size=(500, 1))
    gm = fastmix.BigLearnGaussianMixture(2, n_outer=10, random_state=0).fit(X)
    assert set(gm.step_kinds_) == {"joint"}


@pytest.mark.parametrize("kw,match", [
    (dict(p_joint=0.5, p_marginal=0.5, p_transformed=0.5), "sum to 1"),
    (dict(p_joint=-0.1, p_marginal=0.6, p_transformed=0.5), "non-negative"),
    (dict(eig_floor=0.0), "eig_floor"), (dict(cov_update="clip"), "cov_update"),
    (dict(n_local_steps=0), "n_local_steps"), (dict(subset_beta=(0, 1)), "subset_beta"),
    (dict(weight_smoothing=-1.0), "weight_smoothing"), (dict(init_params="magic"), "init"),
    (dict(polish_max_iter=-1), "polish_max_iter"), (dict(tol=-1e-3), "tol"),
    (dict(tol=float("nan")), "tol")])
def test_bad_parameters(kw, match):
    with pytest.raises(ValueError, match=match):
        fastmix.BigLearnGaussianMixture(2, n_outer=2, **kw).fit(_data(100))


def test_bad_data():
    X = _data(100)
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fastmix.BigLearnGaussianMixture(2, n_outer=2).fit(X)
    with pytest.raises(ValueError, match="n_components"):
        fastmix.BigLearnGaussianMixture(5, n_outer=2).fit(_data(100)[:3])
