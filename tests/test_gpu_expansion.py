"""The GMM-expansion grid kernel on the GPU (``fastmix.kernels.cuda.expansion``), its driver hooks
(``fastmix.expansion`` with ``gpu=``) and ``GMMExpansion(device="cuda")``.

Without a GPU the module runs on numba's CUDA simulator (``_gpu``), so the inputs are tiny:
N = 24 rows in blocks of 10 (two full blocks and a partial one), 4 threads per block (fewer than
the window nodes, so threads own several nodes of a row), grids of 25 (1-D) and 10 x 3 (2-D)
nodes with bandwidths below the spacing, so that windows are narrower than the grid in 1-D and in
the first dimension in 2-D, and rows beyond the outer nodes clip to them.
``FASTMIX_TEST_GPU=real`` runs the same tests on a GPU (and the ``real_gpu`` one).
"""

from _gpu import compile_check, gk, real_gpu  # noqa: I001  (first: sets up the simulator)
import numpy as np
import pytest

import fastmix
import reference as ref
from _helpers import assert_close, assert_reproducible
from fastmix import expansion, kernels
from fastmix import io as sources
from fastmix import gpu as fgpu
from fastmix.kernels.cuda import device as gdev, estep as gpu_estep, expansion as gpu_expansion

N = 24
BLOCK_ROWS, THREADS = 10, 4
MODES = {"em": kernels.GRID_EM, "kde": kernels.GRID_KDE, "logp": kernels.GRID_LOGP}


def grid_problem(D, seed=0, zero_nodes=()):
    """(X (N, D) float64, weights with zeros, lo, h, shape, sigma, log_pi with -inf at
    ``zero_nodes`` and at node 3)."""
    rng = np.random.default_rng(seed)
    shape = (25,) if D == 1 else (10, 3)
    lo = np.full(D, -2.0)
    h = 4.0 / (np.array(shape) - 1)
    sigma = h * ([0.5] if D == 1 else [0.2, 0.6])
    X = rng.uniform(-2.4, 2.4, size=(N, D))  # some rows beyond the outer nodes
    sw = rng.uniform(0.0, 3.0, size=N)
    sw[::7] = 0.0
    M = int(np.prod(shape))
    pi = rng.dirichlet(np.ones(M))
    pi[[3, *zero_nodes]] = 0.0
    with np.errstate(divide="ignore"):
        log_pi = np.log(pi / pi.sum())
    return X, sw, lo, h, shape, sigma, log_pi


def gpu_grid(mode, X, sw, lo, h, shape, sigma, log_pi, block_rows=BLOCK_ROWS, threads=THREADS):
    """(node sums (M,), [ll, ws], log p (N,) or None) from the GPU kernel."""
    logp = np.full(X.shape[0], np.nan) if mode == kernels.GRID_LOGP else None
    acc = gk.grid_stats_gpu(mode, gk.to_device(X), gk.weights_to_device(sw, X.shape[0]), lo, h,
                            shape, sigma, log_pi, logp=logp, block_rows=block_rows,
                            threads=threads)
    return acc[0], acc[1], logp


def cpu_grid(mode, X, sw, lo, h, shape, sigma, log_pi):
    logp = np.full(X.shape[0], np.nan) if mode == kernels.GRID_LOGP else None
    acc = kernels.grid_stats(mode, X, sw, lo, h, shape, sigma, log_pi, 8, logp=logp)
    return acc[0], acc[1], logp


def dense_reference(mode, X, sw, lo, h, shape, sigma, log_pi):
    """Plain NumPy: every node evaluated (no window)."""
    means = expansion.Nodes(lo, h, tuple(shape), sigma, np.zeros((0, X.shape[1]))).means()
    phi = ref.expansion_phi(X.astype(np.float64), means, sigma)
    w = np.ones(X.shape[0]) if sw is None else sw
    pi = np.exp(log_pi)
    p = phi @ pi
    llws = np.array([np.sum(w * np.log(p)), w.sum()])
    if mode == kernels.GRID_EM:
        return (w[:, None] * phi * pi / p[:, None]).sum(axis=0), llws, None
    if mode == kernels.GRID_KDE:
        phi_max = 1.0 / np.prod(sigma * np.sqrt(2 * np.pi))
        return (w[:, None] * phi).sum(axis=0) / phi_max, llws, None
    return np.zeros(len(pi)), llws, np.log(p)


# ------------------------------------------------------------------------ grid kernel -------
@pytest.mark.parametrize("D,dtype,weighted", [(1, np.float64, True), (1, np.float32, False),
                                              (2, np.float64, False), (2, np.float32, True)],
                         ids=["1d-f64-w", "1d-f32", "2d-f64", "2d-f32-w"])
def test_grid_modes_match_cpu_kernel_and_dense_reference(D, dtype, weighted):
    X64, sw, lo, h, shape, sigma, log_pi = grid_problem(D, seed=D)
    X = X64.astype(dtype)
    sw = sw if weighted else None
    W = kernels.grid_window(h, sigma, kernels.CUT[np.dtype(np.float64)])
    assert np.any(2 * W + 1 < np.array(shape)), "the window must be narrower than the grid"
    for name, mode in MODES.items():
        num, llws, logp = gpu_grid(mode, X, sw, lo, h, shape, sigma, log_pi)
        cnum, cllws, clogp = cpu_grid(mode, X, sw, lo, h, shape, sigma, log_pi)
        rnum, rllws, rlogp = dense_reference(mode, X, sw, lo, h, shape, sigma, log_pi)
        what = f"D={D} {np.dtype(dtype)} {name}"
        assert num.dtype == np.float64 and num.shape == (int(np.prod(shape)),)
        if mode != kernels.GRID_LOGP:
            assert num[3] == 0.0 or mode == kernels.GRID_KDE, what  # weight-0 node: no EM mass
            assert np.count_nonzero(num) > 5, what
        assert_close(num, cnum, 1e-13, f"{what}: vs CPU kernel")
        assert_close(llws, cllws, 1e-13, f"{what}: ll/ws vs CPU kernel")
        assert_close(num, rnum, 1e-12, f"{what}: vs dense reference")
        assert_close(llws, rllws, 1e-12, f"{what}: ll/ws vs dense reference")
        if mode == kernels.GRID_LOGP:
            assert_close(logp, clogp, 1e-13, f"{what}: log p vs CPU kernel")
            assert_close(logp, rlogp, 1e-12, f"{what}: log p vs dense reference")


@pytest.mark.parametrize("D", [1, 2])
def test_window_rule(D):
    """Rows near one node: exactly the nodes within W[d] steps of it (clipped to the grid) get
    EM mass, as on the CPU, and entry by entry (even the e^-60 ones at the window's edge) the
    sums agree with the CPU kernel's to rounding."""
    X, sw, lo, h, shape, sigma, _ = grid_problem(D, seed=20 + D)
    centre = np.array([12] if D == 1 else [7, 1])
    jitter = np.random.default_rng(D).uniform(-0.4, 0.4, size=(6, D))
    Xc = lo + (centre + jitter) * h
    log_pi = np.full(int(np.prod(shape)), -np.log(np.prod(shape)))
    num, llws, _ = gpu_grid(kernels.GRID_EM, Xc, sw[:6], lo, h, shape, sigma, log_pi)
    cnum, cllws, _ = cpu_grid(kernels.GRID_EM, Xc, sw[:6], lo, h, shape, sigma, log_pi)
    W = kernels.grid_window(h, sigma, -40.0)
    inside = np.ones(shape, bool)
    for d in range(D):
        idx = np.arange(shape[d])
        near = (idx >= centre[d] - W[d]) & (idx <= centre[d] + W[d])
        inside &= near.reshape([-1 if e == d else 1 for e in range(D)])
    assert not inside.all()
    np.testing.assert_array_equal(num != 0, inside.reshape(-1))
    np.testing.assert_array_equal(cnum != 0, inside.reshape(-1))
    np.testing.assert_allclose(num, cnum, rtol=1e-12, atol=0)
    assert_close(llws, cllws, 1e-13)


def test_node_owners_are_fixed_by_the_absolute_index():
    """The single-writer rule: the owner with residue ``own`` finds, in any window, exactly the
    nodes whose index is ``own`` modulo T -- the same thread for every row of a block."""
    for T in range(1, 9):
        for first in range(0, 40):
            for own in range(T):
                o = gpu_expansion.first_owned(own, first, T)
                assert 0 <= o < T and (first + o) % T == own


def test_bit_reproducible_and_independent_of_threads_per_block():
    """Entries have one writer that adds the block's rows in order: runs, thread counts (other
    owner splits and tile heights) and unit-vs-no weights give the same bits."""
    X, sw, lo, h, shape, sigma, log_pi = grid_problem(2, seed=5)
    X = X.astype(np.float32)
    args = (lo, h, shape, sigma, log_pi)
    a = gpu_grid(kernels.GRID_EM, X, sw, *args)
    for again in (gpu_grid(kernels.GRID_EM, X, sw, *args),
                  gpu_grid(kernels.GRID_EM, X, sw, *args, threads=3),
                  gpu_grid(kernels.GRID_EM, X, sw, *args, threads=1)):
        assert_reproducible(a[0], again[0])
        assert_reproducible(a[1], again[1])
    counts = np.minimum(2 * kernels.grid_window(h, sigma, -40.0) + 1, shape)
    splits = {gpu_expansion.thread_split(counts, t) for t in (1, 3, THREADS)}
    assert len(splits) == 3  # three different owner grids
    u = gpu_grid(kernels.GRID_KDE, X, None, *args)
    v = gpu_grid(kernels.GRID_KDE, X, np.ones(N), *args)
    assert_reproducible(u[0], v[0])
    assert_reproducible(u[1], v[1])


class _CountingReduce:
    """Stands in for gpu_estep.reduce_blocks and counts its launches."""

    def __init__(self, real):
        self.real, self.launches = real, 0

    def __getitem__(self, config):
        self.launches += 1
        return self.real[config]


def test_launch_groups_equal_one_launch_up_to_rounding(monkeypatch):
    """Partials over PARTIAL_BYTES: blocks run in fixed groups (here 2 launches of 2 blocks),
    each reduced in order and added to the totals -- the same sums up to rounding, still
    bit-reproducible; one block of all rows also agrees to rounding."""
    X, sw, lo, h, shape, sigma, log_pi = grid_problem(1, seed=6)
    args = (X[:18], sw[:18], lo, h, shape, sigma, log_pi)
    one = gpu_grid(kernels.GRID_EM, *args, block_rows=5)   # 4 blocks, one launch
    whole = gpu_grid(kernels.GRID_EM, *args, block_rows=18)  # 1 block
    counter = _CountingReduce(gpu_estep.reduce_blocks)
    monkeypatch.setattr(gpu_estep, "reduce_blocks", counter)
    monkeypatch.setattr(gpu_estep, "PARTIAL_BYTES", 2 * 8 * (int(np.prod(shape)) + 2))
    a = gpu_grid(kernels.GRID_EM, *args, block_rows=5)
    assert counter.launches == 2
    b = gpu_grid(kernels.GRID_EM, *args, block_rows=5)
    for x, y, z, u in zip(a[:2], b[:2], one[:2], whole[:2]):
        assert_reproducible(x, y)
        assert_close(x, z, 1e-14)
        assert_close(u, z, 1e-14)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # simulator: 0 * -inf
def test_rows_whose_window_has_no_weight():
    """Nodes 0..12 of weight 0: rows near the low end have s = 0 in their window -- log p is
    -inf there (as on the CPU) and they add nothing to the EM numerators."""
    X, _, lo, h, shape, sigma, log_pi = grid_problem(1, seed=7, zero_nodes=range(13))
    X[:4, 0] = [-2.3, -2.0, -1.7, -1.5]
    sw = np.ones(N)
    sw[:4] = 0.0  # ll stays finite: w log p with w = 0 counts 0 here ...
    num, llws, _ = gpu_grid(kernels.GRID_EM, X, sw, lo, h, shape, sigma, log_pi)
    cnum, cllws, _ = cpu_grid(kernels.GRID_EM, X, sw, lo, h, shape, sigma, log_pi)
    assert np.all(num[:13] == 0.0)
    assert_close(num, cnum, 1e-13)
    assert np.isnan(llws[0]) and np.isnan(cllws[0])  # ... except that 0 * -inf is NaN (as on CPU)
    _, _, logp = gpu_grid(kernels.GRID_LOGP, X, None, lo, h, shape, sigma, log_pi)
    _, _, clogp = cpu_grid(kernels.GRID_LOGP, X, None, lo, h, shape, sigma, log_pi)
    assert np.all(np.isneginf(logp[:4])) and np.all(np.isneginf(clogp[:4]))
    finite = np.isfinite(clogp)
    np.testing.assert_array_equal(np.isfinite(logp), finite)
    assert_close(logp[finite], clogp[finite], 1e-13)


def test_layout_helpers_and_window_too_wide():
    assert gpu_expansion.thread_split((11,), 4) == (4,)
    assert gpu_expansion.thread_split((3,), 128) == (4,)       # stops once a node per thread
    split = gpu_expansion.thread_split((21, 21), 128)
    assert split == (16, 8)  # 21 x 21 window: at most 2 x 3 nodes of a row per thread
    assert gpu_expansion.tile_rows(2, 21, 64) == 64
    assert gpu_expansion.tile_rows(1, 10**4, 64) == 0
    X = np.zeros((4, 1))
    with pytest.raises(ValueError, match="shared memory.*device='cpu'"):
        gk.grid_stats_gpu(kernels.GRID_EM, gk.to_device(X), None, [0.0], [1.0], (10**4,),
                          [2000.0], np.full(10**4, -np.log(1e4)))
    with pytest.raises(ValueError, match="logp of shape"):
        gk.grid_stats_gpu(kernels.GRID_LOGP, gk.to_device(X), None, [0.0], [1.0], (5,),
                          [1.0], np.full(5, -np.log(5)))


def test_column_range_on_the_device():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(N, 2)).astype(np.float32)
    lo, hi, bad = gk.column_range_gpu(gk.to_device(X), rows_per_thread=7, threads=THREADS)
    np.testing.assert_array_equal(lo, X.min(axis=0).astype(np.float64))
    np.testing.assert_array_equal(hi, X.max(axis=0).astype(np.float64))
    np.testing.assert_array_equal(bad, [0, 0])
    X[[3, 20], 1] = [np.nan, -np.inf]
    lo, hi, bad = gk.column_range_gpu(gk.to_device(X), rows_per_thread=7, threads=THREADS)
    np.testing.assert_array_equal(bad, [0, 2])
    finite = np.isfinite(X[:, 1])
    assert lo[1] == X[finite, 1].min() and hi[1] == X[finite, 1].max()


# --------------------------------------------------------------------- driver hooks ---------
@pytest.fixture
def small_launch(monkeypatch):
    """The estimator and drivers launch with fastmix.gpu's defaults: tiny ones here."""
    monkeypatch.setattr(fgpu, "DEFAULT_GRID_BLOCK_ROWS", BLOCK_ROWS)
    monkeypatch.setattr(fgpu, "DEFAULT_GRID_THREADS", THREADS)
    monkeypatch.setattr(fgpu, "DEFAULT_BLOCK_ROWS", BLOCK_ROWS)
    monkeypatch.setattr(fgpu, "DEFAULT_THREADS", THREADS)
    return expansion.gpu_launch()


@pytest.fixture
def gpu_calls(monkeypatch):
    """Counts the calls of the GPU kernel wrappers the drivers use (proof the GPU ran)."""
    calls = {}
    for name in ("grid_stats_gpu", "estep_stats_gpu", "log_prob_gpu"):
        def counted(*a, _real=getattr(gk, name), _name=name, **k):
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*a, **k)
        monkeypatch.setattr(gk, name, counted)
    return calls


def test_driver_passes_over_uploaded_stream_blocks(small_launch):
    """A host Stream of several blocks (as from a file): each block is uploaded and its sums
    added to the same accumulator; log p comes back in row order."""
    X, sw, lo, h, shape, sigma, log_pi = grid_problem(2, seed=9)
    nodes = expansion.Nodes(lo, h, shape, sigma, np.zeros((0, 2)))
    stream = sources.as_stream(X, sw, chunk_rows=8, block_rows=16)  # blocks of 16 + 14 rows
    assert len(list(stream.blocks())) == 2
    dev = expansion.weights_pass(stream, nodes, log_pi, "em", gpu=small_launch)
    cpu = expansion.weights_pass(stream, nodes, log_pi, "em")
    assert_close(dev[0], cpu[0], 1e-13)
    assert_close(dev[1], cpu[1], 1e-13)
    w = np.exp(log_pi)
    assert_close(expansion.log_prob(stream, nodes, w, gpu=small_launch),
                 expansion.log_prob(stream, nodes, w), 1e-13)
    with pytest.raises(ValueError, match="need a GPU pass"):
        expansion.weights_pass(fgpu.to_gpu(X), nodes, log_pi, "em")


# ------------------------------------------------------------ GMMExpansion(device="cuda") ----
@pytest.mark.parametrize("kw,D,weighted", [
    (dict(n_nodes=12, bandwidth=0.25, n_iter=2), 1, True),
    (dict(n_nodes=6, variant="kde"), 2, False),
], ids=["tensor-1d-em-2steps-w", "tensor-2d-kde"])
def test_estimator_cuda_matches_cpu(kw, D, weighted, small_launch, gpu_calls):
    rng = np.random.default_rng(10 + D)
    X = rng.normal(size=(N, D))
    sw = rng.uniform(0.1, 2.0, size=N) if weighted else None
    cpu = fastmix.GMMExpansion(**kw).fit(X, sample_weight=sw)
    dev = fastmix.GMMExpansion(device="cuda", **kw).fit(X, sample_weight=sw)
    assert gpu_calls == {"grid_stats_gpu": kw.get("n_iter", 1)}  # one GPU pass per step
    np.testing.assert_array_equal(dev.means_, cpu.means_)  # nodes placed on the CPU
    np.testing.assert_array_equal(dev.sigma_, cpu.sigma_)
    assert_close(dev.weights_, cpu.weights_, 1e-12)
    assert_close(dev.lower_bounds_, cpu.lower_bounds_, 1e-13)
    assert len(dev.lower_bounds_) == kw.get("n_iter", 1)
    assert_close(dev.score_samples(X), cpu.score_samples(X), 1e-13)
    assert_close(dev.score(X), cpu.score(X), 1e-13)
    assert gpu_calls == {"grid_stats_gpu": kw.get("n_iter", 1) + 2}


def test_estimator_device_arrays_used_in_place(small_launch, monkeypatch):
    """Device rows and weights: checked on the device, never uploaded again; the fit equals the
    fit of the same NumPy rows on the GPU bit for bit (same kernels, same launches)."""
    cuda = gk.require_gpu()
    rng = np.random.default_rng(12)
    X = rng.normal(size=(N, 2)).astype(np.float32)
    sw = rng.uniform(0.1, 2.0, size=N)
    host = fastmix.GMMExpansion(5, device="cuda").fit(X, sample_weight=sw)
    host_logp = host.score_samples(X)
    Xd, wd = cuda.to_device(X), cuda.to_device(sw)

    def no_upload(*a, **k):
        raise AssertionError("device rows were uploaded again")
    monkeypatch.setattr(gdev, "_upload", no_upload)
    dev = fastmix.GMMExpansion(5, device="cuda").fit(Xd, sample_weight=wd)
    np.testing.assert_array_equal(dev.means_, host.means_)  # range found on the device
    assert_reproducible(dev.weights_, host.weights_)
    assert_reproducible(np.float64(dev.lower_bound_), np.float64(host.lower_bound_))
    assert_reproducible(dev.score_samples(Xd), host_logp)
    pf = fastmix.GMMExpansion(5, device="cuda").partial_fit(Xd, sample_weight=wd)
    assert_reproducible(pf.weights_, dev.weights_)


def test_estimator_centres_from_device_rows(small_launch, gpu_calls):
    """k-means++ centres (placed on the CPU from a host copy of the device rows) and the diag
    E-step kernel: the same centres as device="cpu", weights and log p to rounding."""
    cuda = gk.require_gpu()
    rng = np.random.default_rng(13)
    X = rng.normal(size=(N, 3))
    kw = dict(n_nodes=6, random_state=0)
    cpu = fastmix.GMMExpansion(**kw).fit(X)
    dev = fastmix.GMMExpansion(device="cuda", **kw).fit(cuda.to_device(X))
    assert dev.grid_shape_ == () and dev.means_.shape == (6, 3)
    np.testing.assert_array_equal(dev.means_, cpu.means_)
    assert_close(dev.weights_, cpu.weights_, 1e-12)
    assert_close(dev.lower_bound_, cpu.lower_bound_, 1e-13)
    assert_close(dev.score_samples(X), cpu.score_samples(X), 1e-13)
    assert gpu_calls == {"estep_stats_gpu": 1, "log_prob_gpu": 1}


def test_estimator_file_and_partial_fit_on_cuda(tmp_path, small_launch, gpu_calls):
    rng = np.random.default_rng(14)
    X = rng.normal(size=(N, 1))
    kw = dict(n_nodes=10, bounds=([-3.0], [3.0]))
    ref_fit = fastmix.GMMExpansion(**kw).fit(X)
    path = tmp_path / "x.npy"
    np.save(path, X)
    from_file = fastmix.GMMExpansion(device="cuda", **kw).fit(str(path))
    assert_close(from_file.weights_, ref_fit.weights_, 1e-12)
    pf = fastmix.GMMExpansion(device="cuda", **kw)
    pf.partial_fit(X[:13]).partial_fit(X[13:])
    assert_close(pf.weights_, ref_fit.weights_, 1e-12)
    assert_close(pf.lower_bound_, ref_fit.lower_bound_, 1e-13)
    assert_close(from_file.score_samples(str(path)), ref_fit.score_samples(X), 1e-13)
    assert gpu_calls == {"grid_stats_gpu": 4}  # file fit, two partial fits, file scores


def test_estimator_errors(small_launch, monkeypatch):
    cuda = gk.require_gpu()
    rng = np.random.default_rng(15)
    X = rng.normal(size=(N, 2))
    with pytest.raises(ValueError, match="device must be one of"):
        fastmix.GMMExpansion(4, device="gpu").fit(X)
    Xd = cuda.to_device(X)
    with pytest.raises(ValueError, match="use device='cuda'"):
        fastmix.GMMExpansion(4).fit(Xd)
    with pytest.raises(ValueError, match="use device='cuda'"):
        fastmix.GMMExpansion(4).partial_fit(Xd)
    with pytest.raises(ValueError, match="needs X on the GPU too"):
        fastmix.GMMExpansion(4, device="cuda").fit(X, sample_weight=cuda.to_device(np.ones(N)))
    bad = X.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        fastmix.GMMExpansion(4, device="cuda").fit(cuda.to_device(bad))
    for w, match in ((-np.ones(N), "non-negative"), (np.zeros(N), "sums to zero")):
        with pytest.raises(ValueError, match=match):
            fastmix.GMMExpansion(4, device="cuda").fit(Xd, sample_weight=cuda.to_device(w))
    with pytest.raises(ValueError, match="C-contiguous"):
        fastmix.GMMExpansion(4, device="cuda").fit(cuda.to_device(np.asfortranarray(X)))
    with pytest.raises(ValueError, match="shared memory"):
        fastmix.GMMExpansion(6000, bandwidth=2.0, device="cuda").fit(X[:, :1])
    gm = fastmix.GMMExpansion(4, device="cuda").fit(X)
    with pytest.raises(ValueError, match="3 features"):
        gm.score_samples(cuda.to_device(rng.normal(size=(4, 3))))
    with pytest.raises(fastmix.NotFittedError):
        fastmix.GMMExpansion(4, device="cuda").score_samples(Xd)
    monkeypatch.setattr(gdev, "_PROBE", {"result": (None, "numba-cuda is not installed; "
                                                  "install fastmix's cuda extra: "
                                                  + gk.INSTALL_HINT)})
    with pytest.raises(gk.GPUUnavailableError, match=r"pip install 'fastmix\[cuda\]'"):
        fastmix.GMMExpansion(4, device="cuda").fit(X)


# ------------------------------------------------- real CUDA target, no GPU needed ----------


def test_kernels_compile_for_a_real_gpu():
    """Type inference and lowering of the grid and column-range kernels for the real CUDA
    target (sm_90), which the simulator never exercises; no atomics; PTX too where NVVM/NVRTC
    are installed."""
    compile_check("""
        from fastmix.kernels.cuda import expansion as g
        check([(g.build(2, 16, 9, 64).py_func,
                (i64, A(f32, 2), A(f64, 1), A(f64, 1), A(f64, 1), A(i64, 1), A(i64, 1),
                 A(f64, 1), A(f64, 1), f64, A(i64, 1), A(i64, 1), i64, i64, A(f64, 2),
                 A(f64, 1))),
               (g.column_range.py_func, (A(f32, 2), i64, A(f64, 2), A(f64, 2), A(i64, 2)))])
    """)


# --------------------------------------------------------------------- real GPU only --------
@real_gpu
@pytest.mark.parametrize("D", [1, 2])
def test_real_gpu_larger_problem(D):
    """Default launch shape, many blocks, a large grid: against the CPU kernel."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200_003, D)).astype(np.float32)
    shape = (4096,) if D == 1 else (256, 256)
    lo, h = np.full(D, -5.0), 10.0 / (np.array(shape) - 1)
    log_pi = np.full(int(np.prod(shape)), -np.log(np.prod(shape)))
    for mode in (kernels.GRID_EM, kernels.GRID_KDE):
        a = gk.grid_stats_gpu(mode, gk.to_device(X), None, lo, h, shape, h, log_pi)
        b = kernels.grid_stats(mode, X, None, lo, h, shape, h, log_pi, 4096)
        assert_close(a[0], b[0], 1e-11)
        assert_close(a[1], b[1], 1e-11)


def test_estimator_auto_defaults_on_cuda(small_launch, gpu_calls):
    """n_nodes="auto": the grid, bandwidth and steps are chosen on the CPU (from a host copy of
    device rows), the weight passes run on the GPU; the same model as device="cpu".  120 rows:
    the held-out selection runs (more than AUTO_MIN_ROWS)."""
    cuda = gk.require_gpu()
    rng = np.random.default_rng(15)
    X = np.concatenate([rng.normal(-1, 0.3, 60), rng.standard_t(2, 60)])[:, None]
    cpu = fastmix.GMMExpansion().fit(X)
    dev = fastmix.GMMExpansion(device="cuda").fit(cuda.to_device(X))
    assert cpu.auto_.scores and cpu.auto_.factor == dev.auto_.factor
    assert gpu_calls == {"grid_stats_gpu": cpu.n_iter_}  # the final steps, on the GPU
    np.testing.assert_array_equal(dev.means_, cpu.means_)
    np.testing.assert_array_equal(dev.sigma_, cpu.sigma_)
    assert_close(dev.weights_, cpu.weights_, 1e-12)
    assert_close(dev.score_samples(X), cpu.score_samples(X), 1e-12)
