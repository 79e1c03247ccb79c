"""Between the user's arrays and the driver's on the device: the starting point on the
device, the user's gradient copied into the optimizer's buffer, device scalars brought
to the host, and ``ArrayKind``, which shows the iterate to the user as the same kind of
array as ``x0``.
"""

import math
import sys

from numba import cuda

from ..._inputs import as_x0 as host_as_x0
from ..._inputs import x0_dtype
from ._arrays import (
    _check_strides,
    _copy,
    _view,
    checked_grad,
    contiguous,
    copy_into,
    is_device_array,
    to_device,
    to_host,
)
from ._steps import max_abs


def as_x0(x0):
    """x0 as a new C-contiguous float device array (a device x0 is copied on the device),
    with the host's dtype rule (``fastfactor._inputs``)."""
    if not is_device_array(x0):
        return to_device(host_as_x0(x0))
    d = _view(x0)
    dt = x0_dtype(d.dtype)
    _check_strides(d, "x0")
    out = cuda.device_array(tuple(d.shape), dt)
    _copy(d, out)
    if not math.isfinite(max_abs(out)):
        raise ValueError("x0 contains NaN or inf; start from finite values")
    return out


def grad_into(out, g, shape, dtype):
    """Copy the user's gradient ``g`` (host or device, of ``shape``) into the flat ``out``."""
    a, _ = checked_grad(g, shape, "the shape of x")
    copy_into(out, a)
    return out


def scalar_to_host(f):
    """A device scalar (0-d or 1-element device array) as a NumPy array; others unchanged."""
    if is_device_array(f):
        return to_host(_view(f))
    return f


class ArrayKind:
    """How the iterate is shown to the user: ``wrap`` (x0's kind over a device array: the
    fresh copies handed to fun and jac) and ``export`` (a copy, for the result and
    callbacks), following x0's kind.

    NumPy x0: Numba device views, NumPy copies. Numba device x0: Numba device arrays.
    CuPy x0: CuPy arrays. PyTorch x0: CUDA tensors. Other ``__cuda_array_interface__``
    objects: Numba device arrays.
    """

    def __init__(self, x0):
        self.host = not is_device_array(x0)
        self.name = "numba"
        root = type(x0).__module__.split(".")[0]
        if not self.host and not getattr(x0, "__cuda_ndarray__", False):
            if root == "cupy" and "cupy" in sys.modules:
                self.name = "cupy"
                self._lib = sys.modules["cupy"]
            elif root == "torch" and "torch" in sys.modules:
                self.name = "torch"
                self._lib = sys.modules["torch"]
                self._device = x0.device

    def wrap(self, d):
        if self.name == "cupy":
            return self._lib.asarray(d)
        if self.name == "torch":
            return self._lib.as_tensor(d, device=self._device)
        return d

    def export(self, d):
        if self.host:
            return to_host(d)
        return self.wrap(contiguous(d, tuple(d.shape)))
