"""Shared fixtures for the fastmix test suite."""
import warnings

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_blas():
    """Run BLAS single-threaded in the test process.

    The test machine has 2 cores and may be busy (benchmarks); multi-threaded OpenBLAS then spins
    and made scikit-learn's reference fits ~5x slower.  Numba's own threads are not affected
    (only the "blas" API is limited); fastmix calls BLAS on small blocks inside its parallel
    loops, where it is meant to run single-threaded anyway.  Thread-count independence is tested
    in subprocesses (test_determinism.py), which this does not touch.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(autouse=True)
def _no_convergence_noise():
    """Short fits (max_iter=1, tol=0) warn by design; keep the output readable.  Tests that are
    about a warning use pytest.warns, which records regardless of this filter."""
    import fastmix
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastmix.ConvergenceWarning)
        try:  # scikit-learn is optional (test_without_sklearn.py runs tests without it)
            from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
        except ImportError:
            pass
        else:
            warnings.simplefilter("ignore", SkConvergenceWarning)
        yield
