"""select_mixture(device="cuda"): the candidates' E-steps and scores on the GPU path of
GaussianMixture(device="cuda").  Without a GPU the module runs on numba's CUDA simulator
(``_gpu``), so the data are tiny (64 x 3, K <= 3, 40-row launch blocks of 8 threads)."""
from _gpu import gk  # noqa: F401,I001  (first import: switches on the simulator)
import warnings

import numpy as np
import pytest

import fastmix
from fastmix import gpu as fgpu
from fastmix import io as fio

@pytest.fixture
def small_launch(monkeypatch):
    monkeypatch.setattr(fgpu, "DEFAULT_BLOCK_ROWS", 40)
    monkeypatch.setattr(fgpu, "DEFAULT_THREADS", 8)


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 1.0, (22, 3)) for c in ((-4, 0, 1), (4, 1, 0), (0, 5, 2))])
    return X[rng.permutation(X.shape[0])][:64]


def _count_uploads(monkeypatch):
    """The row counts of the arrays GpuEngine copies to the device."""
    rows = []
    orig = gk.to_device
    monkeypatch.setattr(gk, "to_device", lambda A, *a: rows.append(A.shape[0]) or orig(A, *a))
    return rows


def _fit(kind, K, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fastmix.GaussianMixture(K, covariance_type=kind, **kw)


def test_sweep_on_the_device_equals_separate_gpu_fits_and_the_cpu_sweep(X, small_launch,
                                                                       monkeypatch):
    kw = dict(random_state=0, max_iter=3, tol=0.0, chunk_size=32)
    uploads = _count_uploads(monkeypatch)
    scored = []
    orig = gk.log_prob_gpu
    monkeypatch.setattr(gk, "log_prob_gpu", lambda *a, **k: scored.append(1) or orig(*a, **k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dev = fastmix.select_mixture(X, n_components=[1, 3], covariance_types=("full", "tied"),
                                     device="cuda", **kw)
        cpu = fastmix.select_mixture(X, n_components=[1, 3], covariance_types=("full", "tied"),
                                     **kw)
    assert uploads == [X.shape[0]]  # copied once, resident for every pass and candidate
    assert dev.n_passes_ == 1 + 3 + 1
    assert len(scored) == 4  # every candidate scored on the device
    for i in range(len(dev)):
        K, kind = int(dev.results_["n_components"][i]), str(dev.results_["covariance_type"][i])
        gm = _fit(kind, K, device="cuda", **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(X)
        est = dev.estimator(i)
        # the resident array and the launch shape of a separate GPU fit: the same statistics
        np.testing.assert_array_equal(est.means_, gm.means_)
        np.testing.assert_array_equal(est.covariances_, gm.covariances_)
        assert est.lower_bounds_ == gm.lower_bounds_
        assert dev.results_["bic"][i] == pytest.approx(gm.bic(X), rel=1e-12)
        # and the CPU sweep to rounding (different summation order)
        np.testing.assert_allclose(est.means_, cpu.estimator(i).means_, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(dev.results_["score"][i], cpu.results_["score"][i],
                                   rtol=1e-11)
    assert dev.best_params_ == cpu.best_params_


@pytest.mark.parametrize("criterion", ["icl", "heldout"])
def test_device_scores_equal_the_cpu_sweep(X, small_launch, criterion):
    kw = dict(n_components=[2, 3], covariance_types=("diag", "spherical"), criterion=criterion,
              random_state=1, max_iter=2, tol=0.0, chunk_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dev = fastmix.select_mixture(X, device="cuda", **kw)
        cpu = fastmix.select_mixture(X, **kw)
    for k in ("score", "log_likelihood", "heldout_log_likelihood", "entropy"):
        np.testing.assert_allclose(dev.results_[k], cpu.results_[k], rtol=1e-9, atol=1e-9)


def test_file_goes_to_the_device_block_by_block_once_per_pass(X, tmp_path, small_launch,
                                                             monkeypatch):
    path = tmp_path / "x.npy"
    np.save(path, X)
    monkeypatch.setattr(fio.base, "BLOCK_BYTES", 32 * 3 * 8)  # 2 blocks of 32 rows
    uploads = _count_uploads(monkeypatch)
    kw = dict(n_components=[2], covariance_types=("full", "spherical"), random_state=2,
              max_iter=2, tol=0.0, chunk_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dev = fastmix.select_mixture(str(path), device="cuda", **kw)
        cpu = fastmix.select_mixture(str(path), **kw)
    em = dev.pass_kinds_.count("em")
    assert em == 3 and uploads == [32, 32] * em  # each block once per pass, for all candidates
    np.testing.assert_allclose(dev.results_["score"], cpu.results_["score"], rtol=1e-11)
    for i in range(len(dev)):
        np.testing.assert_allclose(dev.estimator(i).covariances_,
                                   cpu.estimator(i).covariances_, rtol=1e-9, atol=1e-12)


def test_device_cuda_refuses_dask(X):
    da = pytest.importorskip("dask.array")
    with pytest.raises(ValueError, match="Dask arrays"):
        fastmix.select_mixture(da.from_array(X, chunks=32), n_components=[1, 2],
                               device="cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        fastmix.select_mixture(X, n_components=[1, 2], device="gpu")
