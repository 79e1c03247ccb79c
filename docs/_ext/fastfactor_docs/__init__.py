"""The Sphinx extension of the fastfactor documentation (``docs/conf.py`` loads it).

- :mod:`.numpydoc_options`: SciPy-style "Options" sections in numpydoc docstrings;
- :mod:`.gallery`: the ``example-gallery`` directive (``examples.rst``);
- :mod:`.perf_table`: the ``perf-table`` directive (``performance.rst``), which
  includes the benchmark tables, converted from Markdown by :mod:`.markdown`.
"""

_PARTS = ("numpydoc_options", "gallery", "perf_table")


def setup(app):
    for part in _PARTS:
        app.setup_extension(f"{__name__}.{part}")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
