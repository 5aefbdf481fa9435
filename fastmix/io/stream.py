"""``Stream``: a source read in blocks of whole kernel chunks, prefetched on a background thread
(see ``fastmix.io``), and the checks of sample weights read in step."""
import queue
import threading

import numpy as np

from .._validation import first_nonfinite_row
from . import base as _base
from ._open import as_source
from .base import ArraySource, Source


class _Pool:
    """Rotating block buffers: with a prefetch queue of one, at most three blocks are alive at
    once (consumer's, queued, being read)."""

    def __init__(self, rows, D, dtype, n=3):
        self.bufs = [None] * n
        self.rows, self.D, self.dtype = rows, D, dtype
        self.i = 0

    def get(self, rows):
        j = self.i % len(self.bufs)
        self.i += 1
        if self.bufs[j] is None:
            self.bufs[j] = np.empty((self.rows, self.D), self.dtype)
        return self.bufs[j][:rows]


class Stream:
    """A source read in blocks of whole kernel chunks (see ``fastmix.io``).

    Parameters
    ----------
    source : Source
    chunk_rows : int
        The kernels' chunk size; block boundaries fall on multiples of it.
    weights : None, (N,) array or 1-D random-access Source
        Sample weights read in step with the rows (a source with a weight column carries its
        own).
    block_rows : int, optional
        Rows per block (rounded up to a multiple of chunk_rows); default ~BLOCK_BYTES
        (``source.block_bytes`` where the source has one: a memory map's MEMMAP_BLOCK_BYTES).
    prefetch : bool
        Read the next block in a background thread.
    """

    def __init__(self, source, chunk_rows, weights=None, block_rows=None, prefetch=True):
        self.source = source
        self.chunk_rows = int(chunk_rows)
        D = source.n_features
        if block_rows is None:
            block_bytes = getattr(source, "block_bytes", None) or _base.BLOCK_BYTES
            block_rows = block_bytes // (source.dtype.itemsize * D)
        self.block_rows = max(1, -(-int(block_rows) // self.chunk_rows)) * self.chunk_rows
        self.prefetch = prefetch
        self.weights = weights
        if weights is not None and source.has_weights:
            raise ValueError("sample weights given twice: the source has a weight column")
        if weights is not None and not isinstance(weights, np.ndarray):
            # checked up front: initialisation reads sampled rows' weights out of band
            _check_weight_source(weights, f"{source.name} ({weights.name})")
        self.n_rows = source.n_rows
        self.validated = False
        self.passes = 0
        self.owns_weights = False  # set by whoever opened a weight source for this stream
        #: NaN entries are missing values (checked: no inf, no row without an observed entry)
        self.allow_nan = False

    def rebatched(self, block_rows):
        """A Stream over the same source and weights with another block size (its validation
        state and row count carry over)."""
        s = Stream(self.source, self.chunk_rows, weights=self.weights, block_rows=block_rows,
                   prefetch=self.prefetch)
        s.n_rows, s.validated = self.n_rows, self.validated
        s.allow_nan = self.allow_nan
        return s

    @property
    def n_features(self):
        return self.source.n_features

    @property
    def dtype(self):
        return self.source.dtype

    @property
    def name(self):
        return self.source.name

    @property
    def weighted(self):
        return self.weights is not None or self.source.has_weights

    @property
    def in_memory(self):
        """The whole data as one array when the source is an in-memory array (else None)."""
        src = self.source
        if isinstance(src, ArraySource) and src.views:
            return src.X
        return None

    # ------------------------------------------------------------------ raw blocks -----------
    def _weights_for(self, start, stop):
        w = self.weights
        if w is None:
            return None
        if stop > _n_weights(w):
            raise ValueError(f"sample_weight has {_n_weights(w)} entries but {self.name} has "
                             f"more rows")
        if isinstance(w, np.ndarray):
            return w[start:stop]
        out = np.empty((stop - start, 1), np.float64)
        w.read_rows(start, stop, out)
        return out[:, 0]

    def _raw_blocks(self):
        """(start, X block, w block or None) in the compute dtype, exact block sizes."""
        src, B, D = self.source, self.block_rows, self.n_features
        if isinstance(src, ArraySource) and src.views:
            N = src.n_rows
            if N == 0:  # statistics of no rows are zeros, not an error, for the drivers
                yield 0, src.X, self._weights_for(0, 0)
            for start in range(0, N, B):
                stop = min(N, start + B)
                yield start, src.view_rows(start, stop), self._weights_for(start, stop)
            return
        pool = _Pool(B, D, self.dtype)
        if src.random_access:
            N = src.n_rows
            for start in range(0, N, B):
                stop = min(N, start + B)
                out = pool.get(stop - start)
                src.read_rows(start, stop, out)
                yield start, out, self._weights_for(start, stop)
            return
        # sequential: re-chunk pieces of any size into blocks of B rows
        fill = 0
        start = 0
        out = pool.get(B)
        wout = np.empty(B) if src.has_weights else None
        for k, piece in enumerate(src.pieces()):
            wp = None
            if isinstance(piece, tuple):
                piece, wp = piece
            piece = np.asarray(piece)
            if piece.ndim != 2 or piece.shape[1] != D:
                raise ValueError(f"{self.name}: chunk {k} has shape {piece.shape}, expected "
                                 f"(rows, {D})")
            if piece.dtype.kind not in "biuf":
                raise ValueError(f"{self.name}: chunk {k} has non-numeric dtype {piece.dtype}")
            if wp is not None:
                wp = np.asarray(wp, dtype=np.float64).reshape(-1)
                if wp.shape[0] != piece.shape[0]:
                    raise ValueError(f"{self.name}: chunk {k} has {piece.shape[0]} rows but "
                                     f"{wp.shape[0]} weights")
            i = 0
            n = piece.shape[0]
            while i < n:
                take = min(B - fill, n - i)
                out[fill:fill + take] = piece[i:i + take]
                if wout is not None:
                    wout[fill:fill + take] = wp[i:i + take]
                fill += take
                i += take
                if fill == B:
                    w = wout.copy() if wout is not None else self._weights_for(start, start + B)
                    yield start, out, w
                    start += B
                    fill = 0
                    out = pool.get(B)
        if fill:
            w = wout[:fill].copy() if wout is not None else self._weights_for(start, start + fill)
            yield start, out[:fill], w

    def _checked_blocks(self, validate):
        total = 0
        wsum = 0.0
        for start, X, w in self._raw_blocks():
            if validate and self.allow_nan:
                _check_missing_block(X, start, self.chunk_rows, self.name)
            elif validate:
                bad = first_nonfinite_row(X)
                if bad >= 0:
                    row = start + bad
                    raise ValueError(f"{self.name}: NaN or infinity in chunk "
                                     f"{row // self.chunk_rows} (rows of {self.chunk_rows}), "
                                     f"row {row}: {X[bad].tolist()[:8]}")
                if w is not None:
                    check_weights_block(w, start, self.name)
                    wsum += float(np.sum(w))
            total += X.shape[0]
            yield start, X, w
        if total == 0 and not isinstance(self.source, ArraySource):
            raise ValueError(f"{self.name}: the source is empty (0 rows)")
        if self.weights is not None and _n_weights(self.weights) != total:
            raise ValueError(f"sample_weight has {_n_weights(self.weights)} entries but "
                             f"{self.name} has {total} rows")
        if validate and total and self.source.has_weights and not wsum > 0:  # a weight column
            raise ValueError(f"sample weights of {self.name} sum to zero: at least one row needs "
                             "a positive weight")
        self.source.rows_read = total  # e.g. a CSV file's row count, once known
        if self.n_rows is None:
            self.n_rows = total
        elif self.n_rows != total:
            raise ValueError(f"{self.name} changed while it was read: {total} rows instead of "
                             f"{self.n_rows}")

    def blocks(self, validate=None):
        """Iterate (start_row, X_block, w_block or None); NaN/inf and weights are checked until
        one whole pass has been checked (``validate=None``), or as told."""
        if validate is None:
            validate = not self.validated
        gen = self._checked_blocks(validate)
        if self.prefetch and not (isinstance(self.source, ArraySource) and self.source.views):
            gen = _prefetched(gen)
        for item in gen:
            yield item
        if validate:
            self.validated = True
        self.passes += 1

    def take(self, rows):
        return self.source.take(np.asarray(rows, dtype=np.int64))

    def close(self):
        self.source.close()
        if self.owns_weights and isinstance(self.weights, Source):
            self.weights.close()


def _n_weights(w):
    return w.shape[0] if isinstance(w, np.ndarray) else w.n_rows


def _check_weight_source(ws, name):
    """One pass over a weight source (N floats): finite, non-negative, positive sum."""
    step = max(1, _base.BLOCK_BYTES // 8)
    buf = np.empty((min(step, ws.n_rows), 1), np.float64)
    total = 0.0
    for start in range(0, ws.n_rows, step):
        w = buf[:min(ws.n_rows, start + step) - start]
        ws.read_rows(start, start + w.shape[0], w)
        check_weights_block(w[:, 0], start, name)
        total += float(np.sum(w))
    if not total > 0:
        raise ValueError(f"sample weights of {name} sum to zero: at least one row needs a "
                         "positive weight")


def check_weights_block(w, start, name):
    """Finite, non-negative weights (a block starting at row ``start``), else ValueError."""
    if not np.all(np.isfinite(w)):
        raise ValueError(f"sample weights of {name} contain NaN or infinity (row "
                         f"{start + int(np.flatnonzero(~np.isfinite(w))[0])})")
    if np.any(w < 0):
        raise ValueError(f"sample weights of {name} must be non-negative (row "
                         f"{start + int(np.argmax(w < 0))})")


_DONE = object()


def _prefetched(gen):
    """Run ``gen`` one item ahead in a daemon thread; exceptions re-raise in the consumer."""
    q = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item):
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in gen:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # delivered to the consumer
            put(exc)

    t = threading.Thread(target=work, name="fastmix-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join()


def _check_missing_block(X, start, chunk_rows, name):
    """A block whose NaN entries are missing values: inf, or a row with every entry missing,
    is a ValueError naming the chunk and the row."""
    with np.errstate(invalid="ignore"):
        inf = np.isinf(X).any(axis=1)
    empty = np.isnan(X).all(axis=1)
    for bad, what in ((inf, "infinity (only NaN marks a missing value)"),
                      (empty, "every entry missing (NaN)")):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            row = start + i
            raise ValueError(f"{name}: {what} in chunk {row // chunk_rows} (rows of "
                             f"{chunk_rows}), row {row}: {X[i].tolist()[:8]}")


def as_stream(data, sample_weight=None, chunk_rows=4096, **kw):
    """A ``Stream`` for a Stream (returned as is), an in-memory (N, D) array (one block, read as
    a view) or anything ``as_source`` accepts."""
    if isinstance(data, Stream) or getattr(data, "is_dask", False):
        if sample_weight is not None:
            raise ValueError("pass sample weights when the Stream is made")
        return data
    src = as_source(data)
    if src is None:
        raise TypeError(f"cannot read data of type {type(data).__name__}")
    in_memory = isinstance(src, ArraySource) and src.views
    if in_memory and "block_rows" not in kw:
        kw["block_rows"] = max(1, src.n_rows)
    stream = Stream(src, chunk_rows, weights=sample_weight, **kw)
    # in-memory arrays reach the drivers validated as a whole (estimators call check_array and
    # check_sample_weight): no second NaN scan on the first pass
    stream.validated = in_memory
    return stream
