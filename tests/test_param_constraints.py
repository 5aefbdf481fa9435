"""The declarative parameter tables (``_parameter_constraints``) of the estimators and the
validator that checks them (``fastmix.mixture._base.validate_params``)."""
import inspect

import numpy as np
import pytest

import fastmix
from fastmix.mixture._base import ANY, Integer, Options, Real, validate_params

ESTIMATORS = [fastmix.GaussianMixture, fastmix.BayesianGaussianMixture,
              fastmix.SGDGaussianMixture, fastmix.GMMExpansion,
              fastmix.BigLearnGaussianMixture]


def _params(cls):
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_every_constructor_parameter_has_exactly_one_table_entry(cls):
    assert sorted(cls._parameter_constraints) == sorted(_params(cls))


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_defaults_pass_and_a_bad_value_names_its_parameter(cls):
    base = {"n_components": 4} if cls is fastmix.SGDGaussianMixture else {}
    cls(**base)._validate_params()  # the defaults are valid
    checked = [name for name, allowed in cls._parameter_constraints.items()
               if ANY not in allowed]
    assert checked
    for name in checked:
        est = cls(**{**base, name: "bad"})
        with pytest.raises(ValueError, match=rf"^{name} must be .*, got 'bad'$"):
            est._validate_params()


def test_descriptors_accept_and_reject():
    assert Integer(1)(1) and Integer(1)(np.int64(3))
    assert not Integer(1)(0) and not Integer(0)(True) and not Integer(0)(1.0)
    assert Real(0)(0) and Real(0)(2.5) and not Real(0)(-1e-9)
    assert not Real(0)(float("nan")) and not Real(0)(float("inf")) and not Real(0)(False)
    assert not Real(0, closed="neither")(0.0) and Real(0, closed="neither")(1e-300)
    half = Real(0.5, 1, closed="right")
    assert half(1) and half(0.75) and not half(0.5) and not half(1.01)
    assert Real(0, 1, closed="both")(0) and Real(0, 1, closed="both")(1)
    assert Options("a", "b")("a") and not Options("a", "b")("c") and not Options("1")(1)
    assert str(Real(0.5, 1, closed="right")) == "a number in (0.5, 1]"
    assert str(Real(0, closed="neither")) == "a finite number > 0"
    assert str(Options("auto")) == "'auto'"


def test_message_lists_every_alternative_in_order():
    table = {"k": [Integer(1), None], "m": [Options("auto"), Integer(2)]}
    validate_params(table, {"k": None, "m": "auto"})
    with pytest.raises(ValueError, match=r"^k must be an integer >= 1 or None, got 0$"):
        validate_params(table, {"k": 0, "m": 2})
    with pytest.raises(ValueError, match=r"^m must be 'auto' or an integer >= 2, got 1$"):
        validate_params(table, {"k": 1, "m": 1})


@pytest.mark.parametrize("cls, kw, match", [
    (fastmix.GaussianMixture, dict(fixed="nonsense"), "fixed may name"),
    (fastmix.SGDGaussianMixture, dict(n_components=10), "perfect square"),
    (fastmix.SGDGaussianMixture, dict(n_components=4, time_t0=0.9), "time_t0 < time_tinf"),
    (fastmix.SGDGaussianMixture, dict(n_components=4, covariance_type="lpd", n_directions=0),
     "n_directions must be an integer >= 1"),
    (fastmix.BigLearnGaussianMixture, dict(p_joint=0.9), "sum to 1"),
    (fastmix.BigLearnGaussianMixture, dict(subset_beta=(1.0, -1.0)), "subset_beta"),
])
def test_cross_parameter_checks_run_after_the_table(cls, kw, match):
    with pytest.raises(ValueError, match=match):
        cls(**kw)._validate_params()


def test_sgd_n_directions_is_free_for_diag():
    fastmix.SGDGaussianMixture(n_components=4, n_directions=0)._validate_params()


def test_a_bad_parameter_fails_fit_before_any_work_and_keeps_the_fitted_model():
    X = np.random.default_rng(0).normal(size=(60, 2))
    gm = fastmix.GaussianMixture(2, random_state=0).fit(X)
    means = gm.means_.copy()
    gm.set_params(tol=-1.0)
    with pytest.raises(ValueError, match="^tol must be a finite number >= 0, got -1.0$"):
        gm.fit(X)
    np.testing.assert_array_equal(gm.means_, means)
