"""The ``Adafactor`` stepper against the NumPy reference, in place, with its state."""

import pickle

import numpy as np
import pytest

from fastfactor import Adafactor
from helpers import DTYPES, assert_close, dtype_id, gradient_stream, random_blocks
from reference import ALPHA1, C1, G1, R1, X0, X1, ReferenceAdafactor

N_STEPS = 20


def run_both(shapes, dtype, hyper, rng, n_steps=N_STEPS, check_every_step=True):
    """Step fastfactor and the reference side by side on the same random gradients."""
    params = random_blocks(rng, shapes, dtype)
    ref_params = [p.copy() for p in params]
    opt = Adafactor(shapes, **hyper) if len(shapes) > 1 else Adafactor(list(shapes), **hyper)
    ref = ReferenceAdafactor(shapes, **hyper)
    for k, grads in enumerate(gradient_stream(rng, shapes, dtype, n_steps)):
        ret = opt.step(params, grads)
        ref_params = ref.step(ref_params, grads)
        assert ret is params or all(a is b for a, b in zip(ret, params, strict=True))
        if check_every_step or k == n_steps - 1:
            for i, (p, q) in enumerate(zip(params, ref_params, strict=True)):
                assert p.dtype == np.dtype(dtype)
                assert_close(p, q, dtype, err_msg=f"step {k + 1}, block {i} {shapes[i]}")
    return opt, ref, params


# --- the spec's worked example --------------------------------------------------


def test_worked_example_matrix():
    opt = Adafactor((3, 3))
    x = X0.copy()
    out = opt.step(x, G1.copy())
    assert out is x
    np.testing.assert_allclose(x, X1, atol=1e-6)
    (block,) = opt.state_dict()["blocks"]
    np.testing.assert_allclose(block["row"], R1, atol=1e-6)
    np.testing.assert_allclose(block["col"], C1, atol=1e-6)
    assert "v" not in block and "m" not in block
    assert opt.state_dict()["t"] == 1


def test_worked_example_vector():
    opt = Adafactor(9)
    x = X0.ravel().copy()
    opt.step(x, G1.ravel())
    np.testing.assert_allclose(x, (X0 - ALPHA1 * np.sign(G1)).ravel(), atol=1e-8)
    (block,) = opt.state_dict()["blocks"]
    # beta2_1 = 0, so V_1 = G1**2 + eps1
    np.testing.assert_allclose(block["v"], G1.ravel() ** 2, rtol=1e-14)
    assert "row" not in block


def test_worked_example_float32():
    x = X0.astype(np.float32)
    Adafactor((3, 3)).step(x, G1.astype(np.float32))
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, X1, atol=2e-6)


def test_worked_example_several_blocks():
    """The same matrix twice, next to a vector: blocks are independent (own alpha, RMS(U))."""
    v = np.array([100.0, -200.0, 300.0])
    gv = np.array([1e-3, 5.0, -2.0])
    params = [X0.copy(), v.copy(), 10.0 * X0]
    Adafactor([(3, 3), (3,), (3, 3)]).step(params, [G1, gv, G1])
    np.testing.assert_allclose(params[0], X1, atol=1e-6)
    np.testing.assert_allclose(params[2], 10.0 * X0 - 10.0 * (X0 - X1), atol=1e-5)
    alpha_v = 0.01 * np.sqrt(np.mean(v**2))
    np.testing.assert_allclose(params[1], v - alpha_v * np.sign(gv), rtol=1e-12)


# --- against the reference: shapes and dtypes ------------------------------------

SHAPE_CASES = {
    "vector": [(17,)],
    "length1": [(1,)],
    "scalar": [()],
    "square": [(8, 8)],
    "tall": [(12, 5)],
    "wide": [(5, 12)],
    "row": [(1, 7)],
    "column": [(7, 1)],
    "3d": [(3, 4, 5)],
    "4d": [(2, 3, 4, 5)],
    "several": [(6, 5), (5,), (2, 3, 4), (1,)],
    "parallel_matrix": [(300, 256)],  # >= 2**16 elements: the multi-threaded kernels
    "parallel_3d": [(3, 150, 160), (70_000,)],
    # many small matrices in one parallel block: row chunks start and end inside matrices
    "parallel_many_small": [(37, 45, 41)],
}


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shapes", SHAPE_CASES.values(), ids=SHAPE_CASES.keys())
def test_shapes_against_reference(shapes, dtype, rng):
    big = sum(int(np.prod(s)) for s in shapes) > 10_000
    run_both(shapes, dtype, {}, rng, n_steps=8 if big else N_STEPS, check_every_step=not big)


# --- against the reference: each hyper-parameter non-default ---------------------

HYPER_CASES = {
    "lr_float": dict(lr=0.05),
    "lr_callable": dict(lr=lambda t: 0.1 / (1.0 + t)),
    "beta1": dict(beta1=0.9),
    "beta1_zero": dict(beta1=0.0),
    "weight_decay": dict(weight_decay=0.3),
    "no_scale_parameter": dict(scale_parameter=False),
    "warmup_init": dict(warmup_init=True),
    "clip_small": dict(clip_threshold=0.3),
    "clip_off": dict(clip_threshold=1e6),
    "decay_rate": dict(decay_rate=-0.5),
    "eps1_large": dict(eps1=1e-2),
    "eps2_large": dict(eps2=10.0),
    "min_dim_size": dict(min_dim_size_to_factor=6),
    "combined": dict(lr=0.02, beta1=0.8, weight_decay=0.1, scale_parameter=False,
                     clip_threshold=2.0),
}

# (6, 5) is left unfactored by min_dim_size_to_factor=6, (8, 6) and (2, 7, 6) are not
HYPER_SHAPES = [(6, 5), (8, 6), (2, 7, 6), (9,)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("hyper", HYPER_CASES.values(), ids=HYPER_CASES.keys())
def test_hyper_against_reference(hyper, dtype, rng):
    opt, ref, _ = run_both(HYPER_SHAPES, dtype, hyper, rng)
    # the state matches the reference's too
    state = opt.state_dict()
    assert state["t"] == N_STEPS
    for block, rblock in zip(state["blocks"], ref.blocks, strict=True):
        if rblock.factored:
            assert set(block) >= {"row", "col"} and "v" not in block
            assert_close(block["row"], rblock.R, dtype, scale=0.0)
            assert_close(block["col"], rblock.C, dtype, scale=0.0)
        else:
            assert "row" not in block
            assert_close(block["v"], rblock.V, dtype, scale=0.0)
        if hyper.get("beta1") is not None:
            assert_close(block["m"], rblock.M, dtype, scale=1e-3)
        else:
            assert "m" not in block


def test_min_dim_size_decides_factoring():
    opt = Adafactor(HYPER_SHAPES, min_dim_size_to_factor=6)
    params = random_blocks(np.random.default_rng(0), HYPER_SHAPES, np.float64)
    opt.step(params, params)
    kinds = [("row" in b, "v" in b) for b in opt.state_dict()["blocks"]]
    assert kinds == [(False, True), (True, False), (True, False), (False, True)]


def test_hyper_parameters_change_the_result(rng):
    """Guard against the table above passing because a keyword is ignored by both sides."""
    shapes = [(6, 5), (9,)]
    base = random_blocks(rng, shapes, np.float64)
    grads = gradient_stream(rng, shapes, np.float64, 3)
    results = {}
    for name, hyper in [("default", {})] + list(HYPER_CASES.items()):
        opt = Adafactor(shapes, **hyper)
        params = [p.copy() for p in base]
        for g in grads:
            opt.step(params, g)
        results[name] = np.concatenate([p.ravel() for p in params])
    for name in HYPER_CASES:
        if name == "beta1_zero":  # beta1 = 0 keeps M = u: the same steps as no momentum
            np.testing.assert_allclose(results[name], results["default"], rtol=1e-14)
            continue
        assert not np.allclose(results[name], results["default"], rtol=1e-9, atol=0), name


def test_relative_step_after_ten_thousand_steps(rng):
    """rho_t = min(1e-2, 1/sqrt(t)) switches to 1/sqrt(t) after t = 10^4: resume at t = 39999."""
    shapes = [(4, 6), (5,)]
    params = random_blocks(rng, shapes, np.float64)
    grads = gradient_stream(rng, shapes, np.float64, 3)
    opt = Adafactor(shapes)
    opt.step([p.copy() for p in params], grads[0])
    state = opt.state_dict()
    state["t"] = 39_999
    for block in state["blocks"]:
        for key in block:
            block[key] = np.zeros_like(block[key])
    fresh = Adafactor(shapes)
    fresh.load_state_dict(state)
    ref = ReferenceAdafactor(shapes)
    ref.t = 39_999  # its (zero) state is created at the next step
    ref_params = [p.copy() for p in params]
    for g in grads:
        fresh.step(params, g)
        ref_params = ref.step(ref_params, g)
    for p, q in zip(params, ref_params, strict=True):
        assert_close(p, q)
    assert fresh.state_dict()["t"] == 40_002


def test_single_block_api_and_int_shape():
    x = np.linspace(-1, 1, 6)
    g = np.linspace(1, 2, 6)
    y = x.copy()
    assert Adafactor(6).step(x, g) is x
    Adafactor((6,)).step(y, g)
    np.testing.assert_array_equal(x, y)
    (expected,) = ReferenceAdafactor([(6,)]).step([np.linspace(-1, 1, 6)], [g])
    assert_close(x, expected)


def test_list_of_blocks_returns_params():
    W, b = np.ones((4, 3)), np.zeros(3)
    params = [W, b]
    out = Adafactor([(4, 3), (3,)], lr=0.1, scale_parameter=False).step(
        params, [np.ones((4, 3)), -np.ones(3)])
    assert out[0] is W and out[1] is b
    np.testing.assert_allclose(W, 0.9)
    np.testing.assert_allclose(b, 0.1)


def test_gradients_not_mutated(rng):
    shapes = [(5, 4), (3,)]
    params = random_blocks(rng, shapes, np.float64)
    grads = random_blocks(rng, shapes, np.float64)
    saved = [g.copy() for g in grads]
    opt = Adafactor(shapes, beta1=0.9, weight_decay=0.1)
    for _ in range(3):
        opt.step(params, grads)
    for g, s in zip(grads, saved, strict=True):
        np.testing.assert_array_equal(g, s)


# --- memory layouts ---------------------------------------------------------------


def _layouts(rng):
    """(name, parameter view, its base array) for several non-contiguous layouts."""
    out = []
    base = rng.standard_normal((5, 8))
    out.append(("transposed", base.T, base))
    base = rng.standard_normal((12, 20))
    out.append(("strided", base[::2, 1::3], base))
    base = rng.standard_normal((6, 7))
    out.append(("reversed", base[::-1, ::-2], base))
    base = np.asfortranarray(rng.standard_normal((6, 9)))
    out.append(("fortran", base, base))
    base = rng.standard_normal(40)
    out.append(("vector_strided", base[3::4], base))
    base = rng.standard_normal((4, 3, 5))
    out.append(("3d_swapaxes", base.transpose(1, 0, 2), base))
    base = rng.standard_normal((5, 4, 3, 6))
    out.append(("4d_unmergeable", base.transpose(1, 0, 3, 2)[:, ::2], base))
    base = rng.standard_normal((6, 5))
    out.append(("matrix_as_vector_block", base[:, 1:4], base))  # stepped as 1 block of (6, 3)
    return out


@pytest.mark.parametrize("beta1", [None, 0.9])
@pytest.mark.parametrize("layout", range(8),
                         ids=[n for n, *_ in _layouts(np.random.default_rng(0))])
def test_non_contiguous_params_in_place(layout, beta1):
    rng = np.random.default_rng(layout)
    name, x, base = _layouts(rng)[layout]
    base_before = base.copy()
    in_view = np.isin(base, x)  # the elements of base are distinct random normals
    assert in_view.sum() == x.size
    shape = x.shape
    kwargs = dict(beta1=beta1, min_dim_size_to_factor=7 if name == "matrix_as_vector_block" else 1)
    opt = Adafactor(shape, **kwargs)
    ref = ReferenceAdafactor([shape], **kwargs)
    expected = np.array(x)
    for k in range(5):
        if k % 2:  # a non-contiguous gradient too
            g = rng.standard_normal(shape[::-1]).T
        else:
            g = rng.standard_normal(shape)
        assert opt.step(x, g) is x
        (expected,) = ref.step([expected], [np.array(g)])
        assert_close(x, expected, err_msg=f"step {k + 1}")
    # the update went through the view into base; elements outside the view are untouched
    np.testing.assert_array_equal(base[~in_view], base_before[~in_view])
    assert np.all(base[in_view] != base_before[in_view])
    np.testing.assert_array_equal(np.sort(base[in_view]), np.sort(x.ravel()))


def test_non_contiguous_gradients(rng):
    shapes = [(6, 7), (8,)]
    params = random_blocks(rng, shapes, np.float64)
    ref_params = [p.copy() for p in params]
    opt, ref = Adafactor(shapes), ReferenceAdafactor(shapes)
    for _ in range(4):
        gbig = rng.standard_normal((7, 12))
        grads = [gbig[:6, ::-1][:, :7], rng.standard_normal(24)[::3]]  # both non-contiguous
        opt.step(params, grads)
        ref_params = ref.step(ref_params, grads)
    for p, q in zip(params, ref_params, strict=True):
        assert_close(p, q)


def test_mixed_layouts_same_optimizer(rng):
    """The same optimizer stepping a C array, then a Fortran copy, then a transposed view."""
    shape = (6, 9)
    x = rng.standard_normal(shape)
    expected = x.copy()
    opt, ref = Adafactor(shape, beta1=0.5), ReferenceAdafactor([shape], beta1=0.5)
    for k in range(6):
        g = rng.standard_normal(shape)
        if k % 3 == 1:
            x = np.asfortranarray(x)
        elif k % 3 == 2:
            x = np.ascontiguousarray(x.T).T
        opt.step(x, g)
        (expected,) = ref.step([expected], [g])
        assert_close(x, expected)


# --- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, grads",
    [
        pytest.param(lambda: [np.zeros((4, 3)), np.zeros(3)],
                     lambda: [np.ones((3, 4)), np.ones(3)], id="grad_transposed"),
        pytest.param(lambda: [np.zeros((4, 3)), np.zeros(3)],
                     lambda: [np.ones((4, 3)), np.ones(4)], id="grad_vector_size"),
        pytest.param(lambda: [np.zeros((4, 3)), np.zeros(3)],
                     lambda: [np.ones(12), np.ones(3)], id="grad_flat"),
        pytest.param(lambda: [np.zeros((3, 4)), np.zeros(3)],
                     lambda: [np.ones((4, 3)), np.ones(3)], id="param_shape"),
        pytest.param(lambda: [np.zeros((4, 3))],
                     lambda: [np.ones((4, 3))], id="too_few_params"),
        pytest.param(lambda: [np.zeros((4, 3)), np.zeros(3)],
                     lambda: [np.ones((4, 3))], id="too_few_grads"),
        pytest.param(
            lambda: [np.zeros((4, 3)), np.zeros(3), np.zeros(3)],
            lambda: [np.ones((4, 3)), np.ones(3), np.ones(3)],
            id="too_many",
        ),
    ],
)
def test_shape_mismatch_raises(params, grads):
    opt = Adafactor([(4, 3), (3,)])
    p = params()
    before = [a.copy() for a in p]
    with pytest.raises(ValueError):
        opt.step(p, grads())
    for a, b in zip(p, before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_single_block_shape_mismatch_raises():
    opt = Adafactor((4, 3))
    with pytest.raises(ValueError):
        opt.step(np.zeros((4, 3)), np.ones((3, 4)))
    with pytest.raises(ValueError):
        opt.step(np.zeros((3, 4)), np.ones((3, 4)))


INVALID_HYPER = {
    "lr_zero": dict(lr=0.0),
    "lr_negative": dict(lr=-0.1),
    "clip_zero": dict(clip_threshold=0.0),
    "clip_negative": dict(clip_threshold=-1.0),
    "eps1_negative": dict(eps1=-1e-30),
    "eps2_negative": dict(eps2=-1e-3),
    "weight_decay_negative": dict(weight_decay=-0.01),
    "beta1_one": dict(beta1=1.0),
    "beta1_above_one": dict(beta1=1.5),
    "beta1_negative": dict(beta1=-0.1),
    "decay_rate_zero": dict(decay_rate=0.0),
    "decay_rate_positive": dict(decay_rate=0.5),
    "warmup_with_lr": dict(warmup_init=True, lr=0.01),
    "warmup_with_callable_lr": dict(warmup_init=True, lr=lambda t: 0.01),
}


@pytest.mark.parametrize("hyper", INVALID_HYPER.values(), ids=INVALID_HYPER.keys())
def test_invalid_hyper_raises(hyper):
    with pytest.raises(ValueError):
        Adafactor([(3, 2), (2,)], **hyper)


@pytest.mark.parametrize(
    "hyper",
    [dict(lr=1e-12), dict(eps1=0.0), dict(eps2=0.0), dict(weight_decay=0.0), dict(beta1=0.0),
     dict(beta1=0.999), dict(decay_rate=-1e-3), dict(clip_threshold=1e-9), dict(warmup_init=True)],
    ids=str,
)
def test_boundary_hyper_accepted(hyper):
    opt = Adafactor(3, **hyper)
    x = np.array([1.0, 2.0, 3.0])
    opt.step(x, np.array([0.1, -0.2, 0.3]))
    assert np.all(np.isfinite(x))


# --- state_dict / load_state_dict --------------------------------------------------

RESUME_CASES = {
    "default_f64": ([(6, 5), (7,)], np.float64, {}),
    "beta1_f64": ([(6, 5), (2, 3, 4), (7,)], np.float64, dict(beta1=0.9, weight_decay=0.01)),
    "beta1_f32": ([(6, 5), (7,)], np.float32, dict(beta1=0.9)),
    "warmup_unfactored_f32": ([(6, 5), (2, 3, 4)], np.float32,
                              dict(warmup_init=True, min_dim_size_to_factor=4)),
}


@pytest.mark.parametrize("shapes, dtype, hyper", RESUME_CASES.values(), ids=RESUME_CASES.keys())
def test_resume_is_bit_identical(shapes, dtype, hyper, rng):
    params = random_blocks(rng, shapes, dtype)
    grads = gradient_stream(rng, shapes, dtype, 20)
    opt = Adafactor(shapes, **hyper)
    for g in grads[:10]:
        opt.step(params, g)
    state = opt.state_dict()  # held as a dict (not pickled) while the run goes on
    pickled = pickle.dumps(opt.state_dict())
    at10 = [p.copy() for p in params]
    for g in grads[10:]:
        opt.step(params, g)
    for source in (state, pickle.loads(pickled)):
        fresh = Adafactor(shapes, **hyper)
        fresh.load_state_dict(source)
        resumed = [p.copy() for p in at10]
        for g in grads[10:]:
            fresh.step(resumed, g)
        for a, b in zip(resumed, params, strict=True):
            assert np.array_equal(a, b)
    # and it was not just the same as restarting from scratch
    restarted = [p.copy() for p in at10]
    scratch = Adafactor(shapes, **hyper)
    for g in grads[10:]:
        scratch.step(restarted, g)
    assert not all(np.array_equal(a, b) for a, b in zip(restarted, params, strict=True))


def test_state_dict_pickle_round_trip(rng):
    shapes = [(6, 5), (2, 3, 4), (7,)]
    opt = Adafactor(shapes, beta1=0.9)
    params = random_blocks(rng, shapes, np.float64)
    for g in gradient_stream(rng, shapes, np.float64, 3):
        opt.step(params, g)
    state = opt.state_dict()
    back = pickle.loads(pickle.dumps(state))
    assert back["t"] == state["t"] == 3
    assert len(back["blocks"]) == 3
    for b1, b2 in zip(state["blocks"], back["blocks"], strict=True):
        assert set(b1) == set(b2)
        for key in b1:
            assert np.array_equal(b1[key], b2[key])
            assert b2[key].dtype == np.float64
    # the state of a factored block is (..., n) + (..., m) numbers, not n x m
    assert state["blocks"][0]["row"].size == 6 and state["blocks"][0]["col"].size == 5
    assert state["blocks"][1]["row"].size == 2 * 3 and state["blocks"][1]["col"].size == 2 * 4
    # a fresh optimizer that loads it exports the same state
    fresh = Adafactor(shapes, beta1=0.9)
    fresh.load_state_dict(back)
    again = fresh.state_dict()
    assert again["t"] == 3
    for b1, b2 in zip(state["blocks"], again["blocks"], strict=True):
        for key in b1:
            assert np.array_equal(b1[key], b2[key])


def test_state_dict_picklable_with_callable_lr(rng):
    """A schedule given as a lambda must not make the state unpicklable (the state is
    loaded into an optimizer that has its own hyper-parameters)."""
    shapes = [(5, 4), (3,)]
    opt = Adafactor(shapes, lr=lambda t: 0.1 / t, beta1=0.9)
    params = random_blocks(rng, shapes, np.float64)
    grads = gradient_stream(rng, shapes, np.float64, 6)
    for g in grads[:3]:
        opt.step(params, g)
    state = pickle.loads(pickle.dumps(opt.state_dict()))
    resumed = [p.copy() for p in params]
    for g in grads[3:]:
        opt.step(params, g)
    fresh = Adafactor(shapes, lr=lambda t: 0.1 / t, beta1=0.9)
    fresh.load_state_dict(state)
    for g in grads[3:]:
        fresh.step(resumed, g)
    for a, b in zip(resumed, params, strict=True):
        assert np.array_equal(a, b)


def test_state_dict_before_first_step_round_trips(rng):
    shapes = [(4, 3), (3,)]
    state = pickle.loads(pickle.dumps(Adafactor(shapes).state_dict()))
    fresh = Adafactor(shapes)
    fresh.load_state_dict(state)
    a = random_blocks(rng, shapes, np.float64)
    b = [p.copy() for p in a]
    g = random_blocks(rng, shapes, np.float64)
    Adafactor(shapes).step(a, g)
    fresh.step(b, g)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)


def test_load_state_dict_wrong_shapes_raises(rng):
    opt = Adafactor([(4, 3), (3,)])
    opt.step(random_blocks(rng, [(4, 3), (3,)], np.float64),
             random_blocks(rng, [(4, 3), (3,)], np.float64))
    other = Adafactor([(3, 4), (3,)])
    with pytest.raises(ValueError):
        other.load_state_dict(opt.state_dict())



# --- a non-finite gradient is refused before anything changes ---------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("bad_block", [0, 1, 2])
def test_non_finite_gradient_refused_atomically(dtype, bad, bad_block, rng):
    shapes = [(6, 5), (7,), (2, 3, 4)]
    hyper = dict(beta1=0.9)
    params = random_blocks(rng, shapes, dtype)
    ref_params = [p.copy() for p in params]
    opt = Adafactor(shapes, **hyper)
    ref = ReferenceAdafactor(shapes, **hyper)
    stream = gradient_stream(rng, shapes, dtype, 4)
    for grads in stream[:2]:
        opt.step(params, grads)
        ref_params = ref.step(ref_params, grads)
    before_params = [p.copy() for p in params]
    before_state = opt.state_dict()
    poisoned = [g.copy() for g in stream[2]]
    poisoned[bad_block].flat[3] = bad
    with pytest.raises(ValueError, match=f"block {bad_block}.*NaN or inf"):
        opt.step(params, poisoned)
    for p, q in zip(params, before_params, strict=True):
        np.testing.assert_array_equal(p, q)
    after_state = opt.state_dict()
    assert after_state["t"] == before_state["t"] == 2
    for blk_a, blk_b in zip(after_state["blocks"], before_state["blocks"], strict=True):
        for key in blk_a:
            np.testing.assert_array_equal(blk_a[key], blk_b[key])
    # The refused step leaves no trace: the run goes on as if it never happened.
    for grads in stream[2:]:
        opt.step(params, grads)
        ref_params = ref.step(ref_params, grads)
    for p, q in zip(params, ref_params, strict=True):
        assert_close(p, q, dtype)


@pytest.mark.parametrize("shape", [(300, 256), (70_000,)],
                         ids=["parallel_matrix", "parallel_vector"])
def test_non_finite_gradient_refused_by_parallel_kernels(shape, rng):
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape)
    opt = Adafactor(shape)
    opt.step(x, g)
    before = x.copy()
    g.flat[-1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        opt.step(x, g)
    np.testing.assert_array_equal(x, before)
    assert opt.t == 1


@pytest.mark.parametrize("dtype, big", [(np.float64, 1e200), (np.float32, 1e20)])
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4), (7,)])
def test_gradient_whose_square_overflows_is_refused(rng, dtype, big, shape):
    # float32: g**2 is finite in the float64 sums but not in the float32 statistics.
    x = rng.standard_normal(shape).astype(dtype)
    opt = Adafactor(shape)
    before = x.copy()
    g = np.full(shape, big, dtype)
    with pytest.raises(ValueError, match="overflow"):
        opt.step(x, g)
    np.testing.assert_array_equal(x, before)
    assert opt.t == 0
