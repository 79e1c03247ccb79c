"""The gtol test is exact: max|g| <= gtol, decided from the step's statistics pass only
when a lower bound of max|g| settles it, else from the exact maximum."""

import numpy as np
import pytest

import fastfactor
from helpers import DTYPES, dtype_id

GTOL = 1e-3


def _linear(G):
    """f(x) = sum(G * x): the gradient is G everywhere."""
    return lambda x: (float(np.sum(G * x)), G.copy())


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [(40, 30), (1200,), (3, 20, 10)], ids=str)
@pytest.mark.parametrize("where", ["equal", "just_above", "outlier_above", "all_below"])
def test_gtol_decision_is_exact(shape, dtype, where):
    G = np.full(shape, GTOL / 10, dtype)
    flat = G.reshape(-1)
    top = dtype(GTOL)
    if where == "equal":
        flat[7] = -top  # max|g| == gtol: converged
    elif where == "just_above":
        flat[7] = np.nextafter(top, dtype(1))  # one ulp above: not converged
    elif where == "outlier_above":
        flat[-1] = dtype(100 * GTOL)  # RMS(g) far below gtol, max|g| far above
    want_converged = where in ("equal", "all_below")
    res = fastfactor.minimize(_linear(G), np.ones(shape, dtype), jac=True,
                              options={"gtol": float(top), "maxiter": 3})
    assert res.status == (0 if want_converged else 1), (res.status, res.message)
    assert res.nit == (0 if want_converged else 3)
