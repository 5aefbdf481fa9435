"""The methods ``GaussianMixture`` and ``BayesianGaussianMixture`` share: the device choice,
the start (k-means and the other initialisations of ``fastmix.init``), and everything a fitted
mixture answers -- log-densities, scores, labels, responsibilities and samples.

Both estimators provide ``_params()``: the mixture as ``GMMParams`` (for the variational model,
its expected log-weights and precisions, see ``fastmix.variational``), so one implementation of
each method serves both; a BayesianGaussianMixture is not a GaussianMixture, so the sharing is a
mixin rather than inheritance between them.
"""
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._params import GMMParams, warn_at_caller
from .._validation import check_random_state
from .. import distributed, inference
from .. import missing as _missing
from .. import io as sources
from ..init import _subsample, initial_params
from ._base import ConvergenceWarning, _as_input_dtype, _is_gpu_array, _n_distinct
from ._typing import DataLike, RandomStateLike


class GaussianMixtureMethods:
    """Device choice, the start and the fitted-mixture methods of the Gaussian estimators
    (module docstring).  The host class provides ``_params()``, ``_chunk_rows``,
    ``_validate_predict_X``, ``_nan_allowed`` and the constructor parameters they read."""

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
        from .. import gpu
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

    def _check_rows(self, n_rows):
        if n_rows is None:
            return
        if n_rows < 2:
            raise ValueError(f"Found array with {n_rows} sample(s) while a minimum of 2 is "
                             "required.")
        if n_rows < self.n_components:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = "
                             f"{self.n_components}, n_samples = {n_rows}")

    def _initial(self, data, rng, user, sample_only=False, first_estep=None):
        """The initial GMMParams: ``user``'s (weights, means, covariance) where given, the
        rest from ``init_params``.  ``first_estep``: a list that receives the E-step Stats of
        the returned parameters on all rows when the start computed them (see
        ``init.initial_params``; only when every group came from the start)."""
        w, m, cov = user
        if w is None or m is None or cov is None or self.covariance_type == "lowrank":
            whole = w is None and m is None and cov is None and not sample_only
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
                                    rng, self.reg_covar, self._chunk_rows, lowrank=lowrank,
                                    first_estep=first_estep if whole else None)
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

    def _log_prob(self, X, want_resp=False):
        if self._nan_allowed and not _is_gpu_array(X) and not distributed.is_dask_array(X) \
                and not sources.is_out_of_core(X):
            X = self._validate_predict_X(X)
            if _missing.check_missing(X, columns=False):  # observed coordinates only
                return _missing.log_prob(X, self._params(), self._chunk_rows, want_resp)
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
            miss = _missing.model_arrays(self._params()) if self._nan_allowed else None
            return (data.log_prob_arrays(kp, "logp", miss),
                    data.log_prob_arrays(kp, "labels", miss),
                    data.log_prob_arrays(kp, "proba", miss) if want_resp else None)
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

    def iter_predict(self, X: DataLike, proba: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """Predict labels (or responsibilities) block by block, for data larger than memory.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            Real numbers; or a path (``.npy``, ``file.h5:/dataset``, ``.zarr``, ``.parquet``,
            ``.csv``), an ``np.memmap``, a ``fastmix.io.Source``, a list of (n_i, D) chunk arrays,
            or a callable returning an iterator of chunks, read block by block.
        proba : bool, default=False
            Yield responsibilities instead of labels.

        Yields
        ------
        start : int
            The first row of the block.
        labels_or_resp : numpy.ndarray of shape (n,), dtype int64, or of shape (n, K)
            The labels of the block's rows, or with ``proba`` their responsibilities (float64,
            float32 for float32 data); a new array for each block.

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
        >>> [(start, labels.shape) for start, labels in gm.iter_predict(X)]
        [(0, (300,))]
        """
        data, opened = self._stream(X, fitting=False)
        try:
            for start, _, labels, resp in inference.iter_log_prob(data, self._params(),
                                                                  self._chunk_rows, proba):
                yield start, (resp if proba else labels)
        finally:
            if opened:
                data.close()

    def score_samples(self, X: DataLike) -> np.ndarray:
        """Compute the log-density of the model at each row.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            Real numbers; or a path (``.npy``, ``file.h5:/dataset``, ``.zarr``, ``.parquet``,
            ``.csv``), an ``np.memmap``, a ``fastmix.io.Source``, a list of (n_i, D) chunk arrays,
            or a callable returning an iterator of chunks, read block by block.

        Returns
        -------
        numpy.ndarray of shape (N,)
            log p(x) of each row, float64 (float32 for float32 data, as in scikit-learn).

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
        >>> gm.score_samples(X[:3]).shape
        (3,)
        """
        return _as_input_dtype(self._log_prob(X)[0], X)

    def score(self, X: DataLike, y: Any = None) -> float:
        """Compute the mean log-likelihood per row.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            Real numbers; or a path (``.npy``, ``file.h5:/dataset``, ``.zarr``, ``.parquet``,
            ``.csv``), an ``np.memmap``, a ``fastmix.io.Source``, a list of (n_i, D) chunk arrays,
            or a callable returning an iterator of chunks, read block by block.
        y : None
            Ignored; present for scikit-learn compatibility.

        Returns
        -------
        float
            The mean of ``score_samples(X)`` (out-of-core data read block by block).

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
        >>> bool(np.isclose(gm.score(X), gm.score_samples(X).mean()))
        True
        """
        return self._score_sum(X)[2]

    def predict(self, X: DataLike) -> np.ndarray:
        """Predict the most probable component of each row.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            Real numbers; or a path (``.npy``, ``file.h5:/dataset``, ``.zarr``, ``.parquet``,
            ``.csv``), an ``np.memmap``, a ``fastmix.io.Source``, a list of (n_i, D) chunk arrays,
            or a callable returning an iterator of chunks, read block by block.

        Returns
        -------
        numpy.ndarray of shape (N,), dtype int64
            The component labels.

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
        >>> gm.predict(X[:5]).shape
        (5,)
        """
        return self._log_prob(X)[1]

    def predict_proba(self, X: DataLike) -> np.ndarray:
        """Compute the responsibilities: the posterior probability of each component per row.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            Real numbers; or a path (``.npy``, ``file.h5:/dataset``, ``.zarr``, ``.parquet``,
            ``.csv``), an ``np.memmap``, a ``fastmix.io.Source``, a list of (n_i, D) chunk arrays,
            or a callable returning an iterator of chunks, read block by block.

        Returns
        -------
        numpy.ndarray of shape (N, K)
            Rows summing to 1; float64 (float32 for float32 data, as in scikit-learn).

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
        >>> resp = gm.predict_proba(X[:4])
        >>> resp.shape, bool(np.allclose(resp.sum(axis=1), 1))
        ((4, 2), True)
        """
        return _as_input_dtype(self._log_prob(X, want_resp=True)[2], X)

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw points from the fitted mixture.

        Parameters
        ----------
        n_samples : int, default=1
            Number of points, at least 1.

        Returns
        -------
        X : numpy.ndarray of shape (n_samples, D), dtype float64
            The points, grouped by component.
        labels : numpy.ndarray of shape (n_samples,), dtype int64
            The component each point was drawn from.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            When ``n_samples`` is not an integer >= 1.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GaussianMixture
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> gm = GaussianMixture(2, random_state=0).fit(X)
        >>> Xs, labels = gm.sample(10)
        >>> Xs.shape, labels.shape
        ((10, 2), (10,))
        """
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
