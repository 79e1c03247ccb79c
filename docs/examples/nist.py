"""NIST StRD nonlinear regression: certified digits reached

The 27 nonlinear least-squares problems of the NIST Statistical Reference Datasets
(StRD) come with two starting points each and certified parameter values. This
script reads NIST's ``.dat`` files (``data/nist/``), fits every problem from both
starts with :func:`fastfactor.least_squares` (its defaults; without ``trf`` from x0;
and its Adafactor phase alone) and with :func:`scipy.optimize.least_squares` (``trf``,
``lm`` and ``dogbox`` at SciPy's defaults, and ``trf`` with tolerances of 1e-15), and
counts how many problems each solves to the certified digits.

Criterion: the log relative error ``LRE = -log10(|b - c| / |c|)`` of every
parameter ``b`` against its certified value ``c`` (capped at 11, the digits NIST
gives); a fit *solves* the problem when the smallest LRE over its parameters is at
least 4 (four correct significant digits in every parameter). The Jacobian is
exact (complex-step differentiation of the model), the same for all solvers.

At its defaults fastfactor solves all 54 fits, SciPy's solvers 47 to 52. ``trf`` from
the Adafactor phase's result solves MGH17 and Bennett5 from start 1, which ``trf``
from x0 misses even with tight tolerances; ``trf`` from x0, which fastfactor also runs
when its Adafactor phase did not converge, solves the eight fits that the other misses.
The price is the Adafactor phase's thousand or so evaluations per fit, where SciPy
needs tens. The Adafactor phase alone, a first-order method, solves 35 in 20,000
iterations, missing among others the ill-conditioned Lanczos, Hahn1, MGH10 and Thurber.

``python nist.py --size full --out-dir DIR`` runs all 27 problems, prints a line per
problem as its fits finish, and writes the table below (``nist_results.inc``), its
summary (``nist_summary.inc``) and the plot (``nist.png``) into ``DIR`` (default: the
current directory); ``--size small`` runs five lower-difficulty problems. The docs'
files come from ``NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python docs/examples/nist.py
--out-dir docs/examples``.

.. include:: examples/nist_results.inc
"""

import argparse
import functools
import os
import re
import time

import numpy as np
import scipy.optimize as so

import fastfactor

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "nist")

#: Capped LRE: NIST certifies 11 significant digits.
MAX_LRE = 11.0
#: A problem is solved when every parameter has at least this LRE.
SOLVED_LRE = 4.0

#: SciPy's trf with its stopping tolerances at 1e-15 (its defaults are 1e-8).
TIGHT = {"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15}
#: The Adafactor phase alone: no trf finish, and the iterations it needs without one.
ALONE = {"finish": False, "maxiter": 20_000}

SMALL = ["Misra1a", "Chwirut2", "DanWood", "Misra1b", "Chwirut1"]
#: The variables that set the thread counts of the timings.
THREAD_VARS = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def threads(quote=""):
    """The thread setting of the timings: each of THREAD_VARS with its value, or unset."""
    return ", ".join(f"{quote}{k}={os.environ[k]}{quote}" if os.environ.get(k)
                     else f"{quote}{k}{quote} unset" for k in THREAD_VARS)


# --- the .dat format --------------------------------------------------------------------

def _line_range(text, label):
    m = re.search(label + r"\s+\(lines\s+(\d+)\s+to\s+(\d+)\)", text)
    if m is None:
        raise ValueError(f"no '{label} (lines a to b)' entry")
    return int(m.group(1)) - 1, int(m.group(2))


def read_dat(path):
    """One NIST StRD nonlinear-regression file as a dict.

    Keys: ``name``, ``difficulty`` ("Lower", "Average" or "Higher"), ``model`` (the
    model lines as NIST writes them), ``start1``, ``start2``, ``certified``,
    ``certified_sd`` (arrays, one entry per parameter), ``rss`` (the certified
    residual sum of squares), ``y`` (the response) and ``x`` (the predictors, an
    array of shape ``(k, n)``, one row per predictor).
    """
    with open(path, encoding="ascii") as f:
        text = f.read()
    lines = text.splitlines()
    name = re.search(r"Dataset Name:\s+(\S+)", text).group(1)
    difficulty = re.search(r"(Lower|Average|Higher) Level of Difficulty", text).group(1)
    # The model: the lines from "Model:" to the first blank line after the formula.
    i = next(k for k, line in enumerate(lines) if line.startswith("Model:"))
    model, seen_formula = [], False
    for line in lines[i:]:
        if not line.strip():
            if seen_formula:
                break
            continue
        model.append(line[len("Model:"):].strip() if line.startswith("Model:") else line.strip())
        seen_formula = seen_formula or "=" in line and "(b" not in line.split("=")[0]
    # Starting and certified values: "  b1 =  start1  start2  certified  sd".
    a, b = _line_range(text, "Certified Values")
    params = []
    for line in lines[a:b]:
        m = re.match(r"\s*b(\d+)\s*=\s*(.*)", line)
        if m:
            params.append([float(v) for v in m.group(2).split()])
    params = np.array(params)
    rss = float(re.search(r"Residual Sum of Squares:\s+(\S+)", text).group(1))
    a, b = _line_range(text, "Data")
    data = np.array([[float(v) for v in line.split()] for line in lines[a:b] if line.strip()])
    return {"name": name, "difficulty": difficulty, "model": model,
            "start1": params[:, 0], "start2": params[:, 1], "certified": params[:, 2],
            "certified_sd": params[:, 3], "rss": rss, "y": data[:, 0], "x": data[:, 1:].T}


# --- the models ---------------------------------------------------------------------------
# f(b, x): b is a sequence of parameters (numbers, or arrays that broadcast against a
# predictor), x the predictors (k, n). Written with NumPy functions that accept complex
# numbers, for the complex-step Jacobian.

def _rational3(b, x):
    x = x[0]
    return ((b[0] + b[1] * x + b[2] * x**2 + b[3] * x**3)
            / (1 + b[4] * x + b[5] * x**2 + b[6] * x**3))


def _gauss(b, x):
    x = x[0]
    return (b[0] * np.exp(-b[1] * x) + b[2] * np.exp(-(x - b[3]) ** 2 / b[4] ** 2)
            + b[5] * np.exp(-(x - b[6]) ** 2 / b[7] ** 2))


def _lanczos(b, x):
    x = x[0]
    return b[0] * np.exp(-b[1] * x) + b[2] * np.exp(-b[3] * x) + b[4] * np.exp(-b[5] * x)


def _chwirut(b, x):
    return np.exp(-b[0] * x[0]) / (b[1] + b[2] * x[0])


def _misra1a(b, x):
    return b[0] * (1 - np.exp(-b[1] * x[0]))


def _enso(b, x):
    x = x[0]
    w = 2 * np.pi * x
    return (b[0] + b[1] * np.cos(w / 12) + b[2] * np.sin(w / 12)
            + b[4] * np.cos(w / b[3]) + b[5] * np.sin(w / b[3])
            + b[7] * np.cos(w / b[6]) + b[8] * np.sin(w / b[6]))


MODELS = {
    "Bennett5": lambda b, x: b[0] * (b[1] + x[0]) ** (-1 / b[2]),
    "BoxBOD": _misra1a,
    "Chwirut1": _chwirut,
    "Chwirut2": _chwirut,
    "DanWood": lambda b, x: b[0] * x[0] ** b[1],
    "ENSO": _enso,
    "Eckerle4": lambda b, x: (b[0] / b[1]) * np.exp(-0.5 * ((x[0] - b[2]) / b[1]) ** 2),
    "Gauss1": _gauss,
    "Gauss2": _gauss,
    "Gauss3": _gauss,
    "Hahn1": _rational3,
    "Kirby2": lambda b, x: ((b[0] + b[1] * x[0] + b[2] * x[0] ** 2)
                           / (1 + b[3] * x[0] + b[4] * x[0] ** 2)),
    "Lanczos1": _lanczos,
    "Lanczos2": _lanczos,
    "Lanczos3": _lanczos,
    "MGH09": lambda b, x: b[0] * (x[0] ** 2 + x[0] * b[1]) / (x[0] ** 2 + x[0] * b[2] + b[3]),
    "MGH10": lambda b, x: b[0] * np.exp(b[1] / (x[0] + b[2])),
    "MGH17": lambda b, x: b[0] + b[1] * np.exp(-x[0] * b[3]) + b[2] * np.exp(-x[0] * b[4]),
    "Misra1a": _misra1a,
    "Misra1b": lambda b, x: b[0] * (1 - (1 + b[1] * x[0] / 2) ** -2),
    "Misra1c": lambda b, x: b[0] * (1 - (1 + 2 * b[1] * x[0]) ** -0.5),
    "Misra1d": lambda b, x: b[0] * b[1] * x[0] / (1 + b[1] * x[0]),
    # The response of Nelson is log(y): see RESPONSE.
    "Nelson": lambda b, x: b[0] - b[1] * x[0] * np.exp(-b[2] * x[1]),
    "Rat42": lambda b, x: b[0] / (1 + np.exp(b[1] - b[2] * x[0])),
    "Rat43": lambda b, x: b[0] / (1 + np.exp(b[1] - b[2] * x[0])) ** (1 / b[3]),
    "Roszman1": lambda b, x: b[0] - b[1] * x[0] - np.arctan(b[2] / (x[0] - b[3])) / np.pi,
    "Thurber": _rational3,
}
#: Problems whose model is of a transformed response.
RESPONSE = {"Nelson": np.log}


class Problem:
    """Residuals ``f(b, x) - y`` and their exact Jacobian for one NIST problem."""

    def __init__(self, spec):
        self.spec = spec
        self.name = spec["name"]
        self.model = MODELS[self.name]
        self.x = spec["x"]
        self.y = RESPONSE.get(self.name, lambda v: v)(spec["y"])
        self.p = spec["certified"].size

    def residuals(self, b):
        return self.model(b, self.x) - self.y

    def jacobian(self, b, h=1e-30):
        """Complex step: row k of ``B`` is ``b + i h e_k``; ``Im f(B) / h`` is exact."""
        b = np.asarray(b, dtype=float)
        B = b[:, None] + 1j * h * np.eye(self.p)
        f = self.model([B[k][:, None] for k in range(self.p)], self.x)
        return (f.imag / h).T

    def rss(self, b):
        r = self.residuals(b)
        return float(r @ r)


def lre(value, certified):
    """Log relative error (number of correct significant digits), in [0, MAX_LRE]."""
    value, certified = np.asarray(value, float), np.asarray(certified, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(value - certified) / np.abs(certified)
        out = np.where(rel > 0, -np.log10(rel), MAX_LRE)
    out = np.where(np.isfinite(out), out, 0.0)
    return np.clip(out, 0.0, MAX_LRE)


# --- the solvers --------------------------------------------------------------------------

def _fastfactor(prob, b0, **kw):
    return fastfactor.least_squares(prob.residuals, b0, jac=prob.jacobian, **kw)


def _scipy(prob, b0, **kw):
    return so.least_squares(prob.residuals, b0, jac=prob.jacobian, **kw)


SOLVERS = {
    "fastfactor": _fastfactor,
    "fastfactor, no trf from x0": functools.partial(_fastfactor,
                                                    options={"trf_from_x0": False}),
    "Adafactor alone": functools.partial(_fastfactor, options=ALONE),
    "SciPy trf": functools.partial(_scipy, method="trf"),
    "SciPy lm": functools.partial(_scipy, method="lm"),
    "SciPy dogbox": functools.partial(_scipy, method="dogbox"),
    "SciPy trf, tight": functools.partial(_scipy, method="trf", **TIGHT),
}

SOLVER_TEXT = {
    "fastfactor": "``fastfactor.least_squares``, defaults (the Adafactor phase, then "
                  "SciPy's ``trf`` from its result, and from x0 when the Adafactor phase "
                  "did not converge)",
    "fastfactor, no trf from x0": "the same with ``options={'trf_from_x0': False}``: "
                                  "``trf`` only from the Adafactor phase's result",
    "Adafactor alone": "``fastfactor.least_squares`` with ``options={'finish': False, "
                       "'maxiter': 20000}``: the Adafactor phase alone, with fastfactor's "
                       "tolerances (``1e-10``)",
    "SciPy trf": "``scipy.optimize.least_squares``, ``method='trf'``, SciPy's defaults "
                 "(``ftol = xtol = gtol = 1e-8``)",
    "SciPy lm": "the same with ``method='lm'`` (MINPACK's Levenberg-Marquardt)",
    "SciPy dogbox": "the same with ``method='dogbox'``",
    "SciPy trf, tight": "``method='trf'`` with ``ftol = xtol = gtol = 1e-15``",
}

#: Exceptions counted as failed fits, not raised (SciPy's solvers can fail in LAPACK on
#: the overflowing Jacobians of a far start).
FAILURES = (ValueError, FloatingPointError, OverflowError, np.linalg.LinAlgError)
#: The phases of fastfactor.least_squares, in the order they run.
PHASES = ("adafactor", "trf", "trf from x0")
#: Statuses of a converged phase.
CONVERGED = (1, 2, 3, 4)


def run_one(prob, start, solver):
    """One fit: a dict of the fitted parameters, LREs, evaluations, time and status;
    for fastfactor also the phase that produced x and each phase's nfev and status."""
    b0 = prob.spec[f"start{start}"]
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        try:
            res = SOLVERS[solver](prob, b0.copy())
        except FAILURES as exc:
            res = so.OptimizeResult(x=np.full_like(b0, np.nan), nfev=0, njev=0, status=-1,
                                    message=f"{type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - t0
        b = np.asarray(res.x, dtype=float)
        rss = prob.rss(b)
    lres = lre(b, prob.spec["certified"])
    phases = {k: {"nfev": int(v.nfev), "status": int(v.status), "cost": float(v.cost),
                  "nit": int(v.nit)}
              for k, v in res.get("phases", {}).items()}
    return {"problem": prob.name, "start": start, "solver": solver, "x": b,
            "lre": float(lres.min()), "lre_rss": float(lre(rss, prob.spec["rss"])),
            "nfev": int(res.nfev), "njev": int(res.get("njev") or 0), "seconds": seconds,
            "status": int(res.status), "message": str(res.message),
            "solved": bool(lres.min() >= SOLVED_LRE), "phase": res.get("phase"),
            "phases": phases}


def warm_up(prob):
    """One untimed fit per solver, so that no timed fit pays for Numba's compilation."""
    with np.errstate(all="ignore"):
        for solver in SOLVERS:
            SOLVERS[solver](prob, prob.spec["start2"].copy())


def load_problems(names=None):
    files = sorted(f for f in os.listdir(DATA) if f.endswith(".dat"))
    specs = [read_dat(os.path.join(DATA, f)) for f in files]
    if names is not None:
        specs = [s for s in specs if s["name"] in names]
    order = {"Lower": 0, "Average": 1, "Higher": 2}
    specs.sort(key=lambda s: (order[s["difficulty"]], s["name"]))
    return [Problem(s) for s in specs]


# --- summaries ----------------------------------------------------------------------------

def work(results, solver):
    """Solved counts (start 1, start 2, all) and the evaluations and time of one solver."""
    rs = [r for r in results if r["solver"] == solver]
    nfev = [r["nfev"] for r in rs]
    return {"solved": tuple(sum(r["solved"] for r in rs if r["start"] == k) for k in (1, 2)),
            "runs": len(rs), "median_nfev": float(np.median(nfev)), "nfev": sum(nfev),
            "njev": sum(r["njev"] for r in rs), "seconds": sum(r["seconds"] for r in rs)}


def phase_summary(results):
    """fastfactor's phases: how often each produced x, and what the trf finish cost in
    the runs where the Adafactor phase had converged by itself."""
    rs = [r for r in results if r["solver"] == "fastfactor" and r["phases"]]
    came = {p: sum(r["phase"] == p for r in rs) for p in PHASES}
    converged = [r for r in rs if r["phases"]["adafactor"]["status"] in CONVERGED]
    finish = [r["phases"]["trf"]["nfev"] for r in converged if "trf" in r["phases"]]
    share = sum(finish) / max(1, sum(r["nfev"] for r in converged))
    return {"runs": len(rs), "from": came, "converged": len(converged),
            "converged_solved": sum(r["solved"] for r in converged),
            "finish_median": float(np.median(finish)) if finish else 0.0,
            "finish_total": sum(finish), "finish_max": max(finish, default=0),
            "finish_share": share,
            "from_x0_runs": sum("trf from x0" in r["phases"] for r in rs),
            "nit": [r["phases"]["adafactor"]["nit"] for r in rs]}


def _phase_lines(ps):
    came = ps["from"]
    return [
        f"Where fastfactor's x came from, of {ps['runs']} fits: the Adafactor phase "
        f"{came['adafactor']}, its ``trf`` finish {came['trf']}, ``trf`` from x0 "
        f"{came['trf from x0']} (``trf`` from x0 ran in {ps['from_x0_runs']}: where the "
        "Adafactor phase did not converge, or the finish ended on a plateau).",
        f"The Adafactor phase ran a median of {np.median(ps['nit']):g} iterations (from "
        f"{min(ps['nit'])} to {max(ps['nit'])}) before it handed over, converged or met its "
        f"1,000; it converged by itself (status 1 to 4) in {ps['converged']} fits."
        + ("" if not ps["converged"] else
           f" There the finish cost a median of {ps['finish_median']:g} evaluations, at "
           f"most {ps['finish_max']:,}, {ps['finish_total']:,} in all: "
           f"{100 * ps['finish_share']:.0f}% of those fits' evaluations."),
    ]


# --- output -------------------------------------------------------------------------------

def _cell(r):
    text = f"{r['lre']:.1f}"
    return text if r["solved"] else f"**{text}**"


def _produced_by():
    import scipy
    return (f"Produced by ``python nist.py --size full`` (fastfactor {fastfactor.__version__}, "
            f"SciPy {scipy.__version__}, NumPy {np.__version__}; times with "
            f"{threads('``')}).")


def results_rst(problems, results, solvers):
    """The results as reStructuredText: the smallest LRE per problem, solver and
    start, where fastfactor's x came from, the number solved, and the work."""
    by = {(r["problem"], r["start"], r["solver"]): r for r in results}
    phase_col = "fastfactor" in solvers
    lines = [_produced_by() + " Smallest LRE over the parameters (correct significant "
             "digits), from start 1 / start 2; in bold: below "
             f"{SOLVED_LRE:g}, not solved. The solvers:", ""]
    lines += [f"- *{s}*: {SOLVER_TEXT[s]}" for s in solvers] + [""]
    lines += [".. list-table::", "   :header-rows: 1", "",
              "   * - Problem", "     - Difficulty"] + [f"     - {s}" for s in solvers]
    if phase_col:
        lines.append("     - fastfactor's x from")
    for p in problems:
        lines += [f"   * - {p.name}", f"     - {p.spec['difficulty'].lower()}"]
        lines += ["     - " + " / ".join(_cell(by[p.name, k, s]) for k in (1, 2))
                  for s in solvers]
        if phase_col:
            lines.append("     - " + " / ".join(str(by[p.name, k, "fastfactor"]["phase"])
                                                for k in (1, 2)))
    lines += ["   * - **solved**", f"     - of {len(problems)} / {len(problems)}"]
    lines += ["     - **" + " / ".join(str(sum(by[p.name, k, s]["solved"] for p in problems))
                                 for k in (1, 2)) + "**" for s in solvers]
    if phase_col:
        lines.append("     -")
    return "\n".join(lines + [""] + summary_rst(results, solvers))


def summary_rst(results, solvers):
    """The work table, fastfactor's phases and the fits that raised, as lines of
    reStructuredText."""
    lines = [".. list-table:: Work, over all fits from both starts",
             "   :header-rows: 1", "",
             "   * - Solver", "     - solved, start 1 / start 2", "     - solved",
             "     - median nfev", "     - total nfev", "     - total njev",
             "     - total time (s)"]
    for s in solvers:
        w = work(results, s)
        lines += [f"   * - {s}", f"     - {w['solved'][0]} / {w['solved'][1]}",
                  f"     - {sum(w['solved'])} of {w['runs']}",
                  f"     - {w['median_nfev']:,.0f}", f"     - {w['nfev']:,}",
                  f"     - {w['njev']:,}", f"     - {w['seconds']:.1f}"]
    lines.append("")
    if "fastfactor" in solvers:
        for line in _phase_lines(phase_summary(results)):
            lines += [line, ""]
    errors = [r for r in results if r["status"] == -1]
    if errors:
        lines += ["Fits that raised an exception (counted as not solved):", ""]
        lines += [f"- {r['problem']}, start {r['start']}, {r['solver']}: ``{r['message']}``"
                  for r in errors]
        lines.append("")
    return lines


def short_rst(problems, results, solvers):
    """The solved counts and the work alone (for the least-squares page)."""
    lines = [_produced_by() + f" {len(problems)} problems, two starts each; a fit solves "
             f"its problem when every parameter has {SOLVED_LRE:g} or more correct "
             "significant digits. The solvers:", ""]
    lines += [f"- *{s}*: {SOLVER_TEXT[s]}" for s in solvers] + [""]
    return "\n".join(lines + summary_rst(results, solvers))


def _width(solver):
    return max(len(solver) + 2, 14)


def print_header(solvers):
    print(f"{'problem':<10}{'level':<9}" + "".join(f"{s:>{_width(s)}}" for s in solvers))


def print_row(prob, results, solvers):
    """LRE (start 1 / start 2) of one problem per solver, as its fits finish."""
    by = {(r["start"], r["solver"]): r for r in results if r["problem"] == prob.name}
    cells = [" / ".join(f"{by[k, s]['lre']:4.1f}" for k in (1, 2)) for s in solvers]
    print(f"{prob.name:<10}{prob.spec['difficulty']:<9}"
          + "".join(f"{c:>{_width(s)}}" for c, s in zip(cells, solvers, strict=True)), flush=True)


def print_summary(results, solvers):
    """Solved counts, evaluations and time per solver; fastfactor's phases."""
    rows = {"solved": lambda w: f"{w['solved'][0]} / {w['solved'][1]}",
            "median nfev": lambda w: f"{w['median_nfev']:,.0f}",
            "total nfev": lambda w: f"{w['nfev']:,}",
            "time": lambda w: f"{w['seconds']:.1f} s"}
    for label, fmt in rows.items():
        print(f"{label:<19}" + "".join(f"{fmt(work(results, s)):>{_width(s)}}" for s in solvers))
    if "fastfactor" in solvers:
        for line in _phase_lines(phase_summary(results)):
            print(line.replace("``", ""))


def plot_results(problems, results, solvers, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return None
    by = {(r["problem"], r["start"], r["solver"]): r for r in results}
    fig, ax = plt.subplots(figsize=(11, 4.4))
    xs = np.arange(len(problems))
    markers = {1: "o", 2: "s"}
    width = 0.8 / len(solvers)
    for j, s in enumerate(solvers):
        for k in (1, 2):
            vals = [by[p.name, k, s]["lre"] for p in problems]
            ax.plot(xs - 0.4 + width * (j + 0.5), vals, markers[k], color=f"C{j}", ms=4,
                    mfc="none" if k == 2 else f"C{j}",
                    label=f"{s}, start {k}")
    ax.axhline(SOLVED_LRE, color="0.5", lw=0.8, ls="--")
    levels = [p.spec["difficulty"] for p in problems]
    for i in range(1, len(levels)):
        if levels[i] != levels[i - 1]:
            ax.axvline(i - 0.5, color="0.7", lw=0.8)
    for level in dict.fromkeys(levels):
        idx = [i for i, v in enumerate(levels) if v == level]
        ax.text(np.mean(idx), MAX_LRE + 0.6, f"{level.lower()} difficulty", ha="center",
                fontsize=8, color="0.3")
    ax.set_xticks(xs)
    ax.set_xticklabels([p.name for p in problems], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("smallest parameter LRE (digits)")
    ax.set_ylim(-0.3, MAX_LRE + 1.3)
    ax.set_xlim(-0.6, len(problems) - 0.4)
    ax.set_title("NIST StRD nonlinear regression: correct digits of the fitted parameters",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main(size="small", plot=True, out_dir="."):
    """Fit the problems from both starts with each solver; print and write the table.

    ``size="small"``: five lower-difficulty problems; ``"full"``: all 27. Writes
    ``nist_results.inc`` (reStructuredText: the table), ``nist_summary.inc`` (its
    summary, for the least-squares page) and, with ``plot``, ``nist.png`` into
    ``out_dir`` (default: the current directory). Returns the list of per-fit result
    dicts.
    """
    problems = load_problems(SMALL if size == "small" else None)
    solvers = list(SOLVERS)
    print(f"{len(problems)} problems, two starts each; LRE from start 1 / start 2 per solver; "
          f"timings with {threads()}", flush=True)
    warm_up(problems[0])
    results = []
    print_header(solvers)
    for prob in problems:
        for start in (1, 2):
            for solver in solvers:
                results.append(run_one(prob, start, solver))
        print_row(prob, results, solvers)
    print_summary(results, solvers)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "nist_results.inc"), "w", encoding="utf-8") as f:
        f.write(results_rst(problems, results, solvers))
    with open(os.path.join(out_dir, "nist_summary.inc"), "w", encoding="utf-8") as f:
        f.write(short_rst(problems, results, solvers))
    if plot:
        plot_results(problems, results, solvers, os.path.join(out_dir, "nist.png"))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["small", "full"], default="full")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the plot")
    parser.add_argument("--out-dir", default=".",
                        help="where the table and plot go (default: the current directory)")
    a = parser.parse_args()
    main(a.size, plot=not a.no_plot, out_dir=a.out_dir)
