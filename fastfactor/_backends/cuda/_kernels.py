"""Every ``@cuda.jit`` function of the backend: device functions, the dtype-independent
kernels, and the step kernels built per dtype by ``_kernels(dtype)``. Nothing compiles
at import (``cuda.jit`` compiles at the first launch).

One module, because of the simulator: it swaps the ``cuda`` global of a launched
kernel's module for the launch; a device function in another module would swap its
own module's ``cuda`` at each call and back, racing the block's other threads.

The kernels that need the step's scalars take them as one argument ``s``, a
``fastfactor._hyper.StepScalars`` named tuple (``numba.cuda`` passes a tuple argument
field by field), and read them by name: a new scalar is a new field there, read here.
"""

import math

import numpy as np
from numba import cuda, float64

from ._launch import RB, SBUF, TPB_MAX, J


# --- device functions ----------------------------------------------------------------
# Python's (and Numba's CPU) two-argument max and min, written out: the built-in
# ``max``/``min`` do not compile for every CUDA target version.
@cuda.jit(device=True)
def _max(a, b):
    return b if b > a else a


@cuda.jit(device=True)
def _min(a, b):
    return b if b < a else a


@cuda.jit(device=True)
def _nanmax(a, b):
    """max(a, b), NaN as soon as either is NaN."""
    if a != a:
        return a
    if not b <= a:
        return b
    return a


@cuda.jit(device=True)
def _block_reduce(sh, v, take_max):
    """Sum (or, with ``take_max``, NaN-propagating maximum) of ``v`` over the threads of
    the block: a fixed-order tree in ``sh``."""
    nt = cuda.blockDim.x * cuda.blockDim.y
    t = cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    sh[t] = v
    cuda.syncthreads()
    p = 1
    while p < nt:
        p *= 2
    half = p // 2
    while half > 0:
        if t < half and t + half < nt:
            if take_max:
                sh[t] = _nanmax(sh[t], sh[t + half])
            else:
                sh[t] += sh[t + half]
        cuda.syncthreads()
        half //= 2
    total = sh[0]
    cuda.syncthreads()
    return total


@cuda.jit(device=True)
def _block_sum(sh, v):
    return _block_reduce(sh, v, False)


@cuda.jit(device=True)
def _block_max(sh, v):
    return _block_reduce(sh, v, True)


# --- dtype-independent kernels -------------------------------------------------------
@cuda.jit
def _coefficients(upart, xpart, coef, size, s):
    """Sum the partial sums of U**2 and x**2; write the step coefficients (as the CPU
    backend's ``_coefficients``)."""
    sh = cuda.shared.array(TPB_MAX, float64)
    t = cuda.threadIdx.x
    us = 0.0
    xs = 0.0
    for q in range(t, upart.shape[0], cuda.blockDim.x):
        us += upart[q]
        xs += xpart[q]
    usum = _block_sum(sh, us)
    xsum = _block_sum(sh, xs)
    if t == 0:
        rho = s.rho
        alpha = rho
        if s.scale_parameter:
            alpha = _max(s.eps2, math.sqrt(np.float64(xsum) / size)) * rho
        denom = _max(1.0, math.sqrt(np.float64(usum) / size) / s.clip_threshold)
        coef[0] = 1.0 - s.weight_decay * alpha
        coef[1] = np.float64(alpha) / np.float64(denom)
        coef[2] = s.beta1
        coef[3] = 1.0 - s.beta1


@cuda.jit
def _max_abs_part(g, part):
    sh = cuda.shared.array(TPB_MAX, float64)
    t = cuda.threadIdx.x
    m = 0.0
    for i in range(cuda.blockIdx.x * cuda.blockDim.x + t, g.shape[0],
                   cuda.gridDim.x * cuda.blockDim.x):
        m = _nanmax(m, abs(np.float64(g[i])))
    m = _block_max(sh, m)
    if t == 0:
        part[cuda.blockIdx.x] = m


@cuda.jit
def _max_proj_part(x, g, lb, ub, part):
    # max |clip(x - g, lb, ub) - x|; NaN if a g_i is NaN, else inf if one is infinite
    # (the projection alone could clip it to a finite step), as ``_max_abs_part``.
    sh = cuda.shared.array(TPB_MAX, float64)
    t = cuda.threadIdx.x
    m = 0.0
    for i in range(cuda.blockIdx.x * cuda.blockDim.x + t, g.shape[0],
                   cuda.gridDim.x * cuda.blockDim.x):
        gi = np.float64(g[i])
        ag = abs(gi)
        if not ag < np.inf:  # NaN or inf
            m = _nanmax(m, ag)
        else:
            xi = np.float64(x[i])
            p = _min(_max(xi - gi, lb[i]), ub[i]) - xi
            m = _nanmax(m, abs(p))
    m = _block_max(sh, m)
    if t == 0:
        part[cuda.blockIdx.x] = m


@cuda.jit
def _max_final(part, out):
    sh = cuda.shared.array(TPB_MAX, float64)
    t = cuda.threadIdx.x
    m = 0.0
    for q in range(t, part.shape[0], cuda.blockDim.x):
        m = _nanmax(m, part[q])
    m = _block_max(sh, m)
    if t == 0:
        out[0] = m


@cuda.jit
def _clip_kernel(x, lb, ub):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = np.float64(x[i])
        if v < lb[i]:
            v = lb[i]
        if v > ub[i]:
            v = ub[i]
        x[i] = v


@cuda.jit
def _fill_kernel(a, value):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = value


@cuda.jit
def _copy3_kernel(src, dst):
    """dst[...] = src for 3-D arrays of one shape, any strides (converting the dtype)."""
    n1 = src.shape[1]
    n2 = src.shape[2]
    total = src.shape[0] * n1 * n2
    for k in range(cuda.grid(1), total, cuda.gridsize(1)):
        i0 = k // (n1 * n2)
        r = k - i0 * (n1 * n2)
        i1 = r // n2
        i2 = r - i1 * n2
        dst[i0, i1, i2] = src[i0, i1, i2]


# --- the step kernels, compiled per dtype -----------------------------------------------
def _make_kernels(F):
    """The step kernels for parameters of dtype ``F`` (np.float32 or np.float64).

    ``F(v)`` rounds to the parameter's dtype exactly where cpu.py's arithmetic does
    (there it follows from Numba's typing; here it is written out so that the
    simulator, which runs the kernels as NumPy scalar code, agrees with the GPU).

    Where a second moment is exactly zero (only with ``eps1 = 0``), U is 0, as on the
    CPU: ``a_i = 0`` where ``R_i = 0``, ``b_j = 0`` where ``C_j = 0``, ``U_i = 0`` where
    ``v_i = 0``. The zero case is tested first, not divided by (the simulator would
    warn on the division).
    """

    @cuda.jit
    def stats(g, rowpart, colpart, spans, strips, rps):
        # g (B, n, m); rowpart (spans, B, n) and colpart (strips, B, m), float64.
        # Block (span, strip, b) takes the column tiles span, span + spans, ... of the
        # rows [r0, r1) of matrix b: rowpart[span, b, i] sums row i over its tiles,
        # colpart[strip, b, j] column j over its rows (each entry has one writer).
        sbuf = cuda.shared.array(SBUF, float64)
        colacc = cuda.local.array(J, float64)
        n = g.shape[1]
        m = g.shape[2]
        lane = cuda.threadIdx.x
        w = cuda.threadIdx.y
        nl = cuda.blockDim.x
        nw = cuda.blockDim.y
        width = nl * J
        tiles = (m + width - 1) // width
        bid = cuda.blockIdx.x
        span = bid % spans
        rest = bid // spans
        strip = rest % strips
        b = rest // strips
        r0 = strip * rps
        r1 = r0 + rps
        if r1 > n:
            r1 = n
        for tile in range(span, tiles, spans):
            c0 = tile * width
            for k in range(J):
                colacc[k] = 0.0
            for base in range(r0, r1, nw * RB):
                # Warp w takes RB rows; lane l the columns c0 + k * nl + l (coalesced).
                for q in range(RB):
                    i = base + w * RB + q
                    p = 0.0
                    if i < r1:
                        for k in range(J):
                            j = c0 + k * nl + lane
                            if j < m:
                                v = np.float64(g[b, i, j])
                                v2 = v * v
                                colacc[k] += v2
                                p += v2
                    sbuf[(w * RB + q) * (nl + 1) + lane] = p
                cuda.syncthreads()
                for q in range(lane, RB, nl):  # one thread adds up the lanes of a row
                    i = base + w * RB + q
                    if i < r1:
                        o = (w * RB + q) * (nl + 1)
                        s = 0.0
                        for ln in range(nl):
                            s += sbuf[o + ln]
                        if tile == span:
                            rowpart[span, b, i] = s
                        else:
                            rowpart[span, b, i] += s
                cuda.syncthreads()
            # The warps' column sums of this tile, added up through shared memory.
            for k in range(J):
                sbuf[w * width + k * nl + lane] = colacc[k]
            cuda.syncthreads()
            for cc in range(w * nl + lane, width, nl * nw):
                j = c0 + cc
                if j < m:
                    s = 0.0
                    for ww in range(nw):
                        s += sbuf[ww * width + cc]
                    colpart[strip, b, j] = s
            cuda.syncthreads()

    @cuda.jit
    def rowcol(r, c, colf, rowpart, colpart, rpart, s):
        # One thread per row (updates R_i) or column (C_j and b_j) of one matrix;
        # rpart[b, chunk] gets the block's sum of the new R_i.
        sh = cuda.shared.array(TPB_MAX, float64)
        beta2 = s.beta2
        keep = 1.0 - beta2
        eps1 = s.eps1
        n = r.shape[1]
        m = c.shape[1]
        chunks = rpart.shape[1]
        b = cuda.blockIdx.x // chunks
        ch = cuda.blockIdx.x - b * chunks
        k = ch * cuda.blockDim.x + cuda.threadIdx.x
        rv = 0.0
        if k < n:
            acc = 0.0
            for q in range(rowpart.shape[0]):
                acc += rowpart[q, b, k]
            r[b, k] = beta2 * np.float64(r[b, k]) + keep * (acc / m + eps1)
            rv = np.float64(r[b, k])
        elif k < n + m:
            j = k - n
            acc = 0.0
            for q in range(colpart.shape[0]):
                acc += colpart[q, b, j]
            c[b, j] = beta2 * np.float64(c[b, j]) + keep * (acc / n + eps1)
            cj = np.float64(c[b, j])
            cf = 0.0
            if cj != 0:
                cf = 1.0 / np.float64(math.sqrt(cj))
            colf[b, j] = cf
        total = _block_sum(sh, rv)
        if cuda.threadIdx.x == 0:
            rpart[b, ch] = total

    @cuda.jit
    def rowfactor(r, rowf, rpart, chunks):
        sh = cuda.shared.array(1, float64)
        n = r.shape[1]
        b = cuda.blockIdx.x // chunks
        ch = cuda.blockIdx.x - b * chunks
        if cuda.threadIdx.x == 0:
            s = 0.0
            for q in range(rpart.shape[1]):
                s += rpart[b, q]
            sh[0] = s / n
        cuda.syncthreads()
        rmean = sh[0]
        i = ch * cuda.blockDim.x + cuda.threadIdx.x
        if i < n:
            ri = np.float64(r[b, i])
            rf = 0.0
            if ri != 0:
                rf = math.sqrt(rmean / ri)
            rowf[b, i] = rf

    @cuda.jit
    def usum(g, x, rowf, colf, upart, xpart, nch, s):
        # Warps take (row, column chunk) tasks, in reverse order; lanes take
        # consecutive columns.
        sh = cuda.shared.array(TPB_MAX, float64)
        nb = g.shape[0]
        n = g.shape[1]
        m = g.shape[2]
        nl = cuda.blockDim.x
        lane = cuda.threadIdx.x
        scale_parameter = s.scale_parameter
        us = 0.0
        xs = 0.0
        ntasks = nb * n * nch
        for k0 in range(cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y, ntasks,
                        cuda.gridDim.x * cuda.blockDim.y):
            # Last rows first: those that ``stats`` read last may still be in the L2
            # cache, and ``update`` then starts where this pass ends.
            task = ntasks - 1 - k0
            q = task // nch
            ch = task - q * nch
            b = q // n
            i = q - b * n
            a = rowf[b, i]
            for k in range(J):
                j = (ch * J + k) * nl + lane
                if j < m:
                    u = np.float64(F(F(g[b, i, j] * a) * colf[b, j]))
                    us += u * u
                    if scale_parameter:
                        xv = np.float64(x[b, i, j])
                        xs += xv * xv
        us = _block_sum(sh, us)
        xs = _block_sum(sh, xs)
        if cuda.threadIdx.x == 0 and cuda.threadIdx.y == 0:
            upart[cuda.blockIdx.x] = us
            xpart[cuda.blockIdx.x] = xs

    @cuda.jit
    def update(x, out, g, rowf, colf, mom, coef, nch, use_mom):
        nb = g.shape[0]
        n = g.shape[1]
        m = g.shape[2]
        nl = cuda.blockDim.x
        lane = cuda.threadIdx.x
        xkeep = coef[0]
        scale = coef[1]
        b1 = coef[2]
        b1c = coef[3]
        for task in range(cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y, nb * n * nch,
                          cuda.gridDim.x * cuda.blockDim.y):
            q = task // nch
            ch = task - q * nch
            b = q // n
            i = q - b * n
            a = rowf[b, i]
            for k in range(J):
                j = (ch * J + k) * nl + lane
                if j < m:
                    u = F(F(g[b, i, j] * a) * colf[b, j])
                    if use_mom:
                        mv = F(F(b1 * mom[b, i, j]) + F(b1c * F(scale * u)))
                        mom[b, i, j] = mv
                        out[b, i, j] = F(F(x[b, i, j] * xkeep) - mv)
                    else:
                        out[b, i, j] = F(F(x[b, i, j] * xkeep) - F(scale * u))

    @cuda.jit
    def second_moment(x, g, v, upart, xpart, s):
        # Unfactored pass 1: V, and partial sums of U**2 and x**2.
        sh = cuda.shared.array(TPB_MAX, float64)
        bet2 = F(s.beta2)  # rounded to the dtype, as the CPU backend's ``_scalars``
        keep = F(1.0 - s.beta2)
        e1 = F(s.eps1)
        scale_parameter = s.scale_parameter
        us = 0.0
        xs = 0.0
        for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
            gi = g[i]
            vi = F(F(bet2 * v[i]) + F(keep * F(F(gi * gi) + e1)))
            v[i] = vi
            u = 0.0
            if vi != 0:
                u = np.float64(F(gi / F(math.sqrt(vi))))
            us += u * u
            if scale_parameter:
                xi = np.float64(x[i])
                xs += xi * xi
        us = _block_sum(sh, us)
        xs = _block_sum(sh, xs)
        if cuda.threadIdx.x == 0:
            upart[cuda.blockIdx.x] = us
            xpart[cuda.blockIdx.x] = xs

    @cuda.jit
    def update_flat(x, out, g, v, mom, coef, use_mom):
        xkeep = coef[0]
        scale = coef[1]
        b1 = coef[2]
        b1c = coef[3]
        size = g.shape[0]
        for k in range(cuda.grid(1), size, cuda.gridsize(1)):
            i = size - 1 - k  # last elements first: second_moment read them last (L2)
            vi = v[i]
            u = F(0.0)
            if vi != 0:
                u = F(g[i] / F(math.sqrt(vi)))
            if use_mom:
                mv = F(F(b1 * mom[i]) + F(b1c * F(scale * u)))
                mom[i] = mv
                out[i] = F(F(x[i] * xkeep) - mv)
            else:
                out[i] = F(F(x[i] * xkeep) - F(scale * u))

    return dict(stats=stats, rowcol=rowcol, rowfactor=rowfactor, usum=usum, update=update,
                second_moment=second_moment, update_flat=update_flat)


_KERNELS = {}


def _kernels(dtype):
    dtype = np.dtype(dtype)
    ks = _KERNELS.get(dtype)
    if ks is None:
        ks = _KERNELS[dtype] = _make_kernels(dtype.type)
    return ks
