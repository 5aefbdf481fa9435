"""``BigLearnGaussianMixture``: BigLearn-EM (joint, marginal and transformed-marginal steps)."""

import numpy as np
from collections.abc import Callable
from typing import Any

from .._compute import blas_single_threaded
from .._params import FullCovariance, GMMParams
from .._validation import check_random_state
from .. import biglearn
from ..init import initial_params
from ._base import ANY, DEVICES, INIT_METHODS, Integer, Options, Real, _clone
from ._gaussian import GaussianMixture
from ._persist import register
from ._typing import DataLike, RandomStateLike


@register
class BigLearnGaussianMixture(GaussianMixture):
    """Full-covariance Gaussian mixture fitted by BigLearn-EM (Cong & Li, AAAI 2024).

    EM steps on the joint, on random marginals and on random orthogonally transformed
    marginals of the data (see ``fastmix.biglearn`` for the exact update), then joint EM steps
    to convergence.

    The step kinds, their probabilities, the subset sizes, the local steps and the weight
    smoothing default to the reference code's.  Three defaults differ from it, because on real
    data (scikit-learn's iris, wine, breast cancer and digits, both min-max and standard
    scaling; ``bench/biglearn.py --real``) the reference's choices lost to plain EM: the start is
    GaussianMixture's k-means start (the paper's N(0, I) means assume [0, 1]-scaled data), the
    covariance merge keeps each component positive definite (``cov_update="psd"``: the
    reference's overwrite of a T x T block next to unchanged cross-covariances is indefinite
    for most components at D = 13, and the eigenvalue floor then leaves near-singular
    covariances that cost several nats per row), and the marginal steps are followed by joint
    EM steps until the mean log-likelihood gains less than ``tol`` (a marginal or transformed
    step lowers the joint likelihood: it optimises the marginal's).  The paper's method is
    ``init_params="random", cov_update="floor", polish_max_iter=0``.

    Parameters
    ----------
    n_components : int
        Number of mixture components K.
    p_joint, p_marginal, p_transformed : float >= 0 summing to 1, default 0.4 / 0.1 / 0.5
        Probabilities of the three step kinds.  ``p_joint=1, weight_smoothing=0`` is plain
        (joint) EM with the reference's M-step.
    subset_beta : (a, b), default (5.0, 1.0)
        Subset size m = max(1, floor(D * Beta(a, b))).
    n_local_steps : int, default 5
        EM steps per draw.
    n_outer : int, default 200
        Outer iterations (no convergence test: the method is stochastic).
    eig_floor : float > 0, default 1e-6
        Eigenvalue floor of the covariance repair (the reference's is 1e-5; 1e-6 is
        GaussianMixture's ``reg_covar``, so that the two score data with constant or nearly
        constant directions -- digits' empty border pixels -- on the same footing).
    weight_smoothing : float >= 0 or None, default None
        alpha in pi = (pi~ + alpha) / sum(pi~ + alpha); None = 1 / n_components.
    cov_update : {"floor", "psd"}, default "psd"
        "floor": the reference's overwrite-then-floor; "psd": the PSD-preserving block update.
    init_params : {"random", "kmeans", "k-means++", "random_from_data"}, default "kmeans"
        "random" is the paper's: pi uniform, mu_k ~ N(0, I), Sigma_k = I (data are expected to be
        min-max scaled); the others are GaussianMixture's.
    polish_max_iter : int >= 0, default 100
        Joint EM steps after the ``n_outer`` iterations (plain EM weights, no smoothing), stopped
        once the mean log-likelihood gains less than ``tol``; 0 = none (the paper's method).
    tol : float >= 0, default 1e-4
        Convergence threshold of those joint steps (GaussianMixture's is 1e-3; the steps
        are few and cheap next to the ``5 n_outer`` local steps).
    random_state : int, numpy.random.Generator or None, default=None
        One seeded generator drives every draw (step kind, subset, orthogonal A).
    chunk_size : int or None, default=None
        Rows per kernel chunk (default 4096).
    verbose : int, default=0
        Print a line per outer iteration when positive.
    device : {"cpu", "cuda"}, default "cpu"
        "cuda": the rows stay on the GPU; every local step forms its (transformed) marginal
        there (``fastmix.kernels.cuda.linalg``) and runs the full-covariance E-step kernel on
        it; only the statistics come back (the M-step and the covariance repair run on the
        host).  Needs rows that fit on the device (in-memory arrays or GPU arrays);
        initialisation and inference as for GaussianMixture(device="cuda").

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_ : numpy.ndarray
        As for ``GaussianMixture`` with ``covariance_type="full"``.
    step_kinds_ : list of str
        The kind of each outer iteration.
    log_likelihoods_ : list of float
        The mean log-likelihood of the (marginal) data in the last E-step of each outer
        iteration (the joint log-likelihood for joint steps).
    lower_bound_ : float
        Mean joint log-likelihood of the training data under the final model.
    n_iter_ : int
        Outer iterations run.
    n_polish_iter_ : int
        Joint EM steps run after them.
    converged_ : bool
        Whether those joint steps met ``tol`` (False when ``polish_max_iter=0``).

    See Also
    --------
    GaussianMixture : Plain EM, whose methods (``predict``, ``score_samples`` ...) this class
        shares.

    Notes
    -----
    D = 1: every step is a joint step (a marginal of one coordinate is the joint).

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix import BigLearnGaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(-3, 1, (200, 3)), rng.normal(3, 1, (200, 3))])
    >>> bl = BigLearnGaussianMixture(2, n_outer=10, random_state=0).fit(X)
    >>> len(bl.step_kinds_), np.sort(bl.means_[:, 0]).round(0)
    (10, array([-3.,  3.]))
    """

    covariance_type = "full"

    def __init__(self, n_components: int = 1, *, p_joint: float = 0.4, p_marginal: float = 0.1,
                 p_transformed: float = 0.5, subset_beta: tuple[float, float] = (5.0, 1.0),
                 n_local_steps: int = 5, n_outer: int = 200, eig_floor: float = 1e-6,
                 weight_smoothing: float | None = None, cov_update: str = "psd",
                 init_params: str = "kmeans", polish_max_iter: int = 100, tol: float = 1e-4,
                 random_state: RandomStateLike = None, chunk_size: int | None = None,
                 verbose: int = 0, device: str = "cpu") -> None:
        self.n_components = n_components
        self.p_joint = p_joint
        self.p_marginal = p_marginal
        self.p_transformed = p_transformed
        self.subset_beta = subset_beta
        self.n_local_steps = n_local_steps
        self.n_outer = n_outer
        self.eig_floor = eig_floor
        self.weight_smoothing = weight_smoothing
        self.cov_update = cov_update
        self.init_params = init_params
        self.polish_max_iter = polish_max_iter
        self.tol = tol
        self.random_state = random_state
        self.chunk_size = chunk_size
        self.verbose = verbose
        self.device = device

    # GaussianMixture's inference/persistence code reads these
    reg_covar = 0.0
    progress = False
    fixed = None
    n_factors = None
    noise = "diagonal"
    loadings_init = None

    _parameter_constraints = {
        "n_components": [Integer(1)], "n_local_steps": [Integer(1)], "n_outer": [Integer(0)],
        "polish_max_iter": [Integer(0)], "verbose": [Integer(0)], "tol": [Real(0)],
        # the three probabilities: together in _validate_extra
        "p_joint": [ANY], "p_marginal": [ANY], "p_transformed": [ANY], "subset_beta": [ANY],
        "eig_floor": [Real(0, closed="neither")], "weight_smoothing": [Real(0), None],
        "cov_update": [Options("floor", "psd")], "init_params": [Options(*INIT_METHODS)],
        "chunk_size": [Integer(1), None], "device": [Options(*DEVICES)],
        "random_state": [ANY],
    }

    def _validate_extra(self):
        probs = np.array([self.p_joint, self.p_marginal, self.p_transformed], dtype=np.float64)
        if not np.all(np.isfinite(probs)) or np.any(probs < 0) or abs(probs.sum() - 1) > 1e-9:
            raise ValueError(f"p_joint, p_marginal, p_transformed must be non-negative and sum "
                             f"to 1, got {probs.tolist()} (sum {probs.sum():.6g})")
        a, b = (float(v) for v in self.subset_beta)
        if not (a > 0 and b > 0):
            raise ValueError(f"subset_beta must be two positive numbers, got {self.subset_beta!r}")

    def _device_marginals(self, gpu, data):
        """(device rows, the GPU marginal-statistics function) for ``device="cuda"``."""
        if isinstance(data.source, gpu.DeviceSource):
            dd = gpu.to_gpu(data.source.X, data.weights)
        elif data.in_memory is not None and gpu.DeviceMarginals.fits(data.in_memory.nbytes):
            dd = gpu.to_gpu(data.in_memory, data.weights)
        else:
            raise ValueError("BigLearnGaussianMixture(device='cuda') needs rows that fit on the "
                             "GPU (an in-memory or GPU array); fit files and larger data with "
                             "device='cpu'")
        return dd, gpu.DeviceMarginals(dd, gpu.DEFAULT_BLOCK_ROWS, gpu.DEFAULT_THREADS)

    # BigLearn-EM takes a callback instead of GaussianMixture's online/checkpoint options
    def fit(self, X: DataLike, y: Any = None,  # type: ignore[override]
            sample_weight: DataLike | None = None, *,
            callback: Callable[..., Any] | None = None) -> "BigLearnGaussianMixture":
        """Run ``n_outer`` BigLearn-EM iterations, then joint EM steps to convergence.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            As for ``GaussianMixture.fit``.
        y : None
            Ignored; present for scikit-learn compatibility.
        sample_weight : array-like of shape (N,), optional
            Non-negative weights of the rows.
        callback : callable, optional
            ``callback(iteration, kind, model)`` after each outer iteration, with ``model`` a
            fitted copy of this estimator at that point (for monitoring, e.g. a test KL).

        Returns
        -------
        BigLearnGaussianMixture
            The fitted estimator (``self``).

        Raises
        ------
        ValueError
            For an invalid hyper-parameter (named) or invalid input (naming the first bad row).

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import BigLearnGaussianMixture
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> kinds = []
        >>> bl = BigLearnGaussianMixture(2, n_outer=5, random_state=0).fit(
        ...     X, callback=lambda it, kind, model: kinds.append(kind))
        >>> len(kinds)
        5
        """
        self._validate_params()
        gpu = self._gpu(X)
        data, opened = self._stream(X, sample_weight, fitting=True)
        try:
            self._check_rows(data.n_rows)
            dd, stats = None, biglearn.marginal_stats
            if getattr(data, "is_dask", False):  # one task per block, statistics reduced
                def stats(data, kp, A, T):
                    return data.marginal_stats(kp, A, T)
            if gpu is not None:
                dd, stats = self._device_marginals(gpu, data)
            rng = check_random_state(self.random_state)
            K, D = self.n_components, data.n_features
            with blas_single_threaded():
                if self.init_params == "random":
                    params = GMMParams(np.full(K, 1.0 / K), rng.standard_normal((K, D)),
                                       FullCovariance.from_covariances(np.repeat(
                                           np.eye(D)[None], K, axis=0)))
                else:
                    params = initial_params(data, None, K, "full", self.init_params, rng,
                                            1e-6, self._chunk_rows)
                alpha = 1.0 / K if self.weight_smoothing is None else float(self.weight_smoothing)
                hook = None
                if callback is not None:
                    def hook(it, kind, params, ll):
                        snap = _clone(self)
                        snap._set_params_from(params)
                        snap.n_features_in_ = D
                        callback(it, kind, snap)
                res = biglearn.run_biglearn(
                    data, params, rng, n_outer=int(self.n_outer),
                    n_local_steps=int(self.n_local_steps),
                    probs=(self.p_joint, self.p_marginal, self.p_transformed),
                    beta=tuple(float(v) for v in self.subset_beta), alpha=alpha,
                    eps=float(self.eig_floor), update=self.cov_update, callback=hook,
                    stats=stats)
                polished = biglearn.polish(
                    data, res.params, max_iter=int(self.polish_max_iter), tol=float(self.tol),
                    eps=float(self.eig_floor), update=self.cov_update, stats=stats)
                if dd is not None:
                    final = gpu.e_step_stats(dd, None, polished.params, gpu.DEFAULT_BLOCK_ROWS,
                                             gpu.DEFAULT_THREADS)
                else:
                    from ..em import e_step_stats
                    final = e_step_stats(data, None, polished.params, self._chunk_rows)
        finally:
            if opened:
                data.close()
        self._set_params_from(polished.params)
        self.step_kinds_ = list(res.kinds)
        self.log_likelihoods_ = list(res.log_likelihoods)
        self.lower_bound_ = float(final.mean_log_likelihood)
        self.lower_bounds_ = list(res.log_likelihoods)
        self.n_iter_ = int(self.n_outer)
        self.n_polish_iter_ = polished.n_iter
        self.converged_ = polished.converged
        self.n_features_in_ = D
        self._online = None
        return self

    def fit_predict(self, X: DataLike, y: Any = None,
                    sample_weight: DataLike | None = None) -> np.ndarray:
        """Fit the model, then return the most probable component of each row.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            As for ``GaussianMixture.fit``.
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
        >>> from fastmix import BigLearnGaussianMixture
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> BigLearnGaussianMixture(2, n_outer=5, random_state=0).fit_predict(X).shape
        (300,)
        """
        return self.fit(X, sample_weight=sample_weight).predict(X)

    @property
    def partial_fit(self):
        """Not available: BigLearn-EM is a batch method.

        The inherited ``GaussianMixture.partial_fit`` is online EM, a different algorithm, so
        ``hasattr(model, "partial_fit")`` is False, as scikit-learn's tools expect.

        Examples
        --------
        >>> from fastmix import BigLearnGaussianMixture
        >>> hasattr(BigLearnGaussianMixture(2), "partial_fit")
        False
        """
        raise AttributeError("BigLearnGaussianMixture has no partial_fit")
