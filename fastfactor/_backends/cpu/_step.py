"""The CPU backend: Numba kernels of one Adafactor step, and host-array helpers.

The step of a block is split in two, so that a step with a NaN or inf in any gradient
is refused before any parameter or state changes:

- ``factored_stats`` / ``unfactored_stats`` return the pending statistics (or None when
  the gradient is not finite), changing nothing;
- ``factored_apply`` / ``unfactored_apply`` store them and update the parameters.

``factored_step`` / ``unfactored_step`` do both for one block. The same names exist in
``fastfactor._backends.cuda`` for device arrays. Every step function takes the block's
state as one named tuple (``FactoredState`` / ``UnfactoredState`` of
``fastfactor._backends._protocol``) and the step's scalars as one
``fastfactor._hyper.StepScalars``, handed to the kernels as they are.
"""

import math

import numpy as np

from ..._blocks import FLOAT_DTYPES, may_overlap_itself, overlap_message
from ..._inputs import as_dense_gradient, check_gradient
from . import _kernels as k
from ._threads import n_chunks, run


def _factored_chunks(g):
    """Row chunks of a ``(B, n, m)`` block: one per thread, as long as the chunks' float64
    column accumulators (2 or 4 of length m each) stay under 5% of the block's bytes."""
    nb, n, m = g.shape
    accumulators = (2 if nb == 1 else 4) * m * 8
    most = max(1, g.nbytes // (20 * accumulators))
    return min(n_chunks(g.nbytes, nb * n), most)


def _target(x, out):
    """``(src, dst)`` for an apply kernel writing into ``out``: ``dst`` None updates
    ``src`` in place.

    ``out is x``: in place. Another array of x's memory (a view of it, laid out alike)
    is in place too, on that array (the out-of-place loops would fall back to scalar
    code, see ``_kernels``). A partial overlap is copied first, then updated in place;
    separate memory is written directly from x (x unchanged, no copy).
    """
    if out is x:
        return x, None
    if not np.may_share_memory(x, out):
        return x, out
    if (x.__array_interface__["data"][0] == out.__array_interface__["data"][0]
            and x.strides == out.strides):
        return out, None
    np.copyto(out, x)
    return out, None


def _moment(m):
    """The first moment for an apply kernel: None when there is none (an empty array),
    so that the kernel is compiled without its branch."""
    return m if m.size else None


def factored_stats(x, g, state, s):
    """``(pending, glow)`` of a ``(B, n, m)`` block, in one pass over g.

    ``pending`` holds the statistics ``(R_new, C_new, sum U**2, sum x**2)``; ``glow`` is
    ``RMS(g)``, a lower bound of ``max|g|`` (up to rounding). ``(None, nan)`` when the
    gradient holds a NaN or inf, or its squares overflow the statistics' dtype.
    ``state`` is a ``FactoredState`` (``row`` ``(B, n)``, ``col`` ``(B, m)``, ``m``), ``s``
    a ``StepScalars``. Nothing is modified.
    """
    r, c = state.row, state.col
    nchunks = _factored_chunks(g)
    rn = np.empty_like(r)
    cn = np.empty_like(c)
    gsum, xsum, usum = run(k.factored_stats_serial, k.factored_stats_parallel, nchunks,
                           x, g, r, c, rn, cn, s, nchunks)
    return _checked((rn, cn, usum, xsum), gsum, usum, math.sqrt(gsum / g.size))


def _checked(pending, gsum, usum, glow):
    """``(pending, glow)``, or ``(None, nan)`` unless the sums are finite (a NaN or inf in
    g, or squares that overflow, make them so; which of these it was, only a scan of g
    tells: ``max_abs``)."""
    if not (math.isfinite(gsum) and math.isfinite(usum)):
        return None, math.nan
    return pending, glow


def factored_apply(x, out, g, state, pending, s):
    """Store ``pending`` into ``state`` and write the new x into ``out`` (may be ``x``).

    The first moment ``state.m`` (``(B, n, m)``) is updated too unless it is empty.
    When ``out`` is not ``x``, ``x`` is left unchanged.
    """
    rn, cn, usum, xsum = pending
    nchunks = _factored_chunks(g)
    src, dst = _target(x, out)
    run(k.factored_apply_serial, k.factored_apply_parallel, nchunks,
        src, dst, g, state.row, state.col, rn, cn, _moment(state.m), usum, xsum, s, nchunks)


def unfactored_stats(x, g, state, s):
    """``(pending, glow)`` of a flat block (``state`` an ``UnfactoredState``): the sums
    ``(sum U**2, sum x**2)`` and ``max|g|`` (its squares taken in g's dtype, so up to
    rounding), or ``(None, nan)`` when g is not finite. Nothing is modified."""
    nchunks = n_chunks(g.nbytes, g.size)
    usum, xsum, g2max = run(k.unfactored_stats_serial, k.unfactored_stats_parallel, nchunks,
                            x, g, state.v, s, nchunks)
    return _checked((usum, xsum), usum, usum, math.sqrt(g2max))


def unfactored_apply(x, out, g, state, pending, s):
    """Update the second moment ``state.v`` (and first moment ``state.m`` unless empty)
    and write the new x into ``out`` (may be ``x``) of a flat block."""
    usum, xsum = pending
    nchunks = n_chunks(g.nbytes, g.size)
    src, dst = _target(x, out)
    run(k.unfactored_apply_serial, k.unfactored_apply_parallel, nchunks,
        src, dst, g, state.v, _moment(state.m), usum, xsum, s, nchunks)


def _one_call(stats, apply, what):
    """The one-call step of a block: ``stats``, then ``apply`` unless refused."""
    def step(x, out, g, state, s):
        pending, _ = stats(x, g, state, s)
        if pending is None:
            return False
        apply(x, out, g, state, pending, s)
        return True
    step.__name__ = step.__qualname__ = f"{what}_step"
    step.__doc__ = (f"One step of a {what} block into ``out`` (may be ``x``); False "
                    "(nothing changed) if g is not finite.")
    return step


factored_step = _one_call(factored_stats, factored_apply, "factored")
unfactored_step = _one_call(unfactored_stats, unfactored_apply, "unfactored")


def max_abs(g):
    """The largest magnitude in ``g`` (NaN or inf when ``g`` holds one)."""
    return k._max_abs(g)


def max_abs_projected(x, g, lb, ub):
    """The largest magnitude of the projected gradient step within ``[lb, ub]``."""
    return k._max_abs_projected(x, g, lb, ub)


# --- host-array handling: the same names exist in ``fastfactor._backends.cuda`` for device arrays

def zeros(shape, dtype):
    return np.zeros(shape, dtype)


def empty_like(a):
    return np.empty_like(a)


def to_host(a):
    """A NumPy copy of ``a``."""
    return np.array(a, copy=True)


def as_param(p, shape, others=()):
    """``p`` checked as a parameter block of ``shape``, updated in place by a step.

    ``others`` are the checked parameters of the blocks before this one: ``p`` must not
    share memory with any of them (each would be stepped once per block).
    """
    if not isinstance(p, np.ndarray):
        raise TypeError("parameters must be NumPy arrays (updated in place), "
                        f"got {type(p).__name__}")
    if p.shape != shape:
        raise ValueError(f"parameter of shape {p.shape} does not match the block shape {shape}")
    if p.dtype not in FLOAT_DTYPES:
        raise TypeError(f"parameters must be float32 or float64, got {p.dtype}")
    flags = p.flags
    if not flags.writeable:
        raise ValueError("a parameter array is read-only; the step updates parameters in place")
    if not (flags.c_contiguous or flags.f_contiguous) and may_overlap_itself(
            p.shape, p.strides, p.itemsize):
        raise ValueError(overlap_message(p.shape, p.strides))
    for j, q in enumerate(others):
        if np.shares_memory(p, q):
            raise ValueError(f"the parameters of blocks {j} and {len(others)} share memory; "
                             "each block must be an array of its own (pass copies)")
    return p


def as_grad(g, shape, dtype, params=()):
    """``g`` as an array of ``shape`` in ``dtype`` (converted only when needed).

    A gradient that may share memory with any of ``params`` (the step's parameters) is
    copied: the blocks are updated one after another, so it would be read after a
    block it overlaps was written.
    """
    g = as_dense_gradient(g)
    check_gradient(g.shape, g.dtype, shape, "the block shape")
    if g.dtype != dtype:
        # a value beyond dtype's range becomes inf, which the step refuses by name
        with np.errstate(over="ignore"):
            return g.astype(dtype)
    for p in params:
        if np.may_share_memory(g, p):
            return g.copy()
    return g


def reshaped_view(a, shape):
    """``a`` reshaped to ``shape`` as a view of the same memory, or None if that needs a copy."""
    if a.shape == shape:
        return a
    v = a.reshape(shape)
    if a.flags.c_contiguous:  # always a view
        return v
    if v.size and not np.may_share_memory(v, a):
        return None
    return v


def contiguous(a, shape):
    """A contiguous copy of ``a`` in ``shape``."""
    return np.ascontiguousarray(a).reshape(shape)


def copy_into(dst, src):
    """``dst[...] = src`` (same number of elements)."""
    dst[...] = src.reshape(dst.shape)


def clip(x, lb, ub):
    """Project ``x`` onto ``[lb, ub]`` in place."""
    np.clip(x, lb, ub, out=x)
