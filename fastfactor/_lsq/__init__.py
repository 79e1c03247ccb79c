"""``fastfactor.least_squares``: nonlinear least squares ``min ½‖r(x)‖²`` with Adafactor.

A front end of :func:`fastfactor.minimize`: the objective handed to it is
``½‖r(x)‖²`` with gradient ``Jᵀr`` (``J`` is only ever applied transposed to a vector,
so a sparse matrix or a ``LinearOperator`` works and ``JᵀJ`` is never formed). The
problem is solved in the scaled variables ``x / x_scale``; the convergence tests
(``gtol``, ``xtol``) run in a callback, and the result carries SciPy's least-squares
fields. The defaults were measured on linear, exponential, Arrhenius and NIST StRD
problems: see ``docs/least_squares.rst``.
The bounds, scales, residuals and Jacobians live in ``_residuals``, the run on
top of :func:`fastfactor.minimize` in ``_run``.
"""

import math
import numbers
import warnings

import numpy as np
from scipy.optimize import Bounds, OptimizeWarning

from .._hyper import HYPER_NAMES
from ._residuals import (  # noqa: F401  (re-exported)
    _column_norms, _parse_bounds, _Residuals, _rmatvec, _x_scale)
from ._run import MESSAGES, _cost, _Run  # noqa: F401  (re-exported)
from .._minimize import minimize
from .._options import as_x0

__all__ = ["least_squares"]


def relative_step(t):
    """The default step schedule of :func:`least_squares`: ``rho_t = 0.1 / sqrt(t)``."""
    return 0.1 / math.sqrt(t)


#: Hyper-parameters that differ from Adafactor's own defaults (see the module docs).
DEFAULT_HYPER = {"lr": relative_step, "beta1": 0.95, "eps2": 0.1}
#: Solver options of least_squares and their defaults.
DEFAULT_SOLVER = {"maxiter": 20000, "gtol": 1e-8, "xtol": 1e-10, "x_scale": None,
                  "disp": False}
#: Options of fastfactor.minimize that pass through unchanged.
PASS_THROUGH = ("shapes",)


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
        met (both ``success``), 1 ``maxiter`` reached, 2 a NaN or inf met, 99
        callback stop. On success ``x`` is the iterate that passed the test;
        otherwise it is the lowest-cost iterate visited.

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
    """
    x = as_x0(x0)
    if not callable(fun):
        raise TypeError(f"fun must be callable (x, *args) -> residuals, got {fun!r}")
    if not isinstance(args, tuple):
        args = (args,)
    solver, hyper, passed = _split_options(options)
    lb, ub = _parse_bounds(bounds, x)
    if lb is not None:
        np.clip(x, lb, ub, out=x)
    problem = _Residuals(fun, jac, args, x.shape, lb, ub)
    r0, J0 = problem.evaluate(x)
    scale = _x_scale(solver["x_scale"], x, J0)
    run = _Run(problem, scale, lb, ub, solver, callback)
    z0 = (x / scale).astype(x.dtype)
    if run.start(z0, x, r0, J0):
        zbounds = None if lb is None else Bounds(lb / scale, ub / scale)
        opts = dict(passed, **hyper, maxiter=solver["maxiter"], gtol=0.0)
        res = minimize(run.objective, z0, jac=True, bounds=zbounds, callback=run.monitor,
                       options=opts)
        run.finish(res)
    return run.result()


# --- options ------------------------------------------------------------------------

def _split_options(options):
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict, got {type(options).__name__}")
    if options.get("device", "cpu") != "cpu":
        raise ValueError(f"least_squares runs on the CPU (device='cpu'), got device="
                         f"{options['device']!r}; the residuals and Jacobian are host arrays")
    known = set(DEFAULT_SOLVER) | set(HYPER_NAMES) | set(PASS_THROUGH) | {"device"}
    unknown = sorted(set(options) - known)
    if unknown:
        warnings.warn(f"Unknown solver options: {', '.join(unknown)}", OptimizeWarning,
                      stacklevel=3)
    solver = {k: options.get(k, v) for k, v in DEFAULT_SOLVER.items()}
    hyper = dict(DEFAULT_HYPER)
    hyper.update({k: options[k] for k in HYPER_NAMES if k in options})
    passed = {k: options[k] for k in PASS_THROUGH if k in options}
    maxiter = solver["maxiter"]
    if isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral) or maxiter < 0:
        raise ValueError(f"maxiter must be a non-negative integer, got {maxiter!r}")
    for name in ("gtol", "xtol"):
        v = solver[name]
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {v!r}; "
                             f"the default is {DEFAULT_SOLVER[name]}")
    solver["disp"] = bool(solver["disp"])
    return solver, hyper, passed
