"""The problem side of :func:`fastfactor.least_squares`: scales, residuals, Jacobians.

``_x_scale`` and ``_column_norms`` give the ``x_scale`` of each
variable; ``_Residuals`` evaluates ``r(x)``, the loss and ``J(x)`` for every ``jac`` form
(callable returning a dense, sparse or ``LinearOperator`` Jacobian, or finite
differences inside the bounds, grouped by ``jac_sparsity`` where given) with true
evaluation counts, refusing evaluations past ``max_nfev``; ``_rmatvec`` applies ``Jᵀ``.
"""

import math

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from .. import _finite_diff
from .._inputs import fit_one_element


class BudgetSpent(Exception):
    """``max_nfev`` evaluations of ``fun`` were made: the run ends where it is.
    Raised while differencing, it carries the evaluation ``(r, cost, rw)`` of the point."""


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
        s = np.broadcast_to(fit_one_element(np.asarray(spec, dtype=float), x), x.shape)
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


def count_message(size, m):
    """The error for ``size`` residuals where x0 had ``m``."""
    return f"fun returned {size} residuals, but {m} at x0; their number must not change"


def jacobian_shape_message(shape, m, n):
    """The error for a dense Jacobian of ``shape`` with ``m`` residuals, ``n`` unknowns."""
    return (f"jac returned an array of shape {tuple(shape)}; expected (m, n) = {(m, n)} "
            f"(or (m,) + x0.shape) for {m} residuals and {n} unknowns")


# --- residuals and Jacobians ---------------------------------------------------------

class _Residuals:
    """``r(x)`` and ``J(x)`` for every ``jac`` form, with true evaluation counts."""

    def __init__(self, fun, jac, args, kwargs, shape, lb, ub, loss, diff_step=None,
                 sparsity=None, max_nfev=None):
        self.fun, self.args, self.kwargs, self.shape = fun, args, kwargs, shape
        self.n = math.prod(shape)
        self.m = None
        self.lb, self.ub = lb, ub
        self.loss, self.diff_step, self.max_nfev = loss, diff_step, max_nfev
        self.sparsity = None if sparsity is None else _sparsity(sparsity, self.n)
        self.nfev = self.njev = 0
        self.r_dtype = None
        fd = None if callable(jac) or jac is False else _finite_diff.check_method(jac)
        if callable(jac):
            self.jac, self.fd = jac, None
        elif fd is not None:
            self.jac, self.fd = None, fd
        else:
            raise ValueError(f"jac must be a callable returning the Jacobian, or one of "
                             f"{_finite_diff.FD_METHODS} (finite differences), got {jac!r}")

    def residuals(self, x):
        if self.max_nfev is not None and self.nfev >= self.max_nfev:
            raise BudgetSpent
        self.nfev += 1
        r = self.fun(x.reshape(self.shape).copy(), *self.args, **self.kwargs)
        r = np.array(r)  # a copy: fun may return the same array at every call
        if self.r_dtype is None:
            self.r_dtype = r.dtype  # the dtype fun computes in (sizes difference steps)
        if r.dtype.kind not in "biufc" or (r.dtype.kind == "c" and self.fd != "cs"):
            raise TypeError(f"fun must return real numbers (the residuals), got dtype {r.dtype}")
        r = r.reshape(-1)
        if self.m is None:
            if r.size == 0:
                raise ValueError("fun returned no residuals; it must return at least one")
            self.m = r.size
        elif r.size != self.m:
            raise ValueError(count_message(r.size, self.m))
        return r

    def residuals64(self, x):
        """The residuals at x as float64 (fun may compute in float32)."""
        r = self.residuals(x)
        if r.dtype != np.float64:
            r = (r.real if r.dtype.kind == "c" else r).astype(np.float64)
        return r

    def evaluate(self, x):
        """``(r, J, cost, rw)`` at x: the residuals, the Jacobian (None when the cost is
        not finite), the loss's cost and ``rw``, the weighted residuals whose ``Jᵀrw``
        is the gradient."""
        r = self.residuals64(x)
        cost, w = self.loss.evaluate(r)
        rw = r if w is None else w * r
        if not math.isfinite(cost) or (w is not None and not np.all(np.isfinite(rw))):
            # with unit weights (w None) the cost ½‖r‖² is finite only if every r_i is
            return r, None, cost, rw
        try:
            return r, self.jacobian(x, r), cost, rw
        except BudgetSpent:
            raise BudgetSpent(r, cost, rw) from None

    def jacobian(self, x, r):
        """``J`` at x, whose residuals are ``r`` (used by forward differences)."""
        self.njev += 1
        if self.jac is None:
            return self._finite_difference(x, r)
        return self._check_jac(self.jac(x.reshape(self.shape).copy(), *self.args,
                                        **self.kwargs))

    def _check_jac(self, J):
        m, n = self.m, self.n
        # an exact ndarray, the common case, is neither: skip the two class tests
        if type(J) is not np.ndarray and (isinstance(J, LinearOperator) or sp.issparse(J)):
            if tuple(J.shape) != (m, n):
                raise ValueError(f"jac returned a {type(J).__name__} of shape {J.shape}, "
                                 f"expected (m, n) = {(m, n)}")
            return J
        J = np.array(J)  # a copy: jac may return the same array at every call
        if J.dtype.kind not in "biuf":
            raise TypeError(f"jac must return a real Jacobian, got dtype {J.dtype}")
        one_unknown = n == 1 and J.size == m  # a 0-d or 1-element x0: J as (m,), (m, 1), ...
        if J.shape not in ((m, n), (m,) + tuple(self.shape)) and not (
                m == 1 and J.shape == (n,)) and not one_unknown:
            raise ValueError(jacobian_shape_message(J.shape, m, n))
        return J.reshape(m, n)

    def _finite_difference(self, x, r0):
        """The Jacobian by ``_finite_diff.jacobian``, inside the bounds; with a sparsity
        structure, by SciPy's grouped differences (``approx_derivative``), sparse."""
        lb = None if self.lb is None else self.lb.reshape(-1)
        ub = None if self.ub is None else self.ub.reshape(-1)
        if self.sparsity is not None:
            return self._grouped_difference(x, r0, lb, ub)
        return _finite_diff.jacobian(self.residuals, x.reshape(-1), r0, self.fd, lb, ub,
                                     rel_step=self.diff_step, f_dtype=self.r_dtype)

    def _grouped_difference(self, x, r0, lb, ub):
        from scipy.optimize._numdiff import approx_derivative, group_columns

        structure = self.sparsity
        if structure.shape != (self.m, self.n):
            raise ValueError(f"jac_sparsity has shape {structure.shape}, expected (m, n) = "
                             f"{(self.m, self.n)}")
        bounds = (-np.inf if lb is None else lb, np.inf if ub is None else ub)
        if self.fd == "cs":  # complex points: fun's complex values, not their real part
            def call(xf):
                return self.residuals(xf)
        else:
            def call(xf):
                return self.residuals64(xf.astype(x.dtype))
        return approx_derivative(
            call, x.reshape(-1).astype(float),
            method=self.fd, rel_step=self.diff_step, f0=r0, bounds=bounds,
            sparsity=(structure, group_columns(structure)))


def _sparsity(structure, n):
    """``jac_sparsity`` as a CSC 0/1 matrix (SciPy's forms: array_like or sparse)."""
    S = sp.csc_matrix(structure) if sp.issparse(structure) else sp.csc_matrix(
        np.atleast_2d(np.asarray(structure)))
    if S.ndim != 2 or S.shape[1] != n:
        raise ValueError(f"jac_sparsity must be an (m, n) structure with n = {n} columns, "
                         f"got shape {S.shape}")
    return S


def _rmatvec(J, r):
    """``J.T @ r`` as a flat float array, for dense, sparse and LinearOperator J."""
    if isinstance(J, LinearOperator):
        return np.asarray(J.rmatvec(r), dtype=float).reshape(-1)
    if isinstance(J, np.ndarray) and J.ndim == 2 and J.dtype.kind in "biuf":
        from ._reductions import rmatvec  # as the compiled loop computes it

        return rmatvec(np.ascontiguousarray(J), np.asarray(r, dtype=float))
    return np.asarray(J.T @ r, dtype=float).reshape(-1)
