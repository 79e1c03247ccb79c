"""The steps' temporaries (partial sums, factors, coefficients): device arrays cached
per shape, CUDA context and host thread, so a step allocates nothing once warm.
"""

import threading
from collections import OrderedDict

import numpy as np
from numba import cuda

from ._launch import SIMULATOR

_LOCAL = threading.local()
_WORKSPACES_KEPT = 32


def _context_key():
    """The current CUDA context (workspaces belong to one)."""
    if SIMULATOR:
        return 0
    ctx = cuda.current_context()
    h = getattr(ctx, "handle", None)
    v = getattr(h, "value", None)  # ctypes handle
    if v is None:
        try:
            v = int(h)  # cuda-python handle
        except (TypeError, ValueError):
            v = id(ctx)
    return v


def _workspace(key, make):
    """Device arrays for ``key`` (per thread and context), made by ``make()`` once."""
    cache = getattr(_LOCAL, "cache", None)
    if cache is None:
        cache = _LOCAL.cache = OrderedDict()
    key = (_context_key(),) + key
    ws = cache.get(key)
    if ws is None:
        ws = cache[key] = make()
        while len(cache) > _WORKSPACES_KEPT:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return ws


def _device(shape, dtype):
    return cuda.device_array(shape, np.dtype(dtype))
