"""The CPU threading policy beside BLAS and other processes (``docs/threads.rst``).

``ThreadSettings``: ms per iteration of ``fastfactor.minimize`` on an n x m float64
matrix whose objective calls BLAS (``G = d * X; f = 0.5 * vdot(X, G)``), under the
defaults and under each other setting a user could choose, each in a fresh process:
``OMP_WAIT_POLICY=passive``, ``OMP_WAIT_POLICY=active`` (GNU OpenMP's spinning threads,
the old default, with the old parallel threshold of 65,536 float64 elements),
``OPENBLAS_NUM_THREADS=1`` and ``NUMBA_THREADING_LAYER=workqueue``, timed alternately
in one run. ``track_over_best`` is each setting's time over the best setting's: for
``defaults`` the target is at most 1.3.

``BusyMachine``: one float32 step of a large block beside one CPU-bound process, over
the same step quiet, timed alternately in one process (target: at most 2.5).
"""

import json
import os
import subprocess
import sys

from ._common import pick

_PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_thread_probe.py")

SETTINGS = {
    "defaults": {},
    "passive": {"OMP_WAIT_POLICY": "passive"},
    "active": {"OMP_WAIT_POLICY": "active", "FASTFACTOR_PARALLEL_MIN_BYTES": "524288"},
    "openblas_1": {"OPENBLAS_NUM_THREADS": "1"},
    "workqueue": {"NUMBA_THREADING_LAYER": "workqueue"},
}
SIZES = pick(["20x50"], ["100x1000", "1000x1000", "4000x1000"])
ROUNDS = pick(1, 2)


def _probe(args, env_extra, timeout=900):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS", "NUMBA_THREADING_LAYER",
                        "FASTFACTOR_PARALLEL_MIN_BYTES")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, _PROBE, *map(str, args)], env=env,
                         capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(case):
    n, m = map(int, case.split("x"))
    iters = max(10, min(200, 2 * 10**7 // (n * m)))
    times = {name: float("inf") for name in SETTINGS}
    for _ in range(ROUNDS):  # alternately: the machine's load changes between them
        for name, env in SETTINGS.items():
            times[name] = min(times[name], _probe(["table", n, m, iters], env)["ms"])
    return times


class ThreadSettings:
    params = (SIZES, list(SETTINGS))
    param_names = ["case", "setting"]
    timeout = 1800

    def setup_cache(self):
        return {case: _table(case) for case in SIZES}

    def track_ms_per_iteration(self, cache, case, setting):
        return cache[case][setting]

    track_ms_per_iteration.unit = "ms"

    def track_over_best(self, cache, case, setting):
        """This setting's time over the best setting's (the defaults' is the target)."""
        times = cache[case]
        return times[setting] / min(times.values())

    track_over_best.unit = "ratio"


class BusyMachine:
    params = pick(["128x128"], ["4096x4096"])
    param_names = ["case"]
    timeout = 900

    def setup_cache(self):
        out = {}
        for case in self.params:
            n, m = map(int, case.split("x"))
            out[case] = _probe(["step", n, m, pick(1, 5)], {})
        return out

    def track_busy_over_quiet(self, cache, case):
        return cache[case]["busy"] / cache[case]["quiet"]

    track_busy_over_quiet.unit = "ratio"

    def track_quiet_ms(self, cache, case):
        return cache[case]["quiet"]

    track_quiet_ms.unit = "ms"
