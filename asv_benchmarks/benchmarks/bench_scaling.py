"""Scaling series: time of one factored step of an n x n block against n*n.

A memory-bound step costs a fixed time per element once the block is larger than the
caches: ``perf_table.py`` reports ns per element and the log-log slope of time
against n*n (1.0 is linear).
"""

from ._common import DTYPES, LARGE_TIMING, StepperCases, fastfactor_stepper, pick, timing

SCALING_CASES = [f"{n}x{n}" for n in pick([32, 64], [128, 256, 512, 1024, 2048, 4096, 8192])]


@timing(LARGE_TIMING)
class Scaling(StepperCases):
    params = (DTYPES, SCALING_CASES)
    stepper = staticmethod(fastfactor_stepper)

    def time_step(self, dtype, case):
        self.step()
