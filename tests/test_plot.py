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


# ------------------------------------------------- every model: 2-D, 1-D, lower bound, corner --
from matplotlib.contour import ContourSet  # noqa: E402
from matplotlib.patches import Ellipse, Rectangle  # noqa: E402

from fastmix.cli import main as cli_main, make_blobs  # noqa: E402


def _blobs(D, n=900, seed=0):
    X, _, _, _ = make_blobs(n, D, 3, random_state=seed)
    return X


def _unit(X):
    return (X - X.min(0)) / (X.max(0) - X.min(0))


def _make(name, D):
    """(model fitted on D features, its training data)."""
    X = _blobs(D)
    if name.startswith("gm-"):
        kind = name[3:]
        kw = {"n_factors": 1} if kind == "lowrank" else {}
        return fastmix.GaussianMixture(3, covariance_type=kind, random_state=0, **kw).fit(X), X
    if name == "biglearn":
        return fastmix.BigLearnGaussianMixture(3, n_outer=6, init_params="kmeans",
                                               random_state=0).fit(X), X
    if name.startswith("sgd-"):
        X = _unit(X)
        kw = {"n_directions": 1} if name == "sgd-lpd" else {}
        return fastmix.SGDGaussianMixture(4, covariance_type=name[4:], n_epochs=1,
                                          random_state=0, **kw).fit(X), X
    if name == "expansion":
        return fastmix.GMMExpansion(9 if D > 1 else 12, grid="kmeans++" if D > 2 else "auto",
                                    random_state=0).fit(X), X
    raise AssertionError(name)


MODELS = ["gm-full", "gm-tied", "gm-diag", "gm-spherical", "gm-lowrank", "biglearn", "sgd-diag",
          "sgd-lpd", "expansion"]
_CACHE = {}


def fitted(name, D):
    if (name, D) not in _CACHE:
        _CACHE[name, D] = _make(name, D)
    return _CACHE[name, D]


def _colours(path):
    from matplotlib.image import imread
    img = imread(str(path))
    return len(np.unique(img.reshape(-1, img.shape[-1]), axis=0))


def _ellipses(ax):
    return [p for p in ax.patches if isinstance(p, Ellipse)]


def _n_live(model):
    return int(np.count_nonzero(plot.mixture_components(model)[0] > 0))


@pytest.mark.parametrize("name", MODELS)
def test_mixture_components_give_the_models_density(name):
    """The (weights, means, dense covariances) every view draws are the model: their mixture
    density equals the model's score_samples (in 3-D, so lowrank/lpd are not trivial)."""
    model, X = fitted(name, 3)
    w, m, S = plot.mixture_components(model)
    K = len(w)
    assert m.shape == (K, 3) and S.shape == (K, 3, 3)
    np.testing.assert_allclose(plot._mixture_logpdf(X[:200], w, m, S), model.score_samples(X[:200]),
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", MODELS)
def test_plot_2d_every_model(name, tmp_path):
    model, X = fitted(name, 2)
    path = tmp_path / "p.png"
    fig = plot.plot_2d(model, X, path=path, grid=40)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and _colours(path) > 10
    (ax,) = fig.axes
    assert len(_ellipses(ax)) == 2 * _n_live(model)  # 1 and 2 sigma per component
    (cs,) = [c for c in ax.collections if isinstance(c, ContourSet)]
    assert len(cs.levels) > 2
    # the 2-sigma ellipse of a component is twice its 1-sigma one
    e1, e2 = _ellipses(ax)[:2]
    assert e2.width == pytest.approx(2 * e1.width) and e2.height == pytest.approx(2 * e1.height)


def test_plot_2d_ellipse_is_the_covariance():
    """The 1-sigma ellipse's axes are 2 sqrt(eigenvalues) of the component's covariance,
    turned along its leading eigenvector."""
    model, X = fitted("gm-full", 2)
    fig = plot.plot_2d(model, X, grid=20)
    S = model.covariances_[0]
    lam, V = np.linalg.eigh(S)
    e = _ellipses(fig.axes[0])[0]
    np.testing.assert_allclose(e.center, model.means_[0])
    assert e.width == pytest.approx(2 * np.sqrt(lam[1]))
    assert e.height == pytest.approx(2 * np.sqrt(lam[0]))
    assert np.cos(np.radians(e.angle - np.degrees(np.arctan2(V[1, 1], V[0, 1])))) == \
        pytest.approx(1.0)


@pytest.mark.parametrize("name", ["gm-full", "gm-diag", "expansion"])
def test_plot_density_1d(name, tmp_path):
    """A 1-D model: the curve is the model's density (integrates to ~1), over a histogram."""
    model, X = fitted(name, 1)
    path = tmp_path / "d.png"
    fig = plot.plot_density_1d(model, X, path=path, bins=30)
    assert _colours(path) > 10
    (ax,) = fig.axes
    assert len([p for p in ax.patches if isinstance(p, Rectangle)]) == 30
    xs, ys = ax.get_lines()[0].get_data()
    np.testing.assert_allclose(ys, np.exp(model.score_samples(xs[:, None])), rtol=1e-12)
    assert 0.9 < np.trapezoid(ys, xs) <= 1.0 + 1e-9  # the mass within the data range
    assert len(ax.get_lines()) == 1 + _n_live(model)  # mixture + weighted components


@pytest.mark.parametrize("name", MODELS)
def test_plot_lower_bounds(name, tmp_path):
    model, _ = fitted(name, 2)
    path = tmp_path / "lb.png"
    fig = plot.plot_lower_bounds(model, path=path)
    assert _colours(path) > 5
    ys = fig.axes[0].get_lines()[0].get_ydata()
    if name.startswith("sgd"):
        np.testing.assert_array_equal(ys, -np.asarray(model.loss_curve_)[:, 1])
    else:
        np.testing.assert_array_equal(ys, model.lower_bounds_)
        assert len(ys) == model.n_iter_ or name == "biglearn" and len(ys) == model.n_outer


@pytest.mark.parametrize("name", MODELS)
def test_plot_corner(name, tmp_path):
    model, X = fitted(name, 3)
    path = tmp_path / "c.png"
    fig = plot.plot_corner(model, X, path=path, grid=25, bins=20)
    assert _colours(path) > 10
    assert len(fig.axes) == 6  # 3 diagonal + 3 pairs
    diag = [a for a in fig.axes if not _ellipses(a)]
    pairs = [a for a in fig.axes if _ellipses(a)]
    assert len(diag) == 3 and len(pairs) == 3
    for a in pairs:
        assert len(_ellipses(a)) == 2 * _n_live(model)
    for a in diag:
        assert len([p for p in a.patches if isinstance(p, Rectangle)]) == 20


def test_corner_panel_is_the_projected_component():
    """Pair (i, j): the ellipses are the components' marginal covariances S[[j, i]][:, [j, i]]."""
    model, X = fitted("gm-full", 3)
    fig = plot.plot_corner(model, X, grid=10, bins=5, features=[0, 2])
    (pair,) = [a for a in fig.axes if _ellipses(a)]
    S = model.covariances_[0][np.ix_([0, 2], [0, 2])]
    lam = np.linalg.eigvalsh(S)
    e = _ellipses(pair)[0]
    np.testing.assert_allclose(e.center, model.means_[0][[0, 2]])
    assert e.width == pytest.approx(2 * np.sqrt(lam[1]))


def test_views_refuse_bad_input():
    model, X = fitted("gm-full", 2)
    with pytest.raises(ValueError, match=r"\(n_samples, 2\)"):
        plot.plot_2d(model, X[:, :1])
    with pytest.raises(ValueError, match="features must be 2 distinct"):
        plot.plot_2d(model, X, features=(0, 0))
    with pytest.raises(ValueError, match="features must be 1 distinct"):
        plot.plot_density_1d(model, X, feature=5)
    one, _ = fitted("gm-full", 1)
    with pytest.raises(ValueError, match="at least 2 features"):
        plot.plot_2d(one)
    with pytest.raises(ValueError, match="not fitted"):
        plot.mixture_components(fastmix.GaussianMixture(2))


@pytest.mark.parametrize("name,D,view", [("gm-full", 1, "density"), ("expansion", 2, "2d"),
                                         ("sgd-diag", 3, "corner"), ("gm-lowrank", 3, "corner"),
                                         ("biglearn", 2, "2d")])
def test_cli_plot(name, D, view, tmp_path, capsys):
    model, X = fitted(name, D)
    model.save(tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "fig.png"
    assert cli_main(["plot", str(tmp_path / "m.npz"), str(tmp_path / "x.npy"), "-o",
                     str(out)]) == 0
    assert _colours(out) > 10
    assert f"wrote the {view} plot with {len(X)} data rows" in capsys.readouterr().err


def test_cli_plot_options_and_errors(tmp_path, capsys):
    model, X = fitted("gm-full", 3)
    model.save(tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", X)
    m, x = str(tmp_path / "m.npz"), str(tmp_path / "x.npy")
    assert cli_main(["plot", m, x, "-o", str(tmp_path / "a.png"), "--features", "0,2",
                     "--max-points", "50"]) == 0
    assert "wrote the 2d plot with 50 data rows" in capsys.readouterr().err
    assert cli_main(["plot", m, "-o", str(tmp_path / "lb.png"), "--view", "lower-bounds"]) == 0
    assert _colours(tmp_path / "lb.png") > 5
    np.save(tmp_path / "y.npy", X[:, :2])
    assert cli_main(["plot", m, str(tmp_path / "y.npy"), "-o", str(tmp_path / "b.png")]) == 1
    assert "has 2 features but the model has 3" in capsys.readouterr().err
    assert cli_main(["plot", m, x, "-o", str(tmp_path / "nodir" / "c.png")]) == 1
    assert "cannot write" in capsys.readouterr().err
    assert not (tmp_path / "nodir").exists()


def test_cli_plot_csv_is_sampled_in_one_pass(tmp_path, capsys):
    """A CSV (no row count, sequential): rows are kept with probability n / N in one pass."""
    pytest.importorskip("pyarrow.csv")
    model, X = fitted("gm-full", 2)
    model.save(tmp_path / "m.npz")
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", header="a,b", comments="")
    assert cli_main(["plot", str(tmp_path / "m.npz"), str(tmp_path / "x.csv"), "-o",
                     str(tmp_path / "f.png"), "--max-points", "100"]) == 0
    err = capsys.readouterr().err
    n = int(err.split(" with ")[1].split()[0])
    assert 100 >= n and n < len(X)
    assert _colours(tmp_path / "f.png") > 10
