"""Deprecated alias of ``fastmix.mixture`` (kept for one release): the estimators moved into
one module each under ``fastmix.mixture``.  Import them from ``fastmix`` (or
``fastmix.mixture``)."""
import warnings

from ._params import DegenerateComponentWarning  # noqa: F401
from ._validation import NotFittedError  # noqa: F401
from .mixture import BayesianGaussianMixture  # noqa: F401
from .mixture import (BigLearnGaussianMixture, ConvergenceWarning, GaussianMixture,  # noqa: F401
                      GMMExpansion, SGDGaussianMixture, load)
from .mixture import GaussianMixtureRegressor  # noqa: F401
from .mixture._persist import FORMAT_VERSION, MODEL_CLASSES  # noqa: F401

__all__ = ["GaussianMixture", "GMMExpansion", "BigLearnGaussianMixture", "SGDGaussianMixture",
           "load", "ConvergenceWarning", "DegenerateComponentWarning",
           "NotFittedError"]

warnings.warn("fastmix.estimators is deprecated and will be removed in the next release; "
              "import from fastmix (or fastmix.mixture)", DeprecationWarning, stacklevel=2)
