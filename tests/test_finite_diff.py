"""Finite differences never evaluate outside the bounds, for every front end, scheme and
dtype, boxes narrower than the step and fixed variables included; inside the box they
agree with the analytic derivative."""

import numpy as np
import pytest
import scipy.optimize as so

import fastfactor
from fastfactor import _finite_diff
from helpers import DTYPES, dtype_id

LB = np.array([0.0, 0.0, -1.0, 5.0, -np.inf, 0.5])
UB = np.array([1e-12, 1.0, 1.0, 5.0 + 1e-9, np.inf, 0.5])  # narrow, on a bound, fixed
X0 = np.array([0.0, 1.0, -1.0, 5.0, 0.3, 0.5])
TARGET = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 2.0])


class Watched:
    """Residuals ``x - TARGET`` that record every point outside the box."""

    def __init__(self):
        self.outside = []

    def residuals(self, x):
        x = np.asarray(x)
        if np.any(x < LB) or np.any(x > UB):
            self.outside.append(x.copy())
        return x - TARGET

    def fun(self, x):
        r = self.residuals(x)
        return 0.5 * float(r @ r)


def _run(entry, scheme, dtype, w):
    x0 = X0.astype(dtype)
    opts = {"maxiter": 5}
    if entry == "minimize":
        return fastfactor.minimize(w.fun, x0, jac=scheme, bounds=so.Bounds(LB, UB),
                                   options=opts)
    if entry == "scipy":
        # SciPy hands a custom method jac=None for any string: forward differences
        return so.minimize(w.fun, x0, jac=scheme, bounds=so.Bounds(LB, UB),
                           method=fastfactor.adafactor, options=opts)
    return fastfactor.least_squares(w.residuals, x0, jac=scheme, bounds=(LB, UB),
                                    options=opts)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("scheme", ["2-point", "3-point"])
@pytest.mark.parametrize("entry", ["minimize", "scipy", "least_squares"])
def test_no_evaluation_outside_the_bounds(entry, scheme, dtype):
    w = Watched()
    res = _run(entry, scheme, dtype, w)
    assert not w.outside, w.outside[:3]
    assert np.all(res.x >= LB) and np.all(res.x <= UB)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("scheme", ["2-point", "3-point"])
def test_jacobian_inside_and_at_the_bounds(scheme, dtype):
    """Against the analytic Jacobian of r(x) = x**3 (diagonal 3 x**2); a fixed variable's
    column is zero and costs no call."""
    x = X0.astype(dtype)
    calls = []

    def call(xw):
        calls.append(np.array(xw))
        return np.asarray(xw, dtype=np.float64) ** 3

    J = _finite_diff.jacobian(call, x, x.astype(np.float64) ** 3, scheme, LB, UB)
    want = np.diag(3 * x.astype(np.float64) ** 2)
    free = LB < UB
    rtol = {np.float64: 1e-5, np.float32: 2e-2}[dtype]
    wide = free & (UB - LB > 1e-3)
    np.testing.assert_allclose(J[:, wide], want[:, wide], rtol=rtol, atol=rtol)
    assert not J[:, ~free].any()
    for p in calls:
        assert np.all(p >= LB) and np.all(p <= UB), p
    per_free = 2 if scheme == "3-point" else 1
    assert len(calls) <= per_free * free.sum()


def test_float32_rounding_past_a_bound_is_undone():
    """A float32 point x + h may round past ub; the stepped point stays inside."""
    ub = np.array([np.float64(np.float32(0.1)) + 1e-9])
    x = np.array([np.float32(0.1) - np.float32(1e-4)], dtype=np.float32)
    points = []
    _finite_diff.jacobian(lambda xw: (points.append(float(xw[0])), np.array([0.0]))[1],
                          x, np.array([0.0]), "2-point", np.array([-1.0]), ub)
    assert all(p <= ub[0] for p in points)


@pytest.mark.parametrize("entry", ["minimize", "scipy", "stochastic"])
def test_fun_and_jac_receive_copies_of_their_own(entry):
    """A fun that changes its argument in place does not move the point jac sees."""
    c = np.arange(6.0)
    seen = []

    def f(x, *batch):
        x -= c  # works in place on its argument
        return 0.5 * float(x @ x)

    def g(x, *batch):
        seen.append(x.copy())
        return x - c

    opts = {"maxiter": 3, "lr": 0.1, "scale_parameter": False}
    if entry == "minimize":
        fastfactor.minimize(f, np.zeros(6), jac=g, options=opts)
    elif entry == "scipy":
        so.minimize(f, np.zeros(6), jac=g, method=fastfactor.adafactor, options=opts)
    else:
        fastfactor.minimize_stochastic(f, np.zeros(6), [0], jac=g, options=opts)
    np.testing.assert_array_equal(seen[0], np.zeros(6))
