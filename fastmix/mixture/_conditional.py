"""``MissingValuesMixin``: what ``GaussianMixture`` does with missing (NaN) entries and
conditional distributions -- imputation (``impute``, ``iter_impute``), multiple imputation
(``sample_missing``), conditioning on observed features (``condition``) and the checks and
initialisation data of a fit with ``missing="marginalize"``.  The numerics live in
``fastmix.missing``; this module only adapts them to the estimator."""
import numpy as np
from collections.abc import Iterator, Sequence
from typing import Any

from .._validation import check_random_state
from .. import missing as _missing
from .. import io as sources
from ._base import _as_input_dtype, _is_gpu_array
from ._typing import ArrayLike, DataLike, RandomStateLike


class MissingValuesMixin:
    """Missing-value and conditioning methods of ``GaussianMixture``.  The host class provides
    ``_params()``, ``_set_params_from``, ``_stream``, ``_validate_predict_X``, ``_chunk_rows``
    and the fitted attributes."""

    def _missing_X(self, X, rows=True):
        """X (N, D) in memory with NaN entries allowed; inf and (with ``rows``) rows with
        nothing observed are errors naming the row."""
        X = self._validate_predict_X(X, allow_nan=True)
        if rows:
            _missing.check_missing(X, columns=False)
        elif np.isinf(X).any():
            bad = int(np.flatnonzero(np.isinf(X).any(axis=1))[0])
            raise ValueError(f"Input X contains infinity (first bad row: {bad}); only NaN "
                             "marks a missing value")
        return X

    def impute(self, X: DataLike, return_std: bool = False) -> Any:
        """Fill the missing (NaN) entries of ``X`` with their conditional means under the model.

        Parameters
        ----------
        X : array-like of shape (N, D)
            Real numbers, NaN marking missing entries (whatever the ``missing`` setting).  A row
            with nothing observed gets the mixture's mean.
        return_std : bool, default=False
            Also return the conditional standard deviations: of the mixture (law of total
            variance over the components), not of one component; 0 on observed entries.

        Returns
        -------
        X_filled : numpy.ndarray of shape (N, D)
            float64 (float32 for float32 ``X``); observed entries unchanged.
        std : numpy.ndarray of shape (N, D)
            The conditional standard deviations; only with ``return_std``.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            When ``X`` has another number of features or holds infinity (naming the row).

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GaussianMixture
        >>> X = np.random.default_rng(0).multivariate_normal([0, 0], [[1, 0.9], [0.9, 1]], 500)
        >>> gm = GaussianMixture(1, random_state=0).fit(X)
        >>> gm.impute([[1.0, np.nan]]).round(1)  # strongly correlated features
        array([[1. , 0.9]])
        """
        self._check_fitted()
        Xv = self._missing_X(X, rows=False)
        out = _missing.impute(Xv, self._params(), return_std)
        if return_std:
            return _as_input_dtype(out[0], Xv), _as_input_dtype(out[1], Xv)
        return _as_input_dtype(out, Xv)

    def iter_impute(self, X: DataLike, return_std: bool = False) -> Iterator[tuple[int, Any]]:
        """Impute block by block, for data larger than memory.

        The data are a path, memmap or ``fastmix.io.Source`` (NaN in ``.npy``, nulls in
        Parquet/CSV); in-memory arrays are imputed in one block.  Out of core, a row with nothing
        observed is an error naming its chunk and row.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            The data, NaN (or null) marking missing entries.
        return_std : bool, default=False
            Also yield the conditional standard deviations (see ``impute``).

        Yields
        ------
        start : int
            The first row of the block.
        filled : numpy.ndarray of shape (n, D), or tuple of two such arrays
            The block imputed, or with ``return_std`` the pair ``(filled, std)``.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            For bad input, naming the chunk and row.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GaussianMixture
        >>> X = np.random.default_rng(0).multivariate_normal([0, 0], [[1, 0.9], [0.9, 1]], 500)
        >>> gm = GaussianMixture(1, random_state=0).fit(X)
        >>> np.save("gaps.npy", np.array([[1.0, np.nan], [np.nan, -1.0]]))
        >>> [(start, block.round(1)) for start, block in gm.iter_impute("gaps.npy")]
        [(0, array([[ 1. ,  0.9],
               [-0.9, -1. ]]))]
        """
        self._check_fitted()
        if not sources.is_out_of_core(X):
            yield 0, self.impute(X, return_std)
            return
        data, opened = self._stream(X, fitting=False)
        try:
            data.allow_nan = True
            for src in (data.source, getattr(data.source, "inner", None)):
                if src is not None:
                    src.nulls_as_nan = True
            params = self._params()
            for start, block, _ in data.blocks():
                yield start, _missing.impute(block, params, return_std)
        finally:
            if opened:
                data.close()

    def sample_missing(self, X: DataLike, n_samples: int = 1,
                       random_state: RandomStateLike = None) -> np.ndarray:
        """Draw completions of ``X`` (multiple imputation) from the model.

        Each NaN is drawn from the conditional mixture given its row's observed entries.

        Parameters
        ----------
        X : array-like of shape (N, D)
            Real numbers, NaN marking missing entries.
        n_samples : int, default=1
            Number of completions, at least 1.
        random_state : int, numpy.random.Generator or None, default=None
            Seeds the draws; None uses the estimator's ``random_state``.

        Returns
        -------
        numpy.ndarray of shape (n_samples, N, D), dtype float64
            The completions; observed entries are copied unchanged.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            When ``n_samples`` is not an integer >= 1, or ``X`` is invalid (naming the row).

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GaussianMixture
        >>> X = np.random.default_rng(0).multivariate_normal([0, 0], [[1, 0.9], [0.9, 1]], 500)
        >>> gm = GaussianMixture(1, random_state=0).fit(X)
        >>> draws = gm.sample_missing([[1.0, np.nan]], n_samples=3, random_state=0)
        >>> draws.shape, bool(np.all(draws[:, 0, 0] == 1.0))
        ((3, 1, 2), True)
        """
        self._check_fitted()
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
                or n_samples < 1:
            raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
        Xv = self._missing_X(X, rows=False)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        return _missing.sample_missing(Xv, self._params(), int(n_samples), rng)

    def condition(self, observed_indices: Sequence[int], x_observed: ArrayLike) -> Any:
        """Condition the mixture on observed values of some features.

        The distribution of the other features given ``x[observed_indices] = x_observed`` is again
        a Gaussian mixture, returned as a fitted ``GaussianMixture`` over the remaining features
        (in increasing index order).  Weights are proportional to
        ``pi_k N(x_o | mu_ko, Sigma_k,oo)``; means ``mu_km + Sigma_k,mo Sigma_k,oo^-1 (x_o - mu_ko)``;
        covariances the Schur complements ``Sigma_k,mm - Sigma_k,mo Sigma_k,oo^-1 Sigma_k,om``
        (same covariance type; lowrank models give "full").

        Parameters
        ----------
        observed_indices : sequence of int
            Distinct feature indices in [0, D), at most D - 1 of them.
        x_observed : array-like of shape (len(observed_indices),)
            Their finite values.

        Returns
        -------
        GaussianMixture
            The conditional mixture, fitted, over the D - len(observed_indices) other features.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            For indices out of range, repeated or naming every feature, or values that do not
            match them in number or are not finite.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GaussianMixture
        >>> X = np.random.default_rng(0).multivariate_normal([0, 0], [[1, 0.9], [0.9, 1]], 500)
        >>> gm = GaussianMixture(1, random_state=0).fit(X)
        >>> cond = gm.condition([0], [1.0])
        >>> cond.means_.round(1), cond.n_features_in_
        (array([[0.9]]), 1)
        """
        self._check_fitted()
        D = self.n_features_in_
        o = np.asarray(observed_indices)
        if o.ndim != 1 or o.dtype.kind not in "iu":
            raise ValueError(f"observed_indices must be a 1-D sequence of integers, got "
                             f"{observed_indices!r}")
        if o.size and (o.min() < 0 or o.max() >= D):
            raise ValueError(f"observed_indices must lie in [0, {D - 1}], got {o.tolist()}")
        if np.unique(o).size != o.size:
            raise ValueError(f"observed_indices has repeated entries: {o.tolist()}")
        if o.size >= D:
            raise ValueError(f"observed_indices names all {D} features: nothing is left to "
                             "condition on")
        x = np.asarray(x_observed, dtype=np.float64).reshape(-1)
        if x.shape != (o.size,):
            raise ValueError(f"x_observed has {x.size} values for {o.size} observed_indices")
        if not np.all(np.isfinite(x)):
            raise ValueError("x_observed contains NaN or infinity")
        from ._gaussian import GaussianMixture  # the host class (a circular import at the top)
        params = _missing.conditional_params(self._params(), o, x)
        est = GaussianMixture(self.n_components, covariance_type=params.kind,
                              reg_covar=self.reg_covar, random_state=self.random_state,
                              chunk_size=self.chunk_size, missing=self.missing)
        est._set_params_from(params, self.means_.dtype)
        est.converged_ = self.converged_
        est.n_iter_ = 0
        est.lower_bound_ = -np.inf
        est.lower_bounds_ = []
        est.iteration_times_ = []
        est.n_features_in_ = D - o.size
        est._fitted_on = None
        est._online = None
        return est

    def _check_missing_fit(self, data, gpu, algorithm):
        """Whether the training data hold NaN entries to marginalise (their column means are
        kept for the start); ValueError for inf, rows or columns with nothing observed, and
        what the missing-value EM does not support yet.  Out-of-core data: one validating pass
        (Parquet/CSV nulls read as NaN)."""
        if getattr(data, "is_dask", False):
            data.allow_nan = True
            means, has_nan = data.missing_summary()  # computed on the cluster
            if not has_nan:
                data.allow_nan = False
                return False
        elif not hasattr(data, "allow_nan") or _is_gpu_array(getattr(data.source, "X", None)):
            return False  # device data: their own checks reject NaN
        X0 = data.in_memory
        if getattr(data, "is_dask", False):
            pass
        elif X0 is not None:
            if not _missing.check_missing(X0):  # errors name the row / column
                return False
        else:
            data.allow_nan = True
            for src in (data.source, getattr(data.source, "inner", None)):
                if src is not None:
                    src.nulls_as_nan = True
        if not getattr(data, "is_dask", False):
            means, has_nan = _missing.column_means(data)
        if not has_nan:
            return False
        if gpu is not None:
            what = None
            if algorithm != "batch":
                what = "online EM"
            elif self.covariance_type not in ("diag", "spherical"):
                what = f"covariance_type={self.covariance_type!r} (diag and spherical are)"
            elif X0 is None or not gpu.fits_on_device(X0.nbytes):
                what = "data streamed to the device (out-of-core, or larger than its memory)"
            if what is not None:
                raise ValueError(f"missing='marginalize' with NaN entries on device='cuda' does "
                                 f"not support {what} yet; use device='cpu'")
        self._nan_means = means
        return True

    def _check_missing_partial(self, gpu):
        """ValueError for what ``partial_fit`` with NaN entries does not support yet."""
        if gpu is not None:
            raise ValueError("missing='marginalize' with NaN entries does not support "
                             "device='cuda' (use device='cpu') yet")

    def _init_data(self, data):
        """The rows the initialisation sees: with NaN entries, the rows with each NaN replaced
        by its column's observed mean (the k-means start needs complete rows); EM itself then
        marginalises the NaN."""
        if not getattr(self, "_nan_fit", False):
            return data
        if getattr(data, "is_dask", False):
            return data.filled(self._nan_means)
        if data.in_memory is not None:
            return sources.as_stream(_missing.fill(data.in_memory, self._nan_means),
                                     data.weights, self._chunk_rows)
        stream = sources.Stream(_missing.ImputedSource(data.source, self._nan_means),
                                self._chunk_rows, weights=data.weights)
        stream.n_rows, stream.validated = data.n_rows, True
        return stream
