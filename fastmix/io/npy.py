"""``.npy`` files: ``NpySource`` (header parsed, blocks read into reused buffers, no memory map)
and ``NpyWriter`` (block-by-block atomic output), with ``check_output_path``."""
import os
import struct
from pathlib import Path
from io import FileIO
from typing import Any

import numpy as np

from .base import Source, _compute_dtype


class NpySource(Source):
    """A ``.npy`` file read block by block at computed offsets (no memory map).

    The header is parsed once; blocks are read with ``preadv`` into reused buffers, so the
    resident memory stays bounded whatever the file size.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npy`` file, holding a C-ordered 2-D array of a real dtype.
    vector : bool, default=False
        Read a 1-D array as one column (a file of sample weights).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not a readable ``.npy`` file, is truncated, holds a non-real dtype, is
        not 2-D (1-D with ``vector``), or is stored in Fortran order.

    See Also
    --------
    open_path : Chooses this class for ``.npy`` files.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix.io import NpySource
    >>> np.save("data.npy", np.arange(12.0).reshape(4, 3))
    >>> with NpySource("data.npy") as src:
    ...     print(src, src.take(np.array([2])))
    NpySource('data.npy', rows=4, features=3, dtype=float64) [[6. 7. 8.]]
    """

    random_access = True

    def __init__(self, path: str | os.PathLike, vector: bool = False) -> None:
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
        self._fh: FileIO | None = None
        self._direct = dtype == self.dtype  # native byte order, compute dtype: read in place

    def _file(self) -> FileIO:
        if self._fh is None:
            self._fh = open(self.path, "rb", buffering=0)
        return self._fh

    def read_rows(self, start: int, stop: int, out: np.ndarray) -> None:
        # numpydoc ignore=GL08
        # (the docstring of Source.read_rows applies and is shown)
        fh = self._file()
        n = stop - start
        if self._direct:
            target = out[:n].reshape(-1).view(np.uint8).data  # a memoryview
        else:
            raw = np.empty(n * self.row_bytes, np.uint8)
            target = raw.data
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

    def take(self, rows: np.ndarray) -> np.ndarray:
        # numpydoc ignore=GL08
        # (the docstring of Source.take applies and is shown)
        # one pread per row: cheap for the k-means subsample, and no memory map
        out = np.empty((len(rows), self.n_features), self.dtype)
        if len(rows) > int(self.n_rows or 0) // 16:  # dense: one sequential pass is cheaper
            return Source.take(self, rows)
        fh = self._file()
        raw = np.empty(self.row_bytes, np.uint8)
        rview = raw.view(self.file_dtype)
        for i, r in enumerate(rows):
            k = os.preadv(fh.fileno(), [raw.data], self.offset + int(r) * self.row_bytes)
            if k != self.row_bytes:
                raise ValueError(f"{self.name} is truncated at row {int(r)}")
            out[i] = rview
        return out

    def close(self) -> None:
        # numpydoc ignore=GL08
        # (the docstring of Source.close applies and is shown)
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _pread_into(fh: FileIO, target: memoryview,
                pos: int) -> int:  # pragma: no cover - platforms without preadv
    fh.seek(pos)
    return fh.readinto(target)


def check_output_path(path: str | os.PathLike, what: str = "output file") -> str:
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

    def __init__(self, path: str | os.PathLike, dtype: Any,
                 tail_shape: tuple[int, ...] = ()) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.tail = tuple(int(s) for s in tail_shape)
        self.rows = 0
        check_output_path(path)  # errors name the path given, not the temporary file
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.fh = open(self.tmp, "wb")
        self.fh.write(self._header())

    def _header(self) -> bytes:
        d = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
             "shape": (self.rows,) + self.tail}
        body = repr(d).ljust(self.HEADER - 10 - 1) + "\n"
        if len(body) != self.HEADER - 10:
            raise ValueError("array shape too long for the fixed .npy header")
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.tail:
            raise ValueError(f"block of shape {block.shape} does not match {self.tail}")
        self.fh.write(block.data)
        self.rows += block.shape[0]

    def commit(self) -> None:
        self.fh.seek(0)
        self.fh.write(self._header())
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        if self.tmp.exists():
            self.tmp.unlink()

    def __enter__(self) -> "NpyWriter":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
