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
``GaussianMixtureRegressor``   ``_regression``  Gaussian mixture regression (joint [X, y])
=============================  ===============  ==============================================

``_persist`` holds the model file format: ``load`` and the registry of the classes it rebuilds.
"""
from ._biglearn import BigLearnGaussianMixture
from ._expansion import GMMExpansion
from ._gaussian import ConvergenceWarning, GaussianMixture
from ._persist import load
from ._regression import GaussianMixtureRegressor
from ._sgd import SGDGaussianMixture

__all__ = ["GaussianMixture", "GMMExpansion", "BigLearnGaussianMixture", "SGDGaussianMixture",
           "load", "ConvergenceWarning", "GaussianMixtureRegressor"]
