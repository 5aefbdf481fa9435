"""Invariants checked with hypothesis (docs/design.md §5).

Examples are small (at most a few hundred rows) and few; each draws a seed and sizes, and the
data come from NumPy with that seed.
"""
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastmix
import reference as ref
from _helpers import FITTED_ATTRS, assert_close, assert_reproducible, assert_same_model
from fastmix import kernels
from fastmix._params import Covariance, GMMParams
from fastmix.em import e_step_stats

KINDS = ref.KINDS
#: few examples by default (the suite must stay fast); FASTMIX_HYPOTHESIS_EXAMPLES=500 for a
#: thorough run
# derandomize: CI runs the same examples every time (a random draw found the case in
# test_known_lower_bound_oscillation; FASTMIX_HYPOTHESIS_RANDOM=1 draws new ones)
SETTINGS = settings(max_examples=int(os.environ.get("FASTMIX_HYPOTHESIS_EXAMPLES", "12")),
                    deadline=None,
                    derandomize=os.environ.get("FASTMIX_HYPOTHESIS_RANDOM", "0") != "1",
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def blobs(seed, N, D, K, scale=3.0):
    """N rows around K random centres (unit noise), float64."""
    rng = np.random.default_rng(seed)
    centres = scale * rng.normal(size=(K, D))
    return centres[rng.integers(0, K, size=N)] + rng.normal(size=(N, D))


def random_params(seed, kind, K, D):
    rng = np.random.default_rng(seed + 1)
    w, mu, cov = ref.random_model(rng, kind, K, D)
    return GMMParams(w, mu, Covariance.registry[kind].from_covariances(cov))


sizes = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "K": st.integers(1, 4),
    "D": st.integers(1, 4),
    "kind": st.sampled_from(KINDS),
})


@SETTINGS
@given(p=sizes, n_per_component=st.integers(15, 60),
       init=st.sampled_from(["kmeans", "k-means++", "random", "random_from_data"]))
def test_em_lower_bound_never_decreases(p, n_per_component, init):
    """EM is monotone: each iteration's lower bound (mean log-likelihood before its M-step) is at
    least the previous one, up to 1e-9 relative slack for rounding (reg_covar is small, so the
    regularised M-step is as good as exact).  reg_covar is scikit-learn's default 1e-6: with
    1e-10 a component that collapses onto D or fewer rows has a covariance of condition ~1e10,
    and its densities' rounding makes the lower bound oscillate by up to 5e-8 relative
    (test_known_lower_bound_oscillation)."""
    K, D = p["K"], p["D"]
    X = blobs(p["seed"], n_per_component * K, D, K)
    gm = fastmix.GaussianMixture(K, covariance_type=p["kind"], init_params=init, reg_covar=1e-6,
                                 tol=0.0, max_iter=25, random_state=p["seed"] % 1000)
    gm.fit(X)
    lbs = np.array(gm.lower_bounds_)
    assert len(lbs) == 25 and np.all(np.isfinite(lbs))
    drops = np.diff(lbs)
    slack = 1e-9 * np.maximum(1.0, np.abs(lbs[1:]))
    assert np.all(drops >= -slack), (lbs, drops.min())


@pytest.mark.xfail(strict=True, reason="rounding, not a bug: reg_covar=1e-10 and a component "
                   "collapsed onto 3 rows in D = 3 (smallest eigenvalue 1e-10, condition ~1e10) "
                   "make the lower bound oscillate with period 2 by 2.5e-7 (found by a random "
                   "draw of the test above with reg_covar=1e-10; present before the k-means "
                   "rewrite)")
def test_known_lower_bound_oscillation():
    X = blobs(154476025, 45, 3, 3)
    gm = fastmix.GaussianMixture(3, covariance_type="full", init_params="random", reg_covar=1e-10,
                                 tol=0.0, max_iter=25, random_state=154476025 % 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    drops = np.diff(gm.lower_bounds_)
    assert np.all(drops >= -1e-9 * np.abs(np.array(gm.lower_bounds_[1:])))


@SETTINGS
@given(p=sizes, N=st.integers(1, 200), spread=st.sampled_from([1.0, 30.0, 1e3]),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_responsibilities_sum_to_one(p, N, spread, dtype):
    """For any model and any rows -- including rows far from every component, where all
    log-densities are hugely negative -- responsibilities are >= 0 and sum to 1."""
    kind, K, D = p["kind"], p["K"], p["D"]
    params = random_params(p["seed"], kind, K, D)
    rng = np.random.default_rng(p["seed"])
    X = (spread * rng.normal(size=(N, D))).astype(dtype)
    logp, labels, resp = kernels.log_prob(X, params.kernel_params(X.dtype), 16, want_resp=True)
    assert np.all(np.isfinite(logp))
    assert np.all(resp >= 0) and np.all(resp <= 1)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(labels, resp.argmax(axis=1))


@SETTINGS
@given(p=sizes, N=st.integers(2, 300), cut=st.floats(0.0, 1.0),
       chunk=st.sampled_from([1, 7, 64, 4096]), weighted=st.booleans(),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_merge_of_halves_equals_whole(p, N, cut, chunk, weighted, dtype):
    """Stats(a) + Stats(b) == Stats(a u b) for a split of the rows, same parameters.

    float64: to 1e-12.  float32: the log-densities are float32, and a row may be evaluated by
    a different code path (row loop or block GEMM, chosen by the size of its chunk) in the two
    computations, so its responsibilities agree only to float32 rounding (~1e-6 relative for
    |log p| ~ 10); the accumulation itself is float64 in both."""
    kind, K, D = p["kind"], p["K"], p["D"]
    X = blobs(p["seed"], N, D, K).astype(dtype)
    sw = np.random.default_rng(p["seed"]).uniform(0, 2, size=N) if weighted else None
    params = random_params(p["seed"], kind, K, D)
    m = int(round(cut * N))
    whole = e_step_stats(X, sw, params, chunk)
    parts = [e_step_stats(np.ascontiguousarray(X[sl]), None if sw is None else sw[sl], params,
                          chunk)
             for sl in (slice(0, m), slice(m, N))]
    merged = parts[0] + parts[1]
    assert merged.kind == whole.kind
    np.testing.assert_array_equal(merged.centre, whole.centre)
    np.testing.assert_array_equal(merged.gcentre, whole.gcentre)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for f in ("nk", "s1", "s2"):
        assert_close(getattr(merged, f), getattr(whole, f), rtol, f)
    assert_close(merged.ll, whole.ll, rtol, "ll")
    assert_close(merged.ws, whole.ws, 1e-12, "ws")


@SETTINGS
@given(p=sizes, dtype=st.sampled_from([np.float64, np.float32]), weighted=st.booleans(),
       n_init=st.integers(1, 2), user_init=st.booleans())
def test_save_load_round_trip(tmp_path_factory, p, dtype, weighted, n_init, user_init):
    kind, K, D = p["kind"], p["K"], p["D"]
    X = blobs(p["seed"], 40 * K, D, K).astype(dtype)
    sw = np.random.default_rng(p["seed"]).uniform(0.5, 2, size=X.shape[0]) if weighted else None
    kwargs = {}
    if user_init:
        kwargs["means_init"] = X[:K].astype(np.float64)
    gm = fastmix.GaussianMixture(K, covariance_type=kind, random_state=p["seed"] % 1000,
                                 max_iter=5, n_init=n_init, reg_covar=1e-5, **kwargs)
    gm.fit(X, sample_weight=sw)
    path = tmp_path_factory.mktemp("save") / "model.npz"
    gm.save(path)
    gm2 = fastmix.load(path)
    assert type(gm2) is fastmix.GaussianMixture
    for name in FITTED_ATTRS:
        a, b = getattr(gm, name), getattr(gm2, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    for name in ("converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_features_in_"):
        assert getattr(gm2, name) == getattr(gm, name), name
    p1, p2 = gm.get_params(), gm2.get_params()
    for k, v in p1.items():
        if isinstance(v, np.ndarray):
            assert np.array_equal(v, p2[k]), k
        else:
            assert v == p2[k], k
    np.testing.assert_array_equal(gm2.predict(X), gm.predict(X))
    # score_samples / predict_proba: same parameters, so the same numbers -- compared to 4 ulp,
    # not bit for bit, because of the known log_prob non-determinism
    # (test_kernels.py::test_log_prob_is_deterministic)
    np.testing.assert_allclose(gm2.score_samples(X), gm.score_samples(X), rtol=1e-15, atol=0)
    np.testing.assert_allclose(gm2.predict_proba(X), gm.predict_proba(X), rtol=0, atol=1e-15)
    assert gm2.bic(X) == pytest.approx(gm.bic(X), rel=1e-15)
    # a loaded model can be fitted again
    gm2.set_params(max_iter=2).fit(X)


@SETTINGS
@given(p=sizes, N=st.integers(1, 400), chunk=st.sampled_from([1, 5, 64, 128, 1000]),
       weighted=st.booleans(), dtype=st.sampled_from([np.float64, np.float32]),
       budgets=st.lists(st.integers(1, 200_000), min_size=2, max_size=4))
def test_same_statistics_regardless_of_slot_split(monkeypatch, p, N, chunk, weighted, dtype,
                                                   budgets):
    """With chunk_rows fixed, the statistics do not depend on how the chunks are split into
    parallel batches ("slots", bounded by kernels.SLOT_BYTES; the thread count plays the same
    role): each chunk's partial is merged into the totals in chunk order.  Bit-identical."""
    kind, K, D = p["kind"], p["K"], p["D"]
    X = blobs(p["seed"], N, D, K).astype(dtype)
    sw = np.random.default_rng(p["seed"]).uniform(0, 2, size=N) if weighted else None
    kp = random_params(p["seed"], kind, K, D).kernel_params(X.dtype)
    default = kernels.estep_stats(X, sw, kp, chunk)
    for budget in budgets:
        monkeypatch.setattr(kernels, "SLOT_BYTES", budget)
        other = kernels.estep_stats(X, sw, kp, chunk)
        for a, b in zip(default, other):
            assert_reproducible(a, b, f"SLOT_BYTES={budget}, {kind}")
    monkeypatch.undo()


@pytest.mark.parametrize("kind", KINDS)
def test_same_model_regardless_of_slot_memory_bound(monkeypatch, kind):
    """A fit whose partial-statistics memory bound allows only one slot per pass gives the same
    model bits as the default (one slot per chunk)."""
    X = blobs(5, 3000, 3, 3)
    kw = dict(covariance_type=kind, random_state=0, chunk_size=256, max_iter=8, tol=0.0)
    a = fastmix.GaussianMixture(3, **kw).fit(X)
    monkeypatch.setattr(kernels, "SLOT_BYTES", 1)  # one slot: one chunk per parallel region
    b = fastmix.GaussianMixture(3, **kw).fit(X)
    assert_same_model(a, b)
