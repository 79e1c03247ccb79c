"""``fastfactor.curve_fit``: :func:`scipy.optimize.curve_fit` on ``fastfactor.least_squares``.

The input handling (``p0``, ``sigma``, ``bounds``, ``check_finite``, ``nan_policy``), the
whitening of residuals and Jacobian and the covariance follow SciPy's ``curve_fit`` on its
``least_squares`` path (methods 'trf' and 'dogbox'): only the solver differs. A model
and Jacobian compiled with ``numba.njit`` are handed to the solver as compiled wrappers
(``_compiled_model``), which compute what the Python closures compute, to the bit.
"""

import inspect
import sys
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.linalg import LinAlgError, cholesky, solve_triangular, svd
from scipy.optimize import Bounds, OptimizeWarning
from scipy.sparse.linalg import LinearOperator

from ._compiled_model import compiled_problem, solve

__all__ = ["curve_fit"]


def curve_fit(f, xdata, ydata, p0=None, sigma=None, absolute_sigma=False, check_finite=None,
              bounds=(-np.inf, np.inf), method=None, jac=None, *, full_output=False,
              nan_policy=None, **kwargs):
    """Fit ``ydata ≈ f(xdata, *params)`` by nonlinear least squares with Adafactor.

    :func:`scipy.optimize.curve_fit` with :func:`fastfactor.least_squares` as the solver:
    the same arguments, weighting, errors, warnings and returned covariance as SciPy's
    ``curve_fit`` with ``method='trf'``, and SciPy's positional order.

    Parameters
    ----------
    f : callable
        The model ``f(xdata, p_1, ..., p_N) -> y``, returning ``M`` values (any shape
        with ``M`` elements, taken in C order, usually ``(M,)``) in the units of `ydata`.
    xdata : array_like or object
        The independent variable, usually ``(M,)`` or ``(k, M)`` for ``k`` predictors. A
        list, tuple or ndarray is converted to a float64 array; any other object is
        passed to `f` as it is.
    ydata : array_like
        The ``M`` observations, nominally ``f(xdata, *popt)``; converted to float64
        (float32 data are fitted in float64). Must not be empty.
    p0 : array_like, optional
        Initial guess, ``(N,)``, converted to float64. Default: the number of parameters
        ``N`` is the number of positional parameters of `f` after the first, and each
        starts at 1, or at the middle of its bounds when both are finite, ``lb + 1``
        when only the lower one is, ``ub - 1`` when only the upper one is.
    sigma : None, scalar, ``(M,)`` or ``(M, M)`` array_like, optional
        The uncertainty of `ydata`, in its units. With ``r = ydata - f(xdata, *p)``:
        a scalar or ``(M,)`` `sigma` holds standard deviations and the fit minimises
        ``chisq = sum((r / sigma) ** 2)``; an ``(M, M)`` `sigma` is the covariance
        matrix ``C`` of the errors (units squared, positive definite) and the fit
        minimises ``chisq = r.T @ inv(C) @ r``, through ``L^{-1} r`` where
        ``C = L L^T`` (Cholesky). None (default) means ones.
    absolute_sigma : bool, optional
        If True, `sigma` is taken in an absolute sense and `pcov` reflects it. If False
        (default), only the relative sizes of `sigma` matter: `pcov` is scaled by
        ``chisq(popt) / (M - N)``, the reduced chi-square, so that it matches the
        sample variance of the residuals.
    check_finite : bool, optional
        Raise ValueError when `ydata`, or an array `xdata`, holds a NaN or an inf.
        Default: True if `nan_policy` is None, False otherwise.
    bounds : 2-tuple of array_like or scipy.optimize.Bounds, optional
        Lower and upper bounds on the parameters (scalars or ``(N,)`` arrays, ``±np.inf``
        for none), passed to :func:`fastfactor.least_squares`. Default: no bounds.
    method : {None, "adafactor"}, optional
        The one method of :func:`fastfactor.least_squares` (SciPy's "lm", "trf" and
        "dogbox" get a ``ValueError`` saying what to use).
    jac : callable, str or None, optional
        ``jac(xdata, p_1, ..., p_N) -> J``, the ``(M, N)`` Jacobian of `f` with respect
        to the parameters: a dense array, a ``scipy.sparse`` matrix or a
        :class:`~scipy.sparse.linalg.LinearOperator`; it is whitened by `sigma` as the
        residuals are. A string ('2-point', '3-point', 'cs') selects a finite
        difference scheme of :func:`fastfactor.least_squares`; None (default) uses its
        default.
    full_output : bool, optional
        If True, also return `infodict`, `mesg` and `ier`.
    nan_policy : {None, 'raise', 'omit'}, optional
        What to do with NaNs in `xdata` and `ydata` (only when `check_finite` is False,
        which a `nan_policy` other than None makes the default): 'raise' raises
        ValueError; 'omit' drops the points (the last axis of `xdata`, the entries of
        `ydata`, and the rows and columns of `sigma`) where either is NaN; None does
        nothing special. 'propagate' is not supported.
    **kwargs
        Passed to :func:`fastfactor.least_squares` (``ftol``, ``xtol``, ``gtol``,
        ``x_scale``, ``loss``, ``max_nfev``, ``method``, ``options``, ...). ``maxfev``
        is taken as ``max_nfev``; ``args`` is refused.

    Returns
    -------
    popt : ndarray, shape (N,), float64
        The parameters minimising the sum of squares of the whitened residuals.
    pcov : ndarray, shape (N, N), float64
        The estimated covariance of `popt`, in the units of the parameters squared:
        ``np.sqrt(np.diag(pcov))`` are one-standard-deviation errors, from a linear
        approximation of `f` at `popt`. A rank-deficient Jacobian gives the
        pseudo-inverse (zero variance in the directions the data do not constrain).
        Filled with ``np.inf`` (with an OptimizeWarning) when it cannot be estimated.
    infodict : dict
        Only if `full_output`: ``nfev``, the number of evaluations of the residuals
        reported by the solver, and ``fvec``, the ``(M,)`` whitened residuals at
        `popt` (``(f(xdata, *popt) - ydata) / sigma`` for a 1-D `sigma`).
    mesg : str
        Only if `full_output`: the solver's message.
    ier : int
        Only if `full_output`: the solver's status (positive on success).

    Raises
    ------
    ValueError
        When `xdata` or `ydata` hold NaNs or infs (with `check_finite`) or NaNs (with
        ``nan_policy='raise'``), `ydata` is empty, `sigma` has the wrong shape or is not
        positive definite, the number of parameters cannot be found from `f`, or an
        option is not supported.
    RuntimeError
        When the least-squares solver does not succeed.

    Warns
    -----
    OptimizeWarning
        When the covariance of the parameters cannot be estimated: ``M <= N`` without
        `absolute_sigma`, or a non-finite pseudo-inverse.

    See Also
    --------
    scipy.optimize.curve_fit : the same interface on SciPy's solvers.
    fastfactor.least_squares : the solver underneath.

    Notes
    -----
    As in :func:`scipy.optimize.curve_fit`, the covariance comes from the Jacobian ``J``
    of the whitened residuals at `popt` (``(M, N)``) and ``cost``, half their sum of
    squares, both as returned by the solver. With the singular value decomposition
    ``J = U diag(s) V^T``, singular values ``s_i <= eps * max(M, N) * s_1`` are
    dropped and ``pcov = V diag(1 / s_i^2) V^T``, the Moore-Penrose pseudo-inverse of
    ``J^T J``. Without `absolute_sigma` it is multiplied by ``2 cost / (M - N)``. With a
    robust ``loss``, SciPy's formula is kept as is: ``cost`` is then the robust cost.

    When `f` and `jac` are both ``numba.njit`` functions, `xdata` is an array and `sigma`
    is None, a scalar or 1-D, the solver gets compiled residuals and Jacobian (its
    Adafactor phase can then run compiled), with the same results to the bit; a 2-D
    `sigma`, any other `xdata`, a Python or finite-difference `jac`, or a model that
    does not compile for the data keep the Python closures.

    Examples
    --------
    An exponential decay ``y = a exp(-b t) + c``, compared with SciPy:

    >>> import numpy as np, scipy.optimize as so
    >>> from fastfactor import curve_fit
    >>> def model(t, a, b, c):
    ...     return a * np.exp(-b * t) + c
    >>> t = np.linspace(0, 4, 50)
    >>> y = model(t, 2.5, 1.3, 0.5) + 0.05 * np.sin(7 * t)
    >>> popt, pcov = curve_fit(model, t, y)
    >>> ref, ref_cov = so.curve_fit(model, t, y)
    >>> bool(np.allclose(popt, ref)), pcov.shape
    (True, (3, 3))
    >>> perr = np.sqrt(np.diag(pcov))  # one-standard-deviation errors of a, b, c
    """
    from . import least_squares  # at call time: this module is imported by the package

    if p0 is None:
        n = _n_params(f)
    else:
        p0 = np.atleast_1d(p0)
        if p0.ndim > 1:
            raise ValueError("`p0` must have at most 1 dimension.")
        # SciPy's solvers work in float64 whatever the dtype of p0
        if not np.iscomplexobj(p0):
            p0 = p0.astype(np.float64)
        n = p0.size

    if isinstance(bounds, Bounds):
        lb, ub = bounds.lb, bounds.ub
    else:
        lb, ub = (np.asarray(b, dtype=float) for b in bounds)
    if p0 is None:
        p0 = _feasible_start(lb, ub, n)

    if check_finite is None:
        check_finite = nan_policy is None
    as_float = np.asarray_chkfinite if check_finite else np.asarray
    ydata = as_float(ydata, float)
    # any other object goes to f untouched (SciPy allows non-array xdata)
    if isinstance(xdata, list | tuple | np.ndarray):
        xdata = as_float(xdata, float)
    if ydata.size == 0:
        raise ValueError("`ydata` must not be empty!")

    # with check_finite the data are already known to hold no NaN
    if not check_finite and nan_policy is not None:
        if nan_policy == "propagate":
            raise ValueError("`nan_policy='propagate'` is not supported by this function.")
        if nan_policy not in ("raise", "omit"):
            raise ValueError("nan_policy must be one of {None, 'raise', 'omit'}")
        found = _has_nan(xdata, nan_policy)
        found = _has_nan(ydata, nan_policy) or found
        if found and nan_policy == "omit":
            xdata, ydata, sigma = _omit_nan(xdata, ydata, sigma)

    whiten = None if sigma is None else _Whiten(sigma, ydata.size)

    def resid(params):
        r = np.ravel(np.asarray(f(xdata, *params)) - ydata)
        return r if whiten is None else whiten(r)

    user_jac = jac
    if callable(jac):

        def jac(params):
            J = user_jac(xdata, *params)
            return J if whiten is None else whiten.jacobian(J)

    if "args" in kwargs:
        # f takes the parameters only; extra data belong in xdata or a closure
        raise ValueError("'args' is not a supported keyword argument.")
    if "max_nfev" not in kwargs:
        kwargs["max_nfev"] = kwargs.pop("maxfev", None)
    if method is not None:
        kwargs["method"] = method
    if jac is not None:
        kwargs["jac"] = jac

    compiled = compiled_problem(f, user_jac, xdata, ydata, whiten, p0, kwargs)
    res = solve(least_squares, resid, p0, bounds, kwargs, compiled)
    if not res.success:
        raise RuntimeError("Optimal parameters not found: " + res.message)

    fvec = np.ravel(res.fun)
    pcov, estimated = _covariance(res.jac, res.cost, fvec.size, n, absolute_sigma)
    if not estimated:
        warnings.warn("Covariance of the parameters could not be estimated",
                      category=OptimizeWarning, stacklevel=2)
    popt = res.x
    if full_output:
        return popt, pcov, {"nfev": res.nfev, "fvec": res.fun}, res.message, res.status
    return popt, pcov


def _covariance(J, cost, m, n, absolute_sigma):
    """The covariance of the fitted parameters, as :func:`scipy.optimize.curve_fit`'s.

    Parameters
    ----------
    J : ndarray, scipy.sparse matrix or LinearOperator, shape (m, n)
        The Jacobian of the whitened residuals at the solution.
    cost : float
        Half the sum of squares of the whitened residuals (the solver's ``cost``).
    m, n : int
        The numbers of residuals and of parameters.
    absolute_sigma : bool
        If False, scale by the reduced chi-square ``2 cost / (m - n)``.

    Returns
    -------
    pcov : ndarray, shape (n, n), float64
        The pseudo-inverse of ``J^T J`` (singular values below
        ``eps * max(m, n) * s_max`` dropped), scaled; all ``inf`` when not estimable.
    estimated : bool
        False when `pcov` was filled with ``inf``: a NaN in the pseudo-inverse, or
        ``m <= n`` without `absolute_sigma`.
    """
    if sp.issparse(J):
        J = J.toarray()
    elif isinstance(J, LinearOperator):
        J = J.matmat(np.eye(J.shape[1]))
    J = np.asarray(J, dtype=float)
    _, s, VT = svd(J, full_matrices=False)
    threshold = np.finfo(float).eps * max(J.shape) * s[0]
    kept = s > threshold
    s, VT = s[kept], VT[kept]
    pcov = np.dot(VT.T / s**2, VT)
    # s**2 can underflow to 0 for tiny Jacobians: inf * 0 in the product
    if np.isnan(pcov).any():
        return np.full((n, n), np.inf), False
    if absolute_sigma:
        return pcov, True
    if m > n:
        return pcov * (2 * cost / (m - n)), True
    return np.full_like(pcov, np.inf), False


def _n_params(f):
    """The number of fit parameters of ``f(x, p_1, ..., p_N)``: its positional ones but x."""
    options = {}
    if sys.version_info >= (3, 14):
        import annotationlib

        # annotations naming undefined types must not break the introspection
        options["annotation_format"] = annotationlib.Format.FORWARDREF
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = inspect.signature(f, **options).parameters.values()
    count = sum(p.kind in kinds for p in params)
    if count < 2:
        raise ValueError("Unable to determine number of fit parameters.")
    return count - 1


def _feasible_start(lb, ub, n):
    """SciPy's default p0: 1, the middle of a finite box, 1 inside a one-sided bound."""
    lb, ub = (np.broadcast_to(np.asarray(b, dtype=float), (n,)) for b in (lb, ub))
    low, high = np.isfinite(lb), np.isfinite(ub)
    p0 = np.ones(n)
    both = low & high
    p0[both] = 0.5 * (lb[both] + ub[both])
    p0[low & ~high] = lb[low & ~high] + 1
    p0[~low & high] = ub[~low & high] - 1
    return p0


def _has_nan(a, nan_policy):
    """Whether ``a`` holds a NaN; with ``nan_policy='raise'`` a NaN raises ValueError."""
    a = np.asarray(a)
    if a.size == 0:
        found = False
    elif np.issubdtype(a.dtype, np.inexact):
        found = bool(np.isnan(a).any())
    elif a.dtype == object:
        found = any(np.issubdtype(type(e), np.number) and np.isnan(e) for e in a.flat)
    else:
        found = False
    if found and nan_policy == "raise":
        raise ValueError("The input contains nan values")
    return found


def _omit_nan(xdata, ydata, sigma):
    """Drop the points where xdata (any entry along its leading axes) or ydata is NaN."""
    bad = np.isnan(xdata)
    bad = bad.any(axis=tuple(range(bad.ndim - 1)))
    bad |= np.isnan(ydata)
    keep = ~bad
    xdata, ydata = xdata[..., keep], ydata[keep]
    if sigma is not None:
        sigma = np.asarray(sigma)
        if sigma.ndim == 1:
            sigma = sigma[keep]
        elif sigma.ndim == 2:
            sigma = sigma[np.ix_(keep, keep)]
    return xdata, ydata, sigma


class _Whiten:
    """The residual transform of ``sigma``: ``r / sigma``, or ``L^{-1} r`` with ``C = L L^T``."""

    def __init__(self, sigma, m):
        sigma = np.asarray(sigma)
        self.chol = None
        if sigma.size == 1 or sigma.shape == (m,):
            # a one-element sigma is a standard deviation shared by all points
            self.inv = 1.0 / (sigma.reshape(()) if sigma.size == 1 else sigma)
        elif sigma.shape == (m, m):
            try:
                self.chol = cholesky(sigma, lower=True)
            except LinAlgError as exc:
                raise ValueError("`sigma` must be positive definite.") from exc
        else:
            raise ValueError("`sigma` has incorrect shape.")

    def __call__(self, A, trans="N"):
        """The transform of a vector ``(m,)`` or of the columns of ``(m, k)``."""
        if self.chol is not None:
            return solve_triangular(self.chol, A, lower=True, trans=trans)
        return (self.inv if self.inv.ndim == 0 or A.ndim == 1 else self.inv[:, None]) * A

    def jacobian(self, J):
        """The transform of a Jacobian, kept in its form (dense, sparse or operator)."""
        if isinstance(J, LinearOperator):
            return LinearOperator(J.shape, dtype=np.result_type(J.dtype, float),
                                  matvec=lambda v: self(J.matvec(v)),
                                  matmat=lambda V: self(J.matmat(V)),
                                  rmatvec=lambda u: J.rmatvec(self(u, trans="T")))
        if sp.issparse(J) and self.chol is None:
            weights = self.inv if self.inv.ndim == 0 else self.inv[:, None]
            return J.multiply(weights).tocsr()
        if sp.issparse(J):
            J = J.toarray()
        return self(np.asarray(J))
