"""A line printed just before the CPU kernels compile, for runs that report (``disp``,
``verbose``) and for the demo.

Numba announces a compilation with its ``numba:compile`` event, which it triggers only
after looking in the on-disk cache and finding nothing: so the line appears when, and
only when, a kernel is about to be compiled (seconds), never when it is loaded (a
fraction of a second). It names the dtype and the kind of block, once per process for
each, as the kernels of one kind compile together on a block's first step.
"""

import contextlib
import threading

from numba.core import event

_SAID = set()  # (dtype, kind, build) announced in this process
_LOCK = threading.Lock()
_OTHERS = {}  # python function -> what its compilation is announced as


def announce_also(py_func, what):
    """Announce the compilation of ``py_func`` (compiled elsewhere, e.g. a driver loop
    calling the kernels) as ``what``, once per dtype and process."""
    _OTHERS[py_func] = what


def _kernels():
    """``{dispatcher: (kind, build)}`` of the step kernels (their helpers compile inside
    them, so a kernel's compilation event comes first)."""
    from . import _kernels as k

    found = {}
    for kind, prefix in (("matrices", "factored"), ("vectors", "unfactored")):
        for phase in ("stats", "apply"):
            for build in ("serial", "parallel"):
                found[getattr(k, f"{prefix}_{phase}_{build}")] = (kind, build)
    return found


class _Notice(event.Listener):
    def __init__(self, report):
        self.report = report
        self.kernels = _kernels()
        self.inside = None  # an announced driver being compiled: its kernels go unsaid

    def on_start(self, ev):
        dispatcher = ev.data["dispatcher"]
        what = self.kernels.get(dispatcher)
        other = _OTHERS.get(getattr(dispatcher, "py_func", None))
        if (what is None and other is None) or self.inside is not None:
            return
        # the dtype of the first array argument (x, for every kernel)
        dtype = next((str(a.dtype) for a in ev.data["args"] if hasattr(a, "ndim")), "")
        kind, build = what if what is not None else (other, "")
        with _LOCK:
            if (dtype, kind, build) in _SAID:
                return
            _SAID.add((dtype, kind, build))
        if _disk_cache(dispatcher):
            when = ("first use only, cached on disk for later runs; see python -m "
                    "fastfactor --precompile")
        else:
            when = "not cached: the disk cache is off, so every process compiles again"
        if what is None:
            self.inside = dispatcher
            subject = f"{other} in {dtype}"
        else:
            threads = ", multi-threaded" if build == "parallel" else ""
            subject = f"the kernels for {dtype} {kind}{threads}"
        self.report(f"fastfactor: compiling {subject} ({when})")

    def on_end(self, ev):
        if ev.data["dispatcher"] is self.inside:
            self.inside = None


def _disk_cache(dispatcher):
    from numba.core.caching import NullCache

    return not isinstance(getattr(dispatcher, "_cache", None), (NullCache, type(None)))


def _print(line):
    print(line, flush=True)


@contextlib.contextmanager
def announce_compilation(enabled=True, report=_print):
    """Within the block, ``report(line)`` (``print`` by default) just before a CPU step
    kernel compiles for a dtype and kind of block not compiled before in this process.
    Does nothing when ``enabled`` is false."""
    if not enabled:
        yield
        return
    listener = _Notice(report)
    event.register("numba:compile", listener)
    try:
        yield
    finally:
        event.unregister("numba:compile", listener)
