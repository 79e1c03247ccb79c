"""Finite-difference steps that cannot work: a relative step lost in rounding
(``x + h == x``) takes the default step instead, as SciPy's ``approx_derivative`` does,
and a fixed variable (``lb == ub``) gets a zero derivative in every scheme, from every
entry point. References: ``approx_derivative``, its step rule, and plain NumPy."""

import warnings

import numpy as np
import pytest
import scipy.optimize as so
from scipy.optimize._numdiff import _compute_absolute_step, approx_derivative

import fastfactor
from fastfactor import _finite_diff
from helpers import DTYPES, dtype_id

METHODS = ["2-point", "3-point", "cs"]
SHAPES = [(4,), (2, 3)]


def _lost(dtype, method):
    """A relative step lost in rounding at every |x| >= 1 (and at 1 below): in x's
    dtype for real steps, in float64 for the complex step (its points are complex)."""
    return 1e-8 if np.dtype(dtype) == np.float32 and method != "cs" else 1e-300

#: how close a difference quotient with the default step comes to the derivative
FD_RTOL = {(np.dtype(np.float32), "2-point"): 5e-3, (np.dtype(np.float32), "3-point"): 5e-4,
           (np.dtype(np.float32), "cs"): 1e-6, (np.dtype(np.float64), "2-point"): 1e-6,
           (np.dtype(np.float64), "3-point"): 1e-9, (np.dtype(np.float64), "cs"): 1e-12}
PER_POINT = {"2-point": 1, "3-point": 2, "cs": 1}  # calls per free variable


def _centre(shape):
    return np.linspace(2.0, 6.0, int(np.prod(shape))).reshape(shape)


def _objective(shape):
    """A cubic in x's own precision (complex for "cs"), whatever shape x arrives in."""
    c = _centre(shape)

    def f(x, *batch):
        x = np.reshape(x, shape)
        d = x - c.astype(x.dtype)
        return np.sum(d * d + x * x * x / 10)
    return f


def _gradient(x, shape):
    x = np.reshape(np.asarray(x, np.float64), shape)
    return 2 * (x - _centre(shape)) + 0.3 * x * x


def _x0(shape, dtype):
    # 0, fractions and values above 1: the step is relative to max(1, |x|)
    return np.array([0.0, 0.3, -2.0, 7.5, -0.6, 1.0][:int(np.prod(shape))],
                    dtype).reshape(shape)


def _fd_gradient(entry, f, x0, shape, method, rel_step):
    opts = {"maxiter": 0, "finite_diff_method": method}
    if rel_step is not None:
        opts["finite_diff_rel_step"] = rel_step
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no 0/0 on the way
        if entry == "scipy":
            res = so.minimize(f, x0.ravel(), method=fastfactor.adafactor,
                              options={**opts, "shapes": [shape]})
        else:
            res = fastfactor.minimize(f, x0, options=opts)
    return np.reshape(res.jac, shape)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("entry", ["minimize", "scipy"])
def test_a_lost_relative_step_takes_the_default_step(entry, method, dtype, shape):
    f, x0 = _objective(shape), _x0(shape, dtype)
    g = _fd_gradient(entry, f, x0, shape, method, _lost(dtype, method))
    assert np.all(g != 0)
    # the very default step: the same gradient, bit for bit
    np.testing.assert_array_equal(g, _fd_gradient(entry, f, x0, shape, method, None))
    x64 = x0.astype(np.float64).ravel()
    reference = approx_derivative(f, x64, method=method)
    rtol = FD_RTOL[np.dtype(dtype), method]
    np.testing.assert_allclose(g.ravel(), reference, rtol=rtol, atol=rtol * 10)
    np.testing.assert_allclose(g, _gradient(x0, shape), rtol=rtol, atol=rtol * 10)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("method", METHODS)
def test_stochastic_moves_with_a_lost_relative_step(method, dtype, shape):
    f, x0 = _objective(shape), _x0(shape, dtype)

    def run(jac, **opts):
        return fastfactor.minimize_stochastic(f, x0, [0], jac=jac,
                                              options={"maxiter": 1, **opts}).x

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        x = run(None, finite_diff_method=method,
                finite_diff_rel_step=_lost(dtype, method))
    np.testing.assert_array_equal(x, run(None, finite_diff_method=method))
    assert np.all(x != x0)
    exact = run(lambda x, b: _gradient(x, shape).astype(dtype))
    np.testing.assert_allclose(x, exact, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("rel_step", [1e-300, 1e-17, 8e-17, 1.5e-16, 3e-16, 1e-12, 1e-6])
def test_relative_steps_follow_scipys_rule(rel_step, method):
    """Where |x| >= 1 SciPy's relative step is ours (``rel_step * |x|``), and so is its
    fallback to the default where ``(x + h) - x == 0``."""
    x = np.array([1.0, -1.0, 2.0, -3.0, 7.5, 1e5, -3e10, 1.9999999999999998])
    h = _finite_diff.relative_steps(x, method, np.float64, rel_step)
    expected = np.abs(_compute_absolute_step(rel_step, x, np.float64(0.0), method))
    np.testing.assert_array_equal(h, expected)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("rel_step", [1e-300, 1e-9, 4e-8, 1e-7, 1e-5, 1e-2])
def test_relative_steps_move_x(rel_step, dtype, method):
    """A real step moves x in x's dtype both ways; each step is the given one or the
    default (NumPy's rounding as the reference)."""
    x = np.array([0.0, 0.3, -0.999, 1.0, -2.0, 7.5, 1e3, 3e5], dtype).astype(np.float64)
    h = _finite_diff.relative_steps(x, method, dtype, rel_step)
    scale = np.maximum(1.0, np.abs(x))
    default = np.finfo(dtype).eps ** (1 / 3 if method == "3-point" else 1 / 2) * scale
    assert np.all((h == rel_step * scale) | (h == default))
    if method == "cs":
        assert np.all(scale + h != scale)
    else:
        assert np.all((scale + h).astype(dtype) != scale.astype(dtype))
        assert np.all((scale - h).astype(dtype) != scale.astype(dtype))
        moves = (x + h).astype(dtype) != x.astype(dtype)
        assert np.all(moves[np.abs(x) >= 1])
    if rel_step >= 1e-2:  # nothing is lost: the given step everywhere
        np.testing.assert_array_equal(h, rel_step * scale)


# --- a fixed variable --------------------------------------------------------------------


def _box(shape, dtype):
    """x0, lb and ub: the first and the last variable fixed, the others free inside."""
    n = int(np.prod(shape))
    x0 = np.linspace(0.2, 0.8, n).astype(dtype)
    lb, ub = np.full(n, -1.0), np.full(n, 2.0)
    lb[[0, -1]] = ub[[0, -1]] = x0[[0, -1]]
    return x0.reshape(shape), lb, ub


class Recorded:
    """``fun`` of an entry point, recording its points (they must stay in the box)."""

    def __init__(self, fun):
        self.fun, self.points = fun, []

    def __call__(self, x, *args):
        self.points.append(np.array(x))
        return self.fun(x)


def _residuals(shape):
    c = _centre(shape).ravel()

    def r(x):
        x = np.ravel(x)
        return x * x - c.astype(x.dtype) / 10
    return r


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("entry", ["minimize", "scipy", "least_squares"])
def test_a_fixed_variable_has_a_zero_derivative(entry, method, dtype, shape):
    x0, lb, ub = _box(shape, dtype)
    n = x0.size
    fixed = lb == ub
    if entry == "least_squares":
        fun = Recorded(_residuals(shape))
        res = fastfactor.least_squares(fun, x0, jac=method, bounds=(lb.reshape(shape),
                                                                    ub.reshape(shape)),
                                       options={"maxiter": 0, "finish": False})
        J = np.asarray(res.jac)
        reference = approx_derivative(_residuals(shape), x0.astype(np.float64).ravel(),
                                      method=method)
    else:
        fun = Recorded(_objective(shape))
        opts = {"maxiter": 0, "finite_diff_method": method}
        if entry == "scipy":
            res = so.minimize(fun, x0.ravel(), method=fastfactor.adafactor,
                              bounds=so.Bounds(lb, ub), options={**opts, "shapes": [shape]})
        else:
            res = fastfactor.minimize(fun, x0, bounds=so.Bounds(lb.reshape(shape),
                                                                ub.reshape(shape)),
                                      options=opts)
        J = np.reshape(res.jac, (1, n))
        reference = approx_derivative(_objective(shape), x0.astype(np.float64).ravel(),
                                      method=method)[None, :]
    assert np.all(J[:, fixed] == 0)  # exactly, as plain NumPy's zeros
    rtol = FD_RTOL[np.dtype(dtype), method]
    np.testing.assert_allclose(J[:, ~fixed], reference.reshape(-1, n)[:, ~fixed],
                               rtol=rtol, atol=rtol * 10)
    assert fun.points  # and nothing was evaluated to get the zeros, or outside the box
    assert len(fun.points) == 1 + PER_POINT[method] * int(np.sum(~fixed))
    for p in fun.points:
        p = np.real(p).ravel()
        assert np.all((lb <= p) & (p <= ub))
        np.testing.assert_array_equal(p[fixed], x0.ravel()[fixed])
