"""Whole fits of ``fastfactor.least_squares`` beside ``scipy.optimize.least_squares``.

``CurveFit``: an exponential decay ``y = a exp(-k t) + c``, 3 parameters, 200 points
(fixed seed), analytic Jacobian, from ``x0 = (1, 1, 0)``. ``NistFits``: NIST StRD
problems (Misra1a, MGH17, Eckerle4, Bennett5; ``FASTFACTOR_BENCH_SIZE=smoke``: MGH17 and
Eckerle4, start 1) from both of NIST's starts, with the data, models and exact
(complex-step) Jacobians of ``docs/examples/nist.py``; skipped when that script or its
data are not in the checkout.

Methods: ``fastfactor`` (its defaults: the Adafactor phase, then SciPy's ``trf``),
``scipy-trf`` and ``scipy-lm`` (SciPy's defaults). ``time_fit``: one whole fit;
``track_nfev`` and ``track_njev``: its evaluations (fastfactor's ``nfev`` counts every
call of ``fun`` in all phases); ``NistFits.track_lre``: the smallest log relative error
of the parameters against NIST's certified values (4 or more: solved). One fit in
``setup`` first, so no timed fit pays for Numba's compilation.
"""

import importlib.util
import os

import numpy as np

from ._common import LARGE_TIMING, pick, timing

METHODS = ["fastfactor", "scipy-trf", "scipy-lm"]

_NIST_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir,
                            "docs", "examples", "nist.py")
NIST_PROBLEMS = pick(["MGH17", "Eckerle4"], ["Misra1a", "MGH17", "Eckerle4", "Bennett5"])
NIST_STARTS = pick([1], [1, 2])


def _fit(method, fun, x0, jac):
    import scipy.optimize as so

    import fastfactor
    with np.errstate(all="ignore"):  # far iterates overflow the models: expected
        if method == "fastfactor":
            return fastfactor.least_squares(fun, x0, jac=jac)
        return so.least_squares(fun, x0, jac=jac, method=method.split("-")[1])


# --- exponential decay ------------------------------------------------------------------

def _decay():
    t = np.linspace(0.0, 10.0, 200)
    y = 5.0 * np.exp(-0.7 * t) + 1.0 + 0.05 * np.random.default_rng(0).standard_normal(t.size)

    def fun(p):
        return p[0] * np.exp(-p[1] * t) + p[2] - y

    def jac(p):
        e = np.exp(-p[1] * t)
        return np.column_stack([e, -p[0] * t * e, np.ones_like(t)])
    return fun, np.array([1.0, 1.0, 0.0]), jac


@timing(LARGE_TIMING)
class CurveFit:
    params = (METHODS,)
    param_names = ["method"]
    unit = "evaluations"

    def setup(self, method):
        self.problem = _decay()
        self.res = _fit(method, *self.problem)

    def time_fit(self, method):
        _fit(method, *self.problem)

    def track_nfev(self, method):
        return self.res.nfev

    def track_njev(self, method):
        return self.res.njev


# --- NIST StRD ----------------------------------------------------------------------------

_NIST = {}


def _nist():
    """docs/examples/nist.py as a module and its problems by name (NotImplementedError
    when the checkout has no such script or data: asv's skip)."""
    if "module" not in _NIST:
        if not os.path.exists(_NIST_SCRIPT):
            raise NotImplementedError(f"no NIST example script at {_NIST_SCRIPT}")
        spec = importlib.util.spec_from_file_location("nist_example", _NIST_SCRIPT)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
            problems = {p.name: p for p in module.load_problems(NIST_PROBLEMS)}
        except OSError as exc:
            raise NotImplementedError(f"the NIST data cannot be read: {exc}") from None
        _NIST.update(module=module, problems=problems)
    return _NIST["module"], _NIST["problems"]


@timing(LARGE_TIMING)
class NistFits:
    params = (NIST_PROBLEMS, NIST_STARTS, METHODS)
    param_names = ["problem", "start", "method"]
    unit = "evaluations"

    def setup(self, problem, start, method):
        module, problems = _nist()
        prob = problems[problem]
        self.args = (prob.residuals, prob.spec[f"start{start}"].copy(), prob.jacobian)
        self.res = _fit(method, *self.args)
        self.lre = float(module.lre(self.res.x, prob.spec["certified"]).min())

    def time_fit(self, problem, start, method):
        _fit(method, *self.args)

    def track_nfev(self, problem, start, method):
        return self.res.nfev

    def track_njev(self, problem, start, method):
        return self.res.njev

    def track_lre(self, problem, start, method):
        """Smallest correct significant digits over the parameters (solved: 4 or more)."""
        return self.lre

    track_lre.unit = "digits"
