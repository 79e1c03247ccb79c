"""Numba kernels of one Adafactor step (the CPU backend's compiled core).

A step is split in two so that it can be refused before anything changes:

- ``*_stats`` reads the gradient (and x, for its RMS) and returns the new second-moment
  statistics and the sums the step needs, mutating nothing; a non-finite sum means the
  gradient held a NaN or inf.
- ``*_apply`` stores the statistics and updates x (and the first moment) in place.
  In place only: with a separate output array, LLVM's run-time overlap check fails
  whenever the two are the same memory and it falls back to scalar code.

Neither builds an ``n x m`` temporary: ``V_ij = R_i C_j / mean(R)`` enters only through
``U_ij = g_ij * a_i * b_j`` with ``a_i = sqrt(mean(R) / R_i)``, ``b_j = 1 / sqrt(C_j)``.
Each kernel is compiled twice from one source: serially, and with ``parallel=True`` for
large matrices, whose rows are split into one contiguous chunk per thread, each with its
own column accumulator (so the summation order, hence the result, depends only on the
chunk count). State and element-wise arithmetic use the parameter's dtype; sums are
accumulated in float64.
"""

import numpy as np
from numba import prange

from ._jit import jit, jit_parallel

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
def _chunk(k, nchunks, rows):
    """Rows ``[lo, hi)`` of chunk ``k`` when ``rows`` rows are split into ``nchunks``."""
    return k * rows // nchunks, (k + 1) * rows // nchunks


def _factored_stats(x, g, r, c, rn, cn, beta2, eps1, scale_parameter, nchunks):
    """New row/column statistics into ``rn``, ``cn``; returns (sum g**2, sum x**2).

    The ``B * n`` rows are split into ``nchunks`` contiguous chunks, one parallel loop
    for the whole batch. A matrix lying wholly inside one chunk gets its column sums
    there; the first and last matrix of a chunk may be shared with its neighbours, so
    their partial column sums are kept (``colpart``, O(nchunks * m)) and added up after.
    """
    nb, n, m = g.shape
    rows = nb * n
    colpart = np.zeros((nchunks, 2, m))
    gpart = np.zeros(nchunks)
    xpart = np.zeros(nchunks)
    keep = 1.0 - beta2
    for k in prange(nchunks):
        lo, hi = _chunk(k, nchunks, rows)
        acc = np.empty(m)
        lanes = np.empty((4, LANES))
        rowsum = np.empty(4)
        xlane = np.zeros(LANES)
        gs = 0.0
        xs = 0.0
        bfirst = lo // n
        blast = (hi - 1) // n
        q = lo
        while q < hi:
            b = q // n
            i = q - b * n
            iend = min(hi - b * n, n)
            acc[:] = 0.0
            while i < iend:
                step = 4 if i + 4 <= iend else 1
                if step == 4:
                    _add_rows_sumsq(g[b, i:i + 4], acc, lanes, rowsum)
                else:
                    rowsum[0] = _add_row_sumsq(g[b, i], acc, lanes[0])
                for di in range(step):
                    gs += rowsum[di]
                    rn[b, i + di] = beta2 * r[b, i + di] + keep * (rowsum[di] / m + eps1)
                    if scale_parameter:
                        xs += _add_sumsq(x[b, i + di], xlane)
                i += step
            if b == bfirst:
                colpart[k, 0] = acc
            elif b == blast:
                colpart[k, 1] = acc
            else:
                _finish_columns(acc, c[b], cn[b], beta2, keep, eps1, n)
            q = b * n + iend
        gpart[k] = gs
        xpart[k] = xs + xlane.sum()
    # Matrices shared between chunks: add their partial column sums, in chunk order.
    acc = np.empty(m)
    prev = -1
    for k0 in range(nchunks):
        for side in range(2):
            lo, hi = _chunk(k0, nchunks, rows)
            if lo >= hi:
                continue
            b = lo // n if side == 0 else (hi - 1) // n
            if b <= prev or (side == 1 and b == lo // n):
                continue
            acc[:] = 0.0
            for k in range(nchunks):
                klo, khi = _chunk(k, nchunks, rows)
                if klo >= khi:
                    continue
                if klo // n == b:
                    acc += colpart[k, 0]
                elif (khi - 1) // n == b:
                    acc += colpart[k, 1]
            _finish_columns(acc, c[b], cn[b], beta2, keep, eps1, n)
            prev = b
    return gpart.sum(), xpart.sum()


@jit
def _finish_columns(colsum, c, cn, beta2, keep, eps1, n):
    """cn = beta2 c + keep (column mean of g**2 + eps1), from the column sums."""
    for j in range(colsum.shape[0]):
        cn[j] = beta2 * c[j] + keep * (colsum[j] / n + eps1)


def _factored_apply(x, g, r, c, rn, cn, mom, xsum, rho, eps2, clip, beta1, wd,
                    scale_parameter, nchunks):
    """Store the statistics, then RMS(U) (pass 2) and the update of x in place (pass 3)."""
    nb, n, m = g.shape
    rows = nb * n
    dt = r.dtype
    r[:] = rn
    c[:] = cn
    rmean = np.empty(nb)
    for b in range(nb):
        s = 0.0
        for i in range(n):
            s += np.float64(r[b, i])
        rmean[b] = s / n

    upart = np.zeros(nchunks)
    for k in prange(nchunks):
        lo, hi = _chunk(k, nchunks, rows)
        lane = np.zeros(LANES)
        colf = np.empty(m, dt)
        scratch = np.empty(1, dt)
        current = -1
        s = 0.0
        for q in range(lo, hi):
            b = q // n
            if b != current:
                _col_factors(c[b], colf)
                current = b
            i = q - b * n
            a = _row_factor(rmean[b], r[b, i], scratch)
            s += _add_sumsq_scaled(g[b, i], a, colf, lane)
        upart[k] = s + lane.sum()

    coef = _coefficients(dt, upart.sum(), xsum, rows * m, rho, eps2, clip, beta1, wd,
                         scale_parameter)
    xkeep = coef[0]
    scale = coef[1]
    b1 = coef[2]
    b1c = coef[3]
    use_mom = mom.size > 0
    # The row walk repeats pass 2's on purpose: a shared helper returning (b, i, a_i)
    # is not inlined and made this pass 40% slower.
    for k in prange(nchunks):
        lo, hi = _chunk(k, nchunks, rows)
        colf = np.empty(m, dt)
        scratch = np.empty(1, dt)
        current = -1
        for q in range(lo, hi):
            b = q // n
            if b != current:
                _col_factors(c[b], colf)
                current = b
            i = q - b * n
            a = _row_factor(rmean[b], r[b, i], scratch)
            if use_mom:
                _update_row_momentum(x[b, i], g[b, i], mom[b, i], a, colf,
                                     xkeep, scale, b1, b1c)
            else:
                _update_row(x[b, i], g[b, i], a, colf, xkeep, scale)


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
def _update_row(xrow, grow, a, cf, xkeep, scale):
    """x = x xkeep - scale U on one row, in place (one array written: LLVM vectorizes it)."""
    for j in range(grow.shape[0]):
        xrow[j] = xrow[j] * xkeep - scale * (grow[j] * a * cf[j])


@jit
def _update_row_momentum(xrow, grow, mrow, a, cf, xkeep, scale, b1, b1c):
    """As ``_update_row``, through the first moment ``mrow``."""
    for j in range(grow.shape[0]):
        mv = b1 * mrow[j] + b1c * (scale * (grow[j] * a * cf[j]))
        mrow[j] = mv
        xrow[j] = xrow[j] * xkeep - mv


def _unfactored_stats(x, g, v, beta2, eps1, scale_parameter, nchunks):
    """Returns (sum U**2, sum x**2) with the new second moment, leaving ``v`` unchanged."""
    size = g.shape[0]
    sc = _scalars(v.dtype, beta2, 1.0 - beta2, eps1)
    upart = np.zeros(nchunks)
    xpart = np.zeros(nchunks)
    for k in prange(nchunks):
        lo, hi = _chunk(k, nchunks, size)
        lane = np.zeros(LANES)
        upart[k] = _add_sumsq_normalized(g[lo:hi], v[lo:hi], sc[0], sc[1], sc[2], lane) + lane.sum()
        if scale_parameter:
            xlane = np.zeros(LANES)
            xpart[k] = _add_sumsq(x[lo:hi], xlane) + xlane.sum()
    return upart.sum(), xpart.sum()


def _unfactored_apply(x, g, v, mom, beta2, eps1, usum, xsum, rho, eps2, clip, beta1,
                      wd, scale_parameter, nchunks):
    """Store the new second moment and update x (and the first moment) in one pass."""
    size = g.shape[0]
    dt = v.dtype
    sc = _scalars(dt, beta2, 1.0 - beta2, eps1)
    bet2 = sc[0]
    keep = sc[1]
    e1 = sc[2]
    coef = _coefficients(dt, usum, xsum, size, rho, eps2, clip, beta1, wd, scale_parameter)
    xkeep = coef[0]
    scale = coef[1]
    b1 = coef[2]
    b1c = coef[3]
    use_mom = mom.size > 0
    for k in prange(nchunks):
        lo, hi = _chunk(k, nchunks, size)
        if use_mom:
            _update_normalized_momentum(x[lo:hi], g[lo:hi], v[lo:hi], mom[lo:hi], bet2, keep, e1,
                                        xkeep, scale, b1, b1c)
        else:
            _update_normalized(x[lo:hi], g[lo:hi], v[lo:hi], bet2, keep, e1, xkeep, scale)


@jit
def _update_normalized(x, g, v, beta2, keep, eps1, xkeep, scale):
    """v = beta2 v + keep (g**2 + eps1); x = x xkeep - scale g / sqrt(v), in place."""
    for i in range(g.shape[0]):
        gi = g[i]
        vi = beta2 * v[i] + keep * (gi * gi + eps1)
        v[i] = vi
        x[i] = x[i] * xkeep - scale * (gi / np.sqrt(vi))


@jit
def _update_normalized_momentum(x, g, v, mom, beta2, keep, eps1, xkeep, scale, b1, b1c):
    """As ``_update_normalized``, through the first moment ``mom``."""
    for i in range(g.shape[0]):
        gi = g[i]
        vi = beta2 * v[i] + keep * (gi * gi + eps1)
        v[i] = vi
        mv = b1 * mom[i] + b1c * (scale * (gi / np.sqrt(vi)))
        mom[i] = mv
        x[i] = x[i] * xkeep - mv


@jit
def _add_sumsq_normalized(g, v, beta2, keep, eps1, lane):
    """Add U**2 = g**2 / (beta2 v + keep (g**2 + eps1)) into the lanes; return the tail's sum.

    U**2 is formed without the square root (it only feeds RMS(U)).
    """
    m = g.shape[0]
    mm = m - m % LANES
    for base in range(0, mm, LANES):
        for k in range(LANES):
            g2 = g[base + k] * g[base + k]
            lane[k] += np.float64(g2 / (beta2 * v[base + k] + keep * (g2 + eps1)))
    s = 0.0
    for j in range(mm, m):
        g2 = g[j] * g[j]
        s += np.float64(g2 / (beta2 * v[j] + keep * (g2 + eps1)))
    return s


@jit
def _scalars(dt, a, b, c):
    """Three float64 scalars rounded to ``dt`` (element-wise arithmetic stays in dt)."""
    out = np.empty(3, dt)
    out[0] = a
    out[1] = b
    out[2] = c
    return out


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


factored_stats_serial = jit(_factored_stats)
factored_stats_parallel = jit_parallel(_factored_stats)
factored_apply_serial = jit(_factored_apply)
factored_apply_parallel = jit_parallel(_factored_apply)
unfactored_stats_serial = jit(_unfactored_stats)
unfactored_stats_parallel = jit_parallel(_unfactored_stats)
unfactored_apply_serial = jit(_unfactored_apply)
unfactored_apply_parallel = jit_parallel(_unfactored_apply)
