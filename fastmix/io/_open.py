"""Choosing a source: by file extension (``open_path``) or by the type of what was passed
(``as_source``)."""
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .base import ArraySource, Source
from .columnar import CSVSource, HDF5Source, ParquetSource, ZarrSource
from .iterable import IterableSource, _chunk_iterable
from .npy import NpySource


def split_key(path: str | os.PathLike) -> tuple[str, str | None]:
    """``"file.h5:/group/data"`` -> ("file.h5", "/group/data"); a plain path -> (path, None)."""
    s = str(path)
    if os.path.exists(s) or ":" not in s:
        return s, None
    head, _, tail = s.rpartition(":")
    return head, (tail or None)


def open_path(path: str | os.PathLike, *, columns: Sequence[str] | None = None,
              weight_column: str | None = None, vector: bool = False,
              header: Literal["infer", True, False] = "infer",
              delimiter: str | None = None) -> Source:
    """Open the source for a file path, chosen by its extension.

    Rules: ``.npy`` (``NpySource``); ``.h5``/``.hdf5``/``.hdf``/``.he5`` with ``:/dataset``
    (``HDF5Source``); ``.zarr`` or any other directory (``ZarrSource``); ``.parquet``/``.pq``
    (``ParquetSource``); delimited text ``.csv``, ``.tsv`` and ``.txt``, as written by
    ``np.savetxt`` or a spreadsheet (``CSVSource``).

    Parameters
    ----------
    path : str or os.PathLike
        The file; ``"file.h5:/group/dataset"`` or ``"store.zarr:/member"`` names an array
        inside a container.
    columns : sequence of str, optional
        Parquet/CSV: the feature columns (default: every column but ``weight_column``).
    weight_column : str, optional
        Parquet/CSV: a column of sample weights.
    vector : bool, default=False
        ``.npy``: read a 1-D array as one column (sample weights).
    header : {"infer", True, False}, default="infer"
        Delimited text: whether the first line names the columns (see ``CSVSource``).
    delimiter : str, optional
        Delimited text: the one-character field separator (see ``CSVSource``).

    Returns
    -------
    Source
        The open source; close it (or use it in a ``with`` block) when done.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        For ``.npz`` archives (several arrays) and unknown extensions, an HDF5 path without
        ``:/dataset``, a ``.npy`` path with one, ``columns``/``weight_column`` for a format
        without named columns, ``header``/``delimiter`` for a format other than delimited
        text; and the errors of the source classes.

    See Also
    --------
    as_source : The source for any input an estimator accepts.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix.io import open_path
    >>> np.save("data.npy", np.zeros((5, 2)))
    >>> open_path("data.npy")
    NpySource('data.npy', rows=5, features=2, dtype=float64)
    >>> open_path("data.npz")
    Traceback (most recent call last):
    ...
    ValueError: data.npz: an .npz archive holds several arrays; save the data with np.save (.npy) or pass the array itself
    """
    file, key = split_key(path)
    suffix = Path(file).suffix.lower()
    if (header != "infer" or delimiter is not None) and suffix not in (".csv", ".tsv", ".txt"):
        raise ValueError(f"{path}: header and delimiter options are for delimited text files "
                         "(.csv, .tsv, .txt)")
    if suffix == ".npz":
        raise ValueError(f"{path}: an .npz archive holds several arrays; save the data with "
                         "np.save (.npy) or pass the array itself")
    if suffix == ".npy":
        if key:
            raise ValueError(f"{path}: a .npy file holds one array; no ':{key}' part")
        _no_columns(path, columns, weight_column)
        return NpySource(file, vector=vector)
    if suffix in (".h5", ".hdf5", ".hdf", ".he5"):
        if key is None:
            raise ValueError(f"{path}: name the dataset, e.g. {file}:/group/dataset")
        _no_columns(path, columns, weight_column)
        return HDF5Source(file, key)
    if suffix == ".zarr" or (os.path.isdir(file) and suffix != ".parquet"):
        _no_columns(path, columns, weight_column)
        return ZarrSource(file, key)
    if suffix in (".parquet", ".pq"):
        return ParquetSource(file, columns, weight_column)
    if suffix in (".csv", ".txt", ".tsv"):
        return CSVSource(file, columns, weight_column, header=header, delimiter=delimiter)
    if not os.path.exists(file):
        raise FileNotFoundError(f"No such file: {file}")
    raise ValueError(f"{path}: unknown data format {suffix or '(no extension)'!r}; fastmix reads "
                     ".npy, .h5/.hdf5, .zarr, .parquet and delimited text (.csv, .tsv, .txt)")


def _no_columns(what: object, columns: Sequence[str] | None,
                weight_column: str | None) -> None:
    """Column names only mean something for Parquet/CSV: never ignore them silently."""
    if weight_column is not None:
        raise ValueError(f"sample_weight={weight_column!r} names a weight column, but {what} has "
                         "no named columns (weight columns are for Parquet/CSV files); pass the "
                         "weights as an array or a .npy path")
    if columns is not None:
        raise ValueError(f"columns={columns!r}: {what} has no named columns (columns are for "
                         "Parquet/CSV files)")


def as_source(data: Any, *, columns: Sequence[str] | None = None,
              weight_column: str | None = None) -> Source | None:
    """Turn what a user passes to an estimator into a source, or return None for an array-like.

    Parameters
    ----------
    data : object
        An ndarray or ``numpy.memmap`` (``ArraySource``), a path (see ``open_path``), a
        ``Source`` (returned as is), a list of 2-D arrays, a re-iterable of chunks or a
        callable returning an iterator of chunks (``IterableSource``).
    columns : sequence of str, optional
        Parquet/CSV paths: the feature columns.
    weight_column : str, optional
        Parquet/CSV: a column of sample weights.

    Returns
    -------
    Source or None
        The source; None for other array-likes (nested lists, data frames, sparse matrices),
        which the caller validates as a whole.

    Raises
    ------
    ValueError
        When ``columns`` or ``weight_column`` is given for data without named columns, or
        ``weight_column`` for a source opened without it; and the errors of ``open_path``.

    See Also
    --------
    open_path : The source for a file path.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix.io import as_source
    >>> as_source(np.zeros((4, 2)))
    ArraySource('array', rows=4, features=2, dtype=float64)
    >>> as_source([np.zeros((3, 2)), np.ones((2, 2))]).n_rows
    5
    >>> as_source([[1.0, 2.0]]) is None
    True
    """
    if isinstance(data, (str, os.PathLike)):
        return open_path(data, columns=columns, weight_column=weight_column)
    if isinstance(data, Source) and weight_column is not None:
        if getattr(data, "weight_column", None) == weight_column:
            weight_column = None  # the source reads this weight column already
        elif hasattr(data, "columns"):
            raise ValueError(f"sample_weight={weight_column!r} names a weight column, but "
                             f"{data.name} was opened without it: pass weight_column="
                             f"{weight_column!r} when opening it")
    _no_columns(f"data of type {type(data).__name__}", columns, weight_column)
    if isinstance(data, Source):
        return data
    if isinstance(data, np.ndarray):
        return ArraySource(data)
    if isinstance(data, (list, tuple)):
        if data and isinstance(data[0], np.ndarray) and data[0].ndim == 2:
            return IterableSource(data, name="list of chunks")
        return None  # nested lists: array-like
    if callable(data) or _chunk_iterable(data):
        return IterableSource(data)
    return None  # not a source: the caller treats it as array-like


def is_out_of_core(data: Any) -> bool:
    """True for inputs read chunk by chunk (paths, memmaps, sources, chunk lists, iterators,
    callables); False for in-memory array-likes, which are validated as a whole."""
    if isinstance(data, np.memmap):
        return True
    if isinstance(data, np.ndarray):
        return False
    if isinstance(data, (Source, str, os.PathLike)) or callable(data):
        return True
    if isinstance(data, (list, tuple)):
        return bool(data) and isinstance(data[0], np.ndarray) and data[0].ndim == 2
    return _chunk_iterable(data)
