"""The targets of ``bench/expansion.py`` are the instrument of the expansion-vs-EM tables
(``bench/results/expansion.md``): each target's sampler must draw from its ``pdf``, and the pdf
must integrate to one over its integration grid (up to ``mass_outside``).  A wrong constant in
either would silently change every IPE in the tables."""
import os
import sys

import numpy as np
import pytest

import fastmix
from fastmix import metrics

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))
import expansion as bench  # noqa: E402

#: Boxes (lo, hi) per target, through the bulk of each component.
BOXES = {
    "5-normals": [(-6.0, -4.0), (-3.0, -0.5), (-0.3, 0.3), (1.5, 3.0), (4.0, 8.0)],
    "normal+t3+uniform": [(-5.0, -3.5), (-1.0, 0.5), (2.5, 4.0), (5.5, 6.5)],
    "skew+t2": [(0.0, 1.0), (1.0, 3.0), (4.5, 5.5), (-6.0, -2.0)],
    "ring": [((-4.0, -1.0), (-1.0, 1.0)), ((0.0, 2.0), (2.0, 4.0)), ((-1.0, 1.0), (-1.0, 1.0))],
    "banana+t3": [((0.0, 1.4), (-2.0, -1.0)), ((2.0, 4.0), (-1.5, 0.5)), ((3.5, 8.0), (0.0, 8.0)),
                  ((-4.0, -2.0), (1.0, 3.0)), ((-1.5, -0.5), (-5.0, -2.0)),
                  ((-12.0, -5.0), (-2.0, 8.0))],
    "cusp+lognormal+spike": [(-3.0, -2.0), (-2.0, -1.0), (-6.0, -3.5), (0.4, 0.6), (1.5, 4.0),
                             (6.0, 20.0)],
    "t1.5+plateau+beta": [(-4.5, -3.5), (-30.0, -8.0), (10.0, 40.0), (-1.5, -0.5), (0.5, 2.0),
                          (2.5, 3.5), (4.5, 5.5), (5.5, 6.5), (6.5, 7.5)],
    "comb+exponential+gumbel": [(-6.3, -6.1), (-5.9, -5.3), (-3.9, -3.7), (-0.5, 0.2),
                                (0.0, 0.3), (0.3, 2.0), (4.0, 5.5), (7.0, 15.0)],
}
N_DRAW = 40_000


def _box_mass(target, box):
    """The integral of the true pdf over the box (trapezoid rule, 801 points per axis)."""
    if target.dim == 1:
        x = np.linspace(box[0], box[1], 801)
        return float(np.trapezoid(target.pdf(x[:, None]), x))
    axes = tuple(np.linspace(a, b, 401) for a, b in box)
    p = target.pdf(metrics.grid_points(axes)).reshape(401, 401)
    return float(np.trapezoid(np.trapezoid(p, axes[1], axis=1), axes[0]))


@pytest.mark.parametrize("name", list(bench.TARGETS))
def test_bench_target_sampler_matches_its_pdf(name):
    T = bench.TARGETS[name]
    X = T.sample(N_DRAW, np.random.default_rng(5))
    assert X.shape == (N_DRAW, T.dim)
    for box in BOXES[name]:
        box = [box] if T.dim == 1 else box
        inside = np.ones(N_DRAW, bool)
        for d, (a, b) in enumerate(box):
            inside &= (X[:, d] > a) & (X[:, d] < b)
        p = _box_mass(T, box[0] if T.dim == 1 else box)
        se = np.sqrt(p * (1 - p) / N_DRAW)
        assert abs(inside.mean() - p) < 4.5 * se + 1e-3, (name, box, inside.mean(), p)


@pytest.mark.parametrize("name", list(bench.TARGETS))
def test_bench_target_pdf_integrates_to_one(name):
    T = bench.TARGETS[name]
    grid = T.grid()
    p = T.pdf(metrics.grid_points(grid))
    if T.dim == 2:
        p = p.reshape(len(grid[0]), len(grid[1]))
        total = float(np.trapezoid(np.trapezoid(p, grid[1], axis=1), grid[0]))
    else:
        total = float(np.trapezoid(p, grid))
    assert abs(total - 1.0) < 2e-3, (name, total)
    assert 0 <= T.mass_outside() < 1e-3


def test_expansion_seeds_compares_the_default_with_the_oracle_k(tmp_path):
    """``bench/expansion_seeds.py``: the best EM is the K of lowest true IPE among those tried,
    the ratio is the default's IPE over it, and the report lists the cell."""
    import expansion_seeds as seeds_bench
    rows = seeds_bench.main(["--targets", "5-normals", "--n", "600", "--seeds", "3",
                             "--ks", "2,5", "--out-dir", str(tmp_path)])
    (r,) = rows
    target = bench.TARGETS["5-normals"]
    X = target.sample(100_000, np.random.default_rng(3))[:600]
    grid = target.grid()
    pts = metrics.grid_points(grid)
    p_true = target.pdf(pts)
    ipes = {}
    for K in (2, 5):
        em = fastmix.GaussianMixture(K, random_state=bench.SEED, **bench.EM_PARAMS).fit(X)
        ipes[K] = metrics.ipe(np.exp(em.score_samples(pts)).reshape(p_true.shape), p_true, grid)
    best = min(ipes, key=ipes.get)
    assert r["best_em_K"] == best and r["best_em_ipe"] == pytest.approx(ipes[best], rel=1e-12)
    assert r["ratio"] == pytest.approx(r["default_ipe"] / ipes[best], rel=1e-12)
    text = (tmp_path / "expansion_seeds.md").read_text()
    assert f"| 5-normals | 6e+02 | 3 | {r['default_ipe']:.4f} |" in text


def test_expansion_bar_is_the_lowest_single_fit_and_counts_passes(tmp_path):
    """``bench/expansion_bar.py bar``: the table's bar is the lowest start-0 IPE over K, every
    drawn bar is one start per K (so between the lowest and the highest per-K minimum), and
    P(pass) is the fraction of draws at or above the default's IPE."""
    import expansion_bar
    (r,) = expansion_bar.main(["bar", "--targets", "5-normals", "--n", "600", "--ks", "2,5",
                               "--starts", "5", "--draws", "300", "--states", "2",
                               "--out-dir", str(tmp_path)])
    target = bench.TARGETS["5-normals"]
    X = target.sample(100_000, np.random.default_rng(bench.SEED))[:600]
    grid = target.grid()
    pts = metrics.grid_points(grid)
    p_true = target.pdf(pts)
    first = {}
    for K in (2, 5):
        em = fastmix.GaussianMixture(K, random_state=0, **bench.EM_PARAMS).fit(X)
        first[K] = metrics.ipe(np.exp(em.score_samples(pts)), p_true, grid)
        assert r["single"][str(K)][0] == pytest.approx(first[K], rel=1e-12)
    assert r["table_bar"] == pytest.approx(min(first.values()), rel=1e-12)
    lows = [min(v) for v in r["single"].values()]
    assert min(lows) <= r["bar_q10"] <= r["bar_median"] <= r["bar_q90"]
    assert r["bar_q90"] <= min(max(v) for v in r["single"].values())
    ge = fastmix.GMMExpansion(random_state=bench.SEED).fit(X)
    assert r["default_ipe"] == pytest.approx(
        metrics.ipe(np.exp(ge.score_samples(pts)), p_true, grid), rel=1e-12)
    assert r["states"][0] == r["default_ipe"] and len(r["states"]) == 2
    assert r["states_pass"] == sum(v <= r["table_bar"] for v in r["states"])
    assert (r["p_pass"] == 1.0) == (r["default_ipe"] <= min(lows))
    text = (tmp_path / "expansion_bar.md").read_text()
    assert f"| 5-normals | 6e+02 | {r['default_ipe']:.4f} (" in text


def test_expansion_windows_rebuilds_the_estimator_and_nests_its_windows(tmp_path):
    """``bench/expansion_windows.py``: its rebuild of the parametric stage, with the
    estimator's rule, gives ``GMMExpansion(random_state=r)``'s density (the check), and its
    windows are what the docstring says: the chosen K is in every window, "below" windows hold
    no larger K and lie inside the "all" window of the same c, and a larger c only adds K."""
    import expansion_windows
    path = str(tmp_path / "cell.npz")
    expansion_windows.collect("cusp+lognormal+spike", 1000, 1, path)
    r = expansion_windows.evaluate(path, "cusp+lognormal+spike", 1000, 1, check=True)
    assert r["check"] < 1e-12
    w = r["windows"]
    assert w["now"] == [r["K0"]]
    for c in expansion_windows.CS:
        below, every = w[f"below {c:g}"], w[f"all {c:g}"]
        assert r["K0"] in below and max(below) == r["K0"] and set(below) <= set(every)
    for lo, hi in zip(expansion_windows.CS, expansion_windows.CS[1:]):
        assert set(w[f"all {lo:g}"]) <= set(w[f"all {hi:g}"])
    assert any(len(w[f"all {c:g}"]) > 1 for c in expansion_windows.CS)  # not vacuous
    assert all(v > 0 for v in r["ratios"].values())
