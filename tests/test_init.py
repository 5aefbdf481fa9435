"""Initialisation helpers: k-means distances, Lloyd, hard-assignment statistics (against direct
NumPy / scikit-learn), and the choice among k-means runs."""
import numpy as np
import pytest

from fastmix import init, kernels
from fastmix import kmeans as km


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_kmeans_plusplus_matches_direct_reference(dtype, offset, weighted):
    """Same draws, same seeds as greedy k-means++ on direct distances (the expansion about the
    sample mean loses nothing that changes a choice, even 1e4 away from the origin)."""
    import reference as ref
    rng = np.random.default_rng(0)
    X = (offset + rng.normal(size=(700, 13))).astype(dtype)
    X[5] = X[9]
    w = rng.uniform(0.1, 2.0, 700) if weighted else None
    got = km.kmeans_plusplus(X, w, 8, np.random.default_rng(3), n_trials=4)
    want = ref.kmeans_plusplus(X.astype(np.float64), w, 8, np.random.default_rng(3), 4)
    np.testing.assert_array_equal(got, X[want].astype(np.float64))


def test_blocked_variances_match_numpy():
    rng = np.random.default_rng(1)
    X = rng.normal(loc=3.0, size=(500, 7))
    w = rng.uniform(0.1, 2.0, 500)
    dist = km.Distances(X, 37)
    np.testing.assert_allclose(km.variances(dist, None), X.var(axis=0), rtol=1e-12)
    mean = np.average(X, axis=0, weights=w)
    np.testing.assert_allclose(km.variances(dist, w),
                               np.average((X - mean) ** 2, axis=0, weights=w), rtol=1e-12)


def test_kmeans_plusplus_on_fewer_distinct_rows_than_k():
    X = np.repeat(np.eye(3), 20, axis=0)
    seeds = init.kmeans_plusplus(X, None, 5, np.random.default_rng(0))
    assert seeds.shape == (5, 3)
    assert {tuple(r) for r in seeds} <= {tuple(r) for r in np.eye(3)}
    assert len({tuple(r) for r in seeds}) == 3  # all distinct rows are found first


def _direct_assign(X, C):
    d = ((X.astype(np.float64)[:, None, :] - C[None, :, :]) ** 2).sum(axis=2)
    return d.argmin(axis=1), d.min(axis=1)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_assign_matches_direct(dtype, weighted):
    rng = np.random.default_rng(3)
    X = (rng.normal(size=(1000, 5)) + 5.0).astype(dtype)
    C = X[[3, 400, 777]].astype(np.float64) + 0.1
    w = rng.uniform(0.1, 2.0, 1000) if weighted else None
    labels, mind, nk, s1 = km.assign(km.Distances(X, 100), C, w)
    lab, d = _direct_assign(X, C)
    np.testing.assert_array_equal(labels, lab)
    np.testing.assert_allclose(mind, d, rtol=1e-9, atol=1e-9)
    ww = np.ones(1000) if w is None else w
    np.testing.assert_allclose(nk, np.bincount(lab, ww, 3), rtol=1e-12)
    for k in range(3):
        np.testing.assert_allclose(s1[k], (ww[lab == k, None] * X[lab == k]).sum(axis=0),
                                   rtol=1e-9)


def test_lloyd_reaches_sklearn_fixed_point():
    """From the same seeds, Lloyd converges to scikit-learn's centres."""
    KMeans = pytest.importorskip("sklearn.cluster").KMeans
    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(c, 1.0, size=(300, 4)) for c in (0.0, 4.0, 9.0)])
    seeds = X[[0, 1, 2]].copy()  # three rows of one cluster: Lloyd has to move them far
    centres, inertia, n_iter = km.lloyd(km.Distances(X, 128), None, seeds.copy(), 300, 0.0)
    ref = KMeans(3, init=seeds, n_init=1, tol=0.0, algorithm="lloyd").fit(X)
    order = np.argsort(centres[:, 0])
    np.testing.assert_allclose(centres[order], ref.cluster_centers_[np.argsort(
        ref.cluster_centers_[:, 0])], rtol=1e-10)
    np.testing.assert_allclose(inertia, ref.inertia_, rtol=1e-10)
    assert 1 < n_iter < 300


def test_lloyd_moves_an_empty_cluster_to_the_farthest_row():
    X = np.array([[0.0], [0.1], [0.2], [10.0]])
    seeds = np.array([[0.1], [50.0]])  # the second centre is nobody's nearest
    centres, _, _ = km.lloyd(km.Distances(X, 2), None, seeds, 1, 0.0)
    assert centres[1, 0] == 10.0  # the row farthest from its centre
    assert centres[0, 0] == pytest.approx(10.3 / 4)  # the mean of every row


@pytest.mark.parametrize("kind", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hard_stats_match_the_reference(kind, dtype):
    import reference as ref
    rng = np.random.default_rng(5)
    X = (rng.normal(size=(2000, 6)) * rng.uniform(0.5, 3, 6) + 2.0).astype(dtype)
    w = rng.uniform(0.0, 2.0, 2000)
    C = X[[10, 500, 1500, 1999]].astype(np.float64)
    kp = kernels.nearest_params(C, X.dtype, kernels.KIND_CODES[kind])
    want = ref.nearest_stats(X.astype(np.float64), w, C, kind, kp.g64)
    acc = kernels.Accumulator(kp.kind, 4, 6)
    got = km.hard_stats(X, w, kp.means64, kp.kind, kp.g64, 300, acc).result()
    for a, b, name in zip(got, want, ("nk", "s1", "s2", "ll", "ws")):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=name)


def test_start_is_chosen_by_likelihood_not_inertia():
    """Of two sets of centres, the one whose mixture has the higher log-likelihood wins even
    when its inertia is much larger: a tight cluster beside a long one."""
    rng = np.random.default_rng(6)
    X = np.concatenate([rng.normal(0.0, 0.001, size=(60, 2)),
                        rng.normal([0, 8], [1.5, 6.0], size=(600, 2))])
    tight_apart = np.array([[0.0, 0.0], [0.0, 8.0]])   # the tight cluster has its own centre
    halves = np.array([[0.0, 2.2], [0.0, 12.25]])      # the long cluster cut in two
    inertia = [float(((X[:, None] - C) ** 2).sum(axis=2).min(axis=1).sum())
               for C in (tight_apart, halves)]
    assert inertia[1] < 0.7 * inertia[0]
    runs = [(tight_apart, inertia[0]), (halves, inertia[1])]
    for order in (runs, runs[::-1]):
        assert init._best_start(X, None, order, "full", 1e-6, 4096)[0] is tight_apart
    assert min(runs, key=lambda r: r[1])[0] is halves  # what choosing by inertia would give


def test_runs_ending_on_the_same_centres_are_scored_once(monkeypatch):
    """Runs whose centres are the same set (in any order) start the same mixture: only the
    first is scored, and the choice is the one scoring every run would make."""
    rng = np.random.default_rng(9)
    X = np.concatenate([rng.normal(c, 1.0, size=(200, 2)) for c in (0.0, 6.0, 12.0)])
    A = np.array([[0.0, 0.0], [6.0, 6.0], [12.0, 12.0]])
    B = np.array([[0.0, 0.0], [3.0, 3.0], [12.0, 12.0]])
    runs = [(B, 1.0), (A, 1.0), (A[[2, 0, 1]].copy(), 1.0), (B[::-1].copy(), 1.0)]
    calls = []
    real = kernels.estep_stats

    def counting(*args, **kw):
        calls.append(1)
        return real(*args, **kw)
    monkeypatch.setattr(init.kernels, "estep_stats", counting)
    best, _ = init._best_start(X, None, runs, "diag", 1e-6, 4096)
    assert len(calls) == 2
    assert best is A


@pytest.mark.parametrize("weighted", [False, True])
def test_lloyd_runs_side_by_side_match_lone_runs(weighted):
    """Several Lloyd runs sharing each pass (assign of an (S, K, D) stack) reach the same
    centres as each run alone, with per-run stopping."""
    rng = np.random.default_rng(8)
    X = np.concatenate([rng.normal(c, 1.0, size=(400, 3)) for c in (0.0, 3.0, 7.0, 12.0)])
    w = rng.uniform(0.2, 2.0, X.shape[0]) if weighted else None
    dist = km.Distances(X, 300)
    starts = [X[rng.choice(X.shape[0], 4, replace=False)].copy() for _ in range(5)]
    together = km.lloyd_many(dist, w, starts, 100, 1e-9)
    for start, (c, inertia, n_iter) in zip(starts, together):
        alone = km.lloyd(dist, w, start.copy(), 100, 1e-9)
        np.testing.assert_allclose(c, alone[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(inertia, alone[1], rtol=1e-12)
        assert n_iter == alone[2]
    labels, mind, nk, s1 = km.assign(dist, np.stack(starts), w)
    for j, start in enumerate(starts):
        one = km.assign(dist, start, w)
        np.testing.assert_array_equal(labels[j], one[0])
        np.testing.assert_allclose(s1[j], one[3], rtol=1e-12, atol=1e-12)
