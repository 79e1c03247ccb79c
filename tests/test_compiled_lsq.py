"""The Adafactor phase of ``fastfactor.least_squares`` in the compiled loop, for
``numba.njit`` residuals and Jacobians: the same result as the Python loop calling the
same compiled functions, bit for bit (every field, every phase); every case it does not
take falls back to the Python loop with the same result or error."""

import re

import numba
import numpy as np
import pytest

import fastfactor
import fastfactor._compiled as compiled
import fastfactor._compiled._lsq as compiled_lsq

T = np.linspace(0.0, 10.0, 60)
Y = 5.0 * np.exp(-0.7 * T) + 1.0 + 0.05 * np.cos(3.0 * T)
C = 0.7


@numba.njit
def decay(p):
    return p[0] * np.exp(-p[1] * T) + p[2] - Y


@numba.njit
def decay_jac(p):
    e = np.exp(-p[1] * T)
    J = np.empty((T.size, 3))
    J[:, 0] = e
    J[:, 1] = -p[0] * T * e
    J[:, 2] = 1.0
    return J


@numba.njit
def decay_args(p, t, y):
    return p[0] * np.exp(-p[1] * t) + p[2] - y


@numba.njit
def decay_jac_args(p, t, y):
    e = np.exp(-p[1] * t)
    J = np.empty((t.size, 3))
    J[:, 0] = e
    J[:, 1] = -p[0] * t * e
    J[:, 2] = 1.0
    return J


@numba.njit
def cubic(x):
    """Residuals ``d + 0.3 d**3`` of ``d = x - C``, in x's dtype, x of any shape."""
    d = x - C
    return (d + 0.3 * d ** 3).ravel()


@numba.njit
def cubic_jac(x):
    """The ``(m, n)`` Jacobian of ``cubic``, in x's dtype."""
    d = (x - C).ravel()
    J = np.zeros((d.size, d.size), dtype=x.dtype)
    for i in range(d.size):
        J[i, i] = 1.0 + 0.9 * d[i] ** 2
    return J


@numba.njit
def cubic_jac_shaped(x):
    """The Jacobian of ``cubic`` as ``(m,) + x.shape``."""
    return cubic_jac(x).reshape((x.size,) + x.shape)


@numba.njit
def peak(p):
    """A Gaussian peak started beside its data: a plateau (docs/least_squares.rst)."""
    x = np.linspace(0.0, 10.0, 50)
    y = 2.0 * np.exp(-0.5 * ((x - 4.0) / 0.5) ** 2) + 0.01 * np.cos(3.0 * x)
    return p[0] * np.exp(-0.5 * ((x - p[1]) / p[2]) ** 2) - y


@numba.njit
def peak_jac(p):
    x = np.linspace(0.0, 10.0, 50)
    u = (x - p[1]) / p[2]
    g = np.exp(-0.5 * u * u)
    J = np.empty((50, 3))
    J[:, 0] = g
    J[:, 1] = p[0] * g * u / p[2]
    J[:, 2] = p[0] * g * u * u / p[2]
    return J


@numba.njit
def nan_beyond(x):
    """NaN residuals once x[0] passes 0.45 (reached after some iterations from 0.3)."""
    r = x - C
    if x[0] > 0.45:
        r[0] = np.nan
    return r


@numba.njit
def identity_jac(x):
    return np.eye(x.size)


@numba.njit
def raises_beyond(x):
    if x[0] > 0.45:
        raise ValueError("x[0] passed 0.45")
    return x - C


@numba.njit
def fewer_beyond(x):
    if x[0] > 0.45:
        return (x - C)[1:]
    return x - C


@numba.njit
def jac_shrinks_beyond(x):
    if x[0] > 0.45:
        return np.eye(x.size)[1:]
    return np.eye(x.size)


def python_decay(p):
    return decay(p)


@pytest.fixture
def used(monkeypatch):
    """The number of phases that ran in the compiled loop."""
    calls = []
    drive = compiled_lsq.drive

    def counted(*args, **kwargs):
        calls.append(1)
        return drive(*args, **kwargs)

    monkeypatch.setattr(compiled_lsq, "drive", counted)
    return calls


def _both(monkeypatch, run):
    """``run()`` with the compiled loop, then with the Python loop."""
    first = run()
    monkeypatch.setattr(compiled, "ENABLED", False)
    try:
        second = run()
    finally:
        monkeypatch.setattr(compiled, "ENABLED", True)
    return first, second


def _same_bits(a, b, key):
    va, vb = np.asarray(a), np.asarray(b)
    assert va.dtype == vb.dtype and va.shape == vb.shape, key
    if va.dtype.kind == "f":
        assert np.array_equal(va.view(f"u{va.itemsize}"), vb.view(f"u{vb.itemsize}")), key
    else:
        assert np.array_equal(va, vb), key


def _assert_identical(a, b):
    assert set(a) == set(b)
    for key in ("x", "cost", "fun", "jac", "grad", "optimality", "active_mask", "nfev",
                "njev", "nit", "status", "success", "message", "phase"):
        _same_bits(a[key], b[key], key)
    assert list(a.phases) == list(b.phases)
    for name in a.phases:
        for key in ("cost", "status", "nit", "nfev", "njev"):
            _same_bits(a.phases[name][key], b.phases[name][key], f"{name}.{key}")


PHASE_ONLY = {"finish": False, "maxiter": 400}

#: (id, x0, least_squares keywords, options): vectors, matrices, 3-D blocks, several
#: blocks, bounds, scales, schedules and budgets, in both dtypes.
CASES = [
    ("decay", np.array([1.0, 1.0, 0.0]), {}, {}),
    ("decay-float32", np.array([1.0, 1.0, 0.0], np.float32), {}, {}),
    ("decay-bounds", np.array([1.0, 1.0, 0.0]),
     {"bounds": ([0.0, 0.0, -1.0], [10.0, 0.9, 2.0])}, {}),
    ("decay-xscale-jac", np.array([1.0, 1.0, 0.0]), {"x_scale": "jac"}, {}),
    ("decay-xscale-array", np.array([1.0, 1.0, 0.0], np.float32), {"x_scale": [2.0, 1.0, 0.5]},
     {}),
    ("decay-args", np.array([1.0, 1.0, 0.0]),
     {"fun": decay_args, "jac": decay_jac_args, "args": (T, Y)}, {}),
    ("decay-phase-only", np.array([1.0, 1.0, 0.0]), {}, {"finish": False, "maxiter": 3000}),
    ("decay-fixed-lr-no-momentum", np.array([1.0, 1.0, 0.0]), {},
     dict(PHASE_ONLY, lr=0.01, beta1=None)),
    ("decay-relative-step", np.array([1.0, 1.0, 0.0], np.float32), {},
     dict(PHASE_ONLY, lr=None)),
    ("decay-budget", np.array([1.0, 1.0, 0.0]), {"max_nfev": 30}, {}),
    ("decay-budget-phase-only", np.array([1.0, 1.0, 0.0]), {"max_nfev": 25}, PHASE_ONLY),
    ("decay-no-handover", np.array([1.0, 1.0, 0.0]), {}, {"handover_window": 0,
                                                          "maxiter": 300}),
    ("decay-xtol", np.array([1.0, 1.0, 0.0]), {"xtol": 1e-3}, PHASE_ONLY),
    ("cubic-matrix", np.zeros((6, 4)), {"fun": cubic, "jac": cubic_jac}, PHASE_ONLY),
    ("cubic-matrix-shaped-jac", np.zeros((6, 4), np.float32),
     {"fun": cubic, "jac": cubic_jac_shaped}, PHASE_ONLY),
    ("cubic-matrix-bounds", np.zeros((6, 4)), {"fun": cubic, "jac": cubic_jac,
                                               "bounds": (0.2, 0.5)}, PHASE_ONLY),
    ("cubic-tensor", np.zeros((2, 3, 4), np.float32), {"fun": cubic, "jac": cubic_jac},
     dict(PHASE_ONLY, beta1=0.5)),
    ("cubic-blocks", np.zeros(10), {"fun": cubic, "jac": cubic_jac},
     dict(PHASE_ONLY, shapes=[(2, 3), (4,)])),
    ("cubic-unfactored", np.zeros((6, 4)), {"fun": cubic, "jac": cubic_jac},
     dict(PHASE_ONLY, min_dim_size_to_factor=10)),
    ("cubic-gtol", np.zeros(5), {"fun": cubic, "jac": cubic_jac, "gtol": 1e-3},
     PHASE_ONLY),
    ("plateau", np.array([1.0, 12.0, 1.0]), {"fun": peak, "jac": peak_jac}, {}),
    ("plateau-phase-only", np.array([1.0, 12.0, 1.0]), {"fun": peak, "jac": peak_jac},
     PHASE_ONLY),
    ("nan", np.full(3, 0.3), {"fun": nan_beyond, "jac": identity_jac}, PHASE_ONLY),
    ("nan-then-finish", np.full(3, 0.3), {"fun": nan_beyond, "jac": identity_jac}, {}),
]


@pytest.mark.parametrize("name, x0, kwargs, options", CASES, ids=[c[0] for c in CASES])
def test_same_result_as_the_python_loop(monkeypatch, used, name, x0, kwargs, options):
    kwargs = dict(kwargs)
    fun, jac = kwargs.pop("fun", decay), kwargs.pop("jac", decay_jac)
    x_before = x0.copy()

    def run():
        with np.errstate(all="ignore"):
            return fastfactor.least_squares(fun, x0, jac, options=dict(options), **kwargs)

    a, b = _both(monkeypatch, run)
    assert len(used) == 1, "the compiled loop ran"
    assert np.array_equal(x0, x_before)
    _assert_identical(a, b)
    assert a.phases["adafactor"].nit > 0


def test_the_ends_are_covered():
    """The table above reaches each end of the phase: hand-over, maxiter, gtol, xtol,
    plateau, NaN, budget."""
    ends = set()
    for _name, x0, kwargs, options in CASES:
        kwargs = dict(kwargs)
        fun, jac = kwargs.pop("fun", decay), kwargs.pop("jac", decay_jac)
        with np.errstate(all="ignore"):
            res = fastfactor.least_squares(fun, x0, jac, options=dict(options), **kwargs)
        phase = res.phases["adafactor"]
        ends.add((phase.status, phase.nit >= options.get("maxiter", 1000)))
    assert {(1, False), (3, False), (-4, False), (-3, False), (0, True), (0, False)} <= ends


def test_curve_fit_style_residuals_in_float32_are_cast_as_the_python_loop(monkeypatch, used):
    """Residuals and a Jacobian in float32 (x0's dtype) reach the phase as float64, the
    result's ``jac`` in jac's own dtype."""
    def run():
        return fastfactor.least_squares(cubic, np.zeros((3, 4), np.float32), cubic_jac,
                                        options=PHASE_ONLY)
    a, b = _both(monkeypatch, run)
    assert len(used) == 1 and a.jac.dtype == np.float32
    _assert_identical(a, b)


@numba.njit
def _shifted(x):
    return x - C


@pytest.mark.parametrize("fun, jac, message", [
    (raises_beyond, identity_jac, "x[0] passed 0.45"),
    (fewer_beyond, identity_jac, "fun returned 2 residuals, but 3 at x0"),
    (_shifted, jac_shrinks_beyond, "jac returned an array of shape (2, 3); expected (m, n)"),
])
def test_an_error_after_x0_is_the_python_loop_s(monkeypatch, used, fun, jac, message):
    """An error raised in the loop (by fun, or a wrong number of residuals, or a
    Jacobian of the wrong shape) is the Python loop's error, carrying the same result."""
    def run():
        with pytest.raises(ValueError, match=re.escape(message)) as info:
            fastfactor.least_squares(fun, np.full(3, 0.3), jac, options=PHASE_ONLY)
        return info.value

    a, b = _both(monkeypatch, run)
    assert len(used) == 1 and str(a) == str(b) and type(a) is type(b)
    _assert_identical(a.optimize_result, b.optimize_result)
    assert a.optimize_result.status == 98 and a.optimize_result.nit > 0


def test_ctrl_c_between_calls_keeps_the_iterate(monkeypatch):
    """A Ctrl-C between calls of the loop returns the result at the iterate reached
    (status 98), as the Python loop's would."""
    monkeypatch.setattr(compiled, "CALL_SECONDS", 0.0)  # one iteration a call
    calls = []
    solver = compiled_lsq._solver

    def interrupting(*args):
        solve = solver(*args)

        def run(*a):
            calls.append(1)
            if len(calls) == 12:
                raise KeyboardInterrupt
            return solve(*a)
        return run

    monkeypatch.setattr(compiled_lsq, "_solver", interrupting)
    res = fastfactor.least_squares(decay, np.array([1.0, 1.0, 0.0]), decay_jac,
                                   options=PHASE_ONLY)
    assert res.status == 98 and res.nit == 11 and res.phase == "adafactor"
    assert np.array_equal(res.fun, decay(res.x))  # the iterate with its own evaluation
    assert res.cost == pytest.approx(0.5 * np.sum(res.fun ** 2), rel=1e-14)


def _kw_decay(p, scale=1.0):
    return decay(p) * scale


#: Cases the compiled loop does not take: (id, least_squares keywords, options).
FALLBACKS = [
    ("soft_l1", {"loss": "soft_l1"}, {}),
    ("callback", {"callback": lambda intermediate_result: None}, {}),
    ("lr-callable", {}, {"lr": lambda t: 0.05 / t ** 0.5}),
    ("finite-differences", {"jac": "2-point"}, {}),
    ("python-fun", {"fun": python_decay}, {}),
    ("python-jac", {"jac": lambda p: decay_jac(p)}, {}),
]


@pytest.mark.parametrize("name, kwargs, options", FALLBACKS, ids=[c[0] for c in FALLBACKS])
def test_fallbacks_give_the_same_results(monkeypatch, used, name, kwargs, options):
    kwargs = dict(kwargs)
    fun, jac = kwargs.pop("fun", decay), kwargs.pop("jac", decay_jac)

    def run():
        return fastfactor.least_squares(fun, np.array([1.0, 1.0, 0.0]), jac,
                                        options=dict(options), **kwargs)

    a, b = _both(monkeypatch, run)
    assert not used
    _assert_identical(a, b)


def test_verbose_2_and_kwargs_fall_back(monkeypatch, used, capsys):
    x0 = np.array([1.0, 1.0, 0.0])
    fastfactor.least_squares(decay, x0, decay_jac, verbose=2, options=PHASE_ONLY)
    fastfactor.least_squares(numba.njit(_kw_decay), x0, numba.njit(
        lambda p, scale=1.0: decay_jac(p) * scale), kwargs={"scale": 2.0}, options=PHASE_ONLY)
    assert not used
    capsys.readouterr()


def test_a_large_x_keeps_the_python_loop(monkeypatch, used):
    monkeypatch.setattr(compiled, "MAX_BYTES", 16)
    fastfactor.least_squares(decay, np.array([1.0, 1.0, 0.0]), decay_jac)
    assert not used


def test_dask_s_problem_is_not_compiled():
    """Only the local problem's evaluations compile (``fastfactor.dask`` has its own)."""
    from fastfactor._lsq._phases import _compiled_phase

    assert _compiled_phase(None, object(), None, None, None, None) is None


@numba.njit
def _complex_residuals(p):
    return (p + 1j).astype(np.complex128)


def test_what_does_not_compile_raises_as_the_python_loop(monkeypatch, used):
    """Complex residuals do not compile into the float64 residuals: the Python loop runs
    and raises its TypeError."""
    with pytest.raises(TypeError, match="fun must return real numbers"):
        fastfactor.least_squares(_complex_residuals, np.ones(3), identity_jac)
    assert not used


@pytest.mark.parametrize("tolerance", [None, 0.0])
def test_a_tolerance_of_none_or_zero_turns_its_test_off(monkeypatch, used, tolerance):
    """As in SciPy: without the gtol and xtol tests the phase runs its maxiter, though
    it reaches the minimum early (steps rounding to 0)."""
    def run():
        return fastfactor.least_squares(_shifted, np.full(3, 0.3), identity_jac,
                                        gtol=tolerance, xtol=tolerance,
                                        options={"finish": False, "maxiter": 3000})
    a, b = _both(monkeypatch, run)
    assert len(used) == 1 and a.nit == 3000 and a.status == 0
    _assert_identical(a, b)
    assert np.allclose(a.x, C, rtol=0, atol=1e-15)


def test_args_as_a_list_are_unpacked_as_scipy_does(monkeypatch, used):
    a, b = _both(monkeypatch, lambda: fastfactor.least_squares(
        decay_args, np.array([1.0, 1.0, 0.0]), decay_jac_args, args=[T, Y]))
    assert len(used) == 1
    _assert_identical(a, b)


@numba.njit
def _huge(x):
    return (x - C) * 1e160


def test_a_cost_that_overflows_at_x0_says_so():
    with pytest.raises(ValueError, match="The cost at the initial point overflows float64"):
        fastfactor.least_squares(_huge, np.zeros(3), identity_jac)
    with pytest.raises(ValueError, match="Residuals are not finite in the initial point"):
        fastfactor.least_squares(lambda x: np.full(3, np.inf), np.zeros(3), identity_jac)
