"""Kernel compilation made visible: ``kernels.compile_listener`` and the command line's one-line
note when a command starts compiling."""
import contextlib
import sys

import numpy as np
from numba import njit

from fastmix import cli, kernels


def _fresh_function():
    """A new jitted function (compiles on its first call, never cached)."""
    @njit(cache=False)
    def plus_one(x):
        return x + 1
    return plus_one


def test_compile_listener_reports_compiles_inside_the_context_only():
    seen = []
    f, g = _fresh_function(), _fresh_function()
    with kernels.compile_listener(seen.append):
        f(1)
        f(2)  # compiled already
        f(1.5)  # a new signature
    g(1)
    assert seen == ["_fresh_function.<locals>.plus_one"] * 2


def test_note_printed_once_when_enabled(capsys):
    with cli._compile_note(True):
        _fresh_function()(1)
        _fresh_function()(1)
    assert capsys.readouterr().err == cli.COMPILE_NOTE + "\n"
    with cli._compile_note(False):
        _fresh_function()(1)
    assert capsys.readouterr().err == ""


def test_commands_show_the_note_only_on_a_terminal_without_quiet(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(50, 2)))
    assert cli.main(["fit", str(tmp_path / "x.npy"), "-k", "2", "-o", str(tmp_path / "m.npz"),
                     "--quiet"]) == 0
    calls = []

    @contextlib.contextmanager
    def recorder(enabled):
        calls.append(enabled)
        yield

    monkeypatch.setattr(cli, "_compile_note", recorder)
    score = ["score", str(tmp_path / "m.npz"), str(tmp_path / "x.npy")]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert cli.main(score) == 0
    assert cli.main(score + ["--quiet"]) == 0
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert cli.main(score) == 0
    assert calls == [True, False, False]
