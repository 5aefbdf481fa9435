"""Synthetic data, shared initial parameters and a neutral scorer for benchmarks.

Everything here is plain NumPy so that every library in a comparison starts
from *exactly* the same numbers:

* :func:`make_mixture` draws a seeded sample from a Gaussian mixture with
  anisotropic full covariances, either well separated or heavily overlapping.
* :func:`initial_parameters` computes one starting point (weights, means,
  covariances, precisions) for every covariance type from a short Lloyd
  k-means run, so that all EM implementations begin from the same state.
* :func:`mean_log_likelihood` evaluates the average log-likelihood of any
  set of mixture parameters on ``X`` -- used to check that libraries which
  ran the same number of EM iterations from the same start agree.

The module has no dependency on fastmix or on any library being compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
SEPARATIONS = ("well", "overlap")

# Distance scale of the true component means relative to the (unit order)
# within-component standard deviations.  With "well" the components are
# many standard deviations apart in D = 16; with "overlap" neighbouring
# components share a large part of their mass, so EM has real work to do.
_MEAN_SCALE = {"well": 8.0, "overlap": 1.0}


@dataclass(frozen=True)
class MixtureTruth:
    """Parameters of the mixture a data set was drawn from."""

    weights: np.ndarray  # (k,)
    means: np.ndarray  # (k, d)
    covariances: np.ndarray  # (k, d, d)
    separation: str
    seed: int


def make_mixture(
    n: int,
    d: int,
    k: int = 16,
    *,
    separation: str = "overlap",
    seed: int = 0,
    dtype=np.float64,
    return_truth: bool = False,
):
    """Draw ``n`` points in ``d`` dimensions from a random ``k``-component mixture.

    The sample is generated in float64 and written straight into an array of
    ``dtype``, one component at a time, so the peak memory is the output plus
    one component's worth of temporaries (important for peak-RSS benchmarks).
    For a given seed the float32 data are the float64 data rounded.

    Parameters
    ----------
    n, d, k : int
        Number of samples, features and mixture components.
    separation : {"well", "overlap"}
        ``"well"``: component means far apart relative to their spread;
        ``"overlap"``: means within about one standard deviation.
    seed : int
        Seed of the NumPy generator; same seed -> same data.
    dtype : numpy dtype
        Output dtype (float64 or float32).
    return_truth : bool
        Also return the generating :class:`MixtureTruth`.
    """
    if separation not in SEPARATIONS:
        raise ValueError(f"separation must be one of {SEPARATIONS}, got {separation!r}")
    rng = np.random.default_rng(seed)

    # Mildly unequal weights (no component is tiny).
    weights = rng.uniform(0.5, 1.5, size=k)
    weights /= weights.sum()
    means = rng.normal(scale=_MEAN_SCALE[separation], size=(k, d))

    # Random anisotropic SPD covariances: R diag(s^2) R^T with R orthogonal
    # and standard deviations s spread over [0.3, 1.5].
    covariances = np.empty((k, d, d))
    factors = np.empty((k, d, d))
    for j in range(k):
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        q *= np.sign(np.diag(r))  # a uniformly distributed rotation
        s = rng.uniform(0.3, 1.5, size=d)
        factors[j] = q * s  # covariance = factor @ factor.T
        covariances[j] = factors[j] @ factors[j].T

    labels = rng.choice(k, size=n, p=weights)
    X = np.empty((n, d), dtype=dtype)
    for j in range(k):
        idx = np.flatnonzero(labels == j)
        z = rng.standard_normal((idx.size, d))
        X[idx] = z @ factors[j].T + means[j]
    del labels

    if return_truth:
        return X, MixtureTruth(weights, means, covariances, separation, seed)
    return X


def _nearest_center(X: np.ndarray, centers: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Index of the closest center (squared Euclidean) for each row of X, chunked."""
    labels = np.empty(X.shape[0], dtype=np.intp)
    c = centers.astype(np.float64)
    c_sq = np.einsum("ij,ij->i", c, c)
    for start in range(0, X.shape[0], chunk):
        x = X[start:start + chunk].astype(np.float64, copy=False)
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 does not change the argmin.
        labels[start:start + chunk] = np.argmin(c_sq - 2.0 * (x @ c.T), axis=1)
    return labels


def initial_parameters(
    X: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    reg_covar: float = 1e-6,
    kmeans_iter: int = 5,
    subsample: int = 100_000,
) -> dict[str, dict[str, np.ndarray]]:
    """One EM starting point, expressed for every covariance type.

    k centres are drawn from the rows of ``X``, refined by ``kmeans_iter``
    Lloyd iterations on a random subsample of at most ``subsample`` rows,
    and every row of ``X`` is then hard-assigned to its nearest centre.  The
    weights, means and per-type covariances of that partition (plus
    ``reg_covar`` on the diagonal, as scikit-learn does) are the initial
    parameters.  Everything is computed in float64.

    Returns
    -------
    dict mapping covariance type -> {"weights", "means", "covariances",
    "precisions"} in scikit-learn's shapes:

    ==========  ===================  ===================
    type        covariances          precisions
    ==========  ===================  ===================
    full        (k, d, d)            (k, d, d)
    tied        (d, d)               (d, d)
    diag        (k, d)               (k, d)
    spherical   (k,)                 (k,)
    ==========  ===================  ===================
    """
    rng = np.random.default_rng(seed)
    n, d = X.shape
    rows = rng.choice(n, size=min(n, subsample), replace=False)
    sample = X[np.sort(rows)].astype(np.float64)
    centers = sample[rng.choice(sample.shape[0], size=k, replace=False)].copy()
    for _ in range(kmeans_iter):
        lab = _nearest_center(sample, centers)
        for j in range(k):
            members = sample[lab == j]
            # An empty cluster gets a fresh random point instead of a NaN mean.
            centers[j] = members.mean(axis=0) if len(members) else sample[rng.integers(len(sample))]

    labels = _nearest_center(X, centers)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    if np.any(counts < 2):
        raise ValueError("initialisation produced a (nearly) empty component; try another seed")

    means = np.empty((k, d))
    full = np.empty((k, d, d))
    for j in range(k):
        members = X[labels == j].astype(np.float64)
        means[j] = members.mean(axis=0)
        centred = members - means[j]
        full[j] = centred.T @ centred / counts[j]
    weights = counts / n

    eye = np.eye(d)
    out = {}
    cov_full = full + reg_covar * eye
    out["full"] = dict(covariances=cov_full, precisions=np.linalg.inv(cov_full))
    cov_tied = np.einsum("k,kij->ij", counts, full) / n + reg_covar * eye
    out["tied"] = dict(covariances=cov_tied, precisions=np.linalg.inv(cov_tied))
    cov_diag = np.einsum("kii->ki", full) + reg_covar
    out["diag"] = dict(covariances=cov_diag, precisions=1.0 / cov_diag)
    cov_sph = cov_diag.mean(axis=1)
    out["spherical"] = dict(covariances=cov_sph, precisions=1.0 / cov_sph)
    # Make the inverted matrices exactly symmetric (libraries check symmetry).
    for cov_type in ("full", "tied"):
        p = out[cov_type]["precisions"]
        out[cov_type]["precisions"] = 0.5 * (p + np.swapaxes(p, -1, -2))
    for params in out.values():
        params["weights"] = weights.copy()
        params["means"] = means.copy()
    return out


def full_covariances(covariances: np.ndarray, covariance_type: str, k: int, d: int) -> np.ndarray:
    """Expand covariances of any type to a (k, d, d) stack."""
    c = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return c.reshape(k, d, d)
    if covariance_type == "tied":
        return np.broadcast_to(c.reshape(d, d), (k, d, d))
    if covariance_type == "diag":
        return np.stack([np.diag(row) for row in c.reshape(k, d)])
    if covariance_type == "spherical":
        return c.reshape(k, 1, 1) * np.eye(d)
    raise ValueError(f"unknown covariance_type {covariance_type!r}")


def mean_log_likelihood(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    covariance_type: str = "full",
    chunk: int = 1 << 16,
) -> float:
    """Average log-likelihood per sample of a Gaussian mixture, in float64.

    Independent of every library under test: covariances of any type are
    expanded to full matrices, factorised with Cholesky, and the per-sample
    log-sum-exp over components is accumulated in chunks of ``chunk`` rows.
    """
    weights = np.asarray(weights, dtype=np.float64).ravel()
    means = np.asarray(means, dtype=np.float64)
    k, d = means.shape
    covs = full_covariances(covariances, covariance_type, k, d)
    chols = np.linalg.cholesky(covs)  # (k, d, d) lower
    log_det = 2.0 * np.log(np.diagonal(chols, axis1=1, axis2=2)).sum(axis=1)
    const = np.log(weights) - 0.5 * (d * np.log(2.0 * np.pi) + log_det)
    inv_chols = np.linalg.inv(chols)  # L^{-1}; |L^{-1}(x - mu)|^2 = Mahalanobis

    total = 0.0
    n = X.shape[0]
    log_p = np.empty((min(chunk, n), k))
    for start in range(0, n, chunk):
        x = X[start:start + chunk].astype(np.float64, copy=False)
        lp = log_p[: x.shape[0]]
        for j in range(k):
            y = (x - means[j]) @ inv_chols[j].T
            lp[:, j] = const[j] - 0.5 * np.einsum("ij,ij->i", y, y)
        m = lp.max(axis=1)
        total += float(np.sum(m + np.log(np.exp(lp - m[:, None]).sum(axis=1))))
    return total / n


def responsibilities(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    covariance_type: str = "full",
    chunk: int = 1 << 16,
) -> np.ndarray:
    """Posterior component probabilities (N, K) float64 of a Gaussian mixture, computed like
    :func:`mean_log_likelihood` (independent of every library under test): the common
    starting point of the variational (BayesianGaussianMixture) timings, whose libraries
    start from responsibilities rather than parameters."""
    weights = np.asarray(weights, dtype=np.float64).ravel()
    means = np.asarray(means, dtype=np.float64)
    k, d = means.shape
    covs = full_covariances(covariances, covariance_type, k, d)
    chols = np.linalg.cholesky(covs)
    log_det = 2.0 * np.log(np.diagonal(chols, axis1=1, axis2=2)).sum(axis=1)
    const = np.log(weights) - 0.5 * (d * np.log(2.0 * np.pi) + log_det)
    inv_chols = np.linalg.inv(chols)
    n = X.shape[0]
    out = np.empty((n, k))
    for start in range(0, n, chunk):
        x = X[start:start + chunk].astype(np.float64, copy=False)
        lp = out[start:start + x.shape[0]]
        for j in range(k):
            y = (x - means[j]) @ inv_chols[j].T
            lp[:, j] = const[j] - 0.5 * np.einsum("ij,ij->i", y, y)
        lp -= lp.max(axis=1, keepdims=True)
        np.exp(lp, out=lp)
        lp /= lp.sum(axis=1, keepdims=True)
    return out
