"""The full pass about a shared centre (``cpu_estep.pass_full_expanded``): its single-precision
second moments (float32 data) and its expanded log-densities.

With a shared centre g, float32 data accumulate ``R^T [u_i u_j, u_i]`` (u = x - g) in one
float32 GEMM per block of FULL_BLOCK rows, added into float64 chunk totals and re-centred on
each mean in float64.  Re-centring cancels: the covariance's relative error is about
``(1 + maha2) * 2^-24 * (sqrt(B / 3) + 3)`` for one block (maha2 = the largest squared
Mahalanobis distance of a mean from g; sqrt(B / 3) the float32 summation over B rows, 3 the
roundings of r, u and u_i u_j), falling as 1/sqrt(blocks).  The facade keeps the float32 path
only while maha2 <= ``kernels.FULL_F32_STATS_MAX`` and runs the per-component float64 path
beyond it.  Reference: ``tests/reference.py`` in float64 on the same rounded data.
"""
import math

import numpy as np
import pytest

import reference as ref
from _helpers import gmm_params
from fastmix import kernels
from fastmix.kernels.cpu.estep import FULL_BLOCK


def _problem(K, D, N, spread, offset, seed):
    """Overlapping components (dense responsibilities) around ``offset`` (every coordinate)."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(K, D)) * spread
    A = rng.normal(size=(K, D, D)) * 0.05 + np.eye(D)
    covs = np.einsum("kij,klj->kil", A, A)
    w = np.full(K, 1.0 / K)
    lab = rng.integers(0, K, N)
    chol = np.linalg.cholesky(covs)
    X = (mu[lab] + np.einsum("nij,nj->ni", chol[lab], rng.normal(size=(N, D))) + offset)
    return X.astype(np.float32), w, mu + offset, covs


def _maha2_max(kp):
    z = np.einsum("ka,kae->ke", kp.means64 - kp.g64, kp.pc.astype(np.float64))
    return float(np.max(np.sum(z * z, axis=1)))


def _cov_error(out, expected):
    """Largest |C - C_ref|_ij / sqrt(C_ref_ii C_ref_jj) over components (C = s2 / nk)."""
    nk, s1, s2 = out[:3]
    enk, es1, es2 = expected[:3]
    C, E = s2 / nk[:, None, None], es2 / enk[:, None, None]
    dg = np.sqrt(np.einsum("kii->ki", E))
    return float(np.max(np.abs(C - E) / (dg[:, :, None] * dg[:, None, :])))


@pytest.mark.parametrize("offset", [0.0, 1e3], ids=["centred", "offset-1e3"])
def test_float32_shared_second_moments_within_the_error_bound(offset):
    """Dense responsibilities, maha2 ~ 30: the float32 GEMM path runs and the covariances
    stay within the bound of the module docstring (one chunk of 12 blocks: the single-block
    bound, not divided by sqrt(blocks)); a large common offset is removed by the centre in
    float64 and costs nothing."""
    K, D, N = 6, 8, 12 * FULL_BLOCK
    X, w, means, covs = _problem(K, D, N, spread=1.8, offset=offset, seed=5)
    kp = gmm_params(w, means, covs, "full").kernel_params(np.float32)
    m2 = _maha2_max(kp)
    assert 10.0 < m2 <= kernels.FULL_F32_STATS_MAX
    assert kernels._full_stats_centre(kp, np.float32).shape[0] == D, "not the shared path"
    resp = kernels.log_prob(X, kp, N, want_resp=True)[2]
    assert np.mean(resp > 0) > 0.5, "responsibilities too sparse for the shared GEMM"
    out = kernels.estep_stats(X, None, kp, N)
    expected = ref.estep_stats(X.astype(np.float64), None, w, means, covs, "full")
    bound = (1.0 + m2) * 2.0**-24 * (math.sqrt(FULL_BLOCK / 3) + 3)
    err = _cov_error(out, expected)
    assert err < bound, (err, bound)  # measured: f32 9.1e-6 (offset 1.3e-5), f64 1.8e-14
    # the means: s1 = R^T u + nk g, an error of ~2^-24 (|mu - g| + sigma) each
    dg = np.sqrt(np.einsum("kii->ki", covs))
    merr = np.abs(out[1] / out[0][:, None] - expected[1] / expected[0][:, None]) / dg
    assert merr.max() < (1.0 + math.sqrt(m2)) * 2.0**-24 * (math.sqrt(FULL_BLOCK / 3) + 3)
    np.testing.assert_allclose(out[0], expected[0], rtol=1e-5)


def test_float32_far_means_take_the_float64_path():
    """A narrow component far from the shared centre in its own metric (maha2 ~ 400, above
    FULL_F32_STATS_MAX) while the responsibilities stay dense: the per-component float64 path
    runs, and the narrow component's covariance keeps float32-level accuracy that the float32
    GEMM (relative error ~ maha2 * 2^-24 * sqrt(B / 3)) would not give."""
    rng = np.random.default_rng(7)
    D, N = 2, 8 * FULL_BLOCK
    means = np.array([[0.0, 0.0], [0.2, 0.0]])
    covs = np.array([np.eye(D) * 1.0, np.eye(D) * 2.5e-5])
    w = np.array([0.5, 0.5])
    lab = rng.integers(0, 2, N)
    X64 = means[lab] + rng.normal(size=(N, D)) * np.sqrt(covs[lab, 0, 0])[:, None]
    X = X64.astype(np.float32)
    kp = gmm_params(w, means, covs, "full").kernel_params(np.float32)
    out = kernels.estep_stats(X, None, kp, N)
    expected = ref.estep_stats(X.astype(np.float64), None, w, means, covs, "full")
    assert _cov_error(out, expected) < 2e-6  # 1.9e-5 through the float32 GEMM (measured)
    assert kp.g64.shape[0] == D and _maha2_max(kp) > kernels.FULL_F32_STATS_MAX
    assert kernels._full_stats_centre(kp, np.float32).shape[0] == 0


def _row_log_densities(X, kp):
    """log p(x) of each row as the E-step pass evaluates it: ``ll`` of a one-row pass."""
    return np.array([kernels.estep_stats(X[n:n + 1], None, kp, 1)[3] for n in range(len(X))])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("offset", [0.0, 1e3], ids=["centred", "offset-1e3"])
def test_expanded_log_densities_within_the_error_bound(dtype, offset):
    """With a shared centre the full pass (``pass_full_expanded``) evaluates each log-density
    as the quadratic form expanded around g, ``cst_k + WQ_k . [u_i u_j, u_i]``: rounding the
    terms of size ~maha2 costs about (1 + maha2) 2^-24 sqrt(ncol) of a float32 log-density
    (float64: 2^-53).  Per row, against the float64 reference on the same rounded data, at
    maha2 close to the float32 gate; a common offset of 1e3 is removed by g in float64."""
    K, D, N = 6, 8, 60
    X, w, means, covs = _problem(K, D, N, spread=3.4, offset=offset, seed=11)
    X = X.astype(dtype)
    kp = gmm_params(w, means, covs, "full").kernel_params(X.dtype)
    m2 = _maha2_max(kp)
    assert 64.0 < m2 <= kernels.FULL_F32_STATS_MAX, m2
    assert kernels._full_stats_centre(kp, X.dtype).shape[0] == D, "not the expanded pass"
    got = _row_log_densities(X, kp)
    want = ref.log_prob_resp(X.astype(np.float64), w, means, covs, "full")[0]
    eps = 2.0**-24 if dtype == np.float32 else 2.0**-53
    ncol = D * (D + 3) // 2
    bound = (1.0 + m2) * eps * math.sqrt(ncol)
    err = np.max(np.abs(got - want))
    assert err < bound, (err, bound)  # measured: f32 9.1e-6 (offset 1.3e-5), f64 1.8e-14


def _diag_problem(kind, K, D, N, spread, offset, seed):
    """Overlapping diagonal (or spherical) components around ``offset``."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(K, D)) * spread
    sd = rng.uniform(0.8, 1.25, size=(K, D) if kind == "diag" else (K, 1))
    lab = rng.integers(0, K, N)
    X = mu[lab] + sd[lab] * rng.normal(size=(N, D)) + offset
    covs = sd**2 if kind == "diag" else sd[:, 0] ** 2
    return X.astype(np.float32), np.full(K, 1.0 / K), mu + offset, covs


def _diag_f32_gate(kp, kind):
    from fastmix.kernels import SPHERICAL, _as_diag
    if kind == "spherical":
        pc, g, _ = _as_diag(kp, kernels.ESTEP, np.float32, native=True)
    else:
        pc, g = kp.pc, kp.g
    g64 = g.astype(np.float64)
    z = (kp.means64 - g64) * pc[:, 0, :].astype(np.float64)
    assert kp.kind in (kernels.DIAG, SPHERICAL)
    return float(np.max(np.sum(z * z, axis=1))), kernels._diag_f32_stats(kp.means64, pc, g64)


@pytest.mark.parametrize("kind", ["diag", "spherical"])
@pytest.mark.parametrize("offset", [0.0, 1e3], ids=["centred", "offset-1e3"])
def test_diag_float32_statistics_within_the_error_bound(kind, offset):
    """Float32 diagonal/spherical data with every mean within maha2 <= 128 of the shared
    centre: ``pass_diag`` sums ``R^T [quad(u), u]`` in one single-precision GEMM per block of
    DIAG_BLOCK rows and re-centres in float64; the variances and means stay within the bound
    (1 + maha2) 2^-24 (sqrt(B / 3) + 3) of one block (one chunk of 6 blocks), also with a
    common offset of 1e3 (removed by the centre, the float32 value widened)."""
    from fastmix.kernels.cpu.estep import DIAG_BLOCK
    K, D, N = 5, 6, 6 * DIAG_BLOCK
    X, w, means, covs = _diag_problem(kind, K, D, N, spread=1.5, offset=offset, seed=3)
    kp = gmm_params(w, means, covs, kind).kernel_params(np.float32)
    m2, f32s = _diag_f32_gate(kp, kind)
    assert 5.0 < m2 <= kernels.FULL_F32_STATS_MAX and f32s, (m2, f32s)
    out = kernels.estep_stats(X, None, kp, N)
    expected = ref.estep_stats(X.astype(np.float64), None, w, means, covs, kind)
    B = DIAG_BLOCK
    bound = (1.0 + m2) * 2.0**-24 * (math.sqrt(B / 3) + 3)
    var = out[2].reshape(K, -1) / out[0][:, None]
    evar = expected[2].reshape(K, -1) / expected[0][:, None]
    assert np.max(np.abs(var / evar - 1)) < bound
    sd = np.sqrt(np.broadcast_to(evar, (K, D)))
    merr = np.abs(out[1] / out[0][:, None] - expected[1] / expected[0][:, None]) / sd
    assert merr.max() < (1.0 + math.sqrt(m2)) * 2.0**-24 * (math.sqrt(B / 3) + 3)
    np.testing.assert_allclose(out[0], expected[0], rtol=1e-5)


def test_diag_float32_far_means_take_the_float64_statistics():
    """A narrow component far from the centre in its own metric (maha2 ~ 400 > 128): the
    float32 diagonal pass sums its statistics in float64 (``G``), keeping the narrow
    component's variance to float32-level accuracy."""
    rng = np.random.default_rng(9)
    D, N = 2, 8 * 256
    means = np.array([[0.0, 0.0], [0.2, 0.0]])
    covs = np.array([[1.0, 1.0], [2.5e-5, 2.5e-5]])
    lab = rng.integers(0, 2, N)
    X = (means[lab] + rng.normal(size=(N, D)) * np.sqrt(covs[lab])).astype(np.float32)
    w = np.array([0.5, 0.5])
    kp = gmm_params(w, means, covs, "diag").kernel_params(np.float32)
    m2, f32s = _diag_f32_gate(kp, "diag")
    assert kp.g64.shape[0] == D and m2 > kernels.FULL_F32_STATS_MAX and not f32s
    out = kernels.estep_stats(X, None, kp, N)
    expected = ref.estep_stats(X.astype(np.float64), None, w, means, covs, "diag")
    var = out[2].reshape(2, -1) / out[0][:, None]
    evar = expected[2].reshape(2, -1) / expected[0][:, None]
    assert np.max(np.abs(var / evar - 1)) < 2e-6
