"""Finite differences: the gradient of ``f`` and the Jacobian of ``r``, for every front end.

Forward ("2-point"), central ("3-point") and complex-step ("cs") differences with
SciPy's relative steps (``scipy.optimize._numdiff``): ``h = eps**(1/2)`` (forward),
``eps**(1/3)`` (central) times ``max(1, |x_i|)``, ``eps`` of x's dtype. Steps are taken
as exactly representable (``(x + h) - x``). A given relative step too small to move
``x`` (``x + h == x``) falls back to the default step, as in ``approx_derivative``.
With bounds, no point outside them is evaluated: a step that would leave the box is
taken the other way, a central difference that does not fit becomes one-sided, and in
a box narrower than the step the step shrinks to the room on the roomier side (as
``approx_derivative`` does with ``bounds``); a fixed variable (``lb == ub``) gets a
zero derivative, without a call, in every scheme.
"""

from typing import NamedTuple

import numpy as np

FD_METHODS = ("2-point", "3-point", "cs")


def check_method(jac):
    """The finite-difference method that ``jac`` asks for, or None when it asks for none
    (a callable or True); ValueError for anything else."""
    if jac is None or jac is False:
        return "2-point"
    if isinstance(jac, str) and jac in FD_METHODS:
        return jac
    return None


class Settings(NamedTuple):
    """How a front end differentiates: ``method`` (None: what ``jac`` says), SciPy's
    ``finite_diff_rel_step`` (None: the default), and flat float64 bounds or None."""

    method: str | None = None
    rel_step: float | None = None
    lb: np.ndarray | None = None
    ub: np.ndarray | None = None


def resolve_method(jac, method):
    """The method for ``jac`` (None, False or a method name) and the ``method`` option;
    ValueError when they disagree or name no method."""
    if method is not None and method not in FD_METHODS:
        raise ValueError(f"finite_diff_method must be one of {FD_METHODS}, got {method!r}")
    from_jac = check_method(jac)
    if isinstance(jac, str) and method is not None and method != jac:
        raise ValueError(f"jac={jac!r} and finite_diff_method={method!r} disagree; give one")
    return method if method is not None and jac in (None, False) else from_jac


def relative_steps(x, method, dtype, rel_step=None, f_dtype=None):
    """SciPy's relative steps for the float64 point ``x``: ``rel_step * max(1, |x|)``,
    by default ``eps**(1/2)`` (``eps**(1/3)`` for "3-point") with the ``eps`` of the
    coarser of x's dtype and the dtype ``f`` is computed in (as ``approx_derivative``:
    differences of float32 values need float32-sized steps). Where a given ``rel_step``
    is lost in rounding (see :func:`_lost`) the default step is taken instead, as
    ``approx_derivative`` does: a zero step gives a zero (or 0/0) derivative."""
    eps = np.finfo(dtype).eps
    if f_dtype is not None and np.dtype(f_dtype).kind == "f":
        eps = max(eps, np.finfo(f_dtype).eps)
    scale = np.maximum(1.0, np.abs(x))
    default = eps ** (1 / 3 if method == "3-point" else 1 / 2) * scale
    if rel_step is None:
        return default
    h = rel_step * scale
    return np.where(_lost(scale, h, method, dtype), default, h)


def _lost(scale, h, method, dtype):
    """Where ``scale ± h == scale`` (``scale = max(1, |x|)``, the size the step is
    relative to: ``|x|`` itself when ``|x| >= 1``; below, a step that 1 does not feel
    would be lost in ``f``'s rounding all the same). Rounded to x's dtype for real
    steps, the dtype of the points; in float64 for the complex step, whose points are
    complex128 (SciPy's test, ``(x + h) - x == 0``)."""
    with np.errstate(over="ignore"):
        if method == "cs":
            return (scale + h) - scale == 0
        s = scale.astype(dtype)
        return ((scale + h).astype(dtype) == s) | ((scale - h).astype(dtype) == s)


def jacobian(call, xh, f0, method, lb=None, ub=None, to_work=np.asarray, rel_step=None,
             f_dtype=None):
    """The ``(m, n)`` float64 Jacobian at the flat host point ``xh`` (x's dtype).

    ``call(xw)`` evaluates at the stepped point ``xw`` and returns ``m`` values as a
    flat array (complex for "cs"); ``f0`` holds the values at ``xh`` (used by forward
    differences). ``xw`` is ``to_work(copy of xh)``: a host array, or a device array
    whose elements are assigned one at a time. ``lb``/``ub`` are flat float64 bounds or
    None; ``rel_step`` and ``f_dtype`` size the steps (see :func:`relative_steps`).
    """
    xd = xh.astype(np.float64)
    h = relative_steps(xd, method, xh.dtype, rel_step, f_dtype)
    n = xh.size
    J = None
    fixed = np.zeros(n, bool) if lb is None or ub is None else lb == ub
    if method == "cs":
        xw = to_work(xh.astype(np.complex128))
        for i in range(n):
            if fixed[i]:  # the complex step stays in the box, but x_i cannot move
                col = np.zeros(np.size(f0))
            else:
                xw[i] = xd[i] + 1j * h[i]
                col = np.imag(call(xw)) / h[i]
                xw[i] = xd[i]
            J = _column(J, i, col, n)
        return _columns_or_none(J, f0)
    xs = xh.copy()  # the stepped point in x's dtype (steps exactly representable)
    xw = to_work(xs.copy())
    dtype = xh.dtype.type
    for i in range(n):
        lo = -np.inf if lb is None else lb[i]
        hi = np.inf if ub is None else ub[i]
        up = _point(xd[i] + h[i], lo, hi, dtype)
        down = _point(xd[i] - h[i], lo, hi, dtype)
        if fixed[i]:
            col = np.zeros(np.size(f0))
        elif method == "3-point" and up is not None and down is not None and up != down:
            xs[i] = xw[i] = up
            fp = call(xw)
            xs[i] = xw[i] = down
            col = (fp - call(xw)) / (float(up) - float(down))
        else:
            # One-sided: forward if it fits, else backward; in a box narrower than the
            # step, the step shrinks to the room on the roomier side.
            point = up if up is not None else down
            if point is None:
                point = _point(hi if hi - xd[i] >= xd[i] - lo else lo, lo, hi, dtype)
            if float(point) == xd[i]:  # no point of x's dtype in the box but x itself
                col = np.zeros(np.size(f0))
            else:
                xs[i] = xw[i] = point
                col = (call(xw) - f0) / (float(point) - xd[i])
        xs[i] = xh[i]
        xw[i] = xh[i]
        J = _column(J, i, col, n)
    return _columns_or_none(J, f0)


def _point(target, lo, hi, dtype):
    """The float64 ``target`` in x's ``dtype``, inside ``[lo, hi]`` (a rounding past a
    bound is undone); None when ``target`` itself is outside."""
    if not lo <= target <= hi:
        return None
    v = dtype(target)
    if v > hi:
        v = np.nextafter(v, dtype(-np.inf))
    elif v < lo:
        v = np.nextafter(v, dtype(np.inf))
    return v


def _columns_or_none(J, f0):
    """``J``, or its ``(m, 0)`` shape when x has no element."""
    return np.empty((np.size(f0), 0)) if J is None else J


def _column(J, i, col, n):
    """Store column ``i`` (the number of rows is known from the first column)."""
    col = np.asarray(col, dtype=np.float64).reshape(-1)
    if J is None:
        J = np.empty((col.size, n))
    J[:, i] = col
    return J
