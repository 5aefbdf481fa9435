"""Masked EM kernels: rows with missing entries (NaN), marginalised exactly (CPU, Numba).

A NaN entry is *missing at random*.  For a row with observed coordinates ``o`` and missing
coordinates ``m`` the E-step uses the marginal of each component on ``o`` (drop the rows and
columns ``m`` of Sigma_k), and the statistics are the *expected* sufficient statistics given
``x_o`` and the component:

* ``E[x_m | x_o, k] = mu_km + A_k (x_o - mu_ko)`` with ``A_k = Sigma_mo Sigma_oo^-1``;
* ``E[(x - c)(x - c)^T | x_o, k] = (xhat_k - c)(xhat_k - c)^T + C_k`` on the ``m`` block, with
  ``C_k = Sigma_mm - A_k Sigma_om`` the conditional covariance.

So the slots hold exactly the ``(nk, s1, s2, ll, ws)`` of ``cpu_estep`` (same layout, same
centres: ``means64``, tied ``g64``), ``ll`` being the observed-data log-likelihood, and the
ordinary M-step applies unchanged.

Two passes, with the slot signature of ``cpu_estep``'s (chunk ``c0 + j`` into slot ``j`` for
``j`` in ``[j0, j1)``), so the wrapper (``kernels.estep_stats_missing``) runs them on the same
fixed chunk slots and merges them in chunk order: results do not depend on the thread count.
The wrapper only sends chunks that hold a NaN here; the other chunks go through the unchanged
``cpu_estep`` passes, so data without NaN give today's statistics bit for bit.

* ``pass_diag_missing_gemm`` (diag and spherical about a shared centre, as
  ``cpu_estep.pass_diag``) and ``pass_diag_missing`` (without one, as ``pass_diag_rows``):
  per-entry masking -- the GEMM pass carries the observed-entry indicator as a third block of
  columns; the row pass -- a missing entry adds ``log sigma_kd +
  log(2 pi) / 2`` back to the log-density instead of its square, and adds ``mu_kd`` to ``s1``
  and ``sigma_kd^2`` to ``s2`` (centred on mu_k).  No factorisation.  Densities in X's dtype,
  as in ``cpu_estep``; accumulation in float64.
* ``pass_cov_missing`` (full and tied): the wrapper orders each chunk's rows by missingness
  pattern (``order``; pattern groups ``gstart``).  Per group, each component's ``Sigma_oo`` is
  factorised once (Cholesky, float64), with ``A_k`` and ``C_k`` -- or, for groups of few rows
  (every row its own pattern under independent missingness), the cheaper precision form
  (``_pattern_factors_prec``: only ``P_mm`` is factorised, O(|m|^3)); each row then costs one
  triangular solve per component for its log-density, and the group's weighted sums
  ``sum w r y``, ``sum w r y y^T`` of ``y = x_o - mu_ko`` are mapped to the statistics once per
  group (``[I; A_k]`` applied on both sides).  Cost per chunk: ``O(P K D^3)`` for P patterns
  plus ``O(K D^2)`` per row; everything in float64.

The passes can also write per-row ``log p(x_o)``, labels and responsibilities (``logp``,
``labels``, ``resp`` with N rows; empty arrays otherwise) and the conditional first and second
moments of every entry given the row's observed ones (``imp`` (2, N, D): imputation).
"""
import math

import numpy as np

from ._jit import kernel
from ._math import EXP_MIN_ARG, exp_nonpos
from .estep import _aligned, _row_responsibilities

LOG_2PI = math.log(2.0 * math.pi)


@kernel()
def chunk_nan_flags(X, chunk_rows, flags):
    """flags[c] = 1 if chunk c of X (rows ``c*chunk_rows ...``) holds a NaN, else 0."""
    N, D = X.shape
    for c in range(flags.shape[0]):
        flags[c] = 0
        for n in range(c * chunk_rows, min(N, (c + 1) * chunk_rows)):
            bad = False
            for d in range(D):
                if X[n, d] != X[n, d]:
                    bad = True
            if bad:
                flags[c] = 1
                break


@kernel()
def _impute_diag(X, n, resp, means64, var64, imp):
    """Conditional first and second moments of row n's entries (observed: x and x^2) into
    imp[0, n], imp[1, n] (diagonal components: E[x_d | k] = mu_kd, Var = var_kd)."""
    K, D = means64.shape
    for d in range(D):
        xd = np.float64(X[n, d])
        if xd != xd:
            m1 = 0.0
            m2 = 0.0
            for k in range(K):
                r = resp[k]
                if r != 0.0:
                    mu = means64[k, d]
                    m1 += r * mu
                    m2 += r * (var64[k, d] + mu * mu)
            imp[0, n, d] = m1
            imp[1, n, d] = m2
        else:
            imp[0, n, d] = xd
            imp[1, n, d] = xd * xd


@kernel()
def _impute_cov(X, n, resp, means64, o, no, m, nm, A, C, Kc, y, imp):
    """As ``_impute_diag`` for full/tied components: E[x_m | x_o, k] = mu_km + A_k y_k and
    E[x_m^2 | x_o, k] = C_k,mm + E[x_m | x_o, k]^2, mixed by the responsibilities."""
    K, D = means64.shape
    for d in range(D):
        xd = np.float64(X[n, d])
        if xd != xd:
            imp[0, n, d] = 0.0
            imp[1, n, d] = 0.0
        else:
            imp[0, n, d] = xd
            imp[1, n, d] = xd * xd
    for k in range(K):
        r = resp[k]
        if r == 0.0:
            continue
        kc = k if Kc == K else 0
        for i in range(no):
            y[i] = np.float64(X[n, o[i]]) - means64[k, o[i]]
        for a in range(nm):
            t = means64[k, m[a]]
            for j in range(no):
                t += A[kc, a, j] * y[j]
            imp[0, n, m[a]] += r * t
            imp[1, n, m[a]] += r * (C[kc, a, a] + t * t)


@kernel()
def pass_diag_missing(X, sw, means, pc, lconst, means64, var64, cut, chunk_rows, c0, j0, j1,
                      nk_p, s1_p, s2_p, llws_p, logp, labels, resp_out, imp):
    """Masked diagonal pass (see the module docstring).  ``pc`` (K, 1, D) 1/sigma in X's dtype
    (spherical: repeated), ``lconst`` (K,) as in cpu_estep, ``var64`` (K, D) float64 variances;
    slots ``s2_p`` in the diag layout (K, 1, D)."""
    K, D = means64.shape
    N = X.shape[0]
    MT = np.empty((D, K), dtype=X.dtype)
    PT = np.empty((D, K), dtype=X.dtype)
    LP = np.empty((D, K), dtype=X.dtype)  # log(1/sigma) - log(2 pi)/2: what a missing d removes
    for k in range(K):
        for d in range(D):
            MT[d, k] = means[k, d]
            PT[d, k] = pc[k, 0, d]
            LP[d, k] = -0.5 * math.log(var64[k, d]) - 0.5 * LOG_2PI
    out = np.empty(K, dtype=X.dtype)
    sub = np.empty(K, dtype=X.dtype)
    resp = np.zeros(K)
    half = X.dtype.type(0.5)
    has_w = sw.shape[0] > 0
    want_logp = logp.shape[0] == N
    want_resp = resp_out.shape[0] == N
    want_imp = imp.shape[1] == N
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
            for k in range(K):
                out[k] = 0
                sub[k] = 0
            for d in range(D):
                xd = X[n, d]
                if xd != xd:
                    for k in range(K):
                        sub[k] += LP[d, k]
                else:
                    for k in range(K):
                        y = (xd - MT[d, k]) * PT[d, k]
                        out[k] += y * y
            for k in range(K):
                out[k] = (lconst[k] - sub[k]) - half * out[k]
            lp, am = _row_responsibilities(out, resp, cut)
            if want_logp:
                logp[n] = lp
                labels[n] = am
            if want_resp:
                for k in range(K):
                    resp_out[n, k] = resp[k]
            if want_imp:
                _impute_diag(X, n, resp, means64, var64, imp)
            ll += wn * lp
            ws += wn
            if wn == 0.0:
                continue
            for k in range(K):
                r = resp[k]
                if r == 0.0:
                    continue
                wr = wn * r
                nk[k] += wr
                for d in range(D):
                    xd = np.float64(X[n, d])
                    if xd != xd:  # E[x_d | k] = mu_kd: centred on mu_k, only the variance
                        s1[k, d] += wr * means64[k, d]
                        s2[k, 0, d] += wr * var64[k, d]
                    else:
                        s1[k, d] += wr * xd
                        yd = xd - means64[k, d]
                        s2[k, 0, d] += wr * yd * yd
        llws_p[slot, 0] = ll
        llws_p[slot, 1] = ws


@kernel()
def _cholesky(S, n, L):
    """Lower Cholesky factor of the leading n x n block of S into L; False if not SPD."""
    for j in range(n):
        s = S[j, j]
        for p in range(j):
            s -= L[j, p] * L[j, p]
        if not s > 0.0:
            return False
        ljj = math.sqrt(s)
        L[j, j] = ljj
        for i in range(j + 1, n):
            t = S[i, j]
            for p in range(j):
                t -= L[i, p] * L[j, p]
            L[i, j] = t / ljj
        for i in range(j):
            L[i, j] = 0.0
    return True


@kernel()
def _lower_inverse(L, n, out):
    """``out[:n, :n] = L[:n, :n]^-1`` for lower-triangular L, by forward substitution column by
    column (the two pattern factorisations below share it)."""
    for j in range(n):
        for i in range(n):
            out[i, j] = 0.0
        out[j, j] = 1.0 / L[j, j]
        for i in range(j + 1, n):
            t = 0.0
            for p in range(j, i):
                t -= L[i, p] * out[p, j]
            out[i, j] = t / L[i, i]


@kernel()
def _pattern_factors(cov, kc, o, no, m, nm, Soo, L, Li, A, C):
    """Factor Sigma_oo of covariance ``cov[kc]`` (observed indices o[:no], missing m[:nm]):
    ``Li`` = L^-1 (no, no) with L L^T = Sigma_oo, ``A`` = Sigma_mo Sigma_oo^-1 (nm, no),
    ``C`` = Sigma_mm - A Sigma_om (nm, nm).  Returns sum log diag L (-inf if not SPD)."""
    for i in range(no):
        for j in range(no):
            Soo[i, j] = cov[kc, o[i], o[j]]
    if not _cholesky(Soo, no, L):
        return -np.inf
    logdet = 0.0
    for i in range(no):
        logdet += math.log(L[i, i])
    _lower_inverse(L, no, Li)  # Li = L^-1
    # A = Sigma_mo Li^T Li: first T = Sigma_mo Li^T (nm, no), then A = T Li
    for a in range(nm):
        for i in range(no):
            t = 0.0
            for p in range(i + 1):
                t += cov[kc, m[a], o[p]] * Li[i, p]
            Soo[i, 0] = t  # reuse Soo's first column as scratch row
        for j in range(no):
            t = 0.0
            for i in range(j, no):
                t += Soo[i, 0] * Li[i, j]
            A[a, j] = t
    for a in range(nm):
        for b in range(nm):
            t = cov[kc, m[a], m[b]]
            for j in range(no):
                t -= A[a, j] * cov[kc, o[j], m[b]]
            C[a, b] = t
    return logdet


@kernel()
def _pattern_factors_prec(prec, kc, o, no, m, nm, ldcov, Smm, Lw, Q, PM, A, C):
    """The same factors from the precision matrix P = Sigma^-1 (cheaper when few entries are
    missing): with P_mm = Lm Lm^T, ``C`` = P_mm^-1 (the conditional covariance), ``A`` =
    -C P_mo, and for the log-density ``Q`` = P_oo and ``PM`` = P_mo, since
    Sigma_oo^-1 = P_oo - P_om P_mm^-1 P_mo.  Returns 1/2 log det Sigma_oo =
    1/2 log det Sigma + log det Lm (``ldcov[kc]`` = 1/2 log det Sigma)."""
    for a in range(nm):
        for b in range(nm):
            Smm[a, b] = prec[kc, m[a], m[b]]
    if not _cholesky(Smm, nm, Lw):
        return -np.inf
    logdet = ldcov[kc]
    for a in range(nm):
        logdet += math.log(Lw[a, a])
    _lower_inverse(Lw, nm, Smm)  # Smm <- Lm^-1, then C = Lm^-T Lm^-1
    for a in range(nm):
        for b in range(nm):
            t = 0.0
            for p in range(max(a, b), nm):
                t += Smm[p, a] * Smm[p, b]
            C[a, b] = t
    for a in range(nm):
        for j in range(no):
            PM[a, j] = prec[kc, m[a], o[j]]
    for a in range(nm):
        for j in range(no):
            t = 0.0
            for b in range(nm):
                t -= C[a, b] * PM[b, j]
            A[a, j] = t
    for i in range(no):
        for j in range(no):
            Q[i, j] = prec[kc, o[i], o[j]]
    return logdet


#: A pattern group uses the precision form when rows * (no^2 / 2 + nm no) is below
#: no^3 / 3 + nm no^2 (its extra per-row cost below the factorisation it saves).

@kernel()
def _add_row(k, kc, wr, y, o, no, m, nm, A, C, means64, tied, g64, e, Pa, nk, s1, s2):
    """One row's expected statistics for component k (weight ``wr``): e = x_hat - mu_k =
    [y; A_k y]; s1 += wr x_hat, s2 += wr (e e^T + C_k) (tied: about g)."""
    D = means64.shape[1]
    for i in range(no):
        e[o[i]] = y[i]
    for a in range(nm):
        t = 0.0
        for j in range(no):
            t += A[kc, a, j] * y[j]
        e[m[a]] = t
    nk[k] += wr
    for d in range(D):
        s1[k, d] += wr * (means64[k, d] + e[d])
    kk = 0 if tied else k
    if tied:
        for d in range(D):
            e[d] += means64[k, d] - g64[d]
    for i in range(D):
        Pa[i] = wr * e[i]
    for i in range(D):
        for j in range(D):
            s2[kk, i, j] += Pa[i] * e[j]
    for a in range(nm):
        for b in range(nm):
            s2[kk, m[a], m[b]] += wr * C[kc, a, b]


@kernel()
def _group_stats(k, nkg, ag, Sg, o, no, m, nm, A, C, means64, tied, g64, Lw, Pa, PS, e, nk,
                 s1, s2):
    """A pattern group's weighted sums for component k -- ``nkg`` = sum w r, ``ag`` = sum w r y,
    ``Sg`` (symmetric) = sum w r y y^T of y = x_o - mu_ko -- into the statistics: e = x_hat -
    mu_k = P y with P = [I; A_k], plus ``nkg C_k`` on the missing block (tied: about g).
    ``Lw``, ``Pa``, ``PS``, ``e``: scratch."""
    D = means64.shape[1]
    nk[k] += nkg
    # Pa = P ag (D,) in the original feature order
    for i in range(no):
        Pa[o[i]] = ag[i]
    for a in range(nm):
        t = 0.0
        for j in range(no):
            t += A[a, j] * ag[j]
        Pa[m[a]] = t
    for d in range(D):
        s1[k, d] += nkg * means64[k, d] + Pa[d]
    # P Sg P^T: the o block is Sg, the (m, o) block Lw = A Sg (row by row of Sg, vectorised
    # over j), the (o, m) block its transpose (Sg is symmetric), the (m, m) block Lw A^T
    for a in range(nm):
        for j in range(no):
            Lw[a, j] = 0.0
        for p in range(no):
            c = A[a, p]
            for j in range(no):
                Lw[a, j] += c * Sg[p, j]
    if not tied:  # straight into s2[k], each entry once
        for i in range(no):
            oi = o[i]
            for j in range(no):
                s2[k, oi, o[j]] += Sg[i, j]
            for b in range(nm):
                s2[k, oi, m[b]] += Lw[b, i]
        for a in range(nm):
            ma = m[a]
            for j in range(no):
                s2[k, ma, o[j]] += Lw[a, j]
            for b in range(nm):
                t = 0.0
                for p in range(no):
                    t += Lw[a, p] * A[b, p]
                s2[k, ma, m[b]] += t + nkg * C[a, b]
        return
    for i in range(no):
        for j in range(no):
            PS[o[i], o[j]] = Sg[i, j]
        for b in range(nm):
            PS[o[i], m[b]] = Lw[b, i]
    for a in range(nm):
        for j in range(no):
            PS[m[a], o[j]] = Lw[a, j]
        for b in range(nm):
            t = 0.0
            for p in range(no):
                t += Lw[a, p] * A[b, p]
            PS[m[a], m[b]] = t + nkg * C[a, b]
    # about g: e + d_k with d_k = mu_k - g
    for d in range(D):
        e[d] = means64[k, d] - g64[d]
    for i in range(D):
        for j in range(D):
            s2[0, i, j] += (PS[i, j] + Pa[i] * e[j] + e[i] * Pa[j] + nkg * e[i] * e[j])


@kernel()
def _cov_group(X, sw, means64, cov, prec, ldcov, logw, tied, g64, order, g0, g1, cut, o, m,
               Soo, Lw, Li, PM, A, C, cst, lrow, resp, y, z, nkg, ag, Sg, e, Pa, PS, nk, s1, s2,
               logp, labels, resp_out, imp):
    """One pattern group (rows ``order[g0:g1]``) of ``pass_cov_missing``, its own
    factorisation per component: adds to the statistics (nk, s1, s2) and the per-row outputs;
    returns (sum w log p(x_o), sum w)."""
    K, D = means64.shape
    N = X.shape[0]
    Kc = cov.shape[0]
    has_w = sw.shape[0] > 0
    want_logp = logp.shape[0] == N
    want_resp = resp_out.shape[0] == N
    want_imp = imp.shape[1] == N
    ll = 0.0
    ws = 0.0
    r0 = order[g0]
    no = 0
    nm = 0
    for d in range(D):
        if X[r0, d] != X[r0, d]:
            m[nm] = d
            nm += 1
        else:
            o[no] = d
            no += 1
    logdet = np.zeros(Kc)
    rows = g1 - g0
    use_prec = rows * (0.5 * no * no + nm * no) < no * no * no / 3.0 + nm * no * no
    for kc in range(Kc):
        if use_prec:  # Li holds P_oo
            logdet[kc] = _pattern_factors_prec(prec, kc, o, no, m, nm, ldcov, Soo, Lw,
                                               Li[kc], PM[kc], A[kc], C[kc])
        else:
            logdet[kc] = _pattern_factors(cov, kc, o, no, m, nm, Soo, Lw, Li[kc],
                                          A[kc], C[kc])
    for k in range(K):
        kc = k if Kc == K else 0
        cst[k] = logw[k] - logdet[kc] - 0.5 * no * LOG_2PI
        nkg[k] = 0.0
        for i in range(no):
            ag[k, i] = 0.0
            for j in range(no):
                Sg[k, i, j] = 0.0
    for q in range(g0, g1):
        n = order[q]
        wn = sw[n] if has_w else 1.0
        for k in range(K):
            kc = k if Kc == K else 0
            for i in range(no):
                y[i] = np.float64(X[n, o[i]]) - means64[k, o[i]]
            acc = 0.0
            if use_prec:  # y^T P_oo y - v^T C v, v = P_mo y
                for i in range(no):
                    t = 0.0
                    for j in range(no):
                        t += Li[kc, i, j] * y[j]
                    acc += y[i] * t
                for a in range(nm):
                    t = 0.0
                    for j in range(no):
                        t += PM[kc, a, j] * y[j]
                    z[a] = t
                for a in range(nm):
                    t = 0.0
                    for b in range(nm):
                        t += C[kc, a, b] * z[b]
                    acc -= z[a] * t
            else:  # |L^-1 y|^2
                for i in range(no):
                    t = 0.0
                    for p in range(i + 1):
                        t += Li[kc, i, p] * y[p]
                    acc += t * t
            lrow[k] = cst[k] - 0.5 * acc
        lp, am = _row_responsibilities(lrow, resp, cut)
        if want_logp:
            logp[n] = lp
            labels[n] = am
        if want_resp:
            for k in range(K):
                resp_out[n, k] = resp[k]
        if want_imp:
            _impute_cov(X, n, resp, means64, o, no, m, nm, A, C, Kc, y, imp)
        ll += wn * lp
        ws += wn
        if wn == 0.0:
            continue
        for k in range(K):
            wr = wn * resp[k]
            if wr == 0.0:
                continue
            for i in range(no):
                y[i] = np.float64(X[n, o[i]]) - means64[k, o[i]]
            if rows == 1:  # a one-row group: straight into the statistics
                kc = k if Kc == K else 0
                _add_row(k, kc, wr, y, o, no, m, nm, A, C, means64, tied, g64, e, Pa,
                         nk, s1, s2)
                continue
            nkg[k] += wr
            for i in range(no):
                z[i] = wr * y[i]
                ag[k, i] += z[i]
            for i in range(no):  # lower triangle; mirrored when the group ends
                zi = z[i]
                for j in range(i + 1):
                    Sg[k, i, j] += zi * y[j]
    # the group's sums -> statistics: e = x_hat - mu_k = P y with P = [I; A_k]
    for k in range(K):
        if nkg[k] == 0.0:
            continue
        kc = k if Kc == K else 0
        for i in range(no):
            for j in range(i + 1, no):
                Sg[k, i, j] = Sg[k, j, i]
        _group_stats(k, nkg[k], ag[k], Sg[k], o, no, m, nm, A[kc], C[kc], means64,
                     tied, g64, Lw, Pa, PS, e, nk, s1, s2)
    return ll, ws


@kernel()
def pass_cov_missing(X, sw, means64, cov, prec, ldcov, logw, tied, g64, order, gstart, cgroup,
                     cut, chunk_rows, c0, j0, j1, nk_p, s1_p, s2_p, llws_p, logp, labels,
                     resp_out, imp):
    """Masked full (``tied`` False: cov (K, D, D)) or tied (``tied`` True: cov (1, D, D),
    s2 (1, D, D) centred on g64) pass over pattern groups (see the module docstring).

    ``order``: row indices of the chunks holding NaN, each chunk's rows grouped by
    missingness pattern; group ``i`` is ``order[gstart[i]:gstart[i + 1]]``; chunk c's groups
    are ``cgroup[c] .. cgroup[c+1]`` (none for chunks without NaN: never passed here)."""
    K, D = means64.shape
    Kc = cov.shape[0]
    o = np.empty(D, np.int64)
    m = np.empty(D, np.int64)
    Soo = np.empty((D, D))
    Lw = np.empty((D, D))
    Li = np.zeros((Kc, D, D))
    PM = np.zeros((Kc, D, D))
    A = np.zeros((Kc, D, D))
    C = np.zeros((Kc, D, D))
    cst = np.empty(K)
    lrow = np.empty(K)
    resp = np.zeros(K)
    y = np.empty(D)
    z = np.empty(D)
    nkg = np.empty(K)
    ag = np.empty((K, D))
    Sg = np.empty((K, D, D))
    e = np.empty(D)
    Pa = np.empty(D)
    PS = np.empty((D, D))
    for slot in range(j0, j1):
        c = c0 + slot
        nk = nk_p[slot, :K]
        s1 = s1_p[slot]
        s2 = s2_p[slot]
        nk[:] = 0.0
        s1[:, :] = 0.0
        s2[:, :, :] = 0.0
        ll = 0.0
        ws = 0.0
        for grp in range(cgroup[c], cgroup[c + 1]):
            lg, wg = _cov_group(X, sw, means64, cov, prec, ldcov, logw, tied, g64, order,
                                gstart[grp], gstart[grp + 1], cut, o, m, Soo, Lw, Li, PM, A,
                                C, cst, lrow, resp, y, z, nkg, ag, Sg, e, Pa, PS, nk, s1, s2,
                                logp, labels, resp_out, imp)
            ll += lg
            ws += wg
        llws_p[slot, 0] = ll
        llws_p[slot, 1] = ws


#: Rows per block of the masked diagonal GEMM pass.
DIAG_MISSING_BLOCK = 256


def diag_missing_scratch(K, D, dtype):
    """((shape, dtype), ...): the aligned scratch arrays ``pass_diag_missing_gemm`` takes last
    (``kernels._scratch`` allocates them once per thread, as ``cpu_estep.pass_scratch``):
    W (3D, K), F (B, 3D), L (B, K) in X's dtype; G (B, 3D) -- (0, 3D) for float64 data,
    whose F is passed as G (``kernels._diag_missing_f64``) --, RB (K + 3, B), S (K, 3D),
    T (K, 3D), resp (K,), cst (K,) float64."""
    x, f8 = np.dtype(dtype), np.dtype(np.float64)
    B = DIAG_MISSING_BLOCK
    return (((3 * D, K), x), ((B, 3 * D), x), ((B, K), x), ((0 if x == f8 else B, 3 * D), f8),
            ((K + 3, B), f8), ((K, 3 * D), f8), ((K, 3 * D), f8), ((K,), f8), ((K,), f8))


@kernel()
def pass_diag_missing_gemm(X, sw, means, pc, lconst, means64, var64, g, g64, cut, chunk_rows,
                           c0, j0, j1, nk_p, s1_p, s2_p, llws_p, logp, labels, resp_out, imp,
                           W, F, L, G, RB, S, T, resp, cst):
    """Masked diagonal pass about a shared centre g (as ``cpu_estep.pass_diag``), a block of
    rows at a time with two GEMMs.  With ``u`` = x - g on observed entries and 0 on missing
    ones, ``m`` the 0/1 missing indicator, delta = mu_k - g and
    ``c_kd = log(1/sigma_kd) - log(2 pi)/2 - p_kd delta_kd^2/2``:

    * log-densities ``L = [u, u*u, m] @ W + cst_k`` with ``W = [p delta; -p/2; -c]`` (X's
      dtype) and ``cst_k = log pi_k + sum_d c_kd``: the observed-coordinate quadratic form, and
      the normalising constant of the observed coordinates as that of the whole row less the
      missing ones';
    * statistics ``T = R^T [u, u*u, m]`` (float64) -- the same operand: float64 data pass F
      as G, float32 data build G in float64 --, mapped at the end of the chunk to
      ``s1 = T_1 + n_obs g + T_m mu``, ``s2 = T_2 - 2 delta T_1 + n_obs delta^2 + T_m var``
      with ``n_obs = nk - T_m`` (missing entries: mean mu_kd, variance var_kd).

    ``lconst`` here is log pi_k (the normalising constants are in W and cst).

    The responsibilities of a block are computed as in ``pass_diag``: laid out components by
    rows, ``RT = RB[:K]`` (K, B), filled transposed while ``cst_k`` is added (rounded to
    X's dtype, as the densities), then element-wise loops over the rows -- maxima, two
    exponentials per step, each row's sum over k in order, ``r = e * (1 / s)`` and (with
    weights) ``w r`` -- and ``RT`` is the C-contiguous left operand of the statistics GEMM
    over all B rows (a short last block zeroes the rest of ``RT`` and ``G``).  From the
    log-densities on, each row's arithmetic is that of ``estep._row_responsibilities`` (the
    per-row ``logp``, ``labels`` -- the first maximum --, ``resp_out`` and ``imp`` too).
    Missing entries are masked with selects, not branches (they fall at random).
    ``RB[K:K + 3]``: per-row maxima, sums (then 1 / sum) and weights.  Scratch
    ``W .. cst``: ``diag_missing_scratch``, allocated by the facade once per thread.

    Measured (one thread, D = K = 16, 2e5 rows, 20 % MCAR, process CPU, median of 7, paired
    runs against the row-by-row responsibilities and the ``[u*u, u, o]`` / ``[u, u*u, 1 - o]``
    operand pair): float64 284 -> 195 ns/row (complete rows through ``pass_diag``: ~156),
    float32 254 -> 238."""
    K, D = means64.shape
    N = X.shape[0]
    B = F.shape[0]
    has_w = sw.shape[0] > 0
    want_logp = logp.shape[0] == N
    want_resp = resp_out.shape[0] == N
    want_imp = imp.shape[1] == N
    f64 = X.itemsize == 8  # G is F
    for k in range(K):
        acc = lconst[k]
        for d in range(D):
            p = np.float64(pc[k, 0, d]) * np.float64(pc[k, 0, d])
            dl = means64[k, d] - g64[d]
            c = -0.5 * math.log(var64[k, d]) - 0.5 * LOG_2PI - 0.5 * p * dl * dl
            W[d, k] = p * dl
            W[D + d, k] = -0.5 * p
            W[2 * D + d, k] = -c
            acc += c
        cst[k] = acc
    RT = RB[:K]  # (K, B): the block's responsibilities, components by rows
    mx = RB[K]  # per-row maxima, sums, weights
    sm = RB[K + 1]
    wb = RB[K + 2]
    zero = X.dtype.type(0)
    one = X.dtype.type(1)
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
                G[nb:, :] = 0.0
            for b in range(nb):
                wb[b] = sw[b0 + b] if has_w else 1.0
                for d in range(D):  # selects, no branch (missing entries are random)
                    xd = X[b0 + b, d]
                    miss = xd != xd
                    u = zero if miss else xd - g[d]
                    F[b, d] = u
                    F[b, D + d] = u * u
                    F[b, 2 * D + d] = one if miss else zero
            if not f64:
                for b in range(nb):
                    for d in range(D):
                        xd = X[b0 + b, d]
                        miss = xd != xd
                        u64 = 0.0 if miss else np.float64(xd) - g64[d]
                        G[b, d] = u64
                        G[b, D + d] = u64 * u64
                        G[b, 2 * D + d] = 1.0 if miss else 0.0
            np.dot(F[:nb], W, L[:nb])
            for b in range(nb):
                mx[b] = -np.inf
            for k in range(K):  # transposed to (K, nb) as the constants are added
                ck = cst[k]
                for b in range(nb):  # rounded to X's dtype, as the densities
                    v = np.float64(X.dtype.type(L[b, k] + ck))
                    RT[k, b] = v
                    mx[b] = v if v > mx[b] else mx[b]
            if want_logp:  # labels: the first maximum, as _row_responsibilities
                for b in range(nb):
                    am = 0
                    m = -np.inf
                    for k in range(K):
                        if RT[k, b] > m:
                            m = RT[k, b]
                            am = k
                    labels[b0 + b] = am
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
                    lp = mx[b] + math.log(s)
                    sm[b] = 1.0 / s
                else:
                    lp = -np.inf
                    sm[b] = 0.0
                if want_logp:
                    logp[b0 + b] = lp
                ll += wn * lp
                ws += wn
            for k in range(K):
                for b in range(nb):
                    RT[k, b] *= sm[b]
            if want_resp or want_imp:
                for b in range(nb):
                    for k in range(K):
                        resp[k] = RT[k, b]
                    if want_resp:
                        for k in range(K):
                            resp_out[b0 + b, k] = resp[k]
                    if want_imp:
                        _impute_diag(X, b0 + b, resp, means64, var64, imp)
            if has_w:
                for k in range(K):
                    for b in range(nb):
                        RT[k, b] *= wb[b]
            for b in range(nb):  # nk in row order, as the rows' own sums
                for k in range(K):
                    nk[k] += RT[k, b]
            np.dot(RT, G, S)
            for k in range(K):
                for d in range(3 * D):
                    T[k, d] += S[k, d]
        for k in range(K):
            for d in range(D):
                dl = means64[k, d] - g64[d]
                tm = T[k, 2 * D + d]
                nobs = nk[k] - tm
                s1[k, d] = T[k, d] + nobs * g64[d] + tm * means64[k, d]
                s2[k, 0, d] = (T[k, D + d] - 2.0 * dl * T[k, d] + nobs * dl * dl
                               + tm * var64[k, d])
        llws_p[slot, 0] = ll
        llws_p[slot, 1] = ws


@kernel()
def pass_lowrank_missing(X, sw, means64, WP, logw, cut, chunk_rows, c0, j0, j1, nk_p, s1_p,
                         s2_p, llws_p, logp, labels, resp_out, imp):
    """Masked pass of the mixture of factor analysers (``Sigma_k = W_k W_k^T + diag(psi_k)``),
    row by row, in float64.  ``WP`` (K, D, q + 1) float64: ``W_k`` in its first q columns,
    ``psi_k`` in the last.  Statistics in ``cpu_lowrank``'s layout (centred on ``means64``).

    For a row with observed coordinates o and missing m, Woodbury on the observed rows of W
    and psi: ``M_o = I + W_o^T Psi_o^-1 W_o = M_k - W_m^T Psi_m^-1 W_m`` (a downdate of the
    component's M_k, O(|m| q^2)), factorised ``M_o = L L^T`` (q x q, O(q^3 / 3)); with
    ``b = W_o^T Psi_o^-1 y``, ``y = x_o - mu_o``:

    * ``log N(x_o) = -1/2 (|o| log 2 pi + log det M_o + sum_o log psi + y^T Psi_o^-1 y
      - b^T M_o^-1 b)``;
    * ``E[z | x_o] = M_o^-1 b``, ``Cov[z | x_o] = M_o^-1`` (the posterior of the factors);
    * ``x_m = mu_m + W_m z + eps_m`` with eps_m independent of x_o given z, so
      ``E[x_d - mu_d | x_o] = w_d^T E[z]``, ``E[(x_d - mu_d)^2 | x_o] = w_d^T E[z z^T] w_d +
      psi_d``, ``E[z (x_d - mu_d) | x_o] = E[z z^T] w_d`` for d in m.

    These are the expected complete-data statistics of the factor-analyser M-step (Ghahramani
    & Hinton 1996), so ``LowRankCovariance.m_step_joint`` applies unchanged.  No grouping by
    pattern: the per-row factorisation is of a q x q matrix.  ``imp`` is not written (imputation
    of a lowrank model runs on its dense covariances)."""
    K, D = means64.shape
    q = WP.shape[2] - 1
    N = X.shape[0]
    M = np.zeros((K, q, q))
    ipsi = np.empty((K, D))
    lpsi = np.empty((K, D))
    for k in range(K):
        for a in range(q):
            M[k, a, a] = 1.0
        for d in range(D):
            ip = 1.0 / WP[k, d, q]
            ipsi[k, d] = ip
            lpsi[k, d] = math.log(WP[k, d, q])
            for a in range(q):
                wa = WP[k, d, a] * ip
                for b in range(q):
                    M[k, a, b] += wa * WP[k, d, b]
    miss = np.empty(D, np.bool_)
    Mo = np.empty((q, q))
    Lk = np.empty((K, q, q))
    Ez = np.empty((K, q))
    Y = np.empty((K, D))
    bv = np.empty(q)
    u = np.empty(q)
    Li = np.empty((q, q))
    Ezz = np.empty((q, q))
    lrow = np.empty(K)
    resp = np.zeros(K)
    has_w = sw.shape[0] > 0
    want_logp = logp.shape[0] == N
    want_resp = resp_out.shape[0] == N
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
            no = 0
            for d in range(D):
                miss[d] = X[n, d] != X[n, d]
                if not miss[d]:
                    no += 1
            for k in range(K):
                for a in range(q):
                    for b in range(q):
                        Mo[a, b] = M[k, a, b]
                for d in range(D):
                    if miss[d]:  # downdate: M_o = M_k - w_d w_d^T / psi_d
                        for a in range(q):
                            wa = WP[k, d, a] * ipsi[k, d]
                            for b in range(q):
                                Mo[a, b] -= wa * WP[k, d, b]
                L = Lk[k]
                if not _cholesky(Mo, q, L):
                    lrow[k] = -np.inf
                    continue
                logdet = 0.0
                for a in range(q):
                    logdet += 2.0 * math.log(L[a, a])
                    bv[a] = 0.0
                quad = 0.0
                for d in range(D):
                    if miss[d]:
                        Y[k, d] = 0.0
                        continue
                    yd = np.float64(X[n, d]) - means64[k, d]
                    Y[k, d] = yd
                    t = yd * ipsi[k, d]
                    quad += yd * t
                    logdet += lpsi[k, d]
                    for a in range(q):
                        bv[a] += WP[k, d, a] * t
                for a in range(q):  # L u = b
                    t = bv[a]
                    for p in range(a):
                        t -= L[a, p] * u[p]
                    u[a] = t / L[a, a]
                    quad -= u[a] * u[a]
                for a in range(q - 1, -1, -1):  # L^T Ez = u
                    t = u[a]
                    for p in range(a + 1, q):
                        t -= L[p, a] * Ez[k, p]
                    Ez[k, a] = t / L[a, a]
                lrow[k] = logw[k] - 0.5 * (no * LOG_2PI + logdet + quad)
            lp, am = _row_responsibilities(lrow, resp, cut)
            if want_logp:
                logp[n] = lp
                labels[n] = am
            if want_resp:
                for k in range(K):
                    resp_out[n, k] = resp[k]
            ll += wn * lp
            ws += wn
            if wn == 0.0:
                continue
            for k in range(K):
                wr = wn * resp[k]
                if wr == 0.0:
                    continue
                L = Lk[k]
                # Ezz = M_o^-1 + Ez Ez^T, M_o^-1 = L^-T L^-1
                for j in range(q):
                    for i in range(q):
                        Li[i, j] = 0.0
                    Li[j, j] = 1.0 / L[j, j]
                    for i in range(j + 1, q):
                        t = 0.0
                        for p in range(j, i):
                            t -= L[i, p] * Li[p, j]
                        Li[i, j] = t / L[i, i]
                for a in range(q):
                    for b in range(q):
                        t = Ez[k, a] * Ez[k, b]
                        for p in range(max(a, b), q):
                            t += Li[p, a] * Li[p, b]
                        Ezz[a, b] = t
                nk[k] += wr
                for d in range(D):
                    if miss[d]:
                        e = 0.0
                        for a in range(q):
                            e += WP[k, d, a] * Ez[k, a]
                            t = 0.0
                            for b in range(q):
                                t += Ezz[a, b] * WP[k, d, b]
                            u[a] = t
                        e2 = WP[k, d, q]
                        for a in range(q):
                            e2 += WP[k, d, a] * u[a]
                            s2[k, 1 + a, d] += wr * u[a]
                        s1[k, d] += wr * (means64[k, d] + e)
                        s2[k, 0, d] += wr * e2
                    else:
                        e = Y[k, d]
                        s1[k, d] += wr * (means64[k, d] + e)
                        s2[k, 0, d] += wr * e * e
                        for a in range(q):
                            s2[k, 1 + a, d] += wr * Ez[k, a] * e
                for a in range(q):
                    for b in range(q):
                        s2[k, 1 + a, D + b] += wr * Ezz[a, b]
                    s2[k, 1 + a, D + q] += wr * Ez[k, a]
        llws_p[slot, 0] = ll
        llws_p[slot, 1] = ws


# ----------------------------------------- full / tied: factors once per E-step, GEMM rows ---
#: Pattern groups of at least this many rows in their chunk take the block path
#: (``pass_cov_missing_tab``): factors from the E-step's table, log-densities and second
#: moments by GEMM over the group's rows; smaller groups keep ``_cov_group``'s row loop.
COV_GEMM_MIN_ROWS = 16
#: Rows per GEMM block of a pattern group.
COV_BLOCK = 128


@kernel()
def pattern_factor_table(cov, pats, LiT, AT, CT, ldT):
    """Factors of each missingness pattern ``pats[p]`` (D,) uint8 (1 = missing) and each
    covariance ``cov[kc]``, by ``_pattern_factors`` (Cholesky form): ``LiT[p]`` the stacked
    L_kc^-1 as a C-ordered (Kc * no, no) matrix in its first Kc * no * no entries, ``AT[p,
    kc]`` A (nm, no), ``CT[p, kc]`` C (nm, nm), ``ldT[p, kc]`` = sum log diag L (-inf if
    Sigma_oo is not SPD).  The numbers are those ``_cov_group`` computes (same function, same
    inputs), wherever in the data the pattern first appears."""
    Kc, D = cov.shape[0], cov.shape[1]
    o = np.empty(D, np.int64)
    m = np.empty(D, np.int64)
    Soo = np.empty((D, D))
    L = np.empty((D, D))
    Li = np.empty((D, D))
    for p in range(pats.shape[0]):
        no = 0
        nm = 0
        for d in range(D):
            if pats[p, d]:
                m[nm] = d
                nm += 1
            else:
                o[no] = d
                no += 1
        for kc in range(Kc):
            ldT[p, kc] = _pattern_factors(cov, kc, o, no, m, nm, Soo, L, Li, AT[p, kc],
                                          CT[p, kc])
            base = kc * no * no
            for i in range(no):
                for j in range(no):
                    LiT[p, base + i * no + j] = Li[i, j] if j <= i else 0.0


@kernel()
def pass_cov_missing_tab(X, sw, means64, cov, prec, ldcov, logw, tied, g64, c64, order, gstart,
                         cgroup, gtab, LiT, AT, CT, ldT, cut, chunk_rows, c0, j0, j1, nk_p,
                         s1_p, s2_p, llws_p):
    """``pass_cov_missing`` (statistics only) with each pattern's factors computed once per
    E-step.  Group ``grp`` with ``gtab[grp] >= 0`` reads its factors from the table (``LiT``,
    ``AT``, ``CT``, ``ldT`` of ``pattern_factor_table``, row ``gtab[grp]``) and runs its rows
    in blocks of COV_BLOCK, as ``cpu_estep.pass_full`` does for complete rows, about the shared
    centre ``c64`` (D,): ``Z = [L_k^-1 ...] (X_o - c_o)^T`` by GEMM gives the log-densities
    (``|z_k - L_k^-1 (mu_ko - c_o)|^2``), and ``R^T [u_i u_j (i <= j), u_i]`` (u = x_o - c_o)
    by GEMM the group's weighted sums for every component, re-centred on mu_ko at the group's
    end (``_group_stats``).  ``gtab[grp] == -1``: the same, with the factors computed here (a
    table that would outgrow its memory budget); ``-2``: ``_cov_group``'s row loop (groups of
    fewer than COV_GEMM_MIN_ROWS rows).  The arithmetic of a group depends only on its rows
    and the model, never on which table slot (or none) holds its factors."""
    K, D = means64.shape
    Kc = cov.shape[0]
    B = COV_BLOCK
    ntri = D * (D + 1) // 2
    o = np.empty(D, np.int64)
    m = np.empty(D, np.int64)
    Soo = np.empty((D, D))
    Lw = np.empty((D, D))
    Li = np.zeros((Kc, D, D))
    PM = np.zeros((Kc, D, D))
    A = np.zeros((Kc, D, D))
    C = np.zeros((Kc, D, D))
    cst = np.empty(K)
    lrow = np.empty(K)
    resp = np.zeros(K)
    y = np.empty(D)
    z = np.empty(D)
    nkg = np.empty(K)
    ag = np.empty((K, D))
    Sg = np.empty((K, D, D))
    e = np.empty(D)
    Pa = np.empty(D)
    PS = np.empty((D, D))
    none_f = np.empty(0)
    none_i = np.empty(0, np.int64)
    none_r = np.empty((0, K))
    none_m = np.empty((2, 0, D))
    # aligned GEMM scratch (BLAS rounds alike only for alike-aligned operands)
    LSf = _aligned(Kc * D, D, y).reshape(-1)  # the group's stacked L_k^-1 (Kc * no, no)
    YT = _aligned(D, B, y)            # (no, nb): x_o - c_o, rows innermost
    ZT = _aligned(Kc * D, B, y)       # (Kc * no, nb)
    PT = _aligned(ntri + D, B, y)     # (ncol, nb): [u_i u_j (i <= j), u_i]
    RB = _aligned(B, K, y)            # (nb, K): w r
    SB = _aligned(K, ntri + D, y)     # (K, ncol)
    G2 = np.empty((K, ntri + D))
    T = np.empty((K, D))              # t_k = L_k^-1 (mu_ko - c_o)
    acc = np.empty(B)
    ld = np.empty(Kc)
    has_w = sw.shape[0] > 0
    for slot in range(j0, j1):
        c = c0 + slot
        nk = nk_p[slot, :K]
        s1 = s1_p[slot]
        s2 = s2_p[slot]
        nk[:] = 0.0
        s1[:, :] = 0.0
        s2[:, :, :] = 0.0
        ll = 0.0
        ws = 0.0
        for grp in range(cgroup[c], cgroup[c + 1]):
            g0 = gstart[grp]
            g1 = gstart[grp + 1]
            p = gtab[grp]
            if p == -2:
                lg, wg = _cov_group(X, sw, means64, cov, prec, ldcov, logw, tied, g64, order,
                                    g0, g1, cut, o, m, Soo, Lw, Li, PM, A, C, cst, lrow, resp,
                                    y, z, nkg, ag, Sg, e, Pa, PS, nk, s1, s2, none_f, none_i,
                                    none_r, none_m)
                ll += lg
                ws += wg
                continue
            r0 = order[g0]
            no = 0
            nm = 0
            for d in range(D):
                if X[r0, d] != X[r0, d]:
                    m[nm] = d
                    nm += 1
                else:
                    o[no] = d
                    no += 1
            LSg = LSf[:Kc * no * no].reshape((Kc * no, no))
            if p >= 0:
                for i in range(Kc * no * no):
                    LSf[i] = LiT[p, i]
                for kc in range(Kc):
                    ld[kc] = ldT[p, kc]
                    for a in range(nm):
                        for j in range(no):
                            A[kc, a, j] = AT[p, kc, a, j]
                        for b in range(nm):
                            C[kc, a, b] = CT[p, kc, a, b]
            else:
                for kc in range(Kc):
                    ld[kc] = _pattern_factors(cov, kc, o, no, m, nm, Soo, Lw, Li[kc], A[kc],
                                              C[kc])
                    for i in range(no):
                        for j in range(no):
                            LSg[kc * no + i, j] = Li[kc, i, j] if j <= i else 0.0
            ncol = no * (no + 1) // 2 + no
            for k in range(K):
                kc = k if Kc == K else 0
                cst[k] = logw[k] - ld[kc] - 0.5 * no * LOG_2PI
                for i in range(no):
                    t = 0.0
                    for j in range(i + 1):
                        t += LSg[kc * no + i, j] * (means64[k, o[j]] - c64[o[j]])
                    T[k, i] = t
                nkg[k] = 0.0
                for j in range(ncol):
                    G2[k, j] = 0.0
            for b0 in range(g0, g1, B):
                nb = min(B, g1 - b0)
                Y = YT.reshape(-1)[:no * nb].reshape((no, nb))
                for b in range(nb):
                    n = order[b0 + b]
                    for i in range(no):
                        Y[i, b] = np.float64(X[n, o[i]]) - c64[o[i]]
                Z = ZT.reshape(-1)[:Kc * no * nb].reshape((Kc * no, nb))
                np.dot(LSg, Y, Z)
                for k in range(K):
                    kc = k if Kc == K else 0
                    for b in range(nb):
                        acc[b] = 0.0
                    for i in range(no):
                        t = T[k, i]
                        for b in range(nb):
                            v = Z[kc * no + i, b] - t
                            acc[b] += v * v
                    for b in range(nb):
                        RB[b, k] = cst[k] - 0.5 * acc[b]
                for b in range(nb):
                    n = order[b0 + b]
                    wn = sw[n] if has_w else 1.0
                    for k in range(K):
                        lrow[k] = RB[b, k]
                    lp, _ = _row_responsibilities(lrow, resp, cut)
                    ll += wn * lp
                    ws += wn
                    for k in range(K):
                        RB[b, k] = wn * resp[k]
                        nkg[k] += RB[b, k]
                P = PT.reshape(-1)[:ncol * nb].reshape((ncol, nb))
                ntri_o = ncol - no
                t0 = 0
                for i in range(no):
                    for j in range(i, no):
                        for b in range(nb):
                            P[t0 + j - i, b] = Y[i, b] * Y[j, b]
                    t0 += no - i
                for i in range(no):
                    for b in range(nb):
                        P[ntri_o + i, b] = Y[i, b]
                S = SB.reshape(-1)[:K * ncol].reshape((K, ncol))
                np.dot(RB[:nb].T, P.T, S)
                for k in range(K):
                    for j in range(ncol):
                        G2[k, j] += S[k, j]
            # re-centre on mu_ko: sums about d = mu_ko - c_o, then into the statistics
            ntri_o = ncol - no
            for k in range(K):
                if nkg[k] == 0.0:
                    continue
                kc = k if Kc == K else 0
                for i in range(no):
                    ag[k, i] = G2[k, ntri_o + i] - nkg[k] * (means64[k, o[i]] - c64[o[i]])
                t0 = 0
                for i in range(no):
                    di = means64[k, o[i]] - c64[o[i]]
                    ai = G2[k, ntri_o + i]
                    for j in range(i, no):
                        dj = means64[k, o[j]] - c64[o[j]]
                        v = (G2[k, t0 + j - i] - ai * dj - di * G2[k, ntri_o + j]
                             + nkg[k] * di * dj)
                        Sg[k, i, j] = v
                        Sg[k, j, i] = v
                    t0 += no - i
                _group_stats(k, nkg[k], ag[k], Sg[k], o, no, m, nm, A[kc], C[kc], means64,
                             tied, g64, Lw, Pa, PS, e, nk, s1, s2)
        llws_p[slot, 0] = ll
        llws_p[slot, 1] = ws


# -------------------------------------------- lowrank: factors once per pattern and E-step ---
@kernel()
def _lowrank_pattern_factors(WP, M, lpsi, k, miss, Mo, L, Li, Minv):
    """For component k and the missingness pattern ``miss`` (D,) bool: ``Li`` = L^-1 with
    L L^T = M_o = M_k - W_m^T Psi_m^-1 W_m (q x q), ``Minv`` = M_o^-1 = Li^T Li, and returns
    log det M_o + sum_o log psi (the row-independent part of log det Sigma_oo), -inf if M_o is
    not SPD."""
    D = WP.shape[1]
    q = WP.shape[2] - 1
    for a in range(q):
        for b in range(q):
            Mo[a, b] = M[k, a, b]
    ld = 0.0
    for d in range(D):
        if miss[d]:  # downdate: M_o = M_k - w_d w_d^T / psi_d
            ip = 1.0 / WP[k, d, q]
            for a in range(q):
                wa = WP[k, d, a] * ip
                for b in range(q):
                    Mo[a, b] -= wa * WP[k, d, b]
        else:
            ld += lpsi[k, d]
    if not _cholesky(Mo, q, L):
        return -np.inf
    for a in range(q):
        ld += 2.0 * math.log(L[a, a])
    _lower_inverse(L, q, Li)
    for a in range(q):
        for b in range(q):
            t = 0.0
            for p in range(max(a, b), q):
                t += Li[p, a] * Li[p, b]
            Minv[a, b] = t
    return ld


@kernel()
def _lowrank_model(WP):
    """(M (K, q, q) = I + W^T Psi^-1 W, 1/psi (K, D), log psi (K, D)) of ``WP`` (K, D, q+1)."""
    K, D = WP.shape[0], WP.shape[1]
    q = WP.shape[2] - 1
    M = np.zeros((K, q, q))
    ipsi = np.empty((K, D))
    lpsi = np.empty((K, D))
    for k in range(K):
        for a in range(q):
            M[k, a, a] = 1.0
        for d in range(D):
            ip = 1.0 / WP[k, d, q]
            ipsi[k, d] = ip
            lpsi[k, d] = math.log(WP[k, d, q])
            for a in range(q):
                wa = WP[k, d, a] * ip
                for b in range(q):
                    M[k, a, b] += wa * WP[k, d, b]
    return M, ipsi, lpsi


@kernel()
def lowrank_pattern_table(WP, pats, LT, MT, ldT):
    """``_lowrank_pattern_factors`` of each pattern ``pats[p]`` (D,) uint8 (1 = missing) and
    component k into ``LT[p, k]`` (L^-1), ``MT[p, k]`` (M_o^-1), ``ldT[p, k]``."""
    K = WP.shape[0]
    q = WP.shape[2] - 1
    M, _, lpsi = _lowrank_model(WP)
    Mo = np.empty((q, q))
    L = np.empty((q, q))
    for p in range(pats.shape[0]):
        miss = pats[p] != 0
        for k in range(K):
            ldT[p, k] = _lowrank_pattern_factors(WP, M, lpsi, k, miss, Mo, L, LT[p, k],
                                                 MT[p, k])


@kernel()
def pass_lowrank_missing_tab(X, sw, means64, WP, logw, pid, LT, MT, ldT, cut, chunk_rows, c0,
                             j0, j1, nk_p, s1_p, s2_p, llws_p):
    """``pass_lowrank_missing`` (statistics only) with the per-pattern factors -- L^-1 and
    M_o^-1 of each component's q x q ``M_o``, and the row-independent part of the log
    determinant -- read from the E-step's table (``lowrank_pattern_table``; row ``pid[n]`` for
    row n) instead of factorised per row: a row then costs O(K (D q + |m| q^2)) with no
    factorisation, logarithm or division.  ``pid[n] == -1`` (a table over its memory budget):
    the same factors computed for the row.  Per row, E[z | x_o] = M_o^-1 b = Li^T (Li b),
    E[z z^T | x_o] = M_o^-1 + E[z] E[z]^T, and for a missing d ``E[z (x_d - mu_d)] =
    E[z z^T] w_d``, ``E[(x_d - mu_d)^2] = psi_d + w_d^T E[z z^T] w_d``."""
    K, D = means64.shape
    q = WP.shape[2] - 1
    N = X.shape[0]
    M, ipsi, lpsi = _lowrank_model(WP)
    miss = np.empty(D, np.bool_)
    o = np.empty(D, np.int64)
    m = np.empty(D, np.int64)
    xo = np.empty(D)
    Mo = np.empty((q, q))
    L = np.empty((q, q))
    Lr = np.empty((K, q, q))
    Mr = np.empty((K, q, q))
    ldr = np.empty(K)
    Ez = np.empty((K, q))
    Y = np.empty((K, D))
    bv = np.empty(q)
    u = np.empty(q)
    lrow = np.empty(K)
    resp = np.zeros(K)
    has_w = sw.shape[0] > 0
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
            no = 0
            nm = 0
            for d in range(D):
                miss[d] = X[n, d] != X[n, d]
                if miss[d]:
                    m[nm] = d
                    nm += 1
                else:
                    o[no] = d
                    xo[no] = np.float64(X[n, d])
                    no += 1
            p = pid[n]
            if p < 0:
                for k in range(K):
                    ldr[k] = _lowrank_pattern_factors(WP, M, lpsi, k, miss, Mo, L, Lr[k],
                                                      Mr[k])
                LK = Lr
                MK = Mr
                LD = ldr
            else:
                LK = LT[p]
                MK = MT[p]
                LD = ldT[p]
            for k in range(K):
                if LD[k] == -np.inf:
                    lrow[k] = -np.inf
                    continue
                for a in range(q):
                    bv[a] = 0.0
                quad = 0.0
                for i in range(no):
                    d = o[i]
                    yd = xo[i] - means64[k, d]
                    Y[k, d] = yd
                    t = yd * ipsi[k, d]
                    quad += yd * t
                    for a in range(q):
                        bv[a] += WP[k, d, a] * t
                for a in range(q):  # u = L^-1 b
                    t = 0.0
                    for c in range(a + 1):
                        t += LK[k, a, c] * bv[c]
                    u[a] = t
                    quad -= t * t
                for a in range(q):  # E[z] = L^-T u
                    t = 0.0
                    for c in range(a, q):
                        t += LK[k, c, a] * u[c]
                    Ez[k, a] = t
                lrow[k] = logw[k] - 0.5 * (no * LOG_2PI + LD[k] + quad)
            lp, _ = _row_responsibilities(lrow, resp, cut)
            ll += wn * lp
            ws += wn
            if wn == 0.0:
                continue
            for k in range(K):
                wr = wn * resp[k]
                if wr == 0.0:
                    continue
                nk[k] += wr
                # e = E[x - mu_k | x_o]: y on o, W_m E[z] on m; then the dense updates (the
                # E[z] E[z]^T part of E[z z^T]), vectorised over the features
                ek = Y[k]
                for a in range(nm):
                    d = m[a]
                    t = 0.0
                    for b in range(q):
                        t += WP[k, d, b] * Ez[k, b]
                    ek[d] = t
                for d in range(D):
                    s1[k, d] += wr * (means64[k, d] + ek[d])
                    s2[k, 0, d] += wr * ek[d] * ek[d]
                for a in range(q):
                    wa = wr * Ez[k, a]
                    for d in range(D):
                        s2[k, 1 + a, d] += wa * ek[d]
                    for b in range(q):
                        s2[k, 1 + a, D + b] += wr * MK[k, a, b] + wa * Ez[k, b]
                    s2[k, 1 + a, D + q] += wa
                # the M_o^-1 part on m: E[z (x_d - mu_d)] += M_o^-1 w_d,
                # E[(x_d - mu_d)^2] += psi_d + w_d^T M_o^-1 w_d
                for i in range(nm):
                    d = m[i]
                    e2 = WP[k, d, q]
                    for a in range(q):
                        t = 0.0
                        for b in range(q):
                            t += MK[k, a, b] * WP[k, d, b]
                        e2 += WP[k, d, a] * t
                        s2[k, 1 + a, d] += wr * t
                    s2[k, 0, d] += wr * e2
        llws_p[slot, 0] = ll
        llws_p[slot, 1] = ws
