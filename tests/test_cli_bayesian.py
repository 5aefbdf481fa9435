"""`fastmix fit --model bayesian` and the commands that use a saved Bayesian model (score,
predict, sample, info), its checkpoints, and the options that do not apply to a model."""
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastmix
from fastmix.cli import main, make_blobs


@pytest.fixture(scope="module")
def datafile(tmp_path_factory):
    d = tmp_path_factory.mktemp("clib")
    X, _, _, _ = make_blobs(6000, 3, 4, random_state=2)
    path = d / "x.npy"
    np.save(path, X)
    return path, X


def _bgmm(X, algorithm="batch", **kw):
    kw = dict(dict(n_components=8, covariance_type="diag", random_state=0), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fastmix.BayesianGaussianMixture(**kw).fit(X, algorithm=algorithm)


def _fit(*args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(["fit", *map(str, args), "--quiet"])


def test_fit_score_predict_sample_info(datafile, tmp_path, capsys):
    path, X = datafile
    model = tmp_path / "m.npz"
    assert _fit(path, "-k", "8", "--model", "bayesian", "--covariance-type", "diag", "-o",
                model, "--max-iter", "40") == 0
    bm = fastmix.load(model)
    assert type(bm) is fastmix.BayesianGaussianMixture
    ref = _bgmm(X, max_iter=40)
    for name in ("weights_", "means_", "covariances_", "mean_precision_",
                 "degrees_of_freedom_", "mean_prior_", "covariance_prior_"):
        assert getattr(bm, name).tobytes() == getattr(ref, name).tobytes(), name
    assert bm.lower_bounds_ == ref.lower_bounds_  # file fit == in-memory fit, bit for bit

    capsys.readouterr()
    assert main(["score", str(model), str(path)]) == 0
    cap = capsys.readouterr()
    assert abs(float(cap.out.strip()) - ref.score(X)) < 1e-8  # printed to 10 digits
    assert "BIC" not in cap.err and "mean log-likelihood" in cap.err

    labels, proba = tmp_path / "labels.npy", tmp_path / "proba.npy"
    assert main(["predict", str(model), str(path), "-o", str(labels), "--quiet"]) == 0
    np.testing.assert_array_equal(np.load(labels), ref.predict(X))
    assert main(["predict", str(model), str(path), "-o", str(proba), "--proba", "--quiet"]) == 0
    np.testing.assert_allclose(np.load(proba), ref.predict_proba(X), rtol=0, atol=1e-12)

    samples, slabels = tmp_path / "s.npy", tmp_path / "sl.npy"
    assert main(["sample", str(model), "-n", "500", "-o", str(samples), "--labels",
                 str(slabels), "--seed", "3", "--quiet"]) == 0
    ref.set_params(random_state=3)
    Xs, ys = ref.sample(500)
    np.testing.assert_array_equal(np.load(samples), Xs)
    np.testing.assert_array_equal(np.load(slabels), ys)

    capsys.readouterr()
    assert main(["info", str(model)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["class"] == "BayesianGaussianMixture" and info["n_components"] == 8
    assert info["weight_concentration_prior_type"] == "dirichlet_process"
    assert info["weight_concentration_prior"] == 1 / 8
    assert info["n_components_weight_above_0.01"] == int(np.sum(ref.weights_ > 1e-2))
    assert "n_parameters" not in info  # no maximum-likelihood parameter count
    assert info["lower_bound"] == ref.lower_bound_


def test_prior_options_reach_the_estimator(datafile, tmp_path):
    path, X = datafile
    model = tmp_path / "m.npz"
    assert _fit(path, "-k", "6", "--model", "bayesian", "-o", model, "--max-iter", "5",
                "--covariance-type", "full", "--weight-concentration-prior-type",
                "dirichlet_distribution", "--weight-concentration-prior", "0.25",
                "--mean-precision-prior", "0.5", "--degrees-of-freedom-prior", "4.5",
                "--seed", "1", "--tol", "0") == 0
    bm = fastmix.load(model)
    ref = _bgmm(X, n_components=6, covariance_type="full", max_iter=5, tol=0.0,
                random_state=1, weight_concentration_prior_type="dirichlet_distribution",
                weight_concentration_prior=0.25, mean_precision_prior=0.5,
                degrees_of_freedom_prior=4.5)
    assert bm.weight_concentration_prior_ == 0.25 and bm.mean_precision_prior_ == 0.5
    assert bm.degrees_of_freedom_prior_ == 4.5
    assert bm.weight_concentration_.tobytes() == ref.weight_concentration_.tobytes()
    assert bm.means_.tobytes() == ref.means_.tobytes()


def test_online_is_stochastic_variational_inference(datafile, tmp_path):
    path, X = datafile
    model = tmp_path / "m.npz"
    assert _fit(path, "-k", "6", "--model", "bayesian", "--covariance-type", "diag", "--online",
                "--max-iter", "3",
                "--batch-rows", "2048", "--chunk-rows", "512", "-o", model, "--tol", "0") == 0
    bm = fastmix.load(model)
    ref = _bgmm(X, "online", n_components=6, max_iter=3, batch_size=2048, tol=0.0,
                chunk_size=512)
    assert bm.n_steps_ == ref.n_steps_ == 9  # 3 passes of 3 batches (6000 rows)
    assert bm._online is not None  # running statistics saved: partial_fit continues
    assert bm.means_.tobytes() == ref.means_.tobytes()
    assert bm.lower_bounds_ == ref.lower_bounds_


def test_checkpoint_and_resume(datafile, tmp_path):
    path, X = datafile
    args = ["-k", "6", "--model", "bayesian", "--covariance-type", "full", "--tol", "0"]
    full = tmp_path / "full.npz"
    assert _fit(path, *args, "--max-iter", "6", "-o", full) == 0
    ck, out = tmp_path / "ck.npz", tmp_path / "out.npz"
    assert _fit(path, *args, "--max-iter", "3", "-o", out, "--checkpoint", ck) == 0
    assert fastmix.load(ck).n_iter_ == 3
    assert _fit(path, *args, "--max-iter", "6", "-o", out, "--checkpoint", ck, "--resume") == 0
    a, b = fastmix.load(full), fastmix.load(out)
    assert b.n_iter_ == 6 and b.lower_bounds_ == a.lower_bounds_
    assert b.means_.tobytes() == a.means_.tobytes()
    assert b.covariances_.tobytes() == a.covariances_.tobytes()
    # a GaussianMixture checkpoint is not resumed as a Bayesian one: one line, status 1
    gck = tmp_path / "gck.npz"
    assert _fit(path, "-k", "6", "--max-iter", "2", "-o", tmp_path / "g.npz",
                "--checkpoint", gck) == 0
    r = subprocess.run([sys.executable, "-m", "fastmix", "fit", str(path), *args, "-o",
                        str(tmp_path / "x.npz"), "--checkpoint", str(gck), "--resume"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"fastmix: error: checkpoint {gck} holds a GaussianMixture, not a "
        "BayesianGaussianMixture checkpoint"]
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("kind, cov_as", [("full", "npy"), ("tied", "values"),
                                           ("diag", "values"), ("spherical", "values")])
def test_mean_and_covariance_prior_options(datafile, tmp_path, kind, cov_as):
    """--mean-prior / --covariance-prior (comma-separated values or a .npy) give the fit of
    the estimator with the same arrays, bit for bit."""
    path, X = datafile
    D = X.shape[1]
    mean = np.array([0.5, -1.25, 2.0])
    cov = {"full": np.cov(X.T) * 0.5, "tied": np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.25],
                                                         [0.0, 0.25, 3.0]]),
           "diag": np.array([1.5, 0.75, 2.0]), "spherical": 1.75}[kind]
    if cov_as == "npy":
        np.save(tmp_path / "cov.npy", cov)
        np.save(tmp_path / "mean.npy", mean)
        args = ["--mean-prior", tmp_path / "mean.npy", "--covariance-prior", tmp_path / "cov.npy"]
    else:
        args = ["--mean-prior", ",".join(map(str, mean.tolist())), "--covariance-prior",
                ",".join(map(str, np.ravel(cov).tolist()))]
    model = tmp_path / "m.npz"
    assert _fit(path, "-k", "5", "--model", "bayesian", "--covariance-type", kind, "-o", model,
                "--max-iter", "4", "--tol", "0", *args) == 0
    bm = fastmix.load(model)
    ref = _bgmm(X, n_components=5, covariance_type=kind, max_iter=4, tol=0.0, mean_prior=mean,
                covariance_prior=cov)
    assert bm.mean_prior_.tobytes() == mean.tobytes()
    assert np.asarray(bm.covariance_prior_).tobytes() == np.asarray(cov).tobytes()
    assert bm.mean_prior_.shape == (D,)
    for name in ("means_", "covariances_", "degrees_of_freedom_", "mean_precision_"):
        assert np.asarray(getattr(bm, name)).tobytes() == \
            np.asarray(getattr(ref, name)).tobytes(), name
    assert bm.lower_bounds_ == ref.lower_bounds_
    default = _bgmm(X, n_components=5, covariance_type=kind, max_iter=4, tol=0.0)
    assert bm.means_.tobytes() != default.means_.tobytes()  # the priors took effect


@pytest.fixture(scope="module")
def prior_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("priors")
    np.save(d / "neg.npy", -np.eye(3))
    np.save(d / "cov2.npy", np.eye(2))
    np.save(d / "text.npy", np.array(["a", "b", "c"]))
    np.save(d / "nan.npy", np.array([0.0, np.nan, 1.0]))
    (d / "junk.npy").write_bytes(b"not a .npy file")
    return d


@pytest.mark.parametrize("argv, message", [
    (["--mean-prior", "1,2"], "argument --mean-prior: needs 3 values (one per feature), got 2"),
    (["--mean-prior", "1,x,3"], "argument --mean-prior: expected comma-separated numbers or a "
                                ".npy file, got '1,x,3'"),
    (["--mean-prior", "1,nan,3"], "argument --mean-prior: NaN or infinity in '1,nan,3'"),
    (["--mean-prior", "{d}/nan.npy"], "argument --mean-prior: mean_prior contains NaN"),
    (["--mean-prior", "{d}/missing.npy"], "argument --mean-prior: no such file: "),
    (["--mean-prior", "{d}/junk.npy"], "argument --mean-prior: cannot read "),
    (["--mean-prior", "{d}/text.npy"], "argument --mean-prior: {d}/text.npy holds <U1 values"),
    (["--covariance-prior", "1,0,0,1"], "argument --covariance-prior: --covariance-type full "
                                        "needs 9 values or a 3 x 3 .npy, got 4"),
    (["--covariance-prior", "{d}/cov2.npy"], "argument --covariance-prior: --covariance-type "
                                             "full needs 9 values or a 3 x 3 .npy, got shape"),
    (["--covariance-prior", "{d}/neg.npy"], "argument --covariance-prior: 'full "
                                            "covariance_prior' should be symmetric, positive-"
                                            "definite"),
    (["--covariance-prior", "1,2,0,0,1,0,0,0,1", "--covariance-type", "tied"],
     "'tied covariance_prior' should be symmetric, positive-definite: covariance_prior should "
     "be symmetric, positive-definite (it is not symmetric)"),
    (["--covariance-prior", "1,-1,1", "--covariance-type", "diag"],
     "argument --covariance-prior: 'diag covariance_prior' should be positive"),
    (["--covariance-prior", "1,1", "--covariance-type", "diag"],
     "argument --covariance-prior: --covariance-type diag needs 3 values (one per feature)"),
    (["--covariance-prior", "0", "--covariance-type", "spherical"],
     "argument --covariance-prior: covariance_prior must be a finite number > 0"),
    (["--covariance-prior", "1,2", "--covariance-type", "spherical"],
     "argument --covariance-prior: --covariance-type spherical needs 1 value, got 2"),
])
def test_bad_mean_and_covariance_priors_are_usage_errors(datafile, prior_files, tmp_path,
                                                          capsys, argv, message):
    path, _ = datafile
    out = tmp_path / "m.npz"
    argv = [a.format(d=prior_files) for a in argv]
    assert main(["fit", str(path), "-k", "3", "--model", "bayesian", "-o", str(out),
                 *argv]) == 2
    err = capsys.readouterr().err
    assert "fastmix fit: error: " in err and message.format(d=prior_files) in err, err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--weight-concentration-prior", "0.1"],
     "--weight-concentration-prior applies to --model bayesian only"),
    (["--weight-concentration-prior-type", "dirichlet_distribution"],
     "--weight-concentration-prior-type applies to --model bayesian only"),
    (["--mean-precision-prior", "2"], "--mean-precision-prior applies to --model bayesian"),
    (["--degrees-of-freedom-prior", "4"],
     "--degrees-of-freedom-prior applies to --model bayesian"),
    (["--mean-prior", "1,2,3"], "--mean-prior applies to --model bayesian only"),
    (["--covariance-prior", "1"], "--covariance-prior applies to --model bayesian only"),
    (["--model", "bayesian", "--covariance-type", "lowrank"],
     "--model bayesian supports --covariance-type full, tied, diag or spherical, not lowrank"),
    (["--model", "bayesian", "--n-factors", "2"], "--n-factors applies to --model gmm"),
    (["--model", "bayesian", "--noise", "isotropic"], "--noise applies to --model gmm"),
    (["--model", "bayesian", "--missing", "marginalize"], "--missing applies to --model gmm"),
    (["--model", "mixture"], "argument --model: invalid choice: 'mixture'"),
])
def test_options_of_the_other_model_are_usage_errors(datafile, tmp_path, capsys, argv,
                                                     message):
    path, _ = datafile
    out = tmp_path / "m.npz"
    assert main(["fit", str(path), "-k", "3", "-o", str(out), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--degrees-of-freedom-prior", "1.5"],
     "The parameter 'degrees_of_freedom_prior' should be greater than 2, but got 1.500"),
    (["--weight-concentration-prior", "0"], "weight_concentration_prior must be a finite "
                                            "number > 0"),
    (["--mean-precision-prior", "-1"], "mean_precision_prior must be a finite number > 0"),
])
def test_bad_priors_are_one_line_errors_and_write_nothing(datafile, tmp_path, capsys, argv,
                                                          message):
    path, _ = datafile
    out = tmp_path / "m.npz"
    assert main(["fit", str(path), "-k", "3", "--model", "bayesian", "-o", str(out),
                 *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastmix: error: ") and message in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("view", ["2d", "lower-bounds"])
def test_plot_takes_a_bayesian_model(datafile, tmp_path, capsys, view):
    pytest.importorskip("matplotlib")
    path, X = datafile
    model = tmp_path / "m.npz"
    _bgmm(X, max_iter=5).save(model)
    png = tmp_path / "p.png"
    assert main(["plot", str(model), str(path), "-o", str(png), "--view", view]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote the {view} plot" in capsys.readouterr().err
