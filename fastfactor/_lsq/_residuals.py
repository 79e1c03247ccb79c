"""The problem side of :func:`fastfactor.least_squares`: bounds, scales, residuals, Jacobians.

``_parse_bounds`` turns SciPy's least-squares ``(lb, ub)`` (or a ``Bounds``) into
arrays of x0's shape; ``_x_scale`` and ``_column_norms`` give the ``x_scale`` of each
variable; ``_Residuals`` evaluates ``r(x)`` and ``J(x)`` for every ``jac`` form
(callable returning a dense, sparse or ``LinearOperator`` Jacobian, or finite
differences inside the bounds) with true evaluation counts; ``_rmatvec`` applies
``Jᵀ`` to the residuals.
"""

import math

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds
from scipy.sparse.linalg import LinearOperator

from .._objective import FD_METHODS
from .._options import parse_bounds


def _parse_bounds(bounds, x):
    """``(lb, ub)`` as float arrays of x's shape, or ``(None, None)`` for no bounds.

    SciPy's least-squares form (a pair of scalars or arrays) becomes a ``Bounds``; the
    checks (broadcasting, NaN, ``lb <= ub``) are those of :func:`fastfactor.minimize`.
    """
    if bounds is None:
        return None, None
    if not isinstance(bounds, Bounds):
        try:
            n_items = len(bounds)
        except TypeError:
            n_items = -1
        if n_items != 2:
            raise ValueError(
                "bounds must be a pair (lb, ub) of scalars or arrays, as in "
                "scipy.optimize.least_squares, or a scipy.optimize.Bounds; got "
                f"{bounds!r}")
        bounds = Bounds(*bounds)
    try:
        box = parse_bounds(bounds, x)
    except ValueError as exc:
        if "broadcast" not in str(exc):
            raise
        raise ValueError(f"bounds must broadcast to x0's shape {x.shape}: got lb of shape "
                         f"{np.shape(bounds.lb)} and ub of shape {np.shape(bounds.ub)}") from None
    if box is None:
        return None, None
    return box[0].reshape(x.shape), box[1].reshape(x.shape)


def _x_scale(spec, x, J):
    """The positive scale of each variable, in x's shape and dtype."""
    if spec is None:
        if x.ndim <= 1:
            a = np.abs(x)
            return np.where(a > 0, a, 1).astype(x.dtype)
        return np.ones_like(x)
    if isinstance(spec, str):
        if spec != "jac":
            raise ValueError(f"x_scale must be 'jac', None or positive numbers, got {spec!r}")
        if J is None:  # residuals not finite at x0: nothing to scale by
            return np.ones_like(x)
        norms = _column_norms(J, x.size).reshape(x.shape)
        return np.where(norms > 0, 1 / np.where(norms > 0, norms, 1), 1).astype(x.dtype)
    try:
        s = np.broadcast_to(np.asarray(spec, dtype=float), x.shape)
    except (TypeError, ValueError):
        raise ValueError(f"x_scale must be 'jac', None or positive numbers broadcastable to "
                         f"x0's shape {x.shape}, got {spec!r}") from None
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError(f"x_scale must be positive and finite, got {spec!r}")
    return s.astype(x.dtype)


def _column_norms(J, n):
    """The column norms of J (an operator is applied to the n unit vectors once)."""
    if isinstance(J, LinearOperator):
        return np.linalg.norm(J.matmat(np.eye(n)), axis=0)
    if sp.issparse(J):
        return np.sqrt(np.asarray(J.multiply(J).sum(axis=0)).ravel())
    return np.linalg.norm(J, axis=0)


# --- residuals and Jacobians ---------------------------------------------------------

class _Residuals:
    """``r(x)`` and ``J(x)`` for every ``jac`` form, with true evaluation counts."""

    def __init__(self, fun, jac, args, shape, lb, ub):
        self.fun, self.args, self.shape = fun, args, shape
        self.n = math.prod(shape)
        self.m = None
        self.lb, self.ub = lb, ub
        self.nfev = self.njev = 0
        if callable(jac):
            self.jac, self.fd = jac, None
        elif jac is None or (isinstance(jac, str) and jac in FD_METHODS):
            self.jac, self.fd = None, "2-point" if jac is None else jac
        else:
            raise ValueError(f"jac must be a callable returning the Jacobian, None or one of "
                             f"{FD_METHODS} (finite differences), got {jac!r}")

    def residuals(self, x):
        self.nfev += 1
        r = self.fun(x.reshape(self.shape).copy(), *self.args)
        r = np.asarray(r)
        if r.dtype.kind not in "biufc" or (r.dtype.kind == "c" and self.fd != "cs"):
            raise TypeError(f"fun must return real numbers (the residuals), got dtype {r.dtype}")
        r = r.reshape(-1)
        if self.m is None:
            if r.size == 0:
                raise ValueError("fun returned no residuals; it must return at least one")
            self.m = r.size
        elif r.size != self.m:
            raise ValueError(f"fun returned {r.size} residuals, but {self.m} at x0; "
                             "their number must not change")
        return r

    def evaluate(self, x):
        """``(r, J)`` at x (J is None when r is not finite)."""
        r = np.real(self.residuals(x)).astype(np.float64, copy=False)
        if not np.all(np.isfinite(r)):
            return r, None
        self.njev += 1
        if self.jac is None:
            return r, self._finite_difference(x, r)
        return r, self._check_jac(self.jac(x.reshape(self.shape).copy(), *self.args))

    def _check_jac(self, J):
        m, n = self.m, self.n
        if isinstance(J, LinearOperator) or sp.issparse(J):
            if tuple(J.shape) != (m, n):
                raise ValueError(f"jac returned a {type(J).__name__} of shape {J.shape}, "
                                 f"expected (m, n) = {(m, n)}")
            return J
        J = np.asarray(J)
        if J.dtype.kind not in "biuf":
            raise TypeError(f"jac must return a real Jacobian, got dtype {J.dtype}")
        if J.shape not in ((m, n), (m,) + tuple(self.shape)) and not (m == 1 and J.shape == (n,)):
            raise ValueError(f"jac returned an array of shape {J.shape}; expected (m, n) = "
                             f"{(m, n)} (or (m,) + x0.shape) for {m} residuals and "
                             f"{n} unknowns")
        return J.reshape(m, n)

    def _finite_difference(self, x, r0):
        """Columns ``(r(x + h e_i) - r(x)) / h`` (or central, or complex-step)."""
        xf = x.reshape(-1)
        eps = np.finfo(x.dtype).eps
        h0 = eps ** (1 / 3 if self.fd == "3-point" else 1 / 2) * np.maximum(1.0, np.abs(xf))
        lb = None if self.lb is None else self.lb.reshape(-1)
        ub = None if self.ub is None else self.ub.reshape(-1)
        J = np.empty((self.m, self.n))
        if self.fd == "cs":
            xc = xf.astype(np.complex128)
            for i in range(self.n):
                xc[i] += 1j * h0[i]
                J[:, i] = np.imag(self.residuals(xc)) / h0[i]
                xc[i] = xf[i]
            return J
        xw = xf.copy()
        for i in range(self.n):
            fwd_ok = ub is None or xf[i] + h0[i] <= ub[i]
            bwd_ok = lb is None or xf[i] - h0[i] >= lb[i]
            if self.fd == "3-point" and fwd_ok and bwd_ok:
                xw[i] = xf[i] + h0[i]
                hp = float(xw[i]) - float(xf[i])
                rp = self.residuals(xw)
                xw[i] = xf[i] - h0[i]
                hm = float(xf[i]) - float(xw[i])
                J[:, i] = (rp - self.residuals(xw)) / (hp + hm)
            else:
                xw[i] = xf[i] + h0[i] if fwd_ok or not bwd_ok else xf[i] - h0[i]
                h = float(xw[i]) - float(xf[i])
                J[:, i] = (self.residuals(xw) - r0) / h
            xw[i] = xf[i]
        return J


def _rmatvec(J, r):
    """``J.T @ r`` as a flat float array, for dense, sparse and LinearOperator J."""
    if isinstance(J, LinearOperator):
        return np.asarray(J.rmatvec(r), dtype=float).reshape(-1)
    return np.asarray(J.T @ r, dtype=float).reshape(-1)
