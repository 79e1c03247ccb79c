"""``adafactor`` (a ``scipy.optimize.minimize`` method) and ``fastfactor.minimize``."""

import warnings

import numpy as np
from scipy.optimize import OptimizeResult

from ._blocks import block_size
from ._objective import DeviceObjective, Objective
from ._options import (as_x0, check_constraints, parse_bounds, split_options,
                       wants_intermediate_result)
from ._backends import get_backend
from ._stepper import Adafactor

MESSAGES = {
    0: "Optimization terminated successfully: the gradient is below gtol.",
    1: "Maximum number of iterations has been exceeded.",
    2: "Stopped: the objective or its gradient became NaN or inf (or so large that its "
       "square overflows); x is the last iterate where both were finite.",
    99: "`callback` raised `StopIteration`.",
}


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
        method name) for finite differences, whose evaluations count in ``nfev``.
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
        were finite, 99: callback stop); ``success`` (status 0); ``message``.

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
        Print a summary at the end (default False).
    device : {"cpu", "cuda"}
        Where the steps run (default "cpu"). With "cuda" the iterate and the optimizer
        state stay on the GPU: ``fun`` and ``jac`` receive device arrays (of x0's kind
        for a device x0 such as a CuPy array or PyTorch CUDA tensor, Numba device
        arrays for a NumPy x0) and may return the gradient on the device or the host;
        ``res.x``, ``res.jac`` and callback arrays are copies of x0's kind.
    lr, eps1, eps2, clip_threshold, decay_rate, beta1, weight_decay, scale_parameter, warmup_init, min_dim_size_to_factor
        The hyper-parameters, as in :class:`fastfactor.Adafactor`. Deterministic
        problems need a decaying ``lr`` schedule (a callable ``t -> rho_t``) or
        momentum (``beta1``) to converge tightly: without either, the clipped
        updates keep their size.

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
    """
    x = _as_x0(x0, options)
    return _run(fun, x, args, jac, hess, hessp, bounds, constraints, callback, options,
                shape=x.reshape(-1).shape, x0=x0)


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

    Examples
    --------
    >>> import numpy as np, fastfactor
    >>> T = np.arange(12.0).reshape(3, 4)
    >>> res = fastfactor.minimize(lambda X: 0.5 * np.sum((X - T) ** 2), np.ones((3, 4)),
    ...                           jac=lambda X: X - T,
    ...                           options={"lr": lambda t: 0.05 / t ** 0.5, "maxiter": 5000})
    >>> res.success, res.x.shape, bool(np.abs(res.x - T).max() < 1e-4)
    (True, (3, 4), True)
    """
    options = {} if options is None else dict(options)
    if tol is not None:
        options.setdefault("tol", tol)
    x = _as_x0(x0, options)
    return _run(fun, x, args, jac, None, None, bounds, (), callback, options,
                shape=tuple(x.shape), x0=x0)


def _run(fun, x, args, jac, hess, hessp, bounds, constraints, callback, options, shape,
         x0=None):
    check_constraints(constraints)
    if hess is not None or hessp is not None:
        warnings.warn("Adafactor is a first-order method: hess and hessp are not used.",
                      RuntimeWarning, stacklevel=3)
    settings, hyper = split_options(options, shape)
    if not isinstance(args, tuple):
        args = (args,)
    opt = Adafactor(settings["shapes"], device=settings["device"], **hyper)
    box = parse_bounds(bounds, x.reshape(shape))
    xa = x.reshape(-1)
    if settings["device"] == "cuda":  # the run on the GPU: see _cuda_setup
        box, obj, export = _cuda_setup(opt.backend, x0, xa, box, fun, jac, args, shape)
    else:
        if box is not None:
            np.clip(xa, box[0], box[1], out=xa)
        obj = Objective(fun, jac, args, shape, x.dtype)
        export = None
    state = _Loop(opt, obj, box, settings["gtol"], callback, shape, export)
    res = state.run(xa, settings["maxiter"])
    if settings["disp"]:
        _print_summary(res)
    return res


class _Loop:
    """The iteration: evaluate, test, step into the spare buffer, project, repeat."""

    def __init__(self, opt, obj, box, gtol, callback, shape, export=None):
        self.opt, self.obj, self.box, self.gtol, self.shape = opt, obj, box, gtol, shape
        # a copy of x or g in x0's shape (and, on the GPU, x0's kind) for the caller
        self.export = export or (lambda a: a.reshape(shape).copy())
        self.be = opt.backend
        self.callback = callback
        self.new_callback = callback is not None and wants_intermediate_result(callback)
        sizes = [block_size(s) for s in opt.shapes]
        self.offsets = np.cumsum([0] + sizes)

    def _blocks(self, flat):
        if len(self.opt.shapes) == 1:
            return [flat.reshape(self.opt.shapes[0])]
        return [flat[a:b].reshape(s) for a, b, s in zip(self.offsets[:-1], self.offsets[1:], self.opt.shapes)]

    def _converged(self, x, g):
        if self.box is None:
            return self.be.max_abs(g) <= self.gtol
        return self.be.max_abs_projected(x, g, self.box[0], self.box[1]) <= self.gtol

    def run(self, x, maxiter):
        f, g = self.obj(x)
        if not (np.isfinite(f) and np.isfinite(self.be.max_abs(g))):
            return self._result(x, f, g, 0, 2)
        spare = self.be.empty_like(x)
        xb, spareb = self._blocks(x), self._blocks(spare)  # views, made once
        nit, status = 0, 1
        while True:
            if self._converged(x, g):
                status = 0
                break
            if nit >= maxiter:
                break
            if self.opt.apply(xb, spareb, self._blocks(g)) is not None:
                status = 2  # g is finite but its square overflows: no step can be taken
                break
            if self.box is not None:
                self.be.clip(spare, self.box[0], self.box[1])
            f_new, g_new = self.obj(spare)
            if not (np.isfinite(f_new) and np.isfinite(self.be.max_abs(g_new))):
                status = 2  # the update is discarded: nit counts those leading to x
                break
            nit += 1
            x, spare, f, g = spare, x, f_new, g_new
            xb, spareb = spareb, xb
            if self.callback is not None and self._call_back(x, f, g, nit):
                status = 99
                break
        return self._result(x, f, g, nit, status)

    def _call_back(self, x, f, g, nit):
        """Run the callback; True if it asked to stop."""
        xk = self.export(x)
        try:
            if self.new_callback:
                self.callback(intermediate_result=OptimizeResult(x=xk, fun=f, jac=self.export(g), nit=nit))
            else:
                self.callback(xk)
        except StopIteration:
            return True
        return False

    def _result(self, x, f, g, nit, status):
        return OptimizeResult(
            x=self.export(x), fun=f, jac=self.export(g), nit=nit,
            nfev=self.obj.nfev, njev=self.obj.njev, status=status, success=status == 0,
            message=MESSAGES[status])


def _print_summary(res):
    head = "Optimization terminated successfully." if res.success else "Warning: " + res.message
    print(head)
    print(f"         Current function value: {res.fun:.6g}")
    print(f"         Iterations: {res.nit}")
    print(f"         Function evaluations: {res.nfev}")
    print(f"         Gradient evaluations: {res.njev}")


# --- device="cuda": the iterate, the state and the gradients stay on the GPU ---------------

def _as_x0(x0, options):
    """x0 as a new float array; with device="cuda" a device array (x0 on host or device)."""
    if options.get("device", "cpu") == "cuda":
        return get_backend("cuda").as_x0(x0, as_x0)
    return as_x0(x0)


def _cuda_setup(be, x0, xa, box, fun, jac, args, shape):
    """Bounds moved to the device (x0 clipped into them), the device objective, and
    ``export``: results and callbacks get copies of x0's kind (NumPy for NumPy x0)."""
    if box is not None:
        box = (be.to_device(box[0]), be.to_device(box[1]))
        be.clip(xa, box[0], box[1])
    kind = be.ArrayKind(x0)
    obj = DeviceObjective(fun, jac, args, shape, xa.dtype, be, kind.wrap)
    return box, obj, lambda a: kind.export(a.reshape(shape))
