"""``GaussianMixtureRegressor``: Gaussian mixture regression (GMR).

A ``GaussianMixture`` is fitted on the joint rows ``[x, y]``; a prediction is the conditional
of that mixture given ``x`` (``fastmix.missing``): again a mixture over ``y``, whose mean is
``predict(X)`` and whose standard deviation (law of total variance over its components) is
``predict(X, return_std=True)[1]``.
"""
import numpy as np

from .._base import BaseEstimator
from .._validation import NotFittedError, check_array, check_sample_weight
from .. import missing as _missing
from ._gaussian import GaussianMixture

try:  # scikit-learn's mixin (score = R^2, regressor tags) when it is installed
    from sklearn.base import RegressorMixin
except ImportError:  # pragma: no cover - scikit-learn is optional
    class RegressorMixin:
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
    n_components, covariance_type, tol, reg_covar, max_iter, n_init, init_params,
    random_state, chunk_size :
        Those of the joint ``GaussianMixture`` (``covariance_type="full"`` by default: the
        other types have no covariance between x and y inside a component, so each component
        predicts its constant mean).
    missing : {"error", "marginalize"}, default="error"
        "marginalize": NaN entries of X (and y) in ``fit`` are marginalised by the joint EM,
        and NaN inputs in ``predict`` are integrated out (the conditional given the observed
        inputs only).

    Attributes
    ----------
    mixture_ : GaussianMixture
        The fitted joint model over ``[x, y]`` (D + T features).
    n_features_in_ : int
    n_outputs_ : int
    n_iter_ : int
        EM iterations of the joint fit.
    converged_ : bool
    """

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6,
                 max_iter=100, n_init=1, init_params="kmeans", random_state=None,
                 chunk_size=None, missing="error"):
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

    def fit(self, X, y, sample_weight=None):
        """Fit the joint mixture on ``[X, y]``.

        Parameters
        ----------
        X : array-like (N, D) real
        y : array-like (N,) or (N, T) real
        sample_weight : (N,) non-negative weights, optional

        Returns
        -------
        self
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
        if self.mixture_._nan_allowed:
            _missing.check_missing(X, columns=False)
        return X

    def predict(self, X, return_std=False):
        """E[y | x] for each row, (N,) or (N, T) float64 as y was.

        With ``return_std=True`` also the conditional standard deviation of y given x: of the
        conditional *mixture* (law of total variance: the spread of the components' means
        included), not of one component.
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

    def predict_distribution(self, x):
        """The conditional distribution of y given one input row ``x`` (D,): a fitted
        ``GaussianMixture`` over the T outputs (see ``GaussianMixture.condition``)."""
        self._check_fitted()
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.shape != (self.n_features_in_,):
            raise ValueError(f"x has {x.size} values, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features")
        return self.mixture_.condition(np.arange(self.n_features_in_), x)
