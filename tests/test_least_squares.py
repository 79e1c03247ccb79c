"""fastfactor.least_squares: the same minimisers as scipy.optimize.least_squares, every
``jac`` form, matrix-shaped x0, bounds, the result fields and bad input."""

import warnings

import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

import fastfactor
from fastfactor import least_squares

# --- problems -----------------------------------------------------------------------------


def linear_problem(m=80, n=6, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n)) * np.linspace(1, 4, n)
    b = A @ rng.standard_normal(n) + 0.1 * rng.standard_normal(m)
    return A, b


def exp_problem():
    t = np.linspace(0, 10, 50)
    y = 5.0 * np.exp(-0.7 * t) + 1.0 + 0.05 * np.sin(3 * t)

    def fun(p):
        return p[0] * np.exp(-p[1] * t) + p[2] - y

    def jac(p):
        e = np.exp(-p[1] * t)
        return np.column_stack([e, -p[0] * t * e, np.ones_like(t)])

    return fun, jac, np.array([1.0, 1.0, 0.0])


# NIST StRD Misra1a (lower difficulty): y = b1 * (1 - exp(-b2 * x)); data, the two
# starting points and the certified values copied from NIST's Misra1a.dat.
MISRA1A = np.array([
    [10.07, 77.6], [14.73, 114.9], [17.94, 141.1], [23.93, 190.8], [29.61, 239.9],
    [35.18, 289.0], [40.02, 332.8], [44.82, 378.4], [50.76, 434.8], [55.05, 477.3],
    [61.01, 536.8], [66.40, 593.1], [75.47, 689.1], [81.78, 760.0]])
MISRA1A_START = {1: [500.0, 1e-4], 2: [250.0, 5e-4]}
MISRA1A_CERTIFIED = np.array([2.3894212918e02, 5.5015643181e-04])
MISRA1A_RSS = 1.2455138894e-01


def misra_fun(b):
    y, x = MISRA1A[:, 0], MISRA1A[:, 1]
    return b[0] * (1 - np.exp(-b[1] * x)) - y


def misra_jac(b):
    x = MISRA1A[:, 1]
    e = np.exp(-b[1] * x)
    return np.column_stack([1 - e, b[0] * x * e])


class Counted:
    """A residual function (or Jacobian) that counts its calls."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, *a):
        self.calls += 1
        return self.f(*a)


# --- the same minimiser as SciPy ------------------------------------------------------------


def test_linear_matches_lstsq_and_scipy():
    A, b = linear_problem()
    res = least_squares(lambda x: A @ x - b, np.zeros(A.shape[1]), jac=lambda x: A)
    x_ls = np.linalg.lstsq(A, b, rcond=None)[0]
    ref = so.least_squares(lambda x: A @ x - b, np.zeros(A.shape[1]), jac=lambda x: A)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, x_ls, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(res.cost, ref.cost, rtol=1e-10)


def test_exponential_fit_matches_scipy():
    fun, jac, x0 = exp_problem()
    res = least_squares(fun, x0, jac=jac)
    ref = so.least_squares(fun, x0, jac=jac, xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-6)
    np.testing.assert_allclose(res.cost, ref.cost, rtol=1e-10)


@pytest.mark.parametrize("start", [1, 2])
def test_nist_misra1a_certified(start):
    """Both NIST starting points reach the certified values with the defaults."""
    res = least_squares(misra_fun, MISRA1A_START[start], jac=misra_jac)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, MISRA1A_CERTIFIED, rtol=1e-6)
    np.testing.assert_allclose(2 * res.cost, MISRA1A_RSS, rtol=1e-8)
    ref = so.least_squares(misra_fun, MISRA1A_START[start], jac=misra_jac)
    np.testing.assert_allclose(res.cost, ref.cost, rtol=1e-8)


@pytest.mark.parametrize("finish", [True, False])
def test_x_scale_default_makes_units_irrelevant(finish):
    """With the default x_scale (|x0|), expressing b2 in other units (b2' = 1000 b2)
    leaves the Adafactor iteration unchanged (and the finish's 'jac' scale too)."""
    options = {"finish": finish}
    res = least_squares(misra_fun, MISRA1A_START[2], jac=misra_jac, options=options)

    def fun_k(c):
        return misra_fun(c * [1.0, 1e-3])

    def jac_k(c):
        return misra_jac(c * [1.0, 1e-3]) * [1.0, 1e-3]

    res_k = least_squares(fun_k, np.array(MISRA1A_START[2]) * [1.0, 1e3], jac=jac_k,
                          options=options)
    assert abs(res.nit - res_k.nit) <= 0.01 * res.nit
    np.testing.assert_allclose(res_k.x * [1.0, 1e-3], res.x, rtol=1e-7)


@pytest.mark.parametrize("finish", [False, True])
@pytest.mark.parametrize("x_scale", ["jac", [200.0, 1e-3]])
def test_x_scale_keyword(x_scale, finish):
    """Both scales reach the minimum in the Adafactor phase alone, and with the finish."""
    res = least_squares(misra_fun, MISRA1A_START[2], jac=misra_jac, x_scale=x_scale,
                        options={"finish": finish, "maxiter": 40000 if not finish else None})
    np.testing.assert_allclose(2 * res.cost, MISRA1A_RSS, rtol=1e-6 if not finish else 1e-9)
    assert res.phase in (("trf", "trf from x0") if finish else ("adafactor",))


def test_adafactor_defaults_do_not_work_here():
    """The reason this front end has its own defaults: Adafactor's (relative step
    1e-2, no momentum, one scale for both parameters) stall on Misra1a."""
    hyper = {"lr": None, "beta1": None, "eps2": 1e-3, "maxiter": 3000, "finish": False}
    res = least_squares(misra_fun, MISRA1A_START[1], jac=misra_jac, x_scale=1.0,
                        options=hyper)
    assert 2 * res.cost > 10 * MISRA1A_RSS


# --- jac forms ------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["dense", "sparse", "operator", None, "2-point", "3-point", "cs"])
def test_jac_forms_agree(form):
    A, b = linear_problem(m=40, n=5, seed=3)
    x_ls = np.linalg.lstsq(A, b, rcond=None)[0]
    jac = {
        "dense": lambda x: A,
        "sparse": lambda x: sp.csr_matrix(A),
        "operator": lambda x: LinearOperator(A.shape, matvec=lambda v: A @ v,
                                             rmatvec=lambda v: A.T @ v),
    }.get(form, form)
    res = least_squares(lambda x: A @ x - b, np.zeros(5), jac=jac)
    np.testing.assert_allclose(res.x, x_ls, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(res.grad, res.jac.T @ res.fun, rtol=1e-12, atol=1e-14)
    if form == "operator":
        assert isinstance(res.jac, LinearOperator)
    elif form == "sparse":
        assert sp.issparse(res.jac)
    else:
        assert isinstance(res.jac, np.ndarray) and res.jac.shape == A.shape
    if form in (None, "2-point", "3-point", "cs"):
        assert res.nfev > 5 * res.njev  # the differences' calls are counted


def test_operator_jacobian_needs_only_rmatvec():
    """J.T @ r is all the Adafactor phase asks of the Jacobian: JᵀJ is never formed.
    The finish (SciPy's lsmr) also applies J."""
    A, b = linear_problem(m=30, n=4, seed=5)
    used = set()

    def matvec(v):
        used.add("matvec")
        return A @ v

    def rmatvec(v):
        used.add("rmatvec")
        return A.T @ v

    def jac(x):
        return LinearOperator(A.shape, matvec=matvec, rmatvec=rmatvec, dtype=float)

    res = least_squares(lambda x: A @ x - b, np.zeros(4), jac=jac, options={"finish": False})
    assert res.success
    assert used == {"rmatvec"}
    res = least_squares(lambda x: A @ x - b, np.zeros(4), jac=jac)
    assert res.success and res.phase in ("trf", "trf from x0") and "matvec" in used
    # lsmr solves the trust-region steps to its own tolerance
    np.testing.assert_allclose(res.x, np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-7)


def test_finite_differences_stay_inside_bounds():
    fun, jac, x0 = exp_problem()
    lb, ub = [0.0, 0.5, -1.0], [4.0, 0.9, 0.5]  # the fit wants a = 5 > 4: bound active

    def guarded(p):
        assert np.all(p >= lb) and np.all(p <= ub), p
        return fun(p)

    for method in ("2-point", "3-point"):
        res = least_squares(guarded, [4.0, 0.9, 0.5], jac=method, bounds=(lb, ub))
        assert res.x[0] == 4.0 and res.active_mask[0] == 1


# --- matrix-shaped x0 ---------------------------------------------------------------------------


def test_low_rank_factorisation_matrix_x0():
    """A ≈ U Vᵀ with x0 = [U; V] (one factored (n+m) × r block), J as an operator."""
    rng = np.random.default_rng(7)
    n, m, r = 12, 9, 2
    M = rng.standard_normal((n, r)) @ rng.standard_normal((r, m))

    def fun(X):
        return X[:n] @ X[n:].T - M  # a matrix of residuals, taken flat

    def jac(X):
        U, V = X[:n], X[n:]

        def matvec(d):
            D = d.reshape(n + m, r)
            return (D[:n] @ V.T + U @ D[n:].T).ravel()

        def rmatvec(e):
            E = e.reshape(n, m)
            return np.vstack([E @ V, E.T @ U]).ravel()

        return LinearOperator((n * m, (n + m) * r), matvec=matvec, rmatvec=rmatvec)

    X0 = 0.5 * rng.standard_normal((n + m, r))
    X0_copy = X0.copy()
    res = least_squares(fun, X0, jac=jac)
    assert res.success, res.message
    assert res.x.shape == X0.shape and res.grad.shape == X0.shape
    assert res.fun.shape == (n * m,)
    assert np.linalg.norm(res.x[:n] @ res.x[n:].T - M) < 1e-5 * np.linalg.norm(M)
    np.testing.assert_array_equal(X0, X0_copy)


def test_dense_jacobian_in_x0_shape_is_accepted():
    A3 = np.random.default_rng(2).standard_normal((10, 2, 3))
    b = np.arange(10.0)
    res = least_squares(lambda X: np.tensordot(A3, X, axes=2) - b, np.ones((2, 3)),
                        jac=lambda X: A3)
    assert res.jac.shape == (10, 6)
    # at the minimum the gradient is rounding: summed in another order than NumPy's
    np.testing.assert_allclose(res.grad.ravel(), res.jac.T @ res.fun, atol=1e-13)


# --- bounds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tuple", "Bounds"])
def test_bounds_match_scipy(kind):
    A, b = linear_problem(m=50, n=4, seed=11)
    x_ls = np.linalg.lstsq(A, b, rcond=None)[0]
    lb, ub = x_ls - 0.3, np.full(4, np.inf)
    lb[1] = x_ls[1] + 0.2  # the unconstrained minimiser is infeasible in x[1]
    bounds = (lb, ub) if kind == "tuple" else so.Bounds(lb, ub)
    res = least_squares(lambda x: A @ x - b, x_ls + 1.0, jac=lambda x: A, bounds=bounds)
    ref = so.least_squares(lambda x: A @ x - b, x_ls + 1.0, jac=lambda x: A, bounds=(lb, ub),
                           xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-6, atol=1e-8)
    assert res.active_mask[1] == -1 and res.x[1] == pytest.approx(lb[1], rel=1e-12)
    g = res.grad
    assert res.optimality == pytest.approx(np.max(np.abs(np.clip(res.x - g, lb, ub) - res.x)))


def test_scalar_bounds_broadcast_and_clip_x0():
    A, b = linear_problem(m=30, n=3, seed=4)
    res = least_squares(lambda x: A @ x - b, np.full(3, 5.0), jac=lambda x: A,
                        bounds=(-0.1, 0.1))
    assert np.all(np.abs(res.x) <= 0.1)
    ref = so.least_squares(lambda x: A @ x - b, np.zeros(3), jac=lambda x: A, bounds=(-0.1, 0.1))
    np.testing.assert_allclose(res.x, ref.x, atol=1e-7)


# --- the result ---------------------------------------------------------------------------


def test_result_fields_and_counts():
    fun, jac, x0 = exp_problem()
    cf, cj = Counted(fun), Counted(jac)
    res = least_squares(cf, x0, jac=cj)
    for key in ("x", "cost", "fun", "jac", "grad", "optimality", "active_mask", "nfev", "njev",
                "nit", "status", "success", "message", "phase", "phases"):
        assert key in res, key
    assert res.cost == pytest.approx(0.5 * np.sum(res.fun ** 2), rel=1e-14)
    np.testing.assert_allclose(res.fun, fun(res.x), rtol=0, atol=0)
    np.testing.assert_allclose(res.jac, jac(res.x))
    np.testing.assert_allclose(res.grad, res.jac.T @ res.fun, rtol=1e-14, atol=1e-16)
    assert res.optimality == pytest.approx(np.max(np.abs(res.grad)))
    assert res.nfev == cf.calls and res.njev == cj.calls
    assert res.nfev == sum(p.nfev for p in res.phases.values())
    assert res.njev == sum(p.njev for p in res.phases.values())
    ada = res.phases["adafactor"]
    assert ada.nfev == ada.nit + 1 == res.nit + 1  # one evaluation per iterate, x0 included
    assert res.phase in ("trf", "trf from x0")
    assert res.cost == res.phases[res.phase].cost <= ada.cost
    np.testing.assert_array_equal(res.active_mask, 0)
    assert res.status in (1, 2, 3, 4) and res.success
    assert isinstance(res.message, str) and "trf" in res.message


def test_gtol_status_one_with_small_optimality():
    A, b = linear_problem(m=40, n=3, seed=8)
    res = least_squares(lambda x: A @ x - b, np.zeros(3), jac=lambda x: A, gtol=1e-6, xtol=0.0,
                        options={"finish": False})
    assert res.status == 1 and res.success
    assert res.optimality <= 1e-6


def test_x0_already_optimal_takes_no_step():
    A, b = linear_problem(m=20, n=3, seed=9)
    x_ls = np.linalg.lstsq(A, b, rcond=None)[0]
    res = least_squares(lambda x: A @ x - b, x_ls, jac=lambda x: A, gtol=1e-6,
                        options={"finish": False})
    assert res.status == 1 and res.nit == 0 and res.nfev == 1
    np.testing.assert_array_equal(res.x, x_ls)
    # the finish checks x0 once more and takes no step either
    res = least_squares(lambda x: A @ x - b, x_ls, jac=lambda x: A, gtol=1e-6)
    assert res.status == 1 and res.nit == 0 and res.phases["adafactor"].nfev == 1
    assert "trf from x0" not in res.phases
    np.testing.assert_array_equal(res.x, x_ls)


def test_maxiter_returns_the_lowest_cost_iterate():
    costs = []
    res = least_squares(misra_fun, MISRA1A_START[1], jac=misra_jac,
                        callback=lambda intermediate_result: costs.append(intermediate_result.cost),
                        options={"maxiter": 50, "finish": False})
    assert res.status == 0 and not res.success and res.nit == 50
    assert len(costs) == 50
    initial = 0.5 * np.sum(misra_fun(np.array(MISRA1A_START[1])) ** 2)
    assert res.cost == min(costs + [initial])
    assert costs[-1] > res.cost  # the last iterate is not the best one here


def test_callback_forms_and_stop():
    fun, jac, x0 = exp_problem()
    seen = []

    def cb(intermediate_result):
        seen.append(intermediate_result)
        if intermediate_result.nit == 7:
            raise StopIteration

    res = least_squares(fun, x0, jac=jac, callback=cb)
    assert res.status == -2 and not res.success and res.nit == 7
    assert list(res.phases) == ["adafactor"]  # no finish after a stop
    last = seen[-1]
    assert last.nit == 7 and last.cost == pytest.approx(0.5 * np.sum(last.fun ** 2))
    np.testing.assert_allclose(last.fun, fun(last.x))
    xs = []
    least_squares(fun, x0, jac=jac, callback=lambda xk: xs.append(xk),
                  options={"maxiter": 3, "finish": False})
    assert len(xs) == 3 and xs[0].shape == (3,)


def test_nan_returns_last_finite_iterate():
    fun, jac, x0 = exp_problem()

    def undefined_below(p):  # the path from k = 1 to k = 0.7 crosses k = 0.95
        return fun(p) * (np.nan if p[1] < 0.95 else 1.0)

    res = least_squares(undefined_below, x0, jac=jac, options={"finish": False})
    assert res.status == -3 and not res.success and res.nit > 0
    assert res.x[1] >= 0.95 and np.isfinite(res.cost)
    assert res.cost < 0.5 * np.sum(fun(x0) ** 2)
    np.testing.assert_allclose(res.grad, res.jac.T @ res.fun)
    # the finish starts from that finite point and keeps to the finite side
    full = least_squares(undefined_below, x0, jac=jac)
    assert full.phases["adafactor"].status == -3
    assert full.x[1] >= 0.95 and full.cost <= res.cost
    np.testing.assert_allclose(full.fun, undefined_below(full.x))

    # as in SciPy, residuals that are not finite at x0 are an error
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="not finite in the initial point"):
            least_squares(lambda p, bad=bad: np.full(3, bad), x0, jac=jac)
        with pytest.raises(ValueError, match="not finite in the initial point"):
            so.least_squares(lambda p, bad=bad: np.full(3, bad), x0, jac=jac)


def test_float32_and_inputs_not_mutated():
    A, b = linear_problem(m=30, n=3, seed=1)
    x0 = np.zeros(3, dtype=np.float32)
    lb, ub = np.full(3, -10.0), np.full(3, 10.0)
    scale = np.ones(3)
    copies = [a.copy() for a in (x0, lb, ub, scale, A, b)]
    res = least_squares(lambda x: A @ x - b, x0, jac=lambda x: A, bounds=(lb, ub),
                        x_scale=scale)
    assert res.x.dtype == np.float32
    for a, c in zip((x0, lb, ub, scale, A, b), copies, strict=True):
        np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(res.x, np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-3)


def test_verbose_prints_scipy_summary(capsys):
    fun, jac, x0 = exp_problem()
    res = least_squares(fun, x0, jac=jac, verbose=1)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert out[0] == res.message and out[1].startswith(f"Function evaluations {res.nfev},")
    assert "final cost" in out[1] and "first-order optimality" in out[1]


def test_exported():
    assert fastfactor.least_squares is least_squares
    assert "least_squares" in fastfactor.__all__


# --- bad input ------------------------------------------------------------------------------------


def _ok(x):
    return x - 1.0


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(fun=3), TypeError, "fun must be callable"),
    (dict(jac="4-point"), ValueError, "2-point"),
    (dict(jac=True), ValueError, "jac must be"),
    (dict(bounds=[(0, 1), (0, 1), (0, 1)]), ValueError, "(lb, ub)"),
    (dict(bounds=([0, 0], [1, 1])), ValueError, "broadcast"),
    (dict(bounds=(1.0, 0.0)), ValueError, "lower bound exceeds upper bound"),
    (dict(bounds=(np.nan, 1.0)), ValueError, "NaN"),
    (dict(options=[("maxiter", 3)]), TypeError, "options must be a dict"),
    (dict(options={"maxiter": -1}), ValueError, "maxiter"),
    (dict(gtol=-1e-3), ValueError, "gtol"),
    (dict(xtol="small"), ValueError, "xtol"),
    (dict(ftol=np.nan), ValueError, "ftol"),
    (dict(x_scale=-1.0), ValueError, "x_scale"),
    (dict(x_scale="auto"), ValueError, "x_scale"),
    (dict(f_scale=0.0), ValueError, "f_scale"),
    (dict(loss="l1"), ValueError, "loss"),
    (dict(loss=3), TypeError, "loss"),
    (dict(max_nfev=0), ValueError, "max_nfev"),
    (dict(max_nfev=2.5), ValueError, "max_nfev"),
    (dict(verbose=3), ValueError, "verbose"),
    (dict(tr_solver="cg"), ValueError, "tr_solver"),
    (dict(tr_options=[1]), TypeError, "tr_options"),
    (dict(diff_step=-1e-3), ValueError, "diff_step"),
    (dict(kwargs=[1]), TypeError, "kwargs"),
    (dict(method="adam"), ValueError, "method"),
    (dict(options={"device": "cuda"}), ValueError, "device"),
    (dict(options={"lr": -0.1}), ValueError, "lr"),
    (dict(x0=[np.nan, 0.0, 0.0]), ValueError, "NaN"),
    (dict(x0="abc"), TypeError, "x0"),
])
def test_bad_input(kwargs, exc, words):
    call = dict(fun=_ok, x0=np.zeros(3))
    call.update(kwargs)
    with pytest.raises(exc, match=None) as info:
        least_squares(call.pop("fun"), call.pop("x0"), **call)
    assert words in str(info.value)


def test_bad_jacobian_and_residuals():
    with pytest.raises(ValueError, match=r"expected \(m, n\) = \(3, 3\)"):
        least_squares(_ok, np.zeros(3), jac=lambda x: np.eye(2))
    with pytest.raises(ValueError, match="shape"):
        least_squares(_ok, np.zeros(3), jac=lambda x: sp.eye(4))
    with pytest.raises(TypeError, match="real"):
        least_squares(lambda x: np.array(["a", "b"]), np.zeros(2))
    with pytest.raises(ValueError, match="no residuals"):
        least_squares(lambda x: np.zeros(0), np.zeros(2))
    calls = {"n": 0}

    def growing(x):
        calls["n"] += 1
        return np.ones(2 + calls["n"])

    with pytest.raises(ValueError, match="must not change"):
        least_squares(growing, np.zeros(2), jac=None)


def test_unknown_option_warns():
    with pytest.warns(so.OptimizeWarning, match="not_an_option"):
        least_squares(_ok, np.zeros(2), jac=lambda x: np.eye(2), options={"not_an_option": 1})


def test_shapes_option_passes_through():
    """shapes partitions a flat x into blocks, as in fastfactor.minimize."""
    A, b = linear_problem(m=40, n=6, seed=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = least_squares(lambda x: A @ x - b, np.ones(6), jac=lambda x: A,
                            options={"shapes": [(2, 2), (2,)]})
    np.testing.assert_allclose(res.x, np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-6)
    with pytest.raises(ValueError, match="partition"):
        least_squares(lambda x: A @ x - b, np.ones(6), jac=lambda x: A,
                      options={"shapes": [(2, 2)]})
