"""The Adafactor phase of ``fastfactor.least_squares`` as one Numba function.

What ``fastfactor._lsq._run._Run`` does on the driver, compiled: evaluate (``x = z *
scale`` clipped into the bounds, the residuals, ``½‖r‖²``, the Jacobian, ``g = Jᵀr``,
the scaled gradient), test, step in ``z``, project; after each accepted step keep the
lowest-cost evaluation and apply the phase's tests in its order (``gtol`` on the
gradient, ``xtol`` on the step, the hand-over on the lowest costs). The same kernels
and reductions (``_lsq._reductions``) as the Python loop, so the iterates are the same
to the bit. The linear loss only (the robust losses' transcendental functions are
NumPy's in the Python loop).

The residuals and the Jacobian arrive as two first-class functions of fixed signatures
(``_objective.lsq_adapters``): ``res(x, r, args, info)`` writes the float64 residuals
into ``r``, ``jac(x, J, args, info)`` the float64 ``(m, n)`` Jacobian into ``J``; so
``solve`` is compiled once per dtype and type of ``args`` and cached on disk.

The evaluations live in arrays of pairs (row ``ist[CURRENT]`` holds the iterate reached,
the other row the trial one) and, for ``x``, ``r``, ``J`` and ``g``, a third row with
the lowest-cost evaluation. A call runs until the phase ends or ``nit`` reaches
``nit_stop``; the host calls again to go on.
"""

import math

from .._backends.cpu import _kernels as k
from .._backends.cpu._jit import jit_inline
from .._lsq._reductions import rmatvec, sum_squares
from ._loop import _clip, _commit, _prepare, _scan, scalars
from ._objective import NFEV

# ist slots; from INFO on, the adapters' ``info`` (``_objective``: counts, wrong shapes)
NIT, T, STATUS, CURRENT, PREPARED, BEST_NIT, SEEN, MAXITER, BUDGET, WINDOW, INFO = range(11)
# fst slots: the cost reached, the lowest cost, the tolerances
F, BEST, GTOL, XTOL, RTOL = range(5)
#: ``ist[STATUS]``: running, then why the phase ended (1 and 2 are the driver's
#: maxiter and NaN-or-inf; GTOL is the gradient test passed, which the host tells from a
#: plateau; BUDGET is ``max_nfev`` reached before an evaluation).
RUNNING, MAXITER_REACHED, NONFINITE, GTOL_MET, XTOL_MET, HANDOVER, BUDGET_SPENT = (
    -1, 1, 2, 10, 11, 12, 13)
#: The row of the lowest-cost evaluation in ``x3``, ``r3``, ``J3``, ``g3``.
LOWEST = 2


@jit_inline
def _evaluate(res, jac, args, z, x, r, J, g, gz, scale, bounded, lb, ub, info):
    """The cost at ``x = z * scale`` (clipped), filling ``x``, ``r``, ``J``, ``g`` and
    the scaled gradient ``gz``; a cost that is not finite returns before the Jacobian."""
    for i in range(z.shape[0]):
        x[i] = z[i] * scale[i]
    if bounded:
        _clip(x, lb, ub)
    res(x, r, args, info)
    cost = 0.5 * sum_squares(r)
    if not math.isfinite(cost):
        return cost
    jac(x, J, args, info)
    gg = rmatvec(J, r)
    for i in range(g.shape[0]):
        g[i] = gg[i]
        gz[i] = gg[i] * scale[i]
    return cost


@jit_inline
def _keep_lowest(x3, r3, J3, g3, c):
    """Copy row ``c`` of the evaluation into the lowest-cost row (element by element:
    whole-array assignment compiles a shape-formatting error path, seconds of it)."""
    for i in range(x3.shape[1]):
        x3[LOWEST, i] = x3[c, i]
        g3[LOWEST, i] = g3[c, i]
    for i in range(r3.shape[1]):
        r3[LOWEST, i] = r3[c, i]
        for j in range(J3.shape[2]):
            J3[LOWEST, i, j] = J3[c, i, j]


@jit_inline
def _phase_test(z, zprev, x, g, bounded, lb, ub, recent, ist, fst):
    """``_Run.stop``'s tests after the lowest cost was updated: the status that ends the
    phase, or RUNNING."""
    if bounded:
        optimality = k._max_abs_projected(x, g, lb, ub)
    else:
        optimality = k._max_abs(g)
    if not optimality > fst[GTOL]:
        return GTOL_MET
    xtol = fst[XTOL]
    if math.sqrt(sum_squares(z - zprev)) <= xtol * (xtol + math.sqrt(sum_squares(z))):
        return XTOL_MET
    window = ist[WINDOW]
    if window > 0:  # the last window + 1 lowest costs, in a ring
        size = window + 1
        seen = ist[SEEN]
        recent[seen % size] = fst[BEST]
        ist[SEEN] = seen + 1
        if seen + 1 >= size:
            newest, oldest = recent[seen % size], recent[(seen + 1) % size]
            if oldest - newest <= fst[RTOL] * newest:
                return HANDOVER
    return RUNNING


def solve(res, jac, args, z2, gz2, x3, r3, J3, g3, scale, bounded, lb, ub, zlb, zub, use_mom,
          mom, row, col, v, rn, cn, fsums, usums, ftable, utable, hyper, recent, nit_stop, ist,
          fst):
    """Run from the state in the arrays until the phase ends or ``nit`` reaches
    ``nit_stop``. ``lb``/``ub`` bound x, ``zlb``/``zub`` the scaled z (flat float64)."""
    info = ist[INFO:]
    while True:
        c = ist[CURRENT]
        if ist[NIT] >= ist[MAXITER]:
            ist[STATUS] = MAXITER_REACHED
            return
        if ist[NIT] >= nit_stop:
            return
        z, spare = z2[c], z2[1 - c]
        gz, gnew = gz2[c], gz2[1 - c]
        t = ist[T]
        s = scalars(hyper, t + 1)
        if ist[PREPARED] == 0:
            if _prepare(z, gz, ftable, utable, row, col, v, rn, cn, fsums, usums, s) < 0:
                ist[STATUS] = NONFINITE  # finite, but its squares overflow: no step
                return
        if use_mom:
            _commit(z, spare, gz, ftable, utable, row, col, v, mom, rn, cn, fsums, usums, s)
        else:
            _commit(z, spare, gz, ftable, utable, row, col, v, None, rn, cn, fsums, usums, s)
        ist[T] = t + 1
        if bounded:
            _clip(spare, zlb, zub)
        if ist[BUDGET] >= 0 and info[NFEV] >= ist[BUDGET]:
            ist[STATUS] = BUDGET_SPENT
            return
        d = 1 - c
        f = _evaluate(res, jac, args, spare, x3[d], r3[d], J3[d], g3[d], gnew, scale, bounded,
                      lb, ub, info)
        if not math.isfinite(f):
            ist[STATUS] = NONFINITE
            return
        gm, prepared = _scan(spare, gnew, bounded, zlb, zub, ftable, utable, row, col, v, rn,
                             cn, fsums, usums, scalars(hyper, ist[T] + 1), -math.inf)
        if not math.isfinite(gm):
            ist[STATUS] = NONFINITE  # the update is discarded: nit counts those leading to x
            return
        ist[CURRENT] = d
        ist[NIT] += 1
        ist[PREPARED] = 1 if prepared else 0
        fst[F] = f
        if f < fst[BEST]:
            _keep_lowest(x3, r3, J3, g3, d)
            fst[BEST] = f
            ist[BEST_NIT] = ist[NIT]
        end = _phase_test(spare, z, x3[d], g3[d], bounded, lb, ub, recent, ist, fst)
        if end != RUNNING:
            ist[STATUS] = end
            return
