"""Mixture parameters and covariance types.

A covariance type is one class that knows, for its kind: how to build itself from covariances or
precisions (with validation), its precision-Cholesky factors in the kernels' layout, its
log-determinant, its M-step from ``Stats``, its parameter count and how to sample.  Adding a
covariance type means adding one such class (and its branch in the kernel), not touching the
drivers.

Layouts follow scikit-learn: ``covariances`` full (K, D, D), tied (D, D), diag (K, D),
spherical (K,); ``precisions_cholesky`` the same shapes, upper-triangular for full/tied with
``precision = U U^T``.  Everything here is float64.
"""
import math
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from . import kernels
from ._stats import Stats

EPS = np.finfo(np.float64).eps
#: Largest squared Mahalanobis distance of a mean from the shared centre of the GEMM kernels:
#: float64 keeps >= 10 of 16 digits, float32 (whose diagonal log-densities are expanded in
#: float32) >= 4 of 7.
SHARED_MAX = kernels.SHARED_MAX


class DegenerateComponentWarning(UserWarning):
    """Warned when a component's covariance became singular in fitting and was regularised.

    The component (typically one sitting on duplicated points, with ``reg_covar=0``) gets a
    small multiple of the identity added to its covariance, so the model stays finite; a larger
    ``reg_covar`` avoids it.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from fastmix import DegenerateComponentWarning, GaussianMixture
    >>> X = np.vstack((np.ones((5, 2)), np.zeros((5, 2))))  # two points, five copies each
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     gm = GaussianMixture(2, reg_covar=0, random_state=0).fit(X)
    >>> any(issubclass(w.category, DegenerateComponentWarning) for w in caught)
    True
    >>> gm.weights_
    array([0.5, 0.5])
    """


def _flip(a):
    return a[::-1, ::-1]


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_at_caller(message, category):
    """``warnings.warn`` attributed to the first frame outside the fastmix package (the user's
    call of ``fit``, ``partial_fit`` ...), however deep inside fastmix the warning arises."""
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


_LAPACK: dict = {}


def _lapack(name):
    """SciPy's float64 LAPACK routine ``name`` (looked up once)."""
    fn = _LAPACK.get(name)
    if fn is None:
        fn = _LAPACK[name] = linalg.get_lapack_funcs((name,), (np.zeros((1, 1)),))[0]
    return fn


def _is_matrix64(a):
    """A plain, non-empty 2-D float64 ndarray (what the direct LAPACK calls below take)."""
    return type(a) is np.ndarray and a.dtype == np.float64 and a.ndim == 2 and a.size > 0


def cholesky_lower(a):
    """``scipy.linalg.cholesky(a, lower=True, check_finite=False)``: the same LAPACK call
    (``dpotrf``, same arguments, so the same bits) without SciPy's wrapper, which costs more
    than the factorisation of the small matrices of an M-step (SciPy 1.17: ~10 us a call;
    K per full M-step).  Other dtypes and shapes go to SciPy."""
    if not _is_matrix64(a):
        return linalg.cholesky(a, lower=True, check_finite=False)
    c, info = _lapack("potrf")(a, lower=True, overwrite_a=False, clean=True)
    if info > 0:
        raise linalg.LinAlgError(f"{info}-th leading minor of the array is not positive "
                                 "definite")
    if info < 0:
        raise ValueError(f"LAPACK reported an illegal value in {-info}-th argument of POTRF")
    return c


def solve_triangular(a, b, lower):
    """``scipy.linalg.solve_triangular(a, b, lower=lower, check_finite=False)`` for float64
    matrices: SciPy's own LAPACK call (``dtrtrs``, on ``a`` or on its transpose exactly as
    SciPy chooses by memory order) without its wrapper (SciPy 1.17: ~80 us a call for a
    13 x 13 system whose solve takes ~10 us).  Other inputs go to SciPy."""
    if not (_is_matrix64(a) and _is_matrix64(b)) or a.shape[0] != a.shape[1] \
            or a.shape[0] != b.shape[0]:
        return linalg.solve_triangular(a, b, lower=lower, check_finite=False)
    trtrs = _lapack("trtrs")
    if a.flags.f_contiguous:
        x, info = trtrs(a, b, overwrite_b=False, lower=lower, trans=0, unitdiag=False)
    else:  # the transposed system (trtrs expects Fortran order), as SciPy does
        x, info = trtrs(a.T, b, overwrite_b=False, lower=not lower, trans=1, unitdiag=False)
    if info > 0:
        raise linalg.LinAlgError(f"singular matrix: resolution failed at diagonal {info - 1}")
    if info < 0:
        raise ValueError(f"illegal value in {-info}-th argument of internal trtrs")
    return x


def _chol_lower(cov, what, reg_covar):
    """Lower Cholesky factor of ``cov``; if it is not positive definite (a collapsed component),
    add a growing multiple of the identity and warn rather than fail mid-fit."""
    try:
        return cholesky_lower(cov)
    except linalg.LinAlgError:
        pass
    if not np.all(np.isfinite(cov)):
        raise FloatingPointError(f"non-finite covariance for {what}")
    D = cov.shape[0]
    scale = max(abs(float(np.trace(cov))) / D, 1.0)
    jitter = max(reg_covar, 1e-10 * scale)
    for _ in range(20):
        try:
            L = cholesky_lower(cov + jitter * np.eye(D))
        except linalg.LinAlgError:
            jitter *= 10.0
            continue
        warn_at_caller(f"the covariance of {what} is not positive definite (collapsed component?); "
                      f"added {jitter:.3g} to its diagonal. Increase reg_covar to avoid this.",
                      DegenerateComponentWarning)
        return L
    raise FloatingPointError(f"could not regularise the covariance of {what}")


def _prec_chol_from_cov(cov, what, reg_covar):
    L = _chol_lower(cov, what, reg_covar)
    return solve_triangular(L, np.eye(cov.shape[0]), lower=True).T


def _prec_chol_from_prec(prec):
    # upper U with prec = U U^T, via the Cholesky factor of the flipped matrix
    return _flip(cholesky_lower(_flip(prec)))


def _cov_from_prec_chol(U):
    Uinv = solve_triangular(U, np.eye(U.shape[0]), lower=False)
    return Uinv.T @ Uinv


def _check_spd(mat, name):
    mat = np.asarray(mat, dtype=np.float64)
    if not np.all(np.isfinite(mat)):
        raise ValueError(f"{name} contains NaN or infinity")
    if not np.allclose(mat, mat.T, rtol=1e-7, atol=1e-10 * max(1.0, np.abs(mat).max())):
        raise ValueError(f"{name} should be symmetric, positive-definite (it is not symmetric)")
    if np.linalg.eigvalsh(mat).min() <= 0.0:
        raise ValueError(f"{name} should be symmetric, positive-definite "
                         f"(smallest eigenvalue {np.linalg.eigvalsh(mat).min():.3g})")
    return mat


class Covariance:
    """Base class of the covariance types.  Subclasses set ``kind`` and implement the rest."""

    kind: str | None = None
    registry: dict = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.kind is not None:  # abstract intermediate classes have no kind
            Covariance.registry[cls.kind] = cls

    def __init__(self, covariances, precisions_cholesky):
        self.covariances = covariances
        self.precisions_cholesky = precisions_cholesky

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def shape(cls, K, D):
        raise NotImplementedError

    @classmethod
    def from_covariances(cls, covariances, reg_covar=0.0):
        raise NotImplementedError

    @classmethod
    def from_precisions(cls, precisions):
        """Build from user precisions (validated: finite, symmetric positive definite)."""
        raise NotImplementedError

    @classmethod
    def scatter(cls, stats, means, nk_eff, reg_covar):
        """The weighted covariances about ``means`` from centred statistics, plus
        ``reg_covar`` on the diagonal, in this kind's layout (float64 array; algorithms.md
        5.9).  Shared by the EM M-step and the variational one (``fastmix.variational``)."""
        raise NotImplementedError

    @classmethod
    def m_step(cls, stats, means, nk_eff, reg_covar):
        return cls.from_covariances(cls.scatter(stats, means, nk_eff, reg_covar), reg_covar)

    # --- derived quantities ------------------------------------------------------------------
    @property
    def precisions(self):
        raise NotImplementedError

    def log_det_chol(self, K, D):
        """log det of each component's precision-Cholesky factor, (K,)."""
        raise NotImplementedError

    def kernel_pc(self, K, D):
        """Precision-Cholesky factors in the kernels' 3-D layout (float64)."""
        raise NotImplementedError

    @staticmethod
    def n_parameters(K, D):
        raise NotImplementedError

    def sample(self, rng, k, n, D):
        """n draws of the zero-mean noise of component k, (n, D)."""
        raise NotImplementedError


def _centred(stats, means, centre):
    """a = s1 - nk c (sum of w r (x - c)) and delta = mu - c, per component."""
    a = stats.s1 - stats.nk[:, None] * centre
    delta = means - centre
    return a, delta


class FullCovariance(Covariance):
    kind = "full"

    @classmethod
    def shape(cls, K, D):
        return (K, D, D)

    @classmethod
    def from_covariances(cls, covariances, reg_covar=0.0):
        covs = np.asarray(covariances, dtype=np.float64)
        pcs = np.stack([_prec_chol_from_cov(c, f"component {k}", reg_covar)
                        for k, c in enumerate(covs)])
        return cls(covs, pcs)

    @classmethod
    def from_precisions(cls, precisions):
        precs = [_check_spd(p, f"precisions_init[{k}]") for k, p in enumerate(precisions)]
        pcs = np.stack([_prec_chol_from_prec(p) for p in precs])
        return cls(np.stack([_cov_from_prec_chol(U) for U in pcs]), pcs)

    @classmethod
    def scatter(cls, stats, means, nk_eff, reg_covar):
        a, delta = _centred(stats, means, stats.centre)
        covs = (stats.s2 - a[:, :, None] * delta[:, None, :] - delta[:, :, None] * a[:, None, :]
                + stats.nk[:, None, None] * delta[:, :, None] * delta[:, None, :])
        covs /= nk_eff[:, None, None]
        covs += reg_covar * np.eye(means.shape[1])
        return covs

    @property
    def precisions(self):
        return np.einsum("kij,klj->kil", self.precisions_cholesky, self.precisions_cholesky)

    def log_det_chol(self, K, D):
        return np.log(np.diagonal(self.precisions_cholesky, axis1=1, axis2=2)).sum(axis=1)

    def kernel_pc(self, K, D):
        return self.precisions_cholesky

    @staticmethod
    def n_parameters(K, D):
        return K * D * (D + 1) / 2.0

    def sample(self, rng, k, n, D):
        L = _chol_lower(self.covariances[k], f"component {k}", 0.0)
        return rng.standard_normal((n, D)) @ L.T


class TiedCovariance(Covariance):
    kind = "tied"

    @classmethod
    def shape(cls, K, D):
        return (D, D)

    @classmethod
    def from_covariances(cls, covariances, reg_covar=0.0):
        cov = np.asarray(covariances, dtype=np.float64)
        return cls(cov, _prec_chol_from_cov(cov, "the tied covariance", reg_covar))

    @classmethod
    def from_precisions(cls, precisions):
        U = _prec_chol_from_prec(_check_spd(precisions, "precisions_init"))
        return cls(_cov_from_prec_chol(U), U)

    @classmethod
    def scatter(cls, stats, means, nk_eff, reg_covar):
        a, delta = _centred(stats, means, stats.gcentre[None, :])
        cov = (stats.s2[0] - a.T @ delta - delta.T @ a
               + (stats.nk[:, None] * delta).T @ delta)
        cov /= nk_eff.sum()
        cov += reg_covar * np.eye(means.shape[1])
        return cov

    @property
    def precisions(self):
        return self.precisions_cholesky @ self.precisions_cholesky.T

    def log_det_chol(self, K, D):
        return np.full(K, np.log(np.diag(self.precisions_cholesky)).sum())

    def kernel_pc(self, K, D):
        return self.precisions_cholesky[None, :, :]

    @staticmethod
    def n_parameters(K, D):
        return D * (D + 1) / 2.0

    def sample(self, rng, k, n, D):
        L = _chol_lower(self.covariances, "the tied covariance", 0.0)
        return rng.standard_normal((n, D)) @ L.T


def _floor_variances(var, reg_covar, what):
    """Variances must be > 0; a collapsed component with reg_covar = 0 is floored and warned."""
    if not (var > 0).all():  # (the common case: one comparison, one reduction)
        bad = ~(var > 0)
        if not np.all(np.isfinite(var)):
            raise FloatingPointError(f"non-finite variance in {what}")
        floor = max(reg_covar, 1e-10 * max(float(np.max(var)), 1.0))
        warn_at_caller(f"{int(bad.sum())} variance(s) of {what} collapsed to <= 0; floored at "
                      f"{floor:.3g}. Increase reg_covar to avoid this.",
                      DegenerateComponentWarning)
        var = np.where(bad, floor, var)
    return var


def _check_positive(prec, name):
    prec = np.asarray(prec, dtype=np.float64)
    if not np.all(np.isfinite(prec)):
        raise ValueError(f"{name} contains NaN or infinity")
    if np.any(prec <= 0):
        raise ValueError(f"{name} should be positive")
    return prec


class _VarianceCovariance(Covariance):
    """Shared parts of the types stored as variances (diag: (K, D), spherical: (K,))."""

    @classmethod
    def from_covariances(cls, covariances, reg_covar=0.0):
        var = _floor_variances(np.asarray(covariances, dtype=np.float64), reg_covar,
                               f"the {cls.kind} covariances")
        return cls(var, 1.0 / np.sqrt(var))

    @classmethod
    def from_precisions(cls, precisions):
        prec = _check_positive(precisions, "precisions_init")
        return cls(1.0 / prec, np.sqrt(prec))

    @property
    def precisions(self):
        return self.precisions_cholesky ** 2

    def sample(self, rng, k, n, D):
        return rng.standard_normal((n, D)) * np.sqrt(self.covariances[k])


class DiagCovariance(_VarianceCovariance):
    kind = "diag"

    @classmethod
    def shape(cls, K, D):
        return (K, D)

    @classmethod
    def scatter(cls, stats, means, nk_eff, reg_covar):
        a, delta = _centred(stats, means, stats.centre)
        var = (stats.s2[:, 0, :] - 2.0 * a * delta + stats.nk[:, None] * delta * delta)
        return var / nk_eff[:, None] + reg_covar

    def log_det_chol(self, K, D):
        return np.log(self.precisions_cholesky).sum(axis=1)

    def kernel_pc(self, K, D):
        return self.precisions_cholesky[:, None, :]

    @staticmethod
    def n_parameters(K, D):
        return K * D


class SphericalCovariance(_VarianceCovariance):
    kind = "spherical"

    @classmethod
    def shape(cls, K, D):
        return (K,)

    @classmethod
    def scatter(cls, stats, means, nk_eff, reg_covar):
        a, delta = _centred(stats, means, stats.centre)
        D = means.shape[1]
        var = (stats.s2[:, 0, 0] - 2.0 * (a * delta).sum(axis=1)
               + stats.nk * (delta * delta).sum(axis=1))
        return var / (nk_eff * D) + reg_covar

    def log_det_chol(self, K, D):
        return D * np.log(self.precisions_cholesky)

    def kernel_pc(self, K, D):
        return self.precisions_cholesky[:, None, None]

    @staticmethod
    def n_parameters(K, D):
        return K


class LowRankCovariance(Covariance):
    """Low-rank-plus-diagonal covariances (mixture of factor analysers):
    ``Sigma_k = W_k W_k^T + diag(psi_k)``, ``W_k`` (D, q) the factor loadings, ``psi_k`` (D,)
    the noise variances (all equal with ``isotropic=True``: mixture of probabilistic PCA).

    Only q x q matrices are factorised (``M_k = I + W_k^T Psi_k^-1 W_k = L_k L_k^T``); the
    kernels use the Woodbury identity and the matrix-determinant lemma (``cpu_lowrank``).  Dense
    ``covariances``/``precisions`` are built only when asked for.  The M-step is Ghahramani &
    Hinton's (1996) joint update of ``[W_k, mu_k]`` from the complete-data statistics of
    ``cpu_lowrank`` (Tipping & Bishop's for the isotropic noise).
    """
    kind = "lowrank"

    def __init__(self, loadings, noise_variances, isotropic=False):
        W = np.ascontiguousarray(loadings, dtype=np.float64)
        psi = np.ascontiguousarray(noise_variances, dtype=np.float64)
        if W.ndim != 3 or psi.shape != W.shape[:2]:
            raise ValueError(f"loadings (K, D, q) and noise variances (K, D) do not match: "
                             f"{W.shape} and {psi.shape}")
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(psi))):
            raise ValueError("factor loadings or noise variances contain NaN or infinity")
        if np.any(psi <= 0):
            raise ValueError("noise variances must be positive")
        self.loadings = W
        self.noise_variances = psi
        self.isotropic = bool(isotropic)
        K, D, q = W.shape
        WP = W / psi[:, :, None]                               # Psi^-1 W   (K, D, q)
        M = np.eye(q) + np.einsum("kdi,kdj->kij", W, WP)       # I + W^T Psi^-1 W
        self._L = np.stack([_chol_lower(M[k], f"component {k} (I + W^T Psi^-1 W)", 0.0)
                            for k in range(K)])
        # B = L^-1 W^T Psi^-1 (K, q, D);  C = L^-T (K, q, q)
        self._B = np.stack([solve_triangular(self._L[k], WP[k].T, lower=True)
                            for k in range(K)])
        self._C = np.stack([solve_triangular(self._L[k], np.eye(q), lower=True).T
                            for k in range(K)])

    @property
    def n_factors(self):
        return self.loadings.shape[2]

    @classmethod
    def shape(cls, K, D):
        return None

    @property
    def covariances(self):
        """Dense (K, D, D) covariances W W^T + diag(psi)."""
        W = self.loadings
        cov = np.einsum("kdi,kei->kde", W, W)
        idx = np.arange(W.shape[1])
        cov[:, idx, idx] += self.noise_variances
        return cov

    @property
    def precisions(self):
        """Dense (K, D, D) precisions Psi^-1 - B^T B (Woodbury)."""
        prec = -np.einsum("kid,kie->kde", self._B, self._B)
        idx = np.arange(self.loadings.shape[1])
        prec[:, idx, idx] += 1.0 / self.noise_variances
        return prec

    @property
    def precisions_cholesky(self):
        """Dense (K, D, D) upper-triangular U with precision = U U^T (scikit-learn's layout)."""
        return np.stack([_prec_chol_from_prec(p) for p in self.precisions])

    def log_det_chol(self, K, D):
        """-1/2 log det Sigma_k = -log det L_k - 1/2 sum log psi_k."""
        return (-np.log(np.diagonal(self._L, axis1=1, axis2=2)).sum(axis=1)
                - 0.5 * np.log(self.noise_variances).sum(axis=1))

    def kernel_pc(self, K, D):
        q = self.n_factors
        pc = np.zeros((K, 1 + 2 * q, D))
        pc[:, 0, :] = 1.0 / np.sqrt(self.noise_variances)
        pc[:, 1:1 + q, :] = self._B
        pc[:, 1 + q:, :q] = self._C
        return pc

    def n_parameters(self, K, D):
        """Free parameters: W up to rotation (D q - q (q - 1) / 2) and psi (D, or 1)."""
        q = self.n_factors
        return K * (D * q - q * (q - 1) / 2.0 + (1 if self.isotropic else D))

    def sample(self, rng, k, n, D):
        z = rng.standard_normal((n, self.n_factors))
        return z @ self.loadings[k].T + rng.standard_normal((n, D)) * np.sqrt(
            self.noise_variances[k])

    @classmethod
    def m_step(cls, stats, means, nk_eff, reg_covar):  # pragma: no cover - see m_step_joint
        raise NotImplementedError("the lowrank M-step updates means too: use m_step_joint")

    @classmethod
    def m_step_joint(cls, stats, nk_eff, reg_covar, prev, fixed_means=None):
        """(means (K, D), LowRankCovariance) from lowrank statistics (``cpu_lowrank`` layout).

        Joint update of ``[W, mu - c] = [G^T, a] A^-1`` with ``A = [[H, h], [h^T, N]]``, and
        ``psi = diag(sum r (x - c)^2 - [W, mu - c] [G^T, a]^T) / N + reg_covar``.  With
        ``fixed_means``: ``W = (G^T - delta h^T) H^-1`` about the fixed means.  A component with
        (numerically) no responsibility keeps ``prev``'s mean and factors."""
        K, D = stats.s1.shape
        q = stats.s2.shape[1] - 1
        isotropic = bool(getattr(prev, "cov", None) is not None and prev.cov.isotropic)
        c = stats.centre
        nk = stats.nk
        W = np.empty((K, D, q))
        psi = np.empty((K, D))
        means = np.empty((K, D))
        tiny = 1e-12 * max(float(nk.sum()), EPS)
        for k in range(K):
            if not nk[k] > tiny and prev is not None:
                W[k], psi[k], means[k] = (prev.cov.loadings[k], prev.cov.noise_variances[k],
                                          prev.means[k])
                continue
            N = nk_eff[k]
            a = stats.s1[k] - nk[k] * c[k]
            P = stats.s2[k, 0, :D]
            G = stats.s2[k, 1:, :D].T            # (D, q) sum r (x - c) E[z]^T
            H = stats.s2[k, 1:, D:D + q]          # (q, q) sum r E[z z^T]
            h = stats.s2[k, 1:, D + q]            # (q,)   sum r E[z]
            if fixed_means is None:
                A = np.empty((q + 1, q + 1))
                A[:q, :q] = H
                A[:q, q] = h
                A[q, :q] = h
                A[q, q] = N
                Bm = np.concatenate([G, a[:, None]], axis=1)
                theta = _sym_solve(A, Bm.T).T      # (D, q + 1)
                W[k] = theta[:, :q]
                means[k] = c[k] + theta[:, q]
                resid = P - (theta * Bm).sum(axis=1)
            else:
                delta = fixed_means[k] - c[k]
                Gm = G - np.outer(delta, h)
                W[k] = _sym_solve(H, Gm.T).T
                means[k] = fixed_means[k]
                resid = P - 2.0 * a * delta + nk[k] * delta * delta - (W[k] * Gm).sum(axis=1)
            psi[k] = resid / N
        if isotropic:
            psi[:] = psi.mean(axis=1, keepdims=True)
        psi = _floor_variances(psi + reg_covar, reg_covar, "the lowrank noise variances")
        return means, cls(W, psi, isotropic)


def _sym_solve(A, B):
    """A^-1 B for a symmetric positive (semi-)definite A: Cholesky, else least squares."""
    try:
        return linalg.cho_solve(linalg.cho_factor(A, check_finite=False), B, check_finite=False)
    except linalg.LinAlgError:
        return linalg.lstsq(A, B, check_finite=False)[0]


COVARIANCE_TYPES = tuple(Covariance.registry)


@dataclass(frozen=True)
class GMMParams:
    """Weights (K,), means (K, D) and a covariance object; all float64."""
    weights: np.ndarray
    means: np.ndarray
    cov: Covariance

    @property
    def n_components(self):
        return self.means.shape[0]

    @property
    def n_features(self):
        return self.means.shape[1]

    @property
    def kind(self):
        return self.cov.kind

    def n_parameters(self):
        K, D = self.means.shape
        return int(self.cov.n_parameters(K, D) + K * D + K - 1)

    def kernel_params(self, dtype):
        """The parameters in the kernels' layout, densities in ``dtype``."""
        # called once per EM iteration: no array is made that is not used (small fits)
        dt = np.dtype(dtype)
        K, D = self.means.shape
        kind = self.cov.kind
        code = kernels.KIND_CODES[kind]
        logw = np.full(K, -np.inf)  # log 0 = -inf without np.errstate (~20 us per call)
        np.log(self.weights, out=logw, where=self.weights > 0)
        lconst = logw + self.cov.log_det_chol(K, D) - 0.5 * D * math.log(2.0 * math.pi)
        pc = np.ascontiguousarray(self.cov.kernel_pc(K, D), dtype=np.float64)
        tmeans = None  # zeros but for tied
        if kind == "tied":
            g64 = self.weights @ self.means
            tmeans = np.ascontiguousarray((self.means - g64) @ pc[0], dtype=dt)
        elif kind in ("full", "diag"):
            # A shared centre g for the GEMM formulations (cpu_estep._chunk_full/_chunk_diag),
            # used only when every mean is within a squared Mahalanobis distance SHARED_MAX of g,
            # so that expanding around g loses at most log10(SHARED_MAX) digits.
            g64 = self.weights @ self.means
            if kind == "full":
                maha2 = (np.einsum("ki,kij->kj", self.means - g64, pc) ** 2).sum(axis=1)
            else:
                maha2 = (((self.means - g64) * pc[:, 0, :]) ** 2).sum(axis=1)
            if not maha2.max() < SHARED_MAX[dt]:
                g64 = np.zeros(0)
        else:
            g64 = np.zeros(D)
        means64 = np.ascontiguousarray(self.means, dtype=np.float64)
        g = g64.astype(dt) if g64.shape[0] == D else np.zeros(D, dt)
        return kernels.KernelParams(code, means64.astype(dt), pc.astype(dt), lconst,
                                    np.zeros((K, D), dt) if tmeans is None else tmeans, g,
                                    means64, np.ascontiguousarray(g64))


def stats_from_kernel(kind, out, kp):
    """Wrap a kernel's (nk, s1, s2, ll, ws) tuple as Stats centred on ``kp``'s centres."""
    nk, s1, s2, ll, ws = out
    return Stats(kind, nk, s1, s2, kp.means64, kp.g64, float(ll), float(ws))


#: Parameter groups that EM can keep fixed (``GaussianMixture(fixed=...)``).
FIXABLE = ("weights", "means", "covariances")


def m_step(stats, reg_covar, fixed=(), prev=None):
    """New parameters from statistics (scikit-learn's estimator, exactly, from centred sums).

    ``fixed`` names groups of ``FIXABLE`` taken unchanged from ``prev``.  With fixed means the
    covariances are the second moments about those means (the M-step of that constrained
    model), not about the weighted sample means."""
    cls = Covariance.registry[stats.kind]
    nk_eff = stats.nk + 10.0 * EPS
    if fixed and prev is None:
        raise ValueError("fixed parameters need the previous parameters")
    if cls is LowRankCovariance and prev is None:
        raise ValueError("the lowrank M-step needs the parameters its statistics came from")
    with np.errstate(over="ignore", invalid="ignore"):
        weights = nk_eff / nk_eff.sum()
        means = stats.s1 / nk_eff[:, None]
        if "weights" in fixed:
            weights = prev.weights
        if "means" in fixed:
            means = prev.means
        if not (np.isfinite(stats.s2).all() and np.isfinite(means).all()
                and np.isfinite(weights).all()):
            raise FloatingPointError(
                "EM statistics overflowed (non-finite sums of squares): the data values are too "
                "large for float64 arithmetic. Rescale the data (e.g. standardise the columns).")
        if "covariances" in fixed:
            cov = prev.cov
        elif cls is LowRankCovariance:  # updates the means jointly with the loadings
            means, cov = cls.m_step_joint(stats, nk_eff, reg_covar, prev,
                                          prev.means if "means" in fixed else None)
        else:
            cov = cls.m_step(stats, means, nk_eff, reg_covar)
    return GMMParams(weights, means, cov)
