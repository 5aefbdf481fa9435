"""Kernels loaded from Numba's on-disk cache in a new process (``kernels/cpu/_jit.py``)."""
import json
import os
import subprocess
import sys

import pytest

from fastmix.kernels.cpu import _jit

# A default fit in a fresh interpreter; reports its result, whether Numba imported the
# implementation modules of its full context refresh (numba.np.npdatetime is one of them and
# nothing else in a fit imports it) and the kernels' cache hits and misses.
CHILD = r"""
import json, sys
import numpy as np
import fastmix
from fastmix import kernels
X = np.random.default_rng(0).normal(size=(300, 3))
gm = fastmix.GaussianMixture(2, covariance_type="diag", random_state=0).fit(X)
misses, hits = kernels.compile_counts()
print(json.dumps({
    "lower_bound": float(gm.lower_bound_).hex(),
    "refreshed": "numba.np.npdatetime" in sys.modules,
    "hits": hits,
    "misses": misses,
}))
"""


def _child():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         check=True, env={**os.environ, "NUMBA_NUM_THREADS": "2"})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _jit.CACHE, reason="FASTMIX_NUMBA_CACHE=0: nothing is cached")
def test_cached_kernels_load_without_numbas_full_refresh():
    first = _child()  # compiles what the cache lacks (or loads it all)
    second = _child()
    assert second["misses"] == 0 and second["hits"] >= 3  # k-means loops and the E-step pass
    assert not second["refreshed"]
    assert second["lower_bound"] == first["lower_bound"]


def test_every_kernel_is_compiled_without_a_cfunc_wrapper():
    # the C-callable wrapper Numba builds by default serves only first-class function values,
    # which fastmix never passes: compiling it cost ~2 % of a cold fit (kernels/cpu/_jit.py)
    from fastmix import kernels
    disps = kernels._dispatchers()
    assert len(disps) > 20
    assert all(d.targetoptions.get("no_cfunc_wrapper") is True for d in disps)


def test_every_kernel_compiles_through_the_lean_compiler():
    # kernels/cpu/_jit.py: fastmix's kernels skip Numba's function-level -O3 pass (~9 % of a
    # kernel's compile); Numba's own functions and the user's keep the default compiler
    from fastmix import kernels
    assert _jit._KERNEL_COMPILER is not None
    disps = kernels._dispatchers()
    assert len(disps) > 20
    assert all(d._compiler.pipeline_class is _jit._KERNEL_COMPILER for d in disps)


def test_lean_compiler_gives_numbas_results_without_the_function_passes():
    import numba
    import numpy as np

    from fastmix.kernels.cpu import kmeans
    opts = dict(nogil=True, fastmath=set(_jit.FASTMATH), error_model="numpy")
    default = numba.njit(**opts)(kmeans.lloyd_chunk.py_func)
    lean = numba.njit(pipeline_class=_jit._KERNEL_COMPILER, **opts)(kmeans.lloyd_chunk.py_func)
    rng = np.random.default_rng(3)
    K, S, B, D = 5, 2, 300, 7
    Xb = rng.normal(size=(B, D))
    C = rng.normal(size=(K * S, D))
    m = Xb.mean(axis=0)
    dt = -2.0 * (C - m) @ Xb.T
    c0 = ((C - m) ** 2).sum(axis=1) + 2.0 * (C - m) @ m
    xn = ((Xb - m) ** 2).sum(axis=1)
    w = rng.uniform(0.5, 2.0, size=B)
    outs = []
    for fn in (default, lean):
        labels, mind = np.empty((S, B), np.int64), np.empty((S, B))
        nk, s1 = np.empty(K * S), np.empty((K * S, D))
        fn(dt, c0, xn, Xb, w, K, S, labels, mind, nk, s1)
        outs.append((labels, mind, nk, s1))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    lib = lean.overloads[lean.signatures[0]].library
    base = type(default.overloads[default.signatures[0]].library)
    assert isinstance(lib, base) and type(lib) is not base
    assert type(lib)._optimize_functions is not base._optimize_functions
