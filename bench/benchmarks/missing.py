"""asv benchmarks of EM with missing values (``GaussianMixture(missing="marginalize")``).

Data and start as in ``benchmarks.py`` (``bench/_data.py``: a seeded 16-component mixture and
one k-means start), with entries removed:

* ``MissingEMIteration.time_em_iteration``: one EM iteration (``fit`` with ``max_iter=1``,
  ``tol=0`` from the fixed start) on complete data (the ordinary path, for reference), with
  20 % of the entries missing completely at random ("mcar"), and with 20 % missing in 64
  distinct patterns ("patterns64"), for diag and full, N = 10^5, D = 16, K = 16, float64.
  (full with "mcar" makes nearly every row its own pattern: the per-pattern factorisations
  dominate; it runs at N = 10^4 to keep the suite short.)
* ``MissingFileIteration.time_em_iteration``: the same iteration on the 20 % MCAR data read
  from a ``.npy`` file, against memory.
* ``MissingDaskIteration.time_em_iteration``: the same iteration on a Dask array (blocks of
  2^15 rows, the local threaded scheduler), against memory.
* ``MissingLowrankIteration.time_em_iteration``: one iteration of the lowrank kind (q = 4) by
  the driver (``fastmix.missing.run_em`` / ``fastmix.em.run_em``, no start) from a fixed
  model, complete vs 20 % MCAR.
* ``MissingOnlinePass.time_partial_fit``: ``partial_fit`` over the 10^5 rows in batches of
  8192 (diag), complete vs 20 % MCAR.
* ``Impute.time_impute``: ``impute`` of the 20 % MCAR rows (conditional means, NumPy per
  pattern).
"""
import os
import sys
import tempfile
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _data import initial_parameters, make_mixture  # noqa: E402

from fastmix import GaussianMixture  # noqa: E402

SEED = 0
_cache = {}


def _with_holes(X, setting, seed=SEED):
    rng = np.random.default_rng(seed)
    X = X.copy()
    if setting == "mcar":
        X[rng.random(X.shape) < 0.2] = np.nan
    elif setting == "patterns64":
        pats = rng.random((64, X.shape[1])) < 0.2
        X[pats[rng.integers(0, 64, X.shape[0])]] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.0
    return X


def _problem(n, setting, kind):
    key = (n, setting)
    if key not in _cache:
        _cache.clear()
        X = make_mixture(n, 16, 16, seed=SEED, dtype=np.dtype(np.float64))
        _cache[key] = (_with_holes(X, setting), initial_parameters(X, 16, seed=SEED))
    X, init = _cache[key]
    return X, init[kind]


def _fit(init, kind, X):
    gm = GaussianMixture(16, covariance_type=kind, max_iter=1, tol=0.0, missing="marginalize",
                         weights_init=init["weights"], means_init=init["means"],
                         precisions_init=init["precisions"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gm.fit(X)


class MissingEMIteration:
    params = (["diag", "full"], ["complete", "mcar", "patterns64"])
    param_names = ["covariance_type", "missing"]
    timeout = 600

    def setup(self, kind, setting):
        n = 10_000 if (kind == "full" and setting == "mcar") else 100_000
        self.X, self.init = _problem(n, setting, kind)
        _fit(self.init, kind, self.X)  # JIT warm-up

    def time_em_iteration(self, kind, setting):
        _fit(self.init, kind, self.X)


class MissingFileIteration:
    params = (["diag", "full"], ["memory", "npy"])
    param_names = ["covariance_type", "source"]
    timeout = 600

    def setup(self, kind, source):
        X, self.init = _problem(100_000, "patterns64" if kind == "full" else "mcar", kind)
        self.data = X
        if source == "npy":
            self.tmp = tempfile.mkdtemp()
            self.data = os.path.join(self.tmp, "x.npy")
            np.save(self.data, X)
        _fit(self.init, kind, self.data)

    def teardown(self, kind, source):
        if source == "npy":
            os.remove(self.data)
            os.rmdir(self.tmp)

    def time_em_iteration(self, kind, source):
        _fit(self.init, kind, self.data)


class Impute:
    params = (["diag", "full"],)
    param_names = ["covariance_type"]
    timeout = 300

    def setup(self, kind):
        X, init = _problem(100_000, "mcar", kind)
        self.X = X[:20_000]
        self.model = _fit(init, kind, self.X)
        self.model.impute(self.X[:100])

    def time_impute(self, kind):
        self.model.impute(self.X)


class MissingDaskIteration:
    params = (["diag", "full"], ["memory", "dask"])
    param_names = ["covariance_type", "source"]
    timeout = 600

    def setup(self, kind, source):
        import dask.array as da
        X, self.init = _problem(100_000, "patterns64" if kind == "full" else "mcar", kind)
        self.data = X if source == "memory" else da.from_array(X, chunks=(1 << 15, 16))
        _fit(self.init, kind, self.data)

    def time_em_iteration(self, kind, source):
        _fit(self.init, kind, self.data)


class MissingLowrankIteration:
    params = (["complete", "mcar"],)
    param_names = ["missing"]
    timeout = 600

    def setup(self, setting):
        from fastmix._params import GMMParams, LowRankCovariance
        X, init = _problem(100_000, setting, "full")
        rng = np.random.default_rng(SEED)
        W = rng.normal(scale=0.5, size=(16, 16, 4))
        psi = np.ones((16, 16))
        self.X = X
        self.params = GMMParams(init["weights"], init["means"], LowRankCovariance(W, psi))
        self.time_em_iteration(setting)

    def time_em_iteration(self, setting):
        from fastmix import em, missing
        run = missing.run_em if setting == "mcar" else em.run_em
        kw = dict(reg_covar=1e-6, tol=0.0, max_iter=1)
        if setting == "mcar":
            kw["chunk_rows"] = 4096
        run(self.X, None, self.params, **kw)


class MissingOnlinePass:
    params = (["complete", "mcar"],)
    param_names = ["missing"]
    timeout = 300

    def setup(self, setting):
        self.X, self.init = _problem(100_000, setting, "diag")
        self.time_partial_fit(setting)

    def time_partial_fit(self, setting):
        gm = GaussianMixture(16, covariance_type="diag", missing="marginalize",
                             weights_init=self.init["weights"], means_init=self.init["means"],
                             precisions_init=self.init["precisions"])
        for a in range(0, self.X.shape[0], 8192):
            gm.partial_fit(self.X[a:a + 8192])
