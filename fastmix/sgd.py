"""SGD driver for Gepperth et al.'s GMM training (docs/algorithms.md §1): toroidal grid
smoothing, annealing schedules, and the segment loop around the ``kernels.cpu.sgd`` steps.

The K = n x n components sit on a torus; the smoothing matrix g(sigma) has rows
g_kj ~ exp(-d^2(k, j) / (2 sigma^2)) with the wrap-around grid distance d, normalised per row
(sigma -> 0 gives g = I, the plain max-component bound).  sigma is annealed:

* ``"adaptive"`` (the released code): every W = ceil(1 / eps_min) steps the running loss average
  A (an exponential moving average with rate 1 / W) is compared with its value at the previous
  check and with the first loss L0: if -2 delta < (A - A_prev) / (A_prev - L0) < delta the
  progress has stalled, and sigma and the learning rate are multiplied by gamma (0.9), down to
  sigma_min and eps_min;
* ``"time"`` (the ICLR text): sigma = sigma0 until t0, then exponential decay to sigma_min at
  t_inf, constant after (t counted in steps; piecewise constant over segments of
  ``TIME_SEGMENT`` steps);
* ``"off"``: g = I throughout.

Data are read through the kernels in segments of consecutive steps during which sigma and the
learning rate are constant (``run_segment``).  ``run_segment_gpu`` runs the same segments for
the diagonal mini-batch path on the GPU (``DeviceSGD``: rows and state resident on the device,
``fastmix.kernels.cuda.sgd``); both share the segment loop, so a given row order gives the same
steps, schedule updates and objectives on either device, up to rounding.
"""
import math
from dataclasses import dataclass, field

import numpy as np

from .kernels.cpu import sgd as cpu_sgd
from .kernels import cuda as gk

#: Steps per segment of the time schedule (sigma piecewise constant in between).
TIME_SEGMENT = 100


#: Truncation of the grid smoothing: an unnormalised weight exp(-d^2 / (2 sigma^2)) below this
#: fraction of the row's largest (the self-weight, 1) is set to exactly 0 before the rows are
#: normalised.  The gradient of component j scales with its weight, so the kernels skip the
#: zeroed components: the smoothing is cut to its support d^2 < 2 sigma^2 ln(1e6) (about
#: 5.3 sigma), and once sigma < 0.19 (grid spacing 1) g is exactly the identity and the kernels
#: update the best-matching unit only (no K x K product either).  At sigma = 1.25 (the default
#: start for K = 25) nothing is cut: the farthest weight on a 5 x 5 torus is exp(-8 / 3.1).
SMOOTHING_TRUNCATE = 1e-6


def toroidal_smoothing(n, sigma):
    """Row-normalised Gaussian smoothing (n^2, n^2) on an n x n torus, truncated to its
    support (``SMOOTHING_TRUNCATE``; identity for sigma 0)."""
    K = n * n
    if sigma <= 0:
        return np.eye(K)
    r, c = np.divmod(np.arange(K), n)
    dr = np.abs(r[:, None] - r[None, :])
    dc = np.abs(c[:, None] - c[None, :])
    d2 = np.minimum(dr, n - dr) ** 2 + np.minimum(dc, n - dc) ** 2
    g = np.exp(-d2 / (2.0 * sigma ** 2))
    g[g < SMOOTHING_TRUNCATE] = 0.0
    return g / g.sum(axis=1, keepdims=True)


@dataclass
class Schedule:
    """Annealing state; ``t`` counts SGD steps (batches)."""
    kind: str
    sigma: float
    eps: float
    sigma_min: float
    eps_min: float
    delta: float = 0.05
    gamma: float = 0.9
    window: int = 1000
    t0: int = 0
    t_inf: int = 1
    sigma0: float = 1.0
    t: int = 0
    avg: float = float("nan")
    avg_prev: float = float("nan")
    loss0: float = float("nan")
    checks: int = 0
    history: list = field(default_factory=list)

    def segment_length(self):
        if self.kind == "adaptive":
            return self.window - (self.t % self.window)
        if self.kind == "time":
            return TIME_SEGMENT
        return 1 << 30

    def current_sigma(self):
        if self.kind == "off":
            return 0.0
        if self.kind == "time":
            if self.t < self.t0:
                return self.sigma0
            if self.t >= self.t_inf:
                return self.sigma_min
            kappa = math.log(self.sigma0 / self.sigma_min) / max(1, self.t_inf - self.t0)
            return self.sigma0 * math.exp(-kappa * (self.t - self.t0))
        return self.sigma

    def update(self, objectives):
        """Record a segment's per-step objectives (to maximise); adapt sigma and eps."""
        if objectives.size == 0:
            return
        loss = -objectives
        if math.isnan(self.loss0):
            self.loss0 = float(loss[0])
            self.avg = float(loss[0])
        rate = 1.0 / self.window
        # EMA over the segment, in closed form for a constant rate
        for v in loss:
            self.avg += rate * (float(v) - self.avg)
        self.t += objectives.size
        self.history.append((self.t, float(np.mean(loss)), self.current_sigma(), self.eps))
        if self.kind != "adaptive" or self.t % self.window:
            return
        self.checks += 1
        if self.checks >= 2 and not math.isnan(self.avg_prev):
            denom = self.avg_prev - self.loss0
            r = (self.avg - self.avg_prev) / denom if denom != 0 else 0.0
            if -2 * self.delta < r < self.delta:
                self.sigma = max(self.sigma_min, self.sigma * self.gamma)
                self.eps = max(self.eps_min, self.eps * self.gamma)
        self.avg_prev = self.avg


def default_window(eps_min, sigma0, sigma_min, gamma, planned_steps=None):
    """Default window W of the adaptive schedule: ceil(1 / eps_min) (the released code), but
    when the number of planned steps T is known (``fit`` on data of known length), at most
    T / (m + 2), where m = ceil(log(sigma_min / sigma0) / log(gamma)) is the number of decays
    from sigma0 to sigma_min: the fit then has room for the full annealing if every check finds
    the loss stationary (plus one window to start and one to settle at sigma_min).  With
    W = 1000 a 10-epoch fit of 1437 rows has 14 checks and stops near sigma0 * 0.9^12."""
    w = int(math.ceil(1.0 / eps_min))
    if planned_steps is None or sigma0 <= sigma_min:
        return w
    m = int(math.ceil(math.log(sigma_min / sigma0) / math.log(gamma)))
    return max(1, min(w, int(planned_steps) // (m + 2)))


def lpd_log_prob(X, xi, mu, U, a, r):
    """log pi_k + log N(x | k) (N, K) of the local-principal-directions model, exact: with
    orthonormal U_k the covariance U^T diag(1/a^2) U + (I - U^T U)/r^2 has the eigenvalues
    1/a_s^2 along u_s and 1/r^2 on the complement, so (Woodbury and the determinant lemma in
    closed form) log det P_k = 2 sum_s log a_ks + 2 (D - S) log r_k and
    x^T P_k x = sum_s a_s^2 y_s^2 + r^2 (|z|^2 - |y|^2)."""
    X = np.asarray(X, dtype=np.float64)
    K, S, D = U.shape
    out = np.empty((X.shape[0], K))
    logpi = xi - (xi.max() + np.log(np.exp(xi - xi.max()).sum()))
    for k in range(K):
        Z = X - mu[k]
        Y = Z @ U[k].T
        q = np.einsum("nd,nd->n", Z, Z)
        resid = np.maximum(q - np.einsum("ns,ns->n", Y, Y), 0.0)
        out[:, k] = (logpi[k] - 0.5 * D * np.log(2 * np.pi) + np.log(a[k]).sum()
                     + (D - S) * np.log(r[k]) - 0.5 * ((Y * a[k]) ** 2).sum(axis=1)
                     - 0.5 * r[k] ** 2 * resid)
    return out


def lpd_sample(rng, weights, mu, U, a, r, n):
    """n draws (X, labels): x = mu_k + e / r_k + U_k^T ((1/a_k - 1/r_k) * (U_k e)), e ~ N(0, I)
    (the symmetric square root of the covariance applied to e)."""
    K, S, D = U.shape
    lab = rng.choice(K, size=n, p=weights)
    X = np.empty((n, D))
    for k in range(K):
        idx = np.flatnonzero(lab == k)
        e = rng.standard_normal((idx.size, D))
        X[idx] = mu[k] + e / r[k] + ((e @ U[k].T) * (1.0 / a[k] - 1.0 / r[k])) @ U[k]
    return X, lab


def _segments(n_rows, sched, n, batch, step):
    """The segment loop shared by the CPU and GPU drivers: ``step(done, rows, g)`` runs the
    SGD steps over ``rows`` rows starting at row ``done`` of the stream with the smoothing g
    and returns their objectives; the schedule is updated after each segment."""
    done = 0
    parts = []
    while done < n_rows:
        steps = sched.segment_length()
        rows = min(n_rows - done, steps * batch)
        out = step(done, rows, toroidal_smoothing(n, sched.current_sigma()))
        sched.update(out)
        parts.append(out)
        done += rows
    return np.concatenate(parts) if parts else np.empty(0)


def run_segment(X, state, sched, *, n, exact, batch, lam, s_min, s_max):
    """SGD over the rows of X (n_rows, D) with the current schedule; updates ``state``
    in place -- (xi, mu, s) for diagonal precisions, (xi, mu, U, a, r) for local principal
    directions -- and returns the per-step objectives."""
    def step(done, rows, g):
        Xs = X[done:done + rows]
        out = np.empty(-(-rows // batch))
        if len(state) == 5:  # local principal directions (re-orthonormalised in the kernel)
            if batch == 1:
                cpu_sgd.sgd_lpd_step_single(Xs, *state, g, exact, sched.eps, lam[0], lam[1],
                                            lam[2], s_min, s_max, out)
            else:
                cpu_sgd.sgd_lpd_minibatch(Xs, batch, *state, g, exact, sched.eps, lam[0],
                                          lam[1], lam[2], s_min, s_max, out)
        elif batch == 1:
            cpu_sgd.sgd_step_single(Xs, *state, g, exact, sched.eps, lam[0], lam[1], lam[2],
                                    s_min, s_max, out)
        else:
            cpu_sgd.sgd_minibatch(Xs, batch, *state, g, exact, sched.eps, lam[0], lam[1],
                                  lam[2], s_min, s_max, out)
        return out

    return _segments(X.shape[0], sched, n, batch, step)


# ------------------------------------------------------------------------------ GPU ---------
#: Launch shape of the GPU SGD kernels (read at each call; the results do not depend on it).
GPU_THREADS = gk.SGD_THREADS
GPU_TILE_ROWS = gk.SGD_TILE_ROWS

#: True for arrays that live on the GPU (``__cuda_array_interface__``, simulator arrays).
is_device_array = gk.is_device_array


class DeviceSGD:
    """Diagonal mini-batch SGD on the GPU (``fastmix.kernels.cuda.sgd``): the rows and the
    state (xi, mu, s) live on the device; each segment sends the smoothing g and returns its
    per-step objectives, nothing else.

    ``X``: a NumPy array (copied to the device once, float32 kept as float32, anything else
    float64) or an array exposing ``__cuda_array_interface__`` (used in place).  ``state``:
    the host (xi, mu, s), uploaded here; ``download`` copies the device state back into it."""

    def __init__(self, X, state, batch, threads=None, tile_rows=None):
        if len(state) != 3:
            raise ValueError("the GPU SGD kernels cover diagonal precisions (xi, mu, s) only")
        if int(batch) < 2:
            raise ValueError("the GPU SGD path is the mini-batch one (batch >= 2)")
        self.X = gk.to_device(X)
        self.state = gk.SGDDeviceState(*state, batch, GPU_THREADS if threads is None else threads,
                                       GPU_TILE_ROWS if tile_rows is None else tile_rows)
        if self.X.shape[1] != self.state.D:
            raise ValueError(f"data have {self.X.shape[1]} features, the model "
                             f"{self.state.D}")
        self.batch = int(batch)

    @property
    def n_rows(self):
        return int(self.X.shape[0])

    def order(self, perm):
        """A row order (e.g. an epoch's permutation) on the device, for ``run_segment_gpu``."""
        return gk.rows_to_device(perm)

    def download(self, state):
        self.state.download(*state)


def run_segment_gpu(dev, sched, *, n, exact, lam, s_min, s_max, order=None, n_rows=None):
    """``run_segment`` on the GPU: mini-batch SGD over the first ``n_rows`` (default all) rows
    of ``dev.X`` taken in the device order ``order`` (``dev.order(perm)``) or in storage order,
    with the same segments, schedule updates and per-step objectives as the CPU driver on the
    rows ``X[perm[:n_rows]]``; updates ``dev``'s device state (``dev.download(state)`` copies
    it to the host) and returns the per-step objectives."""
    if n_rows is None:
        n_rows = dev.n_rows if order is None else int(order.shape[0])

    def step(done, rows, g):
        return gk.sgd_minibatch_gpu(dev.X, order, done, rows, dev.state, g, exact, sched.eps,
                                    lam[0], lam[1], lam[2], s_min, s_max)

    return _segments(int(n_rows), sched, n, dev.batch, step)
