"""``eps1=0`` on the GPU: where the second moment is exactly zero, the update is zero
(``a_i = 0`` where ``R_i = 0``, ``b_j = 0`` where ``C_j = 0``, ``U_i = 0`` where
``v_i = 0``), as on the CPU and in the NumPy reference, instead of NaN written into the
parameters. A NaN in the gradient still propagates (the GPU step refuses nothing)."""

import cudatest

cudatest.require()

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastfactor  # noqa: E402
import fastfactor._backends.cuda as fc  # noqa: E402
from cudatest import (  # noqa: E402
    assert_agree,
    host,
    many_blocks,  # noqa: F401 -- a pytest fixture: imported so that pytest finds it here
    size,
    to_dev,
)
from fastfactor import Adafactor  # noqa: E402
from helpers import ZERO_PATTERNS, row_and_column_zeroed, zero_pattern_gradients  # noqa: E402
from reference import ReferenceAdafactor  # noqa: E402

pytestmark = pytest.mark.cuda

DTYPES = [np.float64, np.float32]

#: block kind -> (shape, hyper)
BLOCKS = {
    "vector": (size((11,), (100003,)), {}),
    "matrix": (size((6, 9), (257, 1031)), {}),
    "batch3d": (size((2, 5, 7), (3, 130, 300)), {}),
    "unfactored_matrix": (size((5, 6), (300, 400)), {"min_dim_size_to_factor": 1000}),
}


PATTERNS = {k: ZERO_PATTERNS[k] for k in ("row_and_column", "all_zero", "zero_entries")}

#: (hyper-parameters, in place?): the out-of-place step once (the simulator is slow)
VARIANTS = {
    "plain": ({}, True),
    "beta1_weight_decay": ({"beta1": 0.9, "weight_decay": 0.1, "lr": 0.05}, True),
    "out_of_place": ({"beta1": 0.5}, False),
}

_gradients = zero_pattern_gradients


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("kind", list(BLOCKS))
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_zero_second_moment_against_cpu_and_reference(dtype, kind, pattern, variant):
    shape, block_hyper = BLOCKS[kind]
    hyper, in_place = VARIANTS[variant]
    hy = dict(hyper, eps1=0.0, **block_hyper)
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(dtype)
    dev = to_dev(x)
    opt = Adafactor([shape], device="cuda", **hy)
    cpu = Adafactor([shape], **hy)
    ref = ReferenceAdafactor([shape], **hy)
    x_cpu, x_ref = x.copy(), x.copy()
    for k, g in enumerate(_gradients(rng, shape, dtype, pattern)):
        msg = f"step {k + 1}"
        if in_place:
            opt.step([dev], [g])
        else:
            out = to_dev(np.full_like(x, np.nan))
            before = host(dev)
            gd = opt.backend.as_grad(g, shape, np.dtype(dtype))
            assert opt._apply([dev], [out], [gd]) is None
            np.testing.assert_array_equal(host(dev), before, err_msg=msg)
            dev = out
        cpu.step([x_cpu], [g])
        (x_ref,) = ref.step([x_ref], [g])
        got = host(dev)
        assert np.all(np.isfinite(got)), msg
        assert_agree(got, x_cpu, dtype, "vs CPU: " + msg)
        assert_agree(got, x_ref, dtype, "vs reference: " + msg)
    (state,) = opt.state_dict()["blocks"]
    (state_cpu,) = cpu.state_dict()["blocks"]
    for key, value in state_cpu.items():
        assert_agree(state[key], value, dtype, f"state {key}")
        np.testing.assert_array_equal(state[key] == 0, value == 0, err_msg=key)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_zero_rows_across_many_blocks(dtype, rng, many_blocks):  # noqa: F811 -- the fixture
    """Column tiles, row strips and partial sums spread over several blocks, zero rows
    and columns in every matrix of a batch, and a vector with zero entries."""
    shapes = [size((2, 20, 70), (1, 300, 7000)), size((150,), (30011,))]
    hy = dict(eps1=0.0, beta1=0.5)
    xs = [rng.standard_normal(s).astype(dtype) for s in shapes]
    dev = [to_dev(a) for a in xs]
    opt = Adafactor(shapes, device="cuda", **hy)
    cpu = Adafactor(shapes, **hy)
    ref = ReferenceAdafactor(shapes, **hy)
    xs_ref = [a.copy() for a in xs]
    for k in range(2):
        gs = []
        for s in shapes:
            g = rng.standard_normal(s)
            if k == 0:
                row_and_column_zeroed(g)
                if len(s) == 1:
                    g[::3] = 0
                else:
                    g[..., 7:9, :] = 0
            gs.append(g.astype(dtype))
        opt.step(dev, gs)
        cpu.step(xs, gs)
        xs_ref = ref.step(xs_ref, gs)
        for i in range(len(shapes)):
            got = host(dev[i])
            assert np.all(np.isfinite(got))
            assert_agree(got, xs[i], dtype, f"vs CPU: step {k + 1}, block {i}")
            assert_agree(got, xs_ref[i], dtype, f"vs reference: step {k + 1}, block {i}")


@pytest.mark.parametrize("kind", list(BLOCKS))
def test_nan_still_propagates(kind):
    """A zero second moment elsewhere does not hide a NaN of the gradient."""
    shape, block_hyper = BLOCKS[kind]
    g = np.ones(shape)
    row_and_column_zeroed(g)
    g.flat[g.size // 2 + 1] = np.nan
    dev = to_dev(np.ones(shape))
    Adafactor([shape], device="cuda", eps1=0.0, **block_hyper).step([dev], [g])
    got = host(dev)
    assert np.isnan(got.flat[g.size // 2 + 1])


def test_minimize_with_a_zero_gradient_row():
    """``minimize`` on the GPU follows the CPU run (no status 2)."""
    shape = (6, 8)
    w = np.ones(shape)
    w[2] = 0
    w[:, 1] = 0
    c = np.random.default_rng(1).standard_normal(shape)

    def _x(x):
        return (host(x) if fc.is_device_array(x) else np.asarray(x)).reshape(shape)

    def fun(x):
        d = _x(x) - c
        return float(np.sum(w * d * d) / 2)

    def jac(x):
        return w * (_x(x) - c)

    x0 = np.zeros(shape)
    opts = dict(eps1=0.0, maxiter=8, gtol=0.0)
    res = fastfactor.minimize(fun, x0, jac=jac, options=dict(opts, device="cuda"))
    ref = fastfactor.minimize(fun, x0, jac=jac, options=opts)
    assert res.status == ref.status == 1 and res.nit == ref.nit == 8, res.message
    assert_agree(res.x, ref.x, np.float64)
    np.testing.assert_array_equal(res.x[w == 0], 0.0)
