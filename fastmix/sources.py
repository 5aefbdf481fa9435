"""Chunked data sources: read (N, D) data in blocks of whole kernel chunks, with prefetch.

A *source* knows its number of features, the dtype fastmix computes in (float32 stays float32,
every other real type becomes float64), its row count when the format records it, and how to
read its rows again for the next EM pass.  ``as_source`` turns what users pass into one:

=================================  =========================================================
input                              source
=================================  =========================================================
ndarray                            ``ArraySource`` (rows are read as views, no copy)
``np.memmap``                      ``ArraySource`` that copies each block (prefetched)
``"x.npy"`` / Path                 ``NpySource``: header parsed, blocks read with ``readinto``
                                   into reused buffers (no memory map, so the resident set
                                   stays bounded whatever the file size)
``"x.h5:/group/dataset"``          ``HDF5Source`` (h5py; extra ``io``)
``"x.zarr"`` / ``"x.zarr:/a/b"``   ``ZarrSource`` (zarr; extra ``io``)
``"x.parquet"``                    ``ParquetSource`` (pyarrow; numeric columns, optional
                                   ``columns``, read batch by batch; extra ``io``)
``"x.csv"`` / ``.tsv`` / ``.txt``  ``CSVSource`` (pyarrow's streaming reader; header
                                   detected, ``header=``/``delimiter=`` options; extra ``io``)
iterable of 2-D arrays             ``IterableSource``: must be re-iterable (a list, or an
                                   object whose ``__iter__`` starts over); a one-shot iterator
                                   can be read once only
callable returning an iterator     ``IterableSource`` (called once per pass)
=================================  =========================================================

``Stream(source, chunk_rows)`` reads a source as blocks whose row counts are whole multiples of
``chunk_rows`` (except the last), so a kernel pass over the blocks sees exactly the chunks it
would see on the whole array (see ``kernels.Accumulator``): out-of-core results are bit-identical
to in-memory ones.  A background thread reads, converts and checks the next block while the
kernels (which release the GIL) work on the current one.  Blocks handed out by a stream are
valid until the next block is requested (buffers are reused).

Errors: a missing file raises FileNotFoundError; a damaged or truncated file, a chunk of the
wrong width, non-numeric columns, an empty source or NaN/inf (naming the chunk and the row)
raise ValueError with a one-line message.
"""
import os
import queue
import struct
import threading
from pathlib import Path

import numpy as np

from ._validation import first_nonfinite_row

#: Target bytes per block read from disk (a whole number of kernel chunks).
BLOCK_BYTES = 32 * 2**20


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

    def view_rows(self, start, stop):
        return self.X[start:stop]

    def read_rows(self, start, stop, out):
        out[...] = self.X[start:stop]

    def take(self, rows):
        return np.ascontiguousarray(self.X[rows], dtype=self.dtype)


class NpySource(Source):
    """A ``.npy`` file read with ``readinto`` at computed offsets (no memory map)."""

    random_access = True

    def __init__(self, path, vector=False):
        self.path = Path(path)
        self.name = str(path)
        with open(self.path, "rb") as fh:  # FileNotFoundError for a missing file
            try:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
            except ValueError as exc:
                raise ValueError(f"{self.name} is not a readable .npy file ({exc})") from None
            self.offset = fh.tell()
        if dtype.hasobject or dtype.kind not in "biuf":
            raise ValueError(f"{self.name} holds dtype {dtype}; fastmix needs real numbers")
        if vector and len(shape) == 1:
            shape = (shape[0], 1)
        if len(shape) != 2:
            raise ValueError(f"{self.name} holds an array of shape {shape}; expected 2-D "
                             "(n_samples, n_features)")
        if fortran and shape[0] > 1 and shape[1] > 1:
            raise ValueError(f"{self.name} is stored in Fortran order; rows cannot be read in "
                             "chunks. Rewrite it with np.save(path, np.ascontiguousarray(X))")
        self.file_dtype = dtype
        self.n_rows, self.n_features = int(shape[0]), int(shape[1])
        self.dtype = _compute_dtype(dtype)
        self.row_bytes = dtype.itemsize * self.n_features
        need = self.offset + self.n_rows * self.row_bytes
        size = os.path.getsize(self.path)
        if size < need:
            raise ValueError(f"{self.name} is truncated: its header promises {self.n_rows} rows "
                             f"x {self.n_features} ({need} bytes) but the file has {size} bytes "
                             f"({max(0, size - self.offset) // max(1, self.row_bytes)} whole rows)")
        self._fh = None
        self._direct = dtype == self.dtype  # native byte order, compute dtype: read in place

    def _file(self):
        if self._fh is None:
            self._fh = open(self.path, "rb", buffering=0)
        return self._fh

    def read_rows(self, start, stop, out):
        fh = self._file()
        n = stop - start
        if self._direct:
            target = memoryview(out[:n].reshape(-1).view(np.uint8))
        else:
            raw = np.empty(n * self.row_bytes, np.uint8)
            target = memoryview(raw)
        pos = self.offset + start * self.row_bytes
        got = 0
        while got < len(target):
            k = os.preadv(fh.fileno(), [target[got:]], pos + got) if hasattr(os, "preadv") \
                else _pread_into(fh, target[got:], pos + got)
            if k == 0:
                raise ValueError(f"{self.name} is truncated: rows {start}..{stop - 1} could not "
                                 "be read (the file shrank while fastmix was reading it)")
            got += k
        if not self._direct:
            out[:n] = raw.view(self.file_dtype).reshape(n, self.n_features)

    def take(self, rows):
        """One ``pread`` per row: cheap for the k-means subsample, and no memory map."""
        out = np.empty((len(rows), self.n_features), self.dtype)
        if len(rows) > self.n_rows // 16:  # dense: one sequential pass is cheaper
            return Source.take(self, rows)
        fh = self._file()
        raw = np.empty(self.row_bytes, np.uint8)
        rview = raw.view(self.file_dtype)
        for i, r in enumerate(rows):
            k = os.preadv(fh.fileno(), [memoryview(raw)], self.offset + int(r) * self.row_bytes)
            if k != self.row_bytes:
                raise ValueError(f"{self.name} is truncated at row {int(r)}")
            out[i] = rview
        return out

    def close(self):
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _pread_into(fh, target, pos):  # pragma: no cover - platforms without preadv
    fh.seek(pos)
    return fh.readinto(target)


class HDF5Source(Source):
    """An HDF5 dataset ``file.h5:/group/dataset`` (h5py)."""

    random_access = True

    def __init__(self, path, key):
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

    def read_rows(self, start, stop, out):
        try:
            self.ds.read_direct(out, np.s_[start:stop], np.s_[0:stop - start])
        except (OSError, RuntimeError) as exc:
            raise ValueError(f"{self.name}: rows {start}..{stop - 1} could not be read "
                             f"({exc})") from None

    def close(self):
        self._f.close()


class ZarrSource(Source):
    """A 2-D Zarr array (a directory store; ``store.zarr:/path/in/group`` for a member)."""

    random_access = True

    def __init__(self, path, key=None):
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
        self._cached, self._cache = -1, None

    def read_rows(self, start, stop, out):
        """Rows are copied out of whole decompressed Zarr chunks, the last one kept: blocks
        that do not line up with the Zarr chunks (they are whole kernel chunks) still
        decompress every Zarr chunk once per pass (reading z[start:stop] directly decompressed
        a 1e6-row chunk four times per pass for 32 MB blocks: 2.8 s instead of 0.5 s per
        iteration, measured).  Memory: one Zarr chunk."""
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


def _arrow_numeric(schema, columns, weight, name):
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


def _first_null(col):
    return int(np.argmax(np.asarray(col.is_null().to_numpy(zero_copy_only=False))))


def _batch_to_numpy(batch, names, weight, dtype, name, start=0):
    """A record batch as an (n, D) array (and (n,) weights); ``start`` is the batch's first row
    in the file, for the row number of a missing value."""
    n = batch.num_rows
    X = np.empty((n, len(names)), dtype)
    for j, c in enumerate(names):
        col = batch.column(c)
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
    """A Parquet file read batch by batch (pyarrow).  ``columns`` selects the features (default:
    all columns but ``weight_column``); ``weight_column`` names a column of sample weights."""

    def __init__(self, path, columns=None, weight_column=None):
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
        self.batch_rows = max(1024, BLOCK_BYTES // (8 * self.n_features))

    def pieces(self):
        cols = self.columns + ([self.weight_column] if self.weight_column else [])
        start = 0
        try:
            for batch in self._pf.iter_batches(batch_size=self.batch_rows, columns=cols):
                yield _batch_to_numpy(batch, self.columns, self.weight_column, self.dtype,
                                      self.name, start)
                start += batch.num_rows
        except OSError as exc:  # ArrowInvalid/ArrowIOError derive from OSError or ValueError
            raise ValueError(f"{self.name}: damaged Parquet data ({exc})") from None

    def close(self):
        self._pf.close()


#: Delimiters tried, in order, on the first line of a ``.txt`` file (np.savetxt writes spaces).
TXT_DELIMITERS = (",", "\t", ";", " ")


def _first_line(path, limit=1 << 20):
    with open(path, "rb") as fh:
        line = fh.readline(limit)
    return line.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")


def _is_number(field):
    try:
        float(field)
    except ValueError:
        return False
    return True


class CSVSource(Source):
    """Delimited text read by pyarrow's streaming reader (row count unknown until the first
    pass).

    Parameters
    ----------
    path : str or Path
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
    """

    def __init__(self, path, columns=None, weight_column=None, *, header="infer",
                 delimiter=None):
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

    def _open(self):
        try:
            return self._pcsv.open_csv(
                self.path, read_options=self._pcsv.ReadOptions(
                    block_size=BLOCK_BYTES // 4, autogenerate_column_names=not self.header),
                parse_options=self._pcsv.ParseOptions(delimiter=self.delimiter),
                convert_options=self._pcsv.ConvertOptions(column_types=self._types or {},
                                                          include_columns=self._include or []))
        except Exception as exc:
            raise ValueError(f"{self.name} is not a readable CSV file ({exc})") from None

    def pieces(self):
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
                                      self.name, start)
                start += batch.num_rows
        finally:
            reader.close()


class IterableSource(Source):
    """Chunks from a re-iterable of 2-D arrays or a callable returning a fresh iterator.

    The width and dtype come from the first chunk; later chunks must have the same width (a
    float32 first chunk makes the whole source float32)."""

    def __init__(self, obj, name=None):
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

    def _iter(self):
        return iter(self.obj()) if callable(self.obj) else iter(self.obj)

    def pieces(self):
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


def _chunk_iterable(data):
    """An iterable of chunks, not an array-like (arrays, sparse matrices, data frames have a
    ``shape`` or ``__array__``)."""
    return (hasattr(data, "__iter__") and not hasattr(data, "__array__")
            and not hasattr(data, "shape") and not isinstance(data, (str, bytes, dict)))


# ---------------------------------------------------------------------------- reading ---------
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
    """A source read in blocks of whole kernel chunks (see the module docstring).

    Parameters
    ----------
    source : Source
    chunk_rows : int
        The kernels' chunk size; block boundaries fall on multiples of it.
    weights : None, (N,) array or 1-D random-access Source
        Sample weights read in step with the rows (a source with a weight column carries its
        own).
    block_rows : int, optional
        Rows per block (rounded up to a multiple of chunk_rows); default ~BLOCK_BYTES.
    prefetch : bool
        Read the next block in a background thread.
    """

    def __init__(self, source, chunk_rows, weights=None, block_rows=None, prefetch=True):
        self.source = source
        self.chunk_rows = int(chunk_rows)
        D = source.n_features
        if block_rows is None:
            block_rows = BLOCK_BYTES // (source.dtype.itemsize * D)
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

    def rebatched(self, block_rows):
        """A Stream over the same source and weights with another block size (its validation
        state and row count carry over)."""
        s = Stream(self.source, self.chunk_rows, weights=self.weights, block_rows=block_rows,
                   prefetch=self.prefetch)
        s.n_rows, s.validated = self.n_rows, self.validated
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
            if validate:
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
    step = max(1, BLOCK_BYTES // 8)
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


# ------------------------------------------------------------------------ fingerprints -------
#: Rows (or weight entries) hashed for a fingerprint, evenly spaced, first and last included.
FINGERPRINT_ROWS = 64


def _sampled_rows(n):
    return np.unique(np.linspace(0, max(0, n - 1), min(n, FINGERPRINT_ROWS)).astype(np.int64))


def _file_digest(path):
    """Size + SHA-256 of the head, the tail and 14 evenly spaced 4 KiB blocks of a file."""
    import hashlib
    size = os.path.getsize(path)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        offsets = [0] + [int(x) for x in np.linspace(0, max(0, size - 4096), 14)]
        offsets.append(max(0, size - 65536))
        for i, off in enumerate(offsets):
            fh.seek(off)
            h.update(fh.read(65536 if i in (0, len(offsets) - 1) else 4096))
    return size, h.hexdigest()[:32]


def fingerprint(source):
    """A cheap fingerprint of what a source holds, or None when it cannot be taken cheaply.

    Random-access sources (arrays, memmaps, ``.npy``, HDF5, Zarr) hash
    ``FINGERPRINT_ROWS`` evenly spaced rows in the compute dtype, so the same rows give the same
    fingerprint whether they are in memory or in a file; Parquet and CSV files hash their size,
    head, tail and sampled blocks of bytes.  Iterables, callables and other sources give None.
    Returns a dict of JSON-serialisable values.
    """
    import hashlib
    if isinstance(source, WeightedSource):
        source = source.inner
    if isinstance(source, (ArraySource, NpySource, HDF5Source, ZarrSource)):
        rows = _sampled_rows(source.n_rows)
        buf = np.empty((1, source.n_features), source.dtype)
        h = hashlib.sha256()
        for r in rows:
            source.read_rows(int(r), int(r) + 1, buf)
            h.update(buf.tobytes())
        return {"kind": "rows", "n_rows": int(source.n_rows), "hash": h.hexdigest()[:32]}
    path = getattr(source, "path", None) or getattr(source, "_path", None)
    if isinstance(source, (ParquetSource, CSVSource)) and path is not None:
        size, digest = _file_digest(path)
        return {"kind": "file", "size": size, "hash": digest}
    return None


def _weights_fingerprint(w):
    import hashlib
    if w is None:
        return None
    n = _n_weights(w)
    rows = _sampled_rows(n)
    if isinstance(w, np.ndarray):
        vals = np.asarray(w[rows], np.float64)
    else:
        vals = np.empty(len(rows), np.float64)
        buf = np.empty((1, 1), np.float64)
        for i, r in enumerate(rows):
            w.read_rows(int(r), int(r) + 1, buf)
            vals[i] = buf[0, 0]
    return {"n": int(n), "hash": hashlib.sha256(vals.tobytes()).hexdigest()[:32]}


def data_record(data):
    """What a fit reads, for a checkpoint: rows (None until known), features, dtype, a content
    fingerprint (see ``fingerprint``), the columns read and the sample weights (a fingerprint,
    a weight column's name, or None).  ``data`` is a ``Stream`` or a Dask data wrapper."""
    dask = getattr(data, "is_dask", False)
    source = None if dask else getattr(data, "source", None)  # a Dask array: no fingerprint
    rec = {"n_rows": None if data.n_rows is None else int(data.n_rows),
           "n_features": int(data.n_features), "dtype": str(np.dtype(data.dtype)),
           "kind": "dask array" if dask else type(source).__name__,
           "fingerprint": fingerprint(source) if source is not None else None,
           "columns": list(getattr(source, "columns", None) or []) or None,
           "weight_column": getattr(source, "weight_column", None),
           "weights": None}
    weights = getattr(data, "weights", None)
    if weights is not None:  # a Dask array's weights are not read here either
        rec["weights"] = {"dask": True} if dask else _weights_fingerprint(weights)
    return rec


def record_differences(saved, now):
    """What differs between two ``data_record`` dicts, as short phrases (empty when the data
    match).  A row count still unknown on either side is not compared."""
    out = []
    if saved.get("n_rows") is not None and now.get("n_rows") is not None \
            and saved["n_rows"] != now["n_rows"]:
        out.append(f"rows {saved['n_rows']} vs {now['n_rows']}")
    for key, what in (("n_features", "features"), ("dtype", "dtype"), ("columns", "columns"),
                      ("weight_column", "weight column")):
        if saved.get(key) != now.get(key):
            out.append(f"{what} {saved.get(key)} vs {now.get(key)}")
    if saved.get("fingerprint") != now.get("fingerprint"):
        a, b = saved.get("fingerprint"), now.get("fingerprint")
        if a is None or b is None or a.get("kind") != b.get("kind"):
            out.append(f"data read as {saved.get('kind')} vs {now.get('kind')} (contents cannot "
                       "be compared)")
        else:
            out.append("contents differ (sampled " +
                       ("rows" if a["kind"] == "rows" else "file bytes") + ")")
    if saved.get("weights") != now.get("weights"):
        a, b = saved.get("weights"), now.get("weights")
        out.append("sample weights " + ("given vs none" if b is None else "none vs given"
                                        if a is None else "differ"))
    return out


def check_output_path(path, what="output file"):
    """Check, before any work, that ``path`` can be written: it is not a directory and its
    parent directory exists and is writable.  Raises an OSError naming ``path`` as given
    (FileNotFoundError, NotADirectoryError, IsADirectoryError or PermissionError); returns
    ``path`` as a string."""
    s = os.fspath(path)
    if not s:
        raise FileNotFoundError(f"{what} path is empty")
    if os.path.isdir(s):
        raise IsADirectoryError(f"cannot write {what} {s}: it is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(s))
    if not os.path.exists(parent):
        raise FileNotFoundError(f"cannot write {what} {s}: directory {os.path.dirname(s) or '.'}"
                                " does not exist")
    if not os.path.isdir(parent):
        raise NotADirectoryError(f"cannot write {what} {s}: {os.path.dirname(s)} is not a "
                                 "directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {what} {s}: directory {os.path.dirname(s) or '.'} "
                              "is not writable")
    if os.path.exists(s) and not os.path.isfile(s):
        raise IsADirectoryError(f"cannot write {what} {s}: it exists and is not a regular file")
    return s


class NpyWriter:
    """Write a 1-D or 2-D ``.npy`` block by block, atomically: rows go to a temporary file in
    the target's directory, the header is rewritten with the final row count, and the file is
    renamed onto ``path`` only by ``commit()``.  ``abort()`` (or an exception inside a ``with``)
    removes the temporary file, so a failed or killed run never leaves a partial output."""

    HEADER = 128

    def __init__(self, path, dtype, tail_shape=()):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.tail = tuple(int(s) for s in tail_shape)
        self.rows = 0
        check_output_path(path)  # errors name the path given, not the temporary file
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.fh = open(self.tmp, "wb")
        self.fh.write(self._header())

    def _header(self):
        d = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
             "shape": (self.rows,) + self.tail}
        body = repr(d).ljust(self.HEADER - 10 - 1) + "\n"
        if len(body) != self.HEADER - 10:
            raise ValueError("array shape too long for the fixed .npy header")
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")

    def write(self, block):
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.tail:
            raise ValueError(f"block of shape {block.shape} does not match {self.tail}")
        self.fh.write(block.data)
        self.rows += block.shape[0]

    def commit(self):
        self.fh.seek(0)
        self.fh.write(self._header())
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.path)

    def abort(self):
        if not self.fh.closed:
            self.fh.close()
        if self.tmp.exists():
            self.tmp.unlink()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *rest):
        if exc_type is None:
            self.commit()
        else:
            self.abort()


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
