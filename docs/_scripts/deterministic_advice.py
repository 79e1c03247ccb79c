"""Settings for deterministic problems: which converge, and in how many iterations

Five small, smooth, deterministic problems with exact gradients, each solved by
:func:`fastfactor.minimize` from the same starting point with the settings of
``SETTINGS`` (the defaults, momentum, a smaller fixed step, three decaying schedules,
momentum with ``scale_parameter=False``), ``gtol=1e-5`` (the default) and at most
``maxiter=20000`` iterations:

- *quadratic*: ``f(X) = ½‖X − T‖²`` with ``T = arange(12).reshape(3, 4)``, from
  ``X = ones((3, 4))`` (the first example of the "Getting started" page; one 3 × 4
  factored block);
- *Rosenbrock*: :func:`scipy.optimize.rosen` in 10 dimensions, from
  ``(-1.2, 1, -1.2, 1, ...)`` (one vector block);
- *bounded least squares*: ``½‖A x − b‖²`` with a 50 × 20 Gaussian ``A``, ``b = A x_true
  + noise``, ``x >= 0`` (11 of the 20 bounds active at the solution), from ``x = 1``;
  the solution from :func:`scipy.optimize.lsq_linear`;
- *low-rank fit*: the rank-5 fit ``M ≈ U Vᵀ`` of a 300 × 200 matrix of ``python -m
  fastfactor`` (two factored blocks, 2,500 unknowns);
- *softmax regression*: the L2-regularised (``λ = 1``) negative log-likelihood of a
  5-class softmax model of 500 samples with 20 features, ``W`` a 20 × 5 matrix from
  ``W = 0``; the solution from L-BFGS-B with ``gtol=1e-10``.

The error is the relative distance to the solution, ``‖x − x*‖ / ‖x*‖`` (for the
low-rank fit, whose factors are not unique, ``‖U Vᵀ − M‖ / ‖M‖``). Iteration counts and
errors are deterministic (fixed seeds, no timings); another BLAS may change them
slightly.

``python deterministic_advice.py --out-dir DIR`` prints a line per problem as it
finishes, then the table, and writes the table (``deterministic_advice.inc``) into
``DIR`` (default: the current directory); ``--maxiter`` and ``--problem`` (repeatable)
change the iteration limit and choose problems. The docs' file comes from
``NUMBA_NUM_THREADS=1 python docs/_scripts/deterministic_advice.py --out-dir docs``.
"""

import argparse
import os

import numpy as np
import scipy.optimize as so

import fastfactor
from fastfactor.__main__ import low_rank_problem

MAXITER = 20000
GTOL = 1e-5


# --- the problems -------------------------------------------------------------------------
# Each returns a dict: fg (x -> (f, g)), x0, bounds, shapes (for minimize's options; None
# for the default), err (x -> the error).

def quadratic():
    T = np.arange(12.0).reshape(3, 4)

    def fg(X):
        return 0.5 * np.sum((X - T) ** 2), X - T

    return {"fg": fg, "x0": np.ones((3, 4)), "bounds": None, "shapes": None,
            "err": lambda X: np.linalg.norm(X - T) / np.linalg.norm(T)}


def rosenbrock(n=10):
    x_star = np.ones(n)
    return {"fg": lambda x: (so.rosen(x), so.rosen_der(x)), "x0": np.tile([-1.2, 1.0], n // 2),
            "bounds": None, "shapes": None,
            "err": lambda x: np.linalg.norm(x - x_star) / np.linalg.norm(x_star)}


def bounded_lsq(m=50, n=20, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n))
    b = A @ rng.standard_normal(n) + 0.1 * rng.standard_normal(m)
    lb, ub = np.zeros(n), np.full(n, np.inf)
    x_star = so.lsq_linear(A, b, bounds=(lb, ub), method="bvls", tol=1e-14).x

    def fg(x):
        r = A @ x - b
        return 0.5 * (r @ r), A.T @ r

    return {"fg": fg, "x0": np.ones(n), "bounds": so.Bounds(lb, ub), "shapes": None,
            "err": lambda x: np.linalg.norm(x - x_star) / np.linalg.norm(x_star)}


def low_rank():
    M, fg, x0, shapes = low_rank_problem()
    (n, rank), (m, _) = shapes

    def err(x):
        U, V = x[: n * rank].reshape(n, rank), x[n * rank:].reshape(m, rank)
        return np.linalg.norm(U @ V.T - M) / np.linalg.norm(M)

    return {"fg": fg, "x0": x0, "bounds": None, "shapes": shapes, "err": err}


def softmax_regression(N=500, d=20, k=5, lam=1.0, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, d))
    Z = X @ rng.standard_normal((d, k))
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    labels = (P.cumsum(1) > rng.random((N, 1))).argmax(1)  # drawn from the model
    Y = np.eye(k)[labels]

    def fg(W):
        Z = X @ W
        Z -= Z.max(1, keepdims=True)
        lse = np.log(np.exp(Z).sum(1))
        S = np.exp(Z - lse[:, None])  # the softmax probabilities
        return np.sum(lse - np.sum(Z * Y, 1)) + 0.5 * lam * np.sum(W * W), X.T @ (S - Y) + lam * W

    def flat(w):
        f, g = fg(w.reshape(d, k))
        return f, g.ravel()

    ref = so.minimize(flat, np.zeros(d * k), jac=True, method="L-BFGS-B",
                      options={"gtol": 1e-10, "ftol": 1e-16, "maxiter": 10000})
    W_star = ref.x.reshape(d, k)
    return {"fg": fg, "x0": np.zeros((d, k)), "bounds": None, "shapes": None,
            "err": lambda W: np.linalg.norm(W - W_star) / np.linalg.norm(W_star)}


#: name -> (problem, the column head of the table)
PROBLEMS = {
    "quadratic": (quadratic, "quadratic, 3 × 4"),
    "rosenbrock": (rosenbrock, "Rosenbrock, 10-D"),
    "bounded_lsq": (bounded_lsq, "bounded least squares, 50 × 20"),
    "low_rank": (low_rank, "low-rank fit, 2,500 unknowns"),
    "softmax": (softmax_regression, "softmax regression, 20 × 5"),
}


def _schedule(c):
    return lambda t: c / np.sqrt(t)


#: label (reStructuredText) -> options
SETTINGS = {
    "defaults": {},
    "``beta1=0.9``": {"beta1": 0.9},
    "``beta1=0.9, lr=1e-3`` (fixed)": {"beta1": 0.9, "lr": 1e-3},
    "``lr=0.02/sqrt(t)``": {"lr": _schedule(0.02)},
    "``lr=0.05/sqrt(t)``": {"lr": _schedule(0.05)},
    "``lr=0.1/sqrt(t)``": {"lr": _schedule(0.1)},
    "``beta1=0.9, scale_parameter=False``": {"beta1": 0.9, "scale_parameter": False},
}


# --- the runs -----------------------------------------------------------------------------

def run_problem(name, maxiter=MAXITER):
    """Every setting on one problem: ``{setting label: {"status", "nit", "err"}}``."""
    p = PROBLEMS[name][0]()
    out = {}
    for label, settings in SETTINGS.items():
        options = dict(settings, maxiter=maxiter, gtol=GTOL)
        if p["shapes"] is not None:
            options["shapes"] = p["shapes"]
        res = fastfactor.minimize(p["fg"], p["x0"], jac=True, bounds=p["bounds"],
                                  options=options)
        out[label] = {"status": int(res.status), "nit": int(res.nit),
                      "err": float(p["err"](res.x))}
    return out


def cell(r):
    """'640 (4.7e-07)': iterations to gtol and the final error; '—' for the iterations
    when gtol was not reached."""
    its = f"{r['nit']:,}" if r["status"] == 0 else "—"
    return f"{its} ({r['err']:.1e})"


def _plain(label):
    return label.replace("``", "")


def table_text(results):
    names = list(results)
    width = max(len(_plain(s)) for s in SETTINGS)
    lines = [f"{'':<{width}}" + "".join(f"{n:>20}" for n in names)]
    for label in SETTINGS:
        lines.append(f"{_plain(label):<{width}}"
                     + "".join(f"{cell(results[n][label]):>20}" for n in names))
    return "\n".join(lines)


def results_rst(results, maxiter):
    import scipy
    lines = [f"Produced by ``python deterministic_advice.py`` (fastfactor "
             f"{fastfactor.__version__}, SciPy {scipy.__version__}, NumPy {np.__version__}). "
             f"Each cell: the iterations to reach ``gtol={GTOL:g}`` (— when "
             f"``maxiter={maxiter:,}`` came first), and in parentheses the final error, the "
             "relative distance to the solution.", "",
             ".. list-table::", "   :header-rows: 1", "", "   * - setting"]
    lines += [f"     - {PROBLEMS[n][1]}" for n in results]
    for label in SETTINGS:
        lines.append(f"   * - {label}")
        lines += [f"     - {cell(results[n][label])}" for n in results]
    return "\n".join(lines) + "\n"


def main(maxiter=MAXITER, problems=None, out_dir=".", report=print):
    """Run ``problems`` (default: all of ``PROBLEMS``), print a line per problem and the
    table, and write ``deterministic_advice.inc`` into ``out_dir``. Returns
    ``{problem: run_problem(...)}``."""
    results = {}
    for name in problems or PROBLEMS:
        results[name] = run_problem(name, maxiter)
        report(f"{name}: " + ", ".join(f"{_plain(s)} {cell(r)}"
                                       for s, r in results[name].items()))
    report("")
    report(table_text(results))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "deterministic_advice.inc"), "w", encoding="utf-8") as f:
        f.write(results_rst(results, maxiter))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maxiter", type=int, default=MAXITER)
    parser.add_argument("--problem", action="append", choices=list(PROBLEMS),
                        help="run this problem (repeatable; default: all)")
    parser.add_argument("--out-dir", default=".",
                        help="where to write deterministic_advice.inc (default: .)")
    a = parser.parse_args()
    main(a.maxiter, a.problem, a.out_dir)
