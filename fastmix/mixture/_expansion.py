"""``GMMExpansion``: fixed Gaussian grid, learned weights (one-pass density estimate)."""
import json
import math
import os
import warnings
from typing import Any, NamedTuple

import numpy as np

from .._compute import blas_single_threaded
from .._validation import check_array, check_random_state, check_sample_weight
from .. import distributed, expansion, inference
from .. import io as sources
from .._params import DegenerateComponentWarning, FullCovariance, GMMParams
from ._base import ANY, DEVICES, ConvergenceWarning, Integer, MixtureBase, Options, Real
from ._persist import FORMAT_VERSION, _atomic_write, register
from ._typing import DataLike, RandomStateLike


class StackChoice(NamedTuple):
    """What the parametric stage chose (``GMMExpansion.stack_``)."""
    alpha: float      # weight of the expansion in the combination
    n_components: int  # K of the EM mixture
    scores: dict      # K -> held-out mean log-likelihood of the best start with K components
    n_heldout: int    # rows held out
    n_inside: int     # held-out rows inside the grid (those that chose alpha)
    z: float          # gain of the combination over EM alone, in standard errors
    n_starts: int = 1  # EM fits with K components averaged into the parametric part


@register
class GMMExpansion(MixtureBase):
    """Density estimate by "GMM expansion": many fixed Gaussians, only their weights learned.

    The components are an even grid, or k-means++ centres in D > 2, with one shared bandwidth;
    only the weights are learned, by weights-only EM passes over the data (see
    ``fastmix.expansion`` for the exact rules).

    Default settings (``n_nodes="auto"``), tensor grids (D <= 2):

    * grid bounds: the q and 1 - q quantiles of each feature, q = max(0.001, 5 / n) on a sample
      of n rows, widened by 5 % of their distance on each side and kept inside the data range
      (``bounds`` overrides them).  Heavy tails therefore do not stretch the grid; rows beyond
      it still count: the kernel evaluates them against the nodes nearest to them (the edge
      nodes), so their share of the weight lands on the edge nodes (the weights sum to one) and
      the density beyond the grid decays like the edge nodes' Gaussians.
    * bandwidth: sigma_d = f * s_d * n ** (-1 / (D + 4)), s_d = min(standard deviation,
      interquartile range / 1.349), n the effective number of rows ((sum w)^2 / sum w^2); node
      spacing = sigma (ceil(span / sigma) + 1 nodes per dimension, at most 2048 in 1-D and 256
      per dimension in 2-D; where that cap binds the bandwidth is the spacing).
    * f in (0.25, 0.35, 0.5, 0.7) and the number of weights-only EM steps (at most 8) are
      chosen by the held-out log-likelihood: on a sample of at most 20 000 rows (every k-th row
      of in-memory data; a uniform sample of a stream), every 5th row is held out, each f is
      fitted on the others with steps stopped when the held-out mean log-likelihood (rows
      inside the grid, each at least log(1e-6 / grid volume)) stops increasing, and the search
      over f (increasing) stops at the first f that scores below the best.  The model is then
      fitted on all rows with that f (the rule at the full n) and that many steps.
    * cost: the selection runs on the sample (at most 4 x 8 passes over 16 000 rows plus the
      held-out scoring), the final fit ``n_iter_`` (<= 8) passes over the data, plus one pass
      for the data range of an out-of-core source.  Below 100 rows there is no selection:
      f = 0.5 and one step.  ``partial_fit`` never selects: its first call fixes the grid by
      the rule with f = 0.5, and the weights are one step (as for explicit settings).
    * D > 2 (k-means++ centres): min(64, rows in the k-means sample) centres, the spacing rule
      for the bandwidth, one step.

    Parametric stage (``parametric="auto"``, the default, with ``n_nodes="auto"`` on in-memory
    rows on the CPU, at least 500 rows and effective rows): the result is the combination
    ``alpha * expansion + (1 - alpha) * EM`` of the expansion above and a full-covariance
    Gaussian mixture fitted by EM, a stacked density estimate (Smyth & Wolpert 1999,
    "Linearly combining density estimators via stacking").  Every 5th row is held out (at most
    50 000 rows); on the others the expansion is fitted with the rules above, and EM mixtures
    with K = 1, 2, 3, 4, 5, 6, 8, ..., 32 components (5 k-means++ starts each, tolerance 1e-3,
    on at most 20 000 of the rows; the sweep stops when two K in a row do not improve the
    held-out likelihood); K is the one whose best start has the highest held-out
    log-likelihood, and the EM part is the equal-weight average of that K's fits from its
    best S starts (S = ``fastmix.expansion.STACK_AVERAGE`` = 5: all of them; fewer where a
    start fails; one for K = 1), each refined on the training rows (tolerance 1e-5):
    averaging the starts smooths over EM's local optima, which move the error of a single fit
    by several per cent.  alpha maximises the held-out log-likelihood
    of the combination on the held-out rows inside the grid (a concave 1-D problem) and is
    set to 0 unless the combination beats the EM part alone by at least one standard error of
    the per-row difference.  Then the expansion is refitted on all rows (exactly
    ``GMMExpansion(parametric=None)``'s model) and each EM fit on all rows from its training
    fit.  ``stack_`` records the choice; ``weights_``, ``means_`` and
    ``covariances_`` list the nodes then the EM components, so the model is one Gaussian
    mixture.  Cost: about twice the expansion's fit, the EM sweep and the refits of the S fits
    (at 10^5 rows in 2-D, 12-41 s on one core, 4-10 x the expansion alone;
    ``bench/results/expansion.md``).  Out-of-core sources, Dask arrays,
    ``device="cuda"``, explicit ``n_nodes`` and ``partial_fit`` get the expansion alone.
    ``parametric=None`` always does.

    ``bench/results/expansion.md`` compares these defaults with EM's best K on the benchmark
    targets.  An explicit ``n_nodes`` keeps the plain rules below: grid over the data range
    (or ``bounds``), bandwidth = spacing unless ``bandwidth`` is given, ``n_iter`` steps (1 for
    ``n_iter="auto"``).

    Parameters
    ----------
    n_nodes : "auto" or int >= 2, default="auto"
        "auto": chosen from the data (above).  An int: nodes per dimension of a tensor grid
        (M = n_nodes ** D) over the data range, or the number of centres for
        ``grid="kmeans++"``.
    bandwidth : None or float > 0, default=None
        sigma in data units (isotropic).  None: chosen by the held-out likelihood with
        ``n_nodes="auto"``, the grid spacing in each dimension with an explicit ``n_nodes``.
        A number with ``n_nodes="auto"``: spacing = bandwidth, only the steps are chosen.
    variant : {"em", "kde"}, default="em"
        "em": weights-only EM steps from uniform weights (``n_iter`` steps in all); "kde":
        weights proportional to the kernel density at the nodes (tensor grids; one pass).
    n_iter : "auto" or int >= 1, default="auto"
        Weights-only EM steps (passes) for ``variant="em"``.  "auto": chosen by the held-out
        likelihood with ``n_nodes="auto"`` on a tensor grid, else 1.
    grid : {"auto", "tensor", "kmeans++"}, default="auto"
        "auto" = "tensor" for D <= 2, "kmeans++" otherwise.
    bounds : None or (lo, hi) arrays of shape (D,), default=None
        Extent of the grid; default: trimmed quantiles (``n_nodes="auto"`` on a tensor grid)
        or the data range (a pass for out-of-core data).
    random_state : int, numpy.random.Generator or None, default=None
        Seeds the k-means++ centres and the selection sample of a stream.
    chunk_size : int or None, default=None
        Rows per kernel chunk (default 4096).
    device : {"cpu", "cuda"}, default="cpu"
        "cuda": the weight passes and ``score_samples``/``score`` run CUDA kernels
        (``fastmix.kernels.cuda.expansion`` for tensor grids, the diag E-step kernel for
        centres; ``pip install 'fastmix[cuda]'``).  In-memory NumPy rows are validated on the
        host and copied to the device once per call; arrays that expose
        ``__cuda_array_interface__`` (CuPy, PyTorch, numba) are used in place, checked on the
        device (C-contiguous float32/float64, no NaN/infinity), and must be given with
        device="cuda"; out-of-core sources and ``partial_fit`` upload their rows block by
        block / call by call.  Node placement (data range, k-means++ centres, the automatic
        selection on its sample) runs on the CPU: k-means++ and the automatic settings copy
        device rows to the host once, the range of device rows is a device pass.  Results
        agree with "cpu" to rounding (different summation order) and are bit-reproducible run
        to run.
    parametric : "auto" or None, default="auto"
        "auto": the parametric stage above (where it applies); None: the expansion alone (the
        estimator as it was before the stage, bit for bit).

    Attributes
    ----------
    weights_ : numpy.ndarray of shape (M,) or (M + S * K,), dtype float64
        The weights of the M nodes; with the parametric stage ``alpha_`` times them, followed by
        (1 - ``alpha_``) / S times the weights of each of the S EM fits with K components, fit
        after fit (they sum to one; S = ``stack_.n_starts``).
    means_ : numpy.ndarray of shape (M, D) or (M + S * K, D), dtype float64
        The node positions (then the EM components' means).
    covariances_ : numpy.ndarray of shape (M, D, D) or (M + S * K, D, D), dtype float64
        ``diag(sigma_ ** 2)`` for each node (then the EM components' covariances); built on
        access.
    node_weights_ : numpy.ndarray of shape (M,), dtype float64
        The expansion's own weights (sum to one).
    alpha_ : float
        The expansion's weight in the combination (1.0 without the parametric stage).
    stack_ : StackChoice or None
        What the parametric stage chose: alpha, n_components (K), scores (K -> held-out mean
        log-likelihood of its best start), n_heldout, n_inside (held-out rows inside the grid,
        those that chose alpha), z (the combination's held-out gain over EM alone, in
        standard errors) and n_starts (S, the EM fits averaged); None without the stage.
    sigma_ : numpy.ndarray of shape (D,), dtype float64
        The bandwidth.
    grid_shape_ : tuple of int
        The tensor grid's shape, or () for centres.
    bounds_ : numpy.ndarray of shape (2, D), dtype float64
        The grid's extent.
    lower_bound_ : float
        Mean log-likelihood of the data under the weights of the last pass (uniform weights for
        one step).
    n_iter_ : int
        Weight steps run.
    n_features_in_ : int
        Number of features D seen in ``fit``.
    auto_ : expansion.AutoChoice or None
        What the automatic settings chose on a tensor grid (factor f, steps, bounds, spread,
        effective rows, held-out score and steps per tried f); None with an explicit
        ``n_nodes`` or k-means++ centres.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmix import GMMExpansion
    >>> X = np.random.default_rng(0).normal(size=(2000, 1))
    >>> ge = GMMExpansion(random_state=0).fit(X)
    >>> ge.means_.shape[0] == ge.weights_.shape[0], bool(np.isclose(ge.weights_.sum(), 1))
    (True, True)
    >>> round(float(ge.score(X)), 1)  # N(0, 1): -1.42 per row
    -1.4
    >>> ge.stack_.n_components, ge.alpha_  # one Gaussian fits: EM alone carries the model
    (1, 0.0)
    """

    def __init__(self, n_nodes: int | str = "auto", *, bandwidth: float | None = None,
                 variant: str = "em", n_iter: int | str = "auto", grid: str = "auto",
                 bounds: Any = None, random_state: RandomStateLike = None,
                 chunk_size: int | None = None, device: str = "cpu",
                 parametric: str | None = "auto") -> None:
        self.n_nodes = n_nodes
        self.bandwidth = bandwidth
        self.variant = variant
        self.n_iter = n_iter
        self.grid = grid
        self.bounds = bounds
        self.random_state = random_state
        self.chunk_size = chunk_size
        self.device = device
        self.parametric = parametric

    _parameter_constraints = {
        "n_nodes": [Options("auto"), Integer(2)],  # a grid needs two nodes per dimension
        "n_iter": [Options("auto"), Integer(1)],
        "bandwidth": [None, Real(0, closed="neither")],
        "variant": [Options("em", "kde")], "grid": [Options("auto", "tensor", "kmeans++")],
        "chunk_size": [Integer(1), None], "device": [Options(*DEVICES)],
        "bounds": [ANY],  # checked against the data (expansion.grid_bounds)
        "random_state": [ANY], "parametric": [Options("auto"), None],
    }

    def _launch(self):
        """expansion.GPULaunch for device="cuda" (GPUUnavailableError without a GPU), else
        None."""
        if getattr(self, "device", "cpu") != "cuda":
            return None
        from .. import gpu
        gpu.require_gpu()
        return expansion.gpu_launch()

    @staticmethod
    def _on_device(X, sample_weight, gpu):
        """True when X lives on the GPU (and device="cuda"); ValueError for GPU arrays that
        device="cpu" or host rows cannot take."""
        from .. import gpu as fgpu
        if not (fgpu.is_device_array(X) or fgpu.is_device_array(sample_weight)):
            return False
        if gpu is None:
            raise ValueError("X or sample_weight is a GPU array (__cuda_array_interface__): use "
                             "device='cuda', or copy it to the host")
        if not fgpu.is_device_array(X):
            raise ValueError("sample_weight on the GPU needs X on the GPU too")
        return True

    def _rows(self, X, sample_weight, *, fitting, gpu):
        """(host Stream or None, DeviceData or None, opened): the rows for node placement (the
        host copy when there is one) and for the passes (the device copy when there is one).

        device="cuda": in-memory arrays are validated on the host and uploaded once; device
        arrays are used in place and checked on the device; out-of-core sources stay host
        Streams (their blocks are uploaded pass by pass)."""
        from .. import gpu as fgpu
        if self._on_device(X, sample_weight, gpu):
            if not fitting:
                self._check_fitted()
            dev = fgpu.device_rows(X, sample_weight, min_samples=2 if fitting else 1)
            if not fitting and dev.n_features != self.n_features_in_:
                raise ValueError(f"X has {dev.n_features} features, but {type(self).__name__} "
                                 f"is expecting {self.n_features_in_} features as input.")
            return None, dev, False
        data, opened = self._stream(X, sample_weight, fitting=fitting)
        try:
            dev = None
            if gpu is not None and data.in_memory is not None:  # copied once per call
                dev = fgpu.to_gpu(data.in_memory, data.weights)
        except BaseException:
            if opened:
                data.close()
            raise
        return data, dev, opened

    def _stream(self, X, sample_weight=None, *, fitting):
        if distributed.is_dask_array(X) and not fitting:  # fit streams the blocks in order
            raise ValueError("GMMExpansion scores dask arrays block by block: use "
                             "X.map_blocks(model.score_samples, drop_axis=1, dtype=float) (or "
                             "predict likewise)")
        return super()._stream(X, sample_weight, fitting=fitting)

    _fitted_attr = "weights_"

    def _bounds(self, data):
        D = data.n_features
        if self.bounds is not None:
            try:
                lo, hi = (np.asarray(b, dtype=np.float64).reshape(-1) for b in self.bounds)
            except (TypeError, ValueError):
                raise ValueError("bounds must be a pair (lo, hi) of arrays of n_features "
                                 "numbers") from None
            if lo.shape != (D,) or hi.shape != (D,) or not (np.all(np.isfinite(lo))
                                                            and np.all(np.isfinite(hi))):
                raise ValueError(f"bounds must be two finite arrays of shape ({D},)")
            return lo, hi
        return expansion.data_range(data)

    def _make_nodes(self, data, rng, select=True):
        """(Nodes, weights steps).  ``select``: choose the automatic settings by the held-out
        likelihood (fit); else the rule with expansion.AUTO_FACTOR and one step (partial_fit)."""
        auto_nodes = isinstance(self.n_nodes, str)
        steps = 1 if isinstance(self.n_iter, str) else int(self.n_iter)
        if self.variant == "kde":
            steps = 1
        grid = self.grid
        if grid == "auto":
            grid = "tensor" if data.n_features <= 2 else "kmeans++"
        if grid != "tensor" and self.variant == "kde":
            raise ValueError("variant='kde' needs a tensor grid (grid='tensor')")
        self.auto_ = None
        if not auto_nodes:
            lo, hi = self._bounds(data)
            if grid == "tensor":
                return expansion.tensor_grid(lo, hi, int(self.n_nodes), self.bandwidth), steps
            return expansion.kmeanspp_nodes(data, lo, hi, int(self.n_nodes), self.bandwidth,
                                            rng), steps
        if grid != "tensor":  # D > 2: up to AUTO_CENTRES centres, at most one per sampled row
            lo, hi = self._bounds(data)
            return expansion.kmeanspp_nodes(data, lo, hi, expansion.AUTO_CENTRES,
                                            self.bandwidth, rng, at_most_rows=True), steps
        host = data
        if isinstance(data, expansion.DeviceData):  # the selection runs on a host copy
            host = sources.as_stream(*data.to_host())
        Xs, ws = expansion.auto_sample(host, rng)
        if self.bounds is not None:
            lo, hi = self._bounds(data)
        else:
            lo, hi = expansion.auto_bounds(Xs, ws, *expansion.data_range(data))
        N = host.n_rows if host.n_rows is not None else Xs.shape[0]
        n_eff = N * expansion.n_effective(ws, Xs.shape[0]) / Xs.shape[0]
        n_iter = None if isinstance(self.n_iter, str) else int(self.n_iter)
        if select:
            choice = expansion.auto_select(Xs, ws, lo, hi, n_eff, self.variant, self.bandwidth,
                                           n_iter, self._chunk_rows)
        else:
            choice = expansion.AutoChoice(
                expansion.AUTO_FACTOR if self.bandwidth is None else math.nan, 1, lo, hi,
                expansion.auto_scale(Xs, ws), n_eff, {})
        scale = np.where(choice.scale > 0, choice.scale, (hi - lo) / 4)
        sigma = np.full(lo.shape[0], float(self.bandwidth)) if self.bandwidth is not None \
            else expansion.rule_sigma(choice.factor, scale, n_eff)
        self.auto_ = choice
        steps = choice.n_iter if self.variant == "em" else 1
        return expansion.auto_grid(lo, hi, sigma), steps

    def _set_nodes(self, nodes, D):
        self._nodes = nodes
        self.means_ = nodes.means()
        self.sigma_ = nodes.sigma.copy()
        self.grid_shape_ = tuple(int(s) for s in nodes.shape)
        self.bounds_ = np.stack([nodes.lo, nodes.lo + nodes.h * (np.array(nodes.shape) - 1)]
                                if nodes.is_grid else [nodes.lo, nodes.lo + nodes.h])
        self.n_features_in_ = D

    def fit(self, X: DataLike, y: Any = None,
            sample_weight: DataLike | None = None) -> "GMMExpansion":
        """Learn the weights, one pass over the data per step (see the class docstring).

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            As for ``GaussianMixture.fit``; with ``device="cuda"`` also a device array.
        y : None
            Ignored; present for scikit-learn compatibility.
        sample_weight : array-like of shape (N,), optional
            Non-negative weights of the rows.

        Returns
        -------
        GMMExpansion
            The fitted estimator (``self``).

        Raises
        ------
        ValueError
            For an invalid hyper-parameter (named) or invalid input (naming the first bad row).

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GMMExpansion
        >>> X = np.random.default_rng(0).normal(size=(2000, 1))
        >>> ge = GMMExpansion(n_nodes=50).fit(X)
        >>> ge.grid_shape_, ge.n_iter_
        ((50,), 1)
        """
        self._validate_params()
        gpu = self._launch()
        host, dev, opened = self._rows(X, sample_weight, fitting=True, gpu=gpu)
        data = dev if dev is not None else host  # the passes' rows
        try:
            rng = check_random_state(self.random_state)
            if self._stage_applies(host, dev) and self._fit_parametric(host, rng):
                return self
            with blas_single_threaded():
                nodes, steps = self._make_nodes(host if host is not None else dev, rng)
                M = nodes.n_nodes
                weights = np.full(M, 1.0 / M)
                lbs = []
                for _ in range(steps):
                    with np.errstate(divide="ignore"):  # nodes with no data: weight 0
                        log_w = np.log(weights)
                    acc = expansion.weights_pass(data, nodes, log_w, self.variant, gpu=gpu)
                    lbs.append(float(acc[1][0] / acc[1][1]))
                    weights = expansion.weights_from(acc, self.variant)
        finally:
            if opened:
                host.close()
        self._set_nodes(nodes, data.n_features)
        self._set_weights(weights)
        self.lower_bound_ = lbs[-1]
        self.lower_bounds_ = lbs
        self.n_iter_ = steps
        self._acc = acc if steps == 1 else None
        return self

    def _set_weights(self, node_weights, alpha=1.0, param=None, stack=None):
        """Publish the weights: the nodes' alone (pure expansion), or the nodes' times alpha
        followed by the parametric components' times 1 - alpha."""
        self.node_weights_ = node_weights
        self.alpha_ = float(alpha)
        self._param = param
        self.stack_ = stack
        if param is None:
            self.weights_ = node_weights
            return
        self.weights_ = np.concatenate([alpha * node_weights, (1.0 - alpha) * param.weights])
        self.means_ = np.concatenate([self._nodes.means(), param.means])

    @property
    def covariances_(self) -> np.ndarray:
        """Covariances of the nodes, then of the parametric components, built on access.

        Returns
        -------
        numpy.ndarray of shape (M, D, D) or (M + S * K, D, D), dtype float64
            ``diag(sigma_ ** 2)`` for each of the M nodes, followed by the covariances of the
            S EM fits' K components each when the parametric stage kept them.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GMMExpansion
        >>> X = np.random.default_rng(0).normal(size=(2000, 1))
        >>> ge = GMMExpansion(parametric=None).fit(X)
        >>> ge.covariances_.shape == (ge.means_.shape[0], 1, 1)
        True
        """
        self._check_fitted()
        M, D = self._nodes.n_nodes, self.n_features_in_
        nodes = np.broadcast_to(np.diag(self.sigma_ ** 2), (M, D, D))
        if self._param is None:
            return nodes.copy()
        return np.concatenate([nodes, self._param.cov.covariances])

    def _stage_applies(self, host, dev):
        """Whether ``fit`` runs the parametric stage: parametric="auto" with automatic nodes,
        in-memory rows on the CPU, at least STACK_MIN_ROWS rows (and effective rows)."""
        if self.parametric != "auto" or not isinstance(self.n_nodes, str) or dev is not None \
                or host is None or host.in_memory is None:
            return False
        n = host.in_memory.shape[0]  # the effective rows are at most n
        return expansion.n_effective(host.weights, n) >= expansion.STACK_MIN_ROWS

    def _fit_parametric(self, host, rng):
        """The parametric stage (class docstring): hold rows out, fit the expansion and EM
        mixtures on the others, choose K and the weight alpha of the expansion by the held-out
        likelihood, refit both on all rows.  False (nothing set) when no mixture fits."""
        X, sw = host.in_memory, host.weights
        N, D = X.shape
        held = expansion.holdout_mask(N)
        Xt, Xh = np.ascontiguousarray(X[~held]), np.ascontiguousarray(X[held])
        wt, wh = (None, None) if sw is None else (sw[~held], sw[held])
        pure = {**self.get_params(), "parametric": None}
        exp_t = type(self)(**pure).fit(Xt, sample_weight=wt)
        lp_exp = exp_t.score_samples(Xh)
        inside = np.all((Xh >= exp_t.bounds_[0]) & (Xh <= exp_t.bounds_[1]), axis=1)
        seeds = [int(v) for v in rng.integers(0, 2**31 - 1, size=expansion.STACK_INITS)]
        starts, K, scores = self._choose_em(Xt, wt, Xh, wh, seeds)
        if not starts:  # no mixture could be fitted (e.g. too few distinct rows)
            return False
        chosen = dict(tol=expansion.STACK_TOL, max_iter=expansion.STACK_MAX_ITER)
        # the parametric part: the equal-weight average of the K-component fits from its
        # best STACK_AVERAGE starts (each refined on the training rows), itself a mixture of
        # S * K Gaussians
        ems_t = [self._em_member(K, Xt, wt, warm=em, **chosen)
                 for em in starts[:max(1, expansion.STACK_AVERAGE)]]
        S = len(ems_t)
        lp_par = expansion.mix_log_prob(np.stack([em.score_samples(Xh) for em in ems_t], axis=1),
                                        np.full(S, 1.0 / S))
        ok = inside if wh is None else inside & (wh > 0)
        alpha, z = expansion.stack_alpha(lp_exp[ok], lp_par[ok], None if wh is None else wh[ok])
        final = type(self)(**pure).fit(X, sample_weight=sw)  # the pure default on all rows
        ems = [self._em_member(K, X, sw, warm=em_t, **chosen) for em_t in ems_t]
        param = GMMParams(
            np.concatenate([np.asarray(em.weights_, np.float64) for em in ems]) / S,
            np.concatenate([np.asarray(em.means_, np.float64) for em in ems]),
            FullCovariance.from_covariances(np.concatenate(
                [np.asarray(em.covariances_, np.float64) for em in ems])))
        self._nodes = final._nodes
        for name in ("sigma_", "grid_shape_", "bounds_", "n_features_in_", "auto_",
                     "lower_bound_", "lower_bounds_", "n_iter_"):
            setattr(self, name, getattr(final, name))
        self.means_ = final.means_
        self._acc = None
        self._set_weights(final.weights_, alpha, param,
                          StackChoice(alpha, K, scores, int(held.sum()), int(inside.sum()), z,
                                      S))
        return True

    @staticmethod
    def _em_member(K, X, w, warm=None, seed=None, **kw):
        """A full-covariance GaussianMixture with K components fitted on (X, w), from a
        k-means++ start (``seed``) or from the fitted mixture ``warm``."""
        from ._gaussian import GaussianMixture
        if warm is not None:
            kw.update(weights_init=warm.weights_, means_init=warm.means_,
                      precisions_init=warm.precisions_)
        with warnings.catch_warnings():  # a member's warnings are not the caller's business
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", DegenerateComponentWarning)
            return GaussianMixture(K, covariance_type="full", random_state=seed, **kw).fit(
                X, sample_weight=w)

    def _choose_em(self, Xt, wt, Xh, wh, seeds):
        """(the chosen K's fitted starts, K, {K: held-out score}): for K in STACK_KS (while
        the training sample allows it), STACK_INITS k-means++ starts each, on a stride sample
        of at most STACK_SWEEP_ROWS training rows, scored by the held-out weighted mean
        log-likelihood; the sweep stops after STACK_PATIENCE K without improvement.  K is the
        one whose best start scores highest (its score); every start of it that could be
        fitted is returned, best first."""
        step = max(1, -(-Xt.shape[0] // expansion.STACK_SWEEP_ROWS))
        Xs, ws = Xt[::step], None if wt is None else wt[::step]
        kmax = max(1, expansion.stack_max_components(Xs.shape[0], Xt.shape[1]))
        scores, tops, best, bad = {}, {}, None, 0  # best: the K of the best score
        for K in expansion.STACK_KS:
            if K > kmax:
                break
            fits = []
            for seed in seeds[:1] if K == 1 else seeds:
                try:
                    em = self._em_member(K, Xs, ws, seed=seed, tol=expansion.STACK_SWEEP_TOL)
                except (ValueError, np.linalg.LinAlgError):
                    continue  # e.g. more components than distinct rows
                lp = em.score_samples(Xh)
                fits.append((float(np.average(lp, weights=wh)), len(fits), em))
            if not fits:
                break
            fits.sort(key=lambda f: (-f[0], f[1]))  # best first; ties: the earlier seed
            scores[K], tops[K] = fits[0][0], [f[2] for f in fits]
            if best is None or scores[K] > scores[best]:
                best, bad = K, 0
            else:
                bad += 1
                if bad >= expansion.STACK_PATIENCE:
                    break
        if best is None:
            return [], 0, scores
        return tops[best], best, scores

    def partial_fit(self, X: DataLike, y: Any = None,
                    sample_weight: DataLike | None = None) -> "GMMExpansion":
        """Add the one-pass statistics of the rows ``X`` and update the weights.

        After any sequence of calls the weights equal those of ``fit`` on all rows (one step,
        uniform start), provided the grid is the same: give ``bounds``, otherwise the first call's
        data range fixes the grid.

        Parameters
        ----------
        X : array-like of shape (n, D)
            A batch of rows (with ``device="cuda"`` NumPy rows are uploaded per call, device
            arrays used in place).
        y : None
            Ignored; present for scikit-learn compatibility.
        sample_weight : array-like of shape (n,), optional
            Non-negative weights of the rows.

        Returns
        -------
        GMMExpansion
            The updated estimator (``self``).

        Raises
        ------
        ValueError
            For invalid input (naming the first bad row) or a batch of another width.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GMMExpansion
        >>> X = np.random.default_rng(0).normal(size=(2000, 1))
        >>> kw = dict(n_nodes=50, bounds=([-4.0], [4.0]))
        >>> ge = GMMExpansion(**kw).partial_fit(X[:1000]).partial_fit(X[1000:])
        >>> bool(np.allclose(ge.weights_, GMMExpansion(**kw).fit(X).weights_))
        True
        """
        self._validate_params()
        gpu = self._launch()
        from .. import gpu as fgpu
        if self._on_device(X, sample_weight, gpu):
            host, dev = None, fgpu.device_rows(X, sample_weight, min_samples=1)
        else:
            X = check_array(X, min_samples=1)
            sw = check_sample_weight(sample_weight, X.shape[0])
            host = sources.as_stream(X, sw, self._chunk_rows)
            dev = None if gpu is None else fgpu.to_gpu(X, sw)
        D = (host if host is not None else dev).n_features
        with blas_single_threaded():
            if getattr(self, "_acc", None) is None:
                if hasattr(self, "weights_"):
                    raise ValueError("partial_fit continues only a model built by partial_fit "
                                     "or a one-step fit")
                self._set_nodes(self._make_nodes(host if host is not None else dev,
                                                 check_random_state(self.random_state),
                                                 select=False)[0], D)
                M = self._nodes.n_nodes
                self._acc = [np.zeros(M), np.zeros(2)]
            elif D != self.n_features_in_:
                raise ValueError(f"X has {D} features, but {type(self).__name__} is "
                                 f"expecting {self.n_features_in_} features as input.")
            M = self._nodes.n_nodes
            expansion.weights_pass(dev if dev is not None else host, self._nodes,
                                   np.full(M, -math.log(M)), self.variant, self._acc, gpu=gpu)
        acc: Any = self._acc
        self._set_weights(expansion.weights_from(acc, self.variant))
        self.lower_bound_ = float(acc[1][0] / acc[1][1])
        self.lower_bounds_ = [self.lower_bound_]
        self.n_iter_ = 1
        return self

    def score_samples(self, X: DataLike) -> np.ndarray:
        """Compute the log-density of the model at each row.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            As for ``GaussianMixture.fit``; with ``device="cuda"`` also a device array.

        Returns
        -------
        numpy.ndarray of shape (N,), dtype float64
            log p(x) of each row (a host array, also for device rows).

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            When ``X`` has another number of features than the fit's or NaN / inf values.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GMMExpansion
        >>> X = np.random.default_rng(0).normal(size=(2000, 1))
        >>> ge = GMMExpansion(n_nodes=50).fit(X)
        >>> ge.score_samples(X[:3]).shape
        (3,)
        """
        gpu = self._launch()
        host, dev, opened = self._rows(X, None, fitting=False, gpu=gpu)
        try:
            lp = expansion.log_prob(dev if dev is not None else host, self._nodes,
                                    self.node_weights_, gpu=gpu)
            if self._param is None:
                return lp
            if host is None:  # device rows: the parametric part is scored on the host
                host = sources.as_stream(*dev.to_host())
            lp_par = inference.log_prob(host, self._param, self._chunk_rows)[0]
            return expansion.mix_log_prob(np.stack([lp, lp_par], axis=1),
                                          [self.alpha_, 1.0 - self.alpha_])
        finally:
            if opened:
                host.close()

    def score(self, X: DataLike, y: Any = None) -> float:
        """Compute the mean log-likelihood per row.

        Parameters
        ----------
        X : array-like of shape (N, D), or out-of-core data
            As for ``GaussianMixture.fit``; with ``device="cuda"`` also a device array.
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
        >>> from fastmix import GMMExpansion
        >>> X = np.random.default_rng(0).normal(size=(2000, 1))
        >>> ge = GMMExpansion(n_nodes=50).fit(X)
        >>> bool(np.isclose(ge.score(X), ge.score_samples(X).mean()))
        True
        """
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw points from the fitted density.

        Parameters
        ----------
        n_samples : int, default=1
            Number of points, at least 1.

        Returns
        -------
        X : numpy.ndarray of shape (n_samples, D), dtype float64
            The points.
        nodes : numpy.ndarray of shape (n_samples,), dtype int64
            The node each point was drawn from.

        Raises
        ------
        NotFittedError
            When the model is not fitted.
        ValueError
            When ``n_samples`` is not an integer >= 1.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmix import GMMExpansion
        >>> X = np.random.default_rng(0).normal(size=(2000, 1))
        >>> ge = GMMExpansion(n_nodes=50).fit(X)
        >>> Xs, nodes = ge.sample(5)
        >>> Xs.shape, nodes.shape
        ((5, 1), (5,))
        """
        self._check_fitted()
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
                or n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples!r}")
        rng = check_random_state(self.random_state)
        idx = rng.choice(self.weights_.shape[0], size=n_samples, p=self.weights_)
        X = self.means_[idx] + rng.standard_normal((n_samples, self.means_.shape[1])) * \
            self.sigma_
        M = self._nodes.n_nodes
        for k in np.unique(idx[idx >= M]) if self._param is not None else ():
            rows = np.flatnonzero(idx == k)  # a parametric component: its own covariance
            L = np.linalg.cholesky(self._param.cov.covariances[k - M])
            X[rows] = self.means_[k] + rng.standard_normal((rows.size, L.shape[0])) @ L.T
        return X, idx.astype(np.int64)

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
        >>> from fastmix import GMMExpansion
        >>> X = np.random.default_rng(0).normal(size=(2000, 1))
        >>> ge = GMMExpansion(n_nodes=50).fit(X)
        >>> import fastmix
        >>> ge.save("expansion.npz")
        >>> bool(np.array_equal(fastmix.load("expansion.npz").weights_, ge.weights_))
        True
        """
        self._check_fitted()
        params = {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                  for k, v in self.get_params().items() if k not in ("random_state", "bounds")}
        nodes = self._nodes
        meta = {"format_version": FORMAT_VERSION, "class": type(self).__name__,
                "params": params, "lower_bound_": self.lower_bound_,
                "lower_bounds_": self.lower_bounds_, "n_iter_": self.n_iter_,
                "n_features_in_": self.n_features_in_, "shape": list(self.grid_shape_)}
        arrays = {"weights": self.node_weights_, "lo": nodes.lo, "h": nodes.h,
                  "sigma": nodes.sigma, "centres": nodes.centres}
        if self._param is not None:
            meta["alpha"] = self.alpha_
            meta["stack"] = {"n_components": self.stack_.n_components,
                             "scores": {str(k): v for k, v in self.stack_.scores.items()},
                             "n_heldout": self.stack_.n_heldout,
                             "n_inside": self.stack_.n_inside, "z": self.stack_.z,
                             "n_starts": self.stack_.n_starts}
            arrays.update(param_weights=self._param.weights, param_means=self._param.means,
                          param_covariances=self._param.cov.covariances)
        if self.bounds is not None:
            arrays["bounds"] = np.asarray(self.bounds, dtype=np.float64)
        _atomic_write(path, lambda fh: np.savez(fh, meta=np.array(json.dumps(meta)), **arrays))

    @classmethod
    def _from_saved(cls, meta, arrays):
        est = cls(**meta["params"])
        if "bounds" in arrays:
            est.bounds = arrays["bounds"]
        est._validate_params()
        D = int(meta["n_features_in_"])
        shape = tuple(int(s) for s in meta["shape"])
        nodes = expansion.Nodes(np.asarray(arrays["lo"], np.float64),
                                np.asarray(arrays["h"], np.float64), shape,
                                np.asarray(arrays["sigma"], np.float64),
                                np.asarray(arrays["centres"], np.float64))
        w = np.asarray(arrays["weights"], np.float64)
        if nodes.lo.shape != (D,) or nodes.sigma.shape != (D,) or w.shape != (nodes.n_nodes,):
            raise ValueError("inconsistent shapes")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or not abs(w.sum() - 1) < 1e-6:
            raise ValueError("weights are not a probability vector")
        if not np.all(nodes.sigma > 0):
            raise ValueError("bandwidth must be positive")
        est._set_nodes(nodes, D)
        param, alpha, stack = None, 1.0, None
        if "alpha" in meta:  # a model with the parametric stage
            alpha = float(meta["alpha"])
            if not 0.0 <= alpha <= 1.0:
                raise ValueError("alpha is not in [0, 1]")
            pw = np.asarray(arrays["param_weights"], np.float64)
            pm = np.asarray(arrays["param_means"], np.float64)
            pc = np.asarray(arrays["param_covariances"], np.float64)
            K = pw.shape[0]
            if pw.ndim != 1 or pm.shape != (K, D) or pc.shape != (K, D, D):
                raise ValueError("inconsistent shapes of the parametric components")
            if not np.all(np.isfinite(pw)) or np.any(pw < 0) or not abs(pw.sum() - 1) < 1e-6:
                raise ValueError("parametric weights are not a probability vector")
            param = GMMParams(pw, pm, FullCovariance.from_covariances(pc))
            st = meta["stack"]
            stack = StackChoice(alpha, int(st["n_components"]),
                                {int(k): float(v) for k, v in st["scores"].items()},
                                int(st["n_heldout"]), int(st["n_inside"]), float(st["z"]),
                                int(st.get("n_starts", 1)))
        est._set_weights(w, alpha, param, stack)
        est.lower_bound_ = float(meta["lower_bound_"])
        est.lower_bounds_ = [float(v) for v in meta["lower_bounds_"]]
        est.n_iter_ = int(meta["n_iter_"])
        est._acc = None
        return est
