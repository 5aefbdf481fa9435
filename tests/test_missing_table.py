"""Missing values, full and tied: each missingness pattern factorised once per E-step
(``kernels.PatternTable``) and large pattern groups run in GEMM blocks
(``cpu_missing.pass_cov_missing_tab``), against the row-by-row reference in
``tests/reference.py`` and against themselves under other tables and blockings."""
import numpy as np
import pytest

import reference as ref
from _helpers import assert_close, assert_reproducible, gmm_params, perturbed_problem
from fastmix import kernels
from fastmix import missing as fm_missing
from fastmix.kernels.cpu import missing as cpu_missing

CHUNK = 64
KINDS = ("full", "tied")


def _few_patterns(kind, n=8 * CHUNK, seed=4):
    """Rows with one of three missingness patterns or complete (D = 5), so most pattern
    groups of a chunk have at least COV_GEMM_MIN_ROWS rows."""
    X, sw, w, mu, cov = perturbed_problem(kind, 3, 5, n, seed=seed)
    rng = np.random.default_rng(seed)
    pats = np.array([[0, 1, 0, 0, 0], [0, 0, 1, 1, 0], [1, 1, 0, 1, 1]], bool)
    which = rng.integers(0, 4, n)  # 3: a complete row
    for p in range(3):
        X[np.ix_(which == p, np.flatnonzero(pats[p]))] = np.nan
    return X, sw, w, mu, cov


def _stats(kind, X, sw, w, mu, cov, table=None, blocks=None):
    p = gmm_params(w, mu, cov, kind)
    kp = p.kernel_params(X.dtype)
    covs, logw = fm_missing.model_arrays(p)
    acc = kernels.Accumulator.for_params(kp)
    for a, b in blocks or [(0, X.shape[0])]:
        kernels.estep_stats_missing_cov(X[a:b], None if sw is None else sw[a:b], kp, covs, logw,
                                        CHUNK, acc, table=table)
    return acc.result()


def _table(kind, cov, budget=None):
    return kernels.PatternTable(np.reshape(np.asarray(cov, np.float64), (-1,) + cov.shape[-2:]),
                                budget)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_gemm_groups_match_reference(kind, weighted):
    """Pattern groups large enough for the GEMM blocks: statistics equal the reference."""
    X, sw, w, mu, cov = _few_patterns(kind)
    sw = sw if weighted else None
    table = _table(kind, cov)
    got = _stats(kind, X, sw, w, mu, cov, table)
    assert table.size == 4  # three patterns and the complete rows went through the table
    want = ref.missing_estep_stats(X, sw, w, mu, cov, kind)
    for g, e, name in zip(got, want, ("nk", "s1", "s2", "ll", "ws")):
        assert_close(g, e, 1e-10, err_msg=f"{kind} {name}")


@pytest.mark.parametrize("kind", KINDS)
def test_table_and_blocks_do_not_change_the_bits(kind):
    """A group's arithmetic depends only on its rows and the model: factors from the table,
    from a table over budget (factorised per chunk) or a table filled by earlier blocks, and
    the rows in one block or in blocks of whole chunks give the same bits."""
    X, sw, w, mu, cov = _few_patterns(kind, n=8 * CHUNK + 17)
    whole = _stats(kind, X, sw, w, mu, cov, _table(kind, cov))
    kc, D = (3 if kind == "full" else 1), X.shape[1]
    one = 8 * kc * (3 * D * D + 1)  # room for one pattern
    for table, blocks, size in ((_table(kind, cov, budget=0), None, 0),
                                (_table(kind, cov, budget=one), None, 1),
                                (_table(kind, cov), [(0, 3 * CHUNK), (3 * CHUNK, X.shape[0])],
                                 4)):
        got = _stats(kind, X, sw, w, mu, cov, table, blocks)
        assert table.size == size  # the budget holds
        for a, b, name in zip(whole, got, ("nk", "s1", "s2", "ll", "ws")):
            assert_reproducible(np.float64(a), np.float64(b), f"{kind} {name}")


@pytest.mark.parametrize("kind", KINDS)
def test_means_far_from_a_shared_centre_take_the_row_loop(kind):
    """Means ~1e4 standard deviations apart: no shared centre (tied: checked like full), so
    every group takes the row loop and the statistics still equal the reference."""
    X, sw, w, mu, cov = _few_patterns(kind)
    shift = 1e4 * np.arange(3)[:, None]
    X = X + shift[np.arange(X.shape[0]) % 3]
    mu = mu + shift
    table = _table(kind, cov)
    got = _stats(kind, X, sw, w, mu, cov, table)
    assert table.size == 0
    want = ref.missing_estep_stats(X, sw, w, mu, cov, kind)
    for g, e in zip(got, want):
        assert_close(g, e, 1e-10)


def test_small_groups_keep_the_row_loop():
    """Groups below COV_GEMM_MIN_ROWS rows never reach the table."""
    X, sw, w, mu, cov = _few_patterns("full", n=CHUNK)
    keep = np.r_[np.flatnonzero(np.isnan(X).any(axis=1))[:cpu_missing.COV_GEMM_MIN_ROWS - 1],
                 np.flatnonzero(~np.isnan(X).any(axis=1))[:3]]
    X, sw = X[keep], sw[keep]
    table = _table("full", cov)
    got = _stats("full", X, sw, w, mu, cov, table)
    assert table.size == 0
    want = ref.missing_estep_stats(X, sw, w, mu, cov, "full")
    for g, e in zip(got, want):
        assert_close(g, e, 1e-10)


# ------------------------------------------------------------------------------ lowrank ---
def _lowrank(n=6 * CHUNK + 9, D=6, q=2, seed=0):
    rng = np.random.default_rng(seed)
    w, mu, W, psi = ref.random_mfa(rng, 3, D, q, spread=2.5)
    X, _ = ref.sample_mfa(rng, w, mu, W, psi, n)
    X[rng.random(X.shape) < 0.25] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.5
    sw = rng.uniform(0.0, 3.0, n)
    sw[::11] = 0.0
    model = (np.roll(w, 1), mu + 0.4 * rng.normal(size=mu.shape), 1.2 * W, 1.3 * psi)
    return X, sw, model


def _lowrank_stats(X, sw, model, table, blocks=None):
    from fastmix._params import GMMParams, LowRankCovariance
    w, mu, W, psi = model
    p = GMMParams(w, mu, LowRankCovariance(W, psi))
    kp = p.kernel_params(X.dtype)
    WP, logw = fm_missing.model_arrays(p)
    acc = kernels.Accumulator.for_params(kp)
    for a, b in blocks or [(0, X.shape[0])]:
        kernels.estep_stats_missing_lowrank(X[a:b], sw[a:b], kp, WP, logw, CHUNK, acc,
                                            table=table)
    return acc.result(), WP


def test_lowrank_table_matches_reference_and_does_not_change_the_bits():
    """lowrank: each pattern's q x q factors from the E-step's table give the dense
    reference's statistics; a table over budget (factors per row) or filled by an earlier
    block gives the same bits."""
    X, sw, model = _lowrank()
    W = model[2]
    new = lambda budget=None: kernels.PatternTable(  # noqa: E731
        np.concatenate([W, model[3][:, :, None]], axis=2), budget, lowrank=True)
    table = new()
    whole, WP = _lowrank_stats(X, sw, model, table)
    n_pats = kernels.row_patterns(X)[1].shape[0]
    assert table.size == n_pats
    want = ref.mfa_missing_estep_stats(X, sw, *model)
    for g, e, name in zip(whole, want, ("nk", "s1", "s2", "ll", "ws")):
        assert_close(g, e, 1e-10, name)
    q = WP.shape[2] - 1
    five = 5 * 8 * 3 * (2 * q * q + 1)  # room for five patterns
    for table, blocks, size in ((new(0), None, 0), (new(five), None, 5),
                                (new(), [(0, 2 * CHUNK), (2 * CHUNK, X.shape[0])], n_pats)):
        got, _ = _lowrank_stats(X, sw, model, table, blocks)
        assert table.size == size
        for a, b, name in zip(whole, got, ("nk", "s1", "s2", "ll", "ws")):
            assert_reproducible(np.float64(a), np.float64(b), name)


def test_row_patterns_most_frequent_first():
    X = np.zeros((7, 3))
    X[[0, 3], 1] = np.nan     # pattern A: 2 rows
    X[[1, 2, 5], 2] = np.nan  # pattern B: 3 rows; the other 2 rows complete
    inv, pats = kernels.row_patterns(X)
    assert pats.tolist() == [[False, False, True], [False, False, False],
                             [False, True, False]]
    assert inv.tolist() == [2, 0, 0, 2, 1, 0, 1]
