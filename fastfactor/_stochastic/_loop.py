"""The options and the loop of :func:`fastfactor.minimize_stochastic`.

``STOCHASTIC_MESSAGES`` (the status messages), ``SOLVER_OPTIONS`` and the default ``maxiter`` and
``eval_every``; ``_Config``, the validated options (solver settings, Adafactor's
hyper-parameters and ``shapes``, the batch stream); and ``_Loop``, which draws a batch,
evaluates the objective on it, applies one :class:`fastfactor.Adafactor` update into a
spare buffer, keeps the history, the running average and the best iterate, evaluates
``eval_fun`` and its stopping rules, and builds the ``OptimizeResult``.
"""

import math
import numbers

import numpy as np
from scipy.optimize import OptimizeResult

from .. import _driver, _finite_diff
from .._backends import get_backend
from .._blocks import Layout
from .._callbacks import as_callback
from .._hyper import make_hyper
from .._inputs import as_scalar
from .._interrupts import INTERRUPTED, conclude, status_message
from .._options import (
    cpu_only,
    flag,
    nonneg_int,
    nonneg_real,
    optional,
    parse_options,
    parse_shapes,
    positive_int,
    positive_real,
    real,
    warn_at_caller,
)
from .._stepper import Adafactor
from ._data import _DataEnd, _Stream

STOCHASTIC_MESSAGES = {
    **_driver.BASE_MESSAGES,
    0: "Optimization terminated successfully: eval_fun(x) reached the target.",
    2: "Stopped: the batch objective, its gradient or eval_fun became NaN or inf; x is "
       "the last iterate where all were finite.",
    3: "The data is used up: the requested epochs are complete or the batch iterator "
       "is exhausted.",
    4: "Optimization terminated successfully: eval_fun has not improved by min_delta "
       "in `patience` evaluations.",
}


def _eval_fun(name, value):
    if not callable(value):
        raise TypeError(f"eval_fun must be a callable x -> float, got {value!r}")
    return value


def _seed(name, value):
    # What numpy.random.default_rng takes, less sequences of ints: checked here, as the
    # seed of a batch list would otherwise never be looked at.
    if value is None or isinstance(value, (np.random.Generator, np.random.BitGenerator,
                                           np.random.SeedSequence)):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be None, a non-negative integer or a "
                        f"numpy.random.Generator, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {int(value)}")
    return int(value)


#: Options of minimize_stochastic besides the hyper-parameters: ``(default, validator)``.
SOLVER_OPTIONS = {
    "maxiter": (None, optional(nonneg_int)),
    "epochs": (None, optional(positive_int)),
    "batches_per_epoch": (None, optional(positive_int)),
    "seed": (None, _seed),
    "eval_fun": (None, optional(_eval_fun)),
    "eval_every": (None, optional(positive_int)),
    "target": (None, optional(real)),
    "patience": (None, optional(positive_int)),
    "min_delta": (0.0, nonneg_real),
    "restore_best": (False, flag),
    "average": (None, optional(nonneg_int)),
    "disp": (False, flag),
    "progress": (False, flag),
    "shapes": (None, None),
    "device": ("cpu", cpu_only("minimize_stochastic")),
    "finite_diff_method": (None, None),
    "finite_diff_rel_step": (None, optional(positive_real)),
}
#: maxiter when neither maxiter nor epochs is given.
DEFAULT_MAXITER = 1000
#: eval_every when the number of batches per epoch is unknown.
DEFAULT_EVAL_EVERY = 100


# --- options ---------------------------------------------------------------------------

class _Config:
    """Validated options: solver settings as attributes, ``hyper`` and ``shapes``."""

    def __init__(self, options, x, batches):
        o, hyper = parse_options(options, SOLVER_OPTIONS)
        self.hyper = make_hyper(hyper, "options")
        self.shapes = parse_shapes(o["shapes"], x.shape)
        self.fd = _finite_diff.Settings(o["finite_diff_method"], o["finite_diff_rel_step"])
        self.eval_fun = o["eval_fun"]
        given = {"target": o["target"] is not None, "patience": o["patience"] is not None,
                 "restore_best": o["restore_best"]}
        for name, is_given in given.items():
            if is_given and self.eval_fun is None:
                raise ValueError(f"{name} needs eval_fun, the objective it watches: pass "
                                 "options={'eval_fun': lambda x: ...}")
        self.stream = _Stream(batches, o["seed"], o["batches_per_epoch"])
        if o["epochs"] is not None and self.stream.sampler and o["batches_per_epoch"] is None:
            raise ValueError("epochs needs batches_per_epoch when batches is a sampler: "
                             "say how many draws make one epoch")
        self.epochs = o["epochs"]
        self.maxiter = o["maxiter"]
        if self.maxiter is None and self.epochs is None:
            self.maxiter = DEFAULT_MAXITER
        self.eval_every = o["eval_every"] or self.stream.length or DEFAULT_EVAL_EVERY
        self.target, self.patience, self.min_delta = o["target"], o["patience"], o["min_delta"]
        self.restore_best, self.average = o["restore_best"], o["average"]
        self.disp, self.progress = o["disp"], o["progress"]


# --- the loop -----------------------------------------------------------------------------

class _Loop:
    """Draw, evaluate on the batch, step into the spare buffer, monitor, repeat."""

    def __init__(self, cfg, obj, args, callback):
        self.cfg, self.obj, self.args = cfg, obj, args
        self.callback = as_callback(callback)
        self.opt = Adafactor(cfg.shapes, **cfg.hyper.as_dict())
        self.layout = Layout(cfg.shapes)
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
        self.refused = False  # a step refused at a finite x: x is the last good iterate
        self.reached = None  # (nit, flat x) of the last iterate reached

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
            warn_at_caller("progress=True needs the optional package tqdm (pip install tqdm); "
                           "running without a progress bar", RuntimeWarning)
            return
        cfg = self.cfg
        total = cfg.maxiter
        if cfg.epochs is not None and cfg.stream.length is not None:
            total = min(total or math.inf, cfg.epochs * cfg.stream.length)
        self.bar = tqdm(total=None if total in (None, math.inf) else int(total),
                        unit="it", desc="minimize_stochastic")

    def run(self, x):
        cfg = self.cfg
        xa = x.reshape(-1)
        spare = np.empty_like(xa)
        xb, sb = self.layout.views(xa), self.layout.views(spare)
        if cfg.disp:
            print(f"{'iter':>9} {'epoch':>7} {'batch fun':>14} {'eval fun':>14}")
        self._open_bar()
        try:
            nit, status = 0, self._check(0, xa)
            if status is not None:  # x0 is not finite, or meets a stopping rule
                return self._result(xa, 0, status)
            try:
                with get_backend("cpu").compile_notice(cfg.disp):
                    nit, status, xa, spare = self._iterate(xa, spare, xb, sb)
            except (KeyboardInterrupt, Exception) as error:
                # xa, the last iterate reached, is untouched: updates go into spare
                return conclude(self._result(self._estimate(self.reached[1]), self.reached[0],
                                             INTERRUPTED, error),
                                error, "fastfactor.minimize_stochastic")
            if status == 2 and not self.refused:
                # the last update led to a non-finite value: return the iterate before it
                return self._result(spare if nit else xa, max(nit - 1, 0), 2)
            if self.refused:
                return self._result(xa, nit, 2)
            return self._result(self._estimate(xa), nit, status)
        finally:
            if self.bar is not None:
                self.bar.close()

    def _iterate(self, xa, spare, xb, sb):
        """The updates until a stopping rule: ``(nit, status, xa, spare)``; ``reached``
        is ``(nit, x)`` at every moment (what an interrupt returns)."""
        cfg, obj, opt = self.cfg, self.obj, self.opt
        nit, status = 0, None
        self.reached = (0, xa)
        while status is None:
            if cfg.maxiter is not None and nit >= cfg.maxiter:
                return nit, 1, xa, spare
            try:
                batch = cfg.stream.next(cfg.epochs)
            except _DataEnd:
                return nit, 3, xa, spare
            obj.args = (batch,) + self.args
            f, g, _ = obj(xa)
            # one read of g: the step's statistics, and whether g is finite
            prepared, _ = opt._prepare(xb, self.layout.views(g))
            if not math.isfinite(f) or (
                    prepared is None and not math.isfinite(opt.backend.max_abs(g))):
                return nit, 2, xa, spare
            if prepared is None:
                self.refused = True  # g**2 overflows: the step was refused at a finite x
                return nit, 2, xa, spare
            opt._commit(prepared, xb, sb)
            # one statement: an interrupt cannot fall between the iterate and its count
            nit, xa, spare, xb, sb, self.reached, self.batch_fun = (
                nit + 1, spare, xa, sb, xb, (nit + 1, spare), f)
            self.batch_sum += f
            self.batch_count += 1
            if cfg.average is not None and nit > cfg.average:
                if self.avg is None:
                    self.avg = np.zeros_like(xa)
                self.avg += (xa - self.avg) / (self.n_avg + 1)
                self.n_avg += 1
            if self.bar is not None:
                self.bar.update(1)
            if self.callback is not None and self.callback(
                    xa.reshape(obj.shape).copy(),
                    # called at once, inside this iteration: bind this iteration's values
                    lambda f=f, nit=nit: dict(fun=f, nit=nit,
                                              epoch=cfg.stream.completed_epochs())):
                return nit, 99, xa, spare
            if nit % cfg.eval_every == 0:
                status = self._check(nit, xa)
        return nit, status, xa, spare

    def _result(self, x, nit, status, error=None):
        """The result at the flat x (the estimate at the end, or the last good iterate);
        after an interrupt (``error``) nothing of the user's is called again."""
        cfg = self.cfg
        fun = self.batch_fun
        if cfg.eval_fun is not None:
            if self.last_eval is not None and np.array_equal(self.last_eval[0], x):
                fun = self.last_eval[1]
            elif error is not None:
                fun = math.nan  # not evaluated there
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
            success=status in (0, 4), history=history,
            message=status_message(STOCHASTIC_MESSAGES, status, error))
        if cfg.disp and not isinstance(error, Exception):
            _driver.print_summary(res, [f"Epochs: {res.epochs}"], planned=(3,))
        return res
