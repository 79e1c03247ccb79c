"""Far starts: the Adafactor phase finds basins that trust regions miss

Three curve fits of 200 points each, started from random points spread over the data's
range (``N_STARTS = 20`` starts per problem, the same for every method):

- *two peaks*: two Gaussian peaks, ``a1 g(x; m1, s1) + a2 g(x; m2, s2)`` with
  ``g(x; m, s) = exp(-(x - m)**2 / (2 s**2))``, on ``0 <= x <= 10`` (6 parameters; the
  starting centres anywhere in the range, the widths from 0.2 to 3);
- *peak on a background*: one Gaussian peak on a straight line, ``a g(x; m, s) + c0 +
  c1 x`` (5 parameters; the peak at 7, started anywhere from 0 to 10);
- *two exponentials*: ``a1 exp(-k1 t) + a2 exp(-k2 t) + c`` on ``0 <= t <= 10`` (5
  parameters; the rates started anywhere from 0.01 to 100).

Each start is fitted with :func:`fastfactor.least_squares` (its defaults; and with
``trf_from_x0=False``, which keeps only ``trf`` from the Adafactor phase's result) and
with :func:`scipy.optimize.least_squares` (``trf``, ``lm`` and ``dogbox`` at SciPy's
defaults), all with the same analytic Jacobian. A fit *solves* the problem when its cost
is within a relative ``1e-6`` of the global minimum (the lowest cost any fit, or ``trf``
from the true parameters, reached; the two peaks may come out in either order).

``python far_starts.py --out-dir DIR`` prints a line per method as it finishes and writes
the table (``far_starts_results.inc``) and the plot (``far_starts.png``) into ``DIR``
(default: the current directory); ``--size small`` fits 5 starts per problem. The docs'
files come from ``NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python
docs/examples/far_starts.py --out-dir docs/examples``.

.. include:: examples/far_starts_results.inc
"""

import argparse
import os
import time

import numpy as np
import scipy.optimize as so

import fastfactor

#: Random starts per problem (``--size full``; ``small``: 5).
N_STARTS = {"full": 20, "small": 5}
#: A fit solves the problem when its cost is within this relative margin of the best.
SOLVED_RTOL = 1e-6
#: Fits whose failures are counted as such, not raised: SciPy's solvers can fail in
#: LAPACK on the overflowing Jacobians of a far start.
FAILURES = (ValueError, FloatingPointError, OverflowError, np.linalg.LinAlgError)
TIGHT = {"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15}
#: The variables that set the thread counts of the timings.
THREAD_VARS = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def threads(quote=""):
    """The thread setting of the timings: each of THREAD_VARS with its value, or unset."""
    return ", ".join(f"{quote}{k}={os.environ[k]}{quote}" if os.environ.get(k)
                     else f"{quote}{k}{quote} unset" for k in THREAD_VARS)


# --- the problems -------------------------------------------------------------------------

def _gauss(x, a, m, s):
    """A Gaussian peak and its derivatives in (a, m, s)."""
    u = (x - m) / s
    g = np.exp(-0.5 * u * u)
    return a * g, [g, a * g * u / s, a * g * u * u / s]


class TwoPeaks:
    name = "two peaks"
    truth = np.array([3.0, 3.0, 0.6, 2.0, 6.5, 0.9])
    noise = 0.02

    def __init__(self):
        self.x = np.linspace(0.0, 10.0, 200)

    def model(self, p):
        return _gauss(self.x, *p[:3])[0] + _gauss(self.x, *p[3:])[0]

    def jac(self, p):
        return np.column_stack(_gauss(self.x, *p[:3])[1] + _gauss(self.x, *p[3:])[1])

    def start(self, rng):
        return np.array([u for _ in range(2) for u in (
            rng.uniform(0.5, 5.0), rng.uniform(0.0, 10.0), rng.uniform(0.2, 3.0))])


class PeakOnBackground:
    name = "peak on a background"
    truth = np.array([3.0, 7.0, 0.4, 0.5, 0.1])
    noise = 0.05

    def __init__(self):
        self.x = np.linspace(0.0, 10.0, 200)

    def model(self, p):
        return _gauss(self.x, *p[:3])[0] + p[3] + p[4] * self.x

    def jac(self, p):
        return np.column_stack(_gauss(self.x, *p[:3])[1] + [np.ones_like(self.x), self.x])

    def start(self, rng):
        return np.array([rng.uniform(0.5, 5.0), rng.uniform(0.0, 10.0), rng.uniform(0.1, 2.0),
                         rng.uniform(-1.0, 1.0), rng.uniform(-0.2, 0.2)])


class TwoExponentials:
    name = "two exponentials"
    truth = np.array([5.0, 2.0, 3.0, 0.2, 1.0])
    noise = 0.01

    def __init__(self):
        self.x = np.linspace(0.0, 10.0, 200)

    def model(self, p):
        t = self.x
        return p[0] * np.exp(-p[1] * t) + p[2] * np.exp(-p[3] * t) + p[4]

    def jac(self, p):
        t = self.x
        e1, e2 = np.exp(-p[1] * t), np.exp(-p[3] * t)
        return np.column_stack([e1, -p[0] * t * e1, e2, -p[2] * t * e2, np.ones_like(t)])

    def start(self, rng):
        return np.array([rng.uniform(0.1, 10.0), 10 ** rng.uniform(-2, 2), rng.uniform(0.1, 10.0),
                         10 ** rng.uniform(-2, 2), rng.uniform(-1.0, 1.0)])


PROBLEMS = (TwoPeaks, PeakOnBackground, TwoExponentials)


class Fit:
    """One problem's data (fixed seed) and residuals."""

    def __init__(self, problem):
        self.problem = problem
        self.y = problem.model(problem.truth) + problem.noise * np.random.default_rng(
            0).standard_normal(problem.x.size)

    def residuals(self, p):
        return self.problem.model(p) - self.y

    def jac(self, p):
        return self.problem.jac(p)


# --- the methods --------------------------------------------------------------------------

def _fastfactor(fit, p0, **options):
    return fastfactor.least_squares(fit.residuals, p0, jac=fit.jac, options=options or None)


def _scipy(fit, p0, method):
    return so.least_squares(fit.residuals, p0, jac=fit.jac, method=method)


METHODS = {
    "fastfactor": _fastfactor,
    "fastfactor, trf_from_x0=False": lambda fit, p0: _fastfactor(fit, p0, trf_from_x0=False),
    "SciPy trf": lambda fit, p0: _scipy(fit, p0, "trf"),
    "SciPy lm": lambda fit, p0: _scipy(fit, p0, "lm"),
    "SciPy dogbox": lambda fit, p0: _scipy(fit, p0, "dogbox"),
}


def run_one(fit, p0, method):
    """One fit: its cost, parameters, nfev and time (cost inf when the method failed)."""
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        try:
            res = METHODS[method](fit, p0.copy())
            cost = float(res.cost) if np.isfinite(res.cost) else np.inf
            x, nfev = np.asarray(res.x, float), int(res.nfev)
        except FAILURES:
            cost, x, nfev = np.inf, np.full_like(p0, np.nan), 0
    return {"method": method, "cost": cost, "x": x, "nfev": nfev,
            "seconds": time.perf_counter() - t0}


def run_problem(problem, n_starts, methods, report=print):
    """All methods from the same ``n_starts`` random starts (seed 1) of one problem.

    Returns ``{"fit": Fit, "best": the global minimum's cost, "fits": {method: [fit
    dicts]}}``, each fit's ``solved`` set against the best cost found.
    """
    fit = Fit(problem())
    rng = np.random.default_rng(1)
    starts = [fit.problem.start(rng) for _ in range(n_starts)]
    ref = so.least_squares(fit.residuals, fit.problem.truth, jac=fit.jac, **TIGHT)
    fits = {}
    for method in methods:
        fits[method] = [run_one(fit, p0, method) for p0 in starts]
        best = min(ref.cost, *(r["cost"] for r in fits[method]))
        report(_line(fit.problem.name, method, fits[method], best))
    best = min(ref.cost, *(r["cost"] for rs in fits.values() for r in rs))
    for rs in fits.values():
        for r in rs:
            r["solved"] = bool(r["cost"] <= best * (1 + SOLVED_RTOL))
    return {"fit": fit, "best": best, "fits": fits}


def _line(name, method, rs, best):
    solved = sum(r["cost"] <= best * (1 + SOLVED_RTOL) for r in rs)
    return (f"{name:<22}{method:<31}{solved:3d} of {len(rs)} solved, median nfev "
            f"{np.median([r['nfev'] for r in rs]):7.0f}, total {sum(r['nfev'] for r in rs):7,d}, "
            f"{sum(r['seconds'] for r in rs):6.2f} s")


def warm_up(methods):
    """One untimed fit per method, so that no timed fit pays for Numba's compilation."""
    fit = Fit(PROBLEMS[0]())
    for method in methods:
        run_one(fit, fit.problem.truth * 1.1, method)


# --- output -------------------------------------------------------------------------------

def results_rst(results, methods, n_starts):
    import scipy
    lines = [f"Produced by ``python far_starts.py`` (fastfactor {fastfactor.__version__}, "
             f"SciPy {scipy.__version__}, NumPy {np.__version__}; times with "
             f"{threads('``')}). {n_starts} random "
             "starts per problem, the same for every method; *solved*: the cost within a "
             f"relative {SOLVED_RTOL:g} of the global minimum.", "",
             ".. list-table::", "   :header-rows: 1", "",
             "   * - Problem", "     - Method", "     - solved", "     - median nfev",
             "     - total nfev", "     - total time (s)"]
    for name, out in results.items():
        for method in methods:
            rs = out["fits"][method]
            lines += [f"   * - {name}", f"     - {method}",
                      f"     - {sum(r['solved'] for r in rs)} of {len(rs)}",
                      f"     - {np.median([r['nfev'] for r in rs]):,.0f}",
                      f"     - {sum(r['nfev'] for r in rs):,}",
                      f"     - {sum(r['seconds'] for r in rs):.2f}"]
    lines.append("")
    return "\n".join(lines)


def plot_results(results, path):
    """The two peak problems: the data, the global minimum, and for the first start
    that fastfactor solved and SciPy's trf did not, the two fits."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return None
    names = [p.name for p in PROBLEMS[:2] if p.name in results]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        fit, fits = results[name]["fit"], results[name]["fits"]
        x = fit.problem.x
        ax.plot(x, fit.y, ".", color="0.6", ms=3, label="data")
        best = min((r for rs in fits.values() for r in rs), key=lambda r: r["cost"])
        ax.plot(x, fit.problem.model(best["x"]), color="k", lw=1, label="global minimum")
        pairs = [(k, a, b) for k, (a, b) in enumerate(
                 zip(fits["fastfactor"], fits["SciPy trf"], strict=True), 1)
                 if a["solved"] and not b["solved"] and np.all(np.isfinite(b["x"]))]
        title = name
        if pairs:
            k, a, b = pairs[0]
            title += f", start {k}"
            ax.plot(x, fit.problem.model(b["x"]), "--", color="C1",
                    label=f"SciPy trf (cost {b['cost']:.3g})")
            ax.plot(x, fit.problem.model(a["x"]), ":", color="C0", lw=2,
                    label=f"fastfactor (cost {a['cost']:.3g})")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("x")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main(size="full", plot=True, out_dir="."):
    """Fit every problem from its random starts with each method; print a line per
    method as it finishes; write ``far_starts_results.inc`` and, with ``plot``,
    ``far_starts.png`` into ``out_dir``. Returns ``{problem name: run_problem(...)}``."""
    n_starts = N_STARTS[size]
    methods = list(METHODS)
    print(f"{n_starts} random starts per problem; timings with {threads()}", flush=True)
    warm_up(methods)
    results = {p.name: run_problem(p, n_starts, methods) for p in PROBLEMS}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "far_starts_results.inc"), "w", encoding="utf-8") as f:
        f.write(results_rst(results, methods, n_starts))
    if plot:
        plot_results(results, os.path.join(out_dir, "far_starts.png"))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["small", "full"], default="full")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the plot")
    parser.add_argument("--out-dir", default=".",
                        help="where the table and plot go (default: the current directory)")
    a = parser.parse_args()
    main(a.size, plot=not a.no_plot, out_dir=a.out_dir)
