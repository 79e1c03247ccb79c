"""SciPy's own least-squares tests, run against fastfactor.least_squares.

Runs the tests of SciPy's installed ``scipy.optimize.tests.test_least_squares``: the
mixins of its TestTRF and TestDogbox with ``method="adafactor"``, the own tests of
TestTRF and TestLM, and its module-level tests, with that module's ``least_squares``
replaced by fastfactor's for the duration of each test. The tests that cannot pass by
design are skipped, each with the deliberate difference, listed in DIFFERENCES; those
failing for what looks like a fastfactor bug are strict xfails, in BUGS. The longest
runs, in SLOW, are marked ``slow`` (``-m "not slow"`` leaves them out). One check of
our own keeps what a skipped test checks beside its difference.
"""

import functools
import inspect
import warnings

import pytest
from numpy.testing import assert_allclose

import fastfactor

with warnings.catch_warnings():
    # SciPy's test module uses marks of plugins this suite does not load
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    sls = pytest.importorskip(
        "scipy.optimize.tests.test_least_squares",
        reason="SciPy's test modules are not installed (scipy.optimize.tests)")

MIXINS = ("BaseMixin", "BoundsMixin", "SparseMixin", "LossFunctionMixin")
if not all(hasattr(sls, name) for name in MIXINS + ("TestTRF", "TestLM")):
    pytest.skip("this SciPy's test_least_squares lacks the test classes this adapter runs",
                allow_module_level=True)

#: SciPy's tests that cannot pass by design, with the deliberate difference.
DIFFERENCES = {
    # nfev counts finite-difference calls, and the Adafactor phase runs first
    "test_full_result": "nfev counts finite-difference calls and the Adafactor phase's "
                        "iterations (2010, not < 10); the other fields match",
    "test_full_result_single_fev": "nfev counts finite-difference calls: max_nfev=1 leaves "
                                   "none for the 2-point Jacobian (jac None)",
    "test_bvp": "nfev counts finite-difference calls: max_nfev=100 is spent before one "
                "2-point Jacobian of 100 unknowns is complete",
    "test_numerical_jac": "nfev counts finite-difference calls: dense (n per Jacobian) and "
                          "grouped (3 per Jacobian) differences differ",
    # fastfactor's own call conventions
    "test_workers": "workers other than None is refused: fun is evaluated serially",
    "test_incorrect_options_usage": "options holds the Adafactor phase's settings (SciPy has "
                                    "none); an unknown key warns, as in minimize",
    "test_fun_wrong_dimensions": "fun may return residuals of any shape, taken flat",
    "test_jac_wrong_dimensions": "a Jacobian of one unknown may have any shape with m elements",
    "test_x0_multidimensional": "x0 may have any shape (a matrix x0 is one factored block)",
    "test_x0_complex_scalar": "a complex x0 is a TypeError, as every non-real x0 in "
                              "fastfactor (SciPy: ValueError)",
    "test_x0_complex_array": "a complex x0 is a TypeError, as every non-real x0 in "
                             "fastfactor (SciPy: ValueError)",
    "test_infeasible": "x0 outside the bounds is clipped into the box (SciPy raises)",
    "test_inconsistent_shape": "bounds broadcast to x0's shape, a one-element array too",
    "test_x_scale_jac_scale": "x_scale='jac' works with a LinearOperator Jacobian (column "
                              "norms from products)",
    "test_gh_18793_and_19351": "x keeps a scalar x0's 0-d shape, which the test indexes as "
                               "1-d (it passes with x0=[1.1e-12])",
    # the result comes from trf started at Adafactor's point, not from x0
    "test_x_scale_options": "x_scale='jac': trf from the Adafactor point stops at x = 3e-18 "
                            "(gtol); the test wants SciPy's exact 0 (atol=0)",
    "test_options": "robust losses: Adafactor stops (gtol) at |x| ~ 1e-8, where the 2-point "
                    "Jacobian of x**2 + 5 rounds to 0; the test wants 1e-15",
    "test_fp32_gh12991": "float32 residuals: the end point moves with the path within the "
                         "2-point Jacobian's noise (1e-4); 9.2e-5 from cobyqa, allowed 9e-5",
    "test_callback": "trf also runs from x0 when Adafactor did not converge: the last "
                     "callback is from that run, x from the lower-cost one",
    # SciPy's other methods
    "test_bounds_not_supported": "'lm' only: method='lm' is refused",
    "test_m_less_n_not_supported": "'lm' only: method='lm' is refused",
    "test_sparse_not_supported": "'lm' only: method='lm' is refused",
    "test_jac_sparsity_not_supported": "'lm' only: method='lm' is refused",
    "test_LinearOperator_not_supported": "'lm' only: method='lm' is refused",
    "test_loss": "'lm' only: method='lm' is refused",
    "test_callback_with_lm_method": "'lm' only: method='lm' is refused",
    "test_small_tolerances_for_lm": "'lm' only: method='lm' is refused",
}

#: SciPy's tests failing for what looks like a fastfactor bug.
BUGS = {}

#: The longest of the passing tests (seconds measured on 2 shared cores).
SLOW = {
    "test_with_bounds": "67 s: 24 runs of 1000 Adafactor iterations, most with a finite-"
                        "difference Jacobian of 100 unknowns",
}


def _least_squares(*args, method="adafactor", **kwargs):
    # A few SciPy tests name 'trf', its default method, which fastfactor's finish runs
    if method == "trf":
        method = "adafactor"
    return fastfactor.least_squares(*args, method=method, **kwargs)


@pytest.fixture(autouse=True)
def _fastfactor_in_scipy_tests(monkeypatch):
    monkeypatch.setattr(sls, "least_squares", _least_squares)


def _adapted(test):
    """``test`` with the marks of its entry in DIFFERENCES, BUGS and SLOW (a wrapper:
    SciPy's function itself is left unmarked)."""
    name = test.__name__
    marks = []
    if name in DIFFERENCES:
        marks.append(pytest.mark.skip(reason=f"by design: {DIFFERENCES[name]}"))
    if name in BUGS:
        marks.append(pytest.mark.xfail(strict=True, reason=BUGS[name]))
    if name in SLOW:
        marks.append(pytest.mark.slow)
    if not marks:
        return test

    @functools.wraps(test)
    def run(*args):
        return test(*args)

    for mark in marks:
        run = mark(run)
    return run


class TestAdafactor(*(getattr(sls, name) for name in MIXINS)):
    method = "adafactor"


# TestTRF's and TestLM's own tests, beside the mixins' (TestDogbox has none)
for _cls in (sls.TestTRF, sls.TestLM):
    for _name, _test in vars(_cls).items():
        if _name.startswith("test_") and not hasattr(TestAdafactor, _name):
            setattr(TestAdafactor, _name, _test)

for _name in dir(TestAdafactor):
    if _name.startswith("test_"):
        setattr(TestAdafactor, _name, _adapted(getattr(TestAdafactor, _name)))

# SciPy's module-level tests, collected here (their globals stay SciPy's module)
for _name, _test in list(vars(sls).items()):
    if _name.startswith("test_") and inspect.isfunction(_test):
        globals()[_name] = _adapted(_test)


@_adapted
@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")
def test_cs_with_jac_sparsity_reaches_the_minimum():
    # test_numerical_jac's cost check for "cs" with jac_sparsity, lost with its nfev
    # difference (test_with_bounds passes there only because the gradient is zero)
    p = sls.BroydenTridiagonal()
    res = fastfactor.least_squares(p.fun, p.x0, "cs", jac_sparsity=p.sparsity)
    assert_allclose(res.cost, 0, atol=1e-20)
