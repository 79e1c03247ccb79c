"""The user's compiled objective behind the fixed signature the compiled loop calls.

``fg(x, g, args, info) -> f``: ``x`` flat (the loop's buffer: the user receives a copy
in x0's shape, as from the Python loop), ``g`` flat and written with the gradient in x's
dtype, ``f`` a float64; ``info`` an int64 array holding the evaluation counts, which the
adapter advances where the Python loop's ``Objective`` does (so that a run ended by an
exception reports the same counts), and, when the gradient has another shape than x0,
its number of dimensions and its shape, for the host's error message (formatting it in
compiled code would cost seconds of compilation per objective). The adapter is a
closure over the user's functions and x0's shape, so it is compiled (not cached) once
per objective: the objective's own compilation.
"""

import functools

import numba
import numpy as np
from numba.core import types
from numba.core.registry import CPUDispatcher

from .._backends.cpu._jit import jit, jit_signature


def is_compiled(f):
    """Whether ``f`` is a Numba CPU function (``numba.njit``), callable from compiled code."""
    return isinstance(f, CPUDispatcher)


# info slots
NFEV, NJEV, BAD_NDIM, BAD_SHAPE = 0, 1, 2, 3
#: The most dimensions of a wrong gradient's shape that ``info`` reports.
MAX_NDIM = 32
INFO_SIZE = BAD_SHAPE + MAX_NDIM


class GradientShapeError(ValueError):
    """Raised in compiled code for a gradient of another shape than x0 (``info`` has its
    shape); the host raises the Python loop's ValueError instead."""


def signature(dtype, args_type):
    """The Numba types of ``fg``'s arguments and the first-class function type."""
    flat = types.Array(numba.from_dtype(np.dtype(dtype)), 1, "C")
    argtypes = (flat, flat, args_type, types.Array(types.int64, 1, "C"))
    return argtypes, types.FunctionType(types.float64(*argtypes))


def shape_message(info, expected):
    """The Python loop's message for the wrong gradient shape that ``info`` holds."""
    ndim = int(info[BAD_NDIM])
    shape = tuple(int(d) for d in info[BAD_SHAPE:BAD_SHAPE + min(ndim, MAX_NDIM)])
    return (f"the gradient has shape {shape}, expected {tuple(expected)} "
            "(the shape of x)")


@jit
def _store(grad, g):
    """The gradient (checked to be of x0's shape) into the flat ``g``, cast to g's dtype:
    element by element, as Numba's whole-array assignment compiles an error path that
    formats shapes (seconds of compilation)."""
    flat = np.ravel(grad)
    for i in range(g.shape[0]):
        g[i] = flat[i]


@jit
def _check_shape(a, shape, info):
    """Raise ``GradientShapeError`` (its shape into ``info``) unless ``a`` has ``shape``."""
    differs = a.ndim != len(shape)
    for i in range(min(a.ndim, len(shape))):
        differs = differs or a.shape[i] != shape[i]
    if differs:
        info[BAD_NDIM] = a.ndim
        for i in range(min(a.ndim, MAX_NDIM)):
            info[BAD_SHAPE + i] = a.shape[i]
        raise GradientShapeError("the gradient does not have x0's shape")


def adapter(fun, jac, shape, dtype, args_type):
    """``fg`` for ``fun`` with ``jac`` (True: fun returns ``(f, g)``; else a compiled
    gradient function); raises Numba's error when they do not compile for x's type."""
    shape = tuple(int(d) for d in shape)

    # the counts advance where the Python loop's Objective advances them
    if jac is True:
        def fg(x, g, args, info):
            f, grad = fun(x.reshape(shape).copy(), *args)
            info[NFEV] += 1
            info[NJEV] += 1
            _check_shape(grad, shape, info)
            _store(grad, g)
            return np.float64(f)
    else:
        def fg(x, g, args, info):
            info[NFEV] += 1
            f = fun(x.reshape(shape).copy(), *args)  # first, as in the Python loop
            info[NJEV] += 1
            grad = jac(x.reshape(shape).copy(), *args)
            _check_shape(grad, shape, info)
            _store(grad, g)
            return np.float64(f)

    argtypes, _ = signature(dtype, args_type)
    return jit_signature(fg, argtypes, cache=False)


# --- least squares: the residuals and the Jacobian, apart -----------------------------

class ResidualCountError(ValueError):
    """Raised in compiled code when ``fun`` returns another number of residuals than at
    x0 (``info[BAD_SHAPE]`` holds it); the host raises the Python loop's error instead."""


class JacobianShapeError(ValueError):
    """Raised in compiled code for a Jacobian of a shape the Python loop refuses (``info``
    has it); the host raises the Python loop's error instead."""


@functools.lru_cache(maxsize=64)
def lsq_signatures(dtype, args_type):
    """The first-class function types of ``res(x, r, args, info)`` and ``jac(x, J, args,
    info)``: x flat in x0's dtype, ``r`` float64 ``(m,)``, ``J`` float64 ``(m, n)``."""
    flat = types.Array(numba.from_dtype(np.dtype(dtype)), 1, "C")
    info = types.Array(types.int64, 1, "C")
    res = (flat, types.Array(types.float64, 1, "C"), args_type, info)
    jac = (flat, types.Array(types.float64, 2, "C"), args_type, info)
    return (res, types.FunctionType(types.none(*res))), (jac, types.FunctionType(types.none(*jac)))


@jit
def _store_residuals(out, r, info):
    """The residuals ``out`` (any shape, taken flat) into ``r`` as float64; their number
    must be r's (x0's)."""
    flat = np.ravel(out)
    if flat.size != r.shape[0]:
        info[BAD_NDIM] = 1
        info[BAD_SHAPE] = flat.size
        raise ResidualCountError("fun returned another number of residuals than at x0")
    for i in range(r.shape[0]):
        r[i] = flat[i]


@jit
def _store_jacobian(out, J, shape, info):
    """The Jacobian ``out`` into the ``(m, n)`` float64 ``J``, for the shapes the Python
    loop takes: ``(m, n)``, ``(m,) + shape``, ``(n,)`` for one residual, any ``m``
    elements for one unknown."""
    m, n = J.shape
    ok = out.ndim == 2 and out.shape[0] == m and out.shape[1] == n
    if not ok and out.ndim == len(shape) + 1 and out.shape[0] == m:
        ok = True
        for i in range(len(shape)):
            ok = ok and out.shape[i + 1] == shape[i]
    ok = ok or (m == 1 and out.ndim == 1 and out.shape[0] == n) or (n == 1 and out.size == m)
    if not ok:
        info[BAD_NDIM] = out.ndim
        for i in range(min(out.ndim, MAX_NDIM)):
            info[BAD_SHAPE + i] = out.shape[i]
        raise JacobianShapeError("jac returned a Jacobian of another shape")
    flat = np.ravel(out)
    for i in range(m):
        for j in range(n):
            J[i, j] = flat[i * n + j]


def lsq_adapters(fun, jac, shape, dtype, args_type):
    """``(res, jac)`` for the compiled residuals ``fun`` and Jacobian ``jac`` of
    least squares; raises Numba's error when they do not compile for x's type. The
    counts advance where ``_lsq._residuals._Residuals`` advances them."""
    shape = tuple(int(d) for d in shape)
    user_jac = jac

    def res(x, r, args, info):
        info[NFEV] += 1
        _store_residuals(fun(x.reshape(shape).copy(), *args), r, info)

    def jacobian(x, J, args, info):
        info[NJEV] += 1
        _store_jacobian(user_jac(x.reshape(shape).copy(), *args), J, shape, info)

    (res_types, _), (jac_types, _) = lsq_signatures(dtype, args_type)
    return (jit_signature(res, res_types, cache=False),
            jit_signature(jacobian, jac_types, cache=False))
