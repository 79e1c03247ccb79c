"""SciPy-style "Options" sections in docstrings.

numpydoc drops sections it does not know. Before it runs, an "Options" section is
renamed "Other Parameters" (a parameter list, rendered the same way); after it runs,
the rendered field name is changed back to "Options".
"""

import re
import warnings

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


def setup(app):
    warnings.filterwarnings("ignore", message="Unknown section Options", category=UserWarning)
    # numpydoc's own handler has the default priority, 500.
    app.connect("autodoc-process-docstring", _options_before_numpydoc, priority=100)
    app.connect("autodoc-process-docstring", _options_after_numpydoc, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
