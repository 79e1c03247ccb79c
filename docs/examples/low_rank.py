"""Low-rank matrix completion: optimizer memory and time to a target error

An ``n × m`` matrix ``M`` of rank ``r`` is observed at a few percent of its entries
(chosen at random). It is completed by fitting ``M ≈ U Vᵀ``, ``U`` of ``n × r`` and
``V`` of ``m × r``, to the observed entries: ``f(U, V) = ½ Σ (U Vᵀ − M)²`` over the
observed ``(i, j)``, a non-convex smooth problem whose gradient costs one pass over
the observations. The error is measured on entries held out from the fit:
``‖(U Vᵀ − M)_test‖ / ‖M_test‖``.

Four optimizers start from the same small random ``U, V`` and stop when the
held-out error reaches the target (1e-4):

- :func:`fastfactor.minimize` on the stacked factors ``X = [U; V]``, one
  ``(n + m) × r`` matrix whose second moment is factored: ``n + m + r`` numbers of
  state, with ``lr=0.01`` (fixed), ``decay_rate=-1.0`` and no first moment;
- the same with a first moment, ``beta1=0.9`` and ``lr=0.04``: faster, for
  ``(n + m) r`` more numbers of state;
- Adam (written out in NumPy: two moments of the full size, ``2 (n + m) r``
  numbers), ``lr=0.02``, ``beta1=0.9``, ``beta2=0.999``;
- :func:`scipy.optimize.minimize` with ``method="L-BFGS-B"`` (``maxcor=10``), whose
  workspace is about ``(2·maxcor + 5) (n + m) r`` numbers.

With ``decay_rate=-1.0`` Adafactor's second moment is the mean of all past squared
gradients, so it shrinks more slowly than the gradient near the minimum and a fixed
``lr`` converges (linearly) instead of hovering at a distance of order ``lr``. The
step sizes of fastfactor and Adam were picked from a few trials at the small size.

``python low_rank.py --size full`` (the default): a 4000 × 3000 matrix of rank 10,
300,000 observed entries (2.5 %); ``--size small``: 400 × 300, rank 5, 18,000 entries
(15 %). It prints a line per optimizer as it finishes, and writes the plot
(``low_rank.png``) into the current directory, or ``--out-dir DIR``. The plot shows the
full size, timed with one thread: ``NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python
docs/examples/low_rank.py --out-dir docs/examples`` regenerates it.

At the full size, all four reach the target. Adafactor without a first moment keeps
0.053 MiB of state, a tenth of the parameters (Adam: twice the parameters, 1.07
MiB; L-BFGS-B: 27 times, 14.2 MiB), but needs 995 iterations where Adam needs 260
and L-BFGS-B 40; with ``beta1=0.9`` it needs 280, for 1.1 times the parameters in
state. On this smooth deterministic problem L-BFGS-B is the fastest by far, as long
as its workspace fits; the factored state is what remains affordable when it does
not.
The state memory is counted from the optimizers' own arrays (for fastfactor, the
:class:`fastfactor.Adafactor` stepper's ``state_dict``); the ratios do not depend on
the size, and the script also prints them for ``n = m = 10⁶`` and rank 100, where
the parameters take 1.5 GiB, Adam's state 3 GiB, L-BFGS-B's 40 GiB and Adafactor's
15 MiB.
"""

import argparse
import os
import time

import numpy as np
import scipy.optimize as so
import scipy.sparse as sp

import fastfactor

SIZES = {"small": {"n": 400, "m": 300, "rank": 5, "per_row": 45, "maxiter": 3000},
         "full": {"n": 4000, "m": 3000, "rank": 10, "per_row": 75, "maxiter": 3000}}
TARGET = 1e-4
N_TEST = 20_000
CHECK_EVERY = 5  # iterations between held-out evaluations

FASTFACTOR = {"lr": 0.01, "decay_rate": -1.0}
FASTFACTOR_MOMENTUM = {"lr": 0.04, "decay_rate": -1.0, "beta1": 0.9}
METHODS = ("fastfactor", "fastfactor, beta1=0.9", "Adam", "L-BFGS-B")
ADAM = {"lr": 0.02, "beta1": 0.9, "beta2": 0.999, "eps": 1e-12}
LBFGS_MAXCOR = 10
#: The variables that set the thread counts of the timings.
THREAD_VARS = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def threads():
    """The thread setting of the timings: each of THREAD_VARS with its value, or unset."""
    return ", ".join(f"{k}={os.environ[k]}" if os.environ.get(k) else f"{k} unset"
                     for k in THREAD_VARS)


class Completion:
    """The observed entries of a random rank-``rank`` matrix, the objective and the
    held-out error."""

    def __init__(self, n, m, rank, per_row, seed=0):
        rng = np.random.default_rng(seed)
        self.n, self.m, self.rank = n, m, rank
        U = rng.standard_normal((n, rank))
        V = rng.standard_normal((m, rank)) / np.sqrt(rank)  # entries of M ~ N(0, 1)
        nnz = n * per_row
        flat = rng.choice(n * m, size=nnz + N_TEST, replace=False)
        obs, test = np.sort(flat[:nnz]), flat[nnz:]
        self.rows, self.cols = obs // m, obs % m
        self.vals = np.einsum("ij,ij->i", U[self.rows], V[self.cols])
        self.trows, self.tcols = test // m, test % m
        self.tvals = np.einsum("ij,ij->i", U[self.trows], V[self.tcols])
        # The residuals go into the data of a CSR matrix with the observed pattern
        # (obs is sorted row-major, CSR order), so that the gradient is two sparse
        # products: (E V, Eᵀ U).
        self.E = sp.csr_matrix((np.zeros(nnz), (self.rows, self.cols)), shape=(n, m))
        self.nnz = nnz
        self.nfev = 0

    def x0(self, seed=1):
        rng = np.random.default_rng(seed)
        return 0.1 * rng.standard_normal((self.n + self.m, self.rank))

    def fun_and_grad(self, X):
        """``f`` (the mean over observed entries of ½ residual²) and its gradient, in
        X's shape ``(n + m, rank)``."""
        self.nfev += 1
        U, V = X[:self.n], X[self.n:]
        r = np.einsum("ij,ij->i", U[self.rows], V[self.cols]) - self.vals
        self.E.data = r
        g = np.empty_like(X)
        g[:self.n] = self.E @ V
        g[self.n:] = self.E.T @ U
        g /= self.nnz
        return 0.5 * float(r @ r) / self.nnz, g

    def test_error(self, X):
        U, V = X[:self.n], X[self.n:]
        pred = np.einsum("ij,ij->i", U[self.trows], V[self.tcols])
        return float(np.linalg.norm(pred - self.tvals) / np.linalg.norm(self.tvals))


class Monitor:
    """Records ``(seconds, iterations, held-out error)`` every CHECK_EVERY iterations
    and says when the target is reached."""

    def __init__(self, problem):
        self.problem, self.trace = problem, []
        self.t0 = time.perf_counter()
        self.reached = None  # (seconds, iterations) at the target

    def __call__(self, nit, X):
        if nit % CHECK_EVERY:
            return False
        err = self.problem.test_error(X)
        seconds = time.perf_counter() - self.t0
        self.trace.append((seconds, nit, err))
        if err <= TARGET and self.reached is None:
            self.reached = (seconds, nit)
        return err <= TARGET


def run_fastfactor(problem, maxiter, options=FASTFACTOR):
    mon = Monitor(problem)

    def callback(intermediate_result):
        if mon(intermediate_result.nit, intermediate_result.x):
            raise StopIteration

    res = fastfactor.minimize(problem.fun_and_grad, problem.x0(), jac=True, callback=callback,
                              options=dict(options, maxiter=maxiter, gtol=0.0))
    return res.x, mon


def run_adam(problem, maxiter):
    """Adam (Kingma & Ba) with bias correction; ``m`` and ``v`` are full-size arrays."""
    mon = Monitor(problem)
    X = problem.x0()
    m1, m2 = np.zeros_like(X), np.zeros_like(X)
    lr, b1, b2, eps = ADAM["lr"], ADAM["beta1"], ADAM["beta2"], ADAM["eps"]
    for t in range(1, maxiter + 1):
        _, g = problem.fun_and_grad(X)
        m1 *= b1
        m1 += (1 - b1) * g
        m2 *= b2
        m2 += (1 - b2) * g * g
        step = (lr / (1 - b1**t)) * m1 / (np.sqrt(m2 / (1 - b2**t)) + eps)
        X -= step
        if mon(t, X):
            break
    return X, mon, {"m": m1, "v": m2}


def run_lbfgs(problem, maxiter):
    mon = Monitor(problem)
    shape = (problem.n + problem.m, problem.rank)
    count = [0]

    def fg(x):
        f, g = problem.fun_and_grad(x.reshape(shape))
        return f, g.ravel()

    def callback(intermediate_result):
        count[0] += 1
        if mon(count[0], intermediate_result.x.reshape(shape)):
            raise StopIteration

    res = so.minimize(fg, problem.x0().ravel(), jac=True, method="L-BFGS-B", callback=callback,
                      options={"maxiter": maxiter, "maxcor": LBFGS_MAXCOR, "gtol": 0.0,
                               "ftol": 0.0})
    return res.x.reshape(shape), mon


def state_bytes(problem):
    """Bytes of optimizer state per method (and of the parameters)."""
    shape = (problem.n + problem.m, problem.rank)
    ff = []
    for options in (FASTFACTOR, FASTFACTOR_MOMENTUM):
        opt = fastfactor.Adafactor(shape, **options)
        x = problem.x0()
        opt.step(x, np.ones_like(x))  # the state is allocated at the first step
        ff.append(sum(a.nbytes for b in opt.state_dict()["blocks"] for a in b.values()))
    N = shape[0] * shape[1]
    k = LBFGS_MAXCOR
    # SciPy's L-BFGS-B work arrays: 2 k N (the correction pairs) + 5 N + 11 k² + 8 k
    # float64, and 3 N int32.
    lbfgs = 8 * (2 * k * N + 5 * N + 11 * k * k + 8 * k) + 4 * 3 * N
    return {"fastfactor": ff[0], "fastfactor, beta1=0.9": ff[1], "Adam": 8 * 2 * N,
            "L-BFGS-B": lbfgs, "parameters": 8 * N}


#: (n, m, rank) of the projected state sizes printed at the end
PROJECTION = (1_000_000, 1_000_000, 100)


def projected_state(n, m, rank, maxcor=LBFGS_MAXCOR):
    """Bytes of parameters and optimizer state (float64) for an n × m, rank-``rank``
    completion, by the same formulas."""
    N = (n + m) * rank
    return {"parameters": 8 * N, "fastfactor": 8 * (n + m + rank),
            "fastfactor, beta1=0.9": 8 * (n + m + rank + N), "Adam": 16 * N,
            "L-BFGS-B": 8 * (2 * maxcor * N + 5 * N + 11 * maxcor**2 + 8 * maxcor) + 12 * N}


def main(size="small", plot=True, out_dir="."):
    """Complete the matrix with the four optimizers; print time, iterations, error
    and state memory, a line per optimizer as it finishes; with ``plot``, write
    ``low_rank.png`` into ``out_dir`` (default: the current directory). Returns a dict
    per method (``seconds``, ``nit`` at the target or at the end, ``error``,
    ``reached``, ``trace``, ``state``)."""
    cfg = SIZES[size]
    problem = Completion(cfg["n"], cfg["m"], cfg["rank"], cfg["per_row"])
    maxiter = cfg["maxiter"]
    n, m, r = cfg["n"], cfg["m"], cfg["rank"]
    print(f"matrix completion: {n} x {m}, rank {r}, {problem.nnz:,} observed entries, "
          f"{(n + m) * r:,} unknowns; target held-out error {TARGET:g}; "
          f"timings with {threads()}", flush=True)
    # Compile fastfactor's kernels outside the timing (Numba, on first use).
    fastfactor.minimize(problem.fun_and_grad, problem.x0(), jac=True,
                        options=dict(FASTFACTOR, maxiter=2))

    state = state_bytes(problem)
    out = {}
    runners = {"fastfactor": run_fastfactor,
               "fastfactor, beta1=0.9": lambda p, k: run_fastfactor(p, k, FASTFACTOR_MOMENTUM),
               "Adam": run_adam, "L-BFGS-B": run_lbfgs}
    print(f"{'method':<23}{'time (s)':>10}{'iterations':>12}{'gradients':>11}"
          f"{'held-out err':>14}{'state (MiB)':>13}{'state/params':>14}", flush=True)
    for name in METHODS:
        runner = runners[name]
        problem.nfev = 0
        X, mon = runner(problem, maxiter)[:2]
        last_s, last_nit, err = mon.trace[-1]
        seconds, nit = mon.reached if mon.reached else (last_s, last_nit)
        o = out[name] = {"seconds": seconds, "nit": nit, "nfev": problem.nfev, "error": err,
                         "reached": mon.reached is not None, "trace": mon.trace,
                         "state": state[name]}
        mark = "" if o["reached"] else " (target not reached)"
        print(f"{name:<23}{o['seconds']:>10.2f}{o['nit']:>12d}{o['nfev']:>11d}{o['error']:>14.2e}"
              f"{o['state'] / 2**20:>13.3f}{o['state'] / state['parameters']:>14.3f}{mark}",
              flush=True)
    big = projected_state(*PROJECTION)
    print(f"state at n = m = {PROJECTION[0]:,}, rank {PROJECTION[2]}: "
          + ", ".join(f"{k} {v / 2**30:.3g} GiB" for k, v in big.items()))
    out["state"] = state
    if plot:
        _plot(out, cfg, problem.nnz, os.path.join(out_dir, "low_rank.png"))
    return out


COLORS = ("C0", "C9", "C1", "C2")


def _plot(out, cfg, nnz, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    for name, color in zip(METHODS, COLORS, strict=True):
        s, _, e = np.array(out[name]["trace"]).T
        ax1.semilogy(s, e, color=color, lw=1.2, label=f"{name} ({out[name]['nit']} it.)")
    ax1.axhline(TARGET, color="0.5", ls="--", lw=0.8)
    ax1.set_xlabel("time (s)")
    ax1.set_ylabel("held-out relative error")
    ax1.set_title(f"{cfg['n']} × {cfg['m']}, rank {cfg['rank']}, {nnz:,} entries", fontsize=10)
    ax1.legend(fontsize=8)
    vals = [out[k]["state"] / 2**20 for k in METHODS]
    bars = ax2.bar(["fastfactor", "fastfactor\nbeta1=0.9", "Adam", "L-BFGS-B"], vals,
                   color=COLORS)
    ax2.set_yscale("log")
    ax2.set_ylabel("optimizer state (MiB)")
    ax2.set_title(f"parameters: {out['state']['parameters'] / 2**20:.2f} MiB", fontsize=10)
    for bar, v in zip(bars, vals, strict=True):
        ax2.text(bar.get_x() + bar.get_width() / 2, v * 1.1, f"{v:.2g}", ha="center", fontsize=8)
    ax2.set_ylim(min(vals) / 2, max(vals) * 4)
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
