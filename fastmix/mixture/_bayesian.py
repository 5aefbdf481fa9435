"""``BayesianGaussianMixture``: variational Bayes (batch, stochastic, out-of-core, Dask, GPU)
on the EM kernels; the mathematics is in ``fastmix.variational``."""
import json
import os
import sys

from typing import Any

import numpy as np

from .._compute import blas_single_threaded
from .._params import Covariance
from .._stats import Stats
from .._validation import check_array, check_random_state, check_sample_weight
from .. import io as sources
from .. import variational as vb
from ..em import EMResult
from ..io import as_stream
from ._base import (ANY, DEVICES, INIT_METHODS, ONLINE_BATCH_CHUNKS, Integer,
                    MixtureBase, Options, Real, _fit_dtype, _is_gpu_array)
from ._gaussian import ConvergenceWarning, GaussianMixture
from ._persist import CheckpointMixin, _atomic_write, _fit_meta, _save_online, register
from ._shared import GaussianMixtureMethods
from ._typing import ArrayLike, DataLike, RandomStateLike


@register
class BayesianGaussianMixture(GaussianMixtureMethods, CheckpointMixin, MixtureBase):
    """Variational Bayesian Gaussian mixture on fastmix's fused E-step kernels.

    Same constructor, attributes and methods as ``sklearn.mixture.BayesianGaussianMixture``
    (a Dirichlet-distribution or truncated Dirichlet-process prior on the weights,
    Gaussian-Wishart priors on the components), plus ``sample_weight`` in ``fit``,
    ``chunk_size``, ``progress``, ``save``/``fastmix.load``, ``device="cuda"``, float32 data,
    out-of-core and Dask data, and stochastic variational inference (``partial_fit``,
    ``fit(algorithm="online")``).  The variational E-step is the EM kernel with different
    parameters (``fastmix.variational``); surplus components get weights near 0, so
    ``n_components`` is an upper bound on the number used.

    Parameters
    ----------
    n_components : int, default=1
        Number of components (an upper bound; unused ones get tiny weights).
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        The covariance structure of the components.
    tol : float, default=1e-3
        Iterations stop when the lower bound (a total over the rows, as in scikit-learn)
        changes by less than ``tol``; SVI passes (``algorithm="online"``) when it changes by
        less than ``tol`` per row (the change divided by the row count).
    reg_covar : float, default=1e-6
        Added to the diagonal of each component's sample covariance.
    max_iter : int, default=100
        Iterations (passes for ``algorithm="online"``); 0 fits the initialisation only.
    n_init : int, default=1
        Initialisations; the one with the highest lower bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        fastmix's initialisations (``fastmix.init``): responsibilities, then the variational
        M-step, as scikit-learn does.
    weight_concentration_prior_type : {"dirichlet_process", "dirichlet_distribution"}, \
default="dirichlet_process"
        The prior on the weights: a stick-breaking process truncated at ``n_components``, or
        a Dirichlet distribution.
    weight_concentration_prior : float or None, default=None
        Concentration of the weight prior (> 0); None means ``1 / n_components``.
    mean_precision_prior : float or None, default=None
        Precision of the prior on the means (> 0); None means 1.0.
    mean_prior : array-like of shape (D,) or None, default=None
        Mean of the prior on the means; None means the (weighted) mean of the data.
    degrees_of_freedom_prior : float or None, default=None
        Degrees of freedom of the Wishart prior (> D - 1); None means D.
    covariance_prior : float, array-like or None, default=None
        full/tied (D, D) symmetric positive definite, diag (D,) positive, spherical a positive
        number; None: the data's unbiased (weighted) covariance, variances or mean variance.
    random_state : int, numpy.random.Generator, numpy.random.RandomState or None, \
default=None
        Seeds the initialisation; fits with the same seed are bit-identical.
    warm_start : bool, default=False
        Continue from the previous fit's variational parameters.
    verbose : int, default=0
        1 prints per-initialisation summaries, 2 also every ``verbose_interval`` iterations.
    verbose_interval : int, default=10
        Iterations between progress lines with ``verbose=2``.
    chunk_size : int or None, default=None
        Rows per kernel chunk (default 4096); results are bit-identical for a given
        chunk_size whatever the number of threads.
    progress : bool, default=False
        A tqdm progress bar over iterations.
    step_offset : float >= 0, default=1.0
        tau of the SVI step size rho_t = (t + tau)^-kappa.
    step_decay : float in (0.5, 1], default=0.6
        kappa of the SVI step size.
    batch_size : int or None, default=None
        Rows per SVI step in ``fit(algorithm="online")`` (default 16 chunks = 65536 rows).
    total_samples : float > 0, default=1e6
        The data-set size ``partial_fit`` scales each chunk's statistics to (as in
        scikit-learn's ``LatentDirichletAllocation``); ``fit(algorithm="online")`` uses the
        data's row count instead.
    device : {"cpu", "cuda"}, default="cpu"
        "cuda": the E-steps and inference run on the GPU (``fastmix.gpu``); the M-step on
        the host.

    Attributes
    ----------
    weights_ : numpy.ndarray of shape (K,)
        Expected weights under the variational posterior.
    means_ : numpy.ndarray of shape (K, D)
        Posterior means of the component means.
    covariances_, precisions_, precisions_cholesky_ : numpy.ndarray
        Shape by covariance type: full (K, D, D), tied (D, D), diag (K, D), spherical (K,);
        ``covariances_`` is the normalised ``(nu_k W_k)^-1`` (scikit-learn's convention).
    weight_concentration_ : tuple of two numpy.ndarray of shape (K,), or numpy.ndarray
        The posterior of the weights: Beta parameters (Dirichlet process) or Dirichlet
        parameters (K,).
    mean_precision_ : numpy.ndarray of shape (K,)
        Posterior precisions of the means.
    degrees_of_freedom_ : numpy.ndarray of shape (K,), or float for "tied"
        Posterior Wishart degrees of freedom.
    weight_concentration_prior_, mean_precision_prior_, mean_prior_, \
degrees_of_freedom_prior_, covariance_prior_ : float or numpy.ndarray
        The priors used (``mean_prior_`` of shape (D,)).
    converged_ : bool
        Whether the best initialisation converged.
    n_iter_ : int
        Iterations of the best initialisation.
    lower_bound_ : float
        scikit-learn's variational lower bound (constants dropped) of the best
        initialisation.  For SVI (``fit(algorithm="online")``, ``partial_fit``) the same bound
        of the running statistics after the last step: the bound of a data set of
        ``total_samples`` rows (the data's row count in ``fit``) whose expected statistics
        are the running ones (``fastmix.variational``); on a stationary stream it approaches
        the batch optimum's as the steps shrink.
    lower_bounds_ : list of float
        The lower bound at each iteration of the best initialisation.
    n_features_in_ : int
        Number of features D seen in ``fit``.
    n_steps_ : int
        SVI steps done.

    See Also
    --------
    GaussianMixture : Maximum-likelihood EM with the same kernels.

    Notes
    -----
    Fitted arrays are float64 (float32 after a fit on float32 data).

    Examples
    --------
    Ten components offered, two clusters in the data: the surplus components get tiny weights.

    >>> import numpy as np
    >>> from fastmix import BayesianGaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(-4, 1, (300, 2)), rng.normal(4, 1, (300, 2))])
    >>> bgm = BayesianGaussianMixture(n_components=10, weight_concentration_prior=1e-3,
    ...                               max_iter=500, random_state=0).fit(X)
    >>> int((bgm.weights_ > 0.05).sum())
    2
    """

    def __init__(self, *, n_components: int = 1, covariance_type: str = "full", tol: float = 1e-3,
                 reg_covar: float = 1e-6, max_iter: int = 100, n_init: int = 1,
                 init_params: str = "kmeans",
                 weight_concentration_prior_type: str = "dirichlet_process",
                 weight_concentration_prior: float | None = None,
                 mean_precision_prior: float | None = None, mean_prior: ArrayLike | None = None,
                 degrees_of_freedom_prior: float | None = None,
                 covariance_prior: float | ArrayLike | None = None,
                 random_state: RandomStateLike = None, warm_start: bool = False, verbose: int = 0,
                 verbose_interval: int = 10, chunk_size: int | None = None, progress: bool = False,
                 step_offset: float = 1.0, step_decay: float = 0.6, batch_size: int | None = None,
                 total_samples: float = 1e6, device: str = "cpu") -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.chunk_size = chunk_size
        self.progress = progress
        self.step_offset = step_offset
        self.step_decay = step_decay
        self.batch_size = batch_size
        self.total_samples = total_samples
        self.device = device

    weights_init = means_init = precisions_init = None  # read by _initial: never given

    # ------------------------------------------------------------------ validation ----------
    _parameter_constraints = {
        "n_components": [Integer(1)], "max_iter": [Integer(0)], "n_init": [Integer(1)],
        "verbose": [Integer(0)], "verbose_interval": [Integer(1)],
        "covariance_type": [Options(*vb.VB_KINDS)], "init_params": [Options(*INIT_METHODS)],
        "weight_concentration_prior_type": [Options(*vb.PRIOR_TYPES)],
        "tol": [Real(0)], "reg_covar": [Real(0)],
        "weight_concentration_prior": [Real(0, closed="neither"), None],
        "mean_precision_prior": [Real(0, closed="neither"), None],
        "total_samples": [Real(0, closed="neither")],
        "chunk_size": [Integer(1), None], "batch_size": [Integer(1), None],
        "step_offset": [Real(0)], "step_decay": [Real(0.5, 1, closed="right")],
        "device": [Options(*DEVICES)],
        # checked against the data's dimension when the prior is made (_check_prior_args)
        "mean_prior": [ANY], "degrees_of_freedom_prior": [ANY], "covariance_prior": [ANY],
        "random_state": [ANY], "warm_start": [ANY], "progress": [ANY],
    }

    def _make_prior(self, data, centre):
        mean, cov, W = vb.data_moments(data, None, self.covariance_type, centre,
                                       self._chunk_rows)
        prior = vb.make_prior(
            self.covariance_type, self.weight_concentration_prior_type, self.n_components,
            mean.shape[0], (mean, cov),
            weight_concentration_prior=self.weight_concentration_prior,
            mean_precision_prior=self.mean_precision_prior, mean_prior=self.mean_prior,
            degrees_of_freedom_prior=self.degrees_of_freedom_prior,
            covariance_prior=self.covariance_prior, reg_covar=float(self.reg_covar))
        return prior, W

    def _check_prior_args(self, D):
        """The priors' values that do not need the data (bad ones fail before any pass)."""
        vb.make_prior(self.covariance_type, self.weight_concentration_prior_type,
                      self.n_components, D, (np.zeros(D), np.eye(D)),
                      weight_concentration_prior=self.weight_concentration_prior,
                      mean_precision_prior=self.mean_precision_prior, mean_prior=self.mean_prior,
                      degrees_of_freedom_prior=self.degrees_of_freedom_prior,
                      covariance_prior=self.covariance_prior)

    # ------------------------------------------------------------------ parameters ----------
    def _vb_params(self):
        """The fitted variational posterior as float64 VBParams."""
        f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
        cls = Covariance.registry[self.covariance_type]
        cov = cls(f64(self.covariances_), f64(self.precisions_cholesky_))
        wc = self.weight_concentration_
        wc = (f64(wc[0]), f64(wc[1])) if isinstance(wc, tuple) else f64(wc)
        dof = self.degrees_of_freedom_
        dof = float(dof) if self.covariance_type == "tied" else f64(dof)
        return vb.VBParams(self.weight_concentration_prior_type, wc, f64(self.mean_precision_),
                           f64(self.means_), dof, cov)

    def _params(self):
        """The kernel parameters of the variational E-step (for inference)."""
        return self._vb_params().gmm()

    def _prior(self):
        cov = self.covariance_prior_
        cov = float(cov) if self.covariance_type == "spherical" else np.asarray(cov, np.float64)
        return vb.Prior(self.covariance_type, self.weight_concentration_prior_type,
                        float(self.weight_concentration_prior_),
                        float(self.mean_precision_prior_),
                        np.asarray(self.mean_prior_, np.float64),
                        float(self.degrees_of_freedom_prior_), cov, float(self.reg_covar))

    def _set_prior(self, prior, dtype):
        self.weight_concentration_prior_ = prior.weight_concentration
        self.mean_precision_prior_ = prior.mean_precision
        self.mean_prior_ = np.asarray(prior.mean, dtype=dtype)
        self.degrees_of_freedom_prior_ = prior.degrees_of_freedom
        c = prior.covariance
        self.covariance_prior_ = c if self.covariance_type == "spherical" else \
            np.asarray(c, dtype=dtype)

    def _set_params_from(self, p, dtype=np.float64):
        cast = lambda a: np.asarray(a, dtype=dtype)  # noqa: E731
        wc = p.weight_concentration
        self.weight_concentration_ = (cast(wc[0]), cast(wc[1])) if isinstance(wc, tuple) \
            else cast(wc)
        self.mean_precision_ = cast(p.mean_precision)
        self.means_ = cast(p.means)
        self.degrees_of_freedom_ = (float(p.degrees_of_freedom) if p.kind == "tied"
                                    else cast(p.degrees_of_freedom))
        self.weights_ = cast(p.weights())
        self.covariances_ = cast(p.cov.covariances)
        self.precisions_cholesky_ = cast(p.cov.precisions_cholesky)
        cov = p.cov
        if np.dtype(dtype) != np.float64:  # from the stored (rounded) factor, as load does
            cov = type(cov)(np.asarray(self.covariances_, np.float64),
                            np.asarray(self.precisions_cholesky_, np.float64))
        self.precisions_ = cast(cov.precisions)

    # ------------------------------------------------------------------ fitting -------------
    def fit(self, X: DataLike, y: Any = None, sample_weight: DataLike | None = None, *,
            algorithm: str = "batch", checkpoint: str | os.PathLike | None = None,
            resume: bool = False) -> "BayesianGaussianMixture":
        """Fit the variational posterior.

        Parameters
        ----------
        X : array-like of shape (N, D), out-of-core data, Dask or GPU array
            Real numbers (float32 stays float32), or out-of-core data (a path, ``np.memmap``,
            ``fastmix.io.Source``, chunk list or callable; see ``GaussianMixture.fit``), a Dask
            array or a GPU array (``device="cuda"``).
        y : None
            Ignored; present for scikit-learn compatibility.
        sample_weight : array-like of shape (N,), str or Source, optional
            Non-negative weights (also a ``.npy`` path, a 1-D source or a column name for
            out-of-core data).  Integer weights equal repeated rows.
        algorithm : {"batch", "online"}, default="batch"
            "batch": coordinate-ascent variational Bayes, one pass per iteration (a file
            gives bit-identically the in-memory fit).  "online": stochastic variational
            inference in batches of ``batch_size`` rows, ``max_iter`` passes at most.
        checkpoint : str or os.PathLike, optional
            Save the model (atomically, with its priors and, for SVI, its running statistics)
            after every iteration or pass.  Needs ``n_init=1``.
        resume : bool, default=False
            With ``checkpoint``: if the file exists, continue from it instead of starting
            over; the result equals an uninterrupted fit's bit for bit.  The checkpoint must
            have been written for the same data and parameters (``max_iter``, ``progress``,
            ``verbose``, ``device``, ``warm_start`` and ``n_init`` may differ).

        Returns
        -------
        BayesianGaussianMixture
            The fitted estimator (``self``).

        Raises
        ------
        ValueError
            For an invalid hyper-parameter or prior (named), invalid input (naming the first bad
            row) or fewer rows than components.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import BayesianGaussianMixture
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> bgm = BayesianGaussianMixture(n_components=3, max_iter=500, random_state=0).fit(X)
        >>> bgm.converged_, bgm.weights_.shape
        (True, (3,))
        """
        self._fit(X, sample_weight, algorithm, checkpoint=checkpoint, resume=resume)
        return self

    def fit_predict(self, X: DataLike, y: Any = None,
                    sample_weight: DataLike | None = None) -> np.ndarray:
        """Fit the model, then return the most probable component of each row.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            As for ``fit``.
        y : None
            Ignored; present for scikit-learn compatibility.
        sample_weight : array-like of shape (N,), optional
            Non-negative weights of the rows.

        Returns
        -------
        numpy.ndarray of shape (N,), dtype int64
            The component labels.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import BayesianGaussianMixture
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> bgm = BayesianGaussianMixture(n_components=3, max_iter=500, random_state=0)
        >>> bgm.fit_predict(X).shape
        (300,)
        """
        X_mem = self._fit(X, sample_weight)
        return self.predict(X if X_mem is None else X_mem)

    _CHECKPOINT_CLASS = "BayesianGaussianMixture"

    def _checkpoint_params(self):
        return self._vb_params()

    def _fit(self, X, sample_weight, algorithm="batch", resp=None, checkpoint=None,
             resume=False):
        """Fit; ``resp`` (N, K): initial responsibilities instead of ``init_params`` (private:
        scikit-learn parity tests start both libraries from the same responsibilities)."""
        self._check_fit_args(algorithm, checkpoint, resume)
        gpu = self._gpu(X, algorithm)
        data, opened = self._stream(X, sample_weight, fitting=True)
        if algorithm == "online" and getattr(data, "is_dask", False):
            raise ValueError("algorithm='online' is not available for dask arrays (batch "
                             "variational Bayes is)")
        device_data = None
        try:
            if gpu is not None and algorithm == "batch":
                device_data = self._device_data_for(gpu, data)
            best, prior, D = self._fit_stream(data, algorithm, resp, gpu, device_data,
                                              checkpoint, resume)
        finally:
            if getattr(device_data, "streamed", False):
                device_data.close()
            if opened:
                data.close()
        self._set_fit_result(best, D, ConvergenceWarning)
        dtype = _fit_dtype(data)
        self._set_prior(prior, dtype)
        self._set_params_from(best.params, dtype)
        self._online = best.state if algorithm == "online" else None
        self.n_steps_ = 0 if self._online is None else self._online.t + 1
        return data.in_memory

    def _fit_stream(self, data, algorithm, resp, gpu, device_data, checkpoint=None,
                    resume=False):
        D = data.n_features
        self._check_rows(data.n_rows)
        self._check_prior_args(D)
        warm = self.warm_start and hasattr(self, "converged_")
        self._check_warm_features(D, warm)
        record = None if checkpoint is None else sources.data_record(data)
        ckpt = dict(checkpoint=checkpoint, record=record)
        if resume and os.path.exists(checkpoint):
            ck = self._load_checkpoint(checkpoint, D, algorithm, record)
            # the priors were set from the data and the start: continue with the saved ones
            prior = ck._prior()
            start = EMResult(ck._vb_params(), ck.lower_bound_, ck.n_iter_, ck.converged_,
                             list(ck.lower_bounds_), [], state=ck._online)
            if start.converged or start.n_iter >= self.max_iter:
                return start, prior, D
            with blas_single_threaded():
                return self._run(data, start, prior, algorithm, 0, 1, gpu, device_data,
                                 **ckpt), prior, D
        n_init = 1 if warm else self.n_init
        rng = check_random_state(self.random_state)
        prior = W = None
        with blas_single_threaded():
            best = None
            for init in range(n_init):
                if self.verbose:
                    print(f"Initialization {init}")
                if warm:
                    centre = self._vb_params().point()
                    start = None
                elif resp is not None:
                    start = centre = None
                else:
                    start = self._initial(data, rng, (None, None, None),
                                          sample_only=algorithm == "online")
                    centre = start
                if prior is None:
                    if centre is None:  # given responsibilities: centre on the data's mean
                        X0 = data.in_memory
                        c = np.average(X0, axis=0, weights=data.weights).astype(np.float64)
                    else:
                        c = centre.weights @ centre.means
                    prior, W = self._make_prior(data, c)
                if warm:
                    params = self._vb_params()
                    lb = self.lower_bound_
                    state = getattr(self, "_online", None)
                elif resp is not None:
                    params = vb.initial_from_resp(data.in_memory, data.weights, resp,
                                                  self.covariance_type, prior, self._chunk_rows)
                    lb, state = -np.inf, None
                else:
                    params = vb.initial_from_params(start, W, prior)
                    lb, state = -np.inf, None
                start = EMResult(params, lb, 0, False, state=state)
                if self.max_iter == 0:
                    result = start
                else:
                    result = self._run(data, start, prior, algorithm, init, n_init, gpu,
                                       device_data, **ckpt)
                if best is None or result.lower_bound > best.lower_bound:
                    best = result
        return best, prior, D

    def _run(self, data, start, prior, algorithm, init, n_init, gpu, device_data,
             checkpoint=None, record=None):
        """The iterations from ``start`` (an EMResult of VBParams; ``start.n_iter`` already
        done, e.g. by an interrupted fit whose checkpoint is resumed)."""
        bar = None
        done = start.n_iter
        if self.progress:
            from tqdm.auto import tqdm
            desc = "SVI passes" if algorithm == "online" else (
                "VB" if n_init == 1 else f"VB init {init + 1}/{n_init}")
            bar = tqdm(total=self.max_iter, initial=done, desc=desc, unit="it",
                       file=sys.stderr)
        saver = None
        if checkpoint is not None:
            saver = self._checkpoint_saver(
                checkpoint, algorithm, record, data,
                prepare=lambda snap: snap._set_prior(prior, np.float64))
        callback = self._iteration_callback(done, list(start.lower_bounds), bar, saver)
        params, state = start.params, start.state
        kw = dict(tol=float(self.tol), lower_bound=start.lower_bound, callback=callback)
        max_iter = int(self.max_iter) - done
        try:
            if algorithm == "online":
                batch = self.batch_size or ONLINE_BATCH_CHUNKS * self._chunk_rows
                n = data.n_rows
                if n is None:  # one counting pass (CSV, iterators)
                    n = sum(X.shape[0] for _, X, _ in data.blocks())
                result = vb.run_svi(data, None, params, state, prior, total_samples=n,
                                    max_passes=max_iter, t0=float(self.step_offset),
                                    kappa=float(self.step_decay), chunk_rows=self._chunk_rows,
                                    batch_rows=batch, estep=self._gpu_estep(), **kw)
            elif device_data is not None:
                if device_data.streamed:
                    estep = device_data.e_step_stats
                else:
                    def estep(g):
                        return gpu.e_step_stats(device_data, None, g, gpu.DEFAULT_BLOCK_ROWS,
                                                gpu.DEFAULT_THREADS)
                result = vb.vb_loop(estep, params, prior, max_iter=max_iter, **kw)
            else:
                result = vb.run_vb(data, None, params, prior, max_iter=max_iter,
                                   chunk_rows=self._chunk_rows, **kw)
        finally:
            if bar is not None:
                bar.close()
        return self._finish_run(result, start)

    def partial_fit(self, X: DataLike, y: Any = None,
                    sample_weight: DataLike | None = None) -> "BayesianGaussianMixture":
        """Do one SVI step (Hoffman et al. 2013) with the rows ``X``.

        The chunk's statistics are scaled by ``total_samples / n`` and blended into the
        running statistics with step rho_t = (t + step_offset)^-step_decay (the first call
        initialises the model from ``X`` with ``init_params`` -- its priors from ``X`` too,
        when not given -- and sets the statistics, rho = 1); then the variational M-step.
        ``lower_bound_`` is the lower bound of the running statistics after the step (see the
        attribute), a total over ``total_samples`` rows.

        Parameters
        ----------
        X : array-like of shape (n, D)
            A batch of rows.
        y : None
            Ignored; present for scikit-learn compatibility.
        sample_weight : array-like of shape (n,), optional
            Non-negative weights of the rows.

        Returns
        -------
        BayesianGaussianMixture
            The updated estimator (``self``).

        Raises
        ------
        ValueError
            For invalid input (naming the first bad row), a first batch with fewer rows than
            components, or a batch of another width.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import BayesianGaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> bgm = BayesianGaussianMixture(n_components=3, total_samples=5000, random_state=0)
        >>> for _ in range(5):
        ...     bgm = bgm.partial_fit(rng.normal(size=(1000, 2)))
        >>> bgm.n_steps_
        5
        """
        self._validate_params()
        if _is_gpu_array(X):
            raise ValueError("partial_fit takes host arrays; copy the chunk to the host first")
        X = check_array(X, min_samples=1)
        sw = check_sample_weight(sample_weight, X.shape[0])
        fitted = hasattr(self, "means_")
        if fitted and X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        with blas_single_threaded():
            if not fitted:
                if X.shape[0] < max(self.n_components, 2):
                    raise ValueError(f"the first partial_fit needs at least "
                                     f"max(2, n_components={self.n_components}) rows, got "
                                     f"{X.shape[0]}")
                self._check_prior_args(X.shape[1])
                rng = check_random_state(self.random_state)
                start = self._initial(X if sw is None else (X, sw), rng, (None, None, None))
                prior, W = self._make_prior(as_stream(X, sw, self._chunk_rows),
                                            start.weights @ start.means)
                params = vb.initial_from_params(start, W, prior)
                state = None
            else:
                prior = self._prior()
                params = self._vb_params()
                state = getattr(self, "_online", None)
            params, state, ll, _ = vb.svi_update(
                X, sw, params, state, prior, total_samples=float(self.total_samples),
                t0=float(self.step_offset), kappa=float(self.step_decay),
                chunk_rows=self._chunk_rows, estep=self._gpu_estep())
        dtype = _fit_dtype(X)
        if not fitted:
            self._set_prior(prior, dtype)
        self._set_params_from(params, dtype)
        self._online = state
        self.n_steps_ = 0 if state is None else state.t + 1
        self.n_iter_ = self.n_steps_
        self.converged_ = False
        self.lower_bound_ = float(ll)
        self.lower_bounds_ = [float(ll)]
        self.iteration_times_ = []
        self.n_features_in_ = X.shape[1]
        return self

    # ------------------------------------------------------------------ persistence ---------
    _FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_", "mean_precision_",
               "degrees_of_freedom_", "mean_prior_", "covariance_prior_")
    _ARRAY_PARAMS = ("mean_prior", "covariance_prior")

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to a versioned ``.npz`` file (no pickle), atomically.

        Load it with ``fastmix.load``.  A model trained with ``partial_fit`` keeps its running
        statistics, so ``partial_fit`` continues after loading.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        OSError
            When ``path`` cannot be written.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import BayesianGaussianMixture
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> bgm = BayesianGaussianMixture(n_components=3, max_iter=500, random_state=0).fit(X)
        >>> import fastmix
        >>> bgm.save("bayes.npz")
        >>> bool(np.array_equal(fastmix.load("bayes.npz").weights_, bgm.weights_))
        True
        """
        self._check_fitted()
        scalars: dict[str, Any] = {}
        arrays: dict[str, Any] = {}
        for k, v in self.get_params().items():
            if k in self._ARRAY_PARAMS and v is not None and not np.isscalar(v):
                arrays["init__" + k] = np.asarray(v, dtype=np.float64)
            elif k == "random_state" and not (v is None or isinstance(v, (int, np.integer))):
                scalars[k] = None
            else:
                scalars[k] = v.item() if isinstance(v, np.generic) else v
        meta = _fit_meta(self, scalars)
        meta["priors"] = {"weight_concentration_prior_": self.weight_concentration_prior_,
                          "mean_precision_prior_": self.mean_precision_prior_,
                          "degrees_of_freedom_prior_": self.degrees_of_freedom_prior_}
        for name in self._FITTED:
            arrays["fit__" + name] = np.asarray(getattr(self, name))
        wc = self.weight_concentration_
        if isinstance(wc, tuple):
            arrays["fit__wc_a"], arrays["fit__wc_b"] = wc
        else:
            arrays["fit__wc_a"] = wc
        h = getattr(getattr(self, "_online", None), "neg_entropy", None)
        _save_online(self, meta, arrays, neg_entropy=None if h is None else float(h))
        _atomic_write(path, lambda fh: np.savez(fh, meta=np.array(json.dumps(meta)), **arrays))

    @classmethod
    def _from_saved(cls, meta, arrays):
        params = dict(meta["params"])
        for k in cls._ARRAY_PARAMS:
            if "init__" + k in arrays:
                params[k] = arrays["init__" + k]
        est = cls(**params)
        est._validate_params()
        K, D = est.n_components, int(meta["n_features_in_"])
        kind = est.covariance_type
        shape = Covariance.registry[kind].shape(K, D)
        dof_shape = () if kind == "tied" else (K,)
        cp_shape = {"full": (D, D), "tied": (D, D), "diag": (D,), "spherical": ()}[kind]
        want = {"weights_": (K,), "means_": (K, D), "covariances_": shape,
                "precisions_cholesky_": shape, "mean_precision_": (K,),
                "degrees_of_freedom_": dof_shape, "mean_prior_": (D,),
                "covariance_prior_": cp_shape, "wc_a": (K,)}
        dp = est.weight_concentration_prior_type == "dirichlet_process"
        if dp:
            want["wc_b"] = (K,)
        for name, shp in want.items():
            a = arrays["fit__" + name]
            if a.shape != shp:
                raise ValueError(f"{name} has shape {a.shape}, expected {shp}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} contains NaN or infinity")
        w = np.asarray(arrays["fit__weights_"], np.float64)
        if np.any(w < 0) or not abs(w.sum() - 1.0) < 1e-6:
            raise ValueError("weights_ are not a probability vector")
        dtype = arrays["fit__means_"].dtype
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"means_ has dtype {dtype}")
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_",
                     "mean_precision_", "mean_prior_"):
            setattr(est, name, arrays["fit__" + name])
        est.degrees_of_freedom_ = (float(arrays["fit__degrees_of_freedom_"]) if kind == "tied"
                                   else arrays["fit__degrees_of_freedom_"])
        cp = arrays["fit__covariance_prior_"]
        est.covariance_prior_ = float(cp) if kind == "spherical" else cp
        est.weight_concentration_ = ((arrays["fit__wc_a"], arrays["fit__wc_b"]) if dp
                                     else arrays["fit__wc_a"])
        pri = meta["priors"]
        est.weight_concentration_prior_ = float(pri["weight_concentration_prior_"])
        est.mean_precision_prior_ = float(pri["mean_precision_prior_"])
        est.degrees_of_freedom_prior_ = float(pri["degrees_of_freedom_prior_"])
        est._set_params_from(est._vb_params(), dtype)
        est.converged_ = bool(meta["converged_"])
        est.n_iter_ = int(meta["n_iter_"])
        est.lower_bound_ = float(meta["lower_bound_"])
        est.lower_bounds_ = [float(v) for v in meta["lower_bounds_"]]
        est.n_features_in_ = D
        est._fitted_on = meta.get("fitted_on")  # a checkpoint: what it was fitted on
        est._online = None
        est.n_steps_ = 0
        if "online" in meta:
            on = meta["online"]
            st = Stats(kind, *(np.asarray(arrays["online__" + f], np.float64)
                               for f in ("nk", "s1", "s2", "centre", "gcentre")),
                       float(on["ll"]), float(on["ws"]))
            if st.nk.shape != (K,) or st.s1.shape != (K, D):
                raise ValueError("online statistics have inconsistent shapes")
            h = on.get("neg_entropy")
            est._online = vb.SVIState(st, int(on["t"]), None if h is None else float(h))
            est.n_steps_ = int(on["n_steps_"])
        return est
