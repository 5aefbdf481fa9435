"""Variational Bayes for Gaussian mixtures: the M-step from ``Stats``, the lower bound, the
batch loop and the stochastic (natural-gradient) update.  No numba here.

The model is scikit-learn's ``BayesianGaussianMixture`` (Bishop 2006, ch. 10; Blei & Jordan
2006 for the truncated Dirichlet process): weights with a Dirichlet-distribution or a
stick-breaking (Dirichlet-process) prior, means and precisions with a Gaussian-Wishart prior
(``Prior``).  The variational posterior (``VBParams``) is, per component, a Beta pair (DP) or
a Dirichlet concentration, a mean precision ``beta_k``, a mean ``m_k``, degrees of freedom
``nu_k`` and a normalised covariance ``(nu_k W_k)^-1`` (scikit-learn's ``covariances_``).

**E-step = the EM kernel.**  The variational log-responsibility of row ``x`` is

    log rho_k = E[log pi_k] + 1/2 E[log det Lambda_k] - D/2 log 2 pi - D/(2 beta_k)
                - 1/2 (x - m_k)^T nu_k W_k (x - m_k),

a Gaussian log-density with precision ``nu_k W_k`` (whose Cholesky factor is scikit-learn's
``precisions_cholesky_``), centre ``m_k`` and a per-component constant.  ``VBParams.gmm()``
returns a ``GMMParams`` whose ``kernel_params`` carry exactly that constant in ``lconst``, so
``em.e_step_stats`` (CPU, out-of-core, Dask) and ``gpu.e_step_stats`` give the statistics
``nk, sum r x``, centred second moments and ``sum_n log sum_k rho_nk`` unchanged.

**Lower bound** (scikit-learn's, constants dropped, valid right after the M-step): it needs
``sum_nk r_nk log r_nk = sum_nk r_nk log rho_nk - sum_n lse_n``; the first sum is linear in the
statistics, ``sum_k (nk_k lconst_k - 1/2 tr(P_k S_k))`` with ``P_k`` the precision the E-step
used and ``S_k`` the second moments about the E-step's means (its centres), so no second pass.

**SVI** (Hoffman, Blei, Wang & Paisley 2013): the natural parameters of the conjugate
posterior are the prior's plus the expected sufficient statistics, so the natural-gradient
step ``lambda <- (1 - rho) lambda + rho (prior + N/|B| s_B)`` is ``Stats.blend`` of running
statistics scaled to the data size, followed by this M-step (``svi_update``).

**SVI's lower bound.**  The global parameters after a step are the M-step of the running
statistics, so the batch bound above applies to them with the running statistics in place of
an E-step's: it needs only ``sum w r log r``, which ``SVIState`` carries as a running scalar
blended exactly like the statistics (each batch's ``sum_r_log_rho - sum lse``, scaled to the
data size).  The result is the variational lower bound of a data set of ``total_samples`` rows
whose expected statistics are the running ones: with one batch holding all the rows and
rho = 1 it is batch VB's bound; on a stationary stream it approaches the batch optimum's as
rho_t -> 0.  It is not the exact bound of the current parameters on the whole data (that
needs a pass with the parameters fixed), since each batch's responsibilities were computed
under the parameters of its own step.
"""
import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.special import betaln, digamma, gammaln

from . import kernels
from ._params import EPS, Covariance, GMMParams, _check_spd, stats_from_kernel
from ._stats import Stats
from .em import EMResult, e_step_stats
from .io import as_stream
from .online import OnlineState, step_size

PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
VB_KINDS = ("full", "tied", "diag", "spherical")


# ---------------------------------------------------------------------------- prior -------
@dataclass(frozen=True)
class Prior:
    """Hyper-parameters of the prior (scikit-learn's ``*_prior_`` attributes), float64.

    ``covariance`` has the kind's layout: full/tied (D, D), diag (D,), spherical scalar."""
    kind: str
    prior_type: str
    weight_concentration: float
    mean_precision: float
    mean: np.ndarray
    degrees_of_freedom: float
    covariance: object
    reg_covar: float


def _positive(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not math.isfinite(v) or not v > 0:
        raise ValueError(f"{name} must be a finite number > 0 (or None), got {v!r}")
    return float(v)


def make_prior(kind, prior_type, K, D, moments, *, weight_concentration_prior=None,
               mean_precision_prior=None, mean_prior=None, degrees_of_freedom_prior=None,
               covariance_prior=None, reg_covar=1e-6):
    """Validated ``Prior``; ``None`` entries get scikit-learn's defaults from the data moments
    ``moments = (mean (D,), covariance (D, D) or variances (D,))`` (unbiased, ``ddof=1``)."""
    if prior_type not in PRIOR_TYPES:
        raise ValueError(f"weight_concentration_prior_type must be one of {PRIOR_TYPES}, got "
                         f"{prior_type!r}")
    alpha = 1.0 / K if weight_concentration_prior is None else _positive(
        weight_concentration_prior, "weight_concentration_prior")
    beta = 1.0 if mean_precision_prior is None else _positive(mean_precision_prior,
                                                              "mean_precision_prior")
    mean, cov = moments
    if mean_prior is None:
        m0 = np.asarray(mean, dtype=np.float64)
    else:
        m0 = np.array(mean_prior, dtype=np.float64)
        if m0.shape != (D,):
            raise ValueError(f"The parameter 'means' should have the shape of {(D,)}, but got "
                             f"{m0.shape} (mean_prior needs one value per feature)")
        if not np.all(np.isfinite(m0)):
            raise ValueError("mean_prior contains NaN or infinity")
    if degrees_of_freedom_prior is None:
        nu = float(D)
    else:
        v = degrees_of_freedom_prior
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not math.isfinite(v):
            raise ValueError(f"degrees_of_freedom_prior must be a finite number, got {v!r}")
        if not v > D - 1.0:
            raise ValueError(f"The parameter 'degrees_of_freedom_prior' should be greater than "
                             f"{D - 1}, but got {v:.3f}.")
        nu = float(v)
    if covariance_prior is None:
        cov = np.asarray(cov, dtype=np.float64)
        diag = np.diagonal(cov) if cov.ndim == 2 else cov
        c0 = {"full": cov, "tied": cov, "diag": np.array(diag),
              "spherical": float(np.mean(diag))}[kind]
    elif kind in ("full", "tied"):
        c0 = np.array(covariance_prior, dtype=np.float64)
        if c0.ndim < 2:
            c0 = np.atleast_2d(c0)
        if c0.shape != (D, D):
            raise ValueError(f"The parameter '{kind} covariance_prior' should have the shape of "
                             f"{(D, D)}, but got {c0.shape}")
        try:
            _check_spd(c0, "covariance_prior")
        except ValueError as e:
            raise ValueError(f"'{kind} covariance_prior' should be symmetric, "
                             f"positive-definite: {e}") from None
    elif kind == "diag":
        c0 = np.array(covariance_prior, dtype=np.float64)
        if c0.shape != (D,):
            raise ValueError(f"The parameter 'diag covariance_prior' should have the shape of "
                             f"{(D,)}, but got {c0.shape}")
        if not np.all(np.isfinite(c0)) or np.any(c0 <= 0):
            raise ValueError("'diag covariance_prior' should be positive (and finite)")
    else:
        v = covariance_prior
        if isinstance(v, np.ndarray) and v.size == 1:
            v = v.item()
        c0 = _positive(v, "covariance_prior")
    return Prior(kind, prior_type, alpha, beta, m0, nu, c0, float(reg_covar))


def data_moments(data, sample_weight, kind, centre, chunk_rows):
    """(mean (D,), covariance (D, D) for full/tied or variances (D,) otherwise) of the
    (weighted) rows, unbiased (divided by sum w - 1, numpy's ``cov`` with frequency weights;
    by sum w when that is <= 1).  One kernel pass with a single component (responsibility 1)
    centred on ``centre``."""
    D = centre.shape[0]
    one = "full" if kind in ("full", "tied") else "diag"
    cls = Covariance.registry[one]
    cov = cls.from_covariances(np.eye(D)[None] if one == "full" else np.ones((1, D)))
    st = e_step_stats(data, sample_weight, GMMParams(np.ones(1), centre[None, :], cov),
                      chunk_rows)
    W = st.ws
    mean = st.s1[0] / W
    d = mean - centre
    a = st.s1[0] - W * centre
    denom = W - 1.0 if W > 1.0 else W
    if one == "full":
        S = st.s2[0] - np.outer(a, d) - np.outer(d, a) + W * np.outer(d, d)
        S = 0.5 * (S + S.T)
    else:
        S = st.s2[0, 0] - 2.0 * a * d + W * d * d
    return mean, S / denom, W


# ---------------------------------------------------------------------------- posterior ---
class _VBGaussian(GMMParams):
    """GMMParams whose kernel constant is the variational one (module docstring)."""

    def __init__(self, weights, means, cov, log_weights):
        super().__init__(weights, means, cov)
        object.__setattr__(self, "log_weights", log_weights)

    def kernel_params(self, dtype):
        K, D = self.means.shape
        kp = super().kernel_params(dtype)
        lconst = (self.log_weights + self.cov.log_det_chol(K, D)
                  - 0.5 * D * math.log(2.0 * math.pi))
        return kp._replace(lconst=np.ascontiguousarray(lconst, dtype=np.float64))


@dataclass(frozen=True)
class VBParams:
    """The variational posterior (scikit-learn's fitted attributes), float64.

    ``weight_concentration``: (a (K,), b (K,)) Beta parameters for the DP prior, else the
    Dirichlet concentration (K,).  ``degrees_of_freedom``: (K,), or a float for tied.
    ``cov``: a ``Covariance`` holding the normalised covariances ``(nu_k W_k)^-1`` and the
    Cholesky factors of ``nu_k W_k``."""
    prior_type: str
    weight_concentration: object
    mean_precision: np.ndarray
    means: np.ndarray
    degrees_of_freedom: object
    cov: Covariance

    @property
    def kind(self):
        return self.cov.kind

    @property
    def n_components(self):
        return self.means.shape[0]

    def expected_log_weights(self):
        """E[log pi_k] (K,)."""
        if self.prior_type == "dirichlet_process":
            a, b = self.weight_concentration
            ds = digamma(a + b)
            return digamma(a) - ds + np.hstack((0.0, np.cumsum(digamma(b) - ds)[:-1]))
        alpha = self.weight_concentration
        return digamma(alpha) - digamma(np.sum(alpha))

    def weights(self):
        """Posterior-mean weights (scikit-learn's ``weights_``)."""
        if self.prior_type == "dirichlet_process":
            a, b = self.weight_concentration
            s = a + b
            w = a / s * np.hstack((1.0, np.cumprod(b / s)[:-1]))
            return w / np.sum(w)
        alpha = self.weight_concentration
        return alpha / np.sum(alpha)

    def _nu(self):
        return np.broadcast_to(np.asarray(self.degrees_of_freedom, dtype=np.float64),
                               (self.n_components,))

    def log_weights(self):
        """The kernel's per-component log weight: E[log pi_k] + 1/2 E[log det Lambda_k]
        - D/(2 beta_k) minus the log-det term 1/2 log det(nu_k W_k) the kernel adds itself."""
        D = self.means.shape[1]
        nu = self._nu()
        log_lambda = D * math.log(2.0) + np.sum(
            digamma(0.5 * (nu - np.arange(D)[:, None])), axis=0)
        return (self.expected_log_weights() - 0.5 * D * np.log(nu)
                + 0.5 * (log_lambda - D / self.mean_precision))

    def gmm(self):
        """GMMParams for the E-step and inference kernels (module docstring)."""
        return _VBGaussian(self.weights(), self.means, self.cov, self.log_weights())

    def point(self):
        """The plain mixture of the posterior means (weights_, means_, covariances_)."""
        return GMMParams(self.weights(), self.means, self.cov)


def moments(stats, reg_covar):
    """scikit-learn's (nk + 10 eps, x_k, S_k + reg_covar) from centred statistics."""
    cls = Covariance.registry[stats.kind]
    nk = stats.nk + 10.0 * EPS
    with np.errstate(over="ignore", invalid="ignore"):
        xk = stats.s1 / nk[:, None]
        sk = cls.scatter(stats, xk, nk, reg_covar)
    if not (np.all(np.isfinite(xk)) and np.all(np.isfinite(sk))):
        raise FloatingPointError(
            "variational statistics overflowed (non-finite sums of squares): the data values are "
            "too large for float64 arithmetic. Rescale the data (e.g. standardise the columns).")
    return nk, xk, sk


def m_step(nk, xk, sk, prior):
    """The variational M-step (Bishop 2006, eqs. 10.58-10.63, with scikit-learn's normalised
    covariances) from (nk (K,), x_k (K, D), S_k in the kind's layout)."""
    K, D = xk.shape
    a0 = prior.weight_concentration
    if prior.prior_type == "dirichlet_process":
        wc = (1.0 + nk, a0 + np.hstack((np.cumsum(nk[::-1])[-2::-1], 0.0)))
    else:
        wc = a0 + nk
    beta = prior.mean_precision + nk
    means = (prior.mean_precision * prior.mean + nk[:, None] * xk) / beta[:, None]
    diff = xk - prior.mean
    b0 = prior.mean_precision
    kind = prior.kind
    if kind == "full":
        nu = prior.degrees_of_freedom + nk
        covs = (prior.covariance + nk[:, None, None] * sk
                + (nk * b0 / beta)[:, None, None] * diff[:, :, None] * diff[:, None, :])
        covs = covs / nu[:, None, None]
    elif kind == "tied":
        nu = prior.degrees_of_freedom + nk.sum() / K
        covs = (prior.covariance + sk * nk.sum() / K
                + b0 / K * np.dot((nk / beta) * diff.T, diff)) / nu
    elif kind == "diag":
        nu = prior.degrees_of_freedom + nk
        covs = (prior.covariance + nk[:, None] * (sk + (b0 / beta)[:, None] * diff ** 2))
        covs = covs / nu[:, None]
    else:
        nu = prior.degrees_of_freedom + nk
        covs = (prior.covariance + nk * (sk + b0 / beta * np.mean(diff ** 2, axis=1))) / nu
    cov = Covariance.registry[kind].from_covariances(covs, prior.reg_covar)
    return VBParams(prior.prior_type, wc, beta, means, nu, cov)


def _log_wishart_norm(nu, log_det_chol, D):
    return -(nu * log_det_chol + nu * D * 0.5 * math.log(2.0)
             + np.sum(gammaln(0.5 * (nu - np.arange(D)[:, None])), axis=0))


def sum_r_log_rho(stats, gmm):
    """sum_nk w_n r_nk log rho_nk from the statistics of an E-step under ``gmm`` (its
    ``kernel_params``' constant and precisions; the statistics are centred on its means)."""
    K, D = gmm.means.shape
    lconst = gmm.kernel_params(np.float64).lconst
    pc = gmm.cov.kernel_pc(K, D)
    kind = stats.kind
    if kind == "full":
        P = np.einsum("kij,klj->kil", pc, pc)
        quad = np.einsum("kij,kij->", P, stats.s2)
    elif kind == "tied":
        P = pc[0] @ pc[0].T
        a = stats.s1 - stats.nk[:, None] * stats.gcentre
        delta = gmm.means - stats.gcentre
        S = (stats.s2[0] - a.T @ delta - delta.T @ a + (stats.nk[:, None] * delta).T @ delta)
        quad = float(np.sum(P * S))
    elif kind == "diag":
        quad = float(np.sum(pc[:, 0, :] ** 2 * stats.s2[:, 0, :]))
    else:
        quad = float(np.sum(pc[:, 0, 0] ** 2 * stats.s2[:, 0, 0]))
    return float(stats.nk @ lconst) - 0.5 * quad


def neg_entropy(stats, gmm):
    """sum_nk w_n r_nk log r_nk of an E-step under ``gmm`` from its statistics."""
    return sum_r_log_rho(stats, gmm) - stats.ll


def lower_bound(stats, old, new):
    """scikit-learn's variational lower bound (constants dropped) after the M-step that took
    ``old`` (the E-step's VBParams) to ``new`` with the E-step's statistics ``stats``."""
    return bound_from_entropy(neg_entropy(stats, old.gmm()), new)


def bound_from_entropy(neg_entropy, new):
    """scikit-learn's bound of ``new``, the M-step of statistics whose responsibilities have
    ``sum w r log r = neg_entropy``."""
    D = new.means.shape[1]
    K = new.n_components
    nu = new._nu()
    ldc = new.cov.log_det_chol(K, D) - 0.5 * D * np.log(nu)
    if new.kind == "tied":
        log_wishart = K * float(_log_wishart_norm(nu[:1], ldc[:1], D)[0])
    else:
        log_wishart = float(np.sum(_log_wishart_norm(nu, ldc, D)))
    if new.prior_type == "dirichlet_process":
        log_norm_weight = -float(np.sum(betaln(*new.weight_concentration)))
    else:
        alpha = new.weight_concentration
        log_norm_weight = float(gammaln(np.sum(alpha)) - np.sum(gammaln(alpha)))
    return (-neg_entropy - log_wishart - log_norm_weight
            - 0.5 * D * float(np.sum(np.log(new.mean_precision))))


# ---------------------------------------------------------------------------- drivers -----
def vb_step(estep, params, prior):
    """One E-step (``estep(GMMParams) -> Stats``) and M-step: (new VBParams, lower bound)."""
    stats = estep(params.gmm())
    new = m_step(*moments(stats, prior.reg_covar), prior)
    return new, lower_bound(stats, params, new), stats


def vb_loop(estep, params, prior, *, tol, max_iter, lower_bound=-np.inf, callback=None):
    """Batch variational Bayes from ``params`` (scikit-learn's iteration: E-step, M-step,
    bound; stops when the bound changes by less than ``tol``).  ``callback(n_iter, bound,
    change, seconds, params)`` after each iteration.  Returns an ``em.EMResult`` whose
    ``params`` are VBParams."""
    result = EMResult(params, lower_bound, 0, False)
    for n_iter in range(1, max_iter + 1):
        t0 = time.perf_counter()
        prev = result.lower_bound
        result.params, result.lower_bound, _ = vb_step(estep, result.params, prior)
        result.n_iter = n_iter
        result.lower_bounds.append(result.lower_bound)
        dt = time.perf_counter() - t0
        result.iter_times.append(dt)
        change = result.lower_bound - prev
        if callback is not None:
            callback(n_iter, result.lower_bound, change, dt, result.params)
        if abs(change) < tol:
            result.converged = True
            break
    return result


def run_vb(data, sample_weight, params, prior, *, tol, max_iter, chunk_rows, lower_bound=-np.inf,
           callback=None, on_block=None):
    """``vb_loop`` with the CPU (or Dask) E-step over a Stream (one pass per iteration)."""
    data = as_stream(data, sample_weight, chunk_rows)
    return vb_loop(lambda g: e_step_stats(data, None, g, on_block=on_block), params, prior,
                   tol=tol, max_iter=max_iter, lower_bound=lower_bound, callback=callback)


@dataclass
class SVIResult:
    params: VBParams
    state: OnlineState
    lower_bound: float = -np.inf
    lower_bounds: list = field(default_factory=list)


@dataclass
class SVIState(OnlineState):
    """SVI's running statistics (``OnlineState``) and their ``sum w r log r``, blended alike
    (None: not known, e.g. a model saved without it; the next batch's value is taken)."""
    neg_entropy: float | None = None


def svi_update(X, sw, params, state, prior, *, total_samples, t0, kappa, chunk_rows,
               estep=None):
    """One SVI step on the rows ``X`` (n, D): the batch's statistics scaled by
    ``total_samples / n`` blended into the running statistics with step
    rho_t = (t + t0)^-kappa (the first batch sets them, rho = 1), then the M-step.  Returns
    (params, state (``SVIState``), the lower bound of the running statistics after the step
    (module docstring), the batch's total weight)."""
    gmm = params.gmm()
    batch = (e_step_stats(X, sw, gmm, chunk_rows) if estep is None else estep(X, sw, gmm))
    if not batch.ws > 0:
        return params, state, -np.inf, 0.0
    c = float(total_samples) / X.shape[0]
    scaled = batch.scaled(c)
    h = neg_entropy(batch, gmm) * c
    if state is None:
        state = SVIState(scaled, 0, h)
    else:
        t = state.t + 1
        rho = step_size(t, t0, kappa)
        old = getattr(state, "neg_entropy", None)
        state = SVIState(state.stats.blend(scaled, rho), t,
                         h if old is None else (1.0 - rho) * old + rho * h)
    new = m_step(*moments(state.stats, prior.reg_covar), prior)
    return new, state, bound_from_entropy(state.neg_entropy, new), batch.ws


def run_svi(data, sample_weight, params, state, prior, *, total_samples, tol, max_passes, t0,
            kappa, chunk_rows, batch_rows, lower_bound=-np.inf, callback=None, on_block=None,
            estep=None):
    """Passes of SVI over ``data`` in batches of ``batch_rows`` rows.  The value recorded per
    pass is the lower bound of the running statistics after its last step (``svi_update``; a
    total over ``total_samples`` rows); passes stop when it changes by less than ``tol`` per
    row (the change divided by ``total_samples``, passed to ``callback``) or after
    ``max_passes``.  Returns an ``em.EMResult`` with ``state``."""
    stream = as_stream(data, sample_weight, chunk_rows).rebatched(batch_rows)
    result = EMResult(params, lower_bound, 0, False, state=state)
    for p in range(1, max_passes + 1):
        t_start = time.perf_counter()
        bound = -np.inf
        for _, X, w in stream.blocks():
            result.params, result.state, b, bw = svi_update(
                X, w, result.params, result.state, prior, total_samples=total_samples, t0=t0,
                kappa=kappa, chunk_rows=stream.chunk_rows, estep=estep)
            if bw > 0:
                bound = b
            if on_block is not None:
                on_block(X.shape[0])
        prev = result.lower_bound
        result.lower_bound = bound
        result.n_iter = p
        result.lower_bounds.append(result.lower_bound)
        dt = time.perf_counter() - t_start
        result.iter_times.append(dt)
        change = (result.lower_bound - prev) / float(total_samples)
        if callback is not None:
            callback(p, result.lower_bound, change, dt, result.params, result.state)
        if abs(change) < tol:
            result.converged = True
            break
    return result


def initial_from_params(gmm, total_weight, prior):
    """VBParams from an initial mixture (``fastmix.init``'s: the M-step of responsibilities,
    i.e. scikit-learn's (nk, x_k, S_k) with nk = weights * (sum w + 10 K eps))."""
    K = gmm.n_components
    nk = gmm.weights * (total_weight + 10.0 * EPS * K)
    return m_step(nk, gmm.means, np.asarray(gmm.cov.covariances, dtype=np.float64), prior)


def initial_from_resp(X, sw, R, kind, prior, chunk_rows):
    """VBParams from given responsibilities R (N, K) of the in-memory rows X (scikit-learn's
    ``_initialize(X, resp)``)."""
    R = np.asarray(R, dtype=np.float64)
    w = np.ones(X.shape[0]) if sw is None else np.asarray(sw, dtype=np.float64)
    nk = (R * w[:, None]).sum(axis=0)
    centres = (R * w[:, None]).T @ np.asarray(X, dtype=np.float64) / np.maximum(nk, EPS)[:, None]
    kp = kernels.nearest_params(centres, X.dtype, kernels.KIND_CODES[kind])
    out = kernels.resp_stats(X, sw, R, kp, chunk_rows)
    stats = stats_from_kernel(kind, out, kp)
    return m_step(*moments(stats, prior.reg_covar), prior)


__all__ = ["Prior", "VBParams", "make_prior", "data_moments", "moments", "m_step",
           "lower_bound", "bound_from_entropy", "neg_entropy", "SVIState", "vb_step", "vb_loop", "run_vb", "svi_update", "run_svi",
           "initial_from_params", "initial_from_resp", "PRIOR_TYPES", "VB_KINDS", "Stats"]
