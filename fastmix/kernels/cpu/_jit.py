"""Numba configuration shared by every CPU kernel.

One switch controls on-disk caching (``FASTMIX_NUMBA_CACHE=0`` turns it off), and one set of
fast-math flags is used everywhere: FMA contraction and no signed zeros only.  Deliberately *not*
``nnan``/``ninf`` (log-space code relies on ``-inf``) and *not* ``reassoc``: with re-association
LLVM versions a loop into a vector and a scalar variant chosen at run time by a pointer-alias
check, and the two round differently -- results then depended on where malloc put the scratch
arrays, i.e. were not reproducible between runs or thread counts (found by
tests/test_determinism.py).
"""
import os

from numba import njit

CACHE = os.environ.get("FASTMIX_NUMBA_CACHE", "1") != "0"
FASTMATH = frozenset({"contract", "nsz"})

# Only explicit ``prange`` loops run in parallel.  Letting Numba turn every array expression and
# ``np.zeros`` into its own parallel region tripled the compile time of the E-step kernel
# (7.2 s -> measured below 3 s cold) for no run-time gain: the allocations are tiny.
PRANGE_ONLY = {"comprehension": False, "prange": True, "setitem": False, "reduction": False,
               "numpy": False, "stencil": False, "fusion": False}


def _light_cache_class():
    """A ``FunctionCache`` whose loads skip Numba's full context refresh, or None.

    Numba's ``Cache.load_overload`` first refreshes the whole target context: it imports every
    implementation module of Numba (NumPy, typed containers, random, datetime ...) and installs
    their typing and lowering registries -- 0.15-0.25 s, paid by the first cached kernel of
    every new process, although rebuilding compiled code needs none of it: only the LLVM
    codegen and C helpers (set up with the context), the runtime (NRT) the code calls into, and
    the modules its environments name (imported by unpickling).  Compiling, when it happens,
    still refreshes (Numba's compiler does so itself).  Measured: a cached default fit of iris
    in a new process 0.26-0.36 s -> 0.09-0.15 s.  Built only if the private methods it relies
    on exist (Numba >= 0.59 has them); otherwise kernels keep Numba's own cache."""
    try:
        from numba.core.caching import FunctionCache
        from numba.core.runtime import rtsys
    except ImportError:  # pragma: no cover - a Numba without these modules
        return None
    if not (hasattr(FunctionCache, "_load_overload")
            and hasattr(FunctionCache, "_guard_against_spurious_io_errors")):
        return None  # pragma: no cover

    class KernelCache(FunctionCache):
        def load_overload(self, sig, target_context):
            rtsys.initialize(target_context)  # what the refresh did that a load needs
            with self._guard_against_spurious_io_errors():
                return self._load_overload(sig, target_context)
            return None  # pragma: no cover - the guard swallowed an I/O error

    return KernelCache


_KERNEL_CACHE = _light_cache_class() if CACHE else None


def _lean_compiler_class():
    """A Numba compiler (``pipeline_class``) whose code libraries skip the function-level
    optimisation, or None.

    Numba optimises each function twice: at -O3 on its own when its LLVM module is added to
    the code library (``_optimize_functions``, "to reduce memory usage and improve module-level
    optimization"), then the linked module again at -O3 when the library is finalised.  With
    the second pass alone fastmix's kernels give the same results (default fits of every
    covariance type and dtype: equal lower bounds and scores to 12 digits; run time within
    noise), and the first pass is 7-8 % of a kernel's compile: a cold E-step compile, import
    included, full float64 27.07e9 -> 25.37e9 instructions, diag 20.05e9 -> 19.07e9 (the
    import alone 6.3e9; callgrind, ``bench/compile_cost.py``, paired in one run).  Only
    fastmix's kernels get these libraries; Numba's own functions and the user's code keep
    Numba's compiler.  Cache loads do not compile, so they are unaffected.  Built only if the
    private method it overrides exists (Numba 0.68 has it); otherwise Numba's compiler."""
    try:
        from numba.core.compiler import Compiler
    except ImportError:  # pragma: no cover - a Numba without this module
        return None
    lean = {}

    def lean_library(base):
        if base not in lean:
            lean[base] = None
            if callable(getattr(base, "_optimize_functions", None)):
                def _optimize_functions(self, ll_module):
                    pass  # the module-level -O3 pass of finalisation optimises every function
                lean[base] = type("Lean" + base.__name__, (base,),
                                  {"_optimize_functions": _optimize_functions})
        return lean[base]

    class KernelCompiler(Compiler):
        def compile_extra(self, func):
            if self.state.library is None:  # what Numba's lowering would create, leaner
                codegen = self.state.targetctx.codegen()
                cls = lean_library(getattr(type(codegen), "_library_class", None))
                if cls is not None:
                    self.state.library = cls(codegen, func.__qualname__)
                    self.state.library.enable_object_caching()
            return super().compile_extra(func)

    return KernelCompiler


_KERNEL_COMPILER = _lean_compiler_class()


def kernel(parallel=False, fastmath=FASTMATH, inline="never", error_model="python"):
    """Decorator for a fastmix kernel: nopython, nogil, cached, with fastmix's fast-math flags.

    ``error_model="numpy"`` drops Numba's division-by-zero check (x / 0 gives inf or nan, as
    in NumPy); only for kernels whose divisors are positive by construction -- the check is a
    branch per division and keeps LLVM from vectorising the loop around it.  Cached kernels
    load through ``_KERNEL_CACHE`` (see ``_light_cache_class``)."""
    # no_cfunc_wrapper: Numba otherwise lowers and optimises a C-callable wrapper beside the
    # Python one for every kernel, used only when a function is passed as a first-class
    # function value (fastmix never does); without it a cold default diag fit plus predict
    # (20 000 x 16, K = 16) executed 27.19e9 -> 26.71e9 instructions (callgrind), the E-step
    # pass's compile alone full 27.32e9 -> 27.11e9, diag 20.29e9 -> 20.05e9
    # (bench/compile_cost.py).  pipeline_class: see _lean_compiler_class
    jit = njit(cache=CACHE, nogil=True, parallel=PRANGE_ONLY if parallel else False,
               fastmath=set(fastmath) if fastmath else False, inline=inline,
               error_model=error_model, no_cfunc_wrapper=True, pipeline_class=_KERNEL_COMPILER)
    if _KERNEL_CACHE is None:
        return jit

    def decorate(fn):
        disp = jit(fn)
        if getattr(disp, "_cache", None) is not None:  # not under NUMBA_DISABLE_JIT=1
            disp._cache = _KERNEL_CACHE(disp.py_func)  # loads without the full refresh
        return disp

    return decorate
