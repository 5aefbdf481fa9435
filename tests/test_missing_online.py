"""Online (stepwise) EM with missing values: ``partial_fit`` and ``fit(algorithm="online")``
with ``missing="marginalize"`` take each batch's expected sufficient statistics from the
masked kernels (``fastmix.missing.batch_estep``), against the NumPy stepwise reference
``reference.missing_online_em``."""
import warnings

import numpy as np
import pytest

import reference as ref
from _helpers import assert_close, assert_reproducible, assert_same_model, perturbed_problem
from fastmix import GaussianMixture
from fastmix import missing as fm_missing
from test_missing import CHUNK, KINDS, _holes, _init, _problem


@pytest.mark.parametrize("kind, weighted", [("full", True), ("tied", False), ("diag", True),
                                             ("spherical", False)])
def test_partial_fit_matches_stepwise_reference(kind, weighted):
    """Five partial_fit calls on batches with 20 % MCAR NaN from a given start equal the
    NumPy stepwise EM on the raw expected moments (t0 = 1, kappa = 0.7)."""
    X, sw, w, mu, cov = _problem(kind, "mcar", weighted, n=250)
    gm = _init(kind, w, mu, cov, step_offset=1.0, step_decay=0.7)
    batches = []
    for a in range(0, 250, 50):
        b = sw[a:a + 50] if weighted else None
        gm.partial_fit(X[a:a + 50], sample_weight=b)
        batches.append((X[a:a + 50], b))
    want = ref.missing_online_em(batches, w, mu, cov, kind, 1e-6, 1.0, 0.7)
    assert_close(gm.weights_, want[0], 1e-10, "weights")
    assert_close(gm.means_, want[1], 1e-10, "means")
    assert_close(gm.covariances_, want[2], 1e-10, "covariances")


@pytest.mark.parametrize("kind", KINDS)
def test_one_all_rows_batch_is_the_batch_drivers_statistics(kind):
    """partial_fit with all the rows as one batch: its running statistics are the batch
    driver's masked E-step statistics per unit weight (to rounding) and its parameters are one
    batch EM iteration from the same start."""
    X, sw, w, mu, cov = _problem(kind, "block", True, n=200)
    gm = _init(kind, w, mu, cov).partial_fit(X, sample_weight=sw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: no or one iteration on purpose
        start = _init(kind, w, mu, cov, max_iter=0).fit(X, sample_weight=sw)
        one = _init(kind, w, mu, cov, max_iter=1).fit(X, sample_weight=sw)
    st = fm_missing.e_step_stats(X, sw, start._params(), CHUNK)
    avg = st.scaled(1.0 / st.ws)
    for name in ("nk", "s1", "s2"):
        assert_close(getattr(gm._online.stats, name), getattr(avg, name), 1e-13, name)
    # the batch M-step divides sums by nk, the online one averages by ws first: rounding only
    assert_close(gm.means_, one.means_, 1e-13)
    assert_close(gm.covariances_, one.covariances_, 1e-12)
    assert_close(gm.lower_bound_, one.lower_bounds_[0], 1e-13)



def test_online_fit_converges_to_the_batch_marginalised_fit():
    """fit(algorithm="online") on 30 % MCAR data, batches of 256 rows over passes: its means,
    weights and covariances are within 0.05 (data in units of ~1; components 6 apart) of the
    batch marginalised fit from the same seed."""
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(0, 1, (3000, 3)), rng.normal(6, 1, (3000, 3)) * [1, 2, 1]])
    rng.shuffle(X)
    X[rng.random(X.shape) < 0.3] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.0
    kw = dict(missing="marginalize", random_state=0, chunk_size=CHUNK, tol=1e-6)
    batch = GaussianMixture(2, max_iter=200, **kw).fit(X)
    online = GaussianMixture(2, max_iter=30, batch_size=256, **kw).fit(X, algorithm="online")
    order = np.argsort(online.means_[:, 0])
    ref_order = np.argsort(batch.means_[:, 0])
    assert np.max(np.abs(online.means_[order] - batch.means_[ref_order])) < 0.05
    assert np.max(np.abs(online.weights_[order] - batch.weights_[ref_order])) < 0.05
    assert np.max(np.abs(online.covariances_[order] - batch.covariances_[ref_order])) < 0.05


@pytest.mark.parametrize("kind", KINDS + ("lowrank",))
def test_no_nan_gives_todays_online_fit_exactly(kind):
    """Without NaN, missing='marginalize' gives the missing='error' partial_fit sequence and
    online fit bit for bit."""
    X, _, _, _, _ = perturbed_problem("full", 3, 4, 600, seed=4)
    kw = dict(covariance_type=kind, random_state=0, chunk_size=CHUNK, max_iter=5,
              batch_size=128)
    a = GaussianMixture(3, **kw)
    b = GaussianMixture(3, missing="marginalize", **kw)
    for s in range(0, 600, 200):
        a.partial_fit(X[s:s + 200])
        b.partial_fit(X[s:s + 200])
    attrs = (("weights_", "means_", "loadings_", "noise_variances_") if kind == "lowrank"
             else ("weights_", "means_", "covariances_"))
    for attr in attrs:
        assert_reproducible(getattr(a, attr), getattr(b, attr), attr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = GaussianMixture(3, **kw).fit(X, algorithm="online")
        b = GaussianMixture(3, missing="marginalize", **kw).fit(X, algorithm="online")
    if kind == "lowrank":
        for attr in attrs:
            assert_reproducible(getattr(a, attr), getattr(b, attr), attr)
    else:
        assert_same_model(a, b)


def test_partial_fit_bad_input():
    """inf, a row with nothing observed, a first batch with an empty column: ValueErrors naming
    them, and the model is left as it was; a later batch may miss a whole column."""
    X = _holes(perturbed_problem("diag", 2, 3, 120, seed=6)[0], "mcar")
    X[:, 0] = np.nan_to_num(X[:, 0])  # column 0 always observed
    gm = GaussianMixture(2, covariance_type="diag", missing="marginalize", random_state=0)
    bad = X[:40].copy()
    bad[:, 1] = np.nan
    with pytest.raises(ValueError, match="column 1 of X has every entry missing"):
        gm.partial_fit(bad)
    assert not hasattr(gm, "means_")
    gm.partial_fit(X[:40])
    before = gm.means_.copy()
    row = X[40:80].copy()
    row[7] = np.nan
    with pytest.raises(ValueError, match="row 7 of X has every entry missing"):
        gm.partial_fit(row)
    inf = X[40:80].copy()
    inf[3, 0] = np.inf
    with pytest.raises(ValueError, match="infinity.*first bad row: 3"):
        gm.partial_fit(inf)
    assert_reproducible(gm.means_, before)
    gm.partial_fit(bad)  # later batches: an empty column is no error (its moments are expected)
    assert np.all(np.isfinite(gm.means_)) and gm.n_steps_ == 2
    with pytest.raises(ValueError, match="NaN"):
        GaussianMixture(2, covariance_type="diag").partial_fit(X[:40])


@pytest.mark.parametrize("kind", ("full", "diag"))
def test_in_memory_fit_groups_patterns_once(kind, monkeypatch):
    """Batch EM on rows in memory reads their NaN layout (chunk flags, full/tied pattern
    groups) once per fit, not once per iteration; the statistics are the uncached ones, bit for
    bit."""
    from fastmix import kernels
    X, sw, w, mu, cov = _problem(kind, "mcar", True, n=300)
    calls = {"flags": 0, "groups": 0}
    flags, groups = kernels.nan_chunks, kernels._pattern_groups

    def count_flags(*a):
        calls["flags"] += 1
        return flags(*a)

    def count_groups(*a):
        calls["groups"] += 1
        return groups(*a)
    monkeypatch.setattr(kernels, "nan_chunks", count_flags)
    monkeypatch.setattr(kernels, "_pattern_groups", count_groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = _init(kind, w, mu, cov, max_iter=5, tol=0.0).fit(X, sample_weight=sw)
    assert gm.n_iter_ == 5
    assert calls == {"flags": 1, "groups": 1 if kind == "full" else 0}
    cache = {}
    p = gm._params()
    plain = fm_missing.e_step_stats(X, sw, p, CHUNK)
    for _ in range(2):  # the second from the cache
        cached = fm_missing.e_step_stats(X, sw, p, CHUNK, cache=cache)
        for f in ("nk", "s1", "s2"):
            assert_reproducible(getattr(cached, f), getattr(plain, f), f)
    assert len(cache) == 1
