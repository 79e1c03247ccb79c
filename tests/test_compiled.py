"""The compiled loop for ``numba.njit`` objectives: the same results as the Python loop
calling the same compiled functions, bit for bit; every case it does not take falls
back to the Python loop with the same results (or the same error)."""

import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
import scipy.optimize as so

import fastfactor
import fastfactor._compiled as compiled

C = 0.7


@numba.njit
def quartic_fg(x):
    """f = sum((x - C)**2) / 2 + sum((x - C)**4) / 4 with its gradient, in x's dtype."""
    d = x - C
    return 0.5 * np.sum(d * d) + 0.25 * np.sum(d ** 4), d + d ** 3


@numba.njit
def quartic_f(x):
    d = x - C
    return 0.5 * np.sum(d * d) + 0.25 * np.sum(d ** 4)


@numba.njit
def quartic_g(x):
    d = x - C
    return d + d ** 3


@numba.njit
def quartic_fg_args(x, c, w):
    d = x - c
    return 0.5 * np.sum(w * d * d) + 0.25 * np.sum(d ** 4), w * d + d ** 3


@numba.njit
def float64_fg(x):
    """Computes in float64 whatever x's dtype: the gradient is cast to x's dtype."""
    d = x.astype(np.float64) - C
    return 0.5 * np.sum(d * d), d


@numba.njit
def nan_beyond(x):
    """NaN once x[0] passes 0.4 (reached after some iterations from 0)."""
    d = x - C
    f = 0.5 * np.sum(d * d)
    if x.flat[0] > 0.4:
        f = np.nan
    return f, d


@numba.njit
def raises_beyond(x):
    d = x - C
    if x.flat[0] > 0.4:
        raise ValueError("x[0] passed 0.4")
    return 0.5 * np.sum(d * d), d


@numba.njit
def wrong_gradient_shape(x):
    return 0.5 * np.sum(x * x), x.ravel()[1:]


@numba.njit
def scalar_only(x):
    return 0.5 * np.sum(x * x)


def python_fg(x):
    d = x - C
    return 0.5 * np.sum(d * d) + 0.25 * np.sum(d ** 4), d + d ** 3


@pytest.fixture
def used(monkeypatch):
    """The number of runs that took the compiled loop."""
    calls = []
    drive = compiled.drive

    def counted(*args, **kwargs):
        calls.append(1)
        return drive(*args, **kwargs)

    monkeypatch.setattr(compiled, "drive", counted)
    return calls


def _both(monkeypatch, run):
    """``run()`` with the compiled loop, then with the Python loop."""
    first = run()
    monkeypatch.setattr(compiled, "ENABLED", False)
    second = run()
    monkeypatch.setattr(compiled, "ENABLED", True)
    return first, second


def _assert_identical(a, b):
    for key in ("x", "fun", "jac", "nit", "nfev", "njev", "status", "success", "message"):
        va, vb = np.asarray(a[key]), np.asarray(b[key])
        assert va.dtype == vb.dtype and va.shape == vb.shape, key
        if va.dtype.kind == "f":
            assert np.array_equal(va.view(f"u{va.itemsize}"), vb.view(f"u{vb.itemsize}")), key
        else:
            assert np.array_equal(va, vb), key
    assert set(a) == set(b)


#: (id, dtype, shape, minimize keywords, options): vectors, matrices and 3-D blocks,
#: with and without bounds and momentum, in both dtypes.
CASES = [
    ("vector", np.float64, (10,), {}, {}),
    ("vector-momentum", np.float32, (10,), {}, {"beta1": 0.9}),
    ("matrix-momentum-wd", np.float64, (6, 4), {}, {"beta1": 0.9, "weight_decay": 0.01}),
    ("matrix-fixed-lr", np.float32, (6, 4), {}, {"lr": 0.02, "scale_parameter": False}),
    ("tensor-warmup", np.float64, (2, 3, 4), {}, {"warmup_init": True}),
    ("tensor", np.float32, (2, 3, 4), {}, {"beta1": 0.5, "clip_threshold": 0.5}),
    ("matrix-bounds", np.float64, (6, 4), {"bounds": [(0.2, 0.5)] * 24}, {"beta1": 0.9}),
    ("vector-bounds", np.float32, (10,), {"bounds": so.Bounds(-1.0, 0.45)}, {}),
    ("matrix-unfactored", np.float64, (6, 4), {}, {"min_dim_size_to_factor": 10}),
    ("separate-jac", np.float64, (6, 4), {"jac": "separate"}, {"beta1": 0.9}),
    ("cast-gradient", np.float32, (6, 4), {"fun": float64_fg}, {"beta1": 0.9}),
    ("decay-eps", np.float64, (5, 3), {}, {"decay_rate": -0.5, "eps1": 1e-20,
                                           "eps2": 1e-2}),
]


@pytest.mark.parametrize("name, dtype, shape, kwargs, options", CASES, ids=[c[0] for c in CASES])
def test_same_run_as_the_python_loop(monkeypatch, used, name, dtype, shape, kwargs, options):
    kwargs = dict(kwargs)
    fun = kwargs.pop("fun", quartic_fg)
    jac = True
    if kwargs.pop("jac", None) == "separate":
        fun, jac = quartic_f, quartic_g
    x0 = np.linspace(-1.0, 1.0, int(np.prod(shape))).reshape(shape).astype(dtype)
    before = x0.copy()
    options = dict(options, maxiter=300)
    a, b = _both(monkeypatch, lambda: fastfactor.minimize(fun, x0, jac=jac,
                                                          options=options, **kwargs))
    assert used == [1]
    _assert_identical(a, b)
    assert a.nit > 10
    assert np.array_equal(x0, before)  # x0 is not modified


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
def test_several_blocks_through_scipy(monkeypatch, used, dtype):
    """``scipy.optimize.minimize(jac=True)`` hands the method a wrapper of ``fun``; the
    compiled loop takes the function inside. A factored and a flat block in one x."""
    x0 = np.linspace(-1.0, 1.0, 24).astype(dtype)

    def run():
        return so.minimize(quartic_fg, x0, jac=True, method=fastfactor.adafactor,
                           options={"shapes": [(4, 3), (12,)], "maxiter": 200, "beta1": 0.9})

    a, b = _both(monkeypatch, run)
    assert used == [1]
    _assert_identical(a, b)


def test_args_of_arrays(monkeypatch, used):
    c = np.linspace(0.0, 1.0, 12).reshape(4, 3)
    w = np.full((4, 3), 2.0)
    a, b = _both(monkeypatch, lambda: fastfactor.minimize(
        quartic_fg_args, np.zeros((4, 3)), args=(c, w), jac=True, options={"maxiter": 200}))
    assert used == [1]
    _assert_identical(a, b)


def test_gtol_is_reached_the_same_way(monkeypatch, used):
    a, b = _both(monkeypatch, lambda: fastfactor.minimize(
        quartic_fg, np.zeros(10), jac=True, options={"beta1": 0.9, "maxiter": 5000}))
    assert a.status == 0 and a.success
    _assert_identical(a, b)


@pytest.mark.parametrize("fun, x0, nit", [(nan_beyond, np.full(4, 0.3), "some"),
                                          (nan_beyond, np.full(4, 0.5), 0)],
                         ids=["after-updates", "at-x0"])
def test_a_nan_ends_the_run_alike(monkeypatch, used, fun, x0, nit):
    a, b = _both(monkeypatch, lambda: fastfactor.minimize(
        fun, x0, jac=True, options={"maxiter": 500, "beta1": 0.9}))
    assert a.status == 2
    assert (a.nit > 0) if nit == "some" else (a.nit == 0 and np.isnan(a.fun))
    _assert_identical(a, b)


def test_an_error_after_x0_keeps_the_last_iterate(monkeypatch):
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        with pytest.raises(ValueError, match="passed 0.4") as info:
            fastfactor.minimize(raises_beyond, np.full(4, 0.3), jac=True,
                                options={"maxiter": 500, "beta1": 0.9})
        results.append(info.value.optimize_result)
    a, b = results
    assert a.status == 98 and a.nit > 0
    for key in ("x", "fun", "jac", "nit", "nfev", "njev", "status"):
        assert np.array_equal(a[key], b[key]), key


def test_an_error_at_x0_is_raised(monkeypatch):
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        with pytest.raises(ValueError, match="passed 0.4") as info:
            fastfactor.minimize(raises_beyond, np.ones(4), jac=True)
        assert not hasattr(info.value, "optimize_result")


@numba.njit
def wrong_shape_beyond(x):
    d = x - C
    if x.flat[0] > 0.4:
        return 0.5 * np.sum(d * d), d.ravel()[1:]
    return 0.5 * np.sum(d * d), d


@numba.njit
def f_beyond(x):
    d = x - C
    return 0.5 * np.sum(d * d)


@numba.njit
def g_raises_beyond(x):
    if x.flat[0] > 0.4:
        raise ValueError("x[0] passed 0.4")
    return x - C


def _raised(monkeypatch, fun, x0, jac=True):
    """``(message, optimize_result or None)`` of the error, compiled and not."""
    out = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        with pytest.raises(ValueError) as info:
            fastfactor.minimize(fun, x0, jac=jac, options={"maxiter": 500, "beta1": 0.9})
        out.append((str(info.value), getattr(info.value, "optimize_result", None)))
    return out


@pytest.mark.parametrize("fun, x0", [(wrong_gradient_shape, np.ones((3, 2))),
                                     (wrong_shape_beyond, np.full(4, 0.3))],
                         ids=["at-x0", "later"])
def test_a_gradient_of_the_wrong_shape_is_the_same_error(monkeypatch, used, fun, x0):
    (m1, r1), (m2, r2) = _raised(monkeypatch, fun, x0)
    assert used == [1]
    assert m1 == m2 and m1.startswith("the gradient has shape (")
    if r1 is None:
        assert r2 is None
    else:
        _assert_identical(r1, r2)


def test_counts_of_a_run_ended_by_jac_match(monkeypatch, used):
    """With a separate jac, fun is counted before jac is called, as in the Python loop."""
    (m1, r1), (m2, r2) = _raised(monkeypatch, f_beyond, np.full(4, 0.3), jac=g_raises_beyond)
    assert m1 == m2 and r1.status == 98
    _assert_identical(r1, r2)
    assert r1.nfev == r1.njev


def test_a_huge_maxiter_is_the_same_run(monkeypatch, used):
    a, b = _both(monkeypatch, lambda: fastfactor.minimize(
        quartic_fg, np.zeros(6), jac=True, options={"maxiter": 10 ** 30, "beta1": 0.9}))
    assert used == [1] and a.status == 0
    _assert_identical(a, b)


def test_a_large_x_keeps_the_python_loop(monkeypatch, used):
    monkeypatch.setattr(compiled, "MAX_BYTES", 80)  # 10 float64
    a, b = _both(monkeypatch, lambda: fastfactor.minimize(
        quartic_fg, np.zeros(10), jac=True, options={"maxiter": 50}))
    assert used == []
    _assert_identical(a, b)


def _interrupt_at_call(monkeypatch, n):
    """Make the ``n``-th call of the compiled loop raise KeyboardInterrupt (as a Ctrl-C
    arriving between calls would)."""
    solver = compiled._solver
    calls = []

    def interrupting(argtypes):
        solve = solver(argtypes)

        def run(*args):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return solve(*args)
        return run

    monkeypatch.setattr(compiled, "_solver", interrupting)


def test_the_first_call_of_the_loop_is_one_iteration(monkeypatch):
    """So that a slow objective's run sees Ctrl-C after one evaluation."""
    _interrupt_at_call(monkeypatch, 2)
    res = fastfactor.minimize(quartic_fg, np.zeros(5), jac=True, options={"maxiter": 500})
    assert res.status == 98 and res.nit == 1


def test_ctrl_c_between_calls_keeps_the_iterate(monkeypatch):
    """A Ctrl-C between calls of the loop ends the run (status 98) at the iterate
    reached, as the Python loop's would."""
    monkeypatch.setattr(compiled, "CALL_SECONDS", 0.0)  # one iteration a call
    _interrupt_at_call(monkeypatch, 15)
    res = fastfactor.minimize(quartic_fg, np.zeros((4, 3)), jac=True, options={"maxiter": 500})
    assert res.status == 98 and res.nit == 14
    monkeypatch.setattr(compiled, "ENABLED", False)
    ref = fastfactor.minimize(quartic_fg, np.zeros((4, 3)), jac=True, options={"maxiter": 14})
    assert np.array_equal(res.x, ref.x) and res.fun == ref.fun


#: Cases the compiled loop does not take: (id, minimize keywords, options).
FALLBACKS = [
    ("callback", {"callback": lambda intermediate_result: None}, {}),
    ("lr-callable", {}, {"lr": lambda t: 0.01 / t ** 0.5}),
    ("finite-differences", {"fun": quartic_f, "jac": None}, {}),
    ("3-point", {"fun": quartic_f, "jac": "3-point"}, {}),
    ("python-fun", {"fun": python_fg}, {}),
    ("python-jac", {"fun": quartic_f, "jac": lambda x: quartic_g(x)}, {}),
]


@pytest.mark.parametrize("name, kwargs, options", FALLBACKS, ids=[c[0] for c in FALLBACKS])
def test_fallbacks_give_the_same_results(monkeypatch, used, name, kwargs, options):
    kwargs = dict(kwargs)
    kwargs.setdefault("jac", True)
    fun = kwargs.pop("fun", quartic_fg)
    a, b = _both(monkeypatch, lambda: fastfactor.minimize(
        fun, np.zeros((4, 3)), options=dict(options, maxiter=50), **kwargs))
    assert used == []
    _assert_identical(a, b)


def test_a_block_for_the_parallel_kernels_falls_back(monkeypatch, used):
    monkeypatch.setattr(compiled, "PARALLEL_MIN_BYTES", 64)
    a, b = _both(monkeypatch, lambda: fastfactor.minimize(
        quartic_fg, np.zeros((4, 3)), jac=True, options={"maxiter": 50}))
    assert used == []
    _assert_identical(a, b)


@pytest.mark.parametrize("fun, args, error", [
    (scalar_only, (), TypeError),           # jac=True, but fun returns f only
    (quartic_fg_args, ({"c": 1},), Exception),  # args Numba cannot type
], ids=["not-a-pair", "untyped-args"])
def test_what_does_not_compile_raises_as_the_python_loop(monkeypatch, used, fun, args, error):
    messages = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        with pytest.raises(error) as info:
            fastfactor.minimize(fun, np.zeros(3), args=args, jac=True)
        messages.append((type(info.value), str(info.value)))
    assert used == []
    assert messages[0] == messages[1]


def test_the_optimizer_s_own_iterations_are_cheap():
    """Not a timing assert: the compiled loop makes no Python call per iteration, so a
    long run calls the loop a handful of times (it returns every ~50 ms)."""
    calls = []
    solver = compiled._solver

    def counting(argtypes):
        solve = solver(argtypes)

        def run(*args):
            calls.append(1)
            return solve(*args)
        return run

    mp = pytest.MonkeyPatch()
    mp.setattr(compiled, "_solver", counting)
    try:
        res = fastfactor.minimize(quartic_fg, np.zeros(10), jac=True,
                                  options={"maxiter": 20000, "gtol": 0.0})
    finally:
        mp.undo()
    assert res.nit == 20000 or res.status == 0
    assert len(calls) < res.nit / 50


#: A process that solves with a new compiled objective and prints the loop's cache
#: misses (compilations) and hits.
LATER = r"""
import json, sys
import numba, numpy as np
import fastfactor, fastfactor._compiled as compiled
c = float(sys.argv[1])
@numba.njit
def fg(x):
    d = x - c
    return 0.5 * np.sum(d * d), d
res = fastfactor.minimize(fg, np.zeros((3, 2)), jac=True, options={"maxiter": 20})
solve = list(compiled._solvers.values())[0]
print(json.dumps([sum(solve.stats.cache_misses.values()), sum(solve.stats.cache_hits.values()),
                  res.nit]))
"""


@pytest.mark.slow
def test_a_new_objective_in_a_new_process_does_not_compile_the_loop():
    """Two processes, each with an objective of its own, on the suite's disk cache: the
    first may compile the loop (or find it cached), the second loads it."""
    env = dict(os.environ, FASTFACTOR_NUMBA_CACHE="1")
    counts = []
    for c in ("0.5", "1.5"):
        done = subprocess.run([sys.executable, "-c", LATER, c], env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        counts.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert sum(counts[0][:2]) == 1 and counts[0][2] == 20
    assert counts[1] == [0, 1, 20]  # loaded from the cache, not compiled
