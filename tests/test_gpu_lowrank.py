"""CUDA kernels for lowrank covariances (``fastmix.kernels.cuda.lowrank``) and
``GaussianMixture(covariance_type="lowrank", device="cuda")``.

Without a GPU the module runs on numba's CUDA simulator (``_gpu`` sets it up), so inputs are
tiny: N = 50 rows, D = 4, K = 3, q = 2; 40-row blocks (two blocks, 40 + 10 rows: a partial last
block) with 32-row tiles (the first block has two tiles, 32 + 8); 8 threads per block, fewer
than the 92 statistic entries and the 96 (row, component) pairs of a tile.  With
``FASTMIX_TEST_GPU=real`` the same tests run on the device, plus the ``real_gpu`` ones.
"""

from _gpu import SIM, compile_check, gk, real_gpu  # noqa: I001  (first: sets up the simulator)
import numpy as np
import pytest

import reference as ref
from _helpers import RTOL, assert_close, assert_reproducible
from fastmix import kernels
from fastmix._params import GMMParams, LowRankCovariance
from fastmix.kernels.cuda import stream as gstream

N, D, K, Q = 50, 4, 3, 2
BLOCK_ROWS, THREADS = 40, 8
GPU_RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-4}
DTYPES = [np.float64, np.float32]
NAMES = ("nk", "s1", "s2", "ll", "ws")


def make_problem(seed=0, n=N, isotropic=False, q=Q):
    """Rows drawn from a random MFA; the model is a perturbed copy of it (so rows have
    non-trivial responsibilities); weights with exact zeros.
    Returns (X, sw, (weights, means, loadings, noise variances))."""
    rng = np.random.default_rng(seed)
    w, mu, W, psi = ref.random_mfa(rng, K, D, q, spread=1.5)
    X, _ = ref.sample_mfa(rng, w, mu, W, psi, n)
    means = mu + 0.5 * rng.normal(size=mu.shape)
    loadings = W + 0.3 * rng.normal(size=W.shape)
    psi = rng.uniform(0.2, 0.8, size=(K, D))
    if isotropic:
        psi[:] = psi[:, :1]
    sw = rng.uniform(0.0, 3.0, size=n)
    sw[::11] = 0.0
    return X, sw, (np.roll(w, 1), means, loadings, psi)


def params_of(model, isotropic=False):
    w, m, W, psi = model
    return GMMParams(np.asarray(w, float), m, LowRankCovariance(W, psi, isotropic))


def gpu_stats(X, sw, kp, block_rows=BLOCK_ROWS, threads=THREADS):
    return gk.estep_stats_gpu(gk.to_device(X), gk.weights_to_device(sw, X.shape[0]), kp,
                              block_rows=block_rows, threads=threads)


# ------------------------------------------------------------------------- fused E-step -----
@pytest.mark.parametrize("noise", ["diagonal", "isotropic"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_estep_stats_match_dense_reference(dtype, weighted, noise):
    """GPU statistics (CPU layout, Cov[z|x] included) against the dense MFA reference on the
    same (rounded) data."""
    iso = noise == "isotropic"
    X64, sw, model = make_problem(seed=1, isotropic=iso)
    X = X64.astype(dtype)
    sw = sw if weighted else None
    kp = params_of(model, iso).kernel_params(X.dtype)
    got = gpu_stats(X, sw, kp)
    want = ref.mfa_estep_stats(X.astype(np.float64), sw, *model)
    rtol = GPU_RTOL[X.dtype]
    what = f"{X.dtype}/{'w' if weighted else 'nw'}/{noise}"
    nk, s1, s2, ll, ws = got
    assert s2.shape == kernels.s2_shape(kernels.LOWRANK, K, D, Q) == (K, 1 + Q, D + Q + 1)
    for name, a in zip(NAMES[:3], got[:3]):
        assert a.dtype == np.float64, f"{what}: {name} must be float64"
    assert np.all(s2[:, 0, D:] == 0.0)
    for name, a, b in zip(NAMES, got, want):
        assert_close(a, b, 1e-14 if name == "ws" else rtol, f"{what}: {name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_estep_stats_match_cpu_kernel(dtype):
    """Same model, same data: the GPU and CPU lowrank kernels agree to rounding."""
    X, sw, model = make_problem(seed=2)
    X = X.astype(dtype)
    kp = params_of(model).kernel_params(X.dtype)
    rtol = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-5}[X.dtype]
    for a, b, name in zip(gpu_stats(X, sw, kp), kernels.estep_stats(X, sw, kp, 16), NAMES):
        assert_close(a, b, rtol, f"{X.dtype}: {name}")


def test_zero_weight_component():
    """A component of weight 0 (log-density -inf) gets responsibility 0 everywhere, and
    float32 rows far from a component hit the cut rule: still equal to the CPU kernel."""
    X, sw, (w, m, W, psi) = make_problem(seed=3)
    kp = params_of(([0.5, 0.0, 0.5], m, W, psi)).kernel_params(np.float64)
    a = gpu_stats(X, sw, kp)
    assert a[0][1] == 0.0 and np.all(a[1][1] == 0.0) and np.all(a[2][1, :, :D + Q] == 0.0)
    for x, y, name in zip(a, kernels.estep_stats(X, sw, kp, 16), NAMES):
        assert_close(x, y, 1e-12, name)


# --------------------------------------------------------------------------- log_prob -------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_log_prob_labels_and_responsibilities(dtype):
    """Per-row log p, labels and responsibilities against the dense reference and the CPU
    kernel; without responsibilities the same log p and labels."""
    X64, _, model = make_problem(seed=4)
    X = X64.astype(dtype)
    kp = params_of(model).kernel_params(X.dtype)
    Xd = gk.to_device(X)
    logp, labels, resp = gk.log_prob_gpu(Xd, kp, want_resp=True, block_rows=BLOCK_ROWS,
                                         threads=THREADS)
    assert logp.dtype == np.float64 and labels.dtype == np.int64 and resp.dtype == np.float64
    assert logp.shape == (N,) and resp.shape == (N, K)
    rtol = GPU_RTOL[X.dtype]
    elogp, eresp = ref.mfa_log_prob_resp(X.astype(np.float64), *model)
    assert_close(logp, elogp, rtol, "log p")
    assert_close(resp, eresp, rtol * 10, "resp", floor=rtol * 10)
    np.testing.assert_array_equal(labels, np.argmax(eresp, axis=1))
    assert_close(resp.sum(axis=1), np.ones(N), 1e-12)
    clogp, clabels, cresp = kernels.log_prob(X, kp, 16, want_resp=True)
    crtol = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-5}[X.dtype]
    assert_close(logp, clogp, crtol, "log p vs CPU")
    assert_close(resp, cresp, crtol * 10, "resp vs CPU", floor=crtol * 10)
    np.testing.assert_array_equal(labels, clabels)
    # the CPU's cut rule: the same responsibilities are exactly 0 (some are, at this seed)
    assert np.any(cresp == 0.0)
    np.testing.assert_array_equal(resp == 0.0, cresp == 0.0)
    logp2, labels2, none = gk.log_prob_gpu(Xd, kp, block_rows=BLOCK_ROWS, threads=THREADS)
    assert none is None
    assert_reproducible(logp, logp2)
    assert_reproducible(labels, labels2)


# -------------------------------------------------------------------------- determinism -----
def test_bit_reproducible_and_unit_weights():
    """Two runs give the same bits; unit weights the same bits as no weights; another block /
    thread shape changes only the rounding."""
    X, sw, model = make_problem(seed=5)
    X32 = X.astype(np.float32)
    kp = params_of(model).kernel_params(np.float32)
    a = gpu_stats(X32, sw, kp)
    b = gpu_stats(X32, sw, kp)
    for x, y, name in zip(a, b, NAMES):
        assert_reproducible(x, y, name)
    u = gpu_stats(X32, None, kp)
    v = gpu_stats(X32, np.ones(N), kp)
    for x, y, name in zip(u, v, NAMES):
        assert_reproducible(x, y, name)
    kp64 = params_of(model).kernel_params(np.float64)
    c = gpu_stats(X, sw, kp64, block_rows=16, threads=4)
    d = gpu_stats(X, sw, kp64, block_rows=N, threads=16)
    for x, y, name in zip(c, d, NAMES):
        assert_close(x, y, 1e-13, name)


def test_launch_groups_when_partials_exceed_the_budget(monkeypatch):
    """Partials over PARTIAL_BYTES: blocks run in fixed-size groups reduced in order, the same
    statistics up to rounding, still bit-reproducible."""
    from fastmix.kernels.cuda import estep as gpu_estep, lowrank as gpu_lowrank
    X, sw, model = make_problem(seed=6)
    kp = params_of(model).kernel_params(np.float64)
    one = gpu_stats(X, sw, kp, block_rows=8)                 # 7 blocks, one launch
    S = gpu_lowrank.n_entries(K, D, Q)
    monkeypatch.setattr(gpu_estep, "PARTIAL_BYTES", 2 * 8 * S)  # groups of 2 blocks: 4 launches
    launches = []

    class CountingReduce:  # gpu_estep.reduce_blocks, counting its launches
        def __getitem__(self, config):
            launches.append(config)
            return real_reduce[config]

    real_reduce = gpu_estep.reduce_blocks
    monkeypatch.setattr(gpu_estep, "reduce_blocks", CountingReduce())
    a = gpu_stats(X, sw, kp, block_rows=8)
    assert len(launches) == 4
    b = gpu_stats(X, sw, kp, block_rows=8)
    for x, y, z, name in zip(a, b, one, NAMES):
        assert_reproducible(x, y, name)
        assert_close(x, z, 1e-13, name)


# ----------------------------------------------------------------------- clear errors -------
def test_shape_too_large_for_shared_memory():
    """A tile row of 8 K (1 + q) + D itemsize + 16 bytes over the shared-memory budget: a
    ValueError naming the shape, from both entry points (before any launch)."""
    from fastmix.kernels.cuda import estep as gpu_estep, lowrank as gpu_lowrank
    K2, D2, q2 = 700, 10, 8
    assert gpu_lowrank.row_bytes(K2, D2, q2, 4) > gpu_estep.SHARED_BYTES
    assert gpu_lowrank.tile_rows(K2, D2, q2, 4) == 0
    assert gpu_lowrank.tile_rows(K, D, Q, 4) == 32
    kp = kernels.KernelParams(kernels.LOWRANK, np.zeros((K2, D2), np.float32),
                              np.ones((K2, 1 + 2 * q2, D2), np.float32), np.zeros(K2),
                              np.zeros((K2, D2), np.float32), np.zeros(D2, np.float32),
                              np.zeros((K2, D2)), np.zeros(0))
    Xd = gk.to_device(np.zeros((5, D2), np.float32))
    for call in (lambda: gk.estep_stats_gpu(Xd, None, kp), lambda: gk.log_prob_gpu(Xd, kp)):
        with pytest.raises(ValueError, match=r"K = 700 components, q = 8 factors and D = 10 "
                                             r"float32 features does not fit"):
            call()


# ------------------------------------------------- real CUDA target, no GPU needed ----------


def test_lowrank_kernels_compile_for_a_real_gpu():
    """Type inference and lowering of both lowrank kernels (float32 and float64) for the real
    CUDA target, which the simulator never exercises; no atomics; PTX (sm_90) too when NVRTC
    is installed."""
    compile_check("""
        from fastmix.kernels.cuda import lowrank as g
        kernels = []
        for name, dt in (("float32", f32), ("float64", f64)):
            est, lp = g.build(name, 5, 6, 3, g.tile_rows(5, 6, 3, 4), 64)
            kernels.append((est.py_func, (A(dt, 2), A(f64, 1), A(dt, 2), A(dt, 2), A(dt, 3),
                            A(f64, 3), A(f64, 1), A(f64, 2), f64, i64, i64, A(f64, 2))))
            kernels.append((lp.py_func, (A(dt, 2), A(f64, 1), A(dt, 2), A(dt, 2), A(dt, 3),
                            A(f64, 1), f64, i64, A(f64, 1), A(i64, 1), A(f64, 2))))
        check(kernels)
    """)


# ---------------------------------------------------------- GaussianMixture(device="cuda") --
@pytest.fixture
def small_launch(monkeypatch):
    """The estimator launches with fastmix.gpu's defaults: tiny ones on the simulator."""
    from fastmix import gpu as fgpu
    if SIM:
        monkeypatch.setattr(fgpu, "DEFAULT_BLOCK_ROWS", BLOCK_ROWS)
        monkeypatch.setattr(fgpu, "DEFAULT_THREADS", THREADS)


@pytest.mark.parametrize("q, noise, weighted", [(1, "isotropic", True), (2, "diagonal", False)])
def test_estimator_device_cuda_matches_cpu(q, noise, weighted, small_launch):
    """Same random_state: the GPU fit equals the CPU fit to rounding; predict, score_samples
    and predict_proba run on the GPU and agree too."""
    import fastmix
    X, sw, _ = make_problem(seed=7, n=60, q=q)
    sw = sw if weighted else None
    kw = dict(covariance_type="lowrank", n_factors=q, noise=noise, max_iter=3, tol=0.0,
              random_state=0)
    cpu = fastmix.GaussianMixture(K, **kw).fit(X, sample_weight=sw)
    dev = fastmix.GaussianMixture(K, device="cuda", **kw).fit(X, sample_weight=sw)
    assert dev._device_data is None  # the device copy is released after fit
    assert dev.n_iter_ == cpu.n_iter_ == 3
    assert_close(dev.lower_bounds_, cpu.lower_bounds_, 1e-9)
    for attr in ("weights_", "means_", "loadings_", "noise_variances_"):
        assert_close(getattr(dev, attr), getattr(cpu, attr), 1e-9, attr)
    if noise == "isotropic":
        assert np.all(dev.noise_variances_ == dev.noise_variances_[:, :1])
    assert_close(dev.score_samples(X), cpu.score_samples(X), 1e-11)
    np.testing.assert_array_equal(dev.predict(X), cpu.predict(X))
    assert_close(dev.predict_proba(X), cpu.predict_proba(X), 1e-9, floor=1e-12)


def test_estimator_streams_a_file_through_the_lowrank_kernel(tmp_path, small_launch,
                                                             monkeypatch):
    """A .npy file streamed host -> device in 16-row chunks: the CPU fit to rounding."""
    import fastmix
    monkeypatch.setattr(gstream, "STREAM_CHUNK_BYTES", 16 * D * 8)
    X, _, _ = make_problem(seed=9, n=60, q=2)
    np.save(tmp_path / "x.npy", X)
    kw = dict(covariance_type="lowrank", n_factors=2, max_iter=3, tol=0.0, random_state=0,
              chunk_size=8)
    cpu = fastmix.GaussianMixture(K, **kw).fit(X)
    dev = fastmix.GaussianMixture(K, device="cuda", **kw).fit(str(tmp_path / "x.npy"))
    assert_close(dev.lower_bounds_, cpu.lower_bounds_, 1e-9)
    assert_close(dev.loadings_, cpu.loadings_, 1e-9)
    assert_close(dev.score_samples(str(tmp_path / "x.npy")), cpu.score_samples(X), 1e-11)


def test_estimator_lowrank_online_on_the_gpu(small_launch):
    """Lowrank online EM: each batch's E-step on the GPU kernel, the CPU's updates."""
    import fastmix
    X, _, _ = make_problem(seed=8, n=60, q=1)
    kw = dict(covariance_type="lowrank", n_factors=1, max_iter=2, tol=0.0, random_state=0,
              batch_size=20, chunk_size=10)
    cpu = fastmix.GaussianMixture(K, **kw).fit(X, algorithm="online")
    dev = fastmix.GaussianMixture(K, device="cuda", **kw).fit(X, algorithm="online")
    assert_close(dev.lower_bounds_, cpu.lower_bounds_, 1e-9)
    assert_close(dev.loadings_, cpu.loadings_, 1e-8)
    cpu.partial_fit(X[:30])
    dev.partial_fit(X[:30])
    assert_close(dev.noise_variances_, cpu.noise_variances_, 1e-8)


# --------------------------------------------------------------------- real GPU only --------
@real_gpu
def test_real_gpu_larger_problem():
    """Many blocks, the default launch shape and float32, against the CPU kernels."""
    rng = np.random.default_rng(0)
    model = ref.random_mfa(rng, 16, 32, 4)
    X, _ = ref.sample_mfa(rng, *model, 100_003)
    X = X.astype(np.float32)
    kp = params_of(model).kernel_params(np.float32)
    a = gk.estep_stats_gpu(gk.to_device(X), None, kp)
    b = kernels.estep_stats(X, None, kp, 4096)
    for x, y, name in zip(a, b, NAMES):
        assert_close(x, y, RTOL[np.dtype(np.float32)], name)
    lp, lab, _ = gk.log_prob_gpu(gk.to_device(X), kp)
    clp, clab, _ = kernels.log_prob(X, kp, 4096)
    assert_close(lp, clp, RTOL[np.dtype(np.float32)])
    assert np.mean(lab == clab) > 0.999
