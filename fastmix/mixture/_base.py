"""Shared by the estimators of ``fastmix.mixture``: hyper-parameter choices, input helpers
(sample weights, dtypes, GPU arrays) and the ``MixtureBase`` class."""
import copy
import os

import numpy as np

from .._base import BaseEstimator, DensityMixin
from .._validation import NotFittedError, check_array, check_sample_weight
from .. import distributed
from .. import io as sources
from ..em import DEFAULT_CHUNK_ROWS


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
    from ..gpu import is_device_array
    return is_device_array(X)


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


class MixtureBase(DensityMixin, BaseEstimator):
    """What the estimators of this package share: the fitted-state checks, turning the input
    (arrays, files, sources, dask or GPU arrays) into a ``Stream``, and the row-chunk size.
    Subclasses set ``_fitted_attr`` (default ``means_``) and ``chunk_size``."""

    @property
    def _chunk_rows(self):
        return DEFAULT_CHUNK_ROWS if self.chunk_size is None else int(self.chunk_size)

    #: The attribute whose presence means "fitted".
    _fitted_attr = "means_"

    def _check_fitted(self):
        if not hasattr(self, self._fitted_attr):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call "
                                 "'fit' with appropriate arguments before using this estimator.")

    def __sklearn_is_fitted__(self):
        return hasattr(self, self._fitted_attr)

    @property
    def _nan_allowed(self):
        """NaN entries are missing values (``missing="marginalize"``), not an error."""
        return getattr(self, "missing", "error") == "marginalize"

    def _validate_predict_X(self, X, allow_nan=None):
        self._check_fitted()
        return check_array(X, n_features=self.n_features_in_, estimator=type(self).__name__,
                           allow_nan=self._nan_allowed if allow_nan is None else allow_nan)

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
                X = check_array(X, min_samples=2, allow_nan=self._nan_allowed)
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
            if self._nan_allowed:  # NaN (and Parquet/CSV nulls) are missing values
                stream.allow_nan = source.nulls_as_nan = True
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
        from .. import gpu
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


def _n_distinct(means, rtol=1e-9):
    """Number of distinct rows of ``means`` (K, D) after rounding to a grid of ``rtol`` times
    the largest absolute value: k-means on fewer distinct points than K returns centres equal
    up to rounding.  Two grids offset by half a step (the smaller count wins) keep centres that
    differ by rounding from falling on either side of a grid line."""
    step = rtol * max(1.0, float(np.max(np.abs(means))))
    K = means.shape[0]
    if K <= 256:  # the common case, all far apart: no sorting (np.unique took ~0.3 ms)
        gap = np.abs(means[:, None, :] - means[None, :, :]).max(axis=2)
        gap[np.arange(K), np.arange(K)] = np.inf
        if gap.min() > 4 * step:
            return K
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
