"""The estimators, one per module on a shared base (``_base.MixtureBase``): they validate
input, then call a driver.

=============================  ===============  ==============================================
class                          module           what it fits
=============================  ===============  ==============================================
``GaussianMixture``            ``_gaussian``    exact EM: full / tied / diag / spherical /
                                                lowrank covariances, batch or online
``BigLearnGaussianMixture``    ``_biglearn``    BigLearn-EM (joint, marginal, transformed
                                                marginal steps)
``SGDGaussianMixture``         ``_sgd``         streaming SGD, max-component loss, annealing
``GMMExpansion``               ``_expansion``   fixed Gaussian grid, learned weights
``BayesianGaussianMixture``    ``_bayesian``    variational Bayes (Dirichlet distribution /
                                                process prior), batch or SVI
``select_mixture`` (function)  ``_selection``   GaussianMixture over a grid of K x covariance
                                                types, one data pass per iteration for all
``GaussianMixtureRegressor``   ``_regression``  Gaussian mixture regression (joint [X, y])
=============================  ===============  ==============================================

``_persist`` holds the model file format: ``load`` and the registry of the classes it rebuilds.
"""
from ._bayesian import BayesianGaussianMixture
from ._biglearn import BigLearnGaussianMixture
from ._expansion import GMMExpansion
from ._gaussian import ConvergenceWarning, GaussianMixture
from ._persist import load
from ._regression import GaussianMixtureRegressor
from ._selection import SelectionResult, select_mixture
from ._sgd import SGDGaussianMixture

__all__ = ["GaussianMixture", "GMMExpansion", "BigLearnGaussianMixture", "SGDGaussianMixture",
           "load", "ConvergenceWarning", "BayesianGaussianMixture", "GaussianMixtureRegressor"]
# select_mixture / SelectionResult are importable from here and public as fastmix.*; they are
# not in __all__, which the deprecated alias fastmix.estimators mirrors (it predates them).
