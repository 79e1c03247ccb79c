"""The SciPy custom-method protocol: jac forms, callbacks, bounds, warnings, results."""

import warnings

import numpy as np
import pytest
import scipy.optimize as so

import fastfactor
from fastfactor import adafactor
from helpers import Problem, assert_close
from reference import reference_minimize

SHAPE = (4, 5)  # the problems of this module: a 4x5 matrix, flat for the SciPy entry point


def run_scipy(problem, jac="grad", **kwargs):
    """scipy.optimize.minimize(method=adafactor) on a flat Problem; options via kwargs."""
    opts = dict(shapes=SHAPE)
    call = {}
    for key in ("callback", "bounds", "constraints", "hess", "hessp", "tol", "args"):
        if key in kwargs:
            call[key] = kwargs.pop(key)
    opts.update(kwargs)
    if jac == "grad":
        jac = problem.grad
    fun = problem.fun_and_grad if jac is True else problem.fun
    return so.minimize(fun, problem.x0, method=adafactor, jac=jac, options=opts, **call)


def reference(problem, n_iter, bounds=None, **hyper):
    """The reference iterates of ``problem`` (one SHAPE block), each of SHAPE."""
    traj = reference_minimize(problem.grad_shaped, problem.x0, n_iter, shapes=[SHAPE],
                              bounds=bounds, **hyper)
    return [x.reshape(SHAPE) for x in traj]


def complex_ok_objective(shape, seed=0):
    """f(x) = sum(a (x - c)^2)/2 + sum((x - c)^4)/4 written so that complex x works ('cs')."""
    r = np.random.default_rng(seed)
    a = 10.0 ** r.uniform(-1, 1, size=shape)
    c = r.standard_normal(shape)
    calls = [0]

    def fun(x):
        calls[0] += 1
        d = x - c
        return np.sum(a * d * d) / 2 + np.sum(d**4) / 4

    def grad(x):
        d = np.real(x) - c
        return a * d + d**3

    return fun, grad, calls, (c + 1.5).astype(float)


# --- jac forms ---------------------------------------------------------------------


def test_jac_callable_counts():
    p = Problem(SHAPE, flat=True, seed=1)
    res = run_scipy(p, maxiter=12, gtol=0.0)
    assert res.nit == 12
    assert p.nfun == res.nfev == 13
    assert p.ngrad == res.njev == 13


@pytest.mark.parametrize("entry", ["scipy", "adafactor_direct", "fastfactor"])
def test_jac_true(entry):
    """fun returns (f, g): the same iterates as a separate jac, one user call per point."""
    base = Problem(SHAPE, flat=True, seed=2)
    expected = run_scipy(base, maxiter=12, gtol=0.0)
    p = Problem(SHAPE, flat=entry != "fastfactor", seed=2)
    if entry == "scipy":
        res = run_scipy(p, jac=True, maxiter=12, gtol=0.0)
    elif entry == "adafactor_direct":
        res = adafactor(p.fun_and_grad, p.x0, jac=True, shapes=SHAPE, maxiter=12, gtol=0.0)
    else:
        res = fastfactor.minimize(p.fun_and_grad, p.x0, jac=True,
                                  options=dict(maxiter=12, gtol=0.0))
    np.testing.assert_array_equal(res.x.ravel(), expected.x)
    assert res.nit == 12
    assert p.nfun == res.nfev == 13  # each point evaluated once
    if entry != "scipy":  # (SciPy's MemoizeJac hides the gradient calls from the method)
        assert res.njev == 13
    assert res.fun == pytest.approx(expected.fun, rel=1e-14)


FD_CASES = {
    # entry, jac, relative tolerance on the iterates vs the analytic gradient
    "fastfactor_none": ("fastfactor", None, 1e-5),
    "fastfactor_2point": ("fastfactor", "2-point", 1e-5),
    "fastfactor_3point": ("fastfactor", "3-point", 1e-7),
    "fastfactor_cs": ("fastfactor", "cs", 1e-11),
    "direct_none": ("adafactor_direct", None, 1e-5),
    "direct_3point": ("adafactor_direct", "3-point", 1e-7),
    "scipy_none": ("scipy", None, 1e-5),
    "scipy_2point": ("scipy", "2-point", 1e-5),
}


@pytest.mark.parametrize("entry, jac, rtol", FD_CASES.values(), ids=FD_CASES.keys())
def test_finite_difference_gradients(entry, jac, rtol):
    shape = (3, 4)
    fun, grad, calls, x0 = complex_ok_objective(shape, seed=3)
    n_iter = 6
    opts = dict(maxiter=n_iter, gtol=0.0, lr=0.05, scale_parameter=False)
    traj = reference_minimize(grad, x0, n_iter, lr=0.05, scale_parameter=False)
    if entry == "fastfactor":
        res = fastfactor.minimize(fun, x0, jac=jac, options=opts)
    elif entry == "adafactor_direct":
        res = adafactor(lambda x: fun(x.reshape(shape)), x0.ravel(), jac=jac, shapes=shape, **opts)
    else:
        res = so.minimize(lambda x: fun(x.reshape(shape)), x0.ravel(), method=adafactor, jac=jac,
                          options=dict(opts, shapes=shape))
    n = x0.size
    assert res.nit == n_iter
    np.testing.assert_allclose(res.x.reshape(shape), traj[-1], rtol=rtol, atol=rtol)
    assert res.nfev == calls[0]  # every evaluation, the finite-difference ones included
    per_point = 2 * n if jac == "3-point" else n
    assert res.nfev >= (n_iter + 1) * (per_point + (0 if jac == "3-point" else 1))
    assert np.asarray(res.jac).shape == np.shape(res.x)
    np.testing.assert_allclose(np.asarray(res.jac).reshape(shape), grad(res.x.reshape(shape)),
                               rtol=max(rtol, 1e-6) * 10, atol=1e-5)


def test_args_reach_fun_and_jac():
    c = np.arange(6.0)
    seen = []

    def fun(x, shift, scale):
        seen.append(("f", shift, scale))
        return scale * np.sum((x - shift) ** 2)

    def jac(x, shift, scale):
        seen.append(("g", shift, scale))
        return 2 * scale * (x - shift)

    res = so.minimize(fun, np.zeros(6), args=(c, 3.0), method=adafactor, jac=jac,
                      options=dict(maxiter=3, gtol=0))
    assert res.nit == 3
    assert len(seen) == 8 and all(s[1] is c and s[2] == 3.0 for s in seen)
    res2 = fastfactor.minimize(fun, np.zeros(6), args=(c, 3.0), jac=jac,
                               options=dict(maxiter=3, gtol=0))
    np.testing.assert_array_equal(res.x, res2.x)


# --- callbacks ---------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["scipy", "fastfactor"])
def test_callback_xk_form(entry):
    p = Problem(SHAPE, flat=entry == "scipy", seed=4)
    traj = reference(p, 10)
    got = []

    def callback(xk):
        assert isinstance(xk, np.ndarray)
        got.append(xk)  # kept without copying: must not change afterwards

    if entry == "scipy":
        res = run_scipy(p, callback=callback, maxiter=10, gtol=0.0)
    else:
        res = fastfactor.minimize(p.fun, p.x0, jac=p.grad, callback=callback,
                                  options=dict(maxiter=10, gtol=0.0))
    assert len(got) == res.nit == 10
    for k, xk in enumerate(got):
        assert xk.shape == p.x0.shape
        assert_close(xk.reshape(SHAPE), traj[k + 1], err_msg=f"iterate {k + 1}")
    np.testing.assert_array_equal(got[-1], res.x)


@pytest.mark.parametrize("entry", ["scipy", "fastfactor"])
def test_callback_intermediate_result_form(entry):
    p = Problem(SHAPE, flat=entry == "scipy", seed=5)
    traj = reference(p, 10)
    got = []

    def callback(intermediate_result):
        assert isinstance(intermediate_result, so.OptimizeResult)
        got.append(intermediate_result)

    if entry == "scipy":
        res = run_scipy(p, callback=callback, maxiter=10, gtol=0.0)
    else:
        res = fastfactor.minimize(p.fun, p.x0, jac=p.grad, callback=callback,
                                  options=dict(maxiter=10, gtol=0.0))
    assert len(got) == 10
    for k, r in enumerate(got):
        assert np.shape(r.x) == p.x0.shape
        assert_close(np.reshape(r.x, SHAPE), traj[k + 1], err_msg=f"iterate {k + 1}")
        assert r.fun == pytest.approx(p.fun(r.x), rel=1e-12)  # fun belongs to that x
    np.testing.assert_array_equal(got[-1].x, res.x)


def test_callback_with_other_parameter_name_gets_array():
    p = Problem(SHAPE, flat=True, seed=6)
    got = []
    run_scipy(p, callback=lambda intermediate: got.append(intermediate), maxiter=3, gtol=0.0)
    assert len(got) == 3 and all(isinstance(x, np.ndarray) and x.shape == (20,) for x in got)


@pytest.mark.parametrize("form", ["xk", "intermediate_result"])
@pytest.mark.parametrize("entry", ["scipy", "fastfactor"])
def test_callback_stop_iteration(entry, form):
    p = Problem(SHAPE, flat=entry == "scipy", seed=7)
    traj = reference(p, 10)
    calls = []

    def stop_at_4(x):
        calls.append(1)
        if len(calls) == 4:
            raise StopIteration

    callback = (stop_at_4 if form == "xk"
                else (lambda intermediate_result: stop_at_4(intermediate_result.x)))
    if entry == "scipy":
        res = run_scipy(p, callback=callback, maxiter=50, gtol=0.0)
    else:
        res = fastfactor.minimize(p.fun, p.x0, jac=p.grad, callback=callback,
                                  options=dict(maxiter=50, gtol=0.0))
    assert res.status == 99 and res.success is False
    assert isinstance(res.message, str) and res.message
    assert len(calls) == 4
    assert res.nit == 4
    assert_close(np.reshape(res.x, SHAPE), traj[4])
    assert res.fun == pytest.approx(p.fun(res.x), rel=1e-12)
    assert_close(np.reshape(res.jac, SHAPE), p.grad_shaped(np.reshape(res.x, SHAPE)), scale=10.0)
    assert res.nfev == 5


def test_callback_other_exception_propagates():
    p = Problem(SHAPE, flat=True, seed=8)

    def callback(xk):
        raise KeyError("mine")

    with pytest.raises(KeyError):
        run_scipy(p, callback=callback, maxiter=5)


# --- bounds ------------------------------------------------------------------------

LB = np.linspace(-1.0, 0.0, 20)
UB = LB + 1.5


def _bound_forms():
    pairs = list(zip(LB, UB, strict=True))
    return {
        "Bounds": so.Bounds(LB, UB),
        "sequence": pairs,
        "sequence_arrays": [(np.float64(lo), np.float64(hi)) for lo, hi in pairs],
    }


@pytest.mark.parametrize("form", list(_bound_forms()), ids=str)
def test_bounds_trajectory(form):
    bounds = _bound_forms()[form]
    p = Problem(SHAPE, flat=True, seed=9)  # x0 = c + 2 N(0, 1): many coordinates outside the box
    first_x = []
    fun = p.fun

    def recording_fun(x):
        if not first_x:
            first_x.append(np.array(x, copy=True))
        return fun(x)

    p.fun = recording_fun
    x0 = p.x0.copy()
    assert np.any(x0 < LB) and np.any(x0 > UB)
    seen = []
    hyper = dict(lr=0.1, beta1=0.5)
    res = run_scipy(p, bounds=bounds, callback=lambda xk: seen.append(np.array(xk)), maxiter=20,
                    gtol=0.0, **hyper)
    np.testing.assert_array_equal(p.x0, x0)  # x0 not clipped in place
    np.testing.assert_array_equal(first_x[0], np.clip(x0, LB, UB))  # but the run starts inside
    traj = reference_minimize(p.grad_shaped, x0, 20, shapes=[SHAPE], bounds=(LB, UB), **hyper)
    for k, xk in enumerate(seen):
        assert np.all(xk >= LB) and np.all(xk <= UB)
        assert_close(xk, traj[k + 1], err_msg=f"iterate {k + 1}")
    assert np.any(res.x == LB) and np.any(res.x == UB)  # some coordinates sit on the bounds
    assert res.nit == 20


def test_bounds_with_none_and_infinite_entries():
    p = Problem((6,), flat=True, seed=10)
    p.x0 = np.array([-5.0, 5.0, -5.0, 5.0, 0.1, 0.2])
    pairs = [(-1.0, None), (None, 1.0), (None, None), (-2.0, 2.0), (0.0, 0.0), (-np.inf, np.inf)]
    lb = np.array([-1.0, -np.inf, -np.inf, -2.0, 0.0, -np.inf])
    ub = np.array([np.inf, 1.0, np.inf, 2.0, 0.0, np.inf])
    opts = dict(maxiter=15, gtol=0.0)
    res_pairs = so.minimize(p.fun, p.x0, method=adafactor, jac=p.grad, bounds=pairs, options=opts)
    res_box = so.minimize(p.fun, p.x0, method=adafactor, jac=p.grad, bounds=so.Bounds(lb, ub),
                          options=opts)
    np.testing.assert_array_equal(res_pairs.x, res_box.x)
    traj = reference_minimize(p.grad_shaped, p.x0, 15, bounds=(lb, ub))
    assert_close(res_pairs.x, traj[-1])
    assert res_pairs.x[4] == 0.0  # pinned by lo == hi
    assert pairs[0] == (-1.0, None)  # the user's sequence is left alone


def test_bounds_fastfactor_minimize_matrix():
    p = Problem(SHAPE, seed=11)
    lb, ub = -0.5 * np.ones(SHAPE), 0.7 * np.ones(SHAPE)
    lb_copy, ub_copy = lb.copy(), ub.copy()
    seen = []
    res = fastfactor.minimize(p.fun, p.x0, jac=p.grad, bounds=so.Bounds(lb, ub),
                              callback=lambda xk: seen.append(np.array(xk)),
                              options=dict(maxiter=10, gtol=0.0))
    traj = reference_minimize(p.grad_shaped, p.x0, 10, bounds=(lb, ub))
    assert res.x.shape == SHAPE
    assert_close(res.x, traj[-1])
    assert all(np.all((x >= lb) & (x <= ub)) for x in seen)
    np.testing.assert_array_equal(lb, lb_copy)
    np.testing.assert_array_equal(ub, ub_copy)
    # one (lo, hi) pair per element, in C order
    pairs = list(zip(lb.ravel(), ub.ravel(), strict=True))
    res2 = fastfactor.minimize(p.fun, p.x0, jac=p.grad, bounds=pairs,
                               options=dict(maxiter=10, gtol=0.0))
    np.testing.assert_array_equal(res2.x, res.x)


def test_projected_gradient_stops_on_the_boundary():
    """With the optimum outside the box, max|g| stays large but the projected gradient
    max|clip(x - g, lb, ub) - x| goes to zero: the run must end with status 0."""
    c = np.array([3.0, -3.0, 0.2, -0.4, 5.0])
    lb, ub = -np.ones(5), np.ones(5)

    def fun(x):
        return 0.5 * np.sum((x - c) ** 2)

    def jac(x):
        return x - c

    seen = []
    gtol = 1e-6
    res = so.minimize(fun, np.zeros(5), method=adafactor, jac=jac, bounds=so.Bounds(lb, ub),
                      callback=lambda xk: seen.append(np.array(xk)),
                      options=dict(maxiter=5000, gtol=gtol, lr=lambda t: 0.1 * 0.995**t,
                                   scale_parameter=False))
    assert res.status == 0 and res.success, res.message
    assert np.max(np.abs(res.jac)) > 1.0  # the plain gradient is not small...
    projected = np.max(np.abs(np.clip(res.x - res.jac, lb, ub) - res.x))
    assert projected <= gtol  # ...the projected one is
    np.testing.assert_allclose(res.x, [1.0, -1.0, 0.2, -0.4, 1.0], atol=1e-5)
    # and it did not stop earlier than needed
    prev = seen[-2]
    assert np.max(np.abs(np.clip(prev - jac(prev), lb, ub) - prev)) > gtol


# --- constraints, hess, options ----------------------------------------------------


@pytest.mark.parametrize(
    "constraints",
    [
        {"type": "ineq", "fun": lambda x: x[0]},
        [{"type": "eq", "fun": lambda x: x[0] - x[1]}],
        so.LinearConstraint(np.ones((1, 20)), -1.0, 1.0),
        [so.NonlinearConstraint(lambda x: x[0] ** 2, 0.0, 1.0)],
    ],
    ids=["dict", "list_of_dict", "LinearConstraint", "list_of_Nonlinear"],
)
def test_constraints_raise(constraints):
    p = Problem(SHAPE, flat=True, seed=12)
    with pytest.raises(ValueError):
        run_scipy(p, constraints=constraints, maxiter=3)
    with pytest.raises(ValueError):
        adafactor(p.fun, p.x0, jac=p.grad, constraints=constraints, maxiter=3)


@pytest.mark.parametrize("constraints", [(), []], ids=["tuple", "list"])
def test_empty_constraints_accepted(constraints):
    p = Problem(SHAPE, flat=True, seed=12)
    res = run_scipy(p, constraints=constraints, maxiter=3, gtol=0.0)
    assert res.nit == 3


@pytest.mark.parametrize("which", ["hess", "hessp"])
def test_hessian_warns(which):
    p = Problem(SHAPE, flat=True, seed=13)
    expected = run_scipy(Problem(SHAPE, flat=True, seed=13), maxiter=5, gtol=0.0)
    h = (lambda x: np.eye(20)) if which == "hess" else (lambda x, v: v)
    with pytest.warns(RuntimeWarning):
        res = run_scipy(p, maxiter=5, gtol=0.0, **{which: h})
    np.testing.assert_array_equal(res.x, expected.x)  # and it is ignored


@pytest.mark.parametrize("entry", ["scipy", "fastfactor", "adafactor_direct"])
def test_unknown_option_warns(entry):
    p = Problem(SHAPE, flat=entry != "fastfactor", seed=14)
    with pytest.warns(so.OptimizeWarning, match="learning_rate"):
        if entry == "scipy":
            res = run_scipy(p, maxiter=2, learning_rate=0.1)
        elif entry == "fastfactor":
            res = fastfactor.minimize(p.fun, p.x0, jac=p.grad,
                                      options=dict(maxiter=2, learning_rate=0.1))
        else:
            res = adafactor(p.fun, p.x0, jac=p.grad, maxiter=2, learning_rate=0.1)
    assert res.nit == 2


def test_known_options_do_not_warn():
    p = Problem(SHAPE, flat=True, seed=15)
    options = dict(
        maxiter=3, gtol=0.0, shapes=SHAPE, disp=False, device="cpu", lr=0.01, eps1=1e-30, eps2=1e-3,
        clip_threshold=1.0, decay_rate=-0.8, beta1=0.9, weight_decay=0.0, scale_parameter=True,
        warmup_init=False, min_dim_size_to_factor=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = so.minimize(p.fun, p.x0, method=adafactor, jac=p.grad, options=options)
        res_tol = so.minimize(p.fun, p.x0, method=adafactor, jac=p.grad, tol=0.0,
                              options=dict(maxiter=3))
    assert res.nit == 3 and res_tol.nit == 3


def test_hyper_options_reach_the_stepper():
    """Options are hyper-parameters, not ignored: the trajectory is the reference's with them."""
    p = Problem(SHAPE, flat=True, seed=16)
    hyper = dict(lr=0.03, beta1=0.7, weight_decay=0.2, clip_threshold=0.5, decay_rate=-0.6,
                 eps2=0.5, eps1=1e-4, min_dim_size_to_factor=5)
    res = run_scipy(p, maxiter=8, gtol=0.0, **hyper)
    assert_close(res.x.reshape(SHAPE), reference(p, 8, **hyper)[-1])
    assert not np.allclose(res.x.reshape(SHAPE), reference(p, 8)[-1], rtol=1e-6)


def test_disp(capsys):
    p = Problem(SHAPE, flat=True, seed=17)
    run_scipy(p, maxiter=2)
    assert capsys.readouterr().out == ""
    run_scipy(p, maxiter=2, disp=True)
    assert capsys.readouterr().out.strip()


# --- tol -> gtol, statuses, counts ---------------------------------------------------


def _gtol_problem():
    return Problem(SHAPE, flat=True, seed=18)


GTOL_HYPER = dict(lr=lambda t: 0.1 * 0.998**t, scale_parameter=False)


def test_tol_sets_gtol():
    gtol = 1e-2
    a = run_scipy(_gtol_problem(), maxiter=3000, gtol=gtol, **GTOL_HYPER)
    b = run_scipy(_gtol_problem(), maxiter=3000, tol=gtol, **GTOL_HYPER)
    p = Problem(SHAPE, seed=18)  # the same problem, matrix-shaped
    c = fastfactor.minimize(p.fun, p.x0, jac=p.grad,
                            options=dict(maxiter=3000, tol=gtol, **GTOL_HYPER))
    d = fastfactor.minimize(p.fun, p.x0, jac=p.grad, tol=gtol,
                            options=dict(maxiter=3000, **GTOL_HYPER))
    default = run_scipy(_gtol_problem(), maxiter=3000, **GTOL_HYPER)  # gtol = 1e-5
    for r in (a, b, c, d):
        assert r.status == 0 and r.success
        assert r.nit == a.nit
        assert np.max(np.abs(r.jac)) <= gtol
    assert 0 < a.nit < default.nit
    assert np.max(np.abs(default.jac)) <= 1e-5 < np.max(np.abs(a.jac))


def test_status_0_success():
    p = _gtol_problem()
    res = run_scipy(p, maxiter=3000, gtol=1e-6, **GTOL_HYPER)
    assert res.status == 0 and res.success is True
    assert np.max(np.abs(res.jac)) <= 1e-6
    assert res.nfev == res.njev == res.nit + 1 == p.nfun == p.ngrad
    assert res.fun == pytest.approx(Problem(SHAPE, flat=True, seed=18).fun(res.x), rel=1e-14)
    np.testing.assert_allclose(res.jac, Problem(SHAPE, flat=True, seed=18).grad(res.x), rtol=1e-14)


def test_status_0_at_x0():
    """Already converged at x0: no update, nit = 0, x = x0."""
    p = Problem(SHAPE, flat=True, seed=19)
    p.x0 = p.c.ravel().copy()
    res = run_scipy(p, maxiter=10)
    assert res.status == 0 and res.success and res.nit == 0 and res.nfev == 1
    np.testing.assert_array_equal(res.x, p.x0)


@pytest.mark.parametrize("entry", ["scipy", "fastfactor"])
def test_gtol_test_is_inclusive(entry):
    """max|g| <= gtol (not <): at the exact minimiser, gtol=0 already succeeds."""
    p = Problem(SHAPE, flat=entry == "scipy", seed=19)
    p.x0 = p.c.reshape(p.x0.shape).copy()
    if entry == "scipy":
        res = run_scipy(p, maxiter=10, gtol=0.0)
    else:
        res = fastfactor.minimize(p.fun, p.x0, jac=p.grad, options=dict(maxiter=10, gtol=0.0))
    assert res.status == 0 and res.success and res.nit == 0


def test_status_1_maxiter():
    p = Problem(SHAPE, flat=True, seed=20)
    res = run_scipy(p, maxiter=7)
    assert res.status == 1 and res.success is False and res.nit == 7
    assert res.nfev == res.njev == 8 == p.nfun == p.ngrad
    assert_close(res.x.reshape(SHAPE), reference(p, 7)[-1])
    q = Problem(SHAPE, flat=True, seed=20)
    assert res.fun == pytest.approx(q.fun(res.x), rel=1e-14)
    np.testing.assert_allclose(res.jac, q.grad(res.x), rtol=1e-14)


def test_messages_differ_by_status():
    p = Problem(SHAPE, flat=True, seed=21)
    m1 = run_scipy(p, maxiter=2).message
    p.x0 = p.c.ravel().copy()
    m0 = run_scipy(p, maxiter=2).message

    def stop(xk):
        raise StopIteration

    m99 = run_scipy(Problem(SHAPE, flat=True, seed=21), maxiter=2, gtol=0.0, callback=stop).message
    assert len({m0, m1, m99}) == 3 and all(isinstance(m, str) and m for m in (m0, m1, m99))


class _Blowup:
    """f, g of a shifted quadratic that turn non-finite once x[0] passes ``limit``."""

    def __init__(self, where, value=np.nan, limit=0.55):
        self.where, self.value, self.limit = where, value, limit
        self.c = np.full(6, 5.0)
        self.nfun = self.ngrad = 0
        self.points = []

    def bad(self, x):
        return x[0] > self.limit

    def fun(self, x):
        self.nfun += 1
        self.points.append(np.array(x, copy=True))
        if self.where in ("f", "both") and self.bad(x):
            return self.value
        return 0.5 * float(np.sum((x - self.c) ** 2))

    def grad(self, x):
        self.ngrad += 1
        g = x - self.c
        if self.where in ("g", "both") and self.bad(x):
            g = g.copy()
            g[3] = self.value
        return g


@pytest.mark.parametrize(
    "where, value",
    [("f", np.nan), ("f", np.inf), ("f", -np.inf), ("g", np.nan), ("g", np.inf), ("both", np.nan)],
    ids=["f_nan", "f_inf", "f_neginf", "g_nan", "g_inf", "both_nan"],
)
@pytest.mark.parametrize("entry", ["scipy", "fastfactor"])
def test_status_2_non_finite(entry, where, value):
    """x moves by about lr = 0.1 per step towards c = 5: non-finite from x_6 on."""
    b = _Blowup(where, value)
    hyper = dict(lr=0.1, scale_parameter=False)
    seen = []
    x0 = np.zeros(6)
    opts = dict(maxiter=100, gtol=0.0, **hyper)
    if entry == "scipy":
        res = so.minimize(b.fun, x0, method=adafactor, jac=b.grad,
                          callback=lambda x: seen.append(x), options=opts)
    else:
        res = fastfactor.minimize(b.fun, x0, jac=b.grad, callback=lambda x: seen.append(x),
                                  options=opts)
    traj = reference_minimize(lambda x: x - 5.0, x0, 6, **hyper)
    assert traj[5][0] < b.limit < traj[6][0]  # the premise
    assert res.status == 2 and res.success is False
    assert isinstance(res.message, str) and res.message
    assert_close(res.x, traj[5])  # the last iterate whose f and g were finite
    assert np.isfinite(res.fun) and np.all(np.isfinite(res.jac))
    assert res.fun == pytest.approx(0.5 * np.sum((res.x - 5.0) ** 2), rel=1e-14)
    np.testing.assert_allclose(res.jac, res.x - 5.0, rtol=1e-14)
    assert len(seen) == 5  # the callback never saw the non-finite iterate
    assert res.nfev == b.nfun == 7 and res.njev == b.ngrad == 7
    assert res.nit == 5  # the 6th update led to a non-finite point and was discarded


def test_status_2_at_x0():
    b = _Blowup("f", limit=-1.0)
    res = so.minimize(b.fun, np.zeros(6), method=adafactor, jac=b.grad, options=dict(maxiter=10))
    assert res.status == 2 and not res.success and res.nit == 0
    np.testing.assert_array_equal(res.x, np.zeros(6))


# --- arrays handed over are never changed behind anyone's back ----------------------


@pytest.mark.parametrize("entry", ["scipy", "fastfactor"])
def test_x0_not_mutated(entry):
    p = Problem(SHAPE, flat=entry == "scipy", seed=22)
    x0 = p.x0
    before = x0.copy()
    if entry == "scipy":
        res = run_scipy(p, maxiter=5, bounds=so.Bounds(-0.1, 0.1))
    else:
        res = fastfactor.minimize(p.fun, x0, jac=p.grad, bounds=so.Bounds(-0.1, 0.1),
                                  options=dict(maxiter=5))
    np.testing.assert_array_equal(x0, before)
    assert not np.shares_memory(res.x, x0)
    assert res.nit == 5


def test_points_given_to_fun_are_not_overwritten_later():
    """The arrays that fun and jac receive keep their values after the call (SciPy passes
    copies): a user keeping a history of them must not see it rewritten."""
    p = Problem(SHAPE, flat=True, seed=23)
    fun_points, jac_points = [], []
    fun, grad = p.fun, p.grad

    def keeping_fun(x):
        fun_points.append(x)
        return fun(x)

    def keeping_jac(x):
        jac_points.append(x)
        return grad(x)

    so.minimize(keeping_fun, p.x0, method=adafactor, jac=keeping_jac,
                options=dict(shapes=SHAPE, maxiter=6, gtol=0))
    traj = reference(p, 6)
    assert len(fun_points) == 7
    for k, (xf, xg) in enumerate(zip(fun_points, jac_points, strict=True)):
        assert_close(np.reshape(xf, SHAPE), traj[k], err_msg=f"fun point {k}")
        assert_close(np.reshape(xg, SHAPE), traj[k], err_msg=f"jac point {k}")


def test_result_is_an_optimize_result_with_all_fields():
    p = Problem(SHAPE, flat=True, seed=24)
    res = run_scipy(p, maxiter=3)
    assert isinstance(res, so.OptimizeResult)
    for key in ("x", "fun", "jac", "nit", "nfev", "njev", "status", "success", "message"):
        assert key in res, key
    assert isinstance(res.x, np.ndarray) and res.x.shape == (20,)
    assert isinstance(res.success, (bool, np.bool_))
    assert np.ndim(res.fun) == 0


@pytest.mark.parametrize("shape", [(3,), (2, 3)])
def test_gradient_whose_square_overflows_stops_with_status_2(shape):
    x0 = np.ones(shape)
    res = fastfactor.minimize(lambda x: (float(np.sum(x)), np.full(shape, 1e200)), x0, jac=True,
                              options={"maxiter": 3})
    assert res.status == 2 and not res.success
    assert res.nit == 0
    np.testing.assert_array_equal(res.x, x0)
