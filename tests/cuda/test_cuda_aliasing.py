"""``device="cuda"``: device memory the stepper must not trust (parameters that overlap
themselves or each other, gradients sharing memory with parameters), one array for a
list of blocks, host gradients beyond float32, and the state's exact shapes."""

import cudatest

cudatest.require()

import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cudatest import SIMULATOR, assert_agree, host, to_dev  # noqa: E402
from fastfactor import Adafactor  # noqa: E402

pytestmark = pytest.mark.cuda

DTYPES = [np.float64, np.float32]
SHAPES = {"vector": (6,), "matrix": (3, 4), "3d": (2, 3, 4)}


class Strided:
    """A foreign device array (``__cuda_array_interface__`` only) of any shape and strides
    over the memory of device array ``dev``, from element ``offset``."""

    def __init__(self, dev, shape, strides, offset=0):
        self.dev, self.shape, self.strides = dev, tuple(shape), tuple(strides)
        self.offset = offset * dev.dtype.itemsize

    @property
    def __cuda_array_interface__(self):
        if SIMULATOR:
            ai = self.dev._ary.__array_interface__
            ptr, typestr = ai["data"][0], ai["typestr"]
        else:
            desc = self.dev.__cuda_array_interface__
            ptr, typestr = desc["data"][0], desc["typestr"]
        return {"shape": self.shape, "typestr": typestr, "strides": self.strides,
                "data": (ptr + self.offset, False), "version": 3}


def _buffer(dtype, n=48):
    return to_dev(np.arange(1.0, n + 1.0).astype(dtype))


# --- parameters that overlap themselves -------------------------------------------------

OVERLAPPING = {
    "vector_zero_stride": ((6,), (0,)),
    "vector_half_stride": ((6,), (0.5,)),
    "matrix_diagonal_walk": ((4, 4), (1, 1)),
    "matrix_sliding_window": ((3, 4), (2, 1)),
    "3d_two_axes_alike": ((2, 3, 4), (4, 4, 1)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("kind", list(OVERLAPPING))
def test_self_overlapping_parameter_is_refused(kind, dtype):
    shape, steps = OVERLAPPING[kind]
    buf = _buffer(dtype)
    it = np.dtype(dtype).itemsize
    p = Strided(buf, shape, [int(s * it) for s in steps])
    before = host(buf)
    opt = Adafactor([(2,), shape], device="cuda")
    with pytest.raises(ValueError, match=r"may overlap itself \(strides"):
        opt.step([to_dev(np.ones(2, dtype)), p], [np.ones(2), np.ones(shape)])
    assert opt.t == 0 and opt.dtype is None
    np.testing.assert_array_equal(host(buf), before)


# --- parameters sharing memory with each other ------------------------------------------


def _pair(kind, dtype):
    """Two parameter views of one device buffer: ``(params, shapes, shares)``."""
    buf = _buffer(dtype)
    if kind == "overlapping_slices":
        return [buf[:12].reshape(3, 4), buf[8:14]], [(3, 4), (6,)], True
    if kind == "same_array_twice":
        return [buf[:6], buf[:6]], [(6,), (6,)], True
    if kind == "foreign_overlap":
        it = np.dtype(dtype).itemsize
        return ([Strided(buf, (2, 3, 4), (12 * it, 4 * it, it)),
                 Strided(buf, (4,), (it,), offset=20)], [(2, 3, 4), (4,)], True)
    if kind == "interleaved":  # one range, no element in common
        return [buf[0:24:2], buf[1:25:2]], [(12,), (12,)], False
    if kind == "adjacent":
        return [buf[:12].reshape(3, 4), buf[12:18]], [(3, 4), (6,)], False
    raise AssertionError(kind)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("kind", ["overlapping_slices", "same_array_twice", "foreign_overlap",
                                  "interleaved", "adjacent"])
def test_parameters_sharing_device_memory_are_refused(kind, dtype):
    params, shapes, shares = _pair(kind, dtype)
    hosts = [host(p) if not isinstance(p, Strided) else None for p in params]
    opt = Adafactor(shapes, device="cuda")
    cpu = Adafactor(shapes)
    grads = [np.full(s, 0.5) for s in shapes]
    if shares:
        with pytest.raises(ValueError, match="blocks 0 and 1 share memory"):
            opt.step(params, grads)
        assert opt.t == 0
        return
    opt.step(params, grads)
    cpu.step(hosts, grads)
    for p, h in zip(params, hosts, strict=True):
        assert_agree(host(p), h, dtype)


# --- gradients sharing memory with parameters ---------------------------------------------


def _foreign(d):
    return Strided(d, d.shape, d.strides)


#: ``(shapes, block i's gradient is parameter order[i], wrap each device gradient)``
ALIASED = {
    "swapped_matrices": ([(2, 2), (2, 2)], [1, 0], None),
    "swapped_vectors": ([(6,), (6,)], [1, 0], None),
    "swapped_3d": ([(2, 3, 4), (2, 3, 4)], [1, 0], None),
    "own_parameter": ([(3, 4)], [0], None),
    "one_for_both": ([(3, 4), (3, 4)], [0, 0], None),
    "foreign_views": ([(3, 4), (4,), (4,)], [0, 2, 1], None),
    "foreign_swapped": ([(2, 3, 4), (2, 3, 4)], [1, 0], _foreign),
}


# each dtype with one setting, to keep the simulator quick
@pytest.mark.parametrize("dtype, hyper", [(np.float64, {"lr": 0.5}), (np.float32, {"beta1": 0.9})],
                         ids=["f64-lr", "f32-beta1"])
@pytest.mark.parametrize("case", list(ALIASED))
def test_device_gradient_sharing_memory_steps_as_its_copy(case, dtype, hyper, rng):
    shapes, order, wrap = ALIASED[case]
    if case == "swapped_matrices":  # the reviewed example
        params = [np.array([[1.0, 2.0], [3.0, 4.0]], dtype),
                  np.array([[4.0, 1.0], [1.0, 2.0]], dtype)]
    else:
        params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    devs = [to_dev(p) for p in params]
    twins = [to_dev(p) for p in params]
    cpu = [p.copy() for p in params]
    opt = Adafactor(shapes, device="cuda", **hyper)
    twin = Adafactor(shapes, device="cuda", **hyper)
    ref = Adafactor(shapes, **hyper)
    for _ in range(2):
        grads = [devs[j] if wrap is None else wrap(devs[j]) for j in order]
        copies = [to_dev(host(twins[j])) for j in order]
        host_grads = [cpu[j].copy() for j in order]
        opt.step(devs, grads)
        twin.step(twins, copies)
        ref.step(cpu, host_grads)
        for d, t, c in zip(devs, twins, cpu, strict=True):
            np.testing.assert_array_equal(host(d), host(t))  # the same kernels: bit for bit
            assert_agree(host(d), c, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_as_grad_copies_only_what_shares_memory(shape, dtype):
    import fastfactor._backends.cuda as fc
    be = fc.BACKEND
    dtype = np.dtype(dtype)
    p = be.as_param(to_dev(np.ones(shape, dtype)), shape)
    g = to_dev(np.ones(shape, dtype))
    assert be.as_grad(g, shape, dtype, [p]) is g
    got = be.as_grad(p, shape, dtype, [p])
    assert got is not p
    np.testing.assert_array_equal(host(got), host(p))


# --- one array for a list of blocks -------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("shapes", [[(2,), (2,)], [(3, 4), (4,)], [(2, 3, 4), (3, 4)]],
                         ids=["vectors", "matrix_vector", "3d_matrix"])
def test_one_device_array_for_a_list_of_blocks_is_refused(shapes, dtype):
    p = to_dev(np.ones(shapes[0], dtype))
    opt = Adafactor(shapes, device="cuda")
    with pytest.raises(ValueError, match=rf"got one array of shape \({shapes[0][0]},"):
        opt.step(p, np.ones(shapes[0]))
    assert opt.t == 0
    np.testing.assert_array_equal(host(p), 1.0)


# --- host gradients beyond float32 --------------------------------------------------------


@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_host_gradient_beyond_float32_warns_nothing(shape):
    """It becomes inf on the device, which propagates (a device step never waits).

    (The simulator's kernels, NumPy scalars, may warn of the inf: only the conversion's
    own warning is checked for.)
    """
    import fastfactor._backends.cuda as fc
    g = np.full(shape, 0.5)
    g.flat[-1] = -1e39
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = fc.BACKEND.as_grad(g, shape, np.dtype(np.float32))
    assert np.isneginf(host(d).flat[-1])
    opt = Adafactor(shape, device="cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt.step(to_dev(np.ones(shape, np.float32)), g)
    assert not [w for w in caught if "cast" in str(w.message)]
    assert opt.t == 1


# --- the state's exact shapes and one dtype -----------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("how", ["transposed_m", "row_with_unit_axis", "mixed_dtype"])
def test_state_checks_on_the_device(how, dtype):
    shapes = [(3, 4), (4,)]
    opt = Adafactor(shapes, device="cuda", beta1=0.9)
    opt.step([to_dev(np.ones(s, dtype)) for s in shapes], [np.full(s, 0.5) for s in shapes])
    state = opt.state_dict()
    blocks = [dict(b) for b in state["blocks"]]
    if how == "transposed_m":
        blocks[0]["m"] = blocks[0]["m"].T.copy()
        fragment = "'m' of block 0 (shape (3, 4)) has shape (4, 3)"
    elif how == "row_with_unit_axis":
        blocks[0]["row"] = blocks[0]["row"].reshape(1, 3)
        fragment = "'row' of block 0 (shape (3, 4)) has shape (1, 3), expected (3,)"
    else:
        other = np.float32 if dtype == np.float64 else np.float64
        blocks[1]["v"] = blocks[1]["v"].astype(other)
        fragment = "'v' of block 1"
    before = opt.state_dict()
    with pytest.raises(ValueError) as err:
        opt.load_state_dict(dict(state, blocks=blocks))
    assert fragment in str(err.value)
    after = opt.state_dict()
    assert after["t"] == before["t"] == 1
    for b0, b1 in zip(before["blocks"], after["blocks"], strict=True):
        for key in b0:
            np.testing.assert_array_equal(b0[key], b1[key])
