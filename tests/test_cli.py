"""The `fastmix demo` command line (small sizes)."""
import subprocess
import sys

from fastmix.cli import default_model_path, main


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
import warnings

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


def test_fit_without_output_writes_the_data_name_gmm_npz_in_the_current_directory(
        datafile, tmp_path, monkeypatch, capsys):
    # the mission's own example, `fastmix fit data.npy -k 64`, needs no -o
    path, X = datafile
    monkeypatch.chdir(tmp_path)
    assert main(["fit", str(path), "-k", "3", "--covariance-type", "spherical",
                 "--max-iter", "5"]) == 0
    assert "wrote x.gmm.npz" in capsys.readouterr().err
    gm = fastmix.load(tmp_path / "x.gmm.npz")
    assert gm.n_components == 3 and gm.means_.shape == (3, X.shape[1])
    assert default_model_path("/data/run.h5:/group/x") == "run.gmm.npz"
    assert default_model_path("store.zarr/") == "store.gmm.npz"
    assert default_model_path("table.parquet") == "table.gmm.npz"


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


# ------------------------------------------------------------------------------- issue 18 ----
def test_version_and_help_show_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        from fastmix.cli import _parser
        _parser().parse_args(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastmix {fastmix.__version__}"
    assert main(["fit", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: full)" in out and "README's example" in out
    assert "--no-header" in out and "--delimiter" in out and "(default: 0.001)" in out


def _spy_fit(monkeypatch):
    calls = []
    monkeypatch.setattr(fastmix.GaussianMixture, "fit",
                        lambda self, *a, **k: calls.append(1) or self)
    return calls


def test_outputs_are_checked_before_any_work(datafile, tmp_path, monkeypatch, capsys):
    path, X = datafile
    model = tmp_path / "m.npz"
    fastmix.GaussianMixture(2, max_iter=2, random_state=0).fit(X).save(model)
    calls = _spy_fit(monkeypatch)
    for bad, what in (("/nonexist/m.npz", "model file /nonexist/m.npz: directory /nonexist "
                                          "does not exist"),
                      (str(tmp_path), f"model file {tmp_path}: it is a directory")):
        assert main(["fit", str(path), "-k", "2", "-o", bad, "--quiet"]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"fastmix: error: cannot write {what}") and ".tmp" not in err
    assert main(["fit", str(path), "-k", "2", "-o", str(tmp_path / "new.npz"), "--checkpoint",
                 "/nonexist/ck.npz"]) == 1
    assert "cannot write checkpoint /nonexist/ck.npz" in capsys.readouterr().err
    assert calls == []  # the fit never started
    monkeypatch.setattr(fastmix, "load", lambda *a, **k: calls.append(1))  # no model loaded
    assert main(["predict", str(model), str(path), "-o", "/nonexist/l.npy"]) == 1
    assert "cannot write output file /nonexist/l.npy" in capsys.readouterr().err
    assert main(["sample", str(model), "-n", "5", "-o", str(tmp_path / "s.npy"), "--labels",
                 "/nonexist/l.npy"]) == 1
    assert "cannot write labels file /nonexist/l.npy" in capsys.readouterr().err
    assert calls == [] and not (tmp_path / "s.npy").exists()


def test_a_directory_as_model_file(tmp_path):
    msg = _one_line_error(_run("info", tmp_path))
    assert msg == f"fastmix: error: {tmp_path} is a directory, not a fastmix model file (.npz)"


def test_resume_refuses_another_file_of_the_same_shape(datafile, tmp_path):
    path, X = datafile
    ck, out = tmp_path / "ck.npz", tmp_path / "m.npz"
    r = _run("fit", path, "-k", "3", "-o", out, "--checkpoint", ck, "--max-iter", "3",
             "--tol", "0", "--quiet")
    assert r.returncode == 0, r.stderr
    out.unlink()
    other = tmp_path / "other.npy"
    np.save(other, X[::-1].copy())
    msg = _one_line_error(_run("fit", other, "-k", "3", "-o", out, "--checkpoint", ck,
                               "--resume", "--max-iter", "6", "--tol", "0"))
    assert "was written for other data" in msg and "contents differ" in msg
    assert not out.exists()
    msg = _one_line_error(_run("fit", path, "-k", "3", "-o", out, "--checkpoint", ck,
                               "--resume", "--max-iter", "6", "--tol", "0",
                               "--covariance-type", "diag"))
    assert "covariance_type='full' vs 'diag'" in msg


def test_warnings_are_one_line_and_the_summary_reads_well(tmp_path):
    X, _, _, _ = make_blobs(3000, 2, 3, random_state=1)
    csv = tmp_path / "x.csv"
    np.savetxt(csv, X, delimiter=",", header="a,b", comments="")
    r = _run("fit", csv, "-k", "3", "-o", tmp_path / "m.npz", "--max-iter", "1", "--tol", "0",
             "--online")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("warning: ConvergenceWarning: Best performing initialization")
    assert len(lines) == 2 and "warnings.warn" not in r.stderr and ".py:" not in r.stderr
    assert "to 3000 x 2 rows" in lines[1] and ": 1 pass," in lines[1]


def test_csv_options_on_the_command_line(tmp_path, capsys):
    X, _, _, _ = make_blobs(600, 2, 2, random_state=3)
    nh = tmp_path / "nh.csv"
    np.savetxt(nh, X, delimiter=";")
    model = tmp_path / "m.npz"
    assert main(["fit", str(nh), "-k", "2", "-o", str(model), "--delimiter", ";",
                 "--no-header", "--quiet"]) == 0
    ref = fastmix.GaussianMixture(2, random_state=0).fit(X)
    np.testing.assert_allclose(fastmix.load(model).means_, ref.means_, rtol=1e-12)
    # a first line with a text field looks like a header: --no-header keeps it as data
    t = tmp_path / "t.csv"
    t.write_text("".join(f"{a:.17g},{b:.17g},n{i}\n" for i, (a, b) in enumerate(X)))
    assert main(["fit", str(t), "-k", "2", "-o", str(model), "--no-header", "--columns",
                 "f0,f1", "--quiet"]) == 0
    np.testing.assert_allclose(fastmix.load(model).means_, ref.means_, rtol=1e-12)
    s = tmp_path / "s.csv"
    s.write_text("a,b,name\n" + "".join(f"{a},{b},n{i}\n" for i, (a, b) in enumerate(X)))
    assert main(["fit", str(s), "-k", "2", "-o", str(model)]) == 1
    err = capsys.readouterr().err
    assert "pass --columns with the numeric ones" in err and "columns=[" not in err
    assert main(["fit", str(s), "-k", "2", "-o", str(model), "--columns", "a,b",
                 "--quiet"]) == 0


def test_labels_use_the_smallest_unsigned_dtype(datafile, tmp_path):
    path, X = datafile
    model = tmp_path / "m.npz"
    gm = fastmix.GaussianMixture(3, max_iter=5, random_state=0).fit(X)
    gm.save(model)
    labels = tmp_path / "l.npy"
    assert main(["predict", str(model), str(path), "-o", str(labels), "--quiet"]) == 0
    got = np.load(labels)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, gm.predict(X))
    assert main(["sample", str(model), "-n", "50", "-o", str(tmp_path / "s.npy"), "--labels",
                 str(labels), "--quiet"]) == 0
    assert np.load(labels).dtype == np.uint8
    from fastmix.cli import _label_dtype
    assert [_label_dtype(k) for k in (1, 256, 257, 65537)] == [np.uint8, np.uint8, np.uint16,
                                                              np.uint32]


def test_ctrl_c_names_the_checkpoint_and_resume(datafile, tmp_path, monkeypatch, capsys):
    path, X = datafile
    ck = tmp_path / "ck.npz"
    fit = fastmix.GaussianMixture.fit

    def interrupted(self, *a, checkpoint=None, **k):  # one iteration checkpointed, then ^C
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit(fastmix.GaussianMixture(2, max_iter=1), X[:200], checkpoint=checkpoint)
        raise KeyboardInterrupt
    monkeypatch.setattr(fastmix.GaussianMixture, "fit", interrupted)
    assert main(["fit", str(path), "-k", "2", "-o", str(tmp_path / "m.npz"), "--checkpoint",
                 str(ck), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert f"checkpoint {ck} holds the last finished iteration" in err
    assert f"--checkpoint {ck} --resume" in err
