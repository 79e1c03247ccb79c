"""Time and peak memory of one Adafactor step: fastfactor beside a plain NumPy step.

``Large*``: single large blocks (factored 2-D and batched 3-D, unfactored vectors);
``Small*``: one small block, and many small blocks in one optimizer. Every ``setup()``
builds (once per process) and warms the stepper, so Numba's compilation and thread
start-up never land in a sample. ``peakmem_`` is asv's peak RSS of the whole process
(arrays included); the extra memory of the step alone is ``bench_memory``'s.
"""

from ._common import (
    DTYPES,
    LARGE_TIMING,
    SMALL_CASES,
    SMALL_TIMING,
    StepperCases,
    fastfactor_stepper,
    numpy_stepper,
    timing,
)


class _Step(StepperCases):
    def time_step(self, dtype, case):
        self.step()

    def peakmem_step(self, dtype, case):
        self.step()


@timing(LARGE_TIMING)
class LargeFastfactor(_Step):
    stepper = staticmethod(fastfactor_stepper)


@timing(LARGE_TIMING)
class LargeNumpy(_Step):
    stepper = staticmethod(numpy_stepper)


@timing(SMALL_TIMING)
class SmallFastfactor(_Step):
    params = (DTYPES, SMALL_CASES)
    stepper = staticmethod(fastfactor_stepper)


@timing(SMALL_TIMING)
class SmallNumpy(_Step):
    params = (DTYPES, SMALL_CASES)
    stepper = staticmethod(numpy_stepper)
