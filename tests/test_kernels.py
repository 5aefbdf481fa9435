"""Parity of every kernel wrapper in ``fastmix.kernels`` against ``tests/reference.py``.

Each kernel runs on float64 and float32 data for the four covariance types, with and without
sample weights, and with chunk sizes that do not divide N.  The reference is float64 on the same
(rounded) data; tolerances depend on the data dtype (``_helpers.RTOL``).
"""
import math

import numpy as np
import pytest

import reference as ref
from _helpers import (RTOL, assert_close, assert_reproducible, gmm_params,
                      perturbed_problem)
from fastmix import kernels
from fastmix._validation import first_nonfinite_row
from fastmix._params import m_step, stats_from_kernel
from fastmix._stats import Stats
from fastmix import em as em_driver
from fastmix.em import e_step_stats, run_em
from fastmix.kernels.cpu._math import exp_nonpos

KINDS = ref.KINDS
DTYPES = [np.float64, np.float32]
N, D, K = 503, 5, 4          # N prime: no chunk size below divides it
CHUNKS = [7, 100, N]


def make_problem(kind, seed=0):
    return perturbed_problem(kind, K, D, N, seed)


@pytest.fixture(scope="module", params=KINDS)
def problem(request):
    return (request.param,) + make_problem(request.param, seed=KINDS.index(request.param))


def _check_stats(out, expected, rtol, what):
    nk, s1, s2, ll, ws = out
    enk, es1, es2, ell, ews = expected
    for name, a in zip(("nk", "s1", "s2"), (nk, s1, s2)):
        assert a.dtype == np.float64, f"{what}: {name} is {a.dtype}, statistics must be float64"
    assert_close(nk, enk, rtol, f"{what}: nk")
    assert_close(s1, es1, rtol, f"{what}: s1")
    assert_close(s2, es2, rtol, f"{what}: s2")
    assert_close(ll, ell, rtol, f"{what}: ll")
    assert_close(ws, ews, 1e-14, f"{what}: ws")


# ------------------------------------------------------------------------- fused E-step -----
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_estep_stats_parity(problem, dtype, chunk, weighted):
    kind, X64, sw, weights, means, covs = problem
    X = X64.astype(dtype)
    sw = sw if weighted else None
    kp = gmm_params(weights, means, covs, kind).kernel_params(X.dtype)
    out = kernels.estep_stats(X, sw, kp, chunk)
    expected = ref.estep_stats(X.astype(np.float64), sw, weights, means, covs, kind)
    _check_stats(out, expected, RTOL[X.dtype], f"{kind}/{X.dtype}/chunk={chunk}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_kernel_params_layout(problem, dtype):
    """KernelParams: densities' parameters in the data dtype, centres float64, tied centre
    g = weights @ means."""
    kind, X64, sw, weights, means, covs = problem
    kp = gmm_params(weights, means, covs, kind).kernel_params(dtype)
    assert kp.kind == kernels.KIND_CODES[kind]
    for a in (kp.means, kp.pc, kp.tmeans, kp.g):
        assert a.dtype == np.dtype(dtype)
    for a in (kp.lconst, kp.means64, kp.g64):
        assert a.dtype == np.float64
    assert kp.pc.shape == kernels.s2_shape(kp.kind, K, D)
    np.testing.assert_array_equal(kp.means64, means)
    if kind == "tied":
        assert_close(kp.g64, weights @ means, 1e-15)
    # lconst = log pi + log det U - D/2 log 2 pi, and log det U = -1/2 log det Sigma
    dense = ref.component_covariances(covs, kind, K, D)
    logdet = np.array([np.linalg.slogdet(c)[1] for c in dense])
    assert_close(kp.lconst, np.log(weights) - 0.5 * logdet - 0.5 * D * math.log(2 * math.pi),
                 1e-12)


def test_zero_weight_rows_are_ignored(problem):
    """Rows of weight 0 contribute nothing: same statistics as dropping them."""
    kind, X, sw, weights, means, covs = problem
    kp = gmm_params(weights, means, covs, kind).kernel_params(X.dtype)
    keep = sw > 0
    assert not keep.all()
    a = kernels.estep_stats(X, sw, kp, 64)
    b = kernels.estep_stats(np.ascontiguousarray(X[keep]), sw[keep], kp, 64)
    _check_stats(a, b, 1e-13, f"{kind}: zero weights")


def test_unit_weights_equal_no_weights(problem):
    kind, X, sw, weights, means, covs = problem
    kp = gmm_params(weights, means, covs, kind).kernel_params(X.dtype)
    a = kernels.estep_stats(X, None, kp, 100)
    b = kernels.estep_stats(X, np.ones(N), kp, 100)
    for x, y in zip(a, b):
        assert_reproducible(x, y)


# --------------------------------------------------------------------- given responsibilities
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("chunk", [7, N])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_resp_stats_parity(problem, dtype, chunk, weighted):
    kind, X64, sw, weights, means, covs = problem
    rng = np.random.default_rng(1)
    R = rng.uniform(size=(N, K))
    R[rng.uniform(size=(N, K)) < 0.3] = 0.0       # exact zeros are skipped by the kernel
    R[:, 0] += 1e-3
    R /= R.sum(axis=1, keepdims=True)
    centres = rng.normal(size=(K, D))
    kp = kernels.nearest_params(centres, dtype, kernels.KIND_CODES[kind])
    X = X64.astype(dtype)
    sw = sw if weighted else None
    nk, s1, s2, ll, ws = kernels.resp_stats(X, sw, R, kp, chunk)
    enk, es1, es2 = ref.sufficient_stats(X.astype(np.float64), sw, R, kind, centres, kp.g64)
    # statistics of given responsibilities are computed in float64 from the (exact) data
    # values, so float32 data need no looser tolerance here
    _check_stats((nk, s1, s2, ll, ws), (enk, es1, es2, 0.0, np.sum(sw) if weighted else N),
                 1e-12, f"{kind}/{np.dtype(dtype)}")
    assert ll == 0.0


# ------------------------------------------------------------------------------ k-means -----
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_nearest_stats_parity(problem, dtype, chunk, weighted):
    """k-means statistics (``fastmix.kmeans.hard_stats``, BLAS) against the NumPy reference."""
    from fastmix.kmeans import hard_stats
    kind, X64, sw, weights, means, covs = problem
    X = X64.astype(dtype)
    sw = sw if weighted else None
    kp = kernels.nearest_params(means, X.dtype, kernels.KIND_CODES[kind])
    out = hard_stats(X, sw, kp.means64, kp.kind, kp.g64, chunk,
                     kernels.Accumulator.for_params(kp)).result()
    expected = ref.nearest_stats(X.astype(np.float64), sw, means, kind, kp.g64)
    # distances are float64 in the kernel too: only summation order differs
    _check_stats(out, expected, 1e-12, f"{kind}/{X.dtype}/chunk={chunk}")


@pytest.mark.parametrize("weighted", [False, True])
def test_kmeanspp_step_parity(weighted):
    """The compiled k-means++ step: every candidate's potential against direct distances, the
    lowest kept, the nearest-seed distances and their cumulative sum updated."""
    from fastmix.kmeans import Distances
    rng = np.random.default_rng(2)
    X = rng.normal(loc=50.0, size=(301, 7))
    X[10] = X[200]  # a duplicate of a candidate: its distance is exactly 0
    w = rng.uniform(0.1, 2.0, 301) if weighted else np.ones(301)
    dist = Distances(X, 64)
    mind = ref.sqdist_to(X, X[0]) + rng.uniform(0, 5, 301)
    mind[200] = mind[10] = 1e3  # far from the seeds so far: candidate 200 is the best
    cand = np.array([4, 200, 33])
    want = ref.candidate_potentials(X, w, X[cand], mind)
    Cm = X[cand] - dist.m
    got_mind, cum = mind.copy(), np.empty(301)
    t, pot = kernels.kmeanspp_step(X @ Cm.T, Cm @ dist.m, np.einsum("ij,ij->i", Cm, Cm),
                                   dist.xn, w, got_mind, cum)
    assert t == int(np.argmin(want))
    assert_close(pot, want.min(), 1e-11)
    new = np.minimum(mind, ref.sqdist_to(X, X[cand[t]]))
    assert_close(got_mind, new, 1e-9)
    assert cand[t] == 200 and got_mind[200] == 0.0 and got_mind[10] == 0.0
    assert_close(cum, np.cumsum(w * new), 1e-9)


# ---------------------------------------------------------------------------- log_prob -----
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_log_prob_parity(problem, dtype, chunk):
    kind, X64, sw, weights, means, covs = problem
    X = X64.astype(dtype)
    kp = gmm_params(weights, means, covs, kind).kernel_params(X.dtype)
    logp, labels, resp = kernels.log_prob(X, kp, chunk, want_resp=True)
    elogp, eresp = ref.log_prob_resp(X.astype(np.float64), weights, means, covs, kind)
    rtol = RTOL[X.dtype]
    assert logp.dtype == np.float64 and resp.dtype == np.float64 and labels.dtype == np.int64
    assert_close(logp, elogp, rtol, "log p(x)")
    np.testing.assert_allclose(resp, eresp, rtol=0, atol=1e-12 if dtype == np.float64 else 1e-4)
    # labels: argmax of the weighted log-density, wherever the top two are not (nearly) tied
    wlp = ref.weighted_log_prob(X.astype(np.float64), weights, means, covs, kind)
    top2 = np.sort(wlp, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 10 * rtol * np.abs(top2[:, 1]).max()
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(labels[clear], wlp.argmax(axis=1)[clear])
    # without responsibilities: same log p and labels, resp None.  (Not compared bit for bit:
    # see test_determinism.py::test_kernels_bit_identical_on_one_and_two_threads.)
    logp2, labels2, none = kernels.log_prob(X, kp, chunk)
    assert none is None
    np.testing.assert_allclose(logp2, logp, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(labels2[clear], labels[clear])


# ------------------------------------------------------------------ first_nonfinite_row -----
# (input validation; plain NumPy in fastmix/_validation.py, block = rows inspected at a time)
@pytest.mark.parametrize("chunk", [1, 7, 100, 65536])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, None], ids=["nan", "inf", "-inf", "none"])
def test_first_nonfinite_row(dtype, bad, chunk):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(250, 3)).astype(dtype)
    if bad is None:
        assert first_nonfinite_row(X, chunk) == -1
        return
    for first, later in [(0, None), (249, None), (6, 7), (106, 107), (13, 200), (99, 100)]:
        Y = X.copy()
        Y[first, 2] = bad
        if later is not None:
            Y[later, 0] = bad
        assert first_nonfinite_row(Y, chunk) == first, (first, later)


def test_first_nonfinite_row_overflowing_row_sum_is_not_flagged():
    X = np.full((5, 2), 1e308)  # finite, but each row sums to inf
    assert first_nonfinite_row(X) == -1
    X[3, 0] = np.nan
    assert first_nonfinite_row(X) == 3


def test_first_nonfinite_row_default_chunk():
    X = np.zeros((10, 2))
    X[4, 1] = np.nan
    X[8, 0] = np.inf
    assert first_nonfinite_row(X) == 4


# --------------------------------------------------------------------------- exp_nonpos -----
def test_exp_nonpos():
    rng = np.random.default_rng(5)
    t = np.concatenate([
        np.linspace(-700.0, 0.0, 20001),
        -rng.exponential(30.0, size=5000).clip(max=700.0),
        -np.arange(0, 1011) * math.log(2) / 1.444,       # near the range-reduction boundaries
        np.array([0.0, -0.0, -1e-300, -5e-324, -1e-17, -0.5 * math.log(2), -700.0]),
    ])
    t = t[t >= -700.0]
    got = np.array([exp_nonpos(float(v)) for v in t])
    want = np.exp(t)
    rel = np.abs(got - want) / want
    assert rel.max() < 1e-15, (t[rel.argmax()], rel.max())
    assert exp_nonpos(0.0) == 1.0


# --------------------------------------------------------------------- responsibility cut ---
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_responsibility_cut(dtype):
    """Two 1-D unit-variance components at 0 and 1 with equal weights: for a row x the second
    component's log-density is (x - 1/2) above the first's, so rows x = 1/2 + t probe every gap
    t.  Gaps beyond the cut (40 in float64, 20 in float32) give responsibility exactly 0; every
    responsibility equals the log-sum-exp reference within ~1e-15 (the cut drops < 4.2e-18)."""
    cut = -kernels.CUT[np.dtype(dtype)]
    gaps = np.concatenate([np.linspace(0.0, 60.0, 241), [cut - 1e-3, cut + 1e-3]])
    X = np.concatenate([0.5 + gaps, 0.5 - gaps])[:, None].astype(dtype)
    weights, means, var = np.array([0.5, 0.5]), np.array([[0.0], [1.0]]), np.array([1.0, 1.0])
    kp = gmm_params(weights, means, var, "spherical").kernel_params(X.dtype)
    _, _, resp = kernels.log_prob(X, kp, 64, want_resp=True)
    _, eresp = ref.log_prob_resp(X.astype(np.float64), weights, means, var, "spherical")
    gap = np.abs(X[:, 0].astype(np.float64) - 0.5)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    beyond = gap > cut + 1e-4
    assert beyond.any() and (~beyond).any()
    assert np.all(resp[beyond].min(axis=1) == 0.0)
    assert np.all(resp[beyond].max(axis=1) == 1.0)
    assert np.all(resp[gap < cut - 1e-2] > 0)
    if dtype == np.float64:
        np.testing.assert_allclose(resp, eresp, rtol=0, atol=2e-15)
    else:  # densities in float32: errors of float32 log-densities, not of the cut
        np.testing.assert_allclose(resp, eresp, rtol=0, atol=1e-6)
    # the E-step statistics use the same cut: nk equals the sum of the reference's columns
    nk, s1, _, _, _ = kernels.estep_stats(X, None, kp, 64)
    assert_close(nk, eresp.sum(axis=0), 1e-13 if dtype == np.float64 else 1e-6)



@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_diag_gemm_pass_odd_k_and_cut(dtype):
    """``pass_diag`` (the shared-centre GEMM pass) takes its exponentials two components at a
    time: an odd K (its last component paired with itself) against the reference, with
    chunks that leave short blocks; and the cut on both members of a pair: 1-D rows far on
    one side of two unit components give the other exactly nk = 0 (the reference's
    responsibilities there are below exp(cut), not zero)."""
    rng = np.random.default_rng(3)
    K5, D3 = 5, 3
    means = rng.normal(scale=0.5, size=(K5, D3))
    var = rng.uniform(0.5, 2.0, size=(K5, D3))
    weights = rng.dirichlet(np.ones(K5))
    X = (means[rng.integers(K5, size=301)] + rng.standard_normal((301, D3))).astype(dtype)
    kp = gmm_params(weights, means, var, "diag").kernel_params(X.dtype)
    assert kp.g64.shape[0] == D3  # the GEMM pass, not the row loop
    out = kernels.estep_stats(X, None, kp, 100)
    expected = ref.estep_stats(X.astype(np.float64), None, weights, means, var, "diag")
    _check_stats(out, expected, RTOL[X.dtype], f"diag/{X.dtype}/K=5")
    cut = -kernels.CUT[np.dtype(dtype)]
    gaps = np.linspace(cut + 1.0, cut + 20.0, 50)
    w2, m2, v2 = np.array([0.5, 0.5]), np.array([[0.0], [1.0]]), np.ones((2, 1))
    kp2 = gmm_params(w2, m2, v2, "diag").kernel_params(np.dtype(dtype))
    assert kp2.g64.shape[0] == 1
    for side, far in ((-1.0, 1), (1.0, 0)):  # rows favour component 1 - far
        Xs = (0.5 + side * gaps)[:, None].astype(dtype)
        nk = kernels.estep_stats(Xs, None, kp2, 64)[0]
        assert nk[far] == 0.0 and nk[1 - far] == 50.0, (side, nk)


def test_responsibilities_sum_to_one(problem):
    kind, X, sw, weights, means, covs = problem
    kp = gmm_params(weights, means, covs, kind).kernel_params(X.dtype)
    _, _, resp = kernels.log_prob(X, kp, 100, want_resp=True)
    assert np.all(resp >= 0)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=1e-12)


# ------------------------------------------------------------- driver glue: Stats, M-step ----
def test_e_step_stats_and_merge(problem):
    """em.e_step_stats wraps the kernel in Stats; Stats of two row ranges add up to the whole."""
    kind, X, sw, weights, means, covs = problem
    params = gmm_params(weights, means, covs, kind)
    whole = e_step_stats(X, sw, params, 64)
    assert isinstance(whole, Stats) and whole.kind == kind
    np.testing.assert_array_equal(whole.centre, means)
    a = e_step_stats(np.ascontiguousarray(X[:200]), sw[:200], params, 64)
    b = e_step_stats(np.ascontiguousarray(X[200:]), sw[200:], params, 64)
    merged = a + b
    assert sum([a, b]) == merged
    for f in ("nk", "s1", "s2"):
        assert_close(getattr(merged, f), getattr(whole, f), 1e-13, f)
    assert_close(merged.ll, whole.ll, 1e-13)
    assert_close(merged.ws, whole.ws, 1e-15)
    assert_close(whole.mean_log_likelihood, whole.ll / sw.sum(), 1e-15)
    with pytest.raises(ValueError):
        a + e_step_stats(X, sw, gmm_params(weights, means + 1.0, covs, kind), 64)


@pytest.mark.parametrize("reg_covar", [0.0, 1e-3])
def test_m_step_parity(problem, reg_covar):
    """fastmix's M-step from centred sums equals sklearn's formulas on the responsibilities."""
    kind, X, sw, weights, means, covs = problem
    params = gmm_params(weights, means, covs, kind)
    new = m_step(e_step_stats(X, sw, params, 100), reg_covar)
    _, resp = ref.log_prob_resp(X, weights, means, covs, kind)
    ew, em_, ec = ref.m_step(X, sw, resp, kind, reg_covar)
    assert_close(new.weights, ew, 1e-10)
    assert_close(new.means, em_, 1e-10)
    assert_close(new.cov.covariances, ec, 1e-10)
    assert_close(new.cov.precisions_cholesky, ref.precisions_cholesky_from_covariances(ec, kind),
                 1e-9)
    assert_close(new.cov.precisions, ref.precisions_from_covariances(ec, kind), 1e-9)


def test_m_step_from_nearest_stats(problem):
    """Initialisation path: stats_from_kernel on k-means statistics, then the M-step."""
    kind, X, sw, weights, means, covs = problem
    from fastmix.kmeans import hard_stats
    kp = kernels.nearest_params(means, X.dtype, kernels.KIND_CODES[kind])
    st = stats_from_kernel(kind, hard_stats(X, sw, kp.means64, kp.kind, kp.g64, 50,
                                            kernels.Accumulator.for_params(kp)).result(), kp)
    new = m_step(st, 1e-6)
    d2 = ((X[:, None, :] - means[None]) ** 2).sum(axis=2)
    R = np.eye(K)[d2.argmin(axis=1)]
    ew, em_, ec = ref.m_step(X, sw, R, kind, 1e-6)
    assert_close(new.weights, ew, 1e-12)
    assert_close(new.means, em_, 1e-12)
    assert_close(new.cov.covariances, ec, 1e-10)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_run_em_parity(problem, weighted):
    kind, X, sw, weights, means, covs = problem
    sw = sw if weighted else None
    res = run_em(X, sw, gmm_params(weights, means, covs, kind), reg_covar=1e-4, tol=0.0,
                 max_iter=8, chunk_rows=100)
    exp = ref.em(X, sw, weights, means, covs, kind, 1e-4, 8)
    assert res.n_iter == 8 and not res.converged
    assert_close(res.lower_bounds, exp["lower_bounds"], 1e-10)
    assert_close(res.lower_bound, exp["lower_bounds"][-1], 1e-10)
    assert_close(res.params.weights, exp["weights"], 1e-8)
    assert_close(res.params.means, exp["means"], 1e-8)
    assert_close(res.params.cov.covariances, exp["covariances"], 1e-8)


def test_run_em_float32_close_to_float64(problem):
    kind, X, sw, weights, means, covs = problem
    params = gmm_params(weights, means, covs, kind)
    r64 = run_em(X, sw, params, reg_covar=1e-4, tol=0.0, max_iter=5, chunk_rows=100)
    r32 = run_em(X.astype(np.float32), sw, params, reg_covar=1e-4, tol=0.0, max_iter=5,
                 chunk_rows=100)
    assert_close(r32.lower_bounds, r64.lower_bounds, 1e-4)
    assert_close(r32.params.means, r64.params.means, 1e-3)
    assert_close(r32.params.cov.covariances, r64.params.cov.covariances, 1e-3)


# ------------------------------------------ tied kind: the shared second moment reused -----
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_tied_pass_without_scatter(dtype):
    """``estep_stats(scatter=False)`` leaves the tied kind's shared second moment out (s2 = 0)
    and every other statistic exactly as the full pass computes it."""
    X64, sw, weights, means, covs = make_problem("tied", seed=5)
    X = X64.astype(dtype)
    kp = gmm_params(weights, means, covs, "tied").kernel_params(X.dtype)
    full = kernels.estep_stats(X, sw, kp, 100)
    part = kernels.estep_stats(X, sw, kp, 100, scatter=False)
    assert not np.any(part[2])
    assert np.any(full[2])
    for a, b in zip(full[:2] + full[3:], part[:2] + part[3:]):
        np.testing.assert_array_equal(a, b)


def _tied_passes(monkeypatch):
    """Record the ``scatter`` argument of every tied E-step pass."""
    seen = []
    inner = kernels.estep_stats

    def spy(X, sw, kp, chunk_rows, acc=None, scatter=True):
        seen.append(scatter)
        return inner(X, sw, kp, chunk_rows, acc, scatter)
    monkeypatch.setattr(kernels, "estep_stats", spy)
    return seen


@pytest.mark.parametrize("offset", [0.0, 1e4], ids=["centred", "offset-1e4"])
@pytest.mark.parametrize("start,passes", [(0.2, [True] + [False] * 7),
                                          (3.0, [True, True] + [False] * 6)],
                         ids=["start-near", "start-far"])
def test_tied_em_reuses_the_shared_second_moment(monkeypatch, offset, start, passes):
    """EM computes the tied kind's shared second moment in its first pass, about the starting
    weighted mean of the means g, and reuses it in later passes, moved to their centre (the
    data's mean, where every M-step puts g) while the move loses no precision
    (``em.TIED_SCATTER_LOSS``): from a start 3 standard deviations away the move to the mean
    would cancel, and the second pass computes it again.
    The fit equals the one that computes it in every pass, and the plain NumPy EM."""
    X, sw, weights, means, covs = make_problem("tied", seed=6)
    mean = sw @ X / sw.sum()
    sd = np.sqrt(sw @ (X - mean) ** 2 / sw.sum())
    means = means + (mean + start * sd - weights @ means) + offset  # g = mean + start sd
    X = X + offset
    params = gmm_params(weights, means, covs, "tied")
    seen = _tied_passes(monkeypatch)
    res = run_em(X, sw, params, reg_covar=1e-4, tol=0.0, max_iter=8, chunk_rows=100)
    assert seen == passes
    monkeypatch.setattr(em_driver, "TIED_SCATTER_LOSS", -1.0)  # never reused
    seen.clear()
    every = run_em(X, sw, params, reg_covar=1e-4, tol=0.0, max_iter=8, chunk_rows=100)
    assert seen == [True] * 8
    assert_close(res.params.cov.covariances, every.params.cov.covariances, 1e-11)
    assert_close(res.lower_bounds, every.lower_bounds, 1e-13)
    exp = ref.em(X, sw, weights, means, covs, "tied", 1e-4, 8)
    assert_close(res.params.cov.covariances, exp["covariances"], 1e-8)


def test_tied_scatter_moved_to_the_new_centre():
    """A kept shared second moment is moved exactly to a new centre (``Stats.recentred``) --
    half a standard deviation towards the data's mean from a centre 3 away -- and not used
    where the move would cancel (to the mean itself: ``em.TIED_SCATTER_LOSS``)."""
    X, sw, weights, means, covs = make_problem("tied", seed=7)
    mean = sw @ X / sw.sum()
    sd = np.sqrt(sw @ (X - mean) ** 2 / sw.sum())
    means = means + (mean + 3.0 * sd - weights @ means)  # g = the data's mean + 3 sd
    kp0 = gmm_params(weights, means, covs, "tied").kernel_params(np.float64)
    cache = {}
    em_driver.keep_scatter(stats_from_kernel("tied", kernels.estep_stats(X, sw, kp0, 100), kp0),
                           cache, None)
    g1 = mean + 2.5 * sd
    U = X - g1
    assert_close(em_driver.known_scatter(cache, kp0._replace(g64=g1)), (sw[:, None] * U).T @ U,
                 1e-13)
    assert em_driver.known_scatter(cache, kp0._replace(g64=mean)) is None

# ------------------------------------------------- full kind: grouped log-density GEMMs -----
@pytest.mark.parametrize("shared", [True, False], ids=["shared-centre", "per-component"])
@pytest.mark.parametrize("K,D", [(40, 16), (5, 100), (3, 7)])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_full_grouped_log_densities(dtype, K, D, shared):
    """The full kind evaluates its log-densities as one GEMM per group of components sharing a
    centre (kernels._full_layout): (40, 16) makes groups of 14, 14 and 12 components, (5, 100)
    groups of 2, 2 and 1, (3, 7) one group; without a shared centre every component is its own
    group.  N = 300 rows = two full blocks of 128 and a partial one."""
    rng = np.random.default_rng(K * D)
    spread = 3.0 if shared else (30.0 if dtype == np.float32 else 1000.0)
    w, mu, cov = ref.random_model(rng, "full", K, D, spread=spread)
    X64 = ref.sample_model(rng, w, mu, cov, "full", 300)
    X = X64.astype(dtype)
    means = mu + 0.3 * rng.normal(size=mu.shape)
    covs = ref.random_covariances(rng, "full", K, D, scale=1.5)
    kp = gmm_params(w, means, covs, "full").kernel_params(X.dtype)
    assert (kp.g64.shape[0] == D) == shared, "the test does not reach the path it names"
    sw = rng.uniform(0.0, 2.0, size=X.shape[0])
    Xr = X.astype(np.float64)
    rtol = RTOL[X.dtype]
    _check_stats(kernels.estep_stats(X, sw, kp, 128), ref.estep_stats(Xr, sw, w, means, covs, "full"),
                 rtol, f"full K={K} D={D} {X.dtype}")
    logp, labels, resp = kernels.log_prob(X, kp, 128, want_resp=True)
    elogp, eresp = ref.log_prob_resp(Xr, w, means, covs, "full")
    assert_close(logp, elogp, rtol, "log p(x)")
    np.testing.assert_allclose(resp, eresp, rtol=0, atol=1e-10 if dtype == np.float64 else 1e-3)


def _run_child(code, env=None):
    """Run ``code`` in a fresh interpreter (its own Numba dispatchers, environment ``env`` or
    this one's); it must succeed."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr
    return out


def test_full_fit_compiles_one_pass_signature():
    """A first full-covariance fit compiles ``pass_full`` once per data dtype: every array the
    layout hands it is writeable (a read-only broadcast view of the shared centre once made a
    second signature and doubled a first float32 fit's compile time, 6 -> 10 s)."""
    code = (
        "import numpy as np, fastmix\n"
        "from fastmix.kernels.cpu import estep\n"
        "rng = np.random.default_rng(0)\n"
        "X = (rng.normal(size=(3000, 16)) + rng.integers(0, 16, 3000)[:, None])"
        ".astype('float32')\n"
        "fastmix.GaussianMixture(16, covariance_type='full', random_state=0, max_iter=5).fit(X)\n"
        "print(len(estep.pass_full.signatures))\n")
    out = _run_child(code)
    assert out.stdout.strip().splitlines()[-1] == "1", out.stdout


@pytest.mark.parametrize("cov, sph", [("diag", "none"), ("spherical", "array")])
def test_default_fit_compiles_only_the_estep_code(cov, sph):
    """A default float64 diagonal or spherical fit compiles ``pass_diag`` once, with ``R``
    (given responsibilities) and ``G`` (the float32-only statistics operand) typed None: Numba
    then prunes their branches, ~0.2-0.3 s of the first fit's compile (see
    ``cpu_estep.ESTEP``).  Passing an empty array instead (as before) would type them as arrays
    and compile both.  ``sph`` is None for diagonal factors (the spherical branches are pruned)
    and an array for spherical ones."""
    code = (
        "import inspect, numpy as np, fastmix\n"
        "from fastmix.kernels.cpu import estep\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.normal(size=(3000, 8)) + rng.integers(0, 4, 3000)[:, None]\n"
        f"fastmix.GaussianMixture(4, covariance_type={cov!r}, random_state=0,\n"
        "                        max_iter=5).fit(X)\n"
        "names = list(inspect.signature(estep.pass_diag.py_func).parameters)\n"
        "sigs = estep.pass_diag.signatures\n"
        "print(len(sigs), str(sigs[0][names.index('R')]), str(sigs[0][names.index('G')]),\n"
        "      str(sigs[0][names.index('sph')]).split('(')[0])\n")
    out = _run_child(code)
    assert out.stdout.strip().splitlines()[-1] == f"1 none none {sph}", out.stdout


def test_diag_scoring_compiles_one_function():
    """A first diagonal ``predict`` compiles ``log_prob_diag`` alone: its transposes and scratch
    come from the caller and its per-row helper is inlined.  As separately compiled helpers
    (``_transposed`` with its ``np.empty`` calls, ``_logdens_diag``) they cost ~0.5 s of the
    first ``predict``.  Caching off in the child, so every dispatcher it uses compiles there."""
    code = (
        "import numpy as np\n"
        "from fastmix import kernels\n"
        "from fastmix._params import DiagCovariance, GMMParams\n"
        "from fastmix.kernels.cpu import estep\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.normal(size=(500, 3))\n"
        "params = GMMParams(np.full(4, 0.25), rng.normal(size=(4, 3)),\n"
        "                   DiagCovariance.from_covariances(np.ones((4, 3))))\n"
        "kernels.log_prob(X, params.kernel_params(X.dtype), 128, want_resp=True)\n"
        "print(len(estep.log_prob_diag.signatures), len(estep._transposed.signatures),\n"
        "      len(estep._logdens_diag.signatures))\n")
    import os
    env = dict(os.environ, FASTMIX_NUMBA_CACHE="0")
    out = _run_child(code, env)
    assert out.stdout.strip().splitlines()[-1] == "1 0 0", out.stdout
