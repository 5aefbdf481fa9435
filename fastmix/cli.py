"""Command line: ``fastmix fit|score|predict|impute|sample|info|plot|select|compile|demo``
(also ``python -m fastmix``).

``fastmix fit DATA -k 64 [-o model.npz]`` fits from a file of any size (``.npy``,
``file.h5:/dataset``, ``.zarr``, ``.parquet``, ``.csv``), read in blocks with bounded memory,
and writes the model to ``-o`` (default: DATA's file name with ``.gmm.npz`` for its extension,
in the current directory, e.g. ``data.gmm.npz``);
``--checkpoint FILE`` saves the model after every iteration and ``--resume`` continues from it;
``--model bayesian`` fits a variational ``BayesianGaussianMixture`` instead of a
``GaussianMixture`` (``-k`` is then an upper bound on the components used).
``score``, ``predict``, ``impute`` (fill NaN / nulls with conditional means, block by block),
``sample`` and ``info`` use a saved model; ``demo`` fits generated data and compares with the
truth.  ``fastmix select DATA -k 1:20 --covariance-types full,diag -o best.npz --report
sel.json --plot sel.png`` fits every candidate with one read of the file per EM iteration and
writes the best model (``fastmix.select_mixture``).  ``fastmix compile`` compiles the kernels
ahead of time into the on-disk cache (``fastmix.precompile``), e.g. in a Docker build.

Every output path is checked before any work (its directory exists and is writable, it is not
a directory), and every output file is written atomically (temporary file, then rename): a
failed or killed run leaves no partial output.  Errors are one line on stderr and exit status 1
(2 for usage errors); ``--debug`` shows the traceback.  Warnings are one line each
(``warning: Category: message``).  Progress bars (tqdm) go to stderr when it is a terminal,
unless ``--quiet``.
"""
import argparse
import contextlib
import os
import sys
import time
import warnings
from collections.abc import Sequence

import numpy as np

from . import _compute
from ._compute import GPUUnavailableError  # imports no numba-cuda


def make_blobs(n, d, k, dtype=np.float64, separation=8.0, random_state=0):
    """n points (n, d) from a k-component mixture with well-separated means.

    Means are uniform in a cube of side ``separation * k**(1/d)``; each component has a random
    diagonal scale in [0.5, 1.5] and a random weight.  Returns (X, labels, true_means, weights).
    """
    rng = np.random.default_rng(random_state)
    side = separation * k ** (1.0 / d)
    means = rng.uniform(-side / 2, side / 2, size=(k, d))
    scales = rng.uniform(0.5, 1.5, size=(k, d))
    weights = rng.dirichlet(np.full(k, 5.0))
    labels = rng.choice(k, size=n, p=weights)
    X = np.empty((n, d), dtype=dtype)
    step = 1 << 18  # generate in blocks to keep the temporary memory small
    for s in range(0, n, step):
        e = min(n, s + step)
        lab = labels[s:e]
        X[s:e] = means[lab] + rng.standard_normal((e - s, d)) * scales[lab]
    return X, labels, means, weights


def _match_means(fitted, true):
    """Max over true means of the distance to the nearest fitted mean, after optimal matching."""
    from scipy.optimize import linear_sum_assignment
    cost = np.linalg.norm(true[:, None, :] - fitted[None, :, :], axis=2)
    r, c = linear_sum_assignment(cost)
    return cost[r, c]


def _gpu_name():
    from . import gpu
    return gpu.device_name()  # GPUUnavailableError (a one-line error) without a GPU


def demo(argv=None):
    p = argparse.ArgumentParser(
        prog="fastmix demo", description="Fit a GMM to generated data and compare with the truth.",
        formatter_class=_DefaultsFormatter)
    p.add_argument("-n", "--n-samples", type=int, default=1_000_000, help="points generated")
    p.add_argument("-d", "--n-features", type=int, default=16, help="features")
    p.add_argument("-k", "--n-components", type=int, default=16,
                   help="true and fitted components")
    p.add_argument("--covariance-type", default="diag",
                   choices=["full", "tied", "diag", "spherical"], help="covariance type")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                   help="data type")
    p.add_argument("--max-iter", type=int, default=100, help="EM iterations at most")
    p.add_argument("--tol", type=float, default=1e-4, help="convergence threshold")
    p.add_argument("--seed", type=int, default=0, help="random seed (data and fit)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="fit on the CPU or on a CUDA GPU (pip install 'fastmix[cuda]')")
    args = p.parse_args(argv)

    import fastmix
    from fastmix import _compute

    n, d, k = args.n_samples, args.n_features, args.n_components
    dtype = np.dtype(args.dtype)
    print(f"fastmix {fastmix.__version__} demo: {n:,} x {d} points ({dtype}), {k} true "
          f"components, covariance_type={args.covariance_type!r}, "
          + (f"{_compute.num_threads()} threads" if args.device == "cpu" else
             f"device={args.device!r} ({_gpu_name()})"))
    t0 = time.perf_counter()
    X, _, true_means, _ = make_blobs(n, d, k, dtype=dtype, random_state=args.seed)
    print(f"generated {X.nbytes / 2**20:.0f} MiB in {time.perf_counter() - t0:.2f} s")

    gm = fastmix.GaussianMixture(k, covariance_type=args.covariance_type, max_iter=args.max_iter,
                                 tol=args.tol, random_state=args.seed,
                                 progress=not args.no_progress, device=args.device)
    t0 = time.perf_counter()
    gm.fit(X)
    total = time.perf_counter() - t0
    it = np.array(gm.iteration_times_)
    print(f"fit: {total:.2f} s total (includes initialisation and any JIT compilation), "
          f"{gm.n_iter_} EM iterations, converged={gm.converged_}")
    if it.size:
        print(f"per EM iteration: median {np.median(it) * 1e3:.1f} ms, "
              f"min {it.min() * 1e3:.1f} ms, first {it[0] * 1e3:.1f} ms")
    print(f"final lower bound (mean log-likelihood per point): {gm.lower_bound_:.6f}")
    dist = _match_means(gm.means_, true_means)
    print(f"fitted vs true means (matched): max distance {dist.max():.4f}, "
          f"median {np.median(dist):.4f}; {(dist < 0.1).sum()}/{k} true means recovered "
          "within 0.1")
    return 0


# ------------------------------------------------------------------------- commands ---------
class _DefaultsFormatter(argparse.HelpFormatter):
    """Help that ends each option with its default, unless the default is None/False or the
    help text already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = not (action.default is None or action.default is False
                     or action.default == argparse.SUPPRESS)
        if shown and "default" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def _common(p):
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def _csv_options(p):
    p.add_argument("--no-header", action="store_true",
                   help="CSV: the first line is data (default: it is a header unless every "
                        "field is a number)")
    p.add_argument("--delimiter", default=None,
                   help="CSV field delimiter, one character (default: tab for .tsv, sniffed "
                        "for .txt, else ',')")


def _data_args(p):
    p.add_argument("data", help="data file: .npy, file.h5:/dataset, .zarr, .parquet, or "
                                "delimited text .csv/.tsv/.txt (not .npz)")
    p.add_argument("--columns", help="comma-separated feature columns (Parquet/CSV; a CSV file "
                                     "without a header has columns f0,f1,...)")
    _csv_options(p)
    p.add_argument("--chunk-rows", type=int, default=None,
                   help="rows per kernel chunk (default 4096)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="run the passes over the data on the CPU or a CUDA GPU (needs "
                        "pip install 'fastmix[cuda]'; the file is streamed to the device)")


def _open_data(args, weight_column=None):
    from . import io as sources
    cols = None if not args.columns else [c.strip() for c in args.columns.split(",")]
    delimiter = args.delimiter
    if delimiter is not None and delimiter.lower() in ("tab", "\\t"):
        delimiter = "\t"
    try:
        return sources.open_path(args.data, columns=cols, weight_column=weight_column,
                                 header=False if args.no_header else "infer",
                                 delimiter=delimiter)
    except ValueError as exc:  # the library's hint, in command line words
        msg = str(exc).replace("pass columns=[...] with the numeric ones",
                               "pass --columns with the numeric ones (comma-separated)")
        if msg != str(exc):
            raise ValueError(msg) from None
        raise


def _check_outputs(*paths):
    """Every output path, before any work: a bad one fails now, naming the path given."""
    from .io import check_output_path
    for what, path in paths:
        if path is not None:
            check_output_path(path, what)


def _plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else ("es" if word.endswith("s") else "s"))


def _label_dtype(n_components):
    """The smallest unsigned integer dtype that holds labels 0 .. n_components - 1."""
    return np.min_scalar_type(max(0, int(n_components) - 1))


def _progress(args):
    return not args.quiet and sys.stderr.isatty()


#: Printed (stderr, a terminal only) when a command starts compiling kernels.
COMPILE_NOTE = ("fastmix: compiling kernels (once per machine, seconds; later runs load them "
                "from the cache; `fastmix compile` does it ahead of time)")


@contextlib.contextmanager
def _compile_note(enabled):
    """Print COMPILE_NOTE once, on stderr, when a kernel starts compiling in the context."""
    if not enabled:
        yield
        return
    said = []

    def note(_name):
        if not said:
            said.append(True)
            print(COMPILE_NOTE, file=sys.stderr, flush=True)

    with _compute.compile_listener(note):
        yield


def _load(path):
    import fastmix
    return fastmix.load(path)


def _apply_chunk_rows(model, args):
    """The data options that also apply to a loaded model: chunk size and device."""
    if getattr(args, "chunk_rows", None) is not None:
        model.set_params(chunk_size=args.chunk_rows)
    if getattr(args, "device", None) is not None:
        model.set_params(device=args.device)


#: ``fit`` options of ``--model bayesian`` only: (option, estimator parameter).
BAYESIAN_OPTIONS = (("--weight-concentration-prior-type", "weight_concentration_prior_type"),
                    ("--weight-concentration-prior", "weight_concentration_prior"),
                    ("--mean-precision-prior", "mean_precision_prior"),
                    ("--degrees-of-freedom-prior", "degrees_of_freedom_prior"),
                    ("--mean-prior", "mean_prior"),
                    ("--covariance-prior", "covariance_prior"))
#: ``fit`` options of ``--model gmm`` only (``lowrank`` covariances): (option, dest, default).
GMM_OPTIONS = (("--n-factors", "n_factors", None), ("--noise", "noise", "diagonal"),
               ("--missing", "missing", "error"))
#: Weight above which a component of a Bayesian model counts as used (``info``, ``fit``).
EFFECTIVE_WEIGHT = 1e-2


def _check_model_options(parser, args):
    """Options that do not apply to ``--model`` are usage errors, not silently ignored."""
    if args.model == "bayesian":
        if args.covariance_type == "lowrank":
            parser.error("--model bayesian supports --covariance-type full, tied, diag or "
                         "spherical, not lowrank")
        for opt, dest, default in GMM_OPTIONS:
            if getattr(args, dest) != default:
                parser.error(f"{opt} applies to --model gmm only")
    else:
        for opt, dest in BAYESIAN_OPTIONS:
            if getattr(args, dest) is not None:
                parser.error(f"{opt} applies to --model bayesian only")


def _numbers(text):
    """An array option's value (``--mean-prior``, ``--covariance-prior``): comma-separated
    numbers, or the path of a ``.npy`` file (float64; its shape is checked against the data's
    number of features by ``_prior_arrays``).  Bad values are usage errors naming the option."""
    text = text.strip()
    if text.lower().endswith(".npy"):
        try:
            a = np.load(text, allow_pickle=False)
        except FileNotFoundError:
            raise argparse.ArgumentTypeError(f"no such file: {text}") from None
        except (OSError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text} as a .npy array: "
                                             f"{exc}") from None
        if a.dtype.kind not in "iuf":
            raise argparse.ArgumentTypeError(f"{text} holds {a.dtype} values, not numbers")
        return np.asarray(a, dtype=np.float64)
    try:
        a = np.array([float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers or a .npy file, got {text!r}") from None
    if not np.all(np.isfinite(a)):
        raise argparse.ArgumentTypeError(f"NaN or infinity in {text!r}")
    return a


def _prior_arrays(args, D, usage_error):
    """``--mean-prior`` and ``--covariance-prior`` in the estimator's shapes for ``D``
    features: the mean as (D,); the covariance as a number (spherical), (D,) (diag) or (D, D)
    (full, tied; comma-separated values are read row by row).  A wrong count or shape, or a
    prior the estimator rejects (not positive definite, ...), is a usage error naming the
    option, before any pass over the data."""
    from . import variational
    out = {}
    m = args.mean_prior
    if m is not None:
        if m.size != D or m.ndim > 1:
            usage_error(f"argument --mean-prior: needs {D} values (one per feature), got "
                        f"{'shape ' + str(m.shape) if m.ndim > 1 else m.size}")
        out["mean_prior"] = m.reshape(D)
    c = args.covariance_prior
    kind = args.covariance_type
    if c is not None:
        want = {"spherical": (), "diag": (D,)}.get(kind, (D, D))
        if c.shape != want and not (c.ndim == 1 and c.size == int(np.prod(want))):
            what = {"spherical": "1 value", "diag": f"{D} values (one per feature)"}.get(
                kind, f"{D * D} values or a {D} x {D} .npy")
            usage_error(f"argument --covariance-prior: --covariance-type {kind} needs {what}, "
                        f"got {'shape ' + str(c.shape) if c.ndim != 1 else c.size}")
        c = c.reshape(want)
        out["covariance_prior"] = float(c) if kind == "spherical" else c
    if out:
        try:  # the estimator's own checks of the values, with placeholder data moments
            variational.make_prior(kind, "dirichlet_process", 1, D, (np.zeros(D), np.eye(D)),
                                   **out)
        except ValueError as exc:
            opt = "--mean-prior" if "mean_prior" in str(exc) else "--covariance-prior"
            usage_error(f"argument {opt}: {exc}")
    return out


def _n_effective(model):
    return int(np.sum(np.asarray(model.weights_) > EFFECTIVE_WEIGHT))


def default_model_path(data):
    """The model file ``fastmix fit`` writes without ``-o``: the data file's name (without a
    ``:/dataset`` suffix, trailing separators and its extension) + ``.gmm.npz``, in the current
    directory."""
    from .io import split_key
    path = split_key(data)[0].rstrip("/" + os.sep)
    stem = os.path.splitext(os.path.basename(path))[0] or "model"
    return stem + ".gmm.npz"


def cmd_fit(args):
    import fastmix
    if args.output is None:
        args.output = default_model_path(args.data)
    _check_outputs(("model file", args.output), ("checkpoint", args.checkpoint))
    weight_col = args.weight_column
    source = _open_data(args, weight_column=weight_col)
    common = dict(covariance_type=args.covariance_type, tol=args.tol, reg_covar=args.reg_covar,
                  max_iter=args.max_iter, n_init=args.n_init, init_params=args.init,
                  random_state=args.seed, chunk_size=args.chunk_rows, progress=_progress(args),
                  batch_size=args.batch_rows, device=args.device)
    t0 = time.perf_counter()
    with source:
        if args.model == "bayesian":
            priors = {dest: getattr(args, dest) for _, dest in BAYESIAN_OPTIONS
                      if getattr(args, dest) is not None}
            priors.update(_prior_arrays(args, source.n_features, args.usage_error))
            gm = fastmix.BayesianGaussianMixture(n_components=args.n_components, **common,
                                                 **priors)
        else:
            gm = fastmix.GaussianMixture(args.n_components, n_factors=args.n_factors,
                                         noise=args.noise, missing=args.missing,
                                         **common)
        gm.fit(source, sample_weight=args.weights,
               algorithm="online" if args.online else "batch",
               checkpoint=args.checkpoint, resume=args.resume)
    gm.save(args.output)
    if not args.quiet:
        rows = source.n_rows if source.n_rows is not None else getattr(source, "rows_read", None)
        used = (f", {_n_effective(gm)} with weight > {EFFECTIVE_WEIGHT:g}"
                if args.model == "bayesian" else "")
        print(f"fitted {args.n_components} components ({args.covariance_type}{used}) to "
              f"{'?' if rows is None else rows} x {source.n_features} "
              f"rows of {args.data} in {time.perf_counter() - t0:.2f} s: "
              f"{_plural(gm.n_iter_, 'pass' if args.online else 'iteration')}, "
              f"converged={gm.converged_}, lower bound {gm.lower_bound_:.6f}; "
              f"wrote {args.output}", file=sys.stderr)
    return 0


def cmd_score(args):
    gm = _load(args.model)
    _apply_chunk_rows(gm, args)
    with _open_data(args) as source:
        total, n, mean = gm._score_sum(source)
    print(f"{mean:.10g}")
    if not args.quiet:
        # BIC is a maximum-likelihood criterion: a Bayesian model has no parameter count
        bic = (f", BIC {-2 * total + gm._n_parameters() * np.log(n):.10g}"
               if hasattr(gm, "_n_parameters") else "")
        print(f"rows {n}, mean log-likelihood {mean:.10g}, total {total:.10g}{bic}",
              file=sys.stderr)
    return 0


def cmd_predict(args):
    from .io import NpyWriter
    _check_outputs(("output file", args.output))
    gm = _load(args.model)
    _apply_chunk_rows(gm, args)
    tail = (gm.n_components,) if args.proba else ()
    dtype = np.float64 if args.proba else _label_dtype(len(gm.weights_))
    with _open_data(args) as source:
        bar = None
        if _progress(args):
            from tqdm.auto import tqdm
            bar = tqdm(total=source.n_rows, desc="predict", unit="row", unit_scale=True,
                       file=sys.stderr)
        try:
            with NpyWriter(args.output, dtype, tail) as out:
                for _, block in gm.iter_predict(source, proba=args.proba):
                    out.write(block)
                    if bar is not None:
                        bar.update(block.shape[0])
        finally:
            if bar is not None:
                bar.close()
    if not args.quiet:
        print(f"wrote {out.rows} {'responsibility rows' if args.proba else 'labels'} to "
              f"{args.output}", file=sys.stderr)
    return 0


def cmd_impute(args):
    from .io import NpyWriter
    _check_outputs(("output file", args.output), ("std file", args.std))
    gm = _load(args.model)
    _apply_chunk_rows(gm, args)
    if not hasattr(gm, "impute"):
        raise ValueError(f"{args.model} holds a {type(gm).__name__}; impute needs a "
                         "GaussianMixture")
    D = gm.n_features_in_
    with _open_data(args) as source:
        bar = None
        if _progress(args):
            from tqdm.auto import tqdm
            bar = tqdm(total=source.n_rows, desc="impute", unit="row", unit_scale=True,
                       file=sys.stderr)
        try:
            with NpyWriter(args.output, np.float64, (D,)) as out, \
                    (NpyWriter(args.std, np.float64, (D,)) if args.std
                     else contextlib.nullcontext()) as sd:
                for _, block in gm.iter_impute(source, return_std=bool(args.std)):
                    filled, std = block if args.std else (block, None)
                    out.write(filled)
                    if sd is not None:
                        sd.write(std)
                    if bar is not None:
                        bar.update(filled.shape[0])
        finally:
            if bar is not None:
                bar.close()
    if not args.quiet:
        print(f"wrote {out.rows} imputed rows to {args.output}"
              + (f" and their conditional standard deviations to {args.std}" if args.std
                 else ""), file=sys.stderr)
    return 0


def cmd_sample(args):
    from .io import NpyWriter
    _check_outputs(("output file", args.output), ("labels file", args.labels))
    gm = _load(args.model)
    if args.n_samples < 1:
        raise ValueError(f"-n must be >= 1, got {args.n_samples}")
    gm.set_params(random_state=args.seed)
    X, labels = gm.sample(args.n_samples)
    with NpyWriter(args.output, np.float64, (X.shape[1],)) as out:
        out.write(X)
    if args.labels:
        with NpyWriter(args.labels, _label_dtype(len(gm.weights_))) as out:
            out.write(labels)
    if not args.quiet:
        print(f"wrote {X.shape[0]} x {X.shape[1]} samples to {args.output}", file=sys.stderr)
    return 0


def cmd_compile(args):
    from .precompile import precompile
    types = [t.strip() for t in args.covariance_types.split(",") if t.strip()]
    dtypes = [t.strip() for t in args.dtypes.split(",") if t.strip()]
    report = precompile(types, dtypes, n_jobs=args.jobs, verbose=not args.quiet)
    if not args.quiet:
        print(f"{report['compiled']} kernels compiled, {report['loaded']} loaded from the cache "
              f"in {report['seconds']:.1f} s; cache: {report['cache_dir']}", file=sys.stderr)
    return 0


def cmd_info(args):
    import json
    gm = _load(args.model)
    info = {"class": type(gm).__name__, "n_components": gm.n_components,
            "covariance_type": gm.covariance_type, "n_features": gm.n_features_in_,
            "converged": gm.converged_, "n_iter": gm.n_iter_, "lower_bound": gm.lower_bound_}
    if hasattr(gm, "_n_parameters"):
        info["n_parameters"] = int(gm._n_parameters())
    if hasattr(gm, "weight_concentration_prior_type"):  # a Bayesian model
        info["weight_concentration_prior_type"] = gm.weight_concentration_prior_type
        info["weight_concentration_prior"] = float(gm.weight_concentration_prior_)
        info[f"n_components_weight_above_{EFFECTIVE_WEIGHT:g}"] = _n_effective(gm)
    info["weights"] = [round(float(w), 6) for w in gm.weights_]
    if getattr(gm, "_online", None) is not None:
        info["online_steps"] = int(gm.n_steps_)
    print(json.dumps(info, indent=1))
    return 0


def _sample_rows(source, n, seed=0):
    """At most ``n`` rows of a source (n_rows, D): a seeded uniform sample of the rows when the
    source can be read at random, else rows kept with probability n / N in one pass (all rows,
    then a sample of them, when N is unknown)."""
    from .io import Stream
    rng = np.random.default_rng(seed)
    N = source.n_rows
    if N is not None and N <= n:
        rows = np.arange(N)
    elif N is not None and source.random_access:
        rows = np.sort(rng.choice(N, n, replace=False))
    else:
        rows = None
    if rows is not None and source.random_access:
        return source.take(rows)
    keep = []
    for _, X, _ in Stream(source, 4096).blocks():
        keep.append(X.copy() if N is None or N <= n else X[rng.random(X.shape[0]) < n / N])
    X = np.concatenate(keep) if keep else np.empty((0, source.n_features))
    if X.shape[0] > n:
        X = X[np.sort(rng.choice(X.shape[0], n, replace=False))]
    return X


def cmd_plot(args):
    import os

    from . import plot
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if os.path.isdir(args.output) or not os.path.isdir(out_dir):
        raise ValueError(f"cannot write {args.output}: "
                         + ("it is a directory" if os.path.isdir(args.output)
                            else f"no directory {os.path.dirname(args.output) or '.'}"))
    model = _load(args.model)
    D = int(model.n_features_in_)
    feats = None if not args.features else [int(v) for v in args.features.split(",")]
    view = args.view
    if view == "auto":
        view = "density" if D == 1 else ("2d" if D == 2 or (feats and len(feats) == 2)
                                         else "corner")
    X = None
    if args.data is not None and view != "lower-bounds":
        if args.max_points < 1:
            raise ValueError(f"--max-points must be >= 1, got {args.max_points}")
        with _open_data(args) as source:
            if source.n_features != D:
                raise ValueError(f"{args.data} has {source.n_features} features but the model "
                                 f"has {D}")
            X = _sample_rows(source, args.max_points)
    if view == "lower-bounds":
        plot.plot_lower_bounds(model, path=args.output)
    elif view == "density":
        plot.plot_density_1d(model, X, path=args.output, feature=feats[0] if feats else 0)
    elif view == "2d":
        plot.plot_2d(model, X, path=args.output, features=feats or (0, 1))
    else:
        plot.plot_corner(model, X, path=args.output, features=feats)
    if not args.quiet:
        rows = "" if X is None else f" with {X.shape[0]} data rows"
        print(f"wrote the {view} plot{rows} to {args.output}", file=sys.stderr)
    return 0


def _k_range(text):
    """-k for select: "1:20" (inclusive), "1:20:2", "3" or "1,2,5"."""
    try:
        if ":" in text:
            parts = [int(v) for v in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            step = parts[2] if len(parts) == 3 else 1
            if step < 1:
                raise ValueError
            return list(range(parts[0], parts[1] + 1, step))
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"-k must be LO:HI[:STEP], K or K1,K2,...; got {text!r}") from None


def cmd_select(args):
    import json

    import fastmix
    from .mixture._persist import _atomic_write
    _check_outputs(("model file", args.output), ("report", args.report), ("plot", args.plot))
    ks = _k_range(args.n_components)
    kinds = [k.strip() for k in args.covariance_types.split(",") if k.strip()]
    if args.plot is not None:
        from . import plot  # matplotlib missing: fail before the work
        plot._mpl()
    source = _open_data(args, weight_column=args.weight_column)
    t0 = time.perf_counter()
    with source:
        res = fastmix.select_mixture(
            source, n_components=ks, covariance_types=kinds, sample_weight=args.weights,
            criterion=args.criterion,
            heldout_fraction=args.heldout_fraction, start=args.start, tol=args.tol,
            reg_covar=args.reg_covar, max_iter=args.max_iter, random_state=args.seed,
            chunk_size=args.chunk_rows, n_factors=args.n_factors, n_init=args.n_init,
            device=args.device, progress=_progress(args))
    res.best_estimator_.save(args.output)
    if args.report is not None:
        text = json.dumps(res.to_dict(), indent=1).encode()
        _atomic_write(args.report, lambda fh: fh.write(text))
    if args.plot is not None:
        plot.selection(res, path=args.plot)
    if not args.quiet:
        b = res.best_params_
        print(f"{len(res)} candidates on {args.data} in {time.perf_counter() - t0:.2f} s, "
              f"{_plural(res.n_passes_, 'pass')} over the data "
              f"({sum(res.bytes_read_) / 2**20:.1f} MiB read); best by {args.criterion}: "
              f"K={b['n_components']}, {b['covariance_type']} (score {res.best_score_:.6g}); "
              f"wrote {args.output}", file=sys.stderr)
    return 0


def _parser():
    from . import __version__
    p = argparse.ArgumentParser(prog="fastmix", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"fastmix {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    fmt = dict(formatter_class=_DefaultsFormatter)

    f = sub.add_parser("fit", help="fit a GMM to a data file, write the model (.npz)", **fmt)
    _data_args(f)
    f.add_argument("-k", "--n-components", type=int, required=True,
                   help="number of mixture components (with --model bayesian an upper bound)")
    f.add_argument("--model", default="gmm", choices=["gmm", "bayesian"],
                   help="gmm: GaussianMixture (maximum likelihood, EM); bayesian: "
                        "BayesianGaussianMixture (variational Bayes; surplus components get "
                        "weights near 0)")
    f.add_argument("-o", "--output", default=None,
                   help="model file to write (.npz); default: DATA's file name with .gmm.npz "
                        "for its extension, in the current directory (data.npy -> "
                        "data.gmm.npz)")
    f.add_argument("--covariance-type", default="full",
                   choices=["full", "tied", "diag", "spherical", "lowrank"],
                   help="covariance of each component (diag, as in the README's example, is "
                        "much faster for many features)")
    f.add_argument("--n-factors", type=int, default=None,
                   help="factors per component for --covariance-type lowrank (default "
                        "min(10, D - 1))")
    f.add_argument("--noise", default="diagonal", choices=["diagonal", "isotropic"],
                   help="lowrank noise model (isotropic: mixture of probabilistic PCA)")
    f.add_argument("--max-iter", type=int, default=100,
                   help="EM iterations (passes with --online)")
    f.add_argument("--tol", type=float, default=1e-3,
                   help="stop when the mean log-likelihood changes by less (--model "
                        "bayesian: the lower bound, a total over the rows as in scikit-learn)")
    f.add_argument("--reg-covar", type=float, default=1e-6,
                   help="added to every covariance's diagonal")
    f.add_argument("--n-init", type=int, default=1, help="initialisations (best one kept)")
    f.add_argument("--init", default="kmeans",
                   choices=["kmeans", "k-means++", "random", "random_from_data"],
                   help="initialisation method")
    f.add_argument("--seed", type=int, default=0, help="random seed")
    f.add_argument("--weights", default=None,
                   help="sample weights: a .npy of N weights")
    f.add_argument("--weight-column", default=None,
                   help="Parquet/CSV column holding sample weights")
    f.add_argument("--online", action="store_true",
                   help="online (stepwise) EM; with --model bayesian stochastic variational "
                        "inference")
    f.add_argument("--missing", default="error", choices=["error", "marginalize"],
                   help="NaN entries (and Parquet/CSV nulls): an error, or missing values "
                        "marginalised exactly by EM")
    b = f.add_argument_group("--model bayesian (defaults as in scikit-learn)")
    b.add_argument("--weight-concentration-prior-type", default=None,
                   choices=["dirichlet_process", "dirichlet_distribution"],
                   help="prior on the weights (default dirichlet_process)")
    b.add_argument("--weight-concentration-prior", type=float, default=None,
                   help="concentration of the weight prior, > 0 (default 1 / n_components; "
                        "smaller switches off more components)")
    b.add_argument("--mean-precision-prior", type=float, default=None,
                   help="precision of the prior on the means, > 0 (default 1)")
    b.add_argument("--degrees-of-freedom-prior", type=float, default=None,
                   help="Wishart degrees of freedom, > n_features - 1 (default n_features)")
    b.add_argument("--mean-prior", type=_numbers, default=None, metavar="VALUES",
                   help="prior mean of the means: n_features comma-separated numbers or a "
                        ".npy file (default the data's mean)")
    b.add_argument("--covariance-prior", type=_numbers, default=None, metavar="VALUES",
                   help="Wishart prior covariance: full/tied a symmetric positive-definite "
                        "n_features x n_features .npy (or its values row by row, "
                        "comma-separated), diag n_features positive values, spherical one "
                        "(default the data's covariance)")
    f.add_argument("--batch-rows", type=int, default=None,
                   help="rows per online-EM update (default 65536)")
    f.add_argument("--checkpoint", default=None,
                   help="save the model to this file after every iteration")
    f.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint if it exists")
    _common(f)
    f.set_defaults(func=cmd_fit, usage_error=f.error)

    s = sub.add_parser("score", help="mean log-likelihood of a data file under a model", **fmt)
    s.add_argument("model")
    _data_args(s)
    _common(s)
    s.set_defaults(func=cmd_score)

    r = sub.add_parser("predict", help="component labels (or --proba) of a data file", **fmt)
    r.add_argument("model")
    _data_args(r)
    r.add_argument("-o", "--output", required=True,
                   help=".npy file to write (labels in the smallest unsigned integer type that "
                        "holds them)")
    r.add_argument("--proba", action="store_true", help="write responsibilities (N, K)")
    _common(r)
    r.set_defaults(func=cmd_predict)

    im = sub.add_parser("impute", help="fill the missing values (NaN, nulls) of a data file "
                                       "with their conditional means", **fmt)
    im.add_argument("model")
    _data_args(im)
    im.add_argument("-o", "--output", required=True,
                    help=".npy file to write (float64, the rows with every NaN filled)")
    im.add_argument("--std", default=None,
                    help="also write the conditional standard deviations (0 where observed) "
                         "to this .npy file")
    _common(im)
    im.set_defaults(func=cmd_impute)

    m = sub.add_parser("sample", help="draw samples from a model", **fmt)
    m.add_argument("model")
    m.add_argument("-n", "--n-samples", type=int, required=True)
    m.add_argument("-o", "--output", required=True, help=".npy file to write (n, D)")
    m.add_argument("--labels", default=None, help="also write the component labels (.npy)")
    m.add_argument("--seed", type=int, default=0, help="random seed")
    _common(m)
    m.set_defaults(func=cmd_sample)

    k = sub.add_parser("compile", help="compile the kernels ahead of time into the on-disk "
                                       "cache (fastmix.precompile)", **fmt)
    k.add_argument("--covariance-types", default="full,tied,diag,spherical",
                   help="comma-separated: full, tied, diag, spherical, lowrank")
    k.add_argument("--dtypes", default="float64,float32", help="comma-separated: float64, "
                                                               "float32")
    k.add_argument("-j", "--jobs", type=int, default=None,
                   help="processes compiling at once (default: the CPUs available)")
    _common(k)
    k.set_defaults(func=cmd_compile)

    i = sub.add_parser("info", help="describe a saved model")
    i.add_argument("model")
    _common(i)
    i.set_defaults(func=cmd_info)

    g = sub.add_parser("plot", help="draw a model (and a sample of a data file) as a PNG "
                                    "(needs matplotlib: pip install 'fastmix[plot]')")
    g.add_argument("model")
    g.add_argument("data", nargs="?", default=None,
                   help="data file (.npy, file.h5:/dataset, .zarr, .parquet, .csv), optional")
    g.add_argument("-o", "--output", required=True, help="PNG file to write")
    g.add_argument("--view", default="auto",
                   choices=["auto", "2d", "density", "corner", "lower-bounds"],
                   help="auto (default): density for 1 feature, 2d for 2, corner for more")
    g.add_argument("--features", default=None,
                   help="comma-separated feature indices (2 for 2d, 1 for density; corner: "
                        "default the first 6)")
    g.add_argument("--columns", help="comma-separated feature columns (Parquet/CSV)")
    _csv_options(g)
    g.add_argument("--max-points", type=int, default=5000,
                   help="data rows drawn (a seeded uniform sample; default 5000)")
    _common(g)
    g.set_defaults(func=cmd_plot)

    c = sub.add_parser("select", help="choose K and the covariance type by BIC / ICL / "
                                      "held-out score; write the best model (.npz)", **fmt)
    _data_args(c)
    c.add_argument("-k", "--n-components", default="1:9",
                   help="numbers of components: LO:HI (inclusive), LO:HI:STEP, or K1,K2,...")
    c.add_argument("--covariance-types", default="full,tied,diag,spherical",
                   help="comma-separated covariance types to try (also lowrank)")
    c.add_argument("--criterion", default="bic", choices=["bic", "icl", "heldout"],
                   help="selection criterion (lower is better)")
    c.add_argument("--heldout-fraction", type=float, default=0.2,
                   help="share of rows held out for --criterion heldout")
    c.add_argument("--start", default="kmeans", choices=["kmeans", "hierarchical", "split"],
                   help="starts: k-means per candidate (= separate fits), Ward's hierarchical "
                        "clustering of a sample, or split K into K+1")
    c.add_argument("-o", "--output", required=True, help="best model file to write (.npz)")
    c.add_argument("--weights", default=None,
                   help="sample weights: a .npy of N weights")
    c.add_argument("--weight-column", default=None,
                   help="Parquet/CSV column holding sample weights")
    c.add_argument("--report", default=None, help="JSON report of every candidate to write")
    c.add_argument("--plot", default=None,
                   help="PNG of the criterion against K to write (needs matplotlib)")
    c.add_argument("--n-factors", type=int, default=None, help="factors for lowrank")
    c.add_argument("--max-iter", type=int, default=100, help="EM iterations per candidate")
    c.add_argument("--n-init", type=int, default=1,
                   help="initialisations per candidate (the best one kept)")
    c.add_argument("--tol", type=float, default=1e-3,
                   help="stop when the mean log-likelihood changes by less")
    c.add_argument("--reg-covar", type=float, default=1e-6,
                   help="added to every covariance's diagonal")
    c.add_argument("--seed", type=int, default=0, help="random seed (starts, held-out split)")
    _common(c)
    c.set_defaults(func=cmd_select)

    sub.add_parser("demo", help="fit generated data and compare with the truth "
                                "(fastmix demo --help)", add_help=False)
    return p


#: Errors reported as one line (the user's input or environment, not a fastmix bug).
USER_ERRORS = (ValueError, TypeError, OSError, ImportError, FloatingPointError, KeyError,
               MemoryError, GPUUnavailableError)


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """warnings.showwarning for the command line: ``warning: Category: message``, one line."""
    text = " ".join(str(message).split())
    print(f"warning: {category.__name__}: {text}", file=sys.stderr if file is None else file)


def _interrupted(args):
    ck = getattr(args, "checkpoint", None)
    if ck is None:
        return "fastmix: interrupted"
    import os
    if os.path.exists(ck):
        return (f"fastmix: interrupted; checkpoint {ck} holds the last finished iteration: "
                f"run the same command with --checkpoint {ck} --resume to continue")
    return f"fastmix: interrupted before the first checkpoint ({ck}) was written"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastmix`` command line (the console script and ``python -m fastmix``).

    Commands: ``demo``, ``fit``, ``score``, ``predict``, ``impute``, ``sample``, ``info``,
    ``plot``, ``select`` and ``compile``; ``fastmix COMMAND --help`` describes each.  Errors in
    the input print one line, ``fastmix: error: ...``, on stderr instead of a traceback.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; default: ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0 on success, 1 for an error in the data or model files, 2 for a
        usage error.

    Examples
    --------
    Messages go to stderr (``--quiet`` leaves them out):

    >>> import numpy as np
    >>> from fastmix.cli import main
    >>> np.save("data.npy", np.random.default_rng(0).normal(size=(500, 2)))
    >>> main(["fit", "data.npy", "-k", "2", "--seed", "0", "-o", "model.npz", "--quiet"])
    0
    >>> main(["predict", "model.npz", "data.npy", "-o", "labels.npy", "--quiet"])
    0
    >>> np.load("labels.npy").shape
    (500,)
    """
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        return _main(argv)


def _main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":
        try:
            with _compile_note(sys.stderr.isatty()):
                return demo(argv[1:])
        except USER_ERRORS as exc:  # e.g. --device cuda without a GPU: one line
            print(f"fastmix: error: {str(exc).splitlines()[0] if str(exc) else exc!r}",
                  file=sys.stderr)
            return 1
    parser = _parser()
    if not argv:
        parser.print_usage(sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
        if getattr(args, "resume", False) and not args.checkpoint:
            parser.error("--resume needs --checkpoint FILE")
        if args.command == "fit":
            _check_model_options(parser, args)
    except SystemExit as exc:  # usage errors (status 2) and --help (status 0)
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        with _compile_note(_progress(args)):
            return args.func(args)
    except SystemExit as exc:  # a usage error found once the data is open (usage_error)
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print(_interrupted(args), file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if args.debug:
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, FileNotFoundError) and exc.filename:
            msg = f"no such file: {exc.filename}"
        print(f"fastmix: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
