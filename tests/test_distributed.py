"""Fitting on Dask: a real LocalCluster (2 worker processes, 1 thread each), equality with the
local fit, independence of the scheduler, worker failure, bad input."""
import os
import signal
import threading
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import fastmix  # noqa: E402
from fastmix import distributed as fdist  # noqa: E402
from fastmix.cli import make_blobs  # noqa: E402

from _helpers import assert_close  # noqa: E402

KINDS = ["full", "tied", "diag", "spherical", "lowrank"]


@pytest.fixture(scope="module")
def data():
    X, _, _, _ = make_blobs(40000, 4, 5, random_state=3)
    return X


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def gm(kind="full", **kw):
    kw.setdefault("random_state", 0)
    kw.setdefault("max_iter", 15)
    kw.setdefault("tol", 0.0)
    return fastmix.GaussianMixture(5, covariance_type=kind, **kw)


@pytest.mark.parametrize("kind", KINDS)
def test_cluster_fit_equals_local_fit(client, data, kind):
    """Same initialisation (the same sample rows), same EM: equal to the local fit to rounding;
    the cluster (per-worker double-double sums) and dask's threaded scheduler (block-order
    tree) give the same model bit for bit."""
    X = data
    dX = da.from_array(X, chunks=(7000, 4))
    local = gm(kind).fit(X)
    on_cluster = gm(kind).fit(dX)
    assert_close(on_cluster.means_, local.means_, 1e-12)
    assert_close(on_cluster.covariances_, local.covariances_, 1e-11)
    assert_close(on_cluster.lower_bounds_, local.lower_bounds_, 1e-12)
    with dask.config.set(scheduler="threads"):
        threads = gm(kind).fit(dX)
    np.testing.assert_array_equal(threads.means_, on_cluster.means_)
    np.testing.assert_array_equal(threads.covariances_, on_cluster.covariances_)


def test_weights_predict_score(client, data):
    X = data
    w = np.random.default_rng(0).uniform(0, 2, size=X.shape[0])
    dX = da.from_array(X, chunks=(6000, 4))
    local = gm("diag").fit(X, sample_weight=w)
    for sw in (w, da.from_array(w, chunks=9000)):
        remote = gm("diag").fit(dX, sample_weight=sw)
        assert_close(remote.means_, local.means_, 1e-12)
    labels = remote.predict(dX)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), local.predict(X))
    assert_close(remote.score_samples(dX).compute(), local.score_samples(X), 1e-12)
    proba = remote.predict_proba(dX)
    assert proba.shape == (X.shape[0], 5)
    assert_close(proba.compute(), local.predict_proba(X), 1e-10)
    assert_close(remote.score(dX), local.score(X), 1e-12)


@pytest.mark.parametrize("init_params", ["k-means++", "random_from_data", "random"])
def test_other_inits(client, data, init_params):
    X = data
    dX = da.from_array(X, chunks=(7000, 4))
    remote = gm("full", init_params=init_params, max_iter=5).fit(dX)
    again = gm("full", init_params=init_params, max_iter=5).fit(dX)
    np.testing.assert_array_equal(remote.means_, again.means_)  # reproducible
    if init_params != "random":  # same rows as the local draw; "random" draws on the workers
        local = gm("full", init_params=init_params, max_iter=5).fit(X)
        assert_close(remote.means_, local.means_, 1e-10)


def test_worker_killed_mid_fit_gives_the_same_model(client, data):
    X = np.repeat(data, 3, axis=0)
    dX = da.from_array(X, chunks=(4000, 4))
    reference = gm("full", max_iter=40).fit(dX)
    pids = client.run(os.getpid)
    result = {}

    def fit():
        try:
            result["model"] = gm("full", max_iter=40).fit(dX)
        except BaseException as exc:  # pragma: no cover - reported below
            result["error"] = exc

    t = threading.Thread(target=fit)
    t.start()
    time.sleep(1.0)
    assert t.is_alive(), "the fit ended before a worker could be killed; make it longer"
    os.kill(next(iter(pids.values())), signal.SIGKILL)
    t.join(timeout=240)
    if t.is_alive():  # report what the cluster was doing (one unexplained hang seen in CI)
        pytest.fail("the fit did not finish within 240 s of the worker kill; scheduler state: "
                    f"processing={client.processing()!r}, "
                    f"workers={list(client.scheduler_info()['workers'])!r}")
    assert "error" not in result, result.get("error")
    model = result["model"]
    np.testing.assert_array_equal(model.means_, reference.means_)
    np.testing.assert_array_equal(model.covariances_, reference.covariances_)
    assert model.n_iter_ == reference.n_iter_ == 40
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker


def test_bad_dask_input(client, data):
    X = data
    dX = da.from_array(X, chunks=(7000, 2))
    with pytest.raises(ValueError, match=r"split the features.*rechunk"):
        gm().fit(dX)
    unknown = da.from_array(X, chunks=(7000, 4))
    unknown = unknown[unknown[:, 0] > -1e9]  # boolean mask: unknown chunk sizes
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        gm().fit(unknown)
    bad = X.copy()
    bad[12345, 1] = np.inf
    with pytest.raises(ValueError, match="row 12345"):
        gm(init_params="random", max_iter=2).fit(da.from_array(bad, chunks=(7000, 4)))
    with pytest.raises(ValueError, match="online"):
        gm().fit(da.from_array(X, chunks=(7000, 4)), algorithm="online")


def test_lost_scheduler_is_a_bounded_error(data, monkeypatch, tmp_path):
    """A client connected to a scheduler process that dies: the next fit fails with a clear
    error after DASK_TIMEOUT seconds, it does not hang."""
    import subprocess
    import sys
    sf = tmp_path / "scheduler.json"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                              "--scheduler-file", str(sf), "--port", "0", "--no-dashboard"],
                             **quiet)
    work = None
    c = None
    try:
        deadline = time.time() + 60
        while not sf.exists() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        work = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                                 "--scheduler-file", str(sf), "--nthreads", "1", "--no-nanny",
                                 "--no-dashboard"], **quiet)
        c = distributed.Client(scheduler_file=str(sf), timeout=30)
        c.wait_for_workers(1, timeout=60)
        dX = da.from_array(data, chunks=(7000, 4))
        gm(max_iter=2).fit(dX)  # works while the scheduler is up
        sched.send_signal(signal.SIGKILL)
        sched.wait(timeout=30)
        monkeypatch.setattr(fdist, "DASK_TIMEOUT", 5.0)
        outcome = {}

        def fit():  # must end with an error, not hang (joined with a generous bound)
            try:
                gm(max_iter=2).fit(dX)
            except Exception as exc:
                outcome["error"] = exc

        t = threading.Thread(target=fit, daemon=True)
        t.start()
        t.join(timeout=120)
        assert not t.is_alive(), "the fit hung after the scheduler died"
        assert isinstance(outcome.get("error"), (TimeoutError, ConnectionError))
        assert "Dask" in str(outcome["error"])
    finally:
        for proc in (work, sched):
            if proc is not None and proc.poll() is None:
                proc.kill()
        if c is not None:
            c.close(timeout=2)


# ----------------------------------------------------------------- from_file ---------------
def _graph_bytes(arr):
    import cloudpickle
    return len(cloudpickle.dumps(dict(arr.__dask_graph__())))


def _write_formats(X, tmp):
    h5py = pytest.importorskip("h5py")
    zarr = pytest.importorskip("zarr")
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    np.save(tmp / "x.npy", X)
    with h5py.File(tmp / "x.h5", "w") as f:
        f.create_dataset("g/x", data=X, chunks=(min(1000, len(X)), X.shape[1]))
    z = zarr.open_array(str(tmp / "x.zarr"), mode="w", shape=X.shape,
                        chunks=(3000, X.shape[1]), dtype=X.dtype)
    z[:] = X
    pq.write_table(pa.table({f"c{j}": X[:, j] for j in range(X.shape[1])}),
                   tmp / "x.parquet", row_group_size=4500)
    return {"npy": tmp / "x.npy", "hdf5": f"{tmp / 'x.h5'}:/g/x", "zarr": str(tmp / "x.zarr"),
            "parquet": tmp / "x.parquet"}


@pytest.mark.parametrize("fmt", ["npy", "hdf5", "zarr", "parquet"])
def test_from_file_graph_stays_small(tmp_path, fmt):
    """A 6.4 MB file: the graph of from_file is a few kB (each task: path + row range), while
    da.from_array of the memory-mapped file carries the data; the rows are the file's."""
    X = np.random.default_rng(1).normal(size=(100_000, 8))
    path = _write_formats(X, tmp_path)[fmt]
    arr = fdist.from_file(path, chunk_rows=20_000)
    assert arr.shape == X.shape and arr.dtype == np.float64
    assert arr.numblocks[0] >= 4
    assert _graph_bytes(arr) < 50_000
    np.testing.assert_array_equal(arr.compute(), X)
    if fmt == "npy":  # the yardstick: the array inside the graph
        inside = da.from_array(np.load(path, mmap_mode="r"), chunks=(20_000, 8))
        assert _graph_bytes(inside) > X.nbytes


def test_from_file_fit_on_cluster_equals_in_memory_fit(client, data, tmp_path):
    """Blocks read by the worker processes from the path: the model equals the in-memory fit
    to rounding, for every format."""
    local = gm("diag").fit(data)
    for fmt, path in _write_formats(data, tmp_path).items():
        arr = fdist.from_file(path, chunk_rows=9000)
        on_cluster = gm("diag").fit(arr)
        assert_close(on_cluster.means_, local.means_, 1e-12, err_msg=fmt)
        assert_close(on_cluster.lower_bounds_, local.lower_bounds_, 1e-12, err_msg=fmt)


def test_from_file_defaults_and_errors(tmp_path):
    X = np.arange(60.0, dtype=np.float32).reshape(20, 3)
    paths = _write_formats(X, tmp_path)
    arr = fdist.from_file(paths["npy"])
    assert arr.dtype == np.float32 and arr.numblocks[0] == 1
    np.testing.assert_array_equal(arr.compute(), X)
    cols = fdist.from_file(paths["parquet"], columns=["c2", "c0"])
    np.testing.assert_array_equal(cols.compute(), X[:, [2, 0]])
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", header="a,b,c", comments="")
    with pytest.raises(ValueError, match="does not read CSV"):
        fdist.from_file(tmp_path / "x.csv")
    with pytest.raises(ValueError, match="chunk_rows must be a positive integer"):
        fdist.from_file(paths["npy"], chunk_rows=0)
    with pytest.raises(ValueError, match="sample weights"):
        fdist.from_file(paths["parquet"], weight_column="c0")
    with pytest.raises(FileNotFoundError):
        fdist.from_file(tmp_path / "missing.npy")
    np.save(paths["npy"], X[:10])  # the file changed after the array was made
    with pytest.raises(ValueError, match="changed since"):
        arr.compute()


def test_biglearn_and_sgd_on_the_cluster(client, data):
    """BigLearn's marginal steps as cluster tasks, SGD's blocks computed on the cluster and
    streamed in order: the in-memory models (BigLearn to rounding, SGD bit for bit)."""
    X = data[:12000]
    dX = da.from_array(X, chunks=(2500, 4))
    bl = lambda: fastmix.BigLearnGaussianMixture(5, n_outer=3, n_local_steps=2,  # noqa: E731
                                                 init_params="kmeans", random_state=0)
    assert_close(bl().fit(dX).means_, bl().fit(X).means_, 1e-10)
    Xu = (X - X.min(0)) / (X.max(0) - X.min(0))
    sgd = lambda: fastmix.SGDGaussianMixture(4, n_epochs=1, random_state=0)  # noqa: E731
    np.testing.assert_array_equal(sgd().fit(da.from_array(Xu, chunks=(2500, 4))).means_,
                                  sgd().fit(Xu).means_)
