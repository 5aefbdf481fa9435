"""The `fastmix demo` command line (small sizes)."""
import subprocess
import sys

from fastmix.cli import main


def test_demo_reports_fit(capsys):
    assert main(["demo", "-n", "6000", "-d", "3", "-k", "3", "--covariance-type", "full",
                 "--dtype", "float32", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "per EM iteration" in out and "final lower bound" in out
    assert "3/3 true means recovered" in out


def test_unknown_command_and_help(capsys):
    assert main(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["--help"]) == 0


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "fastmix", "demo", "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "--covariance-type" in r.stdout


# ------------------------------------------------------------------ fit / score / predict ----
import json
import os
import signal
import time

import numpy as np
import pytest

import fastmix
from fastmix.cli import make_blobs


@pytest.fixture(scope="module")
def datafile(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    X, _, _, _ = make_blobs(20000, 3, 4, random_state=2)
    path = d / "x.npy"
    np.save(path, X)
    return path, X


def _run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fastmix", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_fit_score_predict_sample_info(datafile, tmp_path, capsys):
    path, X = datafile
    model = tmp_path / "m.npz"
    assert main(["fit", str(path), "-k", "4", "--covariance-type", "diag", "-o", str(model),
                 "--quiet", "--max-iter", "50"]) == 0
    gm = fastmix.load(model)
    ref = fastmix.GaussianMixture(4, covariance_type="diag", max_iter=50, random_state=0).fit(X)
    np.testing.assert_array_equal(gm.means_, ref.means_)  # file fit == in-memory fit

    assert main(["score", str(model), str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert abs(float(out.strip()) - ref.score(X)) < 1e-8

    labels = tmp_path / "labels.npy"
    assert main(["predict", str(model), str(path), "-o", str(labels), "--quiet"]) == 0
    np.testing.assert_array_equal(np.load(labels), ref.predict(X))
    proba = tmp_path / "proba.npy"
    assert main(["predict", str(model), str(path), "-o", str(proba), "--proba", "--quiet"]) == 0
    np.testing.assert_allclose(np.load(proba), ref.predict_proba(X), rtol=0, atol=1e-12)

    samples = tmp_path / "s.npy"
    assert main(["sample", str(model), "-n", "500", "-o", str(samples), "--quiet"]) == 0
    assert np.load(samples).shape == (500, 3)

    capsys.readouterr()
    assert main(["info", str(model)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_components"] == 4 and info["n_features"] == 3
    assert info["covariance_type"] == "diag" and info["converged"] is True


def test_fit_online_flag(datafile, tmp_path):
    path, X = datafile
    model = tmp_path / "m.npz"
    assert main(["fit", str(path), "-k", "4", "-o", str(model), "--online", "--max-iter", "3",
                 "--batch-rows", "4096", "--quiet"]) == 0
    gm = fastmix.load(model)
    assert gm.n_steps_ == gm.n_iter_ * 5  # 20000 rows in batches of 4096
    ref = fastmix.GaussianMixture(4, random_state=0).fit(X)
    assert abs(gm.score(X) - ref.score(X)) < 0.02


def _one_line_error(r):
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmix: error:"), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def test_cli_errors_are_one_line_and_leave_no_output(datafile, tmp_path):
    path, X = datafile
    out = tmp_path / "m.npz"
    msg = _one_line_error(_run("fit", tmp_path / "missing.npy", "-k", "2", "-o", out))
    assert "missing.npy" in msg
    # truncated .npy: the header promises more rows than the file holds
    trunc = tmp_path / "trunc.npy"
    np.save(trunc, X)
    os.truncate(trunc, os.path.getsize(trunc) - 1000)
    assert "truncated" in _one_line_error(_run("fit", trunc, "-k", "2", "-o", out))
    # NaN in a chunk: names the chunk and the row
    bad = X.copy()
    bad[5000, 1] = np.nan
    badp = tmp_path / "nan.npy"
    np.save(badp, bad)
    msg = _one_line_error(_run("fit", badp, "-k", "2", "-o", out, "--chunk-rows", "1000"))
    assert "chunk 5" in msg and "row 5000" in msg
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    # --debug shows the traceback
    r = _run("fit", tmp_path / "missing.npy", "-k", "2", "-o", out, "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_model_from_newer_format_version(datafile, tmp_path):
    path, X = datafile
    model = tmp_path / "m.npz"
    fastmix.GaussianMixture(2, max_iter=5, random_state=0).fit(X).save(model)
    with np.load(model) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta["format_version"] = 99
    arrays["meta"] = np.array(json.dumps(meta))
    newer = tmp_path / "newer.npz"
    np.savez(newer, **arrays)
    msg = _one_line_error(_run("info", newer))
    assert "version 99" in msg and "Upgrade fastmix" in msg
    msg = _one_line_error(_run("predict", newer, path, "-o", tmp_path / "l.npy"))
    assert not (tmp_path / "l.npy").exists()


def test_checkpoint_survives_sigkill_and_resume_matches(tmp_path):
    """A fit killed with SIGKILL mid-run resumes from its checkpoint and ends at exactly the
    model of an uninterrupted run."""
    X, _, _, _ = make_blobs(60000, 6, 6, random_state=5)
    data = tmp_path / "x.npy"
    np.save(data, X)
    args = ["fit", data, "-k", "6", "--covariance-type", "full", "--tol", "0",
            "--max-iter", "60", "--quiet"]
    full = tmp_path / "full.npz"
    r = _run(*args, "-o", full)
    assert r.returncode == 0, r.stderr
    ck = tmp_path / "ck.npz"
    out = tmp_path / "resumed.npz"
    proc = subprocess.Popen([sys.executable, "-m", "fastmix", *map(str, args), "-o", str(out),
                             "--checkpoint", str(ck)], stderr=subprocess.PIPE)
    deadline = time.time() + 240
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if ck.exists():
            try:
                n = fastmix.load(ck).n_iter_
            except ValueError:  # never expected: the checkpoint is replaced atomically
                raise
            if n >= 3:
                proc.send_signal(signal.SIGKILL)
                killed_at = n
                break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, "run was not killed"
    assert not out.exists()  # no half-written model
    partial = fastmix.load(ck)
    assert 3 <= partial.n_iter_ < 60
    r = _run(*args, "-o", out, "--checkpoint", ck, "--resume")
    assert r.returncode == 0, r.stderr
    a, b = fastmix.load(full), fastmix.load(out)
    assert b.n_iter_ == a.n_iter_ == 60
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.covariances_, b.covariances_)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    assert a.lower_bounds_ == b.lower_bounds_


def test_device_option(tmp_path):
    """--device cuda: a one-line error naming the extra or the missing GPU when there is none
    (no model written); on the CUDA simulator (when numba-cuda is installed) fit / predict
    stream the file through the device kernels and agree with --device cpu."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-3, 1, (32, 2)), rng.normal(3, 1, (32, 2))])
    data = tmp_path / "x.npy"
    np.save(data, X)
    out = tmp_path / "m.npz"
    real = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    msg = _one_line_error(_run("fit", data, "-k", "2", "-o", out, "--device", "cuda", env=real))
    assert "fastmix[cuda]" in msg and ("no CUDA GPU" in msg or "not installed" in msg)
    assert not out.exists()
    pytest.importorskip("numba_cuda")
    sim = dict(real, NUMBA_ENABLE_CUDASIM="1")
    cpu_out = tmp_path / "cpu.npz"
    common = ("-k", "2", "--max-iter", "3", "--tol", "0", "--covariance-type", "diag", "--quiet")
    assert _run("fit", data, "-o", cpu_out, *common).returncode == 0
    r = _run("fit", data, "-o", out, "--device", "cuda", *common, env=sim)
    assert r.returncode == 0, r.stderr
    import fastmix
    a, b = fastmix.load(cpu_out), fastmix.load(out)
    assert b.device == "cuda"
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-9)
    labels = tmp_path / "labels.npy"
    r = _run("predict", out, data, "-o", labels, "--device", "cuda", "--quiet", env=sim)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(labels), a.predict(X))
    r = _run("demo", "-n", "64", "-d", "2", "-k", "2", "--max-iter", "2", "--no-progress",
             "--device", "cuda", env=sim)
    assert r.returncode == 0, r.stderr
    assert "device='cuda' (CUDA simulator)" in r.stdout and "final lower bound" in r.stdout
    msg = _one_line_error(_run("demo", "-n", "64", "--device", "cuda", env=real))
    assert "fastmix[cuda]" in msg
