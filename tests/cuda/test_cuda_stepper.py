"""``Adafactor(..., device="cuda")`` against the CPU stepper and the NumPy reference."""

import cudatest

cudatest.require()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from numba import cuda  # noqa: E402

import fastfactor._backends.cuda as fc  # noqa: E402
from cudatest import (  # noqa: E402
    Foreign,
    assert_agree,
    gradients,
    host,
    many_blocks,  # noqa: F401 -- a pytest fixture: imported so that pytest finds it here
    size,
    to_dev,
)
from fastfactor import Adafactor  # noqa: E402
from reference import C1, G1, R1, X0, X1, ReferenceAdafactor  # noqa: E402

pytestmark = pytest.mark.cuda

DTYPES = [np.float64, np.float32]


def run_three(shapes, dtype, hyper, rng, n_steps=2, prepare=None):
    """Step the CUDA stepper, the CPU stepper and the reference on the same gradients.

    ``prepare(host_array) -> (device_param, read_back)`` makes the device parameter
    (default: a contiguous copy); checks x after every step and the state at the end.
    """
    params = [np.asarray(rng.standard_normal(s), dtype=dtype) for s in shapes]
    cpu_params = [p.copy() for p in params]
    ref_params = [p.copy() for p in params]
    prepare = prepare or (lambda a: (lambda d: (d, lambda: host(d)))(to_dev(a)))
    made = [prepare(p) for p in params]
    dev = [d for d, _ in made]
    opt = Adafactor(list(shapes), device="cuda", **hyper)
    cpu = Adafactor(list(shapes), **hyper)
    ref = ReferenceAdafactor(shapes, **hyper)
    for k, grads in enumerate(gradients(rng, shapes, dtype, n_steps)):
        ret = opt.step(dev, grads)
        assert ret is dev or all(a is b for a, b in zip(ret, dev, strict=True))
        cpu.step(cpu_params, grads)
        ref_params = ref.step(ref_params, grads)
        for i, (_, read) in enumerate(made):
            got = read()
            assert got.dtype == np.dtype(dtype)
            msg = f"step {k + 1}, block {i} {shapes[i]} {hyper}"
            assert_agree(got, cpu_params[i], dtype, "vs CPU: " + msg)
            assert_agree(got, ref_params[i], dtype, "vs reference: " + msg)
    sd, cd = opt.state_dict(), cpu.state_dict()
    assert sd["t"] == cd["t"] == n_steps
    for i, (a, b) in enumerate(zip(sd["blocks"], cd["blocks"], strict=True)):
        assert sorted(a) == sorted(b)
        for key in a:
            assert isinstance(a[key], np.ndarray) and a[key].shape == b[key].shape
            assert_agree(a[key], b[key], dtype, f"state {key} of block {i}")
    return opt, cpu


# --- the worked example -----------------------------------------------------------


def test_worked_example():
    opt = Adafactor((3, 3), device="cuda")
    x = to_dev(X0)
    assert opt.step(x, G1) is x
    np.testing.assert_allclose(x.copy_to_host(), X1, atol=1e-6)
    (block,) = opt.state_dict()["blocks"]
    np.testing.assert_allclose(block["row"], R1, atol=1e-6)
    np.testing.assert_allclose(block["col"], C1, atol=1e-6)


# --- shapes and dtypes --------------------------------------------------------------

SHAPES = {
    "matrix": [size((5, 7), (257, 1031))],
    "batch3d": [size((2, 3, 4), (3, 130, 300))],
    "vector": [size((7,), (100003,))],
    "batch4d_and_vector": [size((2, 1, 3, 5), (2, 3, 64, 96)), size((3,), (1000,))],
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("case", list(SHAPES))
def test_shapes_against_cpu_and_reference(case, dtype, rng):
    run_three(SHAPES[case], dtype, {}, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_grids_of_many_blocks(dtype, rng, many_blocks):  # noqa: F811 -- the fixture imported above
    """Several column tiles, row strips and partial-sum blocks in every kernel."""
    assert many_blocks.BLOCKS_TARGET == 8
    nb, n, m = shape = size((2, 20, 70), (1, 300, 7000))
    spans, strips, *_ = many_blocks._factored_plan(nb, n, m)
    tiles = -(-m // (many_blocks.LANES * many_blocks.J))
    assert tiles > spans > 1 and strips > 1  # blocks loop over tiles; rows are split
    run_three([shape, size((150,), (30011,))], dtype, {"beta1": 0.5}, rng, n_steps=1)


def test_warp_sized_blocks(rng, monkeypatch):
    """The GPU's 32-lane warps (with fewer warps per block, to keep the simulator quick)."""
    monkeypatch.setattr(fc._launch, "LANES", 32)
    monkeypatch.setattr(fc._launch, "WARPS", 2)
    run_three([size((9, 70), (300, 1000)), (40,)], np.float32, {}, rng, n_steps=1)


# --- every hyper-parameter ------------------------------------------------------------

HYPER = {
    "fixed_lr": dict(lr=0.05),
    "callable_lr": dict(lr=lambda t: 0.1 / t),
    "warmup_init": dict(warmup_init=True),
    "eps1": dict(eps1=1e-3),
    "eps2": dict(eps2=10.0),
    "clip_threshold": dict(clip_threshold=0.5),
    "decay_rate": dict(decay_rate=-0.5),
    "beta1": dict(beta1=0.9),
    "weight_decay": dict(weight_decay=0.3, lr=0.01),
    "no_scale_parameter": dict(scale_parameter=False, lr=0.02),
    "min_dim_size_to_factor": dict(min_dim_size_to_factor=6),
    "all_at_once": dict(lr=lambda t: 0.03, eps1=1e-20, eps2=1e-2, clip_threshold=2.0,
                        decay_rate=-0.6, beta1=0.3, weight_decay=0.1),
}


@pytest.mark.parametrize("name", list(HYPER))
def test_hyper_parameters(name, rng):
    # The dtype alternates between cases, so each dtype meets most settings.
    dtype = np.float64 if list(HYPER).index(name) % 2 == 0 else np.float32
    run_three([size((5, 7), (200, 300)), size((6,), (5000,))], dtype, HYPER[name], rng)


def test_min_dim_size_to_factor_keeps_a_full_second_moment():
    opt = Adafactor([(5, 7)], device="cuda", min_dim_size_to_factor=6)
    opt.step([to_dev(np.ones((5, 7)))], [np.ones((5, 7))])
    (block,) = opt.state_dict()["blocks"]
    assert set(block) == {"v"} and block["v"].shape == (5, 7)


def test_several_blocks_are_independent():
    v = np.array([100.0, -200.0, 300.0])
    gv = np.array([1e-3, 5.0, -2.0])
    params = [to_dev(X0), to_dev(v), to_dev(10.0 * X0)]
    Adafactor([(3, 3), (3,), (3, 3)], device="cuda").step(params, [G1, gv, G1])
    np.testing.assert_allclose(host(params[0]), X1, atol=1e-6)
    np.testing.assert_allclose(host(params[2]), 10.0 * X1, atol=1e-5)
    alpha_v = 0.01 * np.sqrt(np.mean(v**2))
    np.testing.assert_allclose(host(params[1]), v - alpha_v * np.sign(gv), rtol=1e-12)


def test_empty_block_is_skipped(rng):
    x = to_dev(np.ones(4))
    empty = cuda.device_array((0, 3))
    Adafactor([(0, 3), (4,)], device="cuda", lr=0.1, scale_parameter=False).step(
        [empty, x], [np.zeros((0, 3)), np.ones(4)])
    np.testing.assert_allclose(host(x), 0.9)


# --- memory layouts and foreign arrays -------------------------------------------------


def _transposed(a):
    """A device array equal to ``a`` whose memory is in Fortran order (a transposed view)."""
    d = to_dev(np.ascontiguousarray(a.T))
    return d.T, (lambda: host(d).T)


def _column_slice(a):
    n, m = a.shape
    wide = np.zeros((n, m + 3), a.dtype)
    wide[:, 1:m + 1] = a
    d = to_dev(wide)
    return d[:, 1:m + 1], (lambda: host(d)[:, 1:m + 1])


def _strided_rows(a):
    b, n, m = a.shape
    tall = np.zeros((b, 2 * n, m), a.dtype)
    tall[:, ::2] = a
    d = to_dev(tall)
    return d[:, ::2], (lambda: host(d)[:, ::2])


def _strided_vector(a):
    long = np.zeros(2 * a.size, a.dtype)
    long[::2] = a
    d = to_dev(long)
    return d[::2], (lambda: host(d)[::2])


def _foreign(a):
    d = to_dev(a)
    return Foreign(d), (lambda: host(d))


def _foreign_transposed(a):
    d = to_dev(np.ascontiguousarray(a.T))
    return Foreign(d.T), (lambda: host(d).T)


LAYOUTS = {
    "transposed": ((5, 7), _transposed, {}),
    "column_slice": ((5, 7), _column_slice, {"beta1": 0.5}),
    "strided_rows_3d": ((2, 3, 4), _strided_rows, {}),
    "strided_vector": ((6,), _strided_vector, {}),
    "transposed_unfactored": ((5, 7), _transposed, {"min_dim_size_to_factor": 6}),
    "foreign": ((5, 7), _foreign, {}),
    "foreign_transposed": ((4, 6), _foreign_transposed, {"beta1": 0.2}),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_layouts_in_place(name, rng):
    """Non-contiguous and foreign (__cuda_array_interface__) parameters, updated in place.

    ``transposed_unfactored`` cannot be flattened without a copy: the step works on a
    contiguous copy and writes it back.
    """
    shape, prepare, hyper = LAYOUTS[name]
    dtype = np.float32 if "foreign" in name else np.float64
    run_three([shape], dtype, hyper, rng, prepare=prepare)


def test_gradients_of_any_layout_kind_and_dtype(rng):
    """Device gradients (transposed, float64 for float32 parameters, foreign, integer)
    and host gradients (non-contiguous) give the CPU's result."""
    shapes = [(5, 7), (4, 6), (3, 5), (8,)]
    params = [np.asarray(rng.standard_normal(s), dtype=np.float32) for s in shapes]
    cpu_params = [p.copy() for p in params]
    dev = [to_dev(p) for p in params]
    g = [rng.standard_normal(s) for s in shapes]
    g[3] = np.arange(-4, 4)
    device_grads = [to_dev(np.ascontiguousarray(g[0].T)).T,      # transposed, float64
                    Foreign(to_dev(g[1].astype(np.float32))),    # foreign
                    np.asfortranarray(g[2]),                     # host, Fortran order
                    to_dev(g[3])]                                 # device, int64
    opt = Adafactor(shapes, device="cuda")
    opt.step(dev, device_grads)
    Adafactor(shapes).step(cpu_params, [np.asarray(a, np.float32) for a in g])
    for d, c in zip(dev, cpu_params, strict=True):
        assert_agree(host(d), c, np.float32)


# --- state ---------------------------------------------------------------------------


def test_state_dict_round_trip_between_devices(rng):
    shapes = [(4, 6), (2, 3, 5), (5,)]
    hyper = dict(beta1=0.8, weight_decay=0.05)
    opt, cpu = run_three(shapes, np.float64, hyper, rng, n_steps=2)
    state = opt.state_dict()
    # The GPU's state continues on the CPU and the CPU's on the GPU, in step.
    xs = [np.asarray(rng.standard_normal(s)) for s in shapes]
    on_cpu = Adafactor(shapes, **hyper)
    on_cpu.load_state_dict(state)
    on_gpu = Adafactor(shapes, device="cuda", **hyper)
    on_gpu.load_state_dict(cpu.state_dict())
    host_xs = [x.copy() for x in xs]
    dev_xs = [to_dev(x) for x in xs]
    for grads in gradients(rng, shapes, np.float64, 2):
        on_cpu.step(host_xs, grads)
        on_gpu.step(dev_xs, grads)
    for d, h in zip(dev_xs, host_xs, strict=True):
        assert_agree(host(d), h, np.float64)
    assert on_gpu.t == on_cpu.t == 4


def test_state_dict_float32_and_before_first_step():
    opt = Adafactor([(3, 4), (2,)], device="cuda")
    empty = opt.state_dict()
    assert empty["t"] == 0 and empty["blocks"] == []
    opt.load_state_dict(empty)
    opt.step([to_dev(np.ones((3, 4), np.float32)), to_dev(np.ones(2, np.float32))],
             [np.ones((3, 4)), np.ones(2)])
    blocks = opt.state_dict()["blocks"]
    assert blocks[0]["row"].dtype == np.float32 and blocks[1]["v"].dtype == np.float32


# --- checks -----------------------------------------------------------------------------


def test_rejects_what_it_cannot_update():
    opt = Adafactor((2, 3), device="cuda")
    with pytest.raises(TypeError, match="device arrays"):
        opt.step(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="shape"):
        opt.step(to_dev(np.ones((3, 2))), np.ones((2, 3)))
    with pytest.raises(ValueError, match="shape"):
        opt.step(to_dev(np.ones((2, 3))), np.ones((3, 2)))
    with pytest.raises(TypeError, match="float32 or float64"):
        opt.step(to_dev(np.ones((2, 3), np.int64)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="read-only"):
        opt.step(Foreign(to_dev(np.ones((2, 3))), readonly=True), np.ones((2, 3)))
    with pytest.raises(TypeError, match="real"):
        opt.step(to_dev(np.ones((2, 3))), np.ones((2, 3), complex))
    two = Adafactor([(2,), (2,)], device="cuda")
    with pytest.raises(TypeError, match="share one dtype"):
        two.step([to_dev(np.ones(2)), to_dev(np.ones(2, np.float32))], [np.ones(2)] * 2)
    assert opt.t == 0 and two.t == 0


def test_a_non_finite_gradient_propagates():
    """Documented difference from the CPU (which refuses such a step with ValueError):
    refusing it would make every GPU step wait for the GPU."""
    opt = Adafactor((2, 3), device="cuda")
    x = to_dev(np.ones((2, 3)))
    g = np.ones((2, 3))
    g[1, 2] = np.nan
    opt.step(x, g)
    assert opt.t == 1 and np.isnan(host(x)).any()


def test_a_step_stays_on_the_device(monkeypatch, rng):
    """With device gradients, a step makes no device-to-host copy (no host
    synchronisation) and allocates nothing of the block's size."""
    shape = (6, 10)
    x = to_dev(rng.standard_normal(shape))
    g = to_dev(rng.standard_normal(shape))
    opt = Adafactor(shape, device="cuda", beta1=0.5)
    opt.step(x, g)  # allocates the state and the (cached) workspace
    allocated = []
    real_device_array = cuda.device_array

    def device_array(shape, *args, **kwargs):
        allocated.append(shape)
        return real_device_array(shape, *args, **kwargs)

    def no_copy_back(*args, **kwargs):
        raise AssertionError("a step copied device memory to the host")

    monkeypatch.setattr(cuda, "device_array", device_array)
    monkeypatch.setattr(type(x), "copy_to_host", no_copy_back)
    monkeypatch.setattr(cuda, "synchronize", no_copy_back)
    opt.step(x, g)
    opt.step(x, g)
    assert allocated == []
    monkeypatch.undo()
    # A fresh shape allocates its workspace once: all of it O(n + m)-sized.
    other = Adafactor((9, 13), device="cuda")
    monkeypatch.setattr(cuda, "device_array", device_array)
    other.step(to_dev(np.ones((9, 13))), to_dev(np.ones((9, 13))))
    sizes = [int(np.prod(s)) for s in allocated]
    assert sizes and max(sizes) < 9 * 13
