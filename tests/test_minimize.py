"""Both minimize entry points against reference trajectories, scale invariance, convergence."""

import numpy as np
import pytest
import scipy.optimize as so

import fastfactor
from fastfactor import adafactor
from helpers import DTYPES, Problem, assert_close, dtype_id
from reference import reference_minimize

N_ITER = 25

# name: (shape of the problem, shapes option or None (one block of that shape), hyper)
TRAJECTORY_CASES = {
    "vector": ((20,), None, {}),
    "matrix": ((8, 6), None, {}),
    "matrix_wide": ((3, 11), None, dict(beta1=0.9)),
    "3d": ((3, 4, 5), None, {}),
    "multi_block": ((59,), [(6, 5), (5,), (2, 3, 4)], {}),
    "multi_block_hyper": ((59,), [(6, 5), (5,), (2, 3, 4)],
                          dict(lr=lambda t: 0.2 / np.sqrt(t), beta1=0.5, weight_decay=0.01)),
    "multi_block_2d_x0": ((6, 5), [(4, 5), (10,)], dict(lr=0.05, scale_parameter=False)),
}


def _flat_shapes(shape, shapes):
    """The shapes option of the flat-x entry point: by default, one block of ``shape``."""
    return [shape] if shapes is None else shapes


def _reference(problem, shapes, hyper, n_iter=N_ITER):
    return reference_minimize(problem.grad_shaped, problem.x0, n_iter, shapes=shapes, **hyper)


def _recorder():
    seen = []

    def callback(xk):
        seen.append(np.array(xk, copy=True))

    return seen, callback


def _check_result(res, problem, traj, dtype, n_iter=N_ITER):
    assert res.status == 1 and not res.success
    assert res.nit == n_iter
    assert res.x.dtype == np.dtype(dtype)
    assert_close(res.x, traj[n_iter], dtype)
    # fun and jac are evaluated AT res.x
    assert res.fun == pytest.approx(problem.fun(res.x), rel=1e-12 if dtype == np.float64 else 1e-6)
    assert_close(np.asarray(res.jac).reshape(res.x.shape), problem.grad(res.x), dtype, scale=10.0)
    assert res.nfev == n_iter + 1 and res.njev == n_iter + 1


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape, shapes, hyper", TRAJECTORY_CASES.values(),
                         ids=TRAJECTORY_CASES.keys())
def test_scipy_entry_point_trajectory(shape, shapes, hyper, dtype):
    problem = Problem(shape, dtype, seed=1, flat=True)
    flat_shapes = _flat_shapes(shape, shapes)
    traj = _reference(problem, flat_shapes, hyper)
    seen, callback = _recorder()
    res = so.minimize(
        problem.fun,
        problem.x0,
        method=adafactor,
        jac=problem.grad,
        callback=callback,
        options=dict(shapes=flat_shapes, maxiter=N_ITER, gtol=0.0, **hyper),
    )
    assert res.x.shape == problem.x0.shape
    assert len(seen) == N_ITER
    for k, xk in enumerate(seen):
        assert_close(xk, traj[k + 1], dtype, err_msg=f"iterate {k + 1}")
    _check_result(res, problem, traj, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape, shapes, hyper", TRAJECTORY_CASES.values(),
                         ids=TRAJECTORY_CASES.keys())
def test_fastfactor_minimize_trajectory(shape, shapes, hyper, dtype):
    problem = Problem(shape, dtype, seed=2)
    traj = _reference(problem, shapes, hyper)  # shapes=None: one block of x0's shape
    seen, callback = _recorder()
    options = dict(maxiter=N_ITER, gtol=0.0, **hyper)
    if shapes is not None:
        options["shapes"] = shapes
    res = fastfactor.minimize(problem.fun, problem.x0, jac=problem.grad, callback=callback,
                              options=options)
    assert res.x.shape == shape
    assert np.shape(res.jac) == shape
    assert len(seen) == N_ITER
    for k, xk in enumerate(seen):
        assert np.shape(xk) == shape
        assert_close(xk, traj[k + 1], dtype, err_msg=f"iterate {k + 1}")
    _check_result(res, problem, traj, dtype)


def test_default_shapes_of_fastfactor_minimize_factor_the_matrix():
    """fastfactor.minimize on a matrix factors it (differs from the same run as a flat vector)."""
    problem = Problem((8, 6), seed=3)
    opts = dict(maxiter=10, gtol=0.0)
    as_matrix = fastfactor.minimize(problem.fun, problem.x0, jac=problem.grad, options=opts)
    as_vector = fastfactor.minimize(problem.fun, problem.x0, jac=problem.grad,
                                    options=dict(opts, shapes=48))
    matrix_ref = _reference(problem, None, {}, 10)[-1]
    vector_ref = _reference(problem, [(48,)], {}, 10)[-1]
    assert not np.allclose(matrix_ref, vector_ref, rtol=1e-6, atol=0)
    assert_close(as_matrix.x, matrix_ref)
    assert_close(as_vector.x, vector_ref)


def test_both_entry_points_agree():
    problem = Problem((6, 7), seed=4)
    opts = dict(maxiter=15, gtol=0.0, beta1=0.9)
    a = fastfactor.minimize(problem.fun, problem.x0, jac=problem.grad, options=opts)
    b = so.minimize(lambda x: problem.fun(x.reshape(6, 7)), problem.x0.ravel(), method=adafactor,
                    jac=lambda x: problem.grad(x.reshape(6, 7)).ravel(),
                    options=dict(opts, shapes=(6, 7)))
    np.testing.assert_array_equal(a.x.ravel(), b.x)
    assert a.nit == b.nit == 15


def test_maxiter_zero():
    problem = Problem((5, 4), seed=5)
    res = fastfactor.minimize(problem.fun, problem.x0, jac=problem.grad, options=dict(maxiter=0))
    assert res.nit == 0 and res.status == 1 and not res.success
    np.testing.assert_array_equal(res.x, problem.x0)
    assert res.nfev == 1 and res.njev == 1
    assert res.fun == pytest.approx(problem.fun(problem.x0), rel=1e-14)


def test_gtol_stop_counts(rng):
    """Stop at the first iterate whose max|g| <= gtol: nit = that index, nfev = nit + 1."""
    problem = Problem((4, 5), seed=6)
    hyper = dict(lr=lambda t: 0.3 / t, scale_parameter=False)
    traj = _reference(problem, None, hyper, 200)
    gmax = [np.max(np.abs(problem.grad_shaped(x))) for x in traj]
    gtol = float(np.sort(gmax)[len(gmax) // 2])  # reached somewhere mid-way
    k = next(i for i, v in enumerate(gmax) if v <= gtol)
    assert 0 < k < 200
    res = fastfactor.minimize(problem.fun, problem.x0, jac=problem.grad,
                              options=dict(maxiter=200, gtol=gtol, **hyper))
    assert res.status == 0 and res.success
    assert res.nit == k and res.nfev == k + 1 and res.njev == k + 1
    assert_close(res.x, traj[k])
    assert np.max(np.abs(res.jac)) <= gtol


# --- invariance to the scale of the objective ----------------------------------------


@pytest.mark.parametrize("entry", ["scipy", "fastfactor"])
@pytest.mark.parametrize("shape", [(30,), (7, 9), (2, 5, 4)], ids=str)
def test_scale_invariance(shape, entry):
    """Adafactor's update is invariant to f -> c f (c > 0): the same iterates."""
    runs = []
    for scale in (1.0, 1e3, 1e-3):
        problem = Problem(shape, seed=7, scale=scale, flat=entry == "scipy")
        seen, callback = _recorder()
        opts = dict(maxiter=30, gtol=0.0, beta1=0.9)
        if entry == "scipy":
            so.minimize(problem.fun, problem.x0, method=adafactor, jac=problem.grad,
                        callback=callback, options=dict(opts, shapes=shape))
        else:
            fastfactor.minimize(problem.fun, problem.x0, jac=problem.grad, callback=callback,
                                options=opts)
        runs.append(np.array(seen))
    assert runs[0].shape[0] == 30
    assert not np.allclose(runs[0][0], runs[0][-1])  # it moved
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], rtol=1e-10, atol=1e-12)


# --- a real convergence test ---------------------------------------------------------


def _least_squares(n_obs=60, n=12, m=7, seed=8):
    r = np.random.default_rng(seed)
    A = r.standard_normal((n_obs, n)) * np.linspace(0.5, 2.0, n)
    W_true = r.standard_normal((n, m))
    B = A @ W_true

    def fun_and_grad(x):
        W = x.reshape(n, m)
        E = A @ W - B
        return 0.5 * np.sum(E * E) / n_obs, (A.T @ E / n_obs).ravel()

    return fun_and_grad, W_true


def test_converges_least_squares_scipy():
    fg, W_true = _least_squares()
    n, m = W_true.shape
    res = so.minimize(
        fg,
        np.zeros(n * m),
        method=adafactor,
        jac=True,
        # a fixed step keeps the (clipped, normalised) updates at their size: decay it
        options=dict(shapes=(n, m), maxiter=20_000, gtol=1e-7, lr=lambda t: 0.1 * 0.998**t,
                     scale_parameter=False),
    )
    assert res.success and res.status == 0, res.message
    assert np.max(np.abs(res.jac)) <= 1e-7
    assert 100 < res.nit < 20_000
    np.testing.assert_allclose(res.x.reshape(n, m), W_true, atol=1e-6)
    assert res.fun < 1e-10


def test_converges_low_rank_fit():
    """A non-convex fit M ~ U V^T over two factored blocks reaches a small gradient."""
    r = np.random.default_rng(9)
    n, m, k = 30, 20, 3
    M = r.standard_normal((n, k)) @ r.standard_normal((k, m)) / np.sqrt(k)

    def fun_and_grad(x):
        U = x[: n * k].reshape(n, k)
        V = x[n * k :].reshape(m, k)
        E = U @ V.T - M
        return 0.5 * np.sum(E * E), np.concatenate([(E @ V).ravel(), (E.T @ U).ravel()])

    x0 = 0.5 * r.standard_normal(n * k + m * k)
    res = so.minimize(
        fun_and_grad,
        x0,
        method=adafactor,
        jac=True,
        options=dict(shapes=[(n, k), (m, k)], maxiter=20_000, gtol=1e-6,
                     lr=lambda t: 0.1 * 0.999**t),
    )
    assert res.success, res.message
    assert np.max(np.abs(res.jac)) <= 1e-6
    U = res.x[: n * k].reshape(n, k)
    V = res.x[n * k :].reshape(m, k)
    assert np.linalg.norm(U @ V.T - M) / np.linalg.norm(M) < 1e-4
