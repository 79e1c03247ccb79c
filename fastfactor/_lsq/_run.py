"""The Adafactor phase of :func:`fastfactor.least_squares` on the shared driver.

``_Run`` is what the front end hands to ``fastfactor._driver.drive``: the evaluation
(the loss's cost and ``scale * Jᵀ(ρ'·r)`` in the scaled variables ``z = x / x_scale``,
keeping ``(x, r, J, g, cost)`` of the evaluation), the stop hook (the ``gtol`` and
``xtol`` tests, the best iterate, progress, the user's callback) and the phase's
outcome as a :class:`Point`.
"""

import math
from collections import deque
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from .._backends import get_backend
from .._interrupts import INTERRUPTED
from ._progress import Progress
from ._residuals import BudgetSpent, _column_norms, _rmatvec

#: The statuses of ``fastfactor.least_squares``: SciPy's (-2 to 4) and its own.
LSQ_MESSAGES = {
    -4: "Stopped on a plateau: the gradient is below `gtol`, but the residuals are not "
        "orthogonal to the columns of the Jacobian (the model barely depends on its "
        "parameters there); not a minimum.",
    -3: "Stopped: the residuals or the Jacobian became NaN or inf; x is the lowest-cost "
        "point where both were finite.",
    -2: "`callback` raised `StopIteration`.",
    0: "The maximum number of function evaluations or iterations is exceeded.",
    1: "`gtol` termination condition is satisfied.",
    2: "`ftol` termination condition is satisfied.",
    3: "`xtol` termination condition is satisfied.",
    4: "Both `ftol` and `xtol` termination conditions are satisfied.",
}
#: The driver's ends of the Adafactor phase, as statuses of the result.
_DRIVER_STATUS = {1: 0, 2: -3, 99: -2, INTERRUPTED: INTERRUPTED, "gtol": 1, "xtol": 3,
                  "plateau": -4, "handover": 0}


class Point(NamedTuple):
    """One candidate result: the point ``x`` (x0's shape and dtype), its residuals
    ``r``, Jacobian ``J`` (None if not finite), gradient ``g`` (x's shape), ``cost``,
    the ``status`` of the phase that produced it, ``nit`` and the ``error`` that ended
    it (a KeyboardInterrupt or exception: status 98), else None."""

    x: Any
    r: Any
    J: Any
    g: Any
    cost: float
    status: int
    nit: int
    error: BaseException | None = None


#: A gradient below gtol is a plateau, not a minimum, where some column of J makes a
#: cosine above this with the residuals (MINPACK's gtol measure, scale-free). Measured:
#: 9e-5 on Eckerle4's plateau; up to 2e-6 at minima of badly scaled models with
#: finite-difference Jacobians, where the absolute gtol test ends trf early.
ORTHOGONAL = 1e-5


def plateau(J, rw, g, x, lb, ub, negligible):
    """Whether a point whose gradient passed the gtol test is a plateau: the residuals
    ``rw`` are not negligible (``‖rw‖ > negligible``) and not orthogonal to the column
    of some variable not at a bound, ``|J_jᵀ rw| / (‖J_j‖ ‖rw‖) > ORTHOGONAL``. There
    the gradient is small only because the model barely depends on its parameters (a
    peak moved off the data). Not tested for operators, whose column norms would cost
    ``n`` products: False."""
    if J is None or not (sp.issparse(J) or isinstance(J, np.ndarray)):
        return False
    size = float(np.linalg.norm(rw))
    if not size > negligible:
        return False
    norms = _column_norms(J, x.size) * size
    if not np.any(norms > 0):  # J = 0 (a model below the rounding of the data, say)
        return True
    tested = (norms > 0) & (active_mask(x, lb, ub) == 0).reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.abs(g.reshape(-1)) / norms
    return bool(np.any(cosine[tested] > ORTHOGONAL))


#: A variable within this relative distance of a bound is at it (SciPy's rtol of
#: ``find_active_constraints``: trf returns points a few ulps inside the box).
ACTIVE_RTOL = 1e-10


def active_mask(x, lb, ub):
    """-1 at a lower bound, +1 at an upper bound, 0 elsewhere (x's shape): within
    ``ACTIVE_RTOL * max(1, |bound|)`` of it."""
    active = np.zeros(x.shape, dtype=int)
    if lb is not None:
        lower = np.isfinite(lb) & (x - lb <= ACTIVE_RTOL * np.maximum(1, np.abs(lb)))
        upper = np.isfinite(ub) & (ub - x <= ACTIVE_RTOL * np.maximum(1, np.abs(ub)))
        active[lower] = -1
        active[upper] = 1
    return active


class _Run:
    """The evaluation, the stop hook and the outcome of the Adafactor phase.

    The problem is solved in the flat ``z = x / scale``; ``best`` is the lowest-cost
    iterate ``(cost, nit, evaluation)`` (its residuals copied: fun may reuse an array).
    """

    def __init__(self, problem, scale, lb, ub, gtol, xtol, callback, verbose, maxiter,
                 handover=(0, 0.0)):
        self.p, self.shape = problem, scale.shape
        self.scale = scale.reshape(-1)
        self.lb = None if lb is None else lb.reshape(self.shape)
        self.ub = None if ub is None else ub.reshape(self.shape)
        self.gtol, self.xtol = gtol, xtol
        # the lowest costs of the last `window` iterations (see stop)
        window, self.handover_rtol = handover
        self.recent = deque(maxlen=window + 1) if window else None
        self.callback = callback  # a fastfactor._callbacks.Callback or None
        self.progress = Progress("adafactor", maxiter) if verbose >= 2 else None
        self.first = None  # the evaluation at x0, handed to the driver's first call
        self.cpu = get_backend("cpu")  # here, not at import: numba loads on first use

    def start(self, x0, evaluation):
        """The evaluation at x0; the status the run ends with there (-3 or 1), or None."""
        r0, J0, cost0, rw0 = evaluation
        g0 = None if J0 is None else _rmatvec(J0, rw0).reshape(x0.shape)
        self.first = (x0, r0, J0, g0, cost0, rw0)
        self.initial_cost = cost0
        # residuals this small are rounding: their direction means nothing
        self.negligible = math.sqrt(2 * abs(cost0)) * np.finfo(float).eps ** 0.5
        self.best = (cost0, 0, (x0, r0.copy(), J0, g0, cost0, rw0))
        if g0 is None or not np.all(np.isfinite(g0)):
            self.start_status = -3
        else:
            end = self.converged(x0, J0, rw0, g0)
            self.start_status = None if end is None else _DRIVER_STATUS[end]
        return self.start_status

    def evaluate(self, z):
        """``(cost, scale * g, (x, r, J, g, cost, rw))`` at ``x = scale * z`` (flat z)."""
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
        r, J, cost, rw = self.p.evaluate(x)
        g = None if J is None else _rmatvec(J, rw).reshape(x.shape)
        return x, r, J, g, cost, rw

    def optimality(self, x, g):
        """``max|g|``, or with bounds the projected gradient ``max|clip(x - g) - x|``."""
        if self.lb is None:
            return self.cpu.max_abs(g)
        return float(np.max(np.abs(np.clip(x - g, self.lb, self.ub) - x), initial=0.0))

    def converged(self, x, J, rw, g):
        """The gtol test: "gtol" passed, "plateau" (see :func:`plateau`) or None."""
        if self.optimality(x, g) > self.gtol:
            return None
        return "plateau" if plateau(J, rw, g, x, self.lb, self.ub, self.negligible) else "gtol"

    def stop(self, nit, z, z_prev, cost, gz, data):
        """The driver's stop hook: track the best iterate, report progress, call the
        user's callback, and end the phase when gtol or xtol is met, on a plateau, or
        (before a finish) when the lowest cost fell by at most ``handover_rtol`` of
        itself over the last ``window`` iterations."""
        x, r, J, g, _, rw = data
        if cost < self.best[0]:
            self.best = (cost, nit, (x, r.copy(), J, g, cost, rw))
        if self.progress is not None:
            self.progress.update(nit, cost, self.optimality(x, g), self.p.nfev)
        if self.callback is not None and self.callback(
                x.copy(), lambda: dict(cost=cost, fun=r.copy(), nit=nit, nfev=self.p.nfev)):
            return 99
        end = self.converged(x, J, rw, g)
        if end is not None:  # on a plateau nothing moves: end the phase there too
            return end
        from ._reductions import sum_squares  # as the compiled loop sums them

        if math.sqrt(sum_squares(z - z_prev)) <= self.xtol * (
                self.xtol + math.sqrt(sum_squares(z))):
            return "xtol"
        if self.recent is not None:
            # the first-order tail: the trust region converges faster from here
            self.recent.append(self.best[0])
            if (len(self.recent) == self.recent.maxlen and self.recent[0] - self.recent[-1]
                    <= self.handover_rtol * self.recent[-1]):
                return "handover"
        return None

    def outcome(self, out=None):
        """The phase's :class:`Point`: the last iterate on convergence, after an
        interrupt or an error, else the lowest-cost iterate."""
        if self.progress is not None:
            self.progress.close()
        if out is None:  # the phase ended at x0
            x, r, J, g, cost, _ = self.first
            return Point(x, r, J, g, cost, self.start_status, 0)
        error = out.error
        status = _DRIVER_STATUS[out.status]
        if isinstance(error, BudgetSpent):
            status, error = 0, None
        if status in (1, 3, -4, INTERRUPTED):
            # the iterate that passed the test; after an interrupt, the last one reached
            x, r, J, g, cost, _ = out.data
        else:
            x, r, J, g, cost, _ = self.best[2]
        return Point(x, r, J, g, cost, status, out.nit, error)
