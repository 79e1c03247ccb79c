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


#: Sums are accumulated in this many float64 lanes: a fixed-length inner loop over
#: independent lanes is what LLVM vectorizes without reassociating (fastmath stays off).
LANES = 64


@jit
def _add_rows_sumsq(g4, colacc, lanes, rowsum):
    """For the 4 rows of ``g4``: add sum_r g_rj**2 to colacc[j], row sums to rowsum[:4].

    Four rows at a time quarter the traffic on the column accumulator.
    """
    m = g4.shape[1]
    mm = m - m % LANES
    g0, g1, g2, g3 = g4[0], g4[1], g4[2], g4[3]
    lanes[:] = 0.0
    for base in range(0, mm, LANES):
        for k in range(LANES):
            j = base + k
            v0 = np.float64(g0[j])
            v1 = np.float64(g1[j])
            v2 = np.float64(g2[j])
            v3 = np.float64(g3[j])
            a0, a1, a2, a3 = v0 * v0, v1 * v1, v2 * v2, v3 * v3
            lanes[0, k] += a0
            lanes[1, k] += a1
            lanes[2, k] += a2
            lanes[3, k] += a3
            colacc[j] += (a0 + a1) + (a2 + a3)
    for r in range(4):
        s = 0.0
        for j in range(mm, m):
            v = np.float64(g4[r, j])
            s += v * v
        for k in range(LANES):
            s += lanes[r, k]
        rowsum[r] = s
    for j in range(mm, m):
        v0 = np.float64(g0[j])
        v1 = np.float64(g1[j])
        v2 = np.float64(g2[j])
        v3 = np.float64(g3[j])
        colacc[j] += (v0 * v0 + v1 * v1) + (v2 * v2 + v3 * v3)


@jit
def _add_row_sumsq(grow, colacc, lane):
    """Add g_j**2 to colacc[j]; return the row's sum of g_j**2 (``lane``: scratch)."""
    m = grow.shape[0]
    mm = m - m % LANES
    lane[:] = 0.0
    for base in range(0, mm, LANES):
        for k in range(LANES):
            v = np.float64(grow[base + k])
            v2 = v * v
            lane[k] += v2
            colacc[base + k] += v2
    s = 0.0
    for j in range(mm, m):
        v = np.float64(grow[j])
        s += v * v
        colacc[j] += v * v
    for k in range(LANES):
        s += lane[k]
    return s


@jit
def _add_sumsq(a, lane):
    """Add a_j**2 into the lanes; return the sum for the tail that does not fill a lane row."""
    m = a.shape[0]
    mm = m - m % LANES
    for base in range(0, mm, LANES):
        for k in range(LANES):
            v = np.float64(a[base + k])
            lane[k] += v * v
    s = 0.0
    for j in range(mm, m):
        v = np.float64(a[j])
        s += v * v
    return s


@jit
def _add_sumsq_scaled(g, a, b, lane):
    """As ``_add_sumsq`` for u_j = g_j * a * b_j, the product formed in g's dtype."""
    m = g.shape[0]
    mm = m - m % LANES
    for base in range(0, mm, LANES):
        for k in range(LANES):
            u = np.float64(g[base + k] * a * b[base + k])
            lane[k] += u * u
    s = 0.0
    for j in range(mm, m):
        u = np.float64(g[j] * a * b[j])
        s += u * u
    return s


@jit
def _add_second_moment(g, v, beta2, keep, eps1, lane):
    """v = beta2 v + keep (g**2 + eps1) in place; add (g / sqrt(v))**2 into the lanes."""
    m = g.shape[0]
    mm = m - m % LANES
    for base in range(0, mm, LANES):
        for k in range(LANES):
            gj = g[base + k]
            vj = beta2 * v[base + k] + keep * (gj * gj + eps1)
            v[base + k] = vj
            u = np.float64(gj / np.sqrt(vj))
            lane[k] += u * u
    s = 0.0
    for j in range(mm, m):
        gj = g[j]
        vj = beta2 * v[j] + keep * (gj * gj + eps1)
        v[j] = vj
        u = np.float64(gj / np.sqrt(vj))
        s += u * u
    return s


@jit
def _chunk(k, nchunks, rows):
    """Rows ``[lo, hi)`` of chunk ``k`` when ``rows`` rows are split into ``nchunks``."""
    return k * rows // nchunks, (k + 1) * rows // nchunks


def _factored(x, out, g, r, c, mom, beta2, rho, eps1, eps2, clip, beta1, wd,
              scale_parameter, nchunks):
    nb, n, m = g.shape
    dt = r.dtype
    colpart = np.empty((nchunks, m))
    colf = np.empty(m, dt)
    rmean = np.empty(nb)
    xpart = np.zeros(nchunks)
    upart = np.zeros(nchunks)
    keep = 1.0 - beta2
    # Matrix by matrix, so that scratch memory is O(nchunks * m), whatever the batch.
    # Pass 1: row and column sums of g**2 (and of x**2 for the parameter scale).
    for b in range(nb):
        colpart[:] = 0.0
        for k in prange(nchunks):
            lo, hi = _chunk(k, nchunks, n)
            lanes = np.empty((4, LANES))
            rowsum = np.empty(4)
            xlane = np.zeros(LANES)
            xs = 0.0
            i = lo
            while i < hi:
                step = 4 if i + 4 <= hi else 1
                if step == 4:
                    _add_rows_sumsq(g[b, i:i + 4], colpart[k], lanes, rowsum)
                else:
                    rowsum[0] = _add_row_sumsq(g[b, i], colpart[k], lanes[0])
                for di in range(step):
                    r[b, i + di] = beta2 * r[b, i + di] + keep * (rowsum[di] / m + eps1)
                    if scale_parameter:
                        xs += _add_sumsq(x[b, i + di], xlane)
                i += step
            xpart[k] += xs + xlane.sum()
        s = 0.0
        for i in range(n):
            s += np.float64(r[b, i])
        rmean[b] = s / n
        for j in range(m):
            s = 0.0
            for k in range(nchunks):
                s += colpart[k, j]
            c[b, j] = beta2 * c[b, j] + keep * (s / n + eps1)

    # Pass 2: RMS(U) over the whole block, for update clipping, with
    # U_ij = g_ij a_i b_j, a_i = sqrt(mean(R) / R_i), b_j = 1 / sqrt(C_j).
    for b in range(nb):
        _col_factors(c[b], colf)
        for k in prange(nchunks):
            lo, hi = _chunk(k, nchunks, n)
            lane = np.zeros(LANES)
            scratch = np.empty(1, dt)
            s = 0.0
            for i in range(lo, hi):
                a = _row_factor(rmean[b], r[b, i], scratch)
                s += _add_sumsq_scaled(g[b, i], a, colf, lane)
            upart[k] += s + lane.sum()

    coef = _coefficients(dt, upart.sum(), xpart.sum(), nb * n * m, rho, eps2, clip, beta1,
                         wd, scale_parameter)
    xkeep = coef[0]
    scale = coef[1]
    b1 = coef[2]
    b1c = coef[3]
    use_mom = mom.size > 0

    # Pass 3: the update, in place when out is x.
    for b in range(nb):
        _col_factors(c[b], colf)
        for k in prange(nchunks):
            lo, hi = _chunk(k, nchunks, n)
            scratch = np.empty(1, dt)
            for i in range(lo, hi):
                a = _row_factor(rmean[b], r[b, i], scratch)
                if use_mom:
                    _update_row_momentum(x[b, i], out[b, i], g[b, i], mom[b, i], a, colf,
                                         xkeep, scale, b1, b1c)
                else:
                    _update_row(x[b, i], out[b, i], g[b, i], a, colf, xkeep, scale)


@jit
def _col_factors(c, colf):
    for j in range(c.shape[0]):
        colf[j] = 1.0 / np.sqrt(np.float64(c[j]))


@jit
def _row_factor(rmean, ri, scratch):
    """sqrt(mean(R) / R_i), rounded to the block's dtype through ``scratch``."""
    scratch[0] = np.sqrt(rmean / np.float64(ri))
    return scratch[0]


@jit
def _update_row(xrow, orow, grow, a, cf, xkeep, scale):
    for j in range(grow.shape[0]):
        orow[j] = xrow[j] * xkeep - scale * (grow[j] * a * cf[j])


@jit
def _update_row_momentum(xrow, orow, grow, mrow, a, cf, xkeep, scale, b1, b1c):
    for j in range(grow.shape[0]):
        mv = b1 * mrow[j] + b1c * (scale * (grow[j] * a * cf[j]))
        mrow[j] = mv
        orow[j] = xrow[j] * xkeep - mv


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
        lane = np.zeros(LANES)
        s = _add_second_moment(g[lo:hi], v[lo:hi], bet2, keep, e1, lane) + lane.sum()
        upart[k] = s
        if scale_parameter:
            xlane = np.zeros(LANES)
            xpart[k] = _add_sumsq(x[lo:hi], xlane) + xlane.sum()

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
    nchunks = n_chunks(n * m, n)
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
