"""The fixed per-fit and per-iteration costs cut for small data (issue 16, item 3) change no
result: each shortcut against the general path (or the library call) it replaces."""
import numpy as np
import pytest
from scipy import linalg
from threadpoolctl import threadpool_info, threadpool_limits

from fastmix import GaussianMixture, em, init, kernels, kmeans
from fastmix import _params
from fastmix.io import ArraySource, Stream, as_stream


def _blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def _stats_bytes(st):
    return [np.asarray(a).tobytes() for a in (st.nk, st.s1, st.s2, st.ll, st.ws, st.centre)]


def test_weighted_draw_is_generator_choice():
    for seed in range(200):
        n = 1 + seed % 37
        w = np.random.default_rng(seed + 1000).uniform(size=n)
        if n > 1:
            w[::3] = 0.0  # zero weights: flat steps of the cumulative sum
        p = w / w.sum()
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        assert kmeans._weighted_draw(a, p) == b.choice(n, p=p)
        assert a.random() == b.random()  # the generators stay in step
    legacy = np.random.RandomState(0)  # not a Generator: rng.choice itself
    assert kmeans._weighted_draw(legacy, np.full(5, 0.2)) == \
        np.random.RandomState(0).choice(5, p=np.full(5, 0.2))


@pytest.mark.parametrize("order", ["C", "F", "flipped"])
def test_direct_lapack_calls_match_scipy(order):
    rng = np.random.default_rng(0)
    A = rng.normal(size=(7, 20))
    S = A @ A.T / 20
    if order == "F":
        S = np.asfortranarray(S)
    elif order == "flipped":
        S = S[::-1, ::-1]
    L = _params.cholesky_lower(S)
    assert L.tobytes() == linalg.cholesky(S, lower=True, check_finite=False).tobytes()
    for a, lower in ((L, True), (np.ascontiguousarray(L), True), (np.ascontiguousarray(L.T),
                                                                  False)):
        for b in (np.eye(7), rng.normal(size=(7, 3)).T.copy().T):
            x = _params.solve_triangular(a, b, lower)
            ref = linalg.solve_triangular(a, b, lower=lower, check_finite=False)
            assert x.tobytes() == ref.tobytes()


def test_direct_lapack_calls_raise_as_scipy():
    with pytest.raises(linalg.LinAlgError):
        _params.cholesky_lower(np.array([[1.0, 2.0], [2.0, 1.0]]))  # indefinite
    with pytest.raises(linalg.LinAlgError):
        _params.solve_triangular(np.array([[1.0, 0.0], [1.0, 0.0]]), np.eye(2), True)
    # other dtypes go to SciPy unchanged
    S32 = np.array([[4.0, 2.0], [2.0, 3.0]], np.float32)
    assert np.array_equal(_params.cholesky_lower(S32),
                          linalg.cholesky(S32, lower=True, check_finite=False))


def test_blas_context_sets_and_restores_the_thread_counts():
    with threadpool_limits(limits=3, user_api="blas"):
        if not _blas_threads() or set(_blas_threads()) != {3}:
            pytest.skip("no BLAS library whose thread count threadpoolctl can set")
        with kernels.blas_single_threaded():
            assert set(_blas_threads()) == {1}
            with kernels.blas_single_threaded():  # nested: nothing to set or restore
                assert set(_blas_threads()) == {1}
            assert set(_blas_threads()) == {1}
        assert set(_blas_threads()) == {3}
        assert kernels._BLAS_LIMIT["depth"] == 0


@pytest.mark.parametrize("kind", ["full", "tied", "lowrank"])
def test_scoring_runs_blas_on_one_thread(kind, monkeypatch):
    # the scoring kernels of these kinds call BLAS from fastmix's own threads, as the passes
    # do: BLAS must run single-threaded there (oversubscribed, full scoring ran ~7x slower)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6))
    gm = GaussianMixture(3, covariance_type=kind, random_state=0).fit(X)
    seen = []
    real = kernels._threads.run_ranges

    def recording(*a, **k):
        seen.append(set(_blas_threads()))
        return real(*a, **k)
    with threadpool_limits(limits=3, user_api="blas"):
        if not _blas_threads() or set(_blas_threads()) != {3}:
            pytest.skip("no BLAS library whose thread count threadpoolctl can set")
        monkeypatch.setattr(kernels._threads, "run_ranges", recording)
        gm.score_samples(X)
        gm.predict_proba(X)
        assert seen and all(s == {1} for s in seen)
        assert set(_blas_threads()) == {3}  # restored


def _sample(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(c, 1.0, (n // 3, 4)) for c in (-3.0, 0.0, 3.0)])
    return X, rng.uniform(0.5, 2.0, X.shape[0])


@pytest.mark.parametrize("weighted", [False, True])
def test_one_block_estep_equals_block_generator(weighted):
    X, w = _sample()
    w = w if weighted else None
    params = GaussianMixture(3, covariance_type="full", random_state=0).fit(X)._params()
    fast = as_stream(X, w, 16)  # validated, one block: one kernel call
    assert em._one_block(fast) is X
    slow = Stream(ArraySource(X), 16, weights=w, block_rows=64)  # blocks of 4 chunks
    assert em._one_block(slow) is None
    a = em.e_step_stats(fast, None, params)
    b = em.e_step_stats(slow, None, params)
    assert _stats_bytes(a) == _stats_bytes(b)
    assert fast.passes == 1


@pytest.mark.parametrize("kind", ["full", "diag", "spherical", "tied"])
def test_first_em_step_reuses_the_starts_estep(kind, monkeypatch):
    X, _ = _sample(240, seed=1)
    calls = []
    real = em.e_step_stats

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(em, "e_step_stats", counting)
    gm = GaussianMixture(3, covariance_type=kind, random_state=2).fit(X)
    assert len(calls) == gm.n_iter_ - 1  # the first E-step came with the start
    # the same model as EM that does its own first E-step
    real_loop = em.em_loop
    monkeypatch.setattr(em, "em_loop", lambda *a, first_stats=None, **k: real_loop(*a, **k))
    ref = GaussianMixture(3, covariance_type=kind, random_state=2).fit(X)
    assert len(calls) == gm.n_iter_ - 1 + ref.n_iter_
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert getattr(gm, name).tobytes() == getattr(ref, name).tobytes()
    assert gm.lower_bounds_ == ref.lower_bounds_


def test_start_statistics_only_when_the_start_made_every_group():
    X, _ = _sample(240, seed=1)
    first = []
    init.initial_params(X, None, 3, "diag", "kmeans", np.random.default_rng(0), 1e-6, 4096,
                        first_estep=first)
    assert len(first) == 1
    first = []  # k-means++ scores nothing
    init.initial_params(X, None, 3, "diag", "k-means++", np.random.default_rng(0), 1e-6, 4096,
                        first_estep=first)
    assert first == []
    # user means: the start's mixture is not the one EM starts from
    gm = GaussianMixture(3, covariance_type="diag", means_init=X[:3], random_state=0)
    first = []
    gm._initial(as_stream(X, None, 4096), np.random.default_rng(0), (None, X[:3], None),
                first_estep=first)
    assert first == []


@pytest.mark.parametrize("kind", ["full", "spherical"])
def test_start_scorings_side_by_side_equal_the_serial_loop(kind, monkeypatch):
    # the k-means runs' hard assignments and scoring E-steps run side by side on the threads:
    # the choice, its mixture and its statistics are those of scoring the runs one by one
    monkeypatch.setattr(init, "SCORE_THREADS_MIN", 0)  # side by side even for these few rows
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(c, 1.0, (150, 3)) for c in (-2.0, 0.0, 2.5, 5.0)])
    runs = init.kmeans_runs(X, None, 4, np.random.default_rng(1), 64)
    runs.append((runs[0][0][::-1].copy(), 0.0))  # the same centres again: scored once
    ref_ll = []
    for centres, _ in runs[:-1]:
        params = init._assign_to(as_stream(X, None, 64), centres, kind, 1e-6)
        ref_ll.append(kernels.estep_stats(X, None, params.kernel_params(X.dtype), 64)[3])
    assert len(set(ref_ll)) > 1  # the runs differ, so the choice matters
    pick = int(np.argmax(ref_ll))
    for n in (1, 2):
        with kernels.thread_limit(n):
            centres, (params, _, stats) = init._best_start(X, None, runs, kind, 1e-6, 64)
        assert centres is runs[pick][0]
        assert stats.ll == ref_ll[pick]
        ref = em.e_step_stats(X, None, params, 64)
        assert _stats_bytes(stats) == _stats_bytes(ref)
