"""GMM-expansion driver (Lu, Wu, Ding & Yuan; docs/algorithms.md §4): many fixed Gaussian
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

Automatic settings (``auto_*``, the estimator's ``n_nodes="auto"`` on a tensor grid): grid
bounds from trimmed quantiles of a sample (``auto_bounds``; rows beyond the grid load its edge
nodes, because the kernel clamps a row's nearest node into the grid), spacing = bandwidth
(``auto_grid``), the bandwidth from the rule ``rule_sigma`` with a factor f, and f and the
number of steps chosen on the sample by the held-out log-likelihood (``auto_select``).  The
constants ``AUTO_*`` below are the rule's numbers.

GPU (``gpu=GPULaunch``, see ``gpu_launch``): the passes run the CUDA kernels -- the grid kernel
``fastmix.kernels.cuda.expansion`` for tensor grids, the diag E-step kernel for centres -- on
rows that live on the device (``fastmix.gpu.DeviceData``, uploaded once by the caller) or on
the blocks of a host ``Stream``, each block uploaded as it is read (out-of-core sources).  The
data range of device rows is a device pass (``column_range``); k-means++ centres copy device
rows to the host (node placement runs on the CPU).  Results equal the CPU's up to rounding.
"""
import math
from typing import NamedTuple

import numpy as np

from . import io as sources, kernels
from .gpu import DeviceData, to_gpu
from .init import _subsample, kmeans_plusplus
from .kernels import cuda as gk

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


def kmeanspp_nodes(data, lo, hi, n_nodes, bandwidth, rng, at_most_rows=False):
    """``n_nodes`` k-means++ centres (at most as many as the sample has rows with
    ``at_most_rows``) with the spacing-rule bandwidth (or ``bandwidth``)."""
    D = lo.shape[0]
    span = _check_range(lo, hi)
    if isinstance(data, DeviceData):  # node placement runs on the CPU
        data = sources.as_stream(*data.to_host())
    Xs, sws = _subsample(data, n_nodes, rng)
    if at_most_rows:
        n_nodes = max(1, min(n_nodes, Xs.shape[0]))
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


# ------------------------------------------------------------------ automatic settings ------
#: Grid bounds of the automatic settings: the [AUTO_QUANTILE, 1 - AUTO_QUANTILE] quantiles of
#: each feature, widened by AUTO_PAD times their distance on each side, within the data range.
AUTO_QUANTILE = 0.001
AUTO_PAD = 0.05
#: ... but never closer to the extremes than the AUTO_TRIM_ROWS-th smallest / largest row of the
#: sample (the quantile level is at least AUTO_TRIM_ROWS / n for a sample of n rows).
AUTO_TRIM_ROWS = 5
#: Held-out rows score at least log(AUTO_FLOOR / volume of the grid box) each, so that a row
#: no fitted node reaches (log-density -inf) does not decide the selection alone.
AUTO_FLOOR = 1e-6
#: Bandwidth candidates: sigma_d = f * s_d * n ** (-1 / (D + 4)) for f in AUTO_FACTORS, with
#: s_d = min(standard deviation, interquartile range / 1.349) of feature d and n the effective
#: number of rows (sum w) ** 2 / sum w ** 2.
AUTO_FACTORS = (0.25, 0.35, 0.5, 0.7)
#: Factor used without a selection (fewer than AUTO_MIN_ROWS rows, partial_fit).
AUTO_FACTOR = 0.5
#: Most weights-only EM steps tried per candidate (early stopping on the held-out likelihood).
AUTO_MAX_STEPS = 8
#: Rows of the selection sample (a stride subsample of in-memory data, a uniform sample of
#: ``init``'s k-means sample size of a stream); every AUTO_HOLDOUT-th row of it is held out.
AUTO_SAMPLE = 20_000
AUTO_HOLDOUT = 5
#: Below this many rows the bandwidth is the rule with AUTO_FACTOR and one step (no selection).
AUTO_MIN_ROWS = 100
#: Centres of an automatic k-means++ expansion (D > 2), at most one per sampled row.
AUTO_CENTRES = 64
#: Most nodes per dimension of an automatic grid (D = 1, D = 2; in D > 2 also MAX_NODES ** (1/D)).
AUTO_MAX_PER_DIM = {1: 2048, 2: 256}


class AutoChoice(NamedTuple):
    """What the automatic settings chose (kept on the estimator as ``auto_``)."""
    factor: float         # bandwidth factor f (nan when the bandwidth was given)
    n_iter: int           # weights steps
    lo: np.ndarray        # (D,) grid bounds
    hi: np.ndarray        # (D,)
    scale: np.ndarray     # (D,) s_d
    n_eff: float          # effective rows of the data
    scores: dict          # f -> (held-out mean log-likelihood, steps) per candidate


def weighted_quantiles(x, w, qs):
    """Quantiles ``qs`` of the 1-D sample x (n,) with weights w (n,) (or None): the smallest x
    whose weighted empirical CDF reaches q."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    if w is None:
        cw = np.arange(1, xs.shape[0] + 1, dtype=np.float64)
    else:
        cw = np.cumsum(np.asarray(w, np.float64)[order])
    cw /= cw[-1]
    idx = np.searchsorted(cw, np.asarray(qs, np.float64), side="left")
    return xs[np.minimum(idx, xs.shape[0] - 1)]


def auto_scale(Xs, ws):
    """Per-feature robust spread (D,) of the sample Xs (n, D) with weights ws (n,) or None:
    min(standard deviation, IQR / 1.349), the standard deviation where the IQR is zero."""
    w = np.ones(Xs.shape[0]) if ws is None else np.asarray(ws, np.float64)
    mean = w @ Xs / w.sum()
    sd = np.sqrt(np.maximum(w @ (Xs - mean) ** 2 / w.sum(), 0.0))
    iqr = np.array([np.subtract(*weighted_quantiles(Xs[:, d], ws, [0.75, 0.25]))
                    for d in range(Xs.shape[1])]) / 1.349
    return np.where(iqr > 0, np.minimum(sd, iqr), sd)


def auto_bounds(Xs, ws, lo, hi):
    """Grid bounds (lo, hi) (D,): the q and 1 - q quantiles of the sample, q = max(AUTO_QUANTILE,
    AUTO_TRIM_ROWS / n), widened by AUTO_PAD of their distance, inside the data range
    [lo, hi]; the data range where the quantiles coincide."""
    n, D = Xs.shape
    q = min(0.25, max(AUTO_QUANTILE, AUTO_TRIM_ROWS / n))
    qlo = np.empty(D)
    qhi = np.empty(D)
    for d in range(D):
        qlo[d], qhi[d] = weighted_quantiles(Xs[:, d], ws, [q, 1 - q])
    pad = AUTO_PAD * (qhi - qlo)
    a = np.maximum(lo, qlo - pad)
    b = np.minimum(hi, qhi + pad)
    flat = ~(b > a)
    return np.where(flat, lo, a), np.where(flat, hi, b)


def auto_shape(lo, hi, sigma):
    """Nodes per dimension of an automatic grid: spacing = bandwidth (ceil(span / sigma) + 1),
    at most AUTO_MAX_PER_DIM (and MAX_NODES ** (1/D)), at least 2."""
    D = lo.shape[0]
    cap = min(AUTO_MAX_PER_DIM.get(D, AUTO_MAX_PER_DIM[2]),
              int(math.floor(MAX_NODES ** (1.0 / D) + 1e-9)))
    n = np.ceil((hi - lo) / sigma).astype(np.int64) + 1
    return tuple(int(v) for v in np.clip(n, 2, max(2, cap)))


def auto_grid(lo, hi, sigma):
    """A tensor grid over [lo, hi] with ``auto_shape`` nodes and bandwidth max(sigma, spacing)
    (D,) (the spacing exceeds sigma only where the node cap binds)."""
    lo = np.asarray(lo, np.float64)
    hi = np.asarray(hi, np.float64)
    span = _check_range(lo, hi)
    shape = auto_shape(lo, hi, sigma)
    h = span / (np.array(shape) - 1)
    return Nodes(lo, h, shape, np.maximum(np.asarray(sigma, np.float64), h),
                 np.zeros((0, lo.shape[0])))


def n_effective(w, n):
    """(sum w) ** 2 / sum w ** 2 (n for unit weights)."""
    if w is None:
        return float(n)
    w = np.asarray(w, np.float64)
    s2 = float(w @ w)
    return float(w.sum() ** 2 / s2) if s2 > 0 else float(n)


def rule_sigma(factor, scale, n_eff):
    """The bandwidth rule f * s_d * n ** (-1 / (D + 4)), (D,)."""
    D = scale.shape[0]
    return factor * scale * n_eff ** (-1.0 / (D + 4))


def _steps(data, nodes, variant, steps, valid=None, inside=None, floor=-np.inf):
    """Run up to ``steps`` weights steps on ``data``; with ``valid`` (a Stream) stop when the
    mean log-likelihood of its rows ``inside`` the grid stops increasing.  Returns (weights,
    accumulator of the last step, lower bounds, best held-out score, steps used)."""
    M = nodes.n_nodes
    weights = np.full(M, 1.0 / M)
    best = (-np.inf, 0, weights, None)
    lbs = []
    for s in range(steps if variant == "em" else 1):
        with np.errstate(divide="ignore"):
            log_w = np.log(weights)
        acc = weights_pass(data, nodes, log_w, variant)
        lbs.append(float(acc[1][0] / acc[1][1]))
        weights = weights_from(acc, variant)
        if valid is None:
            best = (np.nan, s + 1, weights, acc)
            continue
        lp = np.maximum(log_prob(valid, nodes, weights)[inside], floor)
        score = float(lp.mean()) if lp.size else -np.inf
        if not score > best[0]:
            break
        best = (score, s + 1, weights, acc)
    return best[2], best[3], lbs[:best[1]], best[0], best[1]


def auto_select(Xs, ws, lo, hi, n_eff, variant, bandwidth, n_iter, chunk_rows):
    """Choose the bandwidth factor and the number of weights steps on the sample (Xs, ws) by
    the held-out mean log-likelihood (rows inside the grid; every AUTO_HOLDOUT-th row held out,
    the rest fitted), one candidate per AUTO_FACTORS in increasing order (or the given
    ``bandwidth``), each with up to ``n_iter`` (or AUTO_MAX_STEPS) steps stopped early when the
    held-out score drops; the candidates stop at the first factor that scores below the best.

    Xs (n, D) float; ws (n,) or None; lo, hi (D,) the grid bounds; n_eff the effective rows of
    the whole data (the rule scales with it).  Returns an AutoChoice."""
    n, D = Xs.shape
    scale = auto_scale(Xs, ws)
    if not np.all(scale > 0):
        scale = np.where(scale > 0, scale, (hi - lo) / 4)
    max_steps = AUTO_MAX_STEPS if n_iter is None else int(n_iter)
    factors = AUTO_FACTORS if bandwidth is None else ("given",)
    if n < AUTO_MIN_ROWS:
        return AutoChoice(AUTO_FACTOR if bandwidth is None else math.nan,
                          1 if n_iter is None else int(n_iter), lo, hi, scale, n_eff, {})
    held = np.zeros(n, bool)
    held[::AUTO_HOLDOUT] = True
    wt = None if ws is None else ws[~held]
    train = sources.as_stream(np.ascontiguousarray(Xs[~held]), wt, chunk_rows)
    Xv = np.ascontiguousarray(Xs[held])
    valid = sources.as_stream(Xv, None, chunk_rows)
    inside = np.all((Xv >= lo) & (Xv <= hi), axis=1)
    if ws is not None:  # held-out rows of zero weight do not count
        inside &= ws[held] > 0
    n_tr = n_effective(wt, train.n_rows)
    floor = math.log(AUTO_FLOOR) - float(np.log(hi - lo).sum())
    scores = {}
    for f in factors:
        sigma = np.full(D, float(bandwidth)) if bandwidth is not None else \
            rule_sigma(f, scale, n_tr)
        nodes = auto_grid(lo, hi, sigma)
        _, _, _, score, steps = _steps(train, nodes, variant, max_steps, valid, inside, floor)
        scores[f] = (score, steps)
        if len(scores) > 1 and score < max(v[0] for v in scores.values()):
            break  # past the best factor (the factors increase): the rest are not tried
    best = max(scores, key=lambda f: scores[f][0])
    steps = scores[best][1]
    f_best = best if bandwidth is None else math.nan
    if n_iter is not None:
        steps = int(n_iter)
    return AutoChoice(f_best, max(1, steps), lo, hi, scale, n_eff, scores)


def auto_sample(data, rng):
    """The selection sample (Xs (n, D), ws (n,) or None; n <= AUTO_SAMPLE) of a host Stream:
    every ceil(N / AUTO_SAMPLE)-th row of in-memory data (deterministic), else every k-th row
    of the uniform sample of ``init._subsample`` (``rng``)."""
    X = data.in_memory
    if X is not None:
        step = max(1, -(-X.shape[0] // AUTO_SAMPLE))
        sw = data.weights
        return (np.ascontiguousarray(X[::step], dtype=np.float64),
                None if sw is None else np.asarray(sw[::step], np.float64))
    Xs, sws = _subsample(data, 1, rng)
    step = max(1, -(-Xs.shape[0] // AUTO_SAMPLE))
    return (np.ascontiguousarray(Xs[::step], dtype=np.float64),
            None if sws is None else np.asarray(sws[::step], np.float64))


# ------------------------------------------------------------------ parametric stage --------
#: The parametric stage (the estimator's ``parametric="auto"``, docs/user_guide/expansion.md):
#: every k-th row is held out, k = max(STACK_EVERY, ceil(N / STACK_HOLDOUT)), the expansion
#: and EM mixtures are fitted on the other rows and combined by the held-out likelihood.
STACK_HOLDOUT = 50_000
STACK_EVERY = 5
#: Below this many rows (or effective rows) the stage is skipped (the pure expansion).
STACK_MIN_ROWS = 500
#: Numbers of components tried for the EM mixture, in this order, until the held-out score
#: has not improved for STACK_PATIENCE candidates; K * (parameters per component) stays below
#: (training rows) / STACK_ROWS_PER_PARAM.
STACK_KS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32)
STACK_PATIENCE = 2
STACK_ROWS_PER_PARAM = 10
#: EM starts (k-means++ seeds) per K in the sweep (the chosen K's fits from all of them are
#: averaged); the sweep's tolerance and rows; the chosen K's fits' tolerance and iterations when
#: they are refitted (training rows, then all rows).
STACK_INITS = 5
#: The chosen K's fits from its best STACK_AVERAGE starts (of STACK_INITS) are averaged into
#: the EM part; each costs a refit on the training rows and on all rows (1 = the best start
#: alone, the rule before averaging; bench/results/expansion_stack_variants.md).
STACK_AVERAGE = 5
STACK_SWEEP_TOL = 1e-3
STACK_SWEEP_ROWS = 20_000
STACK_TOL = 1e-5
STACK_MAX_ITER = 1000
#: The expansion is kept only if the combination beats the EM mixture alone on the held-out
#: rows by at least STACK_MIN_Z standard errors of the paired per-row difference.
STACK_MIN_Z = 1.0


def holdout_mask(n):
    """Boolean mask (n,) of the held-out rows of the parametric stage: every k-th row from the
    first, k = max(STACK_EVERY, ceil(n / STACK_HOLDOUT))."""
    k = max(STACK_EVERY, -(-n // STACK_HOLDOUT))
    held = np.zeros(n, bool)
    held[::k] = True
    return held


def stack_max_components(n_train, D):
    """Largest K the stage tries for ``n_train`` training rows in D dimensions (full
    covariances: D + D (D + 1) / 2 + 1 parameters per component)."""
    per = D + D * (D + 1) // 2 + 1
    return int(n_train // (STACK_ROWS_PER_PARAM * per))


def mix_log_prob(log_p, weights):
    """log sum_j weights_j p_j(x) (n,) from the members' log-densities ``log_p`` (n, J) and
    the mixing weights (J,) (members of weight 0 are left out)."""
    keep = np.flatnonzero(np.asarray(weights) > 0)
    A = log_p[:, keep] + np.log(np.asarray(weights, np.float64)[keep])
    m = A.max(axis=1)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return m + np.log(np.exp(A - m[:, None]).sum(axis=1))


def best_alpha(lp_exp, lp_par, w=None):
    """The alpha in [0, 1] that maximises sum_n w_n log(alpha p_exp(x_n) + (1 - alpha)
    p_par(x_n)) (the held-out log-likelihood of the two-member stack; Smyth & Wolpert 1999),
    from the members' log-densities lp_exp, lp_par (n,) and row weights w (n,) or None.

    The objective is concave in alpha, so its derivative decreases: alpha is 0 where the
    derivative at 0 is <= 0, 1 where the derivative at 1 is >= 0, else the root of the
    derivative by bisection (to 1e-12).  Rows where both members have density 0 are ignored."""
    lp_exp = np.asarray(lp_exp, np.float64)
    lp_par = np.asarray(lp_par, np.float64)
    w = np.ones(lp_exp.shape[0]) if w is None else np.asarray(w, np.float64)
    m = np.maximum(lp_exp, lp_par)
    ok = np.isfinite(m) & (w > 0)
    if not ok.any():
        return 0.0
    e, g, w = np.exp(lp_exp[ok] - m[ok]), np.exp(lp_par[ok] - m[ok]), w[ok]
    diff = e - g

    def slope(a):
        return float(w @ (diff / (g + a * diff)))

    with np.errstate(divide="ignore", invalid="ignore"):
        if not slope(0.0) > 0:
            return 0.0
        if slope(1.0) >= 0:
            return 1.0
    lo, hi = 0.0, 1.0
    while hi - lo > 1e-12:
        mid = 0.5 * (lo + hi)
        if slope(mid) > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)



def stack_alpha(lp_exp, lp_par, w=None):
    """(alpha, z): the weight of the expansion in alpha * expansion + (1 - alpha) * EM that
    maximises the held-out log-likelihood (``best_alpha``; lp_exp, lp_par (n,) the two
    members' log-densities of the held-out rows, w (n,) their weights or None), and the gain
    of the combination over EM alone in standard errors, measured out of sample: the held-out
    rows are split in two (even and odd positions), each half is scored with the alpha chosen
    on the other half, d = log p_combined - log p_EM per row, z = mean(d) / (sd(d) /
    sqrt(n_eff)).  alpha is 0 when z < STACK_MIN_Z: the expansion must earn its place (the
    simpler, parametric model is kept otherwise)."""
    lp_exp = np.asarray(lp_exp, np.float64)
    lp_par = np.asarray(lp_par, np.float64)
    n = lp_exp.shape[0]
    ww = np.ones(n) if w is None else np.asarray(w, np.float64)
    if n < 4:
        return 0.0, math.nan
    alpha = best_alpha(lp_exp, lp_par, ww)
    d = np.empty(n)
    for part in (slice(0, None, 2), slice(1, None, 2)):
        other = np.ones(n, bool)
        other[part] = False
        a = best_alpha(lp_exp[other], lp_par[other], ww[other])
        d[part] = mix_log_prob(np.stack([lp_exp[part], lp_par[part]], axis=1),
                               [a, 1.0 - a]) - lp_par[part]
    ok = np.isfinite(d) & (ww > 0)
    d, ww = d[ok], ww[ok]
    if d.shape[0] < 2:
        return 0.0, math.nan
    mean = float(np.average(d, weights=ww))
    sd = math.sqrt(float(np.average((d - mean) ** 2, weights=ww)))
    se = sd / math.sqrt(n_effective(ww, d.shape[0]))
    z = mean / se if se > 0 else (math.inf if mean > 0 else 0.0)
    return (alpha if z >= STACK_MIN_Z else 0.0), z
