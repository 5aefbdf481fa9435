"""fastmix.plot: prototype grids and loss curves of a small SGD model (fast)."""
import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")

import fastmix  # noqa: E402
from fastmix import plot  # noqa: E402


@pytest.fixture(scope="module")
def model():
    matplotlib.use("Agg")
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, size=(600, 16))
    return fastmix.SGDGaussianMixture(9, n_epochs=1.0, anneal_window=100,
                                      random_state=0).fit(X)


def _image_axes(fig):
    return [a for a in fig.axes if a.images]


def test_prototypes_png(model, tmp_path):
    path = tmp_path / "proto.png"
    fig = plot.plot_prototypes(model, image_shape=(4, 4), path=path)
    assert path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(_image_axes(fig)) == model.n_components


def test_prototypes_heatmap(model, tmp_path):
    path = tmp_path / "heat.png"
    fig = plot.plot_prototypes(model, path=path)
    assert path.stat().st_size > 0
    img = _image_axes(fig)
    assert len(img) == 1
    assert img[0].images[0].get_array().shape == (model.n_components, 16)


def test_loss_curve_png(model, tmp_path):
    path = tmp_path / "loss.png"
    fig = plot.plot_loss_curve(model, path=path)
    assert path.stat().st_size > 0
    n = len(model.loss_curve_)
    ys = [line.get_ydata() for a in fig.axes for line in a.get_lines()]
    assert len(ys) == 3 and all(len(y) == n for y in ys)


def test_into_given_ax(model):
    from matplotlib.figure import Figure
    fig = Figure()
    ax = fig.add_subplot(1, 1, 1)
    assert plot.plot_loss_curve(model, ax=ax) is fig
    fig2 = Figure()
    ax2 = fig2.add_subplot(1, 1, 1)
    assert plot.plot_prototypes(model, ax=ax2) is fig2


def test_bad_image_shape(model):
    with pytest.raises(ValueError, match="D=16"):
        plot.plot_prototypes(model, image_shape=(3, 5))
    with pytest.raises(ValueError):
        plot.plot_prototypes(model, image_shape=(8, 8))


def test_unfitted():
    est = fastmix.SGDGaussianMixture(9)
    with pytest.raises(ValueError):
        plot.plot_prototypes(est)
    with pytest.raises(ValueError):
        plot.plot_loss_curve(est)
