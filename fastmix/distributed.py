"""Dask driver: the same kernels mapped over the row blocks of a ``dask.array.Array``.

Every statistics pass (E-step, k-means assignment, random responsibilities) is one task per row
block producing a small (nk, s1, s2, ll, ws) tuple -- O(K D^2) at most; each worker adds the
tuples of the blocks it holds, one task adds the per-worker sums, and only that tuple reaches
the client, which runs the M-step (``DaskData._reduce_parts``).  Bytes moved per pass:
O(workers x K D^2), independent of N.  The parameters go to the workers once per pass
(``Client.scatter`` with ``broadcast=True``), not embedded in every task.  Block sums are added
in double-double arithmetic, so the result does not depend on how blocks were grouped: the same
model for any number of workers or dask's local scheduler, and a local (non-dask) fit of the
same data to rounding (~1e-13: that one adds chunk by chunk).

Initialisation: the same seeded row sample as for a local array (``X[idx]`` for the sorted
indices, 65 536 rows to the client), k-means on it locally, then one distributed assignment
pass: identical to the local initialisation.  ``init_params="random"`` draws each block's
responsibilities on its worker from a seed drawn on the client (reproducible, but not the local
draw); ``"random_from_data"`` with sample weights rejects zero-weight draws.

Files: ``from_file(path)`` makes a dask array whose tasks read their own rows of a .npy, HDF5,
Zarr or Parquet file (the graph holds paths and row ranges, not data).  Sequential consumers
(SGD, ``GMMExpansion.fit``) read the blocks in order on the client (``DaskData.blocks``);
BigLearn-EM's marginal steps are tasks per block like the E-step (``DaskData.marginal_stats``).

Within a task the kernels run on one thread: parallelism comes from Dask (one task per worker
thread).  Passes are bounded in time: ``DASK_TIMEOUT`` seconds (``FASTMIX_DASK_TIMEOUT``,
default 600) per pass, after which a ``TimeoutError`` says the cluster did not answer.
"""
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import kernels, kmeans
from ._validation import check_sample_weight, first_nonfinite_row
from .io import Source, Stream, check_weights_block

#: Seconds a distributed pass (or a scatter) may take before fastmix gives up.
DASK_TIMEOUT = float(os.environ.get("FASTMIX_DASK_TIMEOUT", "600"))


def is_dask_array(X):
    """True for a ``dask.array.Array`` (without importing dask when it is not in use)."""
    if "dask.array" not in sys.modules:
        return False
    import dask.array as da
    return isinstance(X, da.Array)


def _client():
    """The active ``distributed.Client``, or None (then dask's local scheduler is used)."""
    if "distributed" not in sys.modules:
        return None
    import dask
    chosen = dask.config.get("scheduler", None)
    if chosen is not None and chosen not in ("dask.distributed", "distributed"):
        return None  # e.g. dask.config.set(scheduler="threads") inside a client session
    try:
        from distributed import default_client
        return default_client()
    except (ValueError, ImportError):
        return None


# ------------------------------------------------------------------------- tasks ------------
def _hard_stats(X, w, kp, chunk_rows):
    """Statistics of hard assignments to the centres in ``kp`` (k-means), as a local fit
    computes them (``kmeans.hard_stats``, on BLAS)."""
    acc = kernels.Accumulator.for_params(kp)
    return kmeans.hard_stats(X, w, kp.means64, kp.kind, kp.g64, chunk_rows, acc).result()


def _estep_missing(X, w, shared, chunk_rows):
    """The masked E-step of rows with NaN entries (``kernels.estep_stats_missing``; full, tied
    and lowrank with each pattern factorised once per block, as a local fit does once per
    E-step); ``shared`` = (KernelParams, covariances, log-weights)."""
    kp, cov, logw = shared
    if kp.kind in (kernels.FULL, kernels.TIED):
        return kernels.estep_stats_missing_cov(X, w, kp, cov, logw, chunk_rows)
    if kp.kind == kernels.LOWRANK:
        return kernels.estep_stats_missing_lowrank(X, w, kp, cov, logw, chunk_rows)
    return kernels.estep_stats_missing(X, w, kp, cov, logw, chunk_rows)


_PASSES = {"estep": kernels.estep_stats, "nearest": _hard_stats,
           "estep_missing": _estep_missing}


def _block_many(block, wblock, jobs, chunk_rows, offset, validate, hblock=None):
    """Several passes over one block while it is in memory (model selection: every candidate's
    E-step, assignment or score): their tuples concatenated into one flat tuple.  ``hblock``:
    the held-out rows' weights for the scores (None: no held-out rows)."""
    X, w = _prepare(block, wblock, jobs[0][1].means.dtype, offset, validate)
    held = None if hblock is None else np.asarray(hblock, dtype=np.float64).reshape(-1)
    out = []
    with kernels.thread_limit(1):
        for mode, kp in jobs:
            if mode in ("score", "score_entropy"):
                from .selection import score_block
                out.extend(score_block(X, w, kp, chunk_rows, mode == "score_entropy", held))
            else:
                out.extend(_PASSES[mode](X, w, kp, chunk_rows))
    return tuple(out)


def _check_block(X, w, offset, allow_nan=False):
    if allow_nan:  # NaN entries are missing values: only inf and empty rows are errors
        from .io.stream import _check_missing_block
        _check_missing_block(X, offset, max(1, X.shape[0]), f"dask array (block starting at "
                                                             f"row {offset})")
        bad = -1
    else:
        bad = first_nonfinite_row(X)
    if bad >= 0:
        raise ValueError(f"dask array: NaN or infinity in row {offset + bad} (block starting at "
                         f"row {offset}): {X[bad].tolist()[:8]}")
    if w is not None:
        check_weights_block(w, offset, "the dask array")


def _prepare(block, wblock, dtype, offset, validate):
    X = np.ascontiguousarray(block, dtype=dtype)
    w = None if wblock is None else np.ascontiguousarray(wblock, dtype=np.float64)
    if validate:
        _check_block(X, w, offset, allow_nan=validate == "nan")
    return X, w


def _block_stats(block, wblock, mode, kp, chunk_rows, offset, validate):
    dtype = (kp[0] if mode == "estep_missing" else kp).means.dtype
    X, w = _prepare(block, wblock, dtype, offset, validate)
    with kernels.thread_limit(1):
        return _PASSES[mode](X, w, kp, chunk_rows)


def _block_random_resp(block, wblock, kp, chunk_rows, offset, validate, seed, K):
    X, w = _prepare(block, wblock, kp.means.dtype, offset, validate)
    R = np.random.default_rng(seed).uniform(size=(X.shape[0], K))
    R /= R.sum(axis=1, keepdims=True)
    with kernels.thread_limit(1):
        return kernels.resp_stats(X, w, R, kp, chunk_rows)


def _dd(x):
    """A statistic as an unevaluated double-double sum (hi, lo)."""
    return (x, np.zeros_like(x) if isinstance(x, np.ndarray) else 0.0)


def _dd_add(a, b):
    """Double-double addition (Knuth's TwoSum, then renormalisation): the error of the running
    sum is carried in ``lo``, so partial sums can be grouped in any order and ``hi`` of the total
    is the correctly rounded sum except when it lies within ~2^-100 of a rounding tie."""
    (ah, al), (bh, bl) = a, b
    s = ah + bh
    bb = s - ah
    err = (ah - (s - bb)) + (bh - bb)
    lo = al + bl + err
    hi = s + lo
    return hi, lo - (hi - s)


def _sum_list(parts):
    """Sum of statistics tuples (plain per-block tuples, or double-double ones) in list order,
    as a double-double tuple."""
    out = None
    for q in parts:
        q = tuple(x if isinstance(x, tuple) else _dd(x) for x in q)
        out = q if out is None else tuple(_dd_add(a, b) for a, b in zip(out, q))
    return out


def _rounded(dd):
    """The float64 statistics tuple of a double-double one."""
    return tuple(hi for hi, _ in dd)


def distributed_wait(futs, timeout):
    from distributed import wait
    wait(futs, timeout=timeout)


def _tree_sum(parts):
    """Pairwise double-double sums in block order (dask's local schedulers)."""
    from dask import delayed
    add = delayed(_sum_list, pure=True)
    while len(parts) > 1:
        nxt = [add([parts[i], parts[i + 1]]) for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            nxt.append(parts[-1])
        parts = nxt
    return delayed(_sum_list, pure=True)([parts[0]])


def _block_marginal_stats(block, wblock, kp, A, T, chunk_rows, offset, validate):
    """Full-covariance statistics of the block's transformed, sliced rows ``(X A^T)[:, T]``
    (``A`` None: ``X[:, T]``): BigLearn-EM's local step, as ``biglearn.marginal_stats``
    computes it for a host block."""
    X, w = _prepare(block, wblock, kp.means.dtype, offset, validate)
    Y = X if A is None else X @ A.T.astype(X.dtype)
    Y = np.ascontiguousarray(Y[:, T]) if len(T) < X.shape[1] else np.ascontiguousarray(Y)
    with kernels.thread_limit(1):
        acc = kernels.Accumulator(kernels.FULL, kp.means64.shape[0], len(T))
        kernels.estep_stats(Y, w, kp, chunk_rows, acc)
        return acc.result()


def _block_log_prob(block, kp, chunk_rows, what, missing=None):
    X = np.ascontiguousarray(block, dtype=kp.means.dtype)
    if missing is not None:  # (covariances, log-weights): NaN entries are missing values
        _check_block(X, None, 0, allow_nan=True)
        with kernels.thread_limit(1):
            logp, labels, resp = kernels.log_prob_missing(X, kp, missing[0], missing[1],
                                                          chunk_rows, what == "proba")
        return {"logp": logp, "labels": labels, "proba": resp}[what]
    bad = first_nonfinite_row(X)
    if bad >= 0:
        raise ValueError(f"dask array: NaN or infinity in a block (row {bad} of the block)")
    with kernels.thread_limit(1):
        logp, labels, resp = kernels.log_prob(X, kp, chunk_rows, what == "proba")
    return {"logp": logp, "labels": labels, "proba": resp}[what]


def _marginal_task(block, wblock, shared, chunk_rows, offset, validate):
    kp, A, T = shared
    return _block_marginal_stats(block, wblock, kp, A, T, chunk_rows, offset, validate)


# ------------------------------------------------------------------------- data -------------
class _Info:
    """What the initialisation code asks of a data set's source."""
    random_access = True
    has_weights = False


class DaskData:
    """A validated dask array (and optional weights) with the passes the drivers need."""

    is_dask = True
    in_memory = None
    source = _Info()

    def __init__(self, X, sample_weight, chunk_rows):
        import dask.array as da
        if X.ndim != 2:
            raise ValueError(f"Expected a 2-D dask array, got {X.ndim}-D (shape {X.shape})")
        if any(np.isnan(c) for c in X.chunks[0]) or any(np.isnan(c) for c in X.chunks[1]):
            raise ValueError("the dask array has unknown chunk sizes (NaN in X.chunks, e.g. from "
                             "a dask dataframe); call X.compute_chunk_sizes() or use "
                             "df.to_dask_array(lengths=True) first")
        if X.numblocks[1] != 1:
            raise ValueError(f"the dask array's blocks split the features ({X.numblocks[1]} "
                             f"column blocks, chunks {X.chunks[1]}); fastmix needs whole rows "
                             "per block: X = X.rechunk({1: -1})")
        if X.dtype.kind not in "biuf":
            raise ValueError(f"X must be numeric, got dtype {X.dtype}")
        N, D = X.shape
        if D < 1:
            raise ValueError("Found array with 0 feature(s) while a minimum of 1 is required.")
        self.X = X
        self.name = "dask array"
        self.n_rows, self.n_features = int(N), int(D)
        self.dtype = np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64)
        self.chunk_rows = int(chunk_rows)
        self.offsets = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
        self.weights = None
        if sample_weight is not None:
            if isinstance(sample_weight, da.Array):
                if sample_weight.ndim != 1 or sample_weight.shape[0] != N:
                    raise ValueError(f"sample_weight.shape == {sample_weight.shape}, expected "
                                     f"({N},)")
                if any(np.isnan(c) for c in sample_weight.chunks[0]):
                    raise ValueError("sample_weight has unknown chunk sizes; call "
                                     "compute_chunk_sizes() first")
                self.weights = sample_weight.rechunk((X.chunks[0],))
            else:
                sw = check_sample_weight(sample_weight, N)
                self.weights = da.from_array(sw, chunks=(X.chunks[0],))
        self.validated = False
        self.client = _client()
        self._stream = None
        #: NaN entries are missing values (validated as such; "estep_missing" passes)
        self.allow_nan = False

    @property
    def weighted(self):
        return self.weights is not None

    def close(self):
        pass

    # -------------------------------------------------------------------- plumbing ---------
    def _shared(self, obj):
        """Parameters referenced by every task of a pass: one graph literal (``delayed``), sent
        with the graph, moved to the workers that need it, and recomputable anywhere if the
        worker holding it dies.  (A broadcast ``scatter`` waited for every registered worker:
        after a worker was killed mid-fit, one that was registered but not answering made the
        next pass wait for the whole timeout; scattered data is also lost with its worker.)"""
        from dask import delayed
        return delayed(obj, traverse=False)

    def _reduce_parts(self, parts):
        """Sum the per-block statistics (delayed) into one tuple on the client.

        Without a distributed client: a fixed binary tree in block order.  With one, each
        worker first adds the blocks it holds (in block order), then one task adds the
        per-worker sums: the bytes moved per pass are O(workers x size of the statistics),
        whatever the number of blocks.  The grouping follows where Dask ran the blocks; the
        sums are double-double (``_dd_add``), so the rounded totals do not depend on it: the
        same model on 1 or 100 workers, or on the local scheduler (tested)."""
        if self.client is None:
            return _rounded(self._compute(_tree_sum(parts)))
        c = self.client
        try:
            futs = c.compute(parts)
            distributed_wait(futs, timeout=DASK_TIMEOUT)
            where = c.who_has(futs)
            groups = {}
            for i, f in enumerate(futs):
                holders = where.get(f.key) or [None]
                groups.setdefault(holders[0], []).append(i)
            partial = []
            for addr, idx in sorted(groups.items(), key=lambda kv: kv[1][0]):
                args = [futs[i] for i in idx]
                where_kw = {} if addr is None else {"workers": [addr],
                                                   "allow_other_workers": True}
                partial.append(c.submit(_sum_list, args, pure=False, **where_kw))
            total = c.submit(_sum_list, partial, pure=False)
            out = _rounded(total.result(timeout=DASK_TIMEOUT))
        except TimeoutError:
            raise TimeoutError(f"the Dask cluster did not finish a pass within {DASK_TIMEOUT:g} s "
                               "(scheduler or workers lost?); raise FASTMIX_DASK_TIMEOUT for "
                               "slower clusters") from None
        except OSError as exc:  # CommClosedError and friends
            raise ConnectionError(f"lost the Dask scheduler during a pass ({exc})") from None
        return out

    def _compute(self, graph):
        if self.client is None:
            import dask
            return dask.compute(graph)[0]
        fut = self.client.compute(graph)
        try:
            return fut.result(timeout=DASK_TIMEOUT)
        except TimeoutError:
            fut.cancel()
            raise TimeoutError(f"the Dask cluster did not finish a pass within {DASK_TIMEOUT:g} s "
                               "(scheduler or workers lost?); raise FASTMIX_DASK_TIMEOUT for "
                               "slower clusters") from None
        except OSError as exc:  # CommClosedError and friends
            raise ConnectionError(f"lost the Dask scheduler during a pass ({exc})") from None

    def _blocks(self):
        xb = self.X.to_delayed().ravel()
        wb = [None] * len(xb) if self.weights is None else list(self.weights.to_delayed().ravel())
        return list(zip(xb, wb, self.offsets[:-1].tolist()))

    def _finish_pass(self, out, validate):
        if validate:
            if self.weights is not None and not out[4] > 0:
                raise ValueError("sample_weight sums to zero: at least one row needs a positive "
                                 "weight")
            self.validated = True
        return out

    # -------------------------------------------------------------------- passes -----------
    def reduce(self, mode, kp):
        """(nk, s1, s2, ll, ws) of a kernel pass ("estep" or "nearest") over all blocks."""
        from dask import delayed
        validate = not self.validated
        if validate and self.allow_nan:
            validate = "nan"
        shared = self._shared(kp)
        task = delayed(_block_stats, pure=False)
        parts = [task(x, w, mode, shared, self.chunk_rows, off, validate)
                 for x, w, off in self._blocks()]
        return self._finish_pass(self._reduce_parts(parts), validate)

    def reduce_many(self, jobs, held=None):
        """One distributed pass for many kernel passes ``jobs`` = [(mode, kp)] with mode
        "estep", "nearest", "score" or "score_entropy" (``selection.score_block``): every task
        runs all of them on its block; returns one 5-tuple per job.  ``held``: a dask array
        (N,) of the held-out rows' weights the scores use (None: no held-out rows)."""
        from dask import delayed
        validate = not self.validated
        shared = self._shared(list(jobs))
        task = delayed(_block_many, pure=False)
        blocks = self._blocks()
        hb = [None] * len(blocks) if held is None else \
            list(held.rechunk((self.X.chunks[0],)).to_delayed().ravel())
        parts = [task(x, w, shared, self.chunk_rows, off, validate, h)
                 for (x, w, off), h in zip(blocks, hb)]
        flat = self._reduce_parts(parts)
        if validate:
            self.validated = True
        return [tuple(flat[5 * i:5 * i + 5]) for i in range(len(jobs))]

    def random_resp(self, K, kp, rng):
        """Statistics of uniform random responsibilities drawn on the workers (block seeds
        from ``rng``)."""
        from dask import delayed
        validate = not self.validated
        blocks = self._blocks()
        seeds = rng.integers(0, 2**63 - 1, size=len(blocks))
        shared = self._shared(kp)
        task = delayed(_block_random_resp, pure=False)
        parts = [task(x, w, shared, self.chunk_rows, off, validate, int(s), K)
                 for (x, w, off), s in zip(blocks, seeds)]
        return self._finish_pass(self._reduce_parts(parts), validate)

    def marginal_stats(self, kp, A, T):
        """BigLearn-EM's statistics (nk, s1, s2, ll, ws) of the rows ``(X A^T)[:, T]``, one
        task per block (the signature of ``biglearn.marginal_stats`` with the data bound)."""
        from dask import delayed
        validate = not self.validated
        shared = self._shared((kp, A, np.asarray(T)))
        task = delayed(_marginal_task, pure=False)
        parts = [task(x, w, shared, self.chunk_rows, off, validate)
                 for x, w, off in self._blocks()]
        return self._finish_pass(self._reduce_parts(parts), validate)

    def blocks(self, validate=None):
        """The rows in order, as a host ``io.Stream`` reads them: (start, X block, w block
        or None) in blocks of whole kernel chunks (the dask blocks are computed one after the
        other, the next while the current one is used, and re-cut into the block size a local
        Stream uses, so a sequential consumer such as SGD sees the blocks it sees on a file of
        the same rows).  Memory on the client: about two blocks."""
        if self._stream is None:
            self._stream = Stream(_DaskBlocks(self), self.chunk_rows)
        self._stream.validated = self._stream.validated or self.validated
        for item in self._stream.blocks(validate):
            yield item
        self.validated = self.validated or self._stream.validated

    def gather(self, idx):
        """Rows ``idx`` (sorted int64) and their weights, computed on the cluster."""
        X = np.ascontiguousarray(self._compute(self.X[idx]), dtype=self.dtype)
        w = None if self.weights is None else np.asarray(self._compute(self.weights[idx]),
                                                          dtype=np.float64)
        return X, w

    def head(self, n):
        return np.ascontiguousarray(self._compute(self.X[:n]), dtype=np.float64)

    def random_rows(self, K, rng):
        """K distinct rows uniformly among those with positive weight (rejection when weighted;
        without weights the same draw as for a local array)."""
        N = self.n_rows
        if self.weights is None:
            idx = rng.choice(N, size=K, replace=False)
            order = np.argsort(idx)
            rows = np.empty((K, self.n_features), self.dtype)
            rows[order] = self.gather(idx[order])[0]
            return rows
        chosen = []
        for _ in range(100):
            cand = np.setdiff1d(rng.choice(N, size=min(N, 4 * K), replace=False), chosen)
            cand.sort()
            _, w = self.gather(cand)
            chosen.extend(cand[w > 0][:K - len(chosen)].tolist())
            if len(chosen) == K:
                return self.gather(np.sort(np.array(chosen)))[0]
        raise ValueError(f"init_params='random_from_data' needs at least n_components={K} rows "
                         "with positive sample_weight; could not find them by sampling")

    def log_prob_arrays(self, kp, what, missing=None):
        """Lazy per-row results as a dask array: "logp" (N,), "labels" (N,), "proba" (N, K).
        ``missing`` = (covariances, log-weights): NaN entries are missing values (scored on
        each row's observed entries)."""
        K = kp.means.shape[0]
        if what == "proba":
            return self.X.map_blocks(_block_log_prob, kp, self.chunk_rows, what, missing,
                                     chunks=(self.X.chunks[0], (K,)), dtype=np.float64)
        return self.X.map_blocks(_block_log_prob, kp, self.chunk_rows, what, missing,
                                 drop_axis=1, dtype=np.int64 if what == "labels" else np.float64)

    def missing_summary(self):
        """(observed mean of each column (D,) float64, whether any entry is NaN), computed on
        the cluster; ValueError for inf, a row or a column with nothing observed."""
        import dask.array as da
        X = self.X.astype(self.dtype)
        nan = da.isnan(X)
        inf = da.isinf(X).any(axis=1)
        empty = nan.all(axis=1)
        count = (~nan).sum(axis=0)
        total = da.where(nan, 0, X).sum(axis=0, dtype=np.float64)
        any_inf, inf_row, any_empty, empty_row, count, total = self._compute(
            (inf.any(), da.argmax(inf), empty.any(), da.argmax(empty), count, total))
        if any_inf:
            raise ValueError(f"dask array: infinity in row {int(inf_row)} (only NaN marks "
                             "a missing value)")
        if any_empty:
            raise ValueError(f"dask array: row {int(empty_row)} has every entry missing "
                             "(NaN): it carries no information; drop it")
        count = np.asarray(count, dtype=np.float64)
        if np.any(count == 0):
            raise ValueError(f"column {int(np.flatnonzero(count == 0)[0])} of the dask array "
                             "has every entry missing (NaN): drop the column")
        return (np.asarray(total, np.float64) / count,
                bool(count.sum() < float(self.n_rows) * self.n_features))

    def filled(self, means):
        """A DaskData of the same rows and weights with each NaN replaced by ``means``."""
        import dask.array as da
        X = self.X.astype(self.dtype)
        out = DaskData(da.where(da.isnan(X), means.astype(self.dtype), X), None,
                       self.chunk_rows)
        out.weights = self.weights
        out.validated = True
        return out



class _DaskBlocks(Source):
    """A ``DaskData``'s row blocks computed one by one, in order (a sequential source)."""

    def __init__(self, data):
        self.data = data
        self.name = data.name
        self.n_rows, self.n_features = data.n_rows, data.n_features
        self.dtype = data.dtype
        self.has_weights = data.weights is not None

    def pieces(self):
        d = self.data
        for i in range(d.X.numblocks[0]):
            X = np.asarray(d._compute(d.X.blocks[i]))
            if d.weights is None:
                yield X
            else:
                yield X, np.asarray(d._compute(d.weights.blocks[i]))


# ------------------------------------------------------------------------- files ------------
#: Default bytes per block of ``from_file`` (rows rounded to whole Zarr chunks / row groups).
FILE_BLOCK_BYTES = 64 * 2**20


def _read_file_block(path, start, stop, n_rows, kwargs):
    """Rows start..stop-1 of a .npy / HDF5 / Zarr file, read where the task runs."""
    from .io import open_path
    with open_path(path, **kwargs) as src:
        if src.n_rows != n_rows:
            raise ValueError(f"{path} changed since the dask array was made: {src.n_rows} rows "
                             f"instead of {n_rows}")
        out = np.empty((stop - start, src.n_features), src.dtype)
        src.read_rows(start, stop, out)
    return out


def _read_parquet_groups(path, groups, kwargs):
    """The rows of row groups ``groups`` of a Parquet file, read where the task runs."""
    from .io import open_path
    from .io.columnar import _batch_to_numpy
    with open_path(path, **kwargs) as src:
        parts = [_batch_to_numpy(b, src.columns, None, src.dtype, src.name)
                 for b in src._pf.iter_batches(row_groups=list(groups), columns=src.columns,
                                               batch_size=src.batch_rows)]
        if not parts:
            return np.empty((0, src.n_features), src.dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def from_file(path: str | os.PathLike, chunk_rows: int | None = None,
              **source_kwargs: Any) -> Any:
    """Open a file as a dask array whose blocks are read by the tasks that use them.

    Each task holds only the path and its row range, so the graph stays a few kB whatever the
    file size (``da.from_array(np.load(path, mmap_mode="r"))`` puts the whole array into the
    graph).  The workers must see the file under the same path (a shared file system);
    relative paths are made absolute.

    Parameters
    ----------
    path : str or os.PathLike
        ``x.npy``, ``x.h5:/group/dataset``, ``x.zarr`` (or ``x.zarr:/member``) or ``x.parquet``,
        read by the readers of ``fastmix.io``.
    chunk_rows : int, optional
        Rows per dask block.  Default: about 64 MiB of rows, rounded to whole Zarr chunks
        (Zarr) or whole row groups (Parquet, whose blocks are always whole row groups: a
        block gathers row groups until it has at least ``chunk_rows`` rows).
    **source_kwargs
        ``columns=[...]`` for Parquet (the feature columns; default all).

    Returns
    -------
    dask.array.Array of shape (N, D)
        The rows, of dtype float32 for float32 data, else float64 (the dtype fastmix computes
        in); one block per row range, all features in each block.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        For CSV (no row index: a task could not read its rows without reading the file from the
        start; convert it to Parquet or .npy), a weight column (read weights as their own
        array: ``from_file(p, columns=["w"])[:, 0]``), an unreadable file or a bad
        ``chunk_rows``.

    See Also
    --------
    fastmix.io.open_path : The readers used, one per format.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix.distributed import from_file
    >>> np.save("data.npy", np.arange(20.0).reshape(10, 2))
    >>> X = from_file("data.npy", chunk_rows=4)
    >>> X.shape, X.chunks[0]
    ((10, 2), (4, 4, 2))
    >>> float(X.sum().compute())
    190.0
    """
    import dask.array as da
    from dask import delayed

    from .io import ParquetSource, ZarrSource, open_path, split_key
    if "weight_column" in source_kwargs:
        raise ValueError("from_file reads features only; read sample weights as their own "
                         "array, e.g. from_file(path, columns=['w'])[:, 0]")
    if chunk_rows is not None and (isinstance(chunk_rows, bool) or
                                   not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1):
        raise ValueError(f"chunk_rows must be a positive integer or None, got {chunk_rows!r}")
    file, key = split_key(os.fspath(path))
    if Path(file).suffix.lower() in (".csv", ".tsv", ".txt"):
        raise ValueError(f"{path}: from_file does not read CSV files (no row index: every block "
                         "would read the file from its start); convert it to Parquet or .npy, "
                         "or fit the CSV path directly")
    file = os.path.abspath(file)
    path = file if key is None else f"{file}:{key}"
    sizes = None  # Parquet: rows per row group
    with open_path(path, **source_kwargs) as src:
        if src.n_rows is None:  # pragma: no cover - CSV is refused above; the others know it
            raise ValueError(f"{path}: the number of rows is not known before reading")
        N, D, dtype = src.n_rows, src.n_features, src.dtype
        default = max(1, FILE_BLOCK_BYTES // (dtype.itemsize * D))
        if isinstance(src, ParquetSource):
            md = src._pf.metadata
            sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        elif isinstance(src, ZarrSource) and chunk_rows is None:
            z = src.z.chunks[0]
            default = max(1, default // z) * z
    target = default if chunk_rows is None else int(chunk_rows)
    blocks = []
    if sizes is not None:
        read = delayed(_read_parquet_groups, pure=True)
        group: list[int] = []
        rows = 0
        for i, n in enumerate(sizes + [None]):
            if n is None or (group and rows >= target):
                if rows:
                    blocks.append(da.from_delayed(read(path, tuple(group), source_kwargs),
                                                  shape=(rows, D), dtype=dtype))
                group, rows = [], 0
            if n is not None:
                group.append(i)
                rows += n
    else:
        read = delayed(_read_file_block, pure=True)
        for start in range(0, N, target):
            stop = min(N, start + target)
            blocks.append(da.from_delayed(read(path, start, stop, N, source_kwargs),
                                          shape=(stop - start, D), dtype=dtype))
    if not blocks:
        raise ValueError(f"{path}: the file has no rows")
    return blocks[0] if len(blocks) == 1 else da.concatenate(blocks, axis=0)
