"""``eps1=0``: where the second moment is exactly zero, the update is zero, not 0/0.

With eps1 = 0 a gradient entry that has been zero so far (a zero row of an embedding
matrix, say) has a zero second-moment estimate: in a factored block R_i = 0 or
C_j = 0, in an unfactored one v_i = 0. Its U is then 0, in the kernels and in the
NumPy reference alike, so the step is taken (not refused) and x stays finite. A NaN or
inf in g, or squares that overflow, are still refused.

Every block kind (vector, factored matrix, batch of matrices, matrix below
``min_dim_size_to_factor``) is stepped against ``tests/reference.py`` through the serial
and the parallel kernels (blocks of at least ``PARALLEL_MIN_BYTES``, with the
row chunk count forced above one so that the parallel build runs on any machine), in
place (``Adafactor.step``) and out of place (the two phases ``minimize`` uses).
"""

import numpy as np
import pytest

import fastfactor
from fastfactor import Adafactor
from fastfactor._backends.cpu import _kernels as K
from fastfactor._backends.cpu import _step
from fastfactor._backends.cpu._threads import PARALLEL_MIN_BYTES
from fastfactor._hyper import Hyper
from helpers import DTYPES, assert_close, dtype_id, zero_pattern_gradients
from helpers import ZERO_PATTERNS as PATTERNS
from helpers import ZERO_SCHEDULE as SCHEDULE
from helpers import row_and_column_zeroed as _row_and_column
from reference import ReferenceAdafactor, reference_minimize

#: block kind -> (shape for the serial kernels, shape for the parallel ones, hyper)
BLOCKS = {
    "vector": ((11,), (70001,), {}),
    "matrix": ((6, 9), (260, 270), {}),
    "batch3d": ((3, 5, 7), (3, 150, 160), {}),
    "unfactored_matrix": ((5, 6), (250, 280), {"min_dim_size_to_factor": 1000}),
}


HYPER = {
    "plain": {},
    "beta1": {"beta1": 0.9},
    "weight_decay": {"weight_decay": 0.1, "lr": 0.05},
    "beta1_weight_decay_unscaled": {"beta1": 0.5, "weight_decay": 0.2,
                                    "scale_parameter": False, "lr": 0.1},
}

KERNELS = ["factored_stats", "factored_apply", "unfactored_stats", "unfactored_apply"]


@pytest.fixture
def kernels_used(monkeypatch):
    """The names of the CPU kernels the steps call (each wrapped to record its call)."""
    used = set()
    for base in KERNELS:
        for build in ("serial", "parallel"):
            name = f"{base}_{build}"
            kernel = getattr(K, name)

            def wrapper(*args, _kernel=kernel, _name=name):
                used.add(_name)
                return _kernel(*args)

            monkeypatch.setattr(K, name, wrapper)
    return used


def _force_chunks(monkeypatch):
    """Split blocks of at least ``PARALLEL_MIN_BYTES`` into 3 row chunks (the
    parallel kernels), whatever the number of threads."""
    monkeypatch.setattr(_step, "n_chunks",
                        lambda nbytes, rows: 1 if nbytes < PARALLEL_MIN_BYTES else min(3, rows))


_gradients = zero_pattern_gradients


def _zero_moment(block):
    """Where the reference's second moment is exactly zero (its update is then 0)."""
    if not block.factored:
        return block.V == 0
    return (block.R[..., :, None] == 0) | (block.C[..., None, :] == 0)


def _check_state(opt, ref, dtype):
    (state,) = opt.state_dict()["blocks"]
    block = ref.blocks[0]
    if block.factored:
        assert_close(state["row"], block.R, dtype)
        assert_close(state["col"], block.C, dtype)
        # a zero statistic is exactly zero (it is what selects U = 0)
        np.testing.assert_array_equal(state["row"] == 0, block.R == 0)
        np.testing.assert_array_equal(state["col"] == 0, block.C == 0)
    else:
        assert_close(state["v"], block.V, dtype)
        np.testing.assert_array_equal(state["v"] == 0, block.V == 0)
    if block.M is not None:
        assert_close(state["m"], block.M, dtype)


@pytest.mark.parametrize("place", ["in_place", "out_of_place"])
@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("hyper", list(HYPER))
@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("kind", list(BLOCKS))
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_zero_second_moment_against_reference(dtype, kind, pattern, hyper, build, place,
                                              kernels_used, monkeypatch):
    small, large, block_hyper = BLOCKS[kind]
    shape = small if build == "serial" else large
    if build == "parallel":
        _force_chunks(monkeypatch)
    hy = dict(HYPER[hyper], eps1=0.0, **block_hyper)
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(dtype)
    opt = Adafactor([shape], **hy)
    ref = ReferenceAdafactor([shape], **hy)
    assert opt.factored[0] == (kind in ("matrix", "batch3d"))
    x_ref = x.copy()
    for k, g in enumerate(_gradients(rng, shape, dtype, pattern)):
        before = x.copy()
        if place == "in_place":
            assert opt.step([x], [g])[0] is x
        else:
            out = np.full_like(x, np.nan)
            prepared, refused = opt._prepare([x], [g])
            assert refused is None
            opt._commit(prepared, [x], [out])
            np.testing.assert_array_equal(x, before)  # x itself is left alone
            x = out
        (x_ref,) = ref.step([x_ref], [g])
        msg = f"step {k + 1}"
        assert np.all(np.isfinite(x)), msg
        assert_close(x, x_ref, dtype, err_msg=msg)
        zero = _zero_moment(ref.blocks[0])
        if k < 2 and not (pattern == "zero_entries" and opt.factored[0]):
            assert zero.any(), msg  # the case at issue does arise (until step 3's gradient)
        if not hy.get("weight_decay"):
            # U = 0 exactly there (and so is the first moment: U was 0 at every step)
            np.testing.assert_array_equal(x[zero], before[zero], err_msg=msg)
    assert opt.t == len(SCHEDULE)
    _check_state(opt, ref, dtype)
    want = "parallel" if build == "parallel" else "serial"
    assert kernels_used and all(name.endswith(want) for name in kernels_used), kernels_used


def test_the_reported_case():
    """An embedding-like matrix whose second row gets no gradient."""
    opt = Adafactor([(3, 4)], eps1=0.0)
    p = np.ones((3, 4))
    g = np.ones((3, 4))
    g[1] = 0
    opt.step([p], [g])
    np.testing.assert_array_equal(p[1], 1.0)
    np.testing.assert_allclose(p[[0, 2]], 0.99)
    (x_ref,) = ReferenceAdafactor([(3, 4)], eps1=0.0).step([np.ones((3, 4))], [g])
    np.testing.assert_allclose(p, x_ref, rtol=1e-12)


# --- still refused: NaN, inf, squares that overflow ------------------------------------

BAD = {"nan": lambda dt: np.nan, "inf": lambda dt: -np.inf,
       "overflow": lambda dt: 1e30 if dt == np.float32 else 1e160}


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("kind", list(BLOCKS))
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_non_finite_gradient_still_refused(dtype, kind, bad, build, monkeypatch):
    """With a zero second moment elsewhere in the block (so that the zero case is met
    too, in the same chunk and in others), the step is refused as a whole."""
    small, large, block_hyper = BLOCKS[kind]
    shape = small if build == "serial" else large
    if build == "parallel":
        _force_chunks(monkeypatch)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    opt = Adafactor([shape], eps1=0.0, beta1=0.9, **block_hyper)
    g = rng.standard_normal(shape).astype(dtype)
    _row_and_column(g)
    opt.step([x], [g])  # a first step, so that there is state to leave unchanged
    before_x, before_state = x.copy(), opt.state_dict()
    g = rng.standard_normal(shape).astype(dtype)
    _row_and_column(g)
    g.flat[g.size // 2 + 1] = BAD[bad](dtype)
    with pytest.raises(ValueError, match="contains NaN or inf"):
        opt.step([x], [g])
    np.testing.assert_array_equal(x, before_x)
    assert opt.t == 1
    after = opt.state_dict()["blocks"][0]
    for key, value in before_state["blocks"][0].items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)


# --- the kernels, at every chunking ---------------------------------------------------

S0 = Hyper(eps1=0.0).scalars(2)._replace(beta2=0.6)


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("nchunks", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_factored_stats_zero_rows_and_columns_any_chunking(dtype, nchunks, build):
    """Chunks that start, end and lie inside matrices, rows and columns whose statistics
    are zero: sum U**2 leaves their terms out."""
    rng = np.random.default_rng(9)
    nb, n, m = shape = (5, 3, 7)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    g[:, 1, :] = 0
    g[:, :, 4] = 0
    g[2] = 0  # a whole matrix: mean(R) = 0
    r = np.zeros((nb, n), dtype)
    c = np.zeros((nb, m), dtype)
    rn, cn = np.full_like(r, np.nan), np.full_like(c, np.nan)
    kernel = getattr(K, "factored_stats_" + build)
    gsum, xsum, usum = kernel(x, g, r, c, rn, cn, S0, nchunks)
    g64 = g.astype(np.float64)
    rw = (1 - S0.beta2) * np.mean(g64 * g64, axis=2)
    cw = (1 - S0.beta2) * np.mean(g64 * g64, axis=1)
    v = rw[:, :, None] * cw[:, None, :] / np.maximum(rw.mean(axis=1), 1e-300)[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        u2 = np.where(v == 0, 0.0, g64 * g64 / v)
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(rn, rw, rtol=rtol)
    np.testing.assert_allclose(cn, cw, rtol=rtol)
    assert np.all(rn[:, 1] == 0) and np.all(cn[:, 4] == 0) and np.all(rn[2] == 0)
    np.testing.assert_allclose([gsum, xsum, usum],
                               [np.sum(g64 * g64), np.sum(x.astype(np.float64) ** 2),
                                u2.sum()], rtol=rtol)


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("nchunks", [1, 2, 3, 5])
@pytest.mark.parametrize("where", ["first_chunk", "last_chunk", "everywhere", "all"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_unfactored_stats_zero_entries_any_chunking(dtype, where, nchunks, build):
    """Zero entries in some chunks only, in the lanes and in the tail: sum U**2 leaves
    them out (the chunks holding them are counted again), and equals the sum taken
    without them."""
    rng = np.random.default_rng(4)
    size = 1000
    x = rng.standard_normal(size).astype(dtype)
    g = rng.standard_normal(size).astype(dtype)
    v = np.abs(rng.standard_normal(size)).astype(dtype)
    zero = np.zeros(size, bool)
    if where == "first_chunk":
        zero[[0, 3, 70]] = True
    elif where == "last_chunk":
        zero[[-1, -5, -70]] = True
    elif where == "everywhere":
        zero[::7] = True
    else:
        zero[:] = True
    g[zero] = 0
    v[zero] = 0
    kernel = getattr(K, "unfactored_stats_" + build)
    usum, xsum, g2max = kernel(x, g, v, S0, nchunks)
    bet2, keep = dtype(S0.beta2), dtype(1 - S0.beta2)
    vn = bet2 * v + keep * (g * g)
    u2 = (g * g)[~zero] / vn[~zero]
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(usum, np.sum(u2.astype(np.float64)), rtol=rtol, atol=0)
    assert g2max == np.max((g * g).astype(np.float64))
    np.testing.assert_allclose((usum, xsum, g2max),
                               K.unfactored_stats_serial(x, g, v, S0, nchunks), rtol=1e-14)


# --- minimize -----------------------------------------------------------------------


class _Masked:
    """f(x) = sum(w (x - c)**2) / 2 + sum(w (x - c)**4) / 4, with w = 0 on a row and a
    column of every matrix (and on some entries of a vector): a gradient that is zero
    there at every iterate."""

    def __init__(self, shape, dtype):
        r = np.random.default_rng(1)
        self.shape, self.dtype = shape, dtype
        self.w = r.uniform(0.5, 2.0, shape)
        if len(shape) >= 2:
            self.w[..., 2, :] = 0
            self.w[..., :, 1] = 0
        else:
            self.w[::4] = 0
        self.c = r.standard_normal(shape)
        self.x0 = r.standard_normal(shape).astype(dtype)

    def fun(self, x):
        d = np.asarray(x, np.float64) - self.c
        return float(np.sum(self.w * d * d) / 2 + np.sum(self.w * d**4) / 4)

    def grad(self, x):
        d = np.asarray(x, np.float64) - self.c
        return (self.w * (d + d**3)).astype(self.dtype)


@pytest.mark.parametrize("hyper", ["plain", "beta1"])
@pytest.mark.parametrize("shape", [(6, 8), (2, 5, 6), (40,)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_minimize_with_a_zero_gradient_row(dtype, shape, hyper):
    p = _Masked(shape, dtype)
    hy = dict(HYPER[hyper], eps1=0.0)
    res = fastfactor.minimize(p.fun, p.x0, jac=p.grad,
                              options=dict(hy, maxiter=12, gtol=0.0))
    assert res.status == 1 and res.nit == 12, res.message
    traj = reference_minimize(p.grad, p.x0, 12, **hy)
    assert res.x.dtype == np.dtype(dtype)
    assert_close(res.x, traj[-1], dtype)
    masked = p.w == 0
    np.testing.assert_array_equal(res.x[masked], p.x0[masked])  # never moved
    assert not np.array_equal(res.x[~masked], p.x0[~masked])


@pytest.mark.parametrize("when", [0, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_minimize_refuses_nan_with_eps1_zero(dtype, when):
    """A NaN in the gradient stops the run (status 2) at the last iterate whose gradient
    was finite: x0 when the first one holds it (no step is taken)."""
    p = _Masked((6, 8), dtype)
    calls = []

    def grad(x):
        g = p.grad(x)
        if len(calls) == when:
            g[0, 0] = np.nan
        calls.append(1)
        return g

    res = fastfactor.minimize(p.fun, p.x0, jac=grad, options=dict(eps1=0.0, maxiter=10))
    nit = max(when - 1, 0)  # gradient number ``when`` is taken at x_when: discarded
    assert res.status == 2 and res.nit == nit, res.message
    traj = reference_minimize(p.grad, p.x0, nit, eps1=0.0)
    assert_close(res.x, traj[-1], dtype)
