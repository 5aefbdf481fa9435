"""Shared by the estimators of ``fastmix.mixture``: hyper-parameter choices, input helpers
(sample weights, dtypes, GPU arrays) and the ``MixtureBase`` class."""
import copy
import math
import os
import warnings

import numpy as np

from .._base import BaseEstimator, DensityMixin
from .._validation import NotFittedError, check_array, check_sample_weight
from .. import distributed
from .. import io as sources
from ..em import DEFAULT_CHUNK_ROWS, EMResult
from ..gpu import is_device_array


INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")
NOISE_MODELS = ("diagonal", "isotropic")
DEVICES = ("cpu", "cuda")
#: Above this many features, materialising dense lowrank covariances/precisions warns.
DENSE_WARN_FEATURES = 1000
ALGORITHMS = ("batch", "online")
#: Default rows per online-EM update in fit(algorithm="online"), in kernel chunks.
ONLINE_BATCH_CHUNKS = 16


try:  # scikit-learn's own warning when it is installed, so filters on its category catch ours
    from sklearn.exceptions import ConvergenceWarning as _SkConvergenceWarning
    _CONVERGENCE_BASES: tuple[type, ...] = (_SkConvergenceWarning,)
except ImportError:  # scikit-learn is optional
    _CONVERGENCE_BASES = (UserWarning,)


class ConvergenceWarning(*_CONVERGENCE_BASES):  # type: ignore[misc]  # bases chosen at import
    """Warned when EM stopped at ``max_iter`` before the lower bound settled within ``tol``.

    A UserWarning, and scikit-learn's ConvergenceWarning when scikit-learn is installed.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from fastmix import ConvergenceWarning, GaussianMixture
    >>> X = np.random.default_rng(0).normal(size=(300, 2))
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     gm = GaussianMixture(3, max_iter=1, random_state=0).fit(X)
    >>> any(issubclass(w.category, ConvergenceWarning) for w in caught), gm.converged_
    (True, False)
    """


# ---------------------------------------------------------------- parameter constraints -----
# Each estimator declares ``_parameter_constraints``: a dict from every constructor parameter
# to a list of the constraints one of which its value must meet (in the way of scikit-learn's
# ``_parameter_constraints``, with fastmix's own small descriptors so that scikit-learn stays
# optional).  ``None`` in a list admits None; ``ANY`` admits everything (arrays and objects
# checked where they are used).  ``MixtureBase._validate_params`` checks the table, then the
# estimator's ``_validate_extra`` hook checks what involves several parameters.

def _is_number(v):
    return not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating))


class Integer:
    """An integer (not a bool) >= ``lo``."""

    def __init__(self, lo):
        self.lo = lo

    def __call__(self, v):
        return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= self.lo

    def __str__(self):
        return f"an integer >= {self.lo}"


class Real:
    """A finite real number (not a bool) in the interval from ``lo`` to ``hi`` (None: no
    bound), ``closed`` "left", "right", "both" or "neither"."""

    def __init__(self, lo=None, hi=None, closed="left"):
        self.lo, self.hi, self.closed = lo, hi, closed

    def __call__(self, v):
        if not _is_number(v) or not math.isfinite(v):
            return False
        left, right = self.closed in ("left", "both"), self.closed in ("right", "both")
        if self.lo is not None and not (v >= self.lo if left else v > self.lo):
            return False
        return self.hi is None or (v <= self.hi if right else v < self.hi)

    def __str__(self):
        left, right = self.closed in ("left", "both"), self.closed in ("right", "both")
        if self.hi is None and self.lo is None:
            return "a finite number"
        if self.hi is None:
            return f"a finite number {'>=' if left else '>'} {self.lo}"
        if self.lo is None:
            return f"a finite number {'<=' if right else '<'} {self.hi}"
        return f"a number in {'[' if left else '('}{self.lo}, {self.hi}{']' if right else ')'}"


class Options:
    """One of the given values (strings, compared with ==)."""

    def __init__(self, *values):
        self.values = tuple(values)

    def __call__(self, v):
        return isinstance(v, str) and v in self.values

    def __str__(self):
        return repr(self.values[0]) if len(self.values) == 1 else f"one of {self.values}"


class _Any:
    def __call__(self, v):
        return True

    def __str__(self):
        return "anything"


#: Admits every value (the parameter is checked where it is used).
ANY = _Any()


def validate_params(constraints, params):
    """ValueError naming the first parameter of ``params`` (a dict) that meets none of its
    ``constraints`` (a dict of lists as in ``_parameter_constraints``), e.g. ``"chunk_size
    must be an integer >= 1 or None, got 0"``.  Checked in the table's order; a parameter
    without an entry is not checked (tests/test_api.py checks that every estimator's table
    covers exactly its parameters)."""
    for name, allowed in constraints.items():
        value = params[name]
        for c in allowed:  # (a loop, not any() over a generator: ~25 per fit)
            if value is None if c is None else c(value):
                break
        else:
            said = " or ".join("None" if c is None else str(c) for c in allowed)
            raise ValueError(f"{name} must be {said}, got {value!r}")


def _is_gpu_array(X):
    """True for arrays that live on a GPU (``__cuda_array_interface__``; the CUDA simulator's
    stand-ins).  Importing fastmix.gpu does not import numba-cuda."""
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

    #: {parameter: [constraints]}; see ``validate_params``.
    _parameter_constraints: dict = {}

    def _validate_params(self):
        """The constructor parameters against ``_parameter_constraints``, then
        ``_validate_extra``; ValueError naming the first bad parameter."""
        # the attributes themselves: get_params (inspect.signature per call) took ~0.1 ms, a
        # few per cent of a small fit; tests/test_param_constraints.py checks that every table
        # covers exactly its constructor parameters
        validate_params(self._parameter_constraints,
                        {name: getattr(self, name) for name in self._parameter_constraints})
        self._validate_extra()

    def _validate_extra(self):
        """Checks a constraint table cannot express (several parameters together)."""

    # ------------------------------------------------------------------ fitting -------------
    # The set-up and bookkeeping of ``fit`` that GaussianMixture and BayesianGaussianMixture
    # share (the iterations themselves differ: EM and variational Bayes).

    def _check_fit_args(self, algorithm, checkpoint, resume):
        """The parameters, then ``fit``'s ``algorithm``/``checkpoint``/``resume`` arguments,
        before any work: a bad checkpoint path fails now, naming it."""
        self._validate_params()
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        if checkpoint is not None and self.n_init != 1:
            raise ValueError("checkpoint needs n_init=1 (one initialisation to resume)")
        if resume and checkpoint is None:
            raise ValueError("resume=True needs a checkpoint path")
        if checkpoint is not None:
            sources.check_output_path(checkpoint, "checkpoint")

    @staticmethod
    def _device_data_for(gpu, data):
        """The rows of ``data`` for batch iterations on the GPU (``gpu``: fastmix.gpu): a GPU
        array used in place, in-memory rows (and weights) copied to the device once per fit
        when they fit, else a StreamedData sending the rows through the device every pass."""
        X0 = data.in_memory
        if isinstance(data.source, gpu.DeviceSource):  # used in place, no copy
            return gpu.to_gpu(data.source.X, data.weights)
        if X0 is not None and gpu.fits_on_device(X0.nbytes):
            return gpu.to_gpu(X0, data.weights)
        return gpu.StreamedData(data, gpu.DEFAULT_BLOCK_ROWS, gpu.DEFAULT_THREADS)

    def _set_fit_result(self, best, D, warning):
        """Publish the run ``best`` (an EMResult) as the fit's attributes (not the
        parameters); ``warning``: the class of the not-converged warning."""
        if not best.converged and self.max_iter > 0:
            warnings.warn("Best performing initialization did not converge. Try different init "
                          "parameters, or increase max_iter, tol, or check for degenerate data.",
                          warning, stacklevel=4)
        self.converged_ = bool(best.converged)
        self.n_iter_ = int(best.n_iter)
        self.lower_bound_ = float(best.lower_bound)
        self.lower_bounds_ = list(best.lower_bounds)
        self.iteration_times_ = list(best.iter_times)
        self.n_features_in_ = D
        self._fitted_on = None  # set on checkpoint snapshots only

    def _check_warm_features(self, D, warm):
        if warm and hasattr(self, "n_features_in_") and D != self.n_features_in_:
            raise ValueError(f"X has {D} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input.")

    def _iteration_callback(self, done, history, bar=None, saver=None, rows_bar=None,
                            data=None, timed=False):
        """``callback(n_iter, bound, change, dt, params, state=None)`` for the driver loops:
        advances the progress ``bar`` (and resets ``rows_bar`` to ``data.n_rows``, known after
        the first pass for some sources), prints every
        ``verbose_interval`` iterations with ``verbose >= 2``, and hands the state after
        iteration ``done + n_iter`` to the checkpoint ``saver`` (``history``: the bounds so
        far, extended in place)."""
        def callback(n_iter, bound, change, dt, params, state=None):
            it = done + n_iter
            if bar is not None:
                bar.update(1)
                extra = dict(sec=f"{dt:.3f}") if timed else {}
                bar.set_postfix(lower_bound=f"{bound:.6g}", change=f"{change:.3g}", **extra)
            if rows_bar is not None:
                rows_bar.reset(total=data.n_rows)
            if self.verbose >= 2 and it % self.verbose_interval == 0:
                print(f"  Iteration {it}\t time lapse {dt:.5f}s\t ll change {change:.5g}")
            if saver is not None:
                history.append(bound)
                saver(EMResult(params, bound, it, abs(change) < self.tol, list(history),
                               state=state))
        return callback

    def _finish_run(self, result, prior):
        """``result`` of a run continued from ``prior`` (an EMResult): counts and bounds
        include the prior's iterations; the per-initialisation summary with ``verbose``."""
        result.n_iter += prior.n_iter
        result.lower_bounds = list(prior.lower_bounds) + list(result.lower_bounds)
        if self.verbose:
            print(f"Initialization {'converged' if result.converged else 'did not converge'}. "
                  f"lower bound {result.lower_bound:.6g}")
        return result

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
