"""The stepper deep-copies and pickles: the copy continues exactly as the original."""

import copy
import pickle

import numpy as np
import pytest

from fastfactor import Adafactor
from helpers import DTYPES, dtype_id, gradient_stream

SHAPES = [(4, 3), (5,), (2, 3, 4)]


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_copy_continues_like_the_original(how, dtype, rng):
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    stream = gradient_stream(rng, SHAPES, dtype, 4)
    opt = Adafactor(SHAPES, beta1=0.9)
    opt.step(params, stream[0])
    twin = copy.deepcopy(opt) if how == "deepcopy" else pickle.loads(pickle.dumps(opt))
    assert twin.backend is opt.backend and twin.t == opt.t == 1
    twin_params = [p.copy() for p in params]
    for grads in stream[1:]:
        opt.step(params, grads)
        twin.step(twin_params, grads)
    for a, b in zip(params, twin_params, strict=True):
        np.testing.assert_array_equal(a, b)
    # the copy's state is its own: stepping one leaves the other's state unchanged
    before = opt.state_dict()
    twin.step(twin_params, stream[0])
    after = opt.state_dict()
    for blk0, blk1 in zip(before["blocks"], after["blocks"], strict=True):
        for key in blk0:
            np.testing.assert_array_equal(blk0[key], blk1[key])


@pytest.mark.parametrize("shapes, want", [
    (np.array([5, 3]), [(5, 3)]),          # an array of ints is one shape, as in NumPy
    (np.array(4), [(4,)]),
    ([np.array([2, 3]), (4,)], [(2, 3), (4,)]),
    ([5, 3], [(5, 3)]),
])
def test_shapes_given_as_arrays(shapes, want):
    assert Adafactor(shapes).shapes == want
