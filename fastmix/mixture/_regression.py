"""``GaussianMixtureRegressor``: Gaussian mixture regression (GMR).

A ``GaussianMixture`` is fitted on the joint rows ``[x, y]``; a prediction is the conditional
of that mixture given ``x`` (``fastmix.missing``): again a mixture over ``y``, whose mean is
``predict(X)`` and whose standard deviation (law of total variance over its components) is
``predict(X, return_std=True)[1]``.
"""
import numpy as np
from typing import Any

from .._base import BaseEstimator
from .._validation import NotFittedError, check_array, check_sample_weight
from .. import missing as _missing
from ._gaussian import GaussianMixture
from ._typing import ArrayLike, DataLike, RandomStateLike

try:  # scikit-learn's mixin (score = R^2, regressor tags) when it is installed
    from sklearn.base import RegressorMixin
except ImportError:  # pragma: no cover - scikit-learn is optional
    class RegressorMixin:  # type: ignore[no-redef]  # stand-in without scikit-learn
        """Stand-in: ``score`` is the coefficient of determination R^2."""
        _estimator_type = "regressor"

        def score(self, X, y, sample_weight=None):
            y = np.asarray(y, dtype=np.float64)
            pred = np.asarray(self.predict(X), dtype=np.float64).reshape(y.shape)
            w = np.ones(y.shape[0]) if sample_weight is None else np.asarray(sample_weight)
            w = w.reshape((-1,) + (1,) * (y.ndim - 1))
            ss_res = (w * (y - pred) ** 2).sum(axis=0)
            ss_tot = (w * (y - np.average(y, axis=0, weights=w.reshape(-1))) ** 2).sum(axis=0)
            return float(np.mean(1.0 - ss_res / ss_tot))


class GaussianMixtureRegressor(RegressorMixin, BaseEstimator):
    """Regression by a Gaussian mixture fitted on ``[X, y]`` jointly (GMR).

    ``predict(X)`` is ``E[y | x]`` under the joint mixture: a weighted sum of the components'
    linear regressions ``mu_ky + Sigma_k,yx Sigma_k,xx^-1 (x - mu_kx)`` with weights
    proportional to ``pi_k N(x | mu_kx, Sigma_k,xx)``, so the fit is non-linear and
    heteroscedastic.  Multi-output ``y`` (N, T) is modelled jointly.

    Parameters
    ----------
    n_components : int, default=1
        Number of components of the joint mixture.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        As for ``GaussianMixture``; "full" by default because the other types have no
        covariance between x and y inside a component, so each component predicts its
        constant mean.
    tol, reg_covar, max_iter, n_init, init_params, random_state, chunk_size : \
see GaussianMixture
        Those of the joint ``GaussianMixture``.
    missing : {"error", "marginalize"}, default="error"
        "marginalize": NaN entries of X (and y) in ``fit`` are marginalised by the joint EM,
        and NaN inputs in ``predict`` are integrated out (the conditional given the observed
        inputs only; a row with every input missing gets the marginal mean and spread of y).

    Attributes
    ----------
    mixture_ : GaussianMixture
        The fitted joint model over ``[x, y]`` (D + T features).
    n_features_in_ : int
        Number of input features D.
    n_outputs_ : int
        Number of outputs T.
    n_iter_ : int
        EM iterations of the joint fit.
    converged_ : bool
        Whether the joint fit converged.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix import GaussianMixtureRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-3, 3, size=(1000, 1))
    >>> y = np.sin(X[:, 0]) + 0.05 * rng.normal(size=1000)
    >>> gmr = GaussianMixtureRegressor(8, random_state=0).fit(X, y)
    >>> bool(np.abs(gmr.predict([[1.0]]) - np.sin(1.0)) < 0.1)
    True
    """

    def __init__(self, n_components: int = 1, *, covariance_type: str = "full", tol: float = 1e-3,
                 reg_covar: float = 1e-6, max_iter: int = 100, n_init: int = 1,
                 init_params: str = "kmeans", random_state: RandomStateLike = None,
                 chunk_size: int | None = None, missing: str = "error") -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.chunk_size = chunk_size
        self.missing = missing

    def _mixture(self):
        return GaussianMixture(self.n_components, covariance_type=self.covariance_type,
                               tol=self.tol, reg_covar=self.reg_covar, max_iter=self.max_iter,
                               n_init=self.n_init, init_params=self.init_params,
                               random_state=self.random_state, chunk_size=self.chunk_size,
                               missing=self.missing)

    def fit(self, X: DataLike, y: ArrayLike,
            sample_weight: DataLike | None = None) -> "GaussianMixtureRegressor":
        """Fit the joint mixture on ``[X, y]``.

        Parameters
        ----------
        X : array-like of shape (N, D)
            The inputs, real numbers (NaN allowed with ``missing="marginalize"``).
        y : array-like of shape (N,) or (N, T)
            The outputs.
        sample_weight : array-like of shape (N,), optional
            Non-negative weights of the rows.

        Returns
        -------
        GaussianMixtureRegressor
            The fitted estimator (``self``).

        Raises
        ------
        ValueError
            When ``X`` and ``y`` have different row counts, or hold invalid values (naming the row).

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GaussianMixtureRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(500, 1))
        >>> y = 2 * X[:, 0] + 0.1 * rng.normal(size=500)
        >>> gmr = GaussianMixtureRegressor(2, random_state=0).fit(X, y)
        >>> gmr.n_features_in_, gmr.n_outputs_, gmr.mixture_.n_features_in_
        (1, 1, 2)
        """
        mix = self._mixture()
        mix._validate_params()
        if mix.covariance_type == "lowrank":
            raise ValueError("covariance_type='lowrank' is not supported by "
                             "GaussianMixtureRegressor; use full, tied, diag or spherical")
        allow = mix._nan_allowed
        X = check_array(X, min_samples=2, estimator=type(self).__name__, allow_nan=allow)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target "
                             "y is None")
        y_arr = np.asarray(y)
        self._y_1d = y_arr.ndim == 1
        Y = check_array(y_arr.reshape(-1, 1) if self._y_1d else y_arr, name="y",
                        min_samples=1, estimator=type(self).__name__, allow_nan=allow)
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {Y.shape[0]}")
        sw = check_sample_weight(sample_weight, X.shape[0])
        Z = np.hstack([X.astype(np.float64), Y.astype(np.float64)])
        self.mixture_ = mix.fit(Z, sample_weight=sw)
        self.n_features_in_ = X.shape[1]
        self.n_outputs_ = Y.shape[1]
        self.n_iter_ = self.mixture_.n_iter_
        self.converged_ = self.mixture_.converged_
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.input_tags.allow_nan = self.missing == "marginalize"
        return tags

    def _check_fitted(self):
        if not hasattr(self, "mixture_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call "
                                 "'fit' with appropriate arguments before using this estimator.")

    def __sklearn_is_fitted__(self):
        return hasattr(self, "mixture_")

    def _inputs(self, X):
        self._check_fitted()
        X = check_array(X, n_features=self.n_features_in_, estimator=type(self).__name__,
                        allow_nan=self.mixture_._nan_allowed)
        if self.mixture_._nan_allowed:  # a row of NaN only: y's marginal (predict)
            _missing.check_missing(X, columns=False, rows=False)
        return X

    def predict(self, X: DataLike, return_std: bool = False) -> Any:
        """Predict E[y | x] for each row.

        Parameters
        ----------
        X : array-like of shape (N, D)
            The inputs (NaN inputs are integrated out with ``missing="marginalize"``; a row
            of NaN only is predicted by y's marginal distribution).
        return_std : bool, default=False
            Also return the conditional standard deviation of y given x: of the conditional
            *mixture* (law of total variance: the spread of the components' means included), not
            of one component.

        Returns
        -------
        y_mean : numpy.ndarray of shape (N,) or (N, T), dtype float64
            The conditional means, shaped as ``y`` was.
        y_std : numpy.ndarray of shape (N,) or (N, T), dtype float64
            The conditional standard deviations; only with ``return_std``.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            When ``X`` has another number of features than the fit's or invalid values.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GaussianMixtureRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(500, 1))
        >>> y = 2 * X[:, 0] + 0.1 * rng.normal(size=500)
        >>> gmr = GaussianMixtureRegressor(2, random_state=0).fit(X, y)
        >>> mean, std = gmr.predict([[1.0]], return_std=True)
        >>> mean.round(1), std.shape
        (array([2.]), (1,))
        """
        X = self._inputs(X)
        N, D = X.shape
        Z = np.full((N, D + self.n_outputs_), np.nan)
        Z[:, :D] = X
        filled, std = _missing.impute(Z, self.mixture_._params(), return_std=True)
        mean, sd = filled[:, D:], std[:, D:]
        if self._y_1d:
            mean, sd = mean[:, 0], sd[:, 0]
        return (mean, sd) if return_std else mean

    def predict_distribution(self, x: ArrayLike) -> Any:
        """Return the conditional distribution of y given one input row ``x``.

        Parameters
        ----------
        x : array-like of shape (D,)
            One input row.

        Returns
        -------
        GaussianMixture
            A fitted mixture over the T outputs (see ``GaussianMixture.condition``).

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            When ``x`` does not hold D finite values.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GaussianMixtureRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(500, 1))
        >>> y = 2 * X[:, 0] + 0.1 * rng.normal(size=500)
        >>> gmr = GaussianMixtureRegressor(2, random_state=0).fit(X, y)
        >>> dist = gmr.predict_distribution([1.0])
        >>> dist.means_.shape[1], float(dist.weights_.sum())
        (1, 1.0)
        """
        self._check_fitted()
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.shape != (self.n_features_in_,):
            raise ValueError(f"x has {x.size} values, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features")
        return self.mixture_.condition(np.arange(self.n_features_in_), x)
