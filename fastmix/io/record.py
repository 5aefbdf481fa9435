"""Fingerprints of the data a model was fitted on (checkpoints record them, ``resume`` compares
them)."""
import os

import numpy as np

from .base import ArraySource, WeightedSource
from .columnar import CSVSource, HDF5Source, ParquetSource, ZarrSource
from .npy import NpySource
from .stream import _n_weights


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
