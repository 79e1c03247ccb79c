"""The arguments of least squares, checked once for both front ends.

:func:`fastfactor.least_squares` and :func:`fastfactor.dask.least_squares` take the
same keywords (SciPy's) and options; :func:`check_keywords` refuses bad values before
any evaluation, and :func:`parse_arguments` turns the rest into an
:class:`Arguments`: x0 as an array clipped into the bounds, the bounds, the loss, the
blocks of the Adafactor phase and its settings.
"""

import math
import numbers
from typing import Any, NamedTuple

import numpy as np

from .._blocks import Layout
from .._callbacks import as_callback
from .._hyper import InverseSqrt, make_hyper
from .._inputs import as_x0, parse_pair_bounds
from .._options import (
    cpu_only,
    flag,
    nonneg_int,
    nonneg_real,
    optional,
    parse_options,
    parse_shapes,
    positive_real,
)
from ._loss import Loss

#: The default step schedule of :func:`least_squares`: ``rho_t = 0.1 / sqrt(t)``.
relative_step = InverseSqrt(0.1)
#: Hyper-parameters that differ from Adafactor's own defaults (see ``fastfactor._lsq``).
DEFAULT_HYPER = {"lr": relative_step, "beta1": 0.95, "eps2": 0.1}
#: Adafactor iterations by default: before the finish, and without it.
MAXITER = {True: 1000, False: 20000}
#: The options of least_squares (its other settings are SciPy's keywords).
SOLVER_OPTIONS = {
    "maxiter": (None, optional(nonneg_int)),
    "finish": (True, flag),
    "trf_from_x0": (True, flag),
    "handover_window": (20, nonneg_int),
    "handover_rtol": (0.1, nonneg_real),
    "shapes": (None, None),
    "device": ("cpu", cpu_only("least_squares")),
}
#: Settings that are keywords of least_squares (SciPy's form), not options.
KEYWORDS = ("method", "ftol", "xtol", "gtol", "x_scale", "loss", "f_scale", "diff_step",
            "tr_solver", "tr_options", "jac_sparsity", "max_nfev", "verbose")
#: Other names of those keywords, met in options: the call to show.
RENAMED = {"disp": "verbose=1", "maxfev": "max_nfev=...", "max_fev": "max_nfev=...",
           "maxfun": "max_nfev=..."}
#: SciPy's methods: what to use instead.
SCIPY_METHODS = ("trf", "dogbox", "lm")


def check_keywords(method, ftol, xtol, gtol, f_scale, diff_step, tr_solver, tr_options,
                   max_nfev, verbose, kwargs, options, where="fastfactor.least_squares"):
    """Refuse bad keyword values before any evaluation, naming the value and the fix."""
    if method in SCIPY_METHODS:
        raise ValueError(
            f"method={method!r} is one of scipy.optimize.least_squares's own methods; "
            f"{where} has method='adafactor' (Adafactor, then a 'trf' "
            "finish by SciPy: options={'finish': False} turns it off). For SciPy's "
            f"{method!r} alone, call scipy.optimize.least_squares")
    if method != "adafactor":
        raise ValueError(f"method must be 'adafactor', got {method!r}")
    tols = [0.0 if v is None else nonneg_real(name, v)
            for name, v in (("ftol", ftol), ("xtol", xtol), ("gtol", gtol))]
    if all(v < np.finfo(float).eps for v in tols):  # SciPy's rule: one test must be able to end
        raise ValueError("At least one of the tolerances must be higher than machine epsilon "
                         f"({np.finfo(float).eps:.1e}): ftol={ftol}, xtol={xtol}, gtol={gtol}")
    positive_real("f_scale", f_scale)
    if tr_solver not in (None, "exact", "lsmr"):
        raise ValueError(f"tr_solver must be None, 'exact' or 'lsmr', got {tr_solver!r}")
    if tr_options is not None and not isinstance(tr_options, dict):
        raise TypeError(f"tr_options must be a dict, got {type(tr_options).__name__}")
    if max_nfev is not None and (isinstance(max_nfev, bool) or not isinstance(
            max_nfev, numbers.Integral) or max_nfev < 1):
        raise ValueError(f"max_nfev must be None or an integer >= 1, got {max_nfev!r}")
    if verbose not in (0, 1, 2):  # True and False are 1 and 0, as in SciPy
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"kwargs must be a dict of keyword arguments of fun and jac, got "
                        f"{type(kwargs).__name__}")
    if diff_step is not None:
        steps = np.asarray(diff_step, dtype=float)
        if not (np.all(np.isfinite(steps)) and np.all(steps > 0)):
            raise ValueError(f"diff_step must be None or positive numbers, got {diff_step!r}")
    moved = [k for k in KEYWORDS + tuple(RENAMED) if k in options]
    if moved:
        name = moved[0]
        fix = RENAMED.get(name, f"{name}=...")
        raise TypeError(f"{name!r} is a keyword argument of {where}, as in "
                        f"SciPy, not an option: call least_squares(fun, x0, ..., {fix})")


def check_initial_cost(cost, r):
    """SciPy's ValueError when the cost at x0 is not finite; residuals ``r`` (an array,
    or None) that are finite but whose cost overflows get an error saying so."""
    if math.isfinite(cost):
        return
    if isinstance(r, np.ndarray) and r.size and np.all(np.isfinite(r)):
        raise ValueError(f"The cost at the initial point overflows float64: the residuals "
                         f"reach {float(np.max(np.abs(r))):.3g}; divide them by a typical "
                         "magnitude (or start nearer the data)")
    raise ValueError("Residuals are not finite in the initial point.")


class Arguments(NamedTuple):
    """What :func:`parse_arguments` makes of the arguments common to both front ends."""

    x: Any  # x0 as a new array (float32 stays float32), clipped into the bounds
    box: Any  # the flat bounds (lb, ub), or None without bounds
    lb: Any  # the bounds in x's shape, or None
    ub: Any
    layout: Layout  # the blocks of the Adafactor phase
    solver: dict  # the options of SOLVER_OPTIONS
    hyper: dict  # Adafactor's hyper-parameters, DEFAULT_HYPER included
    loss: Loss
    tolerances: dict  # ftol, xtol, gtol as given (None: that test off, as in SciPy)
    steps: Any  # diff_step, flat, or None
    verbose: int
    args: tuple
    callback: Any  # a fastfactor._callbacks.Callback, or None
    maxiter: int  # Adafactor iterations
    handover: tuple  # (window, rtol) of the hand-over to the finish; (0, 0.0) without it


def parse_arguments(fun, x0, bounds, options, ftol, xtol, gtol, loss, f_scale, diff_step,
                    verbose, args, callback, signature):
    """The :class:`Arguments` of a call whose keywords :func:`check_keywords` passed;
    ``signature``, how ``fun`` is called, for the error a non-callable gets."""
    verbose = int(verbose)
    solver, hyper = parse_options(options, SOLVER_OPTIONS)
    hyper = dict(DEFAULT_HYPER, **hyper)
    make_hyper(hyper, "options")
    loss_fn = Loss(loss, f_scale)
    x = as_x0(x0)
    if not callable(fun):
        raise TypeError(f"fun must be callable {signature} -> residuals, got {fun!r}")
    if isinstance(args, list):  # SciPy unpacks any sequence into fun(x, *args)
        args = tuple(args)
    elif not isinstance(args, tuple):
        args = (args,)
    box = parse_pair_bounds(bounds, x)
    if box is not None and (np.any(box[0] == np.inf) or np.any(box[1] == -np.inf)):
        raise ValueError("bounds cannot be met: a lower bound is +inf or an upper bound "
                         "-inf; use -np.inf and np.inf for no bound")
    lb, ub = (None, None) if box is None else (b.reshape(x.shape) for b in box)
    if lb is not None:
        np.clip(x, lb, ub, out=x)
    layout = Layout(parse_shapes(solver["shapes"], x.shape))
    cb = as_callback(callback)
    steps = None if diff_step is None else np.asarray(diff_step, dtype=float).reshape(-1)
    maxiter = MAXITER[solver["finish"]] if solver["maxiter"] is None else solver["maxiter"]
    handover = (solver["handover_window"], solver["handover_rtol"]) if solver["finish"] else (
        0, 0.0)
    return Arguments(x, box, lb, ub, layout, solver, hyper, loss_fn,
                     dict(ftol=ftol, xtol=xtol, gtol=gtol), steps, verbose, args, cb,
                     maxiter, handover)
