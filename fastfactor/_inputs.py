"""The user's inputs, checked once for every front end: x0, bounds, constraints, the
objective's value and gradient."""

import numbers

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds

from ._blocks import FLOAT_DTYPES


def x0_dtype(dtype):
    """The float dtype a starting point of ``dtype`` is taken as (TypeError if not real)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype.kind == "f":
        return dtype if dtype in FLOAT_DTYPES else np.dtype(np.float64)
    raise TypeError(f"x0 must be an array of real numbers, got dtype {dtype}")


def as_x0(x0):
    """x0 as a new float array (float32 stays float32, integers become float64)."""
    try:
        arr = np.array(x0, copy=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"x0 must be an array of real numbers: {exc}") from None
    dtype = x0_dtype(arr.dtype)
    if arr.dtype != dtype:
        arr = arr.astype(dtype)
    if not np.all(np.isfinite(arr)):
        raise ValueError("x0 contains NaN or inf; start from finite values")
    return arr


def fit_one_element(a, x):
    """``a`` shaped as ``x`` when both hold one element (a 0-d x0 with ``Bounds(-1, 3)``,
    whose arrays SciPy makes 1-d); else ``a`` as it is."""
    return a.reshape(x.shape) if x.size == 1 and a.size == 1 else a


def parse_bounds(bounds, x):
    """``(lb, ub)`` as flat float64 arrays of x's size, or None when nothing is bounded.

    ``bounds`` is a :class:`scipy.optimize.Bounds` (arrays broadcast to x's shape) or a
    sequence of ``(lo, hi)`` pairs, one per element (``None`` for no bound), as in
    :func:`scipy.optimize.minimize`.
    """
    if bounds is None:
        return None
    n = x.size
    if isinstance(bounds, Bounds):
        try:
            lb = np.broadcast_to(fit_one_element(np.asarray(bounds.lb, dtype=float), x),
                                 x.shape).ravel()
            ub = np.broadcast_to(fit_one_element(np.asarray(bounds.ub, dtype=float), x),
                                 x.shape).ravel()
        except ValueError:
            raise ValueError(f"bounds must broadcast to x0's shape {x.shape}: got lb of shape "
                             f"{np.shape(bounds.lb)} and ub of shape {np.shape(bounds.ub)}"
                             ) from None
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


def parse_pair_bounds(bounds, x):
    """SciPy's least-squares bounds, a pair ``(lb, ub)`` of scalars or arrays (or a
    ``Bounds``), as :func:`parse_bounds` returns them."""
    if bounds is None or isinstance(bounds, Bounds):
        return parse_bounds(bounds, x)
    try:
        n_items = len(bounds)
    except TypeError:
        n_items = -1
    if n_items != 2:
        raise ValueError(
            "bounds must be a pair (lb, ub) of scalars or arrays, as in "
            "scipy.optimize.least_squares, or a scipy.optimize.Bounds; got "
            f"{bounds!r}")
    lo, hi = bounds
    if _no_bound(lo, -np.inf) and _no_bound(hi, np.inf):  # the default: nothing to check
        return None
    # a side given as None is no bound on that side
    return parse_bounds(Bounds(-np.inf if lo is None else lo, np.inf if hi is None else hi), x)


def _no_bound(side, infinity):
    """Whether one side of a bounds pair is None or the scalar ``infinity``."""
    return side is None or (isinstance(side, numbers.Real) and side == infinity)


def check_constraints(constraints):
    if constraints is None:
        return
    if not isinstance(constraints, (list, tuple)) or len(constraints) > 0:
        raise ValueError("Adafactor cannot honour constraints; use method='SLSQP', 'COBYQA' or "
                         "'trust-constr', or express simple box constraints through bounds")


def as_scalar(f):
    """The objective's value as a Python float (TypeError/ValueError if it is not a scalar)."""
    arr = np.asarray(f)
    if arr.size != 1:
        raise ValueError(f"the objective must return a scalar, got an array of shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"the objective must return a real number, got {f!r}")
    return float(arr.reshape(()))


def as_dense_gradient(g):
    """The user's gradient as a NumPy array (TypeError for a sparse matrix)."""
    if sp.issparse(g):
        raise TypeError(f"the gradient is a sparse matrix of shape {g.shape}; sparse "
                        "gradients are not supported: return a dense array (g.toarray())")
    return np.asarray(g)


def check_gradient(shape, dtype, expected, what="the shape of x"):
    """A gradient of ``shape`` and ``dtype`` checked against the ``expected`` shape
    (``what`` names it in the message)."""
    if tuple(shape) != tuple(expected):
        raise ValueError(f"the gradient has shape {tuple(shape)}, expected {tuple(expected)} "
                         f"({what})")
    if np.dtype(dtype).kind not in "biuf":
        raise TypeError(f"the gradient must be real numbers, got dtype {dtype}")
