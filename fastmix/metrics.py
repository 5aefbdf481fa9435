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
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Union

import numpy as np

__all__ = ["grid_axes", "grid_points", "on_grid", "ipe", "ise", "kl_mc", "KLEstimate"]

#: A grid: one strictly increasing 1-D axis, or a tuple of D of them (a tensor grid).
Grid = Union[np.ndarray, Sequence[np.ndarray]]


def _check_axis(a: Any, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1 or a.shape[0] < 2:
        raise ValueError(f"{name} must be a 1-D array of at least 2 points, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has non-finite points")
    if not np.all(np.diff(a) > 0):
        raise ValueError(f"{name} must be strictly increasing")
    return a


def _axes(grid: Grid) -> tuple[np.ndarray, ...]:
    """The grid as a tuple of checked 1-D axes."""
    if isinstance(grid, (tuple, list)):
        if len(grid) == 0:
            raise ValueError("a grid needs at least one axis")
        return tuple(_check_axis(a, f"grid axis {d}") for d, a in enumerate(grid))
    return (_check_axis(grid, "grid"),)


def _shape(axes: Sequence[np.ndarray]) -> tuple[int, ...]:
    return tuple(a.shape[0] for a in axes)


def grid_axes(lo: float | Sequence[float], hi: float | Sequence[float],
              resolution: int | Sequence[int]) -> Grid:
    """Make an even grid from ``lo`` to ``hi`` (both included).

    Parameters
    ----------
    lo, hi : float or sequence of float
        The bounds: floats for a 1-D grid, sequences of D floats for a D-dimensional tensor
        grid; finite, with ``hi > lo``.
    resolution : int or sequence of int
        Points per axis, at least 2: one for every axis, or one per axis.

    Returns
    -------
    numpy.ndarray of shape (resolution,), or tuple of D numpy.ndarray
        The axis for scalar bounds, else the D axes (float64).

    Raises
    ------
    ValueError
        For bounds of different shapes, non-finite bounds, ``hi <= lo``, or a resolution that is
        not an integer >= 2 (or not one per axis).

    See Also
    --------
    grid_points : The grid's points as rows.

    Examples
    --------
    >>> from fastmix.metrics import grid_axes
    >>> grid_axes(0, 1, 5)
    array([0.  , 0.25, 0.5 , 0.75, 1.  ])
    >>> xs, ys = grid_axes([0, 0], [1, 2], [3, 5])
    >>> ys
    array([0. , 0.5, 1. , 1.5, 2. ])
    """
    scalar = np.ndim(lo) == 0 and np.ndim(hi) == 0
    lo_a = np.atleast_1d(np.asarray(lo, dtype=np.float64))
    hi_a = np.atleast_1d(np.asarray(hi, dtype=np.float64))
    if lo_a.ndim != 1 or lo_a.shape != hi_a.shape:
        raise ValueError(f"lo and hi must have the same 1-D shape, got {lo_a.shape} and "
                         f"{hi_a.shape}")
    if not (np.all(np.isfinite(lo_a)) and np.all(np.isfinite(hi_a)) and np.all(hi_a > lo_a)):
        raise ValueError("bounds must be finite with hi > lo")
    res = np.atleast_1d(np.asarray(resolution))
    if res.ndim != 1 or res.shape[0] not in (1, lo_a.shape[0]):
        raise ValueError(f"resolution must be one integer or {lo_a.shape[0]} of them")
    if res.dtype.kind not in "iu" or np.any(res < 2):
        raise ValueError(f"resolution must be an integer >= 2 (points per axis), got "
                         f"{resolution!r}")
    res = np.broadcast_to(res, lo_a.shape)
    axes = tuple(np.linspace(a, b, int(n)) for a, b, n in zip(lo_a, hi_a, res))
    return axes[0] if scalar else axes


def grid_points(grid: Grid) -> np.ndarray:
    """List all points of a grid as rows, in C order (last axis fastest, ``indexing="ij"``).

    Parameters
    ----------
    grid : numpy.ndarray of shape (n,), or tuple of D such arrays
        A 1-D grid, or the axes of a tensor grid, each strictly increasing.

    Returns
    -------
    numpy.ndarray of shape (n_points, D), dtype float64
        The points; ``n_points`` is the product of the axis lengths.

    Raises
    ------
    ValueError
        When an axis is not a strictly increasing finite 1-D array of at least 2 points.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix.metrics import grid_points
    >>> grid_points((np.array([0.0, 1.0]), np.array([5.0, 6.0, 7.0])))
    array([[0., 5.],
           [0., 6.],
           [0., 7.],
           [1., 5.],
           [1., 6.],
           [1., 7.]])
    """
    axes = _axes(grid)
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


def on_grid(f: Callable[[np.ndarray], np.ndarray], grid: Grid, *,
            log: bool = False) -> np.ndarray:
    """Evaluate a density on the points of a grid, shaped like the grid.

    Parameters
    ----------
    f : callable
        Maps an (n_points, D) array of points to (n_points,) densities, or log-densities
        with ``log=True`` (a fitted model's ``score_samples``).
    grid : numpy.ndarray of shape (n,), or tuple of D such arrays
        A 1-D grid, or the axes of a tensor grid.
    log : bool, default=False
        ``f`` returns log-densities: exponentiate them.

    Returns
    -------
    numpy.ndarray of shape (n,) or (len(xs), len(ys), ...), dtype float64
        The densities; ``values[i, j]`` is the density at ``(xs[i], ys[j])``.

    Raises
    ------
    ValueError
        When the grid is invalid or ``f`` returns the wrong number of values.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix.metrics import grid_axes, on_grid
    >>> def log_pdf(x):
    ...     return -0.5 * (x[:, 0] ** 2 + np.log(2 * np.pi))
    >>> on_grid(log_pdf, grid_axes(-1, 1, 3), log=True).round(4)
    array([0.242 , 0.3989, 0.242 ])
    """
    axes = _axes(grid)
    pts = grid_points(axes)
    v = np.asarray(f(pts), dtype=np.float64)
    if v.shape not in ((pts.shape[0],), (pts.shape[0], 1)):
        raise ValueError(f"f must return ({pts.shape[0]},) values, got shape {v.shape}")
    v = v.reshape(_shape(axes))
    return np.exp(v) if log else v


def _integrate(values: np.ndarray, axes: Sequence[np.ndarray]) -> float:
    out = values
    for a in reversed(axes):  # integrate out the last axis each time
        out = np.trapezoid(out, a, axis=-1)
    return float(out)


def _pair(p_hat: np.ndarray, p: np.ndarray,
          grid: Grid) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
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


def ipe(p_hat: np.ndarray, p: np.ndarray, grid: Grid) -> float:
    r"""Integrated absolute error :math:`\int |\hat p - p|` over a grid (trapezoid rule).

    IPE is read as the integrated absolute ("probability") error, twice the total variation
    distance.  Mass outside the grid is not counted.

    Parameters
    ----------
    p_hat, p : numpy.ndarray of shape (n,) or (nx, ny, ...)
        The two densities' values on the grid, of the grid's shape (see ``on_grid``).
    grid : numpy.ndarray of shape (n,), or tuple of D such arrays
        A 1-D grid, or the axes of a tensor grid.

    Returns
    -------
    float
        The error, in [0, 2] up to mass outside the grid and the rule's error.

    Raises
    ------
    ValueError
        When a value array does not have the grid's shape or has non-finite values, or the grid
        is invalid.

    See Also
    --------
    ise : The integrated squared error.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix.metrics import grid_axes, ipe
    >>> grid = grid_axes(0, 1, 101)
    >>> round(ipe(np.ones(101), np.zeros(101), grid), 6)
    1.0
    """
    p_hat, p, axes = _pair(p_hat, p, grid)
    return _integrate(np.abs(p_hat - p), axes)


def ise(p_hat: np.ndarray, p: np.ndarray, grid: Grid) -> float:
    r"""Integrated squared error :math:`\int (\hat p - p)^2` over a grid (trapezoid rule).

    Parameters
    ----------
    p_hat, p : numpy.ndarray of shape (n,) or (nx, ny, ...)
        The two densities' values on the grid, of the grid's shape (see ``on_grid``).
    grid : numpy.ndarray of shape (n,), or tuple of D such arrays
        A 1-D grid, or the axes of a tensor grid.

    Returns
    -------
    float
        The error (mass outside the grid not counted).

    Raises
    ------
    ValueError
        As ``ipe``.

    See Also
    --------
    ipe : The integrated absolute error.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix.metrics import grid_axes, ise
    >>> grid = grid_axes(0, 1, 101)
    >>> round(ise(np.full(101, 2.0), np.ones(101), grid), 6)
    1.0
    """
    p_hat, p, axes = _pair(p_hat, p, grid)
    return _integrate((p_hat - p) ** 2, axes)


class KLEstimate(NamedTuple):
    """A Monte-Carlo estimate of a Kullback-Leibler divergence, with its standard error.

    Parameters
    ----------
    kl : float
        The estimate of KL(p || q).
    se : float
        Its standard error, ``std(log p - log q, ddof=1) / sqrt(n)``.

    See Also
    --------
    kl_mc : Returns one.

    Examples
    --------
    >>> from fastmix.metrics import KLEstimate
    >>> KLEstimate(0.5, 0.01).kl
    0.5
    """

    kl: float
    se: float


def kl_mc(log_p: Callable[[np.ndarray], np.ndarray] | np.ndarray,
          log_q: Callable[[np.ndarray], np.ndarray] | np.ndarray,
          sample: np.ndarray) -> KLEstimate:
    """Estimate KL(p || q) = E_p[log p(X) - log q(X)] by Monte Carlo from a sample of p.

    Parameters
    ----------
    log_p, log_q : callable or numpy.ndarray of shape (n,)
        Callables mapping the (n, D) sample to (n,) log-densities (a fitted model's
        ``score_samples``), or the log-densities at the sample.
    sample : numpy.ndarray of shape (n, D) or (n,)
        Draws from p, n >= 2 (a 1-D sample is passed on as (n, 1)).

    Returns
    -------
    KLEstimate
        ``(kl, se)``; ``(inf, nan)`` when q is zero where the sample of p lies.

    Raises
    ------
    ValueError
        When the sample is not (n, D) or (n,) with n >= 2, a log-density has the wrong shape or
        NaN / +inf values.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix.metrics import kl_mc
    >>> x = np.random.default_rng(0).normal(size=10_000)
    >>> est = kl_mc(-0.5 * x**2, -0.5 * (x - 1) ** 2, x)  # N(0, 1) against N(1, 1): 0.5
    >>> abs(est.kl - 0.5) < 3 * est.se
    True
    """
    S = np.asarray(sample, dtype=np.float64)
    if S.ndim == 1:
        S = S[:, None]
    if S.ndim != 2 or S.shape[0] < 2:
        raise ValueError(f"sample must be (n, D) or (n,) with n >= 2, got shape "
                         f"{np.shape(sample)}")
    n = S.shape[0]

    def values(f: Callable[[np.ndarray], np.ndarray] | np.ndarray, name: str) -> np.ndarray:
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
