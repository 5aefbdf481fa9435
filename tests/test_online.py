"""Online (stepwise) EM: the step size, the re-centred statistics it blends, partial_fit and
fit(algorithm="online")."""
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import fastmix
from fastmix import kernels
from fastmix._params import stats_from_kernel
from fastmix.cli import make_blobs
from fastmix.online import step_size

from _helpers import assert_close

KINDS = ["full", "tied", "diag", "spherical"]


@pytest.fixture(scope="module")
def blobs():
    X, _, _, _ = make_blobs(60000, 4, 5, random_state=3)
    return X


@pytest.fixture(scope="module")
def batch_model(blobs):
    return fastmix.GaussianMixture(5, covariance_type="full", tol=1e-8, max_iter=500,
                                   random_state=0).fit(blobs)


def _matched_distance(a, b):
    cost = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    r, c = linear_sum_assignment(cost)
    return cost[r, c].max()


def test_step_size():
    assert step_size(0, 1.0, 0.6) == 1.0
    assert step_size(1, 1.0, 1.0) == 0.5
    assert step_size(3, 1.0, 1.0) == 0.25
    assert_close(step_size(5, 2.0, 0.6), 7.0 ** -0.6, 1e-15)


@pytest.mark.parametrize("kind", KINDS)
def test_recentred_equals_direct(kind):
    """Stats centred on c, re-centred on c', equal the sums computed about c' directly (same
    responsibilities)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 3)) * 2 + 5
    sw = rng.uniform(0.1, 2, size=500)
    R = rng.dirichlet(np.ones(4), size=500)
    code = kernels.KIND_CODES[kind]
    c1 = rng.normal(size=(4, 3)) + 5
    c2 = rng.normal(size=(4, 3)) + 4
    kp1 = kernels.nearest_params(c1, X.dtype, code)
    kp2 = kernels.nearest_params(c2, X.dtype, code)
    s1 = stats_from_kernel(kind, kernels.resp_stats(X, sw, R, kp1, 64), kp1)
    s2 = stats_from_kernel(kind, kernels.resp_stats(X, sw, R, kp2, 64), kp2)
    moved = s1.recentred(s2.centre, s2.gcentre)
    assert_close(moved.s2, s2.s2, 1e-11, "s2")
    np.testing.assert_array_equal(moved.nk, s1.nk)
    # and blend(rho=1) is the other statistics, blend(rho=0) the re-centred first ones
    assert_close(s1.blend(s2, 1.0).s2, s2.s2, 1e-15)
    assert_close(s1.blend(s2, 0.0).s2, s2.s2, 1e-11)


@pytest.mark.parametrize("kappa,tol_mean", [(0.75, 0.02), (0.6, 0.03)])
def test_partial_fit_approaches_batch_em(blobs, batch_model, kappa, tol_mean):
    """Passes over a stationary stream of 1000-row chunks (shuffled), started 0.5 away from the
    batch EM solution, approach it: the distance shrinks pass after pass, the means end within
    tol_mean and the log-likelihood within 1e-3 of batch EM's (its local maximum)."""
    X = blobs
    rng = np.random.default_rng(1)
    gm = fastmix.GaussianMixture(5, covariance_type="full", step_decay=kappa, step_offset=1.0,
                                 means_init=batch_model.means_ + 0.5, random_state=0)
    dist = []
    for _ in range(4):
        perm = rng.permutation(X.shape[0])
        for i in range(0, X.shape[0], 1000):
            gm.partial_fit(X[perm[i:i + 1000]])
        dist.append(_matched_distance(gm.means_, batch_model.means_))
    assert gm.n_steps_ == 4 * 60
    assert dist[-1] < tol_mean and dist[-1] < dist[0] / 2, dist
    gap = batch_model.score(X) - gm.score(X)
    assert -1e-9 < gap < 1e-3


def test_partial_fit_first_call_initialises_and_validates(blobs):
    gm = fastmix.GaussianMixture(5, random_state=0)
    with pytest.raises(ValueError, match="at least n_components=5"):
        gm.partial_fit(blobs[:3])
    gm.partial_fit(blobs[:2000])
    assert gm.n_steps_ == 1 and gm.means_.shape == (5, 4)
    assert np.isfinite(gm.lower_bound_)
    with pytest.raises(ValueError, match="features"):
        gm.partial_fit(blobs[:100, :3])
    bad = blobs[:100].copy()
    bad[7, 2] = np.nan
    before = gm.means_.copy()
    with pytest.raises(ValueError, match="NaN"):
        gm.partial_fit(bad)
    np.testing.assert_array_equal(gm.means_, before)  # a rejected chunk changes nothing


def test_partial_fit_reproducible_and_resumable_from_file(blobs, tmp_path):
    """save/load keeps the running statistics: continuing after a reload is bit-identical."""
    chunks = [blobs[i:i + 3000] for i in range(0, 15000, 3000)]
    a = fastmix.GaussianMixture(5, covariance_type="diag", random_state=4)
    for c in chunks[:3]:
        a.partial_fit(c)
    a.save(tmp_path / "m.npz")
    b = fastmix.load(tmp_path / "m.npz")
    assert b.n_steps_ == 3
    for c in chunks[3:]:
        a.partial_fit(c)
        b.partial_fit(c)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.covariances_, b.covariances_)
    c2 = fastmix.GaussianMixture(5, covariance_type="diag", random_state=4)
    for c in chunks:
        c2.partial_fit(c)
    np.testing.assert_array_equal(a.means_, c2.means_)


def test_partial_fit_after_batch_fit_continues(blobs, batch_model):
    """After a batch fit, the first partial_fit starts the running statistics from its chunk
    under the fitted parameters: it is one EM step on that chunk from the fitted model."""
    gm = fastmix.GaussianMixture(5, covariance_type="full", tol=1e-8, max_iter=500,
                                 random_state=0).fit(blobs)
    chunk = blobs[:5000]
    one_step = fastmix.GaussianMixture(5, covariance_type="full", max_iter=1,
                                       weights_init=gm.weights_, means_init=gm.means_,
                                       precisions_init=gm.precisions_).fit(chunk)
    gm.partial_fit(chunk)
    assert_close(gm.means_, one_step.means_, 1e-10)
    assert_close(gm.covariances_, one_step.covariances_, 1e-10)
    assert gm.n_steps_ == 1


@pytest.mark.parametrize("kind", KINDS)
def test_fit_online_from_file(blobs, batch_model, tmp_path, kind):
    path = tmp_path / "x.npy"
    np.save(path, blobs)
    gm = fastmix.GaussianMixture(5, covariance_type=kind, max_iter=4, random_state=0,
                                 batch_size=8192, step_decay=1.0)
    gm.fit(str(path), algorithm="online")
    assert 1 <= gm.n_iter_ <= 4 and len(gm.lower_bounds_) == gm.n_iter_
    assert gm.n_steps_ == gm.n_iter_ * -(-60000 // 8192)
    ref = fastmix.GaussianMixture(5, covariance_type=kind, tol=1e-8, max_iter=500,
                                  random_state=0).fit(blobs)
    assert abs(ref.score(blobs) - gm.score(blobs)) < 0.01
    # the same online fit in memory is bit-identical to the one from the file
    mem = fastmix.GaussianMixture(5, covariance_type=kind, max_iter=4, random_state=0,
                                  batch_size=8192, step_decay=1.0).fit(blobs, algorithm="online")
    np.testing.assert_array_equal(mem.means_, gm.means_)


@pytest.mark.parametrize("bad", [dict(step_decay=0.5), dict(step_decay=1.2),
                                 dict(step_offset=-1.0), dict(step_offset=float("nan")),
                                 dict(batch_size=0)])
def test_bad_online_parameters(blobs, bad):
    with pytest.raises(ValueError):
        fastmix.GaussianMixture(2, **bad).partial_fit(blobs[:100])


def test_bad_algorithm(blobs):
    with pytest.raises(ValueError, match="algorithm"):
        fastmix.GaussianMixture(2).fit(blobs[:100], algorithm="sgd")
