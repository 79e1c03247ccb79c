"""Sphinx configuration of the fastfactor documentation.

Build (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The directives and docstring handling that the pages use are the local extension
``_ext/fastfactor_docs`` (``example-gallery``, ``perf-table``, numpydoc "Options"
sections); this file holds only configuration.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # document the source tree, installed or not
sys.path.insert(0, os.path.join(HERE, "_ext"))  # the local extension

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
    "fastfactor_docs",
]

exclude_patterns = ["_build", "_ext", "_generated", "_scripts", "Thumbs.db", ".DS_Store"]
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

# ``.. perf-table::`` (performance.rst): the first of these that exists, relative to
# this folder; ``.md`` files are converted. Neither: the directive's own content.
perf_table_sources = ["_generated/perf_table.rst", "../asv_benchmarks/PERFORMANCE.md"]
