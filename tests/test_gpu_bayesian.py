"""BayesianGaussianMixture with device="cuda": the variational E-step is the GPU E-step kernel
with the variational parameters, so a GPU fit agrees with the CPU fit to rounding (on the CUDA
simulator without a GPU; ``FASTMIX_TEST_GPU=real`` runs it on the device)."""
from _gpu import gk  # noqa: F401,I001  (first import: selects the simulator)
import warnings

import numpy as np
import pytest

import fastmix


@pytest.mark.parametrize("kind", ["full", "tied", "diag", "spherical"])
def test_gpu_fit_equals_cpu_fit(kind):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3, 2))[rng.integers(0, 3, 300)] * 4 + rng.normal(size=(300, 2))
    kw = dict(n_components=3, covariance_type=kind, random_state=0, max_iter=3, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = fastmix.BayesianGaussianMixture(**kw).fit(X)
        gpu = fastmix.BayesianGaussianMixture(device="cuda", **kw).fit(X)
    for name in ("weights_", "means_", "covariances_", "degrees_of_freedom_"):
        np.testing.assert_allclose(getattr(gpu, name), getattr(cpu, name), rtol=1e-10,
                                   atol=1e-12)
    np.testing.assert_allclose(gpu.lower_bounds_, cpu.lower_bounds_, rtol=1e-10)
    np.testing.assert_allclose(gpu.score_samples(X), cpu.score_samples(X), rtol=1e-10)
