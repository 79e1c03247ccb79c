"""``minimize`` / ``adafactor`` with ``device="cuda"``: the run stays on the GPU and
follows the CPU run (same iterates, counts and status)."""

import cudatest

cudatest.require()

import sys  # noqa: E402
import types  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.optimize as so  # noqa: E402
from numba import cuda  # noqa: E402

import fastfactor  # noqa: E402
import fastfactor._backends.cuda as fc  # noqa: E402
from cudatest import Foreign, assert_agree, host, size, to_dev  # noqa: E402
from fastfactor import adafactor  # noqa: E402

pytestmark = pytest.mark.cuda

LR = {"lr": lambda t: 0.3 / np.sqrt(t)}


class Quartic:
    """f(x) = sum(a (x - c)**2) / 2 + sum((x - c)**4) / 4, evaluated on the host.

    Takes host or device arrays; ``grad_on`` says where the gradient is returned
    ("host" or "device"); records the kinds of arrays it was given.
    """

    def __init__(self, shape, dtype=np.float64, seed=0, grad_on="host"):
        r = np.random.default_rng(seed)
        self.shape, self.dtype, self.grad_on = tuple(shape), np.dtype(dtype), grad_on
        self.a = 10.0 ** r.uniform(-1, 1, size=self.shape)
        self.c = r.standard_normal(self.shape)
        self.x0 = (self.c + 2.0 * r.standard_normal(self.shape)).astype(dtype)
        self.seen = set()

    def _x(self, x):
        self.seen.add("device" if fc.is_device_array(x) else "host")
        xh = host(x) if fc.is_device_array(x) else np.asarray(x)
        assert xh.size == self.a.size
        return xh.reshape(self.shape).astype(np.float64)

    def _out(self, g, like):
        g = g.astype(self.dtype).reshape(np.shape(like) if not fc.is_device_array(like)
                                         else tuple(fc._arrays._view(like).shape))
        return to_dev(g) if self.grad_on == "device" else g

    def fun(self, x):
        d = self._x(x) - self.c
        return float(np.sum(self.a * d * d) / 2 + np.sum(d**4) / 4)

    def jac(self, x):
        d = self._x(x) - self.c
        return self._out(self.a * d + d**3, x)

    def fun_and_jac(self, x):
        return self.fun(x), self.jac(x)


def assert_same_run(res, ref, dtype):
    assert (res.nit, res.nfev, res.njev, res.status, res.success) == \
        (ref.nit, ref.nfev, ref.njev, ref.status, ref.success)
    assert_agree(host(res.x) if fc.is_device_array(res.x) else res.x, ref.x, dtype)
    assert_agree(host(res.jac) if fc.is_device_array(res.jac) else res.jac, ref.jac, dtype)
    assert res.fun == pytest.approx(ref.fun, rel=1e-9 if dtype == np.float64 else 1e-4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_numpy_x0_host_gradient(dtype):
    """NumPy in, NumPy out; fun and jac see Numba device arrays."""
    p = Quartic(size((4, 5), (300, 200)), dtype)
    opts = dict(LR, maxiter=5)
    res = fastfactor.minimize(p.fun_and_jac, p.x0, jac=True, options=dict(opts, device="cuda"))
    assert p.seen == {"device"}
    assert isinstance(res.x, np.ndarray) and res.x.shape == p.shape and res.x.dtype == dtype
    assert isinstance(res.jac, np.ndarray) and res.jac.shape == p.shape
    ref = fastfactor.minimize(Quartic(p.shape, dtype).fun_and_jac, p.x0, jac=True, options=opts)
    assert_same_run(res, ref, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_device_x0_device_gradient(dtype):
    """A device x0 stays on the device: res.x is a device array; x0 is not modified."""
    p = Quartic(size((3, 2, 4), (4, 100, 300)), dtype, grad_on="device")
    x0 = to_dev(p.x0)
    opts = dict(LR, maxiter=4, beta1=0.5)
    res = fastfactor.minimize(p.fun, x0, jac=p.jac, options=dict(opts, device="cuda"))
    assert cuda.devicearray.is_cuda_ndarray(res.x) and tuple(res.x.shape) == p.shape
    assert cuda.devicearray.is_cuda_ndarray(res.jac)
    np.testing.assert_array_equal(host(x0), p.x0)
    q = Quartic(p.shape, dtype)
    ref = fastfactor.minimize(q.fun, p.x0, jac=q.jac, options=opts)
    assert_same_run(res, ref, dtype)


def test_scipy_entry_point_blocks_and_bounds():
    """scipy.optimize.minimize(method=adafactor): several blocks, box bounds (projection)."""
    p = Quartic((17,), np.float64)
    bounds = [(-0.5, 0.5)] * 8 + [(None, 1.0)] * 9
    opts = dict(LR, maxiter=5, shapes=[(2, 4), (3, 3)], gtol=1e-8)
    res = so.minimize(p.fun, p.x0, jac=p.jac, method=adafactor, bounds=bounds,
                      options=dict(opts, device="cuda"))
    ref = so.minimize(p.fun, p.x0, jac=p.jac, method=adafactor, bounds=bounds, options=opts)
    assert np.all(res.x[:8] <= 0.5) and np.all(res.x[:8] >= -0.5) and np.all(res.x[8:] <= 1.0)
    assert_same_run(res, ref, np.float64)


def test_bounds_with_a_device_x0_and_convergence():
    """gtol is tested on the projected gradient: with the minimiser below the box, the
    run converges (status 0) once every element rests on its lower bound."""
    p = Quartic((3, 4), np.float64)
    lo, hi = p.c + 0.1, p.c + 0.4
    opts = dict(lr=0.3, maxiter=40, gtol=1e-6, scale_parameter=False)
    res = fastfactor.minimize(p.fun, to_dev(p.x0), jac=p.jac, bounds=so.Bounds(lo, hi),
                              options=dict(opts, device="cuda"))
    ref = fastfactor.minimize(p.fun, p.x0, jac=p.jac, bounds=so.Bounds(lo, hi), options=opts)
    assert_same_run(res, ref, np.float64)
    assert res.status == 0 and 0 < res.nit < 40
    np.testing.assert_allclose(host(res.x), lo, rtol=0, atol=1e-12)


def test_callbacks_stop_and_kinds():
    p = Quartic((2, 3))
    seen = []

    def callback(intermediate_result):
        seen.append(intermediate_result)
        if intermediate_result.nit == 2:
            raise StopIteration

    res = fastfactor.minimize(p.fun, p.x0, jac=p.jac, callback=callback,
                              options=dict(LR, device="cuda"))
    assert res.status == 99 and res.nit == 2 and len(seen) == 2
    assert all(isinstance(s.x, np.ndarray) and s.x.shape == (2, 3) for s in seen)
    np.testing.assert_array_equal(seen[-1].x, res.x)
    old_style = []
    fastfactor.minimize(p.fun, to_dev(p.x0), jac=p.jac, callback=old_style.append,
                        options=dict(LR, device="cuda", maxiter=2))
    assert len(old_style) == 2 and all(cuda.devicearray.is_cuda_ndarray(x) for x in old_style)


@pytest.mark.parametrize("method", [None, "3-point"])
def test_finite_differences(method):
    p = Quartic((3,), np.float64)
    opts = dict(LR, maxiter=2)
    res = fastfactor.minimize(p.fun, p.x0, jac=method, options=dict(opts, device="cuda"))
    ref = fastfactor.minimize(p.fun, p.x0, jac=method, options=opts)
    assert_same_run(res, ref, np.float64)


def test_non_finite_stops_with_status_2_and_gtol_success():
    p = Quartic((2, 2))
    calls = []

    def fun(x):
        calls.append(1)
        return np.inf if len(calls) > 2 else p.fun(x)

    res = fastfactor.minimize(fun, p.x0, jac=p.jac, options=dict(LR, device="cuda"))
    ref_calls = []

    def ref_fun(x):
        ref_calls.append(1)
        return np.inf if len(ref_calls) > 2 else p.fun(x)

    ref = fastfactor.minimize(ref_fun, p.x0, jac=p.jac, options=LR)
    assert res.status == ref.status == 2
    assert_same_run(res, ref, np.float64)
    done = fastfactor.minimize(p.fun, p.c, jac=p.jac, options=dict(device="cuda", gtol=1e-12))
    assert done.success and done.nit == 0


def test_device_scalars_and_foreign_x0():
    """fun may return a device scalar; a foreign (__cuda_array_interface__) x0 of unknown
    kind gives Numba device arrays."""
    p = Quartic((2, 3), grad_on="device")

    def fun(x):
        return to_dev(np.array([p.fun(x)]))

    x0 = Foreign(to_dev(p.x0))
    res = fastfactor.minimize(fun, x0, jac=p.jac, options=dict(LR, device="cuda", maxiter=2))
    assert cuda.devicearray.is_cuda_ndarray(res.x)
    ref = fastfactor.minimize(p.fun, p.x0, jac=lambda x: p.jac(x), options=dict(LR, maxiter=2))
    assert_agree(host(res.x), ref.x, np.float64)


def test_gradient_checks():
    p = Quartic((2, 3))
    with pytest.raises(ValueError, match="shape"):
        fastfactor.minimize(p.fun, p.x0, jac=lambda x: to_dev(np.ones((3, 2))),
                            options={"device": "cuda"})
    with pytest.raises(TypeError, match="real"):
        fastfactor.minimize(p.fun, p.x0, jac=lambda x: np.ones((2, 3), complex),
                            options={"device": "cuda"})
    with pytest.raises(ValueError, match="NaN or inf"):
        fastfactor.minimize(p.fun, to_dev(np.array([1.0, np.nan])), jac=p.jac,
                            options={"device": "cuda"})
    x0 = to_dev(np.arange(6).reshape(2, 3))  # integers: taken as float64
    res = fastfactor.minimize(p.fun, x0, jac=p.jac, options={"device": "cuda", "maxiter": 1})
    assert res.x.dtype == np.float64


def test_array_kinds_follow_x0(monkeypatch):
    """CuPy x0 -> CuPy arrays (cupy.asarray), PyTorch x0 -> tensors (torch.as_tensor on
    x0's device), both zero-copy views of the iterate; checked with stand-in modules."""
    calls = []
    fake_cupy = types.ModuleType("cupy")
    fake_cupy.asarray = lambda d: calls.append(("cupy", d)) or ("cupy-array", d)
    fake_torch = types.ModuleType("torch")
    fake_torch.as_tensor = lambda d, device: calls.append(("torch", device)) or ("tensor", d)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    dev = to_dev(np.arange(6.0))
    CupyLike = type("ndarray", (Foreign,), {"__module__": "cupy._core.core"})
    TorchLike = type("Tensor", (Foreign,), {"__module__": "torch", "device": "cuda:1"})
    kind = fc.ArrayKind(CupyLike(dev))
    assert kind.wrap(dev) == ("cupy-array", dev)
    exported = kind.export(dev)
    assert exported[0] == "cupy-array" and exported[1] is not dev
    np.testing.assert_array_equal(host(exported[1]), np.arange(6.0))
    kind = fc.ArrayKind(TorchLike(dev))
    assert kind.wrap(dev)[0] == "tensor" and calls[-1] == ("torch", "cuda:1")
    assert fc.ArrayKind(dev).wrap(dev) is dev
    assert isinstance(fc.ArrayKind(np.ones(3)).export(dev), np.ndarray)


def test_real_torch_and_cupy_on_a_gpu():
    """On a real GPU with PyTorch or CuPy installed: their arrays in, theirs out."""
    if cudatest.SIMULATOR:
        pytest.skip("needs a real GPU")
    ran = False
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        ran = True
        x0 = torch.linspace(-1, 1, 12, device="cuda", dtype=torch.float32).reshape(3, 4)
        seen = []

        def fg(x):
            seen.append(type(x))
            return float(((x - 0.5) ** 2).sum()), 2 * (x - 0.5)

        res = fastfactor.minimize(fg, x0, jac=True, options=dict(LR, device="cuda", maxiter=3))
        assert isinstance(res.x, torch.Tensor) and res.x.is_cuda and set(seen) == {torch.Tensor}
        w = torch.ones(5, 6, device="cuda")
        fastfactor.Adafactor((5, 6), device="cuda", lr=0.1, scale_parameter=False).step(
            w, torch.ones(5, 6, device="cuda"))
        assert torch.allclose(w, torch.full_like(w, 0.9))
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is not None:
        ran = True
        w = cupy.ones((5, 6))
        fastfactor.Adafactor((5, 6), device="cuda", lr=0.1, scale_parameter=False).step(
            w, cupy.ones((5, 6)))
        assert cupy.allclose(w, 0.9)
        res = fastfactor.minimize(lambda x: (float(((x - 1) ** 2).sum()), 2 * (x - 1)),
                                  cupy.zeros(4), jac=True,
                                  options=dict(LR, device="cuda", maxiter=2))
        assert isinstance(res.x, cupy.ndarray)
    if not ran:
        pytest.skip("neither PyTorch (with CUDA) nor CuPy is installed")


@cuda.jit
def _quadratic_grad(x, c, g):
    i = cuda.grid(1)
    if i < x.shape[0]:
        g[i] = 2.0 * (x[i] - c[i])


def test_only_scalars_cross_per_iteration(monkeypatch):
    """NumPy x0, gradient computed on the device: per iteration, fastfactor itself moves
    only scalars between host and device (the user's own copies are not counted)."""
    n = 24
    c = to_dev(np.linspace(-1, 1, n))
    x0 = np.zeros(n)
    moved = []
    user = [False]
    device_array_type = type(c)
    real_to_host = device_array_type.copy_to_host
    real_to_device = device_array_type.copy_to_device

    def to_host(self, *args, **kwargs):
        if not user[0]:
            moved.append(("to host", self.size))
        return real_to_host(self, *args, **kwargs)

    def to_device(self, ary, *args, **kwargs):
        if not user[0] and not fc.is_device_array(ary):
            moved.append(("to device", np.size(ary)))
        return real_to_device(self, ary, *args, **kwargs)

    real_cuda_to_device = cuda.to_device

    def cuda_to_device(obj, *args, **kwargs):
        if not user[0]:
            moved.append(("to device", np.size(obj)))
        saved, user[0] = user[0], True  # not counted twice through copy_to_device
        try:
            return real_cuda_to_device(obj, *args, **kwargs)
        finally:
            user[0] = saved

    def fg(x):
        user[0] = True
        try:
            g = cuda.device_array(n)
            _quadratic_grad[1, 32](x, c, g)
            f = float(np.sum((x.copy_to_host() - np.linspace(-1, 1, n)) ** 2))
        finally:
            user[0] = False
        return f, g

    monkeypatch.setattr(device_array_type, "copy_to_host", to_host)
    monkeypatch.setattr(device_array_type, "copy_to_device", to_device)
    monkeypatch.setattr(cuda, "to_device", cuda_to_device)
    res = fastfactor.minimize(fg, x0, jac=True, options=dict(LR, device="cuda", maxiter=3))
    monkeypatch.undo()
    assert res.nit == 3
    big = [m for m in moved if m[1] > 1]
    # x0 goes to the device once, res.x and res.jac come back once: nothing else.
    assert sorted(big) == [("to device", n), ("to host", n), ("to host", n)], moved
    # One scalar per evaluation (max |g|: finiteness and convergence in one reduction).
    assert len(moved) - len(big) == res.nfev == 1 + 3
