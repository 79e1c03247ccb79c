"""The driver's iteration (``fastfactor._driver.drive``) as one Numba function.

Evaluate, test, step, project: the same order, the same kernels (the CPU backend's
serial builds, one chunk per block) and the same arithmetic as the Python loop, so the
iterates are bit for bit those of ``drive`` calling the same compiled objective. The
objective arrives as a first-class function of a fixed signature
``fg(x, g, args) -> f`` (``x`` flat and only read, ``g`` flat and written), so
``solve`` is compiled once per dtype and type of ``args``, whatever the objective, and
cached on disk. Bounds, momentum and the kinds of blocks are run-time flags and tables
rather than types: one compilation (longer, once) serves every run of a dtype.

Everything a run keeps lives in the arrays passed in: the two iterate and gradient
buffers, the optimizer state, the pending statistics, and the counters ``ist`` and
values ``fst`` (slots below). A call runs until the run ends or ``nit`` reaches
``nit_stop``; the host calls again to go on (Ctrl-C is seen between calls), and reads
the last iterate reached from the slots when the objective raised.
"""

import math

import numpy as np
from numba.core import types

from .._backends.cpu import _kernels as k
from .._backends.cpu._jit import by_type, jit_inline
from .._driver import _MARGIN
from .._hyper import InverseSqrt, StepScalars

# ist slots; from INFO on, the objective's ``info`` (``_objective``: counts, a wrong
# gradient's shape)
STARTED, NIT, T, STATUS, CURRENT, PREPARED, INFO = range(7)
#: ``ist[STATUS]`` while the run goes on.
RUNNING = -1
# fst slots
F, GM = range(2)
# hyper slots (LR_INVSQRT: the c of an lr schedule ``c / sqrt(t)``, else 0)
LR, DECAY, EPS1, EPS2, CLIP, BETA1, WD, SCALE, WARMUP, LR_INVSQRT = range(10)
# block table columns (one table of the factored blocks, one of the flat ones): offset
# in x, size, B, n, m, and where a factored block's rows / columns start in the row /
# column statistics
OFF, SIZE, NB, NR, NC, ROFF, COFF = range(7)


def hyper_array(h):
    """A ``Hyper``'s per-step inputs as the float64 array ``scalars`` reads (slots
    above; an ``lr`` of None is NaN). ``h.lr`` must not be callable but for an
    ``InverseSqrt`` schedule."""
    invsqrt = h.lr.c if isinstance(h.lr, InverseSqrt) else 0.0
    lr = np.nan if h.lr is None or invsqrt else float(h.lr)
    return np.array([lr, h.decay_rate, h.eps1, h.eps2, h.clip_threshold,
                     0.0 if h.beta1 is None else h.beta1, h.weight_decay,
                     float(bool(h.scale_parameter)), float(bool(h.warmup_init)), invsqrt],
                    np.float64)


@jit_inline
def scalars(hyper, t):
    """``Hyper.scalars(t)``: the step's ``StepScalars``, computed as the host does."""
    beta2 = 1.0 - t ** hyper[DECAY]
    lr = hyper[LR]
    if hyper[LR_INVSQRT] > 0.0:
        rho = hyper[LR_INVSQRT] / math.sqrt(t)
    elif lr != lr:  # NaN: the relative step
        if hyper[WARMUP] != 0.0:
            rho = min(1e-6 * t, 1.0 / math.sqrt(t))
        else:
            rho = min(1e-2, 1.0 / math.sqrt(t))
    else:
        rho = lr
    return StepScalars(beta2, rho, hyper[EPS1], hyper[EPS2], hyper[CLIP], hyper[BETA1],
                       hyper[WD], hyper[SCALE] != 0.0)


@jit_inline
def _matrix(a, off, nb, n, m):
    return a[off:off + nb * n * m].reshape((nb, n, m))


@jit_inline
def _rows(a, off, nb, n):
    return a[off:off + nb * n].reshape((nb, n))


def _moment3(mom, off, nb, n, m):
    """A factored block's first moment as the apply kernel takes it; None without one."""
    raise NotImplementedError("compiled code only")


@by_type(_moment3, inline=True)
def _moment3_variant(mom, off, nb, n, m):
    if isinstance(mom, types.NoneType):
        return lambda mom, off, nb, n, m: None
    return lambda mom, off, nb, n, m: _matrix(mom, off, nb, n, m)


def _moment1(mom, off, size):
    """A flat block's first moment as the apply kernel takes it; None without one."""
    raise NotImplementedError("compiled code only")


@by_type(_moment1, inline=True)
def _moment1_variant(mom, off, size):
    if isinstance(mom, types.NoneType):
        return lambda mom, off, size: None
    return lambda mom, off, size: mom[off:off + size]


@jit_inline
def _prepare(x, g, ftable, utable, row, col, v, rn, cn, fsums, usums, s):
    """The statistics pass of every block at ``x`` (``Adafactor._prepare``): ``glow``,
    the largest lower bound of ``max|g|`` over the blocks, or -1.0 when a block refuses
    its gradient (not finite, or squares that overflow). Pending statistics go to
    ``rn``, ``cn`` and the sums. Blocks are independent: taking the factored ones first
    changes no result."""
    glow = 0.0
    for b in range(ftable.shape[0]):
        off, size = ftable[b, OFF], ftable[b, SIZE]
        nb, n, m = ftable[b, NB], ftable[b, NR], ftable[b, NC]
        ro, co = ftable[b, ROFF], ftable[b, COFF]
        gsum, xsum, usum = k.factored_stats_serial(
            _matrix(x, off, nb, n, m), _matrix(g, off, nb, n, m), _rows(row, ro, nb, n),
            _rows(col, co, nb, m), _rows(rn, ro, nb, n), _rows(cn, co, nb, m), s, 1)
        if not (math.isfinite(gsum) and math.isfinite(usum)):
            return -1.0
        fsums[b, 0] = usum
        fsums[b, 1] = xsum
        glow = max(glow, math.sqrt(gsum / size))
    for b in range(utable.shape[0]):
        off, size = utable[b, OFF], utable[b, SIZE]
        usum, xsum, g2max = k.unfactored_stats_serial(
            x[off:off + size], g[off:off + size], v[off:off + size], s, 1)
        if not math.isfinite(usum):
            return -1.0
        usums[b, 0] = usum
        usums[b, 1] = xsum
        glow = max(glow, math.sqrt(g2max))
    return glow


@jit_inline
def _commit(x, out, g, ftable, utable, row, col, v, mom, rn, cn, fsums, usums, s):
    """The update pass of every block from ``x`` into ``out`` (``Adafactor._commit``);
    ``mom`` None without a first moment."""
    for b in range(ftable.shape[0]):
        off = ftable[b, OFF]
        nb, n, m = ftable[b, NB], ftable[b, NR], ftable[b, NC]
        ro, co = ftable[b, ROFF], ftable[b, COFF]
        k.factored_apply_serial(
            _matrix(x, off, nb, n, m), _matrix(out, off, nb, n, m), _matrix(g, off, nb, n, m),
            _rows(row, ro, nb, n), _rows(col, co, nb, m), _rows(rn, ro, nb, n),
            _rows(cn, co, nb, m), _moment3(mom, off, nb, n, m), fsums[b, 0], fsums[b, 1],
            s, 1)
    for b in range(utable.shape[0]):
        off, size = utable[b, OFF], utable[b, SIZE]
        k.unfactored_apply_serial(
            x[off:off + size], out[off:off + size], g[off:off + size], v[off:off + size],
            _moment1(mom, off, size), usums[b, 0], usums[b, 1], s, 1)


@jit_inline
def _scan(at, grad, bounded, lb, ub, ftable, utable, row, col, v, rn, cn, fsums, usums, s,
          gtol):
    """``fastfactor._driver._scan``: ``(measure, prepared)`` of the gradient at ``at``.
    Without bounds the statistics pass of the next step (``s``) doubles as the finiteness
    check and the gradient test (``gtol`` -inf: no test); ``measure`` is NaN or inf
    when the gradient is not finite."""
    if bounded:
        return k._max_abs_projected(at, grad, lb, ub), False
    glow = _prepare(at, grad, ftable, utable, row, col, v, rn, cn, fsums, usums, s)
    prepared = glow >= 0.0
    if prepared and glow > gtol * (1 + _MARGIN):
        return glow, True
    return k._max_abs(grad), prepared


@jit_inline
def _clip(x, lb, ub):
    """``np.clip(x, lb, ub, out=x)``, element by element (the same rounding)."""
    for i in range(x.shape[0]):
        x[i] = min(max(x[i], lb[i]), ub[i])


def solve(fg, args, xa, xb, ga, gb, bounded, lb, ub, use_mom, mom, row, col, v, rn, cn,
          fsums, usums, ftable, utable, hyper, gtol, maxiter, nit_stop, ist, fst):
    """Run from the state in the arrays until the run ends or ``nit`` reaches
    ``nit_stop``. ``ist[CURRENT]`` says which of ``xa``/``xb`` (and ``ga``/``gb``)
    holds the iterate reached; ``gtol`` is -inf for no gradient test."""
    x, spare, g, gnew = xa, xb, ga, gb
    if ist[CURRENT] == 1:
        x, spare, g, gnew = xb, xa, gb, ga
    started = ist[STARTED] == 1
    while True:
        if started:
            if fst[GM] <= gtol:
                ist[STATUS] = 0
                return
            if ist[NIT] >= maxiter:
                ist[STATUS] = 1
                return
            if ist[NIT] >= nit_stop:
                return
            t = ist[T]
            s = scalars(hyper, t + 1)
            if ist[PREPARED] == 0:  # ``Adafactor._apply``: both passes here
                if _prepare(x, g, ftable, utable, row, col, v, rn, cn, fsums, usums, s) < 0:
                    ist[STATUS] = 2  # finite, but its squares overflow: no step
                    return
            if use_mom:
                _commit(x, spare, g, ftable, utable, row, col, v, mom, rn, cn, fsums, usums, s)
            else:
                _commit(x, spare, g, ftable, utable, row, col, v, None, rn, cn, fsums, usums,
                        s)
            ist[T] = t + 1
            if bounded:
                _clip(spare, lb, ub)
            at, grad = spare, gnew
        else:
            at, grad = x, g
        f = fg(at, grad, args, ist[INFO:])
        gm, prepared = _scan(at, grad, bounded, lb, ub, ftable, utable, row, col, v, rn, cn,
                             fsums, usums, scalars(hyper, ist[T] + 1), gtol)
        if not (math.isfinite(f) and math.isfinite(gm)):
            # after an update, it is discarded (nit counts those leading to x); at x0,
            # the run ends there, with its values
            ist[STATUS] = 2
            if not started:
                ist[STARTED] = 1
                fst[F] = f
            return
        if started:
            x, spare, g, gnew = spare, x, gnew, g
            ist[CURRENT] = 1 - ist[CURRENT]
            ist[NIT] += 1
        started = True
        ist[STARTED] = 1
        fst[F] = f
        fst[GM] = gm
        ist[PREPARED] = 1 if prepared else 0
