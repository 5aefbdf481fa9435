"""Missing values (NaN entries) marginalised inside EM: ``GaussianMixture(missing="marginalize")``,
the masked kernels (``fastmix/kernels/cpu/missing.py``), imputation and conditioning, against
the row-by-row NumPy reference in ``tests/reference.py``."""
import warnings

import numba
import numpy as np
import pytest

import reference as ref
from _helpers import assert_close, assert_reproducible, assert_same_model, gmm_params, \
    perturbed_problem
from fastmix import GaussianMixture, kernels
from fastmix import missing as fm_missing

KINDS = ("full", "tied", "diag", "spherical")
PATTERNS = ("none", "mcar", "block")
CHUNK = 64


def _holes(X, pattern, seed=0, rate=0.2):
    """X with NaN entries: none, MCAR at ``rate``, or whole blocks of columns missing in
    runs of rows (some chunks of CHUNK rows keep every entry)."""
    X = np.array(X, dtype=np.float64)
    rng = np.random.default_rng(seed)
    N, D = X.shape
    if pattern == "mcar":
        X[rng.random(X.shape) < rate] = np.nan
    elif pattern == "block":
        for a in range(0, N, 3 * CHUNK // 2):  # every other half-chunk: two columns gone
            cols = rng.choice(D, size=max(1, D // 2), replace=False)
            X[a:a + CHUNK // 2, cols[:, None]] = np.nan
            X[a:a + CHUNK // 2, cols[:, None]] = np.nan
    empty = np.isnan(X).all(axis=1)
    X[empty, 0] = 0.5  # keep one observed entry per row
    return X


def _problem(kind, pattern, weighted, K=3, D=4, n=300, seed=1):
    X, sw, w, mu, cov = perturbed_problem(kind, K, D, n, seed=seed)
    return _holes(X, pattern, seed), (sw if weighted else None), w, mu, cov


def _init(kind, w, mu, cov, **kw):
    return GaussianMixture(len(w), covariance_type=kind, missing="marginalize", weights_init=w,
                           means_init=mu, precisions_init=ref.precisions_from_covariances(cov, kind),
                           chunk_size=CHUNK, **kw)


# ------------------------------------------------------------------ statistics and EM -------
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("kind", KINDS)
def test_expected_statistics_match_reference(kind, pattern, weighted):
    """One masked E-step: (nk, s1, s2, ll, ws) equal the row-by-row reference (observed-data
    responsibilities, conditional means, conditional covariances added to s2)."""
    X, sw, w, mu, cov = _problem(kind, pattern, weighted)
    st = fm_missing.e_step_stats(X, sw, gmm_params(w, mu, cov, kind), CHUNK)
    want = ref.missing_estep_stats(X, sw, w, mu, cov, kind)
    for got, exp, name in zip((st.nk, st.s1, st.s2, st.ll, st.ws), want,
                              ("nk", "s1", "s2", "ll", "ws")):
        assert_close(got, exp, 1e-10, err_msg=f"{kind} {pattern} {name}")


@pytest.mark.parametrize("kind", ("diag", "spherical"))
def test_statistics_without_a_shared_centre_match_reference(kind):
    """Means far apart (squared Mahalanobis distance > SHARED_MAX from their mean): the masked
    row loop instead of the GEMM formulation."""
    X, sw, w, mu, cov = _problem(kind, "mcar", True)
    shift = 1e4 * np.arange(3)[:, None]
    X = X + shift[np.arange(X.shape[0]) % 3]
    mu = mu + shift
    p = gmm_params(w, mu, cov, kind)
    assert p.kernel_params(X.dtype).g64.shape[0] == 0 or kind == "spherical"
    st = fm_missing.e_step_stats(X, sw, p, CHUNK)
    want = ref.missing_estep_stats(X, sw, w, mu, cov, kind)
    for got, exp in zip((st.nk, st.s1, st.s2, st.ll, st.ws), want):
        assert_close(got, exp, 1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_statistics_match_reference(kind):
    X, sw, w, mu, cov = _problem(kind, "mcar", True)
    X32 = X.astype(np.float32)
    st = fm_missing.e_step_stats(X32, sw, gmm_params(w, mu, cov, kind), CHUNK)
    want = ref.missing_estep_stats(X32, sw, w, mu, cov, kind)
    for got, exp in zip((st.nk, st.s1, st.s2, st.ll), want):
        assert_close(got, exp, 1e-4)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pattern", ("mcar", "block"))
@pytest.mark.parametrize("kind", KINDS)
def test_em_matches_reference(kind, pattern, weighted):
    """Whole fits from the same start equal the reference missing-data EM (parameters and the
    observed-data lower bounds)."""
    X, sw, w, mu, cov = _problem(kind, pattern, weighted, n=160)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter on purpose
        gm = _init(kind, w, mu, cov, max_iter=3, tol=0.0).fit(X, sample_weight=sw)
    want = ref.missing_em(X, sw, w, mu, cov, kind, 1e-6, 3)
    assert_close(gm.weights_, want["weights"], 1e-10)
    assert_close(gm.means_, want["means"], 1e-10)
    assert_close(gm.covariances_, want["covariances"], 1e-10)
    assert_close(gm.lower_bounds_, want["lower_bounds"], 1e-10)


@pytest.mark.parametrize("kind", KINDS + ("lowrank",))
def test_no_nan_gives_todays_fit_exactly(kind):
    """missing='marginalize' on data without NaN is the missing='error' fit, bit for bit."""
    X, _, _, _, _ = perturbed_problem("full", 3, 4, 500, seed=2)
    kw = dict(covariance_type=kind, random_state=0, chunk_size=CHUNK, max_iter=20)
    a = GaussianMixture(3, **kw).fit(X)
    b = GaussianMixture(3, missing="marginalize", **kw).fit(X)
    if kind == "lowrank":
        for attr in ("weights_", "means_", "loadings_", "noise_variances_"):
            assert_reproducible(getattr(a, attr), getattr(b, attr), attr)
    else:
        assert_same_model(a, b)
    assert_reproducible(a.score_samples(X), b.score_samples(X))


@pytest.mark.parametrize("kind", KINDS)
def test_chunks_without_nan_take_the_ordinary_pass(kind):
    """A block whose NaN sit in its first chunk only: its statistics equal the masked pass of
    that chunk followed by the ordinary pass of the rest, bit for bit (chunk routing)."""
    X, sw, w, mu, cov = perturbed_problem(kind, 3, 4, 4 * CHUNK, seed=3)
    X[:CHUNK:3, 1] = np.nan
    p = gmm_params(w, mu, cov, kind)
    kp = p.kernel_params(X.dtype)
    covs, logw = fm_missing.model_arrays(p)
    whole = kernels.estep_stats_missing(X, sw, kp, covs, logw, CHUNK)
    acc = kernels.Accumulator.for_params(kp)
    kernels.estep_stats_missing(X[:CHUNK], sw[:CHUNK], kp, covs, logw, CHUNK, acc)
    kernels.estep_stats(X[CHUNK:], sw[CHUNK:], kp, CHUNK, acc)
    for a, b in zip(whole, acc.result()):
        assert_reproducible(np.float64(a) if np.isscalar(a) else a,
                            np.float64(b) if np.isscalar(b) else b)
    # and the ordinary pass does not see the masked chunk's rows as complete
    plain = kernels.estep_stats(np.nan_to_num(X), sw, kp, CHUNK)
    assert not np.array_equal(whole[1], plain[1])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
@pytest.mark.parametrize("kind", KINDS)
def test_one_and_two_threads_bit_identical(kind):
    X, sw, w, mu, cov = _problem(kind, "mcar", True, n=40 * CHUNK)
    p = gmm_params(w, mu, cov, kind)
    out = []
    for n in (1, 2):
        with kernels.thread_limit(n):
            st = fm_missing.e_step_stats(X, sw, p, CHUNK)
        out.append(st)
    for f in ("nk", "s1", "s2"):
        assert_reproducible(getattr(out[0], f), getattr(out[1], f), f)
    assert_reproducible(np.float64(out[0].ll), np.float64(out[1].ll))


@pytest.mark.parametrize("kind", KINDS)
def test_observed_log_likelihood_never_decreases(kind):
    X, _, w, mu, cov = _problem(kind, "mcar", False, n=400)
    X = _holes(X, "mcar", seed=5, rate=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(3, covariance_type=kind, missing="marginalize", random_state=0,
                             chunk_size=CHUNK, max_iter=40, tol=0.0).fit(X)
    lb = np.asarray(gm.lower_bounds_)
    assert np.all(np.diff(lb) >= -1e-12 * np.abs(lb[1:])), np.diff(lb).min()
    assert np.isfinite(gm.means_).all() and np.isfinite(gm.covariances_).all()


def test_fit_is_reproducible_with_random_state():
    X, _, _, _, _ = _problem("full", "mcar", False)
    a = GaussianMixture(3, missing="marginalize", random_state=3, chunk_size=CHUNK).fit(X)
    b = GaussianMixture(3, missing="marginalize", random_state=3, chunk_size=CHUNK).fit(X)
    assert_same_model(a, b)


# ------------------------------------------------------------------------- inference --------
@pytest.mark.parametrize("kind", KINDS)
def test_scores_use_the_observed_entries(kind):
    X, _, w, mu, cov = _problem(kind, "mcar", False)
    gm = _init(kind, w, mu, cov, max_iter=0).fit(np.nan_to_num(X))  # the start, no iteration
    logp, resp = ref.missing_log_prob_resp(X, gm.weights_, gm.means_, gm.covariances_, kind)
    assert_close(gm.score_samples(X), logp, 1e-10)
    assert_close(gm.predict_proba(X), resp, 1e-10)
    assert np.array_equal(gm.predict(X), np.argmax(resp, axis=1))
    assert gm.score(X) == pytest.approx(logp.mean(), rel=1e-12)
    n_par = ref.n_parameters(kind, 3, 4)
    assert gm.bic(X) == pytest.approx(-2 * logp.sum() + n_par * np.log(X.shape[0]), rel=1e-12)
    # rows without NaN are scored exactly as by the ordinary kernels (at the same positions:
    # the full kind's GEMM blocks round by block)
    full_rows = ~np.isnan(X).any(axis=1)
    plain = _init(kind, w, mu, cov, max_iter=0).set_params(missing="error").fit(
        np.nan_to_num(X))
    assert_reproducible(gm.score_samples(X)[full_rows],
                        plain.score_samples(np.nan_to_num(X))[full_rows])


# ------------------------------------------------------------------------- bad input --------
def test_all_missing_row_is_an_error_naming_the_row():
    X, _, _, _, _ = _problem("diag", "mcar", False)
    X[17] = np.nan
    gm = GaussianMixture(2, covariance_type="diag", missing="marginalize")
    with pytest.raises(ValueError, match="row 17 of X has every entry missing"):
        gm.fit(X)
    gm.fit(np.delete(X, 17, axis=0))
    with pytest.raises(ValueError, match="row 17 of X has every entry missing"):
        gm.score_samples(X)


def test_all_missing_column_is_an_error():
    X, _, _, _, _ = _problem("diag", "mcar", False)
    X[:, 2] = np.nan
    with pytest.raises(ValueError, match="column 2 of X has every entry missing"):
        GaussianMixture(2, covariance_type="diag", missing="marginalize").fit(X)


@pytest.mark.parametrize("with_nan", [True, False], ids=["nan-too", "no-nan"])
def test_inf_error_names_the_column_and_value(with_nan):
    """The first +-inf of the first bad row is named by column and value (the message listed
    the row's first eight values, which hid an inf past the eighth column); a NaN of the same
    row is a missing value, not the one reported."""
    X = np.random.default_rng(0).normal(size=(40, 12))
    X[3, 10], X[3, 11] = -np.inf, np.inf
    if with_nan:
        X[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"first bad row: 3, column 10 of 12: -inf\)"):
        GaussianMixture(2, missing="marginalize").fit(X)


def test_inf_is_still_an_error():
    X, _, _, _, _ = _problem("diag", "mcar", False)
    X[5, 1] = np.inf
    gm = GaussianMixture(2, covariance_type="diag", missing="marginalize")
    with pytest.raises(ValueError, match=r"infinity \(first bad row: 5"):
        gm.fit(X)
    X[np.isnan(X)] = 0.0
    with pytest.raises(ValueError, match=r"infinity \(first bad row: 5"):
        gm.fit(X)  # no NaN at all: inf is still refused
    gm.fit(np.delete(X, 5, axis=0))
    with pytest.raises(ValueError, match=r"infinity \(first bad row: 5"):
        gm.predict(X)


def test_nan_with_missing_error_is_todays_error():
    X, _, _, _, _ = _problem("diag", "mcar", False)
    first = int(np.flatnonzero(np.isnan(X).any(axis=1))[0])
    with pytest.raises(ValueError, match=f"contains NaN or infinity \\(first bad row: {first}"):
        GaussianMixture(2).fit(X)
    gm = GaussianMixture(2).fit(np.nan_to_num(X))
    with pytest.raises(ValueError, match="contains NaN or infinity"):
        gm.score_samples(X)


def test_bad_missing_parameter():
    X, _, _, _, _ = _problem("diag", "mcar", False)
    with pytest.raises(ValueError, match="missing must be one of"):
        GaussianMixture(2, missing="drop").fit(np.nan_to_num(X))


def test_callers_array_is_not_modified():
    X, _, _, _, _ = _problem("full", "mcar", False)
    before = X.copy()
    gm = GaussianMixture(2, missing="marginalize", random_state=0).fit(X)
    gm.impute(X, return_std=True)
    gm.sample_missing(X, 2, random_state=0)
    gm.score_samples(X)
    assert_reproducible(X, before)


# ------------------------------------------------------------- imputation, conditioning ----
def _reference_impute(X, w, mu, cov, kind):
    mean = X.copy()
    std = np.zeros_like(X)
    for n, x in enumerate(X):
        if not np.isnan(x).any():
            continue
        lw, xhat, cond = ref.missing_row_parts(x, w, mu, cov, kind)
        r = np.exp(lw - lw.max())
        r /= r.sum()
        mean[n] = r @ xhat
        second = r @ (xhat ** 2 + np.diagonal(cond, axis1=1, axis2=2))
        m = np.isnan(x)
        std[n, m] = np.sqrt(np.maximum(second - mean[n] ** 2, 0.0))[m]
    return mean, std


@pytest.mark.parametrize("kind", KINDS)
def test_impute_matches_reference(kind):
    X, _, w, mu, cov = _problem(kind, "mcar", False)
    gm = _init(kind, w, mu, cov, max_iter=0).fit(np.nan_to_num(X))
    filled, std = gm.impute(X, return_std=True)
    want, want_std = _reference_impute(X, gm.weights_, gm.means_, gm.covariances_, kind)
    assert_close(filled, want, 1e-10)
    assert_close(std, want_std, 1e-10)
    obs = ~np.isnan(X)
    assert_reproducible(filled[obs], X[obs])
    assert np.all(std[obs] == 0.0) and np.all(std[~obs] > 0.0)
    assert_reproducible(gm.impute(X), filled)


def test_impute_row_with_nothing_observed_gets_the_mixture_moments():
    X, _, w, mu, cov = _problem("full", "mcar", False)
    gm = _init("full", w, mu, cov, max_iter=0).fit(np.nan_to_num(X))
    filled, std = gm.impute(np.full((1, 4), np.nan), return_std=True)
    mean = gm.weights_ @ gm.means_
    var = gm.weights_ @ (np.diagonal(gm.covariances_, axis1=1, axis2=2) + gm.means_ ** 2)
    assert_close(filled[0], mean, 1e-12)
    assert_close(std[0], np.sqrt(var - mean ** 2), 1e-12)


def test_sample_missing_draws_from_the_conditional():
    X, _, w, mu, cov = _problem("full", "mcar", False, n=40)
    gm = _init("full", w, mu, cov, max_iter=0, random_state=0).fit(np.nan_to_num(X))
    draws = gm.sample_missing(X, 4000, random_state=1)
    assert draws.shape == (4000,) + X.shape
    obs = ~np.isnan(X)
    assert np.all(draws[:, obs] == X[obs])
    assert np.isfinite(draws).all()
    mean, std = gm.impute(X, return_std=True)
    miss = ~obs
    z = (draws.mean(axis=0)[miss] - mean[miss]) / (std[miss] / np.sqrt(4000))
    assert np.max(np.abs(z)) < 5.0, np.max(np.abs(z))
    assert_close(draws.std(axis=0)[miss], std[miss], 0.1)
    assert_reproducible(gm.sample_missing(X, 3, random_state=7),
                        gm.sample_missing(X, 3, random_state=7))


@pytest.mark.parametrize("kind", KINDS)
def test_condition_matches_reference(kind):
    X, _, w, mu, cov = _problem(kind, "none", False)
    gm = _init(kind, w, mu, cov, max_iter=0).fit(X)
    o = np.array([2, 0])
    x_o = np.array([0.3, -1.0])
    c = gm.condition(o, x_o)
    assert c.covariance_type == kind
    assert c.n_features_in_ == 2
    x = np.full(4, np.nan)
    x[o] = x_o
    lw, xhat, cond = ref.missing_row_parts(x, gm.weights_, gm.means_, gm.covariances_, kind)
    r = np.exp(lw - lw.max())
    assert_close(c.weights_, r / r.sum(), 1e-10)
    assert_close(c.means_, xhat[:, [1, 3]], 1e-10)
    covs = ref.component_covariances(c.covariances_, kind, 3, 2)
    assert_close(covs, cond[:, [1, 3]][:, :, [1, 3]], 1e-10)
    # the conditional model scores like any fitted one
    assert np.isfinite(c.score_samples(np.zeros((2, 2)))).all()


def test_condition_bad_input():
    X, _, w, mu, cov = _problem("full", "none", False)
    gm = _init("full", w, mu, cov, max_iter=0).fit(X)
    with pytest.raises(ValueError, match=r"lie in \[0, 3\]"):
        gm.condition([4], [1.0])
    with pytest.raises(ValueError, match="repeated"):
        gm.condition([1, 1], [1.0, 2.0])
    with pytest.raises(ValueError, match="nothing is left"):
        gm.condition([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="x_observed has 1 values"):
        gm.condition([0, 1], [1.0])
    with pytest.raises(ValueError, match="NaN or infinity"):
        gm.condition([0], [np.nan])


# ------------------------------------------------------------------ out-of-core sources ----
def _write_sources(tmp_path, X):
    """X as .npy, and (when pyarrow is installed) Parquet and CSV files with nulls for NaN."""
    paths = {"npy": str(tmp_path / "x.npy")}
    np.save(paths["npy"], X)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return paths
    cols = {f"f{j}": pa.array([None if np.isnan(v) else float(v) for v in X[:, j]],
                              type=pa.float64()) for j in range(X.shape[1])}
    paths["parquet"] = str(tmp_path / "x.parquet")
    pq.write_table(pa.table(cols), paths["parquet"])
    paths["csv"] = str(tmp_path / "x.csv")
    with open(paths["csv"], "w") as fh:
        fh.write(",".join(cols) + "\n")
        for row in X:
            fh.write(",".join("" if np.isnan(v) else repr(float(v)) for v in row) + "\n")
    return paths


@pytest.mark.parametrize("kind", ("full", "diag"))
def test_file_fit_equals_memory_fit_bit_for_bit(kind, tmp_path):
    """NaN in a .npy, nulls in Parquet/CSV: the file fit (start included) is the in-memory
    fit, bit for bit, and so are the scores read block by block."""
    X, _, _, _, _ = _problem(kind, "mcar", False, n=600)
    kw = dict(covariance_type=kind, missing="marginalize", random_state=0, chunk_size=CHUNK,
              max_iter=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = GaussianMixture(3, **kw).fit(X)
        for fmt, path in _write_sources(tmp_path, X).items():
            f = GaussianMixture(3, **kw).fit(path)
            assert_same_model(mem, f)
            assert_reproducible(mem.score_samples(X), f.score_samples(path), fmt)
            assert f.score(path) == mem.score(X)


def test_file_errors_name_the_chunk_and_row(tmp_path):
    X, _, _, _, _ = _problem("diag", "mcar", False)
    gm = GaussianMixture(2, covariance_type="diag", missing="marginalize", chunk_size=CHUNK)
    bad = X.copy()
    bad[70] = np.nan
    np.save(tmp_path / "a.npy", bad)
    with pytest.raises(ValueError, match=r"every entry missing \(NaN\) in chunk 1 .* row 70"):
        gm.fit(str(tmp_path / "a.npy"))
    bad = X.copy()
    bad[5, 2] = -np.inf
    np.save(tmp_path / "b.npy", bad)
    with pytest.raises(ValueError, match=r"infinity .* in chunk 0 .* row 5"):
        gm.fit(str(tmp_path / "b.npy"))
    bad = np.array(perturbed_problem("diag", 3, 4, 300)[0])
    bad[:, 3] = np.nan
    np.save(tmp_path / "c.npy", bad)
    with pytest.raises(ValueError, match="column 3 of .* has every entry missing"):
        gm.fit(str(tmp_path / "c.npy"))
    # missing="error" keeps today's message for NaN in a file
    with pytest.raises(ValueError, match="NaN or infinity in chunk"):
        GaussianMixture(2, chunk_size=CHUNK).fit(str(tmp_path / "c.npy"))


def test_iter_impute_and_cli_impute_equal_in_memory_impute(tmp_path):
    from fastmix.cli import main
    X, _, _, _, _ = _problem("full", "mcar", False, n=500)
    path = str(tmp_path / "x.npy")
    np.save(path, X)
    assert main(["fit", path, "-k", "3", "--missing", "marginalize", "--seed", "0",
                 "--chunk-rows", str(CHUNK), "-o", str(tmp_path / "m.npz"), "--quiet"]) == 0
    import fastmix
    gm = fastmix.load(str(tmp_path / "m.npz"))
    assert gm.missing == "marginalize"
    want, want_std = gm.impute(X, return_std=True)
    blocks = list(gm.iter_impute(path, return_std=True))
    assert_reproducible(np.concatenate([b[1][0] for b in blocks]), want)
    assert main(["impute", str(tmp_path / "m.npz"), path, "-o", str(tmp_path / "f.npy"),
                 "--std", str(tmp_path / "s.npy"), "--chunk-rows", str(CHUNK),
                 "--quiet"]) == 0
    assert_reproducible(np.load(tmp_path / "f.npy"), want)
    assert_reproducible(np.load(tmp_path / "s.npy"), want_std)
    # an error is one line and leaves no output file
    assert main(["impute", str(tmp_path / "m.npz"), str(tmp_path / "nope.npy"), "-o",
                 str(tmp_path / "g.npy")]) == 1
    assert not (tmp_path / "g.npy").exists()


@pytest.mark.parametrize("kind", ("full", "diag"))
def test_dask_fit_matches_local_fit(kind):
    da = pytest.importorskip("dask.array")
    X, _, _, _, _ = _problem(kind, "mcar", False, n=600)
    kw = dict(covariance_type=kind, missing="marginalize", random_state=0, chunk_size=CHUNK,
              max_iter=6, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = GaussianMixture(3, **kw).fit(X)
        dist = GaussianMixture(3, **kw).fit(da.from_array(X, chunks=(2 * CHUNK, 4)))
    assert_close(dist.means_, local.means_, 1e-12)
    assert_close(dist.covariances_, local.covariances_, 1e-12)
    assert_close(dist.lower_bounds_, local.lower_bounds_, 1e-12)
    Xd = da.from_array(X, chunks=(2 * CHUNK, 4))
    assert_close(dist.score_samples(Xd).compute(), local.score_samples(X), 1e-12)
    bad = X.copy()
    bad[100] = np.nan
    with pytest.raises(ValueError, match="row 100 has every entry missing"):
        GaussianMixture(3, **kw).fit(da.from_array(bad, chunks=(2 * CHUNK, 4)))
    # NaN stays an error with missing="error" (checked by the first pass over the blocks)
    plain = GaussianMixture(3, covariance_type=kind, weights_init=local.weights_,
                            means_init=local.means_, precisions_init=local.precisions_,
                            chunk_size=CHUNK, max_iter=2)
    with pytest.raises(ValueError, match="dask array: NaN or infinity in row"):
        plain.fit(Xd)


def test_impute_of_a_lowrank_model_uses_its_dense_covariances():
    X, _, _, _, _ = _problem("full", "mcar", False)
    lr = GaussianMixture(2, covariance_type="lowrank", n_factors=2, random_state=0,
                         max_iter=5).fit(np.nan_to_num(X))
    full = GaussianMixture(2, weights_init=lr.weights_, means_init=lr.means_,
                           precisions_init=np.linalg.inv(lr.covariances_),
                           max_iter=0).fit(np.nan_to_num(X))
    a, sa = lr.impute(X, return_std=True)
    b, sb = full.impute(X, return_std=True)
    assert_close(a, b, 1e-8)
    assert_close(sa, sb, 1e-8)
