"""Demo: a low-rank matrix fit solved with ``scipy.optimize.minimize(method=adafactor)``.

Run ``python -m fastfactor``. Fits ``M ~ U V^T`` (rank 5) by least squares over the
two factor matrices; both are factored blocks of one flat x (the ``shapes`` option).
``python -m fastfactor --precompile [float32] [float64]`` instead compiles the kernels
into Numba's on-disk cache ahead of time (see ``fastfactor._precompile``).
"""

import argparse
import sys
import time

import numpy as np
import scipy.optimize as so

from . import adafactor
from ._backends import get_backend


def low_rank_problem(n=300, m=200, rank=5, seed=0):
    """A rank-``rank`` target ``M`` and ``f(x) = ||U V^T - M||^2 / 2`` with its gradient."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, m)) / np.sqrt(rank)
    split = n * rank

    def fun_and_grad(x):
        U = x[:split].reshape(n, rank)
        V = x[split:].reshape(m, rank)
        E = U @ V.T - M
        g = np.concatenate([(E @ V).ravel(), (E.T @ U).ravel()])
        return 0.5 * np.sum(E * E), g

    x0 = 0.1 * rng.standard_normal(split + m * rank)
    return M, fun_and_grad, x0, [(n, rank), (m, rank)]


def main(maxiter=5000):
    M, fg, x0, shapes = low_rank_problem()
    print(f"fastfactor demo: fit a {M.shape[0]}x{M.shape[1]} rank-5 matrix as U V^T "
          f"({x0.size} unknowns) with scipy.optimize.minimize(method=adafactor)")
    lines = []  # the header, printed after any compile line

    def progress(intermediate_result):
        if intermediate_result.nit % 100 == 0:
            if not lines:
                lines.append(f"{'iter':>6} {'f(x)':>12}")
                print(lines[0])
            print(f"{intermediate_result.nit:>6} {intermediate_result.fun:12.4e}")

    compiled = []

    def notice(line):
        compiled.append(line)
        print(line, flush=True)

    start = time.perf_counter()
    with get_backend("cpu").compile_notice(True, report=notice):
        res = so.minimize(fg, x0, jac=True, method=adafactor, callback=progress,
                          options={"shapes": shapes, "maxiter": maxiter, "gtol": 1e-5,
                                   "beta1": 0.9})
    seconds = time.perf_counter() - start
    n, m = M.shape
    U = res.x[: n * 5].reshape(n, 5)
    V = res.x[n * 5:].reshape(m, 5)
    rel = np.linalg.norm(U @ V.T - M) / np.linalg.norm(M)
    print(res)
    print(f"relative error ||U V^T - M|| / ||M|| = {rel:.2e} after {res.nit} iterations, "
          f"{seconds:.2f} s" + (" (including the compilation)" if compiled else ""))
    print(f"optimizer state: {n + 5 + m + 5} numbers (factored), "
          f"vs {2 * x0.size} for Adam (first and second moments of {x0.size} unknowns)")
    return 0 if rel < 1e-3 else 1


def cli(argv=None):
    """The command line: the demo, or ``--precompile [DTYPE ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m fastfactor",
        description="Without options: a demo, a rank-5 fit of a 300x200 matrix solved "
                    "with scipy.optimize.minimize(method=fastfactor.adafactor).")
    parser.add_argument("--precompile", nargs="*", metavar="DTYPE",
                        help="compile the kernels for these dtypes (float32, float64; "
                             "default: both) into Numba's on-disk cache, for container "
                             "images and clusters, then exit")
    args = parser.parse_args(argv)
    if args.precompile is not None:
        from ._precompile import DTYPES, cache_folder, precompile

        try:
            seconds = precompile(args.precompile or DTYPES)
        except ValueError as exc:
            parser.error(str(exc))
        print(f"fastfactor: kernels compiled and cached in {seconds:.1f} s "
              f"(in {cache_folder()})")
        return 0
    return main()


if __name__ == "__main__":
    sys.exit(cli())
