"""Density-fit metrics (NumPy only): integrated errors on a grid and a Monte-Carlo KL.

One design for the grid metrics: **density values on a given grid**.

* A *grid* is either a 1-D array of ``n`` strictly increasing points (a 1-D grid), or a tuple
  ``(xs, ys)`` of two such arrays (the axes of a 2-D tensor grid; more axes work the same way).
  ``grid_axes(lo, hi, resolution)`` makes an even one; any strictly increasing axes will do.
* Density values on a grid have the grid's *shape*: ``(n,)`` in 1-D, ``(len(xs), len(ys))`` in
  2-D, with ``values[i, j]`` the density at ``(xs[i], ys[j])`` (``indexing="ij"``, the order of
  ``grid_points``).
* ``on_grid(f, grid)`` evaluates a callable on the grid's points and reshapes: ``f`` takes an
  ``(n_points, D)`` array and returns ``(n_points,)`` densities, or log-densities with
  ``log=True`` (``model.score_samples`` of a fitted mixture).
* ``ipe`` and ``ise`` integrate ``|p_hat - p|`` and ``(p_hat - p)**2`` with the trapezoid rule
  along every axis.  Mass outside the grid is not counted: choose bounds that hold all but a
  negligible share of both densities, and a spacing well below their finest feature (the rule's
  error is O(h^2) for smooth integrands, O(h) at jumps and kinks).

Example::

    grid = grid_axes(-8, 8, 4001)                       # 1-D
    p = on_grid(true_pdf, grid)                         # (4001,)
    p_hat = on_grid(model.score_samples, grid, log=True)
    ipe(p_hat, p, grid), ise(p_hat, p, grid)

    grid = grid_axes([-5, -5], [5, 5], 201)             # 2-D: (xs, ys), 201 points each
    p = on_grid(true_pdf_2d, grid)                      # (201, 201)

``kl_mc(log_p, log_q, sample)`` estimates KL(p || q) = E_p[log p - log q] from a sample of p,
with its standard error.

IPE is read here as the integrated absolute ("probability") error, 2x the total variation
distance (docs/algorithms.md §4.3).
"""
from typing import NamedTuple

import numpy as np

__all__ = ["grid_axes", "grid_points", "on_grid", "ipe", "ise", "kl_mc", "KLEstimate"]


def _check_axis(a, name):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1 or a.shape[0] < 2:
        raise ValueError(f"{name} must be a 1-D array of at least 2 points, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has non-finite points")
    if not np.all(np.diff(a) > 0):
        raise ValueError(f"{name} must be strictly increasing")
    return a


def _axes(grid):
    """The grid as a tuple of checked 1-D axes."""
    if isinstance(grid, (tuple, list)):
        if len(grid) == 0:
            raise ValueError("a grid needs at least one axis")
        return tuple(_check_axis(a, f"grid axis {d}") for d, a in enumerate(grid))
    return (_check_axis(grid, "grid"),)


def _shape(axes):
    return tuple(a.shape[0] for a in axes)


def grid_axes(lo, hi, resolution):
    """An even grid from ``lo`` to ``hi`` (both included).

    lo, hi : float (1-D grid) or sequences of D floats (a D-dimensional tensor grid).
    resolution : int >= 2, or a sequence of D of them: points per axis.

    Returns a 1-D array (n,) for scalar bounds, else a tuple of D 1-D arrays."""
    scalar = np.ndim(lo) == 0 and np.ndim(hi) == 0
    lo = np.atleast_1d(np.asarray(lo, dtype=np.float64))
    hi = np.atleast_1d(np.asarray(hi, dtype=np.float64))
    if lo.ndim != 1 or lo.shape != hi.shape:
        raise ValueError(f"lo and hi must have the same 1-D shape, got {lo.shape} and {hi.shape}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)):
        raise ValueError("bounds must be finite with hi > lo")
    res = np.atleast_1d(np.asarray(resolution))
    if res.ndim != 1 or res.shape[0] not in (1, lo.shape[0]):
        raise ValueError(f"resolution must be one integer or {lo.shape[0]} of them")
    if res.dtype.kind not in "iu" or np.any(res < 2):
        raise ValueError(f"resolution must be an integer >= 2 (points per axis), got "
                         f"{resolution!r}")
    res = np.broadcast_to(res, lo.shape)
    axes = tuple(np.linspace(a, b, int(n)) for a, b, n in zip(lo, hi, res))
    return axes[0] if scalar else axes


def grid_points(grid):
    """All points of the grid, (n_points, D), C order (last axis fastest; ``indexing="ij"``)."""
    axes = _axes(grid)
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


def on_grid(f, grid, *, log=False):
    """``f`` evaluated on the grid's points, shaped like the grid.

    f : callable mapping (n_points, D) -> (n_points,) densities (log-densities if ``log``).
    Returns (n,) for a 1-D grid, (len(xs), len(ys)) for a 2-D one."""
    axes = _axes(grid)
    pts = grid_points(axes)
    v = np.asarray(f(pts), dtype=np.float64)
    if v.shape not in ((pts.shape[0],), (pts.shape[0], 1)):
        raise ValueError(f"f must return ({pts.shape[0]},) values, got shape {v.shape}")
    v = v.reshape(_shape(axes))
    return np.exp(v) if log else v


def _integrate(values, axes):
    out = values
    for a in reversed(axes):  # integrate out the last axis each time
        out = np.trapezoid(out, a, axis=-1)
    return float(out)


def _pair(p_hat, p, grid):
    axes = _axes(grid)
    shape = _shape(axes)
    p_hat = np.asarray(p_hat, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    for name, v in (("p_hat", p_hat), ("p", p)):
        if v.shape != shape:
            raise ValueError(f"{name} must have the grid's shape {shape}, got {v.shape}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{name} has non-finite values")
    return p_hat, p, axes


def ipe(p_hat, p, grid):
    """Integrated absolute error, the integral of |p_hat - p| over the grid (trapezoid rule).

    p_hat, p : density values on the grid, shape (n,) for a 1-D grid (n,) or (nx, ny) for a
        2-D grid (xs (nx,), ys (ny,)); see the module docstring.
    Returns a float in [0, 2] up to mass outside the grid and the rule's error."""
    p_hat, p, axes = _pair(p_hat, p, grid)
    return _integrate(np.abs(p_hat - p), axes)


def ise(p_hat, p, grid):
    """Integrated squared error, the integral of (p_hat - p)^2 over the grid (trapezoid rule).
    Shapes as in ``ipe``."""
    p_hat, p, axes = _pair(p_hat, p, grid)
    return _integrate((p_hat - p) ** 2, axes)


class KLEstimate(NamedTuple):
    kl: float   # Monte-Carlo estimate of KL(p || q)
    se: float   # its standard error, std(log p - log q, ddof=1) / sqrt(n)


def kl_mc(log_p, log_q, sample):
    """KL(p || q) = E_p[log p(X) - log q(X)] by Monte Carlo.

    log_p, log_q : callables mapping the sample (n, D) -> (n,) log-densities (e.g. a fitted
        model's ``score_samples``), or arrays (n,) of the log-densities at the sample.
    sample : (n, D) or (n,) draws from p, n >= 2 (a 1-D sample is passed on as (n, 1)).
    Returns ``KLEstimate(kl, se)``."""
    S = np.asarray(sample, dtype=np.float64)
    if S.ndim == 1:
        S = S[:, None]
    if S.ndim != 2 or S.shape[0] < 2:
        raise ValueError(f"sample must be (n, D) or (n,) with n >= 2, got shape "
                         f"{np.shape(sample)}")
    n = S.shape[0]

    def values(f, name):
        v = np.asarray(f(S) if callable(f) else f, dtype=np.float64)
        if v.shape not in ((n,), (n, 1)):
            raise ValueError(f"{name} must give ({n},) log-densities, got shape {v.shape}")
        v = v.reshape(n)
        if np.any(np.isnan(v)) or np.any(v == np.inf):
            raise ValueError(f"{name} has NaN or +inf values")
        return v

    d = values(log_p, "log_p") - values(log_q, "log_q")
    if not np.all(np.isfinite(d)):  # log q = -inf somewhere p has mass: KL is infinite
        return KLEstimate(float("inf"), float("nan"))
    return KLEstimate(float(d.mean()), float(d.std(ddof=1) / np.sqrt(n)))
