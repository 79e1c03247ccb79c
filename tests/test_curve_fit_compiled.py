"""fastfactor.curve_fit on numba.njit models: compiled wrappers handed to least_squares.

A fit with a compiled model and Jacobian must give popt, pcov (and the full output) to
the bit as the same functions called through Python functions, which take curve_fit's
Python closures; where the wrappers cannot stand in for the closures (other data, other
return types or shapes, a model that does not compile), the closures run and give the
user their result or error.
"""

import inspect

import numba
import numpy as np
import pytest
import scipy.optimize as so
from numba.core.registry import CPUDispatcher

import fastfactor._lsq as lsq
from fastfactor._lsq import _compiled_model
from fastfactor._lsq._curve_fit import curve_fit

# --- models -------------------------------------------------------------------------------


@numba.njit
def decay(t, a, b, c):
    return a * np.exp(-b * t) + c


@numba.njit
def decay_jac(t, a, b, c):
    e = np.exp(-b * t)
    J = np.empty((t.size, 3))
    J[:, 0] = e
    J[:, 1] = -a * t * e
    J[:, 2] = 1.0
    return J


@numba.njit
def decay_jac_fortran(t, a, b, c):
    # the transpose of a C array: the Python closures hand it on in NumPy's layout
    e = np.exp(-b * t)
    J = np.empty((3, t.size))
    J[0] = e
    J[1] = -a * t * e
    J[2] = 1.0
    return J.T


@numba.njit
def plane(X, a, b):
    return a * X[0] + b * X[1]


@numba.njit
def plane_jac(X, a, b):
    return np.ascontiguousarray(X.T)


def python_twin(g):
    """``g`` as a plain Python callable with ``g``'s positional parameters (so that
    curve_fit finds their number), calling the compiled ``g``: curve_fit's Python path."""

    def call(*a):
        return g(*a)

    call.__signature__ = inspect.signature(g.py_func)
    return call


T = np.linspace(0, 4, 50)
_rng = np.random.default_rng(11)
Y = 2.5 * np.exp(-1.3 * T) + 0.5 + 0.05 * _rng.standard_normal(T.size)
SIG = 0.03 + 0.04 * T / T.max()
X2 = np.vstack([T, T**2])
Y2 = 1.5 * X2[0] - 0.3 * X2[1] + 0.01 * np.cos(9 * T)


class Spy:
    """least_squares recording ``fun``, ``jac`` and ``args`` of each call, then running."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def __call__(self, fun, x0, **kwargs):
        self.calls.append(dict(fun=fun, jac=kwargs.get("jac"), args=kwargs.get("args")))
        return self.real(fun, x0, **kwargs)

    def compiled(self, i=-1):
        call = self.calls[i]
        return isinstance(call["fun"], CPUDispatcher) and isinstance(call["jac"], CPUDispatcher)


@pytest.fixture
def spy(monkeypatch):
    # curve_fit reads fastfactor._lsq.least_squares at call time
    s = Spy(lsq.least_squares)
    monkeypatch.setattr(lsq, "least_squares", s)
    return s


def fit_both(f, jac, xdata, ydata, **kwargs):
    """``curve_fit``'s full output with the compiled functions and with their Python twins."""
    got = curve_fit(f, xdata, ydata, jac=jac, full_output=True, **kwargs)
    twin_jac = jac if not isinstance(jac, CPUDispatcher) else python_twin(jac)
    ref = curve_fit(python_twin(f), xdata, ydata, jac=twin_jac, full_output=True, **kwargs)
    return got, ref


def assert_bit_identical(got, ref):
    popt, pcov, info, mesg, ier = got
    assert np.array_equal(popt, ref[0]) and np.array_equal(pcov, ref[1])
    assert np.array_equal(info["fvec"], ref[2]["fvec"]) and info["nfev"] == ref[2]["nfev"]
    assert (mesg, ier) == ref[3:]


# --- the compiled wrappers give the Python closures' results to the bit --------------------

FITS = {
    "unweighted": dict(),
    "p0": dict(p0=[2.0, 1.0, 0.0]),
    "p0-int": dict(p0=[2, 1, 0]),
    "sigma-scalar": dict(sigma=0.05),
    "sigma-scalar-array": dict(sigma=np.array([0.05])),
    "sigma-1d": dict(sigma=SIG),
    "sigma-1d-absolute": dict(sigma=SIG, absolute_sigma=True),
    "sigma-1d-float32": dict(sigma=SIG.astype(np.float32)),
    "sigma-1d-int": dict(sigma=np.arange(1, T.size + 1)),
    "bounds-active": dict(bounds=(0, [3.0, 1.0, 0.5])),
    "Bounds-sigma": dict(bounds=so.Bounds([0, 0, -1], [10, 10, 1]), sigma=SIG),
    "maxfev": dict(maxfev=40),
    "no-finish": dict(options=dict(finish=False)),
}


@pytest.mark.parametrize("kwargs", FITS.values(), ids=FITS.keys())
def test_bit_identical_to_python_closures(spy, kwargs):
    got, ref = fit_both(decay, decay_jac, T, Y, **kwargs)
    assert spy.compiled(0) and not spy.compiled(1)
    assert_bit_identical(got, ref)


def test_wrappers_receive_the_data_as_args(spy):
    curve_fit(decay, T, Y, sigma=SIG, jac=decay_jac)
    call = spy.calls[0]
    assert spy.compiled() and len(spy.calls) == 1
    xdata, ydata, w = call["args"]
    assert xdata is T and ydata is Y
    assert np.array_equal(w, 1.0 / SIG) and w.dtype == np.float64
    curve_fit(decay, T, Y, jac=decay_jac)
    w = spy.calls[-1]["args"][2]  # no sigma: unit weights (the same args type)
    assert np.array_equal(w, np.ones(Y.size)) and w.dtype == np.float64


@pytest.mark.parametrize("kwargs", [dict(), dict(sigma=SIG), dict(nan_policy="omit")],
                         ids=["plain", "sigma-1d", "omit"])
def test_2d_xdata(spy, kwargs):
    got, ref = fit_both(plane, plane_jac, X2, Y2, **kwargs)
    assert spy.compiled(0)
    assert_bit_identical(got, ref)


def test_read_only_inputs_not_modified(spy):
    x, y, s, p0 = T.copy(), Y.copy(), SIG.copy(), np.array([2.0, 1.0, 0.2])
    arrays = (x, y, s, p0)
    copies = [a.copy() for a in arrays]
    got = curve_fit(decay, x, y, p0=p0, sigma=s, jac=decay_jac)
    for a, c in zip(arrays, copies, strict=True):
        assert np.array_equal(a, c)
    for a in arrays:
        a.flags.writeable = False  # typed as read-only arrays by Numba
    again = curve_fit(decay, x, y, p0=p0, sigma=s, jac=decay_jac)
    assert spy.compiled(0) and spy.compiled(1)
    assert np.array_equal(got[0], again[0]) and np.array_equal(got[1], again[1])


def test_wrappers_cached():
    curve_fit(decay, T, Y, sigma=SIG, jac=decay_jac)
    key = (decay, decay_jac, 3)
    resid, jac = _compiled_model._wrappers[key]
    compiled = (len(resid.overloads), len(jac.overloads))
    curve_fit(decay, T, 2 * Y, sigma=2 * SIG, jac=decay_jac)
    assert _compiled_model._wrappers[key] == (resid, jac)
    assert (len(resid.overloads), len(jac.overloads)) == compiled


def test_every_sigma_kind_shares_one_compiled_loop():
    """No sigma, a scalar and a 1-D sigma, and read-only data, pass the same ``args``
    types: the least_squares loop compiled for the first serves them all."""
    import fastfactor._compiled._lsq as compiled_lsq

    curve_fit(decay, T, Y, jac=decay_jac)
    loops = dict(compiled_lsq._solvers)
    y = Y.copy()
    y.flags.writeable = False
    for sigma in (0.5, SIG):
        curve_fit(decay, T, y, sigma=sigma, jac=decay_jac)
    assert compiled_lsq._solvers == loops


# --- where the Python closures run --------------------------------------------------------


@numba.njit
def decay_float32(t, a, b, c):
    return (a * np.exp(-b * t) + c).astype(np.float32)


@numba.njit
def one_value(t, a):
    # one value for all points: the closures broadcast it against ydata
    return np.array([a])


@numba.njit
def ones_jac(t, a):
    return np.ones((t.size, 1))


@numba.njit
def ones_jac_1d(t, a):
    return np.ones(t.size)  # (m,) for one parameter: the Python path takes it


@numba.njit
def linear(t, a):
    return a * t


@numba.njit
def linear_jac_row(t, a):
    return t.reshape((1, -1)).copy()  # (1, m) for one parameter


@numba.njit
def decay_jac_float32(t, a, b, c):
    return decay_jac(t, a, b, c).astype(np.float32)


def python_jac(t, a, b, c):
    return decay_jac(t, a, b, c)


RESULT_FALLBACKS = {
    # (f, jac, kwargs, compiled attempt first)
    "float32-model": (decay_float32, decay_jac, {}, False),
    "float32-jac": (decay, decay_jac_float32, {}, False),
    "one-value-model": (one_value, ones_jac, {}, True),
    "1d-jac": (linear, ones_jac_1d, {}, False),
    "F-jac": (decay, decay_jac_fortran, {}, False),
    "F-jac-scalar-sigma": (decay, decay_jac_fortran, {"sigma": 0.05}, False),
    "F-jac-sigma-1d": (decay, decay_jac_fortran, {"sigma": SIG}, False),
    "row-jac": (linear, linear_jac_row, {}, True),
    "row-jac-scalar-sigma": (linear, linear_jac_row, {"sigma": 0.1}, True),
    "python-jac": (decay, python_jac, {}, False),
    "3-point": (decay, "3-point", {}, False),
    "no-jac": (decay, None, {}, False),
    "sigma-2d": (decay, decay_jac, {"sigma": np.diag(SIG**2)}, False),
}


@pytest.mark.parametrize("case", RESULT_FALLBACKS.values(), ids=RESULT_FALLBACKS.keys())
def test_python_closures_where_wrappers_cannot_stand_in(spy, case):
    f, jac, kwargs, attempted = case
    got, ref = fit_both(f, jac, T, Y, **kwargs)
    assert_bit_identical(got, ref)
    # an attempt whose values the closures treat otherwise is run again on the closures
    assert [spy.compiled(i) for i in range(len(spy.calls))] == (
        [True, False, False] if attempted else [False, False])


def test_object_xdata(spy):
    @numba.njit
    def on_grid(n, a, b, c):  # xdata is the number of points
        return decay(np.linspace(0, 4, n), a, b, c)

    @numba.njit
    def on_grid_jac(n, a, b, c):
        return decay_jac(np.linspace(0, 4, n), a, b, c)

    got, ref = fit_both(on_grid, on_grid_jac, T.size, Y)
    assert not spy.compiled(0)
    assert_bit_identical(got, ref)
    assert np.array_equal(got[0], curve_fit(decay, T, Y, jac=decay_jac)[0])


@numba.njit
def needs_2d(t, a, b, c):
    return a * t[0, :] + b + c  # a typing error for 1-D xdata


@numba.njit("float32[:](float32[:], float32, float32, float32)")
def float32_only(t, a, b, c):
    return a * t + b + c


@numba.njit
def wrong_size(t, a, b, c):
    return a * t[1:] + b + c


@numba.njit
def jac_transposed(t, a, b, c):
    return np.ascontiguousarray(decay_jac(t, a, b, c).T)


@numba.njit
def size_changes(t, a, b, c):
    # one value fewer once a > 2 (past x0): the closures' broadcast error, mid-run
    return decay(t[1:] if a > 2.0 else t, a, b, c)


@numba.njit
def raises(t, a, b, c):
    if a > 0:
        raise ZeroDivisionError("model refuses a > 0")
    return a * t + b + c


ERRORS = {
    # (f, jac, kwargs)
    "not-found": (decay, decay_jac, {"maxfev": 5}),  # on the compiled wrappers
    "does-not-compile": (needs_2d, decay_jac, {}),
    "jac-does-not-compile": (decay, needs_2d, {}),
    "explicit-signature": (float32_only, decay_jac, {}),
    "wrong-size": (wrong_size, decay_jac, {}),
    "wrong-size-sigma": (wrong_size, decay_jac, {"sigma": SIG}),
    "size-changes-mid-run": (size_changes, decay_jac, {}),
    "jac-transposed": (decay, jac_transposed, {}),
    "jac-transposed-sigma": (decay, jac_transposed, {"sigma": SIG}),
    "model-raises": (raises, decay_jac, {}),
    "least_squares-kwargs": (decay, decay_jac, {"kwargs": {"k": 1}}),
}


@pytest.mark.parametrize("case", ERRORS.values(), ids=ERRORS.keys())
def test_errors_as_python_path(case):
    f, jac, kwargs = case
    with pytest.raises(Exception) as got:
        curve_fit(f, T, Y, jac=jac, **kwargs)
    twin_jac = python_twin(jac)
    with pytest.raises(Exception) as ref:
        curve_fit(python_twin(f), T, Y, jac=twin_jac, **kwargs)
    assert type(got.value) is type(ref.value)
    assert str(got.value) == str(ref.value)
