"""Estimator base: scikit-learn's ``BaseEstimator``/``DensityMixin`` when scikit-learn is installed
(so fastmix models work in pipelines, grid searches and ``clone``), otherwise a small stand-in
with the same ``get_params``/``set_params`` contract.  scikit-learn is never required at run
time."""
import inspect

try:  # pragma: no cover - exercised by whichever environment runs the tests
    from sklearn.base import BaseEstimator, DensityMixin
    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover
    HAVE_SKLEARN = False

    class BaseEstimator:  # type: ignore[no-redef]  # stand-in without scikit-learn
        """Minimal scikit-learn-compatible parameter handling."""

        @classmethod
        def _get_param_names(cls):
            sig = inspect.signature(cls.__init__)
            return sorted(p.name for p in sig.parameters.values()
                          if p.name != "self" and p.kind != p.VAR_KEYWORD)

        def get_params(self, deep=True):
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(f"Invalid parameter {key!r} for estimator "
                                     f"{type(self).__name__}. Valid parameters are: {valid!r}.")
                setattr(self, key, value)
            return self

        def __repr__(self):
            defaults = {p.name: p.default
                        for p in inspect.signature(type(self).__init__).parameters.values()}
            changed = []
            for k, v in self.get_params().items():
                d = defaults.get(k, inspect.Parameter.empty)
                if v is d or (not hasattr(v, "shape") and v == d):
                    continue
                changed.append(f"{k}={v!r}")
            return f"{type(self).__name__}({', '.join(changed)})"

    class DensityMixin:  # type: ignore[no-redef]
        _estimator_type = "DensityEstimator"

        def score(self, X, y=None):
            raise NotImplementedError
