"""Out-of-core EM against in-memory EM, in one run.

Writes a float64 ``.npy`` of ``--gb`` GB (default 8 GB, about 6.2e7 x 16) to a temporary
directory, then, in fresh subprocesses (so that peak RSS is each fit's own):

* ``file``: ``GaussianMixture(K, covariance_type="diag").fit(path)`` -- the file is read in
  blocks with ``readinto`` (the page cache is warmed first by reading the file once);
* ``mem``: the same fit on the first ``--slice-gb`` GB of rows, loaded into memory.

Both run ``--iters`` EM iterations (tol=0) after the same k-means initialisation; the report is
the median per-iteration time, the per-row throughput ratio file/mem, and each process's peak
RSS (VmHWM), for ``--repeats`` alternating pairs.  The file is deleted
afterwards unless ``--keep``.

    python bench/out_of_core.py                 # the issue's 8 GB run (~10 min on 2 cores)
    python bench/out_of_core.py --gb 0.5 --slice-gb 0.25 --iters 3 --repeats 1   # smoke run
"""
import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def write_file(path, rows, D, K, seed=0, block=1 << 20):
    """A K-component overlapping mixture, written block by block (bounded memory)."""
    from fastmix.io import NpyWriter
    rng = np.random.default_rng(seed)
    means = rng.uniform(-4, 4, size=(K, D))
    scales = rng.uniform(0.5, 1.5, size=(K, D))
    weights = rng.dirichlet(np.full(K, 5.0))
    w = NpyWriter(path, np.float64, (D,))
    try:
        for s in range(0, rows, block):
            n = min(block, rows - s)
            lab = rng.choice(K, size=n, p=weights)
            w.write(means[lab] + rng.standard_normal((n, D)) * scales[lab])
        w.commit()
    except BaseException:
        w.abort()
        raise


def warm_cache(path):
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(64 << 20)
        while fh.readinto(buf):
            pass


def peak_rss_mib():
    """This process's peak resident set (MiB).  Linux: VmHWM of /proc/self/status -- not
    ``ru_maxrss``, which after fork/vfork + exec also counts the parent's high-water mark (the
    parent here just wrote gigabytes, which inflated ru_maxrss to ~577 MiB in every worker)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args):
    import fastmix
    from fastmix import kernels
    t0 = time.perf_counter()
    if args.worker == "mem":
        mm = np.load(args.path, mmap_mode="r")
        X = np.array(mm[:args.rows])
        del mm
        data = X
    else:
        data = args.path
    load_s = time.perf_counter() - t0
    gm = fastmix.GaussianMixture(args.k, covariance_type="diag", max_iter=args.iters, tol=0.0,
                                 random_state=0)
    import warnings
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    gm.fit(data)
    fit_s = time.perf_counter() - t0
    rows = args.rows if args.worker == "mem" else int(np.load(args.path, mmap_mode="r").shape[0])
    print(json.dumps({
        "worker": args.worker, "rows": rows, "load_s": load_s, "fit_s": fit_s,
        "iter_s": gm.iteration_times_, "lower_bound": gm.lower_bound_,
        "peak_rss_mib": peak_rss_mib(),
        "threads": kernels.num_threads()}))


def run_worker(kind, path, rows, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--path", path,
           "--rows", str(rows), "--k", str(args.k), "--iters", str(args.iters)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gb", type=float, default=8.0, help="file size in GB (1e9 bytes)")
    p.add_argument("--slice-gb", type=float, default=1.0, help="in-memory slice in GB")
    p.add_argument("--d", type=int, default=16)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", default=None, help="where to write the file (default: tempdir)")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--out", default=None, help="write the JSON report here")
    p.add_argument("--worker", choices=["mem", "file"], help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    d = tempfile.mkdtemp(prefix="fastmix-ooc-", dir=args.dir)
    path = os.path.join(d, "data.npy")
    rows = int(args.gb * 1e9 // (8 * args.d))
    slice_rows = int(args.slice_gb * 1e9 // (8 * args.d))
    need = rows * 8 * args.d
    free = shutil.disk_usage(d).free
    if free < need * 1.1:
        sys.exit(f"not enough disk in {d}: need {need / 1e9:.1f} GB, have {free / 1e9:.1f} GB")
    try:
        t0 = time.perf_counter()
        write_file(path, rows, args.d, args.k)
        write_s = time.perf_counter() - t0
        print(f"wrote {rows:,} x {args.d} float64 ({need / 1e9:.2f} GB) in {write_s:.1f} s: "
              f"{path}", flush=True)
        pairs = []
        for rep in range(args.repeats):
            t0 = time.perf_counter()
            warm_cache(path)
            warm_s = time.perf_counter() - t0
            f = run_worker("file", path, rows, args)
            m = run_worker("mem", path, slice_rows, args)
            f_it, m_it = float(np.median(f["iter_s"])), float(np.median(m["iter_s"]))
            ratio = (f["rows"] / f_it) / (m["rows"] / m_it)
            pairs.append({"file": f, "mem": m, "ratio": ratio, "warm_s": warm_s})
            print(f"repeat {rep}: file {f_it:.2f} s/iter ({f['rows'] / f_it / 1e6:.1f} M rows/s, "
                  f"peak RSS {f['peak_rss_mib']:.0f} MiB) | in-memory slice {m_it:.3f} s/iter "
                  f"({m['rows'] / m_it / 1e6:.1f} M rows/s, peak RSS {m['peak_rss_mib']:.0f} MiB)"
                  f" | throughput ratio {ratio:.3f}", flush=True)
        ratios = [q["ratio"] for q in pairs]
        rss = [q["file"]["peak_rss_mib"] for q in pairs]
        report = {
            "machine": {"cpus": os.cpu_count(), "threads": pairs[0]["file"]["threads"],
                        "platform": platform.platform(), "python": platform.python_version()},
            "file_gb": need / 1e9, "rows": rows, "slice_rows": slice_rows, "D": args.d,
            "K": args.k, "iters": args.iters, "pairs": pairs,
            "median_ratio": float(np.median(ratios)), "max_file_peak_rss_mib": float(max(rss)),
        }
        print(f"\nmedian per-row throughput file/in-memory: {report['median_ratio']:.3f} "
              f"(target >= 0.70); file fit peak RSS max {max(rss):.0f} MiB (target < 1024 MiB)"
              f"; {args.repeats} repeats, {os.cpu_count()} cores")
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(report, fh, indent=1)
    finally:
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
