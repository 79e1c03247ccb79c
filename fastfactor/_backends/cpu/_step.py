"""The CPU backend: Numba kernels of one Adafactor step, and host-array helpers.

The step of a block is split in two, so that a step with a NaN or inf in any gradient
is refused before any parameter or state changes:

- ``factored_stats`` / ``unfactored_stats`` return the pending statistics (or None when
  the gradient is not finite), changing nothing;
- ``factored_apply`` / ``unfactored_apply`` store them and update the parameters.

``factored_step`` / ``unfactored_step`` do both for one block. The same names exist in
``fastfactor._backends.cuda`` for device arrays.
"""

import math

import numpy as np

from . import _kernels as k
from ..._blocks import FLOAT_DTYPES
from ._jit import n_chunks


def _factored_chunks(g):
    """Row chunks of a ``(B, n, m)`` block: one per thread, as long as the chunks' float64
    column accumulators (2 or 4 of length m each) stay under 5% of the block's bytes."""
    nb, n, m = g.shape
    accumulators = (2 if nb == 1 else 4) * m * 8
    most = max(1, g.nbytes // (20 * accumulators))
    return min(n_chunks(g.size, nb * n), most)


def _start_from(x, out):
    """``out`` holding x's values: the kernels update in place."""
    if out is not x:
        np.copyto(out, x)
    return out


def factored_stats(x, g, r, c, beta2, eps1, scale_parameter):
    """Pending statistics ``(R_new, C_new, sum U**2, sum x**2)`` of a ``(B, n, m)`` block.

    None when the gradient holds a NaN or inf, or its squares overflow the statistics'
    dtype. Nothing is modified.
    """
    nchunks = _factored_chunks(g)
    kernel = k.factored_stats_serial if nchunks == 1 else k.factored_stats_parallel
    rn = np.empty_like(r)
    cn = np.empty_like(c)
    gsum, xsum, usum = kernel(x, g, r, c, rn, cn, float(beta2), float(eps1),
                              bool(scale_parameter), nchunks)
    if not (math.isfinite(gsum) and math.isfinite(usum)):
        return None
    return rn, cn, usum, xsum


def factored_apply(x, out, g, r, c, mom, pending, rho, eps2, clip, beta1, wd,
                   scale_parameter):
    """Store ``pending`` into ``r`` ``(B, n)``, ``c`` ``(B, m)`` and update ``out`` (may be ``x``).

    ``mom`` (the first moment, ``(B, n, m)``) is updated too unless it is empty.
    """
    rn, cn, usum, xsum = pending
    nchunks = _factored_chunks(g)
    kernel = k.factored_apply_serial if nchunks == 1 else k.factored_apply_parallel
    kernel(_start_from(x, out), g, r, c, rn, cn, mom, usum, xsum, float(rho), float(eps2),
           float(clip), float(beta1), float(wd), bool(scale_parameter), nchunks)


def factored_step(x, out, g, r, c, mom, beta2, rho, eps1, eps2, clip, beta1, wd,
                  scale_parameter):
    """One factored step of a ``(B, n, m)`` block; False (nothing changed) if g is not finite."""
    pending = factored_stats(x, g, r, c, beta2, eps1, scale_parameter)
    if pending is None:
        return False
    factored_apply(x, out, g, r, c, mom, pending, rho, eps2, clip, beta1, wd, scale_parameter)
    return True


def unfactored_stats(x, g, v, beta2, eps1, scale_parameter):
    """Pending sums ``(beta2, eps1, sum U**2, sum x**2)`` of a flat block, or None."""
    nchunks = n_chunks(g.size, g.size)
    kernel = k.unfactored_stats_serial if nchunks == 1 else k.unfactored_stats_parallel
    usum, xsum = kernel(x, g, v, float(beta2), float(eps1), bool(scale_parameter), nchunks)
    if not math.isfinite(usum):
        return None
    return float(beta2), float(eps1), usum, xsum


def unfactored_apply(x, out, g, v, mom, pending, rho, eps2, clip, beta1, wd,
                     scale_parameter):
    """Update the second moment ``v`` and ``out`` (may be ``x``) of a flat block."""
    beta2, eps1, usum, xsum = pending
    nchunks = n_chunks(g.size, g.size)
    kernel = k.unfactored_apply_serial if nchunks == 1 else k.unfactored_apply_parallel
    kernel(_start_from(x, out), g, v, mom, beta2, eps1, usum, xsum, float(rho), float(eps2),
           float(clip), float(beta1), float(wd), bool(scale_parameter), nchunks)


def unfactored_step(x, out, g, v, mom, beta2, rho, eps1, eps2, clip, beta1, wd,
                    scale_parameter):
    """One step of a flat block; False (nothing changed) if g is not finite."""
    pending = unfactored_stats(x, g, v, beta2, eps1, scale_parameter)
    if pending is None:
        return False
    unfactored_apply(x, out, g, v, mom, pending, rho, eps2, clip, beta1, wd, scale_parameter)
    return True


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


def as_param(p, shape):
    """``p`` checked as a parameter block of ``shape``, updated in place by a step."""
    if not isinstance(p, np.ndarray):
        raise TypeError(f"parameters must be NumPy arrays (updated in place), got {type(p).__name__}")
    if p.shape != shape:
        raise ValueError(f"parameter of shape {p.shape} does not match the block shape {shape}")
    if p.dtype not in FLOAT_DTYPES:
        raise TypeError(f"parameters must be float32 or float64, got {p.dtype}")
    if not p.flags.writeable:
        raise ValueError("a parameter array is read-only; the step updates parameters in place")
    return p


def as_grad(g, shape, dtype):
    """``g`` as an array of ``shape`` in ``dtype`` (converted only when needed)."""
    g = np.asarray(g)
    if g.shape != shape:
        raise ValueError(f"gradient of shape {g.shape} does not match the block shape {shape}")
    if g.dtype.kind not in "biuf":
        raise TypeError(f"gradients must be real numbers, got dtype {g.dtype}")
    return g.astype(dtype, copy=False)


def reshaped_view(a, shape):
    """``a`` reshaped to ``shape`` as a view of the same memory, or None if that needs a copy."""
    v = a.reshape(shape)
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
