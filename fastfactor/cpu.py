"""Numba CPU kernels of one Adafactor step.

``factored_step`` updates a batch of matrices ``(B, n, m)`` whose second moment is kept
as row and column statistics; ``unfactored_step`` updates a flat block with a full
second moment. Neither builds an ``n x m`` temporary: the estimate
``V_ij = R_i C_j / mean(R)`` enters only through ``U_ij = g_ij * a_i * b_j`` with
``a_i = sqrt(mean(R) / R_i)`` and ``b_j = 1 / sqrt(C_j)``, recomputed where needed.

Each kernel is compiled twice from one source: serially, and with ``parallel=True``
for large blocks, where rows are split into one contiguous chunk per thread (each
chunk has its own column accumulator, so no two threads write the same element and
the summation order, hence the result, depends only on the chunk count).
State and element-wise arithmetic use the parameter's dtype; sums are accumulated in
float64.
"""

import numpy as np
from numba import prange

from ._blocks import FLOAT_DTYPES
from ._jit import jit, jit_parallel, n_chunks


@jit
def _sumsq(a):
    """Sum of squares of a 1-D array in float64, four independent partial sums."""
    s0 = s1 = s2 = s3 = 0.0
    n = a.shape[0]
    n4 = n - n % 4
    for j in range(0, n4, 4):
        v0 = np.float64(a[j])
        v1 = np.float64(a[j + 1])
        v2 = np.float64(a[j + 2])
        v3 = np.float64(a[j + 3])
        s0 += v0 * v0
        s1 += v1 * v1
        s2 += v2 * v2
        s3 += v3 * v3
    for j in range(n4, n):
        v = np.float64(a[j])
        s0 += v * v
    return (s0 + s1) + (s2 + s3)


@jit
def _sumsq_scaled(g, a, b):
    """Sum over j of (g_j * a * b_j)**2 in float64, the product formed in g's dtype."""
    s0 = s1 = s2 = s3 = 0.0
    n = g.shape[0]
    n4 = n - n % 4
    for j in range(0, n4, 4):
        u0 = np.float64(g[j] * a * b[j])
        u1 = np.float64(g[j + 1] * a * b[j + 1])
        u2 = np.float64(g[j + 2] * a * b[j + 2])
        u3 = np.float64(g[j + 3] * a * b[j + 3])
        s0 += u0 * u0
        s1 += u1 * u1
        s2 += u2 * u2
        s3 += u3 * u3
    for j in range(n4, n):
        u = np.float64(g[j] * a * b[j])
        s0 += u * u
    return (s0 + s1) + (s2 + s3)


@jit
def _chunk(k, nchunks, rows):
    """Rows ``[lo, hi)`` of chunk ``k`` when ``rows`` rows are split into ``nchunks``."""
    return k * rows // nchunks, (k + 1) * rows // nchunks


def _factored(x, out, g, r, c, mom, beta2, rho, eps1, eps2, clip, beta1, wd,
              scale_parameter, nchunks):
    nb, n, m = g.shape
    rows = nb * n
    colpart = np.zeros((nchunks, nb, m))
    rowsum = np.empty(rows)
    xpart = np.zeros(nchunks)
    # Pass 1: row and column sums of g**2 (and of x**2 for the parameter scale).
    for k in prange(nchunks):
        lo, hi = _chunk(k, nchunks, rows)
        xs = 0.0
        for q in range(lo, hi):
            b = q // n
            i = q - b * n
            grow = g[b, i]
            acc = colpart[k, b]
            for j in range(m):
                v = np.float64(grow[j])
                acc[j] += v * v
            rowsum[q] = _sumsq(grow)
            if scale_parameter:
                xs += _sumsq(x[b, i])
        xpart[k] = xs

    # The statistics, and the factors a_i, b_j of U_ij = g_ij a_i b_j (O(n + m)).
    dt = r.dtype
    rowf = np.empty((nb, n), dt)
    colf = np.empty((nb, m), dt)
    keep = 1.0 - beta2
    for b in range(nb):
        rmean = 0.0
        for i in range(n):
            r[b, i] = beta2 * r[b, i] + keep * (rowsum[b * n + i] / m + eps1)
            rmean += np.float64(r[b, i])
        rmean /= n
        for i in range(n):
            rowf[b, i] = np.sqrt(rmean / r[b, i])
        for j in range(m):
            s = 0.0
            for k in range(nchunks):
                s += colpart[k, b, j]
            c[b, j] = beta2 * c[b, j] + keep * (s / n + eps1)
            colf[b, j] = 1.0 / np.sqrt(np.float64(c[b, j]))

    # Pass 2: RMS(U) over the whole block, for update clipping.
    upart = np.zeros(nchunks)
    for k in prange(nchunks):
        lo, hi = _chunk(k, nchunks, rows)
        s = 0.0
        for q in range(lo, hi):
            b = q // n
            i = q - b * n
            s += _sumsq_scaled(g[b, i], rowf[b, i], colf[b])
        upart[k] = s

    size = rows * m
    coef = _coefficients(dt, upart.sum(), xpart.sum(), size, rho, eps2, clip, beta1, wd,
                         scale_parameter)
    xkeep = coef[0]
    scale = coef[1]
    b1 = coef[2]
    b1c = coef[3]
    use_mom = mom.size > 0

    # Pass 3: the update, in place when out is x.
    for k in prange(nchunks):
        lo, hi = _chunk(k, nchunks, rows)
        for q in range(lo, hi):
            b = q // n
            i = q - b * n
            grow = g[b, i]
            xrow = x[b, i]
            orow = out[b, i]
            cf = colf[b]
            a = rowf[b, i]
            if use_mom:
                mrow = mom[b, i]
                for j in range(m):
                    mv = b1 * mrow[j] + b1c * (scale * (grow[j] * a * cf[j]))
                    mrow[j] = mv
                    orow[j] = xrow[j] * xkeep - mv
            else:
                for j in range(m):
                    orow[j] = xrow[j] * xkeep - scale * (grow[j] * a * cf[j])


def _unfactored(x, out, g, v, mom, beta2, rho, eps1, eps2, clip, beta1, wd,
                scale_parameter, nchunks):
    size = g.shape[0]
    dt = v.dtype
    one = np.empty(2, dt)
    one[0] = beta2
    one[1] = (1.0 - beta2) * 1.0
    bet2 = one[0]
    keep = one[1]
    one[0] = eps1
    e1 = one[0]
    upart = np.zeros(nchunks)
    xpart = np.zeros(nchunks)
    # Pass 1: the second moment, and the sums of U**2 and x**2.
    for k in prange(nchunks):
        lo, hi = _chunk(k, nchunks, size)
        s = 0.0
        xs = 0.0
        for i in range(lo, hi):
            gi = g[i]
            vi = bet2 * v[i] + keep * (gi * gi + e1)
            v[i] = vi
            u = np.float64(gi / np.sqrt(vi))
            s += u * u
            if scale_parameter:
                xi = np.float64(x[i])
                xs += xi * xi
        upart[k] = s
        xpart[k] = xs

    coef = _coefficients(dt, upart.sum(), xpart.sum(), size, rho, eps2, clip, beta1, wd,
                         scale_parameter)
    xkeep = coef[0]
    scale = coef[1]
    b1 = coef[2]
    b1c = coef[3]
    use_mom = mom.size > 0
    # Pass 2: the update.
    for k in prange(nchunks):
        lo, hi = _chunk(k, nchunks, size)
        if use_mom:
            for i in range(lo, hi):
                mv = b1 * mom[i] + b1c * (scale * (g[i] / np.sqrt(v[i])))
                mom[i] = mv
                out[i] = x[i] * xkeep - mv
        else:
            for i in range(lo, hi):
                out[i] = x[i] * xkeep - scale * (g[i] / np.sqrt(v[i]))


@jit
def _coefficients(dt, usum, xsum, size, rho, eps2, clip, beta1, wd, scale_parameter):
    """Step coefficients in the block's dtype: x-keep factor, update scale, beta1, 1-beta1."""
    alpha = rho
    if scale_parameter:
        alpha = max(eps2, np.sqrt(xsum / size)) * rho
    denom = max(1.0, np.sqrt(usum / size) / clip)
    coef = np.empty(4, dt)
    coef[0] = 1.0 - wd * alpha
    coef[1] = alpha / denom
    coef[2] = beta1
    coef[3] = 1.0 - beta1
    return coef


_factored_serial = jit(_factored)
_factored_parallel = jit_parallel(_factored)
_unfactored_serial = jit(_unfactored)
_unfactored_parallel = jit_parallel(_unfactored)


def factored_step(x, out, g, r, c, mom, beta2, rho, eps1, eps2, clip, beta1, wd,
                  scale_parameter):
    """One factored step of a ``(B, n, m)`` block; ``out`` may be ``x`` (in place).

    ``r`` ``(B, n)`` and ``c`` ``(B, m)`` are updated in place, and so is ``mom`` (the
    first moment, ``(B, n, m)``) unless it is empty (no ``beta1``).
    """
    nb, n, m = g.shape
    nchunks = n_chunks(g.size, nb * n)
    kernel = _factored_serial if nchunks == 1 else _factored_parallel
    kernel(x, out, g, r, c, mom, float(beta2), float(rho), float(eps1), float(eps2),
           float(clip), float(beta1), float(wd), bool(scale_parameter), nchunks)


def unfactored_step(x, out, g, v, mom, beta2, rho, eps1, eps2, clip, beta1, wd,
                    scale_parameter):
    """One step of a flat block with full second moment ``v``; ``out`` may be ``x``."""
    nchunks = n_chunks(g.size, g.size)
    kernel = _unfactored_serial if nchunks == 1 else _unfactored_parallel
    kernel(x, out, g, v, mom, float(beta2), float(rho), float(eps1), float(eps2),
           float(clip), float(beta1), float(wd), bool(scale_parameter), nchunks)


@jit
def _max_abs(g):
    """max |g_i|: NaN if any element is NaN, inf if any is infinite."""
    out = 0.0
    for i in range(g.size):
        a = abs(np.float64(g.flat[i]))
        if not a <= out:  # true for a > out and for NaN
            if np.isnan(a):
                return a
            out = a
    return out


@jit
def _max_abs_projected(x, g, lb, ub):
    """max |clip(x - g, lb, ub) - x|, the projected-gradient measure under bounds."""
    out = 0.0
    for i in range(g.size):
        gi = np.float64(g.flat[i])
        if np.isnan(gi):
            return gi
        xi = np.float64(x.flat[i])
        p = min(max(xi - gi, lb[i]), ub[i]) - xi
        out = max(out, abs(p))
    return out


def max_abs(g):
    """The largest magnitude in ``g`` (NaN or inf when ``g`` holds one)."""
    return _max_abs(g)


def max_abs_projected(x, g, lb, ub):
    """The largest magnitude of the projected gradient step within ``[lb, ub]``."""
    return _max_abs_projected(x, g, lb, ub)


# --- host-array handling: the same names exist in ``cuda.py`` for device arrays -----

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
