"""save_state / load_state: a checkpoint without pickle, resumed bit-identically."""

import io

import numpy as np
import pytest

from fastfactor import Adafactor
from helpers import DTYPES, dtype_id, gradient_stream

SHAPES = [(4, 3), (5,), (2, 3, 4)]


@pytest.mark.parametrize("beta1", [None, 0.9])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_resume_from_npz_is_bit_identical(dtype, beta1, rng, tmp_path):
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    stream = gradient_stream(rng, SHAPES, dtype, 5)
    opt = Adafactor(SHAPES, beta1=beta1)
    for g in stream[:2]:
        opt.step(params, g)
    path = tmp_path / "state.npz"
    opt.save_state(path)
    resumed = Adafactor(SHAPES, beta1=beta1)
    resumed.load_state(path)
    assert resumed.t == 2 and resumed.dtype == dtype
    twin = [p.copy() for p in params]
    for g in stream[2:]:
        opt.step(params, g)
        resumed.step(twin, g)
    for a, b in zip(params, twin, strict=True):
        np.testing.assert_array_equal(a, b)


def test_fresh_optimizer_round_trips():
    buf = io.BytesIO()
    Adafactor((3, 2)).save_state(buf)
    buf.seek(0)
    opt = Adafactor((3, 2))
    opt.load_state(buf)
    assert opt.t == 0 and opt.dtype is None


def test_pickled_object_arrays_are_refused(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, t=np.int64(1), shapes=np.array('[[3]]'),
             block0_v=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        Adafactor(3).load_state(path)


def test_not_a_state_and_wrong_shapes(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.ones(3))
    with pytest.raises(ValueError, match="not a fastfactor state"):
        Adafactor(3).load_state(path)
    opt = Adafactor((3, 2))
    opt.step(np.ones((3, 2)), np.ones((3, 2)))
    opt.save_state(tmp_path / "s.npz")
    with pytest.raises(ValueError, match="shapes"):
        Adafactor((2, 3)).load_state(tmp_path / "s.npz")
