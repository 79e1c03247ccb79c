"""The whole solve in one compiled loop, for objectives compiled with ``numba.njit``.

When ``fun`` (and a callable ``jac``) are Numba CPU functions, ``fastfactor.minimize``
and ``fastfactor.adafactor`` run the driver's iteration as one Numba function
(``_loop.solve``) instead of Python calling the kernels: the same kernels, the same
order, the same iterates to the bit. What cannot run there runs in the Python loop,
with the same results (``fallback_reason`` says why):

- a ``callback``, an ``lr`` schedule given as a Python callable, finite differences
  (``jac`` None or a method name), ``device="cuda"``;
- a block of ``FASTFACTOR_PARALLEL_MIN_BYTES`` or more (whose steps use the parallel
  kernels; the loop's own cost is negligible there);
- ``args`` that Numba cannot type, or a ``fun`` / ``jac`` that does not compile for
  x0's type (Numba's error is then raised by the Python loop's first call).

The loop itself is compiled once per dtype, type of ``args`` and variant (bounds,
momentum) and cached on disk; the objective enters as a first-class function of a
fixed signature (``_objective``), so a new objective costs only its own compilation.

``_lsq`` and ``_lsq_loop`` do the same for the Adafactor phase of
``fastfactor.least_squares`` (compiled residuals and Jacobian, the linear loss).
"""

import time

import numba
import numpy as np
from numba.core.errors import NumbaError

from .._backends.cpu._jit import jit_signature
from .._backends.cpu._notice import announce_also
from .._backends.cpu._threads import PARALLEL_MIN_BYTES
from .._driver import Outcome
from .._interrupts import INTERRUPTED
from . import _loop
from ._objective import (
    INFO_SIZE,
    NFEV,
    NJEV,
    GradientShapeError,
    adapter,
    is_compiled,
    shape_message,
    signature,
)

#: Tests set this to False to run the Python loop on compiled objectives.
ENABLED = True

#: Each call of the loop runs about this long (from the rate of the calls before; the
#: first runs one iteration), so that Ctrl-C is seen within one evaluation or this.
CALL_SECONDS = 0.05
#: x of this many bytes or more keeps the Python loop: the loop's own cost is small
#: there, and large temporaries (the copies of x the objective receives, its own
#: arrays) come faster from NumPy's allocator than from compiled code's.
MAX_BYTES = 1 << 20

announce_also(_loop.solve, "the solve loop for numba.njit objectives")
INT64_MAX = 2 ** 63 - 1

_solvers = {}  # argument types -> the loop compiled for them
_adapters = {}  # (fun, jac, shape, dtype, args type) -> fg, the oldest dropped first
#: How many objectives' adapters are kept (each holds its compiled code).
ADAPTERS_KEPT = 64


def fallback_reason(fun, jac, callback, device, opt, x):
    """Why the run of ``opt`` (the stepper) from ``x`` cannot be compiled (a short
    phrase), or None when it can."""
    if not ENABLED:
        return "the compiled loop is turned off"
    fun, jac = _unwrapped(fun, jac)
    if not is_compiled(fun):
        return "fun is not a numba.njit function"
    if not (jac is True or is_compiled(jac)):
        return "jac is neither True nor a numba.njit function"
    if callback is not None:
        return "a callback is given"
    if device != "cpu":
        return "device is not the CPU"
    if callable(opt.hyper.lr):
        return "lr is a Python callable"
    if x.nbytes >= min(MAX_BYTES, PARALLEL_MIN_BYTES):
        return "x is large: the Python loop's own cost is small there"
    return None


def _unwrapped(fun, jac):
    """``(fun, jac)`` with SciPy's wrapper of a ``fun`` returning ``(f, g)`` undone:
    ``scipy.optimize.minimize(jac=True)`` hands a custom method ``MemoizeJac(fun)`` and
    its ``derivative``."""
    if type(fun).__name__ == "MemoizeJac" and getattr(jac, "__self__", None) is fun:
        return fun.fun, True
    return fun, jac


def objective(fun, jac, args, shape, dtype):
    """``(fg, args_type)`` of the user's compiled functions, or None when they do not
    compile for x's type (or ``args`` cannot be typed)."""
    fun, jac = _unwrapped(fun, jac)
    return cached_adapter(_adapters, adapter, fun, jac, args, shape, dtype)


def cached_adapter(cache, build, fun, jac, args, shape, dtype):
    """``(build(fun, jac, shape, dtype, args_type), args_type)``, kept in ``cache`` (the
    oldest of ``ADAPTERS_KEPT`` dropped first); None when ``args`` cannot be typed or
    the functions do not compile for x's type."""
    try:
        args_type = numba.typeof(args)
    except (ValueError, TypeError):
        return None
    key = (fun, jac, tuple(shape), np.dtype(dtype), args_type)
    built = cache.get(key)
    if built is None:
        try:
            built = build(fun, jac, shape, dtype, args_type)
        except NumbaError:
            return None
        if len(cache) >= ADAPTERS_KEPT:
            del cache[next(iter(cache))]
        cache[key] = built
    return built, args_type


def call_until_done(call, ist, nit_slot, status_slot, running):
    """``call(nit_stop)`` (one call of a compiled loop) until ``ist[status_slot]`` is no
    longer ``running``: the first call runs one iteration, each next one about
    ``CALL_SECONDS`` from the rate of the last, so that Ctrl-C is seen between calls.
    What a call raises propagates."""
    stop = 1
    while ist[status_slot] == running:
        nit0, start = int(ist[nit_slot]), time.perf_counter()
        call(stop)
        rate = (int(ist[nit_slot]) - nit0 + 1) / max(time.perf_counter() - start, 1e-9)
        stop = int(ist[nit_slot]) + max(1, int(rate * CALL_SECONDS))


def _tables(opt, layout, dtype, size):
    """The tables of the factored and of the flat blocks (``(0, 7)`` when none) and the
    state buffers of ``opt``'s blocks in the flat x."""
    rows = cols = 0
    tables = ([], [])
    for b, (ks, factored) in enumerate(zip(opt._kernel_shapes, opt.factored, strict=True)):
        if ks is None:  # an empty block
            continue
        line = [0] * 7
        line[_loop.OFF], line[_loop.SIZE] = layout.offsets[b], int(np.prod(ks))
        if factored:
            nb, n, m = ks
            line[_loop.NB], line[_loop.NR], line[_loop.NC] = nb, n, m
            line[_loop.ROFF], line[_loop.COFF] = rows, cols
            rows, cols = rows + nb * n, cols + nb * m
        tables[0 if factored else 1].append(line)
    ftable, utable = (np.array(t, np.int64).reshape(-1, 7) for t in tables)
    state = dict(row=np.zeros(rows, dtype), col=np.zeros(cols, dtype),
                 v=np.zeros(size if len(utable) else 0, dtype), rn=np.empty(rows, dtype),
                 cn=np.empty(cols, dtype), fsums=np.zeros((len(ftable), 2)),
                 usums=np.zeros((len(utable), 2)))
    return ftable, utable, state


def _solver(argtypes):
    found = _solvers.get(argtypes)
    if found is None:
        found = _solvers[argtypes] = jit_signature(_loop.solve, argtypes)
    return found


def drive(opt, layout, x, shape, fg, args_type, args, box, gtol, maxiter):
    """``fastfactor._driver.drive`` in the compiled loop: ``(Outcome, nfev, njev)``.

    ``x`` is the flat starting point (the run's own array, overwritten), ``shape`` the
    shape ``fun`` receives; ``box`` None or the flat float64 ``(lb, ub)``.
    """
    dtype = x.dtype
    ftable, utable, st = _tables(opt, layout, dtype, x.size)
    use_mom = opt.hyper.beta1 is not None
    mom = np.zeros(x.size if use_mom else 0, dtype)
    bounded = box is not None
    lb, ub = box if bounded else (np.zeros(0), np.zeros(0))
    ist = np.zeros(_loop.INFO + INFO_SIZE, np.int64)
    ist[_loop.STATUS] = _loop.RUNNING
    fst = np.zeros(2)
    xb, ga, gb = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    gtol = -np.inf if gtol is None else float(gtol)
    rest = (args, x, xb, ga, gb, bounded, lb, ub, use_mom, mom, st["row"], st["col"],
            st["v"], st["rn"], st["cn"], st["fsums"], st["usums"], ftable, utable,
            _loop.hyper_array(opt.hyper), gtol, min(int(maxiter), INT64_MAX), 0, ist, fst)
    _, fg_type = signature(dtype, args_type)
    solve = _solver((fg_type,) + tuple(numba.typeof(a) for a in rest))
    error = None
    try:
        call_until_done(lambda stop: solve(fg, *rest[:-3], stop, ist, fst), ist, _loop.NIT,
                        _loop.STATUS, _loop.RUNNING)
    except (KeyboardInterrupt, Exception) as exc:
        if isinstance(exc, GradientShapeError):  # the Python loop's error and message
            exc = ValueError(shape_message(ist[_loop.INFO:], shape))
            if ist[_loop.STARTED] == 0:
                raise exc from None
        if ist[_loop.STARTED] == 0:  # at x0: raised, as by the Python loop
            raise
        error = exc
    current = ist[_loop.CURRENT]
    xr, gr = (x, ga) if current == 0 else (xb, gb)
    status = INTERRUPTED if error is not None else int(ist[_loop.STATUS])
    out = Outcome(xr, float(fst[_loop.F]), gr, None, int(ist[_loop.NIT]), status, error)
    info = ist[_loop.INFO:]
    return out, int(info[NFEV]), int(info[NJEV])

