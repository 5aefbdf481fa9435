"""BayesianGaussianMixture: parity with scikit-learn from the same responsibilities, bad priors,
float32, weights, persistence, the data paths (file, Dask, threads), the lower bound's
monotonicity, pruning and stochastic variational inference."""
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastmix
from fastmix import variational as vb
from fastmix.em import e_step_stats

KINDS = ("full", "tied", "diag", "spherical")
PRIORS = ("dirichlet_process", "dirichlet_distribution")
ATTRS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "mean_precision_",
         "degrees_of_freedom_", "mean_prior_", "covariance_prior_")


def blobs(n=600, D=3, K=3, seed=0, sep=4.0):
    rng = np.random.RandomState(seed)
    c = rng.randn(K, D) * sep
    return np.vstack([c[k] + rng.randn(n // K, D) * rng.uniform(0.5, 1.5, D)
                      for k in range(K)])


def digits():
    sk_datasets = pytest.importorskip("sklearn.datasets")
    return sk_datasets.load_digits().data[:400]


def explicit_priors(kind, D):
    cov = {"full": np.eye(D) * 2.0 + 0.3, "tied": np.eye(D) * 1.5 + 0.2,
           "diag": np.linspace(0.5, 2.0, D), "spherical": 1.7}[kind]
    return dict(weight_concentration_prior=0.5, mean_precision_prior=0.3,
                mean_prior=np.linspace(-1, 1, D), degrees_of_freedom_prior=D + 2.5,
                covariance_prior=cov)


def fit_both(X, R, **kw):
    """scikit-learn's and fastmix's fits from the same initial responsibilities R."""
    skm = pytest.importorskip("sklearn.mixture")
    sk = skm.BayesianGaussianMixture(random_state=0, **kw)
    # scikit-learn's own M-step from R instead of its initialisation (the same call it makes)
    sk._initialize_parameters = lambda X_, rs, xp=None: sk._initialize(X_, R)
    fm = fastmix.BayesianGaussianMixture(random_state=0, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X)
        fm._fit(X, None, resp=R)
    return sk, fm


def assert_rel(a, b, rtol, name):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (name, a.shape, b.shape)
    scale = max(float(np.max(np.abs(b))), 1e-300)
    err = float(np.max(np.abs(a - b))) / scale
    assert err <= rtol, f"{name}: relative difference {err:.3g} > {rtol}"


def assert_parity(sk, fm, rtol=1e-8):
    assert_rel(fm.lower_bounds_, np.ravel(sk.lower_bounds_), rtol, "lower_bounds_")
    assert_rel(fm.lower_bound_, np.ravel(sk.lower_bound_)[0], rtol, "lower_bound_")
    for name in ATTRS:
        assert_rel(getattr(fm, name), getattr(sk, name), rtol, name)
    wa, wb = fm.weight_concentration_, sk.weight_concentration_
    for a, b in zip(wa if isinstance(wa, tuple) else (wa,), wb if isinstance(wb, tuple) else (wb,)):
        assert_rel(a, b, rtol, "weight_concentration_")
    assert fm.n_iter_ == sk.n_iter_ and fm.converged_ == sk.converged_


# ------------------------------------------------------------------ parity ----------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prior_type", PRIORS)
@pytest.mark.parametrize("dataset", ["blobs", "digits", "blobs-explicit-priors"])
def test_parity_with_sklearn(kind, prior_type, dataset):
    X = digits() if dataset == "digits" else blobs()
    K = 6
    R = np.random.RandomState(1).dirichlet(np.ones(K), size=X.shape[0])
    kw = explicit_priors(kind, X.shape[1]) if dataset.endswith("explicit-priors") else {}
    sk, fm = fit_both(X, R, n_components=K, covariance_type=kind,
                      weight_concentration_prior_type=prior_type, max_iter=12, tol=0.0, **kw)
    assert_parity(sk, fm)


def test_parity_until_convergence_and_predictions():
    """To convergence (same number of iterations, same stopping decision) and the same
    predict / predict_proba / score_samples."""
    X = blobs(n=900, D=4, K=3, seed=3)
    R = np.random.RandomState(2).dirichlet(np.ones(5), size=X.shape[0])
    sk, fm = fit_both(X, R, n_components=5, covariance_type="full", max_iter=500, tol=1e-6)
    assert sk.converged_ and fm.converged_
    assert_parity(sk, fm)
    np.testing.assert_array_equal(fm.predict(X), sk.predict(X))
    np.testing.assert_allclose(fm.predict_proba(X), sk.predict_proba(X), atol=1e-9)
    np.testing.assert_allclose(fm.score_samples(X), sk.score_samples(X), rtol=1e-10)


def test_default_init_matches_sklearn_semantics():
    """init_params runs fastmix's initialisation; with responsibilities from k-means labels the
    start is scikit-learn's _initialize of those labels: a fit from fastmix's own k-means start
    reaches the same bound as scikit-learn from its own start on well-separated data."""
    skm = pytest.importorskip("sklearn.mixture")
    X = blobs(n=600, D=2, K=3, seed=5, sep=8.0)
    fm = fastmix.BayesianGaussianMixture(n_components=3, random_state=0, tol=1e-8,
                                         max_iter=500).fit(X)
    sk = skm.BayesianGaussianMixture(n_components=3, random_state=0, tol=1e-8,
                                     max_iter=500).fit(X)
    assert abs(fm.lower_bound_ - sk.lower_bound_) < 1e-5 * abs(sk.lower_bound_)


# ------------------------------------------------------------------ bad input -------------
@pytest.mark.parametrize("kw, name", [
    (dict(weight_concentration_prior=0.0), "weight_concentration_prior"),
    (dict(weight_concentration_prior=-1.0), "weight_concentration_prior"),
    (dict(weight_concentration_prior=float("nan")), "weight_concentration_prior"),
    (dict(mean_precision_prior=0.0), "mean_precision_prior"),
    (dict(degrees_of_freedom_prior=2.0), "degrees_of_freedom_prior"),   # D - 1 with D = 3
    (dict(covariance_prior=np.array([[1.0, 2, 0], [2, 1, 0], [0, 0, 1]])), "covariance_prior"),
    (dict(covariance_prior=np.eye(2)), "covariance_prior"),
    (dict(covariance_type="diag", covariance_prior=np.array([1.0, -1.0, 1.0])),
     "covariance_prior"),
    (dict(covariance_type="spherical", covariance_prior=0.0), "covariance_prior"),
    (dict(mean_prior=np.zeros(2)), "mean_prior"),
    (dict(mean_prior=np.array([0.0, np.inf, 0.0])), "mean_prior"),
    (dict(weight_concentration_prior_type="dirichlet"), "weight_concentration_prior_type"),
    (dict(covariance_type="lowrank"), "covariance_type"),
    (dict(total_samples=0), "total_samples"),
])
def test_bad_priors_raise_naming_the_parameter_and_lose_nothing(kw, name):
    X = blobs()
    est = fastmix.BayesianGaussianMixture(n_components=2, random_state=0, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X)
    before = {a: np.copy(getattr(est, a)) for a in ATTRS}
    est.set_params(**kw)
    with pytest.raises(ValueError, match=name.replace("_", "_")):
        est.fit(X)
    for a in ATTRS:  # the failed fit left the fitted model as it was
        np.testing.assert_array_equal(getattr(est, a), before[a])


def test_bad_prior_fails_before_reading_data(tmp_path):
    """A bad prior is reported before any pass over out-of-core data (no wasted pass)."""
    calls = []

    def chunks():
        calls.append(1)
        yield blobs()
    est = fastmix.BayesianGaussianMixture(n_components=2, degrees_of_freedom_prior=0.5)
    with pytest.raises(ValueError, match="degrees_of_freedom_prior"):
        est.fit(chunks)
    assert len(calls) <= 1  # at most the header/first-block probe that finds D


# ------------------------------------------------------------------ dtypes, weights -------
def test_float32_fit_is_float32_and_close_to_float64():
    X = blobs(n=900, D=3)
    kw = dict(n_components=4, random_state=0, max_iter=30, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f64 = fastmix.BayesianGaussianMixture(**kw).fit(X)
        f32 = fastmix.BayesianGaussianMixture(**kw).fit(X.astype(np.float32))
    for a in ("weights_", "means_", "covariances_", "mean_precision_", "degrees_of_freedom_"):
        assert getattr(f32, a).dtype == np.float32, a
        np.testing.assert_allclose(getattr(f32, a), getattr(f64, a), rtol=2e-3, atol=2e-4)
    assert f32.score_samples(X.astype(np.float32)).dtype == np.float32
    assert abs(f32.lower_bound_ - f64.lower_bound_) < 1e-4 * abs(f64.lower_bound_)


@pytest.mark.parametrize("kind", KINDS)
def test_integer_weights_equal_repeated_rows(kind):
    """Frequency weights: the priors (weighted mean and covariance, divided by sum w - 1) and
    every iteration equal those of the repeated rows."""
    X = blobs(n=300)
    w = np.random.RandomState(0).randint(0, 4, size=X.shape[0]).astype(np.float64)
    R = np.random.RandomState(1).dirichlet(np.ones(4), size=X.shape[0])
    rows = np.repeat(np.arange(X.shape[0]), w.astype(int))
    kw = dict(n_components=4, covariance_type=kind, max_iter=8, tol=0.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = fastmix.BayesianGaussianMixture(**kw)
        a._fit(X, w, resp=R)
        b = fastmix.BayesianGaussianMixture(**kw)
        b._fit(X[rows], None, resp=R[rows])
    for name in ATTRS:
        assert_rel(getattr(a, name), getattr(b, name), 1e-10, name)
    assert_rel(a.lower_bounds_, b.lower_bounds_, 1e-10, "lower_bounds_")


# ------------------------------------------------------------------ persistence -----------
@pytest.mark.parametrize("prior_type", PRIORS)
@pytest.mark.parametrize("kind", ["full", "tied", "spherical"])
def test_save_load_round_trip(tmp_path, kind, prior_type):
    X = blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fastmix.BayesianGaussianMixture(
            n_components=3, covariance_type=kind, weight_concentration_prior_type=prior_type,
            random_state=0, max_iter=10, mean_prior=np.zeros(3)).fit(X)
    est.save(tmp_path / "m.npz")
    back = fastmix.load(tmp_path / "m.npz")
    assert type(back) is fastmix.BayesianGaussianMixture
    for name in ATTRS + ("precisions_", "lower_bound_"):
        np.testing.assert_array_equal(getattr(back, name), getattr(est, name))
    for a, b in zip(np.atleast_2d(back.weight_concentration_),
                    np.atleast_2d(est.weight_concentration_)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.score_samples(X), est.score_samples(X))
    assert back.get_params()["mean_prior"].tolist() == [0.0, 0.0, 0.0]


def test_partial_fit_continues_after_load(tmp_path):
    X = blobs(n=1200)
    kw = dict(n_components=3, covariance_type="diag", random_state=0, total_samples=1200)
    a = fastmix.BayesianGaussianMixture(**kw)
    for i in range(3):
        a.partial_fit(X[i * 300:(i + 1) * 300])
    a.save(tmp_path / "p.npz")
    b = fastmix.load(tmp_path / "p.npz")
    a.partial_fit(X[900:])
    b.partial_fit(X[900:])
    assert b.n_steps_ == a.n_steps_ == 4
    assert b.lower_bound_ == a.lower_bound_  # the running entropy term was saved too
    for name in ATTRS:
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name))


# ------------------------------------------------------------------ data paths ------------
@pytest.mark.parametrize("kind", KINDS)
def test_file_fit_equals_memory_fit_bit_for_bit(tmp_path, kind):
    X = blobs(n=3000, D=4, K=4)
    np.save(tmp_path / "x.npy", X)
    kw = dict(n_components=5, covariance_type=kind, random_state=0, max_iter=10, tol=0.0,
              chunk_size=256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = fastmix.BayesianGaussianMixture(**kw).fit(X)
        fil = fastmix.BayesianGaussianMixture(**kw).fit(str(tmp_path / "x.npy"))
    for name in ATTRS + ("precisions_",):
        assert np.asarray(getattr(fil, name)).tobytes() == np.asarray(getattr(mem, name)).tobytes(), name
    assert fil.lower_bounds_ == mem.lower_bounds_


def test_dask_fit_equals_local_fit():
    da = pytest.importorskip("dask.array")
    pytest.importorskip("distributed")
    X = blobs(n=4000, D=3, K=3)
    kw = dict(n_components=4, random_state=0, max_iter=10, tol=0.0, chunk_size=500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = fastmix.BayesianGaussianMixture(**kw).fit(X)
        with __import__("dask").config.set(scheduler="synchronous"):
            dist = fastmix.BayesianGaussianMixture(**kw).fit(da.from_array(X, chunks=1000))
    for name in ATTRS:
        assert_rel(getattr(dist, name), getattr(local, name), 1e-12, name)
    assert_rel(dist.lower_bounds_, local.lower_bounds_, 1e-12, "lower_bounds_")


THREADS_SCRIPT = textwrap.dedent(r"""
    import sys, warnings
    import numpy as np
    import fastmix
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(1)
    X = 4.0 * rng.normal(size=(5, 4))[rng.integers(0, 5, 16000)] + rng.normal(size=(16000, 4))
    sw = rng.uniform(0.1, 2.0, 16000)
    out = {}
    for kind in ("full", "tied", "diag", "spherical"):
        for dt in (np.float64, np.float32):
            m = fastmix.BayesianGaussianMixture(n_components=6, covariance_type=kind,
                                                random_state=0, max_iter=8, tol=0.0,
                                                chunk_size=1000).fit(X.astype(dt), sample_weight=sw)
            for a in ("weights_", "means_", "covariances_", "degrees_of_freedom_"):
                out[f"{kind}/{np.dtype(dt).name}/{a}"] = np.asarray(getattr(m, a))
            out[f"{kind}/{np.dtype(dt).name}/lb"] = np.array(m.lower_bounds_)
    np.savez(sys.argv[1], **out)
""")


def test_bit_identical_on_one_and_two_threads(tmp_path):
    script = tmp_path / "fit.py"
    script.write_text(THREADS_SCRIPT)
    procs = []
    for n in (1, 2):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(n))
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path / f"{n}.npz")],
                                      env=env, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=400)
        assert p.returncode == 0, err[-2000:]
    with np.load(tmp_path / "1.npz") as one, np.load(tmp_path / "2.npz") as two:
        assert sorted(one.files) == sorted(two.files) and len(one.files) == 40
        differ = [k for k in one.files if one[k].tobytes() != two[k].tobytes()]
    assert not differ, differ


# ------------------------------------------------------------------ properties ------------
@settings(max_examples=int(os.environ.get("FASTMIX_HYPOTHESIS_EXAMPLES", "12")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), kind=st.sampled_from(KINDS),
       prior_type=st.sampled_from(PRIORS), K=st.integers(1, 6), D=st.integers(1, 4),
       weighted=st.booleans())
def test_lower_bound_never_decreases(seed, kind, prior_type, K, D, weighted):
    rng = np.random.default_rng(seed)
    n = 40 * K + 20
    X = rng.normal(size=(K, D))[rng.integers(0, K, n)] * 3 + rng.normal(size=(n, D))
    sw = rng.uniform(0.2, 2.0, n) if weighted else None
    est = fastmix.BayesianGaussianMixture(n_components=K, covariance_type=kind,
                                          weight_concentration_prior_type=prior_type,
                                          init_params="random", random_state=seed,
                                          max_iter=25, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, sample_weight=sw)
    lb = np.array(est.lower_bounds_)
    assert np.all(np.isfinite(lb))
    # non-decreasing up to the rounding of a sum of about n terms of size |lb|/n
    slack = 1e-10 * np.maximum(np.abs(lb[1:]), 1.0)
    assert np.all(np.diff(lb) >= -slack), np.diff(lb).min()


@pytest.mark.parametrize("kind", KINDS)
def test_statistics_of_two_halves_merge_to_the_whole(kind):
    X = blobs(n=2000, D=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fastmix.BayesianGaussianMixture(n_components=4, covariance_type=kind,
                                              random_state=0, max_iter=3).fit(X)
    g = est._params()  # the variational kernel parameters
    whole = e_step_stats(X, None, g, 500)
    halves = e_step_stats(X[:1000], None, g, 500) + e_step_stats(X[1000:], None, g, 500)
    for f in ("nk", "s1", "s2"):
        np.testing.assert_allclose(getattr(halves, f), getattr(whole, f), rtol=1e-12,
                                   atol=1e-9)
    assert abs(halves.ll - whole.ll) <= 1e-12 * abs(whole.ll)
    # and the M-step + bound from merged statistics equals that from the whole
    prior = est._prior()
    old = est._vb_params()
    a = vb.m_step(*vb.moments(whole, prior.reg_covar), prior)
    b = vb.m_step(*vb.moments(halves, prior.reg_covar), prior)
    np.testing.assert_allclose(b.means, a.means, rtol=1e-12)
    np.testing.assert_allclose(vb.lower_bound(halves, old, b), vb.lower_bound(whole, old, a),
                               rtol=1e-12)


def test_entropy_from_statistics_equals_direct_sum():
    """sum r log r from the statistics (no extra pass) equals the direct N x K sum."""
    X = blobs(n=500, D=3)
    for kind in KINDS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = fastmix.BayesianGaussianMixture(n_components=4, covariance_type=kind,
                                                  random_state=0, max_iter=2).fit(X)
        g = est._params()
        stats = e_step_stats(X, None, g, 128)
        R = est.predict_proba(X)
        with np.errstate(divide="ignore", invalid="ignore"):
            direct = np.nansum(R * np.log(R))
        got = vb.sum_r_log_rho(stats, g) - stats.ll
        assert abs(got - direct) <= 1e-9 * max(abs(direct), 1.0), (kind, got, direct)


# ------------------------------------------------------------------ pruning ---------------
def eight_blobs(seed, n_per=150):
    rng = np.random.default_rng(seed)
    centres = np.array([[i, j] for i in range(4) for j in range(2)], dtype=float) * 12.0
    return np.vstack([c + rng.normal(size=(n_per, 2)) for c in centres])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dp_prior_prunes_surplus_components(seed):
    """8 well-separated components, n_components=30, DP prior: 8 components keep weight > 1e-2
    (the full 10-seed comparison with scikit-learn is bench/bayesian.py)."""
    X = eight_blobs(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fastmix.BayesianGaussianMixture(n_components=30, random_state=seed,
                                              weight_concentration_prior=1e-2,
                                              max_iter=300).fit(X)
    assert int(np.sum(est.weights_ > 1e-2)) == 8


# ------------------------------------------------------------------ SVI -------------------
def test_svi_passes_end_near_batch_vb():
    """SVI on a stationary stream (the same rows, pass after pass) ends near the batch VB
    solution.  Tolerance, derived: near the optimum each step replaces a fraction rho of the
    running statistics by a batch's, scaled to the data size, so the running statistics are an
    exponentially weighted average of batch estimates whose stationary variance is
    rho / (2 - rho) times a single batch's (rho ~ rho_T, the last step).  A batch of B rows
    estimates a component mean with standard error sigma_k / sqrt(B pi_k); the SVI mean is
    therefore off by about sqrt(rho / (2 - rho)) sigma_k / sqrt(B pi_k), and we allow 5 such
    standard errors.  Weights likewise: sqrt(rho / (2 - rho)) sqrt(pi (1 - pi) / B), 5 of them.
    The bound is quadratic at the optimum: each of the p free parameters off by one such
    standard error costs 1/2 (N / B) rho / (2 - rho) nats, so the gap in the total bound (one
    batch iteration from the SVI posterior vs the converged batch one) is about
    p/2 (N / B) rho / (2 - rho); we allow 5 times that."""
    N, B, K, D = 24000, 1000, 4, 2
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    X = centres[rng.integers(0, K, N)] + rng.normal(size=(N, D))
    kw = dict(n_components=K, covariance_type="diag", random_state=0, chunk_size=500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = fastmix.BayesianGaussianMixture(max_iter=500, tol=1e-9, **kw).fit(X)
        svi = fastmix.BayesianGaussianMixture(max_iter=4, tol=0.0, batch_size=B,
                                              step_offset=1.0, step_decay=0.6, **kw)
        svi.fit(X, algorithm="online")
    T = svi.n_steps_ - 1
    rho = (T + 1.0) ** -0.6
    f = np.sqrt(rho / (2 - rho))
    pi = batch.weights_
    sigma = np.sqrt(batch.covariances_ * batch.degrees_of_freedom_[:, None]
                    / (batch.degrees_of_freedom_[:, None] - 1))
    tol_means = 5 * f * sigma / np.sqrt(B * pi[:, None])
    assert np.all(np.abs(svi.means_ - batch.means_) <= tol_means), \
        (np.abs(svi.means_ - batch.means_) / tol_means).max()
    tol_w = 5 * f * np.sqrt(pi * (1 - pi) / B)
    assert np.all(np.abs(svi.weights_ - pi) <= tol_w)
    # the posterior's counts (nu_k = nu_0 + N_k, beta_k = beta_0 + N_k) are those of the whole
    # data set (the chunks' statistics scaled by N / B), off by N times the weights' error
    for name in ("degrees_of_freedom_", "mean_precision_"):
        assert np.all(np.abs(getattr(svi, name) - getattr(batch, name)) <= N * tol_w), name
    # the bound: one batch iteration from the SVI posterior
    one = fastmix.BayesianGaussianMixture(max_iter=1, warm_start=True, **kw)
    one.set_params(max_iter=1)
    one.__dict__.update({k: v for k, v in svi.__dict__.items() if k.endswith("_")})
    one.lower_bound_ = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one.fit(X)
    p = (K - 1) + 2 * K * D
    gap = batch.lower_bound_ - one.lower_bound_
    assert gap <= 5 * 0.5 * p * (N / B) * rho / (2 - rho), gap
    # SVI's own lower_bound_, the bound of the running statistics: by the envelope theorem its
    # first-order change with the statistics is the change of sum_n w_n lse_n, which a batch
    # estimates (scaled by N / B) with standard deviation N sd(lse) / sqrt(B); the running
    # average shrinks it by f as above.  5 such standard deviations.
    sd = np.std(batch.score_samples(X))
    assert abs(svi.lower_bound_ - batch.lower_bound_) <= 5 * f * N * sd / np.sqrt(B)
    assert len(svi.lower_bounds_) == 4
    # the value of a pass is the bound of the final posterior and running statistics
    assert svi.lower_bound_ == vb.bound_from_entropy(svi._online.neg_entropy, svi._vb_params())


def test_svi_bound_of_one_batch_holding_every_row_is_the_batch_bound():
    """With one batch of all the rows and rho = 1 the running statistics are an E-step's, so
    SVI's lower bound is batch VB's (the first iteration from the same start)."""
    X = blobs(n=1200, D=3, K=3, sep=1.5)  # overlapping: the entropy term matters
    kw = dict(n_components=4, covariance_type="full", random_state=0, chunk_size=256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = fastmix.BayesianGaussianMixture(max_iter=1, tol=0.0, **kw).fit(X)
    svi = fastmix.BayesianGaussianMixture(total_samples=X.shape[0], **kw).partial_fit(X)
    assert_rel(svi.lower_bound_, one.lower_bound_, 1e-12, "lower_bound_")
    assert_rel(svi.means_, one.means_, 1e-12, "means_")


@pytest.mark.parametrize("kind", KINDS)
def test_svi_bound_blends_the_entropy_like_the_statistics(kind):
    """A partial_fit step with rho = 2^-0.6 (the second): the bound equals scikit-learn's bound
    formula (``bound_from_entropy``, checked against scikit-learn by the parity tests) of the
    new posterior with the entropy term blended from the running value and the batch's,
    computed here directly (sum_nk r log r of explicit responsibilities under the posterior
    before the step) and scaled to total_samples (5 x the batch)."""
    import copy
    X = blobs(n=1200, D=3, K=3, sep=1.5)  # overlapping: the entropy term matters
    X0, X1 = X[::2][:300], X[1::2][:300]
    N = 1500.0
    est = fastmix.BayesianGaussianMixture(n_components=4, covariance_type=kind, random_state=0,
                                          total_samples=N, chunk_size=128)
    est.partial_fit(X0)
    h0 = est._online.neg_entropy
    before = copy.deepcopy(est)
    est.partial_fit(X1)
    R = before.predict_proba(X1)  # the responsibilities of the step's E-step
    h1 = float(np.sum(np.where(R > 0, R * np.log(np.where(R > 0, R, 1.0)), 0.0))) * N / 300
    assert h1 < -1.0  # the entropy is not negligible on these data
    rho = 2.0 ** -0.6
    want = vb.bound_from_entropy((1 - rho) * h0 + rho * h1, est._vb_params())
    assert_rel(est.lower_bound_, want, 1e-9, "lower_bound_")
    assert est._online.t == 1


# ------------------------------------------------------------------ checkpoints -----------
CK_ATTRS = ATTRS + ("precisions_", "weights_")


def _bgmm(max_iter, **kw):
    kw = dict(dict(n_components=5, covariance_type="full", random_state=0, tol=0.0,
                   chunk_size=256), **kw)
    return fastmix.BayesianGaussianMixture(max_iter=max_iter, **kw)


def _interrupt_after(monkeypatch, module, name, calls):
    """Make ``module.name`` raise KeyboardInterrupt on its call number ``calls + 1``."""
    real = getattr(module, name)
    count = [0]

    def wrapped(*a, **k):
        count[0] += 1
        if count[0] > calls:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(module, name, wrapped)


@pytest.mark.parametrize("algorithm, step, calls", [
    ("batch", "vb_step", 3),        # killed in iteration 4: the checkpoint holds 3
    ("online", "svi_update", 13)])  # killed in pass 3 (6 steps a pass): it holds 2 passes
def test_interrupted_fit_resumed_equals_uninterrupted(tmp_path, monkeypatch, algorithm, step,
                                                      calls):
    X = blobs(n=3000, D=3, K=4)
    kw = dict(batch_size=512) if algorithm == "online" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = _bgmm(8, **kw).fit(X, algorithm=algorithm)
        ck = tmp_path / "ck.npz"
        with monkeypatch.context() as m:
            _interrupt_after(m, vb, step, calls)
            with pytest.raises(KeyboardInterrupt):
                _bgmm(8, **kw).fit(X, algorithm=algorithm, checkpoint=ck, resume=True)
        partial = fastmix.load(ck)
        assert partial.n_iter_ == (3 if algorithm == "batch" else 2)
        assert partial.lower_bounds_ == full.lower_bounds_[:partial.n_iter_]
        # the file holds the same rows as the array: the resumed fit reads it
        np.save(tmp_path / "x.npy", X)
        resumed = _bgmm(8, **kw).fit(str(tmp_path / "x.npy"), algorithm=algorithm,
                                     checkpoint=ck, resume=True)
    assert resumed.n_iter_ == full.n_iter_ == 8
    for name in CK_ATTRS:
        assert np.asarray(getattr(resumed, name)).tobytes() == \
            np.asarray(getattr(full, name)).tobytes(), name
    for a, b in zip(np.atleast_2d(resumed.weight_concentration_),
                    np.atleast_2d(full.weight_concentration_)):
        assert a.tobytes() == b.tobytes()
    assert resumed.lower_bounds_ == full.lower_bounds_
    assert resumed.lower_bound_ == full.lower_bound_
    assert resumed.n_steps_ == full.n_steps_
    if algorithm == "online":  # the running statistics were restored, not restarted
        assert resumed._online.t == full._online.t == 47
        assert resumed._online.stats.s2.tobytes() == full._online.stats.s2.tobytes()
    # a finished checkpoint is returned as it is
    done = _bgmm(8, **kw).fit(X, algorithm=algorithm, checkpoint=ck, resume=True)
    assert done.means_.tobytes() == full.means_.tobytes()


def test_checkpoint_keeps_the_priors_set_from_the_data(tmp_path):
    """The default priors come from the data and the start; the resumed fit uses the saved
    ones (a checkpoint also records them, so ``load`` gives a usable model)."""
    X = blobs(n=1500, D=3, K=3)
    ck = tmp_path / "ck.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = _bgmm(2, covariance_type="diag").fit(X, checkpoint=ck)
    back = fastmix.load(ck)
    for name in ("mean_prior_", "covariance_prior_", "degrees_of_freedom_prior_",
                 "weight_concentration_prior_", "mean_precision_prior_"):
        np.testing.assert_array_equal(getattr(back, name), getattr(a, name))
    np.testing.assert_array_equal(back.score_samples(X), a.score_samples(X))


def test_checkpoint_bad_use_raises_and_overwrites_nothing(tmp_path):
    X = blobs(n=1500, D=3, K=3)
    ck = tmp_path / "ck.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _bgmm(2).fit(X, checkpoint=ck)
        with pytest.raises(ValueError, match="checkpoint needs n_init=1"):
            _bgmm(4, n_init=2).fit(X, checkpoint=ck, resume=True)
        with pytest.raises(ValueError, match="resume=True needs a checkpoint path"):
            _bgmm(4).fit(X, resume=True)
        with pytest.raises(FileNotFoundError, match=r"cannot write checkpoint /nonexist/c"):
            _bgmm(4).fit(X, checkpoint="/nonexist/ck.npz")
        with pytest.raises(ValueError, match=r"weight_concentration_prior_type="
                                             r"'dirichlet_process' vs 'dirichlet_distribution'"):
            _bgmm(4, weight_concentration_prior_type="dirichlet_distribution").fit(
                X, checkpoint=ck, resume=True)
        with pytest.raises(ValueError, match=r"contents differ"):
            _bgmm(4).fit(X[::-1].copy(), checkpoint=ck, resume=True)
        with pytest.raises(ValueError, match="written by a different algorithm"):
            _bgmm(4).fit(X, algorithm="online", checkpoint=ck, resume=True)
        gm = tmp_path / "gm.npz"
        fastmix.GaussianMixture(3, max_iter=2, random_state=0, chunk_size=256).fit(
            X, checkpoint=gm)
        with pytest.raises(ValueError, match="holds a GaussianMixture, not a "
                                             "BayesianGaussianMixture checkpoint"):
            _bgmm(4, n_components=3).fit(X, checkpoint=gm, resume=True)
        with pytest.raises(ValueError, match="holds a BayesianGaussianMixture, not a "
                                             "GaussianMixture checkpoint"):
            fastmix.GaussianMixture(5, max_iter=4, random_state=0, chunk_size=256).fit(
                X, checkpoint=ck, resume=True)
        plain = tmp_path / "plain.npz"
        _bgmm(2).fit(X).save(plain)
        with pytest.raises(ValueError, match="does not record the data it was fitted on"):
            _bgmm(4).fit(X, checkpoint=plain, resume=True)
    assert fastmix.load(ck).n_iter_ == 2
