"""SGDGaussianMixture(device="cuda") and its CUDA mini-batch step (``fastmix.kernels.cuda.sgd``).

Without a GPU the module runs on numba's CUDA simulator (``_gpu`` sets it up), so the inputs are
tiny: K = 4 components (a 2 x 2 torus), D = 3-4 features, batches of 8 rows with a partial last
one, and 3 threads per block -- fewer than the samples of a batch, the samples of a
log-likelihood tile, the features and the components, so every strided loop runs more than
once.  ``FASTMIX_TEST_GPU=real pytest tests/test_gpu_sgd.py`` runs the same tests on a GPU
(and the ``real_gpu`` one).
"""

from _gpu import compile_check, gk, real_gpu  # noqa: I001  (first: sets up the simulator)
import numpy as np
import pytest

import fastmix
import reference as ref
from _helpers import assert_close, assert_reproducible
from fastmix import sgd
from fastmix.kernels.cpu import sgd as cpu_sgd
from fastmix.kernels.cuda import device as gdev

N, D, K, BATCH = 30, 4, 4, 8          # 4 steps: 8 + 8 + 8 + 6 rows
THREADS, TILE = 3, 5                  # 2 log-likelihood tiles per full batch, 3 threads each
EPS, LAM = 0.1, (1.0, 0.7, 0.5)
S_MIN, S_MAX = 1e-6, 2.0              # s starts in [1, 1.95]: the NumPy reference clips all

#: (name, sigma on the 2 x 2 torus, exact): dense smoothing; truncated (the diagonal neighbour's
#: weight is an exact zero); g = I (argmax path, components without weight skipped); loglik.
CASES = [("smoothed", 0.8, False), ("truncated", 0.2, False), ("identity", 0.0, False),
         ("loglik", 0.8, True)]


def _problem(seed=0, n=N, d=D):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, size=(n, d))
    state = (rng.normal(0, 0.1, size=K), rng.uniform(0.3, 0.7, size=(K, d)),
             rng.uniform(1.0, 1.95, size=(K, d)))
    return X, state, rng.permutation(n)


def _gpu(X, state, g, exact, order=None, first=0, n_rows=None, threads=THREADS, tile=TILE,
         s_min=S_MIN, s_max=S_MAX):
    """The GPU steps over X[order][first:first + n_rows] (or X[first:...]): (new state, out)."""
    st = gk.SGDDeviceState(*state, BATCH, threads, tile)
    rows = None if order is None else gk.rows_to_device(order)
    if n_rows is None:
        n_rows = X.shape[0] - first
    out = gk.sgd_minibatch_gpu(gk.to_device(X), rows, first, n_rows, st, g, exact, EPS, *LAM,
                               s_min, s_max)
    new = [np.empty_like(a) for a in state]
    st.download(*new)
    return new, out


def _cpu(X, state, g, exact, s_min=S_MIN, s_max=S_MAX):
    new = [a.copy() for a in state]
    out = np.empty(-(-X.shape[0] // BATCH))
    cpu_sgd.sgd_minibatch(np.ascontiguousarray(X, dtype=np.float64), BATCH, *new, g, exact, EPS,
                          *LAM, s_min, s_max, out)
    return new, out


def _reference(X, state, g, exact):
    """Each step the mean of the batch's single NumPy steps from the same parameters, then the
    clip (tests/test_sgd_kernels.py checks this equals the CPU mini-batch kernel)."""
    cur = [a.copy() for a in state]
    outs = []
    for start in range(0, X.shape[0], BATCH):
        steps = [ref.sgd_step(x, *cur, g, exact, EPS, LAM, -np.inf, np.inf)
                 for x in X[start:start + BATCH]]
        cur = [np.mean([st[i] for st in steps], axis=0) for i in range(3)]
        cur[2] = np.clip(cur[2], S_MIN, S_MAX)
        outs.append(np.mean([st[3] for st in steps]))
    return cur, np.array(outs)


# ------------------------------------------------------------------------- the kernel -------
@pytest.mark.parametrize("name,sigma,exact", CASES, ids=[c[0] for c in CASES])
def test_gpu_step_matches_cpu_kernel_and_reference(name, sigma, exact):
    """Four steps over a permuted row order (partial last batch): the GPU state and per-step
    objectives equal the CPU kernel's on X[order] to float64 rounding, and the NumPy
    reference's."""
    X, state, order = _problem()
    g = ref.toroidal_smoothing(2, sigma)
    if name == "truncated":
        assert 0 < np.count_nonzero(g == 0) and not np.array_equal(g, np.eye(K))
    got, out = _gpu(X, state, g, exact, order=order)
    assert out.shape == (4,) and out.dtype == np.float64
    want, want_out = _cpu(X[order], state, g, exact)
    for a, b, what in zip(got + [out], want + [want_out], ("xi", "mu", "s", "out")):
        assert_close(a, b, 1e-12, f"{name}: {what} vs the CPU kernel")
    (rxi, rmu, rs), r_out = _reference(X[order], state, g, exact)
    for a, b, what in ((got[0], rxi, "xi"), (got[1], rmu, "mu"), (got[2], rs, "s"),
                       (out, r_out, "out")):
        assert_close(a, b, 1e-10, f"{name}: {what} vs the reference")
    assert not np.array_equal(got[1], state[1])
    if name == "identity":  # some component was never the best match: left exactly as it was
        assert np.any(np.all(got[1] == state[1], axis=1))


@pytest.mark.parametrize("scale,s_min,s_max,bound", [(3.0, 1.3, 10.0, 1.3),
                                                     (1.0, 1e-6, 1.5, 1.5)],
                         ids=["lower", "upper"])
def test_clipping_storage_order_offset_and_float32_rows(scale, s_min, s_max, bound):
    """Rows in storage order from an offset (21 rows: 8 + 8 + 5), float32 data on the device
    (converted to float64 on load, as the CPU path converts them); far-away rows (scale 3)
    drive s down to the lower clip, rows in [0, 1] drive it up to the upper one."""
    X, state, _ = _problem(seed=1)
    X32 = (scale * X).astype(np.float32)
    g = ref.toroidal_smoothing(2, 0.8)
    got, out = _gpu(X32, state, g, False, first=5, n_rows=21, s_min=s_min, s_max=s_max)
    want, want_out = _cpu(X32[5:26], state, g, False, s_min=s_min, s_max=s_max)
    assert out.shape == (3,)
    for a, b, what in zip(got + [out], want + [want_out], ("xi", "mu", "s", "out")):
        assert_close(a, b, 1e-12, what)
    assert np.any(got[2] == bound), "the clip bound was not reached"


def test_bit_reproducible_for_any_launch_shape():
    """Run to run, and for other thread counts and tile heights, the results are bit-identical
    (each value has one writer and a fixed order of operations)."""
    X, state, order = _problem(seed=2)
    g = ref.toroidal_smoothing(2, 0.2)
    a = _gpu(X, state, g, False, order=order)
    b = _gpu(X, state, g, False, order=order)
    c = _gpu(X, state, g, False, order=order, threads=2, tile=BATCH)
    for x, y, z in zip(a[0] + [a[1]], b[0] + [b[1]], c[0] + [c[1]]):
        assert_reproducible(x, y, "run to run")
        assert_reproducible(x, z, "another launch shape")


def test_kernel_input_errors():
    X, state, _ = _problem()
    st = gk.SGDDeviceState(*state, BATCH, THREADS, TILE)
    g = np.eye(K)
    with pytest.raises(ValueError, match="features"):
        gk.sgd_minibatch_gpu(gk.to_device(X[:, :2]), None, 0, N, st, g, False, EPS, *LAM,
                             S_MIN, S_MAX)
    with pytest.raises(ValueError, match="out of range"):
        gk.sgd_minibatch_gpu(gk.to_device(X), None, 5, N, st, g, False, EPS, *LAM, S_MIN, S_MAX)
    with pytest.raises(ValueError, match="smoothing has shape"):
        gk.sgd_minibatch_gpu(gk.to_device(X), None, 0, N, st, np.eye(K + 1), False, EPS, *LAM,
                             S_MIN, S_MAX)
    with pytest.raises(ValueError, match="inconsistent SGD state"):
        gk.SGDDeviceState(state[0][:2], *state[1:], BATCH)


# ------------------------------------------------------------------------- the estimator ----
@pytest.fixture
def small_launch(monkeypatch):
    """The estimator launches with fastmix.sgd's defaults: tiny ones on the simulator."""
    monkeypatch.setattr(sgd, "GPU_THREADS", 2)
    monkeypatch.setattr(sgd, "GPU_TILE_ROWS", BATCH)


def _data(n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.2, 0.8, size=(4, d))
    return np.clip(centres[rng.integers(0, 4, n)] + rng.normal(0, 0.05, size=(n, d)), 0, 1)


def _assert_same_fit(dev, cpu, tol=1e-9):
    assert dev.n_steps_ == cpu.n_steps_
    assert dev.sigma_ == cpu.sigma_ and dev.learning_rate_ == cpu.learning_rate_
    assert_close(dev.weights_, cpu.weights_, tol, "weights_")
    assert_close(dev.means_, cpu.means_, tol, "means_")
    assert_close(dev.precisions_, cpu.precisions_, tol, "precisions_")
    assert_close(np.array(dev.loss_curve_), np.array(cpu.loss_curve_), tol, "loss_curve_")


FITS = {
    # adaptive annealing over 14 segments of 2 steps (sigma decays), shuffled epochs
    "adaptive-shuffled": dict(n_epochs=2, anneal_window=2),
    # time schedule, loglik objective, rows in order, 1.5 epochs (partial batches of 4 and 6)
    "time-loglik-ordered": dict(n_epochs=1.5, annealing="time", objective="loglik",
                                shuffle=False),
}


@pytest.mark.parametrize("kw", list(FITS.values()), ids=list(FITS))
def test_fit_device_cuda_matches_cpu(kw, small_launch, monkeypatch):
    """device="cuda" and device="cpu" from the same random_state take the same batches in the
    same order: the same fit to rounding; the rows go to the device once per fit."""
    X = _data()
    kw = dict(batch_size=BATCH, random_state=0, **kw)
    cpu = fastmix.SGDGaussianMixture(4, **kw).fit(X)
    uploads = []
    real = gk.to_device
    monkeypatch.setattr(gk, "to_device", lambda A, *a: uploads.append(A.shape) or real(A, *a))
    dev = fastmix.SGDGaussianMixture(4, device="cuda", **kw).fit(X)
    assert uploads == [X.shape]
    _assert_same_fit(dev, cpu)
    if kw.get("annealing", "adaptive") == "adaptive":
        assert cpu.sigma_ < 0.5, "the schedule did not anneal: the test would check little"
    # inference stays on the CPU kernels
    assert_close(dev.score_samples(X), cpu.score_samples(X), 1e-9)
    np.testing.assert_array_equal(dev.predict(X), cpu.predict(X))


def test_fit_device_array_in_place_with_kmeanspp(small_launch):
    """A device array is used in place (no copy); k-means++ seeds from its rows copied to the
    host, as the CPU path seeds from the array."""
    cuda = gk.require_gpu()
    X = _data(n=48, seed=1)
    Xd = cuda.to_device(X)
    kw = dict(batch_size=BATCH, n_epochs=1, anneal_window=2, init="kmeans++", random_state=4)
    dev = fastmix.SGDGaussianMixture(4, device="cuda", **kw).fit(Xd)
    cpu = fastmix.SGDGaussianMixture(4, **kw).fit(X)
    _assert_same_fit(dev, cpu)
    run = sgd.DeviceSGD(Xd, dev._state, BATCH)
    assert run.X is Xd or (run.X.__cuda_array_interface__["data"][0]
                           == Xd.__cuda_array_interface__["data"][0])


def test_device_array_checked_on_the_device(small_launch):
    """NaN/inf in a device array: a clear error before any step (fit and partial_fit); rows far
    outside [0, 1] warn as on the host; too few rows are refused."""
    cuda = gk.require_gpu()
    X = _data(n=24, seed=3)
    bad = X.copy()
    bad[17, 2] = np.inf
    for call in ("fit", "partial_fit"):
        model = fastmix.SGDGaussianMixture(4, device="cuda", batch_size=BATCH)
        with pytest.raises(ValueError, match="NaN or infinity"):
            getattr(model, call)(cuda.to_device(bad))
        assert not hasattr(model, "means_")
    with pytest.warns(UserWarning, match="scaled to"):
        fastmix.SGDGaussianMixture(4, device="cuda", batch_size=BATCH,
                                   random_state=0).fit(cuda.to_device(10.0 * X))
    with pytest.raises(ValueError, match="minimum of 2"):
        fastmix.SGDGaussianMixture(4, device="cuda", batch_size=BATCH).fit(
            cuda.to_device(X[:1]))


def test_partial_fit_device_cuda_matches_cpu(small_launch):
    """partial_fit uploads each batch and the state; three calls (16, 16, 12 rows: a partial
    batch) continue the annealing exactly as on the CPU."""
    X = _data(n=44, seed=2)
    kw = dict(batch_size=BATCH, anneal_window=2, random_state=1)
    dev = fastmix.SGDGaussianMixture(4, device="cuda", **kw)
    cpu = fastmix.SGDGaussianMixture(4, **kw)
    for sl in (slice(0, 16), slice(16, 32), slice(32, 44)):
        dev.partial_fit(X[sl])
        cpu.partial_fit(X[sl])
    _assert_same_fit(dev, cpu)
    with pytest.raises(ValueError, match="expecting 3 features"):
        dev.partial_fit(X[:8, :2])


def test_device_cuda_refuses_what_it_does_not_serve(tmp_path):
    X = _data(n=20)
    with pytest.raises(ValueError, match="device must be one of"):
        fastmix.SGDGaussianMixture(4, device="gpu", batch_size=BATCH).fit(X)
    with pytest.raises(ValueError, match="device must be one of"):
        fastmix.SGDGaussianMixture(4, device=None, batch_size=BATCH).partial_fit(X)
    with pytest.raises(ValueError, match=r"batch_size=1 .*device='cpu'"):
        fastmix.SGDGaussianMixture(4, device="cuda").fit(X)
    with pytest.raises(ValueError, match="batch_size=1"):
        fastmix.SGDGaussianMixture(4, device="cuda", batch_size=1).partial_fit(X)
    with pytest.raises(ValueError, match="covariance_type='lpd'"):
        fastmix.SGDGaussianMixture(4, device="cuda", batch_size=BATCH, covariance_type="lpd",
                                   n_directions=1).fit(X)
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(ValueError, match="out-of-core"):
        fastmix.SGDGaussianMixture(4, device="cuda", batch_size=BATCH).fit(
            str(tmp_path / "x.npy"))
    cuda = gk.require_gpu()
    with pytest.raises(ValueError, match="2-D float32/float64"):
        fastmix.SGDGaussianMixture(4, device="cuda", batch_size=BATCH).fit(
            cuda.to_device(X.astype(np.int64)))
    with pytest.raises(ValueError, match="minimum of 2"):
        fastmix.SGDGaussianMixture(4, device="cuda", batch_size=BATCH).fit(cuda.to_device(X[:1]))
    assert fastmix.SGDGaussianMixture(4, device="cuda").get_params()["device"] == "cuda"


def test_missing_extra_error(monkeypatch):
    """Without numba-cuda the fit names the extra to install."""
    import importlib.util
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba_cuda" else real_find_spec(name, *a))
    monkeypatch.setattr(gdev, "_PROBE", {})
    with pytest.raises(gk.GPUUnavailableError, match=r"pip install 'fastmix\[cuda\]'"):
        fastmix.SGDGaussianMixture(4, device="cuda", batch_size=BATCH).fit(_data(n=20))


# ------------------------------------------------- real CUDA target, no GPU needed ----------


def test_sgd_kernels_compile_for_a_real_gpu():
    """Type inference and lowering of the three SGD kernels (float32 and float64 rows) for the
    real CUDA target, which the simulator never exercises; no atomics; PTX too where
    NVVM/NVRTC are installed."""
    compile_check("""
        from fastmix.kernels.cuda import sgd as g
        kernels = [(g.sgd_weights.py_func, (A(f64, 2), i64, A(f64, 2), b1, b1, A(f64, 1),
                    A(f64, 1), f64, f64, A(f64, 2), A(f64, 1), A(f64, 1), i64))]
        for dt in (f32, f64):
            kernels.append((g.sgd_loglik.py_func, (A(dt, 2), A(i64, 1), i64, i64, i64,
                            A(f64, 1), A(f64, 2), A(f64, 2), A(f64, 1), A(f64, 1), A(f64, 2))))
            kernels.append((g.sgd_update.py_func, (A(dt, 2), A(i64, 1), i64, i64, A(f64, 2),
                            A(f64, 2), A(f64, 2), f64, f64, f64, f64, f64, b1, A(f64, 2),
                            A(f64, 1), A(f64, 1), A(f64, 1))))
        check(kernels)
    """)


# --------------------------------------------------------------------- real GPU only --------
@real_gpu
def test_real_gpu_larger_fit_matches_cpu():
    """A problem with the default launch shape, many blocks and segments, against the CPU."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(0.2, 0.8, size=(10, 32))
    X = np.clip(centres[rng.integers(0, 10, 20_000)] + rng.normal(0, 0.05, (20_000, 32)), 0, 1)
    kw = dict(batch_size=256, n_epochs=2, random_state=0)
    dev = fastmix.SGDGaussianMixture(25, device="cuda", **kw).fit(X)
    cpu = fastmix.SGDGaussianMixture(25, **kw).fit(X)
    _assert_same_fit(dev, cpu, tol=1e-8)
