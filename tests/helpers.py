"""Helpers shared by the test modules: the tolerances of comparisons with the NumPy
reference (tests/reference.py), per dtype, so every test module uses the same ones; random
blocks and gradient streams; a smooth test problem.

Test modules import them with ``from helpers import ...``: pytest puts ``tests/`` on
``sys.path`` (``pythonpath = ["tests"]`` in pyproject.toml), so ``helpers`` and
``reference`` import from any test module, tests/cuda's included. The fixtures are in
conftest.py.
"""

import numpy as np

#: Relative tolerance of package-vs-reference comparisons, per dtype; the absolute
#: tolerance is that times the typical magnitude of the compared values (order 1).
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}

DTYPES = [np.float64, np.float32]


def tol(dtype, scale=1.0):
    r = RTOL[np.dtype(dtype)]
    return dict(rtol=r, atol=r * scale)


def assert_close(actual, expected, dtype=None, scale=1.0, err_msg=""):
    """Compare with the reference's tolerance for ``dtype`` (default: expected's)."""
    expected = np.asarray(expected)
    dtype = expected.dtype if dtype is None else dtype
    np.testing.assert_allclose(np.asarray(actual), expected, err_msg=err_msg, **tol(dtype, scale))


def dtype_id(dtype):
    return np.dtype(dtype).name


def random_blocks(rng, shapes, dtype, scale=1.0):
    """Standard-normal arrays of the given shapes (times ``scale``), in ``dtype``."""
    return [np.array(scale * rng.standard_normal(s), dtype=dtype) for s in shapes]


def gradient_stream(rng, shapes, dtype, n_steps):
    """``n_steps`` lists of random gradients, one per block, whose overall scale and
    per-row scales change from step to step (so that the averaging of the second
    moment and the factoring both matter)."""
    out = []
    for _ in range(n_steps):
        step = []
        for s in shapes:
            g = rng.standard_normal(s) * 10.0 ** rng.uniform(-2, 1)
            if len(s) >= 2:
                g = g * rng.uniform(0.2, 5.0, size=tuple(s[:-1]) + (1,))
            step.append(np.array(g, dtype=dtype))
        out.append(step)
    return out


class Problem:
    """A smooth test objective on arrays of a fixed shape, counting its calls.

    f(x) = sum(a * (x - c)**2) / 2 + sum((x - c)**4) / 4 with positive, spread-out
    curvatures ``a``; the minimiser is ``c``.  ``fun``, ``grad`` and ``fun_and_grad``
    take and return arrays of ``shape`` (or flat vectors when ``flat``).
    """

    def __init__(self, shape, dtype=np.float64, seed=0, flat=False, scale=1.0):
        r = np.random.default_rng(seed)
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.flat = flat
        self.scale = scale
        self.a = 10.0 ** r.uniform(-1, 1, size=self.shape)
        self.c = r.standard_normal(self.shape)
        self.x0 = (self.c + 2.0 * r.standard_normal(self.shape)).astype(dtype)
        if flat:
            self.x0 = self.x0.ravel()
        self.nfun = 0
        self.ngrad = 0

    def _x(self, x):
        x = np.asarray(x)
        assert x.size == int(np.prod(self.shape)), (x.shape, self.shape)
        if self.flat:
            assert x.ndim == 1, x.shape
        else:
            assert x.shape == self.shape, (x.shape, self.shape)
        return x.reshape(self.shape).astype(np.float64)

    def _out(self, g):
        g = g.astype(self.dtype)
        return g.ravel() if self.flat else g

    def fun(self, x):
        self.nfun += 1
        d = self._x(x) - self.c
        return self.scale * float(np.sum(self.a * d * d) / 2 + np.sum(d**4) / 4)

    def grad(self, x):
        self.ngrad += 1
        d = self._x(x) - self.c
        return self._out(self.scale * (self.a * d + d**3))

    def fun_and_grad(self, x):
        self.nfun += 1
        self.ngrad += 1
        d = self._x(x) - self.c
        f = self.scale * float(np.sum(self.a * d * d) / 2 + np.sum(d**4) / 4)
        return f, self._out(self.scale * (self.a * d + d**3))

    def grad_shaped(self, x):
        """The gradient at x, in x's shape, not counted (for the reference)."""
        d = np.asarray(x, dtype=np.float64).reshape(self.shape) - self.c
        return (self.scale * (self.a * d + d**3)).astype(self.dtype).reshape(np.shape(x))


# --- gradients with exact zeros (eps1 = 0: second moments that stay zero) ---------------

def _zero_row(g):
    if g.ndim == 1:  # entries in the lanes of the sums (the tail is the next pattern's)
        g[2:5] = 0
    else:
        g[..., 1, :] = 0


def _zero_column(g):
    if g.ndim == 1:  # the last entries: the sums' tail that fills no lane row
        g[-3:] = 0
    else:
        g[..., :, 2] = 0


def row_and_column_zeroed(g):
    _zero_row(g)
    _zero_column(g)


def _all_zero(g):
    g[...] = 0


def _zero_entries(g):
    g[np.random.default_rng(5).uniform(size=g.shape) < 0.3] = 0


ZERO_PATTERNS = {"zero_row": _zero_row, "zero_column": _zero_column,
            "row_and_column": row_and_column_zeroed, "all_zero": _all_zero,
            "zero_entries": _zero_entries}

#: The steps' gradients: the zero pattern, then a full gradient (the zero row becomes
#: nonzero, its statistics positive from then on), then the pattern again.
ZERO_SCHEDULE = [True, True, False, True]


def zero_pattern_gradients(rng, shape, dtype, pattern):
    """One gradient per step of ``ZERO_SCHEDULE``, zeroed by ``ZERO_PATTERNS[pattern]``."""
    out = []
    for zeroed in ZERO_SCHEDULE:
        g = rng.standard_normal(shape) * 10.0 ** rng.uniform(-1, 1)
        if zeroed:
            ZERO_PATTERNS[pattern](g)
        out.append(g.astype(dtype))
    return out
