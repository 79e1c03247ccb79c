"""fastfactor.dask on a LocalCluster of 2 worker processes of 1 thread each.

Every number is checked against NumPy or SciPy on the same data gathered locally:
``DataSum`` against the plain sum (and 300 iterations of ``fastfactor.minimize``),
``least_squares`` against ``numpy.linalg.lstsq`` (200,000 × 50 in 8 partitions) and
``scipy.optimize.least_squares``, ``minimize_stochastic`` against the least-squares
solution; float64 and float32, vector and matrix x0. The workers' transfer logs show
that no data moves between them during a solve; a worker killed mid-solve does not
stop it. One cluster for the module (starting one takes seconds).
"""

import inspect
import os

import numpy as np
import pytest
import scipy.optimize as so

pytest.importorskip("dask.distributed")

import dask.array as da  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

import fastfactor  # noqa: E402
from fastfactor.dask import (  # noqa: E402
    FINISH_MAX_N,
    DataSum,
    EvaluationFailed,
    _placement,
    least_squares,
    minimize_stochastic,
)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cl:
        yield cl


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster) as c:
        yield c


def data(m=4000, n=6, chunks=500, dtype=np.float64, seed=0):
    rng = da.random.default_rng(seed)
    A = rng.standard_normal((m, n), chunks=(chunks, n)).astype(dtype)
    x_true = np.linspace(-1.0, 2.0, n).astype(dtype)
    b = (A @ x_true + 0.1 * rng.standard_normal(m, chunks=chunks)).astype(dtype)
    return A, b


def fg_vector(x, A, b):
    r = A @ x - b
    return 0.5 * float(r @ r), A.T @ r


def fg_matrix(X, A, B):
    R = A @ X - B
    return 0.5 * float(np.sum(R * R)), A.T @ R


def transfers(client):
    """Keys moved between workers so far, per worker."""
    logs = client.run(lambda dask_worker: [list(e["keys"]) for e in
                                           dask_worker.transfer_incoming_log])
    return {w: [k for e in entries for k in e] for w, entries in logs.items()}


# --- errors -------------------------------------------------------------------------------

def test_no_client_is_a_clear_error(monkeypatch):
    import distributed

    def none():
        raise ValueError("No clients found")
    monkeypatch.setattr(distributed.Client, "current", staticmethod(none))
    A, b = data(100, 2, 50)
    with pytest.raises(ValueError, match=r"no distributed.Client exists.*Client\(\)"):
        DataSum(fg_vector, A, b)


def test_chunks_that_do_not_line_up(client):
    A, b = data(100, 2, 50)
    with pytest.raises(ValueError, match=r"row chunks do not line up.*rechunk"):
        DataSum(fg_vector, A, b.rechunk(40))
    with pytest.raises(TypeError, match="from_array"):
        DataSum(fg_vector, A, np.zeros(100))
    with pytest.raises(ValueError, match="timeout"):
        DataSum(fg_vector, A, b, timeout=0)


def test_errors_of_fg_reach_the_client(client):
    A, b = data(100, 2, 50)
    with DataSum(lambda x, A, b: 1.0, A, b) as ds:
        with pytest.raises(TypeError, match=r"fg must return \(f, g\)"):
            ds(np.zeros(2))


def test_rows_that_differ_are_named(client):
    A, b = data(100, 2, 50)
    with pytest.raises(ValueError, match="array 1 .*has 50 rows, array 0 has 100"):
        DataSum(fg_vector, A, b[:50])


def test_a_closed_datasum_says_so(client):
    A, b = data(100, 2, 50)
    ds = DataSum(fg_vector, A, b)
    ds(np.zeros(2))
    ds.close()
    assert ds.closed and "closed" in repr(ds)
    for call in (ds, ds.fun, ds.jac):
        with pytest.raises(ValueError, match="closed"):
            call(np.zeros(2))
    ds.close()  # twice: nothing


def test_the_blocks_are_read_only(client):
    A, b = data(100, 2, 50)

    def fg_writes(x, A, b):
        A *= 2.0  # would change the cluster's copy for every later evaluation
        return fg_vector(x, A, b)

    with DataSum(fg_writes, A, b) as ds:
        with pytest.raises(ValueError, match="read-only"):
            ds(np.zeros(2))


def _interrupting(x, A, b):
    if x[0] != 0:  # from the second evaluation on
        raise KeyboardInterrupt("stop")
    return fg_vector(x, A, b)


def test_a_keyboard_interrupt_on_a_worker_ends_the_run(client):
    # let through, it would stop the worker process: the evaluation retried, then
    # EvaluationFailed without the user's exception
    A, b = data(200, 2, 50)
    with DataSum(_interrupting, A, b, timeout=30, retries=1) as ds:
        with pytest.raises(RuntimeError, match="raised KeyboardInterrupt.*not retried") as err:
            fastfactor.minimize(ds, np.zeros(2), jac=True, options={"maxiter": 5})
        assert ds.partitions.attempts == 0
    assert not isinstance(err.value, EvaluationFailed)
    assert err.value.optimize_result.status == 98


def test_waits_are_bounded_in_this_thread(client, monkeypatch):
    # a stopped event loop never ends a wait it times: the client thread must
    class Never:
        def exception(self, timeout=None):
            assert timeout is not None
            raise TimeoutError
    start = _placement.time.monotonic()
    assert not _placement._await([Never()], start + 0.1, True)
    monkeypatch.setattr(_placement, "POLL", 0.05)
    A, b = data(100, 2, 50)
    with DataSum(fg_vector, A, b, timeout=0.2) as ds:
        assert ds.partitions._wait([Never()]) is None


# --- DataSum --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("matrix", [False, True])
def test_datasum_equals_the_local_sum(client, dtype, matrix):
    A, b = data(3000, 5, 400, dtype)  # uneven chunks: 8 of 400 rows, one of 200
    if matrix:
        B = da.stack([b, 2 * b, -b], axis=1)
        ds, fg, x = DataSum(fg_matrix, A, B), fg_matrix, np.ones((5, 3), dtype)
        An, Bn = da.compute(A, B)
    else:
        ds, fg, x = DataSum(fg_vector, A, b), fg_vector, np.ones(5, dtype)
        An, Bn = da.compute(A, b)
    with ds:
        f, g = ds(x)
        f_ref, g_ref = fg(x.astype(np.float64), An.astype(np.float64), Bn.astype(np.float64))
        rtol = 1e-12 if dtype == np.float64 else 1e-5
        assert g.shape == x.shape and g.dtype == dtype
        np.testing.assert_allclose(f, f_ref, rtol=rtol)
        np.testing.assert_allclose(g, g_ref, rtol=rtol, atol=rtol * np.abs(g_ref).max())
        assert ds.nfev == 1 and sum(ds.rows) == 3000 and len(ds.placement) == 2
        assert sorted(i for idx in ds.placement.values() for i in idx) == list(range(8))


def test_minimize_300_iterations_match_the_local_run(client):
    A, b = data(4000, 6, 500)
    An, bn = da.compute(A, b)
    options = {"beta1": 0.9, "maxiter": 300, "gtol": 0.0}
    before = transfers(client)
    with DataSum(fg_vector, A, b) as ds:
        after_setup = transfers(client)
        res = fastfactor.minimize(ds, np.ones(6), jac=True, options=options)
        assert transfers(client) == after_setup  # nothing moved during the solve
    assert before is not None
    ref = fastfactor.minimize(lambda x: fg_vector(x, An, bn), np.ones(6), jac=True,
                              options=options)
    assert res.nit == ref.nit == 300
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.fun, ref.fun, rtol=1e-12)


def test_scipy_methods_take_a_datasum(client):
    A, b = data(2000, 4, 500)
    An, bn = da.compute(A, b)
    x_ls = np.linalg.lstsq(An, bn, rcond=None)[0]
    with DataSum(fg_vector, A, b) as ds:
        res = so.minimize(ds, np.zeros(4), jac=True, method="L-BFGS-B")
        assert np.linalg.norm(res.x - x_ls) < 1e-6 * np.linalg.norm(x_ls)
        nfev = ds.nfev
        res = so.minimize(ds.fun, np.zeros(4), jac=ds.jac, method="BFGS")
        assert np.linalg.norm(res.x - x_ls) < 1e-6 * np.linalg.norm(x_ls)
        assert ds.nfev - nfev == res.nfev  # fun and jac at one x: one evaluation
        options = {"beta1": 0.9, "maxiter": 50}
        res = so.minimize(ds, np.zeros(4), jac=True, method=fastfactor.adafactor,
                          options=options)
    ref = so.minimize(lambda x: fg_vector(x, An, bn), np.zeros(4), jac=True,
                      method=fastfactor.adafactor, options=options)
    assert res.nit == ref.nit == 50
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-12)


# --- least squares -----------------------------------------------------------------------

def test_least_squares_200000_by_50_reaches_lstsq(client):
    m, n = 200_000, 50
    rng = da.random.default_rng(1)
    A = rng.standard_normal((m, n), chunks=(m // 8, n)) * 10.0 ** np.linspace(-1, 1, n)
    b = A @ np.linspace(-1, 1, n) + 0.1 * rng.standard_normal(m, chunks=m // 8)
    An, bn = da.compute(A, b)
    x_ls = np.linalg.lstsq(An, bn, rcond=None)[0]
    A, b = client.persist([A, b])
    setup = None

    def callback(intermediate_result):
        nonlocal setup
        assert intermediate_result.fun is None  # the residuals stay on the workers
        if setup is None:
            setup = transfers(client)

    res = least_squares(lambda x, A, b: A @ x - b, np.zeros(n), A, b,
                        jac=lambda x, A, b: A, callback=callback)
    assert transfers(client) == setup  # the partitions stayed where they were
    assert res.success and res.phase.startswith("trf")
    assert np.linalg.norm(res.x - x_ls) <= 1e-6 * np.linalg.norm(x_ls)
    r_ls = An @ x_ls - bn
    np.testing.assert_allclose(res.cost, 0.5 * r_ls @ r_ls, rtol=1e-12)
    np.testing.assert_allclose(res.grad, An.T @ (An @ res.x - bn), atol=1e-6)
    assert isinstance(res.fun, da.Array) and res.fun.shape == (m,) and res.jac is None
    np.testing.assert_allclose(0.5 * float((res.fun ** 2).sum().compute()), res.cost,
                               rtol=1e-12)


def _exp_problem(m=2000, chunks=250, dtype=np.float64, outliers=False):
    t = da.linspace(0, 4, m, chunks=chunks).astype(dtype)
    y = 3 * da.exp(-1.3 * t) + 0.5 + 0.01 * da.cos(7 * t)
    if outliers:
        y = y + 2.0 * (da.arange(m, chunks=chunks) % 97 == 0)
    return t, y.astype(dtype)


def _exp_resid(p, t, y):
    return p[0] * np.exp(-p[1] * t) + p[2] - y


def _exp_jac(p, t, y):
    e = np.exp(-p[1] * t)
    return np.column_stack([e, -p[0] * t * e, np.ones_like(t)])


@pytest.mark.parametrize("loss, bounds", [("linear", (-np.inf, np.inf)),
                                          ("soft_l1", ([0, 0, 0], [10, 1.2, 10])),
                                          ("cauchy", (-np.inf, np.inf))])
def test_least_squares_matches_scipy(client, loss, bounds):
    t, y = _exp_problem(outliers=loss != "linear")
    tn, yn = da.compute(t, y)
    tight = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12)
    ref = so.least_squares(_exp_resid, [1.0, 1.0, 0.0], jac=_exp_jac, args=(tn, yn),
                           loss=loss, f_scale=0.1, bounds=bounds, **tight)
    res = least_squares(_exp_resid, [1.0, 1.0, 0.0], t, y, jac=_exp_jac, loss=loss,
                        f_scale=0.1, bounds=bounds)
    assert res.success
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-6)
    np.testing.assert_allclose(res.cost, ref.cost, rtol=1e-9)
    np.testing.assert_array_equal(res.active_mask, ref.active_mask)
    local = fastfactor.least_squares(_exp_resid, [1.0, 1.0, 0.0], jac=_exp_jac,
                                     args=(tn, yn), loss=loss, f_scale=0.1, bounds=bounds)
    np.testing.assert_allclose(res.x, local.x, rtol=1e-6)


def test_least_squares_keywords_of_the_local_solver(client):
    t, y = _exp_problem(400, 100)
    res = least_squares(_exp_resid, [1.0, 1.0, 0.0], t, y, jac=_exp_jac, method="adafactor",
                        tr_solver="exact")
    assert res.success
    with pytest.raises(ValueError, match="method='trf' is one of scipy"):
        least_squares(_exp_resid, [1.0, 1.0, 0.0], t, y, method="trf")
    for key, value in [("tr_solver", "lsmr"), ("tr_options", {"atol": 1e-3}),
                       ("jac_sparsity", np.ones((400, 3))), ("workers", 2)]:
        with pytest.raises(ValueError, match=f"{key}.* not supported"):
            least_squares(_exp_resid, [1.0, 1.0, 0.0], t, y, **{key: value})
    assert "fastfactor.dask.FINISH_MAX_N" in inspect.getsource(least_squares)
    assert FINISH_MAX_N == 2000


def test_res_fun_has_a_chunk_per_partition(client):
    rows = (0, 300, 0, 700, 0)
    t, y = (v.rechunk({0: rows}) for v in _exp_problem(1000, 250))
    res = least_squares(_exp_resid, [1.0, 1.0, 0.0], t, y, jac=_exp_jac)
    assert res.fun.chunks == (rows,)
    phases = res.phases.values()
    assert sum(p.nfev for p in phases) == res.nfev  # x0's evaluation counted once
    np.testing.assert_allclose(0.5 * float((res.fun ** 2).sum().compute()), res.cost,
                               rtol=1e-12)


def test_least_squares_float32_matrix_x0_by_differences(client):
    # X: 3 x 2, residuals A X - B flattened; the Jacobian by forward differences on
    # the workers.
    rng = da.random.default_rng(3)
    A = rng.standard_normal((1200, 3), chunks=(300, 3)).astype(np.float32)
    B = (A @ np.array([[1.0, -1.0], [2.0, 0.5], [-0.5, 3.0]], np.float32)
         + 0.01 * rng.standard_normal((1200, 2), chunks=(300, 2))).astype(np.float32)
    An, Bn = da.compute(A, B)
    X_ls = np.linalg.lstsq(An.astype(float), Bn.astype(float), rcond=None)[0]
    res = least_squares(lambda X, A, B: A @ X - B, np.zeros((3, 2), np.float32), A, B)
    assert res.x.shape == (3, 2) and res.x.dtype == np.float32
    assert res.nfev > res.njev * 6  # the differences are counted
    np.testing.assert_allclose(res.x, X_ls, rtol=1e-3, atol=1e-3)


# --- mini-batches ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_minimize_stochastic_is_seeded_and_converges(client, dtype):
    A, b = data(8000, 5, 1000, dtype)
    An, bn = da.compute(A, b)
    x_ls = np.linalg.lstsq(An.astype(float), bn.astype(float), rcond=None)[0]

    def fun(x, A, b):
        r = A @ x - b
        return 0.5 * float(np.mean(r * r)), A.T @ r / len(b)

    options = {"epochs": 3, "seed": 5, "lr": lambda t: 2 / np.sqrt(t), "beta1": 0.9,
               "scale_parameter": False, "average": 30}
    res = minimize_stochastic(fun, np.zeros(5, dtype), A, b, batch_size=250,
                              options=options)
    assert res.x.dtype == dtype and res.status == 3 and res.epochs == 3
    assert res.nit == 3 * 32
    assert np.linalg.norm(res.x - x_ls) < 2e-2 * np.linalg.norm(x_ls)
    if dtype == np.float64:
        # the same draws and sums on another placement (new partitions): the same run
        options["epochs"] = 1
        first = minimize_stochastic(fun, np.zeros(5, dtype), A, b, batch_size=250,
                                    options=options)
        again = minimize_stochastic(fun, np.zeros(5, dtype), A, b, batch_size=250,
                                    options=options)
        np.testing.assert_array_equal(again.x, first.x)
        other = minimize_stochastic(fun, np.zeros(5, dtype), A, b, batch_size=250,
                                    options=dict(options, seed=6))
        assert not np.array_equal(other.x, first.x)


def test_minimize_stochastic_argument_types(client):
    A, b = data(100, 2, 50)
    for bad in (None, "64", True, 2.5):
        with pytest.raises(TypeError, match="batch_size must be an integer"):
            minimize_stochastic(fg_vector, np.zeros(2), A, b, batch_size=bad)
    with pytest.raises(ValueError, match="batch_size"):
        minimize_stochastic(fg_vector, np.zeros(2), A, b, batch_size=0)
    with pytest.raises(ValueError, match="seed must be None or an integer >= 0"):
        minimize_stochastic(fg_vector, np.zeros(2), A, b, batch_size=10,
                            options={"seed": -1})
    with pytest.raises(TypeError, match="seed must be"):
        minimize_stochastic(fg_vector, np.zeros(2), A, b, batch_size=10,
                            options={"seed": 1.5})


def test_batches_are_split_by_rows():
    rng = np.random.default_rng(0)
    rows = np.array([500, 500, 250, 10])
    drawn = 0
    for _ in range(400):
        counts = _stochastic_allocate(rows, 100, rng)
        share = 100 * rows / rows.sum()
        assert counts.sum() == 100 and np.all(counts >= np.floor(share))
        drawn += counts
    # on average each partition's share of the rows
    np.testing.assert_allclose(drawn / 400, share, rtol=0.05)


def _stochastic_allocate(rows, batch, rng):
    from fastfactor.dask._stochastic import allocate
    return allocate(rows, batch, rng)


# --- the worked example of docs/dask.rst -----------------------------------------------

def test_dask_lsq_example(tmp_path, monkeypatch):
    from test_examples import run_example

    ex, out = run_example("dask_lsq", tmp_path, monkeypatch)
    assert os.listdir(tmp_path) == ["dask_lsq.txt"]
    text = (tmp_path / "dask_lsq.txt").read_text()
    assert "OPENBLAS_NUM_THREADS" in text and "never gathered" in text
    assert out["success"] and out["phase"].startswith("trf")
    assert out["error"] < 1e-10  # against the normal equations
    assert out["moved"] == 0  # nothing moved between workers during the fit
    assert out["floor"] > 0 and out["gradient"] > 0
    # the conventions of the other examples (tests/test_examples.py)
    assert ex.__doc__.splitlines()[0] and not ex.__doc__.splitlines()[0].endswith(".")
    assert inspect.signature(ex.main).parameters["out_dir"].default == "."
    assert "--out-dir docs/examples``" in " ".join(ex.__doc__.split())


# --- faults (last: the cluster loses a worker process, which its nanny restarts) ----------

@pytest.mark.slow
def test_a_worker_killed_mid_solve_does_not_stop_it(client, monkeypatch):
    monkeypatch.setattr(_placement, "POLL", 0.2)
    A, b = data(4000, 6, 500)
    options = {"beta1": 0.9, "maxiter": 60, "gtol": 0.0}
    with DataSum(fg_vector, A, b) as ds:
        ref = fastfactor.minimize(ds, np.ones(6), jac=True, options=options)
    with DataSum(fg_vector, A, b, timeout=60) as ds:
        victim = next(iter(ds.placement))

        def kill(intermediate_result):
            if intermediate_result.nit == 20:
                import os
                try:
                    client.run(os._exit, 1, workers=[victim])
                except Exception:  # the worker dies before it answers
                    pass

        res = fastfactor.minimize(ds, np.ones(6), jac=True, callback=kill, options=options)
        assert ds.partitions.attempts >= 1 and victim not in ds.placement
    assert res.nit == 60
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-10)
    client.wait_for_workers(2, timeout=60)


def test_no_workers_left_is_said(client, monkeypatch):
    # the scheduler's workers all gone: the message says so, without waiting timeout
    monkeypatch.setattr(_placement, "POLL", 0.05)
    monkeypatch.setattr(_placement, "NO_WORKERS", 0.2)
    A, b = data(100, 2, 50)
    with DataSum(fg_vector, A, b, timeout=30, retries=3) as ds:
        parts = ds.partitions
        monkeypatch.setattr(parts, "_wait", lambda futures: False)  # "a worker left"
        monkeypatch.setattr(parts.client, "nthreads", lambda **kw: {})
        monkeypatch.setattr(_placement, "_await", lambda *a: False)  # nothing comes back
        start = _placement.time.monotonic()
        with pytest.raises(EvaluationFailed, match="the cluster has no workers left"):
            ds(np.zeros(2))
        assert _placement.time.monotonic() - start < 10
