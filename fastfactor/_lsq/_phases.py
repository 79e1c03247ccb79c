"""The phases of least squares, for both front ends: Adafactor, then SciPy's ``trf``.

:func:`adafactor_phase` runs the first phase from the evaluation at x0 on any problem
with the interface of ``_residuals._Residuals`` (``evaluate``, ``nfev``, ``njev``,
``max_nfev``); :func:`trust_region_phases` runs the finish from its result and, when
that phase did not converge, from x0, through a front end's own finish (the residuals
in memory, or the reduced problem of ``fastfactor.dask``). The result's message and
the ``verbose`` summary are shared too.
"""

import math
import sys
from typing import Any, NamedTuple

from scipy.optimize import OptimizeResult

from .. import _driver
from .._backends import get_backend
from .._interrupts import INTERRUPTED, status_message
from .._stepper import Adafactor
from ._residuals import _Residuals
from ._run import LSQ_MESSAGES, Point, _Run

PHASE_TEXT = {"adafactor": "the Adafactor phase", "trf": "the trf finish",
              "trf from x0": "trf from x0"}


def spent(problem):
    """Whether the problem's ``max_nfev`` evaluations are made."""
    return problem.max_nfev is not None and problem.nfev >= problem.max_nfev


class Counts:
    """Each phase's evaluations, as the difference of the problem's counts."""

    def __init__(self, problem):
        self.p, self.nfev, self.njev = problem, 0, 0

    def phase(self, point):
        res = OptimizeResult(cost=point.cost, status=point.status, nit=point.nit,
                             nfev=self.p.nfev - self.nfev, njev=self.p.njev - self.njev)
        self.nfev, self.njev = self.p.nfev, self.p.njev
        return res


class Phase(NamedTuple):
    """The Adafactor phase's end: its :class:`_Run`, its ``point``, the point at x0
    (None when it has no Jacobian: no finish), the counts and ``phases``."""

    run: _Run
    point: Point
    x0_point: Any
    counts: Counts
    phases: dict


def adafactor_phase(problem, a, first, scale, max_nfev):
    """The Adafactor phase on ``problem`` from ``first``, the evaluation ``(r, J, cost,
    rw)`` at ``a.x`` (``a``: the :class:`~._arguments.Arguments`), in the variables
    ``x / scale``; before a finish it may use half of ``max_nfev``."""
    tol = a.tolerances
    # a tolerance of None or 0 turns its test off (as in SciPy, whose tests are strict)
    run = _Run(problem, scale, a.lb, a.ub, tol["gtol"] or -math.inf, tol["xtol"] or math.nan,
               a.callback, a.verbose, a.maxiter, a.handover)
    at_x0 = run.start(a.x, first)
    counts = Counts(problem)
    if first[1] is None:  # no Jacobian at x0: the budget is spent, or it is not finite
        point = run.outcome()._replace(status=0 if spent(problem) else run.start_status)
        return Phase(run, point, None, counts, {"adafactor": counts.phase(point)})
    x0_point = Point(a.x, first[0], first[1], run.first[3], first[2], 0, 0)
    if at_x0 is not None or a.maxiter == 0:
        point = run.outcome()
        if at_x0 is None:
            point = point._replace(status=0)
    else:
        if max_nfev is not None and a.solver["finish"]:  # keep half for the finish
            problem.max_nfev = min(max(max_nfev // 2, problem.nfev), max_nfev)
        z0 = (a.x / scale).astype(a.x.dtype).reshape(-1)
        zbox = None if a.box is None else (a.box[0] / run.scale, a.box[1] / run.scale)
        opt = Adafactor(a.layout.shapes, **a.hyper)
        with get_backend("cpu").compile_notice(a.verbose >= 1):
            out = _compiled_phase(run, problem, opt, a, z0, zbox)
            if out is None:
                out = _driver.drive(opt, a.layout.views, z0, run.evaluate, zbox, None,
                                    a.maxiter, stop=run.stop)
        point = run.outcome(out)
        problem.max_nfev = max_nfev
    return Phase(run, point, x0_point, counts, {"adafactor": counts.phase(point)})


def _compiled_phase(run, problem, opt, a, z0, zbox):
    """The phase in the compiled loop (``fastfactor._compiled._lsq``) when the problem's
    residuals and Jacobian are ``numba.njit`` functions it covers, else None."""
    if not isinstance(problem, _Residuals) or "numba" not in sys.modules:
        return None
    from .._compiled import _lsq

    if _lsq.fallback_reason(problem, a, opt, a.x) is not None:
        return None
    compiled = _lsq.adapters(problem, a.x.shape, a.x.dtype)
    if compiled is None:
        return None
    return _lsq.drive(run, problem, opt, a.layout, z0, zbox, compiled, problem.max_nfev,
                      a.maxiter)


def wants_finish(phase, a):
    """Whether the finish runs after ``phase`` (the budget aside): it is on, and the
    phase did not end by an error, a callback's stop or at an x0 without Jacobian."""
    point = phase.point
    return (a.solver["finish"] and phase.x0_point is not None and point.error is None
            and point.status != -2)


def trust_region_phases(problem, phase, finish_from, from_x0, verbose=0):
    """SciPy's trf from the Adafactor phase's point and, when that phase did not
    converge or the finish ended on a plateau (and ``from_x0``), from x0: the best
    ``(Point, phase name)``; ``finish_from(start, nit0)`` runs one finish, a Point.
    With ``verbose >= 2`` a line names each run before SciPy's iteration table."""
    point, x0_point, counts, phases = phase.point, phase.x0_point, phase.counts, phase.phases
    best, best_name = point, "adafactor"
    if verbose >= 2:
        print("trf from the Adafactor phase's result:", flush=True)
    done = finish_from(point if point.J is not None else x0_point, point.nit)
    phases["trf"] = counts.phase(done)
    if done.error is not None or done.status == -2 or done.cost <= best.cost:
        best, best_name = done, "trf"
    again = point.status not in (1, 3) or done.status not in (1, 2, 3, 4)
    if not (from_x0 and again and point.nit > 0 and best.error is None
            and best.status != -2 and not spent(problem)):
        return best, best_name
    if verbose >= 2:
        print("trf from x0 (the Adafactor phase did not converge by itself, or the finish "
              "ended on a plateau):", flush=True)
    other = finish_from(x0_point, point.nit + done.nit)
    phases["trf from x0"] = counts.phase(other)
    if other.error is not None or other.cost < best.cost:
        return other, "trf from x0"
    if other.status == -2:  # stopped by the callback: still the lowest cost
        best = best._replace(status=-2)
    return best, best_name


def result_message(point, phase, phases):
    """The result's message: the status's, and which phase ``x`` comes from."""
    message = status_message(LSQ_MESSAGES, point.status, point.error)
    if point.status != INTERRUPTED:
        nit = phases["adafactor"].nit
        message += (f" x is from {PHASE_TEXT[phase]}"
                    + (f" (after {nit} Adafactor iterations)." if phase == "trf" else "."))
    return message


def print_summary(res, point, run, verbose):
    """With ``verbose >= 1``, SciPy's closing lines (not after an error: it is raised)."""
    if verbose >= 1 and not isinstance(point.error, Exception):
        print(res.message)
        print(f"Function evaluations {res.nfev}, initial cost {run.initial_cost:.4e}, "
              f"final cost {res.cost:.4e}, first-order optimality {res.optimality:.2e}.")
