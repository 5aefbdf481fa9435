"""Thin scikit-learn-style estimators: they validate input, then call a driver."""
import copy
import inspect
import json
import math
import os
import sys
import warnings

import numpy as np

from . import kernels
from ._base import BaseEstimator, DensityMixin
from ._params import warn_at_caller
from ._params import (COVARIANCE_TYPES, Covariance, DegenerateComponentWarning, FullCovariance,
                      GMMParams, LowRankCovariance)
from ._stats import Stats
from ._validation import NotFittedError, check_array, check_random_state, check_sample_weight
from . import biglearn, distributed, expansion, inference, sgd
from . import io as sources
from .em import DEFAULT_CHUNK_ROWS, EMResult, run_em
from .init import _subsample, initial_params
from .online import OnlineState, check_step_params, online_update, run_online

FORMAT_VERSION = 1
INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")
NOISE_MODELS = ("diagonal", "isotropic")
DEVICES = ("cpu", "cuda")
#: Above this many features, materialising dense lowrank covariances/precisions warns.
DENSE_WARN_FEATURES = 1000
ALGORITHMS = ("batch", "online")
#: Default rows per online-EM update in fit(algorithm="online"), in kernel chunks.
ONLINE_BATCH_CHUNKS = 16


def _check_int(est, name, lo, optional=False):
    """The hyper-parameter ``name`` of ``est`` is an integer >= lo (or None when
    ``optional``), else ValueError."""
    v = getattr(est, name)
    if optional and v is None:
        return
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}{' or None' if optional else ''}, "
                         f"got {v!r}")


def _is_gpu_array(X):
    """True for arrays that live on a GPU (``__cuda_array_interface__``; the CUDA simulator's
    stand-ins).  Importing fastmix.gpu does not import numba-cuda."""
    from .gpu import is_device_array
    return is_device_array(X)


try:  # scikit-learn's own warning when it is installed, so filters on its category catch ours
    from sklearn.exceptions import ConvergenceWarning as _SkConvergenceWarning
    _CONVERGENCE_BASES = (_SkConvergenceWarning,)
except ImportError:  # scikit-learn is optional
    _CONVERGENCE_BASES = (UserWarning,)


def _fit_dtype(data):
    """The dtype of the fitted attributes for data (an array, Stream or device batch):
    float32 for float32 data, else float64."""
    dtype = getattr(data, "dtype", None)
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


def _as_input_dtype(out, X):
    """Per-row results ``out`` in float32 when the rows X are a float32 array (in memory,
    memmap, dask or GPU array); unchanged otherwise (the kernels return float64)."""
    if getattr(X, "dtype", None) == np.float32 and out.dtype != np.float32:
        return out.astype(np.float32)
    return out


class ConvergenceWarning(*_CONVERGENCE_BASES):
    """EM stopped at ``max_iter`` before the lower bound changed by less than ``tol``.  A
    UserWarning (and scikit-learn's ConvergenceWarning when scikit-learn is installed)."""


class GaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture model fitted by exact EM on fused Numba kernels.

    Same constructor, attributes and methods as ``sklearn.mixture.GaussianMixture``, plus
    ``sample_weight`` in ``fit``, ``chunk_size``, ``progress`` and ``save``/``fastmix.load``.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical", "lowrank"}, default="full"
        "lowrank": mixture of factor analysers, Sigma_k = W_k W_k^T + diag(psi_k) with
        ``W_k`` (D, n_factors); costs O(K D q) per row and per iteration, never O(D^2).
    tol : float, default=1e-3
        EM stops when the mean log-likelihood changes by less than ``tol``.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance (keeps collapsed components positive definite).
    max_iter : int, default=100
        EM iterations at most (passes for ``algorithm="online"``); 0 fits the initialisation
        only, as scikit-learn's ``GaussianMixture`` does.
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
        Show a tqdm progress bar over EM iterations (and, for data read from disk, over the
        rows of each pass).
    step_offset : float, default=1.0
        t0 of online EM's step size rho_t = (t + t0)^-kappa (``partial_fit``,
        ``fit(algorithm="online")``); see ``fastmix.online``.
    step_decay : float in (0.5, 1], default=0.6
        kappa of online EM's step size.
    batch_size : int or None, default=None
        Rows per online-EM update in ``fit(algorithm="online")`` (rounded up to whole chunks;
        default 16 chunks = 65536 rows).
    n_factors : int or None, default=None
        q, the number of factors of ``covariance_type="lowrank"`` (1 <= q < D); None means
        min(10, D - 1).  Ignored by the other covariance types.
    noise : {"diagonal", "isotropic"}, default="diagonal"
        lowrank noise: per-feature variances psi_k (factor analysers) or one variance per
        component, psi_k = sigma_k^2 I (mixture of probabilistic PCA).
    loadings_init : array (K, D, q) or None
        Initial factor loadings for ``covariance_type="lowrank"`` (instead of the per-component
        PCA of the initial clusters); the noise variances then start at the clusters' variances
        minus diag(W W^T), floored at 1 % of them.
    device : {"cpu", "cuda"}, default="cpu"
        "cuda": batch EM and ``predict``/``score_samples``/``predict_proba`` run on the GPU
        (``fastmix.gpu``, ``pip install 'fastmix[cuda]'``); each iteration returns only the
        statistics, the M-step runs on the host.  In-memory arrays that fit in 70 % of the
        free device memory are copied once and stay on the device; GPU arrays
        (``__cuda_array_interface__``: CuPy, PyTorch, numba) are used in place; files, memmaps,
        iterators and larger arrays are streamed host -> device every iteration in ~64 MiB
        chunks (pinned staging buffers, two CUDA streams, transfer overlapping compute).
        Every covariance type (lowrank: a fused Woodbury kernel,
        ``fastmix/kernels/cuda/lowrank.py``, for shapes whose tile row
        ``8 K (1 + q) + D * itemsize + 16`` bytes fits 40 KiB of shared memory, else a
        ValueError).  Initialisation (k-means, lowrank's per-cluster PCA) runs on the CPU.
        Online EM (``algorithm="online"``, ``partial_fit``) runs each batch's E-step on the
        GPU (the batch uploaded, or used in place when it is a GPU array).  Dask arrays raise
        a ValueError (CPU only).
        Results agree with "cpu" to rounding (different summation order) and are
        reproducible run to run.
    fixed : None or sequence of {"weights", "means", "covariances"}, default=None
        Parameter groups EM keeps at their initial values (from ``weights_init`` /
        ``means_init`` / ``precisions_init``, or from ``init_params``); the others get the
        M-step of the constrained model (e.g. covariances about fixed means).  Useful for
        known mixing proportions, fixed-bandwidth models and studies such as overspecified EM
        (``bench/overspecified_em.py``).

    Attributes
    ----------
    weights_ : (K,) float64 (float32 after a fit on float32 data, as for every fitted array)
    means_ : (K, D) float64
    covariances_, precisions_, precisions_cholesky_ : float64, shape by covariance_type
        full (K, D, D), tied (D, D), diag (K, D), spherical (K,).  For "lowrank" these dense
        (K, D, D) arrays are computed on each access (and warn above 1000 features); the model
        itself is ``loadings_`` (K, D, q) and ``noise_variances_`` (K, D).
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood per sample of the best initialisation (before its last M-step).
    lower_bounds_ : list of float
        The lower bound at each iteration of the best initialisation.
    n_features_in_ : int
    n_steps_ : int
        Online-EM updates done (``partial_fit`` calls, or batches of an online fit).

    Notes
    -----
    Densities are evaluated in the input's dtype (float32 stays float32); all statistics are
    accumulated in float64, with second moments centred on the current means, and the fitted
    attributes are returned in the input's dtype (float32 data: float32 attributes, rounded from
    the float64 parameters, as scikit-learn does).  A component whose covariance becomes
    singular (e.g. it collapses onto one point with ``reg_covar=0``) gets more diagonal
    regularisation and a ``DegenerateComponentWarning`` -- the fit continues, and never returns
    NaN parameters.  This differs on purpose from scikit-learn, which stops with a ValueError
    ("ill-defined empirical covariance") in that case.  An empty component keeps its
    regularised covariance and a tiny weight, as in scikit-learn.

    Data too large for memory: ``fit``, ``score``, ``predict`` ... accept a path (``.npy``,
    ``file.h5:/dataset``, ``.zarr``, ``.parquet``, ``.csv``), an ``np.memmap``, a
    ``fastmix.io.Source``, a list of chunk arrays or a callable returning an iterator of
    chunks (see ``fastmix.sources``).  Such data are read in blocks with bounded memory; a
    batch fit gives bit-identically the model of the same rows in memory.
    """

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6,
                 max_iter=100, n_init=1, init_params="kmeans", weights_init=None,
                 means_init=None, precisions_init=None, random_state=None, warm_start=False,
                 verbose=0, verbose_interval=10, chunk_size=None, progress=False,
                 step_offset=1.0, step_decay=0.6, batch_size=None, fixed=None, n_factors=None,
                 noise="diagonal", loadings_init=None, device="cpu"):
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
        self.step_offset = step_offset
        self.step_decay = step_decay
        self.batch_size = batch_size
        self.fixed = fixed
        self.n_factors = n_factors
        self.noise = noise
        self.loadings_init = loadings_init
        self.device = device

    # ------------------------------------------------------------------ validation ----------
    def _check_hyper(self):
        for name, lo in (("n_components", 1), ("max_iter", 0), ("n_init", 1), ("verbose", 0),
                         ("verbose_interval", 1)):
            _check_int(self, name, lo)
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
        _check_int(self, "chunk_size", 1, optional=True)
        _check_int(self, "batch_size", 1, optional=True)
        check_step_params(self.step_offset, self.step_decay)
        self._fixed_groups()
        _check_int(self, "n_factors", 1, optional=True)
        if self.noise not in NOISE_MODELS:
            raise ValueError(f"noise must be one of {NOISE_MODELS}, got {self.noise!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")

    def _gpu(self, X=None, algorithm="batch"):
        """fastmix.gpu when ``device="cuda"`` and the request is one it serves, else None (or a
        ValueError naming what is not available on the GPU yet)."""
        if getattr(self, "device", "cpu") != "cuda":
            return None
        what = None
        if X is not None and distributed.is_dask_array(X):
            what = "Dask arrays (fit them with device='cpu' on the cluster)"
        if what is not None:
            raise ValueError(f"device='cuda' does not support {what} yet; use device='cpu'")
        from . import gpu
        gpu.require_gpu()
        return gpu

    def _gpu_estep(self):
        """For online EM with ``device="cuda"``: ``estep(X, sw, params) -> Stats`` on the GPU
        (each batch uploaded, or used in place when it is device data); None on the CPU."""
        gpu = self._gpu()
        if gpu is None:
            return None

        def estep(X, sw, params):
            return gpu.e_step_stats(X, sw, params, gpu.DEFAULT_BLOCK_ROWS, gpu.DEFAULT_THREADS)
        return estep

    def _q(self, D):
        """The number of factors for D features (lowrank), validated against D."""
        q = min(10, D - 1) if self.n_factors is None else int(self.n_factors)
        if not 1 <= q < D:
            raise ValueError(f"n_factors must be in [1, n_features - 1] = [1, {D - 1}] for "
                             f"covariance_type='lowrank', got {q}" + (
                                 f" (n_features = {D}: lowrank needs at least 2 features)"
                                 if D < 2 else ""))
        return q

    def _fixed_groups(self):
        """``fixed`` as a validated tuple of parameter-group names."""
        from ._params import FIXABLE
        if self.fixed is None:
            return ()
        groups = (self.fixed,) if isinstance(self.fixed, str) else tuple(self.fixed)
        bad = [g for g in groups if g not in FIXABLE]
        if bad:
            raise ValueError(f"fixed may name {FIXABLE}, got {bad}")
        if set(groups) == set(FIXABLE):
            raise ValueError("fixed names every parameter group: nothing is left to fit")
        return tuple(g for g in FIXABLE if g in groups)

    @property
    def _chunk_rows(self):
        return DEFAULT_CHUNK_ROWS if self.chunk_size is None else int(self.chunk_size)

    def _user_init(self, D):
        """Validated copies of weights_init, means_init, precisions_init (or None)."""
        K = self.n_components
        w = m = p = None
        if self.weights_init is not None:
            # The messages start with scikit-learn's wording (code and tests match on it).
            w = np.array(self.weights_init, dtype=np.float64)
            if w.shape != (K,):
                raise ValueError(f"The parameter 'weights' should have the shape of {(K,)}, "
                                 f"but got {w.shape} (weights_init needs one weight per "
                                 "component)")
            if not np.all(np.isfinite(w)):
                raise ValueError("weights_init contains NaN or infinity")
            if np.any(w < 0) or np.any(w > 1):
                # scikit-learn's message labels the smallest weight "max value" and the largest
                # "min value"; kept verbatim for drop-in compatibility, then said plainly.
                raise ValueError(f"The parameter 'weights' should be in the range [0, 1], but "
                                 f"got max value {np.min(w):.5f}, min value {np.max(w):.5f} "
                                 f"(weights_init: smallest weight {np.min(w):.5g}, largest "
                                 f"{np.max(w):.5g})")
            if not abs(w.sum() - 1.0) < 1e-6:
                raise ValueError(f"The parameter 'weights' should be normalized, but got "
                                 f"sum(weights) = {w.sum():.5f} (weights_init sums to "
                                 f"{w.sum():.8g}, more than 1e-6 away from 1)")
            w = w / w.sum()
        if self.means_init is not None:
            m = np.array(self.means_init, dtype=np.float64)
            if m.shape != (K, D):
                raise ValueError(f"The parameter 'means' should have the shape of {(K, D)}, but "
                                 f"got {m.shape} (means_init is (n_components, n_features))")
            if not np.all(np.isfinite(m)):
                raise ValueError("means_init contains NaN or infinity")
        if self.covariance_type == "lowrank":
            if self.precisions_init is not None:
                raise ValueError("precisions_init is not used by covariance_type='lowrank'; "
                                 "give loadings_init (K, D, n_factors) instead")
            q = self._q(D)
            if self.loadings_init is not None:
                L = np.array(self.loadings_init, dtype=np.float64)
                if L.shape != (K, D, q):
                    raise ValueError(f"loadings_init should have shape ({K}, {D}, {q}), got "
                                     f"{L.shape}")
                if not np.all(np.isfinite(L)):
                    raise ValueError("loadings_init contains NaN or infinity")
                p = L
        elif self.precisions_init is not None:
            cls = Covariance.registry[self.covariance_type]
            ct = self.covariance_type
            p = np.array(self.precisions_init, dtype=np.float64)
            if p.shape != cls.shape(K, D):
                raise ValueError(f"The parameter '{ct} precision' should have the shape of "
                                 f"{cls.shape(K, D)}, but got {p.shape} (precisions_init for "
                                 f"covariance_type={ct!r})")
            try:
                p = cls.from_precisions(p)  # validates: finite, symmetric positive definite
            except ValueError as e:
                if "should be" not in str(e):  # NaN / infinity: fastmix's message as it is
                    raise
                need = "positive" if ct in ("diag", "spherical") else \
                    "symmetric, positive-definite"
                raise ValueError(f"'{ct} precision' should be {need}: {e}") from None
        return w, m, p

    #: The attribute whose presence means "fitted".
    _fitted_attr = "means_"

    def _check_fitted(self):
        if not hasattr(self, self._fitted_attr):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call "
                                 "'fit' with appropriate arguments before using this estimator.")

    def __sklearn_is_fitted__(self):
        return hasattr(self, self._fitted_attr)

    def _validate_predict_X(self, X):
        self._check_fitted()
        return check_array(X, n_features=self.n_features_in_, estimator=type(self).__name__)

    # ------------------------------------------------------------------ data ----------------
    def _stream(self, X, sample_weight=None, *, fitting):
        """(Stream over X, whether fastmix opened it).  In-memory array-likes are validated as a
        whole (check_array); out-of-core data block by block on their first pass."""
        if _is_gpu_array(X):
            return self._device_stream(X, sample_weight, fitting), False
        if distributed.is_dask_array(X):
            if not fitting:
                self._check_fitted()
                if X.ndim == 2 and X.shape[1] != self.n_features_in_:
                    raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} "
                                     f"is expecting {self.n_features_in_} features as input.")
            return distributed.DaskData(X, sample_weight, self._chunk_rows), False
        if not sources.is_out_of_core(X):
            if fitting:
                X = check_array(X, min_samples=2)
                sw = check_sample_weight(sample_weight, X.shape[0])
            else:
                X = self._validate_predict_X(X)
                sw = None
            return sources.as_stream(X, sw, self._chunk_rows), False
        column = sample_weight if _is_column_name(sample_weight) else None
        source = sources.as_source(X, weight_column=column)
        opened = not isinstance(X, sources.Source)
        try:
            weights = None if column is not None else _weight_source(sample_weight, source)
            if not fitting:
                self._check_fitted()
                if source.n_features != self.n_features_in_:
                    raise ValueError(f"X has {source.n_features} features, but "
                                     f"{type(self).__name__} is expecting "
                                     f"{self.n_features_in_} features as input.")
            owns = isinstance(sample_weight, (str, os.PathLike))
            try:
                stream = sources.Stream(source, self._chunk_rows, weights=weights)
            except BaseException:
                if owns and isinstance(weights, sources.Source):
                    weights.close()
                raise
            stream.owns_weights = owns
            return stream, opened
        except BaseException:
            if opened:
                source.close()
            raise

    def _device_stream(self, X, sample_weight, fitting):
        """A Stream over a GPU array (read back to the host only block by block, for
        validation and initialisation); ``device="cuda"`` only."""
        if getattr(self, "device", "cpu") != "cuda":
            raise ValueError(f"X is a GPU array ({type(X).__name__}); use device='cuda', or copy "
                             "it to the host first")
        from . import gpu
        source = gpu.DeviceSource(X)
        if fitting:
            self._check_rows(source.n_rows)
            sw = check_sample_weight(gpu.device_weights_to_host(sample_weight), source.n_rows)
        else:
            self._check_fitted()
            if source.n_features != self.n_features_in_:
                raise ValueError(f"X has {source.n_features} features, but {type(self).__name__} "
                                 f"is expecting {self.n_features_in_} features as input.")
            sw = None
        return sources.Stream(source, self._chunk_rows, weights=sw, prefetch=False)

    def _check_rows(self, n_rows):
        if n_rows is None:
            return
        if n_rows < 2:
            raise ValueError(f"Found array with {n_rows} sample(s) while a minimum of 2 is "
                             "required.")
        if n_rows < self.n_components:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = "
                             f"{self.n_components}, n_samples = {n_rows}")

    # ------------------------------------------------------------------ fitting -------------
    def _initial(self, data, rng, user, sample_only=False):
        w, m, cov = user
        if w is None or m is None or cov is None or self.covariance_type == "lowrank":
            if sample_only:  # online EM: initialise from the k-means sample alone
                Xs, sws = _subsample(data, self.n_components, rng)
                self._check_rows(Xs.shape[0])
                data = Xs if sws is None else (Xs, sws)
            lowrank = None
            if self.covariance_type == "lowrank":
                X0 = data[0] if isinstance(data, tuple) else data
                lowrank = dict(n_factors=self._q(X0.shape[1] if isinstance(X0, np.ndarray)
                                                 else X0.n_features),
                               isotropic=self.noise == "isotropic", loadings=cov)
                cov = None
            params = initial_params(data[0] if isinstance(data, tuple) else data,
                                    data[1] if isinstance(data, tuple) else None,
                                    self.n_components, self.covariance_type, self.init_params,
                                    rng, self.reg_covar, self._chunk_rows, lowrank=lowrank)
            if m is None and self.n_components > 1:
                distinct = _n_distinct(params.means)
                if distinct < self.n_components:  # as scikit-learn's KMeans warns
                    warn_at_caller(f"Number of distinct clusters ({distinct}) found smaller than "
                                   f"n_components ({self.n_components}). Possibly due to "
                                   "duplicate points in X.", ConvergenceWarning)
            w = params.weights if w is None else w
            m = params.means if m is None else m
            cov = params.cov if cov is None else cov
        return GMMParams(w, m, cov)

    def _params(self):
        """The fitted attributes as float64 GMMParams (float32 attributes are widened)."""
        f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
        if self.covariance_type == "lowrank":
            cov = LowRankCovariance(f64(self.loadings_), f64(self.noise_variances_),
                                    self.noise == "isotropic")
        else:
            cls = Covariance.registry[self.covariance_type]
            cov = cls(f64(self.covariances_), f64(self.precisions_cholesky_))
        return GMMParams(f64(self.weights_), f64(self.means_), cov)

    _DENSE = ("covariances_", "precisions_", "precisions_cholesky_")

    def _set_params_from(self, params, dtype=np.float64):
        """Set the fitted attributes from float64 ``params``, in ``dtype`` (the input's: a
        float32 fit has float32 attributes, as in scikit-learn)."""
        cast = lambda a: np.asarray(a, dtype=dtype)  # noqa: E731
        self.weights_ = cast(params.weights)
        self.means_ = cast(params.means)
        if params.kind == "lowrank":
            self.loadings_ = cast(params.cov.loadings)
            self.noise_variances_ = cast(params.cov.noise_variances)
            for name in self._DENSE:  # computed on access (__getattr__)
                self.__dict__.pop(name, None)
            return
        for name in ("loadings_", "noise_variances_"):
            self.__dict__.pop(name, None)
        self.covariances_ = cast(params.cov.covariances)
        self.precisions_cholesky_ = cast(params.cov.precisions_cholesky)
        cov = params.cov
        if np.dtype(dtype) != np.float64:  # from the stored (rounded) factor, as load rebuilds it
            cov = type(cov)(np.asarray(self.covariances_, dtype=np.float64),
                            np.asarray(self.precisions_cholesky_, dtype=np.float64))
        self.precisions_ = cast(cov.precisions)

    def __getattr__(self, name):
        # Only reached when normal lookup fails: dense views of a fitted lowrank model.
        if name in GaussianMixture._DENSE and "loadings_" in self.__dict__:
            D = self.__dict__["loadings_"].shape[1]
            if D > DENSE_WARN_FEATURES:
                K = self.__dict__["loadings_"].shape[0]
                warnings.warn(f"materialising dense lowrank {name} for {D} features: "
                              f"{K * D * D * 8 / 2**20:.0f} MiB; use loadings_ and "
                              "noise_variances_ instead", UserWarning, stacklevel=2)
            return np.asarray(getattr(self._params().cov, name[:-1]),
                              dtype=self.__dict__["loadings_"].dtype)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def fit(self, X, y=None, sample_weight=None, *, algorithm="batch", checkpoint=None,
            resume=False):
        """Estimate the parameters with EM.

        Parameters
        ----------
        X : array-like (N, D) of real numbers (float32 stays float32, others become float64),
            or out-of-core data: a path (``.npy``, ``file.h5:/dataset``, ``.zarr``,
            ``.parquet``, ``.csv``), an ``np.memmap``, a ``fastmix.io.Source``, a list of
            (n_i, D) chunk arrays, or a callable returning an iterator of chunks.
        y : ignored
        sample_weight : (N,) non-negative weights, optional.  For out-of-core data also a
            path to a ``.npy`` of N weights, a 1-D random-access Source, or the name of a
            weight column of a Parquet/CSV file.
        algorithm : {"batch", "online"}, default="batch"
            "batch": exact EM, one pass over the data per iteration (out-of-core data give
            bit-identically the in-memory model for the same ``chunk_size``).  "online":
            stepwise EM (``fastmix.online``) in batches of ``batch_size`` rows, initialised
            from the k-means sample alone; ``max_iter`` bounds the passes.
        checkpoint : path, optional
            Save the model (atomically) after every iteration/pass.  Needs ``n_init=1``.
        resume : bool, default=False
            With ``checkpoint``: if the file exists, continue from it instead of starting
            over; the result equals an uninterrupted fit's.

        Returns
        -------
        self
        """
        self._fit(X, sample_weight, algorithm, checkpoint, resume)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return the most probable component of each row (N,) int64."""
        X_mem = self._fit(X, sample_weight)
        return self.predict(X if X_mem is None else X_mem)

    def _fit(self, X, sample_weight, algorithm="batch", checkpoint=None, resume=False):
        """Fit; returns the validated in-memory array (None for out-of-core data)."""
        self._check_hyper()
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        if checkpoint is not None and self.n_init != 1:
            raise ValueError("checkpoint needs n_init=1 (one initialisation to resume)")
        if resume and checkpoint is None:
            raise ValueError("resume=True needs a checkpoint path")
        if checkpoint is not None:  # before any work: a bad path fails now, naming it
            sources.check_output_path(checkpoint, "checkpoint")
        gpu = self._gpu(X, algorithm)
        data, opened = self._stream(X, sample_weight, fitting=True)
        if algorithm == "online" and getattr(data, "is_dask", False):
            raise ValueError("algorithm='online' is not available for dask arrays (batch EM is; "
                             "online EM is sequential by nature)")
        try:
            self._device_data = None
            if gpu is not None and algorithm == "batch":  # (online EM uploads batch by batch)
                X0 = data.in_memory
                if isinstance(data.source, gpu.DeviceSource):  # used in place, no copy
                    self._device_data = gpu.to_gpu(data.source.X, data.weights)
                elif X0 is not None and gpu.fits_on_device(X0.nbytes):
                    # rows (and weights) go to the device once per fit and stay there
                    self._device_data = gpu.to_gpu(X0, data.weights)
                else:  # out-of-core, or larger than the device: streamed every iteration
                    self._device_data = gpu.StreamedData(data, gpu.DEFAULT_BLOCK_ROWS,
                                                         gpu.DEFAULT_THREADS)
            best, D = self._fit_stream(data, algorithm, checkpoint, resume)
        finally:
            if getattr(self._device_data, "streamed", False):
                self._device_data.close()
            self._device_data = None  # frees the device copy
            if opened:
                data.close()
        if not best.converged and self.max_iter > 0:
            warnings.warn("Best performing initialization did not converge. Try different init "
                          "parameters, or increase max_iter, tol, or check for degenerate data.",
                          ConvergenceWarning, stacklevel=3)
        self._set_params_from(best.params, _fit_dtype(data))
        self.converged_ = bool(best.converged)
        self.n_iter_ = int(best.n_iter)
        self.lower_bound_ = float(best.lower_bound)
        self.lower_bounds_ = list(best.lower_bounds)
        self.iteration_times_ = list(best.iter_times)
        self.n_features_in_ = D
        self._fitted_on = None  # set on checkpoint snapshots only
        if algorithm == "online":
            self._online = best.state
            self.n_steps_ = best.state.t + 1 if best.state is not None else 0
        else:
            self._online = None
        return data.in_memory

    def _fit_stream(self, data, algorithm, checkpoint, resume):
        D = data.n_features
        self._check_rows(data.n_rows)
        user = self._user_init(D)
        if hasattr(self, "n_features_in_") and self.warm_start and D != self.n_features_in_:
            raise ValueError(f"X has {D} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input.")
        start = None
        record = None if checkpoint is None else sources.data_record(data)
        if resume and os.path.exists(checkpoint):
            start = self._from_checkpoint(checkpoint, D, algorithm, record)
            if start.converged or start.n_iter >= self.max_iter:
                return start, D
        do_init = start is None and not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1
        rng = check_random_state(self.random_state)
        with kernels.blas_single_threaded():
            best = None
            for init in range(n_init):
                if self.verbose:
                    print(f"Initialization {init}")
                if start is not None:
                    prior = start
                elif do_init:
                    params = self._initial(data, rng, user, sample_only=algorithm == "online")
                    self._check_rows(data.n_rows)
                    prior = EMResult(params, -np.inf, 0, False)
                else:
                    prior = EMResult(self._params(), self.lower_bound_, 0, False,
                                     state=getattr(self, "_online", None))
                if self.max_iter == 0:
                    result = prior
                else:
                    result = self._run(data, prior, init, n_init, algorithm, checkpoint,
                                       record)
                if best is None or result.lower_bound > best.lower_bound:
                    best = result
        return best, D

    #: Parameters that may change between a checkpoint and its resumption (they do not change
    #: the iterations already done); every other parameter must match.
    _RESUME_FREE = ("max_iter", "progress", "verbose", "verbose_interval", "device",
                    "warm_start", "n_init")

    def _from_checkpoint(self, path, D, algorithm, record=None):
        """The fit state saved in checkpoint ``path``; ValueError when it was written for other
        data (``record``: ``io.data_record`` of this fit's data) or other parameters."""
        ck = load(path)
        if not isinstance(ck, GaussianMixture):
            raise ValueError(f"checkpoint {path!s} holds a {type(ck).__name__}, not a "
                             f"{type(self).__name__} checkpoint")
        mine, theirs = self.get_params(), ck.get_params()
        diff = []
        for name in mine:
            if name in self._RESUME_FREE:
                continue
            a, b = theirs.get(name), mine[name]
            if name == "random_state" and not all(v is None or isinstance(v, (int, np.integer))
                                                  for v in (a, b)):
                continue  # a generator is not saved; nothing to compare
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                same = a is not None and b is not None and np.array_equal(
                    np.asarray(a, np.float64), np.asarray(b, np.float64))
            else:
                same = a == b
            if not same:
                diff.append(f"{name}={_short(a)} vs {_short(b)}")
        saved = getattr(ck, "_fitted_on", None)
        if saved is None:
            raise ValueError(f"checkpoint {path!s} does not record the data it was fitted on "
                             "(not written as a checkpoint, or by an older fastmix); fit without "
                             "resume or remove it")
        if record is not None:
            diff += sources.record_differences(saved, record)
        if diff:
            raise ValueError(f"checkpoint {path!s} was written for other data or parameters "
                             f"(checkpoint vs now: {'; '.join(diff)}); start over without "
                             "resume (--resume) or use another checkpoint file")
        if ck.n_features_in_ != D:
            raise ValueError(f"checkpoint {path!s} is for {ck.n_features_in_} features, the data "
                             f"have {D}")
        if (getattr(ck, "_online", None) is not None) != (algorithm == "online"):
            raise ValueError(f"checkpoint {path!s} was written by a different algorithm")
        return EMResult(ck._params(), ck.lower_bound_, ck.n_iter_, ck.converged_,
                        list(ck.lower_bounds_), [], state=getattr(ck, "_online", None))

    def _checkpoint_saver(self, path, algorithm, record=None, data=None):
        def save(result):
            snap = _clone(self)
            if record is not None:  # a CSV file's row count is known after the first pass
                n = record["n_rows"] if record["n_rows"] is not None else data.n_rows
                snap._fitted_on = dict(record, n_rows=None if n is None else int(n))
            snap._set_params_from(result.params)
            snap.converged_ = bool(result.converged)
            snap.n_iter_ = int(result.n_iter)
            snap.lower_bound_ = float(result.lower_bound)
            snap.lower_bounds_ = list(result.lower_bounds)
            snap.n_features_in_ = result.params.means.shape[1]
            snap._online = getattr(result, "state", None) if algorithm == "online" else None
            snap.save(path)
        return save

    def _run(self, data, prior, init, n_init, algorithm, checkpoint, record=None):
        bar = rows_bar = None
        total = self.max_iter
        if self.progress:
            from tqdm.auto import tqdm
            desc = "EM" if n_init == 1 else f"EM init {init + 1}/{n_init}"
            if algorithm == "online":
                desc = "online EM passes"
            bar = tqdm(total=total, initial=prior.n_iter, desc=desc, unit="it",
                       file=sys.stderr)
            if data.in_memory is None:
                rows_bar = tqdm(total=data.n_rows, desc="rows", unit="row", unit_scale=True,
                                leave=False, file=sys.stderr)
        saver = None if checkpoint is None else self._checkpoint_saver(checkpoint, algorithm,
                                                                       record, data)
        done = prior.n_iter
        history = list(prior.lower_bounds)

        def callback(n_iter, lb, change, dt, params, state=None):
            it = done + n_iter
            if bar is not None:
                bar.update(1)
                bar.set_postfix(lower_bound=f"{lb:.6g}", change=f"{change:.3g}",
                                sec=f"{dt:.3f}")
            if rows_bar is not None:
                rows_bar.reset(total=data.n_rows)
            if self.verbose >= 2 and it % self.verbose_interval == 0:
                print(f"  Iteration {it}\t time lapse {dt:.5f}s\t ll change {change:.5g}")
            if saver is not None:
                history.append(lb)
                saver(EMResult(params, lb, it, abs(change) < self.tol, list(history),
                               state=state))

        on_block = None if rows_bar is None else rows_bar.update
        try:
            if algorithm == "online":
                batch = self.batch_size or ONLINE_BATCH_CHUNKS * self._chunk_rows
                result = run_online(data, None, prior.params, prior.state,
                                    reg_covar=float(self.reg_covar), tol=float(self.tol),
                                    max_passes=int(self.max_iter) - done,
                                    t0=float(self.step_offset), kappa=float(self.step_decay),
                                    chunk_rows=self._chunk_rows, batch_rows=batch,
                                    lower_bound=prior.lower_bound, callback=callback,
                                    on_block=on_block, fixed=self._fixed_groups(),
                                    estep=self._gpu_estep())
            elif getattr(self, "_device_data", None) is not None:
                from . import gpu
                kw = dict(reg_covar=float(self.reg_covar), tol=float(self.tol),
                          max_iter=int(self.max_iter) - done, lower_bound=prior.lower_bound,
                          callback=callback, fixed=self._fixed_groups())
                if self._device_data.streamed:  # host data sent through the device per pass
                    result = gpu.run_em_gpu_streamed(self._device_data, prior.params, **kw)
                else:                           # rows resident on the device
                    result = gpu.run_em_gpu(self._device_data, None, prior.params,
                                            block_rows=gpu.DEFAULT_BLOCK_ROWS,
                                            threads=gpu.DEFAULT_THREADS, **kw)
            else:
                result = run_em(data, None, prior.params, reg_covar=float(self.reg_covar),
                                tol=float(self.tol), max_iter=int(self.max_iter) - done,
                                lower_bound=prior.lower_bound, callback=callback,
                                on_block=on_block, fixed=self._fixed_groups())
        finally:
            if rows_bar is not None:
                rows_bar.close()
            if bar is not None:
                bar.close()
        result.n_iter += done
        result.lower_bounds = list(prior.lower_bounds) + list(result.lower_bounds)
        if self.verbose:
            print(f"Initialization {'converged' if result.converged else 'did not converge'}. "
                  f"lower bound {result.lower_bound:.6g}")
        return result

    def partial_fit(self, X, y=None, sample_weight=None):
        """One online (stepwise) EM update with the rows ``X`` (n, D); see ``fastmix.online``.

        The first call initialises the model from ``X`` (``init_params`` on these rows, which
        need n >= n_components) and sets the running statistics from it.  Each later call
        blends ``X``'s statistics in with step rho_t = (t + step_offset)^-step_decay.  After a
        batch ``fit``, the first call continues from the fitted parameters.
        ``lower_bound_`` is the mean log-likelihood of ``X`` under the parameters before the
        update.  Returns self.
        """
        self._check_hyper()
        gpu = self._gpu(X, algorithm="online")
        fitted = hasattr(self, "means_")
        if gpu is not None and _is_gpu_array(X):  # checked on the device, used in place
            batch, sw = gpu.device_rows(X, sample_weight, min_samples=1), None
            # the first call initialises on the host: the rows come back for that only
            X, init_sw = batch.to_host() if not fitted else (batch, None)
        else:
            if _is_gpu_array(X):
                raise ValueError(f"X is a GPU array ({type(X).__name__}); use device='cuda', or "
                                 "copy it to the host first")
            X = check_array(X, min_samples=1)
            sw = init_sw = check_sample_weight(sample_weight, X.shape[0])
            batch = X
        if fitted and X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        with kernels.blas_single_threaded():
            if not fitted:
                if X.shape[0] < self.n_components:
                    raise ValueError(f"the first partial_fit needs at least n_components="
                                     f"{self.n_components} rows, got {X.shape[0]}")
                rng = check_random_state(self.random_state)
                params = self._initial(X if init_sw is None else (X, init_sw), rng,
                                       self._user_init(X.shape[1]))
                state = None
            else:
                params = self._params()
                state = getattr(self, "_online", None)
            params, state, ll = online_update(
                batch, sw, params, state, reg_covar=float(self.reg_covar),
                t0=float(self.step_offset), kappa=float(self.step_decay),
                chunk_rows=self._chunk_rows, fixed=self._fixed_groups(),
                estep=self._gpu_estep())
        self._set_params_from(params, _fit_dtype(batch))
        self._online = state
        self.n_steps_ = state.t + 1
        self.n_iter_ = self.n_steps_
        self.converged_ = False
        self.lower_bound_ = float(ll)
        self.lower_bounds_ = [float(ll)]
        self.iteration_times_ = []
        self.n_features_in_ = X.shape[1]
        return self

    # ------------------------------------------------------------------ inference -----------
    def _log_prob(self, X, want_resp=False):
        gpu = self._gpu(X)
        if gpu is not None and _is_gpu_array(X):  # in place; NaN/inf: non-finite log p
            self._device_stream(X, None, fitting=False)  # checks fitted and the shape
            out = gpu.log_prob(X, self._params(), want_resp, block_rows=gpu.DEFAULT_BLOCK_ROWS,
                               threads=gpu.DEFAULT_THREADS)
            gpu.check_log_prob(out[0])
            return out
        if gpu is not None and not sources.is_out_of_core(X):
            X = self._validate_predict_X(X)
            if gpu.fits_on_device(X.nbytes):
                return gpu.log_prob(X, self._params(), want_resp,
                                    block_rows=gpu.DEFAULT_BLOCK_ROWS,
                                    threads=gpu.DEFAULT_THREADS)
        data, opened = self._stream(X, fitting=False)
        if getattr(data, "is_dask", False):  # lazy dask arrays, computed on the cluster
            kp = self._params().kernel_params(data.dtype)
            return (data.log_prob_arrays(kp, "logp"), data.log_prob_arrays(kp, "labels"),
                    data.log_prob_arrays(kp, "proba") if want_resp else None)
        try:
            if gpu is not None:  # out-of-core, or larger than the device: block by block
                return gpu.log_prob_blocks(data, self._params(), want_resp,
                                           gpu.DEFAULT_BLOCK_ROWS, gpu.DEFAULT_THREADS)
            return inference.log_prob(data, self._params(), self._chunk_rows, want_resp)
        finally:
            if opened:
                data.close()

    def _score_sum(self, X):
        """(sum of log p(x), number of rows, mean); out-of-core data read block by block."""
        if distributed.is_dask_array(X):
            logp = self.score_samples(X)
            total = float(logp.sum().compute())
            return total, logp.shape[0], total / logp.shape[0]
        if not sources.is_out_of_core(X):
            logp = self.score_samples(X)
            # the mean of score_samples, as scikit-learn defines score; the total in float64
            return float(np.sum(logp, dtype=np.float64)), logp.shape[0], float(np.mean(logp))
        data, opened = self._stream(X, fitting=False)
        try:
            total, n = inference.total_log_likelihood(data, self._params(), self._chunk_rows)
        finally:
            if opened:
                data.close()
        return total, n, total / n

    def iter_predict(self, X, proba=False):
        """Labels (or responsibilities with ``proba=True``) block by block: yields
        (start_row, labels (n,) int64 | resp (n, K) float64).  For data larger than memory
        (e.g. writing labels of a file to another file); the arrays are new for each block."""
        data, opened = self._stream(X, fitting=False)
        try:
            for start, _, labels, resp in inference.iter_log_prob(data, self._params(),
                                                                  self._chunk_rows, proba):
                yield start, (resp if proba else labels)
        finally:
            if opened:
                data.close()

    def score_samples(self, X):
        """log p(x) of each row, (N,) float64 (float32 for float32 X, as in scikit-learn)."""
        return _as_input_dtype(self._log_prob(X)[0], X)

    def score(self, X, y=None):
        """Mean log-likelihood per row (out-of-core data: read block by block)."""
        return self._score_sum(X)[2]

    def predict(self, X):
        """Most probable component of each row, (N,) int64."""
        return self._log_prob(X)[1]

    def predict_proba(self, X):
        """Responsibilities (N, K) float64 (float32 for float32 X, as in scikit-learn)."""
        return _as_input_dtype(self._log_prob(X, want_resp=True)[2], X)

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
        self._check_fitted()
        total, n, _ = self._score_sum(X)
        return -2 * total + self._n_parameters() * math.log(n)

    def aic(self, X):
        """Akaike information criterion on X (lower is better)."""
        self._check_fitted()
        total, n, _ = self._score_sum(X)
        return -2 * total + 2 * self._n_parameters()

    # ------------------------------------------------------------------ persistence ---------
    _ARRAY_PARAMS = ("weights_init", "means_init", "precisions_init", "loadings_init")
    _FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_")
    _FITTED_LOWRANK = ("weights_", "means_", "loadings_", "noise_variances_")

    def _fitted_names(self):
        return self._FITTED_LOWRANK if self.covariance_type == "lowrank" else self._FITTED

    def save(self, path):
        """Write the model to a versioned ``.npz`` (no pickle; atomically: temporary file, then
        rename).  Load with ``fastmix.load``.  A model trained with ``partial_fit`` keeps its
        running statistics, so ``partial_fit`` continues after loading."""
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
        if getattr(self, "_fitted_on", None) is not None:  # a checkpoint: what it was fitted on
            meta["fitted_on"] = self._fitted_on
        for name in self._fitted_names():
            arrays["fit__" + name] = getattr(self, name)
        state = getattr(self, "_online", None)
        if state is not None:  # running statistics: partial_fit continues after load
            st = state.stats
            meta["online"] = {"t": int(state.t), "ll": float(st.ll), "ws": float(st.ws),
                              "n_steps_": int(getattr(self, "n_steps_", state.t + 1))}
            for f in ("nk", "s1", "s2", "centre", "gcentre"):
                arrays["online__" + f] = getattr(st, f)
        _atomic_write(path, lambda fh: np.savez(fh, meta=np.array(json.dumps(meta)), **arrays))

    @classmethod
    def _from_saved(cls, meta, arrays):
        """Rebuild a fitted model; any inconsistency raises (load turns it into ValueError)."""
        params = dict(meta["params"])
        accepted = inspect.signature(cls.__init__).parameters
        for k in cls._ARRAY_PARAMS:
            if k in accepted:
                params[k] = arrays.get("init__" + k)
        est = cls(**params)
        est._check_hyper()
        w = np.asarray(arrays["fit__weights_"], dtype=np.float64)
        m = np.asarray(arrays["fit__means_"], dtype=np.float64)
        K, D = est.n_components, int(meta["n_features_in_"])
        shapes = {"weights_": (w.shape, (K,)), "means_": (m.shape, (K, D))}
        if est.covariance_type == "lowrank":
            q = est._q(D)
            a = np.asarray(arrays["fit__loadings_"], dtype=np.float64)
            b = np.asarray(arrays["fit__noise_variances_"], dtype=np.float64)
            shapes.update(loadings_=(a.shape, (K, D, q)), noise_variances_=(b.shape, (K, D)))
            make_cov = lambda: LowRankCovariance(a, b, est.noise == "isotropic")  # noqa: E731
        else:
            cov_cls = Covariance.registry[est.covariance_type]
            a = np.asarray(arrays["fit__covariances_"], dtype=np.float64)
            b = np.asarray(arrays["fit__precisions_cholesky_"], dtype=np.float64)
            shapes.update(covariances_=(a.shape, cov_cls.shape(K, D)),
                          precisions_cholesky_=(b.shape, cov_cls.shape(K, D)))
            make_cov = lambda: cov_cls(a, b)  # noqa: E731
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"{name} has shape {got}, expected {want}")
            if not np.all(np.isfinite(arrays["fit__" + name])):
                raise ValueError(f"{name} contains NaN or infinity")
        if np.any(w < 0) or not abs(w.sum() - 1.0) < 1e-6:
            raise ValueError("weights_ are not a probability vector")
        est._set_params_from(GMMParams(w, m, make_cov()), _fit_dtype(arrays["fit__means_"]))
        est.converged_ = bool(meta["converged_"])
        est.n_iter_ = int(meta["n_iter_"])
        est.lower_bound_ = float(meta["lower_bound_"])
        est.lower_bounds_ = [float(v) for v in meta["lower_bounds_"]]
        est.n_features_in_ = D
        est._fitted_on = meta.get("fitted_on")
        est._online = None
        if "online" in meta:
            on = meta["online"]
            st = Stats(est.covariance_type, *(np.asarray(arrays["online__" + f], np.float64)
                                              for f in ("nk", "s1", "s2", "centre", "gcentre")),
                       float(on["ll"]), float(on["ws"]))
            if st.nk.shape != (K,) or st.s1.shape != (K, D) \
                    or st.s2.shape != kernels.s2_shape(
                        kernels.KIND_CODES[est.covariance_type], K, D,
                        est._q(D) if est.covariance_type == "lowrank" else 0):
                raise ValueError("online statistics have inconsistent shapes")
            est._online = OnlineState(st, int(on["t"]))
            est.n_steps_ = int(on["n_steps_"])
        return est


class GMMExpansion(DensityMixin, BaseEstimator):
    """Density estimate by "GMM expansion": many fixed Gaussian components (an even grid, or
    k-means++ centres in D > 2) with one shared bandwidth; only the weights are learned, by
    weights-only EM passes over the data (see ``fastmix.expansion`` for the exact rules).

    Default settings (``n_nodes="auto"``), tensor grids (D <= 2):

    * grid bounds: the q and 1 - q quantiles of each feature, q = max(0.001, 5 / n) on a sample
      of n rows, widened by 5 % of their distance on each side and kept inside the data range
      (``bounds`` overrides them).  Heavy tails therefore do not stretch the grid; rows beyond
      it still count: the kernel evaluates them against the nodes nearest to them (the edge
      nodes), so their share of the weight lands on the edge nodes (the weights sum to one) and
      the density beyond the grid decays like the edge nodes' Gaussians.
    * bandwidth: sigma_d = f * s_d * n ** (-1 / (D + 4)), s_d = min(standard deviation,
      interquartile range / 1.349), n the effective number of rows ((sum w)^2 / sum w^2); node
      spacing = sigma (ceil(span / sigma) + 1 nodes per dimension, at most 2048 in 1-D and 256
      per dimension in 2-D; where that cap binds the bandwidth is the spacing).
    * f in (0.25, 0.35, 0.5, 0.7) and the number of weights-only EM steps (at most 8) are
      chosen by the held-out log-likelihood: on a sample of at most 20 000 rows (every k-th row
      of in-memory data; a uniform sample of a stream), every 5th row is held out, each f is
      fitted on the others with steps stopped when the held-out mean log-likelihood (rows
      inside the grid, each at least log(1e-6 / grid volume)) stops increasing, and the search
      over f (increasing) stops at the first f that scores below the best.  The model is then
      fitted on all rows with that f (the rule at the full n) and that many steps.
    * cost: the selection runs on the sample (at most 4 x 8 passes over 16 000 rows plus the
      held-out scoring), the final fit ``n_iter_`` (<= 8) passes over the data, plus one pass
      for the data range of an out-of-core source.  Below 100 rows there is no selection:
      f = 0.5 and one step.  ``partial_fit`` never selects: its first call fixes the grid by
      the rule with f = 0.5, and the weights are one step (as for explicit settings).
    * D > 2 (k-means++ centres): min(64, rows in the k-means sample) centres, the spacing rule
      for the bandwidth, one step.

    ``bench/results/expansion.md`` compares these defaults with EM's best K on the benchmark
    targets.  An explicit ``n_nodes`` keeps the plain rules below: grid over the data range
    (or ``bounds``), bandwidth = spacing unless ``bandwidth`` is given, ``n_iter`` steps (1 for
    ``n_iter="auto"``).

    Parameters
    ----------
    n_nodes : "auto" or int >= 2, default="auto"
        "auto": chosen from the data (above).  An int: nodes per dimension of a tensor grid
        (M = n_nodes ** D) over the data range, or the number of centres for
        ``grid="kmeans++"``.
    bandwidth : None or float > 0, default=None
        sigma in data units (isotropic).  None: chosen by the held-out likelihood with
        ``n_nodes="auto"``, the grid spacing in each dimension with an explicit ``n_nodes``.
        A number with ``n_nodes="auto"``: spacing = bandwidth, only the steps are chosen.
    variant : {"em", "kde"}, default="em"
        "em": weights-only EM steps from uniform weights (``n_iter`` steps in all); "kde":
        weights proportional to the kernel density at the nodes (tensor grids; one pass).
    n_iter : "auto" or int >= 1, default="auto"
        Weights-only EM steps (passes) for ``variant="em"``.  "auto": chosen by the held-out
        likelihood with ``n_nodes="auto"`` on a tensor grid, else 1.
    grid : {"auto", "tensor", "kmeans++"}, default="auto"
        "auto" = "tensor" for D <= 2, "kmeans++" otherwise.
    bounds : None or (lo, hi) arrays of shape (D,), default=None
        Extent of the grid; default: trimmed quantiles (``n_nodes="auto"`` on a tensor grid)
        or the data range (a pass for out-of-core data).
    random_state : None, int or Generator (k-means++ centres; the selection sample of a
        stream)
    chunk_size : int or None (rows per kernel chunk, default 4096)
    device : {"cpu", "cuda"}, default="cpu"
        "cuda": the weight passes and ``score_samples``/``score`` run CUDA kernels
        (``fastmix.kernels.cuda.expansion`` for tensor grids, the diag E-step kernel for
        centres; ``pip install 'fastmix[cuda]'``).  In-memory NumPy rows are validated on the
        host and copied to the device once per call; arrays that expose
        ``__cuda_array_interface__`` (CuPy, PyTorch, numba) are used in place, checked on the
        device (C-contiguous float32/float64, no NaN/infinity), and must be given with
        device="cuda"; out-of-core sources and ``partial_fit`` upload their rows block by
        block / call by call.  Node placement (data range, k-means++ centres, the automatic
        selection on its sample) runs on the CPU: k-means++ and the automatic settings copy
        device rows to the host once, the range of device rows is a device pass.  Results
        agree with "cpu" to rounding (different summation order) and are bit-reproducible run
        to run.

    Attributes
    ----------
    weights_ : (M,) float64
    means_ : (M, D) float64 node positions
    sigma_ : (D,) float64 bandwidth
    grid_shape_ : tuple of int (tensor grid) or () (centres)
    bounds_ : (2, D) float64
    lower_bound_ : float
        Mean log-likelihood of the data under the weights of the last pass (uniform weights for
        one step).
    n_iter_ : int
    n_features_in_ : int
    auto_ : expansion.AutoChoice or None
        What the automatic settings chose on a tensor grid (factor f, steps, bounds, spread,
        effective rows, held-out score and steps per tried f); None with an explicit
        ``n_nodes`` or k-means++ centres.
    """

    def __init__(self, n_nodes="auto", *, bandwidth=None, variant="em", n_iter="auto",
                 grid="auto", bounds=None, random_state=None, chunk_size=None, device="cpu"):
        self.n_nodes = n_nodes
        self.bandwidth = bandwidth
        self.variant = variant
        self.n_iter = n_iter
        self.grid = grid
        self.bounds = bounds
        self.random_state = random_state
        self.chunk_size = chunk_size
        self.device = device

    def _check_hyper(self):
        for name, lo in (("n_nodes", 2), ("n_iter", 1)):  # a grid needs two nodes per dimension
            v = getattr(self, name)
            if not (isinstance(v, str) and v == "auto"):
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                    raise ValueError(f"{name} must be 'auto' or an integer >= {lo}, got {v!r}")
        b = self.bandwidth
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float, np.number))
                              or not (math.isfinite(b) and b > 0)):
            raise ValueError(f"bandwidth must be None or a finite number > 0, got {b!r}")
        if self.variant not in ("em", "kde"):
            raise ValueError(f"variant must be 'em' or 'kde', got {self.variant!r}")
        if self.grid not in ("auto", "tensor", "kmeans++"):
            raise ValueError(f"grid must be 'auto', 'tensor' or 'kmeans++', got {self.grid!r}")
        _check_int(self, "chunk_size", 1, optional=True)
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")

    def _launch(self):
        """expansion.GPULaunch for device="cuda" (GPUUnavailableError without a GPU), else
        None."""
        if getattr(self, "device", "cpu") != "cuda":
            return None
        from . import gpu
        gpu.require_gpu()
        return expansion.gpu_launch()

    @staticmethod
    def _on_device(X, sample_weight, gpu):
        """True when X lives on the GPU (and device="cuda"); ValueError for GPU arrays that
        device="cpu" or host rows cannot take."""
        from . import gpu as fgpu
        if not (fgpu.is_device_array(X) or fgpu.is_device_array(sample_weight)):
            return False
        if gpu is None:
            raise ValueError("X or sample_weight is a GPU array (__cuda_array_interface__): use "
                             "device='cuda', or copy it to the host")
        if not fgpu.is_device_array(X):
            raise ValueError("sample_weight on the GPU needs X on the GPU too")
        return True

    def _rows(self, X, sample_weight, *, fitting, gpu):
        """(host Stream or None, DeviceData or None, opened): the rows for node placement (the
        host copy when there is one) and for the passes (the device copy when there is one).

        device="cuda": in-memory arrays are validated on the host and uploaded once; device
        arrays are used in place and checked on the device; out-of-core sources stay host
        Streams (their blocks are uploaded pass by pass)."""
        from . import gpu as fgpu
        if self._on_device(X, sample_weight, gpu):
            if not fitting:
                self._check_fitted()
            dev = fgpu.device_rows(X, sample_weight, min_samples=2 if fitting else 1)
            if not fitting and dev.n_features != self.n_features_in_:
                raise ValueError(f"X has {dev.n_features} features, but {type(self).__name__} "
                                 f"is expecting {self.n_features_in_} features as input.")
            return None, dev, False
        data, opened = self._stream(X, sample_weight, fitting=fitting)
        try:
            dev = None
            if gpu is not None and data.in_memory is not None:  # copied once per call
                dev = fgpu.to_gpu(data.in_memory, data.weights)
        except BaseException:
            if opened:
                data.close()
            raise
        return data, dev, opened

    @property
    def _chunk_rows(self):
        return DEFAULT_CHUNK_ROWS if self.chunk_size is None else int(self.chunk_size)

    def _stream(self, X, sample_weight=None, *, fitting):
        if distributed.is_dask_array(X) and not fitting:  # fit streams the blocks in order
            raise ValueError("GMMExpansion scores dask arrays block by block: use "
                             "X.map_blocks(model.score_samples, drop_axis=1, dtype=float) (or "
                             "predict likewise)")
        return GaussianMixture._stream(self, X, sample_weight, fitting=fitting)

    _fitted_attr = "weights_"
    _check_fitted = GaussianMixture._check_fitted
    __sklearn_is_fitted__ = GaussianMixture.__sklearn_is_fitted__
    _validate_predict_X = GaussianMixture._validate_predict_X

    def _bounds(self, data):
        D = data.n_features
        if self.bounds is not None:
            try:
                lo, hi = (np.asarray(b, dtype=np.float64).reshape(-1) for b in self.bounds)
            except (TypeError, ValueError):
                raise ValueError("bounds must be a pair (lo, hi) of arrays of n_features "
                                 "numbers") from None
            if lo.shape != (D,) or hi.shape != (D,) or not (np.all(np.isfinite(lo))
                                                            and np.all(np.isfinite(hi))):
                raise ValueError(f"bounds must be two finite arrays of shape ({D},)")
            return lo, hi
        return expansion.data_range(data)

    def _make_nodes(self, data, rng, select=True):
        """(Nodes, weights steps).  ``select``: choose the automatic settings by the held-out
        likelihood (fit); else the rule with expansion.AUTO_FACTOR and one step (partial_fit)."""
        auto_nodes = isinstance(self.n_nodes, str)
        steps = 1 if isinstance(self.n_iter, str) else int(self.n_iter)
        if self.variant == "kde":
            steps = 1
        grid = self.grid
        if grid == "auto":
            grid = "tensor" if data.n_features <= 2 else "kmeans++"
        if grid != "tensor" and self.variant == "kde":
            raise ValueError("variant='kde' needs a tensor grid (grid='tensor')")
        self.auto_ = None
        if not auto_nodes:
            lo, hi = self._bounds(data)
            if grid == "tensor":
                return expansion.tensor_grid(lo, hi, int(self.n_nodes), self.bandwidth), steps
            return expansion.kmeanspp_nodes(data, lo, hi, int(self.n_nodes), self.bandwidth,
                                            rng), steps
        if grid != "tensor":  # D > 2: up to AUTO_CENTRES centres, at most one per sampled row
            lo, hi = self._bounds(data)
            return expansion.kmeanspp_nodes(data, lo, hi, expansion.AUTO_CENTRES,
                                            self.bandwidth, rng, at_most_rows=True), steps
        host = data
        if isinstance(data, expansion.DeviceData):  # the selection runs on a host copy
            host = sources.as_stream(*data.to_host())
        Xs, ws = expansion.auto_sample(host, rng)
        if self.bounds is not None:
            lo, hi = self._bounds(data)
        else:
            lo, hi = expansion.auto_bounds(Xs, ws, *expansion.data_range(data))
        N = host.n_rows if host.n_rows is not None else Xs.shape[0]
        n_eff = N * expansion.n_effective(ws, Xs.shape[0]) / Xs.shape[0]
        n_iter = None if isinstance(self.n_iter, str) else int(self.n_iter)
        if select:
            choice = expansion.auto_select(Xs, ws, lo, hi, n_eff, self.variant, self.bandwidth,
                                           n_iter, self._chunk_rows)
        else:
            choice = expansion.AutoChoice(
                expansion.AUTO_FACTOR if self.bandwidth is None else math.nan, 1, lo, hi,
                expansion.auto_scale(Xs, ws), n_eff, {})
        scale = np.where(choice.scale > 0, choice.scale, (hi - lo) / 4)
        sigma = np.full(lo.shape[0], float(self.bandwidth)) if self.bandwidth is not None \
            else expansion.rule_sigma(choice.factor, scale, n_eff)
        self.auto_ = choice
        steps = choice.n_iter if self.variant == "em" else 1
        return expansion.auto_grid(lo, hi, sigma), steps

    def _set_nodes(self, nodes, D):
        self._nodes = nodes
        self.means_ = nodes.means()
        self.sigma_ = nodes.sigma.copy()
        self.grid_shape_ = tuple(int(s) for s in nodes.shape)
        self.bounds_ = np.stack([nodes.lo, nodes.lo + nodes.h * (np.array(nodes.shape) - 1)]
                                if nodes.is_grid else [nodes.lo, nodes.lo + nodes.h])
        self.n_features_in_ = D

    def fit(self, X, y=None, sample_weight=None):
        """Learn the weights (one pass per step; see the class docstring).  X: (N, D) array or
        any out-of-core data ``GaussianMixture.fit`` accepts (or a device array with
        device="cuda"); returns self."""
        self._check_hyper()
        gpu = self._launch()
        host, dev, opened = self._rows(X, sample_weight, fitting=True, gpu=gpu)
        data = dev if dev is not None else host  # the passes' rows
        try:
            rng = check_random_state(self.random_state)
            with kernels.blas_single_threaded():
                nodes, steps = self._make_nodes(host if host is not None else dev, rng)
                M = nodes.n_nodes
                weights = np.full(M, 1.0 / M)
                lbs = []
                for _ in range(steps):
                    with np.errstate(divide="ignore"):  # nodes with no data: weight 0
                        log_w = np.log(weights)
                    acc = expansion.weights_pass(data, nodes, log_w, self.variant, gpu=gpu)
                    lbs.append(float(acc[1][0] / acc[1][1]))
                    weights = expansion.weights_from(acc, self.variant)
        finally:
            if opened:
                host.close()
        self._set_nodes(nodes, data.n_features)
        self.weights_ = weights
        self.lower_bound_ = lbs[-1]
        self.lower_bounds_ = lbs
        self.n_iter_ = steps
        self._acc = acc if steps == 1 else None
        return self

    def partial_fit(self, X, y=None, sample_weight=None):
        """Add the one-pass statistics of the rows X (n, D) and update the weights: after any
        sequence of calls the weights equal those of ``fit`` on all rows (one step, uniform
        start), provided the grid is the same -- give ``bounds``, otherwise the first call's
        data range fixes the grid.  X: an array (with device="cuda" NumPy rows are uploaded
        per call, device arrays used in place).  Returns self."""
        self._check_hyper()
        gpu = self._launch()
        from . import gpu as fgpu
        if self._on_device(X, sample_weight, gpu):
            host, dev = None, fgpu.device_rows(X, sample_weight, min_samples=1)
        else:
            X = check_array(X, min_samples=1)
            sw = check_sample_weight(sample_weight, X.shape[0])
            host = sources.as_stream(X, sw, self._chunk_rows)
            dev = None if gpu is None else fgpu.to_gpu(X, sw)
        D = (host if host is not None else dev).n_features
        with kernels.blas_single_threaded():
            if getattr(self, "_acc", None) is None:
                if hasattr(self, "weights_"):
                    raise ValueError("partial_fit continues only a model built by partial_fit "
                                     "or a one-step fit")
                self._set_nodes(self._make_nodes(host if host is not None else dev,
                                                 check_random_state(self.random_state),
                                                 select=False)[0], D)
                M = self._nodes.n_nodes
                self._acc = [np.zeros(M), np.zeros(2)]
            elif D != self.n_features_in_:
                raise ValueError(f"X has {D} features, but {type(self).__name__} is "
                                 f"expecting {self.n_features_in_} features as input.")
            M = self._nodes.n_nodes
            expansion.weights_pass(dev if dev is not None else host, self._nodes,
                                   np.full(M, -math.log(M)), self.variant, self._acc, gpu=gpu)
        self.weights_ = expansion.weights_from(self._acc, self.variant)
        self.lower_bound_ = float(self._acc[1][0] / self._acc[1][1])
        self.lower_bounds_ = [self.lower_bound_]
        self.n_iter_ = 1
        return self

    def score_samples(self, X):
        """log p(x) of each row, (N,) float64 (a host array, also for device rows)."""
        gpu = self._launch()
        host, dev, opened = self._rows(X, None, fitting=False, gpu=gpu)
        try:
            return expansion.log_prob(dev if dev is not None else host, self._nodes,
                                      self.weights_, gpu=gpu)
        finally:
            if opened:
                host.close()

    def score(self, X, y=None):
        """Mean log-likelihood per row."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1):
        """Draw ``n_samples`` points: (X (n, D) float64, node index (n,) int64)."""
        self._check_fitted()
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
                or n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples!r}")
        rng = check_random_state(self.random_state)
        idx = rng.choice(self.weights_.shape[0], size=n_samples, p=self.weights_)
        X = self.means_[idx] + rng.standard_normal((n_samples, self.means_.shape[1])) * \
            self.sigma_
        return X, idx.astype(np.int64)

    def save(self, path):
        """Write the model to a versioned ``.npz`` (atomically); load with ``fastmix.load``."""
        self._check_fitted()
        params = {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                  for k, v in self.get_params().items() if k not in ("random_state", "bounds")}
        nodes = self._nodes
        meta = {"format_version": FORMAT_VERSION, "class": type(self).__name__,
                "params": params, "lower_bound_": self.lower_bound_,
                "lower_bounds_": self.lower_bounds_, "n_iter_": self.n_iter_,
                "n_features_in_": self.n_features_in_, "shape": list(self.grid_shape_)}
        arrays = {"weights": self.weights_, "lo": nodes.lo, "h": nodes.h, "sigma": nodes.sigma,
                  "centres": nodes.centres}
        if self.bounds is not None:
            arrays["bounds"] = np.asarray(self.bounds, dtype=np.float64)
        _atomic_write(path, lambda fh: np.savez(fh, meta=np.array(json.dumps(meta)), **arrays))

    @classmethod
    def _from_saved(cls, meta, arrays):
        est = cls(**meta["params"])
        if "bounds" in arrays:
            est.bounds = arrays["bounds"]
        est._check_hyper()
        D = int(meta["n_features_in_"])
        shape = tuple(int(s) for s in meta["shape"])
        nodes = expansion.Nodes(np.asarray(arrays["lo"], np.float64),
                                np.asarray(arrays["h"], np.float64), shape,
                                np.asarray(arrays["sigma"], np.float64),
                                np.asarray(arrays["centres"], np.float64))
        w = np.asarray(arrays["weights"], np.float64)
        if nodes.lo.shape != (D,) or nodes.sigma.shape != (D,) or w.shape != (nodes.n_nodes,):
            raise ValueError("inconsistent shapes")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or not abs(w.sum() - 1) < 1e-6:
            raise ValueError("weights are not a probability vector")
        if not np.all(nodes.sigma > 0):
            raise ValueError("bandwidth must be positive")
        est._set_nodes(nodes, D)
        est.weights_ = w
        est.lower_bound_ = float(meta["lower_bound_"])
        est.lower_bounds_ = [float(v) for v in meta["lower_bounds_"]]
        est.n_iter_ = int(meta["n_iter_"])
        est._acc = None
        return est


class BigLearnGaussianMixture(GaussianMixture):
    """Full-covariance Gaussian mixture fitted by BigLearn-EM (Cong & Li, AAAI 2024): EM steps on
    the joint, on random marginals and on random orthogonally transformed marginals of the data
    (see ``fastmix.biglearn`` for the exact update), then joint EM steps to convergence.

    The step kinds, their probabilities, the subset sizes, the local steps and the weight
    smoothing default to the reference code's.  Three defaults differ from it, because on real
    data (scikit-learn's iris, wine, breast cancer and digits, both min-max and standard
    scaling; ``bench/biglearn.py --real``) the reference's choices lost to plain EM: the start is
    GaussianMixture's k-means start (the paper's N(0, I) means assume [0, 1]-scaled data), the
    covariance merge keeps each component positive definite (``cov_update="psd"``: the
    reference's overwrite of a T x T block next to unchanged cross-covariances is indefinite
    for most components at D = 13, and the eigenvalue floor then leaves near-singular
    covariances that cost several nats per row), and the marginal steps are followed by joint
    EM steps until the mean log-likelihood gains less than ``tol`` (a marginal or transformed
    step lowers the joint likelihood: it optimises the marginal's).  The paper's method is
    ``init_params="random", cov_update="floor", polish_max_iter=0``.

    Parameters
    ----------
    n_components : int
    p_joint, p_marginal, p_transformed : float >= 0 summing to 1, default 0.4 / 0.1 / 0.5
        Probabilities of the three step kinds.  ``p_joint=1, weight_smoothing=0`` is plain
        (joint) EM with the reference's M-step.
    subset_beta : (a, b), default (5.0, 1.0)
        Subset size m = max(1, floor(D * Beta(a, b))).
    n_local_steps : int, default 5
        EM steps per draw.
    n_outer : int, default 200
        Outer iterations (no convergence test: the method is stochastic).
    eig_floor : float > 0, default 1e-6
        Eigenvalue floor of the covariance repair (the reference's is 1e-5; 1e-6 is
        GaussianMixture's ``reg_covar``, so that the two score data with constant or nearly
        constant directions -- digits' empty border pixels -- on the same footing).
    weight_smoothing : float >= 0 or None, default None
        alpha in pi = (pi~ + alpha) / sum(pi~ + alpha); None = 1 / n_components.
    cov_update : {"floor", "psd"}, default "psd"
        "floor": the reference's overwrite-then-floor; "psd": the PSD-preserving block update.
    init_params : {"random", "kmeans", "k-means++", "random_from_data"}, default "kmeans"
        "random" is the paper's: pi uniform, mu_k ~ N(0, I), Sigma_k = I (data are expected to be
        min-max scaled); the others are GaussianMixture's.
    polish_max_iter : int >= 0, default 100
        Joint EM steps after the ``n_outer`` iterations (plain EM weights, no smoothing), stopped
        once the mean log-likelihood gains less than ``tol``; 0 = none (the paper's method).
    tol : float >= 0, default 1e-4
        Convergence threshold of those joint steps (GaussianMixture's is 1e-3; the steps
        are few and cheap next to the ``5 n_outer`` local steps).
    random_state : one seeded generator drives every draw (step kind, subset, orthogonal A).
    chunk_size : rows per kernel chunk.
    device : {"cpu", "cuda"}, default "cpu"
        "cuda": the rows stay on the GPU; every local step forms its (transformed) marginal
        there (``fastmix.kernels.cuda.linalg``) and runs the full-covariance E-step kernel on
        it; only the statistics come back (the M-step and the covariance repair run on the
        host).  Needs rows that fit on the device (in-memory arrays or GPU arrays);
        initialisation and inference as for GaussianMixture(device="cuda").
    verbose : int

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_ : as GaussianMixture (full)
    step_kinds_ : list of str, the kind of each outer iteration
    log_likelihoods_ : list of float, the mean log-likelihood of the (marginal) data in the last
        E-step of each outer iteration (the joint log-likelihood for joint steps)
    lower_bound_ : mean joint log-likelihood of the training data under the final model
    n_iter_ : outer iterations run
    n_polish_iter_ : joint EM steps run after them
    converged_ : whether those joint steps met ``tol`` (False when ``polish_max_iter=0``)

    Notes
    -----
    D = 1: every step is a joint step (a marginal of one coordinate is the joint).
    """

    covariance_type = "full"

    def __init__(self, n_components=1, *, p_joint=0.4, p_marginal=0.1, p_transformed=0.5,
                 subset_beta=(5.0, 1.0), n_local_steps=5, n_outer=200, eig_floor=1e-6,
                 weight_smoothing=None, cov_update="psd", init_params="kmeans",
                 polish_max_iter=100, tol=1e-4, random_state=None, chunk_size=None, verbose=0,
                 device="cpu"):
        self.n_components = n_components
        self.p_joint = p_joint
        self.p_marginal = p_marginal
        self.p_transformed = p_transformed
        self.subset_beta = subset_beta
        self.n_local_steps = n_local_steps
        self.n_outer = n_outer
        self.eig_floor = eig_floor
        self.weight_smoothing = weight_smoothing
        self.cov_update = cov_update
        self.init_params = init_params
        self.polish_max_iter = polish_max_iter
        self.tol = tol
        self.random_state = random_state
        self.chunk_size = chunk_size
        self.verbose = verbose
        self.device = device

    # GaussianMixture's inference/persistence code reads these
    reg_covar = 0.0
    progress = False
    fixed = None
    n_factors = None
    noise = "diagonal"
    loadings_init = None

    def _check_hyper(self):
        for name, lo in (("n_components", 1), ("n_local_steps", 1), ("n_outer", 0),
                         ("polish_max_iter", 0), ("verbose", 0)):
            _check_int(self, name, lo)
        if not (isinstance(self.tol, (int, float, np.floating)) and math.isfinite(self.tol)
                and self.tol >= 0):
            raise ValueError(f"tol must be a number >= 0, got {self.tol!r}")
        probs = np.array([self.p_joint, self.p_marginal, self.p_transformed], dtype=np.float64)
        if not np.all(np.isfinite(probs)) or np.any(probs < 0) or abs(probs.sum() - 1) > 1e-9:
            raise ValueError(f"p_joint, p_marginal, p_transformed must be non-negative and sum "
                             f"to 1, got {probs.tolist()} (sum {probs.sum():.6g})")
        a, b = (float(v) for v in self.subset_beta)
        if not (a > 0 and b > 0):
            raise ValueError(f"subset_beta must be two positive numbers, got {self.subset_beta!r}")
        if not (isinstance(self.eig_floor, (int, float, np.floating)) and self.eig_floor > 0):
            raise ValueError(f"eig_floor must be > 0, got {self.eig_floor!r}")
        ws = self.weight_smoothing
        if ws is not None and not (isinstance(ws, (int, float, np.floating)) and ws >= 0
                                   and math.isfinite(ws)):
            raise ValueError(f"weight_smoothing must be None or a number >= 0, got {ws!r}")
        if self.cov_update not in ("floor", "psd"):
            raise ValueError(f"cov_update must be 'floor' or 'psd', got {self.cov_update!r}")
        if self.init_params not in ("random",) + INIT_METHODS[:2] + INIT_METHODS[3:]:
            raise ValueError(f"init_params must be 'random', 'kmeans', 'k-means++' or "
                             f"'random_from_data', got {self.init_params!r}")
        _check_int(self, "chunk_size", 1, optional=True)
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")

    def _device_marginals(self, gpu, data):
        """(device rows, the GPU marginal-statistics function) for ``device="cuda"``."""
        if isinstance(data.source, gpu.DeviceSource):
            dd = gpu.to_gpu(data.source.X, data.weights)
        elif data.in_memory is not None and gpu.DeviceMarginals.fits(data.in_memory.nbytes):
            dd = gpu.to_gpu(data.in_memory, data.weights)
        else:
            raise ValueError("BigLearnGaussianMixture(device='cuda') needs rows that fit on the "
                             "GPU (an in-memory or GPU array); fit files and larger data with "
                             "device='cpu'")
        return dd, gpu.DeviceMarginals(dd, gpu.DEFAULT_BLOCK_ROWS, gpu.DEFAULT_THREADS)

    def fit(self, X, y=None, sample_weight=None, *, callback=None):
        """Run ``n_outer`` BigLearn-EM iterations.  X as for ``GaussianMixture.fit``.
        ``callback(iteration, kind, model)`` after each outer iteration, with ``model`` a
        fitted copy of this estimator at that point (for monitoring, e.g. a test KL)."""
        self._check_hyper()
        gpu = self._gpu(X)
        data, opened = self._stream(X, sample_weight, fitting=True)
        try:
            self._check_rows(data.n_rows)
            dd, stats = None, biglearn.marginal_stats
            if getattr(data, "is_dask", False):  # one task per block, statistics reduced
                def stats(data, kp, A, T):
                    return data.marginal_stats(kp, A, T)
            if gpu is not None:
                dd, stats = self._device_marginals(gpu, data)
            rng = check_random_state(self.random_state)
            K, D = self.n_components, data.n_features
            with kernels.blas_single_threaded():
                if self.init_params == "random":
                    params = GMMParams(np.full(K, 1.0 / K), rng.standard_normal((K, D)),
                                       FullCovariance.from_covariances(np.repeat(
                                           np.eye(D)[None], K, axis=0)))
                else:
                    params = initial_params(data, None, K, "full", self.init_params, rng,
                                            1e-6, self._chunk_rows)
                alpha = 1.0 / K if self.weight_smoothing is None else float(self.weight_smoothing)
                hook = None
                if callback is not None:
                    def hook(it, kind, params, ll):
                        snap = _clone(self)
                        snap._set_params_from(params)
                        snap.n_features_in_ = D
                        callback(it, kind, snap)
                res = biglearn.run_biglearn(
                    data, params, rng, n_outer=int(self.n_outer),
                    n_local_steps=int(self.n_local_steps),
                    probs=(self.p_joint, self.p_marginal, self.p_transformed),
                    beta=tuple(float(v) for v in self.subset_beta), alpha=alpha,
                    eps=float(self.eig_floor), update=self.cov_update, callback=hook,
                    stats=stats)
                polished = biglearn.polish(
                    data, res.params, max_iter=int(self.polish_max_iter), tol=float(self.tol),
                    eps=float(self.eig_floor), update=self.cov_update, stats=stats)
                if dd is not None:
                    final = gpu.e_step_stats(dd, None, polished.params, gpu.DEFAULT_BLOCK_ROWS,
                                             gpu.DEFAULT_THREADS)
                else:
                    from .em import e_step_stats
                    final = e_step_stats(data, None, polished.params, self._chunk_rows)
        finally:
            if opened:
                data.close()
        self._set_params_from(polished.params)
        self.step_kinds_ = list(res.kinds)
        self.log_likelihoods_ = list(res.log_likelihoods)
        self.lower_bound_ = float(final.mean_log_likelihood)
        self.lower_bounds_ = list(res.log_likelihoods)
        self.n_iter_ = int(self.n_outer)
        self.n_polish_iter_ = polished.n_iter
        self.converged_ = polished.converged
        self.n_features_in_ = D
        self._online = None
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        return self.fit(X, sample_weight=sample_weight).predict(X)

    @property
    def partial_fit(self):
        """Not available: BigLearn-EM is a batch method (the inherited
        ``GaussianMixture.partial_fit`` is online EM, a different algorithm), so
        ``hasattr(model, "partial_fit")`` is False, as scikit-learn's tools expect."""
        raise AttributeError("BigLearnGaussianMixture has no partial_fit")


class SGDGaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture (diagonal, or local principal directions) trained by streaming SGD on
    the max-component objective with annealing (Gepperth & Pfulb; docs/algorithms.md §1,
    ``fastmix.sgd``).

    The K = n x n components sit on a toroidal grid; the objective per sample is the smoothed
    max-component log-likelihood max_k sum_j g_kj(sigma) l_j(x), with sigma annealed towards 0
    (then the plain max-component bound), or the exact log-likelihood (``objective="loglik"``).
    Weights are softmax(logits); precisions are parameterised by their square roots, clipped to
    at most ``precision_max``.  The defaults assume data scaled to [0, 1] (a warning says so
    otherwise).

    Parameters
    ----------
    n_components : int, a perfect square (default 25 = 5 x 5)
    covariance_type : {"diag", "lpd"}, default "diag"
        "diag": square roots of diagonal precisions.  "lpd": local principal directions
        (ICLR section 3.5): each component keeps ``n_directions`` = S orthonormal directions
        u_ks with precisions a_ks^2 along them, re-orthonormalised after every step (modified
        Gram-Schmidt in the kernel = QR of U_k^T with diag(R) > 0).  The paper's density is
        on the S-dimensional projection only, not a density on R^D; fastmix adds an isotropic
        residual precision r_k^2 on the orthogonal complement (a PPCA-style choice -- not in
        the paper or any released code, so unverified): covariance
        U_k^T diag(1/a_k^2) U_k + (I - U_k^T U_k) / r_k^2, so that the training objective and
        ``score_samples`` are exact log-densities on R^D.  Directions start as a random
        orthonormal set, r at sqrt(precision_max) and a at min(1, sqrt(precision_max)):
        broad along the directions, so that their gradient (r^2 - a^2) y z starts Hebbian and
        pulls them towards high-variance directions (with a = r at the start they drifted to
        low-variance ones in our tests -- a local optimum; fastmix's choice, unverified).
        The directions and r share ``lambda_sigma`` with a.
    n_directions : int, default 10 -- S for "lpd" (1 <= S < n_features); unused for "diag"
    objective : {"mc", "loglik"}, default "mc"
    learning_rate : float > 0, default 0.05 (eps0);  learning_rate_min : default 0.001
    batch_size : int >= 1, default 1 (the streaming fast path)
    annealing : {"adaptive", "time", "off"}, default "adaptive"
    sigma0 : float or None (default n / 4);  sigma_min : default 0.01
    anneal_window : int or None, anneal_delta 0.05, anneal_gamma 0.9 (adaptive schedule)
        None: ceil(1 / learning_rate_min) (1000, the released code), but in ``fit`` on data
        of known length at most planned_steps / (m + 2), m the number of gamma-decays from
        sigma0 to sigma_min, so that small data sets have room to anneal fully
        (``fastmix.sgd.default_window``); ``partial_fit`` streams keep 1000.
    time_t0, time_tinf : fractions of the planned steps where the time schedule starts and ends
        its decay (default 0.3, 0.8)
    precision_max : float, default 20 (D_max: variances >= 1 / precision_max)
    lambda_pi, lambda_mu, lambda_sigma : learning-rate factors, default 1
    init : {"uniform", "kmeans++"}, default "uniform"
        "uniform": means U[mu_init_center - mu_init, mu_init_center + mu_init] (0 +- 0.01), all
        precisions precision_max, uniform weights; "kmeans++": seeds from the first batch.
    mu_init, mu_init_center : floats, default 0.01, 0.0
    n_epochs : float, default 1.0 -- passes over the data in ``fit``
    shuffle : bool, default True -- shuffle the rows within each block read
    random_state, chunk_size
    device : {"cpu", "cuda"}, default "cpu"
        "cuda": the SGD steps of ``fit`` and ``partial_fit`` run on the GPU
        (``fastmix.kernels.cuda.sgd``, ``pip install 'fastmix[cuda]'``) for the mini-batch path
        (``batch_size >= 2``) with ``covariance_type="diag"``; batch_size=1 (the per-sample
        streaming path), "lpd" and out-of-core or Dask inputs are CPU only and raise a
        ValueError.  In ``fit`` a NumPy array is copied to the device once (an array exposing
        ``__cuda_array_interface__`` -- CuPy, PyTorch, numba -- is used in place and checked
        for NaN/inf and its value range on the device); each epoch sends its row
        permutation (drawn on the host exactly as on the CPU path), the parameters stay on
        the device, and each annealing segment returns only its per-step losses.
        ``partial_fit`` uploads the batch and the state per call.  Batches are taken in the
        same order as with "cpu" from the same ``random_state``, so the fits agree to rounding
        (not bit for bit).  Initialisation ("kmeans++" copies a device array to the host for
        it) and inference (``score_samples``, ``predict``, ``sample``...) run on the CPU.

    Attributes
    ----------
    weights_ (K,), means_ (K, D)
    "diag": precisions_ (K, D), covariances_ (K, D)
    "lpd": directions_ (K, S, D) (orthonormal rows), direction_precisions_ (K, S),
        residual_precisions_ (K,)
    grid_shape_ : (n, n); prototypes on the grid: ``means_.reshape(n, n, D)``
    loss_curve_ : list of (step, mean loss of the segment, sigma, learning rate)
    sigma_, learning_rate_ : current annealing state;  n_steps_ : SGD steps taken
    """

    def __init__(self, n_components=25, *, covariance_type="diag", n_directions=10,
                 objective="mc", learning_rate=0.05,
                 learning_rate_min=0.001, batch_size=1, annealing="adaptive", sigma0=None,
                 sigma_min=0.01, anneal_window=None, anneal_delta=0.05, anneal_gamma=0.9,
                 time_t0=0.3, time_tinf=0.8, precision_max=20.0, lambda_pi=1.0, lambda_mu=1.0,
                 lambda_sigma=1.0, init="uniform", mu_init=0.01, mu_init_center=0.0,
                 n_epochs=1.0, shuffle=True, random_state=None, chunk_size=None,
                 device="cpu"):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.n_directions = n_directions
        self.objective = objective
        self.learning_rate = learning_rate
        self.learning_rate_min = learning_rate_min
        self.batch_size = batch_size
        self.annealing = annealing
        self.sigma0 = sigma0
        self.sigma_min = sigma_min
        self.anneal_window = anneal_window
        self.anneal_delta = anneal_delta
        self.anneal_gamma = anneal_gamma
        self.time_t0 = time_t0
        self.time_tinf = time_tinf
        self.precision_max = precision_max
        self.lambda_pi = lambda_pi
        self.lambda_mu = lambda_mu
        self.lambda_sigma = lambda_sigma
        self.init = init
        self.mu_init = mu_init
        self.mu_init_center = mu_init_center
        self.n_epochs = n_epochs
        self.shuffle = shuffle
        self.random_state = random_state
        self.chunk_size = chunk_size
        self.device = device

    _fitted_attr = "means_"
    _check_fitted = GaussianMixture._check_fitted
    __sklearn_is_fitted__ = GaussianMixture.__sklearn_is_fitted__
    _validate_predict_X = GaussianMixture._validate_predict_X
    _device_stream = GaussianMixture._device_stream  # device="cpu": refuses GPU arrays

    @property
    def _chunk_rows(self):
        return DEFAULT_CHUNK_ROWS if self.chunk_size is None else int(self.chunk_size)

    def _check_hyper(self):
        _check_int(self, "n_components", 1)
        _check_int(self, "batch_size", 1)
        n = int(round(math.sqrt(self.n_components)))
        if n * n != self.n_components:
            raise ValueError(f"n_components must be a perfect square (the components sit on an "
                             f"n x n toroidal grid), got {self.n_components}; e.g. 16, 25, 64")
        for name in ("learning_rate", "learning_rate_min", "sigma_min", "precision_max",
                     "mu_init", "n_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or \
                    not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        for name in ("lambda_pi", "lambda_mu", "lambda_sigma"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.number)) and 0 <= v <= 1):
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        if self.sigma0 is not None and not (isinstance(self.sigma0, (int, float, np.number))
                                            and self.sigma0 > 0):
            raise ValueError(f"sigma0 must be None or > 0, got {self.sigma0!r}")
        if self.objective not in ("mc", "loglik"):
            raise ValueError(f"objective must be 'mc' or 'loglik', got {self.objective!r}")
        if self.annealing not in ("adaptive", "time", "off"):
            raise ValueError(f"annealing must be 'adaptive', 'time' or 'off', got "
                             f"{self.annealing!r}")
        if self.init not in ("uniform", "kmeans++"):
            raise ValueError(f"init must be 'uniform' or 'kmeans++', got {self.init!r}")
        if not 0 <= self.time_t0 < self.time_tinf <= 1:
            raise ValueError("need 0 <= time_t0 < time_tinf <= 1")
        if self.anneal_window is not None:
            _check_int(self, "anneal_window", 1)
        if self.covariance_type not in ("diag", "lpd"):
            raise ValueError(f"covariance_type must be 'diag' or 'lpd', got "
                             f"{self.covariance_type!r}")
        if self.covariance_type == "lpd":
            _check_int(self, "n_directions", 1)
        if getattr(self, "device", "cpu") not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")

    def _on_gpu(self, X=None):
        """True for ``device="cuda"`` when the request is one the GPU path serves (else a
        ValueError naming what is CPU only); False for "cpu"."""
        if getattr(self, "device", "cpu") != "cuda":
            return False
        what = None
        if self.covariance_type != "diag":
            what = f"covariance_type={self.covariance_type!r} (only 'diag' runs on the GPU)"
        elif int(self.batch_size) < 2:
            what = ("batch_size=1 (the per-sample streaming path; the GPU runs the mini-batch "
                    "path, batch_size >= 2)")
        elif X is not None and (distributed.is_dask_array(X) or sources.is_out_of_core(X)):
            what = "out-of-core or Dask data (pass an in-memory or device array)"
        if what is not None:
            raise ValueError(f"SGDGaussianMixture(device='cuda') does not support {what}; "
                             f"use device='cpu'")
        from . import gpu
        gpu.require_gpu()
        return True

    # ---------------------------------------------------------------- state -----------------
    def _start(self, X, rng, planned_steps, planned_known=False, n_features=None,
               value_range=None):
        """Initial state and schedule.  X: the first rows read (host); None (a device array
        with init="uniform") needs ``n_features``, and ``value_range`` (lo, hi) for the [0, 1]
        range warning."""
        K, D = self.n_components, (X.shape[1] if X is not None else int(n_features))
        S = int(self.n_directions)
        if self.covariance_type == "lpd" and S >= D:
            raise ValueError(f"n_directions must be < n_features ({D}) for "
                             f"covariance_type='lpd', got {S}")
        n = int(round(math.sqrt(K)))
        s_max = math.sqrt(float(self.precision_max))
        if self.init == "uniform":
            mu = self.mu_init_center + rng.uniform(-self.mu_init, self.mu_init, size=(K, D))
        else:
            if X.shape[0] < K:
                raise ValueError(f"init='kmeans++' needs at least n_components={K} rows in the "
                                 f"first batch, got {X.shape[0]}")
            from .init import kmeans_plusplus
            mu = kmeans_plusplus(np.ascontiguousarray(X), None, K, rng)
        mu = np.ascontiguousarray(mu, dtype=np.float64)
        if self.covariance_type == "lpd":
            U = np.stack([np.linalg.qr(rng.standard_normal((D, S)))[0].T for _ in range(K)])
            self._state = (np.full(K, 1.0 / K), mu, np.ascontiguousarray(U),
                           np.full((K, S), min(1.0, s_max)), np.full(K, s_max))
        else:
            self._state = (np.full(K, 1.0 / K), mu, np.full((K, D), s_max))
        sigma0 = n / 4.0 if self.sigma0 is None else float(self.sigma0)
        planned = max(1, int(planned_steps))
        window = self.anneal_window or sgd.default_window(
            float(self.learning_rate_min), sigma0, float(self.sigma_min),
            float(self.anneal_gamma), planned if planned_known else None)
        self._schedule = sgd.Schedule(
            self.annealing, sigma0, float(self.learning_rate), float(self.sigma_min),
            float(self.learning_rate_min), float(self.anneal_delta), float(self.anneal_gamma),
            window, int(self.time_t0 * planned), int(self.time_tinf * planned), sigma0)
        self.grid_shape_ = (n, n)
        self.n_features_in_ = D
        if X is None and value_range is None:
            return
        lo, hi = value_range if X is None else (float(np.min(X)), float(np.max(X)))
        if lo < -0.5 or hi > 1.5:
            warnings.warn(f"SGDGaussianMixture's defaults (mu_init, precision_max, learning "
                          f"rates) assume data scaled to [0, 1]; this data spans [{lo:.3g}, "
                          f"{hi:.3g}]. Scale it (e.g. min-max per feature) or adapt "
                          "precision_max and mu_init.", UserWarning, stacklevel=4)

    def _consume(self, X):
        n = self.grid_shape_[0]
        obj = sgd.run_segment(np.ascontiguousarray(X, dtype=np.float64), self._state,
                              self._schedule, n=n, exact=self.objective == "loglik",
                              batch=int(self.batch_size),
                              lam=(float(self.lambda_pi), float(self.lambda_mu),
                                   float(self.lambda_sigma)),
                              s_min=1e-6, s_max=math.sqrt(float(self.precision_max)))
        self._publish()
        return obj

    def _publish(self):
        xi, mu = self._state[:2]
        w = np.exp(xi - xi.max())
        self.weights_ = w / w.sum()
        self.means_ = mu.copy()
        if self.covariance_type == "lpd":
            U, a, r = self._state[2:]
            self.directions_ = U.copy()
            self.direction_precisions_ = a ** 2
            self.residual_precisions_ = r ** 2
        else:
            s = self._state[2]
            self.precisions_ = s ** 2
            self.covariances_ = 1.0 / self.precisions_
        self.sigma_ = self._schedule.current_sigma()
        self.learning_rate_ = self._schedule.eps
        self.n_steps_ = self._schedule.t
        self.loss_curve_ = list(self._schedule.history)

    # ---------------------------------------------------------------- fitting ---------------
    def fit(self, X, y=None, sample_weight=None):
        """``n_epochs`` passes of SGD over X (an array or any out-of-core source, read in
        blocks; rows shuffled within each block when ``shuffle``).  Returns self.

        sample_weight : (N,) non-negative, optional (CPU only).  Frequency weights: each epoch
            takes row i c_i times, c_i = floor(w_i) + Bernoulli(w_i - floor(w_i)), drawn
            afresh per epoch, so E[c_i] = w_i: a row's weight scales its expected number of
            SGD steps (its share of the gradient), integer weights are exactly repeated rows,
            unit weights are the unweighted fit, and an epoch has about sum(w) / batch_size
            steps (the SGD kernels themselves are unweighted).
        """
        self._check_hyper()
        if self._on_gpu(X):
            if sample_weight is not None:
                raise ValueError("SGDGaussianMixture(device='cuda') does not take sample_weight "
                                 "yet; use device='cpu'")
            return self._fit_gpu(X)
        data, opened = GaussianMixture._stream(self, X, sample_weight, fitting=True)
        try:
            rng = check_random_state(self.random_state)
            epochs = float(self.n_epochs)
            batch = int(self.batch_size)
            N = data.n_rows
            if N is None and not getattr(data.source, "_one_shot", False):
                # CSV, callables: one counting (and checking) pass first, so that the schedule
                # and a fractional last epoch are those of the same rows in memory
                N = sum(Xb.shape[0] for _, Xb, _ in data.blocks())
            if isinstance(data.weights, np.ndarray):  # rows per epoch: the total weight
                N = float(data.weights.sum())
            planned = None if N is None else epochs * N / batch
            self._state = None
            done = 0.0
            while done < epochs:
                frac = min(1.0, epochs - done)
                seen = 0
                for _, Xb, wb in data.blocks():
                    if frac < 1.0 and N is not None and seen >= frac * N:
                        break
                    rows = np.arange(Xb.shape[0]) if wb is None else _frequency_rows(wb, rng)
                    if self.shuffle:
                        rows = rows[rng.permutation(rows.shape[0])]
                    if frac < 1.0 and N is not None:
                        rows = rows[:max(0, int(frac * N) - seen)]
                    # weights may repeat rows: pieces of whole mini-batches, each at most
                    # io.base.BLOCK_BYTES of float64 rows or one block; an unweighted block
                    # is one piece
                    size = max(Xb.shape[0], sources.base.BLOCK_BYTES // (8 * Xb.shape[1]), 1)
                    piece = -(-size // batch) * batch
                    for i in range(0, rows.shape[0], piece):
                        Xp = np.array(Xb[rows[i:i + piece]], dtype=np.float64)
                        if self._state is None:
                            self._start(Xp, rng, planned if planned is not None
                                        else epochs * Xp.shape[0] * 10, planned is not None)
                        self._consume(Xp)
                    seen += rows.shape[0]
                done += 1.0
        finally:
            if opened:
                data.close()
        if getattr(self, "_state", None) is None:  # every row had weight < 1 and drew 0
            raise ValueError("no row was drawn: the sample weights are all < 1 and every "
                             "Bernoulli draw was 0; scale the weights up")
        return self

    def _gpu_rows(self, X, min_samples):
        """(X for ``sgd.DeviceSGD``, the validated host array or None): a device array is
        checked in place, on the device (``fastmix.gpu.device_rows``: shape, dtype, NaN/inf;
        its value range is kept for the [0, 1] warning), anything else by check_array."""
        self._device_range = None
        if sgd.is_device_array(X):
            from . import gpu
            dev = gpu.device_rows(X, None, min_samples=min_samples)
            lo, hi = dev.range
            self._device_range = (float(np.min(lo)), float(np.max(hi)))
            return dev.X, None
        X = check_array(X, min_samples=min_samples)
        return X, X

    def _host_rows(self, X, Xh, order, n_rows, dtype=None):
        """The rows the initialisation sees on the CPU path, X[order][:n_rows], on the host:
        for init="kmeans++" a copy (as ``dtype``; a device array is copied to the host for
        it); otherwise only the [0, 1] range warning reads them, so no copy when they are all
        the rows (their order does not matter), and None for a device array."""
        kpp = self.init == "kmeans++"
        if Xh is None:
            if not kpp:
                return None
            Xh = X.copy_to_host()
        if order is None:
            rows = Xh[:n_rows]
        elif not kpp and n_rows == Xh.shape[0]:
            rows = Xh
        else:
            rows = Xh[order[:n_rows]]
        return np.ascontiguousarray(rows, dtype=dtype) if kpp else rows

    def _consume_gpu(self, dev, order=None, n_rows=None):
        obj = sgd.run_segment_gpu(dev, self._schedule, n=self.grid_shape_[0],
                                  exact=self.objective == "loglik",
                                  lam=(float(self.lambda_pi), float(self.lambda_mu),
                                       float(self.lambda_sigma)),
                                  s_min=1e-6, s_max=math.sqrt(float(self.precision_max)),
                                  order=order, n_rows=n_rows)
        dev.download(self._state)
        self._publish()
        return obj

    def _fit_gpu(self, X):
        """``fit`` on the GPU: the rows go to the device once, the state stays there across
        epochs; the same random draws, in the same order, as the CPU path on in-memory data
        (one block of all rows, permuted per epoch)."""
        X, Xh = self._gpu_rows(X, 2)
        rng = check_random_state(self.random_state)
        epochs = float(self.n_epochs)
        N, D = int(X.shape[0]), int(X.shape[1])
        batch = int(self.batch_size)
        self._state = None
        dev = None
        done = 0.0
        while done < epochs:
            frac = min(1.0, epochs - done)
            perm = rng.permutation(N) if self.shuffle else None
            n_rows = N if frac >= 1.0 else max(0, int(frac * N))
            if self._state is None:
                self._start(self._host_rows(X, Xh, perm, n_rows, np.float64), rng,
                            epochs * N / batch, True, n_features=D,
                            value_range=self._device_range)
                dev = sgd.DeviceSGD(X, self._state, batch)
            self._consume_gpu(dev, None if perm is None else dev.order(perm), n_rows)
            done += 1.0
        return self

    def partial_fit(self, X, y=None):
        """SGD over the rows of the batch X (n, D) in order, continuing the annealing state;
        the first call initialises (time schedule: planned over ``100 * n`` steps).  Returns
        self."""
        self._check_hyper()
        if self._on_gpu(X):
            X, Xh = self._gpu_rows(X, 1)
            if getattr(self, "_state", None) is None:
                self._start(self._host_rows(X, Xh, None, X.shape[0]),
                            check_random_state(self.random_state),
                            100 * X.shape[0] / int(self.batch_size), n_features=X.shape[1],
                            value_range=self._device_range)
            elif X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                                 f"expecting {self.n_features_in_} features as input.")
            self._consume_gpu(sgd.DeviceSGD(X, self._state, int(self.batch_size)))
            return self
        X = check_array(X, min_samples=1)
        if getattr(self, "_state", None) is None:
            self._start(X, check_random_state(self.random_state),
                        100 * X.shape[0] / int(self.batch_size))
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        self._consume(X)
        return self

    # ---------------------------------------------------------------- inference -------------
    def _gmm(self):
        """The fitted model as a diagonal GaussianMixture (exact densities, sampling)."""
        self._check_fitted()
        if self.covariance_type == "lpd":
            raise AssertionError("no GaussianMixture for covariance_type='lpd'")
        gm = GaussianMixture(self.n_components, covariance_type="diag",
                             random_state=self.random_state, chunk_size=self.chunk_size)
        cov = Covariance.registry["diag"].from_precisions(self.precisions_)
        gm._set_params_from(GMMParams(self.weights_, self.means_, cov))
        gm.n_features_in_ = self.n_features_in_
        return gm

    def _lpd_log_prob(self, X):
        """log pi_k + log N(x | k) (N, K) for covariance_type='lpd' (exact)."""
        self._check_fitted()
        X = self._validate_predict_X(X)
        return sgd.lpd_log_prob(X, *self._state)

    def score_samples(self, X):
        """Exact log p(x) of each row (N,) float64."""
        if self.covariance_type == "lpd":
            lp = self._lpd_log_prob(X)
            m = lp.max(axis=1)
            return m + np.log(np.exp(lp - m[:, None]).sum(axis=1))
        return self._gmm().score_samples(X)

    def score(self, X, y=None):
        """Mean exact log-likelihood per row."""
        if self.covariance_type == "lpd":
            return float(np.mean(self.score_samples(X)))
        return self._gmm().score(X)

    def score_max_component(self, X):
        """Mean max-component bound max_k log(pi_k N(x | k)) per row (<= score)."""
        if self.covariance_type == "lpd":
            return float(self._lpd_log_prob(X).max(axis=1).mean())
        gm = self._gmm()
        X = gm._validate_predict_X(X)
        lp = np.stack([np.log(self.weights_[k]) + 0.5 * np.log(self.precisions_[k]).sum()
                       - 0.5 * X.shape[1] * math.log(2 * math.pi)
                       - 0.5 * (((X - self.means_[k]) ** 2) * self.precisions_[k]).sum(axis=1)
                       for k in range(self.n_components)], axis=1)
        return float(lp.max(axis=1).mean())

    def predict(self, X):
        """Most probable component (N,) int64."""
        if self.covariance_type == "lpd":
            return np.argmax(self._lpd_log_prob(X), axis=1).astype(np.int64)
        return self._gmm().predict(X)

    def predict_proba(self, X):
        """Responsibilities (N, K)."""
        if self.covariance_type == "lpd":
            lp = self._lpd_log_prob(X)
            p = np.exp(lp - lp.max(axis=1, keepdims=True))
            return p / p.sum(axis=1, keepdims=True)
        return self._gmm().predict_proba(X)

    def sample(self, n_samples=1):
        """(X (n, D), labels (n,)) from the fitted mixture."""
        if self.covariance_type == "lpd":
            self._check_fitted()
            if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
                    or n_samples < 1:
                raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
            return sgd.lpd_sample(check_random_state(self.random_state), self.weights_,
                                  *self._state[1:], int(n_samples))
        return self._gmm().sample(n_samples)

    def save(self, path):
        """Write the model (versioned .npz, atomically); load with ``fastmix.load``."""
        self._check_fitted()
        params = {k: v for k, v in self.get_params().items() if k != "random_state"}
        meta = {"format_version": FORMAT_VERSION, "class": type(self).__name__,
                "params": params, "n_features_in_": self.n_features_in_,
                "n_steps_": self.n_steps_, "loss_curve_": self.loss_curve_}
        names = ("xi", "mu", "U", "a", "r") if self.covariance_type == "lpd" else \
            ("xi", "mu", "s")
        arrays = dict(zip(names, self._state))
        _atomic_write(path, lambda fh: np.savez(fh, meta=np.array(json.dumps(meta)), **arrays))

    @classmethod
    def _from_saved(cls, meta, arrays):
        est = cls(**meta["params"])
        est._check_hyper()
        K, D = est.n_components, int(meta["n_features_in_"])
        S = int(est.n_directions)
        lpd = est.covariance_type == "lpd"
        shapes = {"xi": (K,), "mu": (K, D)}
        shapes.update({"U": (K, S, D), "a": (K, S), "r": (K,)} if lpd else {"s": (K, D)})
        state = []
        for name, shape in shapes.items():
            v = np.ascontiguousarray(arrays[name], np.float64)
            if v.shape != shape:
                raise ValueError("inconsistent shapes")
            if not np.all(np.isfinite(v)):
                raise ValueError("non-finite parameters")
            state.append(v)
        if not all(np.all(v > 0) for v in state[2 + lpd:]):
            raise ValueError("non-finite parameters")
        est._start(state[1], np.random.default_rng(0), 1)
        est._state = tuple(state)
        est._schedule.t = int(meta["n_steps_"])
        est._schedule.history = [tuple(h) for h in meta["loss_curve_"]]
        est._publish()
        return est


MODEL_CLASSES = {"GaussianMixture": GaussianMixture, "GMMExpansion": GMMExpansion,
                 "BigLearnGaussianMixture": BigLearnGaussianMixture,
                 "SGDGaussianMixture": SGDGaussianMixture}


def _atomic_write(path, write):
    """Write a file through a temporary file in the same directory and an atomic rename: a
    reader (or a crash) never sees a half-written file."""
    path = sources.check_output_path(path)  # errors name the path given, not the temp file
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _n_distinct(means, rtol=1e-9):
    """Number of distinct rows of ``means`` (K, D) after rounding to a grid of ``rtol`` times
    the largest absolute value: k-means on fewer distinct points than K returns centres equal
    up to rounding.  Two grids offset by half a step (the smaller count wins) keep centres that
    differ by rounding from falling on either side of a grid line."""
    step = rtol * max(1.0, float(np.max(np.abs(means))))
    return min(np.unique(np.round(means / step + shift), axis=0).shape[0]
               for shift in (0.0, 0.5))


def _short(v):
    """A parameter value for a one-line message."""
    if isinstance(v, np.ndarray):
        return f"array{v.shape}"
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _clone(est):
    """An unfitted copy with the same constructor parameters."""
    return type(est)(**{k: copy.deepcopy(v) for k, v in est.get_params().items()})


def _frequency_rows(w, rng):
    """Row indices (M,) int64 taking row i c_i times, c_i = floor(w_i) + Bernoulli(frac(w_i))
    for weights w (n,) float64 >= 0 (E[c_i] = w_i; no random draw when all w_i are integers,
    so integer weights give exactly ``np.repeat(arange(n), w)``)."""
    w = np.asarray(w, dtype=np.float64)
    counts = np.floor(w)
    rest = w - counts
    if np.any(rest > 0):
        counts += rng.random(w.shape[0]) < rest
    return np.repeat(np.arange(w.shape[0]), counts.astype(np.int64))


def _is_column_name(sample_weight):
    """A string sample_weight that is not an existing file or a .npy path: a column name."""
    return (isinstance(sample_weight, str) and not os.path.exists(sample_weight)
            and not sample_weight.lower().endswith(".npy"))


def _weight_source(sample_weight, source):
    """Weights for out-of-core data: None, a validated (N,) array, or a 1-D random-access
    source read in step with the rows."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, (str, os.PathLike)):
        ws = sources.open_path(sample_weight, vector=True)
    elif isinstance(sample_weight, np.memmap):
        ws = sources.ArraySource(sample_weight.reshape(-1, 1), name="sample_weight")
    elif isinstance(sample_weight, sources.Source):
        ws = sample_weight
    else:
        n = source.n_rows
        if n is None:
            sw = check_sample_weight(sample_weight, np.asarray(sample_weight).shape[0])
        else:
            sw = check_sample_weight(sample_weight, n)
        return sw
    if ws.n_features != 1 or not ws.random_access:
        raise ValueError(f"sample_weight source {ws.name} must be one random-access column, "
                         f"got {ws.n_features} columns")
    if source.n_rows is not None and ws.n_rows != source.n_rows:
        raise ValueError(f"sample_weight has {ws.n_rows} rows but {source.name} has "
                         f"{source.n_rows}")
    return ws


def load(path):
    """Load a model written by ``save``.  Raises FileNotFoundError for a missing path and
    ValueError for files that are not fastmix models, are truncated or damaged, or come from a
    newer format version."""
    if os.path.isdir(path):
        raise ValueError(f"{path!s} is a directory, not a fastmix model file (.npz)")
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


__all__ = ["GaussianMixture", "GMMExpansion", "BigLearnGaussianMixture", "SGDGaussianMixture",
           "load", "ConvergenceWarning", "DegenerateComponentWarning",
           "NotFittedError"]
