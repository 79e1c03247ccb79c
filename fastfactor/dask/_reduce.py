"""The worker side of :func:`fastfactor.dask.least_squares`: ``n``-sized sums.

Three tasks, each over the partitions a worker holds, each returning sums whose size
does not depend on the number of residuals:

- ``cost_task``: the loss's cost and ``‖f_s‖²`` (SciPy's robust-loss scaled residuals,
  see :func:`scaled`), for the trust region's trial points;
- ``gradient_task``: the cost, ``g = Jᵀ(ρ'·r)``, ``‖ρ'·r‖²`` and the squared column
  norms of ``J``, for the Adafactor phase;
- ``qr_task``: the cost, ``‖f_s‖²``, the gradient terms above and the ``R`` factor of
  ``[J_s | f_s]`` (TSQR: a QR per partition, then of the stacked factors), for the
  trust region's Jacobians. ``RᵀR = J_sᵀJ_s`` without forming it, so the finish
  does not square the Jacobian's condition number.

Each also returns the number of calls of ``fun`` made on one partition (finite
differences included), which is what the client counts as evaluations.
"""

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from .. import _finite_diff

EPS = np.finfo(float).eps


class Model:
    """What the workers need of the problem: ``fun``, ``jac``, extra ``args``, the loss
    (a :class:`fastfactor._lsq._loss.Loss`), x's shape, bounds and difference steps."""

    def __init__(self, fun, jac, args, loss, shape, lb, ub, diff_step):
        self.fun, self.args, self.loss, self.shape = fun, args, loss, shape
        self.n = int(np.prod(shape))
        self.lb, self.ub, self.diff_step = lb, ub, diff_step
        self.fd = None if callable(jac) else _finite_diff.check_method(jac)
        self.jac = jac if callable(jac) else None
        if self.jac is None and self.fd is None:
            raise ValueError(f"jac must be a callable (x, *blocks, *args) -> J of the "
                             f"partition, or one of {_finite_diff.FD_METHODS}, got {jac!r}")

    def residuals(self, x, blocks, index):
        r = np.asarray(self.fun(x.reshape(self.shape).copy(), *blocks, *self.args))
        if r.dtype.kind not in "biufc":
            raise TypeError(f"fun must return real residuals; on partition {index} it "
                            f"returned dtype {r.dtype}")
        return r.reshape(-1)

    def jacobian(self, x, blocks, index, r):
        """The partition's Jacobian and the calls of ``fun`` its differences made."""
        if self.jac is not None:
            J = self.jac(x.reshape(self.shape).copy(), *blocks, *self.args)
            if not (sp.issparse(J) or isinstance(J, LinearOperator)):
                J = np.asarray(J, dtype=np.float64)
                if J.size != r.size * self.n:
                    raise ValueError(f"jac returned shape {J.shape} on partition {index}; "
                                     f"expected (m, n) = {(r.size, self.n)} for its "
                                     f"{r.size} residuals")
                J = J.reshape(r.size, self.n)
            elif tuple(J.shape) != (r.size, self.n):
                raise ValueError(f"jac returned shape {J.shape} on partition {index}; "
                                 f"expected (m, n) = {(r.size, self.n)}")
            return J, 0
        calls = [0]
        r_dtype = r.dtype

        def call(xw):
            calls[0] += 1
            out = self.residuals(xw, blocks, index)
            return out if self.fd == "cs" else out.astype(np.float64)

        lb = None if self.lb is None else self.lb.reshape(-1)
        ub = None if self.ub is None else self.ub.reshape(-1)
        J = _finite_diff.jacobian(call, x.reshape(-1), r.real.astype(np.float64), self.fd,
                                  lb, ub, rel_step=self.diff_step, f_dtype=r_dtype)
        return J, calls[0]


def scaled(loss, r):
    """``(cost, f_s, s)``: the cost at the float64 residuals ``r``, SciPy's scaled
    residuals ``f_s = ρ'·r / s`` and row scales ``s = sqrt(max(ρ' + 2 z ρ''/C², eps))``
    (``scipy.optimize._lsq.common.scale_for_robust_loss_function``), whose Jacobian
    ``s·J`` gives the Gauss-Newton model of the cost: ``g = (sJ)ᵀf_s``. ``s`` is None
    for the linear loss."""
    if loss.linear:
        return 0.5 * float(r @ r), r, None
    C2 = loss.f_scale ** 2
    _, rho = loss.derivatives(r)
    s = np.sqrt(np.maximum(rho[1] + 2 * rho[2] / C2 * r * r, EPS))
    return 0.5 * C2 * float(np.sum(rho[0])), rho[1] * r / s, s


def _rmatvec(J, v):
    if isinstance(J, LinearOperator):
        return np.asarray(J.rmatvec(v), dtype=float).reshape(-1)
    return np.asarray(J.T @ v, dtype=float).reshape(-1)


def _column_norms2(J):
    if isinstance(J, LinearOperator):
        return None
    if sp.issparse(J):
        return np.asarray(J.multiply(J).sum(axis=0), dtype=float).reshape(-1)
    return np.einsum("ij,ij->j", J, J)


def _add(a, b):
    return None if a is None or b is None else a + b


def cost_task(x, parts, model):
    """``(cost, ‖f_s‖², calls)`` over ``parts``."""
    cost, size2 = 0.0, 0.0
    for index, blocks in parts:
        r = model.residuals(x, blocks, index).real.astype(np.float64)
        c, fs, _ = scaled(model.loss, r)
        cost, size2 = cost + c, size2 + float(fs @ fs)
    return cost, size2, 1


def _gradient_terms(x, blocks, index, model):
    r = model.residuals(x, blocks, index)
    r64 = r.real.astype(np.float64)
    cost, w = model.loss.evaluate(r64)
    rw = r64 if w is None else w * r64
    if not (np.isfinite(cost) and np.all(np.isfinite(rw))):
        return r64, cost, None, None, None, None, 1
    J, calls = model.jacobian(x, blocks, index, r)
    return r64, cost, J, rw, _rmatvec(J, rw), _column_norms2(J), 1 + calls


def gradient_task(x, parts, model):
    """``(cost, g, ‖rw‖², squared column norms or None, {index: m}, calls)`` over
    ``parts``; ``g`` is None where the cost or the weighted residuals are not finite."""
    cost, g, rw2, nu2, calls, sizes = 0.0, 0, 0.0, 0, 0, {}
    for index, blocks in parts:
        r, c, J, rw, gi, ni, k = _gradient_terms(x, blocks, index, model)
        cost, calls, sizes[index] = cost + c, max(calls, k), r.size
        if J is None:
            g = None
            continue
        g = None if g is None else g + gi
        rw2 += float(rw @ rw)
        nu2 = _add(nu2, ni)
    return cost, g, rw2, nu2, sizes, calls


def _r_factor(M):
    """The R factor of ``M`` (rows: at most its columns)."""
    return np.linalg.qr(M, mode="r")


def qr_task(x, parts, model):
    """``(cost, ‖f_s‖², R of [J_s | f_s], g, ‖rw‖², squared column norms, calls)``
    over ``parts`` (``R`` None where the values are not finite)."""
    cost, size2, rw2, g, nu2, calls, factors = 0.0, 0.0, 0.0, 0, 0, 0, []
    for index, blocks in parts:
        r64, c, J, rw, gi, ni, k = _gradient_terms(x, blocks, index, model)
        cost, calls = cost + c, max(calls, k)
        if J is None:
            factors = None
            continue
        _, fs, s = scaled(model.loss, r64)
        Jd = J.toarray() if sp.issparse(J) else (
            J.matmat(np.eye(model.n)) if isinstance(J, LinearOperator) else J)
        if s is not None:
            Jd = Jd * s[:, None]
        size2 += float(fs @ fs)
        rw2 += float(rw @ rw)
        g, nu2 = g + gi, _add(nu2, ni)
        if factors is not None:
            factors.append(_r_factor(np.column_stack([Jd, fs])))
    R = None if factors is None else _r_factor(np.vstack(factors))
    return cost, size2, R, g, rw2, nu2, calls
