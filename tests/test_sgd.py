"""SGDGaussianMixture: the driver around the SGD kernels (schedules, grid, estimator API)."""
import warnings

import numpy as np
import pytest

import fastmix
from fastmix import sgd
from fastmix.kernels.cpu import sgd as cpu_sgd

from _helpers import assert_close


def _digits_like(n=1500, D=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.1, 0.9, size=(6, D))
    lab = rng.integers(0, 6, n)
    return np.clip(centres[lab] + rng.normal(0, 0.08, size=(n, D)), 0, 1)


def test_toroidal_smoothing():
    g = sgd.toroidal_smoothing(4, 0.9)
    assert g.shape == (16, 16)
    assert_close(g.sum(axis=1), np.ones(16), 1e-14)
    # wrap-around: component 0 (0,0) is as close to 3 (0,3) as to 1 (0,1)
    assert_close(g[0, 3], g[0, 1], 1e-15)
    assert g[0, 1] > g[0, 2]
    np.testing.assert_array_equal(sgd.toroidal_smoothing(4, 0.0), np.eye(16))


@pytest.mark.parametrize("n,sigma", [(3, 0.8), (4, 0.9), (5, 1.25), (5, 0.3), (6, 0.25),
                                     (8, 0.4), (5, 0.18), (5, 0.01)])
def test_toroidal_smoothing_truncated_like_reference(n, sigma):
    """The driver's smoothing equals the reference's np.roll construction, both truncated by
    the documented rule (unnormalised weights below SMOOTHING_TRUNCATE are exact zeros)."""
    import reference as ref
    g = sgd.toroidal_smoothing(n, sigma)
    want = ref.toroidal_smoothing(n, sigma, sgd.SMOOTHING_TRUNCATE)
    assert_close(g, want, 1e-14)
    np.testing.assert_array_equal(g == 0, want == 0)
    if sigma < 0.19:  # exp(-1 / (2 sigma^2)) < 1e-6: nothing but the self-weight survives
        np.testing.assert_array_equal(g, np.eye(n * n))
    if (n, sigma) == (5, 1.25):
        assert np.all(g > 0)  # the default start on 5 x 5 cuts nothing
    if (n, sigma) == (8, 0.4):  # support: d^2 < 2 sigma^2 ln(1e6) = 4.42 -> d^2 in {0,1,2,4}
        assert np.count_nonzero(g[0]) == 1 + 4 + 4 + 4


@pytest.mark.parametrize("lam", [(1.0, 1.0, 1.0), (0.5, 0.9, 0.7)])
def test_fit_equals_kernel_run_without_annealing(lam):
    """annealing='off', no shuffle: fit is exactly the kernel over the rows in order (distinct
    learning-rate factors pin which one goes where)."""
    X = _digits_like()
    m = fastmix.SGDGaussianMixture(9, annealing="off", shuffle=False, random_state=3,
                                   lambda_pi=lam[0], lambda_mu=lam[1],
                                   lambda_sigma=lam[2]).fit(X)
    rng = np.random.default_rng(3)
    xi = np.full(9, 1 / 9)
    mu = rng.uniform(-0.01, 0.01, size=(9, 16))
    s = np.full((9, 16), np.sqrt(20.0))
    out = np.empty(X.shape[0])
    cpu_sgd.sgd_step_single(X, xi, mu, s, np.eye(9), False, 0.05, *lam, 1e-6, np.sqrt(20.0),
                            out)
    np.testing.assert_array_equal(m.means_, mu)
    assert_close(m.weights_, np.exp(xi - xi.max()) / np.exp(xi - xi.max()).sum(), 1e-12)
    np.testing.assert_array_equal(m.precisions_, s ** 2)
    assert m.n_steps_ == X.shape[0]


def test_partial_fit_continues_the_schedule():
    X = _digits_like(2000)
    a = fastmix.SGDGaussianMixture(9, anneal_window=100, shuffle=False, random_state=1,
                                   n_epochs=1.0).fit(X)
    b = fastmix.SGDGaussianMixture(9, anneal_window=100, random_state=1)
    for i in range(0, 2000, 300):
        b.partial_fit(X[i:i + 300])
    assert_close(b.means_, a.means_, 1e-12)
    assert b.sigma_ == a.sigma_ and b.n_steps_ == a.n_steps_ == 2000


def test_annealing_avoids_degenerate_solutions():
    """The paper's claim on a small problem: with annealing, SGD on the max-component loss
    reaches a far better test log-likelihood than without (hard assignment from a tiny
    initial spread leaves most components unused)."""
    X = _digits_like(3000, seed=2)
    tr, te = X[:2400], X[2400:]
    on = fastmix.SGDGaussianMixture(9, n_epochs=10, random_state=0).fit(tr)
    off = fastmix.SGDGaussianMixture(9, n_epochs=10, annealing="off", random_state=0).fit(tr)
    assert on.score(te) > off.score(te) + 1.0
    assert on.sigma_ < on.loss_curve_[0][2]  # sigma was annealed
    assert on.score_max_component(te) <= on.score(te) + 1e-12


@pytest.mark.parametrize("schedule", ["time", "adaptive"])
def test_schedules_and_minibatch(schedule):
    X = _digits_like(2000)
    m = fastmix.SGDGaussianMixture(9, annealing=schedule, batch_size=16, n_epochs=3,
                                   anneal_window=20, random_state=0).fit(X)
    sig = [h[2] for h in m.loss_curve_]
    assert sig[0] >= sig[-1] and np.all(np.diff(sig) <= 1e-15)  # non-increasing
    assert m.n_steps_ == 3 * -(-2000 // 16)
    assert np.isfinite(m.score(X)) and m.predict(X).shape == (2000,)


def test_api_save_load_sample(tmp_path):
    X = _digits_like()
    m = fastmix.SGDGaussianMixture(4, init="kmeans++", n_epochs=2, random_state=0).fit(X)
    assert m.grid_shape_ == (2, 2) and m.means_.reshape(2, 2, 16).shape == (2, 2, 16)
    m.save(tmp_path / "s.npz")
    back = fastmix.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.means_, m.means_)
    np.testing.assert_array_equal(back.score_samples(X[:20]), m.score_samples(X[:20]))
    S, lab = m.sample(100)
    assert S.shape == (100, 16) and lab.shape == (100,)
    back.partial_fit(X[:50])  # a loaded model keeps training
    assert back.n_steps_ == m.n_steps_ + 50


@pytest.mark.parametrize("kw,match", [
    (dict(n_components=10), "perfect square"), (dict(learning_rate=0.0), "learning_rate"),
    (dict(learning_rate=-1.0), "learning_rate"), (dict(objective="x"), "objective"),
    (dict(annealing="fast"), "annealing"), (dict(batch_size=0), "batch_size"),
    (dict(lambda_mu=2.0), "lambda_mu"), (dict(init="zeros"), "init")])
def test_bad_parameters(kw, match):
    with pytest.raises(ValueError, match=match):
        fastmix.SGDGaussianMixture(**{"n_components": 4, **kw}).fit(_digits_like(100))


def test_bad_data():
    X = _digits_like(200)
    m = fastmix.SGDGaussianMixture(4, random_state=0).partial_fit(X[:100])
    with pytest.raises(ValueError, match="features"):
        m.partial_fit(X[:10, :5])
    bad = X[:10].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        m.partial_fit(bad)
    with pytest.warns(UserWarning, match=r"scaled to \[0, 1\]"):
        fastmix.SGDGaussianMixture(4, random_state=0).partial_fit(X * 255)


# ------------------------------------------------------------ local principal directions ---
def _dense_lpd_loglik(m, X):
    """Mixture log-density from dense covariances (scipy), for covariance_type='lpd'."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal
    import reference as ref
    K = m.n_components
    U, a, r = m.directions_, np.sqrt(m.direction_precisions_), np.sqrt(m.residual_precisions_)
    lp = np.stack([np.log(m.weights_[k]) + multivariate_normal(
        m.means_[k], ref.lpd_component_covariance(U[k], a[k], r[k])).logpdf(X)
        for k in range(K)], axis=1)
    return logsumexp(lp, axis=1), lp


@pytest.mark.parametrize("batch", [1, 16])
def test_lpd_fit_score_matches_dense_scipy(batch):
    X = _digits_like(1500, D=12)
    m = fastmix.SGDGaussianMixture(9, covariance_type="lpd", n_directions=3, batch_size=batch,
                                   n_epochs=3, random_state=0).fit(X)
    assert m.directions_.shape == (9, 3, 12) and m.direction_precisions_.shape == (9, 3)
    for k in range(9):
        assert_close(m.directions_[k] @ m.directions_[k].T, np.eye(3), 1e-12)
    want, lp = _dense_lpd_loglik(m, X[:200])
    assert_close(m.score_samples(X[:200]), want, 1e-9)
    assert_close(m.score(X[:200]), want.mean(), 1e-9)
    np.testing.assert_array_equal(m.predict(X[:200]), np.argmax(lp, axis=1))
    assert_close(m.predict_proba(X[:200]), np.exp(lp - want[:, None]), 1e-9)
    assert m.score_max_component(X) <= m.score(X) + 1e-12
    assert np.isfinite(m.score(X))


def test_lpd_beats_diag_on_correlated_data_and_samples():
    """Two elongated clusters (rank 1 plus small noise along an oblique direction): one local
    principal direction per component reaches a clearly better log-likelihood than diagonal
    precisions under the same schedule, and samples have the model's covariance."""
    rng = np.random.default_rng(0)
    D = 10
    dirs = np.linalg.qr(rng.normal(size=(D, 2)))[0].T
    lab = rng.integers(0, 2, 6000)
    X = 0.5 + 0.3 * rng.normal(size=(6000, 1)) * dirs[lab] + 0.05 * rng.normal(size=(6000, D))
    X[lab == 1] += 0.3
    kw = dict(n_epochs=5, init="kmeans++", random_state=0, precision_max=400,
              learning_rate=0.002, learning_rate_min=0.0002)
    m = fastmix.SGDGaussianMixture(4, covariance_type="lpd", n_directions=1, **kw).fit(X)
    diag = fastmix.SGDGaussianMixture(4, **kw).fit(X)
    assert m.score(X) > diag.score(X) + 1.0
    S, labs = m.sample(20000)
    k = np.bincount(labs).argmax()
    import reference as ref
    cov = ref.lpd_component_covariance(m.directions_[k], np.sqrt(m.direction_precisions_[k]),
                                       np.sqrt(m.residual_precisions_[k]))
    assert np.abs(np.cov(S[labs == k].T) - cov).max() < 0.1 * np.abs(cov).max()
    assert_close(S[labs == k].mean(axis=0), m.means_[k], 0.05)


def test_lpd_save_load_round_trip(tmp_path):
    X = _digits_like(600, D=8)
    m = fastmix.SGDGaussianMixture(4, covariance_type="lpd", n_directions=2,
                                   random_state=0).fit(X)
    m.save(tmp_path / "lpd.npz")
    back = fastmix.load(tmp_path / "lpd.npz")
    for name in ("means_", "weights_", "directions_", "direction_precisions_",
                 "residual_precisions_"):
        np.testing.assert_array_equal(getattr(back, name), getattr(m, name))
    np.testing.assert_array_equal(back.score_samples(X[:20]), m.score_samples(X[:20]))
    back.partial_fit(X[:30])
    assert back.n_steps_ == m.n_steps_ + 30


@pytest.mark.parametrize("S,match", [(8, "n_directions must be < n_features"),
                                     (12, "n_directions must be < n_features"),
                                     (0, "n_directions"), (-1, "n_directions"),
                                     (2.5, "n_directions")])
def test_lpd_bad_n_directions(S, match):
    with pytest.raises(ValueError, match=match):
        fastmix.SGDGaussianMixture(4, covariance_type="lpd", n_directions=S).fit(
            _digits_like(100, D=8))


def test_bad_covariance_type():
    with pytest.raises(ValueError, match="covariance_type"):
        fastmix.SGDGaussianMixture(4, covariance_type="full").fit(_digits_like(100))


def test_default_window_fits_the_annealing_into_small_fits():
    from fastmix.sgd import default_window
    assert default_window(0.001, 1.25, 0.01, 0.9) == 1000  # streaming: the released code's
    # 10 epochs of 1437 rows: 46 decays from 1.25 to 0.01 need windows of <= 14370 / 48
    assert default_window(0.001, 1.25, 0.01, 0.9, 14370) == 14370 // 48
    assert default_window(0.001, 1.25, 0.01, 0.9, 10 ** 7) == 1000
    X = _digits_like(1500)
    m = fastmix.SGDGaussianMixture(9, n_epochs=10, random_state=0).fit(X)
    assert m._schedule.window == 15000 // (int(np.ceil(np.log(0.01 / 0.75) / np.log(0.9))) + 2)


def test_adaptive_schedule_on_a_scripted_loss_sequence():
    """The annealing rule, pinned step by step: with window 1 the EMA is the last loss, and at
    every check from the second on, r = (L_t - L_{t-1}) / (L_{t-1} - L_0) decays sigma and eps
    by gamma iff -2 delta < r < delta (stalled); r >= delta (progress) and r <= -2 delta (the
    loss jumped up) leave them alone."""
    L0 = 10.0
    losses, want = [L0], [False]  # the first check only records
    def add(loss, decays):
        losses.append(loss)
        want.append(decays)
    add(9.0, True)  # L_{t-1} = L0: zero denominator, r = 0 -> stalled
    add(5.0, False)  # r = 4: progress
    prev = 5.0
    for r, decays in [(0.02, True), (-0.06, True), (-0.15, False), (0.0, True), (0.25, False),
                      (0.049, True), (0.051, False), (-0.099, True), (-0.101, False),
                      (-0.3, False), (0.03, True)]:
        loss = prev + r * (prev - L0)
        add(loss, decays)
        prev = loss
    sched = sgd.Schedule("adaptive", sigma=1.0, eps=0.1, sigma_min=1e-3, eps_min=1e-4,
                         delta=0.05, gamma=0.8, window=1)
    n_decays, sig = 0, []
    for loss, decays in zip(losses, want):
        sched.update(np.array([-loss]))  # objectives are maximised: loss = -objective
        n_decays += decays
        sig.append((sched.sigma, sched.eps))
        assert_close(sched.sigma, 0.8 ** n_decays, 1e-12, err_msg=f"t={sched.t}")
        assert_close(sched.eps, 0.1 * 0.8 ** n_decays, 1e-12, err_msg=f"t={sched.t}")
    assert n_decays == 7 and sched.checks == len(losses)
    # the floors: many stalled checks end at sigma_min / eps_min
    for _ in range(60):
        sched.update(np.array([-prev]))
    assert sched.sigma == 1e-3 and sched.eps == 1e-4


@pytest.mark.parametrize("cov,batch,kernel", [
    ("diag", 1, "sgd_step_single"), ("diag", 8, "sgd_minibatch"),
    ("lpd", 1, "sgd_lpd_step_single"), ("lpd", 8, "sgd_lpd_minibatch")])
def test_every_kernel_gets_the_learning_rate_factors_in_order(cov, batch, kernel, monkeypatch):
    """The driver hands (lambda_pi, lambda_mu, lambda_sigma) to each of the four step kernels
    in their parameter order (the defaults are all 1, so a swap is otherwise invisible)."""
    seen = []
    real = getattr(cpu_sgd, kernel)

    def spy(*args):
        seen.append(tuple(float(v) for v in args[-6:-3]))
        return real(*args)

    monkeypatch.setattr(cpu_sgd, kernel, spy)
    X = _digits_like(300, D=8)
    fastmix.SGDGaussianMixture(4, covariance_type=cov, n_directions=2, batch_size=batch,
                               n_epochs=1, lambda_pi=0.5, lambda_mu=0.9, lambda_sigma=0.7,
                               random_state=0).fit(X)
    assert seen and set(seen) == {(0.5, 0.9, 0.7)}
