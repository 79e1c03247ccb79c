"""The one iteration under ``minimize``, ``adafactor`` and ``least_squares``.

Evaluate, test, step, project, call back: :func:`drive` runs it for any front end. A
front end hands it an ``evaluate`` (a flat iterate of the backend -> ``(f, g, data)``:
``g`` flat on the backend, ``data`` whatever the front end keeps of the evaluation) and
optionally a ``stop`` hook, called after each accepted update with that evaluation, that
may end the run with a status of its own. Each gradient is read once before the update
is applied: on the CPU without bounds the step's statistics pass also gives finiteness
and a lower bound of ``max|g|`` that settles the gtol test until the end is near;
elsewhere one reduction gives both. The update goes from the iterate
into a spare buffer, so that the previous iterate survives a NaN, and nothing else of
size ``x`` is copied.
"""

import math
from typing import Any, NamedTuple

import numpy as np

from ._interrupts import INTERRUPTED

#: Status messages every front end shares; each adds or rewords its own.
BASE_MESSAGES = {
    1: "Maximum number of iterations has been exceeded.",
    99: "`callback` raised `StopIteration`.",
}


class Outcome(NamedTuple):
    """Where a run ended: the flat iterate ``x`` (a backend array owned by the run), its
    evaluation ``(f, g, data)``, ``nit`` and ``status`` (0 ``gtol``, 1 ``maxiter``, 2 NaN
    or inf met, 99 callback, 98 interrupted, or a ``stop`` status); ``error`` the
    ``KeyboardInterrupt`` or exception that ended the run (status 98), else None."""

    x: Any
    f: float
    g: Any
    data: Any
    nit: int
    status: int
    error: BaseException | None = None


def _may_alias(a, b):
    """Whether two host gradients may share memory (the CPU objective hands the step the
    user's own array; a device objective copies into buffers of its own)."""
    return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.may_share_memory(a, b)


def print_summary(res, extra=(), planned=()):
    """SciPy's closing lines of ``disp``, plus ``extra`` lines; a status in ``planned``
    (an end the user asked for, such as completed epochs) is not worded as a warning."""
    if res.success:
        head = "Optimization terminated successfully."
    elif res.status in planned:
        head = res.message
    else:
        head = "Warning: " + res.message
    print(head)
    print(f"         Current function value: {res.fun:.6g}")
    print(f"         Iterations: {res.nit}")
    print(f"         Function evaluations: {res.nfev}")
    print(f"         Gradient evaluations: {res.njev}")
    for line in extra:
        print(f"         {line}")


def measure(be, x, g, box):
    """``max|g|`` (with bounds: the projected gradient); NaN or inf when g is not finite."""
    if box is None:
        return be.max_abs(g)
    return be.max_abs_projected(x, g, box[0], box[1])


#: A lower bound of max|g| decides "not converged" only when it exceeds gtol by this
#: relative margin, far above the rounding of the sums it comes from.
_MARGIN = 1e-6


def _scan(opt, be, x, xb, g, views, box, gtol):
    """``(prepared, measure)`` of the gradient ``g`` at ``x``; the measure is NaN or inf
    when g is not finite, and may be a lower bound of ``max|g|`` when that is enough.

    Without bounds, on a backend with the two-phase step, the stepper's first phase
    reads g once for the step's statistics, its finiteness and a lower bound of
    ``max|g|`` (``prepared`` is then the pending step, to commit if the run goes on);
    the exact maximum is taken only when that bound cannot tell the gtol test. Else,
    and when the first phase refuses g (to tell a NaN or inf from squares that
    overflow), one reduction gives the measure.
    """
    if box is None and be.refuses_nonfinite:
        prepared, _ = opt._prepare(xb, views(g))
        if prepared is not None:
            if gtol is None or prepared.glow > gtol * (1 + _MARGIN):
                return prepared, prepared.glow
            return prepared, be.max_abs(g)
    return None, measure(be, x, g, box)


def drive(opt, views, x, evaluate, box, gtol, maxiter, stop=None, callback=None):
    """Run Adafactor from the flat iterate ``x`` (modified: pass a copy).

    ``opt`` is the stepper, ``views(flat)`` the list of its blocks in a flat array;
    ``box`` None or ``(lb, ub)`` of the backend; ``gtol`` None disables the gradient
    test (the finiteness check stays). ``stop(nit, x, previous, f, g, data)``
    (``previous``: the iterate before ``x``, until the next update overwrites it)
    returns a status to end the run with, or None; ``callback(nit, x, f, g, data)``
    returns True to stop (status 99). A ``KeyboardInterrupt``, or an exception raised by
    ``evaluate``, ``stop`` or ``callback`` after the first evaluation, ends the run
    with status 98 at the last iterate reached (the exception in ``Outcome.error``).
    Returns an :class:`Outcome`.
    """
    be = opt.backend
    xb = views(x)
    f, g, data = evaluate(x)
    prepared, gm = _scan(opt, be, x, xb, g, views, box, gtol)
    if not (math.isfinite(f) and math.isfinite(gm)):
        return Outcome(x, f, g, data, 0, 2)
    spare = be.empty_like(x)
    sb = views(spare)  # views, made once
    nit, status = 0, 1
    try:
        while True:
            if gtol is not None and gm <= gtol:
                status = 0
                break
            if nit >= maxiter:
                break
            if prepared is not None:
                opt._commit(prepared, xb, sb)
            elif opt._apply(xb, sb, views(g)) is not None:
                status = 2  # g is finite but its square overflows: no step can be taken
                break
            if box is not None:
                be.clip(spare, box[0], box[1])
            f_new, g_new, data_new = evaluate(spare)
            prepared_new, gm_new = _scan(opt, be, spare, sb, g_new, views, box, gtol)
            if not (math.isfinite(f_new) and math.isfinite(gm_new)):
                status = 2  # the update is discarded: nit counts those leading to x
                if _may_alias(g_new, g):  # fun reuses its gradient array: g was overwritten
                    f, g, data = evaluate(x)
                break
            # one statement: an interrupt cannot fall between the iterate and its values
            nit, x, spare, xb, sb, f, g, data, gm, prepared = (
                nit + 1, spare, x, sb, xb, f_new, g_new, data_new, gm_new, prepared_new)
            if stop is not None:
                asked = stop(nit, x, spare, f, g, data)  # spare: the previous iterate
                if asked is not None:
                    status = asked
                    break
            if callback is not None and callback(nit, x, f, g, data):
                status = 99
                break
    except (KeyboardInterrupt, Exception) as error:
        # the run keeps what it reached: x and its evaluation are untouched until the
        # statement above replaces them together (the step writes into spare)
        return Outcome(x, f, g, data, nit, INTERRUPTED, error)
    return Outcome(x, f, g, data, nit, status)
