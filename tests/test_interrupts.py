"""Interrupts and exceptions: a step is all or nothing, and a run keeps what it reached.

- ``Adafactor.step`` over several blocks, with a SIGINT arriving between two blocks'
  kernels: the step completes (every block, ``t``), then ``KeyboardInterrupt`` is
  raised; the state equals an uninterrupted step's, bit for bit.
- ``minimize``, the SciPy method, ``least_squares``, ``minimize_stochastic``: a
  ``KeyboardInterrupt`` in ``fun``/``jac``/``callback`` returns status 98 at the last
  iterate reached (the same as a run stopped there by ``maxiter``, bit for bit), with
  its own evaluation; another exception propagates with that result attached.
"""

import signal
import threading

import numpy as np
import pytest
import scipy.optimize as so

import fastfactor
from fastfactor import Adafactor, least_squares, minimize, minimize_stochastic
from fastfactor._interrupts import INTERRUPTED, held_interrupt
from helpers import DTYPES, dtype_id

SHAPES = [(4, 3), (5,), (2, 3, 4)]


def _blocks(rng, dtype):
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


# --- the stepper: a step is all or nothing -----------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("when", ["factored", "unfactored"])
def test_sigint_between_blocks_completes_the_step(monkeypatch, rng, dtype, when):
    params, grads = _blocks(rng, dtype), _blocks(rng, dtype)
    twin_params = [p.copy() for p in params]
    twin = Adafactor(SHAPES)
    twin.step(twin_params, grads)
    opt = Adafactor(SHAPES)
    be = opt.backend
    name = f"{when}_apply"
    original = getattr(be, name)
    calls = []

    def apply_then_signal(*args):
        original(*args)
        calls.append(1)
        if len(calls) == 1:  # a real SIGINT, handled at the next bytecode
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(be, name, apply_then_signal)
    with pytest.raises(KeyboardInterrupt):
        opt.step(params, grads)
    monkeypatch.undo()
    assert opt.t == 1
    for p, q in zip(params, twin_params, strict=True):
        np.testing.assert_array_equal(p, q)
    for a, b in zip(opt.state_dict()["blocks"], twin.state_dict()["blocks"], strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_held_interrupt_leaves_a_handler_of_the_program_alone():
    seen = []
    old = signal.signal(signal.SIGINT, lambda s, f: seen.append(s))
    try:
        with held_interrupt():
            signal.raise_signal(signal.SIGINT)
            assert seen == [signal.SIGINT]  # the program's handler ran at once
        opt = Adafactor((3,))
        opt.step(np.ones(3), np.ones(3))
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, old)


def test_held_interrupt_without_a_signal_costs_nothing_visible():
    with held_interrupt():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_steps_in_a_thread_are_not_held(rng):
    # signal handlers can only be set in the main thread: a step in another thread
    # must not try (ValueError), and still steps
    errors = []

    def work():
        try:
            Adafactor((4, 3)).step(np.ones((4, 3)), np.ones((4, 3)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert errors == []


def test_an_exception_in_a_step_restores_the_handler():
    opt = Adafactor((3,))
    with pytest.raises(ValueError):
        opt.step(np.ones(3), np.array([1.0, np.nan, 0.0]))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert opt.t == 0


# --- runs keep what they reached -----------------------------------------------------------

C = np.arange(12.0).reshape(3, 4) / 7.0


class Fails:
    """fun/jac that raise ``error`` at their ``at``-th call (counting from 1)."""

    def __init__(self, error, at):
        self.error, self.at, self.calls = error, at, 0

    def tick(self):
        self.calls += 1
        if self.calls == self.at:
            raise self.error

    def at_place(self, where, place, func=None):
        """``func`` (None: a callback doing nothing) counting its calls toward the error
        when ``where == place``."""
        def wrapped(*args):
            if where == place:
                self.tick()
            return None if func is None else func(*args)
        return wrapped


def _quadratic(dtype, shape):
    c = C.reshape(-1)[: int(np.prod(shape))].reshape(shape).astype(dtype)

    def f(x):
        return 0.5 * float(np.sum((x - c) ** 2))

    def g(x):
        return (x - c).astype(dtype)
    return f, g


OPTIONS = dict(lr=lambda t: 0.1 / t ** 0.5, scale_parameter=False, maxiter=200, gtol=0.0)
ERRORS = [KeyboardInterrupt(), ValueError("undefined here")]


def _run_minimize(entry, f, g, x0, maxiter=None, **kw):
    options = dict(OPTIONS) if maxiter is None else dict(OPTIONS, maxiter=maxiter)
    if entry == "minimize":
        return minimize(f, x0, jac=g, options=options, **kw)
    flat_f = lambda x: f(x.reshape(x0.shape))  # noqa: E731
    flat_g = lambda x: g(x.reshape(x0.shape)).reshape(-1)  # noqa: E731
    return so.minimize(flat_f, x0.reshape(-1), method=fastfactor.adafactor, jac=flat_g,
                       options=options, **kw)


def _outcome(call, error):
    """The result: returned (KeyboardInterrupt) or attached to the exception."""
    if isinstance(error, KeyboardInterrupt):
        return call()
    with pytest.raises(type(error)) as info:
        call()
    assert info.value is error
    assert any("optimize_result" in note for note in info.value.__notes__)
    return info.value.optimize_result


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("where", ["fun", "jac", "callback"])
@pytest.mark.parametrize("entry", ["minimize", "scipy"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [(12,), (3, 4), (1, 3, 4)], ids=str)
def test_minimize_interrupted_keeps_the_last_iterate(entry, where, error, dtype, shape):
    f, g = _quadratic(dtype, shape)
    x0 = np.zeros(shape, dtype)
    stop_at = 7  # the 7th call: fun and jac are called once per iterate (x0 first)
    fails = Fails(error, stop_at)

    fw, gw = fails.at_place(where, "fun", f), fails.at_place(where, "jac", g)
    cb = fails.at_place(where, "callback")

    res = _outcome(lambda: _run_minimize(entry, fw, gw, x0, callback=cb), error)
    reached = stop_at - 2 if where != "callback" else stop_at  # updates accepted
    assert res.status == INTERRUPTED and not res.success
    assert type(error).__name__ in res.message
    assert res.nit == reached
    ref = _run_minimize(entry, f, g, x0, maxiter=reached)
    np.testing.assert_array_equal(res.x, ref.x)
    assert res.fun == ref.fun == f(res.x.reshape(shape))
    np.testing.assert_array_equal(res.jac, ref.jac)


def test_a_sigint_in_fun_returns_the_last_iterate(rng):
    f, g = _quadratic(np.float64, (3, 4))
    calls = []

    def fw(x):
        calls.append(1)
        if len(calls) == 5:
            signal.raise_signal(signal.SIGINT)  # as Ctrl-C: raised at the next bytecode
        return f(x)

    res = minimize(fw, np.zeros((3, 4)), jac=g, options=OPTIONS)
    assert res.status == INTERRUPTED and res.nit == 3


def test_an_exception_at_x0_propagates_unchanged():
    def f(x):
        raise ValueError("bad start")
    with pytest.raises(ValueError, match="bad start") as info:
        minimize(f, np.zeros(3), jac=lambda x: x)
    assert not hasattr(info.value, "optimize_result")
    with pytest.raises(KeyboardInterrupt):
        minimize(lambda x: (_ for _ in ()).throw(KeyboardInterrupt()), np.zeros(3),
                 jac=lambda x: x)


def test_disp_prints_the_interrupt(capsys):
    f, g = _quadratic(np.float64, (12,))
    fails = Fails(KeyboardInterrupt(), 4)

    def fw(x):
        fails.tick()
        return f(x)
    res = minimize(fw, np.zeros(12), jac=g, options=dict(OPTIONS, disp=True))
    assert res.status == INTERRUPTED
    assert "Warning: Interrupted by KeyboardInterrupt" in capsys.readouterr().out


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("where", ["fun", "jac", "callback"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_least_squares_interrupted_keeps_the_last_iterate(where, error, dtype):
    t = np.linspace(0, 1, 20)
    y = (2.0 * np.exp(-1.3 * t)).astype(dtype)

    def r(x):
        return (x[0] * np.exp(-x[1] * t) - y).astype(dtype)

    def J(x):
        e = np.exp(-x[1] * t)
        return np.stack([e, -x[0] * t * e], axis=1).astype(dtype)

    fails = Fails(error, 9)

    rw, Jw = fails.at_place(where, "fun", r), fails.at_place(where, "jac", J)
    cb = fails.at_place(where, "callback")

    x0 = np.array([1.0, 1.0], dtype)
    res = _outcome(lambda: least_squares(rw, x0, jac=Jw, callback=cb), error)
    reached = 7 if where != "callback" else 9
    assert res.status == INTERRUPTED and not res.success and res.nit == reached
    assert res.phase == "adafactor" and list(res.phases) == ["adafactor"]  # no finish
    ref = least_squares(r, x0, jac=J, options={"maxiter": reached, "finish": False})
    # maxiter returns the lowest-cost iterate: the last one on this descent
    np.testing.assert_array_equal(res.x, ref.x)
    assert res.cost == ref.cost
    np.testing.assert_array_equal(res.fun, r(res.x))


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("where", ["fun", "jac", "callback"])
def test_least_squares_interrupted_in_the_finish(where, error):
    """An interrupt in SciPy's trf ends the run there (no trf from x0), at its last
    iterate whose Jacobian is known; 5 Adafactor iterations make 6 calls of each."""
    t = np.linspace(0, 1, 20)
    y = 2.0 * np.exp(-1.3 * t)

    def r(x):
        return x[0] * np.exp(-x[1] * t) - y

    def J(x):
        e = np.exp(-x[1] * t)
        return np.stack([e, -x[0] * t * e], axis=1)

    at = {"fun": 9, "jac": 8, "callback": 7}[where]  # each inside the finish
    fails = Fails(error, at)
    rw, Jw = fails.at_place(where, "fun", r), fails.at_place(where, "jac", J)
    cb = fails.at_place(where, "callback")
    x0 = np.array([1.0, 1.0])
    options = {"maxiter": 5}
    res = _outcome(lambda: least_squares(rw, x0, jac=Jw, callback=cb, options=options), error)
    assert res.status == INTERRUPTED and not res.success and res.nit == 5
    assert res.phase == "trf" and list(res.phases) == ["adafactor", "trf"]
    assert res.phases["trf"].status == INTERRUPTED and res.phases["adafactor"].status == 0
    np.testing.assert_array_equal(res.fun, r(res.x))
    np.testing.assert_array_equal(res.jac, J(res.x))
    assert res.cost <= res.phases["adafactor"].cost
    # the iterate after the trf iterations completed (the finish's start if none), as an
    # uninterrupted run's callback sees them
    start = least_squares(r, x0, jac=J, options=dict(options, finish=False)).x
    seen = []
    least_squares(r, x0, jac=J, options=options,
                  callback=lambda intermediate_result: seen.append(intermediate_result.x))
    done = res.phases["trf"].nit
    np.testing.assert_array_equal(res.x, seen[5 + done - 1] if done else start)
    if where == "fun":
        assert res.nfev == at  # the call that raised was made


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("where", ["fun", "callback", "batches"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_minimize_stochastic_interrupted_keeps_the_last_iterate(where, error, dtype):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((64, 3)).astype(dtype)

    def fg(x, batch):
        d = x - batch
        return 0.5 * float(np.sum(d * d)), d.sum(axis=0).astype(dtype)

    fails = Fails(error, 6)

    fgw, cb = fails.at_place(where, "fun", fg), fails.at_place(where, "callback")
    sampler = fails.at_place(where, "batches", lambda gen: data[gen.integers(0, 64, 8)])

    options = dict(seed=1, maxiter=50, lr=0.05, scale_parameter=False)
    x0 = np.zeros(3, dtype)
    res = _outcome(lambda: minimize_stochastic(fgw, x0, sampler, jac=True, callback=cb,
                                               options=options), error)
    reached = 5 if where != "callback" else 6
    assert res.status == INTERRUPTED and not res.success and res.nit == reached
    ref = minimize_stochastic(fg, x0, lambda gen: data[gen.integers(0, 64, 8)], jac=True,
                              options=dict(options, maxiter=reached))
    np.testing.assert_array_equal(res.x, ref.x)


def test_minimize_stochastic_interrupt_does_not_call_eval_fun_again():
    data = np.arange(30.0).reshape(10, 3)
    evals = []

    def eval_fun(x):
        evals.append(1)
        return float(np.sum((x - data.mean(0)) ** 2))

    fails = Fails(KeyboardInterrupt(), 4)

    def fg(x, batch):
        fails.tick()
        d = x - batch
        return 0.5 * float(np.sum(d * d)), d.sum(axis=0)

    res = minimize_stochastic(fg, np.zeros(3), fastfactor.minibatches(data, batch_size=2),
                              jac=True, options=dict(eval_fun=eval_fun, eval_every=100))
    assert res.status == INTERRUPTED and len(evals) == 1 and np.isnan(res.fun)
