"""``fastfactor.least_squares``: nonlinear least squares ``min ½‖r(x)‖²`` with Adafactor.

A front end of :func:`fastfactor.minimize`: the objective handed to it is
``½‖r(x)‖²`` with gradient ``Jᵀr`` (``J`` is only ever applied transposed to a vector,
so a sparse matrix or a ``LinearOperator`` works and ``JᵀJ`` is never formed). The
problem is solved in the scaled variables ``x / x_scale``; the convergence tests
(``gtol``, ``xtol``) run in a callback, and the result carries SciPy's least-squares
fields. The defaults were measured on linear, exponential, Arrhenius and NIST StRD
problems: see ``docs/least_squares.rst``.
"""

import math
import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, OptimizeResult, OptimizeWarning
from scipy.sparse.linalg import LinearOperator

from ._hyper import HYPER_NAMES
from ._minimize import minimize
from ._objective import FD_METHODS
from ._options import as_x0, parse_bounds, wants_intermediate_result

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

MESSAGES = {
    0: "`gtol` termination condition is satisfied.",
    1: "The maximum number of iterations is exceeded.",
    2: "Stopped: the residuals or the Jacobian became NaN or inf; x is the lowest-cost "
       "iterate where both were finite.",
    3: "`xtol` termination condition is satisfied.",
    99: "`callback` raised `StopIteration`.",
}


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


def _parse_bounds(bounds, x):
    """``(lb, ub)`` as float arrays of x's shape, or ``(None, None)`` for no bounds.

    SciPy's least-squares form (a pair of scalars or arrays) becomes a ``Bounds``; the
    checks (broadcasting, NaN, ``lb <= ub``) are those of :func:`fastfactor.minimize`.
    """
    if bounds is None:
        return None, None
    if not isinstance(bounds, Bounds):
        try:
            n_items = len(bounds)
        except TypeError:
            n_items = -1
        if n_items != 2:
            raise ValueError(
                "bounds must be a pair (lb, ub) of scalars or arrays, as in "
                "scipy.optimize.least_squares, or a scipy.optimize.Bounds; got "
                f"{bounds!r}")
        bounds = Bounds(*bounds)
    try:
        box = parse_bounds(bounds, x)
    except ValueError as exc:
        if "broadcast" not in str(exc):
            raise
        raise ValueError(f"bounds must broadcast to x0's shape {x.shape}: got lb of shape "
                         f"{np.shape(bounds.lb)} and ub of shape {np.shape(bounds.ub)}") from None
    if box is None:
        return None, None
    return box[0].reshape(x.shape), box[1].reshape(x.shape)


def _x_scale(spec, x, J):
    """The positive scale of each variable, in x's shape and dtype."""
    if spec is None:
        if x.ndim <= 1:
            a = np.abs(x)
            return np.where(a > 0, a, 1).astype(x.dtype)
        return np.ones_like(x)
    if isinstance(spec, str):
        if spec != "jac":
            raise ValueError(f"x_scale must be 'jac', None or positive numbers, got {spec!r}")
        if J is None:  # residuals not finite at x0: nothing to scale by
            return np.ones_like(x)
        norms = _column_norms(J, x.size).reshape(x.shape)
        return np.where(norms > 0, 1 / np.where(norms > 0, norms, 1), 1).astype(x.dtype)
    try:
        s = np.broadcast_to(np.asarray(spec, dtype=float), x.shape)
    except (TypeError, ValueError):
        raise ValueError(f"x_scale must be 'jac', None or positive numbers broadcastable to "
                         f"x0's shape {x.shape}, got {spec!r}") from None
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError(f"x_scale must be positive and finite, got {spec!r}")
    return s.astype(x.dtype)


def _column_norms(J, n):
    """The column norms of J (an operator is applied to the n unit vectors once)."""
    if isinstance(J, LinearOperator):
        return np.linalg.norm(J.matmat(np.eye(n)), axis=0)
    if sp.issparse(J):
        return np.sqrt(np.asarray(J.multiply(J).sum(axis=0)).ravel())
    return np.linalg.norm(J, axis=0)


# --- residuals and Jacobians ---------------------------------------------------------

class _Residuals:
    """``r(x)`` and ``J(x)`` for every ``jac`` form, with true evaluation counts."""

    def __init__(self, fun, jac, args, shape, lb, ub):
        self.fun, self.args, self.shape = fun, args, shape
        self.n = math.prod(shape)
        self.m = None
        self.lb, self.ub = lb, ub
        self.nfev = self.njev = 0
        if callable(jac):
            self.jac, self.fd = jac, None
        elif jac is None or (isinstance(jac, str) and jac in FD_METHODS):
            self.jac, self.fd = None, "2-point" if jac is None else jac
        else:
            raise ValueError(f"jac must be a callable returning the Jacobian, None or one of "
                             f"{FD_METHODS} (finite differences), got {jac!r}")

    def residuals(self, x):
        self.nfev += 1
        r = self.fun(x.reshape(self.shape).copy(), *self.args)
        r = np.asarray(r)
        if r.dtype.kind not in "biufc" or (r.dtype.kind == "c" and self.fd != "cs"):
            raise TypeError(f"fun must return real numbers (the residuals), got dtype {r.dtype}")
        r = r.reshape(-1)
        if self.m is None:
            if r.size == 0:
                raise ValueError("fun returned no residuals; it must return at least one")
            self.m = r.size
        elif r.size != self.m:
            raise ValueError(f"fun returned {r.size} residuals, but {self.m} at x0; "
                             "their number must not change")
        return r

    def evaluate(self, x):
        """``(r, J)`` at x (J is None when r is not finite)."""
        r = np.real(self.residuals(x)).astype(np.float64, copy=False)
        if not np.all(np.isfinite(r)):
            return r, None
        self.njev += 1
        if self.jac is None:
            return r, self._finite_difference(x, r)
        return r, self._check_jac(self.jac(x.reshape(self.shape).copy(), *self.args))

    def _check_jac(self, J):
        m, n = self.m, self.n
        if isinstance(J, LinearOperator) or sp.issparse(J):
            if tuple(J.shape) != (m, n):
                raise ValueError(f"jac returned a {type(J).__name__} of shape {J.shape}, "
                                 f"expected (m, n) = {(m, n)}")
            return J
        J = np.asarray(J)
        if J.dtype.kind not in "biuf":
            raise TypeError(f"jac must return a real Jacobian, got dtype {J.dtype}")
        if J.shape not in ((m, n), (m,) + tuple(self.shape)) and not (m == 1 and J.shape == (n,)):
            raise ValueError(f"jac returned an array of shape {J.shape}; expected (m, n) = "
                             f"{(m, n)} (or (m,) + x0.shape) for {m} residuals and "
                             f"{n} unknowns")
        return J.reshape(m, n)

    def _finite_difference(self, x, r0):
        """Columns ``(r(x + h e_i) - r(x)) / h`` (or central, or complex-step)."""
        xf = x.reshape(-1)
        eps = np.finfo(x.dtype).eps
        h0 = eps ** (1 / 3 if self.fd == "3-point" else 1 / 2) * np.maximum(1.0, np.abs(xf))
        lb = None if self.lb is None else self.lb.reshape(-1)
        ub = None if self.ub is None else self.ub.reshape(-1)
        J = np.empty((self.m, self.n))
        if self.fd == "cs":
            xc = xf.astype(np.complex128)
            for i in range(self.n):
                xc[i] += 1j * h0[i]
                J[:, i] = np.imag(self.residuals(xc)) / h0[i]
                xc[i] = xf[i]
            return J
        xw = xf.copy()
        for i in range(self.n):
            fwd_ok = ub is None or xf[i] + h0[i] <= ub[i]
            bwd_ok = lb is None or xf[i] - h0[i] >= lb[i]
            if self.fd == "3-point" and fwd_ok and bwd_ok:
                xw[i] = xf[i] + h0[i]
                hp = float(xw[i]) - float(xf[i])
                rp = self.residuals(xw)
                xw[i] = xf[i] - h0[i]
                hm = float(xf[i]) - float(xw[i])
                J[:, i] = (rp - self.residuals(xw)) / (hp + hm)
            else:
                xw[i] = xf[i] + h0[i] if fwd_ok or not bwd_ok else xf[i] - h0[i]
                h = float(xw[i]) - float(xf[i])
                J[:, i] = (self.residuals(xw) - r0) / h
            xw[i] = xf[i]
        return J


def _rmatvec(J, r):
    """``J.T @ r`` as a flat float array, for dense, sparse and LinearOperator J."""
    if isinstance(J, LinearOperator):
        return np.asarray(J.rmatvec(r), dtype=float).reshape(-1)
    return np.asarray(J.T @ r, dtype=float).reshape(-1)


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
