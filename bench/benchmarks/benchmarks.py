"""airspeed velocity (asv) benchmarks for fastmix.

Data come from ``bench/_data.py``: a seeded, overlapping 16-component
Gaussian mixture, and one starting point (weights, means, precisions) from a
short NumPy k-means.  Shapes are written ``(N, D, K)``.

* ``EMIteration.time_em_iteration``: ``fit`` with ``max_iter=1, tol=0`` from
  the fixed start, i.e. one EM iteration plus ``fit``'s fixed costs (input
  validation, converting ``precisions_init``, any final E-step).
* ``EMIteration.time_em_iteration_warm_start``: one more iteration of an
  already fitted ``warm_start=True`` model (no initialisation at all).
* ``EMIterationLarge``: the same at N = 10^6 (the size of bench/compare.py).
* ``BayesianIteration.time_vb_step``: one variational iteration (E-step, M-step,
  lower bound; ``fastmix.variational.vb_step``) of a fitted
  ``BayesianGaussianMixture``, beside ``time_em_iteration_warm_start`` of the
  same covariance type (the issue's target: within 1.3x of it);
  ``time_vb_iteration_warm_start``: the same through ``fit`` with
  ``warm_start=True`` (which also recomputes the default priors from the data,
  one more, lighter pass, as scikit-learn does on every ``fit``);
  ``time_svi_step``: one ``partial_fit`` (stochastic variational) step on a
  (4096, 16) chunk.
* ``LowRankIteration.time_em_iteration``: one lowrank (MFA) EM iteration at
  N = 60 000, D = 784, K = 16, q = 8.
* ``FitMemory.peakmem_fit``: asv's peak RSS of the benchmark process, which
  includes the interpreter, the data and the setup, during a 5-iteration fit.
* ``FitExtraMemory.track_fit_extra_memory``: peak RSS during the fit minus
  the RSS just before it (MiB), i.e. the fit's own working memory (Linux).
* ``FirstFit.timeraw_first_fit``: a fresh interpreter with an empty
  ``NUMBA_CACHE_DIR`` runs ``import fastmix`` and one small fit: the cold-JIT
  cost a new user (or a new environment) pays once.
* ``DeviceEMIteration`` / ``DeviceEStepLarge``: the issue-9 GPU targets (CPU vs
  "cuda"); ``DeviceLowRankIteration``, ``DeviceStreamedIteration`` (a 1 GiB .npy file),
  ``DeviceSGDMinibatch``, ``DeviceExpansion``: the other GPU paths against their CPU twins.
  The "cuda" cases are skipped on machines without a GPU.
* ``Scoring.time_score_samples``: scoring a fitted model, every covariance type and dtype.
* ``FirstDefaultFit.timeraw_first_default_fit``: the same with a default fit (k-means start)
  and ``predict``, for every covariance type and dtype.
* ``Selection.time_select_mixture`` / ``time_separate_fits``: ``select_mixture`` over K = 1..6 x
  the four covariance types (24 candidates, 10 EM iterations each) against the same 24 fits
  done one by one; ``SelectionNpyFile.track_em_pass_bytes_over_file_size`` (and ``_mib``):
  bytes read per EM pass of the sweep on a ``.npy`` file (one read for all candidates: 1.0),
  ``peakmem_select_npy_file`` its peak RSS.
* ``EndToEnd.time_default_fit`` / ``track_loglik_minus_sklearn``: default fits on digits and
  60 000 x 50 generated rows, and fastmix's final log-likelihood minus scikit-learn's (the
  small version of ``bench/e2e.py``).
* ``Quality.track_lower_bound``: final lower bound of a fixed-seed fit with
  fastmix's own default initialisation; ``track_n_iter`` its iteration count.
* ``AgreementWithSklearn.track_lower_bound_gap_to_sklearn``: fastmix minus
  scikit-learn lower bound after 5 iterations from the same start (skipped
  where scikit-learn is not installed).

The first call of a fastmix kernel compiles it (numba, cached on disk), so
every ``setup`` fits once before anything is timed.
"""

import base64
import os
import re
import sys
import warnings

import numpy as np

# bench/_data.py lives one level above this package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _data import initial_parameters, make_mixture  # noqa: E402

from fastmix import GaussianMixture  # noqa: E402

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
DTYPES = ["float32", "float64"]
SEED = 0

_cache = {}


def _problem(shape, dtype, covariance_type):
    """Data and the shared starting point for one case, memoised per process."""
    key = (shape, dtype)
    if key not in _cache:
        _cache.clear()  # keep one data set alive at a time
        n, d, k = shape
        X = make_mixture(n, d, k, seed=SEED, dtype=np.dtype(dtype))
        _cache[key] = (X, initial_parameters(X, k, seed=SEED))
    X, init = _cache[key]
    return X, init[covariance_type]


def _fit_quietly(model, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tol=0 -> ConvergenceWarning by design
        return model.fit(X)


def _model(init, covariance_type, max_iter=1, **extra):
    """fastmix model starting from ``init`` that runs exactly ``max_iter`` iterations."""
    return GaussianMixture(
        n_components=init["means"].shape[0],
        covariance_type=covariance_type,
        max_iter=max_iter,
        tol=0.0,
        weights_init=init["weights"],
        means_init=init["means"],
        precisions_init=init["precisions"],
        **extra,
    )


class EMIteration:
    """One EM iteration from a fixed start (see module docstring)."""

    params = (COVARIANCE_TYPES, [(100_000, 16, 16), (100_000, 64, 16)], DTYPES)
    param_names = ["covariance_type", "shape", "dtype"]
    timeout = 300

    def setup(self, covariance_type, shape, dtype):
        self.X, self.init = _problem(shape, dtype, covariance_type)
        _fit_quietly(_model(self.init, covariance_type), self.X)  # JIT warm-up
        self.warm = _model(self.init, covariance_type, warm_start=True)
        _fit_quietly(self.warm, self.X)

    def time_em_iteration(self, covariance_type, shape, dtype):
        _fit_quietly(_model(self.init, covariance_type), self.X)

    def time_em_iteration_warm_start(self, covariance_type, shape, dtype):
        _fit_quietly(self.warm, self.X)


class Scoring:
    """``score_samples`` of a fitted model (the ``log_prob`` kernels: tied and full on the
    E-step's block GEMM) on 10^5 x 16 rows, K = 16."""

    params = (COVARIANCE_TYPES, DTYPES)
    param_names = ["covariance_type", "dtype"]
    timeout = 300

    def setup(self, covariance_type, dtype):
        self.X, init = _problem((100_000, 16, 16), dtype, covariance_type)
        self.model = _model(init, covariance_type, max_iter=1)
        _fit_quietly(self.model, self.X)
        self.model.score_samples(self.X)  # JIT warm-up

    def time_score_samples(self, covariance_type, dtype):
        self.model.score_samples(self.X)


class EMIterationLarge(EMIteration):
    """As EMIteration at N = 10^6 (slow: diag and full only)."""

    params = (["diag", "full"], [(1_000_000, 16, 16)], DTYPES)
    timeout = 600


class BayesianIteration:
    """One variational iteration of a fitted ``warm_start`` BayesianGaussianMixture (no
    initialisation, no prior pass), and the EM iteration of the same case for the ratio."""

    params = (["diag", "full"], [(100_000, 16, 16)])
    param_names = ["covariance_type", "shape"]
    timeout = 300

    def setup(self, covariance_type, shape):
        from fastmix import BayesianGaussianMixture
        self.X, self.init = _problem(shape, "float64", covariance_type)
        self.vb = BayesianGaussianMixture(n_components=shape[2], covariance_type=covariance_type,
                                          max_iter=1, tol=0.0, random_state=SEED,
                                          warm_start=True)
        _fit_quietly(self.vb, self.X)  # JIT warm-up, initialisation and the priors
        _fit_quietly(self.vb, self.X)
        from fastmix import variational
        from fastmix.em import e_step_stats
        params, prior = self.vb._vb_params(), self.vb._prior()
        self.vb_step = lambda: variational.vb_step(lambda g: e_step_stats(self.X, None, g),
                                                   params, prior)
        self.em = _model(self.init, covariance_type, warm_start=True)
        _fit_quietly(self.em, self.X)
        chunks = make_mixture(40960, 16, 16, seed=SEED)
        self.chunks = [chunks[i:i + 4096] for i in range(0, chunks.shape[0], 4096)]
        self.svi = BayesianGaussianMixture(n_components=16, covariance_type=covariance_type,
                                           random_state=SEED, total_samples=40960)
        for c in self.chunks[:3]:
            self.svi.partial_fit(c)
        self.i = 3

    def time_vb_step(self, covariance_type, shape):
        self.vb_step()

    def time_vb_iteration_warm_start(self, covariance_type, shape):
        _fit_quietly(self.vb, self.X)

    def time_em_iteration_warm_start(self, covariance_type, shape):
        _fit_quietly(self.em, self.X)

    def time_svi_step(self, covariance_type, shape):
        self.svi.partial_fit(self.chunks[self.i % len(self.chunks)])
        self.i += 1


def _status_mb(field):
    try:
        with open("/proc/self/status") as fh:
            m = re.search(rf"^{field}:\s+(\d+)\s+kB", fh.read(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) / 1024.0 if m else None


def _reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class _FitCase:
    """Shared set-up of the memory benchmarks (private: asv skips ``_`` names)."""

    params = (["diag", "full"], [(100_000, 16, 16), (1_000_000, 16, 16)], DTYPES)
    param_names = ["covariance_type", "shape", "dtype"]
    timeout = 600
    fit_iterations = 5

    def setup(self, covariance_type, shape, dtype):
        self.X, self.init = _problem(shape, dtype, covariance_type)
        # Warm-up on a slice: compile or load the kernels without a full-size fit.
        _fit_quietly(_model(self.init, covariance_type), np.ascontiguousarray(self.X[:5000]))


class FitMemory(_FitCase):
    """Peak RSS of the process (interpreter + data + set-up) during a 5-iteration fit."""

    def peakmem_fit(self, covariance_type, shape, dtype):
        _fit_quietly(_model(self.init, covariance_type, self.fit_iterations), self.X)


class FitExtraMemory(_FitCase):
    """Working memory of the fit alone: peak RSS during fit minus RSS before it (Linux)."""

    def setup(self, covariance_type, shape, dtype):
        if _status_mb("VmHWM") is None or not _reset_peak_rss():
            raise NotImplementedError("needs /proc/self/status and /proc/self/clear_refs (Linux)")
        super().setup(covariance_type, shape, dtype)

    def track_fit_extra_memory(self, covariance_type, shape, dtype):
        _reset_peak_rss()
        before = _status_mb("VmRSS")
        _fit_quietly(_model(self.init, covariance_type, self.fit_iterations), self.X)
        return _status_mb("VmHWM") - before

    track_fit_extra_memory.unit = "MiB"


def _rows_setup(dtype):
    """The 20 000 x 16 rows (``X``) of the first-fit benchmarks, as code for a fresh interpreter."""
    return f"""
import numpy as np
rng = np.random.default_rng({SEED})
centres = rng.normal(scale=2.0, size=(16, 16))
X = (centres[rng.integers(16, size=20000)] + rng.standard_normal((20000, 16))).astype("{dtype}")
"""


def _cold_setup(dtype):
    """``setup`` of a cold-start timeraw benchmark: an empty numba cache directory (numba reads
    NUMBA_CACHE_DIR when it is first imported, inside ``stmt``) and 20 000 x 16 rows."""
    return """
import atexit, os, shutil, tempfile
cache_dir = tempfile.mkdtemp(prefix="fastmix-asv-cold-")
atexit.register(shutil.rmtree, cache_dir, True)
os.environ["NUMBA_CACHE_DIR"] = cache_dir
""" + _rows_setup(dtype)


class FirstFit:
    """Cold start: import fastmix + first fit with an empty numba cache."""

    params = (["diag", "full"], DTYPES)
    param_names = ["covariance_type", "dtype"]
    number = 1
    repeat = 1
    rounds = 2
    warmup_time = 0.0
    timeout = 600

    def timeraw_first_fit(self, covariance_type, dtype):
        setup = _cold_setup(dtype)  # runs untimed in the fresh interpreter
        stmt = f"""
import warnings
from fastmix import GaussianMixture
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    GaussianMixture(16, covariance_type="{covariance_type}", max_iter=10, random_state={SEED}).fit(X)
"""
        return stmt, setup


class Quality:
    """Numerical results that should change only when the algorithm does."""

    params = COVARIANCE_TYPES
    param_names = ["covariance_type"]
    timeout = 600
    shape = (100_000, 16, 16)

    def setup(self, covariance_type):
        self.X, self.init = _problem(self.shape, "float64", covariance_type)

    def _default_fit(self, covariance_type):
        return _fit_quietly(
            GaussianMixture(self.shape[2], covariance_type=covariance_type, random_state=SEED), self.X
        )

    def track_lower_bound(self, covariance_type):
        return float(self._default_fit(covariance_type).lower_bound_)

    track_lower_bound.unit = "mean log-likelihood"

    def track_n_iter(self, covariance_type):
        return int(self._default_fit(covariance_type).n_iter_)

    track_n_iter.unit = "iterations"



class AgreementWithSklearn:
    """fastmix minus scikit-learn lower bound after 5 iterations from the same start."""

    params = COVARIANCE_TYPES
    param_names = ["covariance_type"]
    timeout = 600
    shape = (100_000, 16, 16)

    def setup(self, covariance_type):
        try:
            from sklearn.mixture import GaussianMixture as SklearnGM
        except ImportError:
            raise NotImplementedError("scikit-learn is not installed")
        self.sklearn_class = SklearnGM
        self.X, self.init = _problem(self.shape, "float64", covariance_type)

    def track_lower_bound_gap_to_sklearn(self, covariance_type):
        ours = _fit_quietly(_model(self.init, covariance_type, 5), self.X).lower_bound_
        kwargs = dict(
            n_components=self.shape[2], covariance_type=covariance_type, max_iter=5, tol=0.0,
            weights_init=self.init["weights"], means_init=self.init["means"],
            precisions_init=self.init["precisions"],
        )
        theirs = _fit_quietly(self.sklearn_class(**kwargs), self.X).lower_bound_
        return float(ours - theirs)

    track_lower_bound_gap_to_sklearn.unit = "mean log-likelihood"


class EndToEnd:
    """What a user times: a default ``GaussianMixture(K, covariance_type).fit(X)`` (k-means
    start included), fastmix and scikit-learn side by side; the panel of bench/e2e.py in small.

    ``track_loglik_minus_sklearn``: fastmix's mean final log-likelihood per row minus
    scikit-learn's over seeds 0..4 (positive: fastmix ends in better optima)."""

    params = (["digits", "mid"], ["diag", "full"])
    param_names = ["data", "covariance_type"]
    timeout = 900

    def setup(self, data, covariance_type):
        if data == "digits":
            try:
                from sklearn.datasets import load_digits
            except ImportError:
                raise NotImplementedError("scikit-learn is not installed")
            self.X, self.K = np.ascontiguousarray(load_digits().data, dtype=np.float64), 10
        else:
            self.X, self.K = make_mixture(60_000, 50, 10, separation="overlap", seed=1), 10
        _fit_quietly(GaussianMixture(self.K, covariance_type=covariance_type, max_iter=2),
                     self.X[:2000])  # loads the compile cache

    def time_default_fit(self, data, covariance_type):
        _fit_quietly(GaussianMixture(self.K, covariance_type=covariance_type, random_state=SEED),
                     self.X)

    def track_loglik_minus_sklearn(self, data, covariance_type):
        try:
            from sklearn.mixture import GaussianMixture as SklearnGM
        except ImportError:
            raise NotImplementedError("scikit-learn is not installed")
        gap = []
        for seed in range(5):
            ours = _fit_quietly(GaussianMixture(self.K, covariance_type=covariance_type,
                                                random_state=seed), self.X).score(self.X)
            theirs = _fit_quietly(SklearnGM(self.K, covariance_type=covariance_type,
                                            random_state=seed), self.X).score(self.X)
            gap.append(ours - theirs)
        return float(np.mean(gap))

    track_loglik_minus_sklearn.unit = "mean log-likelihood"


def _default_fit_code(covariance_type, then=""):
    """A default fit of ``X`` with K = 16 (warnings silenced), as code; ``then``: a call on
    the fitted model, e.g. ``".predict(X)"``."""
    return f"""
import warnings
from fastmix import GaussianMixture
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    GaussianMixture(16, covariance_type="{covariance_type}", random_state={SEED}).fit(X){then}
"""


class FirstDefaultFit:
    """Cold start as a new user meets it: a fresh interpreter with an empty numba cache runs
    ``import fastmix`` and one *default* fit (k-means start, up to 100 iterations) of
    20 000 x 16 rows, K = 16, then ``predict``."""

    params = (COVARIANCE_TYPES, DTYPES)
    param_names = ["covariance_type", "dtype"]
    number = 1
    repeat = 1
    rounds = 1
    warmup_time = 0.0
    timeout = 600

    def timeraw_first_default_fit(self, covariance_type, dtype):
        return _default_fit_code(covariance_type, ".predict(X)"), _cold_setup(dtype)


class CachedFirstFit:
    """What every new process pays once the compile cache is filled (a script, the command
    line, a Dask worker): the first default fit of 20 000 x 16 rows, K = 16, in a fresh
    interpreter, ``import fastmix`` untimed.  ``setup`` fills an empty cache from a child
    process running the same fit.  Against ``EMIteration`` it shows the fixed cost of loading
    the compiled kernels (Numba's set-up included)."""

    params = (COVARIANCE_TYPES, DTYPES)
    param_names = ["covariance_type", "dtype"]
    number = 1
    repeat = 1
    rounds = 3
    warmup_time = 0.0
    timeout = 600

    def timeraw_cached_first_fit(self, covariance_type, dtype):
        fit = _default_fit_code(covariance_type)
        # the child's code travels base64-encoded: asv embeds ``setup`` in a string literal of
        # its own, which would turn the escapes of a repr into line breaks
        child = base64.b64encode((_rows_setup(dtype) + fit).encode()).decode()
        setup = _cold_setup(dtype) + f"""
import base64, subprocess, sys
subprocess.run([sys.executable, "-c", base64.b64decode("{child}").decode()], check=True)
import fastmix
"""
        return fit, setup


# ---------------------------------------------------------------- out of core ----------------
class NpyFile:
    """Fitting from a ``.npy`` path (read in blocks, no memory map) at (N, D, K) =
    (2e6, 16, 16), diag, float64 (256 MB: in the page cache after setup's fit).

    * ``time_iteration_npy_file``: one EM iteration from the fixed start, from the file; compare
      with ``EMIterationLarge`` (10^6 rows in memory) per row.
    * ``peakmem_fit_npy_file``: peak RSS of a 3-iteration fit from the file; the data are never
      all in memory, so this stays near the interpreter + compiled code + 3 read buffers.
    """

    timeout = 600
    shape = (2_000_000, 16, 16)

    def setup_cache(self):
        import tempfile
        n, d, k = self.shape
        path = os.path.join(tempfile.mkdtemp(prefix="fastmix-asv-"), "x.npy")
        X = make_mixture(n, d, k, seed=SEED)
        np.save(path, X)
        init = initial_parameters(X[:200_000], k, seed=SEED)["diag"]
        return path, init

    def setup(self, cache):
        path, init = cache
        _fit_quietly(_model(init, "diag"), path)  # compile + page cache

    def time_iteration_npy_file(self, cache):
        path, init = cache
        _fit_quietly(_model(init, "diag"), path)

    def peakmem_fit_npy_file(self, cache):
        path, init = cache
        _fit_quietly(_model(init, "diag", max_iter=3), path)


class PartialFit:
    """``partial_fit`` on one chunk of (4096, 16) rows, K = 16: the cost of one online-EM
    update (E-step on the chunk, blend of the running statistics, M-step)."""

    params = [["full", "diag"]]
    param_names = ["covariance_type"]

    def setup(self, covariance_type):
        X = make_mixture(40960, 16, 16, seed=SEED)
        self.chunks = [X[i:i + 4096] for i in range(0, X.shape[0], 4096)]
        self.model = GaussianMixture(16, covariance_type=covariance_type, random_state=0)
        for c in self.chunks[:3]:
            self.model.partial_fit(c)
        self.i = 3

    def time_partial_fit_chunk(self, covariance_type):
        self.model.partial_fit(self.chunks[self.i % len(self.chunks)])
        self.i += 1


class LowRankIteration:
    """One EM iteration of ``covariance_type="lowrank"`` (mixture of factor analysers) at
    image size: N = 60 000, D = 784, K = 16, q = 8 (seeded synthetic MFA data), warm start
    from a model fitted once in ``setup`` (so no initialisation is timed; ``fit``'s input
    validation is).  Compare with ``bench/lowrank.py`` for full/diag at the same size."""

    params = [DTYPES]
    param_names = ["dtype"]
    timeout = 600

    def setup(self, dtype):
        from fastmix import GaussianMixture
        rng = np.random.default_rng(SEED)
        K, D, q, N = 16, 784, 8, 60_000
        means = rng.normal(size=(K, D))
        W = rng.normal(size=(K, D, q))
        lab = rng.integers(0, K, N)
        X = means[lab] + np.einsum("nij,nj->ni", W[lab], rng.standard_normal((N, q)))
        X += 0.5 * rng.standard_normal((N, D))
        self.X = X.astype(dtype)
        self.model = GaussianMixture(K, covariance_type="lowrank", n_factors=q, max_iter=1,
                                     tol=0.0, warm_start=True, random_state=SEED)
        _fit_quietly(self.model, self.X)

    def time_em_iteration(self, dtype):
        _fit_quietly(self.model, self.X)


class Expansion:
    """``GMMExpansion`` one-pass fit: 10^6 rows in 1-D (64 nodes) and 2-D (32 x 32 nodes)."""

    params = [[1, 2]]
    param_names = ["n_features"]

    def setup(self, d):
        from fastmix import GMMExpansion
        rng = np.random.default_rng(SEED)
        self.X = np.concatenate([rng.normal(-2, 0.5, size=(300_000, d)),
                                 rng.normal(1, 1, size=(700_000, d))])
        self.model = GMMExpansion(64 if d == 1 else 32)
        self.model.fit(self.X[:1000])  # compile

    def time_expansion_fit(self, d):
        self.model.fit(self.X)


class BigLearn:
    """One BigLearn-EM outer iteration (5 local steps) on 2000 x 2 rows, K = 25 (the paper's
    simulation size), against ``EMIteration`` for scale."""

    def setup(self):
        from fastmix import BigLearnGaussianMixture
        rng = np.random.default_rng(SEED)
        grid = np.array([(a, b) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)], float)
        self.X = grid[rng.integers(0, 25, 2000)] + rng.normal(size=(2000, 2)) * 0.1 ** 0.5
        self.model = BigLearnGaussianMixture(25, n_outer=10, random_state=SEED)
        self.model.fit(self.X)  # compile

    def time_biglearn_10_outer_iterations(self):
        self.model.fit(self.X)


class SGDKernel:
    """Batch-size-1 SGD kernel: D = 784, K = 25, diag, one numba thread, 5000 samples in
    [0, 1].  ``g`` = identity (max-component loss without annealing, or annealing finished) or
    the toroidal smoothing at sigma = 1.2 (annealing in progress; nothing truncated at that
    sigma on a 5 x 5 torus)."""

    params = [["identity", "annealing"]]
    param_names = ["smoothing"]
    N = 5000

    def setup(self, smoothing):
        import numba
        from fastmix.kernels.cpu import sgd as cpu_sgd
        self.cpu_sgd = cpu_sgd
        numba.set_num_threads(1)
        rng = np.random.default_rng(SEED)
        self.X = rng.uniform(0, 1, size=(self.N, 784))
        from fastmix.sgd import toroidal_smoothing
        self.g = toroidal_smoothing(5, 0.0 if smoothing == "identity" else 1.2)
        self.out = np.empty(self.N)
        self._run()  # compile

    def _run(self):
        K = 25
        xi = np.full(K, 1.0 / K)
        mu = np.random.default_rng(1).uniform(-0.01, 0.01, size=(K, 784))
        s = np.full((K, 784), 20 ** 0.5)
        self.cpu_sgd.sgd_step_single(self.X, xi, mu, s, self.g, False, 0.05, 1.0, 1.0, 1.0,
                                     1e-6, 20 ** 0.5, self.out)

    def time_sgd_single_5000_samples(self, smoothing):
        self._run()

    def track_samples_per_second(self, smoothing):
        import time
        t0 = time.perf_counter()
        self._run()
        return self.N / (time.perf_counter() - t0)

    track_samples_per_second.unit = "samples/s"


class SGDVariants:
    """The other SGD kernels at D = 784, K = 25, sigma = 1.2, all numba threads: the parallel
    mini-batch kernel (batch 256, 20 480 samples) and local principal directions
    (S = 10 directions, batch 1, 200 samples: re-orthonormalising every updated component after
    every sample makes it ~100x slower than diag)."""

    params = [["minibatch256", "lpd_s10"]]
    param_names = ["variant"]

    def setup(self, variant):
        from fastmix.kernels.cpu import sgd as cpu_sgd
        from fastmix.sgd import toroidal_smoothing
        self.cpu_sgd = cpu_sgd
        self.n = 20480 if variant == "minibatch256" else 200
        rng = np.random.default_rng(SEED)
        self.X = rng.uniform(0, 1, size=(self.n, 784))
        self.g = toroidal_smoothing(5, 1.2)
        self._run(variant)  # compile

    def _run(self, variant):
        K, D, S = 25, 784, 10
        rng = np.random.default_rng(1)
        xi = np.full(K, 1.0 / K)
        mu = rng.uniform(-0.01, 0.01, size=(K, D))
        smax = 20 ** 0.5
        if variant == "minibatch256":
            s = np.full((K, D), smax)
            out = np.empty(-(-self.n // 256))
            self.cpu_sgd.sgd_minibatch(self.X, 256, xi, mu, s, self.g, False, 0.05, 1.0, 1.0,
                                       1.0, 1e-6, smax, out)
        else:
            U = np.ascontiguousarray(np.stack([np.linalg.qr(rng.standard_normal((D, S)))[0].T
                                               for _ in range(K)]))
            a, r = np.ones((K, S)), np.full(K, smax)
            out = np.empty(self.n)
            self.cpu_sgd.sgd_lpd_step_single(self.X, xi, mu, U, a, r, self.g, False, 0.05, 1.0,
                                             1.0, 1.0, 1e-6, smax, out)

    def time_sgd_variant(self, variant):
        self._run(variant)

    def track_samples_per_second(self, variant):
        import time
        t0 = time.perf_counter()
        self._run(variant)
        return self.n / (time.perf_counter() - t0)

    track_samples_per_second.unit = "samples/s"


def _require_gpu():
    """asv skips a benchmark whose setup raises NotImplementedError: no GPU here (or only the
    CUDA simulator, whose timings mean nothing)."""
    from fastmix.kernels import cuda as gk
    if not gk.gpu_available() or gk.simulated():
        raise NotImplementedError("no CUDA GPU")


class DeviceEMIteration:
    """One EM iteration of the batch driver on the CPU kernels and on the GPU kernels (issue 9
    target: diag, N = 10^6, D = 64, K = 64, float32, <= 3 ms on an H100).  The data are
    resident (uploaded once in setup for "cuda"); the time includes the host M-step.  The
    "cuda" case is skipped without a GPU."""

    params = (["cpu", "cuda"],)
    param_names = ["device"]
    timeout = 600
    shape = (1_000_000, 64, 64)

    def setup(self, device):
        from fastmix._params import Covariance, GMMParams
        if device == "cuda":
            _require_gpu()
        n, d, k = self.shape
        self.X = make_mixture(n, d, k, seed=SEED, dtype=np.float32)
        rng = np.random.default_rng(SEED)
        means = self.X[rng.choice(n, k, replace=False)].astype(np.float64)
        self.params0 = GMMParams(np.full(k, 1.0 / k), means,
                                 Covariance.registry["diag"].from_covariances(np.ones((k, d))))
        if device == "cuda":
            from fastmix import gpu
            self.data = gpu.to_gpu(self.X)
            self.run = lambda: gpu.run_em_gpu(self.data, None, self.params0, reg_covar=1e-6,
                                              tol=-1.0, max_iter=1)
        else:
            from fastmix.em import run_em
            self.run = lambda: run_em(self.X, None, self.params0, reg_covar=1e-6, tol=-1.0,
                                      max_iter=1)
        self.run()  # compile

    def time_em_iteration(self, device):
        self.run()


class DeviceEStepLarge:
    """The fused E-step statistics at N = 10^6, D = 128, K = 1024 (diag, float32) on the GPU
    (issue 9 target: <= 40 ms on an H100).  Skipped without a GPU; the CPU figure (~minutes on
    2 cores) is in bench/gpu.py, measured on a row subset and scaled."""

    timeout = 600

    def setup(self):
        _require_gpu()
        from fastmix._params import Covariance, GMMParams
        from fastmix.kernels import cuda as gk
        n, d, k = 1_000_000, 128, 1024
        X = make_mixture(n, d, 16, seed=SEED, dtype=np.float32)
        rng = np.random.default_rng(SEED)
        means = X[rng.choice(n, k, replace=False)].astype(np.float64)
        kp = GMMParams(np.full(k, 1.0 / k), means,
                       Covariance.registry["diag"].from_covariances(np.ones((k, d)))
                       ).kernel_params(np.float32)
        Xd, wd = gk.to_device(X), gk.weights_to_device(None, n)
        self.run = lambda: gk.estep_stats_gpu(Xd, wd, kp)
        self.run()

    def time_estep_stats(self):
        self.run()


class DeviceLowRankIteration(LowRankIteration):
    """``LowRankIteration`` (N = 60 000, D = 784, K = 16, q = 8, float32) on the CPU and with
    ``device="cuda"`` (the GPU lowrank kernel; the warm-started fit uploads the rows once per
    call, included).  The "cuda" case is skipped without a GPU."""

    params = (["cpu", "cuda"],)
    param_names = ["device"]

    def setup(self, device):
        if device == "cuda":
            _require_gpu()
        super().setup("float32")
        self.model.set_params(device=device)
        _fit_quietly(self.model, self.X)  # compile / warm up on the device

    def time_em_iteration(self, device):
        _fit_quietly(self.model, self.X)


class DeviceStreamedIteration:
    """One EM iteration over a float32 ``.npy`` file of 4 * 10^6 x 64 rows (1 GiB; diag,
    K = 64): the CPU out-of-core pass against ``device="cuda"`` streaming the file through
    pinned buffers on two CUDA streams.  The "cuda" case is skipped without a GPU."""

    params = (["cpu", "cuda"],)
    param_names = ["device"]
    timeout = 900

    def setup(self, device):
        import tempfile
        if device == "cuda":
            _require_gpu()
        n, d, k = 4_000_000, 64, 64
        self.tmp = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.tmp.name, "x.npy")
        out = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.float32, shape=(n, d))
        step = 500_000
        for i in range(0, n, step):
            out[i:i + step] = make_mixture(step, d, k, seed=SEED + i // step,
                                           dtype=np.float32)
        out.flush()
        del out
        init = initial_parameters(make_mixture(100_000, d, k, seed=SEED, dtype=np.float32), k,
                                  seed=SEED)["diag"]
        self.model = _model(init, "diag", device=device)
        _fit_quietly(self.model, self.path)  # compile

    def teardown(self, device):
        if hasattr(self, "tmp"):  # not when setup skipped the case
            self.tmp.cleanup()

    def time_em_iteration_from_file(self, device):
        _fit_quietly(self.model, self.path)


class DeviceSGDMinibatch:
    """``SGDGaussianMixture.fit``, diag, mini-batch 256, D = 784, K = 25, 20 480 samples (one
    epoch), on the CPU kernel and with ``device="cuda"``.  "cuda" skipped without a GPU."""

    params = (["cpu", "cuda"],)
    param_names = ["device"]

    def setup(self, device):
        from fastmix import SGDGaussianMixture
        if device == "cuda":
            _require_gpu()
        rng = np.random.default_rng(SEED)
        self.X = rng.uniform(0, 1, size=(20_480, 784))
        self.model = SGDGaussianMixture(25, batch_size=256, random_state=SEED, device=device)
        self.model.fit(self.X)  # compile

    def time_sgd_fit_one_epoch(self, device):
        self.model.fit(self.X)


class DeviceExpansion(Expansion):
    """``Expansion`` (10^6 rows, 2-D, 32 x 32 grid nodes) on the CPU and with
    ``device="cuda"``.  "cuda" skipped without a GPU."""

    params = (["cpu", "cuda"],)
    param_names = ["device"]

    def setup(self, device):
        if device == "cuda":
            _require_gpu()
        super().setup(2)
        self.model.set_params(device=device)
        self.model.fit(self.X[:1000])  # compile

    def time_expansion_fit(self, device):
        self.model.fit(self.X)


# ---------------------------------------------------------------- model selection ------------
_SEL_KS = list(range(1, 7))
_SEL_KW = dict(max_iter=10, tol=0.0, random_state=SEED)  # every candidate runs 10 iterations


def _select_quietly(X, **kw):
    from fastmix import select_mixture
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tol=0 -> ConvergenceWarning by design
        return select_mixture(X, n_components=_SEL_KS, covariance_types=COVARIANCE_TYPES,
                              **_SEL_KW, **kw)


class Selection:
    """``select_mixture`` at (N, D) = (50 000, 8), K = 1..6 x the four covariance types (24
    candidates, k-means starts, exactly 10 EM iterations each): one shared pass per iteration
    for every candidate (``time_select_mixture``) against the 24 ``GaussianMixture`` fits one
    after the other (``time_separate_fits``; the same starts and results)."""

    timeout = 600

    def setup(self):
        self.X = make_mixture(50_000, 8, 6, seed=SEED)
        _select_quietly(self.X[:2000])  # compile

    def time_select_mixture(self):
        _select_quietly(self.X)

    def time_separate_fits(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for kind in COVARIANCE_TYPES:
                for k in _SEL_KS:
                    GaussianMixture(k, covariance_type=kind, **_SEL_KW).fit(self.X)


class SelectionNpyFile:
    """The same sweep on a ``.npy`` file of 400 000 x 8 float64 rows (24 MiB), read in blocks:
    bytes read per EM pass (every candidate's E-step on each block: one read of the file per
    iteration, whatever the number of candidates) and the peak RSS of the sweep."""

    timeout = 600

    def setup_cache(self):
        import tempfile
        path = os.path.join(tempfile.mkdtemp(prefix="fastmix-asv-"), "sel.npy")
        np.save(path, make_mixture(400_000, 8, 6, seed=SEED))
        res = _select_quietly(path)  # compile + page cache
        em = [b for b, kind in zip(res.bytes_read_, res.pass_kinds_) if kind == "em"]
        return path, em, os.path.getsize(path)

    def track_em_pass_bytes_over_file_size(self, cache):
        path, em, size = cache
        return max(em) / size

    track_em_pass_bytes_over_file_size.unit = "ratio"

    def track_em_pass_mib(self, cache):
        path, em, size = cache
        return max(em) / 2**20

    track_em_pass_mib.unit = "MiB"

    def peakmem_select_npy_file(self, cache):
        _select_quietly(cache[0])
