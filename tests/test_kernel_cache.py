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
