"""The minimizers' time per iteration of a full minimization loop.

``MinimizeOverhead``: the optimizer's own time per iteration. Problem: the 10-parameter
Rosenbrock function, objective and gradient from one Python call (``jac=True``:
``scipy.optimize.rosen`` and ``rosen_der``). Each method runs ``N1`` and then ``N2``
iterations from the same start (``gtol=0``, so only ``maxiter`` stops Adafactor); the
overhead per iteration is

    (T(N2) - T(N1) - (nfev(N2) - nfev(N1)) * t_objective) / (nit(N2) - nit(N1))

so that one-off start-up costs cancel, with ``t_objective`` the objective's own time
per call, measured in the same process on the same kind of input (a read-only
array). Best of 5 for every timing. Target for fastfactor: under 30 us per iteration.
L-BFGS-B (``ftol=gtol=0``) is beside it for comparison; it stops when its line search
can make no more progress, so it runs fewer iterations.

``LeastSquaresVsMinimize``: ``fastfactor.least_squares`` against ``fastfactor.minimize``
on one linear problem of 10 unknowns, residuals ``A @ x - b`` with ``A`` 30 x 10 (fixed
seed) and Jacobian ``A``; ``minimize`` gets ``(0.5 * r @ r, A.T @ r)`` (``jac=True``).
Both run with the same hyper-parameters (least_squares' defaults ``lr = 0.1 / sqrt(t)``,
``beta1 = 0.95``, ``eps2 = 0.1``; ``x0 = 0``, ``x_scale = 1``, so the two step the same
variables), ``gtol = 0`` (and ``xtol = 0``), for ``N1`` and ``N2`` iterations: the
seconds per iteration are ``(T(N2) - T(N1)) / (nit(N2) - nit(N1))``, objective included,
best of 5, the two methods timed alternately; and their ratio (least_squares / minimize:
the cost of the least-squares front end).

``LargeMinimizeOverhead``: ``fastfactor.minimize`` on 4e6 unknowns (one 2000 x 2000
float64 matrix; ``FASTFACTOR_BENCH_SIZE=smoke``: 24 x 40), objective
``G = d * X; f = 0.5 * vdot(X, G)`` (``d`` a fixed positive array; ``jac=True``),
``gtol = 0``. Its own time per iteration (as above, the objective's time subtracted) is
set against what an iteration cannot avoid beside the objective: one Adafactor step of
the same shape and one copy of x (``np.copyto``; ``fun`` receives a fresh copy of x, as
in SciPy), all timed in one process (best of 5). The ratio own / (step + copy) is 1.0
when the driver adds nothing else. ``track_extra_peak_memory``: tracemalloc's peak during
one run above what was allocated before it, in multiples of x's bytes (the objective's
``G`` counts: it is the gradient).
"""

import math
import time

import numpy as np

from ._common import extra_peak_tracemalloc, pick

N_PARAMS = 10
ITERS = pick((5, 25), (100, 1100))
LBFGSB_ITERS = pick((3, 10), (5, 30))


def _objective(x):
    from scipy.optimize import rosen, rosen_der
    return rosen(x), rosen_der(x)


def _x0():
    return np.tile([-1.2, 1.0], N_PARAMS // 2)


def _run(method, maxiter):
    """Seconds, nit and nfev of one minimization of ``maxiter`` iterations."""
    import scipy.optimize as so

    import fastfactor
    x0 = _x0()
    t0 = time.perf_counter()
    if method == "fastfactor.minimize":
        res = fastfactor.minimize(_objective, x0, jac=True,
                                  options={"maxiter": maxiter, "gtol": 0.0})
    elif method == "scipy-adafactor":
        res = so.minimize(_objective, x0, jac=True, method=fastfactor.adafactor,
                          options={"maxiter": maxiter, "gtol": 0.0})
    else:
        res = so.minimize(_objective, x0, jac=True, method="L-BFGS-B",
                          options={"maxiter": maxiter, "gtol": 0.0, "ftol": 0.0})
    return time.perf_counter() - t0, res.nit, res.nfev


def _objective_seconds(calls=2000, repeat=5):
    x = _x0()
    x.flags.writeable = False
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(calls):
            _objective(x)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


class MinimizeOverhead:
    params = (["fastfactor.minimize", "scipy-adafactor", "L-BFGS-B"],)
    param_names = ["method"]
    unit = "us per iteration"
    rounds = 1
    timeout = 300

    def setup(self, method):
        _run(method, 3)   # compile / load the kernels, import everything
        self.t_obj = _objective_seconds(calls=pick(50, 2000))

    def _best(self, method, maxiter):
        runs = [_run(method, maxiter) for _ in range(5)]
        t = min(r[0] for r in runs)
        return t, runs[0][1], runs[0][2]

    def track_overhead_per_iteration(self, method):
        n1, n2 = LBFGSB_ITERS if method == "L-BFGS-B" else ITERS
        t1, nit1, nfev1 = self._best(method, n1)
        t2, nit2, nfev2 = self._best(method, n2)
        if nit2 <= nit1:
            raise RuntimeError(f"{method} ran {nit2} iterations for maxiter={n2} "
                               f"and {nit1} for {n1}")
        own = (t2 - t1) - (nfev2 - nfev1) * self.t_obj
        return 1e6 * own / (nit2 - nit1)

    def track_objective_time(self, method):
        """The objective's own time per call (us), for reading the overhead against."""
        return 1e6 * self.t_obj


def _unit(unit):
    """Method decorator: asv's ``unit`` of one ``track_`` method."""
    def deco(f):
        f.unit = unit
        return f
    return deco


def _best_seconds(fn, calls=1, repeat=5):
    """Best over ``repeat`` runs of the mean time of ``calls`` calls of ``fn()``."""
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


# --- least_squares against minimize: the same linear problem, the same hyper-parameters --

LSQ_SHAPE = (30, 10)
LSQ_ITERS = pick((5, 25), (100, 1100))
LSQ_METHODS = ("least_squares", "minimize")


def _lsq_lr(t):
    return 0.1 / math.sqrt(t)


#: least_squares' own defaults, given to both.
LSQ_HYPER = {"lr": _lsq_lr, "beta1": 0.95, "eps2": 0.1}


def _linear_problem():
    rng = np.random.default_rng(1)
    return rng.standard_normal(LSQ_SHAPE), rng.standard_normal(LSQ_SHAPE[0])


def _run_linear(method, a, b, maxiter):
    """Seconds and nit of one run of ``maxiter`` iterations from x0 = 0."""
    import fastfactor
    x0 = np.zeros(LSQ_SHAPE[1])
    t0 = time.perf_counter()
    if method == "least_squares":  # the Adafactor phase alone: no trust-region finish
        res = fastfactor.least_squares(lambda x: a @ x - b, x0, jac=lambda x: a, xtol=0.0,
                                       gtol=0.0, x_scale=1.0,
                                       options=dict(LSQ_HYPER, maxiter=maxiter, finish=False))
    else:
        def fun(x):
            r = a @ x - b
            return 0.5 * (r @ r), a.T @ r
        res = fastfactor.minimize(fun, x0, jac=True,
                                  options=dict(LSQ_HYPER, maxiter=maxiter, gtol=0.0))
    return time.perf_counter() - t0, res.nit


class LeastSquaresVsMinimize:
    unit = "seconds per iteration"
    rounds = 1
    timeout = 300

    def setup_cache(self):
        a, b = _linear_problem()
        for method in LSQ_METHODS:
            _run_linear(method, a, b, 3)  # compile / load the kernels, import everything
        n1, n2 = LSQ_ITERS
        best = {(m, n): (math.inf, 0) for m in LSQ_METHODS for n in (n1, n2)}
        for _ in range(5):
            for m in LSQ_METHODS:
                for n in (n1, n2):
                    t, nit = _run_linear(m, a, b, n)
                    best[m, n] = (min(best[m, n][0], t), nit)
        per = {}
        for m in LSQ_METHODS:
            (t1, nit1), (t2, nit2) = best[m, n1], best[m, n2]
            if nit2 <= nit1:
                raise RuntimeError(f"{m} ran {nit2} iterations for maxiter={n2} "
                                   f"and {nit1} for {n1}")
            per[m] = (t2 - t1) / (nit2 - nit1)
        return per

    def track_least_squares_per_iteration(self, per):
        return per["least_squares"]

    def track_minimize_per_iteration(self, per):
        return per["minimize"]

    @_unit("least_squares / minimize")
    def track_ratio(self, per):
        """least_squares' time per iteration over minimize's."""
        return per["least_squares"] / per["minimize"]


# --- minimize on a large matrix: its own time against a step and a copy of x -------------

LARGE_SHAPE = pick((24, 40), (2000, 2000))
LARGE_ITERS = pick((2, 5), (3, 13))
LARGE_MEMORY_ITERS = 3


def _quadratic(d):
    def fun(x):
        g = d * x
        return 0.5 * np.vdot(x, g), g
    return fun


class LargeMinimizeOverhead:
    rounds = 1
    timeout = 600

    def setup_cache(self):
        import fastfactor
        rng = np.random.default_rng(2)
        d = rng.uniform(0.5, 2.0, LARGE_SHAPE)
        x0 = rng.standard_normal(LARGE_SHAPE)
        fun = _quadratic(d)

        def run(maxiter):
            t0 = time.perf_counter()
            res = fastfactor.minimize(fun, x0, jac=True, options={"maxiter": maxiter, "gtol": 0.0})
            return time.perf_counter() - t0, res.nit, res.nfev

        run(2)  # compile / load the kernels
        x = x0.copy()
        x.flags.writeable = False
        g = fun(x)[1]
        xs, dst = x0.copy(), np.empty_like(x0)
        opt = fastfactor.Adafactor(LARGE_SHAPE)  # minimize's defaults
        opt.step(xs, g)
        opt.step(xs, g)
        calls = pick(50, 1)
        n1, n2 = LARGE_ITERS
        best = {n1: (math.inf, 0, 0), n2: (math.inf, 0, 0)}  # (seconds, nit, nfev)
        t_obj = t_step = t_copy = math.inf
        for _ in range(5):  # the runs and the parts timed alternately
            for n in (n1, n2):
                r = run(n)
                if r[0] < best[n][0]:
                    best[n] = r
            t_obj = min(t_obj, _best_seconds(lambda: fun(x), calls, 1))
            t_step = min(t_step, _best_seconds(lambda: opt.step(xs, g), calls, 1))
            t_copy = min(t_copy, _best_seconds(lambda: np.copyto(dst, x), calls, 1))
        (t1, nit1, nfev1), (t2, nit2, nfev2) = best[n1], best[n2]
        if nit2 <= nit1:
            raise RuntimeError(f"minimize ran {nit2} iterations for maxiter={n2} "
                               f"and {nit1} for {n1}")
        own = ((t2 - t1) - (nfev2 - nfev1) * t_obj) / (nit2 - nit1)
        peak = extra_peak_tracemalloc(lambda: run(LARGE_MEMORY_ITERS))
        return {"own": own, "step": t_step, "copy": t_copy, "objective": t_obj,
                "memory": peak / x0.nbytes}

    @_unit("ms")
    def track_own_ms_per_iteration(self, r):
        """minimize's time per iteration less the objective's."""
        return 1e3 * r["own"]

    @_unit("ms")
    def track_step_ms(self, r):
        """One ``Adafactor.step`` of the same shape (in place)."""
        return 1e3 * r["step"]

    @_unit("ms")
    def track_copy_ms(self, r):
        """One ``np.copyto`` of x."""
        return 1e3 * r["copy"]

    @_unit("ms")
    def track_objective_ms(self, r):
        """One call of the objective, for reading the rest against."""
        return 1e3 * r["objective"]

    @_unit("ms")
    def track_excess_ms(self, r):
        """Own time per iteration less (step + copy): what the driver adds beyond them."""
        return 1e3 * (r["own"] - r["step"] - r["copy"])

    @_unit("own / (step + copy)")
    def track_own_over_step_plus_copy(self, r):
        return r["own"] / (r["step"] + r["copy"])

    @_unit("multiples of x's bytes")
    def track_extra_peak_memory(self, r):
        """Peak traced allocation of one run above that before it, in x's bytes."""
        return r["memory"]
