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
    assert "unknown command" in capsys.readouterr().err
    assert main(["--help"]) == 0


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "fastmix", "demo", "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "--covariance-type" in r.stdout
