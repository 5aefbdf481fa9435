"""Plain NumPy/SciPy reference implementations of everything the fastmix kernels compute.

Readable and slow on purpose: every quantity is computed from its textbook definition, from the
*covariances* (never from fastmix's precision-Cholesky path), materialising the full (N, K)
matrices.  All arithmetic is float64; float32 data are upcast first, so a float32 kernel is
compared against the exact result for its (rounded) input.

Layouts follow scikit-learn (and fastmix's estimators): ``covariances`` are
full (K, D, D), tied (D, D), diag (K, D), spherical (K,).

Statistics follow ``fastmix/_stats.py`` / ``cpu_estep``'s docstring:

* ``nk[k] = sum_n w_n r_nk``, ``s1[k] = sum_n w_n r_nk x_n``
* ``s2``: full (K, D, D) ``sum w r (x - c_k)(x - c_k)^T``;
  tied (1, D, D) ``sum w (x - g)(x - g)^T`` (g = weights @ means for the E-step);
  diag (K, 1, D) ``sum w r (x - c_k)^2``; spherical (K, 1, 1) ``sum w r ||x - c_k||^2``
* ``ll = sum_n w_n log p(x_n)``, ``ws = sum_n w_n``.
"""
import numpy as np
from scipy import linalg, special
from scipy.stats import multivariate_normal

KINDS = ("full", "tied", "diag", "spherical")
EPS = np.finfo(np.float64).eps
LOG_2PI = np.log(2.0 * np.pi)


# --------------------------------------------------------------------------------- helpers ---
def _weights_or_ones(sw, N):
    return np.ones(N) if sw is None else np.asarray(sw, dtype=np.float64)


def component_covariances(covariances, kind, K, D):
    """Each component's dense (D, D) covariance matrix, (K, D, D), from sklearn's layout."""
    c = np.asarray(covariances, dtype=np.float64)
    if kind == "full":
        return c.copy()
    if kind == "tied":
        return np.repeat(c[None, :, :], K, axis=0)
    if kind == "diag":
        return np.stack([np.diag(v) for v in c])
    if kind == "spherical":
        return np.stack([v * np.eye(D) for v in c])
    raise ValueError(kind)


def precisions_from_covariances(covariances, kind):
    """Precisions in sklearn's layout (plain matrix inverses / reciprocals)."""
    c = np.asarray(covariances, dtype=np.float64)
    if kind == "full":
        return np.stack([np.linalg.inv(m) for m in c])
    if kind == "tied":
        return np.linalg.inv(c)
    return 1.0 / c


#: the same inversion maps precisions back to covariances
covariances_from_precisions = precisions_from_covariances


def precisions_cholesky_from_covariances(covariances, kind):
    """sklearn's ``precisions_cholesky_``: upper-triangular U with Sigma^-1 = U U^T (full/tied),
    1/sigma (diag/spherical)."""
    c = np.asarray(covariances, dtype=np.float64)

    def one(m):
        L = linalg.cholesky(m, lower=True)
        return linalg.solve_triangular(L, np.eye(m.shape[0]), lower=True).T

    if kind == "full":
        return np.stack([one(m) for m in c])
    if kind == "tied":
        return one(c)
    return 1.0 / np.sqrt(c)


def n_parameters(kind, K, D):
    cov = {"full": K * D * (D + 1) / 2, "tied": D * (D + 1) / 2, "diag": K * D,
           "spherical": K}[kind]
    return int(cov + K * D + K - 1)


# ------------------------------------------------------------------------------- densities ---
def log_gaussian(X, means, covariances, kind):
    """(N, K) matrix of log N(x_n | mu_k, Sigma_k), computed from the covariances."""
    X = np.asarray(X, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    N, D = X.shape
    K = means.shape[0]
    out = np.empty((N, K))
    cov = np.asarray(covariances, dtype=np.float64)
    for k in range(K):
        diff = X - means[k]
        if kind in ("full", "tied"):
            S = cov[k] if kind == "full" else cov
            out[:, k] = np.atleast_1d(multivariate_normal(mean=means[k], cov=S).logpdf(X))
        elif kind == "diag":
            var = cov[k]
            out[:, k] = -0.5 * (D * LOG_2PI + np.log(var).sum() + (diff ** 2 / var).sum(axis=1))
        elif kind == "spherical":
            var = cov[k]
            out[:, k] = -0.5 * (D * LOG_2PI + D * np.log(var) + (diff ** 2).sum(axis=1) / var)
        else:
            raise ValueError(kind)
    return out


def weighted_log_prob(X, weights, means, covariances, kind):
    """(N, K): log pi_k + log N(x_n | mu_k, Sigma_k)."""
    with np.errstate(divide="ignore"):
        return log_gaussian(X, means, covariances, kind) + np.log(np.asarray(weights, float))


def log_prob_resp(X, weights, means, covariances, kind):
    """(log p(x_n) (N,), responsibilities (N, K)).

    log p(x) is the log-sum-exp of the weighted log-densities.  The responsibilities are the
    max-shifted softmax ``exp(l_k - max l) / sum_j exp(l_j - max l)``: mathematically
    ``exp(l_k - log p(x))``, but that form carries log p's rounding error (~eps |log p|, i.e.
    ~1e-14 when |log p| ~ 40) into every responsibility, while the shifted form is accurate to a
    few ulp -- needed to check the kernels' responsibilities to ~1e-15.
    """
    wlp = weighted_log_prob(X, weights, means, covariances, kind)
    logp = special.logsumexp(wlp, axis=1)
    resp = special.softmax(wlp, axis=1)
    return logp, resp


# ------------------------------------------------------------------------------ statistics ---
def sufficient_stats(X, sw, resp, kind, centres, gcentre):
    """(nk, s1, s2) for responsibilities ``resp`` (N, K), s2 centred on ``centres`` (K, D)
    (tied: on ``gcentre`` (D,)), exactly as defined in fastmix/_stats.py."""
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    resp = np.asarray(resp, dtype=np.float64)
    K = resp.shape[1]
    w = _weights_or_ones(sw, N)
    wr = w[:, None] * resp
    nk = wr.sum(axis=0)
    s1 = wr.T @ X
    centres = np.asarray(centres, dtype=np.float64)
    if kind == "full":
        s2 = np.empty((K, D, D))
        for k in range(K):
            Y = X - centres[k]
            s2[k] = (wr[:, k, None] * Y).T @ Y
    elif kind == "tied":
        Y = X - np.asarray(gcentre, dtype=np.float64)
        s2 = ((w[:, None] * Y).T @ Y)[None, :, :]
    elif kind == "diag":
        s2 = np.empty((K, 1, D))
        for k in range(K):
            s2[k, 0] = wr[:, k] @ (X - centres[k]) ** 2
    elif kind == "spherical":
        s2 = np.empty((K, 1, 1))
        for k in range(K):
            s2[k, 0, 0] = wr[:, k] @ ((X - centres[k]) ** 2).sum(axis=1)
    else:
        raise ValueError(kind)
    return nk, s1, s2


def estep_stats(X, sw, weights, means, covariances, kind):
    """The fused E-step's output (nk, s1, s2, ll, ws): responsibilities under the model,
    s2 centred on the model's means (tied: on g = weights @ means)."""
    X = np.asarray(X, dtype=np.float64)
    w = _weights_or_ones(sw, X.shape[0])
    logp, resp = log_prob_resp(X, weights, means, covariances, kind)
    g = np.asarray(weights, float) @ np.asarray(means, float)
    nk, s1, s2 = sufficient_stats(X, sw, resp, kind, means, g)
    return nk, s1, s2, float(w @ logp), float(w.sum())


def nearest_stats(X, sw, centres, kind, gcentre):
    """k-means statistics: each row assigned (responsibility 1) to its nearest centre;
    ll = -sum w ||x - nearest centre||^2."""
    X = np.asarray(X, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    N = X.shape[0]
    K = centres.shape[0]
    w = _weights_or_ones(sw, N)
    d2 = ((X[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    lab = np.argmin(d2, axis=1)
    resp = np.zeros((N, K))
    resp[np.arange(N), lab] = 1.0
    nk, s1, s2 = sufficient_stats(X, sw, resp, kind, centres, gcentre)
    return nk, s1, s2, float(-(w @ d2[np.arange(N), lab])), float(w.sum())


def sqdist_to(X, centre):
    return ((np.asarray(X, float) - np.asarray(centre, float)) ** 2).sum(axis=1)


def candidate_potentials(X, sw, cands, mind):
    X = np.asarray(X, float)
    w = _weights_or_ones(sw, X.shape[0])
    return np.array([w @ np.minimum(mind, sqdist_to(X, c)) for c in np.asarray(cands, float)])


def kmeans_plusplus(X, sw, K, rng, n_trials):
    """Greedy k-means++ with direct squared distances, drawing from ``rng`` in the order
    fastmix does (first row by weight, then ``n_trials`` uniforms per step)."""
    X = np.asarray(X, float)
    N = X.shape[0]
    w = _weights_or_ones(sw, N)
    idx = [int(rng.choice(N, p=w / w.sum()))]
    mind = sqdist_to(X, X[idx[0]])
    for _ in range(1, K):
        cum = np.cumsum(w * mind)
        cand = np.minimum(np.searchsorted(cum, rng.random(n_trials) * cum[-1]), N - 1)
        pots = candidate_potentials(X, sw, X[cand], mind)
        best = int(np.argmin(pots))
        idx.append(int(cand[best]))
        mind = np.minimum(mind, sqdist_to(X, X[cand[best]]))
    return np.array(idx)


# ---------------------------------------------------------------------------------- M-step ---
def m_step(X, sw, resp, kind, reg_covar):
    """scikit-learn's M-step with sample weights: nk = sum w r + 10 eps, means = s1 / nk,
    covariances from the responsibilities (centred on the new means) + reg_covar.
    Returns (weights, means, covariances) in sklearn's layout."""
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    w = _weights_or_ones(sw, N)
    wr = w[:, None] * np.asarray(resp, dtype=np.float64)
    K = wr.shape[1]
    nk = wr.sum(axis=0) + 10 * EPS
    means = (wr.T @ X) / nk[:, None]
    if kind in ("full", "tied"):
        covs = np.empty((K, D, D))
        for k in range(K):
            diff = X - means[k]
            covs[k] = (wr[:, k] * diff.T) @ diff
        if kind == "full":
            cov = covs / nk[:, None, None] + reg_covar * np.eye(D)
        else:
            cov = covs.sum(axis=0) / nk.sum() + reg_covar * np.eye(D)
    else:
        var = np.empty((K, D))
        for k in range(K):
            var[k] = wr[:, k] @ (X - means[k]) ** 2 / nk[k]
        var += reg_covar
        cov = var if kind == "diag" else var.mean(axis=1)
    return nk / nk.sum(), means, cov


def em(X, sw, weights, means, covariances, kind, reg_covar, n_iter):
    """``n_iter`` plain EM iterations.  Like scikit-learn, the lower bound of an iteration is the
    weighted mean log-likelihood of the parameters *before* that iteration's M-step.

    Returns dict(weights, means, covariances, lower_bounds (list))."""
    X = np.asarray(X, dtype=np.float64)
    w = _weights_or_ones(sw, X.shape[0])
    lbs = []
    for _ in range(n_iter):
        logp, resp = log_prob_resp(X, weights, means, covariances, kind)
        lbs.append(float(w @ logp / w.sum()))
        weights, means, covariances = m_step(X, sw, resp, kind, reg_covar)
    return {"weights": weights, "means": means, "covariances": covariances,
            "lower_bounds": lbs}


# --------------------------------------------------------------------- random test models ---
def random_covariances(rng, kind, K, D, scale=1.0):
    """Well-conditioned random covariances in sklearn's layout."""
    if kind == "full":
        out = []
        for _ in range(K):
            A = rng.normal(size=(D, D))
            out.append(scale * (A @ A.T / D + 0.5 * np.eye(D)))
        return np.stack(out)
    if kind == "tied":
        A = rng.normal(size=(D, D))
        return scale * (A @ A.T / D + 0.5 * np.eye(D))
    if kind == "diag":
        return scale * rng.uniform(0.5, 2.0, size=(K, D))
    if kind == "spherical":
        return scale * rng.uniform(0.5, 2.0, size=K)
    raise ValueError(kind)


def random_model(rng, kind, K, D, spread=3.0):
    """(weights, means, covariances) of a random mixture whose components overlap a little."""
    weights = rng.uniform(0.5, 1.5, size=K)
    weights /= weights.sum()
    means = spread * rng.normal(size=(K, D))
    return weights, means, random_covariances(rng, kind, K, D)


def sample_model(rng, weights, means, covariances, kind, N):
    """N rows drawn from a mixture (labels discarded)."""
    K, D = means.shape
    covs = component_covariances(covariances, kind, K, D)
    lab = rng.choice(K, size=N, p=weights)
    X = np.empty((N, D))
    for k in range(K):
        idx = np.flatnonzero(lab == k)
        X[idx] = rng.multivariate_normal(means[k], covs[k], size=idx.size)
    return X


# ------------------------------------------------------------------ SGD (Gepperth et al.) ----
def sgd_objective_weights(x, xi, mu, s, g, exact):
    """Per-sample log-likelihood terms l (K,), weights w (K,) and objective (NumPy)."""
    from scipy.special import logsumexp
    logpi = xi - logsumexp(xi)
    D = mu.shape[1]
    ell = logpi + np.log(s).sum(axis=1) - 0.5 * D * np.log(2 * np.pi) \
        - 0.5 * ((s * (x - mu)) ** 2).sum(axis=1)
    if exact:
        w = np.exp(ell - logsumexp(ell))
        return ell, w, logsumexp(ell)
    smoothed = g @ ell
    k = int(np.argmax(smoothed))
    return ell, g[k].copy(), smoothed[k]


def sgd_step(x, xi, mu, s, g, exact, eps, lam, s_min, s_max):
    """One batch-size-1 ascent step (closed-form gradients, docs/algorithms.md §1.3)."""
    from scipy.special import softmax
    ell, w, obj = sgd_objective_weights(x, xi, mu, s, g, exact)
    pi = softmax(xi)
    diff = x - mu
    xi = xi + eps * lam[0] * (w - pi)
    mu_new = mu + eps * lam[1] * w[:, None] * s ** 2 * diff
    s_new = np.clip(s + eps * lam[2] * w[:, None] * (1 / s - s * diff ** 2), s_min, s_max)
    return xi, mu_new, s_new, obj


# ------------------------------------------------------------------ GMM expansion ------------
def expansion_phi(X, means, sigma):
    """Dense phi_i(x_n) (N, M) of M diagonal Gaussians with one shared bandwidth sigma (D,)."""
    z = (X[:, None, :] - means[None, :, :]) / sigma
    return np.exp(-0.5 * (z ** 2).sum(axis=2)) / np.prod(sigma * np.sqrt(2 * np.pi))


# ------------------------------------------------------- mixtures of factor analysers (MFA) ---
def mfa_covariances(loadings, noise_variances):
    """Dense (K, D, D) covariances W W^T + diag(psi)."""
    W = np.asarray(loadings, dtype=np.float64)
    return np.stack([W[k] @ W[k].T + np.diag(noise_variances[k]) for k in range(W.shape[0])])


def mfa_log_prob_resp(X, weights, means, loadings, noise_variances):
    """(log p (N,), responsibilities (N, K)) from the dense covariances (scipy)."""
    return log_prob_resp(X, weights, means, mfa_covariances(loadings, noise_variances), "full")


def mfa_posterior(X, mean, W, psi):
    """E[z|x] (N, q) and Cov[z|x] (q, q) of one factor analyser, from the dense formulas:
    beta = W^T Sigma^-1,  E[z|x] = beta (x - mu),  Cov[z|x] = I - beta W."""
    X = np.asarray(X, dtype=np.float64)
    Sigma = W @ W.T + np.diag(psi)
    beta = np.linalg.solve(Sigma, W).T
    return (X - mean) @ beta.T, np.eye(W.shape[1]) - beta @ W


def mfa_estep_stats(X, sw, weights, means, loadings, noise_variances):
    """(nk, s1, s2, ll, ws) in the layout of fastmix/kernels/cpu/lowrank.py, centred on the
    model's means, from dense formulas."""
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    K, _, q = np.shape(loadings)
    w = _weights_or_ones(sw, N)
    logp, resp = mfa_log_prob_resp(X, weights, means, loadings, noise_variances)
    wr = w[:, None] * resp
    s2 = np.zeros((K, 1 + q, D + q + 1))
    for k in range(K):
        Ez, Vz = mfa_posterior(X, means[k], loadings[k], noise_variances[k])
        Y = X - means[k]
        s2[k, 0, :D] = wr[:, k] @ Y ** 2
        s2[k, 1:, :D] = (wr[:, k, None] * Ez).T @ Y
        s2[k, 1:, D:D + q] = (wr[:, k, None] * Ez).T @ Ez + wr[:, k].sum() * Vz
        s2[k, 1:, D + q] = wr[:, k] @ Ez
    return wr.sum(axis=0), wr.T @ X, s2, float(w @ logp), float(w.sum())


def mfa_em_step(X, sw, weights, means, loadings, noise_variances, reg_covar, isotropic=False):
    """One EM iteration of the mixture of factor analysers (Ghahramani & Hinton 1996), written
    from the dense per-row posterior: returns (weights, means, loadings, noise_variances, mean
    log-likelihood before the step)."""
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    K, _, q = np.shape(loadings)
    w = _weights_or_ones(sw, N)
    logp, resp = mfa_log_prob_resp(X, weights, means, loadings, noise_variances)
    wr = w[:, None] * resp
    nk = wr.sum(axis=0) + 10 * EPS
    new_w, new_m = nk / nk.sum(), np.empty((K, D))
    new_W, new_psi = np.empty((K, D, q)), np.empty((K, D))
    for k in range(K):
        Ez, Vz = mfa_posterior(X, means[k], loadings[k], noise_variances[k])
        Zt = np.concatenate([Ez, np.ones((N, 1))], axis=1)         # E[z~], z~ = [z; 1]
        r = wr[:, k]
        Ezz = (r[:, None] * Zt).T @ Zt                              # sum r E[z~ z~^T]
        Ezz[:q, :q] += r.sum() * Vz
        XZ = (r[:, None] * X).T @ Zt                                # sum r x E[z~]^T
        Wt = np.linalg.solve(Ezz, XZ.T).T                           # [W, mu]
        new_W[k], new_m[k] = Wt[:, :q], Wt[:, q]
        new_psi[k] = (r @ X ** 2 - (Wt * XZ).sum(axis=1)) / nk[k]
    if isotropic:
        new_psi[:] = new_psi.mean(axis=1, keepdims=True)
    return new_w, new_m, new_W, new_psi + reg_covar, float(w @ logp / w.sum())


def random_mfa(rng, K, D, q, spread=3.0):
    """A random MFA: (weights, means, loadings (K, D, q), noise variances (K, D))."""
    weights = rng.dirichlet(np.full(K, 5.0))
    means = rng.normal(scale=spread, size=(K, D))
    loadings = rng.normal(scale=1.0, size=(K, D, q))
    psi = rng.uniform(0.1, 0.5, size=(K, D))
    return weights, means, loadings, psi


def sample_mfa(rng, weights, means, loadings, psi, N):
    """N rows from an MFA and their component labels."""
    K, D, q = np.shape(loadings)
    labels = rng.choice(K, size=N, p=weights)
    Z = rng.standard_normal((N, q))
    X = (means[labels] + np.einsum("nij,nj->ni", loadings[labels], Z)
         + rng.standard_normal((N, D)) * np.sqrt(psi[labels]))
    return X, labels


# ------------------------------------------------------ SGD: truncated toroidal smoothing ----
def toroidal_smoothing(n, sigma, truncate=1e-6):
    """g (n^2, n^2) by the np.roll construction: row k is a Gaussian bump centred on grid cell
    k of an n x n torus; unnormalised weights below ``truncate`` (the bump's peak is 1) set to
    0, then each row normalised (fastmix.sgd.SMOOTHING_TRUNCATE documents the rule)."""
    K = n * n
    if sigma <= 0:
        return np.eye(K)
    off = np.arange(n) - n // 2
    bump = np.exp(-(off[:, None] ** 2 + off[None, :] ** 2) / (2.0 * sigma ** 2))
    # for even n the offset -n/2 is also +n/2 away: the torus distance is n/2 either way
    g = np.empty((K, K))
    for k in range(K):
        r, c = divmod(k, n)
        g[k] = np.roll(np.roll(bump, r - n // 2, axis=0), c - n // 2, axis=1).ravel()
    g[g < truncate] = 0.0
    return g / g.sum(axis=1, keepdims=True)


# --------------------------------------------- SGD: local principal directions (isotropic r) --
def lpd_component_covariance(U, a, r):
    """Dense covariance U^T diag(1/a^2) U + (I - U^T U) / r^2 of one component (U (S, D))."""
    D = U.shape[1]
    return U.T @ np.diag(1.0 / a ** 2) @ U + (np.eye(D) - U.T @ U) / r ** 2


def lpd_ell(x, xi, mu, U, a, r):
    """l_j(x) (K,) of the local-principal-directions model, straight from the formula."""
    from scipy.special import logsumexp
    K, S, D = U.shape
    z = x - mu
    y = np.einsum("ksd,kd->ks", U, z)
    q = (z ** 2).sum(axis=1)
    resid = np.maximum(q - (y ** 2).sum(axis=1), 0.0)
    return (xi - logsumexp(xi) - 0.5 * D * np.log(2 * np.pi) + np.log(a).sum(axis=1)
            + (D - S) * np.log(r) - 0.5 * ((a * y) ** 2).sum(axis=1) - 0.5 * r ** 2 * resid)


def lpd_step(x, xi, mu, U, a, r, g, exact, eps, lam, s_min, s_max, orthonormalise=True):
    """One batch-size-1 ascent step of the LPD model (closed-form gradients as documented in
    fastmix/kernels/cpu/sgd.py), then numpy QR of each U_k^T with the signs fixed so that
    diag(R) > 0 (docs/algorithms.md §1.1; skipped with ``orthonormalise=False``); new arrays and
    the objective."""
    from scipy.special import logsumexp, softmax
    K, S, D = U.shape
    ell = lpd_ell(x, xi, mu, U, a, r)
    if exact:
        w, obj = np.exp(ell - logsumexp(ell)), logsumexp(ell)
    else:
        sm = g @ ell
        k = int(np.argmax(sm))
        w, obj = g[k].copy(), sm[k]
    z = x - mu
    y = np.einsum("ksd,kd->ks", U, z)
    c = (a ** 2 - (r ** 2)[:, None]) * y                      # (K, S)
    gmu = (r ** 2)[:, None] * z + np.einsum("ks,ksd->kd", c, U)
    gU = -c[:, :, None] * z[:, None, :]
    ga = 1.0 / a - a * y ** 2
    resid = np.maximum((z ** 2).sum(axis=1) - (y ** 2).sum(axis=1), 0.0)
    gr = (D - S) / r - r * resid
    xi = xi + eps * lam[0] * (w - softmax(xi))
    mu = mu + eps * lam[1] * w[:, None] * gmu
    U = U + eps * lam[2] * w[:, None, None] * gU
    a = np.clip(a + eps * lam[2] * w[:, None] * ga, s_min, s_max)
    r = np.clip(r + eps * lam[2] * w * gr, s_min, s_max)
    if orthonormalise:
        U = lpd_orthonormalise(U)
    return xi, mu, U, a, r, obj


def lpd_orthonormalise(U):
    """QR of each U_k^T (numpy), signs flipped so that diag(R) > 0; rows of U_k <- Q^T."""
    U = U.copy()
    for k in range(U.shape[0]):
        Qm, R = np.linalg.qr(U[k].T)
        U[k] = (Qm * np.sign(np.diag(R))).T
    return U


# ------------------------------------------------------------------------- BigLearn-EM ---
def biglearn_local_step(X, weights, means, covariances, A, T, alpha, eps, pi_floor=1e-5,
                        update="floor"):
    """One BigLearn-EM local step (Cong & Li's reference M-step), from its definition.

    X (N, D); weights (K,); means (K, D); covariances (K, D, D); A (D, D) orthogonal or None
    (identity); T: the coordinates of y = A x the step sees.  E-step on the rows y_T under the
    marginal mixture (pi, (A mu)_T, (A Sigma A^T)_TT); M-step pi~ = N_k / N, mu_T = S1 /
    (N max(pi~, pi_floor)), Sigma_TT = sum r (y_T - mu_T)(y_T - mu_T)^T / same denominator;
    only the T entries of A mu and the T x T block of A Sigma A^T are overwritten; eigenvalues
    are floored at ``eps`` in the rotated basis and again after mapping back (x = A^T y);
    pi = (pi~ + alpha) / sum(pi~ + alpha).  ``update="psd"``: the other coordinates Tc keep
    their regression on y_T, B = Sigma_TcT Sigma_TT^-1, and conditional covariance
    Sigma_Tc|T: mu_Tc += B (mu_T' - mu_T), Sigma_TcT = B Sigma_TT', Sigma_TcTc = Sigma_Tc|T
    + B Sigma_TT' B^T.  Returns (weights, means, covariances).
    """
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    K = len(weights)
    R = np.eye(D) if A is None else np.asarray(A, dtype=np.float64)
    T = np.asarray(T)
    Y = (X @ R.T)[:, T]
    mbar = np.array([R @ means[k] for k in range(K)])
    Sbar = np.array([R @ covariances[k] @ R.T for k in range(K)])
    _, resp = log_prob_resp(Y, weights, mbar[:, T], Sbar[:, T][:, :, T], "full")
    nk = resp.sum(axis=0)
    pi_t = nk / N
    denom = N * np.maximum(pi_t, pi_floor)

    def floor(S):
        lam, V = np.linalg.eigh(S)
        F = V @ np.diag(np.maximum(lam, eps)) @ V.T
        return 0.5 * (F + F.T)

    new_w = (pi_t + alpha) / np.sum(pi_t + alpha)
    new_m = np.empty((K, D))
    new_c = np.empty((K, D, D))
    for k in range(K):
        mu_T = resp[:, k] @ Y / denom[k]
        diff = Y - mu_T
        S_TT = (resp[:, k, None] * diff).T @ diff / denom[k]
        mb, Sb = mbar[k].copy(), Sbar[k].copy()
        S_TT = 0.5 * (S_TT + S_TT.T)
        Tc = np.setdiff1d(np.arange(D), T)
        if update == "psd" and len(Tc):
            B = Sb[np.ix_(Tc, T)] @ np.linalg.inv(Sb[np.ix_(T, T)])
            S_cond = Sb[np.ix_(Tc, Tc)] - B @ Sb[np.ix_(T, Tc)]
            mb[Tc] = mb[Tc] + B @ (mu_T - mb[T])
            Sb[np.ix_(Tc, T)] = B @ S_TT
            Sb[np.ix_(T, Tc)] = (B @ S_TT).T
            Sb[np.ix_(Tc, Tc)] = S_cond + B @ S_TT @ B.T
        mb[T] = mu_T
        Sb[np.ix_(T, T)] = S_TT
        Sb = floor(Sb)
        new_m[k] = R.T @ mb
        new_c[k] = floor(R.T @ Sb @ R)
    return new_w, new_m, new_c


# ------------------------------------------------------------ missing values (NaN entries) ---
def missing_row_parts(x, weights, means, covariances, kind):
    """For one row x (D,) with NaN entries: weighted log-densities of the observed coordinates
    (K,), and per component the completed row E[x | x_o, k] (K, D) and the conditional
    covariance of the missing coordinates embedded in a (D, D) zero matrix (K, D, D).  From the
    textbook formulas: the marginal N(x_o | mu_o, S_oo) and the Gaussian conditional
    mu_m + S_mo S_oo^-1 (x_o - mu_o), S_mm - S_mo S_oo^-1 S_om, with explicit inverses."""
    x = np.asarray(x, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    K, D = means.shape
    covs = component_covariances(covariances, kind, K, D)
    o = np.flatnonzero(~np.isnan(x))
    m = np.flatnonzero(np.isnan(x))
    with np.errstate(divide="ignore"):
        logw = np.log(np.asarray(weights, float))
    lw = np.empty(K)
    xhat = np.empty((K, D))
    cond = np.zeros((K, D, D))
    for k in range(K):
        S = covs[k]
        Soo_inv = np.linalg.inv(S[np.ix_(o, o)])
        lw[k] = logw[k] + multivariate_normal(mean=means[k, o], cov=S[np.ix_(o, o)]).logpdf(x[o])
        xhat[k] = x
        xhat[k, m] = means[k, m] + S[np.ix_(m, o)] @ Soo_inv @ (x[o] - means[k, o])
        cond[k][np.ix_(m, m)] = S[np.ix_(m, m)] - S[np.ix_(m, o)] @ Soo_inv @ S[np.ix_(o, m)]
    return lw, xhat, cond


def missing_estep_stats(X, sw, weights, means, covariances, kind):
    """Expected sufficient statistics (nk, s1, s2, ll, ws) of rows with NaN entries, row by row:
    responsibilities from the observed-coordinate marginals, s1 = sum w r E[x | x_o, k], s2 the
    expected second moments (the conditional covariance added), centred as ``estep_stats``'s
    (means; tied: g = weights @ means); ll = sum w log p(x_o)."""
    X = np.asarray(X, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    N, D = X.shape
    K = means.shape[0]
    w = _weights_or_ones(sw, N)
    g = np.asarray(weights, float) @ means
    nk = np.zeros(K)
    s1 = np.zeros((K, D))
    full = np.zeros((K, D, D))
    tied = np.zeros((D, D))
    ll = 0.0
    for n in range(N):
        lw, xhat, cond = missing_row_parts(X[n], weights, means, covariances, kind)
        lp = special.logsumexp(lw)
        r = special.softmax(lw)
        ll += w[n] * lp
        for k in range(K):
            wr = w[n] * r[k]
            nk[k] += wr
            s1[k] += wr * xhat[k]
            e = xhat[k] - means[k]
            full[k] += wr * (np.outer(e, e) + cond[k])
            t = xhat[k] - g
            tied += wr * (np.outer(t, t) + cond[k])
    if kind == "full":
        s2 = full
    elif kind == "tied":
        s2 = tied[None]
    elif kind == "diag":
        s2 = np.diagonal(full, axis1=1, axis2=2)[:, None, :].copy()
    else:
        s2 = np.trace(full, axis1=1, axis2=2)[:, None, None].copy()
    return nk, s1, s2, float(ll), float(w.sum())


def missing_log_prob_resp(X, weights, means, covariances, kind):
    """(log p(x_o) (N,), responsibilities (N, K)) of rows with NaN entries."""
    rows = [missing_row_parts(x, weights, means, covariances, kind)[0] for x in X]
    lw = np.array(rows)
    return special.logsumexp(lw, axis=1), special.softmax(lw, axis=1)


def missing_em(X, sw, weights, means, covariances, kind, reg_covar, n_iter):
    """``n_iter`` EM iterations on the observed-data likelihood: E-step by
    ``missing_row_parts``, M-step from the expected statistics (nk + 10 eps, as ``m_step``):
    means = sum w r xhat / nk, covariances = sum w r [(xhat - mu)(xhat - mu)^T + C] / nk
    (+ reg_covar; diagonal / its mean for diag / spherical; pooled for tied).
    Returns dict(weights, means, covariances, lower_bounds)."""
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    w = _weights_or_ones(sw, N)
    lbs = []
    for _ in range(n_iter):
        K = np.asarray(means).shape[0]
        parts = [missing_row_parts(x, weights, means, covariances, kind) for x in X]
        lw = np.array([p[0] for p in parts])
        lbs.append(float(w @ special.logsumexp(lw, axis=1) / w.sum()))
        wr = w[:, None] * special.softmax(lw, axis=1)
        nk = wr.sum(axis=0) + 10 * EPS
        xhat = np.array([p[1] for p in parts])        # (N, K, D)
        cond = np.array([p[2] for p in parts])        # (N, K, D, D)
        new_means = np.einsum("nk,nkd->kd", wr, xhat) / nk[:, None]
        covs = np.empty((K, D, D))
        for k in range(K):
            e = xhat[:, k] - new_means[k]
            covs[k] = (wr[:, k, None] * e).T @ e + np.einsum("n,nij->ij", wr[:, k], cond[:, k])
        if kind == "full":
            cov = covs / nk[:, None, None] + reg_covar * np.eye(D)
        elif kind == "tied":
            cov = covs.sum(axis=0) / nk.sum() + reg_covar * np.eye(D)
        else:
            var = np.diagonal(covs, axis1=1, axis2=2) / nk[:, None] + reg_covar
            cov = var if kind == "diag" else var.mean(axis=1)
        weights, means, covariances = nk / nk.sum(), new_means, cov
    return {"weights": weights, "means": means, "covariances": covariances,
            "lower_bounds": lbs}


def missing_online_em(batches, weights, means, covariances, kind, reg_covar, t0, kappa):
    """Stepwise online EM (Cappe & Moulines 2009) on batches with NaN entries, from raw
    (uncentred) per-row averaged expected moments: for batch t (t = 0, 1, ...) with rows X and
    weights sw (None: ones), s_t = sum w r [1, xhat, xhat xhat^T + C] / sum w, blended as
    S_t = (1 - rho_t) S_{t-1} + rho_t s_t, rho_0 = 1, rho_t = (t + t0)^-kappa, then the M-step
    from S_t (nk + 10 eps as ``m_step``).  Returns (weights, means, covariances)."""
    S = None
    for t, (X, sw) in enumerate(batches):
        X = np.asarray(X, dtype=np.float64)
        N, D = X.shape
        K = np.asarray(means).shape[0]
        w = _weights_or_ones(sw, N)
        s0, s1, s2 = np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D))
        for n in range(N):
            lw, xhat, cond = missing_row_parts(X[n], weights, means, covariances, kind)
            r = special.softmax(lw)
            for k in range(K):
                wr = w[n] * r[k]
                s0[k] += wr
                s1[k] += wr * xhat[k]
                s2[k] += wr * (np.outer(xhat[k], xhat[k]) + cond[k])
        batch = [s0 / w.sum(), s1 / w.sum(), s2 / w.sum()]
        rho = 1.0 if t == 0 else (t + t0) ** (-kappa)
        S = batch if S is None else [(1 - rho) * a + rho * b for a, b in zip(S, batch)]
        nk = S[0] + 10 * EPS
        weights = nk / nk.sum()
        means = S[1] / nk[:, None]
        covs = S[2] / nk[:, None, None] - np.einsum("ki,kj->kij", means, means)
        if kind == "full":
            covariances = covs + reg_covar * np.eye(D)
        elif kind == "tied":
            covariances = np.einsum("k,kij->ij", nk, covs) / nk.sum() + reg_covar * np.eye(D)
        else:
            var = np.diagonal(covs, axis1=1, axis2=2) + reg_covar
            covariances = var if kind == "diag" else var.mean(axis=1)
    return weights, means, covariances


def mfa_missing_row(x, weights, means, loadings, noise_variances):
    """One row x (D,) with NaN entries under a mixture of factor analysers, from the dense
    covariances and explicit inverses: weighted log-densities of the observed coordinates (K,)
    and per component E[x - mu | x_o] (K, D), E[(x - mu)_d^2 | x_o] (K, D),
    E[z (x - mu)^T | x_o] (K, q, D), E[z | x_o] (K, q), E[z z^T | x_o] (K, q, q).  The factors
    z and x are jointly Gaussian with Cov(z, x) = W^T, so E[z | x_o] = W_o^T S_oo^-1 y,
    Cov(z | x_o) = I - W_o^T S_oo^-1 W_o, Cov(z, x_m | x_o) = W_m^T - W_o^T S_oo^-1 S_om."""
    x = np.asarray(x, dtype=np.float64)
    W = np.asarray(loadings, dtype=np.float64)
    K, D, q = W.shape
    covs = mfa_covariances(W, noise_variances)
    lw, xhat, cond = missing_row_parts(x, weights, means, covs, "full")
    o = np.flatnonzero(~np.isnan(x))
    m = np.flatnonzero(np.isnan(x))
    e1 = xhat - means
    e2 = e1 ** 2 + np.diagonal(cond, axis1=1, axis2=2)
    ezx = np.empty((K, q, D))
    ez = np.empty((K, q))
    ezz = np.empty((K, q, q))
    for k in range(K):
        S = covs[k]
        Sinv = np.linalg.inv(S[np.ix_(o, o)])
        Wo, Wm = W[k][o], W[k][m]
        ez[k] = Wo.T @ Sinv @ (x[o] - means[k, o])
        ezz[k] = np.eye(q) - Wo.T @ Sinv @ Wo + np.outer(ez[k], ez[k])
        ezx[k] = np.outer(ez[k], e1[k])
        ezx[k][:, m] += Wm.T - Wo.T @ Sinv @ S[np.ix_(o, m)]
    return lw, e1, e2, ezx, ez, ezz


def mfa_missing_estep_stats(X, sw, weights, means, loadings, noise_variances):
    """Expected statistics (nk, s1, s2, ll, ws) of rows with NaN entries under an MFA, row by
    row (``mfa_missing_row``), in the layout of fastmix/kernels/cpu/lowrank.py centred on the
    model's means."""
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    K, _, q = np.shape(loadings)
    w = _weights_or_ones(sw, N)
    nk, s1, s2, ll = np.zeros(K), np.zeros((K, D)), np.zeros((K, 1 + q, D + q + 1)), 0.0
    for n in range(N):
        lw, e1, e2, ezx, ez, ezz = mfa_missing_row(X[n], weights, means, loadings,
                                                   noise_variances)
        ll += w[n] * special.logsumexp(lw)
        wr = w[n] * special.softmax(lw)
        nk += wr
        s1 += wr[:, None] * (means + e1)
        s2[:, 0, :D] += wr[:, None] * e2
        s2[:, 1:, :D] += wr[:, None, None] * ezx
        s2[:, 1:, D:D + q] += wr[:, None, None] * ezz
        s2[:, 1:, D + q] += wr[:, None] * ez
    return nk, s1, s2, float(ll), float(w.sum())


def mfa_missing_em(X, sw, weights, means, loadings, noise_variances, reg_covar, n_iter,
                   isotropic=False):
    """``n_iter`` EM iterations of the mixture of factor analysers on the observed-data
    likelihood: the M-step of ``mfa_em_step`` (Ghahramani & Hinton 1996) with the expected
    statistics of ``mfa_missing_row`` (x_m, z both latent): [W, mu] = (sum r E[x z~^T])
    (sum r E[z~ z~^T])^-1, psi = diag(sum r E[x x^T] - [W, mu] sum r E[z~ x^T]) / nk
    (``isotropic``: its mean over the features).
    Returns (weights, means, loadings, noise variances, lower bounds)."""
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    K, _, q = np.shape(loadings)
    w = _weights_or_ones(sw, N)
    lbs = []
    for _ in range(n_iter):
        rows = [mfa_missing_row(x, weights, means, loadings, noise_variances) for x in X]
        lw = np.array([r[0] for r in rows])
        lbs.append(float(w @ special.logsumexp(lw, axis=1) / w.sum()))
        wr = w[:, None] * special.softmax(lw, axis=1)
        nk = wr.sum(axis=0) + 10 * EPS
        new_m, new_W, new_psi = np.empty((K, D)), np.empty((K, D, q)), np.empty((K, D))
        for k in range(K):
            Ezz = np.zeros((q + 1, q + 1))
            XZ = np.zeros((D, q + 1))
            Exx = np.zeros(D)
            mu = means[k]
            for n, (_, e1, e2, ezx, ez, ezz) in enumerate(rows):
                r = wr[n, k]
                Ezz[:q, :q] += r * ezz[k]
                Ezz[:q, q] += r * ez[k]
                Ezz[q, :q] += r * ez[k]
                Ezz[q, q] += r
                XZ[:, :q] += r * (ezx[k].T + np.outer(mu, ez[k]))
                XZ[:, q] += r * (mu + e1[k])
                Exx += r * (e2[k] + 2 * mu * e1[k] + mu ** 2)
            Wt = np.linalg.solve(Ezz, XZ.T).T
            new_W[k], new_m[k] = Wt[:, :q], Wt[:, q]
            new_psi[k] = (Exx - (Wt * XZ).sum(axis=1)) / nk[k]
        if isotropic:
            new_psi[:] = new_psi.mean(axis=1, keepdims=True)
        weights, means, loadings = nk / nk.sum(), new_m, new_W
        noise_variances = new_psi + reg_covar
    return weights, means, loadings, noise_variances, lbs


def gmr_predict(X, weights, means, covariances, kind, n_inputs):
    """Gaussian mixture regression from the joint model over [x, y] (x: the first n_inputs
    coordinates): E[y | x] (N, n_out) and the mixture's conditional std (N, n_out), by the
    textbook conditional of each component and the law of total variance."""
    X = np.asarray(X, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    K, D = means.shape
    covs = component_covariances(covariances, kind, K, D)
    i, j = np.arange(n_inputs), np.arange(n_inputs, D)
    mean = np.empty((X.shape[0], j.size))
    std = np.empty((X.shape[0], j.size))
    for n, x in enumerate(X):
        lw = np.array([np.log(weights[k]) + multivariate_normal(
            mean=means[k, i], cov=covs[k][np.ix_(i, i)]).logpdf(x) for k in range(K)])
        r = special.softmax(lw)
        mk = np.array([means[k, j] + covs[k][np.ix_(j, i)] @ np.linalg.solve(
            covs[k][np.ix_(i, i)], x - means[k, i]) for k in range(K)])
        vk = np.array([np.diag(covs[k][np.ix_(j, j)] - covs[k][np.ix_(j, i)] @ np.linalg.solve(
            covs[k][np.ix_(i, i)], covs[k][np.ix_(i, j)])) for k in range(K)])
        mean[n] = r @ mk
        std[n] = np.sqrt(r @ (vk + mk ** 2) - mean[n] ** 2)
    return mean, std


# --------------------------------------------------------------------- model selection ---
def split_scores(X, sw, weights, means, covariances, kind, criterion, kde_rows):
    """The split criteria of ``fastmix.selection.split_scores`` from their definitions, with
    SciPy's Gaussian densities: r = responsibilities x sample weights, n_k = sum r_k, a_k =
    r_k / n_k; "kl": sum_i a_i log(f_i / N(x_i | mu_k, Sigma_k)) with f_i the leave-one-out
    kernel density sum_{j != i} a_j N(x_i | x_j, h^2 Sigma_k) / (1 - a_i), h^2 =
    (1 / sum a^2)^(-2 / (D + 4)), on the kde_rows rows of largest a (ties: first rows);
    "kl_empirical": sum_i a_i log(a_i / N(x_i | mu_k, Sigma_k)); "kurtosis": Mardia's
    |sum_i a_i d_i^4 - D (D + 2)| / sqrt(8 D (D + 2) / n_k), d_i the Mahalanobis distance.
    -inf where n_k <= D + 1."""
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    K = means.shape[0]
    _, resp = log_prob_resp(X, weights, means, covariances, kind)
    R = resp * _weights_or_ones(sw, N)[:, None]
    covs = component_covariances(covariances, kind, K, D)
    out = np.full(K, -np.inf)
    for k in range(K):
        nk = R[:, k].sum()
        if not nk > D + 1:
            continue
        a = R[:, k] / nk
        logpk = multivariate_normal(mean=means[k], cov=covs[k]).logpdf(X)
        if criterion == "kl_empirical":
            pos = a > 0
            out[k] = np.sum(a[pos] * (np.log(a[pos]) - logpk[pos]))
        elif criterion == "kurtosis":
            diff = X - means[k]
            d2 = np.einsum("ij,jk,ik->i", diff, np.linalg.inv(covs[k]), diff)
            out[k] = abs(np.sum(a * d2 ** 2) - D * (D + 2)) / np.sqrt(8.0 * D * (D + 2) / nk)
        else:
            rows = np.flatnonzero(a > 0)
            rows = np.sort(rows[np.argsort(-a[rows], kind="stable")[:kde_rows]])
            b = a[rows] / a[rows].sum()
            h2 = (1.0 / np.sum(b ** 2)) ** (-2.0 / (D + 4))
            total = 0.0
            for t, i in enumerate(rows):
                others = np.delete(np.arange(rows.size), t)
                lk = multivariate_normal(mean=X[i], cov=h2 * covs[k]).logpdf(X[rows[others]])
                f = special.logsumexp(np.atleast_1d(lk), b=b[others]) - np.log1p(-b[t])
                total += b[t] * (f - logpk[i])
            out[k] = total
    return out


def stack_weights(log_p, w=None):
    """Mixing weights pi (J,) on the simplex maximising sum_n w_n log sum_j pi_j p_j(x_n)
    (stacked density estimates), by SciPy's SLSQP with the simplex as bounds and an equality
    constraint; log_p (n, J) the members' log-densities.  Returns (pi, the maximum)."""
    from scipy import optimize
    n, J = log_p.shape
    w = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    P = np.exp(log_p)

    def neg(pi):
        return -np.sum(w * np.log(P @ pi)) / w.sum()

    def grad(pi):
        return -(w / (P @ pi)) @ P / w.sum()

    res = optimize.minimize(neg, np.full(J, 1.0 / J), jac=grad, method="SLSQP",
                            bounds=[(0.0, 1.0)] * J,
                            constraints=[{"type": "eq", "fun": lambda pi: pi.sum() - 1.0}],
                            options={"ftol": 1e-14, "maxiter": 1000})
    return res.x, -res.fun
