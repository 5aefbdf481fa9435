"""Persistence: the versioned ``.npz`` model format (``load``, a registry of estimator
classes, atomic writes) and fit checkpoints."""
import json
import os
from typing import Any

import numpy as np

from .. import io as sources
from ..em import EMResult
from ._base import _clone, _short

FORMAT_VERSION = 1

#: The estimator classes ``load`` rebuilds, by the class name saved in the file
#: (filled by ``register``).
MODEL_CLASSES: dict[str, Any] = {}


def register(cls):
    """Class decorator: ``load`` rebuilds files saved by ``cls`` (through its
    ``_from_saved`` classmethod)."""
    MODEL_CLASSES[cls.__name__] = cls
    return cls


def _atomic_write(path, write):
    """Write a file through a temporary file in the same directory and an atomic rename: a
    reader (or a crash) never sees a half-written file."""
    path = sources.check_output_path(path)  # errors name the path given, not the temp file
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fit_meta(est, scalars):
    """The ``meta`` entry of a saved EM-type model (GaussianMixture, BayesianGaussianMixture):
    format, class, constructor ``scalars``, the fit's bookkeeping and, for a checkpoint, what
    it was fitted on."""
    meta = {"format_version": FORMAT_VERSION, "class": type(est).__name__,
            "params": scalars, "converged_": est.converged_, "n_iter_": est.n_iter_,
            "lower_bound_": est.lower_bound_, "lower_bounds_": est.lower_bounds_,
            "n_features_in_": est.n_features_in_}
    if getattr(est, "_fitted_on", None) is not None:  # a checkpoint: what it was fitted on
        meta["fitted_on"] = est._fitted_on
    return meta


def _save_online(est, meta, arrays, **extra):
    """The running statistics of online EM / SVI (``est._online``), when there are any, into
    ``meta["online"]`` (with ``extra`` scalars) and ``arrays``: partial_fit continues after
    load."""
    state = getattr(est, "_online", None)
    if state is None:
        return
    st = state.stats
    meta["online"] = {"t": int(state.t), "ll": float(st.ll), "ws": float(st.ws), **extra,
                      "n_steps_": int(getattr(est, "n_steps_", state.t + 1))}
    for f in ("nk", "s1", "s2", "centre", "gcentre"):
        arrays["online__" + f] = getattr(st, f)


def load(path: str | os.PathLike) -> Any:
    """Load a model written by ``save`` (any fastmix estimator).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file.

    Returns
    -------
    GaussianMixture, BayesianGaussianMixture, BigLearnGaussianMixture, SGDGaussianMixture or \
    GMMExpansion
        The fitted model, of the class that saved it.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        For a file that is not a fastmix model, is truncated or damaged, or comes from a newer
        format version.

    Examples
    --------
    >>> import numpy as np
    >>> import fastmix
    >>> X = np.random.default_rng(0).normal(size=(200, 2))
    >>> fastmix.GaussianMixture(2, random_state=0).fit(X).save("model.npz")
    >>> model = fastmix.load("model.npz")
    >>> type(model).__name__, model.means_.shape
    ('GaussianMixture', (2, 2))
    """
    if os.path.isdir(path):
        raise ValueError(f"{path!s} is a directory, not a fastmix model file (.npz)")
    with open(path, "rb") as fh:  # a missing file raises FileNotFoundError, as open() does
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        raise ValueError(f"{path!s} is not a fastmix model file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile.BadZipFile, truncated members, CRC errors, ...
        raise ValueError(f"{path!s} is not a readable fastmix model file ({exc})") from exc
    if "meta" not in arrays:
        raise ValueError(f"{path!s} is not a fastmix model file (no metadata)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError as exc:
        raise ValueError(f"{path!s}: unreadable model metadata ({exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path!s}: model metadata is not a mapping")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path!s} has model format version {version!r}; this fastmix reads "
                         f"versions up to {FORMAT_VERSION}. Upgrade fastmix.")
    cls = MODEL_CLASSES.get(str(meta.get("class")))
    if cls is None:
        raise ValueError(f"{path!s} holds an unknown model class {meta.get('class')!r}")
    try:
        model = cls._from_saved(meta, arrays)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        raise ValueError(f"{path!s}: damaged fastmix model file ({type(exc).__name__}: {exc})") \
            from exc
    return model


class CheckpointMixin:
    """Checkpoints of a running fit (``fit(checkpoint=..., resume=True)``): the saver called
    after each iteration and the reader that checks a checkpoint fits this run."""

    #: Parameters that may change between a checkpoint and its resumption (they do not change
    #: the iterations already done); every other parameter must match.
    _RESUME_FREE = ("max_iter", "progress", "verbose", "verbose_interval", "device",
                    "warm_start", "n_init")
    #: The registered class whose checkpoints this estimator resumes from.
    _CHECKPOINT_CLASS = "GaussianMixture"

    def _checkpoint_params(self):
        """The driver's parameters of a loaded checkpoint (what the fit loop continues from)."""
        return self._params()

    def _from_checkpoint(self, path, D, algorithm, record=None):
        """The fit state saved in checkpoint ``path``; ValueError when it was written for other
        data (``record``: ``io.data_record`` of this fit's data) or other parameters."""
        ck = self._load_checkpoint(path, D, algorithm, record)
        return EMResult(ck._checkpoint_params(), ck.lower_bound_, ck.n_iter_, ck.converged_,
                        list(ck.lower_bounds_), [], state=getattr(ck, "_online", None))

    def _load_checkpoint(self, path, D, algorithm, record=None):
        """The estimator saved in checkpoint ``path``, checked against this fit (see
        ``_from_checkpoint``)."""
        ck = load(path)
        if not isinstance(ck, MODEL_CLASSES[self._CHECKPOINT_CLASS]):
            raise ValueError(f"checkpoint {path!s} holds a {type(ck).__name__}, not a "
                             f"{type(self).__name__} checkpoint")
        mine, theirs = self.get_params(), ck.get_params()
        diff = []
        for name in mine:
            if name in self._RESUME_FREE:
                continue
            a, b = theirs.get(name), mine[name]
            if name == "random_state" and not all(v is None or isinstance(v, (int, np.integer))
                                                  for v in (a, b)):
                continue  # a generator is not saved; nothing to compare
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                same = a is not None and b is not None and np.array_equal(
                    np.asarray(a, np.float64), np.asarray(b, np.float64))
            else:
                same = a == b
            if not same:
                diff.append(f"{name}={_short(a)} vs {_short(b)}")
        saved = getattr(ck, "_fitted_on", None)
        if saved is None:
            raise ValueError(f"checkpoint {path!s} does not record the data it was fitted on "
                             "(not written as a checkpoint, or by an older fastmix); fit without "
                             "resume or remove it")
        if record is not None:
            diff += sources.record_differences(saved, record)
        if diff:
            raise ValueError(f"checkpoint {path!s} was written for other data or parameters "
                             f"(checkpoint vs now: {'; '.join(diff)}); start over without "
                             "resume (--resume) or use another checkpoint file")
        if ck.n_features_in_ != D:
            raise ValueError(f"checkpoint {path!s} is for {ck.n_features_in_} features, the data "
                             f"have {D}")
        if (getattr(ck, "_online", None) is not None) != (algorithm == "online"):
            raise ValueError(f"checkpoint {path!s} was written by a different algorithm")
        return ck

    def _checkpoint_saver(self, path, algorithm, record=None, data=None, prepare=None):
        """``save(result)``: writes a snapshot of ``result`` to ``path``; ``prepare(snap)``, if
        given, sets what else the estimator needs on the snapshot before it is written."""
        def save(result):
            snap = _clone(self)
            if prepare is not None:
                prepare(snap)
            if record is not None:  # a CSV file's row count is known after the first pass
                n = record["n_rows"] if record["n_rows"] is not None else data.n_rows
                snap._fitted_on = dict(record, n_rows=None if n is None else int(n))
            snap._set_params_from(result.params)
            snap.converged_ = bool(result.converged)
            snap.n_iter_ = int(result.n_iter)
            snap.lower_bound_ = float(result.lower_bound)
            snap.lower_bounds_ = list(result.lower_bounds)
            snap.n_features_in_ = result.params.means.shape[1]
            snap._online = getattr(result, "state", None) if algorithm == "online" else None
            snap.save(path)
        return save
