"""Bad input is part of the contract (docs/design.md §5): each case gets a clear error, or a
documented and tested recovery -- never a silent NaN model or a crash."""
import io
import json
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import fastmix
import reference as ref
from _helpers import FITTED_ATTRS, assert_close, assert_reproducible
from fastmix import kernels

KINDS = ref.KINDS
GM = fastmix.GaussianMixture


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) + 5.0])


def assert_finite_model(gm):
    for name in FITTED_ATTRS:
        assert np.all(np.isfinite(getattr(gm, name))), name
    assert np.isfinite(gm.lower_bound_)


# ------------------------------------------------------------------------------------ X -----
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("row", [0, 17, 79])
def test_nonfinite_X_names_first_bad_row(X, dtype, bad, row):
    Xb = X.astype(dtype)
    Xb[row, 1] = bad
    Xb[79, 2] = bad  # a later bad row must not be the one reported
    with pytest.raises(ValueError, match=rf"NaN or infinity \(first bad row: {row}\b"):
        GM(2).fit(Xb)
    gm = GM(2, random_state=0).fit(X)
    for method in (gm.predict, gm.predict_proba, gm.score_samples, gm.score):
        with pytest.raises(ValueError, match=rf"first bad row: {row}\b"):
            method(Xb)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_nonfinite_X_names_column_and_value(X, bad):
    """The error names the first bad column of the row and its value (the row's values alone
    hid a NaN past the eighth column), and for NaN where fastmix takes missing values."""
    Xb = np.tile(X, (1, 4))  # 12 columns: the bad one past the eighth
    Xb[5, 10] = bad
    Xb[5, 11] = -bad  # a later bad column of the same row is not the one reported
    kind = "nan" if np.isnan(bad) else "inf"
    with pytest.raises(ValueError, match=rf"first bad row: 5, column 10 of 12: {kind}\)") as exc:
        GM(2).fit(Xb)
    assert ('missing="marginalize"' in str(exc.value)) == (kind == "nan")


@pytest.mark.parametrize("shape", [(80,), (80, 3, 1), ()], ids=["1d", "3d", "0d"])
def test_wrong_ndim(X, shape):
    with pytest.raises(ValueError, match="2D array"):
        GM(2).fit(np.ones(shape) if shape else np.float64(1.0))


def test_too_few_rows(X):
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GM(5).fit(X[:3])
    with pytest.raises(ValueError, match="1 sample"):
        GM(1).fit(X[:1])
    with pytest.raises(ValueError, match="0 sample"):
        GM(1).fit(X[:0])
    with pytest.raises(ValueError, match="0 feature"):
        GM(1).fit(np.zeros((5, 0)))


def test_complex_input(X):
    with pytest.raises(ValueError, match="[Cc]omplex"):
        GM(2).fit(X + 1j)


@pytest.mark.parametrize("make", [
    lambda X: np.array([["a", "b"], ["c", "d"], ["e", "f"]]),
    lambda X: np.array([["a", "b"], ["c", "d"], ["e", "f"]], dtype=object),
    lambda X: np.array([[1.0, None], [2.0, 3.0]], dtype=object),
    lambda X: [[1.0, "x"], [2.0, 3.0]],
], ids=["str", "object-str", "object-None", "list-mixed"])
def test_non_numeric_input(X, make):
    with pytest.raises((ValueError, TypeError)):
        GM(1).fit(make(X))


def test_numeric_object_and_list_input_work(X):
    a = GM(2, random_state=0, max_iter=5).fit(X)
    for Z in (X.tolist(), X.astype(object), np.asfortranarray(X)):
        b = GM(2, random_state=0, max_iter=5).fit(Z)
        assert_reproducible(a.means_, b.means_)


@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_matrix", "coo_matrix", "csr_array"])
def test_sparse_input(X, fmt):
    S = getattr(sp, fmt)(X)
    with pytest.raises(TypeError, match="sparse"):
        GM(2).fit(S)
    gm = GM(2, random_state=0).fit(X)
    with pytest.raises(TypeError, match="sparse"):
        gm.predict(S)


# ------------------------------------------------------------------------ sample_weight -----
@pytest.mark.parametrize("sw, match", [
    (np.ones(79), r"sample_weight\.shape"),
    (np.ones(81), r"sample_weight\.shape"),
    (np.ones((80, 1)), r"sample_weight\.shape"),
    (np.r_[np.ones(40), -1.0, np.ones(39)], "non-negative.*index 40"),
    (np.r_[np.ones(10), np.nan, np.ones(69)], "NaN or infinity"),
    (np.r_[np.ones(10), np.inf, np.ones(69)], "NaN or infinity"),
    (np.zeros(80), "sums to zero"),
    (np.array(["a"] * 80), "numeric"),
], ids=["short", "long", "2d", "negative", "nan", "inf", "all-zero", "str"])
def test_bad_sample_weight(X, sw, match):
    with pytest.raises(ValueError, match=match):
        GM(2).fit(X, sample_weight=sw)


# ---------------------------------------------------------------------------- *_init -------
@pytest.mark.parametrize("means_init", [np.zeros((3, 3)), np.zeros((2, 2)), np.zeros(6),
                                        np.full((2, 3), np.nan)],
                         ids=["K+1", "D-1", "flat", "nan"])
def test_bad_means_init(X, means_init):
    with pytest.raises(ValueError, match="means_init"):
        GM(2, means_init=means_init).fit(X)


@pytest.mark.parametrize("weights_init, match", [
    ([1.0], "shape"), ([[0.5, 0.5]], "shape"), ([0.5, 0.6], "normalized"),
    ([0.2, 0.2], "normalized"), ([-0.5, 1.5], r"range \[0, 1\]"), ([np.nan, 1.0], "weights_init"),
], ids=["short", "2d", "sum>1", "sum<1", "negative", "nan"])
def test_bad_weights_init(X, weights_init, match):
    with pytest.raises(ValueError, match=match):
        GM(2, weights_init=weights_init).fit(X)


def _not_pd_full():
    p = np.stack([np.eye(3)] * 2)
    p[1, 0, 0] = -1.0
    return p


@pytest.mark.parametrize("kwargs, match", [
    (dict(weights_init=[[0.5], [0.5]]),
     r"^The parameter 'weights' should have the shape of \(2,\), but got \(2, 1\)"),
    (dict(weights_init=[1.2, 1.5]),
     r"^The parameter 'weights' should be in the range \[0, 1\], but got max value 1\.20000, "
     r"min value 1\.50000 .*smallest weight 1\.2, largest 1\.5"),
    (dict(weights_init=[0.2, 0.3]),
     r"^The parameter 'weights' should be normalized, but got sum\(weights\) = 0\.50000"),
    (dict(means_init=np.zeros((3, 3))),
     r"^The parameter 'means' should have the shape of \(2, 3\), but got \(3, 3\)"),
    (dict(covariance_type="diag", precisions_init=np.ones((3, 3))),
     r"^The parameter 'diag precision' should have the shape of \(2, 3\), but got \(3, 3\)"),
    (dict(covariance_type="full", precisions_init=_not_pd_full()),
     r"^'full precision' should be symmetric, positive-definite: precisions_init\[1\]"),
    (dict(covariance_type="tied", precisions_init=-np.eye(3)),
     r"^'tied precision' should be symmetric, positive-definite: precisions_init"),
    (dict(covariance_type="spherical", precisions_init=[1.0, -1.0]),
     r"^'spherical precision' should be positive: precisions_init"),
], ids=["weights-shape", "weights-range", "weights-sum", "means-shape", "prec-shape",
        "full-not-pd", "tied-not-pd", "spherical-negative"])
def test_init_errors_use_sklearns_wording(X, kwargs, match):
    """Messages for bad *_init start with scikit-learn's wording (code and scikit-learn's own
    tests match on it), then fastmix's detail."""
    with pytest.raises(ValueError, match=match):
        GM(2, **kwargs).fit(X)


def _bad_precisions(kind, what, K=2, D=3):
    good = {"full": np.stack([np.eye(D)] * K), "tied": np.eye(D), "diag": np.ones((K, D)),
            "spherical": np.ones(K)}[kind]
    if what == "shape":
        return np.ones(good.size + 1)
    p = good.copy()
    if what == "not-pd":
        if kind == "full":
            p[1, 2, 2] = -1.0
        elif kind == "tied":
            p[2, 2] = -1.0
        else:
            p.flat[-1] = -1.0
    elif what == "zero":
        p[...] = 0.0
    elif what == "nan":
        p.flat[0] = np.nan
    elif what == "inf":
        p.flat[0] = np.inf
    elif what == "asymmetric":
        (p[0] if kind == "full" else p)[0, 1] = 0.5
    return p


@pytest.mark.parametrize("what", ["shape", "not-pd", "zero", "nan", "inf", "asymmetric"])
@pytest.mark.parametrize("kind", KINDS)
def test_bad_precisions_init(X, kind, what):
    if what == "asymmetric" and kind in ("diag", "spherical"):
        pytest.skip("no symmetry for diag/spherical precisions")
    with pytest.raises(ValueError, match="precisions_init"):
        GM(2, covariance_type=kind, precisions_init=_bad_precisions(kind, what)).fit(X)


# -------------------------------------------------------------------------- hyper-params ----
@pytest.mark.parametrize("kwargs, match", [
    (dict(n_components=0), "n_components"), (dict(n_components=1.5), "n_components"),
    (dict(n_components=True), "n_components"),
    (dict(covariance_type="banana"), "covariance_type"), (dict(init_params="x"), "init_params"),
    (dict(tol=-1), "tol"), (dict(tol=np.nan), "tol"), (dict(reg_covar=-1e-6), "reg_covar"),
    (dict(reg_covar=np.inf), "reg_covar"), (dict(max_iter=-1), "max_iter"),
    (dict(n_init=0), "n_init"), (dict(chunk_size=0), "chunk_size"),
    (dict(chunk_size=2.0), "chunk_size"), (dict(chunk_size=-5), "chunk_size"),
    (dict(random_state="x"), "random_state"),
], ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={v[k]!r}" for k in v))
def test_invalid_hyper_parameters(X, kwargs, match):
    with pytest.raises(ValueError, match=match):
        GM(**{"n_components": 2, **kwargs}).fit(X)


@pytest.mark.parametrize("verbose", [0, 2])
def test_invalid_verbose_interval(X, verbose):
    """verbose_interval < 1 is rejected up front (it used to crash mid-fit with
    ZeroDivisionError when verbose=2)."""
    with pytest.raises(ValueError, match="verbose_interval"):
        GM(2, verbose=verbose, verbose_interval=0, max_iter=3).fit(X)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score", "bic",
                                    "aic", "sample", "save"])
def test_not_fitted(X, method, tmp_path):
    gm = GM(2)
    args = {"sample": (3,), "save": (tmp_path / "m.npz",)}.get(method, (X,))
    with pytest.raises(fastmix.NotFittedError, match="not fitted"):
        getattr(gm, method)(*args)
    # also catchable the usual ways
    assert issubclass(fastmix.NotFittedError, ValueError)
    assert issubclass(fastmix.NotFittedError, AttributeError)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score", "bic",
                                    "aic"])
def test_wrong_number_of_features_after_fit(X, method):
    gm = GM(2, random_state=0).fit(X)
    for Z in (X[:, :2], np.c_[X, X[:, :1]]):
        with pytest.raises(ValueError, match="expecting 3 features"):
            getattr(gm, method)(Z)


def test_warm_start_with_wrong_number_of_features(X):
    gm = GM(2, random_state=0, warm_start=True).fit(X)
    with pytest.raises(ValueError, match="expecting 3 features"):
        gm.fit(X[:, :2])


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_bad_n_samples(X, n):
    gm = GM(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="n_samples"):
        gm.sample(n)


# --------------------------------------------------------------- inputs are not modified ----
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_callers_arrays_unchanged(X, kind, dtype):
    Xc = X.astype(dtype)
    sw = np.linspace(0.5, 2.0, X.shape[0])
    K = 2
    w0 = np.array([0.4, 0.6])
    m0 = Xc[[0, 50]].astype(np.float64)
    p0 = _bad_precisions(kind, "valid")  # identity-like precisions
    originals = [a.copy() for a in (Xc, sw, w0, m0, p0)]
    gm = GM(K, covariance_type=kind, weights_init=w0, means_init=m0, precisions_init=p0,
            max_iter=5).fit(Xc, sample_weight=sw)
    gm.predict(Xc)
    gm.score_samples(Xc)
    gm.fit(Xc, sample_weight=sw)
    for orig, now in zip(originals, (Xc, sw, w0, m0, p0)):
        assert now.dtype == orig.dtype and np.array_equal(now, orig)
    # the fitted attributes are not views of the caller's init arrays
    gm.means_[...] = 0.0
    assert np.array_equal(m0, originals[3])


# ----------------------------------------------------------- degenerate data: recoveries ----
@pytest.mark.parametrize("kind", KINDS)
def test_collapsing_component_gives_finite_model(X, kind):
    """Many duplicates of one point with reg_covar=0: the component that sits on them has zero
    variance.  Documented recovery: more regularisation + DegenerateComponentWarning."""
    Xd = np.concatenate([np.repeat(X[:1], 30, axis=0), X[1:20]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastmix.DegenerateComponentWarning)
        gm = GM(3, covariance_type=kind, reg_covar=0.0, random_state=0, max_iter=50).fit(Xd)
    assert_finite_model(gm)
    assert np.all(np.isfinite(gm.score_samples(Xd)))
    assert np.all(np.isfinite(gm.predict_proba(Xd)))


@pytest.mark.parametrize("kind", ["full", "diag", "spherical"])
def test_collapse_warns(X, kind):
    Xd = np.ones((20, 2))
    with pytest.warns(fastmix.DegenerateComponentWarning):
        gm = GM(2, covariance_type=kind, reg_covar=0.0, random_state=0).fit(Xd)
    assert_finite_model(gm)


@pytest.mark.parametrize("kind", KINDS)
def test_constant_column(X, kind):
    Xc = np.c_[X, np.full(X.shape[0], 3.0)]
    gm = GM(2, covariance_type=kind, random_state=0).fit(Xc)
    assert_finite_model(gm)
    np.testing.assert_allclose(gm.means_[:, -1], 3.0, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_component(X, kind):
    """A mean far from all data gets no responsibility: finite parameters, tiny weight, and the
    other components fit the data."""
    means_init = np.r_[X[[0, 50]], [[1e3, 1e3, 1e3]]]
    gm = GM(3, covariance_type=kind, means_init=means_init, random_state=0).fit(X)
    assert_finite_model(gm)
    assert gm.weights_[2] < 1e-10
    assert np.all(np.isfinite(gm.score_samples(X)))
    np.testing.assert_allclose(gm.predict_proba(X).sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("kind", ["full", "diag"])
def test_zero_initial_weight(X, kind):
    gm = GM(2, covariance_type=kind, weights_init=[0.0, 1.0], random_state=0).fit(X)
    assert_finite_model(gm)


@pytest.mark.parametrize("scale", [1e-150, 1e150])
@pytest.mark.parametrize("kind", KINDS)
def test_extreme_but_representable_scales(X, kind, scale):
    gm = GM(2, covariance_type=kind, random_state=0).fit(X * scale)
    assert_finite_model(gm)


@pytest.mark.parametrize("kind", KINDS)
def test_overflowing_variances_do_not_give_a_silent_nan_model(X, kind):
    """Finite data whose squared deviations overflow (|x| ~ 1e200) must give a clear error or
    a finite model, never a silent NaN model."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            gm = GM(2, covariance_type=kind, random_state=0).fit(X * 1e200)
    except (ValueError, FloatingPointError):
        return
    assert_finite_model(gm)


# ------------------------------------------------------------------------------ dtypes ------
def test_float32_stays_float32_in_the_kernels(X, monkeypatch):
    from fastmix import kmeans as km
    seen = []
    for name in ("estep_stats", "log_prob"):
        orig = getattr(kernels, name)

        def spy(Xk, *args, _orig=orig, _name=name, **kw):
            seen.append((_name, Xk.dtype))
            return _orig(Xk, *args, **kw)
        monkeypatch.setattr(kernels, name, spy)
    orig_init = km.Distances.__init__

    def spy_kmeans(self, Xk, *args, **kw):  # k-means (BLAS) converts one chunk at a time
        seen.append(("kmeans", Xk.dtype))
        orig_init(self, Xk, *args, **kw)
    monkeypatch.setattr(km.Distances, "__init__", spy_kmeans)
    X32 = X.astype(np.float32)
    gm = GM(2, random_state=0, max_iter=5).fit(X32)
    gm.predict_proba(X32)
    gm.score_samples(X32)
    called = {n for n, _ in seen}
    assert {"estep_stats", "log_prob", "kmeans"} <= called
    assert all(dt == np.float32 for _, dt in seen), seen
    # the fitted parameters come back in the input's dtype, as in scikit-learn
    for name in FITTED_ATTRS:
        assert getattr(gm, name).dtype == np.float32


@pytest.mark.parametrize("kind", KINDS)
def test_float32_fit_close_to_float64_fit(X, kind):
    init = dict(means_init=X[[0, 50]], weights_init=[0.5, 0.5], covariance_type=kind, max_iter=20,
                tol=0.0)
    a = GM(2, **init).fit(X)
    b = GM(2, **init).fit(X.astype(np.float32))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert_close(getattr(b, name), getattr(a, name), 1e-4, name)
    assert_close(b.lower_bound_, a.lower_bound_, 1e-5)
    assert_close(b.score_samples(X.astype(np.float32)), a.score_samples(X), 1e-4)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.float16])
def test_other_real_dtypes_become_float64(X, dtype):
    Z = (X > 0).astype(dtype) if dtype == np.bool_ else (X * 10).astype(dtype)
    gm = GM(2, random_state=0, reg_covar=1e-3).fit(Z)
    assert_finite_model(gm)
    ref64 = GM(2, random_state=0, reg_covar=1e-3).fit(np.asarray(Z, dtype=np.float64))
    assert_reproducible(gm.means_, ref64.means_)


# ------------------------------------------------------------------------ model files ------
@pytest.fixture(scope="module")
def saved(X, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.npz"
    GM(2, random_state=0).fit(X).save(path)
    return path.read_bytes()


def _npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("cut", [0, 1, 10, 100, 0.5, -22, -1])
def test_truncated_model_file(saved, tmp_path, cut):
    n = int(len(saved) * cut) if isinstance(cut, float) else (cut if cut >= 0 else len(saved) + cut)
    p = tmp_path / "t.npz"
    p.write_bytes(saved[:n])
    with pytest.raises(ValueError, match="fastmix model"):
        fastmix.load(p)


@pytest.mark.parametrize("offset", [0.2, 0.5, 0.8])
def test_bit_flipped_model_file(saved, tmp_path, offset):
    b = bytearray(saved)
    b[int(len(b) * offset)] ^= 0xFF
    p = tmp_path / "f.npz"
    p.write_bytes(bytes(b))
    try:
        gm = fastmix.load(p)
    except ValueError:
        return
    # a flip inside a zip member is caught by its CRC; anywhere else the model must be intact
    assert_finite_model(gm)


@pytest.mark.parametrize("content", [b"", b"hello world", bytes(range(256)) * 4],
                         ids=["empty", "text", "binary"])
def test_garbage_model_file(tmp_path, content):
    p = tmp_path / "g.npz"
    p.write_bytes(content)
    with pytest.raises(ValueError, match="fastmix model"):
        fastmix.load(p)


def test_other_npy_npz_files(tmp_path):
    np.save(tmp_path / "plain.npy", np.zeros(3))
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    for name in ("plain.npy", "other.npz"):
        with pytest.raises(ValueError, match="fastmix model"):
            fastmix.load(tmp_path / name)


def test_missing_model_file(tmp_path):
    with pytest.raises((ValueError, OSError)):
        fastmix.load(tmp_path / "nope.npz")


def _members(saved):
    with np.load(io.BytesIO(saved)) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(str(arrays["meta"]))


def test_meta_errors_that_are_handled(saved, tmp_path):
    arrays, meta = _members(saved)
    cases = {
        "not-json": np.array("{not json"),
        "future-version": np.array(json.dumps({**meta, "format_version": 99})),
        "version-string": np.array(json.dumps({**meta, "format_version": "1"})),
        "unknown-class": np.array(json.dumps({**meta, "class": "Foo"})),
    }
    for name, m in cases.items():
        p = tmp_path / f"{name}.npz"
        p.write_bytes(_npz_bytes(**{**arrays, "meta": m}))
        with pytest.raises(ValueError):
            fastmix.load(p)
    # an object array (pickle) is refused
    p = tmp_path / "pickle.npz"
    p.write_bytes(_npz_bytes(**{**arrays, "fit__means_": np.array([object()], dtype=object)}))
    with pytest.raises(ValueError):
        fastmix.load(p)


def _structurally_corrupt(arrays, meta):
    K, D = arrays["fit__means_"].shape
    drop = lambda key: {k: v for k, v in arrays.items() if k != key}  # noqa: E731
    with_meta = lambda m: {**arrays, "meta": np.array(json.dumps(m))}  # noqa: E731
    return {
        "missing-fit__means_": drop("fit__means_"),
        "missing-fit__precisions_cholesky_": drop("fit__precisions_cholesky_"),
        "meta-is-a-list": with_meta([1, 2]),
        "meta-without-params": with_meta({k: v for k, v in meta.items() if k != "params"}),
        "meta-without-n_iter_": with_meta({k: v for k, v in meta.items() if k != "n_iter_"}),
        "unknown-parameter": with_meta({**meta, "params": {**meta["params"], "banana": 1}}),
        "unknown-covariance-type": with_meta(
            {**meta, "params": {**meta["params"], "covariance_type": "banana"}}),
        "means-wrong-shape": {**arrays, "fit__means_": np.zeros((K + 3, D + 1))},
        "weights-nan": {**arrays, "fit__weights_": np.full(K, np.nan)},
        "precisions-wrong-shape": {**arrays, "fit__precisions_cholesky_": np.ones(5)},
    }


def test_structurally_corrupt_model_files(saved, tmp_path):
    """Valid .npz archives whose fastmix content is damaged (missing members or metadata keys,
    metadata that is not a mapping, unknown parameters or covariance type, arrays of the wrong
    shape or with NaN) must raise ValueError, as load's docstring says."""
    arrays, meta = _members(saved)
    wrong = {}
    for name, content in _structurally_corrupt(arrays, meta).items():
        p = tmp_path / f"{name}.npz"
        p.write_bytes(_npz_bytes(**content))
        try:
            fastmix.load(p)
        except ValueError:
            continue
        except Exception as exc:  # noqa: BLE001 - recording what happens instead
            wrong[name] = type(exc).__name__
        else:
            wrong[name] = "loaded without error"
    assert not wrong, f"not a ValueError: {wrong}"
