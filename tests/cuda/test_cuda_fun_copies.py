"""With ``device="cuda"``, as on the CPU (SciPy's semantics): ``fun`` and ``jac`` each
receive a fresh copy of the iterate, so that a ``fun`` working in place on its argument
moves neither the iterate nor the point ``jac`` (or a finite difference) sees, and what
the user keeps of an ``x`` is never overwritten by later iterations."""

import cudatest

cudatest.require()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.optimize as so  # noqa: E402

import fastfactor  # noqa: E402
import fastfactor._backends.cuda as fc  # noqa: E402
from cudatest import host, to_dev  # noqa: E402

pytestmark = pytest.mark.cuda

OPTS = {"device": "cuda", "maxiter": 400, "lr": lambda t: 1.0 / t, "scale_parameter": False,
        "gtol": 1e-4}
SHAPES = [(6,), (3, 4)]


def _target(shape):
    return (np.arange(np.prod(shape)).reshape(shape) - 2.5) / 4


def _host(a):
    """A NumPy copy of a device or host array."""
    return host(a) if fc.is_device_array(a) else np.array(a)


def _subtract_in_place(x, c):
    """``x -= c`` on a device array (Numba device arrays have no arithmetic)."""
    d = host(x) - c
    x.copy_to_device(d.astype(x.dtype))
    return d


@pytest.mark.parametrize("shape", SHAPES, ids=["vector", "matrix"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fun_changing_x_in_place_leaves_the_iterate_alone(shape, dtype):
    c = _target(shape)

    def fun(x):
        d = _subtract_in_place(x, c)  # x -= c
        return 0.5 * float(np.sum(d * d))

    res = fastfactor.minimize(fun, np.zeros(shape, dtype), jac=lambda x: host(x) - c,
                              options=OPTS)
    assert res.success, res.message
    assert res.x.dtype == dtype and res.x.shape == shape
    np.testing.assert_allclose(res.x, c, atol=2e-4)


@pytest.mark.parametrize("entry, x0_on", [("minimize", "host"), ("minimize", "device"),
                                          ("scipy", "host")])
def test_jac_sees_the_point_fun_was_given(entry, x0_on):
    """A fun working in place, with a separate jac (which sees the unchanged point: x0
    first) and with ``jac=True``: the run is the one of a fun that does not."""
    shape = (3, 4) if entry == "minimize" else (12,)
    c = _target(shape)
    at_jac = []

    def clean(x):
        return 0.5 * float(np.sum((host(x) - c) ** 2))

    def fun(x):
        d = _subtract_in_place(x, c)
        return 0.5 * float(np.sum(d * d))

    def jac(x):
        at_jac.append(host(x))
        return host(x) - c

    def both(x):
        d = _subtract_in_place(x, c)
        return 0.5 * float(np.sum(d * d)), d.copy()

    x0 = np.zeros(shape) if x0_on == "host" else to_dev(np.zeros(shape))
    opts = dict(OPTS, maxiter=3)
    if entry == "minimize":
        run = lambda f, j: fastfactor.minimize(f, x0, jac=j, options=opts)  # noqa: E731
    else:
        opts["shapes"] = [(3, 4)]
        run = lambda f, j: so.minimize(f, x0, jac=j, method=fastfactor.adafactor,  # noqa: E731
                                       options=opts)
    ref = _host(run(clean, lambda x: host(x) - c).x)
    np.testing.assert_array_equal(_host(run(fun, jac).x), ref)
    np.testing.assert_array_equal(at_jac[0], np.zeros(shape))
    np.testing.assert_array_equal(_host(run(both, True).x), ref)


@pytest.mark.parametrize("method", ["2-point", "3-point", "cs"])
def test_finite_difference_points_are_copies(method):
    """A fun working in place at a finite difference's points moves neither those points
    nor the iterate: the run is the one of a fun that does not."""
    c = _target((6,))

    def clean(x):
        return 0.5 * np.sum((host(x) - c) ** 2)  # complex at the points of "cs"

    def spoiling(x):
        value = clean(x)
        _subtract_in_place(x, c)
        return value

    opts = dict(OPTS, maxiter=3)
    ref = fastfactor.minimize(clean, np.zeros(6), jac=method, options=opts)
    res = fastfactor.minimize(spoiling, np.zeros(6), jac=method, options=opts)
    np.testing.assert_array_equal(res.x, ref.x)
    assert res.nfev == ref.nfev


@pytest.mark.parametrize("x0_on", ["host", "device"])
def test_what_the_user_keeps_is_never_overwritten(x0_on):
    """Every x given to fun, to jac and to a callback stays as it was given: distinct
    objects, distinct values from one iteration to the next."""
    c = _target((3, 4))
    kept = {"fun": [], "jac": [], "callback": []}
    snapshots = {k: [] for k in kept}

    def keep(where, x):
        kept[where].append(x)
        snapshots[where].append(_host(x))

    def fun(x):
        keep("fun", x)
        return 0.5 * float(np.sum((host(x) - c) ** 2))

    def jac(x):
        keep("jac", x)
        return host(x) - c

    x0 = np.zeros((3, 4)) if x0_on == "host" else to_dev(np.zeros((3, 4)))
    fastfactor.minimize(fun, x0, jac=jac, callback=lambda xk: keep("callback", xk),
                        options=dict(OPTS, maxiter=4))
    for where in kept:
        assert len(kept[where]) >= 4, where
        now = [_host(x) for x in kept[where]]
        for before, after in zip(snapshots[where], now, strict=True):
            np.testing.assert_array_equal(after, before, err_msg=where)
        assert len({a.tobytes() for a in now}) == len(now), where  # one per iterate
    assert not any(f is j for f in kept["fun"] for j in kept["jac"])
