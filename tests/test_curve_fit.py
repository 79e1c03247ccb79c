"""fastfactor.curve_fit: scipy.optimize.curve_fit's popt, pcov, full output, warnings and
errors, on fastfactor.least_squares.

Most fits run twice (the ``solver`` fixture): on fastfactor.least_squares, compared with
SciPy's curve_fit to the tolerances a first-order solver reaches, and on SciPy's own 'trf'
solver put in its place, where everything around the solver must reproduce SciPy's
curve_fit (method 'trf') to rounding. The covariance helper is tested on its own against
pcov computed by SciPy from scipy.optimize.least_squares results.
"""

import inspect
import warnings

import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from scipy.linalg import cholesky, solve_triangular
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import fastfactor
import fastfactor._lsq as lsq
from fastfactor._lsq._curve_fit import _covariance, _Whiten, curve_fit

# --- problems -----------------------------------------------------------------------------


def model(t, a, b, c):
    return a * np.exp(-b * t) + c


def model_jac(t, a, b, c):
    e = np.exp(-b * t)
    return np.column_stack([e, -a * t * e, np.ones_like(t)])


def line(x, a, b):
    return a * x + b


def unused_c(t, a, b, c):
    # c does not enter the model: a zero column of the Jacobian
    return a * np.exp(-b * t)


T = np.linspace(0, 4, 50)
_rng = np.random.default_rng(7)
Y = model(T, 2.5, 1.3, 0.5) + 0.05 * _rng.standard_normal(T.size)
SIG = 0.03 + 0.04 * T / T.max()
# errors correlated between neighbouring points
COV = np.diag(SIG**2) + 0.0004 * np.exp(-(np.subtract.outer(T, T) / 0.2) ** 2)


def scipy_trf(fun, x0, jac="2-point", bounds=(-np.inf, np.inf), method="trf", **kwargs):
    """SciPy's least_squares in the call form curve_fit uses ('adafactor' is SciPy's 'trf')."""
    method = "trf" if method == "adafactor" else method
    return so.least_squares(fun, x0, jac=jac, bounds=bounds, method=method, **kwargs)


@pytest.fixture(params=["fastfactor", "scipy-trf"])
def solver(request, monkeypatch):
    if request.param == "scipy-trf":
        monkeypatch.setattr(lsq, "least_squares", scipy_trf)
    return request.param


#: (popt rtol, pcov rtol) of each solver against SciPy's curve_fit.
TOL = {"fastfactor": (1e-6, 1e-4), "scipy-trf": (1e-12, 1e-10)}


def assert_same(got, ref):
    """Equal (popt, pcov) pairs."""
    assert_array_equal(got[0], ref[0])
    assert_array_equal(got[1], ref[1])


def assert_matches(got, ref, solver):
    rtol_p, rtol_c = TOL[solver]
    assert_allclose(got[0], ref[0], rtol=rtol_p, atol=rtol_p * np.abs(ref[0]).max())
    pcov_atol = 0 if np.isinf(ref[1]).any() else rtol_c * np.abs(ref[1]).max()
    assert_allclose(got[1], ref[1], rtol=rtol_c, atol=pcov_atol)


class Spy:
    """A least_squares that records its arguments and runs SciPy's 'trf'."""

    def __init__(self):
        self.calls = []

    def __call__(self, fun, x0, **kwargs):
        self.calls.append(dict(kwargs, x0=np.array(x0)))
        kwargs.pop("method", None)
        return scipy_trf(fun, x0, **kwargs)


@pytest.fixture
def spy(monkeypatch):
    s = Spy()
    monkeypatch.setattr(lsq, "least_squares", s)
    return s


# --- popt and pcov against SciPy ----------------------------------------------------------

FITS = {
    "unweighted": {},
    "p0": {"p0": [2.0, 1.0, 0.0]},
    "sigma-scalar": {"sigma": 0.05},
    "sigma-1d": {"sigma": SIG},
    "sigma-1d-absolute": {"sigma": SIG, "absolute_sigma": True},
    "sigma-2d": {"sigma": COV},
    "sigma-2d-absolute": {"sigma": COV, "absolute_sigma": True},
    "bounds-active": {"bounds": (0, [3.0, 1.0, 0.5])},
    "bounds-inactive": {"bounds": ([0, 0, 0], [10, 10, 10])},
    "Bounds": {"bounds": so.Bounds([0, 0, -1], [10, 10, 1])},
    "jac": {"jac": model_jac},
    "jac-sigma-1d": {"jac": model_jac, "sigma": SIG},
    "jac-sigma-2d": {"jac": model_jac, "sigma": COV, "absolute_sigma": True},
    "3-point": {"jac": "3-point"},
}


@pytest.mark.parametrize("kwargs", FITS.values(), ids=FITS.keys())
def test_fit_matches_scipy(solver, kwargs):
    got = curve_fit(model, T, Y, **kwargs)
    ref = so.curve_fit(model, T, Y, method="trf", **kwargs)
    assert got[0].shape == (3,) and got[1].shape == (3, 3)
    assert got[0].dtype == got[1].dtype == np.float64
    assert np.isfinite(got[1]).all()
    assert_matches(got, ref, solver)


def test_full_output(solver):
    popt, pcov, info, mesg, ier = curve_fit(model, T, Y, sigma=SIG, full_output=True)
    assert_same((popt, pcov), curve_fit(model, T, Y, sigma=SIG))
    assert set(info) == {"nfev", "fvec"}
    assert_allclose(info["fvec"], (model(T, *popt) - Y) / SIG, rtol=1e-12, atol=1e-14)
    assert isinstance(mesg, str) and ier > 0 and info["nfev"] > 0
    if solver == "scipy-trf":
        ref = so.curve_fit(model, T, Y, sigma=SIG, method="trf", full_output=True)
        assert (mesg, ier, info["nfev"]) == (ref[3], ref[4], ref[2]["nfev"])
        assert_array_equal(info["fvec"], ref[2]["fvec"])


def test_robust_loss_keeps_scipy_formula(solver):
    """pcov from the solver's cost and jac as SciPy has them with a robust loss."""
    kwargs = {"loss": "soft_l1", "f_scale": 0.05}
    assert_matches(curve_fit(model, T, Y, **kwargs),
                   so.curve_fit(model, T, Y, method="trf", **kwargs), solver)


def test_not_found_raises(solver):
    with pytest.raises(RuntimeError, match="^Optimal parameters not found: "):
        curve_fit(model, T, Y, max_nfev=2)
    with pytest.raises(RuntimeError, match="^Optimal parameters not found: "):
        curve_fit(model, T, Y, maxfev=2)  # leastsq's name, as in SciPy


# --- the covariance and its warning --------------------------------------------------------


def test_square_problem_warns(solver):
    x, y = np.array([0.0, 1.0]), np.array([1.0, 3.0])
    with pytest.warns(so.OptimizeWarning, match="Covariance of the parameters could not"):
        popt, pcov = curve_fit(line, x, y)
    assert_allclose(popt, [2.0, 1.0], rtol=1e-6)
    assert pcov.shape == (2, 2) and np.isposinf(pcov).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", so.OptimizeWarning)
        got = curve_fit(line, x, y, absolute_sigma=True)
    assert_matches(got, so.curve_fit(line, x, y, method="trf", absolute_sigma=True), solver)


def test_unused_parameter(solver):
    """SciPy's 'trf' path: the pseudo-inverse (zero row and column), no warning; 'lm'
    instead fills pcov with inf and warns. SciPy's default tolerances stop 1e-5 short of
    the optimum here: both fits get tight ones."""
    tight = {"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15}
    with warnings.catch_warnings():
        warnings.simplefilter("error", so.OptimizeWarning)
        popt, pcov = curve_fit(unused_c, T, Y, **tight)
        ref = so.curve_fit(unused_c, T, Y, method="trf", **tight)
    assert popt[2] == 1.0
    assert_allclose(pcov[2], 0, atol=1e-12 * np.abs(pcov).max())
    assert_matches((popt, pcov), ref, solver)


def whitened(fun, sigma):
    """The residuals of fun whitened by sigma exactly as SciPy's curve_fit does."""
    if sigma is None:
        return fun
    sigma = np.asarray(sigma)
    if sigma.ndim < 2:
        return lambda p: (1.0 / sigma) * fun(p)
    L = cholesky(sigma, lower=True)
    return lambda p: solve_triangular(L, fun(p), lower=True)


COVARIANCE_CASES = {
    "unweighted": (model, T, Y, None, False),
    "sigma-1d": (model, T, Y, SIG, False),
    "sigma-1d-absolute": (model, T, Y, SIG, True),
    "sigma-2d": (model, T, Y, COV, False),
    "sigma-2d-absolute": (model, T, Y, COV, True),
    "unused-parameter": (unused_c, T, Y, None, False),
    "square": (line, np.array([0.0, 1.0]), np.array([1.0, 3.5]), None, True),
}


@pytest.mark.parametrize("case", COVARIANCE_CASES.values(), ids=COVARIANCE_CASES.keys())
def test_covariance_helper_matches_scipy(case):
    f, x, y, sigma, absolute = case
    n = 3 if f is not line else 2
    fun = whitened(lambda p: f(x, *p) - y, sigma)
    res = so.least_squares(fun, np.ones(n), jac="2-point", method="trf")
    pcov, estimated = _covariance(res.jac, res.cost, res.fun.size, n, absolute)
    ref = so.curve_fit(f, x, y, sigma=sigma, absolute_sigma=absolute, method="trf")[1]
    assert estimated and pcov.shape == (n, n)
    assert_allclose(pcov, ref, rtol=1e-12, atol=1e-14 * np.abs(ref).max())


def test_covariance_helper_jacobian_forms():
    J = model_jac(T, 2.5, 1.3, 0.5)
    ref, _ = _covariance(J, 0.7, T.size, 3, False)
    for form in (sp.csr_matrix(J), sp.csr_array(J), aslinearoperator(J)):
        pcov, estimated = _covariance(form, 0.7, T.size, 3, False)
        assert estimated
        assert_allclose(pcov, ref, rtol=1e-12)
    assert_allclose(ref, np.linalg.inv(J.T @ J) * 2 * 0.7 / (T.size - 3), rtol=1e-10)


def test_covariance_helper_edge_cases():
    # rank 1: the pseudo-inverse of J^T J
    J = np.column_stack([T, 2 * T])
    pcov, estimated = _covariance(J, 1.0, T.size, 2, True)
    assert estimated
    assert_allclose(pcov, np.linalg.pinv(J.T @ J), rtol=1e-10)
    # m <= n without absolute_sigma: not estimable
    pcov, estimated = _covariance(np.eye(2), 0.0, 2, 2, False)
    assert not estimated and np.isposinf(pcov).all() and pcov.shape == (2, 2)
    # kept singular values whose squares underflow: NaN in the product
    with np.errstate(all="ignore"):
        pcov, estimated = _covariance(np.diag([1e-160, 1e-170]), 0.0, 2, 2, True)
    assert not estimated and np.isposinf(pcov).all()


# --- inputs --------------------------------------------------------------------------------

BAD_INPUTS = {
    "nan-y": ({"ydata": np.where(T == T[3], np.nan, Y)}, "infs or NaNs"),
    "inf-x": ({"xdata": np.where(T == T[3], np.inf, T)}, "infs or NaNs"),
    "nan-y-raise": ({"ydata": np.where(T == T[3], np.nan, Y), "nan_policy": "raise"},
                    "contains nan"),
    "nan-x-raise": ({"xdata": np.where(T == T[3], np.nan, T), "nan_policy": "raise"},
                    "contains nan"),
    "nan-y-check_finite": ({"ydata": np.where(T == T[3], np.nan, Y), "nan_policy": "omit",
                            "check_finite": True}, "infs or NaNs"),
    "propagate": ({"nan_policy": "propagate"}, "not supported"),
    "bad-nan_policy": ({"nan_policy": "drop"}, "nan_policy must be one of"),
    "empty-y": ({"xdata": T[:0], "ydata": Y[:0]}, "must not be empty"),
    "sigma-short": ({"sigma": SIG[:-1]}, "incorrect shape"),
    "sigma-rect": ({"sigma": np.ones((T.size, T.size + 1))}, "incorrect shape"),
    "sigma-3d": ({"sigma": np.ones((T.size, T.size, 1))}, "incorrect shape"),
    "sigma-not-pd": ({"sigma": -COV}, "positive definite"),
    "args": ({"args": (1.0,)}, "'args' is not a supported"),
    "varargs-model": ({"f": lambda x, *p: p[0] * x}, "number of fit parameters"),
    "no-param-model": ({"f": lambda x: x}, "number of fit parameters"),
}


@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_raises_as_scipy(case, spy):
    kwargs, match = case
    kwargs = {"f": model, "xdata": T, "ydata": Y, **kwargs}
    with pytest.raises(ValueError, match=match):
        curve_fit(**kwargs)
    with pytest.raises(ValueError, match=match):
        so.curve_fit(method="trf", **kwargs)
    assert spy.calls == []


def with_nan():
    x, y, s = T.copy(), Y.copy(), SIG.copy()
    x[[4, 20]] = np.nan
    y[[9, 33]] = np.nan
    keep = np.isfinite(x) & np.isfinite(y)
    return x, y, s, keep


@pytest.mark.parametrize("kind", ["none", "sigma-1d", "sigma-2d"])
def test_nan_policy_omit(solver, kind):
    x, y, s, keep = with_nan()
    sigma = {"none": None, "sigma-1d": s, "sigma-2d": COV}[kind]
    kept = None if sigma is None else (sigma[keep] if sigma.ndim == 1 else COV[keep][:, keep])
    got = curve_fit(model, x, y, sigma=sigma, nan_policy="omit")
    assert_same(got, curve_fit(model, x[keep], y[keep], sigma=kept))
    assert_matches(got, so.curve_fit(model, x, y, sigma=sigma, nan_policy="omit",
                                     method="trf"), solver)


def test_nan_policy_omit_2d_xdata(spy):
    X = np.vstack([T, T**2])
    X[1, 5] = np.nan
    y = 1.5 * X[0] - 0.3 * X[1] + 0.01 * np.cos(9 * T)
    y[11] = np.nan

    def plane(X, a, b):
        return a * X[0] + b * X[1]

    got = curve_fit(plane, X, y, nan_policy="omit")
    ref = so.curve_fit(plane, X, y, nan_policy="omit", method="trf")
    assert_allclose(got[0], ref[0], rtol=1e-12)
    assert_allclose(got[1], ref[1], rtol=1e-10)


def test_inputs_not_mutated(solver):
    x, y, s, _ = with_nan()
    p0, lb, ub, cov = np.array([2.0, 1.0, 0.2]), np.zeros(3), np.full(3, 10.0), COV.copy()
    arrays = (x, y, s, p0, lb, ub, cov)
    copies = [a.copy() for a in arrays]
    curve_fit(model, x, y, p0=p0, sigma=s, bounds=(lb, ub), nan_policy="omit")
    curve_fit(model, x, y, sigma=cov, nan_policy="omit")
    for a, c in zip(arrays, copies, strict=True):
        assert_array_equal(a, c)


def test_float32_data(solver):
    x32, y32 = T.astype(np.float32), Y.astype(np.float32)
    popt, pcov = curve_fit(model, x32, y32, p0=np.ones(3, np.float32))
    assert popt.dtype == pcov.dtype == np.float64
    assert_same((popt, pcov), curve_fit(model, x32.astype(float), y32.astype(float)))
    assert_matches((popt, pcov), so.curve_fit(model, x32, y32, method="trf"), solver)


def test_list_xdata_and_object_xdata(spy):
    ref = curve_fit(model, T, Y)
    assert_same(curve_fit(model, list(T), list(Y)), ref)

    class Grid:  # not array_like: passed to f as it is
        t = T

    assert_same(curve_fit(lambda g, a, b, c: model(g.t, a, b, c), Grid(), Y), ref)


# --- p0 from the signature and the keywords passed on --------------------------------------


def _pos_only(x, a, b, /, c):
    return a * x + b + c


class _Method:
    def f(self, x, a, b):
        return a * x + b


P0_CASES = {
    "three": (model, (-np.inf, np.inf), [1, 1, 1]),
    "default-arg": (lambda x, a, b=2.0: a * x + b, (-np.inf, np.inf), [1, 1]),
    "keyword-only-ignored": (lambda x, a, *, k=1.0: a * x, (-np.inf, np.inf), [1]),
    "positional-only": (_pos_only, (-np.inf, np.inf), [1, 1, 1]),
    "bound-method": (_Method().f, (-np.inf, np.inf), [1, 1]),
    "box-middle": (model, ([0, 2, -3], [4, 6, 3]), [2, 4, 0]),
    "one-sided": (model, ([0, -np.inf, -np.inf], [np.inf, 5, np.inf]), [1, 4, 1]),
    "Bounds": (model, so.Bounds([0, -1, 2], [2, 1, np.inf]), [1, 0, 3]),
}


@pytest.mark.parametrize("case", P0_CASES.values(), ids=P0_CASES.keys())
def test_default_p0(spy, case):
    f, bounds, expected = case
    seen = []

    def recorded(x, *p):
        seen.append(p)
        return f(x, *p)

    recorded.__signature__ = inspect.signature(f)
    curve_fit(f, T, Y, bounds=bounds)
    assert_array_equal(spy.calls[0]["x0"], expected)
    assert spy.calls[0]["x0"].dtype == np.float64
    so.curve_fit(recorded, T, Y, bounds=bounds, method="trf")
    assert_array_equal(seen[0], expected)  # SciPy's first evaluation is at its p0


def test_default_p0_scalar_Bounds(monkeypatch):
    """A Bounds of scalars is broadcast to the parameters (SciPy's p0 gets one entry)."""
    seen = []

    class Stop(Exception):
        pass

    def least_squares(fun, x0, **kwargs):
        seen.append(x0)
        raise Stop

    monkeypatch.setattr(lsq, "least_squares", least_squares)
    with pytest.raises(Stop):
        curve_fit(model, T, Y, bounds=so.Bounds(0, 4))
    assert_array_equal(seen[0], [2, 2, 2])


def test_keywords_passed_on(spy):
    bounds = ([0, 0, -1], [10, 10, 1])
    curve_fit(model, T, Y, bounds=bounds, method="adafactor", ftol=1e-12, x_scale=[1, 1, 1],
              loss="linear")
    call = spy.calls[-1]
    assert call["bounds"] is bounds
    assert (call["method"], call["ftol"], call["x_scale"], call["loss"]) == (
        "adafactor", 1e-12, [1, 1, 1], "linear")
    assert call["max_nfev"] is None and "jac" not in call
    curve_fit(model, T, Y, jac="3-point", maxfev=500)
    assert spy.calls[-1]["jac"] == "3-point" and spy.calls[-1]["max_nfev"] == 500


def test_jac_callable(solver):
    calls = []

    def jac(t, a, b, c):
        calls.append((a, b, c))
        return model_jac(t, a, b, c)

    got = curve_fit(model, T, Y, sigma=SIG, jac=jac)
    assert calls
    assert_matches(got, so.curve_fit(model, T, Y, sigma=SIG, jac=model_jac, method="trf"),
                   solver)


def test_scalar_sigma_with_jac(solver):
    """Unlike SciPy's curve_fit (an error), a scalar sigma works with a callable jac."""
    got = curve_fit(model, T, Y, sigma=0.05, jac=model_jac, absolute_sigma=True)
    ref = so.curve_fit(model, T, Y, sigma=np.full(T.size, 0.05), jac=model_jac,
                       absolute_sigma=True, method="trf")
    assert_matches(got, ref, solver)


@pytest.mark.parametrize("sigma", [None, 0.05, SIG, COV], ids=["none", "scalar", "1d", "2d"])
@pytest.mark.parametrize("form", ["sparse", "operator"])
def test_jac_forms_whitened(solver, form, sigma):
    """A sparse or operator Jacobian is whitened in its form and gives the dense fit."""
    if form == "sparse":
        def jac(t, *p):
            return sp.csr_matrix(model_jac(t, *p))
    else:
        def jac(t, *p):
            return aslinearoperator(model_jac(t, *p))
    extra = {"tr_solver": "lsmr"} if solver == "scipy-trf" else {}
    got = curve_fit(model, T, Y, sigma=sigma, jac=jac, **extra)
    # SciPy's curve_fit fails on a scalar sigma with a callable jac: give it ones * sigma
    ref_sigma = np.full(T.size, sigma) if np.ndim(sigma) == 0 and sigma is not None else sigma
    ref = so.curve_fit(model, T, Y, sigma=ref_sigma, jac=model_jac, method="trf")
    assert_allclose(got[0], ref[0], rtol=1e-6)
    assert_allclose(got[1], ref[1], rtol=1e-4)


@pytest.mark.parametrize("sigma", [0.05, SIG, COV], ids=["scalar", "1d", "2d"])
def test_whitened_jacobian_forms(sigma):
    """The whitened operator and sparse matrix equal the whitened dense Jacobian, and the
    operator's rmatvec is the transpose of its matvec."""
    J = model_jac(T, 2.5, 1.3, 0.5)
    W = _Whiten(sigma, T.size)
    dense = W.jacobian(J)
    op = W.jacobian(aslinearoperator(J))
    assert isinstance(op, LinearOperator)
    assert_allclose(op.matmat(np.eye(3)), dense, rtol=1e-12)
    u = np.cos(np.arange(T.size))
    assert_allclose(op.rmatvec(u), dense.T @ u, rtol=1e-10)
    for matrix in (sp.csr_matrix(J), sp.csr_array(J)):
        got = W.jacobian(matrix)
        if sigma is not COV:  # L^{-1} J is dense anyway
            assert sp.issparse(got)
            got = got.toarray()
        assert_allclose(got, dense, rtol=1e-12)


def test_exported():
    assert fastfactor.curve_fit is curve_fit


def test_scipy_positional_order_with_method():
    # SciPy: (f, xdata, ydata, p0, sigma, absolute_sigma, check_finite, bounds, method, jac)
    got = curve_fit(model, T, Y, None, SIG, False, True, (-np.inf, np.inf), "adafactor",
                    model_jac)
    ref = so.curve_fit(model, T, Y, None, SIG, False, True, (-np.inf, np.inf), "trf",
                       model_jac)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-4)


@pytest.mark.parametrize("method", ["lm", "trf", "dogbox"])
def test_scipy_method_names_point_to_scipy(method):
    with pytest.raises(ValueError, match="scipy.optimize.least_squares"):
        curve_fit(model, T, Y, method=method)
