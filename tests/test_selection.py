"""select_mixture / fastmix.selection: every candidate equals a separate GaussianMixture fit from
the same start, files equal arrays with one read per iteration, bad input, the held-out split,
the split start and the statistical behaviour of BIC and ICL (small data)."""
import math
import warnings

import numpy as np
import pytest

import fastmix
from fastmix import GaussianMixture, select_mixture
from fastmix import selection as sel
from fastmix.io import npy as npy_io

KINDS = ("full", "tied", "diag", "spherical")


def _blobs(seed=0, n=400, D=3, sep=5.0, K=3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, sep, (K, D))
    X = np.concatenate([rng.normal(c, 1.0, (n, D)) for c in centres])
    return X[rng.permutation(X.shape[0])]


@pytest.fixture(scope="module")
def X():
    return _blobs()


def _same_model(a, b):
    names = ("weights_", "means_", "loadings_", "noise_variances_") \
        if a.covariance_type == "lowrank" else ("weights_", "means_", "covariances_",
                                                "precisions_cholesky_")
    return all(np.array_equal(getattr(a, n), getattr(b, n)) for n in names)


@pytest.mark.parametrize("kind", KINDS + ("lowrank",))
def test_candidates_equal_separate_fits(X, kind):
    kw = dict(random_state=3, chunk_size=256, tol=1e-4, n_factors=1)
    res = select_mixture(X, n_components=[1, 2, 4], covariance_types=kind, **kw)
    r = res.results_
    assert list(r["n_components"]) == [1, 2, 4]
    for i in range(len(res)):
        K = int(r["n_components"][i])
        gm = GaussianMixture(K, covariance_type=kind, **kw).fit(X)
        est = res.estimator(i)
        assert _same_model(gm, est), (kind, K)
        assert gm.n_iter_ == r["n_iter"][i] == est.n_iter_
        assert gm.lower_bound_ == est.lower_bound_
        assert gm.lower_bounds_ == est.lower_bounds_
        assert bool(gm.converged_) == bool(r["converged"][i])
        assert r["n_parameters"][i] == gm._n_parameters()
        assert r["bic"][i] == pytest.approx(gm.bic(X), rel=1e-12, abs=0)
        assert r["score"][i] == r["bic"][i]
        assert r["log_likelihood"][i] == pytest.approx(gm.score(X) * X.shape[0], rel=1e-12)
        assert r["time"][i] > 0
    best = int(np.argmin(r["bic"]))
    assert res.best_index_ == best
    assert res.best_params_ == {"n_components": int(r["n_components"][best]),
                                "covariance_type": kind}
    np.testing.assert_array_equal(res.best_estimator_.means_, res.estimator(best).means_)


def test_float32_and_best_across_types(X):
    X32 = X.astype(np.float32)
    res = select_mixture(X32, n_components=range(1, 5), covariance_types=KINDS,
                         random_state=1)
    assert res.best_estimator_.means_.dtype == np.float32
    i = res.best_index_
    gm = GaussianMixture(**res.best_params_, random_state=res.random_state_).fit(X32)
    assert _same_model(gm, res.best_estimator_)
    assert res.best_params_["n_components"] == 3  # three well-separated blobs
    assert res.best_score_ == pytest.approx(gm.bic(X32), rel=1e-9)
    assert res.results_["score"][i] == np.min(res.results_["score"])


def test_icl_is_bic_plus_twice_the_entropy(X):
    res = select_mixture(X, n_components=[2, 3], covariance_types="full", criterion="icl",
                         random_state=0)
    for i in range(len(res)):
        est = res.estimator(i)
        R = est.predict_proba(X)
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.sum(np.where(R > 0, R * np.log(R), 0.0))
        assert res.results_["entropy"][i] == pytest.approx(ent, rel=1e-9, abs=1e-9)
        assert res.results_["score"][i] == pytest.approx(est.bic(X) + 2 * ent, rel=1e-12)


def test_heldout_equals_weighted_fit_scored_on_the_rest(X):
    res = select_mixture(X, n_components=[1, 3], covariance_types=("diag",),
                         criterion="heldout", heldout_fraction=0.25, random_state=5)
    held = sel.heldout_mask(0, X.shape[0], 0.25, 5)
    assert 0.2 < held.mean() < 0.3
    w = (~held).astype(float)
    for i in range(len(res)):
        K = int(res.results_["n_components"][i])
        gm = GaussianMixture(K, covariance_type="diag", random_state=5).fit(X, sample_weight=w)
        assert _same_model(gm, res.estimator(i))
        lp = gm.score_samples(X)
        assert res.results_["heldout_log_likelihood"][i] == pytest.approx(lp[held].sum(),
                                                                           rel=1e-12)
        assert res.results_["score"][i] == pytest.approx(-2 * lp[held].sum(), rel=1e-12)
        assert res.results_["log_likelihood"][i] == pytest.approx(lp[~held].sum(), rel=1e-12)
    assert res.best_params_["n_components"] == 3


def test_heldout_mask_does_not_depend_on_blocks():
    whole = sel.heldout_mask(0, 10_000, 0.3, 7)
    parts = np.concatenate([sel.heldout_mask(a, b, 0.3, 7)
                            for a, b in ((0, 1), (1, 4097), (4097, 10_000))])
    np.testing.assert_array_equal(whole, parts)
    assert abs(whole.mean() - 0.3) < 0.02
    assert not np.array_equal(whole, sel.heldout_mask(0, 10_000, 0.3, 8))
    w = sel.TrainingWeights(10_000, 0.3, 7)
    np.testing.assert_array_equal(w.array(), (~whole).astype(float))
    np.testing.assert_array_equal(w.take(np.array([3, 9999]))[:, 0], w.array()[[3, 9999]])


class _CountReads:
    def __init__(self, monkeypatch):
        self.bytes = 0
        self.calls = 0
        orig = npy_io.NpySource.read_rows

        def read_rows(src, start, stop, out):
            self.calls += 1
            self.bytes += out.nbytes
            return orig(src, start, stop, out)
        monkeypatch.setattr(npy_io.NpySource, "read_rows", read_rows)


@pytest.mark.parametrize("criterion", ["bic", "heldout"])
def test_file_sweep_equals_memory_and_reads_once_per_iteration(X, tmp_path, monkeypatch,
                                                               criterion):
    path = tmp_path / "x.npy"
    np.save(path, X)
    monkeypatch.setattr(fastmix.io.base, "BLOCK_BYTES", 300 * 8 * 3)  # 4 blocks per pass
    kw = dict(n_components=[1, 2, 3], covariance_types=("full", "spherical"),
              criterion=criterion, random_state=2, chunk_size=128)
    mem = select_mixture(X, **kw)
    reads = _CountReads(monkeypatch)
    disk = select_mixture(str(path), **kw)
    for i in range(len(mem)):
        # the file sweep is bit-identical to a separate fit of the file, and equal to the
        # in-memory sweep to rounding (the k-means start's assignment sums are added per block
        # of the file, fastmix.kmeans.hard_stats: not always bit-identical to one block)
        K, ct = int(disk.results_["n_components"][i]), str(disk.results_["covariance_type"][i])
        w = None if criterion == "bic" else (~sel.heldout_mask(0, X.shape[0], 0.2, 2)) * 1.0
        sep = GaussianMixture(K, covariance_type=ct, random_state=2, chunk_size=128)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sep.fit(str(path) if w is None else X, sample_weight=w)
        if w is None:
            assert _same_model(sep, disk.estimator(i))
        for k in ("means_", "covariances_"):
            np.testing.assert_allclose(getattr(disk.estimator(i), k),
                                       getattr(mem.estimator(i), k), rtol=1e-12, atol=1e-13)
        for k in ("score", "n_iter", "log_likelihood", "heldout_log_likelihood"):
            np.testing.assert_allclose(disk.results_[k][i], mem.results_[k][i], rtol=1e-12)
    reads.bytes = reads.calls = 0
    disk = select_mixture(str(path), **kw)
    size = X.nbytes
    em = [b for b, k in zip(disk.bytes_read_, disk.pass_kinds_) if k == "em"]
    # every EM pass reads the file once, for all candidates: iterations of the slowest one,
    # plus the pass that scores the last ones to stop
    assert em == [size] * (int(disk.results_["n_iter"].max()) + 1)
    assert disk.pass_kinds_.count("start") == 1
    # the reads counted at the file: these passes, and one more read of every row for the
    # k-means sample (1200 rows < 65536: the whole file), shared by every K
    assert sum(disk.bytes_read_) == size * disk.n_passes_
    assert reads.bytes == size * (disk.n_passes_ + 1)
    assert reads.calls == 4 * (disk.n_passes_ + 1)


def test_in_memory_blocks_do_not_change_results(X, monkeypatch):
    kw = dict(n_components=[2, 3], covariance_types=("full", "diag"), random_state=4,
              chunk_size=64)
    a = select_mixture(X, **kw)
    monkeypatch.setattr(sel, "CACHE_BLOCK_BYTES", 64 * 3 * 8 * 2)  # blocks of two chunks
    b = select_mixture(X, **kw)
    assert b.n_passes_ == a.n_passes_
    for i in range(len(a)):
        assert _same_model(a.estimator(i), b.estimator(i))


def test_iterator_source_with_heldout(X):
    kw = dict(n_components=[2, 3], covariance_types="diag", criterion="heldout",
              random_state=0, chunk_size=100)
    mem = select_mixture(X, **kw)
    pieces = [X[i:i + 250] for i in range(0, X.shape[0], 250)]
    it = select_mixture(pieces, **kw)  # row count unknown: counted first, then split
    np.testing.assert_allclose(it.results_["heldout_log_likelihood"],
                               mem.results_["heldout_log_likelihood"], rtol=1e-9)


@pytest.mark.parametrize("start", ["hierarchical", "split"])
def test_other_starts(X, start):
    res = select_mixture(X, n_components=range(1, 5), covariance_types=("full", "diag"),
                         start=start, random_state=0)
    r = res.results_
    assert list(r["n_components"]) == [1, 2, 3, 4] * 2
    assert list(r["covariance_type"]) == ["full"] * 4 + ["diag"] * 4
    assert np.all(np.isfinite(r["score"]))
    assert res.best_params_["n_components"] == 3
    for i in range(len(res)):
        est = res.estimator(i)
        assert est.means_.shape == (r["n_components"][i], 3)
        assert r["bic"][i] == pytest.approx(est.bic(X), rel=1e-12)


def test_split_picks_the_component_hiding_two_clusters():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal((-3, 0), 0.5, (500, 2)), rng.normal((3, 0), 0.5, (500, 2)),
                        rng.normal((0, 12), 1.0, (1000, 2))])
    # component 0 covers the two left clusters, component 1 the Gaussian one
    from fastmix._params import Covariance, GMMParams
    covs = np.stack([np.cov(X[:1000].T), np.cov(X[1000:].T)])
    p = GMMParams(np.array([0.5, 0.5]), np.array([X[:1000].mean(0), X[1000:].mean(0)]),
                  Covariance.registry["full"].from_covariances(covs))
    q = sel.split_params(p, X, None, 256, 1e-6)
    assert q.means.shape == (3, 2)
    np.testing.assert_array_equal(q.means[1], p.means[1])  # the Gaussian one untouched
    assert sorted(np.round(q.means[[0, 2], 0] / 3).tolist()) == [-1.0, 1.0]
    np.testing.assert_allclose(q.weights.sum(), 1.0)


def test_dask_equals_local(X):
    da = pytest.importorskip("dask.array")
    kw = dict(n_components=[1, 3], covariance_types=("full", "diag"), random_state=0,
              chunk_size=200)
    local = select_mixture(X, **kw)
    Xd = da.from_array(X, chunks=(400, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dist = select_mixture(Xd, **kw)
    np.testing.assert_allclose(dist.results_["score"], local.results_["score"], rtol=1e-10)
    assert dist.pass_kinds_.count("start") == 1
    held = select_mixture(Xd, criterion="heldout", **kw)
    ref = select_mixture(X, criterion="heldout", **kw)
    np.testing.assert_allclose(held.results_["score"], ref.results_["score"], rtol=1e-10)


# --------------------------------------------------------------------------- bad input -----
@pytest.mark.parametrize("kw, match", [
    (dict(n_components=[]), "n_components is empty"),
    (dict(n_components=range(3, 3)), "n_components is empty"),
    (dict(n_components=[0, 1]), "integers >= 1"),
    (dict(n_components=[1.5]), "integers >= 1"),
    (dict(n_components="abc"), "integers >= 1"),
    (dict(covariance_types=()), "covariance_types is empty"),
    (dict(covariance_types=("full", "banana")), "covariance_types must be among"),
    (dict(criterion="aic"), "criterion must be one of"),
    (dict(criterion="heldout", heldout_fraction=0), "heldout_fraction"),
    (dict(criterion="heldout", heldout_fraction=1.0), "heldout_fraction"),
    (dict(criterion="heldout", heldout_fraction=-0.2), "heldout_fraction"),
    (dict(criterion="heldout", heldout_fraction=float("nan")), "heldout_fraction"),
    (dict(criterion="heldout", heldout_fraction="0.2"), "heldout_fraction"),
    (dict(start="random"), "start must be one of"),
    (dict(start="split", covariance_types=("lowrank",)), "split"),
    (dict(tol=-1), "tol"),
    (dict(max_iter=-1), "max_iter"),
    (dict(n_components=[1, 30]), "up to 30 components but the data have only 20 rows"),
    (dict(n_components=[18], criterion="heldout", heldout_fraction=0.5),
     "training rows remain"),
])
def test_bad_input(kw, match):
    X = _blobs(n=10, K=2, D=2)
    before = X.copy()
    with pytest.raises(ValueError, match=match):
        select_mixture(X, **{"random_state": 0, **kw})
    np.testing.assert_array_equal(X, before)


def test_bad_rows():
    X = _blobs(n=10, K=2, D=2)
    X[7, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        select_mixture(X, n_components=[1, 2])


# --------------------------------------------------------------------------- statistics ----
def _truth_data(seed, overlap):
    """Three full-covariance components in 2-D; separated or overlapping."""
    rng = np.random.default_rng(seed)
    sep = 2.2 if overlap else 6.0
    means = np.array([[0, 0], [sep, 0], [0, sep]], dtype=float)
    A = [np.array([[1.0, 0.6], [0.0, 0.5]]), np.array([[0.6, 0.0], [0.4, 1.0]]),
         np.array([[0.8, -0.3], [0.0, 0.7]])]
    X = np.concatenate([rng.normal(size=(300, 2)) @ A[k] + means[k] for k in range(3)])
    return X


def test_bic_finds_the_truth_as_often_as_sklearn_loop():
    skm = pytest.importorskip("sklearn.mixture")
    ks, kinds = range(1, 6), ("full", "spherical")
    ours = theirs = 0
    trials = 0
    for seed in range(3):
        for overlap in (False, True):
            X = _truth_data(seed, overlap)
            res = select_mixture(X, n_components=ks, covariance_types=kinds, random_state=seed)
            ours += res.best_params_ == {"n_components": 3, "covariance_type": "full"}
            best = None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for kind in kinds:
                    for K in ks:
                        b = skm.GaussianMixture(K, covariance_type=kind,
                                                random_state=seed).fit(X).bic(X)
                        if best is None or b < best[0]:
                            best = (b, K, kind)
            theirs += best[1:] == (3, "full")
            trials += 1
    assert ours >= theirs
    assert ours >= trials - 2  # and it is right on most of these easy cases


def test_icl_prefers_fewer_components_on_overlapping_data():
    fewer = 0
    for seed in range(3):
        rng = np.random.default_rng(seed)
        # two overlapping components (means 2.5 sd apart: BIC separates them) and a far one
        X = np.concatenate([rng.normal(0, 1, (400, 2)), rng.normal((2.5, 0), 1, (400, 2)),
                            rng.normal((12, 12), 1, (400, 2))])
        kw = dict(n_components=range(1, 5), covariance_types="full", random_state=seed)
        bic = select_mixture(X, **kw)
        icl = select_mixture(X, criterion="icl", **kw)
        assert icl.best_params_["n_components"] <= bic.best_params_["n_components"]
        fewer += icl.best_params_["n_components"] < bic.best_params_["n_components"]
        assert bic.best_params_["n_components"] == 3  # the truth
        assert icl.best_params_["n_components"] == 2  # the overlapping pair merged
    assert fewer == 3


def test_max_iter_zero_scores_the_starts(X):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = select_mixture(X, n_components=[2], covariance_types="full", max_iter=0,
                             random_state=0)
    gm = GaussianMixture(2, max_iter=0, random_state=0).fit(X)
    assert _same_model(gm, res.best_estimator_)
    assert res.results_["n_iter"][0] == 0
    assert math.isfinite(res.best_score_)


def test_not_converged_warns(X):
    with pytest.warns(fastmix.ConvergenceWarning, match="did not converge"):
        select_mixture(X, n_components=[3], covariance_types="full", max_iter=1,
                       random_state=0)


# --------------------------------------------------------------------------- plot and CLI --
def test_plot_selection(X, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from fastmix import plot
    res = select_mixture(X, n_components=range(1, 5), covariance_types=("full", "diag"),
                         random_state=0)
    path = tmp_path / "sel.png"
    fig = plot.selection(res, path=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    for kind in ("full", "diag"):
        rows = res.results_["covariance_type"] == kind
        np.testing.assert_array_equal(lines[kind].get_xdata(), [1, 2, 3, 4])
        np.testing.assert_allclose(lines[kind].get_ydata(), res.results_["score"][rows])
    chosen = [ln for name, ln in lines.items() if name.startswith("chosen")]
    assert len(chosen) == 1
    assert chosen[0].get_xdata()[0] == res.best_params_["n_components"] == 3
    assert chosen[0].get_ydata()[0] == res.best_score_
    # the JSON report draws the same picture
    fig2 = plot.selection(res.to_dict())
    l2 = {ln.get_label(): ln for ln in fig2.axes[0].get_lines()}
    np.testing.assert_allclose(l2["full"].get_ydata(), lines["full"].get_ydata())
    with pytest.raises(ValueError, match="SelectionResult"):
        plot.selection(object())


def test_cli_select(X, tmp_path, capsys):
    import json

    pytest.importorskip("matplotlib")
    from fastmix.cli import main
    data = tmp_path / "x.npy"
    np.save(data, X)
    out, rep = tmp_path / "best.npz", tmp_path / "sel.json"
    argv = [str(data), "-k", "1:4", "--covariance-types", "full,spherical", "-o", str(out),
            "--report", str(rep), "--seed", "3", "--chunk-rows", "256",
            "--plot", str(tmp_path / "sel.png")]
    assert main(["select"] + argv) == 0
    assert "best by bic: K=3" in capsys.readouterr().err
    best = fastmix.load(out)
    report = json.loads(rep.read_text())
    res = select_mixture(X, n_components=range(1, 5), covariance_types=("full", "spherical"),
                         random_state=3, chunk_size=256)
    assert report["best_params"] == res.best_params_
    assert [c["score"] for c in report["candidates"]] == pytest.approx(
        res.results_["score"].tolist(), rel=1e-12)
    assert report["n_passes"] == res.n_passes_ and report["bytes_read"] == res.bytes_read_
    assert _same_model(best, res.best_estimator_)
    assert (tmp_path / "sel.png").read_bytes()[:4] == b"\x89PNG"
    # errors: one line, status 1, no output files
    bad = tmp_path / "bad.npz"
    for extra, msg in ((["-k", "5:1"], "n_components is empty"),
                       (["-k", "a:b"], "-k must be"),
                       (["--criterion", "heldout", "--heldout-fraction", "1.5"],
                        "heldout_fraction"),
                       (["--covariance-types", "full,nope"], "covariance_types")):
        assert main(["select", str(data), "-o", str(bad)] + extra) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err
        assert not bad.exists()


# --------------------------------------------------------------------------- split criteria -
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("criterion", ["kl", "kl_empirical", "kurtosis"])
def test_split_scores_against_reference(kind, criterion, monkeypatch):
    import reference as ref
    from fastmix._params import Covariance, GMMParams
    rng = np.random.default_rng(11)
    w, m, c = ref.random_model(rng, kind, 3, 3)
    X = ref.sample_model(rng, w, m, c, kind, 400)
    sw = rng.uniform(0.2, 2.0, X.shape[0])
    monkeypatch.setattr(sel, "KDE_ROWS", 120)  # below the rows of every component: subsampled
    p = GMMParams(w, m, Covariance.registry[kind].from_covariances(c))
    got = sel.split_scores(p, X, sw, 64, criterion)
    want = ref.split_scores(X, sw, w, m, c, kind, criterion, 120)
    np.testing.assert_allclose(got, want, rtol=1e-8)
    assert np.all(np.isfinite(got))


@pytest.mark.parametrize("criterion", ["kl", "kurtosis"])
def test_split_criterion_picks_the_bimodal_component(criterion):
    # component 0 covers two clusters, 1 and 2 are Gaussian; the Gaussian ones score lower
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal((-2.5, 0), 0.6, (600, 2)), rng.normal((2.5, 0), 0.6, (600, 2)),
                        rng.normal((0, 12), 1.0, (800, 2)), rng.normal((12, 0), 2.0, (800, 2))])
    from fastmix._params import Covariance, GMMParams
    parts = (X[:1200], X[1200:2000], X[2000:])
    p = GMMParams(np.array([1200, 800, 800]) / 2800, np.array([q.mean(0) for q in parts]),
                  Covariance.registry["full"].from_covariances(
                      np.stack([np.cov(q.T) for q in parts])))
    z = sel.split_scores(p, X, None, 256, criterion)
    assert int(np.argmax(z)) == 0, z
    if criterion == "kl":
        assert abs(z[1]) < 0.05 and abs(z[2]) < 0.05 and z[0] > 0.1, z  # ~0 when Gaussian
