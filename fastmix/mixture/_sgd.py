"""``SGDGaussianMixture``: streaming SGD on the max-component objective with annealing."""
import json
import math
import os
import warnings
from typing import Any

import numpy as np

from .._params import Covariance, GMMParams
from .._validation import check_array, check_random_state
from .. import distributed, sgd
from .. import io as sources
from ._base import (ANY, DEVICES, Integer, MixtureBase, Options, Real, _frequency_rows,
                    validate_params)
from ._gaussian import GaussianMixture
from ._persist import FORMAT_VERSION, _atomic_write, register
from ._typing import DataLike, RandomStateLike


@register
class SGDGaussianMixture(MixtureBase):
    """Gaussian mixture trained by streaming SGD on the max-component objective with annealing.

    Diagonal covariances, or local principal directions (Gepperth & Pfulb;
    docs/algorithms.md §1, ``fastmix.sgd``).

    The K = n x n components sit on a toroidal grid; the objective per sample is the smoothed
    max-component log-likelihood max_k sum_j g_kj(sigma) l_j(x), with sigma annealed towards 0
    (then the plain max-component bound), or the exact log-likelihood (``objective="loglik"``).
    Weights are softmax(logits); precisions are parameterised by their square roots, clipped to
    at most ``precision_max``.  The defaults assume data scaled to [0, 1] (a warning says so
    otherwise).

    Parameters
    ----------
    n_components : int, default=25
        Number of components K, a perfect square (25 = 5 x 5).
    covariance_type : {"diag", "lpd"}, default "diag"
        "diag": square roots of diagonal precisions.  "lpd": local principal directions
        (ICLR section 3.5): each component keeps ``n_directions`` = S orthonormal directions
        u_ks with precisions a_ks^2 along them, re-orthonormalised after every step (modified
        Gram-Schmidt in the kernel = QR of U_k^T with diag(R) > 0).  The paper's density is
        on the S-dimensional projection only, not a density on R^D; fastmix adds an isotropic
        residual precision r_k^2 on the orthogonal complement (a PPCA-style choice -- not in
        the paper or any released code, so unverified): covariance
        U_k^T diag(1/a_k^2) U_k + (I - U_k^T U_k) / r_k^2, so that the training objective and
        ``score_samples`` are exact log-densities on R^D.  Directions start as a random
        orthonormal set, r at sqrt(precision_max) and a at min(1, sqrt(precision_max)):
        broad along the directions, so that their gradient (r^2 - a^2) y z starts Hebbian and
        pulls them towards high-variance directions (with a = r at the start they drifted to
        low-variance ones in our tests -- a local optimum; fastmix's choice, unverified).
        The directions and r share ``lambda_sigma`` with a.
    n_directions : int, default=10
        S, the directions of "lpd" (1 <= S < n_features); unused for "diag".
    objective : {"mc", "loglik"}, default "mc"
        The smoothed max-component objective, or the exact log-likelihood.
    learning_rate : float, default=0.05
        eps0, the initial learning rate (> 0).
    learning_rate_min : float, default=0.001
        The learning rate's floor.
    batch_size : int, default=1
        Rows per SGD step (>= 1; 1 is the streaming fast path).
    annealing : {"adaptive", "time", "off"}, default "adaptive"
        The schedule of sigma.
    sigma0 : float or None, default=None
        The initial sigma; None means n / 4.
    sigma_min : float, default=0.01
        The final sigma.
    anneal_window : int or None, default=None
        Steps per window of the adaptive schedule.  None: ceil(1 / learning_rate_min)
        (1000, the released code), but in ``fit`` on data of known length at most
        planned_steps / (m + 2), m the number of gamma-decays from sigma0 to sigma_min, so
        that small data sets have room to anneal fully (``fastmix.sgd.default_window``);
        ``partial_fit`` streams keep 1000.
    anneal_delta : float, default=0.05
        Relative loss change below which the adaptive schedule decays sigma.
    anneal_gamma : float, default=0.9
        The adaptive schedule's decay factor of sigma.
    time_t0, time_tinf : float, default=0.3, 0.8
        Fractions of the planned steps where the time schedule starts and ends its decay.
    precision_max : float, default=20
        D_max: variances stay >= 1 / precision_max.
    lambda_pi, lambda_mu, lambda_sigma : float, default=1.0
        Learning-rate factors of the weights, means and precisions.
    init : {"uniform", "kmeans++"}, default "uniform"
        "uniform": means U[mu_init_center - mu_init, mu_init_center + mu_init] (0 +- 0.01), all
        precisions precision_max, uniform weights; "kmeans++": seeds from the first batch.
    mu_init, mu_init_center : float, default=0.01, 0.0
        The half-width and centre of the uniform initial means.
    n_epochs : float, default=1.0
        Passes over the data in ``fit``.
    shuffle : bool, default=True
        Shuffle the rows within each block read.
    random_state : int, numpy.random.Generator or None, default=None
        Seeds the initialisation and the shuffles.
    chunk_size : int or None, default=None
        Rows per kernel chunk of the inference methods (default 4096).
    device : {"cpu", "cuda"}, default "cpu"
        "cuda": the SGD steps of ``fit`` and ``partial_fit`` run on the GPU
        (``fastmix.kernels.cuda.sgd``, ``pip install 'fastmix[cuda]'``) for the mini-batch path
        (``batch_size >= 2``) with ``covariance_type="diag"``; batch_size=1 (the per-sample
        streaming path), "lpd" and out-of-core or Dask inputs are CPU only and raise a
        ValueError.  In ``fit`` a NumPy array is copied to the device once (an array exposing
        ``__cuda_array_interface__`` -- CuPy, PyTorch, numba -- is used in place and checked
        for NaN/inf and its value range on the device); each epoch sends its row
        permutation (drawn on the host exactly as on the CPU path), the parameters stay on
        the device, and each annealing segment returns only its per-step losses.
        ``partial_fit`` uploads the batch and the state per call.  Batches are taken in the
        same order as with "cpu" from the same ``random_state``, so the fits agree to rounding
        (not bit for bit).  Initialisation ("kmeans++" copies a device array to the host for
        it) and inference (``score_samples``, ``predict``, ``sample``...) run on the CPU.

    Attributes
    ----------
    weights_ : numpy.ndarray of shape (K,)
        The weights.
    means_ : numpy.ndarray of shape (K, D)
        The means.
    precisions_, covariances_ : numpy.ndarray of shape (K, D)
        "diag" only: the diagonal precisions and variances.
    directions_ : numpy.ndarray of shape (K, S, D)
        "lpd" only: orthonormal rows, the local principal directions.
    direction_precisions_ : numpy.ndarray of shape (K, S)
        "lpd" only: precisions along the directions.
    residual_precisions_ : numpy.ndarray of shape (K,)
        "lpd" only: the isotropic precision on the orthogonal complement.
    grid_shape_ : tuple of int
        (n, n); prototypes on the grid: ``means_.reshape(n, n, D)``.
    loss_curve_ : list of tuple
        (step, mean loss of the segment, sigma, learning rate) per logged segment.
    sigma_, learning_rate_ : float
        The current annealing state.
    n_steps_ : int
        SGD steps taken.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix import SGDGaussianMixture
    >>> X = np.random.default_rng(0).uniform(size=(5000, 2))  # data scaled to [0, 1]
    >>> sgd = SGDGaussianMixture(9, batch_size=16, n_epochs=2, random_state=0).fit(X)
    >>> sgd.grid_shape_, sgd.means_.shape
    ((3, 3), (9, 2))
    """

    def __init__(self, n_components: int = 25, *, covariance_type: str = "diag",
                 n_directions: int = 10, objective: str = "mc", learning_rate: float = 0.05,
                 learning_rate_min: float = 0.001, batch_size: int = 1,
                 annealing: str = "adaptive", sigma0: float | None = None, sigma_min: float = 0.01,
                 anneal_window: int | None = None, anneal_delta: float = 0.05,
                 anneal_gamma: float = 0.9, time_t0: float = 0.3, time_tinf: float = 0.8,
                 precision_max: float = 20.0, lambda_pi: float = 1.0, lambda_mu: float = 1.0,
                 lambda_sigma: float = 1.0, init: str = "uniform", mu_init: float = 0.01,
                 mu_init_center: float = 0.0, n_epochs: float = 1.0, shuffle: bool = True,
                 random_state: RandomStateLike = None, chunk_size: int | None = None,
                 device: str = "cpu") -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.n_directions = n_directions
        self.objective = objective
        self.learning_rate = learning_rate
        self.learning_rate_min = learning_rate_min
        self.batch_size = batch_size
        self.annealing = annealing
        self.sigma0 = sigma0
        self.sigma_min = sigma_min
        self.anneal_window = anneal_window
        self.anneal_delta = anneal_delta
        self.anneal_gamma = anneal_gamma
        self.time_t0 = time_t0
        self.time_tinf = time_tinf
        self.precision_max = precision_max
        self.lambda_pi = lambda_pi
        self.lambda_mu = lambda_mu
        self.lambda_sigma = lambda_sigma
        self.init = init
        self.mu_init = mu_init
        self.mu_init_center = mu_init_center
        self.n_epochs = n_epochs
        self.shuffle = shuffle
        self.random_state = random_state
        self.chunk_size = chunk_size
        self.device = device

    _parameter_constraints = {
        "n_components": [Integer(1)], "batch_size": [Integer(1)],
        **{name: [Real(0, closed="neither")]
           for name in ("learning_rate", "learning_rate_min", "sigma_min", "precision_max",
                        "mu_init", "n_epochs")},
        **{name: [Real(0, 1, closed="both")] for name in ("lambda_pi", "lambda_mu",
                                                         "lambda_sigma")},
        "sigma0": [None, Real(0, closed="neither")],
        "objective": [Options("mc", "loglik")], "annealing": [Options("adaptive", "time", "off")],
        "init": [Options("uniform", "kmeans++")],
        "time_t0": [Real(0, 1, closed="both")], "time_tinf": [Real(0, 1, closed="both")],
        "anneal_window": [Integer(1), None], "covariance_type": [Options("diag", "lpd")],
        "n_directions": [ANY],  # used with covariance_type="lpd" only: _validate_extra
        "device": [Options(*DEVICES)], "chunk_size": [Integer(1), None],
        "anneal_delta": [ANY], "anneal_gamma": [ANY], "mu_init_center": [ANY],
        "shuffle": [ANY], "random_state": [ANY],
    }

    def _validate_extra(self):
        n = int(round(math.sqrt(self.n_components)))
        if n * n != self.n_components:
            raise ValueError(f"n_components must be a perfect square (the components sit on an "
                             f"n x n toroidal grid), got {self.n_components}; e.g. 16, 25, 64")
        if not self.time_t0 < self.time_tinf:
            raise ValueError("need 0 <= time_t0 < time_tinf <= 1")
        if self.covariance_type == "lpd":
            validate_params({"n_directions": [Integer(1)]}, self.get_params(deep=False))

    def _on_gpu(self, X=None):
        """True for ``device="cuda"`` when the request is one the GPU path serves (else a
        ValueError naming what is CPU only); False for "cpu"."""
        if getattr(self, "device", "cpu") != "cuda":
            return False
        what = None
        if self.covariance_type != "diag":
            what = f"covariance_type={self.covariance_type!r} (only 'diag' runs on the GPU)"
        elif int(self.batch_size) < 2:
            what = ("batch_size=1 (the per-sample streaming path; the GPU runs the mini-batch "
                    "path, batch_size >= 2)")
        elif X is not None and (distributed.is_dask_array(X) or sources.is_out_of_core(X)):
            what = "out-of-core or Dask data (pass an in-memory or device array)"
        if what is not None:
            raise ValueError(f"SGDGaussianMixture(device='cuda') does not support {what}; "
                             f"use device='cpu'")
        from .. import gpu
        gpu.require_gpu()
        return True

    # ---------------------------------------------------------------- state -----------------
    def _start(self, X, rng, planned_steps, planned_known=False, n_features=None,
               value_range=None):
        """Initial state and schedule.  X: the first rows read (host); None (a device array
        with init="uniform") needs ``n_features``, and ``value_range`` (lo, hi) for the [0, 1]
        range warning."""
        K, D = self.n_components, (X.shape[1] if X is not None else int(n_features))
        S = int(self.n_directions)
        if self.covariance_type == "lpd" and S >= D:
            raise ValueError(f"n_directions must be < n_features ({D}) for "
                             f"covariance_type='lpd', got {S}")
        n = int(round(math.sqrt(K)))
        s_max = math.sqrt(float(self.precision_max))
        if self.init == "uniform":
            mu = self.mu_init_center + rng.uniform(-self.mu_init, self.mu_init, size=(K, D))
        else:
            if X.shape[0] < K:
                raise ValueError(f"init='kmeans++' needs at least n_components={K} rows in the "
                                 f"first batch, got {X.shape[0]}")
            from ..init import kmeans_plusplus
            mu = kmeans_plusplus(np.ascontiguousarray(X), None, K, rng)
        mu = np.ascontiguousarray(mu, dtype=np.float64)
        if self.covariance_type == "lpd":
            U = np.stack([np.linalg.qr(rng.standard_normal((D, S)))[0].T for _ in range(K)])
            self._state = (np.full(K, 1.0 / K), mu, np.ascontiguousarray(U),
                           np.full((K, S), min(1.0, s_max)), np.full(K, s_max))
        else:
            self._state = (np.full(K, 1.0 / K), mu, np.full((K, D), s_max))
        sigma0 = n / 4.0 if self.sigma0 is None else float(self.sigma0)
        planned = max(1, int(planned_steps))
        window = self.anneal_window or sgd.default_window(
            float(self.learning_rate_min), sigma0, float(self.sigma_min),
            float(self.anneal_gamma), planned if planned_known else None)
        self._schedule = sgd.Schedule(
            self.annealing, sigma0, float(self.learning_rate), float(self.sigma_min),
            float(self.learning_rate_min), float(self.anneal_delta), float(self.anneal_gamma),
            window, int(self.time_t0 * planned), int(self.time_tinf * planned), sigma0)
        self.grid_shape_ = (n, n)
        self.n_features_in_ = D
        if X is None and value_range is None:
            return
        lo, hi = value_range if X is None else (float(np.min(X)), float(np.max(X)))
        if lo < -0.5 or hi > 1.5:
            warnings.warn(f"SGDGaussianMixture's defaults (mu_init, precision_max, learning "
                          f"rates) assume data scaled to [0, 1]; this data spans [{lo:.3g}, "
                          f"{hi:.3g}]. Scale it (e.g. min-max per feature) or adapt "
                          "precision_max and mu_init.", UserWarning, stacklevel=4)

    def _consume(self, X):
        n = self.grid_shape_[0]
        obj = sgd.run_segment(np.ascontiguousarray(X, dtype=np.float64), self._state,
                              self._schedule, n=n, exact=self.objective == "loglik",
                              batch=int(self.batch_size),
                              lam=(float(self.lambda_pi), float(self.lambda_mu),
                                   float(self.lambda_sigma)),
                              s_min=1e-6, s_max=math.sqrt(float(self.precision_max)))
        self._publish()
        return obj

    def _publish(self):
        xi, mu = self._state[:2]
        w = np.exp(xi - xi.max())
        self.weights_ = w / w.sum()
        self.means_ = mu.copy()
        if self.covariance_type == "lpd":
            U, a, r = self._state[2:]
            self.directions_ = U.copy()
            self.direction_precisions_ = a ** 2
            self.residual_precisions_ = r ** 2
        else:
            s = self._state[2]
            self.precisions_ = s ** 2
            self.covariances_ = 1.0 / self.precisions_
        self.sigma_ = self._schedule.current_sigma()
        self.learning_rate_ = self._schedule.eps
        self.n_steps_ = self._schedule.t
        self.loss_curve_ = list(self._schedule.history)

    # ---------------------------------------------------------------- fitting ---------------
    def fit(self, X: DataLike, y: Any = None,
            sample_weight: DataLike | None = None) -> "SGDGaussianMixture":
        """Run ``n_epochs`` passes of SGD over ``X``.

        The data are read in blocks, the rows shuffled within each block when ``shuffle``.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            An array or any out-of-core source ``GaussianMixture.fit`` accepts.
        y : None
            Ignored; present for scikit-learn compatibility.
        sample_weight : array-like of shape (N,), optional
            Non-negative frequency weights (CPU only): each epoch takes row i c_i times,
            c_i = floor(w_i) + Bernoulli(w_i - floor(w_i)), drawn afresh per epoch, so
            E[c_i] = w_i: a row's weight scales its expected number of SGD steps (its share of
            the gradient), integer weights are exactly repeated rows, unit weights are the
            unweighted fit, and an epoch has about sum(w) / batch_size steps (the SGD kernels
            themselves are unweighted).

        Returns
        -------
        SGDGaussianMixture
            The fitted estimator (``self``).

        Raises
        ------
        ValueError
            For an invalid hyper-parameter (named) or invalid input (naming the first bad row).

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import SGDGaussianMixture
        >>> X = np.random.default_rng(0).uniform(size=(2000, 2))
        >>> sgd = SGDGaussianMixture(4, random_state=0).fit(X)
        >>> sgd.n_steps_ > 0, len(sgd.loss_curve_) > 0
        (True, True)
        """
        self._validate_params()
        if self._on_gpu(X):
            if sample_weight is not None:
                raise ValueError("SGDGaussianMixture(device='cuda') does not take sample_weight "
                                 "yet; use device='cpu'")
            return self._fit_gpu(X)
        data, opened = self._stream(X, sample_weight, fitting=True)
        try:
            rng = check_random_state(self.random_state)
            epochs = float(self.n_epochs)
            batch = int(self.batch_size)
            N = data.n_rows
            if N is None and not getattr(data.source, "_one_shot", False):
                # CSV, callables: one counting (and checking) pass first, so that the schedule
                # and a fractional last epoch are those of the same rows in memory
                N = sum(Xb.shape[0] for _, Xb, _ in data.blocks())
            if isinstance(data.weights, np.ndarray):  # rows per epoch: the total weight
                N = float(data.weights.sum())
            planned = None if N is None else epochs * N / batch
            self._state = None
            done = 0.0
            while done < epochs:
                frac = min(1.0, epochs - done)
                seen = 0
                for _, Xb, wb in data.blocks():
                    if frac < 1.0 and N is not None and seen >= frac * N:
                        break
                    rows = np.arange(Xb.shape[0]) if wb is None else _frequency_rows(wb, rng)
                    if self.shuffle:
                        rows = rows[rng.permutation(rows.shape[0])]
                    if frac < 1.0 and N is not None:
                        rows = rows[:max(0, int(frac * N) - seen)]
                    # weights may repeat rows: pieces of whole mini-batches, each at most
                    # io.base.BLOCK_BYTES of float64 rows or one block; an unweighted block
                    # is one piece
                    size = max(Xb.shape[0], sources.base.BLOCK_BYTES // (8 * Xb.shape[1]), 1)
                    piece = -(-size // batch) * batch
                    for i in range(0, rows.shape[0], piece):
                        Xp = np.array(Xb[rows[i:i + piece]], dtype=np.float64)
                        if self._state is None:
                            self._start(Xp, rng, planned if planned is not None
                                        else epochs * Xp.shape[0] * 10, planned is not None)
                        self._consume(Xp)
                    seen += rows.shape[0]
                done += 1.0
        finally:
            if opened:
                data.close()
        if getattr(self, "_state", None) is None:  # every row had weight < 1 and drew 0
            raise ValueError("no row was drawn: the sample weights are all < 1 and every "
                             "Bernoulli draw was 0; scale the weights up")
        return self

    def _gpu_rows(self, X, min_samples):
        """(X for ``sgd.DeviceSGD``, the validated host array or None): a device array is
        checked in place, on the device (``fastmix.gpu.device_rows``: shape, dtype, NaN/inf;
        its value range is kept for the [0, 1] warning), anything else by check_array."""
        self._device_range = None
        if sgd.is_device_array(X):
            from .. import gpu
            dev = gpu.device_rows(X, None, min_samples=min_samples)
            lo, hi = dev.range
            self._device_range = (float(np.min(lo)), float(np.max(hi)))
            return dev.X, None
        X = check_array(X, min_samples=min_samples)
        return X, X

    def _host_rows(self, X, Xh, order, n_rows, dtype=None):
        """The rows the initialisation sees on the CPU path, X[order][:n_rows], on the host:
        for init="kmeans++" a copy (as ``dtype``; a device array is copied to the host for
        it); otherwise only the [0, 1] range warning reads them, so no copy when they are all
        the rows (their order does not matter), and None for a device array."""
        kpp = self.init == "kmeans++"
        if Xh is None:
            if not kpp:
                return None
            Xh = X.copy_to_host()
        if order is None:
            rows = Xh[:n_rows]
        elif not kpp and n_rows == Xh.shape[0]:
            rows = Xh
        else:
            rows = Xh[order[:n_rows]]
        return np.ascontiguousarray(rows, dtype=dtype) if kpp else rows

    def _consume_gpu(self, dev, order=None, n_rows=None):
        obj = sgd.run_segment_gpu(dev, self._schedule, n=self.grid_shape_[0],
                                  exact=self.objective == "loglik",
                                  lam=(float(self.lambda_pi), float(self.lambda_mu),
                                       float(self.lambda_sigma)),
                                  s_min=1e-6, s_max=math.sqrt(float(self.precision_max)),
                                  order=order, n_rows=n_rows)
        dev.download(self._state)
        self._publish()
        return obj

    def _fit_gpu(self, X):
        """``fit`` on the GPU: the rows go to the device once, the state stays there across
        epochs; the same random draws, in the same order, as the CPU path on in-memory data
        (one block of all rows, permuted per epoch)."""
        X, Xh = self._gpu_rows(X, 2)
        rng = check_random_state(self.random_state)
        epochs = float(self.n_epochs)
        N, D = int(X.shape[0]), int(X.shape[1])
        batch = int(self.batch_size)
        self._state = None
        dev = None
        done = 0.0
        while done < epochs:
            frac = min(1.0, epochs - done)
            perm = rng.permutation(N) if self.shuffle else None
            n_rows = N if frac >= 1.0 else max(0, int(frac * N))
            if self._state is None:
                self._start(self._host_rows(X, Xh, perm, n_rows, np.float64), rng,
                            epochs * N / batch, True, n_features=D,
                            value_range=self._device_range)
                dev = sgd.DeviceSGD(X, self._state, batch)
            self._consume_gpu(dev, None if perm is None else dev.order(perm), n_rows)
            done += 1.0
        return self

    def partial_fit(self, X: DataLike, y: Any = None) -> "SGDGaussianMixture":
        """Run SGD over the rows of the batch ``X`` in order, continuing the annealing state.

        The first call initialises the model (time schedule: planned over ``100 * n`` steps).

        Parameters
        ----------
        X : array-like of shape (n, D)
            A batch of rows.
        y : None
            Ignored; present for scikit-learn compatibility.

        Returns
        -------
        SGDGaussianMixture
            The updated estimator (``self``).

        Raises
        ------
        ValueError
            For invalid input (naming the first bad row) or a batch of another width.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import SGDGaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> sgd = SGDGaussianMixture(4, random_state=0)
        >>> for _ in range(3):
        ...     sgd = sgd.partial_fit(rng.uniform(size=(500, 2)))
        >>> sgd.n_steps_
        1500
        """
        self._validate_params()
        if self._on_gpu(X):
            X, Xh = self._gpu_rows(X, 1)
            if getattr(self, "_state", None) is None:
                self._start(self._host_rows(X, Xh, None, X.shape[0]),
                            check_random_state(self.random_state),
                            100 * X.shape[0] / int(self.batch_size), n_features=X.shape[1],
                            value_range=self._device_range)
            elif X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                                 f"expecting {self.n_features_in_} features as input.")
            self._consume_gpu(sgd.DeviceSGD(X, self._state, int(self.batch_size)))
            return self
        X = check_array(X, min_samples=1)
        if getattr(self, "_state", None) is None:
            self._start(X, check_random_state(self.random_state),
                        100 * X.shape[0] / int(self.batch_size))
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        self._consume(X)
        return self

    # ---------------------------------------------------------------- inference -------------
    def _gmm(self):
        """The fitted model as a diagonal GaussianMixture (exact densities, sampling)."""
        self._check_fitted()
        if self.covariance_type == "lpd":
            raise AssertionError("no GaussianMixture for covariance_type='lpd'")
        gm = GaussianMixture(self.n_components, covariance_type="diag",
                             random_state=self.random_state, chunk_size=self.chunk_size)
        cov = Covariance.registry["diag"].from_precisions(self.precisions_)
        gm._set_params_from(GMMParams(self.weights_, self.means_, cov))
        gm.n_features_in_ = self.n_features_in_
        return gm

    def _lpd_log_prob(self, X):
        """log pi_k + log N(x | k) (N, K) for covariance_type='lpd' (exact)."""
        self._check_fitted()
        X = self._validate_predict_X(X)
        return sgd.lpd_log_prob(X, *self._state)

    def score_samples(self, X: DataLike) -> np.ndarray:
        """Compute the exact log-density of the model at each row.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            As for ``GaussianMixture.fit``.

        Returns
        -------
        numpy.ndarray of shape (N,), dtype float64
            log p(x) of each row.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            When ``X`` has another number of features than the fit's or NaN / inf values.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import SGDGaussianMixture
        >>> X = np.random.default_rng(0).uniform(size=(2000, 2))
        >>> sgd = SGDGaussianMixture(4, random_state=0).fit(X)
        >>> sgd.score_samples(X[:3]).shape
        (3,)
        """
        if self.covariance_type == "lpd":
            lp = self._lpd_log_prob(X)
            m = lp.max(axis=1)
            return m + np.log(np.exp(lp - m[:, None]).sum(axis=1))
        return self._gmm().score_samples(X)

    def score(self, X: DataLike, y: Any = None) -> float:
        """Compute the mean exact log-likelihood per row.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            As for ``GaussianMixture.fit``.
        y : None
            Ignored; present for scikit-learn compatibility.

        Returns
        -------
        float
            The mean of ``score_samples(X)``.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            When ``X`` has another number of features than the fit's or NaN / inf values.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import SGDGaussianMixture
        >>> X = np.random.default_rng(0).uniform(size=(2000, 2))
        >>> sgd = SGDGaussianMixture(4, random_state=0).fit(X)
        >>> bool(np.isclose(sgd.score(X), sgd.score_samples(X).mean()))
        True
        """
        if self.covariance_type == "lpd":
            return float(np.mean(self.score_samples(X)))
        return self._gmm().score(X)

    def score_max_component(self, X: DataLike) -> float:
        """Compute the mean max-component bound per row.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            As for ``GaussianMixture.fit``.

        Returns
        -------
        float
            The mean of max_k log(pi_k N(x | k)), at most ``score(X)``.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            When ``X`` has another number of features than the fit's or NaN / inf values.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import SGDGaussianMixture
        >>> X = np.random.default_rng(0).uniform(size=(2000, 2))
        >>> sgd = SGDGaussianMixture(4, random_state=0).fit(X)
        >>> bool(sgd.score_max_component(X) <= sgd.score(X))
        True
        """
        if self.covariance_type == "lpd":
            return float(self._lpd_log_prob(X).max(axis=1).mean())
        gm = self._gmm()
        X = gm._validate_predict_X(X)
        lp = np.stack([np.log(self.weights_[k]) + 0.5 * np.log(self.precisions_[k]).sum()
                       - 0.5 * X.shape[1] * math.log(2 * math.pi)
                       - 0.5 * (((X - self.means_[k]) ** 2) * self.precisions_[k]).sum(axis=1)
                       for k in range(self.n_components)], axis=1)
        return float(lp.max(axis=1).mean())

    def predict(self, X: DataLike) -> np.ndarray:
        """Predict the most probable component of each row.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            As for ``GaussianMixture.fit``.

        Returns
        -------
        numpy.ndarray of shape (N,), dtype int64
            The component labels.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            When ``X`` has another number of features than the fit's or NaN / inf values.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import SGDGaussianMixture
        >>> X = np.random.default_rng(0).uniform(size=(2000, 2))
        >>> sgd = SGDGaussianMixture(4, random_state=0).fit(X)
        >>> sgd.predict(X[:5]).shape
        (5,)
        """
        if self.covariance_type == "lpd":
            return np.argmax(self._lpd_log_prob(X), axis=1).astype(np.int64)
        return self._gmm().predict(X)

    def predict_proba(self, X: DataLike) -> np.ndarray:
        """Compute the responsibilities of the components for each row.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            As for ``GaussianMixture.fit``.

        Returns
        -------
        numpy.ndarray of shape (N, K)
            Rows summing to 1.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            When ``X`` has another number of features than the fit's or NaN / inf values.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import SGDGaussianMixture
        >>> X = np.random.default_rng(0).uniform(size=(2000, 2))
        >>> sgd = SGDGaussianMixture(4, random_state=0).fit(X)
        >>> bool(np.allclose(sgd.predict_proba(X[:5]).sum(axis=1), 1))
        True
        """
        if self.covariance_type == "lpd":
            lp = self._lpd_log_prob(X)
            p = np.exp(lp - lp.max(axis=1, keepdims=True))
            return p / p.sum(axis=1, keepdims=True)
        return self._gmm().predict_proba(X)

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw points from the fitted mixture.

        Parameters
        ----------
        n_samples : int, default=1
            Number of points, at least 1.

        Returns
        -------
        X : numpy.ndarray of shape (n_samples, D), dtype float64
            The points.
        labels : numpy.ndarray of shape (n_samples,), dtype int64
            The component each point was drawn from.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            When ``n_samples`` is not an integer >= 1.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import SGDGaussianMixture
        >>> X = np.random.default_rng(0).uniform(size=(2000, 2))
        >>> sgd = SGDGaussianMixture(4, random_state=0).fit(X)
        >>> Xs, labels = sgd.sample(5)
        >>> Xs.shape, labels.shape
        ((5, 2), (5,))
        """
        if self.covariance_type == "lpd":
            self._check_fitted()
            if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
                    or n_samples < 1:
                raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
            return sgd.lpd_sample(  # type: ignore[call-arg]  # "lpd" state: 5 arrays
                check_random_state(self.random_state), self.weights_, *self._state[1:],
                int(n_samples))
        return self._gmm().sample(n_samples)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to a versioned ``.npz`` file (no pickle), atomically.

        Load it with ``fastmix.load``.

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
        >>> from fastmix import SGDGaussianMixture
        >>> X = np.random.default_rng(0).uniform(size=(2000, 2))
        >>> sgd = SGDGaussianMixture(4, random_state=0).fit(X)
        >>> import fastmix
        >>> sgd.save("sgd.npz")
        >>> bool(np.array_equal(fastmix.load("sgd.npz").means_, sgd.means_))
        True
        """
        self._check_fitted()
        params = {k: v for k, v in self.get_params().items() if k != "random_state"}
        meta = {"format_version": FORMAT_VERSION, "class": type(self).__name__,
                "params": params, "n_features_in_": self.n_features_in_,
                "n_steps_": self.n_steps_, "loss_curve_": self.loss_curve_}
        names = ("xi", "mu", "U", "a", "r") if self.covariance_type == "lpd" else \
            ("xi", "mu", "s")
        arrays = dict(zip(names, self._state))
        _atomic_write(path, lambda fh: np.savez(fh, meta=np.array(json.dumps(meta)), **arrays))

    @classmethod
    def _from_saved(cls, meta, arrays):
        est = cls(**meta["params"])
        est._validate_params()
        K, D = est.n_components, int(meta["n_features_in_"])
        S = int(est.n_directions)
        lpd = est.covariance_type == "lpd"
        shapes = {"xi": (K,), "mu": (K, D)}
        shapes.update({"U": (K, S, D), "a": (K, S), "r": (K,)} if lpd else {"s": (K, D)})
        state = []
        for name, shape in shapes.items():
            v = np.ascontiguousarray(arrays[name], np.float64)
            if v.shape != shape:
                raise ValueError("inconsistent shapes")
            if not np.all(np.isfinite(v)):
                raise ValueError("non-finite parameters")
            state.append(v)
        if not all(np.all(v > 0) for v in state[2 + lpd:]):
            raise ValueError("non-finite parameters")
        est._start(state[1], np.random.default_rng(0), 1)
        est._state = tuple(state)
        est._schedule.t = int(meta["n_steps_"])
        est._schedule.history = [tuple(h) for h in meta["loss_curve_"]]
        est._publish()
        return est
