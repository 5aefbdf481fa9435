"""Choosing a source: by file extension (``open_path``) or by the type of what was passed
(``as_source``)."""
import os
from pathlib import Path

import numpy as np

from .base import ArraySource, Source
from .columnar import CSVSource, HDF5Source, ParquetSource, ZarrSource
from .iterable import IterableSource, _chunk_iterable
from .npy import NpySource


def split_key(path):
    """``"file.h5:/group/data"`` -> ("file.h5", "/group/data"); a plain path -> (path, None)."""
    s = str(path)
    if os.path.exists(s) or ":" not in s:
        return s, None
    head, _, tail = s.rpartition(":")
    return head, (tail or None)


def open_path(path, *, columns=None, weight_column=None, vector=False, header="infer",
              delimiter=None):
    """A source for a file path, chosen by extension.  ``vector`` lets a 1-D ``.npy`` read as
    one column (sample weights); ``header`` and ``delimiter`` are for delimited text (see
    ``CSVSource``).

    Rules: ``.npy``; ``.h5``/``.hdf5``/``.hdf``/``.he5`` with ``:/dataset``; ``.zarr`` or any
    other directory (a Zarr store); ``.parquet``/``.pq``; delimited text ``.csv``, ``.tsv`` and
    ``.txt`` (as written by ``np.savetxt`` or a spreadsheet).  ``.npz`` archives (several arrays)
    and other extensions are refused with a ValueError.
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


def _no_columns(what, columns, weight_column):
    """Column names only mean something for Parquet/CSV: never ignore them silently."""
    if weight_column is not None:
        raise ValueError(f"sample_weight={weight_column!r} names a weight column, but {what} has "
                         "no named columns (weight columns are for Parquet/CSV files); pass the "
                         "weights as an array or a .npy path")
    if columns is not None:
        raise ValueError(f"columns={columns!r}: {what} has no named columns (columns are for "
                         "Parquet/CSV files)")


def as_source(data, *, columns=None, weight_column=None):
    """A Source for an array, memmap, path, Source, re-iterable of chunks or callable."""
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


def is_out_of_core(data):
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
