"""The CPU backend's threading policy, in one place.

A step's kernels exist twice, built from one source: serial, and ``parallel=True``
(rows split into ``nchunks`` chunks, one per Numba thread). Both builds sum in the same
order for the same ``nchunks``, so which one runs never changes a result. The parallel
build runs only when all of these hold:

- the block is large: at least :data:`PARALLEL_MIN_BYTES`. Below it, waking
  the threads (twice per step: statistics, then update) costs more than the memory
  bandwidth a second thread adds (measured: ``docs/threads.rst``);
- no other thread of the process is in a parallel kernel now. A second thread runs the
  serial build with the same chunks instead of waiting, or starting a second team of
  threads on the same cores (and the ``workqueue`` layer aborts on concurrent use);
- the process is not a child forked after GNU OpenMP ran in its parent: a parallel
  region there would kill the child (Numba terminates it), so it steps serially.

Before the first parallel kernel, ``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` (unless the
user set it, or OpenMP was already started): with GNU OpenMP's default, the team keeps
spinning on every core for milliseconds after each step, starving the objective's BLAS
threads (and BLAS's starving them), up to 35x slower iterations. Passive threads sleep
at once. The number of threads is Numba's (``NUMBA_NUM_THREADS``,
``numba.set_num_threads``, per calling thread), the layer too (``NUMBA_THREADING_LAYER``).
"""

import os
import threading

import numba


def _min_bytes(default=16 << 20):
    value = os.environ.get("FASTFACTOR_PARALLEL_MIN_BYTES", "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"FASTFACTOR_PARALLEL_MIN_BYTES must be an integer number of "
                         f"bytes, got {value!r}") from None


#: Blocks of at least this many bytes may use the parallel kernels (read once, at
#: import, from ``FASTFACTOR_PARALLEL_MIN_BYTES``; default 16 MiB: 4,194,304 float32 or
#: 2,097,152 float64 elements). Bytes, not elements: the step is memory-bound.
PARALLEL_MIN_BYTES = _min_bytes()

_busy = threading.Lock()  # held while a parallel kernel runs
_omp_parent = False  # set in a child forked after OpenMP ran in the parent
_started = False  # whether this process has chosen the wait policy yet


def _layer():
    """Numba's threading layer if started in this process (``"omp"``, ``"tbb"``,
    ``"workqueue"``), else None."""
    try:
        return numba.threading_layer()
    except ValueError:
        return None


def _after_fork_in_child():
    global _busy, _omp_parent
    _busy = threading.Lock()  # a lock held by another thread of the parent stays held
    if _layer() == "omp":
        _omp_parent = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def n_chunks(nbytes, rows):
    """Number of row chunks of a block of ``nbytes`` bytes and ``rows`` rows."""
    if nbytes < PARALLEL_MIN_BYTES:
        return 1
    if not _started:
        _start()  # before get_num_threads, which starts Numba's threads
    return max(1, min(numba.get_num_threads(), rows))


def _start():
    """Once, before Numba starts its threads: GNU OpenMP's threads sleep when idle."""
    global _started
    if _layer() is None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _started = True


def run(serial, parallel, nchunks, *args):
    """``parallel(*args)`` when this process and this moment allow it (see the module
    docs), else ``serial(*args)``: the same chunks, the same result."""
    if nchunks > 1 and not _omp_parent and _busy.acquire(blocking=False):
        try:
            return parallel(*args)
        finally:
            _busy.release()
    return serial(*args)
