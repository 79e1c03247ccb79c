"""The CUDA step (``device="cuda"``) on a real GPU: time, bandwidth floor, torch.

Every ``setup()`` raises ``NotImplementedError`` (asv: skipped) unless a CUDA GPU is
usable (not the simulator), so the suite runs everywhere. ``torch`` columns are
skipped the same way without ``torch.optim.Adafactor`` on CUDA.

- ``GpuStep.time_step``: one step of a warmed ``Adafactor(device="cuda")`` on Numba
  device arrays, synchronised (asv's wall-clock time);
- ``GpuFloor.track_time_over_floor``: the step time, from CUDA events around a run of
  steps, over the floor ``5 n m itemsize`` bytes / the device-to-device copy
  bandwidth (target <= 1.5);
- ``GpuTorch.time_step``: ``torch.optim.Adafactor`` on the same GPU and shape;
- ``GpuBandwidth.track_copy_bandwidth``: the copy bandwidth itself (GB/s).

Run as a script (what ``asv_benchmarks/gpu_check.sh`` does), it prints one table of
those numbers for 8192x8192 and 16384x16384 float32 (``--dry-run``: tiny sizes, and it
runs in Numba's CUDA simulator, where the times mean nothing)::

    python asv_benchmarks/benchmarks/bench_gpu.py [--dry-run] \\
        [--tests "53 passed in 80s" --tests-ok 1]

The module imports nothing CUDA at import time and does not use the other modules
of the suite, so that the script runs from a bare checkout.
"""

import math
import os
import sys
import time

import numpy as np

SMOKE = os.environ.get("FASTFACTOR_BENCH_SIZE", "full").strip().lower() == "smoke"
FLOOR_PASSES = 5        # a factored step must read g three times, read and write x once
FLOOR_TARGET = 1.5      # step time / floor
TORCH_TARGET = 3.0      # torch time / fastfactor time
CASES = ["256x512"] if SMOKE else ["4096x4096", "8192x8192", "16384x16384", "16x1024x1024",
                                    "16777216"]
DTYPES = ["float32", "float64"]
COPY_BYTES = (8 << 20) if SMOKE else (1 << 30)


def _shape(case):
    return tuple(int(d) for d in case.split("x"))


def floor_bytes(shape, dtype):
    """Bytes one step must move: 5 n m itemsize (factored), 7 size itemsize (vector)."""
    passes = FLOOR_PASSES if len(shape) >= 2 else 7
    return passes * math.prod(shape) * np.dtype(dtype).itemsize


# --- the device -----------------------------------------------------------------------

def _simulated():
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0")


def require_gpu(allow_simulator=False):
    """numba.cuda, or NotImplementedError (asv's "skip") without a usable GPU."""
    if _simulated() and not allow_simulator:
        raise NotImplementedError("the CUDA simulator is on: GPU timings need a GPU")
    try:
        from numba import cuda
    except Exception as exc:  # numba.cuda not importable
        raise NotImplementedError(f"numba.cuda cannot be imported: {exc}") from None
    if not cuda.is_available():
        raise NotImplementedError("no CUDA GPU")
    return cuda


class _Timer:
    """Elapsed seconds of a block of GPU work: CUDA events (wall clock in the simulator)."""

    def __init__(self, cuda):
        self.cuda = cuda

    def __call__(self, fn, repeat):
        cuda = self.cuda
        if _simulated():
            t0 = time.perf_counter()
            for _ in range(repeat):
                fn()
            cuda.synchronize()
            return (time.perf_counter() - t0) / repeat
        start, stop = cuda.event(timing=True), cuda.event(timing=True)
        cuda.synchronize()
        start.record()
        for _ in range(repeat):
            fn()
        stop.record()
        stop.synchronize()
        return start.elapsed_time(stop) / 1e3 / repeat


_FILL = {}


def _fill(cuda, a, seed):
    """Fill the C-contiguous device array ``a`` with values in [-1, 1) on the device."""
    if _simulated():  # one simulated thread per element would take ages
        i = np.arange(a.size, dtype=np.int64)
        a.reshape(a.size).copy_to_device(
            (((i * 2654435761 + seed * 40503) % 4294967296) / 2147483648.0 - 1.0).astype(a.dtype))
        return
    if "kernel" not in _FILL:
        @cuda.jit
        def fill(flat, seed):
            i = cuda.grid(1)
            while i < flat.shape[0]:
                h = (i * 2654435761 + seed * 40503) % 4294967296
                flat[i] = h / 2147483648.0 - 1.0
                i += cuda.gridsize(1)
        _FILL["kernel"] = fill
    flat = a.reshape(a.size)
    _FILL["kernel"][1024, 256](flat, seed)


_CACHE = {}


def device_arrays(cuda, shape, dtype):
    key = ("arrays", shape, dtype)
    if key not in _CACHE:
        x = cuda.device_array(shape, np.dtype(dtype))
        g = cuda.device_array(shape, np.dtype(dtype))
        _fill(cuda, x, 1)
        _fill(cuda, g, 2)
        cuda.synchronize()
        _CACHE[key] = (x, g)
    return _CACHE[key]


def fastfactor_step(cuda, shape, dtype):
    """A warmed ``Adafactor(device="cuda")`` step on device arrays (compiled, cached)."""
    key = ("fastfactor", shape, dtype)
    if key not in _CACHE:
        from fastfactor import Adafactor
        x, g = device_arrays(cuda, shape, dtype)
        opt = Adafactor(shape, device="cuda")

        def step():
            opt.step(x, g)
        for _ in range(1 if _simulated() else 3):
            step()
        cuda.synchronize()
        _CACHE[key] = step
    return _CACHE[key]


def torch_step(shape, dtype):
    """A warmed ``torch.optim.Adafactor`` step on CUDA, or NotImplementedError."""
    key = ("torch", shape, dtype)
    if key not in _CACHE:
        try:
            import torch
        except ImportError:
            raise NotImplementedError("torch is not installed") from None
        if not torch.cuda.is_available() or not hasattr(torch.optim, "Adafactor"):
            raise NotImplementedError("torch without CUDA or without torch.optim.Adafactor")
        tdt = getattr(torch, dtype)
        p = torch.nn.Parameter(torch.rand(shape, device="cuda", dtype=tdt) * 2 - 1)
        p.grad = torch.rand(shape, device="cuda", dtype=tdt) * 2 - 1
        opt = torch.optim.Adafactor([p], lr=1e-2)

        def step():
            opt.step()
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        _CACHE[key] = (step, torch)
    return _CACHE[key]


def copy_bandwidth(cuda, nbytes=COPY_BYTES, repeat=10):
    """Device-to-device copy bandwidth in bytes/s (each copy reads and writes nbytes)."""
    key = ("bw", nbytes)
    if key not in _CACHE:
        src = cuda.device_array(nbytes // 4, np.float32)
        dst = cuda.device_array(nbytes // 4, np.float32)
        _fill(cuda, src, 3)
        dst.copy_to_device(src)
        timer = _Timer(cuda)
        best = min(timer(lambda: dst.copy_to_device(src), 5) for _ in range(repeat))
        _CACHE[key] = 2 * nbytes / best if best > 0 else math.inf
    return _CACHE[key]


def step_seconds(cuda, step, steps=None, repeat=5):
    """Best over ``repeat`` runs of the mean time per step of a run of ``steps`` steps."""
    timer = _Timer(cuda)
    steps = steps or (1 if _simulated() else 50)
    return min(timer(step, steps) for _ in range(1 if _simulated() else repeat))


# --- asv benchmarks ---------------------------------------------------------------------

class _FastfactorGpu:
    params = (DTYPES, CASES)
    param_names = ["dtype", "case"]
    timeout = 600

    def setup(self, dtype, case):
        self.cuda = require_gpu()
        self.step = fastfactor_step(self.cuda, _shape(case), dtype)


class GpuStep(_FastfactorGpu):
    number = 1
    repeat = (5, 20, 5.0)

    def time_step(self, dtype, case):
        self.step()
        self.cuda.synchronize()


class GpuFloor(_FastfactorGpu):
    unit = "step time / floor"
    rounds = 1

    def track_time_over_floor(self, dtype, case):
        floor = floor_bytes(_shape(case), dtype) / copy_bandwidth(self.cuda)
        return step_seconds(self.cuda, self.step) / floor


class GpuTorch:
    params = (DTYPES, CASES)
    param_names = ["dtype", "case"]
    number = 1
    repeat = (5, 20, 5.0)
    timeout = 600

    def setup(self, dtype, case):
        require_gpu()
        self.step, self.torch = torch_step(_shape(case), dtype)

    def time_step(self, dtype, case):
        self.step()
        self.torch.cuda.synchronize()


class GpuBandwidth:
    unit = "GB/s"
    rounds = 1

    def setup(self):
        self.cuda = require_gpu()

    def track_copy_bandwidth(self):
        return copy_bandwidth(self.cuda) / 1e9


# --- the gpu_check table ----------------------------------------------------------------

def _describe(cuda):
    try:
        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    except Exception:
        name = "?"
    impl = getattr(cuda, "implementation", "?")
    return f"{name}; numba.cuda: {impl} ({os.path.dirname(cuda.__file__)})"


def table(dry_run=False, tests=None, tests_ok=None):
    """Measure and print the table; returns True when every target is met."""
    cuda = require_gpu(allow_simulator=dry_run)
    cases = [(16, 40)] if dry_run else [(8192, 8192), (16384, 16384)]
    dtype = "float32"
    nbytes = (4 << 20) if dry_run else COPY_BYTES
    try:
        import torch
        torch_note = f"torch {torch.__version__}"
    except ImportError:
        torch_note = "torch not installed"
    print("fastfactor GPU check" + (" -- DRY RUN in the CUDA simulator: the times mean nothing"
                                    if dry_run else ""))
    print(f"device: {_describe(cuda)}; {torch_note}")
    rows = []
    ok = True

    def verdict(met, target, timing=True):
        nonlocal ok
        if dry_run and timing:
            return f"n/a (dry run; target {target})"
        ok &= bool(met)
        return ("PASS" if met else "FAIL") + f" (target {target})"

    if tests is not None:
        where = "tests/cuda in the simulator" if dry_run else "tests/cuda at real sizes"
        rows.append([where, tests, "", "",
                     verdict(tests_ok is not None and bool(int(tests_ok)), "all pass", False)])
    bw = copy_bandwidth(cuda, nbytes)
    rows.append([f"device-to-device copy of {nbytes >> 20} MiB", f"{bw / 1e9:.0f} GB/s", "", "",
                 "(measured: the floors use it)"])
    for shape in cases:
        name = f"{shape[0]}x{shape[1]} {dtype}"
        t = step_seconds(cuda, fastfactor_step(cuda, shape, dtype))
        floor = floor_bytes(shape, dtype) / bw
        ratio = t / floor if floor > 0 else math.inf
        rows.append([f"step {name} vs floor", f"{t * 1e3:.3f} ms",
                     f"floor {floor * 1e3:.3f} ms ({FLOOR_PASSES} n m itemsize / copy bw)",
                     f"{ratio:.2f}", verdict(ratio <= FLOOR_TARGET, f"<= {FLOOR_TARGET}")])
        try:
            tstep, torch_mod = torch_step(shape, dtype)
        except NotImplementedError as exc:
            rows.append([f"step {name} vs torch", f"{t * 1e3:.3f} ms", "skipped", "", str(exc)])
            continue
        start = torch_mod.cuda.Event(enable_timing=True)
        stop = torch_mod.cuda.Event(enable_timing=True)
        tt = math.inf
        for _ in range(5):
            torch_mod.cuda.synchronize()
            start.record()
            for _ in range(20):
                tstep()
            stop.record()
            stop.synchronize()
            tt = min(tt, start.elapsed_time(stop) / 1e3 / 20)
        speed = tt / t if t > 0 else math.inf
        rows.append([f"step {name} vs torch", f"{t * 1e3:.3f} ms",
                     f"torch.optim.Adafactor {tt * 1e3:.3f} ms", f"{speed:.1f}x",
                     verdict(speed >= TORCH_TARGET, f">= {TORCH_TARGET:g}x")])
    head = ["check", "fastfactor", "reference", "ratio", "verdict"]
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    print(rule)
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print(rule)
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    print(rule)
    print("overall:", ("PASS" if ok else "FAIL") + (" (dry run: only the tests are checked)"
                                                    if dry_run else ""))
    return ok


def main(argv):
    dry = "--dry-run" in argv
    tests = tests_ok = None
    if "--tests" in argv:
        tests = argv[argv.index("--tests") + 1]
    if "--tests-ok" in argv:
        tests_ok = argv[argv.index("--tests-ok") + 1]
    try:
        ok = table(dry_run=dry, tests=tests, tests_ok=tests_ok)
    except NotImplementedError as exc:
        print(f"fastfactor GPU check: no GPU ({exc})")
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
