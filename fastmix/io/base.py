"""The ``Source`` interface every reader implements, in-memory arrays (``ArraySource``) and
features paired with sample weights read in step (``WeightedSource``).  ``BLOCK_BYTES`` is the
target size of a block; the readers of this package look it up here at each use, so setting
``fastmix.io.base.BLOCK_BYTES`` changes them all."""
from collections.abc import Iterator
from typing import Any

import numpy as np


#: Target bytes per block read from disk (a whole number of kernel chunks).
BLOCK_BYTES = 32 * 2**20
#: Target bytes per block copied out of a memory-mapped array (``ArraySource.copied``).  The
#: mapping's pages already count in the resident set once read, so every byte of a block copy
#: (three alive at once, see ``stream._Pool``) is on top of the data: 8 MiB blocks keep that
#: at 24 MiB instead of 96 MiB.  The kernels' time per row does not change at this size (a
#: block of 8 MiB is 65536 rows of 16 float64 features: many chunks per block).
MEMMAP_BLOCK_BYTES = 8 * 2**20


def _compute_dtype(dtype: Any) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise ValueError(f"data must be numeric, got dtype {dtype}")
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


def _missing_extra(module: str, exc: BaseException) -> ImportError:
    return ImportError(f"reading this format needs {module}: pip install 'fastmix[io]' "
                       f"(or pip install {module})")


class Source:
    """Base class of the chunked data sources: (N, D) rows read in blocks.

    A subclass sets the attributes below and implements either ``read_rows`` (random access;
    then it sets ``random_access = True``) or ``pieces`` (sequential reading).  Estimators never
    call these methods on whole data sets at once: ``fastmix.io.Stream`` reads a source in
    blocks of whole kernel chunks, with prefetch.  A source is a context manager
    (``with NpySource(path) as src: ...`` closes its file).

    Attributes
    ----------
    name : str
        What error messages call the data (a file name, ``"array"`` ...).
    n_rows : int or None
        Number of rows N; None while unknown (delimited text, iterables).
    n_features : int
        Number of features D.
    dtype : numpy.dtype
        The dtype fastmix computes in: float32 for float32 data, float64 for every other real
        type.
    random_access : bool
        True when ``read_rows`` can read any row range.
    has_weights : bool
        True when ``pieces`` yields ``(X, w)`` pairs (features and sample weights).
    nulls_as_nan : bool
        Parquet/CSV only: read a null feature value as NaN, a missing value for
        ``GaussianMixture(missing="marginalize")``, instead of raising.

    See Also
    --------
    as_source : The source for an array, a path, a list of chunks or a callable.

    Examples
    --------
    A random-access source of two computed columns, :math:`(i, i^2)`:

    >>> import numpy as np
    >>> from fastmix.io import Source
    >>> class Squares(Source):
    ...     name, n_rows, n_features, random_access = "squares", 5, 2, True
    ...
    ...     def read_rows(self, start: int, stop: int, out: np.ndarray) -> None:
    ...         i = np.arange(start, stop, dtype=float)
    ...         out[:, 0], out[:, 1] = i, i * i
    >>> Squares().take(np.array([1, 3]))
    array([[1., 1.],
           [3., 9.]])
    >>> [block.shape for block in Squares().pieces()]
    [(5, 2)]
    """

    name: str = "data"
    n_rows: int | None = None
    n_features: Any = None
    dtype: np.dtype = np.dtype(np.float64)
    random_access = False
    has_weights = False
    nulls_as_nan = False

    def read_rows(self, start: int, stop: int,
                  out: np.ndarray) -> None:  # pragma: no cover - interface
        """Read rows ``start`` to ``stop - 1`` into ``out`` (random-access sources only).

        Parameters
        ----------
        start : int
            First row to read, ``0 <= start < n_rows``.
        stop : int
            One past the last row to read, ``start < stop <= n_rows``.
        out : numpy.ndarray of shape (stop - start, n_features), dtype ``self.dtype``
            C-contiguous buffer the rows are written into.

        Raises
        ------
        NotImplementedError
            For a sequential source (``random_access`` is False).
        ValueError
            When the rows cannot be read (truncated or damaged file).

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix.io import ArraySource
        >>> out = np.empty((2, 2))
        >>> ArraySource(np.arange(8.0).reshape(4, 2)).read_rows(1, 3, out)
        >>> out
        array([[2., 3.],
               [4., 5.]])
        """
        raise NotImplementedError

    def pieces(self) -> Iterator[Any]:
        """Read the whole source once, front to back, in blocks.

        The default reads ``read_rows`` blocks of about ``BLOCK_BYTES`` bytes; sequential
        sources override it.  Blocks may have any row counts (``fastmix.io.Stream`` regroups
        them into whole kernel chunks).

        Yields
        ------
        numpy.ndarray of shape (n, n_features), or tuple of (numpy.ndarray, numpy.ndarray)
            The next block of rows, in the dtype ``self.dtype``; with ``has_weights``, the pair
            ``(X, w)`` of the block's features and its (n,) sample weights.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix.io import ArraySource
        >>> [b.shape for b in ArraySource(np.zeros((10, 3))).pieces()]
        [(10, 3)]
        """
        assert self.n_rows is not None, "a random-access source knows its row count"
        step = max(1, BLOCK_BYTES // (self.dtype.itemsize * self.n_features))
        for start in range(0, self.n_rows, step):
            stop = min(self.n_rows, start + step)
            out = np.empty((stop - start, self.n_features), self.dtype)
            self.read_rows(start, stop, out)
            yield out

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Read the rows at the given positions (used to draw initialisation subsamples).

        Parameters
        ----------
        rows : numpy.ndarray of shape (n,), dtype int64
            Row positions, sorted and unique.

        Returns
        -------
        numpy.ndarray of shape (n, n_features), dtype ``self.dtype``
            A new array holding the rows in the order of ``rows``.

        Raises
        ------
        NotImplementedError
            For a sequential source that does not implement it.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix.io import ArraySource
        >>> ArraySource(np.arange(8.0).reshape(4, 2)).take(np.array([0, 3]))
        array([[0., 1.],
               [6., 7.]])
        """
        out = np.empty((len(rows), self.n_features), self.dtype)
        if self.random_access:
            assert self.n_rows is not None, "a random-access source knows its row count"
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

    def close(self) -> None:
        """Release the files or handles the source holds; reading again reopens them.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix.io import ArraySource
        >>> ArraySource(np.zeros((2, 2))).close()
        """

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        rows = "?" if self.n_rows is None else self.n_rows
        return f"{type(self).__name__}({self.name!r}, rows={rows}, features={self.n_features}, " \
               f"dtype={self.dtype})"


class ArraySource(Source):
    """An in-memory (N, D) array or ``numpy.memmap`` as a source.

    A C-contiguous array already in the compute dtype is read as views (no copy); a memmap,
    or an array of another dtype or layout, is copied block by block, so that a memmap's pages
    are touched in the prefetch thread.

    Parameters
    ----------
    X : numpy.ndarray or numpy.memmap of shape (n_samples, n_features)
        The data, of a real dtype.
    name : str, default="array"
        What error messages call the data.

    Raises
    ------
    ValueError
        When ``X`` is not 2-D or its dtype is not numeric.

    See Also
    --------
    as_source : Chooses this class for an ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix.io import ArraySource
    >>> ArraySource(np.zeros((100, 3), dtype=np.float32))
    ArraySource('array', rows=100, features=3, dtype=float32)
    """

    random_access = True

    def __init__(self, X: np.ndarray, name: str = "array") -> None:
        if X.ndim != 2:
            raise ValueError(f"Expected 2D array, got {X.ndim}D array instead (shape {X.shape})")
        self.X = X
        self.name = name
        self.n_rows, self.n_features = X.shape
        self.dtype = _compute_dtype(X.dtype)
        self.views = (not isinstance(X, np.memmap) and X.dtype == self.dtype
                      and X.flags.c_contiguous)

    @property
    def block_bytes(self) -> int:
        """Target bytes per block of a Stream over this source.

        For a memory map (its blocks are copies on top of its resident pages)
        ``MEMMAP_BLOCK_BYTES``, or ``BLOCK_BYTES`` when that is smaller; else ``BLOCK_BYTES``.

        Returns
        -------
        int
            Bytes per block.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix.io import ArraySource
        >>> from fastmix.io.base import BLOCK_BYTES
        >>> ArraySource(np.zeros((4, 2))).block_bytes == BLOCK_BYTES
        True
        """
        if isinstance(self.X, np.memmap):
            return min(MEMMAP_BLOCK_BYTES, BLOCK_BYTES)
        return BLOCK_BYTES

    def view_rows(self, start: int, stop: int) -> np.ndarray:
        """Return rows ``start`` to ``stop - 1`` of the array itself (a view when ``views``).

        Parameters
        ----------
        start, stop : int
            The row range, ``0 <= start < stop <= n_rows``.

        Returns
        -------
        numpy.ndarray of shape (stop - start, n_features)
            ``X[start:stop]``, not a copy.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix.io import ArraySource
        >>> ArraySource(np.arange(6.0).reshape(3, 2)).view_rows(1, 2)
        array([[2., 3.]])
        """
        return self.X[start:stop]

    def read_rows(self, start: int, stop: int, out: np.ndarray) -> None:
        # numpydoc ignore=GL08
        # (the docstring of Source.read_rows applies and is shown)
        out[...] = self.X[start:stop]

    def take(self, rows: np.ndarray) -> np.ndarray:
        # numpydoc ignore=GL08
        # (the docstring of Source.take applies and is shown)
        return np.ascontiguousarray(self.X[rows], dtype=self.dtype)


class WeightedSource(Source):
    """Features from ``source`` and sample weights read in step from ``weights`` (a 1-D array
    or a random-access source of shape (N,) / (N, 1))."""

    def __init__(self, source: Source, weights: Any) -> None:
        self.inner = source
        self.name = source.name
        self.n_features = source.n_features
        self.dtype = source.dtype
        self.n_rows = source.n_rows
        self.weights = weights
        self.has_weights = True
        self.random_access = source.random_access

    def read_rows(self, start: int, stop: int, out: np.ndarray) -> None:
        self.inner.read_rows(start, stop, out)

    def pieces(self) -> Iterator[Any]:
        return self.inner.pieces()

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self.inner.take(rows)

    def close(self) -> None:
        self.inner.close()
