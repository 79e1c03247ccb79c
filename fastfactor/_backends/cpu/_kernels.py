"""Numba kernels of one Adafactor step (the CPU backend's compiled core).

A step is split in two so that it can be refused before anything changes:

- ``*_stats`` reads the gradient (and x, for its RMS) and returns the new second-moment
  statistics and the sums the step needs, mutating nothing; a non-finite sum means the
  gradient held a NaN or inf, or its squares overflow the statistics' dtype. For a
  matrix this includes sum U**2, from column sums of g**2 / R_i: one pass over g.
- ``*_apply`` stores the statistics and writes the new x (and first moment). With
  ``out`` None it updates ``x`` itself; otherwise it writes ``out`` from ``x``, which it
  leaves unchanged: the same traffic either way. The two
  are separate loops because a loop writing a separate output vectorizes only behind
  LLVM's run-time overlap check, which fails (falling back to scalar code, ~12x
  slower) when the output is the input; the host says which case it is.

The scalars of the step arrive as one ``fastfactor._hyper.StepScalars`` named tuple
``s`` and are read by name (``s.beta2``, ``s.eps1``, ...): a new scalar is a new field
there, read here, with nothing in between.

Neither builds an ``n x m`` temporary: ``V_ij = R_i C_j / mean(R)`` enters only through
``U_ij = g_ij * a_i * b_j`` with ``a_i = sqrt(mean(R) / R_i)``, ``b_j = 1 / sqrt(C_j)``.
Where a second moment is exactly zero (possible only with ``eps1 = 0``), U is 0, not
0/0: ``a_i = 0`` where ``R_i = 0``, ``b_j = 0`` where ``C_j = 0``, and an unfactored
``U_i = 0`` where ``v_i = 0``; the sums of U**2 drop those terms alike. These are
selects on values (``_quotient``), so a NaN from a NaN or inf in g still reaches the sums
(the unfactored sum of U**2 takes the select only on a chunk whose plain sum is not
finite: see ``_add_sumsq_normalized``).
Each kernel is compiled twice from one source: serially, and with ``parallel=True`` for
large matrices, whose rows are split into one contiguous chunk per thread, each with its
own column accumulator (so the summation order, hence the result, depends only on the
chunk count). State and element-wise arithmetic use the parameter's dtype; sums are
accumulated in float64.
"""

import numpy as np
from numba import prange, types

from ._jit import by_type, jit, jit_parallel

#: Sums are accumulated in this many float64 lanes: a fixed-length inner loop over
#: independent lanes is what LLVM vectorizes without reassociating (fastmath stays off).
SUM_LANES = 64


@jit
def _larger(a, b):
    """The larger of a and b, as one compare and select (vectorizes; NaNs are not
    ordered: the sums, not this maximum, tell whether g is finite)."""
    return a if a > b else b


@jit
def _quotient(a, b):
    """a / b, or 0 (in b's type: b itself) where b is 0, the case of a zero second
    moment. A select, so loops calling it still vectorize; a NaN stays NaN."""
    return a / b if b != 0 else b


@jit
def _add_rows(g4, r4, rn4, colsq, colw, lanes, beta2, keep, eps1):
    """Statistics of the 4 rows of ``g4``; returns their sum of g**2.

    Adds sum_r g_rj**2 to colsq[j] and sum_r g_rj**2 / R_r to colw[j], where
    R_r = beta2 r4[r] + keep (mean_j g_rj**2 + eps1) is stored into rn4. The second
    sweep re-reads the four rows from cache; it is what yields sum U**2 (see
    ``_finish_columns``) without another pass over g in memory. Four rows at a time
    quarter the traffic on the column accumulators.
    """
    m = g4.shape[1]
    mm = m - m % SUM_LANES
    g0, g1, g2, g3 = g4[0], g4[1], g4[2], g4[3]
    lanes[:] = 0.0
    for base in range(0, mm, SUM_LANES):
        for k in range(SUM_LANES):
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
            colsq[j] += (a0 + a1) + (a2 + a3)
    total = 0.0
    for q in range(4):
        s = 0.0
        for j in range(mm, m):
            v = np.float64(g4[q, j])
            s += v * v
        for k in range(SUM_LANES):
            s += lanes[q, k]
        rn4[q] = beta2 * r4[q] + keep * (s / m + eps1)
        total += s
    for j in range(mm, m):
        v0 = np.float64(g0[j])
        v1 = np.float64(g1[j])
        v2 = np.float64(g2[j])
        v3 = np.float64(g3[j])
        colsq[j] += (v0 * v0 + v1 * v1) + (v2 * v2 + v3 * v3)
    w0 = _quotient(1.0, np.float64(rn4[0]))
    w1 = _quotient(1.0, np.float64(rn4[1]))
    w2 = _quotient(1.0, np.float64(rn4[2]))
    w3 = _quotient(1.0, np.float64(rn4[3]))
    for j in range(m):
        v0 = np.float64(g0[j])
        v1 = np.float64(g1[j])
        v2 = np.float64(g2[j])
        v3 = np.float64(g3[j])
        colw[j] += (v0 * v0 * w0 + v1 * v1 * w1) + (v2 * v2 * w2 + v3 * v3 * w3)
    return total


@jit
def _add_row(grow, r1, rn1, colsq, colw, lane, beta2, keep, eps1):
    """As ``_add_rows`` for one row (``r1``, ``rn1``: its 1-element slices of r and rn)."""
    m = grow.shape[0]
    mm = m - m % SUM_LANES
    lane[:] = 0.0
    for base in range(0, mm, SUM_LANES):
        for k in range(SUM_LANES):
            v = np.float64(grow[base + k])
            v2 = v * v
            lane[k] += v2
            colsq[base + k] += v2
    s = 0.0
    for j in range(mm, m):
        v = np.float64(grow[j])
        s += v * v
        colsq[j] += v * v
    for k in range(SUM_LANES):
        s += lane[k]
    rn1[0] = beta2 * r1[0] + keep * (s / m + eps1)
    w = _quotient(1.0, np.float64(rn1[0]))
    for j in range(m):
        v = np.float64(grow[j])
        colw[j] += v * v * w
    return s


@jit
def _add_sumsq(a, lane):
    """Add a_j**2 into the lanes; return the sum for the tail that does not fill a lane row."""
    m = a.shape[0]
    mm = m - m % SUM_LANES
    for base in range(0, mm, SUM_LANES):
        for k in range(SUM_LANES):
            v = np.float64(a[base + k])
            lane[k] += v * v
    s = 0.0
    for j in range(mm, m):
        v = np.float64(a[j])
        s += v * v
    return s


@jit
def _chunk(k, nchunks, rows):
    """Rows ``[lo, hi)`` of chunk ``k`` when ``rows`` rows are split into ``nchunks``."""
    return k * rows // nchunks, (k + 1) * rows // nchunks


def _factored_stats(x, g, r, c, rn, cn, s, nchunks):
    """New row/column statistics into ``rn``, ``cn``; returns sums of g**2, x**2, U**2.

    One pass over g (and x, for its RMS). The ``B * n`` rows are split into ``nchunks``
    contiguous chunks, one parallel loop for the whole batch. Each chunk accumulates
    column sums in ``colpart[k]``: slot 0 holds its first matrix, slot 1 its last (and,
    before that, each matrix lying wholly inside the chunk, which is finished there).
    First and last matrices may be shared with neighbouring chunks, so they are
    finished after the loop, their partial sums added in chunk order.
    """
    nb, n, m = g.shape
    rows = nb * n
    beta2 = s.beta2
    eps1 = s.eps1
    scale_parameter = s.scale_parameter
    colpart = np.zeros((nchunks, 1 if nb == 1 else 2, 2, m))  # sums of g**2, g**2 / R_i
    sums = np.zeros((nchunks, 3))  # chunk, sum of g**2 / x**2 / U**2
    keep = 1.0 - beta2
    for k in prange(nchunks):
        lo, hi = _chunk(k, nchunks, rows)
        lanes = np.empty((4, SUM_LANES))
        xlane = np.zeros(SUM_LANES)
        gs = 0.0
        xs = 0.0
        us = 0.0
        bfirst = lo // n
        blast = (hi - 1) // n
        q = lo
        while q < hi:
            b = q // n
            i = q - b * n
            iend = min(hi - b * n, n)
            acc = colpart[k, 0 if b == bfirst else 1]
            if b != bfirst:
                acc[:] = 0.0
            while i < iend:
                if i + 4 <= iend:
                    gs += _add_rows(g[b, i:i + 4], r[b, i:i + 4], rn[b, i:i + 4], acc[0],
                                    acc[1], lanes, beta2, keep, eps1)
                    i += 4
                else:
                    gs += _add_row(g[b, i], r[b, i:i + 1], rn[b, i:i + 1], acc[0], acc[1],
                                   lanes[0], beta2, keep, eps1)
                    i += 1
            if b != bfirst and b != blast:
                us += _finish_columns(acc, c[b], cn[b], rn[b], beta2, keep, eps1)
            q = b * n + iend
        if scale_parameter:
            for q in range(lo, hi):
                b = q // n
                xs += _add_sumsq(x[b, q - b * n], xlane)
        sums[k, 0] = gs
        sums[k, 1] = xs + _total(xlane)
        sums[k, 2] = us
    # Matrices held in a slot: add the partial sums of the chunks that share them into
    # the first one's slot, in chunk order, and finish them.
    shared = 0.0
    done = -1
    for k0 in range(nchunks):
        lo, hi = _chunk(k0, nchunks, rows)
        if lo >= hi:
            continue
        for slot in range(2 if (hi - 1) // n != lo // n else 1):
            b = lo // n if slot == 0 else (hi - 1) // n
            if b <= done:
                continue
            acc = colpart[k0, slot]
            for k in range(k0 + 1, nchunks):
                klo, khi = _chunk(k, nchunks, rows)
                if klo // n != b:
                    break
                _add_into(acc, colpart[k, 0])
            shared += _finish_columns(acc, c[b], cn[b], rn[b], beta2, keep, eps1)
            done = b
    return _total(sums[:, 0]), _total(sums[:, 1]), _total(sums[:, 2]) + shared


@jit
def _finish_columns(acc, c, cn, rn, beta2, keep, eps1):
    """cn = beta2 c + keep (column mean of g**2 + eps1); returns the matrix's sum U**2.

    ``acc`` holds the column sums of g**2 and of g**2 / R_i. As
    U_ij**2 = g_ij**2 / V_ij = g_ij**2 mean(R) / (R_i C_j),
    sum U**2 = mean(R) sum_j (sum_i g_ij**2 / R_i) / C_j, a column with C_j = 0
    adding nothing (as rows with R_i = 0 added nothing to ``acc[1]``). It is inf or NaN
    when a statistic overflowed the block's dtype.
    """
    n = rn.shape[0]
    s = 0.0
    cmax = 0.0
    for j in range(acc.shape[1]):
        cn[j] = beta2 * c[j] + keep * (acc[0, j] / n + eps1)
        cj = np.float64(cn[j])
        cmax = max(cmax, cj)
        s += _quotient(acc[1, j], cj)
    if not cmax < np.inf:
        return np.inf
    return _mean(rn) * s


@jit
def _total(a):
    """Sum of the 1-D ``a`` in float64, in order. A called function, not ``a.sum()``:
    the parallel build would turn that into a parallel reduction, whose order (hence
    rounding) differs from the serial build's."""
    s = 0.0
    for i in range(a.shape[0]):
        s += np.float64(a[i])
    return s


@jit
def _largest(a):
    """Largest element of the 1-D ``a`` (NaN if any is NaN), in order (see ``_total``)."""
    out = a[0]
    for i in range(1, a.shape[0]):
        if a[i] > out or a[i] != a[i]:
            out = a[i]
        if out != out:
            return out
    return out


# Elementwise loops, not ``a += b`` / ``a[:] = b``: Numba's whole-array forms check
# shapes at run time with an error path that formats strings, about 4 s of compilation
# in a cold first solve (the host gives these kernels matching shapes).
@jit
def _add_into(acc, part):
    """``acc += part`` for two 2-D arrays of one shape."""
    for a in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            acc[a, j] += part[a, j]


@jit
def _copy_into(dst, src):
    """``dst[:] = src`` for two 2-D arrays of one shape (cast to dst's dtype)."""
    for a in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[a, j] = src[a, j]


@jit
def _mean(a):
    """Mean of the 1-D ``a`` in float64, summed in order."""
    return _total(a) / a.shape[0]


def _factored_apply(x, out, g, r, c, rn, cn, mom, usum, xsum, s, nchunks):
    """Store the statistics, then write the new x (and first moment): one pass.

    ``out`` None: update ``x`` itself; otherwise write ``out`` from ``x``, leaving ``x``
    unchanged. ``mom`` None: no first moment. Both are told by type (``_update_row_of``),
    so each of the four variants is compiled only when a run uses it.
    """
    nb, n, m = g.shape
    rows = nb * n
    dt = r.dtype
    _copy_into(r, rn)
    _copy_into(c, cn)
    rmean = np.empty(nb)
    for b in range(nb):
        rmean[b] = _mean(r[b])
    xkeep, scale, b1, b1c = _coefficients(dt, usum, xsum, rows * m, s)
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
            _update_row_of(out, x, g, mom, b, i, a, colf, xkeep, scale, b1, b1c)


@jit
def _col_factors(c, colf):
    """b_j = 1 / sqrt(C_j), 0 where C_j = 0."""
    for j in range(c.shape[0]):
        colf[j] = _quotient(1.0, np.sqrt(np.float64(c[j])))


@jit
def _row_factor(rmean, ri, scratch):
    """sqrt(mean(R) / R_i), 0 where R_i = 0, rounded to the block's dtype through
    ``scratch``."""
    scratch[0] = np.sqrt(_quotient(rmean, np.float64(ri)))
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


@jit
def _update_row_to(orow, xrow, grow, a, cf, xkeep, scale):
    """As ``_update_row``, into ``orow`` (another array than ``xrow``: vectorized behind
    LLVM's overlap check)."""
    for j in range(grow.shape[0]):
        orow[j] = xrow[j] * xkeep - scale * (grow[j] * a * cf[j])


@jit
def _update_row_momentum_to(orow, xrow, grow, mrow, a, cf, xkeep, scale, b1, b1c):
    """As ``_update_row_momentum``, into ``orow``."""
    for j in range(grow.shape[0]):
        mv = b1 * mrow[j] + b1c * (scale * (grow[j] * a * cf[j]))
        mrow[j] = mv
        orow[j] = xrow[j] * xkeep - mv


def _update_row_of(out, x, g, mom, b, i, a, cf, xkeep, scale, b1, b1c):
    """Row ``i`` of matrix ``b`` updated by the row update that the types of ``out`` and
    ``mom`` select (None: in place; None: no first moment). Compiled code only."""
    raise NotImplementedError("a kernel helper: called from compiled code only")


@by_type(_update_row_of)
def _update_row_variant(out, x, g, mom, b, i, a, cf, xkeep, scale, b1, b1c):
    inplace = isinstance(out, types.NoneType)
    if isinstance(mom, types.NoneType):
        if inplace:
            def update(out, x, g, mom, b, i, a, cf, xkeep, scale, b1, b1c):
                _update_row(x[b, i], g[b, i], a, cf, xkeep, scale)
        else:
            def update(out, x, g, mom, b, i, a, cf, xkeep, scale, b1, b1c):
                _update_row_to(out[b, i], x[b, i], g[b, i], a, cf, xkeep, scale)
    elif inplace:
        def update(out, x, g, mom, b, i, a, cf, xkeep, scale, b1, b1c):
            _update_row_momentum(x[b, i], g[b, i], mom[b, i], a, cf, xkeep, scale, b1, b1c)
    else:
        def update(out, x, g, mom, b, i, a, cf, xkeep, scale, b1, b1c):
            _update_row_momentum_to(out[b, i], x[b, i], g[b, i], mom[b, i], a, cf, xkeep,
                                    scale, b1, b1c)
    return update


def _unfactored_stats(x, g, v, s, nchunks):
    """Returns (sum U**2, sum x**2, largest g**2 as computed in g's dtype) with the new
    second moment, leaving ``v`` unchanged."""
    size = g.shape[0]
    bet2, keep, e1 = _scalars(v.dtype, s.beta2, 1.0 - s.beta2, s.eps1)
    # one allocation for the chunks' partial sums, one per chunk for its lanes: a small
    # block's step is dominated by allocations
    parts = np.zeros((3, nchunks))  # sum U**2, sum x**2, largest g**2
    upart, xpart, gpart = parts[0], parts[1], parts[2]
    for k in prange(nchunks):
        lo, hi = _chunk(k, nchunks, size)
        lanes = np.zeros((3, SUM_LANES))
        lane, mlane, xlane = lanes[0], lanes[1], lanes[2]
        usum, tail = _add_sumsq_normalized(g[lo:hi], v[lo:hi], bet2, keep, e1, lane, mlane)
        upart[k] = usum + _total(lane)
        if not upart[k] < np.inf:  # a v of 0 (0/0 there), or g not finite: count again
            lane[:] = 0.0
            usum = _add_sumsq_normalized_where_zero(g[lo:hi], v[lo:hi], bet2, keep, e1, lane)
            upart[k] = usum + _total(lane)
        # not mlane.max(): its empty-array error path takes 0.7 s to compile
        gpart[k] = _larger(tail, _largest(mlane))
        if s.scale_parameter:
            xpart[k] = _add_sumsq(x[lo:hi], xlane) + _total(xlane)
    return _total(upart), _total(xpart), _largest(gpart)


def _unfactored_apply(x, out, g, v, mom, usum, xsum, s, nchunks):
    """Store the new second moment and write the new x (and first moment) in one pass.

    ``out`` and ``mom`` as in ``_factored_apply`` (None: in place; None: no first
    moment), told by type (``_update_normalized_of``).
    """
    size = g.shape[0]
    dt = v.dtype
    bet2, keep, e1 = _scalars(dt, s.beta2, 1.0 - s.beta2, s.eps1)
    xkeep, scale, b1, b1c = _coefficients(dt, usum, xsum, size, s)
    for k in prange(nchunks):
        lo, hi = _chunk(k, nchunks, size)
        _update_normalized_of(out, x, g, v, mom, lo, hi, bet2, keep, e1, xkeep, scale, b1,
                              b1c)


@jit
def _update_normalized(x, g, v, beta2, keep, eps1, xkeep, scale):
    """v = beta2 v + keep (g**2 + eps1); x = x xkeep - scale g / sqrt(v) (0 where v is
    0), in place."""
    for i in range(g.shape[0]):
        gi = g[i]
        vi = beta2 * v[i] + keep * (gi * gi + eps1)
        v[i] = vi
        x[i] = x[i] * xkeep - scale * _quotient(gi, np.sqrt(vi))


@jit
def _update_normalized_momentum(x, g, v, mom, beta2, keep, eps1, xkeep, scale, b1, b1c):
    """As ``_update_normalized``, through the first moment ``mom``."""
    for i in range(g.shape[0]):
        gi = g[i]
        vi = beta2 * v[i] + keep * (gi * gi + eps1)
        v[i] = vi
        mv = b1 * mom[i] + b1c * (scale * _quotient(gi, np.sqrt(vi)))
        mom[i] = mv
        x[i] = x[i] * xkeep - mv


@jit
def _update_normalized_to(out, x, g, v, beta2, keep, eps1, xkeep, scale):
    """As ``_update_normalized``, into ``out`` (another array than ``x``)."""
    for i in range(g.shape[0]):
        gi = g[i]
        vi = beta2 * v[i] + keep * (gi * gi + eps1)
        v[i] = vi
        out[i] = x[i] * xkeep - scale * _quotient(gi, np.sqrt(vi))


@jit
def _update_normalized_momentum_to(out, x, g, v, mom, beta2, keep, eps1, xkeep, scale, b1,
                                   b1c):
    """As ``_update_normalized_momentum``, into ``out``."""
    for i in range(g.shape[0]):
        gi = g[i]
        vi = beta2 * v[i] + keep * (gi * gi + eps1)
        v[i] = vi
        mv = b1 * mom[i] + b1c * (scale * _quotient(gi, np.sqrt(vi)))
        mom[i] = mv
        out[i] = x[i] * xkeep - mv


def _update_normalized_of(out, x, g, v, mom, lo, hi, beta2, keep, eps1, xkeep, scale, b1,
                          b1c):
    """Elements ``[lo, hi)`` of a flat block updated by the variant that the types of
    ``out`` and ``mom`` select (as ``_update_row_of``). Compiled code only."""
    raise NotImplementedError("a kernel helper: called from compiled code only")


@by_type(_update_normalized_of)
def _update_normalized_variant(out, x, g, v, mom, lo, hi, beta2, keep, eps1, xkeep, scale, b1,
                               b1c):
    inplace = isinstance(out, types.NoneType)
    if isinstance(mom, types.NoneType):
        if inplace:
            def update(out, x, g, v, mom, lo, hi, beta2, keep, eps1, xkeep, scale, b1, b1c):
                _update_normalized(x[lo:hi], g[lo:hi], v[lo:hi], beta2, keep, eps1, xkeep,
                                   scale)
        else:
            def update(out, x, g, v, mom, lo, hi, beta2, keep, eps1, xkeep, scale, b1, b1c):
                _update_normalized_to(out[lo:hi], x[lo:hi], g[lo:hi], v[lo:hi], beta2, keep,
                                      eps1, xkeep, scale)
    elif inplace:
        def update(out, x, g, v, mom, lo, hi, beta2, keep, eps1, xkeep, scale, b1, b1c):
            _update_normalized_momentum(x[lo:hi], g[lo:hi], v[lo:hi], mom[lo:hi], beta2, keep,
                                        eps1, xkeep, scale, b1, b1c)
    else:
        def update(out, x, g, v, mom, lo, hi, beta2, keep, eps1, xkeep, scale, b1, b1c):
            _update_normalized_momentum_to(out[lo:hi], x[lo:hi], g[lo:hi], v[lo:hi],
                                           mom[lo:hi], beta2, keep, eps1, xkeep, scale, b1,
                                           b1c)
    return update


@jit
def _add_sumsq_normalized(g, v, beta2, keep, eps1, lane, mlane):
    """Add U**2 = g**2 / (beta2 v + keep (g**2 + eps1)) into the lanes and the largest
    g**2 into ``mlane``; return the tail's sum and largest g**2.

    U**2 is formed without the square root (it only feeds RMS(U)). Where that v is 0
    (eps1 = 0), U**2 is 0/0 here: the caller then counts again with
    ``_add_sumsq_normalized_where_zero``, whose select would slow this loop (by about a
    third in float32: it is no longer unrolled across the lanes).
    """
    m = g.shape[0]
    mm = m - m % SUM_LANES
    for base in range(0, mm, SUM_LANES):
        for k in range(SUM_LANES):
            g2 = g[base + k] * g[base + k]
            lane[k] += np.float64(g2 / (beta2 * v[base + k] + keep * (g2 + eps1)))
            mlane[k] = _larger(mlane[k], np.float64(g2))
    s = 0.0
    tail = 0.0
    for j in range(mm, m):
        g2 = g[j] * g[j]
        s += np.float64(g2 / (beta2 * v[j] + keep * (g2 + eps1)))
        tail = _larger(tail, np.float64(g2))
    return s, tail


@jit
def _add_sumsq_normalized_where_zero(g, v, beta2, keep, eps1, lane):
    """As ``_add_sumsq_normalized`` (same lanes, same order), with U**2 = 0 where v is 0,
    and without the largest g**2. A NaN or inf in g still makes the sum NaN."""
    m = g.shape[0]
    mm = m - m % SUM_LANES
    for base in range(0, mm, SUM_LANES):
        for k in range(SUM_LANES):
            g2 = g[base + k] * g[base + k]
            lane[k] += np.float64(_quotient(g2, beta2 * v[base + k] + keep * (g2 + eps1)))
    s = 0.0
    for j in range(mm, m):
        g2 = g[j] * g[j]
        s += np.float64(_quotient(g2, beta2 * v[j] + keep * (g2 + eps1)))
    return s


def _rounded(dt, a):
    """The float ``a`` rounded to the dtype ``dt`` (a cast, chosen while typing: no array
    to round through, which costs an allocation per call)."""
    raise NotImplementedError("a kernel helper: called from compiled code only")


@by_type(_rounded)
def _rounded_variant(dt, a):
    to = dt.dtype
    return lambda dt, a: to(a)


@jit
def _scalars(dt, a, b, c):
    """Three float64 scalars rounded to ``dt`` (element-wise arithmetic stays in dt)."""
    return _rounded(dt, a), _rounded(dt, b), _rounded(dt, c)


@jit
def _coefficients(dt, usum, xsum, size, s):
    """Step coefficients in the block's dtype: x-keep factor, update scale, beta1, 1-beta1."""
    alpha = s.rho
    if s.scale_parameter:
        alpha = max(s.eps2, np.sqrt(xsum / size)) * s.rho
    denom = max(1.0, np.sqrt(usum / size) / s.clip_threshold)
    return (_rounded(dt, 1.0 - s.weight_decay * alpha), _rounded(dt, alpha / denom),
            _rounded(dt, s.beta1), _rounded(dt, 1.0 - s.beta1))


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
    """max |clip(x - g, lb, ub) - x|, the projected-gradient measure under bounds.

    As ``_max_abs``, NaN if any g_i is NaN and otherwise inf if any is infinite (the
    projection alone could clip an infinite g_i to a finite step): one scan tells
    both whether g is finite and how far from stationary x is.
    """
    out = 0.0
    for i in range(g.size):
        gi = np.float64(g.flat[i])
        a = abs(gi)
        if not a < np.inf:  # NaN or inf
            if np.isnan(a):
                return a
            out = a
            continue
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
