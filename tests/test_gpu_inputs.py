"""Every estimator on a GPU array (numba device array; the CUDA simulator without a GPU):
device="cuda" fits it -- the same model as from the host copy, to the GPU reductions' rounding --
and device="cpu" refuses it with a ValueError saying what to do.  Other inputs: test_inputs.py."""
import _gpu  # noqa: F401  (first: switches numba-cuda to the simulator when there is no GPU)

import numpy as np
import pytest

import fastmix
from fastmix.cli import make_blobs
from fastmix.kernels import cuda as gk

from _helpers import assert_close

N, D = 120, 2

ESTIMATORS = {
    "GaussianMixture": lambda dev: fastmix.GaussianMixture(2, max_iter=3, tol=0.0,
                                                           random_state=0, device=dev),
    "BigLearnGaussianMixture": lambda dev: fastmix.BigLearnGaussianMixture(
        2, n_outer=2, n_local_steps=2, random_state=0, device=dev),
    "SGDGaussianMixture": lambda dev: fastmix.SGDGaussianMixture(4, n_epochs=1, batch_size=8,
                                                                 random_state=0, device=dev),
    "GMMExpansion": lambda dev: fastmix.GMMExpansion(9, random_state=0, device=dev),
}


@pytest.fixture(scope="module")
def X():
    X, _, _, _ = make_blobs(N, D, 2, random_state=1)
    return (X - X.min(0)) / (X.max(0) - X.min(0))


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_gpu_array_fits_on_cuda(X, name):
    host = ESTIMATORS[name]("cuda").fit(X)
    dev = ESTIMATORS[name]("cuda").fit(gk.to_device(X))
    assert_close(dev.weights_, host.weights_, 1e-9)
    assert_close(dev.means_, host.means_, 1e-9)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_gpu_array_refused_on_cpu(X, name):
    with pytest.raises(ValueError, match="GPU array"):
        ESTIMATORS[name]("cpu").fit(gk.to_device(X))
