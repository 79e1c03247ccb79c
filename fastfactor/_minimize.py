"""``adafactor`` (a ``scipy.optimize.minimize`` method) and ``fastfactor.minimize``."""

import sys

from scipy.optimize import OptimizeResult

from . import _driver, _finite_diff
from ._backends import get_backend
from ._blocks import Layout
from ._callbacks import as_callback
from ._hyper import make_hyper
from ._inputs import check_constraints, parse_bounds
from ._interrupts import conclude, status_message
from ._options import (
    as_options,
    flag,
    nonneg_int,
    nonneg_real,
    optional,
    options_keywords,
    parse_options,
    parse_shapes,
    positive_real,
    warn_at_caller,
)
from ._stepper import Adafactor

MINIMIZE_MESSAGES = {
    **_driver.BASE_MESSAGES,
    0: "Optimization terminated successfully: the gradient is below gtol.",
    2: "Stopped: the objective or its gradient became NaN or inf (or so large that its "
       "square overflows); x is the last iterate where both were finite.",
}

#: The solver options of ``minimize`` and ``adafactor``: ``(default, validator)``.
SOLVER_OPTIONS = {
    "maxiter": (1000, nonneg_int),
    "gtol": (None, optional(nonneg_real)),
    "tol": (None, optional(nonneg_real)),
    "shapes": (None, None),
    "disp": (False, flag),
    "device": ("cpu", None),
    "finite_diff_method": (None, None),
    "finite_diff_rel_step": (None, optional(positive_real)),
}
DEFAULT_GTOL = 1e-5


def adafactor(fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None,
              constraints=(), callback=None, **options):
    """Minimize a scalar function with Adafactor; a method for ``scipy.optimize.minimize``.

    Call it as ``scipy.optimize.minimize(fun, x0, method=adafactor, jac=..., options=...)``.
    ``x`` is 1-D here; the ``shapes`` option says which parts of it are matrices
    (whose second moment is factored). For matrix-shaped ``x0`` use
    :func:`fastfactor.minimize`.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float`` (or ``-> (float, ndarray)`` with ``jac=True``).
    x0 : array_like
        Starting point; integers are taken as float64, float32 stays float32. Not modified.
    args : tuple, optional
        Extra arguments of ``fun`` and ``jac``.
    jac : callable, True, None or {"2-point", "3-point", "cs"}, optional
        The gradient ``jac(x, *args)``; True if ``fun`` returns ``(f, g)``; None (or a
        method name) for finite differences, whose evaluations count in ``nfev`` and
        which never evaluate ``fun`` outside ``bounds``. Through
        ``scipy.optimize.minimize``, SciPy hands a custom method ``jac=None`` for any
        string: choose the scheme with the ``finite_diff_method`` option.
    hess, hessp : optional
        Not used (Adafactor is first-order); a ``RuntimeWarning`` says so.
    bounds : scipy.optimize.Bounds or sequence of (lo, hi), optional
        Box bounds (None for no bound). x0 is clipped into the box and every iterate
        is projected onto it (projected Adafactor).
    constraints : optional
        Must be empty: Adafactor cannot honour general constraints (``ValueError``).
    callback : callable, optional
        ``callback(intermediate_result)`` (an ``OptimizeResult`` with ``x``, ``fun``,
        ``jac`` and ``nit``, copies)
        or ``callback(xk)``, after every iteration. Raising ``StopIteration`` ends the
        run with status 99.
    **options
        See the Options section.

    Returns
    -------
    res : scipy.optimize.OptimizeResult
        ``x``; ``fun`` and ``jac`` evaluated at ``x``; ``nit`` (updates applied);
        ``nfev``, ``njev``; ``status`` (0: gradient below gtol, 1: maxiter reached,
        2: a NaN or inf met, ``x`` being the last iterate where ``fun`` and ``jac``
        were finite, 98: interrupted, 99: callback stop); ``success`` (status 0);
        ``message``.

    Raises
    ------
    Exception
        An exception raised by ``fun``, ``jac`` or ``callback`` after the first
        evaluation propagates with the run's result (status 98, ``x`` the last iterate
        reached, with its evaluation) as its ``optimize_result`` attribute. A
        ``KeyboardInterrupt`` (Ctrl-C) instead returns that result.

    Options
    -------
    maxiter : int
        Maximum number of updates (default 1000).
    gtol : float
        Stop successfully when ``max|g| <= gtol`` (with bounds: the projected
        gradient ``max|clip(x - g, lb, ub) - x|``). Default 1e-5.
    tol : float
        What ``minimize(..., tol=)`` passes: sets ``gtol`` unless ``gtol`` is given.
    shapes : shape or list of shapes
        Blocks partitioning the flat ``x`` in C order; ``ndim >= 2`` blocks are
        factored. Default: one block of x0's shape.
    disp : bool
        Print a summary at the end, and a line just before the CPU kernels compile (a
        dtype's and kind of block's first use in a process, when not cached on disk).
        Default False.
    device : {"cpu", "cuda"}
        Where the steps run (default "cpu"). With "cuda" the iterate and the optimizer
        state stay on the GPU: ``fun`` and ``jac`` receive device arrays (of x0's kind
        for a device x0 such as a CuPy array or PyTorch CUDA tensor, Numba device
        arrays for a NumPy x0) and may return the gradient on the device or the host;
        ``res.x``, ``res.jac`` and callback arrays are copies of x0's kind.
    finite_diff_method : {"2-point", "3-point", "cs"}
        The finite-difference scheme when ``jac`` is None: the way to choose it through
        ``scipy.optimize.minimize``, which hands a custom method ``jac=None`` for any
        ``jac`` string. Default: forward ("2-point").
    finite_diff_rel_step : float
        The relative step ``h = finite_diff_rel_step * max(1, |x|)`` (SciPy's option).
        Default: ``eps**(1/2)`` ("2-point", "cs") or ``eps**(1/3)`` ("3-point"), with
        the ``eps`` of the coarser of x's dtype and the dtype ``fun`` returns.
    lr, eps1, eps2, clip_threshold, decay_rate, beta1, weight_decay, scale_parameter, warmup_init, min_dim_size_to_factor
        The hyper-parameters, as in :class:`fastfactor.Adafactor`. Deterministic
        problems need momentum (``beta1=0.9``) or a decaying ``lr`` schedule (a
        callable ``t -> rho_t``, whose constant must suit the problem) to converge
        tightly: without either, the clipped updates keep their size. Momentum
        converged on every problem of the table in "When to use Adafactor", often
        in more than the default ``maxiter``.

    Examples
    --------
    >>> import numpy as np, scipy.optimize as so
    >>> from fastfactor import adafactor
    >>> res = so.minimize(lambda x: np.sum((x - 3.0) ** 2), np.zeros(4), method=adafactor,
    ...                   jac=lambda x: 2 * (x - 3.0),
    ...                   options={"lr": lambda t: 0.5 / t ** 0.5, "scale_parameter": False,
    ...                            "maxiter": 2000, "gtol": 1e-6})
    >>> res.success, np.allclose(res.x, 3.0, atol=1e-6)
    (True, True)
    """  # noqa: E501 -- numpydoc needs the hyper-parameter names on one line (test_hyper_lists)
    return _run(fun, x0, args, jac, hess, hessp, bounds, constraints, callback, options,
                flat=True)


@options_keywords(SOLVER_OPTIONS)
def minimize(fun, x0, args=(), jac=None, bounds=None, callback=None, tol=None, options=None):
    """Minimize a scalar function of an array of any shape with Adafactor.

    The same method as :func:`adafactor`, but ``fun`` and ``jac`` receive (and ``jac``
    returns) arrays of x0's shape, ``res.x`` has that shape, and the default
    ``shapes`` is x0's own shape, so a matrix ``x0`` is factored.

    Parameters
    ----------
    fun, x0, args, jac, callback
        As in :func:`adafactor`.
    bounds : scipy.optimize.Bounds or sequence of (lo, hi), optional
        Bounds whose arrays broadcast to x0's shape, or one pair per element (C order).
    tol : float, optional
        Sets ``gtol`` unless ``options`` has it.
    options : dict, optional
        The options of :func:`adafactor`.

    Returns
    -------
    res : scipy.optimize.OptimizeResult
        As in :func:`adafactor`, with ``x`` and ``jac`` of x0's shape.

    Raises
    ------
    Exception
        As in :func:`adafactor`: an exception raised by ``fun``, ``jac`` or
        ``callback`` after the first evaluation carries the run's result (status 98)
        as its ``optimize_result`` attribute; ``KeyboardInterrupt`` returns it.

    Examples
    --------
    >>> import numpy as np, fastfactor
    >>> T = np.arange(12.0).reshape(3, 4)
    >>> res = fastfactor.minimize(lambda X: 0.5 * np.sum((X - T) ** 2), np.ones((3, 4)),
    ...                           jac=lambda X: X - T,
    ...                           options={"beta1": 0.9, "maxiter": 5000})
    >>> res.success, res.x.shape, bool(np.abs(res.x - T).max() < 1e-4)
    (True, (3, 4), True)
    """
    options = as_options(options)
    if tol is not None:
        options.setdefault("tol", tol)
    return _run(fun, x0, args, jac, None, None, bounds, (), callback, options, flat=False)


def _run(fun, x0, args, jac, hess, hessp, bounds, constraints, callback, options, flat):
    check_constraints(constraints)
    if hess is not None or hessp is not None:
        warn_at_caller("Adafactor is a first-order method: hess and hessp are not used.",
                       RuntimeWarning)
    solver, hyper = parse_options(options, SOLVER_OPTIONS)
    make_hyper(hyper, "options")  # refused here, before x0 moves to a device
    gtol = solver["gtol"] if solver["gtol"] is not None else solver["tol"]
    gtol = DEFAULT_GTOL if gtol is None else gtol
    be = get_backend(solver["device"])
    if not isinstance(args, tuple):
        args = (args,)
    x = be.as_x0(x0)
    shape = (x.size,) if flat else tuple(x.shape)
    layout = Layout(parse_shapes(solver["shapes"], shape))
    opt = Adafactor(layout.shapes, device=solver["device"], **hyper)
    host_box = parse_bounds(bounds, x.reshape(shape))
    xa = x.reshape(-1)
    box = None if host_box is None else be.box(*host_box)
    if box is not None:
        be.clip(xa, *box)
    lb, ub = (None, None) if host_box is None else host_box
    fd = _finite_diff.Settings(solver["finite_diff_method"], solver["finite_diff_rel_step"],
                               lb, ub)
    obj = be.objective(fun, jac, args, shape, x.dtype, x0, fd)
    export = be.exporter(x0, shape)
    report = None
    if callback is not None:
        cb = as_callback(callback)

        def report(nit, xk, f, g, data):
            return cb(export(xk), lambda: dict(fun=f, jac=export(g), nit=nit))

    compiled = None
    if "numba" in sys.modules:  # else fun is no numba.njit function: import stays light
        from . import _compiled
        if _compiled.fallback_reason(fun, jac, callback, solver["device"], opt, x) is None:
            compiled = _compiled.objective(fun, jac, args, shape, x.dtype)
    with be.compile_notice(solver["disp"]):
        if compiled is not None:
            out, nfev, njev = _compiled.drive(opt, layout, xa, shape, *compiled, args, box,
                                              gtol, solver["maxiter"])
        else:
            out = _driver.drive(opt, layout.views, xa, obj, box, gtol, solver["maxiter"],
                                callback=report)
            nfev, njev = obj.nfev, obj.njev
    message = status_message(MINIMIZE_MESSAGES, out.status, out.error)
    res = OptimizeResult(
        x=be.exporter(x0, shape, owned=True)(out.x), fun=out.f, jac=export(out.g), nit=out.nit,
        nfev=nfev, njev=njev, status=out.status, success=out.status == 0, message=message)
    if solver["disp"] and not isinstance(out.error, Exception):
        _driver.print_summary(res)
    return conclude(res, out.error, "fastfactor.minimize" if not flat else "adafactor")
