"""The backend contract (``fastfactor._backends._protocol``) checked member by member.

``check(name, backend, to_backend)`` runs one check per member of the protocol against
plain NumPy (and the reference Adafactor for the steps). ``tests/test_backends.py`` runs
it for the CPU backend, ``tests/cuda/test_cuda_backend.py`` for CUDA (in the simulator).
A member added to the protocol without a check here fails ``test_every_member_checked``.
"""

import copy
import pickle

import numpy as np

from fastfactor._backends import _protocol
from fastfactor._backends._protocol import FactoredState, UnfactoredState
from fastfactor._hyper import Hyper
from reference import ReferenceAdafactor

DTYPES = (np.float64, np.float32)


def _host(be, a):
    return np.asarray(be.to_host(a))


def _name(be, dev):
    assert be.name in ("cpu", "cuda")


def _refuses_nonfinite(be, dev):
    assert isinstance(be.refuses_nonfinite, bool)
    for member in _protocol.TWO_PHASE:
        assert hasattr(be, member) == be.refuses_nonfinite, member


def _zeros(be, dev):
    for dt in DTYPES:
        a = be.zeros((3, 4), dt)
        h = _host(be, a)
        assert h.shape == (3, 4) and h.dtype == dt and not h.any()


def _empty_like(be, dev):
    a = be.empty_like(dev(np.ones((2, 5), np.float32)))
    assert _host(be, a).shape == (2, 5) and _host(be, a).dtype == np.float32


def _to_host(be, dev):
    x = np.arange(12.0).reshape(3, 4)
    h = be.to_host(dev(x))
    assert isinstance(h, np.ndarray)
    np.testing.assert_array_equal(h, x)


def _as_param(be, dev):
    p = dev(np.zeros((2, 3)))
    assert _host(be, be.as_param(p, (2, 3))).shape == (2, 3)
    for bad, err in (((3, 2), ValueError),):
        try:
            be.as_param(p, bad)
        except err:
            pass
        else:
            raise AssertionError(f"as_param accepted shape {bad}")


def _as_grad(be, dev):
    g = be.as_grad(np.arange(6).reshape(2, 3), (2, 3), np.float32)
    h = _host(be, g)
    assert h.dtype == np.float32
    np.testing.assert_array_equal(h, np.arange(6).reshape(2, 3))
    for bad, err in ((np.ones((3, 2)), ValueError), (np.array([["a"] * 3] * 2), TypeError)):
        try:
            be.as_grad(bad, (2, 3), np.float64)
        except err:
            pass
        else:
            raise AssertionError(f"as_grad accepted {bad!r}")


def _reshaped_view(be, dev):
    a = dev(np.arange(12.0))
    v = be.reshaped_view(a, (1, 3, 4))
    assert v is not None
    np.testing.assert_array_equal(_host(be, v), np.arange(12.0).reshape(1, 3, 4))


def _contiguous(be, dev):
    a = dev(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(_host(be, be.contiguous(a, (3, 2))),
                                  np.arange(6.0).reshape(3, 2))


def _copy_into(be, dev):
    dst = be.zeros((2, 3), np.float64)
    be.copy_into(dst, np.arange(6.0))
    np.testing.assert_array_equal(_host(be, dst), np.arange(6.0).reshape(2, 3))


def _max_abs(be, dev):
    for dt in DTYPES:
        g = np.array([0.5, -3.0, 2.0], dt)
        assert be.max_abs(dev(g)) == 3.0
        assert np.isnan(be.max_abs(dev(np.array([1.0, np.nan], dt))))
        assert be.max_abs(dev(np.array([1.0, -np.inf], dt))) == np.inf


def _max_abs_projected(be, dev):
    lb, ub = be.box(np.array([0.0, -1.0, -np.inf]), np.array([1.0, 1.0, np.inf]))
    for dt in DTYPES:
        x = np.array([0.0, 0.5, 2.0], dt)
        g = np.array([1.0, -2.0, 0.25], dt)
        want = np.max(np.abs(np.clip(x - g, [0, -1, -np.inf], [1, 1, np.inf]) - x))
        assert be.max_abs_projected(dev(x), dev(g), lb, ub) == want
        assert np.isnan(be.max_abs_projected(dev(x), dev(np.array([np.nan, 0, 0], dt)), lb, ub))
        assert be.max_abs_projected(dev(x), dev(np.array([np.inf, 0, 0], dt)), lb, ub) == np.inf


def _clip(be, dev):
    lb, ub = be.box(np.array([0.0, -1.0]), np.array([1.0, 1.0]))
    x = dev(np.array([2.0, -3.0]))
    be.clip(x, lb, ub)
    np.testing.assert_array_equal(_host(be, x), [1.0, -1.0])


def _box(be, dev):
    lb, ub = be.box(np.zeros(2), np.ones(2))
    np.testing.assert_array_equal(_host(be, lb), [0.0, 0.0])
    np.testing.assert_array_equal(_host(be, ub), [1.0, 1.0])


def _state(be, shape, factored, dtype, beta1):
    if factored:
        nb, n, m = shape
        mom = be.zeros(shape if beta1 else (0, 0, 0), dtype)
        return FactoredState(be.zeros((nb, n), dtype), be.zeros((nb, m), dtype), mom)
    mom = be.zeros(shape if beta1 else (0,), dtype)
    return UnfactoredState(be.zeros(shape, dtype), mom)


def _one_step(be, dev, kind, factored, dtype, beta1, inplace):
    """Two steps of one block by the backend's ``kind`` of step, against the reference."""
    rng = np.random.default_rng(5)
    shape = (2, 3, 4) if factored else (7,)
    x0 = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(2)]
    hyper = Hyper(beta1=beta1, weight_decay=0.1)
    ref = ReferenceAdafactor([shape], beta1=beta1, weight_decay=0.1)
    want = [x0.copy()]
    for g in grads:
        want = ref.step(want, [g])
    state = _state(be, shape, factored, dtype, beta1)
    x = dev(x0)
    for t, g in enumerate(grads, start=1):
        s = hyper.scalars(t)
        gd = dev(g)
        out = x if inplace else be.empty_like(x)
        if kind == "two_phase":
            stats = be.factored_stats if factored else be.unfactored_stats
            apply = be.factored_apply if factored else be.unfactored_apply
            pending, glow = stats(x, gd, state, s)
            assert pending is not None
            # a lower bound of max|g| (up to rounding): RMS(g) or max|g| itself
            big, rms = np.max(np.abs(g)), np.sqrt(np.mean(g.astype(float) ** 2))
            assert rms * (1 - 1e-6) <= glow <= big * (1 + 1e-6), (glow, rms, big)
            before = _host(be, x)
            apply(x, out, gd, state, pending, s)
        else:
            step = be.factored_step if factored else be.unfactored_step
            before = _host(be, x)
            assert step(x, out, gd, state, s) is not False
        if not inplace:
            np.testing.assert_array_equal(_host(be, x), before)  # x is left as it was
        x = out
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(_host(be, x), want[0], rtol=rtol, atol=rtol)


def _steps(kind):
    def check(be, dev):
        for factored in (True, False):
            for dtype in DTYPES:
                for beta1 in (None, 0.9):
                    for inplace in (True, False):
                        _one_step(be, dev, kind, factored, dtype, beta1, inplace)
    return check


def _refusal(be, dev):
    """A two-phase backend's statistics refuse a NaN gradient and change nothing."""
    if not be.refuses_nonfinite:
        return
    state = _state(be, (1, 2, 3), True, np.float64, None)
    g = np.ones((1, 2, 3))
    g[0, 1, 2] = np.nan
    pending, glow = be.factored_stats(dev(np.ones((1, 2, 3))), dev(g), state, Hyper().scalars(1))
    assert pending is None and np.isnan(glow)
    assert not _host(be, state.row).any() and not _host(be, state.col).any()


def _as_x0(be, dev):
    x = be.as_x0(np.arange(4).reshape(2, 2))
    h = _host(be, x)
    assert h.dtype == np.float64 and h.shape == (2, 2)
    assert _host(be, be.as_x0(np.ones(3, np.float32))).dtype == np.float32
    try:
        be.as_x0([1.0, np.nan])
    except ValueError:
        pass
    else:
        raise AssertionError("as_x0 accepted a NaN")


def _objective(be, dev):
    x0 = np.array([[1.0, 2.0], [3.0, 4.0]])

    def f(x):
        h = np.asarray(be.to_host(x))
        return float(np.sum(h * h))

    def g(x):
        return 2 * np.asarray(be.to_host(x))

    for fun, jac in ((lambda x: (f(x), g(x)), True), (f, g), (f, None), (f, "3-point")):
        obj = be.objective(fun, jac, (), (2, 2), np.float64, x0, None)
        value, grad, _ = obj(be.as_x0(x0).reshape(-1))
        assert value == 30.0
        np.testing.assert_allclose(_host(be, grad).reshape(2, 2), 2 * x0, rtol=1e-6)
        assert obj.nfev >= 1


def _exporter(be, dev):
    x0 = np.zeros((2, 3))
    a = be.as_x0(np.arange(6.0))
    out = be.exporter(x0, (2, 3))(a)
    assert isinstance(out, np.ndarray) and out.shape == (2, 3)
    np.testing.assert_array_equal(out, np.arange(6.0).reshape(2, 3))
    owned = be.exporter(x0, (2, 3), owned=True)(a)
    np.testing.assert_array_equal(np.asarray(owned), out)


def _compile_notice(be, dev):
    # a context manager either way; an exception inside propagates, nothing is printed
    # when nothing compiles
    for enabled in (True, False):
        with be.compile_notice(enabled):
            pass
        try:
            with be.compile_notice(enabled):
                raise KeyError("inside")
        except KeyError:
            pass
        else:
            raise AssertionError("compile_notice swallowed an exception")


def _pickles_as_itself(be):
    assert pickle.loads(pickle.dumps(be)) is be
    assert copy.deepcopy(be) is be


CHECKS = {
    "name": _name, "refuses_nonfinite": _refuses_nonfinite, "zeros": _zeros,
    "empty_like": _empty_like, "to_host": _to_host, "as_param": _as_param,
    "as_grad": _as_grad, "reshaped_view": _reshaped_view, "contiguous": _contiguous,
    "copy_into": _copy_into, "max_abs": _max_abs, "max_abs_projected": _max_abs_projected,
    "clip": _clip, "factored_step": _steps("one_call"), "unfactored_step": _steps("one_call"),
    "factored_stats": _steps("two_phase"), "factored_apply": _refusal,
    "unfactored_stats": _steps("two_phase"), "unfactored_apply": _steps("two_phase"),
    "as_x0": _as_x0, "box": _box, "objective": _objective, "exporter": _exporter,
    "compile_notice": _compile_notice,
}


def members(be):
    """The protocol members ``be`` must have."""
    return _protocol.ALWAYS + (_protocol.TWO_PHASE if be.refuses_nonfinite else ())


def check(member, be, dev):
    """Run the check of ``member`` on backend ``be``; ``dev`` moves a host array to it."""
    assert hasattr(be, member), f"the {be.name} backend lacks {member}"
    CHECKS[member](be, dev)
    _pickles_as_itself(be)
