"""scikit-learn's own GaussianMixture tests, run against fastmix.

At test time, ``sklearn/mixture/tests/test_gaussian_mixture.py`` and ``test_mixture.py`` of the
installed scikit-learn are copied to a temporary directory with their ``GaussianMixture`` import
pointed at ``fastmix.GaussianMixture`` (nothing else in them changes) and run by pytest in a
subprocess, with scikit-learn's conftest as a plugin (its ``global_dtype`` and
``global_random_seed`` fixtures).  Every collected test must pass except those in
NOT_APPLICABLE below, each with its reason.

The run sets ``SKLEARN_RUN_FLOAT32_TESTS=1``: every ``global_dtype`` test then runs in float64
*and* float32 (scikit-learn's way of covering both; without the variable the float32 cases are
skipped), and the test checks that both dtypes actually ran.
"""
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sklearn = pytest.importorskip("sklearn")

REPO = Path(__file__).resolve().parents[1]
SUITE = Path(sklearn.__file__).parent / "mixture" / "tests"

# The import lines rewritten in the copies (file -> (scikit-learn's line, the copy's line)).
IMPORTS = {
    "test_gaussian_mixture.py": (
        "from sklearn.mixture import GaussianMixture\n",
        "from fastmix import GaussianMixture\n"),
    "test_mixture.py": (
        "from sklearn.mixture import BayesianGaussianMixture, GaussianMixture\n",
        "from sklearn.mixture import BayesianGaussianMixture\n"
        "from fastmix import GaussianMixture\n"),
}

# Tests that cannot apply to fastmix, by node id ("file::test" covers all its parameters,
# "file::test[params]" one case).  Everything else must pass.
NOT_APPLICABLE = {
    # -- they test scikit-learn's private helpers and never construct a GaussianMixture --------
    "test_gaussian_mixture.py::test_suffstat_sk_full":
        "tests sklearn's _estimate_gaussian_covariances_full, not the estimator",
    "test_gaussian_mixture.py::test_suffstat_sk_tied":
        "tests sklearn's _estimate_gaussian_covariances_tied, not the estimator",
    "test_gaussian_mixture.py::test_suffstat_sk_diag":
        "tests sklearn's _estimate_gaussian_covariances_diag, not the estimator",
    "test_gaussian_mixture.py::test_gaussian_suffstat_sk_spherical":
        "tests sklearn's _estimate_gaussian_covariances_spherical, not the estimator",
    "test_gaussian_mixture.py::test_compute_log_det_cholesky":
        "tests sklearn's _compute_log_det_cholesky, not the estimator",
    "test_gaussian_mixture.py::test_gaussian_mixture_log_probabilities":
        "tests sklearn's _estimate_log_gaussian_prob, not the estimator",
    # -- they call scikit-learn's private methods on the estimator ---------------------------
    "test_gaussian_mixture.py::test_gaussian_mixture_precisions_init":
        "calls GaussianMixture._set_parameters and ._initialize (sklearn internals)",
    "test_gaussian_mixture.py::"
    "test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters":
        "counts calls of sklearn.mixture._gaussian_mixture._estimate_gaussian_parameters (mock)",
    # -- array API inputs (torch, cupy, array_api_strict ...); skipped anyway without them -----
    "test_gaussian_mixture.py::test_gaussian_mixture_array_api_compliance":
        "array API namespaces: fastmix computes on NumPy arrays (and CUDA arrays) only",
    "test_gaussian_mixture.py::test_gaussian_mixture_raises_where_array_api_not_implemented":
        "array API namespaces: fastmix computes on NumPy arrays (and CUDA arrays) only",
    # -- a documented difference -------------------------------------------------------------
    "test_gaussian_mixture.py::test_regularisation":
        "reg_covar=0 on collapsing data: sklearn raises 'ill-defined empirical covariance'; "
        "fastmix regularises the component, warns (DegenerateComponentWarning) and goes on, "
        "by design (GaussianMixture's Notes); pinned by test_api.py::"
        "test_reg_covar_zero_on_collapsing_data_warns_and_recovers",
    # -- scikit-learn's BayesianGaussianMixture, which the copy keeps (fastmix has none) -------
    "test_mixture.py::test_gaussian_mixture_n_iter[estimator1]":
        "the BayesianGaussianMixture case: scikit-learn's own estimator",
    "test_mixture.py::test_mixture_n_components_greater_than_n_samples_error[estimator1]":
        "the BayesianGaussianMixture case: scikit-learn's own estimator",
}

# Written next to the copies: drops NOT_APPLICABLE items and records which entries matched.
PLUGIN = textwrap.dedent('''
    import json
    NOT_APPLICABLE = {names!r}

    def pytest_collection_modifyitems(config, items):
        keep, drop, hit = [], [], set()
        for item in items:
            key = item.nodeid if item.nodeid in NOT_APPLICABLE else item.nodeid.split("[")[0]
            if key in NOT_APPLICABLE:
                drop.append(item)
                hit.add(key)
            else:
                keep.append(item)
        items[:] = keep
        config.hook.pytest_deselected(items=drop)
        with open("not_applicable_matched.json", "w") as fh:
            json.dump(sorted(hit), fh)
''')


def _copy_suite(tmp):
    for name, (old, new) in IMPORTS.items():
        src = (SUITE / name).read_text()
        assert src.count(old) == 1, f"{name}: the GaussianMixture import line changed: {old!r}"
        copy = src.replace(old, new)
        assert not re.search(r"^from sklearn\.mixture import .*\bGaussianMixture\b", copy,
                             re.M), f"{name}: another import of sklearn's GaussianMixture"
        (tmp / name).write_text(copy)
    (tmp / "conftest.py").write_text(PLUGIN.format(names=sorted(NOT_APPLICABLE)))


@pytest.mark.skipif(not (SUITE / "test_gaussian_mixture.py").exists(),
                    reason="this scikit-learn install does not ship its tests")
def test_sklearn_gaussian_mixture_suite_passes_on_fastmix(tmp_path):
    _copy_suite(tmp_path)
    env = dict(os.environ, SKLEARN_RUN_FLOAT32_TESTS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("SKLEARN_TESTS_GLOBAL_RANDOM_SEED", None)  # scikit-learn's default seed (42)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "sklearn.conftest", "-p",
         "no:cacheprovider", "--rootdir", str(tmp_path), "-c", os.devnull,
         "--junitxml", "junit.xml", "-W", "ignore::DeprecationWarning",
         "test_gaussian_mixture.py", "test_mixture.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    tail = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert (tmp_path / "junit.xml").exists(), tail

    # the copies really use fastmix
    assert "fastmix" in (tmp_path / "test_gaussian_mixture.py").read_text()
    # every NOT_APPLICABLE entry names a test that exists (the list cannot go stale silently)
    import json
    matched = set(json.loads((tmp_path / "not_applicable_matched.json").read_text()))
    assert matched == set(NOT_APPLICABLE), sorted(set(NOT_APPLICABLE) - matched)

    cases = ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    passed, failed, skipped = [], [], []
    for case in cases:
        node = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(node)
        elif case.find("skipped") is not None:
            skipped.append(node)
        else:
            passed.append(node)
    assert not failed, f"{len(failed)} failed: {failed}\n{tail}"
    assert not skipped, f"skipped: {skipped}"
    assert proc.returncode == 0, tail
    # both dtypes ran, and the suite is not a handful of tests
    assert any("float32" in n for n in passed) and any("float64" in n for n in passed)
    assert len(passed) >= 60, (len(passed), passed)


# ---- BayesianGaussianMixture: sklearn/mixture/tests/test_bayesian_mixture.py (and the
# BayesianGaussianMixture cases of test_mixture.py), both estimators imported from fastmix.
BAYES_IMPORTS = {
    "test_bayesian_mixture.py": (
        "from sklearn.mixture import BayesianGaussianMixture\n",
        "from fastmix import BayesianGaussianMixture\n"),
    "test_mixture.py": (
        "from sklearn.mixture import BayesianGaussianMixture, GaussianMixture\n",
        "from fastmix import BayesianGaussianMixture, GaussianMixture\n"),
}

BAYES_NOT_APPLICABLE = {
    # -- they test scikit-learn's private helpers and never construct the estimator ----------
    "test_bayesian_mixture.py::test_log_dirichlet_norm":
        "tests sklearn's _log_dirichlet_norm, not the estimator",
    "test_bayesian_mixture.py::test_log_wishart_norm":
        "tests sklearn's _log_wishart_norm, not the estimator",
    # -- it calls scikit-learn's private methods on the estimator ----------------------------
    "test_bayesian_mixture.py::test_compare_covar_type":
        "calls BayesianGaussianMixture._check_parameters and ._initialize_parameters "
        "(sklearn internals)",
}


@pytest.mark.skipif(not (SUITE / "test_bayesian_mixture.py").exists(),
                    reason="this scikit-learn install does not ship its tests")
def test_sklearn_bayesian_mixture_suite_passes_on_fastmix(tmp_path):
    for name, (old, new) in BAYES_IMPORTS.items():
        src = (SUITE / name).read_text()
        assert src.count(old) == 1, f"{name}: the import line changed: {old!r}"
        copy = src.replace(old, new)
        assert not re.search(r"^from sklearn\.mixture import .*\bBayesianGaussianMixture\b",
                             copy, re.M), f"{name}: another import of sklearn's estimator"
        (tmp_path / name).write_text(copy)
    (tmp_path / "conftest.py").write_text(PLUGIN.format(names=sorted(BAYES_NOT_APPLICABLE)))
    env = dict(os.environ, SKLEARN_RUN_FLOAT32_TESTS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("SKLEARN_TESTS_GLOBAL_RANDOM_SEED", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "sklearn.conftest", "-p",
         "no:cacheprovider", "--rootdir", str(tmp_path), "-c", os.devnull,
         "--junitxml", "junit.xml", "-W", "ignore::DeprecationWarning",
         "test_bayesian_mixture.py", "test_mixture.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    tail = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert (tmp_path / "junit.xml").exists(), tail
    assert "from fastmix import BayesianGaussianMixture" in (
        tmp_path / "test_bayesian_mixture.py").read_text()
    import json
    matched = set(json.loads((tmp_path / "not_applicable_matched.json").read_text()))
    assert matched == set(BAYES_NOT_APPLICABLE), sorted(set(BAYES_NOT_APPLICABLE) - matched)
    passed, failed = [], []
    for case in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase"):
        node = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(node)
        elif case.find("skipped") is None:
            passed.append(node)
    assert not failed, f"{len(failed)} failed: {failed}\n{tail}"
    assert proc.returncode == 0, tail
    # the BayesianGaussianMixture cases of test_mixture.py ran on fastmix's estimator
    assert sum("estimator1" in n for n in passed) >= 2, passed
    assert len(passed) >= 18, (len(passed), passed)
