"""Plots for :class:`fastmix.SGDGaussianMixture` (needs matplotlib: ``pip install 'fastmix[plot]'``).

* :func:`plot_prototypes` -- the K = n x n means on their toroidal grid, one image per
  component (``image_shape`` given) or one heatmap row per component (otherwise).
* :func:`plot_loss_curve` -- ``model.loss_curve_``: loss vs SGD step, sigma and the learning
  rate on a second y axis.

matplotlib is imported lazily inside the functions; nothing here changes the global backend.
With ``path`` the figure is rendered through a private Agg canvas and written as PNG, so the
functions work headless whatever backend the session uses.
"""
import math

import numpy as np

__all__ = ["plot_prototypes", "plot_loss_curve"]


def _mpl():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("fastmix.plot needs matplotlib: pip install 'fastmix[plot]'") from exc
    return Figure


def _new_figure(figsize):
    """A Figure not registered with pyplot (no GUI backend involved)."""
    Figure = _mpl()
    return Figure(figsize=figsize)


def _save(fig, path, dpi=100):
    """Write ``fig`` as PNG; the PNG path renders through Agg whatever the session backend."""
    if path is None:
        return
    fig.savefig(str(path), dpi=dpi, format="png")


def _fitted_means(model):
    means = getattr(model, "means_", None)
    if means is None:
        raise ValueError(f"{type(model).__name__} is not fitted (no means_)")
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2:
        raise ValueError(f"means_ must be 2-D (K, D), got shape {means.shape}")
    return means


def plot_prototypes(model, image_shape=None, path=None, ax=None, *, cmap="gray",
                    title=None, vmin=None, vmax=None):
    """Show the prototypes (means) of an SGD-trained mixture on their n x n grid.

    Parameters
    ----------
    model : fitted estimator with ``means_`` (K, D) and, for the grid layout, ``grid_shape_``
        (n, n) (``SGDGaussianMixture``); without ``grid_shape_`` a near-square grid is used.
    image_shape : tuple of ints with product D, e.g. (8, 8) for the digits, or None
        Each prototype ``means_[k]`` is reshaped to ``image_shape`` and drawn in panel
        (row, col) = divmod(k, n): K image panels in an n x n figure.  With None the means
        are shown as a (K, D) heatmap, one row per component (a single panel).
    path : str or path-like, optional -- write the figure as PNG there.
    ax : matplotlib Axes, optional (heatmap mode only) -- draw into it instead of a new figure.
    cmap, title, vmin, vmax : display options (vmin/vmax default: the range of all means).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError if the model is not fitted, ``prod(image_shape) != D``, or ``ax`` is given in
    image mode.
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


def plot_loss_curve(model, path=None, ax=None, *, title=None, log_lr=True):
    """Loss vs SGD step from ``model.loss_curve_``, with sigma and the learning rate.

    Parameters
    ----------
    model : fitted estimator with ``loss_curve_``: a list of (step, mean loss of the segment,
        sigma, learning rate) tuples, i.e. an (S, 4) table (``SGDGaussianMixture``).
    path : str or path-like, optional -- write the figure as PNG there.
    ax : matplotlib Axes, optional -- the loss is drawn into it (sigma and the learning rate on
        ``ax.twinx()``); otherwise a new figure.
    title : str, optional;  log_lr : put the learning rate on a log-scaled third axis.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError if the model has no (or an empty / malformed) ``loss_curve_``.
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
    if own:
        fig = _new_figure((7.0, 4.0))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
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
