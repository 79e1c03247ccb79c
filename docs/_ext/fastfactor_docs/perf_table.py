"""The ``perf-table`` directive: the benchmark suite's tables, when there are any.

The config value ``perf_table_sources`` lists the files to look for, relative to the
documentation's source folder, first found first served: ``.rst`` files are inserted
as they are, ``.md`` files converted by :func:`.markdown.markdown_to_rst`.
"""

import os

from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

from .markdown import markdown_to_rst


class PerfTable(Directive):
    """``.. perf-table::`` inserts the first of ``perf_table_sources`` that exists,
    else its content. The page is read again at each build, as results may have
    appeared."""

    has_content = True

    def run(self):
        env = self.state.document.settings.env
        env.note_reread()
        for name in env.config.perf_table_sources:
            path = os.path.normpath(os.path.join(env.srcdir, name))
            if os.path.exists(path):
                env.note_dependency(path)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                lines = markdown_to_rst(text) if path.endswith(".md") else text.splitlines()
                source = path
                break
        else:
            lines, source = list(self.content), os.fspath(env.doc2path(env.docname))
        self.state_machine.insert_input(StringList(lines, source=source), source)
        return []


def setup(app):
    app.add_config_value("perf_table_sources", [], "env", types=[list, tuple])
    app.add_directive("perf-table", PerfTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
