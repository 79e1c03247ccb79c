"""The factored statistics kernel against plain NumPy, for every way its row chunks can
cut a batch of matrices.

The stepper only ever uses as many chunks as there are threads; here the chunk count
is forced, so that chunks starting, ending and lying wholly inside matrices, matrices
spread over several chunks, and more chunks than rows per matrix are all covered on
any machine. Sums of U**2 come from the column sums of g**2 / R_i (one pass over g);
the reference builds V and U explicitly.
"""

import numpy as np
import pytest

from conftest import DTYPES, dtype_id
from fastfactor._backends.cpu import _kernels as K

SHAPES = [(1, 13, 70), (1, 9, 64), (5, 3, 7), (4, 10, 33), (37, 5, 9), (2, 1, 3), (9, 1, 5),
          (3, 7, 1)]
CHUNKS = [1, 2, 3, 5, 8]
BETA2, EPS1 = 0.6, 1e-3


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
    sums = kernel(x, g, r, c, rn, cn, BETA2, EPS1, True, nchunks)
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
        out.append((kernel(x, g, r, c, rn, cn, BETA2, EPS1, True, 3), rn, cn))
    assert out[0][0] == out[1][0]
    np.testing.assert_array_equal(out[0][1], out[1][1])
    np.testing.assert_array_equal(out[0][2], out[1][2])
