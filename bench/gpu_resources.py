#!/usr/bin/env python
"""Static resource usage of fastmix's CUDA kernels on sm_90 (H100), without a GPU.

Compiles each kernel at the issue-9 target shapes to PTX (numba-cuda + NVVM) and assembles it
with ``ptxas -v`` (from ``nvidia-cuda-nvcc-cu12``), then reports per kernel: registers per
thread, static shared memory, stack frame and spills (local memory), and the theoretical
occupancy on an H100 SM (65 536 registers, 2048 threads, 32 blocks, 228 KiB shared memory per
SM; register allocation rounded to 8 per thread and warp granularity -- an approximation of
the CUDA occupancy calculator, not a measurement).  What a kernel's *speed* is needs a GPU
(``bench/gpu.py``); this says whether a kernel spills or is register/shared-memory limited
before one is available.

Needs the cuda extra's compiler pieces (``pip install 'fastmix[cuda]'``; NVRTC/NVVM and
ptxas are found in site-packages, or through ``--cuda-root`` / LD_LIBRARY_PATH / PATH).  No GPU
is used: the current device is faked as compute capability 9.0.

Usage::

    python bench/gpu_resources.py            # table to stdout, JSON to bench/results/
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SM_REGS, SM_THREADS, SM_BLOCKS, SM_SMEM = 65536, 2048, 32, 228 * 1024


def _fake_device():
    import numba.cuda.dispatcher as disp

    class Device:  # device functions ask the current device for its compute capability
        compute_capability = (9, 0)
    disp.get_current_device = lambda: Device()


def kernels():
    """[(name, python function, signature, threads per block)] at the target shapes."""
    from numba import types
    from fastmix.kernels import cuda as gpu
    from fastmix.kernels.cuda import (estep as gpu_estep, expansion as gpu_expansion,
                                      gemm as gpu_gemm, linalg as gpu_linalg,
                                      lowrank as gpu_lowrank, sgd as gpu_sgd)
    f32, f64, i64, b1 = types.float32, types.float64, types.int64, types.boolean

    def A(dt, nd):
        return types.Array(dt, nd, "C")
    out = []
    TPB = gpu.DEFAULT_THREADS
    for kind, name, K, D in ((gpu_estep.DIAG, "diag", 64, 64), (gpu_estep.DIAG, "diag", 1024, 128),
                             (gpu_estep.FULL, "full", 16, 64)):
        R = gpu_estep.tile_rows(kind, K, D, 4)
        est, lp = gpu_estep.build(kind, "float32", K, D, R, TPB)
        out.append((f"fused E-step {name} K={K} D={D} (R={R})", est.py_func,
                    (A(f32, 2), A(f64, 1), A(f32, 2), A(f32, 2), A(f32, 3), A(f32, 1), A(f64, 1),
                     A(f64, 2), A(f64, 1), f64, i64, i64, A(f64, 2)), TPB))
    out.append(("reduce_blocks", gpu_estep.reduce_blocks.py_func,
                (A(f64, 2), i64, b1, A(f64, 1)), 128))
    K, D = 1024, 128
    t = gpu_gemm.Tiles.current()
    dens, lse, stats = gpu_gemm.build("float32", K, D, t)
    out += [(f"gemm densities K={K} D={D}", dens.py_func,
             (A(f32, 2), A(f32, 1), A(f32, 2), A(f64, 1), i64, i64, A(f64, 2)),
             (t.bm // t.tm) * (t.bk // t.tn)),
            (f"gemm log-sum-exp K={K}", lse.py_func,
             (A(f64, 2), A(f64, 1), i64, i64, f64, A(f64, 2)), t.row_threads * t.rows_per_block),
            (f"gemm statistics K={K} D={D}", stats.py_func,
             (A(f32, 2), A(f64, 1), A(f64, 2), A(f64, 2), i64, i64, i64, A(f64, 2)),
             (t.sk // t.tk) * (t.sf // t.tf))]
    K, D, q = 16, 784, 8
    R = gpu_lowrank.tile_rows(K, D, q, 4)
    est, _ = gpu_lowrank.build("float32", K, D, q, R, TPB)
    out.append((f"lowrank E-step K={K} D={D} q={q} (R={R})", est.py_func,
                (A(f32, 2), A(f64, 1), A(f32, 2), A(f32, 2), A(f32, 3), A(f64, 3), A(f64, 1),
                 A(f64, 2), f64, i64, i64, A(f64, 2)), TPB))
    ST = gpu.SGD_THREADS
    out += [("sgd log-likelihoods", gpu_sgd.sgd_loglik.py_func,
             (A(f32, 2), A(i64, 1), i64, i64, i64, A(f64, 1), A(f64, 2), A(f64, 2), A(f64, 1),
              A(f64, 1), A(f64, 2)), ST),
            ("sgd weights", gpu_sgd.sgd_weights.py_func,
             (A(f64, 2), i64, A(f64, 2), b1, b1, A(f64, 1), A(f64, 1), f64, f64, A(f64, 2),
              A(f64, 1), A(f64, 1), i64), ST),
            ("sgd update", gpu_sgd.sgd_update.py_func,
             (A(f32, 2), A(i64, 1), i64, i64, A(f64, 2), A(f64, 2), A(f64, 2), f64, f64, f64,
              f64, f64, b1, A(f64, 2), A(f64, 1), A(f64, 1), A(f64, 1)), ST)]
    GT = gpu.DEFAULT_GRID_THREADS
    R = gpu_expansion.tile_rows(2, 9, GT)
    out.append((f"expansion grid D=2 (R={R})", gpu_expansion.build(2, R, 9, GT).py_func,
                (i64, A(f32, 2), A(f64, 1), A(f64, 1), A(f64, 1), A(i64, 1), A(i64, 1),
                 A(f64, 1), A(f64, 1), f64, A(i64, 1), A(i64, 1), i64, i64, A(f64, 2),
                 A(f64, 1)), GT))
    out.append(("biglearn projection", gpu_linalg._project.py_func,
                (A(f32, 2), A(f32, 2), A(f32, 2)), gpu_linalg.TILE ** 2))
    return out


def ptxas_info(ptxas, ptx):
    """ptxas -v of one PTX module: dict(registers, smem, stack, spill_stores, spill_loads)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        res = subprocess.run([ptxas, "-arch=sm_90", "-v", str(src), "-o", str(Path(tmp) / "k.o")],
                             capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    info = dict(registers=0, smem=0, stack=0, spill_stores=0, spill_loads=0)
    text = res.stderr + res.stdout
    for pat, key in ((r"Used (\d+) registers", "registers"), (r"(\d+) bytes smem", "smem"),
                     (r"(\d+) bytes stack frame", "stack"),
                     (r"(\d+) bytes spill stores", "spill_stores"),
                     (r"(\d+) bytes spill loads", "spill_loads")):
        m = re.search(pat, text)
        if m:
            info[key] = int(m.group(1))
    return info


def occupancy(regs, smem, threads):
    """Theoretical fraction of an H100 SM's 2048 thread slots that resident blocks fill."""
    warps = -(-threads // 32)
    regs_per_warp = -(-max(regs, 1) * 32 // 256) * 256
    by_regs = SM_REGS // (regs_per_warp * warps) if regs else SM_BLOCKS
    by_smem = SM_SMEM // (smem + 1024) if smem else SM_BLOCKS
    blocks = min(SM_BLOCKS, SM_THREADS // (warps * 32), by_regs, by_smem)
    limit = min((("threads", SM_THREADS // (warps * 32)), ("registers", by_regs),
                 ("shared memory", by_smem), ("blocks", SM_BLOCKS)), key=lambda x: x[1])[0]
    return blocks * warps * 32 / SM_THREADS, blocks, limit


def _find_ptxas(cuda_root):
    cands = [shutil.which("ptxas")]
    if cuda_root:
        cands.append(str(Path(cuda_root) / "bin" / "ptxas"))
    try:
        import nvidia.cuda_nvcc as nvcc  # the cuda extra's nvidia-cuda-nvcc-cu12
        cands.append(str(Path(list(nvcc.__path__)[0]) / "bin" / "ptxas"))
    except ImportError:
        pass
    for c in cands:
        if c and os.path.exists(c):
            return c
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cuda-root", help="a directory with bin/ptxas")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_resources.json"))
    args = ap.parse_args(argv)
    os.environ.pop("NUMBA_ENABLE_CUDASIM", None)
    ptxas = _find_ptxas(args.cuda_root)
    if ptxas is None:
        print("ptxas not found: pip install 'fastmix[cuda]' (nvidia-cuda-nvcc-cu12), or give "
              "--cuda-root", file=sys.stderr)
        return 2
    from numba import cuda
    _fake_device()
    rows = []
    print("| kernel | threads/block | registers | static smem | stack | spills (st/ld) | "
          "occupancy (blocks/SM, limit) |")
    print("|---|---|---|---|---|---|---|")
    for name, func, sig, threads in kernels():
        try:
            ptx, _ = cuda.compile_ptx(func, sig, cc=(9, 0))
        except Exception as exc:  # missing NVVM/NVRTC
            print(f"cannot compile PTX ({type(exc).__name__}: {str(exc)[:200]}); "
                  "install the cuda extra", file=sys.stderr)
            return 2
        info = ptxas_info(ptxas, ptx)
        occ, blocks, limit = occupancy(info["registers"], info["smem"], threads)
        row = dict(kernel=name, threads=threads, occupancy=occ, blocks_per_sm=blocks,
                   limited_by=limit, **info)
        rows.append(row)
        print(f"| {name} | {threads} | {info['registers']} | {info['smem']} B | "
              f"{info['stack']} B | {info['spill_stores']}/{info['spill_loads']} B | "
              f"{occ:.0%} ({blocks}, {limit}) |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(arch="sm_90", ptxas=ptxas, rows=rows), indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
