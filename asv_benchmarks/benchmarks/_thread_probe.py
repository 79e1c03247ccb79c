"""Run in a subprocess by ``bench_threads.py`` (each setting needs a fresh process: the
environment variables are read when OpenMP, OpenBLAS and Numba start).

``python _thread_probe.py table N M ITERS``: ms per iteration of ``fastfactor.minimize``
on an N x M float64 matrix, objective ``G = d * X; f = 0.5 * vdot(X, G)`` (``d`` fixed,
``jac=True``, ``gtol = 0``), best of 5 runs of ITERS iterations after a warm-up run.

``python _thread_probe.py step N M ROUNDS``: ms of one float32 Adafactor step of an
N x M block, quiet and beside one CPU-bound process, timed alternately (ROUNDS each,
10 steps per round with 2 ms gaps, the best round's median step); prints both.

Prints one JSON object.
"""

import json
import multiprocessing as mp
import sys
import time

import numpy as np


def table(n, m, iters):
    import fastfactor
    rng = np.random.default_rng(0)
    d = rng.uniform(0.5, 2.0, (n, m))

    def fg(X):
        G = d * X
        return 0.5 * float(np.vdot(X, G)), G

    x0 = rng.standard_normal((n, m))
    options = dict(maxiter=iters, gtol=0.0, lr=lambda t: 0.01 / np.sqrt(t))
    fastfactor.minimize(fg, x0, jac=True, options=options)
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        fastfactor.minimize(fg, x0, jac=True, options=options)
        best = min(best, (time.perf_counter() - t0) / iters * 1e3)
    return {"ms": best}


def _spin(stop):
    x = 0
    while not stop.is_set():
        x += 1


def _round(opt, p, g):
    times = []
    for _ in range(10):
        time.sleep(0.002)  # an objective's time between steps
        t0 = time.perf_counter()
        opt.step(p, g)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def step(n, m, rounds):
    import fastfactor
    rng = np.random.default_rng(0)
    p = rng.standard_normal((n, m)).astype(np.float32)
    g = rng.standard_normal((n, m)).astype(np.float32)
    opt = fastfactor.Adafactor((n, m))
    for _ in range(3):
        opt.step(p, g)
    quiet, busy = np.inf, np.inf
    ctx = mp.get_context("spawn")
    for _ in range(rounds):
        quiet = min(quiet, _round(opt, p, g))
        stop = ctx.Event()
        proc = ctx.Process(target=_spin, args=(stop,))
        proc.start()
        time.sleep(0.2)  # the competitor is running
        busy = min(busy, _round(opt, p, g))
        stop.set()
        proc.join()
    return {"quiet": quiet, "busy": busy}


if __name__ == "__main__":
    what, *args = sys.argv[1:]
    print(json.dumps({"table": table, "step": step}[what](*map(int, args))))
