"""GMMExpansion's parametric stage (parametric="auto"): the expansion combined with an EM
mixture, alpha * expansion + (1 - alpha) * EM, K and alpha chosen on held-out rows
(docs/user_guide/expansion.md)."""
import numpy as np
import pytest
from scipy.stats import multivariate_normal

import fastmix
from fastmix import expansion

import reference as ref
from _helpers import assert_close


def _normals(n, seed=0):
    """Three well-separated normals: a target that EM fits exactly."""
    rng = np.random.default_rng(seed)
    k = rng.choice(3, size=n, p=[0.3, 0.4, 0.3])
    return (np.array([-4.0, 0.0, 4.0])[k] + np.array([0.5, 0.7, 0.4])[k]
            * rng.standard_normal(n))[:, None]


def _steps(n, seed=0):
    """Two uniform blocks: no few-component Gaussian mixture fits it."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(0, 2, n // 2), rng.uniform(3, 4, n - n // 2)])[:, None]


@pytest.fixture(scope="module")
def fitted():
    X = _normals(4000)
    return X, fastmix.GMMExpansion(random_state=0).fit(X)


@pytest.fixture(scope="module")
def mixed():
    """A model with 0 < alpha < 1: skewed, with a t_2 tail (both parts carry weight)."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.gamma(2.0, 0.7, 1800), rng.normal(5, 0.5, 1400),
                        rng.standard_t(2, 800) - 3])[:, None]
    ge = fastmix.GMMExpansion(random_state=0).fit(X)
    assert 0.01 < ge.alpha_ < 0.99
    return X, ge


def test_best_alpha_matches_reference():
    rng = np.random.default_rng(3)
    n = 600
    X = rng.normal(size=n)
    lp_a = multivariate_normal(0.3, 1.4).logpdf(X)
    lp_b = multivariate_normal(0.0, 0.8).logpdf(X)
    w = rng.uniform(0.5, 2.0, n)
    for ww in (None, w):
        alpha = expansion.best_alpha(lp_a, lp_b, ww)
        want, best = ref.stack_weights(np.stack([lp_a, lp_b], axis=1), ww)
        assert 0 < alpha < 1 and abs(alpha - want[0]) < 1e-5
        got = np.average(np.log(alpha * np.exp(lp_a) + (1 - alpha) * np.exp(lp_b)), weights=ww)
        assert got >= best - 1e-12  # at least as good as SciPy's optimum
    lp_true = multivariate_normal(0.0, 1.0).logpdf(X)  # boundary optima
    assert expansion.best_alpha(lp_true, lp_true - 1.0) == 1.0
    assert expansion.best_alpha(lp_true - 1.0, lp_true) == 0.0


def _cross_fitted_z(lp_exp, lp_par):
    """z of the held-out gain, each half scored with the reference alpha of the other half."""
    d = np.empty(lp_exp.size)
    for part in (slice(0, None, 2), slice(1, None, 2)):
        other = np.ones(lp_exp.size, bool)
        other[part] = False
        a = ref.stack_weights(np.stack([lp_exp[other], lp_par[other]], axis=1))[0][0]
        d[part] = np.log(a * np.exp(lp_exp[part]) + (1 - a) * np.exp(lp_par[part])) \
            - lp_par[part]
    return d.mean() / (d.std() / np.sqrt(d.size))


def test_stack_alpha_keeps_the_expansion_only_when_it_earns_it():
    """alpha maximises the held-out likelihood; it is set to 0 unless the combination beats EM
    alone by STACK_MIN_Z standard errors of the per-row difference, each half of the held-out
    rows scored with the alpha of the other half (plain NumPy / SciPy here)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=2000)
    lp_par = multivariate_normal(0.0, 1.0).logpdf(x)  # the true density
    for lp_exp, earns in ((multivariate_normal(0.05, 1.1).logpdf(x), False),
                          (np.log(0.5 * np.exp(lp_par) + 0.5 * multivariate_normal(
                              1.5, 0.3).pdf(x)), False),
                          (np.log(0.9 * np.exp(lp_par) + 0.1 * multivariate_normal(
                              0.0, 0.5).pdf(x)), True)):
        x_par = lp_par if not earns else multivariate_normal(0.3, 1.5).logpdf(x)
        alpha, z = expansion.stack_alpha(lp_exp, x_par)
        z_ref = _cross_fitted_z(lp_exp, x_par)
        assert abs(z - z_ref) < 1e-3 * max(1.0, abs(z_ref))
        assert (z_ref >= expansion.STACK_MIN_Z) == earns
        a_ref = ref.stack_weights(np.stack([lp_exp, x_par], axis=1))[0][0]
        assert alpha == (pytest.approx(a_ref, abs=1e-5) if earns else 0.0)


def test_mix_log_prob_and_holdout_mask():
    with np.errstate(divide="ignore"):
        log_p = np.log(np.array([[0.2, 0.5], [1e-300, 0.1], [0.3, 0.0]]))
    assert_close(expansion.mix_log_prob(log_p, [0.25, 0.75]),
                 np.log(np.exp(log_p) @ [0.25, 0.75]), 1e-13)
    assert_close(expansion.mix_log_prob(log_p, [1.0, 0.0]), log_p[:, 0], 1e-13)
    held = expansion.holdout_mask(12)
    assert held.tolist() == [i % 5 == 0 for i in range(12)]
    big = expansion.holdout_mask(10 ** 6)  # at most STACK_HOLDOUT rows held out
    assert big.sum() == expansion.STACK_HOLDOUT and big[0] and big[20] and not big[5]


def test_combined_density_is_the_concatenated_mixture(mixed):
    X, ge = mixed
    M = ge.node_weights_.size
    K = ge.stack_.n_components * ge.stack_.n_starts
    assert ge.weights_.shape == (M + K,) and ge.means_.shape == (M + K, 1)
    assert ge.covariances_.shape == (M + K, 1, 1)
    assert abs(ge.weights_.sum() - 1) < 1e-12 and 0 <= ge.alpha_ <= 1
    Y = np.linspace(-9, 9, 201)[:, None]
    dense = sum(w * multivariate_normal(m, c).pdf(Y[:, 0])
                for w, m, c in zip(ge.weights_, ge.means_, ge.covariances_))
    assert_close(ge.score_samples(Y), np.log(dense), 1e-10)
    # the expansion part is the pure default fitted on all rows, bit for bit
    pure = fastmix.GMMExpansion(random_state=0, parametric=None).fit(X)
    assert np.array_equal(ge.node_weights_, pure.weights_)
    assert np.array_equal(ge.means_[:M], pure.means_)
    assert pure.alpha_ == 1.0 and pure.stack_ is None and pure.weights_ is pure.node_weights_
    assert pure.covariances_.shape == (M, 1, 1)


def test_choice_follows_the_held_out_likelihood(fitted):
    X, ge = fitted
    st = ge.stack_
    assert st.n_components == max(st.scores, key=st.scores.get)
    assert st.n_heldout == expansion.holdout_mask(X.shape[0]).sum() and st.n_inside <= st.n_heldout
    assert st.n_components >= 3  # EM's own family: at least the three components
    assert ge.alpha_ < 0.5      # ... and EM carries most of the weight
    Y = _normals(20000, seed=1)  # fresh rows: the combination beats the pure expansion
    assert ge.score(Y) > fastmix.GMMExpansion(parametric=None).fit(X).score(Y)


def test_rows_beyond_the_grid_do_not_choose_alpha():
    X = _normals(3000, seed=3)
    X[0], X[5], X[10] = 1e6, -1e6, 0.0  # rows 0 and 5 are held out, far beyond the grid
    ge = fastmix.GMMExpansion(random_state=0).fit(X)
    assert ge.stack_.n_inside == ge.stack_.n_heldout - 2
    assert np.all(np.isfinite(ge.score_samples(X[:6])))  # EM's tails reach them


def test_sweep_tries_every_start(monkeypatch):
    """STACK_INITS k-means++ starts per K > 1 (one for K = 1), each with its own seed."""
    calls = []
    member = fastmix.GMMExpansion._em_member

    def spy(K, X, w, warm=None, seed=None, **kw):
        calls.append((K, seed))
        return member(K, X, w, warm=warm, seed=seed, **kw)
    monkeypatch.setattr(fastmix.GMMExpansion, "_em_member", staticmethod(spy))
    ge = fastmix.GMMExpansion(random_state=0).fit(_normals(2000))
    tried = [c for c in calls if c[1] is not None]
    for K in ge.stack_.scores:
        seeds = [s for k, s in tried if k == K]
        assert len(set(seeds)) == (1 if K == 1 else expansion.STACK_INITS)


def test_parametric_part_averages_every_start(monkeypatch, tmp_path):
    """The EM part is the equal-weight average of the chosen K's fits from all STACK_INITS
    starts, each refined on the training rows and then on all rows (the mixture of their
    components, weights divided by the number of starts)."""
    finals = []
    member = fastmix.GMMExpansion._em_member
    X = _normals(4000)

    def spy(K, X_, w, warm=None, seed=None, **kw):
        em = member(K, X_, w, warm=warm, seed=seed, **kw)
        if X_.shape[0] == X.shape[0]:  # a refit on all rows
            assert warm is not None
            finals.append(em)
        return em
    monkeypatch.setattr(fastmix.GMMExpansion, "_em_member", staticmethod(spy))
    ge = fastmix.GMMExpansion(random_state=0).fit(X)
    st = ge.stack_
    S, K, M = expansion.STACK_INITS, st.n_components, ge.node_weights_.size
    assert st.n_starts == S and len(finals) == S and K >= 3
    a = ge.alpha_
    assert_close(ge.weights_[M:], (1 - a) * np.concatenate([f.weights_ for f in finals]) / S,
                 1e-14)
    assert_close(ge.means_[M:], np.concatenate([f.means_ for f in finals]), 0.0)
    assert_close(ge.covariances_[M:], np.concatenate([f.covariances_ for f in finals]), 1e-14)
    # the starts are distinct fits (not S copies of one)
    assert len({tuple(np.sort(f.means_[:, 0]).round(12)) for f in finals}) > 1
    Y = np.linspace(-8, 8, 101)[:, None]
    want = np.logaddexp(np.log(a) + fastmix.GMMExpansion(random_state=0, parametric=None)
                        .fit(X).score_samples(Y) if a > 0 else -np.inf,
                        np.log1p(-a) + np.log(np.mean([np.exp(f.score_samples(Y))
                                                       for f in finals], axis=0)))
    assert_close(ge.score_samples(Y), want, 1e-10)
    # saved and loaded with the number of starts; a file without it (one start) still loads
    ge.save(tmp_path / "s.npz")
    back = fastmix.load(tmp_path / "s.npz")
    assert back.stack_ == ge.stack_ and back.stack_.n_starts == S
    assert np.array_equal(back.score_samples(Y), ge.score_samples(Y))
    d = dict(np.load(tmp_path / "s.npz"))
    meta = str(d["meta"]).replace(f', "n_starts": {S}', "")
    assert meta != str(d["meta"])
    np.savez(tmp_path / "old.npz", **dict(d, meta=np.array(meta)))
    assert fastmix.load(tmp_path / "old.npz").stack_.n_starts == 1


def test_one_start_is_the_best_start_alone(monkeypatch):
    """STACK_AVERAGE = 1: the EM part is the best start's fit alone (the rule before the
    average), whose components are the first K of the averaged model's."""
    X = _normals(4000)
    avg, S = fastmix.GMMExpansion(random_state=0).fit(X), expansion.STACK_AVERAGE
    monkeypatch.setattr(expansion, "STACK_AVERAGE", 1)
    one = fastmix.GMMExpansion(random_state=0).fit(X)
    K, M = one.stack_.n_components, one.node_weights_.size
    assert one.stack_.n_starts == 1 and one.weights_.shape == (M + K,)
    assert K == avg.stack_.n_components and avg.stack_.n_starts == S > 1
    assert np.array_equal(one.means_[M:], avg.means_[M:M + K])


def test_reproducible_and_weighted():
    X = _normals(3000, seed=2)
    a = fastmix.GMMExpansion(random_state=5).fit(X)
    b = fastmix.GMMExpansion(random_state=5).fit(X)
    assert np.array_equal(a.weights_, b.weights_) and a.stack_ == b.stack_
    # integer weights = repeated rows
    rng = np.random.default_rng(0)
    w = rng.integers(1, 3, size=3000)
    gw = fastmix.GMMExpansion(random_state=5).fit(X, sample_weight=w)
    assert 0 <= gw.alpha_ <= 1 and gw.stack_ is not None
    # few effective rows: no stage
    w0 = np.zeros(3000)
    w0[:50] = 1.0
    assert fastmix.GMMExpansion().fit(X, sample_weight=w0).stack_ is None


def test_stage_is_skipped_where_it_does_not_apply(tmp_path):
    X = _normals(3000)
    assert fastmix.GMMExpansion().fit(X[:expansion.STACK_MIN_ROWS - 1]).stack_ is None
    assert fastmix.GMMExpansion(n_nodes=40).fit(X).stack_ is None  # explicit nodes: pure
    np.save(tmp_path / "x.npy", X)
    disk = fastmix.GMMExpansion(chunk_size=500).fit(str(tmp_path / "x.npy"))
    assert disk.stack_ is None  # out-of-core rows: pure (documented)
    assert_close(disk.weights_, fastmix.GMMExpansion(parametric=None).fit(X).weights_, 1e-12)
    ge = fastmix.GMMExpansion(random_state=0).fit(X)
    with pytest.raises(ValueError, match="partial_fit continues only"):
        ge.partial_fit(X[:10])
    with pytest.raises(ValueError, match="parametric"):
        fastmix.GMMExpansion(parametric="yes").fit(X)


def test_save_load_and_sample(mixed, tmp_path):
    X, ge = mixed
    path = tmp_path / "stack.npz"
    ge.save(path)
    back = fastmix.load(path)
    assert back.stack_ == ge.stack_ and back.alpha_ == ge.alpha_
    assert np.array_equal(back.score_samples(X[:500]), ge.score_samples(X[:500]))
    assert np.array_equal(back.weights_, ge.weights_)
    d = dict(np.load(path))
    meta = str(d["meta"]).replace(f'"alpha": {ge.alpha_!r}', '"alpha": 1.5')
    assert meta != str(d["meta"])
    np.savez(tmp_path / "bad.npz", **dict(d, meta=np.array(meta)))
    with pytest.raises(ValueError, match="alpha"):
        fastmix.load(tmp_path / "bad.npz")
    # samples: mean and variance of the mixture (law of total variance)
    Xs, idx = ge.sample(200000)
    M = ge.node_weights_.size
    assert idx.max() >= M  # the parametric components are drawn from
    mean = ge.weights_ @ ge.means_[:, 0]
    var = ge.weights_ @ (ge.covariances_[:, 0, 0] + ge.means_[:, 0] ** 2) - mean ** 2
    assert abs(Xs.mean() - mean) < 0.03 and abs(Xs.var() / var - 1) < 0.02
    assert idx.min() < M  # ... and the nodes
    for k in range(M, ge.weights_.size):  # each parametric component: its own covariance
        rows = Xs[idx == k, 0]
        if rows.size > 5000:
            assert abs(np.mean((rows - ge.means_[k, 0]) ** 2) / ge.covariances_[k, 0, 0] - 1) \
                < 0.1
