"""scikit-learn's own estimator checks (``check_estimator``) on every fastmix estimator:
GaussianMixture for each covariance type (lowrank included), BayesianGaussianMixture (both
prior types), BigLearnGaussianMixture,
SGDGaussianMixture and GMMExpansion.  The expected failures are listed below, each with its
reason; every other check must pass."""
import pytest

pytest.importorskip("sklearn")
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastmix  # noqa: E402

ESTIMATORS = [
    fastmix.GaussianMixture(n_components=2, random_state=0, max_iter=20),
    fastmix.GaussianMixture(n_components=3, covariance_type="diag", init_params="k-means++",
                            random_state=0, max_iter=20),
    fastmix.GaussianMixture(n_components=2, covariance_type="tied", random_state=0,
                            max_iter=20),
    fastmix.GaussianMixture(n_components=2, covariance_type="spherical", random_state=0,
                            max_iter=20),
    fastmix.GaussianMixture(n_components=2, covariance_type="lowrank", random_state=0,
                            max_iter=20),
    fastmix.BigLearnGaussianMixture(n_components=2, n_outer=10, random_state=0),
    fastmix.SGDGaussianMixture(n_components=4, random_state=0),
    fastmix.GMMExpansion(),
    fastmix.GMMExpansion(n_nodes=8),
    fastmix.BayesianGaussianMixture(n_components=2, random_state=0, max_iter=20),
    fastmix.BayesianGaussianMixture(n_components=3, covariance_type="diag", random_state=0,
                                    weight_concentration_prior_type="dirichlet_distribution",
                                    max_iter=20),
]

# The check fits weighted rows in *shuffled* order against repeated rows in the original
# order.  fastmix's random initialisations (k-means++ seeding, random_from_data, random
# responsibilities) are reproducible for a given row order only, so the two fits start from
# different seeds and can reach different optima.  With the rows in the same order the two
# fits agree exactly (checked by hand), and from given initial parameters integer weights
# equal repetition to 1e-10 (test_api.py::test_integer_weights_equal_repeated_rows).  Passes
# or fails by chance, hence non-strict.
_SHUFFLED_WEIGHTS = {
    "check_sample_weight_equivalence_on_dense_data":
        "random initialisation depends on the row order, and the check shuffles the weighted "
        "rows",
}

# SGD visits the rows in a random order (a permutation per block and epoch); with the
# weighted rows shuffled by the check, the weighted and the repeated fits take different
# paths.  In the same row order they are bit-identical (test_sgd.py::
# test_sgd_integer_weights_equal_repeated_rows).
_SGD_SHUFFLED_WEIGHTS = {
    "check_sample_weight_equivalence_on_dense_data":
        "SGD's row order is random, and the check shuffles the weighted rows",
}

def expected_failed_checks(estimator):
    if isinstance(estimator, fastmix.GMMExpansion):
        return {}  # every check passes, GMMExpansion() included (its default adapts to few rows)
    if isinstance(estimator, fastmix.SGDGaussianMixture):
        return _SGD_SHUFFLED_WEIGHTS
    # GaussianMixture and BigLearn (k-means start by default, like GaussianMixture)
    return _SHUFFLED_WEIGHTS


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks,
                         xfail_strict=False)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_biglearn_has_no_partial_fit():
    """BigLearn-EM is a batch method: no partial_fit (not even the inherited online EM), so
    scikit-learn's tools that test hasattr(est, "partial_fit") skip it."""
    est = fastmix.BigLearnGaussianMixture(n_components=2)
    assert not hasattr(est, "partial_fit")
    with pytest.raises(AttributeError, match="partial_fit"):
        est.partial_fit
