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


def _per_iteration(fg, x0, enabled):
    import fastfactor
    import fastfactor._compiled as compiled

    compiled.ENABLED = enabled
    try:
        best = {}
        for maxiter in (SHORT, LONG):
            times = []
            for _ in range(3):
                start = time.perf_counter()
                res = fastfactor.minimize(fg, x0, jac=True,
                                          options={"maxiter": maxiter, "gtol": 0.0})
                times.append(time.perf_counter() - start)
            best[maxiter] = (min(times), res.nit)
    finally:
        compiled.ENABLED = True
    (t1, n1), (t2, n2) = best[SHORT], best[LONG]
    return (t2 - t1) / (n2 - n1) * 1e6


class OwnTime:
    params = (LOOPS,)
    param_names = ["loop"]
    unit = "microseconds"
    timeout = 600

    def setup_cache(self):
        fg, alone = _rosenbrock()
        x0 = np.tile([-1.2, 1.0], 5)
        total = {loop: _per_iteration(fg, x0, loop == "compiled") for loop in LOOPS}
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
