"""k-means kernels for the initialisation (CPU, Numba): the row loops of a Lloyd pass and of a
k-means++ step.

The distances themselves are BLAS products computed by the caller (``fastmix.kmeans``: the
expansion about a centre ``m``, one product per chunk); these kernels do the rest of the work
on every row in one loop -- the nearest centre, the counts and sums of a Lloyd pass; the
candidates' potentials of a k-means++ step -- where NumPy needed a dozen calls of a few
microseconds each.  On scikit-learn's digits (1797 x 64, K = 10, 4 seedings) that glue was
two thirds of the k-means time.  The kernels release the GIL, so the chunks of a pass run truly
side by side.  They take float64 only and call no BLAS themselves: a kernel with ``np.dot``
compiled ~1 s longer (measured), and every fit compiles these.
"""
from ._jit import kernel


@kernel(error_model="numpy")
def lloyd_chunk(dt, c0, xn, Xb, w, K, S, labels, mind, nk, s1):
    """Nearest of K centres for each of S centre sets, for the rows of one chunk, and the
    (weighted) counts and sums of each centre's rows.

    ``dt`` (K S, B): ``-2 (C - m) . (x - 0)`` for centre rows ordered (k, s) (a BLAS product of
    the caller); ``c0`` (K S,) = ||C - m||^2 + 2 m.(C - m); ``xn`` (B,) = ||x - m||^2, so that
    ``dt + c0 + xn`` are the squared distances.  ``Xb`` (B, D) the chunk's rows, ``w`` (B,)
    their weights (empty: 1).  Writes ``labels`` (S, B) int64 and ``mind`` (S, B) (clipped at
    0), and overwrites ``nk`` (K S,) and ``s1`` (K S, D) with the chunk's sums.  The first
    centre wins ties, as ``np.argmin``.
    """
    B, D = Xb.shape
    has_w = w.shape[0] > 0
    for j in range(K * S):
        nk[j] = 0.0
        for d in range(D):
            s1[j, d] = 0.0
    for s in range(S):
        for b in range(B):
            best = dt[s, b] + c0[s]
            lab = 0
            for k in range(1, K):
                v = dt[k * S + s, b] + c0[k * S + s]
                if v < best:
                    best = v
                    lab = k
            labels[s, b] = lab
            mind[s, b] = max(best + xn[b], 0.0)
            wb = w[b] if has_w else 1.0
            j = lab * S + s
            nk[j] += wb
            for d in range(D):
                s1[j, d] += wb * Xb[b, d]


@kernel(error_model="numpy")
def kmeanspp_step(P, mc, cn, xn, w, mind, cum):
    """Evaluate T k-means++ candidates and keep the best (greedy k-means++).

    ``P`` (N, T) = X (C - m)^T for the candidates C (a BLAS product of the caller), ``mc`` (T,)
    = m.(C - m), ``cn`` (T,) = ||C - m||^2, ``xn`` (N,) = ||x - m||^2: the squared distance of
    row n to candidate t is ``xn + cn - 2 (P - mc)``, exactly 0 below 1e-12 of ``xn + cn`` (a
    row equal to a candidate is never drawn again).  ``mind`` (N,): each row's squared distance
    to the nearest seed so far (+inf before the first), updated with the best candidate's;
    ``cum`` (N,) receives the cumulative sum of ``w * mind`` (the next draw's distribution).
    Returns (index of the best candidate, its potential
    sum w * min(mind, d)).
    """
    N, T = P.shape
    best_pot = 0.0
    best_t = -1
    for t in range(T):
        p = 0.0
        for n in range(N):
            scale = xn[n] + cn[t]
            v = scale - 2.0 * (P[n, t] - mc[t])
            if v <= 1e-12 * scale:
                v = 0.0
            p += w[n] * min(v, mind[n])
        if best_t < 0 or p < best_pot:
            best_pot = p
            best_t = t
    acc = 0.0
    for n in range(N):
        scale = xn[n] + cn[best_t]
        v = scale - 2.0 * (P[n, best_t] - mc[best_t])
        if v <= 1e-12 * scale:
            v = 0.0
        v = min(v, mind[n])
        mind[n] = v
        acc += w[n] * v
        cum[n] = acc
    return best_t, best_pot
