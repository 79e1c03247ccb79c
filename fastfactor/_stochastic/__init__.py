"""``fastfactor.minimize_stochastic``: Adafactor on mini-batches of data.

For objectives that are sums over data too large to touch at every iteration: each
update uses the gradient of ``fun(x, batch, *args)`` on one batch, drawn from an
iterable (re-iterated per epoch) or a sampler ``rng -> batch``. Full or held-out
objectives are evaluated only every ``eval_every`` updates, where the stopping rules
(``target``, ``patience``) look at them. :func:`minibatches` cuts arrays into
shuffled row batches. The loop drives the :class:`fastfactor.Adafactor` stepper
(``apply`` into a spare buffer, so that the previous iterate survives a NaN).
The options and the loop live in ``_loop``, the batch stream and the
minibatches object in ``_data``.
"""

from .._inputs import as_x0
from .._objective import Objective
from .._options import options_keywords
from ._data import _Minibatches
from ._loop import SOLVER_OPTIONS, _Config, _Loop

__all__ = ["minibatches", "minimize_stochastic"]


@options_keywords(SOLVER_OPTIONS)
def minimize_stochastic(fun, x0, batches, args=(), jac=None, callback=None, options=None):
    """Minimize an objective over data, one mini-batch per update, with Adafactor.

    Each iteration draws a batch, evaluates ``fun(x, batch, *args)`` and its gradient
    there, and applies one Adafactor update. Nothing is evaluated on the whole data
    unless ``eval_fun`` is given, and then only every ``eval_every`` updates.

    Parameters
    ----------
    fun : callable
        ``fun(x, batch, *args) -> float`` (or ``-> (float, ndarray)`` with
        ``jac=True``): the objective on one batch, typically a mean over its rows.
        ``x`` has x0's shape.
    x0 : array_like
        Starting point, of any shape (a matrix is one factored block). Integers become
        float64, float32 stays float32. Not modified.
    batches : iterable or callable
        Where batches come from. An iterable (a list, :func:`minibatches`, a data
        loader, any object with ``__iter__``) is iterated once per epoch; a one-shot
        iterator (a generator) ends the run when it is exhausted. A callable is a
        sampler ``batches(rng) -> batch`` with ``rng`` a :class:`numpy.random.Generator`
        (see the ``seed`` option), called once per update.
    args : tuple, optional
        Extra arguments of ``fun`` and ``jac``, after the batch.
    jac : callable, True, None or {"2-point", "3-point", "cs"}, optional
        ``jac(x, batch, *args)``, the gradient of ``fun`` on the batch, of x's shape;
        True if ``fun`` returns ``(f, g)``; None or a method name for finite
        differences on the batch (``x0.size`` extra calls per update, counted in
        ``nfev``).
    callback : callable, optional
        ``callback(intermediate_result)`` (an ``OptimizeResult`` with ``x``, ``fun``
        (the batch objective before the update), ``nit`` and ``epoch``) or
        ``callback(xk)``, after every update. Raising ``StopIteration`` ends the run
        (status 99).
    options : dict, optional
        See the Options section.

    Returns
    -------
    res : scipy.optimize.OptimizeResult
        ``x``: the last iterate (the running average with ``average``, the best
        evaluated iterate with ``restore_best``). ``fun``: ``eval_fun(x)`` when
        ``eval_fun`` is given (evaluated at the returned ``x``), else the objective on
        the last batch, at the iterate before the last update. ``batch_fun``: that
        last batch objective in every case. ``nit`` (updates), ``nfev`` and ``njev``
        (calls of ``fun``, and gradients on batches: calls of ``jac`` or gradients
        by differences), ``neval`` (calls of ``eval_fun``),
        ``epochs`` (complete passes over the data). ``history``: a dict of arrays
        ``nit``, ``epoch``, ``fun`` (``eval_fun`` values, NaN without it) and
        ``batch_fun`` (mean batch objective since the previous record), one entry per
        evaluation (at ``x0``, every ``eval_every`` updates and at the end).
        ``status``/``message``: 0 target reached, 4 stalled (both ``success``),
        1 ``maxiter`` reached, 3 data used up (``epochs`` complete or iterator
        exhausted), 2 a NaN or inf met, 98 interrupted (``x`` the last iterate
        reached; ``eval_fun`` is not called again, so ``fun`` is NaN unless it was
        just evaluated there), 99 callback stop.

    Raises
    ------
    Exception
        An exception raised by ``fun``, ``jac``, ``eval_fun``, ``callback`` or the
        batches after the first update propagates with the run's result (status 98)
        as its ``optimize_result`` attribute. A ``KeyboardInterrupt`` (Ctrl-C)
        instead returns that result.

    Options
    -------
    maxiter : int
        Maximum number of updates. Default: no limit when ``epochs`` is given, else
        1000.
    epochs : int
        Maximum number of passes over the data (default: no limit). With a sampler,
        needs ``batches_per_epoch``.
    batches_per_epoch : int
        For a sampler: the number of draws that make one epoch.
    seed : None, int >= 0, numpy.random.Generator, BitGenerator or SeedSequence
        Seed of the sampler's ``rng`` (default None: fresh entropy).
    eval_fun : callable
        ``eval_fun(x) -> float``: a full or held-out objective, evaluated at ``x0``,
        every ``eval_every`` updates and at the end.
    eval_every : int
        Updates between evaluations (also between ``history`` records without
        ``eval_fun``). Default: one epoch when its length is known
        (``len(batches)`` or ``batches_per_epoch``), else 100.
    target : float
        Stop successfully (status 0) as soon as ``eval_fun(x) <= target``.
    patience : int
        Stop successfully (status 4) when ``patience`` evaluations in a row have not
        improved on the best ``eval_fun`` value by more than ``min_delta``.
    min_delta : float
        The improvement that counts for ``patience`` (default 0.0).
    restore_best : bool
        Return the evaluated iterate with the lowest ``eval_fun`` (default False).
    average : int
        Return (and evaluate) the running mean of the iterates after the first
        ``average`` updates (Polyak–Ruppert averaging), which removes most of the
        noise of the last iterates. Default None: no averaging.
    disp : bool
        Print a line per evaluation and a summary at the end, and a line just before
        the kernels compile (a dtype's and kind of block's first use in a process,
        when not cached on disk). Default False.
    progress : bool
        Show a progress bar (needs the optional package ``tqdm``; without it a warning
        is issued and the run goes on). Default False.
    shapes
        Blocks partitioning the flat x, as in :func:`fastfactor.minimize`.
    finite_diff_method, finite_diff_rel_step
        The finite differences on a batch when ``jac`` is None, as in
        :func:`fastfactor.minimize`.
    lr, eps1, eps2, clip_threshold, decay_rate, beta1, weight_decay, scale_parameter, warmup_init, min_dim_size_to_factor
        The hyper-parameters of :class:`fastfactor.Adafactor`, with its defaults.

    See Also
    --------
    minibatches : shuffled row batches of arrays, re-iterable per epoch.
    fastfactor.Adafactor : the stepper, for loops of one's own.

    Notes
    -----
    Adafactor's default step is relative to ``RMS(x)``: from ``x0 = 0`` it starts at
    ``eps2 * rho_t`` and grows by about ``rho_t`` per update. For convex fits from
    zero, ``scale_parameter=False`` (steps in x's own units) with a decaying ``lr``
    such as ``c / sqrt(t)``, ``beta1=0.9`` and ``average`` work better; see
    ``docs/stochastic.rst``.

    Examples
    --------
    A linear least-squares fit from batches of 256 rows, checked against
    :func:`numpy.linalg.lstsq`:

    >>> import numpy as np
    >>> from fastfactor import minibatches, minimize_stochastic
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((20000, 10))
    >>> b = A @ np.arange(1.0, 11.0) + 0.1 * rng.standard_normal(20000)
    >>> def fun(x, batch):
    ...     Ab, bb = batch
    ...     r = Ab @ x - bb
    ...     return 0.5 * np.mean(r * r), Ab.T @ r / len(bb)
    >>> res = minimize_stochastic(
    ...     fun, np.zeros(10), minibatches(A, b, batch_size=256, seed=1), jac=True,
    ...     options={"epochs": 5, "lr": lambda t: 1 / np.sqrt(t), "beta1": 0.9,
    ...              "scale_parameter": False, "average": 200})
    >>> x_ls = np.linalg.lstsq(A, b, rcond=None)[0]
    >>> res.status, res.epochs, res.nit
    (3, 5, 395)
    >>> bool(np.linalg.norm(res.x - x_ls) < 1e-3 * np.linalg.norm(x_ls))
    True
    """  # noqa: E501 -- numpydoc needs the hyper-parameter names on one line (test_hyper_lists)
    x = as_x0(x0)
    if not isinstance(args, tuple):
        args = (args,)
    cfg = _Config(options, x, batches)
    obj = Objective(fun, jac, args, x.shape, x.dtype, cfg.fd)
    return _Loop(cfg, obj, args, callback).run(x)


def minibatches(*arrays, batch_size, shuffle=True, seed=None, drop_last=False):
    """Row batches of one or more arrays, re-iterable: one pass per epoch.

    Parameters
    ----------
    *arrays : array_like
        Arrays with the same first dimension (the rows); kept by reference, not copied.
    batch_size : int
        Rows per batch (the last batch of an epoch may be smaller).
    shuffle : bool, optional
        Draw the rows in a new random order every epoch (default True); without it
        batches are consecutive slices (views).
    seed : None, int or numpy.random.Generator, optional
        Seed of the shuffling (the epochs differ from each other, the sequence is
        reproducible).
    drop_last : bool, optional
        Leave out a last batch smaller than ``batch_size`` (default False).

    Returns
    -------
    batches : iterable
        Each iteration yields the batches of one epoch: an array (one input array)
        or a tuple of arrays. ``len(batches)`` is the number of batches per epoch.

    Examples
    --------
    >>> import numpy as np
    >>> from fastfactor import minibatches
    >>> X, y = np.arange(20.0).reshape(10, 2), np.arange(10.0)
    >>> batches = minibatches(X, y, batch_size=4, shuffle=False)
    >>> len(batches), [yb.tolist() for _, yb in batches]
    (3, [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0], [8.0, 9.0]])
    """
    return _Minibatches(arrays, batch_size, shuffle, seed, drop_last)
