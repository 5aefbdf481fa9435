"""fastmix: fast, scalable Gaussian mixture models.

Public names::

    GaussianMixture   exact EM, full / tied / diag / spherical covariances
    GMMExpansion      one-pass density estimate: fixed Gaussian grid, learned weights
    BigLearnGaussianMixture  BigLearn-EM: joint, marginal and transformed-marginal EM steps
    SGDGaussianMixture       streaming SGD, max-component loss with annealing (diagonal)
    BayesianGaussianMixture  variational Bayes (Dirichlet distribution / process), batch or SVI
    GaussianMixtureRegressor  Gaussian mixture regression: E[y | x] of a joint mixture
    load              read a model written by ``model.save(path)``
    select_mixture    choose K and the covariance type (BIC / ICL / held-out), one pass for all
    precompile        compile the kernels ahead of time into the on-disk cache
"""
from ._params import DegenerateComponentWarning
from ._validation import NotFittedError
from .mixture import (BayesianGaussianMixture, BigLearnGaussianMixture, ConvergenceWarning,
                      GaussianMixture, GaussianMixtureRegressor, GMMExpansion,
                      SGDGaussianMixture, SelectionResult, load, select_mixture)
from .precompile import precompile

__version__ = "0.1.0"

__all__ = ["GaussianMixture", "GMMExpansion", "BigLearnGaussianMixture", "SGDGaussianMixture",
           "load", "select_mixture", "SelectionResult", "ConvergenceWarning",
           "DegenerateComponentWarning", "NotFittedError", "__version__",
           "BayesianGaussianMixture", "GaussianMixtureRegressor", "precompile"]
