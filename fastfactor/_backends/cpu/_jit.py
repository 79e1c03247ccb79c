"""Numba decorator defaults, in one place.

Every kernel is compiled lazily (nothing compiles at import), cached on disk so a
second process does not pay the compile cost again (``FASTFACTOR_NUMBA_CACHE=0`` turns
the disk cache off, e.g. on a read-only install or to time compilation), with
``fastmath`` off so that results follow IEEE rules, and ``nogil`` so that threads can
step blocks side by side.
"""

import os
import types
import warnings

import numba

#: Whether kernels are cached on disk (read once, at import).
CACHE = os.environ.get("FASTFACTOR_NUMBA_CACHE", "1").strip().lower() not in ("0", "false", "no")

_DEFAULTS = dict(cache=CACHE, fastmath=False, nogil=True, error_model="numpy")

#: Blocks with at least this many elements use the ``prange`` (parallel) kernels;
#: smaller ones stay serial, where thread start-up would cost more than it saves.
PARALLEL_MIN_SIZE = 1 << 16


def _njit(func, **options):
    """``numba.njit`` with the defaults; without a writable cache location (a read-only
    install and home), compiled in memory instead, with one warning."""
    try:
        return numba.njit(**_DEFAULTS, **options)(func)
    except RuntimeError as exc:
        if not (_DEFAULTS["cache"] and "cannot cache" in str(exc)):
            raise
        _warn_no_cache(exc)
        return numba.njit(**dict(_DEFAULTS, cache=False), **options)(func)


_WARNED = []


def _warn_no_cache(exc):
    if not _WARNED:
        _WARNED.append(True)
        warnings.warn(f"fastfactor's kernels are compiled without a disk cache ({exc}); set "
                      "NUMBA_CACHE_DIR to a writable folder to keep them across processes, "
                      "or FASTFACTOR_NUMBA_CACHE=0 to silence this", RuntimeWarning,
                      stacklevel=4)


def jit(func):
    """Compile ``func`` serially (``prange`` runs as ``range``)."""
    return _njit(func)


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


def n_chunks(size, rows):
    """Number of row chunks to split a block of ``size`` elements and ``rows`` rows into."""
    if size < PARALLEL_MIN_SIZE:
        return 1
    return max(1, min(numba.get_num_threads(), rows))
