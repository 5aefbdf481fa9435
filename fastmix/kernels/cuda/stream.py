"""Host -> device streaming of the E-step: data that do not live on the device (files,
memory maps, iterators, arrays larger than the device) are sent in fixed chunks through pinned
staging buffers on two CUDA streams, so that the copy of one chunk overlaps the kernels of the
other (``StreamedEStep``; the driver is ``fastmix.gpu.StreamedData``).

Imports NumPy only; numba-cuda is reached through ``device.require_gpu`` when a stream opens.
"""
import numpy as np

from . import device
from .device import DEFAULT_BLOCK_ROWS, DEFAULT_THREADS, require_gpu

#: Bytes of one staged host chunk when streaming host -> device (two are in flight).  A constant
#: (not the device's memory) so that the chunking, and hence every rounding, is reproducible.
STREAM_CHUNK_BYTES = 64 * 2**20
#: Host threads that copy a block into the pinned staging buffer (a memcpy of up to
#: STREAM_CHUNK_BYTES; one core's memcpy is slower than a PCIe 4/5 link).
STAGING_THREADS = 4


def stream_chunk_rows(D, dtype, block_rows=DEFAULT_BLOCK_ROWS):
    """Rows per streamed chunk: ~STREAM_CHUNK_BYTES, a whole number of GPU blocks."""
    rows = STREAM_CHUNK_BYTES // (int(D) * np.dtype(dtype).itemsize)
    return int(max(1, rows // block_rows) * block_rows)


def _copy_rows(dst, src, pool):
    """dst[:] = src in row slices on a thread pool (numpy's copy releases the GIL)."""
    n = src.shape[0]
    if pool is None or n < 2 * STAGING_THREADS or dst.nbytes < 2**22:
        np.copyto(dst, src, casting="same_kind")
        return
    step = -(-n // STAGING_THREADS)
    futures = [pool.submit(np.copyto, dst[i:i + step], src[i:i + step], casting="same_kind")
               for i in range(0, n, step)]
    for f in futures:
        f.result()


class StreamedEStep:
    """E-step statistics of host data too large for (or not resident on) the device.

    Host blocks of at most ``capacity`` rows are copied into one of two page-locked (pinned)
    staging buffers, sent to one of two device buffers by an asynchronous copy on one of two
    CUDA streams, and reduced there by ``EStepPlan.launch`` into that stream's own totals: the
    copy of block i + 1 overlaps the kernels of block i, and the host reads and stages block
    i + 2 meanwhile.  A buffer is reused only after its stream has finished with it.  The two
    totals are added on the host at the end of a pass, so a pass's result depends only on the
    blocks' row counts (fixed by ``capacity``), not on timing: deterministic.

    Buffers (2 x pinned + 2 x device, ``capacity`` rows each) are allocated once and reused
    by every pass; ``close`` frees them (they are also freed with the object).
    """

    def __init__(self, capacity, D, dtype, weighted, block_rows=DEFAULT_BLOCK_ROWS,
                 threads=DEFAULT_THREADS, formulation="auto"):
        cuda = require_gpu()
        from . import gemm as gpu_gemm
        if formulation not in gpu_gemm.FORMULATIONS:
            raise ValueError(f"formulation must be one of {gpu_gemm.FORMULATIONS}, got "
                             f"{formulation!r}")
        self.formulation = formulation
        self.capacity, self.D = int(capacity), int(D)
        self.dtype = np.dtype(dtype)
        self.block_rows, self.threads = int(block_rows), int(threads)
        self.weighted = bool(weighted)
        shape = (self.capacity, self.D)
        what = f"two streamed chunks ({self.capacity} x {self.D} {self.dtype.name})"
        self.pinned = [cuda.pinned_array(shape, dtype=self.dtype) for _ in range(2)]
        self.dev = [device._alloc(cuda, shape, self.dtype, what) for _ in range(2)]
        nw = self.capacity if self.weighted else 0
        self.pinned_w = [cuda.pinned_array((nw,), dtype=np.float64) for _ in range(2)]
        self.dev_w = [device._alloc(cuda, (nw,), np.float64, "streamed weights") for _ in range(2)]
        self.streams = [cuda.stream() for _ in range(2)]
        self._pool = None
        if STAGING_THREADS > 1:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(STAGING_THREADS, thread_name_prefix="fastmix-stage")
        self.bytes_sent = 0
        self.scratch = device.DeviceScratch()  # partials and totals, reused by every pass

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.pinned = self.dev = self.pinned_w = self.dev_w = self.streams = None
        self.scratch.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _stage(self, j, X, w):
        """Copy a host block into buffer j and start its transfer on stream j."""
        cuda = require_gpu()
        n = X.shape[0]
        if n > self.capacity:
            raise ValueError(f"a block of {n} rows exceeds the staging capacity "
                             f"{self.capacity}")
        if X.dtype != self.dtype:
            raise ValueError(f"streamed rows are {X.dtype}, expected {self.dtype}")
        stream = self.streams[j]
        _copy_rows(self.pinned[j][:n], X, self._pool)
        Xd = self.dev[j][:n]
        cuda.to_device(self.pinned[j][:n], stream=stream, to=Xd)
        if self.weighted:
            if w is None:
                raise ValueError("a block came without the weights the stream was opened with")
            self.pinned_w[j][:n] = w
            wd = self.dev_w[j][:n]
            cuda.to_device(self.pinned_w[j][:n], stream=stream, to=wd)
        else:
            wd = self.dev_w[j]  # empty: unit weights
        self.bytes_sent += X.nbytes + (n * 8 if self.weighted else 0)
        return Xd, wd

    def estep(self, blocks, kp):
        """(nk, s1, s2, ll, ws) of the rows of ``blocks`` (an iterable of (X, w or None) host
        arrays of at most ``capacity`` rows) under ``kp``."""
        from .estep import EStepPlan
        plan = EStepPlan(kp, self.dtype, self.block_rows, self.threads, self.formulation,
                         self.scratch)
        part = [plan.partials(self.capacity, slot) for slot in range(2)]
        out = [plan.totals(slot) for slot in range(2)]
        i = -1
        for i, (X, w) in enumerate(blocks):
            j = i % 2
            self.streams[j].synchronize()  # buffer j (and part[j]) free again
            Xd, wd = self._stage(j, X, w)
            plan.launch(Xd, wd, part[j], out[j], stream=self.streams[j])
        for st in self.streams:
            st.synchronize()
        tot = out[0].copy_to_host()
        if i >= 1:
            tot = tot + out[1].copy_to_host()
        return plan.unpack(tot)
