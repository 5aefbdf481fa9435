"""GMM-expansion driver (Lu, Wu, Ding & Yuan; ALGORITHMS.md section 4): many fixed Gaussian
components, only their weights learned, in one pass over the data.

Components ("nodes"):

* ``grid="tensor"`` (default for D <= 2): an even grid of ``n_nodes`` points per dimension over
  the data range (or ``bounds``), M = n_nodes ** D nodes, at most ``MAX_NODES``.  Only nodes
  within a window of a few bandwidths of a row are evaluated (``kernels.grid_window``), so a
  pass costs O(N (2W + 1)^D), not O(N M).
* ``grid="kmeans++"`` (default for D > 2, where a tensor grid explodes): M = ``n_nodes``
  centres from greedy k-means++ on a seeded sample of the data.  Every row is evaluated
  against every centre (the diag E-step kernel), O(N M D).  A fixed-bandwidth expansion in
  many dimensions needs very many nodes to approximate a density well -- the curse of
  dimensionality is not lifted, only made explicit.

Bandwidth: ``sigma_d = h_d`` (the grid spacing in dimension d; for k-means++ centres
h_d = range_d / (M^(1/D) - 1), the spacing of a tensor grid with as many nodes) unless a
number is given (isotropic sigma in data units).

Weights (one pass each):

* ``variant="em"`` (A): one weights-only EM step from uniform weights,
  pi_i = (1/N) sum_n phi_i(x_n) / sum_l phi_l(x_n); ``n_iter > 1`` repeats the step (passes),
  which increases the log-likelihood monotonically towards its global maximum (it is concave
  in pi).
* ``variant="kde"`` (B): pi_i proportional to sum_n phi_i(x_n), a kernel density estimate at the
  nodes (tensor grids only).

Passes: one for the data range when ``bounds`` is not given (skipped for in-memory arrays:
``min``/``max``), one per weights step.

GPU (``gpu=GPULaunch``, see ``gpu_launch``): the passes run the CUDA kernels -- the grid kernel
``fastmix.kernels.gpu_expansion`` for tensor grids, the diag E-step kernel for centres -- on
rows that live on the device (``fastmix.gpu.DeviceData``, uploaded once by the caller) or on
the blocks of a host ``Stream``, each block uploaded as it is read (out-of-core sources).  The
data range of device rows is a device pass (``column_range``); k-means++ centres copy device
rows to the host (node placement runs on the CPU).  Results equal the CPU's up to rounding.
"""
import math
from typing import NamedTuple

import numpy as np

from . import kernels, sources
from .gpu import DeviceData, to_gpu
from .init import _subsample, kmeans_plusplus
from .kernels import gpu as gk

#: Largest tensor grid (nodes).
MAX_NODES = 2**20


class Nodes(NamedTuple):
    """The fixed components: a tensor grid (``shape`` set) or free centres (``centres`` set)."""
    lo: np.ndarray       # (D,) first grid node
    h: np.ndarray        # (D,) grid spacing
    shape: tuple         # nodes per dimension (tensor grid) or () for centres
    sigma: np.ndarray    # (D,) bandwidth
    centres: np.ndarray  # (M, D) float64 for centres; (0, D) for a tensor grid

    @property
    def is_grid(self):
        return len(self.shape) > 0

    @property
    def n_nodes(self):
        return int(np.prod(self.shape)) if self.is_grid else self.centres.shape[0]

    def means(self):
        """(M, D) node positions (C order over the grid dimensions)."""
        if not self.is_grid:
            return self.centres.copy()
        axes = [self.lo[d] + self.h[d] * np.arange(n) for d, n in enumerate(self.shape)]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.reshape(-1) for m in mesh], axis=1)


class GPULaunch(NamedTuple):
    """Run the passes on the GPU with these launch shapes."""
    grid_block_rows: int  # grid kernel (tensor grids)
    grid_threads: int
    block_rows: int       # diag E-step / log_prob kernels (centres)
    threads: int


def gpu_launch():
    """A GPULaunch with ``fastmix.gpu``'s defaults (read at call time)."""
    from . import gpu
    return GPULaunch(gpu.DEFAULT_GRID_BLOCK_ROWS, gpu.DEFAULT_GRID_THREADS,
                     gpu.DEFAULT_BLOCK_ROWS, gpu.DEFAULT_THREADS)


def _device_pieces(data):
    """(X, w) device pieces of ``data``: DeviceData as one piece, a host Stream block by block
    (each block uploaded when it is read)."""
    if isinstance(data, DeviceData):
        yield data.X, data.w
        return
    for _, X, w in data.blocks():
        piece = to_gpu(X, w)
        yield piece.X, piece.w


def data_range(data):
    """(lo, hi) per feature: from memory, one pass over a stream, or a device pass over
    ``DeviceData`` (which also rejects NaN / infinity; the result is kept on ``data.range``)."""
    if isinstance(data, DeviceData):
        if data.range is None:
            lo, hi, bad = gk.column_range_gpu(data.X)
            if bad.any():
                raise ValueError("Input X contains NaN or infinity")
            data.range = (lo, hi)
        return data.range
    X = data.in_memory
    if X is not None:
        return X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
    lo = hi = None
    for _, Xb, _ in data.blocks():
        if Xb.shape[0] == 0:
            continue
        a, b = Xb.min(axis=0), Xb.max(axis=0)
        lo = a.astype(np.float64) if lo is None else np.minimum(lo, a)
        hi = b.astype(np.float64) if hi is None else np.maximum(hi, b)
    return lo, hi


def _check_range(lo, hi):
    span = hi - lo
    flat = np.flatnonzero(~(span > 0))
    if flat.size:
        raise ValueError(f"feature(s) {flat.tolist()} have zero range (all values equal, "
                         f"{lo[flat].tolist()[:4]}): a grid needs a positive extent; drop "
                         "them or give bounds=")
    return span


def tensor_grid(lo, hi, n_nodes, bandwidth):
    lo = np.asarray(lo, np.float64)
    hi = np.asarray(hi, np.float64)
    D = lo.shape[0]
    if n_nodes ** D > MAX_NODES:
        raise ValueError(f"a tensor grid of {n_nodes} nodes per dimension in D={D} has "
                         f"{n_nodes ** D:,} nodes, more than the limit MAX_NODES={MAX_NODES:,}; "
                         f"use fewer nodes or grid='kmeans++'")
    span = _check_range(lo, hi)
    h = span / (n_nodes - 1)
    sigma = h.copy() if bandwidth is None else np.full(D, float(bandwidth))
    return Nodes(lo, h, (n_nodes,) * D, sigma, np.zeros((0, D)))


def kmeanspp_nodes(data, lo, hi, n_nodes, bandwidth, rng):
    D = lo.shape[0]
    span = _check_range(lo, hi)
    if isinstance(data, DeviceData):  # node placement runs on the CPU
        data = sources.as_stream(*data.to_host())
    Xs, sws = _subsample(data, n_nodes, rng)
    if Xs.shape[0] < n_nodes:
        raise ValueError(f"n_nodes={n_nodes} centres need at least as many rows, got "
                         f"{Xs.shape[0]}")
    centres = kmeans_plusplus(Xs, sws, n_nodes, rng)
    h = span / max(1.0, n_nodes ** (1.0 / D) - 1.0)
    sigma = h.copy() if bandwidth is None else np.full(D, float(bandwidth))
    return Nodes(lo, h, (), sigma, centres)


def _centre_params(nodes, log_pi, dtype):
    """KernelParams of the centres as a diag mixture with fixed bandwidth."""
    M, D = nodes.centres.shape
    dt = np.dtype(dtype)
    inv = 1.0 / nodes.sigma
    lconst = log_pi + np.log(inv).sum() - 0.5 * D * math.log(2 * math.pi)
    pc = np.broadcast_to(inv, (M, 1, D))
    return kernels.KernelParams(kernels.DIAG, nodes.centres.astype(dt),
                                np.ascontiguousarray(pc, dtype=dt), lconst, np.zeros((M, D), dt),
                                np.zeros(D, dt), nodes.centres, np.zeros(0))


def weights_pass(data, nodes, log_pi, variant, acc=None, gpu=None):
    """One pass: [numerators (M,), [sum w log p, sum w]] of the weights step, added to ``acc``.

    ``log_pi`` are the current weights (the log-likelihood is evaluated under them).  With
    ``gpu`` (a GPULaunch) the pass runs on the GPU; ``data`` is then ``DeviceData`` or a host
    Stream whose blocks are uploaded one by one."""
    if not nodes.is_grid and variant != "em":
        raise ValueError("variant='kde' needs a tensor grid (grid='tensor')")
    if gpu is not None:
        return _weights_pass_gpu(data, nodes, log_pi, variant, acc, gpu)
    if isinstance(data, DeviceData):
        raise ValueError("device data need a GPU pass (gpu=GPULaunch)")
    if nodes.is_grid:
        mode = kernels.GRID_EM if variant == "em" else kernels.GRID_KDE
        for _, X, w in data.blocks():
            acc = kernels.grid_stats(mode, X, w, nodes.lo, nodes.h, nodes.shape, nodes.sigma,
                                     log_pi, data.chunk_rows, acc)
        return acc
    kp = _centre_params(nodes, log_pi, data.dtype)
    M, D = nodes.centres.shape
    total = kernels.Accumulator(kernels.DIAG, M, D)
    for _, X, w in data.blocks():
        kernels.estep_stats(X, w, kp, data.chunk_rows, total)
    if acc is None:
        acc = [np.zeros(M), np.zeros(2)]
    acc[0] += total.nk
    acc[1] += [total.ll, total.ws]
    return acc


def _weights_pass_gpu(data, nodes, log_pi, variant, acc, gpu):
    if nodes.is_grid:
        mode = kernels.GRID_EM if variant == "em" else kernels.GRID_KDE
        for Xd, wd in _device_pieces(data):
            acc = gk.grid_stats_gpu(mode, Xd, wd, nodes.lo, nodes.h, nodes.shape, nodes.sigma,
                                    log_pi, acc, block_rows=gpu.grid_block_rows,
                                    threads=gpu.grid_threads)
        return acc
    M = nodes.centres.shape[0]
    kp = _centre_params(nodes, log_pi, data.dtype)
    if acc is None:
        acc = [np.zeros(M), np.zeros(2)]
    for Xd, wd in _device_pieces(data):
        nk, _, _, ll, ws = gk.estep_stats_gpu(Xd, wd, kp, block_rows=gpu.block_rows,
                                              threads=gpu.threads)
        acc[0] += nk
        acc[1] += [ll, ws]
    return acc


def weights_from(acc, variant):
    """Normalised weights (M,) from a pass's numerators."""
    num = acc[0]
    total = num.sum()
    if not total > 0:
        raise ValueError("no data row fell near any node (all numerators are zero); check "
                         "bounds and bandwidth")
    return num / total


def log_prob(data, nodes, weights, gpu=None):
    """log p(x) (N,) of every row of ``data`` under the expansion (on the GPU with ``gpu``, a
    GPULaunch: ``data`` is then DeviceData or a host Stream)."""
    with np.errstate(divide="ignore"):
        log_pi = np.log(weights)
    parts = []
    if gpu is not None:
        for Xd, _ in _device_pieces(data):
            if nodes.is_grid:
                out = np.empty(Xd.shape[0])
                gk.grid_stats_gpu(kernels.GRID_LOGP, Xd, None, nodes.lo, nodes.h, nodes.shape,
                                  nodes.sigma, log_pi, logp=out,
                                  block_rows=gpu.grid_block_rows, threads=gpu.grid_threads)
            else:
                out = gk.log_prob_gpu(Xd, _centre_params(nodes, log_pi, data.dtype),
                                      block_rows=gpu.block_rows, threads=gpu.threads)[0]
            parts.append(out)
    else:
        if isinstance(data, DeviceData):
            raise ValueError("device data need a GPU pass (gpu=GPULaunch)")
        for _, X, _ in data.blocks():
            if nodes.is_grid:
                out = np.empty(X.shape[0])
                kernels.grid_stats(kernels.GRID_LOGP, X, None, nodes.lo, nodes.h, nodes.shape,
                                   nodes.sigma, log_pi, data.chunk_rows, logp=out)
            else:
                out = kernels.log_prob(X, _centre_params(nodes, log_pi, data.dtype),
                                       data.chunk_rows)[0]
            parts.append(out)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
