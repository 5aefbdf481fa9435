"""SGD driver for Gepperth et al.'s GMM training (ALGORITHMS.md section 1): toroidal grid
smoothing, annealing schedules, and the segment loop around the ``kernels.cpu_sgd`` steps.

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
learning rate are constant.
"""
import math
from dataclasses import dataclass, field

import numpy as np

from .kernels import cpu_sgd

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


def run_segment(X, state, sched, *, n, exact, batch, lam, s_min, s_max):
    """SGD over the rows of X (n_rows, D) with the current schedule; updates ``state``
    (xi, mu, s) in place; returns the per-step objectives."""
    xi, mu, s = state
    done = 0
    parts = []
    N = X.shape[0]
    while done < N:
        steps = sched.segment_length()
        rows = min(N - done, steps * batch)
        Xs = X[done:done + rows]
        g = toroidal_smoothing(n, sched.current_sigma())
        n_steps = -(-rows // batch)
        out = np.empty(n_steps)
        if batch == 1:
            cpu_sgd.sgd_step_single(Xs, xi, mu, s, g, exact, sched.eps, lam[0], lam[1], lam[2],
                                    s_min, s_max, out)
        else:
            cpu_sgd.sgd_minibatch(Xs, batch, xi, mu, s, g, exact, sched.eps, lam[0], lam[1],
                                  lam[2], s_min, s_max, out)
        sched.update(out)
        parts.append(out)
        done += rows
    return np.concatenate(parts) if parts else np.empty(0)
