"""Small assertion helpers shared by the test modules."""
import os
import subprocess
import sys

import numpy as np

#: Relative tolerances of kernel results against the float64 reference, by data dtype.
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}


def assert_close(actual, desired, rtol, err_msg="", floor=None):
    """Element-wise ``rtol``, with an absolute floor of ``rtol * max|desired|``.

    The floor makes the check norm-wise for entries that are small only because of cancellation
    (an off-diagonal covariance near 0, a mean coordinate near 0), where an element-wise relative
    error says nothing about the accuracy of the computation.
    """
    actual = np.asarray(actual, dtype=np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    assert actual.shape == desired.shape, (actual.shape, desired.shape, err_msg)
    scale = float(np.max(np.abs(desired))) if desired.size else 0.0
    atol = rtol * scale if floor is None else floor
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=err_msg)


FITTED_ATTRS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")


def fitted_arrays(model):
    return {a: np.asarray(getattr(model, a)) for a in FITTED_ATTRS}


def assert_reproducible(a, b, what=""):
    """``a`` and ``b`` come from identical computations: equal bits (fastmix promises
    bit-identical results for a given chunk_size and seed, README and docs/design.md §2)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), what


def assert_same_model(a, b):
    """Two fitted models from identical computations have bit-identical parameters and the same
    fit bookkeeping."""
    for attr in FITTED_ATTRS:
        assert_reproducible(getattr(a, attr), getattr(b, attr), attr)
    assert a.n_iter_ == b.n_iter_
    assert a.converged_ == b.converged_
    assert_reproducible(np.float64(a.lower_bound_), np.float64(b.lower_bound_), "lower_bound_")


def perturbed_problem(kind, K, D, n, seed=0):
    """Data drawn from one random mixture, model parameters = a perturbed copy of it (so every
    row has non-trivial responsibilities for some components), and weights with exact zeros:
    (X, sw, weights, means, covariances)."""
    import reference as ref
    rng = np.random.default_rng(seed)
    w, mu, cov = ref.random_model(rng, kind, K, D, spread=2.0)
    X = ref.sample_model(rng, w, mu, cov, kind, n)
    weights = np.roll(w, 1)
    means = mu + 0.5 * rng.normal(size=mu.shape)
    covs = ref.random_covariances(rng, kind, K, D, scale=1.5)
    sw = rng.uniform(0.0, 3.0, size=n)
    sw[::11] = 0.0
    return X, sw, weights, means, covs


def gmm_params(weights, means, covs, kind):
    """GMMParams from covariances in scikit-learn's layout."""
    from fastmix._params import Covariance, GMMParams
    cov = Covariance.registry[kind].from_covariances(covs)
    return GMMParams(np.asarray(weights, float), np.asarray(means, float), cov)


def run_on_threads(script, tmp_path, name, args=(), thread_counts=(1, 2), timeout=400):
    """Run the Python source ``script`` once per Numba thread count, each in its own
    interpreter (NUMBA_NUM_THREADS is read once, at import), side by side, with the on-disk
    kernel cache like any other run.  The script is called as ``script OUT.npz THREADS *args``
    and saves its arrays to OUT.npz; returns one dict of arrays per thread count."""
    path = tmp_path / f"{name}.py"
    path.write_text(script)
    procs = []
    for threads in thread_counts:
        out = tmp_path / f"{name}_{threads}.npz"
        env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
        env.pop("FASTMIX_NUMBA_CACHE", None)
        proc = subprocess.Popen([sys.executable, str(path), str(out), str(threads), *args],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        procs.append((proc, out))
    results = []
    for proc, out in procs:
        _, stderr = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, stderr[-3000:]
        with np.load(out) as z:
            results.append({k: z[k] for k in z.files})
    return results


def differing_arrays(one, two, keys):
    """The keys whose arrays in ``one`` and ``two`` differ in dtype, shape or any bit."""
    return [k for k in keys if one[k].dtype != two[k].dtype or one[k].shape != two[k].shape
            or one[k].tobytes() != two[k].tobytes()]
