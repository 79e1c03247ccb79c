"""Self-tests of the NumPy reference (tests/reference.py) against the spec's numbers.

These tests do not import fastfactor: they pin down the reference itself, so that
comparisons of the package against it mean something.
"""

import math

import numpy as np
import pytest

from reference import (
    ALPHA1,
    C1,
    G1,
    R1,
    RMS_U1,
    U1,
    UHAT1,
    V1,
    X0,
    X1,
    ReferenceAdafactor,
    join_flat,
    reference_minimize,
    split_flat,
)


def _rms(a):
    return math.sqrt(float(np.mean(np.square(a))))


def test_worked_example_intermediates():
    opt = ReferenceAdafactor([(3, 3)])
    assert opt.rho(1) == 0.01
    assert _rms(X0) == pytest.approx(math.sqrt(8.05 / 9))
    assert _rms(X0) * 0.01 == pytest.approx(ALPHA1, abs=1e-8)
    (x1,) = opt.step([X0], [G1])
    block = opt.blocks[0]
    assert block.factored
    np.testing.assert_allclose(block.R, R1, atol=1e-6)
    np.testing.assert_allclose(block.C, C1, atol=1e-6)
    assert np.mean(block.R) == pytest.approx(0.133333, abs=1e-6)
    V = np.outer(block.R, block.C) / np.mean(block.R)
    np.testing.assert_allclose(V, V1, atol=1e-6)
    U = G1 / np.sqrt(V)
    np.testing.assert_allclose(U, U1, atol=1e-6)
    assert _rms(U) == pytest.approx(RMS_U1, abs=1e-6)
    np.testing.assert_allclose(U / _rms(U), UHAT1, atol=1e-6)
    np.testing.assert_allclose(x1, X1, atol=1e-6)
    # and the step really is alpha * Û
    np.testing.assert_allclose((X0 - x1) / ALPHA1, UHAT1, atol=1e-4)


def test_worked_example_returns_new_arrays():
    x0 = X0.copy()
    g = G1.copy()
    (x1,) = ReferenceAdafactor([(3, 3)]).step([x0], [g])
    assert x1 is not x0
    np.testing.assert_array_equal(x0, X0)
    np.testing.assert_array_equal(g, G1)


@pytest.mark.parametrize("how", ["vector", "min_dim"])
def test_worked_example_unfactored(how):
    """As one 9-vector (or a 3x3 block left unfactored), Û = sign(G1)."""
    if how == "vector":
        (x1,) = ReferenceAdafactor([(9,)]).step([X0.ravel()], [G1.ravel()])
        x1 = x1.reshape(3, 3)
    else:
        opt = ReferenceAdafactor([(3, 3)], min_dim_size_to_factor=4)
        (x1,) = opt.step([X0], [G1])
        assert not opt.blocks[0].factored
    np.testing.assert_allclose(x1, X0 - ALPHA1 * np.sign(G1), atol=1e-8)


def test_rank_one_square_gradient_is_exact():
    """If g² is rank one the factored V equals g² exactly (at t=1), so U = sign(g)."""
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 2.0, 5)
    b = rng.uniform(0.5, 2.0, 4)
    g = np.outer(a, b) * rng.choice([-1.0, 1.0], size=(5, 4))
    x = rng.standard_normal((5, 4))
    opt = ReferenceAdafactor([(5, 4)], lr=0.1, scale_parameter=False)
    (x1,) = opt.step([x], [g])
    np.testing.assert_allclose(x1, x - 0.1 * np.sign(g), rtol=1e-12, atol=1e-13)


def test_unfactored_matrix_equals_vector():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6))
    mat = ReferenceAdafactor([(4, 6)], min_dim_size_to_factor=7, beta1=0.9)
    vec = ReferenceAdafactor([(24,)], beta1=0.9)
    xm, xv = x.copy(), x.ravel().copy()
    for _ in range(5):
        g = rng.standard_normal((4, 6))
        (xm,) = mat.step([xm], [g])
        (xv,) = vec.step([xv], [g.ravel()])
    np.testing.assert_allclose(xm.ravel(), xv, rtol=1e-14)


def test_batch_without_coupling_equals_separate_matrices():
    """A 3-D block is a batch of matrices: with no clipping and no parameter scale
    (the only block-wide quantities), it equals independent 2-D blocks."""
    rng = np.random.default_rng(2)
    hyper = dict(lr=0.05, scale_parameter=False, clip_threshold=1e30)
    x = rng.standard_normal((3, 4, 5))
    batched = ReferenceAdafactor([(3, 4, 5)], **hyper)
    separate = ReferenceAdafactor([(4, 5)] * 3, **hyper)
    xb, xs = x.copy(), [x[i].copy() for i in range(3)]
    for _ in range(6):
        g = rng.standard_normal((3, 4, 5)) * rng.uniform(0.1, 10, (3, 1, 1))
        (xb,) = batched.step([xb], [g])
        xs = separate.step(xs, [g[i] for i in range(3)])
    np.testing.assert_allclose(xb, np.stack(xs), rtol=1e-13)
    # each matrix of the batch normalises with its own mean(R)
    assert batched.blocks[0].R.shape == (3, 4)
    assert batched.blocks[0].C.shape == (3, 5)


def test_batch_shares_alpha_and_rms_u():
    """With clipping active, the 3-D block uses ONE RMS(U) and ONE alpha for the batch."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 3))
    x[1] *= 10.0
    g = rng.standard_normal((2, 3, 3))
    (xb,) = ReferenceAdafactor([(2, 3, 3)], clip_threshold=0.1).step([x], [g])
    xs = ReferenceAdafactor([(3, 3)] * 2, clip_threshold=0.1).step([x[0], x[1]], [g[0], g[1]])
    assert not np.allclose(xb, np.stack(xs))
    alpha = 0.01 * _rms(x)
    step = (x - xb) / alpha
    assert _rms(step) == pytest.approx(0.1, rel=1e-12)  # clipped to RMS d over the block


def test_schedules():
    opt = ReferenceAdafactor([(2,)])
    assert opt.rho(1) == 1e-2 and opt.rho(10_000) == 1e-2 and opt.rho(40_000) == 1 / 200
    w = ReferenceAdafactor([(2,)], warmup_init=True)
    assert w.rho(1) == pytest.approx(1e-6) and w.rho(1000) == pytest.approx(1e-3)
    assert w.rho(10**6) == pytest.approx(1e-3)
    assert ReferenceAdafactor([(2,)], lr=0.3).rho(7) == 0.3
    assert ReferenceAdafactor([(2,)], lr=lambda t: 1.0 / t).rho(4) == 0.25


def test_beta2_schedule_and_second_step():
    """Second step by hand on a vector: V_2 = b V_1 + (1 - b)(g2² + eps1), b = 1 - 2^-0.8."""
    x0 = np.array([1.0, -2.0, 0.5])
    g1 = np.array([0.3, 0.1, -0.2])
    g2 = np.array([-0.1, 0.4, 0.2])
    opt = ReferenceAdafactor([(3,)], lr=0.1, scale_parameter=False, clip_threshold=1e9)
    (x1,) = opt.step([x0], [g1])
    (x2,) = opt.step([x1], [g2])
    b = 1 - 2**-0.8
    V2 = b * g1**2 + (1 - b) * g2**2
    np.testing.assert_allclose(x1, x0 - 0.1 * np.sign(g1), rtol=1e-14)
    np.testing.assert_allclose(x2, x1 - 0.1 * g2 / np.sqrt(V2), rtol=1e-14)


def test_momentum_and_weight_decay_by_hand():
    x0 = np.array([1.0, -2.0, 0.5, 3.0])
    g1 = np.array([0.3, 0.1, -0.2, 0.4])
    g2 = np.array([-0.1, 0.4, 0.2, 0.1])
    opt = ReferenceAdafactor([(4,)], beta1=0.9, weight_decay=0.5)
    (x1,) = opt.step([x0], [g1])
    a1 = 0.01 * _rms(x0)
    m1 = 0.1 * a1 * np.sign(g1)
    np.testing.assert_allclose(x1, x0 - 0.5 * a1 * x0 - m1, rtol=1e-14)
    (x2,) = opt.step([x1], [g2])
    b = 1 - 2**-0.8
    U = g2 / np.sqrt(b * g1**2 + (1 - b) * g2**2)
    U = U / max(1.0, _rms(U))
    a2 = 0.01 * _rms(x1)
    m2 = 0.9 * m1 + 0.1 * a2 * U
    np.testing.assert_allclose(x2, x1 - 0.5 * a2 * x1 - m2, rtol=1e-13)


def test_eps2_floor_on_parameter_scale():
    x0 = np.zeros(4)
    g = np.array([1.0, -1.0, 2.0, -3.0])
    (x1,) = ReferenceAdafactor([(4,)]).step([x0], [g])
    np.testing.assert_allclose(x1, -1e-3 * 1e-2 * np.sign(g), rtol=1e-14)


def test_float32_stays_float32():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    v = rng.standard_normal(5).astype(np.float32)
    opt = ReferenceAdafactor([(3, 4), (5,)], beta1=0.5)
    for _ in range(3):
        x, v = opt.step([x, v], [np.ones((3, 4), np.float32), np.ones(5, np.float32)])
        assert x.dtype == np.float32 and v.dtype == np.float32
    assert opt.blocks[0].R.dtype == np.float32


def test_split_join_roundtrip():
    x = np.arange(2 * 3 + 4 + 1 + 2 * 2 * 2, dtype=float)
    shapes = [(2, 3), (4,), (), (2, 2, 2)]
    blocks = split_flat(x, shapes)
    assert [b.shape for b in blocks] == shapes
    np.testing.assert_array_equal(blocks[0], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(join_flat(blocks), x)


def test_reference_minimize_matches_manual_loop():
    rng = np.random.default_rng(5)
    c = rng.standard_normal((4, 3))

    def grad(x):
        return 2.0 * (x - c)

    x0 = np.zeros((4, 3))
    traj = reference_minimize(grad, x0, 5, beta1=0.9)
    assert len(traj) == 6 and traj[0].shape == (4, 3)
    opt = ReferenceAdafactor([(4, 3)], beta1=0.9)
    x = x0
    for k in range(5):
        (x,) = opt.step([x], [grad(x)])
        np.testing.assert_array_equal(x, traj[k + 1])
    # multi-block partition of a flat vector, and bounds
    traj = reference_minimize(
        lambda v: 2 * (v - 5.0), np.zeros(7), 300, shapes=[(2, 2), (3,)], lr=0.1, bounds=(-1.0, 1.0)
    )
    assert all(np.all(np.abs(t) <= 1.0) for t in traj)
    np.testing.assert_allclose(traj[-1], 1.0)
