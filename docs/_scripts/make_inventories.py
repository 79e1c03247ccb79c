"""Write the Sphinx inventories through which the docs link to SciPy, NumPy, Numba and Dask.

The documentation builds without network access, so ``intersphinx_mapping`` in
``docs/conf.py`` reads each project's inventory from ``docs/_inventories/<project>.inv``
instead of downloading its ``objects.inv``; ``conf.py`` also holds the base URLs. These
files list exactly the names the documentation refers to: the targets of ``:func:``,
``:class:``, ``:meth:``, ``:attr:``, ``:data:``, ``:exc:``, ``:mod:`` and ``:obj:``
roles and of numpydoc "See Also" entries that start with ``scipy.``, ``numpy.``,
``numba.`` or ``dask.``, in the pages (``docs/**/*.rst``), the example scripts
(``docs/examples/``) and the package's docstrings. Each name's page is given by the
project's own URL layout (``page``, below); a name it cannot place is an error.

Run from anywhere, after adding or removing such a reference::

    python docs/_scripts/make_inventories.py           # rewrite docs/_inventories/*.inv
    python docs/_scripts/make_inventories.py --check   # exit 1 when they are out of date

The files use Sphinx's inventory format, version 2: four header lines, then zlib-
compressed lines ``name domain:role priority uri dispname`` (``$`` at the end of
``uri`` stands for the name as anchor, ``-`` as dispname for the name itself).
"""

import argparse
import importlib
import inspect
import os
import re
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.dirname(HERE)
ROOT = os.path.dirname(DOCS)
OUT = os.path.join(DOCS, "_inventories")

#: Inventory file, project name in its header, for each top-level package.
PROJECTS = {"scipy": "SciPy", "numpy": "NumPy", "numba": "Numba", "dask": "Dask"}

#: Object type (``py:<type>`` in the inventory) of each cross-reference role.
ROLE_TYPES = {"func": "function", "class": "class", "exc": "exception", "meth": "method",
              "attr": "attribute", "data": "data", "mod": "module"}

_PKG = r"(?:scipy|numpy|numba|dask)(?:\.\w+)*"
#: ``:func:`scipy.optimize.minimize```, ``:py:class:`~numpy.ndarray```,
#: ``:func:`title <numpy.linalg.lstsq>```.
ROLE = re.compile(r":(?:py:)?(func|class|exc|meth|attr|data|mod|obj):"
                  rf"`(?:[^`<]*<)?[~!.]?({_PKG})>?`")
SEE_ALSO = re.compile(r"^([ \t]*)See Also[ \t]*\n[ \t]*-{8,}[ \t]*$", re.M)
SEE_ALSO_NAME = re.compile(rf"^(?::\w+:`)?~?({_PKG})`?$")

#: Pages that the URL rules of ``page`` do not give, relative to the base URL.
PAGES = {
    # NumPy: the random Generator is documented on one page with default_rng.
    "numpy.random": "reference/random/index.html#module-numpy.random",
    "numpy.random.Generator": "reference/random/generator.html#$",
    "numpy.random.default_rng": "reference/random/generator.html#$",
    "numpy.random.RandomState": "reference/random/legacy.html#$",
    "numpy.linalg": "reference/routines.linalg.html#module-numpy.linalg",
    # Numba has no generated page per object: each is on its topic's page.
    "numba.set_num_threads": "user/threading-layer.html#$",
    "numba.get_num_threads": "user/threading-layer.html#$",
    "numba.config.NUMBA_NUM_THREADS": "user/threading-layer.html#$",
    "numba.njit": "reference/jit-compilation.html#numba.jit",  # jit's nopython form
}


def page(name, objtype):
    """The URI of ``name``'s documentation, relative to its project's base URL."""
    if name in PAGES:
        return PAGES[name]
    top = name.split(".")[0]
    if top == "scipy":  # https://docs.scipy.org/doc/scipy/
        if objtype == "module":
            sub = name.partition(".")[2] or "index"
            return f"reference/{sub}.html#module-{name}"
        return f"reference/generated/{name}.html#$"
    if top == "numpy" and objtype != "module":  # https://numpy.org/doc/stable/
        if name.startswith("numpy.random."):
            return f"reference/random/generated/{name}.html#$"
        return f"reference/generated/{name}.html#$"
    if top == "dask" and objtype != "module":  # https://docs.dask.org/en/stable/
        return f"generated/{name}.html#$"
    raise SystemExit(f"no documentation page known for {name} ({objtype}): add it to PAGES "
                     f"in {os.path.relpath(__file__, ROOT)}")


def _sources():
    for folder, dirs, files in os.walk(DOCS):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))  # _build, _ext, ...
        for f in sorted(files):
            if f.endswith(".rst") or (f.endswith(".py") and "examples" in folder):
                yield os.path.join(folder, f)
    for folder, dirs, files in os.walk(os.path.join(ROOT, "fastfactor")):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        yield from (os.path.join(folder, f) for f in sorted(files) if f.endswith(".py"))


def _see_also(text):
    """The names listed in numpydoc "See Also" sections (roles ``obj``)."""
    for match in SEE_ALSO.finditer(text):
        indent = len(match.group(1))
        for line in text[match.end():].splitlines()[1:]:
            stripped = line.strip()
            if not stripped:
                continue
            if '"""' in line or len(line) - len(line.lstrip()) < indent:
                break
            if len(line) - len(line.lstrip()) > indent:
                continue  # a description
            if set(stripped) == {"-"}:
                break  # the next section's underline
            for item in stripped.partition(" : ")[0].split(","):
                found = SEE_ALSO_NAME.match(item.strip())
                if found:
                    yield found.group(1)


def collect():
    """``{name: set of roles}`` over the documentation's sources."""
    refs = {}
    for path in _sources():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for role, name in ROLE.findall(text):
            refs.setdefault(name, set()).add(role)
        for name in _see_also(text):
            refs.setdefault(name, set()).add("obj")
    return refs


def _import(name):
    """The object ``name`` names, or None when it cannot be imported here."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        parent = None
        try:
            for attr in parts[i:]:
                parent, obj = obj, getattr(obj, attr)
        except AttributeError:
            return None, None
        return parent, obj
    return None, None


def objtype(name, roles):
    """The object's type as the project's own inventory lists it: from the object when
    it can be imported (a wrong role then fails the nitpicky build, as it would against
    the real inventory), else from the role."""
    parent, obj = _import(name)
    if obj is not None:
        if inspect.ismodule(obj):
            return "module"
        if inspect.isclass(obj):
            return "exception" if issubclass(obj, BaseException) else "class"
        if inspect.isclass(parent):
            return "method" if callable(obj) else "attribute"
        return "function" if callable(obj) else "data"
    types = {ROLE_TYPES[r] for r in roles if r in ROLE_TYPES}
    if len(types) != 1:
        raise SystemExit(f"cannot import {name} to tell its type (roles: {sorted(roles)})")
    return types.pop()


def inventories(refs):
    """``{project: (header, body)}``: the text of each inventory file, uncompressed."""
    out = {}
    for top, project in PROJECTS.items():
        lines = []
        for name in sorted(n for n in refs if n.split(".")[0] == top):
            kind = objtype(name, refs[name])
            priority = 0 if kind == "module" else 1
            lines.append(f"{name} py:{kind} {priority} {page(name, kind)} -\n")
        header = ("# Sphinx inventory version 2\n"
                  f"# Project: {project}\n"
                  "# Version: \n"
                  "# The remainder of this file is compressed using zlib.\n")
        out[top] = (header, "".join(lines))
    return out


def _read(path):
    with open(path, "rb") as f:
        data = f.read()
    head = b"".join(data.splitlines(keepends=True)[:4])
    return head.decode("utf-8"), zlib.decompress(data[len(head):]).decode("utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with docs/_inventories/ instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for top, (header, body) in inventories(collect()).items():
        path = os.path.join(OUT, f"{top}.inv")
        if args.check:
            if not os.path.exists(path) or _read(path) != (header, body):
                stale.append(os.path.relpath(path, ROOT))
            continue
        os.makedirs(OUT, exist_ok=True)
        with open(path, "wb") as f:
            f.write(header.encode("utf-8") + zlib.compress(body.encode("utf-8"), 9))
        print(f"{os.path.relpath(path, ROOT)}: {body.count(chr(10))} names")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python {os.path.relpath(__file__, ROOT)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
