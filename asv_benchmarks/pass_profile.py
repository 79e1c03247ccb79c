"""Where the time of a large factored step goes: each pass against the fastest loop
with the same memory traffic, timed alternately in one process.

    python asv_benchmarks/pass_profile.py [N] [dtype]      # default: 4096 float32

A step of an ``N x N`` block is two passes (``fastfactor._backends.cpu``): statistics, which only
reads g and x, and update, which reads g and reads and writes x (in place), or reads x
and writes a separate output (out of place). Beside them:

- ``read g, x``: the column sums of g**2 + x**2 in float64, a loop that LLVM
  vectorizes and that does nothing else: the ceiling of a pass that reads two arrays;
- ``x = c x - g``: the ceiling of a pass that reads g and updates x in place;
- the read+write probe the floors use (``_common.bandwidth_sample``, one thread).

Each line gives the best time of 15 and the bytes per second it implies.
"""

import sys
import time

import numpy as np
from numba import njit, prange

from benchmarks._common import bandwidth_sample


@njit(parallel=True, error_model="numpy")
def _read_two(a, b, nchunks):
    n, m = a.shape
    out = np.zeros((nchunks, m))
    for k in prange(nchunks):
        for i in range(k * n // nchunks, (k + 1) * n // nchunks):
            for j in range(m):
                u = np.float64(a[i, j])
                v = np.float64(b[i, j])
                out[k, j] += u * u + v * v
    return out


@njit(parallel=True, error_model="numpy")
def _update_in_place(x, g, c, nchunks):
    n, m = x.shape
    for k in prange(nchunks):
        for i in range(k * n // nchunks, (k + 1) * n // nchunks):
            for j in range(m):
                x[i, j] = x[i, j] * c - g[i, j]


def main(n=4096, dtype="float32"):
    import numba

    from fastfactor._backends._protocol import FactoredState
    from fastfactor._backends.cpu import _step as cpu
    from fastfactor._hyper import Hyper

    dt = np.dtype(dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, n, n), dtype=dt.type)
    g = rng.standard_normal((1, n, n), dtype=dt.type)
    out = np.zeros_like(x)
    state = FactoredState(np.ones((1, n), dt), np.ones((1, n), dt), np.empty((0, 0, 0), dt))
    s = Hyper(lr=1e-3).scalars(2)._replace(beta2=0.9)
    threads = numba.get_num_threads()
    pending, _ = cpu.factored_stats(x, g, state, s)
    size = x.nbytes
    probes = {
        "step pass 1: statistics (reads g, x)": (
            lambda: cpu.factored_stats(x, g, state, s), 2 * size),
        "ceiling: read g, x": (lambda: _read_two(g[0], x[0], threads), 2 * size),
        "step pass 2: update (reads g, x; writes x)": (
            lambda: cpu.factored_apply(x, x, g, state, pending, s), 3 * size),
        "ceiling: x = c x - g": (lambda: _update_in_place(x[0], g[0], 1.0, threads), 3 * size),
        "pass 2 out of place (reads g, x; writes out)": (
            lambda: cpu.factored_apply(x, out, g, state, pending, s), 3 * size),
    }
    best = {name: np.inf for name in probes}
    probe_bw = 0.0
    for fn, _ in probes.values():
        fn()
    for _ in range(15):
        for name, (fn, _) in probes.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
        probe_bw = max(probe_bw, max(bandwidth_sample().values()))
    print(f"{n}x{n} {dt.name}, {threads} threads; best of 15, ms and GB/s")
    for name, (_, nbytes) in probes.items():
        print(f"  {name:44s} {best[name] * 1e3:7.2f} ms {nbytes / best[name] / 1e9:6.1f} GB/s")
    step = best["step pass 1: statistics (reads g, x)"] + best[
        "step pass 2: update (reads g, x; writes x)"]
    ceiling = best["ceiling: read g, x"] + best["ceiling: x = c x - g"]
    floor = 5 * size / probe_bw
    print(f"  read+write probe (the floors' bandwidth, one thread)   {probe_bw / 1e9:6.1f} GB/s")
    print(f"  floor {floor * 1e3:.2f} ms; the two passes {step * 1e3:.2f} ms "
          f"({step / floor:.2f}x floor); their ceilings {ceiling * 1e3:.2f} ms "
          f"({ceiling / floor:.2f}x floor)")


if __name__ == "__main__":
    main(*(int(a) if i == 0 else a for i, a in enumerate(sys.argv[1:])))
