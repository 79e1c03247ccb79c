"""``fastfactor.minimize_stochastic``: Adafactor on mini-batches of data.

For objectives that are sums over data too large to touch at every iteration: each
update uses the gradient of ``fun(x, batch, *args)`` on one batch, drawn from an
iterable (re-iterated per epoch) or a sampler ``rng -> batch``. Full or held-out
objectives are evaluated only every ``eval_every`` updates, where the stopping rules
(``target``, ``patience``) look at them. :func:`minibatches` cuts arrays into
shuffled row batches. The loop drives the :class:`fastfactor.Adafactor` stepper
(``apply`` into a spare buffer, so that the previous iterate survives a NaN).
"""

import math
import numbers
import warnings

import numpy as np
from scipy.optimize import OptimizeResult, OptimizeWarning

from ._blocks import block_size
from ._hyper import HYPER_NAMES
from ._minimize import _print_summary
from ._objective import Objective
from ._options import as_scalar, as_x0, split_options, wants_intermediate_result
from ._stepper import Adafactor

__all__ = ["minibatches", "minimize_stochastic"]

MESSAGES = {
    0: "Optimization terminated successfully: eval_fun(x) reached the target.",
    1: "Maximum number of iterations has been exceeded.",
    2: "Stopped: the batch objective, its gradient or eval_fun became NaN or inf; x is "
       "the last iterate where all were finite.",
    3: "The data is used up: the requested epochs are complete or the batch iterator "
       "is exhausted.",
    4: "Optimization terminated successfully: eval_fun has not improved by min_delta "
       "in `patience` evaluations.",
    99: "`callback` raised `StopIteration`.",
}

#: Options of minimize_stochastic besides the hyper-parameters, with their defaults.
SOLVER_DEFAULTS = {
    "maxiter": None, "epochs": None, "batches_per_epoch": None, "seed": None,
    "eval_fun": None, "eval_every": None, "target": None, "patience": None,
    "min_delta": 0.0, "restore_best": False, "average": None, "disp": False,
    "progress": False, "shapes": None, "device": "cpu",
}
#: maxiter when neither maxiter nor epochs is given.
DEFAULT_MAXITER = 1000
#: eval_every when the number of batches per epoch is unknown.
DEFAULT_EVAL_EVERY = 100


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
        (calls of ``fun`` and ``jac`` on batches), ``neval`` (calls of ``eval_fun``),
        ``epochs`` (complete passes over the data). ``history``: a dict of arrays
        ``nit``, ``epoch``, ``fun`` (``eval_fun`` values, NaN without it) and
        ``batch_fun`` (mean batch objective since the previous record), one entry per
        evaluation (at ``x0``, every ``eval_every`` updates and at the end).
        ``status``/``message``: 0 target reached, 4 stalled (both ``success``),
        1 ``maxiter`` reached, 3 data used up (``epochs`` complete or iterator
        exhausted), 2 a NaN or inf met, 99 callback stop.

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
    seed : None, int or numpy.random.Generator
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
        Print a line per evaluation and a summary at the end (default False).
    progress : bool
        Show a progress bar (needs the optional package ``tqdm``; without it a warning
        is issued and the run goes on). Default False.
    shapes
        Blocks partitioning the flat x, as in :func:`fastfactor.minimize`.
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
    """
    x = as_x0(x0)
    if not isinstance(args, tuple):
        args = (args,)
    cfg = _Config(options, x, batches)
    obj = Objective(fun, jac, args, x.shape, x.dtype)
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


class _Minibatches:
    def __init__(self, arrays, batch_size, shuffle, seed, drop_last):
        if not arrays:
            raise TypeError("minibatches needs at least one array, e.g. "
                            "minibatches(A, b, batch_size=256)")
        self.arrays = [np.asarray(a) for a in arrays]
        rows = {a.shape[0] if a.ndim else None for a in self.arrays}
        if None in rows:
            raise ValueError("minibatches needs arrays with rows (ndim >= 1), got a scalar")
        if len(rows) != 1:
            raise ValueError(f"the arrays must have the same number of rows, got "
                             f"{[a.shape[0] for a in self.arrays]}")
        self.rows = rows.pop()
        if self.rows == 0:
            raise ValueError("the arrays have no rows")
        _check_int("batch_size", batch_size, 1)
        self.batch_size = int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.rng = np.random.default_rng(seed)
        if len(self) == 0:
            raise ValueError(f"batch_size={batch_size} with drop_last=True leaves no batch "
                             f"of {self.rows} rows")

    def __len__(self):
        full, rest = divmod(self.rows, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __repr__(self):
        shapes = ", ".join(str(a.shape) for a in self.arrays)
        return f"minibatches({shapes}, batch_size={self.batch_size}, shuffle={self.shuffle})"

    def __iter__(self):
        order = self.rng.permutation(self.rows) if self.shuffle else None
        for k in range(len(self)):
            lo = k * self.batch_size
            hi = min(lo + self.batch_size, self.rows)
            if order is None:
                parts = [a[lo:hi] for a in self.arrays]
            else:
                idx = np.sort(order[lo:hi])  # sorted: the same rows, gathered in memory order
                parts = [a[idx] for a in self.arrays]
            yield parts[0] if len(parts) == 1 else tuple(parts)


# --- options ---------------------------------------------------------------------------

def _check_int(name, value, lo, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}"
                         f"{' or None' if allow_none else ''}, got {value!r}")


class _Config:
    """Validated options: solver settings as attributes, ``hyper`` and ``shapes``."""

    def __init__(self, options, x, batches):
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise TypeError(f"options must be a dict, got {type(options).__name__}")
        unknown = sorted(set(options) - set(SOLVER_DEFAULTS) - set(HYPER_NAMES))
        if unknown:
            warnings.warn(f"Unknown solver options: {', '.join(unknown)}", OptimizeWarning,
                          stacklevel=4)
        o = {k: options.get(k, v) for k, v in SOLVER_DEFAULTS.items()}
        if o["device"] != "cpu":
            raise ValueError(f"minimize_stochastic runs on the CPU (device='cpu'), got "
                             f"device={o['device']!r}")
        sub = {k: options[k] for k in ("shapes",) + HYPER_NAMES if k in options}
        settings, self.hyper = split_options(sub, x.shape)
        self.shapes = settings["shapes"]
        for name in ("maxiter", "average"):
            _check_int(name, o[name], 0, allow_none=True)
        for name in ("epochs", "batches_per_epoch", "eval_every", "patience"):
            _check_int(name, o[name], 1, allow_none=True)
        self.eval_fun = o["eval_fun"]
        if self.eval_fun is not None and not callable(self.eval_fun):
            raise TypeError(f"eval_fun must be a callable x -> float, got {self.eval_fun!r}")
        given = {"target": o["target"] is not None, "patience": o["patience"] is not None,
                 "restore_best": bool(o["restore_best"])}
        for name, is_given in given.items():
            if is_given and self.eval_fun is None:
                raise ValueError(f"{name} needs eval_fun, the objective it watches: pass "
                                 "options={'eval_fun': lambda x: ...}")
        target = o["target"]
        if target is not None and (isinstance(target, bool)
                                   or not isinstance(target, numbers.Real)):
            raise TypeError(f"target must be a real number, got {target!r}")
        md = o["min_delta"]
        if isinstance(md, bool) or not isinstance(md, numbers.Real) or not md >= 0:
            raise ValueError(f"min_delta must be a non-negative number, got {md!r}")
        self.stream = _Stream(batches, o["seed"], o["batches_per_epoch"])
        if o["epochs"] is not None and self.stream.sampler and o["batches_per_epoch"] is None:
            raise ValueError("epochs needs batches_per_epoch when batches is a sampler: "
                             "say how many draws make one epoch")
        self.epochs = o["epochs"]
        self.maxiter = o["maxiter"]
        if self.maxiter is None and self.epochs is None:
            self.maxiter = DEFAULT_MAXITER
        self.eval_every = o["eval_every"] or self.stream.length or DEFAULT_EVAL_EVERY
        self.target, self.patience, self.min_delta = target, o["patience"], float(md)
        self.restore_best, self.average = bool(o["restore_best"]), o["average"]
        self.disp, self.progress = bool(o["disp"]), bool(o["progress"])


class _DataEnd(Exception):
    """The batches are used up (epochs complete, or a one-shot iterator exhausted)."""


class _Stream:
    """Batches from an iterable (one pass per epoch) or a sampler ``rng -> batch``."""

    def __init__(self, batches, seed, per_epoch):
        self.batches = batches
        self.sampler = callable(batches) and not hasattr(batches, "__iter__")
        if self.sampler:
            self.rng = np.random.default_rng(seed)
            self.length = per_epoch
        else:
            try:
                self.it = iter(batches)
            except TypeError:
                raise TypeError(
                    "batches must be an iterable of batches (a list, "
                    "fastfactor.minibatches(...), a data loader) or a callable sampler "
                    f"rng -> batch, got {type(batches).__name__}") from None
            if per_epoch is not None:
                raise ValueError("batches_per_epoch is for a sampler; an iterable's epoch "
                                 "is one pass over it")
            self.reiterable = self.it is not batches
            self.length = len(batches) if self.reiterable and hasattr(batches, "__len__") else None
        self.epochs_done = 0
        self.drawn = 0  # batches drawn in the current epoch

    def next(self, max_epochs):
        if self.sampler:
            if max_epochs is not None and self.epochs_done >= max_epochs:
                raise _DataEnd
            batch = self.batches(self.rng)
            self.drawn += 1
            if self.length is not None and self.drawn == self.length:
                self.epochs_done += 1
                self.drawn = 0
            return batch
        for _ in range(2):
            try:
                batch = next(self.it)
            except StopIteration:
                if self.drawn == 0:
                    if self.epochs_done == 0:
                        raise ValueError("batches yielded no batch: give at least one") from None
                    raise ValueError(
                        f"batches yielded no batch in epoch {self.epochs_done + 1}: an "
                        "iterable must yield its batches again at each iter() (a list, or "
                        "an object whose __iter__ starts over)") from None
                self.epochs_done += 1
                self.drawn = 0
                done = max_epochs is not None and self.epochs_done >= max_epochs
                if not self.reiterable or done:
                    raise _DataEnd from None
                self.it = iter(self.batches)
                continue
            self.drawn += 1
            return batch
        raise AssertionError("unreachable")

    def completed_epochs(self):
        """Complete passes; a pass of known length counts as soon as its last batch is drawn."""
        done = self.epochs_done
        if not self.sampler and self.length is not None and self.drawn == self.length:
            done += 1
        return done


# --- the loop -----------------------------------------------------------------------------

class _Loop:
    """Draw, evaluate on the batch, step into the spare buffer, monitor, repeat."""

    def __init__(self, cfg, obj, args, callback):
        self.cfg, self.obj, self.args = cfg, obj, args
        self.callback = callback
        self.new_callback = callback is not None and wants_intermediate_result(callback)
        self.opt = Adafactor(cfg.shapes, **cfg.hyper)
        sizes = [block_size(s) for s in self.opt.shapes]
        self.offsets = np.cumsum([0] + sizes)
        self.hist = {"nit": [], "epoch": [], "fun": [], "batch_fun": []}
        self.neval = 0
        self.best_value, self.best_x = math.inf, None  # the lowest eval_fun, for restore_best
        self.ref_value = math.inf  # the value the next improvement is measured against
        self.last_eval = None  # (x, eval_fun(x)) of the last evaluation
        self.stall = 0
        self.batch_sum, self.batch_count = 0.0, 0
        self.batch_fun = math.nan
        self.avg, self.n_avg = None, 0
        self.bar = None

    def _blocks(self, flat):
        bounds = zip(self.offsets[:-1], self.offsets[1:], self.opt.shapes)
        return [flat[a:b].reshape(s) for a, b, s in bounds]

    def _estimate(self, x):
        """The current estimate: the running average once it has started, else x."""
        return self.avg if self.n_avg else x

    def _record(self, nit, value):
        """Append to the history: ``value`` (eval_fun, or NaN) and the mean batch objective."""
        mean = self.batch_sum / self.batch_count if self.batch_count else math.nan
        self.batch_sum, self.batch_count = 0.0, 0
        for key, v in (("nit", nit), ("epoch", self.cfg.stream.completed_epochs()),
                       ("fun", value), ("batch_fun", mean)):
            self.hist[key].append(v)
        if self.cfg.disp:
            print(f"{nit:>9d} {self.hist['epoch'][-1]:>7d} {mean:>14.6e} {value:>14.6e}")
        if self.bar is not None:
            self.bar.set_postfix(batch_fun=f"{mean:.4g}", eval_fun=f"{value:.4g}", refresh=False)

    def _evaluate(self, nit, x):
        """eval_fun at the flat x, recorded; the best value so far is tracked."""
        self.neval += 1
        value = as_scalar(self.cfg.eval_fun(x.reshape(self.obj.shape).copy()))
        self.last_eval = (x.copy(), value)
        self._record(nit, value)
        if value < self.ref_value - self.cfg.min_delta:  # an improvement for patience
            self.ref_value, self.stall = value, 0
        else:
            self.stall += 1
        if value < self.best_value:
            self.best_value = value
            if self.cfg.restore_best:
                self.best_x = x.copy()
        return value

    def _check(self, nit, x):
        """Record (and evaluate) the estimate at iterate x; the status a stopping rule
        asks for, or None."""
        cfg = self.cfg
        if cfg.eval_fun is None:
            self._record(nit, math.nan)
            return None
        value = self._evaluate(nit, self._estimate(x))
        if not math.isfinite(value):
            return 2
        if cfg.target is not None and value <= cfg.target:
            return 0
        if cfg.patience is not None and self.stall >= cfg.patience:
            return 4
        return None

    def _open_bar(self):
        if not self.cfg.progress:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            warnings.warn("progress=True needs the optional package tqdm (pip install tqdm); "
                          "running without a progress bar", RuntimeWarning, stacklevel=4)
            return
        cfg = self.cfg
        total = cfg.maxiter
        if cfg.epochs is not None and cfg.stream.length is not None:
            total = min(total or math.inf, cfg.epochs * cfg.stream.length)
        self.bar = tqdm(total=None if total in (None, math.inf) else int(total),
                        unit="it", desc="minimize_stochastic")

    def run(self, x):
        cfg, obj, opt = self.cfg, self.obj, self.opt
        xa = x.reshape(-1)
        spare = np.empty_like(xa)
        xb, sb = self._blocks(xa), self._blocks(spare)
        if cfg.disp:
            print(f"{'iter':>9} {'epoch':>7} {'batch fun':>14} {'eval fun':>14}")
        self._open_bar()
        try:
            nit, status = 0, self._check(0, xa)
            if status == 2:
                return self._result(xa, 0, 2)
            while status is None:
                if cfg.maxiter is not None and nit >= cfg.maxiter:
                    status = 1
                    break
                try:
                    batch = cfg.stream.next(cfg.epochs)
                except _DataEnd:
                    status = 3
                    break
                obj.args = (batch,) + self.args
                f, g = obj(xa)
                if not (math.isfinite(f) and np.all(np.isfinite(g))):
                    status = 2
                    break
                if opt.apply(xb, sb, self._blocks(g)) is not None:
                    status = 2  # g**2 overflows: the step was refused, xa is unchanged
                    break
                nit += 1
                xa, spare, xb, sb = spare, xa, sb, xb
                self.batch_fun = f
                self.batch_sum += f
                self.batch_count += 1
                if cfg.average is not None and nit > cfg.average:
                    if self.avg is None:
                        self.avg = np.zeros_like(xa)
                    self.n_avg += 1
                    self.avg += (xa - self.avg) / self.n_avg
                if self.bar is not None:
                    self.bar.update(1)
                if self.callback is not None and self._call_back(xa, f, nit):
                    status = 99
                    break
                if nit % cfg.eval_every == 0:
                    status = self._check(nit, xa)
            if status == 2:
                # the last update led to a non-finite value: return the iterate before it
                return self._result(spare if nit else xa, max(nit - 1, 0), 2)
            return self._result(self._estimate(xa), nit, status)
        finally:
            if self.bar is not None:
                self.bar.close()

    def _call_back(self, x, f, nit):
        xk = x.reshape(self.obj.shape).copy()
        try:
            if self.new_callback:
                self.callback(intermediate_result=OptimizeResult(
                    x=xk, fun=f, nit=nit, epoch=self.cfg.stream.completed_epochs()))
            else:
                self.callback(xk)
        except StopIteration:
            return True
        return False

    def _result(self, x, nit, status):
        """The result at the flat x (the estimate at the end, or the last good iterate)."""
        cfg = self.cfg
        fun = self.batch_fun
        if cfg.eval_fun is not None:
            if self.last_eval is not None and np.array_equal(self.last_eval[0], x):
                fun = self.last_eval[1]
            else:
                fun = self._evaluate(nit, x)
            if cfg.restore_best and self.best_x is not None:
                x, fun = self.best_x, self.best_value
        elif not self.hist["nit"] or self.hist["nit"][-1] != nit:
            self._record(nit, math.nan)
        history = {k: np.asarray(v, dtype=float if k in ("fun", "batch_fun") else int)
                   for k, v in self.hist.items()}
        res = OptimizeResult(
            x=x.reshape(self.obj.shape).copy(), fun=fun, batch_fun=self.batch_fun, nit=nit,
            nfev=self.obj.nfev, njev=self.obj.njev, neval=self.neval,
            epochs=cfg.stream.completed_epochs(), status=status,
            success=status in (0, 4), message=MESSAGES[status], history=history)
        if cfg.disp:
            _print_summary(res)
            print(f"         Epochs: {res.epochs}")
        return res
