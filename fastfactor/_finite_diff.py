"""Finite differences: the gradient of ``f`` and the Jacobian of ``r``, for every front end.

Forward ("2-point"), central ("3-point") and complex-step ("cs") differences with
SciPy's relative steps (``scipy.optimize._numdiff``): ``h = eps**(1/2)`` (forward),
``eps**(1/3)`` (central) times ``max(1, |x_i|)``, ``eps`` of x's dtype. Steps are taken
as exactly representable (``(x + h) - x``). With bounds, no point outside them is
evaluated: a step that would leave the box is taken the other way, and a central
difference that does not fit becomes one-sided (as ``approx_derivative`` does with
``bounds``).
"""

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


def relative_steps(x, method, dtype):
    """SciPy's relative steps for the float64 point ``x`` and the problem's ``dtype``."""
    power = 1 / 3 if method == "3-point" else 1 / 2
    return np.finfo(dtype).eps ** power * np.maximum(1.0, np.abs(x))


def jacobian(call, xh, f0, method, lb=None, ub=None, to_work=np.asarray):
    """The ``(m, n)`` float64 Jacobian at the flat host point ``xh`` (x's dtype).

    ``call(xw)`` evaluates at the stepped point ``xw`` and returns ``m`` values as a
    flat array (complex for "cs"); ``f0`` holds the values at ``xh`` (used by forward
    differences). ``xw`` is ``to_work(copy of xh)``: a host array, or a device array
    whose elements are assigned one at a time. ``lb``/``ub`` are flat float64 bounds or
    None.
    """
    xd = xh.astype(np.float64)
    h = relative_steps(xd, method, xh.dtype)
    n = xh.size
    J = None
    if method == "cs":
        xw = to_work(xh.astype(np.complex128))
        for i in range(n):
            xw[i] = xd[i] + 1j * h[i]
            col = np.imag(call(xw)) / h[i]
            xw[i] = xd[i]
            J = _column(J, i, col, n)
        return _columns_or_none(J, f0)
    xs = xh.copy()  # the stepped point in x's dtype (steps exactly representable)
    xw = to_work(xs.copy())
    for i in range(n):
        fwd_ok = ub is None or xd[i] + h[i] <= ub[i]
        bwd_ok = lb is None or xd[i] - h[i] >= lb[i]
        if method == "3-point" and fwd_ok and bwd_ok:
            xs[i] = xd[i] + h[i]
            hp = float(xs[i]) - xd[i]
            xw[i] = xs[i]
            fp = call(xw)
            xs[i] = xd[i] - h[i]
            hm = xd[i] - float(xs[i])
            xw[i] = xs[i]
            col = (fp - call(xw)) / (hp + hm)
        else:
            xs[i] = xd[i] + h[i] if fwd_ok or not bwd_ok else xd[i] - h[i]
            step = float(xs[i]) - xd[i]
            xw[i] = xs[i]
            col = (call(xw) - f0) / step
        xs[i] = xh[i]
        xw[i] = xh[i]
        J = _column(J, i, col, n)
    return _columns_or_none(J, f0)


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
