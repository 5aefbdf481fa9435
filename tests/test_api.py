"""The estimator's public behaviour: initialisations, n_init, warm_start, sample, sample_weight,
fit_predict, progress and verbose output, and the sklearn-style conveniences."""
import os
import warnings

import numpy as np
import pytest
from sklearn.base import clone

import fastmix
import reference as ref
from _helpers import FITTED_ATTRS, assert_close, assert_reproducible, assert_same_model
from fastmix.mixture import _gaussian

KINDS = ref.KINDS
INITS = ["kmeans", "k-means++", "random", "random_from_data"]
GM = fastmix.GaussianMixture


@pytest.fixture(scope="module")
def X():
    """Four blobs in 3-D, 400 rows."""
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0], [6, 0, 0], [0, 6, 0], [0, 0, 6]], dtype=float)
    return centres[np.repeat(np.arange(4), 100)] + rng.normal(size=(400, 3))


def given_init(X, kind, K=4):
    """weights/means/precisions_init for X: rows 0, 100, ... as means, unit precisions."""
    D = X.shape[1]
    prec = {"full": np.stack([np.eye(D)] * K), "tied": np.eye(D), "diag": np.ones((K, D)),
            "spherical": np.ones(K)}[kind]
    return dict(weights_init=np.full(K, 1.0 / K), means_init=X[::100][:K].copy(),
                precisions_init=prec)


# --------------------------------------------------------------------------- init_params ----
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("init", INITS)
def test_init_params_work_and_are_reproducible(X, init, kind):
    kw = dict(covariance_type=kind, init_params=init, max_iter=30, random_state=42)
    a = GM(4, **kw).fit(X)
    b = GM(4, **kw).fit(X)
    assert_same_model(a, b)
    for name in FITTED_ATTRS:
        assert np.all(np.isfinite(getattr(a, name)))
    np.testing.assert_allclose(a.weights_.sum(), 1.0, rtol=1e-12)
    # a Generator / RandomState seeded the same way is just as reproducible
    c = GM(4, **{**kw, "random_state": np.random.default_rng(5)}).fit(X)
    d = GM(4, **{**kw, "random_state": np.random.default_rng(5)}).fit(X)
    assert_same_model(c, d)
    e = GM(4, **{**kw, "random_state": np.random.RandomState(5)}).fit(X)
    f = GM(4, **{**kw, "random_state": np.random.RandomState(5)}).fit(X)
    assert_same_model(e, f)


@pytest.mark.parametrize("init", INITS)
def test_max_iter_zero_returns_the_initialisation(X, init):
    with warnings.catch_warnings():
        warnings.simplefilter("error", fastmix.ConvergenceWarning)  # max_iter=0: no warning
        gm = GM(4, init_params=init, max_iter=0, random_state=1).fit(X)
    assert gm.n_iter_ == 0 and gm.lower_bounds_ == [] and gm.converged_ is False
    for name in FITTED_ATTRS:
        assert np.all(np.isfinite(getattr(gm, name)))


def test_random_init_depends_on_the_seed(X):
    a = GM(4, init_params="random", max_iter=0, random_state=1).fit(X)
    b = GM(4, init_params="random", max_iter=0, random_state=2).fit(X)
    assert not np.array_equal(a.means_, b.means_)


def test_kmeans_init_finds_the_blobs(X):
    gm = GM(4, covariance_type="spherical", max_iter=0, random_state=0).fit(X)
    found = np.sort(np.round(gm.means_ / 6.0), axis=0)
    assert np.array_equal(found, np.sort(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]),
                                         axis=0))


def test_given_parameters_skip_initialisation(X):
    """With weights_init, means_init and precisions_init all given, init_params and
    random_state do not matter."""
    kw = given_init(X, "full")
    a = GM(4, init_params="random", random_state=1, max_iter=3, **kw).fit(X)
    b = GM(4, init_params="kmeans", random_state=2, max_iter=3, **kw).fit(X)
    assert_same_model(a, b)


def test_partial_user_init(X):
    """means_init alone: the weights and covariances come from the initialisation method."""
    m0 = X[::100][:4]
    gm = GM(4, means_init=m0, max_iter=0, random_state=0).fit(X)
    np.testing.assert_array_equal(gm.means_, m0)


# ------------------------------------------------------------------------------- n_init -----
def test_n_init_keeps_the_best(X, monkeypatch):
    results = []
    real_run_em = _gaussian.run_em

    def recording_run_em(*args, **kwargs):
        res = real_run_em(*args, **kwargs)
        results.append(res)
        return res

    monkeypatch.setattr(_gaussian, "run_em", recording_run_em)
    gm = GM(6, init_params="random", n_init=4, max_iter=5, tol=0.0, random_state=3).fit(X)
    assert len(results) == 4
    bounds = [r.lower_bound for r in results]
    assert len(set(bounds)) > 1  # the initialisations really differ
    best = results[int(np.argmax(bounds))]
    assert gm.lower_bound_ == max(bounds)
    np.testing.assert_array_equal(gm.means_, best.params.means)
    np.testing.assert_array_equal(gm.covariances_, best.params.cov.covariances)
    assert gm.lower_bounds_ == best.lower_bounds
    # n_init > 1 is never worse than its first initialisation alone
    one = GM(6, init_params="random", n_init=1, max_iter=5, tol=0.0, random_state=3).fit(X)
    assert gm.lower_bound_ >= one.lower_bound_


# ---------------------------------------------------------------------------- warm_start ----
@pytest.mark.parametrize("kind", KINDS)
def test_warm_start_continues(X, kind):
    gm = GM(4, covariance_type=kind, warm_start=True, tol=1e-6, max_iter=500, random_state=0)
    gm.fit(X)
    assert gm.converged_
    first_lb, first_iter = gm.lower_bound_, gm.n_iter_
    gm.fit(X)
    assert first_iter > 2 and gm.n_iter_ <= 2
    assert gm.lower_bound_ >= first_lb - 1e-9 * abs(first_lb)


@pytest.mark.parametrize("kind", KINDS)
def test_warm_start_equals_one_longer_fit(X, kind):
    """3 iterations, then 4 more from there == 7 iterations (same start)."""
    kw = dict(covariance_type=kind, tol=0.0, **given_init(X, kind))
    long = GM(4, max_iter=7, **kw).fit(X)
    gm = GM(4, max_iter=3, warm_start=True, **kw).fit(X)
    gm.set_params(max_iter=4).fit(X)
    assert gm.n_iter_ == 4
    for name in FITTED_ATTRS:
        assert_close(getattr(gm, name), getattr(long, name), 1e-12, name)
    assert_close(gm.lower_bounds_, long.lower_bounds_[3:], 1e-12)


def test_without_warm_start_refit_starts_over(X):
    gm = GM(4, random_state=0, max_iter=5, tol=0.0)
    a = gm.fit(X).means_.copy()
    b = gm.fit(X).means_.copy()
    assert_reproducible(a, b)
    assert gm.n_iter_ == 5


# -------------------------------------------------------------------------------- sample ----
@pytest.mark.parametrize("kind", KINDS)
def test_sample(X, kind):
    gm = GM(4, covariance_type=kind, random_state=0).fit(X)
    for n in (1, 7, 4000):
        S, y = gm.sample(n)
        assert S.shape == (n, 3) and S.dtype == np.float64
        assert y.shape == (n,) and y.dtype.kind == "i"
        assert np.all((0 <= y) & (y < 4))
        assert np.all(np.diff(y) >= 0)  # grouped by component, like scikit-learn
    # reproducible with an int random_state
    S1, y1 = gm.sample(50)
    S2, y2 = gm.sample(50)
    np.testing.assert_array_equal(S1, S2)
    np.testing.assert_array_equal(y1, y2)
    # the draws follow the model: per-component means and covariances
    S, y = gm.sample(4000)
    dense = ref.component_covariances(gm.covariances_, kind, 4, 3)
    counts = np.bincount(y, minlength=4)
    np.testing.assert_allclose(counts / 4000, gm.weights_, atol=0.04)
    for k in range(4):
        Sk = S[y == k]
        se = np.sqrt(np.diag(dense[k]) / len(Sk))
        assert np.all(np.abs(Sk.mean(axis=0) - gm.means_[k]) < 5 * se + 1e-12)
        np.testing.assert_allclose(np.cov(Sk.T), dense[k], atol=0.35 * np.abs(dense[k]).max())


def test_sample_random_state_none_differs(X):
    gm = GM(2, random_state=None).fit(X)
    assert not np.array_equal(gm.sample(20)[0], gm.sample(20)[0])


# ------------------------------------------------------------------------- sample_weight ----
@pytest.mark.parametrize("kind", KINDS)
def test_integer_weights_equal_repeated_rows(X, kind):
    rng = np.random.default_rng(7)
    sw = rng.integers(0, 4, size=X.shape[0])
    kw = dict(covariance_type=kind, tol=0.0, max_iter=10, **given_init(X, kind))
    a = GM(4, **kw).fit(X, sample_weight=sw)
    b = GM(4, **kw).fit(np.repeat(X, sw, axis=0))
    for name in FITTED_ATTRS:
        assert_close(getattr(a, name), getattr(b, name), 1e-10, name)
    assert_close(a.lower_bounds_, b.lower_bounds_, 1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_weights_scale_invariance_and_unit_weights(X, kind):
    sw = np.random.default_rng(8).uniform(0.1, 3.0, size=X.shape[0])
    kw = dict(covariance_type=kind, tol=0.0, max_iter=10, **given_init(X, kind))
    a = GM(4, **kw).fit(X, sample_weight=sw)
    b = GM(4, **kw).fit(X, sample_weight=sw * 1000.0)
    for name in FITTED_ATTRS:
        assert_close(getattr(a, name), getattr(b, name), 1e-10, name)
    c = GM(4, **kw).fit(X, sample_weight=np.ones(X.shape[0]))
    d = GM(4, **kw).fit(X)
    assert_same_model(c, d)


def test_weighted_fit_matches_reference_em(X):
    sw = np.random.default_rng(9).uniform(0.0, 2.0, size=X.shape[0])
    kw = given_init(X, "diag")
    gm = GM(4, covariance_type="diag", tol=0.0, max_iter=6, reg_covar=1e-6, **kw)
    gm.fit(X, sample_weight=sw)
    out = ref.em(X, sw, kw["weights_init"], kw["means_init"], 1.0 / kw["precisions_init"],
                 "diag", 1e-6, 6)
    assert_close(gm.means_, out["means"], 1e-10)
    assert_close(gm.covariances_, out["covariances"], 1e-10)
    assert_close(gm.lower_bounds_, out["lower_bounds"], 1e-10)


# ------------------------------------------------------------------- inference methods ------
@pytest.mark.parametrize("kind", KINDS)
def test_fit_predict_equals_fit_then_predict(X, kind):
    kw = dict(covariance_type=kind, random_state=0, max_iter=20)
    labels = GM(4, **kw).fit_predict(X)
    gm = GM(4, **kw).fit(X)
    np.testing.assert_array_equal(labels, gm.predict(X))
    assert labels.dtype == np.int64


@pytest.mark.parametrize("kind", KINDS)
def test_inference_methods_are_consistent(X, kind):
    gm = GM(4, covariance_type=kind, random_state=0).fit(X)
    N = X.shape[0]
    proba = gm.predict_proba(X)
    assert proba.shape == (N, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(gm.predict(X), proba.argmax(axis=1))
    ss = gm.score_samples(X)
    assert ss.shape == (N,)
    assert gm.score(X) == pytest.approx(ss.mean(), rel=1e-14)
    p = ref.n_parameters(kind, 4, 3)
    assert gm.bic(X) == pytest.approx(-2 * ss.sum() + p * np.log(N), rel=1e-12)
    assert gm.aic(X) == pytest.approx(-2 * ss.sum() + 2 * p, rel=1e-12)
    # against the reference densities
    logp, resp = ref.log_prob_resp(X, gm.weights_, gm.means_, gm.covariances_, kind)
    assert_close(ss, logp, 1e-10)
    np.testing.assert_allclose(proba, resp, atol=1e-10)
    # the lower bound is the mean log-likelihood before the last M-step: close to score(X)
    assert gm.score(X) >= gm.lower_bound_ - 1e-9 * abs(gm.lower_bound_)


@pytest.mark.parametrize("chunk_size", [1, 7, 100, None])
def test_chunk_size_does_not_change_the_model(X, chunk_size):
    kw = dict(covariance_type="full", tol=0.0, max_iter=10, **given_init(X, "full"))
    a = GM(4, chunk_size=chunk_size, **kw).fit(X)
    b = GM(4, chunk_size=400, **kw).fit(X)
    for name in FITTED_ATTRS:
        assert_close(getattr(a, name), getattr(b, name), 1e-11, name)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-11)


# --------------------------------------------------------------------- warnings, output -----
def test_convergence_warning_and_converged_flag(X):
    with pytest.warns(fastmix.ConvergenceWarning, match="did not converge"):
        gm = GM(4, max_iter=2, tol=0.0, random_state=0).fit(X)
    assert gm.converged_ is False and gm.n_iter_ == 2 and len(gm.lower_bounds_) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", fastmix.ConvergenceWarning)
        gm = GM(4, max_iter=200, tol=1e-3, random_state=0).fit(X)
    assert gm.converged_ is True and 1 <= gm.n_iter_ < 200
    assert len(gm.lower_bounds_) == gm.n_iter_
    assert abs(gm.lower_bounds_[-1] - gm.lower_bounds_[-2]) < 1e-3


def test_progress_bar_goes_to_stderr(X, capsys):
    GM(4, progress=True, max_iter=5, tol=0.0, random_state=0).fit(X)
    out, err = capsys.readouterr()
    assert "EM" in err and "5/5" in err
    assert out == ""
    GM(4, progress=True, n_init=2, max_iter=3, random_state=0).fit(X)
    _, err = capsys.readouterr()
    assert "init 1/2" in err and "init 2/2" in err


def test_verbose_output(X, capsys):
    GM(4, verbose=2, verbose_interval=2, max_iter=6, tol=0.0, random_state=0).fit(X)
    out, _ = capsys.readouterr()
    assert "Initialization 0" in out
    iteration_lines = [line for line in out.splitlines() if "Iteration" in line]
    assert [line.split()[1] for line in iteration_lines] == ["2", "4", "6"]
    assert "did not converge" in out
    GM(4, verbose=1, max_iter=6, random_state=0).fit(X)
    out, _ = capsys.readouterr()
    assert "Initialization 0" in out and "Iteration" not in out
    GM(4, verbose=0, max_iter=6, random_state=0).fit(X)
    out, err = capsys.readouterr()
    assert out == ""


# ------------------------------------------------------------------- sklearn conveniences ---
def test_clone_and_params(X):
    gm = GM(3, covariance_type="diag", reg_covar=1e-4, chunk_size=64, random_state=0)
    params = gm.get_params()
    assert params["chunk_size"] == 64 and params["progress"] is False
    c = clone(gm)
    assert c.get_params() == params and not hasattr(c, "means_")
    gm.set_params(n_components=2)
    assert gm.n_components == 2
    with pytest.raises(ValueError):
        gm.set_params(banana=1)
    gm.fit(X)
    assert gm.n_features_in_ == 3 and gm.means_.shape == (2, 3)


def test_fit_returns_self_and_ignores_y(X):
    gm = GM(2, random_state=0)
    assert gm.fit(X, np.arange(X.shape[0])) is gm


# ------------------------------------------------ issue 18: outputs, checkpoints, warnings ----
def test_fit_of_an_empty_list_says_x_is_empty():
    with pytest.raises(ValueError, match=r"X is empty \(shape \(0,\)\): pass a 2-D array"):
        GM(2).fit([])


def test_max_iter_zero_is_accepted_like_scikit_learn(X):
    """scikit-learn's GaussianMixture accepts max_iter=0 (the initialisation only; its KMeans
    rejects 0): fastmix follows the mixture; negative values are refused."""
    sk = pytest.importorskip("sklearn.mixture")
    sk.GaussianMixture(2, max_iter=0).fit(X)  # would raise if scikit-learn started refusing 0
    assert GM(2, max_iter=0, random_state=0).fit(X).n_iter_ == 0
    with pytest.raises(ValueError, match="max_iter"):
        GM(2, max_iter=-1).fit(X)


def test_save_checks_its_path_and_names_it(X, tmp_path):
    gm = GM(2, max_iter=3, random_state=0).fit(X)
    with pytest.raises(FileNotFoundError, match=r"cannot write output file /nonexist/m\.npz: "
                                                r"directory /nonexist does not exist") as e:
        gm.save("/nonexist/m.npz")
    assert ".tmp" not in str(e.value)
    with pytest.raises(IsADirectoryError, match=f"cannot write output file {tmp_path}: it is a "
                                                "directory"):
        gm.save(tmp_path)
    assert os.listdir(tmp_path) == []


def test_load_of_a_directory_says_so(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path} is a directory, not a fastmix model file"):
        fastmix.load(tmp_path)


def test_checkpoint_path_is_checked_before_any_work(X, tmp_path, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the data were read before the checkpoint path was checked")
    monkeypatch.setattr(GM, "_stream", no_work)
    with pytest.raises(FileNotFoundError, match=r"cannot write checkpoint /nonexist/ck\.npz"):
        GM(2).fit(X, checkpoint="/nonexist/ck.npz")
    with pytest.raises(IsADirectoryError, match=f"cannot write checkpoint {tmp_path}: it is a "
                                                "directory"):
        GM(2).fit(X, checkpoint=tmp_path)


def _ck_fit(data, ck, max_iter, **kw):
    kw.setdefault("random_state", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastmix.ConvergenceWarning)
        return GM(3, max_iter=max_iter, tol=0.0, chunk_size=64, **kw).fit(
            data, checkpoint=ck, resume=True)


def test_resume_refuses_a_checkpoint_of_other_data(X, tmp_path):
    ck = tmp_path / "ck.npz"
    _ck_fit(X, ck, 3)
    rng = np.random.default_rng(7)
    other = X[rng.permutation(X.shape[0])]  # same shape, dtype, values; other rows order
    with pytest.raises(ValueError, match=r"ck\.npz was written for other data or parameters "
                                         r"\(checkpoint vs now: contents differ \(sampled "
                                         r"rows\)\)"):
        _ck_fit(other, ck, 6)
    with pytest.raises(ValueError, match=r"rows 400 vs 300"):
        _ck_fit(X[:300], ck, 6)
    # a file of the same shape but other contents
    p = tmp_path / "other.npy"
    np.save(p, other)
    with pytest.raises(ValueError, match=r"contents differ"):
        _ck_fit(str(p), ck, 6)
    with pytest.raises(ValueError, match=r"sample weights none vs given"):
        GM(3, max_iter=6, tol=0.0, chunk_size=64, random_state=0).fit(
            X, sample_weight=np.ones(X.shape[0]), checkpoint=ck, resume=True)
    # parameters that change the result
    with pytest.raises(ValueError, match=r"reg_covar=1e-06 vs 0\.001"):
        _ck_fit(X, ck, 6, reg_covar=1e-3)
    with pytest.raises(ValueError, match=r"random_state=0 vs 1"):
        _ck_fit(X, ck, 6, random_state=1)
    assert fastmix.load(ck).n_iter_ == 3  # nothing was overwritten


def test_resume_with_the_same_rows_from_a_file_is_bit_identical(X, tmp_path):
    """The fingerprint follows the rows: the same data as a .npy resumes the in-memory fit, and
    a larger max_iter continues it to exactly an uninterrupted fit."""
    full = _ck_fit(X, tmp_path / "full.npz", 8)
    ck = tmp_path / "ck.npz"
    _ck_fit(X, ck, 3)
    p = tmp_path / "x.npy"
    np.save(p, X)
    resumed = _ck_fit(str(p), ck, 8)
    assert resumed.n_iter_ == 8
    np.testing.assert_array_equal(resumed.means_, full.means_)
    np.testing.assert_array_equal(resumed.covariances_, full.covariances_)
    assert resumed.lower_bounds_ == full.lower_bounds_


def test_a_plain_model_file_is_not_a_checkpoint(X, tmp_path):
    m = tmp_path / "m.npz"
    GM(3, max_iter=3, random_state=0).fit(X).save(m)
    with pytest.raises(ValueError, match="does not record the data it was fitted on"):
        _ck_fit(X, m, 6)


def test_degenerate_component_warning_points_at_the_caller():
    rng = np.random.default_rng(0)
    Xd = np.concatenate([rng.normal(size=(200, 2)), np.tile([[5.0, 5.0]], (50, 1))])
    for cov in ("diag", "full"):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            GM(3, covariance_type=cov, reg_covar=0.0, random_state=0).fit(Xd)
        deg = [w for w in rec if issubclass(w.category, fastmix.DegenerateComponentWarning)]
        assert deg, cov
        assert {w.filename for w in deg} == {__file__}, cov


def test_duplicate_points_warn_like_scikit_learn_and_the_fit_completes():
    Xd = np.concatenate([np.tile([[0.1, 0.7, 1.3]], (300, 1)),
                         np.tile([[5.1, -0.7, 2.3]], (200, 1))])
    for init in ("kmeans", "k-means++", "random_from_data"):
        with pytest.warns(fastmix.ConvergenceWarning, match=r"Number of distinct clusters \(2\) "
                                                            r"found smaller than n_components "
                                                            r"\(3\)") as rec:
            gm = GM(3, init_params=init, random_state=0).fit(Xd)
        assert any(w.filename == __file__ for w in rec)
        assert np.all(np.isfinite(gm.means_)) and gm.n_iter_ >= 1
    with warnings.catch_warnings():  # distinct points: no such warning
        warnings.simplefilter("error", fastmix.ConvergenceWarning)
        rng = np.random.default_rng(0)
        GM(3, random_state=0).fit(rng.normal(size=(300, 2)))

# ------------------------------------------------------------ scikit-learn compatibility ----
def test_convergence_warning_is_sklearns():
    """A filter on scikit-learn's ConvergenceWarning catches fastmix's (as scikit-learn's own
    tests and users' code do)."""
    from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
    assert issubclass(fastmix.ConvergenceWarning, SkConvergenceWarning)
    Xs = np.random.default_rng(0).normal(size=(60, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkConvergenceWarning)
        with pytest.raises(SkConvergenceWarning, match="did not converge"):
            GM(3, max_iter=1, tol=0.0, random_state=0).fit(Xs)


@pytest.mark.parametrize("kind", list(KINDS) + ["lowrank"])
def test_float32_fit_has_float32_attributes(X, kind):
    """As in scikit-learn: a float32 fit returns float32 parameters (rounded from the float64
    ones), float32 score_samples / predict_proba; predict and score keep working, and the model
    equals the float64 fit to float32 accuracy."""
    X32 = X.astype(np.float32)
    kw = dict(covariance_type=kind, random_state=0, max_iter=30, tol=0.0,
              weights_init=np.full(4, 0.25), means_init=X[::100])  # same start, same order
    gm = GM(4, **kw).fit(X32)
    names = FITTED_ATTRS + (("loadings_", "noise_variances_") if kind == "lowrank" else ())
    for name in names:
        assert getattr(gm, name).dtype == np.float32, name
    assert gm.score_samples(X32).dtype == np.float32
    assert gm.predict_proba(X32).dtype == np.float32
    # float64 rows through the float32 model: float64 results
    assert gm.score_samples(X).dtype == np.float64
    ref64 = GM(4, **kw).fit(X)
    # lowrank: factor-analysis EM converges slowly, so after 30 iterations the float32 and
    # float64 runs still differ by ~0.5 % in the covariances (not a rounding of the result)
    rtol = 1e-2 if kind == "lowrank" else 1e-3
    for name in names:
        assert getattr(ref64, name).dtype == np.float64, name
        # lowrank: only W W^T + diag(psi) is identified (with q = D - 1 the split between the
        # loadings and the noise variances drifts); its covariances_ are compared
        if name not in ("loadings_", "noise_variances_"):
            assert_close(getattr(gm, name), getattr(ref64, name), rtol, name)
    np.testing.assert_array_equal(gm.predict(X32), ref64.predict(X))
    assert gm.score(X32) == pytest.approx(ref64.score(X), rel=1e-5)
    assert np.isfinite(gm.bic(X32))
    # warm start from the float32 attributes continues the fit
    gm.set_params(warm_start=True, max_iter=2)
    gm.fit(X32)
    assert gm.means_.dtype == np.float32


def test_float32_model_survives_save_and_load(X, tmp_path):
    gm = GM(3, covariance_type="full", random_state=0).fit(X.astype(np.float32))
    path = tmp_path / "m.npz"
    gm.save(path)
    back = fastmix.load(path)
    for name in FITTED_ATTRS:
        assert getattr(back, name).dtype == np.float32, name
        np.testing.assert_array_equal(getattr(back, name), getattr(gm, name))
    np.testing.assert_array_equal(back.predict(X), gm.predict(X))


@pytest.mark.parametrize("kind", KINDS)
def test_reg_covar_zero_on_collapsing_data_warns_and_recovers(kind):
    """scikit-learn's test_regularisation data (two points, five copies each, 10 components,
    reg_covar=0): scikit-learn raises "ill-defined empirical covariance"; fastmix, by design
    (GaussianMixture's Notes), regularises the collapsed components, warns and returns a finite
    model that puts half the weight on each point."""
    Xc = np.vstack((np.ones((5, 5)), np.zeros((5, 5))))
    for K in (10, 2):
        with pytest.warns(fastmix.DegenerateComponentWarning, match="reg_covar"):
            gm = GM(K, reg_covar=0, covariance_type=kind, random_state=0).fit(Xc)
        for name in FITTED_ATTRS:
            assert np.all(np.isfinite(getattr(gm, name))), name
        big = np.argsort(gm.weights_)[-2:]
        np.testing.assert_allclose(np.sort(gm.weights_[big]), [0.5, 0.5], atol=1e-6)
        np.testing.assert_allclose(np.sort(gm.means_[big], axis=0), [[0.0] * 5, [1.0] * 5],
                                   atol=1e-6)
        labels = gm.predict(Xc)
        assert len(set(labels[:5])) == 1 and len(set(labels[5:])) == 1 and labels[0] != labels[5]
        assert np.all(np.isfinite(gm.score_samples(Xc)))


def test_estimators_module_is_a_deprecated_alias_of_mixture():
    """``fastmix.estimators`` (the module before ``fastmix.mixture``) still gives the same classes
    for one release, with a DeprecationWarning on import."""
    import importlib
    import sys

    import fastmix.mixture
    sys.modules.pop("fastmix.estimators", None)
    with pytest.warns(DeprecationWarning, match="fastmix.mixture"):
        old = importlib.import_module("fastmix.estimators")
    for name in fastmix.mixture.__all__:
        assert getattr(old, name) is getattr(fastmix.mixture, name), name
