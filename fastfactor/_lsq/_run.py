"""The run of :func:`fastfactor.least_squares` on the shared driver.

``_Run`` is what the front end hands to ``fastfactor._driver.drive``: the evaluation
(``½‖r‖²`` and ``scale * Jᵀr`` in the scaled variables ``z = x / x_scale``, keeping
``(x, r, J, Jᵀr)`` of the evaluation), the stop hook (the ``gtol`` and ``xtol`` tests,
the best iterate, the user's callback) and the result with SciPy's least-squares fields.
"""

import math

import numpy as np
from scipy.optimize import OptimizeResult

from .. import _driver
from .._backends import get_backend
from .._interrupts import INTERRUPTED, conclude, status_message
from ._residuals import _rmatvec

LSQ_MESSAGES = {
    **_driver.BASE_MESSAGES,
    0: "`gtol` termination condition is satisfied.",
    1: "The maximum number of iterations is exceeded.",
    2: "Stopped: the residuals or the Jacobian became NaN or inf; x is the lowest-cost "
       "iterate where both were finite.",
    3: "`xtol` termination condition is satisfied.",
}


class _Run:
    """The evaluation, the stop hook and the result of one least-squares run.

    The problem is solved in the flat ``z = x / scale``; ``best`` is the lowest-cost
    iterate ``(cost, z copy, nit)``.
    """

    def __init__(self, problem, scale, lb, ub, solver, callback):
        self.p, self.shape = problem, scale.shape
        self.scale = scale.reshape(-1)
        self.lb = None if lb is None else lb.reshape(self.shape)
        self.ub = None if ub is None else ub.reshape(self.shape)
        self.gtol, self.xtol, self.disp = solver["gtol"], solver["xtol"], solver["disp"]
        self.callback = callback  # a fastfactor._callbacks.Callback or None
        self.first = None  # the evaluation at x0, handed to the driver's first call
        self.cpu = get_backend("cpu")  # here, not at import: numba loads on first use

    def start(self, z0, x0, r0, J0, cost0):
        """The evaluation at x0; the status the run ends with there (2 or 0), or None."""
        g0 = None if J0 is None else _rmatvec(J0, r0).reshape(x0.shape)
        self.first = (x0, r0, J0, g0, cost0)
        self.initial_cost = cost0
        self.best = (self.initial_cost, z0.copy(), 0)
        if g0 is None or not np.all(np.isfinite(g0)):
            return 2
        if self._optimality(x0, g0) <= self.gtol:
            return 0
        return None

    def evaluate(self, z):
        """``(½‖r‖², scale * Jᵀr, (x, r, J, Jᵀr, ½‖r‖²))`` at ``x = scale * z`` (flat z)."""
        if self.first is not None:
            data, self.first = self.first, None
        else:
            data = self._evaluate_x(z)
        g = data[3]
        if g is None:
            return math.nan, np.zeros(z.shape, z.dtype), data
        return data[4], g.reshape(-1) * self.scale, data

    def _evaluate_x(self, z):
        x = (z * self.scale).astype(z.dtype, copy=False).reshape(self.shape)
        if self.lb is not None:  # z's bounds are lb / scale: undo any rounding
            np.clip(x, self.lb, self.ub, out=x)
        r, J, cost = self.p.evaluate(x)
        g = None if J is None else _rmatvec(J, r).reshape(x.shape)
        return x, r, J, g, cost

    def _optimality(self, x, g):
        if self.lb is None:
            return self.cpu.max_abs(g)
        return float(np.max(np.abs(np.clip(x - g, self.lb, self.ub) - x), initial=0.0))

    def stop(self, nit, z, z_prev, cost, gz, data):
        """The driver's stop hook: track the best iterate, call the user's callback, and
        end the run when gtol (0) or xtol (3) is met."""
        x, r, _, g, _ = data
        if cost < self.best[0]:
            self.best = (cost, z.copy(), nit)
        if self.callback is not None and self.callback(
                x.copy(), lambda: dict(cost=cost, fun=r.copy(), nit=nit, nfev=self.p.nfev)):
            return 99
        if self._optimality(x, g) <= self.gtol:
            return 0
        dz = z - z_prev
        if math.sqrt(dz @ dz) <= self.xtol * (self.xtol + math.sqrt(z @ z)):
            return 3
        return None

    def result(self, status, nit, outcome=None):
        """The result: at the last iterate on success, else at the lowest-cost one."""
        if outcome is None:  # the run ended at x0
            x, r, J, g, cost = self.first
        elif status in (0, 3, INTERRUPTED) or (status != 2 and self.best[2] == outcome.nit):
            # the last evaluation, at the returned iterate (after an interrupt nothing of
            # the user's runs again, so that is the iterate returned)
            x, r, J, g, cost = outcome.data
        else:
            x, r, J, g, cost = self._evaluate_x(self.best[1])
        finite = g is not None
        if not finite:
            g = np.full(x.shape, np.nan)
        active = np.zeros(x.shape, dtype=int)
        if self.lb is not None:
            active[x <= self.lb] = -1
            active[x >= self.ub] = 1
        res = OptimizeResult(
            x=x.copy(), cost=cost, fun=r.copy(), jac=J, grad=g,
            optimality=self._optimality(x, g) if finite else math.nan,
            active_mask=active, nfev=self.p.nfev, njev=self.p.njev, nit=nit,
            status=status, success=status in (0, 3),
            message=status_message(LSQ_MESSAGES, status,
                                   None if outcome is None else outcome.error))
        if self.disp and not (outcome is not None and isinstance(outcome.error, Exception)):
            print(res.message)
            print(f"Function evaluations {res.nfev}, initial cost {self.initial_cost:.4e}, "
                  f"final cost {res.cost:.4e}, first-order optimality {res.optimality:.2e}.")
        return conclude(res, None if outcome is None else outcome.error,
                        "fastfactor.least_squares")

