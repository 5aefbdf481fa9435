"""GPU EM driver: the data stay on the device; each iteration moves only the parameters in and
the small statistics out.

The same three pieces as ``fastmix.em`` (kernel -> Stats -> m_step) with a different kernel:
``fastmix.kernels.cuda.estep_stats_gpu`` returns the same (nk, s1, s2, ll, ws) tuple as the CPU
kernels, so the M-step, the lower bound and the stopping rule are ``fastmix.em``'s, unchanged.
This module never touches numba; ``fastmix.kernels.cuda`` probes for numba-cuda and a GPU and
says what is missing (``pip install 'fastmix[cuda]'``).

Results are deterministic (bit-identical run to run on one GPU for the same ``block_rows``);
they agree with the CPU kernels to rounding, not bit for bit (different summation order).
"""
from dataclasses import dataclass

import numpy as np

from . import io as sources
from ._params import stats_from_kernel
from .em import em_loop
from .kernels import cuda as gk

DEFAULT_BLOCK_ROWS = gk.DEFAULT_BLOCK_ROWS
DEFAULT_THREADS = gk.DEFAULT_THREADS
#: Launch shape of the GMM-expansion grid kernel (``fastmix.expansion``).
DEFAULT_GRID_BLOCK_ROWS = gk.DEFAULT_GRID_BLOCK_ROWS
DEFAULT_GRID_THREADS = gk.DEFAULT_GRID_THREADS

#: Resident data may use at most this fraction of the device's free memory; larger data are
#: streamed from the host in chunks (``StreamedData``).
RESIDENT_FRACTION = 0.7

GPUUnavailableError = gk.GPUUnavailableError
gpu_available = gk.gpu_available
require_gpu = gk.require_gpu
device_name = gk.device_name


@dataclass
class DeviceData:
    """Rows (N, D) and sample weights resident on the GPU (see ``to_gpu``)."""
    X: object        # device array, float32/float64 C-contiguous
    w: object        # device float64 (N,) or empty (no weights)
    streamed = False
    range: tuple | None = None  # (lo, hi) per feature once computed (fastmix.expansion.data_range)

    @property
    def shape(self):
        return tuple(self.X.shape)

    @property
    def dtype(self):
        return np.dtype(self.X.dtype)

    @property
    def n_rows(self):
        return int(self.X.shape[0])

    @property
    def n_features(self):
        return int(self.X.shape[1])

    @property
    def weighted(self):
        return self.w.shape[0] > 0

    def to_host(self):
        """(X, sample weights or None) copied to host NumPy arrays."""
        return self.X.copy_to_host(), (self.w.copy_to_host() if self.weighted else None)


def to_gpu(X, sample_weight=None, dtype=None):
    """Put X (and weights) on the GPU once: NumPy arrays are copied, arrays with
    ``__cuda_array_interface__`` are used in place.  Already-``DeviceData`` passes through."""
    if isinstance(X, DeviceData):
        if sample_weight is not None:
            raise ValueError("pass sample_weight to to_gpu together with the data")
        return X
    Xd = gk.to_device(X, dtype)
    return DeviceData(Xd, gk.weights_to_device(sample_weight, Xd.shape[0]))


def e_step_stats(X, sample_weight, params, block_rows=DEFAULT_BLOCK_ROWS,
                 threads=DEFAULT_THREADS, scratch=None):
    """Sufficient statistics (``Stats``) of X under ``params``, computed on the GPU.
    ``scratch``: a ``kernels.cuda.DeviceScratch`` whose work buffers are reused (drivers keep
    one per fit)."""
    data = to_gpu(X, sample_weight)
    kp = params.kernel_params(data.dtype)
    out = gk.estep_stats_gpu(data.X, data.w, kp, block_rows=block_rows, threads=threads,
                             scratch=scratch)
    return stats_from_kernel(params.kind, out, kp)


def e_step_stats_missing(X, sample_weight, params, block_rows=DEFAULT_BLOCK_ROWS,
                         threads=DEFAULT_THREADS):
    """Expected sufficient statistics (``Stats``) of X with NaN entries (missing values,
    marginalised; ``fastmix.missing``) on the GPU: the diag and spherical kinds
    (``kernels.cuda.missing``); a ValueError for the others."""
    data = to_gpu(X, sample_weight)
    kp = params.kernel_params(data.dtype)
    out = gk.estep_stats_missing_gpu(data.X, data.w, kp, params.cov.covariances,
                                     block_rows=block_rows, threads=threads)
    return stats_from_kernel(params.kind, out, kp)


def log_prob(X, params, want_resp=False, block_rows=DEFAULT_BLOCK_ROWS, threads=DEFAULT_THREADS):
    """Per-row log p(x), labels and optionally responsibilities (host arrays), on the GPU."""
    data = to_gpu(X)
    kp = params.kernel_params(data.dtype)
    return gk.log_prob_gpu(data.X, kp, want_resp, block_rows=block_rows, threads=threads)


def run_em_gpu(X, sample_weight, params, *, reg_covar, tol, max_iter,
               block_rows=DEFAULT_BLOCK_ROWS, threads=DEFAULT_THREADS, lower_bound=-np.inf,
               callback=None, fixed=(), missing=False):
    """``fastmix.em.run_em`` on the GPU: up to ``max_iter`` EM iterations from ``params``.

    X is copied to the device once (or used in place if it is a device array / ``DeviceData``)
    and stays there; the M-step runs on the host from the O(K D^2) statistics.  Same lower-bound
    convention, stopping rule, ``callback`` and ``fixed`` as ``run_em``.  ``missing``: X holds
    NaN entries to marginalise (``e_step_stats_missing``: diag and spherical)."""
    data = to_gpu(X, sample_weight)
    scratch = gk.DeviceScratch()  # the E-steps' work buffers, allocated once per fit

    def estep(p):
        if missing:
            return e_step_stats_missing(data, None, p, block_rows=block_rows, threads=threads)
        return e_step_stats(data, None, p, block_rows=block_rows, threads=threads,
                            scratch=scratch)
    try:
        return em_loop(estep, params, reg_covar=reg_covar, tol=tol, max_iter=max_iter,
                       lower_bound=lower_bound, callback=callback, fixed=fixed)
    finally:
        scratch.clear()


def fits_on_device(nbytes, copies=1):
    """True when ``nbytes`` of rows can stay resident, together with ``copies - 1`` device
    buffers of the same size that the fit allocates next to them: ``copies * nbytes`` within
    RESIDENT_FRACTION of the free device memory (always True on the simulator, which reports
    none)."""
    free = gk.free_bytes()
    return free is None or copies * nbytes <= RESIDENT_FRACTION * free


class StreamedData:
    """A host ``fastmix.io.Stream`` (in-memory array, memmap, file, iterator) read through
    the GPU: blocks of ``gk.stream_chunk_rows`` rows (a whole number of the stream's chunks)
    staged in pinned memory and sent on two CUDA streams, overlapping transfer and compute
    (``fastmix.kernels.cuda.StreamedEStep``).  NaN/inf are checked on the host on the first
    pass, as for the CPU kernels.  Use as a context manager, or ``close()``."""

    streamed = True

    def __init__(self, data, block_rows=DEFAULT_BLOCK_ROWS, threads=DEFAULT_THREADS):
        rows = gk.stream_chunk_rows(data.n_features, data.dtype, block_rows)
        self.data = data.rebatched(rows)
        self.capacity = self.data.block_rows
        self.streamer = gk.StreamedEStep(self.capacity, data.n_features, data.dtype,
                                         data.weighted, block_rows=block_rows, threads=threads)

    @property
    def dtype(self):
        return self.data.dtype

    def close(self):
        self.streamer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def e_step_stats(self, params):
        """Stats of all rows under ``params``: one pass over the host data."""
        kp = params.kernel_params(self.dtype)
        out = self.streamer.estep(((X, w) for _, X, w in self.data.blocks()), kp)
        return stats_from_kernel(params.kind, out, kp)


def run_em_gpu_streamed(data, params, *, reg_covar, tol, max_iter, lower_bound=-np.inf,
                        callback=None, fixed=(), block_rows=DEFAULT_BLOCK_ROWS,
                        threads=DEFAULT_THREADS):
    """``run_em_gpu`` for data that stay on the host (a Stream, or a ``StreamedData``): every
    iteration streams them through the device.  Same conventions as ``run_em``."""
    own = not isinstance(data, StreamedData)
    sd = StreamedData(data, block_rows, threads) if own else data
    try:
        return em_loop(sd.e_step_stats, params, reg_covar=reg_covar, tol=tol,
                       max_iter=max_iter, lower_bound=lower_bound, callback=callback,
                       fixed=fixed)
    finally:
        if own:
            sd.close()


def log_prob_blocks(data, params, want_resp=False, block_rows=DEFAULT_BLOCK_ROWS,
                    threads=DEFAULT_THREADS):
    """``log_prob`` of a host Stream, one block at a time (each block copied to the device,
    evaluated, and its results copied back): for data that are not resident."""
    parts = [log_prob(X, params, want_resp, block_rows, threads) for _, X, _ in data.blocks()]
    if not parts:
        return np.empty(0), np.empty(0, np.int64), (np.empty((0, params.n_components))
                                                      if want_resp else None)
    logp, labels, resp = zip(*parts)
    return (np.concatenate(logp), np.concatenate(labels),
            np.concatenate(resp) if want_resp else None)


def is_device_array(X):
    """True for arrays that live on a GPU (``__cuda_array_interface__``: CuPy, PyTorch CUDA
    tensors, numba device arrays)."""
    return gk.is_device_array(X)


class DeviceSource(sources.Source):
    """A GPU array (N, D) seen as a fastmix source, for the steps that run on the host
    (validation, the k-means sample, the initial assignment pass): rows are copied to the
    host a block at a time, the array itself is never copied whole nor modified.  EM then
    uses the array in place (``to_gpu``)."""

    random_access = True

    def __init__(self, X, name="device array"):
        self.X = gk.to_device(X)  # a numba view of the same memory; checks 2-D float, C order
        self.name = name
        self.n_rows, self.n_features = self.X.shape
        self.dtype = np.dtype(self.X.dtype)

    def read_rows(self, start, stop, out):
        if stop > start:
            self.X[start:stop].copy_to_host(out)


def device_weights_to_host(sample_weight):
    """Sample weights given as a GPU array, copied to the host (N floats); others unchanged."""
    if sample_weight is not None and gk.is_device_array(sample_weight):
        return np.asarray(gk.to_host(sample_weight), dtype=np.float64)
    return sample_weight


def check_log_prob(logp):
    """A ValueError when a row's log-density is not finite: NaN or infinity in device rows
    (which are not validated on the host before inference)."""
    bad = np.flatnonzero(~np.isfinite(logp))
    if bad.size:
        raise ValueError(f"Input X contains NaN or infinity: row {int(bad[0])} of the device "
                         f"array has log-density {logp[bad[0]]} ({bad.size} such rows)")


class DeviceMarginals:
    """BigLearn-EM's marginal statistics (``fastmix.biglearn.marginal_stats``) for rows
    resident on the GPU: the (transformed) marginal rows are formed on the device
    (``kernels.cuda.marginal_rows``, into one reused buffer) and fed to the full-covariance
    E-step kernel; only the statistics come back.

    The buffer holds N x D entries of the data dtype, as many bytes as the rows themselves:
    rows admitted with ``DeviceMarginals.fits`` leave room for it."""

    #: Arrays of the rows' size on the device during a fit: the rows and the marginal buffer.
    ROW_COPIES = 2

    @classmethod
    def fits(cls, nbytes):
        """True when rows of ``nbytes`` and the marginal buffer (``ROW_COPIES * nbytes``) fit
        in RESIDENT_FRACTION of the free device memory (see ``fits_on_device``)."""
        return fits_on_device(nbytes, cls.ROW_COPIES)

    def __init__(self, data, block_rows=DEFAULT_BLOCK_ROWS, threads=DEFAULT_THREADS):
        self.data = data
        self.block_rows, self.threads = block_rows, threads
        self.buf = None
        self.scratch = gk.DeviceScratch()

    def __call__(self, _data, kp, A, T):
        X = self.data.X
        if self.buf is None and not (A is None and len(T) == X.shape[1]):
            self.buf = gk.marginal_buffer(X)
        Y = gk.marginal_rows(X, A, T, self.buf)
        return gk.estep_stats_gpu(Y, self.data.w, kp, block_rows=self.block_rows,
                                  threads=self.threads, scratch=self.scratch)


def device_rows(X, sample_weight=None, min_samples=1):
    """DeviceData for rows that already live on the device (``__cuda_array_interface__``),
    checked there the way ``check_array`` / ``check_sample_weight`` check host arrays: 2-D
    float32/float64 C-contiguous (never copied), at least ``min_samples`` rows, no NaN or
    infinity; sample weights (host or device, float64 (N,)) finite, non-negative, with a
    positive sum.  The checks are one device pass (``column_range``) whose per-feature ranges
    are kept on the result (``range``)."""
    from ._validation import check_sample_weight
    Xd = gk.to_device(X)
    N = Xd.shape[0]
    if N < min_samples:
        raise ValueError(f"Found array with {N} sample(s) (shape={tuple(Xd.shape)}) while a "
                         f"minimum of {min_samples} is required.")
    if Xd.shape[1] < 1:
        raise ValueError("Found array with 0 feature(s) while a minimum of 1 is required.")
    lo, hi, bad = gk.column_range_gpu(Xd)
    if bad.any():
        raise ValueError(f"Input X contains NaN or infinity ({int(bad.sum())} value(s), in "
                         f"column(s) {np.flatnonzero(bad).tolist()[:8]})")
    if sample_weight is not None and not gk.is_device_array(sample_weight):
        sample_weight = check_sample_weight(sample_weight, N)
    wd = gk.weights_to_device(sample_weight, N)
    if gk.is_device_array(sample_weight):
        wlo, whi, wbad = gk.column_range_gpu(wd.reshape(N, 1))
        if wbad[0]:
            raise ValueError("sample_weight contains NaN or infinity")
        if wlo[0] < 0:
            raise ValueError("sample_weight must be non-negative")
        if not whi[0] > 0:
            raise ValueError("sample_weight sums to zero: at least one row needs a positive "
                             "weight")
    return DeviceData(Xd, wd, (lo, hi))
