"""scikit-learn's own estimator checks on fastmix.GaussianMixture."""
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastmix

ESTIMATORS = [
    fastmix.GaussianMixture(n_components=2, random_state=0, max_iter=20),
    fastmix.GaussianMixture(n_components=3, covariance_type="diag", init_params="k-means++",
                            random_state=0, max_iter=20),
]


def expected_failed_checks(estimator):
    return {
        # The check fits weighted rows in *shuffled* order against repeated rows in the original
        # order.  fastmix's random initialisations (k-means++ seeding, random_from_data, random
        # responsibilities) are reproducible for a given row order only, so the two fits start
        # from different seeds and can reach different optima.  With the rows in the same order
        # the two fits agree exactly (checked by hand), and from given initial parameters
        # integer weights equal repetition to 1e-10 (test_api.py::
        # test_integer_weights_equal_repeated_rows).  Passes or fails by chance, hence
        # non-strict.
        "check_sample_weight_equivalence_on_dense_data":
            "random initialisation depends on the row order, and the check shuffles the weighted "
            "rows",
    }


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks,
                         xfail_strict=False)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
