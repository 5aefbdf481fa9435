"""``select_mixture``: choose the number of components and the covariance type of a Gaussian
mixture by BIC, ICL or held-out log-likelihood, fitting every candidate with one read of the
data per EM iteration (driver: ``fastmix.selection``)."""
import math
import numbers
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .._compute import blas_single_threaded
from .._params import COVARIANCE_TYPES
from .._validation import check_random_state
from .. import distributed
from .. import io as sources
from .. import selection as _sel
from ._base import _fit_dtype
from ._gaussian import ConvergenceWarning, GaussianMixture
from ._typing import DataLike, RandomStateLike


class SelectionResult:  # numpydoc ignore=PR01
    # (made by select_mixture only: the constructor's arguments are internal)
    """What ``select_mixture`` found: every candidate's scores and the best model.

    The attributes carry scikit-learn's ``GridSearchCV`` names where they apply.

    Attributes
    ----------
    criterion : str
    results_ : dict of (n_candidates,) numpy arrays
        ``n_components`` int64, ``covariance_type`` str, ``score`` float64 (the criterion,
        lower is better), ``bic`` float64 (NaN for "heldout"), ``log_likelihood`` (sum of
        log p(x) of the final model over the rows it was fitted on), ``heldout_log_likelihood``
        (NaN unless "heldout"), ``entropy`` (NaN unless "icl"), ``n_parameters`` int64,
        ``n_iter`` int64, ``converged`` bool, ``time`` float64 (seconds spent on the candidate:
        its start, E-steps, M-steps and score; shared reads counted once, for the first user).
    best_index_ : int
        Row of ``results_`` with the lowest score.
    best_params_ : dict
        ``{"n_components": K, "covariance_type": type}`` of the best candidate.
    best_score_ : float
    best_estimator_ : GaussianMixture
        The best candidate as a fitted model (the same parameters a separate
        ``GaussianMixture(**best_params_, random_state=...)`` fit reaches from the same start).
    n_passes_ : int
        Passes over the data (starts, EM iterations and scoring, all candidates together).
    bytes_read_ : list of int
        Bytes read in each pass; with ``pass_kinds_`` ("start" or "em").
    random_state_ : int
        The seed every candidate's start used.

    See Also
    --------
    select_mixture : Makes it.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix import select_mixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(-4, 1, (200, 2)), rng.normal(4, 1, (200, 2))])
    >>> result = select_mixture(X, n_components=range(1, 4), covariance_types="full",
    ...                         random_state=0)
    >>> result.best_params_
    {'n_components': 2, 'covariance_type': 'full'}
    >>> result.results_["n_components"]
    array([1, 2, 3])
    """

    def __init__(self, criterion: str, cands: list, stats: Any, template: Any, dtype: Any,
                 seed: int) -> None:
        self.criterion = criterion
        self._cands = cands
        self._template = template
        self._dtype = dtype
        self.random_state_ = seed
        scores = np.array([_sel.score(c, criterion) for c in cands])
        r = {
            "n_components": np.array([c.n_components for c in cands], dtype=np.int64),
            "covariance_type": np.array([c.covariance_type for c in cands]),
            "score": scores,
            "bic": np.array([np.nan if criterion == "heldout" else _sel.score(c, "bic")
                             for c in cands]),
            "log_likelihood": np.array([c.log_likelihood for c in cands]),
            "heldout_log_likelihood": np.array([c.heldout_log_likelihood if criterion ==
                                                "heldout" else np.nan for c in cands]),
            "entropy": np.array([c.entropy if criterion == "icl" else np.nan for c in cands]),
            "n_parameters": np.array([c.n_parameters for c in cands], dtype=np.int64),
            "n_iter": np.array([c.n_iter for c in cands], dtype=np.int64),
            "converged": np.array([c.converged for c in cands], dtype=bool),
            "time": np.array([c.seconds for c in cands]),
        }
        self.results_ = r
        finite = np.where(np.isfinite(scores), scores, np.inf)
        self.best_index_ = int(np.argmin(finite))
        b = cands[self.best_index_]
        self.best_params_ = {"n_components": b.n_components, "covariance_type": b.covariance_type}
        self.best_score_ = float(scores[self.best_index_])
        self.n_passes_ = stats.n_passes
        self.bytes_read_ = list(stats.pass_bytes)
        self.pass_kinds_ = list(stats.pass_kinds)
        self.best_estimator_ = self.estimator(self.best_index_)

    def __len__(self):
        return len(self._cands)

    def estimator(self, i: int) -> Any:
        """Return candidate ``i`` (a row of ``results_``) as a fitted ``GaussianMixture``.

        Parameters
        ----------
        i : int
            The row of ``results_``.

        Returns
        -------
        GaussianMixture
            The candidate's fitted model.

        Raises
        ------
        IndexError
            When ``i`` is not a row of ``results_``.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import select_mixture
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> result = select_mixture(X, n_components=range(1, 3), covariance_types="diag",
        ...                         random_state=0)
        >>> result.estimator(1).n_components
        2
        """
        c = self._cands[i]
        est = GaussianMixture(**{**self._template, "n_components": c.n_components,
                                 "covariance_type": c.covariance_type})
        est._set_params_from(c.params, self._dtype)
        est.converged_ = bool(c.converged)
        est.n_iter_ = int(c.n_iter)
        est.lower_bound_ = float(c.lower_bound)
        est.lower_bounds_ = list(c.lower_bounds)
        est.iteration_times_ = list(c.iter_times)
        est.n_features_in_ = c.params.n_features
        est._fitted_on = None
        est._online = None
        return est

    def to_dict(self) -> dict:
        """Summarise the result as a JSON-serialisable dict (the CLI's ``--report``).

        Returns
        -------
        dict
            The criterion, the best index and parameters, and one entry per candidate.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import select_mixture
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> result = select_mixture(X, n_components=range(1, 3), covariance_types="diag",
        ...                         random_state=0)
        >>> import json
        >>> report = json.loads(json.dumps(result.to_dict()))
        >>> report["criterion"], len(report["candidates"])
        ('bic', 2)
        """
        rows = []
        for i in range(len(self)):
            row = {}
            for k, v in self.results_.items():
                x = v[i].item() if hasattr(v[i], "item") else v[i]
                row[k] = None if isinstance(x, float) and not math.isfinite(x) else x
            rows.append(row)
        return {"criterion": self.criterion, "best_index": self.best_index_,
                "best_params": self.best_params_, "best_score": self.best_score_,
                "n_passes": self.n_passes_, "bytes_read": self.bytes_read_,
                "pass_kinds": self.pass_kinds_, "random_state": self.random_state_,
                "candidates": rows}

    def __repr__(self):
        return (f"SelectionResult(criterion={self.criterion!r}, candidates={len(self)}, "
                f"best={self.best_params_}, score={self.best_score_:.6g}, "
                f"passes={self.n_passes_})")


def _check_ks(n_components):
    if isinstance(n_components, (numbers.Integral,)) and not isinstance(n_components, bool):
        n_components = [n_components]
    try:
        ks = list(n_components)
    except TypeError:
        raise ValueError(f"n_components must be an integer or a non-empty sequence of integers "
                         f">= 1, got {n_components!r}") from None
    if not ks:
        raise ValueError("n_components is empty: give at least one number of components "
                         "(e.g. range(1, 10))")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"n_components must contain integers >= 1, got {k!r}")
    return sorted({int(k) for k in ks})


def _check_types(covariance_types):
    kinds = [covariance_types] if isinstance(covariance_types, str) else \
        list(covariance_types)
    if not kinds:
        raise ValueError(f"covariance_types is empty: give at least one of {COVARIANCE_TYPES}")
    bad = [k for k in kinds if k not in COVARIANCE_TYPES]
    if bad:
        raise ValueError(f"covariance_types must be among {COVARIANCE_TYPES}, got {bad}")
    return list(dict.fromkeys(kinds))


def _seed(random_state):
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    return int(check_random_state(random_state).integers(0, 2**31 - 1))


def select_mixture(X: DataLike, n_components: int | Iterable[int] = range(1, 10),
                   covariance_types: str | Iterable[str] = ("full", "tied", "diag",
                                                                    "spherical"),
                   *, sample_weight: DataLike | None = None, criterion: str = "bic",
                   heldout_fraction: float = 0.2, start: str = "kmeans", tol: float = 1e-3,
                   reg_covar: float = 1e-6, max_iter: int = 100, n_init: int = 1,
                   random_state: RandomStateLike = None, chunk_size: int | None = None,
                   n_factors: int | None = None, device: str = "cpu", progress: bool = False,
                   callback: Callable[..., Any] | None = None) -> "SelectionResult":
    """Fit a Gaussian mixture for every K and covariance type, and pick the best.

    The candidates are scored by BIC, ICL or held-out log-likelihood; the data are read once
    per EM iteration for all candidates together.

    Parameters
    ----------
    X : array-like (N, D), or out-of-core data (a path: ``.npy``, ``file.h5:/dataset``,
        ``.zarr``, ``.parquet``, ``.csv``; an ``np.memmap``; a ``fastmix.io.Source``; a list of
        chunk arrays; a callable returning an iterator of chunks), or a dask array.
    n_components : int or iterable of int >= 1, default=range(1, 10)
        The numbers of components to try (mclust's default range).
    covariance_types : str or iterable of str, default=("full", "tied", "diag", "spherical")
        The covariance types to try, among "full", "tied", "diag", "spherical", "lowrank".
    sample_weight : (N,) non-negative float array, optional
        Every candidate is fitted as ``GaussianMixture.fit(X, sample_weight=...)`` is.  For
        out-of-core data also a path to a ``.npy`` of N weights, a 1-D random-access Source, or
        the name of a weight column of a Parquet/CSV file; for a dask array X, a dask or numpy
        array.  The weights count as frequencies in the scores: log L (and the ICL entropy) are
        weighted sums and BIC's n is the sum of the weights, so integer weights score as
        repeated rows.  With ``criterion="heldout"`` the weights multiply the training mask of
        the split (the fit's weights) and weight the held-out rows' log-likelihoods.
    criterion : {"bic", "icl", "heldout"}, default="bic"
        Lower is better for all three.  "bic": -2 log L + p log N.  "icl": BIC + 2 x the
        entropy of the responsibilities, -sum_i sum_k r_ik log r_ik (Biernacki, Celeux &
        Govaert 2000), which penalises overlapping components.  "heldout": every candidate is
        fitted on the training rows and scored by -2 x the log-likelihood of the held-out rows.
    heldout_fraction : float in (0, 1), default=0.2
        Share of rows held out for ``criterion="heldout"``: row i is held out when a seeded
        hash of i falls below it, so files, streams and dask arrays are split as arrays are.
    start : {"kmeans", "hierarchical", "split"}, default="kmeans"
        "kmeans": each candidate starts where ``GaussianMixture(random_state=...)`` starts
        (its result equals that separate fit).  "hierarchical": Ward's hierarchical clustering
        of a sample of at most 2000 rows cut at every K (mclust-style).  "split": K + 1 starts
        from the fitted K-component model with the component of largest local KL divergence
        between its data and its Gaussian split (Ueda et al. 2000); the candidates of a
        covariance type then run one after the other.  See the user guide for measurements.
    tol, reg_covar, max_iter : float, float, int
        As for ``GaussianMixture`` (the same for every candidate).
    n_init : int, default=1
        Initialisations per candidate: each candidate keeps the run with the highest final
        lower bound, as ``GaussianMixture(n_init=...)`` does (with ``start="kmeans"`` it equals
        that separate fit; the runs of all candidates share the passes over the data).  With
        ``start="split"`` only the smallest K has several starts (the larger ones grow from
        the best); ``start="hierarchical"`` is deterministic and takes ``n_init=1`` only.
    random_state : int, numpy.random.Generator, numpy.random.RandomState or None
        Seed of every candidate's start and of the held-out split (a generator is drawn from
        once for an integer seed, reported as ``random_state_``).
    chunk_size : int or None, default=None
        As for ``GaussianMixture``.
    n_factors : int or None, default=None
        As for ``GaussianMixture``, for "lowrank".
    device : {"cpu", "cuda"}, default="cpu"
        Where the candidates' E-steps and scores run.  "cuda": on the GPU path of
        ``GaussianMixture(device="cuda")`` (``pip install 'fastmix[cuda]'``): an in-memory
        array that fits in device memory is copied once and stays there for the whole sweep
        (each candidate's E-step is then the call a separate GPU fit makes); other data go to
        the device block by block, each block once per pass for all candidates.  Starts are
        computed on the CPU, as ``GaussianMixture`` computes them.  Dask arrays take
        ``device="cpu"``.
    progress : bool, default=False
        A tqdm progress bar (stderr) over the candidates, with the pass count.
    callback : callable, optional
        ``callback(n_pass, candidates)`` after every pass (``fastmix.selection.Candidate``;
        with ``n_init > 1`` one per run, ``init`` telling which).

    Returns
    -------
    SelectionResult
        ``results_`` (every candidate's score, log-likelihood, parameters, iterations, time),
        ``best_estimator_`` (a fitted ``GaussianMixture``), ``best_params_``,
        ``bytes_read_``/``n_passes_``.

    Examples
    --------
    >>> import numpy as np, fastmix
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-4, 1, (300, 2)), rng.normal(4, 1, (300, 2))])
    >>> sel = fastmix.select_mixture(X, n_components=range(1, 5),
    ...                              covariance_types=("full", "spherical"), random_state=0)
    >>> sel.best_params_["n_components"]
    2
    """
    ks = _check_ks(n_components)
    kinds = _check_types(covariance_types)
    if criterion not in _sel.CRITERIA:
        raise ValueError(f"criterion must be one of {_sel.CRITERIA}, got {criterion!r}")
    if start not in _sel.STARTS:
        raise ValueError(f"start must be one of {_sel.STARTS}, got {start!r}")
    if start == "split" and "lowrank" in kinds:
        raise ValueError("start='split' does not support covariance_type 'lowrank'; use "
                         "start='kmeans' or 'hierarchical'")
    if criterion == "heldout":
        if isinstance(heldout_fraction, bool) or not isinstance(
                heldout_fraction, numbers.Real) or not 0 < heldout_fraction < 1:
            raise ValueError(f"heldout_fraction must be a number in (0, 1), got "
                             f"{heldout_fraction!r}")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable, got {callback!r}")
    template: dict[str, Any] = dict(tol=tol, reg_covar=reg_covar, max_iter=max_iter,
                                    n_init=n_init, chunk_size=chunk_size, n_factors=n_factors,
                                    device=device)
    for kind in kinds:  # GaussianMixture's checks and messages for the shared settings
        GaussianMixture(n_components=ks[0], covariance_type=kind, **template)._validate_params()
    n_init = int(n_init)
    if n_init > 1 and start == "hierarchical":
        raise ValueError(f"n_init={n_init} needs a random start: start='hierarchical' is "
                         f"deterministic (every initialisation would be the same); use "
                         f"n_init=1 or start='kmeans'")
    seed = _seed(random_state)
    template["random_state"] = seed
    gm = GaussianMixture(n_components=ks[-1], **template)
    gpu = gm._gpu(X)  # None on the CPU; says what is missing (or not supported) for "cuda"
    data, plain, split, opened = _open(gm, X, sample_weight, criterion, heldout_fraction, seed)
    engine = None
    try:
        D = data.n_features
        if "lowrank" in kinds:
            gm._q(D)
        lowrank = dict(n_factors=gm._q(D) if "lowrank" in kinds else 0, isotropic=False,
                       loadings=None)
        _check_rows(data, ks[-1], criterion)
        cands = []
        for kind in kinds:
            for K in ks:
                runs = [_sel.Candidate(K, kind, init=i) for i in range(n_init)]
                for r in runs:
                    r.group = runs if n_init > 1 else None
                cands += runs
        n_models = len(ks) * len(kinds)
        stats = _sel.SweepStats()
        work = _sel.cache_blocked(plain)
        if gpu is not None:  # an in-memory array stays on the device when it fits there
            Xm = work.in_memory
            resident = Xm is not None and gpu.fits_on_device(Xm.nbytes) and \
                (work.block_rows or 0) >= Xm.shape[0]
            engine = _sel.GpuEngine(resident)
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=n_models, desc="select", unit="model", file=sys.stderr)

        def on_pass(n_pass, cs):
            if bar is not None:
                done = sum(c.status == "done" for c in cs)
                bar.update(done - bar.n)
                bar.set_postfix(passes=stats.n_passes,
                                running=sum(c.status == "running" for c in cs))
            if callback is not None:
                callback(n_pass, cs)

        with blas_single_threaded():
            successor = None
            # the starts read the data as a separate fit does (an in-memory array as one
            # block: the k-means assignment statistics are summed per block), the EM passes
            # as ``cache_blocked`` cuts them (by default an in-memory array stays one block;
            # the E-step adds chunk partials, so blocks change nothing)
            if start == "split":
                first = [c for c in cands if c.n_components == ks[0]]
                _sel.kmeans_starts(data, first, seed, reg_covar, lowrank, stats)
                rng = np.random.default_rng(seed)
                sample = _init_sample(data, ks[-1], rng)
                successor = _sel.split_successor({k: ks for k in kinds}, sample,
                                                 work.chunk_rows, float(reg_covar))
                cands = first
            elif start == "hierarchical":
                _sel.hierarchical_starts(data, cands, seed, reg_covar, lowrank, stats)
            else:
                _sel.kmeans_starts(data, cands, seed, reg_covar, lowrank, stats)
            try:
                _sel.sweep(work, cands, reg_covar=float(reg_covar), tol=float(tol),
                           max_iter=int(max_iter), criterion=criterion, stats=stats,
                           successor=successor, callback=on_pass, split=split,
                           engine=engine)
            finally:
                if bar is not None:
                    bar.close()
                if engine is not None:
                    engine.close()
        cands = _sel.best_runs(cands)  # one per model: the best of its n_init runs
        if start == "split":  # in the order of the grid
            order = {(kind, K): i for i, (kind, K) in
                     enumerate((kind, K) for kind in kinds for K in ks)}
            cands.sort(key=lambda c: order[(c.covariance_type, c.n_components)])
        n_bad = sum(not c.converged for c in cands)
        if n_bad and max_iter > 0:
            warnings.warn(f"{n_bad} of {len(cands)} candidates did not converge within "
                          f"max_iter={max_iter} (see results_['converged']).",
                          ConvergenceWarning, stacklevel=2)
        return SelectionResult(criterion, cands, stats, template, _fit_dtype(data), seed)
    finally:
        if opened:
            plain.close()


def _init_sample(data, K, rng):
    from .. import init as _init
    return _init._subsample(data, K, rng)


def _check_rows(data, K, criterion):
    n = data.n_rows
    if n is None:
        return
    if n < 2:
        raise ValueError(f"Found array with {n} sample(s) while a minimum of 2 is required.")
    if n < K:
        raise ValueError(f"n_components asks for up to {K} components but the data have only "
                         f"{n} rows (need n_samples >= n_components)")
    if criterion == "heldout":
        w = data.weights
        n_train = int(np.count_nonzero(w > 0)) if isinstance(w, np.ndarray) else None
        if n_train is not None and n_train < K:
            raise ValueError(f"n_components asks for up to {K} components but only {n_train} "
                             f"training rows remain after holding out; lower heldout_fraction")


def _open(gm, X, sample_weight, criterion, fraction, seed):
    """(data, sweep_data, split, opened): ``data`` (a Stream or DaskData) reads X with the
    weights a separate fit gets -- ``sample_weight``, times the training mask of the held-out
    split for criterion="heldout" -- and serves the starts; ``sweep_data`` is what the EM passes
    read (for "heldout" on local data: the plain sample weights, the sweep applying ``split``
    block by block so that it also has the held-out rows' weights to score them)."""
    if criterion != "heldout":
        data, opened = gm._stream(X, sample_weight, fitting=True)
        return data, data, None, opened
    split = (fraction, seed)
    if distributed.is_dask_array(X):
        import dask.array as da
        plain = distributed.DaskData(X, sample_weight, gm._chunk_rows)
        rows = da.arange(X.shape[0], chunks=(X.chunks[0],))
        train = rows.map_blocks(_sel.train_weights_of_rows, fraction, seed, dtype=np.float64)
        base = plain.weights
        w, held = (train, 1.0 - train) if base is None else (base * train, base * (1.0 - train))
        data, opened = gm._stream(X, w, fitting=True)
        data.held_weights = held
        return data, data, None, opened
    if not sources.is_out_of_core(X):
        n = np.shape(X)[0] if np.ndim(X) >= 1 else 0
        plain, opened = gm._stream(X, sample_weight, fitting=True)
        if not n:
            return plain, plain, split, opened
        w = _sel.TrainingWeights(n, fraction, seed, base=plain.weights).array()
        if not w.sum() > 0:
            raise ValueError("sample_weight is zero on every training row of the held-out "
                             "split: no row left to fit")
        Xv = plain.in_memory
        data = sources.as_stream(X if Xv is None else Xv, w, plain.chunk_rows)
        return data, plain, split, opened
    plain, opened = gm._stream(X, sample_weight, fitting=True)
    try:
        if plain.source.has_weights:  # a weight column, read in the data's own pieces
            data = sources.Stream(_sel.SplitColumnSource(plain.source, fraction, seed),
                                  plain.chunk_rows)
            return data, plain, split, opened
        if plain.n_rows is None:  # count the rows (one validating pass)
            for _ in plain.blocks():
                pass
        data = sources.Stream(plain.source, plain.chunk_rows,
                              weights=_sel.TrainingWeights(plain.n_rows, fraction, seed,
                                                           base=plain.weights))
        data.n_rows, data.validated = plain.n_rows, plain.validated
        return data, plain, split, opened
    except BaseException:
        if opened:
            plain.close()
        raise
