"""The CUDA backend: Numba CUDA kernels of one Adafactor step, and device-array helpers.

The same functions as in ``cpu.py`` (``factored_step``, ``unfactored_step``,
``max_abs``, ``max_abs_projected`` and the array helpers ``zeros``, ``empty_like``,
``to_host``, ``as_param``, ``as_grad``, ``reshaped_view``, ``shares_memory``,
``contiguous``, ``copy_into``, ``clip``), on Numba device arrays. Parameters may also
be any object exposing ``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA
tensors): they are viewed, not copied, and updated in place.

Not here: cpu.py's two-phase step (``*_stats`` / ``*_apply``), which refuses a
gradient holding a NaN or inf before anything changes. Deciding that on the host
would make every step wait for the GPU; the stepper uses the one-call steps when
those functions are absent, and a NaN or inf then propagates. ``minimize`` checks
every gradient on both devices.

This package is imported only when ``device="cuda"`` is asked for (it imports
``numba.cuda``). It works with the CUDA target built into ``numba`` and with the
maintained ``numba-cuda`` package alike, and in Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``), where the kernels run as Python threads.

The code, by concern (each module says more):

- ``_launch``: launch geometry (block shapes, grid sizes), read at every launch;
- ``_kernels``: every ``@cuda.jit`` function (device functions, dtype-independent
  kernels, the step kernels compiled per dtype);
- ``_workspace``: the steps' temporaries, cached per shape, context and thread;
- ``_steps``: the steps and reductions that launch the kernels (how a step runs);
- ``_arrays``: device-array views, copies and strides, and the stepper's array helpers;
- ``_minimize_support``: what ``minimize`` needs with ``device="cuda"``.

This package re-exports the functions the rest of fastfactor calls.
"""

from numba import cuda

from ._arrays import (as_grad, as_param, contiguous, copy_into, empty_like, is_device_array,
                      reshaped_view, shares_memory, to_device, to_host, zeros)
from ._launch import SIMULATOR
from ._minimize_support import ArrayKind, as_x0, grad_into, scalar_to_host
from ._steps import clip, factored_step, max_abs, max_abs_projected, unfactored_step

__all__ = [
    "SIMULATOR", "require_device",
    "factored_step", "unfactored_step", "max_abs", "max_abs_projected", "clip",
    "is_device_array", "to_device", "zeros", "empty_like", "to_host", "as_param", "as_grad",
    "reshaped_view", "shares_memory", "contiguous", "copy_into",
    "as_x0", "grad_into", "scalar_to_host", "ArrayKind",
]

# --- availability ----------------------------------------------------------------------
_AVAILABLE = None


def require_device():
    """Raise RuntimeError unless a CUDA device (or the simulator) is usable."""
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            ok = bool(cuda.is_available())
        except Exception as exc:  # a broken driver installation
            ok, why = False, f"{type(exc).__name__}: {exc}"
        else:
            why = ""
            if not ok:
                err = getattr(cuda, "cuda_error", lambda: None)()
                why = " ".join(str(err).split()) if err else "no CUDA driver or GPU was found"
        _AVAILABLE = (ok, why)
    ok, why = _AVAILABLE
    if not ok:
        raise RuntimeError(
            f"device='cuda' needs a usable CUDA stack, but numba.cuda.is_available() is "
            f"False ({why}). Install the CUDA extra with pip install \"fastfactor[cuda]\" "
            "(numba-cuda with the CUDA 12 runtime wheels) on a machine with an NVIDIA GPU "
            "and driver; without a GPU, NUMBA_ENABLE_CUDASIM=1 (set before numba is "
            "imported) runs the kernels in Numba's CUDA simulator.")
