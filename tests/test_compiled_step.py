"""``fastfactor.compiled.step``: one block's update from the user's own ``numba.njit``
code, bit for bit ``fastfactor.Adafactor.step``'s."""

import numba
import numpy as np
import pytest

import fastfactor
import fastfactor.compiled as ffc
from helpers import gradient_stream


@numba.njit
def steps_in_compiled_code(x, gs, state):
    """Apply each gradient of ``gs`` (stacked on axis 0) in turn; the results."""
    done = np.zeros(gs.shape[0], np.bool_)
    for i in range(gs.shape[0]):
        done[i] = ffc.step(x, gs[i].copy(), state)
    return done


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view(f"u{a.itemsize}")


#: (id, shape, hyper-parameters, dtype): each kind of block with and without momentum
#: once, both dtypes for the common kinds (every case compiles the step anew).
CASES = [
    ("vector", (10,), {}, np.float64),
    ("vector-f32", (10,), {}, np.float32),
    ("vector-momentum", (70,), {"beta1": 0.9}, np.float64),
    ("matrix", (6, 4), {}, np.float32),
    ("matrix-momentum-wd", (6, 4), {"beta1": 0.9, "weight_decay": 0.01, "lr": 0.02},
     np.float64),
    ("matrix-momentum-f32", (6, 4), {"beta1": 0.9}, np.float32),
    ("matrix-unfactored", (6, 4), {"min_dim_size_to_factor": 10}, np.float64),
    ("tensor-warmup", (2, 3, 4), {"warmup_init": True}, np.float64),
    ("tensor-momentum", (3, 5, 70), {"beta1": 0.5, "scale_parameter": False}, np.float32),
]


@pytest.mark.parametrize("name, shape, hyper, dtype", CASES, ids=[c[0] for c in CASES])
def test_same_bits_as_the_stepper(name, shape, hyper, dtype):
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal(shape).astype(dtype)
    grads = np.stack([g[0] for g in gradient_stream(rng, [shape], dtype, 6)])
    opt = fastfactor.Adafactor(shape, **hyper)
    x_ref = x0.copy()
    for g in grads:
        opt.step(x_ref, g)
    state = ffc.init(shape, dtype, **hyper)
    x = x0.copy()
    assert steps_in_compiled_code(x, grads, state).all()
    assert np.array_equal(_bits(x), _bits(x_ref))
    assert state.t[0] == opt.t == len(grads)
    ref = opt._state[0]
    if opt.factored[0]:
        assert state.v is None
        assert np.array_equal(_bits(state.row), _bits(ref.row))
        assert np.array_equal(_bits(state.col), _bits(ref.col))
    else:
        assert state.row is None and state.col is None
        assert np.array_equal(_bits(state.v), _bits(ref.v))
    if "beta1" in hyper:
        assert np.array_equal(_bits(state.m), _bits(ref.m.reshape(shape)))
    else:
        assert state.m is None


def test_callable_from_python_too():
    state = ffc.init((3, 4))
    x = np.ones((3, 4))
    assert ffc.step(x, np.full((3, 4), 0.5), state)
    ref = np.ones((3, 4))
    fastfactor.Adafactor((3, 4)).step(ref, np.full((3, 4), 0.5))
    assert np.array_equal(x, ref)


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e200], ids=["nan", "inf", "overflow"])
@pytest.mark.parametrize("shape", [(4, 3), (7,)], ids=["matrix", "vector"])
def test_a_gradient_that_is_not_finite_changes_nothing(shape, bad):
    state = ffc.init(shape, beta1=0.9)
    x = np.ones(shape)
    assert ffc.step(x, np.full(shape, 0.5), state)
    saved = [a.copy() if isinstance(a, np.ndarray) else a for a in state] + [x.copy()]
    g = np.full(shape, 0.5)
    g.flat[2] = bad
    assert not ffc.step(x, g, state)
    for before, after in zip(saved, list(state) + [x], strict=True):
        if isinstance(before, np.ndarray):
            assert np.array_equal(before, after, equal_nan=True)
        else:
            assert before == after


@pytest.mark.parametrize("x, g, state, match", [
    (np.ones((4, 3)), np.ones((3, 4)), ffc.init((4, 3)), "g must have x's shape"),
    (np.ones((5, 3)), np.ones((5, 3)), ffc.init((4, 3)), "not the state of a block"),
    (np.ones((2, 6)), np.ones((2, 6)), ffc.init((3, 4), min_dim_size_to_factor=5),
     "not the state of a block"),
], ids=["g-shape", "state-shape", "unfactored-state-shape"])
def test_mismatches_are_value_errors(x, g, state, match):
    with pytest.raises(ValueError, match=match):
        ffc.step(x, g, state)


def _read_only(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("x, g, state, match", [
    (np.ones((4, 3)), np.ones((4, 3), np.float32), ffc.init((4, 3)), "x's dtype"),
    (np.ones((4, 3), np.float32), np.ones((4, 3), np.float32), ffc.init((4, 3)),
     "make the state with"),
    (np.ones(12), np.ones(12), ffc.init((4, 3)), "dimensions"),
    (np.ones((3, 4)), np.ones((3, 4)), ffc.init(12), "dimensions"),
    (np.ones((4, 3)), np.ones((4, 3)).T.copy().T, ffc.init((4, 3)), "C-contiguous"),
    (np.ones((4, 3)), np.ones((4, 6))[:, ::2], ffc.init((4, 3)), "C-contiguous"),
    (_read_only(np.ones((4, 3))), np.ones((4, 3)), ffc.init((4, 3)), "read-only"),
], ids=["g-dtype", "state-dtype", "factored-state-vector", "vector-state-matrix",
        "fortran-order", "strided", "read-only"])
def test_kinds_that_cannot_compile_are_typing_errors(x, g, state, match):
    with pytest.raises(numba.core.errors.TypingError, match=match):
        ffc.step(x, g, state)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"lr": lambda t: 0.01}, TypeError, "schedule cannot be called"),
    ({"dtype": np.int64}, TypeError, "float32 or float64"),
    ({"dtype": np.float32, "eps1": 1e-50}, ValueError, "rounds to 0"),
    ({"bogus": 1}, TypeError, "unexpected keyword argument 'bogus'"),
    ({"beta1": 1.5}, ValueError, "beta1"),
    ({"shape": (3.0, 4)}, TypeError, "tuple of ints"),
    ({"shape": (3, -4)}, ValueError, "negative"),
], ids=["lr-callable", "int-dtype", "eps1-float32", "unknown", "beta1-range", "float-dim",
        "negative-dim"])
def test_init_refuses_what_step_cannot_take(kwargs, error, match):
    kwargs = dict(kwargs)
    with pytest.raises(error, match=match):
        ffc.init(kwargs.pop("shape", (4, 3)), **kwargs)


def test_init_takes_an_int_as_a_vector_shape():
    state = ffc.init(5)
    assert state.shape == (5,) and state.v.shape == (5,)
    x = np.ones(5)
    assert ffc.step(x, np.full(5, 0.5), state)


def test_empty_block_is_a_no_op():
    state = ffc.init((0, 3))
    x = np.ones((0, 3))
    assert ffc.step(x, np.ones((0, 3)), state)
