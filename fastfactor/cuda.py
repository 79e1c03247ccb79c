"""Numba CUDA kernels of one Adafactor step, and device-array helpers.

The same functions as in ``cpu.py`` (``factored_step``, ``unfactored_step``,
``max_abs``, ``max_abs_projected`` and the array helpers ``zeros``, ``empty_like``,
``to_host``, ``as_param``, ``as_grad``, ``reshaped_view``, ``shares_memory``,
``contiguous``, ``copy_into``, ``clip``), on Numba device arrays. Parameters may also
be any object exposing ``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA
tensors): they are viewed, not copied, and updated in place.

Not here: cpu.py's two-phase step (``*_stats`` / ``*_apply``), which refuses a
gradient holding a NaN or inf before anything changes. Deciding that on the host
would make every step wait for the GPU; the stepper uses the one-call steps when
those functions are absent, and a NaN or inf then propagates. ``minimize`` checks
every gradient on both devices.

This module is imported only when ``device="cuda"`` is asked for (it imports
``numba.cuda``). It works with the CUDA target built into ``numba`` and with the
maintained ``numba-cuda`` package alike, and in Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``), where the kernels run as Python threads.

A factored step of a ``(B, n, m)`` block is six kernel launches and no host
synchronisation; it reads ``g`` three times and ``x`` twice and writes ``x`` once:

1. ``stats``: row and column sums of ``g**2`` in one read of ``g``. A block owns a
   tile of ``LANES * J`` columns and a strip of rows; the threads of a warp take
   consecutive columns (coalesced loads), keep their column sums in registers and
   hand per-lane row sums to shared memory, where one thread per row adds them up.
   Each block writes its row sums (one per row and column tile) and its column sums
   (one per column and row strip), so no atomics are used and the result is
   deterministic.
2. ``rowcol``: R and C from those partial sums, ``b_j = 1/sqrt(C_j)``, and partial
   sums of R.
3. ``rowfactor``: ``mean(R)`` and ``a_i = sqrt(mean(R)/R_i)``.
4. ``usum``: partial sums of ``U_ij**2 = (g_ij a_i b_j)**2`` and of ``x**2``.
5. ``coefficients``: one block adds the partial sums up and computes the clipping
   and step-size scalars on the device.
6. ``update``: the element-wise update (and first moment), in place when ``out`` is ``x``.

An unfactored block is three launches (second moment with the sums, coefficients,
update). Every sum is accumulated in float64, in a fixed order; element-wise
arithmetic is done in the parameter's dtype, as in ``cpu.py`` (the GPU compiler may
fuse a multiply and an add into one FMA, a last-bit difference). The temporaries
(partial sums, factors) are O(n + m) for a given device, never of the order of
``n * m``; they are cached per shape, CUDA context and host thread.
"""

import math
import sys
import threading
from collections import OrderedDict

import numpy as np
from numba import cuda, float64

from ._blocks import FLOAT_DTYPES

#: True when running in Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1).
SIMULATOR = cuda.device_array.__module__.startswith("numba.cuda.simulator")

# --- launch geometry -------------------------------------------------------------------
#: Upper bounds, fixed at compile time (shared and local array sizes).
LANES_MAX = 32          # threads of a warp along the columns
WARPS_MAX = 8           # warps of a block
J = 8                   # columns per lane in a column tile (tile width LANES * J)
RB = 8                  # rows per warp between two row reductions in ``stats``
SPANS_MAX = 32          # column-tile groups in ``stats`` (bounds its row partial sums)
TPB_MAX = LANES_MAX * WARPS_MAX
SBUF = max(WARPS_MAX * RB * (LANES_MAX + 1), WARPS_MAX * LANES_MAX * J)

#: The geometry used (read at every launch, so tests may change it). On a GPU a
#: block is 32 x 8 threads; the simulator runs every thread as a Python thread, so
#: there blocks are 4 x 2 threads (the same code, smaller loops).
LANES = 4 if SIMULATOR else 32
WARPS = 2 if SIMULATOR else 8
#: Blocks to aim for in a grid (None: 16 per multiprocessor; 1 in the simulator,
#: where every block costs milliseconds; tests raise it to cover multi-block grids).
BLOCKS_TARGET = None


def _tpb():
    return LANES * WARPS


def _blocks_target():
    global BLOCKS_TARGET
    if BLOCKS_TARGET is None:
        if SIMULATOR:
            BLOCKS_TARGET = 1
        else:
            BLOCKS_TARGET = 16 * int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    return BLOCKS_TARGET


def _cdiv(a, b):
    return -(-a // b)


# --- availability ----------------------------------------------------------------------
_AVAILABLE = None


def require_device():
    """Raise RuntimeError unless a CUDA device (or the simulator) is usable."""
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            ok = bool(cuda.is_available())
        except Exception as exc:  # a broken driver installation
            ok, why = False, f"{type(exc).__name__}: {exc}"
        else:
            why = ""
            if not ok:
                err = getattr(cuda, "cuda_error", lambda: None)()
                why = " ".join(str(err).split()) if err else "no CUDA driver or GPU was found"
        _AVAILABLE = (ok, why)
    ok, why = _AVAILABLE
    if not ok:
        raise RuntimeError(
            f"device='cuda' needs a usable CUDA stack, but numba.cuda.is_available() is "
            f"False ({why}). Install the CUDA extra with pip install \"fastfactor[cuda]\" "
            "(numba-cuda with the CUDA 12 runtime wheels) on a machine with an NVIDIA GPU "
            "and driver; without a GPU, NUMBA_ENABLE_CUDASIM=1 (set before numba is "
            "imported) runs the kernels in Numba's CUDA simulator.")


# --- device functions ----------------------------------------------------------------
@cuda.jit(device=True)
def _block_sum(sh, v):
    """Sum of ``v`` over the threads of the block (a fixed-order tree in ``sh``)."""
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
            sh[t] += sh[t + half]
        cuda.syncthreads()
        half //= 2
    total = sh[0]
    cuda.syncthreads()
    return total


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
def _block_max(sh, v):
    """NaN-propagating maximum of ``v`` over the threads of the block."""
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
            sh[t] = _nanmax(sh[t], sh[t + half])
        cuda.syncthreads()
        half //= 2
    total = sh[0]
    cuda.syncthreads()
    return total


# --- dtype-independent kernels -------------------------------------------------------
@cuda.jit
def _coefficients(upart, xpart, coef, size, rho, eps2, clip, beta1, wd, scale_parameter):
    """Sum the partial sums of U**2 and x**2; write the step coefficients (as cpu.py)."""
    sh = cuda.shared.array(TPB_MAX, float64)
    t = cuda.threadIdx.x
    s = 0.0
    xs = 0.0
    for q in range(t, upart.shape[0], cuda.blockDim.x):
        s += upart[q]
        xs += xpart[q]
    usum = _block_sum(sh, s)
    xsum = _block_sum(sh, xs)
    if t == 0:
        alpha = rho
        if scale_parameter:
            alpha = _max(eps2, math.sqrt(np.float64(xsum) / size)) * rho
        denom = _max(1.0, math.sqrt(np.float64(usum) / size) / clip)
        coef[0] = 1.0 - wd * alpha
        coef[1] = np.float64(alpha) / np.float64(denom)
        coef[2] = beta1
        coef[3] = 1.0 - beta1


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
    sh = cuda.shared.array(TPB_MAX, float64)
    t = cuda.threadIdx.x
    m = 0.0
    for i in range(cuda.blockIdx.x * cuda.blockDim.x + t, g.shape[0],
                   cuda.gridDim.x * cuda.blockDim.x):
        gi = np.float64(g[i])
        if gi != gi:
            m = gi
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
                        for l in range(nl):
                            s += sbuf[o + l]
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
    def rowcol(r, c, colf, rowpart, colpart, rpart, beta2, keep, eps1):
        # One thread per row (updates R_i) or column (C_j and b_j) of one matrix;
        # rpart[b, chunk] gets the block's sum of the new R_i.
        sh = cuda.shared.array(TPB_MAX, float64)
        n = r.shape[1]
        m = c.shape[1]
        chunks = rpart.shape[1]
        b = cuda.blockIdx.x // chunks
        ch = cuda.blockIdx.x - b * chunks
        k = ch * cuda.blockDim.x + cuda.threadIdx.x
        rv = 0.0
        if k < n:
            s = 0.0
            for q in range(rowpart.shape[0]):
                s += rowpart[q, b, k]
            r[b, k] = beta2 * np.float64(r[b, k]) + keep * (s / m + eps1)
            rv = np.float64(r[b, k])
        elif k < n + m:
            j = k - n
            s = 0.0
            for q in range(colpart.shape[0]):
                s += colpart[q, b, j]
            c[b, j] = beta2 * np.float64(c[b, j]) + keep * (s / n + eps1)
            colf[b, j] = 1.0 / np.float64(math.sqrt(np.float64(c[b, j])))
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
            rowf[b, i] = math.sqrt(rmean / np.float64(r[b, i]))

    @cuda.jit
    def usum(g, x, rowf, colf, upart, xpart, nch, scale_parameter):
        # Warps take (row, column chunk) tasks, in reverse order; lanes take
        # consecutive columns.
        sh = cuda.shared.array(TPB_MAX, float64)
        nb = g.shape[0]
        n = g.shape[1]
        m = g.shape[2]
        nl = cuda.blockDim.x
        lane = cuda.threadIdx.x
        s = 0.0
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
                    s += u * u
                    if scale_parameter:
                        xv = np.float64(x[b, i, j])
                        xs += xv * xv
        s = _block_sum(sh, s)
        xs = _block_sum(sh, xs)
        if cuda.threadIdx.x == 0 and cuda.threadIdx.y == 0:
            upart[cuda.blockIdx.x] = s
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
    def second_moment(x, g, v, upart, xpart, bet2, keep, e1, scale_parameter):
        # Unfactored pass 1: V, and partial sums of U**2 and x**2.
        sh = cuda.shared.array(TPB_MAX, float64)
        s = 0.0
        xs = 0.0
        for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
            gi = g[i]
            vi = F(F(bet2 * v[i]) + F(keep * F(F(gi * gi) + e1)))
            v[i] = vi
            u = np.float64(F(gi / F(math.sqrt(vi))))
            s += u * u
            if scale_parameter:
                xi = np.float64(x[i])
                xs += xi * xi
        s = _block_sum(sh, s)
        xs = _block_sum(sh, xs)
        if cuda.threadIdx.x == 0:
            upart[cuda.blockIdx.x] = s
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
            u = F(g[i] / F(math.sqrt(v[i])))
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


# --- workspaces ------------------------------------------------------------------------
_LOCAL = threading.local()
_WORKSPACES_KEPT = 32


def _context_key():
    """The current CUDA context (workspaces belong to one)."""
    if SIMULATOR:
        return 0
    ctx = cuda.current_context()
    h = getattr(ctx, "handle", None)
    v = getattr(h, "value", None)  # ctypes handle
    if v is None:
        try:
            v = int(h)  # cuda-python handle
        except (TypeError, ValueError):
            v = id(ctx)
    return v


def _workspace(key, make):
    """Device arrays for ``key`` (per thread and context), made by ``make()`` once."""
    cache = getattr(_LOCAL, "cache", None)
    if cache is None:
        cache = _LOCAL.cache = OrderedDict()
    key = (_context_key(),) + key
    ws = cache.get(key)
    if ws is None:
        ws = cache[key] = make()
        while len(cache) > _WORKSPACES_KEPT:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return ws


def _device(shape, dtype):
    return cuda.device_array(shape, np.dtype(dtype))


# --- the steps -------------------------------------------------------------------------
def _factored_plan(nb, n, m):
    """Grid sizes: ``spans`` (groups of column tiles, at most SPANS_MAX) times ``strips``
    (groups of ``rps`` rows) times the batch for ``stats``; ``ublocks`` for the
    element-wise passes. The partial sums take ``spans * B * n`` and ``strips * B * m``
    float64 numbers, where ``spans * strips * B`` is about BLOCKS_TARGET: O(n + m) for a
    given device, never of the order of ``n * m``."""
    lanes, warps = LANES, WARPS
    target = _blocks_target()
    spans = min(_cdiv(m, lanes * J), SPANS_MAX)
    strips = max(1, min(_cdiv(n, warps * RB), _cdiv(target, spans * nb)))
    rps = _cdiv(n, strips)
    strips = _cdiv(n, rps)
    chunks = _cdiv(n + m, lanes * warps)
    rchunks = _cdiv(n, lanes * warps)
    nch = _cdiv(m, lanes * J)
    tasks = nb * n * nch
    ublocks = max(1, min(target, _cdiv(tasks, warps)))
    return spans, strips, rps, chunks, rchunks, nch, ublocks


def factored_step(x, out, g, r, c, mom, beta2, rho, eps1, eps2, clip, beta1, wd,
                  scale_parameter):
    """One factored step of a ``(B, n, m)`` block of device arrays; ``out`` may be ``x``.

    ``r`` ``(B, n)`` and ``c`` ``(B, m)`` are updated in place, and so is ``mom`` (the
    first moment, ``(B, n, m)``) unless it is empty (no ``beta1``). Asynchronous: no
    host synchronisation.
    """
    nb, n, m = g.shape
    dt = np.dtype(r.dtype)
    ks = _kernels(dt)
    lanes, warps = LANES, WARPS
    tpb = lanes * warps
    spans, strips, rps, chunks, rchunks, nch, ublocks = _factored_plan(nb, n, m)

    def make():
        return dict(rowpart=_device((spans, nb, n), np.float64),
                    colpart=_device((strips, nb, m), np.float64),
                    rpart=_device((nb, chunks), np.float64),
                    rowf=_device((nb, n), dt), colf=_device((nb, m), dt),
                    upart=_device(ublocks, np.float64), xpart=_device(ublocks, np.float64),
                    coef=_device(4, dt))

    w = _workspace(("factored", nb, n, m, dt.str, lanes, warps, ublocks, strips), make)
    beta2 = float(beta2)
    ks["stats"][spans * strips * nb, (lanes, warps)](g, w["rowpart"], w["colpart"], spans,
                                                      strips, rps)
    ks["rowcol"][nb * chunks, tpb](r, c, w["colf"], w["rowpart"], w["colpart"], w["rpart"],
                                   beta2, 1.0 - beta2, float(eps1))
    ks["rowfactor"][nb * rchunks, tpb](r, w["rowf"], w["rpart"], rchunks)
    ks["usum"][ublocks, (lanes, warps)](g, x, w["rowf"], w["colf"], w["upart"], w["xpart"],
                                        nch, bool(scale_parameter))
    _coefficients[1, tpb](w["upart"], w["xpart"], w["coef"], nb * n * m, float(rho),
                          float(eps2), float(clip), float(beta1), float(wd),
                          bool(scale_parameter))
    ks["update"][ublocks, (lanes, warps)](x, out, g, w["rowf"], w["colf"], mom, w["coef"],
                                          nch, mom.size > 0)


def unfactored_step(x, out, g, v, mom, beta2, rho, eps1, eps2, clip, beta1, wd,
                    scale_parameter):
    """One step of a flat device block with full second moment ``v``; ``out`` may be ``x``."""
    size = g.shape[0]
    dt = np.dtype(v.dtype)
    ks = _kernels(dt)
    tpb = _tpb()
    blocks = max(1, min(_blocks_target(), _cdiv(size, tpb)))

    def make():
        return dict(upart=_device(blocks, np.float64), xpart=_device(blocks, np.float64),
                    coef=_device(4, dt))

    w = _workspace(("unfactored", blocks, dt.str), make)
    cast = dt.type
    ks["second_moment"][blocks, tpb](x, g, v, w["upart"], w["xpart"], cast(beta2),
                                     cast((1.0 - beta2) * 1.0), cast(eps1),
                                     bool(scale_parameter))
    _coefficients[1, tpb](w["upart"], w["xpart"], w["coef"], size, float(rho), float(eps2),
                          float(clip), float(beta1), float(wd), bool(scale_parameter))
    ks["update_flat"][blocks, tpb](x, out, g, v, mom, w["coef"], mom.size > 0)


def _max_reduce(kernel, first, args):
    tpb = _tpb()
    blocks = max(1, min(_blocks_target(), _cdiv(first.shape[0], tpb)))
    w = _workspace(("max", blocks), lambda: dict(part=_device(blocks, np.float64),
                                                 out=_device(1, np.float64)))
    if blocks == 1:  # the block's maximum is the result
        kernel[1, tpb](*args, w["out"])
    else:
        kernel[blocks, tpb](*args, w["part"])
        _max_final[1, tpb](w["part"], w["out"])
    return float(w["out"].copy_to_host()[0])


def max_abs(g):
    """The largest magnitude in device array ``g`` (NaN or inf when ``g`` holds one)."""
    g = _flat(_view(g))
    if g.shape[0] == 0:
        return 0.0
    return _max_reduce(_max_abs_part, g, (g,))


def max_abs_projected(x, g, lb, ub):
    """The largest magnitude of the projected gradient step within ``[lb, ub]``.

    ``lb`` and ``ub`` are float64 device arrays (see :func:`to_device`).
    """
    x = _flat(_view(x))
    g = _flat(_view(g))
    if g.shape[0] == 0:
        return 0.0
    return _max_reduce(_max_proj_part, g, (x, g, _on_device(lb), _on_device(ub)))


def clip(x, lb, ub):
    """Project the flat device array ``x`` onto ``[lb, ub]`` in place."""
    if x.shape[0] == 0:
        return
    tpb = _tpb()
    blocks = max(1, min(_blocks_target(), _cdiv(x.shape[0], tpb)))
    _clip_kernel[blocks, tpb](x, _on_device(lb), _on_device(ub))


# --- device arrays: views, copies, strides ---------------------------------------------
if SIMULATOR:
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as _SimArray

    def _strided(a, shape, strides):
        """A view of device array ``a``'s memory (element 0 first) with new shape/strides."""
        return _SimArray(np.lib.stride_tricks.as_strided(a._ary, tuple(shape), tuple(strides)))

    class _HostInterface:
        def __init__(self, desc, owner):
            self.__array_interface__ = dict(desc, version=3)
            self.owner = owner

    def _address(a):
        return a._ary.__array_interface__["data"][0]

    def _from_interface(obj):
        # The simulator's "device memory" is host memory: a __cuda_array_interface__
        # pointer is a host pointer, viewed here through the NumPy array interface.
        desc = obj.__cuda_array_interface__
        keep = {k: desc[k] for k in ("shape", "typestr", "data", "strides") if k in desc}
        return _SimArray(np.asarray(_HostInterface(keep, obj)))
else:
    from numba.cuda.cudadrv.devicearray import DeviceNDArray as _DeviceNDArray

    def _strided(a, shape, strides):
        """A view of device array ``a``'s memory (element 0 first) with new shape/strides."""
        return _DeviceNDArray(tuple(shape), tuple(strides), a.dtype, stream=a.stream,
                              gpu_data=a.gpu_data)

    def _address(a):
        return a.device_ctypes_pointer.value or 0

    def _from_interface(obj):
        desc = obj.__cuda_array_interface__
        # Work on Numba's default stream is ordered after the legacy (1) and
        # per-thread (2) default streams; any other stream is synchronised first.
        sync = desc.get("stream") not in (None, 1, 2)
        return cuda.from_cuda_array_interface(desc, owner=obj, sync=sync)


def _extent(a):
    """The byte range ``[lo, hi)`` that device array ``a`` (size > 0) spans."""
    lo = hi = _address(a)
    for d, st in zip(a.shape, a.strides):
        if st >= 0:
            hi += (d - 1) * st
        else:
            lo += (d - 1) * st
    return lo, hi + a.dtype.itemsize


def is_device_array(a):
    """True for Numba device arrays and objects exposing ``__cuda_array_interface__``."""
    return bool(getattr(a, "__cuda_ndarray__", False)) or hasattr(a, "__cuda_array_interface__")


def _view(a):
    """``a`` as a Numba device array of the same memory (TypeError if not on the device)."""
    if getattr(a, "__cuda_ndarray__", False):
        return a
    if hasattr(a, "__cuda_array_interface__"):
        desc = a.__cuda_array_interface__
        if desc.get("mask") is not None:
            raise TypeError("masked device arrays are not supported")
        return _from_interface(a)
    raise TypeError(f"expected a device array (a Numba device array or an object with "
                    f"__cuda_array_interface__), got {type(a).__name__}")


def _readonly(a):
    desc = getattr(a, "__cuda_array_interface__", None)
    return bool(desc is not None and desc["data"][1])


def _c_strides(shape, itemsize):
    strides = []
    s = itemsize
    for d in reversed(shape):
        strides.append(s)
        s *= max(d, 1)
    return tuple(reversed(strides))


def _is_c_contiguous(a):
    return a.size == 0 or _collapse(a.shape, [a.strides], a.dtype.itemsize)[1][0] == (a.dtype.itemsize,)


def _nocopy_strides(shape, strides, newshape, itemsize):
    """Strides for viewing (shape, strides) as ``newshape`` without a copy, or None.

    NumPy's rule: each group of old axes that maps onto a group of new axes must be
    contiguous among itself (in C order).
    """
    if math.prod(shape) != math.prod(newshape):
        raise ValueError(f"cannot reshape {tuple(shape)} into {tuple(newshape)}")
    if math.prod(shape) == 0:
        return _c_strides(newshape, itemsize)
    old = [(d, s) for d, s in zip(shape, strides) if d != 1]
    od = [d for d, _ in old]
    os_ = [s for _, s in old]
    new = list(newshape)
    out = [0] * len(new)
    oi = ni = 0
    while ni < len(new) and oi < len(od):
        npr, opr = new[ni], od[oi]
        nj, oj = ni + 1, oi + 1
        while npr != opr:
            if npr < opr:
                npr *= new[nj]
                nj += 1
            else:
                opr *= od[oj]
                oj += 1
        for ok in range(oi, oj - 1):
            if os_[ok] != od[ok + 1] * os_[ok + 1]:
                return None
        out[nj - 1] = os_[oj - 1]
        for nk in range(nj - 1, ni, -1):
            out[nk - 1] = out[nk] * new[nk]
        ni, oi = nj, oj
    last = out[ni - 1] if ni > 0 else itemsize
    for nk in range(ni, len(new)):
        out[nk] = last
    return tuple(out)


def _collapse(shape, stride_lists, itemsize):
    """Drop unit axes and merge adjacent axes that are contiguous in every stride list."""
    axes = [k for k, d in enumerate(shape) if d != 1]
    if not axes:
        return (1,), [(itemsize,) for _ in stride_lists]
    dims = [shape[axes[0]]]
    strides = [[st[axes[0]]] for st in stride_lists]
    for k in axes[1:]:
        d = shape[k]
        if all(s[-1] == st[k] * d for s, st in zip(strides, stride_lists)):
            dims[-1] *= d
            for s, st in zip(strides, stride_lists):
                s[-1] = st[k]
        else:
            dims.append(d)
            for s, st in zip(strides, stride_lists):
                s.append(st[k])
    return tuple(dims), [tuple(s) for s in strides]


def _linear(a):
    """The 1-D view of a C-contiguous device array."""
    return a if a.ndim == 1 else _strided(a, (a.size,), (a.dtype.itemsize,))


def _flat(a):
    """A 1-D view of ``a``, or a contiguous 1-D copy when no view exists."""
    if a.ndim == 1:
        return a
    v = reshaped_view(a, (a.size,))
    return v if v is not None else contiguous(a, (a.size,))


def _copy(src, dst):
    """dst[...] = src on the device (same shape; any strides; dtype converted)."""
    if src.size == 0:
        return
    if src.dtype == dst.dtype and _is_c_contiguous(src) and _is_c_contiguous(dst):
        _linear(dst).copy_to_device(_linear(src))  # one device-to-device copy
        return
    shape, (ss, ds) = _collapse(src.shape, [src.strides, dst.strides], src.dtype.itemsize)
    if len(shape) > 3:  # rare: copy sub-arrays along the first axis
        s3 = _strided(src, shape, ss)
        d3 = _strided(dst, shape, ds)
        for i in range(shape[0]):
            _copy(s3[i], d3[i])
        return
    pad = 3 - len(shape)
    shape3 = (1,) * pad + shape
    s3 = _strided(src, shape3, (0,) * pad + ss)
    d3 = _strided(dst, shape3, (0,) * pad + ds)
    tpb = _tpb()
    blocks = max(1, min(_blocks_target(), _cdiv(src.size, tpb)))
    _copy3_kernel[blocks, tpb](s3, d3)


def _check_strides(a, what, writes=False):
    if a.size == 0:
        return
    if any(s < 0 for s, d in zip(a.strides, a.shape) if d > 1):
        raise ValueError(f"{what}: device arrays with negative strides are not supported; "
                         "pass a copy")
    if writes and any(s == 0 for s, d in zip(a.strides, a.shape) if d > 1):
        raise ValueError(f"{what}: the array has overlapping elements (a zero stride); "
                         "the step updates parameters in place")


def _on_device(a):
    """A host array moved to the device (contiguous), a device array as it is."""
    if is_device_array(a):
        return _view(a)
    return cuda.to_device(np.ascontiguousarray(a))


def to_device(a):
    """A device copy of host array ``a`` (C-contiguous)."""
    return cuda.to_device(np.ascontiguousarray(a))


def zeros(shape, dtype):
    a = cuda.device_array(shape, np.dtype(dtype))
    if a.size:
        flat = _linear(a)
        tpb = _tpb()
        _fill_kernel[max(1, min(_blocks_target(), _cdiv(a.size, tpb))), tpb](flat, 0)
    return a


def empty_like(a):
    return cuda.device_array(a.shape, a.dtype)


def to_host(a):
    """A NumPy copy of device array ``a``."""
    a = _view(a)
    if not _is_c_contiguous(a):
        a = contiguous(a, a.shape)
    if a.size == 0:
        return np.empty(a.shape, a.dtype)
    return a.copy_to_host()


def as_param(p, shape):
    """``p`` checked as a parameter block of ``shape``: a Numba view of its device memory."""
    if isinstance(p, np.ndarray) or not is_device_array(p):
        raise TypeError(
            f"with device='cuda', parameters must be device arrays (updated in place): Numba "
            f"device arrays or objects with __cuda_array_interface__ (CuPy arrays, PyTorch "
            f"CUDA tensors), got {type(p).__name__}; move a NumPy array with "
            f"numba.cuda.to_device")
    if _readonly(p):
        raise ValueError("a parameter array is read-only; the step updates parameters in place")
    d = _view(p)
    if tuple(d.shape) != tuple(shape):
        raise ValueError(f"parameter of shape {tuple(d.shape)} does not match the block shape {shape}")
    if np.dtype(d.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"parameters must be float32 or float64, got {d.dtype}")
    _check_strides(d, "parameter", writes=True)
    return d


def as_grad(g, shape, dtype):
    """``g`` (host or device) as a C-contiguous device array of ``shape`` in ``dtype``.

    A device gradient already in that form is used as it is; others are converted on
    the device; a host gradient is copied to the device.
    """
    dtype = np.dtype(dtype)
    if is_device_array(g):
        d = _view(g)
        if tuple(d.shape) != tuple(shape):
            raise ValueError(f"gradient of shape {tuple(d.shape)} does not match the block shape {shape}")
        if np.dtype(d.dtype).kind not in "biuf":
            raise TypeError(f"gradients must be real numbers, got dtype {d.dtype}")
        _check_strides(d, "gradient")
        if d.dtype == dtype and _is_c_contiguous(d):
            return d
        out = cuda.device_array(d.shape, dtype)
        _copy(d, out)
        return out
    h = np.asarray(g)
    if h.shape != tuple(shape):
        raise ValueError(f"gradient of shape {h.shape} does not match the block shape {shape}")
    if h.dtype.kind not in "biuf":
        raise TypeError(f"gradients must be real numbers, got dtype {h.dtype}")
    return cuda.to_device(np.ascontiguousarray(h, dtype=dtype))


def reshaped_view(a, shape):
    """``a`` reshaped to ``shape`` as a view of the same memory, or None if that needs a copy."""
    shape = tuple(shape)
    if tuple(a.shape) == shape:
        return a
    strides = _nocopy_strides(tuple(a.shape), tuple(a.strides), shape, a.dtype.itemsize)
    if strides is None:
        return None
    if a.size == 0:
        return cuda.device_array(shape, a.dtype)
    return _strided(a, shape, strides)


def shares_memory(a, b):
    """Whether device arrays ``a`` and ``b`` may share memory (their byte ranges overlap)."""
    a, b = _view(a), _view(b)
    if a.size == 0 or b.size == 0:
        return False
    (alo, ahi), (blo, bhi) = _extent(a), _extent(b)
    return alo < bhi and blo < ahi


def contiguous(a, shape):
    """A C-contiguous device copy of ``a`` in ``shape``."""
    out = cuda.device_array(tuple(a.shape), a.dtype)
    _copy(a, out)
    return out.reshape(tuple(shape))


def copy_into(dst, src):
    """``dst[...] = src`` (same number of elements; ``src`` on the host or the device)."""
    if dst.size == 0:
        return
    if not is_device_array(src):
        h = np.ascontiguousarray(np.asarray(src), dtype=dst.dtype).reshape(tuple(dst.shape))
        if _is_c_contiguous(dst):
            _linear(dst).copy_to_device(h.reshape(h.size))
            return
        src = cuda.to_device(h)
    src = _view(src)
    s = reshaped_view(src, tuple(dst.shape))
    if s is None:
        s = contiguous(src, tuple(dst.shape))
    _copy(s, dst)


# --- minimize support (used by _minimize / _objective with device="cuda") ---------------
def as_x0(x0, host_as_x0):
    """x0 as a new C-contiguous float device array (a device x0 is copied on the device).

    ``host_as_x0`` is the host rule (fastfactor._options.as_x0) applied to a host x0.
    """
    if not is_device_array(x0):
        return to_device(host_as_x0(x0))
    d = _view(x0)
    dt = np.dtype(d.dtype)
    if dt.kind in "biu":
        dt = np.dtype(np.float64)
    elif dt.kind == "f":
        if dt not in FLOAT_DTYPES:
            dt = np.dtype(np.float64)
    else:
        raise TypeError(f"x0 must be an array of real numbers, got dtype {d.dtype}")
    _check_strides(d, "x0")
    out = cuda.device_array(tuple(d.shape), dt)
    _copy(d, out)
    if not math.isfinite(max_abs(out)):
        raise ValueError("x0 contains NaN or inf; start from finite values")
    return out


def grad_into(out, g, shape, dtype):
    """Copy the user's gradient ``g`` (host or device, of ``shape``) into the flat ``out``."""
    if is_device_array(g):
        d = _view(g)
        if tuple(d.shape) != tuple(shape):
            raise ValueError(f"the gradient has shape {tuple(d.shape)}, expected {tuple(shape)} (the shape of x)")
        if np.dtype(d.dtype).kind not in "biuf":
            raise TypeError(f"the gradient must be real, got dtype {d.dtype}")
        _check_strides(d, "gradient")
        copy_into(out, d)
        return out
    h = np.asarray(g)
    if h.shape != tuple(shape):
        raise ValueError(f"the gradient has shape {h.shape}, expected {tuple(shape)} (the shape of x)")
    if h.dtype.kind not in "biuf":
        raise TypeError(f"the gradient must be real, got dtype {h.dtype}")
    copy_into(out, h)
    return out


def scalar_to_host(f):
    """A device scalar (0-d or 1-element device array) as a NumPy array; others unchanged."""
    if is_device_array(f):
        return to_host(_view(f))
    return f


class ArrayKind:
    """How the iterate is shown to the user: ``wrap`` (a view, for fun and jac) and
    ``export`` (a copy, for the result and callbacks), following x0's kind.

    NumPy x0: Numba device views, NumPy copies. Numba device x0: Numba device arrays.
    CuPy x0: CuPy arrays. PyTorch x0: CUDA tensors. Other ``__cuda_array_interface__``
    objects: Numba device arrays.
    """

    def __init__(self, x0):
        self.host = not is_device_array(x0)
        self.name = "numba"
        root = type(x0).__module__.split(".")[0]
        if not self.host and not getattr(x0, "__cuda_ndarray__", False):
            if root == "cupy" and "cupy" in sys.modules:
                self.name = "cupy"
                self._lib = sys.modules["cupy"]
            elif root == "torch" and "torch" in sys.modules:
                self.name = "torch"
                self._lib = sys.modules["torch"]
                self._device = x0.device

    def wrap(self, d):
        if self.name == "cupy":
            return self._lib.asarray(d)
        if self.name == "torch":
            return self._lib.as_tensor(d, device=self._device)
        return d

    def export(self, d):
        if self.host:
            return to_host(d)
        return self.wrap(contiguous(d, tuple(d.shape)))
