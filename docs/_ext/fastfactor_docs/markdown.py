"""The subset of Markdown that ``asv_benchmarks/perf_table.py`` writes, as rst.

Plain Python (no Sphinx, no docutils), so that the tests can import it alone.
"""

import re


def _md_inline(text):
    """Markdown inline code to reStructuredText (``x`` instead of `x`)."""
    def code(m):
        after = m.string[m.end():m.end() + 1]
        escape = after and (after.isalnum() or after == "_")
        return "``" + m.group(1) + "``" + ("\\ " if escape else "")
    return re.sub(r"(?<!`)`([^`]+)`(?!`)", code, text)


def _md_cells(line):
    return [_md_inline(c.strip()) for c in line.strip().strip("|").split("|")]


def markdown_to_rst(text):
    """The subset of Markdown that ``asv_benchmarks/perf_table.py`` writes, as rst lines.

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
            if len(rows) >= 2 and (set(rows[1].replace("|", "").replace(":", "").strip())
                                   <= {"-", " "}):
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
