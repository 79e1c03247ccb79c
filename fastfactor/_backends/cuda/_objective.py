"""The objective of an iterate on the GPU."""

import numpy as np

from ..._inputs import as_scalar
from ..._objective import Objective
from ._arrays import contiguous, to_device, to_host, zeros
from ._interop import grad_into, scalar_to_host


class DeviceObjective(Objective):
    """``Objective`` for a flat device iterate.

    ``x`` reaches the user as ``wrap(device copy)`` (x0's kind), a fresh copy per call
    as on the CPU; ``f`` may be a host number or a device scalar; gradients, on the host
    or the device, are copied into one of two device buffers in turn (the driver holds
    at most the last two).
    """

    def __init__(self, fun, jac, args, shape, dtype, wrap, fd=None):
        super().__init__(fun, jac, args, shape, dtype, fd)
        self.wrap = wrap
        self._buffers = []
        self._turn = 1

    def _view(self, x):
        # A copy, not a view: a fun that changes x in place would otherwise move the
        # iterate (or a finite difference's point), and what the user keeps of x would
        # change with later iterations.
        return self.wrap(contiguous(x, self.shape))

    def _scalar(self, f):
        return as_scalar(scalar_to_host(f))

    def _buffer(self):
        """The device buffer for the next gradient: the first two calls make them, then
        they alternate."""
        if len(self._buffers) < 2:
            self._buffers.append(zeros((int(np.prod(self.shape)),), self.dtype))
            return self._buffers[-1]
        self._turn ^= 1
        return self._buffers[self._turn]

    def _grad(self, g):
        return grad_into(self._buffer(), g, self.shape, self.dtype)

    _to_host = staticmethod(to_host)
    _to_work = staticmethod(to_device)

    def _raw(self, f):
        return np.asarray(scalar_to_host(f))
