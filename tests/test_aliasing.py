"""Memory the stepper must not trust: parameters that overlap themselves, gradients that
share memory with parameters, one array where a list of blocks is expected, and
gradients whose conversion or squares overflow."""

import itertools
import warnings

import numpy as np
import pytest

from fastfactor import Adafactor
from fastfactor._blocks import may_overlap_itself
from helpers import DTYPES, dtype_id

SHAPES = {"vector": (6,), "matrix": (3, 4), "3d": (2, 3, 4)}


def _state(opt):
    sd = opt.state_dict()
    return sd["t"], [{k: v.copy() for k, v in b.items()} for b in sd["blocks"]]


def _assert_same_state(opt, before):
    t, blocks = _state(opt)
    assert t == before[0]
    assert len(blocks) == len(before[1])
    for b0, b1 in zip(before[1], blocks, strict=True):
        assert b0.keys() == b1.keys()
        for key in b0:
            np.testing.assert_array_equal(b0[key], b1[key])


# --- parameters that overlap themselves ---------------------------------------------


def _overlapping(kind, dtype):
    """A writeable view of one small buffer whose strides reach some elements twice."""
    base = np.arange(1.0, 41.0, dtype=dtype)
    it = base.itemsize
    strided = np.lib.stride_tricks.as_strided
    if kind == "vector_zero_stride":
        return strided(base, (6,), (0,), writeable=True)
    if kind == "vector_half_stride":  # steps of half an element
        return strided(base, (6,), (it // 2,), writeable=True)
    if kind == "matrix_diagonal_walk":  # the reviewer's case: strides (8, 8) for float64
        return strided(base, (4, 4), (it, it), writeable=True)
    if kind == "matrix_sliding_window":
        return strided(base, (3, 4), (2 * it, it), writeable=True)
    if kind == "matrix_broadcast_rows":
        return strided(base, (3, 4), (0, it), writeable=True)
    if kind == "matrix_negative":
        return strided(base[::-1], (4, 4), (-it, -2 * it), writeable=True)
    if kind == "3d_two_axes_alike":
        return strided(base, (2, 3, 4), (4 * it, 4 * it, it), writeable=True)
    if kind == "3d_one_long_stride_short":
        return strided(base, (2, 3, 4), (3 * it, 4 * it, it), writeable=True)
    raise AssertionError(kind)


OVERLAPPING = ["vector_zero_stride", "vector_half_stride", "matrix_diagonal_walk",
               "matrix_sliding_window", "matrix_broadcast_rows", "matrix_negative",
               "3d_two_axes_alike", "3d_one_long_stride_short"]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("kind", OVERLAPPING)
@pytest.mark.parametrize("position", ["single", "second_of_two"])
def test_self_overlapping_parameter_is_refused(kind, dtype, position):
    p = _overlapping(kind, dtype)
    base_before = np.array(p.base if p.base is not None else p, copy=True)
    if position == "single":
        opt, params, grads = Adafactor(p.shape), p, np.ones(p.shape)
    else:
        params = [np.ones((2, 2), dtype), p]
        opt, grads = Adafactor([(2, 2), p.shape]), [np.ones((2, 2)), np.ones(p.shape)]
    with pytest.raises(ValueError, match=r"may overlap itself \(strides") as err:
        opt.step(params, grads)
    assert str(p.strides) in str(err.value) and "np.ascontiguousarray" in str(err.value)
    assert opt.t == 0 and opt.dtype is None
    np.testing.assert_array_equal(np.array(p.base if p.base is not None else p), base_before)


def _views(kind, dtype):
    """Non-overlapping views (each element reached once) of any layout."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((6, 8, 10)).astype(dtype)
    return {
        "vector_step": lambda: a[0, 0, ::3],
        "vector_reversed": lambda: a[1, 2, ::-1],
        "matrix_transposed": lambda: a[0].T,
        "matrix_fortran": lambda: np.asfortranarray(a[1]),
        "matrix_strided": lambda: a[2, ::2, 1::3],
        "matrix_reversed": lambda: a[3, ::-1, ::-2],
        "matrix_real_part": lambda: (a[4] + 1j * a[5]).real,
        "3d_transposed": lambda: a.transpose(2, 0, 1)[:4],
        "3d_strided": lambda: a[::2, 1::2, ::-3],
    }[kind]()


VIEWS = ["vector_step", "vector_reversed", "matrix_transposed", "matrix_fortran",
         "matrix_strided", "matrix_reversed", "matrix_real_part", "3d_transposed",
         "3d_strided"]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("kind", VIEWS)
def test_views_of_arrays_of_their_own_step_as_copies(kind, dtype, rng):
    x = _views(kind, dtype)
    assert not may_overlap_itself(x.shape, x.strides, x.itemsize)
    twin = np.ascontiguousarray(x)
    g = rng.standard_normal(x.shape)
    Adafactor(x.shape, beta1=0.9).step(x, g)
    Adafactor(x.shape, beta1=0.9).step(twin, g)
    np.testing.assert_array_equal(x, twin)


@pytest.mark.parametrize("itemsize", [4, 8])
def test_overlap_test_is_sound(itemsize):
    """Whatever the test lets through reaches every element once (random layouts)."""
    rng = np.random.default_rng(3)
    accepted = refused = 0
    for _ in range(3000):
        ndim = int(rng.integers(1, 4))
        shape = tuple(int(d) for d in rng.integers(1, 5, ndim))
        strides = tuple(int(s) * itemsize for s in rng.integers(-12, 13, ndim))
        offsets = [sum(i * s for i, s in zip(idx, strides, strict=True))
                   for idx in itertools.product(*map(range, shape))]
        unique = len(set(offsets)) == len(offsets)
        if may_overlap_itself(shape, strides, itemsize):
            refused += 1
        else:
            accepted += 1
            assert unique, (shape, strides)
    assert accepted > 500 and refused > 500


@pytest.mark.parametrize("shape, strides, expected", [
    ((0, 3), (0, 0), False),          # empty: no element at all
    ((1, 5), (0, 8), False),          # a length-1 axis may have any stride
    ((5,), (0,), True),
    ((5,), (4,), True),               # less than one float64
    ((5,), (-8,), False),
    ((3, 4), (32, 8), False),
    ((3, 4), (24, 8), True),          # rows overlap
    ((3, 4), (8, 24), False),         # column-major
    ((2, 3, 4), (96, 32, 8), False),
    ((2, 3, 4), (32, 32, 8), True),
])
def test_overlap_test_table(shape, strides, expected):
    assert may_overlap_itself(shape, strides, 8) is expected


# --- gradients that share memory with parameters ----------------------------------------


def _aliased(case, dtype, rng):
    """``(shapes, params, grads)`` where gradients are (parts of) the parameters."""
    def r(*s):
        return rng.standard_normal(s).astype(dtype)
    if case == "swapped_matrices":  # the reviewer's case
        A = np.array([[1.0, 2.0], [3.0, 4.0]], dtype)
        B = np.array([[4.0, 1.0], [1.0, 2.0]], dtype)
        return [(2, 2), (2, 2)], [A, B], [B, A]
    if case == "swapped_vectors":
        a, b = r(5), r(5)
        return [(5,), (5,)], [a, b], [b, a]
    if case == "swapped_3d":
        a, b = r(2, 3, 4), r(2, 3, 4)
        return [(2, 3, 4), (2, 3, 4)], [a, b], [b, a]
    if case == "own_parameter":
        a = r(3, 4)
        return [(3, 4)], [a], [a]
    if case == "transposed_view":
        a, b = r(3, 4), r(4, 3)
        return [(3, 4), (4, 3)], [a, b], [b.T, a.T]
    if case == "straddling":  # parameters are parts of one buffer; gradients cross them
        buf = r(24)
        return ([(3, 4), (12,)], [buf[:12].reshape(3, 4), buf[12:]],
                [buf[6:18].reshape(3, 4), buf[:12]])
    if case == "mixed_blocks":
        W, v, T = r(3, 4), r(4), r(2, 3, 4)
        return [(3, 4), (4,), (2, 3, 4)], [W, v, T], [T[1], W[0], np.stack([W, W])]
    raise AssertionError(case)


ALIASED = ["swapped_matrices", "swapped_vectors", "swapped_3d", "own_parameter",
           "transposed_view", "straddling", "mixed_blocks"]


@pytest.mark.parametrize("hyper", [{"lr": 0.5}, {"beta1": 0.9, "weight_decay": 0.1}],
                         ids=["lr", "beta1"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", ALIASED)
def test_gradient_sharing_memory_steps_as_its_copy(case, dtype, hyper, rng):
    shapes, params, grads = _aliased(case, dtype, rng)
    # the same step on separate arrays, with gradients copied before it
    twin_params = [p.copy() for p in params]
    copied = [np.array(g, copy=True) for g in grads]
    opt, twin = Adafactor(shapes, **hyper), Adafactor(shapes, **hyper)
    for _ in range(2):  # the second step also reads the stored state
        copied = [np.array(g, copy=True) for g in grads]
        opt.step(params, grads)
        twin.step(twin_params, copied)
        for p, q in zip(params, twin_params, strict=True):
            np.testing.assert_array_equal(p, q)
    for a, b in zip(opt.state_dict()["blocks"], twin.state_dict()["blocks"], strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_gradient_in_the_other_dtype_aliasing_a_parameter(dtype):
    """A gradient in another dtype is converted (a copy of its own) before any update."""
    a, b = np.arange(1.0, 7.0, dtype=dtype), np.arange(2.0, 8.0, dtype=dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    wide = np.stack([a, b]).astype(other)  # the gradients: views of one other-dtype array
    opt, twin = Adafactor([(6,), (6,)]), Adafactor([(6,), (6,)])
    ta, tb = a.copy(), b.copy()
    with pytest.raises(TypeError, match="share one dtype"):
        opt.step([a, wide[1]], [wide[1], a])  # parameters of two dtypes are refused
    opt.step([a, b], [wide[1], wide[0]])
    twin.step([ta, tb], [wide[1].copy(), wide[0].copy()])
    np.testing.assert_array_equal(a, ta)
    np.testing.assert_array_equal(b, tb)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_as_grad_copies_only_what_shares_memory(shape, dtype):
    from fastfactor._backends import get_backend
    be = get_backend("cpu")
    dtype = np.dtype(dtype)
    p, g = np.ones(shape, dtype), np.ones(shape, dtype)
    assert be.as_grad(g, shape, dtype, [p]) is g  # the common case: no copy
    assert be.as_grad(g, shape, dtype) is g
    got = be.as_grad(p, shape, dtype, [np.ones(3, dtype), p])
    assert got is not p and not np.may_share_memory(got, p)
    np.testing.assert_array_equal(got, p)
    view = p.reshape(-1)[::-1].reshape(shape)
    assert not np.may_share_memory(be.as_grad(view, shape, dtype, [p]), p)


# --- one array where a list of blocks is expected ---------------------------------------


CASES_ONE_ARRAY = {
    "two_vectors": [(2,), (2,)],
    "matrix_and_vector": [(3, 4), (4,)],
    "3d_and_matrix": [(2, 3, 4), (3, 4)],
    "list_of_one": [(3,)],
}


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("which", ["params", "grads", "both"])
@pytest.mark.parametrize("name", list(CASES_ONE_ARRAY))
def test_one_array_for_a_list_of_blocks_is_refused(name, which, dtype):
    shapes = CASES_ONE_ARRAY[name]
    lists = ([np.ones(s, dtype) for s in shapes], [np.ones(s) for s in shapes])
    one = np.ones(shapes[0], dtype)
    params = one if which in ("params", "both") else lists[0]
    grads = np.ones(shapes[0]) if which in ("grads", "both") else lists[1]
    before = one.copy()
    opt = Adafactor(shapes)
    n = len(shapes)
    with pytest.raises(ValueError) as err:
        opt.step(params, grads)
    msg = str(err.value)
    assert f"got one array of shape {shapes[0]}" in msg
    assert f"pass lists of {n} array" in msg and f"shapes={shapes}" in msg
    assert opt.t == 0
    np.testing.assert_array_equal(one, before)
    for p in lists[0]:
        np.testing.assert_array_equal(p, 1.0)


def test_other_iterables_for_a_list_of_blocks_are_refused():
    opt = Adafactor([(2,), (2,)])
    params = [np.ones(2), np.ones(2)]
    with pytest.raises(ValueError, match="got a generator"):
        opt.step(params, (g for g in [np.ones(2), np.ones(2)]))
    opt.step(tuple(params), (np.ones(2), np.ones(2)))  # tuples are lists of blocks
    assert opt.t == 1


@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_single_block_takes_one_array_or_a_list_of_one(shape):
    a, b = np.ones(shape), np.ones(shape)
    Adafactor(shape).step(a, np.full(shape, 0.5))
    Adafactor(shape).step([b], [np.full(shape, 0.5)])
    np.testing.assert_array_equal(a, b)


# --- gradients whose conversion or squares overflow ---------------------------------------


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_float64_gradient_beyond_float32_warns_nothing(shape, sign):
    x = np.ones(shape, np.float32)
    g = np.full(shape, 0.5)
    g.flat[-1] = sign * 1e39
    opt = Adafactor(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only the ValueError reaches the caller
        with pytest.raises(ValueError, match="squares overflow"):
            opt.step(x, g)
    assert opt.t == 0
    np.testing.assert_array_equal(x, 1.0)


@pytest.mark.parametrize("dtype, value", [(np.float32, 1e20), (np.float32, -1e20),
                                          (np.float64, 1e155), (np.float64, -1e160)],
                         ids=["f32", "f32_neg", "f64", "f64_neg"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_finite_gradient_whose_squares_overflow_is_refused(shape, dtype, value):
    opt = Adafactor([shape, (3,)])
    params = [np.ones(shape, dtype), np.ones(3, dtype)]
    opt.step(params, [np.full(shape, 0.1, dtype), np.full(3, 0.1, dtype)])
    before = _state(opt)
    saved = [p.copy() for p in params]
    g = np.full(shape, 0.1, dtype)
    g.flat[0] = value
    assert np.all(np.isfinite(g))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"block 0 .*squares overflow"):
            opt.step(params, [g, np.full(3, 0.1, dtype)])
    _assert_same_state(opt, before)
    for p, q in zip(params, saved, strict=True):
        np.testing.assert_array_equal(p, q)


def test_docs_name_overflowing_squares():
    assert "squares overflow" in Adafactor.step.__doc__
