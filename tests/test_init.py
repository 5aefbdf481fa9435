"""Initialisation helpers: k-means++ distances, blocked variances (against direct NumPy)."""
import numpy as np
import pytest

from fastmix import init


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_kmeans_plusplus_distances_match_direct(dtype, offset, monkeypatch):
    monkeypatch.setattr(init, "SQDIST_BLOCK_BYTES", 4096)  # many row blocks
    rng = np.random.default_rng(0)
    X = (offset + rng.normal(size=(700, 13))).astype(dtype)
    X[5] = X[9]  # a duplicate row: its distance to the candidate 9 is exactly 0
    rows = [9, 100, 699]
    got = init._Distances(X)(rows)
    X64 = X.astype(np.float64)
    want = ((X64[:, None, :] - X64[rows][None, :, :]) ** 2).sum(axis=2)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * want.max())
    assert got[5, 0] == 0.0 and got[9, 0] == 0.0
    assert np.all(got >= 0)


def test_blocked_variances_match_numpy(monkeypatch):
    monkeypatch.setattr(init, "SQDIST_BLOCK_BYTES", 1024)
    rng = np.random.default_rng(1)
    X = rng.normal(loc=3.0, size=(500, 7))
    w = rng.uniform(0.1, 2.0, 500)
    np.testing.assert_allclose(init._variances(X, None), X.var(axis=0), rtol=1e-12)
    mean = np.average(X, axis=0, weights=w)
    np.testing.assert_allclose(init._variances(X, w),
                               np.average((X - mean) ** 2, axis=0, weights=w), rtol=1e-12)


def test_kmeans_plusplus_on_fewer_distinct_rows_than_k():
    X = np.repeat(np.eye(3), 20, axis=0)
    seeds = init.kmeans_plusplus(X, None, 5, np.random.default_rng(0))
    assert seeds.shape == (5, 3)
    assert {tuple(r) for r in seeds} <= {tuple(r) for r in np.eye(3)}
    assert len({tuple(r) for r in seeds}) == 3  # all distinct rows are found first
