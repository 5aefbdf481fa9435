"""``bench/small_fits.py --protocol process`` (issue 16, item 3): each library timed in its own
fresh Python processes.  A smoke run of the smallest configuration (iris, diag, one seed, one
repetition, one process per library; ~15 s on 2 cores, most of it the children's imports and
one compilation) checks that the children ran with the requested thread environment, that the
throw-away child filled an empty compile cache (nothing compiled in the timed children), that
they fitted the same models as this process, and that the report has the first-fit columns."""
import json
import os
import sys

import numpy as np
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import fastmix

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))
import small_fits  # noqa: E402


def test_process_protocol_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba-cache"))  # the children's
    small_fits.main(["--protocol", "process", "--sets", "iris", "--covs", "diag", "--seeds", "1",
                     "--reps", "1", "--procs", "1", "--threads", "1", "--tag", "smoke",
                     "--out", str(tmp_path)])
    report = json.loads((tmp_path / "small_fits_smoke.json").read_text())
    meta, (row,) = report["meta"], report["rows"]
    assert meta["protocol"] == "process" and meta["clock"] == "wall"
    assert set(meta["warmup"]) == {"fastmix", "sklearn"}
    (fm,), (sk,) = meta["children"]["fastmix"], meta["children"]["sklearn"]
    assert fm["numba_threads"] == 1
    assert {n for _, n in fm["threadpools"] + sk["threadpools"]} == {1}
    assert meta["warmup"]["fastmix"]["jobs"][0]["compiles"] > 0  # the cache was empty
    assert row["compiles"] == {"fastmix": 0, "sklearn": 0}
    assert "sklearn.mixture" not in fm["sklearn_modules"]
    X, K = small_fits._sets()["iris"]
    for lib, cls in (("fastmix", fastmix.GaussianMixture), ("sklearn", SkGaussianMixture)):
        gm = cls(K, covariance_type="diag", random_state=0).fit(X)
        np.testing.assert_allclose(row["score"][lib], [gm.score(X)], rtol=1e-10)
        np.testing.assert_allclose(row["lower_bound"][lib], [gm.lower_bound_], rtol=1e-10)
        assert row["first_ms"][lib] > 0 and row["ms"][lib] > 0
        assert row["ms"][lib] == row["ms_wall"][lib]
    md = (tmp_path / "small_fits_smoke.md").read_text()
    assert "| fastmix first ms | sklearn first ms | first sklearn / fastmix | fastmix ms |" in md
    assert "one process per library" in md
