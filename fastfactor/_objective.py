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

    def _f(self, xv):
        self.nfev += 1
        return as_scalar(self.fun(xv, *self.args))

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
            return as_scalar(f), self._grad(g)
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

    def _finite_difference(self, x, f0):
        """Forward, central or complex-step differences with SciPy's relative steps.

        Steps are taken as exactly representable in x's dtype (``(x + h) - x``).
        """
        xd = x.astype(np.float64)
        power = 1 / 3 if self.fd == "3-point" else 1 / 2
        steps = np.finfo(self.dtype).eps ** power * np.maximum(1.0, np.abs(xd))
        g = np.empty(x.size)
        if self.fd == "cs":
            xw = x.astype(np.complex128)
            for i, h in enumerate(steps):
                xw[i] = xd[i] + 1j * h
                self.nfev += 1
                g[i] = np.imag(np.asarray(self.fun(xw.reshape(self.shape), *self.args))) / h
                xw[i] = xd[i]
            return g.astype(self.dtype)
        xw = x.copy()
        for i, h in enumerate(steps):
            xw[i] = xd[i] + h
            hp = float(xw[i]) - xd[i]
            fp = self._f(self._view(xw))
            if self.fd == "2-point":
                g[i] = (fp - f0) / hp
            else:
                xw[i] = xd[i] - h
                hm = xd[i] - float(xw[i])
                g[i] = (fp - self._f(self._view(xw))) / (hp + hm)
            xw[i] = x[i]
        return g.astype(self.dtype)
