"""Linear least squares by mini-batches: a million rows

A linear least-squares fit ``min ‖A x - b‖²`` with ``A`` of 1,000,000 × 50 (full
size; 20,000 × 50 at the small size), solved by :func:`fastfactor.minimize_stochastic`
from batches of 4096 rows drawn by :func:`fastfactor.minibatches`, against
:func:`scipy.sparse.linalg.lsqr` on the same data. Each Adafactor update sees one
batch: it never computes the full gradient ``Aᵀ(Ax - b)``, and it needs only the
batch in memory (the data could come from disk or a generator), where LSQR
multiplies by the whole of ``A`` and ``Aᵀ`` twice per iteration.

The columns of ``A`` have scales spread over two decades (condition number about
100) and ``b`` carries noise. The error of a solution is measured against the exact
least-squares solution ``x_ls`` (from the normal equations, one pass over the data)
and against the coefficients that generated the data; the statistical error of
``x_ls`` itself sets how close to it a fit needs to come. The stochastic fit uses
steps in ``x``'s own units (``scale_parameter=False``) of size ``3 / sqrt(t)``, a
first moment (``beta1=0.9``) and the average of the iterates after the first 200
updates (``average=200``); LSQR runs with its default tolerances.

Memory is the peak that each solver allocates beyond the data (``tracemalloc``);
time is wall-clock, excluding data generation.

``python linear_minibatch.py --size full`` (the default); ``--size small`` runs 20,000
rows. It prints a line per solver as it finishes, and writes the plot
(``linear_minibatch.png``) into the current directory, or ``--out-dir DIR``. The plot
shows the full size, timed with one thread: ``NUMBA_NUM_THREADS=1
OPENBLAS_NUM_THREADS=1 python docs/examples/linear_minibatch.py --out-dir
docs/examples`` regenerates it.

At the full size, six epochs (1,470 updates, 0.8 s) bring the averaged iterate to a
relative distance of 4.2e-5 from ``x_ls``, seven times below the statistical error of
``x_ls`` itself (3.1e-4), so that both are equally close to the true coefficients
(3.3e-4 and 3.1e-4). LSQR needs 118 iterations, 237 passes over the data (4.6 s),
and reaches 1.3e-6. Beyond the data, the stochastic fit allocates 10.9 MiB at its
peak, mostly the shuffled row order of an epoch (8 bytes per row), LSQR 30.5 MiB
(vectors of the length of ``b``).
"""

import argparse
import os
import time
import tracemalloc

import numpy as np
from scipy.sparse.linalg import lsqr

import fastfactor

#: rows, epochs of the stochastic fit
SIZES = {"small": (20_000, 200), "full": (1_000_000, 6)}
N_COLS = 50
BATCH = 4096
NOISE = 0.5
OPTIONS = {"lr": lambda t: 3.0 / np.sqrt(t), "beta1": 0.9, "scale_parameter": False,
           "average": 200}
#: The variables that set the thread counts of the timings.
THREAD_VARS = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def threads():
    """The thread setting of the timings: each of THREAD_VARS with its value, or unset."""
    return ", ".join(f"{k}={os.environ[k]}" if os.environ.get(k) else f"{k} unset"
                     for k in THREAD_VARS)


def make_data(n_rows, n_cols=N_COLS, seed=0):
    """``A`` (columns of scales 0.1 to 10), the true ``x`` and ``b = A x + noise``."""
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(-1, 1, n_cols)
    x_true = rng.standard_normal(n_cols) / scales
    A = np.empty((n_rows, n_cols))
    b = np.empty(n_rows)
    for lo in range(0, n_rows, 100_000):  # in chunks: no full-size temporaries
        hi = min(lo + 100_000, n_rows)
        A[lo:hi] = rng.standard_normal((hi - lo, n_cols)) * scales
        b[lo:hi] = A[lo:hi] @ x_true + NOISE * rng.standard_normal(hi - lo)
    return A, b, x_true


def exact_solution(A, b):
    """``x_ls`` from the normal equations ``AᵀA x = Aᵀb`` (Cholesky; cond(AᵀA) ≈ 1e4)."""
    G, h = A.T @ A, A.T @ b
    L = np.linalg.cholesky(G)
    return np.linalg.solve(L.T, np.linalg.solve(L, h))


def batch_loss(x, batch):
    """Half the mean squared residual on a batch, and its gradient."""
    Ab, bb = batch
    r = Ab @ x - bb
    return 0.5 * float(r @ r) / bb.size, Ab.T @ r / bb.size


def rel(x, ref):
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


def run_stochastic(A, b, epochs, callback=None):
    batches = fastfactor.minibatches(A, b, batch_size=BATCH, seed=1)
    return fastfactor.minimize_stochastic(batch_loss, np.zeros(A.shape[1]), batches, jac=True,
                                          callback=callback,
                                          options=dict(OPTIONS, epochs=epochs))


def run_lsqr(A, b, iter_lim=10_000):
    return lsqr(A, b, iter_lim=iter_lim)


def peak_memory(fn):
    """The peak of traced allocations (bytes) while ``fn()`` runs."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(size="small", plot=True, out_dir="."):
    """Fit by mini-batches and by LSQR; print time, error and memory, a line per solver
    as it finishes; with ``plot``, write ``linear_minibatch.png`` into ``out_dir``
    (default: the current directory).

    Returns a dict with ``x_true``, ``x_ls`` and, per solver, ``x``, ``seconds``,
    ``memory`` (bytes), ``error_ls`` and ``error_true`` (relative errors against
    ``x_ls`` and ``x_true``).
    """
    n_rows, epochs = SIZES[size]
    A, b, x_true = make_data(n_rows)
    x_ls = exact_solution(A, b)
    print(f"linear least squares, A: {n_rows:,} x {N_COLS} "
          f"({A.nbytes / 2**20:.0f} MiB), batches of {BATCH} rows; timings with {threads()}")
    print(f"x_ls vs the true coefficients: relative error {rel(x_ls, x_true):.2e}", flush=True)

    # Compile fastfactor's kernels outside the timing (Numba, on first use).
    fastfactor.minimize_stochastic(batch_loss, np.zeros(N_COLS), [(A[:8], b[:8])], jac=True,
                                   options={"maxiter": 2})

    # (passes over the data, error of the iterate, error of the running average)
    trace = []
    rows_per_update = min(BATCH, n_rows)
    avg = {"x": np.zeros(N_COLS), "n": 0}

    def record(intermediate_result):
        nit, x = intermediate_result.nit, intermediate_result.x
        if nit > OPTIONS["average"]:  # the running mean that `average` returns
            avg["n"] += 1
            avg["x"] += (x - avg["x"]) / avg["n"]
        if nit % 10 == 0:
            trace.append((nit * rows_per_update / n_rows, rel(x, x_ls),
                          rel(avg["x"], x_ls) if avg["n"] else np.nan))

    def finished(name, label, o):
        o["error_ls"], o["error_true"] = rel(o["x"], x_ls), rel(o["x"], x_true)
        out[name] = o
        print(f"{label:<22}{o['seconds']:>10.2f}{o['passes']:>8d}{o['nit']:>12d}"
              f"{o['error_ls']:>13.2e}{o['error_true']:>13.2e}{o['memory'] / 2**20:>14.2f}",
              flush=True)

    out = {"x_true": x_true, "x_ls": x_ls}
    print(f"{'solver':<22}{'time (s)':>10}{'passes':>8}{'updates/its':>12}"
          f"{'err vs x_ls':>13}{'err vs true':>13}{'memory (MiB)':>14}", flush=True)
    t0 = time.perf_counter()
    res = run_stochastic(A, b, epochs, callback=record if plot else None)
    seconds = time.perf_counter() - t0
    # Memory in short separate runs: the peak is reached in the first epoch/iterations.
    finished("minibatch", "minimize_stochastic",
             {"x": res.x, "seconds": seconds, "nit": res.nit, "passes": res.epochs,
              "memory": peak_memory(lambda: run_stochastic(A, b, 1))})
    t0 = time.perf_counter()
    x, istop, itn = run_lsqr(A, b)[:3]
    seconds = time.perf_counter() - t0
    finished("lsqr", "scipy lsqr",
             {"x": x, "seconds": seconds, "nit": itn, "passes": 2 * itn + 1,
              "memory": peak_memory(lambda: run_lsqr(A, b, iter_lim=3))})
    if plot:
        lsqr_trace = []
        k = 1
        while k < itn:
            lsqr_trace.append((2 * k + 1, rel(run_lsqr(A, b, iter_lim=k)[0], x_ls)))
            k *= 2
        lsqr_trace.append((2 * itn + 1, out["lsqr"]["error_ls"]))
        _plot(trace, lsqr_trace, out, n_rows, os.path.join(out_dir, "linear_minibatch.png"))
    return out


def _plot(trace, lsqr_trace, out, n_rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    p, e, e_avg = np.array(trace).T
    ax.loglog(p, e, color="C0", lw=0.6, alpha=0.45, label="minimize_stochastic: iterate")
    ax.loglog(p, e_avg, color="C0", lw=1.5,
              label=f"minimize_stochastic: average, {out['minibatch']['seconds']:.1f} s")
    p, e = np.array(lsqr_trace).T
    ax.loglog(p, e, "o-", color="C1", ms=3, lw=1,
              label=f"scipy lsqr, {out['lsqr']['seconds']:.1f} s")
    stat = rel(out["x_ls"], out["x_true"])
    ax.axhline(stat, color="0.5", ls="--", lw=0.8)
    ax.text(p[0], stat * 1.15, "statistical error of x_ls", fontsize=8, color="0.3")
    ax.set_xlabel("passes over the data")
    ax.set_ylabel("‖x − x_ls‖ / ‖x_ls‖")
    ax.set_title(f"least squares, {n_rows:,} × {N_COLS}, batches of {BATCH}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the plot")
    parser.add_argument("--out-dir", default=".",
                        help="where the plot goes (default: the current directory)")
    a = parser.parse_args()
    main(a.size, plot=not a.no_plot, out_dir=a.out_dir)
