"""The options and the loop of :func:`fastfactor.minimize_stochastic`.

``MESSAGES`` (the status messages), ``SOLVER_DEFAULTS`` and the default ``maxiter`` and
``eval_every``; ``_Config``, the validated options (solver settings, Adafactor's
hyper-parameters and ``shapes``, the batch stream); and ``_Loop``, which draws a batch,
evaluates the objective on it, applies one :class:`fastfactor.Adafactor` update into a
spare buffer, keeps the history, the running average and the best iterate, evaluates
``eval_fun`` and its stopping rules, and builds the ``OptimizeResult``.
"""

import math
import numbers
import warnings

import numpy as np
from scipy.optimize import OptimizeResult, OptimizeWarning

from .._blocks import block_size
from .._hyper import HYPER_NAMES
from .._minimize import _print_summary
from .._options import as_scalar, split_options, wants_intermediate_result
from .._stepper import Adafactor
from ._data import _check_int, _DataEnd, _Stream

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


# --- options ---------------------------------------------------------------------------

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
