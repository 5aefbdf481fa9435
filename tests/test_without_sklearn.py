"""scikit-learn is optional: fastmix imports, fits and predicts without it, and the kernel tests
pass without it.

A pytest subprocess loads a tiny plugin (``-p``) that makes ``import sklearn`` fail
(``sys.modules["sklearn"] = None``) before anything else is imported, then runs
tests/test_kernels.py and the checks in ``SMOKE`` below.  No second virtual environment is
needed.
"""
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PLUGIN = textwrap.dedent('''
    """-p plugin: scikit-learn cannot be imported in this process."""
    import sys
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        del sys.modules[name]
    sys.modules["sklearn"] = None  # import sklearn -> ImportError
''')

SMOKE = textwrap.dedent('''
    import warnings

    import numpy as np
    import pytest


    def test_sklearn_is_not_importable():
        with pytest.raises(ImportError):
            import sklearn  # noqa: F401


    def test_fastmix_works_without_sklearn():
        import fastmix
        from fastmix import _base
        assert not _base.HAVE_SKLEARN
        assert fastmix.ConvergenceWarning.__mro__[1] is UserWarning
        assert issubclass(fastmix.NotFittedError, (ValueError, AttributeError))
        rng = np.random.default_rng(0)
        X = np.r_[rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 6.0]
        gm = fastmix.GaussianMixture(2, random_state=0).fit(X)
        assert gm.converged_
        np.testing.assert_allclose(np.sort(gm.means_[:, 0]), [0.0, 6.0], atol=0.3)
        labels = gm.predict(X)
        assert len(set(labels[:200])) == 1 and labels[0] != labels[-1]
        assert np.isfinite(gm.score(X))
        assert gm.get_params()["n_components"] == 2
        gm.set_params(max_iter=1, tol=0.0)
        with pytest.warns(fastmix.ConvergenceWarning):
            gm.fit(X)
        with pytest.raises(fastmix.NotFittedError):
            fastmix.GaussianMixture(2).predict(X)
''')


def test_suite_runs_without_sklearn(tmp_path):
    (tmp_path / "no_sklearn_plugin.py").write_text(PLUGIN)
    (tmp_path / "test_no_sklearn_smoke.py").write_text(SMOKE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no_sklearn_plugin", "-p",
         "no:cacheprovider", "--junitxml", str(tmp_path / "junit.xml"),
         str(REPO / "tests" / "test_kernels.py"), str(tmp_path / "test_no_sklearn_smoke.py")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout[-5000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, out
    passed, other = [], []
    for case in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase"):
        bad = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        (other if bad else passed).append((case.get("classname"), case.get("name"), bad))
    assert not other, other
    names = {name for _, name, _ in passed}
    assert {"test_sklearn_is_not_importable", "test_fastmix_works_without_sklearn"} <= names
    assert sum("test_kernels" in cls for cls, _, _ in passed) >= 100, out
