"""select_mixture with sample_weight: every candidate equals a separate weighted GaussianMixture
fit (bit-identical), the scores are the weighted ones (integer weights = repeated rows), the
held-out split multiplies the weights, and files, weight files, weight columns and dask arrays
give the in-memory sweep."""
import warnings

import numpy as np
import pytest

from fastmix import GaussianMixture, select_mixture
from fastmix import selection as sel

KINDS = ("full", "tied", "diag", "spherical")


def _blobs(seed=0, n=250, D=3, K=3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5.0, (K, D))
    X = np.concatenate([rng.normal(c, 1.0, (n, D)) for c in centres])
    return X[rng.permutation(X.shape[0])]


@pytest.fixture(scope="module")
def X():
    return _blobs()


@pytest.fixture(scope="module")
def sw(X):
    rng = np.random.default_rng(1)
    w = rng.uniform(0.2, 3.0, X.shape[0])
    w[rng.choice(X.shape[0], 40, replace=False)] = 0.0  # some rows left out altogether
    return w


def _same_model(a, b):
    return all(np.array_equal(getattr(a, n), getattr(b, n))
               for n in ("weights_", "means_", "covariances_", "precisions_cholesky_"))


@pytest.mark.parametrize("criterion", ["bic", "heldout"])
def test_candidates_equal_separate_weighted_fits(X, sw, criterion):
    kw = dict(random_state=3, chunk_size=128, tol=1e-4)
    res = select_mixture(X, n_components=[1, 3], covariance_types=KINDS, sample_weight=sw,
                         criterion=criterion, heldout_fraction=0.3, **kw)
    held = sel.heldout_mask(0, X.shape[0], 0.3, 3)
    fit_w = sw * ~held if criterion == "heldout" else sw
    for i in range(len(res)):
        K, kind = int(res.results_["n_components"][i]), str(res.results_["covariance_type"][i])
        gm = GaussianMixture(K, covariance_type=kind, **kw).fit(X, sample_weight=fit_w)
        est = res.estimator(i)
        assert _same_model(gm, est), (kind, K)
        assert gm.n_iter_ == res.results_["n_iter"][i]
        assert gm.lower_bounds_ == est.lower_bounds_
        lp = gm.score_samples(X)
        if criterion == "bic":
            ref = -2 * np.sum(sw * lp) + gm._n_parameters() * np.log(np.sum(sw))
            assert res.results_["bic"][i] == pytest.approx(ref, rel=1e-12)
            assert res.results_["log_likelihood"][i] == pytest.approx(np.sum(sw * lp),
                                                                      rel=1e-12)
        else:
            ref = -2 * np.sum((sw * lp)[held])
            assert res.results_["score"][i] == pytest.approx(ref, rel=1e-12)
            assert res.results_["log_likelihood"][i] == pytest.approx(
                np.sum((sw * lp)[~held]), rel=1e-12)
    assert res.best_params_["n_components"] == 3


def test_integer_weights_score_as_repeated_rows(X):
    rng = np.random.default_rng(2)
    w = rng.integers(0, 4, X.shape[0])
    Xr = np.repeat(X, w, axis=0)
    for criterion in ("bic", "icl"):
        res = select_mixture(X, n_components=[2, 3], covariance_types=("full", "diag"),
                             sample_weight=w, criterion=criterion, random_state=0)
        for i in range(len(res)):
            est = res.estimator(i)
            # the fitted model's BIC on the data with every row repeated w times
            assert res.results_["bic"][i] == pytest.approx(est.bic(Xr), rel=1e-12)
            if criterion == "icl":
                R = est.predict_proba(Xr)
                with np.errstate(divide="ignore", invalid="ignore"):
                    ent = -np.sum(np.where(R > 0, R * np.log(R), 0.0))
                assert res.results_["entropy"][i] == pytest.approx(ent, rel=1e-9, abs=1e-9)
                assert res.results_["score"][i] == pytest.approx(est.bic(Xr) + 2 * ent,
                                                                 rel=1e-12)


def test_unit_weights_change_nothing(X):
    kw = dict(n_components=[1, 2, 3], covariance_types=("full", "spherical"), random_state=4)
    for criterion in ("bic", "icl", "heldout"):
        a = select_mixture(X, criterion=criterion, **kw)
        b = select_mixture(X, sample_weight=np.ones(X.shape[0]), criterion=criterion, **kw)
        for i in range(len(a)):
            assert _same_model(a.estimator(i), b.estimator(i))
        np.testing.assert_allclose(b.results_["score"], a.results_["score"], rtol=1e-12)


@pytest.mark.parametrize("criterion", ["bic", "heldout"])
def test_file_with_weight_file_equals_memory(X, sw, tmp_path, criterion):
    px, pw = tmp_path / "x.npy", tmp_path / "w.npy"
    np.save(px, X)
    np.save(pw, sw)
    kw = dict(n_components=[2, 3], covariance_types=("full", "diag"), criterion=criterion,
              random_state=2, chunk_size=128)
    mem = select_mixture(X, sample_weight=sw, **kw)
    disk = select_mixture(str(px), sample_weight=str(pw), **kw)
    fit_w = sw * ~sel.heldout_mask(0, X.shape[0], 0.2, 2) if criterion == "heldout" else sw
    for i in range(len(mem)):
        K, kind = int(disk.results_["n_components"][i]), str(disk.results_["covariance_type"][i])
        gm = GaussianMixture(K, covariance_type=kind, random_state=2, chunk_size=128)
        gm.fit(str(px), sample_weight=fit_w)
        assert _same_model(gm, disk.estimator(i))  # the separate fit of the same file
        np.testing.assert_allclose(disk.estimator(i).means_, mem.estimator(i).means_,
                                   rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(disk.results_["score"], mem.results_["score"], rtol=1e-12)


@pytest.mark.parametrize("criterion", ["bic", "heldout"])
def test_weight_column_equals_memory(X, sw, tmp_path, criterion):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    cols = {f"x{j}": X[:, j] for j in range(X.shape[1])}
    cols["w"] = sw
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table(cols), path, row_group_size=200)
    kw = dict(n_components=[2, 3], covariance_types=("full", "spherical"), criterion=criterion,
              random_state=5, chunk_size=100)
    mem = select_mixture(X, sample_weight=sw, **kw)
    col = select_mixture(str(path), sample_weight="w", **kw)
    for i in range(len(mem)):
        np.testing.assert_allclose(col.estimator(i).means_, mem.estimator(i).means_,
                                   rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(col.results_["score"], mem.results_["score"], rtol=1e-10)
    np.testing.assert_allclose(col.results_["log_likelihood"], mem.results_["log_likelihood"],
                               rtol=1e-10)


def test_dask_weights_equal_local(X, sw):
    da = pytest.importorskip("dask.array")
    kw = dict(n_components=[1, 3], covariance_types=("full", "diag"), random_state=0,
              chunk_size=200)
    Xd = da.from_array(X, chunks=(300, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for criterion in ("bic", "heldout"):
            local = select_mixture(X, sample_weight=sw, criterion=criterion, **kw)
            dist = select_mixture(Xd, sample_weight=da.from_array(sw, chunks=250),
                                  criterion=criterion, **kw)
            np.testing.assert_allclose(dist.results_["score"], local.results_["score"],
                                       rtol=1e-10)
            np.testing.assert_allclose(dist.results_["log_likelihood"],
                                       local.results_["log_likelihood"], rtol=1e-10)


@pytest.mark.parametrize("make, match", [
    (lambda n: -np.ones(n), "non-negative"),
    (lambda n: np.ones(n - 1), r"sample_weight.shape"),
    (lambda n: np.where(np.arange(n) == 3, np.nan, 1.0), "NaN"),
    (lambda n: np.zeros(n), "sums to zero"),
])
def test_bad_weights(make, match):
    X = _blobs(n=20, K=2, D=2)
    w = make(X.shape[0])
    before, wbefore = X.copy(), w.copy()
    for criterion in ("bic", "heldout"):
        with pytest.raises(ValueError, match=match):
            select_mixture(X, n_components=[1, 2], sample_weight=w, criterion=criterion,
                           random_state=0)
    np.testing.assert_array_equal(X, before)
    np.testing.assert_array_equal(w, wbefore)


def test_negative_weight_on_a_heldout_row_is_still_an_error(tmp_path):
    X = _blobs(n=20, K=2, D=2)
    held = np.flatnonzero(sel.heldout_mask(0, X.shape[0], 0.2, 0))
    w = np.ones(X.shape[0])
    w[held[0]] = -1.0
    with pytest.raises(ValueError, match=f"index {held[0]}"):
        select_mixture(X, n_components=[1, 2], sample_weight=w, criterion="heldout",
                       random_state=0)
    px, pw = tmp_path / "x.npy", tmp_path / "w.npy"
    np.save(px, X)
    np.save(pw, w)
    with pytest.raises(ValueError, match=f"row {held[0]}"):
        select_mixture(str(px), n_components=[1, 2], sample_weight=str(pw),
                       criterion="heldout", random_state=0)


def test_no_training_weight_left():
    X = _blobs(n=20, K=2, D=2)
    held = sel.heldout_mask(0, X.shape[0], 0.3, 0)
    with pytest.raises(ValueError, match="zero on every training row"):
        select_mixture(X, n_components=[1, 2], sample_weight=held * 1.0, criterion="heldout",
                       heldout_fraction=0.3, random_state=0)


def test_cli_select_with_weights(X, sw, tmp_path, capsys):
    import json

    from fastmix.cli import main
    px, pw, rep = tmp_path / "x.npy", tmp_path / "w.npy", tmp_path / "sel.json"
    np.save(px, X)
    np.save(pw, sw)
    assert main(["select", str(px), "-k", "1:3", "--covariance-types", "full,diag",
                 "--weights", str(pw), "--criterion", "heldout", "--seed", "3",
                 "-o", str(tmp_path / "best.npz"), "--report", str(rep)]) == 0
    report = json.loads(rep.read_text())
    res = select_mixture(str(px), n_components=range(1, 4), covariance_types=("full", "diag"),
                         sample_weight=str(pw), criterion="heldout", random_state=3)
    assert [c["score"] for c in report["candidates"]] == pytest.approx(
        res.results_["score"].tolist(), rel=1e-12)
    unweighted = select_mixture(str(px), n_components=range(1, 4),
                                covariance_types=("full", "diag"), criterion="heldout",
                                random_state=3)
    assert not np.allclose(res.results_["score"], unweighted.results_["score"])


@pytest.mark.parametrize("criterion", ["bic", "heldout"])
def test_hierarchical_start_leaves_out_rows_of_weight_zero(X, sw, monkeypatch, criterion):
    import scipy.cluster.hierarchy as hc
    seen = []
    orig = hc.linkage

    def linkage(Y, *a, **k):
        seen.append(np.array(Y))
        return orig(Y, *a, **k)
    monkeypatch.setattr(hc, "linkage", linkage)
    select_mixture(X, n_components=[2, 3], covariance_types="full", sample_weight=sw,
                   criterion=criterion, start="hierarchical", random_state=0)
    fit_w = sw * ~sel.heldout_mask(0, X.shape[0], 0.2, 0) if criterion == "heldout" else sw
    (Y,) = seen
    rows = {r.tobytes() for r in Y}
    assert rows <= {r.tobytes() for r in X[fit_w > 0]}
    assert len(rows) == Y.shape[0] == np.count_nonzero(fit_w > 0)
