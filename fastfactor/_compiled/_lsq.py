"""The Adafactor phase of ``fastfactor.least_squares`` in the compiled loop.

When the residuals ``fun`` and a callable ``jac`` are ``numba.njit`` functions, the phase
runs as one Numba function (``_lsq_loop.solve``) instead of ``_Run`` on the driver, with
the same iterates, counts and end. What it does not cover stays in the Python loop, with
the same results (:func:`fallback_reason` says why): a robust loss, finite differences,
a callback, progress lines (``verbose=2``), ``kwargs``, an ``lr`` schedule given as a
Python callable, a large x, ``args`` that Numba cannot type, functions that do not
compile for x0's type.
"""


import numba
import numpy as np

from .._backends.cpu._jit import jit_signature
from .._backends.cpu._notice import announce_also
from .._driver import Outcome
from .._hyper import InverseSqrt
from .._interrupts import INTERRUPTED
from .._lsq._residuals import BudgetSpent, count_message, jacobian_shape_message
from . import _lsq_loop as L
from ._loop import hyper_array
from ._objective import (
    BAD_NDIM,
    BAD_SHAPE,
    INFO_SIZE,
    MAX_NDIM,
    NFEV,
    NJEV,
    JacobianShapeError,
    ResidualCountError,
    is_compiled,
    lsq_adapters,
    lsq_signatures,
)

announce_also(L.solve, "the Adafactor phase of least_squares for numba.njit residuals")

#: The driver's statuses of the phase's ends (``_lsq._run._DRIVER_STATUS`` keys).
_ENDS = {L.MAXITER_REACHED: 1, L.NONFINITE: 2, L.XTOL_MET: "xtol", L.HANDOVER: "handover"}

_solvers = {}  # argument types -> the loop compiled for them
_adapters = {}  # (fun, jac, shape, dtype, args type) -> (res, jac), the oldest dropped first


def fallback_reason(problem, a, opt, x):
    """Why the Adafactor phase of ``problem`` (a ``_Residuals``) with the arguments ``a``
    and stepper ``opt`` cannot run compiled from ``x``, or None when it can."""
    from . import ENABLED, MAX_BYTES, PARALLEL_MIN_BYTES

    if not ENABLED:
        return "the compiled loop is turned off"
    if not (is_compiled(problem.fun) and is_compiled(problem.jac)):
        return "fun and jac are not both numba.njit functions"
    if problem.kwargs:
        return "kwargs are given"
    if not a.loss.linear:
        return "the loss is not linear"
    if a.callback is not None:
        return "a callback is given"
    if a.verbose >= 2:
        return "verbose=2 prints progress"
    lr = opt.hyper.lr
    if callable(lr) and not isinstance(lr, InverseSqrt):
        return "lr is a Python callable"
    if x.nbytes >= min(MAX_BYTES, PARALLEL_MIN_BYTES):
        return "x is large: the Python loop's own cost is small there"
    try:
        opt.hyper.check_dtype(x.dtype)  # else the Python loop raises it at its first step
    except ValueError as exc:
        return str(exc)
    return None


def adapters(problem, shape, dtype):
    """``(res, jac, args_type)`` of the problem's compiled functions, or None when they do
    not compile for x's type (or ``args`` cannot be typed)."""
    from . import cached_adapter

    found = cached_adapter(_adapters, lsq_adapters, problem.fun, problem.jac, problem.args,
                           shape, dtype)
    return None if found is None else found[0] + (found[1],)


def _solver(dtype, args_type, res_type, jac_type, rest):
    """The loop compiled for ``rest``'s types, which follow from the dtype and the type
    of ``args`` (``drive`` passes C-contiguous writable arrays only; Numba's ``typeof``
    of thirty arguments costs more than a short run)."""
    key = (np.dtype(dtype), args_type)
    found = _solvers.get(key)
    if found is None:
        argtypes = (res_type, jac_type) + tuple(numba.typeof(a) for a in rest)
        found = _solvers[key] = jit_signature(L.solve, argtypes)
    return found


def drive(run, problem, opt, layout, z0, zbox, compiled, budget, maxiter):
    """The phase from ``z0`` (flat, scaled; the evaluation at x0 is ``run.first``) in the
    compiled loop: an ``Outcome`` as ``_driver.drive`` returns it for ``run``'s stop
    hook, with ``run.best`` set and the problem's counts advanced. ``budget``: the most
    evaluations left (None: no limit); ``zbox``: the scaled bounds or None."""
    from . import INT64_MAX, _tables, call_until_done

    res, jac, args_type = compiled
    x0, r0, J0, g0, cost0, _ = run.first
    shape, dtype, n, m = x0.shape, z0.dtype, z0.size, r0.size
    ftable, utable, st = _tables(opt, layout, dtype, n)
    use_mom = opt.hyper.beta1 is not None
    z2, gz2 = np.empty((2, n), dtype), np.empty((2, n))
    x3, r3, J3, g3 = (np.empty((3, n), dtype), np.empty((3, m)), np.empty((3, m, n)),
                      np.empty((3, n)))
    for row in (0, L.LOWEST):
        x3[row], r3[row], J3[row], g3[row] = x0.reshape(-1), r0, J0, g0.reshape(-1)
    z2[0], gz2[0] = z0, g0.reshape(-1) * run.scale
    bounded = run.lb is not None
    flat = np.zeros(0)
    lb, ub = (run.lb, run.ub) if bounded else (flat, flat)
    zlb, zub = zbox if bounded else (flat, flat)
    # the loop is compiled for C-contiguous writable arrays (see _solver)
    lb, ub, zlb, zub = (np.require(a.reshape(-1), np.float64, ["C", "W"])
                        for a in (lb, ub, zlb, zub))
    scale = np.require(run.scale, dtype, ["C", "W"])
    window = 0 if run.recent is None else run.recent.maxlen - 1
    ist = np.zeros(L.INFO + INFO_SIZE, np.int64)
    ist[L.STATUS], ist[L.MAXITER] = L.RUNNING, min(int(maxiter), INT64_MAX)
    ist[L.BUDGET] = -1 if budget is None else budget - problem.nfev
    ist[L.WINDOW] = window
    fst = np.array([cost0, cost0, run.gtol, run.xtol, run.handover_rtol], np.float64)
    rest = (problem.args, z2, gz2, x3, r3, J3, g3, scale, bounded, lb, ub, zlb, zub,
            use_mom, np.zeros(n if use_mom else 0, dtype), st["row"], st["col"], st["v"],
            st["rn"], st["cn"], st["fsums"], st["usums"], ftable, utable, hyper_array(opt.hyper),
            np.zeros(window + 1), 0, ist, fst)
    (_, res_type), (_, jac_type) = lsq_signatures(dtype, args_type)
    solve = _solver(dtype, args_type, res_type, jac_type, rest)
    error = None
    try:
        call_until_done(lambda stop: solve(res, jac, *rest[:-3], stop, ist, fst), ist, L.NIT,
                        L.STATUS, L.RUNNING)
    except (KeyboardInterrupt, Exception) as exc:
        error = _python_error(exc, ist[L.INFO:], m, n)
    info = ist[L.INFO:]
    problem.nfev += int(info[NFEV])
    problem.njev += int(info[NJEV])
    c = int(ist[L.CURRENT])
    last, lowest = (_evaluation(x3, r3, J3, g3, row, shape, J0.dtype, float(value))
                    for row, value in ((c, fst[L.F]), (L.LOWEST, fst[L.BEST])))
    run.best = (float(fst[L.BEST]), int(ist[L.BEST_NIT]), lowest)
    nit, status = int(ist[L.NIT]), int(ist[L.STATUS])
    if error is not None:
        status = INTERRUPTED
    elif status == L.BUDGET_SPENT:  # as the Python loop meets it: BudgetSpent from fun
        status, error = INTERRUPTED, BudgetSpent()
    elif status == L.GTOL_MET:
        x, r, J, g, _, rw = last
        status = run.converged(x, J, rw, g)
    else:
        status = _ENDS[status]
    return Outcome(z2[c], float(fst[L.F]), gz2[c], last, nit, status, error)


def _evaluation(x3, r3, J3, g3, row, shape, jac_dtype, cost):
    """``(x, r, J, g, cost, rw)`` of a row, as ``_Run`` keeps an evaluation (J in the
    dtype jac returns)."""
    r = r3[row].copy()
    return (x3[row].reshape(shape).copy(), r, J3[row].astype(jac_dtype),
            g3[row].reshape(shape).copy(), cost, r)


def _python_error(exc, info, m, n):
    """The Python loop's error for a wrong number of residuals or Jacobian shape."""
    if isinstance(exc, ResidualCountError):
        return ValueError(count_message(int(info[BAD_SHAPE]), m))
    if isinstance(exc, JacobianShapeError):
        ndim = int(info[BAD_NDIM])
        found = tuple(int(d) for d in info[BAD_SHAPE:BAD_SHAPE + min(ndim, MAX_NDIM)])
        return ValueError(jacobian_shape_message(found, m, n))
    return exc
