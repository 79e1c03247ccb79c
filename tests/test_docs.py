"""The documentation: it builds with warnings as errors, and its examples run.

- the Sphinx HTML build of ``docs/`` (``-W -n``: warnings are errors and every
  cross-reference resolves), in a temporary directory;
- the offline inventories of SciPy, NumPy, Numba and Dask (``docs/_inventories/``)
  list every name the docs refer to (``docs/_scripts/make_inventories.py --check``);
- the ``>>>`` examples of the package's docstrings (as ``pytest --doctest-modules
  fastfactor`` would run them);
- the ``>>>`` examples of the pages (``docs/**/*.rst``), with the option flags of
  ``sphinx.ext.doctest``.
- the README's examples: each ``python`` code block whose next code block is a
  ``text`` one runs, and prints exactly that text.

The build is skipped when Sphinx or numpydoc is not installed (``pip install
".[docs]"``); the doctests always run.
"""

import doctest
import importlib
import os
import pkgutil
import re
import subprocess
import sys

import pytest

import fastfactor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")

#: Modules that need an optional dependency; skipped when it cannot be imported.
OPTIONAL_MODULES = ("fastfactor._backends.cuda", "fastfactor.dask")  # and their modules

#: The flags sphinx.ext.doctest uses by default.
FLAGS = doctest.ELLIPSIS | doctest.IGNORE_EXCEPTION_DETAIL | doctest.DONT_ACCEPT_TRUE_FOR_1


def _modules():
    names = ["fastfactor"]
    for info in pkgutil.walk_packages(fastfactor.__path__, "fastfactor."):
        names.append(info.name)
    return names


def _pages():
    pages = []
    for folder, dirs, files in os.walk(DOCS):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_build", ".")))
        pages += [os.path.relpath(os.path.join(folder, f), DOCS) for f in sorted(files)
                  if f.endswith(".rst")]
    return pages


def test_sphinx_build(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    cmd = [sys.executable, "-m", "sphinx", "-W", "-n", "--keep-going", "-q", "-b", "html",
           "-d", str(tmp_path / "doctrees"), DOCS, str(tmp_path / "html")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"sphinx build failed ({' '.join(cmd)}):\n{proc.stdout}\n{proc.stderr}")
    assert (tmp_path / "html" / "index.html").exists()


def test_inventories_current():
    script = os.path.join(DOCS, "_scripts", "make_inventories.py")
    proc = subprocess.run([sys.executable, script, "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", _modules())
def test_module_doctests(name):
    try:
        module = importlib.import_module(name)
    except (ImportError, OSError) as exc:
        if name.startswith(OPTIONAL_MODULES):
            pytest.skip(f"{name} needs an optional dependency: {exc}")
        raise
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in finder.find(module, name, globs={}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


@pytest.mark.parametrize("page", _pages())
def test_page_doctests(page):
    result = doctest.testfile(os.path.join(DOCS, page), module_relative=False,
                              optionflags=FLAGS, report=True, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {page}"


def test_markdown_tables_convert(monkeypatch):
    """The docs' extension turns the benchmark suite's Markdown tables into valid
    reStructuredText."""
    docutils_core = pytest.importorskip("docutils.core")
    monkeypatch.syspath_prepend(os.path.join(DOCS, "_ext"))
    markdown = importlib.import_module("fastfactor_docs.markdown")
    md = ("# title\n\nSome `code`s and **bold**.\n\n## A table\n\n"
          "| a | b |\n|---|---:|\n| `x` | 1.0 ✓ |\n| y | |\n")
    rst = "\n".join(markdown.markdown_to_rst(md))
    doctree = docutils_core.publish_doctree(
        rst, settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": False})
    messages = [m.astext() for m in doctree.findall()
                if m.tagname == "system_message" and m["level"] >= 2]
    assert not messages, rst
    assert "list-table" in rst and "``x``" in rst and "title" not in rst


def _readme_examples():
    """(code, output) of each ```python block of the README followed by a ```text block."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"^```(\w*)\n(.*?)^```$", f.read(), re.M | re.S)
    pairs = zip(blocks, blocks[1:], strict=False)  # each block with the one after it
    return [(code, out) for (lang, code), (next_lang, out) in pairs
            if lang == "python" and next_lang == "text"]


def test_readme_examples(tmp_path, monkeypatch, capsys):
    examples = _readme_examples()
    assert examples, "the README has no example with its output"
    monkeypatch.chdir(tmp_path)  # an example may write files (a checkpoint)
    for code, output in examples:
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
        assert capsys.readouterr().out == output
