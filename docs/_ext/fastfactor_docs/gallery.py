"""The ``example-gallery`` directive: what ``examples/`` holds."""

import ast
import os

from docutils.parsers.rst import Directive
from docutils.statemachine import StringList


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
    present, and its source. The page is read again at each build, as examples may
    have been added.
    """

    has_content = False

    def run(self):
        env = self.state.document.settings.env
        env.note_reread()
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
        source = os.path.join(folder, "*")
        self.state_machine.insert_input(StringList(out, source=source), source)
        return []


def setup(app):
    app.add_directive("example-gallery", ExampleGallery)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
