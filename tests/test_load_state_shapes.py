"""load_state_dict / load_state take only a state this optimizer could have saved: the
exact array shapes, one dtype, its factoring and first moment, a sane ``t``; anything
else is refused by name, and the optimizer is left as it was."""

import io

import numpy as np
import pytest

from fastfactor import Adafactor
from helpers import DTYPES, dtype_id

SHAPES = {"vector": (5,), "matrix": (3, 4), "3d": (2, 3, 4)}
MAX_T = 2**63 - 1


def _stepped(shape, dtype, **hyper):
    """An optimizer of blocks ``[shape, (4,)]`` after one step in ``dtype``."""
    opt = Adafactor([shape, (4,)], **hyper)
    opt.step([np.ones(shape, dtype), np.ones(4, dtype)],
             [np.full(shape, 0.5, dtype), np.full(4, 0.25, dtype)])
    return opt


def _snapshot(opt):
    sd = opt.state_dict()
    return sd["t"], opt.dtype, [{k: v.copy() for k, v in b.items()} for b in sd["blocks"]]


def _assert_unchanged(opt, before):
    t, dtype, blocks = _snapshot(opt)
    assert (t, dtype) == before[:2]
    assert [sorted(b) for b in blocks] == [sorted(b) for b in before[2]]
    for b0, b1 in zip(before[2], blocks, strict=True):
        for key in b0:
            np.testing.assert_array_equal(b0[key], b1[key])


def _refused(opt, state, error, *fragments):
    before = _snapshot(opt)
    with pytest.raises(error) as err:
        opt.load_state_dict(state)
    for fragment in fragments:
        assert fragment in str(err.value), (fragment, str(err.value))
    _assert_unchanged(opt, before)
    return str(err.value)


def _with(state, block, key, value):
    blocks = [dict(b) for b in state["blocks"]]
    blocks[block][key] = value
    return dict(state, blocks=blocks)


# --- exact shapes --------------------------------------------------------------------

RESHAPES = {
    "transposed": lambda a: a.T if a.ndim >= 2 and a.shape != a.shape[::-1] else None,
    "leading_unit_axis": lambda a: a.reshape((1,) + a.shape),
    "trailing_unit_axis": lambda a: a.reshape(a.shape + (1,)),
    "flattened": lambda a: a.reshape(-1) if a.ndim >= 2 else None,
    "reversed_axes": lambda a: a.reshape(a.shape[::-1]) if a.shape != a.shape[::-1] else None,
}


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("beta1", [None, 0.9], ids=["no_m", "m"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("how", list(RESHAPES))
def test_every_array_needs_its_exact_shape(how, shape, beta1, dtype):
    source = _stepped(shape, dtype, beta1=beta1)
    state = source.state_dict()
    target = _stepped(shape, dtype, beta1=beta1)
    tried = 0
    for i, block in enumerate(state["blocks"]):
        for key, arr in block.items():
            bad = RESHAPES[how](arr)
            if bad is None or bad.shape == arr.shape:
                continue
            tried += 1
            _refused(target, _with(state, i, key, bad), ValueError, f"block {i}",
                     repr(key), f"shape {bad.shape}", f"expected {arr.shape}")
    if how in ("leading_unit_axis", "trailing_unit_axis"):
        assert tried >= 2
    target.load_state_dict(state)  # the untouched state still loads
    assert target.t == 1


def test_reviewed_cases():
    opt = _stepped((3, 4), np.float64, beta1=0.9)
    state = opt.state_dict()
    m = state["blocks"][0]["m"]
    _refused(opt, _with(state, 0, "m", m.T.copy()), ValueError,
             "'m' of block 0", "(4, 3)", "expected (3, 4)")
    row = state["blocks"][0]["row"]
    _refused(opt, _with(state, 0, "row", row.reshape(1, 3)), ValueError,
             "'row' of block 0", "(1, 3)", "expected (3,)")


# --- one dtype ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("where", ["first_block_last_key", "second_block", "first_array"])
def test_mixed_dtypes_are_refused(where, shape, dtype):
    other = np.float32 if dtype == np.float64 else np.float64
    state = _stepped(shape, dtype, beta1=0.9).state_dict()
    i, key = {"first_block_last_key": (0, "m"), "second_block": (1, "v"),
              "first_array": (0, next(iter(state["blocks"][0])))}[where]
    bad = _with(state, i, key, state["blocks"][i][key].astype(other))
    target = _stepped(shape, dtype, beta1=0.9)
    msg = _refused(target, bad, ValueError, "one dtype", np.dtype(other).name,
                   np.dtype(dtype).name)
    assert f"block {i}" in msg
    assert repr(key) in msg or where == "first_array"


@pytest.mark.parametrize("bad_dtype", [np.float16, np.int64, np.complex128, bool])
def test_non_float_state_arrays_are_refused(bad_dtype):
    state = _stepped((3, 4), np.float64).state_dict()
    target = _stepped((3, 4), np.float64)
    blocks = [{k: v.astype(bad_dtype) for k, v in b.items()} for b in state["blocks"]]
    _refused(target, dict(state, blocks=blocks), TypeError, "float32 or float64")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_state_of_the_other_dtype_loads_whole(dtype):
    """One dtype throughout, whichever: the state is taken in its own dtype."""
    other = np.float32 if dtype == np.float64 else np.float64
    source = _stepped((3, 4), other, beta1=0.9)
    target = _stepped((3, 4), dtype, beta1=0.9)
    target.load_state_dict(source.state_dict())
    assert target.dtype == np.dtype(other)


# --- factoring, first moment, structure ----------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("saved, loading", [
    (dict(beta1=0.9), dict(beta1=0.9, min_dim_size_to_factor=5)),
    (dict(beta1=0.9, min_dim_size_to_factor=5), dict(beta1=0.9)),
    (dict(), dict(min_dim_size_to_factor=5)),
], ids=["factored_into_unfactored", "unfactored_into_factored", "without_m"])
def test_state_of_another_factoring_is_refused(saved, loading, dtype):
    state = _stepped((3, 4), dtype, **saved).state_dict()
    target = _stepped((3, 4), dtype, **loading)
    _refused(target, state, ValueError, "block 0", "min_dim_size_to_factor")


@pytest.mark.parametrize("saved, loading", [(dict(beta1=0.9), dict()),
                                            (dict(), dict(beta1=0.9))],
                         ids=["m_without_beta1", "beta1_without_m"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_first_moment_must_match_beta1(shape, saved, loading):
    state = _stepped(shape, np.float64, **saved).state_dict()
    target = _stepped(shape, np.float64, **loading)
    _refused(target, state, ValueError, "block 0", "'m'", "beta1")


def test_unknown_key_is_refused():
    state = _stepped((3, 4), np.float64).state_dict()
    bad = _with(state, 1, "extra", np.zeros(4))
    _refused(_stepped((3, 4), np.float64), bad, ValueError, "block 1", "'extra'")


@pytest.mark.parametrize("how, error, fragment", [
    ("block_is_int", TypeError, "state['blocks'][0]"),
    ("block_is_array", TypeError, "state['blocks'][1]"),
    ("blocks_is_int", TypeError, "state['blocks']"),
    ("blocks_is_dict", TypeError, "state['blocks']"),
    ("state_is_list", TypeError, "dict from state_dict"),
    ("shapes_is_int", TypeError, "state['shapes']"),
    ("too_few_blocks", ValueError, "1 blocks"),
])
def test_malformed_state_is_named(how, error, fragment):
    state = _stepped((3, 4), np.float64).state_dict()
    blocks = list(state["blocks"])
    if how == "block_is_int":
        blocks[0] = 5
        state = dict(state, blocks=blocks)
    elif how == "block_is_array":
        blocks[1] = np.zeros(4)
        state = dict(state, blocks=blocks)
    elif how == "blocks_is_int":
        state = dict(state, blocks=5)
    elif how == "blocks_is_dict":
        state = dict(state, blocks=dict(enumerate(blocks)))
    elif how == "state_is_list":
        state = list(state.items())
    elif how == "shapes_is_int":
        state = dict(state, shapes=5)
    else:
        state = dict(state, blocks=blocks[:1])
    _refused(_stepped((3, 4), np.float64), state, error, fragment)


# --- t -------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [MAX_T + 1, 2**64, np.uint64(2**63), -1, 2.0, True],
                         ids=["beyond_int64", "2_64", "uint64", "negative", "float", "bool"])
def test_t_out_of_range_is_refused(t):
    state = dict(_stepped((3, 4), np.float64).state_dict(), t=t)
    _refused(_stepped((3, 4), np.float64), state, ValueError, "state['t']")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_largest_t_steps_and_saves_then_stops(dtype):
    opt = _stepped((3, 4), dtype)
    state = dict(opt.state_dict(), t=MAX_T - 1)
    opt.load_state_dict(state)
    params = [np.ones((3, 4), dtype), np.ones(4, dtype)]
    grads = [np.full((3, 4), 0.5, dtype), np.full(4, 0.5, dtype)]
    opt.step(params, grads)
    assert opt.t == MAX_T
    buf = io.BytesIO()
    opt.save_state(buf)  # t still fits the checkpoint's int64
    buf.seek(0)
    again = _stepped((3, 4), dtype)
    again.load_state(buf)
    assert again.t == MAX_T
    for stepper in (opt, again):  # a state at the bound loads, but takes no step
        before = _snapshot(stepper)
        saved = [p.copy() for p in params]
        with pytest.raises(ValueError, match=r"t = 9223372036854775807 steps is the most"):
            stepper.step(params, grads)
        _assert_unchanged(stepper, before)
        for p, q in zip(params, saved, strict=True):
            np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("fill", [0.0, 1.0, np.nan], ids=["zeros", "ones", "nan"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_t_zero_with_arrays_is_refused(shape, fill):
    state = _stepped(shape, np.float64, beta1=0.9).state_dict()
    blocks = [{k: np.full_like(v, fill) for k, v in b.items()} for b in state["blocks"]]
    bad = dict(state, t=0, blocks=blocks)
    _refused(_stepped(shape, np.float64, beta1=0.9), bad, ValueError, "state['t'] is 0",
             "blocks=[]")


def test_t_zero_without_arrays_resets():
    opt = _stepped((3, 4), np.float64)
    opt.load_state_dict(dict(opt.state_dict(), t=0, blocks=[]))
    assert opt.t == 0 and opt.dtype is None and opt.state_dict()["blocks"] == []


# --- the same checks through load_state (.npz) ------------------------------------------


@pytest.mark.parametrize("how", ["transposed_m", "mixed_dtype", "t_zero", "other_factoring"])
def test_checkpoint_files_are_checked_alike(how, tmp_path):
    opt = _stepped((3, 4), np.float64, beta1=0.9)
    path = tmp_path / "s.npz"
    opt.save_state(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    loading = dict(beta1=0.9)
    if how == "transposed_m":
        arrays["block0_m"] = arrays["block0_m"].T.copy()
    elif how == "mixed_dtype":
        arrays["block1_v"] = arrays["block1_v"].astype(np.float32)
    elif how == "t_zero":
        arrays["t"] = np.int64(0)
    else:
        loading["min_dim_size_to_factor"] = 5
    np.savez(path, **arrays)
    target = _stepped((3, 4), np.float64, **loading)
    before = _snapshot(target)
    with pytest.raises(ValueError):
        target.load_state(path)
    _assert_unchanged(target, before)
