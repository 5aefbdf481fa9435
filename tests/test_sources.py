"""Out-of-core data sources (fastmix/io/): bit-identical out-of-core fits, Stream blocks,
inference on files, sample weights from files and columns, clear errors for bad input, the atomic
NpyWriter and the prefetch thread.

Every test shrinks ``fastmix.io.base.BLOCK_BYTES`` so that a few thousand rows are read in many
blocks (and Parquet/CSV in many batches)."""
import functools
import os
import threading

import numpy as np
import pytest

import fastmix
from fastmix import io as sources
from fastmix.io import (ArraySource, IterableSource, NpySource, NpyWriter, Stream,
                             as_source, as_stream, is_out_of_core)

N, D, K, CHUNK = 3000, 4, 3, 256
COV_TYPES = ("full", "tied", "diag", "spherical")
FIT_ATTRS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")
SMALL_BLOCK_BYTES = 20_000  # float64, D=4: 625 rows -> blocks of 768 rows (3 chunks of 256)


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch):
    monkeypatch.setattr(sources.base, "BLOCK_BYTES", SMALL_BLOCK_BYTES)


def _make_data():
    rng = np.random.default_rng(12345)
    centres = rng.normal(scale=4.0, size=(K, D))
    labels = rng.integers(0, K, N)
    X = centres[labels] + rng.normal(size=(N, D)) * rng.uniform(0.5, 2.0, size=D)
    X = np.round(X * 4096) / 4096  # short exact decimals: text (CSV) round trips are exact
    w = np.round(rng.uniform(0.1, 3.0, N) * 1024) / 1024
    return X, w


DATA, WEIGHTS = _make_data()
#: uneven chunk sizes, including 1-row chunks and chunks straddling block boundaries
SPLITS = [100, 101, 1000, 1001, 1700, 2999]


def chunks_of(X, splits=SPLITS):
    return np.split(X, splits)


def gm(cov="full", **kw):
    kw.setdefault("random_state", 0)
    kw.setdefault("max_iter", 10)
    kw.setdefault("chunk_size", CHUNK)
    return fastmix.GaussianMixture(K, covariance_type=cov, **kw)


def user_init(cov):
    prec = {"full": np.tile(np.eye(D), (K, 1, 1)), "tied": np.eye(D),
            "diag": np.ones((K, D)), "spherical": np.ones(K)}[cov]
    return dict(weights_init=np.full(K, 1.0 / K), means_init=DATA[[0, N // 2, N - 1]],
                precisions_init=prec)


@functools.lru_cache(maxsize=None)
def reference(cov="full", dtype="float64", weighted=False, init=False):
    """The in-memory fit the out-of-core fits must equal bit for bit."""
    X = DATA.astype(dtype)
    kw = user_init(cov) if init else {}
    model = gm(cov, **kw).fit(X, sample_weight=WEIGHTS if weighted else None)
    assert model.n_iter_ >= 2  # the comparison covers several EM passes
    return model


def assert_same_fit(got, ref):
    for a in FIT_ATTRS:
        x, y = getattr(got, a), getattr(ref, a)
        assert x.dtype == y.dtype and x.shape == y.shape, a
        assert np.array_equal(x, y), a
    assert got.lower_bound_ == ref.lower_bound_
    assert got.lower_bounds_ == ref.lower_bounds_
    assert got.n_iter_ == ref.n_iter_
    assert got.n_features_in_ == ref.n_features_in_


# ---------------------------------------------------------------------- writing sources -------
def write_npy(X, tmp_path, name="x.npy"):
    p = tmp_path / name
    np.save(p, X)
    return p


def write_h5(X, tmp_path, name="x.h5", key="g/x"):
    h5py = pytest.importorskip("h5py")
    p = tmp_path / name
    with h5py.File(p, "w") as f:
        f.create_dataset(key, data=X, chunks=(100, X.shape[1]))
    return f"{p}:/{key}"


def write_zarr(X, tmp_path, name="x.zarr", key=None):
    zarr = pytest.importorskip("zarr")
    p = tmp_path / name
    if key is None:
        z = zarr.open_array(str(p), mode="w", shape=X.shape, chunks=(300, X.shape[1]),
                            dtype=X.dtype)
        z[:] = X
        return str(p)
    group, _, leaf = key.rpartition("/")
    g = zarr.open_group(str(p), mode="w").require_group(group)
    make = getattr(g, "create_array", None) or g.create_dataset  # zarr 3 / zarr 2
    z = make(leaf, shape=X.shape, chunks=(300, X.shape[1]), dtype=X.dtype)
    z[:] = X
    return f"{p}:/{key}"


def write_parquet(X, tmp_path, name="x.parquet", w=None, extra=None, row_group_size=700):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    cols = {f"x{j}": X[:, j] for j in range(X.shape[1])}
    if w is not None:
        cols["w"] = w
    cols.update(extra or {})
    p = tmp_path / name
    pq.write_table(pa.table(cols), p, row_group_size=row_group_size)
    return p


def write_csv(X, tmp_path, name="x.csv", w=None):
    pytest.importorskip("pyarrow.csv")
    names = [f"x{j}" for j in range(X.shape[1])]
    if w is not None:
        X = np.column_stack([X, w])
        names.append("w")
    p = tmp_path / name
    np.savetxt(p, X, delimiter=",", header=",".join(names), comments="", fmt="%.17g")
    return p


def write_raw_memmap(X, tmp_path):
    p = tmp_path / "x.dat"
    mm = np.memmap(p, dtype=X.dtype, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    del mm
    return np.memmap(p, dtype=X.dtype, mode="r", shape=X.shape)


class ReIterable:
    """An object whose __iter__ starts over (not a list: its row count is unknown)."""

    def __init__(self, parts):
        self.parts = parts

    def __iter__(self):
        return iter(self.parts)


#: sources whose row count is known: their fits equal the in-memory fit even with random init
KNOWN = {
    "npy": lambda X, t: str(write_npy(X, t)),
    "npy-pathlib": lambda X, t: write_npy(X, t),
    "npy-mmap": lambda X, t: np.load(write_npy(X, t), mmap_mode="r"),
    "memmap": write_raw_memmap,
    "hdf5": write_h5,
    "zarr": write_zarr,
    "zarr-member": lambda X, t: write_zarr(X, t, key="a/b"),
    "parquet": lambda X, t: str(write_parquet(X, t)),
    "chunks": lambda X, t: chunks_of(X),
    "chunks-tuple": lambda X, t: tuple(chunks_of(X)),
}
#: sources whose row count is unknown until the first pass
UNKNOWN = {
    "csv": lambda X, t: str(write_csv(X, t)),
    "callable": lambda X, t: (lambda: iter(chunks_of(X))),
    "generator-function": lambda X, t: functools.partial(
        lambda parts: (c for c in parts), chunks_of(X)),
    "re-iterable": lambda X, t: ReIterable(chunks_of(X)),
}
ALL = {**KNOWN, **UNKNOWN}


# ------------------------------------------------------------------ 1. bit-identical fits -----
@pytest.mark.parametrize("kind", list(KNOWN))
@pytest.mark.parametrize("cov", COV_TYPES)
def test_out_of_core_fit_is_bit_identical(kind, cov, tmp_path):
    data = KNOWN[kind](DATA, tmp_path)
    assert is_out_of_core(data)
    if kind == "parquet":
        assert pytest.importorskip("pyarrow.parquet").ParquetFile(data).num_row_groups == 5
    assert_same_fit(gm(cov).fit(data), reference(cov))


@pytest.mark.parametrize("kind", list(UNKNOWN))
def test_unknown_row_count_fit_works(kind, tmp_path):
    data = UNKNOWN[kind](DATA, tmp_path)
    assert as_source(data).n_rows is None
    model = gm("full").fit(data)
    assert model.n_features_in_ == D
    for a in FIT_ATTRS:
        assert np.all(np.isfinite(getattr(model, a))), a
    np.testing.assert_allclose(model.weights_.sum(), 1.0, rtol=1e-12)
    # N is below the k-means sample size: the reservoir keeps every row (in order), so even the
    # randomly initialised fit is the in-memory one
    assert N <= fastmix.init.KMEANS_SAMPLE
    assert_same_fit(model, reference("full"))


@pytest.mark.parametrize("kind", list(UNKNOWN))
@pytest.mark.parametrize("cov", COV_TYPES)
def test_unknown_row_count_fit_with_user_init_is_bit_identical(kind, cov, tmp_path):
    data = UNKNOWN[kind](DATA, tmp_path)
    assert_same_fit(gm(cov, **user_init(cov)).fit(data), reference(cov, init=True))


@pytest.mark.parametrize("kind", ["npy", "hdf5", "zarr", "parquet", "chunks", "callable"])
def test_float32_stays_float32(kind, tmp_path):
    X32 = DATA.astype(np.float32)
    data = ALL[kind](X32, tmp_path)
    assert as_source(data).dtype == np.float32
    init = kind in UNKNOWN
    kw = user_init("full") if init else {}
    assert_same_fit(gm("full", **kw).fit(data), reference("full", "float32", init=init))


@pytest.mark.parametrize("file_dtype", ["int32", ">f8", "<f4", ">f4", "float16", "uint8"])
def test_npy_other_dtypes_convert_like_check_array(file_dtype, tmp_path):
    """Other real dtypes and non-native byte order: the compute dtype is what an in-memory fit of
    the same array uses (float32 for float32, float64 otherwise), and the fits are equal."""
    X = np.clip(DATA * 8 + 128, 0, 255) if file_dtype == "uint8" else DATA * 8
    X = X.astype(file_dtype)
    p = write_npy(X, tmp_path)
    src = as_source(p)
    assert src.dtype == (np.float32 if np.dtype(file_dtype) == np.float32 else np.float64)
    got = gm("diag").fit(p)
    want = gm("diag").fit(X)
    assert_same_fit(got, want)


def test_npy_format_version_2(tmp_path):
    p = tmp_path / "v2.npy"
    with open(p, "wb") as fh:
        np.lib.format.write_array(fh, DATA, version=(2, 0))
    assert_same_fit(gm("full").fit(p), reference("full"))


def test_hdf5_integer_dataset(tmp_path):
    Xi = np.round(DATA * 100).astype(np.int16)
    spec = write_h5(Xi, tmp_path)
    assert as_source(spec).dtype == np.float64
    assert_same_fit(gm("tied").fit(spec), gm("tied").fit(Xi))


@pytest.mark.parametrize("init_params", ["k-means++", "random", "random_from_data"])
@pytest.mark.parametrize("kind", ["npy", "hdf5", "parquet", "chunks"])
def test_other_init_methods_are_bit_identical(init_params, kind, tmp_path):
    data = KNOWN[kind](DATA, tmp_path)
    want = gm("full", init_params=init_params).fit(DATA)
    assert_same_fit(gm("full", init_params=init_params).fit(data), want)


def test_npy_sparse_take_reads_the_right_rows(tmp_path):
    """NpySource.take with few rows (one pread per row) and with many (one pass)."""
    p = write_npy(DATA.astype(">f8"), tmp_path)
    src = NpySource(p)
    for rows in (np.array([0, 5, 1234, N - 1]), np.arange(0, N, 3)):
        np.testing.assert_array_equal(src.take(rows), DATA[rows])
    src.close()


def test_sample_of_a_large_known_file_equals_in_memory(tmp_path, monkeypatch):
    """N above the k-means sample size: the same seeded row choice is read from the file."""
    monkeypatch.setattr(fastmix.init, "KMEANS_SAMPLE", 500)
    for kind in ("npy", "parquet"):
        data = KNOWN[kind](DATA, tmp_path)
        assert_same_fit(gm("full").fit(data), gm("full").fit(DATA))


# ---------------------------------------------------------------------- 2. sample weights -----
def test_weight_array_with_npy_path(tmp_path):
    assert_same_fit(gm("full").fit(write_npy(DATA, tmp_path), sample_weight=WEIGHTS),
                    reference("full", weighted=True))


@pytest.mark.parametrize("as_str", [True, False])
def test_weight_npy_path(tmp_path, as_str):
    wp = write_npy(WEIGHTS, tmp_path, "w.npy")
    model = gm("diag").fit(str(write_npy(DATA, tmp_path)), sample_weight=str(wp) if as_str else wp)
    assert_same_fit(model, reference("diag", weighted=True))


def test_weight_memmap_with_chunk_list(tmp_path):
    w = np.load(write_npy(WEIGHTS, tmp_path, "w.npy"), mmap_mode="r")
    assert_same_fit(gm("tied").fit(chunks_of(DATA), sample_weight=w),
                    reference("tied", weighted=True))


@pytest.mark.parametrize("kind", ["hdf5", "zarr", "chunks"])
def test_weight_array_with_other_sources(kind, tmp_path):
    data = KNOWN[kind](DATA, tmp_path)
    assert_same_fit(gm("full").fit(data, sample_weight=WEIGHTS),
                    reference("full", weighted=True))


@pytest.mark.parametrize("cov", COV_TYPES)
def test_parquet_weight_column(cov, tmp_path):
    p = write_parquet(DATA, tmp_path, w=WEIGHTS)
    src = as_source(p, weight_column="w")
    assert src.has_weights and src.n_features == D and src.columns == ["x0", "x1", "x2", "x3"]
    assert_same_fit(gm(cov).fit(str(p), sample_weight="w"), reference(cov, weighted=True))


@pytest.mark.parametrize("cov", ["full", "spherical"])
def test_csv_weight_column(cov, tmp_path):
    p = str(write_csv(DATA, tmp_path, w=WEIGHTS))
    assert_same_fit(gm(cov, **user_init(cov)).fit(p, sample_weight="w"),
                    reference(cov, weighted=True, init=True))
    model = gm(cov).fit(p, sample_weight="w")  # reservoir-sampled initialisation: it works
    assert np.all(np.isfinite(model.means_))
    assert_same_fit(model, reference(cov, weighted=True))  # N <= KMEANS_SAMPLE: all rows


def test_weight_array_with_callable(tmp_path):
    assert_same_fit(gm("full", **user_init("full")).fit(lambda: iter(chunks_of(DATA)),
                                                       sample_weight=WEIGHTS),
                    reference("full", weighted=True, init=True))


def test_chunk_weight_pairs_from_callable():
    pairs = list(zip(chunks_of(DATA), chunks_of(WEIGHTS)))
    src = as_source(lambda: iter(pairs))
    assert src.has_weights
    assert_same_fit(gm("diag", **user_init("diag")).fit(src),
                    reference("diag", weighted=True, init=True))


def test_zero_weight_rows_are_ignored(tmp_path):
    w = WEIGHTS.copy()
    w[::7] = 0.0
    p = write_parquet(DATA, tmp_path, w=w)
    assert_same_fit(gm("full").fit(str(p), sample_weight="w"),
                    gm("full").fit(DATA, sample_weight=w))


# --------------------------------------------------------------------------- 3. Stream --------
def read_pass(stream):
    starts, parts, wparts = [], [], []
    for start, Xb, wb in stream.blocks():
        assert Xb.ndim == 2 and Xb.shape[1] == stream.n_features
        assert Xb.dtype == stream.dtype
        starts.append(start)
        parts.append(Xb.copy())  # buffers are reused: copy before asking for the next block
        wparts.append(None if wb is None else np.array(wb))
    return starts, parts, wparts


def read_source(data, **kw):
    """One pass over ``data`` as a Stream of CHUNK-row chunks; the source is closed after."""
    with as_source(data) as src:
        return read_pass(Stream(src, CHUNK, **kw))


@pytest.mark.parametrize("kind", ["array"] + list(ALL))
def test_stream_blocks(kind, tmp_path):
    data = DATA if kind == "array" else ALL[kind](DATA, tmp_path)
    passes = {}
    for prefetch in (True, False):
        stream = Stream(as_source(data), CHUNK, prefetch=prefetch)
        assert stream.block_rows % CHUNK == 0 and stream.block_rows == 768
        for p in range(2):  # re-iterable: a second pass reads the same blocks
            starts, parts, wparts = read_pass(stream)
            sizes = [len(b) for b in parts]
            assert len(parts) == -(-N // stream.block_rows) > 1
            assert all(s == stream.block_rows for s in sizes[:-1]), sizes
            assert 0 < sizes[-1] <= stream.block_rows
            assert starts == [0] + list(np.cumsum(sizes[:-1])), starts
            assert all(w is None for w in wparts)
            np.testing.assert_array_equal(np.concatenate(parts), DATA)
            passes[prefetch, p] = parts
        assert stream.passes == 2 and stream.validated and stream.n_rows == N
        stream.close()
    for key, parts in passes.items():
        assert len(parts) == len(passes[True, 0])
        for a, b in zip(parts, passes[True, 0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["npy", "chunks", "callable"])
@pytest.mark.parametrize("block_rows", [1, 256, 300, 5000])
def test_stream_block_rows_round_up_to_whole_chunks(kind, block_rows, tmp_path):
    stream = Stream(as_source(ALL[kind](DATA, tmp_path)), CHUNK, block_rows=block_rows)
    want = max(CHUNK, -(-block_rows // CHUNK) * CHUNK)
    assert stream.block_rows == want
    starts, parts, _ = read_pass(stream)
    stream.close()
    assert [len(b) for b in parts[:-1]] == [want] * (len(parts) - 1)
    assert starts == list(range(0, N, want))
    np.testing.assert_array_equal(np.concatenate(parts), DATA)


@pytest.mark.parametrize("kind", ["npy", "chunks", "callable"])
def test_stream_weights_follow_rows(kind, tmp_path):
    wp = write_npy(WEIGHTS, tmp_path, "w.npy")
    for weights in (WEIGHTS, NpySource(wp, vector=True)):
        stream = Stream(as_source(ALL[kind](DATA, tmp_path)), CHUNK, weights=weights)
        assert stream.weighted
        _, parts, wparts = read_pass(stream)
        stream.close()
        if not isinstance(weights, np.ndarray):
            weights.close()
        assert [len(w) for w in wparts] == [len(b) for b in parts]
        np.testing.assert_array_equal(np.concatenate(wparts), WEIGHTS)


def test_stream_weight_column_follows_rows(tmp_path):
    src = as_source(write_parquet(DATA, tmp_path, w=WEIGHTS), weight_column="w")
    _, parts, wparts = read_pass(Stream(src, CHUNK))
    np.testing.assert_array_equal(np.concatenate(parts), DATA)
    np.testing.assert_array_equal(np.concatenate(wparts), WEIGHTS)
    with pytest.raises(ValueError, match="sample weights given twice"):
        Stream(src, CHUNK, weights=WEIGHTS)


@pytest.mark.parametrize("prefetch", [True, False])
def test_one_shot_generator_reads_once(prefetch):
    stream = Stream(as_source(c for c in chunks_of(DATA)), CHUNK, prefetch=prefetch)
    assert stream.n_rows is None
    _, parts, _ = read_pass(stream)
    np.testing.assert_array_equal(np.concatenate(parts), DATA)
    assert stream.n_rows == N
    with pytest.raises(ValueError, match="one-shot iterator and was already read"):
        read_pass(stream)
    assert not prefetch_threads()


def test_fit_on_one_shot_generator_says_why():
    with pytest.raises(ValueError, match="one-shot iterator"):
        gm("full").fit(c for c in chunks_of(DATA))


def test_array_source_reads_views_and_memmap_copies(tmp_path):
    stream = as_stream(DATA, chunk_rows=CHUNK)
    assert stream.in_memory is DATA
    (start, X, w), = list(stream.blocks())  # an in-memory array is one block, no copy
    assert start == 0 and X.shape == DATA.shape and np.shares_memory(X, DATA) and w is None
    mm = np.load(write_npy(DATA, tmp_path), mmap_mode="r")
    src = as_source(mm)
    assert isinstance(src, ArraySource) and not src.views
    stream = Stream(src, CHUNK)
    assert stream.in_memory is None
    for _, Xb, _ in stream.blocks():
        assert not isinstance(Xb, np.memmap) and not np.shares_memory(Xb, mm)


def test_memmap_blocks_are_small_copies(tmp_path, monkeypatch):
    """A memory map's block copies come on top of its resident pages, so its blocks are
    MEMMAP_BLOCK_BYTES (or BLOCK_BYTES when smaller); a file read keeps BLOCK_BYTES."""
    from fastmix.io import base
    monkeypatch.setattr(base, "BLOCK_BYTES", 32 * 2**20)  # the default (this file shrinks it)
    X = np.random.default_rng(0).normal(size=(300_000, 8))  # 19.2 MB: several 8 MiB blocks
    path = write_npy(X, tmp_path)
    mm = np.load(path, mmap_mode="r")
    row = X.shape[1] * 8
    stream = as_stream(mm, chunk_rows=CHUNK)
    assert base.MEMMAP_BLOCK_BYTES < stream.block_rows * row + CHUNK * row
    assert stream.block_rows * row <= base.MEMMAP_BLOCK_BYTES
    assert Stream(as_source(path), CHUNK).block_rows * row >= base.BLOCK_BYTES
    blocks = [Xb.copy() for _, Xb, _ in stream.blocks()]
    assert len(blocks) == -(-X.shape[0] // stream.block_rows) >= 3
    assert np.array_equal(np.concatenate(blocks), X)
    monkeypatch.setattr(base, "BLOCK_BYTES", 2**20)  # a smaller BLOCK_BYTES still applies
    assert as_stream(mm, chunk_rows=CHUNK).block_rows * row <= 2**20


def test_stream_notices_a_list_that_changed(tmp_path):
    parts = chunks_of(DATA)
    stream = Stream(as_source(parts), CHUNK)
    assert stream.n_rows == N
    parts.append(DATA[:10])
    with pytest.raises(ValueError, match=f"changed while it was read: {N + 10} rows instead "
                                         f"of {N}"):
        read_pass(stream)


def test_as_stream_passes_streams_through():
    stream = as_stream(DATA, chunk_rows=CHUNK)
    assert as_stream(stream) is stream
    with pytest.raises(ValueError, match="pass sample weights when the Stream is made"):
        as_stream(stream, sample_weight=WEIGHTS)
    with pytest.raises(TypeError, match="cannot read data of type int"):
        as_stream(3)


def test_as_source_dispatch(tmp_path):
    pytest.importorskip("h5py")
    pytest.importorskip("zarr")
    pytest.importorskip("pyarrow")
    npy = write_npy(DATA, tmp_path)
    cases = {
        str(npy): NpySource, npy: NpySource,
        write_h5(DATA, tmp_path): sources.HDF5Source,
        write_zarr(DATA, tmp_path): sources.ZarrSource,
        str(write_parquet(DATA, tmp_path)): sources.ParquetSource,
        str(write_csv(DATA, tmp_path)): sources.CSVSource,
    }
    for data, cls in cases.items():
        src = as_source(data)
        assert type(src) is cls, data
        assert src.n_features == D and src.dtype == np.float64
        assert type(src).__name__ in repr(src)
        src.close()
    assert type(as_source(DATA)) is ArraySource
    assert type(as_source(chunks_of(DATA))) is IterableSource
    assert type(as_source(lambda: iter([DATA]))) is IterableSource
    src = as_source(DATA)
    assert as_source(src) is src
    assert as_source([[1.0, 2.0], [3.0, 4.0]]) is None  # nested lists are array-likes
    assert not is_out_of_core(DATA) and not is_out_of_core([[1.0, 2.0]])
    assert not is_out_of_core([])
    assert is_out_of_core(np.load(npy, mmap_mode="r")) and is_out_of_core(str(npy))
    assert is_out_of_core(chunks_of(DATA)) and is_out_of_core(iter(chunks_of(DATA)))
    assert sources.split_key("a/b.h5:/g/x") == ("a/b.h5", "/g/x")
    assert sources.split_key(str(npy)) == (str(npy), None)


# ------------------------------------------------------------------------- 4. inference ------
@pytest.mark.parametrize("kind", ["npy", "npy-mmap", "hdf5", "parquet", "chunks", "csv",
                                  "callable"])
@pytest.mark.parametrize("cov", ["full", "spherical"])
def test_inference_on_sources_equals_in_memory(kind, cov, tmp_path):
    model = reference(cov)
    data = ALL[kind](DATA, tmp_path)
    np.testing.assert_array_equal(model.score_samples(data), model.score_samples(DATA))
    np.testing.assert_array_equal(model.predict(data), model.predict(DATA))
    np.testing.assert_array_equal(model.predict_proba(data), model.predict_proba(DATA))
    np.testing.assert_allclose(model.score(data), model.score(DATA), rtol=1e-12)
    np.testing.assert_allclose(model.bic(data), model.bic(DATA), rtol=1e-12)
    np.testing.assert_allclose(model.aic(data), model.aic(DATA), rtol=1e-12)


def test_inference_checks_feature_count_and_values(tmp_path):
    model = reference("full")
    with pytest.raises(ValueError, match="X has 3 features, but GaussianMixture is expecting 4"):
        model.predict(write_npy(DATA[:, :3], tmp_path))
    X = DATA.copy()
    X[2000, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity in chunk 7 \(rows of 256\), row 2000"):
        model.score(write_npy(X, tmp_path, "nan.npy"))


# ------------------------------------------------------------------------- 5. bad input ------
@pytest.mark.parametrize("name", ["nope.npy", "nope.h5:/x", "nope.zarr", "nope.parquet",
                                  "nope.csv", "nope.xyz"])
def test_missing_file(name, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        gm().fit(str(tmp_path / name))


def test_missing_weight_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="w.npy"):
        gm().fit(write_npy(DATA, tmp_path), sample_weight=str(tmp_path / "w.npy"))


def test_truncated_npy_fails_at_open(tmp_path):
    p = write_npy(DATA, tmp_path)
    size = os.path.getsize(p)
    os.truncate(p, size - 1000)
    header = size - DATA.nbytes
    whole = (size - 1000 - header) // (8 * D)
    msg = rf"x.npy is truncated: its header promises {N} rows x {D} .*\({whole} whole rows\)"
    with pytest.raises(ValueError, match=msg):
        as_source(str(p))
    with pytest.raises(ValueError, match="truncated"):
        gm().fit(p)
    os.truncate(p, 50)  # inside the header
    with pytest.raises(ValueError, match="x.npy is not a readable .npy file"):
        as_source(p)


def test_npy_shrinking_while_read(tmp_path):
    p = write_npy(DATA, tmp_path)
    src = NpySource(p)
    os.truncate(p, os.path.getsize(p) - 100 * 8 * D)
    with pytest.raises(ValueError, match="x.npy is truncated: rows 2304..2999 could not be read"):
        read_pass(Stream(src, CHUNK))
    src.close()
    assert not prefetch_threads()


@pytest.mark.parametrize("content", [b"", b"\x93NUM", b"hello, world\n" * 20,
                                     b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8'}\n" + bytes(64),
                                     bytes(range(256))])
def test_not_a_npy_file(content, tmp_path):
    p = tmp_path / "bad.npy"
    p.write_bytes(content)
    with pytest.raises(ValueError, match="bad.npy is not a readable .npy file"):
        gm().fit(p)


@pytest.mark.parametrize("shape", [(N,), (10, 20, 3), ()])
def test_npy_of_wrong_rank(shape, tmp_path):
    p = write_npy(np.zeros(shape), tmp_path)
    with pytest.raises(ValueError, match=r"x.npy holds an array of shape .*expected 2-D"):
        gm().fit(p)


def test_npy_fortran_order_and_complex(tmp_path):
    p = write_npy(np.asfortranarray(DATA), tmp_path)
    with pytest.raises(ValueError, match="Fortran order"):
        gm().fit(p)
    p = write_npy(DATA.astype(np.complex128), tmp_path, "c.npy")
    with pytest.raises(ValueError, match="c.npy holds dtype complex128; fastmix needs real"):
        gm().fit(p)
    p = write_npy(np.zeros((10, 2), dtype="U3"), tmp_path, "s.npy")
    with pytest.raises(ValueError, match="s.npy holds dtype <U3"):
        gm().fit(p)


def test_npy_with_key_part(tmp_path):
    p = write_npy(DATA, tmp_path)
    with pytest.raises(ValueError, match="a .npy file holds one array"):
        gm().fit(f"{p}:/x")


def test_corrupt_hdf5(tmp_path):
    pytest.importorskip("h5py")
    p = tmp_path / "bad.h5"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="bad.h5 is not a readable HDF5 file"):
        gm().fit(f"{p}:/x")


def test_hdf5_missing_or_wrong_dataset(tmp_path):
    h5py = pytest.importorskip("h5py")
    spec = write_h5(DATA, tmp_path)
    path = spec.split(":")[0]
    with h5py.File(path, "a") as f:
        f.create_dataset("cube", data=np.zeros((4, 3, 2)))
    with pytest.raises(ValueError, match=r"has no dataset '/g/y'; datasets: \[.*'g/x'"):
        gm().fit(f"{path}:/g/y")
    with pytest.raises(ValueError, match="name the dataset"):
        gm().fit(path)
    with pytest.raises(ValueError, match="cube is not a 2-D dataset"):
        gm().fit(f"{path}:/cube")
    with pytest.raises(ValueError, match="/g is not a 2-D dataset"):
        gm().fit(f"{path}:/g")


def test_zarr_group_is_not_an_array(tmp_path):
    spec = write_zarr(DATA, tmp_path, key="a/b")
    store = spec.rsplit(":", 1)[0]
    with pytest.raises(ValueError, match="is not a 2-D Zarr array"):
        gm().fit(store)
    with pytest.raises(ValueError, match="is not a readable Zarr array"):
        gm().fit(f"{store}:/a/nope")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(ValueError, match="empty.zarr is a directory that is not a Zarr array"):
        gm().fit(str(tmp_path / "empty.zarr"))


def test_directory_is_not_taken_for_zarr_silently(tmp_path):
    pytest.importorskip("zarr")
    d = tmp_path / "adir"
    d.mkdir()
    (d / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"adir is a directory that is not a Zarr array"):
        gm().fit(str(d))


def test_parquet_string_column(tmp_path):
    names = np.array(["a", "b", "c"])[np.arange(N) % 3]
    p = write_parquet(DATA, tmp_path, extra={"label": names})
    with pytest.raises(ValueError, match=r"non-numeric column\(s\): label \(string"):
        gm().fit(str(p))
    src = sources.ParquetSource(p, columns=["x0", "x1", "x2", "x3"])
    assert src.n_features == D
    assert_same_fit(gm("full").fit(src), reference("full"))
    with pytest.raises(ValueError, match=r"has no column\(s\) \['nope'\]"):
        sources.ParquetSource(p, columns=["x0", "nope"])


def test_parquet_missing_weight_column(tmp_path):
    p = write_parquet(DATA, tmp_path)
    with pytest.raises(ValueError, match=r"has no column\(s\) \['wt'\]"):
        gm().fit(str(p), sample_weight="wt")


def test_parquet_with_nulls(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    col = pa.array([None if i == 2500 else float(v) for i, v in enumerate(DATA[:, 1])])
    table = pa.table({"x0": DATA[:, 0], "x1": col})
    p = tmp_path / "nulls.parquet"
    pq.write_table(table, p, row_group_size=700)
    with pytest.raises(ValueError, match=r"column 'x1' has a missing value \(null\) in row 2500"):
        gm().fit(str(p))


def test_garbage_parquet_and_csv(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "bad.parquet"
    p.write_bytes(np.random.default_rng(1).bytes(2048))
    with pytest.raises(ValueError, match="bad.parquet is not a readable Parquet file"):
        gm().fit(str(p))
    p = tmp_path / "bad.csv"
    p.write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(ValueError, match="bad.csv"):
        gm().fit(str(p))


def test_csv_integer_looking_first_block(tmp_path):
    """Type inference sees only the first block: a column of whole numbers there and fractions
    later must still read as numbers."""
    X = DATA.copy()
    X[:1500, 0] = np.round(X[:1500, 0])
    p = write_csv(X, tmp_path)
    np.testing.assert_array_equal(np.concatenate(read_source(p)[1]), X)


def test_csv_unused_column_that_changes_type(tmp_path):
    """An unused column that looks numeric in the first block and holds text further down."""
    p = tmp_path / "x.csv"
    ids = [str(i) if i < 2000 else f"id{i}" for i in range(N)]
    rows = [",".join([ids[i]] + [f"{v:.17g}" for v in DATA[i]]) for i in range(N)]
    p.write_text("id,x0,x1,x2,x3\n" + "\n".join(rows) + "\n")
    src = sources.CSVSource(p, columns=["x0", "x1", "x2", "x3"])
    _, parts, _ = read_pass(Stream(src, CHUNK))
    np.testing.assert_array_equal(np.concatenate(parts), DATA)


def test_csv_string_column(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("x0,name\n" + "".join(f"{i}.5,n{i}\n" for i in range(100)))
    with pytest.raises(ValueError, match=r"non-numeric column\(s\): name"):
        gm().fit(str(p))


def test_tsv_is_tab_separated(tmp_path):
    p = tmp_path / "x.tsv"
    np.savetxt(p, DATA, delimiter="\t", header="\t".join(f"x{j}" for j in range(D)),
               comments="", fmt="%.17g")
    assert as_source(p).columns == ["x0", "x1", "x2", "x3"]
    assert_same_fit(gm("full").fit(str(p)), reference("full"))


def test_weight_column_name_needs_a_columnar_source(tmp_path):
    """A column name as sample_weight (or columns=) for data without named columns is an error,
    never silently ignored."""
    pq_path = write_parquet(DATA, tmp_path)
    for data in (write_npy(DATA, tmp_path), str(write_npy(DATA, tmp_path)),
                 write_h5(DATA, tmp_path),
                 write_zarr(DATA, tmp_path), chunks_of(DATA), lambda: iter(chunks_of(DATA)),
                 np.load(write_npy(DATA, tmp_path), mmap_mode="r")):
        with pytest.raises(ValueError, match="sample_weight='w' names a weight column, but .* "
                                             "has no named columns"):
            gm().fit(data, sample_weight="w")
    with pytest.raises(ValueError, match="x.parquet was opened without it: pass "
                                         "weight_column='w'"):
        gm().fit(sources.ParquetSource(pq_path), sample_weight="w")
    with pytest.raises(ValueError, match="x.npy has no named columns"):
        sources.open_path(write_npy(DATA, tmp_path), columns=["x0"])
    # a Parquet source that reads the weight column itself
    src = sources.ParquetSource(write_parquet(DATA, tmp_path, "w.parquet", w=WEIGHTS),
                                weight_column="w")
    assert_same_fit(gm("full").fit(src, sample_weight="w"), reference("full", weighted=True))


def test_zero_weights(tmp_path):
    zero = np.zeros(N)
    msg = "sample weights of .* sum to zero"
    with pytest.raises(ValueError, match=msg):
        gm().fit(write_npy(DATA, tmp_path), sample_weight=write_npy(zero, tmp_path, "w.npy"))
    with pytest.raises(ValueError, match=msg):
        gm().fit(str(write_parquet(DATA, tmp_path, w=zero)), sample_weight="w")
    with pytest.raises(ValueError, match=msg):
        gm().fit(str(write_csv(DATA, tmp_path, w=zero)), sample_weight="w")
    pairs = list(zip(chunks_of(DATA), chunks_of(zero)))
    with pytest.raises(ValueError, match=msg):
        gm().fit(lambda: iter(pairs))
    with pytest.raises(ValueError, match="sample_weight sums to zero"):
        gm().fit(write_npy(DATA, tmp_path), sample_weight=zero)


def test_zero_weight_blocks_are_fine(tmp_path):
    """Only a whole source of zero weights is an error: blocks or batches of zeros are not."""
    _, _, wparts = read_pass(as_stream(DATA[:512], np.zeros(512), chunk_rows=CHUNK))
    assert not np.any(np.concatenate(wparts))
    w = WEIGHTS.copy()
    w[:1100] = 0.0
    p = write_parquet(DATA, tmp_path, w=w)
    for algorithm in ("batch", "online"):
        model = gm("diag", batch_size=512).fit(str(p), sample_weight="w", algorithm=algorithm)
        want = gm("diag", batch_size=512).fit(DATA, sample_weight=w, algorithm=algorithm)
        assert_same_fit(model, want)


def test_chunk_of_wrong_width():
    parts = chunks_of(DATA)
    parts[3] = parts[3][:, :3]
    with pytest.raises(ValueError, match=r"list of chunks: chunk 3 has shape \(1, 3\), expected "
                                         r"\(rows, 4\)"):
        gm().fit(parts)
    parts = chunks_of(DATA)
    parts[4] = parts[4][:, 0]
    with pytest.raises(ValueError, match=r"chunk 4 has shape \(699,\)"):
        gm(**user_init("full")).fit(lambda: iter(parts))
    with pytest.raises(ValueError, match=r"chunk 0 has shape \(3000,\); chunks must be 2-D"):
        gm().fit(lambda: iter([DATA[:, 0]]))


def test_chunk_of_wrong_dtype():
    parts = chunks_of(DATA)
    parts[2] = np.full((1, D), "x")
    with pytest.raises(ValueError, match="chunk 2 has non-numeric dtype <U1"):
        gm().fit(parts)


def test_chunk_weight_pairs_of_different_lengths():
    pairs = [(DATA[:100], WEIGHTS[:100]), (DATA[100:], WEIGHTS[100:-1])]
    with pytest.raises(ValueError, match="chunk 1 has 2900 rows but 2899 weights"):
        gm().fit(lambda: iter(pairs))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("row", [0, 1234, 2999])
def test_nonfinite_value_names_chunk_and_row(bad, row, tmp_path):
    X = DATA.copy()
    X[row, 2] = bad
    if row < N - 1:
        X[N - 1, 0] = np.nan  # a later bad row must not be the one reported
    msg = rf"NaN or infinity in chunk {row // CHUNK} \(rows of {CHUNK}\), row {row}\b"
    p = write_npy(X, tmp_path)
    with pytest.raises(ValueError, match="x.npy: " + msg):
        gm().fit(p)  # k-means sample
    with pytest.raises(ValueError, match="x.npy: " + msg):
        gm(**user_init("full")).fit(p)  # first EM pass
    with pytest.raises(ValueError, match=msg):
        gm().fit(chunks_of(X))
    with pytest.raises(ValueError, match=msg):
        gm().fit(lambda: iter(chunks_of(X)))
    with pytest.raises(ValueError, match=msg):
        read_source(str(write_parquet(X, tmp_path)))
    assert not prefetch_threads()


def test_nonfinite_with_other_chunk_size(tmp_path):
    X = DATA.copy()
    X[1234, 0] = np.inf
    with pytest.raises(ValueError, match=r"chunk 12 \(rows of 100\), row 1234"):
        gm(chunk_size=100).fit(write_npy(X, tmp_path))


def test_empty_sources(tmp_path):
    with pytest.raises(ValueError, match=r"the source is empty \(no chunks\)"):
        gm().fit(lambda: iter([]))
    with pytest.raises(ValueError, match="the source is empty"):
        gm().fit(ReIterable([]))
    with pytest.raises(ValueError, match="the source is empty \\(0 rows\\)"):
        gm().fit(lambda: iter([np.empty((0, D))]))
    with pytest.raises(ValueError, match="0 sample"):
        gm().fit([np.empty((0, D))])
    with pytest.raises(ValueError, match="2D array|empty"):
        gm().fit([])
    p = write_npy(np.empty((0, D)), tmp_path)
    with pytest.raises(ValueError, match="0 sample"):
        gm().fit(p)
    with pytest.raises(ValueError, match="x.npy: the source is empty"):
        read_source(p)


def test_too_few_rows_for_components(tmp_path):
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        gm().fit(write_npy(DATA[:2], tmp_path))


def test_npz_is_refused_with_a_reason(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, X=DATA)
    with pytest.raises(ValueError, match=r"x\.npz: an \.npz archive holds several arrays; save "
                                         r"the data with np\.save"):
        gm().fit(str(p))


@pytest.mark.parametrize("name", ["x.txtx", "x"])
def test_unknown_extension(name, tmp_path):
    p = tmp_path / name
    p.write_bytes(b"1,2\n3,4\n")
    with pytest.raises(ValueError, match="unknown data format"):
        gm().fit(str(p))


def test_bad_weight_in_weight_column(tmp_path):
    w = WEIGHTS.copy()
    w[2100] = -1.0
    for p in (write_parquet(DATA, tmp_path, w=w), write_csv(DATA, tmp_path, w=w)):
        with pytest.raises(ValueError, match=r"sample weights of .*x\.(parquet|csv) must be "
                                             r"non-negative \(row 2100\)"):
            gm().fit(str(p), sample_weight="w")
    w[2100] = np.nan
    p = write_parquet(DATA, tmp_path, w=w)
    with pytest.raises(ValueError, match=r"sample weights of .* contain NaN or infinity "
                                         r"\(row 2100\)"):
        gm().fit(str(p), sample_weight="w")
    p = write_csv(DATA, tmp_path, w=w)  # pyarrow reads "nan" in a CSV as a missing value
    with pytest.raises(ValueError, match=r"weight column 'w' has a missing value \(null\) in "
                                         r"row 2100 "):
        gm().fit(str(p), sample_weight="w")


def test_negative_weight_in_weight_file(tmp_path):
    w = WEIGHTS.copy()
    w[1500] = -2.0
    wp = write_npy(w, tmp_path, "w.npy")
    for data in (write_npy(DATA, tmp_path), write_h5(DATA, tmp_path), chunks_of(DATA)):
        with pytest.raises(ValueError, match=r"sample weights of .*\(.*w.npy\) must be "
                                             r"non-negative \(row 1500\)"):
            gm().fit(data, sample_weight=wp)
    w[1500] = np.inf
    wp = write_npy(w, tmp_path, "w.npy")
    with pytest.raises(ValueError, match=r"contain NaN or infinity \(row 1500\)"):
        gm(**user_init("full")).fit(lambda: iter(chunks_of(DATA)), sample_weight=wp)


def test_weights_of_wrong_length(tmp_path):
    p = write_npy(DATA, tmp_path)
    with pytest.raises(ValueError,
                       match=rf"sample_weight.shape == \({N - 1},\), expected \({N},\)"):
        gm().fit(p, sample_weight=WEIGHTS[:-1])
    with pytest.raises(ValueError, match=rf"sample_weight has {N - 1} rows but .*x.npy has {N}"):
        gm().fit(p, sample_weight=write_npy(WEIGHTS[:-1], tmp_path, "w.npy"))
    two = write_npy(np.column_stack([WEIGHTS, WEIGHTS]), tmp_path, "w2.npy")
    with pytest.raises(ValueError, match="must be one random-access column, got 2 columns"):
        gm().fit(p, sample_weight=two)
    # row count unknown: found out while reading
    with pytest.raises(ValueError, match=rf"sample_weight has {N - 1} entries but .* has more "
                                         "rows"):
        gm().fit(lambda: iter(chunks_of(DATA)), sample_weight=WEIGHTS[:-1])
    with pytest.raises(ValueError, match=rf"sample_weight has {N + 1} entries but .* has {N} "
                                         "rows"):
        gm().fit(lambda: iter(chunks_of(DATA)), sample_weight=np.append(WEIGHTS, 1.0))
    wp = write_npy(WEIGHTS[:-1], tmp_path, "w.npy")
    with pytest.raises(ValueError, match=rf"sample_weight has {N - 1} entries but .* has more "
                                         "rows"):
        gm().fit(lambda: iter(chunks_of(DATA)), sample_weight=wp)
    wp = write_npy(np.append(WEIGHTS, 1.0), tmp_path, "w.npy")
    with pytest.raises(ValueError, match=rf"sample_weight has {N + 1} entries but .* has {N} "
                                         "rows"):
        gm().fit(lambda: iter(chunks_of(DATA)), sample_weight=wp)


# ----------------------------------------------------------------------- 6. NpyWriter --------
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_npy_writer_round_trip(dtype, tmp_path):
    X = (DATA * 100).astype(dtype)
    p2, p1 = tmp_path / "x2.npy", tmp_path / "x1.npy"
    with NpyWriter(p2, dtype, (D,)) as out2, NpyWriter(p1, dtype) as out1:
        for part in np.split(X, [0, 1, 700, 701, 2000]):
            out2.write(part)
            out1.write(part[:, 0])
    np.testing.assert_array_equal(np.load(p2), X)
    assert np.load(p2).dtype == dtype
    np.testing.assert_array_equal(np.load(p1), X[:, 0])
    assert sorted(os.listdir(tmp_path)) == ["x1.npy", "x2.npy"]  # no temporary files left
    # fastmix reads its own output
    np.testing.assert_array_equal(np.concatenate(read_source(p2)[1]),
                                  X.astype(np.float32 if dtype == np.float32 else np.float64))


def test_npy_writer_empty_and_replace(tmp_path):
    p = tmp_path / "e.npy"
    p.write_bytes(b"old")
    with NpyWriter(p, np.float64, (3,)):
        pass
    assert np.load(p).shape == (0, 3)
    assert os.listdir(tmp_path) == ["e.npy"]


def test_npy_writer_leaves_nothing_on_error(tmp_path):
    p = tmp_path / "out.npy"
    with pytest.raises(RuntimeError, match="stop"):
        with NpyWriter(p, np.float64, (D,)) as out:
            out.write(DATA[:100])
            assert list(tmp_path.iterdir()) != []  # the temporary file exists meanwhile
            raise RuntimeError("stop")
    assert not p.exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="does not match"):
        with NpyWriter(p, np.float64, (D,)) as out:
            out.write(DATA[:10, :2])
    assert list(tmp_path.iterdir()) == []


def test_npy_writer_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "out.npy"
    np.save(p, DATA[:5])
    with pytest.raises(KeyboardInterrupt):
        with NpyWriter(p, np.float64, (D,)) as out:
            out.write(DATA)
            raise KeyboardInterrupt
    np.testing.assert_array_equal(np.load(p), DATA[:5])
    assert os.listdir(tmp_path) == ["out.npy"]


# ----------------------------------------------------------------------- 7. prefetch ---------
def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "fastmix-prefetch" and t.is_alive()]


class Boom:
    """Re-iterable chunks whose 3rd chunk raises."""

    def __init__(self, parts, at=2):
        self.parts, self.at = parts, at

    def __iter__(self):
        for i, c in enumerate(self.parts):
            if i == self.at:
                raise RuntimeError("boom")
            yield c


@pytest.mark.parametrize("init", [False, True])
def test_prefetch_error_propagates(init):
    parts = np.split(DATA, 10)
    kw = user_init("full") if init else {}
    with pytest.raises(RuntimeError, match="boom"):
        gm(**kw).fit(Boom(parts))
    assert not prefetch_threads()
    with pytest.raises(RuntimeError, match="boom"):
        read_source(Boom(parts, at=5))
    assert not prefetch_threads()


def test_prefetch_thread_ends_when_consumer_stops(tmp_path):
    stream = Stream(as_source(write_npy(DATA, tmp_path)), CHUNK)
    it = stream.blocks()
    next(it)
    assert len(prefetch_threads()) == 1
    it.close()
    assert not prefetch_threads()

    def consume():
        for start, _, _ in stream.blocks():
            if start > 0:
                raise KeyError("consumer failed")

    with pytest.raises(KeyError):
        consume()
    assert not prefetch_threads()
    _, parts, _ = read_pass(stream)  # the stream still works
    np.testing.assert_array_equal(np.concatenate(parts), DATA)
    stream.close()


# ------------------------------------------------------------------ CSV edges (issue 18) -----
def _csv_rows(X, delimiter=","):
    return "".join(delimiter.join(f"{v:.17g}" for v in row) + "\n" for row in X)


def test_csv_header_only_or_empty_has_no_rows(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "h.csv"
    p.write_text("a,b\n")
    with pytest.raises(ValueError, match=r"h\.csv has no rows \(only a header: a, b\)"):
        gm().fit(str(p))
    p = tmp_path / "e.csv"
    p.write_text("")
    with pytest.raises(ValueError, match=r"e\.csv is empty"):
        gm().fit(str(p))


def test_csv_without_header_keeps_its_first_row(tmp_path):
    """An all-numeric first line is data (header="infer"); header=False/True force it."""
    pytest.importorskip("pyarrow")
    p = tmp_path / "nh.csv"
    p.write_text(_csv_rows(DATA))
    src = as_source(p)
    assert src.columns == ["f0", "f1", "f2", "f3"] and not src.header
    _, parts, _ = read_pass(Stream(src, CHUNK))
    np.testing.assert_array_equal(np.concatenate(parts), DATA)
    assert_same_fit(gm("full").fit(str(p)), reference("full"))
    # header=True: the first line names the columns (the user's choice)
    src = sources.open_path(p, header=True)
    _, parts, _ = read_pass(Stream(src, CHUNK))
    np.testing.assert_array_equal(np.concatenate(parts), DATA[1:])
    # header=False on a file with a header: the header line is not numeric
    h = write_csv(DATA, tmp_path)
    with pytest.raises(ValueError, match="non-numeric column"):
        sources.open_path(h, header=False)
    assert sources.open_path(h).columns == ["x0", "x1", "x2", "x3"]
    with pytest.raises(ValueError, match="header must be 'infer', True or False"):
        sources.CSVSource(p, header="yes")
    with pytest.raises(ValueError, match="header and delimiter options are for delimited text"):
        sources.open_path(write_npy(DATA, tmp_path), header=False)


def test_csv_delimiter(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "semi.csv"
    p.write_text("x0;x1;x2;x3\n" + _csv_rows(DATA, ";"))
    src = sources.open_path(p, delimiter=";")
    assert src.columns == ["x0", "x1", "x2", "x3"]
    assert_same_fit(gm("full").fit(src), reference("full"))
    with pytest.raises(ValueError, match="delimiter must be one character"):
        sources.open_path(p, delimiter=";;")


def test_txt_is_delimited_text_with_sniffed_delimiter(tmp_path):
    """np.savetxt's default (spaces, no header) reads as the same rows."""
    pytest.importorskip("pyarrow")
    p = tmp_path / "x.txt"
    np.savetxt(p, DATA, fmt="%.17g")
    src = as_source(p)
    assert src.delimiter == " " and src.columns == ["f0", "f1", "f2", "f3"]
    _, parts, _ = read_pass(Stream(src, CHUNK))
    np.testing.assert_array_equal(np.concatenate(parts), DATA)


def test_csv_null_cell_names_its_row(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "nul.csv"
    lines = _csv_rows(DATA).splitlines()
    lines[2345] = lines[2345].rsplit(",", 1)[0] + ","  # empty last cell in data row 2345
    p.write_text("x0,x1,x2,x3\n" + "\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"nul\.csv: column 'x3' has a missing value \(null\) "
                                         r"in row 2345 "):
        gm().fit(str(p))
    w = WEIGHTS.astype(object)
    p = tmp_path / "nulw.csv"
    rows = [",".join(f"{v:.17g}" for v in DATA[i]) + "," + ("" if i == 1999 else f"{w[i]:.17g}")
            for i in range(N)]
    p.write_text("x0,x1,x2,x3,w\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"weight column 'w' has a missing value \(null\) in "
                                         r"row 1999 "):
        gm().fit(str(p), sample_weight="w")


def test_rows_read_is_known_after_a_pass(tmp_path):
    pytest.importorskip("pyarrow")
    src = as_source(write_csv(DATA, tmp_path))
    assert src.n_rows is None
    read_pass(Stream(src, CHUNK))
    assert src.rows_read == N


# ---------------------------------------------------------------- output paths, fingerprints --
def test_check_output_path(tmp_path):
    ok = tmp_path / "m.npz"
    assert sources.check_output_path(ok) == str(ok)
    with pytest.raises(FileNotFoundError, match=r"cannot write output file /nonexist/m\.npz: "
                                                r"directory /nonexist does not exist"):
        sources.check_output_path("/nonexist/m.npz")
    with pytest.raises(IsADirectoryError, match=f"cannot write checkpoint {tmp_path}: it is a "
                                                "directory"):
        sources.check_output_path(tmp_path, "checkpoint")
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        sources.check_output_path(f / "m.npz")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(PermissionError, match="is not writable"):
                sources.check_output_path(ro / "m.npz")
        finally:
            ro.chmod(0o700)


def test_npy_writer_error_names_the_path_not_the_temporary_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cannot write output file .*nope/l\.npy") as e:
        NpyWriter(tmp_path / "nope" / "l.npy", np.int64)
    assert ".tmp" not in str(e.value)


def test_fingerprint_follows_the_rows_not_the_format(tmp_path):
    a = sources.fingerprint(ArraySource(DATA))
    assert a["kind"] == "rows" and a["n_rows"] == N
    assert sources.fingerprint(NpySource(write_npy(DATA, tmp_path))) == a
    rows = sources.record._sampled_rows(N)
    other = DATA.copy()
    other[rows[7]] += 1.0
    assert sources.fingerprint(ArraySource(other)) != a
    pytest.importorskip("pyarrow")
    c = sources.fingerprint(as_source(write_csv(DATA, tmp_path)))
    assert c["kind"] == "file" and c["size"] == os.path.getsize(tmp_path / "x.csv")
    assert sources.fingerprint(IterableSource([DATA])) is None


def test_record_differences_say_what_differs(tmp_path):
    s1 = Stream(ArraySource(DATA), CHUNK)
    rec = sources.data_record(s1)
    assert sources.record_differences(rec, rec) == []
    rows = sources.record._sampled_rows(N)
    other = DATA.copy()
    other[rows[3]] *= 2
    diff = sources.record_differences(rec, sources.data_record(Stream(ArraySource(other),
                                                                      CHUNK)))
    assert diff == ["contents differ (sampled rows)"]
    diff = sources.record_differences(rec, sources.data_record(
        Stream(ArraySource(DATA.astype(np.float32)), CHUNK)))
    assert "dtype float64 vs float32" in diff
    diff = sources.record_differences(rec, sources.data_record(
        Stream(ArraySource(DATA), CHUNK, weights=WEIGHTS)))
    assert diff == ["sample weights none vs given"]


def test_record_of_a_dask_array_reads_nothing():
    """A Dask array (and its weights) get no fingerprint (that would compute blocks): the record
    has its shape and says the contents cannot be compared with an in-memory array's."""
    da = pytest.importorskip("dask.array")
    from fastmix import distributed
    data = distributed.DaskData(da.from_array(DATA, chunks=1000), da.ones(N, chunks=1000), CHUNK)
    rec = sources.data_record(data)
    assert rec["kind"] == "dask array" and rec["fingerprint"] is None
    assert (rec["n_rows"], rec["n_features"], rec["weights"]) == (N, D, {"dask": True})
    diff = sources.record_differences(rec, sources.data_record(Stream(ArraySource(DATA), CHUNK)))
    assert "data read as dask array vs ArraySource (contents cannot be compared)" in diff


def test_sources_module_is_a_deprecated_alias_of_io():
    """``fastmix.sources`` (the module before ``fastmix.io``) still gives the same objects for one
    release, with a DeprecationWarning on import."""
    import importlib
    import sys
    sys.modules.pop("fastmix.sources", None)
    with pytest.warns(DeprecationWarning, match="fastmix.io"):
        old = importlib.import_module("fastmix.sources")
    for name in sources.__all__:
        assert getattr(old, name) is getattr(sources, name), name
    assert old.BLOCK_BYTES == sources.base.BLOCK_BYTES


@pytest.mark.parametrize("cov", COV_TYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_kmeans_start_from_a_file_in_blocks_equals_in_memory_on_inexact_data(cov, weighted,
                                                                              tmp_path):
    """The k-means start's hard-assignment statistics are added chunk by chunk, whatever the
    blocks: on data whose sums round (unlike DATA's short decimals) a file read in blocks of
    768 rows gives the in-memory start bit for bit (they were added per block: 1 ulp apart)."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(N, D)) * rng.uniform(0.5, 2.0, size=D) + rng.normal(scale=3, size=D)
    w = rng.uniform(0.1, 3.0, N) if weighted else None
    path = write_npy(X, tmp_path)
    for max_iter in (0, 2):
        ref = gm(cov, max_iter=max_iter).fit(X, sample_weight=w)
        got = gm(cov, max_iter=max_iter).fit(str(path), sample_weight=w)
        assert_same_fit(got, ref)
