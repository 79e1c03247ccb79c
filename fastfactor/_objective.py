"""The user's objective and gradient behind one call, with true evaluation counts."""

import numpy as np

from . import _finite_diff
from ._inputs import as_dense_gradient, as_scalar, check_gradient


class Objective:
    """Evaluates ``f(x)`` and ``g(x)`` for any of SciPy's ``jac`` forms.

    ``x`` reaches the user as a fresh copy of ``shape`` (as in SciPy, so that what a
    user keeps is never overwritten by later iterations); ``fun`` and a separate ``jac``
    receive a copy each. The gradient is the user's
    array itself, flat, when it already is of ``dtype`` and contiguous (it is converted
    otherwise): nothing of x's size is copied on its way to the step. ``jac=None`` (or
    a finite-difference method name) differentiates numerically, counted in ``nfev``,
    as ``fd`` (a ``_finite_diff.Settings``) says: never outside its bounds.
    """

    def __init__(self, fun, jac, args, shape, dtype, fd=None):
        if not callable(fun):
            raise TypeError(f"fun must be callable, got {fun!r}")
        self.fun, self.args, self.shape = fun, tuple(args), tuple(shape)
        self.dtype = np.dtype(dtype)
        self.fd_settings = _finite_diff.Settings() if fd is None else fd
        self.f_dtype = None  # the dtype fun computes in, read from its first value
        self.nfev = self.njev = 0
        if jac is True:
            self.mode = "combined"
        elif callable(jac):
            self.mode, self.jac = "separate", jac
        else:
            self.fd = _finite_diff.resolve_method(jac, self.fd_settings.method)
            if self.fd is None:
                raise ValueError(f"jac must be a callable, True, None or one of "
                                 f"{_finite_diff.FD_METHODS}, got {jac!r}")
            self.mode = "fd"

    def _view(self, x):
        return x.reshape(self.shape).copy()

    _scalar = staticmethod(as_scalar)

    def _f(self, xv):
        self.nfev += 1
        value = self.fun(xv, *self.args)
        if isinstance(value, (tuple, list)) and len(value) == 2:
            # (f, g) without jac=True: NumPy's own error (an inhomogeneous shape) would
            # not say what is wrong
            raise TypeError("fun returned a tuple of 2 (f, g?): pass jac=True when fun "
                            "returns the gradient too")
        if self.f_dtype is None:
            self.f_dtype = np.asarray(self._raw(value)).dtype
        return self._scalar(value)

    def __call__(self, x):
        """``(f, g, None)`` at the flat array ``x``; ``g`` flat, in ``dtype``."""
        xv = self._view(x)
        if self.mode == "combined":
            out = self.fun(xv, *self.args)
            self.nfev += 1
            self.njev += 1
            try:
                f, g = out
            except (TypeError, ValueError):
                raise TypeError("with jac=True, fun must return a pair (f, g)") from None
            return self._scalar(f), self._grad(g), None
        f = self._f(xv)
        if self.mode == "separate":  # a copy of its own: fun may have changed xv
            self.njev += 1
            return f, self._grad(self.jac(self._view(x), *self.args)), None
        self.njev += 1  # a gradient by differences counts, as in SciPy
        return f, self._finite_difference(x, f), None

    def _grad(self, g):
        g = as_dense_gradient(g)
        check_gradient(g.shape, g.dtype, self.shape)
        flat = g.astype(self.dtype, copy=False).reshape(-1)
        if not flat.flags.writeable:  # e.g. a broadcast: a kernel argument of its own type
            flat = flat.copy()
        return flat

    # Where the points of a finite difference live: the host array itself on the CPU.
    _to_host = staticmethod(np.asarray)
    _to_work = staticmethod(np.asarray)
    _raw = staticmethod(np.asarray)  # fun's value as a host array (complex kept)

    def _finite_difference(self, x, f0):
        """The gradient by ``_finite_diff.jacobian`` of the scalar objective."""
        fd = self.fd_settings

        def call(xw):
            self.nfev += 1
            value = self._raw(self.fun(self._view(xw), *self.args))
            return value if self.fd == "cs" else np.float64(self._scalar(value))

        J = _finite_diff.jacobian(call, self._to_host(x), np.float64(f0), self.fd, fd.lb, fd.ub,
                                  self._to_work, fd.rel_step, self.f_dtype)
        return self._grad(J.reshape(self.shape).astype(self.dtype))
