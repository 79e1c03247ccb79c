"""Sphinx configuration of the fastfactor documentation.

Build (warnings are errors, every cross-reference must resolve)::

    python -m sphinx -W -n --keep-going -b html docs docs/_build/html

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
    "sphinx.ext.intersphinx",
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

# Links to SciPy, NumPy, Numba and Dask. The docs build offline, so each project's
# inventory is a local file (_inventories/, written by _scripts/make_inventories.py for
# exactly the names these pages and docstrings reference; run it again after adding one)
# instead of the objects.inv that intersphinx would download from the base URL.
intersphinx_mapping = {
    name: (url, os.path.join(HERE, "_inventories", f"{name}.inv"))
    for name, url in [
        ("scipy", "https://docs.scipy.org/doc/scipy/"),
        ("numpy", "https://numpy.org/doc/stable/"),
        ("numba", "https://numba.readthedocs.io/en/stable/"),
        ("dask", "https://docs.dask.org/en/stable/"),
    ]
}

# The builds are nitpicky (``-n``): a cross-reference that does not resolve is a warning,
# hence an error. Targets that cannot resolve go here as (type, target) pairs, such as
# ("py:class", "array_like"), each group with its reason. None at present: numpydoc's
# parameter types are plain text (numpydoc_xref_param_type = False), so "array_like" or
# "optional" make no references, and the Python domain accepts builtins such as
# RuntimeError without an inventory.
nitpick_ignore = []

# The doctest builder (``-b doctest``) runs the ``>>>`` blocks of the pages too.
doctest_global_setup = "import numpy as np"

# ``.. perf-table::`` (performance.rst): the first of these that exists, relative to
# this folder; ``.md`` files are converted. Neither: the directive's own content.
perf_table_sources = ["_generated/perf_table.rst", "../asv_benchmarks/PERFORMANCE.md"]
