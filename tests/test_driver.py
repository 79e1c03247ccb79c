"""The shared driver: what it keeps, what it copies, and what a NaN leaves behind."""

import numpy as np
import pytest

import fastfactor
from helpers import DTYPES, dtype_id


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [(6,), (3, 4)], ids=str)
def test_nan_with_a_reused_gradient_buffer_keeps_the_last_gradient(shape, dtype):
    """An objective that returns the same gradient array at every call: when the next
    point is NaN, res.jac is still the gradient at res.x (evaluated again)."""
    target = np.arange(np.prod(shape), dtype=float).reshape(shape)
    G = np.empty(shape, dtype)
    calls = []

    def fg(x):
        calls.append(x.copy())
        np.subtract(x, target, out=G)
        f = 0.5 * float(np.sum(G.astype(float) ** 2))
        if len(calls) == 5:  # the 4th update lands on a point where f is NaN
            G[...] = np.nan
            f = np.nan
        return f, G

    res = fastfactor.minimize(fg, np.zeros(shape, dtype), jac=True,
                              options={"maxiter": 50, "lr": 0.1, "scale_parameter": False})
    assert res.status == 2 and res.nit == 3
    np.testing.assert_array_equal(res.x, calls[3])
    np.testing.assert_allclose(res.jac, (res.x - target).astype(dtype))
    assert res.nfev == len(calls) == 6  # the re-evaluation at res.x counts


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_gradient_array_is_not_modified(dtype):
    """The step reads the user's gradient array itself (no copy) and never writes it."""
    kept = []

    def fg(x):
        g = (x - 3.0).astype(dtype)
        kept.append((g, g.copy()))
        return 0.5 * float(np.sum((x - 3.0) ** 2)), g

    fastfactor.minimize(fg, np.zeros((4, 5), dtype), jac=True, options={"maxiter": 5})
    for g, snapshot in kept:
        np.testing.assert_array_equal(g, snapshot)


@pytest.mark.parametrize("entry", ["minimize", "stochastic"])
def test_refused_step_returns_the_current_iterate(entry):
    """A finite gradient whose squares overflow float32 refuses the step at a good
    iterate: both front ends return that iterate (not the one before)."""
    calls = []

    def fg(x, *batch):
        calls.append(x.copy())
        g = (x - 1.0).astype(np.float32)
        if len(calls) == 4:
            g[0] = np.float32(1e20)
        return 0.5 * float(np.sum((x - 1.0) ** 2)), g

    opts = {"maxiter": 10, "lr": 0.1, "scale_parameter": False}
    x0 = np.zeros(3, np.float32)
    if entry == "minimize":
        res = fastfactor.minimize(fg, x0, jac=True, options=opts)
    else:
        res = fastfactor.minimize_stochastic(fg, x0, [0], jac=True, options=opts)
    assert res.status == 2 and res.nit == 3
    np.testing.assert_array_equal(res.x, calls[3])
