"""The CPU kernels against plain NumPy and against each other.

- The factored statistics kernel, for every way its row chunks can cut a batch of
  matrices. The stepper only ever uses as many chunks as there are threads; here the
  chunk count is forced, so that chunks starting, ending and lying wholly inside
  matrices, matrices spread over several chunks, and more chunks than rows per matrix
  are all covered on any machine. Sums of U**2 come from the column sums of g**2 / R_i
  (one pass over g); the reference builds V and U explicitly.
- The apply kernels: writing a separate ``out`` gives the in-place result bit for bit
  and leaves x alone (two loops, one per case, see ``_kernels``).
- The projected maximum: NaN or inf as soon as g holds one, whatever the bounds.
"""

import numpy as np
import pytest

from fastfactor._backends._protocol import FactoredState, UnfactoredState
from fastfactor._backends.cpu import _kernels as K
from fastfactor._backends.cpu import _step
from fastfactor._hyper import Hyper
from helpers import DTYPES, dtype_id

SHAPES = [(1, 13, 70), (1, 9, 64), (5, 3, 7), (4, 10, 33), (37, 5, 9), (2, 1, 3), (9, 1, 5),
          (3, 7, 1)]
CHUNKS = [1, 2, 3, 5, 8]
BETA2, EPS1 = 0.6, 1e-3
#: The step's scalars (the kernels read beta2, eps1 and scale_parameter from them).
S = Hyper(eps1=EPS1).scalars(2)._replace(beta2=BETA2)


def _reference(x, g, r, c):
    """(R, C, sum g**2, sum x**2, sum U**2) in float64 from the explicit V."""
    x, g, r, c = (a.astype(np.float64) for a in (x, g, r, c))
    g2 = g * g + EPS1
    rn = BETA2 * r + (1 - BETA2) * g2.mean(axis=2)
    cn = BETA2 * c + (1 - BETA2) * g2.mean(axis=1)
    v = rn[:, :, None] * cn[:, None, :] / rn.mean(axis=1)[:, None, None]
    return rn, cn, np.sum(g * g), np.sum(x * x), np.sum(g * g / v)


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("nchunks", CHUNKS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_factored_stats_any_chunking(dtype, shape, nchunks, build):
    rng = np.random.default_rng(7)
    nb, n, m = shape
    if nchunks > nb * n:
        pytest.skip("more chunks than rows")
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    r = rng.uniform(0.5, 2.0, (nb, n)).astype(dtype)
    c = rng.uniform(0.5, 2.0, (nb, m)).astype(dtype)
    rn, cn = np.full_like(r, np.nan), np.full_like(c, np.nan)
    kernel = getattr(K, "factored_stats_" + build)
    sums = kernel(x, g, r, c, rn, cn, S, nchunks)
    want = _reference(x, g, r, c)
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(rn, want[0], rtol=rtol)
    np.testing.assert_allclose(cn, want[1], rtol=rtol)
    np.testing.assert_allclose(sums, want[2:], rtol=rtol)


def test_factored_stats_result_depends_only_on_chunk_count():
    """Serial and parallel builds sum in the same order: bit-identical results."""
    rng = np.random.default_rng(3)
    x, g = rng.standard_normal((2, 37, 5, 9))
    r, c = np.ones((37, 5)), np.ones((37, 9))
    out = []
    for kernel in (K.factored_stats_serial, K.factored_stats_parallel):
        rn, cn = np.empty_like(r), np.empty_like(c)
        out.append((kernel(x, g, r, c, rn, cn, S, 3), rn, cn))
    assert out[0][0] == out[1][0]
    np.testing.assert_array_equal(out[0][1], out[1][1])
    np.testing.assert_array_equal(out[0][2], out[1][2])


# --- apply: out of place == in place, bit for bit -----------------------------------------
#: (beta1, weight_decay, scale_parameter): without and with a first moment.
APPLY_HYPER = [(None, 0.0, True), (0.9, 0.0, True), (0.9, 0.05, False), (None, 0.05, False)]
APPLY_SHAPES = [(1, 13, 70), (4, 10, 33), (37, 5, 9), (3, 7, 1), (1, 1, 200)]


def _bits(a):
    """The bytes of ``a``: equality of these is equality bit for bit (NaN included)."""
    return np.ascontiguousarray(a).view(np.uint8)


def _assert_same_bits(actual, expected, what):
    assert actual.shape == expected.shape, what
    assert np.array_equal(_bits(actual), _bits(expected)), what


def _moment(m):
    """The first-moment argument of an apply kernel: None for none (as the host passes)."""
    return m if m.size else None


def _both_ways(apply, x, state, *rest):
    """Run ``apply(x, out, *state, ..., inplace)`` in place on a copy of everything, then
    out of place on another; returns ``((x, state), (out, x_after, state))``."""
    x_in = x.copy()
    st_in = [a.copy() for a in state]
    apply(x_in, x_in, st_in, True)
    x_out = x.copy()
    st_out = [a.copy() for a in state]
    out = np.full_like(x, np.nan)
    apply(x_out, out, st_out, False)
    return (x_in, st_in), (out, x_out, st_out)


def _check_both_ways(x, inplace_result, outofplace_result, names):
    (x_in, st_in), (out, x_out, st_out) = inplace_result, outofplace_result
    assert not np.array_equal(x_in, x), "the in-place step changed nothing"
    _assert_same_bits(out, x_in, "out of place != in place")
    _assert_same_bits(x_out, x, "x changed by an out-of-place apply")
    for name, a, b in zip(names, st_out, st_in, strict=True):
        _assert_same_bits(a, b, f"state {name} differs between in place and out of place")


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("nchunks", [1, 2, 3])
@pytest.mark.parametrize("beta1, wd, scale", APPLY_HYPER, ids=str)
@pytest.mark.parametrize("shape", APPLY_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_factored_apply_out_of_place_equals_in_place(dtype, shape, beta1, wd, scale, nchunks,
                                                     build):
    nb, n, m = shape
    if nchunks > nb * n:
        pytest.skip("more chunks than rows")
    rng = np.random.default_rng(11)
    s = Hyper(beta1=beta1, weight_decay=wd, scale_parameter=scale).scalars(4)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    r = rng.uniform(0.5, 2.0, (nb, n)).astype(dtype)
    c = rng.uniform(0.5, 2.0, (nb, m)).astype(dtype)
    mom = (rng.standard_normal(shape) if beta1 else np.empty((0, 0, 0))).astype(dtype)
    rn, cn = np.empty_like(r), np.empty_like(c)
    gsum, xsum, usum = getattr(K, "factored_stats_" + build)(x, g, r, c, rn, cn, s, nchunks)
    kernel = getattr(K, "factored_apply_" + build)

    def apply(xa, out, st, inplace):
        kernel(xa, None if inplace else out, g, st[0], st[1], rn, cn, _moment(st[2]), usum,
               xsum, s, nchunks)

    _check_both_ways(x, *_both_ways(apply, x, (r, c, mom)), ("row", "col", "m"))


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("nchunks", [1, 2, 3])
@pytest.mark.parametrize("beta1, wd, scale", APPLY_HYPER, ids=str)
@pytest.mark.parametrize("size", [1, 70, 1000])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_unfactored_apply_out_of_place_equals_in_place(dtype, size, beta1, wd, scale,
                                                       nchunks, build):
    if nchunks > size:
        pytest.skip("more chunks than elements")
    rng = np.random.default_rng(12)
    s = Hyper(beta1=beta1, weight_decay=wd, scale_parameter=scale).scalars(4)
    x = rng.standard_normal(size).astype(dtype)
    g = rng.standard_normal(size).astype(dtype)
    v = rng.uniform(0.5, 2.0, size).astype(dtype)
    mom = (rng.standard_normal(size) if beta1 else np.empty(0)).astype(dtype)
    usum, xsum, _ = getattr(K, "unfactored_stats_" + build)(x, g, v, s, nchunks)
    kernel = getattr(K, "unfactored_apply_" + build)

    def apply(xa, out, st, inplace):
        kernel(xa, None if inplace else out, g, st[0], _moment(st[1]), usum, xsum, s, nchunks)

    _check_both_ways(x, *_both_ways(apply, x, (v, mom)), ("v", "m"))


def _host_step(factored, dtype, beta1):
    """``(x, g, state, s, step)`` for a host-level step of a small block."""
    rng = np.random.default_rng(13)
    shape = (2, 9, 11) if factored else (198,)
    s = Hyper(beta1=beta1, weight_decay=0.01).scalars(3)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    mom = (rng.standard_normal(shape) if beta1 else np.empty((0,) * len(shape))).astype(dtype)
    if factored:
        state = FactoredState(rng.uniform(0.5, 2, (2, 9)).astype(dtype),
                              rng.uniform(0.5, 2, (2, 11)).astype(dtype), mom)
        return x, g, state, s, _step.factored_step
    return x, g, UnfactoredState(rng.uniform(0.5, 2, shape).astype(dtype), mom), s, \
        _step.unfactored_step


@pytest.mark.parametrize("beta1", [None, 0.9], ids=["no_beta1", "beta1"])
@pytest.mark.parametrize("factored", [True, False], ids=["factored", "unfactored"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_step_into_memory_shared_with_x(dtype, factored, beta1):
    """``out`` sharing x's memory without being x: the same memory (another view of it)
    and a partial overlap both give the in-place result in ``out``."""
    x, g, state, s, step = _host_step(factored, dtype, beta1)
    want_state = type(state)(*(a.copy() for a in state))
    want = x.copy()
    assert step(want, want, g, want_state, s)
    # another view of the same memory
    xa = x.copy()
    st = type(state)(*(a.copy() for a in state))
    assert step(xa, xa.reshape(-1).reshape(x.shape), g, st, s)
    _assert_same_bits(xa, want, "out: a view of x")
    # out overlaps x, shifted by 5 elements
    buf = np.zeros(x.size + 5, dtype)
    buf[:x.size] = x.ravel()
    xb, out = buf[:x.size].reshape(x.shape), buf[5:].reshape(x.shape)
    st = type(state)(*(a.copy() for a in state))
    assert step(xb, out, g, st, s)
    _assert_same_bits(out.copy(), want, "out: a partial overlap of x")
    for a, b in zip(st, want_state, strict=True):
        _assert_same_bits(a, b, "state")


# --- the projected maximum: NaN or inf whenever g holds one -----------------------------
def _projected_reference(x, g, lb, ub):
    x = x.astype(np.float64)
    return np.max(np.abs(np.clip(x - g.astype(np.float64), lb, ub) - x), initial=0.0)


#: (bound kind, bad values placed in g, the measure's class).
PROJECTED_CASES = [
    ("none", []), ("none", [(0, np.nan)]), ("none", [(17, np.inf)]), ("none", [(99, -np.inf)]),
    ("none", [(3, np.inf), (50, np.nan)]), ("none", [(3, np.nan), (50, -np.inf)]),
    ("finite", []), ("finite", [(17, np.inf)]), ("finite", [(99, -np.inf)]),
    ("finite", [(42, np.nan)]), ("finite", [(0, -np.inf), (1, np.inf)]),
    ("finite", [(3, -np.inf), (98, np.nan)]), ("infinite", []), ("infinite", [(5, np.inf)]),
    ("mixed", []), ("mixed", [(11, -np.inf)]), ("mixed", [(12, np.nan)]),
]


def _bounds(kind, x, rng):
    n = x.size
    if kind == "none":
        return np.full(n, -np.inf), np.full(n, np.inf)
    if kind == "finite":
        return x - rng.uniform(0, 0.5, n), x + rng.uniform(0, 0.5, n)
    if kind == "infinite":  # one-sided, and a few elements pinned at a bound
        lb, ub = np.full(n, -np.inf), x + rng.uniform(0, 0.5, n)
        ub[::7] = x[::7]
        return lb, ub
    lb = np.where(rng.random(n) < 0.5, -np.inf, x - 0.1)
    ub = np.where(rng.random(n) < 0.5, np.inf, x + 0.1)
    return lb, ub


@pytest.mark.parametrize("bounds, bad", PROJECTED_CASES,
                         ids=lambda c: c if isinstance(c, str) else
                         "+".join(str(v) for _, v in c) or "finite_g")
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_max_abs_projected(dtype, bounds, bad):
    rng = np.random.default_rng(14)
    x = rng.standard_normal(100).astype(dtype)
    g = (3.0 * rng.standard_normal(100)).astype(dtype)
    lb, ub = _bounds(bounds, x.astype(np.float64), rng)
    for i, value in bad:
        g[i] = value
    got = _step.max_abs_projected(x, g, lb, ub)
    bad_values = [v for _, v in bad]
    if any(np.isnan(v) for v in bad_values):
        assert np.isnan(got)
    elif bad_values:
        assert got == np.inf
    else:
        assert got == _projected_reference(x, g, lb, ub)
        assert np.isfinite(got) and got > 0
    # max_abs agrees on finiteness: one scan serves both
    assert np.isnan(got) == np.isnan(_step.max_abs(g))
    assert np.isinf(got) == np.isinf(_step.max_abs(g))


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("nchunks", [1, 2, 3])
@pytest.mark.parametrize("size", [1, 63, 64, 70, 1000])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_unfactored_stats_against_numpy(dtype, size, nchunks, build):
    """Sums of U**2 and x**2, and the largest g**2 (from the same pass over g)."""
    if nchunks > size:
        pytest.skip("more chunks than elements")
    rng = np.random.default_rng(13)
    s = Hyper().scalars(3)
    x = rng.standard_normal(size).astype(dtype)
    g = rng.standard_normal(size).astype(dtype)
    g[size // 2] = -7.5  # the largest magnitude, negative, anywhere in a lane or the tail
    v = rng.uniform(0.5, 2.0, size).astype(dtype)
    usum, xsum, g2max = getattr(K, "unfactored_stats_" + build)(x, g, v, s, nchunks)
    gd = g.astype(np.float64)
    vn = s.beta2 * v.astype(np.float64) + (1 - s.beta2) * (gd * gd + s.eps1)
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose([usum, xsum], [np.sum(gd * gd / vn), np.sum(x.astype(float) ** 2)],
                               rtol=rtol)
    assert g2max == 7.5 ** 2
