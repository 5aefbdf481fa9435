"""Thin scikit-learn-style estimators: they validate input, then call a driver."""
import json
import math
import sys
import warnings

import numpy as np

from . import kernels
from ._base import BaseEstimator, DensityMixin
from ._params import COVARIANCE_TYPES, Covariance, DegenerateComponentWarning, GMMParams
from ._validation import NotFittedError, check_array, check_random_state, check_sample_weight
from .em import DEFAULT_CHUNK_ROWS, EMResult, run_em
from .init import initial_params

FORMAT_VERSION = 1
INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the lower bound changed by less than ``tol``."""


class GaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture model fitted by exact EM on fused Numba kernels.

    Same constructor, attributes and methods as ``sklearn.mixture.GaussianMixture``, plus
    ``sample_weight`` in ``fit``, ``chunk_size``, ``progress`` and ``save``/``fastmix.load``.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        EM stops when the mean log-likelihood changes by less than ``tol``.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance (keeps collapsed components positive definite).
    max_iter : int, default=100
    n_init : int, default=1
        Number of initialisations; the one with the highest final lower bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        See ``fastmix.init`` for exactly what each does (fastmix's own k-means, no scikit-learn).
    weights_init : array (K,), means_init : array (K, D), precisions_init : array
        Initial values (precisions in scikit-learn's layout for the covariance type).
    random_state : None, int, numpy Generator or RandomState
    warm_start : bool, default=False
        Continue from the previous fit's parameters (``n_init`` is then 1).
    verbose : int, default=0
        1 prints per-initialisation summaries, 2 also every ``verbose_interval`` iterations.
    verbose_interval : int, default=10
    chunk_size : int or None, default=None
        Rows per kernel chunk (default 4096).  Results are bit-identical for a given
        chunk_size whatever the number of threads.
    progress : bool, default=False
        Show a tqdm progress bar over EM iterations.

    Attributes
    ----------
    weights_ : (K,) float64
    means_ : (K, D) float64
    covariances_, precisions_, precisions_cholesky_ : float64, shape by covariance_type
        full (K, D, D), tied (D, D), diag (K, D), spherical (K,).
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood per sample of the best initialisation (before its last M-step).
    lower_bounds_ : list of float
        The lower bound at each iteration of the best initialisation.
    n_features_in_ : int

    Notes
    -----
    Densities are evaluated in the input's dtype (float32 stays float32); all statistics are
    accumulated in float64, with second moments centred on the current means.  A component whose
    covariance becomes singular (e.g. it collapses onto one point with ``reg_covar=0``) gets more
    diagonal regularisation and a ``DegenerateComponentWarning`` -- the fit continues, and never
    returns NaN parameters.  An empty component keeps its regularised covariance and a tiny
    weight, as in scikit-learn.
    """

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6,
                 max_iter=100, n_init=1, init_params="kmeans", weights_init=None,
                 means_init=None, precisions_init=None, random_state=None, warm_start=False,
                 verbose=0, verbose_interval=10, chunk_size=None, progress=False):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.chunk_size = chunk_size
        self.progress = progress

    # ------------------------------------------------------------------ validation ----------
    def _check_hyper(self):
        def _int(name, lo):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        _int("n_components", 1)
        _int("max_iter", 0)
        _int("n_init", 1)
        _int("verbose", 0)
        _int("verbose_interval", 1)
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, "
                             f"got {self.covariance_type!r}")
        if self.init_params not in INIT_METHODS:
            raise ValueError(f"init_params must be one of {INIT_METHODS}, got {self.init_params!r}")
        for name in ("tol", "reg_covar"):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating, np.integer)) or not v >= 0 \
                    or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.chunk_size is not None:
            if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, (int, np.integer)) \
                    or self.chunk_size < 1:
                raise ValueError(f"chunk_size must be a positive integer or None, "
                                 f"got {self.chunk_size!r}")

    @property
    def _chunk_rows(self):
        return DEFAULT_CHUNK_ROWS if self.chunk_size is None else int(self.chunk_size)

    def _user_init(self, D):
        """Validated copies of weights_init, means_init, precisions_init (or None)."""
        K = self.n_components
        w = m = p = None
        if self.weights_init is not None:
            w = np.array(self.weights_init, dtype=np.float64)
            if w.shape != (K,):
                raise ValueError(f"weights_init should have shape ({K},), got {w.shape}")
            if not np.all(np.isfinite(w)) or np.any(w < 0) or np.any(w > 1):
                raise ValueError(f"weights_init should be in the range [0, 1], got min "
                                 f"{np.min(w):.5g}, max {np.max(w):.5g}")
            if not abs(w.sum() - 1.0) < 1e-6:
                raise ValueError(f"weights_init should be normalized, but got sum(weights) = "
                                 f"{w.sum():.8g}")
            w = w / w.sum()
        if self.means_init is not None:
            m = np.array(self.means_init, dtype=np.float64)
            if m.shape != (K, D):
                raise ValueError(f"means_init should have shape ({K}, {D}), got {m.shape}")
            if not np.all(np.isfinite(m)):
                raise ValueError("means_init contains NaN or infinity")
        if self.precisions_init is not None:
            cls = Covariance.registry[self.covariance_type]
            p = np.array(self.precisions_init, dtype=np.float64)
            if p.shape != cls.shape(K, D):
                raise ValueError(f"precisions_init for covariance_type={self.covariance_type!r} "
                                 f"should have shape {cls.shape(K, D)}, got {p.shape}")
            p = cls.from_precisions(p)  # validates: finite, symmetric positive definite
        return w, m, p

    def _check_fitted(self):
        if not hasattr(self, "means_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call "
                                 "'fit' with appropriate arguments before using this estimator.")

    def __sklearn_is_fitted__(self):
        return hasattr(self, "means_")

    def _validate_predict_X(self, X):
        self._check_fitted()
        return check_array(X, n_features=self.n_features_in_, estimator=type(self).__name__)

    # ------------------------------------------------------------------ fitting -------------
    def _initial(self, X, sw, rng, user):
        w, m, cov = user
        if w is None or m is None or cov is None:
            params = initial_params(X, sw, self.n_components, self.covariance_type,
                                    self.init_params, rng, self.reg_covar, self._chunk_rows)
            w = params.weights if w is None else w
            m = params.means if m is None else m
            cov = params.cov if cov is None else cov
        return GMMParams(w, m, cov)

    def _params(self):
        cls = Covariance.registry[self.covariance_type]
        cov = cls(self.covariances_, self.precisions_cholesky_)
        return GMMParams(self.weights_, self.means_, cov)

    def _set_params_from(self, params):
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.cov.covariances
        self.precisions_cholesky_ = params.cov.precisions_cholesky
        self.precisions_ = params.cov.precisions

    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters with EM.

        Parameters
        ----------
        X : array-like (N, D) of real numbers; float32 stays float32, others become float64
        y : ignored
        sample_weight : array-like (N,) of non-negative weights, optional

        Returns
        -------
        self
        """
        self._fit(X, sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return the most probable component of each row (N,) int64."""
        X = self._fit(X, sample_weight)
        _, labels, _ = kernels.log_prob(X, self._params().kernel_params(X.dtype), self._chunk_rows)
        return labels

    def _fit(self, X, sample_weight):
        self._check_hyper()
        X = check_array(X, min_samples=2)
        N, D = X.shape
        if N < self.n_components:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = "
                             f"{self.n_components}, n_samples = {N}")
        sw = check_sample_weight(sample_weight, N)
        user = self._user_init(D)
        if hasattr(self, "n_features_in_") and self.warm_start and D != self.n_features_in_:
            raise ValueError(f"X has {D} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input.")
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1
        rng = check_random_state(self.random_state)
        with kernels.blas_single_threaded():
            best = self._fit_inits(X, sw, rng, user, do_init, n_init)
        if not best.converged and self.max_iter > 0:
            warnings.warn("Best performing initialization did not converge. Try different init "
                          "parameters, or increase max_iter, tol, or check for degenerate data.",
                          ConvergenceWarning, stacklevel=3)
        self._set_params_from(best.params)
        self.converged_ = bool(best.converged)
        self.n_iter_ = int(best.n_iter)
        self.lower_bound_ = float(best.lower_bound)
        self.lower_bounds_ = list(best.lower_bounds)
        self.iteration_times_ = list(best.iter_times)
        self.n_features_in_ = D
        return X

    def _fit_inits(self, X, sw, rng, user, do_init, n_init):
        """n_init initialisations + EM; returns the EMResult with the best lower bound."""
        best = None
        for init in range(n_init):
            if self.verbose:
                print(f"Initialization {init}")
            if do_init:
                params = self._initial(X, sw, rng, user)
                lb0 = -np.inf
            else:
                params = self._params()
                lb0 = self.lower_bound_
            if self.max_iter == 0:
                result = EMResult(params, lb0, 0, False)
            else:
                result = self._run(X, sw, params, lb0, init, n_init)
            if best is None or result.lower_bound > best.lower_bound:
                best = result
        return best

    def _run(self, X, sw, params, lb0, init, n_init):
        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            desc = "EM" if n_init == 1 else f"EM init {init + 1}/{n_init}"
            bar = tqdm(total=self.max_iter, desc=desc, unit="it", file=sys.stderr)

        def callback(n_iter, lb, change, dt):
            if bar is not None:
                bar.update(1)
                bar.set_postfix(lower_bound=f"{lb:.6g}", change=f"{change:.3g}",
                                sec=f"{dt:.3f}")
            if self.verbose >= 2 and n_iter % self.verbose_interval == 0:
                print(f"  Iteration {n_iter}\t time lapse {dt:.5f}s\t ll change {change:.5g}")

        try:
            result = run_em(X, sw, params, reg_covar=float(self.reg_covar), tol=float(self.tol),
                            max_iter=int(self.max_iter), chunk_rows=self._chunk_rows,
                            lower_bound=lb0, callback=callback)
        finally:
            if bar is not None:
                bar.close()
        if self.verbose:
            print(f"Initialization {'converged' if result.converged else 'did not converge'}. "
                  f"lower bound {result.lower_bound:.6g}")
        return result

    # ------------------------------------------------------------------ inference -----------
    def _log_prob(self, X, want_resp=False):
        X = self._validate_predict_X(X)
        return kernels.log_prob(X, self._params().kernel_params(X.dtype), self._chunk_rows,
                                want_resp)

    def score_samples(self, X):
        """log p(x) of each row, (N,) float64."""
        return self._log_prob(X)[0]

    def score(self, X, y=None):
        """Mean log-likelihood per row."""
        return float(np.mean(self.score_samples(X)))

    def predict(self, X):
        """Most probable component of each row, (N,) int64."""
        return self._log_prob(X)[1]

    def predict_proba(self, X):
        """Responsibilities (N, K) float64."""
        return self._log_prob(X, want_resp=True)[2]

    def sample(self, n_samples=1):
        """Draw ``n_samples`` points; returns (X (n, D) float64, labels (n,) int64)."""
        self._check_fitted()
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
                or n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples!r}. The sampling "
                             "requires at least one sample.")
        rng = check_random_state(self.random_state)
        params = self._params()
        D = self.means_.shape[1]
        counts = rng.multinomial(n_samples, params.weights / params.weights.sum())
        X = np.vstack([params.means[k] + params.cov.sample(rng, k, int(c), D)
                       for k, c in enumerate(counts)])
        y = np.repeat(np.arange(self.n_components, dtype=np.int64), counts)
        return X, y

    def _n_parameters(self):
        return self._params().n_parameters()

    def bic(self, X):
        """Bayesian information criterion on X (lower is better)."""
        X = self._validate_predict_X(X)
        return -2 * self.score(X) * X.shape[0] + self._n_parameters() * math.log(X.shape[0])

    def aic(self, X):
        """Akaike information criterion on X (lower is better)."""
        X = self._validate_predict_X(X)
        return -2 * self.score(X) * X.shape[0] + 2 * self._n_parameters()

    # ------------------------------------------------------------------ persistence ---------
    _ARRAY_PARAMS = ("weights_init", "means_init", "precisions_init")
    _FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_")

    def save(self, path):
        """Write the model to a versioned ``.npz`` (no pickle).  Load with ``fastmix.load``."""
        self._check_fitted()
        params = self.get_params()
        scalars = {}
        arrays = {}
        for k, v in params.items():
            if k in self._ARRAY_PARAMS:
                if v is not None:
                    arrays["init__" + k] = np.asarray(v, dtype=np.float64)
            elif k == "random_state" and not (v is None or isinstance(v, (int, np.integer))):
                scalars[k] = None  # generators are not serialisable; documented
            else:
                scalars[k] = v.item() if isinstance(v, np.generic) else v
        meta = {"format_version": FORMAT_VERSION, "class": type(self).__name__,
                "params": scalars, "converged_": self.converged_, "n_iter_": self.n_iter_,
                "lower_bound_": self.lower_bound_, "lower_bounds_": self.lower_bounds_,
                "n_features_in_": self.n_features_in_}
        for name in self._FITTED:
            arrays["fit__" + name] = getattr(self, name)
        with open(path, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def _from_saved(cls, meta, arrays):
        """Rebuild a fitted model; any inconsistency raises (load turns it into ValueError)."""
        params = dict(meta["params"])
        for k in cls._ARRAY_PARAMS:
            params[k] = arrays.get("init__" + k)
        est = cls(**params)
        est._check_hyper()
        cov_cls = Covariance.registry[est.covariance_type]
        w = np.asarray(arrays["fit__weights_"], dtype=np.float64)
        m = np.asarray(arrays["fit__means_"], dtype=np.float64)
        covs = np.asarray(arrays["fit__covariances_"], dtype=np.float64)
        pcs = np.asarray(arrays["fit__precisions_cholesky_"], dtype=np.float64)
        K, D = est.n_components, int(meta["n_features_in_"])
        shapes = {"weights_": (w.shape, (K,)), "means_": (m.shape, (K, D)),
                  "covariances_": (covs.shape, cov_cls.shape(K, D)),
                  "precisions_cholesky_": (pcs.shape, cov_cls.shape(K, D))}
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"{name} has shape {got}, expected {want}")
            if not np.all(np.isfinite(arrays["fit__" + name])):
                raise ValueError(f"{name} contains NaN or infinity")
        if np.any(w < 0) or not abs(w.sum() - 1.0) < 1e-6:
            raise ValueError("weights_ are not a probability vector")
        est._set_params_from(GMMParams(w, m, cov_cls(covs, pcs)))
        est.converged_ = bool(meta["converged_"])
        est.n_iter_ = int(meta["n_iter_"])
        est.lower_bound_ = float(meta["lower_bound_"])
        est.lower_bounds_ = [float(v) for v in meta["lower_bounds_"]]
        est.n_features_in_ = D
        return est


MODEL_CLASSES = {"GaussianMixture": GaussianMixture}


def load(path):
    """Load a model written by ``save``.  Raises FileNotFoundError for a missing path and
    ValueError for files that are not fastmix models, are truncated or damaged, or come from a
    newer format version."""
    with open(path, "rb") as fh:  # a missing file raises FileNotFoundError, as open() does
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        raise ValueError(f"{path!s} is not a fastmix model file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile.BadZipFile, truncated members, CRC errors, ...
        raise ValueError(f"{path!s} is not a readable fastmix model file ({exc})") from exc
    if "meta" not in arrays:
        raise ValueError(f"{path!s} is not a fastmix model file (no metadata)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError as exc:
        raise ValueError(f"{path!s}: unreadable model metadata ({exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path!s}: model metadata is not a mapping")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path!s} has model format version {version!r}; this fastmix reads "
                         f"versions up to {FORMAT_VERSION}. Upgrade fastmix.")
    cls = MODEL_CLASSES.get(meta.get("class"))
    if cls is None:
        raise ValueError(f"{path!s} holds an unknown model class {meta.get('class')!r}")
    try:
        model = cls._from_saved(meta, arrays)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        raise ValueError(f"{path!s}: damaged fastmix model file ({type(exc).__name__}: {exc})") \
            from exc
    return model


__all__ = ["GaussianMixture", "load", "ConvergenceWarning", "DegenerateComponentWarning",
           "NotFittedError"]
