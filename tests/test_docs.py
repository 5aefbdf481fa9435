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


def _api_reference_names():
    """The names docs/api.md documents (its autosummary tables), as (module, name) pairs."""
    module, names, in_table = "fastmix", [], False
    for line in (ROOT / "docs" / "api.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\.\. currentmodule:: (\S+)", line.strip())
        if m:
            module = m.group(1)
        elif line.strip().startswith(".. autosummary::"):
            in_table = True
        elif in_table and line.startswith("```"):
            in_table = False
        elif in_table and re.fullmatch(r"   [A-Za-z_]\w*", line):
            names.append((module, line.strip()))
    return names


API_NAMES = _api_reference_names()


def test_api_reference_is_read():
    assert ("fastmix", "GaussianMixture") in API_NAMES
    assert ("fastmix.io", "open_path") in API_NAMES and ("fastmix.metrics", "ipe") in API_NAMES


def _unannotated(func):
    import inspect
    sig = inspect.signature(func)
    missing = [p.name for p in sig.parameters.values()
               if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
    if sig.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def _public_callables(obj):
    """A function itself; for a class, its constructor and public methods defined by fastmix."""
    import inspect
    if not inspect.isclass(obj):
        return {obj.__name__: obj}
    if issubclass(obj, (Warning, Exception)) or hasattr(obj, "_fields"):
        return {}  # exceptions, warnings, named tuples: no code of their own to annotate
    found = {}
    if obj.__init__ is not object.__init__:
        found["__init__"] = obj.__init__
    for attr, value in inspect.getmembers(obj, inspect.isfunction):
        if not attr.startswith("_") and value.__module__.startswith("fastmix"):
            found[attr] = value
    return found


@pytest.mark.parametrize("module,name", API_NAMES, ids=lambda x: x)
def test_public_api_is_annotated(module, name):
    """Every function of the API reference, and every class's constructor and public methods,
    has a type hint on each parameter and its return (checked against the code by mypy in
    `make lint`)."""
    obj = getattr(importlib.import_module(module), name)
    missing = {attr: m for attr, f in _public_callables(obj).items() if (m := _unannotated(f))}
    assert missing == {}, f"{module}.{name}: parameters without type hints: {missing}"
