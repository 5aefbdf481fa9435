"""Fused EM kernels for low-rank-plus-diagonal covariances (mixtures of factor analysers).

Component k has ``Sigma_k = W_k W_k^T + diag(psi_k)`` with ``W_k`` (D, q).  With
``M_k = I_q + W_k^T Psi_k^-1 W_k = L_k L_k^T`` (Cholesky, q x q) the Woodbury identity and the
matrix-determinant lemma give, for ``d = x - mu_k``::

    d^T Sigma^-1 d = sum_i d_i^2 / psi_i - ||B_k d||^2,   B_k = L_k^-1 W_k^T Psi_k^-1  (q, D)
    log det Sigma  = 2 log det L_k + sum_i log psi_i
    E[z | x]       = M_k^-1 W_k^T Psi_k^-1 d = C_k (B_k d),   C_k = L_k^-T              (q, q)
    Cov[z | x]     = M_k^-1 = C_k C_k^T

so a row costs O(D q) per component and nothing D x D is ever formed.

Parameters arrive in the common kernel signature (see ``cpu_estep``); for this kind ``pc`` is
(K, 1 + 2q, D) in the data dtype: row 0 holds ``psi^-1/2``, rows 1..q hold ``B_k``, rows
q+1..2q hold ``C_k`` in their first q columns.  ``lconst[k] = log pi_k - log det L_k
- 1/2 sum log psi_k - D/2 log 2 pi``.

Statistics (float64, centred on ``c_k`` = the means used for the densities), ``s2`` of shape
(K, 1 + q, D + q + 1)::

    s2[k, 0, :D]            sum w r (x - c)^2                    (diagonal second moment)
    s2[k, 1 + a, :D]        sum w r E[z_a | x] (x - c)            (= (sum w r (x - c) E[z]^T)^T)
    s2[k, 1 + a, D + b]     sum w r E[z_a z_b | x]                (includes Cov[z | x])
    s2[k, 1 + a, D + q]     sum w r E[z_a | x]
    s2[k, 0, D:]            0

These are the complete-data sufficient statistics of the factor-analyser M-step
(``fastmix._params.LowRankCovariance``): O(K D q), merged by addition like every other kind.

Precision: log-densities and the posterior means ``E[z|x]`` in the dtype of X; accumulation in
float64.  Determinism: as in ``cpu_estep`` (fixed chunks, slots merged in chunk order by the
caller, 64-byte-aligned BLAS operands).
"""
import numpy as np

from ._jit import kernel
from .estep import ESTEP, _aligned, _row_resp, _row_responsibilities

#: Rows per block.
LOWRANK_BLOCK = 128


@kernel()
def _factors(pc, D):
    """(B^T (K, D, q) contiguous per component, C (K, q, q) float64, psi^-1/2 (K, D)) from the
    packed ``pc``."""
    K = pc.shape[0]
    q = (pc.shape[1] - 1) // 2
    BT = np.empty((K, D, q), dtype=pc.dtype)
    C = np.empty((K, q, q))
    for k in range(K):
        for a in range(q):
            for d in range(D):
                BT[k, d, a] = pc[k, 1 + a, d]
            for b in range(q):
                C[k, a, b] = np.float64(pc[k, 1 + q + a, b])
    return BT, C


@kernel()
def _logdens_block(X, b0, nb, means, pc, BT, lconst, Y, Z, L):
    """Log-densities of rows b0..b0+nb into L (nb, K); the projections B_k (x - mu_k) into
    Z[k, :nb, :] (K, B, q)."""
    K, D = means.shape
    q = BT.shape[2]
    half = X.dtype.type(0.5)
    for k in range(K):
        for b in range(nb):
            acc = X.dtype.type(0)
            for d in range(D):
                y = X[b0 + b, d] - means[k, d]
                Y[b, d] = y
                t = y * pc[k, 0, d]
                acc += t * t
            L[b, k] = acc
        np.dot(Y[:nb], BT[k], Z[k, :nb])
        for b in range(nb):
            proj = X.dtype.type(0)
            for a in range(q):
                proj += Z[k, b, a] * Z[k, b, a]
            L[b, k] = lconst[k] - half * (L[b, k] - proj)


@kernel()
def pass_lowrank(X, sw, R, means, pc, lconst, tmeans, g, means64, g64, cut, chunk_rows,
                 c0, j0, j1, nk_p, s1_p, s2_p, llws_p):
    K, D = means64.shape
    q = (pc.shape[1] - 1) // 2
    BT, C = _factors(pc, D)
    Bk = np.int64(LOWRANK_BLOCK)  # not a Literal: _aligned compiles once per dtype
    has_w = sw.shape[0] > 0
    L = _aligned(Bk, K, X)
    Y = _aligned(Bk, D, X)
    Z = np.empty((K, Bk, q), dtype=X.dtype)
    RB = _aligned(Bk, K, means64)
    Y64 = _aligned(Bk, D, means64)
    EZ = _aligned(Bk, q, means64)
    S = _aligned(q, D, means64)
    lrow = np.empty(K, dtype=X.dtype)
    resp = np.zeros(K)
    zb = np.empty(q)
    ez = np.empty(q)
    K = means64.shape[0]
    N = X.shape[0]
    for slot in range(j0, j1):
        start = (c0 + slot) * chunk_rows
        stop = min(N, start + chunk_rows)
        nk = nk_p[slot, :K]
        s1 = s1_p[slot]
        s2 = s2_p[slot]
        nk[:] = 0.0
        s1[:, :] = 0.0
        s2[:, :, :] = 0.0
        ll = 0.0
        ws = 0.0
        for b0 in range(start, stop, Bk):
            nb = min(Bk, stop - b0)
            _logdens_block(X, b0, nb, means, pc, BT, lconst, Y, Z, L)
            for b in range(nb):
                n = b0 + b
                wn = sw[n] if has_w else 1.0
                for k in range(K):
                    lrow[k] = L[b, k]
                ll += wn * _row_resp(n, R, lrow, resp, cut)
                ws += wn
                for k in range(K):
                    RB[b, k] = wn * resp[k]
            for k in range(K):
                m = 0
                for b in range(nb):
                    wr = RB[b, k]
                    if wr == 0.0:
                        continue
                    n = b0 + b
                    nk[k] += wr
                    for d in range(D):
                        xd = np.float64(X[n, d])
                        s1[k, d] += wr * xd
                        yd = xd - means64[k, d]
                        Y64[m, d] = yd
                        s2[k, 0, d] += wr * yd * yd
                    for a in range(q):
                        zb[a] = np.float64(Z[k, b, a])
                    for a in range(q):  # E[z|x] = C (B d)
                        e = 0.0
                        for c in range(q):
                            e += C[k, a, c] * zb[c]
                        ez[a] = e
                        EZ[m, a] = wr * e
                        s2[k, 1 + a, D + q] += wr * e
                    for a in range(q):
                        wa = EZ[m, a]
                        for c in range(q):
                            s2[k, 1 + a, D + c] += wa * ez[c]
                    m += 1
                if m == 0:
                    continue
                np.dot(EZ[:m].T, Y64[:m], S)
                for a in range(q):
                    for d in range(D):
                        s2[k, 1 + a, d] += S[a, d]
        # Cov[z|x] = C C^T, the same for every row of a component: added once per chunk
        for k in range(K):
            for a in range(q):
                for c in range(q):
                    acc = 0.0
                    for j in range(q):
                        acc += C[k, a, j] * C[k, c, j]
                    s2[k, 1 + a, D + c] += nk[k] * acc
        llws_p[slot, 0] = ll
        llws_p[slot, 1] = ws


@kernel()
def _chunk_log_prob_lowrank(X, start, stop, means, pc, lconst, cut, logp, labels, resp,
                            want_resp):
    K, D = means.shape
    q = (pc.shape[1] - 1) // 2
    BT, _ = _factors(pc, D)
    Bk = np.int64(LOWRANK_BLOCK)  # not a Literal: _aligned compiles once per dtype
    L = _aligned(Bk, K, X)
    Y = _aligned(Bk, D, X)
    Z = np.empty((K, Bk, q), dtype=X.dtype)
    lrow = np.empty(K, dtype=X.dtype)
    r = np.empty(K)
    for b0 in range(start, stop, Bk):
        nb = min(Bk, stop - b0)
        _logdens_block(X, b0, nb, means, pc, BT, lconst, Y, Z, L)
        for b in range(nb):
            n = b0 + b
            for k in range(K):
                lrow[k] = L[b, k]
            lp, am = _row_responsibilities(lrow, r, cut)
            logp[n] = lp
            labels[n] = am
            if want_resp:
                for k in range(K):
                    resp[n, k] = r[k]


@kernel()
def log_prob_lowrank(X, means, pc, lconst, cut, chunk_rows, c_lo, c_hi, logp, labels, resp):
    """Per-row log p(x), argmax labels and (when ``resp`` has N rows) responsibilities, for the
    chunks [c_lo, c_hi)."""
    N = X.shape[0]
    want_resp = resp.shape[0] == N
    for c in range(c_lo, c_hi):
        start = c * chunk_rows
        stop = min(N, start + chunk_rows)
        _chunk_log_prob_lowrank(X, start, stop, means, pc, lconst, cut, logp, labels, resp,
                                want_resp)


__all__ = ["pass_lowrank", "log_prob_lowrank", "ESTEP"]
