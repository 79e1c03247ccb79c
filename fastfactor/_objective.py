"""The user's objective and gradient behind one call, with true evaluation counts."""

import numpy as np

from ._options import as_scalar

FD_METHODS = ("2-point", "3-point", "cs")


class Objective:
    """Evaluates ``f(x)`` and ``g(x)`` for any of SciPy's ``jac`` forms.

    ``x`` reaches the user as a fresh copy of ``shape`` (as in SciPy, so that what a
    user keeps is never overwritten by later iterations); gradients come back as new
    arrays of that shape in ``dtype``. ``jac=None`` (or a
    finite-difference method name) differentiates numerically, counted in ``nfev``.
    """

    def __init__(self, fun, jac, args, shape, dtype):
        if not callable(fun):
            raise TypeError(f"fun must be callable, got {fun!r}")
        self.fun, self.args, self.shape, self.dtype = fun, tuple(args), tuple(shape), np.dtype(dtype)
        self.nfev = self.njev = 0
        if jac is True:
            self.mode = "combined"
        elif callable(jac):
            self.mode, self.jac = "separate", jac
        elif jac is None or jac is False or jac in FD_METHODS:
            self.mode, self.fd = "fd", ("2-point" if jac in (None, False) else jac)
        else:
            raise ValueError(f"jac must be a callable, True, None or one of {FD_METHODS}, got {jac!r}")

    def _view(self, x):
        return x.reshape(self.shape).copy()

    _scalar = staticmethod(as_scalar)

    def _f(self, xv):
        self.nfev += 1
        return self._scalar(self.fun(xv, *self.args))

    def __call__(self, x):
        """``(f, g)`` at the flat array ``x``; ``g`` flat, in ``dtype``."""
        xv = self._view(x)
        if self.mode == "combined":
            out = self.fun(xv, *self.args)
            self.nfev += 1
            self.njev += 1
            try:
                f, g = out
            except (TypeError, ValueError):
                raise TypeError("with jac=True, fun must return a pair (f, g)") from None
            return self._scalar(f), self._grad(g)
        f = self._f(xv)
        if self.mode == "separate":
            self.njev += 1
            return f, self._grad(self.jac(xv, *self.args))
        return f, self._finite_difference(x, f)

    def _grad(self, g):
        g = np.asarray(g)
        if g.shape != self.shape:
            raise ValueError(f"the gradient has shape {g.shape}, expected {self.shape} (the shape of x)")
        if g.dtype.kind not in "biuf":
            raise TypeError(f"the gradient must be real, got dtype {g.dtype}")
        return np.array(g, dtype=self.dtype, copy=True).reshape(-1)

    # Where the points of a finite difference live: the host array itself on the CPU.
    _to_host = staticmethod(np.asarray)
    _to_work = staticmethod(np.asarray)
    _raw = staticmethod(np.asarray)  # fun's value as a host array (complex kept)

    def _finite_difference(self, x, f0):
        """Forward, central or complex-step differences with SciPy's relative steps.

        Steps are taken as exactly representable in x's dtype (``(x + h) - x``), read
        from a host copy of the point ``xs``; the point is stepped one element at a time
        in ``xw`` (``xs`` itself on the CPU, a device copy on the GPU).
        """
        xh = self._to_host(x)
        xd = xh.astype(np.float64)
        power = 1 / 3 if self.fd == "3-point" else 1 / 2
        steps = np.finfo(self.dtype).eps ** power * np.maximum(1.0, np.abs(xd))
        g = np.empty(xh.size)
        if self.fd == "cs":
            xw = self._to_work(xh.astype(np.complex128))
            for i, h in enumerate(steps):
                xw[i] = xd[i] + 1j * h
                self.nfev += 1
                g[i] = np.imag(self._raw(self.fun(self._view(xw), *self.args))) / h
                xw[i] = xd[i]
            return self._grad(g.astype(self.dtype).reshape(self.shape))
        xs = xh.copy()
        xw = self._to_work(xs)
        for i, h in enumerate(steps):
            xs[i] = xd[i] + h
            hp = float(xs[i]) - xd[i]
            xw[i] = xs[i]
            fp = self._f(self._view(xw))
            if self.fd == "2-point":
                g[i] = (fp - f0) / hp
            else:
                xs[i] = xd[i] - h
                hm = xd[i] - float(xs[i])
                xw[i] = xs[i]
                g[i] = (fp - self._f(self._view(xw))) / (hp + hm)
            xs[i] = xh[i]
            xw[i] = xh[i]
        return self._grad(g.astype(self.dtype).reshape(self.shape))


# --- device="cuda" ----------------------------------------------------------------------

class DeviceObjective(Objective):
    """``Objective`` for an iterate on the GPU (``backend`` is ``fastfactor._backends.cuda``).

    ``x`` reaches the user as ``wrap(device view)`` (x0's kind); ``f`` may be a host
    number or a device scalar; gradients, on the host or the device, are copied into
    one of two device buffers in turn (the loop holds at most the last two).
    """

    def __init__(self, fun, jac, args, shape, dtype, backend, wrap):
        super().__init__(fun, jac, args, shape, dtype)
        self.be, self.wrap = backend, wrap
        self._buffers = []
        self._turn = 1

    def _view(self, x):
        return self.wrap(x.reshape(self.shape))

    def _scalar(self, f):
        return as_scalar(self.be.scalar_to_host(f))

    def _buffer(self):
        """The device buffer for the next gradient: the first two calls make them, then
        they alternate."""
        if len(self._buffers) < 2:
            self._buffers.append(self.be.zeros((int(np.prod(self.shape)),), self.dtype))
            return self._buffers[-1]
        self._turn ^= 1
        return self._buffers[self._turn]

    def _grad(self, g):
        return self.be.grad_into(self._buffer(), g, self.shape, self.dtype)

    def _to_host(self, x):
        return self.be.to_host(x)

    def _to_work(self, xh):
        return self.be.to_device(xh)

    def _raw(self, f):
        return np.asarray(self.be.scalar_to_host(f))
