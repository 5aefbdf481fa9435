"""Sufficient statistics of a Gaussian mixture: the one currency every driver trades in.

A ``Stats`` holds, for one covariance kind and one set of centres (the means the second moments
are centred on), the float64 sums over a set of rows with weights ``w_n`` and responsibilities
``r_nk``:

========  ======================  ===========================================================
field     shape                   meaning
========  ======================  ===========================================================
nk        (K,)                    sum w r
s1        (K, D)                  sum w r x
s2        full (K, D, D)          sum w r (x - c_k)(x - c_k)^T
          tied (1, D, D)          sum w (x - g)(x - g)^T
          diag (K, 1, D)          sum w r (x - c_k)^2
          spherical (K, 1, 1)     sum w r ||x - c_k||^2
          lowrank (K, 1+q, D+q+1) factor-analyser statistics (``kernels/cpu/lowrank.py``)
centre    (K, D)                  c_k, the centres of s2 (non-tied kinds)
gcentre   (D,)                    g, the centre of s2 (tied)
ll        float                   sum w log p(x) under the model that produced r (0 if none)
ws        float                   sum w
========  ======================  ===========================================================

Statistics with the same kind and centres merge by addition (``a + b``); addition is
associative up to floating-point rounding, and drivers merge in a fixed order so results are
reproducible.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Stats:
    kind: str
    nk: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    centre: np.ndarray
    gcentre: np.ndarray
    ll: float = 0.0
    ws: float = 0.0

    @property
    def n_components(self):
        return self.nk.shape[0]

    @property
    def n_features(self):
        return self.s1.shape[1]

    def _check_compatible(self, other):
        if not isinstance(other, Stats):
            return NotImplemented
        if self.kind != other.kind or self.s2.shape != other.s2.shape or self.s1.shape != other.s1.shape:
            raise ValueError("cannot merge statistics of different covariance kinds or shapes")
        if not (np.array_equal(self.centre, other.centre)
                and np.array_equal(self.gcentre, other.gcentre)):
            raise ValueError("cannot merge statistics centred on different means")
        return True

    def __add__(self, other):
        if other == 0:  # allows sum(list_of_stats)
            return self
        ok = self._check_compatible(other)
        if ok is NotImplemented:
            return ok
        return Stats(self.kind, self.nk + other.nk, self.s1 + other.s1, self.s2 + other.s2,
                     self.centre, self.gcentre, self.ll + other.ll, self.ws + other.ws)

    __radd__ = __add__

    def __eq__(self, other):
        if isinstance(other, int) and other == 0:
            return False
        if not isinstance(other, Stats):
            return NotImplemented
        return (self.kind == other.kind and self.ll == other.ll and self.ws == other.ws
                and all(np.array_equal(getattr(self, f), getattr(other, f))
                        for f in ("nk", "s1", "s2", "centre", "gcentre")))

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable

    @property
    def mean_log_likelihood(self):
        """ll / ws: the average log-likelihood per (weighted) row."""
        return self.ll / self.ws if self.ws > 0 else -np.inf

    def scaled(self, c):
        """All sums multiplied by ``c`` (e.g. 1/ws for per-row averages)."""
        return Stats(self.kind, self.nk * c, self.s1 * c, self.s2 * c, self.centre, self.gcentre,
                     self.ll * c, self.ws * c)

    def recentred(self, centre, gcentre):
        """The same sums with second moments about new centres (exact up to rounding).

        With a = sum w r (x - c) and delta = c - c', sum w r (x - c')(x - c')^T equals
        s2 + a delta^T + delta a^T + nk delta delta^T (tied: the same over all rows about g)."""
        centre = np.asarray(centre, dtype=np.float64)
        gcentre = np.asarray(gcentre, dtype=np.float64)
        s2 = self.s2.copy()
        if self.kind == "tied":
            d = self.gcentre - gcentre
            a = self.s1.sum(axis=0) - self.ws * self.gcentre
            s2[0] += np.outer(a, d) + np.outer(d, a) + self.ws * np.outer(d, d)
        else:
            d = self.centre - centre
            a = self.s1 - self.nk[:, None] * self.centre
            if self.kind == "full":
                s2 += (a[:, :, None] * d[:, None, :] + d[:, :, None] * a[:, None, :]
                       + self.nk[:, None, None] * d[:, :, None] * d[:, None, :])
            elif self.kind == "diag":
                s2[:, 0, :] += 2.0 * a * d + self.nk[:, None] * d * d
            elif self.kind == "lowrank":  # cpu_lowrank's layout; E[z|x] does not move
                D = self.s1.shape[1]
                s2[:, 0, :D] += 2.0 * a * d + self.nk[:, None] * d * d
                s2[:, 1:, :D] += s2[:, 1:, -1][:, :, None] * d[:, None, :]
            elif self.kind == "spherical":
                s2[:, 0, 0] += 2.0 * (a * d).sum(axis=1) + self.nk * (d * d).sum(axis=1)
            else:  # pragma: no cover
                raise ValueError(f"unknown kind {self.kind!r}")
        return Stats(self.kind, self.nk, self.s1, s2, centre, gcentre, self.ll, self.ws)

    def blend(self, other, rho):
        """(1 - rho) * self + rho * other, on other's centres (stepwise EM's update)."""
        mine = self.recentred(other.centre, other.gcentre)
        a = 1.0 - rho
        return Stats(self.kind, a * mine.nk + rho * other.nk, a * mine.s1 + rho * other.s1,
                     a * mine.s2 + rho * other.s2, other.centre, other.gcentre,
                     a * mine.ll + rho * other.ll, a * mine.ws + rho * other.ws)
