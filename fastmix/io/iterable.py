"""Re-iterable collections of 2-D chunks (or callables returning an iterator of chunks) as a
source."""
from collections.abc import Iterator
from typing import Any

import numpy as np

from .base import Source, _compute_dtype


class IterableSource(Source):
    """Chunks from a re-iterable of 2-D arrays, or from a callable returning a fresh iterator.

    The width and dtype come from the first chunk; later chunks must have the same width (a
    float32 first chunk makes the whole source float32).  Each pass over the data iterates
    ``obj`` again (or calls it again); a one-shot iterator can be read once only.

    Parameters
    ----------
    obj : iterable or callable
        A re-iterable (a list, or an object whose ``__iter__`` starts over) of 2-D arrays, or
        of ``(X, w)`` pairs of features and sample weights; or a callable returning an
        iterator of them.
    name : str, optional
        What error messages call the data; default: the type name of ``obj``.

    Raises
    ------
    ValueError
        When ``obj`` yields no chunk or its first chunk is not 2-D; while reading, a chunk of
        another width, or a second pass over a one-shot iterator.

    See Also
    --------
    as_source : Chooses this class for lists of chunks, iterables and callables.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix.io import IterableSource
    >>> def chunks():
    ...     rng = np.random.default_rng(0)
    ...     for _ in range(3):
    ...         yield rng.normal(size=(100, 2))
    >>> src = IterableSource(chunks)
    >>> src.n_features, src.n_rows
    (2, None)
    >>> sum(len(c) for c in src.pieces())
    300
    """

    def __init__(self, obj: Any, name: str | None = None) -> None:
        self.obj = obj
        self.name = name or type(obj).__name__
        self._one_shot = iter(obj) is obj if not callable(obj) else False
        self._used = False
        first = None
        it = self._iter()
        for piece in it:
            first = np.asarray(piece[0] if isinstance(piece, tuple) else piece)
            break
        if first is None:
            raise ValueError(f"{self.name}: the source is empty (no chunks)")
        if first.ndim != 2:
            raise ValueError(f"{self.name}: chunk 0 has shape {first.shape}; chunks must be "
                             "2-D (rows, features)")
        self.n_features = first.shape[1]
        self.dtype = _compute_dtype(first.dtype)
        self.has_weights = isinstance(piece, tuple)
        self._first = piece if self._one_shot else None
        if isinstance(obj, (list, tuple)):  # a list of chunks: the row count is known
            self.n_rows = sum(len(c[0] if isinstance(c, tuple) else c) for c in obj)

    def _iter(self) -> Iterator[Any]:
        return iter(self.obj()) if callable(self.obj) else iter(self.obj)

    def pieces(self) -> Iterator[Any]:
        # numpydoc ignore=GL08
        # (the docstring of Source.pieces applies and is shown)
        if self._one_shot:
            if self._used:
                raise ValueError(f"{self.name} is a one-shot iterator and was already read; "
                                 "pass a list, a re-iterable object or a callable returning a "
                                 "fresh iterator for multi-pass fitting")
            self._used = True
            yield self._first
            self._first = None
            yield from self.obj
        else:
            yield from self._iter()


def _chunk_iterable(data: Any) -> bool:
    """An iterable of chunks, not an array-like (arrays, sparse matrices, data frames have a
    ``shape`` or ``__array__``)."""
    return (hasattr(data, "__iter__") and not hasattr(data, "__array__")
            and not hasattr(data, "shape") and not isinstance(data, (str, bytes, dict)))
