"""Input validation shared by the estimators.  Errors name what is wrong and where."""
import numbers

import numpy as np



try:  # scikit-learn's own error when it is installed, so sklearn's tooling recognises it
    from sklearn.exceptions import NotFittedError as _SkNotFitted
    _NOT_FITTED_BASES: tuple[type, ...] = (_SkNotFitted,)
except ImportError:  # pragma: no cover
    _NOT_FITTED_BASES = (ValueError, AttributeError)


class NotFittedError(*_NOT_FITTED_BASES):  # type: ignore[misc]  # bases chosen at import
    """Raised when a method needing a fitted model is called before ``fit``.

    It is a ValueError and an AttributeError, and scikit-learn's NotFittedError when
    scikit-learn is installed, so code written for either catches it.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix import GaussianMixture, NotFittedError
    >>> try:
    ...     GaussianMixture(2).predict(np.zeros((3, 2)))
    ... except NotFittedError as exc:
    ...     print(exc)
    This GaussianMixture instance is not fitted yet. Call 'fit' with appropriate arguments before using this estimator.
    """


def check_array(X, *, name="X", min_samples=1, n_features=None, estimator="GaussianMixture",
                allow_nan=False):
    """Return X as a C-contiguous float32/float64 (N, D) array, never modifying the caller's.

    float32 stays float32; other real numeric types become float64.  Raises ValueError (or
    TypeError for sparse / non-numeric objects) with a message saying what is wrong.  With
    ``allow_nan`` NaN and inf are left to the caller (``fastmix.missing.check_missing``: NaN is
    a missing value, inf an error).
    """
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(f"sparse input is not supported for {name}; pass a dense array "
                        "(e.g. X.toarray()) or stream it in chunks")
    arr = np.asarray(X)
    if np.iscomplexobj(arr):
        raise ValueError(f"Complex data not supported: {name} has dtype {arr.dtype}")
    if arr.dtype == object:
        arr = arr.astype(np.float64)  # raises TypeError naming the offending object
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.size == 0 and arr.ndim < 2:
        raise ValueError(f"{name} is empty (shape {arr.shape}): pass a 2-D array (n_samples, "
                         f"n_features) with at least {min_samples} row(s)")
    if arr.ndim != 2:
        raise ValueError(f"Expected 2D array for {name}, got {arr.ndim}D array instead "
                         f"(shape {arr.shape}). Reshape your data with X.reshape(-1, 1) if it "
                         "has a single feature or X.reshape(1, -1) if it is a single sample.")
    dtype = np.float32 if arr.dtype == np.float32 else np.float64
    arr = np.ascontiguousarray(arr, dtype=dtype)
    N, D = arr.shape
    if D < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={arr.shape}) while a minimum "
                         "of 1 is required.")
    if N < min_samples:
        raise ValueError(f"Found array with {N} sample(s) (shape={arr.shape}) while a minimum "
                         f"of {min_samples} is required.")
    if n_features is not None and D != n_features:
        raise ValueError(f"X has {D} features, but {estimator} is expecting {n_features} "
                         "features as input.")
    bad = -1 if allow_nan else first_nonfinite_row(arr)
    if bad >= 0:
        raise ValueError(nonfinite_message(name, arr, bad))
    return arr


def bad_entry(arr, row, mask):
    """("first bad row: R, column C of D: V", V) for the first column C of row ``row`` of
    ``arr`` (N, D) where the boolean ``mask`` (D,) holds, V its value."""
    col = int(np.flatnonzero(mask)[0])
    value = float(arr[row, col])
    return f"first bad row: {row}, column {col} of {arr.shape[1]}: {value}", value


def nonfinite_message(name, arr, bad):
    """The error for row ``bad`` of ``arr`` (N, D) holding NaN or +-inf: the row, the first
    bad column and its value; for NaN, where fastmix fits data with missing values."""
    where, value = bad_entry(arr, bad, ~np.isfinite(arr[bad]))
    msg = f"Input {name} contains NaN or infinity ({where})"
    if np.isnan(value):
        msg += ('; GaussianMixture(missing="marginalize") fits data whose NaN entries are '
                "missing values")
    return msg


def first_nonfinite_row(X, block=1 << 16):
    """Index of the first row of X (N, D) holding NaN or +-inf, or -1.

    Row sums are non-finite whenever a row holds NaN or inf (and, rarely, when finite values
    overflow); only blocks whose sums are not all finite are inspected element by element.
    Memory: one float per row of a block.
    """
    for start in range(0, X.shape[0], block):
        part = X[start:start + block]
        with np.errstate(over="ignore", invalid="ignore"):
            sums = part.sum(axis=1)
        if np.all(np.isfinite(sums)):
            continue
        rows = np.flatnonzero(~np.all(np.isfinite(part), axis=1))
        if rows.size:
            return start + int(rows[0])
    return -1


def check_sample_weight(sample_weight, n_samples):
    """(N,) float64 non-negative finite weights with a positive sum, or None."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n_samples, float(sample_weight))
    sw = np.asarray(sample_weight)
    if sw.dtype.kind not in "biuf":
        raise ValueError(f"sample_weight must be numeric, got dtype {sw.dtype}")
    sw = np.array(sw, dtype=np.float64)  # always a copy: the caller's array is never touched
    if sw.ndim != 1 or sw.shape[0] != n_samples:
        raise ValueError(f"sample_weight.shape == {sw.shape}, expected ({n_samples},)")
    if not np.all(np.isfinite(sw)):
        raise ValueError("sample_weight contains NaN or infinity")
    if np.any(sw < 0):
        raise ValueError(f"sample_weight must be non-negative (first negative at index "
                         f"{int(np.argmax(sw < 0))})")
    if not sw.sum() > 0:
        raise ValueError("sample_weight sums to zero: at least one row needs a positive weight")
    return sw


def check_random_state(random_state):
    """A numpy Generator from None, an int, a Generator or a legacy RandomState."""
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, numbers.Integral):
        return np.random.default_rng(int(random_state))
    raise ValueError(f"random_state must be None, an int, a numpy Generator or RandomState; "
                     f"got {random_state!r}")
