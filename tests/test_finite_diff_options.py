"""Choosing and sizing finite differences: the scheme through scipy.optimize.minimize,
SciPy's relative step, steps sized for a float32 objective, and one-element x0."""

import numpy as np
import pytest
import scipy.optimize as so

import fastfactor
from helpers import DTYPES, dtype_id


class Counted:
    def __init__(self, dtype=np.float64):
        self.points = []
        self.dtype = dtype

    def __call__(self, x, *batch):
        self.points.append(np.array(x))
        return self.dtype(np.sum((np.asarray(x, dtype=np.float64) - 1.0) ** 2))


PER_POINT = {"2-point": 1, "3-point": 2, "cs": 1}  # calls per element besides f(x)


@pytest.mark.parametrize("method", ["2-point", "3-point", "cs"])
@pytest.mark.parametrize("entry", ["scipy", "minimize", "stochastic"])
def test_scheme_chosen_by_option(entry, method):
    f = Counted()
    if method == "cs":
        def f_cs(x, *batch):
            f.points.append(np.array(x))
            return np.sum((x - 1.0) ** 2)
        fun = f_cs
    else:
        fun = f
    opts = {"finite_diff_method": method, "maxiter": 2}
    if entry == "scipy":
        res = so.minimize(fun, np.zeros(3), method=fastfactor.adafactor, options=opts)
    elif entry == "minimize":
        res = fastfactor.minimize(fun, np.zeros(3), options=opts)
    else:
        res = fastfactor.minimize_stochastic(fun, np.zeros(3), [0], options=opts)
    evaluations = 3 if entry != "stochastic" else 2
    assert res.nfev == len(f.points) == evaluations * (1 + 3 * PER_POINT[method])
    if method == "cs":
        assert any(np.iscomplexobj(p) for p in f.points)


def test_scheme_option_and_jac_string_must_agree():
    with pytest.raises(ValueError, match="disagree"):
        fastfactor.minimize(Counted(), np.zeros(2), jac="2-point",
                            options={"finite_diff_method": "3-point"})
    with pytest.raises(ValueError, match="finite_diff_method must be one of"):
        fastfactor.minimize(Counted(), np.zeros(2), options={"finite_diff_method": "5-point"})
    with pytest.raises(ValueError, match="finite_diff_rel_step must be a positive"):
        fastfactor.minimize(Counted(), np.zeros(2), options={"finite_diff_rel_step": 0.0})


def test_relative_step_option_sets_the_step():
    f = Counted()
    fastfactor.minimize(f, np.array([0.0, 4.0]), options={"finite_diff_rel_step": 1e-3,
                                                          "maxiter": 0})
    base, p0, p1 = f.points
    np.testing.assert_allclose(p0 - base, [1e-3, 0.0])
    np.testing.assert_allclose(p1 - base, [0.0, 4e-3])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_steps_sized_for_the_objectives_precision(dtype):
    """A float32 objective of a float64 x: steps of float32's eps**(1/2), so the
    difference quotient is the derivative, not rounding noise."""
    f = Counted(dtype)
    res = fastfactor.minimize(f, np.array([0.3, -0.7]), options={"maxiter": 0})
    h = res.jac  # the finite-difference gradient at x0
    np.testing.assert_allclose(h, 2 * (np.array([0.3, -0.7]) - 1.0),
                               rtol=2e-3 if dtype == np.float32 else 1e-6)
    step = abs(f.points[1][0] - f.points[0][0])
    assert step == pytest.approx(np.finfo(dtype).eps ** 0.5, rel=1e-6)


def test_float32_residuals_fit_a_line():
    """The fit of the replayed report: 100 float32 points from [-1, -1]."""
    t = np.linspace(0, 1, 100).astype(np.float32)
    y = (0.546 * t - 0.05).astype(np.float32)
    res = fastfactor.least_squares(lambda p: (p[0] * t + p[1] - y).astype(np.float32),
                                   [-1.0, -1.0])
    assert res.success
    np.testing.assert_allclose(res.x, [0.546, -0.05], atol=1e-4)


def test_one_element_x0():
    """A Python float x0: Bounds(-1, 3), a 1-element x_scale and a scalar jac fit it."""
    for res in (
        fastfactor.least_squares(lambda x: x - 0.5, 2.0, bounds=(-1.0, 3.0)),
        fastfactor.least_squares(lambda x: x - 0.5, 2.0, x_scale=[1.0]),
        fastfactor.least_squares(lambda x: x - 0.5, 2.0, jac=lambda x: 1.0),
    ):
        assert res.success and res.x.shape == () and res.x == pytest.approx(0.5, abs=1e-6)
    res = fastfactor.minimize(lambda x: float((x - 0.5) ** 2), 2.0,
                              jac=lambda x: 2 * (x - 0.5), bounds=so.Bounds(-1, 3),
                              options={"maxiter": 3})
    assert res.x.shape == () and -1 <= res.x <= 3


@pytest.mark.parametrize("entry", ["scipy", "minimize", "stochastic"])
def test_gradients_by_differences_count_in_njev(entry):
    """As in SciPy's L-BFGS-B: each gradient, by differences too, counts once in njev."""
    f = Counted()
    opts = {"maxiter": 3}
    if entry == "scipy":
        res = so.minimize(f, np.zeros(2), method=fastfactor.adafactor, options=opts)
        ref = so.minimize(Counted(), np.zeros(2), method="L-BFGS-B", options={"maxiter": 3})
        assert ref.njev >= 1  # SciPy counts them too
    elif entry == "minimize":
        res = fastfactor.minimize(f, np.zeros(2), options=opts)
    else:
        res = fastfactor.minimize_stochastic(f, np.zeros(2), [0], options=opts)
    evaluations = res.nit + (0 if entry == "stochastic" else 1)
    assert res.njev == evaluations and res.nfev == 3 * evaluations
