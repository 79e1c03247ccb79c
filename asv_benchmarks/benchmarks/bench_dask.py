"""``fastfactor.dask`` on a 2-worker ``LocalCluster`` (processes, 1 thread each).

``DaskOverhead.time_evaluation``: one :class:`fastfactor.dask.DataSum` evaluation
with a trivial ``fg`` (``(0.0, zeros)``, ``n = 50``) over 8 partitions: the latency
floor of a round trip through the scheduler and both workers. ``DaskReduction``:
one evaluation whose gradient is 1000 × 1000 (``FASTFACTOR_BENCH_SIZE=smoke``:
100 × 100), 8 partitions: ``x`` is scattered to both workers, each returns its
partitions' summed gradient, the client adds them. The cluster starts once per
process (in ``setup``, seconds) and the first evaluation warms it; skipped
(``NotImplementedError``) where Dask is not installed.
"""

import numpy as np

from ._common import LARGE_TIMING, SMALL_TIMING, pick, timing

PARTITIONS = 8
#: (rows of the data, side of the square gradient)
REDUCTION = pick((800, 100), (8000, 1000))

_CLUSTER = {}


def _client():
    """The process's cluster and client (NotImplementedError without Dask)."""
    if "client" not in _CLUSTER:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise NotImplementedError("dask.distributed is not installed") from None
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        _CLUSTER.update(cluster=cluster, client=Client(cluster))
    return _CLUSTER["client"]


def _objectives():
    """The benchmarks' ``fg``s, made here as local functions: the workers cannot import
    this suite's modules, and Dask sends local functions by value (cloudpickle) where
    it sends module-level ones by reference."""

    def trivial(x, A):
        return 0.0, np.zeros_like(x)

    def scaled(x, A):
        # a gradient of x's size at the cost of one pass over it: the reduction is timed
        return float(A[0, 0]), x * A[0, 0]
    return trivial, scaled


def _datasum(fg, rows, cols):
    import dask.array as da

    from fastfactor.dask import DataSum

    client = _client()
    A = da.random.default_rng(0).standard_normal((rows, cols),
                                                 chunks=(rows // PARTITIONS, cols))
    return DataSum(fg, A, client=client)


@timing(SMALL_TIMING)
class DaskOverhead:
    def setup(self):
        if "overhead" not in _CLUSTER:
            _CLUSTER["overhead"] = _datasum(_objectives()[0], 800, 4)
        self.ds, self.x = _CLUSTER["overhead"], np.zeros(50)
        self.ds(self.x)

    def time_evaluation(self):
        self.ds(self.x)


@timing(LARGE_TIMING)
class DaskReduction:
    def setup(self):
        rows, side = REDUCTION
        if "reduction" not in _CLUSTER:
            _CLUSTER["reduction"] = _datasum(_objectives()[1], rows, 4)
        self.ds = _CLUSTER["reduction"]
        self.x = np.random.default_rng(1).standard_normal((side, side))
        self.ds(self.x)

    def time_evaluation(self):
        self.ds(self.x)
