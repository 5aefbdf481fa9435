"""Every estimator x every input kind GaussianMixture accepts: the fit equals the in-memory fit
(bit for bit where the passes see the same chunks; to rounding on Dask, whose block sums are
added in another order), or a clear ValueError.  GPU arrays: tests/test_gpu_inputs.py."""
import warnings

import numpy as np
import pytest

import fastmix
from fastmix.cli import make_blobs

from _helpers import assert_close

N, D = 600, 3

ESTIMATORS = {
    "GaussianMixture": lambda: fastmix.GaussianMixture(3, max_iter=4, tol=0.0, random_state=0),
    "BigLearnGaussianMixture": lambda: fastmix.BigLearnGaussianMixture(3, n_outer=4,
                                                                       random_state=0),
    "SGDGaussianMixture": lambda: fastmix.SGDGaussianMixture(4, n_epochs=1.5, random_state=0),
    "GMMExpansion": lambda: fastmix.GMMExpansion(9, grid="kmeans++", random_state=0),
}
ATTRS = {
    "GaussianMixture": ("weights_", "means_", "covariances_", "lower_bounds_"),
    "BigLearnGaussianMixture": ("weights_", "means_", "covariances_", "log_likelihoods_",
                                "lower_bound_"),
    "SGDGaussianMixture": ("weights_", "means_", "covariances_", "loss_curve_"),
    "GMMExpansion": ("weights_", "means_", "sigma_", "lower_bounds_"),
}


@pytest.fixture(scope="module")
def X():
    X, _, _, _ = make_blobs(N, D, 3, random_state=5)
    return (X - X.min(0)) / (X.max(0) - X.min(0))  # SGD's defaults assume [0, 1]


@pytest.fixture(scope="module")
def reference(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastmix.ConvergenceWarning)
        return {name: make().fit(X) for name, make in ESTIMATORS.items()}


def _npy(X, tmp):
    p = tmp / "x.npy"
    np.save(p, X)
    return p


def _memmap(X, tmp):
    return np.load(_npy(X, tmp), mmap_mode="r")


def _h5(X, tmp):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp / "x.h5", "w") as f:
        f.create_dataset("g/x", data=X, chunks=(100, D))
    return f"{tmp / 'x.h5'}:/g/x"


def _zarr(X, tmp):
    zarr = pytest.importorskip("zarr")
    z = zarr.open_array(str(tmp / "x.zarr"), mode="w", shape=X.shape, chunks=(250, D),
                        dtype=X.dtype)
    z[:] = X
    return str(tmp / "x.zarr")


def _parquet(X, tmp):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({f"x{j}": X[:, j] for j in range(D)}), tmp / "x.parquet",
                   row_group_size=170)
    return tmp / "x.parquet"


def _csv(X, tmp):
    pytest.importorskip("pyarrow.csv")
    np.savetxt(tmp / "x.csv", X, delimiter=",", header="a,b,c", comments="", fmt="%.17g")
    return str(tmp / "x.csv")


def _chunks(X, tmp):
    return [X[i:i + 130] for i in range(0, N, 130)]


def _callable(X, tmp):
    return lambda: (X[i:i + 77] for i in range(0, N, 77))


def _dask(X, tmp):
    da = pytest.importorskip("dask.array")
    return da.from_array(X, chunks=(140, D))


INPUTS = {"ndarray": lambda X, tmp: X.copy(), "memmap": _memmap, "npy": _npy, "hdf5": _h5,
          "zarr": _zarr, "parquet": _parquet, "csv": _csv, "chunk list": _chunks,
          "callable": _callable, "dask": _dask}


@pytest.mark.parametrize("kind", list(INPUTS))
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_every_estimator_fits_every_input(X, reference, tmp_path, name, kind):
    data = INPUTS[kind](X, tmp_path)
    model = ESTIMATORS[name]().fit(data)
    ref = reference[name]
    for attr in ATTRS[name]:
        got, want = np.asarray(getattr(model, attr)), np.asarray(getattr(ref, attr))
        if kind == "dask" and name in ("GaussianMixture", "BigLearnGaussianMixture"):
            # statistics reduced over the dask blocks (double-double sums), not chunk by chunk
            assert_close(got, want, 1e-10, err_msg=f"{name} {kind} {attr}")
        else:  # the passes see the same kernel chunks: bit-identical
            np.testing.assert_array_equal(got, want, err_msg=f"{name} {kind} {attr}")


def test_dask_refusals_are_clear(X):
    """What the estimators do not take from a dask array is refused with a ValueError saying
    what to do instead."""
    da = pytest.importorskip("dask.array")
    dX = da.from_array(X, chunks=(140, D))
    ex = fastmix.GMMExpansion(9, random_state=0).fit(X)
    with pytest.raises(ValueError, match="map_blocks"):
        ex.score_samples(dX)
    with pytest.raises(ValueError, match="split the features"):
        fastmix.BigLearnGaussianMixture(3).fit(da.from_array(X, chunks=(140, 1)))


def test_weighted_sgd_on_dask_equals_in_memory(X):
    """SGD's frequency weights stream with a dask array's blocks: the same model as the
    in-memory weighted fit."""
    da = pytest.importorskip("dask.array")
    w = np.random.default_rng(1).uniform(0.1, 2.0, N)
    ref = fastmix.SGDGaussianMixture(4, random_state=0).fit(X, sample_weight=w)
    got = fastmix.SGDGaussianMixture(4, random_state=0).fit(
        da.from_array(X, chunks=(140, D)), sample_weight=da.from_array(w, chunks=97))
    np.testing.assert_array_equal(got.means_, ref.means_)
    np.testing.assert_array_equal(got.weights_, ref.weights_)


def test_weighted_dask_streams_weights_in_step(X):
    """GMMExpansion on a weighted dask array streams the weights with the rows: the model
    equals the in-memory weighted fit."""
    da = pytest.importorskip("dask.array")
    w = np.random.default_rng(0).uniform(0.1, 2.0, N)
    ref = fastmix.GMMExpansion(9, grid="kmeans++", random_state=0).fit(X, sample_weight=w)
    got = fastmix.GMMExpansion(9, grid="kmeans++", random_state=0).fit(
        da.from_array(X, chunks=(140, D)), sample_weight=da.from_array(w, chunks=97))
    np.testing.assert_array_equal(got.weights_, ref.weights_)
    np.testing.assert_array_equal(got.means_, ref.means_)


def test_biglearn_on_dask_runs_its_steps_on_the_blocks(X, reference, monkeypatch):
    """BigLearn's (transformed) marginal E-steps run as tasks on the dask blocks: no block is
    ever streamed to the client (DaskData.blocks is what SGD uses)."""
    da = pytest.importorskip("dask.array")
    from fastmix import distributed as fdist

    def no_streaming(self, validate=None):
        raise AssertionError("BigLearn streamed the dask blocks to the client")
    monkeypatch.setattr(fdist.DaskData, "blocks", no_streaming)
    model = ESTIMATORS["BigLearnGaussianMixture"]().fit(da.from_array(X, chunks=(140, D)))
    assert_close(model.means_, reference["BigLearnGaussianMixture"].means_, 1e-10)
