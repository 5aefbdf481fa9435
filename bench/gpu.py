#!/usr/bin/env python
"""GPU vs CPU: time of one EM iteration and of one fused E-step (issue #9 targets).

Cases (float32 data, diagonal covariances, synthetic mixture, fixed seed):

* ``em-iter``  N = 1e6, D = 64,  K = 64:   one full EM iteration (E-step statistics on the
  device + M-step on the host), ``fastmix.gpu.run_em_gpu`` vs ``fastmix.em.run_em``.
  Target on an H100: <= 3 ms per iteration.
* ``estep``    N = 1e6, D = 128, K = 1024: the E-step statistics alone,
  ``kernels.cuda.estep_stats_gpu`` vs ``kernels.estep_stats``.  ``--formulation fused|gemm|auto``
  picks the GPU kernels (``kernels.cuda.gemm``: the GEMM formulation needs a shared centre, i.e.
  every mean within the float32 expansion limit of the mean of the means; with the default
  ``--spread 3`` the D = 128 means are too far apart and "gemm" falls back to the fused kernel,
  which the output says; ``--spread 1.5`` gives a shared centre).  The formulation that ran is
  recorded in the results.
* ``lowrank``  N = 60 000, D = 784, K = 16, q = 8 (the shape of bench/lowrank.py): one EM
  iteration of the mixture of factor analysers, GPU vs CPU.
* ``stream``   a host array of ``--stream-gb`` GB (float32, D = 64, K = 64, diag) streamed
  through the device for one E-step (``fastmix.gpu.StreamedData``: pinned staging, two CUDA
  streams), against the host -> device bandwidth measured here with one pinned 256 MiB copy.
  Target: >= 80 % of that bandwidth.

GPU times are wall-clock medians over ``--repeats`` calls after a warm-up call (compilation,
first upload); the data are uploaded once and stay on the device (upload time reported
separately).  Each GPU call ends with the copy of the statistics to the host, so it is
synchronous.  CPU times run fastmix's CPU kernels on all cores of this machine; for the large
E-step they are measured on the first ``--cpu-rows`` rows and scaled linearly to N (marked
"scaled"), since the pass is linear in N.

Usage::

    python bench/gpu.py                 # both cases
    python bench/gpu.py --quick         # N = 1e5 (smoke run)
    python bench/gpu.py --no-cpu        # GPU only
    python bench/gpu.py --cases estep --spread 1.5 --formulation gemm    # vs --formulation fused

Without a GPU (or without ``pip install 'fastmix[cuda]'``) the script says so and exits with
status 2; it refuses to run on the CUDA simulator (NUMBA_ENABLE_CUDASIM=1): simulator timings
mean nothing.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastmix import kernels  # noqa: E402
from fastmix._params import Covariance, GMMParams  # noqa: E402
from fastmix.em import run_em  # noqa: E402
from fastmix.kernels import cuda as gk  # noqa: E402

CASES = {
    "em-iter": dict(N=1_000_000, D=64, K=64, what="EM iteration"),
    "estep": dict(N=1_000_000, D=128, K=1024, what="E-step statistics"),
    "lowrank": dict(N=60_000, D=784, K=16, what="lowrank q=8 EM iteration"),
    "stream": dict(N=None, D=64, K=64, what="streamed E-step (host data)"),
}


def h2d_bandwidth(nbytes=256 * 2**20, repeats=10):
    """Host (pinned) -> device bandwidth in bytes/s: median of ``repeats`` copies."""
    cuda = gk.require_gpu()
    host = cuda.pinned_array(nbytes // 4, dtype=np.float32)
    host[:] = 1.0
    dev = cuda.device_array(nbytes // 4, dtype=np.float32)

    def copy():
        cuda.to_device(host, to=dev)
        cuda.synchronize()
    return nbytes / median_time(copy, repeats)


def run_stream(D, K, gb, repeats, cpu):
    """One streamed E-step over ``gb`` GB of host rows vs the pinned H2D bandwidth."""
    from fastmix import io as sources
    from fastmix.gpu import StreamedData
    N = int(gb * 1e9) // (4 * D)
    X = np.empty((N, D), np.float32)
    step = 1 << 20
    for i in range(0, N, step):  # generated in pieces: no float64 temporary of the whole
        X[i:i + step] = make_data(min(step, N - i), D, K, seed=i // step)
    params = start_params(X[:1_000_000], K)
    bw = h2d_bandwidth()
    with StreamedData(sources.as_stream(X, None, 4096)) as sd:
        t = median_time(lambda: sd.e_step_stats(params), max(1, min(repeats, 3)))
    row = dict(case="stream", what=f"streamed E-step, {gb:g} GB host", N=N, D=D, K=K,
               dtype="float32", upload_s=0.0, gpu_s=t, h2d_GBps=bw / 1e9,
               stream_GBps=X.nbytes / t / 1e9, fraction_of_h2d=X.nbytes / t / bw)
    print(f"  H2D {bw / 1e9:.1f} GB/s, streamed {X.nbytes / t / 1e9:.1f} GB/s "
          f"({100 * X.nbytes / t / bw:.0f} % of H2D)")
    return row


def make_data(N, D, K, seed=0, spread=3.0):
    rng = np.random.default_rng(seed)
    centres = (spread * rng.standard_normal((K, D))).astype(np.float32)
    X = rng.standard_normal((N, D), dtype=np.float32)
    X += centres[rng.integers(0, K, size=N)]
    return X


def start_params(X, K, seed=1, q=None):
    """Diag start (means at random rows, unit variances); lowrank with q factors: random
    loadings of scale 0.3 and unit noise."""
    rng = np.random.default_rng(seed)
    means = X[rng.choice(X.shape[0], K, replace=False)].astype(np.float64)
    var = np.ones((K, X.shape[1]))
    if q is not None:
        from fastmix._params import LowRankCovariance
        W = 0.3 * rng.standard_normal((K, X.shape[1], q))
        return GMMParams(np.full(K, 1.0 / K), means, LowRankCovariance(W, var, False))
    return GMMParams(np.full(K, 1.0 / K), means, Covariance.registry["diag"].from_covariances(var))


def median_time(fn, repeats):
    fn()  # warm-up: compilation, caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_case(name, N, D, K, what, repeats, cpu, cpu_rows, formulation="auto", spread=3.0):
    X = make_data(N, D, K, spread=spread)
    params = start_params(X, K, q=8 if name == "lowrank" else None)
    kp = params.kernel_params(np.float32)
    t0 = time.perf_counter()
    Xd = gk.to_device(X)
    wd = gk.weights_to_device(None, N)
    upload = time.perf_counter() - t0
    row = dict(case=name, what=what, N=N, D=D, K=K, dtype="float32", upload_s=upload)
    if name in ("em-iter", "lowrank"):
        from fastmix.gpu import DeviceData, run_em_gpu
        data = DeviceData(Xd, wd)
        res = run_em_gpu(data, None, params, reg_covar=1e-6, tol=-1.0, max_iter=repeats + 1)
        row["gpu_s"] = statistics.median(res.iter_times[1:])
        if cpu:
            res_c = run_em(X, None, params, reg_covar=1e-6, tol=-1.0, max_iter=min(repeats, 3) + 1)
            row["cpu_s"] = statistics.median(res_c.iter_times[1:])
            row["cpu_scaled"] = False
            row["lower_bound_gpu_minus_cpu"] = res.lower_bounds[1] - res_c.lower_bounds[1]
    else:
        row["formulation"] = used = gk.resolve_formulation(kp, formulation)
        row["spread"] = spread
        print(f"  formulation: {used}" + ("" if used == formulation or formulation == "auto" else
              f" (asked for {formulation}: no shared centre for these means; try --spread 1.5)"))
        row["gpu_s"] = median_time(
            lambda: gk.estep_stats_gpu(Xd, wd, kp, formulation=formulation), repeats)
        if cpu:
            n = min(N, cpu_rows)
            Xc = np.ascontiguousarray(X[:n])
            row["cpu_s"] = median_time(lambda: kernels.estep_stats(Xc, None, kp, 4096),
                                       min(repeats, 3)) * (N / n)
            row["cpu_scaled"] = n < N
    if "cpu_s" in row:
        row["speedup"] = row["cpu_s"] / row["gpu_s"]
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 1e5 instead of 1e6")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--no-cpu", dest="cpu", action="store_false")
    ap.add_argument("--cpu-rows", type=int, default=100_000,
                    help="rows the large CPU E-step is timed on (scaled to N)")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--stream-gb", type=float, default=20.0,
                    help="size of the host array of the stream case (GB)")
    ap.add_argument("--formulation", choices=("auto", "fused", "gemm"), default="auto",
                    help="GPU E-step kernels of the estep case (kernels.cuda.gemm)")
    ap.add_argument("--spread", type=float, default=3.0,
                    help="scale of the mixture centres of the em-iter/estep data; the estep "
                         "case's GEMM formulation needs a shared centre (e.g. 1.5)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)

    if not gk.gpu_available():
        print(f"bench/gpu.py needs a CUDA GPU: {gk.device._probe()[1]}", file=sys.stderr)
        return 2
    if gk.simulated():
        print("bench/gpu.py refuses to run on the CUDA simulator (NUMBA_ENABLE_CUDASIM=1): "
              "its timings mean nothing. Unset it and run on a machine with a GPU.",
              file=sys.stderr)
        return 2

    gpu_name = gk.device_name()
    rows = []
    for name in args.cases.split(","):
        spec = dict(CASES[name])
        print(f"running {name}: {spec} ...", flush=True)
        if name == "stream":
            gb = 1.0 if args.quick else args.stream_gb
            rows.append(run_stream(spec["D"], spec["K"], gb, args.repeats, args.cpu))
            continue
        if args.quick:
            spec["N"] = 100_000
        rows.append(run_case(name, **spec, repeats=args.repeats, cpu=args.cpu,
                             cpu_rows=args.cpu_rows, formulation=args.formulation,
                             spread=args.spread))

    print(f"\nGPU: {gpu_name}   CPU: {platform.processor() or platform.machine()} "
          f"x {os.cpu_count()} cores, {kernels.num_threads()} numba threads\n")
    print("| case | N | D | K | GPU ms | CPU ms | speed-up | upload ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu_ms = (f"{1e3 * r['cpu_s']:.1f}" + (" (scaled)" if r.get("cpu_scaled") else "")
                  if "cpu_s" in r else "-")
        sp = f"{r['speedup']:.1f}x" if "speedup" in r else "-"
        what = r["what"] + (f" [{r['formulation']}]" if "formulation" in r else "")
        print(f"| {what} | {r['N']:.0e} | {r['D']} | {r['K']} | {1e3 * r['gpu_s']:.2f} | "
              f"{cpu_ms} | {sp} | {1e3 * r['upload_s']:.1f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / time.strftime("gpu-%Y%m%d-%H%M%S.json")
    path.write_text(json.dumps(dict(gpu=gpu_name, cpu_threads=kernels.num_threads(),
                                    rows=rows), indent=1))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
