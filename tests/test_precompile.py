"""``fastmix.precompile`` / ``fastmix compile``: kernels compiled ahead of time are loaded, not
compiled, by a later process."""
import json
import os
import subprocess
import sys

import pytest

import fastmix
from fastmix.kernels.cpu import _jit

# Default fits of diag float64 data unlike the precompile workload (other N, D, K, spreads from
# overlapping to 10^5 apart, weights), predict / score / predict_proba; prints the kernels this
# process compiled and loaded.
LATER = r"""
import json, warnings
import numpy as np
import fastmix
from fastmix import kernels
warnings.simplefilter("ignore")
rng = np.random.default_rng(7)
for spread in (0.5, 5.0, 1e5):
    C = rng.normal(size=(6, 9)) * spread
    X = C[rng.integers(6, size=3000)] + rng.standard_normal((3000, 9))
    gm = fastmix.GaussianMixture(6, covariance_type="diag", random_state=1).fit(
        X, sample_weight=rng.random(3000))
    gm.predict(X); gm.score(X); gm.predict_proba(X[:5])
print(json.dumps(kernels.compile_counts()))
"""


@pytest.mark.skipif(not _jit.CACHE, reason="FASTMIX_NUMBA_CACHE=0: nothing is cached")
def test_a_later_process_compiles_nothing(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-m", "fastmix", "compile", "--covariance-types",
                          "diag", "--dtypes", "float64", "-j", "1"],
                         capture_output=True, text=True, env=env, check=True)
    assert "diag: " in out.stdout and str(tmp_path / "cache") in out.stderr
    later = subprocess.run([sys.executable, "-c", LATER], capture_output=True, text=True,
                           env=env, check=True)
    compiled, loaded = json.loads(later.stdout.strip().splitlines()[-1])
    assert compiled == 0 and loaded >= 5  # k-means loops, both diag passes, scoring


@pytest.mark.parametrize("kwargs, match", [
    ({"covariance_types": "banana"}, "covariance_types must be among"),
    ({"covariance_types": []}, "covariance_types must be among"),
    ({"dtypes": "float16"}, "dtypes must be among"),
    ({"n_jobs": 0}, "n_jobs must be a positive integer"),
    ({"n_jobs": 1.5}, "n_jobs must be a positive integer"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fastmix.precompile(**kwargs)


def test_refuses_when_caching_is_off(monkeypatch):
    monkeypatch.setattr(_jit, "CACHE", False)
    with pytest.raises(ValueError, match="FASTMIX_NUMBA_CACHE=0"):
        fastmix.precompile("diag", "float64", n_jobs=1)


def test_command_line_errors_are_one_line(capsys):
    from fastmix.cli import main
    assert main(["compile", "--dtypes", "float16", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastmix: error: dtypes must be among") and "\n" not in err


def test_refuses_without_a_cache_location(monkeypatch):
    # NUMBA_DISABLE_JIT=1: the kernels are plain functions, with no cache to fill
    monkeypatch.setattr(fastmix.kernels, "cache_dir", lambda: None)
    with pytest.raises(ValueError, match="NUMBA_DISABLE_JIT=1"):
        fastmix.precompile("diag", "float64", n_jobs=1)
