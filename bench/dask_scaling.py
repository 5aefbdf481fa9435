"""Dask fitting on this machine: per-iteration time with 1 and 2 workers against the local fit,
and the bytes that move per iteration.

Writes a float64 Zarr array of ``--gb`` GB (default 4 GB, 31.25e6 x 16, chunks of 1e6 rows,
zarr's default compressor) to a temporary directory, then times ``--iters`` EM iterations
(diag, K=16, tol=0, from the same given start so initialisation is not timed) of

* ``local``: ``GaussianMixture.fit("x.zarr")`` -- fastmix's own block reader, 2 numba threads;
* ``dask-1`` / ``dask-2``: ``fit(da.from_zarr(...))`` on a ``LocalCluster(n_workers=1|2,
  threads_per_worker=1, processes=True)``: every block is read and decompressed on a worker,
  each task runs the kernel on one thread.

Bytes per iteration, from the cluster itself: transfers out of the workers, to other workers and
to the client (``Worker.transfer_outgoing_bytes_total`` deltas, read with ``client.run``), the parameters
scattered to every worker and the reduced statistics gathered by the client (``dask.sizeof``
of the objects the scheduler moves), and, as a cross-check, all loopback traffic
(``/proc/net/dev``, which also counts heartbeats and graph submission).  A written projection
for 100 workers follows from the measured per-block time and reduction size.

    python bench/dask_scaling.py                       # the issue's 4 GB run
    python bench/dask_scaling.py --gb 0.5 --iters 2    # smoke run
"""
import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np

K, D = 16, 16


def write_zarr(path, rows, seed=0, chunk=1_000_000):
    import zarr
    rng = np.random.default_rng(seed)
    means = rng.uniform(-4, 4, size=(K, D))
    scales = rng.uniform(0.5, 1.5, size=(K, D))
    weights = rng.dirichlet(np.full(K, 5.0))
    z = zarr.open(path, mode="w", shape=(rows, D), chunks=(chunk, D), dtype="f8")
    for s in range(0, rows, chunk):
        n = min(chunk, rows - s)
        lab = rng.choice(K, size=n, p=weights)
        z[s:s + n] = means[lab] + rng.standard_normal((n, D)) * scales[lab]
    return z


def start_params(path):
    """A fixed starting point from a short k-means on the first 200 000 rows."""
    import zarr
    import fastmix
    X = np.asarray(zarr.open(path, mode="r")[:200_000])
    gm = fastmix.GaussianMixture(K, covariance_type="diag", max_iter=3, random_state=0).fit(X)
    return dict(weights_init=gm.weights_, means_init=gm.means_, precisions_init=gm.precisions_)


def model(start, iters):
    import fastmix
    return fastmix.GaussianMixture(K, covariance_type="diag", max_iter=iters, tol=0.0, **start)


def loopback_bytes():
    with open("/proc/net/dev") as fh:
        for line in fh:
            if line.strip().startswith("lo:"):
                f = line.split(":", 1)[1].split()
                return int(f[0]) + int(f[8])
    return 0


def run_dask(path, start, iters, n_workers):
    import dask.array as da
    import distributed
    from dask.sizeof import sizeof
    from fastmix import distributed as fdist
    cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=50)
    client = distributed.Client(cluster)
    try:
        dX = da.from_zarr(path)
        model(start, 1).fit(dX)  # warm: compile/load kernels on every worker

        def out_bytes():
            return sum(client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total)
                       .values())

        w0, lo0 = out_bytes(), loopback_bytes()
        t0 = time.perf_counter()
        gm = model(start, iters).fit(dX)
        wall = time.perf_counter() - t0
        w1, lo1 = out_bytes(), loopback_bytes()
        kp = gm._params().kernel_params(np.float64)
        nk = np.zeros(K)
        plain = (nk, np.zeros((K, D)), np.zeros((K, 1, D)), 0.0, 0.0)
        result = tuple((x, x) for x in plain)  # the client gathers a double-double tuple
        n_blocks = dX.numblocks[0]
        per_iter = {
            "worker_to_worker": (w1 - w0) / iters,
            "scatter_params": sizeof(kp) * n_workers,
            "gather_result": sizeof(result),
            "loopback_total": (lo1 - lo0) / iters,
        }
        return {"workers": n_workers, "iter_s": gm.iteration_times_, "wall_s": wall,
                "n_blocks": n_blocks, "bytes_per_iter": per_iter,
                "block_stats_bytes": sizeof(plain), "timeout_s": fdist.DASK_TIMEOUT}
    finally:
        client.close()
        cluster.close()


def run_memory(gb, iters):
    """Scheduling overhead without storage: the same rows in local memory vs persisted in the
    memory of 2 single-threaded workers (blocks of 10^6 rows)."""
    import dask.array as da
    import distributed
    rows = int(gb * 1e9 // (8 * D))
    d = tempfile.mkdtemp(prefix="fastmix-dask-mem-")
    try:
        path = os.path.join(d, "x.zarr")
        write_zarr(path, rows)
        import zarr
        X = np.asarray(zarr.open(path, mode="r")[:])
        start = start_params(path)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    model(start, 1).fit(X)
    local = model(start, iters).fit(X).iteration_times_
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=50)
    client = distributed.Client(cluster)
    try:
        dX = da.from_array(X, chunks=(1_000_000, D)).persist()
        distributed.wait(dX)
        model(start, 1).fit(dX)
        remote = model(start, iters).fit(dX).iteration_times_
    finally:
        client.close()
        cluster.close()
    lo, re_ = float(np.median(local)), float(np.median(remote))
    print(f"in memory, {rows:,} rows: local {lo:.3f} s/iter, dask 2 workers (persisted) "
          f"{re_:.3f} s/iter = {re_ / lo:.2f}x local")
    return {"rows": rows, "local_iter_s": local, "dask2_iter_s": remote, "ratio": re_ / lo}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gb", type=float, default=4.0)
    p.add_argument("--iters", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dir", default=None)
    p.add_argument("--out", default=None, help="JSON report path")
    p.add_argument("--memory-gb", type=float, default=0.0,
                   help="instead: data of this size in memory vs persisted on 2 workers")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    if args.memory_gb:
        rep = run_memory(args.memory_gb, args.iters)
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(rep, fh, indent=1)
        return 0
    from fastmix import kernels

    d = tempfile.mkdtemp(prefix="fastmix-dask-", dir=args.dir)
    path = os.path.join(d, "x.zarr")
    rows = int(args.gb * 1e9 // (8 * D))
    try:
        t0 = time.perf_counter()
        write_zarr(path, rows)
        print(f"wrote {rows:,} x {D} float64 ({rows * D * 8 / 1e9:.2f} GB) Zarr in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        start = start_params(path)
        runs = []
        for rep in range(args.repeats):
            model(start, 1).fit(path)  # warm
            gm = model(start, args.iters).fit(path)
            local = float(np.median(gm.iteration_times_))
            rec = {"local_iter_s": gm.iteration_times_, "local_threads": kernels.num_threads()}
            print(f"repeat {rep}: local ({kernels.num_threads()} threads) {local:.2f} s/iter",
                  flush=True)
            for nw in (1, 2):
                r = run_dask(path, start, args.iters, nw)
                med = float(np.median(r["iter_s"]))
                b = r["bytes_per_iter"]
                print(f"  dask {nw} worker(s): {med:.2f} s/iter = {med / local:.2f}x local; "
                      f"bytes/iter: worker->worker {b['worker_to_worker'] / 1e3:.1f} kB, "
                      f"params scattered {b['scatter_params'] / 1e3:.1f} kB, result "
                      f"{b['gather_result'] / 1e3:.1f} kB, all loopback "
                      f"{b['loopback_total'] / 1e6:.2f} MB ({r['n_blocks']} blocks)", flush=True)
                rec[f"dask{nw}"] = r
            runs.append(rec)
        loc = np.median([np.median(r["local_iter_s"]) for r in runs])
        d1 = np.median([np.median(r["dask1"]["iter_s"]) for r in runs])
        d2 = np.median([np.median(r["dask2"]["iter_s"]) for r in runs])
        nb = runs[0]["dask2"]["n_blocks"]
        t_block = d1 / nb  # one worker, one thread: time per block (read + decompress + kernel)
        stats_b = runs[0]["dask2"]["block_stats_bytes"]
        report = {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
            "gb": rows * D * 8 / 1e9, "rows": rows, "K": K, "D": D, "iters": args.iters,
            "runs": runs, "median_local_s": loc, "median_dask1_s": d1, "median_dask2_s": d2,
            "ratio_dask2_over_local": d2 / loc, "per_block_s": t_block,
            "block_stats_bytes": stats_b,
        }
        print(f"\nmedian s/iter: local {loc:.2f}, dask 1 worker {d1:.2f}, dask 2 workers {d2:.2f}"
              f" -> 2 workers / local = {d2 / loc:.2f} (target <= 1.5); {os.cpu_count()} cores")
        print(f"per block (1e6 rows, one thread): {t_block:.3f} s; statistics per block "
              f"{stats_b / 1e3:.1f} kB")
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(report, fh, indent=1)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
