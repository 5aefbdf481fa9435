"""fastmix kernels: the only package that imports numba.

Drivers call the plain-Python functions below; they prepare array types and call the compiled
kernels in ``cpu/*.py`` (the CUDA kernels are in ``cuda/``).  Every function here takes
C-contiguous float32/float64 data ``X`` of shape (N, D) and returns float64 statistics.
"""
import contextlib
import math
import threading
from typing import NamedTuple

import numba
import numpy as np

from .cpu import _threads
from .cpu import estep as cpu_estep, expansion as cpu_expansion, lowrank as cpu_lowrank
from .cpu import kmeans as cpu_kmeans
from .cpu import missing as cpu_missing
from .cpu._threads import run_ranges
from .cpu.estep import DIAG, ESTEP, FULL, RESP, SPHERICAL, TIED

LOWRANK = 4
KIND_CODES = {"full": FULL, "tied": TIED, "diag": DIAG, "spherical": SPHERICAL,
              "lowrank": LOWRANK}
_PASSES = dict(cpu_estep.PASSES)
_PASSES[LOWRANK] = cpu_lowrank.pass_lowrank

#: Responsibilities below exp(cut) relative to a row's largest component are set to 0.
CUT = {np.dtype(np.float64): -40.0, np.dtype(np.float32): -20.0}

#: Largest squared Mahalanobis distance of a mean from the shared centre of the GEMM
#: formulations (full, diag, spherical): expanding about it loses at most log10 of this many
#: digits -- float64 keeps >= 10 of 16 digits, float32 (whose diagonal log-densities are
#: expanded in float32) >= 4 of 7.
SHARED_MAX = {np.dtype(np.float64): 1e6, np.dtype(np.float32): 1e3}

#: Bound on the memory of per-slot partial statistics (bytes).
SLOT_BYTES = 64 * 2**20


class KernelParams(NamedTuple):
    """Mixture parameters laid out for the kernels (see cpu_estep's docstring).

    means, pc, tmeans, g are in the data dtype; lconst, means64, g64 are float64.
    """
    kind: int
    means: np.ndarray    # (K, D)
    pc: np.ndarray       # (K|1, D|1, D|1) precision-Cholesky factors; lowrank (K, 1+2q, D)
    lconst: np.ndarray   # (K,) log pi_k + log det U_k - D/2 log 2 pi
    tmeans: np.ndarray   # (K, D) tied only: (mu_k - g) U; else zeros
    g: np.ndarray        # (D,) tied centre
    means64: np.ndarray  # (K, D) float64 centres of the second moments
    g64: np.ndarray      # (D,) float64 tied centre


def s2_shape(kind, K, D, q=0):
    """Shape of the second-moment statistic for a covariance kind (``q``: factors of the
    lowrank kind, see ``cpu_lowrank``)."""
    if kind == LOWRANK:
        return (K, 1 + q, D + q + 1)
    return {FULL: (K, D, D), TIED: (1, D, D), DIAG: (K, 1, D), SPHERICAL: (K, 1, 1)}[kind]


def n_factors(kp):
    """q of a lowrank KernelParams (0 for the other kinds)."""
    return (kp.pc.shape[1] - 1) // 2 if kp.kind == LOWRANK else 0


def _n_slots(kind, K, D, q=0):
    """As many slots as SLOT_BYTES allows: one parallel region per pass when it fits."""
    per_slot = 8 * (K + 16 + K * D + math.prod(s2_shape(kind, K, D, q)))
    return int(max(1, SLOT_BYTES // per_slot))


def _dispatchers():
    """Every compiled CPU kernel (Numba dispatchers of ``cpu/*.py``)."""
    from .cpu import sgd as cpu_sgd
    mods = (cpu_estep, cpu_kmeans, cpu_lowrank, cpu_missing, cpu_expansion, cpu_sgd)
    return [v for m in mods for v in vars(m).values()
            if isinstance(v, numba.core.dispatcher.Dispatcher)]


def compile_counts():
    """(compiled, loaded): how many kernel signatures this process has compiled, and how many
    it loaded from Numba's on-disk cache, so far."""
    compiled = loaded = 0
    for d in _dispatchers():
        compiled += sum(d.stats.cache_misses.values())
        loaded += sum(d.stats.cache_hits.values())
    return compiled, loaded


def cache_dir():
    """The directory of the kernels' on-disk cache (Numba's choice: ``NUMBA_CACHE_DIR``, else
    ``__pycache__`` beside the sources when writable, else a per-user directory), or None
    when caching is off (``FASTMIX_NUMBA_CACHE=0``)."""
    cache = getattr(cpu_estep.pass_diag, "_cache", None)
    return getattr(cache, "cache_path", None)


@contextlib.contextmanager
def compile_listener(callback):
    """Within the context, ``callback(name)`` is called whenever a kernel starts compiling (a
    cache miss: loading from Numba's on-disk cache calls nothing), with the kernel's
    qualified name; from any thread."""
    from numba.core import event

    class Listener(event.Listener):
        def on_start(self, ev):
            callback(ev.data["dispatcher"].py_func.__qualname__)

        def on_end(self, ev):
            pass

    with event.install_listener("numba:compile", Listener()):
        yield


def num_threads():
    """Threads the parallel kernels use (``NUMBA_NUM_THREADS``)."""
    return numba.get_num_threads()


@contextlib.contextmanager
def thread_limit(n):
    """Run the parallel kernels on at most ``n`` threads in this thread (numba's thread count is
    per calling thread), e.g. inside a Dask task whose parallelism is Dask's own."""
    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(old)


_CONTROLLER: list = []
_BLAS_LIMIT = {"depth": 0, "lock": threading.Lock()}


class _BlasLimit:
    """BLAS on one thread for the outermost context: the thread counts of the controller's
    BLAS libraries are read, set to 1 and set back on exit -- what threadpoolctl's
    ``limit(limits=1, user_api="blas")`` and ``restore_original_limits`` do, without building
    the ``info()`` of every library each time (~30 us of a small fit's ~3 ms)."""

    __slots__ = ("saved",)

    def __enter__(self):
        ctl = _BLAS_LIMIT
        with ctl["lock"]:
            outer = ctl["depth"] == 0
            ctl["depth"] += 1
            self.saved = None
            if outer:
                libs = [lib for lib in _CONTROLLER[0].lib_controllers if lib.user_api == "blas"]
                self.saved = [(lib, lib.num_threads) for lib in libs]
                for lib in libs:
                    lib.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        with _BLAS_LIMIT["lock"]:
            _BLAS_LIMIT["depth"] -= 1
            if self.saved is not None:
                for lib, n in self.saved:
                    lib.set_num_threads(n)
        return False


def blas_single_threaded():
    """Context in which BLAS runs on one thread.

    fastmix's parallelism is its own (threads over chunks); BLAS calls inside the parallel
    kernels and the small factorisations of the M-step must not start threads of their own.
    With OpenBLAS's default of one thread per core the full-covariance pass ran 2-4x slower, and
    16 x 16 ``solve_triangular`` calls took up to 450 us instead of 10 us when another process
    held a core (measured).  The threadpoolctl controller is built once (building one scans the
    loaded libraries, ~5 ms).  The limit is process-wide, so only the outermost of nested (or
    concurrent) contexts sets and restores it: the estimators hold one for a whole fit and the
    passes' own contexts inside cost nothing (each limit/restore pair took ~30 us, hundreds of
    times in a small fit).
    """
    if _BLAS_LIMIT["depth"]:
        # an outer context holds the limit already (the estimators hold one for a whole fit):
        # nothing to set or restore.  A reusable no-op context costs ~0.4 us where a counted
        # generator context and its lock cost ~5 us, ~50 times per small fit.
        return _HELD
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController
        _CONTROLLER.append(ThreadpoolController())
    return _BlasLimit()


_HELD = contextlib.nullcontext()


def _weights(sw):
    return np.empty(0, np.float64) if sw is None else np.ascontiguousarray(sw, dtype=np.float64)


def nearest_params(centres, dtype, kind=SPHERICAL):
    """KernelParams that carry only k-means centres (for RESP passes and the layout of
    ``fastmix.kmeans.hard_stats``)."""
    centres = np.ascontiguousarray(centres, dtype=np.float64)
    K, D = centres.shape
    dt = np.dtype(dtype)
    # tied needs its shared centre; the other kinds use per-centre second moments here
    g64 = centres.mean(axis=0) if kind == TIED else np.zeros(0)
    return KernelParams(kind, centres.astype(dt), np.zeros((K, 1, 1), dt), np.zeros(K),
                        np.zeros((K, D), dt), np.zeros(D, dt), centres, g64)


class Accumulator:
    """Running float64 sums (nk, s1, s2, ll, ws) that passes over consecutive blocks of rows
    add to, chunk after chunk in row order.  Feeding a file block by block (blocks of whole
    chunks) therefore adds exactly the same chunk partials in exactly the same order as one
    pass over the whole array: the sums are bit-identical."""

    def __init__(self, kind, K, D, q=0):
        self.nk = np.zeros(K)
        self.s1 = np.zeros((K, D))
        self.s2 = np.zeros(s2_shape(kind, K, D, q))
        self.ll = 0.0
        self.ws = 0.0

    @classmethod
    def for_params(cls, kp):
        """An empty Accumulator for the statistics of the KernelParams ``kp``."""
        K, D = kp.means64.shape
        return cls(kp.kind, K, D, n_factors(kp))

    def result(self):
        return self.nk, self.s1, self.s2, self.ll, self.ws


def _as_diag(kp, mode, dtype, native=False):
    """(pc, g, g64) to run a spherical model through the diagonal passes: the shared centre
    of the GEMM formulation (the mean of the means, used only when every mean is within a
    squared Mahalanobis distance SHARED_MAX of it, as for diag; never for the
    given-responsibility mode, whose ``pc`` carries no scale) and each component's single
    precision factor repeated over the D features (K, 1, D) -- or, with ``native`` and a shared
    centre, ``pc`` as it is (K, 1, 1): ``pass_diag`` then uses one quadratic column instead of
    D."""
    K, D = kp.means64.shape
    g64 = kp.means64.mean(axis=0)
    maha2 = (((kp.means64 - g64) * kp.pc[:, 0, :1].astype(np.float64)) ** 2).sum(axis=1)
    shared = mode == ESTEP and np.max(maha2) < SHARED_MAX[np.dtype(dtype)]
    if native and shared:
        return np.ascontiguousarray(kp.pc), g64.astype(dtype), g64
    pc = np.ascontiguousarray(np.broadcast_to(kp.pc[:, :, :1], (K, 1, D)))
    if not shared:
        return pc, np.zeros(D, dtype), np.zeros(0)
    return pc, g64.astype(dtype), g64


def _aligned_empty(shape, dtype):
    """Uninitialised C-contiguous array whose data start on a 64-byte boundary (BLAS rounds
    differently aligned operands differently; see ``cpu_estep._aligned``)."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape))
    buf = np.empty(n + 64 // dt.itemsize, dtype=dt)
    off = (-buf.ctypes.data % 64) // dt.itemsize
    return buf[off:off + n].reshape(shape)


_SCRATCH = threading.local()
#: Bytes of cached scratch per thread above which the cache starts afresh.
SCRATCH_CACHE_BYTES = 64 << 20


def _scratch(spec):
    """The aligned scratch arrays of ``spec`` ((shape, dtype), ...) for the calling thread:
    allocated once per thread and spec and reused by every later call (a pass allocates
    nothing: on small data a dozen allocations per call were measurable).  Kernels never
    read scratch before writing it, so reuse cannot change a result."""
    cache = getattr(_SCRATCH, "arrays", None)
    if cache is None:
        cache = _SCRATCH.arrays = {}
    arrays = cache.get(spec)
    if arrays is None:
        arrays = tuple(_aligned_empty(shape, dt) for shape, dt in spec)
        size = sum(a.nbytes for a in arrays)
        if getattr(_SCRATCH, "nbytes", 0) + size > SCRATCH_CACHE_BYTES:
            cache.clear()
            _SCRATCH.nbytes = 0
        cache[spec] = arrays
        _SCRATCH.nbytes = getattr(_SCRATCH, "nbytes", 0) + size
    return arrays


def _with_scratch(fn, spec):
    """``fn`` with the calling thread's scratch arrays of ``spec`` appended to its arguments."""
    if not spec:
        return fn
    return lambda *args: fn(*args, *_scratch(spec))


def _full_layout(kp, dtype, mode=ESTEP):
    """(UT, C, T): the full kind's parameters as one log-density GEMM per group of components
    (``cpu_estep._full_logdens_block``), in ``dtype``.

    ``z_k = (x - c) U_k - t_k`` with ``t_k = (mu_k - c) U_k`` (float64, then rounded).  With
    a shared centre (``kp.g64`` has D entries: every mean within a squared Mahalanobis distance
    SHARED_MAX of it) c = g for all components, and groups of up to FULL_GROUP_COLS // D
    components share one ``(rows x D) @ (D x G*D)`` product -- at D = K = 16 one product
    instead of 16 (measured, one thread, 4e5 rows: E-step 251 -> 150 ms in float32, 327 ->
    217 ms in float64).  Without one, every component is its own group with c = mu_k and
    t_k = 0, exactly the per-component formula.  Group j's row of UT holds its transposed
    factors, ``UT[j, (i*D + e)*D + a] = U_{jG+i}[a, e]``, each row 64-byte aligned.  The
    given-responsibility mode computes no densities and gets an empty layout."""
    K, D = kp.means64.shape
    dt = np.dtype(dtype)
    if mode != ESTEP:
        return np.zeros((1, 0), dt), np.zeros((1, D), dt), np.zeros((K, D), dt)
    shared = kp.g64.shape[0] == D
    ng = -(-K // max(1, min(K, cpu_estep.FULL_GROUP_COLS // D))) if shared else K
    G = -(-K // ng)
    lanes = 64 // dt.itemsize
    per = G * D * D
    UT = _aligned_empty((ng, -(-per // lanes) * lanes), dt)
    UT[:, per:] = 0
    P = np.zeros((ng * G, D, D), dt)
    P[:K] = np.transpose(kp.pc, (0, 2, 1))
    UT[:, :per] = P.reshape(ng, per)
    if shared:
        # a writeable copy (a broadcast view is read-only: a second compiled signature)
        C = np.empty((ng, D), dt)
        C[:] = kp.g
        d = kp.means64 - kp.g.astype(np.float64)
        T = np.einsum("ka,kae->ke", d, kp.pc.astype(np.float64)).astype(dt)
    else:
        C = np.ascontiguousarray(kp.means, dtype=dt)
        T = np.zeros((K, D), dt)
    return UT, C, T


#: Largest squared Mahalanobis distance ||(mu_k - g) U_k||^2 of a mean from the shared centre
#: g for which float32 data take the full pass's shared-centre second moments in float32 (one
#: single-precision GEMM per block); beyond it the per-component float64 path runs.  Re-centring
#: the float32 sums on mu_k costs a relative error of about (1 + maha2) * 2^-24 * sqrt(B / 3)
#: per block of B = FULL_BLOCK rows, falling as 1/sqrt(blocks) over a chunk (error analysis
#: in ``cpu_estep.pass_full``): <= ~1e-6 of the covariances from ~1e4 rows at 128.
FULL_F32_STATS_MAX = 128.0


def _full_stats_centre(kp, dtype):
    """``g64`` as the full pass takes it: the shared centre of the second-moment GEMM, or an
    empty array for the per-component path -- float32 data keep the centre only while every
    mean is within a squared Mahalanobis distance FULL_F32_STATS_MAX of it (their shared
    statistics are single precision); float64 data keep ``kp.g64`` (SHARED_MAX)."""
    D = kp.means64.shape[1]
    if np.dtype(dtype) == np.float64 or kp.g64.shape[0] != D:
        return kp.g64
    z = np.einsum("ka,kae->ke", kp.means64 - kp.g64, kp.pc.astype(np.float64))
    return kp.g64 if np.max(np.sum(z * z, axis=1)) <= FULL_F32_STATS_MAX else np.zeros(0)


def _full_expanded_layout(kp, dtype, mode=ESTEP):
    """(WQ, cst): the full kind's log-densities expanded around the shared centre g, as
    ``cpu_estep.pass_full_expanded`` takes them -- ``log pi_k N(x | mu_k, Sigma_k) = cst_k +
    WQ[k] . [u_i u_j (i <= j), u_i]`` with ``u = x - g``: ``WQ[k]`` = (-1/2 P_ii, -P_ij for
    i < j, in ``np.triu_indices`` order; then P_k d_k) in ``dtype``, ``cst_k = lconst_k - 1/2
    d_k^T P_k d_k`` (float64), ``P_k = U_k U_k^T``, ``d_k = mu_k - g`` (all computed in
    float64).  The given-responsibility mode computes no densities: an empty WQ."""
    K, D = kp.means64.shape
    dt = np.dtype(dtype)
    if mode != ESTEP:
        return np.zeros((K, 0) if dt == np.float64 else (0, K), dt), kp.lconst
    U = kp.pc.astype(np.float64)
    P = np.einsum("kij,klj->kil", U, U)
    iu, ju = np.triu_indices(D)
    d = kp.means64 - kp.g64
    Pd = np.einsum("kij,kj->ki", P, d)
    WQ = np.empty((K, iu.shape[0] + D))
    WQ[:, :iu.shape[0]] = np.where(iu == ju, -0.5, -1.0) * P[:, iu, ju]
    WQ[:, iu.shape[0]:] = Pd
    if dt == np.float32:  # the product's faster layout (cpu_estep._expanded_logdens)
        WQ = WQ.T
    out = _aligned_empty(WQ.shape, dt)
    out[:] = WQ
    cst = kp.lconst - 0.5 * np.einsum("ki,ki->k", d, Pd)
    return out, cst


def _pass_layout(kp, mode, dtype, native_spherical=False, scatter=True):
    """(run, pc, lconst, g, g64, tmeans): the pass function of ``kp``'s kind and the parameters
    in its layout (spherical through the diagonal passes -- with ``native_spherical`` its
    (K, 1, 1) factors as they are when ``pass_diag`` runs, see ``_as_diag`` -- full about a
    shared centre in ``_full_expanded_layout``, without one in ``_full_layout``).  Tied with
    ``scatter=False``: the pass leaves out the shared second moment (``estep_stats``)."""
    D = kp.means64.shape[1]
    kind = DIAG if kp.kind == SPHERICAL else kp.kind
    pc, lconst, g, g64, tmeans = kp.pc, kp.lconst, kp.g, kp.g64, kp.tmeans
    run = _PASSES[kind]
    K = kp.means64.shape[0]
    if kp.kind == SPHERICAL:
        pc, g, g64 = _as_diag(kp, mode, dtype, native_spherical)
    elif kp.kind == FULL:
        g64 = _full_stats_centre(kp, dtype)
        if g64.shape[0] == D:
            run = cpu_estep.pass_full_expanded
            pc, lconst = _full_expanded_layout(kp, dtype, mode)
            # g and tmeans are not read: writeable arrays of the usual types
            g, tmeans = np.zeros(D, dtype), np.zeros((K, D), dtype)
        else:
            pc, g, tmeans = _full_layout(kp, dtype, mode)
    if kind == DIAG and g64.shape[0] != D:  # no shared centre: the row-at-a-time loop
        run = cpu_estep.pass_diag_rows
    elif kind == DIAG:
        spec = cpu_estep.pass_scratch(DIAG, K, D, dtype, P=pc.shape[2])
        fn = run
        sph = _SPHERICAL_MARK if pc.shape[2] == 1 and D > 1 else None
        if np.dtype(dtype) == np.float64:  # F = [quad(u), u] is the statistics' operand G
            run = lambda *a: fn(*a, *_diag_f64_scratch(_scratch(spec)), sph)  # noqa: E731
        else:
            # u = x - g is formed in float32 with the rounded centre: the float64 centre of
            # the expansion and the re-centring is that same value, widened
            g64 = g.astype(np.float64)
            f32s = _diag_f32_stats(kp.means64, pc, g64)
            run = lambda *a: fn(*a, *_diag_f32_scratch(_scratch(spec), f32s), sph)  # noqa: E731
    elif kind == FULL:
        run = _with_scratch(run, cpu_estep.pass_scratch(
            FULL, K, D, dtype, n_groups=g.shape[0] if g.ndim == 2 else 1,
            shared=g64.shape[0] == D))
    elif kind == TIED:
        spec = cpu_estep.pass_scratch(TIED, K, D, dtype)
        fn = run
        if scatter:
            run = _with_scratch(run, spec)
        else:  # WU empty: the pass skips the shared second moment (s2 stays 0)
            run = lambda *a: fn(*a, *_tied_no_scatter(_scratch(spec)))  # noqa: E731
    return run, pc, lconst, g, g64, tmeans


#: ``pass_diag``'s last argument for spherical factors (K, 1, 1) (None: diagonal (K, 1, D)):
#: a diagonal fit's pass is compiled without the spherical branches (Numba prunes a branch on
#: a None argument), a spherical fit's with the diagonal ones typed but dropped by LLVM.
_SPHERICAL_MARK = np.empty(0)


def _tied_no_scatter(arrays):
    """``pass_tied``'s scratch with ``WU`` as an empty (0, B) view: the pass then leaves the
    shared second moment out (``estep_stats(scatter=False)``)."""
    Yf, Zf, UT, U, WU, *rest = arrays
    return (Yf, Zf, UT, U, WU[:0], *rest)


def _diag_f64_scratch(arrays):
    """``pass_diag``'s scratch for float64 data: no G, RF, SF (None), so the pass uses its F
    (``[quad(u), u]``, float64) as the statistics GEMM's operand, which float32 data build
    apart in G or multiply in float32 (and the pass compiles only the code of its own dtype)."""
    W, F, L, G, RB, S, cst, T, RF, SF = arrays
    return W, F, L, None, RB, S, cst, T, None, None


def _diag_f32_scratch(arrays, f32s):
    """``pass_diag``'s scratch for float32 data: with ``f32s`` (single-precision statistics,
    ``_diag_f32_stats``) G as an empty (0, P + D) view, which tells the pass so at run time."""
    W, F, L, G, RB, S, cst, T, RF, SF = arrays
    return W, F, L, (G[:0] if f32s else G), RB, S, cst, T, RF, SF


def _diag_f32_stats(means64, pc, g64):
    """Whether float32 data take ``pass_diag``'s single-precision statistics GEMM: every mean
    within a squared Mahalanobis distance FULL_F32_STATS_MAX of the shared centre (``pc``
    (K, 1, D) or spherical (K, 1, 1) inverse standard deviations), the gate and error bound of
    the full kind's float32 second moments (``cpu_estep.pass_full_expanded``)."""
    z = (means64 - g64) * pc[:, 0, :].astype(np.float64)
    return bool(np.max(np.sum(z * z, axis=1)) <= FULL_F32_STATS_MAX)


def _pass(mode, X, sw, R, kp, chunk_rows, acc, scatter=True):
    """Run the kind's pass over groups of chunks on ``_threads.run_ranges``; add the slots to
    ``acc`` in chunk order (``scatter``: see ``estep_stats``).

    Spherical models run through the diagonal passes: ``pass_diag`` takes their (K, 1, 1)
    factors as they are (GEMM formulation: 2.4x faster than a spherical row loop, measured);
    without a shared centre ``pass_diag_rows`` gets them repeated over the features, and the
    per-feature second moments are summed at the merge."""
    N = X.shape[0]
    K, D = kp.means64.shape
    q = n_factors(kp)
    kind = DIAG if kp.kind == SPHERICAL else kp.kind
    if acc is None:
        acc = Accumulator(kp.kind, K, D, q)
    chunk_rows = int(chunk_rows)
    n_chunks = max(1, -(-N // chunk_rows))
    n_slots = min(n_chunks, _n_slots(kind, K, D, q))
    # slots padded to whole cache lines (+8 doubles) so two threads never write one line
    nk_p = np.zeros((n_slots, K + 8))
    s1_p = np.zeros((n_slots, K, D))
    run, pc, lconst, g, g64, tmeans = _pass_layout(kp, mode, X.dtype, native_spherical=True,
                                                   scatter=scatter)
    # spherical through pass_diag keeps its (K, 1, 1) shape; through the row loop (K, 1, D)
    native = kp.kind == SPHERICAL and pc.shape[2] == 1
    s2_p = np.zeros((n_slots,) + s2_shape(kp.kind if native else kind, K, D, q))
    llws_p = np.zeros((n_slots, 8))
    sw = _weights(sw)
    cut = CUT[X.dtype]
    R = None if mode == ESTEP else R  # the passes' E-step (cpu_estep.ESTEP)
    with blas_single_threaded():
        for c0 in range(0, n_chunks, n_slots):
            n_here = min(n_slots, n_chunks - c0)
            _threads.run_ranges(
                lambda j0, j1: run(X, sw, R, kp.means, pc, lconst, tmeans, g,
                                   kp.means64, g64, cut, chunk_rows, c0, j0, j1, nk_p, s1_p,
                                   s2_p, llws_p), n_here)
            for j in range(n_here):  # fixed order
                acc.nk += nk_p[j, :K]
                acc.s1 += s1_p[j]
                acc.s2 += (s2_p[j] if native or kind == kp.kind
                           else s2_p[j].sum(axis=2, keepdims=True))
                acc.ll += llws_p[j, 0]
                acc.ws += llws_p[j, 1]
    return acc.result()


def lloyd_chunk(dt, c0, xn, Xb, w, K, S, labels, mind, nk, s1):
    """The row loop of one chunk of a Lloyd pass for S sets of K centres (``cpu/kmeans.py``):
    nearest centres into ``labels``/``mind`` (S, B), the chunk's counts and sums into ``nk``
    (K S,) and ``s1`` (K S, D).  ``Xb`` (B, D) float64; ``w`` (B,) float64 or None."""
    cpu_kmeans.lloyd_chunk(dt, c0, xn, Xb, _weights(w), K, S, labels, mind, nk, s1)


def kmeanspp_step(P, mc, cn, xn, w, mind, cum):
    """The row loop of one greedy k-means++ step (``cpu/kmeans.py``): (best candidate,
    its potential); updates ``mind`` and ``cum`` in place."""
    t, pot = cpu_kmeans.kmeanspp_step(P, mc, cn, xn, w, mind, cum)
    return int(t), float(pot)


def estep_stats(X, sw, kp, chunk_rows, acc=None, scatter=True):
    """Fused E-step: returns (nk, s1, s2, ll, ws) for the model ``kp`` (see cpu_estep).

    With ``acc`` (an ``Accumulator``) the sums are added to it and its totals returned.
    ``scatter=False`` (tied only; ignored for the other kinds): s2 is left 0 instead of the
    shared second moment ``sum w (x - g)(x - g)^T`` about ``kp.g64``, which depends on the
    rows and g alone -- for a caller that has it from an earlier pass over the same rows
    (``em.e_step_stats``)."""
    return _pass(ESTEP, X, sw, None, kp, chunk_rows, acc, scatter)


def resp_stats(X, sw, R, kp, chunk_rows, acc=None):
    """Statistics for given responsibilities R (N, K), centred on ``kp.means64``/``kp.g64``."""
    R = np.ascontiguousarray(R, dtype=np.float64)
    return _pass(RESP, X, sw, R, kp, chunk_rows, acc)


GRID_EM, GRID_KDE, GRID_LOGP = cpu_expansion.EM, cpu_expansion.KDE, cpu_expansion.LOGP


def grid_window(h, sigma, cut):
    """Window half-widths (steps) beyond which a grid node's log-density is below ``cut``
    relative to the row's nearest node."""
    reach = math.sqrt(-2.0 * cut) * np.asarray(sigma) / np.asarray(h) + 0.5
    return np.ceil(reach).astype(np.int64)


#: Largest window (nodes evaluated per row, after clipping to the grid) of the CPU grid kernel.
MAX_WINDOW_CELLS = 2**22


class GridLayout(NamedTuple):
    """A tensor grid laid out for the grid kernels (CPU and GPU)."""
    shape: np.ndarray    # (D,) int64 nodes per dimension
    strides: np.ndarray  # (D,) int64 C-order strides of the node index
    lo: np.ndarray       # (D,) float64 first node
    h: np.ndarray        # (D,) float64 spacing
    inv_sig: np.ndarray  # (D,) float64 1 / sigma
    W: np.ndarray        # (D,) int64 window half-widths (grid_window at the float64 cut)
    lconst: float        # log of one component's peak density, -sum log sigma - D/2 log 2 pi
    pi: np.ndarray       # (M,) float64 node weights exp(log_pi)

    @property
    def n_nodes(self):
        return int(np.prod(self.shape))

    def window_counts(self):
        """Window positions per dimension, min(2 W + 1, shape)."""
        return np.minimum(2 * self.W + 1, self.shape)


def grid_layout(lo, h, shape, sigma, log_pi):
    """The ``GridLayout`` of a grid (``lo``, ``h``, ``shape``), bandwidth and log-weights."""
    shape = np.asarray(shape, dtype=np.int64)
    D = shape.shape[0]
    strides = np.ones(D, np.int64)
    for d in range(D - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]
    sigma = np.asarray(sigma, dtype=np.float64)
    W = grid_window(h, sigma, CUT[np.dtype(np.float64)])
    lconst = float(-np.log(sigma).sum() - 0.5 * D * math.log(2 * math.pi))
    with np.errstate(under="ignore"):
        pi = np.exp(np.asarray(log_pi, np.float64))
    return GridLayout(shape, strides, np.asarray(lo, np.float64), np.asarray(h, np.float64),
                      1.0 / sigma, W, lconst, pi)


#: Slots of the grid kernel's pass (enough for 16 threads at 4 slots each).
GRID_SLOTS = 64


def grid_stats(mode, X, sw, lo, h, shape, sigma, log_pi, chunk_rows, acc=None, logp=None):
    """One pass of the GMM-expansion kernel (``cpu_expansion``) over X (N, D).

    ``mode``: GRID_EM (weights-only EM numerators), GRID_KDE (node densities), GRID_LOGP
    (per-row log p into ``logp`` (N,)).  Adds to ``acc`` = [numerators (M,), [ll, ws]] (made
    if None) and returns it.  Slots of consecutive chunks are merged in order: the result does
    not depend on the number of threads."""
    N, D = X.shape
    g = grid_layout(lo, h, shape, sigma, log_pi)
    M = g.n_nodes
    cells = int(np.prod(g.window_counts()))
    if cells > MAX_WINDOW_CELLS:  # per-slot scratch of 16 bytes per window cell
        raise ValueError(f"the grid kernel's window of a row has {cells:,} cells (nodes per "
                         f"dimension {g.window_counts().tolist()}, D={D}), more than "
                         f"MAX_WINDOW_CELLS={MAX_WINDOW_CELLS:,}; use fewer nodes or a smaller "
                         "bandwidth")
    chunk_rows = int(chunk_rows)
    n_chunks = max(1, -(-N // chunk_rows))
    # a fixed number of slots (not a multiple of the thread count): which chunks a slot sums,
    # and so every bit of the result, must not depend on how many threads run them
    n_slots = int(min(n_chunks, max(1, SLOT_BYTES // (8 * M)), GRID_SLOTS))
    acc_p = np.zeros((n_slots, M))
    llws = np.zeros((n_slots, 8))
    if acc is None:
        acc = [np.zeros(M), np.zeros(2)]
    out = logp if logp is not None else np.empty(0)
    cpu_expansion.grid_pass(mode, X, _weights(sw), g.lo, g.h, g.shape, g.strides, g.inv_sig,
                            g.pi, g.lconst, g.W, chunk_rows, acc_p, llws, out)
    for s in range(n_slots):  # fixed order
        acc[0] += acc_p[s]
        acc[1][0] += llws[s, 0]
        acc[1][1] += llws[s, 1]
    return acc


def log_prob(X, kp, chunk_rows, want_resp=False):
    """Per-row log p(x) (N,) float64, labels (N,) int64 and responsibilities (N, K) or None."""
    N = X.shape[0]
    K = kp.means64.shape[0]
    logp = np.empty(N)
    labels = np.empty(N, dtype=np.int64)
    resp = np.empty((N if want_resp else 0, K))
    chunk_rows = int(chunk_rows)
    n_chunks = -(-N // chunk_rows)
    cut = CUT[X.dtype]
    if kp.kind in (DIAG, SPHERICAL):  # no BLAS in this kernel: no thread limit to set
        D = kp.means64.shape[1]
        MT = np.ascontiguousarray(kp.means.T)  # (D, K); spherical: its one factor repeated
        pc = kp.pc[:, 0, :] if kp.pc.shape[2] == D else np.repeat(kp.pc[:, 0, :1], D, axis=1)
        PT = np.ascontiguousarray(pc.T, dtype=kp.means.dtype)
        run = _with_scratch(cpu_estep.log_prob_diag, cpu_estep.log_prob_scratch(
            kp.kind, K, D, X.dtype))
        _threads.run_ranges(lambda c0, c1: run(
            X, MT, PT, kp.lconst, cut, chunk_rows, c0, c1, logp, labels, resp), n_chunks)
        return logp, labels, (resp if want_resp else None)
    # The full, tied and low-rank kernels call BLAS from fastmix's threads: BLAS on one thread,
    # as in a fit (without it, full scoring at 2e4 x 16, K = 16 took 150 instead of 22 ms on a
    # loaded 2-core machine).
    with blas_single_threaded():
        if kp.kind == LOWRANK:
            _threads.run_ranges(lambda c0, c1: cpu_lowrank.log_prob_lowrank(
                X, kp.means, kp.pc, kp.lconst, cut, chunk_rows, c0, c1, logp, labels, resp),
                n_chunks)
        else:
            run = cpu_estep.LOG_PROBS[kp.kind]
            pc, g, tm = kp.pc, kp.g, kp.tmeans
            if kp.kind == FULL:  # the densities exactly as the pass evaluates them
                pc, g, tm = _full_layout(kp, X.dtype)
                run = _with_scratch(run, cpu_estep.log_prob_scratch(
                    FULL, K, kp.means64.shape[1], X.dtype, n_groups=g.shape[0]))
            elif kp.kind == TIED:
                run = _with_scratch(run, cpu_estep.log_prob_scratch(
                    TIED, K, kp.means64.shape[1], X.dtype))
            _threads.run_ranges(lambda c0, c1: run(
                X, kp.means, pc, kp.lconst, tm, g, cut, chunk_rows, c0, c1, logp,
                labels, resp), n_chunks)
    return logp, labels, (resp if want_resp else None)


# ------------------------------------------------------------------ missing values (NaN) ---
def nan_chunks(X, chunk_rows):
    """(n_chunks,) uint8: 1 where chunk c of X holds a NaN."""
    chunk_rows = int(chunk_rows)
    flags = np.zeros(max(1, -(-X.shape[0] // chunk_rows)), np.uint8)
    cpu_missing.chunk_nan_flags(X, chunk_rows, flags)
    return flags


def _pattern_groups(X, chunk_rows, flags):
    """(order, gstart, cgroup) of ``cpu_missing.pass_cov_missing``: the rows of the flagged
    chunks, each chunk's grouped by missingness pattern (patterns in np.unique's order);
    group i is ``order[gstart[i]:gstart[i + 1]]``, chunk c's groups ``cgroup[c]:cgroup[c+1]``."""
    N, D = X.shape
    order = []
    gstart = [0]
    cgroup = np.zeros(flags.shape[0] + 1, np.int64)
    for c in range(flags.shape[0]):
        if flags[c]:
            a, b = c * chunk_rows, min(N, (c + 1) * chunk_rows)
            keys = np.packbits(np.isnan(X[a:b]), axis=1)
            if D <= 64:  # one integer per pattern: a 1-D unique (np.unique(axis=0) is slow)
                k8 = np.zeros((b - a, 8), np.uint8)
                k8[:, :keys.shape[1]] = keys
                keys = k8.view(np.uint64).reshape(-1)
            _, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
            order.append(a + np.argsort(inv.reshape(-1), kind="stable"))
            gstart.extend((gstart[-1] + np.cumsum(counts)).tolist())
        cgroup[c + 1] = len(gstart) - 1
    order = np.concatenate(order).astype(np.int64) if order else np.zeros(0, np.int64)
    return order, np.asarray(gstart, np.int64), cgroup


def pattern_groups(X, chunk_rows, flags=None):
    """(flags, groups): ``nan_chunks(X, chunk_rows)`` and the pattern grouping of the full and
    tied masked pass (``_pattern_groups``), for a caller that runs several E-steps over the
    same rows (``fastmix.missing.run_em`` on data in memory) to compute once and pass to
    ``estep_stats_missing``."""
    if flags is None:
        flags = nan_chunks(X, chunk_rows)
    return flags, _pattern_groups(X, int(chunk_rows), flags)


def _diag_missing_f64(arrays):
    """``pass_diag_missing_gemm``'s scratch for float64 data: its F passed again as G."""
    W, F, L, G, RB, S, T, resp, cst = arrays
    return W, F, L, F, RB, S, T, resp, cst


def _missing_args(kp, cov, logw, X, chunk_rows, flags, groups=None):
    """The masked pass of kp's kind and its leading arguments (``groups``: the pattern
    grouping of X from ``pattern_groups``, computed here if None)."""
    if kp.kind in (DIAG, SPHERICAL):
        K, D = kp.means64.shape
        _, pc, _, g, g64, _ = _pass_layout(kp, ESTEP, X.dtype)
        var = np.ascontiguousarray(np.broadcast_to(
            np.asarray(cov, np.float64).reshape(K, -1), (K, D)))
        if g64.shape[0] == D:  # a shared centre: the GEMM formulation
            spec = cpu_missing.diag_missing_scratch(K, D, X.dtype)
            fn = cpu_missing.pass_diag_missing_gemm
            if X.dtype == np.float64:  # F = [u, u*u, m] is the statistics' operand G
                run = lambda *a: fn(*a, *_diag_missing_f64(_scratch(spec)))  # noqa: E731
            else:
                run = _with_scratch(fn, spec)
            return run, (
                X, None, kp.means, pc, np.ascontiguousarray(logw, np.float64), kp.means64,
                var, g, g64)
        return cpu_missing.pass_diag_missing, (X, None, kp.means, pc, kp.lconst, kp.means64,
                                                var)
    if kp.kind in (FULL, TIED):
        order, gstart, cgroup = (_pattern_groups(X, chunk_rows, flags) if groups is None
                                 else groups)
        D = kp.means64.shape[1]
        cov = np.ascontiguousarray(cov, np.float64).reshape(-1, D, D)
        # precisions and 1/2 log det Sigma for the precision form of few-row pattern groups
        L = np.linalg.cholesky(cov)
        Li = np.linalg.inv(L)
        prec = np.ascontiguousarray(np.einsum("kpi,kpj->kij", Li, Li))
        ldcov = np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
        g64 = kp.g64 if kp.kind == TIED else np.zeros(0)
        return cpu_missing.pass_cov_missing, (X, None, kp.means64, cov, prec, ldcov,
                                               np.ascontiguousarray(logw, np.float64),
                                               kp.kind == TIED, g64, order, gstart, cgroup)
    if kp.kind == LOWRANK:  # cov: (K, D, q + 1) float64, [W_k | psi_k]
        return cpu_missing.pass_lowrank_missing, (X, None, kp.means64,
                                                   np.ascontiguousarray(cov, np.float64),
                                                   np.ascontiguousarray(logw, np.float64))
    raise ValueError(f"missing values are not supported for the kernel kind {kp.kind}")


def estep_stats_missing(X, sw, kp, cov, logw, chunk_rows, acc=None, flags=None, groups=None):
    """Fused E-step of rows with missing entries (NaN, marginalised): (nk, s1, s2, ll, ws)
    of the expected sufficient statistics (``cpu_missing``), in the layout of ``estep_stats``.

    ``cov``: the model's float64 covariances in scikit-learn's layout (full (K, D, D), tied
    (D, D), diag (K, D), spherical (K,)); ``logw`` (K,) float64 log-weights.  Chunks without
    NaN run the ordinary pass (``flags``: ``nan_chunks(X, chunk_rows)`` if known; ``groups``:
    the full/tied pattern grouping, ``pattern_groups``, if known); a block without NaN is
    exactly ``estep_stats``."""
    chunk_rows = int(chunk_rows)
    if flags is None:
        flags = nan_chunks(X, chunk_rows)
    if not flags.any():
        return estep_stats(X, sw, kp, chunk_rows, acc)
    K, D = kp.means64.shape
    q = n_factors(kp)
    kind = DIAG if kp.kind == SPHERICAL else kp.kind
    if acc is None:
        acc = Accumulator(kp.kind, K, D, q)
    n_chunks = flags.shape[0]
    n_slots = min(n_chunks, _n_slots(kind, K, D, q))
    nk_p = np.zeros((n_slots, K + 8))
    s1_p = np.zeros((n_slots, K, D))
    s2_p = np.zeros((n_slots,) + s2_shape(kind, K, D, q))
    llws_p = np.zeros((n_slots, 8))
    # the chunks without NaN run exactly as in ``estep_stats`` (spherical: its (K, 1, 1)
    # layout when pass_diag runs, with second moments in their own slots)
    run, pc, lconst, g, g64, tmeans = _pass_layout(kp, ESTEP, X.dtype, native_spherical=True)
    native = kp.kind == SPHERICAL and pc.shape[2] == 1
    s2_q = np.zeros((n_slots,) + s2_shape(SPHERICAL, K, D)) if native else s2_p
    masked, margs = _missing_args(kp, cov, logw, X, chunk_rows, flags, groups)
    sw = _weights(sw)
    margs = (margs[0], sw) + margs[2:]
    cut = CUT[X.dtype]
    none_f, none_i, none_r = np.empty(0), np.empty(0, np.int64), np.empty((0, K))
    none_m = np.empty((2, 0, D))

    def ranges(c0, j0, j1):
        j = j0
        while j < j1:  # maximal runs of chunks with (masked pass) and without NaN
            e = j + 1
            while e < j1 and flags[c0 + e] == flags[c0 + j]:
                e += 1
            if flags[c0 + j]:
                masked(*margs, cut, chunk_rows, c0, j, e, nk_p, s1_p, s2_p, llws_p,
                       none_f, none_i, none_r, none_m)
            else:
                run(X, sw, None, kp.means, pc, lconst, tmeans, g, kp.means64, g64,
                    cut, chunk_rows, c0, j, e, nk_p, s1_p, s2_q, llws_p)
            j = e

    with blas_single_threaded():
        for c0 in range(0, n_chunks, n_slots):
            n_here = min(n_slots, n_chunks - c0)
            _threads.run_ranges(lambda j0, j1: ranges(c0, j0, j1), n_here)
            for j in range(n_here):  # fixed order
                acc.nk += nk_p[j, :K]
                acc.s1 += s1_p[j]
                if native and not flags[c0 + j]:
                    acc.s2 += s2_q[j]
                else:
                    acc.s2 += (s2_p[j] if kind == kp.kind
                               else s2_p[j].sum(axis=2, keepdims=True))
                acc.ll += llws_p[j, 0]
                acc.ws += llws_p[j, 1]
    return acc.result()


def _masked_rows(Xm, kp, cov, logw, chunk_rows, want_resp, want_imp):
    """Per-row outputs of the masked passes over the rows Xm (every chunk masked): log p(x_o)
    (n,), labels (n,), responsibilities (n, K) or None, moments (2, n, D) or None."""
    K, D = kp.means64.shape
    chunk_rows = int(chunk_rows)
    n = Xm.shape[0]
    flags = np.ones(max(1, -(-n // chunk_rows)), np.uint8)
    masked, margs = _missing_args(kp, cov, logw, Xm, chunk_rows, flags)
    margs = (margs[0], _weights(None)) + margs[2:]
    n_chunks = flags.shape[0]
    kind = DIAG if kp.kind == SPHERICAL else kp.kind
    lp = np.empty(n)
    lab = np.empty(n, np.int64)
    rs = np.empty((n if want_resp else 0, K))
    imp = np.empty((2, n if want_imp else 0, D))
    q = n_factors(kp)
    n_slots = min(n_chunks, _n_slots(kind, K, D, q))
    nk_p = np.zeros((n_slots, K + 8))
    s1_p = np.zeros((n_slots, K, D))
    s2_p = np.zeros((n_slots,) + s2_shape(kind, K, D, q))
    llws_p = np.zeros((n_slots, 8))
    with blas_single_threaded():
        for c0 in range(0, n_chunks, n_slots):
            n_here = min(n_slots, n_chunks - c0)
            _threads.run_ranges(lambda j0, j1: masked(
                *margs, CUT[Xm.dtype], chunk_rows, c0, j0, j1, nk_p, s1_p, s2_p, llws_p, lp,
                lab, rs, imp), n_here)
    return lp, lab, (rs if want_resp else None), (imp if want_imp else None)


def log_prob_missing(X, kp, cov, logw, chunk_rows, want_resp=False):
    """``log_prob`` of rows with missing entries: log p(x_o) of the observed coordinates,
    labels and responsibilities.  Rows without NaN get exactly ``log_prob``'s values."""
    logp, labels, resp = log_prob(X, kp, chunk_rows, want_resp)
    rows = np.flatnonzero(np.isnan(X).any(axis=1))
    if rows.size == 0:
        return logp, labels, resp
    lp, lab, rs, _ = _masked_rows(np.ascontiguousarray(X[rows]), kp, cov, logw, chunk_rows,
                                  want_resp, False)
    logp[rows] = lp
    labels[rows] = lab
    if want_resp:
        resp[rows] = rs
    return logp, labels, resp


def impute_moments(X, kp, cov, logw, chunk_rows):
    """Conditional first and second moments (2, N, D) float64 of every entry of X given its
    row's observed entries under the mixture (observed entries: x and x^2), by the masked
    passes.  A row with nothing observed gets the mixture's moments."""
    return _masked_rows(np.ascontiguousarray(X), kp, cov, logw, chunk_rows, False, True)[3]

__all__ = ["Accumulator", "run_ranges", "num_threads", "thread_limit", "blas_single_threaded", "KernelParams", "KIND_CODES", "FULL", "TIED", "DIAG",
           "SPHERICAL", "LOWRANK", "n_factors", "estep_stats", "resp_stats", "log_prob", "nearest_params",
           "s2_shape", "grid_stats", "grid_window", "grid_layout", "GridLayout", "GRID_EM", "GRID_KDE", "GRID_LOGP",
           "nan_chunks", "estep_stats_missing", "log_prob_missing", "impute_moments",
           "pattern_groups"]


# ------------- missing values: each missingness pattern factorised once per E-step (issue 21) ---
#: Memory budget (bytes) of one E-step's table of pattern factors (``PatternTable``).  Full /
#: tied: three (D, D) float64 matrices per pattern and covariance -- 48 KiB per pattern at
#: K = D = 16, so the default holds about 1300 patterns there; lowrank: two (q, q) matrices and
#: a log-determinant per pattern and component -- 4.1 KiB at K = 16, q = 4, about 16000
#: patterns.  Patterns beyond it are factorised where they occur (per chunk for full/tied,
#: per row for lowrank), with the same arithmetic.
PATTERN_TABLE_BYTES = 64 * 2**20


class PatternTable:
    """One E-step's factors of the missingness patterns, filled as blocks of rows bring new
    patterns and kept across the blocks of that E-step: each pattern is factorised once per
    E-step instead of once per chunk (full/tied: ``cpu_missing.pattern_factor_table``) or once
    per row (lowrank: ``cpu_missing.lowrank_pattern_table``) it appears in.

    ``cov``: float64 covariances (K, D, D) (tied: (1, D, D)), or with ``lowrank`` the packed
    ``[W_k | psi_k]`` (K, D, q + 1).  ``arrays``: the factor arrays, one row per pattern."""

    def __init__(self, cov, budget=None, lowrank=False):
        self.cov = np.ascontiguousarray(cov, np.float64)
        self.lowrank = lowrank
        Kc, D = self.cov.shape[0], self.cov.shape[1]
        if lowrank:
            q = self.cov.shape[2] - 1
            shapes = ((Kc, q, q), (Kc, q, q), (Kc,))
        else:
            shapes = ((Kc * D * D,), (Kc, D, D), (Kc, D, D), (Kc,))
        per = 8 * sum(math.prod(sh) for sh in shapes)
        budget = PATTERN_TABLE_BYTES if budget is None else budget
        self.capacity = int(budget // per)
        self.index = {}
        self.size = 0
        self.arrays = tuple(np.zeros((0,) + sh) for sh in shapes)

    def rows(self, pats):
        """Table rows of the patterns ``pats`` (n, D) bool (True = missing), factorising the new
        ones; -1 for a pattern that does not fit the budget."""
        keys = [p.tobytes() for p in np.packbits(pats, axis=1)]
        first = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        room = max(0, self.capacity - self.size)
        new_keys = [k for k in first if k not in self.index][:room]
        if new_keys:
            sel = np.asarray([first[k] for k in new_keys], np.int64)
            new = tuple(np.zeros((len(new_keys),) + a.shape[1:]) for a in self.arrays)
            fn = (cpu_missing.lowrank_pattern_table if self.lowrank
                  else cpu_missing.pattern_factor_table)
            fn(self.cov, np.ascontiguousarray(pats[sel], np.uint8), *new)
            self.arrays = tuple(np.concatenate([a, b]) for a, b in zip(self.arrays, new))
            for k in new_keys:
                self.index[k] = self.size
                self.size += 1
        return np.asarray([self.index.get(k, -1) for k in keys], np.int64)


def row_patterns(X):
    """(inverse (N,) int64, patterns (P, D) bool): each row's missingness pattern as an index
    into the distinct patterns of X (True = missing), the most frequent first."""
    nan = np.isnan(X)
    keys = np.packbits(nan, axis=1)
    if X.shape[1] <= 64:  # one integer per pattern: a 1-D unique (np.unique(axis=0) is slow)
        k8 = np.zeros((X.shape[0], 8), np.uint8)
        k8[:, :keys.shape[1]] = keys
        keys = k8.view(np.uint64).reshape(-1)
    _, first, inv, counts = np.unique(keys, axis=0, return_index=True, return_inverse=True,
                                      return_counts=True)
    order = np.argsort(-counts, kind="stable")  # the most frequent first (a table over its
    rank = np.empty_like(order)                 # budget then holds the most rows)
    rank[order] = np.arange(order.size)
    return rank[inv.reshape(-1)].astype(np.int64), nan[first[order]]


def _masked_slots(X, sw, kp, chunk_rows, acc, flags, masked):
    """Run ``masked(c0, j0, j1, nk_p, s1_p, s2_p, llws_p)`` on the chunks with NaN and the
    ordinary pass on the others, on the fixed chunk slots of ``estep_stats_missing``, and add
    the slots to ``acc`` in chunk order (full, tied, lowrank)."""
    K, D = kp.means64.shape
    q = n_factors(kp)
    if acc is None:
        acc = Accumulator(kp.kind, K, D, q)
    n_chunks = flags.shape[0]
    n_slots = min(n_chunks, _n_slots(kp.kind, K, D, q))
    nk_p = np.zeros((n_slots, K + 8))
    s1_p = np.zeros((n_slots, K, D))
    s2_p = np.zeros((n_slots,) + s2_shape(kp.kind, K, D, q))
    llws_p = np.zeros((n_slots, 8))
    run, pc, lconst, g, g64, tmeans = _pass_layout(kp, ESTEP, X.dtype)
    cut = CUT[X.dtype]

    def ranges(c0, j0, j1):
        j = j0
        while j < j1:  # maximal runs of chunks with (masked pass) and without NaN
            e = j + 1
            while e < j1 and flags[c0 + e] == flags[c0 + j]:
                e += 1
            if flags[c0 + j]:
                masked(cut, c0, j, e, nk_p, s1_p, s2_p, llws_p)
            else:
                run(X, sw, None, kp.means, pc, lconst, tmeans, g, kp.means64, g64,
                    cut, chunk_rows, c0, j, e, nk_p, s1_p, s2_p, llws_p)
            j = e

    with blas_single_threaded():
        for c0 in range(0, n_chunks, n_slots):
            n_here = min(n_slots, n_chunks - c0)
            _threads.run_ranges(lambda j0, j1: ranges(c0, j0, j1), n_here)
            for j in range(n_here):  # fixed order
                acc.nk += nk_p[j, :K]
                acc.s1 += s1_p[j]
                acc.s2 += s2_p[j]
                acc.ll += llws_p[j, 0]
                acc.ws += llws_p[j, 1]
    return acc.result()


def estep_stats_missing_cov(X, sw, kp, cov, logw, chunk_rows, acc=None, flags=None, groups=None,
                            table=None):
    """``estep_stats_missing`` for full and tied models, with each missingness pattern
    factorised once per E-step: ``table`` (a ``PatternTable`` of ``cov``, shared by the blocks
    of one E-step; a new one if None).  Pattern groups of at least
    ``cpu_missing.COV_GEMM_MIN_ROWS`` rows in their chunk run in GEMM blocks about the model's
    shared centre (``cpu_missing.pass_cov_missing_tab``), when it has one; the others exactly
    as in ``estep_stats_missing``.  A group's arithmetic depends only on its rows and the model
    (not on the table), so a file read in blocks of whole chunks still gives the in-memory
    statistics bit for bit, and 1 and 2 threads agree bit for bit."""
    if kp.kind not in (FULL, TIED):
        return estep_stats_missing(X, sw, kp, cov, logw, chunk_rows, acc, flags, groups)
    chunk_rows = int(chunk_rows)
    if flags is None:
        flags = nan_chunks(X, chunk_rows)
    if not flags.any():
        return estep_stats(X, sw, kp, chunk_rows, acc)
    if groups is None:
        groups = _pattern_groups(X, chunk_rows, flags)
    D = kp.means64.shape[1]
    _, margs = _missing_args(kp, cov, logw, X, chunk_rows, flags, groups)
    order, gstart, cgroup = groups
    # the shared centre of the complete passes; for tied (which always has one) only when
    # every mean is within a squared Mahalanobis distance SHARED_MAX of it, as for full, so
    # that re-centring the group sums loses at most log10(SHARED_MAX) digits
    c64 = np.ascontiguousarray(kp.g64, np.float64)
    if kp.kind == TIED and not np.max(np.square(kp.tmeans, dtype=np.float64).sum(axis=1)) < \
            SHARED_MAX[np.dtype(np.float64)]:
        c64 = np.zeros(0)
    gtab = np.full(gstart.shape[0] - 1, -2, np.int64)
    if table is None:
        table = PatternTable(margs[3])
    if c64.shape[0] == D and gtab.size:
        big = np.flatnonzero(np.diff(gstart) >= cpu_missing.COV_GEMM_MIN_ROWS)
        if big.size:
            gtab[big] = table.rows(np.isnan(X[order[gstart[big]]]))
    sw = _weights(sw)
    args = (X, sw) + margs[2:9] + (c64, order, gstart, cgroup, gtab) + table.arrays
    return _masked_slots(X, sw, kp, chunk_rows, acc, flags, lambda cut, c0, j0, j1, *slots:
                         cpu_missing.pass_cov_missing_tab(*args, cut, chunk_rows, c0, j0, j1,
                                                          *slots))


def estep_stats_missing_lowrank(X, sw, kp, WP, logw, chunk_rows, acc=None, flags=None,
                                patterns=None, table=None):
    """``estep_stats_missing`` for lowrank models with each pattern's q x q factors computed
    once per E-step (``cpu_missing.pass_lowrank_missing_tab``).  ``WP`` (K, D, q + 1) float64
    ``[W_k | psi_k]``; ``patterns``: ``row_patterns(X)`` if known; ``table``: a ``PatternTable``
    of WP with ``lowrank=True``, shared by the blocks of one E-step (a new one if None).  A row's
    arithmetic does not depend on the table, so a file read in blocks of whole chunks gives the
    in-memory statistics bit for bit, and 1 and 2 threads agree bit for bit."""
    chunk_rows = int(chunk_rows)
    if flags is None:
        flags = nan_chunks(X, chunk_rows)
    if not flags.any():
        return estep_stats(X, sw, kp, chunk_rows, acc)
    WP = np.ascontiguousarray(WP, np.float64)
    inv, pats = row_patterns(X) if patterns is None else patterns
    if table is None:
        table = PatternTable(WP, lowrank=True)
    pid = table.rows(pats)[inv]
    sw = _weights(sw)
    args = (X, sw, kp.means64, WP, np.ascontiguousarray(logw, np.float64), pid) + table.arrays
    return _masked_slots(X, sw, kp, chunk_rows, acc, flags, lambda cut, c0, j0, j1, *slots:
                         cpu_missing.pass_lowrank_missing_tab(*args, cut, chunk_rows, c0, j0, j1,
                                                              *slots))
