"""The compiled loop for ``numba.njit`` objectives beside the Python loop.

``OwnTime``: ``fastfactor.minimize`` on the 10-D Rosenbrock function written with
``numba.njit`` (``jac=True``), from ``(-1.2, 1, ...)``, ``gtol=0`` so that every run
takes its ``maxiter``; ``loop`` is ``compiled`` (the default for such objectives) or
``python`` (the same compiled objective called from the Python loop). Per iteration:
``track_total_us`` (the difference of a long and a short run, over their iteration
difference: no set-up), ``track_objective_us`` (the objective alone, called from a
compiled loop with the copy of x the solver hands it) and ``track_own_us`` (the first
minus the second: the optimizer's own time). ``track_speedup``: the Python loop's own
time over the compiled loop's, measured in the same run.

``LsqOwnTime``: the same for the Adafactor phase of ``fastfactor.least_squares`` on 20
compiled residuals of 10 parameters (``numba.njit`` residuals and Jacobian), run to its
``maxiter`` (no gtol, xtol or hand-over, a fixed step ``lr=1e-4``; no finish).

``CurveFit``: a whole fit with compiled residuals and Jacobian, the exponential decay
of ``bench_lsq`` (200 points, 3 parameters), beside ``scipy.optimize.least_squares``
(``trf``, its defaults) on the same compiled functions: ``track_ms`` (the median of
interleaved runs in one process) and ``track_ratio_to_scipy``. ``fit``: fastfactor's
defaults (the compiled Adafactor phase, SciPy's ``trf`` from its result and from x0),
the same in the Python loop, the defaults without ``trf`` from x0, the Adafactor phase
alone, and SciPy.

``FirstCall``: a new process with a new compiled objective, the solve loop already in
Numba's disk cache (``setup`` fills it; not at the smoke size, where the figure then
includes the loop's compilation): ``track_objective_compile_s`` (the objective's
own compilation, which every new objective pays) and ``track_first_solve_s`` (the first
``minimize`` after it: loading the loop from the cache, and the solve).
"""

import json
import os
import subprocess
import sys
import time

import numpy as np

from ._common import SMOKE, pick

LOOPS = ["compiled", "python"]
SHORT, LONG = pick((200, 2_000), (1_000, 20_000))


def _rosenbrock():
    import numba

    @numba.njit
    def fg(x):
        f = 0.0
        g = np.zeros_like(x)
        for i in range(x.size - 1):
            a = x[i + 1] - x[i] * x[i]
            b = 1.0 - x[i]
            f += 100.0 * a * a + b * b
            g[i] += -400.0 * x[i] * a - 2.0 * b
            g[i + 1] += 200.0 * a
        return f, g

    @numba.njit
    def alone(x, n):
        acc = 0.0
        for _ in range(n):
            f, g = fg(x.copy())
            acc += f + g[0]
        return acc
    return fg, alone


def _per_iteration(solve, enabled):
    """The time per iteration of ``solve(maxiter)`` (a result with ``nit``): the
    difference of a long and a short run over their iteration difference, the best of
    three each; ``enabled`` is the compiled loop's switch."""
    import fastfactor._compiled as compiled

    compiled.ENABLED = enabled
    try:
        best = {}
        for maxiter in (SHORT, LONG):
            times = []
            for _ in range(3):
                start = time.perf_counter()
                res = solve(maxiter)
                times.append(time.perf_counter() - start)
            best[maxiter] = (min(times), res.nit)
    finally:
        compiled.ENABLED = True
    (t1, n1), (t2, n2) = best[SHORT], best[LONG]
    return (t2 - t1) / (n2 - n1) * 1e6


def _minimize_per_iteration(fg, x0, enabled):
    import fastfactor

    return _per_iteration(lambda maxiter: fastfactor.minimize(
        fg, x0, jac=True, options={"maxiter": maxiter, "gtol": 0.0}), enabled)


class OwnTime:
    params = (LOOPS,)
    param_names = ["loop"]
    unit = "microseconds"
    timeout = 600

    def setup_cache(self):
        fg, alone = _rosenbrock()
        x0 = np.tile([-1.2, 1.0], 5)
        total = {loop: _minimize_per_iteration(fg, x0, loop == "compiled") for loop in LOOPS}
        alone(x0, 10)
        start = time.perf_counter()
        alone(x0, LONG)
        objective = (time.perf_counter() - start) / LONG * 1e6
        return {"total": total, "objective": objective}

    def track_total_us(self, cache, loop):
        return cache["total"][loop]

    def track_objective_us(self, cache, loop):
        return cache["objective"]

    def track_own_us(self, cache, loop):
        return cache["total"][loop] - cache["objective"]

    def track_speedup(self, cache, loop):
        own = {name: cache["total"][name] - cache["objective"] for name in LOOPS}
        return own["python"] / own[loop]


def _small_residuals():
    import numba

    @numba.njit
    def res(x):
        r = np.empty(20)
        for i in range(10):
            r[i] = x[i] - 1.0
            r[10 + i] = 0.3 * (x[i] * x[i] - 2.0)
        return r

    @numba.njit
    def jac(x):
        J = np.zeros((20, 10))
        for i in range(10):
            J[i, i] = 1.0
            J[10 + i, i] = 0.6 * x[i]
        return J

    @numba.njit
    def alone(x, n):
        acc = 0.0
        for _ in range(n):
            acc += res(x.copy())[0] + jac(x.copy())[0, 0]
        return acc
    return res, jac, alone


def _lsq_per_iteration(res, jac, x0, enabled):
    import fastfactor

    # no gtol, xtol or hand-over, and a small fixed step: the phase runs its maxiter
    # (with the default schedule it reaches the minimum, where its steps round to 0)
    return _per_iteration(lambda maxiter: fastfactor.least_squares(
        res, x0, jac, gtol=None, xtol=None,
        options={"finish": False, "maxiter": maxiter, "handover_window": 0, "lr": 1e-4,
                 "scale_parameter": False}), enabled)


class LsqOwnTime:
    params = (LOOPS,)
    param_names = ["loop"]
    unit = "microseconds"
    timeout = 600

    def setup_cache(self):
        res, jac, alone = _small_residuals()
        x0 = np.full(10, 3.0)
        total = {loop: _lsq_per_iteration(res, jac, x0, loop == "compiled") for loop in LOOPS}
        alone(x0, 10)
        start = time.perf_counter()
        alone(x0, LONG)
        objective = (time.perf_counter() - start) / LONG * 1e6
        return {"total": total, "objective": objective}

    track_total_us = OwnTime.track_total_us
    track_objective_us = OwnTime.track_objective_us
    track_own_us = OwnTime.track_own_us
    track_speedup = OwnTime.track_speedup


FITS = ["compiled", "python", "no-trf-from-x0", "adafactor-phase", "scipy-trf"]


def _decay_compiled():
    import numba

    t = np.linspace(0.0, 10.0, 200)
    y = 5.0 * np.exp(-0.7 * t) + 1.0 + 0.05 * np.random.default_rng(0).standard_normal(t.size)

    @numba.njit
    def res(p):
        return p[0] * np.exp(-p[1] * t) + p[2] - y

    @numba.njit
    def jac(p):
        e = np.exp(-p[1] * t)
        J = np.empty((t.size, 3))
        J[:, 0] = e
        J[:, 1] = -p[0] * t * e
        J[:, 2] = 1.0
        return J
    return res, jac, np.array([1.0, 1.0, 0.0])


def _fit(fit, res, jac, x0):
    import scipy.optimize as so

    import fastfactor
    import fastfactor._compiled as compiled

    if fit == "scipy-trf":
        return so.least_squares(res, x0, jac)
    options = {"no-trf-from-x0": {"trf_from_x0": False},
               "adafactor-phase": {"finish": False, "maxiter": 65}}.get(fit, {})
    compiled.ENABLED = fit != "python"
    try:
        return fastfactor.least_squares(res, x0, jac, options=options)
    finally:
        compiled.ENABLED = True


class CurveFit:
    params = (FITS,)
    param_names = ["fit"]
    unit = "milliseconds"
    timeout = 600

    def setup_cache(self):
        problem = _decay_compiled()
        for fit in FITS:
            _fit(fit, *problem)
        times = {fit: [] for fit in FITS}
        for _ in range(pick(3, 30)):  # interleaved: the machine's load hits all alike
            for fit in FITS:
                start = time.perf_counter()
                _fit(fit, *problem)
                times[fit].append(time.perf_counter() - start)
        return {fit: float(np.median(t)) * 1e3 for fit, t in times.items()}

    def track_ms(self, cache, fit):
        return cache[fit]

    def track_ratio_to_scipy(self, cache, fit):
        return cache[fit] / cache["scipy-trf"]

    track_ratio_to_scipy.unit = "ratio"


#: A new process: a new objective (its constant from argv), its compile timed apart
#: from the first solve.
_FIRST = r"""
import json, sys, time
import numba, numpy as np
import fastfactor, fastfactor._compiled as compiled
c = float(sys.argv[1])
@numba.njit
def fg(x):
    d = x - c
    return 0.5 * np.sum(d * d) + 0.25 * np.sum(d ** 4), d + d ** 3
start = time.perf_counter()
compiled.objective(fg, True, (), (10,), np.float64)
mid = time.perf_counter()
fastfactor.minimize(fg, np.zeros(10), jac=True, options={"maxiter": 100})
end = time.perf_counter()
print(json.dumps([mid - start, end - mid]))
"""


def _first_call(c):
    done = subprocess.run([sys.executable, "-c", _FIRST, str(c)], capture_output=True,
                          text=True, timeout=900, env=dict(os.environ))
    if done.returncode:
        raise RuntimeError(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


class FirstCall:
    unit = "seconds"
    timeout = 900

    def setup_cache(self):
        if not SMOKE:  # fills the disk cache with the loop (and the kernels)
            _first_call(0.25)
        return _first_call(0.5)

    def track_objective_compile_s(self, cache):
        return cache[0]

    def track_first_solve_s(self, cache):
        return cache[1]
