"""``fastfactor.dask.least_squares``: both phases of least squares on a cluster.

The residuals and Jacobians of each partition are computed on the worker that holds
it (``_reduce``); only ``n``-sized sums come back. The Adafactor phase runs
:class:`fastfactor._lsq._run._Run`, the local phase, unchanged, on a two-row stand-in
for ``(J, ρ'·r)`` (:func:`stand_in`) that has the three things the phase reads: the
gradient ``Jᵀ(ρ'·r)``, the norm ``‖ρ'·r‖`` and the column norms of ``J``. The finish
(``_finish``) runs SciPy's ``trf`` on a reduced problem of ``n + 1`` residuals with
the same cost, gradient and Gauss-Newton matrix at every point, so the same steps.
"""

import math
import warnings

import numpy as np
from scipy.optimize import OptimizeResult, OptimizeWarning
from scipy.sparse.linalg import LinearOperator

from .._interrupts import conclude
from .._lsq._arguments import SOLVER_OPTIONS, check_initial_cost, check_keywords, parse_arguments
from .._lsq._finish import _Finish as _LocalFinish
from .._lsq._phases import (
    adafactor_phase,
    print_summary,
    result_message,
    spent,
    trust_region_phases,
    wants_finish,
)
from .._lsq._residuals import BudgetSpent, _x_scale
from .._lsq._run import Point, active_mask, plateau
from .._options import as_options, options_keywords
from ._datasum import RETRIES, TIMEOUT, check_run_settings
from ._placement import Partitions, check_arrays, get_client, ordered_sum, read_only
from ._reduce import Model, cost_task, gradient_task, qr_task

#: The most unknowns of :func:`least_squares` with a ``trf`` finish: the finish needs an
#: ``(n + 1) × (n + 1)`` factor per worker and per Jacobian, so above this it is
#: skipped with an ``OptimizeWarning`` and ``x`` is the Adafactor phase's result.
FINISH_MAX_N = 2000


def stand_in(g, rw2, nu2):
    """``(rw̃, J̃)``: two weighted residuals and a ``2 × n`` Jacobian with ``J̃ᵀrw̃ = g``,
    ``‖rw̃‖ = sqrt(rw2)`` and the column norms ``sqrt(nu2)`` (a :class:`LinearOperator`
    giving only ``J̃ᵀ`` when ``nu2`` is None): what the local phase's tests read of
    the full residuals and Jacobian."""
    size = math.sqrt(rw2)
    rw = np.array([size, 0.0])
    if nu2 is None:
        return rw, LinearOperator((2, g.size), matvec=lambda v: np.zeros(2),
                                  rmatvec=lambda u: g.copy(), dtype=float)
    top = g / size if size > 0 else np.zeros_like(g)
    return rw, np.vstack([top, np.sqrt(np.maximum(nu2 - top * top, 0.0))])


class _Problem:
    """The client side: evaluations over the partitions, their counts and budget."""

    def __init__(self, partitions, model, max_nfev):
        self.parts, self.model, self.max_nfev = partitions, model, max_nfev
        self.nfev = self.njev = 0
        self.sizes = None  # residuals per partition, from the first cost evaluation

    def _run(self, task, x, jacobian):
        if self.max_nfev is not None and self.nfev >= self.max_nfev:
            raise BudgetSpent
        out = self.parts.run(task, x, self.model)
        self.nfev += max(o[-1] for o in out)
        self.njev += jacobian
        return out

    def cost(self, x):
        """``(cost, ‖f_s‖²)`` at x."""
        out = self._run(cost_task, x, False)
        return float(ordered_sum([o[0] for o in out])), float(ordered_sum([o[1] for o in out]))

    def gradient(self, x):
        """``(cost, g or None, ‖rw‖², nu2 or None)`` at x (g flat, float64)."""
        out = self._run(gradient_task, x, True)
        if self.sizes is None:
            self.sizes = {k: v for o in out for k, v in o[4].items()}
        cost = float(ordered_sum([o[0] for o in out]))
        if any(o[1] is None for o in out):
            return cost, None, math.nan, None
        nu2 = None if any(o[3] is None for o in out) else ordered_sum([o[3] for o in out])
        return (cost, ordered_sum([o[1] for o in out]), float(ordered_sum([o[2] for o in out])),
                nu2)

    def qr(self, x):
        """``(cost, ‖f_s‖², R, g, ‖rw‖², nu2)`` at x; ``R`` is the ``(n+1) × (n+1)``
        factor of ``[J_s | f_s]`` over all partitions, None where not finite."""
        out = self._run(qr_task, x, True)
        cost, size2 = (float(ordered_sum([o[k] for o in out])) for k in (0, 1))
        if any(o[2] is None for o in out):
            return cost, size2, None, None, math.nan, None
        n1 = self.model.n + 1
        R = np.linalg.qr(np.vstack([o[2] for o in out]), mode="r")
        if R.shape[0] < n1:  # fewer residuals than unknowns + 1
            R = np.vstack([R, np.zeros((n1 - R.shape[0], n1))])
        nu2 = None if any(o[5] is None for o in out) else ordered_sum([o[5] for o in out])
        return (cost, size2, R, ordered_sum([o[3] for o in out]),
                float(ordered_sum([o[4] for o in out])), nu2)

    def evaluate(self, x):
        """The local phase's evaluation ``(r, J, cost, rw)``, with the stand-ins."""
        cost, g, rw2, nu2 = self.gradient(x)
        if g is None or not math.isfinite(cost):
            return np.full(2, math.nan), None, cost, np.full(2, math.nan)
        rw, J = stand_in(g, rw2, nu2)
        return rw.copy(), J, cost, rw


class _NoResiduals:
    """The user's callback, with ``fun`` None: the residuals are not gathered."""

    def __init__(self, callback):
        self.callback = callback

    def __call__(self, xk, fields):
        return self.callback(xk, lambda: {**fields(), "fun": None})


def _householder_rows(R, v, L):
    """``H [R; 0]`` for the reflection ``H`` (orthogonal) that maps ``v`` to
    ``‖v‖ e_last``: the reduced Jacobian whose residual vector is ``L e_last``."""
    n1 = v.size
    top = np.vstack([R, np.zeros((1, R.shape[1]))]) if R.shape[0] < n1 else R
    head2 = float(v[:-1] @ v[:-1])
    norm = math.sqrt(head2 + v[-1] ** 2)
    if head2 == 0.0 and v[-1] >= 0:
        return top
    u = v.astype(float).copy()
    # u = v - ‖v‖ e_last, its last entry without cancellation when v[-1] > 0
    u[-1] = -head2 / (v[-1] + norm) if v[-1] > 0 else v[-1] - norm
    return top - np.outer(u, (2.0 / float(u @ u)) * (u @ top))


class _Finish(_LocalFinish):
    """SciPy's ``trf`` on the reduced problem from a :class:`Point`.

    At a point ``x`` the reduced residuals are ``L e_{n+1}`` with ``L = ‖f_s‖`` (a
    trial point costs one residual pass and two numbers back). The reduced Jacobian,
    ``H [R; 0]`` with ``R`` of TSQR and the reflection ``H`` of
    :func:`_householder_rows`, has ``J̃ᵀJ̃ = J_sᵀJ_s`` and ``J̃ᵀ(L e_{n+1}) = J_sᵀ f_s``:
    the Gauss-Newton model of the full problem. Under a robust loss SciPy gets a
    callable loss that is linear in the reduced residuals but sums to the true cost
    (the scaling is already in ``J_s``, ``f_s``). The rest (fixed variables, bounds,
    budget, the callback, the end) is the local finish's.
    """

    def __init__(self, problem, start, lb, ub, callback, nit0):
        super().__init__(problem, start, lb, ub, callback, nit0)
        self.costs = {}  # L² -> cost of the points SciPy evaluated (its loss reads them)

    def fun(self, xf):
        cost, size2 = self.p.cost(self._x(xf))
        f = np.zeros((xf.size if self.idx is None else self.idx.size) + 1)
        f[-1] = math.sqrt(size2) if math.isfinite(size2) else math.nan
        if len(self.costs) > 64:
            self.costs.clear()
        self.costs[float(f[-1] ** 2)] = cost
        return f

    def loss(self, z):
        rho = np.zeros((3, z.size))
        rho[1] = 1.0
        rho[0, -1] = 2 * self.costs.get(float(z[-1]), math.nan)
        return rho

    def jac(self, xf, f=None):
        x = self._x(xf)
        cost, size2, R, g, rw2, nu2 = self.p.qr(x)
        if R is None:
            raise FloatingPointError("the residuals or the Jacobian are not finite")
        n = R.shape[1] - 1
        rows = _householder_rows(R[:, :n], R[:, n], math.sqrt(size2))
        rw, J = stand_in(g, rw2, nu2)
        self.current = Point(x, rw, J, g.reshape(self.shape), cost, 0, self.nit)
        return rows if self.idx is None else rows[:, self.idx]

    def _residuals_field(self, point):
        return None  # the residuals stay on the workers

    def _end_point(self, x, res):
        cost, g, rw2, nu2 = self.p.gradient(x)
        rw, J = stand_in(g, rw2, nu2)
        return Point(x, rw, J, g.reshape(self.shape), cost, 0, 0)


def _finish(problem, start, lb, ub, settings, linear, callback, nit0, negligible):
    fin = _Finish(problem, start, lb, ub, callback, nit0)
    settings = dict(settings, loss="linear" if linear else fin.loss, f_scale=1.0,
                    tr_solver="exact")
    point, _ = fin.run(settings)
    if point.status == 1 and plateau(point.J, point.r, point.g, point.x, lb, ub, negligible):
        point = point._replace(status=-4)
    return point


def _residuals(fun, x, args, blocks):
    blocks = read_only(blocks)  # as in the solve: the cluster's copy of the data
    return np.asarray(fun(x.copy(), *blocks, *args)).reshape(-1).astype(np.float64)


def lazy_residuals(fun, x, args, partitions, sizes):
    """The residuals at ``x`` as a lazy Dask array, a chunk per partition, empty ones
    included (its graph holds the partitions' futures: they stay on the cluster while
    it lives)."""
    import dask
    import dask.array as da

    rows = tuple(sizes[i] for i in range(len(partitions.parts)))
    pieces = [da.from_delayed(dask.delayed(_residuals)(fun, x, args, part),
                              shape=(rows[i],), dtype=np.float64)
              for i, part in enumerate(partitions.parts)]
    out = da.concatenate(pieces)
    if out.chunks[0] != rows:  # concatenate leaves out the empty pieces
        out = out.rechunk({0: rows})
    return out


def _check_cluster_keywords(tr_solver, tr_options, jac_sparsity, workers):
    """Refuse the keywords of fastfactor.least_squares that a cluster does not take."""
    if tr_solver not in (None, "exact"):
        raise ValueError(
            f"tr_solver={tr_solver!r} is not supported on a cluster: the finish solves a "
            "reduced problem of n + 1 residuals with tr_solver='exact' (pass None or "
            "'exact')")
    if tr_options:
        raise ValueError(
            f"tr_options={tr_options!r} is not supported on a cluster: they are options "
            "of the 'lsmr' trust-region solver, which the finish does not use (pass None)")
    if jac_sparsity is not None:
        raise ValueError(
            "jac_sparsity is not supported on a cluster: give jac, a callable returning "
            "each partition's Jacobian (a scipy.sparse matrix is fine), or finite "
            "differences without a sparsity structure (pass None)")
    if workers is not None:
        raise ValueError(
            f"workers={workers!r} is not supported: on a cluster the partitions are "
            "evaluated in parallel on the Dask workers, finite differences included "
            "(pass None)")


@options_keywords(SOLVER_OPTIONS)
def least_squares(fun, x0, *arrays, jac="2-point", bounds=(-np.inf, np.inf),
                  method="adafactor", ftol=1e-10, xtol=1e-10, gtol=1e-10, x_scale=None,
                  loss="linear", f_scale=1.0, diff_step=None, tr_solver=None, tr_options=None,
                  jac_sparsity=None, max_nfev=None, verbose=0, args=(), callback=None,
                  workers=None, options=None, client=None, timeout=TIMEOUT, retries=RETRIES):
    """Nonlinear least squares whose residuals are rows of Dask arrays: on the workers.

    Minimizes ``F(x) = 0.5 * C**2 * sum(rho((f_i(x) / C)**2))`` over all partitions'
    residuals, subject to ``lb <= x <= ub``, as :func:`fastfactor.least_squares` does
    (Adafactor, then SciPy's ``trf``), with ``fun`` and ``jac`` evaluated per partition
    on the worker that holds it. Only ``n``-sized sums cross the network: the cost,
    ``Jᵀ(ρ'·r)`` and column norms in the Adafactor phase; in the finish the cost at
    trial points, and at each Jacobian the ``(n+1) × (n+1)`` R factor of
    ``[J | r]`` (per worker, by QR). The residuals are never gathered.

    Parameters
    ----------
    fun : callable
        ``fun(x, *blocks, *args) -> r``: the residuals of one partition (``blocks``:
        its rows of each array, read-only NumPy arrays, as for :class:`DataSum`), any
        shape, taken flat.
    x0 : array_like
        Starting point, any shape; float32 stays float32. Not modified.
    *arrays : dask.array.Array
        The data, with the same row chunks (see :class:`DataSum`).
    jac : {"2-point", "3-point", "cs"} or callable, optional
        ``jac(x, *blocks, *args) -> J``: the partition's ``(m_i, n)`` Jacobian, dense
        (or ``(m_i,) + x0.shape``), sparse or a ``LinearOperator`` (densified for the
        finish). A method name (default "2-point"; None is "2-point"): finite
        differences of the partition's residuals, on its worker (``n`` or ``2n``
        extra calls of ``fun`` per partition, counted in ``nfev``).
    bounds, method, ftol, xtol, gtol, x_scale, loss, f_scale, diff_step, max_nfev, verbose
        As in :func:`fastfactor.least_squares` (``method``: "adafactor", the one
        method). ``max_nfev`` counts evaluations of all the residuals (one call of
        ``fun`` per partition is one).
    tr_solver : {None, "exact"}, optional
        The finish solves the reduced problem with "exact" (None means it too);
        "lsmr" is refused.
    tr_options, jac_sparsity, workers : None, optional
        Only None (or an empty ``tr_options``): a ``ValueError`` says why. There is no
        ``lsmr``, a partition's sparse Jacobian comes from ``jac``, and the workers
        of the cluster evaluate the partitions in parallel.
    args : tuple, optional
        Extra arguments of ``fun`` and ``jac``, after the blocks.
    callback : callable, optional
        As in :func:`fastfactor.least_squares`; the intermediate result's ``fun`` is
        None (the residuals stay on the workers).
    options : dict, optional
        The options and hyper-parameters of :func:`fastfactor.least_squares`
        (``maxiter``, ``finish``, ``trf_from_x0``, ``handover_window``,
        ``handover_rtol``, ``shapes``, ``lr``, ...).
    client : distributed.Client, optional
        Default: the current client.
    timeout, retries : float or None, int, optional
        Per evaluation, as in :class:`DataSum` (defaults 300 s and 3).

    Returns
    -------
    res : scipy.optimize.OptimizeResult
        The fields of :func:`fastfactor.least_squares`, except: ``fun``, the residuals
        at ``x``, is a lazy :class:`dask.array.Array` (flat, float64, a chunk per
        partition: ``res.fun.compute()`` gathers them, ``(res.fun ** 2).sum()``
        does not); ``jac`` is None (never gathered). ``grad``, ``optimality``,
        ``active_mask``, ``cost``, ``nfev`` (evaluations of all residuals, finite
        differences included), ``njev``, ``nit``, ``status``, ``success``,
        ``message``, ``phase`` and ``phases`` mean what they mean there.

    Raises
    ------
    ValueError
        As :func:`fastfactor.least_squares`; no client, arrays whose rows or row
        chunks do not line up (see :class:`DataSum`), a keyword not supported on a
        cluster (``tr_solver='lsmr'``, ``tr_options``, ``jac_sparsity``,
        ``workers``).
    TypeError
        As :func:`fastfactor.least_squares`; data that is not a Dask array.
    EvaluationFailed
        An evaluation did not complete in ``retries + 1`` attempts (see
        :class:`DataSum`); the run's result is its ``optimize_result`` attribute.
    Exception
        As :func:`fastfactor.least_squares`: an exception raised by ``fun`` or
        ``jac`` on a worker (a ``KeyboardInterrupt`` or ``SystemExit`` there becomes
        a ``RuntimeError`` naming it) or by ``callback``, with the run's result.

    See Also
    --------
    fastfactor.least_squares : the same solver on residuals in memory.
    DataSum : the reduction for any objective.

    Notes
    -----
    The finish runs :func:`scipy.optimize.least_squares` (``method='trf'``,
    ``tr_solver='exact'``) on a *reduced* problem with ``n + 1`` residuals: at a
    point ``x`` the residuals are ``L e_{n+1}``, ``L = ‖f_s‖``, and the Jacobian
    ``H [R; 0]``, where ``R`` is the triangular factor of ``[J_s | f_s]`` over all
    partitions (TSQR) and ``H`` the reflection mapping its last column to ``L
    e_{n+1}``; ``J_s`` and ``f_s`` are SciPy's robust-loss scalings of ``J`` and ``r``
    (``J`` and ``r`` for the linear loss). At every point this problem has the same
    cost (under a robust loss SciPy gets a callable loss summing to it), gradient,
    Gauss-Newton matrix ``J_sᵀJ_s`` and column norms as the full one, so the finish
    takes SciPy's steps on the full problem, up to rounding, and stops by the same
    tests; the conditioning is that of ``J``, not ``JᵀJ``. A trial point costs one
    residual pass; an accepted one, the residuals again, the Jacobians and their QR.
    With more than :data:`FINISH_MAX_N` (2000) unknowns the finish is skipped with an
    ``OptimizeWarning``.

    What differs from :func:`fastfactor.least_squares`: the data come as Dask arrays
    after ``x0`` (so the other arguments are keywords); ``fun`` and ``jac`` take a
    partition's blocks; there is no ``kwargs`` (give ``args``), ``jac_sparsity``,
    ``workers``, ``tr_options`` or ``tr_solver='lsmr'``; a ``LinearOperator``
    Jacobian is densified for the finish; ``res.fun`` is lazy and ``res.jac`` None;
    the callback's ``fun`` is None; the finish is skipped above
    :data:`FINISH_MAX_N` unknowns; ``client``, ``timeout`` and ``retries`` are added.
    """
    options = as_options(options)
    check_keywords(method, ftol, xtol, gtol, f_scale, diff_step, tr_solver, tr_options,
                   max_nfev, verbose, None, options, where="fastfactor.dask.least_squares")
    _check_cluster_keywords(tr_solver, tr_options, jac_sparsity, workers)
    check_run_settings(timeout, retries)
    a = parse_arguments(fun, x0, bounds, options, ftol, xtol, gtol, loss, f_scale,
                        diff_step, verbose, args, callback, "(x, *blocks, *args)")
    x = a.x
    model = Model(fun, "2-point" if jac is None else jac, a.args, a.loss, x.shape, a.lb,
                  a.ub, a.steps)
    arrays = check_arrays(arrays)
    partitions = Partitions(arrays, get_client(client), timeout, retries)
    problem = _Problem(partitions, model, None)
    a = a._replace(callback=None if a.callback is None else _NoResiduals(a.callback))

    first = problem.evaluate(x)  # one evaluation, finite differences included: no budget
    check_initial_cost(first[2], first[0])
    problem.max_nfev = max_nfev
    scale = _x_scale(x_scale, x, first[1] if isinstance(first[1], np.ndarray) else None)
    phase = adafactor_phase(problem, a, first, scale, max_nfev)
    best, best_name = phase.point, "adafactor"
    finish = wants_finish(phase, a)
    if finish and x.size > FINISH_MAX_N:
        warnings.warn(f"the trf finish is skipped: {x.size} unknowns, above "
                      f"fastfactor.dask.FINISH_MAX_N = {FINISH_MAX_N} (its factors would "
                      f"be {x.size + 1} x {x.size + 1} per worker); x is the Adafactor "
                      "phase's result", OptimizeWarning, stacklevel=2)
        finish = False
    if finish and not spent(problem):
        settings = dict(**a.tolerances, x_scale=(
            np.asarray(scale, dtype=float).reshape(-1)
            if not (x_scale is None or isinstance(x_scale, str)) else "jac"),
            verbose=2 if a.verbose >= 2 else 0)

        def finish_from(start, nit0):
            return _finish(problem, start, a.lb, a.ub, settings, a.loss.linear, a.callback,
                           nit0, phase.run.negligible)

        best, best_name = trust_region_phases(problem, phase, finish_from,
                                              a.solver["trf_from_x0"], a.verbose)
    return _result(best, best_name, phase, problem, a, fun, partitions)


def _result(point, phase_name, phase, problem, a, fun, partitions):
    """The run's OptimizeResult at ``point``: ``fun`` lazy, ``jac`` None."""
    x, g, phases = point.x, point.g, phase.phases
    finite = g is not None and np.all(np.isfinite(g))
    if g is None:
        g = np.full(x.shape, np.nan)
    g = np.asarray(g).reshape(x.shape)
    res = OptimizeResult(
        x=x.copy(), cost=point.cost,
        fun=lazy_residuals(fun, x.copy(), a.args, partitions, problem.sizes), jac=None,
        grad=g, optimality=phase.run.optimality(x, g) if finite else math.nan,
        active_mask=active_mask(x, a.lb, a.ub), nfev=problem.nfev, njev=problem.njev,
        nit=phases["adafactor"].nit, status=point.status,
        success=point.status in (1, 2, 3, 4), message=result_message(point, phase_name, phases),
        phase=phase_name, phases=phases)
    print_summary(res, point, phase.run, a.verbose)
    return conclude(res, point.error, "fastfactor.dask.least_squares")
