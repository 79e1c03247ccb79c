"""Robust losses of :func:`fastfactor.least_squares`, with SciPy's definitions.

A loss ``rho(z)`` acts on the squared residuals ``z = (f / C)**2`` (``C = f_scale``);
the cost is ``0.5 * C**2 * sum(rho(z))`` and its gradient ``J.T @ (rho'(z) * f)``
(:func:`scipy.optimize.least_squares`, section "loss"). Each loss returns the ``(3, m)``
array ``[rho, rho', rho'']`` as SciPy's callable losses do; only the first two rows
enter the Adafactor phase, and the finish hands the loss to SciPy unchanged.
"""

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator


def _linear(z):
    return np.stack([z, np.ones_like(z), np.zeros_like(z)])


def _soft_l1(z):
    t = 1 + z
    return np.stack([2 * (np.sqrt(t) - 1), t ** -0.5, -0.5 * t ** -1.5])


def _huber(z):
    inside = z <= 1
    # the outer branch only where it is taken: z ** -0.5 is inf at z = 0
    zo = np.where(inside, 1.0, z)
    return np.stack([np.where(inside, z, 2 * np.sqrt(zo) - 1),
                     np.where(inside, 1.0, zo ** -0.5),
                     np.where(inside, 0.0, -0.5 * zo ** -1.5)])


def _cauchy(z):
    t = 1 + z
    return np.stack([np.log1p(z), 1 / t, -1 / t ** 2])


def _arctan(z):
    t = 1 + z ** 2
    return np.stack([np.arctan(z), 1 / t, -2 * z / t ** 2])


LOSSES = {"linear": _linear, "soft_l1": _soft_l1, "huber": _huber, "cauchy": _cauchy,
          "arctan": _arctan}


class Loss:
    """``cost(f)`` and the gradient weights of a loss at the residuals ``f`` (float64).

    ``loss`` is one of :data:`LOSSES` or a callable ``rho(z) -> (3, m)``; ``f_scale``
    the positive soft margin ``C`` between inlier and outlier residuals.
    """

    def __init__(self, loss, f_scale):
        if isinstance(loss, str):
            if loss not in LOSSES:
                raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable "
                                 f"rho(z) -> (3, m), got {loss!r}")
            self.rho = LOSSES[loss]
        elif callable(loss):
            self.rho = loss
        else:
            raise TypeError(f"loss must be a string or a callable rho(z), got {loss!r}")
        self.linear = isinstance(loss, str) and loss == "linear"
        self.spec = loss
        self.f_scale = float(f_scale)

    def derivatives(self, f):
        """``(z, rho)`` at the flat residuals ``f``: ``z = (f / f_scale)**2`` and the
        ``(3, m)`` float64 array of ``rho(z)``, ``rho'(z)``, ``rho''(z)``; ValueError
        when a callable loss returns another shape."""
        z = f * f / self.f_scale ** 2
        rho = np.asarray(self.rho(z), dtype=float)
        if rho.shape != (3, f.size):
            raise ValueError(f"the loss callable must return an array of shape (3, m) = "
                             f"{(3, f.size)}, got {rho.shape}")
        return z, rho

    def evaluate(self, f):
        """``(cost, w)``: the cost at the flat residuals ``f`` and the weights ``w`` of
        its gradient ``J.T @ (w * f)`` (None for the linear loss, whose weights are 1)."""
        if self.linear:  # the plain sum, without (3, m) temporaries
            from ._reductions import sum_squares  # as the compiled loop sums it

            return 0.5 * sum_squares(f), None
        _, rho = self.derivatives(f)
        return 0.5 * self.f_scale ** 2 * float(np.sum(rho[0])), rho[1]

    def modified_jacobian(self, J, f):
        """SciPy's ``res.jac`` under a robust loss: the rows of J scaled by
        ``sqrt(max(rho'(z) + 2 z rho''(z), EPS))``, so that ``JᵀJ`` is the Gauss-Newton
        approximation of the cost's Hessian (:func:`scipy.optimize.least_squares`);
        J itself for the linear loss."""
        if self.linear or J is None:
            return J
        z, rho = self.derivatives(f)
        s = np.sqrt(np.maximum(rho[1] + 2 * z * rho[2], np.finfo(float).eps))
        if isinstance(J, LinearOperator):
            return aslinearoperator(sp.diags(s)) @ J
        if sp.issparse(J):
            return sp.csr_matrix(sp.diags(s) @ J)
        return J * s[:, None]
