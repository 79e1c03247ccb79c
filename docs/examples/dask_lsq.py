"""Least squares on a cluster: data larger than a worker's memory

A linear least-squares fit ``min ‖A x - b‖²`` with ``A`` of 4,400,000 × 50 float64
(1.67 GiB with ``b``; 40,000 × 20 at the small size) on a ``LocalCluster`` of 2
worker processes of 1 thread each, each limited to 1.5 GiB of memory (without
spilling to disk): the data does not fit in one worker. Dask generates ``A`` and
``b`` chunk by chunk on the workers (32 row chunks; 8 at the small size), and nothing
ever gathers them:
:func:`fastfactor.dask.least_squares` evaluates the residuals and Jacobians of each
partition on the worker that holds it. The reference solution solves the normal
equations ``AᵀA x = Aᵀb`` from Dask reductions (``cond(AᵀA)`` is about 1e4).

It prints a line per step: the cluster and the data, the reference's time, the
fit's time, evaluations (per phase: nfev/njev) and distance to the reference, the
bytes that moved between workers during the fit, from its first iteration on (from
the workers' transfer logs: none), and the cost of one
:class:`fastfactor.dask.DataSum` evaluation with a trivial objective (the latency
floor) and with a 50-element gradient over the data. The same lines go to
``dask_lsq.txt`` in the current directory, or ``--out-dir DIR``
(``--out-dir docs/examples`` to update the copy in the docs). Timings with
``NUMBA_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` as set (the script prints them).

``python dask_lsq.py --size full`` (the default) or ``--size small``. The same code
runs on a real cluster: replace the ``LocalCluster`` by the address of a scheduler
(``Client("tcp://scheduler:8786")``), see ``docs/dask.rst``.
"""

import argparse
import os
import time

import numpy as np

#: rows, columns, row chunks, workers' memory limit
SIZES = {"small": (40_000, 20, 8, "512MiB"), "full": (4_400_000, 50, 32, "1.5GiB")}
#: The workers keep their partitions in memory: no spilling to disk below the limit
#: (Dask's default spills from 60% of it, which would make every pass read the disk).
MEMORY = {"distributed.worker.memory.target": False,
          "distributed.worker.memory.spill": False}
NOISE = 0.1
THREAD_VARS = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def threads():
    return ", ".join(f"{k}={os.environ[k]}" if os.environ.get(k) else f"{k} unset"
                     for k in THREAD_VARS)


def make_data(m, n, chunks, seed=0):
    """Lazy ``A`` (columns of scales 0.1 to 10) and ``b = A x_true + noise``."""
    import dask.array as da

    rng = da.random.default_rng(seed)
    rows = -(-m // chunks)
    scales = 10.0 ** np.linspace(-1, 1, n)
    A = rng.standard_normal((m, n), chunks=(rows, n)) * scales
    x_true = np.linspace(-1, 1, n) / scales
    b = A @ x_true + NOISE * rng.standard_normal(m, chunks=rows)
    return A, b, x_true


def moved(client):
    """Bytes received by all workers from other workers so far."""
    logs = client.run(lambda dask_worker: sum(e["total"] for e in
                                              dask_worker.transfer_incoming_log))
    return sum(logs.values())


def per_evaluation(ds, x, repeat):
    ds(x)  # warm: the function reaches the workers' caches
    t0 = time.perf_counter()
    for _ in range(repeat):
        ds(x)
    return (time.perf_counter() - t0) / repeat


def main(size="small", out_dir="."):
    """Run the fit on a fresh LocalCluster; print a line per step and write them to
    ``dask_lsq.txt`` in ``out_dir``. Returns a dict of the figures."""
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster

    import fastfactor.dask as ffd

    m, n, chunks, limit = SIZES[size]
    lines = []

    # defined here, not at module level: cloudpickle sends closures by value, so the
    # workers need not import this script
    def residuals(x, A, b):
        return A @ x - b

    def jacobian(x, A, b):
        return A

    def fg(x, A, b):
        r = A @ x - b
        return 0.5 * float(r @ r), A.T @ r

    def say(text):
        print(text, flush=True)
        lines.append(text)

    out = {}
    with dask.config.set(MEMORY), LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, memory_limit=limit,
            dashboard_address=":0") as cluster, Client(cluster) as client:
        A, b, x_true = make_data(m, n, chunks)
        A, b = client.persist([A, b])  # generated chunk-wise on the workers
        da.compute(A[:1, 0], b[:1])  # wait for the data
        say(f"cluster: 2 workers x 1 thread, memory limit {limit} each; timings with "
            f"{threads()}")
        say(f"data: A {m:,} x {n} + b in {chunks} row chunks, "
            f"{(A.nbytes + b.nbytes) / 2**30:.2f} GiB, never gathered")

        t0 = time.perf_counter()
        G, h = da.compute(A.T @ A, A.T @ b)
        x_ref = np.linalg.solve(G, h)
        out["reference_seconds"] = time.perf_counter() - t0
        say(f"reference, normal equations by Dask: {out['reference_seconds']:.1f} s")

        start = []  # bytes moved before the first iteration (the partitions' set-up)

        def first_iteration(intermediate_result):
            if not start:
                start.append(moved(client))

        t0 = time.perf_counter()
        res = ffd.least_squares(residuals, np.zeros(n), A, b, jac=jacobian,
                                callback=first_iteration)
        out["seconds"] = time.perf_counter() - t0
        out["moved"] = moved(client) - start[0]
        out["error"] = float(np.linalg.norm(res.x - x_ref) / np.linalg.norm(x_ref))
        out.update(nfev=res.nfev, njev=res.njev, phase=res.phase, success=res.success,
                   cost=res.cost)
        phases = ", ".join(f"{k} {v.nfev}/{v.njev}" for k, v in res.phases.items())
        say(f"fastfactor.dask.least_squares: {out['seconds']:.1f} s, nfev {res.nfev}, "
            f"njev {res.njev} ({phases}), x from {res.phase}, "
            f"||x - x_ref|| / ||x_ref|| = {out['error']:.1e}")
        say(f"moved between workers during the fit: {out['moved']} bytes")

        with ffd.DataSum(lambda x, A, b: (0.0, np.zeros_like(x)), A, b) as ds:
            out["floor"] = per_evaluation(ds, np.zeros(n), 20)
        with ffd.DataSum(fg, A, b) as ds:
            out["gradient"] = per_evaluation(ds, res.x, 5)
        say(f"one DataSum evaluation: {1e3 * out['floor']:.1f} ms with a trivial fg, "
            f"{1e3 * out['gradient']:.1f} ms for the gradient over the data")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "dask_lsq.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--out-dir", default=".",
                        help="where dask_lsq.txt goes (default: the current directory)")
    a = parser.parse_args()
    main(a.size, out_dir=a.out_dir)
