"""``fastfactor.least_squares``: nonlinear least squares ``min ½‖r(x)‖²`` with Adafactor.

A front end of the shared driver (``fastfactor._driver``), beside ``minimize``: the
objective it drives is ``½‖r(x)‖²`` with gradient ``Jᵀr`` (``J`` is only ever applied
transposed to a vector, so a sparse matrix or a ``LinearOperator`` works and ``JᵀJ`` is
never formed). The problem is solved in the scaled variables ``x / x_scale``; the
convergence tests (``gtol``, ``xtol``) run in the driver's stop hook, and the result
carries SciPy's least-squares fields. The defaults were measured on linear, exponential,
Arrhenius and NIST StRD problems: see ``docs/least_squares.rst``. The scales, residuals
and Jacobians live in ``_residuals``, the evaluation, tests and result in ``_run``.
"""

import math

import numpy as np

from .. import _driver
from .._blocks import Layout
from .._callbacks import as_callback
from .._hyper import make_hyper
from .._inputs import as_x0, parse_pair_bounds
from .._options import (
    cpu_only,
    flag,
    nonneg_int,
    nonneg_real,
    options_keywords,
    parse_options,
    parse_shapes,
)
from .._stepper import Adafactor
from ._residuals import _Residuals, _x_scale
from ._run import _Run

__all__ = ["least_squares"]


def relative_step(t):
    """The default step schedule of :func:`least_squares`: ``rho_t = 0.1 / sqrt(t)``."""
    return 0.1 / math.sqrt(t)


#: Hyper-parameters that differ from Adafactor's own defaults (see the module docs).
DEFAULT_HYPER = {"lr": relative_step, "beta1": 0.95, "eps2": 0.1}
#: Solver options of least_squares: ``(default, validator)``.
SOLVER_OPTIONS = {
    "maxiter": (20000, nonneg_int),
    "gtol": (1e-8, nonneg_real),
    "xtol": (1e-10, nonneg_real),
    "x_scale": (None, None),
    "disp": (False, flag),
    "shapes": (None, None),
    "device": ("cpu", cpu_only("least_squares")),
}


@options_keywords(SOLVER_OPTIONS)
def least_squares(fun, x0, jac=None, args=(), bounds=None, options=None, callback=None):
    """Solve a nonlinear least-squares problem ``min ½‖r(x)‖²`` with Adafactor.

    Follows :func:`scipy.optimize.least_squares` where a first-order method can:
    the same ``fun``/``jac``/``bounds`` conventions and result fields. Underneath,
    :func:`fastfactor.minimize` minimises ``½‖r(x)‖²`` with the gradient ``Jᵀr``;
    ``JᵀJ`` is never formed. Prefer SciPy's solver for small, dense, ill-conditioned
    problems; this one is for residuals of many unknowns, matrix-shaped unknowns
    (factored second moment) and Jacobians available only as products.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> r``, the residuals. ``x`` has x0's shape; ``r`` is an
        array of real numbers of any shape, taken flat (C order), ``m`` elements.
    x0 : array_like
        Starting point, of any shape (a matrix ``x0`` is one factored block, e.g. the
        stacked factors ``[U; V]`` of a low-rank fit). Integers become float64,
        float32 stays float32. Not modified.
    jac : callable, {"2-point", "3-point", "cs"} or None, optional
        ``jac(x, *args) -> J``, the ``m × n`` Jacobian (``n = x0.size``, columns in
        x0's C order) as a dense array (``(m, n)`` or ``(m,) + x0.shape``), a
        ``scipy.sparse`` matrix or a :class:`scipy.sparse.linalg.LinearOperator`
        (only ``J.T @ r`` is used). None (default) or a method name: finite
        differences of ``fun``, one column per element of x (``2n`` calls for
        "3-point"), with steps that stay inside the bounds; "cs" (complex step)
        needs a ``fun`` that accepts complex ``x``.
    args : tuple, optional
        Extra arguments of ``fun`` and ``jac``.
    bounds : 2-tuple of array_like or scipy.optimize.Bounds, optional
        ``(lb, ub)`` as in :func:`scipy.optimize.least_squares`: scalars or arrays
        broadcast to x0's shape, ``±np.inf`` for no bound. x0 is clipped into the box
        and every iterate is projected onto it.
    options : dict, optional
        Solver options and hyper-parameters; see the Options section.
    callback : callable, optional
        ``callback(intermediate_result)`` (an ``OptimizeResult`` with ``x``, ``cost``,
        ``fun``, ``nit`` and ``nfev``) or ``callback(xk)``, after every iteration.
        Raising ``StopIteration`` ends the run (status 99).

    Returns
    -------
    res : scipy.optimize.OptimizeResult
        ``x`` (x0's shape); ``cost`` = ``0.5 * ||fun||²``; ``fun``, the residuals at
        ``x`` (flat, ``m``); ``jac``, the Jacobian at ``x`` in the form ``jac`` returns
        it (dense ``(m, n)`` for finite differences); ``grad`` = ``jac.T @ fun``, in
        x0's shape; ``optimality``, the first-order optimality measure compared with
        ``gtol`` (``max|grad|``, or the projected gradient ``max|clip(x - grad, lb,
        ub) - x|`` with bounds); ``active_mask`` (x0's shape: -1 at a lower bound,
        +1 at an upper bound, 0 free); ``nfev`` (calls of ``fun``, finite differences
        included); ``njev`` (Jacobians evaluated, by ``jac`` or by differences);
        ``nit`` (updates); ``status`` and ``message``: 0 ``gtol`` met, 3 ``xtol``
        met (both ``success``), 1 ``maxiter`` reached, 2 a NaN or inf met, 98
        interrupted, 99 callback stop. On success ``x`` is the iterate that passed
        the test; after an interrupt, the last iterate reached; otherwise the
        lowest-cost iterate visited.

    Raises
    ------
    Exception
        An exception raised by ``fun``, ``jac`` or ``callback`` after the first
        evaluation propagates with the run's result (status 98, at the last iterate
        reached) as its ``optimize_result`` attribute. A ``KeyboardInterrupt``
        (Ctrl-C) instead returns that result.

    Options
    -------
    maxiter : int
        Maximum number of updates (default 20000).
    gtol : float
        Stop (status 0) when ``optimality <= gtol``; absolute, as SciPy's. Default 1e-8.
    xtol : float
        Stop (status 3) when an update is small: ``||dz|| <= xtol * (xtol + ||z||)``
        in the scaled variables ``z = x / x_scale``. Default 1e-10 (SciPy's 1e-8 is
        for quadratically convergent steps; a first-order step underestimates the
        distance to the solution).
    x_scale : array_like or "jac", optional
        The characteristic scale of each variable: the problem is solved in
        ``z = x / x_scale``. Default: ``|x0|`` (1 where ``x0`` is 0) for a 1-D x0,
        so that each parameter's step is relative to its starting magnitude; 1 for a
        matrix x0, whose entries share one scale. "jac": the inverse column norms of
        the Jacobian at x0 (fixed, not updated as in SciPy; an operator Jacobian is
        applied once to the ``n`` unit vectors).
    disp : bool
        Print SciPy's two summary lines at the end (default False).
    shapes
        As in :func:`fastfactor.minimize`: blocks partitioning the flat x (in C order).
    lr, eps1, eps2, clip_threshold, decay_rate, beta1, weight_decay, scale_parameter, warmup_init, min_dim_size_to_factor
        The hyper-parameters of :class:`fastfactor.Adafactor`, acting on ``z``.
        Defaults here: ``lr = 0.1 / sqrt(t)``, ``beta1 = 0.95``, ``eps2 = 0.1``;
        the others are Adafactor's.

    See Also
    --------
    scipy.optimize.least_squares : trust-region solvers, faster on small dense problems.
    fastfactor.minimize : the minimizer underneath.

    Notes
    -----
    The defaults converge on the examples of ``docs/least_squares.rst`` without
    tuning (median 1,500 iterations on the NIST StRD suite); problems whose scaled Jacobian is
    badly conditioned (several NIST "higher difficulty" problems) need far more.

    Examples
    --------
    An exponential decay ``y = a exp(-k t) + c``, compared with SciPy:

    >>> import numpy as np, scipy.optimize as so
    >>> from fastfactor import least_squares
    >>> t = np.linspace(0, 4, 30)
    >>> y = 3 * np.exp(-1.3 * t) + 0.5 + 0.01 * np.cos(7 * t)
    >>> def resid(p):
    ...     return p[0] * np.exp(-p[1] * t) + p[2] - y
    >>> def jac(p):
    ...     e = np.exp(-p[1] * t)
    ...     return np.column_stack([e, -p[0] * t * e, np.ones_like(t)])
    >>> res = least_squares(resid, [1.0, 1.0, 1.0], jac=jac)
    >>> ref = so.least_squares(resid, [1.0, 1.0, 1.0], jac=jac)
    >>> res.success, bool(np.allclose(res.x, ref.x, rtol=1e-6))
    (True, True)
    >>> bool(np.isclose(res.cost, 0.5 * np.sum(res.fun ** 2)))
    True
    """  # noqa: E501 -- numpydoc needs the hyper-parameter names on one line (test_hyper_lists)
    solver, hyper = parse_options(options, SOLVER_OPTIONS)
    hyper = dict(DEFAULT_HYPER, **hyper)
    make_hyper(hyper, "options")
    x = as_x0(x0)
    if not callable(fun):
        raise TypeError(f"fun must be callable (x, *args) -> residuals, got {fun!r}")
    if not isinstance(args, tuple):
        args = (args,)
    box = parse_pair_bounds(bounds, x)
    lb, ub = (None, None) if box is None else (b.reshape(x.shape) for b in box)
    if lb is not None:
        np.clip(x, lb, ub, out=x)
    layout = Layout(parse_shapes(solver["shapes"], x.shape))
    cb = as_callback(callback)
    problem = _Residuals(fun, jac, args, x.shape, lb, ub)
    r0, J0, cost0 = problem.evaluate(x)
    scale = _x_scale(solver["x_scale"], x, J0)
    run = _Run(problem, scale, lb, ub, solver, cb)
    z0 = (x / scale).astype(x.dtype).reshape(-1)
    status = run.start(z0, x, r0, J0, cost0)
    if status is not None:
        return run.result(status, 0)
    zbox = None if box is None else (box[0] / run.scale, box[1] / run.scale)
    opt = Adafactor(layout.shapes, **hyper)
    out = _driver.drive(opt, layout.views, z0, run.evaluate, zbox, None, solver["maxiter"],
                        stop=run.stop)
    return run.result(out.status, out.nit, out)
