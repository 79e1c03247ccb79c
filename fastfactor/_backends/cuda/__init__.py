"""The CUDA backend: Numba CUDA kernels of one Adafactor step, and device-array helpers.

The members of the backend contract (``fastfactor._backends._protocol``) on Numba
device arrays. Parameters may also be any object exposing ``__cuda_array_interface__``
(CuPy arrays, PyTorch CUDA tensors): they are viewed, not copied, and updated in place.

Not here: the CPU's two-phase step (``*_stats`` / ``*_apply``), which refuses a
gradient holding a NaN or inf before anything changes. Deciding that on the host
would make every step wait for the GPU, so this backend has ``refuses_nonfinite =
False`` and the one-call steps only; a NaN or inf then propagates. The driver checks
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
- ``_interop``: the starting point on the device, gradients into the
  optimizer's buffers, device scalars, and ``ArrayKind`` (x0's kind of array);
- ``_objective``: the objective of a device iterate.
"""

import contextlib

from numba import cuda

from .. import _protocol
from ._arrays import (
    as_grad,
    as_param,
    contiguous,
    copy_into,
    empty_like,
    is_device_array,
    reshaped_view,
    to_device,
    to_host,
    zeros,
)
from ._interop import ArrayKind, as_x0, grad_into, scalar_to_host
from ._launch import SIMULATOR
from ._objective import DeviceObjective
from ._steps import clip, factored_step, max_abs, max_abs_projected, unfactored_step

__all__ = ["BACKEND", "SIMULATOR", "require_device", "is_device_array", "to_device",
           "to_host", "ArrayKind", "grad_into", "scalar_to_host"]


class CudaBackend:
    """The backend for ``device="cuda"`` (see :class:`fastfactor._backends._protocol.Backend`)."""

    name = "cuda"
    refuses_nonfinite = False

    zeros = staticmethod(zeros)
    empty_like = staticmethod(empty_like)
    to_host = staticmethod(to_host)
    as_param = staticmethod(as_param)
    as_grad = staticmethod(as_grad)
    reshaped_view = staticmethod(reshaped_view)
    contiguous = staticmethod(contiguous)
    copy_into = staticmethod(copy_into)
    max_abs = staticmethod(max_abs)
    max_abs_projected = staticmethod(max_abs_projected)
    clip = staticmethod(clip)
    factored_step = staticmethod(factored_step)
    unfactored_step = staticmethod(unfactored_step)
    as_x0 = staticmethod(as_x0)

    @staticmethod
    def compile_notice(enabled):
        # the notice covers the CPU kernels, which take seconds to compile, only
        return contextlib.nullcontext()

    @staticmethod
    def box(lb, ub):
        return to_device(lb), to_device(ub)

    @staticmethod
    def objective(fun, jac, args, shape, dtype, x0, fd):
        return DeviceObjective(fun, jac, args, shape, dtype, ArrayKind(x0).wrap, fd)

    @staticmethod
    def exporter(x0, shape, owned=False):
        kind = ArrayKind(x0)
        return lambda a: kind.export(a.reshape(shape))

    def __reduce__(self):  # pickles and deep-copies as the one instance
        return (_protocol.backend_instance, (self.name,))

    def __repr__(self):
        return "<fastfactor CUDA backend>"


BACKEND = CudaBackend()

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
