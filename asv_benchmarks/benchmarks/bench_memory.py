"""Extra peak memory of one step, as a fraction of the parameters' own bytes.

Two views of the same thing:

- ``track_extra_peak_tracemalloc``: the peak of traced allocations during one step
  above those live before it (NumPy's buffers, and Numba's, report to tracemalloc;
  so do the Python objects a step creates);
- ``track_extra_peak_rss``: the peak resident memory during one step above the
  resident memory before it (Linux; glibc is told to map every allocation of 64 KiB
  or more afresh, so reused free memory cannot hide a temporary; page granularity).

Target for fastfactor: under 0.05 (5% of one n x m array) at every size. The plain
NumPy step is beside it for contrast (one n x m temporary: about 1.0).
"""

from ._common import (
    DTYPES,
    LARGE_CASES,
    SMALL_CASES,
    StepperCases,
    extra_peak_rss,
    extra_peak_tracemalloc,
    fastfactor_stepper,
    numpy_stepper,
    param_bytes,
    pick,
    prepare_rss_probe,
    rss_probe_available,
)

#: The NumPy step for contrast on a few cases only (its large steps are slow).
NUMPY_CASES = pick(["64x48", "1000", "10*32x32"], ["4096x4096", "16777216", "64x64", "200*32x32"])


class FastfactorExtraMemory(StepperCases):
    params = (DTYPES, LARGE_CASES + SMALL_CASES)
    unit = "fraction of the parameters' bytes"
    rounds = 1
    timeout = 600
    stepper = staticmethod(fastfactor_stepper)

    def setup(self, dtype, case):
        self.rss = rss_probe_available()
        if self.rss:
            prepare_rss_probe()  # before the stepper's arrays are allocated
        super().setup(dtype, case)

    def track_extra_peak_tracemalloc(self, dtype, case):
        return extra_peak_tracemalloc(self.step) / param_bytes(case, dtype)

    def track_extra_peak_rss(self, dtype, case):
        """NaN where the RSS probe is not available (not Linux)."""
        if not self.rss:
            return float("nan")
        self.step()
        return min(extra_peak_rss(self.step) for _ in range(3)) / param_bytes(case, dtype)


class NumpyExtraMemory(FastfactorExtraMemory):
    params = (DTYPES, NUMPY_CASES)
    stepper = staticmethod(numpy_stepper)
