"""Numba decorator defaults, in one place.

Every kernel is compiled lazily (nothing compiles at import), cached on disk so a
second process does not pay the compile cost again (``FASTFACTOR_NUMBA_CACHE=0`` turns
the disk cache off, e.g. on a read-only install or to time compilation; a cache file
that cannot be read is compiled again and rewritten), with
``fastmath`` off so that results follow IEEE rules, and ``nogil`` so that threads can
step blocks side by side.
"""

import os
import types
import warnings

import numba
import numba.extending
from numba.core.caching import FunctionCache

#: Whether kernels are cached on disk (read once, at import).
CACHE = os.environ.get("FASTFACTOR_NUMBA_CACHE", "1").strip().lower() not in ("0", "false", "no")

_DEFAULTS = dict(fastmath=False, nogil=True, error_model="numpy")

class _RecoveringCache(FunctionCache):
    """Numba's on-disk cache (what ``cache=True`` installs), where a cache file that
    cannot be read or written costs a compile instead of an error.

    Numba unpickles the index (``.nbi``) and data (``.nbc``) files unguarded, so one
    truncated or garbled file (a full disk, an interrupted copy) would make every later
    process fail with ``EOFError`` or ``UnpicklingError`` on the kernel's first call.
    """

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except Exception as exc:
            _warn_once(f"fastfactor's kernel cache in {self.cache_path} could not be read "
                       f"({type(exc).__name__}: {exc}); the kernels are compiled again and "
                       "their cache entries rewritten", stacklevel=2)
            try:
                # A fresh index, so the entry compiled now is saved (Numba's ``save`` reads
                # the index first); the kernel's other entries are compiled again once.
                self.flush()
            except OSError:
                pass
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except Exception as exc:
            _warn_once(f"fastfactor's kernel cache in {self.cache_path} could not be written "
                       f"({type(exc).__name__}: {exc}); the kernels compiled in this process "
                       "are not cached", stacklevel=2)


def _njit(func, **options):
    """``numba.njit`` with the defaults and, unless turned off, the disk cache; without a
    writable cache location (a read-only install and home), compiled in memory instead,
    with one warning."""
    dispatcher = numba.njit(**_DEFAULTS, **options)(func)
    if CACHE and hasattr(dispatcher, "enable_caching"):  # not with NUMBA_DISABLE_JIT
        try:
            # as ``Dispatcher.enable_caching`` (``cache=True``), with the class above
            dispatcher._cache = _RecoveringCache(dispatcher.py_func)
        except RuntimeError as exc:
            if "cannot cache" not in str(exc):
                raise
            _warn_once(f"fastfactor's kernels are compiled without a disk cache ({exc}); set "
                       "NUMBA_CACHE_DIR to a writable folder to keep them across processes, "
                       "or FASTFACTOR_NUMBA_CACHE=0 to silence this", stacklevel=3)
    return dispatcher


_WARNED = []


def _warn_once(message, stacklevel):
    """One cache warning per process: the kernels share one cache folder, and so its fate."""
    if not _WARNED:
        _WARNED.append(True)
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 1)


def jit(func):
    """Compile ``func`` serially (``prange`` runs as ``range``)."""
    return _njit(func)


def by_type(func, inline=False):
    """Register the implementation of ``func`` in compiled code chosen while typing its
    arguments (Numba's ``overload``, with the defaults above): the decorated function
    receives the arguments' Numba types and returns the implementation to compile. The
    kernels use it to compile only the variant a call needs, where a branch on a run-time
    flag would compile every variant. ``inline``: as ``jit_inline``."""
    return numba.extending.overload(func, jit_options=dict(_DEFAULTS),
                                    inline="always" if inline else "never")


def jit_inline(func):
    """Compile ``func`` into its callers (inlined in Numba's IR), never on its own.

    For thin layers between a driver and the kernels: Numba optimizes each compiled
    function together with everything it calls, so every layer of separately compiled
    functions optimizes the kernels below it once more (seconds per layer)."""
    return numba.njit(**_DEFAULTS, inline="always")(func)


def jit_signature(func, argtypes, cache=True):
    """``func`` compiled for the Numba types ``argtypes`` only, on a dispatcher of its own
    that compiles nothing else: an argument whose type differs is converted where Numba
    can (a compiled function to a declared first-class function type), not compiled
    for. ``cache=False`` for functions that cannot be cached (closures)."""
    dispatcher = _njit(func) if cache else numba.njit(**_DEFAULTS)(func)
    dispatcher.compile(tuple(argtypes))
    dispatcher.disable_compile()
    return dispatcher


def jit_parallel(func):
    """Compile ``func`` with ``parallel=True`` (``prange`` splits across threads).

    The function is compiled as a renamed copy: Numba's on-disk cache is keyed by the
    function's qualified name and source line, not by ``parallel``, so the serial and
    the parallel build of one source would otherwise load each other's machine code.
    """
    twin = types.FunctionType(func.__code__, func.__globals__, func.__name__ + "_parallel",
                              func.__defaults__, func.__closure__)
    twin.__qualname__ = func.__qualname__ + "_parallel"
    twin.__doc__ = func.__doc__
    return _njit(twin, parallel=True)
