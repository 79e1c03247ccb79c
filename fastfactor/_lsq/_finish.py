"""The trust-region finish of :func:`fastfactor.least_squares`.

SciPy's :func:`scipy.optimize.least_squares` (``method='trf'``) run from a point, with
the problem's bounds, loss, scaling and Jacobian, evaluating through the problem's own
``_Residuals`` (so every evaluation counts against ``max_nfev``, finite differences
included, and fun sees x0's shape and dtype). Fixed variables (``lb == ub``), which
SciPy refuses, are left out of the finish's variables. A budget spent, an interrupt or
an error ends the finish at its last iterate whose Jacobian is known.
"""

import numpy as np
import scipy.optimize as so
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from .._interrupts import INTERRUPTED
from ._residuals import BudgetSpent, _rmatvec
from ._run import Point, plateau


def _columns(J, idx, n):
    """The columns ``idx`` of J (all of them when ``idx`` is None)."""
    if idx is None:
        return J
    if isinstance(J, LinearOperator):
        def matvec(v):
            full = np.zeros(n)
            full[idx] = np.ravel(v)
            return J.matvec(full)
        return LinearOperator((J.shape[0], idx.size), matvec=matvec,
                              rmatvec=lambda r: np.ravel(J.rmatvec(r))[idx], dtype=float)
    if sp.issparse(J):
        return sp.csc_matrix(J)[:, idx]
    return J[:, idx]


def _same(a, b):
    """``np.array_equal(a, b)`` of two flat float arrays, without its conversions (SciPy
    asks for J right after the residuals at the same x: this test runs every iteration)."""
    return a.shape == b.shape and bool((a == b).all())


class _Finish:
    """One SciPy ``trf`` run from a :class:`Point`; ``current`` is its last iterate
    whose Jacobian is known, as a Point. ``fastfactor.dask`` subclasses it for its
    reduced problem (``fun``, ``jac``, ``_residuals_field``, ``_end_point``)."""

    def __init__(self, problem, start, lb, ub, callback, nit0):
        self.p, self.shape, self.dtype = problem, start.x.shape, start.x.dtype
        self.template = start.x.astype(float).reshape(-1)
        self.idx = None
        if lb is not None:
            fixed = (lb == ub).reshape(-1)
            if fixed.any():
                self.idx = np.flatnonzero(~fixed)
        self.lb, self.ub = lb, ub
        self.current = start  # the setter also sets `pending` (the last J, unsettled) to None
        self.last_r = None  # (flat x, r) of the last residuals SciPy asked for
        self.callback, self.nit0, self.nit = callback, nit0, 0

    def _x(self, xf):
        if self.idx is None:  # one new array: SciPy's iterate cast to x0's dtype
            x = np.asarray(xf, dtype=float).astype(self.dtype).reshape(self.shape)
        else:
            x = self.template.copy()
            x[self.idx] = xf
            x = x.astype(self.dtype).reshape(self.shape)
        if self.lb is not None:  # SciPy's iterates are inside; undo a cast's rounding
            np.clip(x, self.lb, self.ub, out=x)
        return x

    def fun(self, xf):
        r = self.p.residuals64(self._x(xf))
        self.last_r = (xf.copy(), r)
        return r

    def jac(self, xf):
        x = self._x(xf)
        if self.last_r is not None and _same(self.last_r[0], xf):
            r = self.last_r[1]
        else:
            r = self.p.residuals64(x)
        J = self.p.jacobian(x, r)
        self.pending = (x, r, J, self.nit)
        if not (self.p.loss.linear and type(J) is np.ndarray and J.dtype == np.float64):
            # at once: older SciPy scales r and J in place under a robust loss, and
            # other Jacobians' products may raise (later would not give the same Point)
            self._settle()
        return _columns(J, self.idx, self.template.size)

    @property
    def current(self):
        """The :class:`Point` of the last J; its cost and gradient are computed when
        asked (by the callback, at the end), not at every iterate."""
        self._settle()
        return self._current

    @current.setter
    def current(self, point):
        self.pending, self._current = None, point

    def _settle(self):
        """``current`` from ``pending``, when there is one."""
        if self.pending is not None:
            x, r, J, nit = self.pending
            cost, w = self.p.loss.evaluate(r)
            rw = r if w is None else w * r
            self.current = Point(x, r, J, _rmatvec(J, rw).reshape(self.shape), cost, 0, nit)

    def report(self, intermediate_result):
        """SciPy's callback: the user's, with fastfactor's fields and iteration count."""
        self.nit += 1
        if self.callback is None:
            return
        point = self.current
        if self.callback(point.x.copy(), lambda: dict(
                cost=point.cost, fun=self._residuals_field(point), nit=self.nit0 + self.nit,
                nfev=self.p.nfev)):
            raise StopIteration

    def _residuals_field(self, point):
        """The callback's ``fun``: the residuals at ``point``."""
        return point.r.copy()

    def _end_point(self, x, res):
        """The :class:`Point` at ``x``, where SciPy ended without asking for J."""
        point = Point(x, self.p.residuals64(x), None, None, float(res.cost), 0, 0)
        J = self.p.jacobian(x, point.r)
        cost, w = self.p.loss.evaluate(point.r)
        rw = point.r if w is None else w * point.r
        return point._replace(J=J, g=_rmatvec(J, rw).reshape(self.shape), cost=cost)

    def run(self, settings):
        """The finish's :class:`Point` (``nit`` its iterations) and SciPy's result (None
        when the finish ended by a budget, an interrupt or an error)."""
        xs = self.template if self.idx is None else self.template[self.idx]
        bounds = (-np.inf, np.inf)
        if self.lb is not None:
            lb, ub = self.lb.reshape(-1), self.ub.reshape(-1)
            bounds = (lb, ub) if self.idx is None else (lb[self.idx], ub[self.idx])
            xs = np.clip(xs, *bounds)
        settings = dict(settings)
        if isinstance(settings["x_scale"], np.ndarray) and self.idx is not None:
            settings["x_scale"] = settings["x_scale"].reshape(-1)[self.idx]
        budget = self.p.max_nfev
        if budget is not None:
            settings["max_nfev"] = max(budget - self.p.nfev, 1)
        try:
            res = so.least_squares(self.fun, xs, jac=self.jac, bounds=bounds, method="trf",
                                   callback=self.report, **settings)
        except BudgetSpent:
            return self.current._replace(status=0, nit=self.nit), None
        except (KeyboardInterrupt, Exception) as error:
            return self.current._replace(status=INTERRUPTED, nit=self.nit, error=error), None
        x = self._x(res.x)
        point = self.current
        if not np.array_equal(point.x, x):  # SciPy ended where J was not asked (rare)
            point = self._end_point(x, res)
        return point._replace(status=int(res.status), nit=self.nit), res


def finish(problem, start, lb, ub, settings, callback, nit0, negligible):
    """SciPy's trf from the :class:`Point` ``start``: ``(point, scipy_result)``.

    ``settings``: the keywords of :func:`scipy.optimize.least_squares` (tolerances,
    ``x_scale``, ``loss``, ``f_scale``, ``tr_solver``, ``tr_options``, ``verbose``).
    A gtol end on a plateau (see :func:`plateau`; ``negligible``, the norm of
    residuals too small to have a direction) gets status -4.
    """
    point, res = _Finish(problem, start, lb, ub, callback, nit0).run(settings)
    if point.status == 1:
        _, w = problem.loss.evaluate(point.r)
        rw = point.r if w is None else w * point.r
        if plateau(point.J, rw, point.g, point.x, lb, ub, negligible):
            point = point._replace(status=-4)
    return point, res

