"""Sphinx configuration of the fastmix documentation (``make docs``)."""
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document the fastmix of this checkout

import fastmix  # noqa: E402

project = "fastmix"
author = "the fastmix developers"
copyright = "the fastmix developers"
version = release = fastmix.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "matplotlib.sphinxext.plot_directive",  # the figures of the user guide (extra ``plot``)
]

# Markdown (MyST): $...$ and $$...$$ math, GitHub-style heading anchors so that the
# "#5-exact-em-kernels" links inside algorithms.md and design.md resolve.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 4
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}

exclude_patterns = ["_build", "README.md", "Thumbs.db", ".DS_Store"]

# API reference: autosummary writes one page per public name into api/generated/.
autosummary_generate = True
# Inherited members are shown (the estimators share methods through mixins, e.g.
# ``mixture._shared.GaussianMixtureMethods``); ``_skip_foreign`` leaves out what is inherited
# from outside fastmix (scikit-learn's base classes, built-in exception and tuple methods).
autodoc_default_options = {"members": True, "inherited-members": True}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# numpydoc validation: any failure of these checks on a documented object is a Sphinx warning,
# so it fails `make docs` (-W).  The set every public class, method and function holds:
#   GL08 has a docstring                SS01 has a one-line summary   SS03 ending with a period
#   SS05 starting with a verb           SS06 fitting on one line
#   PR01 every parameter documented     PR02 no unknown parameter     PR03 in signature order
#   PR04 each with a type               PR06 types spelled int/bool/str  PR07 and a description
#   PR10 "name : type" spacing          RT01 a Returns section if it returns something
#   RT03 each return with a description YD01 a Yields section for generators
#   EX01 an Examples section (the examples run in `make test`, tests/test_docs.py)
# Not checked: extended summaries (ES01), See Also (SA01), capitalisation and final periods of
# descriptions (PR08/PR09/RT04/RT05), type punctuation (PR05), GL01-GL03 layout.
numpydoc_validation_checks = {"GL08", "SS01", "SS03", "SS05", "SS06", "PR01", "PR02", "PR03",
                              "PR04", "PR06", "PR07", "PR10", "RT01", "RT03", "YD01", "EX01"}
# A class's constructor is documented (and validated) in the class docstring.
numpydoc_validation_exclude = {r"\.__init__$"}

plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]

html_theme = "pydata_sphinx_theme"
html_title = f"fastmix {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}


# -- benchmarks: one page per bench/results/*.md, with the figures that belong to it ----------
# a relative link to a file other than another results page (those are pages here too)
_RELATIVE_LINK = re.compile(r"\]\((?![a-z]+:|#|/)(?![^)\s]*\.md(?:#[^)\s]*)?\))([^)\s]+)\)")


def _write_benchmark_pages():
    """Generate docs/benchmarks/<name>.md from bench/results/ (the folder is git-ignored).

    A figure ``bench/results/<stem>*.png`` belongs to the results file with the longest name
    ``<stem>.md`` that its name starts with; figures matching no results file get a page of
    their own.
    """
    results = ROOT / "bench" / "results"
    out = DOCS / "benchmarks"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.md"):
        old.unlink()
    mds = sorted(results.glob("*.md"))
    stems = sorted((p.stem for p in mds), key=len, reverse=True)
    figures = {s: [] for s in stems}
    orphans = []
    for png in sorted(results.glob("*.png")):
        owner = next((s for s in stems if png.stem == s or png.stem.startswith(s + "_")), None)
        (figures[owner] if owner else orphans).append(png.name)
    for md in mds:
        # the page is a copy of the results file whose relative links to files (figures, the
        # JSON twins of the tables) point back into bench/results/, where the files are
        body = _RELATIVE_LINK.sub(r"](../../bench/results/\1)", md.read_text(encoding="utf-8"))
        text = [body]
        for name in figures[md.stem]:
            text.append(f"\n![{name}](../../bench/results/{name})\n")
        (out / md.name).write_text("".join(text))
    if orphans:
        body = "# Other figures\n\n" + "".join(
            f"## {n}\n\n![{n}](../../bench/results/{n})\n\n" for n in orphans)
        (out / "zz-other-figures.md").write_text(body)


_write_benchmark_pages()


def _skip_foreign(app, what, name, obj, skip, options):
    """Leave out members fastmix does not define: the metadata-routing methods scikit-learn adds
    (``set_fit_request`` ...) and the methods of built-in bases (``tuple.count`` of a named
    tuple)."""
    module = getattr(obj, "__module__", None) or ""
    if module.startswith("sklearn.") or (name.startswith("set_") and name.endswith("_request")):
        return True
    defined_in = getattr(obj, "__module__", None) or getattr(
        getattr(obj, "fget", None), "__module__", None)
    if what == "class" and defined_in is not None and not defined_in.startswith("fastmix"):
        return True  # inherited from another library's class
    owner = getattr(obj, "__objclass__", None)
    if owner is not None and getattr(owner, "__module__", "") == "builtins":
        return True
    if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True  # a named tuple's field: documented in the class docstring
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign)
