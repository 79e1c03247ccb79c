"""Where the data lives, and one evaluation over it: a task per worker.

``Partitions`` takes Dask arrays with the same row chunks, persists them, and gathers
the blocks of each row chunk into one object on one worker (a *partition*, where the
scheduler puts it: on the worker that holds most of its bytes). The placement, which
partitions each worker holds, comes from the scheduler (``Client.who_has``), as in
xgboost.dask and lightgbm.dask. ``Partitions.run`` sends ``x`` to every worker and runs
one task per worker, pinned there, over the partitions it holds; the results come back
in a fixed order (workers by their first partition), so that sums of them are
reproducible for a fixed placement.

A worker lost mid-evaluation leaves its task waiting for a worker that is gone: the
evaluation polls the scheduler for the pinned workers while it waits, and abandons
the tasks when one has left or the evaluation ran past ``timeout``; Dask then
recomputes the lost partitions (from the arrays' graphs) or they are where they
were, the placement is read again and the evaluation retried. Every wait on the
cluster is bounded in this thread (``callback_timeout``), not only in the cluster's
event loop: with a ``LocalCluster(processes=False)`` that loop is this process's, and
a wait timed there never ends once it has stopped.

The user's function sees read-only views of the blocks (writing to one would change
the cluster's copy, for every later evaluation), and a ``KeyboardInterrupt`` or
``SystemExit`` it raises on a worker comes back as a ``RuntimeError`` naming it (let
through, it would stop the worker, and the evaluation be retried instead of ended).
"""

import math
import time

import numpy as np

#: ``x`` above this size is scattered to the workers once per evaluation
#: (``Client.scatter(broadcast=True)``); smaller, it travels inside the tasks, which
#: saves a round trip.
SCATTER_BYTES = 1 << 16
#: Seconds between two looks at the scheduler's workers while an evaluation waits.
POLL = 0.5
#: Seconds without any worker after which lost partitions are given up: longer than
#: a nanny takes to restart its worker.
NO_WORKERS = 10.0


def get_client(client):
    """``client``, or the current :class:`distributed.Client`; ValueError naming the
    fix when there is none."""
    from distributed import Client

    if client is not None:
        if not isinstance(client, Client):
            raise TypeError(f"client must be a distributed.Client or None, got "
                            f"{type(client).__name__}")
        return client
    try:
        return Client.current()
    except ValueError:
        raise ValueError(
            "fastfactor.dask needs a Dask cluster and no distributed.Client exists: "
            "create one first, e.g. `from distributed import Client; client = Client()` "
            "(a LocalCluster on this machine) or Client('tcp://scheduler:8786'), or pass "
            "client=...") from None


def _name(a, i):
    return getattr(a, "name", None) and f"array {i} ({a.name[:24]})" or f"array {i}"


def check_arrays(arrays):
    """The Dask arrays, each with a single chunk along every axis but the first;
    TypeError or ValueError naming the array and the fix."""
    import dask.array as da

    if not arrays:
        raise TypeError("give at least one Dask array of data, e.g. DataSum(fg, A, b)")
    out = []
    for i, a in enumerate(arrays):
        if not isinstance(a, da.Array):
            raise TypeError(f"the data must be Dask arrays; argument {i} is a "
                            f"{type(a).__name__}: wrap it with dask.array.from_array(a, "
                            "chunks=...) using the row chunks of the other arrays")
        if a.ndim == 0:
            raise ValueError(f"{_name(a, i)} is 0-d; the data must have rows (ndim >= 1)")
        if any(math.isnan(c) for c in a.chunks[0]):
            raise ValueError(f"{_name(a, i)} has unknown chunk sizes; call "
                             "a.compute_chunk_sizes() first")
        if a.ndim > 1 and any(len(c) > 1 for c in a.chunks[1:]):
            # a partition is whole rows: the other axes in one chunk (moved once, here)
            a = a.rechunk({k: -1 for k in range(1, a.ndim)})
        out.append(a)
    rows = out[0].chunks[0]
    for i, a in enumerate(out[1:], 1):
        if a.shape[0] != out[0].shape[0]:  # no rechunk can help: say so first
            raise ValueError(
                f"the arrays must have the same rows (a partition is the same rows of "
                f"each): {_name(a, i)} has {a.shape[0]} rows, array 0 has "
                f"{out[0].shape[0]}")
        if a.chunks[0] != rows:
            raise ValueError(
                f"the arrays' row chunks do not line up: array 0 has {rows} rows per "
                f"chunk, {_name(a, i)} has {a.chunks[0]}; give them the same row "
                f"chunks, e.g. b = b.rechunk({{0: A.chunks[0]}})")
    return out


def _pack(*blocks):
    return blocks


def read_only(blocks):
    """``blocks`` with each NumPy array replaced by a read-only view of it: the arrays
    are the cluster's copy of the data, shared by every evaluation."""
    out = []
    for b in blocks:
        if isinstance(b, np.ndarray) and b.flags.writeable:
            b = b.view()
            b.flags.writeable = False
        out.append(b)
    return tuple(out)


def _worker_address():
    try:
        from distributed import get_worker

        return get_worker().address
    except ValueError:  # not on a worker (a test calling the task directly)
        return "this process"


def _on_worker(func, x, indices, extra, *parts):
    """The task: ``func(x, [(index, blocks), ...], *extra)`` over this worker's partitions."""
    parts = [read_only(blocks) for blocks in parts]
    try:
        return func(x, list(zip(indices, parts, strict=True)), *extra)
    except Exception:
        raise
    except BaseException as exc:
        # KeyboardInterrupt and SystemExit stop the worker itself (a process is
        # restarted by its nanny and the evaluation retried; in threads, the cluster's
        # event loop stops): as an Exception, it ends the run as any other error does.
        raise RuntimeError(
            f"the function evaluated on worker {_worker_address()} raised "
            f"{type(exc).__name__}({', '.join(map(repr, exc.args))}); on a cluster it "
            "ends the run as any other exception does, and is not retried") from exc


class EvaluationFailed(RuntimeError):
    """An evaluation over the partitions did not complete in ``retries + 1`` attempts.

    Each attempt ended because a worker holding partitions left the cluster, or the
    attempt ran past ``timeout`` seconds, and after it the partitions could not all
    be brought back (data that was scattered rather than computed by Dask is not
    recomputed), or the cluster has no workers left. The message lists what ended
    each attempt. Raised by the evaluations of :class:`DataSum`,
    :func:`least_squares` and :func:`minimize_stochastic`; a solver running one ends
    with it as with any exception of the objective (the run's result is its
    ``optimize_result`` attribute, after the first evaluation).
    """


class _NoWorkers(EvaluationFailed):
    """The cluster has no workers: nothing can bring the partitions back."""


class Partitions:
    """The row partitions of ``arrays`` on a cluster, and evaluations over them.

    Parameters
    ----------
    arrays : sequence of dask.array.Array
        Checked by :func:`check_arrays`.
    client : distributed.Client
    timeout : float or None
        Seconds one attempt of an evaluation may take (None: no limit).
    retries : int
        Attempts after the first, each after a lost worker or a timeout.
    """

    def __init__(self, arrays, client, timeout, retries):
        from distributed import futures_of

        self.client, self.timeout, self.retries = client, timeout, int(retries)
        self.arrays = client.persist(list(arrays))  # kept: lost partitions recompute
        by_key = {f.key: f for a in self.arrays for f in futures_of(a)}
        blocks = [a.to_delayed().reshape(-1) for a in self.arrays]
        self.rows = list(self.arrays[0].chunks[0])
        self.parts = [client.submit(_pack, *[by_key[b[i].key] for b in blocks], pure=False)
                      for i in range(len(self.rows))]
        self.refresh()
        self.attempts = 0  # evaluations retried, over the object's life

    def __len__(self):
        return len(self.parts)

    def refresh(self, timeout=None):
        """Read the placement from the scheduler (after lost partitions are back)."""
        self._check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        pending, alone_since = list(self.parts), None
        while not _await(pending, _sooner(deadline, time.monotonic() + POLL), False):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError(f"the partitions were not back within {timeout} s")
            if self._has_workers():
                alone_since = None
            elif alone_since is None:
                alone_since = now
            elif now - alone_since > NO_WORKERS:  # not a nanny restarting its worker
                raise _NoWorkers("the cluster has no workers left")
        who = self.client.who_has(self.parts)  # a loop that stopped failed the wait above
        held = {}
        for i, f in enumerate(self.parts):
            workers = sorted(who.get(f.key, ()))
            if not workers:
                raise EvaluationFailed(f"partition {i} is on no worker")
            held.setdefault(workers[0], []).append(i)
        # a fixed order: workers by their first partition, partitions ascending
        self.placement = dict(sorted(held.items(), key=lambda kv: kv[1][0]))

    def _check_open(self):
        if not self.parts:
            raise ValueError("this object was closed (close() released its data on the "
                             "cluster); create a new one to evaluate again")

    def _has_workers(self):
        try:
            return bool(self.client.nthreads(callback_timeout=POLL))
        except TimeoutError:  # the scheduler did not answer: assume it still has some
            return True

    def run(self, func, x, *extra):
        """``[func(x, [(index, blocks), ...], *extra)`` for each worker], in the
        placement's order; an exception raised by ``func`` propagates."""
        self._check_open()
        failures = []
        for _ in range(self.retries + 1):
            futures, x_future = self._submit(func, x, extra)
            try:
                done = self._wait(futures)
                if done:
                    return self.client.gather(futures)
            finally:
                if x_future is not None:
                    x_future.release()
            failures.append(done is None and "timed out" or "a worker left")
            # released, not cancelled: Client.cancel waits on the event loop unbounded
            for f in futures:
                f.release()
            self.attempts += 1
            try:
                self.refresh(timeout=self.timeout)
            except _NoWorkers:
                raise EvaluationFailed(
                    f"the evaluation did not complete: the cluster has no workers left "
                    f"({'; '.join(failures)}); start workers (or a new cluster) and "
                    "create this object again") from None
            except (TimeoutError, EvaluationFailed) as exc:
                failures.append(f"partitions not recovered ({exc})")
        raise EvaluationFailed(
            f"the evaluation did not complete in {self.retries + 1} attempts "
            f"({'; '.join(failures)}); the partitions' data may be lost (scattered "
            "data is not recomputed) or the cluster too busy for timeout="
            f"{self.timeout}: check the cluster's dashboard")

    def _submit(self, func, x, extra):
        client = self.client
        x_future = None
        if x.nbytes > SCATTER_BYTES:
            # hash=False: a fresh key, as a re-scatter of an equal x under the same key
            # can lose it while the previous evaluation's tasks release it
            x_future = client.scatter(x, broadcast=True, hash=False)
        payload = x if x_future is None else x_future
        futures = [client.submit(_on_worker, func, payload, idx, extra,
                                 *[self.parts[i] for i in idx], workers=[w],
                                 allow_other_workers=False, pure=False)
                   for w, idx in self.placement.items()]
        return futures, x_future

    def _wait(self, futures):
        """True when all are done (or one raised), False when a pinned worker left,
        None after ``timeout``."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        pinned = set(self.placement)
        pending = list(futures)
        while True:
            if _await(pending, _sooner(deadline, time.monotonic() + POLL), True):
                return True
            try:
                workers = set(self.client.nthreads(callback_timeout=POLL))
            except TimeoutError:  # the scheduler did not answer: the deadline decides
                workers = pinned
            if not pinned <= workers:
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def release(self):
        """Drop the partitions and the persisted arrays (the cluster frees them)."""
        for f in self.parts:
            f.release()
        self.parts, self.arrays = [], []


def _left(deadline, default):
    """Seconds to ``deadline`` (at least a millisecond), or ``default`` without one."""
    return default if deadline is None else max(deadline - time.monotonic(), 1e-3)


def _sooner(deadline, other):
    return other if deadline is None else min(deadline, other)


def _await(pending, deadline, first_error):
    """Whether the futures of the list ``pending`` all ended (or, ``first_error``,
    one raised) before ``deadline`` (None: no limit); those that ended leave the list.

    ``Future.exception(timeout)`` waits in this thread with a limit
    (``callback_timeout``), unlike ``distributed.wait``, whose limit is kept by the
    event loop: a loop that stopped (a ``LocalCluster`` in threads, its worker thread
    dead) would make that wait endless.
    """
    while pending:
        try:
            error = pending[0].exception(timeout=_left(deadline, None))
        except TimeoutError:
            return False
        if error is not None and first_error:
            return True
        pending.pop(0)
    return True


def ordered_sum(values):
    """The sum of ``values`` in their order (float64 arrays or floats)."""
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


def as_float64(a):
    return np.asarray(a, dtype=np.float64)
