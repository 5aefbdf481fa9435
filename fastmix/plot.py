"""Plots of fitted fastmix models (needs matplotlib: ``pip install 'fastmix[plot]'``).

Every model (``GaussianMixture`` of any covariance type, ``BigLearnGaussianMixture``,
``SGDGaussianMixture`` diag or lpd, ``GMMExpansion``):

* :func:`plot_2d` -- data (two features) with the components' 1- and 2-sigma ellipses and
  contours of the mixture density (for D > 2: the components projected onto the two features,
  i.e. the marginal mixture).
* :func:`plot_density_1d` -- the mixture density of one feature (and its weighted components)
  over a histogram of the data.
* :func:`plot_lower_bounds` -- the lower bound / mean log-likelihood per iteration
  (``lower_bounds_``; SGD: the objective per logged step from ``loss_curve_``).
* :func:`plot_corner` -- a corner-style pairwise view for D > 2: 1-D marginals on the diagonal,
  projected ellipses and density contours below it.
* :func:`mixture_components` -- the (weights, means, dense covariances) all of these draw.

Model selection (``fastmix.select_mixture``):

* :func:`selection` -- the criterion against the number of components, one line per
  covariance type, the chosen model marked.

SGD-specific:

* :func:`plot_prototypes` -- the K = n x n means on their toroidal grid, one image per
  component (``image_shape`` given) or one heatmap row per component (otherwise).
* :func:`plot_loss_curve` -- ``model.loss_curve_``: loss vs SGD step, sigma and the learning
  rate on a second y axis.

``fastmix plot model.npz data.npy -o fig.png`` draws the suitable view from the command line.

matplotlib is imported lazily inside the functions; nothing here changes the global backend.
With ``path`` the figure is rendered through a private Agg canvas and written as PNG, so the
functions work headless whatever backend the session uses.
"""
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: (weights (K,), means (K, D), dense covariances (K, D, D)), as ``mixture_components`` returns
Comps = tuple[np.ndarray, np.ndarray, np.ndarray]

__all__ = ["plot_prototypes", "plot_loss_curve", "plot_2d", "plot_density_1d",
           "plot_lower_bounds", "plot_corner", "mixture_components", "selection"]


def _mpl() -> Any:
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("fastmix.plot needs matplotlib: pip install 'fastmix[plot]'") from exc
    return Figure


def _new_figure(figsize: tuple[float, float]) -> Any:
    """A Figure not registered with pyplot (no GUI backend involved)."""
    Figure = _mpl()
    return Figure(figsize=figsize)


def _save(fig: Any, path: str | os.PathLike | None, dpi: int = 100) -> None:
    """Write ``fig`` as PNG; the PNG path renders through Agg whatever the session backend."""
    if path is None:
        return
    fig.savefig(str(path), dpi=dpi, format="png")


def _log_density(model: Any, comps: Comps, exact: bool) -> Callable[[np.ndarray], np.ndarray]:
    """log-density on the plotted features: the model's own ``score_samples`` when they are
    all its features (``exact``), else the projected mixture ``comps``'s."""
    if exact:
        return model.score_samples
    return lambda P: _mixture_logpdf(P, *comps)


def _figure_axes(ax: Any, size: tuple[float, float]) -> tuple[Any, Any]:
    """(figure, axes): a new one-panel figure of ``size`` inches, or ``ax`` and its figure."""
    if ax is None:
        fig = _new_figure(size)
        return fig, fig.add_subplot(1, 1, 1)
    return ax.figure, ax


def _fitted_means(model: Any) -> np.ndarray:
    means = getattr(model, "means_", None)
    if means is None:
        raise ValueError(f"{type(model).__name__} is not fitted (no means_)")
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2:
        raise ValueError(f"means_ must be 2-D (K, D), got shape {means.shape}")
    return means


def plot_prototypes(model: Any, image_shape: Sequence[int] | None = None,
                    path: str | os.PathLike | None = None, ax: Any = None, *,
                    cmap: str = "gray", title: str | None = None, vmin: float | None = None,
                    vmax: float | None = None) -> Any:
    """Show the prototypes (means) of an SGD-trained mixture on their n x n grid.

    Parameters
    ----------
    model : SGDGaussianMixture or other fitted estimator
        A fitted model with ``means_`` (K, D) and, for the grid layout, ``grid_shape_``
        (n, n) (``SGDGaussianMixture``); without ``grid_shape_`` a near-square grid is used.
    image_shape : tuple of int, optional
        Shape with product D, e.g. (8, 8) for the digits.  Each prototype ``means_[k]`` is
        reshaped to it and drawn in panel (row, col) = divmod(k, n): K image panels in an
        n x n figure.  With None the means are shown as a (K, D) heatmap, one row per
        component (a single panel).
    path : str or os.PathLike, optional
        Write the figure there as PNG (rendered through Agg, whatever the session's backend).
    ax : matplotlib.axes.Axes, optional
        Heatmap mode only: draw into these axes instead of a new figure.
    cmap : str, default="gray"
        The colour map.
    title : str, optional
        The figure title; default: the estimator and K.
    vmin, vmax : float, optional
        The colour range; default: the range of all means.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn.

    Raises
    ------
    ValueError
        When the model is not fitted, ``prod(image_shape) != D``, or ``ax`` is given in image
        mode.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix import SGDGaussianMixture
    >>> X = np.random.default_rng(0).uniform(size=(2000, 4))
    >>> sgd = SGDGaussianMixture(4, n_epochs=1, random_state=0).fit(X)
    >>> from fastmix.plot import plot_prototypes
    >>> fig = plot_prototypes(sgd, image_shape=(2, 2), path="prototypes.png")
    >>> len(fig.axes)
    4
    """
    means = _fitted_means(model)
    K, D = means.shape
    if vmin is None:
        vmin = float(means.min())
    if vmax is None:
        vmax = float(means.max())
    if vmax <= vmin:
        vmax = vmin + 1e-12
    grid = getattr(model, "grid_shape_", None)
    if grid is None or int(grid[0]) * int(grid[1]) != K:
        rows = int(math.ceil(math.sqrt(K)))
        grid = (rows, int(math.ceil(K / rows)))
    nr, nc = int(grid[0]), int(grid[1])

    if image_shape is None:
        if ax is None:
            fig = _new_figure((min(12.0, 2.0 + 0.12 * D), min(10.0, 1.5 + 0.2 * K)))
            ax = fig.add_subplot(1, 1, 1)
        else:
            fig = ax.figure
        im = ax.imshow(means, aspect="auto", cmap="viridis" if cmap == "gray" else cmap,
                       vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_xlabel("feature d")
        ax.set_ylabel("component k (row-major on the grid)")
        fig.colorbar(im, ax=ax, label="mean")
        ax.set_title(title or f"prototypes (K={K}, D={D})")
        _save(fig, path)
        return fig

    shape = tuple(int(v) for v in np.atleast_1d(image_shape))
    if any(v <= 0 for v in shape) or len(shape) not in (2, 3):
        raise ValueError(f"image_shape must be (h, w) or (h, w, channels) with positive "
                         f"entries, got {image_shape!r}")
    if int(np.prod(shape)) != D:
        raise ValueError(f"image_shape {shape} has {int(np.prod(shape))} pixels but the means "
                         f"have D={D} features")
    if ax is not None:
        raise ValueError("ax is only supported without image_shape (heatmap mode); the image "
                         "grid needs a figure of its own")
    fig = _new_figure((1.1 * nc + 0.4, 1.1 * nr + (0.5 if title else 0.2)))
    axes = fig.subplots(nr, nc, squeeze=False)
    for k in range(nr * nc):
        a = axes[divmod(k, nc)]
        if k >= K:
            a.remove()
            continue
        img = means[k].reshape(shape)
        if len(shape) == 3:
            img = np.clip((img - vmin) / (vmax - vmin), 0.0, 1.0)
            a.imshow(img, interpolation="nearest")
        else:
            a.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        a.set_xticks([])
        a.set_yticks([])
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.92 if title else 0.98,
                        wspace=0.08, hspace=0.08)
    if title:
        fig.suptitle(title)
    _save(fig, path)
    return fig


def plot_loss_curve(model: Any, path: str | os.PathLike | None = None, ax: Any = None, *,
                    title: str | None = None, log_lr: bool = True) -> Any:
    """Plot the loss against the SGD step from ``model.loss_curve_``, with sigma and the rate.

    Parameters
    ----------
    model : SGDGaussianMixture
        A fitted model with ``loss_curve_``: a list of (step, mean loss of the segment, sigma,
        learning rate) tuples, i.e. an (S, 4) table.
    path : str or os.PathLike, optional
        Write the figure there as PNG (rendered through Agg, whatever the session's backend).
    ax : matplotlib.axes.Axes, optional
        Draw the loss into these axes (sigma and the learning rate on ``ax.twinx()``) instead
        of a new figure.
    title : str, optional
        The title; default: the estimator's name.
    log_lr : bool, default=True
        Put the learning rate on a log-scaled third axis.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn.

    Raises
    ------
    ValueError
        When the model has no (or an empty or malformed) ``loss_curve_``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix import SGDGaussianMixture
    >>> X = np.random.default_rng(0).uniform(size=(2000, 4))
    >>> sgd = SGDGaussianMixture(4, n_epochs=1, random_state=0).fit(X)
    >>> from fastmix.plot import plot_loss_curve
    >>> fig = plot_loss_curve(sgd, path="loss.png")
    >>> len(fig.axes)  # loss, sigma, learning rate
    3
    """
    curve = getattr(model, "loss_curve_", None)
    if curve is None or len(curve) == 0:
        raise ValueError(f"{type(model).__name__} has no loss_curve_ (not fitted?)")
    arr = np.asarray(curve, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"loss_curve_ must be (S, 4) rows of (step, loss, sigma, lr), got "
                         f"shape {arr.shape}")
    step, loss, sigma, lr = arr.T
    own = ax is None
    fig, ax = _figure_axes(ax, (7.0, 4.0))
    l1, = ax.plot(step, loss, color="C0", lw=1.2, label="loss (segment mean)")
    ax.set_xlabel("SGD step")
    ax.set_ylabel("loss = -objective")
    ax2 = ax.twinx()
    l2, = ax2.plot(step, sigma, color="C1", lw=1.2, ls="--", label="sigma")
    ax2.set_ylabel("sigma (grid smoothing)")
    ax2.set_ylim(bottom=0)
    ax3 = ax.twinx()
    ax3.spines["right"].set_position(("axes", 1.12))
    l3, = ax3.plot(step, lr, color="C2", lw=1.0, ls=":", label="learning rate")
    if log_lr and np.all(lr > 0):
        ax3.set_yscale("log")
    ax3.set_ylabel("learning rate")
    ax.legend(handles=[l1, l2, l3], loc="upper right", fontsize=8)
    ax.set_title(title or f"{type(model).__name__} loss curve")
    if own:
        fig.subplots_adjust(right=0.78)
    _save(fig, path)
    return fig


# ------------------------------------------------------------------ mixtures ---------------
def mixture_components(model: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the fitted mixture as Gaussian components with dense covariances.

    Parameters
    ----------
    model : fitted estimator
        A GaussianMixture (any covariance type, including lowrank), BigLearnGaussianMixture,
        SGDGaussianMixture ("diag" or "lpd") or GMMExpansion.

    Returns
    -------
    weights : numpy.ndarray of shape (K,), dtype float64
        The mixture weights, summing to 1.
    means : numpy.ndarray of shape (K, D), dtype float64
        The component means.
    covariances : numpy.ndarray of shape (K, D, D), dtype float64
        Dense covariances.  GMMExpansion: ``diag(sigma_**2)`` for every node; SGD "lpd":
        ``U.T @ diag(1/a) @ U + (I - U.T @ U) / r`` with a, r the direction and residual
        precisions.

    Raises
    ------
    ValueError
        When the model is not fitted or is not a mixture fastmix knows.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix import GaussianMixture
    >>> X = np.random.default_rng(0).normal(size=(400, 3))
    >>> gm = GaussianMixture(2, covariance_type="diag", random_state=0).fit(X)
    >>> from fastmix.plot import mixture_components
    >>> weights, means, covs = mixture_components(gm)
    >>> covs.shape, bool(np.allclose(covs[0], np.diag(gm.covariances_[0])))
    ((2, 3, 3), True)
    """
    means = _fitted_means(model)
    K, D = means.shape
    weights = np.asarray(model.weights_, dtype=np.float64)
    from .mixture import GMMExpansion
    if isinstance(model, GMMExpansion):  # one bandwidth (standard deviations) for all nodes
        sig2 = np.asarray(model.sigma_, dtype=np.float64) ** 2
        return weights, means, np.broadcast_to(np.diag(sig2), (K, D, D)).copy()
    if hasattr(model, "directions_"):  # SGD, local principal directions
        U = np.asarray(model.directions_, dtype=np.float64)
        a = np.asarray(model.direction_precisions_, dtype=np.float64)
        r = np.asarray(model.residual_precisions_, dtype=np.float64)
        eye = np.eye(D)
        covs = np.stack([U[k].T @ (U[k] / a[k][:, None]) + (eye - U[k].T @ U[k]) / r[k]
                         for k in range(K)])
        return weights, means, covs
    kind = getattr(model, "covariance_type", None)
    cov = np.asarray(model.covariances_, dtype=np.float64)  # lowrank: the dense view
    if kind in ("full", "lowrank"):
        covs = cov
    elif kind == "tied":
        covs = np.broadcast_to(cov, (K, D, D)).copy()
    elif kind == "diag":
        covs = np.stack([np.diag(c) for c in cov])
    elif kind == "spherical":
        covs = cov[:, None, None] * np.eye(D)[None]
    else:
        raise ValueError(f"{type(model).__name__} with covariance_type={kind!r}: not a mixture "
                         "fastmix.plot knows")
    return weights, means, covs


def _mixture_logpdf(P: np.ndarray, weights: np.ndarray, means: np.ndarray,
                    covs: np.ndarray) -> np.ndarray:
    """log sum_k w_k N(p | m_k, S_k) for rows P (n, d), components in d dimensions."""
    P = np.asarray(P, dtype=np.float64)
    n, d = P.shape
    out = np.full((n, len(weights)), -np.inf)
    for k, (w, m, S) in enumerate(zip(weights, means, covs)):
        if w <= 0:
            continue
        L = np.linalg.cholesky(S)
        z = np.linalg.solve(L, (P - m).T)
        out[:, k] = (np.log(w) - 0.5 * d * np.log(2 * np.pi) - np.log(np.diag(L)).sum()
                     - 0.5 * np.einsum("ij,ij->j", z, z))
    top = out.max(axis=1)
    top = np.where(np.isfinite(top), top, 0.0)
    return top + np.log(np.exp(out - top[:, None]).sum(axis=1))


def _density_of(comps: Comps) -> Callable[[np.ndarray], np.ndarray]:
    """The log-density of the mixture ``comps``, as a function of points (n, d)."""
    return lambda P: _mixture_logpdf(P, *comps)


def _project(comps: Comps, features: Sequence[int]) -> Comps:
    w, m, S = comps
    f = list(features)
    return w, m[:, f], S[:, f][:, :, f]


def _check_X(X: Any, D: int, what: str = "X") -> np.ndarray | None:
    if X is None:
        return None
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1 and D == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] != D:
        raise ValueError(f"{what} must be (n_samples, {D}) like the model, got shape {X.shape}")
    return X


def _check_features(features: Sequence[int], D: int, n: int) -> tuple[int, ...]:
    f = tuple(int(v) for v in features)
    if len(f) != n or len(set(f)) != n or any(not 0 <= v < D for v in f):
        raise ValueError(f"features must be {n} distinct indices in 0..{D - 1}, got {features!r}")
    return f


def _subsample(X: np.ndarray | None, max_points: int, seed: int = 0) -> np.ndarray | None:
    if X is None or X.shape[0] <= max_points:
        return X
    idx = np.sort(np.random.default_rng(seed).choice(X.shape[0], max_points, replace=False))
    return X[idx]


def _range(X: np.ndarray | None, means: np.ndarray, covs: np.ndarray,
           dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Plot limits per dimension: the data's, or the components' means +- 3 sigma."""
    sd = np.sqrt(np.maximum(np.einsum("kii->ki", covs), 0.0))
    lo = (means - 3 * sd).min(axis=0)
    hi = (means + 3 * sd).max(axis=0)
    if X is not None and X.shape[0]:
        lo, hi = X.min(axis=0), X.max(axis=0)
    pad = 0.05 * np.maximum(hi - lo, 1e-12)
    return lo - pad, hi + pad


def _ellipses(ax: Any, means2: np.ndarray, covs2: np.ndarray, weights: np.ndarray,
              n_sigma: Sequence[float], color: str = "k") -> int:
    from matplotlib.patches import Ellipse
    drawn = 0
    for w, m, S in zip(weights, means2, covs2):
        if w <= 0:
            continue
        lam, V = np.linalg.eigh(S)
        lam = np.maximum(lam, 0.0)
        angle = np.degrees(np.arctan2(V[1, 1], V[0, 1]))
        for j, ns in enumerate(n_sigma):
            ax.add_patch(Ellipse(m, 2 * ns * np.sqrt(lam[1]), 2 * ns * np.sqrt(lam[0]),
                                 angle=angle, fill=False, color=color, lw=1.2,
                                 ls="-" if j == 0 else "--", alpha=0.9))
            drawn += 1
        ax.plot(m[0], m[1], "x", color=color, ms=5)
    return drawn


def _panel_2d(ax: Any, comps2: Comps, X2: np.ndarray | None, n_sigma: Sequence[float],
              grid: int, density: Callable[[np.ndarray], np.ndarray], levels: int) -> None:
    w, m, S = comps2
    lo, hi = _range(X2, m, S, 2)
    if X2 is not None:
        ax.scatter(X2[:, 0], X2[:, 1], s=3, c="C0", alpha=0.4, linewidths=0)
    xs = np.linspace(lo[0], hi[0], grid)
    ys = np.linspace(lo[1], hi[1], grid)
    xx, yy = np.meshgrid(xs, ys)
    P = np.column_stack([xx.ravel(), yy.ravel()])
    dens = np.exp(density(P)).reshape(xx.shape)
    ax.contour(xx, yy, dens, levels=levels, cmap="viridis", linewidths=0.8)
    _ellipses(ax, m, S, w, n_sigma, color="C3")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])


def plot_2d(model: Any, X: np.ndarray | None = None, path: str | os.PathLike | None = None,
            ax: Any = None, *, features: Sequence[int] = (0, 1),
            n_sigma: Sequence[float] = (1, 2), grid: int = 120, levels: int = 8,
            max_points: int = 5000, title: str | None = None) -> Any:
    """Plot data with the components' ellipses and contours of the mixture density.

    Parameters
    ----------
    model : fitted estimator
        A fitted mixture (see ``mixture_components``) with D >= 2 features.
    X : numpy.ndarray of shape (n, D), optional
        Data drawn as points (at most ``max_points``, a seeded sample); the plot range is the
        data's (else the components' means +- 3 sigma).
    path : str or os.PathLike, optional
        Write the figure there as PNG (rendered through Agg, whatever the session's backend).
    ax : matplotlib.axes.Axes, optional
        Draw into these axes instead of a new figure.
    features : tuple of two int, default=(0, 1)
        The feature indices (i, j) on the axes.  For D = 2 the density is the model's own
        ``score_samples``; for D > 2 the components are projected onto (i, j) and the contours
        show that marginal mixture.
    n_sigma : sequence of float, default=(1, 2)
        Ellipse radii in standard deviations (solid, then dashed).
    grid : int, default=120
        Density grid points per axis.
    levels : int, default=8
        Number of contour levels.
    max_points : int, default=5000
        At most this many points of ``X`` are drawn.
    title : str, optional
        The title; default: the estimator and K.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn.

    Raises
    ------
    ValueError
        When the model is not fitted or has fewer than 2 features, ``X`` does not have D
        columns, or ``features`` are not two distinct valid indices.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix import GaussianMixture
    >>> X = np.random.default_rng(0).normal(size=(400, 3))
    >>> gm = GaussianMixture(2, random_state=0).fit(X)
    >>> from fastmix.plot import plot_2d
    >>> fig = plot_2d(gm, X, path="mixture.png", features=(0, 2))
    >>> fig.axes[0].get_xlabel()
    'feature 0'
    """
    comps = mixture_components(model)
    D = comps[1].shape[1]
    if D < 2:
        raise ValueError("plot_2d needs a model of at least 2 features; use plot_density_1d")
    f = _check_features(features, D, 2)
    X = _subsample(_check_X(X, D), max_points)
    comps2 = _project(comps, f)
    density = _log_density(model, comps2, exact=D == 2 and f == (0, 1))
    fig, ax = _figure_axes(ax, (6.0, 5.0))
    _panel_2d(ax, comps2, None if X is None else X[:, list(f)], n_sigma, grid, density, levels)
    ax.set_xlabel(f"feature {f[0]}")
    ax.set_ylabel(f"feature {f[1]}")
    ax.set_title(title or f"{type(model).__name__} (K={len(comps[0])})")
    _save(fig, path)
    return fig


def _panel_1d(ax: Any, comps1: Comps, x1: np.ndarray | None, bins: Any, grid: int,
              density: Callable[[np.ndarray], np.ndarray], components: bool = True) -> None:
    w, m, S = comps1
    lo, hi = _range(x1, m, S, 1)
    if x1 is not None:
        ax.hist(x1[:, 0], bins=bins, density=True, color="C0", alpha=0.35)
    xs = np.linspace(lo[0], hi[0], grid)
    ax.plot(xs, np.exp(density(xs[:, None])), color="C3", lw=1.5, label="mixture")
    if components:
        sd = np.sqrt(S[:, 0, 0])
        for k in np.flatnonzero(w > 0):
            ax.plot(xs, w[k] * np.exp(-0.5 * ((xs - m[k, 0]) / sd[k]) ** 2)
                    / (sd[k] * np.sqrt(2 * np.pi)), color="C1", lw=0.6, alpha=0.7)
    ax.set_xlim(lo[0], hi[0])


def plot_density_1d(model: Any, X: np.ndarray | None = None,
                    path: str | os.PathLike | None = None, ax: Any = None, *,
                    feature: int = 0, bins: Any = 50, grid: int = 400,
                    components: bool = True, title: str | None = None) -> Any:
    """Plot the mixture density of one feature over a histogram of the data.

    Parameters
    ----------
    model : fitted estimator
        A fitted mixture (see ``mixture_components``).  With D = 1 the density is the model's
        own ``score_samples``; for D > 1 the 1-D marginal of feature ``feature``.
    X : numpy.ndarray of shape (n, D), or (n,) for D = 1, optional
        Data shown as a histogram (``density=True``).
    path : str or os.PathLike, optional
        Write the figure there as PNG (rendered through Agg, whatever the session's backend).
    ax : matplotlib.axes.Axes, optional
        Draw into these axes instead of a new figure.
    feature : int, default=0
        The feature shown.
    bins : int or sequence of float, default=50
        Histogram bins, as for ``matplotlib.axes.Axes.hist``.
    grid : int, default=400
        Points of the density curve.
    components : bool, default=True
        Also draw each weighted component :math:`w_k N(x | m_k, s_k^2)`.
    title : str, optional
        The title; default: the estimator and K.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn.

    Raises
    ------
    ValueError
        When the model is not fitted, ``X`` does not have D columns or ``feature`` is out of
        range.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix import GaussianMixture
    >>> X = np.random.default_rng(0).normal(size=(400, 3))
    >>> gm = GaussianMixture(2, random_state=0).fit(X)
    >>> from fastmix.plot import plot_density_1d
    >>> fig = plot_density_1d(gm, X, path="density.png", feature=1)
    >>> fig.axes[0].get_ylabel()
    'density'
    """
    comps = mixture_components(model)
    D = comps[1].shape[1]
    f = _check_features((feature,), D, 1)
    X = _check_X(X, D)
    comps1 = _project(comps, f)
    density = _log_density(model, comps1, exact=D == 1)
    fig, ax = _figure_axes(ax, (6.0, 4.0))
    _panel_1d(ax, comps1, None if X is None else X[:, list(f)], bins, grid, density, components)
    ax.set_xlabel(f"feature {f[0]}")
    ax.set_ylabel("density")
    ax.set_title(title or f"{type(model).__name__} (K={len(comps[0])})")
    _save(fig, path)
    return fig


def plot_lower_bounds(model: Any, path: str | os.PathLike | None = None, ax: Any = None, *,
                      title: str | None = None) -> Any:
    """Plot the lower bound per iteration, or the SGD objective per logged step.

    The values are ``model.lower_bounds_`` (GaussianMixture: the mean log-likelihood before each
    M-step; BigLearnGaussianMixture: of the (marginal) data in each outer iteration's last step;
    GMMExpansion: per weight step), or for SGDGaussianMixture the objective (-loss) per logged
    step from ``loss_curve_``.

    Parameters
    ----------
    model : fitted estimator
        The model whose history is drawn.
    path : str or os.PathLike, optional
        Write the figure there as PNG (rendered through Agg, whatever the session's backend).
    ax : matplotlib.axes.Axes, optional
        Draw into these axes instead of a new figure.
    title : str, optional
        The title; default: the estimator and the quantity.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn.

    Raises
    ------
    ValueError
        When the model records no per-iteration history.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix import GaussianMixture
    >>> X = np.random.default_rng(0).normal(size=(400, 3))
    >>> gm = GaussianMixture(2, random_state=0).fit(X)
    >>> from fastmix.plot import plot_lower_bounds
    >>> fig = plot_lower_bounds(gm, path="lower_bounds.png")
    >>> len(fig.axes[0].lines[0].get_ydata()) == len(gm.lower_bounds_)
    True
    """
    curve = getattr(model, "loss_curve_", None)
    x: np.ndarray
    if curve is not None and len(curve):
        arr = np.asarray(curve, dtype=np.float64)
        x, y, xlabel, ylabel = arr[:, 0], -arr[:, 1], "SGD step", "objective (-loss)"
    else:
        lbs = getattr(model, "lower_bounds_", None)
        if lbs is None or len(lbs) == 0:
            raise ValueError(f"{type(model).__name__} has no lower_bounds_ (not fitted?)")
        y = np.asarray(lbs, dtype=np.float64)
        x = np.arange(1, len(y) + 1)
        xlabel, ylabel = "iteration", "lower bound (mean log-likelihood)"
    fig, ax = _figure_axes(ax, (6.0, 4.0))
    ax.plot(x, y, "o-" if len(y) < 40 else "-", color="C0", lw=1.2, ms=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"{type(model).__name__}: {ylabel.split(' (')[0]} per "
                          f"{xlabel.split()[-1]}")
    _save(fig, path)
    return fig


def plot_corner(model: Any, X: np.ndarray | None = None,
                path: str | os.PathLike | None = None, *,
                features: Sequence[int] | None = None, n_sigma: Sequence[float] = (1, 2),
                bins: Any = 40, grid: int = 60, levels: int = 6, max_points: int = 2000,
                title: str | None = None) -> Any:
    """Draw a corner plot: marginal densities on the diagonal, pairwise views below it.

    For the chosen features, the diagonal shows the 1-D marginal densities over histograms
    and, below it, each pair's points with the projected components' ellipses and the
    marginal mixture's density contours.  The panels above the diagonal are left out.

    Parameters
    ----------
    model : fitted estimator
        A fitted mixture (see ``mixture_components``) with D >= 2 features.
    X : numpy.ndarray of shape (n, D), optional
        Data: at most ``max_points`` points drawn (a seeded sample); the histograms use all
        rows.
    path : str or os.PathLike, optional
        Write the figure there as PNG (rendered through Agg, whatever the session's backend).
    features : sequence of int, optional
        The feature indices shown, at least 2; default: the first min(D, 6).
    n_sigma : sequence of float, default=(1, 2)
        Ellipse radii in standard deviations.
    bins : int or sequence of float, default=40
        Histogram bins.
    grid : int, default=60
        Density grid points per axis.
    levels : int, default=6
        Number of contour levels.
    max_points : int, default=2000
        At most this many points of ``X`` are drawn.
    title : str, optional
        The figure title; default: the estimator, K and D.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, with F (F + 1) / 2 axes for F features.

    Raises
    ------
    ValueError
        When the model is not fitted or has fewer than 2 features, ``X`` does not have D
        columns, or ``features`` holds fewer than 2 valid distinct indices.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix import GaussianMixture
    >>> X = np.random.default_rng(0).normal(size=(400, 3))
    >>> gm = GaussianMixture(2, random_state=0).fit(X)
    >>> from fastmix.plot import plot_corner
    >>> fig = plot_corner(gm, X, path="corner.png")
    >>> len(fig.axes)  # 3 (3 + 1) / 2
    6
    """
    comps = mixture_components(model)
    D = comps[1].shape[1]
    if D < 2:
        raise ValueError("plot_corner needs a model of at least 2 features; use "
                         "plot_density_1d")
    feats = tuple(range(min(D, 6))) if features is None else tuple(features)
    feats = _check_features(feats, D, len(feats))
    if len(feats) < 2:
        raise ValueError("plot_corner needs at least 2 features")
    X = _check_X(X, D)
    Xs = _subsample(X, max_points)
    F = len(feats)
    fig = _new_figure((2.2 * F + 0.6, 2.2 * F + 0.6))
    axes = fig.subplots(F, F, squeeze=False)
    for i in range(F):
        for j in range(F):
            ax = axes[i, j]
            if j > i:
                ax.remove()
                continue
            if i == j:
                c1 = _project(comps, (feats[i],))
                _panel_1d(ax, c1, None if X is None else X[:, [feats[i]]], bins, 200,
                          _density_of(c1), components=False)
                ax.set_yticks([])
            else:
                c2 = _project(comps, (feats[j], feats[i]))
                _panel_2d(ax, c2, None if Xs is None else Xs[:, [feats[j], feats[i]]],
                          n_sigma, grid, _density_of(c2), levels)
            if i == F - 1:
                ax.set_xlabel(f"feature {feats[j]}")
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(f"feature {feats[i]}")
            elif j > 0:
                ax.set_yticklabels([])
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.94, wspace=0.06, hspace=0.06)
    fig.suptitle(title or f"{type(model).__name__} (K={len(comps[0])}, D={D})")
    _save(fig, path)
    return fig


def selection(result: Any, path: str | os.PathLike | None = None, ax: Any = None, *,
              title: str | None = None) -> Any:
    """Plot the criterion of every ``select_mixture`` candidate against the number of components.

    One line per covariance type; the chosen model is circled.

    Parameters
    ----------
    result : SelectionResult or dict
        The result of ``fastmix.select_mixture``, or its ``to_dict()`` (the JSON report of
        ``fastmix select``).
    path : str or os.PathLike, optional
        Write the figure there as PNG (rendered through Agg, whatever the session's backend).
    ax : matplotlib.axes.Axes, optional
        Draw into these axes instead of a new figure.
    title : str, optional
        The title; default: the criterion.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn.

    Raises
    ------
    ValueError
        When ``result`` is neither a SelectionResult nor a report with candidates.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix import select_mixture
    >>> from fastmix.plot import selection
    >>> X = np.random.default_rng(0).normal(size=(300, 2))
    >>> result = select_mixture(X, n_components=range(1, 4), covariance_types=("full", "diag"),
    ...                         random_state=0)
    >>> fig = selection(result, path="selection.png")
    >>> len(fig.axes[0].lines)  # two covariance types and the chosen model
    3
    """
    if isinstance(result, dict):
        rows = result.get("candidates")
        if not rows:
            raise ValueError("the selection report has no candidates")
        ks = np.array([r["n_components"] for r in rows])
        kinds = np.array([r["covariance_type"] for r in rows])
        scores = np.array([np.nan if r["score"] is None else r["score"] for r in rows],
                          dtype=np.float64)
        best, criterion = int(result["best_index"]), result["criterion"]
    else:
        r = getattr(result, "results_", None)
        if r is None:
            raise ValueError(f"expected a SelectionResult, got {type(result).__name__}")
        ks, kinds = np.asarray(r["n_components"]), np.asarray(r["covariance_type"])
        scores = np.asarray(r["score"], dtype=np.float64)
        best, criterion = int(result.best_index_), result.criterion
    fig, ax = _figure_axes(ax, (6.0, 4.0))
    for i, kind in enumerate(dict.fromkeys(kinds.tolist())):
        sel = kinds == kind
        order = np.argsort(ks[sel])
        ax.plot(ks[sel][order], scores[sel][order], "o-", color=f"C{i}", lw=1.2, ms=4,
                label=kind)
    ax.plot([ks[best]], [scores[best]], "o", ms=14, mfc="none", mec="k", mew=1.5,
            label=f"chosen: K={ks[best]}, {kinds[best]}")
    ax.set_xlabel("number of components K")
    ax.set_ylabel(f"{criterion.upper() if criterion != 'heldout' else '-2 held-out log L'}"
                  " (lower is better)")
    ax.set_xticks(np.unique(ks) if np.unique(ks).size <= 25 else ax.get_xticks())
    ax.legend(fontsize="small")
    ax.set_title(title or f"model selection by {criterion}")
    _save(fig, path)
    return fig
