"""Missing values on the GPU (``kernels.cuda.missing``: the masked diag/spherical E-step) against
the CPU masked kernels (``fastmix.missing``), on numba's CUDA simulator without a GPU (tiny
shapes, as tests/test_gpu.py) or on the device with ``FASTMIX_TEST_GPU=real``."""
from _gpu import compile_check, gk  # noqa: I001  (first import)
import warnings

import numpy as np
import pytest

from _helpers import assert_close, assert_reproducible, gmm_params, perturbed_problem
from fastmix import GaussianMixture
from fastmix import gpu as fgpu
from fastmix import missing as fm_missing
from test_missing import _holes

N, D, K = 50, 3, 3
BLOCK_ROWS, THREADS = 40, 8  # two blocks, two tiles in the first, 8 threads
GPU_RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-4}


def _problem(kind, dtype, seed=0):
    X, sw, w, mu, cov = perturbed_problem(kind, K, D, N, seed)
    return _holes(X, "mcar", seed).astype(dtype), sw, gmm_params(w, mu, cov, kind)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["diag", "spherical"])
def test_masked_statistics_match_cpu(kind, dtype, weighted):
    X, sw, p = _problem(kind, dtype)
    sw = sw if weighted else None
    cpu = fm_missing.e_step_stats(X, sw, p, 64)
    gpu = fgpu.e_step_stats_missing(X, sw, p, BLOCK_ROWS, THREADS)
    tol = GPU_RTOL[np.dtype(dtype)]
    for f in ("nk", "s1", "s2"):
        assert_close(getattr(gpu, f), getattr(cpu, f), tol, f)
    assert gpu.ll == pytest.approx(cpu.ll, rel=tol)
    assert gpu.ws == pytest.approx(cpu.ws, rel=1e-15)


@pytest.mark.parametrize("kind", ["diag", "spherical"])
def test_masked_log_prob_matches_cpu(kind):
    X, _, p = _problem(kind, np.float64, seed=1)
    kp = p.kernel_params(X.dtype)
    lp, lab, resp = gk.log_prob_missing_gpu(gk.to_device(X), kp, p.cov.covariances, True,
                                            BLOCK_ROWS, THREADS)
    c_lp, c_lab, c_resp = fm_missing.log_prob(X, p, 64, True)
    assert_close(lp, c_lp, 1e-12)
    assert_close(resp, c_resp, 1e-12)
    np.testing.assert_array_equal(lab, c_lab)


def test_masked_statistics_are_reproducible():
    X, sw, p = _problem("diag", np.float64, seed=2)
    a = fgpu.e_step_stats_missing(X, sw, p, BLOCK_ROWS, THREADS)
    b = fgpu.e_step_stats_missing(X, sw, p, BLOCK_ROWS, THREADS)
    for f in ("nk", "s1", "s2"):
        assert_reproducible(getattr(a, f), getattr(b, f), f)


@pytest.fixture
def small_launch(monkeypatch):
    monkeypatch.setattr(fgpu, "DEFAULT_BLOCK_ROWS", BLOCK_ROWS)
    monkeypatch.setattr(fgpu, "DEFAULT_THREADS", THREADS)


def test_estimator_device_cuda_matches_cpu(small_launch):
    """GaussianMixture(device="cuda", missing="marginalize") on data with NaN: the fit (start
    on the CPU, EM on the GPU) equals the CPU fit to rounding; scores too."""
    X, _, p = _problem("diag", np.float64, seed=3)
    kw = dict(covariance_type="diag", missing="marginalize", max_iter=3, tol=0.0,
              weights_init=p.weights, means_init=p.means,
              precisions_init=1.0 / np.asarray(p.cov.covariances))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = GaussianMixture(K, **kw).fit(X)
        gpu = GaussianMixture(K, device="cuda", **kw).fit(X)
    assert_close(gpu.means_, cpu.means_, 1e-10)
    assert_close(gpu.covariances_, cpu.covariances_, 1e-10)
    assert_close(gpu.lower_bounds_, cpu.lower_bounds_, 1e-10)
    assert_close(gpu.score_samples(X), cpu.score_samples(X), 1e-10)


def test_unsupported_gpu_combinations_are_clear_errors(small_launch):
    X, _, _ = _problem("full", np.float64)
    for kind in ("full", "tied", "lowrank"):
        with pytest.raises(ValueError, match=f"device='cuda' does not support "
                                             f"covariance_type='{kind}'"):
            GaussianMixture(2, covariance_type=kind, device="cuda",
                            missing="marginalize").fit(X)
    with pytest.raises(ValueError, match="device='cuda' does not support online EM"):
        GaussianMixture(2, covariance_type="diag", device="cuda",
                        missing="marginalize").fit(X, algorithm="online")
    with pytest.raises(ValueError, match="device='cuda'"):
        GaussianMixture(2, covariance_type="diag", device="cuda",
                        missing="marginalize").partial_fit(X)


def test_masked_kernels_compile_for_the_real_target():
    """Type inference and lowering of the masked kernels on the real CUDA target (no atomics);
    PTX where NVVM/NVRTC are installed."""
    compile_check("""
        from fastmix.kernels.cuda import missing as m, estep as g
        kernels = []
        for kind in (2, 3):
            est, lp = m.build(kind, "float32", 5, 4, g.tile_rows(kind, 5, 4, 4), 64)
            kernels.append((est.py_func, (A(f32, 2), A(f64, 1), A(f32, 2), A(f32, 2), A(f64, 2),
                            A(f64, 1), A(f64, 2), A(f64, 2), f64, i64, i64, A(f64, 2))))
            kernels.append((lp.py_func, (A(f32, 2), A(f64, 1), A(f32, 2), A(f32, 2), A(f64, 2),
                            A(f64, 1), f64, i64, A(f64, 1), A(i64, 1), A(f64, 2))))
        check(kernels)
    """)
