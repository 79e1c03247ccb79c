"""Parsing of ``minimize`` inputs: x0, options, bounds, shapes, callbacks."""

import inspect
import math
import numbers
import warnings

import numpy as np
from scipy.optimize import Bounds, OptimizeWarning

from ._blocks import block_size, normalize_shapes
from ._hyper import HYPER_NAMES

SOLVER_OPTIONS = ("maxiter", "gtol", "tol", "shapes", "disp", "device")


def as_x0(x0):
    """x0 as a new float array (float32 stays float32, integers become float64)."""
    try:
        arr = np.array(x0, copy=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"x0 must be an array of real numbers: {exc}") from None
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind == "f":
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
    else:
        raise TypeError(f"x0 must be an array of real numbers, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("x0 contains NaN or inf; start from finite values")
    return arr


def split_options(options, x_shape):
    """Validated solver settings and hyper-parameters from an ``options`` dict."""
    options = dict(options)
    unknown = sorted(set(options) - set(SOLVER_OPTIONS) - set(HYPER_NAMES))
    if unknown:
        warnings.warn(f"Unknown solver options: {', '.join(unknown)}", OptimizeWarning, stacklevel=4)
    hyper = {k: options[k] for k in HYPER_NAMES if k in options}
    maxiter = options.get("maxiter", 1000)
    if isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral) or maxiter < 0:
        raise ValueError(f"maxiter must be a non-negative integer, got {maxiter!r}")
    gtol = options.get("gtol")
    if gtol is None:
        gtol = options.get("tol")
    if gtol is None:
        gtol = 1e-5
    if isinstance(gtol, bool) or not isinstance(gtol, numbers.Real) or not gtol >= 0:
        raise ValueError(f"gtol (or tol) must be a non-negative number, got {gtol!r}")
    shapes = options.get("shapes")
    size = block_size(x_shape)
    if shapes is None:
        shapes = [tuple(x_shape)] if x_shape else [(1,)]
    else:
        shapes, _ = normalize_shapes(shapes)
        total = sum(block_size(s) for s in shapes)
        if total != size:
            raise ValueError(f"the shapes {shapes} hold {total} elements, but x0 has {size}; "
                             "the shapes must partition x0 (in C order)")
    settings = dict(maxiter=int(maxiter), gtol=float(gtol), shapes=shapes,
                    disp=bool(options.get("disp", False)), device=options.get("device", "cpu"))
    return settings, hyper


def parse_bounds(bounds, x):
    """``(lb, ub)`` as flat float64 arrays of x's size, or None when nothing is bounded."""
    if bounds is None:
        return None
    n = x.size
    if isinstance(bounds, Bounds):
        lb = np.broadcast_to(np.asarray(bounds.lb, dtype=float), x.shape).ravel()
        ub = np.broadcast_to(np.asarray(bounds.ub, dtype=float), x.shape).ravel()
    else:
        pairs = list(bounds)
        if len(pairs) != n:
            raise ValueError(f"bounds has {len(pairs)} (lo, hi) pairs, but x0 has {n} elements; "
                             "give one pair per element or a scipy.optimize.Bounds")
        lb = np.empty(n)
        ub = np.empty(n)
        for i, pair in enumerate(pairs):
            try:
                lo, hi = pair
            except (TypeError, ValueError):
                raise ValueError(f"bounds[{i}] = {pair!r} is not a (lo, hi) pair") from None
            lb[i] = -np.inf if lo is None else float(lo)
            ub[i] = np.inf if hi is None else float(hi)
    if np.any(np.isnan(lb)) or np.any(np.isnan(ub)):
        raise ValueError("bounds contain NaN; use -inf/inf (or None) for no bound")
    bad = np.flatnonzero(lb > ub)
    if bad.size:
        i = bad[0]
        raise ValueError(f"lower bound exceeds upper bound at index {i}: {lb[i]} > {ub[i]}")
    if np.all(np.isneginf(lb)) and np.all(np.isposinf(ub)):
        return None
    return np.ascontiguousarray(lb), np.ascontiguousarray(ub)


def check_constraints(constraints):
    if constraints is None:
        return
    if not isinstance(constraints, (list, tuple)) or len(constraints) > 0:
        raise ValueError("Adafactor cannot honour constraints; use method='SLSQP', 'COBYQA' or "
                         "'trust-constr', or express simple box constraints through bounds")


def wants_intermediate_result(callback):
    """SciPy's rule: the new callback form has the single parameter ``intermediate_result``."""
    try:
        params = inspect.signature(callback).parameters
    except (TypeError, ValueError):
        return False
    return set(params) == {"intermediate_result"}


def as_scalar(f):
    """The objective's value as a Python float (TypeError/ValueError if it is not a scalar)."""
    arr = np.asarray(f)
    if arr.size != 1:
        raise ValueError(f"the objective must return a scalar, got an array of shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"the objective must return a real number, got {f!r}")
    return float(arr.reshape(()))


def is_finite(value):
    return math.isfinite(value)
