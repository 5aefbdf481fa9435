"""``GaussianMixture``: exact EM (batch, online, out-of-core, Dask, GPU)."""
import inspect
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence

from typing import Any

import numpy as np

from .._compute import KIND_CODES, blas_single_threaded, s2_shape
from .._params import warn_at_caller
from .._params import COVARIANCE_TYPES, FIXABLE, Covariance, GMMParams, LowRankCovariance
from .._stats import Stats
from .._validation import check_array, check_random_state, check_sample_weight
from .. import distributed, inference
from .. import missing as _missing
from .. import io as sources
from ..em import EMResult, run_em
from ..init import _subsample, initial_params
from ..online import OnlineState, online_update, run_online
from ._base import (ANY, ConvergenceWarning, DENSE_WARN_FEATURES, DEVICES, INIT_METHODS,
                    NOISE_MODELS, ONLINE_BATCH_CHUNKS, Integer, MixtureBase, Options, Real,
                    _as_input_dtype, _fit_dtype, _is_gpu_array, _n_distinct)
from ._conditional import MissingValuesMixin
from ._shared import GaussianMixtureMethods
from ._persist import CheckpointMixin, _atomic_write, _fit_meta, _save_online, register
from ._typing import ArrayLike, DataLike, RandomStateLike

#: Values of ``GaussianMixture(missing=...)``.
MISSING = ("error", "marginalize")


@register
class GaussianMixture(GaussianMixtureMethods, MissingValuesMixin, CheckpointMixin, MixtureBase):
    """Gaussian mixture model fitted by exact EM on fused Numba kernels.

    Same constructor, attributes and methods as ``sklearn.mixture.GaussianMixture``, plus
    ``sample_weight`` in ``fit``, ``chunk_size``, ``progress`` and ``save``/``fastmix.load``.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components K.
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
    weights_init : array-like of shape (K,), optional
        Initial weights.
    means_init : array-like of shape (K, D), optional
        Initial means.
    precisions_init : array-like, optional
        Initial precisions, in scikit-learn's layout for the covariance type.
    random_state : int, numpy.random.Generator, numpy.random.RandomState or None, \
default=None
        Seeds the initialisation; fits with the same seed are bit-identical.
    warm_start : bool, default=False
        Continue from the previous fit's parameters (``n_init`` is then 1).
    verbose : int, default=0
        1 prints per-initialisation summaries, 2 also every ``verbose_interval`` iterations.
    verbose_interval : int, default=10
        Iterations between progress lines with ``verbose=2``.
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
    fixed : None or sequence of {"weights", "means", "covariances"}, default=None
        Parameter groups EM keeps at their initial values (from ``weights_init`` /
        ``means_init`` / ``precisions_init``, or from ``init_params``); the others get the
        M-step of the constrained model (e.g. covariances about fixed means).  Useful for
        known mixing proportions, fixed-bandwidth models and studies such as overspecified EM
        (``bench/overspecified_em.py``).
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
    missing : {"error", "marginalize"}, default="error"
        What a NaN entry means.  "error": bad input, a ValueError naming the row (as before).
        "marginalize": a value missing at random; EM maximises the likelihood of the observed
        entries exactly (the E-step on each row's observed coordinates, the M-step with the
        expected sufficient statistics, ``fastmix.missing``), and ``score_samples``,
        ``predict``, ``predict_proba``, ``score``, ``bic`` use the observed entries.  A row
        (or, in ``fit``, a column) with every entry missing is a ValueError; inf is always an
        error.  Data without NaN give exactly the model of ``missing="error"``.  Supported for
        batch EM on the CPU (arrays; files: NaN in ``.npy``, nulls in Parquet/CSV, the file
        fit equal to the in-memory fit bit for bit; Dask arrays), online EM (``partial_fit``,
        ``fit(algorithm="online")``: each batch's expected statistics) and every covariance
        type (lowrank: Woodbury on the observed rows of W and psi); with ``device="cuda"``
        batch EM of the diag and spherical types on data that fit on the device (masked GPU
        kernel; scores of rows with NaN are computed on the CPU), a ValueError otherwise.
        ``impute``, ``sample_missing`` and ``condition`` work whatever this setting.

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
    chunks (see ``fastmix.io``).  Such data are read in blocks with bounded memory; a
    batch fit gives bit-identically the model of the same rows in memory.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix import GaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(-4, 1, (300, 2)), rng.normal(4, 1, (300, 2))])
    >>> gm = GaussianMixture(2, covariance_type="diag", random_state=0).fit(X)
    >>> np.sort(gm.means_[:, 0]).round(1)
    array([-4.1,  3.9])
    >>> sorted(gm.predict([[-4.0, -4.0], [4.0, 4.0]]).tolist())  # one point per cluster
    [0, 1]
    """

    def __init__(self, n_components: int = 1, *, covariance_type: str = "full", tol: float = 1e-3,
                 reg_covar: float = 1e-6, max_iter: int = 100, n_init: int = 1,
                 init_params: str = "kmeans", weights_init: ArrayLike | None = None,
                 means_init: ArrayLike | None = None, precisions_init: ArrayLike | None = None,
                 random_state: RandomStateLike = None, warm_start: bool = False, verbose: int = 0,
                 verbose_interval: int = 10, chunk_size: int | None = None, progress: bool = False,
                 step_offset: float = 1.0, step_decay: float = 0.6, batch_size: int | None = None,
                 fixed: Sequence[str] | None = None, n_factors: int | None = None,
                 noise: str = "diagonal", loadings_init: ArrayLike | None = None,
                 device: str = "cpu", missing: str = "error") -> None:
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
        self.missing = missing

    # ------------------------------------------------------------------ validation ----------
    _parameter_constraints = {
        "n_components": [Integer(1)], "max_iter": [Integer(0)], "n_init": [Integer(1)],
        "verbose": [Integer(0)], "verbose_interval": [Integer(1)],
        "covariance_type": [Options(*COVARIANCE_TYPES)], "init_params": [Options(*INIT_METHODS)],
        "tol": [Real(0)], "reg_covar": [Real(0)],
        "chunk_size": [Integer(1), None], "batch_size": [Integer(1), None],
        "step_offset": [Real(0)], "step_decay": [Real(0.5, 1, closed="right")],
        "fixed": [ANY],  # a group name or a sequence of them: _validate_extra
        "n_factors": [Integer(1), None], "noise": [Options(*NOISE_MODELS)],
        "device": [Options(*DEVICES)], "missing": [Options(*MISSING)],
        # arrays (validated against the data's shape in _user_init) and free-form values
        "weights_init": [ANY], "means_init": [ANY], "precisions_init": [ANY],
        "loadings_init": [ANY], "random_state": [ANY], "warm_start": [ANY], "progress": [ANY],
    }

    def _validate_extra(self):
        self._fixed_groups()

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
        if self.fixed is None:
            return ()
        groups = (self.fixed,) if isinstance(self.fixed, str) else tuple(self.fixed)
        bad = [g for g in groups if g not in FIXABLE]
        if bad:
            raise ValueError(f"fixed may name {FIXABLE}, got {bad}")
        if set(groups) == set(FIXABLE):
            raise ValueError("fixed names every parameter group: nothing is left to fit")
        return tuple(g for g in FIXABLE if g in groups)

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

    # ------------------------------------------------------------------ fitting -------------
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

    def fit(self, X: DataLike, y: Any = None, sample_weight: DataLike | None = None, *,
            algorithm: str = "batch", checkpoint: str | os.PathLike | None = None,
            resume: bool = False) -> "GaussianMixture":
        """Estimate the parameters with EM.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            Real numbers; or a path (``.npy``, ``file.h5:/dataset``, ``.zarr``, ``.parquet``,
            ``.csv``), an ``np.memmap``, a ``fastmix.io.Source``, a list of (n_i, D) chunk arrays,
            or a callable returning an iterator of chunks, read block by block.
            Float32 data stay float32; other real types become float64.
        y : None
            Ignored; present for scikit-learn compatibility.
        sample_weight : array-like of shape (N,), str, os.PathLike or Source, optional
            Non-negative weights of the rows.  For out-of-core data also a path to a ``.npy`` of
            N weights, a 1-D random-access Source, or the name of a weight column of a
            Parquet/CSV file.
        algorithm : {"batch", "online"}, default="batch"
            "batch": exact EM, one pass over the data per iteration (out-of-core data give
            bit-identically the in-memory model for the same ``chunk_size``).  "online":
            stepwise EM (``fastmix.online``) in batches of ``batch_size`` rows, initialised
            from the k-means sample alone; ``max_iter`` bounds the passes.
        checkpoint : str or os.PathLike, optional
            Save the model (atomically) after every iteration or pass.  Needs ``n_init=1``.
        resume : bool, default=False
            With ``checkpoint``: if the file exists, continue from it instead of starting
            over; the result equals an uninterrupted fit's.

        Returns
        -------
        GaussianMixture
            The fitted estimator (``self``).

        Raises
        ------
        ValueError
            For an invalid hyper-parameter (named), invalid input (naming the first bad row),
            fewer rows than components, or an unreadable file.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GaussianMixture
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> gm = GaussianMixture(2, random_state=0).fit(X)
        >>> gm.converged_, gm.means_.shape
        (True, (2, 2))
        """
        self._fit(X, sample_weight, algorithm, checkpoint, resume)
        return self

    def fit_predict(self, X: DataLike, y: Any = None,
                    sample_weight: DataLike | None = None) -> np.ndarray:
        """Fit the model, then return the most probable component of each row.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            Real numbers; or a path (``.npy``, ``file.h5:/dataset``, ``.zarr``, ``.parquet``,
            ``.csv``), an ``np.memmap``, a ``fastmix.io.Source``, a list of (n_i, D) chunk arrays,
            or a callable returning an iterator of chunks, read block by block.
        y : None
            Ignored; present for scikit-learn compatibility.
        sample_weight : array-like of shape (N,), optional
            Non-negative weights of the rows (as in ``fit``).

        Returns
        -------
        numpy.ndarray of shape (N,), dtype int64
            The component labels.

        Raises
        ------
        ValueError
            As ``fit``.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GaussianMixture
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> GaussianMixture(2, random_state=0).fit_predict(X).shape
        (300,)
        """
        X_mem = self._fit(X, sample_weight)
        return self.predict(X if X_mem is None else X_mem)

    def _fit(self, X, sample_weight, algorithm="batch", checkpoint=None, resume=False):
        """Fit; returns the validated in-memory array (None for out-of-core data)."""
        self._check_fit_args(algorithm, checkpoint, resume)
        gpu = self._gpu(X, algorithm)
        data, opened = self._stream(X, sample_weight, fitting=True)
        self._nan_fit = False
        if self._nan_allowed:
            try:
                self._nan_fit = self._check_missing_fit(data, gpu, algorithm)
            except BaseException:
                if opened:
                    data.close()
                raise
        if algorithm == "online" and getattr(data, "is_dask", False):
            raise ValueError("algorithm='online' is not available for dask arrays (batch EM is; "
                             "online EM is sequential by nature)")
        try:
            self._device_data = None
            if gpu is not None and algorithm == "batch":  # (online EM uploads batch by batch)
                self._device_data = self._device_data_for(gpu, data)
            best, D = self._fit_stream(data, algorithm, checkpoint, resume)
        finally:
            self._nan_fit = False
            if getattr(self._device_data, "streamed", False):
                self._device_data.close()
            self._device_data = None  # frees the device copy
            if opened:
                data.close()
        self._set_fit_result(best, D, ConvergenceWarning)
        self._set_params_from(best.params, _fit_dtype(data))
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
        self._check_warm_features(D, self.warm_start)
        start = None
        record = None if checkpoint is None else sources.data_record(data)
        if resume and os.path.exists(checkpoint):
            start = self._from_checkpoint(checkpoint, D, algorithm, record)
            if start.converged or start.n_iter >= self.max_iter:
                return start, D
        do_init = start is None and not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1
        rng = check_random_state(self.random_state)
        with blas_single_threaded():
            best = None
            for init in range(n_init):
                if self.verbose:
                    print(f"Initialization {init}")
                first = []  # the start's E-step of its mixture on all rows, when it did one
                if start is not None:
                    prior = start
                elif do_init:
                    params = self._initial(self._init_data(data), rng, user,
                                           sample_only=algorithm == "online",
                                           first_estep=first)
                    self._check_rows(data.n_rows)
                    prior = EMResult(params, -np.inf, 0, False)
                else:
                    prior = EMResult(self._params(), self.lower_bound_, 0, False,
                                     state=getattr(self, "_online", None))
                if self.max_iter == 0:
                    result = prior
                else:
                    result = self._run(data, prior, init, n_init, algorithm, checkpoint,
                                       record, first[0] if first else None)
                if best is None or result.lower_bound > best.lower_bound:
                    best = result
        return best, D

    def _run(self, data, prior, init, n_init, algorithm, checkpoint, record=None,
             first_stats=None):
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
        callback = self._iteration_callback(done, list(prior.lower_bounds), bar, saver,
                                            rows_bar, data, timed=True)
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
                                    estep=(_missing.batch_estep(self._chunk_rows)
                                           if getattr(self, "_nan_fit", False)
                                           else self._gpu_estep()))
            elif getattr(self, "_nan_fit", False) and getattr(self, "_device_data",
                                                              None) is None:
                # NaN entries: the masked E-step (on the GPU: below)
                result = _missing.run_em(data, None, prior.params,
                                         reg_covar=float(self.reg_covar), tol=float(self.tol),
                                         max_iter=int(self.max_iter) - done,
                                         chunk_rows=self._chunk_rows,
                                         lower_bound=prior.lower_bound, callback=callback,
                                         on_block=on_block, fixed=self._fixed_groups())
            elif getattr(self, "_device_data", None) is not None:
                from .. import gpu
                kw = dict(reg_covar=float(self.reg_covar), tol=float(self.tol),
                          max_iter=int(self.max_iter) - done, lower_bound=prior.lower_bound,
                          callback=callback, fixed=self._fixed_groups())
                if self._device_data.streamed:  # host data sent through the device per pass
                    result = gpu.run_em_gpu_streamed(self._device_data, prior.params, **kw)
                else:                           # rows resident on the device
                    result = gpu.run_em_gpu(self._device_data, None, prior.params,
                                            block_rows=gpu.DEFAULT_BLOCK_ROWS,
                                            threads=gpu.DEFAULT_THREADS,
                                            missing=getattr(self, "_nan_fit", False), **kw)
            else:
                result = run_em(data, None, prior.params, reg_covar=float(self.reg_covar),
                                tol=float(self.tol), max_iter=int(self.max_iter) - done,
                                lower_bound=prior.lower_bound, callback=callback,
                                on_block=on_block, fixed=self._fixed_groups(),
                                first_stats=first_stats)
        finally:
            if rows_bar is not None:
                rows_bar.close()
            if bar is not None:
                bar.close()
        return self._finish_run(result, prior)

    def partial_fit(self, X: DataLike, y: Any = None,
                    sample_weight: DataLike | None = None) -> "GaussianMixture":
        """Do one online (stepwise) EM update with the rows ``X``; see ``fastmix.online``.

        The first call initialises the model from ``X`` (``init_params`` on these rows, which
        need n >= n_components) and sets the running statistics from it.  Each later call
        blends ``X``'s statistics in with step rho_t = (t + step_offset)^-step_decay.  After a
        batch ``fit``, the first call continues from the fitted parameters.
        ``lower_bound_`` is the mean log-likelihood of ``X`` under the parameters before the
        update.

        Parameters
        ----------
        X : array-like of shape (n, D)
            A batch of rows.
        y : None
            Ignored; present for scikit-learn compatibility.
        sample_weight : array-like of shape (n,), optional
            Non-negative weights of the rows.

        Returns
        -------
        GaussianMixture
            The updated estimator (``self``).

        Raises
        ------
        ValueError
            For invalid input (naming the first bad row), a first batch with fewer rows than
            components, or a batch of another width.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> gm = GaussianMixture(2, random_state=0)
        >>> for _ in range(5):
        ...     gm = gm.partial_fit(rng.normal(size=(500, 2)))
        >>> gm.n_steps_
        5
        """
        self._validate_params()
        gpu = self._gpu(X, algorithm="online")
        fitted = hasattr(self, "means_")
        estep = None
        if gpu is not None and _is_gpu_array(X):  # checked on the device, used in place
            batch, sw = gpu.device_rows(X, sample_weight, min_samples=1), None
            # the first call initialises on the host: the rows come back for that only
            X, init_sw = batch.to_host() if not fitted else (batch, None)
        else:
            if _is_gpu_array(X):
                raise ValueError(f"X is a GPU array ({type(X).__name__}); use device='cuda', or "
                                 "copy it to the host first")
            X = check_array(X, min_samples=1, allow_nan=self._nan_allowed)
            sw = init_sw = check_sample_weight(sample_weight, X.shape[0])
            batch = X
            # NaN entries (missing="marginalize"): inf, empty rows and -- for the first call,
            # which initialises from these rows -- empty columns are errors naming them
            has_nan = self._nan_allowed and _missing.check_missing(X, columns=not fitted)
            if has_nan:
                self._check_missing_partial(gpu)
                if not fitted:  # the start sees column-mean-imputed rows (as fit's does)
                    X = _missing.fill(X, _missing.column_means(
                        sources.as_stream(X, None, self._chunk_rows))[0])
                estep = _missing.batch_estep(self._chunk_rows)
        if fitted and X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        with blas_single_threaded():
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
                estep=estep if estep is not None else self._gpu_estep())
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

    # ------------------------------------------------------------------ model selection -----
    def _n_parameters(self):
        return self._params().n_parameters()

    def bic(self, X: DataLike) -> float:
        """Compute the Bayesian information criterion on ``X`` (lower is better).

        The criterion is ``-2 log L + p log N``, with L the likelihood of ``X``, p the number of free
        parameters and N the number of rows.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            Real numbers; or a path (``.npy``, ``file.h5:/dataset``, ``.zarr``, ``.parquet``,
            ``.csv``), an ``np.memmap``, a ``fastmix.io.Source``, a list of (n_i, D) chunk arrays,
            or a callable returning an iterator of chunks, read block by block.

        Returns
        -------
        float
            The criterion.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            When ``X`` has another number of features than the fit's, or NaN / inf values (NaN is
            allowed with ``missing="marginalize"``), naming the first bad row.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GaussianMixture
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> gm = GaussianMixture(2, random_state=0).fit(X)
        >>> bool(GaussianMixture(1).fit(X).bic(X) < gm.bic(X))  # one Gaussian is enough
        True
        """
        self._check_fitted()
        total, n, _ = self._score_sum(X)
        return -2 * total + self._n_parameters() * math.log(n)

    def aic(self, X: DataLike) -> float:
        """Compute the Akaike information criterion on ``X`` (lower is better).

        The criterion is ``-2 log L + 2 p``, with L the likelihood of ``X``, p the number of free
        parameters and N the number of rows.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            Real numbers; or a path (``.npy``, ``file.h5:/dataset``, ``.zarr``, ``.parquet``,
            ``.csv``), an ``np.memmap``, a ``fastmix.io.Source``, a list of (n_i, D) chunk arrays,
            or a callable returning an iterator of chunks, read block by block.

        Returns
        -------
        float
            The criterion.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            When ``X`` has another number of features than the fit's, or NaN / inf values (NaN is
            allowed with ``missing="marginalize"``), naming the first bad row.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GaussianMixture
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> gm = GaussianMixture(2, random_state=0).fit(X)
        >>> bool(GaussianMixture(1).fit(X).aic(X) < gm.aic(X))  # one Gaussian is enough
        True
        """
        self._check_fitted()
        total, n, _ = self._score_sum(X)
        return -2 * total + 2 * self._n_parameters()

    # ------------------------------------------------------------------ persistence ---------
    _ARRAY_PARAMS = ("weights_init", "means_init", "precisions_init", "loadings_init")
    _FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_")
    _FITTED_LOWRANK = ("weights_", "means_", "loadings_", "noise_variances_")

    def _fitted_names(self):
        return self._FITTED_LOWRANK if self.covariance_type == "lowrank" else self._FITTED

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to a versioned ``.npz`` file (no pickle), atomically.

        The file is written to a temporary name, then renamed.  Load it with ``fastmix.load``.
        A model trained with ``partial_fit`` keeps its running statistics, so ``partial_fit``
        continues after loading.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        OSError
            When ``path`` cannot be written (its directory is missing, it is a directory ...).

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GaussianMixture
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> gm = GaussianMixture(2, random_state=0).fit(X)
        >>> import fastmix
        >>> gm.save("model.npz")
        >>> bool(np.array_equal(fastmix.load("model.npz").means_, gm.means_))
        True
        """
        self._check_fitted()
        params = self.get_params()
        scalars: dict[str, Any] = {}
        arrays: dict[str, Any] = {}
        for k, v in params.items():
            if k in self._ARRAY_PARAMS:
                if v is not None:
                    arrays["init__" + k] = np.asarray(v, dtype=np.float64)
            elif k == "random_state" and not (v is None or isinstance(v, (int, np.integer))):
                scalars[k] = None  # generators are not serialisable; documented
            else:
                scalars[k] = v.item() if isinstance(v, np.generic) else v
        meta = _fit_meta(self, scalars)
        for name in self._fitted_names():
            arrays["fit__" + name] = getattr(self, name)
        _save_online(self, meta, arrays)
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
        est._validate_params()
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
                    or st.s2.shape != s2_shape(
                        KIND_CODES[est.covariance_type], K, D,
                        est._q(D) if est.covariance_type == "lowrank" else 0):
                raise ValueError("online statistics have inconsistent shapes")
            est._online = OnlineState(st, int(on["t"]))
            est.n_steps_ = int(on["n_steps_"])
        return est
