"""Bad inputs raise the documented errors; dtypes and user arrays are handled as promised."""

import numpy as np
import pytest
import scipy.optimize as so

import fastfactor
from fastfactor import Adafactor, adafactor
from helpers import Problem, assert_close
from reference import ReferenceAdafactor, reference_minimize

ENTRIES = ["scipy", "adafactor_direct", "fastfactor"]


def call(entry, fun, x0, jac, **options):
    if entry == "scipy":
        return so.minimize(fun, x0, method=adafactor, jac=jac, options=options)
    if entry == "adafactor_direct":
        return adafactor(fun, x0, jac=jac, **options)
    return fastfactor.minimize(fun, x0, jac=jac, options=options)


def quadratic(x):
    return 0.5 * float(np.sum(np.asarray(x, dtype=float) ** 2))


def quadratic_grad(x):
    return np.array(x, dtype=float)


# --- x0 ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_non_finite_x0_raises(entry, bad):
    x0 = np.ones(6)
    x0[2] = bad
    calls = []

    def fun(x):
        calls.append(1)
        return quadratic(x)

    with pytest.raises(ValueError):
        call(entry, fun, x0, quadratic_grad, maxiter=3)
    assert not calls  # rejected before anything is evaluated


def test_non_finite_x0_matrix_float32_raises():
    x0 = np.ones((3, 4), np.float32)
    x0[1, 2] = np.nan
    with pytest.raises(ValueError):
        fastfactor.minimize(quadratic, x0, jac=quadratic_grad)


@pytest.mark.parametrize(
    "x0",
    [["a", "b", "c"], "abc", np.array(["1.0", "2.0"]), [object(), object()], None, [{"a": 1}]],
    ids=["list_of_str", "str", "str_array", "objects", "None", "dicts"],
)
@pytest.mark.parametrize("entry", ["adafactor_direct", "fastfactor", "scipy"])
def test_non_numeric_x0_raises_type_error(entry, x0):
    with pytest.raises(TypeError):
        call(entry, quadratic, x0, quadratic_grad, maxiter=3)


@pytest.mark.parametrize("entry", ENTRIES)
def test_integer_x0_becomes_float64(entry):
    x0 = [3, -2, 1, 4]
    res = call(entry, quadratic, x0, quadratic_grad, maxiter=5, gtol=0.0, lr=0.1)
    assert res.x.dtype == np.float64
    traj = reference_minimize(quadratic_grad, np.array(x0, float), 5, lr=0.1)
    assert_close(res.x, traj[-1])
    assert x0 == [3, -2, 1, 4]
    xi = np.array([3, -2, 1, 4], dtype=np.int32)
    res = call(entry, quadratic, xi, quadratic_grad, maxiter=5, gtol=0.0, lr=0.1)
    assert res.x.dtype == np.float64
    np.testing.assert_array_equal(xi, [3, -2, 1, 4])


@pytest.mark.parametrize("grad_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("entry", ENTRIES)
def test_float32_stays_float32(entry, grad_dtype):
    x0 = np.linspace(-1, 1, 12, dtype=np.float32)
    if entry == "fastfactor":
        x0 = x0.reshape(3, 4)
    seen = []

    def fun(x):
        seen.append(x.dtype)
        return quadratic(x)

    def jac(x):
        return np.asarray(x, dtype=grad_dtype) * 2

    res = call(entry, fun, x0, jac, maxiter=4, gtol=0.0)
    assert res.x.dtype == np.float32
    assert res.x.shape == x0.shape
    assert set(seen) == {np.dtype(np.float32)}  # fun sees float32 points
    traj = reference_minimize(lambda x: (2 * x).astype(np.float32), x0, 4)
    assert traj[-1].dtype == np.float32
    assert_close(res.x, traj[-1])


@pytest.mark.parametrize("entry", ENTRIES)
def test_list_x0(entry):
    res = call(entry, quadratic, [1.0, -2.0, 0.5], quadratic_grad, maxiter=3, gtol=0.0)
    assert isinstance(res.x, np.ndarray) and res.x.shape == (3,)


# --- gradients ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "grad_shape",
    [(21,), (19,), (20, 1), (1, 20), (4, 5), ()],
    ids=["longer", "shorter", "column", "row", "matrix", "scalar"],
)
@pytest.mark.parametrize("jac_true", [False, True], ids=["jac", "jac_true"])
@pytest.mark.parametrize("entry", ["scipy", "adafactor_direct"])
def test_gradient_of_wrong_shape_flat(entry, jac_true, grad_shape):
    def jac(x):
        return np.ones(grad_shape)

    fun = (lambda x: (quadratic(x), jac(x))) if jac_true else quadratic
    with pytest.raises(ValueError):
        call(entry, fun, np.ones(20), True if jac_true else jac, maxiter=3, shapes=(4, 5))


@pytest.mark.parametrize("grad_shape", [(20,), (5, 4), (4, 5, 1), (4, 6)], ids=str)
def test_gradient_of_wrong_shape_fastfactor(grad_shape):
    with pytest.raises(ValueError):
        fastfactor.minimize(quadratic, np.ones((4, 5)), jac=lambda x: np.ones(grad_shape),
                            options=dict(maxiter=3))


def test_gradient_of_wrong_shape_later_in_the_run():
    calls = [0]

    def jac(x):
        calls[0] += 1
        return quadratic_grad(x) if calls[0] < 4 else np.ones(7)

    with pytest.raises(ValueError):
        fastfactor.minimize(quadratic, np.ones(6), jac=jac, options=dict(maxiter=10, gtol=0.0))


# --- options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shapes",
    [(4, 4), [(4, 5), (1,)], [(2, 5)], (21,), [(4, 5), (0,), (1,)], [(10,), (3, 3)]],
    ids=["too_small", "too_large", "half", "vector_too_long", "with_empty_too_large", "mixed"],
)
@pytest.mark.parametrize("entry", ENTRIES)
def test_bad_shapes_option(entry, shapes):
    x0 = np.ones((4, 5)) if entry == "fastfactor" else np.ones(20)
    with pytest.raises(ValueError):
        call(entry, quadratic, x0, quadratic_grad, shapes=shapes, maxiter=3)


@pytest.mark.parametrize("entry", ENTRIES)
def test_good_shapes_options(entry):
    x0 = np.arange(20.0).reshape(4, 5) if entry == "fastfactor" else np.arange(20.0)
    for shapes in [(20,), 20, [(4, 5)], [(2, 5), (10,)], [(2, 2, 5)], [(5,), (3, 5)]]:
        res = call(entry, quadratic, x0, quadratic_grad, shapes=shapes, maxiter=2, gtol=0.0)
        assert res.nit == 2 and res.x.shape == x0.shape


@pytest.mark.parametrize("device", ["gpu", "tpu", "CPU", "cuda:1", "", 0])
@pytest.mark.parametrize("entry", ENTRIES)
def test_bad_device(entry, device):
    with pytest.raises(ValueError):
        call(entry, quadratic, np.ones(4), quadratic_grad, device=device, maxiter=2)


def test_bad_device_stepper():
    with pytest.raises(ValueError):
        Adafactor((3, 4), device="gpu")


def test_device_cpu_explicit():
    res = fastfactor.minimize(quadratic, np.ones((3, 4)), jac=quadratic_grad,
                              options=dict(device="cpu", maxiter=2))
    assert res.nit == 2


INVALID_OPTIONS = {
    "lr_zero": dict(lr=0.0),
    "lr_negative": dict(lr=-1.0),
    "clip_zero": dict(clip_threshold=0.0),
    "eps1_negative": dict(eps1=-1.0),
    "eps2_negative": dict(eps2=-1.0),
    "weight_decay_negative": dict(weight_decay=-0.5),
    "beta1_one": dict(beta1=1.0),
    "beta1_negative": dict(beta1=-0.5),
    "decay_rate_zero": dict(decay_rate=0.0),
    "decay_rate_positive": dict(decay_rate=0.8),
    "warmup_with_lr": dict(warmup_init=True, lr=0.1),
    "maxiter_negative": dict(maxiter=-1),
}


@pytest.mark.parametrize("options", INVALID_OPTIONS.values(), ids=INVALID_OPTIONS.keys())
@pytest.mark.parametrize("entry", ENTRIES)
def test_invalid_options(entry, options):
    calls = []

    def fun(x):
        calls.append(1)
        return quadratic(x)

    with pytest.raises(ValueError):
        call(entry, fun, np.ones(6), quadratic_grad, **options)
    assert not calls


# --- the stepper's inputs -----------------------------------------------------------


def test_stepper_does_not_touch_gradients_of_other_dtype():
    x = np.ones((3, 4), np.float32)
    g = np.full((3, 4), 0.5)  # float64 gradient for float32 parameters
    g_before = g.copy()
    Adafactor((3, 4)).step(x, g)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(g, g_before)
    (expected,) = ReferenceAdafactor([(3, 4)]).step([np.ones((3, 4), np.float32)],
                                                    [g.astype(np.float32)])
    assert_close(x, expected)


def test_stepper_shapes_with_negative_dimension():
    with pytest.raises(ValueError):
        Adafactor((3, -4))


def test_problem_helper_checks_shapes():
    """The test objective itself refuses points of the wrong shape (guards the tests above)."""
    p = Problem((4, 5))
    with pytest.raises(AssertionError):
        p.fun(np.ones(20))
