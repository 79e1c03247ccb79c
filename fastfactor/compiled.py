"""One Adafactor update of one block, callable from your own ``numba.njit`` code.

For hand-written compiled loops (a training loop, a simulation that optimizes as it
goes) where even ``fastfactor.minimize``'s compiled loop does not fit:

>>> import numba, numpy as np
>>> import fastfactor.compiled as ffc
>>> @numba.njit
... def fit(x, target, state, steps):
...     for _ in range(steps):
...         g = x - target              # the gradient of ||x - target||^2 / 2
...         ffc.step(x, g, state)       # x updated in place
...     return x
>>> target = np.arange(12.0).reshape(3, 4)
>>> state = ffc.init((3, 4), np.float64, beta1=0.9)
>>> x = fit(np.ones((3, 4)), target, state, 2000)
>>> bool(np.abs(x - target).max() < 1e-3), int(state.t[0])
(True, 2000)

:func:`step` is the update of :meth:`fastfactor.Adafactor.step` (the same kernels, the
same bits) for one block; its state is a :class:`BlockState` from :func:`init`,
arrays that the step updates in place. Several blocks: one state and one call each.
"""

import numbers
from typing import Any, NamedTuple

import numba
import numpy as np
from numba.core import types

from ._backends.cpu import _kernels as k
from ._backends.cpu._jit import by_type, jit, jit_inline
from ._blocks import FLOAT_DTYPES, kernel_shape
from ._compiled._loop import hyper_array, scalars
from ._hyper import make_hyper, signature_with_hyper

__all__ = ["BlockState", "init", "step"]


class BlockState(NamedTuple):
    """The state of one block, for :func:`step` (arrays, updated in place).

    ``row`` ``(B, n)`` and ``col`` ``(B, m)``: the factored second moment of a block of
    shape ``(..., n, m)`` (``B`` the product of the leading dimensions), None for an
    unfactored block; ``v``: the unfactored second moment (the block's shape, flat),
    None for a factored block; ``m``: the first moment (the block's shape), None
    without ``beta1``; ``t``: the number of steps taken, an int64 array of one
    element; ``hyper``: the hyper-parameters as a float64 array (read by the step);
    ``shape``: the block's shape, a tuple. The arrays but ``t`` and ``hyper`` are in the
    block's dtype.
    """

    row: Any
    col: Any
    v: Any
    m: Any
    t: Any
    hyper: Any
    shape: tuple


def init(shape, dtype=np.float64, **hyper):
    """The zero state of a block of ``shape`` and ``dtype`` for :func:`step`.

    Parameters
    ----------
    shape : int or tuple of int
        The block's shape; with two or more dimensions (each at least
        ``min_dim_size_to_factor``) its second moment is factored.
    dtype : {numpy.float64, numpy.float32}
        The dtype of the block (and of its gradient).
    **hyper
        Adafactor's hyper-parameters, as in :class:`fastfactor.Adafactor`; ``lr`` must
        be None or a float (a schedule cannot be called from compiled code).

    Returns
    -------
    BlockState

    Raises
    ------
    TypeError
        For an ``lr`` given as a callable, a dtype other than float32 or float64, a
        shape whose dimensions are not integers, or an unknown hyper-parameter.
    ValueError
        For a negative dimension, a hyper-parameter out of range, or one that
        overflows ``dtype``.
    """
    h = make_hyper(hyper, "fastfactor.compiled.init()")
    if callable(h.lr):
        raise TypeError("lr must be None or a float here: a schedule cannot be called from "
                        "compiled code (pass lr=None, the relative step, or a float)")
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    h.check_dtype(dtype)
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    if any(isinstance(d, bool) or not isinstance(d, numbers.Integral) for d in shape):
        raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}")
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise ValueError(f"shape must not have negative dimensions, got {shape}")
    factored = h.factored(shape)
    ks = kernel_shape(shape, factored)
    m = np.zeros(shape, dtype) if h.beta1 is not None else None
    t = np.zeros(1, np.int64)
    if factored:
        return BlockState(np.zeros(ks[:2], dtype), np.zeros((ks[0], ks[2]), dtype), None, m,
                          t, hyper_array(h), shape)
    return BlockState(None, None, np.zeros(ks, dtype), m, t, hyper_array(h), shape)


init.__signature__ = signature_with_hyper(init)


def _update(x, g, state):
    raise NotImplementedError("compiled code only")


@by_type(_update)
def _update_variant(x, g, state):
    if not (isinstance(x, types.Array) and isinstance(g, types.Array)):
        raise numba.core.errors.TypingError("x and g must be arrays")
    if g.dtype != x.dtype or g.ndim != x.ndim:
        raise numba.core.errors.TypingError(
            f"g must be an array of x's dtype and dimensions ({x.dtype}, {x.ndim}-d), "
            f"got {g.dtype}, {g.ndim}-d")
    if x.layout != "C" or g.layout != "C":
        raise numba.core.errors.TypingError(
            "x and g must be C-contiguous arrays (np.ascontiguousarray), got layouts "
            f"{x.layout!r} and {g.layout!r}")
    if not x.mutable:
        raise numba.core.errors.TypingError("x is read-only: step updates x in place; pass "
                                            "a writeable array")
    if not isinstance(state, types.BaseNamedTuple) or tuple(state.fields) != BlockState._fields:
        raise numba.core.errors.TypingError("state must be a BlockState (fastfactor.compiled.init)")
    field = dict(zip(state.fields, state.types, strict=True))
    for name in ("row", "v", "m"):
        if not isinstance(field[name], types.NoneType) and field[name].dtype != x.dtype:
            raise numba.core.errors.TypingError(
                f"the state is {field[name].dtype}, x is {x.dtype}: make the state with "
                "init(shape, x.dtype)")
    if not (isinstance(field["shape"], types.BaseTuple) and len(field["shape"]) == x.ndim):
        raise numba.core.errors.TypingError(
            f"the state is for a block of {len(field['shape'])} dimensions, x has {x.ndim}")
    if isinstance(field["row"], types.NoneType):
        return _flat_step
    if x.ndim < 2:
        raise numba.core.errors.TypingError("a factored state needs x of 2 or more dimensions")
    return _factored_step


def _moment_in(m, shape):
    """The first moment ``m`` reshaped to ``shape``, or None without one (by type)."""
    raise NotImplementedError("compiled code only")


@by_type(_moment_in)
def _moment_in_variant(m, shape):
    if isinstance(m, types.NoneType):
        return lambda m, shape: None
    return lambda m, shape: m.reshape(shape)


def _moment_fits(m, shape):
    """Whether the first moment ``m`` has ``shape`` (True without one)."""
    raise NotImplementedError("compiled code only")


@by_type(_moment_fits)
def _moment_fits_variant(m, shape):
    if isinstance(m, types.NoneType):
        return lambda m, shape: True
    return lambda m, shape: m.shape == shape


@jit_inline
def _check_shapes(x, g, state):
    if x.shape != g.shape:
        raise ValueError("g must have x's shape")
    if x.shape != state.shape or not _moment_fits(state.m, x.shape):
        raise ValueError("the state is not the state of a block of x's shape")


def _factored_step(x, g, state):
    _check_shapes(x, g, state)
    n, m = x.shape[-2], x.shape[-1]
    nb = 1
    for i in range(x.ndim - 2):  # the product of the leading dimensions
        nb *= x.shape[i]
    if state.row.shape != (nb, n) or state.col.shape != (nb, m):
        raise ValueError("the state is not the state of a block of x's shape")
    if x.size == 0:
        return True
    s = scalars(state.hyper, state.t[0] + 1)
    x3 = x.reshape((nb, n, m))
    g3 = g.reshape((nb, n, m))
    rn = np.empty_like(state.row)
    cn = np.empty_like(state.col)
    gsum, xsum, usum = k.factored_stats_serial(x3, g3, state.row, state.col, rn, cn, s, 1)
    if not (np.isfinite(gsum) and np.isfinite(usum)):
        return False
    k.factored_apply_serial(x3, None, g3, state.row, state.col, rn, cn,
                            _moment_in(state.m, (nb, n, m)), usum, xsum, s, 1)
    state.t[0] += 1
    return True


def _flat_step(x, g, state):
    _check_shapes(x, g, state)
    if state.v.size != x.size:
        raise ValueError("the state is not the state of a block of x's shape")
    if x.size == 0:
        return True
    s = scalars(state.hyper, state.t[0] + 1)
    xf = x.reshape(x.size)
    gf = g.reshape(g.size)
    usum, xsum, _ = k.unfactored_stats_serial(xf, gf, state.v, s, 1)
    if not np.isfinite(usum):
        return False
    k.unfactored_apply_serial(xf, None, gf, state.v, _moment_in(state.m, (x.size,)), usum,
                              xsum, s, 1)
    state.t[0] += 1
    return True


@jit
def step(x, g, state):
    """One Adafactor update of the block ``x`` in place, with the gradient ``g``.

    Callable from ``numba.njit`` functions (and from Python). The update is
    :meth:`fastfactor.Adafactor.step`'s for this block, bit for bit, computed with the
    serial kernels.

    Parameters
    ----------
    x : ndarray
        The block, a writeable C-contiguous float32 or float64 array of the shape
        ``state`` was made for (:func:`init`); updated in place.
    g : ndarray
        Its gradient: x's shape and dtype, C-contiguous. Only read.
    state : BlockState
        Updated in place (its moments and ``t``).

    Returns
    -------
    bool
        True once applied; False when ``g`` holds a NaN or inf (or values whose squares
        overflow): then nothing has changed.

    Raises
    ------
    ValueError
        When ``g`` or the state does not match x's shape.
    numba.core.errors.TypingError
        When compiled for arguments of the wrong kinds: g of another dtype or number of
        dimensions than x, x or g not C-contiguous (in compiled code, a NumPy view
        with strides or in Fortran order), x read-only, or a state of another dtype or
        number of dimensions.
    """
    return _update(x, g, state)
