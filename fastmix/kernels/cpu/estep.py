"""Fused EM kernels for the four classic covariance types (CPU, Numba).

One pass over a row range computes, row by row and without ever building the N x K matrix:
the weighted log-densities ``l_k = log pi_k + log N(x | mu_k, Sigma_k)``, their log-sum-exp
``log p(x)``, the responsibilities ``r_k``, and the sufficient statistics

* ``nk[k]   = sum_n w_n r_nk``
* ``s1[k]   = sum_n w_n r_nk x_n``
* ``s2``    second moments *centred on the means used for the densities* (float64):
  full ``(K, D, D)``: ``sum w r (x - mu_k)(x - mu_k)^T``; tied ``(1, D, D)``:
  ``sum w (x - g)(x - g)^T`` with ``g`` a single centre; diag ``(K, 1, D)``:
  ``sum w r (x - mu_k)^2``; spherical ``(K, 1, 1)``: ``sum w r ||x - mu_k||^2``
* ``ll      = sum_n w_n log p(x_n)`` and ``ws = sum_n w_n``.

Covariance parameters arrive as a 3-D array ``pc`` of precision-Cholesky factors so that every
kernel has the same signature: full ``(K, D, D)`` upper-triangular ``U_k`` with
``Sigma_k^-1 = U_k U_k^T``; tied ``(1, D, D)``; diag ``(K, 1, D)`` = ``1/sigma``; spherical
``(K, 1, 1)``.  ``lconst[k] = log pi_k + log det U_k - D/2 log(2 pi)`` (float64).  Each kind has
its own pass (``pass_<kind>``, a serial loop over chunk slots that ``kernels._pass`` runs on
several threads); full, tied and diag work on blocks of rows with BLAS products (diag without
a shared centre row by row, ``pass_diag_rows``).  Spherical models run through the diagonal
passes: ``pass_diag`` with one quadratic column ||x - g||^2 instead of D, the row loop with their
precision repeated over the features (``kernels._pass``).

Precision: the densities are evaluated in the dtype of ``X`` (float32 stays float32), the
log-sum-exp and every accumulation in float64.

Determinism: rows are cut into fixed chunks of ``chunk_rows`` rows.  Each chunk owns
one slot of the partial-statistics buffers; the caller (``fastmix.kernels._pass``) merges the
slots into the totals strictly in chunk order, so the result does not depend on the number of
threads.  No floating-point re-association (see ``_jit.py``) and 64-byte-aligned BLAS operands
keep every chunk's own result independent of the heap layout.

Small responsibilities are cut: a component whose log-density is more than ``-cut`` below the
row's maximum gets responsibility exactly 0 and is skipped in the statistics (``cut`` = -40 in
float64: exp(-40) = 4.2e-18, so for K < 26 each row's total is unchanged in float64; -20 in
float32).
"""
import math

import numpy as np
from numba import types
from numba.extending import overload

from ._jit import kernel
from ._math import EXP_MIN_ARG, exp_nonpos

FULL, TIED, DIAG, SPHERICAL = 0, 1, 2, 3
#: pass modes: fused E-step, statistics of given responsibilities (2 was the removed NEAREST).
#: The passes themselves take no mode: ``R=None`` is the E-step, an (N, K) array the given
#: responsibilities.  Numba prunes the branches of an argument typed None before compiling, so
#: a default fit compiles only the E-step's code; with a mode flag both branches, plus the
#: float32-only code of ``pass_diag``, were compiled every time (~0.2-0.3 s of the diagonal
#: pass's 3 s, measured from the pipeline timings of the compiled overload).  Statistics of
#: given responsibilities (random starts, Dask's hard passes) compile their own overload.
ESTEP, RESP = 0, 1


# One small function per covariance kind and job: LLVM vectorises these simple loops, and did not
# vectorise the same loops when all kinds shared one function body (measured 3-8x slower).
# Rows are addressed by index, never sliced: a row view per row costs an atomic reference-count
# update, which two threads then fight over.

# The per-row density loops run over components innermost, on transposed (D, K) parameters:
# element-wise accumulation vectorises without re-associating floating-point sums (which the
# kernels must not do, see _jit.py); a loop over features innermost is a reduction that stays
# scalar.

@kernel()
def _transposed(means, pc):
    """(D, K) copies of the means and of the diagonal precision-Cholesky factors (for
    spherical, pc's single value repeated), in the dtype of ``means``."""
    K, D = means.shape
    MT = np.empty((D, K), dtype=means.dtype)
    PT = np.empty((D, K), dtype=means.dtype)
    for k in range(K):
        for d in range(D):
            MT[d, k] = means[k, d]
            PT[d, k] = pc[k, 0, d] if pc.shape[2] == D else pc[k, 0, 0]
    return MT, PT


@kernel(inline="always")
def _logdens_diag(X, n, MT, PT, lconst, out):
    """Diagonal (and spherical, with PT constant over d) log-densities of row n into out (K,)."""
    D, K = MT.shape
    half = X.dtype.type(0.5)
    for k in range(K):
        out[k] = 0
    for d in range(D):
        xd = X[n, d]
        for k in range(K):
            y = (xd - MT[d, k]) * PT[d, k]
            out[k] += y * y
    for k in range(K):
        out[k] = lconst[k] - half * out[k]


@kernel()
def _logdens_full(X, n, means, pc, lconst, z, out):
    K, D = means.shape
    half = X.dtype.type(0.5)
    for k in range(K):
        for j in range(D):
            z[j] = 0
        for i in range(D):
            yi = X[n, i] - means[k, i]
            for j in range(D):  # full row: U is upper-triangular, the zeros keep the loop vectorisable
                z[j] += yi * pc[k, i, j]
        acc = X.dtype.type(0)
        for j in range(D):
            acc += z[j] * z[j]
        out[k] = lconst[k] - half * acc


@kernel(inline="always")
def _row_responsibilities(lrow, resp, cut):
    """log-sum-exp of ``lrow`` (K,); writes responsibilities (float64) into ``resp``.

    Components more than ``-cut`` below the maximum get exactly 0.  Returns (log p, argmax).
    """
    K = lrow.shape[0]
    m = -np.inf
    amax = 0
    for k in range(K):
        if lrow[k] > m:
            m = lrow[k]
            amax = k
    if m == -np.inf:  # every component impossible: cannot happen with finite data and parameters
        for k in range(K):
            resp[k] = 0.0
        return -np.inf, amax
    mf = np.float64(m)
    for k in range(K):  # element-wise: vectorises (the exp is branch-free arithmetic)
        t = max(np.float64(lrow[k]) - mf, EXP_MIN_ARG)
        e = exp_nonpos(t)
        resp[k] = e if t > cut else 0.0
    s = 0.0
    for k in range(K):  # the sum, in order
        s += resp[k]
    inv = 1.0 / s
    for k in range(K):
        resp[k] *= inv
    return np.float64(m) + math.log(s), amax


@kernel()
def _acc_diag(X, n, wn, resp, c, nk, s1, s2):
    K, D = c.shape
    for k in range(K):
        r = resp[k]
        if r == 0.0:
            continue
        wr = wn * r
        nk[k] += wr
        for d in range(D):
            xd = np.float64(X[n, d])
            s1[k, d] += wr * xd
            yd = xd - c[k, d]
            s2[k, 0, d] += wr * yd * yd


@kernel(inline="always")
def _row_resp(n, R, lrow, resp, cut):
    """Responsibilities of row n into ``resp``: the E-step's (``R is None``) or row n of the
    given ``R``; returns the row's contribution to ll (log p(x), or 0 for given
    responsibilities).  Hard
    assignments to k-means centres are computed on BLAS (``fastmix.kmeans.hard_stats``): a
    NEAREST mode here made every pass compile a third branch (~0.3 s of a first fit)."""
    K = resp.shape[0]
    if R is None:
        logp, _ = _row_responsibilities(lrow, resp, cut)
        return logp
    for k in range(K):
        resp[k] = R[n, k]
    return 0.0


# One serial pass per covariance kind (and, for diag, per formulation).  A call fills the slots
# [j0, j1) of every *_p buffer, slot j with the statistics of chunk c0 + j alone (scratch
# buffers are allocated once per call); ``_threads.run_ranges`` runs the calls on several
# threads and the caller merges the slots in chunk order, so results do not depend on the
# thread count.  Each pass compiles only its own loop: a single pass dispatching on ``kind``
# compiled all four, roughly doubling a first fit's JIT time, and a separate per-chunk function
# under a thin loop was optimised twice by LLVM (once alone, once linked into the loop: +1.4 s
# for diag, measured from the overloads' pipeline timings).  The diagonal row loop is compiled
# only when a pass needs it (no shared centre).  The loops are spelled out per kind because a
# shared loop dispatching on ``kind`` per row cost ~70 ns per row in call overhead (measured).

@kernel()
def pass_diag_rows(X, sw, R, means, pc, lconst, tmeans, g, means64, g64, cut, chunk_rows,
                   c0, j0, j1, nk_p, s1_p, s2_p, llws_p):
    lrow = np.empty(means.shape[0], dtype=X.dtype)
    resp = np.zeros(means.shape[0])
    MT, PT = _transposed(means, pc)
    has_w = sw.shape[0] > 0
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
        for n in range(start, stop):
            wn = sw[n] if has_w else 1.0
            if R is None:
                _logdens_diag(X, n, MT, PT, lconst, lrow)
            ll += wn * _row_resp(n, R, lrow, resp, cut)
            ws += wn
            if wn != 0.0:
                _acc_diag(X, n, wn, resp, means64, nk, s1, s2)
        llws_p[slot, 0] = ll
        llws_p[slot, 1] = ws


def _stats_operand(F, G):
    """``F`` when ``G`` is None, else ``G``: chosen by type while compiling (a conditional
    expression cannot unify a float32 ``F`` with a float64 ``G``)."""
    return F if G is None else G


@overload(_stats_operand, inline="always")
def _stats_operand_typed(F, G):
    if isinstance(G, types.NoneType):
        return lambda F, G: F
    return lambda F, G: G


@kernel()
def _aligned(n0, n1, like):
    """Uninitialised (n0, n1) array of ``like``'s dtype starting on a 64-byte boundary.

    BLAS kernels take different code paths (and round differently) for differently aligned
    operands, so the scratch matrices handed to ``np.dot`` are aligned: otherwise the last bits
    of a result depended on where malloc put them (not reproducible across thread counts).
    """
    n = max(n0 * n1, 1)
    buf = np.empty(n + 64 // like.itemsize, dtype=like.dtype)
    off = ((64 - buf.ctypes.data % 64) % 64) // like.itemsize
    return buf[off:off + n0 * n1].reshape((n0, n1))


#: Rows per block of the diagonal GEMM path.
DIAG_BLOCK = 256


@kernel()
def pass_diag(X, sw, R, means, pc, lconst, tmeans, g, means64, g64, cut, chunk_rows,
              c0, j0, j1, nk_p, s1_p, s2_p, llws_p, W, F, L, G, RB, S, cst, T, RF, SF, sph):
    """Diagonal and spherical covariances about a shared centre g (``g64`` has D entries; the
    caller picks one only when every mean is close to g, see ``GMMParams.kernel_params``, and
    runs ``pass_diag_rows`` otherwise), a block of rows at a time with two GEMMs.  With
    ``u = x - g`` and P quadratic columns -- P = D for diag (``pc`` (K, 1, D): the u_d^2, ``sph``
    None), P = 1 for spherical (``pc`` (K, 1, 1): ||u||^2, ``sph`` an array; D = 1 takes the
    diagonal branches) --

    * log-densities ``L = [quad(u), u] @ W + c0`` (in X's dtype), i.e. the quadratic form
      expanded around g;
    * statistics ``[sum r quad(u), sum r u] = R^T [quad(u), u]``, re-centred on each mean at
      the end of the chunk: ``s2`` (K, 1, P).  For float64 data the facade passes ``G=None``
      and the GEMM runs on ``F`` (``kernels._pass_layout``; the branches of the other dtype
      are not compiled).  Float32 data take one of two ways, chosen at run time by the facade
      (``kernels._diag_f32_stats``), both compiled in the same overload so that a fit whose
      means move across the gate does not compile again: while every mean is within a squared
      Mahalanobis distance F32_STATS_MAX (128) of g, a single-precision GEMM on ``F`` with the
      responsibilities rounded to float32 (``RF`` (K, B)), each block's sums added into the
      float64 totals ``T`` (``G`` is then an empty (0, P + D) array); beyond it ``G``, the
      float64 ``[quad(u), u]`` built here, and a float64 GEMM.  The float32 sums carry a
      relative error of about (1 + maha2) 2^-24 (sqrt(B / 3) + 3) per block after
      re-centring (the analysis of ``pass_full_expanded``; tested in
      ``tests/test_full_float32_stats.py``).

    The responsibilities of a block are laid out components by rows, ``RT = RB[:K]`` (K, B),
    filled transposed while the constants are added to ``L``; every step over them (the row
    maxima, the exponentials -- two components per step, which runs the exp loop ~30% faster
    than one, bit-identical -- each row's sum over k in order, the weighting) is then an element-wise loop over contiguous rows,
    which vectorises without re-associating anything; ``ll`` and ``nk`` accumulate in row
    order, and the log of each row's sum is a libm call per row (a branch-free vectorised log
    saved ~6 ns/row but cost ~0.2 s of the first fit's compilation, as the second exponential
    per step does; the budget allowed one of the two, and the exponential saves more).  ``RT`` is the plain C-contiguous left operand of the statistics GEMM, over all B
    rows (a short last block zeroes the rest of ``RT`` and ``G``: one ``np.dot`` layout).  Rows ``RB[K:K + 3]`` hold the per-row maxima, sums and weights.

    The kind is told by the type of ``sph`` rather than by P at run time: with ``sph`` None
    Numba prunes the spherical branches before typing; with an array it still types the
    diagonal ones, but their condition is then a constant and LLVM drops them early.  A first
    diagonal float64 fit's compile fell from 21.77e9 to 20.59e9 instructions (callgrind,
    ``bench/compile_cost.py``; about 0.25 s), a spherical one's from 21.80e9 to 21.21e9.

    Measured (one thread, D = K = 16, 2e5 rows, process CPU, paired runs against the previous
    row-by-row responsibilities on the same GEMMs): float64 184 -> 149 ns/row, float32
    165 -> 129, spherical float64 159 -> 122.  The first GEMM formulation took 285 -> 176 and
    231 -> 104 against the row-at-a-time loop ``pass_diag_rows``, which remains the path
    without a shared centre.  Spherical models use half the columns of diagonal ones.
    Float32 statistics in single precision instead of through G (same data, 2e5 rows, three
    paired runs on a noisy machine): float32 133-135 -> 122-124 ns/row (float64 unchanged,
    bit-identical).
    """
    K, D = means64.shape
    P = pc.shape[2]  # D (diag) or 1 (spherical)
    B = F.shape[0]  # DIAG_BLOCK; W, F, L, G, RB, S: aligned scratch (pass_scratch)
    has_w = sw.shape[0] > 0
    for k in range(K):  # cst (K,), T (K, P + D): float64 scratch
        acc = 0.0
        for d in range(D):
            if sph is None:
                p = np.float64(pc[k, 0, d]) ** 2
                W[d, k] = -0.5 * p
            else:
                p = np.float64(pc[k, 0, 0]) ** 2
            dl = means64[k, d] - g64[d]
            W[P + d, k] = p * dl
            acc += p * dl * dl
        if sph is not None:
            W[0, k] = -0.5 * np.float64(pc[k, 0, 0]) ** 2
        cst[k] = lconst[k] - 0.5 * acc
    Gs = _stats_operand(F, G)  # the statistics GEMM's right operand: F itself or G
    f32s = False  # float32 data, statistics in single precision (G empty)
    if G is not None:
        f32s = G.shape[0] == 0
    RT = RB[:K]  # (K, B): the block's responsibilities, components by rows
    mx = RB[K]  # per-row maxima, sums, weights
    sm = RB[K + 1]
    wb = RB[K + 2]
    N = X.shape[0]
    zero = X.dtype.type(0)
    for slot in range(j0, j1):
        start = (c0 + slot) * chunk_rows
        stop = min(N, start + chunk_rows)
        nk = nk_p[slot, :K]
        s1 = s1_p[slot]
        s2 = s2_p[slot]
        nk[:] = 0.0
        s1[:, :] = 0.0
        s2[:, :, :] = 0.0
        T[:, :] = 0.0
        ll = 0.0
        ws = 0.0
        for b0 in range(start, stop, B):
            nb = min(B, stop - b0)
            if nb < B:  # a short last block: the statistics GEMM runs over all B rows
                RT[:, :] = 0.0
                F[nb:, :] = 0  # the operand of float64 data and of float32 statistics
                if G is not None:
                    if not f32s:
                        G[nb:, :] = 0.0
            for b in range(nb):
                wb[b] = sw[b0 + b] if has_w else 1.0
            if R is None or G is None or f32s:
                for b in range(nb):
                    q = zero
                    for d in range(D):
                        u = X[b0 + b, d] - g[d]
                        F[b, P + d] = u
                        if sph is None:
                            F[b, d] = u * u
                        else:
                            q += u * u
                    if sph is not None:
                        F[b, 0] = q
            if G is not None and not f32s:
                for b in range(nb):
                    q64 = 0.0
                    for d in range(D):
                        u64 = np.float64(X[b0 + b, d]) - g64[d]
                        G[b, P + d] = u64
                        if sph is None:
                            G[b, d] = u64 * u64
                        else:
                            q64 += u64 * u64
                    if sph is not None:
                        G[b, 0] = q64
            if R is None:
                np.dot(F[:nb], W, L[:nb])
                for b in range(nb):
                    mx[b] = -np.inf
                for k in range(K):  # transposed to (K, nb) as the constants are added
                    ck = cst[k]
                    for b in range(nb):  # rounded to X's dtype, as the densities
                        v = np.float64(X.dtype.type(L[b, k] + ck))
                        RT[k, b] = v
                        mx[b] = v if v > mx[b] else mx[b]
                for b in range(nb):
                    sm[b] = 0.0
                    if mx[b] == -np.inf:  # every component impossible: not with finite data
                        mx[b] = 0.0
                        sm[b] = -1.0
                for k in range(0, K, 2):  # two independent exponentials per step
                    k1 = min(k + 1, K - 1)  # odd K: the last one twice (same value)
                    for b in range(nb):  # element-wise: vectorises (branch-free exp)
                        t = max(RT[k, b] - mx[b], EXP_MIN_ARG)
                        t1 = max(RT[k1, b] - mx[b], EXP_MIN_ARG)
                        e = exp_nonpos(t)
                        e1 = exp_nonpos(t1)
                        RT[k, b] = e if t > cut else 0.0
                        RT[k1, b] = e1 if t1 > cut else 0.0
                for k in range(K):
                    for b in range(nb):  # each row's sum over k, in order
                        sm[b] += RT[k, b]
                for b in range(nb):  # in row order
                    wn = wb[b]
                    s = sm[b]
                    if s > 0.0:
                        ll += wn * (mx[b] + math.log(s))
                        sm[b] = wn * (1.0 / s)
                    else:
                        ll += wn * -np.inf
                        sm[b] = 0.0
                    ws += wn
                for k in range(K):
                    for b in range(nb):
                        RT[k, b] *= sm[b]
            else:
                for b in range(nb):
                    ws += wb[b]
                for k in range(K):
                    for b in range(nb):
                        RT[k, b] = wb[b] * R[b0 + b, k]
            for b in range(nb):  # nk in row order, as the rows' own sums
                for k in range(K):
                    nk[k] += RT[k, b]
            if G is not None and f32s:
                for k in range(K):
                    for b in range(B):
                        RF[k, b] = X.dtype.type(RT[k, b])
                np.dot(RF, F, SF)
                for k in range(K):
                    for d in range(P + D):
                        T[k, d] += SF[k, d]
            else:
                np.dot(RT, Gs, S)
                for k in range(K):
                    for d in range(P + D):
                        T[k, d] += S[k, d]
        for k in range(K):
            c = 0.0
            for d in range(D):
                dl = means64[k, d] - g64[d]
                s1[k, d] = T[k, P + d] + nk[k] * g64[d]
                if sph is None:
                    s2[k, 0, d] = T[k, d] - 2.0 * dl * T[k, P + d] + nk[k] * dl * dl
                else:
                    c += -2.0 * dl * T[k, P + d] + nk[k] * dl * dl
            if sph is not None:
                s2[k, 0, 0] = T[k, 0] + c
        llws_p[slot, 0] = ll
        llws_p[slot, 1] = ws


#: Rows per block in the full-covariance chunk loop.  Kept small so that OpenBLAS runs each
#: (FULL_BLOCK x D) @ (D x D) product single-threaded inside the parallel loop.
FULL_BLOCK = 128
#: Bytes of the products matrix of one block of ``pass_full_expanded``: its block has fewer rows
#: than FULL_BLOCK where D is large, so that the products stay in cache.
EXPANDED_BLOCK_BYTES = 256 << 10
#: Below this many active rows a component's block second moment is a plain loop, above it GEMM.
FULL_GEMM_MIN_ROWS = 8
#: Width (G * D columns) of one log-density GEMM of the full kind: G components share one
#: product when they share a centre (``kernels._full_layout``).
FULL_GROUP_COLS = 256


@kernel(inline="always")
def _full_logdens_block(X, b0, nb, UT, C, T, lconst, Yf, Zf, acc, L):
    """Weighted log-densities ``L[b, k]`` of rows ``b0 .. b0 + nb`` of the full kind.

    ``z_k = (x - c) U_k - t_k``: the K components form groups of G = ceil(K / n_groups) that
    share a centre c (``C[j]``, j = k // G) and one GEMM ``Z^T = [U_k ...]^T (X_b - c)^T``;
    ``t_k = (mu_k - c) U_k`` (``T``).  Group j's transposed factors are
    ``UT[j, (i*D + e)*D + a] = U_{jG+i}[a, e]``.  Layout built by ``kernels._full_layout``.
    The sums of squares of ``z - t_k`` accumulate over the features in order, element-wise
    over the rows (vectorised).  ``Yf``, ``Zf``: aligned scratch of FULL_BLOCK * D and
    FULL_BLOCK * G * D entries; ``acc`` (FULL_BLOCK,), all in X's dtype.

    Inlined into its callers (each compiles it anyway): compiled on its own it was optimised
    twice, alone and linked into the pass.  Both products here and the pass's statistics GEMMs
    use C-contiguous operands (``YT`` is filled transposed), so the first fit compiles one
    BLAS wrapper fewer (each layout combination of ``np.dot`` is its own)."""
    K, D = T.shape
    half = X.dtype.type(0.5)
    ng = C.shape[0]
    G = (K + ng - 1) // ng
    YT = Yf[:D * nb].reshape((D, nb))
    for j in range(ng):
        k0 = j * G
        m = min(G, K - k0)
        for b in range(nb):
            for d in range(D):
                YT[d, b] = X[b0 + b, d] - C[j, d]
        ZT = Zf[:m * D * nb].reshape((m * D, nb))
        np.dot(UT[j, :m * D * D].reshape((m * D, D)), YT, ZT)
        for i in range(m):
            k = k0 + i
            for b in range(nb):
                acc[b] = 0
            for e in range(D):
                t = T[k, e]
                o = (i * D + e) * nb  # row i*D + e of ZT, read through the flat buffer
                for b in range(nb):
                    v = Zf[o + b] - t
                    acc[b] += v * v
            for b in range(nb):
                L[b, k] = X.dtype.type(lconst[k] - half * acc[b])


@kernel(inline="always")
def _full_block_responsibilities(nb, cut, RT, mx, sm, wb, ll):
    """Responsibilities of a block from its weighted log-densities ``RT`` (K, B, float64,
    components by rows): the row maxima, the exponentials with each row's sum over k in order
    (one component per step: two, as in ``pass_diag``, ran ~1 % faster but cost 0.15 s of
    compile; the sum in the exponentials' loop instead of a loop of its own compiled faster,
    same run time and results) and the weighting are element-wise loops over contiguous rows;
    returns ``ll`` plus the block's ``w_b log p(x_b)``, added in row order, and leaves ``RT``
    weighted.  Used by ``pass_full``, ``pass_full_expanded`` and ``pass_tied``."""
    K = RT.shape[0]
    for b in range(nb):
        mx[b] = -np.inf
    for k in range(K):
        for b in range(nb):
            v = RT[k, b]
            mx[b] = v if v > mx[b] else mx[b]
    for b in range(nb):
        sm[b] = 0.0
        if mx[b] == -np.inf:  # every component impossible: not with finite data
            mx[b] = 0.0
            sm[b] = -1.0
    for k in range(K):
        for b in range(nb):  # element-wise: vectorises (branch-free exp); each row's sum
            t = max(RT[k, b] - mx[b], EXP_MIN_ARG)  # over k in order
            e = exp_nonpos(t)
            e = e if t > cut else 0.0
            RT[k, b] = e
            sm[b] += e
    for b in range(nb):  # in row order
        wn = wb[b]
        s = sm[b]
        if s > 0.0:
            ll += wn * (mx[b] + math.log(s))
            sm[b] = wn * (1.0 / s)
        else:
            ll += wn * -np.inf
            sm[b] = 0.0
    for k in range(K):
        for b in range(nb):
            RT[k, b] *= sm[b]
    return ll


@kernel(inline="always")
def _full_component_moments(X, b0, nb, RT, means64, nk, s1, s2, Yk, Wk, S):
    """Statistics of a block component by component: the rows with non-zero (weighted)
    responsibility ``RT[k]`` for component k are gathered, centred on mu_k, and
    ``s2[k] += (r Y)^T Y`` by GEMM (a plain loop below FULL_GEMM_MIN_ROWS rows); rows with
    r = 0 cost nothing, so this is the cheaper way when components are well separated.
    ``(r Y)^T`` is filled transposed: a C-contiguous left operand, so this product shares the
    BLAS wrapper of the passes' other products."""
    K, D = means64.shape
    for k in range(K):
        m = 0
        for b in range(nb):
            m += RT[k, b] != 0.0
        if m == 0:
            continue
        WT = Wk[:D * m].reshape((D, m))
        i = 0
        for b in range(nb):
            wr = RT[k, b]
            if wr == 0.0:
                continue
            n = b0 + b
            nk[k] += wr
            for d in range(D):
                xd = np.float64(X[n, d])
                s1[k, d] += wr * xd
                yd = xd - means64[k, d]
                Yk[i, d] = yd
                WT[d, i] = wr * yd
            i += 1
        if m < FULL_GEMM_MIN_ROWS:
            for i in range(m):
                for a in range(D):
                    wa = WT[a, i]
                    for c in range(D):
                        s2[k, a, c] += wa * Yk[i, c]
        else:
            np.dot(WT, Yk[:m], S)
            for a in range(D):
                for c in range(D):
                    s2[k, a, c] += S[a, c]


@kernel()
def pass_full(X, sw, R, means, pc, lconst, tmeans, g, means64, g64, cut, chunk_rows,
              c0, j0, j1, nk_p, s1_p, s2_p, llws_p, Yf, Zf, RB, Yk, Wk, S, accb):
    """Full covariances without a shared centre for the statistics (``g64`` empty; with one,
    ``pass_full_expanded`` runs), a block of rows at a time with BLAS.

    Log-densities: ``Z = (X_b - c) @ [U_k ...]`` per group of components (GEMM, see
    ``_full_logdens_block``; ``pc``, ``g``, ``tmeans`` in the layout of ``kernels._full_layout``),
    then sums of squares.  Measured at D = K = 16 (one thread): the
    row-at-a-time loop took 710 ns per row for the log-densities alone, one GEMM per component
    290 ns.  Responsibilities: a block's are laid out components by rows, ``RT = RB[:K]``
    (K, B, float64), the log-densities written there transposed (rounded to X's dtype), see
    ``_full_block_responsibilities``; rows ``RB[K:K + 3]`` hold the per-row maxima, sums and
    weights.  Second moments component by component (``_full_component_moments``).
    """
    K, D = means.shape
    B = RB.shape[1]  # FULL_BLOCK; Yf ... accb: aligned scratch (pass_scratch)
    has_w = sw.shape[0] > 0
    UT, C, T = pc, g, tmeans  # see _full_logdens_block and kernels._full_layout
    RT = RB[:K]  # (K, B): the block's responsibilities, components by rows
    mx = RB[K]  # per-row maxima, sums, weights
    sm = RB[K + 1]
    wb = RB[K + 2]
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
        for b0 in range(start, stop, B):
            nb = min(B, stop - b0)
            for b in range(nb):
                wb[b] = sw[b0 + b] if has_w else 1.0
                ws += wb[b]
            if R is None:
                # log-densities into RT, transposed (a (B, K) view of the (K, B) rows)
                _full_logdens_block(X, b0, nb, UT, C, T, lconst, Yf, Zf, accb, RT.T)
                ll = _full_block_responsibilities(nb, cut, RT, mx, sm, wb, ll)
            else:
                for k in range(K):
                    for b in range(nb):
                        RT[k, b] = wb[b] * R[b0 + b, k]
            _full_component_moments(X, b0, nb, RT, means64, nk, s1, s2, Yk, Wk, S)
        llws_p[slot, 0] = ll
        llws_p[slot, 1] = ws


def _by_dtype(X, F64, F32):
    """``F64`` for float64 ``X``, else ``F32``: chosen while compiling, as ``_stats_operand``
    (a dtype test in the kernel would compile the code of both)."""
    return F64 if X.dtype == np.float64 else F32


@overload(_by_dtype, inline="always")
def _by_dtype_typed(X, F64, F32):
    if X.dtype == types.float64:
        return lambda X, F64, F32: F64
    return lambda X, F64, F32: F32


@kernel()
def pass_full_expanded(X, sw, R, means, pc, lconst, tmeans, g, means64, g64, cut, chunk_rows,
                       c0, j0, j1, nk_p, s1_p, s2_p, llws_p, Pf, Lf, RB, RW, Yk, Wk, S, SBT,
                       G2, nkA):
    """Full covariances about a shared centre g (``g64`` has D entries: the caller picks one
    only when every mean is close to g, see ``kernels._full_stats_centre``), a block of rows
    at a time, everything from one matrix of products.

    With ``u = x - g`` (float64, then rounded to X's dtype) the block's D (D + 1) / 2 distinct
    products ``u_i u_j`` (i <= j) and the u_i themselves are built once, transposed with the
    rows innermost (``PT`` (ncol, nb), vectorised), and serve both GEMMs:

    * log-densities, the quadratic form expanded around g:
      ``log pi_k N(x) = cst_k + sum_i (P_k d_k)_i u_i - 1/2 sum_(i <= j) c_ij u_i u_j`` with
      ``P_k = U_k U_k^T``, ``d_k = mu_k - g``, ``c_ii = P_ii``, ``c_ij = 2 P_ij``:
      ``L^T = WQ @ PT`` (``pc`` = WQ (K, ncol) in X's dtype, (ncol, K) for float32; ``lconst`` = cst (K,) float64,
      ``kernels._full_expanded_layout``), D (D + 3) / 2 instead of D^2 multiply-adds per
      component and row of the products ``(x - c) U_k``, and no sums of squares;
    * second moments, when more than a quarter of the block's responsibilities are non-zero
      (an eighth for float32): ``R^T [u_i u_j, u_i]`` for all components in one GEMM, re-centred
      on mu_k at the end of the chunk in float64 (exactly symmetric); otherwise component by
      component (``_full_component_moments``).

    Error: expanding around g costs about log10(1 + maha2) digits of the log-density, maha2 =
    ``(mu_k - g)^T P_k (mu_k - g)``, as re-centring costs the statistics; the caller keeps the
    centre only while every maha2 is below SHARED_MAX (1e6) in float64 and
    FULL_F32_STATS_MAX (128) in float32 (<= ~1e-5 absolute in a float32 log-density), see
    ``kernels._full_stats_centre``.  For float32 data the products, ``RW`` and both GEMMs are
    float32, the block's sums added into the float64 chunk totals ``G2``: each term r u_i u_j
    carries ~3 roundings of 2^-24 and the GEMM's float32 sum over B rows a relative error of
    about 2^-24 sqrt(B / 3), on sums of size n (Sigma + d d^T); re-centring subtracts the
    d d^T part exactly, so a covariance keeps an error of about (1 + maha2) 2^-24
    (sqrt(B / 3) + 3) of its own scale per block, falling as 1/sqrt(blocks) over a chunk
    (measured in ``tests/test_full_float32_stats.py``).  For comparison, scikit-learn and oneDAL
    sum whole columns in float32.

    Measured against the previous single pass (grouped log-densities ``(x - g) [U_k ...]`` and
    sums of squares, then the same statistics), ``bench/compare.py``'s overlapping mixture at
    D = K = 16, 2e5 rows, one thread, process CPU, medians of three paired runs on a noisy
    machine: float64 664 -> 468 ns/row, float32 367 -> 311.  The two GEMMs are ~70 % of the
    float32 pass (cut one at a time: log-densities ~125 ns/row, statistics ~100).
    """
    K, D = means64.shape
    B = RW.shape[0]  # <= FULL_BLOCK (EXPANDED_BLOCK_BYTES); Pf ... nkA: scratch (pass_scratch)
    has_w = sw.shape[0] > 0
    WQ = pc
    ntri = D * (D + 1) // 2
    ncol = ntri + D  # [u_i u_j for i <= j, u_i]
    RT = RB[:K]  # (K, B): the block's responsibilities, components by rows
    mx = RB[K]  # per-row maxima, sums, weights
    sm = RB[K + 1]
    wb = RB[K + 2]
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
        G2[:, :] = 0.0
        nkA[:] = 0.0
        ll = 0.0
        ws = 0.0
        for b0 in range(start, stop, B):
            nb = min(B, stop - b0)
            for b in range(nb):
                wb[b] = sw[b0 + b] if has_w else 1.0
                ws += wb[b]
            PT = Pf[:ncol * nb].reshape((ncol, nb))  # rows innermost: vectorised
            for b in range(nb):
                for i in range(D):
                    # u = x - g in float64, then rounded to X's dtype
                    PT[ntri + i, b] = X.dtype.type(np.float64(X[b0 + b, i]) - g64[i])
            t = 0
            for i in range(D):
                for j in range(i, D):
                    for b in range(nb):
                        PT[t + j - i, b] = PT[ntri + i, b] * PT[ntri + j, b]
                t += D - i
            if R is None:
                # the product in the layout that runs fastest for the dtype: float64
                # WQ (K, ncol) @ PT (ncol, nb); float32 PT^T @ WQ (ncol, K), whose (nb, K)
                # result single-precision BLAS computes in 9.7-14.6 instead of 17.9 us (one
                # thread, 128 rows, D = K = 16; float64 the other way round: 20.8 against
                # 27.5 us); kernels._full_expanded_layout lays out WQ to match
                LT = Lf[:K * nb].reshape((K, nb))
                L = Lf[:nb * K].reshape((nb, K))
                A, Bm, LO, LT = _by_dtype(X, (WQ, PT, LT, LT), (PT.T, WQ, L, L.T))
                np.dot(A, Bm, LO)
                for k in range(K):  # the constants in float64, rounded to X's dtype
                    ck = lconst[k]
                    for b in range(nb):
                        RT[k, b] = np.float64(X.dtype.type(LT[k, b] + ck))
                ll = _full_block_responsibilities(nb, cut, RT, mx, sm, wb, ll)
            else:
                for k in range(K):
                    for b in range(nb):
                        RT[k, b] = wb[b] * R[b0 + b, k]
            n_active = 0  # rows x components with r != 0; the shared GEMM above a share of
            for k in range(K):  # 1/4 of them (float64) or 1/8 (float32: single precision)
                for b in range(nb):
                    n_active += RT[k, b] != 0.0
            if (4 if X.itemsize == 8 else 8) * n_active <= nb * K:
                _full_component_moments(X, b0, nb, RT, means64, nk, s1, s2, Yk, Wk, S)
                continue
            # G2[k] += sum_b r_bk [u_bi u_bj (i <= j), u_bi]
            for b in range(nb):
                for k in range(K):  # nk in row order, as the rows' own sums
                    v = RT[k, b]
                    nkA[k] += v
                    RW[b, k] = v
            np.dot(PT, RW[:nb], SBT)
            for k in range(K):
                for c in range(ncol):
                    G2[k, c] += SBT[c, k]
        # add the blocks done by GEMM, re-centred on each component's mean:
        # sum r (u - d)(u - d)^T with d = mu_k - g (exactly symmetric)
        for k in range(K):
            nk[k] += nkA[k]
            for i in range(D):
                s1[k, i] += G2[k, ntri + i] + nkA[k] * g64[i]
            t = 0
            for i in range(D):
                di = means64[k, i] - g64[i]
                ai = G2[k, ntri + i]
                for j in range(i, D):
                    dj = means64[k, j] - g64[j]
                    v = (G2[k, t + j - i] - ai * dj - di * G2[k, ntri + j]
                         + nkA[k] * di * dj)
                    s2[k, i, j] += v
                    if j != i:
                        s2[k, j, i] += v
                t += D - i
        llws_p[slot, 0] = ll
        llws_p[slot, 1] = ws


#: Rows per block of the tied path.
TIED_BLOCK = 256


@kernel(inline="always")
def _tied_logdens_block(X, b0, nb, UT, g, tmeans, lconst, Yf, Zf, acc, LT):
    """Weighted log-densities ``LT[k, b]`` (components by rows, rounded to X's dtype) of rows
    ``b0 .. b0 + nb`` of the tied kind: ``Z^T = U^T (X_b - g)^T`` (one GEMM for all
    components, ``UT`` = U^T), then ``||z - t_k||^2`` with ``t_k = (mu_k - g) U``
    (``tmeans``) per component with the rows innermost (vectorised; each row's sum runs over
    the features in order).  ``Yf``, ``Zf``: scratch of D * TIED_BLOCK entries, ``acc``
    (TIED_BLOCK,), in X's dtype."""
    K, D = tmeans.shape
    half = X.dtype.type(0.5)
    YT = Yf[:D * nb].reshape((D, nb))  # filled transposed: C-contiguous operands
    for b in range(nb):
        for d in range(D):
            YT[d, b] = X[b0 + b, d] - g[d]
    Zb = Zf[:D * nb].reshape((D, nb))
    np.dot(UT, YT, Zb)
    for k in range(K):
        for b in range(nb):
            acc[b] = 0
        for j in range(D):
            t = tmeans[k, j]
            for b in range(nb):
                v = Zb[j, b] - t
                acc[b] += v * v
        for b in range(nb):
            LT[k, b] = X.dtype.type(lconst[k] - half * acc[b])


@kernel()
def pass_tied(X, sw, R, means, pc, lconst, tmeans, g, means64, g64, cut, chunk_rows,
              c0, j0, j1, nk_p, s1_p, s2_p, llws_p, Yf, Zf, UT, U, WU, RB, S, SK, accb, A):
    """Tied covariance, a block of rows at a time: ``Z^T = U^T (X_b - g)^T`` is one GEMM for
    all components, then ``||z - (mu_k - g) U||^2`` per component with the rows innermost
    (vectorised; each row's sum still runs over the features in order); the shared second
    moment ``sum w (x - g)(x - g)^T`` and the sums ``sum r (x - g)`` are two more GEMMs
    (float64).  Measured (one thread, D = K = 16, 2e5 rows) against features innermost and a
    per-row loop for the sums: 420 -> 245 ns/row in float64, 366 -> 198 in float32.

    The responsibilities of a block are laid out components by rows, ``RT = RB[:K]`` (K, B),
    written so by the log-density loop, and computed by the full kind's element-wise loops
    over contiguous rows (``_full_block_responsibilities``); ``RT`` is then the plain
    C-contiguous left operand of the sums' GEMM over all B rows (a short last block zeroes
    the rest of ``RT`` and ``U``).  Against a row at a time (one thread, D = K = 16, 2e5
    rows, shared second moment reused, minimum of 15 passes, two paired runs): float64
    199 / 211 -> 158 / 172 ns/row, float32 171 / 181 -> 140 / 136.

    The shared second moment depends on the rows and g only, and g (the weighted mean of the
    means) is the same in every EM iteration but the first up to rounding: the facade passes
    ``WU`` as an empty (0, B) view when the caller already has it (``kernels.estep_stats``'s
    ``scatter=False``; decided at run time, one compiled pass), and ``s2`` then stays 0.
    Skipping it (one thread, D = K = 16, 2e5 rows): float64 227 -> 194 ns/row, float32
    195 -> 175."""
    K, D = means64.shape
    B = U.shape[0]  # TIED_BLOCK; Yf ... A: aligned scratch (pass_scratch)
    has_w = sw.shape[0] > 0
    scatter = WU.shape[0] > 0  # else the caller has the shared second moment
    for i in range(D):
        for j in range(D):
            UT[j, i] = pc[0, i, j]
    RT = RB[:K]  # (K, B): the block's responsibilities, components by rows
    mx = RB[K]  # per-row maxima, sums, weights
    sm = RB[K + 1]
    wb = RB[K + 2]
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
        A[:, :] = 0.0
        ll = 0.0
        ws = 0.0
        for b0 in range(start, stop, B):
            nb = min(B, stop - b0)
            if nb < B:  # a short last block: the sums' GEMM runs over all B rows
                RT[:, :] = 0.0
                U[nb:, :] = 0.0
            for b in range(nb):
                wb[b] = sw[b0 + b] if has_w else 1.0
                ws += wb[b]
            if R is None:
                _tied_logdens_block(X, b0, nb, UT, g, tmeans, lconst, Yf, Zf, accb, RT)
                ll = _full_block_responsibilities(nb, cut, RT, mx, sm, wb, ll)
            else:
                for k in range(K):
                    for b in range(nb):
                        RT[k, b] = wb[b] * R[b0 + b, k]
            for b in range(nb):
                for k in range(K):  # nk in row order, as the rows' own sums
                    nk[k] += RT[k, b]
                for d in range(D):
                    U[b, d] = np.float64(X[b0 + b, d]) - g64[d]
            if scatter:  # WU (D, B): the weighted rows transposed, a C-contiguous operand
                if nb < B:  # (scratch is not initialised: 0 x NaN would be NaN)
                    WU[:, nb:] = 0.0
                for b in range(nb):
                    for d in range(D):
                        WU[d, b] = wb[b] * U[b, d]
                np.dot(WU, U, S)
                for i in range(D):
                    for j in range(D):
                        s2[0, i, j] += S[i, j]
            np.dot(RT, U, SK)
            for k in range(K):
                for d in range(D):
                    A[k, d] += SK[k, d]
        for k in range(K):
            for d in range(D):
                s1[k, d] = A[k, d] + nk[k] * g64[d]
        llws_p[slot, 0] = ll
        llws_p[slot, 1] = ws


# spherical models run through the diagonal passes (kernels._pass)
PASSES = {DIAG: pass_diag, FULL: pass_full, TIED: pass_tied}  # full with a centre: pass_full_expanded


def pass_scratch(kind, K, D, dtype, P=0, n_groups=1, shared=False):
    """((shape, dtype), ...): the aligned scratch arrays ``PASSES[kind]`` takes after its
    statistics buffers, in order (``kernels._scratch`` allocates them 64-byte aligned and keeps
    them per thread).  Allocating them inside the kernels (``_aligned``) cost ~0.3 s of every
    first fit's compilation (measured, diag: 5.15 -> 4.86 s of CPU); a pass call then
    allocates nothing but a few small accumulators.  ``P``: quadratic columns of the diagonal
    pass (D diag, 1 spherical); ``n_groups``: component groups of the full layout
    (``kernels._full_layout``); ``shared``: the full kind's pass about a shared centre,
    ``pass_full_expanded``."""
    x, f8 = np.dtype(dtype), np.dtype(np.float64)
    if kind == DIAG:
        B = DIAG_BLOCK
        n32 = 0 if x == f8 else 1  # float32 only: G, RF, SF
        return (((P + D, K), x), ((B, P + D), x), ((B, K), x),
                ((n32 * B, P + D), f8), ((K + 3, B), f8), ((K, P + D), f8),
                ((K,), f8), ((K, P + D), f8), ((n32 * K, B), x), ((n32 * K, P + D), x))
    if kind == FULL and shared:  # pass_full_expanded
        ncol = D * (D + 1) // 2 + D
        B = max(16, min(FULL_BLOCK, (EXPANDED_BLOCK_BYTES // (ncol * x.itemsize)) // 8 * 8))
        return (((ncol * B,), x), ((K * B,), x), ((K + 3, B), f8), ((B, K), x), ((B, D), f8),
                ((B * D,), f8), ((D, D), f8), ((ncol, K), x), ((K, ncol), f8), ((K,), f8))
    if kind == FULL:
        B = FULL_BLOCK
        G = -(-K // n_groups)
        return (((B * D,), x), ((B * G * D,), x), ((K + 3, B), f8), ((B, D), f8),
                ((B * D,), f8), ((D, D), f8), ((B,), x))
    if kind == TIED:
        B = TIED_BLOCK
        return (((D * B,), x), ((D * B,), x), ((D, D), x), ((B, D), f8), ((D, B), f8),
                ((K + 3, B), f8), ((D, D), f8), ((K, D), f8), ((B,), x), ((K, D), f8))
    return ()


def log_prob_scratch(kind, K, D, dtype, n_groups=1):
    """The aligned scratch arrays ``LOG_PROBS[kind]`` takes last (as ``pass_scratch``)."""
    x = np.dtype(dtype)
    if kind == TIED:
        B = TIED_BLOCK
        return (((D * B,), x), ((D * B,), x), ((D, D), x), ((B, K), x), ((B,), x),
                ((K,), np.dtype(np.float64)))
    if kind in (DIAG, SPHERICAL):
        return (((K,), x), ((K,), np.dtype(np.float64)))
    if kind != FULL:
        return ()
    B = FULL_BLOCK
    return (((B * D,), x), ((B * (-(-K // n_groups)) * D,), x), ((B, K), x), ((B,), x),
            ((K,), np.dtype(np.float64)))


@kernel()
def log_prob_diag(X, MT, PT, lconst, cut, chunk_rows, c_lo, c_hi, logp, labels, resp, lrow, r):
    """Per-row log p(x), hard labels (argmax of the weighted log-density) and, when ``resp`` has
    N rows, responsibilities (float64), for the rows of chunks ``[c_lo, c_hi)`` (diag and
    spherical).  ``MT``, ``PT`` (D, K): the means and the diagonal precision-Cholesky factors
    transposed, in X's dtype (``kernels.log_prob``); ``lrow`` (K,) in X's dtype and ``r`` (K,)
    float64: scratch (``log_prob_scratch``).  Outputs are written in place; rows are
    independent.  One function per kind, so scoring compiles only the kind it scores; the
    transposes and the scratch come from the caller, because a first ``predict`` compiles this
    kernel: as separately compiled helpers and ``np.empty`` calls they cost ~0.5 s more."""
    N = X.shape[0]
    K = MT.shape[1]
    want_resp = resp.shape[0] == N
    for n in range(c_lo * chunk_rows, min(N, c_hi * chunk_rows)):
        _logdens_diag(X, n, MT, PT, lconst, lrow)
        lp, am = _row_responsibilities(lrow, r, cut)
        logp[n] = lp
        labels[n] = am
        if want_resp:
            for k in range(K):
                resp[n, k] = r[k]


@kernel()
def log_prob_full(X, means, pc, lconst, tmeans, g, cut, chunk_rows, c_lo, c_hi, logp, labels,
                  resp, Yf, Zf, L, accb, r):
    """Per-row log p(x), hard labels (argmax of the weighted log-density) and, when ``resp`` has
    N rows, responsibilities (float64), for the rows of chunks ``[c_lo, c_hi)`` (full; the
    log-densities a block of rows at a time, exactly as in ``pass_full``: ``pc``, ``g`` and
    ``tmeans`` in the layout of ``kernels._full_layout``).  Outputs are written in place; rows are independent.  One function per kind, so
    scoring compiles only the kind it scores."""
    N, D = X.shape
    K = means.shape[0]
    want_resp = resp.shape[0] == N
    B = L.shape[0]  # FULL_BLOCK; Yf ... r: aligned scratch (log_prob_scratch)
    UT, C, T = pc, g, tmeans
    stop = min(N, c_hi * chunk_rows)
    for b0 in range(c_lo * chunk_rows, stop, B):
        nb = min(B, stop - b0)
        _full_logdens_block(X, b0, nb, UT, C, T, lconst, Yf, Zf, accb, L)
        for b in range(nb):
            n = b0 + b
            lp, am = _row_responsibilities(L[b], r, cut)
            logp[n] = lp
            labels[n] = am
            if want_resp:
                for k in range(K):
                    resp[n, k] = r[k]


@kernel()
def log_prob_tied(X, means, pc, lconst, tmeans, g, cut, chunk_rows, c_lo, c_hi, logp, labels,
                  resp, Yf, Zf, UT, L, accb, r):
    """Per-row log p(x), hard labels (argmax of the weighted log-density) and, when ``resp`` has
    N rows, responsibilities (float64), for the rows of chunks ``[c_lo, c_hi)`` (tied; the
    log-densities a block of rows at a time, exactly as in ``pass_tied``).  Outputs are written
    in place; rows are independent.  One function per kind, so scoring compiles only the kind
    it scores."""
    N, D = X.shape
    K = means.shape[0]
    want_resp = resp.shape[0] == N
    B = L.shape[0]  # TIED_BLOCK; Yf ... r: aligned scratch (log_prob_scratch)
    for i in range(D):
        for j in range(D):
            UT[j, i] = pc[0, i, j]
    stop = min(N, c_hi * chunk_rows)
    for b0 in range(c_lo * chunk_rows, stop, B):
        nb = min(B, stop - b0)
        _tied_logdens_block(X, b0, nb, UT, g, tmeans, lconst, Yf, Zf, accb, L.T)
        for b in range(nb):
            n = b0 + b
            lp, am = _row_responsibilities(L[b], r, cut)
            logp[n] = lp
            labels[n] = am
            if want_resp:
                for k in range(K):
                    resp[n, k] = r[k]


#: The scoring kernels that ``kernels.log_prob`` calls alike (``log_prob_diag`` takes its own
#: transposed arguments).
LOG_PROBS = {FULL: log_prob_full, TIED: log_prob_tied}
