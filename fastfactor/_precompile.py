"""Compile the CPU kernels ahead of time: ``python -m fastfactor --precompile``.

For container images and clusters, where every fresh process would otherwise pay the
first compilation: one run fills Numba's on-disk cache (``NUMBA_CACHE_DIR``, or the
``__pycache__`` beside the package) with the kernels a solve of each float dtype uses,
factored (``ndim >= 2`` blocks) and unfactored (vectors), serial and, where this machine
would run them, parallel (blocks of ``FASTFACTOR_PARALLEL_MIN_BYTES`` or more), the
reductions of ``least_squares``, and the loops of ``numba.njit`` objectives and residuals
(``fastfactor._compiled``) without ``args``, and of ``curve_fit``'s ``numba.njit`` models
on 1-D float64 data.
"""

import time

import numpy as np

#: The dtypes precompiled by default.
DTYPES = ("float32", "float64")


def _solve(shape, dtype):
    """A tiny bounded and an unbounded minimize, with and without momentum: the
    two-phase step, the reductions and the projection, as a solve uses them."""
    from . import minimize

    target = np.linspace(-1.0, 1.0, int(np.prod(shape))).reshape(shape).astype(dtype)

    def fg(x):
        d = x - target
        return 0.5 * float(np.sum(d.astype(np.float64) ** 2)), d

    x0 = np.zeros(shape, dtype)
    for options in ({"maxiter": 3}, {"maxiter": 3, "beta1": 0.9}):
        minimize(fg, x0, jac=True, options=options)
        minimize(fg, x0, jac=True, bounds=[(-0.5, 0.5)] * x0.size, options=options)


def _compiled_loop(dtype):
    """The whole-solve loop of ``numba.njit`` objectives (``args=()``), which serves
    every objective of this dtype, matrices and vectors, bounded or not."""
    import numba

    from . import minimize

    @numba.njit
    def fg(x):
        return 0.5 * np.sum(x * x), x.copy()

    minimize(fg, np.ones((2, 2), dtype), jac=True, options={"maxiter": 2})


def _least_squares(dtype, compiled):
    """A tiny ``least_squares`` of Python residuals (its reductions, the kernels with
    float64 gradients) or of ``numba.njit`` ones (the loop of its Adafactor phase)."""
    from . import least_squares

    def res(x):
        return x - 1.0

    def jac(x):
        return np.eye(x.size)

    if compiled:
        import numba

        res, jac = numba.njit(res), numba.njit(jac)
    least_squares(res, np.zeros(3, dtype), jac, options={"maxiter": 2, "finish": False})


def _curve_fit(dtype):
    """A tiny ``curve_fit`` of a ``numba.njit`` model and Jacobian on 1-D data: the loop
    for its ``args`` (the data, float64; ``curve_fit`` fits in float64 only)."""
    import numba

    from . import curve_fit

    @numba.njit
    def line(x, a, b):
        return a * x + b

    @numba.njit
    def line_jac(x, a, b):
        J = np.empty((x.size, 2))
        J[:, 0] = x
        J[:, 1] = 1.0
        return J

    x = np.linspace(0.0, 1.0, 5)
    curve_fit(line, x, 2.0 * x + 1.0, p0=[1.0, 0.0], jac=line_jac, options={"maxiter": 2})


def _steps(shape, dtype):
    """One step of a block of ``shape`` (2-D: factored, 1-D: not) with and without
    momentum, in place (as ``Adafactor.step``) and into another array (as a solve): the
    apply kernels are compiled per variant."""
    from ._backends._protocol import FactoredState, UnfactoredState
    from ._backends.cpu import _step
    from ._hyper import Hyper

    g = np.full(shape, 0.5, dtype)
    for beta1 in (None, 0.9):
        s = Hyper(beta1=beta1).scalars(1)
        for inplace in (True, False):
            x = np.ones(shape, dtype)
            out = x if inplace else np.empty_like(x)
            mom = np.zeros(shape if beta1 else (0,) * len(shape), dtype)
            if len(shape) == 2:
                state = FactoredState(np.ones((1, shape[0]), dtype),
                                      np.ones((1, shape[1]), dtype), mom[None])
                _step.factored_step(x[None], out[None], g[None], state, s)
            else:
                _step.unfactored_step(x, out, g, UnfactoredState(np.ones(shape, dtype), mom),
                                      s)


def cache_folder():
    """Where the kernels are cached: Numba's ``NUMBA_CACHE_DIR``, or the ``__pycache__``
    folders beside the package; None when the disk cache is off or has no writable
    location (then a precompilation would keep nothing)."""
    import numba

    from ._backends.cpu import _jit
    from ._backends.cpu import _kernels as k

    if not _jit.CACHE:
        return None
    cache = getattr(k.factored_stats_serial, "_cache", None)
    path = getattr(cache, "cache_path", None)
    if path is None:
        return None
    return numba.config.CACHE_DIR or path


def precompile(dtypes=DTYPES, report=print):
    """Compile (or load from the cache) the kernels for ``dtypes`` (``"float32"``,
    ``"float64"``; repeats are done once); returns seconds. ValueError for another
    dtype name, and when the disk cache is off (nothing would be kept)."""
    import numba

    from ._backends.cpu._threads import PARALLEL_MIN_BYTES

    names = list(dict.fromkeys(dtypes))
    for name in names:
        if name not in DTYPES:
            raise ValueError(f"precompile takes float32 and float64, got {name!r}")
    if cache_folder() is None:
        raise ValueError("the kernels' disk cache is off (FASTFACTOR_NUMBA_CACHE=0, or no "
                         "writable cache folder): a precompilation would keep nothing; "
                         "unset FASTFACTOR_NUMBA_CACHE or set NUMBA_CACHE_DIR to a "
                         "writable folder")
    start = time.perf_counter()
    parallel = numba.config.NUMBA_NUM_THREADS > 1
    for name in names:
        dtype = np.dtype(name)
        for kind, shape in (("matrices", (8, 4)), ("vectors", (8,))):
            report(f"compiling the {name} kernels for {kind} ...")
            t0 = time.perf_counter()
            _solve(shape, dtype)
            _steps(shape, dtype)
            if parallel:  # rows of PARALLEL_MIN_BYTES in all, at least two rows
                rows = max(2, -(-PARALLEL_MIN_BYTES // (64 * dtype.itemsize)))
                _steps((rows, 64) if kind == "matrices" else (rows * 64,), dtype)
            report(f"compiled the {name} kernels for {kind} in "
                   f"{time.perf_counter() - t0:.1f} s")
        for what, compile_it in (
                ("solve loop for numba.njit objectives", _compiled_loop),
                ("least_squares reductions and kernels", lambda d: _least_squares(d, False)),
                ("least_squares loop for numba.njit residuals",
                 lambda d: _least_squares(d, True)),
                ("curve_fit loop for numba.njit models", _curve_fit)):
            if compile_it is _curve_fit and dtype != np.float64:
                continue
            report(f"compiling the {name} {what} ...")
            t0 = time.perf_counter()
            compile_it(dtype)
            report(f"compiled the {name} {what} in {time.perf_counter() - t0:.1f} s")
    return time.perf_counter() - start
