"""select_mixture gives the same sweep, bit for bit, on 1 or 2 Numba threads: every candidate's
parameters, lower bounds, iterations and scores (as tests/test_determinism.py does for single
fits: each thread count in its own interpreter, the two side by side, arrays compared byte for
byte)."""
import textwrap

import numpy as np
import pytest

from _helpers import differing_arrays, run_on_threads

SCRIPT = textwrap.dedent(r"""
    import sys
    import warnings

    import numba
    import numpy as np

    import fastmix

    warnings.simplefilter("ignore")
    out_path, expected_threads = sys.argv[1], int(sys.argv[2])
    assert numba.get_num_threads() == expected_threads, numba.get_num_threads()
    rng = np.random.default_rng(2024)
    N, D = 16000, 4
    centres = 4.0 * rng.normal(size=(4, D))
    X = centres[rng.integers(0, 4, size=N)] + rng.normal(size=(N, D)) * rng.uniform(0.5, 2, D)
    sw = rng.uniform(0.1, 2.0, size=N)
    arrays = {}
    runs = {
        # 16 chunks of 1000 rows: both threads take part in every E-step
        "bic": dict(criterion="bic"),
        "heldout_weighted": dict(criterion="heldout", sample_weight=sw),
        "icl_split": dict(criterion="icl", start="split"),
        "hierarchical": dict(start="hierarchical", covariance_types=("full", "diag")),
    }
    for name, kw in runs.items():
        kw = {"covariance_types": ("full", "tied", "diag", "spherical"), **kw}
        res = fastmix.select_mixture(X, n_components=[1, 3, 5], random_state=7, chunk_size=1000,
                                     max_iter=25, tol=1e-6, **kw)
        for k, v in res.results_.items():
            if k != "time" and v.dtype.kind != "U":
                arrays[f"{name}/results/{k}"] = v
        arrays[f"{name}/bytes"] = np.array(res.bytes_read_)
        for i in range(len(res)):
            est = res.estimator(i)
            for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
                arrays[f"{name}/{i}/{attr}"] = getattr(est, attr)
            arrays[f"{name}/{i}/lower_bounds_"] = np.array(est.lower_bounds_)
    np.savez(out_path, **arrays)
""")


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    return run_on_threads(SCRIPT, tmp_path_factory.mktemp("selection_threads"), "sweep",
                          timeout=600)


@pytest.mark.parametrize("run", ["bic", "heldout_weighted", "icl_split", "hierarchical"])
def test_sweep_bit_identical_on_one_and_two_threads(dumps, run):
    one, two = dumps
    keys = sorted(k for k in one if k.startswith(run + "/"))
    assert keys and keys == sorted(k for k in two if k.startswith(run + "/"))
    assert np.all(one[f"{run}/results/n_iter"] > 1)  # the candidates did iterate
    for k in keys:
        if one[k].dtype.kind == "f" and "heldout_log_likelihood" not in k \
                and "entropy" not in k and "bic" not in k:
            assert np.all(np.isfinite(one[k])), k
    differing = differing_arrays(one, two, keys)
    assert not differing, f"not bit-identical on 1 vs 2 threads: {differing}"
