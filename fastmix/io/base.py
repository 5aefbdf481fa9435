"""The ``Source`` interface every reader implements, in-memory arrays (``ArraySource``) and
features paired with sample weights read in step (``WeightedSource``).  ``BLOCK_BYTES`` is the
target size of a block; the readers of this package look it up here at each use, so setting
``fastmix.io.base.BLOCK_BYTES`` changes them all."""
import numpy as np


#: Target bytes per block read from disk (a whole number of kernel chunks).
BLOCK_BYTES = 32 * 2**20
#: Target bytes per block copied out of a memory-mapped array (``ArraySource.copied``).  The
#: mapping's pages already count in the resident set once read, so every byte of a block copy
#: (three alive at once, see ``stream._Pool``) is on top of the data: 8 MiB blocks keep that
#: at 24 MiB instead of 96 MiB.  The kernels' time per row does not change at this size (a
#: block of 8 MiB is 65536 rows of 16 float64 features: many chunks per block).
MEMMAP_BLOCK_BYTES = 8 * 2**20


def _compute_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise ValueError(f"data must be numeric, got dtype {dtype}")
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


def _missing_extra(module, exc):
    return ImportError(f"reading this format needs {module}: pip install 'fastmix[io]' "
                       f"(or pip install {module})")


class Source:
    """Base class.  Subclasses set ``name``, ``n_features``, ``dtype`` (compute dtype) and
    ``n_rows`` (None when unknown), and implement either ``read_rows(start, stop, out)``
    (random access; then ``random_access = True``) or ``pieces()`` (sequential: yields 2-D
    arrays, or ``(X, w)`` pairs when the source carries weights, of any row counts)."""

    name = "data"
    n_rows = None
    n_features = None
    dtype = np.dtype(np.float64)
    random_access = False
    has_weights = False
    #: Parquet/CSV: read a null feature value as NaN (a missing value for
    #: ``GaussianMixture(missing="marginalize")``) instead of raising.
    nulls_as_nan = False

    def read_rows(self, start, stop, out):  # pragma: no cover - interface
        raise NotImplementedError

    def pieces(self):
        """Sequential reading: the default walks ``read_rows`` in BLOCK_BYTES steps."""
        step = max(1, BLOCK_BYTES // (self.dtype.itemsize * self.n_features))
        for start in range(0, self.n_rows, step):
            stop = min(self.n_rows, start + step)
            out = np.empty((stop - start, self.n_features), self.dtype)
            self.read_rows(start, stop, out)
            yield out

    def take(self, rows):
        """Rows ``rows`` (sorted, unique int64) as a new (len(rows), D) array."""
        out = np.empty((len(rows), self.n_features), self.dtype)
        if self.random_access:
            block = max(1, BLOCK_BYTES // (self.dtype.itemsize * self.n_features))
            buf = None
            for start in range(0, self.n_rows, block):
                lo, hi = np.searchsorted(rows, [start, start + block])
                if lo == hi:
                    continue
                stop = min(self.n_rows, start + block)
                if buf is None:
                    buf = np.empty((block, self.n_features), self.dtype)
                self.read_rows(start, stop, buf[:stop - start])
                out[lo:hi] = buf[rows[lo:hi] - start]
            return out
        raise NotImplementedError

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        rows = "?" if self.n_rows is None else self.n_rows
        return f"{type(self).__name__}({self.name!r}, rows={rows}, features={self.n_features}, " \
               f"dtype={self.dtype})"


class ArraySource(Source):
    """An in-memory array (N, D) or ``np.memmap``.  A plain C-contiguous array of the compute
    dtype is read as views (no copy); a memmap, or another dtype/layout, is copied block by
    block (so a memmap's pages are touched in the prefetch thread)."""

    random_access = True

    def __init__(self, X, name="array"):
        if X.ndim != 2:
            raise ValueError(f"Expected 2D array, got {X.ndim}D array instead (shape {X.shape})")
        self.X = X
        self.name = name
        self.n_rows, self.n_features = X.shape
        self.dtype = _compute_dtype(X.dtype)
        self.views = (not isinstance(X, np.memmap) and X.dtype == self.dtype
                      and X.flags.c_contiguous)

    @property
    def block_bytes(self):
        """Target bytes per block of a Stream over this source: for a memory map (its blocks
        are copies on top of its resident pages) MEMMAP_BLOCK_BYTES, or BLOCK_BYTES when that
        is smaller; else BLOCK_BYTES."""
        if isinstance(self.X, np.memmap):
            return min(MEMMAP_BLOCK_BYTES, BLOCK_BYTES)
        return BLOCK_BYTES

    def view_rows(self, start, stop):
        return self.X[start:stop]

    def read_rows(self, start, stop, out):
        out[...] = self.X[start:stop]

    def take(self, rows):
        return np.ascontiguousarray(self.X[rows], dtype=self.dtype)


class WeightedSource(Source):
    """Features from ``source`` and sample weights read in step from ``weights`` (a 1-D array
    or a random-access source of shape (N,) / (N, 1))."""

    def __init__(self, source, weights):
        self.inner = source
        self.name = source.name
        self.n_features = source.n_features
        self.dtype = source.dtype
        self.n_rows = source.n_rows
        self.weights = weights
        self.has_weights = True
        self.random_access = source.random_access

    def read_rows(self, start, stop, out):
        self.inner.read_rows(start, stop, out)

    def pieces(self):
        return self.inner.pieces()

    def take(self, rows):
        return self.inner.take(rows)

    def close(self):
        self.inner.close()
