"""Sphinx configuration of the fastfactor documentation.

Build (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Pages that other parts of the project add are picked up when they exist:

- ``least_squares.rst``, ``stochastic.rst``, ``gpu.rst``: listed by the
  ``toctree-if-exists`` directive in ``index.rst``. Text that links to one of them
  goes into an ``.. if-page-exists:: <name>`` block, dropped while the page is
  missing (``.. only::`` would not do: Sphinx resolves the references in it anyway).
- ``examples/*.rst`` pages and ``examples/*.py`` scripts (with ``examples/<name>.png``
  plots): listed by the ``example-gallery`` directive (``examples.rst``).
- ``_generated/perf_table.rst`` (or, failing it, ``../asv_benchmarks/PERFORMANCE.md``,
  converted): inserted by the ``perf-table`` directive (``performance.rst``).
"""

import ast
import os
import re
import sys
import warnings

from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # document the source tree, installed or not

import fastfactor  # noqa: E402

project = "fastfactor"
author = "the fastfactor developers"
copyright = "the fastfactor developers"
release = fastfactor.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "numpydoc",
]

exclude_patterns = ["_build", "_generated", "_scripts", "Thumbs.db", ".DS_Store"]
root_doc = "index"
html_theme = "alabaster"
html_theme_options = {"description": "Adafactor as a SciPy optimizer", "fixed_sidebar": True}
html_static_path = []
pygments_style = "sphinx"

autodoc_default_options = {"member-order": "bysource"}
autosummary_generate = False
numpydoc_show_class_members = False  # methods are listed explicitly in api.rst
numpydoc_xref_param_type = False

# The doctest builder (``-b doctest``) runs the ``>>>`` blocks of the pages too.
doctest_global_setup = "import numpy as np"


# --- SciPy-style "Options" sections -----------------------------------------------------
# numpydoc drops sections it does not know. Before it runs, an "Options" section is
# renamed "Other Parameters" (a parameter list, rendered the same way); after it runs,
# the rendered field name is changed back to "Options".

warnings.filterwarnings("ignore", message="Unknown section Options", category=UserWarning)
_OPTIONS_HEADER = re.compile(r"^(\s*)Options\s*$")
_RENAMED = set()  # the objects whose "Options" section was renamed


def _options_before_numpydoc(app, what, name, obj, options, lines):
    if any(line.strip() == "Other Parameters" for line in lines):
        return
    for i in range(len(lines) - 1):
        m = _OPTIONS_HEADER.match(lines[i])
        under = lines[i + 1].strip()
        if m and under and set(under) == {"-"}:
            lines[i] = m.group(1) + "Other Parameters"
            lines[i + 1] = m.group(1) + "-" * len("Other Parameters")
            _RENAMED.add(name)
            return


def _options_after_numpydoc(app, what, name, obj, options, lines):
    if name not in _RENAMED:
        return
    for i, line in enumerate(lines):
        if line.startswith(":Other Parameters:"):
            lines[i] = ":Options:" + line[len(":Other Parameters:"):]


# --- the example gallery ----------------------------------------------------------------

def _script_doc(path):
    """(title, body lines) from a script's module docstring."""
    with open(path, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    lines = doc.splitlines()
    title = lines[0].strip().rstrip(".") if lines else os.path.basename(path)
    return title, lines[1:]


class ExampleGallery(Directive):
    """``.. example-gallery::`` lists what ``examples/`` holds.

    Each ``examples/<name>.rst`` page goes into a toctree. Each ``examples/<name>.py``
    script without such a page gets a section here: the first line of its docstring
    as the title, the rest of the docstring, its plot ``examples/<name>.png`` if
    present, and its source.
    """

    has_content = False

    def run(self):
        env = self.state.document.settings.env
        folder = os.path.join(env.srcdir, "examples")
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        pages = [n[:-4] for n in names if n.endswith(".rst")]
        scripts = [n[:-3] for n in names if n.endswith(".py") and not n.startswith("_")
                   and n[:-3] not in pages]
        out = []
        if pages:
            out += [".. toctree::", "   :maxdepth: 1", ""]
            out += [f"   examples/{p}" for p in pages] + [""]
        for name in scripts:
            path = os.path.join(folder, name + ".py")
            env.note_dependency(path)
            title, body = _script_doc(path)
            out += [title, "-" * max(len(title), 3), ""] + body + [""]
            if name + ".png" in names:
                out += [f".. image:: examples/{name}.png", f"   :alt: {title}", ""]
            out += [f"Source: ``examples/{name}.py``", "",
                    f".. literalinclude:: examples/{name}.py", "   :language: python", ""]
        if not out:
            out = ["No examples yet."]
        self.state_machine.insert_input(StringList(out, source=os.path.join(folder, "*")),
                                        os.path.join(folder, "*"))
        return []


# --- content that depends on an optional page -------------------------------------------

def _page_exists(env, name):
    """Whether ``name`` is a page: a file with one of the source suffixes (``.rst``)."""
    return any(os.path.exists(os.path.join(env.srcdir, name + suffix))
               for suffix in env.config.source_suffix)


class IfPageExists(Directive):
    """``.. if-page-exists:: name``: the content, sections allowed, when the page
    ``name`` exists in the documentation; nothing otherwise."""

    required_arguments = 1
    has_content = True

    def run(self):
        env = self.state.document.settings.env
        if _page_exists(env, self.arguments[0]):
            source = os.fspath(env.doc2path(env.docname))
            self.state_machine.insert_input(StringList(list(self.content), source=source), source)
        return []


class ToctreeIfExists(Directive):
    """``.. toctree-if-exists::``: a toctree of those listed pages that exist (none:
    nothing). Takes the ``caption`` and ``maxdepth`` options of ``toctree``."""

    has_content = True
    option_spec = {"caption": directives.unchanged_required,
                   "maxdepth": directives.nonnegative_int}

    def run(self):
        env = self.state.document.settings.env
        pages = [p.strip() for p in self.content if p.strip() and _page_exists(env, p.strip())]
        if not pages:
            return []
        lines = [".. toctree::"] + [f"   :{k}: {v}" for k, v in self.options.items()]
        lines += [""] + [f"   {p}" for p in pages]
        source = os.fspath(env.doc2path(env.docname))
        self.state_machine.insert_input(StringList(lines, source=source), source)
        return []


# --- the performance table --------------------------------------------------------------

PERF_RST = os.path.join(HERE, "_generated", "perf_table.rst")
PERF_MD = os.path.join(ROOT, "asv_benchmarks", "PERFORMANCE.md")


def _md_inline(text):
    """Markdown inline code to reStructuredText (``x`` instead of `x`)."""
    def code(m):
        after = m.string[m.end():m.end() + 1]
        return "``" + m.group(1) + "``" + ("\\ " if after and (after.isalnum() or after == "_") else "")
    return re.sub(r"(?<!`)`([^`]+)`(?!`)", code, text)


def _md_cells(line):
    return [_md_inline(c.strip()) for c in line.strip().strip("|").split("|")]


def markdown_to_rst(text):
    """The subset of Markdown that ``asv_benchmarks/perf_table.py`` writes, as rst.

    ``# title`` is dropped (the page has its own), ``## heading`` becomes a section,
    pipe tables become ``list-table`` directives, other lines are kept with their
    inline code converted.
    """
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("# "):
            i += 1
        elif line.startswith("## "):
            title = _md_inline(line[3:].strip())
            out += [title, "-" * len(title), ""]
            i += 1
        elif line.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(lines[i])
                i += 1
            if len(rows) >= 2 and set(rows[1].replace("|", "").replace(":", "").strip()) <= {"-", " "}:
                header, body = _md_cells(rows[0]), [_md_cells(r) for r in rows[2:]]
            else:
                header, body = None, [_md_cells(r) for r in rows]
            out += [".. list-table::"]
            if header:
                out += ["   :header-rows: 1"]
            out += [""]
            for row in ([header] if header else []) + body:
                for j, cell in enumerate(row):
                    out.append((("   * - " if j == 0 else "     - ") + cell).rstrip())
            out += [""]
        else:
            out.append(_md_inline(line))
            i += 1
    return out


class PerfTable(Directive):
    """``.. perf-table::`` inserts ``_generated/perf_table.rst`` (or the converted
    ``asv_benchmarks/PERFORMANCE.md``) when present, else its content."""

    has_content = True

    def run(self):
        env = self.state.document.settings.env
        if os.path.exists(PERF_RST):
            env.note_dependency(PERF_RST)
            with open(PERF_RST, encoding="utf-8") as f:
                lines, source = f.read().splitlines(), PERF_RST
        elif os.path.exists(PERF_MD):
            env.note_dependency(PERF_MD)
            with open(PERF_MD, encoding="utf-8") as f:
                lines, source = markdown_to_rst(f.read()), PERF_MD
        else:
            lines, source = list(self.content), os.fspath(env.doc2path(env.docname))
        self.state_machine.insert_input(StringList(lines, source=source), source)
        return []


def _always_reread(app, env, added, changed, removed):
    """Pages whose content depends on files that may appear later."""
    return [d for d in ("index", "usage", "examples", "performance") if d in env.found_docs]


def setup(app):
    app.connect("autodoc-process-docstring", _options_before_numpydoc, priority=100)
    app.connect("autodoc-process-docstring", _options_after_numpydoc, priority=900)
    app.add_directive("example-gallery", ExampleGallery)
    app.add_directive("perf-table", PerfTable)
    app.add_directive("if-page-exists", IfPageExists)
    app.add_directive("toctree-if-exists", ToctreeIfExists)
    app.connect("env-get-outdated", _always_reread)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
