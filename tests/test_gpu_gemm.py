"""The GEMM formulation of the diagonal E-step on the GPU (``fastmix.kernels.cuda.gemm``).

Without a GPU the module runs on numba's CUDA simulator (``_gpu`` sets it up), so the problem
is tiny and the tiles are made tinier through the module's constants (``TINY``): N = 50 rows,
D = K = 5; 40-row chunks (40 + 10: a partial last chunk); density tiles of 16 rows x 4
components over 4-feature slabs (rows 16 + 16 + 8, components 4 + 1, features 4 + 1), 4 x 2
register micro-tiles; 2 threads per row in the log-sum-exp (components 0, 2, 4 and 1, 3 and an
empty slot); statistics
tiles of 4 components x 4 features (4 + 1 each way), 2 x 2 micro-tiles, 8-row staging over 2
row slabs per chunk (20 = 8 + 8 + 4 rows, 5 = 5); a slab reduction of 32 threads (57 entries:
2 blocks).  With ``FASTMIX_TEST_GPU=real`` the same tests run on the device, plus one with the
default launch constants (``real_gpu``).
"""
import contextlib
import sys

from _gpu import SIM, compile_check, gk, real_gpu  # noqa: I001  (first: sets up the simulator)
import numpy as np
import pytest

import reference as ref
from _helpers import assert_close, assert_reproducible, gmm_params, perturbed_problem
from fastmix import kernels
from fastmix.kernels.cuda import gemm as gpu_gemm, stream as gstream

N, D, K = 50, 5, 5
GPU_RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-4}
NAMES = ("nk", "s1", "s2", "ll", "ws")
#: Launch constants of the tests (see the module docstring).
TINY = dict(CHUNK=40, SLABS=2, BM=16, BK=4, BD=4, TM=4, TN=2, ROW_THREADS=2, ROWS_PER_BLOCK=8,
            SK=4, SF=4, SR=8, TK=2, TF=2, REDUCE_THREADS=32)
#: Other tiles: one chunk of 50 rows; 32 x 8 density tiles of 8 x 4 micro-tiles over 2-feature
#: slabs; 8 threads per row (a 3-level tree, lanes 5-7 empty); 6 x 6 statistics tiles of 3 x 3
#: micro-tiles, 3 slabs (17 + 17 + 16 rows) staged 5 rows at a time; 16 reduction threads.
OTHER = dict(CHUNK=64, SLABS=3, BM=32, BK=8, BD=2, TM=8, TN=4, ROW_THREADS=8, ROWS_PER_BLOCK=2,
             SK=6, SF=6, SR=5, TK=3, TF=3, REDUCE_THREADS=16)


@pytest.fixture(autouse=True, scope="module")
def _fast_simulator():
    """The simulator runs CUDA threads as Python threads that hand the GIL over at every
    barrier; a short switch interval makes that ~3x faster (restored afterwards).  Its
    shared-array table is made thread-safe by ``_gpu`` for every GPU test module."""
    if not SIM:
        yield
        return
    old = sys.getswitchinterval()
    sys.setswitchinterval(5e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@contextlib.contextmanager
def tiles(**consts):
    """gpu_gemm's launch constants set to ``consts`` (plans made inside take them)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in consts.items():
            assert hasattr(gpu_gemm, name), name
            mp.setattr(gpu_gemm, name, value)
        yield


def problem(seed=0, n=N):
    X, sw, weights, means, covs = perturbed_problem("diag", K, D, n, seed)
    return X, sw, weights, means, covs


def params(weights, means, covs, dtype):
    kp = gmm_params(weights, means, covs, "diag").kernel_params(dtype)
    assert gpu_gemm.applies(kp), "the test model must have a shared centre"
    return kp


def gemm_stats(X, sw, kp, consts=TINY):
    """Statistics through EStepPlan with formulation="gemm" (checked to be the path taken)."""
    with tiles(**consts):
        plan = gk.EStepPlan(kp, X.dtype, formulation="gemm")
    assert plan.formulation == "gemm"
    Xd = gk.to_device(X)
    wd = gk.weights_to_device(sw, X.shape[0])
    out = plan.totals()
    plan.launch(Xd, wd, plan.partials(X.shape[0]), out)
    return plan.unpack(out.copy_to_host())


def fused_stats(X, sw, kp):
    return gk.estep_stats_gpu(gk.to_device(X), gk.weights_to_device(sw, X.shape[0]), kp,
                              block_rows=40, threads=8, formulation="fused")


_CACHE = {}


def cached(dtype, weighted):
    """(X, sw, model, kp, GEMM statistics) of the standard problem, computed once."""
    key = (np.dtype(dtype).name, weighted)
    if key not in _CACHE:
        X64, sw, weights, means, covs = problem()
        X = X64.astype(dtype)
        sw = sw if weighted else None
        kp = params(weights, means, covs, X.dtype)
        _CACHE[key] = (X, sw, (weights, means, covs), kp, gemm_stats(X, sw, kp))
    return _CACHE[key]


# ---------------------------------------------------------------------------- statistics -----
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_gemm_stats_match_reference_cpu_and_fused(dtype, weighted):
    """The GEMM path against the float64 NumPy reference, the CPU kernel and the fused GPU
    kernel, on the same (rounded) data: the CPU layout, to the dtype's rounding."""
    X, sw, (weights, means, covs), kp, got = cached(dtype, weighted)
    rtol = GPU_RTOL[X.dtype]
    want = ref.estep_stats(X.astype(np.float64), sw, weights, means, covs, "diag")
    cpu = kernels.estep_stats(X, sw, kp, 16)
    fused = fused_stats(X, sw, kp)
    assert got[2].shape == kernels.s2_shape(kernels.DIAG, K, D)
    for i, name in enumerate(NAMES):
        a = got[i]
        assert np.asarray(a).dtype == np.float64, name
        assert_close(a, want[i], rtol, f"reference: {name}")
        assert_close(a, cpu[i], rtol if X.dtype == np.float32 else 1e-12, f"cpu: {name}")
        assert_close(a, fused[i], rtol if X.dtype == np.float32 else 1e-12, f"fused: {name}")
    assert_close(got[4], want[4], 1e-14, "ws")


def test_bit_reproducible_and_unit_weights():
    """A second run gives the same bits; unit weights the bits of no weights."""
    X, sw, _, kp, first = cached(np.float32, True)
    for a, b, name in zip(first, gemm_stats(X, sw, kp), NAMES):
        assert_reproducible(a, b, name)
    X, _, _, kp, none = cached(np.float32, False)
    for a, b, name in zip(none, gemm_stats(X, np.ones(N), kp), NAMES):
        assert_reproducible(a, b, name)


def test_zero_responsibility_components():
    """A component of weight 0 (log-density -inf) and one far from every row (responsibility
    cut to exactly 0): nk, s1 and s2 exactly 0 for both, the rest as the CPU kernel."""
    X, sw, weights, means, covs = problem(seed=3)
    weights = weights.copy()
    weights[1] = 0.0
    means = means.copy()
    means[3] = X.mean(axis=0) + 25.0  # ~25 sigma away per feature, still a shared centre in f64
    kp = params(weights, means, covs, np.float64)
    got = gemm_stats(X, sw, kp)
    for k in (1, 3):
        assert got[0][k] == 0.0 and not got[1][k].any() and not got[2][k].any(), k
    assert got[0].min(initial=1.0, where=np.isin(np.arange(K), (1, 3), invert=True)) > 0.0
    for a, b, name in zip(got, kernels.estep_stats(X, sw, kp, 16), NAMES):
        assert_close(a, b, 1e-12, name)


def test_tile_shapes_only_change_rounding():
    """Other chunk, tile, micro-tile, row-thread and slab shapes: the same statistics up to
    float64 rounding."""
    X, sw, _, kp, first = cached(np.float64, True)
    for a, b, name in zip(first, gemm_stats(X, sw, kp, OTHER), NAMES):
        assert_close(a, b, 1e-13, name)


def test_streamed_gemm_matches_resident(monkeypatch):
    """StreamedEStep with formulation="gemm": 24-row host blocks (24 + 24 + 2) cut into 16-row
    chunks (16 + 8) on the two streams, each stream with its own scratch buffers: the resident
    statistics up to rounding, the same bits pass after pass."""
    X, sw, _, kp, resident = cached(np.float64, True)
    monkeypatch.setattr(gstream, "STREAM_CHUNK_BYTES", 24 * D * 8)
    capacity = gk.stream_chunk_rows(D, X.dtype, block_rows=8)
    assert capacity == 24
    streams = []
    real_launch = gpu_gemm.GemmEStep.launch

    def launch(self, Xd, wd, scratch, out, stream=0):
        streams.append((stream, id(scratch)))
        return real_launch(self, Xd, wd, scratch, out, stream)

    monkeypatch.setattr(gpu_gemm.GemmEStep, "launch", launch)
    kernel_streams = []  # the stream of every kernel launch, recorded from its configuration

    class Recorded:
        def __init__(self, kern):
            self.kern = kern

        def __getitem__(self, config):
            kernel_streams.append(config[2])
            return self.kern[config]

    real_build = gpu_gemm.build
    monkeypatch.setattr(gpu_gemm, "build", lambda *a: tuple(map(Recorded, real_build(*a))))
    monkeypatch.setattr(gpu_gemm, "reduce_blocks", Recorded(gpu_gemm.reduce_blocks))
    blocks = [(X[i:i + capacity], sw[i:i + capacity]) for i in range(0, N, capacity)]
    with tiles(**dict(TINY, CHUNK=16)), gk.StreamedEStep(capacity, D, X.dtype, True,
                                                         block_rows=8, threads=8,
                                                         formulation="gemm") as se:
        a = se.estep(blocks, kp)
        b = se.estep(blocks, kp)
        assert len(streams) == 6  # 3 blocks a pass, block j on stream j % 2 with its scratch
        for i, (stream, scratch) in enumerate(streams):
            assert stream is se.streams[i % 3 % 2]
            assert scratch == streams[3 * (i // 3) + i % 3 % 2][1]  # one set per stream a pass
        assert streams[0][1] != streams[1][1]
        # block j: 2 chunks (16 + 8 rows) or 1 (2 rows) of 4 kernels each, all on its stream
        chunks = [2, 2, 1] * 2
        assert kernel_streams == [s for (s, _), c in zip(streams, chunks) for _ in range(4 * c)]
    for x, y, z, name in zip(a, b, resident, NAMES):
        assert_reproducible(x, y, name)
        assert_close(x, z, 1e-12, name)


# ---------------------------------------------------------------------------- selection -----
def big_params(K_, D_, dtype=np.float32, spread=0.3):
    rng = np.random.default_rng(0)
    means = spread * rng.normal(size=(K_, D_))
    return gmm_params(np.full(K_, 1.0 / K_), means, np.ones((K_, D_)), "diag").kernel_params(dtype)


def test_auto_selection_thresholds(monkeypatch):
    """"auto" takes the GEMM path for diag with a shared centre from K >= GEMM_MIN_K and
    K D >= GEMM_MIN_KD, the fused kernel below; "fused" / "gemm" force where they apply."""
    choose = gpu_gemm.choose_formulation
    assert (gpu_gemm.GEMM_MIN_K, gpu_gemm.GEMM_MIN_KD) == (128, 4096)  # the documented values
    assert choose(big_params(128, 32)) == "gemm"
    assert choose(big_params(127, 64)) == "fused"      # K below GEMM_MIN_K
    assert choose(big_params(128, 31)) == "fused"      # K D = 3968 below GEMM_MIN_KD
    assert choose(big_params(128, 32), "fused") == "fused"
    assert choose(big_params(4, 2), "gemm") == "gemm"
    with pytest.raises(ValueError, match="formulation must be one of"):
        choose(big_params(4, 2), "cublas")
    with pytest.raises(ValueError, match="formulation must be one of"):
        gk.StreamedEStep(4, 2, np.float64, False, formulation="GEMM")
    # the plan follows the selection, and "auto" above the thresholds runs the GEMM kernels
    X, sw, _, kp, forced = cached(np.float64, True)
    assert gk.EStepPlan(kp, X.dtype).formulation == "fused"
    monkeypatch.setattr(gpu_gemm, "GEMM_MIN_K", K)
    monkeypatch.setattr(gpu_gemm, "GEMM_MIN_KD", K * D)
    with tiles(**TINY):
        assert gk.EStepPlan(kp, X.dtype).formulation == "gemm"
        auto = gk.estep_stats_gpu(gk.to_device(X), gk.weights_to_device(sw, N), kp)
    for a, b, name in zip(auto, forced, NAMES):
        assert_reproducible(a, b, name)
    monkeypatch.setattr(gpu_gemm, "GEMM_MIN_KD", K * D + 1)
    assert gk.EStepPlan(kp, X.dtype).formulation == "fused"


def test_without_a_shared_centre_falls_back_to_fused():
    """No shared centre (means too far apart for the expansion), or another kind: even a
    forced "gemm" runs the fused kernel, with its bits."""
    far = big_params(3, 2, np.float32, spread=400.0)
    assert far.g64.shape == (0,) and not gpu_gemm.applies(far)
    assert gpu_gemm.choose_formulation(far, "gemm") == "fused"
    X, sw, weights, means, covs = problem(seed=5)
    kp = params(weights, means, covs, np.float64)
    kp = kp._replace(g64=np.zeros(0))  # the same model without a shared centre
    assert gk.EStepPlan(kp, np.float64, formulation="gemm").formulation == "fused"
    a = gk.estep_stats_gpu(gk.to_device(X), None, kp, block_rows=40, threads=8,
                           formulation="gemm")
    for x, y, name in zip(a, fused_stats(X, None, kp), NAMES):
        assert_reproducible(x, y, name)
    full = gmm_params(weights, means, np.stack([np.diag(c) for c in covs]),
                      "full").kernel_params(np.float64)
    assert gk.EStepPlan(full, np.float64, formulation="gemm").formulation == "fused"


def test_scratch_smaller_than_a_chunk_is_refused():
    X, sw, _, kp, _ = cached(np.float64, True)
    with tiles(**TINY):
        plan = gk.EStepPlan(kp, X.dtype, formulation="gemm")
    with pytest.raises(ValueError, match="scratch buffers hold 8 rows, a chunk needs 40"):
        plan.launch(gk.to_device(X), gk.weights_to_device(None, N), plan.partials(8),
                    plan.totals())


@real_gpu
def test_real_gpu_default_tiles_match_cpu_and_fused():
    """The default chunk and tiles on a larger problem (K = 130, D = 32: partial tiles, two
    chunks), float32, against the CPU kernel and the fused GPU kernel."""
    rng = np.random.default_rng(0)
    w, mu, cov = ref.random_model(rng, "diag", 130, 32, spread=0.5)
    X = ref.sample_model(rng, w, mu, cov, "diag", gpu_gemm.CHUNK + 4_321).astype(np.float32)
    kp = params(w, mu, cov, np.float32)
    assert gpu_gemm.choose_formulation(kp) == "gemm"
    Xd = gk.to_device(X)
    a = gk.estep_stats_gpu(Xd, None, kp)
    b = kernels.estep_stats(X, None, kp, 4096)
    c = gk.estep_stats_gpu(Xd, None, kp, formulation="fused")
    for x, y, z, name in zip(a, b, c, NAMES):
        assert_close(x, y, GPU_RTOL[np.dtype(np.float32)], f"cpu: {name}")
        assert_close(x, z, GPU_RTOL[np.dtype(np.float32)], f"fused: {name}")


# ------------------------------------------------- real CUDA target, no GPU needed ----------


def test_gemm_kernels_compile_for_a_real_gpu():
    """Type inference and lowering of the three kernels (float32 data) with the default tiles
    for the real CUDA target (the simulator never types them); no atomics; PTX (sm_90) too when
    NVRTC is installed."""
    compile_check("""
        from fastmix.kernels.cuda import gemm as g
        dt = f32  # float64 data change only the dtype of X, g, W and the micro-tiles
        dens, lse, stats = g.build("float32", 70, 9, g.Tiles.current())
        check([(dens.py_func, (A(dt, 2), A(dt, 1), A(dt, 2), A(f64, 1), i64, i64, A(f64, 2))),
               (lse.py_func, (A(f64, 2), A(f64, 1), i64, i64, f64, A(f64, 2))),
               (stats.py_func, (A(dt, 2), A(f64, 1), A(f64, 2), A(f64, 2), i64, i64, i64,
                                A(f64, 2)))])
    """)
