"""Time of one step of other Adafactor implementations, on fastfactor's cases.

Skipped (``NotImplementedError`` in ``setup``) when torch, transformers or jax/optax are
not installed. Settings and their differences: see ``_peers.py``. The step updates the
parameters in place (torch, HF) or returns donated buffers (optax, jitted).
"""

from ._common import DTYPES, LARGE_TIMING, SMALL_CASES, SMALL_TIMING, StepperCases, timing
from ._peers import hf_stepper, optax_stepper, torch_stepper


class _Peer(StepperCases):
    def time_step(self, dtype, case):
        self.step()


@timing(LARGE_TIMING)
class LargeTorch(_Peer):
    stepper = staticmethod(torch_stepper)


@timing(LARGE_TIMING)
class LargeHF(_Peer):
    stepper = staticmethod(hf_stepper)


@timing(LARGE_TIMING)
class LargeOptax(_Peer):
    stepper = staticmethod(optax_stepper)


@timing(SMALL_TIMING)
class SmallTorch(_Peer):
    params = (DTYPES, SMALL_CASES)
    stepper = staticmethod(torch_stepper)


@timing(SMALL_TIMING)
class SmallHF(_Peer):
    params = (DTYPES, SMALL_CASES)
    stepper = staticmethod(hf_stepper)


@timing(SMALL_TIMING)
class SmallOptax(_Peer):
    params = (DTYPES, SMALL_CASES)
    stepper = staticmethod(optax_stepper)
