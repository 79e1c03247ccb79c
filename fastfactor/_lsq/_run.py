"""The run of :func:`fastfactor.least_squares` on top of :func:`fastfactor.minimize`.

``MESSAGES`` (the status messages) and ``_Run``, the state shared by the objective
handed to ``minimize`` (``½‖r‖²`` and ``scale * Jᵀr`` in the scaled variables
``z = x / x_scale``), its monitoring callback (the ``gtol`` and ``xtol`` tests, the
best iterate, the user's callback) and the result with SciPy's least-squares fields;
``_cost`` is ``½‖r‖²``.
"""

import math

import numpy as np
from scipy.optimize import OptimizeResult

from ._residuals import _rmatvec
from .._options import wants_intermediate_result

MESSAGES = {
    0: "`gtol` termination condition is satisfied.",
    1: "The maximum number of iterations is exceeded.",
    2: "Stopped: the residuals or the Jacobian became NaN or inf; x is the lowest-cost "
       "iterate where both were finite.",
    3: "`xtol` termination condition is satisfied.",
    99: "`callback` raised `StopIteration`.",
}


# --- the run ---------------------------------------------------------------------------

class _Run:
    """State shared by the objective, the monitoring callback and the result.

    The problem is solved in ``z = x / scale``; ``last`` caches the last evaluation
    (minimize evaluates each iterate once, then the callback and the result look it
    up), ``best`` the lowest-cost iterate.
    """

    def __init__(self, problem, scale, lb, ub, solver, callback):
        self.p, self.scale, self.lb, self.ub = problem, scale, lb, ub
        self.gtol, self.xtol, self.disp = solver["gtol"], solver["xtol"], solver["disp"]
        self.callback = callback
        self.new_callback = callback is not None and wants_intermediate_result(callback)
        self.last = None  # (z, x, r, J, g) of the last evaluation
        self.best = None  # (cost, z) of the lowest-cost iterate
        self.z_prev = None  # the previous iterate, for xtol
        self.reason = None  # the status a test of `monitor` stopped the run with
        self.status = None
        self.nit = 0
        self.z_final = None

    def start(self, z0, x0, r0, J0):
        """Cache the evaluation at x0; False when the run ends there (status 2 or 0)."""
        g0 = None if J0 is None else _rmatvec(J0, r0).reshape(x0.shape)
        self.last = (z0.copy(), x0, r0, J0, g0)
        self.initial_cost = _cost(r0)
        self.best = (self.initial_cost, z0.copy())
        self.z_prev = z0.copy()
        self.z_final = z0
        if g0 is None or not np.all(np.isfinite(g0)):
            self.status = 2
        elif self._optimality(x0, g0) <= self.gtol:
            self.status = 0
        return self.status is None

    def _at(self, z):
        """``(x, r, J, g)`` at z, from the last evaluation when it was at z."""
        if np.array_equal(self.last[0], z):
            return self.last[1:]
        x = (z * self.scale).astype(z.dtype)
        if self.lb is not None:  # z's bounds are lb / scale: undo any rounding
            np.clip(x, self.lb, self.ub, out=x)
        r, J = self.p.evaluate(x)
        g = None if J is None else _rmatvec(J, r).reshape(x.shape)
        self.last = (z.copy(), x, r, J, g)
        return x, r, J, g

    def objective(self, z):
        """``(½‖r‖², scale * Jᵀr)`` at ``x = scale * z``, for minimize (jac=True)."""
        x, r, J, g = self._at(z)
        if g is None:
            return math.nan, np.zeros(z.shape, z.dtype)
        return _cost(r), g * self.scale

    def _optimality(self, x, g):
        if self.lb is None:
            return float(np.max(np.abs(g), initial=0.0))
        return float(np.max(np.abs(np.clip(x - g, self.lb, self.ub) - x), initial=0.0))

    def monitor(self, intermediate_result):
        """minimize's callback: track the best iterate, call the user's callback, and
        stop (StopIteration) when gtol or xtol is met."""
        z, cost = intermediate_result.x, intermediate_result.fun
        self.nit = intermediate_result.nit
        x, r, J, g = self._at(z)
        if cost < self.best[0]:
            self.best = (cost, z)
        if self.callback is not None and self._call_user(x, r, cost):
            self.reason = 99
        elif self._optimality(x, g) <= self.gtol:
            self.reason = 0
        elif np.linalg.norm(z - self.z_prev) <= self.xtol * (self.xtol + np.linalg.norm(z)):
            self.reason = 3
        self.z_prev = z
        if self.reason is not None:
            raise StopIteration

    def _call_user(self, x, r, cost):
        """Run the user's callback; True if it raised StopIteration."""
        xk = x.copy()
        try:
            if self.new_callback:
                self.callback(intermediate_result=OptimizeResult(
                    x=xk, cost=cost, fun=r.copy(), nit=self.nit, nfev=self.p.nfev))
            else:
                self.callback(xk)
        except StopIteration:
            return True
        return False

    def finish(self, res):
        self.nit = res.nit
        self.status = self.reason if res.status == 99 and self.reason is not None else res.status
        self.z_final = res.x if self.status in (0, 3) else self.best[1]

    def result(self):
        x, r, J, g = self._at(self.z_final)
        finite = g is not None
        if not finite:
            g = np.full(x.shape, np.nan)
        active = np.zeros(x.shape, dtype=int)
        if self.lb is not None:
            active[x <= self.lb] = -1
            active[x >= self.ub] = 1
        status = self.status
        res = OptimizeResult(
            x=x.copy(), cost=_cost(r), fun=r.copy(), jac=J, grad=g,
            optimality=self._optimality(x, g) if finite else math.nan,
            active_mask=active, nfev=self.p.nfev, njev=self.p.njev, nit=self.nit,
            status=status, success=status in (0, 3), message=MESSAGES[status])
        if self.disp:
            print(res.message)
            print(f"Function evaluations {res.nfev}, initial cost {self.initial_cost:.4e}, "
                  f"final cost {res.cost:.4e}, first-order optimality {res.optimality:.2e}.")
        return res


def _cost(r):
    return 0.5 * float(np.dot(r, r))
