"""Columnar and text formats (extra ``io``): HDF5 datasets, Zarr arrays, Parquet files and
delimited text (CSV/TSV/TXT), read block by block."""
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import base as _base
from .base import Source, _compute_dtype, _missing_extra


class HDF5Source(Source):
    """A 2-D HDF5 dataset read block by block (h5py; extra ``io``).

    Paths of the form ``"file.h5:/group/dataset"`` given to an estimator open this source.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file.
    key : str
        The dataset inside the file, e.g. ``"/group/dataset"``.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not HDF5, has no dataset ``key`` (the message lists the datasets), or
        the dataset is not 2-D and numeric.
    ImportError
        When h5py is not installed.

    See Also
    --------
    open_path : Chooses this class for ``.h5``, ``.hdf5``, ``.hdf`` and ``.he5`` files.

    Examples
    --------
    >>> import h5py
    >>> import numpy as np
    >>> from fastmix.io import HDF5Source
    >>> with h5py.File("data.h5", "w") as f:
    ...     f["group/x"] = np.zeros((10, 3))
    >>> with HDF5Source("data.h5", "/group/x") as src:
    ...     print(src)
    HDF5Source('data.h5:/group/x', rows=10, features=3, dtype=float64)
    """

    random_access = True

    def __init__(self, path: str | os.PathLike, key: str) -> None:
        try:
            import h5py
        except ImportError as exc:
            raise _missing_extra("h5py", exc) from None
        self.name = f"{path}:{key}"
        if not os.path.exists(path):
            raise FileNotFoundError(f"No such file: {path!s}")
        try:
            self._f = h5py.File(path, "r")
        except OSError as exc:
            raise ValueError(f"{path!s} is not a readable HDF5 file ({exc})") from None
        if key not in self._f:
            names = []
            self._f.visit(lambda n: names.append(n) if isinstance(self._f[n], h5py.Dataset)
                          else None)
            self._f.close()
            raise ValueError(f"{path!s} has no dataset {key!r}; datasets: {names[:10]}")
        ds = self._f[key]
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 2:
            self._f.close()
            raise ValueError(f"{self.name} is not a 2-D dataset")
        self.ds = ds
        self.n_rows, self.n_features = ds.shape
        self.dtype = _compute_dtype(ds.dtype)

    def read_rows(self, start: int, stop: int, out: np.ndarray) -> None:
        # numpydoc ignore=GL08
        # (the docstring of Source.read_rows applies and is shown)
        try:
            self.ds.read_direct(out, np.s_[start:stop], np.s_[0:stop - start])
        except (OSError, RuntimeError) as exc:
            raise ValueError(f"{self.name}: rows {start}..{stop - 1} could not be read "
                             f"({exc})") from None

    def close(self) -> None:
        # numpydoc ignore=GL08
        # (the docstring of Source.close applies and is shown)
        self._f.close()


class ZarrSource(Source):
    """A 2-D Zarr array read block by block (zarr; extra ``io``).

    Paths ``"store.zarr"`` (an array) or ``"store.zarr:/path/in/group"`` (a member of a group)
    given to an estimator open this source.

    Parameters
    ----------
    path : str or os.PathLike
        The Zarr store (a directory).
    key : str, optional
        The array inside a group store; None when the store is the array.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the store cannot be read, has no member ``key``, or it is not a 2-D numeric array.
    ImportError
        When zarr is not installed.

    See Also
    --------
    open_path : Chooses this class for ``.zarr`` paths and other directories.

    Examples
    --------
    >>> import numpy as np
    >>> import zarr
    >>> from fastmix.io import ZarrSource
    >>> zarr.save("data.zarr", np.zeros((10, 3), dtype=np.float32))
    >>> ZarrSource("data.zarr")
    ZarrSource('data.zarr', rows=10, features=3, dtype=float32)
    """

    random_access = True

    def __init__(self, path: str | os.PathLike, key: str | None = None) -> None:
        try:
            import zarr
        except ImportError as exc:
            raise _missing_extra("zarr", exc) from None
        self.name = str(path) if key is None else f"{path}:{key}"
        if not os.path.exists(path):
            raise FileNotFoundError(f"No such file or directory: {path!s}")
        try:
            z = zarr.open(str(path), mode="r")
        except Exception as exc:  # zarr raises several types for unreadable stores
            if os.path.isdir(path):
                where = "" if key is None else f"{self.name}: "
                raise ValueError(f"{where}{path!s} is a directory that is not a Zarr array or "
                                 f"group ({exc})") from None
            raise ValueError(f"{self.name} is not a readable Zarr array ({exc})") from None
        try:
            if key is not None:
                z = z[key.strip("/")]
        except Exception as exc:
            raise ValueError(f"{self.name} is not a readable Zarr array ({exc})") from None
        if not hasattr(z, "shape") or len(z.shape) != 2:
            raise ValueError(f"{self.name} is not a 2-D Zarr array")
        self.z = z
        self.n_rows, self.n_features = z.shape
        self.dtype = _compute_dtype(z.dtype)
        self._cached = -1
        self._cache: Any = None  # the last Zarr chunk read

    def read_rows(self, start: int, stop: int, out: np.ndarray) -> None:
        # numpydoc ignore=GL08
        # (the docstring of Source.read_rows applies and is shown)
        # Rows are copied out of whole decompressed Zarr chunks, the last one kept: blocks
        # that do not line up with the Zarr chunks (they are whole kernel chunks) still
        # decompress every Zarr chunk once per pass (reading z[start:stop] directly decompressed
        # a 1e6-row chunk four times per pass for 32 MB blocks: 2.8 s instead of 0.5 s per
        # iteration, measured).  Memory: one Zarr chunk.
        rows = self.z.chunks[0]
        pos = start
        while pos < stop:
            c = pos // rows
            if self._cached != c:
                self._cache = None  # free the previous chunk before reading the next
                try:
                    self._cache = np.asarray(self.z[c * rows:min(self.n_rows, (c + 1) * rows)])
                except Exception as exc:
                    raise ValueError(f"{self.name}: rows {c * rows}..{(c + 1) * rows - 1} "
                                     f"could not be read ({exc})") from None
                self._cached = c
            c0 = c * rows
            n = min(stop, c0 + self._cache.shape[0]) - pos
            out[pos - start:pos - start + n] = self._cache[pos - c0:pos - c0 + n]
            pos += n


def _arrow_numeric(schema: Any, columns: Sequence[str] | None, weight: str | None,
                   name: str) -> tuple[list[str], np.dtype]:
    """Feature column names: the requested ones, or every column but the weight one; all must
    be numeric."""
    import pyarrow as pa
    names = list(schema.names) if columns is None else list(columns)
    missing = [c for c in names + ([weight] if weight else []) if c not in schema.names]
    if missing:
        raise ValueError(f"{name} has no column(s) {missing}; columns: {schema.names}")
    if weight is not None:
        names = [c for c in names if c != weight]
    bad = [f"{c} ({schema.field(c).type})" for c in names + ([weight] if weight else [])
           if not (pa.types.is_integer(schema.field(c).type)
                   or pa.types.is_floating(schema.field(c).type)
                   or pa.types.is_boolean(schema.field(c).type))]
    if bad:
        raise ValueError(f"{name} has non-numeric column(s): {', '.join(bad)}; pass "
                         "columns=[...] with the numeric ones")
    if not names:
        raise ValueError(f"{name} has no feature columns")
    types = [schema.field(c).type for c in names]
    dtype = np.float32 if all(t == pa.float32() for t in types) else np.float64
    return names, np.dtype(dtype)


def _first_null(col: Any) -> int:
    return int(np.argmax(np.asarray(col.is_null().to_numpy(zero_copy_only=False))))


def _batch_to_numpy(batch: Any, names: Sequence[str], weight: str | None, dtype: np.dtype,
                    name: str, start: int = 0, nulls_as_nan: bool = False) -> Any:
    """A record batch as an (n, D) array (and (n,) weights); ``start`` is the batch's first row
    in the file, for the row number of a missing value.  With ``nulls_as_nan`` a null feature
    value becomes NaN (weights never may be null)."""
    n = batch.num_rows
    X = np.empty((n, len(names)), dtype)
    for j, c in enumerate(names):
        col = batch.column(c)
        if col.null_count and nulls_as_nan:
            X[:, j] = col.cast("float64").fill_null(float("nan")).to_numpy(
                zero_copy_only=False)
            continue
        if col.null_count:
            raise ValueError(f"{name}: column {c!r} has a missing value (null) in row "
                             f"{start + _first_null(col)} (rows counted from 0, header "
                             "excluded)")
        X[:, j] = col.to_numpy(zero_copy_only=False)
    if weight is None:
        return X
    w = batch.column(weight)
    if w.null_count:
        raise ValueError(f"{name}: weight column {weight!r} has a missing value (null) in row "
                         f"{start + _first_null(w)} (rows counted from 0, header excluded)")
    return X, np.asarray(w.to_numpy(zero_copy_only=False), dtype=np.float64)


class ParquetSource(Source):
    """A Parquet file read batch by batch (pyarrow; extra ``io``).

    Parameters
    ----------
    path : str or os.PathLike
        The Parquet file.
    columns : sequence of str, optional
        The feature columns, in this order; default: every column but ``weight_column``.
    weight_column : str, optional
        A column of sample weights, read in step with the features (``has_weights``).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not Parquet, a named column is missing, or a column used is not
        numeric.  While reading: a null feature value (unless ``nulls_as_nan``) or weight, named
        by row.
    ImportError
        When pyarrow is not installed.

    See Also
    --------
    open_path : Chooses this class for ``.parquet`` and ``.pq`` files.

    Examples
    --------
    >>> import numpy as np
    >>> import pyarrow as pa
    >>> import pyarrow.parquet as pq
    >>> from fastmix.io import ParquetSource
    >>> table = pa.table({"a": np.arange(4.0), "b": np.ones(4), "w": [1.0, 2.0, 1.0, 2.0]})
    >>> pq.write_table(table, "data.parquet")
    >>> src = ParquetSource("data.parquet", weight_column="w")
    >>> src.columns, src.n_rows, src.has_weights
    (['a', 'b'], 4, True)
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[str] | None = None,
                 weight_column: str | None = None) -> None:
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise _missing_extra("pyarrow", exc) from None
        self.name = str(path)
        self.path = path
        if not os.path.exists(path):
            raise FileNotFoundError(f"No such file: {path!s}")
        try:
            self._pf = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow.ArrowInvalid etc.
            raise ValueError(f"{path!s} is not a readable Parquet file ({exc})") from None
        self.columns, self.dtype = _arrow_numeric(self._pf.schema_arrow, columns, weight_column,
                                                  self.name)
        self.weight_column = weight_column
        self.has_weights = weight_column is not None
        self.n_features = len(self.columns)
        self.n_rows = int(self._pf.metadata.num_rows)
        self.batch_rows = max(1024, _base.BLOCK_BYTES // (8 * self.n_features))

    def pieces(self) -> Iterator[Any]:
        # numpydoc ignore=GL08
        # (the docstring of Source.pieces applies and is shown)
        cols = self.columns + ([self.weight_column] if self.weight_column else [])
        start = 0
        try:
            for batch in self._pf.iter_batches(batch_size=self.batch_rows, columns=cols):
                yield _batch_to_numpy(batch, self.columns, self.weight_column, self.dtype,
                                      self.name, start, self.nulls_as_nan)
                start += batch.num_rows
        except OSError as exc:  # ArrowInvalid/ArrowIOError derive from OSError or ValueError
            raise ValueError(f"{self.name}: damaged Parquet data ({exc})") from None

    def close(self) -> None:
        # numpydoc ignore=GL08
        # (the docstring of Source.close applies and is shown)
        self._pf.close()


#: Delimiters tried, in order, on the first line of a ``.txt`` file (np.savetxt writes spaces).
TXT_DELIMITERS = (",", "\t", ";", " ")


def _first_line(path: str | os.PathLike, limit: int = 1 << 20) -> str:
    with open(path, "rb") as fh:
        line = fh.readline(limit)
    return line.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


class CSVSource(Source):
    """Delimited text (CSV, TSV, TXT) read by pyarrow's streaming reader (extra ``io``).

    The row count is unknown (``n_rows`` is None) until the first pass over the file.

    Parameters
    ----------
    path : str or os.PathLike
        The text file.
    columns : list of str, optional
        Feature columns (default: every column but ``weight_column``).  Without a header the
        columns are named ``f0``, ``f1``, ...
    weight_column : str, optional
        Column of sample weights.
    header : {"infer", True, False}, default="infer"
        Whether the first line names the columns.  "infer": it does unless every field of it
        is a number (or empty), so a file without a header never loses its first row.
    delimiter : str (one character), optional
        Default: tab for ``.tsv``; for ``.txt`` the first of ``,`` tab ``;`` space found in the
        first line; otherwise ``,``.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        For a directory, an empty file, a file with a header and no rows, a bad ``header`` or
        ``delimiter``, a missing or non-numeric column.  While reading: unparsable text or a
        null value (unless ``nulls_as_nan``), named by row.
    ImportError
        When pyarrow is not installed.

    See Also
    --------
    open_path : Chooses this class for ``.csv``, ``.tsv`` and ``.txt`` files.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix.io import CSVSource
    >>> np.savetxt("data.csv", np.arange(6.0).reshape(3, 2), delimiter=",", header="x,y",
    ...            comments="")
    >>> src = CSVSource("data.csv")
    >>> src.columns, src.header, src.n_rows
    (['x', 'y'], True, None)
    >>> np.vstack(list(src.pieces()))
    array([[0., 1.],
           [2., 3.],
           [4., 5.]])
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[str] | None = None,
                 weight_column: str | None = None, *,
                 header: Literal["infer", True, False] = "infer",
                 delimiter: str | None = None) -> None:
        try:
            import pyarrow.csv as pcsv
        except ImportError as exc:
            raise _missing_extra("pyarrow", exc) from None
        self.name = str(path)
        self.path = path
        if not os.path.exists(path):
            raise FileNotFoundError(f"No such file: {path!s}")
        if os.path.isdir(path):
            raise ValueError(f"{path!s} is a directory, not a CSV file")
        if header not in ("infer", True, False):
            raise ValueError(f"header must be 'infer', True or False, got {header!r}")
        if os.path.getsize(path) == 0:
            raise ValueError(f"{self.name} is empty (no header, no rows)")
        first = _first_line(path)
        suffix = Path(str(path)).suffix.lower()
        if delimiter is None:
            if suffix == ".tsv":
                delimiter = "\t"
            elif suffix == ".txt":
                delimiter = next((d for d in TXT_DELIMITERS if d in first), ",")
            else:
                delimiter = ","
        if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\r\n\"":
            raise ValueError(f"delimiter must be one character (not a quote or a line end), got "
                             f"{delimiter!r}")
        self.delimiter = delimiter
        if header == "infer":
            fields = [f.strip().strip('"').strip() for f in first.split(delimiter)]
            header = not (all(_is_number(f) for f in fields if f)
                          and any(fields))
        self.header = bool(header)
        self._pcsv = pcsv
        self._types = self._include = None
        with self._open() as reader:
            schema = reader.schema
            import pyarrow as pa
            if all(pa.types.is_null(t) for t in schema.types):  # no values in the first block
                try:
                    empty = reader.read_next_batch().num_rows == 0
                except StopIteration:
                    empty = True
                except Exception:
                    empty = False
                if empty:
                    raise ValueError(f"{self.name} has no rows (only a header: "
                                     f"{', '.join(schema.names[:8])})")
        self.columns, self.dtype = _arrow_numeric(schema, columns, weight_column, self.name)
        self.weight_column = weight_column
        self.has_weights = weight_column is not None
        self.n_features = len(self.columns)
        # types are inferred from the first block only: read the numeric columns as float64, so
        # that a column of whole numbers there and fractions further down still parses, and
        # convert only the columns used (an unused column may not parse as its first block did)
        used = self.columns + ([weight_column] if weight_column else [])
        self._types = {c: pa.float64() for c in used
                       if pa.types.is_integer(schema.field(c).type)
                       or pa.types.is_floating(schema.field(c).type)}
        self._include = used

    def _open(self) -> Any:
        try:
            return self._pcsv.open_csv(
                self.path, read_options=self._pcsv.ReadOptions(
                    block_size=_base.BLOCK_BYTES // 4,
                    autogenerate_column_names=not self.header),
                parse_options=self._pcsv.ParseOptions(delimiter=self.delimiter),
                convert_options=self._pcsv.ConvertOptions(column_types=self._types or {},
                                                          include_columns=self._include or []))
        except Exception as exc:
            raise ValueError(f"{self.name} is not a readable CSV file ({exc})") from None

    def pieces(self) -> Iterator[Any]:
        # numpydoc ignore=GL08
        # (the docstring of Source.pieces applies and is shown)
        reader = self._open()
        start = 0
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except Exception as exc:
                    raise ValueError(f"{self.name}: unreadable CSV data ({exc})") from None
                yield _batch_to_numpy(batch, self.columns, self.weight_column, self.dtype,
                                      self.name, start, self.nulls_as_nan)
                start += batch.num_rows
        finally:
            reader.close()
