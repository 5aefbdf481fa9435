"""covariance_type="lowrank" (mixtures of factor analysers / probabilistic PCA): kernel and
M-step against the dense NumPy reference, EM properties, subspace recovery, the drivers it
shares with the other kinds (files, online EM, persistence), bad input."""
import warnings

import numpy as np
import pytest
from scipy import linalg

import fastmix
from fastmix import kernels
from fastmix._params import GMMParams, LowRankCovariance, m_step, stats_from_kernel
from fastmix._stats import Stats

import reference as ref
from _helpers import assert_close


def mfa_data(seed=0, K=3, D=12, q=2, N=3000, spread=5.0):
    rng = np.random.default_rng(seed)
    truth = ref.random_mfa(rng, K, D, q, spread=spread)
    X, labels = ref.sample_mfa(rng, *truth, N)
    return X, labels, truth


def params_of(truth, isotropic=False):
    w, m, W, psi = truth
    if isotropic:
        psi = np.repeat(psi.mean(axis=1, keepdims=True), psi.shape[1], axis=1)
    return GMMParams(w, m, LowRankCovariance(W, psi, isotropic))


# ------------------------------------------------------------------------ kernel parity ---
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-11), (np.float32, 2e-5)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("chunk_rows", [7, 4096])
def test_estep_statistics_match_dense_reference(dtype, tol, weighted, chunk_rows):
    X, _, truth = mfa_data(N=700)
    X = X.astype(dtype)
    sw = np.random.default_rng(1).uniform(0.2, 3.0, X.shape[0]) if weighted else None
    kp = params_of(truth).kernel_params(dtype)
    got = kernels.estep_stats(X, sw, kp, chunk_rows)
    want = ref.mfa_estep_stats(X.astype(np.float64), sw, *truth)
    for g, w, name in zip(got, want, ("nk", "s1", "s2", "ll", "ws")):
        scale = max(np.max(np.abs(w)), 1.0)
        assert np.max(np.abs(np.asarray(g) - w)) <= tol * scale, name


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-11), (np.float32, 1e-4)])
def test_log_prob_and_responsibilities_match_dense_reference(dtype, tol):
    X, _, truth = mfa_data(N=500)
    X = X.astype(dtype)
    logp, labels, resp = kernels.log_prob(X, params_of(truth).kernel_params(dtype), 64, True)
    rlogp, rresp = ref.mfa_log_prob_resp(X.astype(np.float64), *truth)
    assert_close(logp, rlogp, tol)
    assert np.max(np.abs(resp - rresp)) < tol
    np.testing.assert_array_equal(labels, np.argmax(rresp, axis=1))


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-9), (np.float32, 1e-4)])
@pytest.mark.parametrize("isotropic", [False, True])
def test_one_em_step_matches_dense_reference(dtype, tol, isotropic):
    X, _, truth = mfa_data(N=900, seed=2)
    X = X.astype(dtype)
    sw = np.random.default_rng(3).uniform(0.5, 2.0, X.shape[0])
    start = params_of(truth, isotropic)
    kp = start.kernel_params(dtype)
    new = m_step(stats_from_kernel("lowrank", kernels.estep_stats(X, sw, kp, 128), kp),
                 1e-6, (), start)
    w, m, W, psi, _ = ref.mfa_em_step(X.astype(np.float64), sw, start.weights, start.means,
                                      start.cov.loadings, start.cov.noise_variances, 1e-6,
                                      isotropic)
    assert_close(new.weights, w, tol)
    assert_close(new.means, m, tol)
    assert_close(new.cov.loadings, W, tol)
    assert_close(new.cov.noise_variances, psi, tol)
    assert new.cov.isotropic == isotropic


def test_dense_views_match_woodbury():
    _, _, truth = mfa_data()
    cov = params_of(truth).cov
    dense = ref.mfa_covariances(truth[2], truth[3])
    assert_close(cov.covariances, dense, 1e-13)
    assert_close(cov.precisions, np.linalg.inv(dense), 1e-10)
    U = cov.precisions_cholesky
    assert_close(np.einsum("kij,klj->kil", U, U), np.linalg.inv(dense), 1e-10)
    # log det of the precision-Cholesky factor = -1/2 log det Sigma
    assert_close(cov.log_det_chol(3, 12), -0.5 * np.linalg.slogdet(dense)[1], 1e-12)


def test_recentred_statistics_equal_direct_sums():
    """Online EM moves the centre of the statistics: the recentred sums equal the sums about
    the new centre (E[z|x] does not depend on the centre)."""
    X, _, truth = mfa_data(N=400)
    p = params_of(truth)
    kp = p.kernel_params(np.float64)
    st = stats_from_kernel("lowrank", kernels.estep_stats(X, None, kp, 4096), kp)
    new_c = p.means + np.random.default_rng(0).normal(size=p.means.shape)
    moved = st.recentred(new_c, st.gcentre)
    _, resp = ref.mfa_log_prob_resp(X, *truth)
    D = X.shape[1]
    for k in range(p.n_components):
        Ez, _ = ref.mfa_posterior(X, p.means[k], p.cov.loadings[k], p.cov.noise_variances[k])
        Y = X - new_c[k]
        assert_close(moved.s2[k, 0, :D], resp[:, k] @ Y ** 2, 1e-11)
        assert_close(moved.s2[k, 1:, :D], (resp[:, k, None] * Ez).T @ Y, 1e-10)
    np.testing.assert_array_equal(moved.s2[:, 1:, D:], st.s2[:, 1:, D:])


# ---------------------------------------------------------------------- EM, estimator ---
def lowrank(K=3, **kw):
    kw.setdefault("random_state", 0)
    kw.setdefault("n_factors", 2)
    return fastmix.GaussianMixture(K, covariance_type="lowrank", **kw)


@pytest.mark.parametrize("noise", ["diagonal", "isotropic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lower_bound_never_decreases(noise, seed):
    X, _, _ = mfa_data(seed=seed, spread=2.0)  # overlapping: many iterations
    g = lowrank(noise=noise, max_iter=60, tol=0.0, init_params="random").fit(X)
    lbs = np.array(g.lower_bounds_)
    assert len(lbs) == 60
    assert np.all(np.diff(lbs) >= -1e-10 * np.abs(lbs[1:])), np.diff(lbs).min()


def test_whole_fit_matches_dense_reference_em():
    X, _, _ = mfa_data(seed=4, N=800)
    g0 = lowrank(max_iter=0).fit(X)
    state = (g0.weights_, g0.means_, g0.loadings_, g0.noise_variances_)
    lbs = []
    for _ in range(8):
        *state, lb = ref.mfa_em_step(X, None, *state, 1e-6)
        lbs.append(lb)
    # same random_state: the fit starts from g0's parameters
    g = lowrank(max_iter=8, tol=0.0).fit(X)
    assert_close(g.lower_bounds_, lbs, 1e-10)
    assert_close(g.loadings_, state[2], 1e-8)
    assert_close(g.noise_variances_, state[3], 1e-8)


def test_fitted_subspaces_match_the_truth():
    X, _, truth = mfa_data(seed=5, K=3, D=30, q=3, N=20000, spread=6.0)
    g = lowrank(n_factors=3, max_iter=200, tol=1e-8).fit(X)
    for k in range(3):
        j = int(np.argmin(((g.means_ - truth[1][k]) ** 2).sum(axis=1)))
        angles = np.degrees(linalg.subspace_angles(truth[2][k], g.loadings_[j]))
        assert angles.max() < 3.0, angles
        assert_close(g.noise_variances_[j], truth[3][k], 0.25)


def test_full_rank_ppca_approaches_the_full_covariance_fit():
    """q = D - 1 with isotropic noise can represent any covariance: same optimum as "full"."""
    rng = np.random.default_rng(6)
    X = ref.sample_model(rng, *ref.random_model(rng, "full", 2, 5, spread=6.0), "full", 4000)
    full = fastmix.GaussianMixture(2, covariance_type="full", random_state=0, tol=1e-10,
                                   max_iter=500).fit(X)
    ppca = lowrank(2, n_factors=4, noise="isotropic", tol=1e-10, max_iter=3000).fit(X)
    assert abs(ppca.lower_bound_ - full.lower_bound_) < 2e-3
    assert_close(ppca.covariances_, full.covariances_, 0.05)
    # and q = D - 1 with isotropic noise is never better than full (a sub-model)
    assert ppca.lower_bound_ <= full.lower_bound_ + 1e-9


def test_lowrank_beats_diag_and_counts_parameters():
    X, _, _ = mfa_data(seed=7, D=20, q=3, N=6000)
    Xt, _, _ = mfa_data(seed=7, D=20, q=3, N=2000)
    diag = fastmix.GaussianMixture(3, covariance_type="diag", random_state=0).fit(X)
    g = lowrank(n_factors=3).fit(X)
    assert g.score(Xt) > diag.score(Xt) + 1.0
    K, D, q = 3, 20, 3
    assert g._n_parameters() == K * (D * q - q * (q - 1) // 2 + D) + K * D + K - 1
    iso = lowrank(n_factors=3, noise="isotropic").fit(X)
    assert iso._n_parameters() == K * (D * q - q * (q - 1) // 2 + 1) + K * D + K - 1
    assert_close(g.bic(X), -2 * g.score(X) * len(X) + g._n_parameters() * np.log(len(X)), 1e-12)


def test_sample_has_the_model_covariance():
    X, _, _ = mfa_data(K=1, D=6, q=2, N=3000, seed=8)
    g = lowrank(1, n_factors=2).fit(X)
    g.random_state = 1
    S, y = g.sample(200000)
    assert S.shape == (200000, 6) and np.all(y == 0)
    assert_close(np.cov(S.T), g.covariances_[0], 0.03)
    assert_close(S.mean(axis=0), g.means_[0], 0.05)


def test_save_load_predict_proba_float32(tmp_path):
    X, _, _ = mfa_data(seed=9)
    g = lowrank(noise="isotropic").fit(X.astype(np.float32))
    g.save(tmp_path / "m.npz")
    h = fastmix.load(tmp_path / "m.npz")
    assert h.noise == "isotropic" and h.n_factors == 2
    np.testing.assert_array_equal(h.loadings_, g.loadings_)
    np.testing.assert_array_equal(h.score_samples(X), g.score_samples(X))
    P = g.predict_proba(X)
    assert P.shape == (X.shape[0], 3) and np.allclose(P.sum(axis=1), 1.0)
    np.testing.assert_array_equal(g.predict(X), np.argmax(P, axis=1))
    assert "covariances_" not in vars(g)  # dense views are computed on access, not stored


def test_file_fit_is_bit_identical_to_in_memory(tmp_path):
    X, _, _ = mfa_data(seed=10, N=5000)
    np.save(tmp_path / "x.npy", X)
    a = lowrank(chunk_size=512).fit(X)
    b = lowrank(chunk_size=512).fit(str(tmp_path / "x.npy"))
    np.testing.assert_array_equal(a.loadings_, b.loadings_)
    np.testing.assert_array_equal(a.noise_variances_, b.noise_variances_)
    np.testing.assert_array_equal(a.lower_bounds_, b.lower_bounds_)


def test_online_em_and_partial_fit_continue_after_load(tmp_path):
    X, _, _ = mfa_data(seed=11, N=8000, spread=6.0)
    batch = lowrank(tol=1e-8, max_iter=200).fit(X)
    online = lowrank(max_iter=6, batch_size=1000, chunk_size=250).fit(X, algorithm="online")
    assert abs(online.score(X) - batch.score(X)) < 0.05
    g = lowrank()
    for part in np.array_split(X, 8):
        g.partial_fit(part)
    g.save(tmp_path / "p.npz")
    h = fastmix.load(tmp_path / "p.npz")
    g.partial_fit(X[:500])
    h.partial_fit(X[:500])
    np.testing.assert_array_equal(g.loadings_, h.loadings_)


@pytest.mark.parametrize("fixed", ["means", "covariances", "weights"])
def test_fixed_groups(fixed):
    X, _, _ = mfa_data(seed=12)
    g0 = lowrank(max_iter=0).fit(X)
    g = lowrank(max_iter=20, fixed=fixed).fit(X)
    lbs = np.array(g.lower_bounds_)
    assert np.all(np.diff(lbs) >= -1e-10 * np.abs(lbs[1:]))
    if fixed == "means":
        np.testing.assert_array_equal(g.means_, g0.means_)
    elif fixed == "covariances":
        np.testing.assert_array_equal(g.loadings_, g0.loadings_)
    else:
        np.testing.assert_array_equal(g.weights_, g0.weights_)


def test_component_with_fewer_points_than_factors_is_a_documented_fallback():
    rng = np.random.default_rng(13)
    X = np.concatenate([rng.normal(size=(400, 10)), 50.0 + rng.normal(size=(3, 10))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = lowrank(2, n_factors=5, max_iter=20).fit(X)
    assert np.all(np.isfinite(g.loadings_)) and np.all(g.noise_variances_ > 0)
    # the 3-point component still has 5 non-zero loading columns (random complement)
    small = int(np.argmin(g.weights_))
    assert np.all(np.linalg.norm(g.loadings_[small], axis=0) > 0)


def test_large_d_dense_views_warn():
    X = np.random.default_rng(14).normal(size=(50, 1001))
    g = lowrank(1, n_factors=1, max_iter=2).fit(X)
    with pytest.warns(UserWarning, match="materialising dense"):
        assert g.covariances_.shape == (1, 1001, 1001)


def test_randomised_pca_finds_the_leading_directions():
    rng = np.random.default_rng(15)
    V = np.linalg.qr(rng.normal(size=(300, 4)))[0]
    A = rng.normal(size=(2000, 4)) * [20, 10, 5, 3] @ V.T + 0.1 * rng.normal(size=(2000, 300))
    got, s = fastmix.init.leading_directions(A, 4, rng)
    assert got.shape == (300, 4) and np.all(np.diff(s) <= 0)
    assert np.degrees(linalg.subspace_angles(got, V)).max() < 1.0


# ---------------------------------------------------------------------------- bad input ---
@pytest.mark.parametrize("kw, match", [
    (dict(n_factors=12), r"n_factors must be in \[1, n_features - 1\]"),
    (dict(n_factors=0), "n_factors must be an integer >= 1"),
    (dict(n_factors=2.5), "n_factors must be an integer"),
    (dict(noise="full"), "noise must be one of"),
    (dict(loadings_init=np.zeros((3, 12, 3))), r"loadings_init should have shape \(3, 12, 2\)"),
    (dict(loadings_init=np.full((3, 12, 2), np.nan)), "loadings_init contains NaN"),
    (dict(precisions_init=np.ones((3, 12))), "give loadings_init"),
])
def test_bad_parameters(kw, match):
    X, _, _ = mfa_data(N=100)
    with pytest.raises(ValueError, match=match):
        lowrank(**kw).fit(X)


def test_one_feature_is_an_error():
    with pytest.raises(ValueError, match="at least 2 features"):
        lowrank(1, n_factors=None).fit(np.random.default_rng(0).normal(size=(20, 1)))


def test_non_finite_loadings_are_rejected():
    _, _, (w, m, W, psi) = mfa_data()
    W = W.copy()
    W[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        LowRankCovariance(W, psi)
    with pytest.raises(ValueError, match="positive"):
        LowRankCovariance(np.zeros_like(W), -psi)


def test_statistics_of_different_rank_do_not_merge():
    a = Stats("lowrank", np.ones(2), np.zeros((2, 3)), np.zeros((2, 2, 5)), np.zeros((2, 3)),
              np.zeros(3))
    b = Stats("lowrank", np.ones(2), np.zeros((2, 3)), np.zeros((2, 3, 6)), np.zeros((2, 3)),
              np.zeros(3))
    with pytest.raises(ValueError, match="different covariance kinds or shapes"):
        a + b


def test_all_initial_values_given():
    """weights_init + means_init + loadings_init: the noise variances still come from the
    initial clusters (documented); the given values are used as they are."""
    X, _, (w, m, W, psi) = mfa_data(seed=16)
    g = lowrank(weights_init=w, means_init=m, loadings_init=W, max_iter=0).fit(X)
    np.testing.assert_array_equal(g.loadings_, W)
    np.testing.assert_array_equal(g.means_, m)
    np.testing.assert_allclose(g.weights_, w / w.sum())
    assert np.all(g.noise_variances_ > 0)
    assert np.isfinite(lowrank(weights_init=w, means_init=m, loadings_init=W,
                               max_iter=5).fit(X).lower_bound_)
