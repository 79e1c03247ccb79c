"""``fastfactor.least_squares`` and ``fastfactor.curve_fit``: nonlinear least squares.

A front end of the shared driver (``fastfactor._driver``), beside ``minimize``, called
as :func:`scipy.optimize.least_squares` is. Two phases: Adafactor on the loss's cost
``½ C² Σ ρ(r²/C²)`` with gradient ``Jᵀ(ρ'·r)`` (``J`` is only applied transposed to a
vector, so a sparse matrix or a ``LinearOperator`` works), in the scaled variables
``x / x_scale``; then SciPy's trust-region ``trf`` from its result, which certifies the
digits (and, when the Adafactor phase did not converge, ``trf`` from x0 as well: the
lowest cost wins). The measurements behind the defaults are in
``docs/least_squares.rst``. The modules: ``_arguments`` (the keywords and options,
checked), ``_residuals`` (problem, scales, Jacobians), ``_loss``, ``_run`` (the
Adafactor phase's evaluation and stop hook), ``_phases`` (both phases run in order,
shared with ``fastfactor.dask.least_squares``), ``_finish`` (the trust-region phase),
``_progress``, ``_curve_fit``, ``_reductions`` (``½‖r‖²`` and ``Jᵀr``, compiled, shared
with the compiled loop of the Adafactor phase in ``fastfactor._compiled._lsq``).
"""

import math

import numpy as np
from scipy.optimize import OptimizeResult
from scipy.sparse.linalg import LinearOperator

from .._interrupts import conclude
from .._options import as_options, options_keywords
from ._arguments import SOLVER_OPTIONS, check_initial_cost, check_keywords, parse_arguments
from ._curve_fit import curve_fit
from ._finish import finish
from ._phases import (
    adafactor_phase,
    print_summary,
    result_message,
    spent,
    trust_region_phases,
    wants_finish,
)
from ._residuals import BudgetSpent, _Residuals, _x_scale
from ._run import active_mask

__all__ = ["curve_fit", "least_squares"]


@options_keywords(SOLVER_OPTIONS)
def least_squares(fun, x0, jac="2-point", bounds=(-np.inf, np.inf), method="adafactor",
                  ftol=1e-10, xtol=1e-10, gtol=1e-10, x_scale=None, loss="linear",
                  f_scale=1.0, diff_step=None, tr_solver=None, tr_options=None,
                  jac_sparsity=None, max_nfev=None, verbose=0, args=(), kwargs=None,
                  callback=None, workers=None, options=None):
    """Solve a nonlinear least-squares problem with bounds: Adafactor, then SciPy's trf.

    Minimizes ``F(x) = 0.5 * C**2 * sum(rho((f_i(x) / C)**2))`` subject to ``lb <= x <=
    ub``, with the arguments, positional order, meanings and result fields of
    :func:`scipy.optimize.least_squares`. Two phases: Adafactor (first-order, the
    factored second moment for matrix-shaped x) from x0; then, by default, SciPy's
    trust-region reflective solver (``method='trf'``) from Adafactor's result with the
    same bounds, loss, scaling and Jacobian, which certifies the digits. When the
    Adafactor phase did not converge, ``trf`` also runs from x0, and the lowest cost
    wins. Adafactor reaches basins from far starts that the trust region alone misses;
    the trust region converges in a few steps where Adafactor needs thousands.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args, **kwargs) -> f``, the residuals. ``x`` has x0's shape and
        dtype; ``f`` is an array of real numbers of any shape, taken flat (C order),
        ``m`` elements.
    x0 : array_like
        Starting point, of any shape (a matrix ``x0`` is one factored block, e.g. the
        stacked factors ``[U; V]`` of a low-rank fit). Integers become float64,
        float32 stays float32. Not modified.
    jac : {"2-point", "3-point", "cs"} or callable, optional
        ``jac(x, *args, **kwargs) -> J``, the ``m × n`` Jacobian (``n = x0.size``,
        columns in x0's C order) as a dense array (``(m, n)`` or ``(m,) + x0.shape``),
        a ``scipy.sparse`` matrix or a :class:`scipy.sparse.linalg.LinearOperator`
        (the Adafactor phase uses only ``J.T @ r``; the finish then needs
        ``tr_solver='lsmr'``). A method name (default "2-point"; None is taken as
        "2-point"): finite differences of ``fun``, with steps that stay inside the
        bounds; "cs" (complex step) needs a ``fun`` that accepts complex ``x``.
    bounds : 2-tuple of array_like or scipy.optimize.Bounds, optional
        ``(lb, ub)``: scalars or arrays broadcast to x0's shape, ``±np.inf`` for no
        bound; ``lb == ub`` fixes a variable. x0 is clipped into the box and every
        iterate stays in it. Default: no bounds.
    method : {"adafactor"}, optional
        The one method (SciPy's "trf", "dogbox" and "lm" get a ``ValueError`` saying
        what to use).
    ftol, xtol, gtol : float or None, optional
        SciPy's tolerances (default 1e-10 each, tighter than SciPy's 1e-8: see
        Notes). The finish stops, as SciPy's ``trf``, when the cost's reduction is below
        ``ftol * F`` (ftol), a step is below ``xtol * (xtol + ||x||)`` (xtol), or the
        gradient's max-norm is below ``gtol`` (gtol). The Adafactor phase uses the
        gtol test (with the plateau check of Notes) and the xtol test in the scaled
        variables; None (or 0) disables a test, as in SciPy, but one must stay above
        machine epsilon.
    x_scale : array_like or "jac", optional
        The characteristic scale of each variable (SciPy's meaning: the problem is
        solved in ``x / x_scale``). Default (None): in the Adafactor phase ``|x0|``
        (1 where ``x0`` is 0) for a 1-D x0, so that each parameter's step is relative
        to its starting magnitude, 1 for a matrix x0; in the finish SciPy's "jac". "jac":
        the inverse column norms of the Jacobian, at x0 for the Adafactor phase,
        updated by SciPy in the finish. An operator Jacobian has no cheap column norms:
        there the finish uses the Adafactor phase's scale.
    loss : {"linear", "soft_l1", "huber", "cauchy", "arctan"} or callable, optional
        SciPy's robust losses ``rho(z)`` of the squared scaled residuals ``z = (f /
        f_scale)**2``, or a callable ``rho(z) -> (3, m)`` array of ``rho``, ``rho'``,
        ``rho''``. Default "linear" (plain least squares).
    f_scale : float, optional
        The soft margin between inlier and outlier residuals, in the units of ``f``
        (default 1.0).
    diff_step : float or array_like, optional
        The relative finite-difference step, ``h = diff_step * max(1, |x|)``. Default:
        ``eps**(1/2)`` ("2-point", "cs") or ``eps**(1/3)`` ("3-point").
    tr_solver : {None, "exact", "lsmr"}, optional
        The finish's trust-region subproblem solver (SciPy's; None chooses "exact"
        for dense and "lsmr" for sparse or operator Jacobians).
    tr_options : dict, optional
        Keyword options of the finish's ``lsmr`` (SciPy's ``tr_options``).
    jac_sparsity : array_like or sparse matrix, optional
        The ``(m, n)`` sparsity structure of the Jacobian for finite differences:
        columns with disjoint rows are differenced together (SciPy's grouping), and the
        Jacobian is sparse.
    max_nfev : int, optional
        The most evaluations of ``fun`` in the whole run (both phases, finite
        differences included); the Adafactor phase may use half of them, the finish
        the rest. Default: no limit beyond the phases' own (``maxiter`` and SciPy's
        ``100 * n`` for each ``trf`` run).
    verbose : {0, 1, 2}, optional
        0 silent (default); 1 a summary at the end, and a line just before the
        kernels compile (a dtype's and kind of block's first use in a process, when
        not cached on disk); 2 also progress during the Adafactor phase (a tqdm bar
        where tqdm is installed, else a line a second) and SciPy's iteration lines in
        the finish.
    args : tuple, optional
        Extra positional arguments of ``fun`` and ``jac``.
    kwargs : dict, optional
        Extra keyword arguments of ``fun`` and ``jac``.
    callback : callable, optional
        ``callback(intermediate_result)`` (an ``OptimizeResult`` with ``x``, ``cost``,
        ``fun``, ``nit`` and ``nfev``) or ``callback(xk)``, after every iteration of
        either phase. Raising ``StopIteration`` ends the run (status -2).
    workers : None, optional
        Only None: ``fun`` is evaluated serially (SciPy's ``workers`` maps finite
        differences in parallel).
    options : dict, optional
        The Adafactor phase's options and hyper-parameters; see the Options section.

    Returns
    -------
    res : scipy.optimize.OptimizeResult
        SciPy's fields: ``x`` (x0's shape and dtype); ``cost`` (the loss's value ``F``
        at ``x``); ``fun``, the residuals at ``x`` (flat, ``m``, float64); ``jac``, the
        Jacobian at ``x`` in the form ``jac`` gives it (dense ``(m, n)`` for finite
        differences, sparse with ``jac_sparsity``; under a robust loss SciPy's modified
        Jacobian, whose ``JᵀJ`` approximates the cost's Hessian); ``grad`` = ``jac.T @ (rho' *
        fun)``, in x0's shape; ``optimality`` (``max|grad|``, or with bounds the
        projected gradient ``max|clip(x - grad, lb, ub) - x|``); ``active_mask`` (x0's
        shape: -1 at a lower bound, +1 at an upper bound, 0 free); ``nfev`` (calls of
        ``fun`` in all phases, finite differences included, unlike SciPy's ``trf``);
        ``njev`` (Jacobians evaluated); ``status``: SciPy's 1 (gtol), 2 (ftol), 3
        (xtol), 4 (ftol and xtol), 0 (``max_nfev`` or ``maxiter`` reached), -2
        (callback stop), and -3 (a NaN or inf met, finish off), -4 (a plateau, see
        Notes), 98 (interrupted); ``success`` (status 1 to 4); ``message``, naming the
        phase that produced ``x``. fastfactor's fields: ``nit`` (Adafactor
        iterations), ``phase`` ("adafactor", "trf" or "trf from x0": where ``x`` comes
        from) and ``phases`` (a dict: an ``OptimizeResult`` per phase run, with its
        ``cost``, ``status``, ``nit``, ``nfev`` and ``njev``).

    Raises
    ------
    ValueError
        Bad arguments (naming the value), residuals not finite at x0 (as SciPy), a
        Jacobian of the wrong shape.
    TypeError
        A non-callable ``fun``, a SciPy keyword given in ``options``.
    Exception
        An exception raised by ``fun``, ``jac`` or ``callback`` after the first
        evaluation propagates with the run's result (status 98, at the last iterate
        reached) as its ``optimize_result`` attribute. A ``KeyboardInterrupt``
        (Ctrl-C) instead returns that result.

    Options
    -------
    maxiter : int
        Adafactor iterations (default 1000 with the finish, 20000 without; 0 skips
        the Adafactor phase).
    finish : bool
        Run SciPy's ``trf`` from the Adafactor result (default True).
    trf_from_x0 : bool
        When the Adafactor phase did not converge, or the finish ended on a plateau,
        run ``trf`` from x0 as well and keep the lower cost (default True).
    handover_window, handover_rtol : int, float
        With the finish, the Adafactor phase hands over (phase status 0) when its lowest
        cost fell by at most ``handover_rtol`` of itself over the last
        ``handover_window`` iterations: in its slow first-order tail, where the trust
        region converges in a few steps (defaults 20 and 0.1; a window of 0 turns this
        off). Measured on the NIST and far-start problems of the docs: the same
        problems solved as running the phase to ``maxiter``, with 4 to 7 times fewer
        evaluations.
    shapes
        As in :func:`fastfactor.minimize`: blocks partitioning the flat x (in C order).
    lr, eps1, eps2, clip_threshold, decay_rate, beta1, weight_decay, scale_parameter, warmup_init, min_dim_size_to_factor
        The hyper-parameters of :class:`fastfactor.Adafactor`, acting on ``x /
        x_scale``. Defaults here: ``lr = 0.1 / sqrt(t)``, ``beta1 = 0.95``,
        ``eps2 = 0.1``; the others are Adafactor's.

    See Also
    --------
    scipy.optimize.least_squares : the trust-region solvers, used for the finish.
    fastfactor.curve_fit : model fitting with parameter covariances.
    fastfactor.minimize : the minimizer underneath the Adafactor phase.

    Notes
    -----
    The defaults solve all 54 NIST StRD nonlinear regression runs (27 problems, two
    starts) to four significant digits, where SciPy's ``trf`` alone solves 48 (see
    ``docs/least_squares.rst``); the tighter default tolerances are part of that.
    A gradient below ``gtol`` is accepted as convergence only where the residuals are
    also orthogonal to the Jacobian's columns, ``|J_jᵀr| / (‖J_j‖ ‖r‖) <= 1e-5``
    (MINPACK's scale-free gtol measure; variables at a bound and residuals below
    ``sqrt(eps)`` of those at x0 are not tested): on a plateau, where the model barely
    depends on its parameters (a peak moved off the data), the gradient is tiny too;
    that is status -4, not success.
    The differences from SciPy that remain are listed in ``docs/least_squares.rst``.
    When ``fun`` and ``jac`` are ``numba.njit`` functions (with the linear loss, no
    ``callback``, ``kwargs`` or ``verbose=2``), the Adafactor phase runs in one compiled
    loop, with the same result to the bit; see "Compiled objectives" in the docs.

    Examples
    --------
    An exponential decay ``y = a exp(-k t) + c``, compared with SciPy:

    >>> import numpy as np, scipy.optimize as so
    >>> from fastfactor import least_squares
    >>> t = np.linspace(0, 4, 30)
    >>> y = 3 * np.exp(-1.3 * t) + 0.5 + 0.01 * np.cos(7 * t)
    >>> def resid(p):
    ...     return p[0] * np.exp(-p[1] * t) + p[2] - y
    >>> def jac(p):
    ...     e = np.exp(-p[1] * t)
    ...     return np.column_stack([e, -p[0] * t * e, np.ones_like(t)])
    >>> res = least_squares(resid, [1.0, 1.0, 1.0], jac=jac)
    >>> ref = so.least_squares(resid, [1.0, 1.0, 1.0], jac=jac)
    >>> res.success, res.phase, bool(np.allclose(res.x, ref.x, rtol=1e-6))
    (True, 'trf', True)

    With outliers, a robust loss (``f_scale`` in the units of ``y``) stays nearer the
    truth ``(3, 1.3, 0.5)`` than plain least squares, at SciPy's robust solution:

    >>> y[::7] += 2.0
    >>> res = least_squares(resid, [1.0, 1.0, 1.0], jac=jac, loss="soft_l1", f_scale=0.1)
    >>> plain = least_squares(resid, [1.0, 1.0, 1.0], jac=jac)
    >>> np.round(res.x, 2), np.round(plain.x, 2)
    (array([3.12, 1.4 , 0.54]), array([3.86, 2.33, 0.97]))
    >>> tight = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12)
    >>> ref = so.least_squares(resid, [1.0, 1.0, 1.0], jac=jac, loss="soft_l1", f_scale=0.1,
    ...                        **tight)
    >>> bool(np.allclose(res.x, ref.x, rtol=1e-6))
    True
    """  # noqa: E501 -- numpydoc needs the hyper-parameter names on one line (test_hyper_lists)
    options = as_options(options)
    check_keywords(method, ftol, xtol, gtol, f_scale, diff_step, tr_solver, tr_options,
                   max_nfev, verbose, kwargs, options)
    if workers is not None:
        raise ValueError("workers is not supported: fastfactor.least_squares evaluates "
                         "fun serially (pass workers=None)")
    a = parse_arguments(fun, x0, bounds, options, ftol, xtol, gtol, loss, f_scale,
                        diff_step, verbose, args, callback, "(x, *args)")
    x = a.x
    problem = _Residuals(fun, "2-point" if jac is None else jac, a.args, kwargs or {},
                         x.shape, a.lb, a.ub, a.loss, a.steps, jac_sparsity, max_nfev)
    try:
        first = problem.evaluate(x)
    except BudgetSpent as budget:  # max_nfev below what x0's Jacobian takes
        first = (budget.args[0], None, budget.args[1], budget.args[2])
    check_initial_cost(first[2], first[0])
    if tr_solver == "exact" and first[1] is not None and not isinstance(first[1], np.ndarray):
        raise ValueError(f"tr_solver='exact' needs a dense Jacobian; jac gives a "
                         f"{type(first[1]).__name__}: use tr_solver='lsmr' (or None)")
    scale = _x_scale(x_scale, x, first[1])
    phase = adafactor_phase(problem, a, first, scale, max_nfev)
    best, best_name = phase.point, "adafactor"
    if wants_finish(phase, a) and not spent(problem):
        settings = _finish_settings(a.tolerances, x_scale, scale, first[1], loss, f_scale,
                                    tr_solver, tr_options, a.verbose)

        def finish_from(start, nit0):
            return finish(problem, start, a.lb, a.ub, settings, a.callback, nit0,
                          phase.run.negligible)[0]

        best, best_name = trust_region_phases(problem, phase, finish_from,
                                              a.solver["trf_from_x0"], a.verbose)
    return _result(best, best_name, phase.phases, problem, a.lb, a.ub, phase.run, a.verbose,
                   a.loss)


def _finish_settings(tolerances, x_scale, scale, J0, loss, f_scale, tr_solver, tr_options,
                     verbose):
    """The keywords of SciPy's least_squares for the finish."""
    operator = isinstance(J0, LinearOperator)
    if operator or not (x_scale is None or isinstance(x_scale, str)):
        spec = np.asarray(scale, dtype=float).reshape(-1)  # the phase's (the user's) scale
    else:
        spec = "jac"
    return dict(**tolerances, x_scale=spec, loss=loss, f_scale=f_scale,
                tr_solver=tr_solver, tr_options=tr_options or {},
                verbose=2 if verbose >= 2 else 0)


def _result(point, phase, phases, problem, lb, ub, run, verbose, loss):
    """The run's OptimizeResult at ``point`` (a :class:`Point` of ``phase``)."""
    x, r, J, g = point.x, point.r, point.J, point.g
    finite = g is not None and np.all(np.isfinite(g))
    if g is None:
        g = np.full(x.shape, np.nan)
    status = point.status
    res = OptimizeResult(
        x=x.copy(), cost=point.cost, fun=r.copy(), jac=loss.modified_jacobian(J, r), grad=g,
        optimality=run.optimality(x, g) if finite else math.nan,
        active_mask=active_mask(x, lb, ub), nfev=problem.nfev, njev=problem.njev,
        nit=phases["adafactor"].nit, status=status, success=status in (1, 2, 3, 4),
        message=result_message(point, phase, phases), phase=phase, phases=phases)
    print_summary(res, point, run, verbose)
    return conclude(res, point.error, "fastfactor.least_squares")
