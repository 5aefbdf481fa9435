"""scikit-learn's own estimator checks (``check_estimator``) on every fastmix estimator:
GaussianMixture for each covariance type (lowrank included), BigLearnGaussianMixture,
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

# GMMExpansion() places n_nodes=64 k-means++ centres when D > 2 and needs at least 64 rows;
# these checks fit 10-56 rows.  Making the default adapt to small data is fixed on branch
# h-exp (issue 17, item 2); GMMExpansion(n_nodes=8) above passes every check.
_EXPANSION_FEW_ROWS = {name: "fixed on branch h-exp: GMMExpansion() needs >= 64 rows with "
                             "D > 2, the check fits fewer" for name in (
    "check_fit_score_takes_y", "check_dont_overwrite_parameters",
    "check_n_features_in_after_fitting", "check_estimators_dtypes", "check_sample_weights_list",
    "check_sample_weight_equivalence_on_dense_data", "check_dtype_object",
    "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_dict_unchanged", "check_fit2d_predict1d")}


def expected_failed_checks(estimator):
    if isinstance(estimator, fastmix.GMMExpansion):
        return _EXPANSION_FEW_ROWS if estimator.n_nodes == 64 else {}
    if isinstance(estimator, fastmix.SGDGaussianMixture):
        return _SGD_SHUFFLED_WEIGHTS
    if isinstance(estimator, fastmix.BigLearnGaussianMixture):
        return {}
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
