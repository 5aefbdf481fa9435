"""Uniform adapters around the EM implementations that bench/compare.py times.

Each adapter runs exactly ``n_iter`` EM iterations (tolerance 0) from a given
starting point and returns a :class:`FitResult` in scikit-learn's parameter
conventions, so timings and results of different libraries are directly
comparable.  A library that cannot be imported reports why through
:meth:`Library.unavailable_reason` and is skipped by the caller.

Adapters import their library lazily: a worker subprocess that measures one
library's memory imports only that library.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from dataclasses import dataclass

import numpy as np


@dataclass
class FitResult:
    """Parameters after ``n_iter`` EM iterations, in scikit-learn shapes (float64)."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    lower_bound: float  # mean log-likelihood per sample at the last E-step
    n_iter: int


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


class Library:
    """Base class: one EM implementation."""

    key = ""  # short identifier used on the command line and in JSON
    label = ""  # human-readable column name
    dists: tuple[str, ...] = ()  # distributions whose versions are reported

    def __init__(self):
        self._reason = None
        self._module = None
        try:
            self._module = self._import()
        except Exception as exc:  # ImportError, or a broken binary extension
            self._reason = f"{type(exc).__name__}: {exc}"

    def _import(self):
        raise NotImplementedError

    @property
    def available(self) -> bool:
        return self._module is not None

    def unavailable_reason(self) -> str | None:
        return self._reason

    def versions(self) -> dict[str, str | None]:
        return {d: _version(d) for d in self.dists}

    def supports(self, covariance_type: str, dtype) -> bool:
        return True

    def fit(self, X, init: dict, covariance_type: str, n_iter: int, reg_covar: float = 1e-6) -> FitResult:
        """Run exactly ``n_iter`` EM iterations from ``init`` (see _data.initial_parameters)."""
        raise NotImplementedError


class _SklearnLikeGMM(Library):
    """Any estimator with scikit-learn's GaussianMixture signature and attributes."""

    def _estimator_class(self):
        return self._module.GaussianMixture

    def fit(self, X, init, covariance_type, n_iter, reg_covar=1e-6):
        gm = self._estimator_class()(
            n_components=init["means"].shape[0],
            covariance_type=covariance_type,
            tol=0.0,  # never stop early: exactly n_iter iterations
            reg_covar=reg_covar,
            max_iter=n_iter,
            n_init=1,
            weights_init=init["weights"],
            means_init=init["means"],
            precisions_init=init["precisions"],
        )
        with warnings.catch_warnings():
            # tol=0 means "never converged": silence the expected warning.
            warnings.simplefilter("ignore")
            gm.fit(X)
        return FitResult(
            weights=np.asarray(gm.weights_, dtype=np.float64),
            means=np.asarray(gm.means_, dtype=np.float64),
            covariances=np.asarray(gm.covariances_, dtype=np.float64),
            lower_bound=float(gm.lower_bound_),
            n_iter=int(gm.n_iter_),
        )


class Fastmix(_SklearnLikeGMM):
    key = "fastmix"
    label = "fastmix"
    dists = ("fastmix",)

    def _import(self):
        module = importlib.import_module("fastmix")
        if not hasattr(module, "GaussianMixture"):
            raise ImportError("fastmix does not expose GaussianMixture yet")
        return module


class FastmixStandIn(_SklearnLikeGMM):
    """scikit-learn posing as fastmix, to develop the harness before fastmix exists."""

    key = "fastmix"
    label = "fastmix (stand-in: sklearn)"
    dists = ("scikit-learn",)

    def _import(self):
        return importlib.import_module("sklearn.mixture")


class Sklearn(_SklearnLikeGMM):
    key = "sklearn"
    label = "scikit-learn"
    dists = ("scikit-learn",)

    def _import(self):
        return importlib.import_module("sklearn.mixture")

    def supports(self, covariance_type, dtype):
        # scikit-learn is the float64 reference only (it is slow at full size).
        return np.dtype(dtype) == np.float64


class OneDAL(Library):
    """oneDAL's EM through ``daal4py.em_gmm`` (from scikit-learn-intelex)."""

    key = "onedal"
    label = "oneDAL"
    dists = ("scikit-learn-intelex", "daal")  # daal4py ships inside scikit-learn-intelex
    _STORAGE = {"diag": "diagonal", "full": "full"}

    def _import(self):
        return importlib.import_module("daal4py")

    def supports(self, covariance_type, dtype):
        return covariance_type in self._STORAGE and np.dtype(dtype) in (np.float32, np.float64)

    def num_threads(self) -> int | None:
        return int(self._module.num_threads()) if self._module else None

    def fit(self, X, init, covariance_type, n_iter, reg_covar=1e-6):
        d4p = self._module
        k, d = init["means"].shape
        dt = X.dtype
        if covariance_type == "diag":
            covs = [np.ascontiguousarray(c.reshape(1, d), dtype=dt) for c in init["covariances"]]
        else:
            covs = [np.ascontiguousarray(c, dtype=dt) for c in init["covariances"]]
        algo = d4p.em_gmm(
            nComponents=k,
            maxIterations=n_iter,
            accuracyThreshold=0.0,
            covarianceStorage=self._STORAGE[covariance_type],
            regularizationFactor=reg_covar,
            fptype="float" if dt == np.float32 else "double",
        )
        out = algo.compute(
            X,
            np.ascontiguousarray(init["weights"].reshape(1, k), dtype=dt),
            np.ascontiguousarray(init["means"], dtype=dt),
            covs,
        )
        covariances = np.asarray(out.covariances, dtype=np.float64)
        if covariance_type == "diag":
            covariances = covariances.reshape(k, d)
        return FitResult(
            weights=np.asarray(out.weights, dtype=np.float64).ravel(),
            means=np.asarray(out.means, dtype=np.float64),
            covariances=covariances,
            # goalFunction is the summed log-likelihood at the last E-step,
            # i.e. n_samples times scikit-learn's lower_bound_.
            lower_bound=float(np.asarray(out.goalFunction).ravel()[0]) / X.shape[0],
            n_iter=int(np.asarray(out.nIterations).ravel()[0]),
        )


class _BayesianLike(Library):
    """Variational Bayes (``BayesianGaussianMixture``, default priors, Dirichlet-process
    weights): exactly ``n_iter`` iterations from the initial responsibilities
    ``init["resp"]`` (N, K), the start both libraries accept (scikit-learn's estimator takes no
    initial parameters).  ``lower_bound`` is the variational bound (a total over the rows)."""

    def supports(self, covariance_type, dtype):
        return np.dtype(dtype) == np.float64

    def _estimator(self, k, covariance_type, n_iter, reg_covar):
        return self._module.BayesianGaussianMixture(
            n_components=k, covariance_type=covariance_type, tol=0.0, reg_covar=reg_covar,
            max_iter=n_iter, n_init=1, random_state=0)

    def _fit_from_resp(self, est, X, resp):
        raise NotImplementedError

    def fit(self, X, init, covariance_type, n_iter, reg_covar=1e-6):
        resp = init["resp"]
        est = self._estimator(resp.shape[1], covariance_type, n_iter, reg_covar)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tol=0: never converged, by design
            self._fit_from_resp(est, X, resp[:X.shape[0]])
        return FitResult(
            weights=np.asarray(est.weights_, dtype=np.float64),
            means=np.asarray(est.means_, dtype=np.float64),
            covariances=np.asarray(est.covariances_, dtype=np.float64),
            lower_bound=float(np.ravel(est.lower_bound_)[0]),
            n_iter=int(est.n_iter_),
        )


class FastmixBayesian(_BayesianLike):
    key = "fastmix_bayes"
    label = "fastmix BayesianGaussianMixture"
    dists = ("fastmix",)

    def _import(self):
        return importlib.import_module("fastmix")

    def _fit_from_resp(self, est, X, resp):
        est._fit(X, None, resp=resp)  # the start scikit-learn's parity tests use


class SklearnBayesian(_BayesianLike):
    key = "sklearn_bayes"
    label = "scikit-learn BayesianGaussianMixture"
    dists = ("scikit-learn",)

    def _import(self):
        return importlib.import_module("sklearn.mixture")

    def _fit_from_resp(self, est, X, resp):
        # its own M-step from resp in place of its initialisation (the call it makes itself)
        est._initialize_parameters = lambda X_, rs, xp=None: est._initialize(X_, resp)
        est.fit(X)


def make_library(key: str, *, stand_in: bool = False) -> Library:
    """Adapter for ``key`` in {"fastmix", "sklearn", "onedal"}."""
    if key == "fastmix":
        return FastmixStandIn() if stand_in else Fastmix()
    if key == "sklearn":
        return Sklearn()
    if key == "onedal":
        return OneDAL()
    if key == "fastmix_bayes":
        return FastmixBayesian()
    if key == "sklearn_bayes":
        return SklearnBayesian()
    raise ValueError(f"unknown library {key!r}")


LIBRARY_KEYS = ("fastmix", "sklearn", "onedal")
#: The variational libraries of bench/compare.py's BayesianGaussianMixture rows.
BAYESIAN_KEYS = ("fastmix_bayes", "sklearn_bayes")
