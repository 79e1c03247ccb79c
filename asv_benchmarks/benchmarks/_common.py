"""Shared pieces of the benchmark suite: sizes, cases, data, and the measurements of
bandwidth and of a step's extra memory.

Sizes
-----
``FASTFACTOR_BENCH_SIZE`` picks the parameter lists: ``full`` (the default) or ``smoke``
(tiny blocks, for CI's ``asv run --quick``, where only "does every benchmark run"
matters).

Cases
-----
A *case* is a string naming the blocks of one optimizer:

- ``"4096x4096"``: one matrix block (factored), ``"16x1024x1024"``: a batch of 16
  matrices (factored over the last two axes);
- ``"1048576"``: one vector of that length (unfactored);
- ``"200*32x32"``: 200 blocks of 32x32.

Helpers here build the arrays once per process (module-level cache), so that asv's
``setup()``, which asv re-runs before every timed call, costs almost nothing after the
first call. Heavy imports (torch, jax, transformers) never happen here.

Benchmark classes
-----------------
``StepperCases`` is the base of every CPU stepper benchmark (``bench_step``,
``bench_peers``, ``bench_floor``, ``bench_scaling``, ``bench_memory``): the
(dtype, case) parameters and the ``setup`` that builds and warms the stepper. This module,
``_numpy_step`` and ``_peers`` hold no benchmarks (asv imports every module of the
package, but finds benchmarks only in methods named ``time_``, ``track_``, ``peakmem_``,
..., which only the ``bench_*`` modules have).
"""

import math
import os
import re
import time

import numpy as np

SIZE = os.environ.get("FASTFACTOR_BENCH_SIZE", "full").strip().lower() or "full"
if SIZE not in ("full", "smoke"):
    raise ValueError(f"FASTFACTOR_BENCH_SIZE must be 'full' or 'smoke', got {SIZE!r}")
SMOKE = SIZE == "smoke"


def pick(smoke, full):
    """``smoke`` under FASTFACTOR_BENCH_SIZE=smoke, ``full`` otherwise."""
    return smoke if SMOKE else full


DTYPES = ["float32", "float64"]

#: Large single blocks: square, tall, wide, batched 3-D, and 16384x4096.
FACTORED_CASES = pick(
    ["64x48", "4x32x16"],
    ["1024x1024", "4096x4096", "16384x1024", "1024x16384", "16x1024x1024", "16384x4096"],
)
#: Long vectors (full second moment).
UNFACTORED_CASES = pick(["1000"], ["1048576", "16777216"])
#: Small blocks and many small blocks: per-step overhead.
SMALL_CASES = pick(["32x32", "10*32x32"], ["32x32", "64x64", "200*32x32"])
LARGE_CASES = FACTORED_CASES + UNFACTORED_CASES

#: Array size (bytes) of the bandwidth probe: far larger than the last-level cache.
BANDWIDTH_BYTES = pick(1 << 20, 256 << 20)

# asv timing attributes for steps of milliseconds and more: one call per sample
# (asv re-runs setup() between calls; ours is a cache lookup), 3 to 10 samples,
# no more than ~4 s of samples once 3 are taken.
LARGE_TIMING = dict(number=1, repeat=(3, 10, 4.0), warmup_time=0.0, rounds=1, timeout=600)
# ... and for steps of microseconds: many one-call samples.
SMALL_TIMING = dict(number=1, repeat=(20, 300, 1.0), warmup_time=0.05, rounds=1, timeout=300)


def timing(cls_attrs):
    """Class decorator: set asv timing attributes on a benchmark class."""
    def deco(cls):
        for k, v in cls_attrs.items():
            setattr(cls, k, v)
        return cls
    return deco


# --- cases ------------------------------------------------------------------------

_CASE = re.compile(r"^(?:(\d+)\*)?(\d+(?:x\d+)*)$")


def parse_case(case):
    """``"200*32x32"`` -> ``[(32, 32)] * 200``; ``"4096x4096"`` -> ``[(4096, 4096)]``."""
    m = _CASE.match(case)
    if not m:
        raise ValueError(f"bad case {case!r}")
    count = int(m.group(1) or 1)
    shape = tuple(int(d) for d in m.group(2).split("x"))
    return [shape] * count


def case_size(case):
    """Total number of elements of a case."""
    return sum(math.prod(s) for s in parse_case(case))


def is_factored(shape):
    return len(shape) >= 2


def floor_bytes(case, dtype):
    """The bytes of the floor: 5 n*m*itemsize per factored block (an exact step in three
    passes reads g three times and reads and writes x once; fastfactor's two-pass step
    moves the same 5 with ``scale_parameter``: g twice, x read twice and written once),
    7 size*itemsize per vector (read g, read+write v; read g, v, x, write x; fastfactor
    also reads x once more for RMS(x), 8 in all, because the step is refused before
    anything is written when the gradient is not finite)."""
    item = np.dtype(dtype).itemsize
    total = 0
    for shape in parse_case(case):
        total += (5 if is_factored(shape) else 7) * math.prod(shape) * item
    return total


# --- data ---------------------------------------------------------------------------

_DATA = {}


def arrays(case, dtype, seed=0):
    """``(xs, gs)``: lists of parameter and gradient arrays of a case (built once per
    process and cached; the parameters are updated in place by the steps)."""
    key = (case, np.dtype(dtype).name, seed)
    if key not in _DATA:
        rng = np.random.default_rng(seed)
        xs, gs = [], []
        for shape in parse_case(case):
            xs.append(rng.standard_normal(shape, dtype=np.dtype(dtype).type))
            gs.append(rng.standard_normal(shape, dtype=np.dtype(dtype).type))
        _DATA[key] = (xs, gs)
    return _DATA[key]


_STEPPERS = {}


def cached(key, build):
    """``build()`` once per process for ``key`` (a warmed stepper, say)."""
    if key not in _STEPPERS:
        _STEPPERS[key] = build()
    return _STEPPERS[key]


def fastfactor_stepper(case, dtype):
    """A warmed-up ``fastfactor.Adafactor`` for ``case``, and a zero-argument step.

    The warm-up step compiles (or loads from Numba's cache) the kernels and starts
    Numba's threads, so no timed call pays for either.
    """
    def build():
        from fastfactor import Adafactor
        shapes = parse_case(case)
        xs, gs = arrays(case, dtype)
        if len(shapes) == 1:
            opt = Adafactor(shapes[0])
            x, g = xs[0], gs[0]

            def step():
                opt.step(x, g)
        else:
            opt = Adafactor(shapes)

            def step():
                opt.step(xs, gs)
        step()
        step()
        return step
    return cached(("fastfactor", case, dtype), build)


def numpy_stepper(case, dtype):
    """A warmed-up plain-NumPy Adafactor step for ``case``."""
    def build():
        from ._numpy_step import NumpyAdafactor
        xs, gs = arrays(case, dtype)
        opt = NumpyAdafactor(parse_case(case))

        def step():
            opt.step(xs, gs)
        step()
        return step
    return cached(("numpy", case, dtype), build)


STEPPERS = {"fastfactor": fastfactor_stepper, "numpy": numpy_stepper}


class StepperCases:
    """Base class of the CPU stepper benchmarks: one warmed-up stepper per (dtype, case).

    A subclass names its stepper, ``stepper = staticmethod(fastfactor_stepper)`` (or
    ``numpy_stepper``, or a peer's from ``_peers``), and may set other ``params``
    (``param_names`` stay ``["dtype", "case"]``). ``setup`` builds (once per process) and
    warms that stepper, so ``self.step()`` is one optimizer step and nothing else. Not a
    benchmark itself: it has no ``time_``/``track_``/``peakmem_`` method.
    """

    params = (DTYPES, LARGE_CASES)
    param_names = ["dtype", "case"]
    stepper = None

    def setup(self, dtype, case):
        self.step = type(self).stepper(case, dtype)


# --- bandwidth ----------------------------------------------------------------------

_BW = {}


def _bw_arrays(nbytes):
    if nbytes not in _BW:
        n = nbytes // 8
        src = np.full(n, 1.0)
        dst = np.full(n, 2.0)
        _BW[nbytes] = (src, dst)
    return _BW[nbytes]


def bandwidth_sample(nbytes=BANDWIDTH_BYTES):
    """One sample of each read+write probe, in bytes/s, counting 2 * nbytes each:

    - ``copyto``: ``np.copyto(dst, src)`` (one thread; glibc's large memcpy streams
      the stores, so no read-for-ownership traffic);
    - ``inplace``: ``x *= 1.0`` in place (one thread; the pattern of a step's
      read-and-write of the parameters).
    """
    src, dst = _bw_arrays(nbytes)
    t0 = time.perf_counter()
    np.copyto(dst, src)
    t1 = time.perf_counter()
    np.multiply(src, 1.0, out=src)
    t2 = time.perf_counter()
    nb = 2 * src.nbytes
    return {"copyto": nb / (t1 - t0), "inplace": nb / (t2 - t1)}


def read_bandwidth_sample(nbytes=BANDWIDTH_BYTES):
    """One sample of a read-only probe, in bytes/s: ``np.dot`` of the two probe arrays
    (BLAS, on all its threads), counting 2 * nbytes. Not used by the floors: it shows how
    fast a pass that only reads (a step's statistics pass) can go on this machine."""
    src, dst = _bw_arrays(nbytes)
    t0 = time.perf_counter()
    np.dot(src, dst)
    return 2 * src.nbytes / (time.perf_counter() - t0)


def measure_bandwidth(nbytes=BANDWIDTH_BYTES, repeat=9):
    """Best of ``repeat`` samples per probe (bytes/s), plus ``best``: the higher of the
    two read+write probes, the bandwidth the floors use, and ``read``: the read-only
    probe."""
    best = {"copyto": 0.0, "inplace": 0.0, "read": 0.0}
    for _ in range(repeat):
        for k, v in bandwidth_sample(nbytes).items():
            best[k] = max(best[k], v)
        best["read"] = max(best["read"], read_bandwidth_sample(nbytes))
    best["best"] = max(best["copyto"], best["inplace"])
    return best


def ratio_to_floor(step, case, dtype, rounds=9):
    """Best step time divided by the floor, bandwidth and step timed alternately.

    Returns ``(ratio, best_step_seconds, floor_seconds, bandwidth)``.
    """
    best_t = math.inf
    best_bw = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        step()
        best_t = min(best_t, time.perf_counter() - t0)
        best_bw = max(best_bw, max(bandwidth_sample().values()))
    floor = floor_bytes(case, dtype) / best_bw
    return best_t / floor, best_t, floor, best_bw


# --- extra memory of one step -----------------------------------------------------------

def extra_peak_tracemalloc(step):
    """Peak bytes allocated during ``step()`` above what was allocated before it, as seen
    by tracemalloc (NumPy's and Numba's array buffers report to it)."""
    import tracemalloc
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        step()  # once under tracing first, so that tracemalloc's own tables settle
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if started:
            tracemalloc.stop()
    return max(0, peak - before)


def _proc_status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def rss_probe_available():
    try:
        _proc_status_kib("VmHWM")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def prepare_rss_probe():
    """Make every allocation of 64 KiB or more its own mapping, returned to the system
    when freed (glibc ``mallopt``), so that a step's temporaries show in the peak RSS
    even when an earlier step freed memory of the same size."""
    import ctypes
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 16)
    libc.mallopt(m_trim_threshold, 1 << 16)


def extra_peak_rss(step):
    """Peak resident memory during ``step()`` above the resident memory before it (bytes;
    Linux: the peak is reset through ``/proc/self/clear_refs``; page granularity)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _proc_status_kib("VmRSS")
    step()
    peak = _proc_status_kib("VmHWM")
    return max(0, peak - before) * 1024


def param_bytes(case, dtype):
    """Bytes of a case's parameters: the "one n*m array" of the memory target (for
    several blocks, all of them together)."""
    return case_size(case) * np.dtype(dtype).itemsize
