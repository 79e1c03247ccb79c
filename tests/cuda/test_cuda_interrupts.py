"""``minimize`` with ``device="cuda"`` keeps what it reached when interrupted: status 98
at the last iterate, equal to the run stopped there by ``maxiter``; another exception
carries that result."""

import cudatest

cudatest.require()

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastfactor  # noqa: E402
from cudatest import host, to_dev  # noqa: E402

pytestmark = pytest.mark.cuda

OPTIONS = dict(lr=lambda t: 0.1 / t ** 0.5, scale_parameter=False, maxiter=100, gtol=0.0,
               device="cuda")


@pytest.mark.parametrize("error", [KeyboardInterrupt(), ValueError("undefined")],
                         ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(6,), (3, 4)], ids=str)
def test_interrupted_device_run_keeps_the_last_iterate(error, dtype, shape):
    c = (np.arange(np.prod(shape)).reshape(shape) / 5.0).astype(dtype)
    calls = []

    def f(x):
        calls.append(1)
        if len(calls) == 6:
            raise error
        xh = host(x)
        return 0.5 * float(np.sum((xh - c) ** 2))

    def g(x):
        return (host(x) - c).astype(dtype)

    x0 = to_dev(np.zeros(shape, dtype))
    if isinstance(error, KeyboardInterrupt):
        res = fastfactor.minimize(f, x0, jac=g, options=OPTIONS)
    else:
        with pytest.raises(ValueError) as info:
            fastfactor.minimize(f, x0, jac=g, options=OPTIONS)
        res = info.value.optimize_result
    assert res.status == 98 and res.nit == 4
    calls.clear()
    ref = fastfactor.minimize(lambda x: 0.5 * float(np.sum((host(x) - c) ** 2)), x0, jac=g,
                              options=dict(OPTIONS, maxiter=4))
    np.testing.assert_array_equal(host(res.x), host(ref.x))
    assert res.fun == ref.fun
