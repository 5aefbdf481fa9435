"""The documentation's examples run.

* Every ```pycon block of docs/user_guide/*.md is a doctest.  The blocks of one page run in
  order in one namespace (later examples use the names of earlier ones).
* Every docstring example in the fastmix package (the Examples sections of the API reference)
  is a doctest; each docstring runs in a namespace of its own, as ``python -m doctest`` would.

Both run in a temporary working directory, so files the examples write do not land in the
checkout.  Only the standard library's doctest is needed, not Sphinx.
"""
import doctest
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "user_guide"
PACKAGE = ROOT / "fastmix"
BLOCK = re.compile(r"^```pycon[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
# Pages that show no runnable example: the table of contents, and the GPU page (CI has no GPU).
WITHOUT_EXAMPLES = {"index.md", "gpu.md"}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def examples(page):
    """The page's ```pycon blocks as one doctest, each block keeping its line numbers."""
    text = page.read_text(encoding="utf-8")
    parser = doctest.DocTestParser()
    found = []
    for m in BLOCK.finditer(text):
        line = text.count("\n", 0, m.start(1))
        for ex in parser.get_examples(m.group(1)):
            ex.lineno += line
            found.append(ex)
    return doctest.DocTest(found, {"__name__": "__docs__"}, page.name, str(page), 0, text)


PAGES = sorted(GUIDE.glob("*.md"))


def test_every_page_but_the_listed_ones_has_examples():
    with_examples = {p.name for p in PAGES if examples(p).examples}
    assert with_examples == {p.name for p in PAGES} - WITHOUT_EXAMPLES


@pytest.mark.parametrize("page", [p for p in PAGES if p.name not in WITHOUT_EXAMPLES],
                         ids=lambda p: p.name)
def test_user_guide_examples(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    test = examples(page)
    report = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    result = runner.run(test, out=report.append, clear_globs=True)
    assert result.attempted > 0
    assert result.failed == 0, "".join(report)


def _module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# Modules whose source holds a docstring example (found without importing them).
MODULES_WITH_EXAMPLES = sorted(_module_name(p) for p in PACKAGE.rglob("*.py")
                               if ">>> " in p.read_text(encoding="utf-8"))


def test_docstring_examples_are_found():
    assert {"fastmix.io.base", "fastmix.metrics", "fastmix.plot"} <= set(MODULES_WITH_EXAMPLES)


@pytest.mark.parametrize("name", MODULES_WITH_EXAMPLES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    assert tests, f"{name} mentions '>>> ' but no docstring of it holds an example"
    report = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in sorted(tests, key=lambda t: t.name):
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)
