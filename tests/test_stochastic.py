"""fastfactor.minimize_stochastic and fastfactor.minibatches: mini-batch fits checked
against np.linalg.lstsq, matrix completion, the batch sources, the stopping rules,
history/disp/progress, NaN handling and bad input."""

import sys
import types

import numpy as np
import pytest
from scipy.optimize import OptimizeWarning

import fastfactor
from fastfactor import minibatches, minimize_stochastic

# the settings that suit a convex fit from x0 = 0 (see docs/stochastic.rst)
CONVEX = {"lr": lambda t: 1 / np.sqrt(t), "beta1": 0.9, "scale_parameter": False}


def lsq_data(m=20000, n=20, seed=0, noise=0.5):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n)) * np.linspace(1, 3, n)
    b = A @ rng.standard_normal(n) + noise * rng.standard_normal(m)
    return A, b


def lsq_fun(x, batch):
    Ab, bb = batch
    r = Ab @ x - bb
    return 0.5 * np.mean(r * r), Ab.T @ r / len(bb)


def quad_fun(x, batch):
    """f = mean over the batch of ½‖x - c‖² (minimiser: the batch mean)."""
    d = x - batch
    return 0.5 * float(np.mean(np.sum(d * d, axis=-1))), np.mean(d, axis=0)


# --- the two workloads ---------------------------------------------------------------------


def test_least_squares_matches_lstsq_without_full_gradients():
    A, b = lsq_data()
    x_ls = np.linalg.lstsq(A, b, rcond=None)[0]
    rows = []

    def fun(x, batch):
        rows.append(len(batch[1]))
        return lsq_fun(x, batch)

    def full(x):
        r = A @ x - b
        return 0.5 * np.mean(r * r)

    A0, b0 = A.copy(), b.copy()
    batches = minibatches(A, b, batch_size=256, seed=1)
    res = minimize_stochastic(fun, np.zeros(20), batches, jac=True,
                              options=dict(CONVEX, epochs=4, average=150, eval_fun=full))
    assert res.status == 3 and res.epochs == 4 and res.nit == 4 * len(batches) == 316
    assert np.linalg.norm(res.x - x_ls) < 2e-3 * np.linalg.norm(x_ls)
    assert res.fun == pytest.approx(full(res.x)) and res.fun < full(x_ls) * (1 + 5e-4)
    # one batch per update, never all rows; the full objective only at the evaluations
    assert len(rows) == res.nit == res.nfev and max(rows) == 256
    assert res.neval == 5  # x0 and the end of each of the 4 epochs
    np.testing.assert_array_equal(res.history["nit"], [0, 79, 158, 237, 316])
    np.testing.assert_array_equal(A, A0)
    np.testing.assert_array_equal(b, b0)


def test_averaging_removes_the_noise_of_the_last_iterates():
    A, b = lsq_data(m=8000, n=10, seed=3, noise=2.0)
    x_ls = np.linalg.lstsq(A, b, rcond=None)[0]
    errs = {}
    for average in (None, 100):
        res = minimize_stochastic(lsq_fun, np.zeros(10), minibatches(A, b, batch_size=64, seed=2),
                                  jac=True, options=dict(CONVEX, epochs=2, average=average))
        errs[average] = np.linalg.norm(res.x - x_ls)
    assert errs[100] < 0.3 * errs[None]


def test_matrix_completion_recovers_low_rank_matrix():
    rng = np.random.default_rng(5)
    n, m, r = 30, 20, 2
    M = rng.standard_normal((n, r)) @ rng.standard_normal((r, m))
    rows, cols = np.nonzero(rng.random((n, m)) < 0.6)
    vals = M[rows, cols]

    def fun(X, batch):
        i, j, v = batch
        U, V = X[:n], X[n:]
        e = np.sum(U[i] * V[j], axis=1) - v
        G = np.zeros_like(X)
        np.add.at(G, i, e[:, None] * V[j])
        np.add.at(G, n + j, e[:, None] * U[i])
        return 0.5 * np.mean(e * e), G / len(v)

    X0 = 0.1 * rng.standard_normal((n + m, r))  # one factored (n+m) x r block
    res = minimize_stochastic(fun, X0, minibatches(rows, cols, vals, batch_size=64, seed=6),
                              jac=True, options={"epochs": 250, "beta1": 0.9})
    U, V = res.x[:n], res.x[n:]
    assert res.x.shape == X0.shape
    assert np.linalg.norm(U @ V.T - M) < 1e-3 * np.linalg.norm(M)  # unobserved entries too


# --- batch sources -------------------------------------------------------------------------


def test_list_is_reiterated_per_epoch():
    data = np.arange(10.0).reshape(5, 2)
    batches = [data[i:i + 1] for i in range(5)]
    seen = []

    def fun(x, batch):
        seen.append(batch[0, 0])
        return quad_fun(x, batch)

    res = minimize_stochastic(fun, np.zeros(2), batches, jac=True, options={"epochs": 3})
    assert res.nit == 15 and res.epochs == 3 and res.status == 3 and not res.success
    assert seen == [0.0, 2.0, 4.0, 6.0, 8.0] * 3


def test_generator_ends_the_run_when_exhausted():
    gen = (np.full((4, 2), float(k)) for k in range(7))
    res = minimize_stochastic(quad_fun, np.zeros(2), gen, jac=True, options={"epochs": 5})
    assert res.status == 3 and res.nit == 7 and res.epochs == 1


def test_sampler_seed_epochs_and_reproducibility():
    centre = np.array([1.0, -2.0, 3.0])
    received = []

    def sampler(rng):
        received.append(rng)
        return centre + 0.1 * rng.standard_normal((8, 3))

    opts = {"epochs": 3, "batches_per_epoch": 40, "seed": 123, "lr": 0.05,
            "scale_parameter": False}
    res1 = minimize_stochastic(quad_fun, np.zeros(3), sampler, jac=True, options=opts)
    res2 = minimize_stochastic(quad_fun, np.zeros(3), sampler, jac=True, options=opts)
    res3 = minimize_stochastic(quad_fun, np.zeros(3), sampler, jac=True,
                               options=dict(opts, seed=124))
    assert isinstance(received[0], np.random.Generator)
    assert res1.nit == 120 and res1.epochs == 3 and res1.status == 3
    np.testing.assert_array_equal(res1.x, res2.x)
    assert not np.array_equal(res1.x, res3.x)
    np.testing.assert_allclose(res1.x, centre, atol=0.1)


def test_default_maxiter_and_eval_every():
    res = minimize_stochastic(quad_fun, np.zeros(2), lambda rng: np.ones((2, 2)), jac=True)
    assert res.status == 1 and res.nit == 1000 and res.epochs == 0
    np.testing.assert_array_equal(res.history["nit"], np.arange(0, 1001, 100))
    res = minimize_stochastic(quad_fun, np.zeros(2), [np.ones((1, 2))] * 7, jac=True,
                              options={"maxiter": 30})
    assert res.status == 1 and res.nit == 30 and res.epochs == 4
    np.testing.assert_array_equal(res.history["nit"], [0, 7, 14, 21, 28, 30])


# --- stopping rules ------------------------------------------------------------------------


def test_target_stops_successfully():
    centre = np.array([2.0, -1.0])

    def eval_fun(x):
        return float(np.sum((x - centre) ** 2))

    res = minimize_stochastic(quad_fun, np.zeros(2), lambda rng: centre[None, :], jac=True,
                              options={"eval_fun": eval_fun, "target": 1e-2, "eval_every": 5,
                                       "lr": lambda t: 0.3 / np.sqrt(t), "scale_parameter": False,
                                       "maxiter": 5000})
    assert res.status == 0 and res.success
    assert res.fun <= 1e-2 and res.fun == eval_fun(res.x) == res.history["fun"][-1]
    assert res.nit % 5 == 0 and res.nit < 5000
    assert np.all(res.history["fun"][:-1] > 1e-2)


def test_target_met_at_x0():
    res = minimize_stochastic(quad_fun, np.zeros(2), lambda rng: np.zeros((1, 2)), jac=True,
                              options={"eval_fun": lambda x: 0.0, "target": 0.0})
    assert res.status == 0 and res.nit == 0 and res.nfev == 0


def test_patience_stops_on_a_plateau():
    values = iter([5.0, 4.0, 3.0, 3.0, 3.5, 2.9999, 3.0, 3.0, 1.0])
    res = minimize_stochastic(quad_fun, np.zeros(2), lambda rng: np.ones((1, 2)), jac=True,
                              options={"eval_fun": lambda x: next(values), "eval_every": 2,
                                       "patience": 3, "min_delta": 1e-3, "maxiter": 100})
    # improvements by more than 1e-3 at evaluations 1-3; then 3 evaluations without
    assert res.status == 4 and res.success
    assert res.neval == 6 and res.nit == 10


def test_restore_best_returns_the_best_evaluated_iterate():
    # the iterate walks away from the eval_fun minimum at 0.3: the best is early on
    res = minimize_stochastic(lambda x, batch: (float(-x[0]), -np.ones(1)), np.zeros(1),
                              [None], jac=True,
                              options={"eval_fun": lambda x: float((x[0] - 0.3) ** 2),
                                       "eval_every": 10, "maxiter": 200, "lr": 0.01,
                                       "scale_parameter": False, "restore_best": True})
    h = res.history
    assert res.fun == h["fun"].min() < h["fun"][-1]
    assert res.fun == pytest.approx((res.x[0] - 0.3) ** 2)
    assert res.nit == 200


# --- NaN, callback, history, disp, progress ------------------------------------------------


def test_nan_returns_the_previous_iterate():
    xs = {}

    def fun(x, batch):
        if x[0] > 0.3:
            return np.nan, np.zeros(1)
        return quad_fun(x, batch)

    def cb(intermediate_result):
        xs[intermediate_result.nit] = intermediate_result.x

    res = minimize_stochastic(fun, np.zeros(1), lambda rng: np.ones((1, 1)), jac=True,
                              callback=cb, options={"lr": 0.05, "scale_parameter": False})
    assert res.status == 2 and not res.success
    k = max(xs)  # x_k is where fun failed; x_{k-1} is returned
    assert xs[k][0] > 0.3 and res.nit == k - 1
    np.testing.assert_array_equal(res.x, xs[k - 1])

    res0 = minimize_stochastic(lambda x, b: (np.inf, x), np.ones(2), [1], jac=True)
    assert res0.status == 2 and res0.nit == 0
    np.testing.assert_array_equal(res0.x, np.ones(2))


def test_nan_in_eval_fun():
    res = minimize_stochastic(quad_fun, np.zeros(2), lambda rng: np.ones((1, 2)), jac=True,
                              options={"eval_fun": lambda x: np.nan if x[0] > 0.05 else 1.0,
                                       "eval_every": 3, "lr": 0.01, "scale_parameter": False})
    assert res.status == 2
    assert res.x[0] <= 0.05 + 0.01 + 1e-12  # one update before the failing evaluation
    res0 = minimize_stochastic(quad_fun, np.ones(2), [np.ones((1, 2))], jac=True,
                               options={"eval_fun": lambda x: np.nan})
    assert res0.status == 2 and res0.nit == 0 and res0.neval == 1 and res0.nfev == 0
    np.testing.assert_array_equal(res0.x, np.ones(2))


def test_callback_forms_and_stop():
    seen = []

    def cb(intermediate_result):
        seen.append(intermediate_result)
        if intermediate_result.nit == 4:
            raise StopIteration

    res = minimize_stochastic(quad_fun, np.zeros(2), [np.ones((1, 2))] * 3, jac=True, callback=cb)
    assert res.status == 99 and res.nit == 4
    assert [s.nit for s in seen] == [1, 2, 3, 4] and [s.epoch for s in seen] == [0, 0, 1, 1]
    assert seen[0].fun == pytest.approx(1.0)  # at x0 = 0 on the batch of ones
    xs = []
    minimize_stochastic(quad_fun, np.zeros(2), [np.ones((1, 2))], jac=True,
                        callback=lambda xk: xs.append(xk), options={"maxiter": 3})
    assert len(xs) == 3 and not np.shares_memory(xs[0], xs[1])


def test_history_without_eval_fun_and_fun_is_last_batch():
    res = minimize_stochastic(quad_fun, np.zeros(2), [np.full((1, 2), 2.0)] * 5, jac=True,
                              options={"epochs": 2})
    h = res.history
    assert set(h) == {"nit", "epoch", "fun", "batch_fun"}
    np.testing.assert_array_equal(h["nit"], [0, 5, 10])
    np.testing.assert_array_equal(h["epoch"], [0, 1, 2])
    assert np.all(np.isnan(h["fun"])) and np.isnan(h["batch_fun"][0])
    assert np.all(np.diff(h["batch_fun"][1:]) < 0)
    assert res.fun == res.batch_fun and np.isfinite(res.fun)


def test_disp_lines(capsys):
    minimize_stochastic(quad_fun, np.zeros(2), [np.ones((1, 2))] * 4, jac=True,
                        options={"epochs": 2, "eval_fun": lambda x: 1.0, "disp": True})
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["iter", "epoch", "batch", "fun", "eval", "fun"]
    assert [line.split()[0] for line in out[1:4]] == ["0", "4", "8"]
    assert any("Iterations: 8" in line for line in out) and "Epochs: 2" in out[-1]


def test_progress_with_and_without_tqdm(monkeypatch):
    bars = []

    class FakeBar:
        def __init__(self, total=None, **kw):
            self.total, self.n, self.closed, self.postfix = total, 0, False, None
            bars.append(self)

        def update(self, k):
            self.n += k

        def set_postfix(self, **kw):
            self.postfix = kw

        def close(self):
            self.closed = True

    auto = types.ModuleType("tqdm.auto")
    auto.tqdm = FakeBar
    monkeypatch.setitem(sys.modules, "tqdm", types.ModuleType("tqdm"))
    monkeypatch.setitem(sys.modules, "tqdm.auto", auto)
    minimize_stochastic(quad_fun, np.zeros(2), [np.ones((1, 2))] * 4, jac=True,
                        options={"epochs": 3, "progress": True})
    assert len(bars) == 1 and bars[0].total == 12 and bars[0].n == 12 and bars[0].closed
    assert "batch_fun" in bars[0].postfix
    minimize_stochastic(quad_fun, np.zeros(2), [np.ones((1, 2))], jac=True,
                        options={"epochs": 3})
    assert len(bars) == 1  # not asked for: not used

    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.warns(RuntimeWarning, match="tqdm"):
        res = minimize_stochastic(quad_fun, np.zeros(2), [np.ones((1, 2))], jac=True,
                                  options={"maxiter": 5, "progress": True})
    assert res.nit == 5


# --- jac forms, shapes, dtypes -------------------------------------------------------------


@pytest.mark.parametrize("form", ["callable", True, None, "3-point"])
def test_jac_forms_agree(form):
    batches = [np.array([[1.0, 2.0], [3.0, 0.0]]), np.array([[0.0, -1.0]])]
    if form == "callable":
        fun, jac = (lambda x, b: quad_fun(x, b)[0]), (lambda x, b: quad_fun(x, b)[1])
    elif form is True:
        fun, jac = quad_fun, True
    else:
        fun, jac = (lambda x, b: quad_fun(x, b)[0]), form
    opts = {"epochs": 6, "lr": 0.1, "scale_parameter": False}
    res = minimize_stochastic(fun, np.zeros(2), batches, jac=jac, options=opts)
    ref = minimize_stochastic(quad_fun, np.zeros(2), batches, jac=True, options=opts)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-6)
    assert res.nfev >= res.nit


def test_args_follow_the_batch():
    def fun(x, batch, scale, shift):
        return quad_fun(x, scale * batch + shift)

    res = minimize_stochastic(fun, np.zeros(2), [np.ones((1, 2))], args=(2.0, 1.0), jac=True,
                              options={"maxiter": 400, "lr": lambda t: 0.5 / np.sqrt(t),
                                       "scale_parameter": False})
    np.testing.assert_allclose(res.x, 3.0, atol=1e-2)


def test_shapes_and_float32():
    x0 = np.zeros(6, dtype=np.float32)
    x0_copy = x0.copy()
    res = minimize_stochastic(quad_fun, x0, [np.ones((1, 6), dtype=np.float32)], jac=True,
                              options={"shapes": [(2, 2), (2,)], "maxiter": 5})
    assert res.x.dtype == np.float32 and res.x.shape == (6,)
    np.testing.assert_array_equal(x0, x0_copy)


# --- minibatches ---------------------------------------------------------------------------


def test_minibatches_cover_every_row_once_per_epoch():
    X = np.arange(46.0).reshape(23, 2)
    y = np.arange(23)
    mb = minibatches(X, y, batch_size=5, seed=0)
    assert len(mb) == 5 and "batch_size=5" in repr(mb)
    epochs = [list(mb) for _ in range(2)]
    for ep in epochs:
        ys = np.concatenate([yb for _, yb in ep])
        assert sorted(ys) == list(range(23))
        for Xb, yb in ep:
            np.testing.assert_array_equal(Xb[:, 0], 2 * yb)  # rows stay aligned
    order = [np.concatenate([yb for _, yb in ep]) for ep in epochs]
    assert not np.array_equal(order[0], order[1])  # a new order per epoch
    again = [np.concatenate([yb for _, yb in minibatches(X, y, batch_size=5, seed=0)])]
    np.testing.assert_array_equal(again[0], order[0])  # reproducible
    assert len(minibatches(X, batch_size=5, drop_last=True)) == 4
    single = next(iter(minibatches(X, batch_size=4, shuffle=False)))
    assert isinstance(single, np.ndarray) and np.shares_memory(single, X)


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("batches, options, exc, words", [
    (5, {}, TypeError, "iterable of batches"),
    (lambda rng: 1, {"epochs": 2}, ValueError, "batches_per_epoch"),
    ([1], {"batches_per_epoch": 3}, ValueError, "for a sampler"),
    ([1], {"target": 0.0}, ValueError, "eval_fun"),
    ([1], {"patience": 3}, ValueError, "eval_fun"),
    ([1], {"restore_best": True}, ValueError, "eval_fun"),
    ([1], {"eval_fun": 3.0}, TypeError, "eval_fun must be"),
    ([1], {"eval_fun": len, "target": "low"}, TypeError, "target"),
    ([1], {"maxiter": -1}, ValueError, "maxiter"),
    ([1], {"eval_every": 0}, ValueError, "eval_every"),
    ([1], {"epochs": 1.5}, ValueError, "epochs"),
    ([1], {"average": -2}, ValueError, "average"),
    ([1], {"min_delta": -1}, ValueError, "min_delta"),
    ([1], {"device": "cuda"}, ValueError, "device"),
    ([1], {"decay_rate": 0.5}, ValueError, "decay_rate"),
    ([1], {"shapes": [(3,)]}, ValueError, "partition"),
    ([1], [("maxiter", 3)], TypeError, "options must be a dict"),
    ([], {}, ValueError, "no batch"),
])
def test_bad_input(batches, options, exc, words):
    with pytest.raises(exc) as info:
        minimize_stochastic(quad_fun, np.zeros(2), batches, jac=True, options=options)
    assert words in str(info.value)


def test_iterable_that_cannot_restart():
    class OneShot:
        def __init__(self):
            self.it = iter([np.ones((1, 2))] * 2)

        def __iter__(self):
            return self.it  # not self, and not a fresh iterator

    with pytest.raises(ValueError, match="epoch 2"):
        minimize_stochastic(quad_fun, np.zeros(2), OneShot(), jac=True, options={"epochs": 3})


def test_bad_minibatches_and_unknown_option():
    with pytest.raises(ValueError, match="same number of rows"):
        minibatches(np.zeros((3, 2)), np.zeros(4), batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        minibatches(np.zeros(3), batch_size=0)
    with pytest.raises(TypeError, match="at least one array"):
        minibatches(batch_size=2)
    with pytest.raises(ValueError, match="no batch"):
        minibatches(np.zeros(3), batch_size=4, drop_last=True)
    with pytest.warns(OptimizeWarning, match="epoch"):
        minimize_stochastic(quad_fun, np.zeros(2), [np.ones((1, 2))], jac=True,
                            options={"epoch": 2, "maxiter": 1})


def test_exported():
    assert fastfactor.minimize_stochastic is minimize_stochastic
    assert {"minimize_stochastic", "minibatches"} <= set(fastfactor.__all__)


def test_completed_epochs_are_not_a_warning(capsys):
    res = minimize_stochastic(lambda x, b: (0.5 * float(x @ x), x.copy()), np.ones(2), [0, 1],
                              jac=True, options={"epochs": 2, "disp": True})
    out = capsys.readouterr().out
    assert res.status == 3 and "Warning" not in out and res.message in out
