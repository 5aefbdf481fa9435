"""Chunked data sources (``fastmix.io``): read (N, D) data in blocks of whole kernel chunks, with
prefetch.

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

Modules: ``base`` (the ``Source`` interface, arrays, ``BLOCK_BYTES``), ``npy``, ``columnar``
(HDF5, Zarr, Parquet, delimited text), ``iterable``, ``stream`` (``Stream``, prefetch,
``as_stream``), ``record`` (fingerprints of the fitted-on data).
"""
from ._open import as_source, is_out_of_core, open_path, split_key
from .base import ArraySource, Source, WeightedSource
from .columnar import CSVSource, HDF5Source, ParquetSource, ZarrSource
from .iterable import IterableSource
from .npy import NpySource, NpyWriter, check_output_path
from .record import data_record, fingerprint, record_differences
from .stream import Stream, as_stream, check_weights_block

__all__ = ["Source", "ArraySource", "WeightedSource", "NpySource", "NpyWriter",
           "check_output_path", "HDF5Source", "ZarrSource", "ParquetSource", "CSVSource",
           "IterableSource", "split_key", "open_path", "as_source", "is_out_of_core", "Stream",
           "as_stream", "check_weights_block", "fingerprint", "data_record", "record_differences"]
