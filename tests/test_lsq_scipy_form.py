"""fastfactor.least_squares in scipy.optimize.least_squares' call form: the signature,
robust losses, max_nfev, args/kwargs, diff_step, jac_sparsity, tr_solver, fixed
variables, verbose, callbacks in both phases, the plateau status and the result fields,
each compared against SciPy or plain NumPy."""

import importlib.util
import inspect
import os
import re
import sys

import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp
from scipy.optimize._numdiff import group_columns
from scipy.sparse.linalg import LinearOperator

from fastfactor import least_squares
from fastfactor._lsq import _progress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIGHT = dict(ftol=1e-14, xtol=1e-14, gtol=1e-14)

# --- problems ---------------------------------------------------------------------------

T = np.linspace(0, 10, 50)
Y = 5.0 * np.exp(-0.7 * T) + 1.0 + 0.05 * np.sin(3 * T)
X0 = np.array([1.0, 1.0, 0.0])


def exp_fun(p):
    return p[0] * np.exp(-p[1] * T) + p[2] - Y


def exp_jac(p):
    e = np.exp(-p[1] * T)
    return np.column_stack([e, -p[0] * T * e, np.ones_like(T)])


class Counted:
    """fun (or jac) counting its calls."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.f(*args, **kwargs)


def outlier_problem(shape, seed=1):
    """A mildly nonlinear model with 1/8 of its data gross outliers: ``(fun, jac, truth)``
    for an x of ``shape`` (fun and jac take any shape, the Jacobian is (m, x.size))."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    m = 8 * n + 16
    A = rng.standard_normal((m, n)) / np.sqrt(n)
    truth = rng.uniform(-1, 1, n)

    def model(xf):
        u = A @ xf
        return u + 0.3 * np.tanh(u)

    y = model(truth) + 0.02 * rng.standard_normal(m)
    out = rng.choice(m, m // 8, replace=False)
    y[out] += rng.choice([-1, 1], out.size) * rng.uniform(2, 5, out.size)

    def fun(x):
        return model(np.ravel(x)) - y

    def jac(x):
        u = A @ np.ravel(x)
        return A * (1 + 0.3 / np.cosh(u) ** 2)[:, None]

    return fun, jac, truth


# --- losses in plain NumPy (SciPy's documented formulas): rho and rho' --------------------


def cube_root_loss(z):
    """A callable loss of the user's, ``(3, m)``: 3((1 + z)^(1/3) - 1)."""
    t = 1 + z
    return np.stack([3 * (np.cbrt(t) - 1), t ** (-2 / 3), -2 / 3 * t ** (-5 / 3)])


RHO = {
    "linear": (lambda z: z, lambda z: np.ones_like(z)),
    "soft_l1": (lambda z: 2 * (np.sqrt(1 + z) - 1), lambda z: 1 / np.sqrt(1 + z)),
    "huber": (lambda z: np.where(z <= 1, z, 2 * np.sqrt(z) - 1),
              lambda z: np.where(z <= 1, 1.0, 1 / np.sqrt(np.maximum(z, 1)))),
    "cauchy": (np.log1p, lambda z: 1 / (1 + z)),
    "arctan": (np.arctan, lambda z: 1 / (1 + z ** 2)),
    "callable": (lambda z: 3 * (np.cbrt(1 + z) - 1), lambda z: (1 + z) ** (-2 / 3)),
}
LOSSES = ["soft_l1", "huber", "cauchy", "arctan", "callable"]


def _loss_arg(name):
    return cube_root_loss if name == "callable" else name


def robust_cost(f, loss, C):
    return 0.5 * C ** 2 * np.sum(RHO[loss][0](f ** 2 / C ** 2))


def robust_grad(J, f, loss, C):
    return J.T @ (RHO[loss][1](f ** 2 / C ** 2) * f)


# --- the call form ----------------------------------------------------------------------


def test_positional_order_is_scipys():
    ours = list(inspect.signature(least_squares).parameters)
    theirs = list(inspect.signature(so.least_squares).parameters)
    end = theirs.index("callback") + 1
    assert ours[:end] == theirs[:end]
    # after callback: SciPy's later names, if any, then fastfactor's options
    assert ours[-1] == "options" and ours[:-1] == theirs[:len(ours) - 1]
    same = ("jac", "bounds", "loss", "f_scale", "diff_step", "tr_solver", "jac_sparsity",
            "max_nfev", "verbose", "args", "kwargs", "callback")
    for name in same:
        assert (inspect.signature(least_squares).parameters[name].default
                == inspect.signature(so.least_squares).parameters[name].default), name


def test_bounds_as_the_fourth_positional_argument():
    lb, ub = [0.0, 0.5, -1.0], [4.0, 0.9, 0.5]  # the fit wants a ≈ 5: a is held at 4
    res = least_squares(exp_fun, [4.0, 0.9, 0.5], exp_jac, (lb, ub))
    ref = so.least_squares(exp_fun, [4.0, 0.9, 0.5], exp_jac, (lb, ub), **TIGHT)
    assert res.success and res.x[0] == 4.0 and res.active_mask[0] == 1
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(res.cost, ref.cost, rtol=1e-10)


@pytest.mark.parametrize("positional", [False, True])
@pytest.mark.parametrize("method", ["trf", "dogbox", "lm"])
def test_scipy_method_names_point_to_scipy(method, positional):
    fun = Counted(exp_fun)
    with pytest.raises(ValueError, match=re.escape("scipy.optimize.least_squares")) as info:
        if positional:
            least_squares(fun, X0, "2-point", (-np.inf, np.inf), method)
        else:
            least_squares(fun, X0, method=method)
    assert repr(method) in str(info.value)
    assert fun.calls == 0  # refused before any evaluation


@pytest.mark.parametrize("name, value", [
    ("disp", True), ("xtol", 1e-3), ("ftol", 1e-3), ("gtol", 1e-3), ("loss", "huber"),
    ("f_scale", 2.0), ("x_scale", 1.0), ("max_nfev", 10), ("verbose", 1),
    ("diff_step", 1e-3), ("tr_solver", "lsmr"), ("tr_options", {}), ("jac_sparsity", None),
    ("method", "trf"),
])
def test_a_keyword_given_as_an_option_is_refused(name, value):
    fun = Counted(exp_fun)
    with pytest.raises(TypeError, match=re.escape(
            f"{name!r} is a keyword argument of fastfactor.least_squares")) as info:
        least_squares(fun, X0, options={name: value, "maxiter": 5})
    assert ("verbose=1" if name == "disp" else f"{name}=...") in str(info.value)
    assert fun.calls == 0


# --- robust losses against SciPy ----------------------------------------------------------


@pytest.mark.parametrize("shape", [(4,), (3, 4), (2, 2, 3)], ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("loss", LOSSES)
def test_robust_loss_reaches_scipys_solution(loss, dtype, shape):
    C = 0.1
    fun, jac, truth = outlier_problem(shape)
    x0 = np.zeros(shape)
    ref = so.least_squares(fun, x0.ravel(), jac=jac, loss=_loss_arg(loss), f_scale=C, **TIGHT)
    res = least_squares(fun, x0.astype(dtype), jac=jac, loss=_loss_arg(loss), f_scale=C)
    assert res.success, res.message
    assert res.x.shape == shape and res.x.dtype == dtype
    # float32: fun sees x rounded to float32 (spacing ~1e-7 here), so the minimiser is
    # located only to a few such spacings times the conditioning; the minima of the
    # different losses lie >= 3e-4 apart, so 1e-5 still tells them apart.
    atol = 1e-6 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(res.x.ravel(), ref.x, rtol=0, atol=atol)
    np.testing.assert_allclose(res.cost, ref.cost, rtol=1e-9 if dtype == np.float64 else 1e-7)
    # the robust fit ignores the outliers: far closer to the truth than the linear one
    linear = so.least_squares(fun, x0.ravel(), jac=jac)
    assert np.max(np.abs(ref.x - truth)) < 0.2 * np.max(np.abs(linear.x - truth))
    # the result's cost, residuals and gradient are the loss's, in plain NumPy
    f = fun(res.x)
    np.testing.assert_allclose(res.fun, f, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.cost, robust_cost(f, loss, C), rtol=1e-12)
    np.testing.assert_allclose(res.grad.ravel(), robust_grad(jac(res.x), f, loss, C),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("shape", [(4,), (3, 4)], ids=str)
@pytest.mark.parametrize("loss", LOSSES + ["linear"])
def test_adafactor_phase_with_a_loss(loss, shape):
    """The Adafactor phase alone descends the robust cost, along J.T @ (rho'(z) * f)."""
    C = 0.1
    fun, jac, _ = outlier_problem(shape)
    x0 = np.zeros(shape)
    res = least_squares(fun, x0, jac=jac, loss=_loss_arg(loss), f_scale=C,
                        options={"finish": False, "maxiter": 300})
    assert res.phase == "adafactor" and list(res.phases) == ["adafactor"]
    f = fun(res.x)
    assert res.cost < robust_cost(fun(x0), loss, C)
    np.testing.assert_allclose(res.cost, robust_cost(f, loss, C), rtol=1e-12)
    g = robust_grad(jac(res.x), f, loss, C)
    assert res.grad.shape == shape
    np.testing.assert_allclose(res.grad.ravel(), g, rtol=1e-10, atol=1e-14)
    assert res.optimality == pytest.approx(np.max(np.abs(g)), rel=1e-10)


# --- evaluations --------------------------------------------------------------------------


JACS = {"callable": exp_jac, "2-point": "2-point", "3-point": "3-point"}


@pytest.mark.parametrize("jac, budget", [
    ("callable", 1), ("callable", 2), ("callable", 3),
    ("callable", 10), ("callable", 51), ("callable", 400), ("callable", 5000),
    ("2-point", 1), ("2-point", 3), ("2-point", 4),
    ("2-point", 5), ("2-point", 9), ("2-point", 50), ("2-point", 1001), ("2-point", 20000),
    ("3-point", 2), ("3-point", 7), ("3-point", 8),
    ("3-point", 100), ("3-point", 30000),
])
def test_max_nfev_bounds_every_call_of_fun(jac, budget):
    fun = Counted(exp_fun)
    res = least_squares(fun, X0, jac=JACS[jac], max_nfev=budget)
    assert res.nfev == fun.calls == sum(p.nfev for p in res.phases.values())
    assert fun.calls <= budget
    if res.status == 0:  # the budget ended the run: all of it was used
        assert fun.calls == budget and not res.success
    else:
        assert res.success
    assert res.cost <= 0.5 * np.sum(exp_fun(X0) ** 2)
    np.testing.assert_array_equal(res.fun, exp_fun(res.x))


@pytest.mark.parametrize("jac", list(JACS))
def test_a_budget_beyond_the_runs_needs_changes_nothing(jac):
    fun = Counted(exp_fun)
    free = least_squares(fun, X0, jac=JACS[jac])
    assert free.success and free.nfev == fun.calls
    # twice what the run takes: the Adafactor phase (given half) is not cut short
    res = least_squares(exp_fun, X0, jac=JACS[jac], max_nfev=2 * fun.calls)
    assert res.nfev == free.nfev and res.status == free.status
    np.testing.assert_array_equal(res.x, free.x)


def test_max_nfev_ends_the_finish_too():
    """A budget spent inside SciPy's trf returns its last iterate with a Jacobian."""
    fun = Counted(exp_fun)
    res = least_squares(fun, X0, max_nfev=50)
    assert fun.calls == 50 and res.status == 0
    assert list(res.phases) == ["adafactor", "trf"] and res.phases["trf"].status == 0
    assert res.phases["trf"].nfev > 0
    np.testing.assert_array_equal(res.fun, exp_fun(res.x))
    assert res.cost <= res.phases["adafactor"].cost


@pytest.mark.parametrize("jac", ["callable", "2-point"])
def test_args_and_kwargs_reach_fun_and_jac(jac):
    seen = {"fun": 0, "jac": 0}

    def fun(p, t, y, *, shift):
        assert shift == 0.5
        seen["fun"] += 1
        return p[0] * np.exp(-p[1] * t) + p[2] + shift - y

    def jac_(p, t, y, *, shift):
        assert shift == 0.5
        seen["jac"] += 1
        return exp_jac(p)

    j = jac_ if jac == "callable" else jac
    res = least_squares(fun, X0, jac=j, args=(T, Y), kwargs={"shift": 0.5})
    assert seen["fun"] == res.nfev and (jac != "callable" or seen["jac"] == res.njev > 0)
    ref = so.least_squares(fun, X0, jac=j, args=(T, Y), kwargs={"shift": 0.5}, **TIGHT)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-6)
    np.testing.assert_allclose(res.x[2] + 0.5, least_squares(exp_fun, X0, jac=exp_jac).x[2],
                               rtol=1e-6)


def _forward_difference(f, x, h, central=False):
    """The finite-difference Jacobian with steps ``h`` (dx as SciPy forms it)."""
    f0 = f(x)
    J = np.empty((f0.size, x.size))
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = h[j]
        dx = (x + e)[j] - x[j]
        if central:
            J[:, j] = (f(x + e) - f(x - e)) / (2 * dx)
        else:
            J[:, j] = (f(x + e) - f0) / dx
    return J


@pytest.mark.parametrize("method", ["2-point", "3-point"])
@pytest.mark.parametrize("diff_step", [1e-3, [1e-3, 1e-4]], ids=["scalar", "array"])
def test_diff_step_sizes_the_differences(diff_step, method):
    points = []

    def fun(x):
        points.append(x.copy())
        return np.array([x[0] ** 2 + x[1], np.sin(x[1]), x[0] * x[1] ** 3])

    x0 = np.array([0.5, 3.0])
    res = least_squares(fun, x0, jac=method, diff_step=diff_step,
                        options={"maxiter": 0, "finish": False})
    h = np.asarray(diff_step) * np.maximum(1.0, np.abs(x0))  # the documented step
    steps = np.array([p - x0 for p in points[1:]])
    np.testing.assert_allclose(np.abs(steps).max(axis=0), h, rtol=1e-10)
    want = _forward_difference(fun, x0, h, central=method == "3-point")
    np.testing.assert_allclose(res.jac, want, rtol=1e-12, atol=1e-15)
    # and the step matters: the default one gives another (closer) Jacobian
    default = least_squares(fun, x0, jac=method, options={"maxiter": 0, "finish": False})
    assert not np.allclose(default.jac, res.jac, rtol=1e-8, atol=0)


def _banded():
    """A chain: residual i depends on x[i] and x[i - 1] only."""
    n = 12
    c = np.linspace(0.5, 1.5, n)

    def fun(x):
        r = np.empty(n + 1)
        r[0] = x[0] - 1
        r[1:n] = x[1:] - c[1:] + 0.3 * x[:-1] ** 2
        r[n] = 0.1 * x[-1]
        return r

    S = np.vstack([np.eye(n, dtype=int) + np.eye(n, k=-1, dtype=int), np.eye(n, dtype=int)[-1:]])
    return fun, S, np.zeros(n)


def test_jac_sparsity_gives_the_dense_jacobian_sparse():
    fun, S, x0 = _banded()
    counted = Counted(fun)
    at_x0 = least_squares(counted, x0, jac_sparsity=S, options={"maxiter": 0, "finish": False})
    groups = group_columns(S).max() + 1  # SciPy's grouping of columns with disjoint rows
    assert sp.issparse(at_x0.jac) and counted.calls == 1 + groups < 1 + S.shape[1]
    h = np.sqrt(np.finfo(float).eps) * np.maximum(1, np.abs(x0))
    np.testing.assert_allclose(at_x0.jac.toarray(), _forward_difference(fun, x0, h),
                               rtol=1e-12, atol=1e-12)
    options = {"maxiter": 50}  # grouped differences are slow to form: a short first phase
    res = least_squares(fun, x0, jac_sparsity=S, options=options)
    dense = least_squares(fun, x0, options=options)
    ref = so.least_squares(fun, x0, jac_sparsity=S, **TIGHT)
    assert res.success and sp.issparse(res.jac) and isinstance(dense.jac, np.ndarray)
    np.testing.assert_allclose(res.x, dense.x, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(res.cost, ref.cost, rtol=1e-10)
    h = np.sqrt(np.finfo(float).eps) * np.maximum(1, np.abs(res.x))
    np.testing.assert_allclose(res.jac.toarray(), _forward_difference(fun, res.x, h),
                               rtol=1e-10, atol=1e-12)
    assert res.nfev < dense.nfev / 2


def _operator_jac(p):
    J = exp_jac(p)
    return LinearOperator(J.shape, matvec=lambda v: J @ v, rmatvec=lambda v: J.T @ v,
                          dtype=float)


@pytest.mark.parametrize("tr_solver", ["lsmr", None])
def test_lsmr_finish_with_an_operator_jacobian(tr_solver):
    res = least_squares(exp_fun, X0, jac=_operator_jac, tr_solver=tr_solver,
                        tr_options={"atol": 1e-12, "btol": 1e-12})
    ref = so.least_squares(exp_fun, X0, jac=_operator_jac, tr_solver="lsmr", **TIGHT)
    assert res.success and res.phase == "trf" and isinstance(res.jac, LinearOperator)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-6)
    np.testing.assert_allclose(res.cost, ref.cost, rtol=1e-10)
    np.testing.assert_allclose(res.grad, exp_jac(res.x).T @ exp_fun(res.x), rtol=1e-10,
                               atol=1e-12)


def test_exact_solver_with_an_operator_is_refused_at_x0():
    fun = Counted(exp_fun)
    with pytest.raises(ValueError, match="dense"):
        so.least_squares(fun, X0, jac=_operator_jac, tr_solver="exact")
    scipy_calls, fun.calls = fun.calls, 0
    with pytest.raises(ValueError, match="dense"):
        least_squares(fun, X0, jac=_operator_jac, tr_solver="exact")
    assert fun.calls == scipy_calls


@pytest.mark.parametrize("jac", [exp_jac, "2-point"], ids=["callable", "2-point"])
def test_fixed_variables_stay_fixed_through_the_finish(jac):
    lb = np.array([-np.inf, 0.75, -np.inf])
    ub = np.array([np.inf, 0.75, np.inf])
    seen = []

    def fun(p):
        seen.append(p[1])
        return exp_fun(p)

    res = least_squares(fun, np.array([1.0, 0.5, 0.0]), jac=jac, bounds=(lb, ub))
    assert set(seen) == {0.75} and res.x[1] == 0.75
    assert "trf" in res.phases and res.success

    def reduced(q):  # SciPy refuses lb == ub: the problem in the free variables
        return exp_fun(np.array([q[0], 0.75, q[1]]))

    ref = so.least_squares(reduced, [1.0, 0.0], **TIGHT)
    np.testing.assert_allclose(res.x[[0, 2]], ref.x, rtol=1e-6)
    np.testing.assert_allclose(res.cost, ref.cost, rtol=1e-10)


# --- verbose ------------------------------------------------------------------------------


def test_verbose_0_prints_nothing(capsys):
    least_squares(exp_fun, X0, jac=exp_jac, verbose=0)
    assert capsys.readouterr() == ("", "")


def test_verbose_1_prints_a_summary(capsys):
    res = least_squares(exp_fun, X0, jac=exp_jac, verbose=1)
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        res.message,
        f"Function evaluations {res.nfev}, initial cost "
        f"{0.5 * np.sum(exp_fun(X0) ** 2):.4e}, final cost {res.cost:.4e}, first-order "
        f"optimality {res.optimality:.2e}."]


def test_verbose_2_prints_progress_and_scipys_iterations(capsys):
    pytest.importorskip("tqdm")
    res = least_squares(exp_fun, X0, jac=exp_jac, verbose=2)
    out, err = capsys.readouterr()
    nit = res.phases["adafactor"].nit
    # the bar of the Adafactor phase (to stdout), then SciPy's trf table and ours
    bar = out[:out.index("Iteration")]
    assert "adafactor:" in bar and f"{nit}/1000" in bar
    assert "Total nfev" in out and "Cost reduction" in out
    assert out.splitlines()[-1].startswith(f"Function evaluations {res.nfev},")
    assert res.message in out


def test_verbose_2_without_tqdm_prints_lines(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails
    monkeypatch.setattr(_progress, "INTERVAL", 0.0)  # a line every iteration
    costs = []
    res = least_squares(exp_fun, X0, jac=exp_jac, verbose=2,
                        callback=lambda intermediate_result: costs.append(
                            intermediate_result.cost),
                        options={"maxiter": 20, "finish": False})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "adafactor phase: up to 20 iterations"
    progress = [ln for ln in lines if ln.startswith("adafactor: iteration")]
    assert len(progress) == res.nit == 20
    for k, (line, cost) in enumerate(zip(progress, costs, strict=True), 1):
        assert re.match(rf"adafactor: iteration +{k}  cost {re.escape(f'{cost:.6e}')}  ",
                        line), line


# --- callbacks in both phases -----------------------------------------------------------


def test_callback_forms_are_called_in_every_phase():
    fun = Counted(exp_fun)
    seen = []

    def cb(intermediate_result):
        r = intermediate_result
        seen.append((r.nit, fun.calls, r.nfev))
        np.testing.assert_allclose(r.fun, exp_fun(r.x), rtol=1e-13)
        assert r.cost == pytest.approx(0.5 * np.sum(r.fun ** 2), rel=1e-13)

    options = {"maxiter": 30}  # not converged: trf from x0 runs too
    res = least_squares(fun, X0, jac=exp_jac, callback=cb, options=options)
    assert list(res.phases) == ["adafactor", "trf", "trf from x0"]
    total = sum(p.nit for p in res.phases.values())
    assert [s[0] for s in seen] == list(range(1, total + 1))
    assert all(calls == nfev for _, calls, nfev in seen)
    xs = []
    least_squares(exp_fun, X0, jac=exp_jac, callback=lambda xk: xs.append(xk.copy()),
                  options=options)
    assert len(xs) == total and all(x.shape == (3,) for x in xs)


@pytest.mark.parametrize("phase", ["adafactor", "trf", "trf from x0"])
def test_stop_iteration_in_each_phase(phase):
    options = {"maxiter": 30}
    free = least_squares(exp_fun, X0, jac=exp_jac, options=options)
    first = {"adafactor": 10, "trf": 31, "trf from x0": 31 + free.phases["trf"].nit}[phase]
    seen = []

    def cb(intermediate_result):
        seen.append(intermediate_result)
        if intermediate_result.nit == first:
            raise StopIteration

    res = least_squares(exp_fun, X0, jac=exp_jac, callback=cb, options=options)
    assert res.status == -2 and not res.success
    assert list(res.phases)[-1] == phase and res.phases[phase].status == -2
    if phase != "trf from x0":
        # as SciPy's: the iterate the callback saw last
        assert res.phase == phase
        np.testing.assert_array_equal(res.x, seen[-1].x)
        assert res.cost == seen[-1].cost
    else:
        # stopped in the second trust-region run: still the lowest cost of the run
        assert res.phase == "trf" and res.cost == res.phases["trf"].cost
        assert res.cost < seen[-1].cost


# --- plateaus: NIST Eckerle4 from its first start -------------------------------------------


def _eckerle4():
    spec = importlib.util.spec_from_file_location(
        "example_nist", os.path.join(ROOT, "docs", "examples", "nist.py"))
    nist = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nist)
    data = nist.read_dat(os.path.join(ROOT, "docs", "examples", "data", "nist",
                                      "Eckerle4.dat"))
    model, x, y = nist.MODELS["Eckerle4"], data["x"], data["y"]

    def fun(b):
        return model(b, x) - y

    def jac(b, h=1e-30):  # complex step: exact
        return np.column_stack([model(b + 1j * h * e, x).imag / h for e in np.eye(b.size)])

    return fun, jac, data


@pytest.fixture(scope="module")
def eckerle4():
    return _eckerle4()


def test_eckerle4_default_run_leaves_the_plateau(eckerle4):
    fun, jac, data = eckerle4
    res = least_squares(fun, data["start1"], jac=jac)
    ref = so.least_squares(fun, data["start1"], jac=jac, **TIGHT)
    assert res.success, res.message
    np.testing.assert_allclose(2 * res.cost, data["rss"], rtol=1e-8)
    np.testing.assert_allclose(res.cost, ref.cost, rtol=1e-10)
    np.testing.assert_allclose(res.x, data["certified"], rtol=1e-6)
    # Adafactor stops on the plateau (cost 0.35); the finish there says so
    assert res.phases["adafactor"].cost > 100 * res.cost
    assert res.phases["trf"].status == -4 and res.phase == "trf from x0"


def test_eckerle4_without_trf_from_x0_reports_the_plateau(eckerle4):
    fun, jac, data = eckerle4
    res = least_squares(fun, data["start1"], jac=jac, options={"trf_from_x0": False})
    assert res.cost > 100 * data["rss"] / 2  # on the plateau
    assert res.status == -4 and not res.success
    assert "plateau" in res.message and list(res.phases) == ["adafactor", "trf"]


def test_eckerle4_with_finite_differences_does_not_claim_the_plateau(eckerle4):
    fun, _, data = eckerle4
    ref = so.least_squares(fun, data["start1"], **TIGHT)  # SciPy's 2-point solves it
    np.testing.assert_allclose(2 * ref.cost, data["rss"], rtol=1e-6)
    res = least_squares(fun, data["start1"])
    assert not res.success or res.cost < 1.001 * ref.cost, (res.status, res.cost)


# --- inputs and results -----------------------------------------------------------------------

_BUFFER = np.empty(T.size)
_JBUFFER = np.empty((T.size, 3))


def _fun_into_buffer(p):
    _BUFFER[:] = exp_fun(p)
    return _BUFFER


def _jac_into_buffer(p):
    _JBUFFER[:] = exp_jac(p)
    return _JBUFFER




@pytest.mark.parametrize("jac, loss, maxiter", [
    ("callable", "linear", None),
    ("callable", "soft_l1", None),
    ("callable", "linear", 30),
    ("callable", "soft_l1", 30),
    ("callable", "soft_l1", 0),
    ("2-point", "linear", None),
    ("3-point", "soft_l1", 30),
])
def test_fun_returning_the_same_array_each_call(jac, loss, maxiter):
    options = {"maxiter": maxiter}
    j = exp_jac if jac == "callable" else jac
    fresh = least_squares(exp_fun, X0, jac=j, loss=loss, options=options)
    res = least_squares(_fun_into_buffer, X0, jac=j, loss=loss, options=options)
    np.testing.assert_array_equal(res.x, fresh.x)
    assert res.cost == fresh.cost and res.nfev == fresh.nfev
    np.testing.assert_array_equal(res.fun, exp_fun(res.x))
    assert not np.shares_memory(res.fun, _BUFFER)




@pytest.mark.parametrize("options", [
    {"maxiter": 50, "finish": False},  # the best iterate is not the last
    {},
], ids=["adafactor", "default"])
def test_jac_returning_the_same_array_each_call(options):
    fresh = least_squares(exp_fun, X0, jac=exp_jac, options=options)
    res = least_squares(exp_fun, X0, jac=_jac_into_buffer, options=options)
    np.testing.assert_array_equal(res.x, fresh.x)
    np.testing.assert_array_equal(res.grad, fresh.grad)
    np.testing.assert_array_equal(res.jac, exp_jac(res.x))
    assert not np.shares_memory(res.jac, _JBUFFER)


def test_inputs_are_not_mutated():
    x0 = np.array([9.0, 1.0, 0.0])  # outside the box: clipped, on a copy
    lb, ub = np.array([0.0, 0.5, -1.0]), np.array([4.0, 0.9, 0.5])
    scale, step = np.array([1.0, 0.1, 1.0]), np.array([1e-6, 1e-7, 1e-6])
    inputs = (x0, lb, ub, scale, step)
    copies = [a.copy() for a in inputs]

    def fun(p):
        r = exp_fun(p)
        p *= 2.0  # fun may scribble on its argument
        return r

    res = least_squares(fun, x0, bounds=(lb, ub), x_scale=scale, diff_step=step)
    bounds = so.Bounds(lb, ub)
    res_b = least_squares(exp_fun, x0, bounds=bounds)
    for a, c in zip(inputs, copies, strict=True):
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(bounds.lb, lb)
    ref = so.least_squares(exp_fun, np.clip(x0, lb, ub), bounds=(lb, ub), **TIGHT)
    for r in (res, res_b):
        assert r.success and not np.shares_memory(r.x, x0)
        np.testing.assert_allclose(r.x, ref.x, rtol=1e-6, atol=1e-8)


def _undefined_below(p):  # NaN where k < 0.95, on the way from k = 1 to k = 0.7
    return exp_fun(p) * (np.nan if p[1] < 0.95 else 1.0)


def _stop_at_5(intermediate_result):
    if intermediate_result.nit == 5:
        raise StopIteration


@pytest.mark.parametrize("case", ["converged", "linear", "x0 optimal", "max_nfev", "maxiter",
                                  "callback", "nan", "nan finish", "plateau"])
def test_result_fields(case, eckerle4):
    fun, jac, x0, kw = Counted(exp_fun), exp_jac, X0, {}
    if case == "linear":
        fun, jac = Counted(lambda p: exp_jac(X0) @ p - Y), lambda p: exp_jac(X0)
    elif case == "x0 optimal":
        x0 = least_squares(exp_fun, X0, jac=exp_jac).x
        kw = dict(gtol=1e-6)
    elif case == "max_nfev":
        kw = dict(max_nfev=20)
    elif case == "maxiter":
        kw = dict(options={"maxiter": 20, "finish": False})
    elif case == "callback":
        kw = dict(callback=_stop_at_5)
    elif case == "nan":
        fun, kw = Counted(_undefined_below), dict(options={"finish": False})
    elif case == "nan finish":
        fun = Counted(_undefined_below)
    elif case == "plateau":
        f, jac, data = eckerle4
        fun, x0, kw = Counted(f), data["start1"], dict(options={"trf_from_x0": False})
    res = least_squares(fun, x0, jac=jac, **kw)
    want = {"max_nfev": 0, "maxiter": 0, "callback": -2, "nan": -3, "plateau": -4}
    if case in want:
        assert res.status == want[case]
    else:
        assert res.status in (1, 2, 3, 4)
    assert res.success == (res.status in (1, 2, 3, 4))
    assert res.phase in res.phases and list(res.phases)[0] == "adafactor"
    assert set(res.phases) <= {"adafactor", "trf", "trf from x0"}
    assert list(res.phases) == [k for k in ("adafactor", "trf", "trf from x0")
                                if k in res.phases]
    for p in res.phases.values():
        assert set(p) >= {"cost", "status", "nit", "nfev", "njev"}
    assert res.nfev == fun.calls == sum(p.nfev for p in res.phases.values())
    assert res.njev == sum(p.njev for p in res.phases.values())
    assert res.nit == res.phases["adafactor"].nit
    assert res.cost == res.phases[res.phase].cost == min(
        p.cost for p in res.phases.values()) or res.status in (-2, 98)
    np.testing.assert_array_equal(res.fun, fun.f(res.x))
    assert res.cost == pytest.approx(0.5 * np.sum(res.fun ** 2), rel=1e-14)
    assert res.x.shape == np.shape(x0) and res.active_mask.shape == np.shape(x0)
    text = {"adafactor": "the Adafactor phase", "trf": "the trf finish",
            "trf from x0": "trf from x0"}[res.phase]
    assert text in res.message


# --- SciPy's conventions met by a drop-in call --------------------------------------------------


@pytest.mark.parametrize("bounds", [(0.0, None), (None, 10.0), (None, None)],
                         ids=["lb", "ub", "neither"])
def test_none_for_a_side_of_the_bounds_is_no_bound(bounds):
    lo = -np.inf if bounds[0] is None else bounds[0]
    hi = np.inf if bounds[1] is None else bounds[1]
    res = least_squares(exp_fun, X0, jac=exp_jac, bounds=bounds)
    ref = least_squares(exp_fun, X0, jac=exp_jac, bounds=(lo, hi))
    np.testing.assert_array_equal(res.x, ref.x)


@pytest.mark.parametrize("bounds", [(np.inf, np.inf), (-np.inf, -np.inf),
                                    ([-np.inf, np.inf, 0.0], [np.inf, np.inf, 1.0])],
                         ids=["lb=inf", "ub=-inf", "one lb=inf"])
def test_bounds_that_cannot_be_met_are_refused(bounds):
    with pytest.raises(ValueError, match="cannot be met"):
        least_squares(exp_fun, X0, jac=exp_jac, bounds=bounds)
    with pytest.raises(ValueError):  # SciPy refuses them too
        so.least_squares(exp_fun, X0, jac=exp_jac, bounds=bounds)


@pytest.mark.filterwarnings("ignore:Setting `[xg]tol` below:UserWarning")  # SciPy's, for 0
@pytest.mark.parametrize("off", ["xtol", "gtol", ("xtol", "gtol")], ids=str)
def test_a_tolerance_of_none_turns_its_test_off(off):
    names = (off,) if isinstance(off, str) else off
    off_none = least_squares(exp_fun, X0, jac=exp_jac, **dict.fromkeys(names))
    off_zero = least_squares(exp_fun, X0, jac=exp_jac, **dict.fromkeys(names, 0.0))
    np.testing.assert_array_equal(off_none.x, off_zero.x)
    assert off_none.status == off_zero.status and off_none.success
    assert off_none.status not in [{"xtol": 3, "gtol": 1}[n] for n in names]


@pytest.mark.filterwarnings("ignore:Setting `[xg]tol` below:UserWarning")
def test_all_tolerances_off_is_refused_as_in_scipy():
    with pytest.raises(ValueError, match="machine epsilon"):
        least_squares(exp_fun, X0, jac=exp_jac, ftol=None, xtol=0.0, gtol=1e-20)
    with pytest.raises(ValueError, match="epsilon"):
        so.least_squares(exp_fun, X0, jac=exp_jac, ftol=None, xtol=0.0, gtol=1e-20)


@pytest.mark.parametrize("verbose, printed", [(False, False), (True, True)])
def test_verbose_as_a_bool(verbose, printed, capsys):
    least_squares(exp_fun, X0, jac=exp_jac, verbose=verbose)
    assert bool(capsys.readouterr().out) == printed


def test_workers_other_than_none_is_refused():
    res = least_squares(exp_fun, X0, jac=exp_jac, workers=None)
    assert res.success
    with pytest.raises(ValueError, match="workers"):
        least_squares(exp_fun, X0, jac=exp_jac, workers=map)


@pytest.mark.parametrize("name", ["maxfev", "maxfun", "disp"])
def test_scipy_names_in_options_show_the_keyword(name):
    with pytest.raises(TypeError, match="max_nfev=|verbose=1"):
        least_squares(exp_fun, X0, jac=exp_jac, options={name: 10})


def test_active_mask_allows_for_trf_ending_inside_the_bound():
    # SciPy's bounded Rosenbrock: trf ends a few ulps inside x[1] >= 1.5
    def f(x):
        return np.array([10 * (x[1] - x[0] ** 2), 1 - x[0]])

    def J(x):
        return np.array([[-20 * x[0], 10], [-1, 0.0]])

    res = least_squares(f, [2.0, 2.0], J, bounds=([-np.inf, 1.5], np.inf))
    ref = so.least_squares(f, [2.0, 2.0], J, bounds=([-np.inf, 1.5], np.inf), **TIGHT)
    assert res.success, res.message
    np.testing.assert_array_equal(res.active_mask, ref.active_mask)
    np.testing.assert_array_equal(res.active_mask, [0, -1])
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-8)


def test_badly_scaled_minimum_is_not_a_plateau():
    # a model of tiny sensitivity (1e-6 per unit of the parameters), 2-point Jacobian:
    # trf's absolute gtol ends it early, with residuals orthogonal only to ~1e-6
    x = np.linspace(0, 1, 50)
    y = 2 * x + 0.5 + 1e-3 * np.random.default_rng(1).standard_normal(50)

    def fun(p):
        return 1e-6 * p[0] * x + 1e-6 * p[1] - y

    res = least_squares(fun, [1e6, 1e6])
    line = np.polyfit(x, y, 1) * 1e6
    assert res.success, res.message
    np.testing.assert_allclose(res.x, line, rtol=1e-6)


# --- the handover ---------------------------------------------------------------------------------


def test_handover_ends_the_adafactor_phase_when_progress_flattens():
    res = least_squares(exp_fun, X0, jac=exp_jac)
    ada = res.phases["adafactor"]
    assert ada.status == 0 and 20 < ada.nit < 1000 and res.success
    # the same run without a handover: the phase runs on, the answer is the same
    full = least_squares(exp_fun, X0, jac=exp_jac, options={"handover_window": 0})
    assert full.phases["adafactor"].nit > ada.nit
    np.testing.assert_allclose(res.x, full.x, rtol=1e-7)
    assert res.nfev < full.nfev


@pytest.mark.parametrize("window, rtol", [(5, 1e-3), (20, 1e-3), (20, 1e-6), (50, 1e-2)])
def test_handover_rule_against_a_plain_reading_of_the_costs(window, rtol):
    costs = []  # the callback sees the Adafactor phase's iterations first
    options = {"handover_window": window, "handover_rtol": rtol, "trf_from_x0": False}
    res = least_squares(exp_fun, X0, jac=exp_jac, options=options,
                        callback=lambda intermediate_result: costs.append(
                            intermediate_result.cost))
    nit = res.phases["adafactor"].nit
    cost0 = 0.5 * np.sum(exp_fun(X0) ** 2)
    best = np.minimum.accumulate([cost0] + costs[:nit])  # best[k]: lowest after k steps
    # the first iteration k > window where the lowest cost fell by at most rtol of it
    expect = next(k for k in range(window + 1, len(best))
                  if best[k - window] - best[k] <= rtol * best[k])
    assert nit == expect


def test_no_handover_without_the_finish():
    res = least_squares(exp_fun, X0, jac=exp_jac, options={"finish": False})
    assert res.status in (1, 3) and res.phases["adafactor"].nit > 100
