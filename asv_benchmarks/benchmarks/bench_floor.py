"""The step against the memory-traffic floor, with the bandwidth measured in-process.

The floor of a step is the bytes it must move over the machine's read+write
bandwidth: ``5 n m itemsize`` per factored block (an exact three-pass step reads g three
times and reads and writes x once; fastfactor's two-pass step moves as many),
``7 size itemsize`` per vector (see ``_common.floor_bytes``). The
bandwidth is the better of two single-threaded probes on 256 MiB arrays, each counting
2 x nbytes: ``np.copyto(dst, src)`` and the in-place ``x *= 1.0``
(``_common.bandwidth_sample``). ``track_time_over_floor`` times the step and the probes
alternately in one process and reports best step time / floor: 1.0 is the floor, the
target is <= 1.15.
"""

from ._common import StepperCases, fastfactor_stepper, measure_bandwidth, ratio_to_floor


class Floor(StepperCases):
    stepper = staticmethod(fastfactor_stepper)
    unit = "step time / floor"
    timeout = 600
    rounds = 1

    def track_time_over_floor(self, dtype, case):
        return ratio_to_floor(self.step, case, dtype)[0]


class Bandwidth:
    """The read+write bandwidth probes themselves (GB/s, best of 9), measured once."""

    unit = "GB/s"
    rounds = 1

    def setup_cache(self):
        return measure_bandwidth()

    def track_bandwidth_copyto(self, bw):
        return bw["copyto"] / 1e9

    def track_bandwidth_inplace(self, bw):
        return bw["inplace"] / 1e9

    def track_bandwidth_best(self, bw):
        return bw["best"] / 1e9

    def track_bandwidth_read(self, bw):
        """Read-only (``np.dot`` of two arrays, all BLAS threads): not used by the floors."""
        return bw["read"] / 1e9
