"""select_mixture(n_init=...): every candidate keeps the best of its initialisations, equal to a
separate GaussianMixture(n_init=...) fit; the runs of all candidates share the passes."""
import warnings

import numpy as np
import pytest

from fastmix import GaussianMixture, select_mixture

KINDS = ("full", "tied", "diag", "spherical", "lowrank")


@pytest.fixture(scope="module")
def X():
    # six overlapping blobs: K = 3 and 5 have several local optima, so the initialisations
    # end at different lower bounds (for every type a later initialisation wins somewhere)
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(c, 1.0, (150, 3)) for c in rng.normal(0, 2.5, (6, 3))])
    return X[rng.permutation(X.shape[0])]


def _same_model(a, b):
    names = ("weights_", "means_", "loadings_", "noise_variances_") \
        if a.covariance_type == "lowrank" else ("weights_", "means_", "covariances_",
                                                "precisions_cholesky_")
    return all(np.array_equal(getattr(a, n), getattr(b, n)) for n in names)


@pytest.mark.parametrize("kind", KINDS)
def test_n_init_equals_separate_fits(X, kind):
    kw = dict(random_state=1, chunk_size=128, n_factors=1, n_init=3)
    runs = {}
    res = select_mixture(X, n_components=[3, 5], covariance_types=kind,
                         callback=lambda n, cs: runs.update(c=list(cs)), **kw)
    winners = [c.init for c in runs["c"] if c.status == "done"]
    assert len(runs["c"]) == 6 and sorted(c.status for c in runs["c"]).count("dropped") == 4
    assert any(i > 0 for i in winners), winners  # the later initialisations matter here
    r = res.results_
    assert len(res) == 2
    for i in range(len(res)):
        K = int(r["n_components"][i])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = GaussianMixture(K, covariance_type=kind, **kw).fit(X)
        est = res.estimator(i)
        assert _same_model(gm, est), (kind, K)
        assert gm.lower_bound_ == est.lower_bound_
        assert gm.lower_bounds_ == est.lower_bounds_
        assert gm.n_iter_ == r["n_iter"][i]
        assert est.n_init == 3
        assert r["bic"][i] == pytest.approx(gm.bic(X), rel=1e-12, abs=0)
        # the model's time counts all of its runs: the dropped ones' and its own
        dropped = [c.seconds for c in runs["c"] if c.n_components == K and
                   c.status == "dropped"]
        assert len(dropped) == 2 and r["time"][i] > sum(dropped) > 0


def test_n_init_shares_the_passes(X):
    kw = dict(n_components=[2, 4], covariance_types=("full", "diag"), random_state=0,
              chunk_size=128)
    one = select_mixture(X, **kw)
    runs = {}
    three = select_mixture(X, n_init=3, callback=lambda n, cs: runs.update(c=list(cs)), **kw)
    assert len(runs["c"]) == 12
    # one start pass for all 12 runs, then one pass per iteration of the slowest run and the
    # pass that scores the last models to be decided
    assert three.pass_kinds_.count("start") == 1
    assert three.n_passes_ == 1 + max(c.n_iter for c in runs["c"]) + 1
    # initialisation 0 is the n_init=1 run: the best of three is at least as good
    for i in range(len(one)):
        assert three.estimator(i).lower_bound_ >= one.estimator(i).lower_bound_


def test_n_init_with_lowrank_takes_one_start_pass_per_initialisation(X):
    res = select_mixture(X, n_components=[2], covariance_types=("lowrank", "diag"),
                         n_init=2, n_factors=1, random_state=0, chunk_size=128)
    assert res.pass_kinds_.count("start") == 2


def test_n_init_max_iter_zero_keeps_the_first_start(X):
    kw = dict(random_state=2, chunk_size=128, n_init=3, max_iter=0)
    res = select_mixture(X, n_components=[4], covariance_types="full", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(4, covariance_type="full", **kw).fit(X)
    assert _same_model(gm, res.best_estimator_)


def test_n_init_split_start(X):
    kw = dict(random_state=0, chunk_size=128, n_init=2)
    res = select_mixture(X, n_components=[2, 3, 4], covariance_types="diag", start="split",
                         **kw)
    assert list(res.results_["n_components"]) == [2, 3, 4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(2, covariance_type="diag", **kw).fit(X)
    assert _same_model(gm, res.estimator(0))  # the smallest K: best of n_init k-means starts
    assert np.all(np.isfinite(res.results_["score"]))


@pytest.mark.parametrize("kw, match", [
    (dict(n_init=0), "n_init"),
    (dict(n_init=-1), "n_init"),
    (dict(n_init=2, start="hierarchical"), "deterministic"),
])
def test_n_init_bad_input(X, kw, match):
    with pytest.raises(ValueError, match=match):
        select_mixture(X, n_components=[1, 2], random_state=0, **kw)


def test_cli_select_n_init(X, tmp_path, capsys):
    from fastmix import load
    from fastmix.cli import main
    data = tmp_path / "x.npy"
    np.save(data, X)
    out = tmp_path / "best.npz"
    argv = ["select", str(data), "-k", "2:3", "--covariance-types", "diag", "-o", str(out),
            "--seed", "1", "--chunk-rows", "128", "--n-init", "3"]
    assert main(argv) == 0
    res = select_mixture(X, n_components=[2, 3], covariance_types="diag", random_state=1,
                         chunk_size=128, n_init=3)
    assert _same_model(load(out), res.best_estimator_)
    capsys.readouterr()
    assert main(argv[:-1] + ["0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_init" in err[0], err


def test_n_init_lowrank_pca_draws_carry_to_the_next_start():
    # D > 4 (q + 10): the lowrank start's PCA is a randomised SVD that draws from the
    # generator, so initialisation 1 must continue after initialisation 0's PCA
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 48)) + np.repeat(rng.normal(0, 3, (3, 48)), 200, axis=0)
    kw = dict(random_state=0, chunk_size=128, n_factors=1, n_init=2, max_iter=5)
    runs = {}
    res = select_mixture(X, n_components=[3], covariance_types="lowrank",
                         callback=lambda n, cs: runs.update(c=list(cs)), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(3, covariance_type="lowrank", **kw).fit(X)
        first = GaussianMixture(3, covariance_type="lowrank", **{**kw, "n_init": 1}).fit(X)
    assert _same_model(gm, res.best_estimator_)
    one = [c for c in runs["c"] if c.init == 1][0]
    assert one.lower_bounds != list(first.lower_bounds_)  # a start of its own


def test_n_init_dask_equals_local(X):
    da = pytest.importorskip("dask.array")
    kw = dict(n_components=[2, 3], covariance_types=("full", "diag"), random_state=0,
              chunk_size=200, n_init=3)
    local = select_mixture(X, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dist = select_mixture(da.from_array(X, chunks=(300, 3)), **kw)
    np.testing.assert_allclose(dist.results_["score"], local.results_["score"], rtol=1e-10)
    assert dist.n_passes_ == local.n_passes_ and dist.pass_kinds_.count("start") == 1
