"""GPU kernels at their production launch shapes, on small problems.

The other GPU test modules shrink the launch shapes (8 threads, 40-row blocks) so that the
simulator can walk every code path on tiny inputs.  Here the kernels run with the constants a
fit uses -- ``DEFAULT_BLOCK_ROWS`` = 1024 rows per block and ``DEFAULT_THREADS`` = 256 threads
for the fused E-step (four kinds and lowrank) and log_prob, the GEMM path's own tiles, the SGD
kernels' 128 threads and 128-sample tiles, the grid kernel's 4096-row blocks of 128 threads --
on small problems: N = 1100 rows for the E-step (one full block and a partial one of 76 rows,
whose last 32-row tile is partial too), so that the simulator walks the index arithmetic of the
real launches: block offsets, tile strides, thread strides of 256, more (row, component) pairs
than threads.  The launch groups (``gpu_estep.PARTIAL_BYTES``) need ~10^8 statistic entries
before they split a launch, so the budget is lowered to one block per launch to take the grouped
path (block offset ``b0``) at this N.  Every launch is recorded (through ``gk.configure``) to
check the shape that ran.  Everything is checked against ``tests/reference.py`` (plain NumPy).
Each test takes ~5-20 s on the simulator (one CPU core).
"""
import sys

from _gpu import SIM, gk  # noqa: I001  (first: sets up the simulator)
import numpy as np
import pytest

import reference as ref
from _helpers import assert_close, gmm_params, perturbed_problem
from fastmix.kernels.cuda import device as gdev, estep as gpu_estep

N = 1100                      # 1024 + 76 rows: a full block and a partial one
BLOCK_ROWS = gk.DEFAULT_BLOCK_ROWS
THREADS = gk.DEFAULT_THREADS
#: K = 10 components, D = 6 features: a 32-row tile has 320 (row, component) pairs, more than
#: the 256 threads; diag: D = 9, 288 values to stage per tile (full: D = 4, for time).
K, D = 10, 6
DIMS = {"full": 4, "diag": 9}
RTOL = 1e-10


@pytest.fixture(autouse=True, scope="module")
def _fast_simulator():
    """A short GIL switch interval makes the simulator's thread hand-overs ~3x faster."""
    if not SIM:
        yield
        return
    old = sys.getswitchinterval()
    sys.setswitchinterval(5e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.fixture
def launches(monkeypatch):
    """Every launch (kernel name, grid, block) made through ``gk.configure``."""
    seen = []
    real = gdev.configure

    def recording(kernel, grid, block, stream=0):
        seen.append((getattr(kernel, "__name__", "?"), grid, block))
        return real(kernel, grid, block, stream)

    monkeypatch.setattr(gdev, "configure", recording)
    return seen


def test_production_shapes_are_the_defaults():
    """The constants these tests call production are the ones the drivers use."""
    from fastmix import gpu as fgpu
    assert (BLOCK_ROWS, THREADS) == (fgpu.DEFAULT_BLOCK_ROWS, fgpu.DEFAULT_THREADS) == (1024, 256)
    assert gpu_estep.MAX_TILE_ROWS == 32 and N % BLOCK_ROWS % 32 and N // BLOCK_ROWS == 1


@pytest.mark.parametrize("kind", ref.KINDS)
def test_fused_estep_at_production_shape_in_launch_groups(kind, launches, monkeypatch):
    """Weighted E-step statistics, 1024-row blocks of 256 threads, one block per launch (two
    launch groups, each reduced and added to the totals), against NumPy."""
    d = DIMS.get(kind, D)
    X, sw, weights, means, covs = perturbed_problem(kind, K, d, N, seed=ref.KINDS.index(kind))
    kp = gmm_params(weights, means, covs, kind).kernel_params(np.float64)
    S = gpu_estep.n_entries(kp.kind, K, d)
    monkeypatch.setattr(gpu_estep, "PARTIAL_BYTES", 8 * S)  # groups of one block
    nk, s1, s2, ll, ws = gk.estep_stats_gpu(gk.to_device(X), gk.weights_to_device(sw, N), kp,
                                            block_rows=BLOCK_ROWS, threads=THREADS,
                                            formulation="fused")
    reduce_grid = -(-S // 128)
    assert launches == [("estep_partials", 1, THREADS), ("reduce_blocks", reduce_grid, 128)] * 2
    enk, es1, es2, ell, ews = ref.estep_stats(X, sw, weights, means, covs, kind)
    assert_close(nk, enk, RTOL, f"{kind}: nk")
    assert_close(s1, es1, RTOL, f"{kind}: s1")
    assert_close(s2, es2, RTOL, f"{kind}: s2")
    assert_close(ll, ell, RTOL, f"{kind}: ll")
    assert_close(ws, ews, 1e-14, f"{kind}: ws")


@pytest.mark.parametrize("kind", ["full", "tied"])
def test_log_prob_at_production_shape(kind, launches):
    """Per-row log p, labels and responsibilities from 1024-row blocks of 256 threads."""
    X, _, weights, means, covs = perturbed_problem(kind, K, DIMS.get(kind, D), N, seed=7)
    kp = gmm_params(weights, means, covs, kind).kernel_params(np.float64)
    logp, labels, resp = gk.log_prob_gpu(gk.to_device(X), kp, want_resp=True,
                                         block_rows=BLOCK_ROWS, threads=THREADS)
    assert launches == [("log_prob", 2, THREADS)]
    elogp, eresp = ref.log_prob_resp(X, weights, means, covs, kind)
    assert_close(logp, elogp, RTOL, f"{kind}: log p")
    assert_close(resp, eresp, 1e-9, f"{kind}: responsibilities", floor=1e-12)
    np.testing.assert_array_equal(labels, np.argmax(ref.weighted_log_prob(X, weights, means, covs,
                                                                          kind), axis=1))


def test_lowrank_estep_at_production_shape(launches):
    """The lowrank (MFA) kernel, 1024-row blocks of 256 threads, weighted, against the dense
    NumPy reference (Cov[z | x] included)."""
    from fastmix._params import GMMParams, LowRankCovariance
    rng = np.random.default_rng(11)
    q = 2
    w, mu, W, psi = ref.random_mfa(rng, K, D, q, spread=1.5)
    X, _ = ref.sample_mfa(rng, w, mu, W, psi, N)
    model = (np.roll(w, 1), mu + 0.5 * rng.normal(size=mu.shape),
             W + 0.3 * rng.normal(size=W.shape), rng.uniform(0.2, 0.8, size=(K, D)))
    sw = rng.uniform(0.0, 3.0, size=N)
    sw[::11] = 0.0
    kp = GMMParams(np.asarray(model[0], float), model[1],
                   LowRankCovariance(model[2], model[3], False)).kernel_params(np.float64)
    got = gk.estep_stats_gpu(gk.to_device(X), gk.weights_to_device(sw, N), kp,
                             block_rows=BLOCK_ROWS, threads=THREADS)
    assert [(name, grid, block) for name, grid, block in launches if name != "reduce_blocks"] \
        == [("estep_partials", 2, THREADS)]
    want = ref.mfa_estep_stats(X, sw, *model)
    for name, a, b in zip(("nk", "s1", "s2", "ll", "ws"), got, want):
        assert_close(a, b, 1e-14 if name == "ws" else RTOL, f"lowrank: {name}")


def test_gemm_estep_at_production_tiles(launches):
    """The GEMM formulation of the diag E-step with its production tiles (64 x 64 density tiles
    of 4 x 4 micro-tiles over 16-feature slabs, 32 threads per row, 64 x 64 statistics tiles,
    16 row slabs) on 70 rows (row tiles 64 + 6; 14 slabs of 5 rows) and 40 components (one
    partial component tile; lanes 0-7 of a row hold two components, 8-31 one), against NumPy.
    Small: the simulator needs ~10 s for it."""
    from fastmix.kernels.cuda import gemm as gpu_gemm
    n, k, d = 70, 40, 3
    assert (gpu_gemm.CHUNK, gpu_gemm.SLABS, gpu_gemm.BM, gpu_gemm.BK, gpu_gemm.ROW_THREADS,
            gpu_gemm.SK, gpu_gemm.SF) == (65536, 16, 64, 64, 32, 64, 64)
    X, sw, weights, means, covs = perturbed_problem("diag", k, d, n, seed=5)
    kp = gmm_params(weights, means, covs, "diag").kernel_params(np.float64)
    got = gk.estep_stats_gpu(gk.to_device(X), gk.weights_to_device(sw, n), kp,
                             formulation="gemm")
    assert [(name, grid, block) for name, grid, block in launches] == [
        ("densities", (1, 2), 256), ("row_lse", 9, 256), ("stats", (1, 1, 14), 256),
        ("reduce_blocks", -(-gpu_gemm.n_entries(k, d) // 128), 128)]
    want = ref.estep_stats(X, sw, weights, means, covs, "diag")
    for name, a, b in zip(("nk", "s1", "s2", "ll", "ws"), got, want):
        assert_close(a, b, 1e-14 if name == "ws" else RTOL, f"gemm: {name}")


def test_sgd_steps_at_production_shape(launches):
    """Mini-batch SGD with the default launch shape (``SGD_THREADS`` = 128 threads,
    ``SGD_TILE_ROWS`` = 128 samples per log-likelihood block) on batches of 300 rows (three
    tiles, 128 + 128 + 44) over 450 permuted rows (a partial last batch of 150), against
    NumPy's single-sample steps averaged per batch."""
    assert (gk.SGD_THREADS, gk.SGD_TILE_ROWS) == (128, 128)
    k, d, batch, n = 4, 4, 300, 450
    eps, lam, s_min, s_max = 0.1, (1.0, 0.7, 0.5), 1e-6, 2.0
    rng = np.random.default_rng(2)
    X = rng.uniform(0, 1, size=(n, d))
    state = (rng.normal(0, 0.1, size=k), rng.uniform(0.3, 0.7, size=(k, d)),
             rng.uniform(1.0, 1.95, size=(k, d)))
    order = rng.permutation(n)
    g = ref.toroidal_smoothing(2, 0.8)
    st = gk.SGDDeviceState(*state, batch)
    out = gk.sgd_minibatch_gpu(gk.to_device(X), gk.rows_to_device(order), 0, n, st, g, False,
                               eps, *lam, s_min, s_max)
    got = [np.empty_like(a) for a in state]
    st.download(*got)
    assert sorted({(name, grid, block) for name, grid, block in launches}) == [
        ("sgd_loglik", (k, 2), 128), ("sgd_loglik", (k, 3), 128), ("sgd_update", k, 128),
        ("sgd_weights", 1, 128)]
    cur = [a.copy() for a in state]
    outs = []
    for start in range(0, n, batch):
        steps = [ref.sgd_step(x, *cur, g, False, eps, lam, -np.inf, np.inf)
                 for x in X[order[start:start + batch]]]
        cur = [np.mean([s[i] for s in steps], axis=0) for i in range(3)]
        cur[2] = np.clip(cur[2], s_min, s_max)
        outs.append(np.mean([s[3] for s in steps]))
    for a, b, what in zip(got + [out], cur + [np.array(outs)], ("xi", "mu", "s", "out")):
        assert_close(a, b, 1e-10, f"sgd: {what}")


@pytest.mark.parametrize("mode", ["em", "logp"])
def test_grid_kernel_at_production_shape_in_launch_groups(mode, launches, monkeypatch):
    """The GMM-expansion grid kernel with its defaults (``DEFAULT_GRID_BLOCK_ROWS`` = 4096
    rows per block, ``DEFAULT_GRID_THREADS`` = 128 threads) on 4200 rows (4096 + 104) of a
    1-D grid of 25 nodes, one block per launch (two launch groups), against NumPy's dense
    evaluation of every node."""
    from fastmix import kernels
    from test_gpu_expansion import dense_reference
    block_rows, threads = gk.DEFAULT_GRID_BLOCK_ROWS, gk.DEFAULT_GRID_THREADS
    assert (block_rows, threads) == (4096, 128)
    n, shape = 4200, (25,)
    rng = np.random.default_rng(8)
    X = rng.uniform(-2.4, 2.4, size=(n, 1))  # some rows beyond the outer nodes
    sw = rng.uniform(0.0, 3.0, size=n)
    sw[::7] = 0.0
    lo, h = np.array([-2.0]), np.array([4.0 / 24])
    sigma = 0.5 * h
    pi = rng.dirichlet(np.ones(25))
    pi[3] = 0.0
    with np.errstate(divide="ignore"):
        log_pi = np.log(pi / pi.sum())
    m = {"em": kernels.GRID_EM, "logp": kernels.GRID_LOGP}[mode]
    S = (0 if m == kernels.GRID_LOGP else 25) + 2
    monkeypatch.setattr(gpu_estep, "PARTIAL_BYTES", 8 * S)  # groups of one block
    logp = np.full(n, np.nan) if m == kernels.GRID_LOGP else None
    acc = gk.grid_stats_gpu(m, gk.to_device(X), gk.weights_to_device(sw, n), lo, h, shape,
                            sigma, log_pi, logp=logp, block_rows=block_rows, threads=threads)
    assert launches == [("grid_partials", 1, threads), ("reduce_blocks", 1, threads)] * 2
    nodes, llws, elogp = dense_reference(m, X, sw, lo, h, shape, sigma, log_pi)
    assert_close(acc[1], llws, RTOL, f"{mode}: ll, ws")
    if m == kernels.GRID_LOGP:
        assert_close(logp, elogp, RTOL, "log p")
    else:
        assert_close(acc[0], nodes, RTOL, "node sums")
