"""What the estimators (``fastmix.mixture``) and the command line take from the compute layer,
so that they import no kernel module themselves (estimator -> driver -> kernel): the covariance
kind codes and the shapes of their second-moment statistics, the BLAS thread limit, the thread
count of the parallel kernels, a hook on kernel compilation, and the error raised when no GPU
can be used.  Importing this module imports no numba-cuda."""
from .kernels import (KIND_CODES, blas_single_threaded, compile_listener, num_threads,
                      s2_shape)
from .kernels.cuda import GPUUnavailableError

__all__ = ["KIND_CODES", "blas_single_threaded", "compile_listener", "num_threads", "s2_shape",
           "GPUUnavailableError"]
