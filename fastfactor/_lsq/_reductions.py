"""The reductions of a least-squares evaluation, compiled: ``½‖r‖²``, ``Jᵀw`` of a dense
Jacobian, and ``‖a‖²`` of a step.

One code for the Python loop and for the compiled loop of the Adafactor phase
(``fastfactor._compiled._lsq_loop``), so that both take the same iterates to the bit:
NumPy's BLAS and the one Numba calls round differently in the last bits. Each sum runs
in a fixed order (``LANES`` partial sums, then the tail), accumulated in float64.
Compiled on first use, like the step's kernels (imported lazily: ``import fastfactor``
loads no Numba).
"""

import numpy as np

from .._backends.cpu._jit import jit

#: Partial sums of ``sum_squares``: independent lanes that LLVM vectorizes without
#: reassociating (fastmath stays off).
LANES = 8


@jit
def sum_squares(a):
    """``Σ a_i²`` of a flat array, in float64."""
    acc = np.zeros(LANES)
    n = a.shape[0]
    full = n - n % LANES
    for i in range(0, full, LANES):
        for k in range(LANES):
            v = np.float64(a[i + k])
            acc[k] += v * v
    total = 0.0
    for k in range(LANES):
        total += acc[k]
    for i in range(full, n):
        v = np.float64(a[i])
        total += v * v
    return total


@jit
def rmatvec(J, w):
    """``Jᵀw`` (float64, ``n``) of a C-contiguous ``(m, n)`` Jacobian of any real dtype
    and float64 weights ``w`` (``m``): row after row, each column's sum in order."""
    m, n = J.shape
    g = np.zeros(n)
    for i in range(m):
        wi = w[i]
        for j in range(n):
            g[j] += J[i, j] * wi
    return g
