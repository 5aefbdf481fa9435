"""CUDA kernels (``fastmix.kernels.cuda.estep``) and the GPU EM driver (``fastmix.gpu``); the
lowrank kernels have their own module, tests/test_gpu_lowrank.py.

Without a GPU (CI) the module runs on numba's CUDA simulator: it sets ``NUMBA_ENABLE_CUDASIM=1``
before numba-cuda is first imported in this process, so inputs are tiny (N <= 64, D <= 4,
K <= 3, 8 threads per block) and still exercise every code path: several tiles per block, a
partial last tile and block, threads that own several statistic entries.  On a machine with a
GPU, ``FASTMIX_TEST_GPU=real pytest tests/test_gpu.py`` runs the same tests on the device (and
the ``real_gpu`` ones, skipped on the simulator).  The module is skipped when numba-cuda is not
installed (it comes with the ``test`` and ``cuda`` extras).
"""
import importlib.util
import subprocess
import sys
import textwrap

from _gpu import compile_check, gk, real_gpu, real_target_env  # noqa: I001  (first import)
import numpy as np
import pytest

import reference as ref
from _helpers import (RTOL, assert_close, assert_reproducible, gmm_params,
                      perturbed_problem)
from fastmix import kernels
from fastmix import gpu as fgpu
from fastmix.kernels.cuda import device as gdev, stream as gstream
from fastmix.em import run_em

KINDS = ref.KINDS
DTYPES = [np.float64, np.float32]
N, D, K = 50, 3, 3
#: 40-row blocks: 2 blocks (40 + 10 rows); with 32-row tiles the first block has two tiles
#: (32 + 8).  8 threads: fewer than the statistic entries and (row, component) pairs.
BLOCK_ROWS, THREADS = 40, 8
GPU_RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-4}


def make_problem(kind, seed=0, n=N):
    return perturbed_problem(kind, K, D, n, seed)


@pytest.fixture(scope="module", params=KINDS)
def problem(request):
    return (request.param,) + make_problem(request.param, seed=KINDS.index(request.param))


def gpu_stats(X, sw, kp, block_rows=BLOCK_ROWS, threads=THREADS):
    Xd = gk.to_device(X)
    return gk.estep_stats_gpu(Xd, gk.weights_to_device(sw, X.shape[0]), kp,
                              block_rows=block_rows, threads=threads)


# ------------------------------------------------------------------------- fused E-step -----
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_estep_stats_gpu_parity(problem, dtype, weighted):
    """GPU statistics against the float64 NumPy reference on the same (rounded) data."""
    kind, X64, sw, weights, means, covs = problem
    X = X64.astype(dtype)
    sw = sw if weighted else None
    kp = gmm_params(weights, means, covs, kind).kernel_params(X.dtype)
    nk, s1, s2, ll, ws = gpu_stats(X, sw, kp)
    enk, es1, es2, ell, ews = ref.estep_stats(X.astype(np.float64), sw, weights, means, covs, kind)
    rtol = GPU_RTOL[X.dtype]
    what = f"{kind}/{X.dtype}/{'w' if weighted else 'nw'}"
    for name, a in (("nk", nk), ("s1", s1), ("s2", s2)):
        assert a.dtype == np.float64, f"{what}: {name} must be float64"
    assert s2.shape == kernels.s2_shape(kp.kind, K, D)
    assert_close(nk, enk, rtol, f"{what}: nk")
    assert_close(s1, es1, rtol, f"{what}: s1")
    assert_close(s2, es2, rtol, f"{what}: s2")
    assert_close(ll, ell, rtol, f"{what}: ll")
    assert_close(ws, ews, 1e-14, f"{what}: ws")


def test_estep_stats_gpu_matches_cpu_kernel(problem):
    """Same model, same data: GPU and CPU kernels agree to float64 rounding."""
    kind, X, sw, weights, means, covs = problem
    kp = gmm_params(weights, means, covs, kind).kernel_params(X.dtype)
    for a, b, name in zip(gpu_stats(X, sw, kp), kernels.estep_stats(X, sw, kp, 16),
                          ("nk", "s1", "s2", "ll", "ws")):
        assert_close(a, b, 1e-12, f"{kind}: {name}")


def test_deterministic_and_unit_weights(problem):
    """Two runs are bit-identical; unit weights give the same bits as no weights."""
    kind, X, sw, weights, means, covs = problem
    kp = gmm_params(weights, means, covs, kind).kernel_params(np.float32)
    X32 = X.astype(np.float32)
    a = gpu_stats(X32, sw, kp)
    b = gpu_stats(X32, sw, kp)
    for x, y in zip(a, b):
        assert_reproducible(x, y, kind)
    u = gpu_stats(X32, None, kp)
    v = gpu_stats(X32, np.ones(N), kp)
    for x, y in zip(u, v):
        assert_reproducible(x, y, kind)


def test_block_and_thread_shape_only_change_rounding():
    """Different block sizes / thread counts change only the summation order."""
    X, sw, weights, means, covs = make_problem("diag", seed=4)
    kp = gmm_params(weights, means, covs, "diag").kernel_params(np.float64)
    a = gpu_stats(X, sw, kp, block_rows=16, threads=4)
    b = gpu_stats(X, sw, kp, block_rows=N, threads=16)
    for x, y in zip(a, b):
        assert_close(x, y, 1e-13)


def test_launch_groups_when_partials_exceed_the_budget(monkeypatch):
    """With partials over PARTIAL_BYTES the blocks run in fixed-size groups, reduced in order:
    the same statistics up to rounding, still bit-reproducible."""
    from fastmix.kernels.cuda import estep as gpu_estep
    X, sw, weights, means, covs = make_problem("full", seed=5)
    kp = gmm_params(weights, means, covs, "full").kernel_params(np.float64)
    one = gpu_stats(X, sw, kp, block_rows=8)           # 7 blocks, one launch
    S = gpu_estep.n_entries(kp.kind, K, D)
    monkeypatch.setattr(gpu_estep, "PARTIAL_BYTES", 2 * 8 * S)  # groups of 2 blocks: 4 launches
    a = gpu_stats(X, sw, kp, block_rows=8)
    b = gpu_stats(X, sw, kp, block_rows=8)
    for x, y, z in zip(a, b, one):
        assert_reproducible(x, y)
        assert_close(x, z, 1e-13)


@pytest.mark.parametrize("kind", KINDS)
def test_edge_shapes_and_zero_weight_component(kind):
    """K = D = 1 (float32), and a component of weight 0 (log-density -inf: responsibility 0)."""
    rng = np.random.default_rng(3)
    w, mu, cov = ref.random_model(rng, kind, K, D)
    X = ref.sample_model(rng, w, mu, cov, kind, 30)
    kp = gmm_params([0.5, 0.0, 0.5], mu, cov, kind).kernel_params(np.float64)
    a = gpu_stats(X, None, kp, block_rows=16)
    assert a[0][1] == 0.0
    for x, y in zip(a, kernels.estep_stats(X, None, kp, 16)):
        assert_close(x, y, 1e-12)
    one = {"full": np.ones((1, 1, 1)), "tied": np.ones((1, 1)), "diag": np.ones((1, 1)),
           "spherical": np.ones(1)}[kind]
    kp1 = gmm_params([1.0], mu[:1, :1], one, kind).kernel_params(np.float32)
    X1 = np.ascontiguousarray(X[:, :1], dtype=np.float32)
    for x, y in zip(gpu_stats(X1, None, kp1, block_rows=16), kernels.estep_stats(X1, None, kp1, 16)):
        assert_close(x, y, 1e-6)


# --------------------------------------------------------------------------- log_prob -------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_log_prob_gpu_parity(problem, dtype):
    kind, X64, sw, weights, means, covs = problem
    X = X64.astype(dtype)
    kp = gmm_params(weights, means, covs, kind).kernel_params(X.dtype)
    logp, labels, resp = gk.log_prob_gpu(gk.to_device(X), kp, want_resp=True,
                                         block_rows=BLOCK_ROWS, threads=THREADS)
    elogp, eresp = ref.log_prob_resp(X.astype(np.float64), weights, means, covs, kind)
    rtol = GPU_RTOL[X.dtype]
    assert logp.dtype == np.float64 and labels.dtype == np.int64 and resp.dtype == np.float64
    assert_close(logp, elogp, rtol, f"{kind}: log p")
    assert_close(resp, eresp, rtol * 10, f"{kind}: resp", floor=rtol * 10)
    wlp = ref.weighted_log_prob(X.astype(np.float64), weights, means, covs, kind)
    np.testing.assert_array_equal(labels, np.argmax(wlp, axis=1))
    assert_close(resp.sum(axis=1), np.ones(N), 1e-12)
    # without responsibilities: the same log p and labels
    logp2, labels2, none = gk.log_prob_gpu(gk.to_device(X), kp, block_rows=BLOCK_ROWS,
                                           threads=THREADS)
    assert none is None
    assert_reproducible(logp, logp2)
    assert_reproducible(labels, labels2)


# ------------------------------------------------------------------------------- driver -----
@pytest.mark.parametrize("kind", KINDS)
def test_run_em_gpu_matches_cpu_run_em(kind):
    """Three EM iterations from the same start: GPU driver == CPU driver up to rounding."""
    X, _, weights, means, covs = make_problem(kind, seed=7, n=64)
    start = gmm_params(weights, means, covs, kind)
    cpu = run_em(X, None, start, reg_covar=1e-6, tol=0.0, max_iter=3, chunk_rows=16)
    dev = fgpu.run_em_gpu(X, None, start, reg_covar=1e-6, tol=0.0, max_iter=3,
                          block_rows=BLOCK_ROWS, threads=THREADS)
    assert dev.n_iter == cpu.n_iter == 3
    assert_close(dev.lower_bounds, cpu.lower_bounds, 1e-11)
    assert_close(dev.params.weights, cpu.params.weights, 1e-9)
    assert_close(dev.params.means, cpu.params.means, 1e-9)
    assert_close(dev.params.cov.covariances, cpu.params.cov.covariances, 1e-9)
    assert np.all(np.diff(dev.lower_bounds) >= -1e-12), "EM lower bound decreased"


def test_e_step_stats_driver_returns_stats_and_keeps_device_data():
    """fastmix.gpu.e_step_stats gives the CPU driver's Stats; data uploaded once are reused."""
    from fastmix.em import e_step_stats as cpu_e_step_stats
    X, sw, weights, means, covs = make_problem("full", seed=2)
    params = gmm_params(weights, means, covs, "full")
    data = fgpu.to_gpu(X, sw)
    assert fgpu.to_gpu(data) is data
    st = fgpu.e_step_stats(data, None, params, block_rows=BLOCK_ROWS, threads=THREADS)
    ref_st = cpu_e_step_stats(X, sw, params, chunk_rows=16)
    assert st.kind == "full"
    np.testing.assert_array_equal(st.centre, ref_st.centre)
    for f in ("nk", "s1", "s2"):
        assert_close(getattr(st, f), getattr(ref_st, f), 1e-12, f)
    assert_close(st.ll, ref_st.ll, 1e-12)


def test_device_array_input_is_not_copied():
    cuda = gk.require_gpu()
    X = make_problem("diag")[0]
    Xd = cuda.to_device(X)
    assert gk.to_device(Xd) is Xd or (gk.to_device(Xd).__cuda_array_interface__["data"][0]
                                      == Xd.__cuda_array_interface__["data"][0])
    with pytest.raises(ValueError, match="not float32"):
        gk.to_device(Xd, np.float32)
    with pytest.raises(ValueError, match="2-D float32/float64"):
        gk.to_device(cuda.to_device(X.astype(np.int64)))


# ----------------------------------------------------------------------- clear errors -------
def test_input_errors():
    X, sw, weights, means, covs = make_problem("diag")
    kp = gmm_params(weights, means, covs, "diag").kernel_params(np.float32)
    with pytest.raises(ValueError, match="float32 but the data are float64"):
        gk.estep_stats_gpu(gk.to_device(X), None, kp)
    kp64 = gmm_params(weights, means, covs, "diag").kernel_params(np.float64)
    with pytest.raises(ValueError, match="features"):
        gk.estep_stats_gpu(gk.to_device(X[:, :2]), None, kp64)
    with pytest.raises(ValueError, match="sample_weight has shape"):
        gk.weights_to_device(sw[:-1], N)
    with pytest.raises(ValueError, match="2-D"):
        gk.to_device(X[:, 0])


def test_missing_extra_error(monkeypatch):
    """Without numba-cuda the probe names the extra to install."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba_cuda" else real_find_spec(name, *a))
    monkeypatch.setattr(gdev, "_PROBE", {})
    assert not gk.gpu_available()
    with pytest.raises(gk.GPUUnavailableError, match=r"pip install 'fastmix\[cuda\]'"):
        fgpu.run_em_gpu(np.zeros((4, 2)), None, None, reg_covar=0, tol=0, max_iter=1)


def test_importing_fastmix_loads_no_cuda_module():
    """``import fastmix`` and the drivers' import-time reads of ``fastmix.kernels.cuda`` (launch
    shapes, the probe's names) load neither numba-cuda nor a kernel module -- the simulator
    switch in ``tests/_gpu.py`` depends on it; a kernel module loads on first use of one of its
    names, and without a GPU that first use is a GPUUnavailableError."""
    code = textwrap.dedent("""
        import sys
        import fastmix, fastmix.gpu, fastmix.sgd, fastmix.expansion
        from fastmix.kernels import cuda as gk
        gk.DEFAULT_BLOCK_ROWS, gk.SGD_THREADS, gk.STREAM_CHUNK_BYTES, gk.GPUUnavailableError
        loaded = sorted(m for m in sys.modules
                        if m == "numba.cuda" or m.startswith(("numba.cuda.", "numba_cuda",
                                                              "fastmix.kernels.cuda.")))
        print("LOADED", loaded)
        if not gk.gpu_available():
            try:
                gk.estep_stats_gpu
                print("NO-GPU first use: no error")
            except gk.GPUUnavailableError:
                print("NO-GPU first use: GPUUnavailableError, estep loaded:",
                      "fastmix.kernels.cuda.estep" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], env=real_target_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "LOADED ['fastmix.kernels.cuda.device', 'fastmix.kernels.cuda.stream']" in out.stdout
    if "NO-GPU" in out.stdout:
        assert "NO-GPU first use: GPUUnavailableError, estep loaded: False" in out.stdout


def test_package_names_resolve_in_their_modules():
    """Every public name of ``fastmix.kernels.cuda`` is the object its module defines (the
    package copies nothing); private helpers are not forwarded (patch them in their module)."""
    for name in gk.__all__:
        module = importlib.import_module(f"fastmix.kernels.cuda.{gk._OWNER[name]}")
        assert getattr(gk, name) is getattr(module, name), name
    assert set(gk.__all__) <= set(dir(gk))
    for name in ("_alloc", "_upload", "_PROBE", "_copy_rows", "no_such_name"):
        with pytest.raises(AttributeError, match=name):
            getattr(gk, name)


def test_no_gpu_error_in_a_fresh_process():
    """Without the simulator and without a GPU, require_gpu() says so (and how to fix it)."""
    env = real_target_env()
    code = textwrap.dedent("""
        from fastmix.kernels import cuda as gpu
        if gpu.gpu_available():
            print("HAS-GPU")
        else:
            try:
                gpu.require_gpu()
            except gpu.GPUUnavailableError as e:
                print("ERR:", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    if "HAS-GPU" in out.stdout:
        pytest.skip("a GPU is visible here")
    assert "no CUDA GPU is visible" in out.stdout
    assert "pip install 'fastmix[cuda]'" in out.stdout


def test_out_of_memory_names_the_size(monkeypatch):
    X, sw, weights, means, covs = make_problem("diag")
    monkeypatch.setattr(gdev, "_free_bytes", lambda cuda: 1000)
    with pytest.raises(MemoryError, match=r"the data \(50, 3\) needs .*MiB of device memory"):
        gk.to_device(X)

    class FakeCuda:
        @staticmethod
        def device_array(shape, dtype):
            raise RuntimeError("[CUresult.CUDA_ERROR_OUT_OF_MEMORY] Call to cuMemAlloc failed")

    monkeypatch.setattr(gdev, "_free_bytes", lambda cuda: None)
    with pytest.raises(MemoryError, match=r"partials needs 7\.6 MiB"):
        gdev._alloc(FakeCuda, (1000, 1000), np.float64, "partials")


def test_too_many_components_for_the_tile():
    from fastmix.kernels.cuda import estep as gpu_estep
    assert gpu_estep.tile_rows(kernels.DIAG, 10**5, 4, 4) == 0
    kp = kernels.nearest_params(np.zeros((6000, 2)), np.float32, kernels.DIAG)
    with pytest.raises(ValueError, match="do not fit"):
        gpu_estep._kernels(kp, np.float32, 8)


# --------------------------------------------------------------------- real GPU only --------
@real_gpu
@pytest.mark.parametrize("kind", KINDS)
def test_real_gpu_larger_problem(kind):
    """A problem big enough for many blocks and the default launch shape, against the CPU."""
    rng = np.random.default_rng(0)
    w, mu, cov = ref.random_model(rng, kind, 16, 8)
    X = ref.sample_model(rng, w, mu, cov, kind, 100_003).astype(np.float32)
    kp = gmm_params(w, mu, cov, kind).kernel_params(np.float32)
    a = gk.estep_stats_gpu(gk.to_device(X), None, kp)
    b = kernels.estep_stats(X, None, kp, 4096)
    for x, y, name in zip(a, b, ("nk", "s1", "s2", "ll", "ws")):
        assert_close(x, y, RTOL[np.dtype(np.float32)], f"{kind}: {name}")


# ------------------------------------------------- real CUDA target, no GPU needed ----------


def test_kernels_compile_for_a_real_gpu():
    """Type inference and lowering for the real CUDA target (sm_90), which the simulator never
    exercises: the E-step and log_prob kernels of the four kinds, the block reduction and
    BigLearn's row transforms, no atomics; PTX too where NVVM/NVRTC are installed (the cuda
    extra; not in CI)."""
    compile_check("""
        from fastmix.kernels.cuda import estep as g, linalg as gpu_linalg
        kernels = [(g.reduce_blocks.py_func, (A(f64, 2), i64, b1, A(f64, 1))),
                   (gpu_linalg._project.py_func, (A(f32, 2), A(f32, 2), A(f32, 2))),
                   (gpu_linalg._gather.py_func, (A(f64, 2), A(i64, 1), A(f64, 2)))]
        for kind in range(4):
            est, lp = g.build(kind, "float32", 5, 4, g.tile_rows(kind, 5, 4, 4), 64)
            kernels.append((est.py_func, (A(f32, 2), A(f64, 1), A(f32, 2), A(f32, 2), A(f32, 3),
                            A(f32, 1), A(f64, 1), A(f64, 2), A(f64, 1), f64, i64, i64,
                            A(f64, 2))))
            kernels.append((lp.py_func, (A(f32, 2), A(f64, 1), A(f32, 2), A(f32, 2), A(f32, 3),
                            A(f32, 1), A(f64, 1), f64, i64, A(f64, 1), A(i64, 1), A(f64, 2))))
        check(kernels)
    """)


# ---------------------------------------------------------- GaussianMixture(device="cuda") --
@pytest.fixture
def small_launch(monkeypatch):
    """The estimator launches with fastmix.gpu's defaults: tiny ones on the simulator."""
    monkeypatch.setattr(fgpu, "DEFAULT_BLOCK_ROWS", BLOCK_ROWS)
    monkeypatch.setattr(fgpu, "DEFAULT_THREADS", THREADS)


@pytest.mark.parametrize("kind", ["diag", "full"])
def test_estimator_device_cuda_matches_cpu(kind, small_launch):
    import fastmix
    X, sw, *_ = make_problem(kind, seed=11, n=64)
    kw = dict(covariance_type=kind, max_iter=3, tol=0.0, random_state=0)
    cpu = fastmix.GaussianMixture(3, **kw).fit(X, sample_weight=sw)
    dev = fastmix.GaussianMixture(3, device="cuda", **kw).fit(X, sample_weight=sw)
    assert dev._device_data is None  # the device copy is released after fit
    assert_close(dev.lower_bounds_, cpu.lower_bounds_, 1e-11)
    assert_close(dev.means_, cpu.means_, 1e-9)
    assert_close(dev.covariances_, cpu.covariances_, 1e-9)
    assert_close(dev.score_samples(X), cpu.score_samples(X), 1e-11)
    np.testing.assert_array_equal(dev.predict(X), cpu.predict(X))
    assert_close(dev.predict_proba(X), cpu.predict_proba(X), 1e-9, floor=1e-12)


def test_estimator_device_cuda_refuses_what_it_does_not_serve(tmp_path, small_launch):
    import fastmix
    X, *_ = make_problem("diag", seed=12, n=64)
    with pytest.raises(ValueError, match="device must be one of"):
        fastmix.GaussianMixture(2, device="gpu").fit(X)
    with pytest.raises(ValueError, match="use device='cuda'"):
        fastmix.GaussianMixture(2).partial_fit(gk.to_device(X))
    da = pytest.importorskip("dask.array")
    with pytest.raises(ValueError, match="Dask arrays"):
        fastmix.GaussianMixture(2, device="cuda").fit(da.from_array(X, chunks=32))


# ------------------------------------------------------ streaming host -> device -------------
@pytest.fixture
def small_chunks(monkeypatch):
    """Streamed chunks of 16 rows of D = 3 float64 (each 2 blocks of 8 rows)."""
    monkeypatch.setattr(gstream, "STREAM_CHUNK_BYTES", 16 * D * 8)
    monkeypatch.setattr(gstream, "STAGING_THREADS", 2)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_streamed_estep_matches_resident(problem, weighted, small_chunks, monkeypatch):
    """Host chunks staged in pinned buffers on two streams: the resident statistics up to
    rounding, bit-identical pass to pass (buffers and streams reused), float32 too."""
    from fastmix import io as sources
    kind, X64, sw, weights, means, covs = problem
    sw = sw if weighted else None
    monkeypatch.setattr(gstream, "_copy_rows", _counting(gstream._copy_rows))
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 1e-6)):
        X = X64.astype(dtype)
        monkeypatch.setattr(gstream, "STREAM_CHUNK_BYTES", 16 * D * X.itemsize)  # 16-row chunks
        params = gmm_params(weights, means, covs, kind)
        resident = fgpu.e_step_stats(X, sw, params, block_rows=8, threads=THREADS)
        data = sources.as_stream(X, sw, 8)
        with fgpu.StreamedData(data, block_rows=8, threads=THREADS) as sd:
            assert sd.capacity == 16
            gstream._copy_rows.calls.clear()
            a = sd.e_step_stats(params)
            assert len(gstream._copy_rows.calls) == -(-N // sd.capacity) >= 3  # both buffers reused
            b = sd.e_step_stats(params)
            assert sd.streamer.bytes_sent == 2 * (X.nbytes + (N * 8 if weighted else 0))
        for name in ("nk", "s1", "s2", "ll", "ws"):
            x, y = getattr(a, name), getattr(resident, name)
            assert_close(x, y, rtol, f"{kind}/{np.dtype(dtype).name}: {name}")
            assert_reproducible(x, getattr(b, name), name)


def _counting(fn):
    def wrapper(dst, src, pool):
        wrapper.calls.append(src.shape[0])
        return fn(dst, src, pool)
    wrapper.calls = []
    return wrapper


def test_staging_copy_in_threads_is_a_plain_copy(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor
    monkeypatch.setattr(gstream, "STAGING_THREADS", 3)
    src = np.random.default_rng(0).standard_normal((4096, 300))  # 9.4 MiB: split in 3
    dst = np.empty_like(src)
    with ThreadPoolExecutor(3) as pool:
        gstream._copy_rows(dst, src, pool)
    np.testing.assert_array_equal(dst, src)
    with pytest.raises(ValueError, match="exceeds the staging capacity"):
        gk.StreamedEStep(4, 2, np.float64, False)._stage(0, np.zeros((5, 2)), None)


def test_estimator_streams_files_and_data_larger_than_the_device(tmp_path, small_launch,
                                                                 small_chunks, monkeypatch):
    """device='cuda' on a .npy file, and on an in-memory array that does not fit the device
    (free memory patched to 1 KiB), streams the rows every iteration: the CPU fit to rounding;
    predict / score_samples on the file run block by block on the device."""
    import fastmix
    X, sw, *_ = make_problem("full", seed=13, n=64)
    path = tmp_path / "x.npy"
    np.save(path, X)
    kw = dict(covariance_type="full", max_iter=3, tol=0.0, random_state=0, chunk_size=8)
    cpu = fastmix.GaussianMixture(3, **kw).fit(str(path))
    used = []
    real_run = fgpu.run_em_gpu_streamed
    monkeypatch.setattr(fgpu, "run_em_gpu_streamed",
                        lambda *a, **k: used.append(1) or real_run(*a, **k))
    from_file = fastmix.GaussianMixture(3, device="cuda", **kw).fit(str(path))
    assert used == [1]
    assert_close(from_file.lower_bounds_, cpu.lower_bounds_, 1e-11)
    assert_close(from_file.covariances_, cpu.covariances_, 1e-9)
    assert_close(from_file.score_samples(str(path)), cpu.score_samples(X), 1e-11)
    np.testing.assert_array_equal(from_file.predict(str(path)), cpu.predict(X))

    monkeypatch.setattr(gk, "free_bytes", lambda: 1024)
    big = fastmix.GaussianMixture(3, device="cuda", **kw).fit(X)
    assert used == [1, 1]
    assert_close(big.lower_bounds_, cpu.lower_bounds_, 1e-11)
    assert_close(big.means_, cpu.means_, 1e-9)
    assert_close(big.predict_proba(X), cpu.predict_proba(X), 1e-9, floor=1e-12)


# ------------------------------------------------------------- GPU arrays as input -----------
def test_estimator_fits_gpu_arrays_in_place(small_launch, monkeypatch):
    """A device array (``__cuda_array_interface__``; the simulator's stand-in here) is fitted
    in place -- never uploaded again -- and gives the fit of the same rows on the host; device
    weights are accepted; predict / score on device rows run on the device."""
    import fastmix
    X, sw, *_ = make_problem("diag", seed=14, n=64)
    kw = dict(covariance_type="diag", max_iter=3, tol=0.0, random_state=0, chunk_size=16)
    cpu = fastmix.GaussianMixture(3, **kw).fit(X, sample_weight=sw)
    Xd = gk.to_device(X)
    uploads = []
    real_upload = gdev._upload
    monkeypatch.setattr(gdev, "_upload", lambda cuda, a, what: uploads.append(what)
                        or real_upload(cuda, a, what))
    dev = fastmix.GaussianMixture(3, device="cuda", **kw).fit(Xd, sample_weight=gk.require_gpu().to_device(sw))
    assert not [w for w in uploads if w.startswith("the data")]  # rows never copied again
    assert_close(dev.lower_bounds_, cpu.lower_bounds_, 1e-11)
    assert_close(dev.means_, cpu.means_, 1e-9)
    assert_close(dev.score_samples(Xd), cpu.score_samples(X), 1e-11)
    np.testing.assert_array_equal(dev.predict(Xd), cpu.predict(X))
    assert_close(dev.score(Xd), cpu.score(X), 1e-11)


def test_foreign_cuda_arrays_are_used_in_place(small_launch, monkeypatch):
    """Arrays of other libraries reach fastmix through ``__cuda_array_interface__`` only (no
    numba type): ``to_device`` views their memory (a write to the owner's memory shows through,
    nothing is uploaded), the estimator fits and predicts them in place like the same rows on
    the host, device weights included; strided or non-float ones get clear errors."""
    import fastmix
    from _gpu import ForeignDeviceArray
    cuda = gk.require_gpu()
    X, sw, *_ = make_problem("diag", seed=14, n=64)
    inner = cuda.to_device(X)
    foreign = ForeignDeviceArray(inner)
    assert not hasattr(foreign, "shape") and gk.is_device_array(foreign)
    uploads = []
    real_upload = gdev._upload
    monkeypatch.setattr(gdev, "_upload", lambda cuda, a, what: uploads.append(what)
                        or real_upload(cuda, a, what))
    Xd = gk.to_device(foreign)
    assert Xd.shape == X.shape and Xd.dtype == X.dtype
    np.testing.assert_array_equal(Xd.copy_to_host(), X)
    inner.copy_to_device(X + 1.0)  # the same memory: the view sees the owner's write
    np.testing.assert_array_equal(Xd.copy_to_host(), X + 1.0)
    inner.copy_to_device(X)
    assert uploads == []

    kw = dict(covariance_type="diag", max_iter=3, tol=0.0, random_state=0, chunk_size=16)
    cpu = fastmix.GaussianMixture(3, **kw).fit(X, sample_weight=sw)
    dev = fastmix.GaussianMixture(3, device="cuda", **kw).fit(
        foreign, sample_weight=ForeignDeviceArray(cuda.to_device(sw)))
    assert not [w for w in uploads if w.startswith("the data")]
    assert_close(dev.lower_bounds_, cpu.lower_bounds_, 1e-11)
    assert_close(dev.means_, cpu.means_, 1e-9)
    assert_close(dev.score_samples(foreign), cpu.score_samples(X), 1e-11)
    np.testing.assert_array_equal(dev.predict(foreign), cpu.predict(X))
    np.testing.assert_array_equal(inner.copy_to_host(), X)  # never modified

    with pytest.raises(ValueError, match="C-contiguous"):
        gk.to_device(ForeignDeviceArray(inner[:, :2]))
    with pytest.raises(ValueError, match="2-D float32/float64"):
        gk.to_device(ForeignDeviceArray(cuda.to_device(X.astype(np.int64))))
    with pytest.raises(ValueError, match="device sample weights must be float64"):
        gk.weights_to_device(ForeignDeviceArray(cuda.to_device(sw.astype(np.float32))), 64)


def test_gpu_array_bad_input(small_launch):
    import fastmix
    X, *_ = make_problem("diag", seed=15, n=64)
    with pytest.raises(ValueError, match="use device='cuda'"):
        fastmix.GaussianMixture(2).fit(gk.to_device(X))
    bad = X.copy()
    bad[37, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity.*row 37"):
        fastmix.GaussianMixture(2, device="cuda", max_iter=2).fit(gk.to_device(bad))
    gm = fastmix.GaussianMixture(2, device="cuda", max_iter=2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="row 37 of the device array"):
        gm.predict(gk.to_device(bad))
    with pytest.raises(ValueError, match="expecting 3 features"):
        gm.predict(gk.to_device(X[:, :2].copy()))
    with pytest.raises(ValueError, match="2-D float32/float64"):
        gm.predict(gk.require_gpu().to_device(X[:, 0].copy()))
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        fastmix.GaussianMixture(5, device="cuda").fit(gk.to_device(X[:4]))


# ------------------------------------------------------------- CUDA's launch limits ---------
def test_launch_shapes_are_checked_against_cudas_limits():
    """The simulator runs any launch shape; a GPU refuses grids over (2^31 - 1, 65535, 65535)
    blocks and blocks over (1024, 1024, 64) / 1024 threads: check_launch says which."""
    ok = [((2**31 - 1, 65535, 65535), (1024,)), (7, (32, 32)), ((1, 1, 1), (1, 1, 64)),
          (np.int64(5), np.int64(256))]
    for grid, block in ok:
        gk.check_launch(grid, block)
    bad = [((2**31, 1), 8, "grid dimension x = 2147483648"),
           ((1, 65536), 8, "grid dimension y = 65536"),
           ((1, 1, 65536), 8, "grid dimension z = 65536"),
           (0, 8, "grid dimension x = 0"),
           (1, 1025, "block dimension x = 1025"),
           (1, (1, 1025), "block dimension y = 1025"),
           (1, (1, 1, 65), "block dimension z = 65"),
           (1, (32, 33), "1056 threads per block"),
           ((1, 1, 1, 1), 8, "1 to 3 dimensions")]
    for grid, block, msg in bad:
        with pytest.raises(ValueError, match=msg):
            gk.check_launch(grid, block, "a test launch")
    with pytest.raises(TypeError, match="must be integers"):
        gk.check_launch(2.5, 8)


def test_every_launch_is_checked():
    """The wrappers launch through the check: too many threads per block is a clear error
    before anything runs (the simulator would run it)."""
    X, sw, weights, means, covs = make_problem("diag")
    kp = gmm_params(weights, means, covs, "diag").kernel_params(np.float64)
    with pytest.raises(ValueError, match="block dimension x = 1025 is outside CUDA's limit"):
        gk.estep_stats_gpu(gk.to_device(X), None, kp, threads=1025)
    with pytest.raises(ValueError, match="block dimension x = 2048"):
        gk.log_prob_gpu(gk.to_device(X), kp, threads=2048)


def test_project_puts_rows_on_grid_axis_x(monkeypatch):
    """BigLearn's projection at N = 2e6 rows (not run: the launch is recorded): 125000 row tiles
    go on grid axis x -- on y they exceed CUDA's 65535 -- and the launch passes the check."""
    from fastmix.kernels.cuda import linalg as gpu_linalg
    launches = []

    class Recorder:
        __name__ = "_project"

        def __getitem__(self, config):
            launches.append(config)
            return lambda *args: None

    class Shape:  # stands in for a device array: project reads only the shapes
        def __init__(self, *shape):
            self.shape = shape

    monkeypatch.setattr(gpu_linalg, "_project", Recorder())
    N, D, m = 2_000_000, 64, 6
    gpu_linalg.project(Shape(N, D), Shape(D, m), Shape(N, m))
    assert launches == [((125_000, 1), (16, 16), 0)]
    with pytest.raises(ValueError, match="grid dimension y = 125000"):
        gk.check_launch((1, 125_000), (16, 16))  # the former layout (rows on y)
    grid, block = gpu_linalg.project_grid(N, 2000)
    assert gk.check_launch(grid, block) == ((125_000, 125, 1), (16, 16, 1))


# ------------------------------------------------------------------ BigLearn on the GPU -----
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_marginal_rows_match_numpy(dtype):
    """(X A^T)[:, T] and X[:, T] formed on the device; D = 20 spans two 16-wide slabs, N = 37
    leaves partial tiles; a full identity marginal is the data itself (no copy)."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((37, 20)).astype(dtype)
    A = np.linalg.qr(rng.standard_normal((20, 20)))[0]
    T = np.array([0, 3, 4, 11, 17, 19])
    Xd = gk.to_device(X)
    buf = gk.marginal_buffer(Xd)
    Y = gk.marginal_rows(Xd, A, T, buf).copy_to_host()
    expect = (X.astype(np.float64) @ A.astype(dtype).astype(np.float64).T)[:, T]
    assert Y.dtype == dtype and Y.shape == (37, 6)
    assert_close(Y, expect, 1e-13 if dtype == np.float64 else 1e-6, floor=1e-6)
    np.testing.assert_array_equal(gk.marginal_rows(Xd, None, T, buf).copy_to_host(), X[:, T])
    assert gk.marginal_rows(Xd, None, np.arange(20)) is Xd


def test_biglearn_device_cuda_matches_cpu(small_launch, tmp_path):
    """All three step kinds on the device: the CPU fit to rounding, step for step."""
    import fastmix
    X, *_ = make_problem("full", seed=16, n=64)
    kw = dict(n_outer=6, n_local_steps=2, p_joint=0.3, p_marginal=0.3, p_transformed=0.4,
              init_params="kmeans", random_state=2)
    cpu = fastmix.BigLearnGaussianMixture(3, **kw).fit(X)
    dev = fastmix.BigLearnGaussianMixture(3, device="cuda", **kw).fit(X)
    assert set(cpu.step_kinds_) == {"joint", "marginal", "transformed"}
    assert dev.step_kinds_ == cpu.step_kinds_
    assert_close(dev.log_likelihoods_, cpu.log_likelihoods_, 1e-10)
    assert_close(dev.means_, cpu.means_, 1e-9)
    assert_close(dev.covariances_, cpu.covariances_, 1e-9)
    assert_close(dev.lower_bound_, cpu.lower_bound_, 1e-11)
    with pytest.raises(ValueError, match="device must be one of"):
        fastmix.BigLearnGaussianMixture(2, device="tpu").fit(X)
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(ValueError, match="needs rows that fit on the GPU"):
        fastmix.BigLearnGaussianMixture(2, device="cuda").fit(str(tmp_path / "x.npy"))


def test_biglearn_admission_counts_the_marginal_buffer(small_launch, monkeypatch):
    """BigLearn on the GPU holds the rows and a marginal buffer of as many bytes: rows are
    admitted when both fit in RESIDENT_FRACTION of the free memory (a faked free-memory
    figure here), not when the rows alone do."""
    import fastmix
    assert fgpu.RESIDENT_FRACTION * 1000 == 700
    monkeypatch.setattr(gk, "free_bytes", lambda: 1000)
    assert fgpu.fits_on_device(700) and not fgpu.fits_on_device(701)
    assert fgpu.DeviceMarginals.fits(350) and not fgpu.DeviceMarginals.fits(351)

    X, *_ = make_problem("full", seed=16, n=64)
    kw = dict(n_outer=2, n_local_steps=1, p_joint=0.2, p_marginal=0.4, p_transformed=0.4,
              init_params="kmeans", random_state=2)
    free = X.nbytes / fgpu.RESIDENT_FRACTION * 1.5  # the rows fit, rows + buffer do not
    monkeypatch.setattr(gk, "free_bytes", lambda: free)
    with pytest.raises(ValueError, match="needs rows that fit on the GPU"):
        fastmix.BigLearnGaussianMixture(3, device="cuda", **kw).fit(X)
    allocs = []
    real = gdev._alloc
    monkeypatch.setattr(gdev, "_alloc", lambda cuda, shape, dt, what: allocs.append(
        (int(np.prod(shape)) * np.dtype(dt).itemsize, what)) or real(cuda, shape, dt, what))
    free = 2 * X.nbytes / fgpu.RESIDENT_FRACTION * 1.01  # both fit
    model = fastmix.BigLearnGaussianMixture(3, device="cuda", **kw).fit(X)
    assert {"marginal", "transformed"} & set(model.step_kinds_)
    assert [n for n, what in allocs if what.startswith("the marginal rows")] == [X.nbytes]


# ----------------------------------------------------------- online EM on the GPU -----------
@pytest.mark.parametrize("kind", ["diag", "full"])
def test_online_em_and_partial_fit_on_the_gpu_match_the_cpu(kind, small_launch, monkeypatch):
    """algorithm="online" (16-row batches over a file-like stream) and partial_fit (host and
    device batches, weighted): each batch's E-step on the device, the CPU's updates to
    rounding; the device path is really taken."""
    import fastmix
    calls = []
    real = fgpu.e_step_stats
    monkeypatch.setattr(fgpu, "e_step_stats", lambda *a, **k: calls.append(1) or real(*a, **k))
    X, sw, *_ = make_problem(kind, seed=17, n=64)
    kw = dict(covariance_type=kind, max_iter=2, tol=0.0, random_state=0, chunk_size=8,
              batch_size=16)
    cpu = fastmix.GaussianMixture(3, **kw).fit(X, sample_weight=sw, algorithm="online")
    dev = fastmix.GaussianMixture(3, device="cuda", **kw).fit(X, sample_weight=sw,
                                                             algorithm="online")
    assert len(calls) == 2 * 4  # 2 passes of 4 batches
    assert_close(dev.lower_bounds_, cpu.lower_bounds_, 1e-10)
    assert_close(dev.means_, cpu.means_, 1e-9)
    assert_close(dev.covariances_, cpu.covariances_, 1e-9)

    kw = dict(covariance_type=kind, random_state=0)
    cpu = fastmix.GaussianMixture(3, **kw)
    host = fastmix.GaussianMixture(3, device="cuda", **kw)
    on_device = fastmix.GaussianMixture(3, device="cuda", **kw)
    cuda = gk.require_gpu()
    for sl in (slice(0, 24), slice(24, 48), slice(48, 64)):
        cpu.partial_fit(X[sl], sample_weight=sw[sl])
        host.partial_fit(X[sl], sample_weight=sw[sl])
        on_device.partial_fit(gk.to_device(X[sl]), sample_weight=cuda.to_device(sw[sl]))
    for m in (host, on_device):
        assert m.n_steps_ == cpu.n_steps_ == 3
        assert_close(m.lower_bound_, cpu.lower_bound_, 1e-10)
        assert_close(m.means_, cpu.means_, 1e-9)
        assert_close(m.covariances_, cpu.covariances_, 1e-9)
    bad = X[:8].copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        on_device.partial_fit(gk.to_device(bad))
    assert on_device.n_steps_ == 3  # the model is unchanged


def test_work_buffers_are_allocated_once_per_fit(monkeypatch):
    """run_em_gpu keeps its E-steps' partials and totals in one DeviceScratch: 4 iterations
    allocate them once, with the same result as fresh buffers every E-step; a new shape
    replaces the buffer of its slot instead of adding one."""
    X, sw, weights, means, covs = make_problem("full", seed=18)
    start = gmm_params(weights, means, covs, "full")
    allocs = []
    real = gdev._alloc
    monkeypatch.setattr(gdev, "_alloc", lambda cuda, shape, dt, what: allocs.append(what)
                        or real(cuda, shape, dt, what))
    kw = dict(reg_covar=1e-6, tol=0.0, max_iter=4, block_rows=BLOCK_ROWS, threads=THREADS)
    res = fgpu.run_em_gpu(X, sw, start, **kw)
    assert sum("partial statistics" in w for w in allocs) == 1
    assert sum("totals" in w for w in allocs) == 1
    p = start
    for lb in res.lower_bounds[:4]:  # fresh buffers every E-step: the same numbers
        st = fgpu.e_step_stats(X, sw, p, BLOCK_ROWS, THREADS)
        assert st.mean_log_likelihood == pytest.approx(lb, rel=1e-12)
        from fastmix._params import m_step
        p = m_step(st, 1e-6)
    scratch = gk.DeviceScratch()
    a = scratch.alloc((4, 3), np.float64, "the per-block partial statistics (4 x 3)")
    assert scratch.alloc((4, 3), np.float64, "the per-block partial statistics (4 x 3)") is a
    b = scratch.alloc((5, 3), np.float64, "the per-block partial statistics (5 x 3)")
    assert b is not a and len(scratch._bufs) == 1
    assert scratch.alloc((4, 3), np.float64, "the statistics totals", slot=1) is not a
